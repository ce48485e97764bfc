#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../vmm/mmds/stack.h"

#define MMDS_IP 0xa9fea9feu  /* 169.254.169.254 */
#define GUEST_IP 0x0a000002u /* 10.0.0.2 */
#define GPORT 40000

static const uint8_t guest_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t mmds_mac[6] = { 0x06, 0x01, 0x23, 0x45, 0x67, 0x01 };

/* ---- the fake answerer ------------------------------------------------ */

static struct {
	int calls;
	size_t body_len;
	ssize_t force; /* returned instead, if not 0 */
	char last[4096];
	size_t last_len;
} ans;

static ssize_t answer(void *ctx, const char *req, size_t len, char *out, size_t cap, uint64_t now)
{
	(void)ctx, (void)now;
	ans.calls++;
	ans.last_len = len < sizeof(ans.last) ? len : sizeof(ans.last);
	memcpy(ans.last, req, ans.last_len);
	if (ans.force)
		return ans.force;
	int h = snprintf(out, cap, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", ans.body_len);
	for (size_t i = 0; i < ans.body_len; i++)
		out[(size_t)h + i] = (char)('a' + i % 26);
	return (ssize_t)((size_t)h + ans.body_len);
}

static struct mmds_stack *st;

static void setup(void)
{
	memset(&ans, 0, sizeof(ans));
	ans.body_len = 5;
	st = mmds_stack_new(MMDS_IP, answer, NULL, NULL, 65536, 42);
	cr_assert_not_null(st);
}

static void teardown(void)
{
	mmds_stack_free(st);
}

TestSuite(mmds_stack, .init = setup, .fini = teardown);

/* ---- frames ------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint16_t csum(uint64_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 2)
		sum += (uint64_t)p[i] << 8 | (i + 1 < len ? p[i + 1] : 0);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint16_t tcp_sum(uint32_t src, uint32_t dst, const uint8_t *t, size_t len)
{
	return csum((src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + len, t, len);
}

struct tcpf {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	const uint8_t *opts;
	size_t optlen;
	const void *data;
	size_t len;
};

static uint8_t frame[70000];

/* A guest's TCP/IPv4 frame to the MMDS address, checksums right. */
static size_t tcp_frame(const struct tcpf *t)
{
	uint8_t *f = frame, *ip = f + 14, *s = ip + 20;
	size_t hl = 20 + t->optlen, tl = hl + t->len;
	memcpy(f, mmds_mac, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0800);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + tl));
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = 6;
	put32(ip + 12, GUEST_IP);
	put32(ip + 16, MMDS_IP);
	put16(ip + 10, csum(0, ip, 20));
	memset(s, 0, 20);
	put16(s, t->sport ? t->sport : GPORT);
	put16(s + 2, t->dport ? t->dport : 80);
	put32(s + 4, t->seq);
	put32(s + 8, t->ack);
	s[12] = (uint8_t)(hl / 4 << 4);
	s[13] = t->flags;
	put16(s + 14, t->win ? t->win : 65535);
	if (t->optlen)
		memcpy(s + 20, t->opts, t->optlen);
	if (t->len)
		memcpy(s + hl, t->data, t->len);
	put16(s + 16, tcp_sum(GUEST_IP, MMDS_IP, s, tl));
	return 14 + 20 + tl;
}

static void feed(size_t len, uint64_t now)
{
	cr_assert(mmds_stack_claims(st, frame, len));
	mmds_stack_receive(st, frame, len, false, now);
}

static void send_tcp(const struct tcpf *t, uint64_t now)
{
	feed(tcp_frame(t), now);
}

struct seg {
	uint32_t dst;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win, mss;
	const uint8_t *data;
	size_t len;
};

/* The next frame for the guest, which must be a TCP segment with right
 * headers and checksums; false if there is none. */
