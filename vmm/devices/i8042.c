#include "i8042.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../layout.h"
#include "../vm.h"

#define STATUS_OBF 0x01   /* output buffer full: data waits at port 0x60 */
#define STATUS_SYS 0x04   /* self-test passed */
#define STATUS_CMD 0x08   /* last write was to the command port */
#define CMD_READ_CB 0x20
#define CMD_WRITE_CB 0x60
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST 0xab
#define CMD_WRITE_OUTPUT 0xd1
#define CMD_RESET 0xfe
#define CB_KBD_INT 0x01

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
	if (k->irq_fd >= 0 && (k->cmd_byte & CB_KBD_INT)) {
		ssize_t r = write(k->irq_fd, &one, sizeof(one));
		(void)r;
	}
}

static void command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CB:
		push(k, k->cmd_byte);
		break;
	case CMD_WRITE_CB:
	case CMD_WRITE_OUTPUT:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		push(k, 0x55);
		break;
	case CMD_KBD_TEST:
		push(k, 0x00);
		break;
	case CMD_RESET:
		k->resets++;
		vm_request_stop(k->vm, 0, "guest reset (i8042)");
		break;
	default:
		break;
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
			if (k->pending_cmd == CMD_WRITE_CB)
				k->cmd_byte = data[0];
			/* Output-port writes and keyboard commands are ignored,
			 * except that a keyboard command gets its ACK. */
			else if (!k->pending_cmd)
				push(k, 0xfa);
			k->pending_cmd = 0;
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
	/* Set-2 scancodes as the controller translates them for the guest:
	 * Ctrl, Alt, Del pressed, then released in reverse order. */
	static const uint8_t seq[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
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
	k->cmd_byte = CB_KBD_INT;
	k->irq_fd = vm_irqfd(vm, 1);
	if (k->irq_fd < 0)
		return k->irq_fd;
	/* 0x60..0x64 as one range; 0x61 (the PC speaker/NMI status port)
	 * and 0x62/0x63 read as 0xff through the dispatcher above. */
	return bus_register(&vm->pio, PORT_I8042_DATA, 5, i8042_access, k, "i8042");
}
