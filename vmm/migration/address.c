/* Migration addresses (address.h). */
#include "address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int parse_port(const char *p, unsigned *port)
{
	if (!*p || strlen(p) > 5)
		return -EINVAL;
	unsigned v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (!v || v > 65535)
		return -EINVAL;
	*port = v;
	return 0;
}

static int parse_tcp(const char *hp, struct mig_address *a, char *err, size_t errlen)
{
	char host[64];
	const char *colon;
	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');
		if (!close || close[1] != ':' || (size_t)(close - hp - 1) >= sizeof(host))
			goto bad;
		memcpy(host, hp + 1, (size_t)(close - hp - 1));
		host[close - hp - 1] = 0;
		colon = close + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || (size_t)(colon - hp) >= sizeof(host))
			goto bad;
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = 0;
	}
	unsigned port;
	if (parse_port(colon + 1, &port))
		goto bad;
	memset(a, 0, sizeof(*a));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a->sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;
	if (hp[0] != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		a->len = sizeof(*in4);
	} else if (hp[0] == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		a->len = sizeof(*in6);
	} else {
		goto bad;
	}
	a->family = a->sa.ss_family;
	return 0;
bad:
	snprintf(err, errlen, "tcp:%.100s is not tcp:IPV4:PORT or tcp:[IPV6]:PORT (addresses as numbers, "
		 "a port from 1 to 65535)", hp);
	return -EINVAL;
}

int mig_address_parse(const char *s, struct mig_address *a, char *err, size_t errlen)
{
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
		size_t n = strlen(s + 5);
		if (!n || n >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "unix:PATH needs a path of 1 to %zu bytes (got %zu)",
				 sizeof(un->sun_path) - 1, n);
			return -EINVAL;
		}
		memset(a, 0, sizeof(*a));
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s + 5, n);
		a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		a->family = AF_UNIX;
		return 0;
	}
	if (strncmp(s, "tcp:", 4) == 0)
		return parse_tcp(s + 4, a, err, errlen);
	snprintf(err, errlen, "migration address \"%.100s\" is neither unix:PATH nor tcp:HOST:PORT", s);
	return -EINVAL;
}
