#include "machine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot/boot.h"
#include "hostfile.h"
#include "layout.h"
#include "log.h"
#include "mmds/mmds.h"
#include "vcpu.h"
#include "virtio/balloon.h"
#include "virtio/blk.h"
#include "virtio/mem.h"
#include "virtio/net.h"
#include "virtio/pmem.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"

/* Used when the config gives no boot_args: a console on the serial port,
 * reboot through the i8042, and no probing of what ember does not have.
 * Not i8042.nopnp (nor does Firecracker's default have it): an ACPI
 * kernel takes the i8042's interrupt from its PNP0303 device, and without
 * it Ctrl-Alt-Del never arrives. */
#define DEFAULT_BOOT_ARGS \
	"console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd"

static bool host_is_pvm(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

/* An empty machine: every fd -1, so destroy() closes nothing it did not
 * open (a 0 left in vm.vcpu0_fd would close whatever holds fd 0). */
static void clear(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	m->serial_out_fd = m->serial.irq_fd = m->i8042.irq_fd = m->mem_fd = -1;
	m->vm.kvm_fd = m->vm.vm_fd = m->vm.stop_fd = m->vm.vcpu0_fd = -1;
}

static void destroy(struct machine *m)
{
	struct vm *vm = &m->vm;
	for (unsigned i = 0; i < m->nblk; i++) {
		virtio_dev_destroy(&m->blk[i]->vd);
		free(m->blk[i]);
	}
	for (unsigned i = 0; i < m->nnet; i++) {
		virtio_dev_destroy(&m->net[i]->vd);
		free(m->net[i]);
	}
	for (unsigned i = 0; i < m->npmem; i++) {
		virtio_dev_destroy(&m->pmem[i]->vd);
		free(m->pmem[i]);
	}
	if (m->vsock) {
		virtio_dev_destroy(&m->vsock->vd);
		free(m->vsock);
	}
	if (m->balloon) {
		virtio_dev_destroy(&m->balloon->vd);
		free(m->balloon);
	}
	if (m->rng) {
		virtio_dev_destroy(&m->rng->vd);
		free(m->rng);
	}
	if (m->hotplug) {
		virtio_dev_destroy(&m->hotplug->vd);
		free(m->hotplug);
	}
	serial_destroy(&m->serial);
	i8042_destroy(&m->i8042);
	if (m->serial_out_fd >= 0)
		close(m->serial_out_fd);
	if (m->mem_fd >= 0)
		close(m->mem_fd);
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->nvcpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	vm_destroy(vm);
	clear(m);
}

int machine_open_serial_out(const char *path, char *err, size_t errlen)
{
	return hostfile_open("serial_out_path", path, O_WRONLY | O_CREAT | O_APPEND, 0600, HOSTFILE_REG, err,
			     errlen);
}

/* Announce a virtio device to the guest: into the list the command line
 * and the ACPI tables are both made from, and onto the command line. */
static int announce(struct machine *m, const struct virtio_dev *vd, char *err, size_t errlen)
{
	if (m->nmmio_devs >= IRQ_VIRTIO_COUNT) {
		snprintf(err, errlen, "Could not allocate GSI: The requested resource is not available.");
		return -ENOSPC;
	}
	struct boot_mmio_dev *d = &m->mmio_devs[m->nmmio_devs++];
	*d = (struct boot_mmio_dev){ .base = vd->base, .size = LAYOUT_VIRTIO_MMIO_SIZE, .irq = vd->irq };
	if (boot_cmdline_add_mmio(m->cmdline, sizeof(m->cmdline), d)) {
		snprintf(err, errlen, "kernel command line too long for the virtio devices");
		return -E2BIG;
	}
	return 0;
}

static ssize_t answer_mmds(void *ctx, const char *req, size_t len, char *out, size_t cap, uint64_t now_ms)
{
	return mmds_http_answer(ctx, req, len, out, cap, now_ms);
}

/* An interface among mmds-config's network_interfaces answers the MMDS
 * address itself (the configuration the VM is built from: on a restore,
 * the snapshot's). */
static int attach_mmds(struct machine *m, const struct vmm_config *cfg, struct virtio_net *net)
{
	if (!m->mmds || !cfg->mmds.set)
		return 0;
	for (unsigned i = 0; i < cfg->mmds.nifaces; i++)
		if (strcmp(cfg->mmds.ifaces[i], net->cfg.iface_id) == 0)
			return virtio_net_set_mmds(net, cfg->mmds.ipv4, answer_mmds, mmds_http_request_len, m->mmds,
						   mmds_response_limit(m->mmds));
	return 0;
}

/* Where the pmem regions go: above RAM and the MMIO gap, 1 GiB-aligned so
 * no region shares a Linux memory section with RAM. */
static uint64_t pmem_base(const struct guest_mem *mem)
{
	uint64_t top = LAYOUT_MMIO_GAP_END;
	for (unsigned i = 0; i < mem->nregions; i++)
		if (mem->regions[i].gpa + mem->regions[i].size > top)
			top = mem->regions[i].gpa + mem->regions[i].size;
	return (top + LAYOUT_PMEM_BASE_ALIGN - 1) & ~(LAYOUT_PMEM_BASE_ALIGN - 1);
}

/* The root parameters of a root device, unless the boot args choose one. */
static int add_root(struct machine *m, const char *root, char *err, size_t errlen)
{
	if (boot_cmdline_has(m->cmdline, "root"))
		return 0;
	if (boot_cmdline_append(m->cmdline, sizeof(m->cmdline), root)) {
		snprintf(err, errlen, "kernel command line too long for the root device");
		return -E2BIG;
	}
	return 0;
}

/* virtio-mmio devices in a fixed order: the root drive first (so it is
 * /dev/vda), the other drives, network interfaces, pmem devices (in their
 * /dev/pmemN order, as Firecracker), vsock, entropy. */
static int attach_virtio(struct machine *m, const struct machine_params *p, char *err, size_t errlen)
{
	const struct vmm_config *cfg = p->cfg;
	unsigned index = 0;
	int ret;
	/* One GSI each (layout.h); Firecracker's message. */
	if (cfg->ndrives + cfg->nnets + cfg->npmems + cfg->vsock.set + cfg->entropy.set + cfg->balloon.set +
	    cfg->memory_hotplug.set > IRQ_VIRTIO_COUNT) {
		snprintf(err, errlen, "Could not allocate GSI: The requested resource is not available.");
		return -ENOSPC;
	}
	unsigned order[CONFIG_MAX_DRIVES], n = 0;
	for (unsigned i = 0; i < cfg->ndrives; i++)
		if (cfg->drives[i].is_root_device)
			order[n++] = i;
	for (unsigned i = 0; i < cfg->ndrives; i++)
		if (!cfg->drives[i].is_root_device)
			order[n++] = i;
	for (unsigned k = 0; k < n; k++) {
		const struct drive_config *d = &cfg->drives[order[k]];
		struct virtio_blk *blk = calloc(1, sizeof(*blk));
		if (!blk)
			return -ENOMEM;
		m->blk[m->nblk++] = blk;
		if ((ret = virtio_blk_init(blk, &m->vm, p->loop, index++, d, err, errlen)) ||
		    (ret = announce(m, &blk->vd, err, errlen)))
			return ret;
		/* As Firecracker: the root drive sets root= (and ro/rw), unless
		 * the boot args already choose a root. */
		if (d->is_root_device) {
			char root[CONFIG_ID_MAX + 32];
			virtio_blk_root_param(blk, root, sizeof(root));
			if ((ret = add_root(m, root, err, errlen)))
				return ret;
		}
	}
	for (unsigned i = 0; i < cfg->nnets; i++) {
		struct virtio_net *net = calloc(1, sizeof(*net));
		if (!net)
			return -ENOMEM;
		m->net[m->nnet++] = net;
		if ((ret = virtio_net_init(net, &m->vm, p->loop, index++, &cfg->nets[i], err, errlen)) ||
		    (ret = announce(m, &net->vd, err, errlen)) || (ret = attach_mmds(m, cfg, net)))
			return ret;
	}
	uint64_t gpa = pmem_base(&m->vm.mem);
	for (unsigned i = 0; i < cfg->npmems; i++) {
		struct virtio_pmem *pm = calloc(1, sizeof(*pm));
		if (!pm)
			return -ENOMEM;
		m->pmem[m->npmem++] = pm;
		if ((ret = virtio_pmem_init(pm, &m->vm, p->loop, index++, gpa, &cfg->pmems[i], err, errlen)) ||
		    (ret = announce(m, &pm->vd, err, errlen)))
			return ret;
		gpa += pm->size;
		if (cfg->pmems[i].root_device) {
			char root[48];
			virtio_pmem_root_param(pm, i, root, sizeof(root));
			if ((ret = add_root(m, root, err, errlen)))
				return ret;
		}
	}
	if (cfg->vsock.set) {
		if (!(m->vsock = calloc(1, sizeof(*m->vsock))))
			return -ENOMEM;
		if ((ret = virtio_vsock_init(m->vsock, &m->vm, p->loop, index++, &cfg->vsock, err, errlen)) ||
		    (ret = announce(m, &m->vsock->vd, err, errlen)))
			return ret;
	}
	if (cfg->entropy.set) {
		if (!(m->rng = calloc(1, sizeof(*m->rng))))
			return -ENOMEM;
		if ((ret = virtio_rng_init(m->rng, &m->vm, p->loop, index++, &cfg->entropy.rate_limiter))) {
			snprintf(err, errlen, "entropy device: %s", strerror(-ret));
			return ret;
		}
		if ((ret = announce(m, &m->rng->vd, err, errlen)))
			return ret;
	}
	if (cfg->balloon.set) {
		if (!(m->balloon = calloc(1, sizeof(*m->balloon))))
			return -ENOMEM;
		if ((ret = virtio_balloon_init(m->balloon, &m->vm, p->loop, index++, &cfg->balloon))) {
			snprintf(err, errlen, "balloon device: %s", strerror(-ret));
			return ret;
		}
		if ((ret = announce(m, &m->balloon->vd, err, errlen)))
			return ret;
	}
	if (cfg->memory_hotplug.set) {
		if (!(m->hotplug = calloc(1, sizeof(*m->hotplug))))
			return -ENOMEM;
		if ((ret = virtio_mem_init(m->hotplug, &m->vm, p->loop, index++, &cfg->memory_hotplug))) {
			snprintf(err, errlen, "memory hotplug device: %s", strerror(-ret));
			return ret;
		}
		if ((ret = announce(m, &m->hotplug->vd, err, errlen)))
			return ret;
	}
	return 0;
}

/* The CPU template the VM boots with (none on a restore: the snapshot's
 * CPUID and MSRs come back as they were), checked against this host. */
static int resolve_cpu_template(const struct vmm_config *cfg, const struct vm *vm, struct cpu_template **out,
				char *err, size_t errlen)
{
	enum cpu_template_kind kind = cfg->machine.cpu_template;
	*out = NULL;
	if (kind == CPU_TEMPLATE_NONE)
		return 0;
	struct cpu_template *t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	int ret = cpu_template_check_host(kind, vm->cpuid, err, errlen);
	if (kind == CPU_TEMPLATE_CUSTOM)
		*t = cfg->cpu_custom;
	else
		cpu_template_static(kind, t);
	if (!ret)
		ret = cpu_template_check_caps(t, vm->kvm_fd, err, errlen);
	if (ret) {
		free(t);
		return ret;
	}
	*out = t;
	return 0;
}

static int setup_vcpus(struct machine *m, const struct machine_params *p, const struct boot_entry *entry,
		       char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	struct cpu_template *tmpl = NULL;
	int ret = p->restoring ? 0 : resolve_cpu_template(p->cfg, vm, &tmpl, err, errlen);
	for (unsigned i = 0; !ret && i < vm->nvcpus; i++) {
		if ((ret = vcpu_create(vm, &vm->vcpus[i], i)))
			snprintf(err, errlen, "vcpu %u: %s", i, strerror(-ret));
		else if (p->restoring && (ret = boot_setup_cpuid(&vm->vcpus[i])))
			snprintf(err, errlen, "vcpu %u: %s", i, strerror(-ret));
		else if (!p->restoring)
			ret = boot_setup_vcpu(&vm->vcpus[i], entry, tmpl, err, errlen);
	}
	free(tmpl);
	return ret;
}

static int build(struct machine *m, const struct machine_params *p, char *err, size_t errlen)
{
	const struct vmm_config *cfg = p->cfg;
	struct vm *vm = &m->vm;
	int ret;
	if (!cfg->boot.set) {
		snprintf(err, errlen, "no boot source: PUT /boot-source first");
		return -EINVAL;
	}
	struct vm_memory src = { .fd = p->mem_fd, .track_dirty = cfg->machine.track_dirty_pages,
				 .pages = cfg->machine.huge_pages, .ksm = cfg->machine.ember_ksm,
				 .kind = cfg->machine.mem_kind, .path = cfg->machine.mem_path,
				 .numa_node = cfg->machine.has_numa_node ? (int)cfg->machine.numa_node : -1 };
	if (cfg->memory_hotplug.set) {
		src.hotplug_bytes = (uint64_t)cfg->memory_hotplug.total_size_mib << 20;
		src.hotplug_slot = (uint64_t)cfg->memory_hotplug.slot_size_mib << 20;
	}
	struct boot_images img = {
		.kernel_path = cfg->boot.kernel_image_path,
		.initrd_path = cfg->boot.initrd_path[0] ? cfg->boot.initrd_path : NULL,
		.cmdline = m->cmdline,
	};
	if (!p->restoring && (ret = boot_check_images(&img, err, errlen)))
		return ret;
	char added[128];
	const char *args = cfg->boot.has_boot_args ? cfg->boot.boot_args : DEFAULT_BOOT_ARGS;
	if (boot_cmdline_build(args, host_is_pvm() && !p->restoring, m->cmdline, sizeof(m->cmdline), added,
			       sizeof(added))) {
		snprintf(err, errlen, "kernel command line longer than %zu bytes", sizeof(m->cmdline) - 1);
		return -E2BIG;
	}
	if (added[0])
		log_info("kvm_pvm host: added kernel parameters:%s", added);

	if ((ret = vm_create(vm, cfg->machine.mem_size_mib << 20, cfg->machine.vcpu_count, &src, err, errlen)))
		return ret;
	vm->smt = cfg->machine.smt;

	int out = STDOUT_FILENO;
	if (cfg->serial.set && cfg->serial.serial_out_path[0]) {
		m->serial_out_fd = machine_open_serial_out(cfg->serial.serial_out_path, err, errlen);
		if (m->serial_out_fd < 0)
			return m->serial_out_fd;
		out = m->serial_out_fd;
	}
	if ((ret = serial_init(&m->serial, vm, out, cfg->serial.set ? &cfg->serial.rate_limiter : NULL)) ||
	    (ret = i8042_init(&m->i8042, vm))) {
		snprintf(err, errlen, "legacy devices: %s", strerror(-ret));
		return ret;
	}
	if (p->boot_timer) {
		if ((ret = boot_timer_init(&m->boot_timer, vm, p->start_wall, p->start_cpu))) {
			snprintf(err, errlen, "boot timer: %s", strerror(-ret));
			return ret;
		}
		m->has_boot_timer = true;
	}
	if ((ret = attach_virtio(m, p, err, errlen))) {
		if (ret == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		return ret;
	}

	img.mmio_devs = m->mmio_devs;
	img.nmmio_devs = m->nmmio_devs;
	struct boot_entry entry;
	if (!p->restoring && (ret = boot_load(vm, &img, &entry, err, errlen)))
		return ret;
	log_debug("kernel command line: %s", m->cmdline);

	if (!(vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus))))
		return -ENOMEM;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vm->vcpus[i].fd = -1;
	return setup_vcpus(m, p, &entry, err, errlen);
}

