#include <cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/config_json.h"
#include "../../vmm/mmds/mmds.h"
#include "../../vmm/mmds/token.h"

static struct mmds *m;
static char out[1 << 17];
static char err[512];

static void setup(void)
{
	m = mmds_new(0);
	cr_assert_not_null(m);
}

static void teardown(void)
{
	mmds_free(m);
}

static void put(const char *json)
{
	cr_assert_eq(mmds_put(m, json, strlen(json), err, sizeof(err)), 0, "PUT %s: %s", json, err);
}

static void expect_store(const char *json)
{
	char *s = mmds_get(m);
	cr_assert_str_eq(s, json);
	free(s);
}

static void set_version(enum mmds_version v, bool imds_compat)
{
	struct mmds_config c = *mmds_get_config(m);
	c.version = v;
	c.imds_compat = imds_compat;
	mmds_set_config(m, &c);
}

/* The answer to req at time now_ms, NUL-terminated in out. */
static ssize_t ask_at(const char *req, uint64_t now_ms)
{
	ssize_t n = mmds_http_answer(m, req, strlen(req), out, sizeof(out) - 1, now_ms);
	if (n > 0)
		out[n] = '\0';
	return n;
}

static ssize_t ask(const char *req)
{
	return ask_at(req, 1000);
}

static int status(void)
{
	int st = 0;
	cr_assert_eq(sscanf(out, "HTTP/1.%*c %d ", &st), 1, "a status line: %s", out);
	return st;
}

static const char *body(void)
{
	const char *b = strstr(out, "\r\n\r\n");
	cr_assert_not_null(b);
	return b + 4;
}

static const char *header(const char *name)
{
	static char v[256];
	char key[128];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *p = strstr(out, key);
	if (!p || p > body())
		return NULL;
	p += strlen(key);
	size_t n = strcspn(p, "\r");
	snprintf(v, sizeof(v), "%.*s", (int)n, p);
	return v;
}

/* ---- the store ------------------------------------------------------ */

TestSuite(mmds_store, .init = setup, .fini = teardown);

Test(mmds_store, empty_until_put_and_patch_refused_before)
{
	expect_store("{}");
	cr_assert_not(mmds_initialized(m));
	cr_assert_eq(mmds_patch(m, "{\"a\":1}", 7, err, sizeof(err)), -ENOENT);
	cr_assert_str_eq(err, "MMDS error: The MMDS data store is not initialized.");
	put("{\"b\":{\"y\":1,\"x\":2},\"a\":\"s\"}");
	cr_assert(mmds_initialized(m));
	expect_store("{\"a\":\"s\",\"b\":{\"x\":2,\"y\":1}}"); /* keys sorted, as Firecracker's */
	put("null");
	expect_store("{}");
	cr_assert(mmds_initialized(m), "a PUT of null initializes the store");
	cr_assert_eq(mmds_patch(m, "{\"a\":1}", 7, err, sizeof(err)), 0);
	expect_store("{\"a\":1}");
}

Test(mmds_store, put_refuses_bad_json_and_keeps_the_store)
{
	put("{\"a\":1}");
	cr_assert_eq(mmds_put(m, "{\"a\":", 5, err, sizeof(err)), -EINVAL);
	cr_assert_eq(mmds_put(m, "{\"a\":1,\"a\":2}", 13, err, sizeof(err)), -EINVAL);
	expect_store("{\"a\":1}");
}

Test(mmds_store, merge_patch_rfc7396)
{
	put("{\"name\":{\"first\":\"John\",\"second\":\"Doe\"},\"age\":\"43\","
	    "\"phones\":{\"home\":{\"RO\":\"1\",\"UK\":\"2\"},\"mobile\":\"3\"},\"list\":[1,2]}");
	const char *patch = "{\"name\":{\"second\":null,\"last\":\"Kennedy\"},\"age\":\"44\","
			    "\"phones\":{\"home\":\"4\",\"mobile\":{\"RO\":\"5\",\"x\":null}},\"list\":[3],"
			    "\"new\":{\"deep\":{\"gone\":null,\"kept\":true}}}";
	cr_assert_eq(mmds_patch(m, patch, strlen(patch), err, sizeof(err)), 0, "%s", err);
	expect_store("{\"age\":\"44\",\"list\":[3],\"name\":{\"first\":\"John\",\"last\":\"Kennedy\"},"
		     "\"new\":{\"deep\":{\"kept\":true}},\"phones\":{\"home\":\"4\",\"mobile\":{\"RO\":\"5\"}}}");
	/* A patch that is not an object replaces the whole document. */
	cr_assert_eq(mmds_patch(m, "[1]", 3, err, sizeof(err)), 0);
	expect_store("[1]");
	cr_assert_eq(mmds_patch(m, "{\"a\":{\"b\":null}}", 16, err, sizeof(err)), 0);
	expect_store("{\"a\":{}}");
}

