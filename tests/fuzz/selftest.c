/* A libFuzzer target that misbehaves on purpose, built only to check that
 * the fuzz runner (tests/fuzz/run.sh) fails a run for every kind of
 * finding; tests/fuzz/selftest.sh drives it. The first input byte picks
 * the misbehaviour; any other input is fine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile double huge = 1e19;
static void *volatile keep;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0]) {
	case 'F': /* a double outside long long's range: only clang's UBSan sees it */
		return (long long)huge == 0;
	case 'S': { /* signed overflow */
		volatile int big = 0x7fffffff;
		return big + 1 > 0;
	}
	case 'A': { /* heap overflow */
		char *volatile p = malloc(4);
		int r = p[4];
		free(p);
		return r;
	}
	case 'L': /* a leak */
		keep = malloc(64);
		keep = NULL;
		return 0;
	case 'C': /* a crash */
		abort();
	case 'H': /* a hang */
		for (;;)
			pause();
	case 'R': /* a report printed while the target carries on: only the log shows it */
		fprintf(stderr, "selftest.c:1:1: runtime error: a report without a halt\n");
		return 0;
	default:
		return 0;
	}
}
