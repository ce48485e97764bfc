/* virtio-mem: the configuration's checks (Firecracker's rules and
 * messages), the hotplug region's place in guest memory, and the driver's
 * requests checked against the region, the usable part, the requested
 * size and the blocks' state, with unplugged blocks given back. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <linux/virtio_mem.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/config_json.h"
#include "../../vmm/layout.h"
#include "../../vmm/virtio/mem.h"
#include "../../vmm/vm.h"

#define MIB (1ULL << 20)

static struct vmm_config cfg;
static char err[512];

static int parse(const char *text)
{
	config_defaults(&cfg);
	err[0] = 0;
	return config_json_file(text, strlen(text), &cfg, err, sizeof(err));
}

#define BOOT "\"boot-source\": {\"kernel_image_path\": \"/k\"}"

Test(virtio_mem, config_defaults_and_vm_config)
{
	cr_assert_eq(parse("{" BOOT ", \"memory-hotplug\": {\"total_size_mib\": 1024}}"), 0, "%s", err);
	cr_assert(cfg.memory_hotplug.set);
	cr_assert_eq(cfg.memory_hotplug.total_size_mib, 1024);
	cr_assert_eq(cfg.memory_hotplug.block_size_mib, 2);
	cr_assert_eq(cfg.memory_hotplug.slot_size_mib, 128);
	cJSON *o = config_json_vm_obj(&cfg);
	char *text = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "memory-hotplug"));
	cr_assert_str_eq(text, "{\"total_size_mib\":1024,\"block_size_mib\":2,\"slot_size_mib\":128}");
	free(text);
	cJSON_Delete(o);
	/* Absent: null, as Firecracker. */
	cr_assert_eq(parse("{" BOOT "}"), 0, "%s", err);
	o = config_json_vm_obj(&cfg);
	cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "memory-hotplug")));
	cJSON_Delete(o);
}

