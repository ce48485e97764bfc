/* The host's side of a connection to a guest's ember-agent, through the
 * Unix socket of ember's vsock device (Firecracker's convention: connect
 * to the socket, write "CONNECT <port>\n", read "OK <host port>\n"; the
 * stream is then the guest's port). Every wait is bounded by a deadline,
 * so a guest that stops answering gives an error, never a hang. */
#ifndef EMBER_AGENT_CONN_H
#define EMBER_AGENT_CONN_H

#include "agent_proto.h"

/* Connect to uds_path's guest port, and wait for the agent's READY (of
 * AGENT_VERSION). Returns the connected fd, or -1 with *error set. */
int agent_connect(const char *uds_path, uint32_t port, int timeout_ms, const char **error);

/* One answer from the agent: its RESULT (res) or the text of its ERROR
 * (error_text, when is_error). buf holds the frame res points into; free
 * it with agent_reply_free. */
struct agent_reply {
	struct agent_result res;
	int is_error;
	char error_text[AGENT_MAX_ERROR + 1];
	uint8_t *buf;
};

/* Send INVOKE (id, timeout_ms, body) on fd and wait for its answer, for
 * at most timeout_ms plus wait_extra_ms. Returns 0 with *reply filled, or
 * -1 with *error set (the connection is then unusable). */
int agent_invoke(int fd, uint32_t id, uint32_t timeout_ms, const void *body, size_t len, int wait_extra_ms,
		 struct agent_reply *reply, const char **error);

/* Send raw bytes on fd and wait for the agent's next frame into *reply,
 * for at most wait_ms (for testing what the agent refuses). */
int agent_send_raw(int fd, const void *bytes, size_t len, int wait_ms, struct agent_reply *reply,
		   const char **error);

void agent_reply_free(struct agent_reply *reply);

#endif
