/* A minimal polled virtio-mmio (version 2) driver, and the device checks
 * and benchmarks built on it. Devices are found the way Linux finds them:
 * from "virtio_mmio.device=<size>@<addr>:<irq>" words on the command line.
 * Everything runs with interrupts off; completions are seen by polling
 * the used ring, NEEDS_RESET by polling the status register. */
#include "testvm.h"

#define MAGIC 0x000
#define VERSION 0x004
#define DEVICE_ID 0x008
#define DEV_FEAT 0x010
#define DEV_FEAT_SEL 0x014
#define DRV_FEAT 0x020
#define DRV_FEAT_SEL 0x024
#define QSEL 0x030
#define QNUM_MAX 0x034
#define QNUM 0x038
#define QREADY 0x044
#define QNOTIFY 0x050
#define STATUS 0x070
#define QDESC 0x080
#define QAVAIL 0x090
#define QUSED 0x0a0

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40

#define F_NEXT 1
#define F_WRITE 2

#define ID_NET 1
#define ID_BLOCK 2
#define ID_RNG 4
#define ID_VSOCK 19
#define ID_PMEM 27

#define QSZ 32
#define MAX_DEVS 24
#define SPIN_LIMIT 400000000ULL

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vq {
	struct desc desc[QSZ] __attribute__((aligned(16)));
	struct {
		uint16_t flags, idx, ring[QSZ], used_event;
	} avail __attribute__((aligned(2)));
	struct {
		uint16_t flags, idx;
		struct { uint32_t id, len; } ring[QSZ];
		uint16_t avail_event;
	} used __attribute__((aligned(4)));
	uint16_t last_used;
};

struct vdev {
	uintptr_t base;
	uint32_t id;
	unsigned nq;
	struct vq vq[3];
};

static struct vdev devs[MAX_DEVS];
static unsigned ndevs;

static uint32_t rd(const struct vdev *d, unsigned off)
{
	return *(volatile uint32_t *)(d->base + off);
}

static void wr(const struct vdev *d, unsigned off, uint32_t v)
{
	*(volatile uint32_t *)(d->base + off) = v;
}

static void wr64(const struct vdev *d, unsigned off, uint64_t v)
{
	wr(d, off, (uint32_t)v);
	wr(d, off + 4, (uint32_t)(v >> 32));
}

/* ---- discovery from the command line ------------------------------- */

extern const char *testvm_cmdline(void);

static uint64_t parse_num(const char **p, unsigned base)
{
	uint64_t v = 0;
	for (;; (*p)++) {
		char c = **p;
		unsigned dgt;
		if (c >= '0' && c <= '9')
			dgt = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			dgt = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			dgt = (unsigned)(c - 'A' + 10);
		else
			return v;
		v = v * base + dgt;
	}
}

static void discover(void)
{
	static const char key[] = "virtio_mmio.device=";
	const char *p = testvm_cmdline();
	ndevs = 0;
	while (*p && ndevs < MAX_DEVS) {
		if (memcmp(p, key, sizeof(key) - 1) == 0 && (p == testvm_cmdline() || p[-1] == ' ')) {
			p += sizeof(key) - 1;
			parse_num(&p, 10);
			if (*p == 'K' || *p == 'k')
				p++;
			if (*p++ != '@' || *p++ != '0' || (*p != 'x' && *p != 'X'))
				continue;
			p++;
			struct vdev *d = &devs[ndevs];
			d->base = (uintptr_t)parse_num(&p, 16);
			if (rd(d, MAGIC) == 0x74726976 && rd(d, VERSION) == 2) {
				d->id = rd(d, DEVICE_ID);
				ndevs++;
			}
			continue;
		}
		p++;
	}
}

static struct vdev *find(uint32_t id, unsigned nth)
{
	for (unsigned i = 0; i < ndevs; i++)
		if (devs[i].id == id && nth-- == 0)
			return &devs[i];
	return NULL;
}

/* ---- driver -------------------------------------------------------- */

