/* The API server: HTTP/1.1 on a Unix socket, served by its own thread.
 * Requests are parsed (http.c), routed to typed actions (router.c) and
 * handed to the VMM thread (controller_submit); the API thread never
 * touches VM state. Keep-alive, several clients at once, bodies limited
 * to max_body bytes. */
#ifndef EMBER_API_SERVER_H
#define EMBER_API_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "router.h"

struct controller;
struct cJSON;

struct api_stats {
	atomic_ullong requests[EP_COUNT];
	atomic_ullong responses_2xx, responses_4xx, responses_5xx;
	atomic_ullong latency_us_total, latency_us_max;
	atomic_ullong connections;
};

struct api_server {
	int listen_fd;
	int stop_fd;
	char path[108];
	size_t max_body;
	struct controller *ctrl;
	pthread_t thread;
	bool running;
	struct api_stats stats;
};

/* Bind path (refusing one a live server holds, replacing a stale socket
 * file) and start serving. Returns 0 or -errno with the reason in err. */
int api_server_start(struct api_server *s, const char *path, size_t max_body,
		     struct controller *ctrl, char *err, size_t errlen);

/* Stop the thread, close and remove the socket. */
void api_server_stop(struct api_server *s);

/* The server's counters into a metrics object (controller's api_metrics). */
void api_server_metrics(struct cJSON *out);

#endif
