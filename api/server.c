#include "server.h"

#include <cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../vmm/controller.h"
#include "../vmm/log.h"
#include "../vmm/seccomp.h"

#define MAX_CLIENTS 32

struct client {
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off, out_cap;
	bool close_after;      /* close once out is flushed */
	bool continue_sent;    /* "100 Continue" already sent for this request */
};

static struct api_server *the_server; /* for api_server_metrics */

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static void out_append(struct client *c, const char *data, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + len)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (!p) {
			c->close_after = true;
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

static void respond(struct api_server *s, struct client *c, int status, const char *body,
		    const char *fault, bool keep_alive)
{
	char *json = NULL;
	if (status >= 400) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "fault_message", fault && fault[0] ? fault : http_reason(status));
		json = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		body = json;
	}
	size_t cap = (body ? strlen(body) : 0) + 256;
	char *buf = malloc(cap);
	ssize_t n = buf ? http_format_response(buf, cap, status, body, keep_alive) : -1;
	if (n > 0)
		out_append(c, buf, (size_t)n);
	else
		c->close_after = true;
	free(buf);
	free(json);
	if (status < 300)
		atomic_fetch_add(&s->stats.responses_2xx, 1);
	else if (status < 500)
		atomic_fetch_add(&s->stats.responses_4xx, 1);
	else
		atomic_fetch_add(&s->stats.responses_5xx, 1);
	if (!keep_alive)
		c->close_after = true;
}

static void serve_request(struct api_server *s, struct client *c, const struct http_request *req)
{
	uint64_t start = now_us();
	struct action *a = calloc(1, sizeof(*a));
	struct route_result r;
	if (!a) {
		respond(s, c, 500, NULL, "out of memory", false);
		return;
	}
	api_route(req, a, &r);
	atomic_fetch_add(&s->stats.requests[r.endpoint], 1);
	if (r.status == 200)
		respond(s, c, 200, r.body, NULL, req->keep_alive);
	else if (r.status)
		respond(s, c, r.status, NULL, r.fault, req->keep_alive);
	else {
		controller_submit(s->ctrl, a);
		respond(s, c, a->status, a->body, a->fault, req->keep_alive);
		free(a->body);
	}
	free(a);
	uint64_t took = now_us() - start;
	atomic_fetch_add(&s->stats.latency_us_total, took);
	unsigned long long max = atomic_load(&s->stats.latency_us_max);
	while (took > max && !atomic_compare_exchange_weak(&s->stats.latency_us_max, &max, took))
		;
}

/* Serve every complete request in the client's buffer. */
static void process_input(struct api_server *s, struct client *c)
{
	while (c->in_len && !c->close_after) {
		struct http_request req;
		ssize_t n = http_parse_request(c->in, c->in_len, s->max_body, &req);
		if (n == 0) {
			if (req.headers_done && req.expect_continue && !c->continue_sent) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				out_append(c, cont, sizeof(cont) - 1);
				c->continue_sent = true;
			}
			return;
		}
		if (n < 0) {
			/* The framing is lost: answer and close. */
			respond(s, c, (int)-n, NULL, req.error, false);
			atomic_fetch_add(&s->stats.requests[EP_UNKNOWN], 1);
			c->in_len = 0;
			return;
		}
		serve_request(s, c, &req);
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
		c->continue_sent = false;
	}
}

static bool client_read(struct api_server *s, struct client *c)
{
	if (c->in_len == c->in_cap)
		return false; /* the parser already refused anything this long */
	ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return false;
	if (n > 0) {
		c->in_len += (size_t)n;
		process_input(s, c);
	}
	return true;
}

