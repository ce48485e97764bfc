#include "controller.h"

#include <cJSON.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../api/config_json.h"
#include "boot/boot.h"
#include "hostfile.h"
#include "log.h"
#include "mmds/mmds.h"
#include "snapshot/snapfile.h"
#include "snapshot/snapshot.h"
#include "vcpu.h"
#include "version.h"
#include "virtio/balloon.h"
#include "virtio/mem.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/pmem.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"

#define METRICS_PERIOD_NS (60ULL * 1000000000ULL) /* as Firecracker: once a minute */

/* ---- replies -------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void reply_error(struct action *a, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->fault, sizeof(a->fault), fmt, ap);
	va_end(ap);
	a->status = status;
}

static void reply_json(struct action *a, cJSON *obj)
{
	a->body = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	a->status = a->body ? 200 : 500;
	if (!a->body)
		snprintf(a->fault, sizeof(a->fault), "out of memory");
}

static const char *state_name(enum instance_state s)
{
	return s == STATE_RUNNING ? "Running" : s == STATE_PAUSED ? "Paused" : "Not started";
}

static bool pre_boot(struct controller *c, struct action *a)
{
	if (c->state == STATE_NOT_STARTED)
		return true;
	reply_error(a, 400, "The requested operation is not supported after starting the microVM.");
	return false;
}

/* pre_boot() for what only a boot uses: a snapshot load is refused after. */
static bool boot_config(struct controller *c, struct action *a)
{
	if (!pre_boot(c, a))
		return false;
	c->boot_path = true;
	return true;
}

static bool post_boot(struct controller *c, struct action *a)
{
	if (c->state != STATE_NOT_STARTED)
		return true;
	reply_error(a, 400, "The requested operation is not supported before starting the microVM.");
	return false;
}

/* Before the start the store is always there; after it, only for a VM
 * whose MMDS was configured (Firecracker's store lives in the net devices). */
static bool mmds_usable(struct controller *c, struct action *a)
{
	if (c->state == STATE_NOT_STARTED || c->cfg.mmds.set)
		return true;
	reply_error(a, 400, "MMDS error: The MMDS data store is not initialized.");
	return false;
}

static void handle_mmds(struct controller *c, struct action *a)
{
	int ret = 0;
	switch (a->type) {
	case ACTION_GET_MMDS:
		if (!mmds_usable(c, a))
			return;
		if (!(a->body = mmds_get(c->mmds)))
			reply_error(a, 500, "out of memory");
		else
			a->status = 200;
		return;
	case ACTION_PUT_MMDS:
	case ACTION_PATCH_MMDS:
		if (!mmds_usable(c, a))
			return;
		ret = (a->type == ACTION_PUT_MMDS ? mmds_put : mmds_patch)(
			c->mmds, a->u.mmds_data.json, a->u.mmds_data.len, a->fault, sizeof(a->fault));
		if (ret)
			a->status = ret == -EFBIG ? 413 : ret == -ENOMEM ? 500 : 400;
		return;
	case ACTION_PUT_MMDS_CONFIG:
		if (!boot_config(c, a))
			return;
		if (mmds_config_check(&a->u.mmds_config, &c->cfg, a->fault, sizeof(a->fault))) {
			a->status = 400;
			return;
		}
		c->cfg.mmds = a->u.mmds_config;
		mmds_set_config(c->mmds, &c->cfg.mmds);
		return;
	default:
		return;
	}
}

/* ---- the VM's lifetime ---------------------------------------------- */



static void on_vm_stop(struct evloop_watch *w, int res)
{
	struct controller *c = container_of(w, struct controller, stop_watch);
	(void)res;
	c->exit_code = c->machine.vm.exit_code;
	evloop_stop(c->loop);
}

int controller_start_instance(struct controller *c, char *err, size_t errlen)
{
	uint64_t t0 = rl_now_ns();
	char msg[512];
	int ret = config_check_devices(&c->cfg, msg, sizeof(msg));
	if (!ret)
		ret = config_check_memory(&c->cfg.machine, msg, sizeof(msg));
	if (ret) {
		snprintf(err, errlen, "%s", msg);
		return ret;
	}
	struct machine_params p = {
		.cfg = &c->cfg, .loop = c->loop, .boot_timer = c->boot_timer,
		.start_wall = &c->start_wall, .start_cpu = &c->start_cpu, .mem_fd = -1, .mmds = c->mmds,
	};
	if ((ret = machine_build(&c->machine, &p, err, errlen)))
		return ret;
	c->machine.vm.start_request_ns = t0;
	if ((ret = evloop_watch(c->loop, &c->stop_watch, c->machine.vm.stop_fd, POLLIN, on_vm_stop)) ||
	    (ret = machine_start(&c->machine, err, errlen))) {
		if (!err[0])
			snprintf(err, errlen, "cannot start: %s", strerror(-ret));
		/* Watches may be armed now: the only clean way out is to stop. */
		vm_request_stop(&c->machine.vm, 1, "start failed");
		c->state = STATE_RUNNING;
		return ret;
	}
	c->state = STATE_RUNNING;
	log_info("booting %s (%u vCPU%s, %llu MiB)", c->cfg.boot.kernel_image_path,
		 c->cfg.machine.vcpu_count, c->cfg.machine.vcpu_count == 1 ? "" : "s",
		 (unsigned long long)c->cfg.machine.mem_size_mib);
	controller_metrics_start(c);
	return 0;
}

