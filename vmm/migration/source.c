/* The source's side of a live migration (migration.h): pre-copy rounds
 * over one connection, driven by io_uring completions on the VMM thread.
 * The memory is read in chunks of at most CHUNK_BYTES of stream, so the
 * loop keeps serving the running VM's devices and the API in between. */
#include "migration.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../api/config_json.h"
#include "../action.h"
#include "../controller.h"
#include "../io/ratelimit.h"
#include "../log.h"
#include "../snapshot/snapshot.h"
#include "address.h"
#include "stream.h"

#define CHUNK_BYTES (1u << 20)
#define CONNECT_TIMEOUT_S 10
#define DRAIN_POLL_NS 1000000ULL
#define DRAIN_TIMEOUT_NS (5ULL * 1000000000ULL)
#define TICK_NS 1000000000ULL
/* Once paused, the last pages, the state and the answer get this long
 * past timeout_s. */
#define ANSWER_GRACE_NS (10ULL * 1000000000ULL)

enum src_stage {
	SRC_CONNECTING,
	SRC_PRECOPY,     /* rounds while the VM runs */
	SRC_DRAINING,    /* paused; the devices finish their in-flight I/O */
	SRC_FINAL,       /* the last pages, the state and END */
	SRC_WAITING,     /* for the destination's RESULT */
	SRC_COMPLETED,
	SRC_FAILED,
	SRC_CANCELLED,
	SRC_NONE,        /* none yet */
};

static const char *const stage_names[] = {
	[SRC_CONNECTING] = "connecting", [SRC_PRECOPY] = "precopy", [SRC_DRAINING] = "draining",
	[SRC_FINAL] = "final", [SRC_WAITING] = "waiting", [SRC_COMPLETED] = "completed",
	[SRC_FAILED] = "failed", [SRC_CANCELLED] = "cancelled", [SRC_NONE] = "none",
};

struct migration_source {
	struct controller *c;
	struct migrate_request req;
	enum src_stage stage;
	int fd;
	struct mig_address addr;         /* read by the connect when submitted */
	struct __kernel_timespec connect_timeout;
	struct action *reply;            /* the PUT, answered once connected */
	struct evloop_op connect_op, timeout_op, send_op, recv_op;
	unsigned inflight;               /* io_uring operations not completed */
	struct evloop_timer tick, drain; /* never freed: they may be armed */
	uint64_t pages;
	uint64_t *todo;                  /* pages this round still has to send */
	uint64_t *taken;                 /* every page the dirty log gave us */
	uint64_t next;                   /* where this round's scan is */
	struct snap_writer out;          /* the chunk being sent */
	size_t out_off;
	bool end_queued, end_sent, paused_here;
	struct mig_framer in;
	uint8_t rbuf[512];
	/* progress (GET /ember/migration) */
	uint64_t start_ns, deadline_ns, round_start_ns, paused_ns, done_ns;
	uint64_t rounds, bytes_sent, round_bytes, pages_data, pages_zero, last_dirty;
	uint64_t bandwidth;              /* bytes/s over the last round */
	uint64_t expected_downtime_ms;
	char error[400];
};

/* Under way: the VM belongs to the migration. */
static bool active(const struct migration_source *s)
{
	return s && s->stage < SRC_COMPLETED;
}

static uint64_t now_ns(void)
{
	return rl_now_ns();
}

static bool test_bit(const uint64_t *b, uint64_t i) { return b[i / 64] & (1ULL << (i % 64)); }

static uint64_t count_bits(const uint64_t *b, uint64_t n)
{
	uint64_t c = 0;
	for (uint64_t i = 0; i < (n + 63) / 64; i++)
		c += (uint64_t)__builtin_popcountll(b[i]);
	return c;
}

/* Free what the connection used, once no operation refers to it. */
static void release(struct migration_source *s)
{
	if (s->inflight)
		return;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	sw_free(&s->out);
	mig_framer_free(&s->in);
	free(s->todo);
	free(s->taken);
	s->todo = s->taken = NULL;
}

