#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "../../vmm/devices/serial.h"

/* A serial port not attached to a VM: output to a pipe, no interrupts. */
static struct serial s;
static int out[2];

static void setup(void)
{
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.lock, NULL);
	cr_assert_eq(pipe(out), 0);
	s.out_fd = out[1];
	s.irq_fd = -1;
}

static void teardown(void)
{
	close(out[0]);
	close(out[1]);
}

static uint8_t rd(unsigned reg)
{
	uint8_t v = 0;
	serial_access(&s, reg, &v, 1, false);
	return v;
}

static void wr(unsigned reg, uint8_t v)
{
	serial_access(&s, reg, &v, 1, true);
}

TestSuite(serial, .init = setup, .fini = teardown);

Test(serial, transmit_goes_to_the_output_fd)
{
	wr(0, 'h');
	wr(0, 'i');
	char buf[4] = { 0 };
	cr_assert_eq(read(out[0], buf, sizeof(buf)), 2);
	cr_assert_str_eq(buf, "hi");
	cr_assert_eq(s.tx_bytes, 2);
	cr_assert(rd(5) & 0x20, "THR must always read empty");
}

Test(serial, loopback_probe_as_linux_does_it)
{
	/* Linux's autoconfig: MCR = LOOP|RTS|OUT2 must read back CTS|DCD. */
	wr(4, 0x10 | 0x0a);
	cr_assert_eq(rd(6) & 0xf0, 0x90);
	/* In loopback a transmitted byte is received, not sent out. */
	wr(0, 'x');
	cr_assert(rd(5) & 0x01);
	cr_assert_eq(rd(0), 'x');
	cr_assert_eq(s.tx_bytes, 0);
}

Test(serial, divisor_latch_and_scratch)
{
	wr(3, 0x80);
	wr(0, 0x0c);
	wr(1, 0x00);
	cr_assert_eq(rd(0), 0x0c);
	wr(3, 0x03);
	wr(7, 0x5a);
	cr_assert_eq(rd(7), 0x5a);
	cr_assert_eq(rd(3), 0x03);
}

Test(serial, input_and_interrupt_identification)
{
	cr_assert_eq(rd(2) & 0x0f, 0x01, "no interrupt pending at reset");
	wr(1, 0x01); /* receive interrupts */
	serial_input(&s, (const uint8_t *)"ab", 2);
	cr_assert_eq(rd(2) & 0x0f, 0x04);
	cr_assert_eq(rd(0), 'a');
	cr_assert_eq(rd(0), 'b');
	cr_assert_eq(rd(2) & 0x0f, 0x01);
	/* THRE interrupt: pending after enabling, cleared by reading IIR. */
	wr(1, 0x02);
	cr_assert_eq(rd(2) & 0x0f, 0x02);
	cr_assert_eq(rd(2) & 0x0f, 0x01);
}

Test(serial, input_beyond_the_buffer_is_dropped_and_counted)
{
	uint8_t big[SERIAL_RX_CAP + 10];
	memset(big, 'z', sizeof(big));
	serial_input(&s, big, sizeof(big));
	cr_assert_eq(s.rx_count, SERIAL_RX_CAP);
	cr_assert_eq(s.rx_dropped, 10);
}

Test(serial, odd_sizes_and_offsets_are_ignored)
{
	uint8_t v[4] = { 1, 2, 3, 4 };
	serial_access(&s, 0, v, 4, true);
	cr_assert_eq(s.tx_bytes, 0);
	serial_access(&s, 9, v, 1, false);
	cr_assert_eq(v[0], 0xff);
}
