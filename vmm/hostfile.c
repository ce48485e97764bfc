#include "hostfile.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *hostfile_kind_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "a regular file";
	case S_IFBLK: return "a block device";
	case S_IFCHR: return "a character device";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFDIR: return "a directory";
	case S_IFLNK: return "a symbolic link";
	default: return "an unknown kind of file";
	}
}

static bool kind_allowed(mode_t m, unsigned kinds)
{
	return (S_ISREG(m) && (kinds & HOSTFILE_REG)) || (S_ISBLK(m) && (kinds & HOSTFILE_BLK)) ||
	       (S_ISFIFO(m) && (kinds & HOSTFILE_FIFO));
}

/* "a regular file or a block device" for a set of kinds. */
static const char *kinds_wanted(unsigned kinds)
{
	switch (kinds) {
	case HOSTFILE_REG: return "a regular file";
	case HOSTFILE_REG | HOSTFILE_BLK: return "a regular file or a block device";
	case HOSTFILE_REG | HOSTFILE_FIFO: return "a regular file or a FIFO";
	default: return "another kind of file";
	}
}

int hostfile_open(const char *what, const char *path, int flags, mode_t mode, unsigned kinds,
		  char *err, size_t errlen)
{
	int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, mode);
	struct stat st;
	if (fd < 0) {
		int e = errno;
		/* A FIFO opened for writing without a reader fails with ENXIO
		 * ("No such device or address"): say what the path is instead. */
		if ((e == ENXIO || e == EISDIR) && stat(path, &st) == 0 && !kind_allowed(st.st_mode, kinds))
			snprintf(err, errlen, "%s %s: is %s, not %s", what, path, hostfile_kind_name(st.st_mode),
				 kinds_wanted(kinds));
		else
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
		return -e;
	}
	int e = 0;
	if (fstat(fd, &st) < 0) {
		e = errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
	} else if (!kind_allowed(st.st_mode, kinds)) {
		e = EINVAL;
		snprintf(err, errlen, "%s %s: is %s, not %s", what, path, hostfile_kind_name(st.st_mode),
			 kinds_wanted(kinds));
	} else if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		e = errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
	}
	if (e) {
		close(fd);
		return -e;
	}
	return fd;
}
