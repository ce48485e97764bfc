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
	route("GET", "/snapshot/create", NULL);
	cr_assert_eq(r.status, 405, "a real endpoint ember lacks still has its methods");
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
