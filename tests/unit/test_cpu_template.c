#include <cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/config_json.h"
#include "../../vmm/action.h"
#include "../../vmm/boot/cpu_template.h"

/* ---- bitmaps, numbers, capabilities ---- */

Test(cpu_template, bitmap_tri_state)
{
	uint64_t f, v;
	char err[256];
	cr_assert_eq(cpu_bitmap_parse("0b1x0", 32, &f, &v, err, sizeof(err)), 0);
	cr_assert_eq(f, 0x5, "a short bitmap leaves the high bits as x");
	cr_assert_eq(v, 0x4);
	cr_assert_eq(cpu_bitmap_parse("10_01", 32, &f, &v, err, sizeof(err)), 0, "0b is optional, _ separates");
	cr_assert_eq(f, 0xf);
	cr_assert_eq(v, 0x9);
	cr_assert_eq(cpu_bitmap_parse("0b1111111111111111111111111111111111111111111111111111111111111111", 64, &f,
				      &v, err, sizeof(err)), 0);
	cr_assert_eq(f, UINT64_MAX);
	cr_assert_eq(v, UINT64_MAX);
}

Test(cpu_template, bitmap_refusals_in_firecrackers_words)
{
	uint64_t f, v;
	char err[256];
	cr_assert_eq(cpu_bitmap_parse("0b12", 32, &f, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "Failed to parse string [0b12] as a bitmap - unknown character: 50");
	cr_assert_eq(cpu_bitmap_parse("0b111111111111111111111111111111111", 32, &f, &v, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "Failed to parse string [0b111111111111111111111111111111111] as a bitmap - string is too long");
	/* 32 bits and then a separator is too long too: the length is checked first. */
	cr_assert_eq(cpu_bitmap_parse("_11111111111111111111111111111111", 32, &f, &v, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "string is too long"));
	cr_assert_eq(cpu_bitmap_parse("11111111111111111111111111111111_", 32, &f, &v, err, sizeof(err)), 0);
}

Test(cpu_template, numbers_need_their_base)
{
	uint64_t n;
	char err[256];
	cr_assert_eq(cpu_number_parse("0x8000001e", UINT32_MAX, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0x8000001e);
	cr_assert_eq(cpu_number_parse("0b101", UINT32_MAX, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 5);
	cr_assert_eq(cpu_number_parse("0x+1f", UINT32_MAX, &n, err, sizeof(err)), 0, "Rust's from_str_radix takes a +");
	cr_assert_eq(n, 0x1f);
	cr_assert_eq(cpu_number_parse("1", UINT32_MAX, &n, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "No supported number system prefix found in value [1]. Make sure to prefix the number "
			 "with '0x' for hexadecimal numbers or '0b' for binary numbers.");
	cr_assert_eq(cpu_number_parse("0xg", UINT32_MAX, &n, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "Failed to parse string [0xg] as a number for CPU template - ParseIntError { kind: InvalidDigit }");
	cr_assert_eq(cpu_number_parse("0x100000000", UINT32_MAX, &n, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ParseIntError { kind: PosOverflow }"));
	cr_assert_eq(cpu_number_parse("0b", UINT32_MAX, &n, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ParseIntError { kind: Empty }"));
	cr_assert_eq(cpu_number_parse("0b2", UINT32_MAX, &n, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "InvalidDigit"));
}

Test(cpu_template, kvm_capabilities)
{
	struct kvm_cap_modifier c;
	char err[256];
	cr_assert_eq(cpu_kvm_cap_parse("!56", &c, err, sizeof(err)), 0);
	cr_assert(c.remove);
	cr_assert_eq(c.cap, 56);
	cr_assert_eq(cpu_kvm_cap_parse("171", &c, err, sizeof(err)), 0);
	cr_assert(!c.remove);
	cr_assert_eq(cpu_kvm_cap_parse("!a2", &c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "Failed to parse string [!a2] as a kvm capability - can not convert to numeric: invalid digit "
			 "found in string");
	cr_assert_eq(cpu_kvm_cap_parse("", &c, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "cannot parse integer from empty string"));
	cr_assert_eq(cpu_kvm_cap_parse("4294967296", &c, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "number too large to fit in target type"));
}

/* ---- static templates ---- */

static const struct cpuid_modifier *find(const struct cpu_template *t, uint32_t leaf, uint32_t sub, enum cpuid_reg reg)
{
	for (unsigned i = 0; i < t->ncpuid; i++)
		if (t->cpuid[i].leaf == leaf && t->cpuid[i].subleaf == sub && t->cpuid[i].reg == reg)
			return &t->cpuid[i];
	return NULL;
}

Test(cpu_template, static_templates_are_firecrackers)
{
	static struct cpu_template t;
	cpu_template_static(CPU_TEMPLATE_T2, &t);
	cr_assert_eq(t.ncpuid, 11);
	cr_assert_eq(t.nmsrs, 0);
	const struct cpuid_modifier *m = find(&t, 0x1, 0, CPUID_EAX);
	cr_assert(m);
	cr_assert_eq(m->filter, 0x0fff3fff, "filter %#x", m->filter);
	cr_assert_eq(m->value, 0x000306f2);
	m = find(&t, 0x7, 0, CPUID_EBX);
	cr_assert(m && m->flags == 1);
	cr_assert_eq(m->filter, 0xffefda14, "filter %#x", m->filter);
	cr_assert_eq(m->value, 0x00000200, "ERMS set");
	m = find(&t, 0x1, 0, CPUID_EDX);
	cr_assert_eq(m->filter, 0xe8641080, "filter %#x", m->filter);
	cr_assert_eq(m->value, 0x00001080, "MCE and MTRR set");

	cpu_template_static(CPU_TEMPLATE_T2S, &t);
	cr_assert_eq(t.nmsrs, 1);
	cr_assert_eq(t.msrs[0].addr, 0x10a);
	cr_assert_eq(t.msrs[0].filter, UINT64_MAX);
	cr_assert_eq(t.msrs[0].value, 0x0c0a0c4c, "value %#llx", (unsigned long long)t.msrs[0].value);

	cpu_template_static(CPU_TEMPLATE_C3, &t);
	cr_assert_eq(find(&t, 0x1, 0, CPUID_EAX)->value, 0x000306e4);
	cpu_template_static(CPU_TEMPLATE_T2A, &t);
	m = find(&t, 0x80000008, 0, CPUID_EBX);
	cr_assert_eq(m->filter, 0x001c0205, "filter %#x", m->filter);
	cr_assert_eq(m->value, 0x001c0004, "value %#x", m->value);
	cpu_template_static(CPU_TEMPLATE_T2CL, &t);
	cr_assert_eq(t.nmsrs, 1);
	cr_assert_str_eq(cpu_template_name(CPU_TEMPLATE_T2CL), "T2CL");
	cr_assert_str_eq(cpu_template_name(CPU_TEMPLATE_CUSTOM), "None");
}

static struct kvm_cpuid2 *table(unsigned n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	c->nent = n;
	return c;
}

static void vendor(struct kvm_cpuid_entry2 *e, const char *v, uint32_t fms, struct kvm_cpuid_entry2 *l1)
{
	*e = (struct kvm_cpuid_entry2){ .function = 0 };
	memcpy(&e->ebx, v, 4);
	memcpy(&e->edx, v + 4, 4);
	memcpy(&e->ecx, v + 8, 4);
	*l1 = (struct kvm_cpuid_entry2){ .function = 1, .eax = fms | 0x3000 /* type bits do not count */ };
}

Test(cpu_template, vendor_and_model_checks)
{
	struct kvm_cpuid2 *c = table(2);
	char err[256];
	vendor(&c->entries[0], "GenuineIntel", 0x50657, &c->entries[1]);
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_T2, c, err, sizeof(err)), 0);
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_T2CL, c, err, sizeof(err)), 0);
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_T2A, c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "Failed to get CPU template: CPU vendor mismatched between actual CPU and CPU template.");
	vendor(&c->entries[0], "GenuineIntel", 0x50654, &c->entries[1]); /* Skylake */
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_T2S, c, err, sizeof(err)), 0);
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_T2CL, c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "Failed to get CPU template: The current CPU model is not permitted to apply the CPU template.");
	vendor(&c->entries[0], "AuthenticAMD", 0xa00f11, &c->entries[1]); /* Milan */
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_T2A, c, err, sizeof(err)), 0);
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_C3, c, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "vendor mismatched"));
	cr_assert_eq(cpu_template_check_host(CPU_TEMPLATE_CUSTOM, c, err, sizeof(err)), 0, "custom: no check");
	free(c);
}

