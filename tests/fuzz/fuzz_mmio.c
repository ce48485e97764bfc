/* libFuzzer target: the virtio-mmio transport (vmm/virtio/mmio.c) driving
 * a real device, virtio-blk on a memory file (Sync or Async engine),
 * virtio-rng, virtio-balloon, virtio-mem or virtio-pmem on a memory file, the way a guest and the VMM thread's event
 * loop do, in any order the input picks.
 *
 * Input: a device byte (see setup()), rate-limiter bytes, then operations
 * (see the OP_ list): register reads and writes at any offset and width
 * through the MMIO bus; guest memory writes, raw or as descriptor chains
 * and avail entries the harness places; queue notifications (what a
 * QueueNotify write's ioeventfd delivers); event-loop turns (notifications,
 * rate-limiter timers, Async I/O completions in any order, or failing);
 * pause and resume; PATCH of a drive; and snapshots of the live device:
 * paused, drained and saved with the state file's encoding, then resumed
 * (the VM carries on) or loaded into a new device, the saved bytes
 * optionally corrupted first. FUZZ_MMIO_TRACE=1 prints each operation.
 *
 * Nothing may crash, leak, hang or touch memory outside the guest's (guest
 * RAM is two regions between inaccessible guard pages, not contiguous on
 * the host). Also checked: a paused device becomes idle once its I/O
 * completes; a device saved live restores and saves again to the same
 * bytes; a restored device is in a state the transport can reach.
 *
 * The VM (irqfd, ioeventfd) and the event loop are stubbed here: the
 * harness signals the ioeventfd a QueueNotify write would, and runs what
 * the loop would when the input says so. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../../vmm/layout.h"
#include "../../vmm/log.h"
#include "../../vmm/snapshot/snapfile.h"
#include "../../vmm/snapshot/tags.h"
#include "../../vmm/virtio/blk.h"
#include "../../vmm/virtio/balloon.h"
#include "../../vmm/virtio/mem.h"
#include "../../vmm/virtio/pmem.h"
#include "../../vmm/virtio/rng.h"
#include "../../vmm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM0_SIZE (1u << 20)             /* guest-physical 0 */
#define RAM1_GPA LAYOUT_MMIO_GAP_END     /* the region above the MMIO gap */
#define RAM1_SIZE (64u << 10)
#define HP_GPA (RAM1_GPA + LAYOUT_HOTPLUG_ALIGN) /* virtio-mem's region */
#define HP_SIZE (128u << 20)
#define GUARD (1u << 20)
#define DISK_SIZE ((64u << 10) + 100)    /* a tail that is not a whole sector */
#define QUEUE_AREA(q) (0x4000u * (q))    /* desc +0, avail +0x1000, used +0x2000 */
#define BUF_START QUEUE_AREA(VIRTIO_MAX_QUEUES)
#define MAX_OPS 2048
#define MAX_INFLIGHT 8                   /* "ring" entries: more falls back to Sync */

static struct vm vm;
static struct evloop loop;
static int disk_fd = -1;
static bool trace; /* FUZZ_MMIO_TRACE set: each operation to stderr, for triage */

static struct {
	bool rng;                        /* virtio-rng, else virtio-blk */
	bool pmem;                       /* virtio-pmem (before rng and blk) */
	bool balloon;                    /* virtio-balloon (before all but virtio-mem) */
	bool hotplug;                    /* virtio-mem (before all others) */
	struct memory_hotplug_config hotplug_cfg;
	struct virtio_mem memdev;
	struct balloon_config balloon_cfg;
	struct drive_config drive;
	struct pmem_config pmem_cfg;
	struct ratelimiter_config rl;
	struct virtio_blk blk;
	struct virtio_rng rngdev;
	struct virtio_pmem pmemdev;
	struct virtio_balloon balloondev;
	struct virtio_dev *vd;
	/* What the event loop holds. */
	struct { struct evloop_op *op; struct io_uring_sqe sqe; } io[MAX_INFLIGHT];
	unsigned nio;
	struct evloop_timer *timers[4];
	unsigned ntimers;
	struct evloop_watch *watches[VIRTIO_MAX_QUEUES + 1];
	unsigned nwatches;
	/* The harness's driver: next free descriptor and buffer. */
	uint16_t next_desc[VIRTIO_MAX_QUEUES];
	uint32_t next_buf;
} h;

