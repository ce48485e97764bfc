#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hostfile.h"

static _Atomic enum log_level cur_level = LOG_INFO;
static atomic_bool show_level;
static atomic_bool show_origin;
/* The destination can change (PUT /logger) while other threads log. */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;
static atomic_ullong missed, rate_limited;
static const char *log_id = "anonymous-instance";
static _Thread_local char thread_name[16] = "-";

static const char *const level_names[] = {
	[LOG_OFF] = "Off",     [LOG_ERROR] = "Error", [LOG_WARN] = "Warning",
	[LOG_INFO] = "Info",   [LOG_DEBUG] = "Debug", [LOG_TRACE] = "Trace",
};
/* As a line shows them. */
static const char *const level_tags[] = {
	[LOG_OFF] = "OFF",   [LOG_ERROR] = "ERROR", [LOG_WARN] = "WARN",
	[LOG_INFO] = "INFO", [LOG_DEBUG] = "DEBUG", [LOG_TRACE] = "TRACE",
};

/* The process's first thread is the VMM thread. */
__attribute__((constructor)) static void log_name_main_thread(void)
{
	log_set_thread_name("main");
}

int log_level_parse(const char *name)
{
	for (int i = LOG_OFF; i <= LOG_TRACE; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	if (strcasecmp(name, "Warn") == 0)
		return LOG_WARN;
	return -1;
}

const char *log_level_name(enum log_level level)
{
	return level <= LOG_TRACE ? level_names[level] : "?";
}

void log_set_id(const char *id) { log_id = id; }
void log_set_thread_name(const char *name) { snprintf(thread_name, sizeof(thread_name), "%s", name); }
void log_set_level(enum log_level level) { cur_level = level; }
enum log_level log_get_level(void) { return cur_level; }
void log_set_show_level(bool show) { show_level = show; }
void log_set_show_origin(bool show) { show_origin = show; }
bool log_enabled(enum log_level level) { return level != LOG_OFF && level <= cur_level; }

int log_open_sink(const char *what, const char *path, char *err, size_t errlen)
{
	/* A FIFO is opened read-write, so opening never waits for a reader and
	 * writing never fails for want of one; O_NONBLOCK, so a FIFO nobody
	 * drains loses lines instead of stalling ember. The stat() only picks
	 * the flags: hostfile_open() checks what was really opened. */
	struct stat st;
	int flags = O_NONBLOCK;
	if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode))
		flags |= O_RDWR;
	else
		flags |= O_WRONLY | O_APPEND | O_CREAT;
	return hostfile_open(what, path, flags, 0600, HOSTFILE_REG | HOSTFILE_FIFO, err, errlen);
}

int log_set_path(const char *what, const char *path, char *err, size_t errlen)
{
	int fd = log_open_sink(what, path, err, errlen);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&fd_lock);
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	pthread_mutex_unlock(&fd_lock);
	return 0;
}

bool log_to_file(void)
{
	pthread_mutex_lock(&fd_lock);
	bool file = log_fd != STDERR_FILENO;
	pthread_mutex_unlock(&fd_lock);
	return file;
}

unsigned long long log_missed_count(void)
{
	return atomic_load(&missed);
}

unsigned long long log_rate_limited_count(void)
{
	return atomic_load(&rate_limited);
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;

	char buf[1024];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Local time, as Firecracker; main() loaded the zone (tzset) before
	 * any filter forbade reading it. */
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%09ld [%s:%s", ts.tv_nsec, log_id, thread_name);
	if (show_level && n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%s", level_tags[level]);
	if (show_origin && n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%s:%d", file, line);
	if (n < sizeof(buf) - 1)
		buf[n++] = ']';
	if (n < sizeof(buf) - 1)
		buf[n++] = ' ';

	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write per line so lines from different threads never interleave. */
	pthread_mutex_lock(&fd_lock);
	ssize_t r = write(log_fd, buf, n);
	pthread_mutex_unlock(&fd_lock);
	if (r != (ssize_t)n)
		atomic_fetch_add(&missed, 1);
}

bool log_ratelimit_pass(struct log_ratelimit *rl)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	bool pass;
	pthread_mutex_lock(&lock);
	if (ts.tv_sec != rl->last_sec) {
		rl->last_sec = ts.tv_sec;
		if (rl->suppressed)
			log_write(LOG_WARN, __FILE__, __LINE__, "%lu messages suppressed", rl->suppressed);
		rl->suppressed = 0;
		pass = true;
	} else {
		rl->suppressed++;
		atomic_fetch_add(&rate_limited, 1);
		pass = false;
	}
	pthread_mutex_unlock(&lock);
	return pass;
}

void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ember: %s\n", msg);
	if (log_fd != STDERR_FILENO) {
		log_write(LOG_ERROR, __FILE__, __LINE__, "%s", msg);
		log_write(LOG_ERROR, __FILE__, __LINE__, "Firecracker exiting with error. exit_code=1");
	}
	exit(1);
}

void log_signal_safe(const char *msg, size_t len)
{
	if (write(log_fd, msg, len) < 0 || log_fd == STDERR_FILENO)
		return;
	if (write(STDERR_FILENO, msg, len) < 0)
		return;
}
