/* The destination's side of a live migration (migration.h): one source,
 * its stream read with io_uring into a buffer and fed to the stream's
 * state machine (stream.h), which builds the VM here as a snapshot load
 * would. */
#include "migration.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../api/config_json.h"
#include "../controller.h"
#include "../io/ratelimit.h"
#include "../log.h"
#include "../snapshot/snapshot.h"
#include "../vcpu.h"
#include "stream.h"

#define RECV_BYTES (1u << 20)

struct migration_dest {
	struct controller *c;
	int listen_fd, fd;
	char unlink_path[108];
	struct evloop_watch listen_watch;
	struct evloop_op recv_op;
	uint8_t *buf;
	struct mig_dest stream;
	struct snapshot_load load;    /* how the restore is made: anonymous RAM, nothing lazy */
	struct vmm_config cfg;        /* the VM's, as built */
	uint64_t t0_ns;
};

static void answer(struct migration_dest *d, int err, const char *reason)
{
	struct snap_writer w;
	sw_init(&w);
	mig_put_hello(&w);
	mig_put_result(&w, err, reason);
	/* Small: one blocking send (MSG_NOSIGNAL: a gone source is no signal). */
	if (!w.oom && send(d->fd, w.buf, w.len, MSG_NOSIGNAL) != (ssize_t)w.len)
		log_warn("migration: the answer did not reach the source: %s", strerror(errno));
	sw_free(&w);
}

/* The migration failed here: tell the source why and end, status 1, as a
 * failed snapshot load ends. */
static void refuse(struct migration_dest *d, int err, const char *reason)
{
	struct controller *c = d->c;
	log_error("migration from the source failed: %s", reason);
	answer(d, err ? err : -EINVAL, reason);
	c->load_failed = true;
	c->exit_code = 1;
	evloop_stop(c->loop);
}

static int on_begin(void *ctx, uint64_t mem_size, const char *json, size_t len, uint8_t **mem, char *err,
		    size_t errlen)
{
	struct migration_dest *d = ctx;
	struct controller *c = d->c;
	if (c->state != STATE_NOT_STARTED || c->boot_path) {
		snprintf(err, errlen, "this ember already has a VM, or a client configured one");
		return -EBUSY;
	}
	struct vmm_config *saved = malloc(sizeof(*saved));
	if (!saved) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	char msg[512];
	int ret = 0;
	config_defaults(saved);
	if (config_json_file(json, len, saved, msg, sizeof(msg)) || config_check_devices(saved, msg, sizeof(msg))) {
		snprintf(err, errlen, "the source's configuration: %s", msg);
		ret = -EINVAL;
		goto out;
	}
	d->t0_ns = rl_now_ns();
	memset(&d->load, 0, sizeof(d->load));
	d->load.backend = MEM_BACKEND_FILE; /* no page-fault handler: RAM comes in the stream */
	d->load.mem_kind = MEM_KIND_ANON;
	d->load.track_dirty_pages = saved->machine.track_dirty_pages; /* so it can move on again */
	d->load.has_huge_pages = true;
	d->load.huge_pages = saved->machine.huge_pages;
	if ((ret = controller_restore_build(c, &d->load, saved, -1, &d->cfg, err, errlen)))
		goto out;
	if (c->machine.vm.mem.size != mem_size) {
		snprintf(err, errlen, "the source sends %llu bytes of RAM for a configuration of %llu",
			 (unsigned long long)mem_size, (unsigned long long)c->machine.vm.mem.size);
		machine_destroy(&c->machine);
		ret = -EINVAL;
		goto out;
	}
	*mem = c->machine.vm.mem.host;
	log_info("migration: receiving %llu MiB of RAM", (unsigned long long)(mem_size >> 20));
out:
	free(saved);
	return ret;
}

static int on_state(void *ctx, const uint8_t *image, size_t len, char *err, size_t errlen)
{
	struct migration_dest *d = ctx;
	struct snapshot_image *img = calloc(1, sizeof(*img));
	if (!img) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	char why[400];
	int ret = snapshot_parse(image, len, img, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "the source's state: %s", why);
	} else if (img->cfg.machine.mem_size_mib != d->cfg.machine.mem_size_mib ||
		   img->cfg.machine.vcpu_count != d->cfg.machine.vcpu_count ||
		   img->mem.mem_size != d->c->machine.vm.mem.size) {
		snprintf(err, errlen, "the source's state is of another VM than its BEGIN described");
		ret = -EINVAL;
	} else {
		ret = controller_restore_finish(d->c, &d->load, img, &d->cfg, d->t0_ns, err, errlen);
	}
	snapshot_image_free(img);
	free(img);
	return ret;
}