/* ---- logger and metrics --------------------------------------------- */

int controller_apply_logger(struct controller *c, const struct logger_config *l, char *err, size_t errlen)
{
	if (l->has_path) {
		int ret = log_set_path("logger.log_path", l->log_path, err, errlen);
		if (ret)
			return ret;
	}
	log_set_level(l->level >= 0 ? (enum log_level)l->level : LOG_INFO);
	if (l->show_level >= 0)
		log_set_show_level(l->show_level);
	if (l->show_log_origin >= 0)
		log_set_show_origin(l->show_log_origin);
	c->cfg.logger = *l;
	return 0;
}

static void metrics_tick(struct evloop_timer *t)
{
	struct controller *c = container_of(t, struct controller, metrics_timer);
	controller_flush_metrics(c);
	evloop_timer_arm(c->loop, &c->metrics_timer, METRICS_PERIOD_NS, metrics_tick);
}

/* As Firecracker: metrics are written from the start of the VM on, a
 * first line at once. */
void controller_metrics_start(struct controller *c)
{
	if (c->metrics_timer_armed)
		return;
	c->metrics_timer_armed = true;
	controller_flush_metrics(c);
	evloop_timer_arm(c->loop, &c->metrics_timer, METRICS_PERIOD_NS, metrics_tick);
}

int controller_apply_metrics(struct controller *c, const struct metrics_config *m, char *err, size_t errlen)
{
	int ret = metrics_open(&c->metrics, m, err, errlen);
	if (ret)
		return ret;
	c->cfg.metrics = *m;
	return 0;
}

int controller_flush_metrics(struct controller *c)
{
	c->metrics.startup_us = c->startup_us;
	c->metrics.startup_cpu_us = c->startup_cpu_us;
	c->metrics.api_totals = c->api_metrics;
	return metrics_flush(&c->metrics, &c->cfg, c->state != STATE_NOT_STARTED ? &c->machine : NULL);
}

/* ---- actions -------------------------------------------------------- */

static void put_drive(struct controller *c, struct action *a)
{
	const struct drive_config *d = &a->u.drive;
	/* Open it now so a bad path is this request's error, not InstanceStart's. */
	uint64_t sectors;
	int fd = virtio_blk_open(d, d->path_on_host, &sectors, a->fault, sizeof(a->fault));
	if (fd < 0) {
		a->status = 400;
		return;
	}
	close(fd);
	if (d->is_root_device && config_pmem_root(&c->cfg) >= 0) {
		reply_error(a, 400, "Attempt to add block as a root device while the root device defined as a pmem device");
		return;
	}
	struct vmm_config next = c->cfg;
	unsigned i;
	for (i = 0; i < next.ndrives; i++)
		if (strcmp(next.drives[i].drive_id, d->drive_id) == 0)
			break;
	if (i == CONFIG_MAX_DRIVES) {
		reply_error(a, 400, "drives: at most %d drives", CONFIG_MAX_DRIVES);
		return;
	}
	next.drives[i] = *d;
	if (i == next.ndrives)
		next.ndrives++;
	if (config_check_devices(&next, a->fault, sizeof(a->fault))) {
		a->status = 400;
		return;
	}
	c->cfg = next;
	a->status = 204;
}

static void put_serial(struct controller *c, struct action *a)
{
	const struct serial_config *s = &a->u.serial;
	/* As for drives: a bad path is this request's error. */
	if (s->serial_out_path[0]) {
		int fd = machine_open_serial_out(s->serial_out_path, a->fault, sizeof(a->fault));
		if (fd < 0) {
			a->status = 400;
			return;
		}
		close(fd);
	}
	c->cfg.serial = *s;
	a->status = 204;
}

static void put_net(struct controller *c, struct action *a)
{
	const struct net_config *n = &a->u.net;
	struct vmm_config next = c->cfg;
	unsigned i;
	for (i = 0; i < next.nnets; i++)
		if (strcmp(next.nets[i].iface_id, n->iface_id) == 0)
			break;
	if (i == CONFIG_MAX_NETS) {
		reply_error(a, 400, "network-interfaces: at most %d interfaces", CONFIG_MAX_NETS);
		return;
	}
	next.nets[i] = *n;
	if (i == next.nnets)
		next.nnets++;
	int ret = config_check_devices(&next, a->fault, sizeof(a->fault));
	if (!ret)
		ret = virtio_net_check(n, a->fault, sizeof(a->fault));
	if (ret) {
		/* As in Firecracker, the interface being replaced is dropped once
		 * the new one's MAC is found free, so a failure after that (its
		 * tap) leaves no interface of that id. */
		if (ret != -EADDRINUSE && i < c->cfg.nnets) {
			memmove(&c->cfg.nets[i], &c->cfg.nets[i + 1],
				(c->cfg.nnets - i - 1) * sizeof(c->cfg.nets[0]));
			c->cfg.nnets--;
		}
		a->status = 400;
		return;
	}
	c->cfg = next;
	a->status = 204;
}

