/* ember-uffd: the page-fault handler for VMs restored with the "Uffd"
 * mem_backend (ember's, or Firecracker's: the handshake is the same).
 *
 *   ember-uffd --socket PATH --mem-file PATH [--snapshot-path PATH]
 *              [--working-set PATH] [--once]
 *
 * It listens on PATH; each VM that restores connects and sends a JSON array
 * of its memory regions with its userfaultfd attached (see
 * vmm/snapshot/uffd.h). From then on every missing-page fault in those
 * regions is filled from the memory file: UFFDIO_COPY for data,
 * UFFDIO_ZEROPAGE for pages that are zero or in a hole of the file. A VM
 * with 2 MiB hugetlbfs pages (page_size 2097152 in its handshake) gets
 * each fault filled a whole 2 MiB page at a time with UFFDIO_COPY (zeros
 * too: hugetlbfs has no UFFDIO_ZEROPAGE), and no prefetch. With a
 * working set (vmm/snapshot/working_set.h), the pages the snapshotted run
 * touched are copied in ahead of the guest, a batch at a time, always after
 * the faults that are waiting. Any number of VMs can be served at once from
 * one memory file; one poll loop serves them all.
 *
 * The memory file's identity page (vmm/snapshot/memfile.h) says how much of
 * it is guest memory; a Diff memory file is refused, and so is a VM whose
 * regions do not add up to that size. The handshake carries no more of the
 * VM than its regions, so the generation id can only be checked against a
 * state file: with --snapshot-path the handler refuses to start unless the
 * memory file is that state file's.
 *
 * Everything a connection sends is untrusted: a bad handshake costs that
 * connection one log line and its fds, never the handler or the other VMs.
 * When a VM goes away (its socket closes), its connection is dropped and a
 * summary line is logged. With --once the handler exits after the first
 * connection ends: 0 if it ended normally, 1 if it was dropped for an error. */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../hostfile.h"
#include "../memfile.h"
#include "../working_set.h"

#define PAGE 4096ULL
#define HUGE (2ULL << 20)
#define MAX_REGIONS 64
#define MAX_CONNS 256
#define HANDSHAKE_MAX 65536
#define HANDSHAKE_FDS 8          /* more than one fd is refused, but all are received and closed */
#define HANDSHAKE_TIMEOUT_MS 10000
#define PREFETCH_BATCH 64        /* pages per prefetch step */
#define EVENT_BATCH 32
#define MAX_QUEUED_FAULTS 65536  /* far above one per faulting thread */
#define JSON_MAX_INT 9007199254740992.0 /* 2^53: larger integers are not exact in cJSON */

struct region {
	uint64_t base, size, offset;
};

struct conn {
	int sock, uffd;
	unsigned id;
	long pid;
	bool active; /* the handshake is done */
	int64_t deadline_ms; /* for the handshake */
	struct region regions[MAX_REGIONS];
	unsigned nregions;
	uint64_t total;
	uint64_t psz; /* the regions' page size: PAGE, or HUGE (hugetlbfs) */

	/* faults read from the uffd and not yet served */
	uint64_t *queue;
	size_t qhead, qlen, qcap;

	/* prefetch cursor into the working set */
	bool prefetching;
	size_t ws_idx;
	uint64_t ws_pos;

	uint64_t fault_pages, fault_zero, prefetch_pages, prefetch_zero, removes;
	bool noted_unmap, noted_remap;
	int64_t start_ns, prefetch_ns;
};

struct extent {
	uint64_t start, end;
};

/* The memory file, shared by every connection. */
static const uint8_t *mem;
static uint64_t mem_size;   /* bytes of guest memory in it, from offset 0 */
static bool has_identity;   /* an ember memory file: mem_size is its guest's */
static struct extent *data; /* the file's data extents (SEEK_DATA/SEEK_HOLE), sorted */
static size_t ndata;
static struct ws_range *ws;
static size_t nws;
static uint64_t ws_pages;

static struct conn *conns[MAX_CONNS];
static unsigned nconns;
static unsigned next_id = 1;

static void logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One write per line, so lines never interleave with other writers. */
static void logline(const char *fmt, ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "ember-uffd: ");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
	(void)w;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the memory file ------------------------------------------------ */

