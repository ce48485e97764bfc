#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot/cpu_template.h"
#include "snapshot/file_faults.h"
#include "layout.h"
#include "log.h"
#include "vcpu.h"

/* Guest memory's KVM slot n: a RAM region each, then the hotplug region
 * in slices of hotplug_slot bytes (virtio-mem's slot_size_mib). False
 * past the last. */
static bool mem_slot(const struct vm *vm, unsigned n, struct mem_region *out)
{
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		uint64_t piece = r->hotplug && vm->hotplug_slot ? vm->hotplug_slot : r->size;
		uint64_t count = r->size / piece;
		if (n < count) {
			*out = (struct mem_region){ r->gpa + n * piece, piece, r->host + n * piece, r->hotplug };
			return true;
		}
		n -= (unsigned)count;
	}
	return false;
}

static int set_memory_slots(struct vm *vm)
{
	struct mem_region r;
	for (unsigned i = 0; mem_slot(vm, i, &r); i++) {
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = r.gpa,
			.memory_size = r.size,
			.userspace_addr = (uint64_t)(uintptr_t)r.host,
			.flags = vm->track_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return -errno;
		vm->mem_slots = i + 1;
	}
	return 0;
}

static int get_supported_cpuid(struct vm *vm)
{
	for (int nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			cpu_host_override_apply(c); /* tests only: see cpu_template.h */
			vm->cpuid = c;
			return 0;
		}
		int err = errno;
		free(c);
		if (err != E2BIG)
			return -err;
	}
	return -E2BIG;
}

/* The part of a VM that no configuration decides: /dev/kvm and its
 * capabilities, the VM with its interrupt controllers and PIT, and the
 * CPUID KVM supports. Sets kvm_fd, vm_fd, run_size and cpuid; on failure
 * the caller closes what was opened. */
static int create_kvm_vm(struct vm *vm, char *errbuf, size_t errlen)
{
	int err = 0;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "cannot open /dev/kvm: %s", strerror(errno));
		goto fail;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		err = -EINVAL;
		snprintf(errbuf, errlen, "KVM API version %d, expected %d", api, KVM_API_VERSION);
		goto fail;
	}
	static const struct { int cap; const char *name; } required[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
		{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			err = -ENOTSUP;
			snprintf(errbuf, errlen, "KVM lacks %s", required[i].name);
			goto fail;
		}
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		err = -errno;
		snprintf(errbuf, errlen, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		goto fail;
	}

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS) < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		goto fail;
	}
	uint64_t ident = LAYOUT_KVM_IDENTITY_MAP;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto fail;
	}
	/* The PIT's speaker port is not emulated: nothing listens. */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "KVM_CREATE_PIT2: %s", strerror(errno));
		goto fail;
	}
	/* Report emulation failures with the instruction bytes, so the
	 * userspace fallback (emulate.c) need not fetch them. Optional. */
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = { 1 } };
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		log_debug("KVM_CAP_EXIT_ON_EMULATION_FAILURE unavailable: %s", strerror(errno));
	err = get_supported_cpuid(vm);
	if (err)
		snprintf(errbuf, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-err));
fail:
	return err;
}

/* vCPU 0 of a prepared VM: creating a vCPU and mapping its kvm_run costs
 * KVM as much as a tenth of a millisecond. Optional: without it,
 * vcpu_create() makes vCPU 0 like any other. */
static void create_vcpu0(struct vm *vm)
{
	int fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0UL);
	if (fd < 0)
		return;
	void *run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (run == MAP_FAILED) {
		close(fd);
		return;
	}
	vm->vcpu0_fd = fd;
	vm->vcpu0_run = run;
}

/* A VM made ahead of time on its own thread (vm_prepare), so a start or
 * restore need not wait for KVM to build one. */
static struct {
	pthread_t thread;
	bool started, taken;
	int err;
	struct vm vm;           /* kvm_fd, vm_fd, run_size, cpuid, vcpu0_* only */
} prepared;

static void *prepare_thread(void *arg)
{
	char errbuf[160];
	(void)arg;
	prepared.err = create_kvm_vm(&prepared.vm, errbuf, sizeof(errbuf));
	if (!prepared.err)
		create_vcpu0(&prepared.vm);
	return NULL;
}

void vm_prepare(void)
{
	prepared.vm.kvm_fd = prepared.vm.vm_fd = prepared.vm.vcpu0_fd = -1;
	if (pthread_create(&prepared.thread, NULL, prepare_thread, NULL) == 0)
		prepared.started = true;
}

