#include <cJSON.h>
#include <errno.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../api/config_json.h"
#include "../../vmm/action.h"
#include "../../vmm/snapshot/snapfile.h"
#include "../../vmm/snapshot/snapshot.h"
#include "../../vmm/snapshot/tags.h"

static int parse(const char *text, struct vmm_config *cfg, char *err)
{
	config_defaults(cfg);
	return config_json_file(text, strlen(text), cfg, err, 256);
}

Test(config_json, full_valid_file)
{
	struct vmm_config cfg;
	char err[256] = "";
	int r = parse("{\"boot-source\": {\"kernel_image_path\": \"/k\", \"initrd_path\": \"/i\","
		      " \"boot_args\": \"console=ttyS0\"},"
		      " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256, \"smt\": false},"
		      " \"drives\": [], \"network-interfaces\": []}",
		      &cfg, err);
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_str_eq(cfg.boot.kernel_image_path, "/k");
	cr_assert_str_eq(cfg.boot.initrd_path, "/i");
	cr_assert(cfg.boot.has_boot_args);
	cr_assert_str_eq(cfg.boot.boot_args, "console=ttyS0");
	cr_assert_eq(cfg.machine.vcpu_count, 2);
	cr_assert_eq(cfg.machine.mem_size_mib, 256);
}

Test(config_json, defaults_when_machine_config_absent)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}}", &cfg, err), 0, "%s", err);
	cr_assert_eq(cfg.machine.vcpu_count, 1);
	cr_assert_eq(cfg.machine.mem_size_mib, 128);
	cr_assert_not(cfg.boot.has_boot_args);
}

/* Fixed arrays, not pointers: Criterion hands parameters to the test in
 * another process. */
struct bad_case {
	char json[320];
	char field[64]; /* must appear in the error */
};

static const struct bad_case bad_cases[] = {
	{ "{", "invalid JSON" },
	{ "[]", "JSON object" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"bogus\": 1}", "bogus" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\", \"kernel\": 1}}", "boot-source.kernel" },
	{ "{\"boot-source\": {}}", "boot-source.kernel_image_path" },
	{ "{\"boot-source\": {\"kernel_image_path\": 7}}", "boot-source.kernel_image_path" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"\"}}", "boot-source.kernel_image_path" },
	{ "{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128}}", "boot-source" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 0, \"mem_size_mib\": 128}}", "machine-config.vcpu_count" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 33, \"mem_size_mib\": 128}}", "machine-config.vcpu_count" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1.5, \"mem_size_mib\": 128}}", "machine-config.vcpu_count" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": -1, \"mem_size_mib\": 128}}", "machine-config.vcpu_count" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 0}}", "machine-config.mem_size_mib" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1}}", "machine-config.mem_size_mib" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 3, \"mem_size_mib\": 128, \"smt\": true}}", "machine-config.vcpu_count" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"smt\": 1}}", "machine-config.smt" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"cpu_template\": \"V1N1\"}}", "machine-config.cpu_template" },
	{ "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [{\"drive_id\": \"root\"}]}", "drives" },
};

ParameterizedTestParameters(config_json, bad_input_names_the_field)
{
	return cr_make_param_array(struct bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(const struct bad_case *c, config_json, bad_input_names_the_field)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_neq(parse(c->json, &cfg, err), 0, "accepted: %s", c->json);
	cr_assert_not_null(strstr(err, c->field), "error '%s' does not name '%s'", err, c->field);
	cr_assert_null(strchr(err, '\n'), "error is not one line: %s", err);
}

Test(config_json, machine_patch_keeps_absent_fields)
{
	struct machine_config cur = { .vcpu_count = 4, .mem_size_mib = 512 }, m;
	unsigned fields;
	char err[256] = "";
	cJSON *obj = cJSON_Parse("{\"mem_size_mib\": 1024}");
	cr_assert_eq(config_json_machine(obj, false, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(fields, MACHINE_F_MEM_SIZE);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, true, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cur.vcpu_count, 4);
	cr_assert_eq(cur.mem_size_mib, 1024);
	/* The same body as a PUT lacks vcpu_count, and changes nothing. */
	cr_assert_neq(config_machine_apply(&cur, &m, fields, false, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "machine-config.vcpu_count: missing"));
	cr_assert_eq(cur.vcpu_count, 4);
	cJSON_Delete(obj);
}

/* As Firecracker: any memory size is configured, and one beyond the
 * host's fails at InstanceStart, with its message. */
Test(config_json, memory_beyond_the_host_fails_at_start)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": "
			   "{\"vcpu_count\": 1, \"mem_size_mib\": 1e15}}", &cfg, err), 0, "%s", err);
	cr_assert_eq(cfg.machine.mem_size_mib, 1000000000000000ULL);
	cr_assert_eq(config_check_memory(&cfg.machine, err, sizeof(err)), -ENOMEM);
	cr_assert(strstr(err, "Invalid Memory Configuration: Cannot create mmap region: Out of memory (os error 12)"),
		  "%s", err);
	cfg.machine.mem_size_mib = 64;
	cr_assert_eq(config_check_memory(&cfg.machine, err, sizeof(err)), 0);
}

