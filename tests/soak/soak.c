/* soak: ember booted, restored and kept running many times over, with its
 * open files, threads and memory sampled each time, so that a leak shows
 * as growth (tests/soak/run.sh runs the phases and writes the report).
 *
 *   soak boots N DIR SETUP -- EMBER...
 *       N embers in turn, each booting the test guest with the API requests
 *       in the file SETUP ("METHOD PATH BODY" lines, InstanceStart last;
 *       boot args with testvm.waitinput). Once the guest says "testvm:
 *       done" ember is sampled and the guest is sent a byte on its
 *       console; it resets, and ember must exit 0.
 *   soak cycles N EVERY DIR SETUP STATE MEM DRIVE_A DRIVE_B -- EMBER...
 *       one ember boots the counting test guest (SETUP, with a drive
 *       "scratch"), then N times: pause, snapshot to STATE and MEM, resume,
 *       swap the drive's file (DRIVE_B, DRIVE_A, ...), and 4 API clients
 *       connected at once, each with a GET. Sampled after the boot and
 *       every EVERY cycles once the guest has counted on. The last cycle
 *       leaves the guest paused and snapshotted and writes its last count
 *       to DIR/count; then ember gets SIGTERM and must exit 143.
 *   soak restores N DIR LOAD AFTER -- EMBER...
 *       N embers in turn, each loading a snapshot of the counting guest
 *       (PUT /snapshot/load with the body in the file LOAD, resume_vm
 *       true). Once the guest counts past AFTER, ember is sampled and sent
 *       SIGTERM; it must exit 143.
 *   soak together ROUNDS K DIR LOAD AFTER -- EMBER...
 *       the same with K embers at once, each in DIR/<k>/, ROUNDS times.
 *   soak check FILE
 *       the verdict on one phase's samples, as a markdown table (below).
 *
 * EMBER... is the command, to which --api-sock <its dir>/api.sock is added.
 * It starts with nothing open but stdio, so what it has open is its own.
 * A sample is ember's open files (/proc/PID/fd), threads and VmRSS, its
 * VmHWM (peak RSS so far), the entries in its directory, and this
 * driver's own open files. Each phase prints one line per sample, with
 * tab-separated columns
 *   run ok fds threads rss_kib hwm_kib files driver_fds note
 * (ok 0: the run failed and note says why; -1: not sampled). A failed
 * run's console and API conversation are kept in DIR/failed-RUN.log.
 * SOAK_TIMEOUT=seconds bounds each run and each request (default 60): a
 * hang is a failure, never a wait without end. SOAK_PRELOAD=path is put in
 * ember's LD_PRELOAD (for showing the check fails on a leaking ember).
 *
 * soak check prints how many runs failed and, for each column, the first,
 * last, min, median and max, and whether it grew (growth.h): by more than
 * 2 for the counts, by more than 512 KiB or 5% for the memory columns
 * (SOAK_MEMORY_CHECK=0: memory reported, not checked, as for sanitizer
 * builds, whose allocator keeps freed memory in quarantine). Exit status 1
 * if a run failed, a column grew, or a column has too few samples to tell
 * (a soak too short to show anything fails, it does not pass); the phases
 * exit 1 if a run failed. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../benchmarks/vmmrun.h"
#include "growth.h"

#define BURST 4          /* API clients connected at once in each cycle */
#define BOOTED_LINES 3   /* count lines before the first sample and snapshot */
#define KEPT_LOGS 10     /* failed runs whose logs are kept */
#define MAX_TOGETHER 64

static double timeout_ms;
static char **ember_cmd; /* EMBER... with room for --api-sock PATH */
static int ember_argc;
static int failed_runs;

struct sample {
	long fds, threads, rss_kib, hwm_kib, files, driver_fds;
};

static const struct sample NOT_SAMPLED = { -1, -1, -1, -1, -1, -1 };

/* Entries in a directory, without "." and ".." (-1 if unreadable). */
static long dir_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	long n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Sample ember (pid) now; false if it could not be read (it exited). */
static bool sample_take(pid_t pid, const char *dir, struct sample *s)
{
	char path[64];
	*s = NOT_SAMPLED;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	s->fds = dir_entries(path);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "Threads: %ld", &s->threads);
		sscanf(line, "VmRSS: %ld", &s->rss_kib);
		sscanf(line, "VmHWM: %ld", &s->hwm_kib);
	}
	fclose(f);
	s->files = dir_entries(dir);
	long own = dir_entries("/proc/self/fd");
	s->driver_fds = own < 0 ? -1 : own - 1; /* not the directory's own fd */
	return s->fds >= 0 && s->threads >= 0 && s->rss_kib >= 0 && s->hwm_kib >= 0;
}

