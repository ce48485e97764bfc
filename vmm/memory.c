#include "memory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "layout.h"

static int map_ram(struct guest_mem *mem, uint64_t size, int fd)
{
	memset(mem, 0, sizeof(*mem));
	if (size == 0 || (size & 0xfff))
		return -EINVAL;
	/* NORESERVE: the guest's RAM is committed page by page as it touches it. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	mem->file_backed = fd >= 0;
	/* Guest RAM never belongs in a core dump of ember. */
	madvise(p, size, MADV_DONTDUMP);
	mem->host = p;
	mem->size = size;

	uint64_t low = size < LAYOUT_MMIO_GAP_START ? size : LAYOUT_MMIO_GAP_START;
	mem->regions[0] = (struct mem_region){ .gpa = 0, .size = low, .host = mem->host };
	mem->nregions = 1;
	if (size > low) {
		mem->regions[1] = (struct mem_region){
			.gpa = LAYOUT_MMIO_GAP_END, .size = size - low, .host = mem->host + low,
		};
		mem->nregions = 2;
	}
	return 0;
}

int mem_init(struct guest_mem *mem, uint64_t size)
{
	return map_ram(mem, size, -1);
}

int mem_init_file(struct guest_mem *mem, uint64_t size, int fd)
{
	return map_ram(mem, size, fd);
}

int mem_track_dirty(struct guest_mem *mem)
{
	size_t words = (size_t)((mem->size / 4096 + 63) / 64);
	mem->dirty = calloc(words, sizeof(uint64_t));
	return mem->dirty ? 0 : -ENOMEM;
}

void mem_mark_dirty(const struct guest_mem *mem, const void *host, size_t len)
{
	const uint8_t *p = host;
	if (!mem || !mem->dirty || len == 0 || p < mem->host || p >= mem->host + mem->size)
		return;
	uint64_t first = (uint64_t)(p - mem->host) / 4096;
	uint64_t last = ((uint64_t)(p - mem->host) + len - 1) / 4096;
	if (last >= mem->size / 4096)
		last = mem->size / 4096 - 1;
	for (uint64_t pg = first; pg <= last; pg++)
		__atomic_fetch_or(&mem->dirty[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
}

void mem_take_dirty(struct guest_mem *mem, uint64_t *bitmap)
{
	if (!mem->dirty)
		return;
	size_t words = (size_t)((mem->size / 4096 + 63) / 64);
	for (size_t i = 0; i < words; i++)
		bitmap[i] |= __atomic_exchange_n(&mem->dirty[i], 0, __ATOMIC_RELAXED);
}

void mem_destroy(struct guest_mem *mem)
{
	free(mem->dirty);
	if (mem->host)
		munmap(mem->host, mem->size);
	memset(mem, 0, sizeof(*mem));
}

void *mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		/* Written so that neither gpa+len nor off+len can overflow. */
		if (off > r->size || len > r->size - off)
			continue;
		return r->host + off;
	}
	return NULL;
}

int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *p = mem_ptr(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = mem_ptr(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

uint64_t mem_low_end(const struct guest_mem *mem)
{
	return mem->regions[0].size;
}
