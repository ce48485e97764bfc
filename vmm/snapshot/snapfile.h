/* The snapshot state file: a header, then a payload of tagged sections.
 *
 *   header (32 bytes, little-endian):
 *     magic "EMBERSNP", u32 format version, u32 header size (32),
 *     u64 payload length, u64 CRC-64 (XZ/ECMA-182) of the payload
 *   payload: sections, each u32 tag, u32 length, then that many bytes
 *
 * Writers append fixed-width little-endian fields; readers take them back
 * with bounds checks, so a short or hostile file turns into an error, never
 * a read past the buffer. The file holds no host pointers or fds. */
#ifndef EMBER_SNAPFILE_H
#define EMBER_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPFILE_MAGIC "EMBERSNP"
/* 2: the memory section names its memory file (memfile.h). */
#define SNAPFILE_VERSION 2
#define SNAPFILE_HEADER_SIZE 32
/* Loads refuse anything bigger: far above what 32 vCPUs and every device
 * need, far below what could hurt the host. */
#define SNAPFILE_MAX_SIZE (16u << 20)

uint64_t snap_crc64(uint64_t crc, const void *buf, size_t len);

struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t section_start;   /* offset of the open section's header */
	bool oom;               /* an allocation failed: the result is unusable */
};

void sw_init(struct snap_writer *w);
void sw_free(struct snap_writer *w);
void sw_u8(struct snap_writer *w, uint8_t v);
void sw_u16(struct snap_writer *w, uint16_t v);
void sw_u32(struct snap_writer *w, uint32_t v);
void sw_u64(struct snap_writer *w, uint64_t v);
void sw_bytes(struct snap_writer *w, const void *p, size_t n);
/* A section: sw_begin(tag), its fields, sw_end(). No nesting. */
void sw_begin(struct snap_writer *w, uint32_t tag);
void sw_end(struct snap_writer *w);

/* Write header + payload to fd (a new file: see newfile.h). Returns 0, or
 * -ENOMEM if building w ran out of memory, or -errno. */
int snapfile_write(int fd, const struct snap_writer *w);
/* The same file as one buffer: *image (malloc'd), *len bytes. Returns 0
 * or -ENOMEM. */
int snapfile_image(const struct snap_writer *w, uint8_t **image, size_t *len);

struct snap_reader {
	const uint8_t *p;
	size_t len, off;
	bool bad;               /* a read went past the end or a check failed */
	char why[160];          /* the first reason it went bad */
};

void sr_init(struct snap_reader *r, const void *p, size_t len);
uint8_t sr_u8(struct snap_reader *r);
uint16_t sr_u16(struct snap_reader *r);
uint32_t sr_u32(struct snap_reader *r);
uint64_t sr_u64(struct snap_reader *r);
void sr_bytes(struct snap_reader *r, void *dst, size_t n);
/* Mark the reader bad with a reason (the first one sticks); returns false. */
bool sr_fail(struct snap_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The next section: its tag and a reader over exactly its bytes. Returns
 * false at the end of the payload or if the section overruns it. */
bool sr_section(struct snap_reader *r, uint32_t *tag, struct snap_reader *sec);
/* The section must have been consumed exactly. */
bool sr_done(struct snap_reader *r, const char *what);

/* Check a whole file image (header, version, size, CRC) and return its
 * payload. Returns 0 or -EINVAL with the reason in err. */
int snapfile_decode(const uint8_t *file, size_t len, const uint8_t **payload, size_t *plen,
		    char *err, size_t errlen);

/* Read path, a regular file of at most SNAPFILE_MAX_SIZE bytes (opened
 * without blocking: see hostfile.h), into *buf (malloc'd). Returns 0 or
 * -errno with the reason in err. */
int snapfile_load(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen);

/* The format version in the header of the state file at path (any
 * version, readable by this ember or not: --describe-snapshot). Returns 0
 * or -errno with the reason in err. */
int snapfile_version(const char *path, uint32_t *version, char *err, size_t errlen);

/* Versions as Firecracker prints them (--snapshot-version,
 * --describe-snapshot): "v<major>.<minor>.<patch>"; ember's formats are
 * numbered by a major version alone. */
#define SNAPFILE_VERSION_FMT "v%u.0.0"

#endif
