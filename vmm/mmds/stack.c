#include "stack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ETH_HLEN 14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ARP_LEN 28
#define IP_HLEN 20
#define TCP_HLEN 20
#define PROTO_TCP 6
#define IP_TTL 1 /* the frame never leaves the VM */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define TCP_FLAGS 0x3f /* without ECE/CWR: an ECN-setup SYN is a SYN */

#define MSS_DEFAULT 536
#define MSS_MIN 100
#define MSS_MAX (65535 - IP_HLEN - TCP_HLEN)
/* The sequence space TCP may have in flight (the largest scaled window):
 * a or b "after" the other only within it. */
#define MAX_WINDOW 1073725440u

static const uint8_t mmds_mac[6] = { 0x06, 0x01, 0x23, 0x45, 0x67, 0x01 };

/* Connection state bits (a flag set, not a single state: FIN and RST
 * states combine with the handshake's). */
enum {
	C_SYN_RECEIVED = 1,
	C_SYNACK_SENT = 2,
	C_ESTABLISHED = 4,
	C_FIN_SENT = 8,
	C_FIN_ACKED = 16,
	C_RESET = 32,
};

struct rst {
	uint32_t seq, ack;
	uint8_t flags;
};

struct rst_entry {
	uint32_t raddr;
	uint16_t rport;
	struct rst r;
};

struct conn {
	bool used;
	uint32_t raddr;
	uint16_t rport;
	uint8_t state;
	uint16_t mss;                 /* the guest's, echoed in the SYN-ACK */
	uint32_t ack_to_send;         /* next sequence number expected */
	uint32_t highest_ack;         /* highest ACK received */
	uint32_t first_not_sent;
	uint32_t local_edge;          /* right edge of our receive window */
	uint32_t remote_edge;         /* right edge of the guest's */
	uint64_t rto_start;
	unsigned rto_count;
	bool fin_received;
	uint32_t fin_rx_seq;
	bool send_fin;                /* our FIN is due at fin_seq */
	uint32_t fin_seq;
	bool send_rst;
	struct rst rst;
	bool pending_ack, dup_ack;
	bool stop_receiving;          /* resetting: incoming segments are ignored */
	uint64_t last_rx;
	uint8_t *resp;                /* the answer being sent, from sequence resp_seq */
	uint32_t resp_len, resp_seq;
	uint32_t recv_len;
	uint8_t recv[MMDS_STACK_RECV_MAX];
};

struct seg {
	uint32_t saddr;
	uint16_t sport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	const uint8_t *opts, *payload;
	uint32_t optlen, plen;
};

struct out {
	uint32_t seq, ack;
	uint8_t flags;
	bool mss_opt;
	const uint8_t *payload;
	uint32_t plen;
};

struct mmds_stack {
	uint32_t ip;
	uint8_t remote_mac[6];
	bool arp_pending;
	uint32_t arp_dest;
	mmds_answer_fn fn;
	mmds_request_len_fn len_fn;
	void *ctx;
	size_t resp_cap;
	char *resp_buf;
	uint64_t rng;
	unsigned next_conn;
	unsigned rst_head, nrsts;
	struct rst_entry rsts[MMDS_STACK_MAX_RSTS];
	size_t out_len;               /* a made frame waits in out */
	struct mmds_stack_stats st;
	struct conn conns[MMDS_STACK_MAX_CONNS];
	uint8_t out[MMDS_STACK_FRAME_MAX];
	uint8_t scratch[MMDS_STACK_FRAME_MAX];
};

/* ---- bytes ---------------------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

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

static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t len)
{
	size_t i;
	for (i = 0; i + 1 < len; i += 2)
		sum += get16(p + i);
	if (i < len)
		sum += (uint64_t)p[i] << 8;
	return sum;
}

static uint16_t csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The TCP checksum over the pseudo-header and the segment; a received
 * segment is intact when this is 0. */
static uint16_t tcp_csum(uint32_t src, uint32_t dst, const uint8_t *seg, size_t len)
{
	uint64_t sum = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + PROTO_TCP + len;
	return csum_fold(csum_add(sum, seg, len));
}

