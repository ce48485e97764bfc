#include "metrics.h"

#include <cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "machine.h"
#include "mmds/mmds.h"
#include "vcpu.h"
#include "virtio/balloon.h"
#include "virtio/mem.h"
#include "virtio/blk.h"
#include "virtio/pmem.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"

/* ---- events counted from any thread ----------------------------------- */

enum { M_GET, M_PUT, M_PATCH, M_NMETHODS };

static struct {
	atomic_ullong requests[M_NMETHODS][EP_COUNT], rejected[M_NMETHODS][EP_COUNT];
	atomic_ullong deprecated;
	atomic_ullong latency_api[METRICS_NLATENCIES], latency_vmm[METRICS_NLATENCIES];
	atomic_ullong sigpipe, seccomp_faults;
	atomic_ullong fatal[6]; /* 1 once received, as fatal_signals */
} ev;

/* The signals Firecracker stops on, as its keys name them. */
static const struct { int signo; const char *key; } fatal_signals[6] = {
	{ SIGBUS, "sigbus" }, { SIGSEGV, "sigsegv" }, { SIGXFSZ, "sigxfsz" },
	{ SIGXCPU, "sigxcpu" }, { SIGHUP, "sighup" }, { SIGILL, "sigill" },
};

void metrics_api_request(enum http_method method, enum api_endpoint ep, bool rejected)
{
	int m = method == HTTP_GET ? M_GET : method == HTTP_PUT ? M_PUT : method == HTTP_PATCH ? M_PATCH : -1;
	if (m < 0 || (unsigned)ep >= EP_COUNT)
		return;
	atomic_fetch_add_explicit(&ev.requests[m][ep], 1, memory_order_relaxed);
	if (rejected)
		atomic_fetch_add_explicit(&ev.rejected[m][ep], 1, memory_order_relaxed);
}

void metrics_deprecated_api_call(void)
{
	atomic_fetch_add_explicit(&ev.deprecated, 1, memory_order_relaxed);
}

void metrics_latency(enum metrics_latency which, uint64_t api_us, uint64_t vmm_us)
{
	if ((unsigned)which >= METRICS_NLATENCIES)
		return;
	atomic_store(&ev.latency_api[which], api_us);
	atomic_store(&ev.latency_vmm[which], vmm_us);
}

void metrics_signal(int signo)
{
	if (signo == SIGPIPE)
		atomic_fetch_add(&ev.sigpipe, 1);
	if (signo == SIGSYS)
		atomic_store(&ev.seccomp_faults, 1);
	for (int i = 0; i < 6; i++)
		if (fatal_signals[i].signo == signo)
			atomic_store(&ev.fatal[i], 1);
}

/* ---- the schema --------------------------------------------------------- */

static void num(cJSON *o, const char *key, uint64_t v)
{
	cJSON_AddNumberToObject(o, key, (double)v);
}

/* Keys Firecracker has that count nothing ember does: always 0. */
static void zeros(cJSON *o, const char *const *keys)
{
	for (; *keys; keys++)
		num(o, *keys, 0);
}

static void agg(cJSON *o, const char *key, uint64_t min, uint64_t max, uint64_t sum)
{
	cJSON *a = cJSON_AddObjectToObject(o, key);
	num(a, "min_us", min);
	num(a, "max_us", max);
	num(a, "sum_us", sum);
}

/* API requests: Firecracker's key, and the method and endpoint it
 * counts (-1: an endpoint ember does not have). */
struct req_key {
	const char *key;
	int method;
	int ep;
};

