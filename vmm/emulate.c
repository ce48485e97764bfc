#include "emulate.h"

#include <Zydis/Zydis.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "memory.h"
#include "vcpu.h"
#include "vm.h"

static const char *const kind_names[EMU_NKINDS] = {
	[EMU_INT3] = "int3",
	[EMU_FWAIT] = "fwait",
	[EMU_POPCNT] = "popcnt",
	[EMU_CMPXCHG8B] = "cmpxchg8b",
	[EMU_CMPXCHG16B] = "cmpxchg16b",
	[EMU_CLAC] = "clac",
	[EMU_STAC] = "stac",
	[EMU_CLFLUSH] = "clflush",
};

const char *emu_kind_name(enum emu_kind kind)
{
	return kind < EMU_NKINDS ? kind_names[kind] : "?";
}

void emu_stats_format(const struct emu_stats *stats, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = 0;
	for (int k = 0; k < EMU_NKINDS && n < len; k++) {
		unsigned long c = atomic_load(&stats->count[k]);
		if (c)
			n += (size_t)snprintf(buf + n, len - n, "%s%s=%lu", n ? "," : "",
					      kind_names[k], c);
	}
}

/* ---- guest page-table walk ---------------------------------------- */

#define CR0_PG (1ULL << 31)
#define CR0_WP (1ULL << 16)
#define CR0_TS (1ULL << 3)
#define CR0_MP (1ULL << 1)
#define CR4_PSE (1ULL << 4)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define EFER_LMA (1ULL << 10)
#define PTE_P 1ULL
#define PTE_W 2ULL
#define PTE_U 4ULL
#define PTE_PS 0x80ULL
#define PTE_ADDR 0x000ffffffffff000ULL
#define PF_P 1u
#define PF_W 2u
#define PF_U 4u

static int check_entry(uint64_t e, bool write, bool user, bool wp, uint32_t *pf)
{
	*pf = (write ? PF_W : 0) | (user ? PF_U : 0);
	if (!(e & PTE_P))
		return -EFAULT;
	if ((write && !(e & PTE_W) && (user || wp)) || (user && !(e & PTE_U))) {
		*pf |= PF_P;
		return -EFAULT;
	}
	return 0;
}

int emu_translate(const struct guest_mem *mem, const struct kvm_sregs *sregs, uint64_t gva,
		  bool write, bool user, uint64_t *gpa, uint32_t *pf_error)
{
	bool wp = sregs->cr0 & CR0_WP;
	*pf_error = 0;
	if (!(sregs->cr0 & CR0_PG)) {
		*gpa = (sregs->efer & EFER_LMA) ? gva : (uint32_t)gva;
		return 0;
	}

	if (!(sregs->cr4 & CR4_PAE)) {
		/* 32-bit paging: two levels of 4-byte entries, 4 MiB pages with PSE. */
		uint32_t pde, pte, va = (uint32_t)gva;
		if (mem_read(mem, (sregs->cr3 & 0xfffff000) + ((va >> 22) << 2), &pde, 4) ||
		    check_entry(pde, write, user, wp, pf_error))
			return -EFAULT;
		if ((pde & PTE_PS) && (sregs->cr4 & CR4_PSE)) {
			*gpa = (pde & 0xffc00000u) | (va & 0x3fffff);
			return 0;
		}
		if (mem_read(mem, (pde & 0xfffff000u) + (((va >> 12) & 0x3ff) << 2), &pte, 4) ||
		    check_entry(pte, write, user, wp, pf_error))
			return -EFAULT;
		*gpa = (pte & 0xfffff000u) | (va & 0xfff);
		return 0;
	}

	int levels;
	uint64_t table;
	if (sregs->efer & EFER_LMA) {
		levels = (sregs->cr4 & CR4_LA57) ? 5 : 4;
		table = sregs->cr3 & PTE_ADDR;
	} else {
		/* PAE: a 4-entry PDPT, then two levels of 8-byte entries. */
		uint64_t pdpte;
		if (mem_read(mem, (sregs->cr3 & 0xffffffe0u) + (((uint32_t)gva >> 30) << 3), &pdpte, 8) ||
		    !(pdpte & PTE_P)) {
			*pf_error = (write ? PF_W : 0) | (user ? PF_U : 0);
			return -EFAULT;
		}
		levels = 2;
		table = pdpte & PTE_ADDR;
		gva = (uint32_t)gva;
	}
	for (int level = levels; level >= 1; level--) {
		unsigned shift = 12 + 9 * (unsigned)(level - 1);
		uint64_t e;
		if (mem_read(mem, table + (((gva >> shift) & 511) << 3), &e, 8) ||
		    check_entry(e, write, user, wp, pf_error))
			return -EFAULT;
		if (level == 1 || ((level == 2 || level == 3) && (e & PTE_PS))) {
			uint64_t page_mask = (1ULL << shift) - 1;
			*gpa = ((e & PTE_ADDR) & ~page_mask) | (gva & page_mask);
			return 0;
		}
		table = e & PTE_ADDR;
	}
	return -EFAULT; /* not reached */
}

