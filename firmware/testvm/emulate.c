/* Instruction checks for the emulation fallback (testvm.emulate). */
#include "testvm.h"

extern volatile uint64_t bp_count, bp_rip;


/* Each check runs its instruction right after CLI: on a kvm_pvm host a
 * privileged instruction sends the following ones through the host's
 * emulator, which is what exercises ember's fallback. */

static void check_popcnt(void)
{
	uint64_t out, flags;
	__asm__ volatile("cli; popcnt %2, %0; pushfq; pop %1"
			 : "=&r"(out), "=&r"(flags) : "r"(0xf0f0f0f0f0f0f0f1ULL) : "cc");
	result("emulate.popcnt", out == 33 && !(flags & 0x40), "wrong count or ZF set");

	static volatile uint64_t zero_mem = 0;
	__asm__ volatile("cli; popcnt %2, %0; pushfq; pop %1"
			 : "=&r"(out), "=&r"(flags) : "m"(zero_mem) : "cc");
	result("emulate.popcnt-mem-zero", out == 0 && (flags & 0x40), "expected 0 with ZF set");
}

static void check_int3(void)
{
	uint64_t expected;
	bp_count = 0;
	__asm__ volatile("cli; int3; 1: lea 1b(%%rip), %0" : "=r"(expected));
	result("emulate.int3", bp_count == 1 && bp_rip == expected,
	       "#BP not delivered once with RIP after the int3");
}

static void check_fwait(void)
{
	uint64_t after = 0;
	__asm__ volatile("cli; fwait; mov $1, %0" : "=r"(after));
	result("emulate.fwait", after == 1, "did not continue after fwait");
}

static void check_cmpxchg16b(void)
{
	static volatile uint64_t mem[2] __attribute__((aligned(16)));
	uint64_t lo = 1, hi = 2, flags;
	mem[0] = 1; /* set each time: testvm.rounds repeats the checks */
	mem[1] = 2;
	/* Equal: store RCX:RBX, ZF=1. */
	__asm__ volatile("cli; lock cmpxchg16b %2; pushfq; pop %3"
			 : "+a"(lo), "+d"(hi), "+m"(*(volatile unsigned __int128 *)mem), "=r"(flags)
			 : "b"(3ULL), "c"(4ULL) : "cc", "memory");
	bool ok1 = (flags & 0x40) && mem[0] == 3 && mem[1] == 4;
	/* Not equal: load memory into RDX:RAX, ZF=0. */
	lo = 7;
	hi = 8;
	__asm__ volatile("cli; lock cmpxchg16b %2; pushfq; pop %3"
			 : "+a"(lo), "+d"(hi), "+m"(*(volatile unsigned __int128 *)mem), "=r"(flags)
			 : "b"(5ULL), "c"(6ULL) : "cc", "memory");
	bool ok2 = !(flags & 0x40) && lo == 3 && hi == 4 && mem[0] == 3 && mem[1] == 4;
	result("emulate.cmpxchg16b", ok1 && ok2, "wrong swap or flags");
}

static void check_cmpxchg8b(void)
{
	static volatile uint64_t mem;
	uint32_t lo = 1, hi = 2;
	uint64_t flags;
	mem = 0x0000000200000001ULL;
	__asm__ volatile("cli; lock cmpxchg8b %2; pushfq; pop %3"
			 : "+a"(lo), "+d"(hi), "+m"(mem), "=r"(flags)
			 : "b"(5u), "c"(6u) : "cc", "memory");
	result("emulate.cmpxchg8b", (flags & 0x40) && mem == 0x0000000600000005ULL,
	       "wrong swap or flags");
}

void emulate_checks(void)
{
	check_popcnt();
	check_int3();
	check_fwait();
	check_cmpxchg16b();
	check_cmpxchg8b();
}
