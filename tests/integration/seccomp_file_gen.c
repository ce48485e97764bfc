/* Writes a seccomp filter file in the format of Firecracker's
 * seccompiler-bin (see vmm/seccomp_file.h), choosing each list's packing
 * as the bitcode 0.6 encoder does, for the --seccomp-filter tests.
 *
 *   seccomp-file-gen OUT NAME=SPEC...
 *     SPEC  allow          a program that allows every system call
 *           kill:NR[,NR]   one that kills the process on those calls
 *           trap:NR[,NR]   one that sends SIGSYS on them (seccomp's "trap")
 *           empty          an empty program (no filter for the thread)
 *
 * Every program first kills any call of an architecture but x86-64. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROGS 16
#define MAX_INSNS 256

static uint8_t out[1 << 20];
static size_t outlen;

static void put(uint8_t b)
{
	if (outlen == sizeof(out)) {
		fprintf(stderr, "seccomp-file-gen: output too large\n");
		exit(2);
	}
	out[outlen++] = b;
}

static void put_le(uint64_t v, unsigned width)
{
	for (unsigned i = 0; i < width; i++)
		put((uint8_t)(v >> (8 * i)));
}

/* bitcode's byte packings: 256, 16, 6, 4, 3 or 2 values a digit. */
static const unsigned base[] = { 256, 16, 6, 4, 3, 2 }, digits[] = { 1, 2, 3, 4, 5, 8 };

static unsigned byte_packing(unsigned max)
{
	return max <= 1 ? 5 : max == 2 ? 4 : max == 3 ? 3 : max <= 5 ? 2 : max <= 15 ? 1 : 0;
}

static void min_max_bytes(const uint8_t *v, size_t n, unsigned *min, unsigned *max)
{
	*min = 255;
	*max = 0;
	for (size_t i = 0; i < n; i++) {
		*min = v[i] < *min ? v[i] : *min;
		*max = v[i] > *max ? v[i] : *max;
	}
}

static void pack_bytes(const uint8_t *v, size_t n)
{
	if (n <= 2) {
		for (size_t i = 0; i < n; i++)
			put(v[i]);
		return;
	}
	unsigned min, max;
	min_max_bytes(v, n < 32 ? n : 32, &min, &max); /* the encoder samples the first 32 */
	if (byte_packing(max - min) == 0) {
		put(0);
		for (size_t i = 0; i < n; i++)
			put(v[i]);
		return;
	}
	min_max_bytes(v, n, &min, &max);
	unsigned p = byte_packing(max), off = byte_packing(max - min);
	unsigned sub = 0;
	if (off > p && n > 5) {
		put((uint8_t)(off * 2 - 1));
		put((uint8_t)min);
		p = off;
		sub = min;
	} else {
		put((uint8_t)(p * 2));
	}
	if (p == 0) {
		for (size_t i = 0; i < n; i++)
			put(v[i]);
		return;
	}
	for (size_t i = 0; i < n; i += digits[p]) {
		unsigned acc = 0, scale = 1;
		for (size_t j = i; j < n && j < i + digits[p]; j++, scale *= base[p])
			acc += (v[j] - sub) * scale;
		put((uint8_t)acc);
	}
}

/* bitcode's u64 packings: 8, 4, 2 or 1 byte(s) each (index 1-4). */
static unsigned int_packing(uint64_t max)
{
	return max <= 0xff ? 4 : max <= 0xffff ? 3 : max <= 0xffffffffULL ? 2 : 1;
}

static void min_max_u64(const uint64_t *v, size_t n, uint64_t *min, uint64_t *max)
{
	*min = UINT64_MAX;
	*max = 0;
	for (size_t i = 0; i < n; i++) {
		*min = v[i] < *min ? v[i] : *min;
		*max = v[i] > *max ? v[i] : *max;
	}
}

