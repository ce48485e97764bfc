#include "config_json.h"

#include "../vmm/action.h"
#include "../vmm/hostfile.h"
#include "../vmm/log.h"
#include "../vmm/mmds/mmds.h"
#include <arpa/inet.h>

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

/* The last refusal of this thread: the node it is about and which of its
 * bytes a deserializer would have read last (serde_json's position). */
enum fault_at { AT_NONE, AT_KEY, AT_VALUE, AT_END };
static _Thread_local struct {
	const cJSON *node;
	enum fault_at at;
	size_t msg_off;   /* where the deserializer-style text starts in err */
} last_fault;

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	last_fault.node = NULL;
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
	last_fault.node = NULL; /* a new text: an old refusal is not about it */
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

/* ---- where a refusal lies in the text ------------------------------- */


static const char *skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at the opening quote: the closing one. */
static const char *string_end(const char *p, const char *e)
{
	for (p++; p < e && *p != '"'; p++)
		if (*p == '\\')
			p++;
	return p < e ? p : e - 1;
}

/* Walk the text of node (which cJSON parsed from it, so the shapes agree)
 * from *pp; set *found at the byte of the refused node. */
static void walk(const char **pp, const char *e, const cJSON *node, const char **found)
{
	const char *p = skip_ws(*pp, e);
	if (p >= e)
		return;
	if (*p == '{' || *p == '[') {
		bool obj = *p == '{';
		p++;
		for (const cJSON *c = node->child; c && !*found; c = c->next) {
			p = skip_ws(p, e);
			if (p < e && *p == ',')
				p = skip_ws(p + 1, e);
			if (obj && p < e) {
				const char *q = string_end(p, e);
				if (c == last_fault.node && last_fault.at == AT_KEY) {
					*found = q;
					return;
				}
				p = skip_ws(q + 1, e);
				if (p < e && *p == ':')
					p++;
			}
			walk(&p, e, c, found);
		}
		p = skip_ws(p, e);
		if (node == last_fault.node && last_fault.at == AT_END && !*found)
			*found = p < e ? p : e - 1;
		*pp = p + 1;
		return;
	}
	const char *last;
	if (*p == '"') {
		last = string_end(p, e);
	} else {
		last = p;
		while (last + 1 < e && !strchr(",}] \t\r\n", last[1]))
			last++;
	}
	if (node == last_fault.node && last_fault.at == AT_VALUE)
		*found = last;
	*pp = last + 1;
}

bool config_json_fault_serde(const char *text, size_t len, const cJSON *root, size_t *msg_off,
			     unsigned *line, unsigned *col)
{
	if (!last_fault.node || !len)
		return false;
	*msg_off = last_fault.msg_off;
	const char *p = text, *found = NULL;
	walk(&p, text + len, root, &found);
	if (!found)
		found = text + len - 1;
	*line = 1;
	const char *bol = text;
	for (const char *q = text; q < found; q++)
		if (*q == '\n') {
			(*line)++;
			bol = q + 1;
		}
	*col = (unsigned)(found - bol) + 1;
	return true;
}

__attribute__((format(printf, 7, 8)))
static int serde_fail(const cJSON *node, enum fault_at at, const char *section, const char *key,
		      char *err, size_t errlen, const char *fmt, ...)
{
	int n = key ? snprintf(err, errlen, "%s.%s: ", section, key) : snprintf(err, errlen, "%s: ", section);
	size_t off = n < 0 ? 0 : (size_t)n < errlen ? (size_t)n : errlen - 1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + off, errlen - off, fmt, ap);
	va_end(ap);
	last_fault.node = node;
	last_fault.at = at;
	last_fault.msg_off = off;
	return -EINVAL;
}

/* A number a deserializer reads as an integer (of at most 64 bits): the
 * range is checked before any conversion, which outside it is undefined. */
static bool is_integer(double d)
{
	if (d > -9.2e18 && d < 9.2e18)
		return (double)(long long)d == d;
	return d >= 0 && d < 1.8446744073709552e19; /* doubles this large are integral */
}

/* What a value is, in a deserializer's words ("string \"x\"", "null"). */
static const char *describe(const cJSON *v, char *buf, size_t size)
{
	if (cJSON_IsString(v))
		snprintf(buf, size, "string \"%.64s\"", v->valuestring);
	else if (cJSON_IsNumber(v) && is_integer(v->valuedouble) && v->valuedouble < 9.2e18)
		snprintf(buf, size, "integer `%lld`", (long long)v->valuedouble);
	else if (cJSON_IsNumber(v))
		snprintf(buf, size, "floating point `%.17g`", v->valuedouble);
	else if (cJSON_IsBool(v))
		snprintf(buf, size, "boolean `%s`", cJSON_IsTrue(v) ? "true" : "false");
	else if (cJSON_IsNull(v))
		snprintf(buf, size, "null");
	else if (cJSON_IsObject(v))
		snprintf(buf, size, "map");
	else
		snprintf(buf, size, "sequence");
	return buf;
}

static int invalid_type(const cJSON *v, const char *section, const char *key, const char *expected,
			char *err, size_t errlen)
{
	char d[96];
	return serde_fail(v, AT_VALUE, section, key, err, errlen, "invalid type: %s, expected %s",
			  describe(v, d, sizeof(d)), expected);
}

/* "`a`", "`a` or `b`", "one of `a`, `b`, `c`" */
static void one_of(char *buf, size_t size, const char *const *names)
{
	size_t n = 0, off = 0;
	while (names[n])
		n++;
	if (n > 2)
		off += (size_t)snprintf(buf, size, "one of ");
	for (size_t i = 0; i < n && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s`%s`", i == 0 ? "" : n == 2 ? " or " : ", ",
					names[i]);
}

/* An optional field given null is absent, as a deserializer of Option<T> takes it. */
static const cJSON *field(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A required field absent, or null (expected: what it should have been). */
static int missing(const cJSON *obj, const char *section, const char *key, const char *expected,
		   char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (v)
		return invalid_type(v, section, key, expected, err, errlen);
	return serde_fail(obj, AT_END, section, key, err, errlen, "missing field `%s`", key);
}

/* ---- tree -> typed configuration ---------------------------------- */

/* Refuse keys outside the allowed list, naming the first stray one. */
static int check_keys(const cJSON *obj, const char *section, const char *const *allowed,
		      char *err, size_t errlen)
{
	if (!cJSON_IsObject(obj))
		return invalid_type(obj, section, NULL, "a JSON object", err, errlen);
	for (const cJSON *it = obj->child; it; it = it->next) {
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(it->string, *a) == 0)
				ok = true;
		if (!ok) {
			char list[512];
			one_of(list, sizeof(list), allowed);
			return serde_fail(it, AT_KEY, section, it->string, err, errlen,
					  "unknown field `%s`, expected %s", it->string, list);
		}
	}
	return 0;
}

int config_json_check_keys(const cJSON *obj, const char *section, const char *const *allowed,
			   char *err, size_t errlen)
{
	return check_keys(obj, section, allowed, err, errlen);
}

int config_json_missing(const cJSON *obj, const char *section, const char *key, char *err,
			size_t errlen)
{
	return missing(obj, section, key, "a string", err, errlen);
}

