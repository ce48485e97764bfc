/* --seccomp-filter files: seccompiler-bin's bitcode encoding decoded,
 * every packing the encoder picks, and every malformed file refused with
 * a reason (never a read past the buffer: see also tests/fuzz). */
#include <criterion/criterion.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/seccomp_file.h"

/* Written by tests/integration/seccomp_file_gen.c: vmm=allow api=allow
 * vcpu=kill:135 (key lengths in 6 values a byte, program lengths in 16,
 * instructions unpacked). */
static const uint8_t allow_kill[] = {
	0x03, 0x04, 0xa5, 0x76, 0x6d, 0x6d, 0x61, 0x70, 0x69, 0x76, 0x63, 0x70, 0x75, 0x02, 0x55, 0x07,
	0x00, 0x20, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x15, 0x00, 0x01, 0x00, 0x3e, 0x00, 0x00,
	0xc0, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x7f, 0x20, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00,
	0x00, 0x15, 0x00, 0x01, 0x00, 0x3e, 0x00, 0x00, 0xc0, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x80, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
	0x7f, 0x20, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x15, 0x00, 0x01, 0x00, 0x3e, 0x00, 0x00,
	0xc0, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x15, 0x00, 0x00, 0x01, 0x87, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x80, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x7f
};

#define KEYS 0x04, 0xa5, 'v', 'm', 'm', 'a', 'p', 'i', 'v', 'c', 'p', 'u' /* lengths 3, 3, 4 */

static int parse(const uint8_t *b, size_t n, struct seccomp_file *f, char *err)
{
	return seccomp_file_parse(b, n, f, err, 256);
}

Test(seccomp_file, seccompiler_output_decodes)
{
	struct seccomp_file f;
	char err[256] = "";
	cr_assert_eq(parse(allow_kill, sizeof(allow_kill), &f, err), 0, "%s", err);
	cr_assert_eq(f.len[0], 5);
	cr_assert_eq(f.len[1], 5);
	cr_assert_eq(f.len[2], 7);
	/* vcpu: ld arch, jeq x86-64, kill, ld nr, jeq 135, kill, allow */
	cr_assert_eq(f.insns[2][0].code, BPF_LD | BPF_W | BPF_ABS);
	cr_assert_eq(f.insns[2][0].k, 4);
	cr_assert_eq(f.insns[2][1].jt, 1);
	cr_assert_eq(f.insns[2][1].k, 0xc000003e);
	cr_assert_eq(f.insns[2][4].code, BPF_JMP | BPF_JEQ | BPF_K);
	cr_assert_eq(f.insns[2][4].jf, 1);
	cr_assert_eq(f.insns[2][4].k, 135);
	cr_assert_eq(f.insns[2][6].k, 0x7fff0000);
	seccomp_file_free(&f);
}

/* Integers packed a byte each after a minimum (1000..1005), and empty
 * programs (no filter for that thread). */
Test(seccomp_file, offset_packed_values_and_empty_programs)
{
	static const uint8_t b[] = { 0x03, KEYS, 0x02, 0x06, 0x00,
				     0x05, 0xe8, 0x03, 0, 0, 0, 0, 0, 0, 0x04, 0x4e, 0xcf };
	struct seccomp_file f;
	char err[256] = "";
	cr_assert_eq(parse(b, sizeof(b), &f, err), 0, "%s", err);
	cr_assert_eq(f.len[0], 6);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(f.insns[0][i].code, 1000 + i);
	cr_assert_eq(f.len[1], 0);
	cr_assert_null(f.insns[1]);
	cr_assert_eq(f.len[2], 0);
	seccomp_file_free(&f);
}

/* A length of 255 or more (the escape to a u64 list), and 300 equal values
 * packed as bits after a minimum. */
Test(seccomp_file, long_program_and_bit_packing)
{
	uint8_t b[64] = { 0x03, KEYS, 0x00, 0xff, 0x00, 0x00, 0x04, 0x2c, 0x01, 0x06, 0x09, 0x07 };
	size_t n = 23 + 38; /* 38 zero bytes: 300 values of 7 - 7 */
	struct seccomp_file f;
	char err[256] = "";
	cr_assert_eq(parse(b, n, &f, err), 0, "%s", err);
	cr_assert_eq(f.len[0], 300);
	for (int i = 0; i < 300; i++)
		cr_assert_eq(f.insns[0][i].code, 7);
	seccomp_file_free(&f);
	cr_assert_neq(parse(b, n + 1, &f, err), 0, "a byte after the filters");
	cr_assert(strstr(err, "1 bytes after the filters"), "%s", err);
}

Test(seccomp_file, categories_are_checked)
{
	static const uint8_t missing[] = { 0x02, 0x03, 0x03, 'v', 'm', 'm', 'a', 'p', 'i', 0x00, 0x00 };
	static const uint8_t unknown[] = { 0x04, 0x04, 0xa5, 0x03, 'v', 'm', 'm', 'a', 'p', 'i', 'v', 'c', 'p', 'u',
					   'f', 'o', 'o', 0x0a, 0x00 };
	static const uint8_t upper[] = { 0x03, 0x04, 0xa5, 'V', 'M', 'M', 'A', 'p', 'i', 'v', 'C', 'p', 'u', 0x0a, 0x00 };
	static const uint8_t none[] = { 0x00 };
	struct seccomp_file f;
	char err[256] = "";
	cr_assert_neq(parse(missing, sizeof(missing), &f, err), 0);
	cr_assert_str_eq(err, "Missing thread category: vcpu");
	cr_assert_neq(parse(unknown, sizeof(unknown), &f, err), 0);
	cr_assert_str_eq(err, "Invalid thread categories: foo");
	cr_assert_neq(parse(none, sizeof(none), &f, err), 0);
	cr_assert_str_eq(err, "Missing thread category: vmm");
	cr_assert_eq(parse(upper, sizeof(upper), &f, err), 0, "names are case-insensitive: %s", err);
	seccomp_file_free(&f);
}

Test(seccomp_file, malformed_files_are_refused)
{
	struct seccomp_file f;
	char err[256];
	/* Every truncation of a good file. */
	for (size_t n = 0; n < sizeof(allow_kill); n++) {
		err[0] = 0;
		cr_assert_neq(parse(allow_kill, n, &f, err), 0, "%zu of %zu bytes accepted", n, sizeof(allow_kill));
		cr_assert(err[0]);
	}
	uint8_t b[sizeof(allow_kill)];
	memcpy(b, allow_kill, sizeof(b));
	b[1] = 0x0d; /* a packing that does not exist */
	cr_assert_neq(parse(b, sizeof(b), &f, err), 0);
	cr_assert(strstr(err, "Filter deserialization failed: invalid packing"), "%s", err);
	cr_assert_neq(parse((const uint8_t *)"Invalid BPF!", 12, &f, err), 0);
	cr_assert(strstr(err, "Filter deserialization failed"), "%s", err);

	static const uint8_t too_long[] = { 0x03, KEYS, 0x00, 0xff, 0x00, 0x00, 0x04, 0x88, 0x13 }; /* 5000 */
	cr_assert_neq(parse(too_long, sizeof(too_long), &f, err), 0);
	cr_assert_str_eq(err, "Filter length exceeds the maximum size of 4096 instructions");

	uint8_t *big = calloc(1, SECCOMP_FILE_MAX_BYTES + 1);
	cr_assert_neq(parse(big, SECCOMP_FILE_MAX_BYTES + 1, &f, err), 0);
	cr_assert(strstr(err, "exceeds limit of 100000 bytes"), "%s", err);
	free(big);
}
