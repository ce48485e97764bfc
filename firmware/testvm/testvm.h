/* Shared by the parts of the test guest. */
#ifndef TESTVM_H
#define TESTVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

void puts_serial(const char *s);
void put_dec(uint64_t v);
void put_hex(uint64_t v);
/* "testvm: PASS name" or "testvm: FAIL name: why" */
void result(const char *name, bool ok, const char *why);
/* Is word one of the words of the VM's command line? */
bool has_word(const char *word);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

void emulate_checks(void);
void virtio_checks(void);
void virtio_blk_bench(void);
void virtio_blk_iops(void);
void virtio_net_bench(void);
void cpuid_dump(void);

#endif