int config_json_variant(const cJSON *obj, const char *section, const char *key,
			const char *const *variants, bool required, int *out, char *err,
			size_t errlen)
{
	const cJSON *v = field(obj, key);
	if (!v)
		return required ? missing(obj, section, key, "variant identifier", err, errlen) : 0;
	if (!cJSON_IsString(v))
		return invalid_type(v, section, key, "a string", err, errlen);
	for (int i = 0; variants[i]; i++)
		if (strcmp(v->valuestring, variants[i]) == 0) {
			*out = i;
			return 0;
		}
	char list[256];
	one_of(list, sizeof(list), variants);
	return serde_fail(v, AT_VALUE, section, key, err, errlen, "unknown variant `%.64s`, expected %s",
			  v->valuestring, list);
}

static int get_string(const cJSON *obj, const char *section, const char *key, char *out,
		      size_t outlen, bool required, bool *present, char *err, size_t errlen)
{
	const cJSON *v = field(obj, key);
	if (present)
		*present = v != NULL;
	if (!v) {
		if (required)
			return missing(obj, section, key, "a string", err, errlen);
		return 0;
	}
	if (!cJSON_IsString(v))
		return invalid_type(v, section, key, "a string", err, errlen);
	if (strlen(v->valuestring) >= outlen)
		return fail(err, errlen, "%s.%s: longer than %zu bytes", section, key, outlen - 1);
	strcpy(out, v->valuestring);
	return 0;
}

/* JSON numbers up to 2^53 are exact integers as doubles; beyond, they are
 * not, so no field takes more. */
#define JSON_INT_MAX (1ULL << 53)

/* An integer of type ty ("u8", "u32", "u64", "usize") in [min, max].
 * cJSON keeps numbers as doubles: check the range before converting (a
 * double outside the integer type's range, inf or NaN converts to an
 * undefined value), then that it is integral. */
static int get_uint(const cJSON *obj, const char *section, const char *key, const char *ty,
		    uint64_t min, uint64_t max, uint64_t *out, bool *present, char *err, size_t errlen)
{
	const cJSON *v = field(obj, key);
	*present = v != NULL;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || !is_integer(v->valuedouble))
		return invalid_type(v, section, key, ty, err, errlen);
	double tymax = strcmp(ty, "u8") == 0 ? 255 : strcmp(ty, "u16") == 0 ? 65535
		     : strcmp(ty, "u32") == 0 ? 4294967295.0 : 1.8446744073709552e19;
	if (v->valuedouble < 0 || v->valuedouble > tymax) {
		char d[96];
		return serde_fail(v, AT_VALUE, section, key, err, errlen, "invalid value: %s, expected %s",
				  describe(v, d, sizeof(d)), ty);
	}
	uint64_t top = max < JSON_INT_MAX ? max : JSON_INT_MAX;
	if (v->valuedouble > (double)top) /* exact: top <= 2^53 */
		return fail(err, errlen, "%s.%s: must be between %llu and %llu (got %.17g)", section,
			    key, (unsigned long long)min, (unsigned long long)top, v->valuedouble);
	uint64_t n = (uint64_t)v->valuedouble;
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
	const cJSON *v = field(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return invalid_type(v, section, key, "a boolean", err, errlen);
	*out = cJSON_IsTrue(v);
	return 0;
}

