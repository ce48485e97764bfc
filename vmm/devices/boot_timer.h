/* The boot timer: a guest write of the byte 123 to its MMIO page
 * (LAYOUT_BOOT_TIMER) logs the wall and CPU time since ember started.
 * The guest's init does this once it is up (Firecracker's convention). */
#ifndef EMBER_BOOT_TIMER_H
#define EMBER_BOOT_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct vm;

#define BOOT_TIMER_MAGIC 123

struct boot_timer {
	struct timespec start_wall; /* CLOCK_MONOTONIC at ember's start */
	struct timespec start_cpu;  /* CLOCK_PROCESS_CPUTIME_ID at ember's start */
	atomic_ullong boot_us;      /* wall time of the last signal, 0 before */
	atomic_ullong boot_cpu_us;
};

int boot_timer_init(struct boot_timer *t, struct vm *vm, const struct timespec *start_wall,
		    const struct timespec *start_cpu);
void boot_timer_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
