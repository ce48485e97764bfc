#include "pmem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pmem.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hostfile.h"
#include "../log.h"
#include "../snapshot/snapfile.h"
#include "../vm.h"

#define PMEM_STATUS_EIO 1 /* any non-zero answer is an I/O error to the driver */

uint64_t virtio_pmem_region_size(uint64_t file_len)
{
	return (file_len + PMEM_ALIGN - 1) & ~(PMEM_ALIGN - 1);
}

int virtio_pmem_parse(const struct virtq_chain *c, uint32_t *type, uint8_t **status)
{
	/* A 4-byte request the device reads, then a 4-byte answer it writes
	 * (the first writable buffer holds it whole). */
	if (c->read_len < sizeof(struct virtio_pmem_req) || c->nread >= c->nsegs ||
	    c->segs[c->nread].len < sizeof(struct virtio_pmem_resp))
		return -EINVAL;
	uint32_t t = 0;
	virtq_chain_read(c, 0, &t, sizeof(t));
	*type = t;
	*status = c->segs[c->nread].addr;
	return 0;
}

static uint64_t pmem_features(struct virtio_dev *vd)
{
	(void)vd;
	return 0;
}

static void pmem_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_pmem *pm = vd->dev;
	struct virtio_pmem_config c = { .start = pm->gpa, .size = pm->size };
	virtio_config_copy(&c, sizeof(c), off, data, len);
}

static void pmem_config_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_pmem *pm = vd->dev;
	(void)data;
	pm->stats.cfg_fails++;
	log_ratelimited(LOG_WARN, "pmem %s: the driver wrote the read-only config space (offset %u, %u bytes)",
			pm->cfg.id, off, len);
}

static void answer(struct virtio_pmem *pm, const struct pmem_waiter *w, uint32_t status)
{
	memcpy(w->status, &status, sizeof(status)); /* le32, on a little-endian host */
	virtq_push(&pm->vd.vq[0], w->head, sizeof(status));
}

/* The fdatasync for every waiting request is done (res 0 or -errno). */
static void finish(struct virtio_pmem *pm, int res)
{
	if (res < 0) {
		pm->stats.io_errors++;
		log_ratelimited(LOG_ERROR, "pmem %s: flushing %s failed: %s", pm->cfg.id, pm->cfg.path_on_host,
				strerror(-res));
	}
	for (unsigned i = 0; i < pm->nwaiting; i++)
		answer(pm, &pm->waiting[i], res < 0 ? PMEM_STATUS_EIO : 0);
	pm->stats.flush_count += pm->nwaiting;
	pm->nwaiting = 0;
}

static void pmem_process(struct virtio_pmem *pm);

/* io_uring completion of the fdatasync (VMM thread). */
static void flush_done(struct evloop_op *op, int res, unsigned flags)
{
	struct virtio_pmem *pm = container_of(op, struct virtio_pmem, flush_op);
	(void)flags;
	pthread_mutex_lock(&pm->vd.lock);
	pm->flushing = false;
	if (pm->flush_generation == pm->vd.generation && pm->vd.active) {
		finish(pm, res);
		virtio_signal(&pm->vd, 0);
	} else {
		pm->nwaiting = 0; /* the driver reset the device meanwhile */
	}
	if (pm->vd.active)
		pmem_process(pm); /* requests that came while this one was in flight */
	pthread_mutex_unlock(&pm->vd.lock);
}

/* Make what the guest wrote through the mapping durable, then answer the
 * waiting requests: asynchronously when the ring has room. A read-only
 * mapping has nothing of the guest's to write back. */
static void start_flush(struct virtio_pmem *pm)
{
	if (pm->cfg.read_only) {
		finish(pm, 0);
		return;
	}
	pm->stats.fsync_count++;
	struct io_uring_sqe *sqe = evloop_sqe(pm->vd.loop, &pm->flush_op);
	if (sqe) {
		io_uring_prep_fsync(sqe, pm->fd, IORING_FSYNC_DATASYNC);
		pm->flush_op.complete = flush_done;
		pm->flushing = true;
		pm->flush_generation = pm->vd.generation;
		return;
	}
	finish(pm, fdatasync(pm->fd) == 0 ? 0 : -errno);
}

static void rl_retry(struct evloop_timer *t)
{
	struct virtio_pmem *pm = container_of(t, struct virtio_pmem, rl_timer);
	pthread_mutex_lock(&pm->vd.lock);
	pm->stats.rl_events++;
	if (pm->vd.active)
		pmem_process(pm);
	pthread_mutex_unlock(&pm->vd.lock);
}

/* Take every flush request there is and answer them all with one
 * fdatasync, which costs one op and the file's size in the rate limiter
 * (as Firecracker charges its msync). */