static bool page_in_data(uint64_t off)
{
	/* First extent that ends after off; the page is data if it starts
	 * before the page's end. */
	size_t lo = 0, hi = ndata;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (data[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ndata && data[lo].start < off + PAGE;
}

static bool page_is_zero(uint64_t off)
{
	if (!page_in_data(off))
		return true;
	const uint64_t *p = (const uint64_t *)(mem + off);
	for (size_t i = 0; i < PAGE / 8; i++)
		if (p[i])
			return false;
	return true;
}

static int push_extent(size_t *cap, uint64_t start, uint64_t end)
{
	if (ndata == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct extent *e = realloc(data, c * sizeof(*e));
		if (!e)
			return -ENOMEM;
		data = e;
		*cap = c;
	}
	data[ndata++] = (struct extent){ start, end };
	return 0;
}

/* Where the file has data; a file system without SEEK_DATA is all data. */
static int map_extents(int fd)
{
	size_t cap = 0;
	uint64_t off = 0;
	while (off < mem_size) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA);
		if (d < 0) {
			if (errno == ENXIO)
				return 0; /* only a hole from off to the end */
			ndata = 0;
			return push_extent(&cap, 0, mem_size);
		}
		off_t h = lseek(fd, d, SEEK_HOLE);
		uint64_t end = h < 0 ? mem_size : (uint64_t)h;
		if (end <= (uint64_t)d || end > mem_size)
			end = mem_size;
		int ret = push_extent(&cap, (uint64_t)d, end);
		if (ret)
			return ret;
		off = end;
	}
	return 0;
}

/* The memory file: an ember snapshot's (guest memory, then its identity
 * page: vmm/snapshot/memfile.h) or, without an identity page, all guest
 * memory (Firecracker's). With state_path, it must be that state file's. */
static int open_mem_file(const char *path, const char *state_path, char *err, size_t errlen)
{
	int fd = hostfile_open("memory file", path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "memory file %s: %s", path, strerror(errno));
		goto fail;
	}
	struct memfile_trailer t;
	int r = memfile_read_trailer(fd, (uint64_t)st.st_size, path, &t, err, errlen);
	if (r && r != -ENODATA)
		goto fail;
	has_identity = r == 0;
	mem_size = has_identity ? t.mem_size : (uint64_t)st.st_size;
	if (has_identity && (t.flags & MEMFILE_DIFF)) {
		snprintf(err, errlen, "memory file %s is a Diff snapshot's: only the pages that changed; merge it "
			 "onto its base with `ember merge-memory BASE DIFF` and serve the result", path);
		goto fail;
	}
	if (state_path) {
		struct memfile_id id;
		if (memfile_id_of_state(state_path, &id, err, errlen) < 0 ||
		    memfile_check(fd, path, &id, err, errlen) < 0)
			goto fail;
	}
	if (mem_size < PAGE) {
		snprintf(err, errlen, "memory file %s: too small (%lld bytes)", path, (long long)st.st_size);
		goto fail;
	}
	/* MAP_PRIVATE and read-only: the file is never written, and a later
	 * change to it cannot reach a VM through this mapping's copies. */
	void *p = mmap(NULL, mem_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "memory file %s: mmap: %s", path, strerror(errno));
		goto fail;
	}
	mem = p;
	if (map_extents(fd) < 0) {
		snprintf(err, errlen, "memory file %s: out of memory", path);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

/* ---- filling guest pages ----------------------------------------------- */

/* One ioctl over [dst, dst+len): UFFDIO_ZEROPAGE or UFFDIO_COPY from the
 * file at off. Returns 0 or -errno; *filled is what was done before an
 * error. */
static int fill(int uffd, uint64_t dst, uint64_t off, uint64_t len, bool zero, uint64_t psz, uint64_t *filled)
{
	int64_t got;
	int r;
	if (zero) {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };
		r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
		got = z.zeropage;
	} else {
		struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)(mem + off), .len = len };
		r = ioctl(uffd, UFFDIO_COPY, &c);
		got = c.copy;
	}
	if (r == 0) {
		*filled = len;
		return 0;
	}
	int e = errno;
	*filled = got > 0 ? (uint64_t)got - (uint64_t)got % psz : 0;
	return -e;
}

