#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../log.h"
#include "../snapshot/snapfile.h"
#include "../vm.h"

#define RXQ 0
#define TXQ 1
#define VNET_HDR_LEN ((int)sizeof(struct virtio_net_hdr_v1))
#define MAX_FRAME (VNET_HDR_LEN + 65535 + 14)

static uint64_t net_features(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->dev;
	uint64_t f = 0;
	if (net->cfg.has_mac)
		f |= 1ULL << VIRTIO_NET_F_MAC;
	if (net->cfg.has_mtu)
		f |= 1ULL << VIRTIO_NET_F_MTU;
	/* The tap always takes our partial checksums and GSO frames. */
	f |= (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_HOST_TSO4) |
	     (1ULL << VIRTIO_NET_F_HOST_TSO6);
	/* The guest may take the tap's only if the tap can be told to send them. */
	if (net->tap_offloads & TUN_F_CSUM) {
		f |= 1ULL << VIRTIO_NET_F_GUEST_CSUM;
		if (net->tap_offloads & TUN_F_TSO4)
			f |= 1ULL << VIRTIO_NET_F_GUEST_TSO4;
		if (net->tap_offloads & TUN_F_TSO6)
			f |= 1ULL << VIRTIO_NET_F_GUEST_TSO6;
	}
	return f;
}

static void net_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_net *net = vd->dev;
	struct virtio_net_config c;
	memset(&c, 0, sizeof(c));
	memcpy(c.mac, net->cfg.guest_mac, 6);
	c.mtu = net->cfg.mtu; /* read by the guest only with VIRTIO_NET_F_MTU */
	virtio_config_copy(&c, sizeof(c), off, data, len);
}

/* ---- receive ------------------------------------------------------- */

static void rx_kick(struct virtio_net *net);

static void rx_retry(struct evloop_timer *t)
{
	struct virtio_net *net = container_of(t, struct virtio_net, rx_timer);
	pthread_mutex_lock(&net->vd.lock);
	if (net->vd.active)
		rx_kick(net);
	pthread_mutex_unlock(&net->vd.lock);
}

static void rx_done(struct evloop_op *op, int res, unsigned flags)
{
	struct virtio_net *net = container_of(op, struct virtio_net, rx_op);
	(void)flags;
	pthread_mutex_lock(&net->vd.lock);
	net->rx_busy = false;
	if (net->rx_generation == net->vd.generation && net->vd.active) {
		struct virtq *q = &net->vd.vq[RXQ];
		if (res >= VNET_HDR_LEN) {
			/* Without MRG_RXBUF a frame always takes one buffer. */
			uint16_t one = 1;
			virtq_chain_write(&net->rx_chain, offsetof(struct virtio_net_hdr_v1, num_buffers),
					  &one, sizeof(one));
			virtq_push(q, net->rx_head, (uint32_t)res);
			net->stats.rx_packets++;
			net->stats.rx_bytes += (uint64_t)res;
			rl_charge(&net->rx_rl, (uint64_t)res, rl_now_ns());
			virtio_signal(&net->vd, RXQ);
		} else if (res == -ECANCELED) {
			/* Cancelled by a pause: the buffer goes back unused. */
			virtq_undo_pop(q);
		} else {
			/* Tap error: the buffer goes back unused and we retry later. */
			virtq_undo_pop(q);
			net->stats.rx_errors++;
			log_ratelimited(LOG_WARN, "net %s: tap read failed: %s", net->cfg.iface_id,
					res < 0 ? strerror(-res) : "short frame");
			evloop_timer_arm(net->vd.loop, &net->rx_timer, 100000000ULL, rx_retry);
			pthread_mutex_unlock(&net->vd.lock);
			return;
		}
		rx_kick(net);
	}
	pthread_mutex_unlock(&net->vd.lock);
}

/* Take a receive chain into net->rx_chain: 1, or 0 if the guest has none
 * (its next notify resumes us), or -1 if it broke the queue. */
static int rx_pop(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *q = &vd->vq[RXQ];
	int r;
	while ((r = virtq_pop(q, &vd->vm->mem, &net->rx_chain)) == 0)
		if (!virtq_arm_notify(q))
			return 0;
	if (r < 0 || net->rx_chain.nread || net->rx_chain.write_len < (uint32_t)VNET_HDR_LEN) {
		virtio_fail(vd, "malformed receive buffer");
		return -1;
	}
	return 1;
}

