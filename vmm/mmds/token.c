#include "token.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sipround(uint64_t v[4])
{
	v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
	v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

uint64_t token_siphash(const uint64_t key[2], const uint8_t *msg, size_t len)
{
	uint64_t v[4] = { 0x736f6d6570736575ULL ^ key[0], 0x646f72616e646f6dULL ^ key[1],
			  0x6c7967656e657261ULL ^ key[0], 0x7465646279746573ULL ^ key[1] };
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = load_le64(msg + i);
		v[3] ^= m;
		sipround(v);
		sipround(v);
		v[0] ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)msg[full + i] << (8 * i);
	v[3] ^= b;
	sipround(v);
	sipround(v);
	v[0] ^= b;
	v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		sipround(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

int token_authority_init(struct token_authority *t)
{
	uint64_t k[4];
	size_t got = 0;
	while (got < sizeof(k)) {
		ssize_t n = getrandom((uint8_t *)k + got, sizeof(k) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	memcpy(t->mask_key, k, 16);
	memcpy(t->mac_key, k + 2, 16);
	t->seq = 0;
	return 0;
}

#define TOKEN_BYTES 24 /* seq, masked expiry, MAC */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static uint64_t mask_of(const struct token_authority *t, const uint8_t seq[8])
{
	return token_siphash(t->mask_key, seq, 8);
}

void token_generate(struct token_authority *t, uint32_t ttl_s, uint64_t now_ms, char *out)
{
	uint8_t raw[TOKEN_BYTES];
	store_le64(raw, t->seq++);
	store_le64(raw + 8, (now_ms + (uint64_t)ttl_s * 1000) ^ mask_of(t, raw));
	store_le64(raw + 16, token_siphash(t->mac_key, raw, 16));
	/* 24 bytes: 32 characters, no padding. */
	size_t o = 0;
	for (size_t i = 0; i < TOKEN_BYTES; i += 3) {
		uint32_t w = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		out[o++] = b64[w >> 18];
		out[o++] = b64[(w >> 12) & 63];
		out[o++] = b64[(w >> 6) & 63];
		out[o++] = b64[w & 63];
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

bool token_valid(const struct token_authority *t, const char *text, size_t len, uint64_t now_ms)
{
	if (len != TOKEN_BYTES / 3 * 4)
		return false;
	uint8_t raw[TOKEN_BYTES];
	for (size_t i = 0, o = 0; i < len; i += 4, o += 3) {
		uint32_t w = 0;
		for (size_t j = 0; j < 4; j++) {
			int v = b64_value(text[i + j]);
			if (v < 0)
				return false;
			w = w << 6 | (uint32_t)v;
		}
		raw[o] = (uint8_t)(w >> 16);
		raw[o + 1] = (uint8_t)(w >> 8);
		raw[o + 2] = (uint8_t)w;
	}
	/* Compared without an early exit: the time taken says nothing of
	 * how much of a forged MAC was right. */
	uint64_t diff = load_le64(raw + 16) ^ token_siphash(t->mac_key, raw, 16);
	if (diff)
		return false;
	uint64_t expiry = load_le64(raw + 8) ^ mask_of(t, raw);
	return expiry > now_ms;
}
