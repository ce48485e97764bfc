/* ember: a microVM monitor. This file is the CLI (Firecracker's flags)
 * and the wiring: the VMM thread's event loop, the controller that owns
 * the VM, the API server thread, signals and the terminal. */
#include <errno.h>
#include <getopt.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../api/config_json.h"
#include "../api/server.h"
#include "controller.h"
#include "io/evloop.h"
#include "log.h"
#include "migration/address.h"
#include "migration/migration.h"
#include "metrics.h"
#include "mmds/mmds.h"
#include "seccomp.h"
#include "seccomp_file.h"
#include "snapshot/snapfile.h"
#include "snapshot/snapshot.h"
#include "vcpu.h"
#include "version.h"
#include "vm.h"
#include "vm_id.h"

#define DEFAULT_API_SOCK "/run/firecracker.socket" /* Firecracker's */
#define DEFAULT_MAX_PAYLOAD 51200 /* Firecracker's default */

/* Firecracker's exit statuses for a bad command line and a bad log level. */
#define EXIT_ARG_PARSING 153
#define EXIT_BAD_CONFIGURATION 152

struct options {
	const char *config_file;
	const char *api_sock;
	const char *id;
	const char *metrics_path;
	const char *seccomp_filter;
	const char *metadata;         /* --metadata: the store's first contents */
	const char *migration_listen; /* --migration-listen: wait for a migrating VM */
	size_t max_payload;
	size_t mmds_size_limit;       /* 0: max_payload, as Firecracker */
	bool no_api;
	bool boot_timer;
	/* Set by ember-jailer (as Firecracker's jailer does): when it started. */
	unsigned long long jailer_start_us;
};

struct ember {
	struct timespec start_wall, start_cpu;
	struct options opt;
	struct evloop loop;
	struct controller ctrl;
	struct api_server api;
	struct evloop_watch stdin_watch, signal_watch;
	int signal_fd;
	int exit_code;
	bool tty_raw;
	struct termios tty_saved;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ember [options]\n"
		"       ember merge-memory BASE_MEM_FILE DIFF_MEM_FILE\n"
		"\n"
		"  --config-file PATH   configure the VM from a Firecracker-style JSON file\n"
		"  --no-api             do not serve the API (requires --config-file)\n"
		"  --api-sock PATH      API socket path (default " DEFAULT_API_SOCK ")\n"
		"  --id ID              VM identifier (default anonymous-instance)\n"
		"  --metrics-path PATH  write metrics (one JSON object a line) to PATH\n"
		"  --http-api-max-payload-size BYTES  largest API request body (default %d)\n"
		"  --metadata PATH      fill the MMDS data store with the JSON in PATH\n"
		"  --mmds-size-limit BYTES  largest MMDS data store (default: the API payload limit)\n"
		"  --boot-timer         log the time until the guest writes 123 to 0x%llx\n"
		"  --migration-listen unix:PATH|tcp:HOST:PORT  receive a VM migrated live from another\n"
		"                       ember there (ember's own; see PUT /ember/migration)\n"
		"  --level LEVEL        log level: Error, Warning, Info, Debug, Trace, Off\n"
		"  --log-path PATH      write logs to PATH (file or FIFO) instead of stderr\n"
		"  --show-level         include the level in each log line\n"
		"  --show-log-origin    include file:line in each log line\n"
		"  --no-seccomp         install no seccomp filters (debugging only)\n"
		"  --seccomp-filter PATH  install the filters in PATH (Firecracker's seccompiler-bin\n"
		"                       output) instead of ember's own\n"
		"  --module MODULE      accepted and ignored, as the logger's \"module\"\n"
		"  --snapshot-version   print the snapshot format version this ember writes and exit\n"
		"  --describe-snapshot PATH  print the format version of a snapshot state file and exit\n"
		"  --start-time-us N, --start-time-cpu-us N, --parent-cpu-time-us N\n"
		"                       set by a jailer: when it started (for the startup metrics)\n"
		"  --version            print the Firecracker version ember matches, then ember's, and exit\n"
		"  --help               print this help and exit\n",
		DEFAULT_MAX_PAYLOAD, (unsigned long long)0xc0000000ULL);
}

