/* libFuzzer target: the MMDS network responder (vmm/mmds/stack.c) on
 * guest frames. The input is a program of operations: raw frames, TCP
 * segments built with right checksums from fields taken partly from what
 * the responder last sent (so handshakes complete and data, FIN, RST and
 * retransmission states are reached), ARP requests, time steps, reads of
 * the responder's frames (delivered or dropped) and changes to what the
 * fake answerer returns. Every frame the responder makes is checked:
 * lengths, checksums, addresses; the connection table stays bounded. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"

#include "../../vmm/mmds/stack.h"

#define MMDS_IP 0xa9fea9feu
#define GUEST_IP 0x0a000002u
#define NPORTS 4




static size_t resp_len;
static unsigned long long frames_fed; /* over the whole run */

/* The run's count of frames handed to the responder, for its log. */
__attribute__((destructor)) static void report_frames(void)
{
	fprintf(stderr, "fuzz_mmds_frames: %llu frames fed to the responder\n", frames_fed);
}
static ssize_t resp_force;

static ssize_t answer(void *ctx, const char *req, size_t len, char *out, size_t cap, uint64_t now)
{
	(void)ctx, (void)now;
	if (!len)
		abort(); /* the responder never asks about nothing */
	if (resp_force)
		return resp_force;
	size_t n = resp_len < cap ? resp_len : cap;
	for (size_t i = 0; i < n; i++)
		out[i] = req[i % len];
	return (ssize_t)n;
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

/* What the guest side knows of each port's connection. */
static struct {
	uint32_t next_seq; /* the guest's next sequence number */
	uint32_t our_next; /* what the responder sent last, plus its length */
} ports[NPORTS];

static uint8_t frame[MMDS_STACK_FRAME_MAX];

static void check_out(const uint8_t *f, size_t len, uint32_t ipv4)
{
	if (len < 14 || len > MMDS_STACK_FRAME_MAX)
		abort();
	uint16_t type = get16(f + 12);
	if (type == 0x0806) {
		if (len != 42 || get16(f + 14 + 6) != 2 || get32(f + 14 + 14) != ipv4)
			abort();
		return;
	}
	if (type != 0x0800 || len < 54)
		abort();
	const uint8_t *ip = f + 14, *t = ip + 20;
	size_t tl = len - 34, hl = (size_t)(t[12] >> 4) * 4;
	if (ip[0] != 0x45 || get16(ip + 2) != len - 14 || csum(0, ip, 20) != 0 || get32(ip + 12) != ipv4 ||
	    hl < 20 || hl > tl || tcp_sum(ipv4, get32(ip + 16), t, tl) != 0 || get16(t) != 80)
		abort();
	uint16_t dport = get16(t + 2);
	if (dport >= 1000 && dport < 1000 + NPORTS)
		ports[dport - 1000].our_next = get32(t + 4) + (uint32_t)(tl - hl) + !!(t[13] & 0x03);
}

/* A TCP segment from port 1000 + k, with fields near what the connection
 * expects unless the input says otherwise. */
static size_t tcp_frame(struct fuzz_input *in)
{
	unsigned k = fuzz_take(in) % NPORTS;
	uint8_t flags = fuzz_take(in), how = fuzz_take(in);
	uint32_t seq = ports[k].next_seq, ack = ports[k].our_next;
	if (how & 1)
		seq += (uint32_t)(int8_t)fuzz_take(in);
	if (how & 2)
		ack += (uint32_t)(int8_t)fuzz_take(in);
	if (how & 4)
		seq = (uint32_t)fuzz_take_n(in, 4);
	size_t optlen = (how >> 3 & 3) * 4, plen = fuzz_take(in);
	if (how & 0x20)
		plen = plen * 16;
	uint16_t win = (how & 0x40) ? (uint16_t)fuzz_take_n(in, 2) : 65535;
	if (plen > 3000)
		plen = 3000;
	uint8_t *ip = frame + 14, *t = ip + 20;
	memset(frame, 0x02, 12);
	put16(frame + 12, 0x0800);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(40 + optlen + plen));
	ip[8] = 64;
	ip[9] = 6;
	put32(ip + 12, GUEST_IP);
	put32(ip + 16, MMDS_IP);
	put16(ip + 10, csum(0, ip, 20));
	memset(t, 0, 20);
	put16(t, (uint16_t)(1000 + k));
	put16(t + 2, 80);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = (uint8_t)((20 + optlen) / 4 << 4);
	t[13] = flags;
	put16(t + 14, win);
	for (size_t i = 0; i < optlen; i++)
		t[20 + i] = fuzz_take(in);
	/* Payload: the input's bytes, then a request head's end now and then. */
	for (size_t i = 0; i < plen; i++)
		t[20 + optlen + i] = in->n ? fuzz_take(in) : (uint8_t)"\r\n"[i & 1];
	size_t tl = 20 + optlen + plen;
	put16(t + 16, tcp_sum(GUEST_IP, MMDS_IP, t, tl));
	if (flags & 0x02)
		ports[k].next_seq = seq + 1;
	else
		ports[k].next_seq = seq + (uint32_t)plen + !!(flags & 0x01);
	return 14 + 20 + tl;
}

