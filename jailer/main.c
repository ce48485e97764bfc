/* ember-jailer: start a VMM inside a jail, with Firecracker's jailer flags.
 *
 * The sequence, each step checked and reported on failure:
 *   close inherited fds, clear the environment, validate the flags and
 *   open (without blocking) and check the files they name;
 *   create <base>/<exec-name>/<id>/root, or use the one that exists, each
 *   directory held by an fd (see jailer.h); copy the binary there (and, if
 *   it is dynamically linked, place its loader and libraries by hard link,
 *   or by copy across file systems); make the device nodes;
 *   join the network namespace; create and join the cgroups;
 *   optionally fork into a new PID namespace and/or daemonize;
 *   check the jail is still where it was made, unshare the mount namespace
 *   and pivot_root into the jail;
 *   write <root>/<exec-name>.pid; set the rlimits;
 *   drop every capability and switch uid/gid (libcap-ng); no_new_privs;
 *   install the seccomp allow-list for the VMM (libseccomp) unless the VMM
 *   is told to run without one; exec.
 * Any failure removes what this run made (jail directory, or what it made
 * in an existing one; cgroups) and exits 1.
 * --cleanup removes them for a VM that has finished. */
#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <linux/nsfs.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../vmm/hostfile.h"
#include "../vmm/seccomp.h"
#include "../vmm/version.h"
#include "../vmm/vm_id.h"
#include "jailer.h"

#define DEFAULT_BASE_DIR "/srv/jailer"
#define DEFAULT_NOFILE 2048 /* as Firecracker's jailer */

static int report_fd = -1; /* after a fork, errors also go to the parent */

void jail_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ember-jailer: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int jail_report(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ember-jailer: error: %s\n", msg);
	if (report_fd >= 0 && write(report_fd, msg, strlen(msg)) < 0) {
		/* the parent is gone; stderr has it */
	}
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ember-jailer --id ID --exec-file PATH --uid UID --gid GID [options] [-- VMM args]\n"
		"\n"
		"  --id ID                 VM identifier: 1-64 letters, digits and '-'\n"
		"  --exec-file PATH        the VMM binary to run in the jail (e.g. build/ember)\n"
		"  --uid UID, --gid GID    the user and group the VMM runs as\n"
		"  --chroot-base-dir DIR   where jails are made (default " DEFAULT_BASE_DIR ")\n"
		"                          the jail is DIR/<exec-name>/<id>/root\n"
		"  --netns PATH            join this network namespace (e.g. /var/run/netns/NAME)\n"
		"  --daemonize             detach: new session, stdio to /dev/null\n"
		"  --new-pid-ns            run the VMM as PID 1 of a new PID namespace\n"
		"  --cgroup FILE=VALUE     set a cgroup file (repeatable), e.g. memory.limit_in_bytes=256M\n"
		"  --cgroup-version 1|2    which cgroup hierarchy (default 1)\n"
		"  --parent-cgroup PATH    cgroup under which <id> is made (default: exec-name)\n"
		"  --resource-limit R=N    fsize=N (bytes) or no-file=N (default no-file=%d); repeatable\n"
		"  --cleanup               remove the jail directory and cgroups of a finished VM\n"
		"  --version, --help\n"
		"\n"
		"The jail's root (its files, placed there before the jailer starts, are kept)\n"
		"gets the VMM's pid in <exec-name>.pid. With --new-pid-ns or --daemonize the\n"
		"jailer forks and exits 0 once the VMM has been exec'd. With --no-seccomp (or\n"
		"--seccomp-filter) among the VMM arguments the jailer installs no filter of its own.\n",
		DEFAULT_NOFILE);
}

/* ---- flags --------------------------------------------------------------- */

static bool parse_number(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

/* A relative cgroup path: components of [A-Za-z0-9_.-], none "." or "..". */
static bool valid_cgroup_path(const char *p)
{
	if (!*p || *p == '/' || strlen(p) > 200)
		return false;
	for (const char *c = p; *c; c++) {
		if (*c == '/') {
			if (c[1] == '/' || c[1] == '\0')
				return false;
			continue;
		}
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      *c == '_' || *c == '-' || *c == '.'))
			return false;
	}
	for (const char *c = p; c; c = strchr(c, '/')) {
		if (*c == '/')
			c++;
		if ((c[0] == '.' && (c[1] == '/' || !c[1])) || (c[0] == '.' && c[1] == '.' && (c[2] == '/' || !c[2])))
			return false;
	}
	return true;
}

