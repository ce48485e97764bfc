/* libFuzzer target: the configuration section of a snapshot state file.
 *
 * The input is the section's bytes (the JSON config a snapshot keeps). The
 * harness puts it in a state file whose other sections are all valid and
 * match what the config describes (memory size, one section per vCPU and
 * per device), with a good header and checksum, so the decoder's
 * cross-section checks run on every config that parses. Checked, besides
 * no crash, leak or out-of-bounds access:
 *   - the state file loads exactly when the config parses and passes the
 *     device checks, and the loaded config is the parsed one;
 *   - the device arrays hold no more than their capacity;
 *   - a loaded config written back as a snapshot writes it (the next
 *     snapshot of the restored VM) parses again to the same config, and
 *     writes the same text again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../../api/config_json.h"
#include "../../vmm/snapshot/memfile.h"
#include "../../vmm/snapshot/snapfile.h"
#include "../../vmm/snapshot/snapshot.h"
#include "../../vmm/snapshot/tags.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fatal(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_state_config: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	__builtin_trap();
}

/* Settings that mean nothing: a bucket of size 0 limits nothing, whatever
 * its other fields say (and the writer leaves it out). */
static void bucket_normalize(struct token_bucket_config *b)
{
	if (!b->size)
		memset(b, 0, sizeof(*b));
}

static void normalize(struct vmm_config *c)
{
	for (unsigned i = 0; i < c->ndrives; i++) {
		bucket_normalize(&c->drives[i].rate_limiter.bandwidth);
		bucket_normalize(&c->drives[i].rate_limiter.ops);
	}
	for (unsigned i = 0; i < c->nnets; i++) {
		bucket_normalize(&c->nets[i].rx_rate_limiter.bandwidth);
		bucket_normalize(&c->nets[i].rx_rate_limiter.ops);
		bucket_normalize(&c->nets[i].tx_rate_limiter.bandwidth);
		bucket_normalize(&c->nets[i].tx_rate_limiter.ops);
	}
	for (unsigned i = 0; i < c->npmems; i++) {
		bucket_normalize(&c->pmems[i].rate_limiter.bandwidth);
		bucket_normalize(&c->pmems[i].rate_limiter.ops);
	}
	bucket_normalize(&c->entropy.rate_limiter.bandwidth);
	bucket_normalize(&c->entropy.rate_limiter.ops);
	bucket_normalize(&c->serial.rate_limiter);
	/* Not kept in the state file: a restore uses the loading process's own. */
	memset(&c->logger, 0, sizeof(c->logger));
	memset(&c->metrics, 0, sizeof(c->metrics));
}

static void check_counts(const struct vmm_config *c)
{
	if (c->ndrives > CONFIG_MAX_DRIVES || c->nnets > CONFIG_MAX_NETS || c->npmems > CONFIG_MAX_PMEMS)
		fatal("more devices than the configuration holds", NULL);
}

/* The text snapshot_save() writes for a configuration. */
static char *config_text(const struct vmm_config *c)
{
	cJSON *obj = config_json_state_obj(c);
	char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (!text)
		fatal("out of memory", NULL);
	return text;
}