int config_json_boot_source(const cJSON *obj, struct boot_source_config *out, char *err,
			    size_t errlen)
{
	static const char *const keys[] = { "kernel_image_path", "initrd_path", "boot_args", NULL };
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

int config_json_mem_backend(const cJSON *v, const char *sec, enum mem_kind *kind, char *path, size_t pathlen,
			    char *err, size_t errlen)
{
	static const char *const keys[] = { "file", NULL };
	if (cJSON_IsString(v) && strcmp(v->valuestring, "anonymous") == 0) {
		*kind = MEM_KIND_ANON;
		path[0] = '\0';
		return 0;
	}
	if (cJSON_IsString(v) && strcmp(v->valuestring, "memfd") == 0) {
		*kind = MEM_KIND_MEMFD;
		path[0] = '\0';
		return 0;
	}
	if (!cJSON_IsObject(v))
		return fail(err, errlen, "%s.ember_mem_backend: expected \"anonymous\", \"memfd\" or "
			    "{\"file\": PATH}", sec);
	char where[64];
	snprintf(where, sizeof(where), "%s.ember_mem_backend", sec);
	int ret;
	if ((ret = check_keys(v, where, keys, err, errlen)) ||
	    (ret = get_string(v, where, "file", path, pathlen, true, NULL, err, errlen)))
		return ret;
	if (!path[0])
		return fail(err, errlen, "%s.file: empty", where);
	*kind = MEM_KIND_FILE;
	return 0;
}

int config_json_machine(const cJSON *obj, bool put, struct machine_config *out, unsigned *fields,
			char *err, size_t errlen)
{
	static const char *const keys[] = { "vcpu_count", "mem_size_mib", "smt", "cpu_template",
		"track_dirty_pages", "huge_pages", "ember_ksm", "ember_mem_backend", "ember_numa_node", NULL };
	/* Firecracker's x86 variants, in its order (its refusal lists them so). */
	static const char *const templates[] = { "C3", "T2", "T2S", "None", "T2CL", "T2A", NULL };
	/* Firecracker's variants, in its order. */
	static const char *const page_sizes[] = { "None", "Transparent", "2M", NULL };
	static const enum mem_pages page_kinds[] = { MEM_PAGES_NONE, MEM_PAGES_TRANSPARENT, MEM_PAGES_2M };
	const char *sec = "machine-config";
	struct machine_config m;
	memset(&m, 0, sizeof(m));
	unsigned f = 0;
	uint64_t v;
	bool present;
	int ret, which;
	if ((ret = check_keys(obj, sec, keys, err, errlen)))
		return ret;
	if ((ret = get_uint(obj, sec, "vcpu_count", "u8", 1, CONFIG_MAX_VCPUS, &v, &present, err, errlen)))
		return ret;
	if (present) {
		m.vcpu_count = (unsigned)v;
		f |= MACHINE_F_VCPU_COUNT;
	}
	if ((ret = get_uint(obj, sec, "mem_size_mib", "usize", 1, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	if (present) {
		m.mem_size_mib = v;
		f |= MACHINE_F_MEM_SIZE;
	}
	/* A PUT (and the config file) names both, as a deserializer of
	 * Firecracker's MachineConfig requires: it reports the first. */
	if (put && !(f & MACHINE_F_VCPU_COUNT))
		return missing(obj, sec, "vcpu_count", "u8", err, errlen);
	if (put && !(f & MACHINE_F_MEM_SIZE))
		return missing(obj, sec, "mem_size_mib", "usize", err, errlen);
	if (field(obj, "smt"))
		f |= MACHINE_F_SMT;
	if (field(obj, "track_dirty_pages"))
		f |= MACHINE_F_TRACK_DIRTY;
	if (field(obj, "ember_ksm"))
		f |= MACHINE_F_EMBER_KSM;
	if ((ret = get_bool(obj, sec, "ember_ksm", &m.ember_ksm, err, errlen)) ||
	    (ret = get_bool(obj, sec, "smt", &m.smt, err, errlen)) ||
	    (ret = get_bool(obj, sec, "track_dirty_pages", &m.track_dirty_pages, err, errlen)))
		return ret;

	which = -1;
	if ((ret = config_json_variant(obj, sec, "cpu_template", templates, false, &which, err, errlen)))
		return ret;
	if (which >= 0) {
		static const enum cpu_template_kind kinds[] = { CPU_TEMPLATE_C3, CPU_TEMPLATE_T2, CPU_TEMPLATE_T2S,
			CPU_TEMPLATE_NONE, CPU_TEMPLATE_T2CL, CPU_TEMPLATE_T2A };
		m.cpu_template = kinds[which];
		f |= MACHINE_F_CPU_TEMPLATE;
	}
	which = -1;
	if ((ret = config_json_variant(obj, sec, "huge_pages", page_sizes, false, &which, err, errlen)))
		return ret;
	if (which >= 0) {
		m.huge_pages = page_kinds[which];
		f |= MACHINE_F_HUGE_PAGES;
	}
	if (field(obj, "ember_mem_backend")) {
		if ((ret = config_json_mem_backend(field(obj, "ember_mem_backend"), sec, &m.mem_kind, m.mem_path,
						   sizeof(m.mem_path), err, errlen)))
			return ret;
		f |= MACHINE_F_EMBER_MEM;
	}
	if ((ret = get_uint(obj, sec, "ember_numa_node", "u32", 0, MEM_NUMA_MAX, &v, &present, err, errlen)))
		return ret;
	if (present) {
		m.has_numa_node = true;
		m.numa_node = (unsigned)v;
		f |= MACHINE_F_EMBER_NUMA;
	}

	*out = m;
	*fields = f;
	return 0;
}

/* A string a CPU template's own deserializer reads (a number with its
 * base, a bitmap, a capability), refused in its words. */
static int template_string(const cJSON *v, const char *section, const char *key, const char **out,
			   char *err, size_t errlen)
{
	if (!v)
		return serde_fail(NULL, AT_NONE, section, key, err, errlen, "missing field `%s`", key);
	if (!cJSON_IsString(v))
		return invalid_type(v, section, key, "a string", err, errlen);
	*out = v->valuestring;
	return 0;
}

/* A custom template's text error (from cpu_template.c) at node v. */
static int template_fault(const cJSON *v, const char *section, const char *key, const char *why,
			  char *err, size_t errlen)
{
	return serde_fail(v, AT_VALUE, section, key, err, errlen, "%s", why);
}

/* A required member of a template's list entry: absent is serde's
 * "missing field" at the entry's end. */
static const cJSON *member(const cJSON *obj, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int template_list(const cJSON *obj, const char *section, const char *key, const cJSON **out,
			 char *err, size_t errlen)
{
	const cJSON *v = member(obj, key);
	*out = NULL;
	if (!v)
		return 0; /* #[serde(default)]: an empty list */
	if (!cJSON_IsArray(v))
		return invalid_type(v, section, key, "a sequence", err, errlen);
	*out = v;
	return 0;
}

static int template_entry_list(const cJSON *obj, const char *section, const char *key, const cJSON **out,
			       char *err, size_t errlen)
{
	const cJSON *v = member(obj, key);
	if (!v)
		return serde_fail(obj, AT_END, section, key, err, errlen, "missing field `%s`", key);
	if (!cJSON_IsArray(v))
		return invalid_type(v, section, key, "a sequence", err, errlen);
	*out = v;
	return 0;
}

static int template_number(const cJSON *obj, const char *section, const char *key, uint64_t max,
			   uint64_t *out, char *err, size_t errlen)
{
	const cJSON *v = member(obj, key);
	const char *str;
	char why[300];
	if (!v)
		return serde_fail(obj, AT_END, section, key, err, errlen, "missing field `%s`", key);
	int ret = template_string(v, section, key, &str, err, errlen);
	if (!ret && cpu_number_parse(str, max, out, why, sizeof(why)))
		ret = template_fault(v, section, key, why, err, errlen);
	return ret;
}

static int template_bitmap(const cJSON *obj, const char *section, unsigned bits, uint64_t *filter,
			   uint64_t *value, char *err, size_t errlen)
{
	const cJSON *v = member(obj, "bitmap");
	const char *str;
	char why[300];
	if (!v)
		return serde_fail(obj, AT_END, section, "bitmap", err, errlen, "missing field `bitmap`");
	int ret = template_string(v, section, "bitmap", &str, err, errlen);
	if (!ret && cpu_bitmap_parse(str, bits, filter, value, why, sizeof(why)))
		ret = template_fault(v, section, "bitmap", why, err, errlen);
	return ret;
}

int config_json_cpu_template(const cJSON *obj, struct cpu_template *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "kvm_capabilities", "cpuid_modifiers", "msr_modifiers", NULL };
	static const char *const regs[] = { "eax", "ebx", "ecx", "edx" };
	const char *sec = "cpu-config";
	const cJSON *caps, *cpuid, *msrs;
	char why[300];
	int ret;
	memset(out, 0, sizeof(*out));
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = template_list(obj, sec, "kvm_capabilities", &caps, err, errlen)) ||
	    (ret = template_list(obj, sec, "cpuid_modifiers", &cpuid, err, errlen)) ||
	    (ret = template_list(obj, sec, "msr_modifiers", &msrs, err, errlen)))
		return ret;
	for (const cJSON *c = caps ? caps->child : NULL; c; c = c->next) {
		const char *str;
		if ((ret = template_string(c, sec, "kvm_capabilities", &str, err, errlen)))
			return ret;
		if (out->ncaps == CPU_TEMPLATE_MAX_CAPS)
			return fail(err, errlen, "%s.kvm_capabilities: more than %d", sec, CPU_TEMPLATE_MAX_CAPS);
		if (cpu_kvm_cap_parse(str, &out->caps[out->ncaps++], why, sizeof(why)))
			return template_fault(c, sec, "kvm_capabilities", why, err, errlen);
	}
	/* Members other than these are ignored, as Firecracker's
	 * deserializer ignores them (only the top level refuses them). */
	for (const cJSON *l = cpuid ? cpuid->child : NULL; l; l = l->next) {
		const char *lsec = "cpu-config.cpuid_modifiers";
		uint64_t leaf, subleaf, flags;
		bool present;
		const cJSON *mods = NULL;
		if (!cJSON_IsObject(l))
			return invalid_type(l, lsec, NULL, "struct CpuidLeafModifier", err, errlen);
		if ((ret = template_number(l, lsec, "leaf", UINT32_MAX, &leaf, err, errlen)) ||
		    (ret = template_number(l, lsec, "subleaf", UINT32_MAX, &subleaf, err, errlen)))
			return ret;
		if (!member(l, "flags"))
			return serde_fail(l, AT_END, lsec, "flags", err, errlen, "missing field `flags`");
		if ((ret = get_uint(l, lsec, "flags", "u32", 0, UINT32_MAX, &flags, &present, err, errlen)))
			return ret;
		if (!present)
			return invalid_type(member(l, "flags"), lsec, "flags", "u32", err, errlen);
		if ((ret = template_entry_list(l, lsec, "modifiers", &mods, err, errlen)))
			return ret;
		struct cpuid_modifier base = { (uint32_t)leaf, (uint32_t)subleaf, (uint32_t)flags, CPUID_REG_NONE, 0, 0 };
		if (!mods->child) {
			if (out->ncpuid == CPU_TEMPLATE_MAX_CPUID)
				return fail(err, errlen, "%s: more than %d register modifiers", lsec, CPU_TEMPLATE_MAX_CPUID);
			out->cpuid[out->ncpuid++] = base;
		}
		for (const cJSON *m = mods->child; m; m = m->next) {
			const char *rsec = "cpu-config.cpuid_modifiers.modifiers";
			const char *reg;
			uint64_t filter, value;
			if (!cJSON_IsObject(m))
				return invalid_type(m, rsec, NULL, "struct CpuidRegisterModifier", err, errlen);
			if (!member(m, "register"))
				return serde_fail(m, AT_END, rsec, "register", err, errlen, "missing field `register`");
			if ((ret = template_string(member(m, "register"), rsec, "register", &reg, err, errlen)))
				return ret;
			int r = -1;
			for (int i = 0; i < 4; i++)
				if (strcmp(reg, regs[i]) == 0)
					r = i;
			if (r < 0)
				return template_fault(member(m, "register"), rsec, "register",
						      "Invalid CPUID register. Must be one of [eax, ebx, ecx, edx]", err, errlen);
			if ((ret = template_bitmap(m, rsec, 32, &filter, &value, err, errlen)))
				return ret;
			if (out->ncpuid == CPU_TEMPLATE_MAX_CPUID)
				return fail(err, errlen, "%s: more than %d register modifiers", lsec, CPU_TEMPLATE_MAX_CPUID);
			struct cpuid_modifier *cm = &out->cpuid[out->ncpuid++];
			*cm = base;
			cm->reg = (enum cpuid_reg)r;
			cm->filter = (uint32_t)filter;
			cm->value = (uint32_t)value;
		}
	}
	for (const cJSON *m = msrs ? msrs->child : NULL; m; m = m->next) {
		const char *msec = "cpu-config.msr_modifiers";
		uint64_t addr;
		if (!cJSON_IsObject(m))
			return invalid_type(m, msec, NULL, "struct RegisterModifier", err, errlen);
		if (out->nmsrs == CPU_TEMPLATE_MAX_MSRS)
			return fail(err, errlen, "%s: more than %d", msec, CPU_TEMPLATE_MAX_MSRS);
		struct msr_modifier *mm = &out->msrs[out->nmsrs++];
		if ((ret = template_number(m, msec, "addr", UINT32_MAX, &addr, err, errlen)) ||
		    (ret = template_bitmap(m, msec, 64, &mm->filter, &mm->value, err, errlen)))
			return ret;
		mm->addr = (uint32_t)addr;
	}
	return 0;
}

static int get_bucket(const cJSON *obj, const char *section, const char *key,
		      struct token_bucket_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "size", "one_time_burst", "refill_time", NULL };
	const cJSON *b = field(obj, key);
	char sec[96];
	snprintf(sec, sizeof(sec), "%s.%s", section, key);
	memset(out, 0, sizeof(*out));
	if (!b)
		return 0;
	int ret;
	uint64_t v;
	bool present;
	if ((ret = check_keys(b, sec, keys, err, errlen)))
		return ret;
	if ((ret = get_uint(b, sec, "size", "u64", 0, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	if (!present)
		return missing(b, sec, "size", "u64", err, errlen);
	out->size = v;
	if ((ret = get_uint(b, sec, "one_time_burst", "u64", 0, UINT64_MAX, &v, &present, err, errlen)))
		return ret;
	out->one_time_burst = present ? v : 0;
	if ((ret = get_uint(b, sec, "refill_time", "u64", 0, UINT64_MAX / 1000000, &v, &present, err, errlen)))
		return ret;
	if (!present)
		return missing(b, sec, "refill_time", "u64", err, errlen);
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
	static const char *const keys[] = { "drive_id", "partuuid", "is_root_device", "cache_type",
		"is_read_only", "path_on_host", "rate_limiter", "io_engine", "socket", NULL };
	static const char *const caches[] = { "Unsafe", "Writeback", NULL };
	static const char *const engines[] = { "Async", "Sync", NULL };
	const char *sec = "drives";
	struct drive_config d;
	memset(&d, 0, sizeof(d));
	int ret, which;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_string(obj, sec, "drive_id", d.drive_id, sizeof(d.drive_id), true, NULL, err, errlen)) ||
	    (ret = check_id(sec, "drive_id", d.drive_id, err, errlen)))
		return ret;
	if (field(obj, "socket"))
		return fail(err, errlen, "drives.socket: vhost-user drives are not supported by ember");
	if ((ret = get_string(obj, sec, "path_on_host", d.path_on_host, sizeof(d.path_on_host), true,
			      NULL, err, errlen)) ||
	    (ret = get_bool(obj, sec, "is_root_device", &d.is_root_device, err, errlen)) ||
	    (ret = get_bool(obj, sec, "is_read_only", &d.is_read_only, err, errlen)) ||
	    (ret = get_string(obj, sec, "partuuid", d.partuuid, sizeof(d.partuuid), false, NULL, err, errlen)))
		return ret;
	if (!d.path_on_host[0])
		return fail(err, errlen, "drives.path_on_host: empty");
	if (!field(obj, "is_root_device"))
		return missing(obj, sec, "is_root_device", "a boolean", err, errlen);
	which = CACHE_UNSAFE;
	if ((ret = config_json_variant(obj, sec, "cache_type", caches, false, &which, err, errlen)))
		return ret;
	d.cache_type = which ? CACHE_WRITEBACK : CACHE_UNSAFE;
	which = 0;
	if ((ret = config_json_variant(obj, sec, "io_engine", engines, false, &which, err, errlen)))
		return ret;
	d.io_engine = which ? IO_ENGINE_SYNC : IO_ENGINE_ASYNC;
	if ((ret = config_json_rate_limiter(field(obj, "rate_limiter"), "drives.rate_limiter",
					    &d.rate_limiter, err, errlen)))
		return ret;
	*out = d;
	return 0;
}

int config_json_pmem(const cJSON *obj, struct pmem_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "id", "path_on_host", "root_device", "read_only",
		"rate_limiter", NULL };
	const char *sec = "pmem";
	struct pmem_config p;
	memset(&p, 0, sizeof(p));
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_string(obj, sec, "id", p.id, sizeof(p.id), true, NULL, err, errlen)) ||
	    (ret = get_string(obj, sec, "path_on_host", p.path_on_host, sizeof(p.path_on_host), true,
			      NULL, err, errlen)) ||
	    (ret = check_id(sec, "id", p.id, err, errlen)) ||
	    (ret = get_bool(obj, sec, "root_device", &p.root_device, err, errlen)) ||
	    (ret = get_bool(obj, sec, "read_only", &p.read_only, err, errlen)) ||
	    (ret = config_json_rate_limiter(field(obj, "rate_limiter"), "pmem.rate_limiter",
					    &p.rate_limiter, err, errlen)))
		return ret;
	if (!p.path_on_host[0])
		return fail(err, errlen, "pmem.path_on_host: empty");
	*out = p;
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
	static const char *const keys[] = { "iface_id", "host_dev_name", "guest_mac", "mtu",
		"rx_rate_limiter", "tx_rate_limiter", NULL };
	const char *sec = "network-interfaces";
	struct net_config n;
	memset(&n, 0, sizeof(n));
	char mac[32];
	uint64_t mtu = 0;
	int ret;
	/* Any u16 here; the device refuses one outside 68-65535 (as Firecracker). */
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_uint(obj, sec, "mtu", "u16", 0, UINT16_MAX, &mtu, &n.has_mtu, err, errlen)) ||
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
	n.mtu = (uint16_t)mtu;
	if ((ret = config_json_rate_limiter(field(obj, "rx_rate_limiter"),
					    "network-interfaces.rx_rate_limiter", &n.rx_rate_limiter,
					    err, errlen)) ||
	    (ret = config_json_rate_limiter(field(obj, "tx_rate_limiter"),
					    "network-interfaces.tx_rate_limiter", &n.tx_rate_limiter,
					    err, errlen)))
		return ret;
	*out = n;
	return 0;
}

