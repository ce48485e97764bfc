#include "config_json.h"

#include "../vmm/action.h"
#include "../vmm/hostfile.h"
#include "../vmm/log.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Config files beyond this are refused before reading: a real one is a
 * few KiB. */
#define CONFIG_FILE_MAX (1 << 20)

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- JSON text -> tree ----------------------------------------------- */

/* What cJSON lets through and RFC 8259 does not: cJSON takes every byte
 * below 0x21 as whitespace and copies raw control bytes into strings, and
 * its strings end at the first NUL, so "a.img\u0000.qcow2" would read as
 * "a.img". cJSON accepted the text, so a '"' outside a string opens one
 * and a '\' inside a string starts a two-byte escape (or \uXXXX). */
static int check_text(const char *s, size_t len, char *err, size_t errlen)
{
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (in_string && c == '\\') {
			if (i + 5 < len && memcmp(s + i + 1, "u0000", 5) == 0)
				return fail(err, errlen, "a string holds \\u0000 (NUL) at byte %zu", i);
			i++;
		} else if (c == '"') {
			in_string = !in_string;
		} else if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) {
			return fail(err, errlen, "control byte 0x%02x at byte %zu", c, i);
		}
	}
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* No object anywhere in the tree names a key twice: cJSON keeps both, its
 * lookups find the first and a loop over the members sees both, so which
 * one counts would depend on the reader. section: the key the node is
 * under, for the message (NULL at the top). */
static int check_unique_keys(const cJSON *node, const char *section, char *err, size_t errlen)
{
	size_t n = 0;
	for (const cJSON *c = node->child; c; c = c->next, n++)
		if (check_unique_keys(c, cJSON_IsObject(node) ? c->string : section, err, errlen))
			return -EINVAL;
	if (!cJSON_IsObject(node) || n < 2)
		return 0;
	const cJSON **keys = malloc(n * sizeof(*keys));
	if (!keys)
		return fail(err, errlen, "out of memory");
	n = 0;
	for (const cJSON *c = node->child; c; c = c->next)
		keys[n++] = c;
	qsort(keys, n, sizeof(*keys), cmp_key);
	int ret = 0;
	for (size_t i = 1; i < n && !ret; i++)
		if (strcmp(keys[i - 1]->string, keys[i]->string) == 0)
			ret = fail(err, errlen, "%s%sduplicate key \"%s\"", section ? section : "",
				   section ? ": " : "", keys[i]->string);
	free(keys);
	return ret;
}

cJSON *config_json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root) {
		long off = end && end >= text && end <= text + len ? (long)(end - text) : -1;
		fail(err, errlen, "invalid JSON (near byte %ld)", off);
		return NULL;
	}
	/* cJSON stops right after the first value. */
	while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
		end++;
	if (end != text + len) {
		fail(err, errlen, "text after the JSON value (at byte %ld)", (long)(end - text));
		goto bad;
	}
	if (check_text(text, len, err, errlen) || check_unique_keys(root, NULL, err, errlen))
		goto bad;
	return root;
bad:
	cJSON_Delete(root);
	return NULL;
}

/* ---- tree -> typed configuration ---------------------------------- */

/* Refuse keys outside the allowed list, naming the first stray one. */
static int check_keys(const cJSON *obj, const char *section, const char *const *allowed,
		      char *err, size_t errlen)
{
	if (!cJSON_IsObject(obj))
		return fail(err, errlen, "%s: expected a JSON object", section);
	for (const cJSON *it = obj->child; it; it = it->next) {
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(it->string, *a) == 0)
				ok = true;
		if (!ok)
			return fail(err, errlen, "%s.%s: unknown field", section, it->string);
	}
	return 0;
}

static int get_string(const cJSON *obj, const char *section, const char *key, char *out,
		      size_t outlen, bool required, bool *present, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (present)
		*present = v != NULL;
	if (!v) {
		if (required)
			return fail(err, errlen, "%s.%s: missing", section, key);
		return 0;
	}
	if (!cJSON_IsString(v))
		return fail(err, errlen, "%s.%s: expected a string", section, key);
	if (strlen(v->valuestring) >= outlen)
		return fail(err, errlen, "%s.%s: longer than %zu bytes", section, key, outlen - 1);
	strcpy(out, v->valuestring);
	return 0;
}

