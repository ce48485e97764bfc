/* Per-vCPU x86 state at power-on: CPUID, MSRs, FPU, LAPIC LVTs and the
 * registers of the chosen boot entry (boot.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../layout.h"
#include "../log.h"
#include "../vcpu.h"
#include "../vm.h"
#include "boot.h"
#include "cpu_template.h"

/* GDT slots used for the boot CPU state. The guest replaces this GDT
 * almost at once; it only has to make the loaded segments consistent. */
enum { GDT_NULL, GDT_CODE32, GDT_CODE64, GDT_DATA, GDT_TSS, GDT_ENTRIES };

static const uint64_t boot_gdt[GDT_ENTRIES] = {
	[GDT_NULL] = 0,
	[GDT_CODE32] = 0x00cf9b000000ffffULL, /* base 0, 4 GiB, execute/read, D=1 */
	[GDT_CODE64] = 0x00af9b000000ffffULL, /* execute/read, L=1 */
	[GDT_DATA] = 0x00cf93000000ffffULL,   /* base 0, 4 GiB, read/write */
	[GDT_TSS] = 0x00008b0000000067ULL,    /* 32-bit busy TSS, limit 0x67 */
};

/* The kvm_segment matching a GDT descriptor. */
static struct kvm_segment segment_from_gdt(unsigned index)
{
	uint64_t d = boot_gdt[index];
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
	uint8_t g = (d >> 55) & 1;
	return (struct kvm_segment){
		.base = (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000)),
		.limit = g ? (limit << 12) | 0xfff : limit,
		.selector = (uint16_t)(index * 8),
		.type = (d >> 40) & 0xf,
		.present = (d >> 47) & 1,
		.dpl = (d >> 45) & 3,
		.db = (d >> 54) & 1,
		.s = (d >> 44) & 1,
		.l = (d >> 53) & 1,
		.g = g,
	};
}

/* CPUID leaves 0xb/0x1f: all vCPUs in one package, one thread per core,
 * or two with SMT (Firecracker's "smt": vCPUs 2n and 2n+1 are siblings). */
void boot_cpuid_topology(struct kvm_cpuid_entry2 *e, unsigned id, unsigned ncpus, bool smt)
{
	unsigned threads = smt && ncpus > 1 ? 2 : 1;
	unsigned pkg_bits = 0;
	while ((1u << pkg_bits) < ncpus)
		pkg_bits++;
	e->edx = id;
	switch (e->index) {
	case 0: /* SMT level: bits of the APIC id that select the thread */
		e->eax = threads == 2 ? 1 : 0;
		e->ebx = threads;
		e->ecx = (1u << 8) | e->index;
		break;
	case 1: /* core level: bits that select the core within the package */
		e->eax = pkg_bits;
		e->ebx = ncpus;
		e->ecx = (2u << 8) | e->index;
		break;
	default:
		e->eax = e->ebx = 0;
		e->ecx = e->index;
		break;
	}
}

/* The CPUID KVM supports, with the template's modifiers (tmpl may be
 * NULL), then ember's own changes: topology, the hypervisor bit, no PMU. */
static int setup_cpuid(struct vcpu *vcpu, const struct cpu_template *tmpl, char *err, size_t errlen)
{
	const struct kvm_cpuid2 *sup = vcpu->vm->cpuid;
	unsigned ncpus = vcpu->vm->nvcpus;
	size_t size = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(size);
	if (!c)
		return -ENOMEM;
	memcpy(c, sup, size);
	if (tmpl && cpu_template_apply_cpuid(tmpl, c, err, errlen)) {
		free(c);
		return -EINVAL;
	}

	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 0x1:
			/* Initial APIC id, logical processor count, hypervisor bit. */
			e->ebx = (e->ebx & 0x0000ffff) | (vcpu->id << 24) | ((ncpus & 0xff) << 16);
			e->ecx |= 1u << 31;
			if (ncpus > 1)
				e->edx |= 1u << 28; /* HTT: the count field is valid */
			break;
		case 0x4:
			/* Cores per package - 1 in bits 31:26; threads sharing
			 * this cache - 1 in bits 25:14. */
			e->eax = (e->eax & 0x3ff) | ((ncpus - 1) << 26) |
				 ((vcpu->vm->smt && ncpus > 1 ? 1u : 0u) << 14);
			break;
		case 0x6:
			/* No thermal or power management; keep ARAT (always-running APIC timer). */
			e->eax &= 1u << 2;
			e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xa:
			/* No PMU: it costs exits and the guest has no use for it. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			boot_cpuid_topology(e, vcpu->id, ncpus, vcpu->vm->smt);
			break;
		case 0x80000001:
			e->ecx &= ~(1u << 22); /* no TOPOEXT: leaf 0x8000001e is not modelled */
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xffu) | ((ncpus - 1) & 0xff);
			break;
		case 0x8000001e:
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		}
	}
	int ret = 0;
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	free(c);
	return ret;
}

#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_IA32_TSC 0x10
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff

/* The template's MSRs: each read from KVM (with the vCPU's CPUID in place,
 * which decides what KVM offers), modified and written back. Before the
 * boot MSRs, which win where both name one (as in Firecracker). */
