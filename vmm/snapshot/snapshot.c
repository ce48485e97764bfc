#include "snapshot.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../api/config_json.h"
#include "../hostfile.h"
#include "../log.h"
#include "../machine.h"
#include "../boot/cpu_template.h"
#include "../mmds/mmds.h"
#include "../vcpu.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
#include "../virtio/rng.h"
#include "../virtio/vsock.h"
#include "memfile.h"
#include "newfile.h"
#include "snapfile.h"
#include "tags.h"
#include "working_set.h"

#define PAGE SNAP_PAGE

/* ---- machine state out of KVM --------------------------------------- */

static int get_msr_list(struct vm *vm, uint32_t *idx, uint32_t *n)
{
	struct {
		struct kvm_msr_list l;
		uint32_t more[1024];
	} list = { .l.nmsrs = 1024 };
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
		return -errno;
	uint32_t count = list.l.nmsrs < SNAP_MAX_MSRS ? list.l.nmsrs : SNAP_MAX_MSRS;
	memcpy(idx, list.l.indices, count * sizeof(uint32_t));
	*n = count;
	return 0;
}

/* The MSRs KVM lists and will read for this vCPU, one by one so an MSR it
 * refuses (a feature this CPU lacks) is skipped rather than fatal. */
static int get_msrs(struct vcpu *vcpu, const uint32_t *idx, uint32_t n, struct snap_vcpu *s)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} one;
	s->nmsrs = 0;
	for (uint32_t i = 0; i < n; i++) {
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.e.index = idx[i];
		int got = ioctl(vcpu->fd, KVM_GET_MSRS, &one);
		if (got < 0)
			return -errno;
		if (got == 1)
			s->msrs[s->nmsrs++] = one.e;
	}
	return 0;
}

