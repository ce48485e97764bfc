/* restorebench: save the counting test guest under QEMU or ember, and time
 * each restoring it, with one external stopwatch.
 *
 *   restorebench qemu-save     QMP_SOCK URI TIMEOUT_S -- QEMU_COMMAND...
 *   restorebench qemu-restore  QMP_SOCK URI AFTER LINES TIMEOUT_S -- QEMU_COMMAND...
 *   restorebench ember-save    API_SOCK SETUP_JSON STATE MEM TIMEOUT_S -- EMBER_COMMAND...
 *   restorebench ember-restore API_SOCK LOAD_JSON AFTER LINES TIMEOUT_S -- EMBER_COMMAND...
 *
 * The guest is build/testvm.elf with testvm.counter=SPIN testvm.fill=MIB:
 * it prints "testvm: count N" lines on its serial port, re-checking 64
 * pages of its memory pattern before each, and "testvm: FAIL memory at"
 * when they came back wrong. QEMU_COMMAND must put the serial port on
 * stdout (-serial stdio) and a QMP server on QMP_SOCK (-qmp
 * unix:QMP_SOCK,server=on,wait=off). Both stdout and stderr are watched.
 *
 * URI is a QEMU migration URI (exec:cat > FILE, exec:cat FILE, ...) or
 * file:PATH, which QEMU 7.2 does not have: restorebench opens PATH itself,
 * passes the fd over QMP (getfd, SCM_RIGHTS) and uses fd:snapshot.
 *
 * qemu-save: boots the guest, waits for a few count lines, pauses it (QMP
 * stop), migrates it to URI, waits until the migration completed and
 * quits QEMU. Prints the last count seen; the restored guest must count on
 * from there.
 *
 * qemu-restore: QEMU_COMMAND is the same with -incoming defer. Waits until
 * QMP answers, then t0: (getfd and) migrate-incoming URI. The VM resumes
 * by itself when the saved state allows it (saved with -global
 * migration.store-global-state=off); otherwise "cont" is sent the moment
 * the migration completed. Prints "<running_ms> <progress_ms>" since t0:
 *   running_ms   QMP's RESUME event arrived
 *   progress_ms  the first "testvm: count N" line with N > AFTER was complete
 * (-1 for a step not reached within TIMEOUT_S), then "-1 <exec_ms>" (see
 * ember-restore). It then waits for LINES
 * more count lines (each checks 64 more pages) before killing QEMU.
 *
 * With BENCH_ABSOLUTE=1 in the environment, a restore prints two more
 * columns: the VMM's fork and "running" as CLOCK_MONOTONIC milliseconds
 * (-1 if not reached), to time restores run together.
 *
 * ember-save: EMBER_COMMAND serves its API on API_SOCK. SETUP_JSON is a
 * file of "METHOD PATH BODY" lines sent in order (boot source, machine
 * config, InstanceStart); after a few count lines the VM is paused
 * (PATCH /vm) and snapshotted to STATE and MEM. Prints the last count.
 *
 * ember-restore: once the API answers, t0: PUT /snapshot/load with the
 * body in the file LOAD_JSON (resume_vm: true). Prints
 * "<running_ms> <progress_ms> <entry_ms>" since t0:
 *   running_ms   the load request's 204 arrived (the vCPUs have started)
 *   progress_ms  as for QEMU
 *   entry_ms     when vCPU 0 entered the guest, by ember's own log line
 *                ("entering the guest N us after the snapshot load
 *                request"), counted from t0 plus ember's N
 * and then exec_ms: running counted from the VMM's exec instead (both
 * restore modes print it; QEMU's line has -1 for entry_ms).
 *
 * Exit status: 0 all well; 1 timeout, QEMU or QMP error; 3 the guest
 * reported "FAIL memory" or started over (said so on stderr).
 * RESTOREBENCH_LOG=path saves QEMU's output and the QMP conversation, with
 * times in ms since t0 (since the fork for qemu-save). QEMU is killed
 * when restorebench ends, however it ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAVE_AFTER_LINES 3

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct run {
	pid_t pid;
	int out, qmp;
	bool out_eof, qmp_eof;
	char obuf[8192], qbuf[65536];
	size_t olen, qlen;
	FILE *log;
	double t0;
	/* QMP */
	bool greeted;
	int returns;
	char error[512];
	char migration[32]; /* status of the last MIGRATION event */
	double resumed;     /* RESUME event, -1 before */
	/* guest */
	bool restoring;
	long after;         /* counts above this are new */
	long last_count;
	long new_counts;
	double progress;    /* first new count line, -1 before */
	double entry;       /* ember: vCPU 0 entered the guest, -1 before */
	double forked;      /* when the VMM was started, before t0 */
	int failed;         /* 3: the guest said FAIL or started over */
};