static bool next_seg(struct seg *g, uint64_t now)
{
	const uint8_t *f;
	size_t len = mmds_stack_peek(st, &f, now);
	if (!len)
		return false;
	cr_assert_geq(len, 54);
	cr_assert_arr_eq(f, guest_mac, 6, "to the guest's MAC");
	cr_assert_arr_eq(f + 6, mmds_mac, 6, "from MMDS's MAC");
	cr_assert_eq(get16(f + 12), 0x0800);
	const uint8_t *ip = f + 14, *t = ip + 20;
	cr_assert_eq(ip[0], 0x45);
	cr_assert_eq(get16(ip + 2), len - 14, "IPv4 total length");
	cr_assert_eq(csum(0, ip, 20), 0, "IPv4 checksum");
	cr_assert_eq(ip[9], 6);
	cr_assert_eq(get32(ip + 12), MMDS_IP);
	size_t tl = len - 34, hl = (size_t)(t[12] >> 4) * 4;
	cr_assert_eq(tcp_sum(MMDS_IP, get32(ip + 16), t, tl), 0, "TCP checksum");
	memset(g, 0, sizeof(*g));
	g->dst = get32(ip + 16);
	g->sport = get16(t);
	g->dport = get16(t + 2);
	g->seq = get32(t + 4);
	g->ack = get32(t + 8);
	g->flags = t[13];
	g->win = get16(t + 14);
	if (hl == 24 && t[20] == 2 && t[21] == 4)
		g->mss = get16(t + 22);
	g->data = t + hl;
	g->len = tl - hl;
	mmds_stack_consume(st, true);
	return true;
}

static void no_frame(uint64_t now)
{
	const uint8_t *f;
	cr_assert_eq(mmds_stack_peek(st, &f, now), 0, "no frame due");
}

static const uint8_t mss1000[] = { 2, 4, 0x03, 0xe8 };

/* Handshake from port; returns our ISN. */
static uint32_t connect_port(uint16_t port, uint32_t seq, uint64_t now)
{
	struct seg g;
	send_tcp(&(struct tcpf){ .sport = port, .seq = seq, .flags = 0x02, .opts = mss1000, .optlen = 4 }, now);
	cr_assert(next_seg(&g, now), "SYN-ACK");
	cr_assert_eq(g.flags, 0x12);
	send_tcp(&(struct tcpf){ .sport = port, .seq = seq + 1, .ack = g.seq + 1, .flags = 0x10 }, now);
	return g.seq;
}

static const char req[] = "GET /latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

/* ---- ARP ------------------------------------------------------------------ */

static size_t arp_frame(uint16_t oper, uint32_t tpa)
{
	uint8_t *f = frame, *a = f + 14;
	memset(f, 0xff, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0806);
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, oper);
	memcpy(a + 8, guest_mac, 6);
	put32(a + 14, GUEST_IP);
	memset(a + 18, 0, 6);
	put32(a + 24, tpa);
	return 42;
}

Test(mmds_stack, arp_request_gets_reply_from_mmds_mac)
{
	cr_assert_not(mmds_stack_claims(st, frame, arp_frame(1, 0x0a000001)), "another address's ARP is the tap's");
	size_t len = arp_frame(1, MMDS_IP);
	feed(len, 0);
	const uint8_t *f;
	cr_assert_eq(mmds_stack_peek(st, &f, 0), 42);
	cr_assert_arr_eq(f, guest_mac, 6);
	cr_assert_arr_eq(f + 6, mmds_mac, 6);
	cr_assert_eq(get16(f + 12), 0x0806);
	const uint8_t *a = f + 14;
	cr_assert_eq(get16(a), 1);
	cr_assert_eq(get16(a + 2), 0x0800);
	cr_assert_eq(get16(a + 6), 2, "a reply");
	cr_assert_arr_eq(a + 8, mmds_mac, 6, "MMDS's MAC for the address");
	cr_assert_eq(get32(a + 14), MMDS_IP);
	cr_assert_arr_eq(a + 18, guest_mac, 6);
	cr_assert_eq(get32(a + 24), GUEST_IP);
	mmds_stack_consume(st, true);
	no_frame(0);
	cr_assert_eq(mmds_stack_stats(st)->tx_frames, 1);
	cr_assert_eq(mmds_stack_stats(st)->tx_bytes, 42);

	/* A reply or a bad request is taken off the tap path, not answered. */
	feed(arp_frame(2, MMDS_IP), 0);
	arp_frame(1, MMDS_IP);
	frame[14 + 4] = 8; /* hlen */
	feed(42, 0);
	mmds_stack_receive(st, frame, 41, false, 0);
	no_frame(0);
	cr_assert_eq(mmds_stack_stats(st)->rx_accepted_err, 3);
	cr_assert_eq(mmds_stack_stats(st)->rx_accepted, 4);
}

