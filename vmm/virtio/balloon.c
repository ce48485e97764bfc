#include "balloon.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <string.h>

#include "../log.h"
#include "../snapshot/snapfile.h"
#include "../vm.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ULL << PAGE_SHIFT)
#define PAGES_PER_MIB 256u
#define PFN_BATCH 256u        /* page numbers read from a buffer at a time */
#define STAT_ENTRY 10u        /* le16 tag + le64 value, packed */

enum { Q_INFLATE, Q_DEFLATE };

/* free_page_hint_cmd_id values with a meaning of their own (virtio 1.2,
 * 5.5.6.4): any other starts a hinting run. */
#define HINT_CMD_STOP 0u      /* from the driver: it reported all it found */
#define HINT_CMD_DONE 1u      /* from the device: the driver may reuse the hinted pages */

static const char *const stat_names[BALLOON_NSTATS] = {
	"swap_in", "swap_out", "major_faults", "minor_faults", "free_memory", "total_memory",
	"available_memory", "disk_caches", "hugetlb_allocations", "hugetlb_failures", "oom_kill",
	"alloc_stall", "async_scan", "direct_scan", "async_reclaim", "direct_reclaim",
};

const char *virtio_balloon_stat_name(unsigned t)
{
	return t < BALLOON_NSTATS ? stat_names[t] : NULL;
}

unsigned virtio_balloon_coalesce(const uint32_t *pfns, unsigned n, struct balloon_range *out)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (k && out[k - 1].pfn + out[k - 1].n == pfns[i])
			out[k - 1].n++;
		else
			out[k++] = (struct balloon_range){ pfns[i], 1 };
	}
	return k;
}

unsigned virtio_balloon_parse_stats(const uint8_t *buf, size_t len, uint64_t *stats,
				    uint32_t *present)
{
	unsigned taken = 0;
	for (size_t off = 0; off + STAT_ENTRY <= len; off += STAT_ENTRY) {
		uint16_t tag = (uint16_t)(buf[off] | buf[off + 1] << 8);
		uint64_t v = 0;
		for (int i = 7; i >= 0; i--)
			v = v << 8 | buf[off + 2 + i];
		if (tag >= BALLOON_NSTATS)
			continue;
		stats[tag] = v;
		*present |= 1u << tag;
		taken++;
	}
	return taken;
}

/* Which queue does what depends on the features the driver took: the
 * statistics, free page hinting and reporting queues exist only with
 * theirs, numbered in that order after inflate and deflate. */
static int feature_queue(const struct virtio_dev *vd, unsigned bit)
{
	static const unsigned order[] = { VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_F_FREE_PAGE_HINT,
					  VIRTIO_BALLOON_F_REPORTING };
	int q = 2;
	for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		bool has = virtio_has_feature(vd, order[i]);
		if (order[i] == bit)
			return has ? q : -1;
		q += has;
	}
	return -1;
}

static int stats_queue(const struct virtio_dev *vd)
{
	return feature_queue(vd, VIRTIO_BALLOON_F_STATS_VQ);
}

static uint64_t balloon_features(struct virtio_dev *vd)
{
	const struct virtio_balloon *b = vd->dev;
	uint64_t f = 0;
	if (b->cfg.stats_polling_interval_s)
		f |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (b->cfg.deflate_on_oom)
		f |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (b->cfg.free_page_reporting)
		f |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	if (b->cfg.free_page_hinting)
		f |= 1ULL << VIRTIO_BALLOON_F_FREE_PAGE_HINT;
	return f;
}

/* num_pages, actual, free_page_hint_cmd_id. */
static void balloon_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	const struct virtio_balloon *b = vd->dev;
	uint32_t space[3] = { b->num_pages, b->actual, b->hint.host_cmd };
	virtio_config_copy(space, sizeof(space), off, data, len);
}

/* The driver writes only actual (bytes 4..7). */
static void balloon_config_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_balloon *b = vd->dev;
	if (off < 4 || off >= 8 || len > 8 - off)
		return;
	memcpy((uint8_t *)&b->actual + (off - 4), data, len);
}

static void discard(struct virtio_balloon *b, uint64_t gpa, uint64_t len)
{
	int ret = mem_discard(&b->vd.vm->mem, gpa, len);
	if (ret == -EFAULT || ret == -EINVAL) {
		b->counters.bad_pfns++;
		log_ratelimited(LOG_WARN, "balloon: guest range 0x%llx+0x%llx is not guest RAM; ignored",
				(unsigned long long)gpa, (unsigned long long)len);
	} else if (ret) {
		b->counters.discard_fails++;
		log_ratelimited(LOG_WARN, "balloon: madvise of guest range 0x%llx+0x%llx: %s",
				(unsigned long long)gpa, (unsigned long long)len, strerror(-ret));
	}
}

