/* Compiling ember's seccomp allow-list (rules.c) to BPF, at build time. */
#ifndef EMBER_SECCOMP_RULES_H
#define EMBER_SECCOMP_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "../seccomp.h"

/* Write role's filter as a raw BPF program (struct sock_filter[]) to fd.
 * A system call outside the list kills the process, or, with trace, stops
 * it for a ptrace tracer with the role as SECCOMP_RET_DATA (the test mode:
 * tests/integration/seccomp_tracer.c). Returns 0, or -1 with a message in err. */
int seccomp_compile(enum seccomp_role role, bool trace, int fd, char *err, size_t errlen);

#endif