/* ---- TCP ------------------------------------------------------------------ */

Test(mmds_stack, syn_gets_synack_with_mss_and_window)
{
	send_tcp(&(struct tcpf){ .seq = 1000, .flags = 0x02, .opts = mss1000, .optlen = 4 }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.dst, GUEST_IP);
	cr_assert_eq(g.sport, 80);
	cr_assert_eq(g.dport, GPORT);
	cr_assert_eq(g.flags, 0x12, "SYN-ACK");
	cr_assert_eq(g.ack, 1001);
	cr_assert_eq(g.mss, 1000, "the guest's MSS echoed");
	cr_assert_eq(g.win, MMDS_STACK_RECV_MAX);
	cr_assert_eq(g.len, 0);
	no_frame(0);
	cr_assert_eq(mmds_stack_connections(st), 1);
	cr_assert_eq(mmds_stack_stats(st)->connections_created, 1);

	/* The SYN again (our SYN-ACK lost): the same SYN-ACK again. */
	send_tcp(&(struct tcpf){ .seq = 1000, .flags = 0x02, .opts = mss1000, .optlen = 4 }, 1);
	struct seg h;
	cr_assert(next_seg(&h, 1));
	cr_assert_eq(h.flags, 0x12);
	cr_assert_eq(h.seq, g.seq);
	cr_assert_eq(mmds_stack_connections(st), 1);
}

Test(mmds_stack, syn_without_mss_uses_536)
{
	send_tcp(&(struct tcpf){ .seq = 7, .flags = 0x02 }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.mss, 536);
}

Test(mmds_stack, request_gets_ack_and_response_in_mss_segments)
{
	ans.body_len = 2500;
	uint32_t isn = connect_port(GPORT, 5000, 0);
	no_frame(0);
	send_tcp(&(struct tcpf){ .seq = 5001, .ack = isn + 1, .flags = 0x18, .data = req, .len = strlen(req) }, 1);
	cr_assert_eq(ans.calls, 1);
	cr_assert_eq(ans.last_len, strlen(req));
	cr_assert_arr_eq(ans.last, req, strlen(req));

	char expect[4096];
	int h = snprintf(expect, sizeof(expect), "HTTP/1.1 200 OK\r\nContent-Length: 2500\r\n\r\n");
	size_t total = (size_t)h + 2500, got = 0;
	struct seg g;
	uint32_t next = isn + 1;
	while (next_seg(&g, 1)) {
		cr_assert_eq(g.flags, 0x10);
		cr_assert_eq(g.seq, next, "contiguous sequence numbers");
		cr_assert_eq(g.ack, 5001 + strlen(req), "acknowledges the request");
		cr_assert_leq(g.len, 1000, "within the MSS");
		cr_assert_eq(g.win, MMDS_STACK_RECV_MAX, "the window opened again");
		for (size_t i = 0; i < g.len; i++) {
			size_t k = got + i;
			char want = k < (size_t)h ? expect[k] : (char)('a' + (k - (size_t)h) % 26);
			cr_assert_eq(g.data[i], want);
		}
		got += g.len;
		next += (uint32_t)g.len;
	}
	cr_assert_eq(got, total);
	/* All acknowledged: nothing more to send, nothing to retransmit. */
	send_tcp(&(struct tcpf){ .seq = 5001 + (uint32_t)strlen(req), .ack = next, .flags = 0x10 }, 2);
	no_frame(10000);
	cr_assert_eq(mmds_stack_next_timeout(st, 2), UINT64_MAX);
	cr_assert_eq(mmds_stack_connections(st), 1, "kept alive");
}

