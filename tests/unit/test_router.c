#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/router.h"

static struct action a;
static struct route_result r;

static void route(const char *method, const char *path, const char *body)
{
	static char buf[2048];
	snprintf(buf, sizeof(buf), "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", method, path,
		 body ? strlen(body) : 0, body ? body : "");
	struct http_request req;
	cr_assert_gt(http_parse_request(buf, strlen(buf), 4096, &req), 0, "%s", buf);
	memset(&a, 0xaa, sizeof(a));
	api_route(&req, &a, &r);
}

Test(router, gets_become_actions)
{
	route("GET", "/", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(a.type, ACTION_GET_INSTANCE_INFO);
	route("GET", "/machine-config", NULL);
	cr_assert_eq(a.type, ACTION_GET_MACHINE_CONFIG);
	route("GET", "/vm/config", NULL);
	cr_assert_eq(a.type, ACTION_GET_VM_CONFIG);
	route("GET", "/version", NULL);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.body, "firecracker_version"));
}

Test(router, unknown_paths_methods_and_unsupported_endpoints)
{
	/* Firecracker answers 400 for both, naming the method and the path's
	 * first segment. */
	route("GET", "/nope", NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: GET nope.");
	route("GET", "/drives/", NULL);
	cr_assert_eq(r.status, 400, "an empty id is no path");
	route("PUT", "/drives/a/b", "{}");
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: PUT drives.");
	route("PUT", "/drives/", "{}");
	cr_assert_str_eq(r.fault, "The ID cannot be empty.");
	route("PUT", "/drives/a.b", "{}");
	cr_assert_str_eq(r.fault, "API Resource IDs can only contain alphanumeric characters and underscores.");
	route("DELETE", "/machine-config", NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: DELETE machine-config.");
	route("GET", "/boot-source", NULL);
	cr_assert_eq(r.status, 400);
	route("PATCH", "/boot-source", "{\"kernel_image_path\": \"x\"}");
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: PATCH boot-source.");
	route("PATCH", "/logger", "{\"level\": \"Error\"}");
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: PATCH logger.");
	route("GET", "/hotplug/memory", NULL);
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_GET_MEMORY_HOTPLUG);
	route("PATCH", "/hotplug/memory", "{\"requested_size_mib\": 4}");
	cr_assert_eq(a.type, ACTION_PATCH_MEMORY_HOTPLUG);
	cr_assert_eq(a.u.requested_size_mib, 4);
	route("PUT", "/hotplug/memory", "{\"total_size_mib\": 256, \"block_size_mib\": 4}");
	cr_assert_eq(a.type, ACTION_PUT_MEMORY_HOTPLUG);
	cr_assert_eq(a.u.memory_hotplug.block_size_mib, 4);
	cr_assert_eq(a.u.memory_hotplug.slot_size_mib, 128);
	route("DELETE", "/hotplug/memory", NULL);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: DELETE hotplug.");
	route("DELETE", "/mmds", NULL);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: DELETE mmds.",
			 "an endpoint ember lacks still has its methods");
	route("DELETE", "/drives/a", NULL);
	cr_assert_not_null(strstr(r.fault, "not supported"), "hot-unplug: %s", r.fault);
	route("PUT", "/pmem/p0", "{}");
	cr_assert_eq(r.status, 400);
}

