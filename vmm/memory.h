/* Guest RAM and the one checked way to reach it.
 *
 * Guest RAM is a single host mapping (anonymous and private by default; a
 * memfd or a host file, shared, when asked), faulted in lazily, split
 * into at most two guest-physical regions around the MMIO gap. Every access
 * to guest memory by gpa goes through mem_ptr()/mem_read()/mem_write(),
 * which reject any range that overflows or leaves a region. */
#ifndef EMBER_MEMORY_H
#define EMBER_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether the 4 KiB page at p (in guest RAM, or a copy of it 8-byte
 * aligned at least) holds only zero bytes: such pages are left out of
 * memory files and migration streams. */
static inline bool mem_page_is_zero(const void *p)
{
	const uint64_t *q = p;
	uint64_t any = 0;
	for (size_t i = 0; i < 4096 / 8; i++)
		any |= q[i];
	return !any;
}

#define MEM_MAX_REGIONS 3 /* RAM below and above the MMIO gap, the hotplug region */

/* What backs guest RAM (machine-config "huge_pages"). */
enum mem_pages {
	MEM_PAGES_NONE,        /* 4 KiB pages */
	MEM_PAGES_TRANSPARENT, /* 4 KiB, advised MADV_HUGEPAGE (transparent huge pages) */
	MEM_PAGES_2M,          /* 2 MiB hugetlbfs pages from the host's pool */
};
#define MEM_HUGE_2M (2ULL << 20)

/* Where guest RAM lives (machine-config "ember_mem_backend"). */
enum mem_kind {
	MEM_KIND_ANON,  /* private anonymous memory */
	MEM_KIND_MEMFD, /* a memfd mapped shared: other processes can map it (/proc/PID/fd) */
	MEM_KIND_FILE,  /* a host file mapped shared: guest RAM is the file's contents */
};
#define MEM_NUMA_MAX 63 /* highest node mem_opts.numa_node may name (one mask word) */

struct mem_opts {
	enum mem_pages pages;
	enum mem_kind kind;
	int file_fd;   /* MEM_KIND_FILE: the file (O_RDWR, at least size bytes); the
			* guest_mem owns it from the call on, even when it fails */
	int numa_node; /* bind the memory to this host node (mbind MPOL_BIND) before
			* it is touched, or -1 */
};

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	bool hotplug;   /* virtio-mem's region: not RAM the guest boots with */
};

struct guest_mem {
	uint8_t *host;  /* the whole mapping */
	uint64_t size;  /* bytes of guest RAM */
	bool file_backed; /* a private (copy-on-write) mapping of a memory file */
	bool shared;      /* MAP_SHARED (memfd or host file): discard punches holes */
	/* Registered with a userfaultfd (a restore's page-fault handler): a
	 * page not resident yet is not zero, it is still to be filled. */
	bool lazy;
	int fd;           /* the memfd or host file when shared, else -1 */
	enum mem_kind kind;
	enum mem_pages pages;
	uint64_t page_size; /* of the mapping: 4096, or MEM_HUGE_2M for MEM_PAGES_2M */
	/* With dirty tracking: one bit per 4 KiB page that ember itself (its
	 * devices) wrote; KVM's dirty log has the guest's writes. */
	uint64_t *dirty;
	unsigned nregions;
	struct mem_region regions[MEM_MAX_REGIONS];
};

/* Map size bytes of RAM (a multiple of 4 KiB; of 2 MiB unless pages is
 * MEM_PAGES_NONE) and lay it out below the MMIO gap and, if it does not fit
 * there, above 4 GiB. 2 MiB pages are reserved from the host's hugetlbfs
 * pool when mapped (faulted in lazily all the same): -ENOMEM if the pool
 * has too few free pages. Returns 0 or -errno. */
int mem_init_pages(struct guest_mem *mem, uint64_t size, enum mem_pages pages);
/* The same with a backing and NUMA binding: a memfd is created (with
 * MFD_HUGETLB for MEM_PAGES_2M) and sized; a file is mapped as given.
 * -EINVAL for what cannot work: a file with huge pages of either kind.
 * An mbind failure returns its -errno (-EINVAL: no such node). */