/* An absolute path whose components are plain names (no "", "." or ".."),
 * so that the ones the jailer makes can be found again to remove them. */
static bool valid_base_dir(const char *p)
{
	if (p[0] != '/')
		return false;
	if (!strcmp(p, "/"))
		return true;
	for (const char *c = p; *c; c += strcspn(c, "/")) {
		size_t n = strcspn(++c, "/");
		if (n == 0 || (c[0] == '.' && (n == 1 || (n == 2 && c[1] == '.'))))
			return false;
	}
	return true;
}

/* FILE=VALUE: FILE is <controller>.<name> in [a-z0-9_.], no '/'. */
static int parse_cgroup(struct jail *j, const char *arg)
{
	if (j->ncgroups == JAIL_MAX_CGROUP_SETTINGS)
		return jail_report("--cgroup: at most %d settings", JAIL_MAX_CGROUP_SETTINGS);
	struct cgroup_setting *s = &j->cgroups[j->ncgroups];
	const char *eq = strchr(arg, '=');
	size_t flen = eq ? (size_t)(eq - arg) : 0;
	const char *dot = eq ? memchr(arg, '.', flen) : NULL;
	if (!eq || !dot || dot == arg || flen >= sizeof(s->file) || (size_t)(dot - arg) >= sizeof(s->controller) ||
	    !eq[1] || strchr(eq + 1, '\n'))
		return jail_report("--cgroup '%s': expected FILE=VALUE with FILE like memory.limit_in_bytes", arg);
	for (const char *c = arg; c < eq; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.'))
			return jail_report("--cgroup '%s': '%.*s' is not a cgroup file name", arg, (int)flen, arg);
	memcpy(s->file, arg, flen);
	s->file[flen] = '\0';
	memcpy(s->controller, arg, (size_t)(dot - arg));
	s->controller[dot - arg] = '\0';
	s->value = eq + 1;
	j->ncgroups++;
	return 0;
}

static int parse_rlimit(struct jail *j, const char *arg)
{
	unsigned long long v;
	const char *eq = strchr(arg, '=');
	if (eq && parse_number(eq + 1, (unsigned long long)LLONG_MAX, &v)) {
		if (!strncmp(arg, "fsize=", 6)) {
			j->rlimit_fsize = (long long)v;
			return 0;
		}
		if (!strncmp(arg, "no-file=", 8) && v > 0) {
			/* The VMM starts with stdin, stdout and stderr only (the
			 * jailer's other fds are close-on-exec): at 3 or less its
			 * first open fails, unseen once daemonized. Refused here
			 * instead, before anything is made, as Firecracker's jailer
			 * fails at its own next open; in the words of the EMFILE
			 * message that Firecracker (built with musl) prints. */
			if (v <= 3)
				return jail_report("--resource-limit no-file=%llu leaves the VMM no file descriptor "
						   "beyond stdin, stdout and stderr: No file descriptors available "
						   "(os error %d)",
						   v, EMFILE);
			j->rlimit_nofile = (long long)v;
			return 0;
		}
	}
	return jail_report("--resource-limit '%s': expected fsize=N or no-file=N (N a number)", arg);
}

enum { OPT_ID = 256, OPT_EXEC, OPT_UID, OPT_GID, OPT_BASE, OPT_NETNS, OPT_DAEMON, OPT_PIDNS, OPT_CGROUP,
       OPT_CGVER, OPT_PARENT_CG, OPT_RLIMIT, OPT_CLEANUP, OPT_VERSION, OPT_HELP, OPT_TEST_AFTER_ROOT };

static int parse_args(int argc, char **argv, struct jail *j)
{
	static const struct option longopts[] = {
		{ "id", required_argument, NULL, OPT_ID },
		{ "exec-file", required_argument, NULL, OPT_EXEC },
		{ "uid", required_argument, NULL, OPT_UID },
		{ "gid", required_argument, NULL, OPT_GID },
		{ "chroot-base-dir", required_argument, NULL, OPT_BASE },
		{ "netns", required_argument, NULL, OPT_NETNS },
		{ "daemonize", no_argument, NULL, OPT_DAEMON },
		{ "new-pid-ns", no_argument, NULL, OPT_PIDNS },
		{ "cgroup", required_argument, NULL, OPT_CGROUP },
		{ "cgroup-version", required_argument, NULL, OPT_CGVER },
		{ "parent-cgroup", required_argument, NULL, OPT_PARENT_CG },
		{ "resource-limit", required_argument, NULL, OPT_RLIMIT },
		{ "cleanup", no_argument, NULL, OPT_CLEANUP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, OPT_HELP },
#ifdef EMBER_TEST_HOOKS
		{ "test-after-root", required_argument, NULL, OPT_TEST_AFTER_ROOT },
#endif
		{ NULL, 0, NULL, 0 },
	};
	const char *uid = NULL, *gid = NULL;
	unsigned long long v;
	int c;
	opterr = 0;
	while ((c = getopt_long_only(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_ID:
			if (!vm_id_valid(optarg)) {
				/* Firecracker's wording, which clients match, then ember's rule. */
				size_t len = strlen(optarg), bad = strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
					"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
				if (len == 0 || len > 64)
					return jail_report("Invalid instance ID: Invalid len (%zu);  the length must be "
							   "between 1 and 64 (--id: 1-64 letters, digits and '-')", len);
				return jail_report("Invalid instance ID: Invalid char (%c) at position %zu (--id '%s': "
						   "must be 1-64 letters, digits and '-')", optarg[bad], bad, optarg);
			}
			j->id = optarg;
			break;
		case OPT_EXEC: j->exec_file = optarg; break;
		case OPT_UID: uid = optarg; break;
		case OPT_GID: gid = optarg; break;
		case OPT_BASE: j->base_dir = optarg; break;
		case OPT_NETNS: j->netns = optarg; break;
		case OPT_DAEMON: j->daemonize = true; break;
		case OPT_PIDNS: j->new_pid_ns = true; break;
		case OPT_CGROUP:
			if (parse_cgroup(j, optarg))
				return -1;
			break;
		case OPT_CGVER:
			if (strcmp(optarg, "1") && strcmp(optarg, "2"))
				return jail_report("--cgroup-version '%s': must be 1 or 2", optarg);
			j->cgroup_version = optarg[0] - '0';
			break;
		case OPT_PARENT_CG:
			if (!valid_cgroup_path(optarg))
				return jail_report("--parent-cgroup '%s': must be a relative path of letters, digits, "
						   "'_', '-' and '.'", optarg);
			j->parent_cgroup = optarg;
			break;
		case OPT_RLIMIT:
			if (parse_rlimit(j, optarg))
				return -1;
			break;
		case OPT_CLEANUP: j->cleanup = true; break;
#ifdef EMBER_TEST_HOOKS
		case OPT_TEST_AFTER_ROOT: jail_test_after_root = optarg; break;
#endif
		case OPT_VERSION: printf("ember-jailer v%s\n", EMBER_VERSION); exit(0);
		case OPT_HELP: usage(stdout); exit(0);
		default:
			if (optopt)
				return jail_report("option '%s' needs a value (see --help)", argv[optind - 1]);
			return jail_report("unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	/* getopt stops at "--"; what follows goes to the VMM. */
	if (optind < argc && strcmp(argv[optind - 1], "--"))
		return jail_report("unexpected argument '%s' (VMM arguments go after --)", argv[optind]);
	j->exec_args = argv + optind;
	j->nexec_args = argc - optind;
	if (j->nexec_args > JAIL_MAX_ARGS)
		return jail_report("too many VMM arguments");

	if (!j->id)
		return jail_report("--id is required");
	if (!j->exec_file)
		return jail_report("--exec-file is required");
	/* The jail is named after the file the path leads to (a symlink's
	 * target), as with Firecracker's jailer; a path that leads nowhere is
	 * refused below, when the file is opened. */
	static char real[PATH_MAX];
	const char *path = realpath(j->exec_file, real) ? real : j->exec_file;
	const char *name = strrchr(path, '/');
	name = name ? name + 1 : path;
	if (!*name || strlen(name) >= sizeof(j->exec_name) || !valid_cgroup_path(name) || strchr(name, '/'))
		return jail_report("--exec-file %s: the file name must be letters, digits, '_', '-' and '.'",
				   j->exec_file);
	snprintf(j->exec_name, sizeof(j->exec_name), "%s", name);
	if (!j->parent_cgroup)
		j->parent_cgroup = j->exec_name;
	/* Trailing slashes go; symlinks in the base are the administrator's
	 * and are followed, once, when it is opened (see jailer.h). */
	static char base[201];
	size_t blen = strlen(j->base_dir);
	while (blen > 1 && j->base_dir[blen - 1] == '/')
		blen--;
	if (blen < sizeof(base))
		snprintf(base, sizeof(base), "%.*s", (int)blen, j->base_dir);
	if (blen >= sizeof(base) || !valid_base_dir(base))
		return jail_report("--chroot-base-dir '%s': must be an absolute path (at most 200 bytes) without "
				   "empty, '.' or '..' components", j->base_dir);
	j->base_dir = base;
	if (j->cleanup)
		return 0;

	if (!uid || !parse_number(uid, 0xfffffffeULL, &v))
		return jail_report("--uid '%s': must be a number", uid ? uid : "");
	j->uid = (uid_t)v;
	if (!gid || !parse_number(gid, 0xfffffffeULL, &v))
		return jail_report("--gid '%s': must be a number", gid ? gid : "");
	j->gid = (gid_t)v;
	/* Every file named by a flag is opened and checked now, before
	 * anything is made, and without blocking (any of them may be a FIFO). */
	if (jail_open_binary(j))
		return -1;
	if (j->netns) {
		char err[PATH_MAX + 64];
		int fd = hostfile_open("--netns", j->netns, O_RDONLY, 0, HOSTFILE_REG, err, sizeof(err));
		if (fd < 0)
			return jail_report("%s", err);
		j->netns_fd = fd;
		if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET)
			return jail_report("--netns %s: not a network namespace (such as /var/run/netns/NAME)", j->netns);
	}
	return 0;
}

/* ---- steps ------------------------------------------------------------------ */

static int join_netns(struct jail *j)
{
	if (j->netns_fd < 0)
		return 0;
	int ret = setns(j->netns_fd, CLONE_NEWNET);
	int err = errno;
	close(j->netns_fd);
	j->netns_fd = -1;
	return ret < 0 ? jail_report("--netns %s: cannot join: %s", j->netns, strerror(err)) : 0;
}

static struct rlimit saved_nofile = { RLIM_INFINITY, RLIM_INFINITY }, saved_fsize = { RLIM_INFINITY, RLIM_INFINITY };

static int set_rlimits(struct jail *j)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &saved_nofile);
	getrlimit(RLIMIT_FSIZE, &saved_fsize);
	rl.rlim_cur = rl.rlim_max = (rlim_t)(j->rlimit_nofile >= 0 ? j->rlimit_nofile : DEFAULT_NOFILE);
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return jail_report("setrlimit no-file=%llu: %s", (unsigned long long)rl.rlim_cur, strerror(errno));
	if (j->rlimit_fsize >= 0) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)j->rlimit_fsize;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			return jail_report("setrlimit fsize=%lld: %s", j->rlimit_fsize, strerror(errno));
	}
	return 0;
}