/* A state file: the config section as given, the rest valid for cfg. */
static void state_file(struct snap_writer *w, const uint8_t *config, size_t len, const struct vmm_config *cfg)
{
	static const struct snap_vcpu vcpu; /* zeros: a valid vCPU state */
	struct snap_writer p;
	sw_init(&p);
	sw_begin(&p, TAG_CONFIG);
	sw_bytes(&p, config, len);
	sw_end(&p);
	/* RAM and the hotplug region (the config checks bound both). */
	uint64_t mem = (cfg->machine.mem_size_mib + (cfg->memory_hotplug.set ? cfg->memory_hotplug.total_size_mib : 0))
		       << 20;
	memfile_id_put(&p, &(struct memfile_id){ mem, mem + MEMFILE_ID_PAGE, 1 });
	sw_begin(&p, TAG_VM);
	struct kvm_irqchip chip = { 0 };
	static const uint32_t chips[3] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC };
	for (unsigned i = 0; i < 3; i++) {
		chip.chip_id = chips[i];
		sw_bytes(&p, &chip, sizeof(chip));
	}
	struct kvm_pit_state2 pit = { 0 };
	sw_bytes(&p, &pit, sizeof(pit));
	sw_u64(&p, 0); /* clock */
	sw_end(&p);
	for (unsigned i = 0; i < cfg->machine.vcpu_count; i++) {
		sw_begin(&p, TAG_VCPU);
		sw_bytes(&p, &vcpu.regs, sizeof(vcpu.regs));
		sw_bytes(&p, &vcpu.sregs, sizeof(vcpu.sregs));
		sw_u8(&p, 0); /* no xsave: the legacy FPU state */
		sw_bytes(&p, &vcpu.fpu, sizeof(vcpu.fpu));
		sw_u8(&p, 0); /* no XCRs */
		sw_bytes(&p, &vcpu.debugregs, sizeof(vcpu.debugregs));
		sw_bytes(&p, &vcpu.lapic, sizeof(vcpu.lapic));
		sw_bytes(&p, &vcpu.events, sizeof(vcpu.events));
		sw_bytes(&p, &vcpu.mp_state, sizeof(vcpu.mp_state));
		sw_u32(&p, 0); /* MSRs */
		sw_end(&p);
	}
	sw_begin(&p, TAG_SERIAL);
	sw_end(&p);
	sw_begin(&p, TAG_I8042);
	sw_end(&p);
	unsigned ndev = cfg->ndrives + cfg->nnets + cfg->npmems + cfg->vsock.set + cfg->entropy.set + cfg->balloon.set +
			cfg->memory_hotplug.set;
	for (unsigned i = 0; i < ndev; i++) {
		sw_begin(&p, TAG_VIRTIO);
		sw_u32(&p, i);
		sw_end(&p);
	}
	uint64_t fields[3] = { (uint64_t)SNAPFILE_VERSION | (uint64_t)SNAPFILE_HEADER_SIZE << 32, p.len,
			       snap_crc64(0, p.buf, p.len) };
	sw_init(w);
	sw_bytes(w, SNAPFILE_MAGIC, 8);
	sw_bytes(w, fields, sizeof(fields)); /* little-endian host */
	sw_bytes(w, p.buf, p.len);
	sw_free(&p);
	if (w->oom)
		fatal("out of memory", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Heap copies of exact size, so ASan sees any write past their end. */
	struct vmm_config *cfg = malloc(sizeof(*cfg)), *again = malloc(sizeof(*again));
	struct snapshot_image *img = malloc(sizeof(*img));
	char err[512] = "";
	if (!cfg || !again || !img)
		fatal("out of memory", NULL);

	config_defaults(cfg);
	bool parses = config_json_file((const char *)data, size, cfg, err, sizeof(err)) == 0;
	check_counts(cfg);
	if (!parses)
		config_defaults(cfg); /* the state file then has a default VM's sections */

	struct snap_writer file;
	state_file(&file, data, size, cfg);
	char why[512] = "";
	bool loads = snapshot_parse(file.buf, file.len, img, why, sizeof(why)) == 0;
	sw_free(&file);
	if (parses != loads)
		fatal(parses ? "a state file with a valid configuration is refused"
			     : "a state file with an invalid configuration loads",
		      parses ? why : err);
	if (!loads)
		goto out;
	check_counts(&img->cfg);
	if (memcmp(&img->cfg, cfg, sizeof(*cfg)))
		fatal("the state file's configuration differs from the same text parsed", NULL);

	/* The next snapshot of the restored VM writes this text. */
	char *text = config_text(&img->cfg);
	config_defaults(again);
	if (config_json_file(text, strlen(text), again, err, sizeof(err)))
		fatal("the configuration a snapshot writes does not parse", err);
	check_counts(again);
	char *text2 = config_text(again);
	if (strcmp(text, text2))
		fatal("a configuration written, read and written again changes", text2);
	normalize(&img->cfg);
	normalize(again);
	if (memcmp(&img->cfg, again, sizeof(*again)))
		fatal("the configuration a snapshot writes reads back different", text);
	free(text);
	free(text2);
	snapshot_image_free(img);
out:
	free(cfg);
	free(again);
	free(img);
	return 0;
}