static bool client_flush(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return !c->close_after;
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void *serve(void *arg)
{
	struct api_server *s = arg;
	pthread_setname_np(pthread_self(), "ember-api");
	char err[160];
	if (seccomp_install(SECCOMP_ROLE_API, err, sizeof(err)))
		die("API thread: %s", err);
	static struct client clients[MAX_CLIENTS];
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;
	/* Room for the largest acceptable request: head + body. */
	size_t in_cap = HTTP_MAX_HEAD + s->max_body;

	for (;;) {
		struct pollfd pfd[MAX_CLIENTS + 2];
		int map[MAX_CLIENTS + 2];
		int n = 0, nclients = 0;
		pfd[n] = (struct pollfd){ .fd = s->stop_fd, .events = POLLIN };
		map[n++] = -1;
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (clients[i].fd < 0)
				continue;
			nclients++;
			short ev = POLLIN;
			if (clients[i].out_len > clients[i].out_off)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){ .fd = clients[i].fd, .events = ev };
			map[n++] = i;
		}
		if (nclients < MAX_CLIENTS) {
			pfd[n] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
			map[n++] = -2;
		}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("API server: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break; /* asked to stop */
		for (int k = 1; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (map[k] == -2) {
				int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				for (int i = 0; i < MAX_CLIENTS; i++) {
					if (clients[i].fd >= 0)
						continue;
					clients[i].fd = fd;
					clients[i].in = malloc(in_cap);
					clients[i].in_cap = in_cap;
					if (!clients[i].in)
						client_close(&clients[i]);
					fd = -1;
					break;
				}
				if (fd >= 0)
					close(fd);
				atomic_fetch_add(&s->stats.connections, 1);
				continue;
			}
			struct client *c = &clients[map[k]];
			bool keep = true;
			if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
				keep = client_read(s, c);
			if (keep || c->out_len > c->out_off)
				keep = client_flush(c) && keep;
			if (!keep)
				client_close(c);
		}
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0)
			client_close(&clients[i]);
	return NULL;
}

int api_server_start(struct api_server *s, const char *path, size_t max_body,
		     struct controller *ctrl, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = s->stop_fd = -1;
	s->max_body = max_body;
	s->ctrl = ctrl;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "--api-sock %s: longer than %zu bytes", path, sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	snprintf(s->path, sizeof(s->path), "%s", path);

	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "--api-sock %s: exists and is not a socket", path);
			return -EEXIST;
		}
		/* Non-blocking: a listener whose backlog is full (EAGAIN) is live, and
		 * a blocking connect() would wait for it to accept. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 &&
			    (connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0 || errno == EAGAIN);
		if (probe >= 0)
			close(probe);
		if (live) {
			snprintf(err, errlen, "--api-sock %s: in use by a running server", path);
			return -EADDRINUSE;
		}
		unlink(path); /* stale: nobody is accepting on it */
	}
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(s->listen_fd, 64) < 0) {
		int e = errno;
		snprintf(err, errlen, "--api-sock %s: %s", path, strerror(e));
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		return -e;
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int e = s->stop_fd < 0 ? errno : pthread_create(&s->thread, NULL, serve, s);
	if (e) {
		snprintf(err, errlen, "API server: %s", strerror(e));
		close(s->listen_fd);
		unlink(path);
		return -e;
	}
	s->running = true;
	the_server = s;
	return 0;
}

void api_server_stop(struct api_server *s)
{
	if (!s->running)
		return;
	uint64_t one = 1;
	if (write(s->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(s->thread, NULL);
	close(s->listen_fd);
	close(s->stop_fd);
	unlink(s->path);
	s->running = false;
}

void api_server_metrics(cJSON *out)
{
	struct api_server *s = the_server;
	if (!s)
		return;
	cJSON *req = cJSON_AddObjectToObject(out, "requests");
	for (int i = 0; i < EP_COUNT; i++)
		cJSON_AddNumberToObject(req, api_endpoint_name((enum api_endpoint)i),
					(double)atomic_load(&s->stats.requests[i]));
	cJSON_AddNumberToObject(out, "responses_2xx", (double)atomic_load(&s->stats.responses_2xx));
	cJSON_AddNumberToObject(out, "responses_4xx", (double)atomic_load(&s->stats.responses_4xx));
	cJSON_AddNumberToObject(out, "responses_5xx", (double)atomic_load(&s->stats.responses_5xx));
	cJSON_AddNumberToObject(out, "latency_us_total", (double)atomic_load(&s->stats.latency_us_total));
	cJSON_AddNumberToObject(out, "latency_us_max", (double)atomic_load(&s->stats.latency_us_max));
	cJSON_AddNumberToObject(out, "connections", (double)atomic_load(&s->stats.connections));
}
