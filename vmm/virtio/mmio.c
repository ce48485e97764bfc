#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../layout.h"
#include "../log.h"
#include "../snapshot/snapfile.h"
#include "../vm.h"
#include "virtio.h"

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x454d4252 /* "EMBR" */

static uint64_t all_features(struct virtio_dev *vd)
{
	return vd->ops->features(vd) | (1ULL << VIRTIO_F_VERSION_1) |
	       (1ULL << VIRTIO_RING_F_EVENT_IDX);
}

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return vd->driver_features & (1ULL << bit);
}

static void raise_irq(struct virtio_dev *vd, uint32_t why)
{
	uint64_t one = 1;
	vd->interrupt_status |= why;
	vd->stats.interrupts++;
	if (write(vd->irq_fd, &one, sizeof(one)) < 0)
		log_ratelimited(LOG_WARN, "virtio %s: irqfd write failed", vd->ops->name);
}

void virtio_signal(struct virtio_dev *vd, unsigned q)
{
	if (virtq_should_signal(&vd->vq[q]))
		raise_irq(vd, VIRTIO_MMIO_INT_VRING);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	vd->config_generation++;
	if (vd->status & VIRTIO_CONFIG_S_DRIVER_OK)
		raise_irq(vd, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_fail(struct virtio_dev *vd, const char *why)
{
	log_ratelimited(LOG_WARN, "virtio %s@0x%llx: %s; device needs reset", vd->ops->name,
			(unsigned long long)vd->base, why);
	vd->stats.failures++;
	vd->active = false;
	vd->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	vd->config_generation++;
	raise_irq(vd, VIRTIO_MMIO_INT_CONFIG);
}

static void device_reset(struct virtio_dev *vd)
{
	if (vd->ops->reset)
		vd->ops->reset(vd);
	for (unsigned i = 0; i < vd->ops->num_queues; i++)
		virtq_reset(&vd->vq[i]);
	vd->status = 0;
	vd->driver_features = 0;
	vd->dev_features_sel = vd->drv_features_sel = vd->queue_sel = 0;
	vd->interrupt_status = 0;
	vd->active = false;
	vd->generation++;
	vd->stats.resets++;
	if (vd->ops->reset_io) {
		uint64_t one = 1;
		if (write(vd->reset_fd, &one, sizeof(one)) < 0)
			log_ratelimited(LOG_WARN, "virtio %s: reset eventfd write failed", vd->ops->name);
	}
}

static void set_status(struct virtio_dev *vd, uint32_t val)
{
	/* The status is 8 bits in every transport: no valid value has others
	 * (nor may a snapshot hold one). */
	if (val & ~0xffu)
		return;
	if (val == 0) {
		device_reset(vd);
		return;
	}
	uint32_t old = vd->status;
	/* Bits only go on (short of a reset), in the order the spec gives. */
	if ((val & old) != old)
		return;
	/* NEEDS_RESET is the device's to set, never the driver's. */
	if (!(old & VIRTIO_CONFIG_S_NEEDS_RESET))
		val &= ~(uint32_t)VIRTIO_CONFIG_S_NEEDS_RESET;
	uint32_t added = val & ~old;
	if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
		uint64_t offered = all_features(vd);
		const uint32_t driver = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
		if ((val & driver) != driver || (vd->driver_features & ~offered) ||
		    !(vd->driver_features & (1ULL << VIRTIO_F_VERSION_1))) {
			/* FEATURES_OK stays clear: the driver will see it failed
			 * (out of order, or features this device cannot do). */
			val &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
		}
	}
	vd->status = val;
	if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && !(val & VIRTIO_CONFIG_S_NEEDS_RESET)) {
		if (!(val & VIRTIO_CONFIG_S_FEATURES_OK)) {
			virtio_fail(vd, "DRIVER_OK without FEATURES_OK");
			return;
		}
		bool event_idx = virtio_has_feature(vd, VIRTIO_RING_F_EVENT_IDX);
		for (unsigned i = 0; i < vd->ops->num_queues; i++) {
			struct virtq *q = &vd->vq[i];
			q->event_idx = event_idx;
			if (q->ready && virtq_activate(q, &vd->vm->mem)) {
				virtio_fail(vd, "queue rings outside guest memory or misaligned");
				return;
			}
		}
		if (vd->ops->activate && vd->ops->activate(vd)) {
			virtio_fail(vd, "device activation failed");
			return;
		}
		vd->active = true;
	}
}

static uint32_t reg_read(struct virtio_dev *vd, uint64_t off)
{
	struct virtq *q = vd->queue_sel < vd->ops->num_queues ? &vd->vq[vd->queue_sel] : NULL;
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION: return 2;
	case VIRTIO_MMIO_DEVICE_ID: return vd->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID: return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return vd->dev_features_sel < 2 ? (uint32_t)(all_features(vd) >> (32 * vd->dev_features_sel)) : 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX: return q ? q->max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY: return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS: return vd->interrupt_status;
	case VIRTIO_MMIO_STATUS: return vd->status;
	case VIRTIO_MMIO_CONFIG_GENERATION: return vd->config_generation;
	default: return 0;
	}
}

