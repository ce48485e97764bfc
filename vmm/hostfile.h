/* Files named by a client: API bodies, the config file, CLI flags.
 *
 * Such a path may name anything, and open() of a FIFO waits for the other
 * end: on the VMM thread that would stop every request and signal.
 * hostfile_open() never waits (it opens with O_NONBLOCK), then checks with
 * fstat() that the file is a kind the field allows, and refuses it with a
 * message naming what it is otherwise. */
#ifndef EMBER_HOSTFILE_H
#define EMBER_HOSTFILE_H

#include <stddef.h>
#include <sys/types.h>

/* The kinds of file a field accepts (a bit set). */
enum hostfile_kind {
	HOSTFILE_REG = 1u << 0,  /* a regular file */
	HOSTFILE_BLK = 1u << 1,  /* a block device */
	HOSTFILE_FIFO = 1u << 2, /* a FIFO (log and metrics sinks) */
};

/* Open path with flags (O_CLOEXEC and O_NOCTTY are added; mode for
 * O_CREAT) without blocking, and return the fd if the file is one of
 * kinds. O_NONBLOCK is cleared again after the check unless flags asked
 * for it (io_uring would answer EAGAIN on a non-blocking file).
 * Otherwise returns -errno with "WHAT PATH: reason" in err. */
int hostfile_open(const char *what, const char *path, int flags, mode_t mode, unsigned kinds,
		  char *err, size_t errlen);

/* "a regular file", "a FIFO", ... for a st_mode, for messages. */
const char *hostfile_kind_name(mode_t st_mode);

#endif
