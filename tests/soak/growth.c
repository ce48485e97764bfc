/* growth: does a series of samples grow (see growth.h). */
#include "growth.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The median of v[from..from+n-1], n > 0, sorted in scratch. */
static double median_of(const double *v, size_t from, size_t n, double *scratch)
{
	memcpy(scratch, v + from, n * sizeof(*scratch));
	qsort(scratch, n, sizeof(*scratch), cmp_double);
	return n % 2 ? scratch[n / 2] : (scratch[n / 2 - 1] + scratch[n / 2]) / 2;
}

struct growth growth_check(const double *v, size_t n, struct growth_bound b)
{
	struct growth g = { 0 };
	if (n == 0)
		return g;
	g.first = v[0];
	g.last = v[n - 1];
	g.min = g.max = v[0];
	for (size_t i = 1; i < n; i++) {
		if (v[i] < g.min)
			g.min = v[i];
		if (v[i] > g.max)
			g.max = v[i];
	}
	double *scratch = malloc(n * sizeof(*scratch));
	if (!scratch)
		abort(); /* a soak's few thousand samples */
	g.median = median_of(v, 0, n, scratch);
	size_t q = n / 4 ? n / 4 : 1;
	g.early = median_of(v, 0, q, scratch);
	g.late = median_of(v, n - q, q, scratch);
	free(scratch);
	g.limit = b.abs > b.rel * g.early ? b.abs : b.rel * g.early;
	g.checked = n >= GROWTH_MIN_SAMPLES;
	g.grew = g.checked && g.late > g.early + g.limit;
	return g;
}
