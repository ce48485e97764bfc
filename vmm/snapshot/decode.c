/* Decoding a state file into a struct snapshot_image: everything that
 * reads untrusted snapshot bytes before a machine exists (the fuzz
 * target's entry point). */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/config_json.h"
#include "memfile.h"
#include "snapfile.h"
#include "snapshot.h"
#include "tags.h"

/* ---- parse ------------------------------------------------------------ */

static const char *section_name(uint32_t tag)
{
	switch (tag) {
	case TAG_CONFIG: return "configuration";
	case TAG_MEMORY: return "memory";
	case TAG_VM: return "VM";
	case TAG_SERIAL: return "serial";
	case TAG_I8042: return "i8042";
	case TAG_MMDS: return "MMDS";
	case TAG_CPUID: return "cpuid";
	case TAG_HOST_CPUID: return "host cpuid";
	default: return "other";
	}
}

static bool get_vcpu(struct snap_reader *r, struct snap_vcpu *s)
{
	sr_bytes(r, &s->regs, sizeof(s->regs));
	sr_bytes(r, &s->sregs, sizeof(s->sregs));
	s->has_xsave = sr_u8(r);
	if (s->has_xsave)
		sr_bytes(r, s->xsave, sizeof(s->xsave));
	else
		sr_bytes(r, &s->fpu, sizeof(s->fpu));
	s->has_xcrs = sr_u8(r);
	if (s->has_xcrs) {
		sr_bytes(r, &s->xcrs, sizeof(s->xcrs));
		if (!r->bad && s->xcrs.nr_xcrs > KVM_MAX_XCRS)
			return sr_fail(r, "vcpu: %u XCRs, at most %d", s->xcrs.nr_xcrs, KVM_MAX_XCRS);
	}
	sr_bytes(r, &s->debugregs, sizeof(s->debugregs));
	sr_bytes(r, &s->lapic, sizeof(s->lapic));
	sr_bytes(r, &s->events, sizeof(s->events));
	sr_bytes(r, &s->mp_state, sizeof(s->mp_state));
	s->nmsrs = sr_u32(r);
	if (!r->bad && s->nmsrs > SNAP_MAX_MSRS)
		return sr_fail(r, "vcpu: %u MSRs, at most %d", s->nmsrs, SNAP_MAX_MSRS);
	for (uint32_t i = 0; i < s->nmsrs && !r->bad; i++) {
		s->msrs[i].index = sr_u32(r);
		s->msrs[i].data = sr_u64(r);
	}
	if (!r->bad && s->mp_state.mp_state > KVM_MP_STATE_AP_RESET_HOLD)
		return sr_fail(r, "vcpu: unknown MP state %u", s->mp_state.mp_state);
	return sr_done(r, "vcpu section");
}

/* A CPUID table: entries KVM could take back (KVM's count limit, its flag
 * bits), each leaf/subleaf once. */
static bool get_cpuid(struct snap_reader *r, struct kvm_cpuid_entry2 *entries, uint32_t *count)
{
	const uint32_t known_flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX | KVM_CPUID_FLAG_STATEFUL_FUNC |
				     KVM_CPUID_FLAG_STATE_READ_NEXT;
	uint32_t n = sr_u32(r);
	*count = 0;
	if (!r->bad && n > SNAP_MAX_CPUID)
		return sr_fail(r, "cpuid: %u entries, at most %d", n, SNAP_MAX_CPUID);
	for (uint32_t i = 0; i < n && !r->bad; i++) {
		struct kvm_cpuid_entry2 *e = &entries[i];
		memset(e, 0, sizeof(*e));
		e->function = sr_u32(r);
		e->index = sr_u32(r);
		e->flags = sr_u32(r);
		e->eax = sr_u32(r);
		e->ebx = sr_u32(r);
		e->ecx = sr_u32(r);
		e->edx = sr_u32(r);
		if (r->bad)
			break;
		if (e->flags & ~known_flags)
			return sr_fail(r, "cpuid: leaf %#x.%u has unknown flags %#x", e->function, e->index, e->flags);
		for (uint32_t j = 0; j < i; j++)
			if (entries[j].function == e->function && entries[j].index == e->index)
				return sr_fail(r, "cpuid: leaf %#x.%u twice", e->function, e->index);
	}
	*count = n;
	return sr_done(r, "cpuid section");
}

