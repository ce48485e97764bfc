/* growth: does a series of samples taken over a soak grow (a leak)?
 *
 * The samples are in the order they were taken (one per run, or one every
 * few cycles of a long-lived process). The series grew if the median of
 * its last quarter exceeds the median of its first quarter by more than
 * the bound: max(abs, rel * that first median). Medians, so one sample
 * taken at a busy moment neither hides nor fakes a trend; quarters, so a
 * leak of L per sample shows as about L * n / 2 (with n samples). A
 * series of fewer than GROWTH_MIN_SAMPLES never grew: too short to tell. */
#ifndef GROWTH_H
#define GROWTH_H

#include <stdbool.h>
#include <stddef.h>

#define GROWTH_MIN_SAMPLES 8

struct growth_bound {
	double abs; /* allowed growth in the series' unit */
	double rel; /* allowed growth as a fraction of the first quarter's median */
};

struct growth {
	double first, last;      /* the first and the last sample */
	double min, median, max; /* over every sample */
	double early, late;      /* medians of the first and the last quarter */
	double limit;            /* the most late may exceed early by */
	bool checked;            /* enough samples to tell */
	bool grew;               /* checked, and late > early + limit */
};

/* Statistics of v[0..n-1] and the verdict against b. n may be 0 (all
 * fields 0, not checked). v is not modified. */
struct growth growth_check(const double *v, size_t n, struct growth_bound b);

#endif
