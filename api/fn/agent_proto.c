/* The function agent protocol's frames: see agent_proto.h. */
#include "agent_proto.h"

#include <stdio.h>
#include <string.h>

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static int refuse(const char **error, const char *why)
{
	*error = why;
	return -1;
}

ssize_t agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *f, const char **error)
{
	if (len < AGENT_HEADER_LEN)
		return 0;
	if (get32(buf) != AGENT_MAGIC)
		return refuse(error, "not an agent frame (bad magic)");
	uint8_t type = buf[4];
	if (type < AGENT_READY || type > AGENT_ERROR)
		return refuse(error, "unknown frame type");
	if (buf[5] != 0 || buf[6] != 0 || buf[7] != 0)
		return refuse(error, "frame flags and reserved bytes must be zero");
	uint32_t length = get32(buf + 12);
	if (length > AGENT_MAX_PAYLOAD)
		return refuse(error, "frame payload too large");
	if (len - AGENT_HEADER_LEN < length)
		return 0;
	f->type = type;
	f->id = get32(buf + 8);
	f->payload = buf + AGENT_HEADER_LEN;
	f->length = length;
	return (ssize_t)(AGENT_HEADER_LEN + length);
}

int agent_ready_decode(const struct agent_frame *f, uint32_t *version, const char **error)
{
	if (f->type != AGENT_READY)
		return refuse(error, "expected a READY frame");
	if (f->length != 8)
		return refuse(error, "READY payload must be 8 bytes");
	if (get32(f->payload + 4) != 0)
		return refuse(error, "READY flags must be zero");
	*version = get32(f->payload);
	return 0;
}

int agent_invoke_decode(const struct agent_frame *f, struct agent_invoke *inv, const char **error)
{
	if (f->type != AGENT_INVOKE)
		return refuse(error, "expected an INVOKE frame");
	if (f->length < AGENT_INVOKE_FIXED)
		return refuse(error, "INVOKE payload shorter than its timeout");
	uint32_t body_len = f->length - AGENT_INVOKE_FIXED;
	if (body_len > AGENT_MAX_BODY)
		return refuse(error, "INVOKE body too large");
	inv->timeout_ms = get32(f->payload);
	if (inv->timeout_ms == 0 || inv->timeout_ms > AGENT_MAX_TIMEOUT_MS)
		return refuse(error, "INVOKE timeout out of range");
	inv->body = f->payload + AGENT_INVOKE_FIXED;
	inv->body_len = body_len;
	return 0;
}

int agent_result_decode(const struct agent_frame *f, struct agent_result *res, const char **error)
{
	if (f->type != AGENT_RESULT)
		return refuse(error, "expected a RESULT frame");
	if (f->length < AGENT_RESULT_FIXED)
		return refuse(error, "RESULT payload shorter than its fixed part");
	const uint8_t *p = f->payload;
	if (p[0] > AGENT_STATUS_LAST)
		return refuse(error, "unknown RESULT status");
	if (p[1] != 0 || p[2] != 0 || p[3] != 0)
		return refuse(error, "RESULT padding must be zero");
	uint32_t output_len = f->length - AGENT_RESULT_FIXED;
	if (output_len > AGENT_MAX_BODY)
		return refuse(error, "RESULT output too large");
	res->status = p[0];
	res->code = (int32_t)get32(p + 4);
	res->duration_us = get32(p + 8);
	res->output = p + AGENT_RESULT_FIXED;
	res->output_len = output_len;
	return 0;
}

void agent_header_encode(uint8_t out[AGENT_HEADER_LEN], enum agent_type type, uint32_t id, uint32_t length)
{
	put32(out, AGENT_MAGIC);
	out[4] = (uint8_t)type;
	out[5] = out[6] = out[7] = 0;
	put32(out + 8, id);
	put32(out + 12, length);
}

size_t agent_ready_encode(uint8_t *out)
{
	put32(out, AGENT_VERSION);
	put32(out + 4, 0);
	return 8;
}

size_t agent_invoke_encode(uint8_t *out, uint32_t timeout_ms)
{
	put32(out, timeout_ms);
	return AGENT_INVOKE_FIXED;
}

size_t agent_result_encode(uint8_t *out, enum agent_status status, int32_t code, uint32_t duration_us)
{
	out[0] = (uint8_t)status;
	out[1] = out[2] = out[3] = 0;
	put32(out + 4, (uint32_t)code);
	put32(out + 8, duration_us);
	return AGENT_RESULT_FIXED;
}

const char *agent_status_name(unsigned status)
{
	static const char *const names[] = {
		[AGENT_OK] = "ok", [AGENT_EXIT] = "exit", [AGENT_SIGNAL] = "signal",
		[AGENT_TIMEOUT] = "timeout", [AGENT_TOO_LARGE] = "too_large", [AGENT_SPAWN] = "spawn",
		[AGENT_DIED] = "died",
	};
	return status <= AGENT_STATUS_LAST ? names[status] : "unknown";
}

size_t agent_stream_request_encode(char *out, uint32_t length)
{
	return (size_t)snprintf(out, AGENT_STREAM_MAX_LINE, "EFS1 %u\n", length);
}

/* A decimal number of 1..10 digits at *p, up to the byte stop; advances *p. */
static int decimal(const char **p, const char *end, char stop, uint64_t *v)
{
	const char *s = *p;
	*v = 0;
	while (s < end && *s >= '0' && *s <= '9' && s - *p < 10)
		*v = *v * 10 + (uint64_t)(*s++ - '0');
	if (s == *p || s == end || *s != stop)
		return -1;
	*p = s + 1;
	return 0;
}

int agent_stream_response_parse(const char *line, size_t len, int32_t *code, uint32_t *length, const char **error)
{
	const char *p = line, *end = line + len;
	uint64_t c, l;
	if (len > AGENT_STREAM_MAX_LINE || len == 0 || line[len - 1] != '\n')
		return refuse(error, "a response header is one line of at most 32 bytes");
	if (len < 5 || memcmp(line, "EFS1 ", 5) != 0)
		return refuse(error, "a response header starts with \"EFS1 \"");
	p += 5;
	if (decimal(&p, end, ' ', &c) < 0 || decimal(&p, end, '\n', &l) < 0 || p != end)
		return refuse(error, "a response header is \"EFS1 <code> <length>\"");
	if (c > AGENT_STREAM_MAX_CODE)
		return refuse(error, "a response code is 0..255");
	if (l > AGENT_MAX_BODY) {
		*error = "a response passes 6 MiB";
		return -2;
	}
	*code = (int32_t)c;
	*length = (uint32_t)l;
	return 0;
}