int mem_init_opts(struct guest_mem *mem, uint64_t size, const struct mem_opts *o);
/* mem_init_pages() with MEM_PAGES_NONE. */
int mem_init(struct guest_mem *mem, uint64_t size);
void mem_destroy(struct guest_mem *mem);

/* The same layout, backed by a private mapping of the memory file fd (at
 * least size bytes): pages are read from the file when the guest first
 * touches them, and writes stay in this process. A file cannot be the
 * shared backing o asks for: with a memfd/file backing (or MEM_PAGES_2M,
 * which vm_create() instead fills on first touch: snapshot/file_faults.h)
 * the RAM is mapped as mem_init_opts() does and the file copied into it
 * whole, now. */
int mem_init_file(struct guest_mem *mem, uint64_t size, int fd, const struct mem_opts *o);

/* Open (creating it, mode 0600, if missing) the host file path for
 * MEM_KIND_FILE and make sure it holds size bytes: an empty file is sized
 * to them, a shorter non-empty one is refused (-EINVAL; it is likely the
 * wrong file), and anything but a regular file too. Returns the fd or
 * -errno with the reason in err. */
int mem_open_file(const char *path, uint64_t size, char *err, size_t errlen);

/* The host's highest online NUMA node (/sys/devices/system/node/online),
 * or -1 if unknown (no /sys in a jail). */
int mem_numa_max_node(void);

/* Make the last bytes of the mapping (a multiple of 4 KiB, less than its
 * size) the virtio-mem hotplug region: the RAM before them is laid out
 * again as mem_init() does, and the region placed at the first multiple
 * of align at or above both 4 GiB and the end of RAM. The whole mapping
 * stays one memory file; mem_ptr() reaches the region like RAM. Returns
 * its guest-physical address, or 0 if the sizes do not fit. */
uint64_t mem_set_hotplug(struct guest_mem *mem, uint64_t bytes, uint64_t align);
/* Bytes of RAM the guest boots with (the mapping less the hotplug region). */
uint64_t mem_ram_size(const struct guest_mem *mem);

/* Offer guest memory to KSM (same-page merging): madvise MADV_MERGEABLE.
 * Returns 0 or -errno (-EINVAL: a kernel without KSM). */
int mem_merge(struct guest_mem *mem);

/* Free 2 MiB pages in the host's hugetlbfs pool, or -1 if unknown (no
 * /sys in a jail). For error messages. */
long mem_huge_free(void);

/* Start tracking ember's own writes (mem_mark_dirty), every page dirty to
 * begin with when all_dirty. Returns 0 or -ENOMEM. */
int mem_track_dirty(struct guest_mem *mem, bool all_dirty);
/* Record that ember wrote [host, host+len) of guest memory. Cheap no-op
 * without tracking; safe from any thread. */
void mem_mark_dirty(const struct guest_mem *mem, const void *host, size_t len);
/* OR ember's dirty bits into bitmap (size/4096 bits) and clear them. */
void mem_take_dirty(struct guest_mem *mem, uint64_t *bitmap);

/* Host pointer to [gpa, gpa+len) if that range lies entirely within one
 * RAM region, else NULL. len may be 0 (then gpa must be inside a region
 * or at its end). */
void *mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory; -EFAULT if any byte is outside RAM. */
int mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);
int mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);

/* Give [gpa, gpa+len) back to the host (madvise MADV_DONTNEED: the
 * guest's next touch reads zeros, or the memory file's page for a
 * file-backed VM; MADV_REMOVE for a shared backing, where DONTNEED would
 * only unmap the pages and leave them in the memfd/file). gpa and len must be multiples of 4 KiB and the range
 * must lie within one RAM region; else -EINVAL/-EFAULT and nothing is
 * done. The pages count as dirty for the next diff snapshot. */
int mem_discard(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* The same for host pointer p (from a checked virtqueue buffer): the whole
 * 4 KiB pages within [p, p+len), which must lie inside guest RAM. Returns
 * the bytes given back, or -EFAULT / -errno. */
int64_t mem_discard_host(const struct guest_mem *mem, const void *p, uint64_t len);

/* End of the RAM region that starts at 0 (the "low" RAM). */
uint64_t mem_low_end(const struct guest_mem *mem);

#endif
