/* ember-fn's functions: see function.h. */
#include "function.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "agent_conn.h"
#include "vmm.h"

#define FN_AGENT_PORT 1024
#define FN_LATENCIES 1024
/* How long a clone's ember gets to come up, restore and let the agent
 * answer CONNECT (the restore itself takes milliseconds, but a resumed
 * guest on a loaded software-virtualized host can take seconds to run
 * its agent). */
#define FN_RESTORE_TIMEOUT_MS 30000
/* An answer may follow the handler's timeout by this much. */
#define FN_ANSWER_SLACK_MS 5000
/* The scratch drive: the function's definition and the overlay's upper
 * layer (rootfs/agent.c). Its name is relative on purpose: each ember
 * opens it in its own working directory (see clone_restore). */
#define FN_SCRATCH "scratch.ext4"
#define FN_SCRATCH_MIB 64
/* A jailed function's copy of its root image, in its directory and (by
 * hard link, as the template's memory and state) in each clone's jail. */
#define FN_ROOTFS "rootfs.ext4"
/* Inside each jail: ember's API socket (ember-jailer makes run/) and the
 * vsock's Unix socket. */
#define FN_JAIL_API "/run/api"
#define FN_JAIL_VSOCK "/v"
/* network: the guest's interface, and its MAC (the same in every clone,
 * each behind its own tap). */
#define FN_IFACE "eth0"
#define FN_GUEST_MAC "06:00:ac:10:00:02"

enum fn_state { FN_BUILDING, FN_READY, FN_DELETING };

/* One clone: an ember restored from its function's template. */
struct clone {
	pid_t pid;
	bool jailed;
	char id[32]; /* ember-jailer's --id */
	char dir[PATH_MAX]; /* where its ember runs: its jail's root when jailed */
	char api[PATH_MAX], vs[PATH_MAX], log[PATH_MAX];
	char tap[IFNAMSIZ];  /* its tap, or "" */
	char tap_rec[PATH_MAX]; /* the file naming it, for fn_sweep */
};


struct fn {
	char name[FN_NAME_MAX + 1];
	struct fn_config c;
	char dir[FN_STATE_DIR_MAX + FN_NAME_MAX + 2];
	enum fn_state state;
	unsigned running, queued;
	pthread_cond_t changed;
	/* Paused clones ready to resume, kept full by the filler thread. */
	struct clone *pool;
	unsigned npool;
	unsigned long long pool_failures;
	char pool_error[640];
	pthread_t filler;
	bool has_filler;
	/* Paused clones that answered an invocation, kept under "reuse";
	 * the last kept is taken first. */
	struct clone warm[FN_POOL_MAX];
	unsigned nwarm;
	unsigned long long invocations, failures, timeouts, refused;
	unsigned long long restores, reuses; /* clones restored (pool included); served warm */
	uint32_t latency_ms[FN_LATENCIES];
	unsigned nlatency, next_latency;
	struct fn *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fn *functions;
static char state_dir[FN_STATE_DIR_MAX + 1], ember_path[PATH_MAX], jailer_path[PATH_MAX];
static atomic_uint clone_seq;
/* The counts of deleted functions, for GET /metrics's total. */
static unsigned long long gone_invocations, gone_failures, gone_timeouts, gone_refused, gone_restores, gone_reuses;

int fn_setup(const char *dir, const char *ember, const char *jailer)
{
	if (strlen(dir) > FN_STATE_DIR_MAX)
		return -1;
	snprintf(state_dir, sizeof(state_dir), "%s", dir);
	/* Absolute: the VMMs start in directories of their own. */
	if (!realpath(ember, ember_path))
		snprintf(ember_path, sizeof(ember_path), "%s", ember);
	jailer_path[0] = 0;
	if (jailer && !realpath(jailer, jailer_path))
		snprintf(jailer_path, sizeof(jailer_path), "%s", jailer);
	return 0;
}

/* CLOCK_MONOTONIC in microseconds, for the answer's time split. */
static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int errf(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return -1;
}

int fn_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > FN_NAME_MAX)
		return 0;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static int get_str(const cJSON *o, const char *key, char *out, size_t cap, int required, char *err, size_t ecap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v))
		return required ? errf(err, ecap, "%s: missing", key) : 0;
	if (!cJSON_IsString(v))
		return errf(err, ecap, "%s: must be a string", key);
	if (strlen(v->valuestring) >= cap)
		return errf(err, ecap, "%s: longer than %zu bytes", key, cap - 1);
	strcpy(out, v->valuestring);
	return 0;
}

static int get_uint(const cJSON *o, const char *key, unsigned *out, unsigned lo, unsigned hi, char *err, size_t ecap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v))
		return 0;
	/* The range first: casting an infinity (1e999) is undefined. */
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
	    v->valuedouble != (double)(long long)v->valuedouble)
		return errf(err, ecap, "%s: must be an integer from %u to %u", key, lo, hi);
	*out = (unsigned)v->valuedouble;
	return 0;
}

/* env: an object of strings, packed as NAME=VALUE\0 into c->env. */
static int get_env(const cJSON *o, struct fn_config *c, char *err, size_t ecap)
{
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(o, "env");
	if (!env || cJSON_IsNull(env))
		return 0;
	if (!cJSON_IsObject(env))
		return errf(err, ecap, "env: must be an object of strings");
	unsigned n = 0;
	for (const cJSON *v = env->child; v; v = v->next) {
		const char *k = v->string;
		size_t klen = strlen(k);
		if (klen == 0 || klen > FN_ENV_NAME_MAX || strchr("0123456789", k[0]) ||
		    strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != klen)
			return errf(err, ecap, "env: a name must be 1 to %d of [A-Za-z_][A-Za-z0-9_]*", FN_ENV_NAME_MAX);
		if (!cJSON_IsString(v))
			return errf(err, ecap, "env.%s: must be a string", k);
		size_t vlen = strlen(v->valuestring);
		if (++n > FN_ENV_VARS || c->env_len + klen + vlen + 2 > sizeof(c->env))
			return errf(err, ecap, "env: more than %d variables or %d bytes", FN_ENV_VARS, FN_ENV_MAX);
		c->env_len += (size_t)sprintf(c->env + c->env_len, "%s=%s", k, v->valuestring) + 1;
	}
	return 0;
}

/* Every key of object o is one of keys (NULL-terminated): 0, or -1
 * with the first other one named (after prefix) in err. */
static int known_keys(const cJSON *o, const char *const *keys, const char *prefix, char *err, size_t ecap)
{
	for (const cJSON *it = o->child; it; it = it->next) {
		size_t i = 0;
		while (keys[i] && strcmp(keys[i], it->string) != 0)
			i++;
		if (!keys[i])
			return errf(err, ecap, "unknown field: %s%s", prefix, it->string);
	}
	return 0;
}

/* jail: {"uid", "gid" (both required), "cgroup_version" (1 or 2, as
 * ember-jailer's default 1), "cgroups": {"FILE": "VALUE", ...}}. The
 * names and values are checked for form here; ember-jailer checks that
 * the host has them when the function's first clone is jailed. */