/* JSON numbers up to 2^53 are exact integers as doubles; beyond, they are
 * not, so no field takes more. */
#define JSON_INT_MAX (1ULL << 53)

/* An integer in [min, max]. cJSON keeps numbers as doubles: check the
 * range before converting (a double outside the integer type's range, inf
 * or NaN converts to an undefined value), then that it is integral. */
static int get_uint(const cJSON *obj, const char *section, const char *key, uint64_t min,
		    uint64_t max, uint64_t *out, bool *present, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	*present = v != NULL;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0)) /* NaN fails too */
		return fail(err, errlen, "%s.%s: expected a non-negative integer", section, key);
	uint64_t top = max < JSON_INT_MAX ? max : JSON_INT_MAX;
	if (v->valuedouble > (double)top) /* exact: top <= 2^53 */
		return fail(err, errlen, "%s.%s: must be between %llu and %llu (got %.17g)", section,
			    key, (unsigned long long)min, (unsigned long long)top, v->valuedouble);
	uint64_t n = (uint64_t)v->valuedouble;
	if ((double)n != v->valuedouble)
		return fail(err, errlen, "%s.%s: expected a non-negative integer", section, key);
	if (n < min)
		return fail(err, errlen, "%s.%s: must be between %llu and %llu (got %llu)", section,
			    key, (unsigned long long)min, (unsigned long long)top,
			    (unsigned long long)n);
	*out = n;
	return 0;
}

static int get_bool(const cJSON *obj, const char *section, const char *key, bool *out,
		    char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return fail(err, errlen, "%s.%s: expected true or false", section, key);
	*out = cJSON_IsTrue(v);
	return 0;
}

int config_json_boot_source(const cJSON *obj, struct boot_source_config *out, char *err,
			    size_t errlen)
{
	static const char *const keys[] = { "kernel_image_path", "boot_args", "initrd_path", NULL };
	const char *sec = "boot-source";
	struct boot_source_config b = { .set = true };
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_string(obj, sec, "kernel_image_path", b.kernel_image_path,
			      sizeof(b.kernel_image_path), true, NULL, err, errlen)) ||
	    (ret = get_string(obj, sec, "initrd_path", b.initrd_path, sizeof(b.initrd_path),
			      false, NULL, err, errlen)) ||
	    (ret = get_string(obj, sec, "boot_args", b.boot_args, sizeof(b.boot_args), false,
			      &b.has_boot_args, err, errlen)))
		return ret;
	if (!b.kernel_image_path[0])
		return fail(err, errlen, "%s.kernel_image_path: empty", sec);
	*out = b;
	return 0;
}

int config_json_machine(const cJSON *obj, struct machine_config *out, unsigned *fields, char *err,
			size_t errlen)
{
	static const char *const keys[] = { "vcpu_count", "mem_size_mib", "smt",
		"track_dirty_pages", "cpu_template", "huge_pages", NULL };
	const char *sec = "machine-config";
	struct machine_config m;
	memset(&m, 0, sizeof(m));
	unsigned f = 0;
	uint64_t v;
	bool present;
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)))
		return ret;
	if ((ret = get_uint(obj, sec, "vcpu_count", 1, CONFIG_MAX_VCPUS, &v, &present, err, errlen)))
		return ret;
	if (present) {
		m.vcpu_count = (unsigned)v;
		f |= MACHINE_F_VCPU_COUNT;
	}
	if ((ret = get_uint(obj, sec, "mem_size_mib", 1, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	if (present) {
		m.mem_size_mib = v;
		f |= MACHINE_F_MEM_SIZE;
	}
	if (cJSON_GetObjectItemCaseSensitive(obj, "smt"))
		f |= MACHINE_F_SMT;
	if (cJSON_GetObjectItemCaseSensitive(obj, "track_dirty_pages"))
		f |= MACHINE_F_TRACK_DIRTY;
	if ((ret = get_bool(obj, sec, "smt", &m.smt, err, errlen)) ||
	    (ret = get_bool(obj, sec, "track_dirty_pages", &m.track_dirty_pages, err, errlen)))
		return ret;

	/* Accepted for compatibility when they ask for nothing special. */
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "cpu_template");
	if (t && !cJSON_IsNull(t) && !(cJSON_IsString(t) && strcmp(t->valuestring, "None") == 0))
		return fail(err, errlen, "%s.cpu_template: ember supports only \"None\"", sec);
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, "huge_pages");
	if (h && !cJSON_IsNull(h) && !(cJSON_IsString(h) && strcmp(h->valuestring, "None") == 0))
		return fail(err, errlen, "%s.huge_pages: ember supports only \"None\" so far", sec);

	*out = m;
	*fields = f;
	return 0;
}

