/* What ties a memory file to its state file (its identity page, checked
 * on load and by merge-memory), and the files a snapshot writes under new
 * names before renaming them into place. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../vmm/snapshot/memfile.h"
#include "../../vmm/snapshot/newfile.h"
#include "../../vmm/snapshot/snapshot.h"
#include "../../vmm/snapshot/working_set.h"

#define MEM (64u * 4096u) /* guest memory in these files */

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ember-memfile.XXXXXX");
	cr_assert(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static const char *in_dir(const char *name)
{
	static char path[8][128];
	static int next;
	char *p = path[next++ % 8];
	snprintf(p, 128, "%s/%s", dir, name);
	return p;
}

/* A memory file at path: pages set to fill at the given page numbers
 * (-1 ends the list), holes elsewhere, then its identity page. */
static void make_mem(const char *path, const struct memfile_trailer *t, int fill, const int *pages)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, MEM), 0);
	uint8_t page[4096];
	memset(page, fill, sizeof(page));
	for (; pages && *pages >= 0; pages++)
		cr_assert_eq(pwrite(fd, page, sizeof(page), (off_t)*pages * 4096), (ssize_t)sizeof(page));
	cr_assert_eq(memfile_write_trailer(fd, t), 0);
	close(fd);
}

static int check(const char *path, const struct memfile_id *want, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	err[0] = '\0';
	int ret = memfile_check(fd, path, want, err, errlen);
	close(fd);
	return ret;
}

static uint8_t byte_at(const char *path, off_t off)
{
	int fd = open(path, O_RDONLY);
	uint8_t b = 0xee;
	cr_assert_eq(pread(fd, &b, 1, off), 1);
	close(fd);
	return b;
}

TestSuite(memfile, .init = make_dir, .fini = remove_dir);

