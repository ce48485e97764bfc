#include "working_set.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hostfile.h"
#include "newfile.h"

/* mincore() is asked about this many pages at a time (64 MiB of memory,
 * a 16 KiB vector), so a large guest never needs a large vector. */
#define WS_MINCORE_CHUNK 16384u

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

struct ws_vec {
	struct ws_range *r;
	size_t n, cap;
};

/* Append [off, off+len), merging with the last range when they touch. */
static int ws_push(struct ws_vec *v, uint64_t off, uint64_t len)
{
	if (v->n && v->r[v->n - 1].offset + v->r[v->n - 1].len == off) {
		v->r[v->n - 1].len += len;
		return 0;
	}
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		struct ws_range *r = realloc(v->r, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		v->r = r;
		v->cap = cap;
	}
	v->r[v->n++] = (struct ws_range){ off, len };
	return 0;
}

int working_set_collect(const struct guest_mem *mem, struct ws_range **out, size_t *n)
{
	struct ws_vec v = { 0 };
	unsigned char *vec = NULL;
	int ret = 0;
	uint64_t prev_end = 0;

	*out = NULL;
	*n = 0;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *reg = &mem->regions[i];
		if (reg->host < mem->host || (reg->size % WS_PAGE_SIZE) ||
		    ((uintptr_t)reg->host % WS_PAGE_SIZE))
			return -EINVAL;
		uint64_t base = (uint64_t)(reg->host - mem->host);
		/* Offsets must come out sorted. */
		if (base < prev_end)
			return -EINVAL;
		prev_end = base + reg->size;
	}

	vec = malloc(WS_MINCORE_CHUNK);
	if (!vec)
		return -ENOMEM;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *reg = &mem->regions[i];
		uint64_t base = (uint64_t)(reg->host - mem->host);
		uint64_t pages = reg->size / WS_PAGE_SIZE;
		for (uint64_t p = 0; p < pages; p += WS_MINCORE_CHUNK) {
			uint64_t cnt = pages - p < WS_MINCORE_CHUNK ? pages - p : WS_MINCORE_CHUNK;
			if (mincore(reg->host + p * WS_PAGE_SIZE, cnt * WS_PAGE_SIZE, vec) < 0) {
				ret = -errno;
				goto fail;
			}
			for (uint64_t k = 0; k < cnt; k++) {
				if (!(vec[k] & 1))
					continue;
				ret = ws_push(&v, base + (p + k) * WS_PAGE_SIZE, WS_PAGE_SIZE);
				if (ret)
					goto fail;
			}
		}
	}
	free(vec);
	*out = v.r;
	*n = v.n;
	return 0;
fail:
	free(vec);
	free(v.r);
	return ret;
}