int config_json_vsock(const cJSON *obj, struct vsock_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "vsock_id", "guest_cid", "uds_path", NULL };
	const char *sec = "vsock";
	struct vsock_config v = { .set = true };
	uint64_t cid;
	bool present;
	int ret;
	char ignored[CONFIG_ID_MAX];
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_uint(obj, sec, "guest_cid", "u32", 3, UINT32_MAX - 1, &cid, &present, err, errlen)))
		return ret;
	if (!present)
		return missing(obj, sec, "guest_cid", "u32", err, errlen);
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

int config_json_balloon(const cJSON *obj, struct balloon_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "amount_mib", "deflate_on_oom", "stats_polling_interval_s",
		"free_page_hinting", "free_page_reporting", NULL };
	const char *sec = "balloon";
	struct balloon_config b = { .set = true };
	uint64_t amount = 0, interval = 0;
	bool present;
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_uint(obj, sec, "amount_mib", "u32", 0, UINT32_MAX, &amount, &present, err, errlen)))
		return ret;
	if (!present)
		return missing(obj, sec, "amount_mib", "u32", err, errlen);
	if (!field(obj, "deflate_on_oom"))
		return missing(obj, sec, "deflate_on_oom", "a boolean", err, errlen);
	if ((ret = get_bool(obj, sec, "deflate_on_oom", &b.deflate_on_oom, err, errlen)) ||
	    (ret = get_uint(obj, sec, "stats_polling_interval_s", "u16", 0, UINT16_MAX, &interval,
			    &present, err, errlen)) ||
	    (ret = get_bool(obj, sec, "free_page_hinting", &b.free_page_hinting, err, errlen)) ||
	    (ret = get_bool(obj, sec, "free_page_reporting", &b.free_page_reporting, err, errlen)))
		return ret;
	b.amount_mib = (uint32_t)amount;
	b.stats_polling_interval_s = (uint16_t)interval;
	*out = b;
	return 0;
}

