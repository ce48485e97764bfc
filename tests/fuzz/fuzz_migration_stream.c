/* libFuzzer target: the destination's side of the live migration stream
 * (vmm/migration/stream.c). The input is a program of operations, each
 * appending bytes to the stream: raw bytes, the hello, and BEGIN, PAGES,
 * STATE, END and RESULT messages built from fields of the input with
 * right CRCs (so the fuzzer gets past them and reaches the rules behind
 * them), now and then with one byte flipped. The stream is then fed to a
 * destination in chunks whose sizes the input also picks. Checked: the
 * destination's memory is written only inside the size BEGIN announced
 * (ASan: it is exactly that big), the callbacks run at most once and in
 * order, a failed stream stays failed, and a stream that reached END
 * holds exactly the pages its valid PAGES messages sent. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"

#include "../../vmm/migration/stream.h"

#define MAX_PAGES 256 /* the largest guest this target builds: 1 MiB */



struct fuzz_dest {
	uint8_t *mem;
	uint64_t size;
	int begins, states;
};

static int f_begin(void *ctx, uint64_t mem_size, const char *json, size_t len, uint8_t **mem, char *err,
		   size_t errlen)
{
	struct fuzz_dest *d = ctx;
	if (d->begins++ || d->states)
		abort(); /* BEGIN once, first */
	if (!len || !mem_size || mem_size % MIG_PAGE)
		abort(); /* the stream checked these */
	(void)json;
	if (mem_size > MAX_PAGES * MIG_PAGE) {
		snprintf(err, errlen, "configured for less");
		return -EINVAL;
	}
	if (!(d->mem = malloc((size_t)mem_size)))
		abort();
	memset(d->mem, 0, (size_t)mem_size);
	d->size = mem_size;
	*mem = d->mem;
	return 0;
}

static int f_state(void *ctx, const uint8_t *image, size_t len, char *err, size_t errlen)
{
	struct fuzz_dest *d = ctx;
	if (!d->begins || d->states++)
		abort(); /* STATE once, after BEGIN */
	if (len < SNAPFILE_HEADER_SIZE)
		abort();
	/* A destination refuses a state file that does not decode. */
	if (image[0] == 'X') {
		snprintf(err, errlen, "bad state");
		return -EINVAL;
	}
	return 0;
}

static const struct mig_dest_ops f_ops = { f_begin, f_state };

/* What the valid PAGES messages put where, to compare after END: the fill
 * byte of each page (0: zero). */
static uint8_t shadow[MAX_PAGES];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	struct snap_writer w;
	sw_init(&w);
	/* The source's memory: the largest first page PAGES picks, plus a run. */
	static uint8_t source[(512 + MIG_RUN) * MIG_PAGE];
	bool shadow_ok = true; /* every message so far was built valid */
	uint64_t begin_pages = 0;
	memset(shadow, 0, sizeof(shadow));
	while (in.n && w.len < (2u << 20)) {
		uint8_t op = fuzz_take(&in);
		switch (op % 8) {
		case 0: { /* raw bytes */
			uint8_t n = fuzz_take(&in);
			for (unsigned i = 0; i < n; i++)
				sw_u8(&w, fuzz_take(&in));
			shadow_ok = false;
			break;
		}
		case 1:
			mig_put_hello(&w);
			break;
		case 2: { /* BEGIN: 1..512 pages (more than this target's guests) */
			begin_pages = (uint64_t)(fuzz_take(&in) | (fuzz_take(&in) & 1) << 8) + 1;
			mig_put_begin(&w, begin_pages * MIG_PAGE, "{}", 2);
			break;
		}
		case 3: { /* PAGES, within the guest or not */
			uint64_t first = fuzz_take(&in) | (fuzz_take(&in) & 1) << 8;
			unsigned count = fuzz_take(&in) % MIG_RUN + 1;
			uint64_t zero = fuzz_take_n(&in, 8);
			uint8_t fill = fuzz_take(&in);
			for (unsigned i = 0; i < count; i++)
				memset(source + (first + i) * MIG_PAGE, (zero >> i) & 1 ? 0 : fill, MIG_PAGE);
			mig_put_pages(&w, source, first, count);
			if (first + count <= begin_pages && first + count <= MAX_PAGES)
				for (unsigned i = 0; i < count; i++)
					shadow[first + i] = (zero >> i) & 1 ? 0 : fill;
			else
				shadow_ok = false;
			break;
		}
		case 4: { /* STATE of 32..287 bytes */
			unsigned n = 32u + fuzz_take(&in);
			uint8_t b = fuzz_take(&in);
			uint8_t img[287];
			memset(img, b, n);
			mig_put_state(&w, img, n);
			break;
		}
		case 5:
			mig_put_end(&w);
			break;
		case 6:
			mig_put_result(&w, fuzz_take(&in), "ok");
			break;
		case 7: /* flip a byte near the end of the stream */
			if (w.len) {
				size_t k = fuzz_take(&in);
				w.buf[w.len - 1 - k % w.len] ^= (uint8_t)(fuzz_take(&in) | 1);
				shadow_ok = false;
			}
			break;
		}
		if (w.oom)
			abort();
	}

	struct fuzz_dest fd = { 0 };
	struct mig_dest d;
	char err[256];
	mig_dest_init(&d, &f_ops, &fd);
	size_t off = 0, chunk = size ? (size_t)data[0] * 61 + 1 : 1;
	int ret = 0;
	while (off < w.len) {
		size_t n = w.len - off < chunk ? w.len - off : chunk;
		err[0] = 0;
		ret = mig_dest_feed(&d, w.buf + off, n, err, sizeof(err));
		off += n;
		if (ret) {
			if (d.stage != MIG_FAILED || !err[0])
				abort(); /* an error names its reason and sticks */
			if (mig_dest_feed(&d, (const uint8_t *)"", 1, err, sizeof(err)) != -EINVAL)
				abort();
			break;
		}
	}
	if (!ret && d.stage == MIG_DONE) {
		if (fd.begins != 1 || fd.states != 1)
			abort();
		if (shadow_ok) {
			for (uint64_t pg = 0; pg < fd.size / MIG_PAGE; pg++) {
				const uint8_t *p = fd.mem + pg * MIG_PAGE;
				if (p[0] != shadow[pg] || p[MIG_PAGE - 1] != shadow[pg])
					abort(); /* a page differs from what was sent */
			}
		}
	}
	if (d.pages_data + d.pages_zero > 0 && !fd.mem)
		abort();
	mig_dest_free(&d);
	free(fd.mem);
	sw_free(&w);
	return 0;
}