Test(router, bodies_become_typed_actions)
{
	route("PUT", "/drives/root", "{\"drive_id\": \"root\", \"path_on_host\": \"/r\", \"is_root_device\": true}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PUT_DRIVE);
	cr_assert_str_eq(a.u.drive.path_on_host, "/r");

	route("PATCH", "/machine-config", "{\"vcpu_count\": 2}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PATCH_MACHINE_CONFIG);
	cr_assert_eq(a.u.machine.fields, MACHINE_F_VCPU_COUNT);

	route("PATCH", "/drives/root", "{\"drive_id\": \"root\", \"path_on_host\": \"/new\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PATCH_DRIVE);
	cr_assert(a.u.drive_update.has_path);
	cr_assert_not(a.u.drive_update.has_rate_limiter);

	route("PATCH", "/network-interfaces/eth0",
	      "{\"iface_id\": \"eth0\", \"rx_rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 100}}}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert(a.u.net_update.has_rx);
	cr_assert_not(a.u.net_update.has_tx);

	route("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}");
	cr_assert_eq(a.type, ACTION_SEND_CTRL_ALT_DEL);
	route("PUT", "/vsock", "{\"vsock_id\": \"old\", \"guest_cid\": 3, \"uds_path\": \"/v\"}");
	cr_assert_eq(r.status, 0, "deprecated vsock_id is accepted: %s", r.fault);
	route("PUT", "/logger", "{\"log_path\": \"/l\", \"level\": \"Warning\", \"module\": \"x\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.u.logger.level, 2);
}

Test(router, bad_bodies_are_400_with_the_field)
{
	route("PUT", "/boot-source", "{");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "An error occurred when deserializing the json body of a request: invalid JSON"));
	route("PUT", "/boot-source", "[1]");
	cr_assert_eq(r.status, 400);
	route("PUT", "/boot-source", NULL);
	cr_assert_eq(r.status, 400, "an empty body");
	route("PUT", "/machine-config", "{\"vcpu_count\": \"two\", \"mem_size_mib\": 128}");
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "An error occurred when deserializing the json body of a request: "
				  "invalid type: string \"two\", expected u8 at line 1 column 20.");
	route("PUT", "/drives/a", "{\"drive_id\": \"b\", \"path_on_host\": \"/r\", \"is_root_device\": false}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "does not match"));
	route("PATCH", "/drives/a", "{\"drive_id\": \"a\"}");
	cr_assert_eq(r.status, 400, "nothing to change");
	route("PATCH", "/drives/a", "{\"drive_id\": \"a\", \"is_read_only\": true}");
	cr_assert_eq(r.status, 400, "not changeable after boot");
	cr_assert_not_null(strstr(r.fault, "unknown field `is_read_only`, expected one of `drive_id`, `path_on_host`, `rate_limiter`"),
			   "%s", r.fault);
	route("PUT", "/actions", "{\"action_type\": \"Reboot\"}");
	cr_assert_eq(r.status, 400);
	route("PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"extra\": 1}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "extra"));
}

Test(router, vm_state_and_snapshots)
{
	route("PATCH", "/vm", "{\"state\": \"Paused\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PAUSE);
	route("PATCH", "/vm", "{\"state\": \"Resumed\"}");
	cr_assert_eq(a.type, ACTION_RESUME);
	route("PATCH", "/vm", "{\"state\": \"Running\"}");
	cr_assert_eq(r.status, 400);
	route("PUT", "/vm", "{\"state\": \"Paused\"}");
	cr_assert_eq(r.status, 400);

	route("PUT", "/snapshot/create", "{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_SNAPSHOT_CREATE);
	cr_assert_eq(a.u.snap_create.type, SNAPSHOT_FULL, "Full is the default");
	cr_assert_str_eq(a.u.snap_create.mem_file_path, "/m");
	route("PUT", "/snapshot/create", "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\"}");
	cr_assert_eq(a.u.snap_create.type, SNAPSHOT_DIFF);
	route("PUT", "/snapshot/create", "{\"snapshot_type\": \"Half\", \"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\"}");
	cr_assert_eq(r.status, 400);
	route("PUT", "/snapshot/create", "{\"snapshot_path\": \"/s\"}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "mem_file_path"));
}

Test(router, snapshot_load_fields)
{
	route("PUT", "/snapshot/load",
	      "{\"snapshot_path\": \"/s\", \"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": \"/u\"},"
	      " \"resume_vm\": true, \"enable_diff_snapshots\": true,"
	      " \"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap7\"}],"
	      " \"vsock_override\": {\"uds_path\": \"/v\"}}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_SNAPSHOT_LOAD);
	const struct snapshot_load *l = &a.u.snap_load;
	cr_assert_eq(l->backend, MEM_BACKEND_UFFD);
	cr_assert_str_eq(l->backend_path, "/u");
	cr_assert(l->resume_vm);
	cr_assert(l->track_dirty_pages, "the deprecated name still turns tracking on");
	cr_assert_eq(l->nnet_overrides, 1);
	cr_assert_str_eq(l->net_overrides[0].host_dev_name, "tap7");
	cr_assert(l->has_vsock_override);
	cr_assert_str_eq(l->vsock_uds_path, "/v");

	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.u.snap_load.backend, MEM_BACKEND_FILE, "deprecated mem_file_path is a File backend");
	cr_assert(!a.u.snap_load.resume_vm);

	static const char *const bad[] = {
		"{\"mem_file_path\": \"/m\"}",
		"{\"snapshot_path\": \"/s\"}",
		"{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"/m\"}}",
		"{\"snapshot_path\": \"/s\", \"mem_backend\": {\"backend_type\": \"Disk\", \"backend_path\": \"/m\"}}",
		"{\"snapshot_path\": \"/s\", \"mem_backend\": {\"backend_type\": \"File\"}}",
		"{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"resume_vm\": 1}",
		"{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"network_overrides\": {}}",
		"{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"network_overrides\": [{\"iface_id\": \"eth0\"}]}",
		"{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"vsock_override\": {\"path\": \"/v\"}}",
		"{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"surprise\": true}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		route("PUT", "/snapshot/load", bad[i]);
		cr_assert_eq(r.status, 400, "accepted: %s", bad[i]);
		cr_assert(r.fault[0]);
	}
}

/* snapshot_load.huge_pages: Firecracker's override of the snapshot's
 * page size; "Snapshot", the default, keeps it. */
Test(router, snapshot_load_huge_pages)
{
	static const struct { const char *body; bool has; enum mem_pages pages; } cases[] = {
		{ "", false, MEM_PAGES_NONE },
		{ ", \"huge_pages\": \"Snapshot\"", false, MEM_PAGES_NONE },
		{ ", \"huge_pages\": \"None\"", true, MEM_PAGES_NONE },
		{ ", \"huge_pages\": \"Transparent\"", true, MEM_PAGES_TRANSPARENT },
		{ ", \"huge_pages\": \"2M\"", true, MEM_PAGES_2M },
	};
	char body[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(body, sizeof(body), "{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\"%s}", cases[i].body);
		route("PUT", "/snapshot/load", body);
		cr_assert_eq(r.status, 0, "%s: %s", body, r.fault);
		cr_assert_eq(a.u.snap_load.has_huge_pages, cases[i].has, "%s", body);
		if (cases[i].has)
			cr_assert_eq(a.u.snap_load.huge_pages, cases[i].pages, "%s", body);
	}
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\", \"huge_pages\": \"1G\"}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "unknown variant `1G`"), "%s", r.fault);
}

/* Bodies are parsed as strictly as the config file: a NUL in a string
 * (cJSON would cut "real.img\u0000.qcow2" to "real.img"), a key given
 * twice (cJSON's lookups would take the first) and text after the JSON
 * value are each a 400 naming the problem. */
Test(router, bodies_are_parsed_strictly)
{
	route("PUT", "/drives/root", "{\"drive_id\": \"root\", \"path_on_host\": \"/real.img\\u0000.qcow2\", \"is_root_device\": true}");
	cr_assert_eq(r.status, 400, "a NUL-escaped path was accepted as %s", a.u.drive.path_on_host);
	cr_assert_not_null(strstr(r.fault, "\\u0000"), "%s", r.fault);
	route("PUT", "/drives/root", "{\"drive_id\": \"root\", \"path_on_host\": \"/a\", \"path_on_host\": \"/b\", \"is_root_device\": true}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "duplicate key \"path_on_host\""), "%s", r.fault);
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\","
	      " \"network_overrides\": [], \"network_overrides\": []}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "duplicate key \"network_overrides\""), "%s", r.fault);
	route("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"} xyz");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "text after the JSON value"), "%s", r.fault);
	route("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}\r\n");
	cr_assert_eq(r.status, 0, "trailing whitespace is fine: %s", r.fault);
}

/* A PATCH names its device by an id that must fit the action's field:
 * cut short, it could name another device. */
Test(router, patch_ids_too_long_are_refused_not_cut)
{
	char path[128], body[256], id[CONFIG_ID_MAX + 1];
	memset(id, 'a', CONFIG_ID_MAX);
	id[CONFIG_ID_MAX] = '\0';
	snprintf(path, sizeof(path), "/drives/%s", id);
	snprintf(body, sizeof(body), "{\"drive_id\": \"%s\", \"path_on_host\": \"/new\"}", id);
	route("PATCH", path, body);
	cr_assert_eq(r.status, 400, "a %d-byte drive_id became \"%s\"", CONFIG_ID_MAX, a.u.drive_update.drive_id);
	cr_assert_not_null(strstr(r.fault, "drives.drive_id: longer than"), "%s", r.fault);
	snprintf(path, sizeof(path), "/network-interfaces/%s", id);
	snprintf(body, sizeof(body), "{\"iface_id\": \"%s\"}", id);
	route("PATCH", path, body);
	cr_assert_eq(r.status, 400, "a %d-byte iface_id became \"%s\"", CONFIG_ID_MAX, a.u.net_update.iface_id);
	cr_assert_not_null(strstr(r.fault, "network-interfaces.iface_id: longer than"), "%s", r.fault);
}

#define DESER "An error occurred when deserializing the json body of a request: "

/* The texts clients and Firecracker's tests match, with serde_json's
 * positions (line and column of the last byte read, from 1). */
Test(router, deserializer_words_and_positions)
{
	route("PUT", "/machine-config", "{\"mem_size_mib\": 128}");
	cr_assert_str_eq(r.fault, DESER "missing field `vcpu_count` at line 1 column 21.");
	route("PUT", "/machine-config", "{\"vcpu_count\": 2}");
	cr_assert_str_eq(r.fault, DESER "missing field `mem_size_mib` at line 1 column 17.");
	route("PUT", "/machine-config", "{\n  \"vcpu_count\": 2\n}");
	cr_assert_str_eq(r.fault, DESER "missing field `mem_size_mib` at line 3 column 1.");
	route("PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"extra\": 1}");
	cr_assert_str_eq(r.fault, DESER "unknown field `extra`, expected one of `iface_id`, `host_dev_name`, "
				  "`guest_mac`, `mtu`, `rx_rate_limiter`, `tx_rate_limiter` at line 1 column 53.");
	route("PUT", "/boot-source", "{\"kernel_image_path\": null}");
	cr_assert_str_eq(r.fault, DESER "invalid type: null, expected a string at line 1 column 26.");
	route("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 18446744073709551616}");
	cr_assert_not_null(strstr(r.fault, DESER "invalid type: floating point"), "%s", r.fault);
	route("PUT", "/actions", "{\"action_type\": \"Reboot\"}");
	cr_assert_str_eq(r.fault, DESER "unknown variant `Reboot`, expected one of `FlushMetrics`, "
				  "`InstanceStart`, `SendCtrlAltDel` at line 1 column 24.");
	route("PATCH", "/vm", "{\"state\": \"Running\"}");
	cr_assert_str_eq(r.fault, DESER "unknown variant `Running`, expected `Paused` or `Resumed` at line 1 column 19.");
	route("PUT", "/drives/a", "{\"drive_id\": \"a\", \"path_on_host\": \"/r\", \"is_root_device\": false, "
				 "\"rate_limiter\": {\"ops\": {\"size\": 1}}}");
	cr_assert_not_null(strstr(r.fault, DESER "missing field `refill_time` at line 1 column 100."), "%s", r.fault);

	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"foo\", \"mem_backend\": {\"backend_type\": \"foo\", \"backend_path\": \"bar\"}}");
	cr_assert_not_null(strstr(r.fault, "unknown variant `foo`, expected `File` or `Uffd`"), "%s", r.fault);
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"foo\", \"mem_backend\": {\"backend_path\": \"bar\"}}");
	cr_assert_not_null(strstr(r.fault, DESER "missing field `backend_type`"), "%s", r.fault);
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"foo\", \"mem_backend\": {\"backend_type\": \"File\"}}");
	cr_assert_not_null(strstr(r.fault, DESER "missing field `backend_path`"), "%s", r.fault);
	route("PUT", "/snapshot/load", "{\"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"bar\"}}");
	cr_assert_not_null(strstr(r.fault, DESER "missing field `snapshot_path`"), "%s", r.fault);
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"foo\"}");
	cr_assert_str_eq(r.fault, DESER "missing field: either `mem_backend` or `mem_file_path` is required.");
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"foo\", \"mem_file_path\": \"bar\", "
				      "\"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"bar\"}}");
	cr_assert_str_eq(r.fault, DESER "too many fields: either `mem_backend` or `mem_file_path` exclusively is required.");
}

