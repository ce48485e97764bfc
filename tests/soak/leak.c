/* soak-leak.so: turns ember into one that leaks, to show that the soak's
 * growth check fails on a real leak. Preloaded into ember (LD_PRELOAD), it
 * keeps open every socket ember accepts (an API client) when ember closes
 * it, and leaks 64 KiB of heap, written to, with each: ember's own open
 * files and RSS then grow with every client, as they would if ember forgot
 * a close() or a free(). Nothing here runs a system call that ember's
 * seccomp filters do not already allow on the thread calling it. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LEAK_BYTES (64 * 1024)
#define MAX_FD 65536

static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_close)(int);
static atomic_bool held[MAX_FD];
static void *volatile leaked; /* so the compiler keeps the allocations */

/* Resolved before main(), before ember installs its filters. */
__attribute__((constructor)) static void leak_init(void)
{
	real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
	real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
	if (!real_accept4 || !real_close)
		abort();
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	int client = real_accept4(fd, addr, len, flags);
	if (client >= 0 && client < MAX_FD) {
		atomic_store(&held[client], true);
		char *p = malloc(LEAK_BYTES);
		if (p)
			memset(p, 0x5a, LEAK_BYTES);
		leaked = p;
	}
	return client;
}

int close(int fd)
{
	if (fd >= 0 && fd < MAX_FD && atomic_exchange(&held[fd], false))
		return 0; /* left open */
	return real_close(fd);
}
