/* virtio-vsock with Firecracker's hybrid model: guest AF_VSOCK streams
 * meet host AF_UNIX streams.
 *
 *  host -> guest: a host process connects to uds_path and writes
 *                 "CONNECT <port>\n"; ember opens a stream to the guest's
 *                 port and, once the guest accepts, answers "OK <hostport>\n"
 *                 and relays bytes both ways.
 *  guest -> host: a guest connection to CID 2, port P becomes a connection
 *                 to the Unix socket "<uds_path>_P".
 *
 * Connections live on the VMM thread only (socket events, queue
 * notifications and reset_io all run there), so the list needs no lock of
 * its own beyond the device's.
 *
 * Flow control is virtio-vsock's credit scheme: ember advertises a
 * per-connection buffer and never holds more than that for the host
 * side, and sends the guest only what its credit allows. */
#ifndef EMBER_VIRTIO_VSOCK_H
#define EMBER_VIRTIO_VSOCK_H

#include <linux/virtio_vsock.h>

#include "../config.h"
#include "virtio.h"

#define VSOCK_HOST_CID 2
#define VSOCK_CONN_BUF (256 * 1024)  /* buf_alloc we advertise, per connection */
#define VSOCK_MAX_CONNS 256
#define VSOCK_CTRL_QUEUE 256         /* control packets waiting for rx buffers */

enum vsock_conn_state {
	VSOCK_HOST_HANDSHAKE,  /* host socket accepted, waiting for "CONNECT n\n" */
	VSOCK_REQUEST_SENT,    /* REQUEST queued to the guest, no answer yet */
	VSOCK_ESTABLISHED,
	VSOCK_CLOSING,         /* watch being torn down; freed when it is */
};

struct virtio_vsock;

struct vsock_conn {
	struct virtio_vsock *vs;
	struct vsock_conn *next;
	enum vsock_conn_state state;
	int fd;                      /* the host AF_UNIX stream */
	struct evloop_watch watch;
	uint32_t host_port;          /* our end, as the guest sees it */
	uint32_t guest_port;
	/* guest -> host */
	uint8_t *buf;                /* bytes the host socket has not taken yet */
	uint32_t buf_len;
	uint32_t fwd_cnt;            /* bytes from the guest passed on to the host */
	uint32_t fwd_reported;       /* fwd_cnt the guest last heard from us */
	/* host -> guest */
	uint32_t rx_cnt;             /* bytes sent to the guest */
	uint32_t peer_buf_alloc;
	uint32_t peer_fwd_cnt;
	bool host_eof;
	bool host_readable;          /* the socket may have bytes for the guest */
	bool want_pollout;
};

#define VSOCK_CONNECT_LINE_MAX 40    /* "CONNECT <port>\n" fits with room */

struct vsock_stats {
	uint64_t conns_host, conns_guest, conns_refused, rst_sent;
	uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets, dropped_ctrl, bad_packets;
	uint64_t transport_resets;
};

struct virtio_vsock {
	struct virtio_dev vd;
	struct vsock_config cfg;
	int listen_fd;
	struct evloop_watch listen_watch;
	struct vsock_conn *conns;
	unsigned nconns;
	uint32_t next_host_port;
	/* Control packets (headers only) waiting for guest rx buffers. */
	struct virtio_vsock_hdr ctrl[VSOCK_CTRL_QUEUE];
	unsigned ctrl_head, ctrl_count;
	/* A restore's transport reset the driver has not taken in yet (it
	 * gives the event buffer back once it has): until then host
	 * connections wait, since the reset would drop them. */
	bool reset_pending;
	uint16_t reset_avail;  /* the event queue's avail index at the reset */
	struct vsock_stats stats;
};

/* Bind uds_path (replacing a stale socket file) and add the device.
 * Returns 0 or -errno with a message in err. */
int virtio_vsock_init(struct virtio_vsock *vs, struct vm *vm, struct evloop *loop, unsigned index,
		      const struct vsock_config *cfg, char *err, size_t errlen);

/* Remove the listening socket's file (at exit). */
void virtio_vsock_cleanup(struct virtio_vsock *vs);

#endif
