/* ember: a microVM monitor. This file is the CLI (Firecracker's flags)
 * and the wiring: config -> VM -> devices -> kernel -> vCPUs -> event loop. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../api/config_json.h"
#include "boot/boot.h"
#include "config.h"
#include "devices/boot_timer.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "emulate.h"
#include "io/evloop.h"
#include "log.h"
#include "vcpu.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vm.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif

/* Used when the config gives no boot_args. */
#define DEFAULT_BOOT_ARGS "console=ttyS0 reboot=k panic=1"

struct options {
	const char *config_file;
	const char *api_sock;
	const char *id;
	bool no_api;
	bool boot_timer;
};

struct ember {
	struct timespec start_wall, start_cpu;
	struct options opt;
	struct vmm_config cfg;
	struct vm vm;
	struct serial serial;
	struct i8042 i8042;
	struct boot_timer boot_timer;
	struct virtio_blk *blk[CONFIG_MAX_DRIVES];
	struct virtio_net *net[CONFIG_MAX_NETS];
	struct virtio_vsock *vsock;
	struct virtio_rng *rng;
	struct evloop loop;
	struct evloop_watch stdin_watch, stop_watch, signal_watch;
	int signal_fd;
	bool tty_raw;
	struct termios tty_saved;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ember [options]\n"
		"\n"
		"  --config-file PATH   configure the VM from a Firecracker-style JSON file\n"
		"  --no-api             do not serve the API (requires --config-file)\n"
		"  --api-sock PATH      API socket path (default /run/ember.socket)\n"
		"  --id ID              VM identifier (default anonymous-instance)\n"
		"  --boot-timer         log the time until the guest writes 123 to 0x%llx\n"
		"  --level LEVEL        log level: Error, Warning, Info, Debug, Trace, Off\n"
		"  --log-path PATH      write logs to PATH (file or FIFO) instead of stderr\n"
		"  --show-level         include the level in each log line\n"
		"  --show-log-origin    include file:line in each log line\n"
		"  --version            print the version and exit\n"
		"  --help               print this help and exit\n",
		(unsigned long long)0xc0000000ULL);
}

