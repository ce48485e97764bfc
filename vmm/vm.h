/* The KVM virtual machine: /dev/kvm, the VM fd, guest RAM slots, the
 * in-kernel irqchip and PIT, the I/O buses, the vCPUs, and the request to
 * stop that any thread may raise. */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <linux/kvm.h>
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
	struct bus pio;
	struct bus mmio;
	unsigned nvcpus;
	bool smt;                /* two threads per core in the guest's topology */
	struct vcpu *vcpus;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, before per-vCPU edits */

	int stop_fd;             /* eventfd: written once when the VM must stop */
	atomic_int stop_requested;
	int exit_code;           /* ember's exit status once stopped */

	struct emu_stats emu;    /* instructions emulated in userspace */
};

/* Open /dev/kvm, create the VM with mem_bytes of RAM, the irqchip and
 * the PIT. Returns 0, or -errno with the reason in err. */
int vm_create(struct vm *vm, uint64_t mem_bytes, unsigned nvcpus, char *err, size_t errlen);
void vm_destroy(struct vm *vm);

/* An eventfd that raises GSI gsi (edge) each time it is written. */
int vm_irqfd(struct vm *vm, unsigned gsi);

/* Ask the VM to stop; ember exits with code. The first request wins. Safe
 * from any thread. */
void vm_request_stop(struct vm *vm, int code, const char *why);

#endif
