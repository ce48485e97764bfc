/* CPU templates (cpu_template.h): the static templates as data, the
 * bitmap and number forms of custom templates, applying them, and the
 * check a snapshot restore makes against the host's CPUID. */
#include "cpu_template.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../log.h"

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the static templates ------------------------------------------ */

/* Each modifier as a tri-state bitmap (cpu_template.h), most significant
 * bit first, grouped by four. They are Firecracker's templates bit for
 * bit; the comment above each names the bits it decides. */
struct static_cpuid {
	uint32_t leaf, subleaf, flags;
	enum cpuid_reg reg;
	const char *bitmap;
};

struct static_msr {
	uint32_t addr;
	const char *bitmap;
};

static const struct static_cpuid c3_cpuid[] = {
	/* family 6, model 0x3e, stepping 4 (Ivy Bridge), as a C3 */
	{ 0x1, 0x0, 0, CPUID_EAX, "xxxx_0000_0000_0011_xx00_0110_1110_0100" },
	/* clear DTES64, MONITOR, DS-CPL, VMX, TM2, CNXT-ID, SDBG, FMA, xTPR, PDCM, MOVBE */
	{ 0x1, 0x0, 0, CPUID_ECX, "xxxx_xxxx_x0xx_xxxx_00x0_00x0_xx00_00xx" },
	/* clear PSN, DS, ACPI, SS, TM, PBE; set MCE, MTRR */
	{ 0x1, 0x0, 0, CPUID_EDX, "0x0x_0xxx_x00x_x0xx_xxx1_xxxx_1xxx_xxxx" },
	/* clear SGX, BMI1, HLE, AVX2, BMI2, INVPCID, RTM, RDT-M, MPX, RDT-A, AVX512F, AVX512DQ, RDSEED, ADX, AVX512_IFMA, CLFLUSHOPT, CLWB, Intel PT, AVX512PF, AVX512ER, AVX512CD, SHA, AVX512BW, AVX512VL */
	{ 0x7, 0x0, 1, CPUID_EBX, "0000_0000_0x0x_0000_00x0_00x0_xx00_00xx" },
	/* clear AVX512_VBMI, UMIP, PKU, OSPKE, AVX512_VNNI, AVX512_VPOPCNTDQ, LA57, RDPID, SGX_LC */
	{ 0x7, 0x0, 1, CPUID_ECX, "x0xx_xxxx_x0xx_xxx0_x0xx_0xxx_xxx0_000x" },
	/* clear AVX512_4VNNIW, AVX512_4FMAPS */
	{ 0x7, 0x0, 1, CPUID_EDX, "xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_00xx" },
	/* clear MPX BNDREGS state, MPX BNDCSR state, AVX-512 opmask state, AVX-512 ZMM_Hi256 state, AVX-512 Hi16_ZMM state, PKRU state */
	{ 0xd, 0x0, 1, CPUID_EAX, "xxxx_xxxx_xxxx_xxxx_xxxx_xx0x_0000_0xxx" },
	/* clear XSAVEC, XGETBV with ECX=1, XSAVES/XRSTORS */
	{ 0xd, 0x1, 1, CPUID_EAX, "xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_000x" },
	/* clear LZCNT, PREFETCHW */
	{ 0x80000001, 0x0, 0, CPUID_ECX, "xxxx_xxxx_xxxx_xxxx_xxxx_xxx0_xx0x_xxxx" },
	/* clear 1 GiB pages */
	{ 0x80000001, 0x0, 0, CPUID_EDX, "xxxx_x0xx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx" },
};
/* The standard leaves, as T2, T2S, T2CL and T2A all have them. */
static const struct static_cpuid t2_base_cpuid[] = {
	/* family 6, model 0x3f, stepping 2 (Haswell), as a T2 */
	{ 0x1, 0x0, 0, CPUID_EAX, "xxxx_0000_0000_0011_xx00_0110_1111_0010" },
	/* clear DTES64, MONITOR, DS-CPL, VMX, SMX, EIST, TM2, CNXT-ID, SDBG, xTPR, PDCM, DCA */
	{ 0x1, 0x0, 0, CPUID_ECX, "xxxx_xxxx_xxxx_x0xx_00xx_00x0_0000_00xx" },
	/* clear PSN, DS, ACPI, SS, TM, IA64, PBE; set MCE, MTRR */
	{ 0x1, 0x0, 0, CPUID_EDX, "000x_0xxx_x00x_x0xx_xxx1_xxxx_1xxx_xxxx" },
	/* clear SGX, HLE, RTM, RDT-M, MPX, RDT-A, AVX512F, AVX512DQ, RDSEED, ADX, AVX512_IFMA, PCOMMIT, CLFLUSHOPT, CLWB, Intel PT, AVX512PF, AVX512ER, AVX512CD, SHA, AVX512BW, AVX512VL; set ERMS */
	{ 0x7, 0x0, 1, CPUID_EBX, "0000_0000_000x_0000_00x0_0x1x_xxx0_x0xx" },
	/* clear AVX512_VBMI, UMIP, PKU, OSPKE, AVX512_VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512_VNNI, AVX512_BITALG, AVX512_VPOPCNTDQ, LA57, RDPID, SGX_LC */
	{ 0x7, 0x0, 1, CPUID_ECX, "x0xx_xxxx_x0xx_xxx0_x0x0_0000_x0x0_000x" },
	/* clear AVX512_4VNNIW, AVX512_4FMAPS, FSRM, AVX512_VP2INTERSECT */
	{ 0x7, 0x0, 1, CPUID_EDX, "xxxx_xxxx_xxxx_xxxx_xxxx_xxx0_xxx0_00xx" },
	/* clear MPX BNDREGS state, MPX BNDCSR state, AVX-512 opmask state, AVX-512 ZMM_Hi256 state, AVX-512 Hi16_ZMM state, PKRU state */
	{ 0xd, 0x0, 1, CPUID_EAX, "xxxx_xxxx_xxxx_xxxx_xxxx_xx0x_0000_0xxx" },
	/* clear XSAVEC, XGETBV with ECX=1, XSAVES/XRSTORS */
	{ 0xd, 0x1, 1, CPUID_EAX, "xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx_000x" },
};
/* The extended leaves, as T2 and T2S have them. */
static const struct static_cpuid t2_ext_cpuid[] = {
	/* clear PREFETCHW, MONITORX */
	{ 0x80000001, 0x0, 0, CPUID_ECX, "xx0x_xxxx_xxxx_xxxx_xxxx_xxx0_xxxx_xxxx" },
	/* clear 1 GiB pages */
	{ 0x80000001, 0x0, 0, CPUID_EDX, "xxxx_x0xx_xxxx_xxxx_xxxx_xxxx_xxxx_xxxx" },
	/* clear WBNOINVD */
	{ 0x80000008, 0x0, 0, CPUID_EBX, "xxxx_xxxx_xxxx_xxxx_xxxx_xx0x_xxxx_xxxx" },
};
static const struct static_msr t2s_msrs[] = {
	/* IA32_ARCH_CAPABILITIES: clear RDCL_NO, IBRS_ALL, SSB_NO, MDS_NO, TSX_CTRL, TAA_NO, MCU_CONTROL, DOITM, SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, bit 16, FB_CLEAR_CTRL, BHI_NO, XAPIC_DISABLE_STATUS, bit 22, OVERCLOCKING_STATUS, PBRSB_NO, bit 25, bit 28, bit 29, bit 30, bit 31, bit 32, bit 33, bit 34, bit 35, bit 36, bit 37, bit 38, bit 39, bit 40, bit 41, bit 42, bit 43, bit 44, bit 45, bit 46, bit 47, bit 48, bit 49, bit 50, bit 51, bit 52, bit 53, bit 54, bit 55, bit 56, bit 57, bit 58, bit 59, bit 60, bit 61, bit 62, bit 63; set RSBA, SKIP_L1DFL_VMENTRY, IF_PSCHANGE_MC_NO, MISC_PACKAGE_CTLS, ENERGY_FILTERING_CTL, FB_CLEAR, RRSBA, GDS_NO, RFDS_NO */
	{ 0x10a, "0000_0000_0000_0000_0000_0000_0000_0000_0000_1100_0000_1010_0000_1100_0100_1100" },
};
static const struct static_cpuid t2cl_ext_cpuid[] = {
	/* clear SSE4A, MisAlignSse, PREFETCHW, MONITORX */
	{ 0x80000001, 0x0, 0, CPUID_ECX, "xx0x_xxxx_xxxx_xxxx_xxxx_xxx0_00xx_xxxx" },
	/* clear MmxExt, MMX, FXSR, FFXSR, 1 GiB pages */
	{ 0x80000001, 0x0, 0, CPUID_EDX, "xxxx_x000_00xx_xxxx_xxxx_xxxx_xxxx_xxxx" },
	/* clear WBNOINVD */
	{ 0x80000008, 0x0, 0, CPUID_EBX, "xxxx_xxxx_xxxx_xxxx_xxxx_xx0x_xxxx_xxxx" },
};
static const struct static_msr t2cl_msrs[] = {
	/* IA32_ARCH_CAPABILITIES: clear MCU_CONTROL, MISC_PACKAGE_CTLS, ENERGY_FILTERING_CTL, DOITM, bit 16, FB_CLEAR_CTRL, BHI_NO, XAPIC_DISABLE_STATUS, bit 22, OVERCLOCKING_STATUS, bit 25, bit 29, bit 30, bit 31, bit 32, bit 33, bit 34, bit 35, bit 36, bit 37, bit 38, bit 39, bit 40, bit 41, bit 42, bit 43, bit 44, bit 45, bit 46, bit 47, bit 48, bit 49, bit 50, bit 51, bit 52, bit 53, bit 54, bit 55, bit 56, bit 57, bit 58, bit 59, bit 60, bit 61, bit 62, bit 63 */
	{ 0x10a, "0000_0000_0000_0000_0000_0000_0000_0000_000x_xx0x_0000_x0x0_xxx0_000x_xxxx_xxxx" },
};
static const struct static_cpuid t2a_ext_cpuid[] = {
	/* clear SVM, SSE4A, MisAlignSse, PREFETCHW, MONITORX */
	{ 0x80000001, 0x0, 0, CPUID_ECX, "xx0x_xxxx_xxxx_xxxx_xxxx_xxx0_00xx_x0xx" },
	/* clear MmxExt, FFXSR, 1 GiB pages */
	{ 0x80000001, 0x0, 0, CPUID_EDX, "xxxx_x00x_x0xx_xxxx_xxxx_xxxx_xxxx_xxxx" },
	/* clear CLZERO, WBNOINVD; set RstrFpErrPtrs, IBRS preferred, IBRS same mode, EFER.LMSLE unsupported */
	{ 0x80000008, 0x0, 0, CPUID_EBX, "xxxx_xxxx_xxx1_11xx_xxxx_xx0x_xxxx_x1x0" },
};

