/* libFuzzer target: what a client sends ember-fn, through the parsers
 * that take it (api/http.c with POST allowed, then a function's
 * configuration, api/fn/function.c). Every input must be refused with a
 * reason or parsed into bounded, terminated fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/fn/agent_proto.h"
#include "../../api/fn/function.h"
#include "../../api/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req;
	ssize_t n = http_parse_request_post((const char *)data, size, 4096, true, &req);
	const char *body = (const char *)data;
	size_t len = size;
	if (n > 0) {
		if (req.body_len > size || strnlen(req.path, sizeof(req.path)) == sizeof(req.path))
			abort();
		body = req.body;
		len = req.body_len;
	} else if (n < 0 && !req.error) {
		abort();
	}
	/* The body as a function's configuration (also the raw input, so the
	 * JSON parser sees inputs the HTTP framing would not let through). */
	struct fn_config c;
	char err[512];
	if (fn_config_parse(body ? body : "", body ? len : 0, &c, err, sizeof(err)) == 0) {
		if (!c.handler[0] || c.timeout_ms == 0 || c.timeout_ms > AGENT_MAX_TIMEOUT_MS || c.max_concurrency == 0 ||
		    c.vcpus == 0 || c.env_len > sizeof(c.env) || (c.env_len && c.env[c.env_len - 1]) ||
		    c.max_warm == 0 || c.max_warm > FN_POOL_MAX)
			abort();
		/* env: NAME=VALUE\0 entries, each name [A-Za-z_][A-Za-z0-9_]*. */
		for (size_t at = 0; at < c.env_len; at += strlen(c.env + at) + 1) {
			size_t name = strcspn(c.env + at, "=");
			if (name == 0 || name > FN_ENV_NAME_MAX || !c.env[at + name] || (c.env[at] >= '0' && c.env[at] <= '9') ||
			    strspn(c.env + at, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != name)
				abort();
		}
		/* jail: each cgroup setting FILE=VALUE, printable, bounded; the
		 * ember-jailer flags are built from these. */
		if (c.jail.on && ((c.jail.cgroup_version != 1 && c.jail.cgroup_version != 2) ||
				  c.jail.ncgroups > FN_CGROUPS_MAX))
			abort();
		for (unsigned i = 0; c.jail.on && i < c.jail.ncgroups; i++) {
			const char *cg = c.jail.cgroups[i];
			size_t cl = strnlen(cg, FN_CGROUP_MAX);
			const char *eq = strchr(cg, '=');
			if (cl == FN_CGROUP_MAX || !eq || eq == cg || memchr(cg, '/', (size_t)(eq - cg)))
				abort();
			for (size_t k = 0; k < cl; k++)
				if ((unsigned char)cg[k] < 0x20 || (unsigned char)cg[k] >= 0x7f)
					abort();
		}
	} else if (!err[0]) {
		abort();
	}
	return 0;
}