Test(config_json, machine_patch_checks_the_result)
{
	struct machine_config cur = { .vcpu_count = 3, .mem_size_mib = 128 }, m;
	unsigned fields;
	char err[256] = "";
	cJSON *obj = cJSON_Parse("{\"smt\": true}");
	cr_assert_eq(config_json_machine(obj, false, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_neq(config_machine_apply(&cur, &m, fields, true, err, sizeof(err)), 0,
		      "3 vCPUs with SMT must be refused");
	cr_assert_not(cur.smt);
	cJSON_Delete(obj);
}

Test(config_json, file_errors)
{
	struct vmm_config cfg;
	char err[256] = "";
	config_defaults(&cfg);
	cr_assert_neq(config_load_file("/nonexistent/ember.json", &cfg, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "/nonexistent/ember.json"));
	cr_assert_neq(config_load_file("/", &cfg, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "not a regular file"));

	char path[] = "/tmp/ember-config-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	const char *text = "{\"boot-source\": {\"kernel_image_path\": \"/k\"}}";
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	cr_assert_eq(config_load_file(path, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg.boot.kernel_image_path, "/k");
	unlink(path);
}

Test(config_json, devices)
{
	struct vmm_config cfg;
	char err[256] = "";
	int r = parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
		      " \"drives\": [{\"drive_id\": \"root\", \"path_on_host\": \"/r\", \"is_root_device\": true,"
		      "   \"is_read_only\": false, \"cache_type\": \"Writeback\", \"io_engine\": \"Sync\","
		      "   \"rate_limiter\": {\"bandwidth\": {\"size\": 1000, \"refill_time\": 10},"
		      "                    \"ops\": {\"size\": 5, \"one_time_burst\": 7, \"refill_time\": 1}}},"
		      "  {\"drive_id\": \"data\", \"path_on_host\": \"/d\", \"is_root_device\": false, \"partuuid\": \"ab-1\"}],"
		      " \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\","
		      "   \"guest_mac\": \"06:00:AC:10:00:02\", \"rx_rate_limiter\": null}],"
		      " \"vsock\": {\"vsock_id\": \"v\", \"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\"},"
		      " \"entropy\": {\"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 100}}}}",
		      &cfg, err);
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_eq(cfg.ndrives, 2);
	cr_assert(cfg.drives[0].is_root_device);
	cr_assert_eq(cfg.drives[0].cache_type, CACHE_WRITEBACK);
	cr_assert_eq(cfg.drives[0].io_engine, IO_ENGINE_SYNC);
	cr_assert_eq(cfg.drives[0].rate_limiter.bandwidth.size, 1000);
	cr_assert_eq(cfg.drives[0].rate_limiter.ops.one_time_burst, 7);
	cr_assert_eq(cfg.drives[1].io_engine, IO_ENGINE_ASYNC, "Async is the default");
	cr_assert_str_eq(cfg.drives[1].partuuid, "ab-1");
	cr_assert_eq(cfg.nnets, 1);
	cr_assert(cfg.nets[0].has_mac);
	cr_assert_eq(cfg.nets[0].guest_mac[2], 0xac);
	cr_assert(cfg.vsock.set);
	cr_assert_eq(cfg.vsock.guest_cid, 3);
	cr_assert(cfg.entropy.set);
	cr_assert_eq(cfg.entropy.rate_limiter.ops.size, 1);
}

/* As Firecracker: a multicast guest MAC is taken as given, and an "mtu"
 * (advertised to the guest) is kept and returned by GET /vm/config. */
Test(config_json, multicast_mac_and_mtu)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"network-interfaces\": ["
			   "{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"guest_mac\": \"07:00:00:00:00:01\", \"mtu\": 9000},"
			   "{\"iface_id\": \"f\", \"host_dev_name\": \"u\"}]}", &cfg, err), 0, "%s", err);
	cr_assert_eq(cfg.nets[0].guest_mac[0], 0x07);
	cr_assert(cfg.nets[0].has_mtu);
	cr_assert_eq(cfg.nets[0].mtu, 9000);
	cr_assert(!cfg.nets[1].has_mtu);
	cJSON *o = config_json_vm_obj(&cfg);
	cJSON *nets = cJSON_GetObjectItemCaseSensitive(o, "network-interfaces");
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(nets, 0), "mtu")->valuedouble, 9000);
	cJSON *none = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(nets, 1), "mtu");
	cr_assert(!none || cJSON_IsNull(none), "an mtu for an interface that gave none");
	cJSON_Delete(o);
}