Test(mmds_stack, response_respects_the_guest_window)
{
	ans.body_len = 3000;
	send_tcp(&(struct tcpf){ .seq = 1, .flags = 0x02, .opts = mss1000, .optlen = 4, .win = 400 }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	uint32_t isn = g.seq;
	send_tcp(&(struct tcpf){ .seq = 2, .ack = isn + 1, .flags = 0x10, .win = 400 }, 0);
	send_tcp(&(struct tcpf){ .seq = 2, .ack = isn + 1, .flags = 0x18, .win = 400, .data = req, .len = strlen(req) }, 0);
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.len, 400);
	no_frame(0);
	/* The window moves on by 400 bytes */
	send_tcp(&(struct tcpf){ .seq = 2 + (uint32_t)strlen(req), .ack = isn + 401, .flags = 0x10, .win = 400 }, 0);
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.seq, isn + 401);
	cr_assert_eq(g.len, 400);
}

Test(mmds_stack, request_in_pieces_is_answered_once_complete)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	size_t half = 10;
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x10, .data = req, .len = half }, 0);
	cr_assert_eq(ans.calls, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0), "an ACK for the first piece");
	cr_assert_eq(g.ack, 101 + half);
	cr_assert_eq(g.len, 0);
	cr_assert_eq(g.win, MMDS_STACK_RECV_MAX - half);
	send_tcp(&(struct tcpf){ .seq = 101 + (uint32_t)half, .ack = isn + 1, .flags = 0x18, .data = req + half,
				 .len = strlen(req) - half }, 0);
	cr_assert_eq(ans.calls, 1);
	cr_assert_eq(ans.last_len, strlen(req));
}

Test(mmds_stack, out_of_order_data_gets_a_dup_ack_and_is_not_taken)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 150, .ack = isn + 1, .flags = 0x18, .data = req, .len = strlen(req) }, 0);
	cr_assert_eq(ans.calls, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.flags, 0x10);
	cr_assert_eq(g.ack, 101, "where we are");
	cr_assert_eq(mmds_stack_stats(st)->rx_accepted_unusual, 1);
}

Test(mmds_stack, fin_after_response_closes_without_rst)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	uint32_t s = 101 + (uint32_t)strlen(req);
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x18, .data = req, .len = strlen(req) }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	uint32_t end = isn + 1 + (uint32_t)g.len;
	no_frame(0);
	/* The guest acknowledges and closes. */
	send_tcp(&(struct tcpf){ .seq = s, .ack = end, .flags = 0x11 }, 1);
	cr_assert(next_seg(&g, 1));
	cr_assert_eq(g.flags, 0x11, "our ACK and FIN");
	cr_assert_eq(g.seq, end);
	cr_assert_eq(g.ack, s + 1);
	no_frame(1);
	cr_assert_eq(mmds_stack_connections(st), 1, "until our FIN is acknowledged");
	send_tcp(&(struct tcpf){ .seq = s + 1, .ack = end + 1, .flags = 0x10 }, 2);
	cr_assert_eq(mmds_stack_connections(st), 0);
	no_frame(2);
	cr_assert_eq(mmds_stack_stats(st)->connections_destroyed, 1);
}

Test(mmds_stack, fin_before_the_response_is_acked_waits_for_it)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	uint32_t s = 101 + (uint32_t)strlen(req);
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x19, .data = req, .len = strlen(req) }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_gt(g.len, 0, "the answer first");
	cr_assert_eq(g.ack, s + 1, "the FIN acknowledged");
	uint32_t end = isn + 1 + (uint32_t)g.len;
	no_frame(0);
	send_tcp(&(struct tcpf){ .seq = s + 1, .ack = end, .flags = 0x10 }, 1);
	cr_assert(next_seg(&g, 1));
	cr_assert_eq(g.flags, 0x11);
	cr_assert_eq(g.seq, end);
}