/* TCP sequence comparisons, valid within MAX_WINDOW of each other. */
static bool seq_after(uint32_t a, uint32_t b)
{
	return a != b && a - b < MAX_WINDOW;
}

static bool seq_at_or_after(uint32_t a, uint32_t b)
{
	return a - b < MAX_WINDOW;
}

static uint32_t next_isn(struct mmds_stack *s)
{
	/* xorshift64: unpredictable enough for a link no one else is on */
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return (uint32_t)(s->rng >> 32);
}

/* ---- one connection ---------------------------------------------------- */

/* A RST answering segment s: with its ACK as our sequence number, or
 * acknowledging what it occupied. */
static struct rst rst_for(const struct seg *s)
{
	if (s->flags & TCP_ACK)
		return (struct rst){ .seq = s->ack, .ack = 0, .flags = TCP_RST };
	uint32_t len = s->plen + !!(s->flags & TCP_SYN) + !!(s->flags & TCP_FIN);
	return (struct rst){ .seq = 0, .ack = s->seq + len, .flags = TCP_RST | TCP_ACK };
}

static struct rst conn_rst(const struct conn *c)
{
	if (c->state & C_ESTABLISHED)
		return (struct rst){ .seq = c->first_not_sent, .ack = 0, .flags = TCP_RST };
	return (struct rst){ .seq = 0, .ack = c->ack_to_send, .flags = TCP_RST | TCP_ACK };
}

static void conn_reset(struct conn *c)
{
	if (!c->send_rst) {
		c->send_rst = true;
		c->rst = conn_rst(c);
	}
}

static void conn_reset_for(struct conn *c, const struct seg *s)
{
	if (!c->send_rst) {
		c->send_rst = true;
		c->rst = rst_for(s);
	}
}

static bool conn_done(const struct conn *c)
{
	return (c->state & C_RESET) ||
	       (c->fin_received && (c->state & C_FIN_SENT) && (c->state & C_FIN_ACKED));
}

static bool conn_rto_expired(const struct conn *c, uint64_t now)
{
	return now - c->rto_start >= MMDS_STACK_RTO_MS;
}

static uint16_t conn_window(const struct conn *c)
{
	uint32_t w = c->local_edge - c->ack_to_send;
	return w > 65535 ? 65535 : (uint16_t)w;
}

/* The guest's MSS option (536 without one). Only whole, well-formed
 * options are read; -EINVAL for a malformed list or an MSS out of range. */
static int parse_mss(const uint8_t *o, uint32_t len, uint16_t *mss)
{
	*mss = MSS_DEFAULT;
	uint32_t i = 0;
	while (i < len) {
		uint8_t kind = o[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= len)
			return -EINVAL;
		uint8_t olen = o[i + 1];
		if (olen < 2 || olen > len - i)
			return -EINVAL;
		if (kind == 2) {
			if (olen != 4)
				return -EINVAL;
			uint16_t v = get16(o + i + 2);
			if (v < MSS_MIN || v > MSS_MAX)
				return -EINVAL;
			*mss = v;
			return 0;
		}
		i += olen;
	}
	return 0;
}

static bool valid_syn(const struct seg *s)
{
	return (s->flags & TCP_FLAGS) == TCP_SYN && s->plen == 0;
}

static bool same_syn(const struct conn *c, const struct seg *s)
{
	uint16_t mss;
	return valid_syn(s) && c->ack_to_send == s->seq + 1 &&
	       parse_mss(s->opts, s->optlen, &mss) == 0 && mss == c->mss;
}

enum { R_UNUSUAL = 1, R_RESETTING = 2, R_ERR = 4 };

/* TCP's part of receiving s: the handshake, ACKs, in-order data into
 * c->recv, the guest's FIN. Returns R_* flags. */
