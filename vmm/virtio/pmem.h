/* virtio-pmem (virtio 1.2, section 5.19): a host file mapped (MAP_SHARED)
 * into the guest's physical address space above RAM as a KVM memory slot,
 * read-only when the device is. The guest reads and writes the region
 * directly; the one request queue only carries flushes, answered once an
 * fdatasync of the file (an io_uring op on the VMM thread) has finished.
 * The region is 2 MiB-aligned in size and place (Linux maps it with
 * ZONE_DEVICE pages of that granularity); past the end of a file whose
 * size is not a multiple of 2 MiB it is anonymous memory the file never
 * sees. */
#ifndef EMBER_VIRTIO_PMEM_H
#define EMBER_VIRTIO_PMEM_H

#include "../config.h"
#include "../io/ratelimit.h"
#include "virtio.h"
#include "virtq.h"

#define PMEM_ALIGN (2ULL << 20)

struct pmem_stats {
	uint64_t flush_count;      /* flush requests answered */
	uint64_t fsync_count;      /* fdatasyncs done for them (one per batch) */
	uint64_t io_errors;
	uint64_t invalid;          /* unknown request types */
	uint64_t throttled;        /* batches held back by the rate limiter */
	uint64_t rl_events;        /* rate-limiter timer expiries */
	uint64_t cfg_fails;        /* the driver wrote the read-only config space */
	uint64_t ro_writes;        /* guest writes to a read-only region, dropped */
};

/* A flush request waiting for the fdatasync in flight. */
struct pmem_waiter {
	uint16_t head;
	uint8_t *status;           /* 4 bytes, in guest memory */
};

struct virtio_pmem {
	struct virtio_dev vd;
	struct pmem_config cfg;
	int fd;
	uint64_t file_len;
	uint8_t *host;             /* size bytes: the file, then anonymous memory */
	uint64_t gpa, size;        /* the region in guest-physical memory */
	int slot;                  /* its KVM memory slot, or -1 */
	struct ratelimiter rl;
	struct evloop_timer rl_timer;
	struct evloop_op flush_op;
	bool flushing;             /* an fdatasync is in flight */
	uint32_t flush_generation; /* the device's generation when it was submitted */
	unsigned nwaiting;
	struct pmem_waiter waiting[VIRTQ_MAX_SIZE];
	struct pmem_stats stats;
};

/* The region's size for a backing file of file_len bytes: rounded up to
 * PMEM_ALIGN (0 stays 0). */
uint64_t virtio_pmem_region_size(uint64_t file_len);

/* Check one request chain: a readable 4-byte request type, then a
 * writable buffer of at least 4 bytes for the answer. Returns 0 with the
 * type and the answer's place, or -EINVAL (the driver broke the queue). */
int virtio_pmem_parse(const struct virtq_chain *c, uint32_t *type, uint8_t **status);

/* Open cfg->path_on_host (read-only if the device is; a regular file,
 * opened without waiting, see hostfile.h), map it and register it as a
 * memory slot at guest-physical gpa (a multiple of PMEM_ALIGN), then add
 * the virtio device number index. A read-only region also gets an MMIO
 * range that drops the guest's writes (they exit to ember) with a warning.
 * Returns 0 or -errno with Firecracker's message in err ("Error backing
 * file size is 0"); on failure virtio_dev_destroy() undoes what was done. */
int virtio_pmem_init(struct virtio_pmem *pm, struct vm *vm, struct evloop *loop, unsigned index,
		     uint64_t gpa, const struct pmem_config *cfg, char *err, size_t errlen);

/* After boot (PATCH /pmem/{id}): replace the rate limiter. Takes the lock. */
void virtio_pmem_update(struct virtio_pmem *pm, const struct ratelimiter_config *rl);

/* The kernel parameters that make this device (the n-th pmem device) the
 * root filesystem: "root=/dev/pmemN ro|rw". */
void virtio_pmem_root_param(const struct virtio_pmem *pm, unsigned n, char *buf, size_t len);

#endif
