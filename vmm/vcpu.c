#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emulate.h"
#include "log.h"
#include "seccomp.h"
#include "vm.h"

/* Signal used to kick a vCPU thread out of KVM_RUN. Its handler does
 * nothing: the point is the EINTR (or immediate_exit) it causes. */
#define VCPU_KICK_SIGNAL (SIGRTMIN + 0)

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu_create(struct vm *vm, struct vcpu *vcpu, unsigned id)
{
	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->id = id;
	if (id == 0 && vm->vcpu0_fd >= 0) { /* made with the prepared VM */
		vcpu->fd = vm->vcpu0_fd;
		vcpu->run = vm->vcpu0_run;
		vm->vcpu0_fd = -1;
		vm->vcpu0_run = NULL;
		return 0;
	}
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		int err = -errno;
		log_error("KVM_CREATE_VCPU %u: %s", id, strerror(errno));
		return err;
	}
	void *run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (run == MAP_FAILED) {
		int err = -errno;
		log_error("mmap kvm_run %u: %s", id, strerror(errno));
		close(vcpu->fd);
		vcpu->fd = -1;
		return err;
	}
	vcpu->run = run;
	return 0;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->vm->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

static void handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	/* A "rep ins/outs" arrives as one exit with count > 1. */
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!bus_dispatch(&vcpu->vm->pio, run->io.port, data, run->io.size, is_write))
			log_ratelimited(LOG_DEBUG, "unhandled port %s 0x%x (size %u)",
					is_write ? "write" : "read", run->io.port, run->io.size);
		data += run->io.size;
	}
}

static void handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint32_t len = run->mmio.len;
	if (len == 0 || len > sizeof(run->mmio.data)) {
		log_ratelimited(LOG_WARN, "vcpu %u: MMIO access of %u bytes at 0x%llx ignored",
				vcpu->id, len, (unsigned long long)run->mmio.phys_addr);
		return;
	}
	if (!bus_dispatch(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len,
			  run->mmio.is_write))
		log_ratelimited(LOG_DEBUG, "unhandled MMIO %s 0x%llx (size %u)",
				run->mmio.is_write ? "write" : "read",
				(unsigned long long)run->mmio.phys_addr, len);
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t own_load(atomic_ullong *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static void own_store(atomic_ullong *a, uint64_t v)
{
	atomic_store_explicit(a, v, memory_order_relaxed);
}

/* One exit handled since t0 (µs). Only this thread writes its counters,
 * so plain relaxed loads and stores do (no locked read-modify-write on
 * the exit path); readers see each value whole. */
static void count_exit(struct vcpu_stats *st, enum vcpu_exit_kind k, uint64_t t0)
{
	uint64_t us = mono_us() - t0, n = own_load(&st->exits[k]);
	own_store(&st->exits[k], n + 1);
	own_store(&st->sum_us[k], own_load(&st->sum_us[k]) + us);
	if (n == 0 || us < own_load(&st->min_us[k])) /* 0 µs is a real minimum */
		own_store(&st->min_us[k], us);
	if (us > own_load(&st->max_us[k]))
		own_store(&st->max_us[k], us);
}

/* Returns false when the loop must end. */
static bool handle_exit(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_run *run = vcpu->run;
	char why[96];
	uint64_t t0;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		t0 = mono_us();
		handle_io(vcpu);
		count_exit(&vcpu->stats, run->io.direction == KVM_EXIT_IO_OUT ? VCPU_EXIT_IO_OUT : VCPU_EXIT_IO_IN, t0);
		return true;
	case KVM_EXIT_MMIO:
		t0 = mono_us();
		handle_mmio(vcpu);
		count_exit(&vcpu->stats, run->mmio.is_write ? VCPU_EXIT_MMIO_WRITE : VCPU_EXIT_MMIO_READ, t0);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_INTERNAL_ERROR:
		if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
		    emulate_failed_insn(vcpu) == 0)
			return true;
		snprintf(why, sizeof(why), "vcpu %u: KVM internal error (suberror %u)", vcpu->id,
			 run->internal.suberror);
		atomic_fetch_add(&vcpu->stats.failures, 1);
		vm_request_stop(vm, 1, why);
		return false;
	case KVM_EXIT_SHUTDOWN:
		/* A triple fault: on a PC that resets the machine. ember's VM
		 * has no reset, so a reset ends it, as with the i8042. */
		vm_request_stop(vm, 0, "guest reset (triple fault)");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			vm_request_stop(vm, 0, "guest reset");
		else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			vm_request_stop(vm, 0, "guest shutdown");
		else {
			snprintf(why, sizeof(why), "vcpu %u: system event %u", vcpu->id,
				 run->system_event.type);
			atomic_fetch_add(&vcpu->stats.failures, 1);
			vm_request_stop(vm, 1, why);
		}
		return false;
	case KVM_EXIT_HLT:
		vm_request_stop(vm, 0, "guest halted");
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "vcpu %u: KVM entry failed (reason 0x%llx)", vcpu->id,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		atomic_fetch_add(&vcpu->stats.failures, 1);
		vm_request_stop(vm, 1, why);
		return false;
	default:
		snprintf(why, sizeof(why), "vcpu %u: unexpected KVM exit %u", vcpu->id,
			 run->exit_reason);
		atomic_fetch_add(&vcpu->stats.failures, 1);
		vm_request_stop(vm, 1, why);
		return false;
	}
}

