#include <criterion/criterion.h>
#include <string.h>

#include "../../api/fn/agent_proto.h"

static uint8_t buf[256];
static const char *error;

/* A frame of type with payload p[0..len) into buf; returns its length. */
static size_t frame(enum agent_type type, uint32_t id, const void *p, size_t len)
{
	agent_header_encode(buf, type, id, (uint32_t)len);
	memcpy(buf + AGENT_HEADER_LEN, p, len);
	return AGENT_HEADER_LEN + len;
}

Test(agent_proto, invoke_round_trip_and_split_frames)
{
	uint8_t p[64];
	size_t n = agent_invoke_encode(p, 1500);
	memcpy(p + n, "hello", 5);
	size_t len = frame(AGENT_INVOKE, 42, p, n + 5);
	struct agent_frame f;
	/* Every prefix needs more; the whole frame is taken exactly. */
	for (size_t cut = 0; cut < len; cut++)
		cr_assert_eq(agent_frame_parse(buf, cut, &f, &error), 0, "prefix %zu", cut);
	cr_assert_eq(agent_frame_parse(buf, len + 3, &f, &error), (ssize_t)len);
	cr_assert_eq(f.type, AGENT_INVOKE);
	cr_assert_eq(f.id, 42);
	struct agent_invoke inv;
	cr_assert_eq(agent_invoke_decode(&f, &inv, &error), 0);
	cr_assert_eq(inv.timeout_ms, 1500);
	cr_assert_eq(inv.body_len, 5);
	cr_assert_arr_eq(inv.body, "hello", 5);
	/* The same frame is not a RESULT or a READY. */
	struct agent_result res;
	uint32_t version;
	cr_assert_eq(agent_result_decode(&f, &res, &error), -1);
	cr_assert_eq(agent_ready_decode(&f, &version, &error), -1);
	cr_assert_str_eq(error, "expected a READY frame");
}

Test(agent_proto, result_and_ready_round_trip)
{
	uint8_t p[64];
	size_t n = agent_result_encode(p, AGENT_EXIT, -3, 123456);
	memcpy(p + n, "out", 3);
	struct agent_frame f;
	cr_assert_gt(agent_frame_parse(buf, frame(AGENT_RESULT, 9, p, n + 3), &f, &error), 0);
	struct agent_result res;
	cr_assert_eq(agent_result_decode(&f, &res, &error), 0);
	cr_assert_eq(res.status, AGENT_EXIT);
	cr_assert_eq(res.code, -3);
	cr_assert_eq(res.duration_us, 123456);
	cr_assert_eq(res.output_len, 3);
	cr_assert_str_eq(agent_status_name(res.status), "exit");

	cr_assert_gt(agent_frame_parse(buf, frame(AGENT_READY, 0, p, agent_ready_encode(p)), &f, &error), 0);
	uint32_t version = 0;
	cr_assert_eq(agent_ready_decode(&f, &version, &error), 0);
	cr_assert_eq(version, AGENT_VERSION);
}

Test(agent_proto, headers_that_are_not_frames_are_refused)
{
	struct agent_frame f;
	size_t len = frame(AGENT_READY, 0, "\1\0\0\0\0\0\0\0", 8);
	buf[0] ^= 1;
	cr_assert_eq(agent_frame_parse(buf, len, &f, &error), -1);
	cr_assert_str_eq(error, "not an agent frame (bad magic)");
	frame(9, 0, "", 0);
	cr_assert_eq(agent_frame_parse(buf, AGENT_HEADER_LEN, &f, &error), -1);
	cr_assert_str_eq(error, "unknown frame type");
	frame(AGENT_READY, 0, "", 0);
	buf[6] = 1;
	cr_assert_eq(agent_frame_parse(buf, AGENT_HEADER_LEN, &f, &error), -1);
	/* Too large is refused from the header alone, before the payload. */
	agent_header_encode(buf, AGENT_RESULT, 1, AGENT_MAX_PAYLOAD + 1);
	cr_assert_eq(agent_frame_parse(buf, AGENT_HEADER_LEN, &f, &error), -1);
	cr_assert_str_eq(error, "frame payload too large");
	agent_header_encode(buf, AGENT_RESULT, 1, AGENT_MAX_PAYLOAD);
	cr_assert_eq(agent_frame_parse(buf, AGENT_HEADER_LEN, &f, &error), 0);
}