static void patch_drive(struct controller *c, struct action *a)
{
	const struct drive_update *u = &a->u.drive_update;
	struct virtio_blk *blk = machine_drive(&c->machine, u->drive_id);
	if (!blk) {
		reply_error(a, 400, "drives: no drive \"%s\"", u->drive_id);
		return;
	}
	if (virtio_blk_update(blk, u->has_path ? u->path_on_host : NULL,
			      u->has_rate_limiter ? &u->rate_limiter : NULL, a->fault, sizeof(a->fault))) {
		a->status = 400;
		return;
	}
	for (unsigned i = 0; i < c->cfg.ndrives; i++)
		if (strcmp(c->cfg.drives[i].drive_id, u->drive_id) == 0)
			c->cfg.drives[i] = blk->cfg;
	a->status = 204;
}

static void patch_net(struct controller *c, struct action *a)
{
	const struct net_update *u = &a->u.net_update;
	struct virtio_net *net = machine_net(&c->machine, u->iface_id);
	if (!net) {
		reply_error(a, 400, "network-interfaces: no interface \"%s\"", u->iface_id);
		return;
	}
	virtio_net_update(net, u->has_rx ? &u->rx : NULL, u->has_tx ? &u->tx : NULL);
	for (unsigned i = 0; i < c->cfg.nnets; i++)
		if (strcmp(c->cfg.nets[i].iface_id, u->iface_id) == 0)
			c->cfg.nets[i] = net->cfg;
	a->status = 204;
}

/* As Firecracker, the file is opened when the VM starts, not here. */
static void put_pmem(struct controller *c, struct action *a)
{
	if (config_pmem_put(&c->cfg, &a->u.pmem, a->fault, sizeof(a->fault)))
		a->status = 400;
}

static void patch_pmem(struct controller *c, struct action *a)
{
	const struct pmem_update *u = &a->u.pmem_update;
	if (!u->has_rate_limiter)
		return; /* nothing to change: 204, as Firecracker */
	struct virtio_pmem *pm = machine_pmem(&c->machine, u->id);
	if (!pm) {
		reply_error(a, 400, "Unable to patch the pmem device: Device not found (no pmem device \"%s\"). "
			    "Please verify the request arguments.", u->id);
		return;
	}
	virtio_pmem_update(pm, &u->rate_limiter);
	for (unsigned i = 0; i < c->cfg.npmems; i++)
		if (strcmp(c->cfg.pmems[i].id, u->id) == 0)
			c->cfg.pmems[i] = pm->cfg;
}

/* ---- memory hotplug (virtio-mem) ------------------------------------- */

static void patch_memory_hotplug(struct controller *c, struct action *a)
{
	if (!c->machine.hotplug) {
		reply_error(a, 400, "Memory hotplug update error: Failed perform action on device: Device not found");
		return;
	}
	if (virtio_mem_set_requested(c->machine.hotplug, a->u.requested_size_mib, a->fault, sizeof(a->fault)))
		a->status = 400;
}

static void get_memory_hotplug(struct controller *c, struct action *a)
{
	if (!c->machine.hotplug)
		reply_error(a, 400, "Internal VMM error: Failed perform action on device: Device not found");
	else
		reply_json(a, virtio_mem_status_obj(c->machine.hotplug));
}

/* ---- the balloon ------------------------------------------------------ */

static void put_balloon(struct controller *c, struct action *a)
{
	if (a->u.balloon.amount_mib > c->cfg.machine.mem_size_mib) {
		reply_error(a, 400, BALLOON_TOO_LARGE);
		return;
	}
	c->cfg.balloon = a->u.balloon;
}

static void get_balloon(struct controller *c, struct action *a)
{
	if (!c->cfg.balloon.set) {
		if (c->state == STATE_NOT_STARTED)
			reply_error(a, 400, "Balloon config error: No balloon device found.");
		else
			reply_error(a, 400, "Internal VMM error: Failed perform action on device: Device not found");
		return;
	}
	struct virtio_balloon *b = c->machine.balloon;
	if (b && c->state != STATE_NOT_STARTED) {
		pthread_mutex_lock(&b->vd.lock);
		c->cfg.balloon = b->cfg;
		pthread_mutex_unlock(&b->vd.lock);
	}
	reply_json(a, config_json_balloon_obj(&c->cfg.balloon));
}

/* The running device, or NULL (answered with Firecracker's words, which
 * name the request's kind of error). */
static struct virtio_balloon *running_balloon(struct controller *c, struct action *a, const char *kind)
{
	if (!c->machine.balloon)
		reply_error(a, 400, "%s: Failed perform action on device: Device not found", kind);
	return c->machine.balloon;
}

static void patch_balloon(struct controller *c, struct action *a, bool stats)
{
	struct virtio_balloon *b = running_balloon(c, a, "Balloon update error");
	if (!b)
		return;
	int ret = stats ? virtio_balloon_set_interval(b, (uint16_t)a->u.balloon_value, a->fault, sizeof(a->fault))
			: virtio_balloon_set_target(b, a->u.balloon_value, a->fault, sizeof(a->fault));
	if (ret) {
		a->status = 400;
		return;
	}
	pthread_mutex_lock(&b->vd.lock);
	c->cfg.balloon = b->cfg;
	pthread_mutex_unlock(&b->vd.lock);
}

