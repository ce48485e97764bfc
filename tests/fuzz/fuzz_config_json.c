/* libFuzzer target: config-file / API JSON into the typed config. Any
 * input must be parsed or refused with a message, never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../api/config_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmm_config cfg;
	char err[256];
	config_defaults(&cfg);
	err[0] = 0;
	if (config_json_file((const char *)data, size, &cfg, err, sizeof(err)) != 0 && !err[0])
		__builtin_trap(); /* every refusal must say why */
	if (cfg.ndrives > CONFIG_MAX_DRIVES || cfg.nnets > CONFIG_MAX_NETS)
		__builtin_trap(); /* more devices than the arrays hold */
	return 0;
}