/* ---- operand access ------------------------------------------------ */

static bool user_mode(const struct emu_machine *m)
{
	return (m->sregs.cs.selector & 3) == 3;
}

static void raise_exception(struct emu_machine *m, int vector, bool has_error, uint32_t error)
{
	m->exception = vector;
	m->has_error_code = has_error;
	m->error_code = error;
}

static void raise_page_fault(struct emu_machine *m, uint64_t gva, uint32_t error)
{
	m->sregs.cr2 = gva;
	m->sregs_changed = true;
	raise_exception(m, EMU_VEC_PF, true, error);
}

/* Host pointer to len bytes at linear address gva, which must not cross a
 * page. On failure the right #PF (or #GP for a hole) is raised. */
static void *linear_ptr(struct emu_machine *m, uint64_t gva, size_t len, bool write)
{
	uint64_t gpa;
	uint32_t pf;
	if (emu_translate(m->mem, &m->sregs, gva, write, user_mode(m), &gpa, &pf)) {
		raise_page_fault(m, gva, pf);
		return NULL;
	}
	void *p = mem_ptr(m->mem, gpa, len);
	if (!p)
		raise_exception(m, EMU_VEC_GP, true, 0); /* MMIO or a hole: not handled here */
	else if (write)
		/* The guest's write, made by ember: KVM's dirty log never sees it,
		 * so a Diff snapshot must learn of it here. */
		mem_mark_dirty(m->mem, p, len);
	return p;
}

static int linear_rw(struct emu_machine *m, uint64_t gva, void *buf, size_t len, bool write)
{
	uint8_t *b = buf;
	while (len) {
		size_t chunk = 4096 - (gva & 4095);
		if (chunk > len)
			chunk = len;
		void *p = linear_ptr(m, gva, chunk, write);
		if (!p)
			return -EFAULT;
		if (write)
			memcpy(p, b, chunk);
		else
			memcpy(b, p, chunk);
		gva += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

static uint64_t *gpr_slot(struct kvm_regs *r, ZydisRegister reg64)
{
	switch (reg64) {
	case ZYDIS_REGISTER_RAX: return (uint64_t *)&r->rax;
	case ZYDIS_REGISTER_RCX: return (uint64_t *)&r->rcx;
	case ZYDIS_REGISTER_RDX: return (uint64_t *)&r->rdx;
	case ZYDIS_REGISTER_RBX: return (uint64_t *)&r->rbx;
	case ZYDIS_REGISTER_RSP: return (uint64_t *)&r->rsp;
	case ZYDIS_REGISTER_RBP: return (uint64_t *)&r->rbp;
	case ZYDIS_REGISTER_RSI: return (uint64_t *)&r->rsi;
	case ZYDIS_REGISTER_RDI: return (uint64_t *)&r->rdi;
	case ZYDIS_REGISTER_R8: return (uint64_t *)&r->r8;
	case ZYDIS_REGISTER_R9: return (uint64_t *)&r->r9;
	case ZYDIS_REGISTER_R10: return (uint64_t *)&r->r10;
	case ZYDIS_REGISTER_R11: return (uint64_t *)&r->r11;
	case ZYDIS_REGISTER_R12: return (uint64_t *)&r->r12;
	case ZYDIS_REGISTER_R13: return (uint64_t *)&r->r13;
	case ZYDIS_REGISTER_R14: return (uint64_t *)&r->r14;
	case ZYDIS_REGISTER_R15: return (uint64_t *)&r->r15;
	default: return NULL;
	}
}

static bool is_high_byte(ZydisRegister reg)
{
	return reg == ZYDIS_REGISTER_AH || reg == ZYDIS_REGISTER_CH ||
	       reg == ZYDIS_REGISTER_DH || reg == ZYDIS_REGISTER_BH;
}

/* Read a general-purpose register of any width (AL..R15). */
static int gpr_read(struct emu_machine *m, ZydisRegister reg, uint64_t *val)
{
	if (reg == ZYDIS_REGISTER_RIP || reg == ZYDIS_REGISTER_EIP) {
		*val = m->regs.rip;
		return 0;
	}
	uint64_t *slot = gpr_slot(&m->regs, ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg));
	if (!slot)
		return -ENOTSUP;
	unsigned width = ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, reg);
	uint64_t v = *slot;
	if (is_high_byte(reg))
		v >>= 8;
	*val = width >= 64 ? v : v & ((1ULL << width) - 1);
	return 0;
}

