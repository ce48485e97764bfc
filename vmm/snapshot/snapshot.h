/* Snapshots of a paused machine, and machines restored from them.
 *
 * A snapshot is two files: the state (snapfile.h: the configuration as
 * JSON, the VM's interrupt controllers and clocks, every vCPU's registers,
 * every device) and the guest memory, laid out as the guest's RAM regions
 * one after the other. A Full memory file holds all of RAM and is sparse
 * where RAM is zero; a Diff memory file holds only the pages written since
 * the previous snapshot (KVM's dirty log plus the pages ember's devices
 * wrote), at their offsets, and is applied onto its base with
 * snapshot_merge_diff(). An identity page after guest memory ties the
 * memory file to its state file (memfile.h). */
#ifndef EMBER_SNAPSHOT_H
#define EMBER_SNAPSHOT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../action.h"
#include "../config.h"
#include "../vm.h"
#include "memfile.h"

struct machine;

#define SNAP_MAX_MSRS 256
#define SNAP_MAX_CPUID 256   /* KVM's own limit on a vCPU's CPUID entries */
#define SNAP_MAX_DEVICES (CONFIG_MAX_DRIVES + CONFIG_MAX_NETS + CONFIG_MAX_PMEMS + 2)

struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool has_xsave;
	/* struct kvm_xsave's 4 KiB region (the struct ends in a flexible
	 * array, so it cannot sit in the middle of this one), if has_xsave;
	 * else fpu. */
	uint8_t xsave[4096] __attribute__((aligned(8)));
	struct kvm_fpu fpu;
	bool has_xcrs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[SNAP_MAX_MSRS];
	/* The CPUID the guest saw (its CPU template included): restored as
	 * it was, on a host that can provide every feature it announces. */
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 cpuid[SNAP_MAX_CPUID];
};

struct snap_blob {
	const uint8_t *p;
	size_t len;
};

/* A decoded, validated state file. Device sections stay as bytes (they
 * point into the file image) until a machine exists to take them. */
struct snapshot_image {
	struct vmm_config cfg;      /* as it was at snapshot time */
	struct memfile_id mem;      /* the memory file it belongs to */
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	unsigned nvcpus;
	struct snap_vcpu *vcpus;    /* nvcpus, malloc'd */
	bool has_cpuid;             /* each vCPU's CPUID is in vcpus (not in older files) */
	/* What KVM supported on the host the snapshot was taken on (with
	 * has_cpuid): a feature the guest has from that host's CPU must be on
	 * this one's too. */
	uint32_t nsource_cpuid;
	struct kvm_cpuid_entry2 source_cpuid[SNAP_MAX_CPUID];
	struct snap_blob serial, i8042;
	struct snap_blob mmds;      /* the metadata store's JSON (checked), len 0 if none */
	unsigned ndevices;
	struct snap_blob devices[SNAP_MAX_DEVICES];
};

/* Write the paused machine's state and memory (see memfile.h and
 * newfile.h): both under new names, the memory file renamed into place
 * first and the state file last. Diff needs dirty page tracking. Returns
 * 0, or -errno with the reason in err; a failure leaves the files at both
 * paths as they were (or, if only the last rename failed, a state file
 * that refuses the new memory file) and no temporaries behind. */
int snapshot_save(struct machine *m, const struct vmm_config *cfg, const struct snapshot_create *req,
		  char *err, size_t errlen);

/* The paused machine's state as a state file image, *image (malloc'd) of
 * *len bytes, for a live migration: its memory section names a new
 * generation and no memory file. Devices must be idle. Returns 0, or
 * -errno with the reason in err. */
int snapshot_state_image(struct machine *m, const struct vmm_config *cfg, uint8_t **image, size_t *len,
			 char *err, size_t errlen);

/* Decode and validate a state file image (header, checksum, every section,
 * the configuration). Returns 0, or -EINVAL with the reason in err. On
 * success release img with snapshot_image_free(). */
int snapshot_parse(const uint8_t *file, size_t len, struct snapshot_image *img, char *err, size_t errlen);
void snapshot_image_free(struct snapshot_image *img);

/* Put the saved state into a machine built from img->cfg (vCPUs created,
 * devices built, nothing started). The saved CPUID goes back first, and
 * only if this host's KVM supports every CPU feature it announces (else
 * -EINVAL naming them). Returns 0, or -errno with the reason in err. */
int snapshot_apply(struct machine *m, const struct snapshot_image *img, char *err, size_t errlen);

/* Write the pages of a Diff memory file onto its base: both ember memory
 * files of the same size, the base the one the diff applies onto (its
 * generation is the diff's base). The base then carries the diff's
 * generation, so the diff's state file accepts it. Returns 0, or -errno
 * with the reason in err. */
int snapshot_merge_diff(const char *base_path, const char *diff_path, char *err, size_t errlen);

#endif
