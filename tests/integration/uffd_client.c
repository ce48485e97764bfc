/* uffd-client: stands in for a restoring ember in the ember-uffd tests.
 *
 *   uffd-client make MEMFILE MIB WSFILE   write a memory file with a known
 *                                         pattern (data, holes, zero pages)
 *                                         and a working set for it
 *   uffd-client run SOCK MIB [--ws WSFILE]
 *                                         map MIB of anonymous "guest memory"
 *                                         in two regions, restore it through
 *                                         uffd_backend_connect(), check every
 *                                         page (with --ws: the working set is
 *                                         resident before anything is touched)
 *   uffd-client hup SOCK MIB              connect, print "connected", exit 0
 *                                         once the handler's end closes
 *   uffd-client hostile SOCK KIND         send a bad handshake; exit 0 once
 *                                         the handler drops the connection
 *
 * Results go to stdout, one line each; errors to stderr, one line. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../vmm/memory.h"
#include "../../vmm/snapshot/uffd.h"
#include "../../vmm/snapshot/working_set.h"

#define PAGE 4096ULL

enum kind { DATA, HOLE, ZERO };

/* The memory file's layout for npages pages. */
static enum kind page_kind(uint64_t i, uint64_t npages)
{
	uint64_t q = npages / 4;
	if (i >= q && i < q + 64)
		return HOLE; /* one long hole */
	if (i == npages - 1)
		return DATA;
	if (i % 8 == 3)
		return HOLE;
	if (i % 8 == 5)
		return ZERO;
	return DATA;
}

static uint64_t pattern(uint64_t page, uint64_t k)
{
	return ((page + 1) << 32) | (k + 1);
}

static void fill_page(uint64_t *p, uint64_t i)
{
	for (uint64_t k = 0; k < PAGE / 8; k++)
		p[k] = pattern(i, k);
}

static bool page_ok(const volatile uint64_t *p, uint64_t i, enum kind kd)
{
	for (uint64_t k = 0; k < PAGE / 8; k++)
		if (p[k] != (kd == DATA ? pattern(i, k) : 0))
			return false;
	return true;
}

