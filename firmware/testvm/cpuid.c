/* What the guest sees through CPUID (testvm.cpuid), for the CPU template
 * tests: one line per leaf and subleaf,
 *   "testvm: cpuid LLLLLLLL.SS eax=XXXXXXXX ebx=... ecx=... edx=..."
 * (hex), for every basic and extended leaf up to the maximum each range
 * reports (bounded), the subleaves of the indexed leaves, and the
 * hypervisor range. Then the MSR a custom template test sets:
 *   "testvm: msr 00000277=XXXXXXXXXXXXXXXX" (IA32_PAT, which every x86
 * CPU has).
 *
 * Each CPUID runs twice: as it comes and right after a CLI (on kvm_pvm a
 * privileged instruction sends the next ones through the host's
 * emulator). Where the two answers differ the line is printed for each,
 * the second marked "cpuid-emulated", so a test sees whether both paths
 * give the guest the CPUID its VMM set. */
#include "testvm.h"

struct regs {
	uint32_t eax, ebx, ecx, edx;
};

static struct regs cpuid_plain(uint32_t leaf, uint32_t sub)
{
	struct regs r;
	__asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(sub));
	return r;
}

static struct regs cpuid_after_cli(uint32_t leaf, uint32_t sub)
{
	struct regs r;
	__asm__ volatile("cli; cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(sub));
	return r;
}

static void put_hex32(uint32_t v)
{
	char buf[9];
	for (int i = 0; i < 8; i++)
		buf[i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xf];
	buf[8] = 0;
	puts_serial(buf);
}

static void print_line(const char *tag, uint32_t leaf, uint32_t sub, const struct regs *r)
{
	puts_serial("testvm: ");
	puts_serial(tag);
	puts_serial(" ");
	put_hex32(leaf);
	puts_serial(".");
	put_hex32(sub);
	puts_serial(" eax=");
	put_hex32(r->eax);
	puts_serial(" ebx=");
	put_hex32(r->ebx);
	puts_serial(" ecx=");
	put_hex32(r->ecx);
	puts_serial(" edx=");
	put_hex32(r->edx);
	puts_serial("\n");
}

static void dump(uint32_t leaf, uint32_t sub)
{
	struct regs a = cpuid_plain(leaf, sub);
	struct regs b = cpuid_after_cli(leaf, sub);
	print_line("cpuid", leaf, sub, &a);
	if (a.eax != b.eax || a.ebx != b.ebx || a.ecx != b.ecx || a.edx != b.edx)
		print_line("cpuid-emulated", leaf, sub, &b);
}

/* How many subleaves of an indexed leaf to show. */
static uint32_t subleaves(uint32_t leaf)
{
	switch (leaf) {
	case 0x4: return 4;
	case 0x7: return 3;
	case 0xb: return 2;
	case 0xd: return 4;
	case 0x14: return 2;
	case 0x1f: return 3;
	case 0x8000001d: return 4;
	default: return 1;
	}
}

static void dump_range(uint32_t base, uint32_t cap)
{
	uint32_t max = cpuid_plain(base, 0).eax;
	if (max < base || max > base + cap)
		max = base + cap;
	for (uint32_t leaf = base; leaf <= max; leaf++)
		for (uint32_t sub = 0; sub < subleaves(leaf); sub++)
			dump(leaf, sub);
}

static void msr_dump(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	puts_serial("testvm: msr ");
	put_hex32(msr);
	puts_serial("=");
	put_hex32(hi);
	put_hex32(lo);
	puts_serial("\n");
}

void cpuid_dump(void)
{
	dump_range(0x0, 0x20);
	dump(0x40000000, 0);
	dump(0x40000001, 0);
	dump_range(0x80000000, 0x21);
	msr_dump(0x277);
	puts_serial("testvm: cpuid end\n");
}