Test(mmds_store, size_limit_counts_the_compact_json)
{
	mmds_free(m);
	m = mmds_new(21);
	put("{ \"a\" : \"0123456789abc\" }"); /* compact: 21 bytes */
	cr_assert_eq(mmds_put(m, "{\"a\":\"0123456789abcde\"}", 23, err, sizeof(err)), -EFBIG);
	cr_assert_str_eq(err, "MMDS limit exceeded error: The MMDS patch request doesn't fit.");
	cr_assert_eq(mmds_patch(m, "{\"b\":\"\"}", 8, err, sizeof(err)), -EFBIG, "28 bytes");
	expect_store("{\"a\":\"0123456789abc\"}");
	cr_assert_eq(mmds_patch(m, "{\"a\":\"x\"}", 9, err, sizeof(err)), 0);
	cr_assert_eq(mmds_patch(m, "{\"b\":\"01234\"}", 13, err, sizeof(err)), 0, "exactly 21 bytes fit");
	expect_store("{\"a\":\"x\",\"b\":\"01234\"}");
}

Test(mmds_store, firecracker_limit_scenario)
{
	/* test_mmds_limit_scenario's numbers at the default limit. */
	char *big = malloc(60000);
	snprintf(big, 60000, "{\"latest\":{\"meta-data\":{\"ami-id\":\"smth\",\"secret_key\":\"%0*d\"}}}", 51137, 0);
	put("{}");
	cr_assert_eq(mmds_patch(m, big, strlen(big), err, sizeof(err)), 0, "fills the store exactly");
	const char *more = "{\"latest\":{\"meta-data\":{\"secret_key2\":\"bbbbbbbbbb\"}}}";
	cr_assert_eq(mmds_patch(m, more, strlen(more), err, sizeof(err)), -EFBIG);
	free(big);
}

Test(mmds_store, restore_round_trip)
{
	put("{\"k\":[1,\"v\"]}");
	char *s = mmds_store_json(m);
	struct mmds *m2 = mmds_new(0);
	cr_assert_eq(mmds_restore_store(m2, s, strlen(s), err, sizeof(err)), 0);
	char *t = mmds_get(m2);
	cr_assert_str_eq(t, "{\"k\":[1,\"v\"]}");
	cr_assert(mmds_initialized(m2));
	cr_assert_eq(mmds_restore_store(m2, "{", 1, err, sizeof(err)), -EINVAL);
	cr_assert_eq(mmds_restore_store(m2, "", 0, err, sizeof(err)), 0);
	cr_assert_not(mmds_initialized(m2));
	struct mmds *small = mmds_new(4);
	cr_assert_eq(mmds_restore_store(small, s, strlen(s), err, sizeof(err)), -EINVAL, "over its limit");
	free(s);
	free(t);
	mmds_free(m2);
	mmds_free(small);
}

Test(mmds_store, ipv4_rules_and_ifaces)
{
	cr_assert_eq(mmds_ipv4(m), 0xa9fea9fe);
	cr_assert(mmds_ipv4_valid(0xa9fea9fa));
	cr_assert(mmds_ipv4_valid(0xa9fe0100));
	cr_assert_not(mmds_ipv4_valid(0xa9fe0001), "169.254.0.x");
	cr_assert_not(mmds_ipv4_valid(0xa9feff01), "169.254.255.x");
	cr_assert_not(mmds_ipv4_valid(0x0a000001));
	struct mmds_config c = *mmds_get_config(m);
	c.nifaces = 1;
	snprintf(c.ifaces[0], sizeof(c.ifaces[0]), "eth0");
	mmds_set_config(m, &c);
	cr_assert(mmds_serves_iface(m, "eth0"));
	cr_assert_not(mmds_serves_iface(m, "eth1"));
}

/* ---- tokens --------------------------------------------------------- */