/* Stop the migration with a reason. Before END is out the VM goes on
 * here as it was: running again if the migration paused it, and the pages
 * the dirty log gave up marked dirty again for the next Diff snapshot. */
static void fail(struct migration_source *s, enum src_stage why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct migration_source *s, enum src_stage why, const char *fmt, ...)
{
	if (!active(s))
		return;
	struct controller *c = s->c;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	s->stage = why;
	s->done_ns = now_ns();
	if (!s->end_sent) {
		struct guest_mem *mem = &c->machine.vm.mem;
		for (uint64_t pg = 0; s->taken && pg < s->pages; pg++)
			if (test_bit(s->taken, pg))
				mem_mark_dirty(mem, mem->host + pg * MIG_PAGE, MIG_PAGE);
		if (s->paused_here) {
			machine_resume(&c->machine);
			c->state = STATE_RUNNING;
		}
		log_error("migration to %s %s: %s; the VM goes on here%s", s->req.destination,
			  why == SRC_CANCELLED ? "cancelled" : "failed", s->error, s->paused_here ? " (resumed)" : "");
	} else {
		size_t n = strlen(s->error);
		snprintf(s->error + n, sizeof(s->error) - n, "; the VM stays paused here: the destination may "
			 "be running it (PATCH /vm Resumed runs it here)");
		log_error("migration to %s failed after its state was sent: %s", s->req.destination, s->error);
	}
	if (s->reply) {
		struct action *a = s->reply;
		s->reply = NULL;
		a->status = 400;
		snprintf(a->fault, sizeof(a->fault), "%s", s->error);
		controller_finish(c, a);
	}
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR); /* what is in flight completes now */
	release(s);
}

/* An operation of s completed: false if the migration ended meanwhile
 * (what it used is freed once the last one is back). */
static bool completed(struct migration_source *s)
{
	s->inflight--;
	if (active(s))
		return true;
	release(s);
	return false;
}

/* ---- sending --------------------------------------------------------- */

static void on_send(struct evloop_op *op, int res, unsigned flags);
static void send_next(struct migration_source *s);

static void submit_send(struct migration_source *s)
{
	struct io_uring_sqe *sqe = evloop_sqe(s->c->loop, &s->send_op);
	if (!sqe) {
		fail(s, SRC_FAILED, "the event loop's ring is full");
		return;
	}
	io_uring_prep_send(sqe, s->fd, s->out.buf + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
	s->inflight++;
}

/* The next run of pages this round sends: up to MIG_RUN from s->next. */
static bool next_run(struct migration_source *s, uint64_t *first, unsigned *count)
{
	uint64_t pg = s->next;
	while (pg < s->pages) {
		uint64_t word = s->todo[pg / 64] >> (pg % 64);
		if (!word) {
			pg = (pg / 64 + 1) * 64;
			continue;
		}
		pg += (uint64_t)__builtin_ctzll(word);
		break;
	}
	if (pg >= s->pages) {
		s->next = s->pages;
		return false;
	}
	unsigned n = 0;
	while (n < MIG_RUN && pg + n < s->pages && test_bit(s->todo, pg + n)) {
		s->todo[(pg + n) / 64] &= ~(1ULL << ((pg + n) % 64));
		n++;
	}
	*first = pg;
	*count = n;
	s->next = pg + n;
	return true;
}

static void fill_chunk(struct migration_source *s)
{
	const uint8_t *host = s->c->machine.vm.mem.host;
	uint64_t first;
	unsigned count;
	while (s->out.len < CHUNK_BYTES && next_run(s, &first, &count)) {
		unsigned data = mig_put_pages(&s->out, host, first, count);
		s->pages_data += data;
		s->pages_zero += count - data;
	}
}

/* Take the dirty log into todo (and taken). Returns the pages it named,
 * or -errno. */
static int64_t take_dirty(struct migration_source *s)
{
	struct vm *vm = &s->c->machine.vm;
	int ret = vm_take_dirty(vm, s->todo);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < (s->pages + 63) / 64; i++)
		s->taken[i] |= s->todo[i];
	s->next = 0;
	return (int64_t)count_bits(s->todo, s->pages);
}

