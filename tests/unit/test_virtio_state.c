/* The virtio-mmio transport's device status in snapshots: a state file
 * can only hold a status a live device can reach, and every status a live
 * device reaches restores. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../vmm/snapshot/snapfile.h"
#include "../../vmm/virtio/virtio.h"

#define ACK VIRTIO_CONFIG_S_ACKNOWLEDGE
#define DRV VIRTIO_CONFIG_S_DRIVER
#define FOK VIRTIO_CONFIG_S_FEATURES_OK
#define DOK VIRTIO_CONFIG_S_DRIVER_OK
#define RESET VIRTIO_CONFIG_S_NEEDS_RESET
#define V1 (1ULL << VIRTIO_F_VERSION_1)

static uint64_t no_features(struct virtio_dev *vd)
{
	(void)vd;
	return 0;
}

static const struct virtio_ops test_ops = {
	.name = "test", .device_id = 4, .num_queues = 1, .features = no_features,
};

/* The same with a second queue: a device that gained one since a state was written. */
static const struct virtio_ops two_queue_ops = {
	.name = "test", .device_id = 4, .num_queues = 2, .features = no_features,
};
static const struct virtio_ops *init_ops = &test_ops;

static void dev_init(struct virtio_dev *vd)
{
	memset(vd, 0, sizeof(*vd));
	pthread_mutex_init(&vd->lock, NULL);
	vd->ops = init_ops;
	vd->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd->reset_fd = -1;
	cr_assert(vd->irq_fd >= 0);
}

/* The transport's part of a device section, as virtio_dev_save writes it,
 * with no queue set up. */
static void put_transport(struct snap_writer *w, uint32_t status, uint64_t features, uint32_t isr, bool active)
{
	sw_u32(w, 4);
	sw_u32(w, status);
	sw_u32(w, 0);
	sw_u32(w, 0);
	sw_u32(w, 0);
	sw_u64(w, features);
	sw_u32(w, isr);
	sw_u32(w, 0);
	sw_u8(w, active);
	sw_u32(w, 1);
	sw_u16(w, 0);
	sw_u8(w, 0);
	sw_u64(w, 0);
	sw_u64(w, 0);
	sw_u64(w, 0);
	sw_u16(w, 0);
	sw_u16(w, 0);
	sw_u16(w, 0);
	sw_u8(w, 0);
}

static int restore(const struct snap_writer *w, char *why, size_t len)
{
	struct virtio_dev vd;
	dev_init(&vd);
	struct snap_reader r;
	sr_init(&r, w->buf, w->len);
	int ret = virtio_dev_restore(&vd, &r);
	snprintf(why, len, "%s", r.why);
	close(vd.irq_fd);
	return ret;
}

Test(virtio_state, statuses_no_live_device_has_are_refused)
{
	static const struct { uint32_t status; uint64_t features; uint32_t isr; bool active; const char *why; } bad[] = {
		{ ACK | DRV | DOK, V1, 0, true, "DRIVER_OK without FEATURES_OK" },
		{ ACK | DRV | DOK, V1, 0, false, "DRIVER_OK without FEATURES_OK" },
		{ FOK, V1, 0, false, "FEATURES_OK without ACKNOWLEDGE and DRIVER" },
		{ FOK | DOK, V1, 0, true, "FEATURES_OK without ACKNOWLEDGE and DRIVER" },
		{ ACK | DRV | FOK, 0, 0, false, "FEATURES_OK without VERSION_1" },
		{ ACK | DRV | FOK, V1, 0, true, "active without DRIVER_OK" },
		{ ACK | DRV | FOK | DOK | RESET, V1, 0, true, "active without DRIVER_OK, or needing a reset" },
		{ ACK | DRV | FOK | DOK, V1, 0, false, "DRIVER_OK but not active" },
		{ 0, 0, 0, true, "active without DRIVER_OK" },
		{ ACK | DRV | FOK | DOK, V1, 4, true, "unknown interrupt status bits" },
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct snap_writer w;
		sw_init(&w);
		put_transport(&w, bad[k].status, bad[k].features, bad[k].isr, bad[k].active);
		char why[256];
		cr_assert_eq(restore(&w, why, sizeof(why)), -EINVAL, "case %zu was accepted", k);
		cr_assert(strstr(why, bad[k].why), "case %zu: %s", k, why);
		sw_free(&w);
	}
}

static void reg_write(struct virtio_dev *vd, uint64_t off, uint32_t val)
{
	virtio_mmio_access(vd, off, (uint8_t *)&val, 4, true);
}

static uint32_t reg_read(struct virtio_dev *vd, uint64_t off)
{
	uint32_t val = 0;
	virtio_mmio_access(vd, off, (uint8_t *)&val, 4, false);
	return val;
}

/* Save the live device and restore the section into a fresh one. */
static void round_trip(struct virtio_dev *vd)
{
	struct snap_writer w;
	sw_init(&w);
	virtio_dev_save(vd, &w);
	char why[256];
	cr_assert_eq(restore(&w, why, sizeof(why)), 0, "status 0x%x: %s", vd->status, why);
	sw_free(&w);
}

Test(virtio_state, the_driver_sets_status_bits_in_order)
{
	struct virtio_dev vd;
	dev_init(&vd);
	reg_write(&vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	reg_write(&vd, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	/* FEATURES_OK before ACKNOWLEDGE and DRIVER does not take; nor does
	 * a NEEDS_RESET from the driver. */
	reg_write(&vd, VIRTIO_MMIO_STATUS, FOK | RESET);
	cr_assert_eq(reg_read(&vd, VIRTIO_MMIO_STATUS), 0);
	round_trip(&vd);
	reg_write(&vd, VIRTIO_MMIO_STATUS, ACK);
	reg_write(&vd, VIRTIO_MMIO_STATUS, ACK | DRV);
	round_trip(&vd);
	reg_write(&vd, VIRTIO_MMIO_STATUS, ACK | DRV | FOK);
	cr_assert_eq(reg_read(&vd, VIRTIO_MMIO_STATUS), ACK | DRV | FOK);
	round_trip(&vd);
	reg_write(&vd, VIRTIO_MMIO_STATUS, ACK | DRV | FOK | DOK);
	cr_assert(vd.active);
	round_trip(&vd);
	close(vd.irq_fd);

	/* DRIVER_OK without FEATURES_OK fails the device: that restores too. */
	dev_init(&vd);
	reg_write(&vd, VIRTIO_MMIO_STATUS, ACK | DRV | DOK);
	cr_assert(!vd.active);
	cr_assert(reg_read(&vd, VIRTIO_MMIO_STATUS) & RESET);
	round_trip(&vd);
	close(vd.irq_fd);
}

/* A state with fewer queues than the device has restores (the others stay
 * as after a reset); more, or none, are refused. */
Test(virtio_state, fewer_queues_restore)
{
	struct snap_writer w;
	char why[256];
	sw_init(&w);
	put_transport(&w, ACK | DRV, 0, 0, false);
	init_ops = &two_queue_ops;
	cr_assert_eq(restore(&w, why, sizeof(why)), 0, "%s", why);
	init_ops = &test_ops;
	w.buf[w.len - 38] = 2; /* the queue count (34 bytes of one queue follow): two for a one-queue device */
	cr_assert_eq(restore(&w, why, sizeof(why)), -EINVAL);
	w.buf[w.len - 38] = 0;
	cr_assert_eq(restore(&w, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "0 queues in the state"), "%s", why);
	sw_free(&w);
}