int config_json_balloon_patch(const cJSON *obj, bool stats, uint32_t *out, char *err, size_t errlen)
{
	const char *key = stats ? "stats_polling_interval_s" : "amount_mib";
	const char *ty = stats ? "u16" : "u32";
	const char *const keys[] = { key, NULL };
	uint64_t v;
	bool present;
	int ret;
	if ((ret = check_keys(obj, "balloon", keys, err, errlen)) ||
	    (ret = get_uint(obj, "balloon", key, ty, 0, stats ? UINT16_MAX : UINT32_MAX, &v, &present,
			    err, errlen)))
		return ret;
	if (!present)
		return missing(obj, "balloon", key, ty, err, errlen);
	*out = (uint32_t)v;
	return 0;
}

int config_json_balloon_hint_start(const cJSON *obj, bool *ack_on_stop, char *err, size_t errlen)
{
	*ack_on_stop = true;
	return obj ? get_bool(obj, "balloon", "acknowledge_on_stop", ack_on_stop, err, errlen) : 0;
}

cJSON *config_json_balloon_obj(const struct balloon_config *b)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "amount_mib", b->amount_mib);
	cJSON_AddBoolToObject(o, "deflate_on_oom", b->deflate_on_oom);
	cJSON_AddNumberToObject(o, "stats_polling_interval_s", b->stats_polling_interval_s);
	cJSON_AddBoolToObject(o, "free_page_hinting", b->free_page_hinting);
	cJSON_AddBoolToObject(o, "free_page_reporting", b->free_page_reporting);
	return o;
}

int config_memory_hotplug_check(const struct memory_hotplug_config *h, char *err, size_t errlen)
{
	if (h->block_size_mib < 2)
		return fail(err, errlen, "Block size must not be lower than 2 MiB");
	if (h->block_size_mib & (h->block_size_mib - 1))
		return fail(err, errlen, "Block size must be a power of 2");
	if (h->slot_size_mib < 128)
		return fail(err, errlen, "Slot size must not be lower than 128 MiB");
	if (h->slot_size_mib % h->block_size_mib)
		return fail(err, errlen, "Slot size must be a multiple of block size (%u MiB)", h->block_size_mib);
	if (h->total_size_mib < h->slot_size_mib)
		return fail(err, errlen, "Total size must not be lower than slot size (%u MiB)", h->slot_size_mib);
	if (h->total_size_mib % h->slot_size_mib)
		return fail(err, errlen, "Total size must be a multiple of slot size (%u MiB)", h->slot_size_mib);
	return 0;
}

int config_json_memory_hotplug(const cJSON *obj, struct memory_hotplug_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "total_size_mib", "block_size_mib", "slot_size_mib", NULL };
	const char *sec = "memory-hotplug";
	uint64_t total = 0, block = 2, slot = 128;
	bool present;
	int ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = get_uint(obj, sec, "total_size_mib", "u32", 0, UINT32_MAX, &total, &present, err, errlen)))
		return ret;
	if (!present)
		return missing(obj, sec, "total_size_mib", "u32", err, errlen);
	if ((ret = get_uint(obj, sec, "block_size_mib", "u32", 0, UINT32_MAX, &block, &present, err, errlen)) ||
	    (ret = get_uint(obj, sec, "slot_size_mib", "u32", 0, UINT32_MAX, &slot, &present, err, errlen)))
		return ret;
	struct memory_hotplug_config h;
	memset(&h, 0, sizeof(h)); /* padding too: a snapshot's config is compared whole */
	h.set = true;
	h.total_size_mib = (uint32_t)total;
	h.block_size_mib = (uint32_t)block;
	h.slot_size_mib = (uint32_t)slot;
	char why[160];
	if (config_memory_hotplug_check(&h, why, sizeof(why)))
		return fail(err, errlen, MEMORY_HOTPLUG_FAULT "%s", why);
	*out = h;
	return 0;
}

int config_json_memory_hotplug_patch(const cJSON *obj, uint32_t *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "requested_size_mib", NULL };
	uint64_t v;
	bool present;
	int ret;
	if ((ret = check_keys(obj, "memory-hotplug", keys, err, errlen)) ||
	    (ret = get_uint(obj, "memory-hotplug", "requested_size_mib", "u32", 0, UINT32_MAX, &v, &present, err,
			    errlen)))
		return ret;
	if (!present)
		return missing(obj, "memory-hotplug", "requested_size_mib", "u32", err, errlen);
	*out = (uint32_t)v;
	return 0;
}

cJSON *config_json_memory_hotplug_obj(const struct memory_hotplug_config *h)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "total_size_mib", h->total_size_mib);
	cJSON_AddNumberToObject(o, "block_size_mib", h->block_size_mib);
	cJSON_AddNumberToObject(o, "slot_size_mib", h->slot_size_mib);
	return o;
}