static void rx_cancelled(struct evloop_op *op, int res, unsigned flags)
{
	struct virtio_net *net = container_of(op, struct virtio_net, rx_cancel_op);
	(void)res, (void)flags; /* rx_done reports the outcome */
	pthread_mutex_lock(&net->vd.lock);
	net->rx_cancelling = false;
	pthread_mutex_unlock(&net->vd.lock);
}

/* Cancel the tap read, so that the receive buffer it holds comes back
 * (rx_done, -ECANCELED). Returns false if it could not be asked now. */
static bool rx_cancel(struct virtio_net *net)
{
	if (net->rx_cancelling)
		return true;
	struct io_uring_sqe *sqe = evloop_sqe(net->vd.loop, &net->rx_cancel_op);
	if (!sqe)
		return false;
	net->rx_cancel_op.complete = rx_cancelled;
	io_uring_prep_cancel(sqe, &net->rx_op, 0);
	net->rx_cancelling = true;
	return true;
}

static void mmds_retry(struct evloop_timer *t)
{
	struct virtio_net *net = container_of(t, struct virtio_net, mmds_timer);
	pthread_mutex_lock(&net->vd.lock);
	if (net->vd.active)
		rx_kick(net);
	pthread_mutex_unlock(&net->vd.lock);
}

/* The MMDS responder's frames go to the guest before the tap's, under the
 * same rate limiter. A tap read holding the receive buffer is cancelled so
 * they need not wait for tap traffic. Returns true while they wait (no tap
 * read may start then). */
static bool rx_mmds(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *q = &vd->vq[RXQ];
	uint64_t now = rl_now_ns();
	bool waiting = true, pushed = false;
	const uint8_t *f;
	size_t len;
	while ((len = mmds_stack_peek(net->mmds, &f, now / 1000000))) {
		if (net->rx_busy) {
			if (!rx_cancel(net))
				evloop_timer_arm(vd->loop, &net->rx_timer, 1000000ULL, rx_retry);
			goto out;
		}
		if (!rl_admit(&net->rx_rl, now)) {
			net->stats.rx_throttled++;
			evloop_timer_arm(vd->loop, &net->rx_timer, rl_wait_ns(&net->rx_rl, 1, now), rx_retry);
			goto out;
		}
		if (rx_pop(net) <= 0)
			goto out;
		uint32_t total = (uint32_t)(VNET_HDR_LEN + len);
		if (net->rx_chain.write_len < total) {
			/* A buffer too small for the frame: TCP sends it again. */
			virtq_undo_pop(q);
			mmds_stack_consume(net->mmds, false);
			continue;
		}
		struct virtio_net_hdr_v1 hdr = { .num_buffers = 1 };
		virtq_chain_write(&net->rx_chain, 0, &hdr, sizeof(hdr));
		virtq_chain_write(&net->rx_chain, VNET_HDR_LEN, f, len);
		virtq_push(q, net->rx_chain.head, total);
		mmds_stack_consume(net->mmds, true);
		pushed = true;
		net->stats.rx_packets++;
		net->stats.rx_bytes += total;
		rl_charge(&net->rx_rl, total, now);
	}
	waiting = false;
	uint64_t wait_ms = mmds_stack_next_timeout(net->mmds, now / 1000000);
	if (wait_ms != UINT64_MAX)
		evloop_timer_arm(vd->loop, &net->mmds_timer, (wait_ms + 1) * 1000000ULL, mmds_retry);
out:
	if (pushed)
		virtio_signal(vd, RXQ);
	return waiting;
}

/* Keep one tap read outstanding while the guest has receive buffers. */
static void rx_kick(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	if (!vd->active || vd->paused)
		return;
	if (net->mmds && rx_mmds(net))
		return;
	if (net->rx_busy)
		return;
	uint64_t now = rl_now_ns();
	if (!rl_admit(&net->rx_rl, now)) {
		net->stats.rx_throttled++;
		evloop_timer_arm(vd->loop, &net->rx_timer, rl_wait_ns(&net->rx_rl, 1, now), rx_retry);
		return;
	}
	if (rx_pop(net) <= 0)
		return;
	int n = virtq_chain_iov(&net->rx_chain, true, 0, MAX_FRAME, net->rx_iov, VIRTQ_MAX_SIZE);
	struct io_uring_sqe *sqe = evloop_sqe(vd->loop, &net->rx_op);
	if (!sqe) {
		virtq_undo_pop(&vd->vq[RXQ]);
		evloop_timer_arm(vd->loop, &net->rx_timer, 1000000ULL, rx_retry);
		return;
	}
	io_uring_prep_readv(sqe, net->tap, net->rx_iov, (unsigned)n, 0);
	net->rx_op.complete = rx_done;
	net->rx_busy = true;
	net->rx_head = net->rx_chain.head;
	net->rx_generation = vd->generation;
}