static int setup_template_msrs(struct vcpu *vcpu, const struct cpu_template *tmpl, char *err, size_t errlen)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} one;
	for (unsigned i = 0; tmpl && i < tmpl->nmsrs; i++) {
		const struct msr_modifier *m = &tmpl->msrs[i];
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.e.index = m->addr;
		int n = ioctl(vcpu->fd, KVM_GET_MSRS, &one);
		if (n < 0)
			return -errno;
		if (n != 1) {
			snprintf(err, errlen, "System configuration error: Failed to create guest config: KVM vcpu "
				 "ioctl failed: Failed to get KVM vcpu msr: %#x", m->addr);
			return -EINVAL;
		}
		one.e.data = cpu_modifier_apply(one.e.data, m->filter, m->value);
		n = ioctl(vcpu->fd, KVM_SET_MSRS, &one);
		if (n < 0)
			return -errno;
		if (n != 1) {
			snprintf(err, errlen, "vcpu %u: KVM refused MSR %#x = %#llx (cpu template)", vcpu->id, m->addr,
				 (unsigned long long)one.e.data);
			return -EINVAL;
		}
	}
	return 0;
}

static int setup_msrs(struct vcpu *vcpu)
{
	static const struct { uint32_t index; uint64_t value; } boot_msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 },
		{ MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 },
		{ MSR_CSTAR, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
		{ MSR_SYSCALL_MASK, 0 },
		{ MSR_LSTAR, 0 },
		{ MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 },              /* fast string operations */
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },    /* MTRRs on, default write-back */
	};
	enum { N = sizeof(boot_msrs) / sizeof(boot_msrs[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[N];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = N;
	for (unsigned i = 0; i < N; i++) {
		msrs.entries[i].index = boot_msrs[i].index;
		msrs.entries[i].data = boot_msrs[i].value;
	}
	int n = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
	if (n < 0)
		return -errno;
	if (n != N) {
		log_error("vcpu %u: KVM refused MSR 0x%x", vcpu->id, boot_msrs[n].index);
		return -EINVAL;
	}
	return 0;
}

static int setup_fpu(struct vcpu *vcpu)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	return ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, &lapic->regs[reg], 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&lapic->regs[reg], &v, 4);
}

/* LINT0 delivers the 8259's interrupts (ExtINT), LINT1 is the NMI line. */
static int setup_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;
	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	return ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}

/* Identity map of the first 4 GiB with 2 MiB pages, for the 64-bit entry. */
static int write_page_tables(struct guest_mem *mem)
{
	uint64_t *pml4 = mem_ptr(mem, LAYOUT_PML4, 4096);
	uint64_t *pdpt = mem_ptr(mem, LAYOUT_PDPT, 4096);
	uint64_t *pd = mem_ptr(mem, LAYOUT_PD, 4 * 4096);
	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = LAYOUT_PDPT | 0x3; /* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (LAYOUT_PD + i * 4096) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	return 0;
}

#define X86_CR0_PE 0x1ULL
#define X86_CR0_ET 0x10ULL
#define X86_CR0_PG 0x80000000ULL
#define X86_CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

static int setup_boot_registers(struct vcpu *vcpu, const struct boot_entry *entry)
{
	struct guest_mem *mem = &vcpu->vm->mem;
	struct kvm_sregs sregs;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	if (mem_write(mem, LAYOUT_GDT, boot_gdt, sizeof(boot_gdt)))
		return -EFAULT;

	bool long_mode = entry->mode == BOOT_LINUX64;
	sregs.gdt.base = LAYOUT_GDT;
	sregs.gdt.limit = sizeof(boot_gdt) - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cs = segment_from_gdt(long_mode ? GDT_CODE64 : GDT_CODE32);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment_from_gdt(GDT_DATA);
	sregs.tr = segment_from_gdt(GDT_TSS);
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (long_mode) {
		int err = write_page_tables(mem);
		if (err)
			return err;
		sregs.cr3 = LAYOUT_PML4;
		sregs.cr4 = X86_CR4_PAE;
		sregs.cr0 |= X86_CR0_PG;
		sregs.efer = EFER_LME | EFER_LMA;
	}
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	struct kvm_regs regs = { .rflags = 0x2, .rip = entry->rip };
	if (long_mode) {
		regs.rsi = entry->arg;
		regs.rsp = regs.rbp = LAYOUT_BOOT_STACK;
	} else {
		regs.rbx = entry->arg;
	}
	return ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
}

int boot_setup_cpuid(struct vcpu *vcpu)
{
	char msg[8];
	int err = setup_cpuid(vcpu, NULL, msg, sizeof(msg));
	if (err)
		log_error("vcpu %u: KVM_SET_CPUID2: %s", vcpu->id, strerror(-err));
	return err;
}

int boot_setup_vcpu(struct vcpu *vcpu, const struct boot_entry *entry, const struct cpu_template *tmpl,
		    char *errbuf, size_t errlen)
{
	int err;
	const char *step;
	errbuf[0] = 0;
	if ((err = setup_cpuid(vcpu, tmpl, errbuf, errlen))) {
		step = "KVM_SET_CPUID2";
	} else if ((err = setup_template_msrs(vcpu, tmpl, errbuf, errlen))) {
		step = "cpu template MSRs";
	} else if ((err = setup_msrs(vcpu))) {
		step = "KVM_SET_MSRS";
	} else if ((err = setup_fpu(vcpu))) {
		step = "KVM_SET_FPU";
	} else if ((err = setup_lapic(vcpu))) {
		step = "LAPIC setup";
	} else if (vcpu->id == 0 && (err = setup_boot_registers(vcpu, entry))) {
		step = "boot registers";
	} else {
		return 0;
	}
	if (!errbuf[0])
		snprintf(errbuf, errlen, "vcpu %u: %s: %s", vcpu->id, step, strerror(-err));
	log_error("%s", errbuf);
	return err;
}
