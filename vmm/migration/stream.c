/* The live migration stream (stream.h): message writers, the framer that
 * cuts a byte stream into checked messages, and the destination's state
 * machine that puts them into the VM it builds. */
#include "stream.h"
#include "../memory.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC-32C ------------------------------------------------------------ */

/* The SSE4.2 crc32 instruction computes CRC-32C 8 bytes at a time; every
 * x86-64 host KVM runs on since 2008 has it. The table is the fallback. */
#include <nmmintrin.h>

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
	}
	crc = (uint32_t)c;
	for (; len; len--)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}

uint32_t mig_crc32c(uint32_t crc, const void *buf, size_t len)
{
	static int have_sse42 = -1;
	const uint8_t *p = buf;
	if (have_sse42 < 0)
		have_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	crc = ~crc;
	if (have_sse42) {
		crc = crc_sse42(crc, p, len);
	} else {
		if (!crc_table[1])
			crc_table_init();
		while (len--)
			crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	}
	return ~crc;
}

/* ---- writing ------------------------------------------------------------ */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A message's header, its length and CRCs filled by msg_close. Returns
 * where it starts. */
static size_t msg_open(struct snap_writer *w, uint32_t type)
{
	size_t at = w->len;
	sw_u32(w, type);
	sw_u32(w, 0);
	sw_u32(w, 0);
	sw_u32(w, 0);
	return at;
}

static void msg_close(struct snap_writer *w, size_t at)
{
	if (w->oom)
		return;
	uint8_t *h = w->buf + at;
	size_t len = w->len - at - MIG_HEADER_SIZE;
	put_le32(h + 4, (uint32_t)len);
	put_le32(h + 8, mig_crc32c(0, h + MIG_HEADER_SIZE, len));
	put_le32(h + 12, mig_crc32c(0, h, 12));
}

void mig_put_hello(struct snap_writer *w)
{
	sw_bytes(w, MIG_MAGIC, 8);
	sw_u32(w, MIG_VERSION);
	sw_u32(w, MIG_HELLO_SIZE);
}

void mig_put_begin(struct snap_writer *w, uint64_t mem_size, const char *config_json, size_t len)
{
	size_t at = msg_open(w, MIG_BEGIN);
	sw_u64(w, mem_size);
	sw_u32(w, MIG_PAGE);
	sw_u32(w, 0);
	sw_bytes(w, config_json, len);
	msg_close(w, at);
}

unsigned mig_put_pages(struct snap_writer *w, const uint8_t *mem, uint64_t first, unsigned count)
{
	size_t at = msg_open(w, MIG_PAGES);
	sw_u64(w, first);
	sw_u32(w, count);
	sw_u32(w, 0);
	size_t mask_at = w->len;
	sw_u64(w, 0);
	uint64_t mask = 0;
	unsigned sent = 0;
	for (unsigned i = 0; i < count; i++) {
		const uint8_t *pg = mem + (first + i) * MIG_PAGE;
		if (mem_page_is_zero(pg)) {
			mask |= 1ULL << i;
		} else {
			sw_bytes(w, pg, MIG_PAGE);
			sent++;
		}
	}
	if (!w->oom)
		for (unsigned i = 0; i < 8; i++)
			w->buf[mask_at + i] = (uint8_t)(mask >> (8 * i));
	msg_close(w, at);
	return sent;
}

void mig_put_state(struct snap_writer *w, const uint8_t *image, size_t len)
{
	size_t at = msg_open(w, MIG_STATE);
	sw_bytes(w, image, len);
	msg_close(w, at);
}

void mig_put_end(struct snap_writer *w)
{
	msg_close(w, msg_open(w, MIG_END));
}

void mig_put_result(struct snap_writer *w, int err, const char *reason)
{
	size_t at = msg_open(w, MIG_RESULT);
	size_t n = strlen(reason);
	sw_u32(w, (uint32_t)(err < 0 ? -err : err));
	sw_bytes(w, reason, n < MIG_MAX_RESULT ? n : MIG_MAX_RESULT);
	msg_close(w, at);
}

/* ---- framing ------------------------------------------------------------ */

static const char *type_name(uint32_t type)
{
	switch (type) {
	case MIG_BEGIN: return "BEGIN";
	case MIG_PAGES: return "PAGES";
	case MIG_STATE: return "STATE";
	case MIG_END: return "END";
	case MIG_RESULT: return "RESULT";
	}
	return NULL;
}