static noreturn void fatal(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_mmio: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	__builtin_trap();
}

/* ---- stubs: the VM and the event loop --------------------------------- */

int vm_irqfd(struct vm *v, unsigned gsi)
{
	(void)v;
	(void)gsi;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* The pmem region's memory slot: the guest's accesses to it never reach
 * ember, so there is nothing to do. */
int vm_add_memory(struct vm *v, uint64_t gpa, uint64_t size, void *host, bool read_only)
{
	(void)v;
	(void)gpa;
	(void)size;
	(void)host;
	(void)read_only;
	return MEM_MAX_REGIONS;
}

void vm_remove_memory(struct vm *v, int slot)
{
	(void)v;
	(void)slot;
}

int vm_ioeventfd(struct vm *v, uint64_t addr, uint32_t value, int fd)
{
	(void)v;
	(void)addr;
	(void)value;
	(void)fd;
	return 0; /* mmio_access() below signals fd itself */
}

struct io_uring_sqe *evloop_sqe(struct evloop *l, struct evloop_op *op)
{
	(void)l;
	if (h.nio == MAX_INFLIGHT)
		return NULL;
	h.io[h.nio].op = op;
	memset(&h.io[h.nio].sqe, 0, sizeof(h.io[h.nio].sqe));
	return &h.io[h.nio++].sqe;
}

int evloop_watch(struct evloop *l, struct evloop_watch *w, int fd, unsigned events,
		 void (*fn)(struct evloop_watch *w, int res))
{
	if (h.nwatches == sizeof(h.watches) / sizeof(h.watches[0]))
		fatal("more watches than the transport sets", NULL);
	w->loop = l;
	w->fd = fd;
	w->events = events;
	w->fn = fn;
	w->armed = true;
	h.watches[h.nwatches++] = w;
	return 0;
}

void evloop_timer_arm(struct evloop *l, struct evloop_timer *t, uint64_t ns,
		      void (*fn)(struct evloop_timer *t))
{
	(void)ns;
	if (t->armed)
		return;
	t->loop = l;
	t->fn = fn;
	t->armed = true;
	for (unsigned i = 0; i < h.ntimers; i++)
		if (h.timers[i] == t)
			return;
	if (h.ntimers == sizeof(h.timers) / sizeof(h.timers[0]))
		fatal("more timers than the devices have", NULL);
	h.timers[h.ntimers++] = t;
}

/* What io_uring would do for the SQEs blk.c submits. */
static int sqe_run(const struct io_uring_sqe *s)
{
	const struct iovec *iov = (const struct iovec *)(uintptr_t)s->addr;
	ssize_t n;
	switch (s->opcode) {
	case IORING_OP_READV: n = preadv(s->fd, iov, (int)s->len, (off_t)s->off); break;
	case IORING_OP_WRITEV: n = pwritev(s->fd, iov, (int)s->len, (off_t)s->off); break;
	case IORING_OP_FSYNC: n = fsync(s->fd); break;
	case IORING_OP_FALLOCATE: n = fallocate(s->fd, (int)s->len, (off_t)s->off, (off_t)s->addr); break;
	default: fatal("unexpected io_uring operation", NULL);
	}
	return n < 0 ? -errno : (int)n;
}

/* Complete in-flight operation i (in any order, as io_uring may), or fail it. */
static void io_complete(unsigned i, bool fail)
{
	struct evloop_op *op = h.io[i].op;
	int res = fail ? -EIO : sqe_run(&h.io[i].sqe);
	h.io[i] = h.io[--h.nio];
	if (op)
		op->complete(op, res, 0);
}

static void fire_timers(void)
{
	for (unsigned i = 0; i < h.ntimers; i++) {
		struct evloop_timer *t = h.timers[i];
		if (t->armed) {
			t->armed = false;
			t->fn(t);
		}
	}
}

/* Each watch's callback, as the loop runs it when the fd polls readable
 * (the transport's callback reads the eventfd and finds it empty if not). */
static void run_watches(void)
{
	for (unsigned i = 0; i < h.nwatches; i++)
		h.watches[i]->fn(h.watches[i], POLLIN);
}

/* ---- guest memory ----------------------------------------------------- */

static int guest_map(void)
{
	size_t total = GUARD + RAM0_SIZE + GUARD + RAM1_SIZE + GUARD + HP_SIZE + GUARD;
	uint8_t *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	uint8_t *r0 = p + GUARD, *r1 = r0 + RAM0_SIZE + GUARD, *hp = r1 + RAM1_SIZE + GUARD;
	if (mprotect(r0, RAM0_SIZE, PROT_READ | PROT_WRITE) || mprotect(r1, RAM1_SIZE, PROT_READ | PROT_WRITE) ||
	    mprotect(hp, HP_SIZE, PROT_READ | PROT_WRITE))
		return -1;
	struct guest_mem *m = &vm.mem;
	m->host = r0;
	m->size = RAM0_SIZE + RAM1_SIZE;
	m->regions[0] = (struct mem_region){ .gpa = 0, .size = RAM0_SIZE, .host = r0 };
	m->regions[1] = (struct mem_region){ .gpa = RAM1_GPA, .size = RAM1_SIZE, .host = r1 };
	m->regions[2] = (struct mem_region){ .gpa = HP_GPA, .size = HP_SIZE, .host = hp, .hotplug = true };
	m->nregions = 3;
	return 0;
}

static void guest_clear(void)
{
	madvise(vm.mem.regions[0].host, RAM0_SIZE, MADV_DONTNEED);
	madvise(vm.mem.regions[1].host, RAM1_SIZE, MADV_DONTNEED);
	madvise(vm.mem.regions[2].host, HP_SIZE, MADV_DONTNEED);
}

/* A guest-physical address from 32 input bits: mostly in RAM, sometimes
 * at its edges or in neither region. */
static uint64_t pick_gpa(uint32_t v)
{
	switch (v >> 30) {
	case 0:
	case 1: return v % RAM0_SIZE;
	case 2: return RAM1_GPA + v % RAM1_SIZE;
	default: return (uint64_t)(v & 0xffff) << 16 | (v >> 16 & 0x3fff);
	}
}

/* The guest writes len bytes at gpa, as far as they fit in RAM. */
static void guest_write(uint64_t gpa, const void *src, size_t len)
{
	for (unsigned i = 0; i < vm.mem.nregions; i++) {
		const struct mem_region *r = &vm.mem.regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			uint64_t room = r->size - (gpa - r->gpa);
			memcpy(r->host + (gpa - r->gpa), src, len < room ? len : room);
		}
	}
}

