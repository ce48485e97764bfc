/* The guest-facing side of MMDS: a small ARP + IPv4 + TCP responder that
 * answers the frames a guest sends to the MMDS address on its virtio-net
 * interface, as Firecracker's does (it answers ARP requests for the
 * address from MAC 06:01:23:45:67:01, listens on TCP port 80, echoes the
 * guest's MSS, offers a 2500-byte receive window that bounds one request,
 * keeps at most 30 connections and 100 pending RSTs). It runs on the VMM
 * thread and never touches the host network: the net device hands it the
 * frames it claims and pulls its answers into the guest's receive queue.
 *
 * Everything in a frame is guest-controlled and hostile. Every length,
 * header field, option and sequence number is checked against what was
 * received before it is used; malformed frames are dropped and counted.
 * What the responder holds for the guest is bounded (one ARP reply, the
 * RST queue, each connection's unacknowledged response) and produced only
 * when the guest has a receive buffer for it, so a guest that floods the
 * address and never reads costs bounded memory and gets dropped frames. */
#ifndef EMBER_MMDS_STACK_H
#define EMBER_MMDS_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MMDS_STACK_MAX_CONNS 30
#define MMDS_STACK_MAX_RSTS 100
#define MMDS_STACK_RECV_MAX 2500            /* bytes of one request, at most */
#define MMDS_STACK_FRAME_MAX (14 + 65535)   /* an Ethernet header and an IPv4 packet */
#define MMDS_STACK_PORT 80
#define MMDS_STACK_RTO_MS 300               /* retransmission timeout */
#define MMDS_STACK_RTO_MAX 15               /* retransmissions before a reset */
#define MMDS_STACK_EVICT_MS 10000           /* idle time that makes a connection evictable */

/* Answers one HTTP request of len bytes: the response (at most cap bytes)
 * goes to out. Returns its length (> 0), 0 if the request is incomplete
 * (more bytes must follow), or -errno (-EMSGSIZE: over the bound): the
 * connection is then reset. */
typedef ssize_t (*mmds_answer_fn)(void *ctx, const char *req, size_t len, char *out, size_t cap,
				  uint64_t now_ms);

/* The length of the first complete request in req[0..len) (head and
 * body), 0 if it is incomplete, or -errno (-EMSGSIZE: over the bound). */
typedef ssize_t (*mmds_request_len_fn)(const char *req, size_t len);

/* Firecracker's "mmds" metrics group, as far as the network side counts it,
 * and ember's own counts of what a flood costs the guest. */
struct mmds_stack_stats {
	uint64_t rx_accepted;         /* frames claimed (not sent to the tap) */
	uint64_t rx_accepted_err;     /* claimed frames dropped as malformed */
	uint64_t rx_accepted_unusual; /* not TCP, or an unusual TCP segment */
	uint64_t rx_bad_eth;          /* shorter than an Ethernet header */
	uint64_t rx_count;            /* TCP segments handled */
	uint64_t tx_bytes, tx_frames; /* frames given to the guest */
	uint64_t tx_count;            /* ARP replies and TCP segments written */
	uint64_t tx_errors;
	uint64_t connections_created, connections_destroyed;
	/* ember's own */
	uint64_t rst_dropped;         /* RSTs not queued: the queue was full */
	uint64_t conn_refused;        /* SYNs refused: table full, none evictable */
};

struct mmds_stack;

/* A responder for ipv4 (host order); seed picks initial sequence
 * numbers. fn answers requests, which len_fn delimits in the byte stream
 * (NULL: a request ends at its head's blank line, unless fn wants more).
 * resp_cap bounds one response. NULL if out of memory. */
struct mmds_stack *mmds_stack_new(uint32_t ipv4, mmds_answer_fn fn, mmds_request_len_fn len_fn, void *ctx,
				  size_t resp_cap, uint64_t seed);
void mmds_stack_free(struct mmds_stack *s);

/* A new address (PUT /mmds/config after the device exists): connections
 * to the old one are dropped. */
void mmds_stack_set_ipv4(struct mmds_stack *s, uint32_t ipv4);
uint32_t mmds_stack_ipv4(const struct mmds_stack *s);

/* Whether a frame the guest sends (without the virtio-net header) is the
 * responder's: an ARP packet whose target is the address, or an IPv4
 * packet to it. Reads at most the first 42 bytes of frame. */
bool mmds_stack_claims(const struct mmds_stack *s, const uint8_t *frame, size_t len);

/* Handle a claimed frame. csum_partial: the guest left the TCP checksum
 * for the device to complete (VIRTIO_NET_HDR_F_NEEDS_CSUM), so it is not
 * checked. The frame is not kept. */
void mmds_stack_receive(struct mmds_stack *s, const uint8_t *frame, size_t len, bool csum_partial,
			uint64_t now_ms);

/* The next frame for the guest (Ethernet header on, checksums complete),
 * made now if none is waiting: *frame points to it until
 * mmds_stack_consume(). Returns its length, or 0 if nothing is due. A frame
 * stays until consumed, so a guest without receive buffers holds at most
 * one made frame; the rest waits as state (retransmissions, the RST
 * queue), which is bounded. */
size_t mmds_stack_peek(struct mmds_stack *s, const uint8_t **frame, uint64_t now_ms);

/* Done with the frame mmds_stack_peek() returned: given to the guest
 * (delivered) or dropped (a receive buffer too small for it; TCP
 * retransmits what was lost). */
void mmds_stack_consume(struct mmds_stack *s, bool delivered);

/* Milliseconds from now_ms until a retransmission is due, or UINT64_MAX
 * if none is waiting. */
uint64_t mmds_stack_next_timeout(const struct mmds_stack *s, uint64_t now_ms);

/* Connections in the table. */
unsigned mmds_stack_connections(const struct mmds_stack *s);

/* A buffer of MMDS_STACK_FRAME_MAX bytes the caller may copy a frame into
 * before mmds_stack_receive(). The stack keeps nothing in it. */
uint8_t *mmds_stack_scratch(struct mmds_stack *s);

const struct mmds_stack_stats *mmds_stack_stats(const struct mmds_stack *s);
/* *sum += *add, counter by counter. */
void mmds_stack_stats_add(struct mmds_stack_stats *sum, const struct mmds_stack_stats *add);

#endif
