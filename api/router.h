/* Maps an HTTP request to a typed action (vmm/action.h), or to an
 * immediate answer, in Firecracker's words: 400 for an unknown path or a
 * method the path does not take ("Invalid request method and/or path:
 * ..."), a missing or unexpected body, a body that does not deserialize
 * ("An error occurred when deserializing the json body of a request:
 * ..."), or an endpoint ember does not implement yet. Pure: no I/O, no
 * VM state. */
#ifndef EMBER_ROUTER_H
#define EMBER_ROUTER_H

#include <stddef.h>

#include "../vmm/action.h"
#include "http.h"

/* The endpoint a request was for (known paths only), for metrics. */
enum api_endpoint {
	EP_ROOT, EP_VERSION, EP_MACHINE_CONFIG, EP_VM_CONFIG, EP_BOOT_SOURCE, EP_DRIVES,
	EP_NETWORK_INTERFACES, EP_VSOCK, EP_ENTROPY, EP_SERIAL, EP_LOGGER, EP_METRICS, EP_ACTIONS,
	EP_VM, EP_SNAPSHOT_CREATE, EP_SNAPSHOT_LOAD, EP_MMDS, EP_CPU_CONFIG, EP_PMEM, EP_BALLOON, EP_BALLOON_STATS,
	EP_BALLOON_HINTING,
	EP_HOTPLUG_MEMORY,
	EP_MIGRATION,           /* ember's own: /ember/migration */
	EP_UNSUPPORTED, EP_UNKNOWN, EP_COUNT
};
const char *api_endpoint_name(enum api_endpoint ep);

struct route_result {
	enum api_endpoint endpoint;
	/* 0: submit the action; otherwise answer with this status and either
	 * body (200) or fault. */
	int status;
	char fault[512];
	char body[128];
	/* When the request uses a deprecated field: what to log (at Warning)
	 * and the reason for the Deprecation header, whatever the outcome. */
	char deprecation[128];
};

/* Fill a (an action to submit) or r (an answer) for req. */
void api_route(const struct http_request *req, struct action *a, struct route_result *r);

#endif
