/* ember-jailer: cgroups. Under v1 each controller is its own hierarchy
 * (found in /proc/mounts) and the jail gets <mount>/<parent>/<id> in each
 * one its settings name; under v2 there is one hierarchy and the
 * controllers must be enabled in cgroup.subtree_control of every
 * ancestor. Settings are written before the jailer joins, so the VMM never
 * runs unlimited. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jailer.h"

static bool has_option(const char *opts, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = opts; *p;) {
		if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
		p = strchr(p, ',');
		if (!p)
			break;
		p++;
	}
	return false;
}

/* The mount point of the v1 hierarchy holding controller, or of the v2
 * hierarchy (controller NULL). Returns 0, or -ENOENT if not mounted. */
static int find_mount(const char *controller, char *out, size_t len)
{
	FILE *f = setmntent("/proc/mounts", "r");
	if (!f)
		return -errno;
	struct mntent *m;
	int ret = -ENOENT;
	while ((m = getmntent(f))) {
		bool match = controller ? !strcmp(m->mnt_type, "cgroup") && has_option(m->mnt_opts, controller)
					: !strcmp(m->mnt_type, "cgroup2");
		if (match) {
			snprintf(out, len, "%s", m->mnt_dir);
			ret = 0;
			break;
		}
	}
	endmntent(f);
	return ret;
}

/* Files in a cgroup hierarchy (whose mount point /proc/mounts names) are
 * opened without blocking and without following a symlink all the same. */
