#include "router.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../vmm/version.h"
#include "config_json.h"

static const char *const endpoint_names[EP_COUNT] = {
	[EP_ROOT] = "root", [EP_VERSION] = "version", [EP_MACHINE_CONFIG] = "machine_config",
	[EP_VM_CONFIG] = "vm_config", [EP_BOOT_SOURCE] = "boot_source", [EP_DRIVES] = "drives",
	[EP_NETWORK_INTERFACES] = "network_interfaces", [EP_VSOCK] = "vsock",
	[EP_ENTROPY] = "entropy", [EP_SERIAL] = "serial", [EP_LOGGER] = "logger",
	[EP_METRICS] = "metrics", [EP_ACTIONS] = "actions", [EP_VM] = "vm",
	[EP_SNAPSHOT_CREATE] = "snapshot_create", [EP_SNAPSHOT_LOAD] = "snapshot_load",
	[EP_MMDS] = "mmds", [EP_CPU_CONFIG] = "cpu_config", [EP_PMEM] = "pmem", [EP_BALLOON] = "balloon",
	[EP_BALLOON_STATS] = "balloon_stats", [EP_BALLOON_HINTING] = "balloon_hinting",
	[EP_HOTPLUG_MEMORY] = "hotplug_memory", [EP_MIGRATION] = "ember_migration",
	[EP_UNSUPPORTED] = "unsupported",
	[EP_UNKNOWN] = "unknown",
};

const char *api_endpoint_name(enum api_endpoint ep)
{
	return ep < EP_COUNT ? endpoint_names[ep] : "?";
}

/* Methods as a bit set. */
#define M_GET (1u << HTTP_GET)
#define M_PUT (1u << HTTP_PUT)
#define M_PATCH (1u << HTTP_PATCH)
#define M_DELETE (1u << HTTP_DELETE)

/* Firecracker endpoints ember does not implement (yet): they answer 400
 * saying so, so clients see a refusal and not a missing endpoint. */
static const struct {
	const char *path;
	bool prefix;        /* "/pmem/" + id */
	unsigned methods;
} unsupported[] = {
	{ "/pmem/", true, M_DELETE },
	{ "/drives/", true, M_DELETE },
	{ "/network-interfaces/", true, M_DELETE },
};

/* What a request whose body does not deserialize is answered with,
 * before the deserializer's words. */
#define DESERIALIZE_FAULT "An error occurred when deserializing the json body of a request: "

__attribute__((format(printf, 3, 4)))
static void answer(struct route_result *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->fault, sizeof(r->fault), fmt, ap);
	va_end(ap);
	r->status = status;
}

/* "/drives/<id>": the id, if the path has that prefix and one id ("" if
 * it has none). */
static const char *path_id(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n - 1) != 0 || (path[n - 1] != '/' && path[n - 1] != '\0'))
		return NULL;
	const char *id = path[n - 1] ? path + n : "";
	if (strchr(id, '/'))
		return NULL;
	return id;
}

/* Firecracker's rule for ids in paths: letters, digits and '_'. */
static bool id_ok(const char *id, struct route_result *r)
{
	if (!*id) {
		answer(r, 400, "The ID cannot be empty.");
		return false;
	}
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-')) {
			answer(r, 400, "API Resource IDs can only contain alphanumeric characters and underscores.");
			return false;
		}
	return true;
}

/* A refusal from config_json in a deserializer's words gets the prefix
 * and the position Firecracker's answers carry. */
static void deserialize_fault(const struct http_request *req, const cJSON *obj, struct route_result *r)
{
	size_t off;
	unsigned line, col;
	if (!config_json_fault_serde(req->body, req->body_len, obj, &off, &line, &col))
		return;
	char msg[sizeof(r->fault)];
	snprintf(msg, sizeof(msg), "%s", r->fault + off);
	answer(r, 400, DESERIALIZE_FAULT "%s at line %u column %u.", msg, line, col);
}

static cJSON *parse_body(const struct http_request *req, struct route_result *r)
{
	char why[256];
	cJSON *obj = config_json_parse(req->body, req->body_len, why, sizeof(why));
	if (!obj) {
		answer(r, 400, DESERIALIZE_FAULT "%s.", why);
	} else if (!cJSON_IsObject(obj)) {
		static const char *const none[] = { NULL };
		config_json_check_keys(obj, "body", none, r->fault, sizeof(r->fault));
		deserialize_fault(req, obj, r);
		cJSON_Delete(obj);
		obj = NULL;
	}
	return obj;
}