/* An inflate buffer: little-endian u32 page numbers, given back in runs. */
static void inflate(struct virtio_balloon *b, const struct virtq_chain *c)
{
	uint32_t pfns[PFN_BATCH];
	struct balloon_range runs[PFN_BATCH];
	for (size_t off = 0; off + 4 <= c->read_len;) {
		size_t got = virtq_chain_read(c, off, pfns, sizeof(pfns)) / 4;
		if (!got)
			break;
		off += got * 4;
		unsigned k = virtio_balloon_coalesce(pfns, (unsigned)got, runs);
		for (unsigned i = 0; i < k; i++) {
			/* pfn < 2^32 and n <= PFN_BATCH: no overflow in 64 bits. */
			discard(b, runs[i].pfn << PAGE_SHIFT, runs[i].n << PAGE_SHIFT);
		}
	}
}

/* A reporting buffer: guest ranges (already checked to be guest RAM by
 * the queue) of free pages; the whole pages among them are given back. */
static void report(struct virtio_balloon *b, const struct virtq_chain *c)
{
	for (unsigned i = 0; i < c->nsegs; i++) {
		int64_t n = mem_discard_host(&b->vd.vm->mem, c->segs[i].addr, c->segs[i].len);
		if (n < 0)
			b->counters.report_fails++;
		else
			b->counters.report_freed += (uint64_t)n;
	}
	b->counters.report_count++;
}

/* A new free_page_hint_cmd_id for the driver (lock held). */
static void hint_command(struct virtio_balloon *b, uint32_t cmd)
{
	b->hint.host_cmd = cmd;
	virtio_config_changed(&b->vd);
}

/* A free page hinting buffer: a 4-byte readable segment is the driver's
 * command id (the run it reports for, or STOP when it found all it
 * could); writable segments are free ranges, given back only while the
 * host's run is the one the driver reports for (a late range of an
 * earlier run, or one after DONE, may already be in use again). A
 * command sets *finished: whether it said the driver finished. */
static void hint(struct virtio_balloon *b, const struct virtq_chain *c, bool *finished)
{
	for (unsigned i = 0; i < c->nsegs; i++) {
		const struct virtq_seg *s = &c->segs[i];
		if (!s->write) {
			if (s->len != 4)
				continue;
			uint8_t v[4];
			memcpy(v, s->addr, 4);
			b->hint.guest_cmd = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 |
					    (uint32_t)v[3] << 24;
			b->hint.guest_cmd_valid = true;
			/* DONE is the device's word; from the driver it ends the run too. */
			*finished = b->hint.guest_cmd == HINT_CMD_STOP || b->hint.guest_cmd == HINT_CMD_DONE;
			continue;
		}
		if (b->hint.host_cmd <= HINT_CMD_DONE || !b->hint.guest_cmd_valid ||
		    b->hint.guest_cmd != b->hint.host_cmd)
			continue;
		int64_t n = mem_discard_host(&b->vd.vm->mem, s->addr, s->len);
		b->counters.hint_count++;
		if (n < 0)
			b->counters.hint_fails++;
		else
			b->counters.hint_freed += (uint64_t)n;
	}
}

/* Give the statistics buffer back: the driver answers with fresh numbers. */
static void stats_return(struct virtio_balloon *b)
{
	int q = stats_queue(&b->vd);
	if (!b->stats_held || q < 0)
		return;
	b->stats_held = false;
	virtq_push(&b->vd.vq[q], b->stats_head, 0);
	virtio_signal(&b->vd, (unsigned)q);
}

/* A statistics buffer: its numbers, and the buffer held until the next
 * interval. */
static void take_stats(struct virtio_balloon *b, const struct virtq_chain *c)
{
	uint8_t buf[BALLOON_NSTATS * 2 * STAT_ENTRY];
	size_t n = virtq_chain_read(c, 0, buf, sizeof(buf));
	virtio_balloon_parse_stats(buf, n, b->stats, &b->stats_present);
	b->counters.stats_updates_count++;
	b->stats_held = true;
	b->stats_head = c->head;
}