enum { OPT_CONFIG = 256, OPT_NO_API, OPT_API_SOCK, OPT_ID, OPT_BOOT_TIMER, OPT_LEVEL,
       OPT_LOG_PATH, OPT_SHOW_LEVEL, OPT_SHOW_ORIGIN, OPT_METRICS_PATH, OPT_MAX_PAYLOAD,
       OPT_VERSION, OPT_HELP, OPT_NO_SECCOMP, OPT_START_US, OPT_START_CPU_US, OPT_PARENT_CPU_US,
       OPT_SECCOMP_FILTER, OPT_MODULE, OPT_SNAPSHOT_VERSION, OPT_DESCRIBE_SNAPSHOT, OPT_METADATA,
       OPT_MMDS_SIZE_LIMIT, OPT_ENABLE_PCI, OPT_MIGRATION_LISTEN,
       OPT_TEST_FORBIDDEN_SYSCALL, OPT_TEST_SECCOMP_TRACE, OPT_TEST_API_TIMEOUT };

/* A command line ember refuses: one line, and Firecracker's status. */
__attribute__((format(printf, 1, 2))) noreturn static void die_args(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ember: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(EXIT_ARG_PARSING);
}

noreturn static void describe_snapshot(const char *path)
{
	char msg[512];
	uint32_t version;
	if (snapfile_version(path, &version, msg, sizeof(msg)))
		die("--describe-snapshot: %s", msg);
	printf(SNAPFILE_VERSION_FMT "\n", version);
	exit(0);
}