/* ---- applying ---- */

Test(cpu_template, apply_cpuid)
{
	static struct cpu_template t;
	struct kvm_cpuid2 *c = table(2);
	char err[256];
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0xa0671, .ecx = 0xffffffff };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .ebx = 0x0 };
	cpu_template_static(CPU_TEMPLATE_T2, &t);
	t.ncpuid = 2; /* leaf 0x1 EAX and ECX */
	cr_assert_eq(cpu_template_apply_cpuid(&t, c, err, sizeof(err)), 0);
	cr_assert_eq(c->entries[0].eax, 0x306f2);
	cr_assert_eq(c->entries[0].ecx, 0xfffb3203, "ecx %#x", c->entries[0].ecx);
	/* A leaf with no register modifiers sets the flags only. */
	memset(&t, 0, sizeof(t));
	t.ncpuid = 1;
	t.cpuid[0] = (struct cpuid_modifier){ 7, 0, 1, CPUID_REG_NONE, 0, 0 };
	cr_assert_eq(cpu_template_apply_cpuid(&t, c, err, sizeof(err)), 0);
	cr_assert_eq(c->entries[1].flags, 1);
	cr_assert_eq(c->entries[1].ebx, 0);
	t.cpuid[0] = (struct cpuid_modifier){ 0x1f, 2, 1, CPUID_EAX, 1, 1 };
	cr_assert_eq(cpu_template_apply_cpuid(&t, c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "System configuration error: Failed to create guest config: Template changes a CPUID "
			 "entry not supported by KVM: Leaf: 1f, Subleaf: 2");
	free(c);
}

