/* Intel MultiProcessor Specification 1.4 tables: a floating pointer
 * structure followed by a configuration table listing each processor, the
 * ISA bus, the IOAPIC and the routing of the 16 ISA interrupts. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../layout.h"
#include "../memory.h"
#include "boot.h"

#define MP_APIC_VERSION 0x14

struct __attribute__((packed)) mpf_intel {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;
	uint8_t length;    /* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
};

struct __attribute__((packed)) mpc_table {
	char signature[4]; /* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint32_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
	uint8_t type; /* 0 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag;
	uint32_t cpufeature;
	uint32_t featureflag;
	uint32_t reserved[2];
};

struct __attribute__((packed)) mpc_bus {
	uint8_t type; /* 1 */
	uint8_t busid;
	char bustype[6];
};

struct __attribute__((packed)) mpc_ioapic {
	uint8_t type; /* 2 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags;
	uint32_t apicaddr;
};

struct __attribute__((packed)) mpc_intsrc {
	uint8_t type; /* 3 = I/O interrupt, 4 = local interrupt */
	uint8_t irqtype;
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;
};

enum { MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC };
enum { MP_IRQ_INT = 0, MP_IRQ_NMI = 1, MP_IRQ_EXTINT = 3 };
#define CPU_ENABLED 1
#define CPU_BOOTPROCESSOR 2
#define MP_IOAPIC_USABLE 1

static uint8_t checksum(const void *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += ((const uint8_t *)p)[i];
	return (uint8_t)-sum;
}

int mptable_write(struct guest_mem *mem, uint64_t gpa, unsigned ncpus)
{
	const unsigned nirq = IOAPIC_NUM_PINS;
	size_t table_len = sizeof(struct mpc_table) + ncpus * sizeof(struct mpc_cpu) +
			   sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
			   (nirq + 2) * sizeof(struct mpc_intsrc);
	size_t total = sizeof(struct mpf_intel) + table_len;
	uint8_t *base = mem_ptr(mem, gpa, total);
	if (!base || ncpus == 0 || ncpus > 254)
		return -EFAULT;
	memset(base, 0, total);

	struct mpf_intel *mpf = (struct mpf_intel *)base;
	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(gpa + sizeof(*mpf));
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = checksum(mpf, sizeof(*mpf));

	uint8_t *p = base + sizeof(*mpf);
	struct mpc_table *table = (struct mpc_table *)p;
	p += sizeof(*table);

	for (unsigned i = 0; i < ncpus; i++) {
		struct mpc_cpu *cpu = (struct mpc_cpu *)p;
		cpu->type = MP_PROCESSOR;
		cpu->apicid = (uint8_t)i;
		cpu->apicver = MP_APIC_VERSION;
		cpu->cpuflag = CPU_ENABLED | (i == 0 ? CPU_BOOTPROCESSOR : 0);
		cpu->cpufeature = 0x600; /* family 6 */
		cpu->featureflag = (1u << 9) | (1u << 0); /* APIC, FPU */
		p += sizeof(*cpu);
	}
	struct mpc_bus *bus = (struct mpc_bus *)p;
	bus->type = MP_BUS;
	bus->busid = 0;
	memcpy(bus->bustype, "ISA   ", 6);
	p += sizeof(*bus);

	uint8_t ioapic_id = (uint8_t)ncpus;
	struct mpc_ioapic *ioapic = (struct mpc_ioapic *)p;
	ioapic->type = MP_IOAPIC;
	ioapic->apicid = ioapic_id;
	ioapic->apicver = MP_APIC_VERSION;
	ioapic->flags = MP_IOAPIC_USABLE;
	ioapic->apicaddr = (uint32_t)LAYOUT_IOAPIC;
	p += sizeof(*ioapic);

	/* IRQ n -> IOAPIC pin n, for the ISA devices and the virtio-mmio
	 * ones above them; conforming (edge, active high) like ISA. */
	for (unsigned irq = 0; irq < nirq; irq++) {
		struct mpc_intsrc *src = (struct mpc_intsrc *)p;
		src->type = MP_INTSRC;
		src->irqtype = MP_IRQ_INT;
		src->srcbus = 0;
		src->srcbusirq = (uint8_t)irq;
		src->dstapic = ioapic_id;
		src->dstirq = (uint8_t)irq;
		p += sizeof(*src);
	}
	/* LINT0 is the 8259's ExtINT, LINT1 the NMI, on every LAPIC (0xff). */
	struct mpc_intsrc *lint = (struct mpc_intsrc *)p;
	lint->type = MP_LINTSRC;
	lint->irqtype = MP_IRQ_EXTINT;
	lint->dstapic = 0xff;
	lint->dstirq = 0;
	p += sizeof(*lint);
	lint = (struct mpc_intsrc *)p;
	lint->type = MP_LINTSRC;
	lint->irqtype = MP_IRQ_NMI;
	lint->dstapic = 0xff;
	lint->dstirq = 1;
	p += sizeof(*lint);

	memcpy(table->signature, "PCMP", 4);
	table->length = (uint16_t)table_len;
	table->spec = 4;
	memcpy(table->oem, "EMBER   ", 8);
	memcpy(table->productid, "MICROVM     ", 12);
	table->oemcount = (uint16_t)(ncpus + 2 + nirq + 2); /* entries */
	table->lapic = (uint32_t)LAYOUT_LAPIC;
	table->checksum = checksum(table, table_len);
	return 0;
}