/* The payload lengths a type allows. */
static void type_lengths(uint32_t type, uint32_t *min, uint32_t *max)
{
	switch (type) {
	case MIG_BEGIN: *min = 17; *max = 16 + MIG_MAX_CONFIG; break;
	case MIG_PAGES: *min = MIG_PAGES_FIXED; *max = MIG_PAGES_FIXED + MIG_RUN * MIG_PAGE; break;
	case MIG_STATE: *min = SNAPFILE_HEADER_SIZE; *max = SNAPFILE_MAX_SIZE; break;
	case MIG_RESULT: *min = 4; *max = 4 + MIG_MAX_RESULT; break;
	default: *min = 0; *max = 0; break; /* END */
	}
}

void mig_framer_init(struct mig_framer *f)
{
	memset(f, 0, sizeof(*f));
}

void mig_framer_free(struct mig_framer *f)
{
	free(f->buf);
	mig_framer_init(f);
}

/* Copy up to want - *have bytes from p into dst + *have. */
static size_t fill(uint8_t *dst, size_t *have, size_t want, const uint8_t *p, size_t n)
{
	size_t take = want - *have < n ? want - *have : n;
	memcpy(dst + *have, p, take);
	*have += take;
	return take;
}

static int check_hello(const uint8_t *h, char *err, size_t errlen)
{
	if (memcmp(h, MIG_MAGIC, 8)) {
		snprintf(err, errlen, "not an ember migration stream (no EMBERMIG hello)");
		return -EINVAL;
	}
	uint32_t version = get_le32(h + 8), size = get_le32(h + 12);
	if (version != MIG_VERSION) {
		snprintf(err, errlen, "migration protocol version %u; this ember speaks version %u", version,
			 MIG_VERSION);
		return -EINVAL;
	}
	if (size != MIG_HELLO_SIZE) {
		snprintf(err, errlen, "migration hello of %u bytes, expected %u", size, MIG_HELLO_SIZE);
		return -EINVAL;
	}
	return 0;
}

static int check_header(struct mig_framer *f, char *err, size_t errlen)
{
	const uint8_t *h = f->head;
	if (get_le32(h + 12) != mig_crc32c(0, h, 12)) {
		snprintf(err, errlen, "migration message header fails its CRC: the stream is corrupted");
		return -EINVAL;
	}
	uint32_t type = get_le32(h), len = get_le32(h + 4), min, max;
	if (!type_name(type)) {
		snprintf(err, errlen, "unknown migration message type %u", type);
		return -EINVAL;
	}
	type_lengths(type, &min, &max);
	if (len < min || len > max) {
		snprintf(err, errlen, "migration %s message of %u bytes: it must have %u to %u", type_name(type), len,
			 min, max);
		return -EINVAL;
	}
	if (len > f->cap) {
		uint8_t *b = realloc(f->buf, len);
		if (!b) {
			snprintf(err, errlen, "out of memory for a migration %s message of %u bytes", type_name(type),
				 len);
			return -ENOMEM;
		}
		f->buf = b;
		f->cap = len;
	}
	f->msg.type = type;
	f->msg.len = len;
	f->msg.payload = f->buf;
	return 0;
}

long mig_framer_feed(struct mig_framer *f, const uint8_t *p, size_t n, struct mig_msg **msg, char *err,
		     size_t errlen)
{
	size_t taken = 0;
	int ret;
	*msg = NULL;
	if (!f->hello_done) {
		taken += fill(f->head, &f->have, MIG_HELLO_SIZE, p, n);
		if (f->have < MIG_HELLO_SIZE)
			return (long)taken;
		if ((ret = check_hello(f->head, err, errlen)))
			return ret;
		f->hello_done = true;
		f->have = 0;
	}
	if (!f->in_payload) {
		taken += fill(f->head, &f->have, MIG_HEADER_SIZE, p + taken, n - taken);
		if (f->have < MIG_HEADER_SIZE)
			return (long)taken;
		if ((ret = check_header(f, err, errlen)))
			return ret;
		f->in_payload = true;
		f->have = 0;
	}
	if (f->msg.len)
		taken += fill(f->buf, &f->have, f->msg.len, p + taken, n - taken);
	if (f->have < f->msg.len)
		return (long)taken;
	if (get_le32(f->head + 8) != mig_crc32c(0, f->buf, f->msg.len)) {
		snprintf(err, errlen, "migration %s message fails its CRC: the stream is corrupted",
			 type_name(f->msg.type));
		return -EINVAL;
	}
	f->in_payload = false;
	f->have = 0;
	*msg = &f->msg;
	return (long)taken;
}