/* ---- the input -------------------------------------------------------- */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}
static uint8_t u8(struct input *in) { return (uint8_t)take(in, 1); }
static uint16_t u16(struct input *in) { return (uint16_t)take(in, 2); }
static uint32_t u32(struct input *in) { return (uint32_t)take(in, 4); }

/* ---- the device ------------------------------------------------------- */

static void dev_create(void)
{
	char err[256] = "";
	int ret;
	bus_init(&vm.mmio);
	if (h.hotplug) {
		ret = virtio_mem_init(&h.memdev, &vm, &loop, 0, &h.hotplug_cfg);
		h.vd = &h.memdev.vd;
	} else if (h.balloon) {
		ret = virtio_balloon_init(&h.balloondev, &vm, &loop, 0, &h.balloon_cfg);
		h.vd = &h.balloondev.vd;
	} else if (h.pmem) {
		ret = virtio_pmem_init(&h.pmemdev, &vm, &loop, 0, LAYOUT_MMIO_GAP_END + (1ULL << 30), &h.pmem_cfg, err,
				       sizeof(err));
		h.vd = &h.pmemdev.vd;
	} else if (h.rng) {
		ret = virtio_rng_init(&h.rngdev, &vm, &loop, 0, &h.rl);
		h.vd = &h.rngdev.vd;
	} else {
		ret = virtio_blk_init(&h.blk, &vm, &loop, 0, &h.drive, err, sizeof(err));
		h.vd = &h.blk.vd;
	}
	if (ret)
		fatal("device setup failed", err[0] ? err : strerror(-ret));
}

