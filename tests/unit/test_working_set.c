#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../vmm/snapshot/working_set.h"

#define PG 4096ULL
#define LIMIT (64ULL << 20)

static char dir[64];
static char path[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ember-ws.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ws", dir);
}

static void teardown(void)
{
	char tmp[160];
	unlink(path);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	rmdir(dir);
}

TestSuite(working_set, .init = setup, .fini = teardown);

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A file by hand: header fields, then n ranges, then extra bytes cut off
 * (negative) or added (positive). */
static void write_raw(const char *magic, uint32_t version, uint32_t reserved, uint64_t count,
		      const struct ws_range *r, size_t n, long adjust)
{
	size_t len = WS_HEADER_SIZE + n * WS_RANGE_SIZE;
	uint8_t *buf = calloc(1, len + 64);
	memcpy(buf, magic, 8);
	le32(buf + 8, version);
	le32(buf + 12, reserved);
	le64(buf + 16, count);
	for (size_t i = 0; i < n; i++) {
		le64(buf + WS_HEADER_SIZE + i * WS_RANGE_SIZE, r[i].offset);
		le64(buf + WS_HEADER_SIZE + i * WS_RANGE_SIZE + 8, r[i].len);
	}
	len = (size_t)((long)len + adjust);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
	free(buf);
}

static const struct ws_range good[] = {
	{ 0, 3 * PG },
	{ 3 * PG, PG }, /* adjacent is not overlapping */
	{ 100 * PG, 16 * PG },
	{ LIMIT - PG, PG },
};
#define NGOOD (sizeof(good) / sizeof(good[0]))

/* Reading path must fail with -EINVAL and a reason containing want. */
static void expect_bad(const char *want)
{
	struct ws_range *r = (void *)1;
	size_t n = 99;
	char err[256] = "";
	cr_assert_eq(working_set_read(path, LIMIT, &r, &n, err, sizeof(err)), -EINVAL, "%s", err);
	cr_assert_null(r);
	cr_assert_eq(n, 0);
	cr_assert_not_null(strstr(err, want), "'%s' lacks '%s'", err, want);
	cr_assert_null(strchr(err, '\n'));
}