static void balloon_notify(struct virtio_dev *vd, unsigned qi)
{
	struct virtio_balloon *b = vd->dev;
	struct virtq *q = &vd->vq[qi];
	struct virtq_chain c;
	bool pushed = false, hint_finished = false;
	if (vd->paused || qi >= VIRTIO_MAX_QUEUES)
		return;
	bool is_stats = (int)qi == stats_queue(vd);
	bool is_hint = (int)qi == feature_queue(vd, VIRTIO_BALLOON_F_FREE_PAGE_HINT);
	bool is_report = (int)qi == feature_queue(vd, VIRTIO_BALLOON_F_REPORTING);
	for (;;) {
		int r = virtq_pop(q, &vd->vm->mem, &c);
		if (r < 0) {
			virtio_fail(vd, "malformed descriptor chain");
			return;
		}
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		if (is_stats) {
			if (b->stats_held) /* a second buffer: hand the first back */
				stats_return(b);
			take_stats(b, &c);
			continue; /* kept until the next interval */
		}
		if (is_hint)
			hint(b, &c, &hint_finished);
		else if (is_report)
			report(b, &c);
		else if (qi == Q_INFLATE) {
			inflate(b, &c);
			b->counters.inflate_count++;
		} else if (qi == Q_DEFLATE) {
			b->counters.deflate_count++; /* the pages fault back in when touched */
		}
		virtq_push(q, c.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_signal(vd, qi);
	if (hint_finished && b->hint.ack_on_stop && b->hint.host_cmd > HINT_CMD_DONE)
		hint_command(b, HINT_CMD_DONE);
}

static void stats_tick(struct evloop_timer *t)
{
	struct virtio_balloon *b = container_of(t, struct virtio_balloon, stats_timer);
	pthread_mutex_lock(&b->vd.lock);
	int q = stats_queue(&b->vd);
	/* Linux primes the statistics queue and kicks it before DRIVER_OK, a
	 * notification the transport drops: a tick without a held buffer
	 * looks at the queue for it. */
	if (b->vd.active && !b->vd.paused && q >= 0 && b->vd.vq[q].ready) {
		if (b->stats_held)
			stats_return(b);
		else
			balloon_notify(&b->vd, (unsigned)q);
	}
	uint64_t ns = (uint64_t)b->cfg.stats_polling_interval_s * 1000000000ULL;
	pthread_mutex_unlock(&b->vd.lock);
	evloop_timer_arm(b->vd.loop, &b->stats_timer, ns, stats_tick);
}

static int balloon_start_io(struct virtio_dev *vd)
{
	struct virtio_balloon *b = vd->dev;
	if (b->cfg.stats_polling_interval_s)
		evloop_timer_arm(vd->loop, &b->stats_timer,
				 (uint64_t)b->cfg.stats_polling_interval_s * 1000000000ULL, stats_tick);
	return 0;
}

static void balloon_reset(struct virtio_dev *vd)
{
	struct virtio_balloon *b = vd->dev;
	b->stats_held = false;
	b->actual = 0;
	memset(&b->hint, 0, sizeof(b->hint));
}

static void balloon_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct virtio_balloon *b = vd->dev;
	const struct balloon_counters *k = &b->counters;
	snprintf(buf, len, "inflates=%llu deflates=%llu stats=%llu reports=%llu reported_bytes=%llu "
		 "hints=%llu hinted_bytes=%llu hint_fails=%llu bad_pfns=%llu discard_fails=%llu",
		 (unsigned long long)k->inflate_count, (unsigned long long)k->deflate_count,
		 (unsigned long long)k->stats_updates_count, (unsigned long long)k->report_count,
		 (unsigned long long)k->report_freed, (unsigned long long)k->hint_count,
		 (unsigned long long)k->hint_freed, (unsigned long long)k->hint_fails, (unsigned long long)k->bad_pfns,
		 (unsigned long long)k->discard_fails);
}

/* The device's section: the target (it can differ from the configured
 * amount after PATCH), actual, the interval, the held statistics buffer,
 * the last statistics, then the free page hinting state (host command,
 * last run id, the driver's last command, acknowledge_on_stop; a state
 * written before ember offered hinting ends before it). */
static void balloon_save(struct virtio_dev *vd, struct snap_writer *w)
{
	const struct virtio_balloon *b = vd->dev;
	sw_u32(w, b->num_pages);
	sw_u32(w, b->actual);
	sw_u16(w, b->cfg.stats_polling_interval_s);
	sw_u8(w, b->stats_held);
	sw_u16(w, b->stats_head);
	sw_u32(w, b->stats_present);
	for (unsigned i = 0; i < BALLOON_NSTATS; i++)
		sw_u64(w, b->stats[i]);
	sw_u32(w, b->hint.host_cmd);
	sw_u32(w, b->hint.last_cmd);
	sw_u32(w, b->hint.guest_cmd);
	sw_u8(w, b->hint.guest_cmd_valid);
	sw_u8(w, b->hint.ack_on_stop);
}

static int balloon_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	struct virtio_balloon *b = vd->dev;
	uint32_t num_pages = sr_u32(r), actual = sr_u32(r);
	uint16_t interval = sr_u16(r);
	uint8_t held = sr_u8(r);
	uint16_t head = sr_u16(r);
	uint32_t present = sr_u32(r);
	uint64_t stats[BALLOON_NSTATS];
	for (unsigned i = 0; i < BALLOON_NSTATS; i++)
		stats[i] = sr_u64(r);
	struct balloon_hinting hint = { 0 };
	uint8_t guest_valid = 0, ack = 0;
	if (r->off < r->len) {
		hint.host_cmd = sr_u32(r);
		hint.last_cmd = sr_u32(r);
		hint.guest_cmd = sr_u32(r);
		guest_valid = sr_u8(r);
		ack = sr_u8(r);
	}
	uint64_t max_pages = mem_ram_size(&vd->vm->mem) >> PAGE_SHIFT;
	int q = stats_queue(vd);
	if (!sr_done(r, "balloon"))
		return -EINVAL;
	if (num_pages > max_pages && sr_fail(r, "balloon: target of %u pages beyond guest memory", num_pages))
		return -EINVAL;
	if ((interval == 0) != (b->cfg.stats_polling_interval_s == 0) &&
	    sr_fail(r, "balloon: statistics interval does not match the configuration"))
		return -EINVAL;
	if (held > 1 || (held && (q < 0 || head >= vd->vq[q].size))) {
		sr_fail(r, "balloon: bad statistics buffer");
		return -EINVAL;
	}
	if (present >> BALLOON_NSTATS) {
		sr_fail(r, "balloon: unknown statistics present");
		return -EINVAL;
	}
	bool hinted = hint.host_cmd || hint.last_cmd || guest_valid;
	if (guest_valid > 1 || ack > 1 || (hinted && !b->cfg.free_page_hinting)) {
		sr_fail(r, "balloon: bad free page hinting state");
		return -EINVAL;
	}
	hint.guest_cmd_valid = guest_valid;
	hint.ack_on_stop = ack;
	b->hint = hint;
	b->num_pages = num_pages;
	b->cfg.amount_mib = num_pages / PAGES_PER_MIB;
	b->actual = actual;
	b->cfg.stats_polling_interval_s = interval;
	b->stats_held = held;
	b->stats_head = head;
	b->stats_present = present;
	memcpy(b->stats, stats, sizeof(stats));
	return 0;
}

