/* libFuzzer target: a guest's bytes to the metadata service's HTTP
 * answer (vmm/mmds/mmds.h), as the network responder hands them over,
 * one request after another out of the same stream. The first byte picks
 * the configuration (V1/V2, IMDS compatibility) and the clock. Every input
 * must get "need more", "too large" or a complete, well-framed response
 * that fits the buffer, never a crash or a read outside the input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/mmds/mmds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mmds *mmds;
static char *out;
static size_t out_cap;

static void setup(void)
{
	static const char store[] =
		"{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\",\"list\":[\"a\",{\"b\":\"c\"}],"
		"\"n\":1.5,\"e\":\"\",\"~k/\":{\"x\":null}},\"user-data\":\"hello\"}}";
	char err[256];
	mmds = mmds_new(4096);
	if (!mmds || mmds_put(mmds, store, sizeof(store) - 1, err, sizeof(err)))
		abort();
	out_cap = mmds_response_limit(mmds);
	out = malloc(out_cap);
	if (!out)
		abort();
}

/* A response: a status line, headers ending in an empty line, and as many
 * body bytes as its Content-Length says. */
static void check_response(const char *r, size_t n)
{
	if (n > out_cap || n < 16 || memcmp(r, "HTTP/1.", 7) != 0)
		__builtin_trap();
	const char *end = memmem(r, n, "\r\n\r\n", 4);
	const char *cl = memmem(r, n, "Content-Length: ", 16);
	if (!end || !cl || cl > end)
		__builtin_trap();
	size_t len = strtoul(cl + 16, NULL, 10);
	if ((size_t)(end + 4 - r) + len != n)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!mmds)
		setup();
	if (!size)
		return 0;
	struct mmds_config c = *mmds_get_config(mmds);
	c.version = data[0] & 1 ? MMDS_V2 : MMDS_V1;
	c.imds_compat = data[0] & 2;
	mmds_set_config(mmds, &c);
	uint64_t now_ms = (uint64_t)(data[0] >> 2) * 1000;
	data++, size--;
	/* An exact-size copy so ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	size_t off = 0;
	for (int i = 0; i < 16 && off < size; i++) {
		ssize_t len = mmds_http_request_len(buf + off, size - off);
		ssize_t n = mmds_http_answer(mmds, buf + off, size - off, out, out_cap, now_ms);
		if ((len <= 0) != (n <= 0) || (len < 0 && n != len))
			__builtin_trap(); /* the framing and the answer disagree */
		if (n <= 0)
			break;
		check_response(out, (size_t)n);
		off += (size_t)len;
	}
	free(buf);
	return 0;
}