static const struct req_key get_keys[] = {
	{ "instance_info", M_GET, EP_ROOT }, { "machine_cfg", M_GET, EP_MACHINE_CONFIG },
	{ "mmds", M_GET, EP_MMDS }, { "vmm_version", M_GET, EP_VERSION },
	{ "hotplug_memory", M_GET, EP_HOTPLUG_MEMORY },
	{ NULL, 0, 0 },
};
static const struct req_key put_keys[] = {
	{ "actions", M_PUT, EP_ACTIONS }, { "boot_source", M_PUT, EP_BOOT_SOURCE },
	{ "drive", M_PUT, EP_DRIVES }, { "logger", M_PUT, EP_LOGGER },
	{ "machine_cfg", M_PUT, EP_MACHINE_CONFIG }, { "cpu_cfg", M_PUT, EP_CPU_CONFIG },
	{ "metrics", M_PUT, EP_METRICS }, { "network", M_PUT, EP_NETWORK_INTERFACES },
	{ "mmds", M_PUT, EP_MMDS }, { "vsock", M_PUT, EP_VSOCK }, { "pmem", M_PUT, EP_PMEM },
	{ "serial", M_PUT, EP_SERIAL }, { "hotplug_memory", M_PUT, EP_HOTPLUG_MEMORY },
	{ NULL, 0, 0 },
};
static const struct req_key patch_keys[] = {
	{ "drive", M_PATCH, EP_DRIVES }, { "network", M_PATCH, EP_NETWORK_INTERFACES },
	{ "machine_cfg", M_PATCH, EP_MACHINE_CONFIG }, { "mmds", M_PATCH, EP_MMDS },
	{ "hotplug_memory", M_PATCH, EP_HOTPLUG_MEMORY }, { "pmem", M_PATCH, EP_PMEM },
	{ NULL, 0, 0 },
};

static void add_requests(cJSON *root, const char *group, const struct req_key *k, bool fails)
{
	cJSON *o = cJSON_AddObjectToObject(root, group);
	char name[64];
	for (; k->key; k++) {
		uint64_t n = 0, f = 0;
		if (k->ep >= 0) {
			n = atomic_load(&ev.requests[k->method][k->ep]);
			f = atomic_load(&ev.rejected[k->method][k->ep]);
		}
		snprintf(name, sizeof(name), "%s_count", k->key);
		num(o, name, n);
		if (fails) {
			snprintf(name, sizeof(name), "%s_fails", k->key);
			num(o, name, f);
		}
	}
}

static const char *const block_zero_keys[] = {
	"activate_fails", "cfg_fails", "no_avail_buffer", "rate_limiter_event_count",
	"io_engine_throttled_events", "remaining_reqs_count", NULL,
};

/* A drive's group named key; blk NULL: all 0 (a drive not built yet). */
static void add_block(cJSON *root, const char *key, struct virtio_blk *blk)
{
	cJSON *o = cJSON_AddObjectToObject(root, key);
	struct blk_stats st = { 0 };
	uint64_t notifies = 0, failures = 0;
	if (blk) {
		pthread_mutex_lock(&blk->vd.lock);
		st = blk->stats;
		notifies = blk->vd.stats.notifies;
		failures = blk->vd.stats.failures;
		pthread_mutex_unlock(&blk->vd.lock);
	}
	zeros(o, block_zero_keys);
	num(o, "event_fails", failures);
	num(o, "execute_fails", st.io_errors);
	num(o, "invalid_reqs_count", st.invalid + st.unsupported);
	num(o, "flush_count", st.flush_count);
	num(o, "queue_event_count", notifies);
	num(o, "update_count", st.update_count);
	num(o, "update_fails", st.update_fails);
	num(o, "read_bytes", st.read_bytes);
	num(o, "write_bytes", st.write_bytes);
	num(o, "read_count", st.read_count);
	num(o, "write_count", st.write_count);
	num(o, "rate_limiter_throttled_events", st.throttled);
	agg(o, "read_agg", 0, 0, 0);
	agg(o, "write_agg", 0, 0, 0);
}

static const char *const net_zero_keys[] = {
	"activate_fails", "cfg_fails", "no_rx_avail_buffer", "no_tx_avail_buffer",
	"rx_queue_event_count", "rx_event_rate_limiter_count", "rx_tap_event_count",
	"tap_read_fails", "tap_write_fails", "tx_queue_event_count", "tx_rate_limiter_event_count",
	"tx_spoofed_mac_count", "tx_remaining_reqs_count", NULL,
};

