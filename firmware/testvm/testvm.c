/* testvm: a tiny freestanding 64-bit guest for ember's device and boot
 * tests and for VMM timings. It prints on COM1, writes the boot timer,
 * runs the checks named on its command line, reports each as
 * "testvm: PASS <name>" or "testvm: FAIL <name>: <why>", and resets.
 *
 * Command-line words (the kernel command line of the VM):
 *   testvm.emulate   instructions that software-virtualized KVM hosts fail
 *                    to emulate, each run right after a privileged one so
 *                    such a host hands it to its emulator
 *   testvm.virtio    drive the virtio-mmio devices found, with good requests
 *                    and with malformed descriptor chains (virtio.c)
 *   testvm.blkbench  read the first block device sequentially and print
 *                    markers around it, for benchmarks
 *   testvm.blkiops   4 KiB reads of the first block device at pseudo-random
 *                    offsets, one at a time, between markers
 *   testvm.netbench  transmit full-size frames through the first network
 *                    device, between markers
 *   testvm.cpuid     print the CPUID leaves the guest sees (cpuid.c), for
 *                    the CPU template tests
 *   testvm.waitinput  before resetting, wait for a byte on the serial port
 *                    (a host looks at the running VM, then ends it)
 *   testvm.unknown   an instruction (andn) that such hosts cannot emulate and
 *                    ember does not either: ember must stop with an error
 *   testvm.triplefault  end with a triple fault instead of an i8042 reset
 *   testvm.hang      do not reset at the end (for timeout tests)
 *   testvm.rounds=N  run the checks and benchmarks above N times, printing
 *                    "testvm: round R" before each (0: until stopped), to
 *                    keep every device and the emulation fallback busy
 *
 * It must itself avoid instructions those hosts cannot emulate (no SSE,
 * no x87: built with -mgeneral-regs-only), so QEMU can run it too. */
#include "testvm.h"

#define COM1 0x3f8
#define BOOT_TIMER_ADDR 0xc0000000UL
#define BOOT_TIMER_MAGIC 123

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

struct frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

static void putc_serial(char c)
{
	for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		;
	outb(COM1, (uint8_t)c);
}

void puts_serial(const char *s)
{
	while (*s) {
		if (*s == '\n')
			putc_serial('\r');
		putc_serial(*s++);
	}
}

void put_dec(uint64_t v)
{
	char buf[21];
	int i = 20;
	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_serial(&buf[i]);
}

void put_hex(uint64_t v)
{
	char buf[19] = "0x";
	for (int i = 0; i < 16; i++)
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
	buf[18] = 0;
	puts_serial(buf);
}

static unsigned passed, failed;

void result(const char *name, bool ok, const char *why)
{
	puts_serial(ok ? "testvm: PASS " : "testvm: FAIL ");
	puts_serial(name);
	if (!ok && why) {
		puts_serial(": ");
		puts_serial(why);
	}
	puts_serial("\n");
	if (ok)
		passed++;
	else
		failed++;
}

/* With no IDT, ud2's #UD cannot be delivered: #DF, then a triple fault. */
static __attribute__((noreturn)) void triple_fault(void)
{
	static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) null_idt = { 0, 0 };
	__asm__ volatile("lidt %0; ud2" : : "m"(null_idt));
	for (;;)
		__asm__ volatile("hlt");
}

#define QEMU_DEBUG_EXIT_PORT 0xf4

static __attribute__((noreturn)) void reset(void)
{
	/* The i8042 reset ends ember's VM. QEMU's microvm has no i8042:
	 * there the isa-debug-exit device (if configured) ends it, and
	 * failing that a triple fault does (with -no-reboot). */
	outb(0x64, 0xfe);
	outb(QEMU_DEBUG_EXIT_PORT, 0);
	triple_fault();
}

/* ---- exceptions ---------------------------------------------------- */

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_entry idt[32] __attribute__((aligned(16)));
extern char exception_stubs[];

