/* The typed VM configuration. The config file (--config-file) and, later,
 * the HTTP API fill these same structs through the same parser
 * (api/config_json.c); everything else reads only these. */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MAX_VCPUS 32
#define CONFIG_PATH_MAX 4096

struct boot_source_config {
	bool set;
	char kernel_image_path[CONFIG_PATH_MAX];
	char initrd_path[CONFIG_PATH_MAX]; /* "" when none */
	char boot_args[4096];
	bool has_boot_args;                /* else ember's defaults apply */
};

struct machine_config {
	unsigned vcpu_count;
	uint64_t mem_size_mib;
	bool smt;
	bool track_dirty_pages;
};

struct vmm_config {
	struct boot_source_config boot;
	struct machine_config machine;
};

/* Firecracker's defaults: 1 vCPU, 128 MiB, no SMT. */
void config_defaults(struct vmm_config *cfg);

#endif
