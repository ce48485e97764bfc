#include <criterion/criterion.h>
#include <linux/kvm.h>

#include "../../vmm/boot/boot.h"

static struct kvm_cpuid_entry2 leaf(unsigned level, unsigned id, unsigned ncpus, bool smt)
{
	struct kvm_cpuid_entry2 e = { .function = 0xb, .index = level };
	boot_cpuid_topology(&e, id, ncpus, smt);
	return e;
}

Test(cpu, topology_without_smt)
{
	struct kvm_cpuid_entry2 t = leaf(0, 3, 4, false), c = leaf(1, 3, 4, false), x = leaf(2, 3, 4, false);
	cr_assert_eq(t.eax, 0, "no bits select a thread");
	cr_assert_eq(t.ebx, 1);
	cr_assert_eq((t.ecx >> 8) & 0xff, 1, "level type SMT");
	cr_assert_eq(c.eax, 2, "2 bits select one of 4 cores");
	cr_assert_eq(c.ebx, 4);
	cr_assert_eq((c.ecx >> 8) & 0xff, 2, "level type core");
	cr_assert_eq(c.edx, 3, "x2APIC id");
	cr_assert_eq((x.ecx >> 8) & 0xff, 0, "no level beyond the core");
}

Test(cpu, topology_with_smt)
{
	struct kvm_cpuid_entry2 t = leaf(0, 5, 6, true), c = leaf(1, 5, 6, true);
	cr_assert_eq(t.eax, 1, "one bit selects the thread");
	cr_assert_eq(t.ebx, 2);
	cr_assert_eq(c.eax, 3, "3 bits cover 6 logical CPUs");
	cr_assert_eq(c.ebx, 6);
	/* A single vCPU has no sibling even with smt. */
	cr_assert_eq(leaf(0, 0, 1, true).ebx, 1);
}