/* ---- transmit ------------------------------------------------------ */

static void tx_process(struct virtio_net *net);

static void tx_retry(struct evloop_timer *t)
{
	struct virtio_net *net = container_of(t, struct virtio_net, tx_timer);
	pthread_mutex_lock(&net->vd.lock);
	if (net->vd.active)
		tx_process(net);
	pthread_mutex_unlock(&net->vd.lock);
}

static void tx_done(struct evloop_op *op, int res, unsigned flags)
{
	struct net_tx *t = container_of(op, struct net_tx, op);
	struct virtio_net *net = t->net;
	(void)flags;
	pthread_mutex_lock(&net->vd.lock);
	if (res < 0 || (uint32_t)res != t->len) {
		net->stats.tx_errors++;
		log_ratelimited(LOG_WARN, "net %s: tap write failed: %s", net->cfg.iface_id,
				res < 0 ? strerror(-res) : "short write");
	} else {
		net->stats.tx_packets++;
		net->stats.tx_bytes += t->len;
	}
	bool current = t->generation == net->vd.generation && net->vd.active;
	if (current) {
		virtq_push(&net->vd.vq[TXQ], t->head, 0);
		virtio_signal(&net->vd, TXQ);
	}
	t->next_free = net->tx_free;
	net->tx_free = t;
	net->tx_inflight--;
	if (current)
		tx_process(net); /* a chain may have waited for a free slot */
	pthread_mutex_unlock(&net->vd.lock);
}

/* The free slot tx_process() takes next, or NULL if all are in flight. A
 * slot is first handed out when needed, so that pages of tx_reqs no
 * transmit ever used stay untouched (and out of ember's RSS). */
static struct net_tx *tx_slot(struct virtio_net *net)
{
	if (!net->tx_free && net->tx_used < VIRTQ_MAX_SIZE) {
		struct net_tx *t = &net->tx_reqs[net->tx_used++];
		t->net = net;
		t->next_free = NULL;
		net->tx_free = t;
	}
	return net->tx_free;
}

/* A frame for the MMDS address goes to the responder, never to the tap. It
 * is copied out of guest memory once and parsed from the copy (if the
 * guest rewrites it meanwhile, the responder drops it). Returns whether it
 * was one. */
static bool tx_mmds(struct virtio_net *net, const struct virtq_chain *c)
{
	uint8_t head[VNET_HDR_LEN + 42];
	size_t n = virtq_chain_read(c, 0, head, sizeof(head));
	if (!mmds_stack_claims(net->mmds, head + VNET_HDR_LEN, n - VNET_HDR_LEN))
		return false;
	struct virtio_net_hdr_v1 hdr;
	memcpy(&hdr, head, sizeof(hdr));
	uint8_t *frame = mmds_stack_scratch(net->mmds);
	n = virtq_chain_read(c, VNET_HDR_LEN, frame, MMDS_STACK_FRAME_MAX);
	mmds_stack_receive(net->mmds, frame, n, hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM,
			   rl_now_ns() / 1000000);
	return true;
}

