#include "memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layout.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26) /* log2(2 MiB) << MAP_HUGE_SHIFT */
#endif

static int map_ram(struct guest_mem *mem, uint64_t size, int fd, enum mem_pages pages)
{
	memset(mem, 0, sizeof(*mem));
	uint64_t align = pages == MEM_PAGES_NONE ? 4096 : MEM_HUGE_2M;
	if (size == 0 || (size & (align - 1)) || (fd >= 0 && pages == MEM_PAGES_2M))
		return -EINVAL;
	/* NORESERVE: the guest's RAM is committed page by page as it touches
	 * it. Not for hugetlbfs pages: there it would turn a short pool into a
	 * SIGBUS at the guest's first touch of a page the pool lacks, so the
	 * mapping reserves them (and fails with ENOMEM) up front. */
	int flags = MAP_PRIVATE | (fd < 0 ? MAP_ANONYMOUS : 0);
	flags |= pages == MEM_PAGES_2M ? MAP_HUGETLB | MAP_HUGE_2MB : MAP_NORESERVE;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (pages == MEM_PAGES_TRANSPARENT && madvise(p, size, MADV_HUGEPAGE) != 0) {
		int e = errno; /* EINVAL: a kernel without transparent huge pages */
		munmap(p, size);
		return -e;
	}
	mem->file_backed = fd >= 0;
	mem->pages = pages;
	mem->page_size = pages == MEM_PAGES_2M ? MEM_HUGE_2M : 4096;
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

int mem_init_pages(struct guest_mem *mem, uint64_t size, enum mem_pages pages)
{
	return map_ram(mem, size, -1, pages);
}

int mem_init(struct guest_mem *mem, uint64_t size)
{
	return map_ram(mem, size, -1, MEM_PAGES_NONE);
}

int mem_init_file(struct guest_mem *mem, uint64_t size, int fd, enum mem_pages pages)
{
	if (pages != MEM_PAGES_2M)
		return map_ram(mem, size, fd, pages);
	int ret = map_ram(mem, size, -1, pages);
	for (uint64_t off = 0; !ret && off < size;) {
		ssize_t n = pread(fd, mem->host + off, size - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ret = n < 0 ? -errno : -EIO; /* the file was checked to be long enough */
		else
			off += (uint64_t)n;
	}
	if (ret)
		mem_destroy(mem);
	return ret;
}

int mem_merge(struct guest_mem *mem)
{
	return madvise(mem->host, mem->size, MADV_MERGEABLE) == 0 ? 0 : -errno;
}

long mem_huge_free(void)
{
	int fd = open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[32];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
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

int mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if ((gpa | len) & 4095)
		return -EINVAL;
	void *p = mem_ptr(mem, gpa, len);
	if (!p)
		return -EFAULT;
	int64_t n = mem_discard_host(mem, p, len);
	return n < 0 ? (int)n : 0;
}

int64_t mem_discard_host(const struct guest_mem *mem, const void *p, uint64_t len)
{
	const uint8_t *h = p;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		if (h < r->host || (uint64_t)(h - r->host) > r->size || len > r->size - (uint64_t)(h - r->host))
			continue;
		/* Only whole pages of the mapping can go back (2 MiB ones for
		 * huge-page memory); its host mapping is aligned to them. */
		uintptr_t page = mem->page_size ? mem->page_size : 4096;
		uintptr_t start = ((uintptr_t)h + page - 1) & ~(page - 1);
		uintptr_t end = ((uintptr_t)h + len) & ~(page - 1);
		if (end <= start)
			return 0;
		if (madvise((void *)start, end - start, MADV_DONTNEED))
			return -errno;
		mem_mark_dirty(mem, (void *)start, end - start);
		return (int64_t)(end - start);
	}
	return -EFAULT;
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
