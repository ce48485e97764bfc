#include "vsock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "../hostfile.h"
#include "../log.h"
#include "../vm.h"

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define HDR_LEN ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define SHUTDOWN_BOTH (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)

static uint64_t vsock_features(struct virtio_dev *vd)
{
	(void)vd;
	return 0;
}

static void vsock_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_vsock *vs = vd->dev;
	struct virtio_vsock_config c = { .guest_cid = vs->cfg.guest_cid };
	virtio_config_copy(&c, sizeof(c), off, data, len);
}

/* ---- packets to the guest ------------------------------------------ */

static struct virtio_vsock_hdr conn_hdr(const struct vsock_conn *c, uint16_t op, uint32_t flags,
					 uint32_t len)
{
	return (struct virtio_vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = c->vs->cfg.guest_cid,
		.src_port = c->host_port, .dst_port = c->guest_port, .len = len,
		.type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .flags = flags,
		.buf_alloc = VSOCK_CONN_BUF, .fwd_cnt = c->fwd_cnt,
	};
}

static void queue_ctrl(struct virtio_vsock *vs, const struct virtio_vsock_hdr *h)
{
	if (vs->ctrl_count == VSOCK_CTRL_QUEUE) {
		vs->stats.dropped_ctrl++;
		return;
	}
	vs->ctrl[(vs->ctrl_head + vs->ctrl_count) % VSOCK_CTRL_QUEUE] = *h;
	vs->ctrl_count++;
}

static void send_ctrl(struct vsock_conn *c, uint16_t op, uint32_t flags)
{
	struct virtio_vsock_hdr h = conn_hdr(c, op, flags, 0);
	if (op == VIRTIO_VSOCK_OP_CREDIT_UPDATE || op == VIRTIO_VSOCK_OP_RESPONSE ||
	    op == VIRTIO_VSOCK_OP_REQUEST)
		c->fwd_reported = c->fwd_cnt;
	queue_ctrl(c->vs, &h);
}

/* RST for a packet that matches no connection: ports swapped back. */
static void reset_reply(struct virtio_vsock *vs, const struct virtio_vsock_hdr *in)
{
	struct virtio_vsock_hdr h = {
		.src_cid = VSOCK_HOST_CID, .dst_cid = vs->cfg.guest_cid,
		.src_port = in->dst_port, .dst_port = in->src_port,
		.type = VIRTIO_VSOCK_TYPE_STREAM, .op = VIRTIO_VSOCK_OP_RST,
	};
	vs->stats.rst_sent++;
	queue_ctrl(vs, &h);
}

/* ---- connections ---------------------------------------------------- */