static void tx_process(struct virtio_net *net)
{
	struct virtio_dev *vd = &net->vd;
	struct virtq *q = &vd->vq[TXQ];
	struct virtq_chain c;
	uint16_t used_before = q->used_idx;
	unsigned to_mmds = 0;
	if (vd->paused)
		return;
	for (;;) {
		if (!tx_slot(net))
			break; /* a completion frees a slot and calls us again */
		int r = virtq_pop(q, &vd->vm->mem, &c);
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		if (r < 0 || c.write_len || c.read_len < (uint32_t)VNET_HDR_LEN) {
			virtio_fail(vd, "malformed transmit chain");
			return;
		}
		/* Not charged to the rate limiter, as Firecracker does. A guest
		 * that keeps the queue full of them yields to others after a
		 * queue's worth. */
		if (net->mmds && tx_mmds(net, &c)) {
			virtq_push(q, c.head, 0);
			if (++to_mmds == VIRTQ_MAX_SIZE) {
				evloop_timer_arm(vd->loop, &net->tx_timer, 1000ULL, tx_retry);
				break;
			}
			continue;
		}
		uint64_t now = rl_now_ns();
		if (!rl_consume(&net->tx_rl, c.read_len, now)) {
			virtq_undo_pop(q);
			net->stats.tx_throttled++;
			evloop_timer_arm(vd->loop, &net->tx_timer, rl_wait_ns(&net->tx_rl, c.read_len, now),
					 tx_retry);
			break;
		}
		if (c.read_len > MAX_FRAME || c.nsegs > NET_TX_SEGS) {
			/* Too big for any tap: drop it, as a NIC would. */
			net->stats.tx_dropped++;
			virtq_push(q, c.head, 0);
			continue;
		}
		struct net_tx *t = net->tx_free;
		int n = virtq_chain_iov(&c, false, 0, c.read_len, t->iov, NET_TX_SEGS);
		struct io_uring_sqe *sqe = evloop_sqe(vd->loop, &t->op);
		if (!sqe) {
			virtq_undo_pop(q);
			evloop_timer_arm(vd->loop, &net->tx_timer, 1000000ULL, tx_retry);
			break;
		}
		net->tx_free = t->next_free;
		net->tx_inflight++;
		t->head = c.head;
		t->len = c.read_len;
		t->generation = vd->generation;
		t->op.complete = tx_done;
		io_uring_prep_writev(sqe, net->tap, t->iov, (unsigned)n, 0);
	}
	if (q->used_idx != used_before)
		virtio_signal(vd, TXQ);
	if (to_mmds)
		rx_kick(net); /* the answers */
}

/* ---- device -------------------------------------------------------- */

static void net_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_net *net = vd->dev;
	if (q == RXQ)
		rx_kick(net);
	else if (q == TXQ)
		tx_process(net);
}

/* Offloads the guest accepted become the tap's (what it may hand us). */
static int net_activate(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->dev;
	unsigned off = 0;
	if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
	}
	if (ioctl(net->tap, TUNSETOFFLOAD, off) < 0) {
		log_warn("net %s: TUNSETOFFLOAD: %s", net->cfg.iface_id, strerror(errno));
		return -errno;
	}
	return 0;
}

static void net_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct net_stats *st = &((struct virtio_net *)vd->dev)->stats;
	snprintf(buf, len,
		 "rx_packets=%llu rx_bytes=%llu rx_errors=%llu rx_throttled=%llu "
		 "tx_packets=%llu tx_bytes=%llu tx_errors=%llu tx_dropped=%llu tx_throttled=%llu",
		 (unsigned long long)st->rx_packets, (unsigned long long)st->rx_bytes,
		 (unsigned long long)st->rx_errors, (unsigned long long)st->rx_throttled,
		 (unsigned long long)st->tx_packets, (unsigned long long)st->tx_bytes,
		 (unsigned long long)st->tx_errors, (unsigned long long)st->tx_dropped,
		 (unsigned long long)st->tx_throttled);
}

static void net_destroy(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->dev;
	close(net->tap);
	free(net->tx_reqs);
	mmds_stack_free(net->mmds);
}

/* The tap read waits for a frame that may never come: cancel it, so the
 * receive buffer it holds goes back to the ring before a snapshot. */
static void net_pause(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->dev;
	if (net->rx_busy)
		rx_cancel(net); /* if it cannot, idle() stays false; the pause reports it */
}

static bool net_idle(struct virtio_dev *vd)
{
	struct virtio_net *net = vd->dev;
	return !net->rx_busy && net->tx_inflight == 0;
}

static void net_save(struct virtio_dev *vd, struct snap_writer *w)
{
	struct virtio_net *net = vd->dev;
	rl_save(&net->rx_rl, w);
	rl_save(&net->tx_rl, w);
}

static int net_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	struct virtio_net *net = vd->dev;
	uint64_t now = rl_now_ns();
	return rl_restore(&net->rx_rl, r, now) && rl_restore(&net->tx_rl, r, now) ? 0 : -EINVAL;
}

static const struct virtio_ops net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.features = net_features,
	.config_read = net_config_read,
	.activate = net_activate,
	.notify = net_notify,
	.counters = net_counters,
	.destroy = net_destroy,
	.pause = net_pause,
	.idle = net_idle,
	.save = net_save,
	.restore = net_restore,
};