static int get_rate_limiter(const cJSON *obj, const char *key, const char *section, bool *has,
			    struct ratelimiter_config *rl, struct route_result *r)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	*has = v && !cJSON_IsNull(v);
	if (!*has)
		return 0;
	char sec[96];
	snprintf(sec, sizeof(sec), "%s.%s", section, key);
	if (config_json_rate_limiter(v, sec, rl, r->fault, sizeof(r->fault))) {
		r->status = 400;
		return -1;
	}
	return 0;
}

/* Only the named keys may appear (a narrower schema than a section's). */
static bool only_keys(const cJSON *obj, const char *section, const char *const *keys,
		      struct route_result *r)
{
	if (!config_json_check_keys(obj, section, keys, r->fault, sizeof(r->fault)))
		return true;
	r->status = 400;
	return false;
}

/* A non-null value of the key. */
static const cJSON *get(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return v && !cJSON_IsNull(v) ? v : NULL;
}

/* One of variants at key (its index in *out); required or left as is. */
static bool get_variant(const cJSON *obj, const char *section, const char *key,
			const char *const *variants, bool required, int *out, struct route_result *r)
{
	if (!config_json_variant(obj, section, key, variants, required, out, r->fault, sizeof(r->fault)))
		return true;
	r->status = 400;
	return false;
}

/* A string field copied into dst; missing is an error when required. */
static bool copy_str(const cJSON *obj, const char *section, const char *key, bool required, char *dst,
		     size_t size, struct route_result *r)
{
	const cJSON *v = get(obj, key);
	if (!v) {
		if (required && config_json_missing(obj, section, key, r->fault, sizeof(r->fault)))
			r->status = 400;
		return !required;
	}
	if (!cJSON_IsString(v) || !v->valuestring[0]) {
		answer(r, 400, "%s.%s: must be a non-empty string", section, key);
		return false;
	}
	if (strlen(v->valuestring) >= size) {
		answer(r, 400, "%s.%s: longer than %zu bytes", section, key, size - 1);
		return false;
	}
	snprintf(dst, size, "%s", v->valuestring);
	return true;
}

static bool get_bool(const cJSON *obj, const char *section, const char *key, bool *dst,
		     struct route_result *r)
{
	const cJSON *v = get(obj, key);
	if (!v)
		return true;
	if (!cJSON_IsBool(v)) {
		answer(r, 400, "%s.%s: must be true or false", section, key);
		return false;
	}
	*dst = cJSON_IsTrue(v);
	return true;
}

/* An integer from min to max at key, if present. */
static bool get_u32_range(const cJSON *obj, const char *section, const char *key, uint32_t min, uint32_t max,
			  uint32_t *dst, struct route_result *r)
{
	const cJSON *v = get(obj, key);
	if (!v)
		return true;
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble || v->valuedouble < min ||
	    v->valuedouble > max) {
		answer(r, 400, "%s.%s: must be a whole number from %u to %u", section, key, min, max);
		return false;
	}
	*dst = (uint32_t)v->valuedouble;
	return true;
}

/* PUT /ember/migration */
static void route_migration(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "destination", "mode", "downtime_ms", "timeout_s", NULL };
	static const char *const modes[] = { "precopy", "postcopy", "auto", NULL };
	struct migrate_request *m = &a->u.migrate;
	int mode = 0;
	a->type = ACTION_MIGRATE_START;
	m->downtime_ms = MIGRATE_DEFAULT_DOWNTIME_MS;
	m->timeout_s = MIGRATE_DEFAULT_TIMEOUT_S;
	if (!only_keys(obj, "migration", keys, r) ||
	    !copy_str(obj, "migration", "destination", true, m->destination, sizeof(m->destination), r) ||
	    !get_variant(obj, "migration", "mode", modes, false, &mode, r) ||
	    !get_u32_range(obj, "migration", "downtime_ms", 1, MIGRATE_MAX_DOWNTIME_MS, &m->downtime_ms, r) ||
	    !get_u32_range(obj, "migration", "timeout_s", 1, MIGRATE_MAX_TIMEOUT_S, &m->timeout_s, r))
		return;
	m->mode = mode == 0 ? MIGRATE_PRECOPY : mode == 1 ? MIGRATE_POSTCOPY : MIGRATE_AUTO;
}

