#include "evloop.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

int evloop_init(struct evloop *loop, unsigned entries)
{
	memset(loop, 0, sizeof(*loop));
	return io_uring_queue_init(entries, &loop->ring, 0);
}

void evloop_destroy(struct evloop *loop)
{
	io_uring_queue_exit(&loop->ring);
}

struct io_uring_sqe *evloop_sqe(struct evloop *loop, struct evloop_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
	if (!sqe) {
		io_uring_submit(&loop->ring);
		sqe = io_uring_get_sqe(&loop->ring);
		if (!sqe)
			return NULL;
	}
	io_uring_sqe_set_data(sqe, op);
	return sqe;
}

static void watch_arm(struct evloop_watch *w);

static void watch_complete(struct evloop_op *op, int res, unsigned flags)
{
	struct evloop_watch *w = container_of(op, struct evloop_watch, op);
	bool ended = !(flags & IORING_CQE_F_MORE);
	if (ended)
		w->armed = false;
	if (w->fd < 0) {
		/* Unwatched: this is the poll's last word once it is disarmed. */
		if (!w->armed && w->closed)
			w->closed(w);
		return;
	}
	if (res == -ECANCELED)
		return;
	/* The kernel may end a multishot poll at any time: re-arm before the
	 * callback, which may unwatch (and free) w and must be the last to
	 * touch it. */
	if (ended && res >= 0)
		watch_arm(w);
	w->fn(w, res);
}

static void watch_arm(struct evloop_watch *w)
{
	struct io_uring_sqe *sqe = evloop_sqe(w->loop, &w->op);
	if (!sqe)
		return;
	io_uring_prep_poll_multishot(sqe, w->fd, w->events);
	w->armed = true;
}

int evloop_watch(struct evloop *loop, struct evloop_watch *w, int fd, unsigned events,
		 void (*fn)(struct evloop_watch *w, int res))
{
	w->op.complete = watch_complete;
	w->loop = loop;
	w->fd = fd;
	w->events = events;
	w->fn = fn;
	w->armed = false;
	watch_arm(w);
	return w->armed ? 0 : -EBUSY;
}

void evloop_unwatch(struct evloop_watch *w)
{
	w->fd = -1;
	if (!w->armed) {
		if (w->closed)
			w->closed(w);
		return;
	}
	struct io_uring_sqe *sqe = evloop_sqe(w->loop, NULL);
	if (sqe)
		io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&w->op);
}

void evloop_watch_events(struct evloop_watch *w, unsigned events)
{
	if (w->events == events || w->fd < 0)
		return;
	w->events = events;
	if (!w->armed) {
		watch_arm(w);
		return;
	}
	struct io_uring_sqe *sqe = evloop_sqe(w->loop, NULL);
	if (sqe)
		io_uring_prep_poll_update(sqe, (uint64_t)(uintptr_t)&w->op, (uint64_t)(uintptr_t)&w->op,
					  events, IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI);
}

static void timer_complete(struct evloop_op *op, int res, unsigned flags)
{
	struct evloop_timer *t = container_of(op, struct evloop_timer, op);
	(void)res;
	(void)flags;
	t->armed = false;
	t->fn(t);
}

void evloop_timer_arm(struct evloop *loop, struct evloop_timer *t, uint64_t ns,
		      void (*fn)(struct evloop_timer *t))
{
	if (t->armed)
		return;
	t->op.complete = timer_complete;
	t->loop = loop;
	t->fn = fn;
	t->ts.tv_sec = (long long)(ns / 1000000000ULL);
	t->ts.tv_nsec = (long long)(ns % 1000000000ULL);
	struct io_uring_sqe *sqe = evloop_sqe(loop, &t->op);
	if (!sqe)
		return;
	io_uring_prep_timeout(sqe, &t->ts, 0, 0);
	t->armed = true;
}

int evloop_run(struct evloop *loop)
{
	while (!loop->stopping) {
		int ret = io_uring_submit_and_wait(&loop->ring, 1);
		if (ret < 0 && ret != -EINTR)
			return ret;
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&loop->ring, head, cqe) {
			struct evloop_op *op = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			unsigned flags = cqe->flags;
			seen++;
			if (op)
				op->complete(op, res, flags);
		}
		io_uring_cq_advance(&loop->ring, seen);
	}
	return 0;
}

void evloop_stop(struct evloop *loop)
{
	loop->stopping = true;
}
