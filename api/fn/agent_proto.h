/* The function agent protocol, version 1: frames on one stream (a vsock
 * connection) between the host (ember-fn) and the guest's ember-agent.
 * Both sides build this file; the guest's copy is static with musl.
 *
 * Every frame is a 16-byte header and a payload, integers little-endian:
 *
 *   u32 magic     AGENT_MAGIC ("EFN1")
 *   u8  type      enum agent_type
 *   u8  flags     0
 *   u16 reserved  0
 *   u32 id        the invocation's id, chosen by the host, echoed in RESULT
 *   u32 length    payload bytes, at most AGENT_MAX_PAYLOAD
 *
 * Payloads:
 *   READY   (agent -> host, first frame of every connection, id 0):
 *           u32 protocol version (AGENT_VERSION), u32 flags (0)
 *   INVOKE  (host -> agent): u32 timeout in ms (1..AGENT_MAX_TIMEOUT_MS),
 *           then the request body (the handler's stdin)
 *   RESULT  (agent -> host): u8 status (enum agent_status), 3 zero bytes,
 *           i32 code (exit status, or the signal that ended the handler),
 *           u32 duration in microseconds, then the handler's stdout
 *   ERROR   (agent -> host): a UTF-8 text saying why the agent refused a
 *           frame; the agent closes the connection after it
 *
 * A decoder never reads past what it is given, and refuses (never
 * truncates) anything out of bounds. */
#ifndef EMBER_AGENT_PROTO_H
#define EMBER_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_MAGIC 0x314e4645u /* "EFN1" */
#define AGENT_VERSION 1u
#define AGENT_HEADER_LEN 16u
/* A body or an output: Lambda's synchronous payload limit. */
#define AGENT_MAX_BODY (6u << 20)
#define AGENT_INVOKE_FIXED 4u
#define AGENT_RESULT_FIXED 12u
#define AGENT_MAX_PAYLOAD (AGENT_MAX_BODY + AGENT_RESULT_FIXED)
#define AGENT_MAX_TIMEOUT_MS (15u * 60u * 1000u)
#define AGENT_MAX_ERROR 256u

enum agent_type {
	AGENT_READY = 1,
	AGENT_INVOKE = 2,
	AGENT_RESULT = 3,
	AGENT_ERROR = 4,
};

enum agent_status {
	AGENT_OK = 0,        /* the handler exited 0 */
	AGENT_EXIT = 1,      /* it exited non-zero (code) */
	AGENT_SIGNAL = 2,    /* a signal ended it (code) */
	AGENT_TIMEOUT = 3,   /* it ran past the timeout and was killed */
	AGENT_TOO_LARGE = 4, /* its output passed AGENT_MAX_BODY; it was killed */
	AGENT_SPAWN = 5,     /* it could not be started (code: errno) */
	AGENT_DIED = 6,      /* a --stream handler ended or broke the framing */
};
#define AGENT_STATUS_LAST AGENT_DIED

struct agent_frame {
	uint8_t type;
	uint32_t id;
	const uint8_t *payload; /* into the caller's buffer */
	uint32_t length;
};

struct agent_invoke {
	uint32_t timeout_ms;
	const uint8_t *body;
	uint32_t body_len;
};

struct agent_result {
	uint8_t status;
	int32_t code;
	uint32_t duration_us;
	const uint8_t *output;
	uint32_t output_len;
};

/* Parse one frame from buf[0..len). Returns the bytes it occupies (> 0)
 * when complete, 0 when more bytes are needed, or -1 when the bytes are
 * not a frame of this protocol, with *error saying why (the stream cannot
 * go on after that). A header announcing more than AGENT_MAX_PAYLOAD is
 * refused as soon as the header is in. */
ssize_t agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *f, const char **error);

/* Decode a frame's payload by its type. 0, or -1 with *error set. */
int agent_ready_decode(const struct agent_frame *f, uint32_t *version, const char **error);
int agent_invoke_decode(const struct agent_frame *f, struct agent_invoke *inv, const char **error);
int agent_result_decode(const struct agent_frame *f, struct agent_result *res, const char **error);

/* Write a frame's header into out: type, id and a payload of length
 * bytes (which the caller sends after it). */
void agent_header_encode(uint8_t out[AGENT_HEADER_LEN], enum agent_type type, uint32_t id, uint32_t length);

/* The fixed part of each payload, into out (which holds at least
 * AGENT_RESULT_FIXED bytes); returns its length. */
size_t agent_ready_encode(uint8_t *out);
size_t agent_invoke_encode(uint8_t *out, uint32_t timeout_ms);
size_t agent_result_encode(uint8_t *out, enum agent_status status, int32_t code, uint32_t duration_us);

/* A status's name ("ok", "timeout", ...), or "unknown". */
const char *agent_status_name(unsigned status);

/* The stream framing, version 1, between ember-agent --stream and its one
 * long-lived handler process, on the handler's stdin and stdout: text
 * header lines a shell loop can read and write (`read -r`, `head -c N`).
 *
 *   handler -> agent, once, when initialised:   "EFS1 ready\n"
 *   agent -> handler, per request:  "EFS1 <length>\n", then length bytes
 *   handler -> agent, per response: "EFS1 <code> <length>\n", then length
 *                                   bytes (its output)
 *
 * Numbers are decimal ASCII, one space apart; length is at most
 * AGENT_MAX_BODY, code 0..255 (0 answers "ok", others "exit" with that
 * code). A header line, newline included, is at most
 * AGENT_STREAM_MAX_LINE bytes. The agent sends the next request only
 * after the response to the last one, so a reader that buffers ahead
 * finds nothing extra. */
#define AGENT_STREAM_READY "EFS1 ready\n"
#define AGENT_STREAM_MAX_LINE 32u
#define AGENT_STREAM_MAX_CODE 255

/* A request's header line for a body of length bytes, into out (at least
 * AGENT_STREAM_MAX_LINE bytes); returns its length. */
size_t agent_stream_request_encode(char *out, uint32_t length);

/* Parse a response header line, line[0..len) ending in its newline.
 * 0 with *code and *length set; -1 when it is not a response header, or
 * -2 when its length passes AGENT_MAX_BODY, with *error saying why. */
int agent_stream_response_parse(const char *line, size_t len, int32_t *code, uint32_t *length, const char **error);

#endif