/* Leaf 1 EAX of the CPUs each template is for: extended family and model,
 * family, model, stepping (CPUID_FMS_MASK; the processor type and the
 * reserved bits do not count). */
#define CPUID_FMS_MASK 0x0fff0fffu
#define FMS_SKYLAKE 0x00050654u
#define FMS_CASCADE_LAKE 0x00050657u
#define FMS_ICE_LAKE 0x000606a6u
#define FMS_MILAN 0x00a00f11u

static const struct {
	const char *name;
	const char *vendor;
	uint32_t models[3];      /* 0: no more */
	const struct static_cpuid *cpuid[2];   /* the T2 family's: the shared base, its own */
	size_t ncpuid[2];
	const struct static_msr *msrs;
	size_t nmsrs;
} statics[] = {
	[CPU_TEMPLATE_C3] = { "C3", "GenuineIntel", { FMS_SKYLAKE, FMS_CASCADE_LAKE, FMS_ICE_LAKE },
			      { c3_cpuid }, { COUNT(c3_cpuid) }, NULL, 0 },
	[CPU_TEMPLATE_T2] = { "T2", "GenuineIntel", { FMS_SKYLAKE, FMS_CASCADE_LAKE, FMS_ICE_LAKE },
			      { t2_base_cpuid, t2_ext_cpuid }, { COUNT(t2_base_cpuid), COUNT(t2_ext_cpuid) },
			      NULL, 0 },
	[CPU_TEMPLATE_T2S] = { "T2S", "GenuineIntel", { FMS_SKYLAKE, FMS_CASCADE_LAKE },
			       { t2_base_cpuid, t2_ext_cpuid }, { COUNT(t2_base_cpuid), COUNT(t2_ext_cpuid) },
			       t2s_msrs, COUNT(t2s_msrs) },
	[CPU_TEMPLATE_T2CL] = { "T2CL", "GenuineIntel", { FMS_CASCADE_LAKE, FMS_ICE_LAKE },
				{ t2_base_cpuid, t2cl_ext_cpuid }, { COUNT(t2_base_cpuid), COUNT(t2cl_ext_cpuid) },
				t2cl_msrs, COUNT(t2cl_msrs) },
	[CPU_TEMPLATE_T2A] = { "T2A", "AuthenticAMD", { FMS_MILAN },
			       { t2_base_cpuid, t2a_ext_cpuid }, { COUNT(t2_base_cpuid), COUNT(t2a_ext_cpuid) },
			       NULL, 0 },
};