static int write_file_at(int dirfd, const char *path, const char *value)
{
	int fd = openat(dirfd, path, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = strlen(value);
	ssize_t w = write(fd, value, n);
	int err = w < 0 ? -errno : (size_t)w != n ? -EIO : 0;
	close(fd);
	return err;
}

static int read_file_at(int dirfd, const char *path, char *buf, size_t len)
{
	int fd = openat(dirfd, path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int err = n < 0 ? -errno : 0;
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	return err;
}

static bool word_in(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

/* Add a hierarchy to the jail (once per mount point). */
static struct cgroup_dir *add_dir(struct jail *j, const char *mount)
{
	for (int i = 0; i < j->ncg; i++)
		if (!strcmp(j->cg[i].mount, mount))
			return &j->cg[i];
	if (j->ncg == JAIL_MAX_CGROUP_DIRS) {
		jail_report("too many cgroup hierarchies");
		return NULL;
	}
	struct cgroup_dir *d = &j->cg[j->ncg];
	memset(d, 0, sizeof(*d));
	snprintf(d->mount, sizeof(d->mount), "%s", mount);
	snprintf(d->rel, sizeof(d->rel), "%s/%s", j->parent_cgroup, j->id);
	d->mount_fd = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->mount_fd < 0) {
		jail_report("cannot open cgroup hierarchy %s: %s", mount, strerror(errno));
		return NULL;
	}
	j->ncg++;
	return d;
}

/* mkdir every component of d->rel, counting those that did not exist, and
 * under v1's cpuset give new directories their parent's cpus and mems
 * (a cpuset cgroup without them cannot hold a task). */
static int make_dirs(struct jail *j, struct cgroup_dir *d, bool cpuset)
{
	char path[sizeof(d->rel)];
	snprintf(path, sizeof(path), "%s", d->rel);
	for (char *p = path;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdirat(d->mount_fd, path, 0755) == 0) {
			d->created_depth++;
		} else if (errno != EEXIST || d->created_depth) {
			/* Under a directory we just made, nothing can exist: the
			 * jail's own leaf existing means another jail owns it. */
			if (errno == EEXIST)
				return jail_report("cgroup %s/%s already exists (another jail with id %s?)", d->mount,
						   path, j->id);
			return jail_report("cannot create cgroup %s/%s: %s", d->mount, path, strerror(errno));
		} else if (c == '\0') {
			return jail_report("cgroup %s/%s already exists (another jail with id %s, or not cleaned up)",
					   d->mount, path, j->id);
		}
		if (cpuset && d->created_depth) {
			static const char *const inherit[] = { "cpuset.cpus", "cpuset.mems" };
			for (int i = 0; i < 2; i++) {
				char from[sizeof(path) + 32], to[sizeof(path) + 32], val[4096];
				char *slash = strrchr(path, '/');
				if (slash)
					snprintf(from, sizeof(from), "%.*s/%s", (int)(slash - path), path, inherit[i]);
				else
					snprintf(from, sizeof(from), "%s", inherit[i]);
				snprintf(to, sizeof(to), "%s/%s", path, inherit[i]);
				int err = read_file_at(d->mount_fd, from, val, sizeof(val));
				if (!err && val[0])
					err = write_file_at(d->mount_fd, to, val);
				if (err)
					return jail_report("cannot copy %s to %s/%s: %s", inherit[i], d->mount, path,
							   strerror(-err));
			}
		}
		if (c == '\0')
			return 0;
		*p = c;
	}
}

/* Under v2, a controller must be enabled in the subtree_control of every
 * ancestor of the jail's cgroup (the root included). */
static int enable_v2_controller(struct cgroup_dir *d, const char *controller)
{
	char avail[1024];
	int err = read_file_at(d->mount_fd, "cgroup.controllers", avail, sizeof(avail));
	if (err)
		return jail_report("cannot read %s/cgroup.controllers: %s", d->mount, strerror(-err));
	if (!word_in(avail, controller))
		return jail_report("cgroup v2 controller '%s' is not available at %s (available: %s)", controller,
				   d->mount, avail[0] ? avail : "none");
	char enable[40], parent[sizeof(d->rel)], file[sizeof(d->rel) + 32];
	snprintf(enable, sizeof(enable), "+%s", controller);
	snprintf(parent, sizeof(parent), "%s", d->rel);
	*strrchr(parent, '/') = '\0'; /* not the leaf itself */
	if ((err = write_file_at(d->mount_fd, "cgroup.subtree_control", enable)))
		return jail_report("cannot enable controller %s in %s/cgroup.subtree_control: %s", controller,
				   d->mount, strerror(-err));
	for (char *p = parent;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		snprintf(file, sizeof(file), "%s/cgroup.subtree_control", parent);
		if ((err = write_file_at(d->mount_fd, file, enable)))
			return jail_report("cannot enable controller %s in %s/%s: %s", controller, d->mount, file,
					   strerror(-err));
		if (c == '\0')
			return 0;
		*p = c;
	}
}

int cgroup_setup(struct jail *j)
{
	if (j->ncgroups == 0)
		return 0;
	char mount[PATH_MAX];
	if (j->cgroup_version == 2 && find_mount(NULL, mount, sizeof(mount)))
		return jail_report("--cgroup-version 2: no cgroup2 hierarchy is mounted (see /proc/mounts)");

	/* Which hierarchies, and the directories in them. */
	for (int i = 0; i < j->ncgroups; i++) {
		struct cgroup_setting *s = &j->cgroups[i];
		if (j->cgroup_version == 1) {
			if (find_mount(s->controller, mount, sizeof(mount)))
				return jail_report("--cgroup %s: the cgroup v1 controller '%s' is not mounted "
						   "(see /proc/mounts)", s->file, s->controller);
		}
		struct cgroup_dir *d = add_dir(j, mount);
		if (!d)
			return -1;
		s->dir = (int)(d - j->cg);
	}
	for (int i = 0; i < j->ncg; i++) {
		char cpuset_mount[PATH_MAX];
		bool cpuset = j->cgroup_version == 1 && !find_mount("cpuset", cpuset_mount, sizeof(cpuset_mount)) &&
			      !strcmp(cpuset_mount, j->cg[i].mount);
		if (make_dirs(j, &j->cg[i], cpuset))
			return -1;
	}
	if (j->cgroup_version == 2)
		for (int i = 0; i < j->ncgroups; i++)
			if (strcmp(j->cgroups[i].controller, "cgroup") &&
			    enable_v2_controller(&j->cg[0], j->cgroups[i].controller))
				return -1;
	/* The settings, each in the hierarchy that has its file. */
	for (int i = 0; i < j->ncgroups; i++) {
		struct cgroup_setting *s = &j->cgroups[i];
		struct cgroup_dir *d = &j->cg[s->dir];
		char file[sizeof(d->rel) + 80];
		snprintf(file, sizeof(file), "%s/%s", d->rel, s->file);
		int err = write_file_at(d->mount_fd, file, s->value);
		if (err == -ENOENT)
			return jail_report("--cgroup %s: no such cgroup file in %s/%s", s->file, d->mount, d->rel);
		if (err)
			return jail_report("--cgroup %s=%s: writing %s/%s: %s", s->file, s->value, d->mount, file,
					   strerror(-err));
	}
	return 0;
}

/* cgroup v2 and no --cgroup: the VMM goes into the parent cgroup
 * (--parent-cgroup, by default <exec-name>) itself if it exists (nothing is made), as with
 * Firecracker's jailer; if it does not, into none. */
static int join_v2_parent(struct jail *j, const char *pid)
{
	char mount[PATH_MAX], file[PATH_MAX + 256];
	if (find_mount(NULL, mount, sizeof(mount)))
		return jail_report("--cgroup-version 2: no cgroup2 hierarchy is mounted (see /proc/mounts)");
	snprintf(file, sizeof(file), "%s/%s", mount, j->parent_cgroup);
	struct stat st;
	if (stat(file, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	snprintf(file, sizeof(file), "%s/%s/cgroup.procs", mount, j->parent_cgroup);
	int err = write_file_at(AT_FDCWD, file, pid);
	if (err)
		return jail_report("Failed to move process to cgroup (%s/%s): %s (os error %d) (to make a cgroup for "
				   "the VM under it, give --cgroup settings)", mount, j->parent_cgroup, strerror(-err), -err);
	return 0;
}

int cgroup_join(struct jail *j, pid_t pid)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%d", (int)pid);
	if (j->ncgroups == 0 && j->cgroup_version == 2)
		return join_v2_parent(j, buf);
	for (int i = 0; i < j->ncg; i++) {
		char file[sizeof(j->cg[i].rel) + 16];
		snprintf(file, sizeof(file), "%s/cgroup.procs", j->cg[i].rel);
		int err = write_file_at(j->cg[i].mount_fd, file, buf);
		if (err)
			return jail_report("cannot join cgroup %s/%s: %s", j->cg[i].mount, j->cg[i].rel,
					   strerror(-err));
		j->cgroup_joined = true;
	}
	return 0;
}

/* Remove the directories the jail made (created_depth of them, leaf
 * first), after moving this process out of them. */
void cgroup_remove(struct jail *j)
{
	char self[24];
	snprintf(self, sizeof(self), "%d", (int)getpid());
	for (int i = 0; i < j->ncg; i++) {
		struct cgroup_dir *d = &j->cg[i];
		if (j->cgroup_joined)
			write_file_at(d->mount_fd, "cgroup.procs", self);
		char path[sizeof(d->rel)];
		snprintf(path, sizeof(path), "%s", d->rel);
		for (; d->created_depth > 0; d->created_depth--) {
			if (unlinkat(d->mount_fd, path, AT_REMOVEDIR) < 0 && errno != ENOENT) {
				jail_report("cannot remove cgroup %s/%s: %s", d->mount, path, strerror(errno));
				break;
			}
			char *slash = strrchr(path, '/');
			if (!slash)
				break;
			*slash = '\0';
		}
	}
}

/* --cleanup: the jail's leaf cgroup in every hierarchy that has one. The
 * parent cgroup stays: other jails share it. */
int cgroup_open_existing(struct jail *j)
{
	FILE *f = setmntent("/proc/mounts", "r");
	if (!f)
		return jail_report("/proc/mounts: %s", strerror(errno));
	struct mntent *m;
	while ((m = getmntent(f))) {
		if (strcmp(m->mnt_type, "cgroup") && strcmp(m->mnt_type, "cgroup2"))
			continue;
		char rel[PATH_MAX];
		snprintf(rel, sizeof(rel), "%s/%s/%s", m->mnt_dir, j->parent_cgroup, j->id);
		struct stat st;
		if (stat(rel, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		struct cgroup_dir *d = add_dir(j, m->mnt_dir);
		if (!d)
			break;
		d->created_depth = 1;
	}
	endmntent(f);
	return 0;
}