/* Write with x86 rules: 32-bit writes zero the upper half, 8/16-bit merge. */
static int gpr_write(struct emu_machine *m, ZydisRegister reg, uint64_t val)
{
	uint64_t *slot = gpr_slot(&m->regs, ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg));
	if (!slot)
		return -ENOTSUP;
	unsigned width = ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, reg);
	if (width == 64)
		*slot = val;
	else if (width == 32)
		*slot = (uint32_t)val;
	else if (is_high_byte(reg))
		*slot = (*slot & ~0xff00ULL) | ((val & 0xff) << 8);
	else {
		uint64_t mask = (1ULL << width) - 1;
		*slot = (*slot & ~mask) | (val & mask);
	}
	m->regs_changed = true;
	return 0;
}

static uint64_t segment_base(const struct emu_machine *m, ZydisRegister seg)
{
	bool long64 = m->sregs.cs.l && (m->sregs.efer & EFER_LMA);
	switch (seg) {
	case ZYDIS_REGISTER_FS: return m->sregs.fs.base;
	case ZYDIS_REGISTER_GS: return m->sregs.gs.base;
	case ZYDIS_REGISTER_ES: return long64 ? 0 : m->sregs.es.base;
	case ZYDIS_REGISTER_CS: return long64 ? 0 : m->sregs.cs.base;
	case ZYDIS_REGISTER_SS: return long64 ? 0 : m->sregs.ss.base;
	default: return long64 ? 0 : m->sregs.ds.base;
	}
}

/* Linear address of a memory operand. */
static int operand_address(struct emu_machine *m, const ZydisDecodedInstruction *in,
			   const ZydisDecodedOperand *op, uint64_t *gva)
{
	uint64_t ea = (uint64_t)op->mem.disp.value, v;
	if (op->mem.base != ZYDIS_REGISTER_NONE) {
		if (gpr_read(m, op->mem.base, &v))
			return -ENOTSUP;
		/* RIP-relative addressing counts from the next instruction. */
		if (op->mem.base == ZYDIS_REGISTER_RIP || op->mem.base == ZYDIS_REGISTER_EIP)
			v += in->length;
		ea += v;
	}
	if (op->mem.index != ZYDIS_REGISTER_NONE) {
		if (gpr_read(m, op->mem.index, &v))
			return -ENOTSUP;
		ea += v * op->mem.scale;
	}
	if (in->address_width == 32)
		ea = (uint32_t)ea;
	else if (in->address_width == 16)
		ea = (uint16_t)ea;
	*gva = segment_base(m, op->mem.segment) + ea;
	if (!(m->sregs.efer & EFER_LMA) || !m->sregs.cs.l)
		*gva = (uint32_t)*gva;
	return 0;
}

static int operand_read(struct emu_machine *m, const ZydisDecodedInstruction *in,
			const ZydisDecodedOperand *op, uint64_t *val)
{
	if (op->type == ZYDIS_OPERAND_TYPE_REGISTER)
		return gpr_read(m, op->reg.value, val);
	if (op->type != ZYDIS_OPERAND_TYPE_MEMORY || op->size > 64)
		return -ENOTSUP;
	uint64_t gva;
	if (operand_address(m, in, op, &gva))
		return -ENOTSUP;
	*val = 0;
	return linear_rw(m, gva, val, op->size / 8, false);
}

/* ---- the instructions ---------------------------------------------- */

#define RFLAGS_CF (1ULL << 0)
#define RFLAGS_PF (1ULL << 2)
#define RFLAGS_AF (1ULL << 4)
#define RFLAGS_ZF (1ULL << 6)
#define RFLAGS_SF (1ULL << 7)
#define RFLAGS_OF (1ULL << 11)
#define RFLAGS_AC (1ULL << 18)
#define CR4_SMAP (1ULL << 21)

