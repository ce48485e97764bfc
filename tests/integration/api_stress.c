/* api-stress: many clients at once on ember's API socket, each going
 * through every kind of connection a client makes: one request and close,
 * keep-alive, pipelined requests, connecting and leaving, leaving halfway
 * through a request, bad requests, oversized bodies, Expect: 100-continue,
 * and (optionally) swapping a drive's file while the VM runs.
 *
 *   api-stress SOCK CLIENTS ROUNDS [DRIVE_ID PATH_A PATH_B]
 *
 * Prints one summary line and exits 0 if every request that expects an
 * answer got a well-formed one and none was a 5xx; 1 otherwise (each
 * failure also gets a line on stderr). The statuses themselves are not
 * checked beyond that: requests race pauses and snapshots made meanwhile. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static const char *sock_path;
static unsigned rounds;
static const char *drive_id, *drive_path[2];
static atomic_uint requests, answered, status_2xx, status_4xx, status_5xx, lost;

static int connect_api(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* A request ember never answers is a failure, not a hang. */
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		data += n;
		len -= (size_t)n;
	}
	return true;
}

/* A connection's received bytes, consumed one response at a time. */
struct reader {
	int fd;
	char buf[1 << 16];
	size_t len;
};

/* Read one response; returns its status, or -1 if the connection ended
 * or timed out first. */
static int read_response(struct reader *r)
{
	for (;;) {
		char *end = memmem(r->buf, r->len, "\r\n\r\n", 4);
		if (end) {
			int status = 0;
			if (sscanf(r->buf, "HTTP/1.1 %d", &status) != 1)
				return -1;
			size_t head = (size_t)(end + 4 - r->buf), body = 0;
			char *cl = memmem(r->buf, head, "Content-Length: ", 16);
			if (cl)
				body = strtoul(cl + 16, NULL, 10);
			if (body > sizeof(r->buf) - head)
				return -1;
			if (r->len >= head + body) {
				memmove(r->buf, r->buf + head + body, r->len - head - body);
				r->len -= head + body;
				if (status == 100)
					continue; /* the interim answer to Expect: 100-continue */
				return status;
			}
		}
		if (r->len == sizeof(r->buf))
			return -1;
		ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
		if (n <= 0)
			return -1;
		r->len += (size_t)n;
	}
}

static void count(int status, const char *what)
{
	atomic_fetch_add(&requests, 1);
	if (status < 0) {
		atomic_fetch_add(&lost, 1);
		fprintf(stderr, "api-stress: no answer to %s\n", what);
		return;
	}
	atomic_fetch_add(&answered, 1);
	if (status >= 500) {
		atomic_fetch_add(&status_5xx, 1);
		fprintf(stderr, "api-stress: %d for %s\n", status, what);
	} else if (status >= 400) {
		atomic_fetch_add(&status_4xx, 1);
	} else {
		atomic_fetch_add(&status_2xx, 1);
	}
}

/* Send requests on one connection (pipelined, all at once) and read an
 * answer to each. */
static void exchange(const char *const *reqs, size_t n, const char *what)
{
	struct reader *r = malloc(sizeof(*r));
	if (!r)
		return;
	r->len = 0;
	r->fd = connect_api();
	if (r->fd < 0) {
		for (size_t i = 0; i < n; i++)
			count(-1, what);
		free(r);
		return;
	}
	bool sent = true;
	for (size_t i = 0; i < n && sent; i++)
		sent = send_all(r->fd, reqs[i], strlen(reqs[i]));
	for (size_t i = 0; i < n; i++)
		count(sent ? read_response(r) : -1, what);
	close(r->fd);
	free(r);
}

static void put(char *out, size_t len, const char *method, const char *path, const char *body)
{
	snprintf(out, len, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n%s", method, path, strlen(body), body);
}

static void *client(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	static const char get_root[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	static const char get_close[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	char bad_json[256], flush[256], logger[256], drive[1024], oversized[256], cont[256];
	put(bad_json, sizeof(bad_json), "PUT", "/machine-config", "{\"vcpu_count\": ");
	put(flush, sizeof(flush), "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}");
	put(logger, sizeof(logger), "PUT", "/logger", "{\"level\": \"Info\", \"show_level\": true}");
	snprintf(oversized, sizeof(oversized),
		 "PUT /drives/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n{");
	snprintf(cont, sizeof(cont),
		 "PUT /logger HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 17\r\n\r\n"
		 "{\"level\": \"Info\"}");
	for (unsigned round = 0; round < rounds; round++) {
		const char *one[] = { get_close };
		exchange(one, 1, "GET / (Connection: close)");

		const char *keep[] = { "GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       "GET /machine-config HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       "GET /vm/config HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       "GET /no/such/path HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       "DELETE / HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       "GET /mmds HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       "GET /balloon/statistics HTTP/1.1\r\nHost: localhost\r\n\r\n",
				       bad_json, flush, logger, cont };
		exchange(keep, sizeof(keep) / sizeof(keep[0]), "keep-alive requests");

		const char *pipelined[] = { get_root, get_root, get_root, get_root,
					    get_root, get_root, get_root, get_close };
		exchange(pipelined, sizeof(pipelined) / sizeof(pipelined[0]), "pipelined GET /");

		const char *garbage[] = { "HELLO\r\n\r\n" };
		exchange(garbage, 1, "garbage");
		const char *big[] = { oversized };
		exchange(big, 1, "an oversized body");

		if (drive_id) {
			char body[768];
			snprintf(body, sizeof(body), "{\"drive_id\": \"%s\", \"path_on_host\": \"%s\"}", drive_id,
				 drive_path[(id + round) % 2]);
			char path[128];
			snprintf(path, sizeof(path), "/drives/%s", drive_id);
			put(drive, sizeof(drive), "PATCH", path, body);
			const char *swap[] = { drive };
			exchange(swap, 1, "PATCH /drives");
		}

		/* Clients that go away: at once, and halfway through a request. */
		int fd = connect_api();
		if (fd >= 0)
			close(fd);
		fd = connect_api();
		if (fd >= 0) {
			static const char half[] = "PUT /logger HTTP/1.1\r\nContent-Length: 40\r\n\r\n{\"lev";
			send_all(fd, half, sizeof(half) - 1);
			close(fd);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 7) {
		fprintf(stderr, "usage: api-stress SOCK CLIENTS ROUNDS [DRIVE_ID PATH_A PATH_B]\n");
		return 2;
	}
	sock_path = argv[1];
	unsigned clients = (unsigned)strtoul(argv[2], NULL, 10);
	rounds = (unsigned)strtoul(argv[3], NULL, 10);
	if (argc == 7) {
		drive_id = argv[4];
		drive_path[0] = argv[5];
		drive_path[1] = argv[6];
	}
	if (clients == 0 || clients > 256) {
		fprintf(stderr, "api-stress: CLIENTS must be 1-256\n");
		return 2;
	}
	pthread_t t[256];
	for (unsigned i = 0; i < clients; i++)
		if (pthread_create(&t[i], NULL, client, (void *)(uintptr_t)i)) {
			fprintf(stderr, "api-stress: cannot start client %u\n", i);
			return 2;
		}
	for (unsigned i = 0; i < clients; i++)
		pthread_join(t[i], NULL);
	printf("api-stress: %u requests, %u answered (%u 2xx, %u 4xx, %u 5xx), %u without an answer\n",
	       atomic_load(&requests), atomic_load(&answered), atomic_load(&status_2xx), atomic_load(&status_4xx),
	       atomic_load(&status_5xx), atomic_load(&lost));
	return atomic_load(&lost) || atomic_load(&status_5xx) ? 1 : 0;
}
