/* seccomp filters for ember, one per thread role, built with libseccomp
 * from the allow-list in seccomp.c.
 *
 *   JAIL  installed by ember-jailer before it execs ember: everything any
 *         role needs, plus what the dynamic loader and start-up need.
 *   VMM   the main thread, installed before any untrusted input is read
 *         (the config file, the API, the guest); threads it creates
 *         inherit it and then narrow it with their own:
 *   API   the HTTP server thread.
 *   VCPU  each vCPU thread.
 *
 * Filters stack, so a thread is held to the intersection of the filters
 * it inherited and its own. A syscall outside the filter kills the whole
 * process with SIGSYS (and the kernel logs it). */
#ifndef EMBER_SECCOMP_H
#define EMBER_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

enum seccomp_role { SECCOMP_ROLE_JAIL, SECCOMP_ROLE_VMM, SECCOMP_ROLE_API, SECCOMP_ROLE_VCPU };

/* Install the filter for role on the calling thread. Returns 0, or -1
 * with a message in err. A no-op once seccomp_disable() was called. */
int seccomp_install(enum seccomp_role role, char *err, size_t errlen);

/* --no-seccomp: ember installs no filters of its own (a jailer's filter,
 * if any, stays: filters cannot be removed). */
void seccomp_disable(void);

const char *seccomp_role_name(enum seccomp_role role);

/* --seccomp-filter: install insns (len instructions, kept by the caller for
 * the life of the process; len 0 for none) for role (VMM, API or vCPU)
 * instead of ember's filter. Called for the three roles before the first
 * seccomp_install(); the filters still stack, so the API and vCPU threads,
 * created after the VMM thread installed its filter, are held to theirs
 * and the VMM thread's. */
struct sock_filter;
void seccomp_use_custom(enum seccomp_role role, const struct sock_filter *insns, size_t len);

#ifdef EMBER_TEST_HOOKS
/* Test builds only: after installing the filter for this role, the thread
 * makes a syscall no filter allows, to show that it is killed. */
extern int seccomp_test_forbidden_role;
/* Test builds only: install the trace variants of the filters, which stop
 * a refused system call for a ptrace tracer (tests/integration/
 * seccomp_tracer.c) instead of killing ember. Without a tracer such calls
 * fail with ENOSYS. */
extern bool seccomp_test_trace;
#endif

#endif
