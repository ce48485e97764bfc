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
#include "../vmm/metrics.h"
#include "../vmm/seccomp.h"

/* What the server waits for from a client; each wait has a timeout. */
enum client_wait {
	WAIT_REQUEST,  /* nothing buffered: its next request (idle timeout) */
	WAIT_REST,     /* part of a request: the rest of it (request timeout) */
	WAIT_READER,   /* unsent answers: for it to read them (idle timeout) */
};

struct client {
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off, out_cap;
	bool close_after;      /* send what is queued, serve nothing more, close */
	bool eof;              /* it sent all it will: serve that, then close */
	bool continue_sent;    /* "100 Continue" already sent for this request */
	size_t skip;           /* bytes still to come of a refused request's body */
	enum client_wait wait;
	uint64_t since_ms;     /* when this wait began, or the last progress in it */
};

/* The API thread's connections. */
struct clients {
	struct client c[API_MAX_CLIENTS];
	uint64_t accept_after_ms; /* the listener rests until then (at the fd limit) */
};

static struct api_server *the_server; /* for api_server_metrics */

#ifdef EMBER_TEST_HOOKS
unsigned api_server_test_timeout_ms;
#endif

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static size_t out_pending(const struct client *c)
{
	return c->out_len - c->out_off;
}

static void out_append(struct client *c, const char *data, size_t len)
{
	if (c->out_off) { /* what was sent makes room: the buffer never creeps */
		memmove(c->out, c->out + c->out_off, out_pending(c));
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
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

/* Write one answer. status >= 400: fault is the fault_message; a request
 * the HTTP layer refused (http_error) is answered in the words and shape
 * of Firecracker's HTTP server instead. */
static void respond(struct api_server *s, struct client *c, int status, const char *body,
		    const char *fault, bool keep_alive, bool deprecation, bool http_error)
{
	char *json = NULL;
	if (http_error) {
		const char *f = fault && fault[0] ? fault : http_reason(status);
		size_t n = strlen(f) + 96;
		json = malloc(n);
		if (json)
			snprintf(json, n, "{ \"error\": \"%s\nAll previous unanswered requests will be dropped.\" }", f);
		body = json;
	} else if (status >= 400) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "fault_message", fault && fault[0] ? fault : http_reason(status));
		json = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		body = json;
	}
	size_t cap = (body ? strlen(body) : 0) + 256;
	char *buf = malloc(cap);
	ssize_t n = buf ? http_format_response(buf, cap, status, body, keep_alive, deprecation) : -1;
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

/* Rust's Debug form of a string, as Firecracker's log lines quote paths
 * and bodies: in double quotes, with \", \\, \n, \r, \t and \u{..}. */
static void debug_quote(char *out, size_t cap, const char *s, size_t len)
{
	size_t o = 0;
	if (cap < 8)
		return;
	out[o++] = '"';
	for (size_t i = 0; i < len && o + 10 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];
		const char *esc = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\n' ? "\\n"
				: ch == '\r' ? "\\r" : ch == '\t' ? "\\t" : NULL;
		if (esc)
			o += (size_t)snprintf(out + o, cap - o, "%s", esc);
		else if (ch < 0x20 || ch == 0x7f)
			o += (size_t)snprintf(out + o, cap - o, "\\u{%x}", ch);
		else
			out[o++] = (char)ch;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* "Put", "Patch": the method as Firecracker's log lines name it. */
static const char *method_word(enum http_method m)
{
	return m == HTTP_GET ? "Get" : m == HTTP_PUT ? "Put" : m == HTTP_PATCH ? "Patch" : "Delete";
}

/* The line Firecracker logs for each request it receives. */
static void log_request(const struct http_request *req)
{
	if (!log_enabled(LOG_INFO))
		return;
	char path[HTTP_MAX_PATH * 2 + 8];
	debug_quote(path, sizeof(path), req->path, strlen(req->path));
	if (!req->body_len || strcmp(req->path, "/mmds") == 0) {
		log_info("The API server received a %s request on %s.", method_word(req->method), path);
		return;
	}
	size_t cap = req->body_len * 2 + 16 > 8192 ? 8192 : req->body_len * 2 + 16;
	char *body = malloc(cap);
	if (body)
		debug_quote(body, cap, req->body, req->body_len);
	log_info("The API server received a %s request on %s with body %s.", method_word(req->method),
		 path, body ? body : "\"\"");
	free(body);
}

static void log_outcome(int status, const char *fault)
{
	if (status == 200)
		log_info("The request was executed successfully. Status code: 200 OK.");
	else if (status == 204)
		log_info("The request was executed successfully. Status code: 204 No Content.");
	else /* Firecracker's words for 413 differ from the reason phrase */
		log_error("Received Error. Status code: %d %s. Message: %s", status,
			  status == 413 ? "Payload too large" : http_reason(status), fault ? fault : "");
}

static void serve_request(struct api_server *s, struct client *c, const struct http_request *req)
{
	uint64_t start = now_us();
	struct action *a = calloc(1, sizeof(*a));
	struct route_result r;
	if (!a) {
		respond(s, c, 500, NULL, "out of memory", false, false, false);
		return;
	}
	log_request(req);
	api_route(req, a, &r);
	atomic_fetch_add(&s->stats.requests[r.endpoint], 1);
	metrics_api_request(req->method, r.endpoint, r.status >= 400);
	bool deprecated = r.deprecation[0] != '\0';
	if (deprecated) {
		log_warn("%s", r.deprecation);
		metrics_deprecated_api_call();
	}
	if (r.status == 200) {
		log_outcome(200, NULL);
		respond(s, c, 200, r.body, NULL, req->keep_alive, deprecated, false);
	} else if (r.status) {
		log_outcome(r.status, r.fault);
		respond(s, c, r.status, NULL, r.fault, req->keep_alive, deprecated, false);
	} else {
		controller_submit(s->ctrl, a);
		log_outcome(a->status, a->fault);
		respond(s, c, a->status, a->body, a->fault, req->keep_alive, deprecated, false);
		free(a->body);
	}
	free(a);
	uint64_t took = now_us() - start;
	/* As Firecracker (its test framework pairs it with each request line). */
	log_debug("Total previous API call duration: %llu us.", (unsigned long long)took);
	atomic_fetch_add(&s->stats.latency_us_total, took);
	unsigned long long max = atomic_load(&s->stats.latency_us_max);
	while (took > max && !atomic_compare_exchange_weak(&s->stats.latency_us_max, &max, took))
		;
}

/* Serve the complete requests in the client's buffer until its unsent
 * answers reach API_OUTPUT_LIMIT (the rest wait in the buffer). Returns
 * how many it answered. */
static unsigned process_input(struct api_server *s, struct client *c)
{
	unsigned answered = 0;
	size_t off = 0; /* served so far: moved out of the buffer once, at the end */
	if (c->skip) { /* the rest of a body too large to take */
		off = c->skip < c->in_len ? c->skip : c->in_len;
		c->skip -= off;
	}
	while (off < c->in_len && !c->close_after && out_pending(c) < API_OUTPUT_LIMIT) {
		struct http_request req;
		ssize_t n = http_parse_request(c->in + off, c->in_len - off, s->max_body, &req);
		if (n == 0) {
			if (req.headers_done && req.expect_continue && !c->continue_sent) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				out_append(c, cont, sizeof(cont) - 1);
				c->continue_sent = true;
			}
			break;
		}
		answered++;
		if (n < 0) {
			atomic_fetch_add(&s->stats.requests[EP_UNKNOWN], 1);
			log_error("API Server error on retrieving incoming request: Parsing error: %s", req.error);
			if (req.skip) {
				/* Refused but framed (a body over the limit): answer, pass
				 * over its body, as it arrives, and serve on. */
				respond(s, c, (int)-n, NULL, req.error, req.keep_alive, false, true);
				size_t have = c->in_len - off;
				c->skip = req.skip > have ? req.skip - have : 0;
				off += req.skip > have ? have : req.skip;
				c->continue_sent = false;
				continue;
			}
			/* The framing is lost: answer and close. */
			respond(s, c, (int)-n, NULL, req.error, false, false, true);
			off = c->in_len;
			break;
		}
		serve_request(s, c, &req);
		off += (size_t)n;
		c->continue_sent = false;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return answered;
}

/* Send what the socket takes. Returns the bytes sent, or -1 on an error. */
static ssize_t client_flush(struct client *c)
{
	size_t sent = 0;
	while (out_pending(c)) {
		ssize_t n = send(c->fd, c->out + c->out_off, out_pending(c), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -1;
		c->out_off += (size_t)n;
		sent += (size_t)n;
	}
	if (!out_pending(c))
		c->out_off = c->out_len = 0;
	return (ssize_t)sent;
}

/* Poll for its requests only while it reads its answers: a client that
 * pipelines and never reads holds at most API_OUTPUT_LIMIT (plus one
 * answer) and a request buffer. */
static short client_events(const struct client *c)
{
	short ev = 0;
	if (!c->close_after && !c->eof && c->in_len < c->in_cap && out_pending(c) < API_OUTPUT_LIMIT)
		ev |= POLLIN;
	if (out_pending(c))
		ev |= POLLOUT;
	return ev;
}

static uint64_t client_deadline(const struct client *c)
{
	uint64_t ms = c->wait == WAIT_REST ? API_REQUEST_TIMEOUT_MS : API_IDLE_TIMEOUT_MS;
#ifdef EMBER_TEST_HOOKS
	if (api_server_test_timeout_ms)
		ms = api_server_test_timeout_ms;
#endif
	return c->since_ms + ms;
}

/* What the client's timeout now runs from: a new wait, or progress in
 * this one (a request answered, a byte of answers sent), restarts it;
 * more bytes of an unfinished request do not. */
static void client_note(struct client *c, bool progress, uint64_t now_ms)
{
	enum client_wait w = out_pending(c) ? WAIT_READER : c->in_len ? WAIT_REST : WAIT_REQUEST;
	if (progress || w != c->wait) {
		c->wait = w;
		c->since_ms = now_ms;
	}
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* The client's fd is ready (revents): read, serve, send. */
static void client_run(struct api_server *s, struct client *c, short revents, uint64_t now_ms)
{
	if (revents & POLLERR)
		goto close;
	if (revents & POLLIN) {
		ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
		if (n > 0)
			c->in_len += (size_t)n;
		else if (n == 0)
			c->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			goto close;
	} else if (revents & POLLHUP) {
		goto close; /* gone, and nothing left to read */
	}
	bool progress = false;
	unsigned answered;
	do { /* as its answers drain, the requests it queued are served */
		answered = process_input(s, c);
		ssize_t sent = client_flush(c);
		if (sent < 0)
			goto close;
		progress |= answered || sent;
	} while (answered);
	if (!out_pending(c) && (c->close_after || c->eof))
		goto close;
	client_note(c, progress, now_ms);
	return;
close:
	client_close(c);
}

/* A new connection. With every slot taken the longest idle client makes
 * room, so no set of clients holds the API forever. At the fd limit the
 * listener rests a while instead of waking poll at once again. */
static void accept_client(struct api_server *s, struct clients *cl, uint64_t now_ms)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			log_ratelimited(LOG_WARN, "API server: cannot accept a connection: %s (retrying every %d ms)",
					strerror(errno), API_ACCEPT_BACKOFF_MS);
			cl->accept_after_ms = now_ms + API_ACCEPT_BACKOFF_MS;
		}
		return; /* EAGAIN, ECONNABORTED, ...: nothing waits */
	}
	atomic_fetch_add(&s->stats.connections, 1);
	struct client *c = NULL;
	for (int i = 0; i < API_MAX_CLIENTS; i++) {
		struct client *o = &cl->c[i];
		if (o->fd < 0) {
			c = o;
			break;
		}
		if (!c || o->since_ms < c->since_ms)
			c = o;
	}
	if (c->fd >= 0) {
		log_ratelimited(LOG_WARN, "API server: %d connections open: closing the longest idle one",
				API_MAX_CLIENTS);
		client_close(c);
	}
	size_t in_cap = HTTP_MAX_HEAD + s->max_body; /* the largest acceptable request */
	*c = (struct client){ .fd = fd, .in = malloc(in_cap), .in_cap = in_cap, .since_ms = now_ms };
	if (!c->in)
		client_close(c);
}

static void *serve(void *arg)
{
	struct api_server *s = arg;
	pthread_setname_np(pthread_self(), "ember-api");
	log_set_thread_name("fc_api"); /* Firecracker's name, in log lines */
	char err[160];
	if (seccomp_install(SECCOMP_ROLE_API, err, sizeof(err)))
		die("API thread: %s", err);
	log_info("API server started."); /* clients wait for this line */
	static struct clients cl;
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		cl.c[i].fd = -1;

	for (;;) {
		struct pollfd pfd[API_MAX_CLIENTS + 2];
		struct client *who[API_MAX_CLIENTS + 2] = { NULL };
		int n = 0;
		uint64_t now = now_us() / 1000;
		int64_t wait_ms = -1; /* until the first deadline */
		pfd[n++] = (struct pollfd){ .fd = s->stop_fd, .events = POLLIN };
		for (int i = 0; i < API_MAX_CLIENTS; i++) {
			struct client *c = &cl.c[i];
			if (c->fd < 0)
				continue;
			int64_t left = (int64_t)client_deadline(c) - (int64_t)now;
			if (wait_ms < 0 || left < wait_ms)
				wait_ms = left < 0 ? 0 : left;
			who[n] = c;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = client_events(c) };
		}
		/* Last, so a client it evicts has been served already. */
		if (now >= cl.accept_after_ms)
			pfd[n++] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
		else if (wait_ms < 0 || (int64_t)(cl.accept_after_ms - now) < wait_ms)
			wait_ms = (int64_t)(cl.accept_after_ms - now);
		if (poll(pfd, (nfds_t)n, (int)wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			log_error("API server: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break; /* asked to stop */
		now = now_us() / 1000;
		for (int k = 1; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (who[k])
				client_run(s, who[k], pfd[k].revents, now);
			else
				accept_client(s, &cl, now);
		}
		/* After reading: a client whose bytes came while a long
		 * request held this thread is not timed out for it. */
		for (int i = 0; i < API_MAX_CLIENTS; i++) {
			struct client *c = &cl.c[i];
			if (c->fd >= 0 && now >= client_deadline(c)) {
				log_debug("API server: closing a connection %s", c->wait == WAIT_REST ?
					  "whose request did not arrive in time" : "idle for too long");
				client_close(c);
			}
		}
	}
	for (int i = 0; i < API_MAX_CLIENTS; i++)
		if (cl.c[i].fd >= 0)
			client_close(&cl.c[i]);
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

	/* Firecracker's rule: a path that exists, whatever it is (a live
	 * server's socket, one left behind, any file), is not taken over. */
	struct stat st;
	if (lstat(path, &st) == 0) {
		snprintf(err, errlen, "Failed to open the API socket at: %s. Check that it is not already used.", path);
		return -EADDRINUSE;
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
	char quoted[sizeof(addr.sun_path) * 2 + 8];
	debug_quote(quoted, sizeof(quoted), path, strlen(path));
	log_info("Listening on API socket (%s).", quoted);
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