static bool is_static(enum cpu_template_kind kind)
{
	return kind >= CPU_TEMPLATE_C3 && kind <= CPU_TEMPLATE_T2A;
}

const char *cpu_template_name(enum cpu_template_kind kind)
{
	return is_static(kind) ? statics[kind].name : "None";
}

void cpu_template_static(enum cpu_template_kind kind, struct cpu_template *out)
{
	memset(out, 0, sizeof(*out));
	if (!is_static(kind))
		return;
	char err[160];
	for (size_t part = 0; part < 2; part++)
		for (size_t i = 0; i < statics[kind].ncpuid[part]; i++) {
			const struct static_cpuid *s = &statics[kind].cpuid[part][i];
			struct cpuid_modifier *m = &out->cpuid[out->ncpuid++];
			uint64_t f = 0, v = 0;
			/* The tables are ember's own: a unit test parses each one. */
			(void)cpu_bitmap_parse(s->bitmap, 32, &f, &v, err, sizeof(err));
			*m = (struct cpuid_modifier){ s->leaf, s->subleaf, s->flags, s->reg, (uint32_t)f,
						      (uint32_t)v };
		}
	for (size_t i = 0; i < statics[kind].nmsrs; i++) {
		struct msr_modifier *m = &out->msrs[out->nmsrs++];
		m->addr = statics[kind].msrs[i].addr;
		(void)cpu_bitmap_parse(statics[kind].msrs[i].bitmap, 64, &m->filter, &m->value, err, sizeof(err));
	}
}

