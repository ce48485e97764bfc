#include "mmds.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../api/config_json.h"
#include "../hostfile.h"
#include "token.h"

struct mmds_metrics mmds_metrics;

struct mmds {
	cJSON *store;              /* NULL until the first PUT: JSON null */
	size_t limit;
	struct mmds_config cfg;
	struct token_authority tokens;
};

/* Firecracker's guest-side request buffer: a request (head and body)
 * that does not fit is dropped with its connection. */
#define MMDS_REQUEST_LIMIT 2500
/* Room for a response's status line and headers. */
#define RESPONSE_HEAD_MAX 256

#define PATH_TO_TOKEN "/latest/api/token"

/* ---- the store ------------------------------------------------------ */

struct mmds *mmds_new(size_t size_limit)
{
	struct mmds *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->limit = size_limit ? size_limit : MMDS_SIZE_LIMIT_DEFAULT;
	m->cfg.version = MMDS_V1;
	m->cfg.ipv4 = MMDS_IPV4_DEFAULT;
	if (token_authority_init(&m->tokens)) {
		free(m);
		return NULL;
	}
	return m;
}

void mmds_free(struct mmds *m)
{
	if (!m)
		return;
	cJSON_Delete(m->store);
	free(m);
}

void mmds_set_config(struct mmds *m, const struct mmds_config *c)
{
	m->cfg = *c;
}

const struct mmds_config *mmds_get_config(const struct mmds *m)
{
	return &m->cfg;
}

size_t mmds_size_limit(const struct mmds *m)
{
	return m->limit;
}

bool mmds_initialized(const struct mmds *m)
{
	return m->store != NULL;
}

/* Objects keep their keys in byte order, as Firecracker's store does: the
 * JSON it answers and its IMDS listings come out sorted. */
static void sort_keys(cJSON *v)
{
	if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
		return;
	for (cJSON *c = v->child; c; c = c->next)
		sort_keys(c);
	if (!cJSON_IsObject(v))
		return;
	/* Insertion sort on the list (stable; objects are small). */
	cJSON *sorted = NULL;
	for (cJSON *c = v->child, *next; c; c = next) {
		next = c->next;
		cJSON **p = &sorted, *prev = NULL;
		while (*p && strcmp((*p)->string, c->string) <= 0) {
			prev = *p;
			p = &(*p)->next;
		}
		c->next = *p;
		c->prev = prev;
		if (*p)
			(*p)->prev = c;
		*p = c;
	}
	/* cJSON keeps the last element in the head's prev. */
	if (sorted) {
		cJSON *last = sorted;
		while (last->next)
			last = last->next;
		sorted->prev = last;
	}
	v->child = sorted;
}