static void dev_start(void)
{
	if (virtio_dev_start_io(h.vd))
		fatal("start_io failed", NULL);
}

/* What is in flight dies with the device (ember only destroys devices at
 * exit, or after draining them for a snapshot). */
static void dev_destroy(void)
{
	h.nio = h.ntimers = h.nwatches = 0;
	virtio_dev_destroy(h.vd);
	bus_destroy(&vm.mmio);
}

static void mmio_access(uint32_t off, uint8_t *data, uint32_t len, bool is_write)
{
	/* A 4-byte QueueNotify write of a queue's index is the ioeventfd's:
	 * KVM signals it and the access never reaches ember. */
	uint32_t v = 0;
	memcpy(&v, data, len < 4 ? len : 4);
	if (is_write && off == VIRTIO_MMIO_QUEUE_NOTIFY && len == 4 && v < h.vd->ops->num_queues) {
		uint64_t one = 1;
		if (write(h.vd->notify[v].fd, &one, sizeof(one)) != sizeof(one))
			fatal("ioeventfd write failed", strerror(errno));
		return;
	}
	bus_dispatch(&vm.mmio, h.vd->base + off, data, len, is_write);
}

static void mmio_write32(uint32_t off, uint32_t v)
{
	mmio_access(off, (uint8_t *)&v, 4, true);
}

static uint32_t mmio_read32(uint32_t off)
{
	uint32_t v = 0;
	mmio_access(off, (uint8_t *)&v, 4, false);
	return v;
}

/* Pause, let what is in flight finish (as a snapshot waits for), and
 * check the device then says it is idle. */
static void dev_pause_drain(void)
{
	virtio_dev_pause(h.vd);
	while (h.nio)
		io_complete(0, false);
	if (!virtio_dev_idle(h.vd))
		fatal("paused device not idle with nothing in flight", NULL);
}

static void dev_save(struct snap_writer *w)
{
	sw_init(w);
	sw_begin(w, TAG_VIRTIO);
	sw_u32(w, h.vd->index);
	virtio_dev_save(h.vd, w);
	sw_end(w);
	if (w->oom)
		fatal("out of memory saving", NULL);
}

/* Restore what dev_save wrote, as a snapshot load does. */
static bool dev_restore(const uint8_t *buf, size_t len, char *why, size_t whylen)
{
	struct snap_reader r, sec;
	uint32_t tag;
	sr_init(&r, buf, len);
	if (!sr_section(&r, &tag, &sec) || tag != TAG_VIRTIO) {
		snprintf(why, whylen, "no virtio section");
		return false;
	}
	uint32_t index = sr_u32(&sec);
	if (!sec.bad && index != h.vd->index)
		sr_fail(&sec, "virtio device %u where %u was expected", index, h.vd->index);
	bool ok = !sec.bad && virtio_dev_restore(h.vd, &sec) == 0 && sr_done(&sec, "virtio section");
	snprintf(why, whylen, "%s", sec.why);
	return ok;
}

/* A restored device must be in a state the transport can reach. */
static void check_reachable(const struct virtio_dev *vd)
{
	const uint32_t need = VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	if (vd->active && (vd->status & need) != need)
		fatal("restored an active device the driver never finished setting up", NULL);
}

/* A snapshot of the live device. how: bit 7, the VM carries on (resumed,
 * as after snapshot/create); else it is loaded into a new device (paused
 * and resumed, as a load with resume_vm does), the saved bytes first
 * corrupted if bit 0 is set (bits 1-3: how many bytes, then for each an
 * offset and an xor). */
