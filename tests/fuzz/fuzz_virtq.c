/* libFuzzer target: the split virtqueue on guest-written rings and
 * descriptor tables. The input becomes the first 64 KiB of a 256 KiB
 * guest: descriptors at 0x0, avail ring at 0x1000, used ring at 0x2000,
 * the rest buffers (descriptors may point anywhere, in RAM or not). The
 * device side pops, reads, writes and pushes until the queue is empty or
 * declared broken; nothing may touch memory outside the guest's. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../vmm/memory.h"
#include "../../vmm/virtio/virtq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUEST_MEM (256u << 10)
#define WINDOW (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static struct virtq_chain c;
	if (!mem.host && mem_init(&mem, GUEST_MEM))
		return 0;
	if (size < 2)
		return 0;
	memset(mem.host, 0, WINDOW);
	memcpy(mem.host, data + 2, size - 2 < WINDOW ? size - 2 : WINDOW);

	struct virtq q;
	memset(&q, 0, sizeof(q));
	q.max_size = VIRTQ_MAX_SIZE;
	q.size = (uint16_t)(1u << (data[0] % 7)); /* 1..64 */
	q.avail_gpa = 0x0;
	q.desc_gpa = 0x100;
	q.used_gpa = 0x800;
	q.event_idx = data[1] & 1;
	if (virtq_activate(&q, &mem))
		return 0;
	uint8_t scratch[512];
	struct iovec iov[VIRTQ_MAX_SIZE];
	for (int i = 0; i < 512; i++) {
		int r = virtq_pop(&q, &mem, &c);
		if (r <= 0)
			break;
		virtq_chain_read(&c, data[1], scratch, sizeof(scratch));
		virtq_chain_write(&c, data[1] >> 1, scratch, sizeof(scratch));
		virtq_chain_iov(&c, data[1] & 2, 3, 1u << 20, iov, VIRTQ_MAX_SIZE);
		if (data[1] & 4)
			virtq_undo_pop(&q), virtq_pop(&q, &mem, &c);
		virtq_push(&q, c.head, c.write_len);
		virtq_should_signal(&q);
	}
	virtq_arm_notify(&q);
	return 0;
}
