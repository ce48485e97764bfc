#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "../../vmm/bus.h"

struct probe {
	uint64_t offset;
	uint32_t len;
	bool is_write;
	int calls;
};

static void probe_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct probe *p = opaque;
	p->offset = offset;
	p->len = len;
	p->is_write = is_write;
	p->calls++;
	if (!is_write)
		memset(data, 0xab, len);
}

Test(bus, dispatch_finds_range_and_passes_offset)
{
	struct bus bus;
	struct probe a = { 0 }, b = { 0 };
	bus_init(&bus);
	cr_assert_eq(bus_register(&bus, 0x1000, 0x100, probe_access, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x3f8, 8, probe_access, &b, "b"), 0);

	uint8_t data[8] = { 0 };
	cr_assert(bus_dispatch(&bus, 0x10f0, data, 4, false));
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.offset, 0xf0);
	cr_assert_eq(a.len, 4);
	cr_assert_eq(data[0], 0xab);

	cr_assert(bus_dispatch(&bus, 0x3fd, data, 1, true));
	cr_assert_eq(b.calls, 1);
	cr_assert_eq(b.offset, 5);
	cr_assert(b.is_write);
	bus_destroy(&bus);
}

Test(bus, rejects_overlaps_empty_and_wrapping_ranges)
{
	struct bus bus;
	struct probe a = { 0 };
	bus_init(&bus);
	cr_assert_eq(bus_register(&bus, 0x1000, 0x100, probe_access, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x10ff, 1, probe_access, &a, "x"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0xf00, 0x101, probe_access, &a, "x"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0x0, 0x10000, probe_access, &a, "x"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0x2000, 0, probe_access, &a, "x"), -EINVAL);
	cr_assert_eq(bus_register(&bus, UINT64_MAX - 1, 4, probe_access, &a, "x"), -EINVAL);
	/* Adjacent ranges are fine. */
	cr_assert_eq(bus_register(&bus, 0x1100, 0x10, probe_access, &a, "x"), 0);
	cr_assert_eq(bus_register(&bus, 0xff0, 0x10, probe_access, &a, "x"), 0);
	cr_assert_eq(bus.count, 3);
	bus_destroy(&bus);
}

Test(bus, unclaimed_reads_are_all_ones_and_straddling_access_misses)
{
	struct bus bus;
	struct probe a = { 0 };
	bus_init(&bus);
	cr_assert_eq(bus_register(&bus, 0x1000, 0x10, probe_access, &a, "a"), 0);
	uint8_t data[4] = { 0 };
	cr_assert_not(bus_dispatch(&bus, 0x2000, data, 4, false));
	cr_assert_eq(data[0], 0xff);
	cr_assert_eq(data[3], 0xff);
	/* An access that starts inside but runs past the end is not the device's. */
	cr_assert_not(bus_dispatch(&bus, 0x100e, data, 4, false));
	cr_assert_eq(a.calls, 0);
	bus_destroy(&bus);
}

Test(bus, many_ranges_stay_sorted)
{
	struct bus bus;
	struct probe a = { 0 };
	bus_init(&bus);
	for (uint64_t i = 0; i < 64; i++)
		cr_assert_eq(bus_register(&bus, ((i * 37) % 64) * 0x100, 0x100, probe_access, &a, "r"), 0);
	for (size_t i = 1; i < bus.count; i++)
		cr_assert_lt(bus.ranges[i - 1].base, bus.ranges[i].base);
	for (uint64_t i = 0; i < 64; i++) {
		const struct bus_range *r = bus_find(&bus, i * 0x100 + 0x80, 1);
		cr_assert_not_null(r);
		cr_assert_eq(r->base, i * 0x100);
	}
	bus_destroy(&bus);
}
