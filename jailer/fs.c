/* ember-jailer: the jail's file system — its directory, the binary and the
 * shared libraries it needs, the device nodes, pivot_root — and removing
 * it again. */
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

#include "jailer.h"

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -errno;
			if (c == '\0')
				return 0;
			*p = c;
		}
	}
}

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

int jail_make_root(struct jail *j)
{
	snprintf(j->exec_dir, sizeof(j->exec_dir), "%s/%s", j->base_dir, j->exec_name);
	snprintf(j->jail_dir, sizeof(j->jail_dir), "%s/%s", j->exec_dir, j->id);
	snprintf(j->root_dir, sizeof(j->root_dir), "%s/root", j->jail_dir);
	int err = mkdir_p(j->exec_dir, 0755);
	if (err)
		return jail_report("cannot create %s: %s", j->exec_dir, strerror(-err));
	j->exec_dir_fd = open(j->exec_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->exec_dir_fd < 0)
		return jail_report("cannot open %s: %s", j->exec_dir, strerror(errno));
	if (mkdirat(j->exec_dir_fd, j->id, 0755) < 0) {
		if (errno == EEXIST)
			return jail_report("jail %s already exists (a VM is using it, or it was not cleaned up: "
					   "ember-jailer --cleanup --id %s --exec-file %s)",
					   j->jail_dir, j->id, j->exec_file);
		return jail_report("cannot create %s: %s", j->jail_dir, strerror(errno));
	}
	j->jail_created = true;
	if (mkdir(j->root_dir, 0755) < 0)
		return jail_report("cannot create %s: %s", j->root_dir, strerror(errno));
	test_hook(j->jail_dir);
	return 0;
}

/* ---- the binary and its libraries ------------------------------------ */

/* Hard link src to dst, or copy it when they are on different file
 * systems. Returns 1 for a link, 2 for a copy, or -errno. */
static int place_file(const char *src, const char *dst)
{
	if (linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) == 0)
		return 1;
	if (errno != EXDEV && errno != EPERM)
		return -errno;
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	struct stat st;
	if (fstat(in, &st) < 0) {
		int err = -errno;
		close(in);
		return err;
	}
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0755);
	if (out < 0) {
		int err = -errno;
		close(in);
		return err;
	}
	int err = 0;
	bool plain = false; /* copy_file_range across file systems needs Linux 5.19 */
	char buf[65536];
	for (off_t left = st.st_size; left > 0;) {
		ssize_t n = plain ? read(in, buf, sizeof(buf)) : copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		if (n < 0 && !plain && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
			plain = true;
			continue;
		}
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		ssize_t w = plain ? write(out, buf, (size_t)n) : n;
		if (w != n) {
			err = w < 0 ? -errno : -EIO;
			break;
		}
		left -= n;
	}
	close(in);
	if (close(out) < 0 && !err)
		err = -errno;
	return err ? err : 2;
}

/* The ELF interpreter (dynamic loader) the exec file names, or "" for a
 * static binary. Also checks that the file is a 64-bit ELF executable. */
static int elf_interpreter(const char *path, char *interp, size_t len)
{
	interp[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return jail_report("--exec-file %s: %s", path, strerror(errno));
	Elf64_Ehdr eh;
	int ret = -1;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64) {
		jail_report("--exec-file %s: not a 64-bit ELF executable", path);
		goto out;
	}
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) != (ssize_t)sizeof(ph)) {
			jail_report("--exec-file %s: truncated program headers", path);
			goto out;
		}
		if (ph.p_type != PT_INTERP)
			continue;
		if (ph.p_filesz == 0 || ph.p_filesz >= len ||
		    pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz ||
		    interp[ph.p_filesz - 1] != '\0' || interp[0] != '/') {
			jail_report("--exec-file %s: bad PT_INTERP", path);
			goto out;
		}
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

/* Ask the dynamic loader which libraries the binary loads ("ld.so --list"),
 * with an empty environment so nothing like LD_LIBRARY_PATH steers it.
 * Calls place() with each absolute path. */