static void final_pages(struct migration_source *s)
{
	int64_t n = take_dirty(s);
	if (n < 0) {
		fail(s, SRC_FAILED, "KVM_GET_DIRTY_LOG: %s", strerror((int)-n));
		return;
	}
	s->last_dirty = (uint64_t)n;
	s->stage = SRC_FINAL;
	send_next(s);
}

static void drain_poll(struct evloop_timer *t)
{
	struct migration_source *s = container_of(t, struct migration_source, drain);
	if (s->stage != SRC_DRAINING)
		return;
	if (machine_idle(&s->c->machine)) {
		final_pages(s);
		return;
	}
	if (now_ns() - s->paused_ns > DRAIN_TIMEOUT_NS) {
		fail(s, SRC_FAILED, "device I/O still in flight 5 s after the pause");
		return;
	}
	evloop_timer_arm(s->c->loop, &s->drain, DRAIN_POLL_NS, drain_poll);
}

/* Converged: pause the vCPUs (if running) and the devices. */
static void stop_vm(struct migration_source *s)
{
	struct controller *c = s->c;
	struct timespec ts;
	if (c->state == STATE_RUNNING) {
		if (machine_pause(&c->machine)) {
			fail(s, SRC_FAILED, "the VM is stopping");
			return;
		}
		c->state = STATE_PAUSED;
		s->paused_here = true;
	}
	s->paused_ns = now_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	log_info("migration: vCPUs paused at %lld.%06ld (realtime) after %llu rounds, %llu pages left",
		 (long long)ts.tv_sec, ts.tv_nsec / 1000, (unsigned long long)s->rounds,
		 (unsigned long long)s->last_dirty);
	s->stage = SRC_DRAINING;
	drain_poll(&s->drain);
}

static void not_converged(struct migration_source *s)
{
	fail(s, SRC_FAILED, "pre-copy did not converge in timeout_s (%u s): %llu pages written during round %llu, "
	     "%llu ms to send at %llu KiB/s, more than downtime_ms (%u)", s->req.timeout_s,
	     (unsigned long long)s->last_dirty, (unsigned long long)s->rounds,
	     (unsigned long long)s->expected_downtime_ms, (unsigned long long)(s->bandwidth / 1024),
	     s->req.downtime_ms);
}

/* A round has sent all it had: measure, take the next dirty set, and
 * decide whether the rest fits in the downtime. */
static void round_done(struct migration_source *s)
{
	uint64_t now = now_ns(), elapsed = now - s->round_start_ns;
	s->rounds++;
	if (elapsed && s->round_bytes)
		s->bandwidth = s->round_bytes * 1000000000ULL / elapsed;
	int64_t n = take_dirty(s);
	if (n < 0) {
		fail(s, SRC_FAILED, "KVM_GET_DIRTY_LOG: %s", strerror((int)-n));
		return;
	}
	s->last_dirty = (uint64_t)n;
	uint64_t bytes = (uint64_t)n * (MIG_PAGE + MIG_HEADER_SIZE);
	s->expected_downtime_ms = s->bandwidth ? bytes * 1000 / s->bandwidth : UINT64_MAX;
	if (!n || s->expected_downtime_ms <= s->req.downtime_ms) {
		stop_vm(s);
		return;
	}
	if (now >= s->deadline_ns) {
		not_converged(s);
		return;
	}
	s->round_start_ns = now;
	s->round_bytes = 0;
	send_next(s);
}

static void on_recv(struct evloop_op *op, int res, unsigned flags);

