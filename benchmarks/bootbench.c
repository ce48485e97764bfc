/* bootbench: start a VMM, and report when a marker first appears on its
 * output and when it exits, in milliseconds since the fork. The same
 * external stopwatch is used for every VMM, so their numbers compare.
 *
 * usage: bootbench MARKER FAIL_MARKER TIMEOUT_S -- COMMAND [ARGS...]
 * prints: "<marker_ms> <exit_ms> <exit_status>" (marker_ms -1 if never seen)
 *
 * Both stdout and stderr are watched. FAIL_MARKER (or "" for none) ends
 * the run at once when it appears: a VMM that has stopped its guest (QEMU
 * on an emulation failure) would otherwise sit until the timeout.
 * With BOOTBENCH_LOG=path in the environment, the output is also saved.
 * With BOOTBENCH_FROM=text, marker_ms counts from when that text appeared
 * (for timing a span inside the guest's run).
 * With BENCH_ABSOLUTE=1, two more columns: the fork and the marker as
 * CLOCK_MONOTONIC milliseconds (-1 if not seen), to time VMs started
 * together from the first fork to the last marker.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 6 || strcmp(argv[4], "--") != 0) {
		fprintf(stderr, "usage: bootbench MARKER FAIL_MARKER TIMEOUT_S -- COMMAND [ARGS...]\n");
		return 2;
	}
	const char *marker = argv[1];
	const char *fail_marker = argv[2];
	double timeout_ms = atof(argv[3]) * 1000;
	int out[2];
	if (pipe(out) < 0)
		return 2;
	int devnull = open("/dev/null", O_RDWR);
	double start = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(devnull, 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		close(out[0]);
		execvp(argv[5], argv + 5);
		_exit(127);
	}
	close(out[1]);
	const char *log_path = getenv("BOOTBENCH_LOG");
	FILE *log = log_path ? fopen(log_path, "w") : NULL;
	char window[4096] = "";
	size_t wlen = 0;
	size_t keep = strlen(marker) > strlen(fail_marker) ? strlen(marker) : strlen(fail_marker);
	double marker_ms = -1, from_ms = -1;
	const char *from = getenv("BOOTBENCH_FROM");
	for (;;) {
		double left = timeout_ms - (now_ms() - start);
		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		if (poll(&p, 1, (int)left + 1) <= 0)
			continue;
		char buf[4096];
		ssize_t n = read(out[0], buf, sizeof(buf));
		if (n <= 0)
			break;
		if (log)
			fwrite(buf, 1, (size_t)n, log);
		/* Keep the tail of the output so a marker split across reads is found. */
		for (ssize_t i = 0; i < n; i++) {
			if (wlen == sizeof(window) - 1) {
				memmove(window, window + wlen - keep, keep);
				wlen = keep;
			}
			window[wlen++] = buf[i] ? buf[i] : ' ';
			window[wlen] = 0;
		}
		if (from && from_ms < 0 && strstr(window, from))
			from_ms = now_ms() - start;
		if (marker_ms < 0 && strstr(window, marker))
			marker_ms = now_ms() - start;
		if (fail_marker[0] && strstr(window, fail_marker)) {
			kill(pid, SIGKILL);
			break;
		}
	}
	int status;
	waitpid(pid, &status, 0);
	if (log)
		fclose(log);
	double exit_ms = now_ms() - start;
	if (from)
		marker_ms = (marker_ms >= 0 && from_ms >= 0) ? marker_ms - from_ms : -1;
	printf("%.2f %.2f %d", marker_ms, exit_ms, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	if (getenv("BENCH_ABSOLUTE"))
		printf(" %.3f %.3f", start, marker_ms >= 0 && !from ? start + marker_ms : -1);
	printf("\n");
	return 0;
}
