/* Metrics: one JSON object per line, in Firecracker's schema (every group
 * and key its clients and tests read, with the same types), written to the
 * file or FIFO of PUT /metrics or --metrics-path: at InstanceStart (or a
 * snapshot load), then once a minute, on FlushMetrics and at exit.
 *
 * Counters are of two kinds, as Firecracker's:
 * - counts of events (requests, exits, bytes, ...): each line carries what
 *   happened since the line before, so they start again from 0 after
 *   every flush;
 * - stored values (process_startup_time_us, latencies_us.*, signals.*
 *   but sigpipe, seccomp.num_faults, vmm.panic_count, the min_us/max_us of
 *   a latency aggregate): each line carries the current value.
 * Groups "block" and "net" are the sums of the per-device groups
 * "block_<drive id>" and "net_<iface id>" (their min_us/max_us are 0).
 * "id" (the --id) is written only with emit_id, "properties" only when
 * given. ember's own counters (emulated instructions, the boot timer, the
 * API server's totals) are in the group "ember", written only when the
 * metrics configuration asks for it ("ember_counters": true), since
 * Firecracker's schema admits no group it does not know. */
#ifndef EMBER_METRICS_H
#define EMBER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../api/http.h"
#include "../api/router.h"
#include "config.h"

struct cJSON;
struct machine;

enum metrics_latency {
	METRICS_FULL_CREATE_SNAPSHOT, METRICS_DIFF_CREATE_SNAPSHOT, METRICS_LOAD_SNAPSHOT,
	METRICS_PAUSE_VM, METRICS_RESUME_VM, METRICS_NLATENCIES
};

struct metrics {
	int fd;                         /* -1 until metrics_open() */
	char *pending;                  /* the end of a line partly written */
	size_t pending_off, pending_len;
	const char *id;                 /* the --id, for emit_id */
	struct metrics_config cfg;
	struct cJSON *properties;       /* parsed cfg.properties_json, or NULL */
	struct cJSON *last;             /* the totals at the last line written */
	uint64_t startup_us, startup_cpu_us;  /* exec -> API ready */
	uint64_t missed;                /* lines not written whole */
	uint64_t fails;                 /* lines not made (out of memory) */
	/* The API server's own totals, into the "ember" group (may be NULL). */
	void (*api_totals)(struct cJSON *out);
};

/* Nothing set up yet: flushes write nothing. */
void metrics_init(struct metrics *m, const char *id);

/* Open cfg->metrics_path (a regular file or FIFO, never waiting; see
 * log_open_sink). Returns 0, or -errno with the reason in err: -EEXIST
 * if metrics are already set up, -EINVAL for bad properties. */
int metrics_open(struct metrics *m, const struct metrics_config *cfg, char *err, size_t errlen);

/* Every counter's running total, in the schema's shape: per-device
 * groups from mach (NULL before the VM is built: then one zero group per
 * configured drive and interface, from cfg). The caller owns the result. */
struct cJSON *metrics_totals(const struct metrics *m, const struct vmm_config *cfg, struct machine *mach);

/* The line to write from totals (consumed): counts become what changed
 * since the last line, "block"/"net" the per-device sums, plus
 * utc_timestamp_ms, id and properties as configured. Remembers totals
 * for the next line. The caller owns the result. */
struct cJSON *metrics_line(struct metrics *m, struct cJSON *totals);

/* Write one line now. Returns 0 (nothing to do if metrics are not set
 * up), or -errno: a line that could not be written whole is lost and
 * counted in logger.missed_metrics_count; a line partly written (a FIFO
 * with little room) is finished before the next one, so none is torn.
 * VMM thread. */
int metrics_flush(struct metrics *m, const struct vmm_config *cfg, struct machine *mach);

/* Events counted from any thread. */
/* An API request for ep; rejected: its body or path did not parse (as
 * Firecracker, a request the VM then refuses is not a failure here). */
void metrics_api_request(enum http_method method, enum api_endpoint ep, bool rejected);
void metrics_deprecated_api_call(void);
/* How long an action took: from the API thread's view (api_us) and on
 * the VMM thread (vmm_us). Stored: the last one is reported. */
void metrics_latency(enum metrics_latency which, uint64_t api_us, uint64_t vmm_us);
/* A signal ember received: SIGPIPE is counted; SIGSYS (seccomp.num_faults)
 * and the signals ember stops on as Firecracker (SIGBUS, SIGSEGV,
 * SIGXFSZ, SIGXCPU, SIGHUP, SIGILL) are stored as 1. */
void metrics_signal(int signo);

#endif
