/* The soak's growth detector on synthetic series: flat, noisy, warming up,
 * spiking or shrinking series pass; steady and slow leaks fail. */
#include <criterion/criterion.h>

#include "../soak/growth.h"

#define N 1000
static double v[N];

static const struct growth_bound FDS = { 2, 0 };
static const struct growth_bound KIB = { 1024, 0.05 };

/* v[i] = base + slope * i + noise in [-jitter, +jitter] (a fixed sequence). */
static void series(size_t n, double base, double slope, double jitter)
{
	unsigned x = 12345;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		double noise = jitter * ((double)(x >> 16 & 0x7fff) / 0x7fff * 2 - 1);
		v[i] = base + slope * (double)i + noise;
	}
}

Test(growth, flat_series_passes)
{
	series(N, 14, 0, 0);
	struct growth g = growth_check(v, N, FDS);
	cr_assert(g.checked);
	cr_assert_not(g.grew);
	cr_assert_eq(g.early, 14);
	cr_assert_eq(g.late, 14);
}

Test(growth, one_fd_per_run_fails)
{
	series(N, 14, 1, 0);
	struct growth g = growth_check(v, N, FDS);
	cr_assert(g.grew);
	cr_assert_gt(g.late - g.early, 700);
	series(50, 14, 1, 0); /* the short soak's length */
	cr_assert(growth_check(v, 50, FDS).grew);
}

Test(growth, one_fd_every_hundred_cycles_fails)
{
	/* 1000 cycles sampled every 10: one fd more every 10 samples. */
	for (size_t i = 0; i < 100; i++)
		v[i] = 14 + (double)(i / 10);
	cr_assert(growth_check(v, 100, FDS).grew);
}

Test(growth, a_spike_is_not_a_leak)
{
	series(N, 14, 0, 0);
	v[N - 1] = 64;     /* a busy moment at the very end */
	v[N / 2] = 200;
	struct growth g = growth_check(v, N, FDS);
	cr_assert_not(g.grew);
	cr_assert_eq(g.max, 200);
	cr_assert_eq(g.last, 64);
}

Test(growth, an_unlucky_late_quarter_within_the_bound_passes)
{
	/* One more fd in each late sample (a client being served when sampled). */
	series(N, 14, 0, 0);
	for (size_t i = 3 * N / 4; i < N; i++)
		v[i] = 16;
	cr_assert_not(growth_check(v, N, FDS).grew);
}

Test(growth, warm_up_then_flat_passes)
{
	series(N, 2300, 0, 0);
	for (size_t i = 0; i < 20; i++) /* allocator arenas filling at first */
		v[i] = 1800 + 25.0 * (double)i;
	cr_assert_not(growth_check(v, N, KIB).grew);
}

Test(growth, noisy_rss_passes)
{
	series(N, 2300, 0, 400);
	cr_assert_not(growth_check(v, N, KIB).grew);
}

Test(growth, shrinking_series_passes)
{
	series(N, 50000, -10, 100);
	cr_assert_not(growth_check(v, N, KIB).grew);
}

Test(growth, rss_leak_of_two_kib_per_run_fails)
{
	series(N, 2300, 2, 400);
	struct growth g = growth_check(v, N, KIB);
	cr_assert(g.grew, "early %.0f late %.0f limit %.0f", g.early, g.late, g.limit);
}

Test(growth, leak_below_the_bound_is_not_seen)
{
	/* 1000 runs leaking 0.5 KiB each: ~375 KiB between the quarters'
	 * medians, under the 1 MiB bound (the detector's stated resolution). */
	series(N, 2300, 0.5, 0);
	cr_assert_not(growth_check(v, N, KIB).grew);
}

Test(growth, relative_bound_scales_with_the_early_median)
{
	series(N, 100000, 0, 0);
	for (size_t i = 3 * N / 4; i < N; i++)
		v[i] = 104000; /* +4% */
	struct growth g = growth_check(v, N, KIB);
	cr_assert_eq(g.limit, 5000);
	cr_assert_not(g.grew);
	for (size_t i = 3 * N / 4; i < N; i++)
		v[i] = 106000; /* +6% */
	cr_assert(growth_check(v, N, KIB).grew);
}

Test(growth, too_short_to_tell)
{
	series(GROWTH_MIN_SAMPLES - 1, 14, 100, 0);
	struct growth g = growth_check(v, GROWTH_MIN_SAMPLES - 1, FDS);
	cr_assert_not(g.checked);
	cr_assert_not(g.grew);
	series(GROWTH_MIN_SAMPLES, 14, 100, 0);
	cr_assert(growth_check(v, GROWTH_MIN_SAMPLES, FDS).grew);
	g = growth_check(v, 0, FDS);
	cr_assert_not(g.checked);
}

Test(growth, statistics)
{
	const double s[] = { 5, 1, 9, 3, 7, 2, 8, 4 };
	struct growth g = growth_check(s, 8, FDS);
	cr_assert_eq(g.first, 5);
	cr_assert_eq(g.last, 4);
	cr_assert_eq(g.min, 1);
	cr_assert_eq(g.max, 9);
	cr_assert_eq(g.median, 4.5);
	cr_assert_eq(g.early, 3);   /* median of 5, 1 */
	cr_assert_eq(g.late, 6);    /* median of 8, 4 */
	cr_assert(g.grew);          /* 6 > 3 + 2 */
	cr_assert_eq(s[0], 5);      /* the input is left as it was */
}