static void row(long run, bool ok, const struct sample *s, const char *note)
{
	printf("%ld\t%d\t%ld\t%ld\t%ld\t%ld\t%ld\t%ld\t%s\n", run, ok, s->fds, s->threads,
	       s->rss_kib, s->hwm_kib, s->files, s->driver_fds, note && *note ? note : "-");
	fflush(stdout); /* before any fork, and seen as it happens */
	if (!ok)
		failed_runs++;
}

/* Start ember serving DIR/api.sock, its console and API conversation
 * logged to DIR/run.log. */
static void ember_start(struct run *r, const char *dir, char *sock, size_t cap)
{
	char log[4096];
	snprintf(sock, cap, "%s/api.sock", dir);
	snprintf(log, sizeof(log), "%s/run.log", dir);
	r->log = fopen(log, "w");
	if (r->log)
		setvbuf(r->log, NULL, _IOLBF, 0);
	ember_cmd[ember_argc + 1] = sock;
	/* Set only around the fork: only ember's exec loads it. */
	const char *preload = getenv("SOAK_PRELOAD");
	if (preload && *preload)
		setenv("LD_PRELOAD", preload, 1);
	r->t0 = now_ms();
	run_start(r, sock, ember_cmd);
	if (preload && *preload)
		unsetenv("LD_PRELOAD");
}

/* Wait until ember ends (SIGKILL at the deadline), close what the run
 * had open, and return its wait status. */
static int ember_reap(struct run *r, double deadline)
{
	while (!r->out_eof && now_ms() < deadline)
		run_pump(r, deadline - now_ms());
	if (!r->out_eof)
		kill(r->pid, SIGKILL);
	int status = 0;
	while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
		;
	close(r->out);
	if (r->in >= 0)
		close(r->in);
	if (r->log)
		fclose(r->log);
	r->log = NULL;
	return status;
}

/* Why a run failed: the recorded error, else what the guest or ember did. */
static void why(const struct run *r, const char *step, char *out, size_t cap)
{
	snprintf(out, cap, "%s: %s", step,
		 r->error[0] ? r->error :
		 r->failed ? "the guest's memory came back wrong or it started over" :
		 r->out_eof ? "ember exited" : "timed out");
}

/* A failed run keeps its log (the first few). */
static void keep_log(const char *dir, long run)
{
	static int kept;
	if (kept++ >= KEPT_LOGS)
		return;
	char from[4096], to[4096];
	snprintf(from, sizeof(from), "%s/run.log", dir);
	snprintf(to, sizeof(to), "%s/failed-%ld.log", dir, run);
	rename(from, to);
}

