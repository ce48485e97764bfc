/* JSON <-> typed configuration (vmm/config.h), with cJSON. Used for the
 * config file and for API request bodies, so both accept exactly the
 * same keys and give the same errors.
 *
 * Every function returns 0, or -EINVAL with a one-line message in err that
 * names the offending field ("machine-config.vcpu_count: ..."). A field
 * given JSON null is absent. Where a deserializer of Firecracker's types
 * would refuse the input too (a missing or unknown field, a wrong type or
 * enum variant), the text after "section.key: " is in its words
 * ("missing field `vcpu_count`"); see config_json_fault_serde(). */
#ifndef EMBER_CONFIG_JSON_H
#define EMBER_CONFIG_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "../vmm/config.h"

struct cJSON;

/* Parse JSON text from a client (len bytes, no terminator needed), more
 * strictly than cJSON alone: one value and only whitespace after it, no
 * control byte outside JSON's whitespace, no NUL in any string or key
 * (cJSON would cut "a.img\u0000.qcow2" to "a.img"), and no object that
 * names a key twice. Returns the tree (free with cJSON_Delete) or NULL
 * with the reason in err. Every JSON ember reads from outside (API
 * bodies, config files, a snapshot's configuration) comes through here. */
struct cJSON *config_json_parse(const char *text, size_t len, char *err, size_t errlen);

/* After a config_json_* function of this thread refused its input with a
 * deserializer's words: true, with the offset in err where those words
 * start, and where the refused part lies in text (which root was parsed
 * from), as line and column of the last byte a deserializer would have
 * read (serde_json's count, from 1). False for any other refusal. */
bool config_json_fault_serde(const char *text, size_t len, const struct cJSON *root,
			     size_t *msg_off, unsigned *line, unsigned *col);

/* Helpers for request bodies that are not config sections (router.c),
 * refusing in the same words: keys outside allowed (NULL-terminated);
 * a required key absent (or null); a string that must be one of
 * variants (its index into *out; absent leaves *out). */
int config_json_check_keys(const struct cJSON *obj, const char *section,
			   const char *const *allowed, char *err, size_t errlen);
int config_json_missing(const struct cJSON *obj, const char *section, const char *key,
			char *err, size_t errlen);
int config_json_variant(const struct cJSON *obj, const char *section, const char *key,
			const char *const *variants, bool required, int *out, char *err,
			size_t errlen);

int config_json_boot_source(const struct cJSON *obj, struct boot_source_config *out,
			    char *err, size_t errlen);
/* The machine-config keys present in obj, type- and range-checked, into
 * out, with the MACHINE_F_* bits of those present in *fields; put: a PUT
 * (or the config file), which must name vcpu_count and mem_size_mib.
 * Combine with the current configuration through config_machine_apply(). */
int config_json_machine(const struct cJSON *obj, bool put, struct machine_config *out,
			unsigned *fields, char *err, size_t errlen);
/* ember_mem_backend's value v ("anonymous", "memfd" or {"file": PATH}) of
 * section sec into kind and path (a PATH only for MEM_KIND_FILE, else "").
 * Returns 0 or -EINVAL with the reason in err. */
int config_json_mem_backend(const struct cJSON *v, const char *sec, enum mem_kind *kind, char *path,
			    size_t pathlen, char *err, size_t errlen);
/* Its JSON form, for GET /vm/config and snapshots. */
struct cJSON *config_json_mem_backend_obj(enum mem_kind kind, const char *path);

/* A custom CPU template (PUT /cpu-config, the config file's "cpu-config"),
 * in Firecracker's format: "kvm_capabilities" ["N", "!N"],
 * "cpuid_modifiers" [{"leaf", "subleaf", "flags", "modifiers":
 * [{"register", "bitmap"}]}], "msr_modifiers" [{"addr", "bitmap"}]; see
 * vmm/boot/cpu_template.h for the bitmaps. */
int config_json_cpu_template(const struct cJSON *obj, struct cpu_template *out, char *err, size_t errlen);

/* One entry of each device section, as in the config file and the API. */
int config_json_rate_limiter(const struct cJSON *obj, const char *section,
			     struct ratelimiter_config *out, char *err, size_t errlen);