Test(virtio_mem, config_rules_in_firecrackers_words)
{
	static const struct {
		uint32_t total, block, slot;
		const char *why; /* NULL: accepted */
	} cases[] = {
		{ 1024, 2, 128, NULL },
		{ 1024, 128, 128, NULL },
		{ 256, 4, 256, NULL },
		{ 1024, 1, 128, "Block size must not be lower than 2 MiB" },
		{ 1024, 0, 128, "Block size must not be lower than 2 MiB" },
		{ 1024, 6, 128, "Block size must be a power of 2" },
		{ 1024, 2, 127, "Slot size must not be lower than 128 MiB" },
		{ 1024, 256, 384, "Slot size must be a multiple of block size (256 MiB)" },
		{ 64, 2, 128, "Total size must not be lower than slot size (128 MiB)" },
		{ 0, 2, 128, "Total size must not be lower than slot size (128 MiB)" },
		{ 1000, 2, 128, "Total size must be a multiple of slot size (128 MiB)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct memory_hotplug_config h = { true, cases[i].total, cases[i].block, cases[i].slot };
		err[0] = 0;
		int r = config_memory_hotplug_check(&h, err, sizeof(err));
		if (!cases[i].why)
			cr_assert_eq(r, 0, "case %zu: %s", i, err);
		else
			cr_assert(r != 0 && strcmp(err, cases[i].why) == 0, "case %zu: %s", i, err);
	}
	/* Through the JSON, with the prefix. */
	cr_assert_neq(parse("{" BOOT ", \"memory-hotplug\": {\"total_size_mib\": 1024, \"block_size_mib\": 3}}"), 0);
	cr_assert_str_eq(err, "Memory hotplug config error: Block size must be a power of 2");
	cr_assert_neq(parse("{" BOOT ", \"memory-hotplug\": {\"block_size_mib\": 2}}"), 0);
	cr_assert(strstr(err, "missing field `total_size_mib`"), "%s", err);
	cr_assert_neq(parse("{" BOOT ", \"memory-hotplug\": {\"total_size_mib\": 4294967296}}"), 0);
	cr_assert(strstr(err, "expected u32"), "%s", err);
}

Test(virtio_mem, region_lies_above_ram_and_the_gap)
{
	struct guest_mem mem;
	/* 128 MiB of RAM and 256 to hotplug: the region at 4 GiB. */
	cr_assert_eq(mem_init(&mem, 384 * MIB), 0);
	cr_assert_eq(mem_set_hotplug(&mem, 256 * MIB, LAYOUT_HOTPLUG_ALIGN), LAYOUT_MMIO_GAP_END);
	cr_assert_eq(mem.nregions, 2);
	cr_assert_eq(mem.regions[0].size, 128 * MIB);
	cr_assert(mem.regions[1].hotplug);
	cr_assert_eq(mem_ram_size(&mem), 128 * MIB);
	cr_assert_eq(mem_ptr(&mem, LAYOUT_MMIO_GAP_END, 4096), mem.host + 128 * MIB);
	cr_assert_null(mem_ptr(&mem, LAYOUT_MMIO_GAP_END + 256 * MIB - 4096, 8192));
	cr_assert_eq(mem_set_hotplug(&mem, 128 * MIB, LAYOUT_HOTPLUG_ALIGN), 0, "a second region");
	mem_destroy(&mem);
	/* 3.5 GiB of RAM goes around the gap; the region after it, on 1 GiB. */
	cr_assert_eq(mem_init(&mem, 3584 * MIB + 1024 * MIB), 0);
	uint64_t gpa = mem_set_hotplug(&mem, 1024 * MIB, LAYOUT_HOTPLUG_ALIGN);
	cr_assert_eq(mem.nregions, 3);
	cr_assert_eq(mem.regions[1].gpa + mem.regions[1].size, LAYOUT_MMIO_GAP_END + 512 * MIB);
	cr_assert_eq(gpa, LAYOUT_MMIO_GAP_END + 1024 * MIB);
	mem_destroy(&mem);
	cr_assert_eq(mem_init(&mem, 64 * MIB), 0);
	cr_assert_eq(mem_set_hotplug(&mem, 64 * MIB, LAYOUT_HOTPLUG_ALIGN), 0, "no RAM left");
	mem_destroy(&mem);
}

/* A device on 64 MiB of RAM with a 256 MiB region of 2 MiB blocks, the
 * usable part as PATCH sets it, without the transport. */
static struct vm vm;
static struct virtio_mem dev;
static uint64_t base;

static void setup(uint32_t block_mib)
{
	memset(&vm, 0, sizeof(vm));
	cr_assert_eq(mem_init(&vm.mem, 320 * MIB), 0);
	base = mem_set_hotplug(&vm.mem, 256 * MIB, LAYOUT_HOTPLUG_ALIGN);
	struct memory_hotplug_config h = { true, 256, block_mib, 128 };
	cr_assert_eq(virtio_mem_setup(&dev, &vm, base, &h), 0);
}

static void teardown(void)
{
	free(dev.plugged);
	mem_destroy(&vm.mem);
}

static uint16_t req(uint16_t type, uint64_t addr, uint16_t nb, uint16_t *state)
{
	uint16_t t, s;
	virtio_mem_request(&dev, type, addr, nb, &t, &s);
	if (state)
		*state = s;
	return t;
}

static void request_size(uint64_t mib)
{
	dev.requested_size = mib * MIB;
	dev.usable_region_size = (mib * MIB + 128 * MIB - 1) / (128 * MIB) * (128 * MIB);
}

Test(virtio_mem, plug_checks_range_alignment_and_requested_size)
{
	setup(2);
	enum { ACK = VIRTIO_MEM_RESP_ACK, ERR = VIRTIO_MEM_RESP_ERROR };
	/* Nothing requested: nothing usable. */
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base, 1, NULL), ERR);
	request_size(6);
	cr_assert_eq(dev.usable_region_size, 128 * MIB);
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base, 2, NULL), ACK);
	cr_assert_eq(dev.plugged_size, 4 * MIB);
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base, 1, NULL), ERR, "already plugged");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 4 * MIB, 2, NULL), ERR, "beyond the requested size");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 4 * MIB, 1, NULL), ACK);
	cr_assert_eq(dev.plugged_size, 6 * MIB);
	request_size(256);
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 4096, 1, NULL), ERR, "not block-aligned");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 8 * MIB, 0, NULL), ERR, "no blocks");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base - 2 * MIB, 1, NULL), ERR, "below the region");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 256 * MIB, 1, NULL), ERR, "past its end");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 254 * MIB, 2, NULL), ERR, "running past its end");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, UINT64_MAX - MIB + 1, 65535, NULL), ERR, "wrapping");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, 0, 1, NULL), ERR, "RAM");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 254 * MIB, 1, NULL), ACK, "the last block");
	cr_assert_eq(req(7, base, 1, NULL), ERR, "unknown type");
	cr_assert_eq(dev.counters.plug_fails, 10);
	/* A usable region smaller than the region bounds plugging. */
	request_size(100);
	dev.usable_region_size = 128 * MIB;
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 128 * MIB, 1, NULL), ERR, "outside the usable part");
	teardown();
}

