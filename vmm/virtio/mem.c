#include "mem.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log.h"
#include "../snapshot/snapfile.h"
#include "../vm.h"

#ifndef VIRTIO_ID_MEM
#define VIRTIO_ID_MEM 24
#endif

#define MIB (1ULL << 20)

static bool block_plugged(const struct virtio_mem *m, uint64_t b)
{
	return m->plugged[b / 64] >> (b % 64) & 1;
}

/* How many of the n blocks from block first are plugged. */
static uint64_t count_plugged(const struct virtio_mem *m, uint64_t first, uint64_t n)
{
	uint64_t k = 0;
	for (uint64_t b = first; b < first + n; b++)
		k += block_plugged(m, b);
	return k;
}

static void set_blocks(struct virtio_mem *m, uint64_t first, uint64_t n, bool plug)
{
	for (uint64_t b = first; b < first + n; b++) {
		if (block_plugged(m, b) == plug)
			continue;
		m->plugged[b / 64] ^= 1ULL << (b % 64);
		if (plug)
			m->plugged_size += m->block_size;
		else
			m->plugged_size -= m->block_size;
	}
}

/* The driver's range: block-aligned, at least one block, inside the usable
 * part of the region (written so nothing overflows). Its first block. */
static bool check_range(const struct virtio_mem *m, uint64_t addr, uint16_t nb_blocks, uint64_t *first)
{
	if (nb_blocks == 0 || addr < m->addr || (addr - m->addr) % m->block_size)
		return false;
	uint64_t off = addr - m->addr, len = (uint64_t)nb_blocks * m->block_size;
	if (off >= m->usable_region_size || len > m->usable_region_size - off)
		return false;
	*first = off / m->block_size;
	return true;
}

/* Give blocks back to the host; a failure is logged and counted, the
 * driver still sees them unplugged. */
static void discard_blocks(struct virtio_mem *m, uint64_t first, uint64_t n)
{
	int ret = mem_discard(&m->vd.vm->mem, m->addr + first * m->block_size, n * m->block_size);
	if (ret) {
		m->counters.unplug_discard_fails++;
		log_ratelimited(LOG_WARN, "memory hotplug: giving back 0x%llx+0x%llx: %s",
				(unsigned long long)(m->addr + first * m->block_size),
				(unsigned long long)(n * m->block_size), strerror(-ret));
	}
}

static bool plug(struct virtio_mem *m, uint64_t addr, uint16_t nb)
{
	uint64_t first;
	if (!check_range(m, addr, nb, &first) ||
	    m->plugged_size + (uint64_t)nb * m->block_size > m->requested_size || count_plugged(m, first, nb))
		return false;
	set_blocks(m, first, nb, true);
	m->counters.plug_bytes += (uint64_t)nb * m->block_size;
	return true;
}

static bool unplug(struct virtio_mem *m, uint64_t addr, uint16_t nb)
{
	uint64_t first;
	if (!check_range(m, addr, nb, &first) || count_plugged(m, first, nb) != nb)
		return false;
	set_blocks(m, first, nb, false);
	discard_blocks(m, first, nb);
	m->counters.unplug_bytes += (uint64_t)nb * m->block_size;
	return true;
}

/* Everything unplugged, in runs of plugged blocks. The usable region is
 * left covering the requested size, so a driver that starts over can plug
 * it again without waiting for the next PATCH. */
static void unplug_all(struct virtio_mem *m)
{
	for (uint64_t b = 0; b < m->nblocks;) {
		if (!block_plugged(m, b)) {
			b++;
			continue;
		}
		uint64_t e = b;
		while (e < m->nblocks && block_plugged(m, e))
			e++;
		set_blocks(m, b, e - b, false);
		discard_blocks(m, b, e - b);
		b = e;
	}
	m->usable_region_size = (m->requested_size + m->slot_size - 1) / m->slot_size * m->slot_size;
}

