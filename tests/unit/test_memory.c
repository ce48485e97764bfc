#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../vmm/layout.h"
#include "../../vmm/memory.h"

Test(memory, small_guest_has_one_region)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init(&mem, 16 << 20), 0);
	cr_assert_eq(mem.nregions, 1);
	cr_assert_eq(mem_low_end(&mem), 16 << 20);
	cr_assert_not_null(mem_ptr(&mem, 0, 16 << 20));
	cr_assert_not_null(mem_ptr(&mem, (16 << 20) - 1, 1));
	cr_assert_null(mem_ptr(&mem, (16 << 20) - 1, 2));
	cr_assert_null(mem_ptr(&mem, 16 << 20, 1));
	mem_destroy(&mem);
}

Test(memory, large_guest_splits_around_the_mmio_gap)
{
	struct guest_mem mem;
	uint64_t size = LAYOUT_MMIO_GAP_START + (64ULL << 20);
	cr_assert_eq(mem_init(&mem, size), 0);
	cr_assert_eq(mem.nregions, 2);
	cr_assert_eq(mem.regions[1].gpa, LAYOUT_MMIO_GAP_END);
	cr_assert_eq(mem.regions[1].size, 64ULL << 20);
	/* Nothing in the gap, and no access may span it. */
	cr_assert_null(mem_ptr(&mem, LAYOUT_MMIO_GAP_START, 1));
	cr_assert_null(mem_ptr(&mem, LAYOUT_MMIO_GAP_START - 4, 8));
	cr_assert_not_null(mem_ptr(&mem, LAYOUT_MMIO_GAP_END, 4096));
	/* The two regions are backed by consecutive host memory. */
	cr_assert_eq((uint8_t *)mem_ptr(&mem, LAYOUT_MMIO_GAP_END, 1),
		     (uint8_t *)mem_ptr(&mem, 0, 1) + LAYOUT_MMIO_GAP_START);
	mem_destroy(&mem);
}

Test(memory, hostile_ranges_never_overflow)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	cr_assert_null(mem_ptr(&mem, UINT64_MAX, 2));
	cr_assert_null(mem_ptr(&mem, 4096, UINT64_MAX));
	cr_assert_null(mem_ptr(&mem, UINT64_MAX - 4095, 8192));
	uint8_t buf[16];
	cr_assert_eq(mem_read(&mem, (1 << 20) - 8, buf, 16), -EFAULT);
	cr_assert_eq(mem_write(&mem, UINT64_MAX - 1, buf, 4), -EFAULT);
	mem_destroy(&mem);
}

Test(memory, read_write_roundtrip)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	const char msg[] = "ember";
	char out[sizeof(msg)];
	cr_assert_eq(mem_write(&mem, 0x1234, msg, sizeof(msg)), 0);
	cr_assert_eq(mem_read(&mem, 0x1234, out, sizeof(out)), 0);
	cr_assert_str_eq(out, msg);
	mem_destroy(&mem);
}

Test(memory, rejects_bad_sizes)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init(&mem, 0), -EINVAL);
	cr_assert_eq(mem_init(&mem, 4097), -EINVAL);
}

/* Huge pages need whole 2 MiB pages; transparent ones are advised on the
 * mapping; a memory file for 2 MiB pages is copied in (or, with no pool,
 * the mapping fails with ENOMEM rather than a SIGBUS later). */
Test(memory, huge_page_backings)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init_pages(&mem, 3 << 20, MEM_PAGES_TRANSPARENT), -EINVAL);
	cr_assert_eq(mem_init_pages(&mem, 3 << 20, MEM_PAGES_2M), -EINVAL);
	cr_assert_eq(mem_init_pages(&mem, 4 << 20, MEM_PAGES_TRANSPARENT), 0);
	cr_assert_eq(mem.page_size, 4096);
	mem_destroy(&mem);

	char path[] = "/tmp/ember-memtest.XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	cr_assert_eq(ftruncate(fd, 4 << 20), 0);
	cr_assert_eq(pwrite(fd, "huge", 4, (3 << 20) + 5), 4);
	struct mem_opts o = { .pages = MEM_PAGES_2M, .kind = MEM_KIND_ANON, .file_fd = -1, .numa_node = -1 };
	int ret = mem_init_file(&mem, 4 << 20, fd, &o);
	if (mem_huge_free() >= 2) {
		cr_assert_eq(ret, 0);
		cr_assert_eq(mem.page_size, 2 << 20);
		cr_assert(!mem.file_backed);
		cr_assert_eq(memcmp(mem_ptr(&mem, (3 << 20) + 5, 4), "huge", 4), 0);
		mem_destroy(&mem);
	} else {
		cr_assert_eq(ret, -ENOMEM, "%d", ret);
	}
	close(fd);
}

/* A memfd backing is a shared mapping another process could map: a write
 * through the mapping is in the memfd, and a discard punches it out of
 * the memfd (DONTNEED would leave the page there). */
