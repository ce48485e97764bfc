/* libFuzzer target: the emulation fallback on guest-controlled input.
 * The instruction bytes, registers and guest memory (including its page
 * tables) all come from the guest; nothing may crash ember or reach
 * memory outside the guest's.
 *
 * Input: 15 instruction bytes, a mode byte, the general registers, then
 * bytes for guest memory at 0x10000. Unless the mode byte asks for raw
 * control registers and page tables, the harness provides a valid 64-bit
 * identity map of the first 2 MiB so most inputs reach the instruction
 * handlers rather than failing translation. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../vmm/emulate.h"
#include "../../vmm/memory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUEST_MEM (2u << 20)
#define DATA_GPA 0x10000u
#define DATA_MAX 0x10000u

/* PML4 at 0x0 -> PDPT at 0x1000 -> PD at 0x2000 -> one 2 MiB page at 0. */
static void identity_map(struct guest_mem *mem, struct kvm_sregs *s)
{
	uint64_t pml4e = 0x1000 | 3, pdpte = 0x2000 | 3, pde = 0x0 | 0x83;
	mem_write(mem, 0x0, &pml4e, 8);
	mem_write(mem, 0x1000, &pdpte, 8);
	mem_write(mem, 0x2000, &pde, 8);
	s->cr3 = 0x0;
	s->cr0 = 0x80010001; /* PG | WP | PE */
	s->cr4 = 0x20 | (1u << 21); /* PAE | SMAP */
	s->efer = 0x500; /* LME | LMA */
	s->cs.l = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	if (!mem.host && mem_init(&mem, GUEST_MEM))
		return 0;
	struct emu_machine m;
	memset(&m, 0, sizeof(m));
	const size_t head = 15 + 1 + sizeof(m.regs);
	if (size < head)
		return 0;
	const uint8_t *insn = data;
	uint8_t mode = data[15];
	memcpy(&m.regs, data + 16, sizeof(m.regs));

	memset(mem.host, 0, DATA_GPA + DATA_MAX);
	size_t n = size - head < DATA_MAX ? size - head : DATA_MAX;
	memcpy(mem.host + DATA_GPA, data + head, n);
	if (mode & 1) {
		/* Raw: control registers from the data, tables wherever they point. */
		const uint8_t *cr = data + head;
		if (n >= 34) {
			memcpy(&m.sregs.cr0, cr, 8);
			memcpy(&m.sregs.cr3, cr + 8, 8);
			memcpy(&m.sregs.cr4, cr + 16, 8);
			memcpy(&m.sregs.efer, cr + 24, 8);
			m.sregs.cs.l = cr[32] & 1;
			m.sregs.cs.db = (cr[32] >> 1) & 1;
			m.sregs.cs.selector = cr[33];
		}
	} else {
		identity_map(&mem, &m.sregs);
		/* Point the registers used for addressing into the data area. */
		if (mode & 2) {
			m.regs.rsi = DATA_GPA + (m.regs.rsi & (DATA_MAX - 1));
			m.regs.rdi = DATA_GPA + (m.regs.rdi & (DATA_MAX - 1));
		}
	}
	m.mem = &mem;
	m.exception = -1;
	enum emu_kind kind;
	emu_execute(&m, insn, 15, &kind);
	return 0;
}
