/* virtio-blk on a host file (or block device): read, write, flush,
 * GET_ID, discard and write-zeroes (both punch holes, so sparse images
 * stay sparse), read-only drives, and two I/O engines: Async submits each
 * request to the VMM thread's io_uring straight from/into guest memory,
 * Sync does the same I/O inline with preadv/pwritev. */
#ifndef EMBER_VIRTIO_BLK_H
#define EMBER_VIRTIO_BLK_H

#include <linux/virtio_blk.h>

#include "../config.h"
#include "../io/ratelimit.h"
#include "virtio.h"

#define BLK_SEG_MAX 128 /* data segments per request we tell the driver */

struct virtio_blk;

struct blk_request {
	struct evloop_op op;
	struct virtio_blk *blk;
	struct blk_request *next_free;
	uint16_t head;
	uint32_t generation;   /* the device's, when submitted */
	uint32_t type;
	uint8_t *status;       /* the status byte, in guest memory */
	uint32_t used_len;     /* what the device wrote into the chain */
	uint64_t expect;       /* bytes the I/O must transfer */
	struct iovec iov[BLK_SEG_MAX];
};

struct blk_stats {
	uint64_t read_count, write_count, flush_count, get_id_count;
	uint64_t discard_count, write_zeroes_count;
	uint64_t read_bytes, write_bytes;
	uint64_t io_errors, unsupported, invalid, throttled;
	uint64_t update_count, update_fails;  /* PATCH /drives */
};

struct virtio_blk {
	struct virtio_dev vd;
	struct drive_config cfg;
	int fd;
	uint64_t capacity;     /* sectors of 512 bytes */
	struct ratelimiter rl;
	struct evloop_timer rl_timer;
	/* Request slots. Twice the queue size: after a reset, requests of the
	 * old generation may still be in flight while new ones arrive. */
	struct blk_request *reqs;
	unsigned reqs_used;    /* slots handed out at least once */
	struct blk_request *free_reqs;
	unsigned inflight;
	struct blk_stats stats;
};

/* Open path as the backing file of drive cfg (read-only if the drive is)
 * and learn its size in sectors. Only a regular file or a block device
 * opens, and opening never waits (see hostfile.h). Returns the fd, or
 * -errno with "drive ID: PATH: reason" in err. */
int virtio_blk_open(const struct drive_config *cfg, const char *path, uint64_t *sectors, char *err,
		    size_t errlen);

/* Open cfg->path_on_host and add the device. Returns 0 or -errno with a
 * message in err. */
int virtio_blk_init(struct virtio_blk *blk, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct drive_config *cfg, char *err, size_t errlen);

/* After boot (PATCH /drives/{id}): switch to another backing file (the
 * guest is told the new size) and/or replace the rate limiter. Takes the
 * device lock. Returns 0 or -errno with a message in err. */
int virtio_blk_update(struct virtio_blk *blk, const char *path, const struct ratelimiter_config *rl,
		      char *err, size_t errlen);

/* The kernel parameters that make this drive the root filesystem. */
void virtio_blk_root_param(const struct virtio_blk *blk, char *buf, size_t len);

#endif