static const struct bad_case bad_devices[] = {
	{ "{\"drives\": [{\"drive_id\": \"r\", \"is_root_device\": true}]}", "drives.path_on_host" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\"}]}", "drives.is_root_device" },
	{ "{\"drives\": [{\"drive_id\": \"r/x\", \"path_on_host\": \"/r\", \"is_root_device\": true}]}", "drives.drive_id" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\", \"is_root_device\": true, \"cache_type\": \"None\"}]}", "drives.cache_type" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\", \"is_root_device\": true, \"io_engine\": \"Fast\"}]}", "drives.io_engine" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\", \"is_root_device\": false, \"socket\": \"/s\"}]}", "drives.socket" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/r\", \"is_root_device\": true}, {\"drive_id\": \"b\", \"path_on_host\": \"/r\", \"is_root_device\": true}]}", "A root block device already exists!" },
	{ "{\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"/r\", \"is_root_device\": true}, {\"drive_id\": \"a\", \"path_on_host\": \"/s\", \"is_root_device\": false}]}", "used twice" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\", \"is_root_device\": true, \"rate_limiter\": {\"bandwidth\": {\"size\": 10}}}]}", "drives.rate_limiter.bandwidth.refill_time" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\", \"is_root_device\": true, \"rate_limiter\": {\"bandwidth\": {\"size\": 10, \"refill_time\": 0}}}]}", "drives.rate_limiter.bandwidth.refill_time" },
	{ "{\"drives\": [{\"drive_id\": \"r\", \"path_on_host\": \"/r\", \"is_root_device\": true, \"rate_limiter\": {\"iops\": {}}}]}", "drives.rate_limiter.iops" },
	{ "{\"drives\": {}}", "drives: expected a JSON array" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"06:00:00:00:00\"}]}", "network-interfaces.guest_mac" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"tap0\", \"mtu\": 65536}]}", "network-interfaces.mtu" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"tap0\", \"mtu\": -1}]}", "network-interfaces.mtu" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"guest_mac\": \"06:00:00:00:00:01\"}, {\"iface_id\": \"f\", \"host_dev_name\": \"u\", \"guest_mac\": \"06:00:00:00:00:01\"}]}", "The MAC address is already in use: 06:00:00:00:00:01" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"e\"}]}", "network-interfaces.host_dev_name" },
	{ "{\"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"t\"}, {\"iface_id\": \"f\", \"host_dev_name\": \"t\"}]}", "Invalid TUN/TAP Backend provided by t." },
	{ "{\"vsock\": {\"guest_cid\": 2, \"uds_path\": \"/v\"}}", "vsock.guest_cid" },
	{ "{\"vsock\": {\"guest_cid\": 3}}", "vsock.uds_path" },
	{ "{\"entropy\": {\"rate\": 1}}", "entropy.rate" },
};

ParameterizedTestParameters(config_json, bad_devices_name_the_field)
{
	return cr_make_param_array(struct bad_case, bad_devices, sizeof(bad_devices) / sizeof(bad_devices[0]));
}

ParameterizedTest(const struct bad_case *c, config_json, bad_devices_name_the_field)
{
	/* Each case is a device section added to a valid boot source. */
	char json[512];
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, %s", c->json + 1);
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_neq(parse(json, &cfg, err), 0, "accepted: %s", json);
	cr_assert_not_null(strstr(err, c->field), "error '%s' does not name '%s'", err, c->field);
}

/* n drives ("d<first>".."), or n network interfaces, as a JSON array. */
static void drive_array(char *out, size_t cap, int first, int n)
{
	size_t off = (size_t)snprintf(out, cap, "[");
	for (int i = first; i < first + n; i++)
		off += (size_t)snprintf(out + off, cap - off,
					"%s{\"drive_id\": \"d%d\", \"path_on_host\": \"/d%d\", \"is_root_device\": false}",
					i > first ? ", " : "", i, i);
	snprintf(out + off, cap - off, "]");
}

static void net_array(char *out, size_t cap, int first, int n)
{
	size_t off = (size_t)snprintf(out, cap, "[");
	for (int i = first; i < first + n; i++)
		off += (size_t)snprintf(out + off, cap - off,
					"%s{\"iface_id\": \"e%d\", \"host_dev_name\": \"tap%d\"}",
					i > first ? ", " : "", i, i);
	snprintf(out + off, cap - off, "]");
}

/* A section named twice in one object: cJSON keeps both, and 8 + 8
 * drives once filled drives[] past its end. The config is on the heap so
 * that ASan (make SAN=1) sees any write beyond it. */
Test(config_json, a_repeated_key_is_refused_before_anything_is_filled)
{
	struct vmm_config *cfg = malloc(sizeof(*cfg));
	cr_assert_not_null(cfg);
	static char a[2048], b[2048], json[8192];
	char err[256] = "";
	drive_array(a, sizeof(a), 0, 8);
	drive_array(b, sizeof(b), 8, 8);
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": %s, \"drives\": %s}", a, b);
	cr_assert_neq(parse(json, cfg, err), 0, "8 + 8 drives accepted");
	cr_assert_not_null(strstr(err, "duplicate key \"drives\""), "%s", err);
	cr_assert_eq(cfg->ndrives, 0);

	net_array(a, sizeof(a), 0, 8);
	net_array(b, sizeof(b), 8, 8);
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"network-interfaces\": %s, \"network-interfaces\": %s}", a, b);
	cr_assert_neq(parse(json, cfg, err), 0, "8 + 8 network interfaces accepted");
	cr_assert_not_null(strstr(err, "duplicate key \"network-interfaces\""), "%s", err);
	cr_assert_eq(cfg->nnets, 0);

	/* Inside a section too, where the first of the two would win. */
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [{\"drive_id\": \"r\","
			    " \"path_on_host\": \"/a\", \"path_on_host\": \"/b\", \"is_root_device\": true}]}", cfg, err), 0);
	cr_assert_not_null(strstr(err, "drives: duplicate key \"path_on_host\""), "%s", err);
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\", \"kernel_image_path\": \"/j\"}}", cfg, err), 0);
	cr_assert_not_null(strstr(err, "boot-source: duplicate key \"kernel_image_path\""), "%s", err);
	free(cfg);
}