static void pmem_process(struct virtio_pmem *pm)
{
	struct virtio_dev *vd = &pm->vd;
	if (vd->paused || pm->flushing)
		return;
	struct virtq *q = &vd->vq[0];
	struct virtq_chain c;
	uint16_t used_before = q->used_idx;
	bool charged = false;
	while (pm->nwaiting < VIRTQ_MAX_SIZE) {
		int r = virtq_pop(q, &vd->vm->mem, &c);
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		uint32_t type;
		uint8_t *status;
		if (r < 0 || virtio_pmem_parse(&c, &type, &status) < 0) {
			virtio_fail(vd, "malformed flush request");
			pm->nwaiting = 0;
			return;
		}
		struct pmem_waiter w = { .head = c.head, .status = status };
		if (type != VIRTIO_PMEM_REQ_TYPE_FLUSH) {
			pm->stats.invalid++;
			answer(pm, &w, PMEM_STATUS_EIO);
			continue;
		}
		uint64_t now = rl_now_ns();
		if (!charged && !rl_consume(&pm->rl, pm->file_len, now)) {
			virtq_undo_pop(q);
			pm->stats.throttled++;
			evloop_timer_arm(vd->loop, &pm->rl_timer, rl_wait_ns(&pm->rl, pm->file_len, now), rl_retry);
			break;
		}
		charged = true;
		pm->waiting[pm->nwaiting++] = w;
	}
	if (pm->nwaiting)
		start_flush(pm);
	if (q->used_idx != used_before)
		virtio_signal(vd, 0);
}

static void pmem_notify(struct virtio_dev *vd, unsigned q)
{
	(void)q;
	pmem_process(vd->dev);
}

static bool pmem_idle(struct virtio_dev *vd)
{
	struct virtio_pmem *pm = vd->dev;
	return !pm->flushing;
}

static void pmem_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct pmem_stats *st = &((struct virtio_pmem *)vd->dev)->stats;
	snprintf(buf, len,
		 "flush_count=%llu fsync_count=%llu io_errors=%llu invalid=%llu throttled=%llu cfg_fails=%llu "
		 "ro_writes=%llu",
		 (unsigned long long)st->flush_count, (unsigned long long)st->fsync_count,
		 (unsigned long long)st->io_errors, (unsigned long long)st->invalid,
		 (unsigned long long)st->throttled, (unsigned long long)st->cfg_fails,
		 (unsigned long long)st->ro_writes);
}

static void pmem_destroy(struct virtio_dev *vd)
{
	struct virtio_pmem *pm = vd->dev;
	if (pm->slot >= 0)
		vm_remove_memory(vd->vm, pm->slot);
	if (pm->host)
		munmap(pm->host, pm->size);
	if (pm->fd >= 0)
		close(pm->fd);
	pm->slot = pm->fd = -1;
	pm->host = NULL;
}

/* The region's place and size, then the rate limiter. The region itself
 * is the backing file, not part of the snapshot: a restore maps the same
 * file at the same place (checked here). */
static void pmem_save(struct virtio_dev *vd, struct snap_writer *w)
{
	struct virtio_pmem *pm = vd->dev;
	sw_u64(w, pm->gpa);
	sw_u64(w, pm->size);
	rl_save(&pm->rl, w);
}

static int pmem_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	struct virtio_pmem *pm = vd->dev;
	uint64_t gpa = sr_u64(r), size = sr_u64(r);
	if (r->bad)
		return -EINVAL;
	if (gpa != pm->gpa) {
		sr_fail(r, "pmem %s: region at 0x%llx in the snapshot, 0x%llx here", pm->cfg.id,
			(unsigned long long)gpa, (unsigned long long)pm->gpa);
		return -EINVAL;
	}
	if (size != pm->size) {
		/* Firecracker's words, then the file. */
		sr_fail(r, "Restored pmem size %llu does not match backing file mapping size %llu (%s)",
			(unsigned long long)size, (unsigned long long)pm->size, pm->cfg.path_on_host);
		return -EINVAL;
	}
	return rl_restore(&pm->rl, r, rl_now_ns()) ? 0 : -EINVAL;
}

static const struct virtio_ops pmem_ops = {
	.name = "pmem",
	.device_id = VIRTIO_ID_PMEM,
	.num_queues = 1,
	.features = pmem_features,
	.config_read = pmem_config_read,
	.config_write = pmem_config_write,
	.notify = pmem_notify,
	.counters = pmem_counters,
	.destroy = pmem_destroy,
	.idle = pmem_idle,
	.save = pmem_save,
	.restore = pmem_restore,
	/* No reset hook: a flush in flight finishes and its completion sees
	 * the new generation. */
};

