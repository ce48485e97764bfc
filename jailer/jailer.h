/* ember-jailer: the pieces of one jail, shared by its steps.
 *
 * Every resource the jailer creates on the host is recorded here as it is
 * made, with a directory fd opened beforehand, so that a failure at any
 * step (even after pivot_root, when host paths are out of reach) and the
 * --cleanup mode can undo exactly what exists: the jail directory (and
 * <base>/<exec-name> and the base if this run made them) and the cgroup
 * directories. Mounts need no undo: they live in the jail's own mount
 * namespace and die with it.
 *
 * The jail's directories are held by fds, each opened from the one above
 * it without following a symbolic link: the base as the administrator
 * names it (symlinks in that path are followed, once), then <exec-name>,
 * <id> and root. Everything in the jail is made through these fds, so a
 * symlink or a rename below the base cannot send the jailer outside it. */
#ifndef EMBER_JAILER_H
#define EMBER_JAILER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_MAX_CGROUP_SETTINGS 32
#define JAIL_MAX_CGROUP_DIRS 16 /* one per v1 controller, or one for v2 */
#define JAIL_MAX_ARGS 128
#define JAIL_MAX_MADE 32 /* entries this run makes in a root it did not make */

struct cgroup_setting {
	char file[64];      /* e.g. memory.limit_in_bytes */
	char controller[32]; /* e.g. memory; empty for core files like cgroup.max.depth */
	const char *value;
	int dir; /* index into jail.cg: the hierarchy holding the file */
};

/* One cgroup directory the jail joins: <mount>/<parent>/<id>. */
struct cgroup_dir {
	char mount[256];  /* the hierarchy's mount point */
	char rel[512];    /* <parent>/<id>, relative to the mount */
	int mount_fd;     /* open before pivot_root, for undo afterwards */
	int created_depth; /* how many trailing components of rel we made */
};

struct jail {
	/* From the command line. */
	const char *id;
	const char *exec_file;
	char exec_name[256];
	int exec_fd;            /* the exec file, opened and checked before anything is made */
	char interp[PATH_MAX];  /* its ELF interpreter, "" if static */
	uid_t uid;
	gid_t gid;
	const char *base_dir;
	const char *netns;
	int netns_fd; /* opened and checked with the flags */
	const char *parent_cgroup; /* default: exec_name */
	int cgroup_version;
	bool daemonize, new_pid_ns, cleanup;
	long long rlimit_fsize, rlimit_nofile; /* -1: not set */
	/* The parent-death signal the jailer was started with (0: none) and
	 * its parent then: uid and fsuid changes clear the signal, so it is
	 * read at the start and set again after the switch. */
	int pdeath_signal;
	pid_t parent;
	struct cgroup_setting cgroups[JAIL_MAX_CGROUP_SETTINGS];
	int ncgroups;
	char **exec_args; /* after "--" */
	int nexec_args;

	/* What exists, for undo. The paths are for messages only. */
	char exec_dir[512];  /* <base>/<exec_name> */
	char jail_dir[600];  /* <base>/<exec_name>/<id> */
	char root_dir[640];  /* <jail_dir>/root */
	int base_made;       /* trailing components of base_dir this run made */
	int base_fd;
	bool exec_dir_made;  /* this run made <base>/<exec_name> */
	int exec_dir_fd;
	bool jail_created;   /* <id> is this run's (or, for --cleanup, was found) */
	int jail_fd;
	bool root_made;      /* this run made <id>/root */
	int root_fd;
	/* In a root that existed (the orchestrator staged files in it), what
	 * this run made there, relative to it: the undo removes only these.
	 * Nothing below an entry is listed. */
	char made[JAIL_MAX_MADE][128];
	int nmade;
	struct cgroup_dir cg[JAIL_MAX_CGROUP_DIRS];
	int ncg;
	bool cgroup_joined; /* this process is in them: leave before removing */
};

/* Each step returns 0 or -1 after printing one line saying what failed. */
int jail_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void jail_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* jailer/fs.c */
/* Open --exec-file (without blocking: it may name a FIFO) and check that it
 * is a regular file everyone may execute and a 64-bit ELF; fills exec_fd and
 * interp. Done before anything is made. */
int jail_open_binary(struct jail *j);
/* Make (or open) the base, <exec-name>, <id> and <id>/root, all held by
 * fds. An existing <id>/root is used as it is (the orchestrator may have
 * put the kernel and drives there), unless it holds <exec-name>.pid: a VM
 * ran there and its jail was not cleaned up. */
int jail_make_root(struct jail *j);
/* Copy the exec file into root/ as <exec-name>, owned by the jail's uid:gid
 * (an existing regular file there with no other link is overwritten), and
 * place its loader and libraries, if any. */
int jail_place_binary(struct jail *j);
/* The device nodes, and root/, dev/, dev/net/ and run/ as mode 0700 owned by
 * the jail's uid:gid (existing ones too). */
int jail_make_devices(struct jail *j);
/* Create root/<exec-name>.pid (it must not exist) with pid in it. */
int jail_write_pid_file(struct jail *j, int pid);
/* Check the jail is still where it was made, then enter it. */
int jail_pivot_root(struct jail *j);
/* Undo: remove what this run made (never following a symlink, never
 * leaving a mount): <id> with everything in it, or only root/ if <id>
 * existed, or only the entries listed in made[] if root/ existed; then
 * <exec-name> and the base components if this run made them and they are
 * empty. */
void jail_remove_dir(struct jail *j);
/* --cleanup: hold the directories of an existing jail; a symlink or a
 * mount point where a directory should be is refused. */
int jail_open_existing(struct jail *j);

#ifdef EMBER_TEST_HOOKS
/* Test builds only (--test-after-root CMD): right after <id>/root is made,
 * run "sh -c CMD sh <jail dir>" and wait for it, so that a test can change
 * the tree at exactly that point. */
extern const char *jail_test_after_root;
#endif

/* jailer/cgroup.c */
int cgroup_setup(struct jail *j);
/* Move pid into the jail's cgroups; with cgroup v2 and no --cgroup, into the
 * parent cgroup if it exists. */
int cgroup_join(struct jail *j, pid_t pid);
void cgroup_remove(struct jail *j);
int cgroup_open_existing(struct jail *j);

#endif