/* Reset and bring the device up with only VERSION_1 negotiated. */
static bool setup(struct vdev *d, unsigned nq)
{
	wr(d, STATUS, 0);
	wr(d, STATUS, S_ACK);
	wr(d, STATUS, S_ACK | S_DRIVER);
	wr(d, DEV_FEAT_SEL, 1);
	if (!(rd(d, DEV_FEAT) & 1))
		return false;
	wr(d, DRV_FEAT_SEL, 0);
	wr(d, DRV_FEAT, 0);
	wr(d, DRV_FEAT_SEL, 1);
	wr(d, DRV_FEAT, 1);
	wr(d, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(rd(d, STATUS) & S_FEATURES_OK))
		return false;
	d->nq = nq;
	for (unsigned i = 0; i < nq; i++) {
		struct vq *q = &d->vq[i];
		memset(q, 0, sizeof(*q));
		wr(d, QSEL, i);
		if (rd(d, QNUM_MAX) < QSZ)
			return false;
		wr(d, QNUM, QSZ);
		wr64(d, QDESC, (uintptr_t)q->desc);
		wr64(d, QAVAIL, (uintptr_t)&q->avail);
		wr64(d, QUSED, (uintptr_t)&q->used);
		wr(d, QREADY, 1);
	}
	wr(d, STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	return (rd(d, STATUS) & (S_DRIVER_OK | S_NEEDS_RESET)) == S_DRIVER_OK;
}

static void publish(struct vdev *d, unsigned qi, uint16_t head)
{
	struct vq *q = &d->vq[qi];
	q->avail.ring[q->avail.idx % QSZ] = head;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->avail.idx++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(d, QNOTIFY, qi);
}

/* Wait for the next used entry; returns its length, or -1 on timeout or
 * if the device went NEEDS_RESET. */
static int64_t wait_used(struct vdev *d, unsigned qi)
{
	struct vq *q = &d->vq[qi];
	for (uint64_t i = 0; i < SPIN_LIMIT; i++) {
		if (*(volatile uint16_t *)&q->used.idx != q->last_used) {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			uint32_t len = q->used.ring[q->last_used % QSZ].len;
			q->last_used++;
			return len;
		}
		if ((i & 1023) == 0 && (rd(d, STATUS) & S_NEEDS_RESET))
			return -1;
		__asm__ volatile("pause");
	}
	return -1;
}

static bool wait_needs_reset(struct vdev *d)
{
	for (uint64_t i = 0; i < SPIN_LIMIT / 1024; i++) {
		if (rd(d, STATUS) & S_NEEDS_RESET)
			return true;
		__asm__ volatile("pause");
	}
	return false;
}

/* ---- block --------------------------------------------------------- */

#define BLK_IN 0
#define BLK_OUT 1
#define BLK_GET_ID 8
#define BLK_S_OK 0
#define BLK_S_IOERR 1

static struct {
	uint32_t type, reserved;
	uint64_t sector;
} blk_hdr;
static uint8_t blk_data[65536] __attribute__((aligned(4096)));
static volatile uint8_t blk_status;

/* One request: header, data (len bytes, device-writable for reads), status. */
static int blk_request(struct vdev *d, uint32_t type, uint64_t sector, uint32_t len)
{
	struct vq *q = &d->vq[0];
	blk_hdr.type = type;
	blk_hdr.sector = sector;
	blk_status = 0xff;
	q->desc[0] = (struct desc){ (uintptr_t)&blk_hdr, sizeof(blk_hdr), F_NEXT, 1 };
	q->desc[1] = (struct desc){ (uintptr_t)blk_data, len,
				    (uint16_t)(F_NEXT | (type == BLK_OUT ? 0 : F_WRITE)), 2 };
	q->desc[2] = (struct desc){ (uintptr_t)&blk_status, 1, F_WRITE, 0 };
	publish(d, 0, 0);
	if (wait_used(d, 0) < 0)
		return -1;
	return blk_status;
}

/* A broken chain must leave the device in NEEDS_RESET, and a reset must
 * bring it back. */
static void malformed(struct vdev *d, unsigned nq, const char *name, void (*breaker)(struct vq *q))
{
	struct vq *q = &d->vq[0];
	breaker(q);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(d, QNOTIFY, 0);
	result(name, wait_needs_reset(d), "device did not report NEEDS_RESET");
	setup(d, nq);
}

static void good_head(struct vq *q)
{
	q->avail.ring[q->avail.idx % QSZ] = 0;
	q->avail.idx++;
}

static void break_loop(struct vq *q)
{
	q->desc[0] = (struct desc){ (uintptr_t)&blk_hdr, sizeof(blk_hdr), F_NEXT, 0 };
	good_head(q);
}

static void break_address(struct vq *q)
{
	q->desc[0] = (struct desc){ 0x7ffffffff000ULL, 16, 0, 0 };
	good_head(q);
}

static void break_zero_len(struct vq *q)
{
	q->desc[0] = (struct desc){ (uintptr_t)&blk_hdr, 0, 0, 0 };
	good_head(q);
}

static void break_huge_len(struct vq *q)
{
	q->desc[0] = (struct desc){ (uintptr_t)&blk_hdr, 0xfffffff0u, 0, 0 };
	good_head(q);
}

static void break_avail_idx(struct vq *q)
{
	q->desc[0] = (struct desc){ (uintptr_t)&blk_hdr, sizeof(blk_hdr), 0, 0 };
	q->avail.idx += QSZ + 5; /* claims more buffers than the ring holds */
}

static void break_head(struct vq *q)
{
	q->avail.ring[q->avail.idx % QSZ] = QSZ + 3;
	q->avail.idx++;
}

static void break_next(struct vq *q)
{
	q->desc[0] = (struct desc){ (uintptr_t)&blk_hdr, sizeof(blk_hdr), F_NEXT, 200 };
	good_head(q);
}

static void blk_checks(void)
{
	struct vdev *d = find(ID_BLOCK, 0);
	if (!d) {
		result("virtio.blk.present", false, "no block device");
		return;
	}
	result("virtio.blk.setup", setup(d, 1), "driver setup refused");

	memset(blk_data, 0, 512);
	bool ok = blk_request(d, BLK_IN, 0, 512) == BLK_S_OK &&
		  memcmp(blk_data, "ember-testdisk", 14) == 0;
	result("virtio.blk.read", ok, "sector 0 is not the test pattern");

	for (int i = 0; i < 4096; i++)
		blk_data[i] = (uint8_t)(i * 7 + 1);
	ok = blk_request(d, BLK_OUT, 8, 4096) == BLK_S_OK;
	memset(blk_data, 0, 4096);
	ok = ok && blk_request(d, BLK_IN, 8, 4096) == BLK_S_OK;
	for (int i = 0; ok && i < 4096; i++)
		ok = blk_data[i] == (uint8_t)(i * 7 + 1);
	result("virtio.blk.write-read", ok, "data read back differs");

	memset(blk_data, 0, 32);
	ok = blk_request(d, BLK_GET_ID, 0, 20) == BLK_S_OK && memcmp(blk_data, "testdisk", 9) == 0;
	result("virtio.blk.get-id", ok, "wrong drive id");

	result("virtio.blk.beyond-capacity", blk_request(d, BLK_IN, 1ULL << 40, 512) == BLK_S_IOERR,
	       "read past the end did not fail");

	struct vdev *ro = find(ID_BLOCK, 1);
	if (ro) {
		setup(ro, 1);
		result("virtio.blk.read-only-refuses-write",
		       blk_request(ro, BLK_OUT, 0, 512) == BLK_S_IOERR, "write to a read-only drive passed");
	}

	malformed(d, 1, "virtio.blk.malformed-loop", break_loop);
	malformed(d, 1, "virtio.blk.malformed-address", break_address);
	malformed(d, 1, "virtio.blk.malformed-zero-length", break_zero_len);
	malformed(d, 1, "virtio.blk.malformed-huge-length", break_huge_len);
	malformed(d, 1, "virtio.blk.malformed-avail-index", break_avail_idx);
	malformed(d, 1, "virtio.blk.malformed-head", break_head);
	malformed(d, 1, "virtio.blk.malformed-next", break_next);

	memset(blk_data, 0, 512);
	ok = blk_request(d, BLK_IN, 0, 512) == BLK_S_OK && memcmp(blk_data, "ember-testdisk", 14) == 0;
	result("virtio.blk.works-after-reset", ok, "device did not recover");

	/* Leave it broken: the other devices must not care. */
	break_zero_len(&d->vq[0]);
	wr(d, QNOTIFY, 0);
	wait_needs_reset(d);
}

/* ---- pmem ---------------------------------------------------------- */

static uint32_t pmem_req;
static volatile uint32_t pmem_resp;

/* One request of type; the device's answer, or -1 if none came. */
static int64_t pmem_request(struct vdev *d, uint32_t type)
{
	struct vq *q = &d->vq[0];
	pmem_req = type;
	pmem_resp = 0xffffffffu;
	q->desc[0] = (struct desc){ (uintptr_t)&pmem_req, 4, F_NEXT, 1 };
	q->desc[1] = (struct desc){ (uintptr_t)&pmem_resp, 4, F_WRITE, 0 };
	publish(d, 0, 0);
	if (wait_used(d, 0) != 4)
		return -1;
	return pmem_resp;
}

static void break_no_answer(struct vq *q)
{
	q->desc[0] = (struct desc){ (uintptr_t)&pmem_req, 4, 0, 0 };
	good_head(q);
}

/* The region (config space: start and size) must hold the host's test
 * pattern; a writable one takes the guest's bytes (the host reads them in
 * the file), a read-only one drops them. */
static void pmem_check(struct vdev *d, const char *name_ro)
{
	uint64_t start = (uint64_t)rd(d, 0x100) | ((uint64_t)rd(d, 0x104) << 32);
	uint64_t size = (uint64_t)rd(d, 0x108) | ((uint64_t)rd(d, 0x10c) << 32);
	puts_serial("testvm: virtio.pmem.region ");
	put_hex(start);
	puts_serial(" ");
	put_hex(size);
	puts_serial("\n");
	if (start < (4ULL << 30) || start + size > (8ULL << 30) || (start | size) & ((2ULL << 20) - 1)) {
		result("virtio.pmem.region", false, "region not 2 MiB-aligned between 4 and 8 GiB");
		return;
	}
	volatile uint8_t *region = (volatile uint8_t *)(uintptr_t)start;
	bool ok = true;
	static const char pattern[] = "ember-testpmem";
	for (unsigned i = 0; i < sizeof(pattern) - 1; i++)
		ok = ok && region[i] == (uint8_t)pattern[i];
	result("virtio.pmem.read", ok, "the region does not start with the file's test pattern");
	static const char mark[] = "written-by-guest";
	for (unsigned i = 0; i < sizeof(mark); i++)
		region[4096 + i] = (uint8_t)mark[i];
	ok = true;
	for (unsigned i = 0; i < sizeof(mark); i++)
		ok = ok && region[4096 + i] == (name_ro ? 0 : (uint8_t)mark[i]);
	result(name_ro ? name_ro : "virtio.pmem.write", ok,
	       name_ro ? "a write to the read-only region stuck" : "the guest's write did not stick");
}

static void pmem_checks(void)
{
	struct vdev *d = find(ID_PMEM, 0);
	if (!d)
		return;
	result("virtio.pmem.setup", setup(d, 1), "driver setup refused");
	pmem_check(d, NULL);
	result("virtio.pmem.flush", pmem_request(d, 0) == 0, "flush not answered with 0");
	int64_t r = pmem_request(d, 7);
	result("virtio.pmem.unknown-type", r > 0, "an unknown request type was not refused");
	malformed(d, 1, "virtio.pmem.malformed-no-answer", break_no_answer);
	result("virtio.pmem.flush-after-reset", pmem_request(d, 0) == 0, "device did not recover");
	struct vdev *ro = find(ID_PMEM, 1);
	if (ro) {
		setup(ro, 1);
		pmem_check(ro, "virtio.pmem.read-only-drops-write");
		result("virtio.pmem.read-only-flush", pmem_request(ro, 0) == 0, "flush not answered with 0");
	}
}

/* ---- entropy, net, vsock --------------------------------------------- */

static uint8_t rng_buf[64];

static void rng_checks(void)
{
	struct vdev *d = find(ID_RNG, 0);
	if (!d)
		return;
	setup(d, 1);
	struct vq *q = &d->vq[0];
	memset(rng_buf, 0, sizeof(rng_buf));
	q->desc[0] = (struct desc){ (uintptr_t)rng_buf, sizeof(rng_buf), F_WRITE, 0 };
	publish(d, 0, 0);
	int64_t len = wait_used(d, 0);
	unsigned nonzero = 0;
	for (unsigned i = 0; i < sizeof(rng_buf); i++)
		nonzero += rng_buf[i] != 0;
	result("virtio.rng.read", len == (int64_t)sizeof(rng_buf) && nonzero > 32,
	       "no random bytes (is another device's failure blocking it?)");
	malformed(d, 1, "virtio.rng.malformed-zero-length", break_zero_len);
}

static uint8_t frame[12 + 60];

static void net_checks(void)
{
	struct vdev *d = find(ID_NET, 0);
	if (!d)
		return;
	setup(d, 2);
	/* The MTU the device offers (VIRTIO_NET_F_MTU, bit 3; the config
	 * space's u16 at offset 10), for the host to check. */
	wr(d, DEV_FEAT_SEL, 0);
	puts_serial("testvm: virtio.net.mtu ");
	if (rd(d, DEV_FEAT) & (1u << 3))
		put_dec(rd(d, 0x108) >> 16);
	else
		puts_serial("none");
	puts_serial("\n");
	/* A broadcast frame with an empty virtio-net header, on queue 1 (tx). */
	memset(frame, 0, sizeof(frame));
	memset(frame + 12, 0xff, 6);
	frame[12 + 12] = 0x88; /* an ethertype for local experiments */
	frame[12 + 13] = 0xb5;
	struct vq *q = &d->vq[1];
	q->desc[0] = (struct desc){ (uintptr_t)frame, sizeof(frame), 0, 0 };
	publish(d, 1, 0);
	result("virtio.net.transmit", wait_used(d, 1) == 0, "frame not consumed");
	/* Transmit buffers the device could write to break the rules. */
	q->desc[0] = (struct desc){ (uintptr_t)frame, sizeof(frame), F_WRITE, 0 };
	q->avail.ring[q->avail.idx % QSZ] = 0;
	q->avail.idx++;
	wr(d, QNOTIFY, 1);
	result("virtio.net.malformed-writable-tx", wait_needs_reset(d), "no NEEDS_RESET");
}

static uint8_t vsock_pkt[20];

static void vsock_checks(void)
{
	struct vdev *d = find(ID_VSOCK, 0);
	if (!d)
		return;
	setup(d, 3);
	/* Shorter than a packet header. */
	struct vq *q = &d->vq[1];
	q->desc[0] = (struct desc){ (uintptr_t)vsock_pkt, sizeof(vsock_pkt), 0, 0 };
	q->avail.ring[q->avail.idx % QSZ] = 0;
	q->avail.idx++;
	wr(d, QNOTIFY, 1);
	result("virtio.vsock.malformed-short-header", wait_needs_reset(d), "no NEEDS_RESET");
}

void virtio_checks(void)
{
	discover();
	puts_serial("testvm: virtio devices ");
	put_dec(ndevs);
	puts_serial("\n");
	blk_checks();
	pmem_checks();
	rng_checks();
	net_checks();
	vsock_checks();
}

/* ---- benchmark ------------------------------------------------------- */

/* The first block device, set up for a benchmark, and its capacity in
 * sectors; NULL (the failure reported under name) if there is none. */
static struct vdev *bench_blk(const char *name, uint64_t *sectors)
{
	discover();
	struct vdev *d = find(ID_BLOCK, 0);
	if (!d || !setup(d, 1)) {
		result(name, false, "no usable block device");
		return NULL;
	}
	*sectors = (uint64_t)rd(d, 0x100) | ((uint64_t)rd(d, 0x104) << 32);
	return d;
}

/* Read the first block device from start to end (up to 256 MiB) in
 * 64 KiB requests, one at a time; the host times the markers. */
void virtio_blk_bench(void)
{
	uint64_t sectors;
	struct vdev *d = bench_blk("blkbench", &sectors);
	if (!d)
		return;
	uint64_t total = sectors * 512;
	if (total > (256ULL << 20))
		total = 256ULL << 20;
	puts_serial("testvm: blkbench start\n");
	uint64_t done = 0;
	bool ok = true;
	while (ok && done + sizeof(blk_data) <= total) {
		ok = blk_request(d, BLK_IN, done / 512, sizeof(blk_data)) == BLK_S_OK;
		done += sizeof(blk_data);
	}
	puts_serial("testvm: blkbench done ");
	put_dec(done >> 20);
	puts_serial(" MiB\n");
	result("blkbench", ok, "a read failed");
}

/* Read BLKIOPS_REQUESTS 4 KiB blocks of the first block device, one at a
 * time, at pseudo-random 4 KiB-aligned offsets over the whole device
 * (xorshift64 from a fixed seed, so every run reads the same blocks);
 * the host times the markers. */
#define BLKIOPS_REQUESTS 10000

void virtio_blk_iops(void)
{
	uint64_t sectors;
	struct vdev *d = bench_blk("blkiops", &sectors);
	if (!d)
		return;
	uint64_t blocks = sectors / 8;
	if (blocks == 0) {
		result("blkiops", false, "device smaller than 4 KiB");
		return;
	}
	puts_serial("testvm: blkiops start\n");
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	unsigned done = 0;
	bool ok = true;
	while (ok && done < BLKIOPS_REQUESTS) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ok = blk_request(d, BLK_IN, (x % blocks) * 8, 4096) == BLK_S_OK;
		done++;
	}
	puts_serial("testvm: blkiops done ");
	put_dec(done);
	puts_serial(" requests\n");
	result("blkiops", ok, "a read failed");
}