/* /balloon/hinting/start, /stop and /status. */
static void balloon_hinting(struct controller *c, struct action *a)
{
	struct virtio_balloon *b = running_balloon(c, a, "Balloon update error");
	if (!b)
		return;
	cJSON *o = NULL;
	int ret = 0;
	if (a->type == ACTION_BALLOON_HINT_START)
		ret = virtio_balloon_hint_start(b, a->u.balloon_value, a->fault, sizeof(a->fault));
	else if (a->type == ACTION_BALLOON_HINT_STOP)
		ret = virtio_balloon_hint_stop(b, a->fault, sizeof(a->fault));
	else if (!(o = virtio_balloon_hint_status(b, a->fault, sizeof(a->fault))))
		ret = -EINVAL;
	if (ret)
		a->status = 400;
	else if (o)
		reply_json(a, o);
}

static void get_balloon_stats(struct controller *c, struct action *a)
{
	struct virtio_balloon *b = running_balloon(c, a, "Internal VMM error");
	if (!b)
		return;
	cJSON *o = virtio_balloon_stats_obj(b, a->fault, sizeof(a->fault));
	if (!o)
		a->status = 400;
	else
		reply_json(a, o);
}

/* ---- pause, resume, snapshots --------------------------------------- */

#define PAUSE_IO_TIMEOUT_NS (5ULL * 1000000000ULL)
#define PAUSE_POLL_NS 1000000ULL

/* The devices finish what they had in flight (a disk write, a frame
 * going out); the pause is answered once they have. */
static void pause_poll(struct evloop_timer *t)
{
	struct controller *c = container_of(t, struct controller, defer_timer);
	struct action *a = c->deferred;
	if (!a)
		return;
	if (!machine_idle(&c->machine)) {
		if (rl_now_ns() - c->defer_start_ns < PAUSE_IO_TIMEOUT_NS) {
			evloop_timer_arm(c->loop, &c->defer_timer, PAUSE_POLL_NS, pause_poll);
			return;
		}
		/* Paused all the same; a snapshot now would refuse. */
		reply_error(a, 500, "paused, but device I/O still in flight after 5 s");
	}
	controller_finish(c, a);
}

static void pause_vm(struct controller *c, struct action *a)
{
	if (c->state == STATE_PAUSED)
		return;
	if (machine_pause(&c->machine)) {
		reply_error(a, 400, "the VM is stopping");
		return;
	}
	c->state = STATE_PAUSED;
	log_info("paused");
	if (!machine_idle(&c->machine)) {
		c->deferred = a;
		c->defer_start_ns = rl_now_ns();
		evloop_timer_arm(c->loop, &c->defer_timer, PAUSE_POLL_NS, pause_poll);
	}
}

/* Returns 0, or -errno with the reason in err. */
int controller_resume(struct controller *c, char *err, size_t errlen)
{
	if (c->state == STATE_RUNNING)
		return 0;
	machine_resume(&c->machine);
	if (!c->machine.running) {
		/* A load without resume_vm: the vCPU threads start now. */
		int ret = machine_start_vcpus(&c->machine, err, errlen);
		if (ret)
			return ret;
	}
	c->state = STATE_RUNNING;
	log_info("resumed");
	return 0;
}

static void on_uffd_hangup(struct evloop_watch *w, int res)
{
	struct controller *c = container_of(w, struct controller, uffd_watch);
	(void)res;
	evloop_unwatch(w);
	vm_request_stop(&c->machine.vm, 1, "the page-fault handler closed its socket (it exited?)");
}

/* Only a process that has configured nothing a boot uses restores (the
 * logger, metrics and serial may be set); Firecracker's messages. */
static bool fresh(const struct controller *c, struct action *a)
{
	if (c->state != STATE_NOT_STARTED) {
		reply_error(a, 400, "The requested operation is not supported after starting the microVM.");
		return false;
	}
	if (c->boot_path) {
		reply_error(a, 400, "Load snapshot error: Loading a microVM snapshot not allowed after "
			    "configuring boot-specific resources.");
		return false;
	}
	return true;
}

/* The snapshot's configuration with the request's overrides, and the
 * logger and metrics of this process. */