static void idt_setup(void)
{
	for (int v = 0; v < 32; v++) {
		uint64_t h = (uint64_t)(exception_stubs + 16 * v);
		idt[v] = (struct idt_entry){
			.off0 = (uint16_t)h, .sel = 0x18, .ist = 0, .type = 0x8e,
			.off1 = (uint16_t)(h >> 16), .off2 = (uint32_t)(h >> 32),
		};
	}
	struct { uint16_t limit; uint64_t base; } __attribute__((packed)) d = {
		sizeof(idt) - 1, (uint64_t)idt,
	};
	__asm__ volatile("lidt %0" : : "m"(d));
}

volatile uint64_t bp_count, bp_rip;

void testvm_exception(struct frame *f);
void testvm_exception(struct frame *f)
{
	if (f->vector == 3) {
		bp_count++;
		bp_rip = f->rip;
		return;
	}
	puts_serial("testvm: FAIL exception ");
	put_dec(f->vector);
	puts_serial(" at rip ");
	put_hex(f->rip);
	puts_serial(" error ");
	put_hex(f->error);
	puts_serial("\n");
	reset();
}

/* ---- command line -------------------------------------------------- */

static const char *cmdline = "";

const char *testvm_cmdline(void)
{
	return cmdline;
}

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;
	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

bool has_word(const char *word)
{
	const char *p = cmdline;
	size_t n = 0;
	while (word[n])
		n++;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t i = 0;
		while (p[i] && p[i] != ' ')
			i++;
		if (i == n) {
			size_t k = 0;
			while (k < n && p[k] == word[k])
				k++;
			if (k == n)
				return true;
		}
		p += i;
	}
	return false;
}

/* The number after "word=" on the command line, or def. */
static uint64_t word_value(const char *word, uint64_t def)
{
	size_t n = 0;
	while (word[n])
		n++;
	for (const char *p = cmdline; *p; p++) {
		if ((p != cmdline && p[-1] != ' ') || memcmp(p, word, n) != 0 || p[n] != '=')
			continue;
		uint64_t v = 0;
		for (p += n + 1; *p >= '0' && *p <= '9'; p++)
			v = v * 10 + (uint64_t)(*p - '0');
		return v;
	}
	return def;
}

/* ---- counter: a guest whose progress and memory can be checked ------ */

#define FILL_BASE (16ULL << 20)
#define FILL_LIMIT (3ULL << 30) /* low RAM ends at the MMIO gap */

static uint64_t fill_word(uint64_t addr)
{
	return addr ^ 0x5a5aa5a5c3c33c3cULL;
}

/* Fill testvm.fill=MiB of RAM with a pattern, then count forever: one
 * "testvm: count N" line per step, and each step re-checks the next 64
 * pages of the pattern, so a restored VM whose memory came back wrong
 * says "FAIL memory" instead of counting on. Used by the snapshot tests
 * and the restore benchmark. With testvm.dirty=MiB, each step also writes
 * its number into every page of that much RAM after the pattern, having
 * checked that each still holds the step before's: a migration that lost
 * a page the guest wrote says "FAIL dirty memory". */
