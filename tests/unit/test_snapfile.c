/* The snapshot state container: checksum, field writer and reader, the
 * header checks every load goes through, and the section checks of the
 * decoder (each kind once, devices in order, the memory section). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../vmm/snapshot/memfile.h"
#include "../../vmm/snapshot/snapfile.h"
#include "../../vmm/snapshot/snapshot.h"
#include "../../vmm/snapshot/tags.h"

Test(snapfile, crc64_check_value)
{
	/* The CRC-64/XZ catalogue check value. */
	cr_assert_eq(snap_crc64(0, "123456789", 9), 0x995dc9bbdf1939faULL);
}

Test(snapfile, sections_round_trip)
{
	struct snap_writer w;
	sw_init(&w);
	sw_begin(&w, 7);
	sw_u8(&w, 0xab);
	sw_u16(&w, 0x1234);
	sw_u32(&w, 0xdeadbeef);
	sw_u64(&w, 0x0102030405060708ULL);
	sw_end(&w);
	sw_begin(&w, 9);
	sw_bytes(&w, "hello", 5);
	sw_end(&w);
	cr_assert(!w.oom);

	struct snap_reader r, s;
	uint32_t tag;
	sr_init(&r, w.buf, w.len);
	cr_assert(sr_section(&r, &tag, &s));
	cr_assert_eq(tag, 7);
	cr_assert_eq(sr_u8(&s), 0xab);
	cr_assert_eq(sr_u16(&s), 0x1234);
	cr_assert_eq(sr_u32(&s), 0xdeadbeef);
	cr_assert_eq(sr_u64(&s), 0x0102030405060708ULL);
	cr_assert(sr_done(&s, "first"));
	cr_assert(sr_section(&r, &tag, &s));
	cr_assert_eq(tag, 9);
	char buf[6] = { 0 };
	sr_bytes(&s, buf, 5);
	cr_assert_str_eq(buf, "hello");
	cr_assert(!sr_section(&r, &tag, &s));
	cr_assert(!r.bad);
	sw_free(&w);
}

Test(snapfile, reads_past_the_end_fail_with_a_reason)
{
	uint8_t two[2] = { 1, 2 };
	struct snap_reader r;
	sr_init(&r, two, sizeof(two));
	cr_assert_eq(sr_u32(&r), 0);
	cr_assert(r.bad);
	cr_assert(strstr(r.why, "truncated"));
	/* A section whose length overruns the payload. */
	uint8_t sec[10] = { 1, 0, 0, 0, 100, 0, 0, 0, 0, 0 };
	struct snap_reader s;
	uint32_t tag;
	sr_init(&r, sec, sizeof(sec));
	cr_assert(!sr_section(&r, &tag, &s));
	cr_assert(r.bad);
	/* Left-over bytes in a section are an error too. */
	sr_init(&r, two, sizeof(two));
	sr_u8(&r);
	cr_assert(!sr_done(&r, "x"));
}

/* A file image of payload p, as snapfile_write lays it out. */
static size_t image(uint8_t *out, const uint8_t *p, size_t n)
{
	uint64_t crc = snap_crc64(0, p, n);
	memcpy(out, SNAPFILE_MAGIC, 8);
	uint32_t v = SNAPFILE_VERSION, h = SNAPFILE_HEADER_SIZE;
	uint64_t len = n;
	memcpy(out + 8, &v, 4);
	memcpy(out + 12, &h, 4);
	memcpy(out + 16, &len, 8);
	memcpy(out + 24, &crc, 8);
	memcpy(out + 32, p, n);
	return 32 + n;
}

Test(snapfile, decode_checks_the_header)
{
	uint8_t file[64], payload[16] = "ember payload";
	const uint8_t *p;
	size_t plen, n = image(file, payload, sizeof(payload));
	char err[200];
	cr_assert_eq(snapfile_decode(file, n, &p, &plen, err, sizeof(err)), 0);
	cr_assert_eq(plen, sizeof(payload));

	uint8_t bad[64];
	memcpy(bad, file, n);
	bad[0] = 'X';
	cr_assert_eq(snapfile_decode(bad, n, &p, &plen, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "magic"));
	/* Version 1 state files named no memory file: refused, naming both. */
	memcpy(bad, file, n);
	bad[8] = 1;
	cr_assert_eq(snapfile_decode(bad, n, &p, &plen, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "version 1; this ember reads version 2 only"), "%s", err);
	cr_assert_eq(snapfile_decode(file, n - 1, &p, &plen, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "size mismatch"));
	memcpy(bad, file, n);
	bad[40] ^= 1;
	cr_assert_eq(snapfile_decode(bad, n, &p, &plen, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "checksum"));
	cr_assert_eq(snapfile_decode(file, 10, &p, &plen, err, sizeof(err)), -EINVAL);
}

/* ---- whole state files: the section checks of snapshot_parse --------- */

static const char config[] = "{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
			     " \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 1}}";

static void put_config(struct snap_writer *w)
{
	sw_begin(w, TAG_CONFIG);
	sw_bytes(w, config, strlen(config));
	sw_end(w);
}

static void put_memory(struct snap_writer *w, uint64_t mem, uint64_t file, uint64_t gen)
{
	sw_begin(w, TAG_MEMORY);
	sw_u64(w, mem);
	sw_u64(w, file);
	sw_u64(w, gen);
	sw_end(w);
}

static void put_vm(struct snap_writer *w)
{
	struct kvm_irqchip chips[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER },
					{ .chip_id = KVM_IRQCHIP_PIC_SLAVE },
					{ .chip_id = KVM_IRQCHIP_IOAPIC } };
	struct kvm_pit_state2 pit = { 0 };
	sw_begin(w, TAG_VM);
	sw_bytes(w, chips, sizeof(chips));
	sw_bytes(w, &pit, sizeof(pit));
	sw_u64(w, 0);
	sw_end(w);
}