/* The messages are Firecracker's, which clients match. */
static int open_tap(const char *name, char *err, size_t errlen)
{
	/* Blocking: io_uring waits for frames itself, whatever the kernel does
	 * with O_NONBLOCK files. */
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "Open tap device failed: Error while opening /dev/net/tun: %s (os error %d)",
			 strerror(e), e);
		return -e;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	/* Without IFF_MULTI_QUEUE: the kernel refuses a multi-queue tap
	 * (EINVAL), as it refuses one another process has open (EBUSY). */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		snprintf(err, errlen,
			 "Open tap device failed: Error while creating ifreq structure: %s (os error %d). "
			 "Invalid TUN/TAP Backend provided by %s. Check our documentation on setting up "
			 "the network devices.", strerror(e), e, name);
		close(fd);
		return -e;
	}
	int hdr = VNET_HDR_LEN;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		int e = errno;
		snprintf(err, errlen, "Setting vnet header size failed: %s (os error %d)", strerror(e), e);
		close(fd);
		return -e;
	}
	return fd;
}

static int check_mtu(const struct net_config *cfg, char *err, size_t errlen)
{
	if (cfg->has_mtu && cfg->mtu < 68) {
		snprintf(err, errlen, "Could not create the network device: MTU %u is out of range [68, 65535]",
			 cfg->mtu);
		return -EINVAL;
	}
	return 0;
}

int virtio_net_check(const struct net_config *cfg, char *err, size_t errlen)
{
	int ret = check_mtu(cfg, err, errlen);
	if (ret)
		return ret;
	char msg[400];
	int fd = open_tap(cfg->host_dev_name, msg, sizeof(msg));
	if (fd < 0) {
		snprintf(err, errlen, "Could not create the network device: %s", msg);
		return fd;
	}
	close(fd);
	return 0;
}

int virtio_net_init(struct virtio_net *net, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct net_config *cfg, char *err, size_t errlen)
{
	memset(net, 0, sizeof(*net));
	net->cfg = *cfg;
	net->tap = -1;
	int ret = check_mtu(cfg, err, errlen);
	if (ret)
		return ret;
	char msg[400];
	net->tap = open_tap(cfg->host_dev_name, msg, sizeof(msg));
	if (net->tap < 0) {
		snprintf(err, errlen, "Could not create the network device %s: %s", cfg->iface_id, msg);
		return net->tap;
	}
	/* Learn which offloads the tap takes, then start with none. */
	static const unsigned probe[] = { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 };
	for (unsigned i = 0; i < sizeof(probe) / sizeof(probe[0]); i++)
		if (ioctl(net->tap, TUNSETOFFLOAD, net->tap_offloads | probe[i]) == 0)
			net->tap_offloads |= probe[i];
	ioctl(net->tap, TUNSETOFFLOAD, 0);

	net->tx_reqs = calloc(VIRTQ_MAX_SIZE, sizeof(*net->tx_reqs));
	if (!net->tx_reqs) {
		close(net->tap);
		return -ENOMEM;
	}
	uint64_t now = rl_now_ns();
	rl_init(&net->rx_rl, &cfg->rx_rate_limiter, now);
	rl_init(&net->tx_rl, &cfg->tx_rate_limiter, now);
	int e = virtio_dev_init(&net->vd, vm, loop, index, &net_ops, net);
	if (e)
		snprintf(err, errlen, "network interface %s: %s", cfg->iface_id, strerror(-e));
	return e;
}

void virtio_net_update(struct virtio_net *net, const struct ratelimiter_config *rx,
		       const struct ratelimiter_config *tx)
{
	pthread_mutex_lock(&net->vd.lock);
	uint64_t now = rl_now_ns();
	if (rx) {
		net->cfg.rx_rate_limiter = *rx;
		rl_init(&net->rx_rl, rx, now);
	}
	if (tx) {
		net->cfg.tx_rate_limiter = *tx;
		rl_init(&net->tx_rl, tx, now);
	}
	pthread_mutex_unlock(&net->vd.lock);
}

int virtio_net_set_mmds(struct virtio_net *net, uint32_t ipv4, mmds_answer_fn fn, mmds_request_len_fn len_fn,
			void *ctx, size_t resp_cap)
{
	struct mmds_stack *m = mmds_stack_new(ipv4, fn, len_fn, ctx, resp_cap, rl_now_ns() ^ (uintptr_t)net);
	if (!m)
		return -ENOMEM;
	pthread_mutex_lock(&net->vd.lock);
	struct mmds_stack *old = net->mmds;
	net->mmds = m;
	pthread_mutex_unlock(&net->vd.lock);
	mmds_stack_free(old);
	return 0;
}

void virtio_net_mmds_stats(struct virtio_net *net, struct mmds_stack_stats *sum)
{
	pthread_mutex_lock(&net->vd.lock);
	if (net->mmds)
		mmds_stack_stats_add(sum, mmds_stack_stats(net->mmds));
	pthread_mutex_unlock(&net->vd.lock);
}