/* A restored guest may use the pages it hinted again at once: DONE. */
static void balloon_restored(struct virtio_dev *vd)
{
	struct virtio_balloon *b = vd->dev;
	pthread_mutex_lock(&vd->lock);
	if (vd->active && b->cfg.free_page_hinting)
		hint_command(b, HINT_CMD_DONE);
	pthread_mutex_unlock(&vd->lock);
}

static const struct virtio_ops balloon_ops = {
	.name = "balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.num_queues = 5, /* inflate, deflate, then statistics, hinting, reporting (those negotiated) */
	.features = balloon_features,
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.reset = balloon_reset,
	.notify = balloon_notify,
	.counters = balloon_counters,
	.start_io = balloon_start_io,
	.save = balloon_save,
	.restore = balloon_restore,
	.restored = balloon_restored,
};

int virtio_balloon_init(struct virtio_balloon *b, struct vm *vm, struct evloop *loop, unsigned index,
			const struct balloon_config *cfg)
{
	memset(b, 0, sizeof(*b));
	b->cfg = *cfg;
	b->num_pages = cfg->amount_mib * PAGES_PER_MIB;
	return virtio_dev_init(&b->vd, vm, loop, index, &balloon_ops, b);
}

int virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib, char *err, size_t errlen)
{
	int ret = -EINVAL;
	pthread_mutex_lock(&b->vd.lock);
	if (!b->vd.active) {
		snprintf(err, errlen, "Balloon update error: Balloon: Device not activated yet.");
	} else if ((uint64_t)amount_mib > mem_ram_size(&b->vd.vm->mem) >> 20) {
		snprintf(err, errlen, "Balloon update error: Balloon: Requested memory should be less than %uMiB",
			 amount_mib);
	} else {
		b->cfg.amount_mib = amount_mib;
		b->num_pages = amount_mib * PAGES_PER_MIB;
		virtio_config_changed(&b->vd);
		ret = 0;
	}
	pthread_mutex_unlock(&b->vd.lock);
	return ret;
}

