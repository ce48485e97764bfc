#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "boot.h"

/* Added on kvm_pvm hosts, where the guest runs much of its kernel through
 * the host's instruction emulator:
 *   noxsave          XSAVE/XRSTOR are beyond that emulator; use FXSAVE
 *   clearcpuid=smap,erms,fsrm
 *                    no CLAC/STAC around every user access (each would
 *                    exit to ember's emulation fallback); and string
 *                    copies and page clears by 8-byte rep movsq/stosq,
 *                    not byte by byte: the emulator's cost is per
 *                    iteration
 *   rodata=off       skip write-protecting and freeing the kernel image
 *                    gaps: seconds of emulated page-table work at boot (a
 *                    hardening trade-off, made on such hosts only)
 *   percpu_alloc=page
 *                    the first per-CPU chunk from 4 KiB pages rather than
 *                    a 2 MiB block the kernel clears and mostly frees
 *                    again: about 1 s of emulated boot */
static const char *const pvm_params[] = { "noxsave", "clearcpuid=smap,erms,fsrm", "rodata=off",
					  "percpu_alloc=page", NULL };

bool boot_cmdline_has(const char *cmdline, const char *param)
{
	size_t klen = strcspn(param, "=");
	for (const char *p = cmdline; *p;) {
		p += strspn(p, " ");
		size_t len = strcspn(p, " ");
		if (len >= klen && strncmp(p, param, klen) == 0 && (len == klen || p[klen] == '='))
			return true;
		p += len;
	}
	return false;
}

/* Start of the "--" word that ends the kernel's parameters, or NULL. */
static char *find_separator(char *cmdline)
{
	for (char *p = cmdline; *p;) {
		p += strspn(p, " ");
		size_t len = strcspn(p, " ");
		if (len == 2 && p[0] == '-' && p[1] == '-')
			return p;
		p += len;
	}
	return NULL;
}

int boot_cmdline_append(char *cmdline, size_t len, const char *param)
{
	size_t n = strlen(cmdline), plen = strlen(param);
	if (n + plen + 2 > len)
		return -E2BIG;
	/* Kernel parameters go before "--": what follows it is init's. */
	char *sep = find_separator(cmdline);
	if (!sep) {
		if (n)
			cmdline[n++] = ' ';
		memcpy(cmdline + n, param, plen + 1);
		return 0;
	}
	size_t at = (size_t)(sep - cmdline);
	memmove(cmdline + at + plen + 1, cmdline + at, n - at + 1);
	memcpy(cmdline + at, param, plen);
	cmdline[at + plen] = ' ';
	return 0;
}

int boot_cmdline_build(const char *args, bool pvm_host, char *out, size_t len, char *added,
		       size_t added_len)
{
	size_t n = strlen(args);
	added[0] = 0;
	if (n + 1 > len)
		return -E2BIG;
	memcpy(out, args, n + 1);
	if (!pvm_host)
		return 0;
	for (const char *const *p = pvm_params; *p; p++) {
		if (boot_cmdline_has(args, *p))
			continue;
		if (boot_cmdline_append(out, len, *p))
			return -E2BIG;
		size_t a = strlen(added);
		snprintf(added + a, added_len - a, " %s", *p);
	}
	return 0;
}

int boot_cmdline_add_mmio(char *cmdline, size_t len, const struct boot_mmio_dev *dev)
{
	char word[80];
	snprintf(word, sizeof(word), "virtio_mmio.device=%lluK@0x%llx:%u", (unsigned long long)(dev->size >> 10),
		 (unsigned long long)dev->base, dev->irq);
	return boot_cmdline_append(cmdline, len, word);
}