/* Fill the guest pages [dst, dst+len) from the file at off, zero pages and
 * data in runs. Pages already present (EEXIST) or no longer registered
 * (ENOENT: removed by a balloon, unmapped) are skipped; for a fault, the
 * waiting thread is woken in case someone else filled its page. Returns 0,
 * -EAGAIN (the VM's mappings are changing: read its events first) or
 * another -errno; *done is how far it got either way. */
static int serve(struct conn *c, uint64_t dst, uint64_t off, uint64_t len, bool fault, uint64_t *done)
{
	uint64_t pos = 0, single_until = 0, psz = c->psz;
	bool small = psz == PAGE; /* else never zero: every run is copied */
	int ret = 0;
	while (pos < len) {
		bool zero = small && page_is_zero(off + pos);
		uint64_t run = psz;
		if (pos >= single_until)
			while (pos + run < len && (small && page_is_zero(off + pos + run)) == zero)
				run += psz;
		uint64_t filled;
		int r = fill(c->uffd, dst + pos, off + pos, run, zero, psz, &filled);
		uint64_t pages = filled / psz;
		if (fault) {
			c->fault_pages += pages;
			c->fault_zero += zero ? pages : 0;
		} else {
			c->prefetch_pages += pages;
			c->prefetch_zero += zero ? pages : 0;
		}
		pos += filled;
		if (r == 0)
			continue;
		if (r == -EEXIST || r == -ENOENT) {
			if (filled + psz < run) {
				/* A multi-page run can fail for one page (or at a
				 * VMA boundary): go page by page to its end. */
				single_until = pos + (run - filled);
				if (r == -ENOENT)
					continue;
			}
			if (fault && r == -EEXIST) {
				struct uffdio_range wr = { .start = dst + pos, .len = psz };
				ioctl(c->uffd, UFFDIO_WAKE, &wr);
			}
			pos += psz;
			continue;
		}
		ret = r;
		break;
	}
	*done = pos;
	return ret;
}

static const struct region *region_by_addr(const struct conn *c, uint64_t addr)
{
	for (unsigned i = 0; i < c->nregions; i++)
		if (addr >= c->regions[i].base && addr - c->regions[i].base < c->regions[i].size)
			return &c->regions[i];
	return NULL;
}

/* ---- connections ------------------------------------------------------ */

static void conn_free(struct conn *c)
{
	if (c->sock >= 0)
		close(c->sock);
	if (c->uffd >= 0)
		close(c->uffd);
	free(c->queue);
	free(c);
}

static void conn_summary(const struct conn *c, const char *how)
{
	char pf[160];
	if (!nws)
		snprintf(pf, sizeof(pf), "no working set");
	else if (!c->prefetching)
		snprintf(pf, sizeof(pf), "%" PRIu64 " pages prefetched (%" PRIu64 " zero) in %.1f ms",
			 c->prefetch_pages, c->prefetch_zero, (double)(c->prefetch_ns - c->start_ns) / 1e6);
	else
		snprintf(pf, sizeof(pf), "prefetch stopped after %" PRIu64 " pages", c->prefetch_pages);
	logline("connection %u (pid %ld) %s: %u regions, %" PRIu64 " MiB in %" PRIu64 " KiB pages; %" PRIu64
		" pages served by fault (%" PRIu64 " zero); %s; %" PRIu64 " remove events",
		c->id, c->pid, how, c->nregions, c->total >> 20, c->psz >> 10, c->fault_pages, c->fault_zero, pf,
		c->removes);
}

/* Drop connection i, logging one line. */
static void conn_drop(unsigned i, bool error, const char *why)
{
	struct conn *c = conns[i];
	if (c->active) {
		char how[256];
		snprintf(how, sizeof(how), "%s%s", error ? "dropped: " : "", why);
		conn_summary(c, how);
	} else {
		logline("connection %u (pid %ld) dropped before the handshake: %s", c->id, c->pid, why);
	}
	conn_free(c);
	conns[i] = conns[--nconns];
}

static bool json_u64(const cJSON *obj, const char *name, bool required, uint64_t *out, char *why, size_t whylen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!v) {
		if (required)
			snprintf(why, whylen, "missing \"%s\"", name);
		return !required;
	}
	double d = v->valuedouble;
	if (!cJSON_IsNumber(v) || !(d >= 0 && d <= JSON_MAX_INT) || (double)(uint64_t)d != d) {
		snprintf(why, whylen, "\"%s\" is not an integer in [0, 2^53]", name);
		return false;
	}
	*out = (uint64_t)d;
	return true;
}

