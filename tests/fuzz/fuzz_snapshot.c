/* libFuzzer target: the snapshot state decoder. The input is taken twice:
 * as a whole file (header, version, size and checksum checks), and as a
 * payload wrapped in a valid header, so mutations reach the section and
 * field checks behind the checksum. Any input must decode or be refused
 * with a message, never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/snapshot/snapfile.h"
#include "../../vmm/snapshot/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const uint8_t *file, size_t len)
{
	static struct snapshot_image img;
	char err[256];
	err[0] = 0;
	if (snapshot_parse(file, len, &img, err, sizeof(err)) == 0)
		snapshot_image_free(&img);
	else if (!err[0])
		__builtin_trap(); /* every refusal must say why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode(data, size);
	if (size > SNAPFILE_MAX_SIZE)
		return 0;
	uint8_t *file = malloc(SNAPFILE_HEADER_SIZE + size);
	if (!file)
		return 0;
	uint64_t fields[3] = { (uint64_t)SNAPFILE_VERSION | (uint64_t)SNAPFILE_HEADER_SIZE << 32, size,
			       snap_crc64(0, data, size) };
	memcpy(file, SNAPFILE_MAGIC, 8);
	memcpy(file + 8, fields, sizeof(fields)); /* little-endian host */
	memcpy(file + SNAPFILE_HEADER_SIZE, data, size);
	decode(file, SNAPFILE_HEADER_SIZE + size);
	free(file);
	return 0;
}