static const struct kvm_cpuid_entry2 *find_entry(const struct kvm_cpuid2 *c, uint32_t leaf, uint32_t subleaf)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == leaf && c->entries[i].index == subleaf)
			return &c->entries[i];
	return NULL;
}

int cpu_template_check_host(enum cpu_template_kind kind, const struct kvm_cpuid2 *host, char *err,
			    size_t errlen)
{
	if (!is_static(kind))
		return 0;
	const struct kvm_cpuid_entry2 *l0 = find_entry(host, 0, 0), *l1 = find_entry(host, 1, 0);
	char vendor[13] = "";
	if (l0) {
		memcpy(vendor, &l0->ebx, 4);
		memcpy(vendor + 4, &l0->edx, 4);
		memcpy(vendor + 8, &l0->ecx, 4);
	}
	if (strcmp(vendor, statics[kind].vendor) != 0)
		return fail(err, errlen, "Failed to get CPU template: CPU vendor mismatched between actual CPU and "
			    "CPU template.");
	uint32_t fms = l1 ? l1->eax & CPUID_FMS_MASK : 0;
	for (size_t i = 0; i < COUNT(statics[kind].models) && statics[kind].models[i]; i++)
		if (fms == statics[kind].models[i]) {
			if (kind == CPU_TEMPLATE_C3 && fms == FMS_SKYLAKE)
				log_warn("C3 on Skylake: a CPU that does not enumerate FBSDP_NO, PSDP_NO and "
					 "SBDR_SSDP_NO in IA32_ARCH_CAPABILITIES leaves the guest kernel without "
					 "its mitigation for MMIO stale data.");
			return 0;
		}
	return fail(err, errlen, "Failed to get CPU template: The current CPU model is not permitted to apply "
		    "the CPU template.");
}

/* ---- text forms ------------------------------------------------------ */

int cpu_bitmap_parse(const char *s, unsigned bits, uint64_t *filter, uint64_t *value, char *err,
		     size_t errlen)
{
	const char *p = strncmp(s, "0b", 2) == 0 ? s + 2 : s;
	uint64_t f = 0, v = 0;
	unsigned i = 0;
	for (size_t k = strlen(p); k-- > 0;) {
		/* As Firecracker: checked before each character, separators too. */
		if (i == bits)
			return fail(err, errlen, "Failed to parse string [%s] as a bitmap - string is too long", s);
		char c = p[k];
		if (c == '_')
			continue;
		if (c == '0' || c == '1') {
			f |= 1ULL << i;
			if (c == '1')
				v |= 1ULL << i;
		} else if (c != 'x') {
			return fail(err, errlen, "Failed to parse string [%s] as a bitmap - unknown character: %u", s,
				    (unsigned char)c);
		}
		i++;
	}
	*filter = f;
	*value = v;
	return 0;
}

