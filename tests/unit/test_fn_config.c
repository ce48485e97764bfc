#include <criterion/criterion.h>
#include <string.h>

#include "../../api/fn/function.h"

static char err[512];

static int parse(const char *json, struct fn_config *c)
{
	return fn_config_parse(json, strlen(json), c, err, sizeof(err));
}

Test(fn_config, defaults_and_every_field)
{
	struct fn_config c;
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\"}", &c), 0, "%s", err);
	cr_assert_str_eq(c.handler, "cat");
	cr_assert_eq(c.vcpus, 1);
	cr_assert_eq(c.mem_mib, 128);
	cr_assert_eq(c.timeout_ms, 30000);
	cr_assert_eq(c.max_concurrency, 4);
	cr_assert_eq(c.max_queued, 0);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\",\"init\":\"true\","
			   "\"vcpu_count\":2,\"mem_size_mib\":256,\"timeout_ms\":5,\"max_concurrency\":9,"
			   "\"max_queued\":3,\"boot_timeout_s\":60,\"init\":\"true\"}",
			   &c),
		     0, "%s", err);
	cr_assert_str_eq(c.init, "true");
	cr_assert_eq(c.vcpus, 2);
	cr_assert_eq(c.mem_mib, 256);
	cr_assert_eq(c.timeout_ms, 5);
	cr_assert_eq(c.max_concurrency, 9);
	cr_assert_eq(c.boot_timeout_s, 60);
}

Test(fn_config, bad_values_are_refused_with_the_field_named)
{
	static const struct { const char *json, *msg; } cases[] = {
		{ "[]", "the body must be a JSON object" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\"}", "handler: missing" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"\"}", "handler: must not be empty" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"echo 'x'\"}",
		  "handler: must not contain quotes, backslashes or newlines" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"init\":\"a\\nb\"}",
		  "init: must not contain quotes, backslashes or newlines" },
		{ "{\"kernel_image_path\":1,\"rootfs_path\":\"/r\",\"handler\":\"a\"}", "kernel_image_path: must be a string" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"timeout_ms\":0}",
		  "timeout_ms: must be an integer from 1 to 900000" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"vcpu_count\":1.5}",
		  "vcpu_count: must be an integer from 1 to 32" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"max_concurrency\":-1}",
		  "max_concurrency: must be an integer from 1 to 1024" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"pool_size\":17}",
		  "pool_size: must be an integer from 0 to 16" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"colour\":1}",
		  "unknown field: colour" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fn_config c;
		cr_assert_eq(parse(cases[i].json, &c), -1, "%s", cases[i].json);
		cr_assert_str_eq(err, cases[i].msg, "%s", cases[i].json);
	}
}

Test(fn_config, names)
{
	cr_assert(fn_name_valid("my-fn_2"));
	cr_assert(!fn_name_valid(""));
	cr_assert(!fn_name_valid("a.b"));
	cr_assert(!fn_name_valid("a/b"));
	char long_name[FN_NAME_MAX + 2];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[FN_NAME_MAX + 1] = 0;
	cr_assert(!fn_name_valid(long_name));
	long_name[FN_NAME_MAX] = 0;
	cr_assert(fn_name_valid(long_name));
}