static void route_vm(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "state", NULL };
	static const char *const states[] = { "Paused", "Resumed", NULL };
	int st = 0;
	if (!only_keys(obj, "vm", keys, r) || !get_variant(obj, "vm", "state", states, true, &st, r))
		return;
	a->type = st == 0 ? ACTION_PAUSE : ACTION_RESUME;
}

static void route_snapshot_create(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "snapshot_type", "snapshot_path", "mem_file_path", NULL };
	static const char *const types[] = { "Full", "Diff", NULL };
	struct snapshot_create *s = &a->u.snap_create;
	int t = 0;
	a->type = ACTION_SNAPSHOT_CREATE;
	if (!only_keys(obj, "snapshot_create", keys, r) ||
	    !get_variant(obj, "snapshot_create", "snapshot_type", types, false, &t, r) ||
	    !copy_str(obj, "snapshot_create", "snapshot_path", true, s->snapshot_path, sizeof(s->snapshot_path), r) ||
	    !copy_str(obj, "snapshot_create", "mem_file_path", true, s->mem_file_path, sizeof(s->mem_file_path), r))
		return;
	s->type = t == 0 ? SNAPSHOT_FULL : SNAPSHOT_DIFF;
}

static void route_snapshot_load(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "snapshot_path", "mem_file_path", "mem_backend",
		"enable_diff_snapshots", "track_dirty_pages", "resume_vm", "network_overrides",
		"vsock_override", "clock_realtime", "huge_pages", "ember_mem_backend", NULL };
	/* Firecracker's variants: "Snapshot" (the default) keeps the snapshot's. */
	static const char *const page_sizes[] = { "Snapshot", "None", "Transparent", "2M", NULL };
	static const enum mem_pages page_kinds[] = { MEM_PAGES_NONE, MEM_PAGES_NONE, MEM_PAGES_TRANSPARENT,
		MEM_PAGES_2M };
	static const char *const backend_keys[] = { "backend_type", "backend_path", NULL };
	static const char *const backends[] = { "File", "Uffd", NULL };
	static const char *const net_keys[] = { "iface_id", "host_dev_name", NULL };
	static const char *const vsock_keys[] = { "uds_path", NULL };
	struct snapshot_load *l = &a->u.snap_load;
	a->type = ACTION_SNAPSHOT_LOAD;
	const cJSON *mb = get(obj, "mem_backend");
	if (!only_keys(obj, "snapshot_load", keys, r))
		return;
	if (mb) {
		int t = 0;
		if (!only_keys(mb, "snapshot_load.mem_backend", backend_keys, r) ||
		    !get_variant(mb, "snapshot_load.mem_backend", "backend_type", backends, true, &t, r) ||
		    !copy_str(mb, "snapshot_load.mem_backend", "backend_path", true, l->backend_path,
			      sizeof(l->backend_path), r))
			return;
		l->backend = t == 0 ? MEM_BACKEND_FILE : MEM_BACKEND_UFFD;
	}
	/* enable_diff_snapshots is the deprecated name of track_dirty_pages. */
	bool old_track = false, realtime = false;
	if (!copy_str(obj, "snapshot_load", "snapshot_path", true, l->snapshot_path, sizeof(l->snapshot_path), r) ||
	    !get_bool(obj, "snapshot_load", "resume_vm", &l->resume_vm, r) ||
	    !get_bool(obj, "snapshot_load", "track_dirty_pages", &l->track_dirty_pages, r) ||
	    !get_bool(obj, "snapshot_load", "enable_diff_snapshots", &old_track, r) ||
	    !get_bool(obj, "snapshot_load", "clock_realtime", &realtime, r))
		return;
	l->track_dirty_pages |= old_track;
	if (realtime) {
		answer(r, 400, "snapshot_load.clock_realtime: not supported by ember yet");
		return;
	}
	int pages = 0;
	if (!get_variant(obj, "snapshot_load", "huge_pages", page_sizes, false, &pages, r))
		return;
	l->has_huge_pages = pages > 0;
	l->huge_pages = page_kinds[pages];
	const cJSON *backing = get(obj, "ember_mem_backend");
	char msg[512];
	if (backing && config_json_mem_backend(backing, "snapshot_load", &l->mem_kind, l->mem_path, sizeof(l->mem_path),
					       msg, sizeof(msg))) {
		answer(r, 400, "%s", msg);
		return;
	}
	bool has_file = get(obj, "mem_file_path") != NULL;
	if (mb && has_file) {
		answer(r, 400, DESERIALIZE_FAULT "too many fields: either `mem_backend` or `mem_file_path` exclusively is required.");
		return;
	}
	if (!mb && !has_file) {
		answer(r, 400, DESERIALIZE_FAULT "missing field: either `mem_backend` or `mem_file_path` is required.");
		return;
	}
	if (has_file) {
		l->backend = MEM_BACKEND_FILE;
		if (!copy_str(obj, "snapshot_load", "mem_file_path", true, l->backend_path, sizeof(l->backend_path), r))
			return;
	}
	if (has_file || old_track)
		snprintf(r->deprecation, sizeof(r->deprecation),
			 "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated.");

	const cJSON *nets = get(obj, "network_overrides");
	if (nets) {
		if (!cJSON_IsArray(nets) || cJSON_GetArraySize(nets) > CONFIG_MAX_NETS) {
			answer(r, 400, "snapshot_load.network_overrides: must be an array of at most %d", CONFIG_MAX_NETS);
			return;
		}
		const cJSON *it;
		cJSON_ArrayForEach(it, nets) {
			struct net_override *o = &l->net_overrides[l->nnet_overrides++];
			if (!only_keys(it, "snapshot_load.network_overrides", net_keys, r) ||
			    !copy_str(it, "snapshot_load.network_overrides", "iface_id", true, o->iface_id,
				      sizeof(o->iface_id), r) ||
			    !copy_str(it, "snapshot_load.network_overrides", "host_dev_name", true,
				      o->host_dev_name, sizeof(o->host_dev_name), r))
				return;
		}
	}
	const cJSON *vs = get(obj, "vsock_override");
	if (vs) {
		if (!only_keys(vs, "snapshot_load.vsock_override", vsock_keys, r) ||
		    !copy_str(vs, "snapshot_load.vsock_override", "uds_path", true, l->vsock_uds_path,
			      sizeof(l->vsock_uds_path), r))
			return;
		l->has_vsock_override = true;
	}
}

