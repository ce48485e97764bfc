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
	char out[64], added[128];
	cr_assert_eq(boot_cmdline_build("console=ttyS0", false, out, sizeof(out), added, sizeof(added)), 0);
	cr_assert_str_eq(out, "console=ttyS0");
	cr_assert_str_eq(added, "");
}

Test(cmdline, pvm_host_adds_what_is_missing)
{
	char out[128], added[128];
	cr_assert_eq(boot_cmdline_build("console=ttyS0 rodata=on", true, out, sizeof(out), added,
					sizeof(added)), 0);
	cr_assert_str_eq(out, "console=ttyS0 rodata=on noxsave clearcpuid=smap,erms,fsrm percpu_alloc=page");
	cr_assert_str_eq(added, " noxsave clearcpuid=smap,erms,fsrm percpu_alloc=page");
	cr_assert_eq(boot_cmdline_build("", true, out, sizeof(out), added, sizeof(added)), 0);
	cr_assert_str_eq(out, "noxsave clearcpuid=smap,erms,fsrm rodata=off percpu_alloc=page");
}

Test(cmdline, too_long_is_refused)
{
	char out[16], added[128];
	cr_assert_eq(boot_cmdline_build("0123456789abcdef", false, out, sizeof(out), added, sizeof(added)), -E2BIG);
	cr_assert_eq(boot_cmdline_build("0123456789", true, out, sizeof(out), added, sizeof(added)), -E2BIG);
}

Test(cmdline, append_goes_before_init_arguments)
{
	char buf[64] = "console=ttyS0 -- init-arg";
	cr_assert_eq(boot_cmdline_append(buf, sizeof(buf), "root=/dev/vda"), 0);
	cr_assert_str_eq(buf, "console=ttyS0 root=/dev/vda -- init-arg");
	char start[64] = "-- only-init";
	cr_assert_eq(boot_cmdline_append(start, sizeof(start), "quiet"), 0);
	cr_assert_str_eq(start, "quiet -- only-init");
	char empty[16] = "";
	cr_assert_eq(boot_cmdline_append(empty, sizeof(empty), "quiet"), 0);
	cr_assert_str_eq(empty, "quiet");
	char tight[12] = "abc";
	cr_assert_eq(boot_cmdline_append(tight, sizeof(tight), "12345678"), -E2BIG);
	cr_assert_eq(boot_cmdline_append(tight, sizeof(tight), "1234567"), 0);
	cr_assert_str_eq(tight, "abc 1234567");
	/* "--x" is an ordinary word, not the separator. */
	char word[32] = "a --x b";
	cr_assert_eq(boot_cmdline_append(word, sizeof(word), "c"), 0);
	cr_assert_str_eq(word, "a --x b c");
}

Test(cmdline, pvm_params_go_before_init_arguments)
{
	char out[128], added[128];
	cr_assert_eq(boot_cmdline_build("console=ttyS0 -- x", true, out, sizeof(out), added, sizeof(added)), 0);
	cr_assert_str_eq(out, "console=ttyS0 noxsave clearcpuid=smap,erms,fsrm rodata=off percpu_alloc=page -- x");
}
