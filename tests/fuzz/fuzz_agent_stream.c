/* libFuzzer target: what a --stream handler writes on its stdout, read the
 * way ember-agent reads it (api/fn/agent_proto.h, the stream framing):
 * header lines of at most AGENT_STREAM_MAX_LINE bytes, each through
 * agent_stream_response_parse, and the body it announces skipped. Every
 * line must be refused with a reason or give a code and a length within
 * the bounds, from a line of the documented form. */
#include <stdlib.h>
#include <string.h>

#include "../../api/fn/agent_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		int32_t code = -1;
		uint32_t length = 0;
		const char *error = NULL;
		int r = agent_stream_response_parse(p, len, &code, &length, &error);
		if (r < 0) {
			if (!error || (r != -1 && r != -2))
				abort();
			p += len;
			continue;
		}
		if (r != 0 || code < 0 || code > AGENT_STREAM_MAX_CODE || length > AGENT_MAX_BODY ||
		    len > AGENT_STREAM_MAX_LINE || len < 9 || memcmp(p, "EFS1 ", 5) != 0 || p[len - 1] != '\n')
			abort();
		for (size_t i = 5; i < len - 1; i++)
			if ((p[i] < '0' || p[i] > '9') && p[i] != ' ')
				abort();
		p += len;
		p += length < (size_t)(end - p) ? length : (size_t)(end - p);
	}
	/* The request header the agent writes is always one it could parse
	 * back as a line of the same form. */
	if (size >= 4) {
		uint32_t v;
		memcpy(&v, data, 4);
		char line[AGENT_STREAM_MAX_LINE];
		size_t n = agent_stream_request_encode(line, v);
		if (n >= AGENT_STREAM_MAX_LINE || line[n - 1] != '\n' || memcmp(line, "EFS1 ", 5) != 0)
			abort();
	}
	return 0;
}