Test(mmds_stack, our_fin_is_retransmitted_then_reset)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x11 }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.flags, 0x11);
	uint64_t now = 0;
	for (int i = 1; i < MMDS_STACK_RTO_MAX; i++) {
		cr_assert_eq(mmds_stack_next_timeout(st, now), MMDS_STACK_RTO_MS);
		no_frame(now + MMDS_STACK_RTO_MS - 1);
		now += MMDS_STACK_RTO_MS;
		cr_assert(next_seg(&g, now), "FIN again, %d", i);
		cr_assert_eq(g.flags, 0x11);
		cr_assert_eq(g.seq, isn + 1);
	}
	now += MMDS_STACK_RTO_MS;
	cr_assert(next_seg(&g, now));
	cr_assert_eq(g.flags, 0x04, "given up: RST");
	cr_assert_eq(mmds_stack_connections(st), 0);
}

Test(mmds_stack, unacknowledged_data_is_retransmitted)
{
	ans.body_len = 1500;
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x18, .data = req, .len = strlen(req) }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert(next_seg(&g, 0));
	no_frame(100);
	cr_assert(next_seg(&g, MMDS_STACK_RTO_MS), "timeout");
	cr_assert_eq(g.seq, isn + 1, "from the first unacknowledged byte");
	cr_assert_eq(g.len, 1000);
	/* Progress, then a duplicate ACK: the rest again at once. */
	uint32_t s = 101 + (uint32_t)strlen(req);
	send_tcp(&(struct tcpf){ .seq = s, .ack = isn + 1001, .flags = 0x10 }, MMDS_STACK_RTO_MS);
	no_frame(MMDS_STACK_RTO_MS);
	send_tcp(&(struct tcpf){ .seq = s, .ack = isn + 1001, .flags = 0x10 }, MMDS_STACK_RTO_MS);
	cr_assert(next_seg(&g, MMDS_STACK_RTO_MS));
	cr_assert_eq(g.seq, isn + 1001);
	cr_assert_gt(g.len, 0);
}

Test(mmds_stack, synack_never_acked_ends_in_rst)
{
	send_tcp(&(struct tcpf){ .seq = 9, .flags = 0x02 }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	uint64_t now = 0;
	int synacks = 0;
	while (next_seg(&g, now += MMDS_STACK_RTO_MS) && g.flags == 0x12)
		synacks++;
	cr_assert_eq(synacks, MMDS_STACK_RTO_MAX - 1);
	cr_assert_eq(g.flags, 0x14, "RST|ACK");
	cr_assert_eq(g.ack, 10);
	cr_assert_eq(mmds_stack_connections(st), 0);
}

Test(mmds_stack, rst_from_guest_in_window_ends_the_connection)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 100000, .ack = isn + 1, .flags = 0x04 }, 0);
	cr_assert_eq(mmds_stack_connections(st), 1, "out of window: ignored");
	send_tcp(&(struct tcpf){ .seq = 101, .flags = 0x04 }, 0);
	cr_assert_eq(mmds_stack_connections(st), 0);
	no_frame(0);
}

Test(mmds_stack, segment_of_no_connection_gets_rst)
{
	struct seg g;
	send_tcp(&(struct tcpf){ .seq = 10, .ack = 777, .flags = 0x10 }, 0);
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.flags, 0x04);
	cr_assert_eq(g.seq, 777, "its ACK as our sequence number");
	send_tcp(&(struct tcpf){ .seq = 10, .flags = 0x08, .data = "abc", .len = 3 }, 0);
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.flags, 0x14);
	cr_assert_eq(g.ack, 13);
	send_tcp(&(struct tcpf){ .seq = 10, .flags = 0x04 }, 0);
	no_frame(0); /* never a RST for a RST */
}

Test(mmds_stack, syn_on_established_connection_resets_it)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 500, .flags = 0x02 }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.flags & 0x04, 0x04);
	(void)isn;
	cr_assert_eq(mmds_stack_connections(st), 0);
}