static void set_half(uint64_t *v, bool high, uint32_t val)
{
	*v = high ? ((*v & 0xffffffffULL) | ((uint64_t)val << 32)) : ((*v & ~0xffffffffULL) | val);
}

static void reg_write(struct virtio_dev *vd, uint64_t off, uint32_t val)
{
	struct virtq *q = vd->queue_sel < vd->ops->num_queues ? &vd->vq[vd->queue_sel] : NULL;
	/* Queue layout may change only while the queue is off and the driver
	 * has not yet finished; later writes are ignored. */
	bool queue_writable = q && !q->ready && !(vd->status & VIRTIO_CONFIG_S_DRIVER_OK);
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: vd->dev_features_sel = val; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: vd->drv_features_sel = val; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (vd->drv_features_sel < 2 && !(vd->status & VIRTIO_CONFIG_S_FEATURES_OK))
			set_half(&vd->driver_features, vd->drv_features_sel == 1, val);
		break;
	case VIRTIO_MMIO_QUEUE_SEL: vd->queue_sel = val; break;
	case VIRTIO_MMIO_QUEUE_NUM: if (queue_writable) q->size = (uint16_t)(val > 0xffff ? 0 : val); break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (q && !(vd->status & VIRTIO_CONFIG_S_DRIVER_OK))
			q->ready = val & 1;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: if (queue_writable) set_half(&q->desc_gpa, false, val); break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: if (queue_writable) set_half(&q->desc_gpa, true, val); break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW: if (queue_writable) set_half(&q->avail_gpa, false, val); break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: if (queue_writable) set_half(&q->avail_gpa, true, val); break;
	case VIRTIO_MMIO_QUEUE_USED_LOW: if (queue_writable) set_half(&q->used_gpa, false, val); break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH: if (queue_writable) set_half(&q->used_gpa, true, val); break;
	case VIRTIO_MMIO_INTERRUPT_ACK: vd->interrupt_status &= ~val; break;
	case VIRTIO_MMIO_STATUS: set_status(vd, val); break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Normally absorbed by the ioeventfd; a value matching no queue
		 * lands here and means nothing. */
		break;
	default: break;
	}
}

void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_dev *vd = opaque;
	pthread_mutex_lock(&vd->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint32_t off = (uint32_t)(offset - VIRTIO_MMIO_CONFIG);
		if (is_write) {
			if (vd->ops->config_write)
				vd->ops->config_write(vd, off, data, len);
		} else {
			memset(data, 0, len);
			if (vd->ops->config_read)
				vd->ops->config_read(vd, off, data, len);
		}
	} else if (len != 4 || (offset & 3)) {
		/* The register file is 32-bit only. */
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		uint32_t v;
		memcpy(&v, data, 4);
		reg_write(vd, offset, v);
	} else {
		uint32_t v = reg_read(vd, offset);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&vd->lock);
}

static void on_notify(struct evloop_watch *w, int res)
{
	struct virtio_notify *n = container_of(w, struct virtio_notify, watch);
	struct virtio_dev *vd = n->vd;
	uint64_t count;
	(void)res;
	if (read(n->fd, &count, sizeof(count)) != sizeof(count))
		return;
	pthread_mutex_lock(&vd->lock);
	vd->stats.notifies++;
	/* While paused the notification waits for virtio_dev_resume(). */
	if (vd->active && !vd->paused && vd->vq[n->queue].ready && vd->ops->notify)
		vd->ops->notify(vd, n->queue);
	pthread_mutex_unlock(&vd->lock);
}

static void on_reset(struct evloop_watch *w, int res)
{
	struct virtio_dev *vd = container_of(w, struct virtio_dev, reset_watch);
	uint64_t count;
	(void)res;
	if (read(vd->reset_fd, &count, sizeof(count)) != sizeof(count))
		return;
	pthread_mutex_lock(&vd->lock);
	vd->ops->reset_io(vd);
	pthread_mutex_unlock(&vd->lock);
}

