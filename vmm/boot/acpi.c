/* ACPI 6.x tables (see acpi.h). Layout and field meanings follow the ACPI
 * specification, chapters 5.2 (tables) and 6.4 (resource descriptors),
 * and 20 (AML encoding). */
#include "acpi.h"

#include <errno.h>
#include <string.h>

#include "../layout.h"
#include "../memory.h"
#include "boot.h"

/* ---- AML encoder ------------------------------------------------------ */

#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_DUAL_NAME 0x2e
#define AML_MULTI_NAME 0x2f
#define AML_EXT_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_PREFIX */
#define AML_ROOT_CHAR '\\'

#define RES_IO 0x47        /* small descriptor: I/O port, 7 bytes of data */
#define RES_END 0x79       /* small descriptor: end tag, 1 byte (checksum) */
#define RES_MEMORY32_FIXED 0x86
#define RES_INTERRUPT 0x89 /* extended interrupt */

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	*a = (struct aml){ .buf = buf, .cap = cap };
}

static bool room(struct aml *a, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return false;
	}
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!room(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void aml_u8(struct aml *a, uint8_t v)
{
	aml_bytes(a, &v, 1);
}

/* Little-endian, n bytes of v. */
static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		aml_u8(a, (uint8_t)(v >> (8 * i)));
}