static int get_bucket(const cJSON *obj, const char *section, const char *key,
		      struct token_bucket_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "size", "one_time_burst", "refill_time", NULL };
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(obj, key);
	char sec[96];
	snprintf(sec, sizeof(sec), "%s.%s", section, key);
	memset(out, 0, sizeof(*out));
	if (!b || cJSON_IsNull(b))
		return 0;
	int ret;
	uint64_t v;
	bool present;
	if ((ret = check_keys(b, sec, keys, err, errlen)))
		return ret;
	if ((ret = get_uint(b, sec, "size", 0, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	if (!present)
		return fail(err, errlen, "%s.size: missing", sec);
	out->size = v;
	if ((ret = get_uint(b, sec, "one_time_burst", 0, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	out->one_time_burst = present ? v : 0;
	if ((ret = get_uint(b, sec, "refill_time", 0, UINT64_MAX / 1000000, &v, &present, err, errlen)))
		return ret;
	if (!present)
		return fail(err, errlen, "%s.refill_time: missing", sec);
	if (out->size && v == 0)
		return fail(err, errlen, "%s.refill_time: must be more than 0 ms", sec);
	out->refill_time_ms = v;
	return 0;
}

int config_json_rate_limiter(const cJSON *obj, const char *section, struct ratelimiter_config *out,
			     char *err, size_t errlen)
{
	static const char *const keys[] = { "bandwidth", "ops", NULL };
	memset(out, 0, sizeof(*out));
	if (!obj || cJSON_IsNull(obj))
		return 0;
	int ret;
	if ((ret = check_keys(obj, section, keys, err, errlen)) ||
	    (ret = get_bucket(obj, section, "bandwidth", &out->bandwidth, err, errlen)) ||
	    (ret = get_bucket(obj, section, "ops", &out->ops, err, errlen)))
		return ret;
	return 0;
}

/* Firecracker's ids: letters, digits and '_' (we also allow '-'). */
static int check_id(const char *sec, const char *key, const char *id, char *err, size_t errlen)
{
	if (!id[0])
		return fail(err, errlen, "%s.%s: empty", sec, key);
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-'))
			return fail(err, errlen, "%s.%s: only letters, digits, '_' and '-' are allowed", sec, key);
	return 0;
}

int config_json_drive(const cJSON *obj, struct drive_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "drive_id", "path_on_host", "is_root_device",
		"is_read_only", "partuuid", "cache_type", "io_engine", "rate_limiter", "socket", NULL };
	const char *sec = "drives";
	struct drive_config d;
	memset(&d, 0, sizeof(d));
	int ret;
	char text[16];
	bool present;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_string(obj, sec, "drive_id", d.drive_id, sizeof(d.drive_id), true, NULL, err, errlen)) ||
	    (ret = check_id(sec, "drive_id", d.drive_id, err, errlen)))
		return ret;
	if (cJSON_GetObjectItemCaseSensitive(obj, "socket"))
		return fail(err, errlen, "drives.socket: vhost-user drives are not supported by ember");
	if ((ret = get_string(obj, sec, "path_on_host", d.path_on_host, sizeof(d.path_on_host), true,
			      NULL, err, errlen)) ||
	    (ret = get_bool(obj, sec, "is_root_device", &d.is_root_device, err, errlen)) ||
	    (ret = get_bool(obj, sec, "is_read_only", &d.is_read_only, err, errlen)) ||
	    (ret = get_string(obj, sec, "partuuid", d.partuuid, sizeof(d.partuuid), false, NULL, err, errlen)))
		return ret;
	if (!d.path_on_host[0])
		return fail(err, errlen, "drives.path_on_host: empty");
	if (!cJSON_GetObjectItemCaseSensitive(obj, "is_root_device"))
		return fail(err, errlen, "drives.is_root_device: missing");
	if ((ret = get_string(obj, sec, "cache_type", text, sizeof(text), false, &present, err, errlen)))
		return ret;
	if (present && strcmp(text, "Unsafe") == 0)
		d.cache_type = CACHE_UNSAFE;
	else if (present && strcmp(text, "Writeback") == 0)
		d.cache_type = CACHE_WRITEBACK;
	else if (present)
		return fail(err, errlen, "drives.cache_type: must be \"Unsafe\" or \"Writeback\"");
	if ((ret = get_string(obj, sec, "io_engine", text, sizeof(text), false, &present, err, errlen)))
		return ret;
	if (present && strcmp(text, "Async") == 0)
		d.io_engine = IO_ENGINE_ASYNC;
	else if (present && strcmp(text, "Sync") == 0)
		d.io_engine = IO_ENGINE_SYNC;
	else if (present)
		return fail(err, errlen, "drives.io_engine: must be \"Sync\" or \"Async\"");
	if ((ret = config_json_rate_limiter(cJSON_GetObjectItemCaseSensitive(obj, "rate_limiter"),
					    "drives.rate_limiter", &d.rate_limiter, err, errlen)))
		return ret;
	*out = d;
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6 ||
	    strlen(s) != 17)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

int config_json_net(const cJSON *obj, struct net_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "iface_id", "host_dev_name", "guest_mac",
		"rx_rate_limiter", "tx_rate_limiter", NULL };
	const char *sec = "network-interfaces";
	struct net_config n;
	memset(&n, 0, sizeof(n));
	char mac[32];
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_string(obj, sec, "iface_id", n.iface_id, sizeof(n.iface_id), true, NULL, err, errlen)) ||
	    (ret = check_id(sec, "iface_id", n.iface_id, err, errlen)) ||
	    (ret = get_string(obj, sec, "host_dev_name", n.host_dev_name, sizeof(n.host_dev_name), true,
			      NULL, err, errlen)) ||
	    (ret = get_string(obj, sec, "guest_mac", mac, sizeof(mac), false, &n.has_mac, err, errlen)))
		return ret;
	if (!n.host_dev_name[0])
		return fail(err, errlen, "network-interfaces.host_dev_name: empty");
	if (n.has_mac && parse_mac(mac, n.guest_mac))
		return fail(err, errlen, "network-interfaces.guest_mac: expected xx:xx:xx:xx:xx:xx");
	if (n.has_mac && (n.guest_mac[0] & 1))
		return fail(err, errlen, "network-interfaces.guest_mac: a multicast address");
	if ((ret = config_json_rate_limiter(cJSON_GetObjectItemCaseSensitive(obj, "rx_rate_limiter"),
					    "network-interfaces.rx_rate_limiter", &n.rx_rate_limiter,
					    err, errlen)) ||
	    (ret = config_json_rate_limiter(cJSON_GetObjectItemCaseSensitive(obj, "tx_rate_limiter"),
					    "network-interfaces.tx_rate_limiter", &n.tx_rate_limiter,
					    err, errlen)))
		return ret;
	*out = n;
	return 0;
}