static int save_vcpu(struct vcpu *vcpu, const uint32_t *msr_idx, uint32_t nmsr, bool xsave,
		     bool xcrs, struct snap_vcpu *s, const char **what)
{
	int fd = vcpu->fd;
#define GET(req, field, name) \
	do { if (ioctl(fd, req, field) < 0) { *what = name; return -errno; } } while (0)
	GET(KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	s->has_xsave = xsave;
	if (xsave)
		GET(KVM_GET_XSAVE, s->xsave, "KVM_GET_XSAVE");
	else
		GET(KVM_GET_FPU, &s->fpu, "KVM_GET_FPU");
	s->has_xcrs = xcrs;
	if (xcrs)
		GET(KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
	GET(KVM_GET_DEBUGREGS, &s->debugregs, "KVM_GET_DEBUGREGS");
	GET(KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");
	GET(KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	GET(KVM_GET_MP_STATE, &s->mp_state, "KVM_GET_MP_STATE");
	int err = get_msrs(vcpu, msr_idx, nmsr, s);
	if (err) {
		*what = "KVM_GET_MSRS";
		return err;
	}
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[SNAP_MAX_CPUID];
	} cpuid = { .hdr.nent = SNAP_MAX_CPUID };
	GET(KVM_GET_CPUID2, &cpuid, "KVM_GET_CPUID2");
	s->ncpuid = cpuid.hdr.nent;
	memcpy(s->cpuid, cpuid.e, s->ncpuid * sizeof(s->cpuid[0]));
#undef GET
	return 0;
}

static void put_cpuid(struct snap_writer *w, uint32_t tag, const struct kvm_cpuid_entry2 *e, uint32_t n)
{
	sw_begin(w, tag);
	sw_u32(w, n);
	for (uint32_t i = 0; i < n; i++, e++) {
		sw_u32(w, e->function);
		sw_u32(w, e->index);
		sw_u32(w, e->flags);
		sw_u32(w, e->eax);
		sw_u32(w, e->ebx);
		sw_u32(w, e->ecx);
		sw_u32(w, e->edx);
	}
	sw_end(w);
}

static void put_vcpu(struct snap_writer *w, const struct snap_vcpu *s)
{
	sw_begin(w, TAG_VCPU);
	sw_bytes(w, &s->regs, sizeof(s->regs));
	sw_bytes(w, &s->sregs, sizeof(s->sregs));
	sw_u8(w, s->has_xsave);
	if (s->has_xsave)
		sw_bytes(w, s->xsave, sizeof(s->xsave));
	else
		sw_bytes(w, &s->fpu, sizeof(s->fpu));
	sw_u8(w, s->has_xcrs);
	if (s->has_xcrs)
		sw_bytes(w, &s->xcrs, sizeof(s->xcrs));
	sw_bytes(w, &s->debugregs, sizeof(s->debugregs));
	sw_bytes(w, &s->lapic, sizeof(s->lapic));
	sw_bytes(w, &s->events, sizeof(s->events));
	sw_bytes(w, &s->mp_state, sizeof(s->mp_state));
	sw_u32(w, s->nmsrs);
	for (uint32_t i = 0; i < s->nmsrs; i++) {
		sw_u32(w, s->msrs[i].index);
		sw_u64(w, s->msrs[i].data);
	}
	sw_end(w);
	put_cpuid(w, TAG_CPUID, s->cpuid, s->ncpuid);
}

static int save_vm(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	struct kvm_irqchip chips[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER },
					{ .chip_id = KVM_IRQCHIP_PIC_SLAVE },
					{ .chip_id = KVM_IRQCHIP_IOAPIC } };
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	memset(&clock, 0, sizeof(clock));
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0) {
			snprintf(err, errlen, "KVM_GET_IRQCHIP: %s", strerror(errno));
			return -errno;
		}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0 || ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		snprintf(err, errlen, "KVM_GET_PIT2/KVM_GET_CLOCK: %s", strerror(errno));
		return -errno;
	}
	sw_begin(w, TAG_VM);
	for (int i = 0; i < 3; i++)
		sw_bytes(w, &chips[i], sizeof(chips[i]));
	sw_bytes(w, &pit, sizeof(pit));
	sw_u64(w, clock.clock);
	sw_end(w);
	put_cpuid(w, TAG_HOST_CPUID, vm->cpuid->entries,
		  vm->cpuid->nent < SNAP_MAX_CPUID ? vm->cpuid->nent : SNAP_MAX_CPUID);

	bool xsave = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0;
	bool xcrs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	uint32_t idx[SNAP_MAX_MSRS], nmsr = 0;
	int ret = get_msr_list(vm, idx, &nmsr);
	if (ret) {
		snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
		return ret;
	}
	struct snap_vcpu *s = malloc(sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		const char *what = "";
		memset(s, 0, sizeof(*s));
		if ((ret = save_vcpu(&vm->vcpus[i], idx, nmsr, xsave, xcrs, s, &what))) {
			snprintf(err, errlen, "vcpu %u: %s: %s", i, what, strerror(-ret));
			break;
		}
		put_vcpu(w, s);
	}
	free(s);
	return ret;
}

/* ---- guest memory out ------------------------------------------------ */

/* Write the pages whose bit is set in pick (all pages if NULL) to fd at
 * their offsets, runs at a time. skip_zero leaves zero pages as holes
 * (Full); a Diff must write them, since there a hole means "unchanged". */
