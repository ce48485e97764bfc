#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../vmm/memory.h"
#include "../../vmm/virtio/virtq.h"

/* A queue of 8 in a 1 MiB guest: descriptors at 0x1000, avail at 0x2000,
 * used at 0x3000, buffers from 0x10000. */
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define QN 8

static struct guest_mem mem;
static struct virtq q;

static void setup(void)
{
	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	memset(&q, 0, sizeof(q));
	q.max_size = 256;
	q.size = QN;
	q.desc_gpa = DESC;
	q.avail_gpa = AVAIL;
	q.used_gpa = USED;
	q.ready = true;
	cr_assert_eq(virtq_activate(&q, &mem), 0);
}

static void teardown(void)
{
	mem_destroy(&mem);
}

TestSuite(virtq, .init = setup, .fini = teardown);

static void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = { addr, len, flags, next };
	cr_assert_eq(mem_write(&mem, DESC + 16 * i, &d, sizeof(d)), 0);
}

static void offer(uint16_t head)
{
	struct vring_avail *a = mem_ptr(&mem, AVAIL, 6 + 2 * QN);
	a->ring[a->idx % QN] = head;
	a->idx++;
}

Test(virtq, pop_walks_a_chain_and_push_publishes)
{
	struct virtq_chain c;
	set_desc(0, 0x10000, 16, VRING_DESC_F_NEXT, 3);
	set_desc(3, 0x11000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 5);
	set_desc(5, 0x12000, 1, VRING_DESC_F_WRITE, 0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0, "empty queue");
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.head, 0);
	cr_assert_eq(c.nsegs, 3);
	cr_assert_eq(c.nread, 1);
	cr_assert_eq(c.read_len, 16);
	cr_assert_eq(c.write_len, 513);
	cr_assert_eq(c.segs[1].addr, (uint8_t *)mem_ptr(&mem, 0x11000, 1));
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0);

	virtq_push(&q, 0, 513);
	struct vring_used *u = mem_ptr(&mem, USED, 6 + 8 * QN);
	cr_assert_eq(u->idx, 1);
	cr_assert_eq(u->ring[0].id, 0);
	cr_assert_eq(u->ring[0].len, 513);
}

