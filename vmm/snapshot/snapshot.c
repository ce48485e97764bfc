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
#include "../log.h"
#include "../machine.h"
#include "../vcpu.h"
#include "../virtio/blk.h"
#include "../virtio/net.h"
#include "../virtio/rng.h"
#include "../virtio/vsock.h"
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
#undef GET
	int err = get_msrs(vcpu, msr_idx, nmsr, s);
	if (err)
		*what = "KVM_GET_MSRS";
	return err;
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

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write the pages whose bit is set in pick (all pages if NULL) to fd at
 * their offsets, runs at a time. skip_zero leaves zero pages as holes
 * (Full); a Diff must write them, since there a hole means "unchanged". */
static int write_pages(const struct guest_mem *mem, int fd, const uint64_t *pick, bool skip_zero,
		       uint64_t *written)
{
	uint64_t pages = mem->size / PAGE;
	unsigned char *resident = NULL;
	/* Untouched anonymous RAM is zero: mincore finds it without reading
	 * (and so without faulting in) every page. */
	if (!mem->file_backed && skip_zero) {
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
			if (take && skip_zero && page_is_zero(mem->host + pg * PAGE))
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
			ret = pwrite_all(fd, mem->host + run_start * PAGE, (size_t)(run_len * PAGE),
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

static int save_memory(struct machine *m, const struct snapshot_create *req, char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	const char *path = req->mem_file_path;
	bool diff = req->type == SNAPSHOT_DIFF;
	uint64_t *dirty = NULL;
	int ret = 0;
	if (vm->track_dirty) {
		/* Taken for a Full snapshot too: the next Diff starts from here. */
		dirty = calloc((size_t)((vm->mem.size / PAGE + 63) / 64), sizeof(uint64_t));
		if (!dirty) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		if ((ret = vm_take_dirty(vm, dirty))) {
			snprintf(err, errlen, "KVM_GET_DIRTY_LOG: %s", strerror(-ret));
			free(dirty);
			return ret;
		}
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "mem_file_path %s: %s", path, strerror(errno));
		free(dirty);
		return ret;
	}
	/* A restored VM's untouched pages live in the file it was restored
	 * from: truncating that file would lose them. */
	struct stat st, src;
	if (vm->mem.file_backed && fstat(fd, &st) == 0 && fstat(m->mem_fd, &src) == 0 &&
	    st.st_dev == src.st_dev && st.st_ino == src.st_ino) {
		snprintf(err, errlen, "mem_file_path %s is the file this VM's memory is mapped from; "
			 "write the snapshot to another file", path);
		close(fd);
		free(dirty);
		return -EINVAL;
	}
	uint64_t written = 0;
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)vm->mem.size) < 0)
		ret = -errno;
	else
		ret = write_pages(&vm->mem, fd, diff ? dirty : NULL, !diff, &written);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	free(dirty);
	if (ret) {
		snprintf(err, errlen, "writing mem_file_path %s: %s", path, strerror(-ret));
		return ret;
	}
	log_info("snapshot: %s memory: %llu of %llu pages written to %s", diff ? "diff" : "full",
		 (unsigned long long)written, (unsigned long long)(vm->mem.size / PAGE), path);
	return 0;
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

int snapshot_save(struct machine *m, const struct vmm_config *cfg, const struct snapshot_create *req,
		  char *err, size_t errlen)
{
	if (req->type == SNAPSHOT_DIFF && !m->vm.track_dirty) {
		snprintf(err, errlen, "a Diff snapshot needs dirty page tracking: set track_dirty_pages "
			 "in machine-config (or on snapshot load)");
		return -EINVAL;
	}
	struct snap_writer w;
	sw_init(&w);
	cJSON *obj = config_json_vm_obj(cfg);
	char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	sw_begin(&w, TAG_CONFIG);
	sw_bytes(&w, text, strlen(text));
	sw_end(&w);
	free(text);
	sw_begin(&w, TAG_MEMORY);
	sw_u64(&w, m->vm.mem.size);
	sw_end(&w);

	int ret = save_vm(&m->vm, &w, err, errlen);
	if (!ret) {
		put_devices(m, &w);
		ret = save_memory(m, req, err, errlen);
	}
	/* The state file last: a snapshot_path that exists is complete. */
	if (!ret)
		ret = snapfile_write(req->snapshot_path, &w, err, errlen);
	sw_free(&w);
	if (!ret)
		save_working_set(m, req->mem_file_path);
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

int snapshot_merge_diff(const char *base_path, const char *diff_path, char *err, size_t errlen)
{
	int ret = 0;
	int base = open(base_path, O_WRONLY | O_CLOEXEC);
	int diff = open(diff_path, O_RDONLY | O_CLOEXEC);
	struct stat bs, ds;
	uint8_t *buf = NULL;
	if (base < 0 || diff < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", base < 0 ? base_path : diff_path, strerror(errno));
		goto out;
	}
	if (fstat(base, &bs) < 0 || fstat(diff, &ds) < 0) {
		ret = -errno;
		snprintf(err, errlen, "stat: %s", strerror(errno));
		goto out;
	}
	if (bs.st_size != ds.st_size) {
		ret = -EINVAL;
		snprintf(err, errlen, "%s has %lld bytes, its base %s %lld: not a diff of that base", diff_path,
			 (long long)ds.st_size, base_path, (long long)bs.st_size);
		goto out;
	}
	if (!(buf = malloc(1 << 20))) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* The diff's data extents are its pages; its holes are "unchanged". */
	off_t off = 0;
	for (;;) {
		off_t data = lseek(diff, off, SEEK_DATA);
		if (data < 0) {
			if (errno != ENXIO) {
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
		for (off_t at = data; at < hole && !ret;) {
			size_t chunk = (size_t)(hole - at < (1 << 20) ? hole - at : (1 << 20));
			ssize_t got = pread(diff, buf, chunk, at);
			if (got <= 0) {
				ret = got < 0 ? -errno : -EIO;
				snprintf(err, errlen, "reading %s: %s", diff_path, strerror(-ret));
				break;
			}
			if ((ret = pwrite_all(base, buf, (size_t)got, at)))
				snprintf(err, errlen, "writing %s: %s", base_path, strerror(-ret));
			at += got;
		}
		if (ret)
			break;
		off = hole;
	}
	if (!ret && fsync(base) < 0) {
		ret = -errno;
		snprintf(err, errlen, "fsync %s: %s", base_path, strerror(errno));
	}
out:
	free(buf);
	if (base >= 0)
		close(base);
	if (diff >= 0)
		close(diff);
	return ret;
}
