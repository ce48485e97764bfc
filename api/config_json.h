/* JSON <-> typed configuration (vmm/config.h), with cJSON. Used for the
 * config file and for API request bodies, so both accept exactly the
 * same keys and give the same errors.
 *
 * Every function returns 0, or -EINVAL with a one-line message in err that
 * names the offending field ("machine-config.vcpu_count: ..."). */
#ifndef EMBER_CONFIG_JSON_H
#define EMBER_CONFIG_JSON_H

#include <stddef.h>

#include "../vmm/config.h"

struct cJSON;

int config_json_boot_source(const struct cJSON *obj, struct boot_source_config *out,
			    char *err, size_t errlen);
/* patch: only the keys present change out (PATCH semantics); otherwise
 * absent keys take Firecracker's defaults. */
int config_json_machine(const struct cJSON *obj, struct machine_config *out, int patch,
			char *err, size_t errlen);

/* One entry of each device section, as in the config file and the API. */
int config_json_rate_limiter(const struct cJSON *obj, const char *section,
			     struct ratelimiter_config *out, char *err, size_t errlen);
int config_json_drive(const struct cJSON *obj, struct drive_config *out, char *err, size_t errlen);
int config_json_net(const struct cJSON *obj, struct net_config *out, char *err, size_t errlen);
int config_json_vsock(const struct cJSON *obj, struct vsock_config *out, char *err, size_t errlen);
int config_json_entropy(const struct cJSON *obj, struct entropy_config *out, char *err,
			size_t errlen);
/* Rules across entries: unique ids, tap names and MACs; one root drive. */
int config_check_devices(const struct vmm_config *cfg, char *err, size_t errlen);

/* A whole config file (text of len bytes) into cfg, which the caller has
 * set to defaults. */
int config_json_file(const char *text, size_t len, struct vmm_config *cfg, char *err,
		     size_t errlen);

/* Read and parse the config file at path. */
int config_load_file(const char *path, struct vmm_config *cfg, char *err, size_t errlen);

#endif