/* Wait while the VM is paused. Called right after a KVM_RUN that returned
 * EINTR: KVM has then completed any I/O exit the guest was in, so the
 * registers a snapshot reads are consistent. */
static void park(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_requested) && !atomic_load(&vm->stop_requested))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

/* What a vCPU thread does before it may run a guest: its name, its
 * seccomp filter (from here on the guest drives this thread), and the
 * kick signal let through. */
static void vcpu_thread_setup(unsigned id)
{
	char name[16];
	snprintf(name, sizeof(name), "ember-vcpu%u", id);
	pthread_setname_np(pthread_self(), name);
	snprintf(name, sizeof(name), "fc_vcpu %u", id); /* Firecracker's name, in log lines */
	log_set_thread_name(name);
	char err[160];
	if (seccomp_install(SECCOMP_ROLE_VCPU, err, sizeof(err)))
		die("vcpu %u: %s", id, err);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void run_vcpu(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	if (vcpu->id == 0 && vm->start_request_ns) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		uint64_t ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
		log_info("vcpu 0: entering the guest %llu us after the %s request",
			 (unsigned long long)((ns - vm->start_request_ns) / 1000),
			 vm->restored ? "snapshot load" : "InstanceStart");
	}
	while (!atomic_load(&vm->stop_requested)) {
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				if (atomic_load(&vm->pause_requested))
					park(vcpu);
				continue;
			}
			char why[96];
			snprintf(why, sizeof(why), "vcpu %u: KVM_RUN: %s", vcpu->id, strerror(errno));
			atomic_fetch_add(&vcpu->stats.failures, 1);
			vm_request_stop(vm, 1, why);
			break;
		}
		if (!handle_exit(vcpu))
			break;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	vcpu_thread_setup(vcpu->id);
	run_vcpu(vcpu);
	return NULL;
}

static int install_kick_handler(void)
{
	static atomic_int installed;
	if (atomic_exchange(&installed, 1))
		return 0;
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

/* vCPU 0's thread, started at process start by vcpu_prepare() with its
 * setup done: vcpu_start() assigns it vCPU 0 (assigned), and
 * vcpu_release_prepared() hands it over (vcpu), which wakes it. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t handed;
	pthread_t thread;
	bool started, taken;
	struct vcpu *assigned; /* VMM thread only */
	struct vcpu *vcpu;
} prepared = { .lock = PTHREAD_MUTEX_INITIALIZER, .handed = PTHREAD_COND_INITIALIZER };

static void *prepared_thread(void *arg)
{
	(void)arg;
	vcpu_thread_setup(0);
	pthread_mutex_lock(&prepared.lock);
	while (!prepared.vcpu)
		pthread_cond_wait(&prepared.handed, &prepared.lock);
	struct vcpu *vcpu = prepared.vcpu;
	pthread_mutex_unlock(&prepared.lock);
	run_vcpu(vcpu);
	return NULL;
}

void vcpu_prepare(void)
{
	if (install_kick_handler() == 0 && pthread_create(&prepared.thread, NULL, prepared_thread, NULL) == 0)
		prepared.started = true;
}

int vcpu_start(struct vcpu *vcpu)
{
	int err = install_kick_handler();
	if (err)
		return err;
	if (vcpu->id == 0 && prepared.started && !prepared.taken) {
		prepared.taken = true;
		prepared.assigned = vcpu;
		vcpu->thread = prepared.thread;
	} else if ((err = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu))) {
		log_error("cannot start vcpu %u thread: %s", vcpu->id, strerror(err));
		return -err;
	}
	vcpu->thread_started = true;
	return 0;
}

void vcpu_release_prepared(void)
{
	if (!prepared.assigned)
		return;
	pthread_mutex_lock(&prepared.lock);
	prepared.vcpu = prepared.assigned;
	pthread_cond_signal(&prepared.handed);
	pthread_mutex_unlock(&prepared.lock);
	prepared.assigned = NULL;
}

void vcpu_kick(struct vcpu *vcpu)
{
	/* immediate_exit covers a kick that lands just before KVM_RUN; it is
	 * set after the pause or stop request, so a thread that cleared it
	 * without seeing the request will see this store. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

void vcpu_stop(struct vcpu *vcpu)
{
	if (!vcpu->thread_started)
		return;
	vcpu_release_prepared(); /* a thread never handed its vCPU could not return */
	vcpu_kick(vcpu);
	/* A parked thread waits on the pause condition. */
	pthread_mutex_lock(&vcpu->vm->pause_lock);
	pthread_cond_broadcast(&vcpu->vm->pause_cond);
	pthread_mutex_unlock(&vcpu->vm->pause_lock);
	pthread_join(vcpu->thread, NULL);
	vcpu->thread_started = false;
}
