/* ember-agent: the guest side of ember's function runtime.
 *
 *   ember-agent [--init CMD] [--stream] PORT HANDLER
 *   ember-agent --scratch DEV [--stream] PORT
 *
 * Runs CMD once with /bin/sh -c (the function's initialisation: it must
 * exit 0), then listens on vsock PORT and prints "ember-agent: ready".
 * Every connection first gets a READY frame, then is served one INVOKE
 * at a time (the protocol: api/fn/agent_proto.h): HANDLER runs with
 * /bin/sh -c in a process group of its own, the request body on its
 * stdin; the RESULT carries its stdout, exit status and duration. A
 * handler that runs past the invocation's timeout, or writes more than
 * AGENT_MAX_BODY, is killed with its whole group. When the handler exits,
 * whatever else it left in its group is killed too, so an invocation
 * never leaks processes into the next. A frame the agent cannot accept
 * gets an ERROR frame and the connection is closed; the agent goes on
 * listening for the next one.
 *
 * With --scratch, the function's definition comes from DEV, ember-fn's
 * scratch drive (an ext4 holding fn/handler, fn/init, fn/env with
 * NAME=VALUE\0 entries, and the empty upper/, work/ and root/), and the
 * function runs in a root of its own: an overlay of the read-only root
 * (below) and DEV's upper/ (above) mounted on DEV's root/, with /proc,
 * /sys, /dev and /tmp bound into it. The agent chroots there and sets
 * the env before it runs CMD, so CMD and every HANDLER write only DEV.
 *
 * With --stream, HANDLER is started once, before the agent reports ready
 * (so a snapshot taken then holds it initialised), and every request goes
 * to that one process in the stream framing (agent_proto.h): the agent
 * waits for its "EFS1 ready" line first. A handler past the timeout, one
 * answering more than AGENT_MAX_BODY, one that ends, and one that breaks
 * the framing is killed with its group, the request is answered (timeout,
 * too_large, died), and the agent starts the handler again after the
 * answer; the next request waits for the new one's ready line (one that
 * times out waiting is answered timeout and leaves it starting).
 */
#include "../api/fn/agent_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *handler;
static bool stream;