/* Each fill of drives[] and nets[] is bounded by its capacity, whatever
 * the config already holds, not only by the JSON array's own length. */
Test(config_json, device_fills_stop_at_capacity)
{
	struct vmm_config *cfg = malloc(sizeof(*cfg));
	cr_assert_not_null(cfg);
	static char a[4096], json[8192];
	char err[256] = "", drives_msg[64], nets_msg[64];
	snprintf(drives_msg, sizeof(drives_msg), "drives: at most %d drives", CONFIG_MAX_DRIVES);
	snprintf(nets_msg, sizeof(nets_msg), "network-interfaces: at most %d network interfaces", CONFIG_MAX_NETS);
	drive_array(a, sizeof(a), 0, CONFIG_MAX_DRIVES + 1);
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": %s}", a);
	cr_assert_neq(parse(json, cfg, err), 0);
	cr_assert_not_null(strstr(err, drives_msg), "%s", err);

	drive_array(a, sizeof(a), 0, CONFIG_MAX_DRIVES);
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": %s}", a);
	cr_assert_eq(parse(json, cfg, err), 0, "%s", err);
	cr_assert_eq(cfg->ndrives, CONFIG_MAX_DRIVES);
	drive_array(a, sizeof(a), CONFIG_MAX_DRIVES, 1);
	snprintf(json, sizeof(json), "{\"drives\": %s}", a);
	cr_assert_neq(config_json_file(json, strlen(json), cfg, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, drives_msg), "%s", err);
	cr_assert_eq(cfg->ndrives, CONFIG_MAX_DRIVES);

	net_array(a, sizeof(a), 0, CONFIG_MAX_NETS + 1);
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"network-interfaces\": %s}", a);
	cr_assert_neq(parse(json, cfg, err), 0);
	cr_assert_not_null(strstr(err, nets_msg), "%s", err);
	net_array(a, sizeof(a), 0, CONFIG_MAX_NETS);
	snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"network-interfaces\": %s}", a);
	cr_assert_eq(parse(json, cfg, err), 0, "%s", err);
	net_array(a, sizeof(a), CONFIG_MAX_NETS, 1);
	snprintf(json, sizeof(json), "{\"network-interfaces\": %s}", a);
	cr_assert_neq(config_json_file(json, strlen(json), cfg, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, nets_msg), "%s", err);
	cr_assert_eq(cfg->nnets, CONFIG_MAX_NETS);
	free(cfg);
}

/* cJSON's strings end at the first NUL: "real.img\u0000.qcow2" would be
 * "real.img", and a key "kernel_image_path\u0000x" the real key. */
Test(config_json, a_nul_in_a_string_or_key_is_refused)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/real.img\\u0000.qcow2\"}}", &cfg, err), 0);
	cr_assert_not_null(strstr(err, "\\u0000"), "%s", err);
	cr_assert_null(strchr(err, '\n'));
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\\u0000x\": \"/k\"}}", &cfg, err), 0);
	cr_assert_not_null(strstr(err, "\\u0000"), "%s", err);
	/* A raw NUL byte, or any raw control byte inside a string. */
	static const char raw[] = "{\"boot-source\": {\"kernel_image_path\": \"/k\0x\"}}";
	config_defaults(&cfg);
	cr_assert_neq(config_json_file(raw, sizeof(raw) - 1, &cfg, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "control byte 0x00"), "%s", err);
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\", \"boot_args\": \"a\tb\"}}", &cfg, err), 0);
	cr_assert_not_null(strstr(err, "control byte 0x09"), "%s", err);
	/* An escaped backslash before "u0000" is no NUL. */
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\\\\u0000\"}}", &cfg, err), 0, "%s", err);
	cr_assert_str_eq(cfg.boot.kernel_image_path, "/k\\u0000");
}

Test(config_json, text_after_the_value_is_refused)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}} xyz", &cfg, err), 0);
	cr_assert_not_null(strstr(err, "config file: text after the JSON value"), "%s", err);
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}}{}", &cfg, err), 0);
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}}\x01", &cfg, err), 0);
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}} \r\n\t\n", &cfg, err), 0, "%s", err);
}

/* A state file's configuration goes through the same parser: one that
 * repeats "drives" is refused, not filled past drives[8] (which once
 * ended in "free(): invalid pointer"). The image is built here with a
 * valid header and CRC, so only the configuration is wrong. */
