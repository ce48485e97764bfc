#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../vmm/boot/acpi.h"
#include "../../vmm/boot/boot.h"
#include "../../vmm/layout.h"
#include "../../vmm/memory.h"

static uint8_t out[1 << 16];

#define expect_bytes(a, ...)                                                                         \
	do {                                                                                         \
		static const uint8_t want_[] = { __VA_ARGS__ };                                      \
		cr_assert(!(a)->overflow);                                                           \
		cr_assert_eq((a)->len, sizeof(want_), "%zu bytes, want %zu", (a)->len, sizeof(want_)); \
		cr_assert_arr_eq((a)->buf, want_, sizeof(want_));                                    \
	} while (0)

Test(aml, integers_take_the_shortest_encoding)
{
	struct aml a;
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 0x17);
	aml_integer(&a, 0x3f8);
	aml_integer(&a, 0xc0001000);
	aml_integer(&a, 0x100000000ULL);
	expect_bytes(&a, 0x00, 0x01, 0x0a, 0x17, 0x0b, 0xf8, 0x03, 0x0c, 0x00, 0x10, 0x00, 0xc0, 0x0e, 0x00,
		     0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00);
}

Test(aml, eisa_id_and_names)
{
	struct aml a;
	aml_init(&a, out, sizeof(out));
	aml_eisa_id(&a, "PNP0501");
	aml_name_string(&a, "\\_SB_");
	aml_name_string(&a, "_SB.COM1");
	aml_name_string(&a, "\\A.B.C");
	expect_bytes(&a, 0x0c, 0x41, 0xd0, 0x05, 0x01,        /* EisaId ("PNP0501") */
		     '\\', '_', 'S', 'B', '_',                     /* \_SB_ */
		     0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1', /* dual name */
		     '\\', 0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_');
}

/* What iasl 20200925 compiles from
 *   Device (V000) {
 *       Name (_HID, "LNRO0005")  Name (_UID, Zero)  Name (_CCA, One)
 *       Name (_CRS, ResourceTemplate () {
 *           Memory32Fixed (ReadWrite, 0xC0001000, 0x00001000, )
 *           Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {5} }) }
 * (67 bytes: the device's PkgLength takes two bytes). */
Test(aml, virtio_device_matches_iasl)
{
	struct aml a;
	aml_init(&a, out, sizeof(out));
	size_t dev = aml_device_begin(&a, "V000");
	aml_name(&a, "_HID");
	aml_string(&a, "LNRO0005");
	aml_name(&a, "_UID");
	aml_integer(&a, 0);
	aml_name(&a, "_CCA");
	aml_integer(&a, 1);
	aml_name(&a, "_CRS");
	size_t res = aml_resources_begin(&a);
	aml_memory32_fixed(&a, 0xc0001000, 0x1000);
	aml_interrupt(&a, 5);
	aml_resources_end(&a, res);
	aml_end(&a, dev);
	expect_bytes(&a, 0x5b, 0x82, 0x41, 0x04, 0x56, 0x30, 0x30, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0d,
		     0x4c, 0x4e, 0x52, 0x4f, 0x30, 0x30, 0x30, 0x35, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00,
		     0x08, 0x5f, 0x43, 0x43, 0x41, 0x01, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x1a, 0x0a, 0x17,
		     0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00, 0x89, 0x06, 0x00,
		     0x03, 0x01, 0x05, 0x00, 0x00, 0x00, 0x79, 0x00);
}

/* iasl's output for
 *   Device (COM1) {
 *       Name (_HID, EisaId ("PNP0501"))  Name (_UID, Zero)
 *       Name (_CRS, ResourceTemplate () {
 *           IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08, )
 *           Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {4} }) } */
Test(aml, serial_device_matches_iasl)
{
	struct aml a;
	aml_init(&a, out, sizeof(out));
	size_t dev = aml_device_begin(&a, "COM1");
	aml_name(&a, "_HID");
	aml_eisa_id(&a, "PNP0501");
	aml_name(&a, "_UID");
	aml_integer(&a, 0);
	aml_name(&a, "_CRS");
	size_t res = aml_resources_begin(&a);
	aml_io(&a, 0x3f8, 8);
	aml_interrupt(&a, 4);
	aml_resources_end(&a, res);
	aml_end(&a, dev);
	expect_bytes(&a, 0x5b, 0x82, 0x31, 0x43, 0x4f, 0x4d, 0x31, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41,
		     0xd0, 0x05, 0x01, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11,
		     0x16, 0x0a, 0x13, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x89, 0x06, 0x00, 0x03,
		     0x01, 0x04, 0x00, 0x00, 0x00, 0x79, 0x00);
}

/* PkgLength: 1 byte up to 63, then 2 (to 4095), then 3 bytes. */
Test(aml, package_lengths_grow_by_size)
{
	static uint8_t body[5000];
	memset(body, 0xa5, sizeof(body));
	const size_t sizes[] = { 58, 59, 4089, 4090 }; /* + 4 bytes of name */
	const uint8_t lead[][3] = { { 63 }, { 0x41, 0x04 }, { 0x4f, 0xff }, { 0x81, 0x00, 0x01 } };
	const size_t nlen[] = { 1, 2, 2, 3 };
	for (unsigned i = 0; i < 4; i++) {
		struct aml a;
		aml_init(&a, out, sizeof(out));
		size_t mark = aml_scope_begin(&a, "ABCD");
		aml_bytes(&a, body, sizes[i]);
		aml_end(&a, mark);
		cr_assert(!a.overflow);
		cr_assert_eq(a.len, 1 + nlen[i] + 4 + sizes[i]);
		cr_assert_arr_eq(out + 1, lead[i], nlen[i], "size %zu", sizes[i]);
		cr_assert_eq(memcmp(out + 1 + nlen[i], "ABCD", 4), 0);
	}
}

Test(aml, overflow_sticks_and_writes_nothing_past_the_end)
{
	uint8_t small[16 + 4];
	memset(small, 0x77, sizeof(small));
	struct aml a;
	aml_init(&a, small, 16);
	size_t mark = aml_scope_begin(&a, "\\_SB_");
	aml_string(&a, "a string longer than the buffer");
	aml_end(&a, mark);
	cr_assert(a.overflow);
	cr_assert_leq(a.len, 16);
	for (unsigned i = 16; i < sizeof(small); i++)
		cr_assert_eq(small[i], 0x77);
}

/* ---- tables ---------------------------------------------------------- */

#define GPA 0xe0000ULL

static const struct boot_mmio_dev devs[3] = {
	{ 0xc0001000, 0x1000, 5 },
	{ 0xc0002000, 0x1000, 6 },
	{ 0xc0003000, 0x1000, 7 },
};

static const uint8_t *at(uint64_t gpa)
{
	cr_assert_geq(gpa, GPA);
	cr_assert_lt(gpa, GPA + sizeof(out));
	return out + (gpa - GPA);
}

static uint32_t u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* A table with signature sig at gpa: its length, checked against the
 * buffer, with a correct checksum. */
static uint32_t table(uint64_t gpa, const char *sig)
{
	const uint8_t *t = at(gpa);
	cr_assert_eq(memcmp(t, sig, 4), 0, "%.4s at 0x%llx, want %s", (const char *)t, (unsigned long long)gpa,
		     sig);
	uint32_t len = u32(t + 4);
	cr_assert_geq(len, 36);
	cr_assert_leq(gpa - GPA + len, sizeof(out));
	cr_assert_eq(acpi_sum(t, len), 0, "%s checksum", sig);
	cr_assert_eq(memcmp(t + 10, "EMBER ", 6), 0);
	return len;
}

/* From the RSDP down: every pointer lands on the table it should, with
 * a good checksum, and each table says what the machine has. */
static void check_tables(int n, unsigned ncpus, const struct boot_mmio_dev *d, unsigned ndevs)
{
	cr_assert_gt(n, 0);
	const uint8_t *rsdp = at(GPA);
	cr_assert_eq(memcmp(rsdp, "RSD PTR ", 8), 0);
	cr_assert_eq(acpi_sum(rsdp, 20), 0, "RSDP checksum");
	cr_assert_eq(rsdp[15], 2, "revision 2: ACPI 2.0+, XSDT");
	cr_assert_eq(u32(rsdp + 20), 36);
	cr_assert_eq(acpi_sum(rsdp, 36), 0, "RSDP extended checksum");

	uint64_t xsdt = u64(rsdp + 24);
	uint32_t xlen = table(xsdt, "XSDT");
	cr_assert_eq(xlen, 36 + 2 * 8);
	uint64_t fadt = u64(at(xsdt) + 36), madt = u64(at(xsdt) + 44);

	cr_assert_eq(table(fadt, "FACP"), 276);
	const uint8_t *f = at(fadt);
	cr_assert_eq(f[8], 6, "FADT revision 6");
	cr_assert_eq(f[131], 5, "minor version 5");
	uint32_t flags = u32(f + 112);
	cr_assert(flags & (1u << 20), "hardware-reduced");
	cr_assert(flags & (1u << 10), "reset register supported");
	const uint8_t *reset = f + 116;
	cr_assert_eq(reset[0], 1, "reset register in I/O space");
	cr_assert_eq(reset[1], 8);
	cr_assert_eq(u64(reset + 4), PORT_I8042_CMD);
	cr_assert_eq(f[128], 0xfe, "the i8042 reset command");
	uint16_t iapc = (uint16_t)(f[109] | f[110] << 8);
	cr_assert(iapc & (1u << 1), "an i8042 is present");
	cr_assert_eq(f[46] | f[47], 0, "no SCI");
	cr_assert_eq(u32(f + 48), 0, "no SMI command port");
	uint64_t dsdt = u64(f + 140);

	uint32_t mlen = table(madt, "APIC");
	const uint8_t *m = at(madt);
	cr_assert_eq(u32(m + 36), LAYOUT_LAPIC);
	unsigned lapics = 0, ioapics = 0;
	for (uint32_t off = 44; off < mlen;) {
		const uint8_t *e = m + off;
		cr_assert_geq(e[1], 2);
		cr_assert_leq(off + e[1], mlen);
		if (e[0] == 0) {
			cr_assert_eq(e[1], 8);
			cr_assert_eq(e[3], lapics, "APIC id %u in order", lapics);
			cr_assert_eq(u32(e + 4) & 1, 1, "enabled");
			lapics++;
		} else if (e[0] == 1) {
			cr_assert_eq(e[1], 12);
			cr_assert_eq(u32(e + 4), LAYOUT_IOAPIC);
			cr_assert_eq(u32(e + 8), 0, "GSI base");
			ioapics++;
		} else if (e[0] == 2) {
			cr_assert_eq(e[3], 0, "only the PIT's IRQ 0 is overridden");
			cr_assert_eq(u32(e + 4), 2);
		}
		off += e[1];
	}
	cr_assert_eq(lapics, ncpus);
	cr_assert_eq(ioapics, 1);

	uint32_t dlen = table(dsdt, "DSDT");
	cr_assert_eq(at(dsdt)[8], 2, "DSDT revision 2: 64-bit integers");
	cr_assert_leq(dsdt - GPA + dlen, (uint64_t)n);
	/* Each device's _HID and its memory descriptor, in order. */
	const uint8_t *aml = at(dsdt) + 36, *end = at(dsdt) + dlen;
	const uint8_t *p = aml;
	for (unsigned i = 0; i < ndevs; i++) {
		uint8_t mem32[12] = { 0x86, 9, 0, 1 };
		uint32_t base = (uint32_t)d[i].base, size = (uint32_t)d[i].size;
		memcpy(mem32 + 4, &base, 4);
		memcpy(mem32 + 8, &size, 4);
		p = memmem(p, (size_t)(end - p), "LNRO0005", 8);
		cr_assert_not_null(p, "device %u has no LNRO0005 _HID", i);
		const uint8_t *crs = memmem(p, (size_t)(end - p), mem32, sizeof(mem32));
		cr_assert_not_null(crs, "device %u: no Memory32Fixed at 0x%x", i, base);
		const uint8_t irq[] = { 0x89, 6, 0, 3, 1, (uint8_t)d[i].irq, 0, 0, 0 };
		cr_assert_eq(memcmp(crs + sizeof(mem32), irq, sizeof(irq)), 0, "device %u interrupt", i);
		p = crs;
	}
	cr_assert_null(memmem(p, (size_t)(end - p), "LNRO0005", 8), "more devices than given");
	static const uint8_t serial_id[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 }; /* PNP0501 */
	cr_assert_not_null(memmem(aml, (size_t)(end - aml), serial_id, sizeof(serial_id)));
}

Test(acpi, tables_checksummed_and_linked)
{
	int n = acpi_build(out, sizeof(out), GPA, 2, devs, 3);
	check_tables(n, 2, devs, 3);
}

Test(acpi, every_vcpu_and_the_most_devices)
{
	struct boot_mmio_dev many[IRQ_VIRTIO_COUNT];
	for (unsigned i = 0; i < IRQ_VIRTIO_COUNT; i++)
		many[i] = (struct boot_mmio_dev){ LAYOUT_VIRTIO_MMIO_BASE + i * LAYOUT_VIRTIO_MMIO_SIZE,
						  LAYOUT_VIRTIO_MMIO_SIZE, IRQ_VIRTIO_BASE + i };
	int n = acpi_build(out, sizeof(out), GPA, 32, many, IRQ_VIRTIO_COUNT);
	check_tables(n, 32, many, IRQ_VIRTIO_COUNT);
	cr_assert_leq(n, LAYOUT_ACPI_SIZE);
	check_tables(acpi_build(out, sizeof(out), GPA, 1, NULL, 0), 1, NULL, 0);
}

Test(acpi, refuses_what_it_cannot_describe)
{
	cr_assert_eq(acpi_build(out, sizeof(out), GPA, 0, devs, 1), -EINVAL);
	cr_assert_eq(acpi_build(out, sizeof(out), GPA, 255, devs, 1), -EINVAL);
	cr_assert_eq(acpi_build(out, 200, GPA, 2, devs, 1), -E2BIG);
	int n = acpi_build(out, sizeof(out), GPA, 2, devs, 3);
	cr_assert_gt(n, 0);
	cr_assert_eq(acpi_build(out, (size_t)n - 1, GPA, 2, devs, 3), -E2BIG, "one byte short of the DSDT");
	cr_assert_eq(acpi_build(out, (size_t)n, GPA, 2, devs, 3), n);
}

Test(acpi, written_into_the_reserved_bios_area)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init(&mem, 16 << 20), 0);
	cr_assert_eq(acpi_write(&mem, 2, devs, 3), 0);
	memcpy(out, mem_ptr(&mem, LAYOUT_ACPI, sizeof(out)), sizeof(out));
	check_tables((int)sizeof(out), 2, devs, 3);
	mem_destroy(&mem);
}

