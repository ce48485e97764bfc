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
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmmrun.h"

#define SAVE_AFTER_LINES 3

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

static void qmp_send(struct run *r, const char *cmd)
{
	run_log(r, "qmp>", cmd);
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
	run_log(r, "qmp>", cmd);
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
		run_pump(r, 0.2); /* keep QEMU's output flowing meanwhile */
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

static int save(struct run *r, const char *sock, const char *uri, double timeout_ms, char **argv)
{
	double deadline = now_ms() + timeout_ms;
	r->t0 = now_ms();
	run_start(r, sock, argv);
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
	run_log(r, "---", "saved");
	qmp_send(r, "{\"execute\":\"quit\"}\n");
	/* Take what is left of the console until QEMU is gone. */
	while (!r->out_eof && now_ms() < deadline)
		run_pump(r, deadline - now_ms());
	printf("%ld\n", r->last_count);
	return run_finish(r, true);
fail:
	why(r, step);
	run_finish(r, true);
	return r->failed ? r->failed : 1;
}

static int restore(struct run *r, const char *sock, const char *uri, long lines,
		   double timeout_ms, char **argv)
{
	r->restoring = true;
	r->t0 = now_ms();
	run_start(r, sock, argv);
	char cmd[4096], from[2048];
	const char *step = "QMP";
	if (!qmp_open(r, sock, now_ms() + timeout_ms))
		goto out;
	run_log(r, "---", "QMP ready; t0 follows");
	r->t0 = now_ms();
	double deadline = r->t0 + timeout_ms;
	step = "restore";
	if (!qmp_uri(r, uri, false, from, sizeof(from), deadline))
		goto out;
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"%s\"}}\n", from);
	qmp_send(r, cmd);
	bool cont_sent = false;
	while (!run_broken(r) && now_ms() < deadline && (r->resumed < 0 || r->new_counts <= lines)) {
		run_pump(r, deadline - now_ms());
		if (!cont_sent && r->resumed < 0 && strcmp(r->migration, "completed") == 0) {
			run_log(r, "---", "migration completed, VM paused: cont");
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
	run_finish(r, true);
	return r->failed ? r->failed : step ? 1 : 0;
}

/* ---- ember ------------------------------------------------------------ */

static int ember_save(struct run *r, const char *sock, const char *setup, const char *state,
		      const char *mem, double timeout_ms, char **argv)
{
	double deadline = now_ms() + timeout_ms;
	r->t0 = now_ms();
	run_start(r, sock, argv);
	const char *step = "API";
	char *lines = slurp(setup);
	if (!lines || !api_ready(r, sock, deadline))
		goto fail;
	step = "setup";
	if (!api_script(r, sock, lines, deadline))
		goto fail;
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
	run_pump(r, 50); /* the console's last bytes */
	printf("%ld\n", r->last_count);
	return run_finish(r, true);
fail:
	if (!r->failed)
		fprintf(stderr, "restorebench: %s: %s\n", step, r->error[0] ? r->error : "timed out");
	run_finish(r, true);
	return r->failed ? r->failed : 1;
}

static int ember_restore(struct run *r, const char *sock, const char *load, long lines,
			 double timeout_ms, char **argv)
{
	r->restoring = true;
	r->t0 = now_ms();
	run_start(r, sock, argv);
	const char *step = "API";
	char *body = slurp(load);
	if (!body || !api_ready(r, sock, now_ms() + timeout_ms))
		goto out;
	run_log(r, "---", "API ready; t0 follows");
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
	run_finish(r, true);
	return r->failed ? r->failed : step ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct run r;
	run_init(&r);
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
