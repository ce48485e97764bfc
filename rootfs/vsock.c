/* ember-vsock: a guest-side AF_VSOCK tool for checking the vsock device.
 *
 *   ember-vsock listen PORT        accept one connection on PORT and echo
 *                                  everything back until the peer closes
 *   ember-vsock send CID PORT MSG  connect, send MSG, close the sending
 *                                  side, print what comes back
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: ember-vsock listen PORT | send CID PORT MESSAGE\n");
	return 2;
}

static int echo(int fd)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			return n < 0;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w <= 0)
				return 1;
			off += w;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("socket(AF_VSOCK)");
		return 1;
	}
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK };
	if (strcmp(argv[1], "listen") == 0) {
		addr.svm_cid = VMADDR_CID_ANY;
		addr.svm_port = (unsigned)atoi(argv[2]);
		if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
			perror("bind/listen");
			return 1;
		}
		printf("ember-vsock: listening on %u\n", addr.svm_port);
		fflush(stdout);
		int c = accept(fd, NULL, NULL);
		if (c < 0) {
			perror("accept");
			return 1;
		}
		int r = echo(c);
		close(c);
		return r;
	}
	if (strcmp(argv[1], "send") == 0 && argc == 5) {
		addr.svm_cid = (unsigned)atoi(argv[2]);
		addr.svm_port = (unsigned)atoi(argv[3]);
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
			perror("connect");
			return 1;
		}
		size_t len = strlen(argv[4]);
		if (write(fd, argv[4], len) != (ssize_t)len) {
			perror("write");
			return 1;
		}
		shutdown(fd, SHUT_WR);
		char buf[4096];
		ssize_t n;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, (size_t)n, stdout);
		putchar('\n');
		return n < 0;
	}
	return usage();
}
