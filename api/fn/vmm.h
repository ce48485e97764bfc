/* ember-fn's view of one ember process: started with its API socket,
 * driven with one HTTP request per connection, killed and reaped. Every
 * wait has a deadline (CLOCK_MONOTONIC milliseconds, fn_now_ms). */
#ifndef EMBER_FN_VMM_H
#define EMBER_FN_VMM_H

#include <stddef.h>
#include <sys/types.h>

long long fn_now_ms(void);

/* Start argv (argv[0] a path: ember with its --api-sock api_sock, or
 * ember-jailer with ember's flags after its --) in the working directory
 * dir (where the relative paths in its configuration resolve), with stdin
 * from /dev/null and stdout and stderr appended to log_path; api_sock is
 * removed first. Returns its pid, or -1 with errno set. The VMM is killed
 * when ember-fn exits, not when the calling thread does (ember-jailer
 * keeps that across its uid switch). */
pid_t fn_vmm_start(const char *const *argv, const char *dir, const char *api_sock, const char *log_path);

/* Run argv to its end (stdout and stderr appended to log_path): 0 when it
 * exited 0, else -1. */
int fn_run(const char *const *argv, const char *log_path);

/* One request to the API at api_sock: METHOD PATH with a JSON body (or
 * NULL). Returns the answer's status (and its body, NUL-terminated, in
 * reply when given), or -1 when there was none by the deadline. */
int fn_vmm_request(const char *api_sock, const char *method, const char *path, const char *body,
		   long long deadline, char *reply, size_t reply_cap);

/* Until the API at api_sock answers (0), or pid exits or the deadline
 * passes (-1). */
int fn_vmm_wait_api(const char *api_sock, pid_t pid, long long deadline);

/* SIGKILL and reap. */
void fn_vmm_kill(pid_t pid);

#endif