static void conn_closed(struct evloop_watch *w)
{
	struct vsock_conn *c = container_of(w, struct vsock_conn, watch);
	struct virtio_vsock *vs = c->vs;
	for (struct vsock_conn **p = &vs->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	vs->nconns--;
	free(c->buf);
	free(c);
}

/* Forget a connection: close the host side; the memory goes when its
 * watch is gone (conn_closed). */
static void conn_close(struct vsock_conn *c)
{
	if (c->state == VSOCK_CLOSING)
		return;
	c->state = VSOCK_CLOSING;
	close(c->fd);
	evloop_unwatch(&c->watch);
}

static void conn_reset(struct vsock_conn *c)
{
	c->vs->stats.rst_sent++;
	send_ctrl(c, VIRTIO_VSOCK_OP_RST, 0);
	conn_close(c);
}

static struct vsock_conn *conn_find(struct virtio_vsock *vs, uint32_t host_port, uint32_t guest_port)
{
	for (struct vsock_conn *c = vs->conns; c; c = c->next)
		if (c->state != VSOCK_CLOSING && c->host_port == host_port && c->guest_port == guest_port)
			return c;
	return NULL;
}

static void on_conn_event(struct evloop_watch *w, int res);

static struct vsock_conn *conn_new(struct virtio_vsock *vs, int fd, enum vsock_conn_state state)
{
	if (vs->nconns >= VSOCK_MAX_CONNS)
		return NULL;
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->vs = vs;
	c->fd = fd;
	c->state = state;
	c->host_readable = true;
	c->watch.closed = conn_closed;
	if (evloop_watch(vs->vd.loop, &c->watch, fd, POLLIN, on_conn_event)) {
		free(c);
		return NULL;
	}
	c->next = vs->conns;
	vs->conns = c;
	vs->nconns++;
	return c;
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* ---- the receive queue: control packets first, then host data -------- */

static bool write_packet(struct virtio_vsock *vs, const struct virtq_chain *ch,
			 const struct virtio_vsock_hdr *h, uint32_t payload)
{
	virtq_chain_write(ch, 0, h, HDR_LEN);
	virtq_push(&vs->vd.vq[RXQ], ch->head, HDR_LEN + payload);
	vs->stats.rx_packets++;
	return true;
}

/* Move host bytes for c into one rx chain. Returns 1 if a packet went,
 * 0 if c has nothing to send now, -1 if the chain went back unused. */
static int send_host_data(struct vsock_conn *c, struct virtq_chain *ch)
{
	struct virtio_vsock *vs = c->vs;
	uint32_t space = ch->write_len - HDR_LEN;
	uint32_t credit = peer_credit(c);
	uint32_t n = space < credit ? space : credit;
	if (n == 0 || !c->host_readable)
		return 0;
	struct iovec iov[VIRTQ_MAX_SIZE];
	int niov = virtq_chain_iov(ch, true, HDR_LEN, n, iov, VIRTQ_MAX_SIZE);
	ssize_t got = readv(c->fd, iov, niov);
	if (got > 0) {
		struct virtio_vsock_hdr h = conn_hdr(c, VIRTIO_VSOCK_OP_RW, 0, (uint32_t)got);
		c->rx_cnt += (uint32_t)got;
		c->fwd_reported = c->fwd_cnt;
		vs->stats.rx_bytes += (uint64_t)got;
		write_packet(vs, ch, &h, (uint32_t)got);
		return 1;
	}
	if (got == 0) {
		/* The host closed: nothing more will come from this side. */
		c->host_eof = true;
		send_ctrl(c, VIRTIO_VSOCK_OP_SHUTDOWN, SHUTDOWN_BOTH);
	} else if (errno == EAGAIN || errno == EINTR) {
		c->host_readable = false;
	} else {
		conn_reset(c);
	}
	return -1;
}

static void rx_pump(struct virtio_vsock *vs)
{
	struct virtio_dev *vd = &vs->vd;
	struct virtq *q = &vd->vq[RXQ];
	struct virtq_chain ch;
	uint16_t used_before = q->used_idx;
	bool progress = !vd->paused;
	while (progress && vd->active) {
		progress = false;
		int r = virtq_pop(q, &vd->vm->mem, &ch);
		if (r == 0) {
			if (virtq_arm_notify(q))
				progress = true;
			continue;
		}
		if (r < 0 || ch.nread || ch.write_len < HDR_LEN) {
			virtio_fail(vd, "malformed receive buffer");
			return;
		}
		if (vs->ctrl_count) {
			write_packet(vs, &ch, &vs->ctrl[vs->ctrl_head], 0);
			vs->ctrl_head = (vs->ctrl_head + 1) % VSOCK_CTRL_QUEUE;
			vs->ctrl_count--;
			progress = true;
			continue;
		}
		bool sent = false;
		for (struct vsock_conn *c = vs->conns, *next; c && !sent; c = next) {
			next = c->next; /* c may be closed (and freed) below */
			if (c->state != VSOCK_ESTABLISHED || c->host_eof)
				continue;
			if (send_host_data(c, &ch) == 1)
				sent = true;
			else if (vs->ctrl_count)
				break; /* it queued a SHUTDOWN or RST: send that first */
		}
		if (sent || vs->ctrl_count) {
			if (!sent) {
				write_packet(vs, &ch, &vs->ctrl[vs->ctrl_head], 0);
				vs->ctrl_head = (vs->ctrl_head + 1) % VSOCK_CTRL_QUEUE;
				vs->ctrl_count--;
			}
			progress = true;
		} else {
			virtq_undo_pop(q); /* nothing to say right now */
		}
	}
	if (q->used_idx != used_before)
		virtio_signal(vd, RXQ);
}

/* ---- host sockets --------------------------------------------------- */

/* Pass buffered guest bytes on to the host socket. */
static void flush_to_host(struct vsock_conn *c)
{
	while (c->buf_len) {
		ssize_t n = write(c->fd, c->buf, c->buf_len);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				conn_reset(c);
			break;
		}
		memmove(c->buf, c->buf + n, c->buf_len - (uint32_t)n);
		c->buf_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	bool want = c->buf_len > 0;
	if (c->state != VSOCK_CLOSING && want != c->want_pollout) {
		c->want_pollout = want;
		evloop_watch_events(&c->watch, want ? (POLLIN | POLLOUT) : POLLIN);
	}
	/* Let the guest know there is room again once it has used half. */
	if (c->state == VSOCK_ESTABLISHED && c->fwd_cnt - c->fwd_reported >= VSOCK_CONN_BUF / 2)
		send_ctrl(c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
}

/* "CONNECT <port>\n" from a host client. Only the line is consumed (it is
 * found with MSG_PEEK): bytes the client sent after it stay in the socket
 * and reach the guest once the connection is up. */
static void read_handshake(struct vsock_conn *c)
{
	struct virtio_vsock *vs = c->vs;
	char line[VSOCK_CONNECT_LINE_MAX];
	ssize_t n = recv(c->fd, line, sizeof(line) - 1, MSG_PEEK);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		conn_close(c);
		return;
	}
	if (n < 0)
		return;
	char *nl = memchr(line, '\n', (size_t)n);
	if (!nl) {
		if (n == (ssize_t)sizeof(line) - 1)
			conn_close(c); /* no newline in a line this long: not our protocol */
		return;
	}
	size_t len = (size_t)(nl - line) + 1;
	if (read(c->fd, line, len) != (ssize_t)len) {
		conn_close(c);
		return;
	}
	line[len - 1] = 0;
	unsigned port;
	char extra;
	if (sscanf(line, "CONNECT %u%c", &port, &extra) != 1) {
		conn_close(c);
		return;
	}
	/* A host port no other connection to that guest port uses. */
	uint32_t host_port;
	do {
		host_port = vs->next_host_port++;
		if (vs->next_host_port < (1u << 30))
			vs->next_host_port = 1u << 30;
	} while (conn_find(vs, host_port, port));
	c->guest_port = port;
	c->host_port = host_port;
	c->state = VSOCK_REQUEST_SENT;
	vs->stats.conns_host++;
	log_debug("vsock: host connection to guest port %u as host port %u", port, c->host_port);
	send_ctrl(c, VIRTIO_VSOCK_OP_REQUEST, 0);
}

static void on_conn_event(struct evloop_watch *w, int res)
{
	struct vsock_conn *c = container_of(w, struct vsock_conn, watch);
	struct virtio_vsock *vs = c->vs;
	pthread_mutex_lock(&vs->vd.lock);
	if (res < 0) {
		if (c->state == VSOCK_ESTABLISHED || c->state == VSOCK_REQUEST_SENT)
			conn_reset(c);
		else
			conn_close(c);
	} else if (c->state == VSOCK_HOST_HANDSHAKE && vs->reset_pending) {
		/* Its line is read once the driver has taken in the reset
		 * (vsock_notify). */
	} else if (c->state == VSOCK_HOST_HANDSHAKE) {
		read_handshake(c);
	} else if (c->state == VSOCK_ESTABLISHED) {
		if (res & POLLOUT)
			flush_to_host(c);
		/* Readable (or hung up): the rx pump reads as credit allows. */
		if (res & (POLLIN | POLLHUP | POLLERR))
			c->host_readable = true;
	} else if (c->state == VSOCK_REQUEST_SENT && (res & (POLLHUP | POLLERR))) {
		conn_reset(c);
	}
	if (vs->vd.active)
		rx_pump(vs);
	pthread_mutex_unlock(&vs->vd.lock);
}

static void on_listen(struct evloop_watch *w, int res)
{
	struct virtio_vsock *vs = container_of(w, struct virtio_vsock, listen_watch);
	(void)res;
	pthread_mutex_lock(&vs->vd.lock);
	for (;;) {
		int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		/* Without a driver there is no guest to connect to. */
		if (!vs->vd.active || !conn_new(vs, fd, VSOCK_HOST_HANDSHAKE)) {
			vs->stats.conns_refused++;
			close(fd);
		}
	}
	pthread_mutex_unlock(&vs->vd.lock);
}

/* A guest REQUEST to the host: connect to "<uds_path>_<port>". */
static void guest_connect(struct virtio_vsock *vs, const struct virtio_vsock_hdr *h)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int len = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s_%u", vs->cfg.uds_path, h->dst_port);
	int fd = -1;
	if (len > 0 && (size_t)len < sizeof(addr.sun_path))
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		fd = -1;
	}
	struct vsock_conn *c = fd >= 0 ? conn_new(vs, fd, VSOCK_ESTABLISHED) : NULL;
	if (!c) {
		if (fd >= 0)
			close(fd);
		vs->stats.conns_refused++;
		reset_reply(vs, h);
		return;
	}
	c->host_port = h->dst_port;
	c->guest_port = h->src_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	vs->stats.conns_guest++;
	send_ctrl(c, VIRTIO_VSOCK_OP_RESPONSE, 0);
}

