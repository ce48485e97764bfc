#include <criterion/criterion.h>
#include <string.h>

#include "../../api/http.h"

static ssize_t parse(const char *text, struct http_request *req)
{
	return http_parse_request(text, strlen(text), 1024, req);
}

Test(http, simple_get)
{
	struct http_request req;
	const char *t = "GET /machine-config?x=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";
	cr_assert_eq(parse(t, &req), (ssize_t)strlen(t));
	cr_assert_eq(req.method, HTTP_GET);
	cr_assert_str_eq(req.path, "/machine-config", "the query is not part of the path");
	cr_assert(req.keep_alive, "HTTP/1.1 keeps the connection by default");
	cr_assert_eq(req.body_len, 0);
}

Test(http, put_with_body_and_pipelining)
{
	struct http_request req;
	const char *t = "PUT /actions HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
	ssize_t n = parse(t, &req);
	cr_assert_eq(n, (ssize_t)(strlen(t) - strlen("GET / HTTP/1.1\r\n\r\n")));
	cr_assert_eq(req.method, HTTP_PUT);
	cr_assert_eq(req.body_len, 5);
	cr_assert_eq(memcmp(req.body, "hello", 5), 0);
	cr_assert_gt(parse(t + n, &req), 0, "the second request follows");
	cr_assert_eq(req.method, HTTP_GET);
}

Test(http, incomplete_requests_ask_for_more)
{
	struct http_request req;
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req), 0);
	cr_assert_eq(parse("GET / HT", &req), 0);
	cr_assert_eq(parse("PUT /actions HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", &req), 0);
	cr_assert(req.headers_done);
}

Test(http, connection_handling)
{
	struct http_request req;
	cr_assert_gt(parse("GET / HTTP/1.0\r\n\r\n", &req), 0);
	cr_assert_not(req.keep_alive);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req), 0);
	cr_assert(req.keep_alive);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n", &req), 0);
	cr_assert_not(req.keep_alive);
}

Test(http, expect_continue)
{
	struct http_request req;
	cr_assert_eq(parse("PUT /drives/a HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", &req), 0);
	cr_assert(req.expect_continue);
	cr_assert(req.headers_done);
}

struct bad {
	char text[160];
	int status;
};

static const struct bad bad_requests[] = {
	{ "GET / HTTP/1.1\n\n", 400 },                                  /* bare LF */
	{ "GET / HTTP/1.1\r\nHost: x\nY: z\r\n\r\n", 400 },             /* bare LF in headers */
	{ "get / HTTP/1.1\r\n\r\n", 400 },                              /* lowercase method */
	{ "GET  / HTTP/1.1\r\n\r\n", 400 },                             /* double space */
	{ "GET noslash HTTP/1.1\r\n\r\n", 400 },
	{ "GET / HTTP/2.0\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\n\r\n", 400 },                          /* not a method the API has */
	{ "GET / HTTX/1.1\r\n\r\n", 400 },
	{ "PUT /a HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400 },
	{ "PUT /a HTTP/1.1\r\nContent-Length: \r\n\r\n", 400 },
	{ "PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
	{ "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 400 },
	{ "\x01\x02\x03\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400 },                  /* DEL in a value */
};

#include <criterion/parameterized.h>

ParameterizedTestParameters(http, malformed_requests_are_refused)
{
	return cr_make_param_array(struct bad, bad_requests, sizeof(bad_requests) / sizeof(bad_requests[0]));
}

ParameterizedTest(const struct bad *b, http, malformed_requests_are_refused)
{
	struct http_request req;
	cr_assert_eq(parse(b->text, &req), -b->status, "%s", b->text);
	cr_assert_not_null(req.error);
}

/* A NUL byte anywhere in the head (the strings above cannot hold one). */
Test(http, a_nul_in_the_head_is_refused)
{
	static const struct {
		const char *text;
		size_t len;
	} cases[] = {
#define C(s) { s, sizeof(s) - 1 }
		C("GET / HTTP/1.1\r\nX\0Y: z\r\n\r\n"),       /* header name */
		C("GET / HTTP/1.1\r\n\0: z\r\n\r\n"),
		C("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"),       /* header value */
		C("GE\0T / HTTP/1.1\r\n\r\n"),                 /* method */
		C("GET /a\0b HTTP/1.1\r\n\r\n"),               /* path */
		C("GET /?a\0 HTTP/1.1\r\n\r\n"),               /* query */
		C("GET / HTTP/1.1\0\r\n\r\n"),                 /* version */
#undef C
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_request req;
		cr_assert_eq(http_parse_request(cases[i].text, cases[i].len, 1024, &req), -400, "case %zu", i);
		cr_assert_not_null(req.error);
	}
}

Test(http, an_endless_head_is_refused_not_buffered)
{
	static char big[HTTP_MAX_HEAD + 100];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	struct http_request req;
	cr_assert_eq(http_parse_request(big, sizeof(big), 1024, &req), -431);
}

/* Firecracker's words for an oversized body; the request stays framed,
 * so the server can pass over its body and serve on. */
Test(http, a_body_over_the_limit_is_refused_in_firecrackers_words)
{
	static const char text[] = "PUT /a HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
	struct http_request req;
	cr_assert_eq(parse(text, &req), -400);
	cr_assert_str_eq(req.error, "Request payload with size 5000 is larger than the limit of 1024 allowed by server.");
	cr_assert_eq(req.skip, sizeof(text) - 1 + 5000);
	cr_assert(req.keep_alive);
	cr_assert_eq(parse("GET / HTTP/2.0\r\n\r\n", &req), -400);
	cr_assert_str_eq(req.error, "Invalid HTTP Version: Unsupported HTTP version.");
	cr_assert_eq(req.skip, 0, "a refusal that loses the framing skips nothing");
	cr_assert_eq(parse("POST / HTTP/1.1\r\n\r\n", &req), -400);
	cr_assert_str_eq(req.error, "Invalid HTTP Method: Unsupported HTTP method.");
}

/* As Firecracker's server: no Content-Length means no body (the router
 * then answers "Empty PUT request."), and DELETE is a method. */
Test(http, no_content_length_is_no_body)
{
	struct http_request req;
	cr_assert_gt(parse("PUT /actions HTTP/1.1\r\n\r\n", &req), 0);
	cr_assert_eq(req.body_len, 0);
	cr_assert_gt(parse("DELETE /drives/a HTTP/1.1\r\n\r\n", &req), 0);
	cr_assert_eq(req.method, HTTP_DELETE);
}

Test(http, responses)
{
	char buf[256];
	ssize_t n = http_format_response(buf, sizeof(buf), 204, NULL, true, false);
	cr_assert_gt(n, 0);
	cr_assert_str_eq(buf, "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n");
	n = http_format_response(buf, sizeof(buf), 400, "{\"fault_message\":\"x\"}", false, false);
	cr_assert_str_eq(buf, "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: close\r\n"
			      "Content-Type: application/json\r\nContent-Length: 21\r\n\r\n{\"fault_message\":\"x\"}");
	n = http_format_response(buf, sizeof(buf), 204, NULL, true, true);
	cr_assert_not_null(strstr(buf, "\r\nDeprecation: true\r\n"), "%s", buf);
	cr_assert_eq(http_format_response(buf, 20, 200, "{}", true, false), -1, "too small a buffer");
}