static int write_pages(const struct guest_mem *mem, int fd, const uint64_t *pick, bool skip_zero,
		       uint64_t *written)
{
	uint64_t pages = mem->size / PAGE;
	unsigned char *resident = NULL;
	/* Untouched anonymous RAM is zero: mincore finds it without reading
	 * (and so without faulting in) every page. Not so a shared backing:
	 * a page of a host file need not be in the page cache to hold data,
	 * so every page is read; nor memory a page-fault handler still fills. */
	if (!mem->file_backed && !mem->shared && !mem->lazy && skip_zero) {
		resident = malloc((size_t)pages);
		if (resident && mincore(mem->host, mem->size, resident) < 0) {
			free(resident);
			resident = NULL;
		}
	}
	uint64_t run_start = 0, run_len = 0;
	int ret = 0;
	*written = 0;
	for (uint64_t pg = 0; pg <= pages && !ret; pg++) {
		bool take = false;
		if (pg < pages) {
			take = !pick || (pick[pg / 64] & (1ULL << (pg % 64)));
			if (take && resident && !(resident[pg] & 1))
				take = false;
			if (take && skip_zero && mem_page_is_zero(mem->host + pg * PAGE))
				take = false;
		}
		if (take) {
			if (!run_len)
				run_start = pg;
			run_len++;
			if (run_len < 256)
				continue;
		}
		if (run_len) {
			ret = memfile_pwrite(fd, mem->host + run_start * PAGE, (size_t)(run_len * PAGE),
					 (off_t)(run_start * PAGE));
			*written += run_len;
			run_len = 0;
			if (take) { /* this page starts the next run */
				run_start = pg;
				run_len = 1;
			}
		}
	}
	free(resident);
	return ret;
}

/* The paused VM's guest memory into fd, a new file: all of it (Full,
 * zero pages left as holes) or the pages set in dirty (Diff), then the
 * identity page. */
static int write_memory(const struct guest_mem *mem, int fd, const uint64_t *dirty,
			const struct memfile_trailer *id, uint64_t *written)
{
	if (ftruncate(fd, (off_t)(mem->size + MEMFILE_ID_PAGE)) < 0)
		return -errno;
	int ret = write_pages(mem, fd, dirty, !dirty, written);
	return ret ? ret : memfile_write_trailer(fd, id);
}

/* A failed snapshot took the dirty log: give those pages back, so the
 * next Diff still has them. */
static void return_dirty(struct guest_mem *mem, const uint64_t *dirty)
{
	for (uint64_t pg = 0; pg < mem->size / PAGE; pg++)
		if (dirty[pg / 64] & (1ULL << (pg % 64)))
			mem_mark_dirty(mem, mem->host + pg * PAGE, PAGE);
}

/* The pages this run of the VM has touched, for a page-fault handler to
 * load first when it restores the snapshot: next to the memory file, as
 * <mem_file_path>.ws. Only a hint: failing to write it fails nothing. */
