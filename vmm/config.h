/* The typed VM configuration. The config file (--config-file) and, later,
 * the HTTP API fill these same structs through the same parser
 * (api/config_json.c); everything else reads only these. */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/ratelimit.h"

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

#define CONFIG_ID_MAX 64
#define CONFIG_MAX_DRIVES 8
#define CONFIG_MAX_NETS 8
#define CONFIG_UDS_MAX 108 /* sun_path */

enum cache_type { CACHE_UNSAFE, CACHE_WRITEBACK };
enum io_engine { IO_ENGINE_ASYNC, IO_ENGINE_SYNC };

struct drive_config {
	char drive_id[CONFIG_ID_MAX];
	char path_on_host[CONFIG_PATH_MAX];
	bool is_root_device;
	bool is_read_only;
	char partuuid[CONFIG_ID_MAX];   /* "" when none */
	enum cache_type cache_type;
	enum io_engine io_engine;
	struct ratelimiter_config rate_limiter;
};

struct net_config {
	char iface_id[CONFIG_ID_MAX];
	char host_dev_name[IFNAMSIZ];
	bool has_mac;
	uint8_t guest_mac[6];
	struct ratelimiter_config rx_rate_limiter;
	struct ratelimiter_config tx_rate_limiter;
};

struct vsock_config {
	bool set;
	uint32_t guest_cid;
	char uds_path[CONFIG_UDS_MAX];
};

struct entropy_config {
	bool set;
	struct ratelimiter_config rate_limiter;
};

struct vmm_config {
	struct boot_source_config boot;
	struct machine_config machine;
	unsigned ndrives;
	struct drive_config drives[CONFIG_MAX_DRIVES];
	unsigned nnets;
	struct net_config nets[CONFIG_MAX_NETS];
	struct vsock_config vsock;
	struct entropy_config entropy;
};

/* Firecracker's defaults: 1 vCPU, 128 MiB, no SMT. */
void config_defaults(struct vmm_config *cfg);

#endif
