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

/* Firecracker endpoints ember does not implement (yet): they answer 400
 * saying so, so clients see a refusal and not a missing endpoint. */
static const struct {
	const char *path;
	bool prefix;        /* "/pmem/" + id */
	unsigned methods;
} unsupported[] = {
	{ "/balloon", false, M_GET | M_PUT | M_PATCH },
	{ "/balloon/statistics", false, M_GET | M_PATCH },
	{ "/balloon/hinting/start", false, M_PATCH },
	{ "/balloon/hinting/status", false, M_GET },
	{ "/balloon/hinting/stop", false, M_PATCH },
	{ "/cpu-config", false, M_PUT },
	{ "/pmem/", true, M_PUT | M_PATCH },
	{ "/mmds", false, M_GET | M_PUT | M_PATCH },
	{ "/mmds/config", false, M_PUT },
	{ "/hotplug/memory", false, M_GET | M_PUT | M_PATCH },
};

__attribute__((format(printf, 3, 4)))
static void answer(struct route_result *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->fault, sizeof(r->fault), fmt, ap);
	va_end(ap);
	r->status = status;
}

/* "/drives/<id>": the id, if the path has that prefix and one clean id. */
static const char *path_id(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return NULL;
	const char *id = path + n;
	if (!*id || strchr(id, '/'))
		return NULL;
	return id;
}

static cJSON *parse_body(const struct http_request *req, struct route_result *r)
{
	if (req->body_len == 0) {
		answer(r, 400, "this request needs a JSON body");
		return NULL;
	}
	char why[256];
	cJSON *obj = config_json_parse(req->body, req->body_len, why, sizeof(why));
	if (!obj)
		answer(r, 400, "request body: %s", why);
	else if (!cJSON_IsObject(obj)) {
		answer(r, 400, "the body must be a JSON object");
		cJSON_Delete(obj);
		obj = NULL;
	}
	return obj;
}

/* The id in the body must be the id in the path. */
static bool same_id(const char *section, const char *key, const char *body_id, const char *path_id,
		    struct route_result *r)
{
	if (strcmp(body_id, path_id) == 0)
		return true;
	answer(r, 400, "%s.%s: \"%s\" does not match the path's \"%s\"", section, key, body_id, path_id);
	return false;
}

static int get_rate_limiter(const cJSON *obj, const char *key, const char *section, bool *has,
			    struct ratelimiter_config *rl, struct route_result *r)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	*has = v != NULL;
	if (!v)
		return 0;
	char sec[96];
	snprintf(sec, sizeof(sec), "%s.%s", section, key);
	if (config_json_rate_limiter(v, sec, rl, r->fault, sizeof(r->fault))) {
		r->status = 400;
		return -1;
	}
	return 0;
}

/* Only the named keys may appear (a PATCH body's narrower schema). */
static bool only_keys(const cJSON *obj, const char *section, const char *const *keys,
		      struct route_result *r)
{
	for (const cJSON *it = obj->child; it; it = it->next) {
		bool ok = false;
		for (const char *const *k = keys; *k; k++)
			ok |= strcmp(it->string, *k) == 0;
		if (!ok) {
			answer(r, 400, "%s.%s: unknown field or not changeable after boot", section, it->string);
			return false;
		}
	}
	return true;
}

static const char *get_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A string field copied into dst; missing is an error when required. */
static bool copy_str(const cJSON *obj, const char *section, const char *key, bool required, char *dst,
		     size_t size, struct route_result *r)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v) {
		if (required)
			answer(r, 400, "%s.%s: missing", section, key);
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
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return true;
	if (!cJSON_IsBool(v)) {
		answer(r, 400, "%s.%s: must be true or false", section, key);
		return false;
	}
	*dst = cJSON_IsTrue(v);
	return true;
}

static void route_vm(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "state", NULL };
	if (!only_keys(obj, "vm", keys, r))
		return;
	const char *st = get_str(obj, "state");
	if (!st)
		answer(r, 400, "vm.state: missing or not a string");
	else if (strcmp(st, "Paused") == 0)
		a->type = ACTION_PAUSE;
	else if (strcmp(st, "Resumed") == 0)
		a->type = ACTION_RESUME;
	else
		answer(r, 400, "vm.state: \"%s\" is not Paused or Resumed", st);
}

static void route_snapshot_create(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "snapshot_type", "snapshot_path", "mem_file_path", NULL };
	struct snapshot_create *s = &a->u.snap_create;
	a->type = ACTION_SNAPSHOT_CREATE;
	if (!only_keys(obj, "snapshot_create", keys, r) ||
	    !copy_str(obj, "snapshot_create", "snapshot_path", true, s->snapshot_path, sizeof(s->snapshot_path), r) ||
	    !copy_str(obj, "snapshot_create", "mem_file_path", true, s->mem_file_path, sizeof(s->mem_file_path), r))
		return;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "snapshot_type");
	if (!t || (cJSON_IsString(t) && strcmp(t->valuestring, "Full") == 0))
		s->type = SNAPSHOT_FULL;
	else if (cJSON_IsString(t) && strcmp(t->valuestring, "Diff") == 0)
		s->type = SNAPSHOT_DIFF;
	else
		answer(r, 400, "snapshot_create.snapshot_type: must be \"Full\" or \"Diff\"");
}

