/* Where a migration goes or comes from: "unix:PATH" (a Unix socket path)
 * or "tcp:HOST:PORT" (HOST an IPv4 address or an IPv6 one in brackets;
 * numbers only, so no name lookup runs inside ember). */
#ifndef EMBER_MIGRATION_ADDRESS_H
#define EMBER_MIGRATION_ADDRESS_H

#include <stddef.h>
#include <sys/socket.h>

struct mig_address {
	struct sockaddr_storage sa;
	socklen_t len;
	int family;          /* AF_UNIX, AF_INET or AF_INET6 */
};

/* Parse s into a. Returns 0, or -EINVAL with the reason in err. */
int mig_address_parse(const char *s, struct mig_address *a, char *err, size_t errlen);

#endif
