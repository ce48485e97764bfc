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

/* Sections of Firecracker's config file that ember does not implement
 * yet: accepted when empty, refused with a clear message otherwise. */
static const char *const unsupported_sections[] = {
	"drives", "network-interfaces", "vsock", "entropy", "balloon", "logger", "metrics",
	"mmds-config", "cpu-config", "serial", NULL,
};

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