static void add_net(cJSON *root, const char *key, struct virtio_net *net)
{
	cJSON *o = cJSON_AddObjectToObject(root, key);
	struct net_stats st = { 0 };
	uint64_t failures = 0;
	if (net) {
		pthread_mutex_lock(&net->vd.lock);
		st = net->stats;
		failures = net->vd.stats.failures;
		pthread_mutex_unlock(&net->vd.lock);
	}
	zeros(o, net_zero_keys);
	num(o, "event_fails", failures);
	num(o, "rx_rate_limiter_throttled", st.rx_throttled);
	num(o, "rx_bytes_count", st.rx_bytes);
	num(o, "rx_packets_count", st.rx_packets);
	num(o, "rx_fails", st.rx_errors);
	num(o, "rx_count", st.rx_packets);
	num(o, "tx_bytes_count", st.tx_bytes);
	num(o, "tx_malformed_frames", st.tx_dropped);
	num(o, "tx_fails", st.tx_errors);
	num(o, "tx_count", st.tx_packets);
	num(o, "tx_packets_count", st.tx_packets);
	num(o, "tx_rate_limiter_throttled", st.tx_throttled);
	agg(o, "tap_write_agg", 0, 0, 0);
}

/* The network side's counts, summed over the interfaces that answer MMDS. */
static struct mmds_stack_stats mmds_totals(struct machine *mach)
{
	struct mmds_stack_stats t = { 0 };
	for (unsigned i = 0; mach && i < mach->nnet; i++)
		virtio_net_mmds_stats(mach->net[i], &t);
	return t;
}

static void add_mmds(cJSON *root, struct machine *mach)
{
	struct mmds_stack_stats t = mmds_totals(mach);
	cJSON *o = cJSON_AddObjectToObject(root, "mmds");
	num(o, "rx_accepted", t.rx_accepted);
	num(o, "rx_accepted_err", t.rx_accepted_err);
	num(o, "rx_accepted_unusual", t.rx_accepted_unusual);
	num(o, "rx_bad_eth", t.rx_bad_eth);
	/* the answerer's (mmds.c), the rest the responder's (stack.c), per device */
	num(o, "rx_invalid_token", atomic_load_explicit(&mmds_metrics.rx_invalid_token, memory_order_relaxed));
	num(o, "rx_no_token", atomic_load_explicit(&mmds_metrics.rx_no_token, memory_order_relaxed));
	num(o, "rx_count", t.rx_count);
	num(o, "tx_bytes", t.tx_bytes);
	num(o, "tx_count", t.tx_count);
	num(o, "tx_errors", t.tx_errors);
	num(o, "tx_frames", t.tx_frames);
	num(o, "connections_created", t.connections_created);
	num(o, "connections_destroyed", t.connections_destroyed);
}

static const char *const vsock_zero_keys[] = {
	"activate_fails", "cfg_fails", "rx_queue_event_fails", "tx_queue_event_fails",
	"ev_queue_event_fails", "muxer_event_fails", "conn_event_fails", "rx_queue_event_count",
	"tx_queue_event_count", "conns_removed", "killq_resync", "tx_flush_fails", "tx_write_fails",
	"rx_read_fails", NULL,
};

static void add_vsock(cJSON *root, struct virtio_vsock *vs)
{
	cJSON *o = cJSON_AddObjectToObject(root, "vsock");
	struct vsock_stats st = { 0 };
	if (vs) {
		pthread_mutex_lock(&vs->vd.lock);
		st = vs->stats;
		pthread_mutex_unlock(&vs->vd.lock);
	}
	zeros(o, vsock_zero_keys);
	num(o, "rx_bytes_count", st.rx_bytes);
	num(o, "tx_bytes_count", st.tx_bytes);
	num(o, "rx_packets_count", st.rx_packets);
	num(o, "tx_packets_count", st.tx_packets);
	num(o, "conns_added", st.conns_host + st.conns_guest);
	num(o, "conns_killed", st.rst_sent);
}

