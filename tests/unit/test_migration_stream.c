/* The live migration stream (vmm/migration/stream.h): messages written by
 * the source's writers arrive whole at the destination however the bytes
 * are cut, zero pages travel as bits, a later round replaces an earlier
 * one, and every broken rule is refused with its reason. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "../../vmm/migration/address.h"
#include "../../vmm/migration/stream.h"

#define PAGES 200
#define MEM (PAGES * MIG_PAGE)

/* The destination's side in these tests: memory is a buffer of the size
 * BEGIN announces, which must match what the test expects. */
struct dest_ctx {
	uint64_t want_size;
	uint8_t *mem;
	char config[64];
	size_t state_len;
	uint8_t state[64];
	int begin_calls, state_calls;
};

static int t_begin(void *ctx, uint64_t mem_size, const char *json, size_t len, uint8_t **mem, char *err,
		   size_t errlen)
{
	struct dest_ctx *c = ctx;
	c->begin_calls++;
	if (mem_size != c->want_size) {
		snprintf(err, errlen, "configured for %llu bytes", (unsigned long long)c->want_size);
		return -EINVAL;
	}
	cr_assert_lt(len, sizeof(c->config));
	memcpy(c->config, json, len);
	c->config[len] = 0;
	c->mem = calloc(1, (size_t)mem_size);
	cr_assert_not_null(c->mem);
	*mem = c->mem;
	return 0;
}

static int t_state(void *ctx, const uint8_t *image, size_t len, char *err, size_t errlen)
{
	struct dest_ctx *c = ctx;
	(void)err, (void)errlen;
	c->state_calls++;
	cr_assert_leq(len, sizeof(c->state));
	memcpy(c->state, image, len);
	c->state_len = len;
	return 0;
}

static const struct mig_dest_ops t_ops = { t_begin, t_state };

/* A source's memory: page i holds i's pattern, except every third page
 * (and page 0), which is zero. */
static uint8_t *source_memory(void)
{
	uint8_t *m = calloc(1, MEM);
	cr_assert_not_null(m);
	for (unsigned pg = 1; pg < PAGES; pg++)
		if (pg % 3)
			memset(m + pg * MIG_PAGE, (int)(pg & 0xff) | 1, MIG_PAGE);
	return m;
}

/* hello, BEGIN, all of mem in PAGES runs, STATE "state", END */
static void whole_stream(struct snap_writer *w, const uint8_t *mem, unsigned *sent)
{
	mig_put_hello(w);
	mig_put_begin(w, MEM, "{\"cfg\":1}", 9);
	*sent = 0;
	for (unsigned pg = 0; pg < PAGES; pg += MIG_RUN)
		*sent += mig_put_pages(w, mem, pg, PAGES - pg < MIG_RUN ? PAGES - pg : MIG_RUN);
	mig_put_state(w, (const uint8_t *)"EMBERSNP-and-32-bytes-of-header.", 32);
	mig_put_end(w);
	cr_assert(!w->oom);
}