static void say(const char *fmt, const char *arg)
{
	printf("ember-agent: ");
	printf(fmt, arg);
	putchar('\n');
	fflush(stdout);
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_frame(int fd, enum agent_type type, uint32_t id, const uint8_t *fixed, size_t fixed_len,
		      const void *data, size_t data_len)
{
	uint8_t header[AGENT_HEADER_LEN];
	agent_header_encode(header, type, id, (uint32_t)(fixed_len + data_len));
	if (write_all(fd, header, sizeof(header)) < 0 || write_all(fd, fixed, fixed_len) < 0)
		return -1;
	return data_len ? write_all(fd, data, data_len) : 0;
}

static void send_error(int fd, const char *why)
{
	send_frame(fd, AGENT_ERROR, 0, (const uint8_t *)why, strnlen(why, AGENT_MAX_ERROR), NULL, 0);
}

/* What one run of the handler gave. */
struct run {
	enum agent_status status;
	int32_t code;
	uint32_t duration_us;
	uint8_t *out;
	size_t out_len;
};

static pid_t spawn(int in_fd, int out_fd)
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		dup2(in_fd, 0);
		dup2(out_fd, 1);
		execl("/bin/sh", "sh", "-c", handler, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		setpgid(pid, pid); /* (also here: the child may not have run yet) */
	return pid;
}

/* Run the handler on one body. Feeds stdin and drains stdout together
 * (either may block the handler), watching the child through a pidfd so
 * its exit ends the run even while something it left holds stdout. */
static void run_handler(const struct agent_invoke *inv, struct run *r)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, pidfd = -1;
	uint64_t start = now_us(), deadline = start + (uint64_t)inv->timeout_ms * 1000u;
	*r = (struct run){ .status = AGENT_SPAWN };
	/* One byte more than the bound: reading it is what says "too large". */
	r->out = malloc(AGENT_MAX_BODY + 1);
	if (!r->out || pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		r->code = errno;
		goto done;
	}
	pid_t pid = spawn(in[0], out[1]);
	if (pid < 0) {
		r->code = errno;
		goto done;
	}
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);

	size_t fed = 0;
	bool exited = false, killed = false;
	if (inv->body_len == 0) {
		close(in[1]);
		in[1] = -1;
	}
	while (!exited) {
		uint64_t t = now_us();
		if (t >= deadline) {
			r->status = AGENT_TIMEOUT;
			killed = true;
			break;
		}
		struct pollfd p[3] = {
			{ .fd = out[0], .events = POLLIN },
			{ .fd = in[1], .events = POLLOUT },
			{ .fd = pidfd, .events = POLLIN },
		};
		uint64_t wait_ms = (deadline - t + 999) / 1000;
		/* Without a pidfd (older kernels), look at the child now and then. */
		int timeout = pidfd < 0 && wait_ms > 10 ? 10 : (int)wait_ms;
		if (poll(p, 3, timeout) < 0 && errno != EINTR)
			break;
		if (p[1].revents) {
			ssize_t n = write(in[1], inv->body + fed, inv->body_len - fed);
			if (n > 0)
				fed += (size_t)n;
			if ((n < 0 && errno != EAGAIN && errno != EINTR) || fed == inv->body_len) {
				close(in[1]); /* all fed, or the handler closed its stdin */
				in[1] = -1;
			}
		}
		if (p[0].revents) {
			ssize_t n = read(out[0], r->out + r->out_len, AGENT_MAX_BODY + 1 - r->out_len);
			if (n > 0)
				r->out_len += (size_t)n;
			else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(out[0]);
				out[0] = -1;
			}
			if (r->out_len > AGENT_MAX_BODY) {
				r->status = AGENT_TOO_LARGE;
				killed = true;
				break;
			}
		}
		int status;
		if ((p[2].revents || pidfd < 0) && waitpid(pid, &status, WNOHANG) == pid) {
			exited = true;
			r->duration_us = (uint32_t)(now_us() - start);
			if (WIFEXITED(status)) {
				r->code = WEXITSTATUS(status);
				r->status = r->code ? AGENT_EXIT : AGENT_OK;
			} else {
				r->code = WTERMSIG(status);
				r->status = AGENT_SIGNAL;
			}
		}
	}
	/* What the handler wrote before it exited is its output. */
	while (exited && out[0] >= 0 && r->out_len <= AGENT_MAX_BODY) {
		ssize_t n = read(out[0], r->out + r->out_len, AGENT_MAX_BODY + 1 - r->out_len);
		if (n <= 0)
			break;
		r->out_len += (size_t)n;
	}
	if (r->out_len > AGENT_MAX_BODY) {
		r->status = AGENT_TOO_LARGE;
		killed = true;
	}
	kill(-pid, SIGKILL);
	if (killed) {
		waitpid(pid, NULL, 0);
		r->duration_us = (uint32_t)(now_us() - start);
		r->code = 0;
		r->out_len = 0; /* refused, never truncated */
	}
done:
	if (in[0] >= 0)
		close(in[0]);
	if (in[1] >= 0)
		close(in[1]);
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
	if (pidfd >= 0)
		close(pidfd);
}

/* --stream: the one handler process and its pipes. */
struct stream {
	pid_t pid;
	int in, out, pidfd;
	bool ready; /* it has said AGENT_STREAM_READY */
};
static struct stream sh = { .pid = -1, .in = -1, .out = -1, .pidfd = -1 };

static int stream_start(void)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		int e = errno;
		close(in[0]);
		close(in[1]);
		return -e;
	}
	pid_t pid = spawn(in[0], out[1]);
	int e = errno;
	close(in[0]);
	close(out[1]);
	if (pid < 0) {
		close(in[1]);
		close(out[0]);
		return -e;
	}
	sh = (struct stream){ .pid = pid, .in = in[1], .out = out[0], .pidfd = (int)syscall(SYS_pidfd_open, pid, 0) };
	fcntl(sh.in, F_SETFL, O_NONBLOCK);
	fcntl(sh.out, F_SETFL, O_NONBLOCK);
	return 0;
}

