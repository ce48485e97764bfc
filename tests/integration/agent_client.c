/* agent-client: one request to a guest's ember-agent, for the tests.
 *
 *   agent-client UDS PORT TIMEOUT_MS [COUNT]  send stdin's bytes as the body
 *       COUNT times on one connection; print each RESULT's "status=NAME
 *       code=N bytes=N duration_us=N" on stderr and its output on stdout
 *   agent-client --raw UDS PORT              send stdin's bytes as they are
 *       after READY, and print the agent's answer (an ERROR's text)
 *
 * Exits 0 when every request got an answer, 1 otherwise. */
#include "../../api/fn/agent_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t *read_stdin(size_t *len)
{
	size_t cap = 1 << 16;
	uint8_t *buf = malloc(cap);
	*len = 0;
	for (;;) {
		if (*len == cap && !(buf = realloc(buf, cap *= 2)))
			return NULL;
		ssize_t n = read(0, buf + *len, cap - *len);
		if (n <= 0)
			return n < 0 ? NULL : buf;
		*len += (size_t)n;
	}
}

static void print_reply(const struct agent_reply *r)
{
	if (r->is_error) {
		fprintf(stderr, "error=%s\n", r->error_text);
		return;
	}
	fprintf(stderr, "status=%s code=%d bytes=%u duration_us=%u\n", agent_status_name(r->res.status),
		r->res.code, r->res.output_len, r->res.duration_us);
	fwrite(r->res.output, 1, r->res.output_len, stdout);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int raw = argc > 1 && strcmp(argv[1], "--raw") == 0;
	char **a = argv + raw;
	int n = argc - raw;
	if (n < (raw ? 3 : 4) || n > (raw ? 3 : 5)) {
		fprintf(stderr, "usage: agent-client UDS PORT TIMEOUT_MS [COUNT] | --raw UDS PORT\n");
		return 2;
	}
	size_t len;
	uint8_t *body = read_stdin(&len);
	const char *error = NULL;
	int fd = body ? agent_connect(a[1], (uint32_t)atoi(a[2]), 10000, &error) : -1;
	if (fd < 0) {
		fprintf(stderr, "agent-client: %s\n", body ? error : "cannot read stdin");
		return 1;
	}
	struct agent_reply reply;
	if (raw) {
		if (agent_send_raw(fd, body, len, 10000, &reply, &error) < 0) {
			fprintf(stderr, "agent-client: %s\n", error);
			return 1;
		}
		print_reply(&reply);
		return 0;
	}
	int count = n == 5 ? atoi(a[4]) : 1;
	for (int i = 0; i < count; i++) {
		/* The answer may follow the handler's timeout by a minute: a
		 * loaded host stalls the guest that kills the handler. */
		if (agent_invoke(fd, (uint32_t)i + 1, (uint32_t)atoi(a[3]), body, len, 60000, &reply, &error) < 0) {
			fprintf(stderr, "agent-client: %s\n", error);
			return 1;
		}
		print_reply(&reply);
		agent_reply_free(&reply);
	}
	return 0;
}
