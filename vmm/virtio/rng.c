#include "rng.h"

#include <errno.h>
#include <stdio.h>
#include <linux/virtio_ids.h>
#include <string.h>
#include <sys/random.h>

#include "../snapshot/snapfile.h"
#include "../vm.h"

/* One request fills at most this much; the rest of a huge buffer is left
 * unwritten (the used length says how much is valid). */
#define RNG_MAX_REQUEST (64 * 1024)

static uint64_t rng_features(struct virtio_dev *vd)
{
	(void)vd;
	return 0;
}

static void rng_timer(struct evloop_timer *t);

static void rng_process(struct virtio_rng *rng)
{
	struct virtio_dev *vd = &rng->vd;
	struct virtq *q = &vd->vq[0];
	struct virtq_chain c;
	bool pushed = false;
	if (vd->paused)
		return;
	for (;;) {
		int r = virtq_pop(q, &vd->vm->mem, &c);
		if (r < 0) {
			virtio_fail(vd, "malformed descriptor chain");
			return;
		}
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		uint32_t want = c.write_len < RNG_MAX_REQUEST ? c.write_len : RNG_MAX_REQUEST;
		uint64_t now = rl_now_ns();
		if (!rl_consume(&rng->rl, want, now)) {
			virtq_undo_pop(q);
			rng->throttled++;
			evloop_timer_arm(vd->loop, &rng->rl_timer, rl_wait_ns(&rng->rl, want, now),
					 rng_timer);
			break;
		}
		uint32_t done = 0;
		for (unsigned i = c.nread; i < c.nsegs && done < want; i++) {
			uint32_t n = c.segs[i].len < want - done ? c.segs[i].len : want - done;
			ssize_t got = getrandom(c.segs[i].addr, n, 0);
			if (got <= 0)
				break;
			done += (uint32_t)got;
		}
		virtq_push(q, c.head, done);
		rng->bytes += done;
		rng->requests++;
		pushed = true;
	}
	if (pushed)
		virtio_signal(vd, 0);
}

static void rng_notify(struct virtio_dev *vd, unsigned q)
{
	(void)q;
	rng_process(vd->dev);
}

static void rng_timer(struct evloop_timer *t)
{
	struct virtio_rng *rng = container_of(t, struct virtio_rng, rl_timer);
	pthread_mutex_lock(&rng->vd.lock);
	if (rng->vd.active)
		rng_process(rng);
	pthread_mutex_unlock(&rng->vd.lock);
}

static void rng_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct virtio_rng *rng = vd->dev;
	snprintf(buf, len, "requests=%llu bytes=%llu throttled=%llu",
		 (unsigned long long)rng->requests, (unsigned long long)rng->bytes,
		 (unsigned long long)rng->throttled);
}

static void rng_save(struct virtio_dev *vd, struct snap_writer *w)
{
	struct virtio_rng *rng = vd->dev;
	rl_save(&rng->rl, w);
}

static int rng_restore(struct virtio_dev *vd, struct snap_reader *r)
{
	struct virtio_rng *rng = vd->dev;
	return rl_restore(&rng->rl, r, rl_now_ns()) ? 0 : -EINVAL;
}

static const struct virtio_ops rng_ops = {
	.name = "rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.features = rng_features,
	.notify = rng_notify,
	.counters = rng_counters,
	.save = rng_save,
	.restore = rng_restore,
};

int virtio_rng_init(struct virtio_rng *rng, struct vm *vm, struct evloop *loop, unsigned index,
		    const struct ratelimiter_config *rl)
{
	memset(rng, 0, sizeof(*rng));
	struct ratelimiter_config none = { 0 };
	rl_init(&rng->rl, rl ? rl : &none, rl_now_ns());
	return virtio_dev_init(&rng->vd, vm, loop, index, &rng_ops, rng);
}
