#include "blk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hostfile.h"
#include "../log.h"
#include "../snapshot/snapfile.h"
#include "../vm.h"

#define SECTOR 512ULL
#define HDR_LEN 16
#define DISCARD_ENTRY 16
#define BLK_NUM_REQS (2 * VIRTQ_MAX_SIZE)

static struct blk_request *req_get(struct virtio_blk *blk)
{
	struct blk_request *r = blk->free_reqs;
	if (r)
		blk->free_reqs = r->next_free;
	else if (blk->reqs_used < BLK_NUM_REQS)
		r = &blk->reqs[blk->reqs_used++]; /* first use: its pages were never touched */
	return r;
}

static void req_put(struct virtio_blk *blk, struct blk_request *r)
{
	r->next_free = blk->free_reqs;
	blk->free_reqs = r;
}

static uint64_t blk_features(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->dev;
	uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX);
	if (blk->cfg.is_read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	else
		f |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	if (blk->cfg.cache_type == CACHE_WRITEBACK)
		f |= 1ULL << VIRTIO_BLK_F_FLUSH;
	return f;
}

static void blk_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_blk *blk = vd->dev;
	struct virtio_blk_config c;
	memset(&c, 0, sizeof(c));
	c.capacity = blk->capacity;
	c.seg_max = BLK_SEG_MAX;
	c.max_discard_sectors = UINT32_MAX;
	c.max_discard_seg = 1;
	c.discard_sector_alignment = 8;
	c.max_write_zeroes_sectors = UINT32_MAX;
	c.max_write_zeroes_seg = 1;
	c.write_zeroes_may_unmap = 1;
	virtio_config_copy(&c, sizeof(c), off, data, len);
}

static void complete(struct virtio_blk *blk, struct blk_request *r, uint8_t status)
{
	*r->status = status;
	if (status == VIRTIO_BLK_S_IOERR)
		blk->stats.io_errors++;
	else if (status == VIRTIO_BLK_S_UNSUPP)
		blk->stats.unsupported++;
	virtq_push(&blk->vd.vq[0], r->head, r->used_len);
	req_put(blk, r);
}

static void blk_process(struct virtio_blk *blk);
static void rl_retry(struct evloop_timer *t);