Test(acpi, command_line_words_come_from_the_same_list)
{
	char cmdline[256] = "console=ttyS0 -- init-arg";
	cr_assert_eq(boot_cmdline_add_mmio(cmdline, sizeof(cmdline), &devs[0]), 0);
	cr_assert_eq(boot_cmdline_add_mmio(cmdline, sizeof(cmdline), &devs[2]), 0);
	cr_assert_str_eq(cmdline,
			 "console=ttyS0 virtio_mmio.device=4K@0xc0001000:5 virtio_mmio.device=4K@0xc0003000:7 -- init-arg");
}

/* ACPICA's disassembler, the reference for what an OS's ACPI code makes
 * of the tables (it takes no RSDP file; check_tables covers that): each
 * must disassemble without an error or a warning
 * (a bad checksum, a bad length or bad AML is one), and the DSDT must
 * read back as the devices. */
static bool have_iasl(void)
{
	return system("command -v iasl >/dev/null 2>&1") == 0;
}

static void dump(const char *dir, const char *name, uint64_t gpa, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(at(gpa), 1, len, f), len);
	fclose(f);
}

static char *slurp(const char *path)
{
	static char buf[1 << 17];
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

Test(acpi, iasl_disassembles_every_table_cleanly)
{
	if (!have_iasl()) {
		fprintf(stderr, "\n*** SKIPPED acpi::iasl_disassembles_every_table_cleanly: iasl is missing "
				"(acpica-tools; make deps installs it) ***\n\n");
		cr_skip_test("iasl (acpica-tools) is missing: make deps");
	}
	struct boot_mmio_dev many[IRQ_VIRTIO_COUNT];
	for (unsigned i = 0; i < IRQ_VIRTIO_COUNT; i++)
		many[i] = (struct boot_mmio_dev){ LAYOUT_VIRTIO_MMIO_BASE + i * LAYOUT_VIRTIO_MMIO_SIZE,
						  LAYOUT_VIRTIO_MMIO_SIZE, IRQ_VIRTIO_BASE + i };
	int n = acpi_build(out, sizeof(out), GPA, 4, many, IRQ_VIRTIO_COUNT);
	cr_assert_gt(n, 0);
	char dir[] = "/tmp/ember-acpi-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	const uint8_t *rsdp = at(GPA);
	uint64_t xsdt = u64(rsdp + 24), fadt = u64(at(xsdt) + 36), madt = u64(at(xsdt) + 44);
	uint64_t dsdt = u64(at(fadt) + 140);
	dump(dir, "xsdt", xsdt, u32(at(xsdt) + 4));
	dump(dir, "facp", fadt, u32(at(fadt) + 4));
	dump(dir, "apic", madt, u32(at(madt) + 4));
	dump(dir, "dsdt", dsdt, u32(at(dsdt) + 4));

	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && for t in xsdt facp apic dsdt; do iasl -d $t.dat || exit 1; done > log 2>&1", dir);
	int rc = system(cmd);
	snprintf(cmd, sizeof(cmd), "%s/log", dir);
	char *log = slurp(cmd);
	cr_assert_eq(rc, 0, "iasl failed:\n%s", log);
	cr_assert_null(strcasestr(log, "warning"), "iasl warns:\n%s", log);
	cr_assert_null(strcasestr(log, "error("), "iasl reports errors:\n%s", log);
	cr_assert_null(strcasestr(log, "checksum"), "iasl: checksum:\n%s", log);

	snprintf(cmd, sizeof(cmd), "%s/facp.dsl", dir);
	char *facp = slurp(cmd);
	cr_assert_not_null(strstr(facp, "Hardware Reduced (V5) : 1"), "%s", facp);
	cr_assert_not_null(strstr(facp, "Reset Register Supported (V2) : 1"), "%s", facp);
	cr_assert_not_null(strstr(facp, "Value to cause reset : FE"), "%s", facp);
	snprintf(cmd, sizeof(cmd), "%s/apic.dsl", dir);
	char *apic = slurp(cmd);
	cr_assert_not_null(strstr(apic, "Local Apic ID : 03"), "%s", apic);
	cr_assert_not_null(strstr(apic, "Address : FEC00000"), "%s", apic);
	snprintf(cmd, sizeof(cmd), "%s/dsdt.dsl", dir);
	char *dsl = slurp(cmd);
	cr_assert_not_null(strstr(dsl, "Device (V016)"), "%s", dsl);
	cr_assert_not_null(strstr(dsl, "Name (_HID, \"LNRO0005\")"), "%s", dsl);
	cr_assert_not_null(strstr(dsl, "0xC0003000,         // Address Base"), "%s", dsl);
	cr_assert_not_null(strstr(dsl, "EisaId (\"PNP0501\")"), "%s", dsl);
	cr_assert_not_null(strstr(dsl, "0x03F8,             // Range Minimum"), "%s", dsl);
	cr_assert_not_null(strstr(dsl, "0x00000015,"), "GSI 21 of the last device: %s", dsl);

	/* Compiled back without optimizations, the source gives ember's
	 * AML byte for byte (the header names a different compiler). */
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -oa -p back dsdt.dsl > log 2>&1", dir);
	rc = system(cmd);
	snprintf(cmd, sizeof(cmd), "%s/log", dir);
	cr_assert_eq(rc, 0, "iasl could not compile its own disassembly:\n%s", slurp(cmd));
	snprintf(cmd, sizeof(cmd), "%s/back.aml", dir);
	FILE *f = fopen(cmd, "rb");
	cr_assert_not_null(f);
	static uint8_t back[1 << 16];
	size_t blen = fread(back, 1, sizeof(back), f);
	fclose(f);
	uint32_t dlen = u32(at(dsdt) + 4);
	cr_assert_eq(blen, dlen);
	cr_assert_arr_eq(back + 36, at(dsdt) + 36, dlen - 36);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}