static int feed_in_chunks(struct mig_dest *d, const uint8_t *p, size_t n, size_t chunk, char *err,
			  size_t errlen)
{
	for (size_t off = 0; off < n; off += chunk) {
		int ret = mig_dest_feed(d, p + off, n - off < chunk ? n - off : chunk, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

Test(migration_stream, crc32c_check_value)
{
	/* The CRC-32C catalogue check value, and the same in two parts. */
	cr_assert_eq(mig_crc32c(0, "123456789", 9), 0xe3069283u);
	cr_assert_eq(mig_crc32c(mig_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
	uint8_t big[1000];
	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	cr_assert_eq(mig_crc32c(0, big, sizeof(big)), mig_crc32c(mig_crc32c(0, big, 333), big + 333, 667));
}

Test(migration_stream, whole_stream_arrives_in_any_chunks)
{
	uint8_t *src = source_memory();
	struct snap_writer w;
	sw_init(&w);
	unsigned sent;
	whole_stream(&w, src, &sent);
	cr_assert_eq(sent, 133, "pages with data: %u", sent); /* pages 1..199 but the 66 multiples of 3 */
	/* Zero pages cost no data: far smaller than the memory. */
	cr_assert_lt(w.len, 134u * MIG_PAGE);
	static const size_t chunks[] = { 1, 7, 16, 4096, 4097, 1 << 20 };
	for (unsigned i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct dest_ctx c = { .want_size = MEM };
		struct mig_dest d;
		char err[256] = "";
		mig_dest_init(&d, &t_ops, &c);
		cr_assert_eq(feed_in_chunks(&d, w.buf, w.len, chunks[i], err, sizeof(err)), 0, "chunk %zu: %s",
			     chunks[i], err);
		cr_assert_eq(d.stage, MIG_DONE);
		cr_assert_eq(c.begin_calls, 1);
		cr_assert_eq(c.state_calls, 1);
		cr_assert_str_eq(c.config, "{\"cfg\":1}");
		cr_assert_eq(c.state_len, 32);
		cr_assert_eq(memcmp(c.state, "EMBERSNP", 8), 0);
		cr_assert_eq(memcmp(c.mem, src, MEM), 0, "chunk %zu: memory differs", chunks[i]);
		cr_assert_eq(d.pages_data, sent);
		cr_assert_eq(d.pages_zero, PAGES - sent);
		cr_assert_eq(d.bytes, w.len);
		mig_dest_free(&d);
		free(c.mem);
	}
	sw_free(&w);
	free(src);
}

Test(migration_stream, later_round_replaces_and_zeroes_pages)
{
	uint8_t *src = source_memory();
	struct snap_writer w;
	sw_init(&w);
	mig_put_hello(&w);
	mig_put_begin(&w, MEM, "{}", 2);
	mig_put_pages(&w, src, 0, MIG_RUN);
	/* The source's guest wrote page 1 (now zero) and page 3 (was zero)
	 * between rounds. */
	memset(src + 1 * MIG_PAGE, 0, MIG_PAGE);
	memset(src + 3 * MIG_PAGE, 0x5a, MIG_PAGE);
	mig_put_pages(&w, src, 1, 3);
	mig_put_state(&w, (const uint8_t *)"EMBERSNP-and-32-bytes-of-header.", 32);
	mig_put_end(&w);

	struct dest_ctx c = { .want_size = MEM };
	struct mig_dest d;
	char err[256] = "";
	mig_dest_init(&d, &t_ops, &c);
	cr_assert_eq(mig_dest_feed(&d, w.buf, w.len, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(c.mem, src, MIG_RUN * MIG_PAGE), 0);
	cr_assert_eq(c.mem[1 * MIG_PAGE + 100], 0);
	cr_assert_eq(c.mem[3 * MIG_PAGE + 100], 0x5a);
	mig_dest_free(&d);
	free(c.mem);
	sw_free(&w);
	free(src);
}

/* Feed hello + the messages built by build(); expect the given error and
 * a reason containing want. */
static void expect_refused(void (*build)(struct snap_writer *), int want_ret, const char *want)
{
	struct snap_writer w;
	sw_init(&w);
	build(&w);
	struct dest_ctx c = { .want_size = MEM };
	struct mig_dest d;
	char err[256] = "";
	mig_dest_init(&d, &t_ops, &c);
	int ret = mig_dest_feed(&d, w.buf, w.len, err, sizeof(err));
	cr_assert_eq(ret, want_ret, "ret %d (%s)", ret, err);
	cr_assert(strstr(err, want), "reason '%s' lacks '%s'", err, want);
	cr_assert_eq(d.stage, MIG_FAILED);
	/* and stays failed */
	cr_assert_eq(mig_dest_feed(&d, (const uint8_t *)"x", 1, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "already failed"));
	mig_dest_free(&d);
	free(c.mem);
	sw_free(&w);
}

static const uint8_t zero_page[MIG_PAGE];

static void begin(struct snap_writer *w)
{
	mig_put_hello(w);
	mig_put_begin(w, MEM, "{}", 2);
}

/* A message with any fields, its CRCs right. */
static void raw_message(struct snap_writer *w, uint32_t type, const void *payload, uint32_t len)
{
	size_t at = w->len;
	sw_u32(w, type);
	sw_u32(w, len);
	sw_u32(w, mig_crc32c(0, payload, len));
	sw_u32(w, mig_crc32c(0, w->buf + at, 12));
	sw_bytes(w, payload, len);
}

static void raw_pages(struct snap_writer *w, uint64_t first, uint32_t count, uint32_t zero, uint64_t mask,
		      unsigned data)
{
	struct snap_writer p;
	sw_init(&p);
	sw_u64(&p, first);
	sw_u32(&p, count);
	sw_u32(&p, zero);
	sw_u64(&p, mask);
	for (unsigned i = 0; i < data; i++)
		sw_bytes(&p, zero_page, MIG_PAGE);
	raw_message(w, MIG_PAGES, p.buf, (uint32_t)p.len);
	sw_free(&p);
}

static void bad_magic(struct snap_writer *w)
{
	sw_bytes(w, "EMBERSNP", 8);
	sw_u32(w, MIG_VERSION);
	sw_u32(w, MIG_HELLO_SIZE);
}
static void bad_version(struct snap_writer *w)
{
	sw_bytes(w, MIG_MAGIC, 8);
	sw_u32(w, MIG_VERSION + 1);
	sw_u32(w, MIG_HELLO_SIZE);
}
static void bad_header_crc(struct snap_writer *w)
{
	begin(w);
	w->buf[MIG_HELLO_SIZE + 1] ^= 1; /* BEGIN's type */
}
static void bad_payload_crc(struct snap_writer *w)
{
	begin(w);
	w->buf[w->len - 1] ^= 0x40; /* BEGIN's config */
}
static void unknown_type(struct snap_writer *w)
{
	mig_put_hello(w);
	raw_message(w, 99, "", 0);
}
static void begin_too_long(struct snap_writer *w)
{
	mig_put_hello(w);
	/* the header alone, claiming more than a BEGIN may carry */
	size_t at = w->len;
	sw_u32(w, MIG_BEGIN);
	sw_u32(w, 16 + MIG_MAX_CONFIG + 1);
	sw_u32(w, 0);
	sw_u32(w, mig_crc32c(0, w->buf + at, 12));
}
static void end_with_payload(struct snap_writer *w)
{
	begin(w);
	raw_message(w, MIG_END, "x", 1);
}
static void pages_before_begin(struct snap_writer *w)
{
	mig_put_hello(w);
	mig_put_pages(w, zero_page, 0, 1);
}
static void second_begin(struct snap_writer *w)
{
	begin(w);
	mig_put_begin(w, MEM, "{}", 2);
}
static void wrong_size(struct snap_writer *w)
{
	mig_put_hello(w);
	mig_put_begin(w, MEM + MIG_PAGE, "{}", 2);
}
static void unaligned_size(struct snap_writer *w)
{
	mig_put_hello(w);
	mig_put_begin(w, MEM + 1, "{}", 2);
}
static void pages_past_memory(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, PAGES - 1, 2, 0, 3, 0);
}
static void pages_huge_first(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, UINT64_MAX, 1, 0, 1, 0);
}
static void pages_count_zero(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, 0, 0, 0, 0, 0);
}
static void pages_count_too_big(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, 0, MIG_RUN + 1, 0, ~0ULL, 0);
}
static void pages_mask_past_count(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, 0, 2, 0, 0x7, 0);
}
static void pages_short_data(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, 0, 2, 0, 0x1, 0); /* one page with data, none sent */
}
static void pages_reserved_field(struct snap_writer *w)
{
	begin(w);
	raw_pages(w, 0, 1, 5, 1, 0);
}
static void end_before_state(struct snap_writer *w)
{
	begin(w);
	mig_put_end(w);
}
static void pages_after_state(struct snap_writer *w)
{
	begin(w);
	mig_put_state(w, (const uint8_t *)"EMBERSNP-and-32-bytes-of-header.", 32);
	mig_put_pages(w, zero_page, 0, 1);
}
static void bytes_after_end(struct snap_writer *w)
{
	begin(w);
	mig_put_state(w, (const uint8_t *)"EMBERSNP-and-32-bytes-of-header.", 32);
	mig_put_end(w);
	sw_u8(w, 0);
}
static void result_to_destination(struct snap_writer *w)
{
	begin(w);
	mig_put_result(w, 0, "ok");
}

