#include <criterion/criterion.h>
#include <stdio.h>
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
	cr_assert(!c.stream);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\",\"init\":\"true\","
			   "\"vcpu_count\":2,\"mem_size_mib\":256,\"timeout_ms\":5,\"max_concurrency\":9,"
			   "\"max_queued\":3,\"boot_timeout_s\":60,\"init\":\"true\",\"handler_mode\":\"stream\"}",
			   &c),
		     0, "%s", err);
	cr_assert_str_eq(c.init, "true");
	cr_assert_eq(c.vcpus, 2);
	cr_assert_eq(c.mem_mib, 256);
	cr_assert_eq(c.timeout_ms, 5);
	cr_assert_eq(c.max_concurrency, 9);
	cr_assert_eq(c.boot_timeout_s, 60);
	cr_assert(c.stream);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\","
			   "\"handler_mode\":\"process\"}",
			   &c),
		     0, "%s", err);
	cr_assert(!c.stream);
}

Test(fn_config, jail_and_network)
{
	struct fn_config c;
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\"}", &c), 0, "%s", err);
	cr_assert(!c.jail.on);
	cr_assert(!c.network);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\",\"network\":true}", &c),
		     0, "%s", err);
	cr_assert(c.network);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\",\"jail\":null}", &c),
		     0, "%s", err);
	cr_assert(!c.jail.on);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\","
			   "\"jail\":{\"uid\":1000,\"gid\":0}}",
			   &c),
		     0, "%s", err);
	cr_assert(c.jail.on);
	cr_assert_eq(c.jail.uid, 1000);
	cr_assert_eq(c.jail.gid, 0);
	cr_assert_eq(c.jail.cgroup_version, 1);
	cr_assert_eq(c.jail.ncgroups, 0);
	/* Each cgroup setting as ember-jailer's --cgroup FILE=VALUE. */
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\","
			   "\"jail\":{\"uid\":4294967294,\"gid\":7,\"cgroup_version\":2,"
			   "\"cgroups\":{\"memory.max\":\"268435456\",\"cpu.max\":\"50000 100000\"}}}",
			   &c),
		     0, "%s", err);
	cr_assert_eq(c.jail.uid, 4294967294U);
	cr_assert_eq(c.jail.cgroup_version, 2);
	cr_assert_eq(c.jail.ncgroups, 2);
	cr_assert_str_eq(c.jail.cgroups[0], "memory.max=268435456");
	cr_assert_str_eq(c.jail.cgroups[1], "cpu.max=50000 100000");
}

Test(fn_config, clone_policy_and_max_warm)
{
	struct fn_config c;
	/* destroy unless told; max_warm as many as the pool, at least 1. */
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\"}", &c), 0, "%s", err);
	cr_assert(!c.reuse);
	cr_assert_eq(c.max_warm, 1);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\","
			   "\"clone_policy\":\"reuse\",\"pool_size\":3}",
			   &c),
		     0, "%s", err);
	cr_assert(c.reuse);
	cr_assert_eq(c.max_warm, 3);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\","
			   "\"clone_policy\":\"destroy\",\"max_warm\":16,\"pool_size\":2}",
			   &c),
		     0, "%s", err);
	cr_assert(!c.reuse);
	cr_assert_eq(c.max_warm, 16);
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"cat\","
			   "\"clone_policy\":null,\"max_warm\":null}",
			   &c),
		     0, "%s", err);
	cr_assert(!c.reuse);
	cr_assert_eq(c.max_warm, 1);
}

