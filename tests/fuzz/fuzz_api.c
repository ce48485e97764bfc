/* libFuzzer target: bytes from an API client through the HTTP parser and
 * the router, which parses JSON bodies into typed actions. Every input
 * must become a request, a refusal or a "need more bytes", never a crash
 * or a read outside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct action a;
	struct route_result r;
	/* An exact-size copy so ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	size_t off = 0;
	for (int i = 0; i < 8 && off < size; i++) {
		struct http_request req;
		ssize_t n = http_parse_request(buf + off, size - off, 4096, &req);
		if (n <= 0)
			break;
		api_route(&req, &a, &r);
		off += (size_t)n;
	}
	free(buf);
	return 0;
}