int config_json_vsock(const cJSON *obj, struct vsock_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "guest_cid", "uds_path", "vsock_id", NULL };
	const char *sec = "vsock";
	struct vsock_config v = { .set = true };
	uint64_t cid;
	bool present;
	int ret;
	char ignored[CONFIG_ID_MAX];
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_uint(obj, sec, "guest_cid", 3, UINT32_MAX - 1, &cid, &present, err, errlen)))
		return ret;
	if (!present)
		return fail(err, errlen, "vsock.guest_cid: missing");
	v.guest_cid = (uint32_t)cid;
	/* vsock_id is deprecated and ignored, but still sent by clients. */
	if ((ret = get_string(obj, sec, "uds_path", v.uds_path, sizeof(v.uds_path) - 12, true, NULL, err, errlen)) ||
	    (ret = get_string(obj, sec, "vsock_id", ignored, sizeof(ignored), false, NULL, err, errlen)))
		return ret;
	if (!v.uds_path[0])
		return fail(err, errlen, "vsock.uds_path: empty");
	*out = v;
	return 0;
}

int config_json_entropy(const cJSON *obj, struct entropy_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "rate_limiter", NULL };
	struct entropy_config e = { .set = true };
	int ret;
	if ((ret = check_keys(obj, "entropy", keys, err, errlen)) ||
	    (ret = config_json_rate_limiter(cJSON_GetObjectItemCaseSensitive(obj, "rate_limiter"),
					    "entropy.rate_limiter", &e.rate_limiter, err, errlen)))
		return ret;
	*out = e;
	return 0;
}