static void logf_(struct run *r, const char *what, const char *line)
{
	if (r->log)
		fprintf(r->log, "%10.3f %s %s\n", now_ms() - r->t0, what, line);
}

static void serial_line(struct run *r, char *line)
{
	logf_(r, "out", line);
	if (strstr(line, "FAIL memory") || (r->restoring && strstr(line, "testvm: booted"))) {
		fprintf(stderr, "restorebench: the restored guest %s: %s\n",
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
	logf_(r, "qmp<", line);
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

/* Wait up to ms for output from QEMU or QMP and handle it. */
static void pump(struct run *r, double ms)
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

/* Running, counted from the VMM's exec instead of t0 (-1 if it never ran). */
static double from_exec(const struct run *r)
{
	return r->resumed < 0 ? -1 : r->resumed + (r->t0 - r->forked);
}

/* The end of a restore's line of times. */
static void print_absolute(const struct run *r)
{
	if (getenv("BENCH_ABSOLUTE"))
		printf(" %.3f %.3f", r->forked, r->resumed < 0 ? -1 : r->t0 + r->resumed);
	printf("\n");
}

static bool broken(struct run *r)
{
	return r->failed || r->error[0] || r->out_eof || r->qmp_eof ||
	       strcmp(r->migration, "failed") == 0 || strcmp(r->migration, "cancelled") == 0;
}

/* Pump until cond holds, QEMU broke, or deadline (absolute ms). */
#define WAIT_FOR(r, cond, deadline) \
	while (!(cond) && !broken(r) && now_ms() < (deadline)) \
		pump((r), (deadline) - now_ms())

static void qmp_send(struct run *r, const char *cmd)
{
	logf_(r, "qmp>", cmd);
	size_t len = strlen(cmd), off = 0;
	while (off < len) {
		ssize_t n = write(r->qmp, cmd + off, len - off);
		if (n <= 0 && errno != EINTR) {
			snprintf(r->error, sizeof(r->error), "QMP write: %s", strerror(errno));
			return;
		}
		off += n > 0 ? (size_t)n : 0;
	}
}

/* Send one command and wait for its return. */
static bool qmp_do(struct run *r, const char *cmd, double deadline)
{
	int want = r->returns + 1;
	qmp_send(r, cmd);
	WAIT_FOR(r, r->returns >= want, deadline);
	return r->returns >= want;
}

/* "file:PATH" (QEMU 7.2 has no file: migration URI): open PATH here,
 * hand the fd to QEMU over QMP (getfd with SCM_RIGHTS) and make it
 * "fd:snapshot". Any other URI is used as it is. */
static bool qmp_uri(struct run *r, const char *uri, bool save, char *out, size_t cap,
		    double deadline)
{
	if (strncmp(uri, "file:", 5) != 0) {
		snprintf(out, cap, "%s", uri);
		return true;
	}
	int fd = open(uri + 5, save ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(r->error, sizeof(r->error), "%s: %s", uri + 5, strerror(errno));
		return false;
	}
	static const char cmd[] = "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"snapshot\"}}\n";
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = { .iov_base = (void *)cmd, .iov_len = sizeof(cmd) - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	int want = r->returns + 1;
	logf_(r, "qmp>", cmd);
	ssize_t n = sendmsg(r->qmp, &msg, 0);
	close(fd);
	if (n != (ssize_t)sizeof(cmd) - 1) {
		snprintf(r->error, sizeof(r->error), "QMP getfd: %s", strerror(errno));
		return false;
	}
	WAIT_FOR(r, r->returns >= want, deadline);
	snprintf(out, cap, "fd:snapshot");
	return r->returns >= want;
}

static void start(struct run *r, const char *sock, char **argv)
{
	r->forked = now_ms();
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0) {
		perror("restorebench: pipe");
		exit(1);
	}
	unlink(sock);
	pid_t parent = getpid();
	r->pid = fork();
	if (r->pid == 0) {
		/* QEMU must not outlive this stopwatch, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	r->out = out[0];
	r->qmp = -1;
}

/* Connect to QMP and leave it in command mode; false on failure. */
static bool qmp_open(struct run *r, const char *sock, double deadline)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock);
	while (r->qmp < 0 && now_ms() < deadline && !r->out_eof) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			r->qmp = fd;
			break;
		}
		close(fd);
		pump(r, 0.2); /* keep QEMU's output flowing meanwhile */
	}
	if (r->qmp < 0)
		return false;
	WAIT_FOR(r, r->greeted, deadline);
	return r->greeted &&
	       qmp_do(r, "{\"execute\":\"qmp_capabilities\"}\n", deadline) &&
	       qmp_do(r, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
			 "[{\"capability\":\"events\",\"state\":true}]}}\n", deadline);
}

static void why(struct run *r, const char *step)
{
	if (r->failed)
		return;
	fprintf(stderr, "restorebench: %s: %s\n", step,
		r->error[0] ? r->error :
		r->migration[0] && strcmp(r->migration, "completed") ? r->migration :
		r->out_eof ? "QEMU exited" : r->qmp_eof ? "QMP closed" : "timed out");
}

static int finish(struct run *r, bool kill_it)
{
	if (kill_it)
		kill(r->pid, SIGKILL);
	int status;
	waitpid(r->pid, &status, 0);
	if (r->log)
		fclose(r->log);
	return r->failed;
}

static int save(struct run *r, const char *sock, const char *uri, double timeout_ms, char **argv)
{
	double deadline = now_ms() + timeout_ms;
	r->t0 = now_ms();
	start(r, sock, argv);
	char cmd[4096], to[2048];
	const char *step = "QMP";
	if (!qmp_open(r, sock, deadline))
		goto fail;
	step = "waiting for count lines";
	WAIT_FOR(r, r->last_count >= SAVE_AFTER_LINES, deadline);
	if (r->last_count < SAVE_AFTER_LINES)
		goto fail;
	step = "stop";
	if (!qmp_do(r, "{\"execute\":\"stop\"}\n", deadline))
		goto fail;
	step = "migrate";
	if (!qmp_uri(r, uri, true, to, sizeof(to), deadline))
		goto fail;
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"%s\"}}\n", to);
	if (!qmp_do(r, cmd, deadline))
		goto fail;
	WAIT_FOR(r, strcmp(r->migration, "completed") == 0, deadline);
	if (strcmp(r->migration, "completed") != 0)
		goto fail;
	logf_(r, "---", "saved");
	qmp_send(r, "{\"execute\":\"quit\"}\n");
	/* Take what is left of the console until QEMU is gone. */
	while (!r->out_eof && now_ms() < deadline)
		pump(r, deadline - now_ms());
	printf("%ld\n", r->last_count);
	return finish(r, true);
fail:
	why(r, step);
	finish(r, true);
	return r->failed ? r->failed : 1;
}

