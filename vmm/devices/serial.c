#include "serial.h"

#include "../snapshot/snapfile.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../layout.h"
#include "../vm.h"

/* Register offsets and bits (see the 16550 data sheet). */
enum { UART_RBR_THR = 0, UART_IER = 1, UART_IIR_FCR = 2, UART_LCR = 3,
       UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7 };
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ON 0xc0
#define FCR_FIFO_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

static void raise_irq(struct serial *s)
{
	uint64_t one = 1;
	if (s->irq_fd >= 0 && write(s->irq_fd, &one, sizeof(one)) < 0)
		s->tx_errors++;
}

static uint8_t iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_FIFO_ENABLE) ? IIR_FIFO_ON : 0;
	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_empty_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

static void rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count == SERIAL_RX_CAP) {
		s->rx_dropped++;
		return;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_CAP] = c;
	s->rx_count++;
	s->rx_bytes++;
}

static uint8_t rx_pop(struct serial *s)
{
	if (!s->rx_count)
		return 0;
	uint8_t c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_CAP;
	s->rx_count--;
	return c;
}

static void transmit(struct serial *s, uint8_t c)
{
	if (s->mcr & MCR_LOOP) {
		rx_push(s, c);
	} else if (!rl_consume(&s->out_rl, 1, rl_now_ns())) {
		s->tx_dropped++;
	} else if (s->out_fd >= 0) {
		if (write(s->out_fd, &c, 1) == 1)
			s->tx_bytes++;
		else
			s->tx_errors++;
	}
	/* Sent instantly: the holding register is empty again. */
	s->thr_empty_pending = 1;
}

static uint8_t reg_read(struct serial *s, unsigned reg)
{
	switch (reg) {
	case UART_RBR_THR:
		return (s->lcr & LCR_DLAB) ? s->dll : rx_pop(s);
	case UART_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR_FCR: {
		uint8_t v = iir(s);
		if ((v & 0x0f) == IIR_THRI)
			s->thr_empty_pending = 0; /* reading IIR acknowledges THRE */
		return v;
	}
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case UART_MSR:
		if (s->mcr & MCR_LOOP) {
			/* Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
			return (uint8_t)(((s->mcr & 0x1) << 5) | ((s->mcr & 0x2) << 3) |
					 ((s->mcr & 0x4) << 4) | ((s->mcr & 0x8) << 4));
		}
		return MSR_DCD | MSR_DSR | MSR_CTS;
	default:
		return s->scr;
	}
}

static void reg_write(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			transmit(s, v);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRE with the holder empty interrupts at once. */
			if ((v & IER_THRI) && !(s->ier & IER_THRI))
				s->thr_empty_pending = 1;
			s->ier = v & 0x0f;
		}
		break;
	case UART_IIR_FCR:
		s->fcr = v & (FCR_FIFO_ENABLE | 0xc0);
		if (v & FCR_CLEAR_RX)
			s->rx_head = s->rx_count = 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_LSR:
	case UART_MSR:
		break; /* read-only */
	default:
		s->scr = v;
		break;
	}
}

void serial_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	if (len != 1 || offset > 7) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&s->lock);
	uint8_t before = iir(s);
	if (is_write)
		reg_write(s, (unsigned)offset, data[0]);
	else
		data[0] = reg_read(s, (unsigned)offset);
	uint8_t after = iir(s);
	/* Edge-triggered: interrupt when a condition newly becomes pending,
	 * or when a THRE was re-armed by a transmit. */
	if ((after & 0x0f) != IIR_NONE &&
	    ((before & 0x0f) == IIR_NONE || (is_write && offset == UART_RBR_THR)))
		raise_irq(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	bool was_empty = s->rx_count == 0;
	for (size_t i = 0; i < len; i++)
		rx_push(s, buf[i]);
	if (was_empty && s->rx_count && (s->ier & IER_RDI))
		raise_irq(s);
	pthread_mutex_unlock(&s->lock);
}

int serial_init(struct serial *s, struct vm *vm, int out_fd, const struct token_bucket_config *limit)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	struct ratelimiter_config rl = { 0 };
	if (limit)
		rl.bandwidth = *limit;
	rl_init(&s->out_rl, &rl, rl_now_ns());
	s->irq_fd = -1;
	s->mcr = 0x08; /* OUT2: the PC routes the UART's interrupt through it */
	int fd = vm_irqfd(vm, IRQ_COM1);
	if (fd < 0)
		return fd;
	s->irq_fd = fd;
	return bus_register(&vm->pio, PORT_COM1, 8, serial_access, s, "serial");
}

void serial_destroy(struct serial *s)
{
	if (s->irq_fd >= 0)
		close(s->irq_fd);
	s->irq_fd = -1;
}

void serial_save(struct serial *s, struct snap_writer *w)
{
	pthread_mutex_lock(&s->lock);
	uint8_t regs[] = { s->ier, s->lcr, s->mcr, s->scr, s->dll, s->dlm, s->fcr, s->thr_empty_pending };
	sw_bytes(w, regs, sizeof(regs));
	sw_u32(w, s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		sw_u8(w, s->rx[(s->rx_head + i) % SERIAL_RX_CAP]);
	pthread_mutex_unlock(&s->lock);
}

int serial_restore(struct serial *s, struct snap_reader *r)
{
	uint8_t regs[8];
	sr_bytes(r, regs, sizeof(regs));
	uint32_t n = sr_u32(r);
	if (!r->bad && n > SERIAL_RX_CAP)
		return sr_fail(r, "serial: %u buffered input bytes, at most %d", n, SERIAL_RX_CAP), -EINVAL;
	if (r->bad)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->ier = regs[0], s->lcr = regs[1], s->mcr = regs[2], s->scr = regs[3];
	s->dll = regs[4], s->dlm = regs[5], s->fcr = regs[6], s->thr_empty_pending = regs[7];
	s->rx_head = 0;
	s->rx_count = n;
	sr_bytes(r, s->rx, n);
	pthread_mutex_unlock(&s->lock);
	return r->bad ? -EINVAL : 0;
}
