/* ember-jailer is linked statically, and libcap-ng's capng_change_id()
 * refers to glibc's getpwuid() and initgroups(), which need glibc's NSS
 * (shared libraries loaded at run time) in a static binary. The jailer
 * only ever passes CAPNG_DROP_SUPP_GRP, which never calls them; these
 * definitions keep glibc's NSS code out of the binary (and the linker's
 * warning about it away), and fail cleanly if anything did call them. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>

struct passwd *getpwuid(uid_t uid)
{
	(void)uid;
	errno = ENOSYS;
	return NULL;
}

int initgroups(const char *user, gid_t group)
{
	(void)user;
	(void)group;
	errno = ENOSYS;
	return -1;
}
