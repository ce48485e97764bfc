/* vmmrun: drive a VMM from outside, for restorebench and the soak test.
 *
 * run_start() forks and execs the VMM with its console (stdout and stderr)
 * on a pipe; run_pump() reads that console line by line and follows the
 * test guest's counter (build/testvm.elf with testvm.counter): "testvm:
 * count N" lines, "testvm: FAIL memory" and, while restoring, a guest that
 * prints "testvm: booted" (it started over). QMP (QEMU) and ember's API
 * (HTTP on its Unix socket, one connection per request) are spoken here
 * too; every wait pumps the console so no output is lost or delayed.
 * Times are CLOCK_MONOTONIC milliseconds. */
#ifndef VMMRUN_H
#define VMMRUN_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct run {
	pid_t pid;
	int out, qmp;
	int in;             /* the VMM's stdin when with_stdin was set, else -1 */
	bool with_stdin;    /* run_start: stdin a pipe (r->in) instead of /dev/null */
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
	const char *marker; /* a console text to watch for, or NULL */
	bool marker_seen;
};

double now_ms(void);

/* Reset r for a new VMM: no pid, no fds, every time and count -1. */
void run_init(struct run *r);

/* Append "<ms since t0> WHAT LINE" to r->log, if there is one. */
void run_log(struct run *r, const char *what, const char *line);

/* Fork and exec argv (the VMM) with its console on r->out and nothing
 * open but stdin, stdout and stderr; the VMM is killed if the caller dies.
 * sock (the API or QMP socket the VMM will create) is removed first.
 * Exits the program if no pipe can be made. */
void run_start(struct run *r, const char *sock, char **argv);

/* Wait up to ms for output from the console or QMP and handle it. */
void run_pump(struct run *r, double ms);

/* The run cannot go on: the guest failed, an error was recorded, the VMM
 * closed its console or QMP, or a migration failed. */
bool run_broken(const struct run *r);

/* Pump until cond holds, the run broke, or deadline (absolute ms). */
#define WAIT_FOR(r, cond, deadline) \
	while (!(cond) && !run_broken(r) && now_ms() < (deadline)) \
		run_pump((r), (deadline) - now_ms())

/* Kill the VMM with SIGKILL if kill_it, reap it, close the log; returns
 * r->failed. */
int run_finish(struct run *r, bool kill_it);

/* ---- ember's API ---- */

/* A new connection to the API socket, or -1. */
int api_connect(const char *sock);

/* Send one request on fd (Connection: close); false (r->error set) if it
 * could not be written. */
bool api_send(struct run *r, int fd, const char *method, const char *path, const char *body);

/* Read the answer to api_send() on fd until complete or deadline and
 * return its status (-1: none); a status >= 300 or none sets r->error. */
int api_answer(struct run *r, int fd, const char *method, const char *path, double deadline);

/* Connect, send one request, read its answer, close: its status (-1: no
 * answer; r->error says why). */
int api_do(struct run *r, const char *sock, const char *method, const char *path,
	   const char *body, double deadline);

/* Until the API answers GET / (true) or the VMM exits or deadline. */
bool api_ready(struct run *r, const char *sock, double deadline);

/* Send each "METHOD PATH BODY" line of script in order; false at the
 * first answer that is not a success. script is modified. */
bool api_script(struct run *r, const char *sock, char *script, double deadline);

/* The contents of a text file (up to 64 KiB, in a static buffer), or NULL. */
char *slurp(const char *path);

#endif
