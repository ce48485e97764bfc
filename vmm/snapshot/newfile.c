#include "newfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hostfile.h"

int newfile_open(struct newfile *f, const char *what, const char *target, char *err, size_t errlen)
{
	f->fd = -1;
	f->what = what;
	f->target = target;
	f->tmp[0] = '\0';
	struct stat st;
	if (lstat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s %s: is %s, not a regular file", what, target, hostfile_kind_name(st.st_mode));
		return -EINVAL;
	}
	int e = EEXIST;
	for (int attempt = 0; attempt < 8 && e == EEXIST; attempt++) {
		uint64_t r;
		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			e = errno;
			break;
		}
		if ((size_t)snprintf(f->tmp, sizeof(f->tmp), "%s.%016" PRIx64 ".tmp", target, r) >= sizeof(f->tmp)) {
			e = ENAMETOOLONG;
			break;
		}
		f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		e = f->fd < 0 ? errno : 0;
	}
	if (e) {
		f->tmp[0] = '\0';
		snprintf(err, errlen, "%s %s: cannot create a file next to it: %s", what, target, strerror(e));
		return -e;
	}
	return 0;
}

int newfile_finish(struct newfile *f, char *err, size_t errlen)
{
	int ret = fsync(f->fd) < 0 ? -errno : 0;
	if (close(f->fd) < 0 && !ret)
		ret = -errno;
	f->fd = -1;
	if (ret)
		snprintf(err, errlen, "writing %s %s: %s", f->what, f->target, strerror(-ret));
	return ret;
}

/* fsync the directory that holds path. */
static int sync_dir_of(const char *path)
{
	char dir[CONFIG_PATH_MAX + 24];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* A file system that cannot sync directories says EINVAL: its
	 * renames are as durable as it makes them. */
	int ret = fsync(fd) < 0 && errno != EINVAL ? -errno : 0;
	close(fd);
	return ret;
}

int newfile_commit(struct newfile *f, char *err, size_t errlen)
{
	int ret = rename(f->tmp, f->target) < 0 ? -errno : 0;
	if (ret) {
		snprintf(err, errlen, "%s %s: cannot rename the new file into place: %s", f->what, f->target,
			 strerror(-ret));
		return ret;
	}
	f->tmp[0] = '\0';
	if ((ret = sync_dir_of(f->target)))
		snprintf(err, errlen, "%s %s: syncing its directory: %s", f->what, f->target, strerror(-ret));
	return ret;
}

void newfile_discard(struct newfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->tmp[0])
		unlink(f->tmp);
	f->tmp[0] = '\0';
}