Test(memory, memfd_backing_discard_frees)
{
	struct guest_mem mem;
	struct mem_opts o = { .pages = MEM_PAGES_NONE, .kind = MEM_KIND_MEMFD, .file_fd = -1, .numa_node = -1 };
	cr_assert_eq(mem_init_opts(&mem, 1 << 20, &o), 0);
	cr_assert(mem.shared);
	cr_assert_geq(mem.fd, 0);
	memset(mem_ptr(&mem, 0, 1 << 20), 0x5a, 1 << 20);
	char c = 0;
	cr_assert_eq(pread(mem.fd, &c, 1, 8192), 1);
	cr_assert_eq(c, 0x5a);
	struct stat st;
	cr_assert_eq(fstat(mem.fd, &st), 0);
	blkcnt_t before = st.st_blocks;
	cr_assert_eq(mem_discard(&mem, 0, 512 << 10), 0);
	cr_assert_eq(fstat(mem.fd, &st), 0);
	cr_assert_lt(st.st_blocks, before - (512 << 10) / 512 + 8, "%ld blocks, %ld before", (long)st.st_blocks,
		     (long)before);
	cr_assert_eq(pread(mem.fd, &c, 1, 8192), 1);
	cr_assert_eq(c, 0, "a discarded page still in the memfd");
	cr_assert_eq(*(uint8_t *)mem_ptr(&mem, 8192, 1), 0);
	mem_destroy(&mem);
}

/* A host file backing: sized when empty, refused when shorter, and guest
 * writes land in the file. A file cannot hold huge pages. */
Test(memory, file_backing)
{
	char path[] = "/tmp/ember-memfile.XXXXXX";
	int tmp = mkstemp(path);
	cr_assert_geq(tmp, 0);
	close(tmp);
	char err[512] = "";
	int fd = mem_open_file(path, 1 << 20, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, 1 << 20);
	struct guest_mem mem;
	struct mem_opts o = { .pages = MEM_PAGES_NONE, .kind = MEM_KIND_FILE, .file_fd = fd, .numa_node = -1 };
	cr_assert_eq(mem_init_opts(&mem, 1 << 20, &o), 0);
	cr_assert_eq(mem_write(&mem, 4096, "ram", 3), 0);
	mem_destroy(&mem);
	char buf[4] = "";
	fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, buf, 3, 4096), 3);
	close(fd);
	cr_assert_eq(memcmp(buf, "ram", 3), 0);

	/* 1 MiB is shorter than 2 MiB: refused, with the path named. */
	cr_assert_eq(mem_open_file(path, 2 << 20, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, path) && strstr(err, "shorter"), "%s", err);
	cr_assert_lt(mem_open_file("/tmp", 1 << 20, err, sizeof(err)), 0);
	cr_assert(strstr(err, "/tmp"), "%s", err);

	fd = mem_open_file(path, 1 << 20, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	o = (struct mem_opts){ .pages = MEM_PAGES_TRANSPARENT, .kind = MEM_KIND_FILE, .file_fd = fd, .numa_node = -1 };
	cr_assert_eq(mem_init_opts(&mem, 2 << 20, &o), -EINVAL); /* and fd is closed */
	unlink(path);
}

/* NUMA binding: a node the host has binds; one it lacks fails. */
Test(memory, numa_bind)
{
	int max = mem_numa_max_node();
	cr_assert_geq(max, 0, "no /sys/devices/system/node/online");
	struct guest_mem mem;
	struct mem_opts o = { .pages = MEM_PAGES_NONE, .kind = MEM_KIND_ANON, .file_fd = -1, .numa_node = 0 };
	cr_assert_eq(mem_init_opts(&mem, 1 << 20, &o), 0);
	mem_destroy(&mem);
	if (max < MEM_NUMA_MAX) {
		o.numa_node = MEM_NUMA_MAX;
		cr_assert_eq(mem_init_opts(&mem, 1 << 20, &o), -EINVAL);
	}
}

/* Tracking started late (a live migration of a VM booted without it):
 * every page counts as written until the first take, then only what
 * is marked afterwards. */
Test(memory, dirty_tracking_started_late_counts_every_page)
{
	struct guest_mem mem;
	uint64_t pages = (16 << 20) / 4096 + 3; /* not a whole word of bits */
	cr_assert_eq(mem_init(&mem, pages * 4096), 0);
	cr_assert_eq(mem_track_dirty(&mem, true), 0);
	size_t words = (size_t)((pages + 63) / 64);
	uint64_t *bits = calloc(words, sizeof(uint64_t));
	mem_take_dirty(&mem, bits);
	uint64_t n = 0;
	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(bits[i]);
	cr_assert_eq(n, pages, "%llu of %llu pages dirty", (unsigned long long)n, (unsigned long long)pages);
	memset(bits, 0, words * sizeof(uint64_t));
	mem_mark_dirty(&mem, mem.host + 5 * 4096 + 100, 4096); /* pages 5 and 6 */
	mem_take_dirty(&mem, bits);
	cr_assert_eq(bits[0], 3ULL << 5);
	for (size_t i = 1; i < words; i++)
		cr_assert_eq(bits[i], 0);
	free(bits);
	mem_destroy(&mem);
}
