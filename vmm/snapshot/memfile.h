/* A snapshot's memory file, and what ties it to its state file.
 *
 *   [0, mem_size)          guest memory: the VM's RAM regions one after the
 *                          other (a Full file has holes where RAM is zero, a
 *                          Diff file where a page did not change)
 *   [mem_size, +4096)      the identity page: zeros, then in its last 64
 *                          bytes (little-endian) magic "EMBERMEM", u32
 *                          version (1), u32 flags (MEMFILE_DIFF), u64 guest
 *                          memory size, u64 generation id, u64 base
 *                          generation, 16 reserved zero bytes, u64 CRC-64
 *                          of the 56 bytes before it
 *
 * Each snapshot draws a new random generation id and writes it into both
 * files; the state file also records the memory file's size (struct
 * memfile_id, its memory section). A load accepts only the memory file with
 * that size and id that is not a Diff. A Diff file also names its base: the
 * generation of the memory the VM last matched (its previous snapshot, or
 * the snapshot it was restored from); merging it onto that base gives the
 * base the Diff's generation, which the Diff's state file then accepts.
 *
 * Guest memory stays at offset 0, as Firecracker lays it out, so a
 * private mapping of the file is the guest's RAM and a page-fault handler
 * serves the offsets ember sends; the identity page lies past them. */
#ifndef EMBER_MEMFILE_H
#define EMBER_MEMFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapfile.h"

#define MEMFILE_MAGIC "EMBERMEM"
#define MEMFILE_VERSION 1
#define MEMFILE_ID_PAGE 4096u
#define MEMFILE_RECORD 64u
#define MEMFILE_DIFF 1u

/* The identity page's record. */
struct memfile_trailer {
	uint32_t flags;
	uint64_t mem_size;    /* bytes of guest memory before the identity page */
	uint64_t generation;  /* never 0 */
	uint64_t base;        /* a Diff: the generation it applies onto (0: none known) */
};

/* What a state file records of its memory file (its memory section). */
struct memfile_id {
	uint64_t mem_size;
	uint64_t file_size;   /* mem_size + MEMFILE_ID_PAGE */
	uint64_t generation;
};

/* A new random generation id (never 0). Returns 0 or -errno. */
int memfile_new_generation(uint64_t *generation);

/* Write the identity page of t at offset t->mem_size of fd (so the file
 * becomes mem_size + MEMFILE_ID_PAGE bytes long). Returns 0 or -errno. */
int memfile_write_trailer(int fd, const struct memfile_trailer *t);

/* Write all len bytes of buf at off (short writes and EINTR retried).
 * Returns 0 or -errno. */
int memfile_pwrite(int fd, const void *buf, size_t len, off_t off);

/* Read the identity page of fd, a file of file_size bytes named path.
 * Returns 0; -ENODATA if the file has none (no magic: a memory file of
 * another VMM, or not a memory file); or -EINVAL if it is damaged or does
 * not match the file's size; with the reason in err either way. */
int memfile_read_trailer(int fd, uint64_t file_size, const char *path, struct memfile_trailer *t,
			 char *err, size_t errlen);

/* Is fd (named path) the memory file want describes, and loadable (not a
 * Diff)? Reads the file's size and its 64-byte record, nothing of guest
 * memory. Returns 0, or -EINVAL (-errno for an I/O error) with a message
 * naming the mismatch in err. */
int memfile_check(int fd, const char *path, const struct memfile_id *want, char *err, size_t errlen);

/* The memory section of a state file: write it, or read and validate it
 * (a positive multiple of 4 KiB, a file size that fits, a generation).
 * memfile_id_get returns false with the reason in sec->why. */
void memfile_id_put(struct snap_writer *w, const struct memfile_id *id);
bool memfile_id_get(struct snap_reader *sec, struct memfile_id *id);

/* Read the state file at path and return its memory section (for a
 * page-fault handler told the state file). Returns 0 or -errno with the
 * reason in err. */
int memfile_id_of_state(const char *path, struct memfile_id *id, char *err, size_t errlen);

#endif