Test(mmds_stack, request_over_the_bound_resets)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	static char junk[MMDS_STACK_RECV_MAX + 1];
	memset(junk, 'x', sizeof(junk));
	uint32_t seq = 101;
	for (size_t off = 0; off < MMDS_STACK_RECV_MAX; off += 500, seq += 500)
		send_tcp(&(struct tcpf){ .seq = seq, .ack = isn + 1, .flags = 0x10, .data = junk, .len = 500 }, 0);
	cr_assert_eq(ans.calls, 0);
	struct seg g;
	bool rst = false;
	while (next_seg(&g, 0))
		rst |= (g.flags & 0x04) != 0;
	cr_assert(rst);
	cr_assert_eq(mmds_stack_connections(st), 0);
	/* More than the window in one segment: not taken at all. */
	isn = connect_port(GPORT + 1, 100, 0);
	uint64_t err = mmds_stack_stats(st)->rx_accepted_err;
	send_tcp(&(struct tcpf){ .sport = GPORT + 1, .seq = 101, .ack = isn + 1, .flags = 0x10, .data = junk,
				 .len = sizeof(junk) }, 0);
	cr_assert_eq(mmds_stack_stats(st)->rx_accepted_err, err + 1);
	no_frame(0);
	cr_assert_eq(mmds_stack_connections(st), 1);
}

Test(mmds_stack, answer_refusing_the_request_resets)
{
	ans.force = -EMSGSIZE;
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x18, .data = req, .len = strlen(req) }, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.flags, 0x04);
	cr_assert_eq(g.seq, isn + 1);
	cr_assert_eq(mmds_stack_connections(st), 0);
}

/* ---- what is dropped ---------------------------------------------------- */

static void assert_dropped(size_t len, const char *why)
{
	uint64_t before = mmds_stack_stats(st)->rx_accepted_err;
	mmds_stack_receive(st, frame, len, false, 0);
	const uint8_t *f;
	cr_assert_eq(mmds_stack_peek(st, &f, 0), 0, "%s: no answer", why);
	cr_assert_eq(mmds_stack_connections(st), 0, "%s: no connection", why);
	cr_assert_eq(mmds_stack_stats(st)->rx_accepted_err, before + 1, "%s: counted", why);
}

static size_t syn(const uint8_t *opts, size_t optlen)
{
	return tcp_frame(&(struct tcpf){ .seq = 1, .flags = 0x02, .opts = opts, .optlen = optlen });
}

Test(mmds_stack, bad_checksums_are_dropped)
{
	size_t len = syn(NULL, 0);
	frame[14 + 20 + 16] ^= 1;
	assert_dropped(len, "TCP checksum");
	/* ... unless the guest left it to the device */
	mmds_stack_receive(st, frame, len, true, 0);
	cr_assert_eq(mmds_stack_connections(st), 1);
	mmds_stack_set_ipv4(st, MMDS_IP + 1);
	mmds_stack_set_ipv4(st, MMDS_IP);
	len = syn(NULL, 0);
	frame[14 + 10] ^= 1;
	assert_dropped(len, "IPv4 checksum");
}

Test(mmds_stack, bad_lengths_are_dropped)
{
	size_t len = syn(mss1000, 4);
	for (size_t n = 0; n < len; n++) {
		syn(mss1000, 4);
		mmds_stack_receive(st, frame, n, false, 0);
		no_frame(0);
		cr_assert_eq(mmds_stack_connections(st), 0, "truncated at %zu", n);
	}
	syn(NULL, 0);
	put16(frame + 14 + 2, 200);
	put16(frame + 14 + 10, 0);
	put16(frame + 14 + 10, csum(0, frame + 14, 20));
	assert_dropped(54, "IPv4 total length beyond the frame");
	syn(NULL, 0);
	frame[14] = 0x44;
	assert_dropped(54, "IHL 4");
	syn(NULL, 0);
	frame[14] = 0x65;
	assert_dropped(54, "IPv6 version in IPv4");
	syn(NULL, 0);
	frame[14 + 20 + 12] = 0x40;
	assert_dropped(54, "data offset 4");
	syn(NULL, 0);
	frame[14 + 20 + 12] = 0x60;
	assert_dropped(54, "data offset past the segment");
	syn(NULL, 0);
	frame[14 + 6] = 0x20; /* MF */
	put16(frame + 14 + 10, 0);
	put16(frame + 14 + 10, csum(0, frame + 14, 20));
	assert_dropped(54, "a fragment");
	len = tcp_frame(&(struct tcpf){ .seq = 1, .flags = 0x02, .dport = 81 });
	assert_dropped(len, "another port");
	/* Ethernet padding after the packet is fine. */
	len = syn(NULL, 0);
	memset(frame + len, 0, 6);
	mmds_stack_receive(st, frame, len + 6, false, 0);
	cr_assert_eq(mmds_stack_connections(st), 1);
}