static int restore(struct run *r, const char *sock, const char *uri, long lines,
		   double timeout_ms, char **argv)
{
	r->restoring = true;
	r->t0 = now_ms();
	start(r, sock, argv);
	char cmd[4096], from[2048];
	const char *step = "QMP";
	if (!qmp_open(r, sock, now_ms() + timeout_ms))
		goto out;
	logf_(r, "---", "QMP ready; t0 follows");
	r->t0 = now_ms();
	double deadline = r->t0 + timeout_ms;
	step = "restore";
	if (!qmp_uri(r, uri, false, from, sizeof(from), deadline))
		goto out;
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"%s\"}}\n", from);
	qmp_send(r, cmd);
	bool cont_sent = false;
	while (!broken(r) && now_ms() < deadline && (r->resumed < 0 || r->new_counts <= lines)) {
		pump(r, deadline - now_ms());
		if (!cont_sent && r->resumed < 0 && strcmp(r->migration, "completed") == 0) {
			logf_(r, "---", "migration completed, VM paused: cont");
			qmp_send(r, "{\"execute\":\"cont\"}\n");
			cont_sent = true;
		}
	}
	if (r->resumed >= 0 && r->new_counts > lines)
		step = NULL;
out:
	if (step)
		why(r, step);
	printf("%.2f %.2f -1 %.2f", r->resumed, r->progress, from_exec(r));
	print_absolute(r);
	finish(r, true);
	return r->failed ? r->failed : step ? 1 : 0;
}

