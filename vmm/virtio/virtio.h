/* The virtio-mmio transport (virtio 1.2, section 4.2; version 2, no legacy)
 * and the contract between it and the devices.
 *
 * The transport alone decodes registers and runs the device-status state
 * machine and feature negotiation. A device supplies a const struct
 * virtio_ops and its own state. Queue notifications never reach a vCPU
 * thread: each queue's QueueNotify write is a KVM ioeventfd that the VMM
 * thread's event loop polls, and interrupts go out through an irqfd.
 *
 * Locking: vd->lock guards the transport and the device state. Register
 * accesses take it on vCPU threads; notify() and I/O completions run under
 * it on the VMM thread. Device callbacks are always called with it held. */
#ifndef EMBER_VIRTIO_H
#define EMBER_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../io/evloop.h"
#include "virtq.h"

struct vm;
struct virtio_dev;
struct snap_writer;
struct snap_reader;

#define VIRTIO_MAX_QUEUES 5   /* virtio-balloon: inflate, deflate, statistics, hinting, reporting */

struct virtio_ops {
	const char *name;        /* for logs and metrics: "block", "net", ... */
	uint32_t device_id;      /* VIRTIO_ID_* */
	unsigned num_queues;
	/* Device-specific feature bits; the transport adds VERSION_1 and
	 * EVENT_IDX. */
	uint64_t (*features)(struct virtio_dev *vd);
	/* Device configuration space. Out-of-range reads return zeros; the
	 * device bounds offset + len itself. */
	void (*config_read)(struct virtio_dev *vd, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_dev *vd, uint32_t offset, const uint8_t *data, uint32_t len);
	/* The driver set DRIVER_OK; queues are mapped. Runs on a vCPU thread:
	 * no io_uring submissions here. Non-zero marks the device failed. */
	int (*activate)(struct virtio_dev *vd);
	/* The driver reset the device: drop all queue-related state. Runs on
	 * a vCPU thread, like activate. */
	void (*reset)(struct virtio_dev *vd);
	/* Then, on the VMM thread: release what the device holds in the event
	 * loop (sockets, watches). May be NULL. */
	void (*reset_io)(struct virtio_dev *vd);
	/* Queue q has new buffers (VMM thread). */
	void (*notify)(struct virtio_dev *vd, unsigned q);
	/* The device's counters as "name=value" words, for logs and metrics. */
	void (*counters)(struct virtio_dev *vd, char *buf, size_t len);
	/* Arm the device's own event-loop watches (VMM thread, at start). */
	int (*start_io)(struct virtio_dev *vd);
	/* Release the device's own resources; only before start_io. */
	void (*destroy)(struct virtio_dev *vd);

	/* Pausing (VMM thread, lock held). While vd->paused the device starts
	 * no work that touches guest memory. pause() cancels what might never
	 * finish on its own (a tap read waiting for a frame); idle() says
	 * nothing is in flight any more. Both may be NULL. */
	void (*pause)(struct virtio_dev *vd);
	bool (*idle)(struct virtio_dev *vd);
	/* Snapshots: the device's own state, after the transport's. restore()
	 * runs before start_io, on a device built from the same configuration;
	 * it validates what it reads (sr_fail) and returns 0 or -EINVAL. Both
	 * may be NULL (nothing of its own to keep). */
	void (*save)(struct virtio_dev *vd, struct snap_writer *w);
	int (*restore)(struct virtio_dev *vd, struct snap_reader *r);
	/* After a restore, on the VMM thread once the loop runs (may be NULL). */
	void (*restored)(struct virtio_dev *vd);
};

struct virtio_notify {
	struct evloop_watch watch;
	struct virtio_dev *vd;
	unsigned queue;
	int fd;
};

struct virtio_stats {
	uint64_t notifies;
	uint64_t interrupts;
	uint64_t resets;
	uint64_t failures;       /* times the device went NEEDS_RESET */
};

struct virtio_dev {
	pthread_mutex_t lock;
	const struct virtio_ops *ops;
	void *dev;               /* the device's own state */
	struct vm *vm;
	struct evloop *loop;
	unsigned index;          /* n-th virtio device: address and IRQ follow */
	uint64_t base;
	unsigned irq;
	int irq_fd;

	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	uint64_t driver_features;
	uint32_t interrupt_status;
	uint32_t config_generation;
	bool active;             /* DRIVER_OK accepted, not broken */
	uint32_t generation;     /* bumped by every reset: stale completions check it */
	bool paused;             /* the VM is paused: start no new work */

	struct virtq vq[VIRTIO_MAX_QUEUES];
	struct virtio_notify notify[VIRTIO_MAX_QUEUES];
	int reset_fd;            /* eventfd: a reset needs reset_io on the VMM thread */
	struct evloop_watch reset_watch;
	struct virtio_stats stats;
};

/* Place device number index (address LAYOUT_VIRTIO_MMIO_BASE + index *
 * 4 KiB, GSI IRQ_VIRTIO_BASE + index) on the VM's MMIO bus, with an
 * ioeventfd per queue and an irqfd. Setup time only; nothing is armed on
 * the event loop yet, so a failed setup can still be undone with
 * virtio_dev_destroy(). Returns 0 or -errno. */
int virtio_dev_init(struct virtio_dev *vd, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct virtio_ops *ops, void *dev);

/* Start polling the queue notifications (and the device's own fds) on the
 * VMM thread's loop. Returns 0 or -errno. */
int virtio_dev_start_io(struct virtio_dev *vd);

/* Pause the device (VMM thread): see virtio_ops.pause. */
void virtio_dev_pause(struct virtio_dev *vd);
/* Nothing the device started is still in flight. */
bool virtio_dev_idle(struct virtio_dev *vd);
/* Carry on after a pause: look at every queue once for work that arrived
 * meanwhile. */
void virtio_dev_resume(struct virtio_dev *vd);

/* The transport's and the device's state into a snapshot; the device must
 * be paused and idle. */
void virtio_dev_save(struct virtio_dev *vd, struct snap_writer *w);
/* Back from a snapshot into a freshly built device (before start_io):
 * registers, queues (re-validated against guest memory) and the device's
 * own state. Returns 0 or -EINVAL with the reason in r->why. */
int virtio_dev_restore(struct virtio_dev *vd, struct snap_reader *r);

/* Undo virtio_dev_init (and the device's own setup), before start_io. */
void virtio_dev_destroy(struct virtio_dev *vd);

/* After pushing used buffers on queue q: interrupt the driver if it asked
 * for one. Lock held. */
void virtio_signal(struct virtio_dev *vd, unsigned q);

/* The guest broke the device's rules: stop using it, set NEEDS_RESET and
 * tell the driver with a configuration interrupt. The rest of the VM
 * carries on. Lock held. */
void virtio_fail(struct virtio_dev *vd, const char *why);

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);

/* The device's configuration space changed (a new disk size): bump the
 * generation and send a configuration interrupt. Lock held. */
void virtio_config_changed(struct virtio_dev *vd);

/* For config_read: copy len bytes at off from a device's configuration
 * structure of size bytes, if the range lies within it (else leave the
 * zeros the transport put there). */
void virtio_config_copy(const void *config, size_t size, uint32_t off, uint8_t *data, uint32_t len);

/* Transport and device counters as "name=value" words. Takes the lock. */
void virtio_counters(struct virtio_dev *vd, char *buf, size_t len);

/* The register interface (a bus_access_fn); exposed for tests. */
void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
