/* ember-fn's functions: see function.h. */
#include "function.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
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
 * answer CONNECT (the restore itself takes milliseconds). */
#define FN_RESTORE_TIMEOUT_MS 10000
/* An answer may follow the handler's timeout by this much. */
#define FN_ANSWER_SLACK_MS 5000
/* The scratch drive: the function's definition and the overlay's upper
 * layer (rootfs/agent.c). Its name is relative on purpose: each ember
 * opens it in its own working directory (see clone_restore). */
#define FN_SCRATCH "scratch.ext4"
#define FN_SCRATCH_MIB 64

enum fn_state { FN_BUILDING, FN_READY, FN_DELETING };

/* One clone: an ember restored from its function's template. */
struct clone {
	pid_t pid;
	char dir[FN_STATE_DIR_MAX + FN_NAME_MAX + 20];
	char api[PATH_MAX], vs[PATH_MAX], log[PATH_MAX];
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
static char state_dir[FN_STATE_DIR_MAX + 1], ember_path[PATH_MAX];
static atomic_uint clone_seq;
/* The counts of deleted functions, for GET /metrics's total. */
static unsigned long long gone_invocations, gone_failures, gone_timeouts, gone_refused, gone_restores, gone_reuses;

int fn_setup(const char *dir, const char *ember)
{
	if (strlen(dir) > FN_STATE_DIR_MAX)
		return -1;
	snprintf(state_dir, sizeof(state_dir), "%s", dir);
	/* Absolute: the VMMs start in directories of their own. */
	if (!realpath(ember, ember_path))
		snprintf(ember_path, sizeof(ember_path), "%s", ember);
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

int fn_config_parse(const char *json, size_t len, struct fn_config *c, char *err, size_t cap)
{
	static const char *const keys[] = { "kernel_image_path", "rootfs_path", "handler", "init", "vcpu_count",
					    "mem_size_mib", "timeout_ms", "max_concurrency", "max_queued",
					    "boot_timeout_s", "pool_size", "env", "handler_mode",
					    "clone_policy", "max_warm", NULL };
	*c = (struct fn_config){ .vcpus = 1, .mem_mib = 128, .timeout_ms = 30000, .max_concurrency = 4,
				 .boot_timeout_s = 600 };
	cJSON *o = cJSON_ParseWithLength(json, len);
	char mode[16] = "process";
	int r = -1;
	if (!o || !cJSON_IsObject(o)) {
		errf(err, cap, "the body must be a JSON object");
		goto out;
	}
	for (const cJSON *it = o->child; it; it = it->next) {
		size_t i = 0;
		while (keys[i] && strcmp(keys[i], it->string) != 0)
			i++;
		if (!keys[i]) {
			errf(err, cap, "unknown field: %s", it->string);
			goto out;
		}
	}
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
	    get_uint(o, "pool_size", &c->pool_size, 0, FN_POOL_MAX, err, cap) || get_env(o, c, err, cap))
		goto out;
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

static void path(char *out, const char *dir, const char *file)
{
	snprintf(out, PATH_MAX, "%s/%s", dir, file);
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
	cJSON_AddStringToObject(drive, "path_on_host", f->c.rootfs);
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
	cJSON *v = cJSON_AddObjectToObject(o, "vsock");
	cJSON_AddNumberToObject(v, "guest_cid", 3);
	cJSON_AddStringToObject(v, "uds_path", vs);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	int wrote = text && write_file(cfg, text, strlen(text)) == 0;
	free(text);
	if (!wrote)
		return errf(err, cap, "cannot write %s", cfg);

	const char *extra[] = { "--config-file", cfg, NULL };
	long long deadline = fn_now_ms() + (long long)f->c.boot_timeout_s * 1000;
	pid_t pid = fn_vmm_start(ember_path, f->dir, api, log, extra);
	if (pid < 0)
		return errf(err, cap, "cannot start %s: %s", ember_path, strerror(errno));
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
	r = 0;
out:
	fn_vmm_kill(pid);
	unlink(api);
	unlink(vs);
	return r;
}

static void *pool_filler(void *arg);

int fn_create(const char *name, const struct fn_config *c, char *err, size_t cap)
{
	if (!fn_name_valid(name))
		return errf(err, cap, "function name: use 1 to %d of A-Z a-z 0-9 _ -", FN_NAME_MAX), 400;
	/* Unix socket paths (108 bytes) of the clones live under the dir. */
	if (strlen(state_dir) + strlen(name) + 32 > 107)
		return errf(err, cap, "function name: too long for a socket path under %s", state_dir), 400;
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
	pthread_mutex_lock(&lock);
	if (r < 0) {
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
	return r < 0 ? 500 : 204;
}

/* Kill a clone and remove its files; keep_log leaves its log (and its
 * directory) for whoever looks into a failure. */
static void clone_destroy(struct clone *c, bool keep_log)
{
	fn_vmm_kill(c->pid);
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

/* Restore a clone of f's template, running or (for the pool) paused.
 * 0, or -1 with the reason in err (the clone's files are then kept).
 * The clone's ember runs in the clone's directory, which holds its own
 * copy of the template's scratch image: the snapshot names that drive
 * by a relative path, so the restore opens the copy, and the template's
 * image is never opened by a clone at all (only read here, to copy it). */
static int clone_restore(struct fn *f, struct clone *c, bool resume, char *err, size_t cap)
{
	char st[PATH_MAX], mem[PATH_MAX];
	*c = (struct clone){ .pid = -1 };
	snprintf(c->dir, sizeof(c->dir), "%s/c%u", f->dir, atomic_fetch_add(&clone_seq, 1));
	path(c->api, c->dir, "api");
	path(c->vs, c->dir, "vsock");
	path(c->log, c->dir, "log");
	path(st, f->dir, "template.state");
	path(mem, f->dir, "template.mem");
	if (mkdir(c->dir, 0700) < 0)
		return errf(err, cap, "cannot create %s: %s", c->dir, strerror(errno));
	char img[PATH_MAX], copy[PATH_MAX];
	path(img, f->dir, FN_SCRATCH);
	path(copy, c->dir, FN_SCRATCH);
	if (copy_sparse(img, copy, err, cap) < 0) {
		clone_destroy(c, false);
		return -1;
	}
	long long deadline = fn_now_ms() + FN_RESTORE_TIMEOUT_MS;
	c->pid = fn_vmm_start(ember_path, c->dir, c->api, c->log, NULL);
	char reply[512] = "";
	char load[4 * PATH_MAX];
	snprintf(load, sizeof(load),
		 "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"%s\"},"
		 "\"vsock_override\":{\"uds_path\":\"%s\"},\"resume_vm\":%s}",
		 st, mem, c->vs, resume ? "true" : "false");
	if (c->pid < 0 || fn_vmm_wait_api(c->api, c->pid, deadline) < 0 ||
	    fn_vmm_request(c->api, "PUT", "/snapshot/load", load, deadline, reply, sizeof(reply)) != 204) {
		clone_destroy(c, true);
		return errf(err, cap, "the clone did not restore: %s (clone log: %s)", reply[0] ? reply : "no answer",
			    c->log);
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
	remove_tree(f->dir, 1);
	pthread_cond_destroy(&f->changed);
	free(f);
	return 204;
}