static void advance(struct emu_machine *m, const ZydisDecodedInstruction *in)
{
	m->regs.rip += in->length;
	m->regs_changed = true;
}

static int do_popcnt(struct emu_machine *m, const ZydisDecodedInstruction *in,
		     const ZydisDecodedOperand *ops)
{
	uint64_t src;
	if (operand_read(m, in, &ops[1], &src))
		return m->exception >= 0 ? 0 : -ENOTSUP;
	if (gpr_write(m, ops[0].reg.value, (uint64_t)__builtin_popcountll(src)))
		return -ENOTSUP;
	m->regs.rflags &= ~(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
	if (src == 0)
		m->regs.rflags |= RFLAGS_ZF;
	advance(m, in);
	return 0;
}

/* CMPXCHG8B/16B: compare rDX:rAX with the memory operand; if equal store
 * rCX:rBX and set ZF, else load the operand into rDX:rAX and clear ZF. The
 * host does it with the same locked instruction, so it stays atomic
 * against the guest's other vCPUs. */
static int do_cmpxchg_wide(struct emu_machine *m, const ZydisDecodedInstruction *in,
			   const ZydisDecodedOperand *ops, bool wide)
{
	size_t size = wide ? 16 : 8;
	uint64_t gva;
	if (operand_address(m, in, &ops[0], &gva))
		return -ENOTSUP;
	if (wide && (gva & 15)) {
		raise_exception(m, EMU_VEC_GP, true, 0);
		return 0;
	}
	if ((gva & 4095) + size > 4096)
		return -ENOTSUP; /* a split 8-byte operand: never seen from a kernel */
	void *p = linear_ptr(m, gva, size, true);
	if (!p)
		return 0;

	bool equal;
	if (wide) {
		uint64_t lo = m->regs.rax, hi = m->regs.rdx;
		__asm__ volatile("lock cmpxchg16b %[mem]\n\tsete %[eq]"
				 : [mem] "+m"(*(volatile unsigned __int128 *)p), "+a"(lo), "+d"(hi),
				   [eq] "=q"(equal)
				 : "b"(m->regs.rbx), "c"(m->regs.rcx)
				 : "memory", "cc");
		m->regs.rax = lo;
		m->regs.rdx = hi;
	} else {
		uint64_t expected = ((uint64_t)(uint32_t)m->regs.rdx << 32) | (uint32_t)m->regs.rax;
		uint64_t desired = ((uint64_t)(uint32_t)m->regs.rcx << 32) | (uint32_t)m->regs.rbx;
		equal = __atomic_compare_exchange_n((uint64_t *)p, &expected, desired, false,
						    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
		if (!equal) {
			/* On failure the 32-bit halves are loaded (and zero-extended in 64-bit mode). */
			m->regs.rax = (uint32_t)expected;
			m->regs.rdx = (uint32_t)(expected >> 32);
		}
	}
	if (equal)
		m->regs.rflags |= RFLAGS_ZF;
	else
		m->regs.rflags &= ~RFLAGS_ZF;
	advance(m, in);
	return 0;
}

/* FWAIT: #NM if CR0.MP and CR0.TS, #MF if an unmasked x87 exception is
 * pending, otherwise nothing. */
static int do_fwait(struct emu_machine *m, const ZydisDecodedInstruction *in)
{
	if ((m->sregs.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS)) {
		raise_exception(m, EMU_VEC_NM, false, 0);
		return 0;
	}
	if (m->fpu) {
		struct kvm_xsave xs;
		if (m->fpu->get_xsave(m->fpu->ctx, &xs) == 0) {
			/* FCW and FSW are the first two words of the legacy area. */
			uint16_t fcw, fsw;
			memcpy(&fcw, (uint8_t *)xs.region + 0, 2);
			memcpy(&fsw, (uint8_t *)xs.region + 2, 2);
			if (fsw & ~fcw & 0x3f) {
				raise_exception(m, EMU_VEC_MF, false, 0);
				return 0;
			}
		}
	}
	advance(m, in);
	return 0;
}

/* INT3 raises #BP, a trap: the pushed RIP is the next instruction. */
static int do_int3(struct emu_machine *m, const ZydisDecodedInstruction *in)
{
	advance(m, in);
	raise_exception(m, EMU_VEC_BP, false, 0);
	return 0;
}

/* CLAC/STAC: clear or set RFLAGS.AC (SMAP's user-access switch); #UD
 * outside CPL 0 or with SMAP off. */
static int do_clac_stac(struct emu_machine *m, const ZydisDecodedInstruction *in, bool set)
{
	if (user_mode(m) || !(m->sregs.cr4 & CR4_SMAP)) {
		raise_exception(m, EMU_VEC_UD, false, 0);
		return 0;
	}
	if (set)
		m->regs.rflags |= RFLAGS_AC;
	else
		m->regs.rflags &= ~RFLAGS_AC;
	advance(m, in);
	return 0;
}

/* Writing a cache line back changes nothing a guest can see in memory
 * (ember's guest memory is coherent host memory; durability is what the
 * virtio-pmem flush request is for). What remains of it: the address must
 * translate, else the #PF the CPU would raise. */
static int do_clflush(struct emu_machine *m, const ZydisDecodedInstruction *in,
		      const ZydisDecodedOperand *ops)
{
	uint64_t gva, gpa;
	uint32_t pf;
	if (ops[0].type != ZYDIS_OPERAND_TYPE_MEMORY || operand_address(m, in, &ops[0], &gva))
		return -ENOTSUP;
	if (emu_translate(m->mem, &m->sregs, gva, false, user_mode(m), &gpa, &pf)) {
		raise_page_fault(m, gva, pf);
		return 0;
	}
	advance(m, in);
	return 0;
}

int emu_execute(struct emu_machine *m, const uint8_t *insn, size_t len, enum emu_kind *kind)
{
	ZydisMachineMode mode;
	ZydisStackWidth width;
	if ((m->sregs.efer & EFER_LMA) && m->sregs.cs.l) {
		mode = ZYDIS_MACHINE_MODE_LONG_64;
		width = ZYDIS_STACK_WIDTH_64;
	} else if (m->sregs.cs.db) {
		mode = ZYDIS_MACHINE_MODE_LEGACY_32;
		width = ZYDIS_STACK_WIDTH_32;
	} else {
		mode = ZYDIS_MACHINE_MODE_LEGACY_16;
		width = ZYDIS_STACK_WIDTH_16;
	}
	ZydisDecoder dec;
	if (ZYAN_FAILED(ZydisDecoderInit(&dec, mode, width)))
		return -EINVAL;
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, insn, len, &in, ops)))
		return -EINVAL;

	m->exception = -1;
	m->regs_changed = m->sregs_changed = false;
	struct kvm_regs saved = m->regs;
	int err;
	switch (in.mnemonic) {
	case ZYDIS_MNEMONIC_INT3:
		*kind = EMU_INT3;
		err = do_int3(m, &in);
		break;
	case ZYDIS_MNEMONIC_FWAIT:
		*kind = EMU_FWAIT;
		err = do_fwait(m, &in);
		break;
	case ZYDIS_MNEMONIC_POPCNT:
		*kind = EMU_POPCNT;
		err = do_popcnt(m, &in, ops);
		break;
	case ZYDIS_MNEMONIC_CMPXCHG8B:
		*kind = EMU_CMPXCHG8B;
		err = do_cmpxchg_wide(m, &in, ops, false);
		break;
	case ZYDIS_MNEMONIC_CMPXCHG16B:
		*kind = EMU_CMPXCHG16B;
		err = do_cmpxchg_wide(m, &in, ops, true);
		break;
	case ZYDIS_MNEMONIC_CLAC:
		*kind = EMU_CLAC;
		err = do_clac_stac(m, &in, false);
		break;
	case ZYDIS_MNEMONIC_STAC:
		*kind = EMU_STAC;
		err = do_clac_stac(m, &in, true);
		break;
	case ZYDIS_MNEMONIC_CLWB:
	case ZYDIS_MNEMONIC_CLFLUSHOPT:
	case ZYDIS_MNEMONIC_CLFLUSH:
		*kind = EMU_CLFLUSH;
		err = do_clflush(m, &in, ops);
		break;
	default:
		return -ENOTSUP;
	}
	if (err) {
		m->regs = saved;
		m->regs_changed = false;
	}
	return err;
}