static int cmd_make(const char *path, uint64_t mib, const char *ws_path)
{
	uint64_t npages = (mib << 20) / PAGE;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(mib << 20)) < 0) {
		fprintf(stderr, "uffd-client: %s: %s\n", path, strerror(errno));
		return 1;
	}
	uint64_t buf[PAGE / 8];
	for (uint64_t i = 0; i < npages; i++) {
		enum kind kd = page_kind(i, npages);
		if (kd == HOLE)
			continue;
		if (kd == DATA)
			fill_page(buf, i);
		else
			memset(buf, 0, sizeof(buf));
		if (pwrite(fd, buf, PAGE, (off_t)(i * PAGE)) != (ssize_t)PAGE) {
			fprintf(stderr, "uffd-client: writing %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	close(fd);

	/* Ranges over data, holes and zero pages; one crosses the middle,
	 * where run's two regions meet, one the end of the long hole. */
	uint64_t q = npages / 4, h = npages / 2;
	struct ws_range r[] = {
		{ 0, 16 * PAGE },
		{ 40 * PAGE, PAGE },
		{ 100 * PAGE, 64 * PAGE },
		{ (q + 60) * PAGE, 10 * PAGE },
		{ (h - 4) * PAGE, 8 * PAGE },
	};
	int ret = working_set_write(ws_path, r, sizeof(r) / sizeof(r[0]));
	if (ret) {
		fprintf(stderr, "uffd-client: %s: %s\n", ws_path, strerror(-ret));
		return 1;
	}
	uint64_t pages = 0;
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		pages += r[i].len / PAGE;

	/* WSFILE.all: every page, so a prefetch runs long enough for the
	 * guest's own faults to race it. */
	char all[4096];
	snprintf(all, sizeof(all), "%s.all", ws_path);
	struct ws_range whole = { 0, npages * PAGE };
	ret = working_set_write(all, &whole, 1);
	if (ret) {
		fprintf(stderr, "uffd-client: %s: %s\n", all, strerror(-ret));
		return 1;
	}
	printf("wrote %" PRIu64 " pages, working set %" PRIu64 " pages\n", npages, pages);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Guest memory as ember lays it out: one mapping, two regions. */
static uint8_t *map_guest(struct guest_mem *m, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->host = p;
	m->size = size;
	m->page_size = 4096;
	m->nregions = 2;
	m->regions[0] = (struct mem_region){ .gpa = 0, .size = size / 2, .host = p };
	m->regions[1] = (struct mem_region){ .gpa = 1ULL << 32, .size = size / 2, .host = (uint8_t *)p + size / 2 };
	return p;
}

static int cmd_run(const char *sock, uint64_t mib, const char *ws_path)
{
	uint64_t size = mib << 20, npages = size / PAGE;
	struct guest_mem m;
	uint8_t *p = map_guest(&m, size);
	if (!p) {
		fprintf(stderr, "uffd-client: mmap: %s\n", strerror(errno));
		return 1;
	}
	struct uffd_backend b;
	char err[512];
	if (uffd_backend_connect(&b, &m, sock, err, sizeof(err)) < 0) {
		fprintf(stderr, "uffd-client: %s\n", err);
		return 1;
	}

	int bad = 0;
	if (ws_path) {
		struct ws_range *r;
		size_t n;
		if (working_set_read(ws_path, size, &r, &n, err, sizeof(err)) < 0) {
			fprintf(stderr, "uffd-client: %s\n", err);
			return 1;
		}
		unsigned char *in_ws = calloc(npages, 1), *vec = malloc(npages);
		uint64_t want = 0;
		for (size_t i = 0; i < n; i++)
			for (uint64_t pg = r[i].offset / PAGE; pg < (r[i].offset + r[i].len) / PAGE; pg++)
				in_ws[pg] = 1, want++;
		/* Nothing is touched until the whole working set is resident. */
		uint64_t have = 0, extra = 0;
		double t0 = now_s();
		while (now_s() - t0 < 10) {
			if (mincore(p, size, vec) < 0) {
				fprintf(stderr, "uffd-client: mincore: %s\n", strerror(errno));
				return 1;
			}
			have = extra = 0;
			for (uint64_t pg = 0; pg < npages; pg++) {
				if (vec[pg] & 1) {
					if (in_ws[pg])
						have++;
					else
						extra++;
				}
			}
			if (have == want)
				break;
			usleep(1000);
		}
		printf("prefetched %" PRIu64 " of %" PRIu64 " working-set pages before first touch; %" PRIu64
		       " other pages resident\n", have, want, extra);
		if (have != want || extra)
			bad++;
		free(in_ws);
		free(vec);
		free(r);
	}

	uint64_t wrong = 0;
	for (uint64_t i = 0; i < npages; i++)
		if (!page_ok((const volatile uint64_t *)(p + i * PAGE), i, page_kind(i, npages)))
			wrong++;
	/* Guest memory stays writable: a zero page and a data page. */
	uint64_t zero_pg = 3, data_pg = 0;
	((volatile uint64_t *)(p + zero_pg * PAGE))[7] = 0x1234;
	((volatile uint64_t *)(p + data_pg * PAGE))[7] = 0x5678;
	if (((volatile uint64_t *)(p + zero_pg * PAGE))[7] != 0x1234 ||
	    ((volatile uint64_t *)(p + data_pg * PAGE))[7] != 0x5678)
		wrong++;
	/* A balloon gives pages back: ember drops them (a REMOVE event for the
	 * handler), and from then on they read as zeros. */
	if (madvise(p + 8 * PAGE, 8 * PAGE, MADV_DONTNEED) < 0) {
		fprintf(stderr, "uffd-client: madvise: %s\n", strerror(errno));
		return 1;
	}
	for (uint64_t i = 8; i < 16; i++)
		if (!page_ok((const volatile uint64_t *)(p + i * PAGE), i, ZERO))
			wrong++;
	printf("checked %" PRIu64 " pages: %" PRIu64 " bad\n", npages, wrong);
	uffd_backend_close(&b);
	munmap(p, size);
	return bad || wrong ? 1 : 0;
}

static int cmd_hup(const char *sock, uint64_t mib)
{
	uint64_t size = mib << 20;
	struct guest_mem m;
	uint8_t *p = map_guest(&m, size);
	struct uffd_backend b;
	char err[512];
	if (!p || uffd_backend_connect(&b, &m, sock, err, sizeof(err)) < 0) {
		fprintf(stderr, "uffd-client: %s\n", p ? err : "mmap failed");
		return 1;
	}
	printf("connected\n");
	fflush(stdout);
	/* What ember watches: the handler's end of the socket closing. */
	struct pollfd pfd = { .fd = b.sock, .events = POLLIN | POLLRDHUP };
	int r = poll(&pfd, 1, 30000);
	char c;
	if (r == 1 && ((pfd.revents & (POLLHUP | POLLRDHUP)) || recv(b.sock, &c, 1, MSG_DONTWAIT) == 0)) {
		printf("handler gone\n");
		uffd_backend_close(&b);
		return 0;
	}
	fprintf(stderr, "uffd-client: the handler's socket did not close\n");
	return 1;
}

/* ---- hostile handshakes ---------------------------------------------- */

static int raw_uffd(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	int fd = dev >= 0 ? ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK)
			  : (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (dev >= 0)
		close(dev);
	if (fd < 0)
		return -1;
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int raw_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return s;
}

static int raw_send(int s, const char *text, const int *fds, int nfds)
{
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		msg.msg_control = ctl.b;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	return sendmsg(s, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void *touch(void *arg)
{
	volatile uint8_t *p = arg;
	(void)p[0];
	return NULL;
}

static int cmd_hostile(const char *sock, const char *kind)
{
	char json[16384];
	const char *one = "[{\"base_host_virt_addr\":268435456,\"size\":1048576,\"offset\":0,"
			  "\"page_size\":4096,\"page_size_kib\":4096}]";
	int uffd = raw_uffd();
	if (uffd < 0) {
		fprintf(stderr, "uffd-client: userfaultfd: %s\n", strerror(errno));
		return 1;
	}
	int fds[2] = { uffd, -1 }, nfds = 1;
	const char *text = json;

	if (!strcmp(kind, "garbage")) {
		text = "this is { not json";
	} else if (!strcmp(kind, "nofd")) {
		text = one;
		nfds = 0;
	} else if (!strcmp(kind, "notuffd")) {
		text = one;
		fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	} else if (!strcmp(kind, "twofds")) {
		text = one;
		fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		nfds = 2;
	} else if (!strcmp(kind, "outside")) {
		text = "[{\"base_host_virt_addr\":268435456,\"size\":1048576,\"offset\":1099511627776,\"page_size\":4096}]";
	} else if (!strcmp(kind, "misaligned")) {
		text = "[{\"base_host_virt_addr\":268435457,\"size\":1048576,\"offset\":0,\"page_size\":4096}]";
	} else if (!strcmp(kind, "pagesize")) {
		text = "[{\"base_host_virt_addr\":268435456,\"size\":2097152,\"offset\":0,\"page_size\":8192}]";
	} else if (!strcmp(kind, "overlap")) {
		text = "[{\"base_host_virt_addr\":268435456,\"size\":1048576,\"offset\":0,\"page_size\":4096},"
		       "{\"base_host_virt_addr\":268439552,\"size\":4096,\"offset\":0,\"page_size\":4096}]";
	} else if (!strcmp(kind, "notinteger")) {
		text = "[{\"base_host_virt_addr\":\"0x10000000\",\"size\":1048576,\"offset\":0.5,\"page_size\":4096}]";
	} else if (!strcmp(kind, "empty")) {
		text = "[]";
	} else if (!strcmp(kind, "toomany")) {
		size_t n = (size_t)snprintf(json, sizeof(json), "[");
		for (int i = 0; i < 65; i++)
			n += (size_t)snprintf(json + n, sizeof(json) - n,
					      "%s{\"base_host_virt_addr\":%llu,\"size\":4096,\"offset\":0,\"page_size\":4096}",
					      i ? "," : "", 268435456ULL + (unsigned long long)i * 4096);
		snprintf(json + n, sizeof(json) - n, "]");
	} else if (!strcmp(kind, "silent")) {
		text = NULL;
	} else if (!strcmp(kind, "wrongregion")) {
		/* Register one mapping, describe another, then fault in the
		 * first: the handler must give up on this VM only. */
		uint8_t *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)p, 1 << 20 },
					       .mode = UFFDIO_REGISTER_MODE_MISSING };
		if (p == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			fprintf(stderr, "uffd-client: register: %s\n", strerror(errno));
			return 1;
		}
		text = one;
		int s = raw_connect(sock);
		if (s < 0 || raw_send(s, text, fds, nfds) < 0) {
			fprintf(stderr, "uffd-client: %s: %s\n", sock, strerror(errno));
			return 1;
		}
		pthread_t t;
		pthread_create(&t, NULL, touch, p);
		struct pollfd pfd = { .fd = s, .events = POLLIN | POLLRDHUP };
		char c;
		if (poll(&pfd, 1, 5000) == 1 && recv(s, &c, 1, MSG_DONTWAIT) == 0) {
			printf("dropped\n");
			fflush(stdout);
			_exit(0); /* the touching thread is still waiting for its page */
		}
		fprintf(stderr, "uffd-client: the handler kept the connection\n");
		_exit(1);
	} else {
		fprintf(stderr, "uffd-client: unknown hostile kind %s\n", kind);
		return 2;
	}

	int s = raw_connect(sock);
	if (s < 0) {
		fprintf(stderr, "uffd-client: %s: %s\n", sock, strerror(errno));
		return 1;
	}
	if (text && raw_send(s, text, fds, nfds) < 0) {
		fprintf(stderr, "uffd-client: sendmsg: %s\n", strerror(errno));
		return 1;
	}
	if (!text) {
		close(s);
		printf("closed\n");
		return 0;
	}
	struct pollfd pfd = { .fd = s, .events = POLLIN | POLLRDHUP };
	char c;
	if (poll(&pfd, 1, 5000) == 1 && recv(s, &c, 1, MSG_DONTWAIT) == 0) {
		printf("dropped\n");
		return 0;
	}
	fprintf(stderr, "uffd-client: the handler kept the connection\n");
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "make"))
		return cmd_make(argv[2], strtoull(argv[3], NULL, 10), argv[4]);
	if (argc >= 4 && !strcmp(argv[1], "run")) {
		uint64_t mib = strtoull(argv[3], NULL, 10);
		if (argc == 6 && !strcmp(argv[4], "--ws"))
			return cmd_run(argv[2], mib, argv[5]);
		if (argc == 4)
			return cmd_run(argv[2], mib, NULL);
	}
	if (argc == 4 && !strcmp(argv[1], "hup"))
		return cmd_hup(argv[2], strtoull(argv[3], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "hostile"))
		return cmd_hostile(argv[2], argv[3]);
	fprintf(stderr, "usage: uffd-client make MEMFILE MIB WSFILE | run SOCK MIB [--ws WSFILE] |"
			" hup SOCK MIB | hostile SOCK KIND\n");
	return 2;
}
