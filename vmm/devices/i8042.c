#include "i8042.h"

#include "../snapshot/snapfile.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../layout.h"
#include "../vm.h"

#define STATUS_OBF 0x01   /* output buffer full: data waits at port 0x60 */
#define STATUS_SYS 0x04   /* self-test passed */
#define STATUS_CMD 0x08   /* last write was to the command port */
#define CMD_READ_CTR 0x20
#define CMD_WRITE_CTR 0x60
#define CMD_AUX_DISABLE 0xa7
#define CMD_AUX_ENABLE 0xa8
#define CMD_AUX_TEST 0xa9
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST 0xab
#define CMD_KBD_DISABLE 0xad
#define CMD_KBD_ENABLE 0xae
#define CMD_READ_INPUT 0xc0
#define CMD_READ_OUTPUT 0xd0
#define CMD_WRITE_OUTPUT 0xd1
#define CMD_WRITE_KBD_OUT 0xd2
#define CMD_WRITE_AUX_OUT 0xd3
#define CMD_WRITE_AUX 0xd4
#define CMD_RESET 0xfe
#define CTR_KBD_INT 0x01
#define CTR_KBD_DISABLE 0x10
#define CTR_AUX_DISABLE 0x20
#define KBD_ACK 0xfa
#define KBD_RESET 0xff
#define KBD_GET_ID 0xf2
#define KBD_ECHO 0xee

static void push(struct i8042 *k, uint8_t v)
{
	if (k->buf_count < I8042_BUF_CAP) {
		k->buf[(k->buf_head + k->buf_count) % I8042_BUF_CAP] = v;
		k->buf_count++;
	}
}

static void raise_kbd_irq(struct i8042 *k)
{
	uint64_t one = 1;
	if (k->irq_fd >= 0 && (k->cmd_byte & CTR_KBD_INT)) {
		ssize_t r = write(k->irq_fd, &one, sizeof(one));
		(void)r;
	}
}

/* A command byte written to port 0x64. */
static void command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR: push(k, k->cmd_byte); break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTPUT:
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT:
	case CMD_WRITE_AUX:
		k->pending_cmd = cmd; /* its data byte follows on port 0x60 */
		break;
	case CMD_AUX_DISABLE: k->cmd_byte |= CTR_AUX_DISABLE; break;
	case CMD_AUX_ENABLE: k->cmd_byte &= (uint8_t)~CTR_AUX_DISABLE; break;
	case CMD_AUX_TEST: push(k, 0xff); break; /* no auxiliary (mouse) port */
	case CMD_SELF_TEST: push(k, 0x55); break;
	case CMD_KBD_TEST: push(k, 0x00); break;
	case CMD_KBD_DISABLE: k->cmd_byte |= CTR_KBD_DISABLE; break;
	case CMD_KBD_ENABLE: k->cmd_byte &= (uint8_t)~CTR_KBD_DISABLE; break;
	case CMD_READ_INPUT: push(k, 0x00); break;
	case CMD_READ_OUTPUT: push(k, 0x01); break; /* system reset line inactive */
	case CMD_RESET:
		k->resets++;
		vm_request_stop(k->vm, 0, "guest reset (i8042)");
		break;
	default:
		break;
	}
}

/* A data byte written to port 0x60: a command's argument, or a command
 * for the keyboard itself. */
static void data_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;
	k->pending_cmd = 0;
	switch (cmd) {
	case CMD_WRITE_CTR: k->cmd_byte = v; return;
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT: push(k, v); return;
	case CMD_WRITE_OUTPUT:
	case CMD_WRITE_AUX: return;
	default: break;
	}
	switch (v) {
	case KBD_RESET: push(k, KBD_ACK); push(k, 0xaa); break; /* ACK, self-test passed */
	case KBD_GET_ID: push(k, KBD_ACK); push(k, 0xab); push(k, 0x83); break;
	case KBD_ECHO: push(k, KBD_ECHO); break;
	default: push(k, KBD_ACK); break;
	}
}

void i8042_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = opaque;
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	uint16_t port = (uint16_t)(offset + PORT_I8042_DATA);
	pthread_mutex_lock(&k->lock);
	if (port == PORT_I8042_CMD) {
		if (is_write)
			command(k, data[0]);
		else
			data[0] = STATUS_SYS | (k->buf_count ? STATUS_OBF : 0) |
				  (k->pending_cmd ? STATUS_CMD : 0);
	} else if (port == PORT_I8042_DATA) {
		if (is_write) {
			data_write(k, data[0]);
			if (k->buf_count)
				raise_kbd_irq(k);
		} else if (k->buf_count) {
			data[0] = k->buf[k->buf_head];
			k->buf_head = (k->buf_head + 1) % I8042_BUF_CAP;
			k->buf_count--;
			if (k->buf_count)
				raise_kbd_irq(k);
		} else {
			data[0] = 0;
		}
	} else if (!is_write) {
		data[0] = 0xff;
	}
	pthread_mutex_unlock(&k->lock);
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
	/* Scancode set 2 (the controller does not translate: CTR bit 6 is
	 * clear): Ctrl, Alt, Del pressed, then released in reverse order. */
	static const uint8_t seq[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };
	pthread_mutex_lock(&k->lock);
	int err = 0;
	if (k->buf_count + sizeof(seq) > I8042_BUF_CAP) {
		err = -ENOSPC;
	} else {
		for (size_t i = 0; i < sizeof(seq); i++)
			push(k, seq[i]);
		raise_kbd_irq(k);
	}
	pthread_mutex_unlock(&k->lock);
	return err;
}

int i8042_init(struct i8042 *k, struct vm *vm)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->vm = vm;
	k->cmd_byte = CTR_KBD_INT;
	k->irq_fd = vm_irqfd(vm, 1);
	if (k->irq_fd < 0)
		return k->irq_fd;
	/* 0x60..0x64 as one range; 0x61 (the PC speaker/NMI status port)
	 * and 0x62/0x63 read as 0xff through the dispatcher above. */
	return bus_register(&vm->pio, PORT_I8042_DATA, 5, i8042_access, k, "i8042");
}

void i8042_destroy(struct i8042 *k)
{
	if (k->irq_fd >= 0)
		close(k->irq_fd);
	k->irq_fd = -1;
}

void i8042_save(struct i8042 *k, struct snap_writer *w)
{
	pthread_mutex_lock(&k->lock);
	sw_u8(w, k->cmd_byte);
	sw_u8(w, k->pending_cmd);
	sw_u32(w, k->buf_count);
	for (unsigned i = 0; i < k->buf_count; i++)
		sw_u8(w, k->buf[(k->buf_head + i) % I8042_BUF_CAP]);
	pthread_mutex_unlock(&k->lock);
}

int i8042_restore(struct i8042 *k, struct snap_reader *r)
{
	uint8_t cmd = sr_u8(r), pending = sr_u8(r);
	uint32_t n = sr_u32(r);
	if (!r->bad && n > I8042_BUF_CAP)
		return sr_fail(r, "i8042: %u buffered bytes, at most %d", n, I8042_BUF_CAP), -EINVAL;
	if (r->bad)
		return -EINVAL;
	pthread_mutex_lock(&k->lock);
	k->cmd_byte = cmd;
	k->pending_cmd = pending;
	k->buf_head = 0;
	k->buf_count = n;
	sr_bytes(r, k->buf, n);
	pthread_mutex_unlock(&k->lock);
	return r->bad ? -EINVAL : 0;
}
