#include <asm/bootparam.h>
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../vmm/boot/boot.h"
#include "../../vmm/layout.h"
#include "../../vmm/vm.h"

/* boot_load only needs the VM's memory and vCPU count, so these tests
 * run without /dev/kvm. */
static struct vm vm;
static char tmpdir[] = "/tmp/ember-loader-XXXXXX";

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	vm.nvcpus = 2;
	cr_assert_eq(mem_init(&vm.mem, 64 << 20), 0);
	strcpy(tmpdir, "/tmp/ember-loader-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	mem_destroy(&vm.mem);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(loader, .init = setup, .fini = teardown);

static const char *write_file(const char *name, const void *data, size_t len)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

/* A minimal vmlinux-like ELF: one PT_LOAD of 16 bytes + 4 KiB bss at
 * paddr, and optionally a PT_NOTE with the PVH entry. */
static const char *make_elf(const char *name, uint64_t paddr, bool pvh)
{
	static uint8_t buf[4096];
	memset(buf, 0, sizeof(buf));
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_entry = paddr + 4;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = pvh ? 2 : 1;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(*eh));
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 1024, .p_paddr = paddr,
			      .p_vaddr = paddr, .p_filesz = 16, .p_memsz = 16 + 4096 };
	memset(buf + 1024, 0x5a, 16);
	if (pvh) {
		uint8_t *n = buf + 2048;
		uint32_t hdr[3] = { 4, 4, 18 };
		memcpy(n, hdr, 12);
		memcpy(n + 12, "Xen", 4);
		uint32_t entry = (uint32_t)paddr + 8;
		memcpy(n + 16, &entry, 4);
		ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 2048, .p_filesz = 20 };
	}
	return write_file(name, buf, sizeof(buf));
}

Test(loader, pvh_elf_with_initrd_and_cmdline)
{
	const char *kernel = make_elf("k.elf", 0x1000000, true);
	char kpath[256];
	strcpy(kpath, kernel);
	/* Dirty the bss area first: the loader must zero it. */
	memset(mem_ptr(&vm.mem, 0x1000010, 4096), 0xee, 4096);
	static uint8_t initrd[10000];
	memset(initrd, 0x42, sizeof(initrd));
	const char *ipath = write_file("initrd", initrd, sizeof(initrd));

	struct boot_images img = { .kernel_path = kpath, .initrd_path = ipath, .cmdline = "console=ttyS0" };
	struct boot_entry e;
	char err[256] = "";
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(e.mode, BOOT_PVH);
	cr_assert_eq(e.rip, 0x1000008);
	cr_assert_eq(e.arg, LAYOUT_PVH_INFO);

	uint8_t *seg = mem_ptr(&vm.mem, 0x1000000, 16 + 4096);
	cr_assert_eq(seg[0], 0x5a);
	cr_assert_eq(seg[15], 0x5a);
	cr_assert_eq(seg[16], 0);
	cr_assert_eq(seg[16 + 4095], 0);

	uint32_t *si = mem_ptr(&vm.mem, LAYOUT_PVH_INFO, 56);
	cr_assert_eq(si[0], 0x336ec578);
	cr_assert_eq(si[3], 1, "one module (the initrd)");
	uint64_t cmdline_paddr, modlist;
	memcpy(&modlist, (uint8_t *)si + 16, 8);
	memcpy(&cmdline_paddr, (uint8_t *)si + 24, 8);
	cr_assert_str_eq((char *)mem_ptr(&vm.mem, cmdline_paddr, 14), "console=ttyS0");
	uint64_t mod[2];
	cr_assert_eq(mem_read(&vm.mem, modlist, mod, 16), 0);
	cr_assert_eq(mod[1], sizeof(initrd));
	cr_assert_eq(mod[0] & 0xfff, 0, "initrd is page aligned");
	cr_assert_leq(mod[0] + mod[1], 64 << 20);
	cr_assert_gt(mod[0], 0x1000000 + 16 + 4096, "initrd clears the kernel");
	cr_assert_eq(*(uint8_t *)mem_ptr(&vm.mem, mod[0], 1), 0x42);

	/* Memory map: low RAM, the EBDA hole, RAM from 1 MiB to the end. */
	uint32_t nmap = si[12];
	cr_assert_eq(nmap, 3);
	uint64_t map[3][3];
	uint64_t memmap;
	memcpy(&memmap, (uint8_t *)si + 40, 8);
	cr_assert_eq(mem_read(&vm.mem, memmap, map, sizeof(map)), 0);
	cr_assert_eq(map[2][0], LAYOUT_HIMEM);
	cr_assert_eq(map[2][0] + map[2][1], 64 << 20);
	cr_assert_eq((uint32_t)map[1][2], 2, "EBDA..1 MiB reserved");

	/* The ACPI tables, inside that reserved hole. */
	uint64_t rsdp;
	memcpy(&rsdp, (uint8_t *)si + 32, 8);
	cr_assert_eq(rsdp, LAYOUT_ACPI);
	cr_assert_eq(memcmp(mem_ptr(&vm.mem, rsdp, 8), "RSD PTR ", 8), 0);
}