int config_json_serial(const cJSON *obj, struct serial_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "serial_out_path", "rate_limiter", NULL };
	struct serial_config c = { .set = true };
	int ret;
	if ((ret = check_keys(obj, "serial", keys, err, errlen)) ||
	    (ret = get_string(obj, "serial", "serial_out_path", c.serial_out_path,
			      sizeof(c.serial_out_path), false, NULL, err, errlen)) ||
	    (ret = get_bucket(obj, "serial", "rate_limiter", &c.rate_limiter, err, errlen)))
		return ret;
	*out = c;
	return 0;
}

int config_json_logger(const cJSON *obj, struct logger_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "log_path", "level", "show_level", "show_log_origin",
		"module", NULL };
	struct logger_config c = { .set = true, .level = -1, .show_level = -1, .show_log_origin = -1 };
	char level[16], module[128];
	bool present, b;
	int ret;
	if ((ret = check_keys(obj, "logger", keys, err, errlen)) ||
	    (ret = get_string(obj, "logger", "log_path", c.log_path, sizeof(c.log_path), false,
			      &c.has_path, err, errlen)) ||
	    (ret = get_string(obj, "logger", "level", level, sizeof(level), false, &present, err, errlen)))
		return ret;
	if (present && (c.level = log_level_parse(level)) < 0)
		return fail(err, errlen, "logger.level: must be one of Error, Warning, Info, Debug, Trace, Off");
	if (cJSON_GetObjectItemCaseSensitive(obj, "show_level")) {
		if ((ret = get_bool(obj, "logger", "show_level", &b, err, errlen)))
			return ret;
		c.show_level = b;
	}
	if (cJSON_GetObjectItemCaseSensitive(obj, "show_log_origin")) {
		if ((ret = get_bool(obj, "logger", "show_log_origin", &b, err, errlen)))
			return ret;
		c.show_log_origin = b;
	}
	/* module filters are accepted and ignored: ember has one log. */
	if ((ret = get_string(obj, "logger", "module", module, sizeof(module), false, NULL, err, errlen)))
		return ret;
	*out = c;
	return 0;
}

int config_json_metrics(const cJSON *obj, struct metrics_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "metrics_path", "emit_id", "properties", "ember_counters", NULL };
	struct metrics_config c = { .set = true };
	int ret;
	if ((ret = check_keys(obj, "metrics", keys, err, errlen)) ||
	    (ret = get_string(obj, "metrics", "metrics_path", c.metrics_path, sizeof(c.metrics_path),
			      true, NULL, err, errlen)) ||
	    (ret = get_bool(obj, "metrics", "emit_id", &c.emit_id, err, errlen)) ||
	    (ret = get_bool(obj, "metrics", "ember_counters", &c.ember_counters, err, errlen)))
		return ret;
	if (!c.metrics_path[0])
		return fail(err, errlen, "metrics.metrics_path: empty");
	/* A map of strings, kept as its JSON text for the metrics lines. */
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(obj, "properties");
	if (props && !cJSON_IsNull(props)) {
		if (!cJSON_IsObject(props))
			return fail(err, errlen, "metrics.properties: expected an object of strings");
		for (const cJSON *it = props->child; it; it = it->next)
			if (!cJSON_IsString(it))
				return fail(err, errlen, "metrics.properties.%s: expected a string", it->string);
		char *text = cJSON_PrintUnformatted(props);
		if (!text)
			return fail(err, errlen, "metrics.properties: out of memory");
		size_t len = strlen(text);
		if (len < sizeof(c.properties_json))
			memcpy(c.properties_json, text, len + 1);
		free(text);
		if (len >= sizeof(c.properties_json))
			return fail(err, errlen, "metrics.properties: longer than %zu bytes",
				    sizeof(c.properties_json) - 1);
	}
	*out = c;
	return 0;
}