static void op_snapshot(struct input *in)
{
	uint8_t how = u8(in);
	struct snap_writer w;
	dev_pause_drain();
	dev_save(&w);
	if (how & 0x80) {
		sw_free(&w);
		virtio_dev_resume(h.vd);
		return;
	}
	unsigned flips = how & 1 ? 1 + (how >> 1 & 7) : 0;
	for (unsigned i = 0; i < flips; i++) {
		uint16_t at = u16(in);
		w.buf[at % w.len] ^= (uint8_t)(u8(in) | 1);
	}
	dev_destroy();
	dev_create();
	char why[160];
	bool ok = dev_restore(w.buf, w.len, why, sizeof(why));
	if (trace)
		fprintf(stderr, "fuzz_mmio: %u bytes changed, restore %s %s\n", flips, ok ? "ok" : "refused:", ok ? "" : why);
	if (!ok && !flips)
		fatal("a device saved live does not restore", why);
	if (ok) {
		check_reachable(h.vd);
		if (!flips) {
			struct snap_writer again;
			dev_save(&again);
			if (again.len != w.len || memcmp(again.buf, w.buf, w.len))
				fatal("a restored device saves different bytes", NULL);
			sw_free(&again);
		}
	} else {
		/* The load failed: a device as after a fresh start. */
		dev_destroy();
		dev_create();
	}
	sw_free(&w);
	dev_start();
	if (ok && h.vd->ops->restored)
		h.vd->ops->restored(h.vd);
	virtio_dev_pause(h.vd);
	virtio_dev_resume(h.vd);
}

/* A driver's setup: reset, features (as offered, minus what the input
 * drops), each queue at its area with an input-chosen size, DRIVER_OK. */