static bool get_vm(struct snap_reader *r, struct snapshot_image *img)
{
	sr_bytes(r, &img->pic_master, sizeof(img->pic_master));
	sr_bytes(r, &img->pic_slave, sizeof(img->pic_slave));
	sr_bytes(r, &img->ioapic, sizeof(img->ioapic));
	sr_bytes(r, &img->pit, sizeof(img->pit));
	memset(&img->clock, 0, sizeof(img->clock));
	img->clock.clock = sr_u64(r);
	if (!r->bad && (img->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
			img->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
			img->ioapic.chip_id != KVM_IRQCHIP_IOAPIC))
		return sr_fail(r, "interrupt controller state out of order");
	return sr_done(r, "VM section");
}

void snapshot_image_free(struct snapshot_image *img)
{
	free(img->vcpus);
	img->vcpus = NULL;
}

int snapshot_parse(const uint8_t *file, size_t len, struct snapshot_image *img, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	const uint8_t *payload;
	size_t plen;
	int ret = snapfile_decode(file, len, &payload, &plen, err, errlen);
	if (ret)
		return ret;
	struct snap_reader r, sec;
	sr_init(&r, payload, plen);
	/* Each kind of section once, but vCPUs and virtio devices: one each. */
	bool have_config = false, have_mem = false, have_vm = false, have_serial = false, have_i8042 = false,
	     have_mmds = false;
	bool have_host_cpuid = false;
	unsigned ncpuid = 0;
	uint32_t tag;
	while (sr_section(&r, &tag, &sec)) {
		bool *once = tag == TAG_CONFIG ? &have_config : tag == TAG_MEMORY ? &have_mem :
			     tag == TAG_VM ? &have_vm : tag == TAG_SERIAL ? &have_serial :
			     tag == TAG_I8042 ? &have_i8042 : tag == TAG_MMDS ? &have_mmds :
			     tag == TAG_HOST_CPUID ? &have_host_cpuid : NULL;
		if (once && *once) {
			sr_fail(&r, "two %s sections", section_name(tag));
			break;
		}
		if (once)
			*once = true;
		switch (tag) {
		case TAG_CONFIG:
			config_defaults(&img->cfg);
			char msg[512];
			if (config_json_file((const char *)sec.p, sec.len, &img->cfg, msg, sizeof(msg)))
				sr_fail(&r, "configuration: %s", msg);
			else if (config_check_devices(&img->cfg, msg, sizeof(msg)))
				sr_fail(&r, "configuration: %s", msg);
			break;
		case TAG_MEMORY:
			if (!memfile_id_get(&sec, &img->mem))
				sr_fail(&r, "%s", sec.why);
			break;
		case TAG_VM:
			if (!get_vm(&sec, img))
				sr_fail(&r, "%s", sec.why);
			break;
		case TAG_VCPU:
			if (img->nvcpus == VM_MAX_VCPUS) {
				sr_fail(&r, "more than %d vCPUs", VM_MAX_VCPUS);
				break;
			}
			if (!img->vcpus && !(img->vcpus = calloc(VM_MAX_VCPUS, sizeof(*img->vcpus)))) {
				sr_fail(&r, "out of memory");
				break;
			}
			if (!get_vcpu(&sec, &img->vcpus[img->nvcpus++]))
				sr_fail(&r, "vcpu %u: %s", img->nvcpus - 1, sec.why);
			break;
		case TAG_CPUID:
			/* After the VCPU section it belongs to, once each. */
			if (ncpuid >= img->nvcpus) {
				sr_fail(&r, "a cpuid section without its vCPU section");
				break;
			}
			ncpuid++;
			if (!get_cpuid(&sec, img->vcpus[ncpuid - 1].cpuid, &img->vcpus[ncpuid - 1].ncpuid))
				sr_fail(&r, "vcpu %u: %s", ncpuid - 1, sec.why);
			break;
		case TAG_HOST_CPUID:
			if (!get_cpuid(&sec, img->source_cpuid, &img->nsource_cpuid))
				sr_fail(&r, "host %s", sec.why);
			break;
		case TAG_SERIAL:
			img->serial = (struct snap_blob){ sec.p, sec.len };
			break;
		case TAG_I8042:
			img->i8042 = (struct snap_blob){ sec.p, sec.len };
			break;
		case TAG_MMDS: {
			/* JSON, checked now: a restore takes it whole or refuses. */
			char why[256];
			struct cJSON *doc = sec.len ? config_json_parse((const char *)sec.p, sec.len, why, sizeof(why)) : NULL;
			if (!doc)
				sr_fail(&r, "MMDS section: %s", sec.len ? why : "empty");
			cJSON_Delete(doc);
			img->mmds = (struct snap_blob){ sec.p, sec.len };
			break;
		}
		case TAG_VIRTIO: {
			if (img->ndevices == SNAP_MAX_DEVICES) {
				sr_fail(&r, "more than %d virtio devices", SNAP_MAX_DEVICES);
				break;
			}
			/* Devices in their fixed order, each once. */
			uint32_t index = sr_u32(&sec);
			if (!sec.bad && index != img->ndevices)
				sr_fail(&r, "virtio section %u is for device %u: repeated or out of order",
					img->ndevices, index);
			img->devices[img->ndevices++] = (struct snap_blob){ sec.p, sec.len };
			break;
		}
		default:
			sr_fail(&r, "unknown section 0x%08x", tag);
			break;
		}
	}
	if (!r.bad && !(have_config && have_mem && have_vm && have_serial && have_i8042))
		sr_fail(&r, "a required section is missing");
	/* RAM, then the hotplug region (memory_hotplug.total_size_mib < 2^32). */
	uint64_t hotplug_mib = img->cfg.memory_hotplug.set ? img->cfg.memory_hotplug.total_size_mib : 0;
	if (!r.bad && (img->cfg.machine.mem_size_mib > (UINT64_MAX >> 20) - hotplug_mib ||
		       img->mem.mem_size != (img->cfg.machine.mem_size_mib + hotplug_mib) << 20))
		sr_fail(&r, "memory section says %llu bytes, the configuration %llu MiB and %llu MiB to hotplug",
			(unsigned long long)img->mem.mem_size, (unsigned long long)img->cfg.machine.mem_size_mib,
			(unsigned long long)hotplug_mib);
	if (!r.bad && ncpuid && ncpuid != img->nvcpus)
		sr_fail(&r, "%u cpuid sections for %u vCPUs", ncpuid, img->nvcpus);
	if (!r.bad && (ncpuid > 0) != have_host_cpuid)
		sr_fail(&r, "the vCPUs' CPUID without the host's, or the host's without theirs");
	img->has_cpuid = ncpuid > 0;
	if (!r.bad && img->nvcpus != img->cfg.machine.vcpu_count)
		sr_fail(&r, "%u vCPU sections for %u configured vCPUs", img->nvcpus, img->cfg.machine.vcpu_count);
	if (!r.bad) {
		unsigned want = img->cfg.ndrives + img->cfg.nnets + img->cfg.npmems + img->cfg.vsock.set + img->cfg.entropy.set +
				img->cfg.balloon.set + img->cfg.memory_hotplug.set;
		if (img->ndevices != want)
			sr_fail(&r, "%u device sections for %u configured devices", img->ndevices, want);
	}
	if (r.bad) {
		snprintf(err, errlen, "invalid snapshot state: %s", r.why);
		snapshot_image_free(img);
		return -EINVAL;
	}
	return 0;
}