Test(virtq, chain_helpers_cross_segments)
{
	struct virtq_chain c;
	set_desc(0, 0x10000, 4, VRING_DESC_F_NEXT, 1);
	set_desc(1, 0x10100, 4, VRING_DESC_F_NEXT, 2);
	set_desc(2, 0x10200, 3, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
	set_desc(3, 0x10300, 5, VRING_DESC_F_WRITE, 0);
	mem_write(&mem, 0x10000, "abcd", 4);
	mem_write(&mem, 0x10100, "efgh", 4);
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	char buf[9] = { 0 };
	cr_assert_eq(virtq_chain_read(&c, 2, buf, 8), 6);
	cr_assert_str_eq(buf, "cdefgh");
	cr_assert_eq(virtq_chain_write(&c, 1, "XYZW!", 5), 5);
	cr_assert_eq(memcmp(mem_ptr(&mem, 0x10201, 2), "XY", 2), 0);
	cr_assert_eq(memcmp(mem_ptr(&mem, 0x10300, 3), "ZW!", 3), 0);
	struct iovec iov[4];
	cr_assert_eq(virtq_chain_iov(&c, true, 2, 100, iov, 4), 2);
	cr_assert_eq(iov[0].iov_len, 1);
	cr_assert_eq(iov[1].iov_len, 5);
	cr_assert_eq(virtq_chain_iov(&c, false, 0, 6, iov, 4), 2);
	cr_assert_eq(iov[1].iov_len, 2);
}

/* Every way a guest can break a chain is refused, not followed. */
Test(virtq, malformed_chains_are_errors)
{
	struct virtq_chain c;
	set_desc(0, 0x10000, 16, VRING_DESC_F_NEXT, 0); /* loop */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	set_desc(0, 0xffffffff000ULL, 16, 0, 0); /* outside RAM */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	set_desc(0, 0x10000, 0, 0, 0); /* zero length */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	set_desc(0, 0xff000, 0x2000, 0, 0); /* runs past the end of RAM */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	set_desc(0, 0x10000, 16, VRING_DESC_F_NEXT, QN); /* next beyond the table */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	offer(QN + 1); /* head beyond the table */
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	set_desc(0, 0x10000, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(1, 0x10100, 16, 0, 0); /* readable after writable */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	set_desc(0, 0x10000, 16, VRING_DESC_F_INDIRECT, 0); /* not negotiated */
	offer(0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);

	setup();
	struct vring_avail *a = mem_ptr(&mem, AVAIL, 6 + 2 * QN);
	a->idx = QN + 1; /* more buffers than the ring holds */
	cr_assert_eq(virtq_pop(&q, &mem, &c), -EINVAL);
}

Test(virtq, activation_checks_size_alignment_and_placement)
{
	q.size = 6; /* not a power of two */
	cr_assert_eq(virtq_activate(&q, &mem), -EINVAL);
	q.size = 512; /* beyond max */
	cr_assert_eq(virtq_activate(&q, &mem), -EINVAL);
	q.size = QN;
	q.desc_gpa = DESC + 8; /* descriptors need 16-byte alignment */
	cr_assert_eq(virtq_activate(&q, &mem), -EINVAL);
	q.desc_gpa = (1 << 20) - 16; /* table runs off the end */
	cr_assert_eq(virtq_activate(&q, &mem), -EINVAL);
	q.desc_gpa = DESC;
	q.used_gpa = USED + 2;
	cr_assert_eq(virtq_activate(&q, &mem), -EINVAL);
}

Test(virtq, undo_pop_returns_the_same_chain)
{
	struct virtq_chain c;
	set_desc(2, 0x10000, 8, 0, 0);
	offer(2);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	virtq_undo_pop(&q);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.head, 2);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0);
}

Test(virtq, event_idx_suppresses_interrupts_until_asked)
{
	q.event_idx = true;
	struct vring_avail *a = mem_ptr(&mem, AVAIL, 6 + 2 * QN + 2);
	set_desc(0, 0x10000, 8, 0, 0);
	/* used_event = n: interrupt when the used index moves past n. */
	a->ring[QN] = 0;
	virtq_push(&q, 0, 0);
	cr_assert(virtq_should_signal(&q), "first signal always goes");
	virtq_push(&q, 0, 0);
	cr_assert_not(virtq_should_signal(&q), "index 0 was passed before the last signal");
	a->ring[QN] = 2;
	virtq_push(&q, 0, 0);
	cr_assert(virtq_should_signal(&q), "the index moved past used_event 2");
	a->ring[QN] = 10;
	virtq_push(&q, 0, 0);
	cr_assert_not(virtq_should_signal(&q), "used_event 10 is still ahead");

	/* Without EVENT_IDX the NO_INTERRUPT flag decides. */
	q.event_idx = false;
	a->flags = VRING_AVAIL_F_NO_INTERRUPT;
	virtq_push(&q, 0, 0);
	cr_assert_not(virtq_should_signal(&q));
	a->flags = 0;
	cr_assert(virtq_should_signal(&q));
}

Test(virtq, arm_notify_publishes_avail_event_and_sees_races)
{
	q.event_idx = true;
	struct vring_used *u = mem_ptr(&mem, USED, 6 + 8 * QN + 2);
	cr_assert_not(virtq_arm_notify(&q));
	cr_assert_eq(*(uint16_t *)&u->ring[QN], 0);
	set_desc(0, 0x10000, 8, 0, 0);
	offer(0); /* arrives "meanwhile" */
	cr_assert(virtq_arm_notify(&q));
}
