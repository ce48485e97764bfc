/* ember-fn: ember's function runtime. An HTTP API on a Unix socket:
 *
 *   PUT    /functions/{name}         register a function and build its
 *                                    template snapshot (answers when ready)
 *   POST   /functions/{name}/invoke  the body to the handler; its output back
 *   GET    /functions/{name}         configuration, counts, latency
 *   DELETE /functions/{name}         after its running invocations end
 *   GET    /metrics                  every function's counts and the total
 *
 * usage: ember-fn --api-sock PATH --state-dir DIR [--ember PATH] [--jailer PATH]
 * (ember and ember-jailer default to the ones beside ember-fn; functions
 * with a "jail" need the jailer)
 *
 * Each connection is served by a thread of its own (at most FN_MAX_CLIENTS
 * at once), one request per connection. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../http.h"
#include "agent_proto.h"
#include "function.h"

#define FN_MAX_CLIENTS 256
/* A request must arrive whole within this. */
#define FN_REQUEST_TIMEOUT_S 10

static atomic_uint clients;

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* A response: status, the extra header lines (each ending in CRLF, or
 * ""), a body of len bytes of type. */
static void respond(int fd, int status, const char *headers, const char *type, const void *body, size_t len)
{
	char head[1024];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nServer: ember-fn\r\nConnection: close\r\n%sContent-Type: %s\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 status, http_reason(status), headers, type, len);
	if (n > 0 && (size_t)n < sizeof(head))
		send_all(fd, head, (size_t)n);
	if (len)
		send_all(fd, body, len);
}

static void respond_error_with(int fd, int status, const char *headers, const char *msg)
{
	char *esc = NULL;
	/* A JSON string for the message, as ember's API gives faults. */
	size_t n = strlen(msg);
	esc = malloc(2 * n + 32);
	if (!esc)
		return respond(fd, 500, headers, "application/json", "", 0);
	char *o = esc + sprintf(esc, "{\"fault_message\":\"");
	for (const char *p = msg; *p; p++) {
		if (*p == '"' || *p == '\\')
			*o++ = '\\';
		*o++ = (unsigned char)*p < 0x20 ? ' ' : *p;
	}
	o += sprintf(o, "\"}");
	respond(fd, status, headers, "application/json", esc, (size_t)(o - esc));
	free(esc);
}

static void respond_error(int fd, int status, const char *msg)
{
	respond_error_with(fd, status, "", msg);
}

/* "/functions/NAME" or "/functions/NAME/invoke": NAME into name, and
 * whether it was the invoke path. 0, or -1 for another path. */
static int parse_path(const char *path, char name[FN_NAME_MAX + 1], int *invoke)
{
	static const char prefix[] = "/functions/";
	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	const char *p = path + sizeof(prefix) - 1, *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0 || n > FN_NAME_MAX)
		return -1;
	memcpy(name, p, n);
	name[n] = 0;
	*invoke = slash != NULL;
	return slash && strcmp(slash, "/invoke") != 0 ? -1 : 0;
}

