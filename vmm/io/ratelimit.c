#include "ratelimit.h"

#include "../snapshot/snapfile.h"

#include <string.h>
#include <time.h>

uint64_t rl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void bucket_init(struct token_bucket *b, const struct token_bucket_config *cfg, uint64_t now)
{
	memset(b, 0, sizeof(*b));
	b->cfg = *cfg;
	if (cfg->size == 0 || cfg->refill_time_ms == 0)
		b->cfg.size = 0; /* a bucket that never refills limits nothing */
	b->budget = (int64_t)b->cfg.size;
	b->burst = b->cfg.size ? cfg->one_time_burst : 0;
	b->last_ns = now;
}

void rl_init(struct ratelimiter *rl, const struct ratelimiter_config *cfg, uint64_t now_ns)
{
	bucket_init(&rl->bw, &cfg->bandwidth, now_ns);
	bucket_init(&rl->ops, &cfg->ops, now_ns);
}

bool rl_enabled(const struct ratelimiter *rl)
{
	return rl->bw.cfg.size || rl->ops.cfg.size;
}

static void refill(struct token_bucket *b, uint64_t now)
{
	if (!b->cfg.size || now <= b->last_ns)
		return;
	uint64_t period_ns = b->cfg.refill_time_ms * 1000000ULL;
	uint64_t elapsed = now - b->last_ns;
	/* tokens = elapsed * size / period, without overflowing 64 bits */
	unsigned __int128 t = (unsigned __int128)elapsed * b->cfg.size / period_ns;
	if (t == 0)
		return; /* keep accumulating time until a whole token is due */
	/* Advance the clock by exactly the time those tokens took. */
	b->last_ns += (uint64_t)((t * period_ns) / b->cfg.size);
	int64_t nb = b->budget + (t > (unsigned __int128)INT64_MAX ? INT64_MAX : (int64_t)t);
	if (nb >= (int64_t)b->cfg.size) {
		nb = (int64_t)b->cfg.size;
		b->last_ns = now;
	}
	b->budget = nb;
}

static bool bucket_can(struct token_bucket *b, uint64_t n, uint64_t now)
{
	if (!b->cfg.size || n == 0)
		return true;
	refill(b, now);
	if (n <= b->burst)
		return true;
	uint64_t rest = n - b->burst;
	if (rest > b->cfg.size)
		return b->budget == (int64_t)b->cfg.size; /* oversized: only from full */
	return b->budget >= (int64_t)rest;
}

static void bucket_take(struct token_bucket *b, uint64_t n)
{
	if (!b->cfg.size)
		return;
	uint64_t from_burst = n < b->burst ? n : b->burst;
	b->burst -= from_burst;
	n -= from_burst;
	b->budget -= n > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

bool rl_consume(struct ratelimiter *rl, uint64_t bytes, uint64_t now_ns)
{
	if (!bucket_can(&rl->ops, 1, now_ns) || !bucket_can(&rl->bw, bytes, now_ns))
		return false;
	bucket_take(&rl->ops, 1);
	bucket_take(&rl->bw, bytes);
	return true;
}

bool rl_admit(struct ratelimiter *rl, uint64_t now_ns)
{
	if (!bucket_can(&rl->ops, 1, now_ns) || !bucket_can(&rl->bw, 1, now_ns))
		return false;
	bucket_take(&rl->ops, 1);
	return true;
}

void rl_charge(struct ratelimiter *rl, uint64_t bytes, uint64_t now_ns)
{
	refill(&rl->bw, now_ns);
	bucket_take(&rl->bw, bytes);
}

static uint64_t bucket_wait(struct token_bucket *b, uint64_t n, uint64_t now)
{
	if (bucket_can(b, n, now))
		return 0;
	uint64_t rest = n > b->burst ? n - b->burst : 0;
	int64_t need = rest > b->cfg.size ? (int64_t)b->cfg.size : (int64_t)rest;
	uint64_t missing = (uint64_t)(need - b->budget);
	uint64_t period_ns = b->cfg.refill_time_ms * 1000000ULL;
	/* Time for `missing` tokens, rounded up, minus what has accrued. */
	unsigned __int128 ns = ((unsigned __int128)missing * period_ns + b->cfg.size - 1) / b->cfg.size;
	uint64_t accrued = now - b->last_ns;
	uint64_t w = ns > accrued ? (uint64_t)(ns - accrued) : 1;
	return w ? w : 1;
}

uint64_t rl_wait_ns(struct ratelimiter *rl, uint64_t bytes, uint64_t now_ns)
{
	uint64_t a = bucket_wait(&rl->ops, 1, now_ns);
	uint64_t b = bucket_wait(&rl->bw, bytes, now_ns);
	return a > b ? a : b;
}

/* A request bigger than a bucket passes from full and leaves it that much
 * in debt, and so does a frame charged after the fact: a live bucket can
 * be far below -size, though never by 2^33 (no request reaches 4 GiB, the
 * most a descriptor chain can describe). A restored budget must lie above
 * that, well clear of overflowing the refill arithmetic. */
#define RL_MAX_DEBT (1LL << 33)

static void bucket_save(const struct token_bucket *b, struct snap_writer *w)
{
	sw_u64(w, (uint64_t)b->budget);
	sw_u64(w, b->burst);
}

static bool bucket_restore(struct token_bucket *b, struct snap_reader *r, uint64_t now_ns)
{
	int64_t budget = (int64_t)sr_u64(r);
	uint64_t burst = sr_u64(r);
	if (r->bad)
		return false;
	if (budget > (int64_t)b->cfg.size || budget < -RL_MAX_DEBT || burst > b->cfg.one_time_burst)
		return sr_fail(r, "rate limiter bucket out of range for its configuration");
	b->budget = budget;
	b->burst = burst;
	b->last_ns = now_ns;
	return true;
}

void rl_save(const struct ratelimiter *rl, struct snap_writer *w)
{
	bucket_save(&rl->bw, w);
	bucket_save(&rl->ops, w);
}

bool rl_restore(struct ratelimiter *rl, struct snap_reader *r, uint64_t now_ns)
{
	return bucket_restore(&rl->bw, r, now_ns) && bucket_restore(&rl->ops, r, now_ns);
}