/* ---- typed configuration -> JSON ----------------------------------- */

static void add_bucket(cJSON *obj, const char *key, const struct token_bucket_config *b)
{
	if (!b->size)
		return;
	cJSON *o = cJSON_AddObjectToObject(obj, key);
	cJSON_AddNumberToObject(o, "size", (double)b->size);
	cJSON_AddNumberToObject(o, "one_time_burst", (double)b->one_time_burst);
	cJSON_AddNumberToObject(o, "refill_time", (double)b->refill_time_ms);
}

static void add_rate_limiter(cJSON *obj, const char *key, const struct ratelimiter_config *rl)
{
	if (!rl->bandwidth.size && !rl->ops.size)
		return;
	cJSON *o = cJSON_AddObjectToObject(obj, key);
	add_bucket(o, "bandwidth", &rl->bandwidth);
	add_bucket(o, "ops", &rl->ops);
}

cJSON *config_json_machine_obj(const struct machine_config *m)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "vcpu_count", m->vcpu_count);
	cJSON_AddNumberToObject(o, "mem_size_mib", (double)m->mem_size_mib);
	cJSON_AddBoolToObject(o, "smt", m->smt);
	cJSON_AddBoolToObject(o, "track_dirty_pages", m->track_dirty_pages);
	cJSON_AddStringToObject(o, "huge_pages", "None");
	return o;
}

