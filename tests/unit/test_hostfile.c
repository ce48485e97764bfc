#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../vmm/hostfile.h"

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ember-hostfile.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static void path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

TestSuite(hostfile, .init = make_dir, .fini = remove_dir);

Test(hostfile, a_regular_file_opens_blocking)
{
	char p[128], err[256];
	path_in_dir(p, sizeof(p), "img");
	int w = open(p, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(w, 0);
	close(w);
	int fd = hostfile_open("drive", p, O_RDWR, 0, HOSTFILE_REG, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	/* O_NONBLOCK was only for the open: io_uring must see a blocking file. */
	cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

Test(hostfile, a_fifo_is_refused_without_waiting_for_a_writer)
{
	char p[128], err[256];
	path_in_dir(p, sizeof(p), "fifo");
	cr_assert_eq(mkfifo(p, 0600), 0);
	/* A blocking open of either end would hang here (and the test with it). */
	cr_assert_eq(hostfile_open("kernel", p, O_RDONLY, 0, HOSTFILE_REG, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is a FIFO, not a regular file"), "%s", err);
	cr_assert(strstr(err, p), "%s", err);
	cr_assert_eq(hostfile_open("memory file", p, O_WRONLY | O_CREAT, 0600, HOSTFILE_REG, err, sizeof(err)),
		     -ENXIO);
	cr_assert(strstr(err, "is a FIFO, not a regular file"), "%s", err);
	cr_assert_eq(hostfile_open("drive", p, O_RDWR, 0, HOSTFILE_REG | HOSTFILE_BLK, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a regular file or a block device"), "%s", err);
}

Test(hostfile, a_fifo_is_taken_where_allowed_and_stays_non_blocking_if_asked)
{
	char p[128], err[256];
	path_in_dir(p, sizeof(p), "fifo");
	cr_assert_eq(mkfifo(p, 0600), 0);
	int fd = hostfile_open("log", p, O_RDWR | O_NONBLOCK, 0, HOSTFILE_REG | HOSTFILE_FIFO, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	cr_assert_neq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
}

Test(hostfile, directories_devices_and_missing_files_say_what_they_are)
{
	char err[256];
	cr_assert_lt(hostfile_open("initrd", dir, O_RDONLY, 0, HOSTFILE_REG, err, sizeof(err)), 0);
	cr_assert(strstr(err, "is a directory"), "%s", err);
	cr_assert_eq(hostfile_open("drive", "/dev/null", O_RDWR, 0, HOSTFILE_REG | HOSTFILE_BLK, err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "is a character device"), "%s", err);
	char p[128];
	path_in_dir(p, sizeof(p), "missing");
	cr_assert_eq(hostfile_open("kernel", p, O_RDONLY, 0, HOSTFILE_REG, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "No such file"), "%s", err);
}