static void route_snapshot_load(const cJSON *obj, struct action *a, struct route_result *r)
{
	static const char *const keys[] = { "snapshot_path", "mem_backend", "mem_file_path",
		"track_dirty_pages", "enable_diff_snapshots", "resume_vm", "network_overrides",
		"vsock_override", NULL };
	static const char *const backend_keys[] = { "backend_type", "backend_path", NULL };
	static const char *const net_keys[] = { "iface_id", "host_dev_name", NULL };
	static const char *const vsock_keys[] = { "uds_path", NULL };
	struct snapshot_load *l = &a->u.snap_load;
	a->type = ACTION_SNAPSHOT_LOAD;
	if (!only_keys(obj, "snapshot_load", keys, r) ||
	    !copy_str(obj, "snapshot_load", "snapshot_path", true, l->snapshot_path, sizeof(l->snapshot_path), r) ||
	    !get_bool(obj, "snapshot_load", "resume_vm", &l->resume_vm, r))
		return;
	/* enable_diff_snapshots is the deprecated name of track_dirty_pages. */
	bool old_track = false;
	if (!get_bool(obj, "snapshot_load", "track_dirty_pages", &l->track_dirty_pages, r) ||
	    !get_bool(obj, "snapshot_load", "enable_diff_snapshots", &old_track, r))
		return;
	l->track_dirty_pages |= old_track;

	const cJSON *mb = cJSON_GetObjectItemCaseSensitive(obj, "mem_backend");
	bool has_file = cJSON_GetObjectItemCaseSensitive(obj, "mem_file_path") != NULL;
	if (!mb == !has_file) {
		answer(r, 400, "snapshot_load: exactly one of mem_backend and mem_file_path is required");
		return;
	}
	if (has_file) {
		l->backend = MEM_BACKEND_FILE;
		if (!copy_str(obj, "snapshot_load", "mem_file_path", true, l->backend_path, sizeof(l->backend_path), r))
			return;
	} else {
		if (!cJSON_IsObject(mb)) {
			answer(r, 400, "snapshot_load.mem_backend: must be an object");
			return;
		}
		if (!only_keys(mb, "snapshot_load.mem_backend", backend_keys, r) ||
		    !copy_str(mb, "snapshot_load.mem_backend", "backend_path", true, l->backend_path,
			      sizeof(l->backend_path), r))
			return;
		const char *t = get_str(mb, "backend_type");
		if (t && strcmp(t, "File") == 0)
			l->backend = MEM_BACKEND_FILE;
		else if (t && strcmp(t, "Uffd") == 0)
			l->backend = MEM_BACKEND_UFFD;
		else {
			answer(r, 400, "snapshot_load.mem_backend.backend_type: must be \"File\" or \"Uffd\"");
			return;
		}
	}

	const cJSON *nets = cJSON_GetObjectItemCaseSensitive(obj, "network_overrides");
	if (nets) {
		if (!cJSON_IsArray(nets) || cJSON_GetArraySize(nets) > CONFIG_MAX_NETS) {
			answer(r, 400, "snapshot_load.network_overrides: must be an array of at most %d", CONFIG_MAX_NETS);
			return;
		}
		const cJSON *it;
		cJSON_ArrayForEach(it, nets) {
			struct net_override *o = &l->net_overrides[l->nnet_overrides++];
			if (!cJSON_IsObject(it)) {
				answer(r, 400, "snapshot_load.network_overrides: each must be an object");
				return;
			}
			if (!only_keys(it, "snapshot_load.network_overrides", net_keys, r) ||
			    !copy_str(it, "snapshot_load.network_overrides", "iface_id", true, o->iface_id,
				      sizeof(o->iface_id), r) ||
			    !copy_str(it, "snapshot_load.network_overrides", "host_dev_name", true,
				      o->host_dev_name, sizeof(o->host_dev_name), r))
				return;
		}
	}
	const cJSON *vs = cJSON_GetObjectItemCaseSensitive(obj, "vsock_override");
	if (vs) {
		if (!cJSON_IsObject(vs)) {
			answer(r, 400, "snapshot_load.vsock_override: must be an object");
			return;
		}
		if (!only_keys(vs, "snapshot_load.vsock_override", vsock_keys, r) ||
		    !copy_str(vs, "snapshot_load.vsock_override", "uds_path", true, l->vsock_uds_path,
			      sizeof(l->vsock_uds_path), r))
			return;
		l->has_vsock_override = true;
	}
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
		ret = config_json_machine(obj, &a->u.machine.value, &a->u.machine.fields, err, el);
		break;
	case EP_BOOT_SOURCE:
		a->type = ACTION_PUT_BOOT_SOURCE;
		ret = config_json_boot_source(obj, &a->u.boot, err, el);
		break;
	case EP_DRIVES:
		if (!patch) {
			a->type = ACTION_PUT_DRIVE;
			ret = config_json_drive(obj, &a->u.drive, err, el);
			if (!ret && !same_id("drives", "drive_id", a->u.drive.drive_id, id, r))
				goto out;
		} else {
			static const char *const keys[] = { "drive_id", "path_on_host", "rate_limiter", NULL };
			struct drive_update *u = &a->u.drive_update;
			a->type = ACTION_PATCH_DRIVE;
			const char *bid = get_str(obj, "drive_id");
			if (!only_keys(obj, "drives", keys, r))
				goto out;
			if (!bid) {
				answer(r, 400, "drives.drive_id: missing or not a string");
				goto out;
			}
			if (!same_id("drives", "drive_id", bid, id, r) ||
			    !copy_str(obj, "drives", "drive_id", true, u->drive_id, sizeof(u->drive_id), r))
				goto out;
			const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "path_on_host");
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
			if (!ret && !same_id("network-interfaces", "iface_id", a->u.net.iface_id, id, r))
				goto out;
		} else {
			static const char *const keys[] = { "iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL };
			struct net_update *u = &a->u.net_update;
			a->type = ACTION_PATCH_NET;
			const char *bid = get_str(obj, "iface_id");
			if (!only_keys(obj, "network-interfaces", keys, r))
				goto out;
			if (!bid) {
				answer(r, 400, "network-interfaces.iface_id: missing or not a string");
				goto out;
			}
			if (!same_id("network-interfaces", "iface_id", bid, id, r) ||
			    !copy_str(obj, "network-interfaces", "iface_id", true, u->iface_id,
				      sizeof(u->iface_id), r))
				goto out;
			if (get_rate_limiter(obj, "rx_rate_limiter", "network-interfaces", &u->has_rx, &u->rx, r) ||
			    get_rate_limiter(obj, "tx_rate_limiter", "network-interfaces", &u->has_tx, &u->tx, r))
				goto out;
		}
		break;
	case EP_VSOCK:
		a->type = ACTION_PUT_VSOCK;
		ret = config_json_vsock(obj, &a->u.vsock, err, el);
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
	case EP_ACTIONS: {
		static const char *const keys[] = { "action_type", "payload", NULL };
		if (!only_keys(obj, "actions", keys, r))
			goto out;
		const char *t = get_str(obj, "action_type");
		if (!t)
			answer(r, 400, "actions.action_type: missing or not a string");
		else if (strcmp(t, "InstanceStart") == 0)
			a->type = ACTION_INSTANCE_START;
		else if (strcmp(t, "SendCtrlAltDel") == 0)
			a->type = ACTION_SEND_CTRL_ALT_DEL;
		else if (strcmp(t, "FlushMetrics") == 0)
			a->type = ACTION_FLUSH_METRICS;
		else
			answer(r, 400, "actions.action_type: \"%s\" is not InstanceStart, SendCtrlAltDel or FlushMetrics", t);
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
	default:
		answer(r, 500, "no handler for this endpoint");
		break;
	}
	if (ret)
		r->status = 400;
out:
	cJSON_Delete(obj);
}

