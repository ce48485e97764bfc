/* ember's version, and the Firecracker API level it speaks. */
#ifndef EMBER_VERSION_H
#define EMBER_VERSION_H

#define EMBER_VERSION "0.1.0"
/* GET /version's "firecracker_version": clients gate features on it, so
 * it names the Firecracker API (ref: firecracker-api.yaml) ember follows. */
#define EMBER_FIRECRACKER_API_VERSION "1.17.0"

#endif
