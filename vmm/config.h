/* The typed VM configuration. The config file (--config-file) and, later,
 * the HTTP API fill these same structs through the same parser
 * (api/config_json.c); everything else reads only these. */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/cpu_template.h"
#include "io/ratelimit.h"
#include "memory.h"

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
	/* A static template (machine-config "cpu_template"), or CUSTOM: the
	 * vmm_config's cpu_custom (PUT /cpu-config). The last one set wins. */
	enum cpu_template_kind cpu_template;
	enum mem_pages huge_pages;       /* "None", "Transparent", "2M" */
	bool ember_ksm;                  /* ember's own: guest memory MADV_MERGEABLE */
	/* ember's own: "ember_mem_backend" (anonymous, "memfd", {"file": PATH})
	 * and "ember_numa_node". */
	enum mem_kind mem_kind;
	char mem_path[CONFIG_PATH_MAX];  /* MEM_KIND_FILE */
	bool has_numa_node;
	unsigned numa_node;
};

#define CONFIG_ID_MAX 64
/* Each virtio device takes one of the 17 GSIs (layout.h), so no VM can
 * start with more than 17 devices of all kinds together (checked at start,
 * as Firecracker checks it); these bound what the configuration holds. */
#define CONFIG_MAX_DRIVES 17
#define CONFIG_MAX_NETS 17
#define CONFIG_MAX_PMEMS 17
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
	bool has_mtu;                   /* else no VIRTIO_NET_F_MTU */
	uint16_t mtu;
	struct ratelimiter_config rx_rate_limiter;
	struct ratelimiter_config tx_rate_limiter;
};

/* PUT /pmem/{id}: a host file mapped into guest memory (virtio-pmem). */
struct pmem_config {
	char id[CONFIG_ID_MAX];
	char path_on_host[CONFIG_PATH_MAX];
	bool root_device;
	bool read_only;                 /* mapped read-only, a read-only memory slot */
	struct ratelimiter_config rate_limiter; /* of flush requests */
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

/* PUT /balloon (virtio-balloon). */
struct balloon_config {
	bool set;
	uint32_t amount_mib;            /* target size */
	bool deflate_on_oom;
	uint16_t stats_polling_interval_s; /* 0: no statistics queue */
	bool free_page_hinting;         /* offer VIRTIO_BALLOON_F_FREE_PAGE_HINT */
	bool free_page_reporting;
};

/* PUT /hotplug/memory (virtio-mem): the hotpluggable region, validated
 * by config_memory_hotplug_check(). */
struct memory_hotplug_config {
	bool set;
	uint32_t total_size_mib;        /* a multiple of slot_size_mib */
	uint32_t block_size_mib;        /* a power of two, at least 2 (default 2) */
	uint32_t slot_size_mib;         /* a multiple of block_size_mib, at least 128 (default 128) */
};

struct serial_config {
	bool set;
	char serial_out_path[CONFIG_PATH_MAX]; /* "" : ember's stdout */
	struct token_bucket_config rate_limiter; /* bytes of guest output */
};

/* PUT /logger, or the config file's "logger". */
struct logger_config {
	bool set;
	bool has_path;
	char log_path[CONFIG_PATH_MAX];
	int level;               /* enum log_level, or -1 to keep the current one */
	int show_level;          /* 0/1, or -1 to keep */
	int show_log_origin;     /* 0/1, or -1 to keep */
};

/* PUT /metrics, or the config file's "metrics". */
#define CONFIG_METRICS_PROPERTIES_MAX 2048
struct metrics_config {
	bool set;
	char metrics_path[CONFIG_PATH_MAX];
	bool emit_id;            /* each line names the instance ("id") */
	/* "properties": a JSON object of strings, copied into each line; "" if none */
	char properties_json[CONFIG_METRICS_PROPERTIES_MAX];
	bool ember_counters;     /* ember's own group "ember" too (ember's key) */
};

/* PUT /mmds/config, or the config file's "mmds-config" (mmds/mmds.h). */
enum mmds_version { MMDS_V1 = 1, MMDS_V2 = 2 };
struct mmds_config {
	bool set;                      /* configured (GET /vm/config shows it) */
	enum mmds_version version;
	unsigned nifaces;
	char ifaces[CONFIG_MAX_NETS][CONFIG_ID_MAX]; /* network_interfaces */
	uint32_t ipv4;                 /* host byte order */
	bool imds_compat;
};

struct vmm_config {
	struct boot_source_config boot;
	struct machine_config machine;
	unsigned ndrives;
	struct drive_config drives[CONFIG_MAX_DRIVES];
	unsigned nnets;
	struct net_config nets[CONFIG_MAX_NETS];
	unsigned npmems;
	struct pmem_config pmems[CONFIG_MAX_PMEMS]; /* in /dev/pmemN order */
	struct vsock_config vsock;
	struct entropy_config entropy;
	struct balloon_config balloon;
	struct memory_hotplug_config memory_hotplug;
	struct serial_config serial;
	struct logger_config logger;
	struct metrics_config metrics;
	struct mmds_config mmds;
	struct cpu_template cpu_custom;   /* when machine.cpu_template is CUSTOM */
};

/* Firecracker's defaults: 1 vCPU, 128 MiB, no SMT. */
void config_defaults(struct vmm_config *cfg);

/* Set machine-config from the fields of v named in the MACHINE_F_* mask.
 * A PUT (patch false) needs vcpu_count and mem_size_mib and resets the
 * rest to defaults (but a CPU template, kept unless named, as Firecracker
 * keeps it); a PATCH changes only what it names. Then the whole is
 * checked (SMT needs an even vCPU count, huge pages an even mem_size_mib;
 * the memory size is checked against the host when
 * the VM starts, as Firecracker checks it: config_check_memory()).
 * Returns 0 or -EINVAL with the reason in err; cur changes only on 0. */
int config_machine_apply(struct machine_config *cur, const struct machine_config *v,
			 unsigned fields, bool patch, char *err, size_t errlen);

/* The checks of machine-config's ember_mem_backend and ember_numa_node
 * (and of what they combine with) that config_machine_apply() makes, for
 * a restore's configuration too: 0 or -errno with the reason in err. */
int config_check_backing(const struct machine_config *m, char *err, size_t errlen);
/* The backing file of MEM_KIND_FILE as PUT|PATCH /machine-config checks
 * it, early: missing passes (it is created at start), else it must be a
 * regular file, empty or at least mem_size_mib long. Not part of
 * config_machine_apply(), which also reads snapshots (whose file is not
 * used on restore). InstanceStart checks again (mem_open_file). */
int config_check_mem_file(const struct machine_config *m, char *err, size_t errlen);

/* machine-config's name of a huge_pages value: "None", "Transparent", "2M". */
const char *config_huge_pages_name(enum mem_pages p);

/* At InstanceStart: guest memory no larger than the host's. Returns 0 or
 * -ENOMEM with Firecracker's message (and the sizes) in err. */
int config_check_memory(const struct machine_config *m, char *err, size_t errlen);

/* Add pmem device p, or replace the one with its id, keeping Firecracker's
 * rules for the root device: no root pmem device while a drive is the root,
 * and one root pmem device at most. Returns 0, or -EINVAL (cfg unchanged)
 * with Firecracker's message in err. */
int config_pmem_put(struct vmm_config *cfg, const struct pmem_config *p, char *err, size_t errlen);

/* Index of the root pmem device, or -1. */
int config_pmem_root(const struct vmm_config *cfg);

#endif
