#include "snapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hostfile.h"

/* ---- CRC-64/XZ (reflected ECMA-182 polynomial) ------------------------ */

static uint64_t crc_table[256];

static void crc_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xc96c5795d7870f42ULL : c >> 1;
		crc_table[i] = c;
	}
}

uint64_t snap_crc64(uint64_t crc, const void *buf, size_t len)
{
	if (!crc_table[1])
		crc_init();
	const uint8_t *p = buf;
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- writer ----------------------------------------------------------- */

void sw_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->section_start = SIZE_MAX;
}

void sw_free(struct snap_writer *w)
{
	free(w->buf);
	sw_init(w);
}

static uint8_t *sw_room(struct snap_writer *w, size_t n)
{
	if (w->oom)
		return NULL;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			w->oom = true;
			return NULL;
		}
		w->buf = b;
		w->cap = cap;
	}
	uint8_t *p = w->buf + w->len;
	w->len += n;
	return p;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void sw_le(struct snap_writer *w, uint64_t v, unsigned n)
{
	uint8_t *p = sw_room(w, n);
	if (p)
		put_le(p, v, n);
}

void sw_u8(struct snap_writer *w, uint8_t v) { sw_le(w, v, 1); }
void sw_u16(struct snap_writer *w, uint16_t v) { sw_le(w, v, 2); }
void sw_u32(struct snap_writer *w, uint32_t v) { sw_le(w, v, 4); }
void sw_u64(struct snap_writer *w, uint64_t v) { sw_le(w, v, 8); }

void sw_bytes(struct snap_writer *w, const void *src, size_t n)
{
	uint8_t *p = sw_room(w, n);
	if (p && n)
		memcpy(p, src, n);
}

void sw_begin(struct snap_writer *w, uint32_t tag)
{
	w->section_start = w->len;
	sw_u32(w, tag);
	sw_u32(w, 0); /* length, filled by sw_end */
}

void sw_end(struct snap_writer *w)
{
	if (!w->oom && w->section_start != SIZE_MAX)
		put_le(w->buf + w->section_start + 4, w->len - w->section_start - 8, 4);
	w->section_start = SIZE_MAX;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The header of a file whose payload is w's. */
static void snapfile_header(const struct snap_writer *w, uint8_t hdr[SNAPFILE_HEADER_SIZE])
{
	memcpy(hdr, SNAPFILE_MAGIC, 8);
	put_le(hdr + 8, SNAPFILE_VERSION, 4);
	put_le(hdr + 12, SNAPFILE_HEADER_SIZE, 4);
	put_le(hdr + 16, w->len, 8);
	put_le(hdr + 24, snap_crc64(0, w->buf, w->len), 8);
}

int snapfile_write(int fd, const struct snap_writer *w)
{
	if (w->oom)
		return -ENOMEM;
	uint8_t hdr[SNAPFILE_HEADER_SIZE];
	snapfile_header(w, hdr);
	int ret = write_all(fd, hdr, sizeof(hdr));
	return ret ? ret : write_all(fd, w->buf, w->len);
}

int snapfile_image(const struct snap_writer *w, uint8_t **image, size_t *len)
{
	if (w->oom)
		return -ENOMEM;
	uint8_t *p = malloc(SNAPFILE_HEADER_SIZE + w->len);
	if (!p)
		return -ENOMEM;
	snapfile_header(w, p);
	memcpy(p + SNAPFILE_HEADER_SIZE, w->buf, w->len);
	*image = p;
	*len = SNAPFILE_HEADER_SIZE + w->len;
	return 0;
}

/* ---- reader ----------------------------------------------------------- */

void sr_init(struct snap_reader *r, const void *p, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->p = p;
	r->len = len;
}

bool sr_fail(struct snap_reader *r, const char *fmt, ...)
{
	if (!r->bad) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->why, sizeof(r->why), fmt, ap);
		va_end(ap);
		r->bad = true;
	}
	return false;
}