static void handle(int fd, const struct http_request *req)
{
	char name[FN_NAME_MAX + 1], err[512];
	int invoke;
	if (strcmp(req->path, "/metrics") == 0) {
		if (req->method != HTTP_GET)
			return respond_error(fd, 405, "use GET /metrics");
		char *json = fn_metrics();
		if (!json)
			return respond_error(fd, 500, "out of memory");
		respond(fd, 200, "", "application/json", json, strlen(json));
		free(json);
		return;
	}
	if (parse_path(req->path, name, &invoke) < 0)
		return respond_error(fd, 404, "no such path (use /functions/{name}, /functions/{name}/invoke or /metrics)");
	if (invoke) {
		if (req->method != HTTP_POST)
			return respond_error(fd, 405, "use POST /functions/{name}/invoke");
		struct fn_answer a;
		fn_invoke(name, req->body, req->body_len, &a);
		char headers[512];
		snprintf(headers, sizeof(headers),
			 "X-Ember-Fn-Status: %s\r\nX-Ember-Fn-Code: %d\r\nX-Ember-Fn-Handler-Us: %u\r\n"
			 "X-Ember-Fn-Restore-Ms: %lld\r\nX-Ember-Fn-Total-Ms: %lld\r\nX-Ember-Fn-Pooled: %d\r\n"
			 "X-Ember-Fn-Load-Us: %u\r\nX-Ember-Fn-Resume-Us: %u\r\nX-Ember-Fn-Connect-Us: %u\r\n"
			 "X-Ember-Fn-Agent-Us: %u\r\nX-Ember-Fn-Destroy-Us: %u\r\nX-Ember-Fn-Reused: %d\r\n",
			 a.agent_status ? a.agent_status : "none", a.code, a.handler_us, a.restore_ms, a.total_ms,
			 a.pooled, a.load_us, a.resume_us, a.connect_us, a.agent_us, a.destroy_us,
			 a.reused);
		if (a.http_status == 200)
			respond(fd, 200, headers, "application/octet-stream", a.output, a.output_len);
		else
			respond_error_with(fd, a.http_status, headers, a.error);
		free(a.output);
		return;
	}
	switch (req->method) {
	case HTTP_PUT: {
		struct fn_config c;
		if (fn_config_parse(req->body, req->body_len, &c, err, sizeof(err)) < 0)
			return respond_error(fd, 400, err);
		int st = fn_create(name, &c, err, sizeof(err));
		return st == 204 ? respond(fd, 204, "", "application/json", "", 0) : respond_error(fd, st, err);
	}
	case HTTP_GET: {
		char *json = fn_describe(name);
		if (!json)
			return respond_error(fd, 404, "no such function");
		respond(fd, 200, "", "application/json", json, strlen(json));
		free(json);
		return;
	}
	case HTTP_DELETE:
		return fn_delete(name) == 204 ? respond(fd, 204, "", "application/json", "", 0)
					      : respond_error(fd, 404, "no such function");
	default:
		return respond_error(fd, 405, "use PUT, GET or DELETE on /functions/{name}");
	}
}

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	size_t cap = HTTP_MAX_HEAD + AGENT_MAX_BODY, have = 0;
	char *buf = malloc(cap);
	struct timeval tv = { .tv_sec = FN_REQUEST_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (buf) {
		struct http_request req;
		ssize_t r = http_parse_request_post(buf, have, AGENT_MAX_BODY, true, &req);
		if (r > 0) {
			handle(fd, &req);
			break;
		}
		if (r < 0) {
			respond_error(fd, (int)-r, req.error ? req.error : "bad request");
			break;
		}
		ssize_t n = recv(fd, buf + have, cap - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	free(buf);
	close(fd);
	atomic_fetch_sub(&clients, 1);
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: ember-fn --api-sock PATH --state-dir DIR [--ember PATH] [--jailer PATH]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *dir = NULL, *ember = NULL, *jailer = NULL;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		if (strcmp(argv[i], "--api-sock") == 0)
			sock = argv[++i];
		else if (strcmp(argv[i], "--state-dir") == 0)
			dir = argv[++i];
		else if (strcmp(argv[i], "--ember") == 0)
			ember = argv[++i];
		else if (strcmp(argv[i], "--jailer") == 0)
			jailer = argv[++i];
		else
			return usage();
	}
	if (!sock || !dir)
		return usage();
	/* ember and ember-jailer beside ember-fn unless told. */
	char self[PATH_MAX], beside[PATH_MAX + 8], jailer_beside[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		*strrchr(self, '/') = 0;
		snprintf(beside, sizeof(beside), "%s/ember", self);
		snprintf(jailer_beside, sizeof(jailer_beside), "%s/ember-jailer", self);
	}
	if (!ember && n <= 0)
		return fprintf(stderr, "ember-fn: cannot find myself; give --ember\n"), 1;
	if (!ember)
		ember = beside;
	if (access(ember, X_OK) < 0)
		return fprintf(stderr, "ember-fn: %s: %s\n", ember, strerror(errno)), 1;
	if (jailer && access(jailer, X_OK) < 0)
		return fprintf(stderr, "ember-fn: --jailer %s: %s\n", jailer, strerror(errno)), 1;
	if (!jailer && n > 0 && access(jailer_beside, X_OK) == 0)
		jailer = jailer_beside;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fprintf(stderr, "ember-fn: %s: %s\n", dir, strerror(errno)), 1;
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return fprintf(stderr, "ember-fn: %s: %s\n", dir, strerror(errno)), 1;
	if (fn_setup(real, ember, jailer) < 0)
		return fprintf(stderr, "ember-fn: --state-dir %s: longer than %d bytes (the clones' Unix sockets "
				       "live under it)\n", real, FN_STATE_DIR_MAX), 1;
	signal(SIGPIPE, SIG_IGN);
	fn_sweep();

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(sock) >= sizeof(sa.sun_path))
		return fprintf(stderr, "ember-fn: --api-sock: path too long\n"), 1;
	strcpy(sa.sun_path, sock);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0)
		return fprintf(stderr, "ember-fn: %s: %s\n", sock, strerror(errno)), 1;
	fprintf(stderr, "ember-fn: serving on %s (functions under %s, VMM %s, jailer %s)\n", sock, real, ember,
		jailer ? jailer : "none");
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
			continue;
		}
		pthread_t t;
		if (atomic_fetch_add(&clients, 1) >= FN_MAX_CLIENTS ||
		    pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0) {
			respond_error(fd, 503, "too many connections");
			close(fd);
			atomic_fetch_sub(&clients, 1);
		}
	}
}