Test(mmds_token, siphash_reference_vectors)
{
	/* SipHash-2-4's published vectors: key 00..0f, messages 00..(n-1). */
	const uint64_t key[2] = { 0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL };
	uint8_t msg[15];
	for (int i = 0; i < 15; i++)
		msg[i] = (uint8_t)i;
	cr_assert_eq(token_siphash(key, msg, 0), 0x726fdb47dd0e0e31ULL);
	cr_assert_eq(token_siphash(key, msg, 15), 0xa129ca6149be45e5ULL);
}

Test(mmds_token, expiry_and_forgery)
{
	struct token_authority t, other;
	cr_assert_eq(token_authority_init(&t), 0);
	cr_assert_eq(token_authority_init(&other), 0);
	char tok[TOKEN_TEXT_MAX + 1];
	token_generate(&t, 60, 5000, tok);
	cr_assert(token_valid(&t, tok, strlen(tok), 5000));
	cr_assert(token_valid(&t, tok, strlen(tok), 64999));
	cr_assert_not(token_valid(&t, tok, strlen(tok), 65000), "expired at now + ttl");
	cr_assert_not(token_valid(&other, tok, strlen(tok), 5000), "another process's key");
	/* Every single-character change is refused. */
	for (size_t i = 0; i < strlen(tok); i++) {
		char f[sizeof(tok)];
		memcpy(f, tok, sizeof(tok));
		f[i] = f[i] == 'A' ? 'B' : 'A';
		cr_assert_not(token_valid(&t, f, strlen(f), 5000), "changed at %zu", i);
	}
	cr_assert_not(token_valid(&t, tok, strlen(tok) - 1, 5000), "truncated");
	cr_assert_not(token_valid(&t, "", 0, 5000));
	cr_assert_not(token_valid(&t, "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", 32, 5000), "not base64");
	char tok2[TOKEN_TEXT_MAX + 1];
	token_generate(&t, 60, 5000, tok2);
	cr_assert_str_neq(tok, tok2, "each token differs");
}

/* ---- the guest's HTTP ----------------------------------------------- */

TestSuite(mmds_http, .init = setup, .fini = teardown);

#define DATA "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\",\"obj\":{\"k\":\"v\"},\"arr\":[\"a0\",\"a1\"],\"n\":512,\"e\":\"\"}}}"