static unsigned long long parse_us(const char *flag, const char *arg)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(arg, &end, 10);
	if (errno || *end || end == arg || *arg == '-')
		die("%s: '%s' is not a number of microseconds", flag, arg);
	return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "migration-listen", required_argument, NULL, OPT_MIGRATION_LISTEN },
		{ "config-file", required_argument, NULL, OPT_CONFIG },
		{ "no-api", no_argument, NULL, OPT_NO_API },
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "id", required_argument, NULL, OPT_ID },
		{ "boot-timer", no_argument, NULL, OPT_BOOT_TIMER },
		{ "level", required_argument, NULL, OPT_LEVEL },
		{ "log-path", required_argument, NULL, OPT_LOG_PATH },
		{ "show-level", no_argument, NULL, OPT_SHOW_LEVEL },
		{ "show-log-origin", no_argument, NULL, OPT_SHOW_ORIGIN },
		{ "metrics-path", required_argument, NULL, OPT_METRICS_PATH },
		{ "http-api-max-payload-size", required_argument, NULL, OPT_MAX_PAYLOAD },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
		{ "start-time-us", required_argument, NULL, OPT_START_US },
		{ "start-time-cpu-us", required_argument, NULL, OPT_START_CPU_US },
		{ "parent-cpu-time-us", required_argument, NULL, OPT_PARENT_CPU_US },
		{ "seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER },
		{ "module", required_argument, NULL, OPT_MODULE },
		{ "snapshot-version", no_argument, NULL, OPT_SNAPSHOT_VERSION },
		{ "describe-snapshot", required_argument, NULL, OPT_DESCRIBE_SNAPSHOT },
		{ "metadata", required_argument, NULL, OPT_METADATA },
		{ "mmds-size-limit", required_argument, NULL, OPT_MMDS_SIZE_LIMIT },
		{ "enable-pci", no_argument, NULL, OPT_ENABLE_PCI },
#ifdef EMBER_TEST_HOOKS
		{ "test-forbidden-syscall", required_argument, NULL, OPT_TEST_FORBIDDEN_SYSCALL },
		{ "test-seccomp-trace", no_argument, NULL, OPT_TEST_SECCOMP_TRACE },
		{ "test-api-timeout-ms", required_argument, NULL, OPT_TEST_API_TIMEOUT },
#endif
		{ NULL, 0, NULL, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->api_sock = DEFAULT_API_SOCK;
	o->id = "anonymous-instance";
	o->max_payload = DEFAULT_MAX_PAYLOAD;
	opterr = 0;
	int c, level;
	bool no_seccomp = false;
	while ((c = getopt_long_only(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG: o->config_file = optarg; break;
		case OPT_NO_API: o->no_api = true; break;
		case OPT_API_SOCK: o->api_sock = optarg; break;
		case OPT_ID:
			if (!vm_id_valid(optarg))
				die("--id: '%s' is not 1-64 letters, digits and '-'", optarg);
			o->id = optarg;
			break;
		case OPT_METRICS_PATH: o->metrics_path = optarg; break;
		case OPT_MAX_PAYLOAD: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v == 0 || v > (64ULL << 20))
				die("--http-api-max-payload-size: '%s' is not a size from 1 to %llu bytes",
				    optarg, 64ULL << 20);
			o->max_payload = (size_t)v;
			break;
		}
		case OPT_BOOT_TIMER: o->boot_timer = true; break;
		case OPT_LEVEL:
			if ((level = log_level_parse(optarg)) < 0) {
				fprintf(stderr, "ember: --level: unknown level '%s' (Error, Warning, Info, Debug, "
					"Trace, Off)\n", optarg);
				exit(EXIT_BAD_CONFIGURATION);
			}
			log_set_level((enum log_level)level);
			break;
		case OPT_LOG_PATH: {
			char msg[512];
			if (log_set_path("--log-path", optarg, msg, sizeof(msg)))
				die("%s", msg);
			break;
		}
		case OPT_SHOW_LEVEL: log_set_show_level(true); break;
		case OPT_SHOW_ORIGIN: log_set_show_origin(true); break;
		case OPT_NO_SECCOMP: no_seccomp = true; break;
		case OPT_SECCOMP_FILTER: o->seccomp_filter = optarg; break;
		case OPT_MODULE: break;
		case OPT_SNAPSHOT_VERSION: printf(SNAPFILE_VERSION_FMT "\n", SNAPFILE_VERSION); exit(0);
		case OPT_DESCRIBE_SNAPSHOT: describe_snapshot(optarg);
		/* Features of later versions: refused, never silently ignored. */
		case OPT_METADATA: o->metadata = optarg; break;
		case OPT_MIGRATION_LISTEN: o->migration_listen = optarg; break;
		case OPT_MMDS_SIZE_LIMIT: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || *optarg == '-' || v == 0 || v > (64ULL << 20))
				die_args("--mmds-size-limit: '%s' is not a size from 1 to %llu bytes", optarg,
					 64ULL << 20);
			o->mmds_size_limit = (size_t)v;
			break;
		}
		case OPT_ENABLE_PCI:
			die_args("--enable-pci: PCI is not supported yet (ember's devices are virtio-mmio)");
		case OPT_START_US: o->jailer_start_us = parse_us("--start-time-us", optarg); break;
		case OPT_START_CPU_US: (void)parse_us("--start-time-cpu-us", optarg); break;
		case OPT_PARENT_CPU_US: (void)parse_us("--parent-cpu-time-us", optarg); break;
#ifdef EMBER_TEST_HOOKS
		case OPT_TEST_FORBIDDEN_SYSCALL:
			for (int r = SECCOMP_ROLE_VMM; r <= SECCOMP_ROLE_VCPU; r++)
				if (!strcmp(optarg, seccomp_role_name((enum seccomp_role)r)))
					seccomp_test_forbidden_role = r;
			if (seccomp_test_forbidden_role < 0)
				die("--test-forbidden-syscall: vmm, api or vcpu");
			break;
		case OPT_TEST_SECCOMP_TRACE: seccomp_test_trace = true; break;
		case OPT_TEST_API_TIMEOUT: { /* the API's idle and request timeouts */
			char *end;
			unsigned long ms = strtoul(optarg, &end, 10);
			if (*end || end == optarg || ms == 0 || ms > 3600000)
				die("--test-api-timeout-ms: '%s' is not 1 to 3600000 ms", optarg);
			api_server_test_timeout_ms = (unsigned)ms;
			break;
		}
#endif
		case OPT_VERSION:
			/* Firecracker's shape first (its clients take the version
			 * from the first line), then ember's own version. */
			printf("Firecracker v%s\n\nember v%s\n", EMBER_FIRECRACKER_API_VERSION, EMBER_VERSION);
			exit(0);
		case OPT_HELP: usage(stdout); exit(0);
		default:
			if (optopt)
				die_args("option '%s' needs a value (see --help)", argv[optind - 1]);
			die_args("unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die_args("unexpected argument '%s' (see --help)", argv[optind]);
	if (o->no_api && !o->config_file)
		die_args("--no-api needs --config-file: without either there is no way to configure the VM");
	if (o->migration_listen && o->config_file)
		die_args("--migration-listen and --config-file cannot be used together: the VM comes from the source");
	if (no_seccomp && o->seccomp_filter)
		die_args("--no-seccomp and --seccomp-filter cannot be used together");
	if (no_seccomp)
		seccomp_disable();
#ifdef EMBER_TEST_HOOKS
	/* The host CPU as the CPU template tests pretend it is (another
	 * vendor or model, a missing feature): cpu_template.h. */
	const char *host_cpuid = getenv("EMBER_TEST_HOST_CPUID");
	if (host_cpuid && cpu_host_override_set(host_cpuid))
		die("EMBER_TEST_HOST_CPUID: '%s' is not LEAF.SUBLEAF:REG=VALUE or LEAF.SUBLEAF:REG&~MASK, "
		    "comma-separated", host_cpuid);
#endif
}

/* ---- terminal and event loop ---------------------------------------- */

static void tty_restore(struct ember *e)
{
	if (e->tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &e->tty_saved);
		e->tty_raw = false;
	}
}

