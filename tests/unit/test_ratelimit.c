#include <criterion/criterion.h>

#include "../../vmm/io/ratelimit.h"
#include "../../vmm/snapshot/snapfile.h"

#define MS 1000000ULL

static struct ratelimiter make(uint64_t size, uint64_t burst, uint64_t refill_ms, uint64_t ops)
{
	struct ratelimiter_config cfg = {
		.bandwidth = { size, burst, refill_ms },
		.ops = { ops, 0, ops ? 1000 : 0 },
	};
	struct ratelimiter rl;
	rl_init(&rl, &cfg, 0);
	return rl;
}

Test(ratelimit, disabled_limits_nothing)
{
	struct ratelimiter rl = make(0, 0, 0, 0);
	cr_assert_not(rl_enabled(&rl));
	for (int i = 0; i < 1000; i++)
		cr_assert(rl_consume(&rl, 1 << 30, 0));
	cr_assert_eq(rl_wait_ns(&rl, 1 << 30, 0), 0);
}

Test(ratelimit, bandwidth_bucket_empties_and_refills_linearly)
{
	struct ratelimiter rl = make(1000, 0, 100, 0); /* 1000 bytes per 100 ms */
	cr_assert(rl_consume(&rl, 600, 0));
	cr_assert(rl_consume(&rl, 400, 0));
	cr_assert_not(rl_consume(&rl, 1, 0), "empty");
	cr_assert_not(rl_consume(&rl, 100, 5 * MS), "only 50 refilled after 5 ms");
	cr_assert(rl_consume(&rl, 100, 10 * MS), "100 refilled after 10 ms");
	cr_assert(rl_consume(&rl, 1000, 1000 * MS), "full again, not beyond size");
	cr_assert_not(rl_consume(&rl, 1, 1000 * MS));
}

Test(ratelimit, wait_time_is_when_tokens_arrive)
{
	struct ratelimiter rl = make(1000, 0, 100, 0);
	cr_assert(rl_consume(&rl, 1000, 0));
	uint64_t w = rl_wait_ns(&rl, 250, 0);
	cr_assert_geq(w, 25 * MS - 1);
	cr_assert_leq(w, 25 * MS + 1);
	cr_assert(rl_consume(&rl, 250, w));
}

Test(ratelimit, one_time_burst_comes_first_and_never_returns)
{
	struct ratelimiter rl = make(100, 500, 1000, 0);
	cr_assert(rl_consume(&rl, 500, 0), "the burst");
	cr_assert(rl_consume(&rl, 100, 0), "then the bucket");
	cr_assert_not(rl_consume(&rl, 1, 0));
	cr_assert(rl_consume(&rl, 100, 2000 * MS));
	cr_assert_not(rl_consume(&rl, 1, 2000 * MS), "burst is gone for good");
}

Test(ratelimit, oversized_request_passes_from_full_and_leaves_debt)
{
	struct ratelimiter rl = make(100, 0, 100, 0);
	cr_assert(rl_consume(&rl, 350, 0), "bigger than the bucket, bucket full");
	cr_assert_not(rl_consume(&rl, 1, 100 * MS), "still paying off 250 of debt");
	cr_assert(rl_consume(&rl, 100, 350 * MS));
}

Test(ratelimit, ops_bucket_counts_requests)
{
	struct ratelimiter rl = make(0, 0, 0, 2); /* 2 ops per second */
	cr_assert(rl_consume(&rl, 1 << 20, 0));
	cr_assert(rl_consume(&rl, 1 << 20, 0));
	cr_assert_not(rl_consume(&rl, 0, 0));
	cr_assert(rl_consume(&rl, 0, 500 * MS));
}

Test(ratelimit, refused_request_takes_nothing)
{
	struct ratelimiter rl = make(100, 0, 100, 1);
	cr_assert(rl_consume(&rl, 10, 0));            /* takes the only op */
	cr_assert_not(rl_consume(&rl, 10, 0));        /* ops empty: bytes stay */
	cr_assert_eq(rl.bw.budget, 90);
}

Test(ratelimit, admit_then_charge_for_unknown_sizes)
{
	struct ratelimiter rl = make(1000, 0, 100, 0);
	cr_assert(rl_admit(&rl, 0));
	rl_charge(&rl, 1500, 0); /* a frame bigger than what was left */
	cr_assert_not(rl_admit(&rl, 0), "in debt: no more until refilled");
	cr_assert_not(rl_admit(&rl, 50 * MS));
	cr_assert(rl_admit(&rl, 51 * MS));
}

/* A snapshot taken while a bucket is in debt restores: the debt of one
 * request is not bounded by the bucket's size. */
Test(ratelimit, debt_beyond_size_survives_a_snapshot)
{
	struct ratelimiter rl = make(100, 0, 100, 0), back = make(100, 0, 100, 0);
	cr_assert(rl_consume(&rl, 64 * 1024, 0), "oversized, from full");
	struct snap_writer w;
	sw_init(&w);
	rl_save(&rl, &w);
	struct snap_reader r;
	sr_init(&r, w.buf, w.len);
	cr_assert(rl_restore(&back, &r, 0), "%s", r.why);
	cr_assert_eq(back.bw.budget, 100 - 64 * 1024);
	sw_free(&w);

	/* What no live bucket can hold is still refused. */
	sw_init(&w);
	sw_u64(&w, (uint64_t)(-(1LL << 40)));
	sw_u64(&w, 0);
	sw_u64(&w, 0);
	sw_u64(&w, 0);
	sr_init(&r, w.buf, w.len);
	cr_assert_not(rl_restore(&back, &r, 0));
	sw_free(&w);
}
