/* ember-jailer: the jail's file system — its directory, the binary and the
 * shared libraries it needs, the device nodes, pivot_root — and removing
 * it again. Below the base, everything is done through directory fds held
 * from the moment each directory is made or opened (see jailer.h): no path
 * under the base is looked up twice, and none through a symlink. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../vmm/hostfile.h"
#include "jailer.h"

#ifdef EMBER_TEST_HOOKS
const char *jail_test_after_root;

static void test_hook(const char *jail_dir)
{
	if (!jail_test_after_root)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = { "sh", "-c", (char *)jail_test_after_root, "sh", (char *)jail_dir, NULL };
		char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
		execve("/bin/sh", argv, envp);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}
#else
static void test_hook(const char *jail_dir)
{
	(void)jail_dir;
}
#endif

/* ---- directories held by fds ------------------------------------------- */

/* dirfd/name as a directory fd, never following a symlink; -errno if it is
 * missing, a symlink (ELOOP or ENOTDIR) or not a directory. */
static int open_dir_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Report a failed open_dir_at(), naming what is there instead. */
static int report_dir(int dirfd, const char *name, const char *shown, int err)
{
	struct stat st;
	if ((err == -ELOOP || err == -ENOTDIR) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !S_ISDIR(st.st_mode))
		return jail_report("%s: is %s, not a directory%s", shown, hostfile_kind_name(st.st_mode),
				   S_ISLNK(st.st_mode) ? " (ember-jailer follows no symbolic link below the base)" : "");
	return jail_report("%s: %s", shown, strerror(-err));
}

/* mkdir dirfd/name unless it exists, then open it as above; *made says
 * whether this call made it. */
static int make_dir_at(int dirfd, const char *name, mode_t mode, bool *made)
{
	*made = mkdirat(dirfd, name, mode) == 0;
	if (!*made && errno != EEXIST)
		return -errno;
	return open_dir_at(dirfd, name);
}

/* Is dirfd/name (not followed) the directory that fd holds? */
static bool same_dir_at(int dirfd, const char *name, int fd)
{
	struct stat a, b;
	return fstatat(dirfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* Record rel (relative to root/) as made by this run, for the undo in a
 * root it did not make (in one it made, everything goes). Returns 0 or -1
 * after reporting. */
static int note_made(struct jail *j, const char *rel)
{
	if (j->root_made)
		return 0;
	for (int i = 0; i < j->nmade; i++) {
		size_t n = strlen(j->made[i]);
		if (!strncmp(rel, j->made[i], n) && (rel[n] == '/' || rel[n] == '\0'))
			return 0; /* below what goes anyway */
	}
	if (j->nmade == JAIL_MAX_MADE || strlen(rel) >= sizeof(j->made[0]))
		return jail_report("%s/%s: too many new entries in an existing jail root to undo them", j->root_dir, rel);
	snprintf(j->made[j->nmade++], sizeof(j->made[0]), "%s", rel);
	return 0;
}

/* The directories of rel ("lib/x86_64-linux-gnu") under root/, made one
 * component at a time (mode 0755) where missing, or only opened if !make.
 * Returns an fd of the last one, or -errno; "." and ".." (which would
 * leave the jail's root) are -EINVAL. */
static int root_dirs_at(struct jail *j, const char *rel, bool make)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	int fd = fcntl(j->root_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	for (char *c = buf; *c;) {
		char *end = c + strcspn(c, "/");
		char sep = *end;
		*end = '\0';
		bool made = false;
		int sub = !*c ? fcntl(fd, F_DUPFD_CLOEXEC, 0)
			  : !strcmp(c, ".") || !strcmp(c, "..") ? -EINVAL
			  : make ? make_dir_at(fd, c, 0755, &made) : open_dir_at(fd, c);
		close(fd);
		if (sub < 0)
			return sub;
		fd = sub;
		if (made && note_made(j, buf)) {
			close(fd);
			return -ENOSPC;
		}
		*end = sep;
		c = sep ? end + 1 : end;
	}
	return fd;
}

/* ---- the jail directory -------------------------------------------------- */

static void set_paths(struct jail *j)
{
	const char *base = strcmp(j->base_dir, "/") ? j->base_dir : "";
	snprintf(j->exec_dir, sizeof(j->exec_dir), "%s/%s", base, j->exec_name);
	snprintf(j->jail_dir, sizeof(j->jail_dir), "%s/%s", j->exec_dir, j->id);
	snprintf(j->root_dir, sizeof(j->root_dir), "%s/root", j->jail_dir);
}

/* mkdir -p of the base (the administrator's path: symlinks in it are
 * followed), counting the components it made: a suffix of the path, which
 * the undo removes again. */
static int make_base(struct jail *j)
{
	if (!strcmp(j->base_dir, "/"))
		return 0;
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", j->base_dir);
	int made = 0, err = 0;
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0755) == 0) {
			made++;
		} else if (errno != EEXIST) {
			err = -errno;
			break;
		}
		if (c == '\0')
			break;
		*p = c;
	}
	if (made > j->base_made) /* two suffixes: the longer one holds both */
		j->base_made = made;
	return err;
}

