/* Userspace fallback for instructions the host KVM fails to emulate.
 *
 * Some software-virtualized KVM hosts (kvm_pvm) run guest kernel code
 * through KVM's instruction emulator, which does not know every
 * instruction a stock kernel uses. KVM then exits with
 * KVM_INTERNAL_ERROR_EMULATION and the instruction bytes. ember decodes the
 * instruction (with Zydis), carries it out on the vCPU's registers and
 * guest memory (through the guest's page tables), injects the exception
 * the CPU would raise where that is the architectural result, and resumes
 * the vCPU. On hardware KVM this path never runs.
 *
 * emu_execute() is independent of KVM so tests can drive it; the KVM glue
 * is emulate_failed_insn(). */
#ifndef EMBER_EMULATE_H
#define EMBER_EMULATE_H

#include <linux/kvm.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_mem;
struct vcpu;

enum emu_kind {
	EMU_INT3,
	EMU_FWAIT,
	EMU_POPCNT,
	EMU_CMPXCHG8B,
	EMU_CMPXCHG16B,
	EMU_CLAC,
	EMU_STAC,
	EMU_CLFLUSH,     /* clwb, clflushopt, clflush (a Linux pmem driver's writes) */
	EMU_NKINDS
};

struct emu_stats {
	atomic_ulong count[EMU_NKINDS];
};

const char *emu_kind_name(enum emu_kind kind);

/* x87/SSE/AVX state, for the instructions that touch it. The layout is
 * KVM's struct kvm_xsave (the standard, non-compacted XSAVE format). */
struct emu_fpu {
	int (*get_xsave)(void *ctx, struct kvm_xsave *xs);
	int (*set_xsave)(void *ctx, const struct kvm_xsave *xs);
	uint64_t (*get_xcr0)(void *ctx);
	void *ctx;
};

struct emu_machine {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	const struct guest_mem *mem;
	const struct emu_fpu *fpu; /* may be NULL: x87/XSAVE instructions then fail */

	/* Results. regs_changed/sregs_changed say what must be written back. */
	bool regs_changed;
	bool sregs_changed;     /* CR2 set for a page fault */
	int exception;          /* vector to inject, or -1 */
	bool has_error_code;
	uint32_t error_code;
};

/* Architectural exception vectors used here. */
#define EMU_VEC_BP 3
#define EMU_VEC_UD 6
#define EMU_VEC_NM 7
#define EMU_VEC_GP 13
#define EMU_VEC_PF 14
#define EMU_VEC_MF 16

/* Execute the instruction in insn[0..len) at m->regs.rip. On return 0 the
 * instruction is done: registers/memory are updated and RIP advanced, or
 * m->exception holds the fault to inject (RIP then left as the CPU would
 * leave it). *kind says what it was. Returns -ENOTSUP for an instruction
 * the fallback does not handle (nothing changed), -EINVAL if the bytes do
 * not decode. */
int emu_execute(struct emu_machine *m, const uint8_t *insn, size_t len, enum emu_kind *kind);

/* Walk the guest's page tables (no paging, 32-bit, PAE, 4- or 5-level).
 * Returns 0 and *gpa, or -EFAULT with *pf_error set to the #PF error
 * code the access would raise. */
int emu_translate(const struct guest_mem *mem, const struct kvm_sregs *sregs, uint64_t gva,
		  bool write, bool user, uint64_t *gpa, uint32_t *pf_error);

/* Handle a KVM_INTERNAL_ERROR_EMULATION exit on vcpu: emulate, write the
 * state back, count it. Returns 0 to resume, or -errno after logging the
 * instruction bytes and RIP (ember must stop). */
int emulate_failed_insn(struct vcpu *vcpu);

/* Format the counters as "kind=count,..." (only non-zero ones). */
void emu_stats_format(const struct emu_stats *stats, char *buf, size_t len);

#endif
