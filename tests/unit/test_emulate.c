#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/emulate.h"
#include "../../vmm/memory.h"

/* A 64-bit guest with 4-level paging:
 *   0x400000..0x5fffff  2 MiB page -> gpa 0x400000 (writable)
 *   0x600000            4 KiB page -> gpa 0x700000 (writable)
 *   0x601000            4 KiB page -> gpa 0x701000 (read-only)
 *   0x602000            not present
 *   0x40000000          1 GiB page -> gpa 0 */
#define PML4 0x1000
#define PDPT 0x2000
#define PD 0x3000
#define PT 0x4000

static struct guest_mem mem;
static struct emu_machine m;

static void put64(uint64_t gpa, uint64_t v)
{
	cr_assert_eq(mem_write(&mem, gpa, &v, 8), 0);
}

static uint64_t get64(uint64_t gpa)
{
	uint64_t v = 0;
	cr_assert_eq(mem_read(&mem, gpa, &v, 8), 0);
	return v;
}

static void setup(void)
{
	cr_assert_eq(mem_init(&mem, 8 << 20), 0);
	put64(PML4, PDPT | 3);
	put64(PDPT, PD | 3);
	put64(PDPT + 8, 0x0 | 0x83);            /* 1 GiB page */
	put64(PD + 2 * 8, 0x400000 | 0x83);     /* 2 MiB page */
	put64(PD + 3 * 8, PT | 3);
	put64(PT + 0 * 8, 0x700000 | 3);
	put64(PT + 1 * 8, 0x701000 | 1);        /* present, read-only */
	memset(&m, 0, sizeof(m));
	m.mem = &mem;
	m.sregs.cr0 = 0x80010001;  /* PG | WP | PE */
	m.sregs.cr4 = 0x20 | (1 << 21); /* PAE | SMAP */
	m.sregs.efer = 0x500;       /* LME | LMA */
	m.sregs.cr3 = PML4;
	m.sregs.cs.l = 1;
	m.regs.rip = 0x400100;
	m.regs.rflags = 0x2;
}

static void teardown(void)
{
	mem_destroy(&mem);
}

TestSuite(emulate, .init = setup, .fini = teardown);

static int run(const uint8_t *bytes, size_t len, enum emu_kind *kind)
{
	return emu_execute(&m, bytes, len, kind);
}
#define RUN(kind, ...)                                                  \
	({                                                              \
		static const uint8_t b_[] = { __VA_ARGS__ };            \
		run(b_, sizeof(b_), kind);                              \
	})

Test(emulate, translate_all_page_sizes)
{
	uint64_t gpa;
	uint32_t pf;
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x4abcde, false, false, &gpa, &pf), 0);
	cr_assert_eq(gpa, 0x4abcde);
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x600123, true, false, &gpa, &pf), 0);
	cr_assert_eq(gpa, 0x700123);
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x40001234, false, false, &gpa, &pf), 0);
	cr_assert_eq(gpa, 0x1234);
	/* Not present: error code without P. */
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x602000, false, false, &gpa, &pf), -EFAULT);
	cr_assert_eq(pf, 0);
	/* Write to read-only with CR0.WP: P|W. */
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x601000, true, false, &gpa, &pf), -EFAULT);
	cr_assert_eq(pf, 3);
	/* User access to a supervisor page: P|U. */
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x600000, false, true, &gpa, &pf), -EFAULT);
	cr_assert_eq(pf, 5);
	/* Without paging, linear is physical (32-bit outside long mode). */
	struct kvm_sregs flat = { .cr0 = 1 };
	cr_assert_eq(emu_translate(&mem, &flat, 0x1234567890ULL, false, false, &gpa, &pf), 0);
	cr_assert_eq(gpa, 0x34567890);
}

Test(emulate, translate_rejects_tables_outside_ram)
{
	uint64_t gpa;
	uint32_t pf;
	put64(PD + 4 * 8, 0x7ffff000000ULL | 3); /* page table far outside RAM */
	cr_assert_eq(emu_translate(&mem, &m.sregs, 0x800000, false, false, &gpa, &pf), -EFAULT);
}

Test(emulate, popcnt_register_forms)
{
	enum emu_kind kind;
	m.regs.rbx = 0xf0f0f0f0f0f0f0f1ULL;
	cr_assert_eq(RUN(&kind, 0xf3, 0x48, 0x0f, 0xb8, 0xc3), 0); /* popcnt rax, rbx */
	cr_assert_eq(kind, EMU_POPCNT);
	cr_assert_eq(m.regs.rax, 33);
	cr_assert_eq(m.regs.rip, 0x400105);
	cr_assert_not(m.regs.rflags & 0x40);
	cr_assert(m.regs_changed);

	m.regs.rax = 0xffffffffffffffffULL;
	m.regs.rbx = 0x0000000100000003ULL;
	cr_assert_eq(RUN(&kind, 0xf3, 0x0f, 0xb8, 0xc3), 0); /* popcnt eax, ebx */
	cr_assert_eq(m.regs.rax, 2, "32-bit result zero-extends");

	m.regs.rax = 0x1111111111110000ULL;
	m.regs.rbx = 0x7;
	cr_assert_eq(RUN(&kind, 0x66, 0xf3, 0x0f, 0xb8, 0xc3), 0); /* popcnt ax, bx */
	cr_assert_eq(m.regs.rax, 0x1111111111110003ULL, "16-bit result merges");

	m.regs.rbx = 0;
	m.regs.rflags |= 0x1; /* CF is cleared */
	cr_assert_eq(RUN(&kind, 0xf3, 0x48, 0x0f, 0xb8, 0xc3), 0);
	cr_assert_eq(m.regs.rax, 0);
	cr_assert(m.regs.rflags & 0x40, "ZF set for a zero source");
	cr_assert_not(m.regs.rflags & 0x1);
}