static int get_jail(const cJSON *o, struct fn_jail *j, char *err, size_t ecap)
{
	static const char *const keys[] = { "uid", "gid", "cgroup_version", "cgroups", NULL };
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "jail");
	*j = (struct fn_jail){ .cgroup_version = 1 };
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsObject(v))
		return errf(err, ecap, "jail: must be an object");
	if (known_keys(v, keys, "jail.", err, ecap))
		return -1;
	for (size_t i = 0; i < 2; i++) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, keys[i]);
		if (!id || cJSON_IsNull(id))
			return errf(err, ecap, "jail.%s: missing", keys[i]);
	}
	char why[256];
	if (get_uint(v, "uid", &j->uid, 0, 0xfffffffeU, why, sizeof(why)) ||
	    get_uint(v, "gid", &j->gid, 0, 0xfffffffeU, why, sizeof(why)) ||
	    get_uint(v, "cgroup_version", &j->cgroup_version, 1, 2, why, sizeof(why)))
		return errf(err, ecap, "jail.%s", why);
	const cJSON *cg = cJSON_GetObjectItemCaseSensitive(v, "cgroups");
	if (cg && !cJSON_IsNull(cg) && !cJSON_IsObject(cg))
		return errf(err, ecap, "jail.cgroups: must be an object of strings");
	for (const cJSON *it = cg && cJSON_IsObject(cg) ? cg->child : NULL; it; it = it->next) {
		const char *k = it->string, *dot = strchr(k, '.');
		size_t klen = strlen(k);
		if (klen > 64 || !dot || dot == k || !dot[1] ||
		    strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_.") != klen)
			return errf(err, ecap, "jail.cgroups: a name must be a cgroup file such as memory.max "
					      "(at most 64 of a-z 0-9 _ .)");
		if (!cJSON_IsString(it))
			return errf(err, ecap, "jail.cgroups.%s: must be a string", k);
		const char *val = it->valuestring;
		size_t vlen = strlen(val), printable = 0;
		while (printable < vlen && val[printable] >= 0x20 && val[printable] < 0x7f)
			printable++;
		if (vlen == 0 || vlen > 80 || printable != vlen)
			return errf(err, ecap, "jail.cgroups.%s: must be 1 to 80 printable characters", k);
		if (j->ncgroups == FN_CGROUPS_MAX)
			return errf(err, ecap, "jail.cgroups: more than %d", FN_CGROUPS_MAX);
		snprintf(j->cgroups[j->ncgroups++], FN_CGROUP_MAX, "%s=%s", k, val);
	}
	j->on = true;
	return 0;
}

int fn_config_parse(const char *json, size_t len, struct fn_config *c, char *err, size_t cap)
{
	static const char *const keys[] = { "kernel_image_path", "rootfs_path", "handler", "init", "vcpu_count",
					    "mem_size_mib", "timeout_ms", "max_concurrency", "max_queued",
					    "boot_timeout_s", "pool_size", "env", "handler_mode",
					    "clone_policy", "max_warm", "jail", "network", NULL };
	*c = (struct fn_config){ .vcpus = 1, .mem_mib = 128, .timeout_ms = 30000, .max_concurrency = 4,
				 .boot_timeout_s = 600 };
	cJSON *o = cJSON_ParseWithLength(json, len);
	char mode[16] = "process";
	int r = -1;
	if (!o || !cJSON_IsObject(o)) {
		errf(err, cap, "the body must be a JSON object");
		goto out;
	}
	if (known_keys(o, keys, "", err, cap))
		goto out;
	if (get_str(o, "kernel_image_path", c->kernel, sizeof(c->kernel), 1, err, cap) ||
	    get_str(o, "rootfs_path", c->rootfs, sizeof(c->rootfs), 1, err, cap) ||
	    get_str(o, "handler", c->handler, sizeof(c->handler), 1, err, cap) ||
	    get_str(o, "init", c->init, sizeof(c->init), 0, err, cap) ||
	    get_uint(o, "vcpu_count", &c->vcpus, 1, 32, err, cap) ||
	    get_uint(o, "mem_size_mib", &c->mem_mib, 64, 32768, err, cap) ||
	    get_uint(o, "timeout_ms", &c->timeout_ms, 1, AGENT_MAX_TIMEOUT_MS, err, cap) ||
	    get_uint(o, "max_concurrency", &c->max_concurrency, 1, 1024, err, cap) ||
	    get_uint(o, "max_queued", &c->max_queued, 0, 65536, err, cap) ||
	    get_uint(o, "boot_timeout_s", &c->boot_timeout_s, 1, 3600, err, cap) ||
	    get_uint(o, "pool_size", &c->pool_size, 0, FN_POOL_MAX, err, cap) || get_env(o, c, err, cap) ||
	    get_jail(o, &c->jail, err, cap))
		goto out;
	const cJSON *net = cJSON_GetObjectItemCaseSensitive(o, "network");
	if (net && !cJSON_IsNull(net) && !cJSON_IsBool(net)) {
		errf(err, cap, "network: must be true or false");
		goto out;
	}
	c->network = cJSON_IsTrue(net);
	const cJSON *policy = cJSON_GetObjectItemCaseSensitive(o, "clone_policy");
	c->reuse = cJSON_IsString(policy) && strcmp(policy->valuestring, "reuse") == 0;
	if (policy && !cJSON_IsNull(policy) && !c->reuse &&
	    !(cJSON_IsString(policy) && strcmp(policy->valuestring, "destroy") == 0)) {
		errf(err, cap, "clone_policy: must be \"destroy\" or \"reuse\"");
		goto out;
	}
	/* As many warm clones as the pool holds paused ones: the memory the
	 * function's owner already chose to keep idle. */
	c->max_warm = c->pool_size ? c->pool_size : 1;
	if (get_uint(o, "max_warm", &c->max_warm, 1, FN_POOL_MAX, err, cap))
		goto out;
	if (!c->handler[0]) {
		errf(err, cap, "handler: must not be empty");
		goto out;
	}
	if (get_str(o, "handler_mode", mode, sizeof(mode), 0, err, cap))
		goto out;
	if (strcmp(mode, "process") != 0 && strcmp(mode, "stream") != 0) {
		errf(err, cap, "handler_mode: must be \"process\" or \"stream\"");
		goto out;
	}
	c->stream = strcmp(mode, "stream") == 0;
	r = 0;
out:
	cJSON_Delete(o);
	return r;
}