Test(migration_stream, broken_rules_are_refused_with_reasons)
{
	expect_refused(bad_magic, -EINVAL, "not an ember migration stream");
	expect_refused(bad_version, -EINVAL, "version 2; this ember speaks version 1");
	expect_refused(bad_header_crc, -EINVAL, "header fails its CRC");
	expect_refused(bad_payload_crc, -EINVAL, "BEGIN message fails its CRC");
	expect_refused(unknown_type, -EINVAL, "unknown migration message type 99");
	expect_refused(begin_too_long, -EINVAL, "BEGIN message of 1048593 bytes");
	expect_refused(end_with_payload, -EINVAL, "END message of 1 bytes");
	expect_refused(pages_before_begin, -EINVAL, "PAGES message before BEGIN");
	expect_refused(second_begin, -EINVAL, "BEGIN message after BEGIN");
	expect_refused(wrong_size, -EINVAL, "configured for");
	expect_refused(unaligned_size, -EINVAL, "non-zero multiple of 4096");
	expect_refused(pages_past_memory, -EINVAL, "pages 199 to 200 of a guest with 200");
	expect_refused(pages_huge_first, -EINVAL, "of a guest with 200");
	expect_refused(pages_count_zero, -EINVAL, "must cover 1 to 64");
	expect_refused(pages_count_too_big, -EINVAL, "must cover 1 to 64");
	expect_refused(pages_mask_past_count, -EINVAL, "names pages past its 2");
	expect_refused(pages_short_data, -EINVAL, "for 1 pages with data");
	expect_refused(pages_reserved_field, -EINVAL, "field 5");
	expect_refused(end_before_state, -EINVAL, "END message after BEGIN");
	expect_refused(pages_after_state, -EINVAL, "PAGES message after STATE");
	expect_refused(bytes_after_end, -EINVAL, "1 bytes after the migration's END");
	expect_refused(result_to_destination, -EINVAL, "RESULT message sent to the destination");
}

