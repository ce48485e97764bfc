/* The VMM thread's owner of everything VM-related: the configuration (as
 * the config file and the API build it), the instance state, the machine
 * once started, and when metrics are written (metrics.h). API requests
 * arrive as typed actions (action.h) through controller_submit(), which the API thread calls and
 * which waits for the VMM thread to run controller_handle(). */
#ifndef EMBER_CONTROLLER_H
#define EMBER_CONTROLLER_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "action.h"
#include "config.h"
#include "io/evloop.h"
#include "machine.h"
#include "metrics.h"
#include "snapshot/uffd.h"

struct cJSON;

/* NOT_STARTED until InstanceStart or a snapshot load builds the machine;
 * then RUNNING or PAUSED (PATCH /vm). */
enum instance_state { STATE_NOT_STARTED, STATE_RUNNING, STATE_PAUSED };

struct controller {
	struct evloop *loop;
	const char *id;
	bool boot_timer;
	struct timespec start_wall, start_cpu;
	uint64_t startup_us, startup_cpu_us;  /* exec -> API ready */

	struct vmm_config cfg;
	/* The metadata store (PUT|PATCH|GET /mmds), its configuration a copy
	 * of cfg.mmds; the net devices answer the guest from it. */
	struct mmds *mmds;
	/* A request configured what only a boot uses (boot source, machine,
	 * a device), even if it failed: a snapshot load is refused from then
	 * on, as Firecracker refuses it. The logger, metrics and serial are
	 * not among them. */
	bool boot_path;
	enum instance_state state;
	struct machine machine;
	struct evloop_watch stop_watch;       /* the VM asked to stop */
	int exit_code;
	/* A snapshot load failed past its checks of the request: as
	 * Firecracker, ember stops after the answer, with exit_code 1. */
	bool load_failed;

	/* A restore through a page-fault handler: its socket is watched so a
	 * dead handler stops the VM instead of leaving its faults waiting. */
	struct uffd_backend uffd;
	struct evloop_watch uffd_watch;

	/* An action that waits for the devices (a pause, until their
	 * in-flight I/O is done); replied to by controller_finish(). */
	struct action *deferred;
	struct evloop_timer defer_timer;
	uint64_t defer_start_ns;

	/* metrics (metrics.h): the timer runs from InstanceStart or a load */
	struct metrics metrics;
	struct evloop_timer metrics_timer;
	bool metrics_timer_armed;
	void (*api_metrics)(struct cJSON *out); /* the API server's totals, if any */
	uint64_t handle_start_ns;             /* when the VMM thread took the action */
	uint64_t vmm_us;                      /* its time there, under lock */

	/* the action channel from the API thread */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct action *pending;
	bool closed;                          /* controller_close() was called */
	int wake_fd;
	struct evloop_watch wake_watch;

	/* Live migration (migration/migration.h): this VM going to another
	 * ember, or this ember waiting for one; NULL when neither. */
	struct migration_source *migration;
	struct migration_dest *incoming;
};

/* Set up on the VMM thread's loop. Returns 0 or -errno. */
int controller_init(struct controller *c, struct evloop *loop, const char *id, bool boot_timer,
		    const struct timespec *start_wall, const struct timespec *start_cpu);

/* Apply logger and metrics settings (from the config file or the API).
 * As Firecracker, a logger setting without a level sets Info. */
int controller_apply_logger(struct controller *c, const struct logger_config *l, char *err, size_t errlen);
int controller_apply_metrics(struct controller *c, const struct metrics_config *m, char *err, size_t errlen);

/* Build and start the VM from the current configuration. Returns 0, or
 * -errno with the reason in err (nothing is left half-made). */
int controller_start_instance(struct controller *c, char *err, size_t errlen);

/* Run one action (VMM thread). */
void controller_handle(struct controller *c, struct action *a);

/* Reply to an action (VMM thread): done by controller_handle itself unless
 * it deferred the action (c->deferred). */
void controller_finish(struct controller *c, struct action *a);

/* Hand an action to the VMM thread and wait for its reply (API thread).
 * Once the channel is closed it answers 400 at once. */
void controller_submit(struct controller *c, struct action *a);

/* Close the channel (VMM thread, once its loop has ended, whatever ended
 * it): the action waiting for an answer, deferred or not, is answered
 * with 400, and every later controller_submit fails at once; so the API
 * thread can always be stopped after this. */
void controller_close(struct controller *c);

/* Write one metrics line now (VMM thread); nothing if metrics are not
 * set up. Returns 0 or -errno. */
int controller_flush_metrics(struct controller *c);

/* At exit: stop the vCPUs, last metrics, counters in the log. */
void controller_shutdown(struct controller *c);

/* Metrics lines from now on, every period (once the VM exists). */
void controller_metrics_start(struct controller *c);

/* Resume the paused VM (starting its vCPU threads after a restore that
 * did not resume). Returns 0, or -errno with the reason in err. */
int controller_resume(struct controller *c, char *err, size_t errlen);

/* A restore in two steps, for a snapshot load and a migration's
 * destination. Build: the machine for the snapshot's configuration saved
 * with the load's overrides (the result in cfg), its RAM mapped from
 * mem_fd (privately; closed in any case) or anonymous if -1. Finish: put
 * img's state into it and start its devices, paused, then resume if the
 * load asks; a failure destroys the machine (or, once its devices run,
 * stops the VM). Both return 0, or -errno with the reason in err. */
int controller_restore_build(struct controller *c, const struct snapshot_load *l, const struct vmm_config *saved,
			     int mem_fd, struct vmm_config *cfg, char *err, size_t errlen);
struct snapshot_image;
int controller_restore_finish(struct controller *c, const struct snapshot_load *l, const struct snapshot_image *img,
			      const struct vmm_config *cfg, uint64_t t0_ns, char *err, size_t errlen);

#endif