static void op_driver_init(struct input *in)
{
	uint8_t how = u8(in);
	const uint32_t ack = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	mmio_write32(VIRTIO_MMIO_STATUS, 0);
	mmio_write32(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	mmio_write32(VIRTIO_MMIO_STATUS, ack);
	uint64_t f = 0;
	for (uint32_t sel = 0; sel < 2; sel++) {
		mmio_write32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		f |= (uint64_t)mmio_read32(VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel);
	}
	if (how & 1)
		f &= ~(1ULL << VIRTIO_RING_F_EVENT_IDX);
	if (how & 2)
		f &= ~(1ULL << VIRTIO_F_VERSION_1);
	if (how & 4)
		f ^= 1ULL << (u8(in) % 64);
	for (uint32_t sel = 0; sel < 2; sel++) {
		mmio_write32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
		mmio_write32(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> (32 * sel)));
	}
	mmio_write32(VIRTIO_MMIO_STATUS, ack | VIRTIO_CONFIG_S_FEATURES_OK);
	for (uint32_t q = 0; q < h.vd->ops->num_queues; q++) {
		uint32_t base = QUEUE_AREA(q);
		uint8_t zero[0x3000] = { 0 };
		guest_write(base, zero, sizeof(zero)); /* the driver's fresh rings */
		h.next_desc[q] = 0;
		mmio_write32(VIRTIO_MMIO_QUEUE_SEL, q);
		uint32_t max = mmio_read32(VIRTIO_MMIO_QUEUE_NUM_MAX);
		uint32_t n = 1u << (u8(in) % 9);
		mmio_write32(VIRTIO_MMIO_QUEUE_NUM, n < max ? n : max);
		mmio_write32(VIRTIO_MMIO_QUEUE_DESC_LOW, base);
		mmio_write32(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		mmio_write32(VIRTIO_MMIO_QUEUE_AVAIL_LOW, base + 0x1000);
		mmio_write32(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
		mmio_write32(VIRTIO_MMIO_QUEUE_USED_LOW, base + 0x2000);
		mmio_write32(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
		mmio_write32(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	mmio_write32(VIRTIO_MMIO_STATUS, ack | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* A descriptor chain in queue q's table, its head put on the avail ring
 * (as the driver at QUEUE_AREA(q) would, whatever the device was told).
 * how: bit 0 then a notification, bits 1-3 1..8 buffers (or bit 7: a
 * count byte, 1..256), bits 5-6 the queue (3, for a device with more than
 * four: a byte more says which from the fourth on). Each buffer: a flags byte (bits
 * 0-2 its length from lens[], 3 device-writable, 4 at an input-chosen
 * address instead of the next free one, 5 its first 16 bytes from the
 * input: a block request header, a discard entry). */
static void op_add_chain(struct input *in)
{
	static const uint32_t lens[8] = { 1, 16, 17, 512, 1024, 4096, 65536, 0 };
	uint8_t how = u8(in);
	unsigned nq = h.vd->ops->num_queues, q = (how >> 5 & 3) % nq;
	if (nq > 4 && q == 3) /* a byte more picks among the queues from the fourth */
		q += u8(in) % (nq - 3);
	unsigned nbufs = how & 0x80 ? 1u + u8(in) : 1u + (how >> 1 & 7);
	uint16_t size = h.vd->vq[q].size;
	if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
		size = 1;
	uint32_t base = QUEUE_AREA(q);
	uint16_t head = h.next_desc[q] % size, i = head;
	for (unsigned k = 0; k < nbufs; k++) {
		uint8_t f = u8(in);
		uint32_t len = lens[f & 7] ? lens[f & 7] : 1u + u16(in);
		uint64_t gpa;
		if (f & 0x10) {
			gpa = pick_gpa(u32(in));
		} else {
			if (h.next_buf < BUF_START || h.next_buf + len > RAM0_SIZE)
				h.next_buf = BUF_START;
			gpa = h.next_buf;
			h.next_buf = (h.next_buf + len + 15) & ~15u;
		}
		if (f & 0x20) {
			uint8_t head16[16];
			for (unsigned b = 0; b < 16; b++)
				head16[b] = u8(in);
			guest_write(gpa, head16, len < 16 ? len : 16);
		}
		uint16_t next = (uint16_t)((i + 1) % size);
		struct vring_desc d = {
			.addr = gpa, .len = len,
			.flags = (uint16_t)((f & 8 ? VRING_DESC_F_WRITE : 0) | (k + 1 < nbufs ? VRING_DESC_F_NEXT : 0)),
			.next = next,
		};
		guest_write(base + 16u * i, &d, sizeof(d));
		i = next;
	}
	h.next_desc[q] = i;
	struct vring_avail *avail = mem_ptr(&vm.mem, base + 0x1000, 6 + 2u * size);
	avail->ring[avail->idx % size] = head;
	avail->idx = (uint16_t)(avail->idx + 1); /* free-running, modulo 2^16 */
	if (how & 1)
		mmio_write32(VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

enum {
	OP_WRITE,       /* offset:u16 width:u8 value:u64 — a register or config write */
	OP_READ,        /* offset:u16 width:u8 */
	OP_MEM,         /* gpa:u32 len:u8 bytes — the guest writes its memory */
	OP_NOTIFY,      /* queue:u8 — what a QueueNotify write signals */
	OP_RUN,         /* the event loop: notifications, then timers */
	OP_COMPLETE,    /* which:u8 — an Async I/O completes (bit 7: with an error) */
	OP_PAUSE,       /* how:u8 — pause; completions, timers, notifications meanwhile; resume */
	OP_SNAPSHOT,    /* how:u8 [at:u16 xor:u8]... — see op_snapshot */
	OP_DRIVER_INIT, /* how:u8 sizes:u8... — see op_driver_init */
	OP_CHAIN,       /* see op_add_chain */
	OP_UPDATE,      /* how:u8 — PATCH /drives: the same file again and/or the rate limiter */
	OP_COUNT
};

static void op_pause(struct input *in)
{
	uint8_t how = u8(in);
	virtio_dev_pause(h.vd);
	for (unsigned k = how & 7; k && h.nio; k--)
		io_complete(u8(in) % h.nio, false);
	if (how & 8)
		fire_timers();
	if (how & 16)
		run_watches();
	virtio_dev_resume(h.vd);
}

static void op_update(struct input *in)
{
	uint8_t how = u8(in);
	char err[256];
	if (h.pmem && (how & 2))
		virtio_pmem_update(&h.pmemdev, &h.rl);
	if (h.balloon) {
		/* PATCH /balloon and /balloon/statistics (refusals are fine). */
		if (how & 1)
			virtio_balloon_set_target(&h.balloondev, how >> 2, err, sizeof(err));
		else
			virtio_balloon_set_interval(&h.balloondev, how >> 2, err, sizeof(err));
		cJSON_Delete(virtio_balloon_stats_obj(&h.balloondev, err, sizeof(err)));
		/* /balloon/hinting/start (bit 6: acknowledge_on_stop) or stop, then status. */
		if (how & 0x80)
			virtio_balloon_hint_start(&h.balloondev, how & 0x40, err, sizeof(err));
		else if (how & 0x40)
			virtio_balloon_hint_stop(&h.balloondev, err, sizeof(err));
		cJSON_Delete(virtio_balloon_hint_status(&h.balloondev, err, sizeof(err)));
	}
	if (h.hotplug) {
		/* PATCH /hotplug/memory, in MiB (refusals are fine), and GET. */
		virtio_mem_set_requested(&h.memdev, how, err, sizeof(err));
		cJSON_Delete(virtio_mem_status_obj(&h.memdev));
		return;
	}
	if (h.rng || h.pmem || h.balloon)
		return;
	const char *path = how & 1 ? h.drive.path_on_host : NULL;
	if (virtio_blk_update(&h.blk, path, how & 2 ? &h.rl : NULL, err, sizeof(err)))
		fatal("drive update failed", err);
}

static void run_op(struct input *in)
{
	static const uint32_t widths[4] = { 1, 2, 4, 8 };
	static const char *const names[OP_COUNT] = { "write", "read", "mem", "notify", "run", "complete",
		"pause", "snapshot", "driver-init", "chain", "update" };
	uint8_t data[8] = { 0 };
	unsigned op = u8(in) % OP_COUNT;
	if (trace)
		fprintf(stderr, "fuzz_mmio: %s (next byte 0x%02x; status 0x%x, active %d)\n", names[op],
			in->n ? in->p[0] : 0, h.vd->status, h.vd->active);
	switch (op) {
	case OP_WRITE: {
		uint32_t off = u16(in) & 0x1fff, len = widths[u8(in) & 3];
		uint64_t v = take(in, len);
		memcpy(data, &v, len);
		mmio_access(off, data, len, true);
		break;
	}
	case OP_READ: {
		uint32_t off = u16(in) & 0x1fff, len = widths[u8(in) & 3];
		mmio_access(off, data, len, false);
		break;
	}
	case OP_MEM: {
		uint64_t gpa = pick_gpa(u32(in));
		size_t len = u8(in);
		len = len < in->n ? len : in->n;
		guest_write(gpa, in->p, len);
		in->p += len;
		in->n -= len;
		break;
	}
	case OP_NOTIFY:
		mmio_write32(VIRTIO_MMIO_QUEUE_NOTIFY, u8(in) % (h.vd->ops->num_queues + 1));
		break;
	case OP_RUN:
		run_watches();
		fire_timers();
		break;
	case OP_COMPLETE: {
		uint8_t which = u8(in);
		if (h.nio)
			io_complete((which & 0x7f) % h.nio, which & 0x80);
		break;
	}
	case OP_PAUSE: op_pause(in); break;
	case OP_SNAPSHOT: op_snapshot(in); break;
	case OP_DRIVER_INIT: op_driver_init(in); break;
	case OP_CHAIN: op_add_chain(in); break;
	case OP_UPDATE: op_update(in); break;
	}
}

/* The device byte: bit 7 virtio-mem (bit 1: 128 MiB blocks, else 2 MiB),
 * else bit 6 virtio-balloon (bit 1: statistics, bit 2: deflate on OOM,
 * bit 3: free page reporting, bit 0: free page hinting), else bit 5
 * virtio-pmem (bit 2: read-only), else bit 0
 * virtio-rng, else virtio-blk; for blk, bit 1 the Async engine, bit 2
 * read-only, bit 3 a writeback cache. Bit 4: a rate
 * limiter, its bandwidth and ops bucket sizes and bursts from the next 6
 * bytes. Buckets refill so slowly that no refill falls within one input,
 * which keeps runs repeatable. */
static void setup(struct input *in)
{
	uint8_t dev = u8(in);
	/* One device: the first of these its bits name. */
	h.hotplug = dev & 0x80;
	h.balloon = !h.hotplug && (dev & 0x40);
	h.pmem = !h.hotplug && !h.balloon && (dev & 0x20);
	h.rng = !h.hotplug && !h.balloon && !h.pmem && (dev & 1);
	h.hotplug_cfg = (struct memory_hotplug_config){ .set = true, .total_size_mib = HP_SIZE >> 20,
		.block_size_mib = dev & 2 ? 128 : 2, .slot_size_mib = 128 };
	h.balloon_cfg = (struct balloon_config){ .set = true, .amount_mib = 1,
		.stats_polling_interval_s = dev & 2 ? 1 : 0, .deflate_on_oom = dev & 4,
		.free_page_reporting = dev & 8, .free_page_hinting = dev & 1 };
	memset(&h.drive, 0, sizeof(h.drive));
	snprintf(h.drive.drive_id, sizeof(h.drive.drive_id), "fuzz");
	snprintf(h.drive.path_on_host, sizeof(h.drive.path_on_host), "/proc/self/fd/%d", disk_fd);
	h.drive.io_engine = dev & 2 ? IO_ENGINE_ASYNC : IO_ENGINE_SYNC;
	h.drive.is_read_only = dev & 4;
	h.drive.cache_type = dev & 8 ? CACHE_WRITEBACK : CACHE_UNSAFE;
	memset(&h.rl, 0, sizeof(h.rl));
	if (dev & 16) {
		const uint64_t slow = 1000000000000ULL; /* ms */
		h.rl.bandwidth = (struct token_bucket_config){ .size = u16(in), .one_time_burst = u16(in), .refill_time_ms = slow };
		h.rl.ops = (struct token_bucket_config){ .size = u8(in), .one_time_burst = u8(in), .refill_time_ms = slow };
	}
	h.drive.rate_limiter = h.rl;
	memset(&h.pmem_cfg, 0, sizeof(h.pmem_cfg));
	snprintf(h.pmem_cfg.id, sizeof(h.pmem_cfg.id), "fuzz");
	snprintf(h.pmem_cfg.path_on_host, sizeof(h.pmem_cfg.path_on_host), "%s", h.drive.path_on_host);
	h.pmem_cfg.read_only = dev & 4;
	h.pmem_cfg.rate_limiter = h.rl;
	h.next_buf = BUF_START;
	memset(h.next_desc, 0, sizeof(h.next_desc));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vm.mem.host) {
		log_set_level(LOG_ERROR);
		trace = getenv("FUZZ_MMIO_TRACE") != NULL;
		vm.vm_fd = -1;
		disk_fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
		if (disk_fd < 0 || guest_map())
			fatal("setup failed", strerror(errno));
	}
	guest_clear();
	if (ftruncate(disk_fd, 0) || ftruncate(disk_fd, DISK_SIZE))
		fatal("disk reset failed", strerror(errno));

	struct input in = { data, size };
	setup(&in);
	dev_create();
	dev_start();
	for (unsigned n = 0; in.n && n < MAX_OPS; n++)
		run_op(&in);
	/* The loop runs on: everything notified, due or in flight finishes. */
	for (unsigned round = 0; round < 4; round++) {
		run_watches();
		fire_timers();
		while (h.nio)
			io_complete(0, false);
	}
	char counters[512];
	virtio_counters(h.vd, counters, sizeof(counters));
	if (trace)
		fprintf(stderr, "fuzz_mmio: end: status 0x%x, active %d, %s\n", h.vd->status, h.vd->active, counters);
	dev_destroy();
	return 0;
}