/* Keys go to the guest as typed (no echo, no line editing), but Ctrl-C
 * still stops ember. */
static void tty_setup(struct ember *e)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &e->tty_saved) < 0)
		return;
	struct termios t = e->tty_saved;
	t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ECHONL | IEXTEN);
	t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		e->tty_raw = true;
}

static void on_stdin(struct evloop_watch *w, int res)
{
	struct ember *e = container_of(w, struct ember, stdin_watch);
	uint8_t buf[256];
	ssize_t n = res < 0 ? -1 : read(STDIN_FILENO, buf, sizeof(buf));
	if (n > 0) {
		if (e->ctrl.state != STATE_NOT_STARTED)
			serial_input(&e->ctrl.machine.serial, buf, (size_t)n);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		evloop_unwatch(w); /* EOF or error: the guest gets no more input */
	}
}

/* The signals Firecracker handles, and the exit status it stops with. */
static const struct { int signo, exit_code; } fc_signals[] = {
	{ SIGBUS, 149 }, { SIGSEGV, 150 }, { SIGXFSZ, 151 }, { SIGXCPU, 154 },
	{ SIGHUP, 156 }, { SIGILL, 157 },
};

static void on_signal(struct evloop_watch *w, int res)
{
	struct ember *e = container_of(w, struct ember, signal_watch);
	struct signalfd_siginfo si;
	(void)res;
	if (read(e->signal_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return;
	int sig = (int)si.ssi_signo, code = 128 + sig;
	metrics_signal(sig);
	/* Firecracker's lines (its clients and tests look for them). */
	if (sig == SIGPIPE) {
		/* A guest can make ember write to a closed socket again and again. */
		log_ratelimited(LOG_ERROR, "Received signal %d, code %d.", sig, si.ssi_code);
		return;
	}
	for (size_t i = 0; i < sizeof(fc_signals) / sizeof(fc_signals[0]); i++)
		if (fc_signals[i].signo == sig) {
			log_error("Shutting down VM after intercepting signal %d, code %d.", sig, si.ssi_code);
			code = fc_signals[i].exit_code;
		}
	char why[48];
	snprintf(why, sizeof(why), "signal %s", strsignal(sig));
	if (e->ctrl.state != STATE_NOT_STARTED) {
		vm_request_stop(&e->ctrl.machine.vm, code, why);
	} else {
		log_info("stopping: %s", why);
		e->exit_code = code;
		evloop_stop(&e->loop);
	}
}

static void ignore_signal(int sig)
{
	(void)sig;
}

/* Firecracker's exit statuses for SIGSYS: a system call a seccomp filter
 * trapped, and any other SIGSYS. */
#define EXIT_BAD_SYSCALL 148
#define EXIT_UNEXPECTED 2

static size_t put_decimal(char *p, unsigned v)
{
	char digits[12];
	size_t nd = 0, n = 0;
	do
		digits[nd++] = (char)('0' + v % 10);
	while ((v /= 10) && nd < sizeof(digits));
	while (nd)
		p[n++] = digits[--nd];
	return n;
}

/* SIGSYS is the one signal Firecracker handles that cannot go through the
 * signalfd: when a --seccomp-filter program traps a call, the kernel
 * forces SIGSYS, and a blocked one would kill ember without a word. So it
 * has a handler (only async-signal-safe calls): Firecracker's line and
 * status, for a trapped call and for one sent by another process. ember's
 * own filters kill instead of trapping. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	char line[96] = "ember: Shutting down VM after intercepting ";
	size_t n = strlen(line);
	bool trapped = si->si_code == 1; /* SYS_SECCOMP (asm-generic/siginfo.h) */
	if (trapped) {
		memcpy(line + n, "a bad syscall (", 15);
		n += 15;
		n += put_decimal(line + n, (unsigned)si->si_syscall);
		line[n++] = ')';
	} else {
		memcpy(line + n, "signal ", 7);
		n += 7;
		n += put_decimal(line + n, (unsigned)sig);
		memcpy(line + n, ", code ", 7);
		n += 7;
		if (si->si_code < 0)
			line[n++] = '-';
		n += put_decimal(line + n, (unsigned)(si->si_code < 0 ? -si->si_code : si->si_code));
	}
	line[n++] = '.';
	line[n++] = '\n';
	log_signal_safe(line, n);
	_exit(trapped ? EXIT_BAD_SYSCALL : EXIT_UNEXPECTED);
}

/* SIGINT/SIGTERM and the signals Firecracker handles (SIGSYS aside, see
 * on_sigsys) become a clean stop (SIGPIPE a log line) through a signalfd; they are blocked in every
 * thread (the others inherit the mask). A fault's own SIGSEGV, SIGBUS or
 * SIGILL cannot be blocked: it still kills ember at once. */
static void signals_setup(struct ember *e)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGPIPE);
	for (size_t i = 0; i < sizeof(fc_signals) / sizeof(fc_signals[0]); i++)
		sigaddset(&set, fc_signals[i].signo);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* As PID 1 of a PID namespace (ember-jailer --new-pid-ns) the kernel
	 * drops signals whose action is the default, even blocked ones; a
	 * handler (never run: they stay blocked) keeps them working. A write
	 * to a closed socket or FIFO fails with EPIPE, and its SIGPIPE stays
	 * pending on that thread, unread and harmless. */
	struct sigaction sa = { .sa_handler = ignore_signal };
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&set, sig) == 1)
			sigaction(sig, &sa, NULL);
	struct sigaction sys = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sys.sa_mask);
	sigaction(SIGSYS, &sys, NULL);
	e->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (e->signal_fd < 0)
		die("signalfd: %s", strerror(errno));
}