Test(fn_config, bad_values_are_refused_with_the_field_named)
{
	static const struct { const char *json, *msg; } cases[] = {
		{ "[]", "the body must be a JSON object" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\"}", "handler: missing" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"\"}", "handler: must not be empty" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":[]}",
		  "env: must be an object of strings" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"A\":1}}",
		  "env.A: must be a string" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"1A\":\"x\"}}",
		  "env: a name must be 1 to 64 of [A-Za-z_][A-Za-z0-9_]*" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"A-B\":\"x\"}}",
		  "env: a name must be 1 to 64 of [A-Za-z_][A-Za-z0-9_]*" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"\":\"x\"}}",
		  "env: a name must be 1 to 64 of [A-Za-z_][A-Za-z0-9_]*" },
		{ "{\"kernel_image_path\":1,\"rootfs_path\":\"/r\",\"handler\":\"a\"}", "kernel_image_path: must be a string" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"timeout_ms\":0}",
		  "timeout_ms: must be an integer from 1 to 900000" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"timeout_ms\":1e999}",
		  "timeout_ms: must be an integer from 1 to 900000" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"vcpu_count\":1.5}",
		  "vcpu_count: must be an integer from 1 to 32" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"max_concurrency\":-1}",
		  "max_concurrency: must be an integer from 1 to 1024" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"pool_size\":17}",
		  "pool_size: must be an integer from 0 to 16" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"handler_mode\":\"streams\"}",
		  "handler_mode: must be \"process\" or \"stream\"" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"handler_mode\":1}",
		  "handler_mode: must be a string" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"clone_policy\":\"keep\"}",
		  "clone_policy: must be \"destroy\" or \"reuse\"" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"clone_policy\":\"Reuse\"}",
		  "clone_policy: must be \"destroy\" or \"reuse\"" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"clone_policy\":1}",
		  "clone_policy: must be \"destroy\" or \"reuse\"" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"max_warm\":0}",
		  "max_warm: must be an integer from 1 to 16" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"max_warm\":17}",
		  "max_warm: must be an integer from 1 to 16" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"colour\":1}",
		  "unknown field: colour" },
		{ "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"network\":1}",
		  "network: must be true or false" },
#define JAIL(x) "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"jail\":" x "}"
		{ JAIL("1"), "jail: must be an object" },
		{ JAIL("{\"gid\":1}"), "jail.uid: missing" },
		{ JAIL("{\"uid\":1}"), "jail.gid: missing" },
		{ JAIL("{\"uid\":-1,\"gid\":1}"), "jail.uid: must be an integer from 0 to 4294967294" },
		{ JAIL("{\"uid\":1,\"gid\":4294967295}"), "jail.gid: must be an integer from 0 to 4294967294" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroup_version\":3}"), "jail.cgroup_version: must be an integer from 1 to 2" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"netns\":\"/n\"}"), "unknown field: jail.netns" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":[]}"), "jail.cgroups: must be an object of strings" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":{\"memory\":\"1\"}}"),
		  "jail.cgroups: a name must be a cgroup file such as memory.max (at most 64 of a-z 0-9 _ .)" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":{\"../memory.max\":\"1\"}}"),
		  "jail.cgroups: a name must be a cgroup file such as memory.max (at most 64 of a-z 0-9 _ .)" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":{\"memory.max\":1}}"), "jail.cgroups.memory.max: must be a string" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":{\"memory.max\":\"\"}}"),
		  "jail.cgroups.memory.max: must be 1 to 80 printable characters" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":{\"memory.max\":\"1\\n2\"}}"),
		  "jail.cgroups.memory.max: must be 1 to 80 printable characters" },
		{ JAIL("{\"uid\":1,\"gid\":1,\"cgroups\":{\"a.a\":\"1\",\"a.b\":\"1\",\"a.c\":\"1\",\"a.d\":\"1\","
		       "\"a.e\":\"1\",\"a.f\":\"1\",\"a.g\":\"1\",\"a.h\":\"1\",\"a.i\":\"1\",\"a.j\":\"1\",\"a.k\":\"1\","
		       "\"a.l\":\"1\",\"a.m\":\"1\",\"a.n\":\"1\",\"a.o\":\"1\",\"a.p\":\"1\",\"a.q\":\"1\"}}"),
		  "jail.cgroups: more than 16" },
#undef JAIL
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fn_config c;
		cr_assert_eq(parse(cases[i].json, &c), -1, "%s", cases[i].json);
		cr_assert_str_eq(err, cases[i].msg, "%s", cases[i].json);
	}
}

/* The handler and init travel on the scratch drive, not the command
 * line: any text is theirs. env is packed NAME=VALUE\0 and bounded. */
Test(fn_config, handler_text_and_env)
{
	struct fn_config c;
	cr_assert_eq(parse("{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"echo \\\"a'b\\\\\\nc\\\"\","
			   "\"init\":\"printf '%s\\\\n' x\",\"env\":{\"_A1\":\"x=y z\",\"B\":\"\"}}",
			   &c),
		     0, "%s", err);
	cr_assert_str_eq(c.handler, "echo \"a'b\\\nc\"");
	cr_assert_str_eq(c.init, "printf '%s\\n' x");
	cr_assert_eq(c.env_len, sizeof("_A1=x=y z\0B=\0") - 1);
	cr_assert_eq(memcmp(c.env, "_A1=x=y z\0B=\0", c.env_len), 0);

	/* FN_ENV_VARS variables fit, one more does not; nor FN_ENV_MAX bytes. */
	char json[FN_ENV_MAX + 4096];
	int n = snprintf(json, sizeof(json), "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{");
	for (int i = 0; i < FN_ENV_VARS; i++)
		n += snprintf(json + n, sizeof(json) - n, "%s\"V%d\":\"x\"", i ? "," : "", i);
	snprintf(json + n, sizeof(json) - n, "}}");
	cr_assert_eq(parse(json, &c), 0, "%s", err);
	snprintf(json + n, sizeof(json) - n, ",\"W\":\"x\"}}");
	cr_assert_eq(parse(json, &c), -1);
	cr_assert_str_eq(err, "env: more than 64 variables or 16384 bytes");
	char big[FN_ENV_MAX];
	memset(big, 'v', sizeof(big) - 3);
	big[sizeof(big) - 3] = 0; /* AB= + 16381 + \0: one byte over */
	snprintf(json, sizeof(json), "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"AB\":\"%s\"}}", big);
	cr_assert_eq(parse(json, &c), -1);
	cr_assert_str_eq(err, "env: more than 64 variables or 16384 bytes");
	big[sizeof(big) - 4] = 0; /* AB= + 16380 + \0: just fits */
	snprintf(json, sizeof(json), "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"AB\":\"%s\"}}", big);
	cr_assert_eq(parse(json, &c), 0, "%s", err);
	char name[FN_ENV_NAME_MAX + 2];
	memset(name, 'N', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	snprintf(json, sizeof(json), "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"%s\":\"x\"}}", name);
	cr_assert_eq(parse(json, &c), -1);
	name[sizeof(name) - 2] = 0;
	snprintf(json, sizeof(json), "{\"kernel_image_path\":\"/k\",\"rootfs_path\":\"/r\",\"handler\":\"a\",\"env\":{\"%s\":\"x\"}}", name);
	cr_assert_eq(parse(json, &c), 0, "%s", err);
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