Test(emulate, popcnt_memory_through_page_tables)
{
	enum emu_kind kind;
	put64(0x700008, 0xff);
	m.regs.rsi = 0x600008;
	cr_assert_eq(RUN(&kind, 0xf3, 0x48, 0x0f, 0xb8, 0x06), 0); /* popcnt rax, [rsi] */
	cr_assert_eq(m.regs.rax, 8);
	cr_assert_eq(m.exception, -1);
}

Test(emulate, page_fault_is_injected_not_fatal)
{
	enum emu_kind kind;
	m.regs.rsi = 0x602010;
	m.regs.rax = 99;
	cr_assert_eq(RUN(&kind, 0xf3, 0x48, 0x0f, 0xb8, 0x06), 0);
	cr_assert_eq(m.exception, EMU_VEC_PF);
	cr_assert(m.has_error_code);
	cr_assert_eq(m.error_code, 0);
	cr_assert_eq(m.sregs.cr2, 0x602010);
	cr_assert(m.sregs_changed);
	cr_assert_eq(m.regs.rip, 0x400100, "a fault leaves RIP on the instruction");
	cr_assert_eq(m.regs.rax, 99);
}

Test(emulate, cmpxchg16b_success_failure_and_faults)
{
	enum emu_kind kind;
	put64(0x700010, 1);
	put64(0x700018, 2);
	m.regs.rdi = 0x600010;
	m.regs.rax = 1;
	m.regs.rdx = 2;
	m.regs.rbx = 3;
	m.regs.rcx = 4;
	cr_assert_eq(RUN(&kind, 0xf0, 0x48, 0x0f, 0xc7, 0x0f), 0); /* lock cmpxchg16b [rdi] */
	cr_assert_eq(kind, EMU_CMPXCHG16B);
	cr_assert(m.regs.rflags & 0x40);
	cr_assert_eq(get64(0x700010), 3);
	cr_assert_eq(get64(0x700018), 4);

	m.regs.rax = 7;
	m.regs.rdx = 8;
	cr_assert_eq(RUN(&kind, 0xf0, 0x48, 0x0f, 0xc7, 0x0f), 0);
	cr_assert_not(m.regs.rflags & 0x40);
	cr_assert_eq(m.regs.rax, 3);
	cr_assert_eq(m.regs.rdx, 4);

	m.regs.rdi = 0x600018; /* misaligned: #GP(0) */
	cr_assert_eq(RUN(&kind, 0xf0, 0x48, 0x0f, 0xc7, 0x0f), 0);
	cr_assert_eq(m.exception, EMU_VEC_GP);

	m.regs.rdi = 0x601000; /* read-only page: #PF(P|W) */
	cr_assert_eq(RUN(&kind, 0xf0, 0x48, 0x0f, 0xc7, 0x0f), 0);
	cr_assert_eq(m.exception, EMU_VEC_PF);
	cr_assert_eq(m.error_code, 3);
}

Test(emulate, cmpxchg8b)
{
	enum emu_kind kind;
	put64(0x700020, 0x0000000200000001ULL);
	m.regs.rdi = 0x600020;
	m.regs.rax = 1;
	m.regs.rdx = 2;
	m.regs.rbx = 5;
	m.regs.rcx = 6;
	cr_assert_eq(RUN(&kind, 0xf0, 0x0f, 0xc7, 0x0f), 0);
	cr_assert_eq(kind, EMU_CMPXCHG8B);
	cr_assert_eq(get64(0x700020), 0x0000000600000005ULL);
	m.regs.rax = 0xdead;
	cr_assert_eq(RUN(&kind, 0xf0, 0x0f, 0xc7, 0x0f), 0);
	cr_assert_not(m.regs.rflags & 0x40);
	cr_assert_eq(m.regs.rax, 5);
	cr_assert_eq(m.regs.rdx, 6);
}

Test(emulate, int3_is_a_trap_with_rip_after_it)
{
	enum emu_kind kind;
	cr_assert_eq(RUN(&kind, 0xcc), 0);
	cr_assert_eq(kind, EMU_INT3);
	cr_assert_eq(m.exception, EMU_VEC_BP);
	cr_assert_not(m.has_error_code);
	cr_assert_eq(m.regs.rip, 0x400101);
}