static void add_balloon(cJSON *root, struct virtio_balloon *b)
{
	static const char *const zero_keys[] = { "activate_fails", NULL };
	struct balloon_counters k = { 0 };
	uint64_t failures = 0;
	if (b) {
		pthread_mutex_lock(&b->vd.lock);
		k = b->counters;
		failures = b->vd.stats.failures;
		pthread_mutex_unlock(&b->vd.lock);
	}
	cJSON *o = cJSON_AddObjectToObject(root, "balloon");
	zeros(o, zero_keys);
	num(o, "inflate_count", k.inflate_count);
	num(o, "stats_updates_count", k.stats_updates_count);
	num(o, "stats_update_fails", k.stats_update_fails);
	num(o, "deflate_count", k.deflate_count);
	num(o, "event_fails", failures + k.bad_pfns + k.discard_fails);
	num(o, "free_page_report_count", k.report_count);
	num(o, "free_page_report_freed", k.report_freed);
	num(o, "free_page_report_fails", k.report_fails);
	num(o, "free_page_hint_count", k.hint_count);
	num(o, "free_page_hint_freed", k.hint_freed);
	num(o, "free_page_hint_fails", k.hint_fails);
}

/* Firecracker's memory_hotplug group; the latencies (*_agg) are not
 * measured and stay 0. */
static void add_memory_hotplug(cJSON *root, struct virtio_mem *m)
{
	struct virtio_mem_counters k = { 0 };
	uint64_t failures = 0;
	if (m) {
		pthread_mutex_lock(&m->vd.lock);
		k = m->counters;
		failures = m->vd.stats.failures;
		pthread_mutex_unlock(&m->vd.lock);
	}
	cJSON *hp = cJSON_AddObjectToObject(root, "memory_hotplug");
	num(hp, "activate_fails", 0);
	num(hp, "queue_event_fails", k.queue_event_fails + failures);
	num(hp, "queue_event_count", k.queue_event_count);
	num(hp, "plug_count", k.plug_count);
	num(hp, "plug_bytes", k.plug_bytes);
	num(hp, "plug_fails", k.plug_fails);
	num(hp, "unplug_count", k.unplug_count);
	num(hp, "unplug_bytes", k.unplug_bytes);
	num(hp, "unplug_fails", k.unplug_fails);
	num(hp, "unplug_discard_fails", k.unplug_discard_fails);
	num(hp, "state_count", k.state_count);
	num(hp, "state_fails", k.state_fails);
	num(hp, "unplug_all_count", k.unplug_all_count);
	num(hp, "unplug_all_fails", k.unplug_all_fails);
	agg(hp, "plug_agg", 0, 0, 0);
	agg(hp, "unplug_agg", 0, 0, 0);
	agg(hp, "state_agg", 0, 0, 0);
	agg(hp, "unplug_all_agg", 0, 0, 0);
}

static void add_entropy(cJSON *root, struct virtio_rng *rng)
{
	static const char *const zero_keys[] = { "activate_fails", "host_rng_fails",
		"rate_limiter_event_count", NULL };
	cJSON *o = cJSON_AddObjectToObject(root, "entropy");
	uint64_t requests = 0, bytes = 0, throttled = 0, failures = 0;
	if (rng) {
		pthread_mutex_lock(&rng->vd.lock);
		requests = rng->requests;
		bytes = rng->bytes;
		throttled = rng->throttled;
		failures = rng->vd.stats.failures;
		pthread_mutex_unlock(&rng->vd.lock);
	}
	zeros(o, zero_keys);
	num(o, "entropy_event_fails", failures);
	num(o, "entropy_event_count", requests);
	num(o, "entropy_bytes", bytes);
	num(o, "entropy_rate_limiter_throttled", throttled);
}

/* "pmem": the sum over the devices (Firecracker's schema has no
 * per-device groups for it yet). */