void virtio_mem_request(struct virtio_mem *m, uint16_t type, uint64_t addr, uint16_t nb_blocks,
			uint16_t *resp_type, uint16_t *resp_state)
{
	struct virtio_mem_counters *k = &m->counters;
	bool ok = false;
	*resp_state = 0;
	switch (type) {
	case VIRTIO_MEM_REQ_PLUG:
		k->plug_count++;
		if (!(ok = plug(m, addr, nb_blocks)))
			k->plug_fails++;
		break;
	case VIRTIO_MEM_REQ_UNPLUG:
		k->unplug_count++;
		if (!(ok = unplug(m, addr, nb_blocks)))
			k->unplug_fails++;
		break;
	case VIRTIO_MEM_REQ_UNPLUG_ALL:
		k->unplug_all_count++;
		unplug_all(m);
		ok = true;
		break;
	case VIRTIO_MEM_REQ_STATE: {
		uint64_t first;
		k->state_count++;
		if ((ok = check_range(m, addr, nb_blocks, &first))) {
			uint64_t n = count_plugged(m, first, nb_blocks);
			*resp_state = n == nb_blocks ? VIRTIO_MEM_STATE_PLUGGED
				    : n == 0         ? VIRTIO_MEM_STATE_UNPLUGGED
						     : VIRTIO_MEM_STATE_MIXED;
		} else {
			k->state_fails++;
		}
		break;
	}
	default:
		break;
	}
	if (!ok)
		log_ratelimited(LOG_WARN, "memory hotplug: refused request %u for 0x%llx, %u blocks", type,
				(unsigned long long)addr, nb_blocks);
	*resp_type = ok ? VIRTIO_MEM_RESP_ACK : VIRTIO_MEM_RESP_ERROR;
}

static uint64_t mem_features(struct virtio_dev *vd)
{
	(void)vd;
	return 1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE;
}

static void mem_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	const struct virtio_mem *m = vd->dev;
	struct virtio_mem_config c = {
		.block_size = m->block_size, .node_id = 0, .addr = m->addr, .region_size = m->region_size,
		.usable_region_size = m->usable_region_size, .plugged_size = m->plugged_size,
		.requested_size = m->requested_size,
	};
	virtio_config_copy(&c, sizeof(c), off, data, len);
}

static void mem_config_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data, uint32_t len)
{
	(void)vd;
	(void)data;
	log_ratelimited(LOG_WARN, "memory hotplug: the driver wrote the read-only config space (offset %u, %u bytes)",
			off, len);
}

static void mem_notify(struct virtio_dev *vd, unsigned qi)
{
	struct virtio_mem *m = vd->dev;
	struct virtq *q = &vd->vq[0];
	struct virtq_chain c;
	bool pushed = false;
	if (vd->paused || qi != 0)
		return;
	m->counters.queue_event_count++;
	for (;;) {
		int r = virtq_pop(q, &vd->vm->mem, &c);
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		/* A request the device reads, then room for the answer in the
		 * first writable buffer. */
		struct virtio_mem_req req;
		struct virtio_mem_resp resp = { 0 };
		if (r < 0 || c.read_len < sizeof(req) || c.nread >= c.nsegs || c.segs[c.nread].len < sizeof(resp)) {
			m->counters.queue_event_fails++;
			virtio_fail(vd, "malformed memory hotplug request");
			return;
		}
		virtq_chain_read(&c, 0, &req, sizeof(req));
		virtio_mem_request(m, req.type, req.u.plug.addr, req.u.plug.nb_blocks, &resp.type, &resp.u.state.state);
		memcpy(c.segs[c.nread].addr, &resp, sizeof(resp)); /* little-endian host */
		virtq_push(q, c.head, sizeof(resp));
		pushed = true;
	}
	if (pushed)
		virtio_signal(vd, 0);
}

static void mem_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct virtio_mem *m = vd->dev;
	const struct virtio_mem_counters *k = &m->counters;
	snprintf(buf, len, "plugs=%llu plug_fails=%llu unplugs=%llu unplug_fails=%llu unplug_alls=%llu states=%llu "
		 "discard_fails=%llu plugged_bytes=%llu",
		 (unsigned long long)k->plug_count, (unsigned long long)k->plug_fails,
		 (unsigned long long)k->unplug_count, (unsigned long long)k->unplug_fails,
		 (unsigned long long)k->unplug_all_count, (unsigned long long)k->state_count,
		 (unsigned long long)k->unplug_discard_fails, (unsigned long long)m->plugged_size);
}

static void mem_destroy_dev(struct virtio_dev *vd)
{
	struct virtio_mem *m = vd->dev;
	free(m->plugged);
	m->plugged = NULL;
}

/* The device's section: the sizes the driver and the host changed, and
 * the plugged blocks (the memory itself is in the memory file). */
static void mem_save(struct virtio_dev *vd, struct snap_writer *w)
{
	const struct virtio_mem *m = vd->dev;
	sw_u64(w, m->usable_region_size);
	sw_u64(w, m->requested_size);
	sw_u64(w, m->nblocks);
	for (uint64_t i = 0; i < (m->nblocks + 63) / 64; i++)
		sw_u64(w, m->plugged[i]);
}