/* Can uid:gid execute the binary in the jail? Checked while still root,
 * so a failure can still be cleaned up: after the drop it could not. */
static int check_exec_as_user(struct jail *j)
{
	char path[300];
	snprintf(path, sizeof(path), "/%s", j->exec_name);
	setfsgid(j->gid);
	setfsuid(j->uid);
	int ret = faccessat(AT_FDCWD, path, X_OK, AT_EACCESS);
	int err = errno;
	setfsuid(0);
	setfsgid(0);
	if (ret < 0)
		return jail_report("uid %u gid %u cannot execute %s in the jail: %s", (unsigned)j->uid,
				   (unsigned)j->gid, path, strerror(err));
	return 0;
}

static int drop_privileges(struct jail *j)
{
	capng_clear(CAPNG_SELECT_BOTH);
	/* Also empties the bounding set, so not even an exec'd uid 0 gets
	 * capabilities back. */
	int err = capng_change_id((int)j->uid, (int)j->gid, CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
	if (err)
		return jail_report("cannot switch to uid %u gid %u and drop capabilities (capng_change_id: %d)",
				   (unsigned)j->uid, (unsigned)j->gid, err);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return jail_report("clearing ambient capabilities: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return jail_report("no_new_privs: %s", strerror(errno));
	/* A supervisor's "my VMMs die with me" (ember-fn's) outlives the
	 * switch; a parent already gone by now stops the start. */
	if (j->pdeath_signal &&
	    (prctl(PR_SET_PDEATHSIG, j->pdeath_signal, 0, 0, 0) < 0 || getppid() != j->parent))
		return jail_report("the parent-death signal %d could not be kept (or the parent exited)", j->pdeath_signal);
	return 0;
}

static unsigned long long now_us(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

/* With --no-seccomp the VMM is to run with no filter at all (as
 * Firecracker's does), and with --seccomp-filter with only the one it is
 * given: then the jailer installs none of its own, which would stay
 * beneath. Otherwise its allow-list (the union of the VMM's thread roles)
 * guards the exec and the VMM's start, until the VMM's own filters. */
static bool vmm_sets_own_filter(const struct jail *j)
{
	for (int i = 0; i < j->nexec_args; i++) {
		const char *a = j->exec_args[i];
		a += a[0] == '-' && a[1] == '-'; /* the VMM also takes -flag */
		if (!strcmp(a, "-no-seccomp") || !strcmp(a, "-seccomp-filter") || !strncmp(a, "-seccomp-filter=", 16))
			return true;
	}
	return false;
}

static int exec_vmm(struct jail *j, unsigned long long start_us, unsigned long long start_cpu_us)
{
	char path[300], t1[24], t2[24];
	snprintf(path, sizeof(path), "/%s", j->exec_name);
	snprintf(t1, sizeof(t1), "%llu", start_us);
	snprintf(t2, sizeof(t2), "%llu", start_cpu_us);
	char *argv[JAIL_MAX_ARGS + 8];
	int n = 0;
	argv[n++] = path;
	argv[n++] = "--id";
	argv[n++] = (char *)j->id;
	argv[n++] = "--start-time-us";
	argv[n++] = t1;
	argv[n++] = "--start-time-cpu-us";
	argv[n++] = t2;
	for (int i = 0; i < j->nexec_args; i++)
		argv[n++] = j->exec_args[i];
	argv[n] = NULL;
	char *envp[] = { NULL };
	execve(path, argv, envp);
	return jail_report("exec %s in the jail: %s", path, strerror(errno));
}

/* A forked child leaves the undo to its parent, which is still root and
 * waits for it to exit (see fork_and_wait). */
static noreturn void undo_and_exit(struct jail *j)
{
	if (report_fd < 0) {
		/* The undo opens directories; the VMM's limits are not for it. */
		setrlimit(RLIMIT_NOFILE, &saved_nofile);
		setrlimit(RLIMIT_FSIZE, &saved_fsize);
		jail_remove_dir(j);
		cgroup_remove(j);
	}
	exit(1);
}

/* With --new-pid-ns or --daemonize the jailer forks. The parent writes
 * the child's pid to the pid file and waits on a close-on-exec pipe: EOF means the
 * VMM was exec'd (exit 0); a message means the child failed, cleaned up
 * and exited (exit 1). Returns in the child only. */
static void fork_and_wait(struct jail *j)
{
	/* A session leader's exit hangs up its terminal and sends SIGHUP to
	 * the session: a jailer started as one (e.g. by screen) would stop
	 * the VMM it leaves behind. So the child leads a session of its own
	 * (--daemonize makes one later anyway). */
	bool leader = !j->daemonize && getsid(0) == getpid();
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		jail_report("pipe: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		jail_report("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		close(pfd[0]);
		report_fd = pfd[1];
		j->pdeath_signal = 0; /* fork cleared it; the VMM outlives the jailer here */
		if (leader && setsid() < 0) {
			jail_report("setsid: %s", strerror(errno));
			undo_and_exit(j);
		}
		return;
	}
	close(pfd[1]);
	char msg[1024];
	if (jail_write_pid_file(j, (int)pid)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		jail_remove_dir(j);
		cgroup_remove(j);
		_exit(1);
	}
	ssize_t n;
	do
		n = read(pfd[0], msg, sizeof(msg));
	while (n < 0 && errno == EINTR);
	/* _exit: after unshare(CLONE_NEWPID) this process's new children land
	 * in the VMM's namespace, so exit-time handlers that fork (a
	 * sanitizer's leak check) must not run here. */
	fflush(NULL);
	if (n > 0) {
		/* The child may have dropped root by then; the parent still
		 * is, and the cgroups can go once the child has left them. */
		waitpid(pid, NULL, 0);
		jail_remove_dir(j);
		cgroup_remove(j);
		_exit(1);
	}
	_exit(0);
}

/* The pid in <root>/<exec-name>.pid, or 0. The jail's uid owns root/ and
 * may have put anything there: no symlink is followed, and only a regular
 * file is read (a FIFO would block). */
static int read_pid_file(struct jail *j)
{
	char name[300], buf[24];
	snprintf(name, sizeof(name), "%s.pid", j->exec_name);
	int fd = j->root_fd < 0 ? -1 : openat(j->root_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, sizeof(buf) - 1) : -1;
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	long pid = strtol(buf, NULL, 10);
	return pid > 0 && pid <= INT_MAX ? (int)pid : 0;
}

static int cleanup(struct jail *j)
{
	if (jail_open_existing(j) || cgroup_open_existing(j))
		return 1;
	if (!j->jail_created && j->ncg == 0) {
		jail_log("nothing to clean up for %s", j->jail_dir);
		return 0;
	}
	/* A VM still running in the jail keeps it. */
	int pid = read_pid_file(j);
	char proc_root[64];
	struct stat a, b;
	snprintf(proc_root, sizeof(proc_root), "/proc/%d/root", pid);
	if (pid > 0 && stat(proc_root, &a) == 0 && fstat(j->root_fd, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino) {
		jail_report("%s is still in use by pid %d; stop the VM first", j->jail_dir, pid);
		return 1;
	}
	jail_remove_dir(j);
	cgroup_remove(j);
	bool left = j->jail_created;
	for (int i = 0; i < j->ncg; i++)
		left |= j->cg[i].created_depth > 0;
	if (!left)
		jail_log("removed the jail %s and its cgroups", j->jail_dir);
	return left ? 1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long long start_us = now_us(CLOCK_MONOTONIC), start_cpu_us = now_us(CLOCK_PROCESS_CPUTIME_ID);
	/* Nothing inherited reaches the jail: no fds beyond stdio (they could
	 * be host directories), no environment. */
	if (close_range(3, ~0U, 0) < 0) {
		jail_report("close_range: %s", strerror(errno));
		return 1;
	}
	static struct jail j = { .base_dir = DEFAULT_BASE_DIR, .cgroup_version = 1, .rlimit_fsize = -1,
				 .rlimit_nofile = -1, .exec_fd = -1, .netns_fd = -1, .base_fd = -1,
				 .exec_dir_fd = -1, .jail_fd = -1, .root_fd = -1 };
	j.parent = getppid();
	if (prctl(PR_GET_PDEATHSIG, &j.pdeath_signal, 0, 0, 0) < 0)
		j.pdeath_signal = 0;
	if (parse_args(argc, argv, &j))
		return 1;
	clearenv();
	if (j.cleanup)
		return cleanup(&j);
	if (geteuid() != 0) {
		jail_report("must run as root: it makes device nodes, cgroups and namespaces, then drops to --uid");
		return 1;
	}

	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0) {
		jail_report("/dev/null: %s", strerror(errno));
		return 1;
	}
	if (jail_make_root(&j) || jail_place_binary(&j) || jail_make_devices(&j) || join_netns(&j) ||
	    cgroup_setup(&j) || cgroup_join(&j, getpid()))
		undo_and_exit(&j);
	if (j.new_pid_ns && unshare(CLONE_NEWPID) < 0) {
		jail_report("unshare(CLONE_NEWPID): %s", strerror(errno));
		undo_and_exit(&j);
	}
	if (j.new_pid_ns || j.daemonize) {
		fork_and_wait(&j);
		if (report_fd < 0) /* the fork failed */
			undo_and_exit(&j);
	}
	if (jail_pivot_root(&j))
		undo_and_exit(&j);
	if (j.daemonize && (setsid() < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)) {
		jail_report("daemonize: %s", strerror(errno));
		undo_and_exit(&j);
	}
	close(devnull);
	/* Without a fork the VMM will have this process's pid. */
	if (report_fd < 0 && jail_write_pid_file(&j, (int)getpid()))
		undo_and_exit(&j);
	/* The limits go last, so that they bind the VMM, not the jailer's own
	 * work (a no-file limit below what it holds open would fail it). */
	if (set_rlimits(&j))
		undo_and_exit(&j);
	char err[256];
	if (check_exec_as_user(&j) || drop_privileges(&j))
		undo_and_exit(&j);
	if (!vmm_sets_own_filter(&j) && seccomp_install(SECCOMP_ROLE_JAIL, err, sizeof(err))) {
		jail_report("%s", err);
		undo_and_exit(&j);
	}
	exec_vmm(&j, start_us, start_cpu_us);
	undo_and_exit(&j);
}
