/* ember-fn's functions: a registry of named functions, each with its
 * template snapshot (a booted guest whose agent is ready, paused and
 * snapshotted once) and the clones restored from it per invocation.
 * Thread-safe: the API threads call these concurrently. */
#ifndef EMBER_FN_FUNCTION_H
#define EMBER_FN_FUNCTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FN_NAME_MAX 64
#define FN_CMD_MAX 512
#define FN_POOL_MAX 16
/* env: at most FN_ENV_VARS variables, names up to FN_ENV_NAME_MAX bytes,
 * all of them together (NAME=VALUE\0 each) up to FN_ENV_MAX bytes. */
#define FN_ENV_VARS 64
#define FN_ENV_NAME_MAX 64
#define FN_ENV_MAX 16384

/* jail: each clone's ember run by ember-jailer as uid:gid, chrooted, in
 * cgroups of its own with these limits (each "FILE=VALUE", ember-jailer's
 * --cgroup). */
#define FN_CGROUPS_MAX 16
#define FN_CGROUP_MAX 160
struct fn_jail {
	bool on;
	unsigned uid, gid;
	unsigned cgroup_version; /* 1 or 2 */
	char cgroups[FN_CGROUPS_MAX][FN_CGROUP_MAX];
	unsigned ncgroups;
};

struct fn_config {
	char kernel[256], rootfs[256];
	char handler[FN_CMD_MAX], init[FN_CMD_MAX];
	char env[FN_ENV_MAX];     /* NAME=VALUE\0 for each variable */
	size_t env_len;
	unsigned vcpus, mem_mib;
	unsigned timeout_ms;      /* per invocation */
	unsigned max_concurrency; /* invocations at once */
	unsigned max_queued;      /* waiting beyond those; more are refused */
	unsigned boot_timeout_s;  /* for the template's agent to get ready */
	unsigned pool_size;       /* paused clones kept ready (0..FN_POOL_MAX) */
	bool stream;              /* handler_mode "stream": one long-lived handler */
	bool reuse;               /* clone_policy "reuse": keep a clone that answered */
	unsigned max_warm;        /* such clones kept (1..FN_POOL_MAX) */
	bool network;             /* a tap per clone (the guest's eth0) */
	struct fn_jail jail;
};

/* The state directory's longest path: the Unix sockets of the clones
 * (108 bytes at most) are made under it. */
#define FN_STATE_DIR_MAX 40

/* Where ember-fn keeps its files, which ember it runs and which
 * ember-jailer jails it (NULL: none, and functions with a jail are
 * refused): 0, or -1 when state_dir is longer than FN_STATE_DIR_MAX. */
int fn_setup(const char *state_dir, const char *ember, const char *jailer);

/* Remove what an earlier ember-fn left in the state directory (its
 * functions are not kept across runs): each jail through ember-jailer
 * --cleanup, which removes its cgroups too, then the files. */
void fn_sweep(void);

/* Parse a PUT /functions/{name} body into c. 0, or -1 with err set. */
int fn_config_parse(const char *json, size_t len, struct fn_config *c, char *err, size_t cap);

/* Whether name is a valid function name ([A-Za-z0-9_-], 1..FN_NAME_MAX). */
int fn_name_valid(const char *name);

/* Register name and build its template (boots a guest: takes as long as
 * a boot). Returns an HTTP status: 204, or 400/409/500 with err set. */
int fn_create(const char *name, const struct fn_config *c, char *err, size_t cap);

/* The outcome of one invocation. */
struct fn_answer {
	int http_status;          /* 200, 404, 429, 502, 504 */
	char error[640];          /* why, when not 200 */
	const char *agent_status; /* the agent's status name, or NULL */
	bool pooled;              /* served by a clone from the pool */
	bool reused;              /* served by a warm clone (clone_policy "reuse") */
	int code;
	uint32_t handler_us;
	long long restore_ms, total_ms;
	/* Where the time went, in microseconds (0 for a step not taken):
	 * load_us starting a clone's ember and loading the template into it
	 * (resumed: a clone restored for this invocation); resume_us resuming
	 * a pooled paused clone; connect_us connecting to its agent (until its
	 * READY); agent_us the INVOKE-to-RESULT round trip (handler_us of it
	 * in the handler); destroy_us killing the clone. */
	uint32_t load_us, resume_us, connect_us, agent_us, destroy_us;
	uint8_t *output;          /* malloc'd; free it */
	size_t output_len;
};

/* Invoke name with body: resume a warm clone (clone_policy "reuse"), or
 * else one from the function's pool, or else restore one from the
 * template; hand it the request; then destroy the clone, or, under
 * "reuse" when it answered 200 and fewer than max_warm are kept, pause it
 * and keep it warm. Waits in the queue (max_queued) while max_concurrency
 * invocations run; never waits past the function's timeout plus the
 * restore's bound once it runs. */
void fn_invoke(const char *name, const void *body, size_t len, struct fn_answer *a);

/* GET /functions/{name}'s JSON (malloc'd), or NULL if there is none. */
char *fn_describe(const char *name);

/* GET /metrics's JSON (malloc'd): every function's counts and the total
 * (which keeps the counts of deleted functions), or NULL without memory. */
char *fn_metrics(void);

/* Remove name once its invocations have finished: 204 or 404. */
int fn_delete(const char *name);

#endif