/* Why an unsigned integer does not parse, in the words of Rust's
 * ParseIntError (its kind, and its Display text). */
enum int_error { INT_OK, INT_EMPTY, INT_INVALID, INT_OVERFLOW };
static const char *const int_error_kind[] = { "", "Empty", "InvalidDigit", "PosOverflow" };
static const char *const int_error_text[] = {
	"", "cannot parse integer from empty string", "invalid digit found in string",
	"number too large to fit in target type",
};

/* Digits in base (an optional leading '+', as Rust's from_str_radix). */
static enum int_error parse_uint(const char *p, unsigned base, uint64_t max, uint64_t *out)
{
	if (!*p)
		return INT_EMPTY;
	if (*p == '+' && p[1])
		p++;
	uint64_t n = 0;
	bool over = false;
	for (; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'z')
			d = (unsigned)(*p - 'a') + 10;
		else if (*p >= 'A' && *p <= 'Z')
			d = (unsigned)(*p - 'A') + 10;
		else
			return INT_INVALID;
		if (d >= base)
			return INT_INVALID;
		if (n > (max - d) / base)
			over = true;
		else
			n = n * base + d;
	}
	if (over)
		return INT_OVERFLOW;
	*out = n;
	return INT_OK;
}

int cpu_number_parse(const char *s, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
	unsigned base = strncmp(s, "0b", 2) == 0 ? 2 : strncmp(s, "0x", 2) == 0 ? 16 : 0;
	if (!base)
		return fail(err, errlen, "No supported number system prefix found in value [%s]. Make sure to prefix "
			    "the number with '0x' for hexadecimal numbers or '0b' for binary numbers.", s);
	enum int_error e = parse_uint(s + 2, base, max, out);
	if (e)
		return fail(err, errlen, "Failed to parse string [%s] as a number for CPU template - "
			    "ParseIntError { kind: %s }", s, int_error_kind[e]);
	return 0;
}

int cpu_kvm_cap_parse(const char *s, struct kvm_cap_modifier *out, char *err, size_t errlen)
{
	bool remove = s[0] == '!';
	uint64_t n = 0;
	enum int_error e = parse_uint(s + remove, 10, UINT32_MAX, &n);
	if (e)
		return fail(err, errlen, "Failed to parse string [%s] as a kvm capability - can not convert to "
			    "numeric: %s", s, int_error_text[e]);
	*out = (struct kvm_cap_modifier){ (uint32_t)n, remove };
	return 0;
}

/* ---- applying -------------------------------------------------------- */

int cpu_template_apply_cpuid(const struct cpu_template *t, struct kvm_cpuid2 *c, char *err, size_t errlen)
{
	for (unsigned i = 0; i < t->ncpuid; i++) {
		const struct cpuid_modifier *m = &t->cpuid[i];
		struct kvm_cpuid_entry2 *e = (struct kvm_cpuid_entry2 *)find_entry(c, m->leaf, m->subleaf);
		if (!e)
			return fail(err, errlen, "System configuration error: Failed to create guest config: Template "
				    "changes a CPUID entry not supported by KVM: Leaf: %x, Subleaf: %x", m->leaf,
				    m->subleaf);
		e->flags = m->flags;
		uint32_t *regs[] = { &e->eax, &e->ebx, &e->ecx, &e->edx };
		if (m->reg != CPUID_REG_NONE)
			*regs[m->reg] = (uint32_t)cpu_modifier_apply(*regs[m->reg], m->filter, m->value);
	}
	return 0;
}

int cpu_template_check_caps(const struct cpu_template *t, int kvm_fd, char *err, size_t errlen)
{
	for (unsigned i = 0; i < t->ncaps; i++) {
		const struct kvm_cap_modifier *c = &t->caps[i];
		/* "!N" drops N from the list to check; ember's own required
		 * capabilities are checked when the VM is made (vm.c). */
		bool dropped = false;
		for (unsigned j = i + 1; j < t->ncaps; j++)
			if (t->caps[j].cap == c->cap)
				dropped = t->caps[j].remove;
		if (!c->remove && !dropped && ioctl(kvm_fd, KVM_CHECK_EXTENSION, c->cap) <= 0)
			return fail(err, errlen, "Kvm error: Missing KVM capabilities: %#x", c->cap);
	}
	return 0;
}