int config_json_mmds(const cJSON *obj, struct mmds_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "version", "network_interfaces", "ipv4_address", "imds_compat", NULL };
	static const char *const versions[] = { "V1", "V2", NULL };
	const char *sec = "mmds-config";
	struct mmds_config m = { .set = true, .version = MMDS_V1, .ipv4 = MMDS_IPV4_DEFAULT };
	int version = 0, ret;
	if ((ret = check_keys(obj, sec, keys, err, errlen)) ||
	    (ret = config_json_variant(obj, sec, "version", versions, false, &version, err, errlen)) ||
	    (ret = get_bool(obj, sec, "imds_compat", &m.imds_compat, err, errlen)))
		return ret;
	m.version = version ? MMDS_V2 : MMDS_V1;
	const cJSON *ifs = field(obj, "network_interfaces");
	if (!ifs)
		return missing(obj, sec, "network_interfaces", "a sequence", err, errlen);
	if (!cJSON_IsArray(ifs))
		return invalid_type(ifs, sec, "network_interfaces", "a sequence", err, errlen);
	for (const cJSON *it = ifs->child; it; it = it->next) {
		if (!cJSON_IsString(it))
			return invalid_type(it, sec, "network_interfaces", "a string", err, errlen);
		if (m.nifaces == CONFIG_MAX_NETS)
			return fail(err, errlen, "%s.network_interfaces: more than %d", sec, CONFIG_MAX_NETS);
		if (strlen(it->valuestring) >= sizeof(m.ifaces[0]))
			return fail(err, errlen, "%s.network_interfaces: an id longer than %zu bytes", sec,
				    sizeof(m.ifaces[0]) - 1);
		strcpy(m.ifaces[m.nifaces++], it->valuestring);
	}
	const cJSON *ip = field(obj, "ipv4_address");
	if (ip) {
		struct in_addr a;
		if (!cJSON_IsString(ip))
			return invalid_type(ip, sec, "ipv4_address", "IPv4 address", err, errlen);
		if (inet_pton(AF_INET, ip->valuestring, &a) != 1)
			return serde_fail(ip, AT_VALUE, sec, "ipv4_address", err, errlen, "invalid IPv4 address syntax");
		m.ipv4 = ntohl(a.s_addr);
	}
	*out = m;
	return 0;
}

int config_json_entropy(const cJSON *obj, struct entropy_config *out, char *err, size_t errlen)
{
	static const char *const keys[] = { "rate_limiter", NULL };
	struct entropy_config e = { .set = true };
	int ret;
	if ((ret = check_keys(obj, "entropy", keys, err, errlen)) ||
	    (ret = config_json_rate_limiter(field(obj, "rate_limiter"), "entropy.rate_limiter",
					    &e.rate_limiter, err, errlen)))
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
	if (field(obj, "show_level")) {
		if ((ret = get_bool(obj, "logger", "show_level", &b, err, errlen)))
			return ret;
		c.show_level = b;
	}
	if (field(obj, "show_log_origin")) {
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

/* Firecracker's shape: every optional field is there, null when unset. */
static void add_bucket(cJSON *obj, const char *key, const struct token_bucket_config *b)
{
	if (!b->size) {
		cJSON_AddNullToObject(obj, key);
		return;
	}
	cJSON *o = cJSON_AddObjectToObject(obj, key);
	cJSON_AddNumberToObject(o, "size", (double)b->size);
	if (b->one_time_burst)
		cJSON_AddNumberToObject(o, "one_time_burst", (double)b->one_time_burst);
	else
		cJSON_AddNullToObject(o, "one_time_burst");
	cJSON_AddNumberToObject(o, "refill_time", (double)b->refill_time_ms);
}

static void add_rate_limiter(cJSON *obj, const char *key, const struct ratelimiter_config *rl)
{
	if (!rl->bandwidth.size && !rl->ops.size) {
		cJSON_AddNullToObject(obj, key);
		return;
	}
	cJSON *o = cJSON_AddObjectToObject(obj, key);
	add_bucket(o, "bandwidth", &rl->bandwidth);
	add_bucket(o, "ops", &rl->ops);
}

static void add_string_or_null(cJSON *obj, const char *key, bool set, const char *value)
{
	if (set)
		cJSON_AddStringToObject(obj, key, value);
	else
		cJSON_AddNullToObject(obj, key);
}

cJSON *config_json_mem_backend_obj(enum mem_kind kind, const char *path)
{
	if (kind != MEM_KIND_FILE)
		return cJSON_CreateString(kind == MEM_KIND_MEMFD ? "memfd" : "anonymous");
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "file", path);
	return o;
}

cJSON *config_json_machine_obj(const struct machine_config *m)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "vcpu_count", m->vcpu_count);
	cJSON_AddNumberToObject(o, "mem_size_mib", (double)m->mem_size_mib);
	cJSON_AddBoolToObject(o, "smt", m->smt);
	/* Only a static template, as Firecracker (a custom one shows as none). */
	if (m->cpu_template != CPU_TEMPLATE_NONE && m->cpu_template != CPU_TEMPLATE_CUSTOM)
		cJSON_AddStringToObject(o, "cpu_template", cpu_template_name(m->cpu_template));
	cJSON_AddBoolToObject(o, "track_dirty_pages", m->track_dirty_pages);
	cJSON_AddStringToObject(o, "huge_pages", config_huge_pages_name(m->huge_pages));
	/* ember's own key, shown only when on: Firecracker's shape otherwise. */
	if (m->ember_ksm)
		cJSON_AddBoolToObject(o, "ember_ksm", true);
	if (m->mem_kind != MEM_KIND_ANON)
		cJSON_AddItemToObject(o, "ember_mem_backend", config_json_mem_backend_obj(m->mem_kind, m->mem_path));
	if (m->has_numa_node)
		cJSON_AddNumberToObject(o, "ember_numa_node", m->numa_node);
	return o;
}