Test(mmds_http, v1_get_plain_text_and_json)
{
	put(DATA);
	cr_assert_gt(ask("GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"), 0);
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(header("Content-Type"), "text/plain");
	cr_assert_str_eq(body(), "ami-id\narr\ne\nn\nobj/");
	cr_assert_str_eq(header("Content-Length"), "19");
	ask("GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n");
	cr_assert_str_eq(body(), "ami-1");
	ask("GET /latest//meta-data///arr/1/ HTTP/1.0\r\n\r\n");
	cr_assert_str_eq(body(), "a1");
	cr_assert_eq(strncmp(out, "HTTP/1.0 200 \r\n", 15), 0, "the request's version");
	ask("GET /latest/meta-data/e HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(body(), "");
	ask("GET /latest/meta-data/n HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 501);
	cr_assert_str_eq(body(), "Cannot retrieve value. The value has an unsupported type.");
	ask("GET http://169.254.169.254/latest/meta-data/obj HTTP/1.1\r\nAccept: application/json\r\n\r\n");
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(header("Content-Type"), "application/json");
	cr_assert_str_eq(body(), "{\"k\":\"v\"}");
	ask("GET /latest/meta-data/n HTTP/1.1\r\naccept:   application/json  \r\n\r\n");
	cr_assert_str_eq(body(), "512");
	ask("GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: application/json\r\n\r\n");
	cr_assert_str_eq(body(), "\"ami-1\"");
	ask("GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: */*\r\n\r\n");
	cr_assert_str_eq(body(), "ami-1", "anything but JSON is plain text");
	cr_assert_eq(mmds_metrics.rx_no_token, 9, "V1 counts requests without a token");
}

Test(mmds_http, imds_compat_ignores_accept)
{
	put(DATA);
	set_version(MMDS_V1, true);
	ask("GET /latest/meta-data/obj HTTP/1.1\r\nAccept: application/json\r\n\r\n");
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(body(), "k");
	cr_assert_str_eq(header("Content-Type"), "application/json");
}

Test(mmds_http, empty_store_and_missing_paths)
{
	ask("GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n");
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(body(), "null");
	ask("GET / HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 501);
	put(DATA);
	ask("GET /latest/nothing/ HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 404);
	cr_assert_str_eq(body(), "Resource not found: /latest/nothing/.");
	ask("GET /latest/meta-data/arr/01 HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 404, "no leading zeros in an index");
	ask("GET /latest/meta-data/ami-id/x HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 404);
}

Test(mmds_http, v2_token_flow)
{
	put(DATA);
	set_version(MMDS_V2, false);
	ask("GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 401);
	cr_assert_str_eq(body(), "No MMDS token provided. Use `X-metadata-token` or `X-aws-ec2-metadata-token` "
				 "header to specify the session token.");
	ask("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: foo\r\n\r\n");
	cr_assert_eq(status(), 401);
	cr_assert_str_eq(body(), "MMDS token not valid.");
	cr_assert_eq(mmds_metrics.rx_no_token, 1);
	cr_assert_eq(mmds_metrics.rx_invalid_token, 1);

	ask_at("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 2\r\n\r\n", 1000);
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(header("X-metadata-token-ttl-seconds"), "2");
	cr_assert_str_eq(header("Content-Type"), "text/plain");
	char token[128], req[512];
	snprintf(token, sizeof(token), "%s", body());
	snprintf(req, sizeof(req), "GET /latest/meta-data/ami-id HTTP/1.1\r\nx-METADATA-token: %s\r\n\r\n", token);
	ask_at(req, 2999);
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(body(), "ami-1");
	ask_at(req, 3000);
	cr_assert_eq(status(), 401, "expired after its 2 s");
	cr_assert_str_eq(body(), "MMDS token not valid.");

	/* The EC2 names, for the PUT and the GET. */
	ask_at("PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n", 1000);
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(header("X-aws-ec2-metadata-token-ttl-seconds"), "21600");
	snprintf(token, sizeof(token), "%s", body());
	snprintf(req, sizeof(req), "GET /latest/meta-data/ HTTP/1.1\r\nX-aws-ec2-metadata-token: %s\r\n\r\n", token);
	ask_at(req, 1000 + 21600ULL * 1000 - 1);
	cr_assert_eq(status(), 200);
	/* A garbled token, and one far too long. */
	token[3] ^= 1;
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-metadata-token: %s\r\n\r\n", token);
	ask(req);
	cr_assert_eq(status(), 401);
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-metadata-token: %0200d\r\n\r\n", 0);
	ask(req);
	cr_assert_eq(status(), 401);
}

Test(mmds_http, v1_accepts_tokens_and_counts_bad_ones)
{
	put(DATA);
	ask("GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: junk\r\n\r\n");
	cr_assert_eq(status(), 200);
	cr_assert_eq(mmds_metrics.rx_invalid_token, 1);
	cr_assert_eq(mmds_metrics.rx_no_token, 0);
}

Test(mmds_http, token_put_refusals)
{
	ask("PUT /latest/api/token HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nX-metadata-token-ttl-seconds: 5\r\n\r\n");
	cr_assert_eq(status(), 400);
	cr_assert_str_eq(body(), "Invalid header. Reason: Unsupported header name. Key: X-Forwarded-For");
	ask("PUT /latest/api/token HTTP/1.1\r\nx-fOrWaRdEd-FoR: 1\r\n\r\n");
	cr_assert_str_eq(body(), "Invalid header. Reason: Unsupported header name. Key: x-fOrWaRdEd-FoR");
	ask("PUT /latest/api/toke HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n");
	cr_assert_eq(status(), 404);
	cr_assert_str_eq(body(), "Resource not found: /latest/api/toke.");
	ask("PUT /latest/api/token HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 400);
	cr_assert_str_eq(body(), "Token time to live value not found. Use `X-metadata-token-ttl-seconds` or "
				 "`X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's lifetime.");
	ask("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: application/json\r\n\r\n");
	cr_assert_eq(status(), 400);
	cr_assert_str_eq(body(), "Invalid header. Reason: Invalid value. Key:X-metadata-token-ttl-seconds; "
				 "Value:application/json");
	ask("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 0\r\n\r\n");
	cr_assert_str_eq(body(), "Invalid time to live value provided for token: 0. Please provide a value "
				 "between 1 and 21600.");
	ask("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 21601\r\n\r\n");
	cr_assert_eq(status(), 400);
	ask("PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 99999999999\r\n\r\n");
	cr_assert_eq(status(), 400);
	ask("PUT //latest//api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: +1\r\n\r\n");
	cr_assert_eq(status(), 200, "slashes collapse; Rust's u32 takes a '+'");
}

Test(mmds_http, methods_versions_and_malformed)
{
	ask("PATCH / HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 405);
	cr_assert_str_eq(header("Allow"), "GET, PUT");
	cr_assert_str_eq(body(), "Not allowed HTTP method.");
	ask("BREW / HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 501);
	cr_assert_str_eq(body(), "Unsupported HTTP method.");
	ask("GET / HTTP/2.0\r\n\r\n");
	cr_assert_eq(status(), 501);
	cr_assert_str_eq(body(), "Unsupported HTTP version.");
	ask("GET relative HTTP/1.1\r\n\r\n");
	cr_assert_eq(status(), 400);
	cr_assert_str_eq(body(), "Invalid URI.");
	ask("GET http://host HTTP/1.1\r\n\r\n");
	cr_assert_str_eq(body(), "Invalid URI.");
	ask("GET\r\n\r\n");
	cr_assert_eq(status(), 400);
	cr_assert_str_eq(body(), "Invalid request.");
	ask("GET / HTTP/1.1\r\nno colon here\r\n\r\n");
	cr_assert_eq(status(), 400);
	ask("GET / HTTP/1.1\r\nContent-Length: alpha\r\n\r\n");
	cr_assert_eq(status(), 400);
	cr_assert_str_eq(body(), "Invalid header. Reason: Invalid value. Key:Content-Length; Value: alpha");
	/* Bare LF line ends are taken too. */
	put("{\"a\":\"b\"}");
	ask("GET /a HTTP/1.1\nHost: x\n\n");
	cr_assert_eq(status(), 200);
	cr_assert_str_eq(body(), "b");
}

Test(mmds_http, framing_incomplete_and_oversized)
{
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	for (size_t i = 0; i < strlen(req); i++)
		cr_assert_eq(mmds_http_answer(m, req, i, out, sizeof(out), 0), 0, "prefix of %zu bytes", i);
	const char *body_req = "PUT /latest/api/token HTTP/1.1\r\nContent-Length: 4\r\n"
			       "X-metadata-token-ttl-seconds: 5\r\n\r\nab";
	cr_assert_eq(ask(body_req), 0, "waits for the announced body");
	cr_assert_eq(mmds_http_request_len(body_req, strlen(body_req)), 0);
	char two[256];
	snprintf(two, sizeof(two), "%scdGET / HTTP/1.1\r\n\r\n", body_req);
	cr_assert_eq(mmds_http_request_len(two, strlen(two)), (ssize_t)(strlen(body_req) + 2));
	cr_assert_gt(ask(two), 0);
	cr_assert_eq(status(), 200, "the first request is answered");

	size_t big = mmds_request_limit() + 10;
	char *huge = malloc(big + 1);
	memset(huge, 'a', big);
	memcpy(huge, "GET /", 5);
	huge[big] = '\0';
	cr_assert_eq(mmds_http_answer(m, huge, mmds_request_limit(), out, sizeof(out), 0), -EMSGSIZE,
		     "no head end within the limit");
	cr_assert_eq(mmds_http_answer(m, huge, mmds_request_limit() - 1, out, sizeof(out), 0), 0);
	snprintf(huge, big, "PUT / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", mmds_request_limit());
	cr_assert_eq(mmds_http_answer(m, huge, strlen(huge), out, sizeof(out), 0), -EMSGSIZE,
		     "a body past the limit");
	free(huge);
}

Test(mmds_http, small_output_gets_a_short_500)
{
	put(DATA);
	char small[120];
	const char *req = "GET /latest/meta-data/ HTTP/1.1\r\nAccept: application/json\r\n\r\n";
	ssize_t n = mmds_http_answer(m, req, strlen(req), small, sizeof(small), 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(strncmp(small, "HTTP/1.1 500 ", 13), 0);
	cr_assert_geq(mmds_response_limit(m), (size_t)MMDS_SIZE_LIMIT_DEFAULT);
}

/* ---- the configuration ---------------------------------------------- */

static int parse_config(const char *json, struct mmds_config *c)
{
	cJSON *o = cJSON_Parse(json);
	cr_assert_not_null(o);
	int ret = config_json_mmds(o, c, err, sizeof(err));
	cJSON_Delete(o);
	return ret;
}

Test(mmds_config, fields_defaults_and_refusals)
{
	struct mmds_config c;
	cr_assert_eq(parse_config("{\"network_interfaces\": [\"eth0\", \"eth1\"]}", &c), 0, "%s", err);
	cr_assert(c.set);
	cr_assert_eq(c.version, MMDS_V1);
	cr_assert_eq(c.ipv4, MMDS_IPV4_DEFAULT);
	cr_assert_not(c.imds_compat);
	cr_assert_eq(c.nifaces, 2);
	cr_assert_str_eq(c.ifaces[1], "eth1");
	cr_assert_eq(parse_config("{\"version\": \"V2\", \"network_interfaces\": [], \"ipv4_address\": "
				  "\"169.254.169.250\", \"imds_compat\": true}", &c), 0);
	cr_assert_eq(c.version, MMDS_V2);
	cr_assert_eq(c.ipv4, 0xa9fea9fa);
	cr_assert(c.imds_compat);
	cr_assert_eq(parse_config("{}", &c), -EINVAL);
	cr_assert(strstr(err, "missing field `network_interfaces`"), "%s", err);
	cr_assert_eq(parse_config("{\"network_interfaces\": [], \"version\": \"V3\"}", &c), -EINVAL);
	cr_assert(strstr(err, "unknown variant `V3`, expected `V1` or `V2`"), "%s", err);
	cr_assert_eq(parse_config("{\"network_interfaces\": [], \"ipv4_address\": \"169.254.1\"}", &c), -EINVAL);
	cr_assert(strstr(err, "invalid IPv4 address syntax"), "%s", err);
	cr_assert_eq(parse_config("{\"network_interfaces\": [1]}", &c), -EINVAL);
	cr_assert_eq(parse_config("{\"network_interfaces\": [], \"x\": 1}", &c), -EINVAL);
	cr_assert(strstr(err, "unknown field `x`"), "%s", err);
}

Test(mmds_config, checked_against_the_interfaces)
{
	struct vmm_config vm;
	config_defaults(&vm);
	vm.nnets = 1;
	snprintf(vm.nets[0].iface_id, sizeof(vm.nets[0].iface_id), "eth0");
	struct mmds_config c;
	cr_assert_eq(parse_config("{\"network_interfaces\": [\"eth0\"]}", &c), 0);
	cr_assert_eq(mmds_config_check(&c, &vm, err, sizeof(err)), 0);
	cr_assert_eq(parse_config("{\"network_interfaces\": []}", &c), 0);
	cr_assert_eq(mmds_config_check(&c, &vm, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "The list of network interface IDs that allow forwarding MMDS requests is empty."));
	cr_assert_eq(parse_config("{\"network_interfaces\": [\"eth0\", \"foo\"]}", &c), 0);
	cr_assert_eq(mmds_config_check(&c, &vm, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "does not correspond to any existing network interface."));
	/* The address is checked first, as Firecracker checks it. */
	cr_assert_eq(parse_config("{\"network_interfaces\": [], \"ipv4_address\": \"169.254.255.1\"}", &c), 0);
	cr_assert_eq(mmds_config_check(&c, &vm, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "The MMDS IPv4 address is not link local."), "%s", err);
}

Test(mmds_config, config_file_section_and_vm_config)
{
	struct vmm_config vm;
	config_defaults(&vm);
	const char *file = "{\"mmds-config\": {\"version\": \"V2\", \"network_interfaces\": [\"b\", \"a\"]},"
			   " \"boot-source\": {\"kernel_image_path\": \"/k\"},"
			   " \"network-interfaces\": [{\"iface_id\": \"a\", \"host_dev_name\": \"t0\"},"
			   " {\"iface_id\": \"b\", \"host_dev_name\": \"t1\"}]}";
	cr_assert_eq(config_json_file(file, strlen(file), &vm, err, sizeof(err)), 0, "%s", err);
	cr_assert(vm.mmds.set);
	cJSON *o = config_json_vm_obj(&vm);
	char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "mmds-config"));
	/* Interfaces in their device order, as Firecracker lists them. */
	cr_assert_str_eq(s, "{\"version\":\"V2\",\"network_interfaces\":[\"a\",\"b\"],"
			    "\"ipv4_address\":\"169.254.169.254\",\"imds_compat\":false}");
	free(s);
	cJSON_Delete(o);
	struct vmm_config bad;
	config_defaults(&bad);
	const char *missing = "{\"mmds-config\": {\"network_interfaces\": [\"c\"]},"
			      " \"boot-source\": {\"kernel_image_path\": \"/k\"}}";
	cr_assert_eq(config_json_file(missing, strlen(missing), &bad, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "does not correspond to any existing network interface"), "%s", err);
}