int virtio_dev_init(struct virtio_dev *vd, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct virtio_ops *ops, void *dev)
{
	memset(vd, 0, sizeof(*vd));
	pthread_mutex_init(&vd->lock, NULL);
	vd->ops = ops;
	vd->dev = dev;
	vd->vm = vm;
	vd->loop = loop;
	vd->index = index;
	vd->base = LAYOUT_VIRTIO_MMIO_BASE + index * LAYOUT_VIRTIO_MMIO_SIZE;
	vd->irq = IRQ_VIRTIO_BASE + index;
	vd->irq_fd = vd->reset_fd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vd->notify[i].fd = -1;
	if (vd->irq > IRQ_VIRTIO_LAST || ops->num_queues > VIRTIO_MAX_QUEUES)
		return -ENOSPC;

	vd->irq_fd = vm_irqfd(vm, vd->irq);
	if (vd->irq_fd < 0)
		return vd->irq_fd;
	if (ops->reset_io && (vd->reset_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -errno;
	for (unsigned i = 0; i < ops->num_queues; i++) {
		struct virtio_notify *n = &vd->notify[i];
		vd->vq[i].max_size = VIRTQ_MAX_SIZE;
		n->vd = vd;
		n->queue = i;
		n->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->fd < 0)
			return -errno;
		int err = vm_ioeventfd(vm, vd->base + VIRTIO_MMIO_QUEUE_NOTIFY, i, n->fd);
		if (err)
			return err;
	}
	return bus_register(&vm->mmio, vd->base, LAYOUT_VIRTIO_MMIO_SIZE, virtio_mmio_access, vd,
			    ops->name);
}

int virtio_dev_start_io(struct virtio_dev *vd)
{
	int err;
	for (unsigned i = 0; i < vd->ops->num_queues; i++)
		if ((err = evloop_watch(vd->loop, &vd->notify[i].watch, vd->notify[i].fd, POLLIN, on_notify)))
			return err;
	if (vd->reset_fd >= 0 &&
	    (err = evloop_watch(vd->loop, &vd->reset_watch, vd->reset_fd, POLLIN, on_reset)))
		return err;
	return vd->ops->start_io ? vd->ops->start_io(vd) : 0;
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
	if (!vd->ops)
		return; /* virtio_dev_init never ran: the device cleaned up itself */
	if (vd->ops->destroy)
		vd->ops->destroy(vd);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		if (vd->notify[i].fd >= 0)
			close(vd->notify[i].fd);
	if (vd->irq_fd >= 0)
		close(vd->irq_fd);
	if (vd->reset_fd >= 0)
		close(vd->reset_fd);
	/* The ioeventfds and the bus range go with the VM. */
}

void virtio_config_copy(const void *config, size_t size, uint32_t off, uint8_t *data, uint32_t len)
{
	if (off < size && len <= size - off)
		memcpy(data, (const uint8_t *)config + off, len);
}

void virtio_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	pthread_mutex_lock(&vd->lock);
	int n = snprintf(buf, len, "notifies=%llu interrupts=%llu resets=%llu failures=%llu",
			 (unsigned long long)vd->stats.notifies, (unsigned long long)vd->stats.interrupts,
			 (unsigned long long)vd->stats.resets, (unsigned long long)vd->stats.failures);
	if (vd->ops->counters && n > 0 && (size_t)n + 1 < len) {
		buf[n] = ' ';
		vd->ops->counters(vd, buf + n + 1, len - (size_t)n - 1);
	}
	pthread_mutex_unlock(&vd->lock);
}

/* ---- pause and snapshots ---------------------------------------------- */

void virtio_dev_pause(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd->paused = true;
	if (vd->ops->pause)
		vd->ops->pause(vd);
	pthread_mutex_unlock(&vd->lock);
}

bool virtio_dev_idle(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	bool idle = !vd->ops->idle || vd->ops->idle(vd);
	pthread_mutex_unlock(&vd->lock);
	return idle;
}