static int open_base(struct jail *j)
{
	int fd = open(j->base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		j->base_fd = fd;
		return 0;
	}
	int err = -errno;
	struct stat st;
	if (err == -ENOTDIR && stat(j->base_dir, &st) == 0)
		jail_report("--chroot-base-dir %s: is %s, not a directory", j->base_dir, hostfile_kind_name(st.st_mode));
	else if (err != -ENOENT)
		jail_report("--chroot-base-dir %s: %s", j->base_dir, strerror(-err));
	return err;
}

/* One attempt of jail_make_root(): 0, -1 after reporting, or 1 if a
 * directory it holds was removed before <id> was made in it. */
static int make_tree(struct jail *j)
{
	int err = make_base(j);
	if (err)
		return jail_report("--chroot-base-dir %s: cannot create it: %s", j->base_dir, strerror(-err));
	err = open_base(j);
	if (err)
		return err == -ENOENT ? 1 : -1;
	int fd = make_dir_at(j->base_fd, j->exec_name, 0755, &j->exec_dir_made);
	if (fd == -ENOENT)
		return 1;
	if (fd < 0)
		return report_dir(j->base_fd, j->exec_name, j->exec_dir, fd);
	j->exec_dir_fd = fd;
	/* <id> and root/ may exist: an orchestrator stages the guest's files
	 * in root/ before it starts the jailer. Then they are opened (never
	 * through a symlink) and kept. */
	fd = make_dir_at(j->exec_dir_fd, j->id, 0755, &j->jail_created);
	if (fd == -ENOENT)
		return 1;
	if (fd < 0)
		return report_dir(j->exec_dir_fd, j->id, j->jail_dir, fd);
	j->jail_fd = fd;
	if ((fd = make_dir_at(j->jail_fd, "root", 0755, &j->root_made)) < 0)
		return report_dir(j->jail_fd, "root", j->root_dir, fd);
	j->root_fd = fd;
	if (!j->root_made) {
		char pid_file[300];
		struct stat st;
		snprintf(pid_file, sizeof(pid_file), "%s.pid", j->exec_name);
		if (fstatat(j->root_fd, pid_file, &st, AT_SYMLINK_NOFOLLOW) == 0)
			return jail_report("Failed to open file %s/%s: %s (os error %d): a VM ran in this jail; stop it "
					   "and clean it up first (ember-jailer --cleanup --id %s --exec-file %s)",
					   j->root_dir, pid_file, strerror(EEXIST), EEXIST, j->id, j->exec_file);
	}
	return 0;
}

int jail_make_root(struct jail *j)
{
	set_paths(j);
	/* Another jailer failing at the same time removes the <exec-name>
	 * (or base) it made, empty then, perhaps just after this one opened
	 * it: this one goes again. */
	for (int tries = 0;; tries++) {
		int ret = make_tree(j);
		if (ret <= 0) {
			if (ret == 0)
				test_hook(j->jail_dir);
			return ret;
		}
		if (j->base_fd >= 0)
			close(j->base_fd);
		if (j->exec_dir_fd >= 0)
			close(j->exec_dir_fd);
		j->base_fd = j->exec_dir_fd = -1;
		j->exec_dir_made = j->jail_created = false;
		if (tries == 3)
			return jail_report("%s: removed again and again while the jail was being made", j->exec_dir);
	}
}

/* ---- the binary and its libraries ------------------------------------ */

