#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static ssize_t refuse(struct http_request *req, int status, const char *why)
{
	req->error = why;
	return -status;
}

static bool is_tchar(char c)
{
	/* strchr() finds a NUL too: the terminator. */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The end of the line starting at p (the CR of its CRLF), or NULL if the
 * line is not complete within end. A bare LF or CR is malformed: *bad. */
static const char *line_end(const char *p, const char *end, bool *bad)
{
	for (const char *q = p; q < end; q++) {
		if (*q == '\n') {
			*bad = true;
			return NULL;
		}
		if (*q == '\r') {
			if (q + 1 >= end)
				return NULL;
			if (q[1] != '\n') {
				*bad = true;
				return NULL;
			}
			return q;
		}
	}
	return NULL;
}

static bool header_is(const char *name, size_t nlen, const char *want)
{
	return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

static bool value_is(const char *v, size_t vlen, const char *want)
{
	return vlen == strlen(want) && strncasecmp(v, want, vlen) == 0;
}

ssize_t http_parse_request(const char *buf, size_t len, size_t max_body, struct http_request *req)
{
	return http_parse_request_post(buf, len, max_body, false, req);
}

ssize_t http_parse_request_post(const char *buf, size_t len, size_t max_body, bool allow_post,
				struct http_request *req)
{
	memset(req, 0, sizeof(*req));
	const char *p = buf, *end = buf + len;
	bool bad = false;
	/* The head must end within HTTP_MAX_HEAD bytes. */
	const char *head_limit = len > HTTP_MAX_HEAD ? buf + HTTP_MAX_HEAD : end;

	/* Request line: METHOD SP target SP HTTP/1.x CRLF */
	const char *eol = line_end(p, head_limit, &bad);
	if (bad)
		return refuse(req, 400, "malformed request line");
	if (!eol)
		return len >= HTTP_MAX_HEAD ? refuse(req, 431, "request head too large") : 0;
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || sp1 == p || (size_t)(sp1 - p) >= sizeof(req->method_name))
		return refuse(req, 400, "malformed request line");
	for (const char *q = p; q < sp1; q++)
		if (*q < 'A' || *q > 'Z')
			return refuse(req, 400, "malformed method");
	memcpy(req->method_name, p, (size_t)(sp1 - p));
	if (strcmp(req->method_name, "GET") == 0)
		req->method = HTTP_GET;
	else if (strcmp(req->method_name, "PUT") == 0)
		req->method = HTTP_PUT;
	else if (strcmp(req->method_name, "PATCH") == 0)
		req->method = HTTP_PATCH;
	else if (strcmp(req->method_name, "DELETE") == 0)
		req->method = HTTP_DELETE;
	else if (allow_post && strcmp(req->method_name, "POST") == 0)
		req->method = HTTP_POST;
	else
		return refuse(req, 400, "Invalid HTTP Method: Unsupported HTTP method.");

	const char *target = sp1 + 1;
	const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
	if (!sp2 || sp2 == target || *target != '/')
		return refuse(req, 400, "malformed request target");
	size_t tlen = (size_t)(sp2 - target);
	const char *query = memchr(target, '?', tlen);
	size_t plen = query ? (size_t)(query - target) : tlen;
	if (plen >= sizeof(req->path))
		return refuse(req, 400, "request path too long");
	for (const char *q = target; q < sp2; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return refuse(req, 400, "malformed request target");
	memcpy(req->path, target, plen);

	const char *version = sp2 + 1;
	size_t vlen = (size_t)(eol - version);
	if (vlen == 8 && memcmp(version, "HTTP/1.1", 8) == 0)
		req->keep_alive = true;
	else if (vlen == 8 && memcmp(version, "HTTP/1.0", 8) == 0)
		req->keep_alive = false;
	else if (vlen == 8 && memcmp(version, "HTTP/", 5) == 0)
		return refuse(req, 400, "Invalid HTTP Version: Unsupported HTTP version.");
	else
		return refuse(req, 400, "malformed HTTP version");
	p = eol + 2;

	/* Headers, until an empty line. */
	bool has_length = false; /* a second Content-Length must agree */
	size_t length = 0;
	unsigned count = 0;
	for (;;) {
		eol = line_end(p, head_limit, &bad);
		if (bad)
			return refuse(req, 400, "malformed header line");
		if (!eol)
			return len >= HTTP_MAX_HEAD ? refuse(req, 431, "request head too large") : 0;
		if (eol == p) {
			p = eol + 2;
			break;
		}
		if (++count > 64)
			return refuse(req, 431, "too many headers");
		if (*p == ' ' || *p == '\t')
			return refuse(req, 400, "folded header lines are not accepted");
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return refuse(req, 400, "malformed header line");
		for (const char *q = p; q < colon; q++)
			if (!is_tchar(*q))
				return refuse(req, 400, "malformed header name");
		size_t nlen = (size_t)(colon - p);
		const char *v = colon + 1, *vend = eol;
		while (v < vend && (*v == ' ' || *v == '\t'))
			v++;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		for (const char *q = v; q < vend; q++)
			if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
				return refuse(req, 400, "control character in a header");
		size_t vl = (size_t)(vend - v);

		if (header_is(p, nlen, "Content-Length")) {
			if (vl == 0 || vl > 19)
				return refuse(req, 400, "malformed Content-Length");
			size_t n = 0;
			for (const char *q = v; q < vend; q++) {
				if (*q < '0' || *q > '9')
					return refuse(req, 400, "malformed Content-Length");
				n = n * 10 + (size_t)(*q - '0');
			}
			if (has_length && n != length)
				return refuse(req, 400, "conflicting Content-Length headers");
			has_length = true;
			length = n;
		} else if (header_is(p, nlen, "Transfer-Encoding")) {
			return refuse(req, 400, "Transfer-Encoding is not supported: send Content-Length");
		} else if (header_is(p, nlen, "Connection")) {
			if (value_is(v, vl, "close"))
				req->keep_alive = false;
			else if (value_is(v, vl, "keep-alive"))
				req->keep_alive = true;
		} else if (header_is(p, nlen, "Expect")) {
			if (!value_is(v, vl, "100-continue"))
				return refuse(req, 400, "unsupported Expect header");
			req->expect_continue = true;
		}
		p = eol + 2;
	}
	req->headers_done = true;
	/* Without Content-Length a request has no body (Firecracker's rule). */
	size_t head = (size_t)(p - buf);
	if (length > max_body) {
		snprintf(req->error_text, sizeof(req->error_text),
			 "Request payload with size %zu is larger than the limit of %zu allowed by server.",
			 length, max_body);
		req->error = req->error_text;
		req->skip = head + length;
		return -400;
	}
	if (len - head < length)
		return 0;
	req->body = p;
	req->body_len = length;
	return (ssize_t)(head + length);
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* Firecracker's answers, byte for byte as its clients and tests see them:
 * a status line without a reason phrase, Server, Connection, Deprecation,
 * then the body's headers (none for 204). */
ssize_t http_format_response(char *out, size_t cap, int status, const char *body, bool keep_alive,
			     bool deprecation)
{
	size_t blen = body ? strlen(body) : 0;
	int n = snprintf(out, cap, "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: %s\r\n%s", status,
			 keep_alive ? "keep-alive" : "close", deprecation ? "Deprecation: true\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -1;
	int m;
	if (status == 204 || status == 100)
		m = snprintf(out + n, cap - (size_t)n, "\r\n");
	else
		m = snprintf(out + n, cap - (size_t)n,
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", blen,
			     body ? body : "");
	if (m < 0 || (size_t)m >= cap - (size_t)n)
		return -1;
	return n + m;
}