/* ---- a restore's features against the host's -------------------------- */

/* The registers that announce features, and the bits in them that ember
 * or KVM set whatever the host (so a host "lacking" them lacks nothing). */
static const struct feature_reg {
	uint32_t leaf, subleaf;
	enum cpuid_reg reg;
	uint32_t ignore;
	const char *const names[32];
} feature_regs[] = {
	{ 0x1, 0, CPUID_ECX, 1u << 27 | 1u << 31, {
		"sse3", "pclmulqdq", "dtes64", "monitor", "ds_cpl", "vmx", "smx", "est", "tm2", "ssse3",
		"cid", "sdbg", "fma", "cx16", "xtpr", "pdcm", NULL, "pcid", "dca", "sse4_1", "sse4_2",
		"x2apic", "movbe", "popcnt", "tsc_deadline_timer", "aes", "xsave", NULL, "avx", "f16c",
		"rdrand", NULL } },
	{ 0x1, 0, CPUID_EDX, 1u << 28, {
		"fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", NULL, "sep", "mtrr",
		"pge", "mca", "cmov", "pat", "pse36", "pn", "clflush", NULL, "dts", "acpi", "mmx", "fxsr",
		"sse", "sse2", "ss", NULL, "tm", "ia64", "pbe" } },
	{ 0x7, 0, CPUID_EBX, 0, {
		"fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle", "avx2", NULL, "smep", "bmi2", "erms",
		"invpcid", "rtm", "cqm", "fpu_csds", "mpx", "rdt_a", "avx512f", "avx512dq", "rdseed", "adx",
		"smap", "avx512ifma", "pcommit", "clflushopt", "clwb", "intel_pt", "avx512pf", "avx512er",
		"avx512cd", "sha_ni", "avx512bw", "avx512vl" } },
	{ 0x7, 0, CPUID_ECX, 1u << 4, {
		"prefetchwt1", "avx512vbmi", "umip", "pku", NULL, "waitpkg", "avx512_vbmi2", "shstk",
		"gfni", "vaes", "vpclmulqdq", "avx512_vnni", "avx512_bitalg", "tme", "avx512_vpopcntdq",
		NULL, "la57", NULL, NULL, NULL, NULL, NULL, "rdpid", "kl", "bus_lock_detect", "cldemote",
		NULL, "movdiri", "movdir64b", "enqcmd", "sgx_lc", "pks" } },
	{ 0x7, 0, CPUID_EDX, 0, {
		NULL, NULL, "avx512_4vnniw", "avx512_4fmaps", "fsrm", "uintr", NULL, NULL,
		"avx512_vp2intersect", NULL, "md_clear", NULL, NULL, NULL, "serialize", NULL, "tsxldtrk",
		NULL, "pconfig", "arch_lbr", "ibt", NULL, "amx_bf16", "avx512_fp16", "amx_tile",
		"amx_int8", "spec_ctrl", "intel_stibp", "flush_l1d", "arch_capabilities", NULL,
		"spec_ctrl_ssbd" } },
	{ 0x7, 1, CPUID_EAX, 0, { [4] = "avx_vnni", [5] = "avx512_bf16", [10] = "fzrm", [11] = "fsrs",
		[12] = "fsrc" } },
	{ 0xd, 1, CPUID_EAX, 0, { "xsaveopt", "xsavec", "xgetbv1", "xsaves" } },
	{ 0x80000001, 0, CPUID_ECX, 0, {
		"lahf_lm", "cmp_legacy", "svm", "extapic", "cr8_legacy", "abm", "sse4a", "misalignsse",
		"3dnowprefetch", "osvw", "ibs", "xop", "skinit", "wdt", NULL, "lwp", "fma4", "tce", NULL,
		"nodeid_msr", NULL, "tbm", "topoext", "perfctr_core", "perfctr_nb", NULL, "bpext",
		"ptsc", "perfctr_llc", "mwaitx" } },
	{ 0x80000001, 0, CPUID_EDX, 0, {
		[11] = "syscall", [20] = "nx", [22] = "mmxext", [25] = "fxsr_opt", [26] = "pdpe1gb",
		[27] = "rdtscp", [29] = "lm", [30] = "3dnowext", [31] = "3dnow" } },
};