/* How ember ended, appended to note. */
static void say_how_it_ended(int status, char *note, size_t cap)
{
	size_t len = strlen(note);
	const char *sep = len ? "; " : "";
	if (WIFEXITED(status))
		snprintf(note + len, cap - len, "%sember exited with status %d", sep, WEXITSTATUS(status));
	else
		snprintf(note + len, cap - len, "%sember was killed by signal %d (%s)", sep, WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
}

/* End a run. A failed step (step, not NULL) is said in note and ember is
 * killed, and how it ended is added when it ended by itself first (it
 * crashed, say); otherwise ember must end by itself with exit status code. */
static void ember_end(struct run *r, const char *step, int code, double deadline, char *note, size_t cap)
{
	if (step) {
		why(r, step, note, cap);
		kill(r->pid, SIGKILL);
	}
	int status = ember_reap(r, deadline);
	if (step ? WIFEXITED(status) || WTERMSIG(status) != SIGKILL :
		   !WIFEXITED(status) || WEXITSTATUS(status) != code) {
		say_how_it_ended(status, note, cap);
		if (!step) {
			size_t len = strlen(note);
			snprintf(note + len, cap - len, ", expected exit status %d", code);
		}
	}
}

/* ---- boots ---------------------------------------------------------- */

static void boot_once(struct run *r, long run, const char *dir, const char *setup)
{
	char sock[4096], note[600] = "";
	struct sample s = NOT_SAMPLED;
	run_init(r);
	r->with_stdin = true;
	r->marker = "testvm: done";
	ember_start(r, dir, sock, sizeof(sock));
	double deadline = now_ms() + timeout_ms;
	char *script = slurp(setup);
	const char *step = "API";
	if (!script || !api_ready(r, sock, deadline))
		goto out;
	step = "boot";
	if (!api_script(r, sock, script, deadline))
		goto out;
	step = "waiting for the guest";
	WAIT_FOR(r, r->marker_seen, deadline);
	if (!r->marker_seen)
		goto out;
	step = "sample";
	if (!sample_take(r->pid, dir, &s))
		goto out;
	step = "console";
	if (write(r->in, "\n", 1) != 1)
		goto out;
	step = NULL;
out:
	ember_end(r, step, 0, deadline, note, sizeof(note));
	if (note[0])
		keep_log(dir, run);
	row(run, !note[0], &s, note);
}

/* ---- restores --------------------------------------------------------- */

static void restore_once(struct run *r, long run, const char *dir, const char *load, long after)
{
	char sock[4096], note[600] = "";
	struct sample s = NOT_SAMPLED;
	run_init(r);
	r->restoring = true;
	r->after = after;
	ember_start(r, dir, sock, sizeof(sock));
	double deadline = now_ms() + timeout_ms;
	char *body = slurp(load);
	const char *step = "API";
	if (!body || !api_ready(r, sock, deadline))
		goto out;
	step = "load";
	if (api_do(r, sock, "PUT", "/snapshot/load", body, deadline) != 204)
		goto out;
	step = "counting on";
	WAIT_FOR(r, r->new_counts > 0, deadline);
	if (r->new_counts == 0 || r->failed)
		goto out;
	step = "sample";
	if (!sample_take(r->pid, dir, &s))
		goto out;
	kill(r->pid, SIGTERM);
	step = NULL;
out:
	ember_end(r, step, 128 + SIGTERM, deadline, note, sizeof(note));
	if (note[0])
		keep_log(dir, run);
	row(run, !note[0], &s, note);
}

static struct run the_run; /* one per process: its buffers are large */

static int phase_boots(long n, const char *dir, const char *setup)
{
	for (long i = 0; i < n; i++)
		boot_once(&the_run, i, dir, setup);
	return failed_runs ? 1 : 0;
}

static int phase_restores(long n, const char *dir, const char *load, long after)
{
	for (long i = 0; i < n; i++)
		restore_once(&the_run, i, dir, load, after);
	return failed_runs ? 1 : 0;
}

/* K restores at once, each in a child process of its own (and DIR/<k>),
 * ROUNDS times; rows in the order of k. */
static int phase_together(long rounds, long k, const char *dir, const char *load, long after)
{
	int pipes[MAX_TOGETHER][2];
	pid_t pids[MAX_TOGETHER];
	int result = 0;
	for (long round = 0; round < rounds; round++) {
		for (long j = 0; j < k; j++) {
			char sub[4096];
			snprintf(sub, sizeof(sub), "%s/%ld", dir, j);
			mkdir(sub, 0700);
			if (pipe(pipes[j]) < 0) {
				perror("soak: pipe");
				return 1;
			}
			fflush(stdout);
			pids[j] = fork();
			if (pids[j] == 0) {
				for (long i = 0; i < j; i++)
					close(pipes[i][0]); /* the others' pipes are not this run's */
				close(pipes[j][0]);
				dup2(pipes[j][1], STDOUT_FILENO);
				close(pipes[j][1]);
				restore_once(&the_run, round * k + j, sub, load, after);
				_exit(failed_runs ? 1 : 0);
			}
			close(pipes[j][1]);
		}
		for (long j = 0; j < k; j++) {
			char buf[1024];
			ssize_t got;
			bool any = false;
			while ((got = read(pipes[j][0], buf, sizeof(buf))) > 0 || (got < 0 && errno == EINTR))
				if (got > 0) {
					any = true;
					fwrite(buf, 1, (size_t)got, stdout);
				}
			close(pipes[j][0]);
			int status = 0;
			while (waitpid(pids[j], &status, 0) < 0 && errno == EINTR)
				;
			if (!any)
				row(round * k + j, false, &NOT_SAMPLED, "the driver's child gave no result");
			if (!any || !WIFEXITED(status) || WEXITSTATUS(status))
				result = 1;
		}
		fflush(stdout);
	}
	return result;
}

/* ---- one long-lived ember ---------------------------------------------- */

static bool api_burst(struct run *r, const char *sock, double deadline)
{
	static const char *const paths[BURST] = { "/", "/machine-config", "/vm/config", "/version" };
	int fds[BURST];
	bool ok = true;
	for (int i = 0; i < BURST; i++) {
		fds[i] = api_connect(sock);
		if (fds[i] < 0 && ok) {
			snprintf(r->error, sizeof(r->error), "API client %d of %d: cannot connect: %s",
				 i + 1, BURST, strerror(errno));
			ok = false;
		}
	}
	for (int i = 0; i < BURST && ok; i++)
		ok = api_send(r, fds[i], "GET", paths[i], NULL);
	for (int i = 0; i < BURST && ok; i++)
		ok = api_answer(r, fds[i], "GET", paths[i], deadline) == 200;
	for (int i = 0; i < BURST; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return ok;
}

static int phase_cycles(long n, long every, const char *dir, const char *setup, const char *state,
			const char *mem, const char *drive_a, const char *drive_b)
{
	struct run *r = &the_run;
	char sock[4096], note[600] = "", body[8192];
	struct sample s = NOT_SAMPLED;
	run_init(r);
	ember_start(r, dir, sock, sizeof(sock));
	char *script = slurp(setup);
	double deadline = now_ms() + timeout_ms;
	const char *step = "API";
	long c = 0;
	if (!script || !api_ready(r, sock, deadline))
		goto out;
	step = "boot";
	if (!api_script(r, sock, script, deadline))
		goto out;
	WAIT_FOR(r, r->last_count >= BOOTED_LINES, deadline);
	if (r->last_count < BOOTED_LINES)
		goto out;
	step = "sample";
	if (!sample_take(r->pid, dir, &s))
		goto out;
	row(0, true, &s, "booted");
	for (c = 1; c <= n; c++) {
		deadline = now_ms() + timeout_ms;
		step = "pause";
		if (api_do(r, sock, "PATCH", "/vm", "{\"state\": \"Paused\"}", deadline) != 204)
			goto out;
		step = "snapshot";
		snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", state, mem);
		if (api_do(r, sock, "PUT", "/snapshot/create", body, deadline) != 204)
			goto out;
		if (c == n)
			break; /* paused and snapshotted: the restores' snapshot */
		step = "resume";
		if (api_do(r, sock, "PATCH", "/vm", "{\"state\": \"Resumed\"}", deadline) != 204)
			goto out;
		step = "drive swap";
		snprintf(body, sizeof(body), "{\"drive_id\": \"scratch\", \"path_on_host\": \"%s\"}",
			 c % 2 ? drive_b : drive_a);
		if (api_do(r, sock, "PATCH", "/drives/scratch", body, deadline) != 204)
			goto out;
		step = "API clients at once";
		if (!api_burst(r, sock, deadline))
			goto out;
		if (c % every == 0) {
			step = "counting on";
			long seen = r->last_count;
			WAIT_FOR(r, r->last_count > seen, deadline);
			if (r->last_count <= seen)
				goto out;
			step = "sample";
			if (!sample_take(r->pid, dir, &s))
				goto out;
			row(c, true, &s, NULL);
		}
	}
	run_pump(r, 50); /* the console's last bytes: the last count */
	char path[4096];
	snprintf(path, sizeof(path), "%s/count", dir);
	FILE *f = fopen(path, "w");
	bool wrote = f && fprintf(f, "%ld\n", r->last_count) > 0;
	if (f && fclose(f))
		wrote = false;
	step = "writing the count";
	if (!wrote)
		goto out;
	kill(r->pid, SIGTERM);
	step = NULL;
out:
	ember_end(r, step, 128 + SIGTERM, now_ms() + timeout_ms, note, sizeof(note));
	if (note[0]) {
		keep_log(dir, c);
		row(c, false, &NOT_SAMPLED, note); /* run: the cycle it failed in */
	}
	return failed_runs ? 1 : 0;
}

/* ---- the verdict ------------------------------------------------------ */

static const struct {
	const char *name;
	struct growth_bound bound;
	bool memory;
} columns[] = {
	{ "ember's open files", { 2, 0 }, false },
	{ "ember's threads", { 2, 0 }, false },
	{ "ember's RSS (KiB)", { 512, 0.05 }, true },
	{ "ember's peak RSS, VmHWM (KiB)", { 512, 0.05 }, true },
	{ "files in its directory", { 2, 0 }, false },
	{ "the driver's open files", { 2, 0 }, false },
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

struct series {
	double *v;
	size_t n, cap;
};

static void series_add(struct series *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 1024;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			abort();
	}
	s->v[s->n++] = x;
}

static int check(const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f) {
		fprintf(stderr, "soak: %s: %s\n", file, strerror(errno));
		return 2;
	}
	struct series col[NCOLUMNS] = { { 0 } };
	long rows = 0, failed = 0;
	char line[2048], notes[1024] = "";
	while (fgets(line, sizeof(line), f)) {
		long run, x[NCOLUMNS];
		int ok, off = 0;
		if (sscanf(line, "%ld\t%d\t%ld\t%ld\t%ld\t%ld\t%ld\t%ld\t%n", &run, &ok, &x[0], &x[1],
			   &x[2], &x[3], &x[4], &x[5], &off) < 8 || off == 0)
			continue;
		rows++;
		if (!ok && ++failed <= 3) {
			line[strcspn(line, "\n")] = 0;
			size_t len = strlen(notes);
			snprintf(notes + len, sizeof(notes) - len, "%srun %ld: %s", len ? "; " : "", run, line + off);
		}
		for (size_t j = 0; j < NCOLUMNS; j++)
			if (x[j] >= 0) /* -1: not sampled */
				series_add(&col[j], (double)x[j]);
	}
	fclose(f);
	const char *mc = getenv("SOAK_MEMORY_CHECK");
	bool memory = !mc || strcmp(mc, "0") != 0;
	bool grew = false, too_short = false;
	printf("%ld samples, %ld failed%s%s%s\n\n", rows, failed, failed ? " (" : "", notes,
	       failed > 3 ? "; ...)" : failed ? ")" : "");
	printf("| | first | last | min / median / max | median: first quarter → last quarter | allowed growth | |\n");
	printf("|---|---|---|---|---|---|---|\n");
	for (size_t j = 0; j < NCOLUMNS; j++) {
		if (col[j].n == 0) {
			printf("| %s | - | - | - | - | - | no samples |\n", columns[j].name);
			too_short = true;
			continue;
		}
		struct growth g = growth_check(col[j].v, col[j].n, columns[j].bound);
		bool checked = g.checked && (memory || !columns[j].memory);
		grew |= checked && g.grew;
		too_short |= !g.checked;
		printf("| %s | %.0f | %.0f | %.0f / %.0f / %.0f | %.0f → %.0f | %.0f | %s |\n", columns[j].name,
		       g.first, g.last, g.min, g.median, g.max, g.early, g.late, g.limit,
		       !g.checked ? "too few samples to tell" : !checked ? "not checked (sanitizer build)" :
		       g.grew ? "**GREW**" : "ok");
		free(col[j].v);
	}
	return failed || grew || too_short ? 1 : 0;
}

/* ---- main ------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: soak boots N DIR SETUP -- EMBER...\n"
			"       soak cycles N EVERY DIR SETUP STATE MEM DRIVE_A DRIVE_B -- EMBER...\n"
			"       soak restores N DIR LOAD AFTER -- EMBER...\n"
			"       soak together ROUNDS K DIR LOAD AFTER -- EMBER...\n"
			"       soak check FILE\n");
	exit(2);
}

static long number(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (!*s || *end || n < 0) {
		fprintf(stderr, "soak: \"%s\" is not a count\n", s);
		exit(2);
	}
	return n;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "check") == 0)
		return check(argv[2]);
	static const struct {
		const char *mode;
		int args;
	} modes[] = { { "boots", 3 }, { "cycles", 8 }, { "restores", 4 }, { "together", 5 } };
	int m = -1;
	for (int i = 0; argc > 1 && i < (int)(sizeof(modes) / sizeof(modes[0])); i++)
		if (strcmp(argv[1], modes[i].mode) == 0)
			m = i;
	if (m < 0 || argc < modes[m].args + 4 || strcmp(argv[modes[m].args + 2], "--") != 0)
		usage();
	char **a = argv + 2;
	ember_argc = argc - (modes[m].args + 3);
	ember_cmd = calloc((size_t)ember_argc + 3, sizeof(char *));
	if (!ember_cmd)
		return 1;
	memcpy(ember_cmd, argv + modes[m].args + 3, (size_t)ember_argc * sizeof(char *));
	ember_cmd[ember_argc] = "--api-sock";
	const char *t = getenv("SOAK_TIMEOUT");
	timeout_ms = (t && atof(t) > 0 ? atof(t) : 60) * 1000;
	signal(SIGPIPE, SIG_IGN);
	switch (m) {
	case 0: return phase_boots(number(a[0]), a[1], a[2]);
	case 1: {
		long every = number(a[1]);
		return phase_cycles(number(a[0]), every ? every : 1, a[2], a[3], a[4], a[5], a[6], a[7]);
	}
	case 2: return phase_restores(number(a[0]), a[1], a[2], number(a[3]));
	default: {
		long k = number(a[1]);
		if (k < 1 || k > MAX_TOGETHER)
			usage();
		return phase_together(number(a[0]), k, a[2], a[3], number(a[4]));
	}
	}
}
