/* A memory file restored into 2 MiB huge pages on first touch.
 *
 * A File restore maps the memory file privately, so the kernel reads each
 * page when the guest first touches it. hugetlbfs pages cannot map a file
 * that way; instead ember maps them empty, registers them with a
 * userfaultfd of its own and serves their missing-page faults on a thread
 * (ember's "file faults" thread, under the VMM thread's seccomp filter):
 * each fault is filled with the file's 2 MiB at that offset with
 * UFFDIO_COPY. A page served once and given back later (the balloon,
 * virtio-mem) comes back as zeros, as anonymous memory would.
 *
 * If the file cannot be read, the guest cannot go on: the thread asks the
 * VM to stop (exit status 1) with the reason in the log. */
#ifndef EMBER_FILE_FAULTS_H
#define EMBER_FILE_FAULTS_H

#include <stdint.h>

#include "../memory.h"

struct vm;
struct file_faults;

/* Register every region of mem (page_size MEM_HUGE_2M) with a new
 * userfaultfd and start serving its faults from fd (a memory file laid
 * out as mem, guest memory at offset region.host - mem->host; fd is
 * duplicated). vm is told to stop if serving fails. Returns 0 with *out
 * set, or -errno with a one-line reason in err and nothing left behind. */
int file_faults_start(struct file_faults **out, struct guest_mem *mem, int fd, struct vm *vm,
		      char *err, size_t errlen);

/* Stop the thread, close the userfaultfd (unregistering the memory: a
 * page not filled by then reads as zeros) and free f. The vCPUs and
 * devices must be done with guest memory. NULL is harmless. */
void file_faults_stop(struct file_faults *f);

#endif
