#include "memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hostfile.h"
#include "layout.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26) /* log2(2 MiB) << MAP_HUGE_SHIFT */
#endif

/* The first ram bytes of the mapping as RAM: below the MMIO gap, and
 * what does not fit there above 4 GiB. */
static void layout_ram(struct guest_mem *mem, uint64_t ram)
{
	uint64_t low = ram < LAYOUT_MMIO_GAP_START ? ram : LAYOUT_MMIO_GAP_START;
	mem->regions[0] = (struct mem_region){ .gpa = 0, .size = low, .host = mem->host };
	mem->nregions = 1;
	if (ram > low) {
		mem->regions[1] = (struct mem_region){
			.gpa = LAYOUT_MMIO_GAP_END, .size = ram - low, .host = mem->host + low,
		};
		mem->nregions = 2;
	}
}

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#define MPOL_BIND_ 2 /* <linux/mempolicy.h>'s MPOL_BIND, without libnuma's header */

/* Bind [p, p+size) to host node node before anything touches it. */
static int bind_node(void *p, uint64_t size, int node)
{
	if (node < 0 || node > MEM_NUMA_MAX)
		return node < 0 ? 0 : -EINVAL;
	unsigned long mask = 1UL << node;
	/* maxnode counts bits the kernel reads, one more than it uses. */
	if (syscall(SYS_mbind, p, (unsigned long)size, MPOL_BIND_, &mask, 8 * sizeof(mask) + 1, 0UL) != 0)
		return -errno;
	return 0;
}

static int map_ram(struct guest_mem *mem, uint64_t size, int private_fd, const struct mem_opts *o)
{
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	enum mem_pages pages = o->pages;
	int fd = o->kind == MEM_KIND_FILE ? o->file_fd : -1;
	uint64_t align = pages == MEM_PAGES_NONE ? 4096 : MEM_HUGE_2M;
	int ret = -EINVAL;
	if (size == 0 || (size & (align - 1)) || (private_fd >= 0 && (pages == MEM_PAGES_2M || o->kind != MEM_KIND_ANON)) ||
	    (o->kind == MEM_KIND_FILE && (fd < 0 || pages != MEM_PAGES_NONE)))
		goto fail;
	if (o->kind == MEM_KIND_MEMFD) {
		unsigned mfd = MFD_CLOEXEC | (pages == MEM_PAGES_2M ? MFD_HUGETLB | MFD_HUGE_2MB : 0);
		fd = memfd_create("ember-guest-ram", mfd);
		if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
			ret = -errno;
			goto fail;
		}
	}
	/* NORESERVE: the guest's RAM is committed page by page as it touches
	 * it. Not for hugetlbfs pages: there it would turn a short pool into a
	 * SIGBUS at the guest's first touch of a page the pool lacks, so the
	 * mapping reserves them (and fails with ENOMEM) up front. Shared
	 * memory is committed by its memfd/file, page by page as well. */
	int flags;
	if (o->kind != MEM_KIND_ANON)
		flags = MAP_SHARED;
	else {
		flags = MAP_PRIVATE | (private_fd < 0 ? MAP_ANONYMOUS : 0);
		flags |= pages == MEM_PAGES_2M ? MAP_HUGETLB | MAP_HUGE_2MB : MAP_NORESERVE;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd >= 0 ? fd : private_fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto fail;
	}
	if ((pages == MEM_PAGES_TRANSPARENT && madvise(p, size, MADV_HUGEPAGE) != 0) ||
	    (ret = bind_node(p, size, o->numa_node))) {
		if (!ret)
			ret = -errno; /* EINVAL: a kernel without transparent huge pages */
		munmap(p, size);
		goto fail;
	}
	mem->file_backed = private_fd >= 0;
	mem->shared = o->kind != MEM_KIND_ANON;
	mem->fd = mem->shared ? fd : -1;
	mem->kind = o->kind;
	mem->pages = pages;
	mem->page_size = pages == MEM_PAGES_2M ? MEM_HUGE_2M : 4096;
	/* Guest RAM never belongs in a core dump of ember. */
	madvise(p, size, MADV_DONTDUMP);
	mem->host = p;
	mem->size = size;
	layout_ram(mem, size);
	return 0;

fail:
	if (fd >= 0)
		close(fd);
	mem->fd = -1;
	return ret;
}

int mem_init_opts(struct guest_mem *mem, uint64_t size, const struct mem_opts *o)
{
	return map_ram(mem, size, -1, o);
}

