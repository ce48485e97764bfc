/* MMDS, the microVM metadata service: a JSON store the host fills through
 * the API (PUT|PATCH|GET /mmds) and the guest reads over HTTP at a link-
 * local address (169.254.169.254 unless configured), as Firecracker's.
 *
 * This module is the data side: the store, its configuration (PUT
 * /mmds/config), the V2 session tokens and the answer to one guest HTTP
 * request. It does no I/O: the network responder (stack.h) hands it the
 * bytes of a request and sends back what it writes. Everything here runs on
 * the VMM thread; only the counters (struct mmds_metrics) are read from
 * elsewhere. */
#ifndef EMBER_MMDS_H
#define EMBER_MMDS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../config.h"

struct mmds;                       /* store + config + tokens, owned by the VMM thread */

/* Firecracker's default store limit (its API payload limit), in bytes of
 * the store's compact JSON. --mmds-size-limit changes it. */
#define MMDS_SIZE_LIMIT_DEFAULT 51200
#define MMDS_IPV4_DEFAULT 0xa9fea9feu  /* 169.254.169.254, host byte order */

/* Token lifetimes accepted by PUT /latest/api/token, in seconds. */
#define MMDS_TOKEN_TTL_MIN 1
#define MMDS_TOKEN_TTL_MAX 21600

/* Create an empty, uninitialized store (GET /mmds answers {}; PATCH is
 * refused until a PUT) with the default configuration (V1, no interface,
 * MMDS_IPV4_DEFAULT). size_limit: bytes, 0 for the default. NULL on ENOMEM. */
struct mmds *mmds_new(size_t size_limit);
void mmds_free(struct mmds *m);

/* Replace the configuration (checked by the caller: config_json.c and
 * the controller). Tokens handed out stay valid, as in Firecracker. */
void mmds_set_config(struct mmds *m, const struct mmds_config *c);
const struct mmds_config *mmds_get_config(const struct mmds *m);
/* An ipv4_address Firecracker accepts: 169.254.0.0/16 without
 * 169.254.0.0/24 and 169.254.255.0/24 (host byte order). */
bool mmds_ipv4_valid(uint32_t addr);
size_t mmds_size_limit(const struct mmds *m);
void mmds_set_size_limit(struct mmds *m, size_t limit); /* 0: the default */
/* c against the VM's configuration, in Firecracker's order and words: a
 * link-local ipv4 address, at least one interface, each one configured.
 * Returns 0 or -EINVAL with the reason in err. */
int mmds_config_check(const struct mmds_config *c, const struct vmm_config *cfg, char *err, size_t errlen);
/* A PUT has been made (or a restore brought a store): PATCH works. */
bool mmds_initialized(const struct mmds *m);

/* PUT /mmds: replace the store with the JSON document json[0..len).
 * PATCH /mmds: apply it as a JSON merge patch (RFC 7396); refused while no
 * PUT was made. Both refuse a result whose compact JSON exceeds the limit,
 * leaving the store as it was. Returns 0, -EINVAL (not JSON; err says
 * why), -ENOENT (PATCH before any PUT) or -EFBIG (over the limit), with
 * Firecracker's fault text in err. */
int mmds_put(struct mmds *m, const char *json, size_t len, char *err, size_t errlen);
int mmds_patch(struct mmds *m, const char *json, size_t len, char *err, size_t errlen);

/* --metadata PATH: PUT the JSON in the file (a regular file or FIFO,
 * opened without blocking: hostfile.h). Returns 0 or -errno with
 * Firecracker's words and the path in err. */
int mmds_load_file(struct mmds *m, const char *path, char *err, size_t errlen);

/* GET /mmds: the whole store as compact JSON ("{}" while uninitialized or null),
 * malloc'd (the caller frees), or NULL on ENOMEM. */
char *mmds_get(const struct mmds *m);

/* For the state file: the store as compact JSON, malloc'd, or NULL while
 * uninitialized (or on ENOMEM: the caller cannot tell, so it checks
 * mmds_initialized()). mmds_restore_store() puts such a text back (len 0:
 * uninitialized), refusing JSON that does not parse or exceeds this
 * store's limit: 0 or -EINVAL with the reason in err. */
char *mmds_store_json(const struct mmds *m);
int mmds_restore_store(struct mmds *m, const char *json, size_t len, char *err, size_t errlen);

/* Answer one guest HTTP request held in req[0..len). Returns the length of the complete
   HTTP/1.1 response written to out[0..cap) (>0), 0 if the request is not complete yet
   (headers, or a body announced by Content-Length, still missing; the caller buffers
   more), or -EMSGSIZE if the request exceeds the bound this module sets (the caller then
   drops the connection). Malformed requests get an HTTP error response, never a crash.
   now_ms is a monotonic clock (token expiry).
   The response is complete and self-delimiting (Content-Length); cap should be at
   least mmds_response_limit() so that the largest store fits; if it does not, the
   answer is a short 500 response instead (never a truncated one). */
ssize_t mmds_http_answer(struct mmds *m, const char *req, size_t len,
                         char *out, size_t cap, uint64_t now_ms);
size_t mmds_request_limit(void);   /* the largest request accepted, bytes */
/* Framing for a caller that buffers a stream: the length of the first
 * complete request in req[0..len) (head and Content-Length body), 0 if it
 * is incomplete, -EMSGSIZE if it exceeds mmds_request_limit(). Bytes past
 * it belong to the next request; mmds_http_answer() answers the first. */
ssize_t mmds_http_request_len(const char *req, size_t len);
/* The largest response mmds_http_answer() can write for this store's limit. */
size_t mmds_response_limit(const struct mmds *m);
uint32_t mmds_ipv4(const struct mmds *m);   /* host byte order */
/* The interface is among the configured network_interfaces. */
bool mmds_serves_iface(const struct mmds *m, const char *iface_id);

/* The "mmds" metrics group, as Firecracker's schema names it. Counted by
 * whoever sees the event (the responder: frames, connections, bytes; this
 * module: rx_no_token, rx_invalid_token), one writer each, on the VMM
 * thread; read by the metrics writer. Cumulative; metrics.c emits them. */
struct mmds_metrics {
	_Atomic uint64_t rx_accepted, rx_accepted_err, rx_accepted_unusual, rx_bad_eth,
		rx_invalid_token, rx_no_token, rx_count, tx_bytes, tx_count, tx_errors,
		tx_frames, connections_created, connections_destroyed;
};
extern struct mmds_metrics mmds_metrics;
#define MMDS_COUNT_ADD(field, n) \
	atomic_fetch_add_explicit(&mmds_metrics.field, (n), memory_order_relaxed)
#define MMDS_COUNT(field) MMDS_COUNT_ADD(field, 1)

#endif
