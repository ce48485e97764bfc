/* Booting Linux (and the test guest) on x86.
 *
 * boot_load() puts the kernel, initrd, command line and the tables the
 * kernel reads (PVH start_info or Linux boot_params with an e820 map, the
 * MP table) into guest memory, and says how to enter it. boot_setup_vcpu()
 * puts a vCPU into the state that entry needs. */
#ifndef EMBER_BOOT_H
#define EMBER_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

enum boot_mode {
	BOOT_PVH,      /* 32-bit protected mode, paging off, EBX = start_info */
	BOOT_LINUX64,  /* 64-bit mode, identity-mapped, RSI = boot_params */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t rip;
	uint64_t arg;  /* EBX (PVH) or RSI (64-bit boot protocol) */
};

/* A virtio-mmio device as the guest learns of it: one list of these is
 * both the kernel command line's virtio_mmio.device= words and the ACPI
 * DSDT's devices, so the two cannot disagree. */
struct boot_mmio_dev {
	uint64_t base;
	uint64_t size;
	uint32_t irq;  /* GSI */
};

struct boot_images {
	const char *kernel_path;  /* ELF vmlinux (PVH note or 64-bit entry) or bzImage */
	const char *initrd_path;  /* may be NULL */
	const char *cmdline;      /* already holds the devices' virtio_mmio.device= words */
	const struct boot_mmio_dev *mmio_devs; /* for the ACPI tables, in guest order */
	unsigned nmmio_devs;
};

/* The guest's kernel command line: args, plus on software-virtualized
 * kvm_pvm hosts the parameters that keep the guest off what that host's
 * instruction emulator cannot do (see cmdline.c), each added only if args
 * does not set it already. added receives the parameters appended (" a b").
 * Returns 0, or -E2BIG if out is too small. */
int boot_cmdline_build(const char *args, bool pvm_host, char *out, size_t len, char *added,
		       size_t added_len);

/* Add a kernel parameter to cmdline (a buffer of len bytes), before any
 * "--" that starts init's arguments. Returns 0 or -E2BIG. */
int boot_cmdline_append(char *cmdline, size_t len, const char *param);

/* Add "virtio_mmio.device=<size>@<base>:<irq>" for dev. Returns 0 or
 * -E2BIG. */
int boot_cmdline_add_mmio(char *cmdline, size_t len, const struct boot_mmio_dev *dev);

/* Does cmdline set the parameter named by param ("key" or "key=value")? */
bool boot_cmdline_has(const char *cmdline, const char *param);

/* Check that the kernel (and initrd) open as regular files (without
 * waiting: see hostfile.h), so a bad path is reported before any VM
 * exists. boot_load() opens them the same way again. */
int boot_check_images(const struct boot_images *img, char *err, size_t errlen);

/* Load everything the guest needs into vm's memory, the MP table and the
 * ACPI tables among it. On error returns -errno and writes a one-line
 * reason into err. */
int boot_load(struct vm *vm, const struct boot_images *img, struct boot_entry *entry,
	      char *err, size_t errlen);

/* CPUID (with the CPU template tmpl, or NULL), MSRs, FPU, LAPIC and
 * registers for vCPU; the boot vCPU (id 0) starts at entry, the others
 * wait for INIT/SIPI in the in-kernel LAPIC. Returns 0, or -errno with a
 * one-line reason in err (logged). */
struct cpu_template;
int boot_setup_vcpu(struct vcpu *vcpu, const struct boot_entry *entry, const struct cpu_template *tmpl,
		    char *err, size_t errlen);

/* Only the CPUID part of it: what a vCPU restored from a snapshot needs
 * before its saved registers go in. Returns 0 or -errno (logged). */
int boot_setup_cpuid(struct vcpu *vcpu);

/* Fill a CPUID leaf 0xb/0x1f entry (e->index is the level) for vCPU id
 * of ncpus: one package, one thread per core, or two with smt. */
struct kvm_cpuid_entry2;
void boot_cpuid_topology(struct kvm_cpuid_entry2 *e, unsigned id, unsigned ncpus, bool smt);

/* Write an Intel MP table for ncpus processors at gpa (inside the EBDA),
 * which is how a guest without ACPI finds its CPUs and IOAPIC. Returns 0
 * or -EFAULT if it does not fit in guest memory. Exposed for tests. */
struct guest_mem;
int mptable_write(struct guest_mem *mem, uint64_t gpa, unsigned ncpus);

#endif