enum { OPT_CONFIG = 256, OPT_NO_API, OPT_API_SOCK, OPT_ID, OPT_BOOT_TIMER, OPT_LEVEL,
       OPT_LOG_PATH, OPT_SHOW_LEVEL, OPT_SHOW_ORIGIN, OPT_VERSION, OPT_HELP };

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config-file", required_argument, NULL, OPT_CONFIG },
		{ "no-api", no_argument, NULL, OPT_NO_API },
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "id", required_argument, NULL, OPT_ID },
		{ "boot-timer", no_argument, NULL, OPT_BOOT_TIMER },
		{ "level", required_argument, NULL, OPT_LEVEL },
		{ "log-path", required_argument, NULL, OPT_LOG_PATH },
		{ "show-level", no_argument, NULL, OPT_SHOW_LEVEL },
		{ "show-log-origin", no_argument, NULL, OPT_SHOW_ORIGIN },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->api_sock = "/run/ember.socket";
	o->id = "anonymous-instance";
	opterr = 0;
	int c, level;
	while ((c = getopt_long_only(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG: o->config_file = optarg; break;
		case OPT_NO_API: o->no_api = true; break;
		case OPT_API_SOCK: o->api_sock = optarg; break;
		case OPT_ID: o->id = optarg; break;
		case OPT_BOOT_TIMER: o->boot_timer = true; break;
		case OPT_LEVEL:
			if ((level = log_level_parse(optarg)) < 0)
				die("--level: unknown level '%s' (Error, Warning, Info, Debug, Trace, Off)", optarg);
			log_set_level((enum log_level)level);
			break;
		case OPT_LOG_PATH: {
			int err = log_set_path(optarg);
			if (err)
				die("--log-path %s: %s", optarg, strerror(-err));
			break;
		}
		case OPT_SHOW_LEVEL: log_set_show_level(true); break;
		case OPT_SHOW_ORIGIN: log_set_show_origin(true); break;
		case OPT_VERSION: printf("ember v%s\n", EMBER_VERSION); exit(0);
		case OPT_HELP: usage(stdout); exit(0);
		default:
			if (optopt)
				die("option '%s' needs a value (see --help)", argv[optind - 1]);
			die("unknown option '%s' (see --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (o->no_api && !o->config_file)
		die("--no-api needs --config-file: without either there is no way to configure the VM");
	if (!o->no_api)
		die("the API server is not available in this build; run with --no-api --config-file FILE");
}

/* ---- kernel command line ------------------------------------------ */

static bool host_is_pvm(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

static void build_cmdline(const struct vmm_config *cfg, char *out, size_t len)
{
	char added[128];
	const char *base = cfg->boot.has_boot_args ? cfg->boot.boot_args : DEFAULT_BOOT_ARGS;
	if (boot_cmdline_build(base, host_is_pvm(), out, len, added, sizeof(added)))
		die("kernel command line longer than %zu bytes", len - 1);
	if (added[0])
		log_info("kvm_pvm host: added kernel parameters:%s", added);
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
		serial_input(&e->serial, buf, (size_t)n);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		evloop_unwatch(w); /* EOF or error: the guest gets no more input */
	}
}

static void on_stop(struct evloop_watch *w, int res)
{
	struct ember *e = container_of(w, struct ember, stop_watch);
	(void)res;
	evloop_stop(&e->loop);
}

static void on_signal(struct evloop_watch *w, int res)
{
	struct ember *e = container_of(w, struct ember, signal_watch);
	struct signalfd_siginfo si;
	(void)res;
	if (read(e->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		char why[48];
		snprintf(why, sizeof(why), "signal %s", strsignal((int)si.ssi_signo));
		vm_request_stop(&e->vm, 128 + (int)si.ssi_signo, why);
	}
}

/* SIGINT/SIGTERM/SIGHUP become a clean stop through a signalfd; they are
 * blocked in every thread (vCPU threads inherit the mask). */
static void signals_setup(struct ember *e)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	e->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (e->signal_fd < 0)
		die("signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
}

/* ---- VM assembly --------------------------------------------------- */

/* Announce a device on the kernel command line. */
static void announce(const struct virtio_dev *vd, char *cmdline, size_t len)
{
	char word[64];
	virtio_dev_cmdline(vd, word, sizeof(word));
	if (boot_cmdline_append(cmdline, len, word))
		die("kernel command line too long for the virtio devices");
}

/* virtio-mmio devices in a fixed order: the root drive first (so it is
 * /dev/vda), the other drives, network interfaces, vsock, entropy. */
static void attach_virtio_devices(struct ember *e, char *cmdline, size_t len)
{
	unsigned index = 0;
	int err;
	char msg[256];
	/* Root drive first: it becomes /dev/vda. */
	unsigned order[CONFIG_MAX_DRIVES], n = 0;
	for (unsigned i = 0; i < e->cfg.ndrives; i++)
		if (e->cfg.drives[i].is_root_device)
			order[n++] = i;
	for (unsigned i = 0; i < e->cfg.ndrives; i++)
		if (!e->cfg.drives[i].is_root_device)
			order[n++] = i;
	for (unsigned k = 0; k < n; k++) {
		const struct drive_config *d = &e->cfg.drives[order[k]];
		struct virtio_blk *blk = e->blk[k] = calloc(1, sizeof(*blk));
		if (!blk)
			die("out of memory");
		if (virtio_blk_init(blk, &e->vm, &e->loop, index++, d, msg, sizeof(msg)))
			die("%s", msg);
		announce(&blk->vd, cmdline, len);
		/* As Firecracker: the root drive sets root= (and ro/rw), unless
		 * the boot args already choose a root. */
		if (d->is_root_device && !boot_cmdline_has(cmdline, "root")) {
			char root[CONFIG_ID_MAX + 32];
			virtio_blk_root_param(blk, root, sizeof(root));
			if (boot_cmdline_append(cmdline, len, root))
				die("kernel command line too long for the root device");
		}
	}
	for (unsigned i = 0; i < e->cfg.nnets; i++) {
		struct virtio_net *net = e->net[i] = calloc(1, sizeof(*net));
		if (!net)
			die("out of memory");
		if (virtio_net_init(net, &e->vm, &e->loop, index++, &e->cfg.nets[i], msg, sizeof(msg)))
			die("%s", msg);
		announce(&net->vd, cmdline, len);
	}
	if (e->cfg.vsock.set) {
		e->vsock = calloc(1, sizeof(*e->vsock));
		if (!e->vsock)
			die("out of memory");
		if (virtio_vsock_init(e->vsock, &e->vm, &e->loop, index++, &e->cfg.vsock, msg, sizeof(msg)))
			die("%s", msg);
		announce(&e->vsock->vd, cmdline, len);
	}
	if (e->cfg.entropy.set) {
		e->rng = calloc(1, sizeof(*e->rng));
		if (!e->rng)
			die("out of memory");
		if ((err = virtio_rng_init(e->rng, &e->vm, &e->loop, index++, &e->cfg.entropy.rate_limiter)))
			die("entropy device: %s", strerror(-err));
		announce(&e->rng->vd, cmdline, len);
	}
}

static void build_vm(struct ember *e)
{
	struct vm *vm = &e->vm;
	const struct machine_config *mc = &e->cfg.machine;
	static char cmdline[4096];
	struct boot_images img = {
		.kernel_path = e->cfg.boot.kernel_image_path,
		.initrd_path = e->cfg.boot.initrd_path[0] ? e->cfg.boot.initrd_path : NULL,
		.cmdline = cmdline,
	};
	char msg[256];
	if (boot_check_images(&img, msg, sizeof(msg)))
		die("%s", msg);
	build_cmdline(&e->cfg, cmdline, sizeof(cmdline));

	if (vm_create(vm, mc->mem_size_mib << 20, mc->vcpu_count))
		die("cannot create the VM (see the error above)");
	vm->smt = mc->smt;

	int err;
	if ((err = serial_init(&e->serial, vm, STDOUT_FILENO)))
		die("serial: %s", strerror(-err));
	if ((err = i8042_init(&e->i8042, vm)))
		die("i8042: %s", strerror(-err));
	if (e->opt.boot_timer &&
	    (err = boot_timer_init(&e->boot_timer, vm, &e->start_wall, &e->start_cpu)))
		die("boot timer: %s", strerror(-err));

	attach_virtio_devices(e, cmdline, sizeof(cmdline));

	struct boot_entry entry;
	if (boot_load(vm, &img, &entry, msg, sizeof(msg)))
		die("%s", msg);
	log_debug("kernel command line: %s", cmdline);

	vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		die("out of memory");
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		if (vcpu_create(vm, &vm->vcpus[i], i) || boot_setup_vcpu(&vm->vcpus[i], &entry))
			die("cannot set up vcpu %u (see the error above)", i);
	}
}

static void report_device(struct virtio_dev *vd, const char *id)
{
	char buf[768];
	virtio_counters(vd, buf, sizeof(buf));
	log_debug("%s %s: %s", vd->ops->name, id, buf);
}

/* Counters at exit, with --level Debug. */
static void report(struct ember *e)
{
	char buf[256];
	emu_stats_format(&e->vm.emu, buf, sizeof(buf));
	log_debug("emulated instructions: %s", buf[0] ? buf : "none");
	if (!log_enabled(LOG_DEBUG))
		return;
	for (unsigned i = 0; i < CONFIG_MAX_DRIVES && e->blk[i]; i++)
		report_device(&e->blk[i]->vd, e->blk[i]->cfg.drive_id);
	for (unsigned i = 0; i < CONFIG_MAX_NETS && e->net[i]; i++)
		report_device(&e->net[i]->vd, e->net[i]->cfg.iface_id);
	if (e->vsock)
		report_device(&e->vsock->vd, "vsock");
	if (e->rng)
		report_device(&e->rng->vd, "entropy");
}

int main(int argc, char **argv)
{
	static struct ember e;
	clock_gettime(CLOCK_MONOTONIC, &e.start_wall);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &e.start_cpu);

	parse_args(argc, argv, &e.opt);
	config_defaults(&e.cfg);
	char msg[512];
	if (config_load_file(e.opt.config_file, &e.cfg, msg, sizeof(msg)))
		die("%s", msg);

	signals_setup(&e);
	int err = evloop_init(&e.loop, 256);
	if (err)
		die("io_uring: %s", strerror(-err));
	build_vm(&e);

	if (evloop_watch(&e.loop, &e.stop_watch, e.vm.stop_fd, POLLIN, on_stop) ||
	    evloop_watch(&e.loop, &e.signal_watch, e.signal_fd, POLLIN, on_signal) ||
	    evloop_watch(&e.loop, &e.stdin_watch, STDIN_FILENO, POLLIN, on_stdin))
		die("cannot watch the VM's event sources");
	tty_setup(&e);

	log_info("booting %s (%u vCPU%s, %llu MiB)", e.cfg.boot.kernel_image_path, e.vm.nvcpus,
		 e.vm.nvcpus == 1 ? "" : "s", (unsigned long long)e.cfg.machine.mem_size_mib);
	for (unsigned i = 0; i < e.vm.nvcpus; i++)
		if (vcpu_start(&e.vm.vcpus[i]))
			vm_request_stop(&e.vm, 1, "cannot start vcpus");

	err = evloop_run(&e.loop);
	if (err)
		vm_request_stop(&e.vm, 1, "event loop failed");
	for (unsigned i = 0; i < e.vm.nvcpus; i++)
		vcpu_stop(&e.vm.vcpus[i]);
	tty_restore(&e);
	if (e.vsock)
		virtio_vsock_cleanup(e.vsock);
	report(&e);
	return e.vm.exit_code;
}
