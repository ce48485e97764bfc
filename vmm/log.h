/* Logging: one line per event, to stderr or a file/FIFO, with a level.
 *
 * A line is Firecracker's:
 *   <local time, ns> [<id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>
 * e.g. "2026-12-01T14:02:03.123456789 [vm1:fc_api:INFO:api/server.c:88] ..."
 * with the level (ERROR, WARN, INFO, DEBUG, TRACE) shown only when
 * show_level is on and the origin (the source path as built) only when
 * show_log_origin is on. <id> is --id; <thread> is the name the thread
 * gave itself (log_set_thread_name: "main" for the VMM thread, "fc_api",
 * "fc_vcpu N"), "-" for a thread that gave none.
 *
 * Levels are Firecracker's names (Error, Warning, Info, Debug, Trace).
 * Messages that a guest can trigger repeatedly must use log_ratelimited()
 * so a hostile guest cannot flood the host's log. */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdnoreturn.h>

enum log_level { LOG_OFF = 0, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* Parse a Firecracker level name ("Error", "Warning", "Info", "Debug",
 * "Trace", "Off"; case-insensitive). Returns -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/* The instance id every line names (default "anonymous-instance"). The
 * string must outlive logging. */
void log_set_id(const char *id);
/* The calling thread's name in its lines (at most 15 characters kept). */
void log_set_thread_name(const char *name);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_show_level(bool show);
void log_set_show_origin(bool show);
/* Redirect logs to the file or FIFO at path (opened non-blocking, append).
 * Returns 0, or -errno with "WHAT PATH: reason" in err; on failure logging
 * stays where it was. */
int log_set_path(const char *what, const char *path, char *err, size_t errlen);

/* Open a regular file or FIFO for lines of output (logs, metrics) the way
 * log_set_path does; never waits, and refuses any other kind of file.
 * Returns the fd, or -errno with "WHAT PATH: reason" in err. */
int log_open_sink(const char *what, const char *path, char *err, size_t errlen);

/* Whether lines go to a file or FIFO (log_set_path), not stderr. */
bool log_to_file(void);

/* Lines that could not be written whole (a full FIFO, a full disk). */
unsigned long long log_missed_count(void);
/* Messages log_ratelimited() dropped. */
unsigned long long log_rate_limited_count(void);

bool log_enabled(enum log_level level);
void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_error(...) log_write(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

/* At most one message per second per call site; the rest are counted and
 * reported with the next message that gets through. */
#define log_ratelimited(level, ...)                                              \
	do {                                                                     \
		static struct log_ratelimit log_rl_;                             \
		if (log_enabled(level) && log_ratelimit_pass(&log_rl_))         \
			log_write(level, __FILE__, __LINE__, __VA_ARGS__);       \
	} while (0)

struct log_ratelimit {
	long long last_sec;
	unsigned long suppressed;
};
bool log_ratelimit_pass(struct log_ratelimit *rl);

/* Setup-time fatal error: "ember: MESSAGE" on stderr, and in a log file
 * the message and "Firecracker exiting with error. exit_code=1" (the line
 * Firecracker's clients look for); then exit(1). Never on guest-triggered
 * paths. */
noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* From a signal handler: msg (a whole line) to the log as it is, with one
 * write() and no lock, and to stderr too if the log is elsewhere. */
void log_signal_safe(const char *msg, size_t len);

#endif