static void put_blob(struct snap_writer *w, uint32_t tag)
{
	sw_begin(w, tag);
	sw_u32(w, 0);
	sw_end(w);
}

/* snapshot_parse of w's payload in a valid header; the reason in err. */
static int parse_payload(const struct snap_writer *w, char *err, size_t errlen)
{
	cr_assert(!w->oom);
	uint8_t *file = malloc(w->len + 32);
	cr_assert(file);
	size_t n = image(file, w->buf, w->len);
	struct snapshot_image *img = calloc(1, sizeof(*img));
	cr_assert(img);
	err[0] = '\0';
	int ret = snapshot_parse(file, n, img, err, errlen);
	if (!ret)
		snapshot_image_free(img);
	free(img);
	free(file);
	return ret;
}

#define GEN 0x1234abcdULL

Test(snapfile, a_section_kind_given_twice_is_refused)
{
	static const struct { uint32_t tag; const char *name; } kinds[] = {
		{ TAG_CONFIG, "configuration" }, { TAG_MEMORY, "memory" }, { TAG_VM, "VM" },
		{ TAG_SERIAL, "serial" }, { TAG_I8042, "i8042" },
	};
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct snap_writer w;
		sw_init(&w);
		for (int twice = 0; twice < 2; twice++) {
			switch (kinds[k].tag) {
			case TAG_CONFIG: put_config(&w); break;
			case TAG_MEMORY: put_memory(&w, 1 << 20, (1 << 20) + 4096, GEN); break;
			case TAG_VM: put_vm(&w); break;
			default: put_blob(&w, kinds[k].tag); break;
			}
		}
		char err[300], want[64];
		snprintf(want, sizeof(want), "two %s sections", kinds[k].name);
		cr_assert_eq(parse_payload(&w, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, want), "%s: %s", kinds[k].name, err);
		sw_free(&w);
	}
}

Test(snapfile, virtio_sections_in_order_each_once)
{
	struct snap_writer w;
	sw_init(&w);
	put_blob(&w, TAG_VIRTIO); /* device 0 */
	put_blob(&w, TAG_VIRTIO); /* device 0 again, where 1 belongs */
	char err[300];
	cr_assert_eq(parse_payload(&w, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "virtio section 1 is for device 0: repeated or out of order"), "%s", err);
	sw_free(&w);
}

Test(snapfile, the_memory_section_names_its_memory_file)
{
	static const struct { uint64_t mem, file, gen; size_t len; const char *why; } bad[] = {
		{ 1 << 20, (1 << 20) + 4096, 0, 24, "without a generation id" },
		{ 1 << 20, 1 << 20, GEN, 24, "memory file size 1048576 for 1048576 bytes" },
		{ 1000, 1000 + 4096, GEN, 24, "not a positive multiple of 4 KiB" },
		/* A version 1 memory section: the guest's size alone. */
		{ 1 << 20, 0, 0, 8, "truncated" },
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct snap_writer w;
		sw_init(&w);
		sw_begin(&w, TAG_MEMORY);
		sw_u64(&w, bad[k].mem);
		if (bad[k].len > 8) {
			sw_u64(&w, bad[k].file);
			sw_u64(&w, bad[k].gen);
		}
		sw_end(&w);
		char err[300];
		cr_assert_eq(parse_payload(&w, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, bad[k].why), "case %zu: %s", k, err);
		sw_free(&w);
	}
}

Test(snapfile, memory_section_round_trip)
{
	struct snap_writer w;
	sw_init(&w);
	struct memfile_id id = { 1 << 20, (1 << 20) + 4096, GEN }, got;
	memfile_id_put(&w, &id);
	struct snap_reader r, sec;
	uint32_t tag;
	sr_init(&r, w.buf, w.len);
	cr_assert(sr_section(&r, &tag, &sec));
	cr_assert_eq(tag, TAG_MEMORY);
	cr_assert(memfile_id_get(&sec, &got), "%s", sec.why);
	cr_assert_eq(memcmp(&id, &got, sizeof(id)), 0);
	sw_free(&w);
}

/* The MMDS section: the data store's JSON, checked when the file is read,
 * at most once. */
static void put_mmds(struct snap_writer *w, const char *json)
{
	sw_begin(w, TAG_MMDS);
	sw_bytes(w, json, strlen(json));
	sw_end(w);
}

Test(snapfile, mmds_section_is_json_once)
{
	static const struct { const char *first, *second, *why; } bad[] = {
		{ "{\"a\":", NULL, "MMDS section: invalid JSON" },
		{ "", NULL, "MMDS section: empty" },
		{ "{\"a\":1,\"a\":2}", NULL, "MMDS section:" },
		{ "{\"a\":1}", "{\"b\":2}", "two MMDS sections" },
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		struct snap_writer w;
		sw_init(&w);
		put_mmds(&w, bad[k].first);
		if (bad[k].second)
			put_mmds(&w, bad[k].second);
		char err[300];
		cr_assert_eq(parse_payload(&w, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, bad[k].why), "case %zu: %s", k, err);
		sw_free(&w);
	}
	/* A good one passes its own check (the file then lacks the rest). */
	struct snap_writer w;
	sw_init(&w);
	put_mmds(&w, "{\"latest\":{\"meta-data\":{}}}");
	char err[300];
	cr_assert_eq(parse_payload(&w, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "a required section is missing"), "%s", err);
	sw_free(&w);
}
