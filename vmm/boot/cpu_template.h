/* CPU templates: what the guest is told about its CPU (CPUID bits, MSR
 * values) and which KVM capabilities the host must have, as Firecracker
 * defines them.
 *
 * A template is a list of bit modifiers. Each has a filter (the bits it
 * decides) and a value (what those bits become): reg = (reg & ~filter) |
 * value. In text a modifier is a tri-state bitmap, most significant bit
 * first: '0' or '1' decides a bit, 'x' keeps it, '_' separates groups, an
 * optional "0b" prefix, and a bitmap shorter than the register leaves its
 * high bits as 'x'.
 *
 * Static templates (machine-config "cpu_template": C3, T2, T2S, T2CL, T2A)
 * are built-in tables of such bitmaps (cpu_template.c), each allowed only
 * on the CPU vendor and models it was made for. Custom templates come from
 * PUT /cpu-config or the config file's "cpu-config" (api/config_json.c).
 * The template is applied to the CPUID KVM supports before ember's own
 * normalization (boot/cpu.c), so topology and the hypervisor bit are
 * always ember's. */
#ifndef EMBER_CPU_TEMPLATE_H
#define EMBER_CPU_TEMPLATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* machine-config "cpu_template", plus a custom template set through
 * /cpu-config (which machine-config shows as no template, as Firecracker). */
enum cpu_template_kind {
	CPU_TEMPLATE_NONE,
	CPU_TEMPLATE_C3,
	CPU_TEMPLATE_T2,
	CPU_TEMPLATE_T2S,
	CPU_TEMPLATE_T2CL,
	CPU_TEMPLATE_T2A,
	CPU_TEMPLATE_CUSTOM,
};

/* "C3", "T2", ...; "None" for NONE and CUSTOM. */
const char *cpu_template_name(enum cpu_template_kind kind);

enum cpuid_reg { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX, CPUID_REG_NONE };

/* One register of one leaf/subleaf. A leaf listed with no register
 * modifiers is one entry with reg CPUID_REG_NONE: it still sets flags and
 * still needs the leaf to exist. */
struct cpuid_modifier {
	uint32_t leaf, subleaf, flags;
	enum cpuid_reg reg;
	uint32_t filter, value;
};

struct msr_modifier {
	uint32_t addr;
	uint64_t filter, value;
};

/* "N": the host must have KVM capability N; "!N": do not require it. */
struct kvm_cap_modifier {
	uint32_t cap;
	bool remove;
};

#define CPU_TEMPLATE_MAX_CPUID 256
#define CPU_TEMPLATE_MAX_MSRS 64
#define CPU_TEMPLATE_MAX_CAPS 32

struct cpu_template {
	unsigned ncaps, ncpuid, nmsrs;
	struct kvm_cap_modifier caps[CPU_TEMPLATE_MAX_CAPS];
	struct cpuid_modifier cpuid[CPU_TEMPLATE_MAX_CPUID];
	struct msr_modifier msrs[CPU_TEMPLATE_MAX_MSRS];
};

/* ---- text forms, with Firecracker's words for what they refuse ---- */

/* A tri-state bitmap of bits (32 or 64) into filter/value. Returns 0, or
 * -EINVAL with the reason in err ("Failed to parse string [..] as a
 * bitmap - ..."). */
int cpu_bitmap_parse(const char *s, unsigned bits, uint64_t *filter, uint64_t *value, char *err,
		     size_t errlen);

/* A number with its base named: "0x1f" or "0b101" (leaf, subleaf, MSR
 * address), at most max. Returns 0 or -EINVAL with the reason in err. */
int cpu_number_parse(const char *s, uint64_t max, uint64_t *out, char *err, size_t errlen);

/* A KVM capability, "N" or "!N" (decimal). Returns 0 or -EINVAL. */
int cpu_kvm_cap_parse(const char *s, struct kvm_cap_modifier *out, char *err, size_t errlen);

/* ---- static templates ---- */

/* The built-in template kind (C3 .. T2A) into out. */
void cpu_template_static(enum cpu_template_kind kind, struct cpu_template *out);

/* May the static template kind run on the host whose CPUID host is (the
 * vendor of leaf 0, the family/model/stepping of leaf 1)? Returns 0, or
 * -EINVAL with Firecracker's reason in err. */
int cpu_template_check_host(enum cpu_template_kind kind, const struct kvm_cpuid2 *host, char *err,
			    size_t errlen);

/* ---- applying a template ---- */

static inline uint64_t cpu_modifier_apply(uint64_t reg, uint64_t filter, uint64_t value)
{
	return (reg & ~filter) | value;
}

/* Apply t's CPUID modifiers to c (a vCPU's table, from KVM_GET_SUPPORTED_CPUID).
 * Returns 0, or -EINVAL if a modified leaf/subleaf is not in c (reason in err). */
int cpu_template_apply_cpuid(const struct cpu_template *t, struct kvm_cpuid2 *c, char *err, size_t errlen);

/* The host's KVM has every capability t adds (kvm_fd: /dev/kvm)? Returns 0,
 * or -EINVAL naming the first it lacks. */
int cpu_template_check_caps(const struct cpu_template *t, int kvm_fd, char *err, size_t errlen);

/* ---- restoring a snapshot on another host ---- */

/* The CPU features that the guest CPUID saved (a vCPU's table in a
 * snapshot) has from the CPU of the host that took it (source: what KVM
 * supported there) and that host (KVM_GET_SUPPORTED_CPUID here) cannot
 * provide: their names ("avx2, leaf 0x7.0 ecx bit 30") into out,
 * comma-separated. Only the feature-flag registers count, less the bits
 * ember or KVM set themselves (the hypervisor bit, HTT, OSXSAVE, OSPKE);
 * a bit a template set without the source host having it is the
 * template's, not the CPU's. Returns how many. */
unsigned cpu_cpuid_missing(const struct kvm_cpuid_entry2 *saved, unsigned nsaved,
			   const struct kvm_cpuid_entry2 *source, unsigned nsource,
			   const struct kvm_cpuid2 *host, char *out, size_t outlen);

/* ---- test hook ---- */

/* Change the host CPUID as ember sees it, for tests (only ember-test's
 * main calls this, from EMBER_TEST_HOST_CPUID): a comma-separated list of
 * "LEAF.SUBLEAF:REG=VALUE" (set the register) or "LEAF.SUBLEAF:REG&~MASK"
 * (clear bits), numbers in hex with 0x. Returns 0 or -EINVAL. */
int cpu_host_override_set(const char *spec);
/* Apply that override to a KVM_GET_SUPPORTED_CPUID table (vm.c). */
void cpu_host_override_apply(struct kvm_cpuid2 *c);

#endif