/* io_uring completion of an Async request (VMM thread). */
static void request_done(struct evloop_op *op, int res, unsigned flags)
{
	struct blk_request *r = container_of(op, struct blk_request, op);
	struct virtio_blk *blk = r->blk;
	(void)flags;
	pthread_mutex_lock(&blk->vd.lock);
	blk->inflight--;
	if (r->generation != blk->vd.generation || !blk->vd.active) {
		/* The driver reset the device meanwhile: nobody waits for this. */
		req_put(blk, r);
	} else {
		bool ok = res >= 0 && (uint64_t)res == r->expect;
		complete(blk, r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
		virtio_signal(&blk->vd, 0);
		/* A request may have been held back for want of a slot. */
		blk_process(blk);
	}
	pthread_mutex_unlock(&blk->vd.lock);
}

/* Do r's I/O now (Sync) or submit it (Async). Returns true if it finished
 * (the status is final), false if it is in flight. */
static bool run_io(struct virtio_blk *blk, struct blk_request *r, int niov, uint64_t offset,
		   uint64_t discard_len)
{
	bool async = blk->cfg.io_engine == IO_ENGINE_ASYNC;
	if (async) {
		struct io_uring_sqe *sqe = evloop_sqe(blk->vd.loop, &r->op);
		if (sqe) {
			switch (r->type) {
			case VIRTIO_BLK_T_IN:
				io_uring_prep_readv(sqe, blk->fd, r->iov, (unsigned)niov, offset);
				break;
			case VIRTIO_BLK_T_OUT:
				io_uring_prep_writev(sqe, blk->fd, r->iov, (unsigned)niov, offset);
				break;
			case VIRTIO_BLK_T_FLUSH:
				io_uring_prep_fsync(sqe, blk->fd, 0);
				break;
			default: /* discard, write zeroes */
				io_uring_prep_fallocate(sqe, blk->fd,
							FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
							(off_t)offset, (off_t)discard_len);
				break;
			}
			r->op.complete = request_done;
			blk->inflight++;
			return false;
		}
		/* Ring full: fall back to doing it now. */
	}
	ssize_t n;
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		n = preadv(blk->fd, r->iov, niov, (off_t)offset);
		break;
	case VIRTIO_BLK_T_OUT:
		n = pwritev(blk->fd, r->iov, niov, (off_t)offset);
		break;
	case VIRTIO_BLK_T_FLUSH:
		n = fdatasync(blk->fd) == 0 ? 0 : -1;
		break;
	default:
		n = fallocate(blk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
			      (off_t)discard_len) == 0 ? 0 : -1;
		break;
	}
	complete(blk, r, n >= 0 && (uint64_t)n == r->expect ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
	return true;
}

static bool in_range(const struct virtio_blk *blk, uint64_t sector, uint64_t sectors)
{
	return sector <= blk->capacity && sectors <= blk->capacity - sector;
}

/* Handle one chain. Returns 1 if done or in flight; 0 if it must wait
 * (rate limiter or no free slot; nothing consumed); -1 if malformed. */
static int handle(struct virtio_blk *blk, const struct virtq_chain *c)
{
	if (c->read_len < HDR_LEN || c->write_len < 1 || !c->segs[c->nsegs - 1].write)
		return -1; /* no header or no status byte: cannot even answer */
	struct blk_request *r = req_get(blk);
	if (!r)
		return 0; /* a completion will free one and run the queue again */

	struct virtio_blk_outhdr hdr;
	virtq_chain_read(c, 0, &hdr, sizeof(hdr));
	const struct virtq_seg *last = &c->segs[c->nsegs - 1];
	*r = (struct blk_request){
		.blk = blk, .head = c->head, .generation = blk->vd.generation,
		.type = hdr.type, .status = last->addr + last->len - 1, .used_len = 1,
	};
	uint64_t data_in = c->write_len - 1;    /* writable bytes before the status */
	uint64_t data_out = c->read_len - HDR_LEN;

	uint64_t cost = 0;
	if (hdr.type == VIRTIO_BLK_T_IN)
		cost = data_in;
	else if (hdr.type == VIRTIO_BLK_T_OUT)
		cost = data_out;
	uint64_t now = rl_now_ns();
	if (!rl_consume(&blk->rl, cost, now)) {
		req_put(blk, r);
		blk->stats.throttled++;
		evloop_timer_arm(blk->vd.loop, &blk->rl_timer, rl_wait_ns(&blk->rl, cost, now), rl_retry);
		return 0;
	}

	int niov;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = hdr.type == VIRTIO_BLK_T_IN;
		uint64_t len = in ? data_in : data_out;
		if (!in && blk->cfg.is_read_only) {
			complete(blk, r, VIRTIO_BLK_S_IOERR);
			return 1;
		}
		if (len % SECTOR || !in_range(blk, hdr.sector, len / SECTOR)) {
			blk->stats.invalid++;
			complete(blk, r, VIRTIO_BLK_S_IOERR);
			return 1;
		}
		niov = virtq_chain_iov(c, in, in ? 0 : HDR_LEN, len, r->iov, BLK_SEG_MAX);
		uint64_t covered = 0;
		for (int i = 0; i < niov; i++)
			covered += r->iov[i].iov_len;
		if (covered != len) { /* more segments than we said we take */
			complete(blk, r, VIRTIO_BLK_S_IOERR);
			return 1;
		}
		r->expect = len;
		if (in) {
			r->used_len = (uint32_t)len + 1;
			blk->stats.read_count++;
			blk->stats.read_bytes += len;
		} else {
			blk->stats.write_count++;
			blk->stats.write_bytes += len;
		}
		if (len == 0) {
			complete(blk, r, VIRTIO_BLK_S_OK);
			return 1;
		}
		run_io(blk, r, niov, hdr.sector * SECTOR, 0);
		return 1;
	}
	case VIRTIO_BLK_T_FLUSH:
		blk->stats.flush_count++;
		if (blk->cfg.cache_type != CACHE_WRITEBACK || blk->cfg.is_read_only) {
			complete(blk, r, VIRTIO_BLK_S_OK); /* nothing is cached in ember */
			return 1;
		}
		run_io(blk, r, 0, 0, 0);
		return 1;
	case VIRTIO_BLK_T_GET_ID: {
		/* The drive id, NUL-padded, truncated to 20 bytes as the spec allows. */
		char id[VIRTIO_BLK_ID_BYTES] = { 0 };
		memcpy(id, blk->cfg.drive_id, strnlen(blk->cfg.drive_id, sizeof(id)));
		uint32_t n = data_in < sizeof(id) ? (uint32_t)data_in : (uint32_t)sizeof(id);
		virtq_chain_write(c, 0, id, n);
		r->used_len = n + 1;
		blk->stats.get_id_count++;
		complete(blk, r, VIRTIO_BLK_S_OK);
		return 1;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		bool discard = hdr.type == VIRTIO_BLK_T_DISCARD;
		struct virtio_blk_discard_write_zeroes seg;
		uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
		if (blk->cfg.is_read_only) {
			complete(blk, r, VIRTIO_BLK_S_IOERR);
			return 1;
		}
		if (data_out != DISCARD_ENTRY) { /* max_discard_seg = max_write_zeroes_seg = 1 */
			blk->stats.invalid++;
			complete(blk, r, VIRTIO_BLK_S_UNSUPP);
			return 1;
		}
		virtq_chain_read(c, HDR_LEN, &seg, sizeof(seg));
		if ((seg.flags & ~allowed) || !in_range(blk, seg.sector, seg.num_sectors)) {
			blk->stats.invalid++;
			complete(blk, r, (seg.flags & ~allowed) ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
			return 1;
		}
		if (discard)
			blk->stats.discard_count++;
		else
			blk->stats.write_zeroes_count++;
		/* Punching a hole reads back as zeroes, so it serves both and
		 * keeps the image thin. */
		run_io(blk, r, 0, seg.sector * SECTOR, (uint64_t)seg.num_sectors * SECTOR);
		return 1;
	}
	default:
		complete(blk, r, VIRTIO_BLK_S_UNSUPP);
		return 1;
	}
}