int virtio_balloon_set_interval(struct virtio_balloon *b, uint16_t interval_s, char *err, size_t errlen)
{
	int ret = 0;
	pthread_mutex_lock(&b->vd.lock);
	if (interval_s != b->cfg.stats_polling_interval_s) {
		if (!interval_s || !b->cfg.stats_polling_interval_s) {
			snprintf(err, errlen, "Balloon update error: Balloon: Statistics cannot be enabled/disabled "
				 "after activation.");
			ret = -EINVAL;
		} else {
			b->cfg.stats_polling_interval_s = interval_s;
			if (b->vd.active && !b->vd.paused)
				stats_return(b); /* fresh numbers now, then at the new interval */
		}
	}
	pthread_mutex_unlock(&b->vd.lock);
	return ret;
}

cJSON *virtio_balloon_stats_obj(struct virtio_balloon *b, char *err, size_t errlen)
{
	pthread_mutex_lock(&b->vd.lock);
	if (!b->cfg.stats_polling_interval_s) {
		pthread_mutex_unlock(&b->vd.lock);
		snprintf(err, errlen, "Internal VMM error: Balloon: Received stats query when stats are disabled.");
		return NULL;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "target_pages", b->num_pages);
	cJSON_AddNumberToObject(o, "actual_pages", b->actual);
	cJSON_AddNumberToObject(o, "target_mib", b->num_pages / PAGES_PER_MIB);
	cJSON_AddNumberToObject(o, "actual_mib", b->actual / PAGES_PER_MIB);
	for (unsigned t = 0; t < BALLOON_NSTATS; t++)
		if (b->stats_present & (1u << t))
			cJSON_AddNumberToObject(o, stat_names[t], (double)b->stats[t]);
	pthread_mutex_unlock(&b->vd.lock);
	return o;
}

/* Firecracker's words when the balloon was configured without hinting. */
#define HINTING_OFF "Balloon update error: Balloon: Attempting to use hinting when not enabled"

int virtio_balloon_hint_start(struct virtio_balloon *b, bool ack_on_stop, char *err, size_t errlen)
{
	int ret = -EINVAL;
	pthread_mutex_lock(&b->vd.lock);
	if (!b->cfg.free_page_hinting) {
		snprintf(err, errlen, HINTING_OFF);
	} else if (!b->vd.active) {
		snprintf(err, errlen, "Balloon update error: Balloon: Device not activated yet.");
	} else {
		uint32_t id = b->hint.last_cmd + 1;
		if (id <= HINT_CMD_DONE) /* 0 and 1 mean STOP and DONE */
			id = HINT_CMD_DONE + 1;
		b->hint.last_cmd = id;
		b->hint.ack_on_stop = ack_on_stop;
		hint_command(b, id);
		ret = 0;
	}
	pthread_mutex_unlock(&b->vd.lock);
	return ret;
}

int virtio_balloon_hint_stop(struct virtio_balloon *b, char *err, size_t errlen)
{
	int ret = -EINVAL;
	pthread_mutex_lock(&b->vd.lock);
	if (!b->cfg.free_page_hinting) {
		snprintf(err, errlen, HINTING_OFF);
	} else if (!b->vd.active) {
		snprintf(err, errlen, "Balloon update error: Balloon: Device not activated yet.");
	} else {
		hint_command(b, HINT_CMD_DONE);
		ret = 0;
	}
	pthread_mutex_unlock(&b->vd.lock);
	return ret;
}

cJSON *virtio_balloon_hint_status(struct virtio_balloon *b, char *err, size_t errlen)
{
	pthread_mutex_lock(&b->vd.lock);
	if (!b->cfg.free_page_hinting) {
		pthread_mutex_unlock(&b->vd.lock);
		snprintf(err, errlen, HINTING_OFF);
		return NULL;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "host_cmd", b->hint.host_cmd);
	if (b->hint.guest_cmd_valid)
		cJSON_AddNumberToObject(o, "guest_cmd", b->hint.guest_cmd);
	else
		cJSON_AddNullToObject(o, "guest_cmd");
	pthread_mutex_unlock(&b->vd.lock);
	return o;
}