static void wait_result(struct migration_source *s)
{
	s->stage = SRC_WAITING;
	struct io_uring_sqe *sqe = evloop_sqe(s->c->loop, &s->recv_op);
	if (!sqe) {
		fail(s, SRC_FAILED, "the event loop's ring is full");
		return;
	}
	io_uring_prep_recv(sqe, s->fd, s->rbuf, sizeof(s->rbuf), 0);
	s->inflight++;
}

/* The last chunk: the state and END. */
static void queue_state(struct migration_source *s)
{
	struct controller *c = s->c;
	uint8_t *image = NULL;
	size_t len = 0;
	char err[256] = "";
	if (snapshot_state_image(&c->machine, &c->cfg, &image, &len, err, sizeof(err))) {
		fail(s, SRC_FAILED, "saving the VM's state: %s", err);
		return;
	}
	mig_put_state(&s->out, image, len);
	mig_put_end(&s->out);
	free(image);
	s->end_queued = true;
}

static void send_next(struct migration_source *s)
{
	if (!active(s))
		return;
	s->out.len = 0;
	s->out_off = 0;
	fill_chunk(s);
	if (!s->out.len) {
		if (s->stage == SRC_PRECOPY) {
			round_done(s);
			return;
		}
		if (s->stage != SRC_FINAL)
			return;
		queue_state(s);
		if (!active(s))
			return;
	}
	if (s->out.oom) {
		fail(s, SRC_FAILED, "out of memory for the stream");
		return;
	}
	submit_send(s);
}

static void on_send(struct evloop_op *op, int res, unsigned flags)
{
	struct migration_source *s = container_of(op, struct migration_source, send_op);
	(void)flags;
	if (!completed(s))
		return;
	if (res <= 0) {
		fail(s, SRC_FAILED, "sending to the destination: %s", res ? strerror(-res) : "connection closed");
		return;
	}
	s->out_off += (size_t)res;
	s->bytes_sent += (uint64_t)res;
	s->round_bytes += (uint64_t)res;
	if (s->out_off < s->out.len) {
		submit_send(s);
		return;
	}
	if (s->end_queued) {
		s->end_sent = true;
		wait_result(s);
		return;
	}
	send_next(s);
}

static void on_recv(struct evloop_op *op, int res, unsigned flags)
{
	struct migration_source *s = container_of(op, struct migration_source, recv_op);
	(void)flags;
	if (!completed(s))
		return;
	if (res <= 0) {
		fail(s, SRC_FAILED, "the destination %s before it answered",
		     res ? strerror(-res) : "closed the connection");
		return;
	}
	struct mig_msg *m = NULL;
	char err[256] = "";
	long t = mig_framer_feed(&s->in, s->rbuf, (size_t)res, &m, err, sizeof(err));
	if (t < 0) {
		fail(s, SRC_FAILED, "the destination's answer: %s", err);
		return;
	}
	if (!m) {
		if ((size_t)t < (size_t)res) /* cannot happen: the framer takes all until a message is whole */
			fail(s, SRC_FAILED, "the destination's answer was cut");
		else
			wait_result(s);
		return;
	}
	int result = 0;
	char reason[256] = "";
	if (mig_parse_result(m, &result, reason, sizeof(reason), err, sizeof(err))) {
		fail(s, SRC_FAILED, "the destination's answer: %s", err);
		return;
	}
	if (result) {
		/* It refused: it does not run the VM, so this side goes on. */
		s->end_sent = false;
		fail(s, SRC_FAILED, "the destination refused the VM: %s (%s)", reason, strerror(result));
		return;
	}
	s->stage = SRC_COMPLETED;
	s->done_ns = now_ns();
	log_info("migration to %s completed: %llu rounds, %llu MiB sent (%llu pages with data, %llu zero), "
		 "paused for %llu ms until the destination answered", s->req.destination,
		 (unsigned long long)s->rounds, (unsigned long long)(s->bytes_sent >> 20),
		 (unsigned long long)s->pages_data, (unsigned long long)s->pages_zero,
		 (unsigned long long)((s->done_ns - s->paused_ns) / 1000000));
	release(s);
}

