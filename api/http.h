/* A small, strict HTTP/1.1 request parser and response writer for the
 * API socket. Requests: a request line, headers, and a body of exactly
 * Content-Length bytes (no chunked encoding). Anything else is refused
 * with the status to answer; the parser never reads past len. */
#ifndef EMBER_HTTP_H
#define EMBER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HTTP_MAX_HEAD 8192   /* request line + headers */
#define HTTP_MAX_PATH 256

/* POST only where the caller asks for it (ember-fn); ember's API, as
 * Firecracker's, refuses it. */
enum http_method { HTTP_GET, HTTP_PUT, HTTP_PATCH, HTTP_DELETE, HTTP_POST };

struct http_request {
	enum http_method method;
	char method_name[16];
	char path[HTTP_MAX_PATH]; /* the request target without any query */
	bool keep_alive;
	bool expect_continue;     /* "Expect: 100-continue" */
	bool headers_done;        /* set even while the body is still incomplete */
	const char *body;         /* into the caller's buffer */
	size_t body_len;
	const char *error;        /* why a request was refused */
	char error_text[128];     /* (room for error's text when it has numbers) */
	size_t skip;              /* refused but framed: the bytes it occupies */
};

/* Parse one request from buf[0..len). Returns the bytes it occupies
 * (> 0) when complete; 0 when more bytes are needed; or -status (-400,
 * -431) when it cannot be accepted, with req->error saying why in
 * Firecracker's words where it has them. A body larger than max_body is
 * refused (-400) as soon as the headers say so, with req->skip the bytes
 * the whole request occupies (so the connection can go on past it); for
 * other refusals skip is 0: the framing is lost. Without Content-Length a
 * request has no body. */
ssize_t http_parse_request(const char *buf, size_t len, size_t max_body, struct http_request *req);

/* The same, also accepting POST when allow_post. */
ssize_t http_parse_request_post(const char *buf, size_t len, size_t max_body, bool allow_post,
				struct http_request *req);

const char *http_reason(int status);

/* Write a response into out (cap bytes), as Firecracker's server writes
 * it: status line, Server, Connection, "Deprecation: true" when
 * deprecation, Content-Type JSON and Content-Length headers, the body
 * (may be NULL). Returns the length, or -1 if it does not fit. */
ssize_t http_format_response(char *out, size_t cap, int status, const char *body, bool keep_alive,
			     bool deprecation);

#endif
