/* Compiling ember's seccomp allow-list (rules.c) to BPF, at build time. */
#ifndef EMBER_SECCOMP_RULES_H
#define EMBER_SECCOMP_RULES_H

#include <stddef.h>

#include "../seccomp.h"

/* Write role's filter as a raw BPF program (struct sock_filter[]) to fd.
 * Returns 0, or -1 with a message in err. */
int seccomp_compile(enum seccomp_role role, int fd, char *err, size_t errlen);

#endif
