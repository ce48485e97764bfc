/* Section tags of the snapshot state file: four letters, so a hex dump
 * reads. Shared by the writer (snapshot.c) and the decoder (decode.c). */
#ifndef EMBER_SNAPSHOT_TAGS_H
#define EMBER_SNAPSHOT_TAGS_H

#define TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define TAG_CONFIG TAG('C', 'O', 'N', 'F')
#define TAG_MEMORY TAG('M', 'E', 'M', ' ')
#define TAG_VM TAG('K', 'V', 'M', ' ')
#define TAG_VCPU TAG('V', 'C', 'P', 'U')
#define TAG_SERIAL TAG('U', 'A', 'R', 'T')
#define TAG_I8042 TAG('I', '8', '0', '4')
#define TAG_VIRTIO TAG('V', 'I', 'O', ' ')
#define TAG_MMDS TAG('M', 'M', 'D', 'S') /* the metadata store's JSON, if it has one */
/* A vCPU's CPUID, after its VCPU section (older files have none). */
#define TAG_CPUID TAG('C', 'P', 'I', 'D')
/* The CPUID KVM supported on the host that took the snapshot (once). */
#define TAG_HOST_CPUID TAG('H', 'C', 'P', 'U')

#define SNAP_PAGE 4096ULL

#endif
