/* A machine: the VM and everything attached to it, built from a
 * vmm_config. Building either succeeds completely or releases everything
 * it made, so a failed InstanceStart leaves ember as it was; only
 * machine_start() arms event-loop watches and starts vCPUs. */
#ifndef EMBER_MACHINE_H
#define EMBER_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config.h"
#include "devices/boot_timer.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "io/evloop.h"
#include "vm.h"

struct virtio_blk;
struct virtio_net;
struct virtio_vsock;
struct virtio_rng;

struct machine {
	struct vm vm;
	struct serial serial;
	int serial_out_fd;            /* -1 when the console goes to stdout */
	struct i8042 i8042;
	struct boot_timer boot_timer;
	bool has_boot_timer;
	struct virtio_blk *blk[CONFIG_MAX_DRIVES]; /* root drive first */
	unsigned nblk;
	struct virtio_net *net[CONFIG_MAX_NETS];
	unsigned nnet;
	struct virtio_vsock *vsock;
	struct virtio_rng *rng;
	char cmdline[4096];           /* what the guest kernel was given */
	bool running;                 /* vCPUs started */
};

struct machine_params {
	const struct vmm_config *cfg;
	struct evloop *loop;
	bool boot_timer;
	const struct timespec *start_wall, *start_cpu; /* for the boot timer */
};

/* Build the whole machine. Returns 0, or -errno with a one-line reason in
 * err after undoing everything. */
int machine_build(struct machine *m, const struct machine_params *p, char *err, size_t errlen);

/* Arm the devices' watches and start the vCPUs. */
int machine_start(struct machine *m, char *err, size_t errlen);

/* Stop the vCPUs (at exit). */
void machine_stop(struct machine *m);

/* The drive or network interface with that id, or NULL. */
struct virtio_blk *machine_drive(struct machine *m, const char *drive_id);
struct virtio_net *machine_net(struct machine *m, const char *iface_id);

/* Debug-level log of every device's counters (at exit). */
void machine_log_counters(struct machine *m);

#endif
