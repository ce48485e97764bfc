/* Address-range maps for port I/O and MMIO, and dispatch of vCPU exits.
 *
 * Devices register [base, base+len) ranges during setup, before any vCPU
 * runs; ranges may not overlap. Lookup is a binary search over a sorted
 * array and takes no lock, so the map must not change once vCPUs run. */
#ifndef EMBER_BUS_H
#define EMBER_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called on the vCPU thread. offset is relative to the range's base; data
 * holds len (1..8) bytes, little-endian: filled by the handler on reads,
 * provided by the guest on writes. */
typedef void (*bus_access_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_access_fn access;
	void *opaque;
	const char *name;
};

struct bus {
	struct bus_range *ranges; /* sorted by base */
	size_t count;
	size_t cap;
};

void bus_init(struct bus *bus);
void bus_destroy(struct bus *bus);

/* Returns 0, -EINVAL for an empty or wrapping range, -EEXIST if it
 * overlaps a registered range, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access,
		 void *opaque, const char *name);

/* The range containing [addr, addr+len), or NULL. */
const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, uint32_t len);

/* Dispatch an access. Returns false if no device claims it; then reads
 * return all-ones, as on real hardware with nothing decoding the address. */
bool bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write);

#endif
