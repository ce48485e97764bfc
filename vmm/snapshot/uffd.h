/* Restoring guest memory through userfaultfd (Firecracker's "Uffd"
 * mem_backend).
 *
 * ember maps the guest's RAM empty, registers it with a userfaultfd for
 * missing-page faults and hands that fd to a page-fault handler process
 * (ember-uffd, or any handler written for Firecracker) over a Unix stream
 * socket. The handler then fills each page from the snapshot's memory file
 * when the guest first touches it.
 *
 * The handshake is Firecracker's: one sendmsg() carrying a JSON array with
 * one object per region,
 *   {"base_host_virt_addr": <host address>, "size": <bytes>,
 *    "offset": <byte offset in the memory file>, "page_size": 4096,
 *    "page_size_kib": 4096}
 * (page_size_kib is in bytes despite its name; Firecracker still sends it;
 * both are 2097152 for huge_pages "2M", whose faults the handler must fill
 * a whole 2 MiB page at a time, and without UFFDIO_ZEROPAGE)
 * with the userfaultfd attached as SCM_RIGHTS. The socket stays open: if
 * the handler dies, ember sees POLLHUP/EOF on it, while the guest's faults
 * would otherwise wait forever. */
#ifndef EMBER_UFFD_H
#define EMBER_UFFD_H

#include <stddef.h>
#include <stdint.h>

#include "../memory.h"

struct uffd_backend {
	int uffd; /* ember's own reference: faults keep waiting for a handler */
	int sock; /* connected to the handler; blocking; poll it for POLLHUP */
};

/* Create a userfaultfd (USERFAULTFD_IOC_NEW on /dev/userfaultfd, else the
 * userfaultfd(2) syscall; O_CLOEXEC|O_NONBLOCK) with the given UFFD_FEATURE_*
 * and register every region of mem for missing faults, marking mem lazy.
 * Returns the fd, or -errno with a one-line reason in err. */
int uffd_open_registered(struct guest_mem *mem, uint64_t features, char *err, size_t errlen);

/* Create a userfaultfd (USERFAULTFD_IOC_NEW on /dev/userfaultfd, else the
 * userfaultfd(2) syscall; O_CLOEXEC|O_NONBLOCK) with UFFD_FEATURE_EVENT_REMOVE
 * (as Firecracker asks for it), register every region of mem for missing
 * faults, connect to the Unix stream socket at path and send the handshake.
 * A region's memory-file offset is region.host - mem->host. Returns 0 with
 * b filled in, or -errno with a one-line reason in err and nothing left
 * open (b->uffd and b->sock are -1). */
int uffd_backend_connect(struct uffd_backend *b, struct guest_mem *mem, const char *path,
			 char *err, size_t errlen);

/* Close whichever of the two fds is open and set both to -1; calling it
 * again is harmless. b must have been through uffd_backend_connect(). */
void uffd_backend_close(struct uffd_backend *b);

#endif
