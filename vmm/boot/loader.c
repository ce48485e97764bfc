/* Kernel, initrd and boot-table loading for the three entry paths:
 *   - ELF vmlinux with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY): enter in
 *     32-bit mode with an hvm_start_info, as Firecracker and QEMU do;
 *   - ELF vmlinux without one: the 64-bit boot protocol at e_entry;
 *   - bzImage: the 64-bit boot protocol at the protected-mode part + 0x200.
 * Files are read straight into guest memory (no intermediate copy), and
 * every placement is checked against guest RAM before anything is read. */
#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hostfile.h"
#include "../layout.h"
#include "../log.h"
#include "../vm.h"
#include "acpi.h"
#include "boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define E820_RAM 1
#define E820_RESERVED 2
#define ELF_MAX_PHDRS 64
#define PAGE_SIZE 4096ULL

/* The PVH boot ABI's start_info (Xen public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
#define PVH_MODLIST (LAYOUT_PVH_INFO + 0x40)
#define PVH_MEMMAP (LAYOUT_PVH_INFO + 0x80)

struct load_ctx {
	struct vm *vm;
	char *err;
	size_t errlen;
	uint64_t kernel_end; /* first byte above the loaded kernel */
	uint64_t initrd_max; /* highest byte + 1 an initrd may use */
	uint64_t initrd_gpa;
	uint64_t initrd_size;
	uint32_t cmdline_max; /* including the NUL */
};

__attribute__((format(printf, 3, 4)))
static int fail(struct load_ctx *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return err;
}

/* The kernel and the initrd come from a client: regular files only,
 * opened without waiting (a FIFO would stop the VMM thread). */
static int open_image(const char *what, const char *path, char *err, size_t errlen)
{
	return hostfile_open(what, path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
}

/* Read len bytes at file offset off into guest memory at gpa. */
static int read_into_guest(struct load_ctx *c, int fd, const char *what, uint64_t off,
			   uint64_t gpa, uint64_t len)
{
	uint8_t *dst = mem_ptr(&c->vm->mem, gpa, len);
	if (!dst)
		return fail(c, -ENOMEM, "%s does not fit in guest memory (0x%llx+0x%llx)", what,
			    (unsigned long long)gpa, (unsigned long long)len);
	while (len) {
		ssize_t n = pread(fd, dst, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, -errno, "reading %s: %s", what, strerror(errno));
		if (n == 0)
			return fail(c, -EIO, "%s is truncated", what);
		dst += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static int read_exact(int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = pread(fd, buf, len, off);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* Find the PVH entry point in a PT_NOTE segment. Returns 0 if found. */
static int find_pvh_entry(int fd, const Elf64_Phdr *ph, uint64_t *entry)
{
	uint8_t buf[4096];
	if (ph->p_filesz > sizeof(buf) || ph->p_filesz < sizeof(Elf64_Nhdr))
		return -ENOENT;
	if (read_exact(fd, buf, ph->p_filesz, (off_t)ph->p_offset))
		return -ENOENT;
	size_t off = 0;
	while (off + sizeof(Elf64_Nhdr) <= ph->p_filesz) {
		Elf64_Nhdr nh;
		memcpy(&nh, buf + off, sizeof(nh));
		size_t name_off = off + sizeof(nh);
		size_t desc_off = name_off + ((nh.n_namesz + 3) & ~3u);
		size_t next = desc_off + ((nh.n_descsz + 3) & ~3u);
		if (nh.n_namesz > ph->p_filesz || nh.n_descsz > ph->p_filesz || next > ph->p_filesz)
			return -ENOENT;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    memcmp(buf + name_off, "Xen", 4) == 0) {
			if (nh.n_descsz == 4) {
				uint32_t v;
				memcpy(&v, buf + desc_off, 4);
				*entry = v;
			} else if (nh.n_descsz == 8) {
				memcpy(entry, buf + desc_off, 8);
			} else {
				return -ENOENT;
			}
			return 0;
		}
		off = next;
	}
	return -ENOENT;
}

static int load_elf(struct load_ctx *c, int fd, struct boot_entry *entry)
{
	Elf64_Ehdr eh;
	if (read_exact(fd, &eh, sizeof(eh), 0))
		return fail(c, -ENOEXEC, "kernel: truncated ELF header");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || eh.e_type != ET_EXEC)
		return fail(c, -ENOEXEC, "kernel: not an x86-64 executable ELF");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > ELF_MAX_PHDRS)
		return fail(c, -ENOEXEC, "kernel: bad ELF program headers");

	Elf64_Phdr ph[ELF_MAX_PHDRS];
	if (read_exact(fd, ph, eh.e_phnum * sizeof(Elf64_Phdr), (off_t)eh.e_phoff))
		return fail(c, -ENOEXEC, "kernel: truncated ELF program headers");

	bool pvh = false;
	uint64_t pvh_entry = 0;
	uint64_t end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_NOTE && !pvh)
			pvh = find_pvh_entry(fd, &ph[i], &pvh_entry) == 0;
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (ph[i].p_filesz > ph[i].p_memsz)
			return fail(c, -ENOEXEC, "kernel: segment %u file size exceeds memory size", i);
		uint64_t gpa = ph[i].p_paddr;
		/* Check the whole segment, bss included, before reading. */
		uint8_t *seg = mem_ptr(&c->vm->mem, gpa, ph[i].p_memsz);
		if (!seg || gpa < LAYOUT_HIMEM)
			return fail(c, -ENOMEM, "kernel: segment %u (0x%llx+0x%llx) outside guest RAM",
				    i, (unsigned long long)gpa, (unsigned long long)ph[i].p_memsz);
		int err = read_into_guest(c, fd, "kernel", ph[i].p_offset, gpa, ph[i].p_filesz);
		if (err)
			return err;
		memset(seg + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
		if (gpa + ph[i].p_memsz > end)
			end = gpa + ph[i].p_memsz;
	}
	if (end == 0)
		return fail(c, -ENOEXEC, "kernel: ELF has no loadable segment");
	c->kernel_end = end;

	if (pvh) {
		entry->mode = BOOT_PVH;
		entry->rip = pvh_entry;
	} else {
		entry->mode = BOOT_LINUX64;
		entry->rip = eh.e_entry;
	}
	if (!mem_ptr(&c->vm->mem, entry->rip, 1))
		return fail(c, -ENOEXEC, "kernel: entry point 0x%llx outside guest RAM",
			    (unsigned long long)entry->rip);
	return 0;
}