/* NULL if the ranges follow the rules (limit 0: no upper bound), else why not. */
static const char *ws_check(const struct ws_range *r, size_t n, uint64_t limit, size_t *bad)
{
	uint64_t prev_end = 0;
	for (size_t i = 0; i < n; i++) {
		*bad = i;
		if ((r[i].offset % WS_PAGE_SIZE) || (r[i].len % WS_PAGE_SIZE))
			return "is not 4 KiB aligned";
		if (r[i].len == 0)
			return "is empty";
		if (r[i].offset > UINT64_MAX - r[i].len)
			return "overflows";
		if (i > 0 && r[i].offset < prev_end)
			return "is out of order or overlaps the one before";
		if (limit && r[i].offset + r[i].len > limit)
			return "lies beyond the end of guest memory";
		prev_end = r[i].offset + r[i].len;
	}
	return NULL;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int working_set_write(const char *path, const struct ws_range *r, size_t n)
{
	size_t bad;
	if (ws_check(r, n, 0, &bad))
		return -EINVAL;

	char err[256];
	struct newfile f;
	int ret = newfile_open(&f, "working set", path, err, sizeof(err));
	if (ret)
		return ret;

	uint8_t hdr[WS_HEADER_SIZE];
	memcpy(hdr, WS_MAGIC, 8);
	put_le32(hdr + 8, WS_VERSION);
	put_le32(hdr + 12, 0);
	put_le64(hdr + 16, n);
	ret = write_all(f.fd, hdr, sizeof(hdr));

	/* In blocks, so a big working set needs no big buffer. */
	uint8_t buf[256 * WS_RANGE_SIZE];
	for (size_t i = 0; i < n && !ret;) {
		size_t k = 0;
		for (; k < 256 && i < n; k++, i++) {
			put_le64(buf + k * WS_RANGE_SIZE, r[i].offset);
			put_le64(buf + k * WS_RANGE_SIZE + 8, r[i].len);
		}
		ret = write_all(f.fd, buf, k * WS_RANGE_SIZE);
	}
	if (!ret)
		ret = newfile_finish(&f, err, sizeof(err));
	if (!ret)
		ret = newfile_commit(&f, err, sizeof(err));
	newfile_discard(&f);
	return ret;
}

static int ws_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int ws_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static int read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EINVAL; /* the file shrank under us */
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int working_set_read(const char *path, uint64_t limit_bytes, struct ws_range **out, size_t *n,
		     char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	int fd = hostfile_open("working set", path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return fd;

	int ret;
	struct stat st;
	uint8_t hdr[WS_HEADER_SIZE];
	uint8_t *raw = NULL;
	struct ws_range *r = NULL;

	if (fstat(fd, &st) < 0) {
		ret = ws_fail(err, errlen, -errno, "working set %s: %s", path, strerror(errno));
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size < WS_HEADER_SIZE) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: truncated header (%llu bytes)",
			      path, (unsigned long long)size);
		goto out;
	}
	ret = read_exact(fd, hdr, sizeof(hdr), 0);
	if (ret) {
		ws_fail(err, errlen, ret, "working set %s: cannot read the header: %s", path, strerror(-ret));
		goto out;
	}
	if (memcmp(hdr, WS_MAGIC, 8) != 0) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: bad magic (not an ember working set)", path);
		goto out;
	}
	uint32_t version = get_le32(hdr + 8);
	if (version != WS_VERSION) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: unsupported version %u (expected %u)",
			      path, version, WS_VERSION);
		goto out;
	}
	if (get_le32(hdr + 12) != 0) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: reserved field is not zero", path);
		goto out;
	}
	uint64_t count = get_le64(hdr + 16);
	uint64_t body = size - WS_HEADER_SIZE;
	/* Non-overlapping page ranges inside the limit: at most one per page. */
	if (count > limit_bytes / WS_PAGE_SIZE) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: %llu ranges cannot fit in %llu bytes of memory",
			      path, (unsigned long long)count, (unsigned long long)limit_bytes);
		goto out;
	}
	if (count > body / WS_RANGE_SIZE) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: truncated (%llu ranges announced, %llu present)",
			      path, (unsigned long long)count, (unsigned long long)(body / WS_RANGE_SIZE));
		goto out;
	}
	if (body != count * WS_RANGE_SIZE) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: %llu bytes after the last range",
			      path, (unsigned long long)(body - count * WS_RANGE_SIZE));
		goto out;
	}
	if (count == 0) {
		ret = 0;
		goto out;
	}

	raw = malloc(body);
	r = malloc(count * sizeof(*r));
	if (!raw || !r) {
		ret = ws_fail(err, errlen, -ENOMEM, "working set %s: out of memory", path);
		goto out;
	}
	ret = read_exact(fd, raw, body, WS_HEADER_SIZE);
	if (ret) {
		ws_fail(err, errlen, ret, "working set %s: cannot read the ranges: %s", path, strerror(-ret));
		goto out;
	}
	for (uint64_t i = 0; i < count; i++) {
		r[i].offset = get_le64(raw + i * WS_RANGE_SIZE);
		r[i].len = get_le64(raw + i * WS_RANGE_SIZE + 8);
	}
	size_t bad = 0;
	const char *why = ws_check(r, count, limit_bytes, &bad);
	if (why) {
		ret = ws_fail(err, errlen, -EINVAL, "working set %s: range %zu (offset 0x%llx, %llu bytes) %s",
			      path, bad, (unsigned long long)r[bad].offset, (unsigned long long)r[bad].len, why);
		goto out;
	}
	*out = r;
	*n = count;
	r = NULL;
	ret = 0;
out:
	free(raw);
	free(r);
	close(fd);
	return ret;
}