static const uint8_t *sr_take(struct snap_reader *r, size_t n)
{
	if (r->bad)
		return NULL;
	if (n > r->len - r->off) {
		sr_fail(r, "truncated: %zu more bytes wanted at offset %zu of %zu", n, r->off, r->len);
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint64_t sr_le(struct snap_reader *r, unsigned n)
{
	const uint8_t *p = sr_take(r, n);
	return p ? get_le(p, n) : 0;
}

uint8_t sr_u8(struct snap_reader *r) { return (uint8_t)sr_le(r, 1); }
uint16_t sr_u16(struct snap_reader *r) { return (uint16_t)sr_le(r, 2); }
uint32_t sr_u32(struct snap_reader *r) { return (uint32_t)sr_le(r, 4); }
uint64_t sr_u64(struct snap_reader *r) { return sr_le(r, 8); }

void sr_bytes(struct snap_reader *r, void *dst, size_t n)
{
	const uint8_t *p = sr_take(r, n);
	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

bool sr_section(struct snap_reader *r, uint32_t *tag, struct snap_reader *sec)
{
	if (r->bad || r->off == r->len)
		return false;
	*tag = sr_u32(r);
	uint32_t len = sr_u32(r);
	const uint8_t *p = sr_take(r, len);
	if (!p)
		return false;
	sr_init(sec, p, len);
	return true;
}

bool sr_done(struct snap_reader *r, const char *what)
{
	if (!r->bad && r->off != r->len)
		sr_fail(r, "%s: %zu unexpected bytes at its end", what, r->len - r->off);
	return !r->bad;
}

int snapfile_decode(const uint8_t *file, size_t len, const uint8_t **payload, size_t *plen,
		    char *err, size_t errlen)
{
	if (len < SNAPFILE_HEADER_SIZE) { /* Firecracker's words for it, then ember's */
		snprintf(err, errlen, "IO Error: File too short to contain CRC (not an ember snapshot: "
			 "shorter than its header)");
		return -EINVAL;
	}
	if (memcmp(file, SNAPFILE_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not an ember snapshot (bad magic)");
		return -EINVAL;
	}
	uint32_t version = (uint32_t)get_le(file + 8, 4);
	if (version != SNAPFILE_VERSION) {
		snprintf(err, errlen,
			 "snapshot format version %u; this ember reads version %u only", version,
			 SNAPFILE_VERSION);
		return -EINVAL;
	}
	uint32_t hsize = (uint32_t)get_le(file + 12, 4);
	uint64_t psize = get_le(file + 16, 8);
	if (hsize != SNAPFILE_HEADER_SIZE || psize != len - SNAPFILE_HEADER_SIZE) {
		snprintf(err, errlen, "snapshot size mismatch: header says %llu payload bytes, file has %zu",
			 (unsigned long long)psize, len - SNAPFILE_HEADER_SIZE);
		return -EINVAL;
	}
	uint64_t crc = get_le(file + 24, 8);
	if (snap_crc64(0, file + SNAPFILE_HEADER_SIZE, (size_t)psize) != crc) {
		snprintf(err, errlen, "snapshot checksum mismatch: the file is corrupted");
		return -EINVAL;
	}
	*payload = file + SNAPFILE_HEADER_SIZE;
	*plen = (size_t)psize;
	return 0;
}

int snapfile_load(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	*buf = NULL;
	int fd = hostfile_open("snapshot_path", path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return fd;
	struct stat st;
	int ret = 0;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "snapshot_path %s: %s", path, strerror(errno));
	} else if (st.st_size > SNAPFILE_MAX_SIZE) {
		ret = -EINVAL;
		snprintf(err, errlen, "snapshot_path %s: larger than a state file can be (%u bytes)", path,
			 SNAPFILE_MAX_SIZE);
	} else if (!(*buf = malloc((size_t)st.st_size + 1))) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
	} else {
		size_t got = 0;
		while (got < (size_t)st.st_size) {
			ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
			if (n <= 0) {
				ret = n < 0 ? -errno : -EIO;
				snprintf(err, errlen, "reading snapshot_path %s: %s", path,
					 n < 0 ? strerror(errno) : "file shrank");
				break;
			}
			got += (size_t)n;
		}
		*len = got;
	}
	close(fd);
	if (ret) {
		free(*buf);
		*buf = NULL;
	}
	return ret;
}

int snapfile_version(const char *path, uint32_t *version, char *err, size_t errlen)
{
	int fd = hostfile_open("snapshot", path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return fd;
	uint8_t hdr[SNAPFILE_HEADER_SIZE];
	ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
	int e = n < 0 ? errno : 0;
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(e));
		return -e;
	}
	if (n != (ssize_t)sizeof(hdr) || memcmp(hdr, SNAPFILE_MAGIC, 8) != 0 ||
	    get_le(hdr + 12, 4) != SNAPFILE_HEADER_SIZE) {
		snprintf(err, errlen, "snapshot %s: not an ember snapshot state file (bad magic or header)", path);
		return -EINVAL;
	}
	*version = (uint32_t)get_le(hdr + 8, 4);
	return 0;
}