/* Guest writes to a read-only region (vCPU thread): dropped, as
 * Firecracker drops them; reads (which KVM serves from the slot itself)
 * come from the mapping. */
static void ro_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_pmem *pm = opaque;
	if (!is_write) {
		memcpy(data, pm->host + offset, len);
		return;
	}
	pthread_mutex_lock(&pm->vd.lock);
	pm->stats.ro_writes++;
	pthread_mutex_unlock(&pm->vd.lock);
	log_ratelimited(LOG_WARN, "pmem %s is read-only: guest write of %u bytes at offset 0x%llx dropped",
			pm->cfg.id, len, (unsigned long long)offset);
}

/* The file, mapped shared over an anonymous mapping of the whole region
 * (so the tail past a file size that is not 2 MiB-aligned is memory). */
static int map_file(struct virtio_pmem *pm)
{
	int prot = PROT_READ | (pm->cfg.read_only ? 0 : PROT_WRITE);
	void *base = mmap(NULL, pm->size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	if (mmap(base, pm->file_len, prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, pm->fd, 0) == MAP_FAILED) {
		int e = -errno;
		munmap(base, pm->size);
		return e;
	}
	pm->host = base;
	return 0;
}

int virtio_pmem_init(struct virtio_pmem *pm, struct vm *vm, struct evloop *loop, unsigned index,
		     uint64_t gpa, const struct pmem_config *cfg, char *err, size_t errlen)
{
	memset(pm, 0, sizeof(*pm));
	pm->cfg = *cfg;
	pm->fd = pm->slot = -1;
	pm->gpa = gpa;
	rl_init(&pm->rl, &cfg->rate_limiter, rl_now_ns());
	/* The transport first, so virtio_dev_destroy undoes whatever follows. */
	int ret = virtio_dev_init(&pm->vd, vm, loop, index, &pmem_ops, pm);
	if (ret) {
		snprintf(err, errlen, "pmem %s: %s", cfg->id, strerror(-ret));
		return ret;
	}
	char what[CONFIG_ID_MAX + 8], detail[CONFIG_PATH_MAX + 160];
	snprintf(what, sizeof(what), "pmem %s:", cfg->id);
	pm->fd = hostfile_open(what, cfg->path_on_host, cfg->read_only ? O_RDONLY : O_RDWR, 0, HOSTFILE_REG,
			       detail, sizeof(detail));
	if (pm->fd < 0) {
		ret = pm->fd;
		/* Firecracker's words (which clients match), then ember's. */
		snprintf(err, errlen, "Cannot create pmem device: Error accessing backing file: %s (os error %d); %s",
			 strerror(-ret), -ret, detail);
		return ret;
	}
	struct stat st;
	if (fstat(pm->fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "Cannot create pmem device: Error accessing backing file: %s (os error %d)",
			 strerror(-ret), -ret);
		return ret;
	}
	pm->file_len = (uint64_t)st.st_size;
	if (pm->file_len == 0) {
		snprintf(err, errlen, "Cannot create pmem device: Error backing file size is 0 (pmem %s: %s)", cfg->id,
			 cfg->path_on_host);
		return -EINVAL;
	}
	pm->size = virtio_pmem_region_size(pm->file_len);
	if ((ret = map_file(pm))) {
		snprintf(err, errlen, "Cannot create pmem device: Error accessing backing file: %s (os error %d) (mmap)",
			 strerror(-ret), -ret);
		return ret;
	}
	if ((pm->slot = vm_add_memory(vm, gpa, pm->size, pm->host, cfg->read_only)) < 0) {
		ret = pm->slot;
		snprintf(err, errlen, "Cannot create pmem device: Cannot set the memory regions: %s%s",
			 strerror(-ret), ret == -EOPNOTSUPP ? " (this host's KVM has no read-only memory slots)" : "");
		return ret;
	}
	if (cfg->read_only && (ret = bus_register(&vm->mmio, gpa, pm->size, ro_access, pm, "pmem"))) {
		snprintf(err, errlen, "pmem %s: its region overlaps a device: %s", cfg->id, strerror(-ret));
		return ret;
	}
	return 0;
}

void virtio_pmem_update(struct virtio_pmem *pm, const struct ratelimiter_config *rl)
{
	pthread_mutex_lock(&pm->vd.lock);
	pm->cfg.rate_limiter = *rl;
	rl_init(&pm->rl, rl, rl_now_ns());
	pthread_mutex_unlock(&pm->vd.lock);
}

void virtio_pmem_root_param(const struct virtio_pmem *pm, unsigned n, char *buf, size_t len)
{
	snprintf(buf, len, "root=/dev/pmem%u %s", n, pm->cfg.read_only ? "ro" : "rw");
}
