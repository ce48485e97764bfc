#include "memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "layout.h"

int mem_init(struct guest_mem *mem, uint64_t size)
{
	memset(mem, 0, sizeof(*mem));
	if (size == 0 || (size & 0xfff))
		return -EINVAL;
	/* NORESERVE: the guest's RAM is committed page by page as it touches it. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
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

void mem_destroy(struct guest_mem *mem)
{
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