Test(migration_stream, result_round_trip)
{
	struct snap_writer w;
	sw_init(&w);
	mig_put_hello(&w);
	mig_put_result(&w, -ENOSPC, "no room\nfor it");
	struct mig_framer f;
	mig_framer_init(&f);
	struct mig_msg *m = NULL;
	char err[128], reason[64];
	size_t off = 0;
	while (!m && off < w.len) {
		long t = mig_framer_feed(&f, w.buf + off, w.len - off, &m, err, sizeof(err));
		cr_assert_geq(t, 0, "%s", err);
		off += (size_t)t;
	}
	cr_assert_not_null(m);
	cr_assert_eq(off, w.len);
	int result = 0;
	cr_assert_eq(mig_parse_result(m, &result, reason, sizeof(reason), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(result, ENOSPC);
	cr_assert_str_eq(reason, "no room?for it");
	mig_framer_free(&f);
	sw_free(&w);
}

Test(migration_address, unix_and_tcp)
{
	struct mig_address a;
	char err[256];
	cr_assert_eq(mig_address_parse("unix:/tmp/m.sock", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.family, AF_UNIX);
	cr_assert_str_eq(((struct sockaddr_un *)&a.sa)->sun_path, "/tmp/m.sock");
	cr_assert_eq(mig_address_parse("tcp:10.0.0.2:7000", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&a.sa)->sin_port), 7000);
	cr_assert_eq(ntohl(((struct sockaddr_in *)&a.sa)->sin_addr.s_addr), 0x0a000002u);
	cr_assert_eq(mig_address_parse("tcp:[::1]:65535", &a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(a.family, AF_INET6);
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&a.sa)->sin6_port), 65535);

	static const char *const bad[] = {
		"", "unix:", "udp:1.2.3.4:5", "tcp:1.2.3.4", "tcp:1.2.3.4:", "tcp:1.2.3.4:0", "tcp:1.2.3.4:65536",
		"tcp:1.2.3.4:12x", "tcp:host.example:80", "tcp:::1:80", "tcp:[::1]80", "tcp:[1.2.3.4]:80",
		"tcp:[::1:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		cr_assert_eq(mig_address_parse(bad[i], &a, err, sizeof(err)), -EINVAL, "%s accepted", bad[i]);
		cr_assert(err[0], "no reason for %s", bad[i]);
	}
	char longpath[200] = "unix:";
	memset(longpath + 5, 'a', 150);
	cr_assert_eq(mig_address_parse(longpath, &a, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "1 to 107 bytes"), "%s", err);
}
