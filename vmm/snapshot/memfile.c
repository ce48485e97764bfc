#include "memfile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tags.h"

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int memfile_new_generation(uint64_t *generation)
{
	do {
		if (getrandom(generation, sizeof(*generation), 0) != (ssize_t)sizeof(*generation))
			return errno ? -errno : -EIO;
	} while (*generation == 0);
	return 0;
}

int memfile_write_trailer(int fd, const struct memfile_trailer *t)
{
	uint8_t page[MEMFILE_ID_PAGE] = { 0 };
	uint8_t *r = page + MEMFILE_ID_PAGE - MEMFILE_RECORD;
	memcpy(r, MEMFILE_MAGIC, 8);
	put_le(r + 8, MEMFILE_VERSION, 4);
	put_le(r + 12, t->flags, 4);
	put_le(r + 16, t->mem_size, 8);
	put_le(r + 24, t->generation, 8);
	put_le(r + 32, t->base, 8);
	put_le(r + 56, snap_crc64(0, r, 56), 8);
	return memfile_pwrite(fd, page, sizeof(page), (off_t)t->mem_size);
}

int memfile_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int memfile_read_trailer(int fd, uint64_t file_size, const char *path, struct memfile_trailer *t,
			 char *err, size_t errlen)
{
	uint8_t r[MEMFILE_RECORD];
	if (file_size < MEMFILE_RECORD) {
		snprintf(err, errlen, "memory file %s has no ember identity page (%" PRIu64 " bytes)", path,
			 file_size);
		return -ENODATA;
	}
	ssize_t n;
	do
		n = pread(fd, r, sizeof(r), (off_t)(file_size - MEMFILE_RECORD));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(r)) {
		int ret = n < 0 ? -errno : -EIO;
		snprintf(err, errlen, "memory file %s: reading its identity page: %s", path,
			 n < 0 ? strerror(errno) : "the file shrank");
		return ret;
	}
	if (memcmp(r, MEMFILE_MAGIC, 8) != 0) {
		snprintf(err, errlen, "memory file %s has no ember identity page: not the memory file of an "
			 "ember snapshot of this format (or a merge-memory onto it did not finish)", path);
		return -ENODATA;
	}
	uint32_t version = (uint32_t)get_le(r + 8, 4);
	if (get_le(r + 56, 8) != snap_crc64(0, r, 56) || version != MEMFILE_VERSION ||
	    get_le(r + 40, 8) || get_le(r + 48, 8)) {
		snprintf(err, errlen, "memory file %s: its identity page is damaged or of an unknown version (%u)",
			 path, version);
		return -EINVAL;
	}
	t->flags = (uint32_t)get_le(r + 12, 4);
	t->mem_size = get_le(r + 16, 8);
	t->generation = get_le(r + 24, 8);
	t->base = get_le(r + 32, 8);
	if ((t->flags & ~MEMFILE_DIFF) || !t->generation || !t->mem_size || t->mem_size % SNAP_PAGE ||
	    t->mem_size > UINT64_MAX - MEMFILE_ID_PAGE || t->mem_size + MEMFILE_ID_PAGE != file_size) {
		snprintf(err, errlen, "memory file %s: its identity page says %" PRIu64 " bytes of guest memory "
			 "(flags 0x%x) in a file of %" PRIu64 " bytes", path, t->mem_size, t->flags, file_size);
		return -EINVAL;
	}
	return 0;
}

int memfile_check(int fd, const char *path, const struct memfile_id *want, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int ret = -errno;
		snprintf(err, errlen, "memory file %s: %s", path, strerror(errno));
		return ret;
	}
	if ((uint64_t)st.st_size != want->file_size) {
		snprintf(err, errlen, "memory file %s has %lld bytes; the snapshot's memory file has %" PRIu64
			 " (%" PRIu64 " of guest memory and its identity page)", path, (long long)st.st_size,
			 want->file_size, want->mem_size);
		return -EINVAL;
	}
	struct memfile_trailer t;
	int ret = memfile_read_trailer(fd, want->file_size, path, &t, err, errlen);
	if (ret)
		return ret == -ENODATA ? -EINVAL : ret;
	if (t.flags & MEMFILE_DIFF) {
		snprintf(err, errlen, "memory file %s is a Diff snapshot's: only the pages that changed; merge it "
			 "onto its base with `ember merge-memory BASE DIFF` and load the result", path);
		return -EINVAL;
	}
	if (t.generation != want->generation) {
		snprintf(err, errlen, "memory file %s is not this snapshot's: its generation id is %016" PRIx64
			 ", the state file's is %016" PRIx64 " (files of two snapshots mixed, or a snapshot that "
			 "did not finish writing over another)", path, t.generation, want->generation);
		return -EINVAL;
	}
	return 0;
}

void memfile_id_put(struct snap_writer *w, const struct memfile_id *id)
{
	sw_begin(w, TAG_MEMORY);
	sw_u64(w, id->mem_size);
	sw_u64(w, id->file_size);
	sw_u64(w, id->generation);
	sw_end(w);
}

bool memfile_id_get(struct snap_reader *sec, struct memfile_id *id)
{
	id->mem_size = sr_u64(sec);
	id->file_size = sr_u64(sec);
	id->generation = sr_u64(sec);
	if (!sr_done(sec, "memory section"))
		return false;
	if (id->mem_size == 0 || id->mem_size % SNAP_PAGE || id->mem_size > UINT64_MAX - MEMFILE_ID_PAGE)
		return sr_fail(sec, "memory size %" PRIu64 " is not a positive multiple of 4 KiB", id->mem_size);
	if (id->file_size != id->mem_size + MEMFILE_ID_PAGE)
		return sr_fail(sec, "memory file size %" PRIu64 " for %" PRIu64 " bytes of guest memory",
			       id->file_size, id->mem_size);
	if (id->generation == 0)
		return sr_fail(sec, "memory section without a generation id");
	return true;
}

int memfile_id_of_state(const char *path, struct memfile_id *id, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t len;
	int ret = snapfile_load(path, &buf, &len, err, errlen);
	if (ret)
		return ret;
	const uint8_t *payload;
	size_t plen;
	ret = snapfile_decode(buf, len, &payload, &plen, err, errlen);
	if (!ret) {
		struct snap_reader r, sec;
		uint32_t tag;
		ret = -EINVAL;
		sr_init(&r, payload, plen);
		while (ret && sr_section(&r, &tag, &sec))
			if (tag == TAG_MEMORY)
				ret = memfile_id_get(&sec, id) ? 0 : (sr_fail(&r, "%s", sec.why), -EINVAL);
		if (ret)
			snprintf(err, errlen, "snapshot_path %s: %s", path, r.bad ? r.why : "no memory section");
	}
	free(buf);
	return ret;
}