/* Kill the handler and its group; returns its wait status (how it ended
 * if it had already). */
static int stream_stop(void)
{
	int status = 0;
	kill(-sh.pid, SIGKILL);
	waitpid(sh.pid, &status, 0);
	close(sh.in);
	close(sh.out);
	if (sh.pidfd >= 0)
		close(sh.pidfd);
	sh = (struct stream){ .pid = -1, .in = -1, .out = -1, .pidfd = -1 };
	return status;
}

enum { MORE, DONE, DIED, BROKEN, TOO_LARGE, TIMEOUT };

/* What the handler has written so far of its ready line and a response. */
struct reading {
	char line[AGENT_STREAM_MAX_LINE];
	size_t len;
	bool have_header;
	uint32_t want;
};

/* Read what is there: the header line a byte at a time (never past it),
 * then the body. MORE until the response is whole (DONE). */
static int stream_read(struct reading *s, struct run *r)
{
	for (;;) {
		ssize_t n;
		if (s->have_header) {
			if (r->out_len == s->want)
				return DONE;
			n = read(sh.out, r->out + r->out_len, s->want - r->out_len);
			if (n > 0)
				r->out_len += (size_t)n;
		} else {
			char c;
			n = read(sh.out, &c, 1);
			if (n <= 0)
				goto none;
			if (s->len == sizeof(s->line))
				return BROKEN;
			s->line[s->len++] = c;
			if (c != '\n')
				continue;
			size_t len = s->len;
			s->len = 0;
			if (!sh.ready) {
				if (len != strlen(AGENT_STREAM_READY) || memcmp(s->line, AGENT_STREAM_READY, len) != 0)
					return BROKEN;
				sh.ready = true;
				continue;
			}
			const char *error;
			int e = agent_stream_response_parse(s->line, len, &r->code, &s->want, &error);
			if (e < 0)
				return e == -2 ? TOO_LARGE : BROKEN;
			s->have_header = true;
			if (s->want && !(r->out = malloc(s->want)))
				return BROKEN;
			continue;
		}
none:
		if (n == 0)
			return DIED;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? MORE : DIED;
	}
}