static int restore_config(struct controller *c, const struct snapshot_load *l, const struct vmm_config *saved,
			  struct vmm_config *cfg, char *err, size_t errlen)
{
	*cfg = *saved;
	cfg->logger = c->cfg.logger;
	cfg->metrics = c->cfg.metrics;
	if (c->cfg.serial.set)
		cfg->serial = c->cfg.serial; /* PUT /serial before the load */
	cfg->machine.track_dirty_pages = l->track_dirty_pages;
	if (l->has_huge_pages)
		cfg->machine.huge_pages = l->huge_pages;
	/* The backing is the load's choice (the snapshot's could be a file
	 * that another VM now uses): anonymous unless it names one. */
	cfg->machine.mem_kind = l->mem_kind;
	memcpy(cfg->machine.mem_path, l->mem_path, sizeof(cfg->machine.mem_path));
	if (l->mem_kind != MEM_KIND_ANON && l->backend == MEM_BACKEND_UFFD) {
		snprintf(err, errlen, "snapshot_load.ember_mem_backend: a page-fault handler (Uffd) fills anonymous "
			 "memory only; load a memfd or file backing from a File");
		return -EINVAL;
	}
	int ret = config_check_backing(&cfg->machine, err, errlen);
	if (ret)
		return ret;
	if (cfg->machine.huge_pages != MEM_PAGES_NONE && cfg->machine.mem_size_mib % 2) {
		snprintf(err, errlen, "The memory size (MiB) is either 0, or not a multiple of the configured page size. "
			 "(huge_pages \"%s\" for the snapshot's %llu MiB)", config_huge_pages_name(cfg->machine.huge_pages),
			 (unsigned long long)cfg->machine.mem_size_mib);
		return -EINVAL;
	}
	for (unsigned i = 0; i < l->nnet_overrides; i++) {
		const struct net_override *o = &l->net_overrides[i];
		unsigned k;
		for (k = 0; k < cfg->nnets; k++)
			if (strcmp(cfg->nets[k].iface_id, o->iface_id) == 0)
				break;
		if (k == cfg->nnets) {
			snprintf(err, errlen, "network_overrides: the snapshot has no interface \"%s\"", o->iface_id);
			return -EINVAL;
		}
		snprintf(cfg->nets[k].host_dev_name, sizeof(cfg->nets[k].host_dev_name), "%s", o->host_dev_name);
	}
	if (l->has_vsock_override) {
		if (!cfg->vsock.set) {
			snprintf(err, errlen, "Unknown Vsock Device (vsock_override: the snapshot has no vsock device)");
			return -EINVAL;
		}
		snprintf(cfg->vsock.uds_path, sizeof(cfg->vsock.uds_path), "%s", l->vsock_uds_path);
	}
	return 0;
}

int controller_restore_build(struct controller *c, const struct snapshot_load *l, const struct vmm_config *saved,
			     int mem_fd, struct vmm_config *cfg, char *err, size_t errlen)
{
	int ret = restore_config(c, l, saved, cfg, err, errlen);
	if (!ret)
		ret = config_check_memory(&cfg->machine, err, errlen); /* bounds mem_size_mib << 20 too */
	if (ret) {
		if (mem_fd >= 0)
			close(mem_fd);
		return ret;
	}
	struct machine_params p = {
		.cfg = cfg, .loop = c->loop, .boot_timer = c->boot_timer,
		.start_wall = &c->start_wall, .start_cpu = &c->start_cpu,
		.restoring = true, .mem_fd = mem_fd, .mmds = c->mmds,
	};
	return machine_build(&c->machine, &p, err, errlen); /* mem_fd went with the machine */
}

int controller_restore_finish(struct controller *c, const struct snapshot_load *l, const struct snapshot_image *img,
			      const struct vmm_config *cfg, uint64_t t0_ns, char *err, size_t errlen)
{
	int ret;
	/* The metadata store as it was (a store PUT before the load stays
	 * if the snapshot has none). A failed load ends the process, so
	 * taking it now changes nothing that lives on. */
	if (img->mmds.len && (ret = mmds_restore_store(c->mmds, (const char *)img->mmds.p, img->mmds.len, err, errlen)))
		goto fail;
	if (l->backend == MEM_BACKEND_UFFD &&
	    (ret = uffd_backend_connect(&c->uffd, &c->machine.vm.mem, l->backend_path, err, errlen)))
		goto fail;
	c->machine.vm.start_request_ns = t0_ns;
	c->machine.vm.restored = true;
	c->machine.mem_generation = img->mem.generation;
	if ((ret = snapshot_apply(&c->machine, img, err, errlen))) {
		uffd_backend_close(&c->uffd);
		goto fail;
	}
	/* From here on watches get armed: the only way back is to stop. */
	if ((ret = evloop_watch(c->loop, &c->stop_watch, c->machine.vm.stop_fd, POLLIN, on_vm_stop)) ||
	    (c->uffd.sock >= 0 &&
	     (ret = evloop_watch(c->loop, &c->uffd_watch, c->uffd.sock, POLLIN | POLLRDHUP, on_uffd_hangup))) ||
	    (ret = machine_start_devices(&c->machine, true, err, errlen))) {
		if (!err[0])
			snprintf(err, errlen, "cannot start: %s", strerror(-ret));
		vm_request_stop(&c->machine.vm, 1, "restore failed");
		c->state = STATE_PAUSED;
		return ret;
	}
	c->cfg = *cfg;
	mmds_set_config(c->mmds, &c->cfg.mmds);
	c->state = STATE_PAUSED;
	/* Devices paused like the vCPUs (not started yet) until Resumed. */
	if ((ret = machine_pause(&c->machine))) {
		snprintf(err, errlen, "the VM is stopping");
		return ret;
	}
	return l->resume_vm ? controller_resume(c, err, errlen) : 0;
fail:
	machine_destroy(&c->machine);
	return ret;
}

static int restore(struct controller *c, const struct snapshot_load *l, struct snapshot_image *img,
		   uint64_t t0_ns, char *err, size_t errlen)
{
	int mem_fd = -1, ret;
	if (l->backend == MEM_BACKEND_FILE) {
		/* Its size and identity page only: guest memory is read when the
		 * guest touches it. */
		char detail[CONFIG_PATH_MAX + 160];
		mem_fd = hostfile_open("memory file", l->backend_path, O_RDONLY, 0, HOSTFILE_REG, detail, sizeof(detail));
		if (mem_fd < 0) {
			snprintf(err, errlen, "Failed to load guest memory: Error creating guest memory from file: Failed "
				 "to load guest memory: %s (os error %d); %.200s", strerror(-mem_fd), -mem_fd, detail);
			return mem_fd;
		}
		if ((ret = memfile_check(mem_fd, l->backend_path, &img->mem, err, errlen))) {
			close(mem_fd);
			return ret;
		}
	}
	struct vmm_config cfg;
	if ((ret = controller_restore_build(c, l, &img->cfg, mem_fd, &cfg, err, errlen)))
		return ret;
	return controller_restore_finish(c, l, img, &cfg, t0_ns, err, errlen);
}