int machine_build(struct machine *m, const struct machine_params *p, char *err, size_t errlen)
{
	clear(m);
	m->mem_fd = p->mem_fd; /* ours now, closed with the machine */
	m->mmds = p->mmds;
	int ret = build(m, p, err, errlen);
	if (ret)
		destroy(m);
	return ret;
}

unsigned machine_virtio_devices(struct machine *m, struct virtio_dev **devs)
{
	unsigned n = 0;
	for (unsigned i = 0; i < m->nblk; i++)
		devs[n++] = &m->blk[i]->vd;
	for (unsigned i = 0; i < m->nnet; i++)
		devs[n++] = &m->net[i]->vd;
	for (unsigned i = 0; i < m->npmem; i++)
		devs[n++] = &m->pmem[i]->vd;
	if (m->vsock)
		devs[n++] = &m->vsock->vd;
	if (m->rng)
		devs[n++] = &m->rng->vd;
	if (m->balloon)
		devs[n++] = &m->balloon->vd;
	if (m->hotplug)
		devs[n++] = &m->hotplug->vd;
	return n;
}

int machine_start_devices(struct machine *m, bool restored, char *err, size_t errlen)
{
	struct virtio_dev *devs[MACHINE_MAX_VIRTIO];
	unsigned n = machine_virtio_devices(m, devs);
	for (unsigned i = 0; i < n; i++) {
		int ret = virtio_dev_start_io(devs[i]);
		if (ret) {
			snprintf(err, errlen, "%s: cannot watch its queues: %s", devs[i]->ops->name, strerror(-ret));
			return ret;
		}
	}
	for (unsigned i = 0; restored && i < n; i++)
		if (devs[i]->ops->restored)
			devs[i]->ops->restored(devs[i]);
	return 0;
}

