/* Typed requests from the API thread to the VMM thread, and their replies.
 *
 * The API thread parses HTTP and JSON into one of these and hands it over
 * (controller_submit); only the VMM thread reads or changes VM state. A
 * reply is an HTTP status with a fault message, or a JSON body. */
#ifndef EMBER_ACTION_H
#define EMBER_ACTION_H

#include <stdbool.h>

#include "config.h"
#include "migration/migration.h"

enum action_type {
	ACTION_GET_INSTANCE_INFO,
	ACTION_GET_MACHINE_CONFIG,
	ACTION_PUT_MACHINE_CONFIG,
	ACTION_PUT_CPU_CONFIG,
	ACTION_PATCH_MACHINE_CONFIG,
	ACTION_GET_VM_CONFIG,
	ACTION_PUT_BOOT_SOURCE,
	ACTION_PUT_DRIVE,
	ACTION_PATCH_DRIVE,
	ACTION_PUT_NET,
	ACTION_PATCH_NET,
	ACTION_PUT_PMEM,
	ACTION_PATCH_PMEM,
	ACTION_PUT_BALLOON,
	ACTION_PATCH_BALLOON,
	ACTION_PATCH_BALLOON_STATS,
	ACTION_GET_BALLOON,
	ACTION_GET_BALLOON_STATS,
	ACTION_BALLOON_HINT_START,   /* balloon_value: acknowledge_on_stop */
	ACTION_BALLOON_HINT_STOP,
	ACTION_GET_BALLOON_HINT_STATUS,
	ACTION_PUT_MEMORY_HOTPLUG,
	ACTION_PATCH_MEMORY_HOTPLUG,
	ACTION_GET_MEMORY_HOTPLUG,
	ACTION_PUT_VSOCK,
	ACTION_PUT_ENTROPY,
	ACTION_PUT_SERIAL,
	ACTION_PUT_LOGGER,
	ACTION_PUT_METRICS,
	ACTION_INSTANCE_START,
	ACTION_SEND_CTRL_ALT_DEL,
	ACTION_FLUSH_METRICS,
	ACTION_PAUSE,
	ACTION_RESUME,
	ACTION_SNAPSHOT_CREATE,
	ACTION_SNAPSHOT_LOAD,
	ACTION_GET_MMDS,
	ACTION_PUT_MMDS,
	ACTION_PATCH_MMDS,
	ACTION_PUT_MMDS_CONFIG,
	ACTION_MIGRATE_START,        /* ember's own: PUT|GET|DELETE /ember/migration */
	ACTION_GET_MIGRATION,
	ACTION_MIGRATE_CANCEL,
};

/* machine-config fields present in a request */
#define MACHINE_F_VCPU_COUNT 0x1
#define MACHINE_F_MEM_SIZE 0x2
#define MACHINE_F_SMT 0x4
#define MACHINE_F_TRACK_DIRTY 0x8
#define MACHINE_F_CPU_TEMPLATE 0x10
#define MACHINE_F_HUGE_PAGES 0x20
#define MACHINE_F_EMBER_KSM 0x40
#define MACHINE_F_EMBER_MEM 0x80
#define MACHINE_F_EMBER_NUMA 0x100

struct machine_update {
	struct machine_config value;
	unsigned fields;
};

/* PATCH /drives/{id}: after boot, a new backing file and/or rate limiter. */
struct drive_update {
	char drive_id[CONFIG_ID_MAX];
	bool has_path;
	char path_on_host[CONFIG_PATH_MAX];
	bool has_rate_limiter;
	struct ratelimiter_config rate_limiter;
};

/* PATCH /network-interfaces/{id}: after boot, new rate limiters. */
struct net_update {
	char iface_id[CONFIG_ID_MAX];
	bool has_rx, has_tx;
	struct ratelimiter_config rx, tx;
};

/* PATCH /pmem/{id}: after boot, a new rate limiter (or nothing). */
struct pmem_update {
	char id[CONFIG_ID_MAX];
	bool has_rate_limiter;
	struct ratelimiter_config rate_limiter;
};

enum snapshot_type { SNAPSHOT_FULL, SNAPSHOT_DIFF };

/* PUT /snapshot/create */
struct snapshot_create {
	enum snapshot_type type;
	char snapshot_path[CONFIG_PATH_MAX];
	char mem_file_path[CONFIG_PATH_MAX];
};

enum mem_backend_type { MEM_BACKEND_FILE, MEM_BACKEND_UFFD };

struct net_override {
	char iface_id[CONFIG_ID_MAX];
	char host_dev_name[IFNAMSIZ];
};

/* PUT /snapshot/load */
struct snapshot_load {
	char snapshot_path[CONFIG_PATH_MAX];
	enum mem_backend_type backend;
	char backend_path[CONFIG_PATH_MAX]; /* the memory file, or the handler's socket */
	bool track_dirty_pages;
	bool resume_vm;
	bool has_huge_pages;     /* else the snapshot's huge_pages */
	enum mem_pages huge_pages;
	/* ember's own "ember_mem_backend": what the restored RAM lives in
	 * (the memory file is copied into a memfd or host file); else
	 * anonymous, as the backend maps it. */
	enum mem_kind mem_kind;
	char mem_path[CONFIG_PATH_MAX];
	unsigned nnet_overrides;
	struct net_override net_overrides[CONFIG_MAX_NETS];
	bool has_vsock_override;
	char vsock_uds_path[CONFIG_UDS_MAX];
};

/* PUT|PATCH /mmds: the request's JSON body (checked to parse), which
 * stays in the API thread's buffer while the action is handled. */
struct mmds_data {
	const char *json;
	size_t len;
};

struct action {
	enum action_type type;
	union {
		struct machine_update machine;
		struct cpu_template cpu_config;   /* PUT /cpu-config */
		struct boot_source_config boot;
		struct drive_config drive;
		struct drive_update drive_update;
		struct net_config net;
		struct net_update net_update;
		struct pmem_config pmem;
		struct pmem_update pmem_update;
		struct balloon_config balloon;
		uint32_t balloon_value;   /* PATCH /balloon's amount_mib, the stats interval, or acknowledge_on_stop */
		struct memory_hotplug_config memory_hotplug;
		uint32_t requested_size_mib; /* PATCH /hotplug/memory */
		struct vsock_config vsock;
		struct entropy_config entropy;
		struct serial_config serial;
		struct logger_config logger;
		struct metrics_config metrics;
		struct snapshot_create snap_create;
		struct snapshot_load snap_load;
		struct mmds_data mmds_data;
		struct mmds_config mmds_config;
		struct migrate_request migrate;
	} u;

	/* The reply, set by the VMM thread. */
	int status;              /* 200 (with body), 204, or an error status */
	char fault[512];         /* the fault_message of an error */
	char *body;              /* JSON of a 200 reply; freed by the API thread */
};

#endif