static int conn_tcp_receive(struct conn *c, const struct seg *s, uint64_t now)
{
	if (c->send_rst || (c->state & C_RESET))
		return R_ERR;
	if (s->flags & TCP_RST) {
		/* Only a RST with an in-window sequence number counts. */
		if (seq_at_or_after(s->seq, c->ack_to_send) && seq_after(c->local_edge, s->seq))
			c->state |= C_RESET;
		return R_UNUSUAL;
	}
	if (!(c->state & C_SYNACK_SENT)) {
		/* Before our SYN-ACK went out only the SYN again makes sense. */
		if (same_syn(c, s))
			return 0;
		conn_reset_for(c, s);
		return R_UNUSUAL | R_RESETTING;
	}
	if (!(c->state & C_ESTABLISHED)) {
		if (same_syn(c, s)) {
			c->state &= (uint8_t)~C_SYNACK_SENT; /* our SYN-ACK was lost: again */
			return 0;
		}
		if (s->flags & TCP_SYN) {
			conn_reset_for(c, s);
			return R_UNUSUAL | R_RESETTING;
		}
	} else if (s->flags & TCP_SYN) {
		conn_reset_for(c, s);
		return R_UNUSUAL | R_RESETTING;
	}

	int r = 0;
	if (s->flags & TCP_ACK) {
		if (seq_at_or_after(s->ack, c->highest_ack) && seq_at_or_after(c->first_not_sent, s->ack)) {
			c->rto_count = 0;
			if (s->ack == c->highest_ack && s->ack != c->first_not_sent) {
				if (!(c->state & C_ESTABLISHED)) {
					conn_reset_for(c, s);
					return R_UNUSUAL | R_RESETTING;
				}
				c->dup_ack = true; /* retransmit from highest_ack at once */
				r |= R_UNUSUAL;
			} else {
				c->highest_ack = s->ack;
				c->rto_start = now;
				c->state |= C_ESTABLISHED;
				if ((c->state & C_FIN_SENT) && s->ack == c->first_not_sent)
					c->state |= C_FIN_ACKED;
			}
			uint32_t edge = s->ack + s->win;
			if (seq_after(edge, c->remote_edge))
				c->remote_edge = edge;
			else if (edge != c->remote_edge)
				r |= R_UNUSUAL; /* the guest's window shrank */
		} else {
			r |= R_UNUSUAL;
			if (!(c->state & C_ESTABLISHED)) {
				conn_reset_for(c, s);
				return r | R_RESETTING;
			}
		}
	}
	if (!(c->state & C_ESTABLISHED))
		return r;
	if (s->plen > MMDS_STACK_RECV_MAX - c->recv_len)
		return R_ERR;

	bool ack = false;
	if (s->plen) {
		uint32_t end = s->seq + s->plen;
		if (c->fin_received && !seq_at_or_after(c->fin_rx_seq, end))
			return r | R_UNUSUAL; /* data after the guest's FIN */
		if (!seq_at_or_after(c->local_edge, end))
			return r | R_UNUSUAL; /* beyond our window */
		if (s->seq != c->ack_to_send) {
			/* Only the next expected bytes are taken; say where we are. */
			c->pending_ack = true;
			return r | R_UNUSUAL;
		}
		c->ack_to_send = end;
		ack = true;
	}
	if ((s->flags & TCP_FIN) && !c->fin_received) {
		uint32_t fin = s->seq + s->plen;
		if (fin == c->ack_to_send) {
			c->fin_received = true;
			c->fin_rx_seq = fin;
			c->ack_to_send++;
			ack = true;
		} else {
			r |= R_UNUSUAL;
		}
	}
	if (ack) {
		c->pending_ack = true;
		memcpy(c->recv + c->recv_len, s->payload, s->plen);
		c->recv_len += s->plen;
	}
	return r;
}

static void conn_open_window(struct conn *c, uint32_t n)
{
	if (c->local_edge == c->ack_to_send)
		c->pending_ack = true; /* tell the guest the window opened */
	c->local_edge += n;
}