/* ---- ember: its API over HTTP --------------------------------------- */

static int api_connect(const char *sock)
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

/* Send one request and return its status (-1: no answer). The console is
 * pumped while waiting so no output is lost or delayed. */
static int api_do(struct run *r, const char *sock, const char *method, const char *path,
		  const char *body, double deadline)
{
	int fd = api_connect(sock);
	if (fd < 0) {
		snprintf(r->error, sizeof(r->error), "API socket %s: %s", sock, strerror(errno));
		return -1;
	}
	char req[8192];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, body ? strlen(body) : 0, body ? body : "");
	logf_(r, "api>", req);
	if (n <= 0 || n >= (int)sizeof(req) || write(fd, req, (size_t)n) != n) {
		snprintf(r->error, sizeof(r->error), "API request too long or write failed");
		close(fd);
		return -1;
	}
	char resp[4096];
	size_t len = 0;
	int status = -1;
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
	close(fd);
	logf_(r, "api<", resp);
	if (status < 0)
		snprintf(r->error, sizeof(r->error), "%s %s: no answer", method, path);
	else if (status >= 300)
		snprintf(r->error, sizeof(r->error), "%s %s: %.400s", method, path, resp);
	return status;
}

/* Until the API answers GET /. */
static bool api_ready(struct run *r, const char *sock, double deadline)
{
	while (now_ms() < deadline && !r->out_eof) {
		int fd = api_connect(sock);
		if (fd >= 0) {
			close(fd);
			return api_do(r, sock, "GET", "/", NULL, deadline) == 200;
		}
		pump(r, 5);
	}
	return false;
}

static char *slurp(const char *path)
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