/* A framing callback as the answerer has one: a request is its head. */
static ssize_t head_len(const char *r, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (memcmp(r + i, "\r\n\r\n", 4) == 0)
			return (ssize_t)(i + 4);
	return len > 2000 ? -EMSGSIZE : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	memset(ports, 0, sizeof(ports));
	resp_len = 100;
	resp_force = 0;
	struct mmds_stack *s = mmds_stack_new(MMDS_IP, answer, (size & 1) ? head_len : NULL, NULL, 16384, 1);
	if (!s)
		return 0;
	uint64_t now = 0;
	while (in.n) {
		uint8_t op = fuzz_take(&in);
		size_t len = 0;
		switch (op % 8) {
		case 0: /* a raw frame */
			len = (uint16_t)fuzz_take_n(&in, 2) % 2048;
			if (len > in.n)
				len = in.n;
			memcpy(frame, in.p, len);
			in.p += len;
			in.n -= len;
			if (len >= 34 && (op & 0x80)) /* aimed at the address */
				put32(frame + 14 + 16, MMDS_IP);
			break;
		case 1:
		case 2:
			len = tcp_frame(&in);
			if (op & 0x80) /* one byte changed after the checksums */
				frame[(uint16_t)fuzz_take_n(&in, 2) % len] ^= fuzz_take(&in);
			break;
		case 3: { /* an ARP request, perhaps bent */
			memset(frame, 0xff, 6);
			memset(frame + 6, 0x02, 6);
			put16(frame + 12, 0x0806);
			static const uint8_t arp[28] = { 0, 1, 8, 0, 6, 4, 0, 1, 2, 2, 2, 2, 2, 2, 10, 0, 0, 2,
							 0, 0, 0, 0, 0, 0, 169, 254, 169, 254 };
			memcpy(frame + 14, arp, sizeof(arp));
			len = 42;
			if (op & 0x80)
				frame[14 + fuzz_take(&in) % 28] ^= fuzz_take(&in);
			break;
		}
		case 4: /* time passes */
			now += (uint64_t)fuzz_take(&in) * 10;
			break;
		case 5: { /* the guest reads some frames */
			unsigned k = fuzz_take(&in) % 64 + 1;
			const uint8_t *f;
			size_t flen;
			while (k-- && (flen = mmds_stack_peek(s, &f, now))) {
				check_out(f, flen, mmds_stack_ipv4(s));
				mmds_stack_consume(s, !(op & 0x80));
			}
			break;
		}
		case 6: /* the answerer changes */
			resp_len = (size_t)(uint16_t)fuzz_take_n(&in, 2) % 20000;
			resp_force = (op & 0x80) ? ((op & 0x40) ? -EMSGSIZE : 0) : 0;
			if ((op & 0xc0) == 0x40)
				resp_len = 0; /* "incomplete": buffer more */
			break;
		case 7:
			if (op & 0x80)
				mmds_stack_set_ipv4(s, (op & 0x40) ? MMDS_IP + 1 : MMDS_IP);
			(void)mmds_stack_next_timeout(s, now);
			break;
		}
		if (len) {
			bool mine = mmds_stack_claims(s, frame, len);
			/* Claimed frames only, as the net device hands them over, and
			 * now and then anything (the responder must not trust it). */
			if (mine || (op & 0x40)) {
				mmds_stack_receive(s, frame, len, (op & 0x20) != 0, now);
				frames_fed++;
			}
		}
		if (mmds_stack_connections(s) > MMDS_STACK_MAX_CONNS)
			abort();
	}
	/* Drain what is left: bounded, and every frame well-formed. */
	const uint8_t *f;
	size_t flen;
	unsigned frames = 0;
	while ((flen = mmds_stack_peek(s, &f, now))) {
		check_out(f, flen, mmds_stack_ipv4(s));
		mmds_stack_consume(s, true);
		if (++frames > 1000000)
			abort();
	}
	mmds_stack_free(s);
	return 0;
}