/* Parse and check the region array; NULL if acceptable, else why not. */
static const char *parse_regions(struct conn *c, const char *buf, size_t len, char *why, size_t whylen)
{
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
	if (!root)
		return "not JSON";
	for (const char *p = end; p < buf + len; p++)
		if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
			cJSON_Delete(root);
			return "bytes after the JSON array";
		}
	const char *bad = NULL;
	int n = cJSON_GetArraySize(root);
	if (!cJSON_IsArray(root)) {
		bad = "not a JSON array";
		goto out;
	}
	if (n < 1 || n > MAX_REGIONS) {
		snprintf(why, whylen, "%d regions (1 to %d accepted)", n, MAX_REGIONS);
		bad = why;
		goto out;
	}
	c->nregions = 0;
	c->total = 0;
	c->psz = 0;
	const cJSON *item;
	cJSON_ArrayForEach(item, root) {
		unsigned i = c->nregions;
		struct region *r = &c->regions[i];
		uint64_t page_size, page_size_kib = 0;
		char field[160];
		if (!cJSON_IsObject(item)) {
			snprintf(why, whylen, "region %u is not an object", i);
			bad = why;
			goto out;
		}
		if (!json_u64(item, "base_host_virt_addr", true, &r->base, field, sizeof(field)) ||
		    !json_u64(item, "size", true, &r->size, field, sizeof(field)) ||
		    !json_u64(item, "offset", true, &r->offset, field, sizeof(field)) ||
		    !json_u64(item, "page_size", true, &page_size, field, sizeof(field)) ||
		    !json_u64(item, "page_size_kib", false, &page_size_kib, field, sizeof(field))) {
			snprintf(why, whylen, "region %u: %s", i, field);
			bad = why;
			goto out;
		}
		/* page_size_kib (deprecated, in bytes) must agree if it is sent. */
		if ((page_size != PAGE && page_size != HUGE) || (page_size_kib && page_size_kib != page_size)) {
			snprintf(why, whylen, "region %u: page size %" PRIu64 " (4096 and 2097152 are served)", i,
				 page_size);
			bad = why;
			goto out;
		}
		if (c->psz && page_size != c->psz) {
			snprintf(why, whylen, "region %u: page size %" PRIu64 " unlike region 0's", i, page_size);
			bad = why;
			goto out;
		}
		c->psz = page_size;
		if ((r->base | r->size | r->offset) % page_size || r->size == 0 || r->base == 0) {
			snprintf(why, whylen, "region %u: address, size or offset not page aligned, or empty", i);
			bad = why;
			goto out;
		}
		if (r->offset > mem_size || r->size > mem_size - r->offset) {
			snprintf(why, whylen, "region %u: file range [0x%" PRIx64 ", +0x%" PRIx64
				 ") lies beyond the memory file's guest memory (%" PRIu64 " bytes)", i, r->offset,
				 r->size, mem_size);
			bad = why;
			goto out;
		}
		for (unsigned k = 0; k < i; k++) {
			const struct region *o = &c->regions[k];
			if (r->base < o->base + o->size && o->base < r->base + r->size) {
				snprintf(why, whylen, "regions %u and %u overlap", k, i);
				bad = why;
				goto out;
			}
		}
		c->total += r->size;
		c->nregions++;
	}
	/* All the handler can tell of the VM from its handshake: its size. */
	if (has_identity && c->total != mem_size) {
		snprintf(why, whylen, "the VM's regions hold %" PRIu64 " bytes, the memory file %" PRIu64
			 " bytes of guest memory: it is not this VM's memory file", c->total, mem_size);
		bad = why;
	}
out:
	cJSON_Delete(root);
	return bad;
}