static int ember_save(struct run *r, const char *sock, const char *setup, const char *state,
		      const char *mem, double timeout_ms, char **argv)
{
	double deadline = now_ms() + timeout_ms;
	r->t0 = now_ms();
	start(r, sock, argv);
	const char *step = "API";
	char *lines = slurp(setup), *save = NULL;
	if (!lines || !api_ready(r, sock, deadline))
		goto fail;
	step = "setup";
	for (char *l = strtok_r(lines, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char method[16], path[256];
		int off = 0;
		if (sscanf(l, "%15s %255s %n", method, path, &off) < 2)
			continue;
		if (api_do(r, sock, method, path, l + off, deadline) >= 300)
			goto fail;
	}
	step = "waiting for count lines";
	WAIT_FOR(r, r->last_count >= SAVE_AFTER_LINES, deadline);
	if (r->last_count < SAVE_AFTER_LINES)
		goto fail;
	step = "pause";
	if (api_do(r, sock, "PATCH", "/vm", "{\"state\": \"Paused\"}", deadline) != 204)
		goto fail;
	step = "snapshot";
	char body[4096];
	snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", state, mem);
	if (api_do(r, sock, "PUT", "/snapshot/create", body, deadline) != 204)
		goto fail;
	pump(r, 50); /* the console's last bytes */
	printf("%ld\n", r->last_count);
	return finish(r, true);
fail:
	if (!r->failed)
		fprintf(stderr, "restorebench: %s: %s\n", step, r->error[0] ? r->error : "timed out");
	finish(r, true);
	return r->failed ? r->failed : 1;
}

static int ember_restore(struct run *r, const char *sock, const char *load, long lines,
			 double timeout_ms, char **argv)
{
	r->restoring = true;
	r->t0 = now_ms();
	start(r, sock, argv);
	const char *step = "API";
	char *body = slurp(load);
	if (!body || !api_ready(r, sock, now_ms() + timeout_ms))
		goto out;
	logf_(r, "---", "API ready; t0 follows");
	r->t0 = now_ms();
	double deadline = r->t0 + timeout_ms;
	step = "load";
	if (api_do(r, sock, "PUT", "/snapshot/load", body, deadline) != 204)
		goto out;
	r->resumed = now_ms() - r->t0;
	step = "counting";
	WAIT_FOR(r, r->new_counts > lines, deadline);
	if (r->new_counts > lines)
		step = NULL;
out:
	if (step && !r->failed)
		fprintf(stderr, "restorebench: %s: %s\n", step,
			r->error[0] ? r->error : r->out_eof ? "ember exited" : "timed out");
	printf("%.2f %.2f %.2f %.2f", r->resumed, r->progress, r->entry, from_exec(r));
	print_absolute(r);
	finish(r, true);
	return r->failed ? r->failed : step ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct run r = { .resumed = -1, .progress = -1, .entry = -1, .last_count = -1, .qmp = -1 };
	const char *mode = argc > 1 ? argv[1] : "";
	bool is_save = strcmp(mode, "qemu-save") == 0;
	bool ember = strncmp(mode, "ember-", 6) == 0;
	int cmd_at = is_save ? 6 : 8;
	if (argc <= cmd_at || strcmp(argv[cmd_at - 1], "--") != 0 ||
	    (!is_save && strcmp(mode, "qemu-restore") != 0 && strcmp(mode, "ember-save") != 0 &&
	     strcmp(mode, "ember-restore") != 0)) {
		fprintf(stderr, "usage: restorebench qemu-save QMP_SOCK URI TIMEOUT_S -- QEMU...\n"
				"       restorebench qemu-restore QMP_SOCK URI AFTER LINES TIMEOUT_S -- QEMU...\n"
				"       restorebench ember-save API_SOCK SETUP_JSON STATE MEM TIMEOUT_S -- EMBER...\n"
				"       restorebench ember-restore API_SOCK LOAD_JSON AFTER LINES TIMEOUT_S -- EMBER...\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	const char *log = getenv("RESTOREBENCH_LOG");
	r.log = log && *log ? fopen(log, "w") : NULL;
	if (r.log)
		setvbuf(r.log, NULL, _IOLBF, 0);
	if (is_save)
		return save(&r, argv[2], argv[3], atof(argv[4]) * 1000, argv + cmd_at);
	if (ember && strcmp(mode, "ember-save") == 0)
		return ember_save(&r, argv[2], argv[3], argv[4], argv[5], atof(argv[6]) * 1000, argv + cmd_at);
	if (ember) {
		r.after = atol(argv[4]);
		return ember_restore(&r, argv[2], argv[3], atol(argv[5]), atof(argv[6]) * 1000, argv + cmd_at);
	}
	r.after = atol(argv[4]);
	return restore(&r, argv[2], argv[3], atol(argv[5]), atof(argv[6]) * 1000, argv + cmd_at);
}
