/* virtio-mem (virtio 1.2, section 5.15): memory the guest can plug and
 * unplug at run time. The device owns a region of guest-physical memory
 * above RAM (the hotplug region of guest_mem: the end of RAM's mapping,
 * hence of the memory file, registered as KVM slots of slot_size_mib),
 * split into blocks of block_size_mib. The host sets a requested size
 * (PATCH /hotplug/memory, with a configuration interrupt); the guest's
 * driver asks on the one request queue to plug or unplug ranges of blocks
 * inside the usable part of the region, and ember answers on the VMM
 * thread, checking every range against the region and the blocks' state.
 * Unplugged blocks are given back to the host (mem_discard), so the VMM's
 * RSS falls. VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE is offered: the guest
 * must not touch unplugged memory (which stays mapped, reading zeros). */
#ifndef EMBER_VIRTIO_MEM_H
#define EMBER_VIRTIO_MEM_H

#include <stdint.h>

#include "../config.h"
#include "virtio.h"

struct virtio_mem_counters {
	uint64_t queue_event_count, queue_event_fails;
	uint64_t plug_count, plug_bytes, plug_fails;
	uint64_t unplug_count, unplug_bytes, unplug_fails, unplug_discard_fails;
	uint64_t state_count, state_fails;
	uint64_t unplug_all_count, unplug_all_fails;
};

struct virtio_mem {
	struct virtio_dev vd;
	struct memory_hotplug_config cfg;
	/* The configuration space (virtio_mem_config), in bytes. */
	uint64_t addr, region_size, block_size, slot_size;
	uint64_t usable_region_size, plugged_size, requested_size;
	uint64_t nblocks;
	uint64_t *plugged;          /* one bit per block */
	struct virtio_mem_counters counters;
};

/* One driver request (struct virtio_mem_req, already read from the
 * queue), answered in *resp_type / *resp_state (VIRTIO_MEM_RESP_* and,
 * for STATE, VIRTIO_MEM_STATE_*). Plugging needs a range of unplugged
 * blocks inside the usable region that keeps plugged_size within
 * requested_size; unplugging a range of plugged ones (then given back to
 * the host); UNPLUG_ALL unplugs everything. Lock held (or no transport). */
void virtio_mem_request(struct virtio_mem *m, uint16_t type, uint64_t addr, uint16_t nb_blocks,
			uint16_t *resp_type, uint16_t *resp_state);

/* The device's state for the hotplug region at guest-physical addr of vm
 * (without the transport: virtio_mem_init does both). Returns 0 or
 * -ENOMEM. */
int virtio_mem_setup(struct virtio_mem *m, struct vm *vm, uint64_t addr, const struct memory_hotplug_config *cfg);

/* The device (virtio device number index) for the hotplug region vm's
 * memory has (mem_set_hotplug). Returns 0 or -errno. */
int virtio_mem_init(struct virtio_mem *m, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct memory_hotplug_config *cfg);

/* PATCH /hotplug/memory: a new requested size, with a configuration
 * interrupt. Takes the lock. Returns 0, or -EINVAL with Firecracker's
 * message in err (the driver has not started the device; not a multiple
 * of the block size or more than the region). */
int virtio_mem_set_requested(struct virtio_mem *m, uint32_t requested_size_mib, char *err, size_t errlen);

/* GET /hotplug/memory: a new JSON object (cJSON *) with total, block,
 * slot, plugged and requested sizes in MiB. Takes the lock. */
struct cJSON;
struct cJSON *virtio_mem_status_obj(struct virtio_mem *m);

#endif