Test(mmds_stack, bad_options_are_dropped)
{
	static const uint8_t mss_len3[] = { 2, 3, 0x05, 0 };
	static const uint8_t mss_small[] = { 2, 4, 0, 50 };
	static const uint8_t len0[] = { 8, 0, 0, 0 };
	static const uint8_t past_end[] = { 1, 1, 8, 10 };
	static const uint8_t dangling[] = { 1, 1, 1, 3 };
	assert_dropped(syn(mss_len3, 4), "MSS length 3");
	assert_dropped(syn(mss_small, 4), "MSS 50");
	assert_dropped(syn(len0, 4), "option length 0");
	assert_dropped(syn(past_end, 4), "option past the header");
	assert_dropped(syn(dangling, 4), "option kind without a length");
	static const uint8_t fine[] = { 1, 1, 4, 2, 2, 4, 0x05, 0xb4, 0, 0, 0, 0 };
	mmds_stack_receive(st, frame, syn(fine, 12), false, 0);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.mss, 1460);
}

/* ---- bounds ------------------------------------------------------------- */

Test(mmds_stack, full_table_refuses_then_evicts_idle)
{
	for (uint16_t i = 0; i < MMDS_STACK_MAX_CONNS; i++)
		connect_port((uint16_t)(1000 + i), 100, 0);
	cr_assert_eq(mmds_stack_connections(st), MMDS_STACK_MAX_CONNS);
	struct seg g;
	send_tcp(&(struct tcpf){ .sport = 2000, .seq = 55, .flags = 0x02 }, 1);
	cr_assert(next_seg(&g, 1));
	cr_assert_eq(g.flags, 0x14, "refused: RST|ACK");
	cr_assert_eq(g.dport, 2000);
	cr_assert_eq(g.ack, 56);
	cr_assert_eq(mmds_stack_stats(st)->conn_refused, 1);
	/* Long idle: the next SYN takes the place of one, which gets a RST. */
	uint64_t later = MMDS_STACK_EVICT_MS + 1;
	send_tcp(&(struct tcpf){ .sport = 2001, .seq = 55, .flags = 0x02 }, later);
	cr_assert(next_seg(&g, later));
	cr_assert_eq(g.flags, 0x04, "the evicted connection's RST");
	cr_assert(g.dport >= 1000 && g.dport < 1000 + MMDS_STACK_MAX_CONNS);
	cr_assert(next_seg(&g, later));
	cr_assert_eq(g.flags, 0x12);
	cr_assert_eq(g.dport, 2001);
	cr_assert_eq(mmds_stack_connections(st), MMDS_STACK_MAX_CONNS);
	cr_assert_eq(mmds_stack_stats(st)->connections_created, MMDS_STACK_MAX_CONNS + 1);
	cr_assert_eq(mmds_stack_stats(st)->connections_destroyed, 1);
}

