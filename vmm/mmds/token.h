/* MMDS V2 session tokens (internal to vmm/mmds/).
 *
 * A token is self-contained, so any number of them can be handed out
 * without state: base64 of a sequence number, the expiry (monotonic ms)
 * masked with a keyed hash of that number, and a keyed MAC (SipHash-2-4)
 * over both. The keys are random per process: tokens never outlive it,
 * so a restored snapshot refuses the tokens of the VM it was taken from,
 * as Firecracker's do. */
#ifndef EMBER_MMDS_TOKEN_H
#define EMBER_MMDS_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_TEXT_MAX 70 /* longer strings are refused before decoding */

struct token_authority {
	uint64_t mask_key[2], mac_key[2];
	uint64_t seq;
};

/* Fresh random keys. Returns 0 or -errno (getrandom). */
int token_authority_init(struct token_authority *t);

/* Write a NUL-terminated token valid until now_ms + ttl_s * 1000 into
 * out (at least TOKEN_TEXT_MAX + 1 bytes). The caller checks ttl_s. */
void token_generate(struct token_authority *t, uint32_t ttl_s, uint64_t now_ms, char *out);

/* The token text[0..len) was made by t and has not expired at now_ms. */
bool token_valid(const struct token_authority *t, const char *text, size_t len, uint64_t now_ms);

/* SipHash-2-4 of msg[0..len) under key (exposed for its test vectors). */
uint64_t token_siphash(const uint64_t key[2], const uint8_t *msg, size_t len);

#endif