/* Move the prepared VM into vm; false if there is none (never prepared,
 * already used, or its creation failed: then the caller creates one and
 * reports the error itself). */
static bool take_prepared(struct vm *vm)
{
	if (!prepared.started || prepared.taken)
		return false;
	pthread_join(prepared.thread, NULL);
	prepared.taken = true;
	if (prepared.err) {
		free(prepared.vm.cpuid);
		if (prepared.vm.vm_fd >= 0)
			close(prepared.vm.vm_fd);
		if (prepared.vm.kvm_fd >= 0)
			close(prepared.vm.kvm_fd);
		return false;
	}
	vm->kvm_fd = prepared.vm.kvm_fd;
	vm->vm_fd = prepared.vm.vm_fd;
	vm->run_size = prepared.vm.run_size;
	vm->cpuid = prepared.vm.cpuid;
	vm->vcpu0_fd = prepared.vm.vcpu0_fd;
	vm->vcpu0_run = prepared.vm.vcpu0_run;
	return true;
}

int vm_create(struct vm *vm, uint64_t mem_bytes, unsigned nvcpus, const struct vm_memory *src,
	      char *errbuf, size_t errlen)
{
	int err;
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = vm->vcpu0_fd = -1;
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->nvcpus = nvcpus;
	bus_init(&vm->pio);
	bus_init(&vm->mmio);
	if (!take_prepared(vm) && (err = create_kvm_vm(vm, errbuf, errlen)))
		goto fail;

	/* The hotplug region is the end of the same mapping (and memory file). */
	uint64_t map_bytes = mem_bytes + src->hotplug_bytes;
	struct mem_opts o = { .pages = src->pages, .kind = src->kind, .file_fd = -1, .numa_node = src->numa_node };
	if (src->kind == MEM_KIND_FILE && (o.file_fd = mem_open_file(src->path, map_bytes, errbuf, errlen)) < 0) {
		err = o.file_fd;
		goto fail;
	}
	/* 2 MiB pages cannot map the file: they are filled from it on first
	 * touch by a thread of ember's, registered before anything touches them. */
	bool lazy_huge = src->fd >= 0 && src->pages == MEM_PAGES_2M && src->kind == MEM_KIND_ANON;
	if (src->fd >= 0 && !lazy_huge)
		err = mem_init_file(&vm->mem, map_bytes, src->fd, &o);
	else
		err = mem_init_opts(&vm->mem, map_bytes, &o);
	if (err && src->numa_node >= 0 && (err == -EINVAL || err == -EPERM || err == -ENOSYS)) {
		snprintf(errbuf, errlen, "machine-config.ember_numa_node: mbind(MPOL_BIND) of guest memory to node %d: %s",
			 src->numa_node, strerror(-err));
		goto fail;
	}
	if (!err && src->hotplug_bytes) {
		vm->hotplug_slot = src->hotplug_slot;
		if (!mem_set_hotplug(&vm->mem, src->hotplug_bytes, LAYOUT_HOTPLUG_ALIGN))
			err = -EINVAL;
	}
	if (err == -ENOMEM && src->pages == MEM_PAGES_2M) {
		/* The pool is short: say by how much, and where it is set. */
		long free_pages = mem_huge_free();
		char have[64] = "";
		if (free_pages >= 0)
			snprintf(have, sizeof(have), ", the host has %ld", free_pages);
		snprintf(errbuf, errlen,
			 "Invalid Memory Configuration: Cannot create mmap region: Out of memory (os error %d) "
			 "(machine-config.huge_pages \"2M\": the guest's %llu MiB need %llu free 2 MiB huge pages%s; "
			 "reserve more in /proc/sys/vm/nr_hugepages)",
			 ENOMEM, (unsigned long long)(mem_bytes >> 20), (unsigned long long)(mem_bytes / MEM_HUGE_2M), have);
		goto fail;
	}
	if (!err && src->track_dirty)
		err = mem_track_dirty(&vm->mem, false);
	vm->track_dirty = src->track_dirty;
	if (err) {
		snprintf(errbuf, errlen,
			 "Invalid Memory Configuration: Cannot create mmap region: %s (os error %d) (%llu MiB of guest memory)",
			 /* Firecracker's words (its C library's) for ENOMEM */
			 -err == ENOMEM ? "Out of memory" : strerror(-err), -err, (unsigned long long)(mem_bytes >> 20));
		goto fail;
	}
	if (src->ksm && (err = mem_merge(&vm->mem))) {
		snprintf(errbuf, errlen, "machine-config.ember_ksm: madvise(MADV_MERGEABLE) of guest memory: %s%s",
			 strerror(-err), err == -EINVAL ? " (a host kernel without KSM?)" : "");
		goto fail;
	}
	err = set_memory_slots(vm);
	if (err) {
		snprintf(errbuf, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-err));
		goto fail;
	}
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (lazy_huge && (err = file_faults_start(&vm->faults, &vm->mem, src->fd, vm, errbuf, errlen)))
		goto fail;
	return 0;

