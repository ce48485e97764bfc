/* --seccomp-filter: the file Firecracker's seccompiler-bin writes, so the
 * filters an orchestrator compiled for Firecracker serve ember unchanged.
 *
 * The file is a map from thread category ("vmm", "api", "vcpu") to a BPF
 * program (a list of 8-byte struct sock_filter instructions), serialized
 * with the Rust crate bitcode 0.6 through serde. That encoding is
 * columnar: for a map of N entries it holds, in this order, the map's
 * length, the N key lengths and the keys' bytes, the N program lengths,
 * then every instruction of every program as one packed list of u64.
 * Lists of lengths are bytes (255 escapes to a packed u64 list of the
 * large ones); a list of bytes or integers of more than a few items starts
 * with a byte choosing its packing (bytes: 1, 2, 3, 4 or 8 to a byte;
 * integers: 1, 2, 4 or 8 bytes each, optionally plus a minimum). */
#ifndef EMBER_SECCOMP_FILE_H
#define EMBER_SECCOMP_FILE_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>

/* As Firecracker: larger files are refused before decoding, and so is a
 * program longer than the kernel takes. */
#define SECCOMP_FILE_MAX_BYTES 100000
#define SECCOMP_FILE_MAX_INSNS 4096

/* The programs of the three categories, in the order vmm, api, vcpu. An
 * empty program (len 0, insns NULL) means no filter for that thread. */
struct seccomp_file {
	struct sock_filter *insns[3];
	size_t len[3];
};

/* Decode buf (len bytes). It must hold exactly the three categories
 * (names compared case-insensitively, as Firecracker does), each program
 * at most SECCOMP_FILE_MAX_INSNS long, and nothing after the encoding.
 * Returns 0 with out filled (free it with seccomp_file_free), or -EINVAL
 * with the reason in err (Firecracker's wording where it has one). */
int seccomp_file_parse(const uint8_t *buf, size_t len, struct seccomp_file *out, char *err, size_t errlen);

/* Read and decode the file at path (a regular file, opened without
 * waiting). Returns 0 or -errno with the reason in err. */
int seccomp_file_load(const char *path, struct seccomp_file *out, char *err, size_t errlen);

void seccomp_file_free(struct seccomp_file *f);

#endif