Test(config_json, a_snapshot_configuration_with_repeated_drives_is_refused)
{
	static char a[2048], b[2048], json[8192];
	drive_array(a, sizeof(a), 0, 8);
	drive_array(b, sizeof(b), 8, 8);
	int n = snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
			 " \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128},"
			 " \"drives\": %s, \"drives\": %s}", a, b);
	struct snap_writer w;
	sw_init(&w);
	sw_begin(&w, TAG_CONFIG);
	sw_bytes(&w, json, (size_t)n);
	sw_end(&w);
	cr_assert_not(w.oom);

	size_t len = SNAPFILE_HEADER_SIZE + w.len;
	uint8_t *file = malloc(len);
	cr_assert_not_null(file);
	uint32_t version = SNAPFILE_VERSION, hsize = SNAPFILE_HEADER_SIZE;
	uint64_t plen = w.len, crc = snap_crc64(0, w.buf, w.len);
	memcpy(file, SNAPFILE_MAGIC, 8);
	memcpy(file + 8, &version, 4);
	memcpy(file + 12, &hsize, 4);
	memcpy(file + 16, &plen, 8);
	memcpy(file + 24, &crc, 8);
	memcpy(file + SNAPFILE_HEADER_SIZE, w.buf, w.len);

	struct snapshot_image *img = malloc(sizeof(*img));
	cr_assert_not_null(img);
	char err[512] = "";
	cr_assert_neq(snapshot_parse(file, len, img, err, sizeof(err)), 0);
	cr_assert_not_null(strstr(err, "duplicate key \"drives\""), "%s", err);
	cr_assert_leq(img->cfg.ndrives, CONFIG_MAX_DRIVES);
	free(img);
	free(file);
	sw_free(&w);
}

/* Numbers no integer field can hold (beyond 2^63, infinite once parsed)
 * are refused, by range or as a deserializer would (not an integer of the
 * field's type), before any conversion of the double to an integer: such
 * a conversion is undefined behaviour. */
Test(config_json, huge_numbers_are_out_of_range)
{
	static const char *const huge[] = { "1e19", "9223372036854775808", "18446744073709551616",
					    "1e300", "1e400" };
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		char json[256];
		struct vmm_config cfg;
		char err[256] = "";
		snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, "
			 "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": %s}}", huge[i]);
		cr_assert_neq(parse(json, &cfg, err), 0, "accepted: %s", json);
		cr_assert(strstr(err, "machine-config.mem_size_mib: must be between 1 and 9007199254740992") ||
			  strstr(err, "machine-config.mem_size_mib: invalid type: floating point"),
			  "%s: %s", huge[i], err);
		snprintf(json, sizeof(json), "{\"boot-source\": {\"kernel_image_path\": \"/k\"}, "
			 "\"machine-config\": {\"vcpu_count\": %s, \"mem_size_mib\": 128}}", huge[i]);
		cr_assert_neq(parse(json, &cfg, err), 0, "accepted: %s", json);
		cr_assert(strstr(err, "machine-config.vcpu_count: invalid value: ") ||
			  strstr(err, "machine-config.vcpu_count: invalid type: floating point"),
			  "%s: %s", huge[i], err);
	}
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, "
			    "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": -1e400}}", &cfg, err), 0);
	cr_assert_not_null(strstr(err, "machine-config.mem_size_mib: invalid type: floating point"), "%s", err);
}

/* What Firecracker's GET /vm/config answers (null for every optional
 * field and section) is a config file ember takes. */
Test(config_json, firecrackers_vm_config_is_a_config_file)
{
	static const char doc[] =
		"{\"balloon\":null,\"drives\":[{\"drive_id\":\"rootfs\",\"partuuid\":null,\"is_root_device\":true,"
		"\"cache_type\":\"Unsafe\",\"is_read_only\":false,\"path_on_host\":\"/r\",\"rate_limiter\":null,"
		"\"io_engine\":\"Sync\",\"socket\":null}],\"boot-source\":{\"kernel_image_path\":\"/k\","
		"\"initrd_path\":null,\"boot_args\":null},\"cpu-config\":null,\"logger\":null,"
		"\"machine-config\":{\"vcpu_count\":2,\"mem_size_mib\":256,\"smt\":false,\"track_dirty_pages\":false,"
		"\"huge_pages\":\"None\"},\"metrics\":null,\"mmds-config\":null,\"network-interfaces\":[{\"iface_id\":"
		"\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"06:00:00:00:00:01\",\"mtu\":null,"
		"\"rx_rate_limiter\":{\"bandwidth\":{\"size\":1000,\"one_time_burst\":null,\"refill_time\":100},"
		"\"ops\":null},\"tx_rate_limiter\":null}],\"vsock\":null,\"entropy\":null,\"pmem\":[],"
		"\"memory-hotplug\":null}";
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_eq(parse(doc, &cfg, err), 0, "%s", err);
	cr_assert_eq(cfg.ndrives, 1);
	cr_assert_eq(cfg.drives[0].io_engine, IO_ENGINE_SYNC);
	cr_assert_str_eq(cfg.boot.initrd_path, "");
	cr_assert_not(cfg.boot.has_boot_args);
	cr_assert_eq(cfg.machine.vcpu_count, 2);
	cr_assert_eq(cfg.nets[0].rx_rate_limiter.bandwidth.size, 1000);
	cr_assert_not(cfg.vsock.set);
	cr_assert_not(cfg.logger.set);

	/* A required field given null is refused in a deserializer's words. */
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": null}}", &cfg, err), 0);
	cr_assert_str_eq(err, "boot-source.kernel_image_path: invalid type: null, expected a string");
	cr_assert_neq(parse("{\"boot-source\": null}", &cfg, err), 0);
	cr_assert_not_null(strstr(err, "boot-source: invalid type: null"), "%s", err);
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"turbo\": null}", &cfg, err), 0,
		      "an unknown section is refused, null or not");
}