Test(emulate, fwait_continues_or_raises_nm)
{
	enum emu_kind kind;
	cr_assert_eq(RUN(&kind, 0x9b), 0);
	cr_assert_eq(kind, EMU_FWAIT);
	cr_assert_eq(m.exception, -1);
	cr_assert_eq(m.regs.rip, 0x400101);
	m.sregs.cr0 |= 0x8 | 0x2; /* TS | MP */
	cr_assert_eq(RUN(&kind, 0x9b), 0);
	cr_assert_eq(m.exception, EMU_VEC_NM);
	cr_assert_eq(m.regs.rip, 0x400101, "#NM is a fault");
}

Test(emulate, clac_stac)
{
	enum emu_kind kind;
	m.regs.rflags |= 1 << 18;
	cr_assert_eq(RUN(&kind, 0x0f, 0x01, 0xca), 0);
	cr_assert_eq(kind, EMU_CLAC);
	cr_assert_not(m.regs.rflags & (1 << 18));
	cr_assert_eq(RUN(&kind, 0x0f, 0x01, 0xcb), 0);
	cr_assert_eq(kind, EMU_STAC);
	cr_assert(m.regs.rflags & (1 << 18));
	m.sregs.cr4 &= ~(1ULL << 21); /* no SMAP: #UD */
	cr_assert_eq(RUN(&kind, 0x0f, 0x01, 0xca), 0);
	cr_assert_eq(m.exception, EMU_VEC_UD);
}

Test(emulate, unknown_and_undecodable_change_nothing)
{
	enum emu_kind kind;
	struct kvm_regs before = m.regs;
	cr_assert_eq(RUN(&kind, 0x90), -ENOTSUP); /* nop: not ours */
	cr_assert_eq(RUN(&kind, 0x0f, 0x0b), -ENOTSUP); /* ud2 */
	cr_assert_eq(RUN(&kind, 0xff, 0xff), -EINVAL);
	cr_assert_eq(RUN(&kind, 0xf3), -EINVAL); /* truncated */
	cr_assert_eq(memcmp(&before, &m.regs, sizeof(before)), 0);
}

Test(emulate, stats_format)
{
	struct emu_stats st;
	memset(&st, 0, sizeof(st));
	char buf[128];
	emu_stats_format(&st, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	atomic_store(&st.count[EMU_POPCNT], 3);
	atomic_store(&st.count[EMU_INT3], 1);
	emu_stats_format(&st, buf, sizeof(buf));
	cr_assert_str_eq(buf, "int3=1,popcnt=3");
}

/* A write ember makes for the guest is invisible to KVM's dirty log: it
 * must be in ember's own dirty bitmap, or a Diff snapshot loses it. */
Test(emulate, emulated_writes_are_tracked_for_diff_snapshots)
{
	enum emu_kind kind;
	cr_assert_eq(mem_track_dirty(&mem, false), 0);
	size_t words = (size_t)((mem.size / 4096 + 63) / 64);
	uint64_t *bits = calloc(words, sizeof(uint64_t));
	put64(0x700020, 0x0000000200000001ULL);
	mem_take_dirty(&mem, bits); /* the test's own setup writes do not count */
	memset(bits, 0, words * sizeof(uint64_t));
	m.regs.rdi = 0x600020; /* linear 0x600020 maps to 0x700020 */
	m.regs.rax = 1;
	m.regs.rdx = 2;
	m.regs.rbx = 5;
	m.regs.rcx = 6;
	cr_assert_eq(RUN(&kind, 0xf0, 0x0f, 0xc7, 0x0f), 0);
	cr_assert_eq(get64(0x700020), 0x0000000600000005ULL);
	mem_take_dirty(&mem, bits);
	uint64_t page = 0x700020 / 4096;
	cr_assert(bits[page / 64] & (1ULL << (page % 64)), "the emulated write's page is not dirty");
	size_t set = 0;
	for (size_t i = 0; i < words; i++)
		set += (size_t)__builtin_popcountll(bits[i]);
	cr_assert_eq(set, 1, "%zu pages dirty, only the written one should be", set);
	free(bits);
}

/* A Linux pmem driver writes cache lines back (clwb, clflushopt, clflush)
 * after its writes: nothing changes but RIP, and an address that does not
 * translate faults. */
Test(emulate, cache_line_writebacks)
{
	enum emu_kind kind;
	m.regs.rax = 0x600040;
	cr_assert_eq(RUN(&kind, 0x66, 0x0f, 0xae, 0x30), 0); /* clwb (%rax) */
	cr_assert_eq(kind, EMU_CLFLUSH);
	cr_assert_eq(m.exception, -1);
	cr_assert_eq(m.regs.rip, 0x400104);
	cr_assert_eq(RUN(&kind, 0x66, 0x0f, 0xae, 0x38), 0); /* clflushopt (%rax) */
	cr_assert_eq(RUN(&kind, 0x0f, 0xae, 0x38), 0);       /* clflush (%rax) */
	cr_assert_eq(m.regs.rip, 0x40010b);
	m.regs.rax = 0x602000; /* not present */
	cr_assert_eq(RUN(&kind, 0x66, 0x0f, 0xae, 0x30), 0);
	cr_assert_eq(m.exception, EMU_VEC_PF);
	cr_assert_eq(m.regs.rip, 0x40010b);
}