static void add_pmem(cJSON *root, struct machine *mach)
{
	uint64_t cfg_fails = 0, event_fails = 0, notifies = 0, throttled = 0, rl_events = 0;
	for (unsigned i = 0; mach && i < mach->npmem; i++) {
		struct virtio_pmem *pm = mach->pmem[i];
		pthread_mutex_lock(&pm->vd.lock);
		cfg_fails += pm->stats.cfg_fails;
		event_fails += pm->stats.io_errors + pm->stats.invalid + pm->vd.stats.failures;
		notifies += pm->vd.stats.notifies;
		throttled += pm->stats.throttled;
		rl_events += pm->stats.rl_events;
		pthread_mutex_unlock(&pm->vd.lock);
	}
	cJSON *o = cJSON_AddObjectToObject(root, "pmem");
	num(o, "activate_fails", 0);
	num(o, "cfg_fails", cfg_fails);
	num(o, "event_fails", event_fails);
	num(o, "queue_event_count", notifies);
	num(o, "rate_limiter_throttled_events", throttled);
	num(o, "rate_limiter_event_count", rl_events);
}

static void add_vcpus(cJSON *root, struct machine *mach)
{
	static const char *const names[VCPU_NEXITS] = { "exit_io_in", "exit_io_out", "exit_mmio_read",
		"exit_mmio_write" };
	uint64_t exits[VCPU_NEXITS] = { 0 }, sum[VCPU_NEXITS] = { 0 }, min[VCPU_NEXITS] = { 0 },
		 max[VCPU_NEXITS] = { 0 }, failures = 0;
	for (unsigned i = 0; mach && i < mach->vm.nvcpus && mach->vm.vcpus; i++) {
		struct vcpu_stats *st = &mach->vm.vcpus[i].stats;
		for (int k = 0; k < VCPU_NEXITS; k++) {
			uint64_t n = atomic_load(&st->exits[k]);
			uint64_t lo = atomic_load(&st->min_us[k]), hi = atomic_load(&st->max_us[k]);
			/* A vCPU without such an exit has no minimum. */
			if (n && (!exits[k] || lo < min[k]))
				min[k] = lo;
			exits[k] += n;
			sum[k] += atomic_load(&st->sum_us[k]);
			if (hi > max[k])
				max[k] = hi;
		}
		failures += atomic_load(&st->failures);
	}
	cJSON *o = cJSON_AddObjectToObject(root, "vcpu");
	char key[32];
	for (int k = 0; k < VCPU_NEXITS; k++)
		num(o, names[k], exits[k]);
	num(o, "failures", failures);
	num(o, "kvmclock_ctrl_fails", 0);
	for (int k = 0; k < VCPU_NEXITS; k++) {
		snprintf(key, sizeof(key), "%s_agg", names[k]);
		agg(o, key, min[k], max[k], sum[k]);
	}
}

static void add_legacy(cJSON *root, struct machine *mach)
{
	uint64_t tx = 0, tx_err = 0, tx_drop = 0, rx = 0, rx_drop = 0, resets = 0;
	if (mach) {
		pthread_mutex_lock(&mach->serial.lock);
		tx = mach->serial.tx_bytes;
		tx_err = mach->serial.tx_errors;
		tx_drop = mach->serial.tx_dropped;
		rx = mach->serial.rx_bytes;
		rx_drop = mach->serial.rx_dropped;
		pthread_mutex_unlock(&mach->serial.lock);
		pthread_mutex_lock(&mach->i8042.lock);
		resets = mach->i8042.resets;
		pthread_mutex_unlock(&mach->i8042.lock);
	}
	cJSON *u = cJSON_AddObjectToObject(root, "uart");
	num(u, "error_count", 0);
	num(u, "flush_count", 0);
	num(u, "missed_read_count", rx_drop);  /* input the guest's buffer had no room for */
	num(u, "missed_write_count", tx_err);
	num(u, "read_count", rx);
	num(u, "write_count", tx);
	num(u, "rate_limiter_dropped_bytes", tx_drop);
	cJSON *k = cJSON_AddObjectToObject(root, "i8042");
	static const char *const i8042_zero[] = { "error_count", "missed_read_count", "missed_write_count",
		"read_count", "write_count", NULL };
	zeros(k, i8042_zero);
	num(k, "reset_count", resets);
}