/* Guest bytes for the host: straight to the socket, the rest buffered. */
static void guest_data(struct vsock_conn *c, const struct virtq_chain *ch, uint32_t len)
{
	struct iovec iov[VIRTQ_MAX_SIZE];
	int niov = virtq_chain_iov(ch, false, HDR_LEN, len, iov, VIRTQ_MAX_SIZE);
	uint32_t done = 0;
	if (c->buf_len == 0) {
		ssize_t n = writev(c->fd, iov, niov);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_reset(c);
			return;
		}
		done = n > 0 ? (uint32_t)n : 0;
		c->fwd_cnt += done;
	}
	if (done < len) {
		if (c->buf_len + (len - done) > VSOCK_CONN_BUF) {
			conn_reset(c); /* the guest ignored our credit */
			return;
		}
		if (!c->buf && !(c->buf = malloc(VSOCK_CONN_BUF))) {
			conn_reset(c);
			return;
		}
		virtq_chain_read(ch, HDR_LEN + done, c->buf + c->buf_len, len - done);
		c->buf_len += len - done;
	}
	flush_to_host(c);
}

static void handle_tx(struct virtio_vsock *vs, const struct virtq_chain *ch, const struct virtio_vsock_hdr *h)
{
	if (h->src_cid != vs->cfg.guest_cid || h->dst_cid != VSOCK_HOST_CID ||
	    h->type != VIRTIO_VSOCK_TYPE_STREAM) {
		vs->stats.bad_packets++;
		if (h->op != VIRTIO_VSOCK_OP_RST)
			reset_reply(vs, h);
		return;
	}
	vs->stats.tx_packets++;
	struct vsock_conn *c = conn_find(vs, h->dst_port, h->src_port);
	log_debug("vsock: guest op %u %u->%u len %u (conn %s)", h->op, h->src_port, h->dst_port, h->len,
		  c ? "found" : "none");
	if (h->op == VIRTIO_VSOCK_OP_REQUEST) {
		if (c)
			conn_reset(c); /* a second REQUEST on a live pair */
		else
			guest_connect(vs, h);
		return;
	}
	if (!c) {
		if (h->op != VIRTIO_VSOCK_OP_RST)
			reset_reply(vs, h);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VIRTIO_VSOCK_OP_RESPONSE: {
		if (c->state != VSOCK_REQUEST_SENT) {
			conn_reset(c);
			break;
		}
		char ok[32];
		int n = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
		c->state = VSOCK_ESTABLISHED;
		if (write(c->fd, ok, (size_t)n) != n)
			conn_reset(c);
		break;
	}
	case VIRTIO_VSOCK_OP_RW:
		if (c->state != VSOCK_ESTABLISHED) {
			conn_reset(c);
			break;
		}
		vs->stats.tx_bytes += h->len;
		if (h->len)
			guest_data(c, ch, h->len);
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if ((h->flags & SHUTDOWN_BOTH) == SHUTDOWN_BOTH) {
			/* The guest is closing: finish the host side and answer RST,
			 * which completes the guest's close at once. */
			flush_to_host(c);
			conn_reset(c);
		} else if (h->flags & VIRTIO_VSOCK_SHUTDOWN_SEND) {
			flush_to_host(c);
			shutdown(c->fd, SHUT_WR);
		}
		break;
	case VIRTIO_VSOCK_OP_RST:
		conn_close(c);
		break;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		send_ctrl(c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		break; /* credit already taken above; the rx pump uses it */
	default:
		conn_reset(c);
		break;
	}
}

static void tx_process(struct virtio_vsock *vs)
{
	struct virtio_dev *vd = &vs->vd;
	struct virtq *q = &vd->vq[TXQ];
	struct virtq_chain ch;
	uint16_t used_before = q->used_idx;
	if (vd->paused)
		return;
	for (;;) {
		int r = virtq_pop(q, &vd->vm->mem, &ch);
		if (r == 0) {
			if (virtq_arm_notify(q))
				continue;
			break;
		}
		struct virtio_vsock_hdr h;
		if (r < 0 || ch.read_len < HDR_LEN) {
			virtio_fail(vd, "malformed transmit chain");
			return;
		}
		virtq_chain_read(&ch, 0, &h, HDR_LEN);
		if (h.len > ch.read_len - HDR_LEN || h.len > VSOCK_CONN_BUF) {
			virtio_fail(vd, "packet length beyond its buffer");
			return;
		}
		handle_tx(vs, &ch, &h);
		virtq_push(q, ch.head, 0);
	}
	if (q->used_idx != used_before)
		virtio_signal(vd, TXQ);
	rx_pump(vs);
}

static void vsock_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_vsock *vs = vd->dev;
	if (q == TXQ)
		tx_process(vs);
	else if (q == RXQ)
		rx_pump(vs);
	/* The event queue carries only transport resets (after a snapshot
	 * restore): its buffers wait with the device until then. A buffer
	 * given back after one says the driver has dropped its connections,
	 * so the host connections that waited for that can go ahead. */
	else if (q == EVQ && vs->reset_pending && virtq_avail_idx(&vd->vq[EVQ]) != vs->reset_avail) {
		vs->reset_pending = false;
		log_debug("vsock: the driver took in the transport reset");
		for (struct vsock_conn *c = vs->conns, *next; c; c = next) {
			next = c->next; /* read_handshake may free c */
			if (c->state == VSOCK_HOST_HANDSHAKE)
				read_handshake(c);
		}
		rx_pump(vs);
	}
}