cJSON *config_json_vm_obj(const struct vmm_config *cfg)
{
	cJSON *root = cJSON_CreateObject();
	if (cfg->boot.set) {
		cJSON *b = cJSON_AddObjectToObject(root, "boot-source");
		cJSON_AddStringToObject(b, "kernel_image_path", cfg->boot.kernel_image_path);
		if (cfg->boot.initrd_path[0])
			cJSON_AddStringToObject(b, "initrd_path", cfg->boot.initrd_path);
		if (cfg->boot.has_boot_args)
			cJSON_AddStringToObject(b, "boot_args", cfg->boot.boot_args);
	}
	cJSON_AddItemToObject(root, "machine-config", config_json_machine_obj(&cfg->machine));
	cJSON *drives = cJSON_AddArrayToObject(root, "drives");
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		const struct drive_config *d = &cfg->drives[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "drive_id", d->drive_id);
		cJSON_AddStringToObject(o, "path_on_host", d->path_on_host);
		cJSON_AddBoolToObject(o, "is_root_device", d->is_root_device);
		cJSON_AddBoolToObject(o, "is_read_only", d->is_read_only);
		if (d->partuuid[0])
			cJSON_AddStringToObject(o, "partuuid", d->partuuid);
		cJSON_AddStringToObject(o, "cache_type", d->cache_type == CACHE_WRITEBACK ? "Writeback" : "Unsafe");
		cJSON_AddStringToObject(o, "io_engine", d->io_engine == IO_ENGINE_SYNC ? "Sync" : "Async");
		add_rate_limiter(o, "rate_limiter", &d->rate_limiter);
		cJSON_AddItemToArray(drives, o);
	}
	cJSON *nets = cJSON_AddArrayToObject(root, "network-interfaces");
	for (unsigned i = 0; i < cfg->nnets; i++) {
		const struct net_config *n = &cfg->nets[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "iface_id", n->iface_id);
		cJSON_AddStringToObject(o, "host_dev_name", n->host_dev_name);
		if (n->has_mac) {
			char mac[18];
			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
				 n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
				 n->guest_mac[5]);
			cJSON_AddStringToObject(o, "guest_mac", mac);
		}
		add_rate_limiter(o, "rx_rate_limiter", &n->rx_rate_limiter);
		add_rate_limiter(o, "tx_rate_limiter", &n->tx_rate_limiter);
		cJSON_AddItemToArray(nets, o);
	}
	if (cfg->vsock.set) {
		cJSON *v = cJSON_AddObjectToObject(root, "vsock");
		cJSON_AddNumberToObject(v, "guest_cid", cfg->vsock.guest_cid);
		cJSON_AddStringToObject(v, "uds_path", cfg->vsock.uds_path);
	}
	if (cfg->entropy.set)
		add_rate_limiter(cJSON_AddObjectToObject(root, "entropy"), "rate_limiter",
				 &cfg->entropy.rate_limiter);
	if (cfg->serial.set) {
		cJSON *s = cJSON_AddObjectToObject(root, "serial");
		if (cfg->serial.serial_out_path[0])
			cJSON_AddStringToObject(s, "serial_out_path", cfg->serial.serial_out_path);
		add_bucket(s, "rate_limiter", &cfg->serial.rate_limiter);
	}
	if (cfg->logger.set) {
		cJSON *l = cJSON_AddObjectToObject(root, "logger");
		if (cfg->logger.has_path)
			cJSON_AddStringToObject(l, "log_path", cfg->logger.log_path);
		if (cfg->logger.level >= 0)
			cJSON_AddStringToObject(l, "level", log_level_name((enum log_level)cfg->logger.level));
		if (cfg->logger.show_level >= 0)
			cJSON_AddBoolToObject(l, "show_level", cfg->logger.show_level);
		if (cfg->logger.show_log_origin >= 0)
			cJSON_AddBoolToObject(l, "show_log_origin", cfg->logger.show_log_origin);
	}
	if (cfg->metrics.set)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "metrics"), "metrics_path",
					cfg->metrics.metrics_path);
	return root;
}

/* Cross-device rules: unique ids and tap names, one root drive. */
int config_check_devices(const struct vmm_config *cfg, char *err, size_t errlen)
{
	unsigned roots = 0;
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		roots += cfg->drives[i].is_root_device;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(cfg->drives[i].drive_id, cfg->drives[j].drive_id) == 0)
				return fail(err, errlen, "drives.drive_id: \"%s\" used twice", cfg->drives[i].drive_id);
	}
	if (roots > 1)
		return fail(err, errlen, "drives.is_root_device: only one drive can be the root device");
	for (unsigned i = 0; i < cfg->nnets; i++) {
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(cfg->nets[i].iface_id, cfg->nets[j].iface_id) == 0)
				return fail(err, errlen, "network-interfaces.iface_id: \"%s\" used twice",
					    cfg->nets[i].iface_id);
			if (strcmp(cfg->nets[i].host_dev_name, cfg->nets[j].host_dev_name) == 0)
				return fail(err, errlen, "network-interfaces.host_dev_name: \"%s\" used twice",
					    cfg->nets[i].host_dev_name);
			if (cfg->nets[i].has_mac && cfg->nets[j].has_mac &&
			    memcmp(cfg->nets[i].guest_mac, cfg->nets[j].guest_mac, 6) == 0)
				return fail(err, errlen, "network-interfaces.guest_mac: used twice");
		}
	}
	return 0;
}

/* Sections of Firecracker's config file that ember does not implement
 * yet: accepted when empty, refused with a clear message otherwise. */
static const char *const unsupported_sections[] = {
	"balloon", "mmds-config", "cpu-config", "pmem", "memory-hotplug", NULL,
};

static int parse_array(const cJSON *arr, const char *section, char *err, size_t errlen)
{
	if (!cJSON_IsArray(arr))
		return fail(err, errlen, "%s: expected a JSON array", section);
	return 0;
}