void machine_destroy(struct machine *m)
{
	destroy(m);
}

int machine_start(struct machine *m, char *err, size_t errlen)
{
	int ret = machine_start_devices(m, false, err, errlen);
	return ret ? ret : machine_start_vcpus(m, err, errlen);
}

int machine_start_vcpus(struct machine *m, char *err, size_t errlen)
{
	for (unsigned i = 0; i < m->vm.nvcpus; i++) {
		int ret = vcpu_start(&m->vm.vcpus[i]);
		if (ret) {
			snprintf(err, errlen, "cannot start vcpu %u: %s", i, strerror(-ret));
			vm_request_stop(&m->vm, 1, "cannot start vcpus");
			return ret;
		}
	}
	m->running = true;
	return 0;
}

int machine_pause(struct machine *m)
{
	int ret = vm_pause_vcpus(&m->vm);
	if (ret)
		return ret;
	struct virtio_dev *devs[MACHINE_MAX_VIRTIO];
	unsigned n = machine_virtio_devices(m, devs);
	for (unsigned i = 0; i < n; i++)
		virtio_dev_pause(devs[i]);
	return 0;
}

bool machine_idle(struct machine *m)
{
	struct virtio_dev *devs[MACHINE_MAX_VIRTIO];
	unsigned n = machine_virtio_devices(m, devs);
	for (unsigned i = 0; i < n; i++)
		if (!virtio_dev_idle(devs[i]))
			return false;
	return true;
}