Test(memfile, a_load_accepts_only_its_own_memory_file)
{
	struct memfile_trailer t = { .mem_size = MEM, .generation = 0x1111 };
	make_mem(in_dir("mem"), &t, 0xaa, (const int[]){ 0, 5, -1 });
	struct stat st;
	cr_assert_eq(stat(in_dir("mem"), &st), 0);
	cr_assert_eq(st.st_size, MEM + MEMFILE_ID_PAGE);
	char err[512];
	struct memfile_id own = { MEM, MEM + MEMFILE_ID_PAGE, 0x1111 };
	cr_assert_eq(check(in_dir("mem"), &own, err, sizeof(err)), 0, "%s", err);

	/* Another snapshot's memory file of the same size. */
	struct memfile_id other = own;
	other.generation = 0x2222;
	cr_assert_eq(check(in_dir("mem"), &other, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is not this snapshot's: its generation id is 0000000000001111, the state file's "
			      "is 0000000000002222"), "%s", err);

	/* A guest of another size. */
	struct memfile_id bigger = { 2 * MEM, 2 * MEM + MEMFILE_ID_PAGE, 0x1111 };
	cr_assert_eq(check(in_dir("mem"), &bigger, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "has 266240 bytes; the snapshot's memory file has 528384"), "%s", err);

	/* A Diff's memory file is only the pages that changed. */
	t.flags = MEMFILE_DIFF;
	make_mem(in_dir("diff"), &t, 0xaa, NULL);
	cr_assert_eq(check(in_dir("diff"), &own, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is a Diff snapshot's"), "%s", err);
}

Test(memfile, a_file_without_a_sound_identity_page_is_refused)
{
	struct memfile_id want = { MEM, MEM + MEMFILE_ID_PAGE, 0x1111 };
	char err[512];
	/* Guest memory alone, as a memory file of the old format. */
	int fd = open(in_dir("raw"), O_RDWR | O_CREAT, 0600);
	cr_assert_eq(ftruncate(fd, MEM + MEMFILE_ID_PAGE), 0);
	struct memfile_trailer t;
	cr_assert_eq(memfile_read_trailer(fd, MEM + MEMFILE_ID_PAGE, "raw", &t, err, sizeof(err)), -ENODATA);
	close(fd);
	cr_assert_eq(check(in_dir("raw"), &want, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "has no ember identity page"), "%s", err);

	/* One flipped bit in the record. */
	struct memfile_trailer good = { .mem_size = MEM, .generation = 0x1111 };
	make_mem(in_dir("flipped"), &good, 0, NULL);
	fd = open(in_dir("flipped"), O_RDWR);
	uint8_t b = byte_at(in_dir("flipped"), MEM + MEMFILE_ID_PAGE - 40) ^ 1;
	cr_assert_eq(pwrite(fd, &b, 1, MEM + MEMFILE_ID_PAGE - 40), 1);
	close(fd);
	cr_assert_eq(check(in_dir("flipped"), &want, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "damaged"), "%s", err);
}

Test(memfile, merge_gives_the_base_the_diffs_generation)
{
	struct memfile_trailer base = { .mem_size = MEM, .generation = 0xb0 };
	struct memfile_trailer diff = { .flags = MEMFILE_DIFF, .mem_size = MEM, .generation = 0xd1, .base = 0xb0 };
	make_mem(in_dir("base"), &base, 0x11, (const int[]){ 0, 1, 2, 3, -1 });
	make_mem(in_dir("diff"), &diff, 0x22, (const int[]){ 1, 63, -1 });
	char err[512] = "";
	cr_assert_eq(snapshot_merge_diff(in_dir("base"), in_dir("diff"), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(byte_at(in_dir("base"), 0), 0x11);
	cr_assert_eq(byte_at(in_dir("base"), 4096), 0x22);
	cr_assert_eq(byte_at(in_dir("base"), 2 * 4096), 0x11);
	cr_assert_eq(byte_at(in_dir("base"), 63 * 4096 + 4095), 0x22);
	struct memfile_id diffs_state = { MEM, MEM + MEMFILE_ID_PAGE, 0xd1 };
	cr_assert_eq(check(in_dir("base"), &diffs_state, err, sizeof(err)), 0, "%s", err);

	/* Twice: the base is generation d1 now, the diff applies onto b0. */
	cr_assert_eq(snapshot_merge_diff(in_dir("base"), in_dir("diff"), err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "applies onto memory generation 00000000000000b0"), "%s", err);
	cr_assert(strstr(err, "is generation 00000000000000d1"), "%s", err);
	/* The next diff in the chain applies. */
	struct memfile_trailer next = { .flags = MEMFILE_DIFF, .mem_size = MEM, .generation = 0xd2, .base = 0xd1 };
	make_mem(in_dir("diff2"), &next, 0x33, (const int[]){ 2, -1 });
	cr_assert_eq(snapshot_merge_diff(in_dir("base"), in_dir("diff2"), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(byte_at(in_dir("base"), 2 * 4096), 0x33);
}

Test(memfile, merge_refuses_what_is_not_a_diff_of_a_base)
{
	struct memfile_trailer full = { .mem_size = MEM, .generation = 0xb0 };
	struct memfile_trailer diff = { .flags = MEMFILE_DIFF, .mem_size = MEM, .generation = 0xd1, .base = 0xb0 };
	struct memfile_trailer orphan = { .flags = MEMFILE_DIFF, .mem_size = MEM, .generation = 0xd9 };
	make_mem(in_dir("full"), &full, 0x11, (const int[]){ 0, -1 });
	make_mem(in_dir("diff"), &diff, 0x22, (const int[]){ 0, -1 });
	make_mem(in_dir("orphan"), &orphan, 0x22, (const int[]){ 0, -1 });
	char err[512];
	cr_assert_eq(snapshot_merge_diff(in_dir("full"), in_dir("full"), err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is not a Diff memory file"), "%s", err);
	cr_assert_eq(snapshot_merge_diff(in_dir("diff"), in_dir("diff"), err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is itself a Diff memory file"), "%s", err);
	cr_assert_eq(snapshot_merge_diff(in_dir("full"), in_dir("orphan"), err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "no earlier snapshot"), "%s", err);
	/* None of that touched the base. */
	cr_assert_eq(byte_at(in_dir("full"), 0), 0x11);
	struct memfile_id own = { MEM, MEM + MEMFILE_ID_PAGE, 0xb0 };
	cr_assert_eq(check(in_dir("full"), &own, err, sizeof(err)), 0, "%s", err);
}

Test(memfile, a_state_files_memory_section_is_found)
{
	struct snap_writer w;
	sw_init(&w);
	sw_begin(&w, 7);
	sw_u32(&w, 1);
	sw_end(&w);
	struct memfile_id id = { MEM, MEM + MEMFILE_ID_PAGE, 0x77 }, got;
	memfile_id_put(&w, &id);
	int fd = open(in_dir("state"), O_WRONLY | O_CREAT, 0600);
	cr_assert_eq(snapfile_write(fd, &w), 0);
	close(fd);
	sw_free(&w);
	char err[512] = "";
	cr_assert_eq(memfile_id_of_state(in_dir("state"), &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(&id, &got, sizeof(id)), 0);
	cr_assert_eq(mkfifo(in_dir("fifo"), 0600), 0);
	cr_assert_eq(memfile_id_of_state(in_dir("fifo"), &got, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "is a FIFO"), "%s", err);
}

/* ---- newfile --------------------------------------------------------- */

static size_t entries(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	cr_assert_eq(fscanf(p, "%zu", &n), 1);
	pclose(p);
	return n;
}

Test(memfile, a_new_file_replaces_its_target_only_when_committed)
{
	FILE *f = fopen(in_dir("target"), "w");
	fputs("old", f);
	fclose(f);
	char err[512];
	struct newfile nf;
	cr_assert_eq(newfile_open(&nf, "snapshot_path", in_dir("target"), err, sizeof(err)), 0, "%s", err);
	cr_assert(strncmp(nf.tmp, in_dir("target."), strlen(in_dir("target."))) == 0, "%s", nf.tmp);
	cr_assert_eq(write(nf.fd, "new", 3), 3);
	cr_assert_eq(newfile_finish(&nf, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(byte_at(in_dir("target"), 0), 'o');
	cr_assert_eq(newfile_commit(&nf, err, sizeof(err)), 0, "%s", err);
	newfile_discard(&nf);
	cr_assert_eq(byte_at(in_dir("target"), 0), 'n');
	cr_assert_eq(entries(), 1);

	/* Discarded: the target as it was, nothing left beside it. */
	cr_assert_eq(newfile_open(&nf, "snapshot_path", in_dir("target"), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(write(nf.fd, "xyz", 3), 3);
	newfile_discard(&nf);
	newfile_discard(&nf);
	cr_assert_eq(byte_at(in_dir("target"), 0), 'n');
	cr_assert_eq(entries(), 1);
}

Test(memfile, a_new_file_never_opens_what_is_already_there)
{
	char err[512];
	struct newfile nf;
	/* Targets that are not regular files. */
	cr_assert_eq(mkfifo(in_dir("fifo"), 0600), 0);
	cr_assert_eq(newfile_open(&nf, "mem_file_path", in_dir("fifo"), err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fifo: is a FIFO, not a regular file"), "%s", err);
	cr_assert_eq(symlink(in_dir("elsewhere"), in_dir("link")), 0);
	cr_assert_eq(newfile_open(&nf, "snapshot_path", in_dir("link"), err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "link: is a symbolic link, not a regular file"), "%s", err);
	/* The old fixed temporary names, planted: left alone. */
	cr_assert_eq(mkfifo(in_dir("state.tmp"), 0600), 0);
	cr_assert_eq(symlink(in_dir("victim"), in_dir("mem.ws.tmp")), 0);
	cr_assert_eq(newfile_open(&nf, "snapshot_path", in_dir("state"), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(newfile_finish(&nf, err, sizeof(err)), 0);
	cr_assert_eq(newfile_commit(&nf, err, sizeof(err)), 0);
	cr_assert_eq(working_set_write(in_dir("mem.ws"), NULL, 0), 0);
	struct stat st;
	cr_assert_eq(lstat(in_dir("state.tmp"), &st), 0);
	cr_assert(S_ISFIFO(st.st_mode));
	cr_assert_eq(lstat(in_dir("mem.ws.tmp"), &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	cr_assert_neq(access(in_dir("victim"), F_OK), 0);
	cr_assert_eq(stat(in_dir("state"), &st), 0);
	cr_assert(S_ISREG(st.st_mode));
}
