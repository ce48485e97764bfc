/* seccomp-tracer: runs a command under ptrace and records every system
 * call that one of ember's seccomp filters would have refused.
 *
 *   seccomp-tracer LOG COMMAND [ARGS...]
 *
 * ember-test --test-seccomp-trace installs filters whose default action is
 * SECCOMP_RET_TRACE instead of a kill, with the role (vmm, api, vcpu) as
 * the action's data. Under a tracer such a system call stops the thread;
 * this program writes one line to LOG (tid, thread name, role, system
 * call, arguments) and lets the call go ahead, so one run finds every
 * missing rule instead of dying at the first. Without a tracer the same
 * calls would fail with ENOSYS: never run ember-test --test-seccomp-trace
 * on its own.
 *
 * Every traced thread and process is followed (clone, fork, exec). LOG
 * also gets one "thread NAME" line per distinct thread name that exited,
 * so a test can check the threads it meant to stress were there, and
 * "killed by signal N" if a traced process died of one (SIGSYS from a
 * filter that kills, e.g. the jail's).
 *
 * Exits with COMMAND's status (128 + signal if it was killed). */
#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_NAMES 64

static FILE *log_out;
static char names[MAX_NAMES][32];
static int nnames;

static void thread_name(pid_t tid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)tid);
	FILE *f = fopen(path, "re");
	if (!f || !fgets(out, (int)len, f))
		snprintf(out, len, "?");
	if (f)
		fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

static void remember_name(const char *name)
{
	for (int i = 0; i < nnames; i++)
		if (strcmp(names[i], name) == 0)
			return;
	if (nnames < MAX_NAMES) {
		snprintf(names[nnames++], sizeof(names[0]), "%s", name);
		fprintf(log_out, "thread %s\n", name);
		fflush(log_out);
	}
}

static const char *role_name(unsigned long data)
{
	static const char *const roles[] = { "jail", "vmm", "api", "vcpu" };
	return data < 4 ? roles[data] : "?";
}

static void record_violation(pid_t tid)
{
	unsigned long data = 0;
	struct user_regs_struct regs;
	char comm[32];
	ptrace(PTRACE_GETEVENTMSG, tid, 0, &data);
	thread_name(tid, comm, sizeof(comm));
	if (ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0) {
		fprintf(log_out, "violation tid=%d comm=%s role=%s (registers unreadable: %s)\n", (int)tid, comm,
			role_name(data), strerror(errno));
		fflush(log_out);
		return;
	}
	int nr = (int)regs.orig_rax;
	char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	fprintf(log_out, "violation tid=%d comm=%s role=%s syscall=%d(%s) args=%#llx,%#llx,%#llx,%#llx\n", (int)tid,
		comm, role_name(data), nr, name ? name : "?", regs.rdi, regs.rsi, regs.rdx, regs.r10);
	fflush(log_out);
	free(name);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: seccomp-tracer LOG COMMAND [ARGS...]\n");
		return 2;
	}
	log_out = fopen(argv[1], "we");
	if (!log_out) {
		fprintf(stderr, "seccomp-tracer: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	pid_t child = fork();
	if (child < 0) {
		fprintf(stderr, "seccomp-tracer: fork: %s\n", strerror(errno));
		return 2;
	}
	if (child == 0) {
		/* Stopped at the exec until the options are set. */
		if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
			_exit(126);
		execvp(argv[2], argv + 2);
		fprintf(stderr, "seccomp-tracer: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
		fprintf(stderr, "seccomp-tracer: %s did not start\n", argv[2]);
		return 2;
	}
	long opts = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
		    PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL;
	if (ptrace(PTRACE_SETOPTIONS, child, 0, opts) < 0 || ptrace(PTRACE_CONT, child, 0, 0) < 0) {
		fprintf(stderr, "seccomp-tracer: ptrace: %s\n", strerror(errno));
		return 2;
	}

	int result = 1;
	for (;;) {
		pid_t tid = waitpid(-1, &status, __WALL);
		if (tid < 0) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: everything traced has ended */
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			if (WIFSIGNALED(status)) {
				fprintf(log_out, "killed by signal %d pid=%d\n", WTERMSIG(status), (int)tid);
				fflush(log_out);
			}
			if (tid == child)
				result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			continue;
		}
		if (!WIFSTOPPED(status))
			continue;
		int sig = WSTOPSIG(status);
		int event = status >> 16;
		int inject = 0;
		if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP) {
			record_violation(tid);
		} else if (sig == SIGTRAP && event == PTRACE_EVENT_EXIT) {
			char comm[32];
			thread_name(tid, comm, sizeof(comm));
			remember_name(comm);
		} else if (sig == SIGTRAP && event) {
			/* clone, fork, vfork, exec: the new task is traced too */
		} else if (sig == SIGSTOP) {
			/* A newly traced task's first stop (or a real SIGSTOP:
			 * nothing in ember sends one). */
		} else {
			inject = sig; /* a signal for the tracee: deliver it */
		}
		ptrace(PTRACE_CONT, tid, 0, inject);
	}
	fclose(log_out);
	return result;
}