void api_route(const struct http_request *req, struct action *a, struct route_result *r)
{
	memset(r, 0, sizeof(*r));
	const char *path = req->path;
	unsigned m = req->method == HTTP_OTHER ? 0 : 1u << req->method;
	const char *id = NULL;
	enum api_endpoint ep;
	unsigned allowed;

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
	} else if ((id = path_id(path, "/drives/"))) {
		ep = EP_DRIVES, allowed = M_PUT | M_PATCH;
	} else if ((id = path_id(path, "/network-interfaces/"))) {
		ep = EP_NETWORK_INTERFACES, allowed = M_PUT | M_PATCH;
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
	} else {
		ep = EP_UNKNOWN, allowed = 0;
		for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
			bool match = unsupported[i].prefix ? path_id(path, unsupported[i].path) != NULL
							   : strcmp(path, unsupported[i].path) == 0;
			if (match) {
				ep = EP_UNSUPPORTED;
				allowed = unsupported[i].methods;
				break;
			}
		}
	}
	r->endpoint = ep;
	if (ep == EP_UNKNOWN) {
		answer(r, 404, "invalid request path: %s", path);
		return;
	}
	if (!(allowed & m)) {
		answer(r, 405, "method %s is not allowed on %s", req->method_name, path);
		return;
	}
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
	if (req->method == HTTP_GET) {
		a->type = ep == EP_ROOT ? ACTION_GET_INSTANCE_INFO
		        : ep == EP_MACHINE_CONFIG ? ACTION_GET_MACHINE_CONFIG : ACTION_GET_VM_CONFIG;
		return;
	}
	route_body(req, ep, id, a, r);
}