/* /mmds and /mmds/<x>, as Firecracker reads them: GET and PATCH look at
 * the first segment only; PUT takes "config" or nothing after it. */
static void route_mmds(const struct http_request *req, const char *sub, struct action *a,
		       struct route_result *r)
{
	char why[256];
	if (req->method == HTTP_GET) {
		a->type = ACTION_GET_MMDS;
		return;
	}
	if (req->method == HTTP_PUT && sub && strcmp(sub, "config") != 0) {
		answer(r, 400, "Unrecognized PUT request path `%s`.", sub);
		return;
	}
	cJSON *obj = config_json_parse(req->body, req->body_len, why, sizeof(why));
	if (!obj) {
		answer(r, 400, DESERIALIZE_FAULT "%s.", why);
		return;
	}
	if (req->method == HTTP_PUT && sub) {
		a->type = ACTION_PUT_MMDS_CONFIG;
		if (config_json_mmds(obj, &a->u.mmds_config, r->fault, sizeof(r->fault))) {
			r->status = 400;
			deserialize_fault(req, obj, r);
		} else if (a->u.mmds_config.version == MMDS_V1) {
			/* V1 (the default too) is deprecated, as Firecracker says. */
			snprintf(r->deprecation, sizeof(r->deprecation),
				 "PUT /mmds/config: V1 is deprecated. Use V2 instead.");
		}
	} else {
		a->type = req->method == HTTP_PUT ? ACTION_PUT_MMDS : ACTION_PATCH_MMDS;
		a->u.mmds_data = (struct mmds_data){ req->body, req->body_len };
	}
	cJSON_Delete(obj);
}

/* The id in the body must be the id in the path (Firecracker's words,
 * which differ for drives and interfaces). */