/* Guest connections do not survive a driver reset; close the host ends. */
static void vsock_reset_io(struct virtio_dev *vd)
{
	struct virtio_vsock *vs = vd->dev;
	for (struct vsock_conn *c = vs->conns, *next; c; c = next) {
		next = c->next; /* conn_close may free c */
		conn_close(c);
	}
	vs->ctrl_count = 0;
	vs->reset_pending = false;
}

static void vsock_counters(struct virtio_dev *vd, char *buf, size_t len)
{
	const struct vsock_stats *st = &((struct virtio_vsock *)vd->dev)->stats;
	snprintf(buf, len,
		 "conns_host=%llu conns_guest=%llu conns_refused=%llu rst_sent=%llu rx_packets=%llu "
		 "rx_bytes=%llu tx_packets=%llu tx_bytes=%llu dropped_ctrl=%llu bad_packets=%llu "
		 "transport_resets=%llu",
		 (unsigned long long)st->conns_host, (unsigned long long)st->conns_guest,
		 (unsigned long long)st->conns_refused, (unsigned long long)st->rst_sent,
		 (unsigned long long)st->rx_packets, (unsigned long long)st->rx_bytes,
		 (unsigned long long)st->tx_packets, (unsigned long long)st->tx_bytes,
		 (unsigned long long)st->dropped_ctrl, (unsigned long long)st->bad_packets,
		 (unsigned long long)st->transport_resets);
}