static struct fn *find(const char *name)
{
	for (struct fn *f = functions; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void unlink_from_list(struct fn *f)
{
	for (struct fn **p = &functions; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			return;
		}
}

/* out (PATH_MAX bytes) = the formatted path; never cut (as path's). */
__attribute__((format(printf, 2, 3))) static void pathf(char *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX)
		abort();
}

static void path(char *out, const char *dir, const char *file)
{
	/* Never cut: the paths under a function's directory are bounded at
	 * its registration (fn_create). */
	if (snprintf(out, PATH_MAX, "%s/%s", dir, file) >= PATH_MAX)
		abort();
}

/* Where ember-jailer puts a clone's jail: <base>/<exec-name>/<id>/root,
 * with <exec-name> the name of ember's binary. */
static const char *exec_name(void)
{
	const char *slash = strrchr(ember_path, '/');
	return slash ? slash + 1 : ember_path;
}

/* ember-jailer's --chroot-base-dir for f's clones. */
static void jail_base(const char *fn_dir, char *out)
{
	path(out, fn_dir, "jail");
}

/* Whether the file at path holds text (the VMM's console log). */
static int console_says(const char *path, const char *text)
{
	FILE *fp = fopen(path, "r");
	if (!fp)
		return 0;
	char line[1024];
	int found = 0;
	while (!found && fgets(line, sizeof(line), fp))
		found = strstr(line, text) != NULL;
	fclose(fp);
	return found;
}

static void remove_tree(const char *dir, int depth);

static int write_file(const char *p, const void *data, size_t len)
{
	FILE *fp = fopen(p, "w");
	int ok = fp && fwrite(data, 1, len, fp) == len;
	if (fp && fclose(fp) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

/* The template's scratch image at img: a sparse ext4 holding fn/handler,
 * fn/init, fn/env (NAME=VALUE\0 each) and the empty upper/, work/ and
 * root/ (where the merged root is mounted) that the guest's agent uses.
 * mkfs.ext4's output goes to log. */
static int scratch_make(struct fn *f, const char *img, const char *log, char *err, size_t cap)
{
	char stage[PATH_MAX], p[PATH_MAX + 16];
	path(stage, f->dir, "scratch.d");
	remove_tree(stage, 1);
	int r = -1;
	static const char *const dirs[] = { "", "/fn", "/upper", "/work", "/root" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", stage, dirs[i]);
		if (mkdir(p, 0755) < 0) {
			errf(err, cap, "cannot create %s: %s", p, strerror(errno));
			goto out;
		}
	}
	static const char *const names[] = { "handler", "init", "env" };
	const char *data[] = { f->c.handler, f->c.init, f->c.env };
	size_t lens[] = { strlen(f->c.handler), strlen(f->c.init), f->c.env_len };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/fn/%s", stage, names[i]);
		if (write_file(p, data[i], lens[i]) < 0) {
			errf(err, cap, "cannot write %s", p);
			goto out;
		}
	}
	int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)FN_SCRATCH_MIB << 20) < 0) {
		errf(err, cap, "cannot create %s: %s", img, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	pid_t pid = lfd < 0 ? -1 : fork();
	if (pid == 0) {
		/* No journal: every clone's copy is thrown away, never recovered. */
		const char *argv[] = { "mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "root_owner=0:0",
				       "-L", "ember-scratch", "-d", stage, img, NULL };
		if (dup2(lfd, 1) >= 0 && dup2(lfd, 2) >= 0)
			execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int status = -1;
	if (lfd >= 0)
		close(lfd);
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		errf(err, cap, "mkfs.ext4 could not make the scratch image %s (log: %s)", img, log);
		goto out;
	}
	r = 0;
out:
	remove_tree(stage, 1);
	return r;
}

/* dst (new): a copy of src, sharing its blocks where the filesystem can
 * (FICLONE), else with src's data copied and its holes left holes. src
 * is only read. */
static int copy_sparse(const char *src, const char *dst, char *err, size_t cap)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1;
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0 || (out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		goto fail;
	if (ioctl(out, FICLONE, in) == 0)
		goto done;
	if (ftruncate(out, st.st_size) < 0)
		goto fail;
	for (off_t pos = 0; pos < st.st_size;) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		off_t hole = data < 0 ? -1 : lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			goto fail;
		off_t oi = data, oo = data;
		while (oi < hole) {
			ssize_t n = copy_file_range(in, &oi, out, &oo, (size_t)(hole - oi), 0);
			if (n <= 0) {
				if (n == 0)
					errno = EIO;
				goto fail;
			}
		}
		pos = hole;
	}
done:
	close(in);
	if (close(out) < 0) {
		unlink(dst);
		return errf(err, cap, "cannot copy %s to %s: %s", src, dst, strerror(errno));
	}
	return 0;
fail:
	errf(err, cap, "cannot copy %s to %s: %s", src, dst, strerror(errno));
	if (in >= 0)
		close(in);
	if (out >= 0) {
		close(out);
		unlink(dst);
	}
	return -1;
}

/* A tap for a clone or the template: named by the kernel (efnN: unique
 * on the host), persistent until tap_remove, and, for a jailed ember
 * (uid != 0), owned by uid:gid so that it attaches without CAP_NET_ADMIN.
 * Its name is recorded in the file rec, so that fn_sweep can remove a tap
 * a killed ember-fn left. 0, or -1 with err set. */
static int tap_make(char name[IFNAMSIZ], uid_t uid, gid_t gid, const char *rec, char *err, size_t cap)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "efn%%d");
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	bool ok = fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0 &&
		  (uid == 0 || (ioctl(fd, TUNSETOWNER, (unsigned long)uid) == 0 &&
				ioctl(fd, TUNSETGROUP, (unsigned long)gid) == 0)) &&
		  ioctl(fd, TUNSETPERSIST, 1UL) == 0;
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (!ok)
		return errf(err, cap, "cannot make a tap: %s", strerror(e));
	memcpy(name, ifr.ifr_name, IFNAMSIZ);
	name[IFNAMSIZ - 1] = 0;
	if (write_file(rec, name, strlen(name)) < 0) {
		errf(err, cap, "cannot write %s", rec);
		return -1;
	}
	return 0;
}

/* Remove the persistent tap name (nobody attached any more) and its
 * record rec. */
static void tap_remove(const char *name, const char *rec)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	int fd = name[0] ? open("/dev/net/tun", O_RDWR | O_CLOEXEC) : -1;
	if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0)
		ioctl(fd, TUNSETPERSIST, 0UL);
	if (fd >= 0)
		close(fd);
	unlink(rec);
}

/* The files every jailed clone shares (the template's memory and state,
 * the root image): root's, readable by the jail's group only. The jailed
 * ember can neither write them nor change who may (it does not own them). */
static int share_readonly(const char *p, gid_t gid, char *err, size_t cap)
{
	if (chown(p, 0, gid) < 0 || chmod(p, 0440) < 0)
		return errf(err, cap, "cannot give %s to gid %u: %s", p, (unsigned)gid, strerror(errno));
	return 0;
}

