/* ACPI tables for kernels that find their hardware through ACPI rather
 * than the MP table and virtio_mmio.device= words: an RSDP pointing at an
 * XSDT, which lists a hardware-reduced FADT (with the reset register the
 * guest reboots through) and a MADT (each vCPU's local APIC, the IOAPIC);
 * the FADT points at a DSDT describing the serial port, the i8042 and each
 * virtio-mmio device, written as AML by the small encoder below. */
#ifndef EMBER_ACPI_H
#define EMBER_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct boot_mmio_dev;
struct guest_mem;

/* ---- AML encoder ------------------------------------------------------
 * Appends to a caller's buffer. Running out of room sets overflow (and
 * later calls do nothing), so a builder checks once at the end. Scopes,
 * devices and resource templates are opened with *_begin, which returns
 * a mark, and closed with aml_end / aml_resources_end, which insert the
 * package length in front of what was written since. */
struct aml {
	uint8_t *buf;
	size_t len, cap;
	bool overflow;
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
void aml_bytes(struct aml *a, const void *p, size_t n);
/* The shortest integer encoding: Zero, One, Byte/Word/DWord/QWord. */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EisaId("PNP0501"): the compressed 32-bit form of a 7-character id. */
void aml_eisa_id(struct aml *a, const char *id);
/* A name path ("\_SB_", "_HID", "\_SB_.COM1"; short segments padded
 * with '_'). */
void aml_name_string(struct aml *a, const char *path);
/* Name(name, ...): the caller appends the value. */
void aml_name(struct aml *a, const char *name);
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *name);
void aml_end(struct aml *a, size_t mark);
/* ResourceTemplate(): a Buffer of resource descriptors and an end tag. */
size_t aml_resources_begin(struct aml *a);
void aml_resources_end(struct aml *a, size_t mark);
void aml_memory32_fixed(struct aml *a, uint32_t base, uint32_t len);    /* ReadWrite */
void aml_io(struct aml *a, uint16_t port, uint8_t len);                 /* Decode16 */
void aml_interrupt(struct aml *a, uint32_t gsi); /* consumer, edge, active high, exclusive */

/* ---- tables ------------------------------------------------------------ */

/* The sum of len bytes, which is 0 for a table with a correct checksum. */
uint8_t acpi_sum(const void *p, size_t len);

/* Build every table into buf (cap bytes), laid out for guest-physical
 * address gpa: the RSDP at gpa itself, the other tables after it. ncpus
 * vCPUs (local APIC ids 0..ncpus-1), devs the virtio-mmio devices in the
 * order the guest should number them. Returns the bytes used, -EINVAL
 * for a vCPU count the MADT cannot describe, or -E2BIG if cap is too
 * small. */
int acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned ncpus, const struct boot_mmio_dev *devs,
	       unsigned ndevs);

/* acpi_build() into guest memory at LAYOUT_ACPI. Returns 0 or -errno. */
int acpi_write(struct guest_mem *mem, unsigned ncpus, const struct boot_mmio_dev *devs, unsigned ndevs);

#endif
