/* ember-init: PID 1 of ember's guest rootfs.
 *
 *  1. mounts /proc, /sys, /dev (devtmpfs) and /tmp;
 *  2. signals "booted" by writing the byte 123 to guest-physical
 *     0xc0000000 through /dev/mem (the boot-timer convention ember shares
 *     with Firecracker, so the same rootfs times boots under both);
 *  3. prints "ember-init: ready";
 *  4. runs the command from ember.cmd= on the kernel command line with
 *     /bin/sh -c (quote it: ember.cmd="echo hi"), or an interactive
 *     /bin/sh when there is none, and prints its exit status;
 *  5. syncs and reboots, which ends the VM.
 *
 * Ctrl-Alt-Del (the API's SendCtrlAltDel) reaches it as SIGINT: it then
 * stops the command, syncs and reboots the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOOT_TIMER_ADDR 0xc0000000UL
#define BOOT_TIMER_MAGIC 123

static void say(const char *fmt, const char *arg)
{
	fprintf(stdout, "ember-init: ");
	fprintf(stdout, fmt, arg);
	fputc('\n', stdout);
	fflush(stdout);
}

static void mount_fs(const char *src, const char *dir, const char *type)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, 0, NULL) < 0 && errno != EBUSY)
		say("cannot mount %s", dir);
}

static void signal_boot_timer(void)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0) {
		say("no /dev/mem: %s", strerror(errno));
		return;
	}
	long page = sysconf(_SC_PAGESIZE);
	volatile unsigned char *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED,
					 fd, (off_t)BOOT_TIMER_ADDR);
	if (p == MAP_FAILED) {
		say("cannot map the boot timer: %s", strerror(errno));
	} else {
		*p = BOOT_TIMER_MAGIC;
		munmap((void *)p, (size_t)page);
	}
	close(fd);
}

/* The value of ember.cmd= from /proc/cmdline, or NULL. A value that
 * starts with a double quote runs to the closing quote. */
static char *find_cmd(void)
{
	static char buf[4096];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = 0;
	char *p = buf;
	while ((p = strstr(p, "ember.cmd="))) {
		if (p != buf && p[-1] != ' ') {
			p++;
			continue;
		}
		p += strlen("ember.cmd=");
		char *end;
		if (*p == '"') {
			p++;
			end = strchr(p, '"');
		} else {
			end = p + strcspn(p, " \n");
		}
		if (end)
			*end = 0;
		else
			p[strcspn(p, "\n")] = 0;
		return p;
	}
	return NULL;
}

static volatile sig_atomic_t cad;

static void on_sigint(int sig)
{
	(void)sig;
	cad = 1;
}

int main(void)
{
	/* Ctrl-Alt-Del: a SIGINT for us rather than an immediate reboot. */
	struct sigaction sa = { .sa_handler = on_sigint };
	sigaction(SIGINT, &sa, NULL);
	reboot(RB_DISABLE_CAD);

	mount_fs("proc", "/proc", "proc");
	mount_fs("sysfs", "/sys", "sysfs");
	mount_fs("devtmpfs", "/dev", "devtmpfs");
	mount_fs("tmpfs", "/tmp", "tmpfs");
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 1);
	setenv("TERM", "linux", 0);

	signal_boot_timer();
	say("%s", "ready");

	char *cmd = find_cmd();
	pid_t child = fork();
	if (child == 0) {
		signal(SIGINT, SIG_DFL);
		if (cmd)
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		else
			execl("/bin/sh", "sh", (char *)NULL);
		say("cannot run /bin/sh: %s", strerror(errno));
		_exit(127);
	}
	int status = 0;
	/* As PID 1, also reap orphans until the command itself ends. */
	for (;;) {
		pid_t pid = wait(&status);
		if (pid == child || (pid < 0 && errno == ECHILD))
			break;
		if (pid < 0 && errno == EINTR && cad) {
			say("%s", "Ctrl-Alt-Del: shutting down");
			kill(-1, SIGTERM);
			break;
		}
	}
	if (!cad) {
		char num[16];
		snprintf(num, sizeof(num), "%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		say("command exited with status %s", num);
	}
	sync();
	reboot(RB_AUTOBOOT);
	say("reboot failed: %s", strerror(errno));
	return 1;
}
