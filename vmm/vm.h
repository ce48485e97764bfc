/* The KVM virtual machine: /dev/kvm, the VM fd, guest RAM slots, the
 * in-kernel irqchip and PIT, the I/O buses, the vCPUs, and the request to
 * stop that any thread may raise. */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "emulate.h"
#include "memory.h"

#define VM_MAX_VCPUS 32

struct vcpu;

struct vm {
	int kvm_fd;
	int vm_fd;
	int run_size;            /* size of each vCPU's kvm_run mapping */
	struct guest_mem mem;
	/* A File restore into 2 MiB pages: the thread filling them on first
	 * touch (snapshot/file_faults.h), or NULL. */
	struct file_faults *faults;
	unsigned mem_slots;      /* KVM slots of guest memory (RAM and the hotplug region) */
	uint64_t hotplug_slot;   /* bytes per slot of the hotplug region */
	unsigned extra_slots;    /* memory slots after those (vm_add_memory) */
	struct bus pio;
	struct bus mmio;
	unsigned nvcpus;
	bool smt;                /* two threads per core in the guest's topology */
	struct vcpu *vcpus;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, before per-vCPU edits */
	/* vCPU 0, created with a prepared VM (vm_prepare) until vcpu_create()
	 * takes it; -1 / NULL otherwise. */
	int vcpu0_fd;
	struct kvm_run *vcpu0_run;

	int stop_fd;             /* eventfd: written once when the VM must stop */
	atomic_int stop_requested;
	int exit_code;           /* ember's exit status once stopped */

	struct emu_stats emu;    /* instructions emulated in userspace */
	bool track_dirty;        /* KVM logs the guest's writes to RAM */
	/* The request that started the VM (InstanceStart, or a snapshot load
	 * when restored), CLOCK_MONOTONIC: vCPU 0 logs how long after it the
	 * guest ran, the VMM's own share of a start. */
	uint64_t start_request_ns;
	bool restored;

	/* Pausing: vCPU threads park between KVM_RUN calls (vcpu.c). */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;  /* parked count changed, or resume */
	atomic_bool pause_requested;
	unsigned parked;
};

/* Where guest RAM comes from. */
struct vm_memory {
	int fd;                  /* a memory file to map privately, or -1: anonymous */
	bool track_dirty;        /* dirty-page tracking, for diff snapshots */
	enum mem_pages pages;    /* machine-config huge_pages */
	bool ksm;                /* machine-config ember_ksm */
	enum mem_kind kind;      /* machine-config ember_mem_backend (a restore's File */
	const char *path;        /* memory file is then copied into it), its file */
	int numa_node;           /* machine-config ember_numa_node, or -1 */
	/* virtio-mem: a hotplug region of this many bytes after RAM (in the
	 * same mapping and memory file), as KVM slots of hotplug_slot bytes. */
	uint64_t hotplug_bytes, hotplug_slot;
};

/* Start creating the configuration-independent part of the VM (the VM
 * with its irqchip and PIT, and vCPU 0, which every VM has) on a thread of
 * its own, at process start: vm_create() then takes it instead of waiting
 * for KVM. Optional. */
void vm_prepare(void);

/* Open /dev/kvm, create the VM with mem_bytes of RAM, the irqchip and
 * the PIT (or take the prepared one). Returns 0, or -errno with the
 * reason in err. */
int vm_create(struct vm *vm, uint64_t mem_bytes, unsigned nvcpus, const struct vm_memory *src,
	      char *err, size_t errlen);

/* OR the pages written since the last call (the guest's, from KVM's dirty
 * log, and ember's own) into bitmap: one bit per 4 KiB page of the RAM
 * mapping, in memory-file order. Clears the logs. Returns 0 or -errno. */
int vm_take_dirty(struct vm *vm, uint64_t *bitmap);
/* Start dirty page tracking on a VM that runs without it (a live
 * migration asks for it). Every page counts as dirty to begin with, so a
 * later Diff snapshot still holds what the guest wrote before. 0 or -errno. */
int vm_track_dirty_start(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Map host memory [host, host+size) (page-aligned) at guest-physical gpa,
 * as a memory slot of its own outside RAM (a virtio-pmem region);
 * read_only: the guest's writes exit to ember as MMIO. Setup time only.
 * Returns the slot number, or -errno (-EOPNOTSUPP: this host's KVM has no
 * read-only slots). */
int vm_add_memory(struct vm *vm, uint64_t gpa, uint64_t size, void *host, bool read_only);
/* Remove a slot vm_add_memory made. */
void vm_remove_memory(struct vm *vm, int slot);

/* An eventfd that raises GSI gsi (edge) each time it is written. */
int vm_irqfd(struct vm *vm, unsigned gsi);

/* Have the guest's 4-byte MMIO write of value at addr signal eventfd fd
 * in the kernel, without an exit to ember. Returns 0 or -errno. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t value, int fd);

/* Park every started vCPU thread outside KVM_RUN, with any I/O exit the
 * guest was in completed, so the vCPUs' state can be read consistently.
 * Returns 0, or -ESHUTDOWN if the VM is stopping. VMM thread only. */
int vm_pause_vcpus(struct vm *vm);
/* Let the parked vCPUs run again. */
void vm_resume_vcpus(struct vm *vm);

/* Ask the VM to stop; ember exits with code. The first request wins. Safe
 * from any thread. */
void vm_request_stop(struct vm *vm, int code, const char *why);

#endif