Test(agent_proto, payloads_out_of_bounds_are_refused)
{
	uint8_t p[64] = { 0 };
	struct agent_frame f;
	struct agent_invoke inv;
	struct agent_result res;
	uint32_t version;
	/* INVOKE: no timeout at all, a zero one, one past the limit. */
	agent_frame_parse(buf, frame(AGENT_INVOKE, 1, p, 3), &f, &error);
	cr_assert_eq(agent_invoke_decode(&f, &inv, &error), -1);
	agent_frame_parse(buf, frame(AGENT_INVOKE, 1, p, agent_invoke_encode(p, 0)), &f, &error);
	cr_assert_eq(agent_invoke_decode(&f, &inv, &error), -1);
	cr_assert_str_eq(error, "INVOKE timeout out of range");
	agent_frame_parse(buf, frame(AGENT_INVOKE, 1, p, agent_invoke_encode(p, AGENT_MAX_TIMEOUT_MS + 1)), &f,
			  &error);
	cr_assert_eq(agent_invoke_decode(&f, &inv, &error), -1);
	/* RESULT: short, an unknown status, padding not zero. */
	agent_frame_parse(buf, frame(AGENT_RESULT, 1, p, AGENT_RESULT_FIXED - 1), &f, &error);
	cr_assert_eq(agent_result_decode(&f, &res, &error), -1);
	agent_result_encode(p, AGENT_OK, 0, 0);
	p[0] = AGENT_STATUS_LAST + 1;
	agent_frame_parse(buf, frame(AGENT_RESULT, 1, p, AGENT_RESULT_FIXED), &f, &error);
	cr_assert_eq(agent_result_decode(&f, &res, &error), -1);
	cr_assert_str_eq(error, "unknown RESULT status");
	p[0] = AGENT_OK;
	p[2] = 1;
	agent_frame_parse(buf, frame(AGENT_RESULT, 1, p, AGENT_RESULT_FIXED), &f, &error);
	cr_assert_eq(agent_result_decode(&f, &res, &error), -1);
	/* READY: wrong length, flags set. */
	agent_frame_parse(buf, frame(AGENT_READY, 0, p, 4), &f, &error);
	cr_assert_eq(agent_ready_decode(&f, &version, &error), -1);
	memcpy(p, "\1\0\0\0\1\0\0\0", 8);
	agent_frame_parse(buf, frame(AGENT_READY, 0, p, 8), &f, &error);
	cr_assert_eq(agent_ready_decode(&f, &version, &error), -1);
	cr_assert_str_eq(agent_status_name(99), "unknown");
}

Test(agent_proto, stream_headers)
{
	char line[AGENT_STREAM_MAX_LINE];
	size_t n = agent_stream_request_encode(line, AGENT_MAX_BODY);
	cr_assert_eq(n, strlen("EFS1 6291456\n"));
	cr_assert_arr_eq(line, "EFS1 6291456\n", n);
	cr_assert_eq(agent_stream_request_encode(line, 0), 7);

	int32_t code = -1;
	uint32_t length = 1;
	cr_assert_eq(agent_stream_response_parse("EFS1 0 0\n", 9, &code, &length, &error), 0);
	cr_assert_eq(code, 0);
	cr_assert_eq(length, 0);
	cr_assert_eq(agent_stream_response_parse("EFS1 255 6291456\n", 17, &code, &length, &error), 0);
	cr_assert_eq(code, 255);
	cr_assert_eq(length, AGENT_MAX_BODY);
	/* Past the bound: its own answer, so the agent can say too_large. */
	cr_assert_eq(agent_stream_response_parse("EFS1 0 6291457\n", 15, &code, &length, &error), -2);
	cr_assert_eq(agent_stream_response_parse("EFS1 0 9999999999\n", 18, &code, &length, &error), -2);
	static const char *const bad[] = {
		"EFS1 0 5", "EFS2 0 5\n", "EFS1 0 5 \n", "EFS1  0 5\n", "EFS1 -1 5\n", "EFS1 256 5\n",
		"EFS1 0 +5\n", "EFS1 0\n", "EFS1 ready\n", "EFS1 0 5\r\n", "EFS1 0 99999999999\n", "",
		"EFS1 0 00000000000000000000000005\n", "\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		cr_assert_eq(agent_stream_response_parse(bad[i], strlen(bad[i]), &code, &length, &error), -1, "%s",
			     bad[i]);
		cr_assert_not_null(error, "%s", bad[i]);
	}
	cr_assert_str_eq(agent_status_name(AGENT_DIED), "died");
}