cJSON *config_json_vm_obj(const struct vmm_config *cfg)
{
	cJSON *root = cJSON_CreateObject();
	if (cfg->balloon.set)
		cJSON_AddItemToObject(root, "balloon", config_json_balloon_obj(&cfg->balloon));
	else
		cJSON_AddNullToObject(root, "balloon");
	cJSON *drives = cJSON_AddArrayToObject(root, "drives");
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		const struct drive_config *d = &cfg->drives[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "drive_id", d->drive_id);
		add_string_or_null(o, "partuuid", d->partuuid[0], d->partuuid);
		cJSON_AddBoolToObject(o, "is_root_device", d->is_root_device);
		cJSON_AddStringToObject(o, "cache_type", d->cache_type == CACHE_WRITEBACK ? "Writeback" : "Unsafe");
		cJSON_AddBoolToObject(o, "is_read_only", d->is_read_only);
		cJSON_AddStringToObject(o, "path_on_host", d->path_on_host);
		add_rate_limiter(o, "rate_limiter", &d->rate_limiter);
		cJSON_AddStringToObject(o, "io_engine", d->io_engine == IO_ENGINE_SYNC ? "Sync" : "Async");
		cJSON_AddNullToObject(o, "socket");
		cJSON_AddItemToArray(drives, o);
	}
	if (cfg->boot.set) {
		cJSON *b = cJSON_AddObjectToObject(root, "boot-source");
		cJSON_AddStringToObject(b, "kernel_image_path", cfg->boot.kernel_image_path);
		add_string_or_null(b, "initrd_path", cfg->boot.initrd_path[0], cfg->boot.initrd_path);
		add_string_or_null(b, "boot_args", cfg->boot.has_boot_args, cfg->boot.boot_args);
	} else {
		cJSON_AddNullToObject(root, "boot-source");
	}
	cJSON_AddNullToObject(root, "cpu-config");
	/* As Firecracker: null however the logger and metrics were set up
	 * (they belong to the process, not to the VM). */
	cJSON_AddNullToObject(root, "logger");
	cJSON_AddItemToObject(root, "machine-config", config_json_machine_obj(&cfg->machine));
	cJSON_AddNullToObject(root, "metrics");
	if (cfg->mmds.set) {
		/* As Firecracker shows it: the interfaces in their device order. */
		const struct mmds_config *m = &cfg->mmds;
		cJSON *o = cJSON_AddObjectToObject(root, "mmds-config");
		cJSON_AddStringToObject(o, "version", m->version == MMDS_V2 ? "V2" : "V1");
		cJSON *ifs = cJSON_AddArrayToObject(o, "network_interfaces");
		for (unsigned i = 0; i < cfg->nnets; i++)
			for (unsigned j = 0; j < m->nifaces; j++)
				if (strcmp(cfg->nets[i].iface_id, m->ifaces[j]) == 0) {
					cJSON_AddItemToArray(ifs, cJSON_CreateString(m->ifaces[j]));
					break;
				}
		char ip[INET_ADDRSTRLEN];
		struct in_addr a = { .s_addr = htonl(m->ipv4) };
		inet_ntop(AF_INET, &a, ip, sizeof(ip));
		cJSON_AddStringToObject(o, "ipv4_address", ip);
		cJSON_AddBoolToObject(o, "imds_compat", m->imds_compat);
	} else {
		cJSON_AddNullToObject(root, "mmds-config");
	}
	cJSON *nets = cJSON_AddArrayToObject(root, "network-interfaces");
	for (unsigned i = 0; i < cfg->nnets; i++) {
		const struct net_config *n = &cfg->nets[i];
		cJSON *o = cJSON_CreateObject();
		char mac[18];
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
			 n->guest_mac[1], n->guest_mac[2], n->guest_mac[3], n->guest_mac[4],
			 n->guest_mac[5]);
		cJSON_AddStringToObject(o, "iface_id", n->iface_id);
		cJSON_AddStringToObject(o, "host_dev_name", n->host_dev_name);
		add_string_or_null(o, "guest_mac", n->has_mac, mac);
		if (n->has_mtu)
			cJSON_AddNumberToObject(o, "mtu", n->mtu);
		add_rate_limiter(o, "rx_rate_limiter", &n->rx_rate_limiter);
		add_rate_limiter(o, "tx_rate_limiter", &n->tx_rate_limiter);
		cJSON_AddItemToArray(nets, o);
	}
	if (cfg->vsock.set) {
		cJSON *v = cJSON_AddObjectToObject(root, "vsock");
		cJSON_AddNumberToObject(v, "guest_cid", cfg->vsock.guest_cid);
		cJSON_AddStringToObject(v, "uds_path", cfg->vsock.uds_path);
	} else {
		cJSON_AddNullToObject(root, "vsock");
	}
	if (cfg->entropy.set)
		add_rate_limiter(cJSON_AddObjectToObject(root, "entropy"), "rate_limiter",
				 &cfg->entropy.rate_limiter);
	else
		cJSON_AddNullToObject(root, "entropy");
	cJSON *pmems = cJSON_AddArrayToObject(root, "pmem");
	for (unsigned i = 0; i < cfg->npmems; i++) {
		const struct pmem_config *p = &cfg->pmems[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "id", p->id);
		cJSON_AddStringToObject(o, "path_on_host", p->path_on_host);
		cJSON_AddBoolToObject(o, "root_device", p->root_device);
		cJSON_AddBoolToObject(o, "read_only", p->read_only);
		add_rate_limiter(o, "rate_limiter", &p->rate_limiter);
		cJSON_AddItemToArray(pmems, o);
	}
	if (cfg->memory_hotplug.set)
		cJSON_AddItemToObject(root, "memory-hotplug", config_json_memory_hotplug_obj(&cfg->memory_hotplug));
	else
		cJSON_AddNullToObject(root, "memory-hotplug");
	return root;
}

cJSON *config_json_state_obj(const struct vmm_config *cfg)
{
	cJSON *root = config_json_vm_obj(cfg);
	if (root && cfg->serial.set) {
		cJSON *s = cJSON_AddObjectToObject(root, "serial");
		if (cfg->serial.serial_out_path[0])
			cJSON_AddStringToObject(s, "serial_out_path", cfg->serial.serial_out_path);
		add_bucket(s, "rate_limiter", &cfg->serial.rate_limiter);
	}
	return root;
}

/* Cross-device rules: unique ids and tap names, one root drive. The
 * messages for the root drive, the MAC and the tap are Firecracker's. */
int config_check_devices(const struct vmm_config *cfg, char *err, size_t errlen)
{
	if (cfg->balloon.set && cfg->balloon.amount_mib > cfg->machine.mem_size_mib)
		return fail(err, errlen, BALLOON_TOO_LARGE);
	unsigned roots = 0;
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		roots += cfg->drives[i].is_root_device;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(cfg->drives[i].drive_id, cfg->drives[j].drive_id) == 0)
				return fail(err, errlen, "drives.drive_id: \"%s\" used twice", cfg->drives[i].drive_id);
	}
	if (roots > 1)
		return fail(err, errlen, "A root block device already exists!");
	for (unsigned i = 0; i < cfg->npmems; i++) {
		for (unsigned j = 0; j < i; j++)
			if (strcmp(cfg->pmems[i].id, cfg->pmems[j].id) == 0)
				return fail(err, errlen, "pmem.id: \"%s\" used twice", cfg->pmems[i].id);
		if (!cfg->pmems[i].root_device)
			continue;
		if (roots)
			return fail(err, errlen, "Attempt to add pmem as a root device while the root device "
				    "defined as a block device");
		if (config_pmem_root(cfg) != (int)i)
			return fail(err, errlen, "A root pmem device already exist");
	}
	for (unsigned i = 0; i < cfg->nnets; i++) {
		/* Firecracker checks an interface's MAC before it opens its tap. */
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(cfg->nets[i].iface_id, cfg->nets[j].iface_id) == 0)
				return fail(err, errlen, "network-interfaces.iface_id: \"%s\" used twice",
					    cfg->nets[i].iface_id);
			if (cfg->nets[i].has_mac && cfg->nets[j].has_mac &&
			    memcmp(cfg->nets[i].guest_mac, cfg->nets[j].guest_mac, 6) == 0) {
				const uint8_t *m = cfg->nets[i].guest_mac;
				fail(err, errlen, "The MAC address is already in use: %02x:%02x:%02x:%02x:%02x:%02x",
				     m[0], m[1], m[2], m[3], m[4], m[5]);
				return -EADDRINUSE;
			}
		}
		for (unsigned j = 0; j < i; j++)
			if (strcmp(cfg->nets[i].host_dev_name, cfg->nets[j].host_dev_name) == 0)
				return fail(err, errlen, "Could not create the network device: Open tap device failed: "
					    "Error while creating ifreq structure: %s (os error %d). Invalid TUN/TAP "
					    "Backend provided by %s. Check our documentation on setting up the network "
					    "devices.", strerror(EBUSY), EBUSY, cfg->nets[i].host_dev_name);
	}
	return 0;
}

/* Sections of Firecracker's config file that ember does not implement
 * yet: accepted when empty, refused with a clear message otherwise. */