/* The end of the first request head in buf (after its blank line), or 0. */
static size_t request_end(const uint8_t *b, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (b[i] != '\n')
			continue;
		if (b[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* A complete request in c->recv gets its answer, which the connection
 * then sends; a buffer full without one is over the bound: reset. */
static void conn_answer(struct mmds_stack *s, struct conn *c, uint64_t now)
{
	if (c->send_fin || c->resp)
		return;
	size_t used = 0;
	ssize_t n = 0;
	if (s->len_fn) {
		n = s->len_fn((const char *)c->recv, c->recv_len);
		if (n > 0) {
			used = (size_t)n;
			n = used <= c->recv_len ? s->fn(s->ctx, (const char *)c->recv, used, s->resp_buf, s->resp_cap, now)
						: -EINVAL;
		}
	} else if ((used = request_end(c->recv, c->recv_len))) {
		n = s->fn(s->ctx, (const char *)c->recv, used, s->resp_buf, s->resp_cap, now);
		if (n == 0 && c->recv_len > used) {
			/* A head that announces a body: answer with what came so far. */
			used = c->recv_len;
			n = s->fn(s->ctx, (const char *)c->recv, used, s->resp_buf, s->resp_cap, now);
		}
	}
	if (n < 0 || (size_t)n > s->resp_cap) {
		conn_reset(c);
		return;
	}
	if (n == 0) {
		if (c->recv_len == MMDS_STACK_RECV_MAX)
			conn_reset(c);
		return;
	}
	c->resp = malloc((size_t)n);
	if (!c->resp) {
		s->st.tx_errors++;
		conn_reset(c);
		return;
	}
	memcpy(c->resp, s->resp_buf, (size_t)n);
	c->resp_len = (uint32_t)n;
	c->resp_seq = c->first_not_sent;
	memmove(c->recv, c->recv + used, c->recv_len - used);
	c->recv_len -= (uint32_t)used;
	conn_open_window(c, (uint32_t)used);
}

static void conn_receive(struct mmds_stack *s, struct conn *c, const struct seg *g, uint64_t now)
{
	if (c->stop_receiving)
		return;
	c->last_rx = now;
	int r = conn_tcp_receive(c, g, now);
	if (r & R_ERR) {
		s->st.rx_accepted_err++;
		return;
	}
	if (r)
		s->st.rx_accepted_unusual++;
	if (r & R_RESETTING) {
		c->stop_receiving = true;
		return;
	}
	if (c->state & C_RESET)
		return;
	if (c->resp && c->highest_ack == c->resp_seq + c->resp_len) {
		free(c->resp); /* all of it acknowledged */
		c->resp = NULL;
		c->resp_len = 0;
	}
	if (!c->resp) {
		conn_answer(s, c, now);
		if (c->send_rst) {
			c->stop_receiving = true;
			return;
		}
	}
	/* The guest closed and has its answers: close our half. */
	if (c->fin_received && !c->resp && !c->send_fin) {
		c->send_fin = true;
		c->fin_seq = c->first_not_sent;
	}
}

/* A segment with no payload: the RST, the SYN-ACK, or an ACK (with our FIN
 * while it is unacknowledged). */
static void conn_control(struct conn *c, struct out *o)
{
	memset(o, 0, sizeof(*o));
	if (c->send_rst) {
		o->seq = c->rst.seq;
		o->ack = c->rst.ack;
		o->flags = c->rst.flags;
		return;
	}
	o->ack = c->ack_to_send;
	c->pending_ack = false;
	if (!(c->state & C_ESTABLISHED)) {
		o->seq = c->first_not_sent - 1; /* the ISN */
		o->flags = TCP_SYN | TCP_ACK;
		o->mss_opt = true;
		return;
	}
	o->seq = c->first_not_sent;
	o->flags = TCP_ACK;
	if (c->send_fin && !(c->state & C_FIN_ACKED) && seq_at_or_after(c->highest_ack, c->fin_seq)) {
		o->flags |= TCP_FIN;
		o->seq = c->fin_seq;
	}
}

/* The connection's next segment, if one is due: 1 with *o filled, else 0. */
static int conn_write(struct conn *c, struct out *o, uint64_t now)
{
	if (c->state & C_RESET)
		return 0;
	if (c->send_rst) {
		conn_control(c, o);
		c->state |= C_RESET;
		return 1;
	}
	if (!(c->state & C_SYNACK_SENT)) {
		conn_control(c, o);
		c->state |= C_SYNACK_SENT;
		c->rto_start = now;
		return 1;
	}
	if (!(c->state & C_ESTABLISHED)) {
		if (!conn_rto_expired(c, now))
			return 0;
		if (++c->rto_count >= MMDS_STACK_RTO_MAX) {
			conn_reset(c);
			return conn_write(c, o, now);
		}
		conn_control(c, o); /* the SYN-ACK again */
		c->rto_start = now;
		return 1;
	}

	uint32_t seq = c->first_not_sent;
	bool rto = false;
	if (c->highest_ack != c->first_not_sent && conn_rto_expired(c, now)) {
		if (++c->rto_count >= MMDS_STACK_RTO_MAX) {
			conn_reset(c);
			return conn_write(c, o, now);
		}
		c->rto_start = now;
		if (c->send_fin && c->highest_ack == c->fin_seq) {
			conn_control(c, o); /* our FIN was lost */
			return 1;
		}
		rto = true;
		seq = c->highest_ack;
	} else if (c->dup_ack) {
		seq = c->highest_ack;
	}
	c->dup_ack = false;

	if (c->resp && seq_at_or_after(seq, c->resp_seq)) {
		uint32_t end = c->resp_seq + c->resp_len;
		uint32_t stop = seq_at_or_after(c->remote_edge, end) ? end : c->remote_edge;
		if (seq_after(stop, seq) && seq_at_or_after(end, stop)) {
			uint32_t n = stop - seq;
			if (n > c->mss)
				n = c->mss;
			memset(o, 0, sizeof(*o));
			o->seq = seq;
			o->ack = c->ack_to_send;
			o->flags = TCP_ACK;
			o->payload = c->resp + (seq - c->resp_seq);
			o->plen = n;
			c->pending_ack = false;
			if (rto || c->first_not_sent == c->highest_ack)
				c->rto_start = now; /* the first unacknowledged byte went out */
			if (seq_after(seq + n, c->first_not_sent))
				c->first_not_sent = seq + n;
			return 1;
		}
	}
	bool first_fin = c->send_fin && !(c->state & C_FIN_SENT) && c->fin_seq == c->highest_ack;
	if (c->pending_ack || first_fin) {
		conn_control(c, o);
		if (first_fin) {
			c->first_not_sent++;
			c->state |= C_FIN_SENT;
			c->rto_start = now;
		}
		return 1;
	}
	return 0;
}

/* ---- the stack -------------------------------------------------------- */

static void conn_free(struct mmds_stack *s, struct conn *c)
{
	free(c->resp);
	c->resp = NULL;
	c->used = false;
	s->st.connections_destroyed++;
}

static struct conn *conn_find(struct mmds_stack *s, uint32_t raddr, uint16_t rport)
{
	for (unsigned i = 0; i < MMDS_STACK_MAX_CONNS; i++) {
		struct conn *c = &s->conns[i];
		if (c->used && c->raddr == raddr && c->rport == rport)
			return c;
	}
	return NULL;
}

static void queue_rst(struct mmds_stack *s, uint32_t raddr, uint16_t rport, struct rst r)
{
	if (s->nrsts == MMDS_STACK_MAX_RSTS) {
		s->st.rst_dropped++;
		return;
	}
	unsigned i = (s->rst_head + s->nrsts++) % MMDS_STACK_MAX_RSTS;
	s->rsts[i] = (struct rst_entry){ .raddr = raddr, .rport = rport, .r = r };
}

static void conn_open(struct mmds_stack *s, const struct seg *g, uint64_t now)
{
	uint16_t mss;
	if (!valid_syn(g) || parse_mss(g->opts, g->optlen, &mss) < 0) {
		s->st.rx_accepted_err++;
		return;
	}
	struct conn *c = NULL;
	for (unsigned i = 0; i < MMDS_STACK_MAX_CONNS && !c; i++)
		if (!s->conns[i].used)
			c = &s->conns[i];
	if (!c) {
		/* Full: the first connection idle for long enough makes room. */
		for (unsigned i = 0; i < MMDS_STACK_MAX_CONNS && !c; i++)
			if (now - s->conns[i].last_rx > MMDS_STACK_EVICT_MS)
				c = &s->conns[i];
		if (!c) {
			s->st.conn_refused++;
			queue_rst(s, g->saddr, g->sport, rst_for(g));
			return;
		}
		queue_rst(s, c->raddr, c->rport, conn_rst(c));
		conn_free(s, c);
	}
	uint32_t isn = next_isn(s);
	memset(c, 0, offsetof(struct conn, recv));
	c->used = true;
	c->raddr = g->saddr;
	c->rport = g->sport;
	c->state = C_SYN_RECEIVED;
	c->mss = mss;
	c->ack_to_send = g->seq + 1;
	c->highest_ack = isn;
	c->first_not_sent = isn + 1;
	c->local_edge = c->ack_to_send + MMDS_STACK_RECV_MAX;
	c->remote_edge = c->first_not_sent + g->win;
	c->last_rx = now;
	s->st.connections_created++;
}

static void tcp_receive(struct mmds_stack *s, const struct seg *g, uint64_t now)
{
	struct conn *c = conn_find(s, g->saddr, g->sport);
	if (c) {
		conn_receive(s, c, g, now);
		if (conn_done(c))
			conn_free(s, c);
	} else if ((g->flags & TCP_FLAGS) == TCP_SYN) {
		conn_open(s, g, now);
	} else if (!(g->flags & TCP_RST)) {
		queue_rst(s, g->saddr, g->sport, rst_for(g)); /* no such connection */
	}
}

static void arp_receive(struct mmds_stack *s, const uint8_t *a, size_t len)
{
	/* An Ethernet/IPv4 request (padding after it allowed) */
	if (len < ARP_LEN || get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 ||
	    get16(a + 6) != 1 || get32(a + 24) != s->ip) {
		s->st.rx_accepted_err++;
		return;
	}
	memcpy(s->remote_mac, a + 8, 6);
	s->arp_pending = true;
	s->arp_dest = get32(a + 14);
}

void mmds_stack_receive(struct mmds_stack *s, const uint8_t *f, size_t len, bool csum_partial,
			uint64_t now_ms)
{
	s->st.rx_accepted++;
	if (len < ETH_HLEN) {
		s->st.rx_bad_eth++;
		return;
	}
	const uint8_t *p = f + ETH_HLEN;
	size_t n = len - ETH_HLEN;
	uint16_t type = get16(f + 12);
	if (type == ETHERTYPE_ARP) {
		arp_receive(s, p, n);
		return;
	}
	if (type != ETHERTYPE_IPV4 || n < IP_HLEN) {
		s->st.rx_accepted_err++;
		return;
	}
	size_t ihl = (size_t)(p[0] & 0xf) * 4, tot = get16(p + 2);
	/* Trailing bytes beyond the IPv4 total length (padding) are ignored;
	 * fragments are not reassembled. */
	if (p[0] >> 4 != 4 || ihl < IP_HLEN || tot < ihl || tot > n || csum_fold(csum_add(0, p, ihl)) != 0 ||
	    (get16(p + 6) & 0x3fff) || get32(p + 16) != s->ip) {
		s->st.rx_accepted_err++;
		return;
	}
	if (p[9] != PROTO_TCP) {
		s->st.rx_accepted_unusual++;
		return;
	}
	const uint8_t *t = p + ihl;
	size_t tl = tot - ihl;
	size_t doff = tl >= TCP_HLEN ? (size_t)(t[12] >> 4) * 4 : 0;
	uint32_t saddr = get32(p + 12);
	if (tl < TCP_HLEN || doff < TCP_HLEN || doff > tl ||
	    (!csum_partial && tcp_csum(saddr, s->ip, t, tl) != 0) || get16(t + 2) != MMDS_STACK_PORT) {
		s->st.rx_accepted_err++;
		return;
	}
	memcpy(s->remote_mac, f + 6, 6);
	struct seg g = {
		.saddr = saddr,
		.sport = get16(t),
		.seq = get32(t + 4),
		.ack = get32(t + 8),
		.flags = t[13],
		.win = get16(t + 14),
		.opts = t + TCP_HLEN,
		.optlen = (uint32_t)(doff - TCP_HLEN),
		.payload = t + doff,
		.plen = (uint32_t)(tl - doff),
	};
	s->st.rx_count++;
	tcp_receive(s, &g, now_ms);
}

bool mmds_stack_claims(const struct mmds_stack *s, const uint8_t *f, size_t len)
{
	if (len < ETH_HLEN)
		return false;
	uint16_t type = get16(f + 12);
	if (type == ETHERTYPE_ARP)
		return len >= ETH_HLEN + ARP_LEN && get32(f + ETH_HLEN + 24) == s->ip;
	if (type == ETHERTYPE_IPV4)
		return len >= ETH_HLEN + IP_HLEN && get32(f + ETH_HLEN + 16) == s->ip;
	return false;
}

static void write_eth(const struct mmds_stack *s, uint8_t *f, uint16_t type)
{
	memcpy(f, s->remote_mac, 6);
	memcpy(f + 6, mmds_mac, 6);
	put16(f + 12, type);
}

static size_t write_arp_reply(struct mmds_stack *s)
{
	uint8_t *f = s->out, *a = f + ETH_HLEN;
	write_eth(s, f, ETHERTYPE_ARP);
	put16(a, 1);
	put16(a + 2, ETHERTYPE_IPV4);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, 2);
	memcpy(a + 8, mmds_mac, 6);
	put32(a + 14, s->ip);
	memcpy(a + 18, s->remote_mac, 6);
	put32(a + 24, s->arp_dest);
	return ETH_HLEN + ARP_LEN;
}

static size_t write_tcp(struct mmds_stack *s, uint32_t raddr, uint16_t rport, const struct out *o,
			uint16_t win, uint16_t mss)
{
	uint8_t *f = s->out, *ip = f + ETH_HLEN, *t = ip + IP_HLEN;
	size_t hl = TCP_HLEN + (o->mss_opt ? 4 : 0), tl = hl + o->plen;
	write_eth(s, f, ETHERTYPE_IPV4);
	memset(ip, 0, IP_HLEN);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(IP_HLEN + tl));
	ip[8] = IP_TTL;
	ip[9] = PROTO_TCP;
	put32(ip + 12, s->ip);
	put32(ip + 16, raddr);
	put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
	memset(t, 0, hl);
	put16(t, MMDS_STACK_PORT);
	put16(t + 2, rport);
	put32(t + 4, o->seq);
	put32(t + 8, o->ack);
	t[12] = (uint8_t)(hl / 4 << 4);
	t[13] = o->flags;
	put16(t + 14, win);
	if (o->mss_opt) {
		t[20] = 2;
		t[21] = 4;
		put16(t + 22, mss);
	}
	if (o->plen)
		memcpy(t + hl, o->payload, o->plen);
	put16(t + 16, tcp_csum(s->ip, raddr, t, tl));
	return ETH_HLEN + IP_HLEN + tl;
}

/* Make the next frame into s->out: the ARP reply, a queued RST, then the
 * connections in turn. */
static size_t make_frame(struct mmds_stack *s, uint64_t now)
{
	if (s->arp_pending) {
		s->arp_pending = false;
		return write_arp_reply(s);
	}
	if (s->nrsts) {
		struct rst_entry *e = &s->rsts[s->rst_head];
		s->rst_head = (s->rst_head + 1) % MMDS_STACK_MAX_RSTS;
		s->nrsts--;
		struct out o = { .seq = e->r.seq, .ack = e->r.ack, .flags = e->r.flags };
		return write_tcp(s, e->raddr, e->rport, &o, 0, 0);
	}
	for (unsigned k = 0; k < MMDS_STACK_MAX_CONNS; k++) {
		unsigned i = (s->next_conn + k) % MMDS_STACK_MAX_CONNS;
		struct conn *c = &s->conns[i];
		struct out o;
		if (!c->used || !conn_write(c, &o, now))
			continue;
		size_t len = write_tcp(s, c->raddr, c->rport, &o, conn_window(c), c->mss);
		s->next_conn = i + 1;
		if (conn_done(c))
			conn_free(s, c);
		return len;
	}
	return 0;
}

size_t mmds_stack_peek(struct mmds_stack *s, const uint8_t **frame, uint64_t now_ms)
{
	if (!s->out_len) {
		s->out_len = make_frame(s, now_ms);
		if (s->out_len)
			s->st.tx_count++;
	}
	*frame = s->out;
	return s->out_len;
}

void mmds_stack_consume(struct mmds_stack *s, bool delivered)
{
	if (!s->out_len)
		return;
	if (delivered) {
		s->st.tx_frames++;
		s->st.tx_bytes += s->out_len;
	} else {
		s->st.tx_errors++;
	}
	s->out_len = 0;
}

uint64_t mmds_stack_next_timeout(const struct mmds_stack *s, uint64_t now_ms)
{
	uint64_t best = UINT64_MAX;
	for (unsigned i = 0; i < MMDS_STACK_MAX_CONNS; i++) {
		const struct conn *c = &s->conns[i];
		if (!c->used || (c->state & C_RESET) || c->highest_ack == c->first_not_sent)
			continue;
		uint64_t due = c->rto_start + MMDS_STACK_RTO_MS;
		uint64_t wait = due > now_ms ? due - now_ms : 0;
		if (wait < best)
			best = wait;
	}
	return best;
}

static void stack_clear(struct mmds_stack *s)
{
	for (unsigned i = 0; i < MMDS_STACK_MAX_CONNS; i++)
		if (s->conns[i].used)
			conn_free(s, &s->conns[i]);
	s->nrsts = 0;
	s->arp_pending = false;
	s->out_len = 0;
}

struct mmds_stack *mmds_stack_new(uint32_t ipv4, mmds_answer_fn fn, mmds_request_len_fn len_fn, void *ctx,
				  size_t resp_cap, uint64_t seed)
{
	struct mmds_stack *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->resp_buf = malloc(resp_cap);
	if (!s->resp_buf) {
		free(s);
		return NULL;
	}
	s->ip = ipv4;
	s->fn = fn;
	s->len_fn = len_fn;
	s->ctx = ctx;
	s->resp_cap = resp_cap;
	s->rng = seed | 1; /* xorshift needs a non-zero state */
	return s;
}

void mmds_stack_free(struct mmds_stack *s)
{
	if (!s)
		return;
	stack_clear(s);
	free(s->resp_buf);
	free(s);
}

void mmds_stack_set_ipv4(struct mmds_stack *s, uint32_t ipv4)
{
	if (ipv4 != s->ip)
		stack_clear(s);
	s->ip = ipv4;
}

uint32_t mmds_stack_ipv4(const struct mmds_stack *s)
{
	return s->ip;
}

unsigned mmds_stack_connections(const struct mmds_stack *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MMDS_STACK_MAX_CONNS; i++)
		n += s->conns[i].used;
	return n;
}

uint8_t *mmds_stack_scratch(struct mmds_stack *s)
{
	return s->scratch;
}

const struct mmds_stack_stats *mmds_stack_stats(const struct mmds_stack *s)
{
	return &s->st;
}

void mmds_stack_stats_add(struct mmds_stack_stats *sum, const struct mmds_stack_stats *a)
{
	sum->rx_accepted += a->rx_accepted;
	sum->rx_accepted_err += a->rx_accepted_err;
	sum->rx_accepted_unusual += a->rx_accepted_unusual;
	sum->rx_bad_eth += a->rx_bad_eth;
	sum->rx_count += a->rx_count;
	sum->tx_bytes += a->tx_bytes;
	sum->tx_frames += a->tx_frames;
	sum->tx_count += a->tx_count;
	sum->tx_errors += a->tx_errors;
	sum->connections_created += a->connections_created;
	sum->connections_destroyed += a->connections_destroyed;
	sum->rst_dropped += a->rst_dropped;
	sum->conn_refused += a->conn_refused;
}
