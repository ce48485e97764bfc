/* libFuzzer target: --seccomp-filter files (seccompiler-bin's bitcode
 * encoding). Any input is decoded or refused with a message, never read
 * past, never leaked; what is decoded is within the kernel's limits. */
#include <stddef.h>
#include <stdint.h>

#include "../../vmm/seccomp_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seccomp_file f;
	char err[256];
	err[0] = 0;
	if (seccomp_file_parse(data, size, &f, err, sizeof(err)) != 0) {
		if (!err[0])
			__builtin_trap(); /* every refusal must say why */
		return 0;
	}
	for (int i = 0; i < 3; i++)
		if (f.len[i] > SECCOMP_FILE_MAX_INSNS || (f.len[i] != 0) != (f.insns[i] != NULL))
			__builtin_trap();
	seccomp_file_free(&f);
	return 0;
}