fail:
	vm_destroy(vm);
	return err;
}

void vm_destroy(struct vm *vm)
{
	file_faults_stop(vm->faults);
	vm->faults = NULL;
	mem_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	free(vm->cpuid);
	vm->cpuid = NULL;
	if (vm->vcpu0_run)
		munmap(vm->vcpu0_run, (size_t)vm->run_size);
	if (vm->vcpu0_fd >= 0)
		close(vm->vcpu0_fd);
	vm->vcpu0_run = NULL;
	vm->vcpu0_fd = -1;
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->stop_fd = vm->vm_fd = vm->kvm_fd = -1;
}

int vm_add_memory(struct vm *vm, uint64_t gpa, uint64_t size, void *host, bool read_only)
{
	if (read_only && ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0)
		return -EOPNOTSUPP;
	struct kvm_userspace_memory_region slot = {
		.slot = vm->mem_slots + vm->extra_slots,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
		.flags = read_only ? KVM_MEM_READONLY : 0,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return -errno;
	vm->extra_slots++;
	return (int)slot.slot;
}

void vm_remove_memory(struct vm *vm, int slot)
{
	struct kvm_userspace_memory_region r = { .slot = (uint32_t)slot };
	ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r); /* size 0 deletes it */
}

int vm_irqfd(struct vm *vm, unsigned gsi)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = gsi };
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t value, int fd)
{
	struct kvm_ioeventfd ioev = {
		.datamatch = value,
		.addr = addr,
		.len = 4,
		.fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &ioev) < 0 ? -errno : 0;
}

int vm_track_dirty_start(struct vm *vm)
{
	if (vm->track_dirty)
		return 0;
	int err = vm->mem.dirty ? 0 : mem_track_dirty(&vm->mem, true);
	if (err)
		return err;
	vm->track_dirty = true;
	if ((err = set_memory_slots(vm))) {
		vm->track_dirty = false;
		set_memory_slots(vm); /* the slots as they were */
	}
	return err;
}

int vm_take_dirty(struct vm *vm, uint64_t *bitmap)
{
	if (!vm->track_dirty)
		return -EINVAL;
	struct mem_region r;
	for (unsigned i = 0; mem_slot(vm, i, &r); i++) {
		uint64_t pages = r.size / 4096;
		uint64_t *log = calloc((size_t)((pages + 63) / 64), sizeof(uint64_t));
		if (!log)
			return -ENOMEM;
		struct kvm_dirty_log d = { .slot = i, .dirty_bitmap = log };
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0) {
			int err = -errno;
			free(log);
			return err;
		}
		uint64_t first = (uint64_t)(r.host - vm->mem.host) / 4096;
		for (uint64_t p = 0; p < pages; p++)
			if (log[p / 64] & (1ULL << (p % 64)))
				bitmap[(first + p) / 64] |= 1ULL << ((first + p) % 64);
		free(log);
	}
	mem_take_dirty(&vm->mem, bitmap);
	return 0;
}

int vm_pause_vcpus(struct vm *vm)
{
	unsigned started = 0;
	atomic_store(&vm->pause_requested, true);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].thread_started) {
			vcpu_kick(&vm->vcpus[i]);
			started++;
		}
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked < started && !atomic_load(&vm->stop_requested))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	if (atomic_load(&vm->stop_requested)) {
		vm_resume_vcpus(vm);
		return -ESHUTDOWN;
	}
	return 0;
}

void vm_resume_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_request_stop(struct vm *vm, int code, const char *why)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&vm->stop_requested, &expected, 1))
		return;
	vm->exit_code = code;
	log_info("stopping: %s (exit status %d)", why, code);
	uint64_t one = 1;
	ssize_t r = write(vm->stop_fd, &one, sizeof(one));
	(void)r;
	/* Wake parked vCPUs and a waiting pause. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}