Test(working_set, round_trip)
{
	cr_assert_eq(working_set_write(path, good, NGOOD), 0);
	struct ws_range *r;
	size_t n;
	char err[256] = "";
	cr_assert_eq(working_set_read(path, LIMIT, &r, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(n, NGOOD);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(r[i].offset, good[i].offset);
		cr_assert_eq(r[i].len, good[i].len);
	}
	free(r);

	/* The exact bytes: little-endian, the header as specified. */
	uint8_t buf[WS_HEADER_SIZE + 2 * WS_RANGE_SIZE];
	int fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	cr_assert_eq(memcmp(buf, "EMBERWS1\001\0\0\0\0\0\0\0\004\0\0\0\0\0\0\0", 24), 0);
	cr_assert_eq(memcmp(buf + 24, "\0\0\0\0\0\0\0\0\0\060\0\0\0\0\0\0", 16), 0);
	cr_assert_eq(memcmp(buf + 40, "\0\060\0\0\0\0\0\0\0\020\0\0\0\0\0\0", 16), 0);

	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(access(tmp, F_OK), -1, "the temporary file was left behind");
}

Test(working_set, empty_round_trip)
{
	cr_assert_eq(working_set_write(path, NULL, 0), 0);
	struct ws_range *r = (void *)1;
	size_t n = 1;
	char err[256] = "";
	cr_assert_eq(working_set_read(path, LIMIT, &r, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(n, 0);
	cr_assert_null(r);
}

Test(working_set, write_refuses_what_read_would_refuse)
{
	struct ws_range misaligned[] = { { 1, PG } };
	struct ws_range unsorted[] = { { 2 * PG, PG }, { 0, PG } };
	struct ws_range overlapping[] = { { 0, 2 * PG }, { PG, PG } };
	struct ws_range empty[] = { { 0, 0 } };
	cr_assert_eq(working_set_write(path, misaligned, 1), -EINVAL);
	cr_assert_eq(working_set_write(path, unsorted, 2), -EINVAL);
	cr_assert_eq(working_set_write(path, overlapping, 2), -EINVAL);
	cr_assert_eq(working_set_write(path, empty, 1), -EINVAL);
	cr_assert_eq(access(path, F_OK), -1);
}

Test(working_set, missing_file)
{
	struct ws_range *r;
	size_t n;
	char err[256] = "";
	cr_assert_eq(working_set_read(path, LIMIT, &r, &n, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);
}

Test(working_set, bad_magic)
{
	write_raw("EMBERSNP", 1, 0, NGOOD, good, NGOOD, 0);
	expect_bad("bad magic");
}

Test(working_set, bad_version)
{
	write_raw(WS_MAGIC, 2, 0, NGOOD, good, NGOOD, 0);
	expect_bad("unsupported version 2");
}

Test(working_set, reserved_not_zero)
{
	write_raw(WS_MAGIC, 1, 7, NGOOD, good, NGOOD, 0);
	expect_bad("reserved");
}

Test(working_set, truncated_header)
{
	write_raw(WS_MAGIC, 1, 0, 0, NULL, 0, -1);
	expect_bad("truncated header");
}

Test(working_set, truncated_ranges)
{
	write_raw(WS_MAGIC, 1, 0, NGOOD, good, NGOOD, -8);
	expect_bad("truncated");
}

Test(working_set, trailing_bytes)
{
	write_raw(WS_MAGIC, 1, 0, NGOOD, good, NGOOD, 5);
	expect_bad("5 bytes after the last range");
}

Test(working_set, count_larger_than_the_file)
{
	write_raw(WS_MAGIC, 1, 0, 1000, good, NGOOD, 0);
	expect_bad("truncated (1000 ranges announced, 4 present)");
}

Test(working_set, count_larger_than_memory_allows)
{
	/* Checked before anything is allocated: a huge count costs nothing. */
	write_raw(WS_MAGIC, 1, 0, UINT64_MAX, good, NGOOD, 0);
	expect_bad("cannot fit");
	write_raw(WS_MAGIC, 1, 0, LIMIT / PG + 1, good, NGOOD, 0);
	expect_bad("cannot fit");
}

Test(working_set, misaligned_offset)
{
	struct ws_range r[] = { { 0, PG }, { 5 * PG + 512, PG } };
	write_raw(WS_MAGIC, 1, 0, 2, r, 2, 0);
	expect_bad("range 1 (offset 0x5200, 4096 bytes) is not 4 KiB aligned");
}

Test(working_set, misaligned_length)
{
	struct ws_range r[] = { { 0, PG + 1 } };
	write_raw(WS_MAGIC, 1, 0, 1, r, 1, 0);
	expect_bad("not 4 KiB aligned");
}

Test(working_set, empty_range)
{
	struct ws_range r[] = { { PG, 0 } };
	write_raw(WS_MAGIC, 1, 0, 1, r, 1, 0);
	expect_bad("is empty");
}

Test(working_set, unsorted)
{
	struct ws_range r[] = { { 10 * PG, PG }, { 2 * PG, PG } };
	write_raw(WS_MAGIC, 1, 0, 2, r, 2, 0);
	expect_bad("out of order or overlaps");
}

Test(working_set, overlapping)
{
	struct ws_range r[] = { { 0, 4 * PG }, { 3 * PG, 4 * PG } };
	write_raw(WS_MAGIC, 1, 0, 2, r, 2, 0);
	expect_bad("range 1 (offset 0x3000, 16384 bytes) is out of order or overlaps");
}

Test(working_set, beyond_the_limit)
{
	struct ws_range r[] = { { LIMIT - PG, 2 * PG } };
	write_raw(WS_MAGIC, 1, 0, 1, r, 1, 0);
	expect_bad("beyond the end of guest memory");
	struct ws_range r2[] = { { LIMIT, PG } };
	write_raw(WS_MAGIC, 1, 0, 1, r2, 1, 0);
	expect_bad("beyond the end of guest memory");
}

Test(working_set, overflowing_range)
{
	struct ws_range r[] = { { UINT64_MAX - PG + 1, 2 * PG } };
	write_raw(WS_MAGIC, 1, 0, 1, r, 1, 0);
	expect_bad("overflows");
}

Test(working_set, zero_limit_allows_nothing)
{
	write_raw(WS_MAGIC, 1, 0, 1, good, 1, 0);
	struct ws_range *r;
	size_t n;
	char err[256] = "";
	cr_assert_eq(working_set_read(path, 0, &r, &n, err, sizeof(err)), -EINVAL);
}

/* Guest memory laid out as ember does: one mapping, two regions. */
static void two_regions(struct guest_mem *m, uint64_t pages, uint64_t split)
{
	memset(m, 0, sizeof(*m));
	void *p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	m->host = p;
	m->size = pages * PG;
	m->nregions = 2;
	m->regions[0] = (struct mem_region){ .gpa = 0, .size = split * PG, .host = p };
	m->regions[1] = (struct mem_region){ .gpa = 1ULL << 32, .size = (pages - split) * PG,
					     .host = (uint8_t *)p + split * PG };
}

Test(working_set, collect_finds_the_touched_pages)
{
	struct guest_mem m;
	two_regions(&m, 64, 32);
	/* Pages 0-2, 10, 31-32 (across the two regions: one range), 63. */
	unsigned touched[] = { 0, 1, 2, 10, 31, 32, 63 };
	for (size_t i = 0; i < sizeof(touched) / sizeof(touched[0]); i++)
		m.host[touched[i] * PG] = 1;
	struct ws_range *r;
	size_t n;
	cr_assert_eq(working_set_collect(&m, &r, &n), 0);
	cr_assert_eq(n, 4);
	struct ws_range want[] = { { 0, 3 * PG }, { 10 * PG, PG }, { 31 * PG, 2 * PG }, { 63 * PG, PG } };
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(r[i].offset, want[i].offset, "range %zu", i);
		cr_assert_eq(r[i].len, want[i].len, "range %zu", i);
	}

	/* What collect gives, write takes and read gives back. */
	cr_assert_eq(working_set_write(path, r, n), 0);
	struct ws_range *back;
	size_t nback;
	char err[256] = "";
	cr_assert_eq(working_set_read(path, m.size, &back, &nback, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(nback, n);
	cr_assert_eq(memcmp(back, r, n * sizeof(*r)), 0);
	free(back);
	free(r);
	munmap(m.host, m.size);
}

Test(working_set, collect_of_untouched_memory_is_empty)
{
	struct guest_mem m;
	two_regions(&m, 16, 8);
	struct ws_range *r = (void *)1;
	size_t n = 1;
	cr_assert_eq(working_set_collect(&m, &r, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(r);
	munmap(m.host, m.size);
}