/* ---- starting -------------------------------------------------------- */

static void tick(struct evloop_timer *t)
{
	struct migration_source *s = container_of(t, struct migration_source, tick);
	if (!active(s))
		return;
	/* A send or an answer that never comes ends the migration too. */
	if (now_ns() > s->deadline_ns + (s->stage >= SRC_DRAINING ? ANSWER_GRACE_NS : 0)) {
		if (s->stage == SRC_PRECOPY && s->rounds)
			not_converged(s); /* in the middle of a round */
		else
			fail(s, SRC_FAILED, "timed out in stage %s after %u s", stage_names[s->stage],
			     s->req.timeout_s);
		return;
	}
	evloop_timer_arm(s->c->loop, &s->tick, TICK_NS, tick);
}

static void on_connect_timeout(struct evloop_op *op, int res, unsigned flags)
{
	struct migration_source *s = container_of(op, struct migration_source, timeout_op);
	(void)res, (void)flags;
	s->inflight--;
	release(s);
}

static void on_connect(struct evloop_op *op, int res, unsigned flags)
{
	struct migration_source *s = container_of(op, struct migration_source, connect_op);
	struct controller *c = s->c;
	(void)flags;
	if (!completed(s))
		return;
	if (res < 0) {
		fail(s, SRC_FAILED, "cannot connect to %s: %s", s->req.destination,
		     res == -ECANCELED ? "no answer in 10 s" : strerror(-res));
		return;
	}
	struct action *a = s->reply;
	s->reply = NULL;
	controller_finish(c, a); /* 204: under way */

	cJSON *obj = config_json_state_obj(&c->cfg);
	char *json = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (!json) {
		fail(s, SRC_FAILED, "out of memory");
		return;
	}
	mig_put_hello(&s->out);
	mig_put_begin(&s->out, s->pages * MIG_PAGE, json, strlen(json));
	free(json);
	/* Round 1: all of RAM but what was never touched (zero, as the
	 * destination's RAM starts), found without reading it where RAM is
	 * plain anonymous memory. The dirty log restarts now. */
	struct guest_mem *mem = &c->machine.vm.mem;
	int64_t n = take_dirty(s);
	if (n < 0) {
		fail(s, SRC_FAILED, "KVM_GET_DIRTY_LOG: %s", strerror((int)-n));
		return;
	}
	memset(s->todo, 0xff, (size_t)((s->pages + 63) / 64) * sizeof(uint64_t));
	if (s->pages % 64)
		s->todo[s->pages / 64] = (1ULL << (s->pages % 64)) - 1;
	unsigned char *resident = NULL;
	if (!mem->file_backed && !mem->shared && !mem->lazy && (resident = malloc((size_t)s->pages)) &&
	    mincore(mem->host, mem->size, resident) == 0) {
		for (uint64_t pg = 0; pg < s->pages; pg++)
			if (!(resident[pg] & 1)) {
				s->todo[pg / 64] &= ~(1ULL << (pg % 64));
				s->pages_zero++;
			}
	}
	free(resident);
	s->stage = SRC_PRECOPY;
	s->round_start_ns = now_ns();
	log_info("migration to %s started: %llu MiB of RAM, %llu pages touched", s->req.destination,
		 (unsigned long long)(mem->size >> 20), (unsigned long long)count_bits(s->todo, s->pages));
	/* The hello and BEGIN go with the first chunk. */
	fill_chunk(s);
	submit_send(s);
}