/* Transmit NETBENCH_FRAMES full-size frames through the first network
 * device, keeping the queue full; the host times the markers. */
#define NETBENCH_FRAMES 20000
#define FRAME_LEN (12 + 1514)
static uint8_t tx_frames[QSZ][FRAME_LEN] __attribute__((aligned(64)));

void virtio_net_bench(void)
{
	discover();
	struct vdev *d = find(ID_NET, 0);
	if (!d || !setup(d, 2)) {
		result("netbench", false, "no usable network device");
		return;
	}
	struct vq *q = &d->vq[1];
	for (unsigned i = 0; i < QSZ; i++) {
		memset(tx_frames[i], 0, FRAME_LEN);
		memset(tx_frames[i] + 12, 0xff, 6);        /* broadcast */
		tx_frames[i][12 + 6] = 0x06;               /* a local source MAC */
		tx_frames[i][12 + 12] = 0x88;
		tx_frames[i][12 + 13] = 0xb5;
		q->desc[i] = (struct desc){ (uintptr_t)tx_frames[i], FRAME_LEN, 0, 0 };
	}
	puts_serial("testvm: netbench start\n");
	unsigned sent = 0, done = 0;
	bool ok = true;
	while (ok && done < NETBENCH_FRAMES) {
		/* Fill every free slot, then wait for one to come back. */
		while (sent < NETBENCH_FRAMES && sent - done < QSZ) {
			q->avail.ring[q->avail.idx % QSZ] = (uint16_t)(sent % QSZ);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			q->avail.idx++;
			sent++;
		}
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		wr(d, QNOTIFY, 1);
		ok = wait_used(d, 1) >= 0;
		done++;
		while (*(volatile uint16_t *)&q->used.idx != q->last_used) {
			q->last_used++;
			done++;
		}
	}
	puts_serial("testvm: netbench done ");
	put_dec(done);
	puts_serial(" frames\n");
	result("netbench", ok, "the device stopped taking frames");
}