static bool same_id(enum api_endpoint ep, const char *body_id, const char *path_id,
		    struct route_result *r)
{
	if (strcmp(body_id, path_id) == 0)
		return true;
	if (ep == EP_DRIVES || ep == EP_PMEM)
		answer(r, 400, "The id from the path does not match the id from the body!");
	else
		answer(r, 400, "The id from the path [%s] does not match the id from the body [%s]!",
		       path_id, body_id);
	return false;
}

static void route_body(const struct http_request *req, enum api_endpoint ep, const char *id,
		       struct action *a, struct route_result *r)
{
	cJSON *obj = parse_body(req, r);
	if (!obj)
		return;
	bool patch = req->method == HTTP_PATCH;
	char *err = r->fault;
	size_t el = sizeof(r->fault);
	int ret = 0;
	switch (ep) {
	case EP_MACHINE_CONFIG:
		a->type = patch ? ACTION_PATCH_MACHINE_CONFIG : ACTION_PUT_MACHINE_CONFIG;
		ret = config_json_machine(obj, !patch, &a->u.machine.value, &a->u.machine.fields, err, el);
		if (!ret && patch && !a->u.machine.fields && !get(obj, "cpu_template") && !get(obj, "huge_pages")) {
			answer(r, 400, "Empty PATCH request."); /* nothing named, or only nulls */
			goto out;
		}
		if (!ret && get(obj, "cpu_template"))
			snprintf(r->deprecation, sizeof(r->deprecation),
				 "%s /machine-config: cpu_template field is deprecated.", req->method_name);
		break;
	case EP_BOOT_SOURCE:
		a->type = ACTION_PUT_BOOT_SOURCE;
		ret = config_json_boot_source(obj, &a->u.boot, err, el);
		break;
	case EP_DRIVES:
		if (!patch) {
			a->type = ACTION_PUT_DRIVE;
			ret = config_json_drive(obj, &a->u.drive, err, el);
			if (!ret && !same_id(ep, a->u.drive.drive_id, id, r))
				goto out;
		} else {
			static const char *const keys[] = { "drive_id", "path_on_host", "rate_limiter", NULL };
			struct drive_update *u = &a->u.drive_update;
			a->type = ACTION_PATCH_DRIVE;
			if (!only_keys(obj, "drives", keys, r) ||
			    !copy_str(obj, "drives", "drive_id", true, u->drive_id, sizeof(u->drive_id), r) ||
			    !same_id(ep, u->drive_id, id, r))
				goto out;
			const cJSON *p = get(obj, "path_on_host");
			if (p) {
				if (!cJSON_IsString(p) || !p->valuestring[0] ||
				    strlen(p->valuestring) >= sizeof(u->path_on_host)) {
					answer(r, 400, "drives.path_on_host: expected a non-empty path");
					goto out;
				}
				u->has_path = true;
				snprintf(u->path_on_host, sizeof(u->path_on_host), "%s", p->valuestring);
			}
			if (get_rate_limiter(obj, "rate_limiter", "drives", &u->has_rate_limiter,
					     &u->rate_limiter, r))
				goto out;
			if (!u->has_path && !u->has_rate_limiter) {
				answer(r, 400, "drives: nothing to change (path_on_host or rate_limiter)");
				goto out;
			}
		}
		break;
	case EP_NETWORK_INTERFACES:
		if (!patch) {
			a->type = ACTION_PUT_NET;
			ret = config_json_net(obj, &a->u.net, err, el);
			if (!ret && !same_id(ep, a->u.net.iface_id, id, r))
				goto out;
		} else {
			static const char *const keys[] = { "iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL };
			struct net_update *u = &a->u.net_update;
			a->type = ACTION_PATCH_NET;
			if (!only_keys(obj, "network-interfaces", keys, r) ||
			    !copy_str(obj, "network-interfaces", "iface_id", true, u->iface_id,
				      sizeof(u->iface_id), r) ||
			    !same_id(ep, u->iface_id, id, r))
				goto out;
			if (get_rate_limiter(obj, "rx_rate_limiter", "network-interfaces", &u->has_rx, &u->rx, r) ||
			    get_rate_limiter(obj, "tx_rate_limiter", "network-interfaces", &u->has_tx, &u->tx, r))
				goto out;
		}
		break;
	case EP_PMEM:
		if (!patch) {
			a->type = ACTION_PUT_PMEM;
			ret = config_json_pmem(obj, &a->u.pmem, err, el);
			if (!ret && !same_id(ep, a->u.pmem.id, id, r))
				goto out;
		} else {
			/* Only the rate limiter changes after boot (Firecracker's schema). */
			static const char *const keys[] = { "id", "rate_limiter", NULL };
			struct pmem_update *u = &a->u.pmem_update;
			a->type = ACTION_PATCH_PMEM;
			if (!only_keys(obj, "pmem", keys, r) ||
			    !copy_str(obj, "pmem", "id", true, u->id, sizeof(u->id), r) ||
			    !same_id(ep, u->id, id, r) ||
			    get_rate_limiter(obj, "rate_limiter", "pmem", &u->has_rate_limiter, &u->rate_limiter, r))
				goto out;
		}
		break;
	case EP_VSOCK:
		a->type = ACTION_PUT_VSOCK;
		ret = config_json_vsock(obj, &a->u.vsock, err, el);
		if (!ret && get(obj, "vsock_id"))
			snprintf(r->deprecation, sizeof(r->deprecation), "PUT /vsock: vsock_id field is deprecated.");
		break;
	case EP_BALLOON:
		if (patch) {
			a->type = ACTION_PATCH_BALLOON;
			ret = config_json_balloon_patch(obj, false, &a->u.balloon_value, err, el);
		} else {
			a->type = ACTION_PUT_BALLOON;
			ret = config_json_balloon(obj, &a->u.balloon, err, el);
		}
		break;
	case EP_BALLOON_STATS:
		a->type = ACTION_PATCH_BALLOON_STATS;
		ret = config_json_balloon_patch(obj, true, &a->u.balloon_value, err, el);
		break;
	case EP_HOTPLUG_MEMORY:
		if (patch) {
			a->type = ACTION_PATCH_MEMORY_HOTPLUG;
			ret = config_json_memory_hotplug_patch(obj, &a->u.requested_size_mib, err, el);
		} else {
			a->type = ACTION_PUT_MEMORY_HOTPLUG;
			ret = config_json_memory_hotplug(obj, &a->u.memory_hotplug, err, el);
		}
		break;
	case EP_ENTROPY:
		a->type = ACTION_PUT_ENTROPY;
		ret = config_json_entropy(obj, &a->u.entropy, err, el);
		break;
	case EP_SERIAL:
		a->type = ACTION_PUT_SERIAL;
		ret = config_json_serial(obj, &a->u.serial, err, el);
		break;
	case EP_LOGGER:
		a->type = ACTION_PUT_LOGGER;
		ret = config_json_logger(obj, &a->u.logger, err, el);
		break;
	case EP_METRICS:
		a->type = ACTION_PUT_METRICS;
		ret = config_json_metrics(obj, &a->u.metrics, err, el);
		break;
	case EP_CPU_CONFIG:
		a->type = ACTION_PUT_CPU_CONFIG;
		ret = config_json_cpu_template(obj, &a->u.cpu_config, err, el);
		break;
	case EP_ACTIONS: {
		static const char *const keys[] = { "action_type", NULL };
		static const char *const types[] = { "FlushMetrics", "InstanceStart", "SendCtrlAltDel", NULL };
		static const enum action_type to[] = { ACTION_FLUSH_METRICS, ACTION_INSTANCE_START,
						       ACTION_SEND_CTRL_ALT_DEL };
		int t = 0;
		if (only_keys(obj, "actions", keys, r) && get_variant(obj, "actions", "action_type", types, true, &t, r))
			a->type = to[t];
		break;
	}
	case EP_VM:
		route_vm(obj, a, r);
		break;
	case EP_SNAPSHOT_CREATE:
		route_snapshot_create(obj, a, r);
		break;
	case EP_SNAPSHOT_LOAD:
		route_snapshot_load(obj, a, r);
		break;
	case EP_MIGRATION:
		route_migration(obj, a, r);
		break;
	default:
		answer(r, 500, "no handler for this endpoint");
		break;
	}
	if (ret)
		r->status = 400;
out:
	if (r->status == 400)
		deserialize_fault(req, obj, r);
	cJSON_Delete(obj);
}

/* /balloon/hinting<sub>: GET .../status, PATCH .../start (an optional
 * body) and .../stop (its body ignored), else Firecracker's refusal. */
static void route_balloon_hinting(const struct http_request *req, const char *sub, struct action *a,
				  struct route_result *r)
{
	const char *name = sub[0] ? sub + 1 : "";
	bool get = req->method == HTTP_GET;
	if (get && strcmp(name, "status") == 0) {
		a->type = ACTION_GET_BALLOON_HINT_STATUS;
	} else if (!get && strcmp(name, "stop") == 0) {
		a->type = ACTION_BALLOON_HINT_STOP;
	} else if (!get && strcmp(name, "start") == 0) {
		cJSON *obj = NULL;
		bool ack = true;
		if (req->body_len && !(obj = parse_body(req, r)))
			return;
		a->type = ACTION_BALLOON_HINT_START;
		if (config_json_balloon_hint_start(obj, &ack, r->fault, sizeof(r->fault))) {
			r->status = 400;
			deserialize_fault(req, obj, r);
		}
		a->u.balloon_value = ack;
		cJSON_Delete(obj);
	} else {
		answer(r, 400, "Unrecognized %s request path `/hinting/%s`.", req->method_name, name);
	}
}

void api_route(const struct http_request *req, struct action *a, struct route_result *r)
{
	memset(r, 0, sizeof(*r));
	const char *path = req->path;
	unsigned m = 1u << req->method;
	const char *id = NULL;
	enum api_endpoint ep;
	unsigned allowed;
	bool body = req->body_len > 0;
	const char *mmds_sub = NULL; /* /mmds/<this> */

	if (strcmp(path, "/") == 0) {
		ep = EP_ROOT, allowed = M_GET;
	} else if (strcmp(path, "/version") == 0) {
		ep = EP_VERSION, allowed = M_GET;
	} else if (strcmp(path, "/machine-config") == 0) {
		ep = EP_MACHINE_CONFIG, allowed = M_GET | M_PUT | M_PATCH;
	} else if (strcmp(path, "/vm/config") == 0) {
		ep = EP_VM_CONFIG, allowed = M_GET;
	} else if (strcmp(path, "/boot-source") == 0) {
		ep = EP_BOOT_SOURCE, allowed = M_PUT;
	} else if ((id = path_id(path, "/drives/")) && req->method != HTTP_DELETE) {
		ep = EP_DRIVES, allowed = M_PUT | M_PATCH;
	} else if ((id = path_id(path, "/network-interfaces/")) && req->method != HTTP_DELETE) {
		ep = EP_NETWORK_INTERFACES, allowed = M_PUT | M_PATCH;
	} else if ((id = path_id(path, "/pmem/")) && req->method != HTTP_DELETE) {
		ep = EP_PMEM, allowed = M_PUT | M_PATCH;
	} else if (strcmp(path, "/balloon") == 0) {
		ep = EP_BALLOON, allowed = M_GET | M_PUT | M_PATCH;
	} else if (strcmp(path, "/balloon/statistics") == 0) {
		ep = EP_BALLOON_STATS, allowed = M_GET | M_PATCH;
	} else if (strncmp(path, "/balloon/hinting", 16) == 0 && (path[16] == '/' || !path[16])) {
		ep = EP_BALLOON_HINTING, allowed = M_GET | M_PATCH;
	} else if (strcmp(path, "/hotplug/memory") == 0) {
		ep = EP_HOTPLUG_MEMORY, allowed = M_GET | M_PUT | M_PATCH;
	} else if (strcmp(path, "/vsock") == 0) {
		ep = EP_VSOCK, allowed = M_PUT;
	} else if (strcmp(path, "/entropy") == 0) {
		ep = EP_ENTROPY, allowed = M_PUT;
	} else if (strcmp(path, "/serial") == 0) {
		ep = EP_SERIAL, allowed = M_PUT;
	} else if (strcmp(path, "/logger") == 0) {
		ep = EP_LOGGER, allowed = M_PUT;
	} else if (strcmp(path, "/metrics") == 0) {
		ep = EP_METRICS, allowed = M_PUT;
	} else if (strcmp(path, "/actions") == 0) {
		ep = EP_ACTIONS, allowed = M_PUT;
	} else if (strcmp(path, "/vm") == 0) {
		ep = EP_VM, allowed = M_PATCH;
	} else if (strcmp(path, "/snapshot/create") == 0) {
		ep = EP_SNAPSHOT_CREATE, allowed = M_PUT;
	} else if (strcmp(path, "/snapshot/load") == 0) {
		ep = EP_SNAPSHOT_LOAD, allowed = M_PUT;
	} else if (strcmp(path, "/mmds") == 0 || strncmp(path, "/mmds/", 6) == 0) {
		ep = EP_MMDS, allowed = M_GET | M_PUT | M_PATCH;
		mmds_sub = path[5] && path[6] ? path + 6 : NULL;
	} else if (strcmp(path, "/cpu-config") == 0) {
		ep = EP_CPU_CONFIG, allowed = M_PUT;
	} else if (strcmp(path, "/ember/migration") == 0) {
		ep = EP_MIGRATION, allowed = M_GET | M_PUT | M_DELETE;
	} else {
		ep = EP_UNKNOWN, allowed = 0;
		for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
			bool match = unsupported[i].prefix ? path_id(path, unsupported[i].path) != NULL
							   : strcmp(path, unsupported[i].path) == 0;
			if (match && (unsupported[i].methods & m)) {
				ep = EP_UNSUPPORTED;
				allowed = unsupported[i].methods;
				break;
			}
		}
	}
	r->endpoint = ep;
	/* Firecracker looks at the body before the path: a GET with one, or a
	 * PUT or PATCH without, is refused whatever its path. */
	if (req->method == HTTP_GET && body) {
		answer(r, 400, "GET request cannot have a body.");
		return;
	}
	if (req->method == HTTP_PUT && !body) {
		answer(r, 400, "Empty PUT request.");
		return;
	}
	if (req->method == HTTP_PATCH && !body && strcmp(path, "/balloon") != 0 &&
	    strncmp(path, "/balloon/", 9) != 0) {
		answer(r, 400, "Empty PATCH request.");
		return;
	}
	if (req->method == HTTP_DELETE && body) {
		answer(r, 400, "Empty Delete request.");
		return;
	}
	if (!(allowed & m)) {
		/* Firecracker names the path's first segment ("boot-source"). */
		const char *seg = path + 1;
		size_t n = strcspn(seg, "/");
		answer(r, 400, "Invalid request method and/or path: %s %.*s.", req->method_name, (int)n, seg);
		return;
	}
	if (id && !id_ok(id, r))
		return;
	if (ep == EP_UNSUPPORTED) {
		answer(r, 400, "%s %s is not supported by ember yet", req->method_name, path);
		return;
	}
	if (ep == EP_VERSION) {
		r->status = 200;
		snprintf(r->body, sizeof(r->body), "{\"firecracker_version\":\"%s\"}",
			 EMBER_FIRECRACKER_API_VERSION);
		return;
	}
	memset(a, 0, sizeof(*a));
	if (ep == EP_MMDS) {
		char sub[HTTP_MAX_PATH] = "";
		if (mmds_sub)
			snprintf(sub, sizeof(sub), "%.*s", (int)strcspn(mmds_sub, "/"), mmds_sub);
		route_mmds(req, mmds_sub ? sub : NULL, a, r);
		return;
	}
	if (ep == EP_BALLOON_HINTING) {
		route_balloon_hinting(req, path + 16, a, r);
		return;
	}
	if (ep == EP_MIGRATION && req->method != HTTP_PUT) {
		a->type = req->method == HTTP_GET ? ACTION_GET_MIGRATION : ACTION_MIGRATE_CANCEL;
		return;
	}
	if (req->method == HTTP_GET) {
		a->type = ep == EP_ROOT ? ACTION_GET_INSTANCE_INFO
		        : ep == EP_MACHINE_CONFIG ? ACTION_GET_MACHINE_CONFIG
		        : ep == EP_BALLOON ? ACTION_GET_BALLOON
		        : ep == EP_BALLOON_STATS ? ACTION_GET_BALLOON_STATS
		        : ep == EP_HOTPLUG_MEMORY ? ACTION_GET_MEMORY_HOTPLUG : ACTION_GET_VM_CONFIG;
		return;
	}
	route_body(req, ep, id, a, r);
}