static struct migration_source *source_of(struct controller *c)
{
	if (!c->migration) {
		c->migration = calloc(1, sizeof(*c->migration));
		if (!c->migration)
			return NULL;
		c->migration->fd = -1;
		c->migration->stage = SRC_NONE;
		c->migration->c = c;
		c->migration->send_op.complete = on_send;
		c->migration->recv_op.complete = on_recv;
		c->migration->connect_op.complete = on_connect;
		c->migration->timeout_op.complete = on_connect_timeout;
	}
	return c->migration;
}

void migration_start(struct controller *c, struct action *a)
{
	const struct migrate_request *req = &a->u.migrate;
	char err[300];
	if (c->state == STATE_NOT_STARTED) {
		snprintf(a->fault, sizeof(a->fault), "no VM to migrate: start one or load a snapshot first");
		a->status = 400;
		return;
	}
	if (active(c->migration)) {
		snprintf(a->fault, sizeof(a->fault), "a migration to %s is under way (GET /ember/migration)",
			 c->migration->req.destination);
		a->status = 400;
		return;
	}
	if (c->migration && c->migration->stage == SRC_COMPLETED) {
		snprintf(a->fault, sizeof(a->fault), "this VM has migrated to %s", c->migration->req.destination);
		a->status = 400;
		return;
	}
	if (req->mode != MIGRATE_PRECOPY) {
		snprintf(a->fault, sizeof(a->fault), "mode \"%s\" is not supported by ember yet: use \"precopy\"",
			 req->mode == MIGRATE_POSTCOPY ? "postcopy" : "auto");
		a->status = 400;
		return;
	}
	struct mig_address addr;
	if (mig_address_parse(req->destination, &addr, err, sizeof(err))) {
		snprintf(a->fault, sizeof(a->fault), "destination: %s", err);
		a->status = 400;
		return;
	}
	struct migration_source *s = source_of(c);
	if (!s || s->inflight) {
		snprintf(a->fault, sizeof(a->fault), s ? "the last migration's connection is still closing"
			 : "out of memory");
		a->status = s ? 503 : 500;
		return;
	}
	if (!c->machine.vm.track_dirty) {
		int ret = vm_track_dirty_start(&c->machine.vm);
		if (ret) {
			snprintf(a->fault, sizeof(a->fault), "cannot start dirty page tracking: %s", strerror(-ret));
			a->status = 500;
			return;
		}
		/* It stays on: the pages written meanwhile are marked. */
		log_info("migration: dirty page tracking started (machine-config had track_dirty_pages off)");
	}
	/* A fresh run in the same struct: its timers may still be armed. */
	uint64_t pages = c->machine.vm.mem.size / MIG_PAGE;
	s->req = *req;
	s->pages = pages;
	s->next = 0;
	s->out_off = 0;
	s->end_queued = s->end_sent = s->paused_here = false;
	s->rounds = s->bytes_sent = s->round_bytes = s->pages_data = s->pages_zero = s->last_dirty = 0;
	s->bandwidth = 0;
	s->expected_downtime_ms = 0;
	s->paused_ns = s->done_ns = 0;
	s->error[0] = 0;
	sw_init(&s->out);
	mig_framer_init(&s->in);
	s->todo = calloc((size_t)((pages + 63) / 64), sizeof(uint64_t));
	s->taken = calloc((size_t)((pages + 63) / 64), sizeof(uint64_t));
	s->fd = socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!s->todo || !s->taken || s->fd < 0) {
		snprintf(a->fault, sizeof(a->fault), "%s", s->fd < 0 ? strerror(errno) : "out of memory");
		a->status = 500;
		s->stage = SRC_FAILED;
		release(s);
		return;
	}
	s->start_ns = now_ns();
	s->deadline_ns = s->start_ns + (uint64_t)req->timeout_s * 1000000000ULL;
	s->stage = SRC_CONNECTING;
	/* The connect, and a timeout linked to it. */
	s->addr = addr;
	s->connect_timeout = (struct __kernel_timespec){ .tv_sec = CONNECT_TIMEOUT_S };
	struct io_uring_sqe *sqe = evloop_sqe(c->loop, &s->connect_op);
	struct io_uring_sqe *tsqe = sqe ? evloop_sqe(c->loop, &s->timeout_op) : NULL;
	if (!sqe || !tsqe) {
		snprintf(a->fault, sizeof(a->fault), "the event loop's ring is full");
		a->status = 503;
		if (sqe)
			io_uring_prep_nop(sqe), s->inflight++;
		s->stage = SRC_FAILED;
		release(s);
		return;
	}
	io_uring_prep_connect(sqe, s->fd, (struct sockaddr *)&s->addr.sa, s->addr.len);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_prep_link_timeout(tsqe, &s->connect_timeout, 0);
	s->inflight += 2;
	s->reply = a;
	c->deferred = a;
	evloop_timer_arm(c->loop, &s->tick, TICK_NS, tick);
}

