/* Decoding seccompiler-bin's files (see seccomp_file.h for the layout).
 * Every count is bounded before anything is allocated: at most
 * MAX_ENTRIES map entries and SECCOMP_FILE_MAX_INSNS instructions a
 * program, so a hostile file costs at most a few hundred KiB. */
#include "seccomp_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hostfile.h"

/* Firecracker takes exactly three; a few more are decoded so that the
 * error can name the unknown ones. */
#define MAX_ENTRIES 16
/* bitcode refuses a length sum this large. */
#define HUGE_LEN (0x7fffffffffffffffULL / 4096)

static const char *const categories[3] = { "vmm", "api", "vcpu" };

struct reader {
	const uint8_t *p;
	size_t n;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static bool bad(struct reader *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
	return false;
}

static bool take(struct reader *r, size_t k, const uint8_t **out)
{
	if (k > r->n)
		return bad(r, "Filter deserialization failed: the file ends early");
	*out = r->p;
	r->p += k;
	r->n -= k;
	return true;
}

static uint64_t get_le(const uint8_t *p, unsigned width)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* len bytes into out. Up to two are stored as they are; more start with a
 * packing byte: (p * 2 - offset), p choosing 256, 16, 6, 4, 3 or 2 values
 * a digit (1, 2, 3, 4, 5 or 8 digits a byte, least significant first),
 * and with offset a minimum byte added to each. */
static bool unpack_bytes(struct reader *r, size_t len, uint8_t *out)
{
	static const unsigned base[] = { 256, 16, 6, 4, 3, 2 }, digits[] = { 1, 2, 3, 4, 5, 8 };
	const uint8_t *src = NULL;
	if (len <= 2) {
		if (!take(r, len, &src))
			return false;
		memcpy(out, src, len);
		return true;
	}
	if (!take(r, 1, &src))
		return false;
	unsigned p = (src[0] + 1u) / 2;
	bool offset = src[0] & 1;
	if (p >= sizeof(base) / sizeof(base[0]))
		return bad(r, "Filter deserialization failed: invalid packing %u", src[0]);
	uint8_t min = 0;
	if (offset) {
		if (!take(r, 1, &src))
			return false;
		min = src[0];
	}
	size_t nbytes = (len + digits[p] - 1) / digits[p];
	if (!take(r, nbytes, &src))
		return false;
	for (size_t i = 0, k = 0; i < nbytes; i++) {
		unsigned b = src[i];
		for (unsigned d = 0; d < digits[p] && k < len; d++, k++) {
			out[k] = (uint8_t)(b % base[p] + min);
			b /= base[p];
		}
	}
	return true;
}

/* len u64s into out. None takes no bytes; otherwise a packing byte
 * ((w - 1) * 2 - offset, w choosing 8, 4, 2 or 1 bytes each: the 1-byte
 * case is a packed byte list), then with offset a u64 minimum added to
 * each, then the values, little-endian. */
static bool unpack_u64s(struct reader *r, size_t len, uint64_t *out)
{
	static const unsigned width[] = { 8, 4, 2, 1 };
	const uint8_t *src = NULL;
	if (len == 0)
		return true;
	if (!take(r, 1, &src))
		return false;
	unsigned p = (src[0] + 1u) / 2;
	bool offset = src[0] & 1;
	if (p >= sizeof(width) / sizeof(width[0]))
		return bad(r, "Filter deserialization failed: invalid packing %u", src[0]);
	uint64_t min = 0;
	if (offset) {
		if (!take(r, 8, &src))
			return false;
		min = get_le(src, 8);
	}
	if (width[p] == 1) {
		uint8_t *bytes = malloc(len);
		if (!bytes)
			return bad(r, "out of memory");
		bool ok = unpack_bytes(r, len, bytes);
		for (size_t i = 0; ok && i < len; i++)
			out[i] = bytes[i] + min;
		free(bytes);
		return ok;
	}
	if (len > r->n / width[p])
		return bad(r, "Filter deserialization failed: the file ends early");
	take(r, len * width[p], &src);
	for (size_t i = 0; i < len; i++)
		out[i] = get_le(src + i * width[p], width[p]) + min;
	return true;
}

/* len lengths (len <= MAX_ENTRIES) into out, and their sum: a byte each,
 * 255 meaning "the next of the large lengths", a u64 list after them. */
static bool unpack_lengths(struct reader *r, size_t len, uint64_t *out, uint64_t *sum)
{
	uint8_t small[MAX_ENTRIES];
	uint64_t large[MAX_ENTRIES];
	if (!unpack_bytes(r, len, small))
		return false;
	size_t nlarge = 0;
	for (size_t i = 0; i < len; i++)
		nlarge += small[i] == 255;
	if (!unpack_u64s(r, nlarge, large))
		return false;
	*sum = 0;
	for (size_t i = 0, k = 0; i < len; i++) {
		out[i] = small[i] < 255 ? small[i] : large[k++];
		if (out[i] >= HUGE_LEN - *sum)
			return bad(r, "Filter deserialization failed: length overflow");
		*sum += out[i];
	}
	return true;
}

void seccomp_file_free(struct seccomp_file *f)
{
	for (int i = 0; i < 3; i++) {
		free(f->insns[i]);
		f->insns[i] = NULL;
		f->len[i] = 0;
	}
}

int seccomp_file_parse(const uint8_t *buf, size_t len, struct seccomp_file *out, char *err, size_t errlen)
{
	struct reader r = { .p = buf, .n = len, .err = err, .errlen = errlen };
	uint64_t nmap, entries, klen[MAX_ENTRIES], plen[MAX_ENTRIES], nkey, ninsns;
	const uint8_t *keys = NULL;
	uint64_t *insns = NULL;
	memset(out, 0, sizeof(*out));
	if (len > SECCOMP_FILE_MAX_BYTES) {
		snprintf(err, errlen, "Filter deserialization failed: Input size %zu exceeds limit of %d bytes", len,
			 SECCOMP_FILE_MAX_BYTES);
		return -EINVAL;
	}
	if (!unpack_lengths(&r, 1, &nmap, &entries))
		return -EINVAL;
	if (entries > MAX_ENTRIES) {
		snprintf(err, errlen, "Filter deserialization failed: %llu thread categories (a filter file "
			 "has vmm, api and vcpu)", (unsigned long long)entries);
		return -EINVAL;
	}
	/* Keys are decoded at the first key and programs at the first value,
	 * so an empty map has neither. */
	if (entries && (!unpack_lengths(&r, entries, klen, &nkey) || !take(&r, nkey, &keys) ||
			!unpack_lengths(&r, entries, plen, &ninsns)))
		return -EINVAL;
	for (size_t i = 0; i < entries; i++)
		if (plen[i] > SECCOMP_FILE_MAX_INSNS) {
			snprintf(err, errlen, "Filter length exceeds the maximum size of %d instructions",
				 SECCOMP_FILE_MAX_INSNS);
			return -EINVAL;
		}
	if (entries && ninsns && (!(insns = malloc(ninsns * sizeof(*insns))) || !unpack_u64s(&r, ninsns, insns)))
		goto bad;
	if (r.n) {
		bad(&r, "Filter deserialization failed: %zu bytes after the filters", r.n);
		goto bad;
	}

	/* Which entry is which category; unknown names are listed. */
	int entry_of[3] = { -1, -1, -1 };
	char unknown[256] = "";
	const uint8_t *name = keys;
	for (size_t i = 0; i < entries; name += klen[i], i++) {
		int c;
		for (c = 0; c < 3; c++)
			if (klen[i] == strlen(categories[c]) && strncasecmp((const char *)name, categories[c], klen[i]) == 0)
				break;
		if (c < 3) {
			entry_of[c] = (int)i; /* a name given twice: the last counts, as in Firecracker */
			continue;
		}
		size_t u = strlen(unknown);
		snprintf(unknown + u, sizeof(unknown) - u, "%s%.*s", u ? "," : "", (int)(klen[i] > 32 ? 32 : klen[i]),
			 (const char *)name);
	}
	if (unknown[0]) {
		bad(&r, "Invalid thread categories: %s", unknown);
		goto bad;
	}
	for (int c = 0; c < 3; c++)
		if (entry_of[c] < 0) {
			bad(&r, "Missing thread category: %s", categories[c]);
			goto bad;
		}

	/* Each program is its instructions' memory image (struct sock_filter),
	 * as libseccomp exported them, little-endian. */
	uint64_t start[MAX_ENTRIES];
	for (size_t i = 0, at = 0; i < entries; at += plen[i], i++)
		start[i] = at;
	for (int c = 0; c < 3; c++) {
		int e = entry_of[c];
		if (!plen[e])
			continue;
		struct sock_filter *f = calloc(plen[e], sizeof(*f));
		if (!f) {
			bad(&r, "out of memory");
			goto bad;
		}
		for (size_t k = 0; k < plen[e]; k++) {
			uint64_t v = insns[start[e] + k];
			f[k] = (struct sock_filter){ .code = (uint16_t)v, .jt = (uint8_t)(v >> 16),
						     .jf = (uint8_t)(v >> 24), .k = (uint32_t)(v >> 32) };
		}
		out->insns[c] = f;
		out->len[c] = plen[e];
	}
	free(insns);
	return 0;
bad:
	free(insns);
	seccomp_file_free(out);
	return -EINVAL;
}

int seccomp_file_load(const char *path, struct seccomp_file *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	int fd = hostfile_open("--seccomp-filter", path, O_RDONLY, 0, HOSTFILE_REG, err, errlen);
	if (fd < 0)
		return fd;
	/* One byte more than the limit tells a file over it. */
	uint8_t *buf = malloc(SECCOMP_FILE_MAX_BYTES + 1);
	size_t got = 0;
	int ret = 0;
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
	}
	while (!ret && got < SECCOMP_FILE_MAX_BYTES + 1) {
		ssize_t n = read(fd, buf + got, SECCOMP_FILE_MAX_BYTES + 1 - got);
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "--seccomp-filter %s: %s", path, strerror(errno));
		} else if (n == 0) {
			break;
		}
		got += n > 0 ? (size_t)n : 0;
	}
	close(fd);
	if (!ret)
		ret = seccomp_file_parse(buf, got, out, err, errlen);
	free(buf);
	return ret;
}
