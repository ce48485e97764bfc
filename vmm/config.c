#include "config.h"

#include <string.h>

void config_defaults(struct vmm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->machine.vcpu_count = 1;
	cfg->machine.mem_size_mib = 128;
}