/* ember's own answer has Firecracker's shape: every section and every
 * optional field, null or empty when unset, and reads back the same. */
Test(config_json, vm_config_has_firecrackers_shape)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"drives\": [{\"drive_id\": \"d\","
			   " \"path_on_host\": \"/d\", \"is_root_device\": false}], \"network-interfaces\":"
			   " [{\"iface_id\": \"n\", \"host_dev_name\": \"t\"}]}", &cfg, err), 0, "%s", err);
	cJSON *o = config_json_vm_obj(&cfg);
	char *text = cJSON_PrintUnformatted(o);
	static const char *const want[] = {
		"\"balloon\":null", "\"cpu-config\":null", "\"logger\":null", "\"metrics\":null",
		"\"mmds-config\":null", "\"vsock\":null", "\"entropy\":null", "\"pmem\":[]",
		"\"memory-hotplug\":null", "\"partuuid\":null", "\"rate_limiter\":null", "\"socket\":null",
		"\"io_engine\":\"Async\"", "\"cache_type\":\"Unsafe\"", "\"initrd_path\":null", "\"boot_args\":null",
		"\"guest_mac\":null", "\"rx_rate_limiter\":null", "\"tx_rate_limiter\":null",
		"\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":128,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_not_null(strstr(text, want[i]), "no %s in %s", want[i], text);
	struct vmm_config again;
	cr_assert_eq(parse(text, &again, err), 0, "%s", err);
	cr_assert_eq(memcmp(&again.drives[0], &cfg.drives[0], sizeof(cfg.drives[0])), 0);
	free(text);
	cJSON_Delete(o);
}

/* As Firecracker's GET /vm/config: the logger and metrics are null and the
 * serial console is left out, even when set; a snapshot's state keeps the
 * serial console. */
Test(config_json, vm_config_hides_logger_metrics_serial)
{
	struct vmm_config cfg;
	char err[256] = "";
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"logger\": {\"log_path\": \"/l\"},"
			   " \"metrics\": {\"metrics_path\": \"/m\"}, \"serial\": {\"serial_out_path\": \"/s\"}}",
			   &cfg, err), 0, "%s", err);
	cr_assert(cfg.logger.set && cfg.metrics.set && cfg.serial.set);
	cJSON *o = config_json_vm_obj(&cfg);
	cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "logger")));
	cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "metrics")));
	cr_assert_null(cJSON_GetObjectItemCaseSensitive(o, "serial"));
	cJSON_Delete(o);
	o = config_json_state_obj(&cfg);
	cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "serial");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "serial_out_path")), "/s");
	cJSON_Delete(o);
}

/* huge_pages: Firecracker's three values, a whole number of 2 MiB pages
 * for either kind of huge page, kept by a PATCH that does not name it,
 * reset by a PUT that does not, and shown by GET. */
Test(config_json, machine_huge_pages)
{
	static const struct { const char *name; enum mem_pages pages; } vals[] = {
		{ "None", MEM_PAGES_NONE }, { "Transparent", MEM_PAGES_TRANSPARENT }, { "2M", MEM_PAGES_2M },
	};
	struct machine_config cur = { 0 }, m;
	unsigned fields;
	char err[256] = "", body[128];
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		snprintf(body, sizeof(body), "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"huge_pages\": \"%s\"}",
			 vals[i].name);
		cJSON *obj = cJSON_Parse(body);
		cr_assert_eq(config_json_machine(obj, true, &m, &fields, err, sizeof(err)), 0, "%s", err);
		cr_assert(fields & MACHINE_F_HUGE_PAGES);
		cr_assert_eq(config_machine_apply(&cur, &m, fields, false, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(cur.huge_pages, vals[i].pages);
		cJSON_Delete(obj);
		cJSON *o = config_json_machine_obj(&cur);
		cr_assert_str_eq(cJSON_GetObjectItem(o, "huge_pages")->valuestring, vals[i].name);
		cJSON_Delete(o);
	}
	/* 2M now: an odd size is refused, by a PATCH of the size too. */
	cJSON *odd = cJSON_Parse("{\"mem_size_mib\": 65}");
	cr_assert_eq(config_json_machine(odd, false, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, true, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "The memory size (MiB) is either 0, or not a multiple of the configured page size."),
		  "%s", err);
	cr_assert_eq(cur.mem_size_mib, 64);
	cr_assert_eq(cur.huge_pages, MEM_PAGES_2M, "a PATCH without huge_pages keeps it");
	/* A PUT without it is back to None, where any size goes. */
	cJSON *put = cJSON_Parse("{\"vcpu_count\": 1, \"mem_size_mib\": 65}");
	cr_assert_eq(config_json_machine(put, true, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cur.huge_pages, MEM_PAGES_NONE);
	cJSON_Delete(odd);
	cJSON_Delete(put);
	/* Anything else, or not a string, is refused naming the field. */
	static const char *const bad[] = { "\"1G\"", "\"2m\"", "\"Snapshot\"", "2", "true" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body), "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"huge_pages\": %s}", bad[i]);
		cJSON *obj = cJSON_Parse(body);
		cr_assert_neq(config_json_machine(obj, true, &m, &fields, err, sizeof(err)), 0, "accepted %s", bad[i]);
		cr_assert(strstr(err, "huge_pages"), "%s", err);
		cJSON_Delete(obj);
	}
}

