#include <criterion/criterion.h>
#include <errno.h>

#include "../../vmm/boot/boot.h"

Test(cmdline, has_matches_whole_keys_only)
{
	cr_assert(boot_cmdline_has("console=ttyS0 rodata=on quiet", "rodata=off"));
	cr_assert(boot_cmdline_has("quiet noxsave", "noxsave"));
	cr_assert(boot_cmdline_has("noxsave", "noxsave"));
	cr_assert_not(boot_cmdline_has("noxsaves", "noxsave"));
	cr_assert_not(boot_cmdline_has("xnoxsave", "noxsave"));
	cr_assert_not(boot_cmdline_has("", "noxsave"));
	cr_assert(boot_cmdline_has("  clearcpuid=smap,erms  ", "clearcpuid=smap"));
}

Test(cmdline, hardware_kvm_keeps_args_as_given)
{
	char out[64], added[64];
	cr_assert_eq(boot_cmdline_build("console=ttyS0", false, out, sizeof(out), added, sizeof(added)), 0);
	cr_assert_str_eq(out, "console=ttyS0");
	cr_assert_str_eq(added, "");
}

Test(cmdline, pvm_host_adds_what_is_missing)
{
	char out[128], added[64];
	cr_assert_eq(boot_cmdline_build("console=ttyS0 rodata=on", true, out, sizeof(out), added,
					sizeof(added)), 0);
	cr_assert_str_eq(out, "console=ttyS0 rodata=on noxsave clearcpuid=smap");
	cr_assert_str_eq(added, " noxsave clearcpuid=smap");
	cr_assert_eq(boot_cmdline_build("", true, out, sizeof(out), added, sizeof(added)), 0);
	cr_assert_str_eq(out, "noxsave clearcpuid=smap rodata=off");
}

Test(cmdline, too_long_is_refused)
{
	char out[16], added[64];
	cr_assert_eq(boot_cmdline_build("0123456789abcdef", false, out, sizeof(out), added, sizeof(added)), -E2BIG);
	cr_assert_eq(boot_cmdline_build("0123456789", true, out, sizeof(out), added, sizeof(added)), -E2BIG);
}
