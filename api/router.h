/* Maps an HTTP request to a typed action (vmm/action.h), or to an
 * immediate answer: 404 for an unknown path, 405 for a method the path
 * does not take, 400 for a body that does not parse or an endpoint ember
 * does not implement yet. Pure: no I/O, no VM state. */
#ifndef EMBER_ROUTER_H
#define EMBER_ROUTER_H

#include <stddef.h>

#include "../vmm/action.h"
#include "http.h"

/* The endpoint a request was for (known paths only), for metrics. */
enum api_endpoint {
	EP_ROOT, EP_VERSION, EP_MACHINE_CONFIG, EP_VM_CONFIG, EP_BOOT_SOURCE, EP_DRIVES,
	EP_NETWORK_INTERFACES, EP_VSOCK, EP_ENTROPY, EP_SERIAL, EP_LOGGER, EP_METRICS, EP_ACTIONS,
	EP_VM, EP_SNAPSHOT_CREATE, EP_SNAPSHOT_LOAD,
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
};

/* Fill a (an action to submit) or r (an answer) for req. */
void api_route(const struct http_request *req, struct action *a, struct route_result *r);

#endif
