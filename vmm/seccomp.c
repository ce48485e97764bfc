/* Installing ember's seccomp filters. The allow-list itself is data in
 * seccomp/rules.c; the build compiles it to one BPF program per role
 * (seccomp/gen.c), so installing a filter here is one system call, with
 * no libseccomp in ember at run time. */
#include "seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Generated: the compiled program of each role. */
extern const struct sock_fprog seccomp_filters[];
#ifdef EMBER_TEST_HOOKS
extern const struct sock_fprog seccomp_filters_trace[];
#endif

static bool disabled;
/* --seccomp-filter: the VMM, API and vCPU programs, replacing ember's. */
static bool custom;
static struct sock_fprog custom_filters[4];

void seccomp_disable(void)
{
	disabled = true;
}

void seccomp_use_custom(enum seccomp_role role, const struct sock_filter *insns, size_t len)
{
	custom = true;
	custom_filters[role] = (struct sock_fprog){ .len = (unsigned short)len, .filter = (struct sock_filter *)insns };
}

const char *seccomp_role_name(enum seccomp_role role)
{
	static const char *const names[] = { "jail", "vmm", "api", "vcpu" };
	return (unsigned)role < 4 ? names[role] : "?";
}

#ifdef EMBER_TEST_HOOKS
int seccomp_test_forbidden_role = -1;
bool seccomp_test_trace;

static void test_hook(enum seccomp_role role)
{
	if ((int)role != seccomp_test_forbidden_role)
		return;
	/* personality(0xffffffff) only reads the persona; no filter allows it. */
	fprintf(stderr, "ember: test hook: calling personality() from the %s thread\n", seccomp_role_name(role));
	long r = syscall(SYS_personality, 0xffffffffUL);
	fprintf(stderr, "ember: test hook: personality() returned %ld: not killed\n", r);
	_exit(3);
}
#else
static void test_hook(enum seccomp_role role)
{
	(void)role;
}
#endif

int seccomp_install(enum seccomp_role role, char *err, size_t errlen)
{
	if (disabled) {
		test_hook(role);
		return 0;
	}
	/* The first filter (the jail's, or the VMM thread's) sets no_new_privs,
	 * which seccomp requires of an unprivileged process; threads inherit
	 * it. The kernel logs kills (kernel.seccomp.actions_logged), so a
	 * missing rule shows up in the kernel log with its syscall number. */
	if ((role == SECCOMP_ROLE_JAIL || role == SECCOMP_ROLE_VMM) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "seccomp: no_new_privs: %s", strerror(errno));
		return -1;
	}
	const struct sock_fprog *prog = &seccomp_filters[role];
#ifdef EMBER_TEST_HOOKS
	if (seccomp_test_trace)
		prog = &seccomp_filters_trace[role];
#endif
	if (custom && role != SECCOMP_ROLE_JAIL)
		prog = &custom_filters[role];
	/* An empty custom program: no filter for this thread (Firecracker's rule). */
	if (prog->len && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0) {
		snprintf(err, errlen, "seccomp: cannot install the %s%s filter: %s", custom ? "custom " : "",
			 seccomp_role_name(role), strerror(errno));
		return -1;
	}
	test_hook(role);
	return 0;
}