uint64_t mem_set_hotplug(struct guest_mem *mem, uint64_t bytes, uint64_t align)
{
	if (!bytes || !align || bytes % 4096 || bytes >= mem->size || mem_ram_size(mem) != mem->size)
		return 0; /* a second hotplug region, or one that leaves no RAM */
	uint64_t ram = mem->size - bytes;
	layout_ram(mem, ram);
	const struct mem_region *last = &mem->regions[mem->nregions - 1];
	uint64_t top = last->gpa + last->size > LAYOUT_MMIO_GAP_END ? last->gpa + last->size : LAYOUT_MMIO_GAP_END;
	uint64_t gpa = (top + align - 1) / align * align;
	mem->regions[mem->nregions++] = (struct mem_region){
		.gpa = gpa, .size = bytes, .host = mem->host + ram, .hotplug = true,
	};
	return gpa;
}

uint64_t mem_ram_size(const struct guest_mem *mem)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < mem->nregions; i++)
		if (!mem->regions[i].hotplug)
			n += mem->regions[i].size;
	return n;
}

int mem_init_pages(struct guest_mem *mem, uint64_t size, enum mem_pages pages)
{
	struct mem_opts o = { .pages = pages, .kind = MEM_KIND_ANON, .file_fd = -1, .numa_node = -1 };
	return map_ram(mem, size, -1, &o);
}

int mem_init(struct guest_mem *mem, uint64_t size)
{
	return mem_init_pages(mem, size, MEM_PAGES_NONE);
}

int mem_init_file(struct guest_mem *mem, uint64_t size, int fd, const struct mem_opts *o)
{
	if (o->pages != MEM_PAGES_2M && o->kind == MEM_KIND_ANON)
		return map_ram(mem, size, fd, o);
	int ret = map_ram(mem, size, -1, o);
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

int mem_open_file(const char *path, uint64_t size, char *err, size_t errlen)
{
	char detail[320];
	int fd = hostfile_open("machine-config.ember_mem_backend file", path, O_RDWR | O_CREAT, 0600, HOSTFILE_REG,
			       detail, sizeof(detail));
	if (fd < 0) {
		snprintf(err, errlen, "%s", detail);
		return fd;
	}
	struct stat st;
	int ret = 0;
	if (fstat(fd, &st) != 0)
		ret = -errno;
	else if (st.st_size == 0 && ftruncate(fd, (off_t)size) != 0)
		ret = -errno;
	else if (st.st_size != 0 && (uint64_t)st.st_size < size) {
		snprintf(err, errlen, "machine-config.ember_mem_backend file %.200s: %lld bytes, shorter than the "
			 "guest's %llu MiB (an empty file is sized to the guest)", path, (long long)st.st_size,
			 (unsigned long long)(size >> 20));
		close(fd);
		return -EINVAL;
	}
	if (ret) {
		snprintf(err, errlen, "machine-config.ember_mem_backend file %.200s: sizing it: %s", path, strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}

int mem_numa_max_node(void)
{
	/* "0", "0-3" or "0,2-3": the last number is the highest node. */
	int fd = open("/sys/devices/system/node/online", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[256];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *end = buf + strcspn(buf, "\n");
	*end = '\0';
	char *last = end;
	while (last > buf && last[-1] >= '0' && last[-1] <= '9')
		last--;
	return last == end ? -1 : atoi(last);
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

int mem_track_dirty(struct guest_mem *mem, bool all_dirty)
{
	size_t words = (size_t)((mem->size / 4096 + 63) / 64);
	uint64_t *bits = calloc(words, sizeof(uint64_t));
	if (!bits)
		return -ENOMEM;
	if (all_dirty) {
		memset(bits, 0xff, words * sizeof(uint64_t));
		if ((mem->size / 4096) % 64)
			bits[words - 1] = (1ULL << ((mem->size / 4096) % 64)) - 1;
	}
	/* vCPU threads may be marking already (the emulator's writes). */
	__atomic_store_n(&mem->dirty, bits, __ATOMIC_RELEASE);
	return 0;
}

void mem_mark_dirty(const struct guest_mem *mem, const void *host, size_t len)
{
	const uint8_t *p = host;
	uint64_t *dirty = mem ? __atomic_load_n(&mem->dirty, __ATOMIC_ACQUIRE) : NULL;
	if (!dirty || len == 0 || p < mem->host || p >= mem->host + mem->size)
		return;
	uint64_t first = (uint64_t)(p - mem->host) / 4096;
	uint64_t last = ((uint64_t)(p - mem->host) + len - 1) / 4096;
	if (last >= mem->size / 4096)
		last = mem->size / 4096 - 1;
	for (uint64_t pg = first; pg <= last; pg++)
		__atomic_fetch_or(&dirty[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
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
	if (mem->shared && mem->fd >= 0)
		close(mem->fd);
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
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
		/* DONTNEED only unmaps a shared page: it stays in the memfd or
		 * file. REMOVE punches it out of there. */
		if (madvise((void *)start, end - start, mem->shared ? MADV_REMOVE : MADV_DONTNEED))
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
