#include "config_json.h"

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
#include <sys/sysinfo.h>
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

/* An integer in [min, max]; cJSON keeps numbers as doubles, so check it
 * is integral and in range before converting. */
static int get_uint(const cJSON *obj, const char *section, const char *key, uint64_t min,
		    uint64_t max, uint64_t *out, bool *present, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	*present = v != NULL;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble ||
	    v->valuedouble < 0 || v->valuedouble > 9007199254740992.0)
		return fail(err, errlen, "%s.%s: expected a non-negative integer", section, key);
	uint64_t n = (uint64_t)v->valuedouble;
	if (n < min || n > max)
		return fail(err, errlen, "%s.%s: must be between %llu and %llu (got %llu)", section,
			    key, (unsigned long long)min, (unsigned long long)max,
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

static uint64_t host_mem_mib(void)
{
	struct sysinfo si;
	if (sysinfo(&si) != 0)
		return UINT64_MAX;
	return (uint64_t)si.totalram * si.mem_unit >> 20;
}

int config_json_machine(const cJSON *obj, struct machine_config *out, int patch, char *err,
			size_t errlen)
{
	static const char *const keys[] = { "vcpu_count", "mem_size_mib", "smt",
		"track_dirty_pages", "cpu_template", "huge_pages", NULL };
	const char *sec = "machine-config";
	struct machine_config m = *out;
	if (!patch)
		m = (struct machine_config){ .vcpu_count = 1, .mem_size_mib = 128 };
	uint64_t v;
	bool present;
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)))
		return ret;

	if ((ret = get_uint(obj, sec, "vcpu_count", 1, CONFIG_MAX_VCPUS, &v, &present, err, errlen)))
		return ret;
	if (present)
		m.vcpu_count = (unsigned)v;
	else if (!patch)
		return fail(err, errlen, "%s.vcpu_count: missing", sec);

	uint64_t host = host_mem_mib();
	if ((ret = get_uint(obj, sec, "mem_size_mib", 1, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	if (present && v > host)
		return fail(err, errlen, "%s.mem_size_mib: %llu MiB is more than the host's %llu MiB",
			    sec, (unsigned long long)v, (unsigned long long)host);
	if (present)
		m.mem_size_mib = v;
	else if (!patch)
		return fail(err, errlen, "%s.mem_size_mib: missing", sec);

	if ((ret = get_bool(obj, sec, "smt", &m.smt, err, errlen)) ||
	    (ret = get_bool(obj, sec, "track_dirty_pages", &m.track_dirty_pages, err, errlen)))
		return ret;
	if (m.smt && m.vcpu_count > 1 && (m.vcpu_count & 1))
		return fail(err, errlen, "%s.vcpu_count: must be 1 or even when smt is enabled", sec);

	/* Accepted for compatibility when they ask for nothing special. */
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "cpu_template");
	if (t && !(cJSON_IsString(t) && strcmp(t->valuestring, "None") == 0))
		return fail(err, errlen, "%s.cpu_template: ember supports only \"None\"", sec);
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, "huge_pages");
	if (h && !(cJSON_IsString(h) && strcmp(h->valuestring, "None") == 0))
		return fail(err, errlen, "%s.huge_pages: ember supports only \"None\" so far", sec);

	*out = m;
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
	"balloon", "logger", "metrics", "mmds-config", "cpu-config", "serial", NULL,
};

static int parse_array(const cJSON *arr, const char *section, int max, char *err, size_t errlen)
{
	if (!cJSON_IsArray(arr))
		return fail(err, errlen, "%s: expected a JSON array", section);
	if (cJSON_GetArraySize(arr) > max)
		return fail(err, errlen, "%s: at most %d entries", section, max);
	return 0;
}

int config_json_file(const char *text, size_t len, struct vmm_config *cfg, char *err,
		     size_t errlen)
{
	cJSON *root = cJSON_ParseWithLength(text, len);
	if (!root) {
		const char *where = cJSON_GetErrorPtr();
		long off = where && where >= text && where <= text + len ? (long)(where - text) : -1;
		return fail(err, errlen, "config file: invalid JSON (near byte %ld)", off);
	}
	int ret = 0;
	if (!cJSON_IsObject(root)) {
		ret = fail(err, errlen, "config file: expected a JSON object at the top level");
		goto out;
	}
	for (const cJSON *it = root->child; it && !ret; it = it->next) {
		if (strcmp(it->string, "boot-source") == 0) {
			ret = config_json_boot_source(it, &cfg->boot, err, errlen);
		} else if (strcmp(it->string, "machine-config") == 0) {
			ret = config_json_machine(it, &cfg->machine, 0, err, errlen);
		} else if (strcmp(it->string, "drives") == 0) {
			ret = parse_array(it, "drives", CONFIG_MAX_DRIVES, err, errlen);
			for (const cJSON *d = it->child; d && !ret; d = d->next)
				ret = config_json_drive(d, &cfg->drives[cfg->ndrives++], err, errlen);
		} else if (strcmp(it->string, "network-interfaces") == 0) {
			ret = parse_array(it, "network-interfaces", CONFIG_MAX_NETS, err, errlen);
			for (const cJSON *n = it->child; n && !ret; n = n->next)
				ret = config_json_net(n, &cfg->nets[cfg->nnets++], err, errlen);
		} else if (strcmp(it->string, "vsock") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_vsock(it, &cfg->vsock, err, errlen);
		} else if (strcmp(it->string, "entropy") == 0) {
			if (!cJSON_IsNull(it))
				ret = config_json_entropy(it, &cfg->entropy, err, errlen);
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
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, "config file %s: %s", path, strerror(errno));
	struct stat st;
	int ret;
	char *buf = NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = fail(err, errlen, "config file %s: not a regular file", path);
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