/* The configuration a snapshot keeps has huge_pages, and reads back. */
Test(config_json, huge_pages_survive_the_state_json)
{
	struct vmm_config cfg, again;
	char err[256] = "";
	cr_assert_eq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": "
			   "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"huge_pages\": \"2M\"}}", &cfg, err), 0, "%s", err);
	cr_assert_eq(cfg.machine.huge_pages, MEM_PAGES_2M);
	cJSON *o = config_json_state_obj(&cfg);
	char *text = cJSON_PrintUnformatted(o);
	cr_assert_eq(parse(text, &again, err), 0, "%s", err);
	cr_assert_eq(again.machine.huge_pages, MEM_PAGES_2M);
	/* A config file with an odd size for huge pages is refused. */
	cr_assert_neq(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": "
			    "{\"vcpu_count\": 1, \"mem_size_mib\": 63, \"huge_pages\": \"Transparent\"}}", &cfg, err), 0);
	free(text);
	cJSON_Delete(o);
}

/* ember_ksm, ember's own key: a boolean, kept by a PATCH that does not
 * name it, shown only when on (GET keeps Firecracker's keys otherwise),
 * and refused with 2 MiB hugetlbfs pages, which KSM does not merge. */
Test(config_json, machine_ember_ksm)
{
	struct machine_config cur = { .vcpu_count = 1, .mem_size_mib = 64 }, m;
	unsigned fields;
	char err[256] = "";
	cJSON *on = cJSON_Parse("{\"ember_ksm\": true}");
	cr_assert_eq(config_json_machine(on, false, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(fields, MACHINE_F_EMBER_KSM);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, true, err, sizeof(err)), 0, "%s", err);
	cr_assert(cur.ember_ksm);
	cJSON *o = config_json_machine_obj(&cur);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(o, "ember_ksm")));
	cJSON_Delete(o);
	cJSON *huge = cJSON_Parse("{\"huge_pages\": \"2M\"}");
	cr_assert_eq(config_json_machine(huge, false, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, true, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "machine-config.ember_ksm"), "%s", err);
	cr_assert_eq(cur.huge_pages, MEM_PAGES_NONE);
	cJSON *bad = cJSON_Parse("{\"ember_ksm\": 1}");
	cr_assert_neq(config_json_machine(bad, false, &m, &fields, err, sizeof(err)), 0);
	cJSON *off = cJSON_Parse("{\"ember_ksm\": false}");
	cr_assert_eq(config_json_machine(off, false, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, true, err, sizeof(err)), 0, "%s", err);
	o = config_json_machine_obj(&cur);
	cr_assert_null(cJSON_GetObjectItem(o, "ember_ksm"));
	cJSON_Delete(o);
	cJSON_Delete(on);
	cJSON_Delete(huge);
	cJSON_Delete(bad);
	cJSON_Delete(off);
}

/* Apply a machine-config PATCH body to cur: 0 or the error. */
static int patch_machine(struct machine_config *cur, const char *json, char *err, size_t errlen)
{
	struct machine_config m;
	unsigned fields;
	cJSON *o = cJSON_Parse(json);
	cr_assert_not_null(o, "%s", json);
	int ret = config_json_machine(o, false, &m, &fields, err, errlen);
	if (!ret)
		ret = config_machine_apply(cur, &m, fields, true, err, errlen);
	cJSON_Delete(o);
	return ret;
}

/* ember_mem_backend, ember's own key: "anonymous", "memfd" or {"file":
 * PATH}; shown when not anonymous; refused in what cannot work (KSM on a
 * shared backing, huge pages in a file; and, by the API's file check, a
 * path that is no regular file or a file shorter than the guest). */