Test(virtio_mem, unplug_gives_memory_back_and_state_reports)
{
	setup(2);
	enum { ACK = VIRTIO_MEM_RESP_ACK, ERR = VIRTIO_MEM_RESP_ERROR };
	request_size(8);
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base, 4, NULL), ACK);
	uint8_t *p = mem_ptr(&vm.mem, base, 8 * MIB);
	memset(p, 0xab, 8 * MIB);
	uint16_t st;
	cr_assert_eq(req(VIRTIO_MEM_REQ_STATE, base, 4, &st), ACK);
	cr_assert_eq(st, VIRTIO_MEM_STATE_PLUGGED);
	cr_assert_eq(req(VIRTIO_MEM_REQ_STATE, base, 8, &st), ACK);
	cr_assert_eq(st, VIRTIO_MEM_STATE_MIXED);
	cr_assert_eq(req(VIRTIO_MEM_REQ_STATE, base + 8 * MIB, 8, &st), ACK);
	cr_assert_eq(st, VIRTIO_MEM_STATE_UNPLUGGED);
	cr_assert_eq(req(VIRTIO_MEM_REQ_STATE, base + 127 * MIB, 1, &st), ERR, "unaligned");
	cr_assert_eq(req(VIRTIO_MEM_REQ_UNPLUG, base, 8, NULL), ERR, "partly unplugged");
	cr_assert_eq(req(VIRTIO_MEM_REQ_UNPLUG, base + 2 * MIB, 2, NULL), ACK);
	cr_assert_eq(dev.plugged_size, 4 * MIB);
	/* Given back: reads zero again; the blocks still plugged keep theirs. */
	cr_assert_eq(p[2 * MIB], 0);
	cr_assert_eq(p[6 * MIB - 1], 0);
	cr_assert_eq(p[0], 0xab);
	cr_assert_eq(p[7 * MIB], 0xab);
	cr_assert_eq(req(VIRTIO_MEM_REQ_UNPLUG, base + 2 * MIB, 1, NULL), ERR, "already unplugged");
	/* UNPLUG_ALL: everything back, the usable part still covering the request. */
	cr_assert_eq(req(VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL), ACK);
	cr_assert_eq(dev.plugged_size, 0);
	cr_assert_eq(p[0], 0);
	cr_assert_eq(p[7 * MIB], 0);
	cr_assert_eq(dev.usable_region_size, 128 * MIB);
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base, 4, NULL), ACK);
	teardown();
}

Test(virtio_mem, large_blocks)
{
	setup(128);
	enum { ACK = VIRTIO_MEM_RESP_ACK, ERR = VIRTIO_MEM_RESP_ERROR };
	request_size(256);
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base + 2 * MIB, 1, NULL), ERR, "not aligned to 128 MiB");
	cr_assert_eq(req(VIRTIO_MEM_REQ_PLUG, base, 2, NULL), ACK);
	cr_assert_eq(dev.plugged_size, 256 * MIB);
	cr_assert_eq(req(VIRTIO_MEM_REQ_UNPLUG, base + 128 * MIB, 1, NULL), ACK);
	cr_assert_eq(dev.plugged_size, 128 * MIB);
	teardown();
}