/* ---- the destination ------------------------------------------------- */

void mig_dest_init(struct mig_dest *d, const struct mig_dest_ops *ops, void *ctx)
{
	memset(d, 0, sizeof(*d));
	mig_framer_init(&d->framer);
	d->ops = ops;
	d->ctx = ctx;
	d->stage = MIG_WANT_BEGIN;
}

void mig_dest_free(struct mig_dest *d)
{
	mig_framer_free(&d->framer);
	free(d->written);
	d->written = NULL;
}

/* Why a message cannot come at this stage. */
static int out_of_order(const struct mig_dest *d, uint32_t type, char *err, size_t errlen)
{
	static const char *const after[] = {
		[MIG_WANT_BEGIN] = "before BEGIN",
		[MIG_WANT_PAGES] = "after BEGIN",
		[MIG_WANT_END] = "after STATE",
	};
	snprintf(err, errlen, "migration %s message %s", type_name(type), after[d->stage]);
	return -EINVAL;
}

static int dest_begin(struct mig_dest *d, const struct mig_msg *m, char *err, size_t errlen)
{
	struct snap_reader r;
	sr_init(&r, m->payload, m->len);
	uint64_t mem_size = sr_u64(&r);
	uint32_t page = sr_u32(&r), zero = sr_u32(&r);
	if (page != MIG_PAGE || zero) {
		snprintf(err, errlen, "migration BEGIN with %u-byte pages (and field %u): expected %u and 0", page,
			 zero, MIG_PAGE);
		return -EINVAL;
	}
	if (!mem_size || mem_size % MIG_PAGE || mem_size > MIG_MAX_MEM) {
		snprintf(err, errlen, "migration BEGIN with %llu bytes of guest memory: it must be a non-zero "
			 "multiple of %u, at most %llu", (unsigned long long)mem_size, MIG_PAGE,
			 (unsigned long long)MIG_MAX_MEM);
		return -EINVAL;
	}
	/* The VM first: it checks the size against the configuration. */
	uint8_t *mem = NULL;
	int ret = d->ops->begin(d->ctx, mem_size, (const char *)m->payload + 16, m->len - 16, &mem, err, errlen);
	if (ret)
		return ret;
	if (!mem) {
		snprintf(err, errlen, "the destination has no guest memory for the migration");
		return -EINVAL;
	}
	uint64_t pages = mem_size / MIG_PAGE;
	if (!(d->written = calloc((size_t)((pages + 63) / 64), sizeof(uint64_t)))) {
		snprintf(err, errlen, "out of memory for the page map of %llu pages", (unsigned long long)pages);
		return -ENOMEM;
	}
	d->mem_size = mem_size;
	d->mem = mem;
	d->stage = MIG_WANT_PAGES;
	return 0;
}

static int dest_pages(struct mig_dest *d, const struct mig_msg *m, char *err, size_t errlen)
{
	struct snap_reader r;
	sr_init(&r, m->payload, m->len);
	uint64_t first = sr_u64(&r);
	uint32_t count = sr_u32(&r), zero = sr_u32(&r);
	uint64_t mask = sr_u64(&r), pages = d->mem_size / MIG_PAGE;
	if (!count || count > MIG_RUN || zero) {
		snprintf(err, errlen, "migration PAGES message for %u pages (and field %u): it must cover 1 to %u, "
			 "and the field be 0", count, zero, MIG_RUN);
		return -EINVAL;
	}
	if (first >= pages || count > pages - first) {
		snprintf(err, errlen, "migration PAGES message for pages %llu to %llu of a guest with %llu",
			 (unsigned long long)first, (unsigned long long)(first + count - 1),
			 (unsigned long long)pages);
		return -EINVAL;
	}
	uint64_t valid = count == 64 ? ~0ULL : (1ULL << count) - 1;
	if (mask & ~valid) {
		snprintf(err, errlen, "migration PAGES message's zero mask %#llx names pages past its %u",
			 (unsigned long long)mask, count);
		return -EINVAL;
	}
	unsigned data = count - (unsigned)__builtin_popcountll(mask);
	if (m->len != MIG_PAGES_FIXED + (uint64_t)data * MIG_PAGE) {
		snprintf(err, errlen, "migration PAGES message of %u bytes for %u pages with data: expected %llu",
			 m->len, data, (unsigned long long)(MIG_PAGES_FIXED + (uint64_t)data * MIG_PAGE));
		return -EINVAL;
	}
	const uint8_t *src = m->payload + MIG_PAGES_FIXED;
	for (unsigned i = 0; i < count; i++) {
		uint64_t pg = first + i, bit = 1ULL << (pg % 64);
		uint8_t *dst = d->mem + pg * MIG_PAGE;
		if (mask & (1ULL << i)) {
			/* Never written: still the zero page it started as, so
			 * leave it untouched (and unallocated). */
			if (d->written[pg / 64] & bit)
				memset(dst, 0, MIG_PAGE);
			d->written[pg / 64] &= ~bit;
			d->pages_zero++;
		} else {
			memcpy(dst, src, MIG_PAGE);
			src += MIG_PAGE;
			d->written[pg / 64] |= bit;
			d->pages_data++;
		}
	}
	return 0;
}

