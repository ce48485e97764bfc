/* The allow-list as data, and its compilation to BPF with libseccomp.
 *
 * Each rule names a syscall, the roles (threads) that may make it, and
 * optionally one condition on one argument, (arg & mask) == value. The
 * jail's filter (installed by ember-jailer before exec) is the union of
 * every rule, including the start-up rules no thread role has. Anything
 * not listed kills the process.
 *
 * This file is compiled into the build-time generator (gen.c) only:
 * ember and ember-jailer carry the finished BPF programs and install them
 * without libseccomp (../seccomp.c).
 *
 * io_uring operations are not syscalls and bypass seccomp; ember submits
 * only reads, writes, polls and timeouts on fds it already holds. */
#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define VMM (1u << SECCOMP_ROLE_VMM)
#define API (1u << SECCOMP_ROLE_API)
#define VCPU (1u << SECCOMP_ROLE_VCPU)
#define ALL (VMM | API | VCPU)
#define START 0u /* the jail's filter only: the loader and ember's start-up */

#define NO_ARG (-1)

struct seccomp_rule {
	int nr;
	unsigned roles;
	int arg; /* NO_ARG, or the argument the condition tests */
	uint64_t mask, value;
	int ret_errno; /* 0: allow; otherwise fail with this errno */
};

#define ALLOW(sys, roles) { SCMP_SYS(sys), roles, NO_ARG, 0, 0, 0 }
#define ALLOW_IF(sys, roles, arg, mask, value) { SCMP_SYS(sys), roles, arg, mask, value, 0 }
#define FAIL_WITH(sys, roles, err) { SCMP_SYS(sys), roles, NO_ARG, 0, 0, err }

/* ioctl request numbers carry their "type" byte in bits 8-15. */
#define IOCTL_TYPE_MASK 0xff00ULL
#define IOCTL_TYPE(t) ((uint64_t)(t) << 8)

