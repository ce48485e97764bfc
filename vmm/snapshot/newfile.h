/* Files a snapshot writes (the state file, the memory file, the working
 * set): each is made whole under a new name of its own next to its target
 * and renamed over the target only once it is complete and on disk. A
 * crash or a full disk therefore leaves at the target either the old file
 * or the new one, never a part of either; a crash can leave a temporary
 * "<target>.<16 hex digits>.tmp" behind, which nothing ever reads.
 *
 * Use: newfile_open(), write to f.fd, newfile_finish() (every file of the
 * snapshot, before any rename), newfile_commit() in the order readers
 * need, and newfile_discard() on every path out. */
#ifndef EMBER_NEWFILE_H
#define EMBER_NEWFILE_H

#include <stddef.h>

#include "../config.h"

struct newfile {
	int fd;                           /* open until newfile_finish */
	const char *what, *target;        /* for messages; target is the caller's */
	char tmp[CONFIG_PATH_MAX + 24];   /* the temporary, "" once renamed or removed */
};

#define NEWFILE_INIT { .fd = -1 }

/* Refuse a target that exists and is not a regular file (a FIFO, a
 * symbolic link, a directory: a snapshot replaces files, it never writes
 * through or over anything else), then create the temporary with
 * O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600: a name nobody can have prepared,
 * so no file that already exists (a FIFO, a symlink planted at a
 * predictable name) is ever opened. Returns 0, or -errno with
 * "WHAT TARGET: reason" in err. */
int newfile_open(struct newfile *f, const char *what, const char *target, char *err, size_t errlen);

/* fsync and close the temporary: its contents are on disk. Returns 0 or
 * -errno with the reason in err. */
int newfile_finish(struct newfile *f, char *err, size_t errlen);

/* Rename the finished temporary over the target, then fsync the target's
 * directory, so the rename is on disk before anything the caller does
 * next. Returns 0 or -errno with the reason in err. */
int newfile_commit(struct newfile *f, char *err, size_t errlen);

/* Close and remove the temporary if it is still there. Harmless after a
 * commit, and when called twice. */
void newfile_discard(struct newfile *f);

#endif
