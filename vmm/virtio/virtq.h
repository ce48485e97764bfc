/* Split virtqueues (virtio 1.x, section 2.7), driven from the device side.
 *
 * Everything here reads memory the guest controls and can change at any
 * moment. Ring indices are bounded by the queue size, every descriptor is
 * copied out of the table once and checked (index, flags, length, address
 * through the checked guest-memory accessor), and a chain can visit at most
 * size descriptors, so a loop ends as an error. An error means the queue is
 * broken: the transport then marks the device NEEDS_RESET. */
#ifndef EMBER_VIRTQ_H
#define EMBER_VIRTQ_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct guest_mem;

#define VIRTQ_MAX_SIZE 256

struct virtq {
	/* Set by the driver through the transport. */
	uint16_t size;       /* QueueNum, a power of two <= max_size */
	uint16_t max_size;
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx;      /* VIRTIO_RING_F_EVENT_IDX negotiated */

	/* Device state, valid once activated. */
	const struct guest_mem *mem; /* for dirty-page tracking of our writes */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail;   /* next avail ring slot to consume */
	uint16_t used_idx;     /* next used ring slot to fill */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	bool signalled_valid;
};

/* One buffer of a chain: a host pointer into guest RAM. */
struct virtq_seg {
	uint8_t *addr;
	uint32_t len;
	bool write;           /* device-writable */
};

struct virtq_chain {
	uint16_t head;
	uint16_t nsegs;
	uint16_t nread;       /* the first nread segments are device-readable */
	uint32_t read_len;    /* bytes in readable segments */
	uint32_t write_len;   /* bytes in writable segments */
	struct virtq_seg segs[VIRTQ_MAX_SIZE];
};

/* Validate the rings' placement and size and map them. Returns 0 or
 * -EINVAL (bad size or alignment, rings outside guest RAM). */
int virtq_activate(struct virtq *q, const struct guest_mem *mem);

/* Back to the state after reset (the driver's settings too). */
void virtq_reset(struct virtq *q);

/* Take the next available chain. Returns 1 with *c filled, 0 if the queue
 * is empty, -EINVAL if the guest broke the queue. */
int virtq_pop(struct virtq *q, const struct guest_mem *mem, struct virtq_chain *c);

/* Put the last popped chain back (e.g. a rate limiter said wait); the
 * next virtq_pop returns it again, re-validated. */
void virtq_undo_pop(struct virtq *q);

/* Return a chain to the driver with len bytes written into it. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/* Whether the driver wants an interrupt for what was pushed since the last
 * one (EVENT_IDX's used_event, or the NO_INTERRUPT flag). Call once per
 * batch; it records that the driver was signalled when it says true. */
bool virtq_should_signal(struct virtq *q);

/* Ask the driver to notify us when it adds buffers (EVENT_IDX's
 * avail_event). Returns true if buffers arrived meanwhile, in which case
 * the caller should keep popping instead of waiting. */
bool virtq_arm_notify(struct virtq *q);

/* The driver's avail index: how many buffers it has made available. */
uint16_t virtq_avail_idx(const struct virtq *q);

/* Ask the driver to notify us once it makes a buffer available past
 * avail index idx (even while earlier ones are still unconsumed). */
void virtq_notify_beyond(struct virtq *q, uint16_t idx);

/* Helpers over a chain's segments. Copy up to len bytes from the readable
 * part starting at offset; returns bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t offset, void *buf, size_t len);
/* Copy into the writable part at offset; returns bytes copied. */
size_t virtq_chain_write(const struct virtq_chain *c, size_t offset, const void *buf, size_t len);
/* Fill iov with the readable (write=false) or writable part from offset,
 * for at most len bytes; returns the number of iovecs (<= max). */
int virtq_chain_iov(const struct virtq_chain *c, bool write, size_t offset, size_t len,
		    struct iovec *iov, int max);

#endif