static uint64_t us_since(const struct timespec *from, clockid_t clock)
{
	struct timespec now;
	clock_gettime(clock, &now);
	return (uint64_t)(now.tv_sec - from->tv_sec) * 1000000ULL +
	       (uint64_t)((now.tv_nsec - from->tv_nsec) / 1000);
}

/* --migration-listen: the socket a source connects to. */
static void listen_for_migration(struct controller *c, const char *address)
{
	struct mig_address a;
	char msg[300];
	if (mig_address_parse(address, &a, msg, sizeof(msg)))
		die_args("--migration-listen: %s", msg);
	const char *path = a.family == AF_UNIX ? ((struct sockaddr_un *)&a.sa)->sun_path : NULL;
	int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || (a.family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) ||
	    bind(fd, (struct sockaddr *)&a.sa, a.len) || listen(fd, 1))
		die("--migration-listen %s: %s", address, strerror(errno));
	if (migration_listen(c, fd, path))
		die("--migration-listen: cannot watch the socket");
	log_info("migration: waiting for a source on %s", address);
}

int main(int argc, char **argv)
{
	static struct ember e;
	/* One malloc arena for every thread. glibc otherwise gives threads
	 * heaps of their own, and the first time it trims one it opens
	 * /proc/sys/vm/overcommit_memory: on the API or a vCPU thread, whose
	 * filters allow no open, that killed ember. ember's threads allocate
	 * little, so one arena costs nothing and saves each thread's heap. */
	mallopt(M_ARENA_MAX, 1);
	clock_gettime(CLOCK_MONOTONIC, &e.start_wall);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &e.start_cpu);

	/* "ember merge-memory BASE DIFF": apply a Diff snapshot's memory file
	 * onto the memory file of the snapshot it was taken after. */
	if (argc >= 2 && strcmp(argv[1], "merge-memory") == 0) {
		if (argc != 4) {
			fprintf(stderr, "usage: ember merge-memory BASE_MEM_FILE DIFF_MEM_FILE\n");
			return 2;
		}
		char why[512];
		if (snapshot_merge_diff(argv[2], argv[3], why, sizeof(why))) {
			fprintf(stderr, "ember: merge-memory: %s\n", why);
			return 1;
		}
		return 0;
	}
	parse_args(argc, argv, &e.opt);
	log_set_id(e.opt.id);
	/* The first line of a log file, which Firecracker's clients wait for
	 * (not on stderr, where a failed start stays one error line). */
	if (log_to_file())
		log_info("Running Firecracker v%s (ember %s)", EMBER_FIRECRACKER_API_VERSION, EMBER_VERSION);
	signals_setup(&e);
	/* The log's strftime() loads the time zone on first use, reading
	 * /etc/localtime: done now, before any thread's filter forbids open. */
	tzset();
	/* Before the first untrusted input (the config file, the API, the
	 * guest); the API and vCPU threads narrow it further. */
	char msg[512];
	if (e.opt.seccomp_filter) {
		static struct seccomp_file f; /* the filters live as long as ember */
		if (seccomp_file_load(e.opt.seccomp_filter, &f, msg, sizeof(msg)))
			die("Seccomp error: %s (--seccomp-filter %s)", msg, e.opt.seccomp_filter);
		for (int r = 0; r < 3; r++)
			seccomp_use_custom((enum seccomp_role)(SECCOMP_ROLE_VMM + r), f.insns[r], f.len[r]);
	}
	if (seccomp_install(SECCOMP_ROLE_VMM, msg, sizeof(msg)))
		die("%s", msg);
	/* Every ember process builds a VM: let KVM start on it now, on a
	 * thread of its own, while the API comes up and the client configures. */
	vm_prepare();
	vcpu_prepare();
	int err = evloop_init(&e.loop, 256);
	if (err)
		die("io_uring: %s", strerror(-err));
	if ((err = controller_init(&e.ctrl, &e.loop, e.opt.id, e.opt.boot_timer, &e.start_wall, &e.start_cpu)))
		die("cannot set up the VMM thread: %s", strerror(-err));

	struct controller *c = &e.ctrl;
	mmds_set_size_limit(c->mmds, e.opt.mmds_size_limit ? e.opt.mmds_size_limit : e.opt.max_payload);
	/* A config file's failures in Firecracker's words (its clients look
 * for them in the log), with ember's reason after them. */