static void load_snapshot(struct controller *c, struct action *a)
{
	const struct snapshot_load *l = &a->u.snap_load;
	if (!fresh(c, a))
		return;
	uint64_t t0 = rl_now_ns();
	uint8_t *buf = NULL;
	size_t len = 0;
	struct snapshot_image *img = calloc(1, sizeof(*img));
	if (!img) {
		reply_error(a, 500, "out of memory");
		return;
	}
	uint64_t t_parsed = 0;
	char why[sizeof(a->fault) - 64] = "";
	int ret = snapfile_load(l->snapshot_path, &buf, &len, why, sizeof(why));
	if (ret && ret != -EINVAL && ret != -ENOMEM) {
		char detail[sizeof(why)];
		snprintf(detail, sizeof(detail), "%s", why);
		snprintf(why, sizeof(why), "Failed to get snapshot state from file: Failed to open snapshot file: %s "
			 "(os error %d); %.200s", strerror(-ret), -ret, detail);
	}
	if (!ret && (ret = snapshot_parse(buf, len, img, why, sizeof(why)))) {
		char detail[sizeof(why)];
		snprintf(detail, sizeof(detail), "%s", why);
		snprintf(why, sizeof(why), "Failed to get snapshot state from file: %.300s", detail);
	}
	if (ret || !(t_parsed = rl_now_ns()) || restore(c, l, img, t0, why, sizeof(why))) {
		/* Firecracker's frame around the reason, which clients match. */
		reply_error(a, 400, "Load snapshot error: Failed to restore from snapshot: %s", why);
		/* A failed restore leaves the process unfit for another try:
		 * Firecracker answers, then exits with status 1. */
		log_error("Failed to build MicroVM: Loading snapshot failed.");
		c->load_failed = true;
		c->exit_code = 1;
		evloop_stop(c->loop);
	} else {
		log_info("snapshot %s loaded (%s memory) in %llu us (state file read and checked in %llu us)%s",
			 l->snapshot_path, l->backend == MEM_BACKEND_FILE ? "file" : "uffd",
			 (unsigned long long)((rl_now_ns() - t0) / 1000),
			 (unsigned long long)((t_parsed - t0) / 1000), l->resume_vm ? ", resumed" : "");
		controller_metrics_start(c);
	}
	snapshot_image_free(img);
	free(img);
	free(buf);
}

/* A write past RLIMIT_FSIZE (ember-jailer --resource-limit fsize=N) raises
 * SIGXFSZ, which ember keeps blocked (it takes signals through a signalfd),
 * so the write fails with EFBIG instead. Firecracker dies of that signal at
 * the write, without answering the request, and its clients and tests
 * expect that: so when the signal is pending, ember stops here as it stops
 * on a SIGXFSZ sent to it (Firecracker's line, the metric, a last metrics
 * line, Firecracker's status 151), without answering. */
static void stop_if_file_size_limit(struct controller *c)
{
	sigset_t pending;
	if (sigpending(&pending) || sigismember(&pending, SIGXFSZ) != 1)
		return;
	log_error("Shutting down VM after intercepting signal %d, code %d.", SIGXFSZ, 0);
	metrics_signal(SIGXFSZ);
	controller_flush_metrics(c);
	_exit(151);
}