static int vsock_start_io(struct virtio_dev *vd)
{
	struct virtio_vsock *vs = vd->dev;
	return evloop_watch(vd->loop, &vs->listen_watch, vs->listen_fd, POLLIN, on_listen);
}

static void vsock_destroy(struct virtio_dev *vd)
{
	struct virtio_vsock *vs = vd->dev;
	close(vs->listen_fd);
	unlink(vs->cfg.uds_path);
}

/* Restored from a snapshot: the host ends of the guest's connections
 * stayed with the old process, so tell the driver to drop them all (a
 * transport reset, as Firecracker does). The listening socket is new. */
static void vsock_restored(struct virtio_dev *vd)
{
	struct virtio_vsock *vs = vd->dev;
	pthread_mutex_lock(&vd->lock);
	vs->ctrl_head = vs->ctrl_count = 0;
	struct virtq *q = &vd->vq[EVQ];
	struct virtq_chain ch;
	if (vd->active && q->ready) {
		int r = virtq_pop(q, &vd->vm->mem, &ch);
		struct virtio_vsock_event ev = { .id = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET };
		if (r == 1 && virtq_chain_write(&ch, 0, &ev, sizeof(ev)) == sizeof(ev)) {
			virtq_push(q, ch.head, sizeof(ev));
			virtio_signal(vd, EVQ);
			vs->stats.transport_resets++;
			vs->reset_pending = true;
			vs->reset_avail = virtq_avail_idx(q);
			virtq_notify_beyond(q, vs->reset_avail);
		} else if (r < 0) {
			virtio_fail(vd, "malformed event buffer");
		} else {
			log_warn("vsock: no event buffer for the transport reset after restore");
		}
	}
	pthread_mutex_unlock(&vd->lock);
}