int config_json_file(const char *text, size_t len, struct vmm_config *cfg, char *err,
		     size_t errlen)
{
	char why[256];
	cJSON *root = config_json_parse(text, len, why, sizeof(why));
	if (!root)
		return fail(err, errlen, "config file: %s", why);
	int ret = 0;
	if (!cJSON_IsObject(root)) {
		ret = fail(err, errlen, "config file: expected a JSON object at the top level");
		goto out;
	}
	for (const cJSON *it = root->child; it && !ret; it = it->next) {
		if (strcmp(it->string, "boot-source") == 0) {
			ret = config_json_boot_source(it, &cfg->boot, err, errlen);
		} else if (strcmp(it->string, "machine-config") == 0) {
			struct machine_config m;
			unsigned fields;
			ret = config_json_machine(it, &m, &fields, err, errlen);
			if (!ret)
				ret = config_machine_apply(&cfg->machine, &m, fields, false, err, errlen);
		} else if (strcmp(it->string, "drives") == 0) {
			/* Bounded by the array's capacity, whatever cfg holds already. */
			ret = parse_array(it, "drives", err, errlen);
			for (const cJSON *d = it->child; d && !ret; d = d->next) {
				if (cfg->ndrives >= CONFIG_MAX_DRIVES)
					ret = fail(err, errlen, "drives: at most %d drives", CONFIG_MAX_DRIVES);
				else if (!(ret = config_json_drive(d, &cfg->drives[cfg->ndrives], err, errlen)))
					cfg->ndrives++;
			}
		} else if (strcmp(it->string, "network-interfaces") == 0) {
			ret = parse_array(it, "network-interfaces", err, errlen);
			for (const cJSON *n = it->child; n && !ret; n = n->next) {
				if (cfg->nnets >= CONFIG_MAX_NETS)
					ret = fail(err, errlen, "network-interfaces: at most %d network interfaces",
						   CONFIG_MAX_NETS);
				else if (!(ret = config_json_net(n, &cfg->nets[cfg->nnets], err, errlen)))
					cfg->nnets++;
			}
		} else if (strcmp(it->string, "vsock") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_vsock(it, &cfg->vsock, err, errlen);
		} else if (strcmp(it->string, "entropy") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_entropy(it, &cfg->entropy, err, errlen);
		} else if (strcmp(it->string, "serial") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_serial(it, &cfg->serial, err, errlen);
		} else if (strcmp(it->string, "logger") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_logger(it, &cfg->logger, err, errlen);
		} else if (strcmp(it->string, "metrics") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_metrics(it, &cfg->metrics, err, errlen);
		} else {
			bool known = false;
			for (const char *const *s = unsupported_sections; *s; s++)
				if (strcmp(it->string, *s) == 0)
					known = true;
			if (!known)
				ret = fail(err, errlen, "%s: unknown section", it->string);
			else if (!(cJSON_IsArray(it) && cJSON_GetArraySize(it) == 0) &&
				 !(cJSON_IsNull(it)))
				ret = fail(err, errlen, "%s: not supported by ember yet", it->string);
		}
	}
	if (!ret && !cfg->boot.set)
		ret = fail(err, errlen, "boot-source: missing (the kernel to boot)");
	if (!ret)
		ret = config_check_devices(cfg, err, errlen);
out:
	cJSON_Delete(root);
	return ret;
}

int config_load_file(const char *path, struct vmm_config *cfg, char *err, size_t errlen)
{
	int fd = hostfile_open("config file", path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return fd;
	struct stat st;
	int ret;
	char *buf = NULL;
	if (fstat(fd, &st) < 0) {
		ret = fail(err, errlen, "config file %s: %s", path, strerror(errno));
		goto out;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		ret = fail(err, errlen, "config file %s: larger than %d bytes", path, CONFIG_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = fail(err, errlen, "config file %s: out of memory", path);
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = fail(err, errlen, "config file %s: read failed", path);
			goto out;
		}
		got += (size_t)n;
	}
	ret = config_json_file(buf, got, cfg, err, errlen);
out:
	free(buf);
	close(fd);
	return ret;
}