static int load_bzimage(struct load_ctx *c, int fd, uint64_t file_size,
			struct boot_params *bp, struct boot_entry *entry)
{
	/* The setup header starts at 0x1f1; its real length is given by the
	 * byte at 0x201 (counted from 0x202). */
	uint8_t raw[1024] = { 0 };
	if (read_exact(fd, raw, sizeof(raw), 0))
		return fail(c, -ENOEXEC, "kernel: too small to be a bzImage");
	size_t hdr_end = 0x202 + raw[0x201];
	if (hdr_end > 0x1f1 + sizeof(bp->hdr))
		hdr_end = 0x1f1 + sizeof(bp->hdr);
	memcpy(&bp->hdr, raw + 0x1f1, hdr_end - 0x1f1);
	struct setup_header *h = &bp->hdr;

	if (h->boot_flag != 0xaa55 || h->header != 0x53726448 /* "HdrS" */)
		return fail(c, -ENOEXEC, "kernel: not an ELF vmlinux or a bzImage");
	if (h->version < 0x020c || !(h->xloadflags & XLF_KERNEL_64))
		return fail(c, -ENOEXEC,
			    "kernel: bzImage lacks the 64-bit entry (boot protocol %u.%u)",
			    h->version >> 8, h->version & 0xff);

	uint64_t setup_sects = h->setup_sects ? h->setup_sects : 4;
	uint64_t off = (setup_sects + 1) * 512;
	if (off >= file_size)
		return fail(c, -ENOEXEC, "kernel: bzImage has no protected-mode part");
	uint64_t size = file_size - off;
	int err = read_into_guest(c, fd, "kernel", off, LAYOUT_HIMEM, size);
	if (err)
		return err;

	/* The decompressor works up to pref_address + init_size. */
	uint64_t end = LAYOUT_HIMEM + size;
	uint64_t decomp_end = h->pref_address + h->init_size;
	if (decomp_end > end)
		end = decomp_end;
	if (!mem_ptr(&c->vm->mem, 0, end))
		return fail(c, -ENOMEM, "kernel: needs %llu MiB of guest memory to decompress",
			    (unsigned long long)(end >> 20) + 1);
	c->kernel_end = end;
	if ((uint64_t)h->initrd_addr_max + 1 < c->initrd_max)
		c->initrd_max = (uint64_t)h->initrd_addr_max + 1;
	if (h->cmdline_size && h->cmdline_size + 1 < c->cmdline_max)
		c->cmdline_max = h->cmdline_size + 1;

	h->type_of_loader = 0xff;
	h->code32_start = (uint32_t)LAYOUT_HIMEM;
	h->loadflags |= LOADED_HIGH | KEEP_SEGMENTS;
	h->loadflags &= (uint8_t)~QUIET_FLAG;
	entry->mode = BOOT_LINUX64;
	entry->rip = LAYOUT_HIMEM + 0x200; /* startup_64 of the decompressor */
	return 0;
}

