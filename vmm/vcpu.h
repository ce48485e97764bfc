/* vCPU threads: each runs the KVM_RUN loop and nothing else. Port I/O and
 * MMIO exits go to the VM's buses; emulation failures go to emulate.c;
 * reset and fatal errors become a stop request to the VMM thread. */
#ifndef EMBER_VCPU_H
#define EMBER_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct vm;

/* Exits the vCPU thread handled, for metrics: counts and the time each
 * took to handle (µs). Written by the vCPU thread, read by any. */
enum vcpu_exit_kind { VCPU_EXIT_IO_IN, VCPU_EXIT_IO_OUT, VCPU_EXIT_MMIO_READ, VCPU_EXIT_MMIO_WRITE, VCPU_NEXITS };
struct vcpu_stats {
	atomic_ullong exits[VCPU_NEXITS];
	atomic_ullong sum_us[VCPU_NEXITS], min_us[VCPU_NEXITS], max_us[VCPU_NEXITS];
	atomic_ullong failures;     /* errors that stopped the VM */
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	struct vcpu_stats stats;
};

/* Create vCPU id and map its kvm_run. Returns 0 or -errno (logged). */
int vcpu_create(struct vm *vm, struct vcpu *vcpu, unsigned id);
void vcpu_destroy(struct vcpu *vcpu);

/* Start vCPU 0's thread now, at process start, its seccomp filter
 * installed: vcpu_start() then hands it vCPU 0 instead of creating a
 * thread. Optional. */
void vcpu_prepare(void);

/* Start the vCPU's thread (KVM_RUN loop). Returns 0 or -errno. vCPU 0
 * goes to the thread vcpu_prepare() made, which runs it only from
 * vcpu_release_prepared(): the VMM thread calls that once it has answered
 * the request that started the VM, because the woken thread can take the
 * VMM thread's CPU (for milliseconds here) and delay the answer. */
int vcpu_start(struct vcpu *vcpu);
void vcpu_release_prepared(void);

/* Make the vCPU leave KVM_RUN soon (for a pause or a stop). */
void vcpu_kick(struct vcpu *vcpu);

/* Make the vCPU leave KVM_RUN and its thread return; joins the thread. */
void vcpu_stop(struct vcpu *vcpu);

#endif