/* Put n bytes at offset at, moving what follows. */
static void insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
	if (!room(a, n))
		return;
	memmove(a->buf + at + n, a->buf + at, a->len - at);
	memcpy(a->buf + at, p, n);
	a->len += n;
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v <= 1) {
		aml_u8(a, v ? AML_ONE : AML_ZERO);
	} else if (v <= UINT8_MAX) {
		aml_u8(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= UINT16_MAX) {
		aml_u8(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= UINT32_MAX) {
		aml_u8(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_u8(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_u8(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static unsigned hex_digit(char c)
{
	return c >= 'A' ? (unsigned)(c - 'A' + 10) & 0xf : (unsigned)(c - '0') & 0xf;
}

void aml_eisa_id(struct aml *a, const char *id)
{
	/* Three letters of 5 bits each, then four hex digits, stored
	 * big-endian in a DWord. */
	uint32_t v = ((uint32_t)(id[0] - 0x40) & 0x1f) << 26 | ((uint32_t)(id[1] - 0x40) & 0x1f) << 21 |
		     ((uint32_t)(id[2] - 0x40) & 0x1f) << 16 | hex_digit(id[3]) << 12 | hex_digit(id[4]) << 8 |
		     hex_digit(id[5]) << 4 | hex_digit(id[6]);
	aml_u8(a, AML_DWORD_PREFIX);
	aml_u8(a, (uint8_t)(v >> 24));
	aml_u8(a, (uint8_t)(v >> 16));
	aml_u8(a, (uint8_t)(v >> 8));
	aml_u8(a, (uint8_t)v);
}

void aml_name_string(struct aml *a, const char *path)
{
	if (*path == AML_ROOT_CHAR) {
		aml_u8(a, AML_ROOT_CHAR);
		path++;
	}
	unsigned nseg = *path ? 1 : 0;
	for (const char *p = path; *p; p++)
		nseg += *p == '.';
	if (nseg == 0) {
		aml_u8(a, 0); /* NullName */
		return;
	}
	if (nseg == 2) {
		aml_u8(a, AML_DUAL_NAME);
	} else if (nseg > 2) {
		aml_u8(a, AML_MULTI_NAME);
		aml_u8(a, (uint8_t)nseg);
	}
	for (unsigned s = 0; s < nseg; s++) {
		size_t n = strcspn(path, ".");
		char seg[4] = { '_', '_', '_', '_' };
		memcpy(seg, path, n < 4 ? n : 4);
		aml_bytes(a, seg, 4);
		path += n + (path[n] == '.');
	}
}

void aml_name(struct aml *a, const char *name)
{
	aml_u8(a, AML_NAME_OP);
	aml_name_string(a, name);
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	aml_u8(a, AML_SCOPE_OP);
	size_t mark = a->len;
	aml_name_string(a, path);
	return mark;
}

size_t aml_device_begin(struct aml *a, const char *name)
{
	aml_u8(a, AML_EXT_PREFIX);
	aml_u8(a, AML_DEVICE_OP);
	size_t mark = a->len;
	aml_name_string(a, name);
	return mark;
}

/* The largest PkgLength n bytes encode. */
static size_t pkg_max(size_t n)
{
	return n == 1 ? 63 : ((size_t)1 << (4 + 8 * (n - 1))) - 1;
}

void aml_end(struct aml *a, size_t mark)
{
	if (a->overflow)
		return;
	/* PkgLength counts its own bytes: one byte up to 63, otherwise a
	 * lead byte (count in bits 7-6, low nibble of the length) and 1-3
	 * further bytes of it. */
	size_t body = a->len - mark, n = 1;
	while (n < 4 && body + n > pkg_max(n))
		n++;
	size_t total = body + n;
	if (total > pkg_max(n)) {
		a->overflow = true;
		return;
	}
	uint8_t pkg[4];
	if (n == 1) {
		pkg[0] = (uint8_t)total;
	} else {
		pkg[0] = (uint8_t)((n - 1) << 6 | (total & 0xf));
		for (size_t i = 1; i < n; i++)
			pkg[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	insert(a, mark, pkg, n);
}

size_t aml_resources_begin(struct aml *a)
{
	aml_u8(a, AML_BUFFER_OP);
	return a->len;
}

void aml_resources_end(struct aml *a, size_t mark)
{
	aml_u8(a, RES_END);
	aml_u8(a, 0); /* checksum 0: "treated as correct" */
	if (a->overflow)
		return;
	/* The buffer's size comes before its bytes, inside the package. */
	uint8_t sz[9];
	struct aml s;
	aml_init(&s, sz, sizeof(sz));
	aml_integer(&s, a->len - mark);
	insert(a, mark, sz, s.len);
	aml_end(a, mark);
}

void aml_memory32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	aml_u8(a, RES_MEMORY32_FIXED);
	aml_le(a, 9, 2);
	aml_u8(a, 1); /* read-write */
	aml_le(a, base, 4);
	aml_le(a, len, 4);
}

void aml_io(struct aml *a, uint16_t port, uint8_t len)
{
	aml_u8(a, RES_IO);
	aml_u8(a, 1); /* decodes 16 address bits */
	aml_le(a, port, 2);
	aml_le(a, port, 2);
	aml_u8(a, 1); /* alignment */
	aml_u8(a, len);
}

void aml_interrupt(struct aml *a, uint32_t gsi)
{
	aml_u8(a, RES_INTERRUPT);
	aml_le(a, 6, 2);
	aml_u8(a, 0x03); /* consumer, edge-triggered; active high, exclusive */
	aml_u8(a, 1);    /* one interrupt */
	aml_le(a, gsi, 4);
}

/* ---- tables ------------------------------------------------------------ */

#define OEM_ID "EMBER "
#define CREATOR_ID "EMBR"

struct __attribute__((packed)) acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
};

struct __attribute__((packed)) acpi_rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* of the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;  /* 2: ACPI 2.0 and later, with an XSDT */
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;
	uint8_t reserved[3];
};

/* Generic Address Structure. */
struct __attribute__((packed)) acpi_gas {
	uint8_t space_id; /* 0 memory, 1 I/O port */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size; /* 1 = byte */
	uint64_t address;
};

struct __attribute__((packed)) acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk, pm2_cnt_blk, pm_tmr_blk;
	uint32_t gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_blk_len, gpe1_blk_len;
	uint8_t gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control_reg, sleep_status_reg;
	char hypervisor_vendor_id[8];
};

_Static_assert(sizeof(struct acpi_header) == 36, "ACPI table header");
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS");
_Static_assert(offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT IAPC_BOOT_ARCH");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT (ACPI 6.x)");

#define FADT_RESET_REG_SUP (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)
#define FADT_PWR_BUTTON (1u << 4) /* no fixed-feature power button */
#define FADT_SLP_BUTTON (1u << 5) /* no fixed-feature sleep button */
#define IAPC_8042 (1u << 1)
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED (1u << 3)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* MADT entries. */
#define MADT_LOCAL_APIC 0
#define MADT_IOAPIC 1
#define MADT_INT_OVERRIDE 2
#define MADT_LOCAL_APIC_NMI 4
#define MADT_PCAT_COMPAT 1u /* the guest also has 8259 PICs (KVM's) */

struct __attribute__((packed)) madt_lapic {
	uint8_t type, length, processor_uid, apic_id;
	uint32_t flags; /* 1: enabled */
};

struct __attribute__((packed)) madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t address, gsi_base;
};

struct __attribute__((packed)) madt_override {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags; /* 0: as the bus (ISA: edge, active high) */
};

struct __attribute__((packed)) madt_lapic_nmi {
	uint8_t type, length, processor_uid;
	uint16_t flags;
	uint8_t lint;
};

uint8_t acpi_sum(const void *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += ((const uint8_t *)p)[i];
	return sum;
}

static void header(void *table, const char *sig, uint32_t len, uint8_t rev, const char *table_id)
{
	struct acpi_header h = {
		.length = len,
		.revision = rev,
		.oem_revision = 1,
		.creator_revision = 1,
	};
	memcpy(h.signature, sig, 4);
	memcpy(h.oem_id, OEM_ID, 6);
	memcpy(h.oem_table_id, table_id, 8);
	memcpy(h.creator_id, CREATOR_ID, 4);
	memcpy(table, &h, sizeof(h));
	uint8_t *t = table;
	t[offsetof(struct acpi_header, checksum)] = (uint8_t)-acpi_sum(t, len);
}

static size_t align16(size_t v)
{
	return (v + 15) & ~(size_t)15;
}

/* The DSDT's AML: every device under \_SB. */
static void dsdt_body(struct aml *a, const struct boot_mmio_dev *devs, unsigned ndevs)
{
	size_t sb = aml_scope_begin(a, "\\_SB_");

	size_t dev = aml_device_begin(a, "COM1");
	aml_name(a, "_HID");
	aml_eisa_id(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	size_t res = aml_resources_begin(a);
	aml_io(a, PORT_COM1, 8);
	aml_interrupt(a, IRQ_COM1);
	aml_resources_end(a, res);
	aml_end(a, dev);

	/* The keyboard controller, so a guest that looks for it through
	 * ACPI finds it: its reset command is how the guest reboots. */
	dev = aml_device_begin(a, "PS2_");
	aml_name(a, "_HID");
	aml_eisa_id(a, "PNP0303");
	aml_name(a, "_CRS");
	res = aml_resources_begin(a);
	aml_io(a, PORT_I8042_DATA, 1);
	aml_io(a, PORT_I8042_CMD, 1);
	aml_interrupt(a, IRQ_I8042);
	aml_resources_end(a, res);
	aml_end(a, dev);

	for (unsigned i = 0; i < ndevs; i++) {
		char name[8] = { 'V', (char)('0' + i / 100 % 10), (char)('0' + i / 10 % 10), (char)('0' + i % 10) };
		dev = aml_device_begin(a, name);
		aml_name(a, "_HID");
		aml_string(a, "LNRO0005"); /* what Linux's virtio_mmio driver matches */
		aml_name(a, "_UID");
		aml_integer(a, i);
		aml_name(a, "_CCA"); /* DMA is cache-coherent */
		aml_integer(a, 1);
		aml_name(a, "_CRS");
		res = aml_resources_begin(a);
		aml_memory32_fixed(a, (uint32_t)devs[i].base, (uint32_t)devs[i].size);
		aml_interrupt(a, devs[i].irq);
		aml_resources_end(a, res);
		aml_end(a, dev);
	}
	aml_end(a, sb);
}

int acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned ncpus, const struct boot_mmio_dev *devs,
	       unsigned ndevs)
{
	/* One-byte APIC ids, 0xff meaning "all processors". */
	if (ncpus == 0 || ncpus > 254 || ndevs > 1000)
		return -EINVAL;
	const size_t xsdt_off = align16(sizeof(struct acpi_rsdp));
	const size_t xsdt_len = sizeof(struct acpi_header) + 2 * sizeof(uint64_t);
	const size_t fadt_off = align16(xsdt_off + xsdt_len);
	const size_t madt_off = align16(fadt_off + sizeof(struct acpi_fadt));
	const size_t madt_len = sizeof(struct acpi_header) + 8 + ncpus * sizeof(struct madt_lapic) +
				sizeof(struct madt_ioapic) + sizeof(struct madt_override) +
				sizeof(struct madt_lapic_nmi);
	const size_t dsdt_off = align16(madt_off + madt_len);
	if (cap < dsdt_off + sizeof(struct acpi_header))
		return -E2BIG;
	memset(buf, 0, dsdt_off);

	/* DSDT: a header and the AML after it. */
	struct aml a;
	aml_init(&a, buf + dsdt_off + sizeof(struct acpi_header), cap - dsdt_off - sizeof(struct acpi_header));
	dsdt_body(&a, devs, ndevs);
	if (a.overflow)
		return -E2BIG;
	const size_t dsdt_len = sizeof(struct acpi_header) + a.len;
	header(buf + dsdt_off, "DSDT", (uint32_t)dsdt_len, 2, "EMBERVM ");

	/* MADT: where the local APICs are, then its entries. */
	uint8_t *p = buf + madt_off + sizeof(struct acpi_header);
	uint32_t lapic_addr = (uint32_t)LAYOUT_LAPIC, madt_flags = MADT_PCAT_COMPAT;
	memcpy(p, &lapic_addr, 4);
	memcpy(p + 4, &madt_flags, 4);
	p += 8;
	for (unsigned i = 0; i < ncpus; i++) {
		struct madt_lapic l = { MADT_LOCAL_APIC, sizeof(l), (uint8_t)i, (uint8_t)i, 1 };
		memcpy(p, &l, sizeof(l));
		p += sizeof(l);
	}
	/* The IOAPIC's id follows the vCPUs', as in the MP table. */
	struct madt_ioapic io = { MADT_IOAPIC, sizeof(io), (uint8_t)ncpus, 0, (uint32_t)LAYOUT_IOAPIC, 0 };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	/* KVM wires the PIT (ISA IRQ 0) to IOAPIC pin 2, as PCs do; the
	 * other ISA IRQs are identity-mapped, which needs no entry. */
	struct madt_override iso = { MADT_INT_OVERRIDE, sizeof(iso), 0, 0, 2, 0 };
	memcpy(p, &iso, sizeof(iso));
	p += sizeof(iso);
	/* LINT1 of every local APIC is the NMI. */
	struct madt_lapic_nmi nmi = { MADT_LOCAL_APIC_NMI, sizeof(nmi), 0xff, 0, 1 };
	memcpy(p, &nmi, sizeof(nmi));
	header(buf + madt_off, "APIC", (uint32_t)madt_len, 5, "EMBERVM ");

	/* FADT: hardware-reduced (no PM timer, SCI, GPEs or fixed buttons).
	 * The reset register is the i8042's command port with its reset
	 * command, so an ACPI reboot stops ember exactly as reboot=k does. */
	struct acpi_fadt f = {
		.iapc_boot_arch = IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED |
				  IAPC_CMOS_RTC_NOT_PRESENT,
		.flags = FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP | FADT_PWR_BUTTON | FADT_SLP_BUTTON,
		.reset_reg = { .space_id = 1, .bit_width = 8, .access_size = 1, .address = PORT_I8042_CMD },
		.reset_value = 0xfe,
		.minor_version = 5,
		.x_dsdt = gpa + dsdt_off,
	};
	memcpy(f.hypervisor_vendor_id, "EMBERVMM", 8);
	memcpy(buf + fadt_off, &f, sizeof(f));
	header(buf + fadt_off, "FACP", sizeof(f), 6, "EMBERVM ");

	uint64_t entries[2] = { gpa + fadt_off, gpa + madt_off };
	memcpy(buf + xsdt_off + sizeof(struct acpi_header), entries, sizeof(entries));
	header(buf + xsdt_off, "XSDT", (uint32_t)xsdt_len, 1, "EMBERVM ");

	struct acpi_rsdp r = {
		.revision = 2,
		.length = sizeof(r),
		.xsdt_address = gpa + xsdt_off,
	};
	memcpy(r.signature, "RSD PTR ", 8);
	memcpy(r.oem_id, OEM_ID, 6);
	r.checksum = (uint8_t)-acpi_sum(&r, 20);
	r.extended_checksum = (uint8_t)-acpi_sum(&r, sizeof(r));
	memcpy(buf, &r, sizeof(r));
	return (int)(dsdt_off + dsdt_len);
}

int acpi_write(struct guest_mem *mem, unsigned ncpus, const struct boot_mmio_dev *devs, unsigned ndevs)
{
	uint8_t *dst = mem_ptr(mem, LAYOUT_ACPI, LAYOUT_ACPI_SIZE);
	if (!dst)
		return -EFAULT;
	int n = acpi_build(dst, LAYOUT_ACPI_SIZE, LAYOUT_ACPI, ncpus, devs, ndevs);
	return n < 0 ? n : 0;
}