static int load_initrd(struct load_ctx *c, const char *path)
{
	int fd = open_image("initrd", path, c->err, c->errlen);
	if (fd < 0)
		return fd;
	struct stat st;
	int err = 0;
	if (fstat(fd, &st) < 0) {
		err = fail(c, -errno, "initrd %s: %s", path, strerror(errno));
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	uint64_t top = c->initrd_max;
	if (top > mem_low_end(&c->vm->mem))
		top = mem_low_end(&c->vm->mem);
	/* Highest page-aligned spot below top that clears the kernel. */
	if (size > top || ((top - size) & ~(PAGE_SIZE - 1)) < c->kernel_end) {
		err = fail(c, -ENOMEM, "initrd %s (%llu KiB) does not fit in guest memory above the kernel",
			   path, (unsigned long long)(size >> 10));
		goto out;
	}
	c->initrd_gpa = (top - size) & ~(PAGE_SIZE - 1);
	c->initrd_size = size;
	err = read_into_guest(c, fd, "initrd", 0, c->initrd_gpa, size);
out:
	close(fd);
	return err;
}

/* The guest's memory map: low RAM with the EBDA/ROM hole carved out, and
 * RAM above 4 GiB. emit(type, addr, size) is called for each entry. */
struct e820_sink {
	unsigned n;
	unsigned max;
	struct boot_e820_entry *zero_page;   /* 64-bit protocol */
	struct hvm_memmap_entry *pvh;        /* PVH */
};

static void e820_add(struct e820_sink *s, uint64_t addr, uint64_t size, uint32_t type)
{
	if (s->n >= s->max || size == 0)
		return;
	if (s->zero_page)
		s->zero_page[s->n] = (struct boot_e820_entry){ addr, size, type };
	if (s->pvh)
		s->pvh[s->n] = (struct hvm_memmap_entry){ addr, size, type, 0 };
	s->n++;
}

static void e820_build(const struct guest_mem *mem, struct e820_sink *s)
{
	uint64_t low_end = mem_low_end(mem);
	e820_add(s, 0, LAYOUT_EBDA, E820_RAM);
	e820_add(s, LAYOUT_EBDA, LAYOUT_HIMEM - LAYOUT_EBDA, E820_RESERVED);
	if (low_end > LAYOUT_HIMEM)
		e820_add(s, LAYOUT_HIMEM, low_end - LAYOUT_HIMEM, E820_RAM);
	for (unsigned i = 1; i < mem->nregions; i++)
		if (!mem->regions[i].hotplug) /* virtio-mem's: the driver adds what it plugs */
			e820_add(s, mem->regions[i].gpa, mem->regions[i].size, E820_RAM);
}

static int write_pvh_info(struct load_ctx *c, uint64_t cmdline_gpa)
{
	struct guest_mem *mem = &c->vm->mem;
	struct hvm_start_info *si = mem_ptr(mem, LAYOUT_PVH_INFO, sizeof(*si));
	struct hvm_modlist_entry *mod = mem_ptr(mem, PVH_MODLIST, sizeof(*mod));
	struct hvm_memmap_entry *map = mem_ptr(mem, PVH_MEMMAP, 8 * sizeof(*map));
	if (!si || !mod || !map)
		return fail(c, -ENOMEM, "guest memory too small for the boot tables");

	struct e820_sink sink = { .max = 8, .pvh = map };
	e820_build(mem, &sink);
	*si = (struct hvm_start_info){
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = cmdline_gpa,
		.memmap_paddr = PVH_MEMMAP,
		.memmap_entries = sink.n,
		.rsdp_paddr = LAYOUT_ACPI,
	};
	if (c->initrd_size) {
		*mod = (struct hvm_modlist_entry){ .paddr = c->initrd_gpa, .size = c->initrd_size };
		si->nr_modules = 1;
		si->modlist_paddr = PVH_MODLIST;
	}
	return 0;
}

static void write_zero_page(struct load_ctx *c, struct boot_params *bp, uint64_t cmdline_gpa)
{
	struct setup_header *h = &bp->hdr;
	if (h->header != 0x53726448) {
		/* ELF vmlinux: no header came with the kernel; fill the
		 * fields the 64-bit entry reads. */
		h->boot_flag = 0xaa55;
		h->header = 0x53726448;
		h->type_of_loader = 0xff;
		h->kernel_alignment = 0x01000000;
	}
	h->cmd_line_ptr = (uint32_t)cmdline_gpa;
	bp->ext_cmd_line_ptr = (uint32_t)(cmdline_gpa >> 32);
	h->cmdline_size = c->cmdline_max - 1;
	if (c->initrd_size) {
		h->ramdisk_image = (uint32_t)c->initrd_gpa;
		h->ramdisk_size = (uint32_t)c->initrd_size;
		bp->ext_ramdisk_image = (uint32_t)(c->initrd_gpa >> 32);
		bp->ext_ramdisk_size = (uint32_t)(c->initrd_size >> 32);
	}
	struct e820_sink sink = { .max = E820_MAX_ENTRIES_ZEROPAGE, .zero_page = bp->e820_table };
	e820_build(&c->vm->mem, &sink);
	bp->e820_entries = (uint8_t)sink.n;
	bp->acpi_rsdp_addr = LAYOUT_ACPI;
}

/* Firecracker's sentence (which clients match) with ember's detail. */
static int check_file(const char *what, const char *sentence, const char *path, char *err, size_t errlen)
{
	char detail[512];
	int fd = open_image(what, path, detail, sizeof(detail));
	if (fd < 0) {
		snprintf(err, errlen, "%s%s (os error %d); %s", sentence, strerror(-fd), -fd, detail);
		return fd;
	}
	close(fd);
	return 0;
}

int boot_check_images(const struct boot_images *img, char *err, size_t errlen)
{
	int ret = check_file("kernel", "The kernel file cannot be opened: ", img->kernel_path, err, errlen);
	if (!ret && img->initrd_path)
		ret = check_file("initrd",
				 "The initrd file cannot be opened due to invalid path or invalid permissions. ",
				 img->initrd_path, err, errlen);
	return ret;
}

int boot_load(struct vm *vm, const struct boot_images *img, struct boot_entry *entry,
	      char *err, size_t errlen)
{
	struct load_ctx c = {
		.vm = vm, .err = err, .errlen = errlen,
		.initrd_max = LAYOUT_MMIO_GAP_START,
		.cmdline_max = LAYOUT_CMDLINE_MAX,
	};
	static struct boot_params bp; /* 4 KiB: kept off the stack */
	memset(&bp, 0, sizeof(bp));
	memset(entry, 0, sizeof(*entry));

	int fd = open_image("kernel", img->kernel_path, err, errlen);
	if (fd < 0)
		return fd;
	struct stat st;
	uint8_t magic[4] = { 0 };
	int ret;
	if (fstat(fd, &st) < 0) {
		ret = fail(&c, -errno, "kernel %s: %s", img->kernel_path, strerror(errno));
	} else if (read_exact(fd, magic, sizeof(magic), 0)) {
		ret = fail(&c, -ENOEXEC, "kernel %s: too small", img->kernel_path);
	} else if (memcmp(magic, ELFMAG, SELFMAG) == 0) {
		ret = load_elf(&c, fd, entry);
	} else {
		ret = load_bzimage(&c, fd, (uint64_t)st.st_size, &bp, entry);
	}
	close(fd);
	if (ret)
		return ret;

	if (img->initrd_path && (ret = load_initrd(&c, img->initrd_path)))
		return ret;

	size_t cmdlen = strlen(img->cmdline ? img->cmdline : "");
	if (cmdlen + 1 > c.cmdline_max)
		return fail(&c, -E2BIG, "kernel command line is %zu bytes; the kernel accepts %u",
			    cmdlen, c.cmdline_max - 1);
	if (mem_write(&vm->mem, LAYOUT_CMDLINE, img->cmdline ? img->cmdline : "", cmdlen + 1))
		return fail(&c, -ENOMEM, "guest memory too small for the command line");

	if (mptable_write(&vm->mem, LAYOUT_EBDA, vm->nvcpus))
		return fail(&c, -ENOMEM, "guest memory too small for the MP table");
	/* Both: a kernel without ACPI reads the MP table and the command
	 * line's devices; one with ACPI prefers the tables. */
	if ((ret = acpi_write(&vm->mem, vm->nvcpus, img->mmio_devs, img->nmmio_devs)))
		return fail(&c, ret, "ACPI tables: %s", strerror(-ret));

	if (entry->mode == BOOT_PVH) {
		if ((ret = write_pvh_info(&c, LAYOUT_CMDLINE)))
			return ret;
		entry->arg = LAYOUT_PVH_INFO;
	} else {
		write_zero_page(&c, &bp, LAYOUT_CMDLINE);
		if (mem_write(&vm->mem, LAYOUT_ZERO_PAGE, &bp, sizeof(bp)))
			return fail(&c, -ENOMEM, "guest memory too small for boot_params");
		entry->arg = LAYOUT_ZERO_PAGE;
	}
	log_debug("kernel loaded: %s entry 0x%llx, initrd %llu bytes at 0x%llx",
		  entry->mode == BOOT_PVH ? "PVH" : "64-bit", (unsigned long long)entry->rip,
		  (unsigned long long)c.initrd_size, (unsigned long long)c.initrd_gpa);
	return 0;
}