/* The template: boot, wait for the agent to be ready, pause, snapshot. */
static int build_template(struct fn *f, char *err, size_t cap)
{
	char cfg[PATH_MAX], api[PATH_MAX], vs[PATH_MAX], log[PATH_MAX], st[PATH_MAX], mem[PATH_MAX];
	path(cfg, f->dir, "template.json");
	path(api, f->dir, "template.api");
	path(vs, f->dir, "template.vsock");
	path(log, f->dir, "template.log");
	path(st, f->dir, "template.state");
	path(mem, f->dir, "template.mem");

	char img[PATH_MAX];
	path(img, f->dir, FN_SCRATCH);
	if (scratch_make(f, img, log, err, cap) < 0)
		return -1;
	/* A jailed clone sees nothing outside its jail, so the template names
	 * its root image by a relative path as well: a copy in the function's
	 * directory, linked into each jail. */
	const char *rootfs = f->c.rootfs;
	if (f->c.jail.on) {
		char copy[PATH_MAX];
		path(copy, f->dir, FN_ROOTFS);
		unlink(copy);
		if (copy_sparse(f->c.rootfs, copy, err, cap) < 0 || share_readonly(copy, f->c.jail.gid, err, cap) < 0)
			return -1;
		rootfs = FN_ROOTFS;
	}
	/* The function's definition is on the scratch drive (the second
	 * drive: /dev/vdb), not on the command line. */
	char args[256];
	snprintf(args, sizeof(args), "console=ttyS0 reboot=k panic=1 quiet ember.cmd=\"ember-agent --scratch /dev/vdb %s%d\"",
		 f->c.stream ? "--stream " : "", FN_AGENT_PORT);
	cJSON *o = cJSON_CreateObject(), *boot = cJSON_AddObjectToObject(o, "boot-source");
	cJSON_AddStringToObject(boot, "kernel_image_path", f->c.kernel);
	cJSON_AddStringToObject(boot, "boot_args", args);
	cJSON *m = cJSON_AddObjectToObject(o, "machine-config");
	cJSON_AddNumberToObject(m, "vcpu_count", f->c.vcpus);
	cJSON_AddNumberToObject(m, "mem_size_mib", f->c.mem_mib);
	cJSON *drives = cJSON_AddArrayToObject(o, "drives"), *drive = cJSON_CreateObject();
	cJSON_AddStringToObject(drive, "drive_id", "rootfs");
	cJSON_AddStringToObject(drive, "path_on_host", rootfs);
	cJSON_AddBoolToObject(drive, "is_root_device", 1);
	/* Every clone shares the image: nobody writes it. */
	cJSON_AddBoolToObject(drive, "is_read_only", 1);
	cJSON_AddItemToArray(drives, drive);
	/* Relative: resolved in each ember's working directory, the
	 * template's here and each clone's in its own directory. */
	drive = cJSON_CreateObject();
	cJSON_AddStringToObject(drive, "drive_id", "scratch");
	cJSON_AddStringToObject(drive, "path_on_host", FN_SCRATCH);
	cJSON_AddBoolToObject(drive, "is_root_device", 0);
	cJSON_AddBoolToObject(drive, "is_read_only", 0);
	cJSON_AddItemToArray(drives, drive);
	char tap[IFNAMSIZ] = "", tap_rec[PATH_MAX];
	path(tap_rec, f->dir, "template.tap");
	if (f->c.network) {
		if (tap_make(tap, 0, 0, tap_rec, err, cap) < 0) {
			cJSON_Delete(o);
			return -1;
		}
		/* Each clone's restore names a tap of its own instead. */
		cJSON *nets = cJSON_AddArrayToObject(o, "network-interfaces"), *net = cJSON_CreateObject();
		cJSON_AddStringToObject(net, "iface_id", FN_IFACE);
		cJSON_AddStringToObject(net, "host_dev_name", tap);
		cJSON_AddStringToObject(net, "guest_mac", FN_GUEST_MAC);
		cJSON_AddItemToArray(nets, net);
	}
	cJSON *v = cJSON_AddObjectToObject(o, "vsock");
	cJSON_AddNumberToObject(v, "guest_cid", 3);
	cJSON_AddStringToObject(v, "uds_path", vs);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	int wrote = text && write_file(cfg, text, strlen(text)) == 0;
	free(text);
	if (!wrote) {
		tap_remove(tap, tap_rec);
		return errf(err, cap, "cannot write %s", cfg);
	}

	const char *argv[] = { ember_path, "--api-sock", api, "--config-file", cfg, NULL };
	long long deadline = fn_now_ms() + (long long)f->c.boot_timeout_s * 1000;
	pid_t pid = fn_vmm_start(argv, f->dir, api, log);
	if (pid < 0) {
		tap_remove(tap, tap_rec);
		return errf(err, cap, "cannot start %s: %s", ember_path, strerror(errno));
	}
	int r = -1;
	if (fn_vmm_wait_api(api, pid, fn_now_ms() + FN_RESTORE_TIMEOUT_MS) < 0) {
		errf(err, cap, "the template's ember did not start (log: %s)", log);
		goto out;
	}
	/* Ready when the agent says so on the console. No connection is made
	 * to the template: one open in the snapshot would hold every clone's
	 * agent until its reset arrives. */
	while (!console_says(log, "ember-agent: ready") && fn_now_ms() < deadline &&
	       waitpid(pid, NULL, WNOHANG) == 0)
		usleep(100000);
	if (!console_says(log, "ember-agent: ready")) {
		errf(err, cap, "the template's agent did not get ready within %u s (log: %s)", f->c.boot_timeout_s, log);
		goto out;
	}
	char reply[512];
	char body[3 * PATH_MAX];
	snprintf(body, sizeof(body), "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", st,
		 mem);
	if (fn_vmm_request(api, "PATCH", "/vm", "{\"state\":\"Paused\"}", fn_now_ms() + 10000, reply,
			   sizeof(reply)) != 204 ||
	    fn_vmm_request(api, "PUT", "/snapshot/create", body, fn_now_ms() + 60000, reply, sizeof(reply)) != 204) {
		errf(err, cap, "the template's snapshot failed: %s", reply);
		goto out;
	}
	if (f->c.jail.on && (share_readonly(st, f->c.jail.gid, err, cap) < 0 ||
			     share_readonly(mem, f->c.jail.gid, err, cap) < 0))
		goto out;
	r = 0;
out:
	fn_vmm_kill(pid);
	unlink(api);
	unlink(vs);
	tap_remove(tap, tap_rec);
	return r;
}

static void *pool_filler(void *arg);
static int clone_restore(struct fn *f, struct clone *c, bool resume, char *err, size_t cap);
static void clone_destroy(struct clone *c, bool keep_log);

/* The last line of the file at p (a clone's log: ember-jailer's or
 * ember's reason when it stopped) in out, or "". */
static void last_line(const char *p, char *out, size_t cap)
{
	FILE *fp = fopen(p, "r");
	char line[512];
	out[0] = 0;
	while (fp && fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\r\n")] = 0;
		if (line[0])
			snprintf(out, cap, "%s", line);
	}
	if (fp)
		fclose(fp);
}

/* A jail that cannot work (a uid or a cgroup setting the host refuses)
 * is told at registration, not at every invocation: one clone is jailed,
 * restored paused, and destroyed. 0, or -1 with the reason in err. */
static int jail_try(struct fn *f, char *err, size_t cap)
{
	struct clone c;
	char why[640];
	if (clone_restore(f, &c, false, why, sizeof(why)) == 0) {
		clone_destroy(&c, false);
		return 0;
	}
	return errf(err, cap, "jail: a clone could not start in it: %s", why);
}