Test(cpu_template, restore_names_missing_features)
{
	struct kvm_cpuid_entry2 saved[2] = {
		{ .function = 1, .ecx = (1u << 13) | (1u << 21) | (1u << 31) | (1u << 27), .edx = 1u << 28 },
		{ .function = 7, .ebx = (1u << 5) | (1u << 9) | (1u << 12) },
	};
	/* The source host had CX16, x2APIC, AVX2 and RDT-M; ERMS came from a template. */
	struct kvm_cpuid_entry2 source[2] = {
		{ .function = 1, .ecx = (1u << 13) | (1u << 21) },
		{ .function = 7, .ebx = (1u << 5) | (1u << 12) },
	};
	struct kvm_cpuid2 *host = table(2);
	host->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = 1u << 21 };
	host->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .ebx = 1u << 12 };
	char out[256];
	cr_assert_eq(cpu_cpuid_missing(saved, 2, source, 2, host, out, sizeof(out)), 2);
	cr_assert_str_eq(out, "cx16, avx2");
	host->entries[0].ecx |= 1u << 13;
	host->entries[1].ebx |= 1u << 5;
	cr_assert_eq(cpu_cpuid_missing(saved, 2, source, 2, host, out, sizeof(out)), 0, "%s", out);
	cr_assert_str_eq(out, "");
	free(host);
}

/* ---- JSON ---- */

static int parse(const char *json, struct cpu_template *t, char *err, size_t errlen)
{
	cJSON *o = cJSON_Parse(json);
	cr_assert(o, "bad test JSON %s", json);
	int ret = config_json_cpu_template(o, t, err, errlen);
	cJSON_Delete(o);
	return ret;
}

Test(cpu_template, json_firecrackers_example)
{
	static struct cpu_template t;
	char err[512];
	int ret = parse("{\"kvm_capabilities\": [\"!56\"], \"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", "
			"\"flags\": 0, \"modifiers\": [{\"register\": \"eax\", \"bitmap\": "
			"\"0bxxxx000000000011xx00011011110010\"}]}], \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": "
			"\"0b0000000000000000000000000000000000000000000000000000000000000000\"}]}", &t, err, sizeof(err));
	cr_assert_eq(ret, 0, "%s", err);
	cr_assert_eq(t.ncaps, 1);
	cr_assert(t.caps[0].remove && t.caps[0].cap == 56);
	cr_assert_eq(t.ncpuid, 1);
	cr_assert_eq(t.cpuid[0].reg, CPUID_EAX);
	cr_assert_eq(t.cpuid[0].filter, 0x0fff3fff);
	cr_assert_eq(t.cpuid[0].value, 0x000306f2);
	cr_assert_eq(t.nmsrs, 1);
	cr_assert_eq(t.msrs[0].addr, 0x10a);
	cr_assert_eq(t.msrs[0].filter, UINT64_MAX);
	cr_assert_eq(parse("{}", &t, err, sizeof(err)), 0, "an empty template is a template");
	cr_assert_eq(t.ncpuid + t.nmsrs + t.ncaps, 0);
	/* Unknown members of an entry are ignored, as Firecracker's deserializer does. */
	cr_assert_eq(parse("{\"msr_modifiers\": [{\"addr\": \"0x277\", \"bitmap\": \"0b1\", \"note\": 1}]}", &t, err,
			   sizeof(err)), 0, "%s", err);
}