void controller_handle(struct controller *c, struct action *a)
{
	a->status = 204;
	a->fault[0] = 0;
	a->body = NULL;
	switch (a->type) {
	case ACTION_GET_INSTANCE_INFO: {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "id", c->id);
		cJSON_AddStringToObject(o, "state", state_name(c->state));
		cJSON_AddStringToObject(o, "vmm_version", EMBER_VERSION);
		cJSON_AddStringToObject(o, "app_name", "ember");
		reply_json(a, o);
		break;
	}
	case ACTION_GET_MACHINE_CONFIG:
		reply_json(a, config_json_machine_obj(&c->cfg.machine));
		break;
	case ACTION_GET_VM_CONFIG:
		reply_json(a, config_json_vm_obj(&c->cfg));
		break;
	case ACTION_PUT_MACHINE_CONFIG:
	case ACTION_PATCH_MACHINE_CONFIG:
		if (boot_config(c, a)) {
			/* Applied to a copy: the file check may still refuse it. */
			struct machine_config m = c->cfg.machine;
			if (config_machine_apply(&m, &a->u.machine.value, a->u.machine.fields,
						 a->type == ACTION_PATCH_MACHINE_CONFIG, a->fault, sizeof(a->fault)) ||
			    config_check_mem_file(&m, a->fault, sizeof(a->fault)))
				a->status = 400;
			else
				c->cfg.machine = m;
		}
		break;
	case ACTION_PUT_CPU_CONFIG:
		/* Replaces a static template, as Firecracker: the last one set
		 * wins. Like Firecracker, it does not refuse a later snapshot load. */
		if (pre_boot(c, a)) {
			c->cfg.cpu_custom = a->u.cpu_config;
			c->cfg.machine.cpu_template = CPU_TEMPLATE_CUSTOM;
		}
		break;
	case ACTION_PUT_BOOT_SOURCE: {
		if (!boot_config(c, a))
			break;
		struct boot_images img = {
			.kernel_path = a->u.boot.kernel_image_path,
			.initrd_path = a->u.boot.initrd_path[0] ? a->u.boot.initrd_path : NULL,
		};
		char why[sizeof(a->fault) - 32];
		if (boot_check_images(&img, why, sizeof(why)))
			reply_error(a, 400, "Boot source error: %s", why); /* Firecracker's frame */
		else
			c->cfg.boot = a->u.boot;
		break;
	}
	case ACTION_PUT_DRIVE:
		if (boot_config(c, a))
			put_drive(c, a);
		break;
	case ACTION_PATCH_DRIVE:
		if (post_boot(c, a))
			patch_drive(c, a);
		break;
	case ACTION_PUT_NET:
		if (boot_config(c, a))
			put_net(c, a);
		break;
	case ACTION_PATCH_NET:
		if (post_boot(c, a))
			patch_net(c, a);
		break;
	case ACTION_PUT_PMEM:
		if (boot_config(c, a))
			put_pmem(c, a);
		break;
	case ACTION_PATCH_PMEM:
		if (post_boot(c, a))
			patch_pmem(c, a);
		break;
	case ACTION_PUT_BALLOON:
		if (boot_config(c, a))
			put_balloon(c, a);
		break;
	case ACTION_GET_BALLOON:
		get_balloon(c, a);
		break;
	case ACTION_PATCH_BALLOON:
	case ACTION_PATCH_BALLOON_STATS:
		if (post_boot(c, a))
			patch_balloon(c, a, a->type == ACTION_PATCH_BALLOON_STATS);
		break;
	case ACTION_GET_BALLOON_STATS:
		if (post_boot(c, a))
			get_balloon_stats(c, a);
		break;
	case ACTION_PUT_MEMORY_HOTPLUG:
		if (boot_config(c, a))
			c->cfg.memory_hotplug = a->u.memory_hotplug;
		break;
	case ACTION_PATCH_MEMORY_HOTPLUG:
		if (post_boot(c, a))
			patch_memory_hotplug(c, a);
		break;
	case ACTION_GET_MEMORY_HOTPLUG:
		if (post_boot(c, a))
			get_memory_hotplug(c, a);
		break;
	case ACTION_BALLOON_HINT_START:
	case ACTION_BALLOON_HINT_STOP:
	case ACTION_GET_BALLOON_HINT_STATUS:
		if (post_boot(c, a))
			balloon_hinting(c, a);
		break;
	case ACTION_PUT_VSOCK:
		if (boot_config(c, a))
			c->cfg.vsock = a->u.vsock;
		break;
	case ACTION_PUT_ENTROPY:
		if (boot_config(c, a))
			c->cfg.entropy = a->u.entropy;
		break;
	case ACTION_PUT_SERIAL:
		if (pre_boot(c, a))
			put_serial(c, a);
		break;
	case ACTION_PUT_LOGGER: /* as Firecracker: before the start only */
		if (pre_boot(c, a) && controller_apply_logger(c, &a->u.logger, a->fault, sizeof(a->fault)))
			a->status = 400;
		break;
	case ACTION_PUT_METRICS:
		if (pre_boot(c, a) && controller_apply_metrics(c, &a->u.metrics, a->fault, sizeof(a->fault)))
			a->status = 400;
		break;
	case ACTION_INSTANCE_START:
		if (pre_boot(c, a) && controller_start_instance(c, a->fault, sizeof(a->fault)))
			a->status = 400;
		break;
	case ACTION_SEND_CTRL_ALT_DEL:
		if (post_boot(c, a) && i8042_send_ctrl_alt_del(&c->machine.i8042))
			reply_error(a, 400, "the guest has not read the keys sent earlier");
		break;
	case ACTION_PAUSE:
		if (post_boot(c, a) && !migration_refuses(c, a))
			pause_vm(c, a);
		break;
	case ACTION_RESUME:
		if (post_boot(c, a) && !migration_refuses(c, a) && controller_resume(c, a->fault, sizeof(a->fault)))
			a->status = 500;
		break;
	case ACTION_SNAPSHOT_CREATE:
		if (!post_boot(c, a) || migration_refuses(c, a))
			break;
		if (c->state != STATE_PAUSED)
			reply_error(a, 400, "Create snapshot error: Cannot save the microVM state: Operation not allowed: "
				    "save/restore unavailable while running (PATCH /vm {\"state\": \"Paused\"} first)");
		else if (snapshot_save(&c->machine, &c->cfg, &a->u.snap_create, a->fault, sizeof(a->fault))) {
			stop_if_file_size_limit(c);
			a->status = 400;
		}
		break;
	case ACTION_SNAPSHOT_LOAD:
		load_snapshot(c, a);
		break;
	case ACTION_GET_MMDS:
	case ACTION_PUT_MMDS:
	case ACTION_PATCH_MMDS:
	case ACTION_PUT_MMDS_CONFIG:
		handle_mmds(c, a);
		break;
	case ACTION_MIGRATE_START:
		migration_start(c, a);
		break;
	case ACTION_GET_MIGRATION:
		migration_get(c, a);
		break;
	case ACTION_MIGRATE_CANCEL:
		migration_cancel(c, a);
		break;
	case ACTION_FLUSH_METRICS:
		/* As Firecracker: after the start only; without metrics set up,
		 * nothing is written and that is no error. */
		if (post_boot(c, a))
			controller_flush_metrics(c);
		break;
	default:
		reply_error(a, 500, "unknown action %d", (int)a->type);
		break;
	}
}

