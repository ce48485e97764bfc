#include <criterion/criterion.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../vmm/log.h"

/* Each test runs in a process of its own (Criterion's default), so the
 * logger's settings do not leak between tests. */

static char path[64];

static void setup(void)
{
	snprintf(path, sizeof(path), "/tmp/ember-log.XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	char err[256];
	cr_assert_eq(log_set_path("test", path, err, sizeof(err)), 0, "%s", err);
	log_set_id("vm-7");
}

static void teardown(void)
{
	unlink(path);
}

TestSuite(log, .init = setup, .fini = teardown);

/* The log's lines, at most 16, each without its newline. */
static int read_lines(char lines[16][1200])
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	int n = 0;
	while (n < 16 && fgets(lines[n], 1200, f)) {
		lines[n][strcspn(lines[n], "\n")] = 0;
		n++;
	}
	fclose(f);
	return n;
}

static void assert_matches(const char *line, const char *pattern)
{
	regex_t re;
	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	int r = regexec(&re, line, 0, NULL, 0);
	regfree(&re);
	cr_assert_eq(r, 0, "line \"%s\" does not match %s", line, pattern);
}

#define STAMP "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9} "

Test(log, plain_line_names_the_id_and_the_thread)
{
	log_info("hello %d", 42);
	char lines[16][1200];
	cr_assert_eq(read_lines(lines), 1);
	assert_matches(lines[0], STAMP "\\[vm-7:main\\] hello 42$");
}

Test(log, level_and_origin_as_configured)
{
	log_set_show_level(true);
	log_warn("one");
	log_set_show_origin(true);
	int line = __LINE__ + 1;
	log_error("two");
	log_set_show_level(false);
	log_info("three");
	char lines[16][1200], want[256];
	cr_assert_eq(read_lines(lines), 3);
	assert_matches(lines[0], STAMP "\\[vm-7:main:WARN\\] one$");
	/* The origin is the source path as built: it has a directory. */
	snprintf(want, sizeof(want), STAMP "\\[vm-7:main:ERROR:tests/unit/test_log\\.c:%d\\] two$", line);
	assert_matches(lines[1], want);
	assert_matches(lines[2], STAMP "\\[vm-7:main:tests/unit/test_log\\.c:[0-9]+\\] three$");
}

Test(log, levels_filter_as_firecracker)
{
	log_set_show_level(true);
	log_set_level(LOG_WARN);
	log_error("e");
	log_warn("w");
	log_info("i");
	log_debug("d");
	log_set_level(LOG_OFF);
	log_error("nothing at Off");
	log_set_level(LOG_DEBUG);
	log_debug("d2");
	char lines[16][1200];
	cr_assert_eq(read_lines(lines), 3);
	assert_matches(lines[0], "\\[vm-7:main:ERROR\\] e$");
	assert_matches(lines[1], "\\[vm-7:main:WARN\\] w$");
	assert_matches(lines[2], "\\[vm-7:main:DEBUG\\] d2$");
	cr_assert_eq(log_level_parse("warn"), LOG_WARN);
	cr_assert_eq(log_level_parse("WARNING"), LOG_WARN);
	cr_assert_eq(log_level_parse("trace"), LOG_TRACE);
	cr_assert_eq(log_level_parse("verbose"), -1);
}

static void *named_thread(void *arg)
{
	if (arg)
		log_set_thread_name(arg);
	log_info("from a thread");
	return NULL;
}

Test(log, each_thread_shows_its_name)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, named_thread, "fc_vcpu 1"), 0);
	pthread_join(t, NULL);
	cr_assert_eq(pthread_create(&t, NULL, named_thread, NULL), 0);
	pthread_join(t, NULL);
	char lines[16][1200];
	cr_assert_eq(read_lines(lines), 2);
	assert_matches(lines[0], STAMP "\\[vm-7:fc_vcpu 1\\] from a thread$");
	assert_matches(lines[1], STAMP "\\[vm-7:-\\] from a thread$");
}

/* Local time, as Firecracker's lines: under a zone 5 hours east of UTC
 * the hour is UTC's plus 5. */
Test(log, timestamp_is_local_time)
{
	setenv("TZ", "XYZ-5", 1);
	tzset();
	time_t before = time(NULL);
	log_info("now");
	time_t after = time(NULL);
	char lines[16][1200];
	cr_assert_eq(read_lines(lines), 1);
	int hour = atoi(lines[0] + 11);
	struct tm a, b;
	gmtime_r(&before, &a);
	gmtime_r(&after, &b);
	cr_assert(hour == (a.tm_hour + 5) % 24 || hour == (b.tm_hour + 5) % 24, "hour %d in \"%s\"", hour,
		  lines[0]);
}

Test(log, rate_limited_messages_are_counted)
{
	unsigned long long before = log_rate_limited_count();
	for (int i = 0; i < 5; i++)
		log_ratelimited(LOG_INFO, "flood %d", i);
	/* One a second gets through; unless the second turned, 4 were dropped. */
	unsigned long long dropped = log_rate_limited_count() - before;
	cr_assert(dropped == 4 || dropped == 3, "dropped %llu", dropped);
}
