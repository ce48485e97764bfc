/* libFuzzer target: the bytes a guest's agent sends the host, through the
 * function agent protocol's decoders (api/fn/agent_proto.h), the way the
 * host reads them: a stream of frames, each decoded by its type. The
 * first byte sets how many bytes arrive at a time, so frames split at
 * every point. Every input must end in "need more", a refusal with a
 * reason, or decoded frames whose fields lie inside the input and within
 * the protocol's bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/fn/agent_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const struct agent_frame *f, const uint8_t *lo, const uint8_t *hi)
{
	const char *error = NULL;
	uint32_t version;
	struct agent_invoke inv;
	struct agent_result res;
	if (f->payload < lo || f->payload + f->length > hi || f->length > AGENT_MAX_PAYLOAD)
		abort();
	if (agent_ready_decode(f, &version, &error) < 0 && !error)
		abort();
	error = NULL;
	if (agent_invoke_decode(f, &inv, &error) == 0) {
		if (inv.body + inv.body_len > hi || inv.body_len > AGENT_MAX_BODY || inv.timeout_ms == 0 ||
		    inv.timeout_ms > AGENT_MAX_TIMEOUT_MS)
			abort();
	} else if (!error) {
		abort();
	}
	error = NULL;
	if (agent_result_decode(f, &res, &error) == 0) {
		if (res.output + res.output_len > hi || res.output_len > AGENT_MAX_BODY ||
		    res.status > AGENT_STATUS_LAST || strcmp(agent_status_name(res.status), "unknown") == 0)
			abort();
	} else if (!error) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] % 32 + 1;
	data++;
	size--;
	/* The host's reassembly: "have" grows by step until a frame is whole. */
	size_t start = 0, have = 0;
	while (start < size) {
		have = have + step > size - start ? size - start : have + step;
		struct agent_frame f;
		const char *error = NULL;
		ssize_t used = agent_frame_parse(data + start, have, &f, &error);
		if (used < 0) {
			if (!error)
				abort();
			return 0;
		}
		if (used == 0) {
			if (start + have == size)
				return 0;
			continue;
		}
		if ((size_t)used > have || (size_t)used < AGENT_HEADER_LEN)
			abort();
		check_frame(&f, data + start, data + start + have);
		start += (size_t)used;
		have = 0;
	}
	return 0;
}