static void counter(uint64_t ram)
{
	uint64_t fill = word_value("testvm.fill", 0) << 20;
	uint64_t dirty = word_value("testvm.dirty", 0) << 20;
	uint64_t spin = word_value("testvm.counter", 100000);
	if (FILL_BASE + fill > ram || FILL_BASE + fill > FILL_LIMIT)
		fill = 0;
	uint64_t dirty_base = FILL_BASE + fill;
	if (dirty_base + dirty > ram || dirty_base + dirty > FILL_LIMIT)
		dirty = 0;
	for (uint64_t a = FILL_BASE; a < FILL_BASE + fill; a += 8)
		*(volatile uint64_t *)a = fill_word(a);
	puts_serial("testvm: filled ");
	put_dec(fill >> 20);
	puts_serial(" MiB\n");
	uint64_t pages = fill >> 12, next = 0;
	for (uint64_t count = 0;; count++) {
		for (uint64_t k = 0; pages && k < 64; k++, next = (next + 1) % pages) {
			uint64_t base = FILL_BASE + (next << 12);
			for (uint64_t a = base; a < base + 4096; a += 8)
				if (*(volatile uint64_t *)a != fill_word(a)) {
					puts_serial("testvm: FAIL memory at ");
					put_hex(a);
					puts_serial("\n");
					reset();
				}
		}
		for (uint64_t a = dirty_base; a < dirty_base + dirty; a += 4096) {
			if (count && *(volatile uint64_t *)a != count - 1) {
				puts_serial("testvm: FAIL dirty memory at ");
				put_hex(a);
				puts_serial("\n");
				reset();
			}
			*(volatile uint64_t *)a = count;
		}
		puts_serial("testvm: count ");
		put_dec(count);
		puts_serial("\n");
		for (volatile uint64_t i = 0; i < spin; i++)
			__asm__ volatile("pause");
	}
}

/* ---- main ---------------------------------------------------------- */

static uint64_t ram_bytes(const struct hvm_start_info *si)
{
	uint64_t total = 0;
	const struct hvm_memmap_entry *m = (const void *)si->memmap_paddr;
	for (uint32_t i = 0; si->memmap_paddr && i < si->memmap_entries; i++)
		if (m[i].type == 1)
			total += m[i].size;
	return total;
}

void testvm_main(const struct hvm_start_info *si);
void testvm_main(const struct hvm_start_info *si)
{
	idt_setup();
	*(volatile uint8_t *)BOOT_TIMER_ADDR = BOOT_TIMER_MAGIC;
	puts_serial("testvm: booted\n");
	if (si->magic != 0x336ec578) {
		result("start_info", false, "bad magic");
		reset();
	}
	if (si->cmdline_paddr)
		cmdline = (const char *)si->cmdline_paddr;
	puts_serial("testvm: cmdline ");
	puts_serial(cmdline);
	puts_serial("\ntestvm: ram ");
	put_dec(ram_bytes(si) >> 20);
	puts_serial(" MiB\n");

	uint64_t rounds = word_value("testvm.rounds", 1);
	for (uint64_t r = 0; rounds == 0 || r < rounds; r++) {
		if (rounds != 1) {
			puts_serial("testvm: round ");
			put_dec(r);
			puts_serial("\n");
		}
		if (has_word("testvm.cpuid"))
			cpuid_dump();
		if (has_word("testvm.emulate"))
			emulate_checks();
		if (has_word("testvm.virtio"))
			virtio_checks();
		if (has_word("testvm.blkbench"))
			virtio_blk_bench();
		if (has_word("testvm.blkiops"))
			virtio_blk_iops();
		if (has_word("testvm.netbench"))
			virtio_net_bench();
	}

	if (word_value("testvm.counter", 0))
		counter(ram_bytes(si));

	if (has_word("testvm.unknown")) {
		uint64_t out;
		__asm__ volatile("cli; andn %%rax, %%rcx, %%rax" : "=a"(out) : "a"(1ULL), "c"(3ULL));
		result("unknown-instruction-survived", false, "ember should have stopped");
	}

	puts_serial("testvm: done ");
	put_dec(passed);
	puts_serial(" passed ");
	put_dec(failed);
	puts_serial(" failed\n");
	if (has_word("testvm.waitinput"))
		while (!(inb(COM1 + 5) & 0x01)) /* LSR: data ready */
			for (volatile int i = 0; i < 100; i++)
				__asm__ volatile("pause");
	if (has_word("testvm.hang"))
		for (;;)
			__asm__ volatile("cli; hlt");
	if (has_word("testvm.triplefault"))
		triple_fault();
	reset();
}
