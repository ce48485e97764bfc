#include "boot_timer.h"

#include <string.h>

#include "../layout.h"
#include "../log.h"
#include "../vm.h"

static uint64_t us_since(const struct timespec *from, clockid_t clock)
{
	struct timespec now;
	clock_gettime(clock, &now);
	return (uint64_t)(now.tv_sec - from->tv_sec) * 1000000ULL +
	       (uint64_t)((now.tv_nsec - from->tv_nsec) / 1000);
}

void boot_timer_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct boot_timer *t = opaque;
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (offset != 0 || data[0] != BOOT_TIMER_MAGIC)
		return;
	uint64_t wall = us_since(&t->start_wall, CLOCK_MONOTONIC);
	uint64_t cpu = us_since(&t->start_cpu, CLOCK_PROCESS_CPUTIME_ID);
	atomic_store(&t->boot_us, wall);
	atomic_store(&t->boot_cpu_us, cpu);
	log_info("Guest-boot-time = %6llu us %llu ms, %6llu CPU us %llu CPU ms",
		 (unsigned long long)wall, (unsigned long long)wall / 1000,
		 (unsigned long long)cpu, (unsigned long long)cpu / 1000);
}

int boot_timer_init(struct boot_timer *t, struct vm *vm, const struct timespec *start_wall,
		    const struct timespec *start_cpu)
{
	memset(t, 0, sizeof(*t));
	t->start_wall = *start_wall;
	t->start_cpu = *start_cpu;
	return bus_register(&vm->mmio, LAYOUT_BOOT_TIMER, LAYOUT_BOOT_TIMER_SIZE,
			    boot_timer_access, t, "boot-timer");
}
