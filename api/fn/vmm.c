/* ember-fn's view of one ember process: see vmm.h. */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long fn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pid_t fork_vmm(const char *const *argv, int log, const char *dir)
{
	pid_t pid = fork();
	if (pid == 0) {
		/* A VMM never outlives ember-fn. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 || chdir(dir) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* PR_SET_PDEATHSIG fires when the thread that forked exits, not the
 * process; so one thread that lives as long as ember-fn forks every VMM,
 * and a clone restored on a connection's thread outlives that thread (a
 * warm clone is kept past its invocation). One request at a time. */
static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spawn_cond = PTHREAD_COND_INITIALIZER;
static struct spawn {
	const char *const *argv;
	const char *dir;
	int log, err;
	pid_t pid;
	bool done;
} *spawn_req;
static pthread_once_t spawner_once = PTHREAD_ONCE_INIT;
static bool spawner_up;

static void *spawner(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&spawn_lock);
	for (;;) {
		while (!spawn_req || spawn_req->done)
			pthread_cond_wait(&spawn_cond, &spawn_lock);
		spawn_req->pid = fork_vmm(spawn_req->argv, spawn_req->log, spawn_req->dir);
		spawn_req->err = errno;
		spawn_req->done = true;
		pthread_cond_broadcast(&spawn_cond);
	}
	return NULL;
}

static void spawner_start(void)
{
	pthread_t t;
	spawner_up = pthread_create(&t, NULL, spawner, NULL) == 0 && pthread_detach(t) == 0;
}

pid_t fn_vmm_start(const char *const *argv, const char *dir, const char *api_sock, const char *log_path)
{
	pthread_once(&spawner_once, spawner_start);
	if (!spawner_up) {
		errno = EAGAIN;
		return -1;
	}
	unlink(api_sock);
	int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log < 0)
		return -1;
	struct spawn s = { .argv = argv, .dir = dir, .log = log };
	pthread_mutex_lock(&spawn_lock);
	while (spawn_req)
		pthread_cond_wait(&spawn_cond, &spawn_lock);
	spawn_req = &s;
	pthread_cond_broadcast(&spawn_cond);
	while (!s.done)
		pthread_cond_wait(&spawn_cond, &spawn_lock);
	spawn_req = NULL;
	pthread_cond_broadcast(&spawn_cond);
	pthread_mutex_unlock(&spawn_lock);
	close(log);
	errno = s.err;
	return s.pid;
}

int fn_run(const char *const *argv, const char *log_path)
{
	int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log < 0)
		return -1;
	/* Waited for here: no need for the spawner's long-lived thread. */
	pid_t pid = fork_vmm(argv, log, "/");
	close(log);
	int status = -1;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int fn_vmm_request(const char *api_sock, const char *method, const char *path, const char *body,
		   long long deadline, char *reply, size_t reply_cap)
{
	int fd = connect_unix(api_sock);
	if (fd < 0)
		return -1;
	char head[512];
	size_t blen = body ? strlen(body) : 0;
	int hn = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			  method, path, blen);
	int status = -1;
	if (hn < 0 || (size_t)hn >= sizeof(head) || send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn ||
	    (blen && send(fd, body, blen, MSG_NOSIGNAL) != (ssize_t)blen))
		goto out;
	/* The answer, up to the server's close (Connection: close). */
	char buf[8192];
	size_t have = 0;
	for (;;) {
		long long left = deadline - fn_now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			goto out;
		ssize_t n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		/* Complete once the headers and Content-Length bytes are in. */
		char *end = strstr(buf, "\r\n\r\n");
		const char *cl = strcasestr(buf, "\r\ncontent-length:");
		if (end && (!cl || cl > end || (size_t)(buf + have - (end + 4)) >= strtoul(cl + 17, NULL, 10)))
			break;
		if (have == sizeof(buf) - 1)
			break;
	}
	buf[have] = 0;
	if (have < 12 || strncmp(buf, "HTTP/1.1 ", 9) != 0)
		goto out;
	status = atoi(buf + 9);
	if (reply && reply_cap) {
		char *b = strstr(buf, "\r\n\r\n");
		snprintf(reply, reply_cap, "%s", b ? b + 4 : "");
	}
out:
	close(fd);
	return status;
}

int fn_vmm_wait_api(const char *api_sock, pid_t pid, long long deadline)
{
	while (fn_now_ms() < deadline) {
		int fd = connect_unix(api_sock);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(2000);
	}
	return -1;
}

void fn_vmm_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}
