/* The VMM thread's event loop: one io_uring. Everything the VMM thread
 * waits for (eventfds, stdin, sockets, disk and tap I/O) is an io_uring
 * operation whose completion calls back into its owner.
 *
 * Each submitted SQE carries a struct evloop_op as user_data; embed one in
 * whatever owns the operation and recover the owner with container_of. */
#ifndef EMBER_EVLOOP_H
#define EMBER_EVLOOP_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct evloop_op;
/* res is the CQE's result (bytes, a poll mask, or -errno); flags its flags
 * (IORING_CQE_F_MORE while a multishot operation stays armed). */
typedef void (*evloop_complete_fn)(struct evloop_op *op, int res, unsigned flags);

struct evloop_op {
	evloop_complete_fn complete;
};

struct evloop {
	struct io_uring ring;
	bool stopping;
};

int evloop_init(struct evloop *loop, unsigned entries);
void evloop_destroy(struct evloop *loop);

/* An SQE to fill, with op as its user_data; submitted by the loop. NULL
 * only if the ring is full even after submitting what was queued. */
struct io_uring_sqe *evloop_sqe(struct evloop *loop, struct evloop_op *op);

/* An fd watch: fn(w, poll mask or -errno) each time fd is ready for
 * events (POLLIN, POLLOUT, ...), until evloop_unwatch or an error.
 * Multishot poll underneath. */
struct evloop_watch {
	struct evloop_op op;
	struct evloop *loop;
	int fd;
	unsigned events;
	bool armed;
	void (*fn)(struct evloop_watch *w, int res);
	/* Called once the watch is gone after evloop_unwatch (its last
	 * completion has arrived), so its memory may be freed. May be NULL. */
	void (*closed)(struct evloop_watch *w);
};
int evloop_watch(struct evloop *loop, struct evloop_watch *w, int fd, unsigned events,
		 void (*fn)(struct evloop_watch *w, int res));
void evloop_unwatch(struct evloop_watch *w);
/* Change the events a live watch waits for. */
void evloop_watch_events(struct evloop_watch *w, unsigned events);

/* A one-shot timer: fn(t) runs on the loop ns nanoseconds after arming.
 * Arming an armed timer does nothing (the earlier expiry stands). */
struct evloop_timer {
	struct evloop_op op;
	struct evloop *loop;
	bool armed;
	struct __kernel_timespec ts;
	void (*fn)(struct evloop_timer *t);
};
void evloop_timer_arm(struct evloop *loop, struct evloop_timer *t, uint64_t ns,
		      void (*fn)(struct evloop_timer *t));

/* Run until evloop_stop(). Returns 0, or -errno if io_uring fails. */
int evloop_run(struct evloop *loop);
void evloop_stop(struct evloop *loop);

#endif