Test(mmds_stack, flood_without_reading_is_bounded)
{
	/* A guest that sends and never takes a frame. */
	for (unsigned i = 0; i < 5000; i++) {
		send_tcp(&(struct tcpf){ .sport = (uint16_t)(1 + i), .seq = i, .flags = 0x02 }, 0);
		send_tcp(&(struct tcpf){ .sport = (uint16_t)(20000 + i), .seq = i, .ack = 1, .flags = 0x10 }, 0);
		feed(arp_frame(1, MMDS_IP), 0);
	}
	cr_assert_eq(mmds_stack_connections(st), MMDS_STACK_MAX_CONNS);
	const struct mmds_stack_stats *s = mmds_stack_stats(st);
	cr_assert_eq(s->rst_dropped + MMDS_STACK_MAX_RSTS, 10000 - MMDS_STACK_MAX_CONNS, "every RST queued or counted");
	/* What it gets once it reads: the ARP reply, the RSTs, the SYN-ACKs. */
	unsigned frames = 0;
	const uint8_t *f;
	while (mmds_stack_peek(st, &f, 0)) {
		mmds_stack_consume(st, true);
		frames++;
	}
	cr_assert_eq(frames, 1 + MMDS_STACK_MAX_RSTS + MMDS_STACK_MAX_CONNS);
}

Test(mmds_stack, dropped_frame_is_counted_and_retransmitted)
{
	uint32_t isn = connect_port(GPORT, 100, 0);
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x18, .data = req, .len = strlen(req) }, 0);
	const uint8_t *f;
	cr_assert_gt(mmds_stack_peek(st, &f, 0), 0);
	mmds_stack_consume(st, false);
	cr_assert_eq(mmds_stack_stats(st)->tx_errors, 1);
	no_frame(1);
	struct seg g;
	cr_assert(next_seg(&g, MMDS_STACK_RTO_MS));
	cr_assert_eq(g.seq, isn + 1);
	cr_assert_gt(g.len, 0);
}

Test(mmds_stack, claims_only_the_mmds_address)
{
	syn(NULL, 0);
	cr_assert(mmds_stack_claims(st, frame, 54));
	put32(frame + 14 + 16, 0x0a000001);
	cr_assert_not(mmds_stack_claims(st, frame, 54));
	syn(NULL, 0);
	put16(frame + 12, 0x86dd);
	cr_assert_not(mmds_stack_claims(st, frame, 54));
	cr_assert_not(mmds_stack_claims(st, frame, 10));
}

/* A framing callback: a request is its head, "\r\n\r\n" included. */
static ssize_t head_len(const char *r, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (memcmp(r + i, "\r\n\r\n", 4) == 0)
			return (ssize_t)(i + 4);
	return len >= 100 ? -EMSGSIZE : 0;
}

Test(mmds_stack, framing_callback_delimits_pipelined_requests)
{
	mmds_stack_free(st);
	st = mmds_stack_new(MMDS_IP, answer, head_len, NULL, 65536, 42);
	uint32_t isn = connect_port(GPORT, 100, 0);
	char two[256];
	int n = snprintf(two, sizeof(two), "%s%s", "GET /a HTTP/1.1\r\n\r\n", "GET /b HTTP/1.1\r\n\r\n");
	send_tcp(&(struct tcpf){ .seq = 101, .ack = isn + 1, .flags = 0x18, .data = two, .len = (size_t)n }, 0);
	cr_assert_eq(ans.calls, 1);
	cr_assert_eq(ans.last_len, 19);
	cr_assert_arr_eq(ans.last, "GET /a", 6);
	struct seg g;
	cr_assert(next_seg(&g, 0));
	cr_assert_eq(g.win, MMDS_STACK_RECV_MAX - 19, "the second request still buffered");
	/* The first answer acknowledged: the second is answered. */
	send_tcp(&(struct tcpf){ .seq = 101 + (uint32_t)n, .ack = isn + 1 + (uint32_t)g.len, .flags = 0x10 }, 0);
	cr_assert_eq(ans.calls, 2);
	cr_assert_arr_eq(ans.last, "GET /b", 6);
	/* Over the callback's bound: reset. */
	uint32_t isn2 = connect_port(GPORT + 1, 100, 0);
	static char junk[120];
	memset(junk, 'x', sizeof(junk));
	send_tcp(&(struct tcpf){ .sport = GPORT + 1, .seq = 101, .ack = isn2 + 1, .flags = 0x10, .data = junk,
				 .len = sizeof(junk) }, 0);
	bool rst = false;
	while (next_seg(&g, 0))
		rst |= g.dport == GPORT + 1 && (g.flags & 0x04);
	cr_assert(rst);
}
