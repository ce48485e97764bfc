#include "file_faults.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../log.h"
#include "../vm.h"
#include "uffd.h"

struct file_faults {
	int uffd, stop_fd, file_fd;
	uint8_t *base;       /* mem->host: file offset = address - base */
	uint64_t size;       /* bytes of the mapping (and of guest memory in the file) */
	uint8_t *served;     /* one bit per 2 MiB page: filled once already */
	uint8_t *buf;        /* one page of the file, or zeros */
	struct vm *vm;
	bool failed;         /* the file could not be read: zeros until stopped */
	pthread_t thread;
};

/* Read the 2 MiB at off into f->buf (holes read as zeros). -EIO if the
 * file ends first: it was checked at the load, so it has been cut since. */
static int read_page(struct file_faults *f, uint64_t off)
{
	size_t got = 0;
	while (got < MEM_HUGE_2M) {
		ssize_t n = pread(f->file_fd, f->buf + got, MEM_HUGE_2M - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

/* Fill the page holding addr. 0, or -errno when the guest cannot go on. */
static int serve(struct file_faults *f, uint64_t addr)
{
	uint64_t off = (addr - (uint64_t)(uintptr_t)f->base) & ~(uint64_t)(MEM_HUGE_2M - 1);
	if (off >= f->size)
		return -EFAULT; /* not ours: the kernel only reports registered ranges */
	uint64_t page = off / MEM_HUGE_2M;
	bool again = f->failed || (f->served[page / 8] & (1u << (page % 8)));
	int ret = 0;
	if (again)
		memset(f->buf, 0, MEM_HUGE_2M);
	else if ((ret = read_page(f, off)) < 0)
		return ret;
	struct uffdio_copy copy = {
		.dst = (uint64_t)(uintptr_t)f->base + off,
		.src = (uint64_t)(uintptr_t)f->buf,
		.len = MEM_HUGE_2M,
	};
	if (ioctl(f->uffd, UFFDIO_COPY, &copy) < 0) {
		if (errno != EEXIST)
			return -errno;
		/* Filled meanwhile by another fault on the page: wake ours. */
		struct uffdio_range wake = { .start = copy.dst, .len = MEM_HUGE_2M };
		if (ioctl(f->uffd, UFFDIO_WAKE, &wake) < 0)
			return -errno;
	}
	if (!again)
		f->served[page / 8] |= (uint8_t)(1u << (page % 8));
	return 0;
}

/* A fault the file cannot fill stops the VM; the faults after it get
 * zeros, so that no vCPU waits on one forever while ember stops. */
static void *fault_thread(void *arg)
{
	struct file_faults *f = arg;
	pthread_setname_np(pthread_self(), "ember-faults");
	log_set_thread_name("faults");
	struct pollfd p[2] = { { .fd = f->uffd, .events = POLLIN }, { .fd = f->stop_fd, .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("guest memory faults: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			return NULL;
		struct uffd_msg msgs[16];
		ssize_t n = read(f->uffd, msgs, sizeof(msgs));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0) {
			log_error("guest memory faults: reading the userfaultfd: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue; /* no other events were asked for */
			uint64_t addr = msgs[i].arg.pagefault.address;
			int ret = serve(f, addr);
			if (ret < 0 && !f->failed) {
				log_error("guest memory faults: cannot fill the 2 MiB page at guest memory offset %#llx "
					  "from the memory file: %s",
					  (unsigned long long)(addr - (uint64_t)(uintptr_t)f->base),
					  ret == -EIO ? "it ends before it (cut since the load?)" : strerror(-ret));
				vm_request_stop(f->vm, 1, "the memory file could not be read into guest memory");
				f->failed = true;
				ret = serve(f, addr);
			}
			if (ret < 0) {
				log_error("guest memory faults: cannot fill guest memory at offset %#llx: %s",
					  (unsigned long long)(addr - (uint64_t)(uintptr_t)f->base), strerror(-ret));
				goto out;
			}
		}
	}
out:
	vm_request_stop(f->vm, 1, "guest memory faults can no longer be served");
	return NULL;
}

static void release(struct file_faults *f)
{
	if (f->uffd >= 0)
		close(f->uffd);
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	if (f->file_fd >= 0)
		close(f->file_fd);
	if (f->buf)
		munmap(f->buf, MEM_HUGE_2M);
	free(f->served);
	free(f);
}

int file_faults_start(struct file_faults **out, struct guest_mem *mem, int fd, struct vm *vm,
		      char *err, size_t errlen)
{
	if (mem->page_size != MEM_HUGE_2M || mem->nregions == 0 || (mem->size & (MEM_HUGE_2M - 1))) {
		snprintf(err, errlen, "guest memory faults: not a mapping of 2 MiB pages");
		return -EINVAL;
	}
	struct file_faults *f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "guest memory faults: out of memory");
		return -ENOMEM;
	}
	f->uffd = f->stop_fd = f->file_fd = -1;
	f->base = mem->host;
	f->size = mem->size;
	f->vm = vm;
	int ret;
	uint64_t pages = mem->size / MEM_HUGE_2M;
	f->served = calloc((size_t)(pages + 7) / 8, 1);
	/* Not malloc(): a 2 MiB block from the allocator could be returned to
	 * the system and taken again on the thread, whose filter is the VMM's. */
	f->buf = mmap(NULL, MEM_HUGE_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->buf == MAP_FAILED)
		f->buf = NULL;
	if (!f->served || !f->buf) {
		snprintf(err, errlen, "guest memory faults: out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	if ((f->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    (f->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "guest memory faults: %s", strerror(errno));
		goto fail;
	}
	if ((ret = uffd_open_registered(mem, 0, err, errlen)) < 0)
		goto fail;
	f->uffd = ret;
	if ((ret = pthread_create(&f->thread, NULL, fault_thread, f)) != 0) {
		snprintf(err, errlen, "guest memory faults: cannot start a thread: %s", strerror(ret));
		ret = -ret;
		goto fail;
	}
	*out = f;
	return 0;
fail:
	release(f);
	return ret;
}

void file_faults_stop(struct file_faults *f)
{
	if (!f)
		return;
	uint64_t one = 1;
	ssize_t w = write(f->stop_fd, &one, sizeof(one));
	(void)w;
	pthread_join(f->thread, NULL);
	release(f);
}