Test(config_json, machine_ember_mem_backend)
{
	struct machine_config cur = { .vcpu_count = 1, .mem_size_mib = 64 };
	char err[512] = "";
	cr_assert_eq(patch_machine(&cur, "{\"ember_mem_backend\": \"memfd\"}", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cur.mem_kind, MEM_KIND_MEMFD);
	cJSON *o = config_json_machine_obj(&cur);
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(o, "ember_mem_backend")), "memfd");
	cJSON_Delete(o);
	/* memfd takes 2M pages; KSM is refused. */
	cr_assert_eq(patch_machine(&cur, "{\"huge_pages\": \"2M\"}", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(patch_machine(&cur, "{\"huge_pages\": \"None\", \"ember_ksm\": true}", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ember_ksm") && strstr(err, "memfd"), "%s", err);

	/* A file: missing is fine; shown as {"file": PATH}; survives the round trip. */
	char path[] = "/tmp/ember-cfgmem.XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	char body[256];
	snprintf(body, sizeof(body), "{\"huge_pages\": \"None\", \"ember_mem_backend\": {\"file\": \"%s\"}}", path);
	cr_assert_eq(patch_machine(&cur, body, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cur.mem_kind, MEM_KIND_FILE);
	cr_assert_str_eq(cur.mem_path, path);
	o = config_json_machine_obj(&cur);
	cJSON *b = cJSON_GetObjectItem(o, "ember_mem_backend");
	cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(b, "file")), path);
	struct machine_config again = { .vcpu_count = 1, .mem_size_mib = 64 }, m;
	unsigned fields;
	cr_assert_eq(config_json_machine(o, true, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_machine_apply(&again, &m, fields, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(again.mem_path, path);
	cJSON_Delete(o);
	cr_assert_eq(patch_machine(&cur, "{\"huge_pages\": \"2M\"}", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "ember_mem_backend") && strstr(err, "2M"), "%s", err);
	cr_assert_eq(patch_machine(&cur, "{\"huge_pages\": \"Transparent\"}", err, sizeof(err)), -EINVAL);
	/* A file shorter than the guest, and a directory. */
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite("x", 1, 1, f), 1);
	fclose(f);
	cr_assert_eq(config_check_mem_file(&cur, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, path) && strstr(err, "shorter"), "%s", err);
	unlink(path);
	close(fd);
	cr_assert_eq(config_check_mem_file(&cur, err, sizeof(err)), 0, "%s", err); /* missing is fine */
	cr_assert_eq(patch_machine(&cur, "{\"ember_mem_backend\": {\"file\": \"/tmp\"}}", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_check_mem_file(&cur, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "/tmp") && strstr(err, "not a regular file"), "%s", err);

	/* Bad shapes. */
	const char *bad[] = { "{\"ember_mem_backend\": \"shm\"}", "{\"ember_mem_backend\": 1}",
		"{\"ember_mem_backend\": {\"path\": \"/x\"}}", "{\"ember_mem_backend\": {\"file\": \"\"}}",
		"{\"ember_mem_backend\": {\"file\": 3}}", "{\"ember_mem_backend\": {}}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(patch_machine(&cur, bad[i], err, sizeof(err)), -EINVAL, "%s", bad[i]);
		cr_assert(strstr(err, "ember_mem_backend"), "%s: %s", bad[i], err);
	}
	cr_assert_eq(patch_machine(&cur, "{\"ember_mem_backend\": \"anonymous\"}", err, sizeof(err)), 0, "%s", err);
	o = config_json_machine_obj(&cur);
	cr_assert_null(cJSON_GetObjectItem(o, "ember_mem_backend"));
	cJSON_Delete(o);
}

/* ember_numa_node: a node of this host (0 always is), shown when set, kept
 * by a PATCH without it, dropped by a PUT without it; negative, fractional
 * and absent nodes are refused. */
Test(config_json, machine_ember_numa_node)
{
	struct machine_config cur = { .vcpu_count = 1, .mem_size_mib = 64 };
	char err[512] = "";
	cr_assert_eq(patch_machine(&cur, "{\"ember_numa_node\": 0}", err, sizeof(err)), 0, "%s", err);
	cr_assert(cur.has_numa_node);
	cr_assert_eq(cur.numa_node, 0);
	cJSON *o = config_json_machine_obj(&cur);
	cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "ember_numa_node")), 0);
	cJSON_Delete(o);
	const char *bad[] = { "{\"ember_numa_node\": -1}", "{\"ember_numa_node\": 1.5}", "{\"ember_numa_node\": \"0\"}",
		"{\"ember_numa_node\": 64}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(patch_machine(&cur, bad[i], err, sizeof(err)), -EINVAL, "%s", bad[i]);
		cr_assert(strstr(err, "ember_numa_node"), "%s: %s", bad[i], err);
	}
	int max = mem_numa_max_node();
	if (max >= 0 && max < MEM_NUMA_MAX) {
		char body[64];
		snprintf(body, sizeof(body), "{\"ember_numa_node\": %d}", max + 1);
		cr_assert_eq(patch_machine(&cur, body, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "the host's nodes are 0 to"), "%s", err);
	}
	cr_assert(cur.has_numa_node);
	cr_assert_eq(patch_machine(&cur, "{\"mem_size_mib\": 32}", err, sizeof(err)), 0, "%s", err);
	cr_assert(cur.has_numa_node);
	struct machine_config m;
	unsigned fields;
	cJSON *put = cJSON_Parse("{\"vcpu_count\": 1, \"mem_size_mib\": 64}");
	cr_assert_eq(config_json_machine(put, true, &m, &fields, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_machine_apply(&cur, &m, fields, false, err, sizeof(err)), 0, "%s", err);
	cJSON_Delete(put);
	cr_assert(!cur.has_numa_node);
	o = config_json_machine_obj(&cur);
	cr_assert_null(cJSON_GetObjectItem(o, "ember_numa_node"));
	cJSON_Delete(o);
}
