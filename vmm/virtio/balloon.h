/* virtio-balloon (virtio 1.2, section 5.5): the host asks the guest for
 * memory back by setting a target size (num_pages); the guest's driver
 * hands pages over on the inflate queue and ember gives them back to the
 * host (mem_discard), so the VMM's RSS falls. Deflating only returns them
 * to the guest's allocator (its next touch faults in a fresh page). With a
 * statistics interval the device holds the driver's statistics buffer and
 * returns it every interval, which makes the driver send fresh numbers;
 * with free page reporting the guest reports free ranges on their own
 * queue and they are given back too. With free page hinting the host
 * starts a run by a new command id in config space; the driver sends the
 * guest's free ranges on the hinting queue, which are given back, and
 * holds them until the host says DONE. */
#ifndef EMBER_VIRTIO_BALLOON_H
#define EMBER_VIRTIO_BALLOON_H

#include "../config.h"
#include "virtio.h"

#define BALLOON_NSTATS 16     /* VIRTIO_BALLOON_S_* tags ember knows */

struct balloon_counters {
	uint64_t inflate_count, deflate_count;   /* buffers on those queues */
	uint64_t stats_updates_count, stats_update_fails;
	uint64_t report_count, report_freed, report_fails;
	uint64_t hint_count, hint_freed, hint_fails;   /* hinted ranges, bytes given back */
	uint64_t bad_pfns;                       /* page numbers outside guest RAM */
	uint64_t discard_fails;
};

struct balloon_hinting {
	uint32_t host_cmd;           /* config space free_page_hint_cmd_id: STOP (0), DONE (1) or a run */
	uint32_t last_cmd;           /* the last run's id */
	uint32_t guest_cmd;          /* the driver's last command id, if guest_cmd_valid */
	bool guest_cmd_valid;
	bool ack_on_stop;            /* say DONE when the driver says it finished */
};

struct virtio_balloon {
	struct virtio_dev vd;
	struct balloon_config cfg;   /* as configured; amount_mib and the interval follow updates */
	uint32_t num_pages;          /* config space: the target, in 4 KiB pages */
	uint32_t actual;             /* config space: what the driver says it holds */
	bool stats_held;             /* the driver's statistics buffer is ours */
	uint16_t stats_head;
	uint32_t stats_present;      /* bit per tag received */
	uint64_t stats[BALLOON_NSTATS];
	struct evloop_timer stats_timer;
	struct balloon_hinting hint;
	struct balloon_counters counters;
};

/* A run of consecutive page frames: [pfn, pfn + n). */
struct balloon_range {
	uint64_t pfn;
	uint64_t n;
};

/* Coalesce page-frame numbers (as the guest gives them, in any order)
 * into runs of consecutive frames, in the given order: a frame that
 * continues the previous run extends it. Writes at most n runs. */
unsigned virtio_balloon_coalesce(const uint32_t *pfns, unsigned n, struct balloon_range *out);

/* Parse a statistics buffer (10-byte {le16 tag, le64 value} entries; a
 * trailing partial entry and unknown tags are ignored) into stats[] and
 * the present mask. Returns the number of entries taken. */
unsigned virtio_balloon_parse_stats(const uint8_t *buf, size_t len, uint64_t *stats,
				    uint32_t *present);

/* Firecracker's name of statistics tag t ("swap_in", ...), or NULL. */
const char *virtio_balloon_stat_name(unsigned t);

int virtio_balloon_init(struct virtio_balloon *b, struct vm *vm, struct evloop *loop, unsigned index,
			const struct balloon_config *cfg);

/* PATCH /balloon after boot: a new target. Takes the lock. Returns 0, or
 * -EINVAL with Firecracker's message in err (the driver has not started
 * the device; more than the guest's memory). */
int virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib, char *err, size_t errlen);

/* PATCH /balloon/statistics: a new interval; statistics cannot be turned
 * on or off after boot. Takes the lock. Returns 0 or -EINVAL with err. */
int virtio_balloon_set_interval(struct virtio_balloon *b, uint16_t interval_s, char *err, size_t errlen);

/* GET /balloon/statistics: a new JSON object (cJSON *), or NULL with err
 * when statistics are disabled. Takes the lock. */
struct cJSON;
struct cJSON *virtio_balloon_stats_obj(struct virtio_balloon *b, char *err, size_t errlen);

/* PATCH /balloon/hinting/start: a new run (a new command id, never 0 or
 * 1); with ack_on_stop, DONE follows by itself once the driver finished.
 * /balloon/hinting/stop: DONE now (the driver may reuse the pages it
 * hinted). Both take the lock and return 0 or -EINVAL with Firecracker's
 * message in err (hinting not configured; the device not started). */
int virtio_balloon_hint_start(struct virtio_balloon *b, bool ack_on_stop, char *err, size_t errlen);
int virtio_balloon_hint_stop(struct virtio_balloon *b, char *err, size_t errlen);

/* GET /balloon/hinting/status: {"host_cmd", "guest_cmd" (null until the
 * driver sent one)}, or NULL with err when hinting is not configured.
 * Takes the lock. */
struct cJSON *virtio_balloon_hint_status(struct virtio_balloon *b, char *err, size_t errlen);

#endif
