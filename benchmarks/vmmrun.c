/* vmmrun: drive a VMM from outside (see vmmrun.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vmmrun.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->pid = -1;
	r->out = r->qmp = r->in = -1;
	r->resumed = r->progress = r->entry = -1;
	r->last_count = -1;
}

void run_log(struct run *r, const char *what, const char *line)
{
	if (r->log)
		fprintf(r->log, "%10.3f %s %s\n", now_ms() - r->t0, what, line);
}

static void serial_line(struct run *r, char *line)
{
	run_log(r, "out", line);
	if (r->marker && strstr(line, r->marker))
		r->marker_seen = true;
	if (strstr(line, "FAIL memory") || (r->restoring && strstr(line, "testvm: booted"))) {
		fprintf(stderr, "%s: the restored guest %s: %s\n", program_invocation_short_name,
			strstr(line, "FAIL") ? "lost memory" : "started over", line);
		r->failed = 3;
		return;
	}
	char *e = strstr(line, "entering the guest ");
	if (e && r->entry < 0) {
		/* ember's clock started when it took the request: close to t0. */
		r->entry = atof(e + 19) / 1000.0;
		return;
	}
	char *c = strstr(line, "testvm: count ");
	if (!c)
		return;
	long n = strtol(c + 14, NULL, 10);
	if (n > r->last_count)
		r->last_count = n;
	if (r->restoring && n > r->after) {
		if (r->new_counts++ == 0)
			r->progress = now_ms() - r->t0;
	}
}

static void qmp_line(struct run *r, char *line)
{
	run_log(r, "qmp<", line);
	if (strstr(line, "\"QMP\""))
		r->greeted = true;
	else if (strstr(line, "\"return\""))
		r->returns++;
	else if (strstr(line, "\"error\""))
		snprintf(r->error, sizeof(r->error), "%s", line);
	else if (strstr(line, "\"RESUME\"")) {
		if (r->resumed < 0)
			r->resumed = now_ms() - r->t0;
	} else if (strstr(line, "\"MIGRATION\"")) {
		char *s = strstr(line, "\"status\"");
		s = s ? strchr(s + 8, '"') : NULL;
		if (s) {
			size_t n = strcspn(s + 1, "\"");
			if (n >= sizeof(r->migration))
				n = sizeof(r->migration) - 1;
			memcpy(r->migration, s + 1, n);
			r->migration[n] = 0;
		}
	}
}

/* Split what arrived into lines; returns false at EOF. */
static bool take(int fd, char *buf, size_t cap, size_t *len, struct run *r,
		 void (*line)(struct run *, char *))
{
	ssize_t n = read(fd, buf + *len, cap - 1 - *len);
	if (n <= 0)
		return n < 0 && errno == EINTR;
	*len += (size_t)n;
	buf[*len] = 0;
	char *start = buf, *nl;
	while ((nl = memchr(start, '\n', (size_t)(buf + *len - start)))) {
		for (char *p = start; p < nl; p++)
			if (!*p)
				*p = ' ';
		*nl = 0;
		if (nl > start && nl[-1] == '\r')
			nl[-1] = 0;
		line(r, start);
		start = nl + 1;
	}
	*len = (size_t)(buf + *len - start);
	memmove(buf, start, *len);
	if (*len == cap - 1) /* a line longer than the buffer: take it as is */
		line(r, buf), *len = 0;
	return true;
}

void run_pump(struct run *r, double ms)
{
	struct pollfd p[2] = { { .fd = r->out_eof ? -1 : r->out, .events = POLLIN },
			       { .fd = (r->qmp < 0 || r->qmp_eof) ? -1 : r->qmp, .events = POLLIN } };
	if (ms < 0)
		ms = 0;
	if (poll(p, 2, (int)ms + 1) <= 0)
		return;
	if (p[0].revents && !take(r->out, r->obuf, sizeof(r->obuf), &r->olen, r, serial_line))
		r->out_eof = true;
	if (p[1].revents && !take(r->qmp, r->qbuf, sizeof(r->qbuf), &r->qlen, r, qmp_line))
		r->qmp_eof = true;
}

bool run_broken(const struct run *r)
{
	return r->failed || r->error[0] || r->out_eof || r->qmp_eof ||
	       strcmp(r->migration, "failed") == 0 || strcmp(r->migration, "cancelled") == 0;
}