/* Firecracker's answers for a body where none belongs and none where one
 * does, whatever the path. */
Test(router, bodies_where_none_belongs)
{
	route("PUT", "/boot-source", NULL);
	cr_assert_str_eq(r.fault, "Empty PUT request.");
	route("PATCH", "/machine-config", NULL);
	cr_assert_str_eq(r.fault, "Empty PATCH request.");
	route("PATCH", "/machine-config", "{}");
	cr_assert_str_eq(r.fault, "Empty PATCH request.");
	route("PATCH", "/machine-config", "{\"vcpu_count\": null, \"smt\": null}");
	cr_assert_str_eq(r.fault, "Empty PATCH request.");
	route("PATCH", "/machine-config", "{\"smt\": false}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	route("GET", "/", "{}");
	cr_assert_str_eq(r.fault, "GET request cannot have a body.");
	route("PUT", "/nope", NULL);
	cr_assert_str_eq(r.fault, "Empty PUT request.");
}

/* Explicit null for an optional field is the field absent. */
Test(router, null_is_absent)
{
	route("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\", \"initrd_path\": null, \"boot_args\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_str_eq(a.u.boot.initrd_path, "");
	cr_assert_not(a.u.boot.has_boot_args);
	route("PUT", "/drives/a", "{\"drive_id\": \"a\", \"partuuid\": null, \"is_root_device\": false, "
				 "\"cache_type\": null, \"is_read_only\": null, \"path_on_host\": \"/r\", "
				 "\"rate_limiter\": null, \"io_engine\": null, \"socket\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	route("PUT", "/drives/a", "{\"drive_id\": \"a\", \"is_root_device\": false, \"path_on_host\": \"/r\", "
				 "\"rate_limiter\": {\"bandwidth\": {\"size\": 10, \"one_time_burst\": null, \"refill_time\": 100}, \"ops\": null}}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.u.drive.rate_limiter.bandwidth.size, 10);
	cr_assert_eq(a.u.drive.rate_limiter.bandwidth.one_time_burst, 0);
	route("PUT", "/network-interfaces/n", "{\"iface_id\": \"n\", \"host_dev_name\": \"t\", \"guest_mac\": null, "
					     "\"rx_rate_limiter\": null, \"tx_rate_limiter\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_not(a.u.net.has_mac);
	route("PUT", "/vsock", "{\"vsock_id\": null, \"guest_cid\": 3, \"uds_path\": \"/v\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_str_eq(r.deprecation, "", "a null vsock_id is no use of it");
	route("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"smt\": null, "
				       "\"cpu_template\": null, \"track_dirty_pages\": null, \"huge_pages\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_str_eq(r.deprecation, "");
	route("PATCH", "/network-interfaces/n", "{\"iface_id\": \"n\", \"rx_rate_limiter\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_not(a.u.net_update.has_rx);
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"/s\", \"mem_file_path\": null, "
				      "\"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"/m\"}, "
				      "\"network_overrides\": null, \"vsock_override\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_str_eq(r.deprecation, "");
	route("PUT", "/logger", "{\"log_path\": \"/l\", \"level\": null, \"show_level\": null, \"module\": null}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
}

/* The requests Firecracker answers with a Deprecation header. */
Test(router, deprecated_fields)
{
	route("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 256, \"cpu_template\": \"None\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_str_eq(r.deprecation, "PUT /machine-config: cpu_template field is deprecated.");
	route("PATCH", "/machine-config", "{\"cpu_template\": \"None\"}");
	cr_assert_str_eq(r.deprecation, "PATCH /machine-config: cpu_template field is deprecated.");
	route("PUT", "/vsock", "{\"vsock_id\": \"v\", \"guest_cid\": 3, \"uds_path\": \"/v\"}");
	cr_assert_str_eq(r.deprecation, "PUT /vsock: vsock_id field is deprecated.");
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"/s\", \"mem_file_path\": \"/m\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_str_eq(r.deprecation, "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated.");
	route("PUT", "/snapshot/load", "{\"snapshot_path\": \"/s\", \"enable_diff_snapshots\": true, "
				      "\"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"/m\"}}");
	cr_assert_str_eq(r.deprecation, "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are deprecated.");
	route("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 256}");
	cr_assert_str_eq(r.deprecation, "");
}