static void add_ember(const struct metrics *m, cJSON *root, struct machine *mach)
{
	cJSON *o = cJSON_AddObjectToObject(root, "ember");
	if (m->api_totals)
		m->api_totals(cJSON_AddObjectToObject(o, "api"));
	if (!mach)
		return;
	if (mach->has_boot_timer) {
		num(o, "guest_boot_time_us", atomic_load(&mach->boot_timer.boot_us));
		num(o, "guest_boot_time_cpu_us", atomic_load(&mach->boot_timer.boot_cpu_us));
	}
	struct mmds_stack_stats mm = mmds_totals(mach);
	cJSON *mo = cJSON_AddObjectToObject(o, "mmds");
	num(mo, "rst_dropped", mm.rst_dropped);
	num(mo, "connections_refused", mm.conn_refused);
	cJSON *emu = cJSON_AddObjectToObject(o, "emulated_instructions");
	for (int k = 0; k < EMU_NKINDS; k++)
		num(emu, emu_kind_name((enum emu_kind)k), atomic_load(&mach->vm.emu.count[k]));
}

cJSON *metrics_totals(const struct metrics *m, const struct vmm_config *cfg, struct machine *mach)
{
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	cJSON *api = cJSON_AddObjectToObject(root, "api_server");
	num(api, "process_startup_time_us", m->startup_us);
	num(api, "process_startup_time_cpu_us", m->startup_cpu_us);

	add_balloon(root, mach ? mach->balloon : NULL);

	char key[96];
	if (mach)
		for (unsigned i = 0; i < mach->nblk; i++) {
			snprintf(key, sizeof(key), "block_%s", mach->blk[i]->cfg.drive_id);
			add_block(root, key, mach->blk[i]);
		}
	else
		for (unsigned i = 0; i < cfg->ndrives; i++) {
			snprintf(key, sizeof(key), "block_%s", cfg->drives[i].drive_id);
			add_block(root, key, NULL);
		}

	num(cJSON_AddObjectToObject(root, "deprecated_api"), "deprecated_http_api_calls",
	    atomic_load(&ev.deprecated));
	add_requests(root, "get_api_requests", get_keys, false);
	add_legacy(root, mach);

	static const char *const lat_names[METRICS_NLATENCIES] = { "full_create_snapshot",
		"diff_create_snapshot", "load_snapshot", "pause_vm", "resume_vm" };
	cJSON *lat = cJSON_AddObjectToObject(root, "latencies_us");
	for (int i = 0; i < METRICS_NLATENCIES; i++)
		num(lat, lat_names[i], atomic_load(&ev.latency_api[i]));
	for (int i = 0; i < METRICS_NLATENCIES; i++) {
		snprintf(key, sizeof(key), "vmm_%s", lat_names[i]);
		num(lat, key, atomic_load(&ev.latency_vmm[i]));
	}

	cJSON *lg = cJSON_AddObjectToObject(root, "logger");
	num(lg, "missed_metrics_count", m->missed);
	num(lg, "metrics_fails", m->fails);
	num(lg, "missed_log_count", log_missed_count());
	num(lg, "rate_limited_log_count", log_rate_limited_count());

	add_mmds(root, mach);

	if (mach)
		for (unsigned i = 0; i < mach->nnet; i++) {
			snprintf(key, sizeof(key), "net_%s", mach->net[i]->cfg.iface_id);
			add_net(root, key, mach->net[i]);
		}
	else
		for (unsigned i = 0; i < cfg->nnets; i++) {
			snprintf(key, sizeof(key), "net_%s", cfg->nets[i].iface_id);
			add_net(root, key, NULL);
		}

	add_requests(root, "patch_api_requests", patch_keys, true);
	add_requests(root, "put_api_requests", put_keys, true);
	num(cJSON_AddObjectToObject(root, "seccomp"), "num_faults", atomic_load(&ev.seccomp_faults));
	add_vcpus(root, mach);
	num(cJSON_AddObjectToObject(root, "vmm"), "panic_count", 0);

	cJSON *sig = cJSON_AddObjectToObject(root, "signals");
	for (int i = 0; i < 6; i++)
		num(sig, fatal_signals[i].key, atomic_load(&ev.fatal[i]));
	num(sig, "sigpipe", atomic_load(&ev.sigpipe));

	add_vsock(root, mach ? mach->vsock : NULL);
	add_entropy(root, mach ? mach->rng : NULL);

	cJSON *irq = cJSON_AddObjectToObject(root, "interrupts");
	num(irq, "triggers", 0);
	num(irq, "config_updates", 0);
	add_pmem(root, mach);
	add_memory_hotplug(root, mach ? mach->hotplug : NULL);

	if (m->cfg.ember_counters)
		add_ember(m, root, mach);
	return root;
}