void machine_resume(struct machine *m)
{
	struct virtio_dev *devs[MACHINE_MAX_VIRTIO];
	unsigned n = machine_virtio_devices(m, devs);
	for (unsigned i = 0; i < n; i++)
		virtio_dev_resume(devs[i]);
	vm_resume_vcpus(&m->vm);
}

void machine_stop(struct machine *m)
{
	for (unsigned i = 0; m->vm.vcpus && i < m->vm.nvcpus; i++)
		vcpu_stop(&m->vm.vcpus[i]);
	if (m->vsock)
		virtio_vsock_cleanup(m->vsock);
	m->running = false;
}

struct virtio_blk *machine_drive(struct machine *m, const char *drive_id)
{
	for (unsigned i = 0; i < m->nblk; i++)
		if (strcmp(m->blk[i]->cfg.drive_id, drive_id) == 0)
			return m->blk[i];
	return NULL;
}

struct virtio_pmem *machine_pmem(struct machine *m, const char *id)
{
	for (unsigned i = 0; i < m->npmem; i++)
		if (strcmp(m->pmem[i]->cfg.id, id) == 0)
			return m->pmem[i];
	return NULL;
}

struct virtio_net *machine_net(struct machine *m, const char *iface_id)
{
	for (unsigned i = 0; i < m->nnet; i++)
		if (strcmp(m->net[i]->cfg.iface_id, iface_id) == 0)
			return m->net[i];
	return NULL;
}

static void log_device(struct virtio_dev *vd, const char *id)
{
	char buf[768];
	virtio_counters(vd, buf, sizeof(buf));
	log_debug("%s %s: %s", vd->ops->name, id, buf);
}

void machine_log_counters(struct machine *m)
{
	if (!log_enabled(LOG_DEBUG))
		return;
	char buf[256];
	emu_stats_format(&m->vm.emu, buf, sizeof(buf));
	log_debug("emulated instructions: %s", buf[0] ? buf : "none");
	for (unsigned i = 0; i < m->nblk; i++)
		log_device(&m->blk[i]->vd, m->blk[i]->cfg.drive_id);
	for (unsigned i = 0; i < m->nnet; i++)
		log_device(&m->net[i]->vd, m->net[i]->cfg.iface_id);
	for (unsigned i = 0; i < m->npmem; i++)
		log_device(&m->pmem[i]->vd, m->pmem[i]->cfg.id);
	if (m->vsock)
		log_device(&m->vsock->vd, "vsock");
	if (m->rng)
		log_device(&m->rng->vd, "entropy");
	if (m->balloon)
		log_device(&m->balloon->vd, "balloon");
	if (m->hotplug)
		log_device(&m->hotplug->vd, "memory-hotplug");
}