/* Copy all of src into out (both open), from offset 0. 0 or -errno. */
static int copy_contents(int src, int out, off_t size)
{
	bool plain = false; /* copy_file_range across file systems needs Linux 5.19 */
	char buf[65536];
	for (off_t pos = 0; pos < size;) {
		off_t in = pos;
		ssize_t n = plain ? pread(src, buf, sizeof(buf), pos)
				  : copy_file_range(src, &in, out, NULL, (size_t)(size - pos), 0);
		if (n < 0 && !plain && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
			plain = true;
			continue;
		}
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		ssize_t w = plain ? write(out, buf, (size_t)n) : n;
		if (w != n)
			return w < 0 ? -errno : -EIO;
		pos += n;
	}
	return 0;
}

/* Hard link the open file src into dirfd as name, or copy it when they are
 * on different file systems. Returns 1 for a link, 2 for a copy, or -errno. */
static int place_file(int src, int dirfd, const char *name)
{
	if (linkat(src, "", dirfd, name, AT_EMPTY_PATH) == 0)
		return 1;
	if (errno != EXDEV && errno != EPERM && errno != ENOENT)
		return -errno;
	struct stat st;
	if (fstat(src, &st) < 0)
		return -errno;
	int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 0755);
	if (out < 0)
		return -errno;
	int err = copy_contents(src, out, st.st_size);
	if (close(out) < 0 && !err)
		err = -errno;
	return err ? err : 2;
}

/* The ELF interpreter (dynamic loader) the exec file names, or "" for a
 * static binary. Also checks that the file is a 64-bit ELF executable. */
static int elf_interpreter(struct jail *j)
{
	const char *path = j->exec_file;
	int fd = j->exec_fd;
	char *interp = j->interp;
	size_t len = sizeof(j->interp);
	interp[0] = '\0';
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64)
		return jail_report("--exec-file %s: not a 64-bit ELF executable", path);
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) != (ssize_t)sizeof(ph))
			return jail_report("--exec-file %s: truncated program headers", path);
		if (ph.p_type != PT_INTERP)
			continue;
		if (ph.p_filesz == 0 || ph.p_filesz >= len ||
		    pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz ||
		    interp[ph.p_filesz - 1] != '\0' || interp[0] != '/') {
			interp[0] = '\0';
			return jail_report("--exec-file %s: bad PT_INTERP", path);
		}
	}
	return 0;
}

int jail_open_binary(struct jail *j)
{
	char err[PATH_MAX + 64], real[PATH_MAX];
	struct stat st;
	/* Firecracker's jailer words these two failures so; clients match them. */
	if (!realpath(j->exec_file, real))
		return jail_report("--exec-file %s: Failed to canonicalize path %s: %s (os error %d)", j->exec_file,
				   j->exec_file, strerror(errno), errno);
	if (stat(real, &st) == 0 && !S_ISREG(st.st_mode))
		return jail_report("--exec-file %s: %s is not a file (it is %s)", j->exec_file, real,
				   hostfile_kind_name(st.st_mode));
	int fd = hostfile_open("--exec-file", j->exec_file, O_RDONLY, 0, HOSTFILE_REG, err, sizeof(err));
	if (fd < 0)
		return jail_report("%s", err);
	j->exec_fd = fd;
	if (fstat(fd, &st) < 0)
		return jail_report("--exec-file %s: %s", j->exec_file, strerror(errno));
	if (!(st.st_mode & S_IXOTH))
		return jail_report("--exec-file %s: not an executable file (it must be executable by everyone, "
				   "as it runs as uid %u)", j->exec_file, (unsigned)j->uid);
	return elf_interpreter(j);
}

/* Ask the dynamic loader which libraries the binary loads ("ld.so --list"),
 * with an empty environment so nothing like LD_LIBRARY_PATH steers it.
 * The loader reads the file the jailer opened and checked, not its path
 * again. Calls place() with each absolute path. */