/* ---- one line ------------------------------------------------------------ */

/* Values that are reported as they are, not as what changed (Firecracker's
 * stored metrics). ember's own group holds totals. */
static bool stored(const char *group, const char *key)
{
	static const char *const groups[] = { "api_server", "latencies_us", "seccomp", "vmm", "ember", NULL };
	if (strcmp(group, "signals") == 0)
		return strcmp(key, "sigpipe") != 0; /* a count; the others are 0 or 1 */
	for (const char *const *g = groups; *g; g++)
		if (strcmp(group, *g) == 0)
			return true;
	return strcmp(key, "min_us") == 0 || strcmp(key, "max_us") == 0;
}

/* cur's counts become cur - prev (prev may be NULL: a new group). */
static void to_deltas(cJSON *cur, const cJSON *prev, const char *group)
{
	for (cJSON *it = cur->child; it; it = it->next) {
		const cJSON *p = prev ? cJSON_GetObjectItemCaseSensitive(prev, it->string) : NULL;
		if (cJSON_IsObject(it)) {
			to_deltas(it, p, group ? group : it->string);
		} else if (cJSON_IsNumber(it) && group && !stored(group, it->string) && cJSON_IsNumber(p)) {
			/* A counter never goes back; if a device was replaced, its new total stands. */
			double d = it->valuedouble >= p->valuedouble ? it->valuedouble - p->valuedouble
								     : it->valuedouble;
			cJSON_SetNumberValue(it, d);
		}
	}
}

/* sum += every number of dev, recursively; min_us/max_us stay 0 in an
 * aggregate, as Firecracker's (only its sums aggregate). */
static void add_into(cJSON *sum, const cJSON *dev)
{
	for (const cJSON *it = dev->child; it; it = it->next) {
		cJSON *s = cJSON_GetObjectItemCaseSensitive(sum, it->string);
		if (cJSON_IsObject(it)) {
			if (!s)
				s = cJSON_AddObjectToObject(sum, it->string);
			add_into(s, it);
		} else if (cJSON_IsNumber(it)) {
			bool keep0 = strcmp(it->string, "min_us") == 0 || strcmp(it->string, "max_us") == 0;
			if (!s)
				s = cJSON_AddNumberToObject(sum, it->string, 0);
			if (!keep0)
				cJSON_SetNumberValue(s, s->valuedouble + it->valuedouble);
		}
	}
}

/* "block" (or "net"): the sum of the "block_*" groups; with no device,
 * the schema's keys at 0 (zero_group adds them). */
static void add_aggregate(cJSON *line, const char *name, void (*zero_group)(cJSON *, const char *))
{
	size_t n = strlen(name);
	cJSON *sum = NULL;
	for (const cJSON *it = line->child; it; it = it->next)
		if (strncmp(it->string, name, n) == 0 && it->string[n] == '_' && cJSON_IsObject(it)) {
			if (!sum)
				sum = cJSON_CreateObject();
			add_into(sum, it);
		}
	if (sum)
		cJSON_AddItemToObject(line, name, sum);
	else
		zero_group(line, name);
}

static void zero_block(cJSON *root, const char *key)
{
	add_block(root, key, NULL);
}