Test(loader, elf_without_pvh_uses_64bit_protocol)
{
	char kpath[256];
	strcpy(kpath, make_elf("k64.elf", 0x200000, false));
	struct boot_images img = { .kernel_path = kpath, .cmdline = "quiet" };
	struct boot_entry e;
	char err[256] = "";
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(e.mode, BOOT_LINUX64);
	cr_assert_eq(e.rip, 0x200004);
	struct boot_params *bp = mem_ptr(&vm.mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	cr_assert_eq(bp->e820_entries, 3);
	cr_assert_eq(bp->e820_table[0].type, 1);
	cr_assert_str_eq((char *)mem_ptr(&vm.mem, LAYOUT_CMDLINE, 6), "quiet");
	cr_assert_eq(bp->acpi_rsdp_addr, LAYOUT_ACPI);
	cr_assert_eq(memcmp(mem_ptr(&vm.mem, LAYOUT_ACPI, 8), "RSD PTR ", 8), 0);
}

/* A fake bzImage: real-mode setup sector with the header, then payload. */
Test(loader, bzimage_header_is_honoured)
{
	static uint8_t buf[3 * 512 + 4096];
	memset(buf, 0, sizeof(buf));
	buf[0x1f1] = 2; /* setup_sects */
	buf[0x1fe] = 0x55;
	buf[0x1ff] = 0xaa;
	buf[0x201] = 0x68; /* header length after 0x202 */
	memcpy(buf + 0x202, "HdrS", 4);
	uint16_t version = 0x020f;
	memcpy(buf + 0x206, &version, 2);
	uint32_t initrd_max = 0x02ffffff, cmdline_size = 15, init_size = 0x200000;
	memcpy(buf + 0x22c, &initrd_max, 4);
	buf[0x236] = 1; /* XLF_KERNEL_64 */
	memcpy(buf + 0x238, &cmdline_size, 4);
	uint64_t pref = 0x1000000;
	memcpy(buf + 0x258, &pref, 8);
	memcpy(buf + 0x260, &init_size, 4);
	memset(buf + 3 * 512, 0x77, 4096);
	char kpath[256];
	strcpy(kpath, write_file("bzImage", buf, sizeof(buf)));
	static uint8_t initrd[8192];
	char ipath[256];
	strcpy(ipath, write_file("initrd", initrd, sizeof(initrd)));

	struct boot_images img = { .kernel_path = kpath, .initrd_path = ipath, .cmdline = "a=b" };
	struct boot_entry e;
	char err[256] = "";
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(e.mode, BOOT_LINUX64);
	cr_assert_eq(e.rip, LAYOUT_HIMEM + 0x200);
	cr_assert_eq(*(uint8_t *)mem_ptr(&vm.mem, LAYOUT_HIMEM, 1), 0x77);
	struct boot_params *bp = mem_ptr(&vm.mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_leq(bp->hdr.ramdisk_image + bp->hdr.ramdisk_size, 0x03000000,
		      "initrd respects initrd_addr_max");
	cr_assert_geq(bp->hdr.ramdisk_image, 0x1000000 + 0x200000,
		      "initrd above pref_address + init_size");

	/* The header says the kernel takes 15 bytes of command line. */
	img.cmdline = "this is longer than fifteen";
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), -E2BIG);
	cr_assert_not_null(strstr(err, "command line"));
}

Test(loader, errors_are_clear)
{
	struct boot_entry e;
	char err[256] = "";
	struct boot_images img = { .kernel_path = "/nonexistent/vmlinux", .cmdline = "" };
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "/nonexistent/vmlinux"));

	static uint8_t junk[2048];
	memset(junk, 0x11, sizeof(junk));
	char jpath[256];
	strcpy(jpath, write_file("junk", junk, sizeof(junk)));
	img.kernel_path = jpath;
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), -ENOEXEC);
	cr_assert_not_null(strstr(err, "not an ELF vmlinux or a bzImage"));

	char kpath[256];
	strcpy(kpath, make_elf("far.elf", 0x10000000, true)); /* beyond 64 MiB */
	img.kernel_path = kpath;
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), -ENOMEM);
	cr_assert_not_null(strstr(err, "outside guest RAM"));

	strcpy(kpath, make_elf("ok.elf", 0x1000000, true));
	img.kernel_path = kpath;
	img.initrd_path = "/nonexistent/initrd";
	cr_assert_eq(boot_load(&vm, &img, &e, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "initrd"));
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

Test(loader, mptable_lists_every_cpu_with_valid_checksums)
{
	cr_assert_eq(mptable_write(&vm.mem, LAYOUT_EBDA, 4), 0);
	uint8_t *mpf = mem_ptr(&vm.mem, LAYOUT_EBDA, 16);
	cr_assert_eq(memcmp(mpf, "_MP_", 4), 0);
	cr_assert_eq(sum(mpf, 16), 0);
	uint32_t table_gpa;
	memcpy(&table_gpa, mpf + 4, 4);
	uint8_t *table = mem_ptr(&vm.mem, table_gpa, 44);
	cr_assert_eq(memcmp(table, "PCMP", 4), 0);
	uint16_t len;
	memcpy(&len, table + 4, 2);
	cr_assert_eq(sum(table, len), 0);
	/* Entries start after the 44-byte header; processors come first. */
	int cpus = 0;
	for (uint8_t *p = table + 44; p < table + len && p[0] == 0; p += 20)
		cpus++;
	cr_assert_eq(cpus, 4);
	cr_assert_eq(mptable_write(&vm.mem, LAYOUT_EBDA, 0), -EFAULT);
	cr_assert_eq(mptable_write(&vm.mem, (64 << 20) - 8, 1), -EFAULT);
}
