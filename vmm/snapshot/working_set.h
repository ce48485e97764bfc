/* The working set: which pages of guest memory the previous run touched.
 *
 * ember records it next to a snapshot's memory file, and ember-uffd copies
 * those pages into a restored VM first, before the guest asks for them.
 *
 *   file (little-endian):
 *     magic "EMBERWS1", u32 version (1), u32 reserved (0), u64 count,
 *     then count x { u64 offset, u64 len }
 *
 * Each range is a byte range of the memory file: 4 KiB aligned, non-empty,
 * sorted by offset and non-overlapping. */
#ifndef EMBER_WORKING_SET_H
#define EMBER_WORKING_SET_H

#include <stddef.h>
#include <stdint.h>

#include "../memory.h"

#define WS_MAGIC "EMBERWS1"
#define WS_VERSION 1
#define WS_HEADER_SIZE 24
#define WS_RANGE_SIZE 16
#define WS_PAGE_SIZE 4096u

struct ws_range {
	uint64_t offset, len;
};

/* The ranges of mem's host mapping whose pages are resident now (mincore),
 * as memory-file offsets (a region's file offset is region.host - mem->host),
 * adjacent pages merged. *out is malloc'd (NULL when *n is 0). Returns 0 or
 * -errno. */
int working_set_collect(const struct guest_mem *mem, struct ws_range **out, size_t *n);

/* Write the n ranges to path (a new file renamed over it: newfile.h). Ranges
 * that break the rules above are refused with -EINVAL, so ember never
 * writes a file it would not read back. Returns 0 or -errno. */
int working_set_write(const char *path, const struct ws_range *r, size_t n);

/* Read and validate path (a regular file, opened without blocking): magic, version, reserved field, a count that
 * matches the file's size, and every range aligned, in order and inside
 * [0, limit_bytes). *out is malloc'd (NULL when *n is 0). Returns 0, or
 * -errno (-EINVAL for a malformed file) with a one-line reason in err. */
int working_set_read(const char *path, uint64_t limit_bytes, struct ws_range **out, size_t *n,
		     char *err, size_t errlen);

#endif