static void zero_net(cJSON *root, const char *key)
{
	add_net(root, key, NULL);
}

cJSON *metrics_line(struct metrics *m, cJSON *totals)
{
	cJSON *line = cJSON_Duplicate(totals, true);
	if (!line) {
		cJSON_Delete(totals);
		return NULL;
	}
	to_deltas(line, m->last, NULL);
	cJSON_Delete(m->last);
	m->last = totals;
	add_aggregate(line, "block", zero_block);
	add_aggregate(line, "net", zero_net);

	/* utc_timestamp_ms first, as Firecracker writes it. */
	cJSON *out = cJSON_CreateObject();
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	num(out, "utc_timestamp_ms", (uint64_t)now.tv_sec * 1000ULL + (uint64_t)now.tv_nsec / 1000000);
	while (line->child) {
		cJSON *it = cJSON_DetachItemViaPointer(line, line->child);
		char key[128];
		snprintf(key, sizeof(key), "%s", it->string);
		cJSON_AddItemToObject(out, key, it);
	}
	cJSON_Delete(line);
	line = out;
	if (m->cfg.emit_id)
		cJSON_AddStringToObject(line, "id", m->id);
	if (m->properties)
		cJSON_AddItemToObject(line, "properties", cJSON_Duplicate(m->properties, true));
	return line;
}

/* ---- setup and writing -------------------------------------------------- */

void metrics_init(struct metrics *m, const char *id)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->id = id;
}

int metrics_open(struct metrics *m, const struct metrics_config *cfg, char *err, size_t errlen)
{
	if (m->fd >= 0) {
		/* Firecracker's text (its clients match it), then ember's detail. */
		snprintf(err, errlen, "Metrics error: Cannot initialize the metrics system due to bad user input: "
			 "Reinitialization of metrics not allowed. (metrics go to %s)", m->cfg.metrics_path);
		return -EEXIST;
	}
	cJSON *props = NULL;
	if (cfg->properties_json[0] && !cJSON_IsObject(props = cJSON_Parse(cfg->properties_json))) {
		cJSON_Delete(props);
		snprintf(err, errlen, "metrics.properties: expected an object of strings");
		return -EINVAL;
	}
	int fd = log_open_sink("metrics.metrics_path", cfg->metrics_path, err, errlen);
	if (fd < 0) {
		cJSON_Delete(props);
		return fd;
	}
	m->fd = fd;
	m->cfg = *cfg;
	m->properties = props;
	return 0;
}

/* Write what is left of a line. Returns true once nothing is left. */
static bool write_pending(struct metrics *m)
{
	while (m->pending_len) {
		ssize_t n = write(m->fd, m->pending + m->pending_off, m->pending_len);
		if (n <= 0)
			return false;
		m->pending_off += (size_t)n;
		m->pending_len -= (size_t)n;
	}
	free(m->pending);
	m->pending = NULL;
	m->pending_off = 0;
	return true;
}

int metrics_flush(struct metrics *m, const struct vmm_config *cfg, struct machine *mach)
{
	if (m->fd < 0)
		return 0;
	cJSON *line = metrics_line(m, metrics_totals(m, cfg, mach));
	char *text = line ? cJSON_PrintUnformatted(line) : NULL;
	cJSON_Delete(line);
	if (!text) {
		m->fails++;
		return -ENOMEM;
	}
	/* Non-blocking: a FIFO nobody reads loses lines, counted. A line is
	 * longer than PIPE_BUF, so a FIFO with little room takes part of it:
	 * the rest goes first at the next flush, and no line is ever torn. */
	if (!write_pending(m)) {
		free(text);
		m->missed++;
		return -EAGAIN;
	}
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL: written by length */
	m->pending = text;
	m->pending_len = len + 1;
	if (write_pending(m))
		return 0;
	if (m->pending_off == 0) { /* nothing of it went: lost */
		free(m->pending);
		m->pending = NULL;
		m->pending_len = 0;
		m->missed++;
		return -EAGAIN;
	}
	return 0;
}
