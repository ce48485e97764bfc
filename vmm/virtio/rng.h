/* virtio-rng (the "entropy" device): fills the guest's buffers from the
 * host's getrandom(), optionally rate limited. */
#ifndef EMBER_VIRTIO_RNG_H
#define EMBER_VIRTIO_RNG_H

#include "../io/ratelimit.h"
#include "virtio.h"

struct virtio_rng {
	struct virtio_dev vd;
	struct ratelimiter rl;
	struct evloop_timer rl_timer;
	uint64_t bytes;          /* metrics */
	uint64_t requests;
	uint64_t throttled;
};

int virtio_rng_init(struct virtio_rng *rng, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct ratelimiter_config *rl);

#endif