void run_start(struct run *r, const char *sock, char **argv)
{
	r->forked = now_ms();
	int out[2], in[2] = { -1, -1 };
	if (pipe2(out, O_CLOEXEC) < 0 || (r->with_stdin && pipe2(in, O_CLOEXEC) < 0)) {
		fprintf(stderr, "%s: pipe: %s\n", program_invocation_short_name, strerror(errno));
		exit(1);
	}
	unlink(sock);
	pid_t parent = getpid();
	r->pid = fork();
	if (r->pid == 0) {
		/* The VMM must not outlive its driver, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int stdin_fd = r->with_stdin ? in[0] : open("/dev/null", O_RDONLY);
		dup2(stdin_fd, 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		/* Only stdio: the VMM's open files are then all its own. */
		close_range(3, ~0U, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	r->out = out[0];
	if (r->with_stdin) {
		close(in[0]);
		r->in = in[1];
	}
	r->qmp = -1;
}

int run_finish(struct run *r, bool kill_it)
{
	if (kill_it)
		kill(r->pid, SIGKILL);
	int status;
	waitpid(r->pid, &status, 0);
	if (r->log)
		fclose(r->log);
	return r->failed;
}

/* ---- ember: its API over HTTP --------------------------------------- */

int api_connect(const char *sock)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

bool api_send(struct run *r, int fd, const char *method, const char *path, const char *body)
{
	char req[8192];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, body ? strlen(body) : 0, body ? body : "");
	run_log(r, "api>", req);
	if (n <= 0 || n >= (int)sizeof(req) || write(fd, req, (size_t)n) != n) {
		snprintf(r->error, sizeof(r->error), "%s %s: request too long or write failed", method, path);
		return false;
	}
	return true;
}

int api_answer(struct run *r, int fd, const char *method, const char *path, double deadline)
{
	char resp[4096];
	size_t len = 0;
	int status = -1;
	resp[0] = 0;
	while (now_ms() < deadline && len < sizeof(resp) - 1) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = r->out_eof ? -1 : r->out, .events = POLLIN } };
		if (poll(p, 2, (int)(deadline - now_ms()) + 1) <= 0)
			continue;
		if (p[1].revents && !take(r->out, r->obuf, sizeof(r->obuf), &r->olen, r, serial_line))
			r->out_eof = true;
		if (!p[0].revents)
			continue;
		ssize_t got = read(fd, resp + len, sizeof(resp) - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
		resp[len] = 0;
		if (status < 0 && strchr(resp, '\n'))
			status = atoi(resp + 9); /* "HTTP/1.1 204 ..." */
		char *end = strstr(resp, "\r\n\r\n");
		char *cl = strcasestr(resp, "Content-Length:");
		if (end && (!cl || strlen(end + 4) >= (size_t)atol(cl + 15)))
			break;
	}
	run_log(r, "api<", resp);
	if (status < 0)
		snprintf(r->error, sizeof(r->error), "%s %s: no answer", method, path);
	else if (status >= 300)
		snprintf(r->error, sizeof(r->error), "%s %s: %.400s", method, path, resp);
	return status;
}

int api_do(struct run *r, const char *sock, const char *method, const char *path,
	   const char *body, double deadline)
{
	int fd = api_connect(sock);
	if (fd < 0) {
		snprintf(r->error, sizeof(r->error), "API socket %s: %s", sock, strerror(errno));
		return -1;
	}
	int status = api_send(r, fd, method, path, body) ? api_answer(r, fd, method, path, deadline) : -1;
	close(fd);
	return status;
}

bool api_ready(struct run *r, const char *sock, double deadline)
{
	while (now_ms() < deadline && !r->out_eof) {
		int fd = api_connect(sock);
		if (fd >= 0) {
			close(fd);
			return api_do(r, sock, "GET", "/", NULL, deadline) == 200;
		}
		run_pump(r, 5);
	}
	return false;
}

bool api_script(struct run *r, const char *sock, char *script, double deadline)
{
	char *save = NULL;
	for (char *l = strtok_r(script, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char method[16], path[256];
		int off = 0;
		if (sscanf(l, "%15s %255s %n", method, path, &off) < 2)
			continue;
		int status = api_do(r, sock, method, path, l + off, deadline);
		if (status < 200 || status >= 300)
			return false;
	}
	return true;
}

char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}
