/* The API server: HTTP/1.1 on a Unix socket, served by its own thread.
 * Requests are parsed (http.c), routed to typed actions (router.c) and
 * handed to the VMM thread (controller_submit); the API thread never
 * touches VM state. Keep-alive, several clients at once, bodies limited
 * to max_body bytes; idle and slow clients are timed out, and one that
 * does not read its answers is not read from (the limits below). */
#ifndef EMBER_API_SERVER_H
#define EMBER_API_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "router.h"

/* What keeps the API available to every client (README, "The API"):
 * - at most API_MAX_CLIENTS connections; a new one beyond them closes
 *   the one that has waited longest without progress;
 * - a connection with nothing buffered (or with answers it does not read)
 *   for API_IDLE_TIMEOUT_MS is closed, and so is one whose request has not
 *   arrived whole API_REQUEST_TIMEOUT_MS after its first byte;
 * - while a client's unsent answers exceed API_OUTPUT_LIMIT bytes its
 *   further requests are not read;
 * - when accept fails for want of fds (EMFILE, ENFILE) the listener rests
 *   API_ACCEPT_BACKOFF_MS; queued connections wait in the backlog. */
#define API_MAX_CLIENTS 32
#define API_IDLE_TIMEOUT_MS 60000
#define API_REQUEST_TIMEOUT_MS 10000
#define API_OUTPUT_LIMIT 65536
#define API_ACCEPT_BACKOFF_MS 100

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

/* Bind path and start serving. A path that exists already (a live
 * server's socket, a stale one, any file) is refused, as Firecracker
 * refuses it, with its words in err. Returns 0 or -errno. */
int api_server_start(struct api_server *s, const char *path, size_t max_body,
		     struct controller *ctrl, char *err, size_t errlen);

/* Stop the thread, close and remove the socket. */
void api_server_stop(struct api_server *s);

/* The server's counters into a metrics object (controller's api_metrics). */
void api_server_metrics(struct cJSON *out);

#ifdef EMBER_TEST_HOOKS
/* Test builds only: when non-zero, both timeouts above, in ms. */
extern unsigned api_server_test_timeout_ms;
#endif

#endif
