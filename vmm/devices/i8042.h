/* The PC keyboard controller, reduced to what a VMM needs: the guest's
 * reset request (command 0xfe, how Linux reboots with reboot=k), the
 * command byte, self-tests, and injecting Ctrl-Alt-Del as scancodes. */
#ifndef EMBER_I8042_H
#define EMBER_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

#define I8042_BUF_CAP 16

struct i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	int irq_fd;          /* IRQ 1 */
	uint8_t cmd_byte;
	uint8_t pending_cmd; /* command awaiting its data byte on port 0x60 */
	uint8_t buf[I8042_BUF_CAP];
	unsigned buf_head, buf_count;
	uint64_t resets;
};

/* Register ports 0x60 and 0x64. Returns 0 or -errno. */
int i8042_init(struct i8042 *k, struct vm *vm);
void i8042_destroy(struct i8042 *k);

/* Queue the scancodes of Ctrl-Alt-Del and interrupt the guest. Returns
 * -ENOSPC if the guest has not drained earlier keys. */
int i8042_send_ctrl_alt_del(struct i8042 *k);

struct snap_writer;
struct snap_reader;
void i8042_save(struct i8042 *k, struct snap_writer *w);
int i8042_restore(struct i8042 *k, struct snap_reader *r);

void i8042_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