/* ---- the channel from the API thread --------------------------------- */

static void on_wake(struct evloop_watch *w, int res)
{
	struct controller *c = container_of(w, struct controller, wake_watch);
	uint64_t n;
	(void)res;
	if (read(c->wake_fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&c->lock);
	struct action *a = c->pending;
	pthread_mutex_unlock(&c->lock);
	if (!a)
		return;
	c->handle_start_ns = rl_now_ns();
	controller_handle(c, a);
	if (c->deferred != a)
		controller_finish(c, a);
	/* vCPU 0, if this action started it: after the answer (vcpu.h). */
	vcpu_release_prepared();
}

/* The latencies_us entry an action's time goes to, or -1. */
static int latency_kind(const struct action *a)
{
	switch (a->type) {
	case ACTION_SNAPSHOT_CREATE:
		return a->u.snap_create.type == SNAPSHOT_DIFF ? METRICS_DIFF_CREATE_SNAPSHOT
							      : METRICS_FULL_CREATE_SNAPSHOT;
	case ACTION_SNAPSHOT_LOAD: return METRICS_LOAD_SNAPSHOT;
	case ACTION_PAUSE: return METRICS_PAUSE_VM;
	case ACTION_RESUME: return METRICS_RESUME_VM;
	default: return -1;
	}
}

void controller_finish(struct controller *c, struct action *a)
{
	if (c->deferred == a)
		c->deferred = NULL;
	uint64_t vmm_us = (rl_now_ns() - c->handle_start_ns) / 1000;
	pthread_mutex_lock(&c->lock);
	c->vmm_us = vmm_us;
	c->pending = NULL;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* What a request gets once the VMM thread's loop has ended: the instance
 * cannot serve it (400, as for any request the VM's state refuses). */
static void reply_stopping(struct action *a)
{
	reply_error(a, 400, "ember is stopping: the VM has stopped");
}

void controller_submit(struct controller *c, struct action *a)
{
	uint64_t one = 1;
	uint64_t t0 = rl_now_ns();
	pthread_mutex_lock(&c->lock);
	while (c->pending && !c->closed)
		pthread_cond_wait(&c->cond, &c->lock);
	if (c->closed) {
		reply_stopping(a);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->pending = a;
	if (write(c->wake_fd, &one, sizeof(one)) != sizeof(one)) {
		c->pending = NULL;
		a->status = 500;
		snprintf(a->fault, sizeof(a->fault), "cannot reach the VMM thread");
		pthread_mutex_unlock(&c->lock);
		return;
	}
	/* controller_finish or controller_close clears pending. */
	while (c->pending == a)
		pthread_cond_wait(&c->cond, &c->lock);
	uint64_t vmm_us = c->vmm_us;
	pthread_mutex_unlock(&c->lock);
	int kind = latency_kind(a);
	if (kind >= 0 && a->status < 300) {
		static const char *const names[METRICS_NLATENCIES] = { "create full snapshot",
			"create diff snapshot", "load snapshot", "pause vm", "resume vm" };
		uint64_t us = (rl_now_ns() - t0) / 1000;
		metrics_latency((enum metrics_latency)kind, us, vmm_us);
		log_info("'%s' API request took %llu us.", names[kind], (unsigned long long)us); /* as Firecracker */
	}
}

void controller_close(struct controller *c)
{
	pthread_mutex_lock(&c->lock);
	c->closed = true;
	/* Not handled yet, or handled and deferred (a pause waiting for
	 * I/O): the loop that would have answered it has ended. */
	if (c->pending)
		reply_stopping(c->pending);
	c->pending = NULL;
	c->deferred = NULL;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int controller_init(struct controller *c, struct evloop *loop, const char *id, bool boot_timer,
		    const struct timespec *start_wall, const struct timespec *start_cpu)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->id = id;
	c->boot_timer = boot_timer;
	c->start_wall = *start_wall;
	c->start_cpu = *start_cpu;
	metrics_init(&c->metrics, id);
	c->uffd.uffd = c->uffd.sock = -1;
	config_defaults(&c->cfg);
	if (!(c->mmds = mmds_new(0)))
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0)
		return -errno;
	return evloop_watch(loop, &c->wake_watch, c->wake_fd, POLLIN, on_wake);
}

void controller_shutdown(struct controller *c)
{
	if (c->state != STATE_NOT_STARTED)
		machine_stop(&c->machine);
	uffd_backend_close(&c->uffd);
	controller_flush_metrics(c);
	if (c->state != STATE_NOT_STARTED)
		machine_log_counters(&c->machine);
	mmds_free(c->mmds);
	c->mmds = NULL;
}
