/* apibench: how soon a VMM's control socket answers, and how fast.
 *
 *   apibench ember SOCK -- EMBER_COMMAND...
 *   apibench qemu  SOCK -- QEMU_COMMAND...   (with -qmp unix:SOCK,server=on,wait=off)
 *
 * Starts the command, then measures from the fork:
 *   ready_us   until a connection to SOCK is accepted and answered (ember:
 *              the reply to GET /; QEMU: the QMP greeting)
 *   cpu_us     CPU time the VMM used until then (all its threads)
 *   then REQUESTS round trips on that one connection (ember: GET /;
 *   QEMU: query-status) and prints their median and p90 in us.
 * Output: "ready_us cpu_us median_us p90_us". The VMM is killed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQUESTS 500

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Sum of sum_exec_runtime over the process's threads, in us. */
static double cpu_us(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	double total = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[300];
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		FILE *f = fopen(p, "r");
		unsigned long long ns;
		if (f && fscanf(f, "%llu", &ns) == 1)
			total += ns / 1e3;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return total;
}

/* Read until the buffer holds `until`, or timeout; returns bytes. */
static ssize_t read_until(int fd, char *buf, size_t cap, const char *until)
{
	size_t n = 0;
	double deadline = now_us() + 5e6;
	while (n < cap - 1 && now_us() < deadline) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = 0;
		if (strstr(buf, until))
			return (ssize_t)n;
	}
	return -1;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 5 || strcmp(argv[3], "--") != 0) {
		fprintf(stderr, "usage: apibench ember|qemu SOCK -- COMMAND...\n");
		return 2;
	}
	bool qemu = strcmp(argv[1], "qemu") == 0;
	const char *sock = argv[2];
	unlink(sock);
	double start = now_us();
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[4], argv + 4);
		_exit(127);
	}
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock);
	int fd = -1;
	char buf[8192];
	double ready = -1;
	while (now_us() - start < 10e6) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			break;
		close(fd);
		fd = -1;
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
	}
	if (fd >= 0) {
		if (qemu) {
			if (read_until(fd, buf, sizeof(buf), "\"QMP\"") > 0)
				ready = now_us() - start;
		} else {
			static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
			if (write(fd, get, sizeof(get) - 1) > 0 && read_until(fd, buf, sizeof(buf), "}") > 0)
				ready = now_us() - start;
		}
	}
	double cpu = cpu_us(pid);
	static double lat[REQUESTS];
	int ok = 0;
	if (ready >= 0) {
		if (qemu) {
			static const char caps[] = "{\"execute\":\"qmp_capabilities\"}\n";
			if (write(fd, caps, sizeof(caps) - 1) < 0 || read_until(fd, buf, sizeof(buf), "return") < 0)
				ok = -1;
		}
		for (int i = 0; ok >= 0 && i < REQUESTS; i++) {
			static const char q[] = "{\"execute\":\"query-status\"}\n";
			static const char g[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
			double t0 = now_us();
			if ((qemu ? write(fd, q, sizeof(q) - 1) : write(fd, g, sizeof(g) - 1)) < 0 ||
			    read_until(fd, buf, sizeof(buf), qemu ? "return" : "}") < 0) {
				ok = -1;
				break;
			}
			lat[ok++] = now_us() - t0;
		}
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
	if (ready < 0 || ok <= 0) {
		printf("-1 -1 -1 -1\n");
		return 0;
	}
	qsort(lat, (size_t)ok, sizeof(lat[0]), cmp);
	printf("%.0f %.0f %.1f %.1f\n", ready, cpu, lat[ok / 2], lat[(int)(ok * 0.9)]);
	return 0;
}