int config_json_drive(const struct cJSON *obj, struct drive_config *out, char *err, size_t errlen);
int config_json_net(const struct cJSON *obj, struct net_config *out, char *err, size_t errlen);
int config_json_pmem(const struct cJSON *obj, struct pmem_config *out, char *err, size_t errlen);
int config_json_vsock(const struct cJSON *obj, struct vsock_config *out, char *err, size_t errlen);
/* A balloon body (PUT /balloon, the config file's "balloon"): amount_mib
 * and deflate_on_oom required, the rest optional; unknown keys refused. */
int config_json_balloon(const struct cJSON *obj, struct balloon_config *out, char *err, size_t errlen);
/* PATCH /balloon ({"amount_mib"}) or, with stats, PATCH /balloon/statistics
 * ({"stats_polling_interval_s"}): the one required field. */
int config_json_balloon_patch(const struct cJSON *obj, bool stats, uint32_t *out, char *err,
			      size_t errlen);
/* PATCH /balloon/hinting/start: acknowledge_on_stop, true unless the body
 * (NULL: none) says false; other keys are ignored, as Firecracker does. */
int config_json_balloon_hint_start(const struct cJSON *obj, bool *ack_on_stop, char *err, size_t errlen);
struct cJSON *config_json_balloon_obj(const struct balloon_config *b);
/* Firecracker's answer to a balloon larger than the guest's memory. */
#define BALLOON_TOO_LARGE "Balloon config error: Amount of pages requested is too large."
/* A memory-hotplug body (PUT /hotplug/memory, the config file's
 * "memory-hotplug"): total_size_mib required, block_size_mib (2) and
 * slot_size_mib (128) optional, then Firecracker's checks (the message in
 * err is its, after "Memory hotplug config error: "). */
int config_json_memory_hotplug(const struct cJSON *obj, struct memory_hotplug_config *out, char *err,
			       size_t errlen);
/* Firecracker's checks of a memory-hotplug configuration: 0, or -EINVAL
 * with its message (without the prefix) in err. */
int config_memory_hotplug_check(const struct memory_hotplug_config *h, char *err, size_t errlen);
#define MEMORY_HOTPLUG_FAULT "Memory hotplug config error: "
/* PATCH /hotplug/memory: {"requested_size_mib"}, required. */
int config_json_memory_hotplug_patch(const struct cJSON *obj, uint32_t *out, char *err, size_t errlen);
struct cJSON *config_json_memory_hotplug_obj(const struct memory_hotplug_config *h);
int config_json_entropy(const struct cJSON *obj, struct entropy_config *out, char *err,
			size_t errlen);
int config_json_serial(const struct cJSON *obj, struct serial_config *out, char *err, size_t errlen);
int config_json_logger(const struct cJSON *obj, struct logger_config *out, char *err, size_t errlen);
int config_json_metrics(const struct cJSON *obj, struct metrics_config *out, char *err, size_t errlen);
/* "mmds-config" / PUT /mmds/config: the fields only; mmds_config_check()
 * (vmm/mmds/mmds.h) checks them against the network interfaces. */
int config_json_mmds(const struct cJSON *obj, struct mmds_config *out, char *err, size_t errlen);

/* The typed configuration as JSON, in the config file's (and GET
 * /vm/config's) shape: feeding it back as --config-file gives the same VM.
 * As in Firecracker, "logger" and "metrics" are null however they were set
 * up, and the serial console is left out. */
struct cJSON *config_json_machine_obj(const struct machine_config *m);
struct cJSON *config_json_vm_obj(const struct vmm_config *cfg);
/* config_json_vm_obj() and the serial console, which a snapshot keeps (a
 * restored guest writes where it wrote before, unless PUT /serial came
 * first); GET /vm/config leaves it out, as Firecracker. */
struct cJSON *config_json_state_obj(const struct vmm_config *cfg);

/* Rules across entries: unique ids, tap names and MACs; one root device
 * among the drives and pmem devices.
 * A MAC used twice is -EADDRINUSE, every other breach -EINVAL. */
int config_check_devices(const struct vmm_config *cfg, char *err, size_t errlen);

/* A whole config file (text of len bytes) into cfg, which the caller has
 * set to defaults. A "cpu-config" path is refused here (the text may be a
 * snapshot's); config_load_file() follows it. */
int config_json_file(const char *text, size_t len, struct vmm_config *cfg, char *err,
		     size_t errlen);

/* Read and parse the config file at path (a regular file; opening it never
 * waits, see vmm/hostfile.h). */
int config_load_file(const char *path, struct vmm_config *cfg, char *err, size_t errlen);

#endif
