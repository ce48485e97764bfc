#include "bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus)
{
	memset(bus, 0, sizeof(*bus));
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	memset(bus, 0, sizeof(*bus));
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access,
		 void *opaque, const char *name)
{
	if (len == 0 || base + len < base || !access)
		return -EINVAL;

	size_t pos = 0;
	while (pos < bus->count && bus->ranges[pos].base < base)
		pos++;
	/* Sorted and non-overlapping: only the neighbours can collide. */
	if (pos > 0) {
		const struct bus_range *prev = &bus->ranges[pos - 1];
		if (prev->base + prev->len > base)
			return -EEXIST;
	}
	if (pos < bus->count && base + len > bus->ranges[pos].base)
		return -EEXIST;

	if (bus->count == bus->cap) {
		size_t cap = bus->cap ? bus->cap * 2 : 8;
		struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->count - pos) * sizeof(*bus->ranges));
	bus->ranges[pos] = (struct bus_range){ base, len, access, opaque, name };
	bus->count++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, uint32_t len)
{
	size_t lo = 0, hi = bus->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return (len <= r->len - (addr - r->base)) ? r : NULL;
	}
	return NULL;
}

bool bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write)
{
	const struct bus_range *r = bus_find(bus, addr, len);
	if (!r) {
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	r->access(r->opaque, addr - r->base, data, len, is_write);
	return true;
}
