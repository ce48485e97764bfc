#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>

#include "action.h"
#include "hostfile.h"

void config_defaults(struct vmm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->machine.vcpu_count = 1;
	cfg->machine.mem_size_mib = 128;
}

static uint64_t host_mem_mib(void)
{
	struct sysinfo si;
	if (sysinfo(&si) != 0)
		return UINT64_MAX;
	return (uint64_t)si.totalram * si.mem_unit >> 20;
}

int config_machine_apply(struct machine_config *cur, const struct machine_config *v,
			 unsigned fields, bool patch, char *err, size_t errlen)
{
	struct machine_config m = *cur;
	if (!patch) {
		if (!(fields & MACHINE_F_VCPU_COUNT)) {
			snprintf(err, errlen, "machine-config.vcpu_count: missing");
			return -EINVAL;
		}
		if (!(fields & MACHINE_F_MEM_SIZE)) {
			snprintf(err, errlen, "machine-config.mem_size_mib: missing");
			return -EINVAL;
		}
		memset(&m, 0, sizeof(m));
	}
	if (fields & MACHINE_F_VCPU_COUNT)
		m.vcpu_count = v->vcpu_count;
	if (fields & MACHINE_F_MEM_SIZE)
		m.mem_size_mib = v->mem_size_mib;
	if (fields & MACHINE_F_SMT)
		m.smt = v->smt;
	if (fields & MACHINE_F_TRACK_DIRTY)
		m.track_dirty_pages = v->track_dirty_pages;
	if (fields & MACHINE_F_HUGE_PAGES)
		m.huge_pages = v->huge_pages;
	if (fields & MACHINE_F_EMBER_KSM)
		m.ember_ksm = v->ember_ksm;
	if (fields & MACHINE_F_EMBER_MEM) {
		m.mem_kind = v->mem_kind;
		memcpy(m.mem_path, v->mem_path, sizeof(m.mem_path));
	}
	if (fields & MACHINE_F_EMBER_NUMA) {
		m.has_numa_node = v->has_numa_node;
		m.numa_node = v->numa_node;
	}
	/* As Firecracker: a PUT without cpu_template keeps the template
	 * (static or custom); "None" drops it. */
	m.cpu_template = (fields & MACHINE_F_CPU_TEMPLATE) ? v->cpu_template : cur->cpu_template;

	if (m.smt && m.vcpu_count > 1 && (m.vcpu_count & 1)) {
		snprintf(err, errlen, "machine-config.vcpu_count: must be 1 or even when smt is enabled");
		return -EINVAL;
	}
	/* Huge pages (either kind) need a whole number of 2 MiB pages. */
	if (m.huge_pages != MEM_PAGES_NONE && (m.mem_size_mib % 2)) {
		snprintf(err, errlen, "The memory size (MiB) is either 0, or not a multiple of the configured page size. "
			 "(machine-config.mem_size_mib: %llu MiB with huge_pages \"%s\")",
			 (unsigned long long)m.mem_size_mib, config_huge_pages_name(m.huge_pages));
		return -EINVAL;
	}
	/* KSM passes hugetlbfs memory by without a word: refuse to pretend. */
	if (m.ember_ksm && m.huge_pages == MEM_PAGES_2M) {
		snprintf(err, errlen, "machine-config.ember_ksm: KSM does not merge huge_pages \"2M\" (hugetlbfs) memory");
		return -EINVAL;
	}
	int ret = config_check_backing(&m, err, errlen);
	if (ret)
		return ret;
	*cur = m;
	return 0;
}