int fn_create(const char *name, const struct fn_config *c, char *err, size_t cap)
{
	if (!fn_name_valid(name))
		return errf(err, cap, "function name: use 1 to %d of A-Z a-z 0-9 _ -", FN_NAME_MAX), 400;
	/* Unix socket paths (108 bytes) of the clones live under the dir: a
	 * jailed clone's at <dir>/jail/<exec-name>/<pid>-<seq>/root/run/api. */
	size_t longest = c->jail.on ? strlen("/jail/") + strlen(exec_name()) + strlen("/4194304-4294967295/root") +
					      strlen(FN_JAIL_API)
				    : 32;
	if (strlen(state_dir) + 1 + strlen(name) + longest > 107)
		return errf(err, cap, "function name: too long for a socket path under %s%s", state_dir,
			    c->jail.on ? " and its jails" : ""), 400;
	if (c->jail.on && !jailer_path[0])
		return errf(err, cap, "jail: ember-fn has no ember-jailer (start it with --jailer PATH)"), 400;
	struct fn *f = calloc(1, sizeof(*f));
	if (!f)
		return errf(err, cap, "out of memory"), 500;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->c = *c;
	snprintf(f->dir, sizeof(f->dir), "%s/%s", state_dir, name);
	pthread_cond_init(&f->changed, NULL);
	pthread_mutex_lock(&lock);
	if (find(name)) {
		pthread_mutex_unlock(&lock);
		free(f);
		return errf(err, cap, "function %s exists (DELETE it first)", name), 409;
	}
	f->state = FN_BUILDING;
	f->next = functions;
	functions = f;
	pthread_mutex_unlock(&lock);

	int r = mkdir(f->dir, 0700) < 0 && errno != EEXIST ? errf(err, cap, "cannot create %s: %s", f->dir,
								    strerror(errno))
							      : build_template(f, err, cap);
	int status = r < 0 ? 500 : 204;
	if (r == 0 && f->c.jail.on && jail_try(f, err, cap) < 0)
		r = -1, status = 400;
	pthread_mutex_lock(&lock);
	if (r < 0) {
		/* Nothing half-made stays but the logs the error names (the
		 * template's, a trial clone's). */
		static const char *const made[] = { "template.mem", "template.mem.ws", "template.state",
						    "template.json", FN_SCRATCH, FN_ROOTFS };
		char p[PATH_MAX], base[PATH_MAX];
		for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
			path(p, f->dir, made[i]);
			unlink(p);
		}
		jail_base(f->dir, base);
		path(p, base, exec_name());
		rmdir(p);
		rmdir(base);
		unlink_from_list(f);
		pthread_cond_destroy(&f->changed);
		free(f);
	} else {
		f->state = FN_READY;
		if (f->c.pool_size) {
			f->pool = calloc(f->c.pool_size, sizeof(*f->pool));
			f->has_filler = f->pool && pthread_create(&f->filler, NULL, pool_filler, f) == 0;
			if (!f->has_filler)
				snprintf(f->pool_error, sizeof(f->pool_error), "cannot start the pool");
		}
	}
	pthread_mutex_unlock(&lock);
	return status;
}

/* Kill a clone and remove its files (a jailed clone's jail and cgroups
 * through ember-jailer --cleanup); keep_log leaves its log for whoever
 * looks into a failure. */
static void clone_destroy(struct clone *c, bool keep_log)
{
	fn_vmm_kill(c->pid);
	if (c->tap[0])
		tap_remove(c->tap, c->tap_rec);
	if (c->jailed) {
		char base[PATH_MAX], fn_dir[PATH_MAX];
		pathf(fn_dir, "%s", c->log);
		*strrchr(fn_dir, '/') = 0; /* the log is <function dir>/<id>.log */
		jail_base(fn_dir, base);
		const char *argv[] = { jailer_path, "--cleanup", "--id", c->id, "--exec-file", ember_path,
				       "--chroot-base-dir", base, NULL };
		/* The root ember-fn staged: ember-jailer's --cleanup cannot know
		 * it was not there before the jailer ran, nor need it. */
		if (fn_run(argv, c->log) < 0) {
			remove_tree(c->dir, 2);
			char id_dir[PATH_MAX];
			pathf(id_dir, "%s", c->dir);
			*strrchr(id_dir, '/') = 0;
			rmdir(id_dir);
		}
		if (!keep_log)
			unlink(c->log);
		return;
	}
	unlink(c->api);
	unlink(c->vs);
	char img[PATH_MAX];
	path(img, c->dir, FN_SCRATCH);
	unlink(img);
	if (!keep_log) {
		unlink(c->log);
		rmdir(c->dir);
	}
}

