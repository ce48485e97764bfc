/* virtio-net on a host tap device. Receive and transmit are io_uring
 * readv/writev between the tap and the guest's buffers, with no copy in
 * ember. Checksum and TSO offloads are offered when the tap supports them
 * and switched on in the tap as the guest accepts them. */
#ifndef EMBER_VIRTIO_NET_H
#define EMBER_VIRTIO_NET_H

#include "../config.h"
#include "../io/ratelimit.h"
#include "../mmds/stack.h"
#include "virtio.h"

#define NET_TX_SEGS 64 /* segments per transmitted frame we accept */

struct virtio_net;

struct net_tx {
	struct evloop_op op;
	struct virtio_net *net;
	struct net_tx *next_free;
	uint16_t head;
	uint32_t generation;
	uint32_t len;
	struct iovec iov[NET_TX_SEGS];
};

struct net_stats {
	uint64_t rx_packets, rx_bytes, rx_errors, rx_throttled;
	uint64_t tx_packets, tx_bytes, tx_errors, tx_dropped, tx_throttled;
};

struct virtio_net {
	struct virtio_dev vd;
	struct net_config cfg;
	int tap;
	uint32_t tap_offloads;    /* TUN_F_* the tap accepts */
	/* receive: one readv in flight at a time, into one chain */
	struct evloop_op rx_op;
	bool rx_busy;
	uint16_t rx_head;
	uint32_t rx_generation;
	struct virtq_chain rx_chain;
	struct iovec rx_iov[VIRTQ_MAX_SIZE];
	struct ratelimiter rx_rl, tx_rl;
	struct evloop_timer rx_timer, tx_timer;
	struct net_tx *tx_reqs, *tx_free;
	unsigned tx_used;      /* slots of tx_reqs handed out at least once */
	unsigned tx_inflight;
	struct evloop_op rx_cancel_op;
	bool rx_cancelling;
	struct net_stats stats;
	/* Frames for the MMDS address go here instead of the tap (NULL: none). */
	struct mmds_stack *mmds;
	struct evloop_timer mmds_timer; /* its next retransmission */
};

/* Open the tap cfg->host_dev_name and add the device. Returns 0 or
 * -errno with a message in err. */
int virtio_net_init(struct virtio_net *net, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct net_config *cfg, char *err, size_t errlen);

/* What PUT /network-interfaces checks, as Firecracker creates the device
 * then: the MTU is 68-65535 and the tap opens as ember opens it (a
 * multi-queue tap, or one held open elsewhere, does not). The tap is closed
 * again. Returns 0 or -errno with Firecracker's message in err. */
int virtio_net_check(const struct net_config *cfg, char *err, size_t errlen);

/* After boot (PATCH /network-interfaces/{id}): new rate limiters (NULL
 * keeps one). Takes the device lock. */
void virtio_net_update(struct virtio_net *net, const struct ratelimiter_config *rx,
		       const struct ratelimiter_config *tx);

/* From now on the device answers frames for the MMDS address ipv4 (host
 * order) itself, fn answering the requests len_fn delimits (see
 * vmm/mmds/stack.h); an earlier responder is replaced with its
 * connections. Returns 0 or -ENOMEM. Takes the device lock. */
int virtio_net_set_mmds(struct virtio_net *net, uint32_t ipv4, mmds_answer_fn fn, mmds_request_len_fn len_fn,
			void *ctx, size_t resp_cap);

/* Add the device's MMDS responder counters to *sum (nothing without one).
 * Takes the device lock. */
void virtio_net_mmds_stats(struct virtio_net *net, struct mmds_stack_stats *sum);

#endif