/* NULL if fd is a usable userfaultfd, else why not. */
static const char *check_uffd(int fd, char *why, size_t whylen)
{
	char link[64], target[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	/* Without /proc, UFFDIO_API below is the only check. */
	if (n >= 0) {
		target[n] = '\0';
		if (strcmp(target, "anon_inode:[userfaultfd]") != 0)
			return "the attached fd is not a userfaultfd";
	}
	/* A userfaultfd the VM already set up refuses a second UFFDIO_API
	 * with EINVAL; anything else is not one. */
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(fd, UFFDIO_API, &api) < 0 && errno != EINVAL) {
		snprintf(why, whylen, "the attached fd is not a userfaultfd (UFFDIO_API: %s)", strerror(errno));
		return why;
	}
	/* Its poll() reports errors unless it is non-blocking; the flag is
	 * shared with the VM's copy, which never reads it. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
		snprintf(why, whylen, "fcntl on the userfaultfd: %s", strerror(errno));
		return why;
	}
	return NULL;
}

/* Receive the handshake. Returns 1 when done, 0 to wait, -1 to drop
 * (why says why). The whole message comes in one sendmsg() with the fd,
 * as both ember and Firecracker send it. */
static int conn_handshake(struct conn *c, char *why, size_t whylen)
{
	char *buf = malloc(HANDSHAKE_MAX);
	if (!buf) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	union {
		char b[CMSG_SPACE(HANDSHAKE_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = HANDSHAKE_MAX };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
	ssize_t n = recvmsg(c->sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		free(buf);
		return 0;
	}

	/* Take every fd that came, so none leaks whatever happens next. */
	int fds[HANDSHAKE_FDS], nfds = 0;
	if (n >= 0) {
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t j = 0; j < k && nfds < HANDSHAKE_FDS; j++)
				memcpy(&fds[nfds++], CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
		}
	}

	int ret = -1;
	const char *bad = NULL;
	if (n < 0) {
		snprintf(why, whylen, "recvmsg: %s", strerror(errno));
		bad = why;
	} else if (n == 0) {
		bad = "closed without a handshake";
	} else if (msg.msg_flags & MSG_CTRUNC) {
		bad = "too many fds attached";
	} else if (nfds != 1) {
		snprintf(why, whylen, "%d fds attached (one userfaultfd expected)", nfds);
		bad = why;
	} else if (n == HANDSHAKE_MAX) {
		bad = "handshake message too long";
	} else {
		bad = parse_regions(c, buf, (size_t)n, why, whylen);
		if (!bad)
			bad = check_uffd(fds[0], why, whylen);
	}
	if (bad) {
		if (bad != why)
			snprintf(why, whylen, "%s", bad);
		for (int j = 0; j < nfds; j++)
			close(fds[j]);
	} else {
		c->uffd = fds[0];
		c->active = true;
		c->start_ns = now_ns();
		/* The working set is in 4 KiB pages: not for hugetlbfs memory. */
		c->prefetching = nws > 0 && c->psz == PAGE;
		if (nws && c->psz != PAGE)
			logline("connection %u: 2 MiB pages: the working set is not prefetched", c->id);
		ret = 1;
	}
	free(buf);
	return ret;
}

static int queue_push(struct conn *c, uint64_t addr)
{
	if (c->qhead == c->qlen)
		c->qhead = c->qlen = 0;
	if (c->qlen == c->qcap) {
		if (c->qhead) {
			memmove(c->queue, c->queue + c->qhead, (c->qlen - c->qhead) * sizeof(*c->queue));
			c->qlen -= c->qhead;
			c->qhead = 0;
		} else {
			if (c->qcap >= MAX_QUEUED_FAULTS)
				return -ENOBUFS;
			size_t cap = c->qcap ? c->qcap * 2 : 64;
			uint64_t *q = realloc(c->queue, cap * sizeof(*q));
			if (!q)
				return -ENOMEM;
			c->queue = q;
			c->qcap = cap;
		}
	}
	c->queue[c->qlen++] = addr;
	return 0;
}

/* Read every pending event. Returns 0 or -errno (drop the connection). */
static int conn_read_events(struct conn *c, char *why, size_t whylen)
{
	for (;;) {
		struct uffd_msg msgs[EVENT_BATCH];
		ssize_t n = read(c->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			snprintf(why, whylen, "reading the userfaultfd: %s", strerror(errno));
			return -errno;
		}
		if (n == 0 || n % (ssize_t)sizeof(msgs[0])) {
			snprintf(why, whylen, "short read from the userfaultfd");
			return -EIO;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			const struct uffd_msg *m = &msgs[i];
			switch (m->event) {
			case UFFD_EVENT_PAGEFAULT: {
				int r = queue_push(c, m->arg.pagefault.address & ~(c->psz - 1));
				if (r) {
					snprintf(why, whylen, "too many queued faults");
					return r;
				}
				break;
			}
			case UFFD_EVENT_REMOVE: {
				/* The VM gave these pages back (a balloon): from
				 * now on they are plain zero-filled memory, which
				 * also keeps the prefetch from filling them. */
				struct uffdio_range r = { .start = m->arg.remove.start,
							  .len = m->arg.remove.end - m->arg.remove.start };
				if (r.len && ioctl(c->uffd, UFFDIO_UNREGISTER, &r) < 0 && errno != ENOENT &&
				    errno != EINVAL)
					logline("connection %u: unregistering a removed range: %s", c->id, strerror(errno));
				c->removes++;
				break;
			}
			case UFFD_EVENT_UNMAP:
				if (!c->noted_unmap)
					logline("connection %u: part of guest memory was unmapped", c->id);
				c->noted_unmap = true;
				break;
			case UFFD_EVENT_REMAP:
				if (!c->noted_remap)
					logline("connection %u: part of guest memory was remapped (not followed)", c->id);
				c->noted_remap = true;
				break;
			case UFFD_EVENT_FORK:
				/* Not asked for by ember; never keep the child's fd. */
				close((int)m->arg.fork.ufd);
				break;
			default:
				break;
			}
		}
	}
}

/* Serve the queued faults. Returns 0, -EAGAIN (events first), or another
 * -errno with why set (drop the connection). */
static int conn_serve_faults(struct conn *c, char *why, size_t whylen)
{
	while (c->qhead < c->qlen) {
		uint64_t addr = c->queue[c->qhead];
		const struct region *r = region_by_addr(c, addr);
		if (!r) {
			snprintf(why, whylen, "fault at 0x%" PRIx64 " outside every region", addr);
			return -EFAULT;
		}
		uint64_t done;
		int ret = serve(c, addr, r->offset + (addr - r->base), c->psz, true, &done);
		if (ret == -EAGAIN)
			return ret;
		if (ret) {
			snprintf(why, whylen, "%s at 0x%" PRIx64 ": %s",
				 ret == -ESRCH ? "the VM exited; fault" : "serving a fault", addr, strerror(-ret));
			return ret;
		}
		c->qhead++;
	}
	return 0;
}

/* Copy in the next batch of the working set. Same returns as above. */
static int conn_prefetch(struct conn *c, char *why, size_t whylen)
{
	uint64_t budget = PREFETCH_BATCH * PAGE;
	while (budget && c->ws_idx < nws) {
		const struct ws_range *w = &ws[c->ws_idx];
		uint64_t off = w->offset + c->ws_pos, left = w->len - c->ws_pos;
		const struct region *r = NULL;
		uint64_t skip_to = UINT64_MAX;
		for (unsigned i = 0; i < c->nregions; i++) {
			const struct region *g = &c->regions[i];
			if (off >= g->offset && off - g->offset < g->size) {
				r = g;
				break;
			}
			if (g->offset > off && g->offset < skip_to)
				skip_to = g->offset;
		}
		uint64_t done;
		int ret = 0;
		if (!r) {
			/* Not in this VM's memory: on to the next region. */
			done = skip_to - off < left ? skip_to - off : left;
		} else {
			uint64_t n = left < budget ? left : budget;
			if (n > r->offset + r->size - off)
				n = r->offset + r->size - off;
			ret = serve(c, r->base + (off - r->offset), off, n, false, &done);
			budget -= done < budget ? done : budget;
		}
		c->ws_pos += done;
		if (c->ws_pos >= w->len) {
			c->ws_idx++;
			c->ws_pos = 0;
		}
		if (ret == -EAGAIN)
			return ret;
		if (ret) {
			snprintf(why, whylen, "%s: %s", ret == -ESRCH ? "the VM exited during prefetch" : "prefetch",
				 strerror(-ret));
			return ret;
		}
	}
	if (c->ws_idx >= nws) {
		c->prefetching = false;
		c->prefetch_ns = now_ns();
	}
	return 0;
}

/* Events, then faults, then (if nothing waits) one prefetch batch. Returns
 * 0 or -errno to drop the connection (why set; -ESRCH: the VM is gone). */
static int conn_work(struct conn *c, bool readable, char *why, size_t whylen)
{
	int r;
	/* -EAGAIN means a REMOVE is being delivered: read it and retry, a few
	 * rounds at most before going back to poll. */
	for (int round = 0; round < 8; round++) {
		if (readable || round > 0 || c->qhead < c->qlen) {
			r = conn_read_events(c, why, whylen);
			if (r < 0)
				return r;
		}
		r = conn_serve_faults(c, why, whylen);
		if (r == -EAGAIN)
			continue;
		if (r < 0)
			return r;
		if (!c->prefetching)
			return 0;
		r = conn_prefetch(c, why, whylen);
		if (r == -EAGAIN)
			continue;
		return r;
	}
	return 0;
}

/* The VM sends nothing after the handshake: data is discarded; true when
 * its socket has closed. */
static bool conn_closed(struct conn *c)
{
	char junk[256];
	ssize_t r = recv(c->sock, junk, sizeof(junk), MSG_DONTWAIT);
	return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
}

/* ---- main ---------------------------------------------------------------- */

static const char *sock_path;
static struct stat sock_st;

static void unlink_socket(void)
{
	struct stat st;
	/* Only if it is still ours. */
	if (sock_path && stat(sock_path, &st) == 0 && st.st_ino == sock_st.st_ino && st.st_dev == sock_st.st_dev)
		unlink(sock_path);
}

static int listen_on(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "socket path is too long: %s", path);
		return -1;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);

	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", path);
			return -1;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0) {
			snprintf(err, errlen, "socket: %s", strerror(errno));
			return -1;
		}
		int r = connect(probe, (struct sockaddr *)&addr, sizeof(addr));
		int e = errno;
		close(probe);
		if (r == 0) {
			snprintf(err, errlen, "%s is in use: another handler is listening there", path);
			return -1;
		}
		if (e != ECONNREFUSED) {
			snprintf(err, errlen, "%s: %s", path, strerror(e));
			return -1;
		}
		unlink(path); /* stale: nobody listens */
	}

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 128) < 0 ||
	    stat(path, &sock_st) < 0) {
		snprintf(err, errlen, "listening on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void accept_all(int lfd)
{
	while (nconns < MAX_CONNS) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				logline("accept: %s", strerror(errno));
			return;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			logline("accept: out of memory");
			close(fd);
			return;
		}
		c->sock = fd;
		c->uffd = -1;
		c->id = next_id++;
		c->pid = -1;
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			c->pid = cred.pid;
		c->deadline_ms = now_ns() / 1000000 + HANDSHAKE_TIMEOUT_MS;
		conns[nconns++] = c;
	}
}