static void save_working_set(struct machine *m, const char *mem_path)
{
	struct ws_range *r = NULL;
	size_t n = 0;
	char path[CONFIG_PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s.ws", mem_path);
	int ret = working_set_collect(&m->vm.mem, &r, &n);
	if (!ret)
		ret = working_set_write(path, r, n);
	if (ret)
		log_warn("snapshot: working set %s not written: %s", path, strerror(-ret));
	free(r);
}

/* ---- save ------------------------------------------------------------- */

static void put_devices(struct machine *m, struct snap_writer *w)
{
	sw_begin(w, TAG_SERIAL);
	serial_save(&m->serial, w);
	sw_end(w);
	sw_begin(w, TAG_I8042);
	i8042_save(&m->i8042, w);
	sw_end(w);
	struct virtio_dev *devs[SNAP_MAX_DEVICES];
	unsigned n = machine_virtio_devices(m, devs);
	for (unsigned i = 0; i < n; i++) {
		sw_begin(w, TAG_VIRTIO);
		sw_u32(w, devs[i]->index);
		virtio_dev_save(devs[i], w);
		sw_end(w);
	}
}

/* The state of the paused machine, naming its memory file by id. */
static int build_state(struct machine *m, const struct vmm_config *cfg, const struct memfile_id *id,
		       struct snap_writer *w, char *err, size_t errlen)
{
	cJSON *obj = config_json_state_obj(cfg);
	char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	sw_begin(w, TAG_CONFIG);
	sw_bytes(w, text, strlen(text));
	sw_end(w);
	free(text);
	memfile_id_put(w, id);
	if (m->mmds && mmds_initialized(m->mmds)) {
		if (!(text = mmds_store_json(m->mmds))) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		sw_begin(w, TAG_MMDS);
		sw_bytes(w, text, strlen(text));
		sw_end(w);
		free(text);
	}
	int ret = save_vm(&m->vm, w, err, errlen);
	if (!ret)
		put_devices(m, w);
	if (!ret && w->oom) {
		snprintf(err, errlen, "out of memory building the snapshot state");
		ret = -ENOMEM;
	}
	return ret;
}

int snapshot_state_image(struct machine *m, const struct vmm_config *cfg, uint8_t **image, size_t *len,
			 char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	struct memfile_id id = { vm->mem.size, vm->mem.size + MEMFILE_ID_PAGE, 0 };
	int ret = memfile_new_generation(&id.generation);
	if (ret) {
		snprintf(err, errlen, "getrandom: %s", strerror(-ret));
		return ret;
	}
	struct snap_writer w;
	sw_init(&w);
	if (!(ret = build_state(m, cfg, &id, &w, err, errlen)) && (ret = snapfile_image(&w, image, len)))
		snprintf(err, errlen, "out of memory building the state");
	sw_free(&w);
	return ret;
}

/* Both files are written whole under new names, then the memory file is
 * renamed over mem_file_path and the state file over snapshot_path, last:
 * until then the previous snapshot at those paths stays as it was, and
 * after a crash between the two renames its state file refuses the new
 * memory file (another generation). */
int snapshot_save(struct machine *m, const struct vmm_config *cfg, const struct snapshot_create *req,
		  char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	bool diff = req->type == SNAPSHOT_DIFF;
	if (diff && !vm->track_dirty) {
		snprintf(err, errlen, "a Diff snapshot needs dirty page tracking: set track_dirty_pages "
			 "in machine-config (or on snapshot load)");
		return -EINVAL;
	}
	if (strcmp(req->snapshot_path, req->mem_file_path) == 0) {
		snprintf(err, errlen, "snapshot_path and mem_file_path are both %s: they must be two files",
			 req->snapshot_path);
		return -EINVAL;
	}
	struct memfile_trailer id = {
		.flags = diff ? MEMFILE_DIFF : 0, .mem_size = vm->mem.size, .base = diff ? m->mem_generation : 0,
	};
	int ret = memfile_new_generation(&id.generation);
	if (ret) {
		snprintf(err, errlen, "getrandom: %s", strerror(-ret));
		return ret;
	}
	struct memfile_id state_id = { vm->mem.size, vm->mem.size + MEMFILE_ID_PAGE, id.generation };
	struct snap_writer w;
	sw_init(&w);
	struct newfile mem = NEWFILE_INIT, state = NEWFILE_INIT;
	uint64_t *dirty = NULL, written = 0;
	if ((ret = build_state(m, cfg, &state_id, &w, err, errlen)))
		goto out;
	if (vm->track_dirty) {
		/* Taken for a Full snapshot too: the next Diff starts from here. */
		dirty = calloc((size_t)((vm->mem.size / PAGE + 63) / 64), sizeof(uint64_t));
		if (!dirty) {
			snprintf(err, errlen, "out of memory");
			ret = -ENOMEM;
			goto out;
		}
		if ((ret = vm_take_dirty(vm, dirty))) {
			snprintf(err, errlen, "KVM_GET_DIRTY_LOG: %s", strerror(-ret));
			goto out; /* what it took so far goes back */
		}
	}
	if ((ret = newfile_open(&mem, "mem_file_path", req->mem_file_path, err, errlen)) ||
	    (ret = newfile_open(&state, "snapshot_path", req->snapshot_path, err, errlen)))
		goto out;
	if ((ret = write_memory(&vm->mem, mem.fd, diff ? dirty : NULL, &id, &written))) {
		snprintf(err, errlen, "writing mem_file_path %s: %s", req->mem_file_path, strerror(-ret));
		goto out;
	}
	if ((ret = snapfile_write(state.fd, &w))) {
		snprintf(err, errlen, "writing snapshot_path %s: %s", req->snapshot_path, strerror(-ret));
		goto out;
	}
	if ((ret = newfile_finish(&mem, err, errlen)) || (ret = newfile_finish(&state, err, errlen)))
		goto out;
	save_working_set(m, req->mem_file_path);
	if ((ret = newfile_commit(&mem, err, errlen)) || (ret = newfile_commit(&state, err, errlen)))
		goto out;
	m->mem_generation = id.generation;
	log_info("snapshot: %s memory: %llu of %llu pages written to %s (generation %016llx)",
		 diff ? "diff" : "full", (unsigned long long)written, (unsigned long long)(vm->mem.size / PAGE),
		 req->mem_file_path, (unsigned long long)id.generation);
out:
	newfile_discard(&mem);
	newfile_discard(&state);
	if (ret && dirty)
		return_dirty(&vm->mem, dirty);
	free(dirty);
	sw_free(&w);
	return ret;
}

/* ---- apply ------------------------------------------------------------ */

static int apply_vcpu(struct vcpu *vcpu, const struct snap_vcpu *s, const char **what)
{
	int fd = vcpu->fd;
#define SET(req, field, name) \
	do { if (ioctl(fd, req, field) < 0) { *what = name; return -errno; } } while (0)
	SET(KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS");
	SET(KVM_SET_REGS, &s->regs, "KVM_SET_REGS");
	if (s->has_xsave)
		SET(KVM_SET_XSAVE, s->xsave, "KVM_SET_XSAVE");
	else
		SET(KVM_SET_FPU, &s->fpu, "KVM_SET_FPU");
	if (s->has_xcrs)
		SET(KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS");
	SET(KVM_SET_DEBUGREGS, &s->debugregs, "KVM_SET_DEBUGREGS");
	SET(KVM_SET_LAPIC, &s->lapic, "KVM_SET_LAPIC");
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[SNAP_MAX_MSRS];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = s->nmsrs;
	memcpy(msrs.e, s->msrs, s->nmsrs * sizeof(s->msrs[0]));
	int n = ioctl(fd, KVM_SET_MSRS, &msrs);
	if (n < 0 || (uint32_t)n != s->nmsrs) {
		*what = "KVM_SET_MSRS";
		if (n >= 0)
			log_error("vcpu %u: MSR 0x%x refused", vcpu->id, s->msrs[n].index);
		return n < 0 ? -errno : -EINVAL;
	}
	SET(KVM_SET_MP_STATE, &s->mp_state, "KVM_SET_MP_STATE");
	SET(KVM_SET_VCPU_EVENTS, &s->events, "KVM_SET_VCPU_EVENTS");
#undef SET
	return 0;
}

/* The guest's CPUID as it was, where this host can provide it: a guest
 * told of a feature the CPU lacks would fault on its first use. Before
 * the MSRs, whose validity KVM judges by CPUID. */
static int restore_cpuid(struct vcpu *vcpu, const struct snapshot_image *img, const struct snap_vcpu *s,
			 const struct kvm_cpuid2 *host, char *err, size_t errlen)
{
	char names[400];
	unsigned n = cpu_cpuid_missing(s->cpuid, s->ncpuid, img->source_cpuid, img->nsource_cpuid, host, names,
				       sizeof(names));
	if (n) {
		snprintf(err, errlen, "the snapshot's guest CPU has %u feature%s this host's CPU (KVM) cannot "
			 "provide: %s", n, n == 1 ? "" : "s", names);
		return -EINVAL;
	}
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[SNAP_MAX_CPUID];
	} cpuid;
	memset(&cpuid, 0, sizeof(cpuid));
	cpuid.hdr.nent = s->ncpuid;
	memcpy(cpuid.e, s->cpuid, s->ncpuid * sizeof(s->cpuid[0]));
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, &cpuid) < 0) {
		int ret = -errno;
		snprintf(err, errlen, "vcpu %u: KVM_SET_CPUID2 (the snapshot's CPUID): %s", vcpu->id, strerror(errno));
		return ret;
	}
	return 0;
}