static const char *const unsupported_sections[] = {
	NULL,
};

static bool optional_section(const char *name)
{
	static const char *const known[] = { "machine-config", "drives", "network-interfaces",
		"vsock", "entropy", "serial", "logger", "metrics", "mmds-config", "cpu-config", "pmem",
		"balloon", "memory-hotplug", NULL };
	for (const char *const *s = known; *s; s++)
		if (strcmp(name, *s) == 0)
			return true;
	for (const char *const *s = unsupported_sections; *s; s++)
		if (strcmp(name, *s) == 0)
			return true;
	return false;
}

static int parse_array(const cJSON *arr, const char *section, char *err, size_t errlen)
{
	if (!cJSON_IsArray(arr))
		return fail(err, errlen, "%s: expected a JSON array", section);
	return 0;
}

static int read_small_file(const char *what, const char *path, char **buf, size_t *len, char *err,
			   size_t errlen);

/* "cpu-config": a custom CPU template, inline or (in a config file read
 * from disk) the path of a JSON file holding one. It replaces a static
 * template that machine-config names, as Firecracker applies it after. */
static int file_cpu_config(const cJSON *v, bool allow_path, struct vmm_config *cfg, char *err, size_t errlen)
{
	int ret;
	if (cJSON_IsString(v)) {
		if (!allow_path)
			return fail(err, errlen, "cpu-config: a path is allowed only in a config file");
		char *text = NULL;
		size_t len = 0;
		if ((ret = read_small_file("cpu-config", v->valuestring, &text, &len, err, errlen)))
			return ret;
		char why[256];
		cJSON *root = config_json_parse(text, len, why, sizeof(why));
		free(text);
		if (!root)
			return fail(err, errlen, "cpu-config %s: %s", v->valuestring, why);
		ret = config_json_cpu_template(root, &cfg->cpu_custom, err, errlen);
		cJSON_Delete(root);
	} else if (cJSON_IsObject(v)) {
		ret = config_json_cpu_template(v, &cfg->cpu_custom, err, errlen);
	} else {
		return fail(err, errlen, "cpu-config: data did not match any variant of untagged enum "
			    "CustomCpuTemplateOrPath");
	}
	if (!ret)
		cfg->machine.cpu_template = CPU_TEMPLATE_CUSTOM;
	return ret;
}

static int parse_file(const char *text, size_t len, bool allow_paths, struct vmm_config *cfg, char *err,
		      size_t errlen)
{
	char why[256];
	cJSON *root = config_json_parse(text, len, why, sizeof(why));
	if (!root)
		return fail(err, errlen, "config file: %s", why);
	int ret = 0;
	const cJSON *cpu_config = NULL;
	if (!cJSON_IsObject(root)) {
		ret = fail(err, errlen, "config file: expected a JSON object at the top level");
		goto out;
	}
	for (const cJSON *it = root->child; it && !ret; it = it->next) {
		if (cJSON_IsNull(it) && optional_section(it->string)) {
			continue; /* given null: absent, as Firecracker's GET /vm/config writes it */
		} else if (strcmp(it->string, "boot-source") == 0) {
			ret = config_json_boot_source(it, &cfg->boot, err, errlen);
		} else if (strcmp(it->string, "machine-config") == 0) {
			struct machine_config m;
			unsigned fields;
			ret = config_json_machine(it, true, &m, &fields, err, errlen);
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
		} else if (strcmp(it->string, "pmem") == 0) {
			/* Entries with one id replace each other, as PUT /pmem does. */
			ret = parse_array(it, "pmem", err, errlen);
			for (const cJSON *d = it->child; d && !ret; d = d->next) {
				struct pmem_config p;
				if (!(ret = config_json_pmem(d, &p, err, errlen)))
					ret = config_pmem_put(cfg, &p, err, errlen);
			}
		} else if (strcmp(it->string, "vsock") == 0) {
			ret = config_json_vsock(it, &cfg->vsock, err, errlen);
		} else if (strcmp(it->string, "entropy") == 0) {
			ret = config_json_entropy(it, &cfg->entropy, err, errlen);
		} else if (strcmp(it->string, "balloon") == 0) {
			ret = config_json_balloon(it, &cfg->balloon, err, errlen);
		} else if (strcmp(it->string, "memory-hotplug") == 0) {
			ret = config_json_memory_hotplug(it, &cfg->memory_hotplug, err, errlen);
		} else if (strcmp(it->string, "serial") == 0) {
			ret = config_json_serial(it, &cfg->serial, err, errlen);
		} else if (strcmp(it->string, "logger") == 0) {
			ret = config_json_logger(it, &cfg->logger, err, errlen);
		} else if (strcmp(it->string, "metrics") == 0) {
			ret = config_json_metrics(it, &cfg->metrics, err, errlen);
		} else if (strcmp(it->string, "mmds-config") == 0) {
			ret = config_json_mmds(it, &cfg->mmds, err, errlen);
		} else if (strcmp(it->string, "cpu-config") == 0) {
			cpu_config = it;
		} else {
			bool known = false;
			for (const char *const *s = unsupported_sections; *s; s++)
				if (strcmp(it->string, *s) == 0)
					known = true;
			if (!known)
				ret = fail(err, errlen, "%s: unknown section", it->string);
			else if (!(cJSON_IsArray(it) && cJSON_GetArraySize(it) == 0))
				ret = fail(err, errlen, "%s: not supported by ember yet", it->string);
		}
	}
	if (!ret && cpu_config)
		ret = file_cpu_config(cpu_config, allow_paths, cfg, err, errlen);
	if (!ret && !cfg->boot.set)
		ret = fail(err, errlen, "boot-source: missing (the kernel to boot)");
	if (!ret)
		ret = config_check_devices(cfg, err, errlen);
	/* Against the interfaces, wherever the sections were in the file. */
	if (!ret && cfg->mmds.set)
		ret = mmds_config_check(&cfg->mmds, cfg, err, errlen);
out:
	cJSON_Delete(root);
	return ret;
}

int config_json_file(const char *text, size_t len, struct vmm_config *cfg, char *err, size_t errlen)
{
	return parse_file(text, len, false, cfg, err, errlen);
}

/* Read path (a regular file of at most CONFIG_FILE_MAX bytes, opened
 * without waiting) into *buf (malloc'd, NUL-terminated). */
static int read_small_file(const char *what, const char *path, char **buf, size_t *len, char *err,
			   size_t errlen)
{
	int fd = hostfile_open(what, path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return fd;
	struct stat st;
	int ret = 0;
	char *b = NULL;
	if (fstat(fd, &st) < 0) {
		ret = fail(err, errlen, "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		ret = fail(err, errlen, "%s %s: larger than %d bytes", what, path, CONFIG_FILE_MAX);
		goto out;
	}
	if (!(b = malloc((size_t)st.st_size + 1))) {
		ret = fail(err, errlen, "%s %s: out of memory", what, path);
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = fail(err, errlen, "%s %s: read failed", what, path);
			goto out;
		}
		got += (size_t)n;
	}
	b[got] = 0;
	*buf = b;
	*len = got;
	b = NULL;
out:
	free(b);
	close(fd);
	return ret;
}

int config_load_file(const char *path, struct vmm_config *cfg, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int ret = read_small_file("config file", path, &buf, &len, err, errlen);
	if (!ret)
		ret = parse_file(buf, len, true, cfg, err, errlen);
	free(buf);
	return ret;
}