Test(cpu_template, json_refusals)
{
	static struct cpu_template t;
	char err[512];
	static const struct { const char *json, *want; } cases[] = {
		{ "{\"foo\": false}", "unknown field `foo`, expected one of `kvm_capabilities`, `cpuid_modifiers`, `msr_modifiers`" },
		{ "{\"kvm_capabilities\": \"56\"}", "invalid type: string \"56\", expected a sequence" },
		{ "{\"kvm_capabilities\": [56]}", "invalid type: integer `56`, expected a string" },
		{ "{\"cpuid_modifiers\": [{\"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}]}", "missing field `leaf`" },
		{ "{\"cpuid_modifiers\": [{\"leaf\": 1, \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}]}",
		  "invalid type: integer `1`, expected a string" },
		{ "{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": \"0\", \"modifiers\": []}]}",
		  "invalid type: string \"0\", expected u32" },
		{ "{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0}]}", "missing field `modifiers`" },
		{ "{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": "
		  "[{\"register\": \"rax\", \"bitmap\": \"0b1\"}]}]}", "Invalid CPUID register. Must be one of [eax, ebx, ecx, edx]" },
		{ "{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": "
		  "[{\"register\": \"eax\"}]}]}", "missing field `bitmap`" },
		{ "{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": \"0b2\"}]}",
		  "Failed to parse string [0b2] as a bitmap - unknown character: 50" },
		{ "{\"msr_modifiers\": [{\"addr\": \"0x1_0a\", \"bitmap\": \"0b1\"}]}",
		  "Failed to parse string [0x1_0a] as a number for CPU template - ParseIntError { kind: InvalidDigit }" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(parse(cases[i].json, &t, err, sizeof(err)), -EINVAL, "accepted %s", cases[i].json);
		cr_assert(strstr(err, cases[i].want), "%s: got '%s', want '%s'", cases[i].json, err, cases[i].want);
	}
}

Test(cpu_template, json_bounded)
{
	static struct cpu_template t;
	char err[512];
	size_t n = CPU_TEMPLATE_MAX_MSRS + 1;
	char *json = malloc(64 + n * 48);
	size_t off = (size_t)sprintf(json, "{\"msr_modifiers\": [");
	for (size_t i = 0; i < n; i++)
		off += (size_t)sprintf(json + off, "%s{\"addr\": \"0x%zx\", \"bitmap\": \"0b1\"}", i ? "," : "", i);
	strcpy(json + off, "]}");
	cr_assert_eq(parse(json, &t, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "more than"), "%s", err);
	free(json);
}

/* ---- the config file's "cpu-config" ---- */

Test(cpu_template, config_file_custom_wins_and_paths_only_from_disk)
{
	static struct vmm_config cfg;
	char err[512];
	const char *both = "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"cpu-config\": {\"cpuid_modifiers\": []}, "
			   "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"T2\"}}";
	config_defaults(&cfg);
	cr_assert_eq(config_json_file(both, strlen(both), &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.machine.cpu_template, CPU_TEMPLATE_CUSTOM, "cpu-config applies after machine-config");
	const char *path = "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"cpu-config\": \"/etc/passwd\"}";
	config_defaults(&cfg);
	cr_assert_eq(config_json_file(path, strlen(path), &cfg, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "a path is allowed only in a config file"), "%s", err);
	const char *t2 = "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1, "
			 "\"mem_size_mib\": 128, \"cpu_template\": \"T2CL\"}}";
	config_defaults(&cfg);
	cr_assert_eq(config_json_file(t2, strlen(t2), &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.machine.cpu_template, CPU_TEMPLATE_T2CL);
	cJSON *o = config_json_machine_obj(&cfg.machine);
	char *text = cJSON_PrintUnformatted(o);
	cr_assert(strstr(text, "\"smt\":false,\"cpu_template\":\"T2CL\",\"track_dirty_pages\""), "%s", text);
	free(text);
	cJSON_Delete(o);
	cfg.machine.cpu_template = CPU_TEMPLATE_CUSTOM;
	o = config_json_machine_obj(&cfg.machine);
	text = cJSON_PrintUnformatted(o);
	cr_assert(!strstr(text, "cpu_template"), "a custom template shows as none: %s", text);
	free(text);
	cJSON_Delete(o);
}

Test(cpu_template, machine_config_put_keeps_the_template)
{
	struct machine_config cur = { .vcpu_count = 1, .mem_size_mib = 128, .cpu_template = CPU_TEMPLATE_CUSTOM };
	struct machine_config v = { .vcpu_count = 2, .mem_size_mib = 256 };
	char err[256];
	cr_assert_eq(config_machine_apply(&cur, &v, MACHINE_F_VCPU_COUNT | MACHINE_F_MEM_SIZE, false, err, sizeof(err)), 0);
	cr_assert_eq(cur.cpu_template, CPU_TEMPLATE_CUSTOM);
	v.cpu_template = CPU_TEMPLATE_NONE;
	cr_assert_eq(config_machine_apply(&cur, &v, MACHINE_F_VCPU_COUNT | MACHINE_F_MEM_SIZE | MACHINE_F_CPU_TEMPLATE,
					  false, err, sizeof(err)), 0);
	cr_assert_eq(cur.cpu_template, CPU_TEMPLATE_NONE, "\"None\" drops it");
}