static void rl_retry(struct evloop_timer *t)
{
	struct virtio_blk *blk = container_of(t, struct virtio_blk, rl_timer);
	pthread_mutex_lock(&blk->vd.lock);
	if (blk->vd.active)
		blk_process(blk);
	pthread_mutex_unlock(&blk->vd.lock);
}

static void blk_process(struct virtio_blk *blk)
{
	struct virtio_dev *vd = &blk->vd;
	if (vd->paused)
		return;
	struct virtq *q = &vd->vq[0];
	struct virtq_chain c;
	uint16_t used_before = q->used_idx;
	for (;;) {
		int r = virtq_pop(q, &vd->vm->mem, &c);
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		if (r < 0 || (r = handle(blk, &c)) < 0) {
			virtio_fail(vd, "malformed request chain");
			return;
		}
		if (r == 0) {
			virtq_undo_pop(q);
			break;
		}
	}
	if (q->used_idx != used_before)
		virtio_signal(vd, 0);
}

static void blk_notify(struct virtio_dev *vd, unsigned q)
{
	(void)q;
	blk_process(vd->dev);
}

static void blk_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct blk_stats *st = &((struct virtio_blk *)vd->dev)->stats;
	snprintf(buf, len,
		 "read_count=%llu write_count=%llu flush_count=%llu get_id_count=%llu "
		 "discard_count=%llu write_zeroes_count=%llu read_bytes=%llu write_bytes=%llu "
		 "io_errors=%llu unsupported=%llu invalid=%llu throttled=%llu",
		 (unsigned long long)st->read_count, (unsigned long long)st->write_count,
		 (unsigned long long)st->flush_count, (unsigned long long)st->get_id_count,
		 (unsigned long long)st->discard_count, (unsigned long long)st->write_zeroes_count,
		 (unsigned long long)st->read_bytes, (unsigned long long)st->write_bytes,
		 (unsigned long long)st->io_errors, (unsigned long long)st->unsupported,
		 (unsigned long long)st->invalid, (unsigned long long)st->throttled);
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->dev;
	close(blk->fd);
	free(blk->reqs);
}

static bool blk_idle(struct virtio_dev *vd)
{
	struct virtio_blk *blk = vd->dev;
	return blk->inflight == 0;
}

static void blk_save(struct virtio_dev *vd, struct snap_writer *w)
{
	struct virtio_blk *blk = vd->dev;
	rl_save(&blk->rl, w);
}

