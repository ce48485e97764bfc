/* A machine: the VM and everything attached to it, built from a
 * vmm_config. Building either succeeds completely or releases everything
 * it made, so a failed InstanceStart leaves ember as it was; only
 * machine_start() arms event-loop watches and starts vCPUs. */
#ifndef EMBER_MACHINE_H
#define EMBER_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "boot/boot.h"
#include "config.h"
#include "devices/boot_timer.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "io/evloop.h"
#include "layout.h"
#include "vm.h"

struct virtio_blk;
struct virtio_net;
struct virtio_pmem;
struct virtio_vsock;
struct virtio_rng;
struct virtio_balloon;
struct virtio_mem;

struct mmds;

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
	struct virtio_pmem *pmem[CONFIG_MAX_PMEMS]; /* /dev/pmemN order */
	unsigned npmem;
	struct virtio_vsock *vsock;
	struct virtio_rng *rng;
	struct virtio_balloon *balloon;
	struct virtio_mem *hotplug;   /* virtio-mem, with memory-hotplug */
	char cmdline[4096];           /* what the guest kernel was given */
	/* The virtio-mmio devices as the guest is told of them (command line
	 * and ACPI), in attach order. */
	struct boot_mmio_dev mmio_devs[IRQ_VIRTIO_COUNT];
	unsigned nmmio_devs;
	int mem_fd;                   /* the memory file RAM is mapped from, or -1 */
	/* The generation of the snapshot memory file RAM last matched (the
	 * last snapshot, or the one restored): a Diff's base. 0: none. */
	uint64_t mem_generation;
	bool running;                 /* vCPUs started */
	struct mmds *mmds;            /* the metadata service (the controller's; never NULL once built) */
};

struct machine_params {
	const struct vmm_config *cfg;
	struct evloop *loop;
	bool boot_timer;
	const struct timespec *start_wall, *start_cpu; /* for the boot timer */
	/* Restoring a snapshot: no kernel is loaded and the vCPUs get no boot
	 * registers (snapshot_apply sets everything). */
	bool restoring;
	int mem_fd;                   /* memory file to map (restore from File), or -1 */
	struct mmds *mmds;            /* the metadata service its net devices may answer for */
};

/* Build the whole machine. Returns 0, or -errno with a one-line reason in
 * err after undoing everything. */
int machine_build(struct machine *m, const struct machine_params *p, char *err, size_t errlen);

/* Open the file the guest console goes to (serial_out_path): a regular
 * file, created if missing, appended to; never waits (see hostfile.h).
 * Returns the fd, or -errno with a one-line reason in err. */
int machine_open_serial_out(const char *path, char *err, size_t errlen);

/* Release a built machine that was never started (a restore that failed
 * half-way). */
void machine_destroy(struct machine *m);

/* Arm the devices' watches and start the vCPUs. */
int machine_start(struct machine *m, char *err, size_t errlen);
/* The same in two steps, for a restore that may stay paused: the devices
 * (then their restored hooks), and later the vCPUs. */
int machine_start_devices(struct machine *m, bool restored, char *err, size_t errlen);
int machine_start_vcpus(struct machine *m, char *err, size_t errlen);

/* Pause: park the vCPUs and stop the devices starting work. Returns 0,
 * or -ESHUTDOWN if the VM is stopping. machine_idle() then says when the
 * devices' in-flight I/O has finished (a snapshot needs that). */
int machine_pause(struct machine *m);
bool machine_idle(struct machine *m);
void machine_resume(struct machine *m);

/* The virtio devices in their fixed order (as machine_build made them).
 * Returns how many; devs has room for MACHINE_MAX_VIRTIO. */
#define MACHINE_MAX_VIRTIO (CONFIG_MAX_DRIVES + CONFIG_MAX_NETS + CONFIG_MAX_PMEMS + 4)
struct virtio_dev;
unsigned machine_virtio_devices(struct machine *m, struct virtio_dev **devs);

/* Stop the vCPUs (at exit). */
void machine_stop(struct machine *m);

/* The drive or network interface with that id, or NULL. */
struct virtio_blk *machine_drive(struct machine *m, const char *drive_id);
struct virtio_net *machine_net(struct machine *m, const char *iface_id);
struct virtio_pmem *machine_pmem(struct machine *m, const char *id);

/* Debug-level log of every device's counters (at exit). */
void machine_log_counters(struct machine *m);

#endif
