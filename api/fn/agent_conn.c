/* The host's side of an agent connection: see agent_conn.h. */
#include "agent_conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is readable or the deadline passes: 1, 0 (timed out) or -1. */
static int wait_readable(int fd, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one whole frame into a buffer of its own (*buf, for the caller to
 * free). Returns 0, or -1 with *error set. */
static int read_frame(int fd, long long deadline, struct agent_frame *f, uint8_t **buf, const char **error)
{
	size_t cap = AGENT_HEADER_LEN, have = 0;
	uint8_t *b = malloc(cap);
	if (!b) {
		*error = "out of memory";
		return -1;
	}
	for (;;) {
		ssize_t used = agent_frame_parse(b, have, f, error);
		if (used > 0)
			break;
		if (used < 0)
			goto fail;
		/* The header says how much is coming: read exactly that. */
		size_t want = have < AGENT_HEADER_LEN ? AGENT_HEADER_LEN
				: AGENT_HEADER_LEN + ((size_t)b[12] | (size_t)b[13] << 8 | (size_t)b[14] << 16 |
						      (size_t)b[15] << 24);
		if (want > cap) {
			uint8_t *nb = realloc(b, want);
			if (!nb) {
				*error = "out of memory";
				goto fail;
			}
			b = nb;
			cap = want;
		}
		int r = wait_readable(fd, deadline);
		if (r <= 0) {
			*error = r == 0 ? "the agent did not answer in time" : "poll failed";
			goto fail;
		}
		ssize_t n = recv(fd, b + have, want - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error = "the agent closed the connection";
			goto fail;
		}
		have += (size_t)n;
	}
	*buf = b;
	return 0;
fail:
	free(b);
	return -1;
}

int agent_connect(const char *uds_path, uint32_t port, int timeout_ms, const char **error)
{
	long long deadline = now_ms() + timeout_ms;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(uds_path) >= sizeof(sa.sun_path)) {
		*error = "vsock socket path too long";
		return -1;
	}
	strcpy(sa.sun_path, uds_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		*error = "cannot connect to the vsock socket";
		goto fail;
	}
	char line[40];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write_all(fd, line, (size_t)n) < 0) {
		*error = "cannot write CONNECT";
		goto fail;
	}
	/* "OK <port>\n", read a byte at a time: the agent's frames follow it. */
	size_t have = 0;
	for (;;) {
		if (wait_readable(fd, deadline) <= 0 || recv(fd, line + have, 1, 0) != 1) {
			*error = "no answer to CONNECT (is the agent listening?)";
			goto fail;
		}
		if (line[have] == '\n')
			break;
		if (++have == sizeof(line) - 1) {
			*error = "the answer to CONNECT is too long";
			goto fail;
		}
	}
	if (have < 4 || memcmp(line, "OK ", 3) != 0) {
		*error = "CONNECT was refused";
		goto fail;
	}
	struct agent_frame f;
	uint8_t *buf;
	uint32_t version;
	if (read_frame(fd, deadline, &f, &buf, error) < 0)
		goto fail;
	int bad = agent_ready_decode(&f, &version, error);
	free(buf);
	if (bad < 0)
		goto fail;
	if (version != AGENT_VERSION) {
		*error = "the agent speaks another protocol version";
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

static int read_reply(int fd, long long deadline, struct agent_reply *reply, const char **error)
{
	struct agent_frame f;
	memset(reply, 0, sizeof(*reply));
	if (read_frame(fd, deadline, &f, &reply->buf, error) < 0)
		return -1;
	if (f.type == AGENT_ERROR) {
		size_t len = f.length > AGENT_MAX_ERROR ? AGENT_MAX_ERROR : f.length;
		memcpy(reply->error_text, f.payload, len);
		reply->error_text[len] = 0;
		reply->is_error = 1;
		return 0;
	}
	if (agent_result_decode(&f, &reply->res, error) < 0) {
		agent_reply_free(reply);
		return -1;
	}
	return 0;
}

int agent_invoke(int fd, uint32_t id, uint32_t timeout_ms, const void *body, size_t len, int wait_extra_ms,
		 struct agent_reply *reply, const char **error)
{
	if (len > AGENT_MAX_BODY) {
		*error = "request body too large";
		return -1;
	}
	uint8_t head[AGENT_HEADER_LEN + AGENT_INVOKE_FIXED];
	agent_header_encode(head, AGENT_INVOKE, id, (uint32_t)(AGENT_INVOKE_FIXED + len));
	agent_invoke_encode(head + AGENT_HEADER_LEN, timeout_ms);
	if (write_all(fd, head, sizeof(head)) < 0 || (len && write_all(fd, body, len) < 0)) {
		*error = "cannot send the request to the agent";
		return -1;
	}
	return read_reply(fd, now_ms() + timeout_ms + wait_extra_ms, reply, error);
}

int agent_send_raw(int fd, const void *bytes, size_t len, int wait_ms, struct agent_reply *reply,
		   const char **error)
{
	if (write_all(fd, bytes, len) < 0) {
		*error = "cannot send to the agent";
		return -1;
	}
	return read_reply(fd, now_ms() + wait_ms, reply, error);
}

void agent_reply_free(struct agent_reply *reply)
{
	free(reply->buf);
	reply->buf = NULL;
}