static int list_libraries(struct jail *j, const char *interp, int (*place)(struct jail *, const char *))
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return jail_report("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		return jail_report("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		char *argv[] = { (char *)interp, "--list", (char *)j->exec_file, NULL };
		char *envp[] = { NULL };
		execve(interp, argv, envp);
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
			ret = jail_report("%s --list %s: cannot resolve '%s'", interp, j->exec_file, line);
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
		return ret ? ret : jail_report("%s --list %s failed", interp, j->exec_file);
	return ret;
}

static int links, copies;

/* Place a host file at the same path inside the jail. */
static int place_at_same_path(struct jail *j, const char *path)
{
	char dst[PATH_MAX];
	if (snprintf(dst, sizeof(dst), "%s%s", j->root_dir, path) >= (int)sizeof(dst))
		return jail_report("%s: path too long", path);
	char *slash = strrchr(dst, '/');
	*slash = '\0';
	int err = mkdir_p(dst, 0755);
	*slash = '/';
	if (err)
		return jail_report("cannot create the directory for %s: %s", dst, strerror(-err));
	int how = place_file(path, dst);
	if (how < 0)
		return jail_report("cannot place %s at %s: %s", path, dst, strerror(-how));
	if (how == 1)
		links++;
	else
		copies++;
	return 0;
}

int jail_place_binary(struct jail *j)
{
	char interp[PATH_MAX], dst[PATH_MAX];
	if (elf_interpreter(j->exec_file, interp, sizeof(interp)))
		return -1;
	snprintf(dst, sizeof(dst), "%s/%s", j->root_dir, j->exec_name);
	int how = place_file(j->exec_file, dst);
	if (how < 0)
		return jail_report("cannot place %s at %s: %s", j->exec_file, dst, strerror(-how));
	if (how == 1)
		links++;
	else
		copies++;
	/* A dynamically linked binary needs its loader and libraries inside
	 * the jail, at the paths the loader searches; nothing else of the
	 * host's /lib is visible. */
	if (interp[0] && (place_at_same_path(j, interp) || list_libraries(j, interp, place_at_same_path)))
		return -1;
	jail_log("placed %s and %d shared libraries in %s by %s", j->exec_name, links + copies - 1, j->root_dir,
		 copies == 0 ? "hard link" : links == 0 ? "copy (the jail is on another file system)"
						: "hard link and copy (some files are on another file system)");
	return 0;
}

/* ---- devices ---------------------------------------------------------- */

/* The only device nodes a jail has, made like the host's and owned by the
 * jail's uid:gid. */
static const struct {
	const char *name;
	bool optional; /* not every host has it */
} jail_devices[] = {
	{ "kvm", false },
	{ "net/tun", false },
	{ "urandom", false },
	{ "userfaultfd", true },
};

int jail_make_devices(struct jail *j)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/dev/net", j->root_dir);
	int err = mkdir_p(path, 0755);
	if (err)
		return jail_report("cannot create %s: %s", path, strerror(-err));
	for (size_t i = 0; i < sizeof(jail_devices) / sizeof(jail_devices[0]); i++) {
		char host[64];
		struct stat st;
		snprintf(host, sizeof(host), "/dev/%s", jail_devices[i].name);
		errno = 0;
		if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode)) {
			if (jail_devices[i].optional)
				continue;
			return jail_report("%s: %s", host, errno ? strerror(errno) : "not a character device");
		}
		snprintf(path, sizeof(path), "%s/dev/%s", j->root_dir, jail_devices[i].name);
		if (mknod(path, S_IFCHR | 0600, st.st_rdev) < 0)
			return jail_report("mknod %s (%u:%u): %s", path, major(st.st_rdev), minor(st.st_rdev),
					   strerror(errno));
		if (chown(path, j->uid, j->gid) < 0)
			return jail_report("chown %s: %s", path, strerror(errno));
	}
	/* The VMM creates its API socket in /run (default /run/ember.socket),
	 * and the orchestrator places drives and sockets in the root. */
	snprintf(path, sizeof(path), "%s/run", j->root_dir);
	if (mkdir(path, 0700) < 0 || chown(path, j->uid, j->gid) < 0)
		return jail_report("cannot create %s: %s", path, strerror(errno));
	if (chown(j->root_dir, j->uid, j->gid) < 0)
		return jail_report("chown %s: %s", j->root_dir, strerror(errno));
	return 0;
}

