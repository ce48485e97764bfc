/* ember's x86 guest-physical address map, in one place.
 *
 *   0x0000_0000  real-mode IVT/BDA (left zero)
 *   0x0000_0500  GDT used for the boot-time CPU state
 *   0x0000_6000  PVH start_info, module list and memory map
 *   0x0000_7000  Linux boot_params ("zero page")
 *   0x0000_9000  identity page tables for the 64-bit entry (PML4, PDPT, PDs)
 *   0x0002_0000  kernel command line
 *   0x0009_fc00  MP table (the EBDA, where Linux scans for it)
 *   0x000a_0000  legacy VGA/ROM hole, reserved in the e820 map
 *   0x000e_0000  ACPI tables: the RSDP (where Linux's BIOS-area scan
 *                finds it, and boot_params says so) and the tables after it
 *   0x0010_0000  kernel (bzImage protected-mode part; ELF at its own paddr)
 *   ...          RAM; the initrd sits at the top of low RAM
 *   0xc000_0000  MMIO gap: boot timer, then virtio-mmio devices
 *   0xfec0_0000  IOAPIC;  0xfee0_0000 LAPIC
 *   0x1_0000_0000 RAM above the gap, if the guest has more than 3 GiB
 *   ...          the virtio-mem hotplug region, if any, from the first 1 GiB
 *                boundary at or above 4 GiB and the end of RAM (Linux adds
 *                hotplugged memory in 128 MiB blocks: it stays aligned to them)
 *   ...          virtio-pmem regions, from the next 1 GiB boundary at or
 *                above 4 GiB and the end of RAM and that region, each
 *                2 MiB-aligned
 */
#ifndef EMBER_LAYOUT_H
#define EMBER_LAYOUT_H

#define LAYOUT_GDT 0x500ULL
#define LAYOUT_PVH_INFO 0x6000ULL
#define LAYOUT_ZERO_PAGE 0x7000ULL
#define LAYOUT_PML4 0x9000ULL
#define LAYOUT_PDPT 0xa000ULL
#define LAYOUT_PD 0xb000ULL /* four pages: identity map of the first 4 GiB */
#define LAYOUT_CMDLINE 0x20000ULL
#define LAYOUT_CMDLINE_MAX 4096ULL
#define LAYOUT_EBDA 0x9fc00ULL
#define LAYOUT_ACPI 0xe0000ULL
#define LAYOUT_ACPI_SIZE 0x20000ULL /* up to LAYOUT_HIMEM, inside the reserved hole */
#define LAYOUT_HIMEM 0x100000ULL
#define LAYOUT_BOOT_STACK 0x8ff0ULL

#define LAYOUT_MMIO_GAP_START 0xc0000000ULL
#define LAYOUT_MMIO_GAP_END 0x100000000ULL
#define LAYOUT_BOOT_TIMER 0xc0000000ULL
#define LAYOUT_BOOT_TIMER_SIZE 0x1000ULL
#define LAYOUT_VIRTIO_MMIO_BASE 0xc0001000ULL
#define LAYOUT_VIRTIO_MMIO_SIZE 0x1000ULL
#define LAYOUT_PMEM_BASE_ALIGN (1ULL << 30)
#define LAYOUT_HOTPLUG_ALIGN (1ULL << 30)
#define LAYOUT_IOAPIC 0xfec00000ULL
#define LAYOUT_LAPIC 0xfee00000ULL
/* KVM needs three pages for the TSS and one for the EPT identity map,
 * inside the gap and outside any device. */
#define LAYOUT_KVM_TSS 0xfffbc000ULL
#define LAYOUT_KVM_IDENTITY_MAP 0xfffbf000ULL

/* Legacy I/O ports. */
#define PORT_I8042_DATA 0x60
#define PORT_I8042_CMD 0x64
#define IRQ_I8042 1
#define PORT_COM1 0x3f8
#define IRQ_COM1 4
/* GSIs handed to virtio-mmio devices, one each: IOAPIC pins 5-21, 17
 * devices, as many as Firecracker takes on x86 (it keeps pins 22 and 23
 * for its VM generation ID and clock devices; ember keeps them free too,
 * so a VM that fits one fits the other). */
#define IRQ_VIRTIO_BASE 5
#define IRQ_VIRTIO_LAST 21
#define IRQ_VIRTIO_COUNT (IRQ_VIRTIO_LAST - IRQ_VIRTIO_BASE + 1)
#define IOAPIC_NUM_PINS 24

#endif