int snapshot_apply(struct machine *m, const struct snapshot_image *img, char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	struct kvm_irqchip chips[3] = { img->pic_master, img->pic_slave, img->ioapic };
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0) {
			snprintf(err, errlen, "KVM_SET_IRQCHIP: %s", strerror(errno));
			return -errno;
		}
	struct kvm_pit_state2 pit = img->pit;
	struct kvm_clock_data clock = img->clock;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0 || ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
		snprintf(err, errlen, "KVM_SET_PIT2/KVM_SET_CLOCK: %s", strerror(errno));
		return -errno;
	}
	for (unsigned i = 0; img->has_cpuid && i < vm->nvcpus; i++) {
		int ret = restore_cpuid(&vm->vcpus[i], img, &img->vcpus[i], vm->cpuid, err, errlen);
		if (ret)
			return ret;
	}
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		const char *what = "";
		int ret = apply_vcpu(&vm->vcpus[i], &img->vcpus[i], &what);
		if (ret) {
			snprintf(err, errlen, "vcpu %u: %s: %s", i, what, strerror(-ret));
			return ret;
		}
	}
	struct snap_reader r;
	sr_init(&r, img->serial.p, img->serial.len);
	if (serial_restore(&m->serial, &r) || !sr_done(&r, "serial section")) {
		snprintf(err, errlen, "invalid snapshot state: %s", r.why);
		return -EINVAL;
	}
	sr_init(&r, img->i8042.p, img->i8042.len);
	if (i8042_restore(&m->i8042, &r) || !sr_done(&r, "i8042 section")) {
		snprintf(err, errlen, "invalid snapshot state: %s", r.why);
		return -EINVAL;
	}
	struct virtio_dev *devs[SNAP_MAX_DEVICES];
	unsigned n = machine_virtio_devices(m, devs);
	for (unsigned i = 0; i < n; i++) {
		sr_init(&r, img->devices[i].p, img->devices[i].len);
		uint32_t index = sr_u32(&r);
		if (!r.bad && index != devs[i]->index)
			sr_fail(&r, "virtio device %u where %u was expected", index, devs[i]->index);
		if (r.bad || virtio_dev_restore(devs[i], &r) || !sr_done(&r, "virtio section")) {
			snprintf(err, errlen, "invalid snapshot state: %s", r.why);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- diff merge ------------------------------------------------------- */

/* Both files' identity pages, and whether diff applies onto base. */
static int merge_check(int base, const char *base_path, int diff, const char *diff_path,
		       struct memfile_trailer *bt, struct memfile_trailer *dt, char *err, size_t errlen)
{
	struct stat bs, ds;
	if (fstat(base, &bs) < 0 || fstat(diff, &ds) < 0) {
		int ret = -errno;
		snprintf(err, errlen, "stat: %s", strerror(errno));
		return ret;
	}
	if (bs.st_size != ds.st_size) {
		snprintf(err, errlen, "%s has %lld bytes, its base %s %lld: not a diff of that base", diff_path,
			 (long long)ds.st_size, base_path, (long long)bs.st_size);
		return -EINVAL;
	}
	int ret = memfile_read_trailer(base, (uint64_t)bs.st_size, base_path, bt, err, errlen);
	if (!ret)
		ret = memfile_read_trailer(diff, (uint64_t)ds.st_size, diff_path, dt, err, errlen);
	if (ret)
		return ret == -ENODATA ? -EINVAL : ret;
	if (bt->flags & MEMFILE_DIFF) {
		snprintf(err, errlen, "%s is itself a Diff memory file: merge onto a Full one (or onto the "
			 "result of an earlier merge)", base_path);
		return -EINVAL;
	}
	if (!(dt->flags & MEMFILE_DIFF)) {
		snprintf(err, errlen, "%s is not a Diff memory file: load it as it is", diff_path);
		return -EINVAL;
	}
	if (!dt->base) {
		snprintf(err, errlen, "%s was taken by a VM with no earlier snapshot: no memory file is its base",
			 diff_path);
		return -EINVAL;
	}
	if (dt->base != bt->generation) {
		snprintf(err, errlen, "%s applies onto memory generation %016llx; %s is generation %016llx: not "
			 "its base (or this diff was merged onto it already)", diff_path,
			 (unsigned long long)dt->base, base_path, (unsigned long long)bt->generation);
		return -EINVAL;
	}
	return 0;
}

/* The base loses its identity first: a merge that stops half-way leaves
 * a file no state file accepts, never a base with some of a diff's pages.
 * Once every page is on disk it takes the diff's generation. */
int snapshot_merge_diff(const char *base_path, const char *diff_path, char *err, size_t errlen)
{
	int ret = 0;
	uint8_t *buf = NULL;
	int diff = -1, base = hostfile_open("base memory file", base_path, O_RDWR, 0, HOSTFILE_REG, err, errlen);
	if (base < 0)
		return base;
	diff = hostfile_open("diff memory file", diff_path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (diff < 0) {
		ret = diff;
		goto out;
	}
	struct memfile_trailer bt, dt;
	if ((ret = merge_check(base, base_path, diff, diff_path, &bt, &dt, err, errlen)))
		goto out;
	if (!(buf = malloc(1 << 20))) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memset(buf, 0, MEMFILE_RECORD);
	if ((ret = memfile_pwrite(base, buf, MEMFILE_RECORD, (off_t)(bt.mem_size + MEMFILE_ID_PAGE - MEMFILE_RECORD))) ||
	    (fsync(base) < 0 && (ret = -errno))) {
		snprintf(err, errlen, "writing %s: %s", base_path, strerror(-ret));
		goto out;
	}
	/* The diff's data extents in guest memory are its pages; its holes
	 * are "unchanged". */
	off_t off = 0, end = (off_t)dt.mem_size;
	while (off < end) {
		off_t data = lseek(diff, off, SEEK_DATA);
		if (data < 0 || data >= end) {
			if (data < 0 && errno != ENXIO) {
				ret = -errno;
				snprintf(err, errlen, "%s: SEEK_DATA: %s", diff_path, strerror(errno));
			}
			break;
		}
		off_t hole = lseek(diff, data, SEEK_HOLE);
		if (hole < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: SEEK_HOLE: %s", diff_path, strerror(errno));
			break;
		}
		if (hole > end)
			hole = end;
		for (off_t at = data; at < hole && !ret;) {
			size_t chunk = (size_t)(hole - at < (1 << 20) ? hole - at : (1 << 20));
			ssize_t got = pread(diff, buf, chunk, at);
			if (got <= 0) {
				ret = got < 0 ? -errno : -EIO;
				snprintf(err, errlen, "reading %s: %s", diff_path, strerror(-ret));
				break;
			}
			if ((ret = memfile_pwrite(base, buf, (size_t)got, at)))
				snprintf(err, errlen, "writing %s: %s", base_path, strerror(-ret));
			at += got;
		}
		if (ret)
			break;
		off = hole;
	}
	if (ret)
		goto out;
	struct memfile_trailer merged = { .mem_size = dt.mem_size, .generation = dt.generation };
	if ((fsync(base) < 0 && (ret = -errno)) || (ret = memfile_write_trailer(base, &merged)) ||
	    (fsync(base) < 0 && (ret = -errno)))
		snprintf(err, errlen, "writing %s: %s", base_path, strerror(-ret));
out:
	free(buf);
	close(base);
	if (diff >= 0)
		close(diff);
	return ret;
}
