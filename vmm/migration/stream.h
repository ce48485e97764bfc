/* The live migration stream: what a source ember sends to a destination
 * ember over one connection, and the destination's answer.
 *
 *   hello (16 bytes, little-endian): magic "EMBERMIG", u32 protocol
 *   version, u32 hello size (16); then messages, each
 *   header (16 bytes, little-endian): u32 type, u32 payload length,
 *   u32 CRC-32C of the payload, u32 CRC-32C of the 12 bytes before it;
 *   then the payload.
 *
 * Source to destination, in this order:
 *   BEGIN  once: u64 guest memory size, u32 page size (4096), u32 0, then
 *          the VM's configuration as the snapshot state file's JSON
 *   PAGES  any number, while the source runs and once more after it paused:
 *          u64 first page, u32 count (1..64), u32 0, u64 zero mask (bit i:
 *          page first+i is all zeros and its data is not sent), then the
 *          4096 bytes of every other page, in order. A later message for a
 *          page replaces what an earlier one sent.
 *   STATE  once, after the last PAGES: a snapshot state file image
 *          (snapshot/snapfile.h) of the paused source
 *   END    once, empty: the destination has everything and may resume
 * Destination to source, once: RESULT, u32 0 (resumed) or a positive
 * errno, then the reason as text.
 *
 * Every length is bounded by its type before a byte of the payload is
 * kept, and every field is checked; a stream that breaks a rule is refused
 * with the reason, never read past. The stream holds no host pointers. */
#ifndef EMBER_MIGRATION_STREAM_H
#define EMBER_MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../snapshot/snapfile.h"

#define MIG_MAGIC "EMBERMIG"
#define MIG_VERSION 1
#define MIG_HELLO_SIZE 16
#define MIG_HEADER_SIZE 16
#define MIG_PAGE 4096u
#define MIG_RUN 64u           /* pages one PAGES message covers at most */
#define MIG_PAGES_FIXED 24u   /* the PAGES fields before the page data */
/* The largest guest memory a stream may announce: 1 TiB. */
#define MIG_MAX_MEM (1ULL << 40)
#define MIG_MAX_CONFIG (1u << 20)
#define MIG_MAX_RESULT 4096u

enum mig_type {
	MIG_BEGIN = 1,
	MIG_PAGES = 2,
	MIG_STATE = 3,
	MIG_END = 4,
	MIG_RESULT = 5,
};

/* CRC-32C (Castagnoli) of buf, continuing from crc (0 to start). */
uint32_t mig_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- writing: each call appends one whole message to w ---------------- */

void mig_put_hello(struct snap_writer *w);
void mig_put_begin(struct snap_writer *w, uint64_t mem_size, const char *config_json, size_t len);
/* The pages [first, first + count) of mem (guest memory, mem + first *
 * MIG_PAGE onwards), count 1..MIG_RUN, zero pages elided. Returns how many
 * pages went with their data. */
unsigned mig_put_pages(struct snap_writer *w, const uint8_t *mem, uint64_t first, unsigned count);
void mig_put_state(struct snap_writer *w, const uint8_t *image, size_t len);
void mig_put_end(struct snap_writer *w);
void mig_put_result(struct snap_writer *w, int err, const char *reason);

/* ---- reading: whole messages out of a byte stream ----------------------- */

struct mig_msg {
	uint32_t type;
	uint32_t len;
	const uint8_t *payload;  /* len bytes, valid until the next feed */
};

struct mig_framer {
	bool hello_done;
	uint8_t head[MIG_HEADER_SIZE];  /* the hello, then each header */
	size_t have;                    /* bytes of head, then of payload */
	bool in_payload;
	struct mig_msg msg;
	uint8_t *buf;                   /* the payload, malloc'd to cap */
	size_t cap;
};

void mig_framer_init(struct mig_framer *f);
void mig_framer_free(struct mig_framer *f);
/* Take bytes from p (n of them) until one message is whole: returns how
 * many were taken, and sets *msg (valid until the next call) when one is.
 * Returns -EINVAL with the reason in err for a bad hello, an unknown type,
 * a length its type does not allow or a CRC mismatch, -ENOMEM if its
 * payload cannot be held. */
long mig_framer_feed(struct mig_framer *f, const uint8_t *p, size_t n, struct mig_msg **msg, char *err,
		     size_t errlen);

/* ---- the destination's side -------------------------------------------- */

struct mig_dest_ops {
	/* BEGIN: build the VM for this memory size and configuration (JSON
	 * of len bytes, not terminated), and return its guest memory (size
	 * bytes) in *mem, which PAGES then write. */
	int (*begin)(void *ctx, uint64_t mem_size, const char *config_json, size_t len, uint8_t **mem,
		     char *err, size_t errlen);
	/* STATE: the snapshot state file image of the paused source. */
	int (*state)(void *ctx, const uint8_t *image, size_t len, char *err, size_t errlen);
};

enum mig_stage { MIG_WANT_BEGIN, MIG_WANT_PAGES, MIG_WANT_END, MIG_DONE, MIG_FAILED };

struct mig_dest {
	struct mig_framer framer;
	const struct mig_dest_ops *ops;
	void *ctx;
	enum mig_stage stage;
	uint64_t mem_size;
	uint8_t *mem;
	uint64_t *written;       /* a bit per page a PAGES message wrote data to */
	uint64_t pages_data;     /* pages received with their data */
	uint64_t pages_zero;     /* pages received as zero */
	uint64_t bytes;          /* the whole stream so far */
};

void mig_dest_init(struct mig_dest *d, const struct mig_dest_ops *ops, void *ctx);
void mig_dest_free(struct mig_dest *d);
/* Take n bytes of the stream. Returns 0 (all of them taken; after END,
 * d->stage is MIG_DONE), or -errno with the reason in err: a broken rule of
 * the stream (-EINVAL) or a callback's error. After an error d->stage is
 * MIG_FAILED and every later feed fails. */
int mig_dest_feed(struct mig_dest *d, const uint8_t *p, size_t n, char *err, size_t errlen);

/* The source's side: the RESULT message's error (0: the destination
 * resumed) and reason. Returns 0, or -EINVAL with the reason in err. */
int mig_parse_result(const struct mig_msg *m, int *result, char *reason, size_t reasonlen, char *err,
		     size_t errlen);

#endif