static void pack_u64s(const uint64_t *v, size_t n)
{
	static const unsigned width[] = { 16, 8, 4, 2, 1 };
	if (n == 0)
		return;
	uint64_t min, max;
	min_max_u64(v, n < 16 ? n : 16, &min, &max); /* the encoder samples the first 16 */
	if (int_packing(max - min) == 1) {
		put(0);
		for (size_t i = 0; i < n; i++)
			put_le(v[i], 8);
		return;
	}
	min_max_u64(v, n, &min, &max);
	unsigned p = int_packing(max), off = int_packing(max - min);
	uint64_t sub = 0;
	if (off > p && n > 5) {
		put((uint8_t)((off - 1) * 2 - 1));
		put_le(min, 8);
		p = off;
		sub = min;
	} else {
		put((uint8_t)((p - 1) * 2));
	}
	if (width[p] == 1) {
		uint8_t *b = malloc(n);
		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)(v[i] - sub);
		pack_bytes(b, n);
		free(b);
		return;
	}
	for (size_t i = 0; i < n; i++)
		put_le(v[i] - sub, width[p]);
}

/* A list of lengths: a byte each (255: see the large ones), then the
 * large ones as u64s. */
static void pack_lengths(const size_t *len, size_t n)
{
	uint8_t small[MAX_PROGS];
	uint64_t large[MAX_PROGS];
	size_t nlarge = 0;
	for (size_t i = 0; i < n; i++) {
		small[i] = len[i] < 255 ? (uint8_t)len[i] : 255;
		if (len[i] >= 255)
			large[nlarge++] = len[i];
	}
	pack_bytes(small, n);
	pack_u64s(large, nlarge);
}

static uint64_t insn(uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
	return code | (uint64_t)jt << 16 | (uint64_t)jf << 24 | (uint64_t)k << 32;
}

static size_t program(const char *spec, uint64_t *p)
{
	size_t n = 0;
	if (strcmp(spec, "empty") == 0)
		return 0;
	p[n++] = insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, arch));
	p[n++] = insn(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
	p[n++] = insn(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
	p[n++] = insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, nr));
	bool trap = strncmp(spec, "trap:", 5) == 0;
	if (trap || strncmp(spec, "kill:", 5) == 0) {
		for (const char *s = spec + 5; *s && n < MAX_INSNS - 3;) {
			char *end;
			unsigned long nr = strtoul(s, &end, 10);
			if (end == s) {
				fprintf(stderr, "seccomp-file-gen: bad syscall list '%s'\n", spec);
				exit(2);
			}
			p[n++] = insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)nr);
			p[n++] = insn(BPF_RET | BPF_K, 0, 0, trap ? SECCOMP_RET_TRAP : SECCOMP_RET_KILL_PROCESS);
			s = *end == ',' ? end + 1 : end;
		}
	} else if (strcmp(spec, "allow") != 0) {
		fprintf(stderr, "seccomp-file-gen: unknown program '%s'\n", spec);
		exit(2);
	}
	p[n++] = insn(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
	return n;
}

int main(int argc, char **argv)
{
	static uint64_t insns[MAX_PROGS * MAX_INSNS];
	const char *names[MAX_PROGS];
	size_t name_len[MAX_PROGS], prog_len[MAX_PROGS], n = 0, total = 0;
	if (argc < 2 || argc - 2 > MAX_PROGS) {
		fprintf(stderr, "usage: seccomp-file-gen OUT NAME=allow|kill:NR[,NR]|trap:NR[,NR]|empty ...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++, n++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "seccomp-file-gen: '%s' is not NAME=SPEC\n", argv[i]);
			return 2;
		}
		names[n] = argv[i];
		name_len[n] = (size_t)(eq - argv[i]);
		prog_len[n] = program(eq + 1, insns + total);
		total += prog_len[n];
	}
	/* The map's length, the keys (lengths, then bytes), the programs'
	 * lengths, then all their instructions. */
	size_t count = n;
	pack_lengths(&count, 1);
	if (n) {
		pack_lengths(name_len, n);
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < name_len[i]; k++)
				put((uint8_t)names[i][k]);
		pack_lengths(prog_len, n);
		pack_u64s(insns, total);
	}
	FILE *f = fopen(argv[1], "wb");
	if (!f || fwrite(out, 1, outlen, f) != outlen || fclose(f) != 0) {
		perror(argv[1]);
		return 1;
	}
	return 0;
}