void virtio_dev_resume(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd->paused = false;
	for (unsigned i = 0; i < vd->ops->num_queues; i++)
		if (vd->active && vd->vq[i].ready && vd->ops->notify)
			vd->ops->notify(vd, i);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_dev_save(struct virtio_dev *vd, struct snap_writer *w)
{
	pthread_mutex_lock(&vd->lock);
	sw_u32(w, vd->ops->device_id);
	sw_u32(w, vd->status);
	sw_u32(w, vd->dev_features_sel);
	sw_u32(w, vd->drv_features_sel);
	sw_u32(w, vd->queue_sel);
	sw_u64(w, vd->driver_features);
	sw_u32(w, vd->interrupt_status);
	sw_u32(w, vd->config_generation);
	sw_u8(w, vd->active);
	sw_u32(w, vd->ops->num_queues);
	for (unsigned i = 0; i < vd->ops->num_queues; i++) {
		const struct virtq *q = &vd->vq[i];
		sw_u16(w, q->size);
		sw_u8(w, q->ready);
		sw_u64(w, q->desc_gpa);
		sw_u64(w, q->avail_gpa);
		sw_u64(w, q->used_gpa);
		sw_u16(w, q->last_avail);
		sw_u16(w, q->used_idx);
		sw_u16(w, q->signalled_used);
		sw_u8(w, q->signalled_valid);
	}
	if (vd->ops->save)
		vd->ops->save(vd, w);
	pthread_mutex_unlock(&vd->lock);
}

/* What set_status() and virtio_fail() guarantee of a live device, or NULL
 * if the restored registers satisfy it. */
static const char *status_impossible(const struct virtio_dev *vd, bool active)
{
	const uint32_t st = vd->status, driver = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	bool failed = st & VIRTIO_CONFIG_S_NEEDS_RESET;
	if ((st & VIRTIO_CONFIG_S_FEATURES_OK) && (st & driver) != driver)
		return "FEATURES_OK without ACKNOWLEDGE and DRIVER";
	if ((st & VIRTIO_CONFIG_S_FEATURES_OK) && !virtio_has_feature(vd, VIRTIO_F_VERSION_1))
		return "FEATURES_OK without VERSION_1 negotiated";
	if ((st & VIRTIO_CONFIG_S_DRIVER_OK) && !(st & VIRTIO_CONFIG_S_FEATURES_OK) && !failed)
		return "DRIVER_OK without FEATURES_OK";
	/* DRIVER_OK either activates the device or fails it (NEEDS_RESET,
	 * inactive from then on); only a reset (status 0) undoes either. */
	if (active != ((st & VIRTIO_CONFIG_S_DRIVER_OK) && !failed))
		return active ? "active without DRIVER_OK, or needing a reset" : "DRIVER_OK but not active";
	if (vd->interrupt_status & ~(uint32_t)(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))
		return "unknown interrupt status bits";
	return NULL;
}

int virtio_dev_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	const char *name = vd->ops->name, *why;
	uint32_t id = sr_u32(r);
	if (!r->bad && id != vd->ops->device_id)
		return sr_fail(r, "virtio device %u: a %s device in the configuration, type %u in the state",
			       vd->index, name, id), -EINVAL;
	vd->status = sr_u32(r);
	vd->dev_features_sel = sr_u32(r);
	vd->drv_features_sel = sr_u32(r);
	vd->queue_sel = sr_u32(r);
	vd->driver_features = sr_u64(r);
	vd->interrupt_status = sr_u32(r);
	vd->config_generation = sr_u32(r);
	bool active = sr_u8(r);
	uint32_t nq = sr_u32(r);
	/* Fewer is a state from before the device gained a queue (the
	 * balloon's hinting queue): the rest stay as after a reset. */
	if (!r->bad && (nq > vd->ops->num_queues || nq == 0))
		return sr_fail(r, "%s: %u queues in the state, at most %u expected", name, nq, vd->ops->num_queues),
		       -EINVAL;
	/* Until FEATURES_OK the driver's bits are only what it wrote (the
	 * transport refuses FEATURES_OK for unoffered ones). */
	if (!r->bad && (vd->status & VIRTIO_CONFIG_S_FEATURES_OK) && (vd->driver_features & ~all_features(vd)))
		return sr_fail(r, "%s: features 0x%llx were never offered", name,
			       (unsigned long long)vd->driver_features), -EINVAL;
	if (!r->bad && (vd->status & ~0xffu))
		return sr_fail(r, "%s: invalid status 0x%x", name, vd->status), -EINVAL;
	bool event_idx = virtio_has_feature(vd, VIRTIO_RING_F_EVENT_IDX);
	for (unsigned i = 0; i < nq && !r->bad; i++) {
		struct virtq *q = &vd->vq[i];
		q->size = sr_u16(r);
		q->ready = sr_u8(r);
		q->desc_gpa = sr_u64(r);
		q->avail_gpa = sr_u64(r);
		q->used_gpa = sr_u64(r);
		uint16_t last_avail = sr_u16(r), used_idx = sr_u16(r), signalled = sr_u16(r);
		bool signalled_valid = sr_u8(r);
		q->event_idx = event_idx;
		/* Rings are checked against this VM's memory exactly as when the
		 * driver set them up. */
		if (!r->bad && active && q->ready && virtq_activate(q, &vd->vm->mem))
			return sr_fail(r, "%s: queue %u: bad size or rings outside guest memory", name, i), -EINVAL;
		q->last_avail = last_avail;
		q->used_idx = used_idx;
		q->signalled_used = signalled;
		q->signalled_valid = signalled_valid;
	}
	if (!r->bad && (why = status_impossible(vd, active)))
		return sr_fail(r, "%s: device status 0x%x%s: %s", name, vd->status, active ? " (active)" : "", why),
		       -EINVAL;
	if (r->bad)
		return -EINVAL;
	if (active && vd->ops->activate && vd->ops->activate(vd))
		return sr_fail(r, "%s: the device could not be activated on this host", name), -EINVAL;
	vd->active = active;
	if (vd->ops->restore && vd->ops->restore(vd, r))
		return -EINVAL;
	return r->bad ? -EINVAL : 0;
}