static const struct virtio_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.features = vsock_features,
	.config_read = vsock_config_read,
	.notify = vsock_notify,
	.reset_io = vsock_reset_io,
	.counters = vsock_counters,
	.start_io = vsock_start_io,
	.destroy = vsock_destroy,
	.restored = vsock_restored,
};

int virtio_vsock_init(struct virtio_vsock *vs, struct vm *vm, struct evloop *loop, unsigned index,
		      const struct vsock_config *cfg, char *err, size_t errlen)
{
	memset(vs, 0, sizeof(*vs));
	vs->cfg = *cfg;
	vs->next_host_port = 1u << 30;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", cfg->uds_path);
	vs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (vs->listen_fd < 0) {
		snprintf(err, errlen, "vsock: socket: %s", strerror(errno));
		return -errno;
	}
	/* A socket file left by an earlier run is stale once nobody accepts on it. */
	struct stat st;
	if (lstat(cfg->uds_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "vsock: %s: is %s, not a socket", cfg->uds_path,
				 hostfile_kind_name(st.st_mode));
			close(vs->listen_fd);
			return -EADDRINUSE;
		}
		/* Non-blocking: a listener whose backlog is full (EAGAIN) is live, and
		 * a blocking connect() would wait for it to accept. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 &&
			    (connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0 || errno == EAGAIN);
		if (probe >= 0)
			close(probe);
		if (live) {
			snprintf(err, errlen, "vsock: %s is in use by another process", cfg->uds_path);
			close(vs->listen_fd);
			return -EADDRINUSE;
		}
		unlink(cfg->uds_path);
	}
	if (bind(vs->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(vs->listen_fd, 64) < 0) {
		int e = errno;
		snprintf(err, errlen, "vsock: %s: %s", cfg->uds_path, strerror(e));
		close(vs->listen_fd);
		return -e;
	}
	int e = virtio_dev_init(&vs->vd, vm, loop, index, &vsock_ops, vs);
	if (e)
		snprintf(err, errlen, "vsock: %s", strerror(-e));
	return e;
}

void virtio_vsock_cleanup(struct virtio_vsock *vs)
{
	unlink(vs->cfg.uds_path);
}