static noreturn void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: ember-uffd --socket PATH --mem-file PATH [--snapshot-path PATH] [--working-set PATH] [--once]\n");
	exit(status);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "mem-file", required_argument, NULL, 'm' },
		{ "working-set", required_argument, NULL, 'w' },
		{ "snapshot-path", required_argument, NULL, 'S' },
		{ "once", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *mem_path = NULL, *ws_path = NULL, *state_path = NULL;
	bool once = false;
	int opt;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's': sock_path = optarg; break;
		case 'm': mem_path = optarg; break;
		case 'w': ws_path = optarg; break;
		case 'S': state_path = optarg; break;
		case 'o': once = true; break;
		case 'h': usage(0);
		default:
			fprintf(stderr, "ember-uffd: unknown or incomplete option '%s'; usage: ember-uffd --socket PATH"
				" --mem-file PATH [--snapshot-path PATH] [--working-set PATH] [--once]\n", argv[optind - 1]);
			return 2;
		}
	}
	if (!sock_path || !mem_path || optind != argc) {
		fprintf(stderr, "ember-uffd: --socket and --mem-file are required; usage: ember-uffd --socket PATH"
			" --mem-file PATH [--snapshot-path PATH] [--working-set PATH] [--once]\n");
		return 2;
	}

	char err[512];
	if (open_mem_file(mem_path, state_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "ember-uffd: %s\n", err);
		return 1;
	}
	if (ws_path) {
		if (working_set_read(ws_path, mem_size, &ws, &nws, err, sizeof(err)) < 0) {
			fprintf(stderr, "ember-uffd: %s\n", err);
			return 1;
		}
		for (size_t i = 0; i < nws; i++)
			ws_pages += ws[i].len / PAGE;
	}

	/* SIGTERM/SIGINT arrive as events, so the loop ends cleanly. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, "ember-uffd: signalfd: %s\n", strerror(errno));
		return 1;
	}
	int lfd = listen_on(sock_path, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "ember-uffd: %s\n", err);
		return 1;
	}
	char wsinfo[96] = "no working set";
	if (ws_path)
		snprintf(wsinfo, sizeof(wsinfo), "working set of %zu ranges (%" PRIu64 " pages)", nws, ws_pages);
	logline("listening on %s: memory file %s (%" PRIu64 " MiB), %s", sock_path, mem_path, mem_size >> 20, wsinfo);

	static struct pollfd pfds[2 + 2 * MAX_CONNS];
	int status = 0;
	for (;;) {
		/* pfds: signals, the listener, then each connection's socket and
		 * (once set up) its userfaultfd. */
		nfds_t n = 0;
		int timeout = -1;
		int64_t now_ms = now_ns() / 1000000;
		pfds[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pfds[n++] = (struct pollfd){ .fd = nconns < MAX_CONNS ? lfd : -1, .events = POLLIN };
		for (unsigned i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			pfds[n++] = (struct pollfd){ .fd = c->sock, .events = POLLIN | POLLRDHUP };
			pfds[n++] = (struct pollfd){ .fd = c->uffd, .events = POLLIN };
			if (c->active && (c->prefetching || c->qhead < c->qlen)) {
				timeout = 0;
			} else if (!c->active) {
				int64_t left = c->deadline_ms - now_ms;
				left = left < 0 ? 0 : left;
				if (timeout < 0 || left < timeout)
					timeout = (int)left;
			}
		}
		if (poll(pfds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			logline("poll: %s", strerror(errno));
			status = 1;
			break;
		}
		if (pfds[0].revents) {
			struct signalfd_siginfo si;
			ssize_t r = read(sfd, &si, sizeof(si));
			(void)r;
			logline("signal %u: exiting", r == sizeof(si) ? si.ssi_signo : 0);
			break;
		}

		/* Connections first (their pfds indices are as built), then new ones. */
		now_ms = now_ns() / 1000000;
		bool once_done = false;
		unsigned built = (unsigned)(n - 2) / 2;
		for (unsigned k = built; k-- > 0;) {
			struct conn *c = conns[k];
			short rs = pfds[2 + 2 * k].revents, ru = pfds[3 + 2 * k].revents;
			char why[256] = "";
			int drop = 0; /* 1: normal end, 2: error */
			if (!c->active) {
				if (rs) {
					int r = conn_handshake(c, why, sizeof(why));
					if (r < 0)
						drop = 2;
				} else if (now_ms >= c->deadline_ms) {
					snprintf(why, sizeof(why), "no handshake within %d s", HANDSHAKE_TIMEOUT_MS / 1000);
					drop = 2;
				}
				/* Serve at once: the VM may already be faulting. */
				if (!drop && c->active) {
					int r = conn_work(c, true, why, sizeof(why));
					drop = r == -ESRCH ? 1 : r < 0 ? 2 : 0;
					if (r == -ESRCH)
						snprintf(why, sizeof(why), "ended (the VM exited)");
				}
			} else if (rs && conn_closed(c)) {
				snprintf(why, sizeof(why), "ended (the VM closed its socket)");
				drop = 1;
			} else if (ru & (POLLERR | POLLHUP | POLLNVAL)) {
				snprintf(why, sizeof(why), "the userfaultfd reported an error");
				drop = 2;
			} else {
				int r = conn_work(c, ru & POLLIN, why, sizeof(why));
				if (r == -ESRCH) {
					snprintf(why, sizeof(why), "ended (the VM exited)");
					drop = 1;
				} else if (r < 0) {
					drop = 2;
				}
			}
			if (drop) {
				if (c->id == 1 && once) {
					once_done = true;
					status = drop == 1 ? 0 : 1;
				}
				conn_drop(k, drop == 2, why);
				/* conn_drop moved the last connection into slot k;
				 * it was handled already (we walk backwards). */
			}
		}
		if (once_done)
			break;
		if (pfds[1].revents & POLLIN)
			accept_all(lfd);
	}

	while (nconns)
		conn_drop(nconns - 1, false, "ended (ember-uffd is exiting)");
	close(lfd);
	unlink_socket();
	return status;
}
