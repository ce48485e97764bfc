/* 16550A UART (the PC's COM1 at 0x3f8, IRQ 4): enough of the chip for
 * Linux's 8250 driver, including its loopback probe. Output goes to a host
 * fd; input arrives from the VMM thread through serial_input(). */
#ifndef EMBER_SERIAL_H
#define EMBER_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../io/ratelimit.h"

struct vm;

#define SERIAL_RX_CAP 1024

struct serial {
	pthread_mutex_t lock;
	int out_fd;     /* where the guest's output goes; -1 discards it */
	struct ratelimiter out_rl; /* optional limit on output bytes */
	int irq_fd;     /* irqfd for IRQ 4 */
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t thr_empty_pending; /* THRE interrupt not yet acknowledged */
	uint8_t rx[SERIAL_RX_CAP];
	unsigned rx_head, rx_count;
	/* counters, for metrics */
	uint64_t tx_bytes, rx_bytes, rx_dropped, tx_errors, tx_dropped;
};

/* Register COM1 on vm's port bus. Output beyond the optional rate
 * limit (bytes) is dropped and counted. Returns 0 or -errno. */
int serial_init(struct serial *s, struct vm *vm, int out_fd, const struct token_bucket_config *limit);
void serial_destroy(struct serial *s);

/* Bytes typed for the guest. Bytes beyond the receive buffer are dropped
 * and counted. Safe from any thread. */
void serial_input(struct serial *s, const uint8_t *buf, size_t len);

/* Snapshots: registers and unread input. restore validates and returns
 * 0 or -EINVAL (after sr_fail). */
struct snap_writer;
struct snap_reader;
void serial_save(struct serial *s, struct snap_writer *w);
int serial_restore(struct serial *s, struct snap_reader *r);

/* The register interface (bus_access_fn); exposed for unit tests. */
void serial_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
