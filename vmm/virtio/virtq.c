#include "virtq.h"

#include <errno.h>
#include <string.h>

#include "../memory.h"

static size_t desc_table_size(uint16_t n) { return 16u * n; }
static size_t avail_size(uint16_t n) { return 6u + 2u * n; }   /* + used_event */
static size_t used_size(uint16_t n) { return 6u + 8u * n; }    /* + avail_event */

int virtq_activate(struct virtq *q, const struct guest_mem *mem)
{
	uint16_t n = q->size;
	if (n == 0 || n > q->max_size || (n & (n - 1)))
		return -EINVAL;
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -EINVAL;
	q->desc = mem_ptr(mem, q->desc_gpa, desc_table_size(n));
	q->avail = mem_ptr(mem, q->avail_gpa, avail_size(n));
	q->used = mem_ptr(mem, q->used_gpa, used_size(n));
	if (!q->desc || !q->avail || !q->used)
		return -EINVAL;
	q->mem = mem;
	q->last_avail = 0;
	q->used_idx = 0;
	q->signalled_valid = false;
	return 0;
}

void virtq_reset(struct virtq *q)
{
	uint16_t max = q->max_size;
	memset(q, 0, sizeof(*q));
	q->max_size = max;
}

/* The guest writes these fields concurrently: read each exactly once. */
static uint16_t load16_acquire(const volatile uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

int virtq_pop(struct virtq *q, const struct guest_mem *mem, struct virtq_chain *c)
{
	uint16_t avail_idx = load16_acquire(&q->avail->idx);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending == 0)
		return 0;
	if (pending > q->size)
		return -EINVAL; /* the driver claims more buffers than the ring holds */

	uint16_t head = __atomic_load_n(&q->avail->ring[q->last_avail & (q->size - 1)],
					__ATOMIC_RELAXED);
	if (head >= q->size)
		return -EINVAL;

	c->head = head;
	c->nsegs = 0;
	c->nread = 0;
	c->read_len = 0;
	c->write_len = 0;
	uint16_t i = head;
	for (unsigned hops = 0;; hops++) {
		if (hops >= q->size)
			return -EINVAL; /* a loop, or a chain longer than the table */
		struct vring_desc d;
		memcpy(&d, &q->desc[i], sizeof(d)); /* one copy: no re-reads */
		if (d.flags & VRING_DESC_F_INDIRECT)
			return -EINVAL; /* not offered, so not allowed */
		if (d.len == 0)
			return -EINVAL;
		bool write = d.flags & VRING_DESC_F_WRITE;
		if (!write && c->write_len)
			return -EINVAL; /* readable after writable breaks the spec */
		uint8_t *p = mem_ptr(mem, d.addr, d.len);
		if (!p)
			return -EINVAL;
		/* Totals stay below 4 GiB: a chain cannot describe more. */
		uint64_t total = (uint64_t)c->read_len + c->write_len + d.len;
		if (total > UINT32_MAX)
			return -EINVAL;
		c->segs[c->nsegs++] = (struct virtq_seg){ p, d.len, write };
		if (write) {
			/* The device may write any of it: count it as written now,
			 * for diff snapshots (no-op without dirty tracking). */
			mem_mark_dirty(mem, p, d.len);
			c->write_len += d.len;
		} else {
			c->read_len += d.len;
			c->nread++;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		if (d.next >= q->size)
			return -EINVAL;
		i = d.next;
	}
	q->last_avail = (uint16_t)(q->last_avail + 1); /* ring indices run free, modulo 2^16 */
	return 1;
}

void virtq_undo_pop(struct virtq *q)
{
	q->last_avail = (uint16_t)(q->last_avail - 1);
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &q->used->ring[q->used_idx & (q->size - 1)];
	e->id = head;
	e->len = len;
	q->used_idx = (uint16_t)(q->used_idx + 1);
	/* The element must be visible before the index that publishes it. */
	__atomic_store_n(&q->used->idx, q->used_idx, __ATOMIC_RELEASE);
	mem_mark_dirty(q->mem, &q->used->idx, sizeof(q->used->idx));
	mem_mark_dirty(q->mem, e, sizeof(*e));
}

bool virtq_should_signal(struct virtq *q)
{
	/* Order our used->idx store before reading the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t new_idx = q->used_idx;
	bool signal;
	if (q->event_idx) {
		uint16_t used_event = __atomic_load_n(&q->avail->ring[q->size], __ATOMIC_RELAXED);
		uint16_t old = q->signalled_used;
		signal = !q->signalled_valid ||
			 (uint16_t)(new_idx - used_event - 1) < (uint16_t)(new_idx - old);
	} else {
		signal = !(load16_acquire(&q->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (signal) {
		q->signalled_used = new_idx;
		q->signalled_valid = true;
	}
	return signal;
}

uint16_t virtq_avail_idx(const struct virtq *q)
{
	return load16_acquire(&q->avail->idx);
}

void virtq_notify_beyond(struct virtq *q, uint16_t idx)
{
	if (q->event_idx) {
		volatile uint16_t *avail_event = (volatile uint16_t *)&q->used->ring[q->size];
		*avail_event = idx;
		mem_mark_dirty(q->mem, (const void *)avail_event, sizeof(uint16_t));
	} else {
		q->used->flags = 0;
		mem_mark_dirty(q->mem, &q->used->flags, sizeof(q->used->flags));
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_arm_notify(struct virtq *q)
{
	if (q->event_idx) {
		volatile uint16_t *avail_event = (volatile uint16_t *)&q->used->ring[q->size];
		*avail_event = q->last_avail;
		mem_mark_dirty(q->mem, (const void *)avail_event, sizeof(uint16_t));
	} else {
		q->used->flags = 0;
		mem_mark_dirty(q->mem, &q->used->flags, sizeof(q->used->flags));
	}
	/* Publish avail_event before checking for buffers that raced it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16_acquire(&q->avail->idx) != q->last_avail;
}

/* Copy between buf and the readable (to_chain false) or writable part of
 * a chain, from offset within that part. */
static size_t chain_copy(const struct virtq_chain *c, bool to_chain, size_t offset, void *buf,
			 size_t len)
{
	size_t done = 0;
	unsigned first = to_chain ? c->nread : 0, end = to_chain ? c->nsegs : c->nread;
	for (unsigned i = first; i < end && done < len; i++) {
		const struct virtq_seg *s = &c->segs[i];
		if (offset >= s->len) {
			offset -= s->len;
			continue;
		}
		size_t n = s->len - offset;
		if (n > len - done)
			n = len - done;
		if (to_chain)
			memcpy(s->addr + offset, (uint8_t *)buf + done, n);
		else
			memcpy((uint8_t *)buf + done, s->addr + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *buf, size_t len)
{
	return chain_copy(c, false, offset, buf, len);
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *buf, size_t len)
{
	return chain_copy(c, true, offset, (void *)buf, len);
}

int virtq_chain_iov(const struct virtq_chain *c, bool write, size_t offset, size_t len,
		    struct iovec *iov, int max)
{
	int n = 0;
	unsigned first = write ? c->nread : 0, end = write ? c->nsegs : c->nread;
	for (unsigned i = first; i < end && len && n < max; i++) {
		const struct virtq_seg *s = &c->segs[i];
		if (offset >= s->len) {
			offset -= s->len;
			continue;
		}
		size_t take = s->len - offset;
		if (take > len)
			take = len;
		iov[n++] = (struct iovec){ s->addr + offset, take };
		len -= take;
		offset = 0;
	}
	return n;
}