/* mkdir that takes an existing directory. */
static int mkdir_have(const char *p)
{
	return mkdir(p, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* A jailed clone's root, staged before ember-jailer runs (it keeps what
 * it finds there): hard links of the files every clone shares, and the
 * clone's own copy of the scratch image, owned by the jail's user. */
static int jail_stage(struct fn *f, struct clone *c, char *err, size_t cap)
{
	char base[PATH_MAX], p[PATH_MAX], src[PATH_MAX];
	jail_base(f->dir, base);
	pathf(p, "%s/%s", base, exec_name());
	if (mkdir_have(base) < 0 || mkdir_have(p) < 0)
		return errf(err, cap, "cannot create %s: %s", p, strerror(errno));
	pathf(p, "%s/%s/%s", base, exec_name(), c->id);
	if (mkdir(p, 0700) < 0 || mkdir(c->dir, 0700) < 0)
		return errf(err, cap, "cannot create %s: %s", c->dir, strerror(errno));
	static const char *const shared[] = { "template.state", "template.mem", FN_ROOTFS };
	for (size_t i = 0; i < 3; i++) {
		path(src, f->dir, shared[i]);
		path(p, c->dir, shared[i]);
		if (link(src, p) < 0)
			return errf(err, cap, "cannot link %s into the jail %s: %s", src, c->dir, strerror(errno));
	}
	path(src, f->dir, FN_SCRATCH);
	path(p, c->dir, FN_SCRATCH);
	if (copy_sparse(src, p, err, cap) < 0)
		return -1;
	if (chown(p, f->c.jail.uid, f->c.jail.gid) < 0)
		return errf(err, cap, "cannot give %s to %u:%u: %s", p, f->c.jail.uid, f->c.jail.gid, strerror(errno));
	return 0;
}

/* Restore a clone of f's template, running or (for the pool) paused.
 * 0, or -1 with the reason in err (the clone's log is then kept).
 * The clone's ember runs in a directory of its own (its jail's root when
 * the function has a jail), which holds its own copy of the template's
 * scratch image: the snapshot names that drive by a relative path, so
 * the restore opens the copy, and the template's image is never opened
 * by a clone at all (only read here, to copy it). */
static int clone_restore(struct fn *f, struct clone *c, bool resume, char *err, size_t cap)
{
	char st[PATH_MAX], mem[PATH_MAX], base[PATH_MAX];
	unsigned seq = atomic_fetch_add(&clone_seq, 1);
	*c = (struct clone){ .pid = -1, .jailed = f->c.jail.on };
	const char *argv[20 + 2 * FN_CGROUPS_MAX];
	size_t n = 0;
	if (c->jailed) {
		/* Unique on the host: cgroups are named by it. */
		snprintf(c->id, sizeof(c->id), "%d-%u", (int)getpid(), seq);
		jail_base(f->dir, base);
		pathf(c->dir, "%s/%s/%s/root", base, exec_name(), c->id);
		pathf(c->api, "%s%s", c->dir, FN_JAIL_API);
		pathf(c->vs, "%s%s", c->dir, FN_JAIL_VSOCK);
		pathf(c->log, "%s/%s.log", f->dir, c->id);
		snprintf(st, sizeof(st), "/template.state");
		snprintf(mem, sizeof(mem), "/template.mem");
	} else {
		snprintf(c->dir, sizeof(c->dir), "%s/c%u", f->dir, seq);
		path(c->api, c->dir, "api");
		path(c->vs, c->dir, "vsock");
		path(c->log, c->dir, "log");
		path(st, f->dir, "template.state");
		path(mem, f->dir, "template.mem");
		argv[n++] = ember_path, argv[n++] = "--api-sock", argv[n++] = c->api;
	}
	char uid[12], gid[12], cgv[4];
	if (c->jailed) {
		snprintf(uid, sizeof(uid), "%u", f->c.jail.uid);
		snprintf(gid, sizeof(gid), "%u", f->c.jail.gid);
		snprintf(cgv, sizeof(cgv), "%u", f->c.jail.cgroup_version);
		const char *head[] = { jailer_path, "--id", c->id, "--exec-file", ember_path, "--uid", uid, "--gid", gid,
				       "--chroot-base-dir", base, "--cgroup-version", cgv };
		for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
			argv[n++] = head[i];
		for (unsigned i = 0; i < f->c.jail.ncgroups; i++)
			argv[n++] = "--cgroup", argv[n++] = f->c.jail.cgroups[i];
		argv[n++] = "--", argv[n++] = "--api-sock", argv[n++] = FN_JAIL_API;
		if (jail_stage(f, c, err, cap) < 0) {
			clone_destroy(c, false);
			return -1;
		}
	} else {
		if (mkdir(c->dir, 0700) < 0)
			return errf(err, cap, "cannot create %s: %s", c->dir, strerror(errno));
		char img[PATH_MAX], copy[PATH_MAX];
		path(img, f->dir, FN_SCRATCH);
		path(copy, c->dir, FN_SCRATCH);
		if (copy_sparse(img, copy, err, cap) < 0) {
			clone_destroy(c, false);
			return -1;
		}
	}
	argv[n] = NULL;
	char nets[128] = "";
	if (f->c.network) {
		pathf(c->tap_rec, "%s.tap", c->jailed ? c->log : c->dir);
		if (tap_make(c->tap, f->c.jail.on ? f->c.jail.uid : 0, f->c.jail.gid, c->tap_rec, err, cap) < 0) {
			clone_destroy(c, false);
			return -1;
		}
		snprintf(nets, sizeof(nets), ",\"network_overrides\":[{\"iface_id\":\"%s\",\"host_dev_name\":\"%s\"}]",
			 FN_IFACE, c->tap);
	}
	long long deadline = fn_now_ms() + FN_RESTORE_TIMEOUT_MS;
	c->pid = fn_vmm_start(argv, c->dir, c->api, c->log);
	char reply[512] = "";
	char load[4 * PATH_MAX];
	snprintf(load, sizeof(load),
		 "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"%s\"},"
		 "\"vsock_override\":{\"uds_path\":\"%s\"},\"resume_vm\":%s%s}",
		 st, mem, c->jailed ? FN_JAIL_VSOCK : c->vs, resume ? "true" : "false", nets);
	if (c->pid < 0 || fn_vmm_wait_api(c->api, c->pid, deadline) < 0 ||
	    fn_vmm_request(c->api, "PUT", "/snapshot/load", load, deadline, reply, sizeof(reply)) != 204) {
		/* Its ember's (or ember-jailer's) last word, before the kill
		 * and the cleanup add theirs. */
		char last[512];
		last_line(c->log, last, sizeof(last));
		clone_destroy(c, true);
		return errf(err, cap, "the clone did not restore: %s (clone log: %s, which ends: %s)",
			    reply[0] ? reply : "no answer", c->log, last[0] ? last : "(nothing)");
	}
	return 0;
}

/* Hand the request to a running clone's agent; fills a. */
static void clone_invoke(struct fn *f, struct clone *c, const void *body, size_t len, long long t0,
			 struct fn_answer *a)
{
	const char *why = NULL;
	long long t = now_us();
	int fd = agent_connect(c->vs, FN_AGENT_PORT, FN_RESTORE_TIMEOUT_MS, &why);
	a->connect_us = (uint32_t)(now_us() - t);
	if (fd < 0) {
		snprintf(a->error, sizeof(a->error), "the clone's agent: %s", why);
		return;
	}
	a->restore_ms = fn_now_ms() - t0;
	struct agent_reply rep;
	static atomic_uint ids;
	t = now_us();
	int r = agent_invoke(fd, atomic_fetch_add(&ids, 1) + 1, f->c.timeout_ms, body, len, FN_ANSWER_SLACK_MS, &rep,
			     &why);
	a->agent_us = (uint32_t)(now_us() - t);
	close(fd);
	if (r < 0 && a->agent_us / 1000 >= f->c.timeout_ms + (uint32_t)FN_ANSWER_SLACK_MS) {
		/* No answer by the timeout and the slack after it: the handler
		 * certainly ran past its timeout; that the guest was too slow
		 * to say so (a stalled host) changes nothing for the caller. */
		a->http_status = 504;
		a->agent_status = agent_status_name(AGENT_TIMEOUT);
		snprintf(a->error, sizeof(a->error),
			 "the handler ran past the timeout (%u ms); the clone's agent did not answer within %d ms after it, and the clone was destroyed",
			 f->c.timeout_ms, FN_ANSWER_SLACK_MS);
		return;
	}
	if (r < 0) {
		snprintf(a->error, sizeof(a->error), "the clone's agent: %s", why);
		return;
	}
	if (rep.is_error) {
		snprintf(a->error, sizeof(a->error), "the clone's agent refused the request: %s", rep.error_text);
		agent_reply_free(&rep);
		return;
	}
	a->agent_status = agent_status_name(rep.res.status);
	a->code = rep.res.code;
	a->handler_us = rep.res.duration_us;
	switch (rep.res.status) {
	case AGENT_OK:
	case AGENT_EXIT:
		a->output = malloc(rep.res.output_len + 1);
		if (a->output) {
			a->http_status = 200;
			memcpy(a->output, rep.res.output, rep.res.output_len);
			a->output_len = rep.res.output_len;
		} else {
			a->http_status = 500;
			snprintf(a->error, sizeof(a->error), "out of memory");
		}
		break;
	case AGENT_TIMEOUT:
		a->http_status = 504;
		snprintf(a->error, sizeof(a->error), "the handler ran past the timeout (%u ms) and was killed",
			 f->c.timeout_ms);
		break;
	case AGENT_SIGNAL:
		snprintf(a->error, sizeof(a->error), "the handler was killed by signal %d", rep.res.code);
		break;
	case AGENT_TOO_LARGE:
		snprintf(a->error, sizeof(a->error), "the handler's output passed %u bytes", AGENT_MAX_BODY);
		break;
	case AGENT_DIED:
		if (rep.res.code < 0)
			snprintf(a->error, sizeof(a->error), "the stream handler broke the framing");
		else
			snprintf(a->error, sizeof(a->error), "the stream handler ended (status %d)",
				 rep.res.code);
		break;
	default:
		snprintf(a->error, sizeof(a->error), "the handler could not start: %s", strerror(rep.res.code));
		break;
	}
	agent_reply_free(&rep);
}

/* Keep c, which just answered 200, among f's warm clones (paused: an
 * idle warm clone then costs the host no CPU, and is resumed like a pooled
 * one). false when there is no room, f is going, or the pause failed:
 * then the caller destroys it. */
static bool clone_keep(struct fn *f, struct clone *c)
{
	pthread_mutex_lock(&lock);
	bool room = f->state == FN_READY && f->nwarm < f->c.max_warm;
	pthread_mutex_unlock(&lock);
	if (!room || fn_vmm_request(c->api, "PATCH", "/vm", "{\"state\":\"Paused\"}",
				    fn_now_ms() + FN_RESTORE_TIMEOUT_MS, NULL, 0) != 204)
		return false;
	pthread_mutex_lock(&lock);
	room = f->state == FN_READY && f->nwarm < f->c.max_warm;
	if (room)
		f->warm[f->nwarm++] = *c;
	pthread_mutex_unlock(&lock);
	return room;
}

/* One invocation: a warm clone, else one from the pool (either resumed),
 * else a new one; the request; the clone destroyed, or kept warm. */
static void run_clone(struct fn *f, const void *body, size_t len, struct fn_answer *a)
{
	long long t0 = fn_now_ms();
	struct clone c;
	pthread_mutex_lock(&lock);
	a->reused = f->nwarm > 0;
	a->pooled = !a->reused && f->npool > 0;
	if (a->reused) {
		c = f->warm[--f->nwarm];
	} else if (a->pooled) {
		c = f->pool[--f->npool];
		pthread_cond_broadcast(&f->changed); /* the filler makes another */
	}
	pthread_mutex_unlock(&lock);
	a->http_status = 502;
	/* A paused clone that does not resume (it died while it waited) is
	 * dropped, and a new one restored instead. */
	long long t = now_us();
	if ((a->pooled || a->reused) && fn_vmm_request(c.api, "PATCH", "/vm", "{\"state\":\"Resumed\"}",
						       fn_now_ms() + FN_RESTORE_TIMEOUT_MS, NULL, 0) != 204) {
		clone_destroy(&c, false);
		a->pooled = a->reused = false;
	}
	a->resume_us = a->pooled || a->reused ? (uint32_t)(now_us() - t) : 0;
	if (!a->pooled && !a->reused) {
		t = now_us();
		if (clone_restore(f, &c, true, a->error, sizeof(a->error)) < 0)
			goto done;
		a->load_us = (uint32_t)(now_us() - t);
		pthread_mutex_lock(&lock);
		f->restores++;
		pthread_mutex_unlock(&lock);
	}
	clone_invoke(f, &c, body, len, t0, a);
	bool failed = a->http_status == 502 || a->http_status == 500;
	if (failed) {
		size_t n = strlen(a->error);
		snprintf(a->error + n, sizeof(a->error) - n, " (clone log: %s)", c.log);
	}
	/* Only a clone that answered is kept: one that timed out, failed or
	 * lost its ember is never handed another request. */
	if (a->http_status == 200 && f->c.reuse && clone_keep(f, &c))
		goto done;
	t = now_us();
	clone_destroy(&c, failed);
	a->destroy_us = (uint32_t)(now_us() - t);
done:
	a->total_ms = fn_now_ms() - t0;
}

/* Keeps f's pool of paused clones full until f is deleted. */
static void *pool_filler(void *arg)
{
	struct fn *f = arg;
	pthread_mutex_lock(&lock);
	while (f->state != FN_DELETING) {
		if (f->npool >= f->c.pool_size) {
			pthread_cond_wait(&f->changed, &lock);
			continue;
		}
		pthread_mutex_unlock(&lock);
		struct clone c;
		char err[640];
		int r = clone_restore(f, &c, false, err, sizeof(err));
		pthread_mutex_lock(&lock);
		if (r < 0) {
			f->pool_failures++;
			snprintf(f->pool_error, sizeof(f->pool_error), "%s", err);
			/* Not in a loop as fast as restores fail. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&f->changed, &lock, &ts);
			continue;
		}
		if (f->state == FN_DELETING) {
			pthread_mutex_unlock(&lock);
			clone_destroy(&c, false);
			pthread_mutex_lock(&lock);
			break;
		}
		f->pool[f->npool++] = c;
		f->restores++;
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

void fn_invoke(const char *name, const void *body, size_t len, struct fn_answer *a)
{
	*a = (struct fn_answer){ .http_status = 404 };
	pthread_mutex_lock(&lock);
	struct fn *f = find(name);
	if (!f || f->state != FN_READY) {
		snprintf(a->error, sizeof(a->error), "no function %s%s", name,
			 f && f->state == FN_BUILDING ? " yet (its template is being built)" : "");
		pthread_mutex_unlock(&lock);
		return;
	}
	if (f->running >= f->c.max_concurrency) {
		if (f->queued >= f->c.max_queued) {
			f->refused++;
			a->http_status = 429;
			snprintf(a->error, sizeof(a->error), "%s: %u invocations running and %u waiting, the limits",
				 name, f->running, f->queued);
			pthread_mutex_unlock(&lock);
			return;
		}
		f->queued++;
		while (f->running >= f->c.max_concurrency && f->state == FN_READY)
			pthread_cond_wait(&f->changed, &lock);
		f->queued--;
		if (f->state != FN_READY) {
			snprintf(a->error, sizeof(a->error), "function %s was deleted while this invocation waited", name);
			pthread_cond_broadcast(&f->changed);
			pthread_mutex_unlock(&lock);
			return;
		}
	}
	f->running++;
	pthread_mutex_unlock(&lock);

	run_clone(f, body, len, a);

	pthread_mutex_lock(&lock);
	f->running--;
	f->invocations++;
	f->reuses += a->reused;
	if (a->http_status == 504)
		f->timeouts++;
	else if (a->http_status != 200)
		f->failures++;
	f->latency_ms[f->next_latency] = (uint32_t)a->total_ms;
	f->next_latency = (f->next_latency + 1) % FN_LATENCIES;
	if (f->nlatency < FN_LATENCIES)
		f->nlatency++;
	pthread_cond_broadcast(&f->changed);
	pthread_mutex_unlock(&lock);
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return a < b ? -1 : a > b;
}

/* The counts GET /functions/{name} and GET /metrics both give, under the
 * same keys: f's, or (f NULL) the total of every function, deleted ones
 * included for the counters. Called with lock held. */
static void add_counts(cJSON *o, const struct fn *f)
{
	unsigned long long inv = 0, fail = 0, to = 0, ref = 0, res = 0, reu = 0;
	unsigned running = 0, queued = 0, pool = 0, warm = 0;
	if (!f) {
		inv = gone_invocations, fail = gone_failures, to = gone_timeouts, ref = gone_refused;
		res = gone_restores, reu = gone_reuses;
	}
	for (const struct fn *g = f ? f : functions; g; g = f ? NULL : g->next) {
		inv += g->invocations, fail += g->failures, to += g->timeouts, ref += g->refused;
		res += g->restores, reu += g->reuses;
		running += g->running, queued += g->queued, pool += g->npool, warm += g->nwarm;
	}
	cJSON_AddNumberToObject(o, "running", running);
	cJSON_AddNumberToObject(o, "queued", queued);
	cJSON_AddNumberToObject(o, "invocations", (double)inv);
	cJSON_AddNumberToObject(o, "failures", (double)fail);
	cJSON_AddNumberToObject(o, "timeouts", (double)to);
	cJSON_AddNumberToObject(o, "refused", (double)ref);
	cJSON_AddNumberToObject(o, "pool", pool);
	cJSON_AddNumberToObject(o, "warm", warm);
	cJSON_AddNumberToObject(o, "restores", (double)res);
	cJSON_AddNumberToObject(o, "reuses", (double)reu);
}

char *fn_metrics(void)
{
	static const char *const states[] = { "building", "ready", "deleting" };
	cJSON *o = cJSON_CreateObject(), *fns = cJSON_AddObjectToObject(o, "functions");
	pthread_mutex_lock(&lock);
	for (const struct fn *f = functions; f; f = f->next) {
		cJSON *one = cJSON_AddObjectToObject(fns, f->name);
		cJSON_AddStringToObject(one, "state", states[f->state]);
		add_counts(one, f);
	}
	add_counts(cJSON_AddObjectToObject(o, "total"), NULL);
	pthread_mutex_unlock(&lock);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

char *fn_describe(const char *name)
{
	pthread_mutex_lock(&lock);
	struct fn *f = find(name);
	if (!f) {
		pthread_mutex_unlock(&lock);
		return NULL;
	}
	static const char *const states[] = { "building", "ready", "deleting" };
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", f->name);
	cJSON_AddStringToObject(o, "state", states[f->state]);
	cJSON_AddStringToObject(o, "handler", f->c.handler);
	cJSON_AddStringToObject(o, "handler_mode", f->c.stream ? "stream" : "process");
	cJSON_AddNumberToObject(o, "vcpu_count", f->c.vcpus);
	cJSON_AddNumberToObject(o, "mem_size_mib", f->c.mem_mib);
	cJSON_AddNumberToObject(o, "timeout_ms", f->c.timeout_ms);
	cJSON_AddNumberToObject(o, "max_concurrency", f->c.max_concurrency);
	cJSON_AddNumberToObject(o, "max_queued", f->c.max_queued);
	cJSON_AddNumberToObject(o, "pool_size", f->c.pool_size);
	cJSON_AddStringToObject(o, "clone_policy", f->c.reuse ? "reuse" : "destroy");
	cJSON_AddNumberToObject(o, "max_warm", f->c.max_warm);
	cJSON_AddBoolToObject(o, "network", f->c.network);
	add_counts(o, f);
	cJSON_AddNumberToObject(o, "pool_failures", (double)f->pool_failures);
	if (f->pool_error[0])
		cJSON_AddStringToObject(o, "pool_error", f->pool_error);
	uint32_t sorted[FN_LATENCIES];
	unsigned n = f->nlatency;
	memcpy(sorted, f->latency_ms, n * sizeof(sorted[0]));
	pthread_mutex_unlock(&lock);
	qsort(sorted, n, sizeof(sorted[0]), cmp_u32);
	cJSON *lat = cJSON_AddObjectToObject(o, "latency_ms");
	static const struct { const char *key; unsigned pct; } ps[] = { { "p50", 50 }, { "p90", 90 }, { "p99", 99 } };
	for (size_t i = 0; i < 3; i++) {
		if (n)
			cJSON_AddNumberToObject(lat, ps[i].key, sorted[(n - 1) * ps[i].pct / 100]);
		else
			cJSON_AddNullToObject(lat, ps[i].key);
	}
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* Remove dir's files, and its subdirectories' (the logs failed clones
 * kept) depth levels down, then dir. */
static void remove_tree(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[PATH_MAX];
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			if (depth > 0)
				remove_tree(p, depth - 1);
		} else {
			unlink(p);
		}
	}
	closedir(d);
	rmdir(dir);
}

void fn_sweep(void)
{
	DIR *d = opendir(state_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char fn_dir[PATH_MAX], jails[PATH_MAX], base[PATH_MAX];
		if (e->d_name[0] == '.' || e->d_type != DT_DIR)
			continue;
		path(fn_dir, state_dir, e->d_name);
		jail_base(fn_dir, base);
		path(jails, base, exec_name());
		DIR *j = jailer_path[0] ? opendir(jails) : NULL;
		struct dirent *id;
		while (j && (id = readdir(j))) {
			if (id->d_name[0] == '.')
				continue;
			const char *argv[] = { jailer_path, "--cleanup", "--id", id->d_name, "--exec-file", ember_path,
					       "--chroot-base-dir", base, NULL };
			fprintf(stderr, "ember-fn: removing the jail %s/%s left by an earlier run\n", jails, id->d_name);
			fn_run(argv, "/dev/null");
		}
		if (j)
			closedir(j);
		/* The taps, each named in a *.tap file in fn_dir or (a clone
		 * without a jail) in fn_dir/c<n>.tap. */
		DIR *t = opendir(fn_dir);
		struct dirent *te;
		while (t && (te = readdir(t))) {
			size_t len = strlen(te->d_name);
			if (len < 5 || strcmp(te->d_name + len - 4, ".tap") != 0)
				continue;
			char rec[PATH_MAX], name[IFNAMSIZ] = "";
			path(rec, fn_dir, te->d_name);
			FILE *fp = fopen(rec, "r");
			if (fp && fgets(name, sizeof(name), fp)) {
				fprintf(stderr, "ember-fn: removing the tap %s left by an earlier run\n", name);
				tap_remove(name, rec);
			}
			if (fp)
				fclose(fp);
		}
		if (t)
			closedir(t);
		remove_tree(fn_dir, 2);
	}
	if (d)
		closedir(d);
}

int fn_delete(const char *name)
{
	pthread_mutex_lock(&lock);
	struct fn *f = find(name);
	if (!f || f->state != FN_READY) {
		pthread_mutex_unlock(&lock);
		return 404;
	}
	f->state = FN_DELETING;
	pthread_cond_broadcast(&f->changed);
	while (f->running || f->queued)
		pthread_cond_wait(&f->changed, &lock);
	unlink_from_list(f);
	gone_invocations += f->invocations, gone_failures += f->failures, gone_timeouts += f->timeouts;
	gone_refused += f->refused, gone_restores += f->restores, gone_reuses += f->reuses;
	pthread_mutex_unlock(&lock);
	if (f->has_filler)
		pthread_join(f->filler, NULL);
	for (unsigned i = 0; i < f->npool; i++)
		clone_destroy(&f->pool[i], false);
	for (unsigned i = 0; i < f->nwarm; i++)
		clone_destroy(&f->warm[i], false);
	free(f->pool);
	remove_tree(f->dir, 2); /* with jail/<exec-name>/ */
	pthread_cond_destroy(&f->changed);
	free(f);
	return 204;
}