/* ---- KVM glue ------------------------------------------------------ */

static int kvm_get_xsave(void *ctx, struct kvm_xsave *xs)
{
	struct vcpu *vcpu = ctx;
	return ioctl(vcpu->fd, KVM_GET_XSAVE, xs) < 0 ? -errno : 0;
}

static int kvm_set_xsave(void *ctx, const struct kvm_xsave *xs)
{
	struct vcpu *vcpu = ctx;
	return ioctl(vcpu->fd, KVM_SET_XSAVE, xs) < 0 ? -errno : 0;
}

static uint64_t kvm_get_xcr0(void *ctx)
{
	struct vcpu *vcpu = ctx;
	struct kvm_xcrs xcrs;
	if (ioctl(vcpu->fd, KVM_GET_XCRS, &xcrs) < 0)
		return 1;
	for (uint32_t i = 0; i < xcrs.nr_xcrs; i++)
		if (xcrs.xcrs[i].xcr == 0)
			return xcrs.xcrs[i].value;
	return 1;
}

static int inject_exception(struct vcpu *vcpu, const struct emu_machine *m)
{
	struct kvm_vcpu_events ev;
	if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	ev.exception.injected = 1;
	ev.exception.nr = (uint8_t)m->exception;
	ev.exception.has_error_code = m->has_error_code;
	ev.exception.error_code = m->error_code;
	ev.flags = 0;
	return ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ? -errno : 0;
}