static int list_libraries(struct jail *j, int (*place)(struct jail *, const char *))
{
	char self[32];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", j->exec_fd);
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return jail_report("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		return jail_report("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		fcntl(j->exec_fd, F_SETFD, 0);
		char *argv[] = { j->interp, "--list", self, NULL };
		char *envp[] = { NULL };
		execve(j->interp, argv, envp);
		_exit(127);
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	char line[PATH_MAX + 64];
	int ret = 0;
	while (f && fgets(line, sizeof(line), f)) {
		/* "\tlibfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" */
		char *p = strstr(line, "=> ");
		if (!p)
			continue; /* the vDSO and the loader itself */
		p += 3;
		char *end = strstr(p, " (");
		if (*p != '/' || !end) {
			ret = jail_report("%s --list %s: cannot resolve '%s'", j->interp, j->exec_file, line);
			continue;
		}
		*end = '\0';
		if (!ret)
			ret = place(j, p);
	}
	if (f)
		fclose(f);
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return ret ? ret : jail_report("%s --list %s failed", j->interp, j->exec_file);
	return ret;
}

static int links, copies;

static void count_placed(int how)
{
	if (how == 1)
		links++;
	else
		copies++;
}

/* Place a host file (the loader, a library) at the same path inside the
 * jail. The host's own paths may go through symlinks; the jail's may not. */
static int place_at_same_path(struct jail *j, const char *path)
{
	char dir[PATH_MAX], shown[PATH_MAX + 700], err[PATH_MAX + 64];
	snprintf(shown, sizeof(shown), "%s%s", j->root_dir, path);
	const char *slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	int src = hostfile_open("library", path, O_RDONLY, 0, HOSTFILE_REG, err, sizeof(err));
	if (src < 0)
		return jail_report("%s", err);
	int at = root_dirs_at(j, dir[0] ? dir + 1 : dir, true);
	int how = at < 0 ? at : place_file(src, at, slash + 1);
	close(src);
	if (at < 0)
		return at == -ENOSPC ? -1 : jail_report("cannot create the directory for %s: %s", shown, strerror(-at));
	close(at);
	if (how < 0)
		return jail_report("cannot place %s at %s: %s", path, shown, strerror(-how));
	count_placed(how);
	return note_made(j, path + 1);
}

/* The VMM's own copy of the exec file in root/, owned by the jail's
 * uid:gid with the source's mode: a copy, not a link, so that no two VMs
 * share the binary's pages, and so that the chown does not reach the
 * host's file. A file that exists there (the jail was used before) is
 * overwritten only if it is a regular file with no other link: a link to
 * a host file would be overwritten, and a symlink would be followed. */
static int copy_exec(struct jail *j)
{
	char shown[PATH_MAX + 700];
	snprintf(shown, sizeof(shown), "%s/%s", j->root_dir, j->exec_name);
	struct stat src, st;
	if (fstat(j->exec_fd, &src) < 0)
		return jail_report("--exec-file %s: %s", j->exec_file, strerror(errno));
	int out = openat(j->root_fd, j->exec_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
	if (out >= 0) {
		if (note_made(j, j->exec_name)) {
			close(out);
			return -1;
		}
	} else if (errno == EEXIST) {
		/* Looked at before it is opened: no device or FIFO is opened. */
		if (fstatat(j->root_fd, j->exec_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return jail_report("Failed to open %s: %s", shown, strerror(errno));
		if (!S_ISREG(st.st_mode))
			return jail_report("Failed to open %s: it is %s, not a regular file", shown,
					   hostfile_kind_name(st.st_mode));
		out = openat(j->root_fd, j->exec_name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	}
	if (out < 0)
		return jail_report("Failed to open %s: %s", shown, strerror(errno));
	int err = fstat(out, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : st.st_nlink > 1 ? -EMLINK : 0;
	if (!err && (ftruncate(out, 0) < 0 || fchown(out, j->uid, j->gid) < 0 || fchmod(out, src.st_mode & 0777) < 0))
		err = -errno;
	if (!err)
		err = copy_contents(j->exec_fd, out, src.st_size);
	if (close(out) < 0 && !err)
		err = -errno;
	if (err == -EMLINK)
		return jail_report("Detected hard link at: %s (a file linked elsewhere is not overwritten)", shown);
	if (err)
		return jail_report("Failed to copy %s to %s: %s", j->exec_file, shown, strerror(-err));
	return 0;
}

int jail_place_binary(struct jail *j)
{
	if (copy_exec(j))
		return -1;
	/* A dynamically linked binary needs its loader and libraries inside
	 * the jail, at the paths the loader searches; nothing else of the
	 * host's /lib is visible. */
	if (j->interp[0] && (place_at_same_path(j, j->interp) || list_libraries(j, place_at_same_path)))
		return -1;
	if (links + copies == 0)
		jail_log("copied %s to %s", j->exec_name, j->root_dir);
	else
		jail_log("copied %s to %s and placed %d shared libraries there by %s", j->exec_name, j->root_dir,
			 links + copies, copies == 0 ? "hard link" : links == 0 ? "copy (the jail is on another file system)"
				      : "hard link and copy (some files are on another file system)");
	return 0;
}

/* ---- devices ---------------------------------------------------------- */

/* The only device nodes a jail has, made like the host's and owned by the
 * jail's uid:gid. */
static const struct {
	const char *dir; /* under /dev */
	const char *name;
	bool optional;   /* not every host has it */
} jail_devices[] = {
	{ "", "kvm", false },
	{ "net", "tun", false },
	{ "", "urandom", false },
	{ "", "userfaultfd", true },
};

/* fd (root/ or a directory in it) as the VMM's: mode 0700, owned by the
 * jail's uid:gid, as Firecracker's jailer leaves them. */
static int own_dir(struct jail *j, int fd, const char *rel)
{
	if (fchmod(fd, 0700) < 0 || fchown(fd, j->uid, j->gid) < 0)
		return jail_report("cannot make %s%s%s mode 0700 owned by %u:%u: %s", j->root_dir, *rel ? "/" : "", rel,
				   (unsigned)j->uid, (unsigned)j->gid, strerror(errno));
	return 0;
}

/* root/rel, made where missing, as own_dir() leaves it. An fd, or -1. */
static int jailed_dir(struct jail *j, const char *rel)
{
	int fd = root_dirs_at(j, rel, true);
	if (fd < 0)
		return fd == -ENOSPC ? -1 : jail_report("cannot create %s/%s: %s", j->root_dir, rel, strerror(-fd));
	if (own_dir(j, fd, rel)) {
		close(fd);
		return -1;
	}
	return fd;
}

int jail_make_devices(struct jail *j)
{
	/* The VMM creates its API socket in run/ (by default), and the
	 * orchestrator places drives and sockets in the root. */
	int fd;
	if (own_dir(j, j->root_fd, "") || (fd = jailed_dir(j, "dev")) < 0)
		return -1;
	close(fd);
	if ((fd = jailed_dir(j, "dev/net")) < 0)
		return -1;
	close(fd);
	if ((fd = jailed_dir(j, "run")) < 0)
		return -1;
	close(fd);
	for (size_t i = 0; i < sizeof(jail_devices) / sizeof(jail_devices[0]); i++) {
		char rel[64], host[80];
		struct stat st;
		snprintf(rel, sizeof(rel), "dev%s%s", *jail_devices[i].dir ? "/" : "", jail_devices[i].dir);
		snprintf(host, sizeof(host), "/%s/%s", rel, jail_devices[i].name);
		errno = 0;
		if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode)) {
			if (jail_devices[i].optional)
				continue;
			return jail_report("%s: %s", host, errno ? strerror(errno) : "not a character device");
		}
		int at = root_dirs_at(j, rel, false);
		if (at < 0)
			return jail_report("cannot open %s/%s: %s", j->root_dir, rel, strerror(-at));
		const char *name = jail_devices[i].name;
		int err = mknodat(at, name, S_IFCHR | 0600, st.st_rdev) < 0 ? -errno : note_made(j, host + 1) ? -ENOSPC
			  : fchownat(at, name, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
		close(at);
		if (err == -ENOSPC)
			return -1;
		if (err)
			return jail_report("Failed to create %s%s via mknod (%u:%u, owned by %u:%u): %s", j->root_dir, host,
					   major(st.st_rdev), minor(st.st_rdev), (unsigned)j->uid, (unsigned)j->gid,
					   strerror(-err));
	}
	return 0;
}

int jail_write_pid_file(struct jail *j, int pid)
{
	char name[300];
	snprintf(name, sizeof(name), "%s.pid", j->exec_name);
	/* A new file, never one that exists (jail_make_root() refused a jail
	 * with one, and the jail's uid owns root/). */
	int fd = openat(j->root_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return jail_report("Failed to open file %s/%s: %s", j->root_dir, name, strerror(errno));
	int ret = note_made(j, name);
	if (!ret && dprintf(fd, "%d", pid) < 0)
		ret = jail_report("Failed to write to %s/%s: %s", j->root_dir, name, strerror(errno));
	close(fd);
	return ret;
}

/* ---- pivot_root --------------------------------------------------------- */

/* The jail is still where it was made: <exec-name>, <id> and root are the
 * directories held since then. One renamed or replaced meanwhile is
 * refused: the VM would run in a directory that the jail's path, where the
 * orchestrator puts its files, does not name. */
static int check_in_place(struct jail *j)
{
	const char *moved = !same_dir_at(j->base_fd, j->exec_name, j->exec_dir_fd) ? j->exec_dir
			    : !same_dir_at(j->exec_dir_fd, j->id, j->jail_fd)      ? j->jail_dir
			    : !same_dir_at(j->jail_fd, "root", j->root_fd)         ? j->root_dir
										   : NULL;
	if (moved)
		return jail_report("%s was moved or replaced while the jail was being made; not starting the VM",
				   moved);
	return 0;
}

int jail_pivot_root(struct jail *j)
{
	if (check_in_place(j))
		return -1;
	/* unshare() carries the cwd over into the new mount namespace; fds
	 * opened before it name mounts of the old one, which cannot be bound. */
	if (fchdir(j->root_fd) < 0)
		return jail_report("chdir %s: %s", j->root_dir, strerror(errno));
	if (unshare(CLONE_NEWNS) < 0)
		return jail_report("unshare(CLONE_NEWNS): %s", strerror(errno));
	/* Nothing done to mounts from here on may propagate to the host;
	 * mounts the host makes in the jail's root later still reach the jail
	 * (an orchestrator may bind a drive in), as with Firecracker's jailer:
	 * the bind below is a slave as well. */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		return jail_report("making / a slave mount: %s", strerror(errno));
	/* pivot_root needs the new root to be a mount point: bind the jail's
	 * root onto itself, then enter that mount through its own fd. */
	int tree = open_tree(AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return jail_report("bind-mounting %s onto itself: open_tree: %s", j->root_dir, strerror(errno));
	int ret = move_mount(tree, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0 || fchdir(tree) < 0 ? -errno : 0;
	close(tree);
	if (ret)
		return jail_report("bind-mounting %s onto itself: %s", j->root_dir, strerror(-ret));
	/* pivot_root(".", ".") stacks the old root on top of the new one;
	 * detaching it leaves only the jail. No old_root directory needed. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return jail_report("pivot_root %s: %s", j->root_dir, strerror(errno));
	if (umount2(".", MNT_DETACH) < 0)
		return jail_report("detaching the old root: %s", strerror(errno));
	if (chdir("/") < 0)
		return jail_report("chdir /: %s", strerror(errno));
	return 0;
}

/* ---- removal -------------------------------------------------------------- */

static int mount_id(int fd, unsigned long long *id)
{
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & STATX_MNT_ID))
		return -ENOTSUP;
	*id = stx.stx_mnt_id;
	return 0;
}

/* rm -r below a directory, never following a symlink and never leaving the
 * mount it starts on: an orchestrator may have bind-mounted host files or
 * directories into the jail, and those must survive. The jail's uid owns
 * root/ and may have put anything there. */
struct walk {
	unsigned long long mnt;
	char path[PATH_MAX]; /* for messages: the directory being emptied */
};

static int remove_contents(struct walk *w, int fd);

/* Remove dirfd/name (w->path names dirfd). Returns 0 or -1 after reporting. */
static int remove_entry(struct walk *w, int dirfd, const char *name)
{
	size_t len = strlen(w->path);
	snprintf(w->path + len, sizeof(w->path) - len, "/%s", name);
	struct stat st;
	int ret = 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			ret = jail_report("%s: %s", w->path, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			ret = jail_report("cannot remove %s: %s", w->path, strerror(errno));
	} else {
		unsigned long long here;
		int fd = open_dir_at(dirfd, name);
		if (fd < 0)
			ret = jail_report("cannot open %s: %s", w->path, strerror(-fd));
		else if (mount_id(fd, &here) < 0 || here != w->mnt)
			ret = jail_report("left %s: it is a mount point (unmount it first)", w->path);
		else
			ret = remove_contents(w, fd);
		if (fd >= 0)
			close(fd);
		if (!ret && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
			ret = jail_report("cannot remove %s: %s", w->path, strerror(errno));
	}
	w->path[len] = '\0';
	return ret;
}

static int remove_contents(struct walk *w, int fd)
{
	int own = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own read position */
	DIR *d = own < 0 ? NULL : fdopendir(own);
	if (!d) {
		int err = errno;
		if (own >= 0)
			close(own);
		return jail_report("cannot read %s: %s", w->path, strerror(err));
	}
	int ret = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_entry(w, dirfd(d), e->d_name))
			ret = -1;
	closedir(d);
	return ret;
}

/* Remove the held directory fd, parent_fd/name (shown names it), and
 * everything in it; its name only while it still names fd (one renamed
 * away is emptied, not unlinked). */
static int remove_held(int parent_fd, const char *name, int fd, const char *shown)
{
	static struct walk w;
	unsigned long long parent;
	int err = mount_id(fd, &w.mnt);
	if (!err)
		err = mount_id(parent_fd, &parent);
	if (err)
		return jail_report("cannot inspect %s: %s", shown, strerror(-err));
	if (w.mnt != parent)
		return jail_report("left %s: it is a mount point (unmount it first)", shown);
	snprintf(w.path, sizeof(w.path), "%s", shown);
	if (remove_contents(&w, fd))
		return -1;
	if (same_dir_at(parent_fd, name, fd) && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0)
		return jail_report("cannot remove %s: %s", shown, strerror(errno));
	return 0;
}

/* In a root this run did not make: remove what it made there, newest
 * first, and nothing else. */
static int remove_made(struct jail *j)
{
	static struct walk w;
	int ret = 0;
	if (mount_id(j->root_fd, &w.mnt) < 0)
		return jail_report("cannot inspect %s: %s", j->root_dir, strerror(errno));
	for (; j->nmade > 0; j->nmade--) {
		char *rel = j->made[j->nmade - 1], *slash = strrchr(rel, '/');
		if (slash)
			*slash = '\0';
		int at = slash ? root_dirs_at(j, rel, false) : fcntl(j->root_fd, F_DUPFD_CLOEXEC, 0);
		snprintf(w.path, sizeof(w.path), "%s%s%s", j->root_dir, slash ? "/" : "", slash ? rel : "");
		if (at >= 0 && remove_entry(&w, at, slash ? slash + 1 : rel))
			ret = -1;
		if (at >= 0)
			close(at);
	}
	return ret;
}

/* rmdir that stays quiet when the directory is not empty (another jail is
 * in it) or already gone. Returns true if it is gone. */
static bool remove_if_empty(int dirfd, const char *name, const char *shown)
{
	if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
		return true;
	if (errno != ENOTEMPTY && errno != EEXIST && errno != EBUSY)
		jail_report("cannot remove %s: %s", shown, strerror(errno));
	return false;
}

void jail_remove_dir(struct jail *j)
{
	if (j->jail_created) {
		if (j->jail_fd >= 0 && remove_held(j->exec_dir_fd, j->id, j->jail_fd, j->jail_dir) == 0)
			j->jail_created = false;
		if (j->jail_created)
			return; /* what holds it stays too */
	} else if (j->root_made) {
		if (j->root_fd >= 0 && remove_held(j->jail_fd, "root", j->root_fd, j->root_dir) == 0)
			j->root_made = false;
		return; /* <id> was there before: so was all above it */
	} else if (j->root_fd >= 0) {
		remove_made(j);
		return;
	}
	if (j->exec_dir_made && same_dir_at(j->base_fd, j->exec_name, j->exec_dir_fd) &&
	    remove_if_empty(j->base_fd, j->exec_name, j->exec_dir))
		j->exec_dir_made = false;
	if (j->exec_dir_made)
		return;
	/* The base components this run made, deepest first. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", j->base_dir);
	for (; j->base_made > 0 && remove_if_empty(AT_FDCWD, path, path); j->base_made--)
		*strrchr(path, '/') = '\0';
}

/* --cleanup: hold the directories of a finished VM's jail. Missing ones
 * mean there is nothing to clean up; a symlink is refused. */
int jail_open_existing(struct jail *j)
{
	set_paths(j);
	int err = open_base(j);
	if (err)
		return err == -ENOENT ? 0 : -1;
	int fd = open_dir_at(j->base_fd, j->exec_name);
	if (fd < 0)
		return fd == -ENOENT ? 0 : report_dir(j->base_fd, j->exec_name, j->exec_dir, fd);
	j->exec_dir_fd = fd;
	if ((fd = open_dir_at(j->exec_dir_fd, j->id)) < 0)
		return fd == -ENOENT ? 0 : report_dir(j->exec_dir_fd, j->id, j->jail_dir, fd);
	j->jail_fd = fd;
	j->jail_created = true;
	/* For the check that no VM still runs in it; without a root directory
	 * none can. */
	if ((fd = open_dir_at(j->jail_fd, "root")) >= 0)
		j->root_fd = fd;
	return 0;
}