static const struct seccomp_rule rules[] = {
	/* -- start-up: the dynamic loader, libc initialisation, exec -- */
	ALLOW(execve, START),            /* the jailer's exec of ember */
	ALLOW_IF(prctl, START, 0, ~0ULL, PR_SET_NO_NEW_PRIVS), /* before ember's first filter */
	ALLOW(arch_prctl, START),        /* TLS set-up */
	ALLOW(set_tid_address, START),   /* libc start-up */
	ALLOW(access, VMM),              /* the loader probes ld.so.preload; file checks */
	ALLOW(prlimit64, START),         /* libc reads the stack limit */
	ALLOW(pread64, START),           /* the loader reads ELF headers */
	ALLOW(readlink, START),          /* static glibc reads /proc/self/exe (dlopen's $ORIGIN) */

	/* -- memory -- */
	ALLOW(brk, ALL),                 /* malloc */
	ALLOW(mmap, ALL),                /* malloc, guest memory, kvm_run, thread stacks */
	ALLOW(munmap, ALL),              /* free(), guest memory at exit */
	ALLOW(mprotect, ALL),            /* thread stack guard pages, the loader */
	ALLOW(madvise, ALL),             /* malloc trimming; freeing thread stacks; balloon pages (VMM) */
	ALLOW(mremap, VMM | API),        /* realloc of large buffers (the bus, API I/O) */
	/* machine-config ember_mem_backend "memfd" and ember_numa_node: the VMM
	 * thread creates guest memory (vm_create) and binds it to a node. */
	ALLOW(memfd_create, VMM),
	ALLOW(mbind, VMM),

	/* -- threads and signals -- */
	/* pthread_create: only threads (CLONE_THREAD) in the process. clone3's
	 * flags sit in a struct seccomp cannot read, so it fails with ENOSYS and
	 * glibc falls back to clone, whose flags are checked. */
	ALLOW_IF(clone, VMM, 0, CLONE_THREAD, CLONE_THREAD),
	FAIL_WITH(clone3, VMM, ENOSYS),  /* (see above) */
	ALLOW(set_robust_list, ALL),     /* each new thread */
	ALLOW(rseq, ALL),                /* each new thread */
	ALLOW(futex, ALL),               /* mutexes, condition variables, joins */
	ALLOW(exit, ALL),                /* a thread ends */
	ALLOW(exit_group, ALL),          /* ember ends (any thread may fail fatally) */
	ALLOW(rt_sigprocmask, ALL),      /* signals stay blocked outside the vCPU kick */
	ALLOW(rt_sigaction, VMM),        /* signal set-up; the vCPU kick handler */
	ALLOW(rt_sigpending, VMM),       /* a write failed EFBIG: was it SIGXFSZ? (controller.c) */
	ALLOW(rt_sigreturn, ALL),        /* return from the vCPU kick handler */
	ALLOW(restart_syscall, ALL),     /* a poll interrupted by the kick signal */
	ALLOW(sigaltstack, ALL),         /* libc and sanitizer runtimes */
	ALLOW(tgkill, VMM | VCPU),       /* kick a vCPU out of KVM_RUN; raise() on abort */
	ALLOW(getpid, ALL),              /* pthread_kill, raise */
	ALLOW(gettid, ALL),              /* libc's locks and raise */
	ALLOW(sched_yield, ALL),         /* libc spin-waits */
	ALLOW_IF(prctl, ALL, 0, ~0ULL, PR_SET_NAME), /* thread names */
	ALLOW(sched_getaffinity, VMM),   /* libc sizes thread stacks */
	/* Installing a thread's own filter: it can only narrow what is allowed. */
	ALLOW(seccomp, ALL),             /* the API and vCPU threads install their filters */

	/* -- time -- */
	ALLOW(clock_gettime, ALL),       /* usually the vDSO; the syscall when not */

	/* -- files: the kernel, initrd, drives, the tap, logs and metrics -- */
	ALLOW(openat, VMM),              /* drives can be swapped after boot (PATCH /drives) */
	ALLOW(close, ALL),               /* files, sockets, API clients */
	ALLOW(read, ALL),                /* eventfds, files, the console */
	ALLOW(write, ALL),               /* the console (vCPUs' serial), logs, eventfds */
	ALLOW(readv, VMM),               /* the tap */
	ALLOW(writev, VMM),
	ALLOW(pread64, VMM),             /* kernel and initrd loading */
	ALLOW(preadv, VMM),              /* the Sync block engine */
	ALLOW(pwritev, VMM),             /* the Sync block engine */
	ALLOW(lseek, VMM),               /* sizes of images and drives */
	ALLOW(fdatasync, VMM),           /* virtio-blk flush, Sync engine */
	ALLOW(fallocate, VMM),           /* virtio-blk discard / write zeroes */
	ALLOW(newfstatat, VMM),          /* stat/fstat of images, drives, socket paths */
	/* hostfile_open() opens a client's path with O_NONBLOCK, then clears it. */
	ALLOW_IF(fcntl, VMM, 1, ~0ULL, F_GETFL),
	ALLOW_IF(fcntl, VMM, 1, ~0ULL, F_SETFL),
	ALLOW_IF(fcntl, VMM, 1, ~0ULL, F_DUPFD_CLOEXEC), /* the file faults thread's own memory file fd */
	ALLOW(unlink, VMM),              /* stale API and vsock socket files */
	ALLOW(sysinfo, VMM),             /* checking mem_size_mib against the host */
	/* Snapshots: each file is created under a new random name (openat
	 * with O_EXCL; getrandom, below, draws the name and the generation
	 * id), written (the memory file sized and written sparse), synced,
	 * renamed over its target, and the target's directory synced (openat
	 * O_DIRECTORY, fsync); a failure unlinks the new files (unlink). lstat
	 * (newfstatat) checks the targets' kind. mincore finds the guest
	 * pages ever touched (skipped holes, the working set). */
	ALLOW(ftruncate, VMM),
	ALLOW(pwrite64, VMM),
	ALLOW(fsync, VMM),
	ALLOW(rename, VMM),
	ALLOW(mincore, VMM),
	/* Restoring through a page-fault handler: the userfaultfd (the
	 * syscall, or /dev/userfaultfd's ioctl) and its UFFDIO_* ioctls; the
	 * fd goes to the handler with sendmsg. */
	ALLOW(userfaultfd, VMM),
	ALLOW(sendmsg, VMM),
	ALLOW(getrandom, ALL),           /* virtio-rng; libc */

	/* -- event plumbing -- */
	ALLOW(io_uring_setup, VMM),      /* the VMM thread's event loop */
	ALLOW(io_uring_enter, VMM),
	ALLOW(eventfd2, VMM),            /* ioeventfds, irqfds, the API queue */
	ALLOW(signalfd4, VMM),           /* SIGINT/SIGTERM/SIGHUP as events */
	ALLOW(poll, API),                /* the API server's loop */
	ALLOW(poll, VMM),                /* the file faults thread waits for faults (snapshot/file_faults.c) */

	/* -- sockets: the API (Unix), vsock's host side (Unix) -- */
	ALLOW_IF(socket, VMM, 0, ~0ULL, AF_UNIX), /* the API, vsock, a migration's unix: address */
	/* A live migration's tcp: connection, the only network ember opens
	 * (the source's on PUT /ember/migration, the destination's listener). */
	ALLOW_IF(socket, VMM, 0, ~0ULL, AF_INET),
	ALLOW_IF(socket, VMM, 0, ~0ULL, AF_INET6),
	ALLOW_IF(setsockopt, VMM, 2, ~0ULL, SO_REUSEADDR), /* the destination's tcp: listener */
	ALLOW(bind, VMM),                /* the API and vsock listening sockets */
	ALLOW(listen, VMM),
	ALLOW(accept4, VMM | API),       /* API clients; host-side vsock connections */
	ALLOW(connect, VMM),             /* guest-initiated vsock to <uds_path>_<port>; live-socket probe */
	ALLOW(shutdown, VMM),            /* vsock half-close */
	ALLOW(sendto, VMM | API),        /* send() on API and vsock sockets */
	ALLOW(recvfrom, VMM | API),      /* recv() on API and vsock sockets */

	/* -- ioctls, by request type -- */
	ALLOW_IF(ioctl, VMM | VCPU, 1, IOCTL_TYPE_MASK, IOCTL_TYPE(KVMIO)), /* KVM_* */
	ALLOW_IF(ioctl, VMM, 1, IOCTL_TYPE_MASK, IOCTL_TYPE('T')), /* TUN* and the console's TCGETS/TCSETS */
	ALLOW_IF(ioctl, VCPU, 1, ~0ULL, TUNSETOFFLOAD), /* the guest acks virtio-net offloads in an MMIO write */
	ALLOW_IF(ioctl, VMM, 1, ~0ULL, BLKGETSIZE64),                /* a drive that is a block device */
	ALLOW_IF(ioctl, VMM, 1, IOCTL_TYPE_MASK, IOCTL_TYPE(UFFDIO)), /* UFFDIO_API, UFFDIO_REGISTER */
	ALLOW_IF(ioctl, VMM, 1, ~0ULL, USERFAULTFD_IOC_NEW),         /* /dev/userfaultfd */
	ALLOW_IF(ioctl, ALL, 1, ~0ULL, TCGETS), /* stdio: is stdout a terminal? (first console write) */

#ifdef __SANITIZE_ADDRESS__
	/* -- SAN=1 builds only (ASan + UBSan): LeakSanitizer's exit-time check
	 * runs a helper task (clone without CLONE_THREAD) that ptrace-stops
	 * every thread and lists /proc/self/task; reports read /proc/self/maps. -- */
	ALLOW(prctl, ALL),               /* PR_GET_DUMPABLE, PR_SET_PTRACER */
	ALLOW(clone, ALL),               /* the stop-the-world helper task */
	ALLOW(ptrace, ALL),              /* it attaches to every thread */
	ALLOW(wait4, ALL),               /* ... and the process waits for it */
	ALLOW(getdents, ALL),            /* listing /proc/self/task */
	ALLOW(getdents64, ALL),
	ALLOW(open, ALL),                /* the runtime's own raw file syscalls */
	ALLOW(openat, ALL),
	ALLOW(stat, ALL),
	ALLOW(fstat, ALL),
	ALLOW(lstat, ALL),
	ALLOW(newfstatat, ALL),
	ALLOW(lseek, ALL),
	ALLOW(readlink, ALL),
	ALLOW(prlimit64, ALL),           /* stack and core limits in reports */
	ALLOW(getrlimit, ALL),
	ALLOW(getppid, ALL),             /* the helper watches its parent */
	ALLOW(kill, ALL),
	ALLOW(pipe2, ALL),
#endif
};