static const struct mig_dest_ops dest_ops = { on_begin, on_state };

static void receive(struct migration_dest *d);

/* All of it is here: run the VM and say so. */
static void resume(struct migration_dest *d)
{
	struct controller *c = d->c;
	char err[256] = "";
	if (controller_resume(c, err, sizeof(err))) {
		refuse(d, -EIO, err);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	log_info("migration: resumed at %lld.%06ld (realtime), %llu MiB received (%llu pages with data, %llu "
		 "zero) in %llu ms", (long long)ts.tv_sec, ts.tv_nsec / 1000,
		 (unsigned long long)(d->stream.bytes >> 20), (unsigned long long)d->stream.pages_data,
		 (unsigned long long)d->stream.pages_zero, (unsigned long long)((rl_now_ns() - d->t0_ns) / 1000000));
	vcpu_release_prepared(); /* vCPU 0 was made ahead (vcpu.h): it runs now */
	answer(d, 0, "resumed");
	controller_metrics_start(c);
	close(d->fd);
	d->fd = -1;
	mig_dest_free(&d->stream);
	free(d->buf);
	d->buf = NULL;
}

static void on_recv(struct evloop_op *op, int res, unsigned flags)
{
	struct migration_dest *d = container_of(op, struct migration_dest, recv_op);
	(void)flags;
	char err[512] = "", reason[600];
	if (res <= 0) {
		if (res)
			snprintf(reason, sizeof(reason), "reading from the source: %s, after %llu bytes, before the "
				 "migration's end", strerror(-res), (unsigned long long)d->stream.bytes);
		else
			snprintf(reason, sizeof(reason), "the source closed the connection after %llu bytes, before "
				 "the migration's end", (unsigned long long)d->stream.bytes);
		refuse(d, res ? res : -EPIPE, reason);
		return;
	}
	int ret = mig_dest_feed(&d->stream, d->buf, (size_t)res, err, sizeof(err));
	if (ret) {
		refuse(d, ret, err);
		return;
	}
	if (d->stream.stage == MIG_DONE)
		resume(d);
	else
		receive(d);
}

static void receive(struct migration_dest *d)
{
	struct io_uring_sqe *sqe = evloop_sqe(d->c->loop, &d->recv_op);
	if (!sqe) {
		refuse(d, -EAGAIN, "the event loop's ring is full");
		return;
	}
	io_uring_prep_recv(sqe, d->fd, d->buf, RECV_BYTES, 0);
}

static void on_listen(struct evloop_watch *w, int res)
{
	struct migration_dest *d = container_of(w, struct migration_dest, listen_watch);
	if (res < 0 || d->fd >= 0)
		return;
	int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return; /* gone before we took it: wait for the next */
	/* One source: no more listening. */
	evloop_unwatch(w);
	close(d->listen_fd);
	d->listen_fd = -1;
	if (d->unlink_path[0])
		unlink(d->unlink_path);
	d->fd = fd;
	log_info("migration: a source connected");
	if (!(d->buf = malloc(RECV_BYTES))) {
		refuse(d, -ENOMEM, "out of memory");
		return;
	}
	receive(d);
}

int migration_listen(struct controller *c, int listen_fd, const char *unlink_path)
{
	struct migration_dest *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->c = c;
	d->listen_fd = listen_fd;
	d->fd = -1;
	if (unlink_path)
		snprintf(d->unlink_path, sizeof(d->unlink_path), "%s", unlink_path);
	d->recv_op.complete = on_recv;
	mig_dest_init(&d->stream, &dest_ops, d);
	int ret = evloop_watch(c->loop, &d->listen_watch, listen_fd, POLLIN, on_listen);
	if (ret) {
		mig_dest_free(&d->stream);
		free(d);
		return ret;
	}
	c->incoming = d;
	return 0;
}