/* The compact JSON's length, or SIZE_MAX if it cannot be printed. */
static size_t json_size(const cJSON *v)
{
	char *s = cJSON_PrintUnformatted(v);
	size_t n = s ? strlen(s) : SIZE_MAX;
	free(s);
	return n;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static cJSON *parse_doc(const char *json, size_t len, char *err, size_t errlen)
{
	char why[256];
	cJSON *v = config_json_parse(json, len, why, sizeof(why));
	if (!v)
		fail(err, errlen, "%s", why);
	else
		sort_keys(v);
	return v;
}

#define LIMIT_FAULT "MMDS limit exceeded error: The MMDS patch request doesn't fit."

/* Take v as the store if it fits (v is consumed either way). */
static int replace(struct mmds *m, cJSON *v, char *err, size_t errlen)
{
	if (json_size(v) > m->limit) {
		cJSON_Delete(v);
		fail(err, errlen, LIMIT_FAULT);
		return -EFBIG;
	}
	cJSON_Delete(m->store);
	m->store = v;
	return 0;
}

int mmds_put(struct mmds *m, const char *json, size_t len, char *err, size_t errlen)
{
	cJSON *v = parse_doc(json, len, err, errlen);
	return v ? replace(m, v, err, errlen) : -EINVAL;
}

/* RFC 7396: an object patches member by member (null removes one), any
 * other value replaces the target. Returns the patched target (target
 * is consumed; patch is not), or NULL on ENOMEM. */
static cJSON *merge_patch(cJSON *target, const cJSON *patch)
{
	if (!cJSON_IsObject(patch)) {
		cJSON_Delete(target);
		return cJSON_Duplicate(patch, true);
	}
	if (!cJSON_IsObject(target)) {
		cJSON_Delete(target);
		if (!(target = cJSON_CreateObject()))
			return NULL;
	}
	for (const cJSON *p = patch->child; p; p = p->next) {
		cJSON *cur = cJSON_DetachItemFromObjectCaseSensitive(target, p->string);
		if (cJSON_IsNull(p)) {
			cJSON_Delete(cur);
			continue;
		}
		cJSON *merged = merge_patch(cur, p);
		if (!merged) {
			cJSON_Delete(target);
			return NULL;
		}
		cJSON_AddItemToObject(target, p->string, merged);
	}
	sort_keys(target);
	return target;
}

int mmds_patch(struct mmds *m, const char *json, size_t len, char *err, size_t errlen)
{
	if (!m->store) {
		fail(err, errlen, "MMDS error: The MMDS data store is not initialized.");
		return -ENOENT;
	}
	cJSON *patch = parse_doc(json, len, err, errlen);
	if (!patch)
		return -EINVAL;
	cJSON *copy = cJSON_Duplicate(m->store, true);
	cJSON *v = copy ? merge_patch(copy, patch) : NULL;
	cJSON_Delete(patch);
	if (!v) {
		fail(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return replace(m, v, err, errlen);
}

char *mmds_get(const struct mmds *m)
{
	if (!m->store || cJSON_IsNull(m->store))
		return strdup("{}"); /* null, as Firecracker's API shows it */
	return cJSON_PrintUnformatted(m->store);
}

char *mmds_store_json(const struct mmds *m)
{
	return m->store ? cJSON_PrintUnformatted(m->store) : NULL;
}

int mmds_restore_store(struct mmds *m, const char *json, size_t len, char *err, size_t errlen)
{
	if (!len) {
		cJSON_Delete(m->store);
		m->store = NULL;
		return 0;
	}
	cJSON *v = parse_doc(json, len, err, errlen);
	if (!v)
		return -EINVAL;
	if (json_size(v) > m->limit) {
		cJSON_Delete(v);
		return fail(err, errlen, "the MMDS data store (%zu bytes) is larger than this process's "
			    "--mmds-size-limit (%zu bytes)", len, m->limit);
	}
	return replace(m, v, err, errlen);
}

/* For JSON that ends too early, a deserializer's words for where it ran
 * out ("EOF while parsing an object at line 5 column 0"), which
 * Firecracker's clients see for a truncated --metadata file; else false. */
static bool eof_message(const char *t, size_t len, char *out, size_t cap)
{
	char stack[64];
	size_t depth = 0, overflow = 0;
	bool in_str = false, esc = false;
	for (size_t i = 0; i < len; i++) {
		char c = t[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			if (depth < sizeof(stack))
				stack[depth++] = c;
			else
				overflow++;
		} else if ((c == '}' || c == ']') && (overflow || depth)) {
			if (overflow)
				overflow--;
			else
				depth--;
		}
	}
	if (!in_str && !depth)
		return false;
	unsigned line = 1;
	size_t bol = 0;
	for (size_t i = 0; i < len; i++)
		if (t[i] == '\n')
			line++, bol = i + 1;
	snprintf(out, cap, "EOF while parsing %s at line %u column %zu",
		 in_str ? "a string" : stack[depth - 1] == '{' ? "an object" : "a list", line, len - bol);
	return true;
}

/* A metadata file larger than this is refused before it is read whole. */
#define METADATA_FILE_MAX (64u << 20)

int mmds_load_file(struct mmds *m, const char *path, char *err, size_t errlen)
{
	char detail[512];
	int fd = hostfile_open("--metadata", path, O_RDONLY, 0, HOSTFILE_REG | HOSTFILE_FIFO, detail,
			       sizeof(detail));
	if (fd < 0) {
		snprintf(err, errlen, "Unable to open or read from the mmds content file: %s", detail);
		return fd;
	}
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	int ret = 0;
	for (;;) {
		if (!buf) {
			ret = -ENOMEM;
			snprintf(err, errlen, "--metadata %s: out of memory", path);
			goto out;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "Unable to open or read from the mmds content file: %s: %s", path,
				 strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			if (cap >= METADATA_FILE_MAX) {
				ret = -EFBIG;
				snprintf(err, errlen, "--metadata %s: larger than %u bytes", path, METADATA_FILE_MAX);
				goto out;
			}
			char *bigger = realloc(buf, cap * 2);
			if (!bigger)
				free(buf);
			buf = bigger;
			cap *= 2;
		}
	}
	char why[256];
	ret = mmds_put(m, buf, len, why, sizeof(why));
	if (ret == -EINVAL && eof_message(buf, len, why, sizeof(why)))
		snprintf(err, errlen, "MMDS error: metadata provided not valid json: %s (%s)", why, path);
	else if (ret == -EINVAL)
		snprintf(err, errlen, "MMDS error: metadata provided not valid json (%s: %s)", path, why);
	else if (ret)
		snprintf(err, errlen, "Populating MMDS from file failed: The MMDS patch request doesn't fit. "
			 "(%s, limit %zu bytes)", path, m->limit);
out:
	free(buf);
	close(fd);
	return ret;
}

uint32_t mmds_ipv4(const struct mmds *m)
{
	return m->cfg.ipv4;
}

bool mmds_serves_iface(const struct mmds *m, const char *iface_id)
{
	for (unsigned i = 0; i < m->cfg.nifaces; i++)
		if (strcmp(m->cfg.ifaces[i], iface_id) == 0)
			return true;
	return false;
}

bool mmds_ipv4_valid(uint32_t a)
{
	/* RFC 3927 link-local, without its first and last /24. */
	return (a >> 16) == 0xa9fe && ((a >> 8) & 0xff) != 0 && ((a >> 8) & 0xff) != 0xff;
}

int mmds_config_check(const struct mmds_config *c, const struct vmm_config *cfg, char *err, size_t errlen)
{
	/* Firecracker's order and words (VmmActionError::MmdsConfig). */
	if (!mmds_ipv4_valid(c->ipv4))
		return fail(err, errlen, "MMMDS config error: The MMDS IPv4 address is not link local.");
	if (!c->nifaces)
		return fail(err, errlen, "MMMDS config error: The list of network interface IDs that allow "
			    "forwarding MMDS requests is empty.");
	for (unsigned i = 0; i < c->nifaces; i++) {
		unsigned k = 0;
		while (k < cfg->nnets && strcmp(cfg->nets[k].iface_id, c->ifaces[i]) != 0)
			k++;
		if (k == cfg->nnets)
			return fail(err, errlen, "MMMDS config error: The list of network interface IDs provided "
				    "contains at least one ID that does not correspond to any existing network "
				    "interface.");
	}
	return 0;
}

void mmds_set_size_limit(struct mmds *m, size_t limit)
{
	m->limit = limit ? limit : MMDS_SIZE_LIMIT_DEFAULT;
}

/* ---- answering the guest -------------------------------------------- */

size_t mmds_request_limit(void)
{
	return MMDS_REQUEST_LIMIT;
}

size_t mmds_response_limit(const struct mmds *m)
{
	/* The largest body is the whole store (or a fault naming a URI,
	 * which a request bounds). */
	return m->limit + MMDS_REQUEST_LIMIT + RESPONSE_HEAD_MAX;
}

struct text {
	const char *p;
	size_t n;
};

static bool text_is(struct text t, const char *s)
{
	return t.n == strlen(s) && memcmp(t.p, s, t.n) == 0;
}

static bool text_is_nocase(struct text t, const char *s)
{
	return t.n == strlen(s) && strncasecmp(t.p, s, t.n) == 0;
}

static struct text trim(struct text t)
{
	while (t.n && (*t.p == ' ' || *t.p == '\t'))
		t.p++, t.n--;
	while (t.n && (t.p[t.n - 1] == ' ' || t.p[t.n - 1] == '\t'))
		t.n--;
	return t;
}

enum guest_method { GM_GET, GM_PUT, GM_OTHER };

struct guest_request {
	enum guest_method method;
	const char *version;       /* "HTTP/1.0" or "HTTP/1.1": the answer's */
	struct text path;          /* the URI's absolute path ("" if none) */
	bool accept_json;
	struct text token_name, token;   /* the first token header */
	struct text ttl_name, ttl;       /* the first TTL header */
	struct text forwarded_name;      /* X-Forwarded-For, if present */
	size_t content_length;
};

/* The end of the head (past its empty line) within req[0..len), or 0. */
static size_t head_end(const char *req, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (req[i] != '\n')
			continue;
		if (req[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && req[i + 1] == '\r' && req[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* The next line of [*p, end) without its LF (and CR). */
static struct text next_line(const char **p, const char *end)
{
	const char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
	const char *e = nl ? nl : end;
	*p = nl ? nl + 1 : end;
	if (e > s && e[-1] == '\r')
		e--;
	return (struct text){ s, (size_t)(e - s) };
}

struct response {
	int status;
	bool json;                 /* Content-Type application/json, else text/plain */
	bool allow;                /* "Allow: GET, PUT" */
	const char *version;
	char extra[160];           /* one more header line, with its CRLF */
	char msg[MMDS_REQUEST_LIMIT + 160];
	const char *body;          /* msg unless set */
	size_t body_len;
};

__attribute__((format(printf, 3, 4)))
static void set_fault(struct response *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->status = status;
	r->body = r->msg;
	r->body_len = strlen(r->msg);
}

/* Parse the head of a complete request. On a malformed one, fills r
 * with its answer and returns false. */
static bool parse_request(const char *req, size_t hlen, struct guest_request *g, struct response *r)
{
	memset(g, 0, sizeof(*g));
	const char *p = req, *end = req + hlen;
	struct text line = next_line(&p, end);
	r->version = "HTTP/1.1";
	r->json = true; /* what a refused request's answer says it is */
	/* METHOD SP URI SP VERSION */
	const char *sp1 = memchr(line.p, ' ', line.n);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line.n - (size_t)(sp1 + 1 - line.p)) : NULL;
	if (line.n < sizeof("GET HTTP/1.0") + 1 || !sp2) {
		set_fault(r, 400, "Invalid request.");
		return false;
	}
	struct text method = { line.p, (size_t)(sp1 - line.p) };
	struct text uri = { sp1 + 1, (size_t)(sp2 - sp1 - 1) };
	struct text version = { sp2 + 1, (size_t)(line.p + line.n - sp2 - 1) };
	if (text_is(method, "GET"))
		g->method = GM_GET;
	else if (text_is(method, "PUT"))
		g->method = GM_PUT;
	else if (text_is(method, "PATCH") || text_is(method, "POST") || text_is(method, "DELETE") ||
		 text_is(method, "HEAD"))
		g->method = GM_OTHER;
	else {
		set_fault(r, 501, "Unsupported HTTP method.");
		return false;
	}
	if (!uri.n) {
		set_fault(r, 400, "Empty URI not allowed.");
		return false;
	}
	for (size_t i = 0; i < uri.n; i++)
		if ((unsigned char)uri.p[i] < 0x21 || uri.p[i] == 0x7f) {
			set_fault(r, 400, "Invalid request.");
			return false;
		}
	if (text_is(version, "HTTP/1.0"))
		g->version = "HTTP/1.0";
	else if (text_is(version, "HTTP/1.1"))
		g->version = "HTTP/1.1";
	else {
		set_fault(r, 501, "Unsupported HTTP version.");
		return false;
	}
	/* The absolute path: "http://host[:port]/path" or "/path". */
	static const char scheme[] = "http://";
	if (uri.n >= sizeof(scheme) - 1 && memcmp(uri.p, scheme, sizeof(scheme) - 1) == 0) {
		const char *host = uri.p + sizeof(scheme) - 1;
		const char *slash = memchr(host, '/', (size_t)(uri.p + uri.n - host));
		if (slash)
			g->path = (struct text){ slash, (size_t)(uri.p + uri.n - slash) };
	} else if (uri.p[0] == '/') {
		g->path = uri;
	}

	for (;;) {
		line = next_line(&p, end);
		if (!line.n)
			break;
		for (size_t i = 0; i < line.n; i++)
			if ((unsigned char)line.p[i] < 0x20 && line.p[i] != '\t') {
				set_fault(r, 400, "Invalid request.");
				return false;
			}
		const char *colon = memchr(line.p, ':', line.n);
		if (!colon) {
			set_fault(r, 400, "Invalid header. Reason: Header is incorrectly formatted. Key: %.*s",
				  (int)line.n, line.p);
			return false;
		}
		struct text raw_value = { colon + 1, (size_t)(line.p + line.n - colon - 1) };
		struct text name = trim((struct text){ line.p, (size_t)(colon - line.p) });
		struct text value = trim(raw_value);
		if (text_is_nocase(name, "Content-Length")) {
			size_t n = 0;
			bool ok = value.n > 0 && value.n <= 10;
			for (size_t i = 0; ok && i < value.n; i++)
				ok = value.p[i] >= '0' && value.p[i] <= '9';
			for (size_t i = 0; ok && i < value.n; i++)
				n = n * 10 + (size_t)(value.p[i] - '0');
			if (!ok || n > UINT32_MAX) {
				set_fault(r, 400, "Invalid header. Reason: Invalid value. Key:%.*s; Value:%.*s",
					  (int)name.n, name.p, (int)raw_value.n, raw_value.p);
				return false;
			}
			g->content_length = n;
		} else if (text_is_nocase(name, "Accept")) {
			/* Anything but JSON (e.g. "*" "/" "*") means plain text. */
			g->accept_json = text_is(value, "application/json");
		} else if (!g->token_name.n && (text_is_nocase(name, "X-metadata-token") ||
						text_is_nocase(name, "X-aws-ec2-metadata-token"))) {
			g->token_name = name;
			g->token = value;
		} else if (!g->ttl_name.n && (text_is_nocase(name, "X-metadata-token-ttl-seconds") ||
					      text_is_nocase(name, "X-aws-ec2-metadata-token-ttl-seconds"))) {
			g->ttl_name = name;
			g->ttl = value;
		} else if (!g->forwarded_name.n && text_is_nocase(name, "X-Forwarded-For")) {
			g->forwarded_name = name;
		}
	}
	return true;
}

ssize_t mmds_http_request_len(const char *req, size_t len)
{
	size_t bound = len < MMDS_REQUEST_LIMIT ? len : MMDS_REQUEST_LIMIT;
	size_t h = head_end(req, bound);
	if (!h)
		return len >= MMDS_REQUEST_LIMIT ? -EMSGSIZE : 0;
	/* Content-Length, for the framing only (parse_request checks it). */
	size_t body = 0;
	const char *p = req, *end = req + h;
	(void)next_line(&p, end);
	for (struct text line; (line = next_line(&p, end)).n;) {
		const char *colon = memchr(line.p, ':', line.n);
		if (!colon || !text_is_nocase(trim((struct text){ line.p, (size_t)(colon - line.p) }),
					      "Content-Length"))
			continue;
		struct text v = trim((struct text){ colon + 1, (size_t)(line.p + line.n - colon - 1) });
		body = 0;
		for (size_t i = 0; i < v.n && v.p[i] >= '0' && v.p[i] <= '9' && body <= MMDS_REQUEST_LIMIT; i++)
			body = body * 10 + (size_t)(v.p[i] - '0');
	}
	if (body > MMDS_REQUEST_LIMIT - h)
		return -EMSGSIZE;
	return len - h < body ? 0 : (ssize_t)(h + body);
}

/* The store value at a JSON pointer (RFC 6901), or NULL. With store
 * NULL (uninitialized) only the root exists, as JSON null. */
static const cJSON *lookup(const cJSON *store, const char *ptr, size_t n, bool *is_null_root)
{
	*is_null_root = false;
	if (n == 0) {
		*is_null_root = store == NULL;
		return store;
	}
	if (!store || ptr[0] != '/')
		return NULL;
	const cJSON *v = store;
	size_t i = 1;
	char key[MMDS_REQUEST_LIMIT];
	for (;;) {
		size_t k = 0;
		for (; i < n && ptr[i] != '/'; i++) {
			char c = ptr[i];
			if (c == '~') {
				if (i + 1 >= n || (ptr[i + 1] != '0' && ptr[i + 1] != '1'))
					return NULL;
				c = ptr[++i] == '0' ? '~' : '/';
			}
			key[k++] = c;
		}
		key[k] = '\0';
		if (cJSON_IsObject(v)) {
			const cJSON *c;
			for (c = v->child; c && strcmp(c->string, key) != 0; c = c->next)
				;
			if (!c)
				return NULL;
			v = c;
		} else if (cJSON_IsArray(v)) {
			/* Digits only, no leading zero. */
			if (!k || k > 9 || (key[0] == '0' && k > 1))
				return NULL;
			int idx = 0;
			for (size_t j = 0; j < k; j++) {
				if (key[j] < '0' || key[j] > '9')
					return NULL;
				idx = idx * 10 + (key[j] - '0');
			}
			v = cJSON_GetArrayItem(v, idx);
			if (!v)
				return NULL;
		} else {
			return NULL;
		}
		if (i >= n)
			return v;
		i++; /* the '/' */
	}
}

/* EC2 IMDS's text form: an object lists its keys (objects with a '/'),
 * a string is itself; anything else cannot be shown (NULL). */
static char *format_imds(const cJSON *v)
{
	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (!cJSON_IsObject(v))
		return NULL;
	size_t n = 1;
	for (const cJSON *c = v->child; c; c = c->next)
		n += strlen(c->string) + 2;
	char *s = malloc(n), *o = s;
	if (!s)
		return NULL;
	for (const cJSON *c = v->child; c; c = c->next) {
		size_t kl = strlen(c->string);
		if (o != s)
			*o++ = '\n';
		memcpy(o, c->string, kl);
		o += kl;
		if (cJSON_IsObject(c))
			*o++ = '/';
	}
	*o = '\0';
	return s;
}

#define UNSUPPORTED_TYPE "Cannot retrieve value. The value has an unsupported type."

static void answer_get(const struct mmds *m, const struct guest_request *g, struct response *r,
		       char **owned)
{
	/* "//" collapsed, one trailing "/" dropped: a JSON pointer. */
	char ptr[MMDS_REQUEST_LIMIT];
	size_t n = 0;
	for (size_t i = 0; i < g->path.n; i++)
		if (!(g->path.p[i] == '/' && n && ptr[n - 1] == '/'))
			ptr[n++] = g->path.p[i];
	if (n && ptr[n - 1] == '/')
		n--;
	bool null_root;
	const cJSON *v = lookup(m->store, ptr, n, &null_root);
	if (!v && !null_root) {
		r->json = false;
		set_fault(r, 404, "Resource not found: %.*s.", (int)g->path.n, g->path.p);
		return;
	}
	bool imds = m->cfg.imds_compat || !g->accept_json;
	char *body = NULL;
	if (!imds)
		body = null_root ? strdup("null") : cJSON_PrintUnformatted(v);
	else if (!null_root && !(body = format_imds(v)) && (cJSON_IsString(v) || cJSON_IsObject(v))) {
		set_fault(r, 500, "out of memory");
		return;
	}
	if (!body) {
		r->json = false;
		set_fault(r, imds ? 501 : 500, imds ? UNSUPPORTED_TYPE : "out of memory");
		return;
	}
	/* The Content-Type is what was asked for, whatever the form. */
	r->json = g->accept_json;
	r->status = 200;
	r->body = *owned = body;
	r->body_len = strlen(body);
}

/* Rust's u32 parse: an optional '+', then digits only. */
static bool parse_u32(struct text t, uint32_t *out)
{
	size_t i = t.n && t.p[0] == '+' ? 1 : 0;
	if (i >= t.n)
		return false;
	uint64_t v = 0;
	for (; i < t.n; i++) {
		if (t.p[i] < '0' || t.p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(t.p[i] - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

static void answer_put(struct mmds *m, const struct guest_request *g, struct response *r, uint64_t now_ms)
{
	r->json = false;
	if (g->forwarded_name.n) {
		set_fault(r, 400, "Invalid header. Reason: Unsupported header name. Key: %.*s",
			  (int)g->forwarded_name.n, g->forwarded_name.p);
		return;
	}
	char ptr[MMDS_REQUEST_LIMIT];
	size_t n = 0;
	for (size_t i = 0; i < g->path.n; i++)
		if (!(g->path.p[i] == '/' && n && ptr[n - 1] == '/'))
			ptr[n++] = g->path.p[i];
	if (n != strlen(PATH_TO_TOKEN) || memcmp(ptr, PATH_TO_TOKEN, n) != 0) {
		set_fault(r, 404, "Resource not found: %.*s.", (int)g->path.n, g->path.p);
		return;
	}
	if (!g->ttl_name.n) {
		set_fault(r, 400, "Token time to live value not found. Use `X-metadata-token-ttl-seconds` or "
			  "`X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's lifetime.");
		return;
	}
	uint32_t ttl;
	if (!parse_u32(g->ttl, &ttl)) {
		set_fault(r, 400, "Invalid header. Reason: Invalid value. Key:%.*s; Value:%.*s",
			  (int)g->ttl_name.n, g->ttl_name.p, (int)g->ttl.n, g->ttl.p);
		return;
	}
	if (ttl < MMDS_TOKEN_TTL_MIN || ttl > MMDS_TOKEN_TTL_MAX) {
		set_fault(r, 400, "Invalid time to live value provided for token: %u. Please provide a value "
			  "between %d and %d.", ttl, MMDS_TOKEN_TTL_MIN, MMDS_TOKEN_TTL_MAX);
		return;
	}
	token_generate(&m->tokens, ttl, now_ms, r->msg);
	r->status = 200;
	r->body = r->msg;
	r->body_len = strlen(r->msg);
	/* The TTL header comes back under the name it was sent with. */
	snprintf(r->extra, sizeof(r->extra), "%.*s: %u\r\n", (int)g->ttl_name.n, g->ttl_name.p, ttl);
}

/* Write r as micro_http writes a response. Returns its length or -1. */
static ssize_t write_response(char *out, size_t cap, const struct response *r)
{
	int n = snprintf(out, cap, "%s %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n%s"
			 "Content-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
			 r->version, r->status, r->allow ? "Allow: GET, PUT\r\n" : "",
			 r->json ? "application/json" : "text/plain", r->body_len, r->extra);
	if (n < 0 || (size_t)n >= cap || r->body_len > cap - (size_t)n)
		return -1;
	memcpy(out + n, r->body, r->body_len);
	return n + (ssize_t)r->body_len;
}

ssize_t mmds_http_answer(struct mmds *m, const char *req, size_t len, char *out, size_t cap,
			 uint64_t now_ms)
{
	ssize_t total = mmds_http_request_len(req, len);
	if (total <= 0)
		return total;
	size_t hlen = head_end(req, (size_t)total);
	struct guest_request g;
	struct response *r = calloc(1, sizeof(*r));
	char *owned = NULL;
	if (!r)
		goto oom;
	if (!parse_request(req, hlen, &g, r))
		goto write;
	r->version = g.version;
	if (!g.path.n) {
		r->json = false;
		set_fault(r, 400, "Invalid URI.");
		goto write;
	}
	if (g.method == GM_GET) {
		bool valid = g.token_name.n &&
			     g.token.n <= TOKEN_TEXT_MAX && token_valid(&m->tokens, g.token.p, g.token.n, now_ms);
		if (!g.token_name.n)
			MMDS_COUNT(rx_no_token);
		else if (!valid)
			MMDS_COUNT(rx_invalid_token);
		r->json = false;
		if (m->cfg.version == MMDS_V2 && !g.token_name.n)
			set_fault(r, 401, "No MMDS token provided. Use `X-metadata-token` or "
				  "`X-aws-ec2-metadata-token` header to specify the session token.");
		else if (m->cfg.version == MMDS_V2 && !valid)
			set_fault(r, 401, "MMDS token not valid.");
		else
			answer_get(m, &g, r, &owned);
	} else if (g.method == GM_PUT) {
		answer_put(m, &g, r, now_ms);
	} else {
		r->json = false;
		r->allow = true;
		set_fault(r, 405, "Not allowed HTTP method.");
	}
write:;
	ssize_t n = write_response(out, cap, r);
	free(owned);
	free(r);
	if (n > 0)
		return n;
oom:;
	/* Too large for out (or no memory): a short answer, never a cut one. */
	static const char short500[] = "HTTP/1.1 500 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
				       "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
	if (cap < sizeof(short500) - 1)
		return -ENOBUFS;
	memcpy(out, short500, sizeof(short500) - 1);
	return (ssize_t)(sizeof(short500) - 1);
}