int config_check_backing(const struct machine_config *m, char *err, size_t errlen)
{
	/* KSM scans private anonymous memory only. */
	if (m->ember_ksm && m->mem_kind != MEM_KIND_ANON) {
		snprintf(err, errlen, "machine-config.ember_ksm: KSM merges only anonymous guest memory, not "
			 "ember_mem_backend %s", m->mem_kind == MEM_KIND_MEMFD ? "\"memfd\"" : "file");
		return -EINVAL;
	}
	/* A regular file's page cache has 4 KiB pages only. */
	if (m->mem_kind == MEM_KIND_FILE && m->huge_pages != MEM_PAGES_NONE) {
		snprintf(err, errlen, "machine-config.ember_mem_backend: a host file cannot hold huge_pages \"%s\" "
			 "(\"memfd\" can: it takes 2M pages from hugetlbfs)", config_huge_pages_name(m->huge_pages));
		return -EINVAL;
	}
	if (m->has_numa_node) {
		int max = mem_numa_max_node();
		if (m->numa_node > MEM_NUMA_MAX || (max >= 0 && m->numa_node > (unsigned)max)) {
			if (max >= 0)
				snprintf(err, errlen, "machine-config.ember_numa_node: %u: the host's nodes are 0 to %d",
					 m->numa_node, max);
			else
				snprintf(err, errlen, "machine-config.ember_numa_node: %u: at most %d", m->numa_node,
					 MEM_NUMA_MAX);
			return -EINVAL;
		}
	}
	return 0;
}

int config_check_mem_file(const struct machine_config *m, char *err, size_t errlen)
{
	if (m->mem_kind != MEM_KIND_FILE)
		return 0;
	/* Missing is fine (it is created at start); anything else must be
	 * a regular file that is empty or holds the guest's memory. */
	struct stat st;
	if (stat(m->mem_path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			snprintf(err, errlen, "machine-config.ember_mem_backend file %.200s: is %s, not a regular file",
				 m->mem_path, hostfile_kind_name(st.st_mode));
			return -EINVAL;
		}
		if (st.st_size != 0 && (uint64_t)st.st_size < m->mem_size_mib << 20) {
			snprintf(err, errlen, "machine-config.ember_mem_backend file %.200s: %lld bytes, shorter than the "
				 "guest's %llu MiB (an empty file is sized to the guest)", m->mem_path,
				 (long long)st.st_size, (unsigned long long)m->mem_size_mib);
			return -EINVAL;
		}
	} else if (errno != ENOENT) {
		int e = errno;
		snprintf(err, errlen, "machine-config.ember_mem_backend file %.200s: %s", m->mem_path, strerror(e));
		return -e;
	}
	return 0;
}

const char *config_huge_pages_name(enum mem_pages p)
{
	return p == MEM_PAGES_2M ? "2M" : p == MEM_PAGES_TRANSPARENT ? "Transparent" : "None";
}

int config_check_memory(const struct machine_config *m, char *err, size_t errlen)
{
	uint64_t host = host_mem_mib();
	if (m->mem_size_mib <= host)
		return 0;
	/* Firecracker's text, with its C library's words for ENOMEM. */
	snprintf(err, errlen, "Invalid Memory Configuration: Cannot create mmap region: Out of memory (os error %d) "
		 "(machine-config.mem_size_mib: %llu MiB is more than the host's %llu MiB)", ENOMEM,
		 (unsigned long long)m->mem_size_mib, (unsigned long long)host);
	return -ENOMEM;
}

int config_pmem_root(const struct vmm_config *cfg)
{
	for (unsigned i = 0; i < cfg->npmems; i++)
		if (cfg->pmems[i].root_device)
			return (int)i;
	return -1;
}

int config_pmem_put(struct vmm_config *cfg, const struct pmem_config *p, char *err, size_t errlen)
{
	if (p->root_device) {
		for (unsigned i = 0; i < cfg->ndrives; i++)
			if (cfg->drives[i].is_root_device) {
				snprintf(err, errlen, "Attempt to add pmem as a root device while the root device "
					 "defined as a block device");
				return -EINVAL;
			}
	}
	unsigned i;
	for (i = 0; i < cfg->npmems; i++)
		if (strcmp(cfg->pmems[i].id, p->id) == 0)
			break;
	int root = config_pmem_root(cfg);
	if (p->root_device && root >= 0 && (unsigned)root != i) {
		snprintf(err, errlen, "A root pmem device already exist");
		return -EINVAL;
	}
	if (i == CONFIG_MAX_PMEMS) {
		snprintf(err, errlen, "pmem: at most %d devices", CONFIG_MAX_PMEMS);
		return -EINVAL;
	}
	cfg->pmems[i] = *p;
	if (i == cfg->npmems)
		cfg->npmems++;
	return 0;
}
