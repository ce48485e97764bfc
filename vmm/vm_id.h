/* The VM identifier rule shared by ember --id and ember-jailer --id
 * (Firecracker's): 1 to 64 ASCII letters, digits and '-'. It names
 * directories and cgroups, so nothing else may pass. */
#ifndef EMBER_VM_ID_H
#define EMBER_VM_ID_H

#include <stdbool.h>
#include <string.h>

static inline bool vm_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

#endif