static const char *const reg_names[] = { "eax", "ebx", "ecx", "edx" };

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, enum cpuid_reg r)
{
	return r == CPUID_EAX ? e->eax : r == CPUID_EBX ? e->ebx : r == CPUID_ECX ? e->ecx : e->edx;
}

static const struct kvm_cpuid_entry2 *find_in(const struct kvm_cpuid_entry2 *e, unsigned n, uint32_t leaf,
					      uint32_t subleaf)
{
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == leaf && e[i].index == subleaf)
			return &e[i];
	return NULL;
}

unsigned cpu_cpuid_missing(const struct kvm_cpuid_entry2 *saved, unsigned nsaved,
			   const struct kvm_cpuid_entry2 *source, unsigned nsource,
			   const struct kvm_cpuid2 *host, char *out, size_t outlen)
{
	unsigned n = 0;
	size_t off = 0;
	if (outlen)
		out[0] = 0;
	for (size_t f = 0; f < COUNT(feature_regs); f++) {
		const struct feature_reg *fr = &feature_regs[f];
		const struct kvm_cpuid_entry2 *s = find_in(saved, nsaved, fr->leaf, fr->subleaf);
		const struct kvm_cpuid_entry2 *src = find_in(source, nsource, fr->leaf, fr->subleaf);
		if (!s || !src)
			continue;
		const struct kvm_cpuid_entry2 *h = find_in(host->entries, host->nent, fr->leaf, fr->subleaf);
		uint32_t lack = reg_of(s, fr->reg) & reg_of(src, fr->reg) & ~(h ? reg_of(h, fr->reg) : 0) &
				~fr->ignore;
		for (unsigned bit = 0; bit < 32; bit++) {
			if (!(lack & (1u << bit)))
				continue;
			int w;
			if (fr->names[bit])
				w = snprintf(out + off, outlen - off, "%s%s", n ? ", " : "", fr->names[bit]);
			else
				w = snprintf(out + off, outlen - off, "%sleaf %#x.%u %s bit %u", n ? ", " : "",
					     fr->leaf, fr->subleaf, reg_names[fr->reg], bit);
			if (w > 0 && off + (size_t)w < outlen)
				off += (size_t)w;
			n++;
		}
	}
	return n;
}

/* ---- test hook -------------------------------------------------------- */

#define HOST_OVERRIDE_MAX 16
static struct {
	unsigned n;
	struct {
		uint32_t leaf, subleaf;
		enum cpuid_reg reg;
		bool clear;           /* clear value's bits, else set the register to value */
		uint32_t value;
	} e[HOST_OVERRIDE_MAX];
} host_override;

int cpu_host_override_set(const char *spec)
{
	char buf[1024];
	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	host_override.n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned leaf, subleaf, value;
		char reg[4], op[3];
		int used = 0;
		if (host_override.n == HOST_OVERRIDE_MAX ||
		    sscanf(tok, "%x.%x:%3[a-z]%2[=&~]%x%n", &leaf, &subleaf, reg, op, &value, &used) != 5 ||
		    tok[used] || (strcmp(op, "=") && strcmp(op, "&~")))
			return -EINVAL;
		int r = -1;
		for (int i = 0; i < 4; i++)
			if (strcmp(reg, reg_names[i]) == 0)
				r = i;
		if (r < 0)
			return -EINVAL;
		unsigned k = host_override.n++;
		host_override.e[k].leaf = leaf;
		host_override.e[k].subleaf = subleaf;
		host_override.e[k].reg = (enum cpuid_reg)r;
		host_override.e[k].clear = op[0] == '&';
		host_override.e[k].value = value;
	}
	return 0;
}

void cpu_host_override_apply(struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; i < host_override.n; i++) {
		struct kvm_cpuid_entry2 *e = (struct kvm_cpuid_entry2 *)find_entry(c, host_override.e[i].leaf,
										    host_override.e[i].subleaf);
		if (!e)
			continue;
		uint32_t *regs[] = { &e->eax, &e->ebx, &e->ecx, &e->edx };
		uint32_t *r = regs[host_override.e[i].reg];
		*r = host_override.e[i].clear ? *r & ~host_override.e[i].value : host_override.e[i].value;
	}
}
