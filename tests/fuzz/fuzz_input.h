/* A fuzz target's input read as a stream of big-endian numbers: past its
 * end every byte reads as 0, so a target can take what it needs from any
 * input. Shared by the targets that build structured cases from bytes. */
#ifndef EMBER_FUZZ_INPUT_H
#define EMBER_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_input {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fuzz_take(struct fuzz_input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* The next `bytes` bytes (at most 8) as one number, the first the highest. */
static inline uint64_t fuzz_take_n(struct fuzz_input *in, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v = v << 8 | fuzz_take(in);
	return v;
}

#endif