/* The API and vCPU threads are created by the VMM thread after its filter
 * is on, and filters stack: the VMM filter must therefore also hold every
 * API and vCPU rule. The jail's holds everything. */
static bool rule_in_filter(const struct seccomp_rule *r, enum seccomp_role role)
{
	switch (role) {
	case SECCOMP_ROLE_JAIL: return true;
	case SECCOMP_ROLE_VMM: return r->roles != START;
	default: return (r->roles & (1u << role)) != 0;
	}
}

int seccomp_compile(enum seccomp_role role, bool trace, int fd, char *err, size_t errlen)
{
	/* The trace variant hands the role to the tracer as the action's data. */
	scmp_filter_ctx ctx = seccomp_init(trace ? SCMP_ACT_TRACE((uint16_t)role) : SCMP_ACT_KILL_PROCESS);
	if (!ctx) {
		snprintf(err, errlen, "seccomp: cannot create a filter");
		return -1;
	}
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < sizeof(rules) / sizeof(rules[0]); i++) {
		const struct seccomp_rule *r = &rules[i];
		if (!rule_in_filter(r, role))
			continue;
		uint32_t action = r->ret_errno ? SCMP_ACT_ERRNO((uint32_t)r->ret_errno) : SCMP_ACT_ALLOW;
		if (r->arg == NO_ARG)
			rc = seccomp_rule_add(ctx, action, r->nr, 0);
		else
			rc = seccomp_rule_add(ctx, action, r->nr, 1,
					      SCMP_CMP((unsigned)r->arg, SCMP_CMP_MASKED_EQ, r->mask, r->value));
		if (rc)
			snprintf(err, errlen, "seccomp: rule %zu (syscall %d) for role %d: %s", i, r->nr,
				 (int)role, strerror(-rc));
	}
	if (rc == 0 && (rc = seccomp_export_bpf(ctx, fd)))
		snprintf(err, errlen, "seccomp: cannot export the filter for role %d: %s", (int)role,
			 strerror(-rc));
	seccomp_release(ctx);
	return rc ? -1 : 0;
}