/* The failing instruction's bytes: from the exit if KVM supplied them,
 * else fetched at CS:RIP through the guest's page tables. */
static size_t fetch_insn(struct vcpu *vcpu, struct emu_machine *m, uint8_t *buf)
{
	struct kvm_run *run = vcpu->run;
	if (run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
	    run->emulation_failure.insn_size > 0 && run->emulation_failure.insn_size <= 15) {
		memcpy(buf, run->emulation_failure.insn_bytes, run->emulation_failure.insn_size);
		return run->emulation_failure.insn_size;
	}
	uint64_t rip = segment_base(m, ZYDIS_REGISTER_CS) + m->regs.rip;
	for (size_t n = 15; n > 0; n--) {
		/* Take as many bytes as are mapped, up to 15. */
		int saved_exc = m->exception;
		if (linear_rw(m, rip, buf, n, false) == 0)
			return n;
		m->exception = saved_exc;
		m->sregs_changed = false;
	}
	return 0;
}

int emulate_failed_insn(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	const struct emu_fpu fpu = {
		.get_xsave = kvm_get_xsave, .set_xsave = kvm_set_xsave,
		.get_xcr0 = kvm_get_xcr0, .ctx = vcpu,
	};
	struct emu_machine m = { .mem = &vm->mem, .fpu = &fpu, .exception = -1 };
	if (ioctl(vcpu->fd, KVM_GET_REGS, &m.regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &m.sregs) < 0) {
		log_error("vcpu %u: cannot read registers for emulation: %s", vcpu->id, strerror(errno));
		return -errno;
	}
	uint8_t insn[16];
	size_t len = fetch_insn(vcpu, &m, insn);
	enum emu_kind kind = EMU_NKINDS;
	int err = len ? emu_execute(&m, insn, len, &kind) : -EFAULT;
	if (err) {
		char hex[64] = "";
		for (size_t i = 0; i < len; i++)
			snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02x ", insn[i]);
		log_error("vcpu %u: cannot emulate instruction at rip 0x%llx: bytes [%s] (%s)",
			  vcpu->id, (unsigned long long)m.regs.rip, hex,
			  err == -ENOTSUP ? "not handled by ember" : "undecodable or unreachable");
		return err;
	}
	if ((m.regs_changed && ioctl(vcpu->fd, KVM_SET_REGS, &m.regs) < 0) ||
	    (m.sregs_changed && ioctl(vcpu->fd, KVM_SET_SREGS, &m.sregs) < 0)) {
		log_error("vcpu %u: cannot write registers after emulation: %s", vcpu->id, strerror(errno));
		return -errno;
	}
	if (m.exception >= 0 && (err = inject_exception(vcpu, &m))) {
		log_error("vcpu %u: cannot inject exception %d: %s", vcpu->id, m.exception, strerror(-err));
		return err;
	}
	atomic_fetch_add(&vm->emu.count[kind], 1);
	log_ratelimited(LOG_DEBUG, "vcpu %u: emulated %s at 0x%llx", vcpu->id, emu_kind_name(kind),
			(unsigned long long)m.regs.rip);
	return 0;
}