static int mem_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	struct virtio_mem *m = vd->dev;
	uint64_t usable = sr_u64(r), requested = sr_u64(r), nblocks = sr_u64(r);
	if (r->bad || nblocks != m->nblocks) {
		sr_fail(r, "memory hotplug: %llu blocks, the configuration has %llu", (unsigned long long)nblocks,
			(unsigned long long)m->nblocks);
		return -EINVAL;
	}
	uint64_t words = (nblocks + 63) / 64, plugged = 0;
	for (uint64_t i = 0; i < words; i++) {
		m->plugged[i] = sr_u64(r);
		plugged += (uint64_t)__builtin_popcountll(m->plugged[i]);
	}
	if (!sr_done(r, "memory hotplug"))
		return -EINVAL;
	if ((nblocks % 64 && m->plugged[words - 1] >> (nblocks % 64)) || usable > m->region_size ||
	    usable % m->block_size || requested > m->region_size || requested % m->block_size) {
		sr_fail(r, "memory hotplug: sizes or blocks outside the region");
		return -EINVAL;
	}
	m->usable_region_size = usable;
	m->requested_size = requested;
	m->plugged_size = plugged * m->block_size;
	return 0;
}

static const struct virtio_ops mem_ops = {
	.name = "memory-hotplug",
	.device_id = VIRTIO_ID_MEM,
	.num_queues = 1,
	.features = mem_features,
	.config_read = mem_config_read,
	.config_write = mem_config_write,
	.notify = mem_notify,
	.counters = mem_counters,
	.destroy = mem_destroy_dev,
	.save = mem_save,
	.restore = mem_restore,
};

int virtio_mem_setup(struct virtio_mem *m, struct vm *vm, uint64_t addr, const struct memory_hotplug_config *cfg)
{
	memset(m, 0, sizeof(*m));
	m->vd.vm = vm;
	m->cfg = *cfg;
	m->addr = addr;
	m->region_size = (uint64_t)cfg->total_size_mib * MIB;
	m->block_size = (uint64_t)cfg->block_size_mib * MIB;
	m->slot_size = (uint64_t)cfg->slot_size_mib * MIB;
	m->nblocks = m->region_size / m->block_size;
	m->plugged = calloc((size_t)((m->nblocks + 63) / 64), sizeof(uint64_t));
	return m->plugged ? 0 : -ENOMEM;
}

int virtio_mem_init(struct virtio_mem *m, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct memory_hotplug_config *cfg)
{
	uint64_t addr = 0;
	for (unsigned i = 0; i < vm->mem.nregions; i++)
		if (vm->mem.regions[i].hotplug)
			addr = vm->mem.regions[i].gpa;
	if (!addr)
		return -EINVAL;
	int ret = virtio_mem_setup(m, vm, addr, cfg);
	if (!ret && (ret = virtio_dev_init(&m->vd, vm, loop, index, &mem_ops, m)))
		mem_destroy_dev(&m->vd);
	return ret;
}

int virtio_mem_set_requested(struct virtio_mem *m, uint32_t requested_size_mib, char *err, size_t errlen)
{
	static const char *const prefix = "Memory hotplug update error: Failed to create memory hotplug device: ";
	uint64_t size = (uint64_t)requested_size_mib * MIB;
	int ret = -EINVAL;
	pthread_mutex_lock(&m->vd.lock);
	if (!m->vd.active) {
		snprintf(err, errlen, "%sDevice is not active", prefix);
	} else if (size % m->block_size || size > m->region_size) {
		snprintf(err, errlen, "%sSize %llu is invalid: it must be a multiple of block size and less than the "
			 "total size", prefix, (unsigned long long)size);
	} else {
		/* The usable region only grows here (UNPLUG_ALL shrinks it),
		 * in whole slots. */
		uint64_t usable = (size + m->slot_size - 1) / m->slot_size * m->slot_size;
		if (usable > m->usable_region_size)
			m->usable_region_size = usable;
		m->requested_size = size;
		virtio_config_changed(&m->vd);
		ret = 0;
	}
	pthread_mutex_unlock(&m->vd.lock);
	return ret;
}

cJSON *virtio_mem_status_obj(struct virtio_mem *m)
{
	pthread_mutex_lock(&m->vd.lock);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "total_size_mib", (double)(m->region_size / MIB));
	cJSON_AddNumberToObject(o, "block_size_mib", (double)(m->block_size / MIB));
	cJSON_AddNumberToObject(o, "slot_size_mib", (double)(m->slot_size / MIB));
	cJSON_AddNumberToObject(o, "plugged_size_mib", (double)(m->plugged_size / MIB));
	cJSON_AddNumberToObject(o, "requested_size_mib", (double)(m->requested_size / MIB));
	pthread_mutex_unlock(&m->vd.lock);
	return o;
}