void migration_get(struct controller *c, struct action *a)
{
	struct migration_source *s = c->migration;
	cJSON *o = cJSON_CreateObject();
	if (!s || s->stage == SRC_NONE) {
		cJSON_AddStringToObject(o, "state", "none");
	} else {
		uint64_t end = s->done_ns ? s->done_ns : now_ns();
		cJSON_AddStringToObject(o, "state", stage_names[s->stage]);
		cJSON_AddStringToObject(o, "destination", s->req.destination);
		cJSON_AddStringToObject(o, "mode", "precopy");
		cJSON_AddNumberToObject(o, "downtime_limit_ms", s->req.downtime_ms);
		cJSON_AddNumberToObject(o, "timeout_s", s->req.timeout_s);
		cJSON_AddNumberToObject(o, "rounds", (double)s->rounds);
		cJSON_AddNumberToObject(o, "bytes_sent", (double)s->bytes_sent);
		cJSON_AddNumberToObject(o, "pages_sent", (double)s->pages_data);
		cJSON_AddNumberToObject(o, "zero_pages", (double)s->pages_zero);
		cJSON_AddNumberToObject(o, "dirty_pages", (double)s->last_dirty);
		cJSON_AddNumberToObject(o, "bandwidth_bytes_per_s", (double)s->bandwidth);
		if (s->expected_downtime_ms != UINT64_MAX)
			cJSON_AddNumberToObject(o, "expected_downtime_ms", (double)s->expected_downtime_ms);
		cJSON_AddNumberToObject(o, "total_ms", (double)((end - s->start_ns) / 1000000));
		if (s->paused_ns)
			cJSON_AddNumberToObject(o, "paused_ms", (double)((end - s->paused_ns) / 1000000));
		if (s->error[0])
			cJSON_AddStringToObject(o, "error", s->error);
	}
	a->body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	a->status = a->body ? 200 : 500;
}

void migration_cancel(struct controller *c, struct action *a)
{
	struct migration_source *s = c->migration;
	if (!active(s)) {
		snprintf(a->fault, sizeof(a->fault), "no migration is under way");
		a->status = 400;
		return;
	}
	if (s->end_queued) {
		snprintf(a->fault, sizeof(a->fault), "too late to cancel: the VM's state is on its way to %s, "
			 "which may be resuming it", s->req.destination);
		a->status = 400;
		return;
	}
	fail(s, SRC_CANCELLED, "cancelled (DELETE /ember/migration)");
}

bool migration_refuses(struct controller *c, struct action *a)
{
	struct migration_source *s = c->migration;
	if (active(s)) {
		snprintf(a->fault, sizeof(a->fault), "a migration to %s is under way: wait for it, or cancel it "
			 "with DELETE /ember/migration", s->req.destination);
		a->status = 400;
		return true;
	}
	if (s && s->stage == SRC_COMPLETED && a->type == ACTION_RESUME) {
		snprintf(a->fault, sizeof(a->fault), "this VM has migrated to %s and runs there", s->req.destination);
		a->status = 400;
		return true;
	}
	return false;
}