static int dest_message(struct mig_dest *d, const struct mig_msg *m, char *err, size_t errlen)
{
	switch (m->type) {
	case MIG_BEGIN:
		if (d->stage != MIG_WANT_BEGIN)
			return out_of_order(d, m->type, err, errlen);
		return dest_begin(d, m, err, errlen);
	case MIG_PAGES:
		if (d->stage != MIG_WANT_PAGES)
			return out_of_order(d, m->type, err, errlen);
		return dest_pages(d, m, err, errlen);
	case MIG_STATE: {
		if (d->stage != MIG_WANT_PAGES)
			return out_of_order(d, m->type, err, errlen);
		int ret = d->ops->state(d->ctx, m->payload, m->len, err, errlen);
		if (!ret)
			d->stage = MIG_WANT_END;
		return ret;
	}
	case MIG_END:
		if (d->stage != MIG_WANT_END)
			return out_of_order(d, m->type, err, errlen);
		d->stage = MIG_DONE;
		return 0;
	default:
		snprintf(err, errlen, "migration %s message sent to the destination", type_name(m->type));
		return -EINVAL;
	}
}

/* Take bytes from *p up to the end of one message, and act on it. */
static int dest_feed_one(struct mig_dest *d, const uint8_t **p, size_t *n, char *err, size_t errlen)
{
	if (d->stage == MIG_DONE) {
		snprintf(err, errlen, "%zu bytes after the migration's END", *n);
		return -EINVAL;
	}
	struct mig_msg *m;
	long t = mig_framer_feed(&d->framer, *p, *n, &m, err, errlen);
	if (t < 0)
		return (int)t;
	*p += t;
	*n -= (size_t)t;
	d->bytes += (uint64_t)t;
	return m ? dest_message(d, m, err, errlen) : 0;
}

int mig_dest_feed(struct mig_dest *d, const uint8_t *p, size_t n, char *err, size_t errlen)
{
	if (d->stage == MIG_FAILED) {
		snprintf(err, errlen, "the migration stream already failed");
		return -EINVAL;
	}
	while (n) {
		int ret = dest_feed_one(d, &p, &n, err, errlen);
		if (ret) {
			d->stage = MIG_FAILED;
			return ret;
		}
	}
	return 0;
}

int mig_parse_result(const struct mig_msg *m, int *result, char *reason, size_t reasonlen, char *err,
		     size_t errlen)
{
	if (m->type != MIG_RESULT) {
		snprintf(err, errlen, "migration %s message where the destination's RESULT was due",
			 type_name(m->type) ? type_name(m->type) : "unknown");
		return -EINVAL;
	}
	uint32_t e = get_le32(m->payload);
	if (e > 4095) {
		snprintf(err, errlen, "migration RESULT with error %u, not an errno", e);
		return -EINVAL;
	}
	*result = (int)e;
	size_t n = m->len - 4, i;
	if (!reasonlen)
		return 0;
	if (n > reasonlen - 1)
		n = reasonlen - 1;
	for (i = 0; i < n; i++) {
		uint8_t c = m->payload[4 + i];
		reason[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	reason[i] = 0;
	return 0;
}