#define CONFIG_FILE_FAILED "Failed to build MicroVM from Json: Configuration for VMM from one single json failed: %s"
	if (e.opt.config_file) {
		if (config_load_file(e.opt.config_file, &c->cfg, msg, sizeof(msg)))
			die(CONFIG_FILE_FAILED, msg);
		if (c->cfg.logger.set && controller_apply_logger(c, &c->cfg.logger, msg, sizeof(msg)))
			die(CONFIG_FILE_FAILED, msg);
		if (c->cfg.metrics.set) {
			struct metrics_config m = c->cfg.metrics;
			if (controller_apply_metrics(c, &m, msg, sizeof(msg)))
				die(CONFIG_FILE_FAILED, msg);
		}
	}
	if (e.opt.metrics_path) {
		struct metrics_config m = { .set = true };
		snprintf(m.metrics_path, sizeof(m.metrics_path), "%s", e.opt.metrics_path);
		if (controller_apply_metrics(c, &m, msg, sizeof(msg)))
			die("--metrics-path: %s", msg);
	}
	if (!e.opt.no_api) {
		if (api_server_start(&e.api, e.opt.api_sock, e.opt.max_payload, c, msg, sizeof(msg)))
			die("%s", msg);
		c->api_metrics = api_server_metrics;
	}
	/* After the API is up, as Firecracker fills the store (its clients
	 * wait for the API's start line, then for this one or the error). */
	if (e.opt.metadata) {
		if (mmds_load_file(c->mmds, e.opt.metadata, msg, sizeof(msg))) {
			controller_close(c);
			api_server_stop(&e.api);
			die("%s", msg);
		}
		log_info("Successfully added metadata to mmds from file");
	}
	if (e.opt.migration_listen)
		listen_for_migration(c, e.opt.migration_listen);
	c->startup_us = us_since(&e.start_wall, CLOCK_MONOTONIC);
	c->startup_cpu_us = us_since(&e.start_cpu, CLOCK_PROCESS_CPUTIME_ID);
	if (e.opt.jailer_start_us) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		unsigned long long now_us = (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
		log_info("ready %llu us after the jailer started", now_us - e.opt.jailer_start_us);
	}

	/* With a config file the VM boots at once, API or not (as Firecracker). */
	if (e.opt.config_file) {
		if (controller_start_instance(c, msg, sizeof(msg))) {
			controller_close(c); /* a client may already wait for an answer */
			api_server_stop(&e.api);
			die("Failed to build MicroVM from Json: Could not Start MicroVM from one single json: %s", msg);
		}
		log_info("Successfully started microvm that was configured from one single json");
	}
	vcpu_release_prepared(); /* no request to answer first */

	if (evloop_watch(&e.loop, &e.signal_watch, e.signal_fd, POLLIN, on_signal) ||
	    evloop_watch(&e.loop, &e.stdin_watch, STDIN_FILENO, POLLIN, on_stdin))
		die("cannot watch signals and the console");
	if (c->state != STATE_NOT_STARTED)
		tty_setup(&e);

	err = evloop_run(&e.loop);
	if (err)
		log_error("event loop failed: %s", strerror(-err));
	/* Whatever ended the loop, nothing will answer the API thread any
	 * more: close the channel first, so the API thread can be joined. */
	controller_close(c);
	api_server_stop(&e.api);
	controller_shutdown(c);
	tty_restore(&e);
	int code = err ? 1 : c->state != STATE_NOT_STARTED || c->load_failed ? c->exit_code : e.exit_code;
	/* The last line of a log file, as Firecracker's (its clients read the
	 * exit code there). */
	if (code == 0 && log_to_file())
		log_info("Firecracker exiting successfully. exit_code=0");
	else if (log_to_file())
		log_error("Firecracker exiting with error. exit_code=%d", code);
	return code;
}