/* ---- pivot_root --------------------------------------------------------- */

int jail_pivot_root(struct jail *j)
{
	if (unshare(CLONE_NEWNS) < 0)
		return jail_report("unshare(CLONE_NEWNS): %s", strerror(errno));
	/* Nothing done to mounts from here on may propagate to the host. */
	if (mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) < 0)
		return jail_report("making / private: %s", strerror(errno));
	/* pivot_root needs the new root to be a mount point. */
	if (mount(j->root_dir, j->root_dir, NULL, MS_BIND | MS_REC, NULL) < 0)
		return jail_report("bind-mounting %s onto itself: %s", j->root_dir, strerror(errno));
	if (chdir(j->root_dir) < 0)
		return jail_report("chdir %s: %s", j->root_dir, strerror(errno));
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

static int mount_id(int dirfd, const char *name, unsigned long long *id)
{
	struct statx stx;
	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & STATX_MNT_ID))
		return -ENOTSUP;
	*id = stx.stx_mnt_id;
	return 0;
}

/* rm -r of dirfd/name that never leaves the mount it starts on: an
 * orchestrator may have bind-mounted host files or directories into the
 * jail, and those must survive. Returns 0 or -1 after reporting. */
static int remove_tree(int parent, const char *name, unsigned long long mnt, const char *shown)
{
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : jail_report("%s/%s: %s", shown, name, strerror(errno));
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(parent, name, 0) < 0)
			return jail_report("cannot remove %s/%s: %s", shown, name, strerror(errno));
		return 0;
	}
	unsigned long long here = 0;
	if (mount_id(parent, name, &here) < 0 || here != mnt)
		return jail_report("left %s/%s: it is a mount point (unmount it first)", shown, name);
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return jail_report("cannot open %s/%s: %s", shown, name, strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return jail_report("cannot read %s/%s: %s", shown, name, strerror(errno));
	}
	char sub[PATH_MAX];
	snprintf(sub, sizeof(sub), "%s/%s", shown, name);
	int ret = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_tree(dirfd(d), e->d_name, mnt, sub))
			ret = -1;
	closedir(d);
	if (!ret && unlinkat(parent, name, AT_REMOVEDIR) < 0)
		ret = jail_report("cannot remove %s: %s", sub, strerror(errno));
	return ret;
}

void jail_remove_dir(struct jail *j)
{
	if (!j->jail_created || j->exec_dir_fd < 0)
		return;
	unsigned long long mnt;
	int err = mount_id(j->exec_dir_fd, j->id, &mnt);
	if (err == -ENOENT)
		return;
	if (err) {
		jail_report("cannot inspect %s: %s", j->jail_dir, strerror(-err));
		return;
	}
	if (remove_tree(j->exec_dir_fd, j->id, mnt, j->exec_dir) == 0)
		j->jail_created = false;
}

/* --cleanup: find the jail directory of a finished VM. */
int jail_open_existing(struct jail *j)
{
	snprintf(j->exec_dir, sizeof(j->exec_dir), "%s/%s", j->base_dir, j->exec_name);
	snprintf(j->jail_dir, sizeof(j->jail_dir), "%s/%s", j->exec_dir, j->id);
	j->exec_dir_fd = open(j->exec_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->exec_dir_fd < 0 && errno != ENOENT)
		return jail_report("cannot open %s: %s", j->exec_dir, strerror(errno));
	j->jail_created = j->exec_dir_fd >= 0 && faccessat(j->exec_dir_fd, j->id, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	return 0;
}