/* One request to the stream handler. */
static void stream_run(const struct agent_invoke *inv, struct run *r)
{
	uint64_t start = now_us(), deadline = start + (uint64_t)inv->timeout_ms * 1000u;
	*r = (struct run){ .status = AGENT_SPAWN };
	/* Something written, or an exit, between requests: start afresh. */
	struct pollfd idle = { .fd = sh.out, .events = POLLIN };
	if (sh.pid >= 0 && sh.ready && poll(&idle, 1, 0) > 0) {
		say("%s", "the handler wrote or ended between requests; starting it again");
		stream_stop();
	}
	if (sh.pid < 0 && (r->code = -stream_start()) != 0)
		return;
	char head[AGENT_STREAM_MAX_LINE];
	size_t head_len = agent_stream_request_encode(head, inv->body_len), fed = 0;
	size_t total = head_len + inv->body_len;
	struct reading s = { 0 };
	int how = MORE;
	while (how == MORE) {
		uint64_t t = now_us();
		if (t >= deadline) {
			how = TIMEOUT;
			break;
		}
		struct pollfd p[3] = {
			{ .fd = sh.out, .events = POLLIN },
			{ .fd = sh.ready && fed < total ? sh.in : -1, .events = POLLOUT },
			{ .fd = sh.pidfd, .events = POLLIN },
		};
		uint64_t wait_ms = (deadline - t + 999) / 1000;
		if (poll(p, 3, (int)(wait_ms > 1000 ? 1000 : wait_ms)) < 0 && errno != EINTR)
			how = BROKEN;
		if (p[1].revents) {
			const uint8_t *from = fed < head_len ? (const uint8_t *)head + fed : inv->body + (fed - head_len);
			size_t left = fed < head_len ? head_len - fed : total - fed;
			ssize_t n = write(sh.in, from, left);
			if (n > 0)
				fed += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				fed = total + 1; /* it closed its stdin: it cannot take this request */
		}
		if (how == MORE && (p[0].revents || p[2].revents))
			how = stream_read(&s, r);
		/* Its exit with the response unfinished (what it wrote is read above). */
		if (how == MORE && p[2].revents)
			how = DIED;
	}
	int n = 0;
	/* The response must follow the whole request, every byte taken. */
	if (how == DONE && (fed != total || ioctl(sh.in, FIONREAD, &n) < 0 || n != 0))
		how = BROKEN;
	r->duration_us = (uint32_t)(now_us() - start);
	if (how == DONE) {
		r->status = r->code ? AGENT_EXIT : AGENT_OK;
		return;
	}
	/* Still starting (nothing sent yet): let it get ready for the next. */
	if (how == TIMEOUT && !sh.ready) {
		r->status = AGENT_TIMEOUT;
		r->code = 0;
		return;
	}
	int status = stream_stop();
	free(r->out);
	r->out = NULL;
	r->out_len = 0;
	r->code = 0;
	r->status = how == TIMEOUT ? AGENT_TIMEOUT : how == TOO_LARGE ? AGENT_TOO_LARGE : AGENT_DIED;
	if (how == BROKEN)
		r->code = -1;
	else if (how == DIED)
		r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* At start-up: the handler started and initialised (its ready line), or
 * an exit with why. */
static int stream_wait_ready(void)
{
	int e = stream_start();
	if (e < 0) {
		say("cannot start the handler: %s", strerror(-e));
		return -1;
	}
	struct reading s = { 0 };
	struct run r = { 0 };
	int how = MORE;
	while (how == MORE && !sh.ready) {
		struct pollfd p[2] = { { .fd = sh.out, .events = POLLIN }, { .fd = sh.pidfd, .events = POLLIN } };
		poll(p, 2, 1000);
		how = stream_read(&s, &r);
		if (how == MORE && p[1].revents)
			how = DIED;
	}
	if (how != MORE) {
		say("the handler %s before it was ready", how == DIED ? "ended" : "wrote something else");
		return -1;
	}
	return 0;
}

/* Serve one connection until the host closes it or sends what the
 * protocol refuses. */
static void serve(int fd)
{
	uint8_t fixed[AGENT_RESULT_FIXED];
	if (send_frame(fd, AGENT_READY, 0, fixed, agent_ready_encode(fixed), NULL, 0) < 0)
		return;
	size_t cap = AGENT_HEADER_LEN + AGENT_MAX_PAYLOAD, have = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return;
	for (;;) {
		struct agent_frame f;
		struct agent_invoke inv;
		const char *error = NULL;
		ssize_t used = agent_frame_parse(buf, have, &f, &error);
		if (used == 0) {
			ssize_t n = read(fd, buf + have, cap - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
			continue;
		}
		if (used < 0 || agent_invoke_decode(&f, &inv, &error) < 0) {
			send_error(fd, error);
			break;
		}
		struct run r;
		if (stream)
			stream_run(&inv, &r);
		else
			run_handler(&inv, &r);
		agent_result_encode(fixed, r.status, r.code, r.duration_us);
		int sent = send_frame(fd, AGENT_RESULT, f.id, fixed, AGENT_RESULT_FIXED, r.out, r.out_len);
		free(r.out);
		if (stream && sh.pid < 0)
			stream_start(); /* killed or ended: the next request finds it (re)starting */
		if (sent < 0)
			break;
		memmove(buf, buf + used, have - (size_t)used);
		have -= (size_t)used;
	}
	free(buf);
}

/* The scratch drive's files: at most this long each. */
#define SCRATCH_FILE_MAX 65536

/* DEV's file (under /mnt) as a NUL-terminated string, its length in
 * len; NULL (and a message) when it is missing or too long. */
static char *scratch_read(const char *name, size_t *len)
{
	char p[64];
	snprintf(p, sizeof(p), "/mnt/fn/%s", name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	char *buf = fd < 0 ? NULL : malloc(SCRATCH_FILE_MAX + 1);
	ssize_t n = buf ? read(fd, buf, SCRATCH_FILE_MAX + 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 0 || n > SCRATCH_FILE_MAX) {
		say("cannot read %s (missing, or longer than 64 KiB)", p);
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	*len = (size_t)n;
	return buf;
}

/* --scratch DEV: mount it, take the definition from it, move into the
 * overlay root and set the env (see the top). 0, or -1 having said why. */
static int scratch_setup(const char *dev, char **init, char **cmd)
{
	static const char *const binds[] = { "/proc", "/sys", "/dev", "/tmp" };
	char dst[32];
	size_t len, env_len;
	char *env;
	/* noinit_itable: no background zeroing of inode tables. */
	if (mount(dev, "/mnt", "ext4", 0, "noinit_itable") < 0) {
		say("cannot mount the scratch drive: %s", strerror(errno));
		return -1;
	}
	if (!(*cmd = scratch_read("handler", &len)) || !(*init = scratch_read("init", &len)) ||
	    !(env = scratch_read("env", &env_len)))
		return -1;
	if (mount("overlay", "/mnt/root", "overlay", 0, "lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work") < 0) {
		say("cannot mount the overlay: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(binds) / sizeof(binds[0]); i++) {
		snprintf(dst, sizeof(dst), "/mnt/root%s", binds[i]);
		if (mount(binds[i], dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
			say("cannot bind %s into the function's root", binds[i]);
			return -1;
		}
	}
	if (chdir("/mnt/root") < 0 || chroot(".") < 0 || chdir("/") < 0) {
		say("cannot enter the function's root: %s", strerror(errno));
		return -1;
	}
	/* env stays allocated: putenv keeps the strings. */
	for (size_t at = 0; at < env_len; at += strlen(env + at) + 1)
		if (strchr(env + at, '='))
			putenv(env + at);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: ember-agent [--init CMD] [--stream] PORT HANDLER\n"
			"       ember-agent --scratch DEV [--stream] PORT\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *init = NULL, *scratch = NULL;
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--init") == 0 && i + 1 < argc)
			init = argv[++i];
		else if (strcmp(argv[i], "--scratch") == 0 && i + 1 < argc)
			scratch = argv[++i];
		else if (strcmp(argv[i], "--stream") == 0)
			stream = true;
		else
			return usage();
	}
	/* With --scratch, the handler and init come from the drive. */
	if (argc - i != (scratch ? 1 : 2) || (scratch && init))
		return usage();
	char *end;
	errno = 0;
	unsigned long port = strtoul(argv[i], &end, 10);
	if (errno || *end || end == argv[i] || port > 0xffffffffUL)
		return usage();
	handler = argv[i + 1];
	signal(SIGPIPE, SIG_IGN);

	if (scratch) {
		char *from_init, *from_handler;
		if (scratch_setup(scratch, &from_init, &from_handler) < 0)
			return 1;
		init = from_init[0] ? from_init : NULL;
		handler = from_handler;
	}
	if (init) {
		int status = system(init);
		if (status != 0) {
			say("the init command failed: %s", init);
			return 1;
		}
	}
	if (stream && stream_wait_ready() < 0)
		return 1;
	/* What init wrote is on the drives before the template is taken. */
	sync();
	int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				    .svm_port = (unsigned)port };
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 4) < 0) {
		say("cannot listen on vsock: %s", strerror(errno));
		return 1;
	}
	say("%s", "ready");
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			say("accept: %s", strerror(errno));
			return 1;
		}
		serve(c);
		close(c);
	}
}
