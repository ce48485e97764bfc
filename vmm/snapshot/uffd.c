#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int uffd_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int uffd_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* /dev/userfaultfd first: its file permissions decide, so a jailed,
 * unprivileged ember can handle faults raised inside the kernel (KVM's
 * accesses) even with vm.unprivileged_userfaultfd=0. The syscall is the
 * fallback for kernels before 6.1 or hosts without the device node. */
static int uffd_create(char *err, size_t errlen)
{
	int dev_errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		int fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		dev_errno = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	} else {
		dev_errno = errno;
	}
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int e = errno;
	return uffd_fail(err, errlen, -e, "cannot create a userfaultfd: /dev/userfaultfd: %s; userfaultfd(2): %s%s",
			 strerror(dev_errno), strerror(e),
			 e == EPERM ? " (vm.unprivileged_userfaultfd=0 needs CAP_SYS_PTRACE)" : "");
}

/* The handshake's JSON, written by hand rather than with cJSON: cJSON keeps
 * numbers as doubles and prints large ones in exponent form, which
 * Firecracker-style handlers reject for u64 fields. */
static char *handshake_json(const struct guest_mem *mem, size_t *len)
{
	size_t cap = 2 + (size_t)mem->nregions * 192; /* a region is at most ~145 bytes */
	char *s = malloc(cap);
	if (!s)
		return NULL;
	size_t n = 0;
	s[n++] = '[';
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		n += (size_t)snprintf(s + n, cap - n,
				      "%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64
				      ",\"offset\":%" PRIu64 ",\"page_size\":%" PRIu64 ",\"page_size_kib\":%" PRIu64 "}",
				      i ? "," : "", (uint64_t)(uintptr_t)r->host, r->size,
				      (uint64_t)(r->host - mem->host), mem->page_size, mem->page_size);
	}
	s[n++] = ']';
	s[n] = '\0';
	*len = n;
	return s;
}

static int send_with_fd(int sock, const void *buf, size_t len, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));

	ssize_t w;
	do
		w = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return -errno;
	/* A blocking stream socket sends a message this small whole. */
	return (size_t)w == len ? 0 : -EIO;
}

int uffd_open_registered(struct guest_mem *mem, uint64_t features, char *err, size_t errlen)
{
	int ret = uffd_create(err, errlen);
	if (ret < 0)
		return ret;
	int fd = ret;

	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = uffd_fail(err, errlen, -errno, "userfaultfd API handshake (UFFDIO_API, features %#" PRIx64 "): %s",
				features, strerror(errno));
		goto fail;
	}

	/* hugetlbfs memory has no UFFDIO_ZEROPAGE: its handler copies zeros. */
	const uint64_t need = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_WAKE) |
			      (mem->page_size == 4096 ? 1ULL << _UFFDIO_ZEROPAGE : 0);
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		struct uffdio_register reg = {
			.range = { .start = (uint64_t)(uintptr_t)r->host, .len = r->size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
			ret = uffd_fail(err, errlen, -errno, "registering guest memory region %u (%" PRIu64
					" bytes) with userfaultfd: %s", i, r->size, strerror(errno));
			goto fail;
		}
		if ((reg.ioctls & need) != need) {
			ret = uffd_fail(err, errlen, -EOPNOTSUPP, "userfaultfd on guest memory region %u lacks"
					" UFFDIO_COPY/WAKE (or ZEROPAGE)", i);
			goto fail;
		}
	}
	mem->lazy = true;
	return fd;
fail:
	/* Closing the userfaultfd also unregisters the regions. */
	close(fd);
	return ret;
}

int uffd_backend_connect(struct uffd_backend *b, struct guest_mem *mem, const char *path,
			 char *err, size_t errlen)
{
	int ret;
	char *json = NULL;

	b->uffd = -1;
	b->sock = -1;
	if (mem->nregions == 0)
		return uffd_fail(err, errlen, -EINVAL, "uffd: guest memory has no regions");

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return uffd_fail(err, errlen, -ENAMETOOLONG, "uffd socket path is too long: %s", path);
	memcpy(addr.sun_path, path, strlen(path) + 1);

	ret = uffd_open_registered(mem, UFFD_FEATURE_EVENT_REMOVE, err, errlen);
	if (ret < 0)
		return ret;
	b->uffd = ret;

	size_t len;
	json = handshake_json(mem, &len);
	if (!json) {
		ret = uffd_fail(err, errlen, -ENOMEM, "uffd: out of memory");
		goto fail;
	}

	/* Non-blocking: a handler that never accepts (its backlog full) would
	 * otherwise hold the VMM thread in connect() for good. A Unix socket
	 * connects at once or fails with EAGAIN; the handshake fits in the
	 * socket's buffer. */
	b->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (b->sock < 0) {
		ret = uffd_fail(err, errlen, -errno, "uffd socket: %s", strerror(errno));
		goto fail;
	}
	if (connect(b->sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		if (errno == EAGAIN)
			ret = uffd_fail(err, errlen, -EAGAIN, "the page-fault handler at %s is not accepting "
					"connections (its backlog is full)", path);
		else
			ret = uffd_fail(err, errlen, -errno, "cannot connect to the page-fault handler at %s: %s",
					path, strerror(errno));
		goto fail;
	}
	ret = send_with_fd(b->sock, json, len, b->uffd);
	if (ret < 0) {
		uffd_fail(err, errlen, ret, "sending the userfaultfd to the page-fault handler at %s: %s",
			  path, strerror(-ret));
		goto fail;
	}
	free(json);
	return 0;
fail:
	free(json);
	/* Closing ember's userfaultfd also unregisters the regions. */
	uffd_backend_close(b);
	return ret;
}

void uffd_backend_close(struct uffd_backend *b)
{
	if (b->sock >= 0)
		close(b->sock);
	if (b->uffd >= 0)
		close(b->uffd);
	b->sock = -1;
	b->uffd = -1;
}
