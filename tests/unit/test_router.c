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
	route("GET", "/nope", NULL);
	cr_assert_eq(r.status, 404);
	route("GET", "/drives/", NULL);
	cr_assert_eq(r.status, 404, "an empty id is no path");
	route("PUT", "/drives/a/b", "{}");
	cr_assert_eq(r.status, 404);
	route("DELETE", "/machine-config", NULL);
	cr_assert_eq(r.status, 405);
	route("GET", "/boot-source", NULL);
	cr_assert_eq(r.status, 405);
	route("PUT", "/balloon", "{\"amount_mib\": 1, \"deflate_on_oom\": false}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "not supported"));
	route("GET", "/hotplug/memory", NULL);
	cr_assert_eq(r.status, 400, "an endpoint ember lacks answers for its own methods");
	route("DELETE", "/mmds", NULL);
	cr_assert_eq(r.status, 405, "an endpoint ember lacks still has its methods");
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
	cr_assert_not_null(strstr(r.fault, "invalid JSON"));
	route("PUT", "/boot-source", "[1]");
	cr_assert_eq(r.status, 400);
	route("PUT", "/boot-source", NULL);
	cr_assert_eq(r.status, 400, "an empty body");
	route("PUT", "/machine-config", "{\"vcpu_count\": \"two\", \"mem_size_mib\": 128}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "vcpu_count"));
	route("PUT", "/drives/a", "{\"drive_id\": \"b\", \"path_on_host\": \"/r\", \"is_root_device\": false}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "does not match"));
	route("PATCH", "/drives/a", "{\"drive_id\": \"a\"}");
	cr_assert_eq(r.status, 400, "nothing to change");
	route("PATCH", "/drives/a", "{\"drive_id\": \"a\", \"is_read_only\": true}");
	cr_assert_eq(r.status, 400, "not changeable after boot");
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
	cr_assert_eq(r.status, 405);

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
