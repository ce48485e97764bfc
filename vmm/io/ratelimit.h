/* Token-bucket rate limiting, as Firecracker's rate_limiter objects
 * describe it: a limiter has an optional bandwidth bucket (bytes) and an
 * optional ops bucket (requests). Each bucket holds up to `size` tokens,
 * refills from empty to full in `refill_time` ms, and may start with a
 * `one_time_burst` of extra tokens that are never refilled.
 *
 * Pure logic with the time passed in, so tests drive the clock. Devices
 * consume before doing I/O and, when refused, retry after rl_wait_ns(). */
#ifndef EMBER_RATELIMIT_H
#define EMBER_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct token_bucket_config {
	uint64_t size;           /* 0: no bucket */
	uint64_t one_time_burst;
	uint64_t refill_time_ms;
};

struct token_bucket {
	struct token_bucket_config cfg;
	int64_t budget;          /* may go negative: a request bigger than size */
	uint64_t burst;          /* what is left of one_time_burst */
	uint64_t last_ns;        /* time of the last refill */
};

struct ratelimiter {
	struct token_bucket bw;
	struct token_bucket ops;
};

struct ratelimiter_config {
	struct token_bucket_config bandwidth;
	struct token_bucket_config ops;
};

void rl_init(struct ratelimiter *rl, const struct ratelimiter_config *cfg, uint64_t now_ns);
bool rl_enabled(const struct ratelimiter *rl);

/* Take one op and bytes tokens if both buckets allow it now. A request
 * larger than a bucket's size passes when that bucket is full and leaves
 * it in debt. Returns false (and takes nothing) when it must wait. */
bool rl_consume(struct ratelimiter *rl, uint64_t bytes, uint64_t now_ns);

/* For transfers whose size is known only afterwards (a tap read): take
 * one op if the ops bucket allows and the bandwidth bucket is not empty
 * or in debt; charge the bytes with rl_charge() once known. */
bool rl_admit(struct ratelimiter *rl, uint64_t now_ns);

/* Take bytes tokens after the fact (for a read whose size was only known
 * once done); may leave the bandwidth bucket in debt. */
void rl_charge(struct ratelimiter *rl, uint64_t bytes, uint64_t now_ns);

/* Nanoseconds until rl_consume(rl, bytes) could succeed (0 if now). */
uint64_t rl_wait_ns(struct ratelimiter *rl, uint64_t bytes, uint64_t now_ns);

uint64_t rl_now_ns(void);

/* Snapshots keep what is left in the buckets; the refill clock restarts
 * at the restore. rl_restore checks the values against the limiter's
 * (same) configuration; returns false after sr_fail. */
struct snap_writer;
struct snap_reader;
void rl_save(const struct ratelimiter *rl, struct snap_writer *w);
bool rl_restore(struct ratelimiter *rl, struct snap_reader *r, uint64_t now_ns);

#endif