static int blk_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	struct virtio_blk *blk = vd->dev;
	return rl_restore(&blk->rl, r, rl_now_ns()) ? 0 : -EINVAL;
}

static const struct virtio_ops blk_ops = {
	.name = "block",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.features = blk_features,
	.config_read = blk_config_read,
	.notify = blk_notify,
	.counters = blk_counters,
	.destroy = blk_destroy,
	.idle = blk_idle,
	.save = blk_save,
	.restore = blk_restore,
	/* No reset hook: in-flight requests finish into guest memory, which
	 * stays mapped, and their completions see the new generation. */
};

int virtio_blk_open(const struct drive_config *cfg, const char *path, uint64_t *sectors, char *err,
		    size_t errlen)
{
	char what[sizeof(cfg->drive_id) + 8], detail[CONFIG_PATH_MAX + 160];
	snprintf(what, sizeof(what), "drive %s:", cfg->drive_id);
	int fd = hostfile_open(what, path, cfg->is_read_only ? O_RDONLY : O_RDWR, 0,
			       HOSTFILE_REG | HOSTFILE_BLK, detail, sizeof(detail));
	if (fd < 0) {
		/* Firecracker's words (which clients match), then ember's. */
		snprintf(err, errlen, "Virtio backend error: Error manipulating the backing file: %s (os error %d) %s; %s",
			 strerror(-fd), -fd, path, detail);
		return fd;
	}
	struct stat st;
	uint64_t bytes = 0;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
		close(fd);
		return -e;
	}
	if (S_ISREG(st.st_mode))
		bytes = (uint64_t)st.st_size;
	else if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
		bytes = 0;
	if (bytes % SECTOR)
		log_warn("drive %s: size %llu is not a multiple of 512; the tail is not visible",
			 cfg->drive_id, (unsigned long long)bytes);
	*sectors = bytes / SECTOR;
	return fd;
}

int virtio_blk_init(struct virtio_blk *blk, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct drive_config *cfg, char *err, size_t errlen)
{
	memset(blk, 0, sizeof(*blk));
	blk->cfg = *cfg;
	blk->fd = virtio_blk_open(cfg, cfg->path_on_host, &blk->capacity, err, errlen);
	if (blk->fd < 0)
		return blk->fd;
	blk->reqs = calloc(BLK_NUM_REQS, sizeof(*blk->reqs));
	if (!blk->reqs) {
		close(blk->fd);
		return -ENOMEM;
	}
	rl_init(&blk->rl, &cfg->rate_limiter, rl_now_ns());
	int e = virtio_dev_init(&blk->vd, vm, loop, index, &blk_ops, blk);
	if (e)
		snprintf(err, errlen, "drive %s: %s", cfg->drive_id, strerror(-e));
	return e;
}

int virtio_blk_update(struct virtio_blk *blk, const char *path, const struct ratelimiter_config *rl,
		      char *err, size_t errlen)
{
	uint64_t sectors = 0;
	int fd = -1;
	if (path && (fd = virtio_blk_open(&blk->cfg, path, &sectors, err, errlen)) < 0) {
		pthread_mutex_lock(&blk->vd.lock);
		blk->stats.update_fails++;
		pthread_mutex_unlock(&blk->vd.lock);
		return fd;
	}
	pthread_mutex_lock(&blk->vd.lock);
	blk->stats.update_count++;
	if (path) {
		/* Requests in flight keep their own reference to the old file. */
		close(blk->fd);
		blk->fd = fd;
		blk->capacity = sectors;
		snprintf(blk->cfg.path_on_host, sizeof(blk->cfg.path_on_host), "%s", path);
		virtio_config_changed(&blk->vd);
	}
	if (rl) {
		blk->cfg.rate_limiter = *rl;
		rl_init(&blk->rl, rl, rl_now_ns());
	}
	pthread_mutex_unlock(&blk->vd.lock);
	return 0;
}

void virtio_blk_root_param(const struct virtio_blk *blk, char *buf, size_t len)
{
	const char *mode = blk->cfg.is_read_only ? "ro" : "rw";
	if (blk->cfg.partuuid[0])
		snprintf(buf, len, "root=PARTUUID=%s %s", blk->cfg.partuuid, mode);
	else
		snprintf(buf, len, "root=/dev/vd%c %s", 'a' + blk->vd.index, mode);
}
