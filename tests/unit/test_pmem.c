/* virtio-pmem: its configuration (config file, API bodies, Firecracker's
 * root-device rules, GET /vm/config), the region's size and the check of
 * a request chain. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/config_json.h"
#include "../../api/router.h"
#include "../../vmm/virtio/pmem.h"

static struct vmm_config cfg;
static char err[512];

static int parse(const char *text)
{
	config_defaults(&cfg);
	err[0] = 0;
	return config_json_file(text, strlen(text), &cfg, err, sizeof(err));
}

#define BOOT "\"boot-source\": {\"kernel_image_path\": \"/k\"}"

Test(pmem, config_file_section)
{
	int r = parse("{" BOOT ", \"pmem\": [{\"id\": \"root\", \"path_on_host\": \"/r.img\", \"root_device\": true,"
		      " \"read_only\": true, \"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 1000}}},"
		      " {\"id\": \"scratch\", \"path_on_host\": \"/s.img\"}]}");
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_eq(cfg.npmems, 2);
	cr_assert_str_eq(cfg.pmems[0].id, "root");
	cr_assert_str_eq(cfg.pmems[0].path_on_host, "/r.img");
	cr_assert(cfg.pmems[0].root_device);
	cr_assert(cfg.pmems[0].read_only);
	cr_assert_eq(cfg.pmems[0].rate_limiter.ops.size, 10);
	cr_assert_not(cfg.pmems[1].root_device, "root_device defaults to false");
	cr_assert_not(cfg.pmems[1].read_only, "read_only defaults to false");
	cr_assert_eq(config_pmem_root(&cfg), 0);
}

Test(pmem, config_file_refusals)
{
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"id\": \"p\"}]}"), 0);
	cr_assert_not_null(strstr(err, "missing field `path_on_host`"), "%s", err);
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"path_on_host\": \"/p\"}]}"), 0);
	cr_assert_not_null(strstr(err, "missing field `id`"), "%s", err);
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"id\": \"p\", \"path_on_host\": \"/p\", \"size\": 1}]}"), 0);
	cr_assert_not_null(strstr(err, "unknown field `size`"), "%s", err);
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"id\": \"p\", \"path_on_host\": \"/p\", \"read_only\": 1}]}"), 0);
	cr_assert_not_null(strstr(err, "pmem.read_only"), "%s", err);
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"id\": \"a b\", \"path_on_host\": \"/p\"}]}"), 0);
	cr_assert_not_null(strstr(err, "pmem.id"), "%s", err);
	cr_assert_neq(parse("{" BOOT ", \"pmem\": {}}"), 0);
	cr_assert_not_null(strstr(err, "pmem: expected a JSON array"), "%s", err);
}

/* Firecracker's rules: one root device among drives and pmem devices. */
Test(pmem, one_root_device)
{
	cr_assert_neq(parse("{" BOOT ", \"drives\": [{\"drive_id\": \"d\", \"path_on_host\": \"/d\","
			    " \"is_root_device\": true}], \"pmem\": [{\"id\": \"p\", \"path_on_host\": \"/p\","
			    " \"root_device\": true}]}"), 0);
	cr_assert_str_eq(err, "Attempt to add pmem as a root device while the root device defined as a block device");
	/* Whatever the order of the sections. */
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"id\": \"p\", \"path_on_host\": \"/p\", \"root_device\": true}],"
			    " \"drives\": [{\"drive_id\": \"d\", \"path_on_host\": \"/d\", \"is_root_device\": true}]}"),
		      0);
	cr_assert_str_eq(err, "Attempt to add pmem as a root device while the root device defined as a block device");
	cr_assert_neq(parse("{" BOOT ", \"pmem\": [{\"id\": \"p\", \"path_on_host\": \"/p\", \"root_device\": true},"
			    " {\"id\": \"q\", \"path_on_host\": \"/q\", \"root_device\": true}]}"), 0);
	cr_assert_str_eq(err, "A root pmem device already exist");
}

/* PUT /pmem/{id} semantics: a known id is replaced (and may stay or stop
 * being the root), a refusal changes nothing. */
Test(pmem, put_replaces_by_id)
{
	config_defaults(&cfg);
	struct pmem_config p = { .id = "pmem", .path_on_host = "/f", .root_device = true };
	cr_assert_eq(config_pmem_put(&cfg, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(config_pmem_put(&cfg, &p, err, sizeof(err)), 0, "the root replacing itself");
	struct pmem_config q = { .id = "pmem2", .path_on_host = "/f", .root_device = true };
	cr_assert_neq(config_pmem_put(&cfg, &q, err, sizeof(err)), 0);
	cr_assert_str_eq(err, "A root pmem device already exist");
	cr_assert_eq(cfg.npmems, 1, "a refusal adds nothing");
	p.root_device = false;
	cr_assert_eq(config_pmem_put(&cfg, &p, err, sizeof(err)), 0);
	cr_assert_eq(cfg.npmems, 1);
	cr_assert_eq(config_pmem_root(&cfg), -1);
	cr_assert_eq(config_pmem_put(&cfg, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.npmems, 2);
	cr_assert_eq(config_pmem_root(&cfg), 1);

	cfg.ndrives = 1;
	cfg.drives[0].is_root_device = true;
	cr_assert_neq(config_pmem_put(&cfg, &q, err, sizeof(err)), 0);
	cr_assert_str_eq(err, "Attempt to add pmem as a root device while the root device defined as a block device");
}

Test(pmem, vm_config_round_trip)
{
	cr_assert_eq(parse("{" BOOT ", \"pmem\": [{\"id\": \"p0\", \"path_on_host\": \"/p\", \"read_only\": true,"
			   " \"rate_limiter\": {\"bandwidth\": {\"size\": 1000000, \"refill_time\": 100}}},"
			   " {\"id\": \"p1\", \"path_on_host\": \"/q\", \"root_device\": true}]}"), 0, "%s", err);
	cJSON *o = config_json_vm_obj(&cfg);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	cr_assert_not_null(strstr(text, "\"pmem\":[{\"id\":\"p0\",\"path_on_host\":\"/p\",\"root_device\":false,"
				  "\"read_only\":true,\"rate_limiter\":{\"bandwidth\":{\"size\":1000000,"
				  "\"one_time_burst\":null,\"refill_time\":100},\"ops\":null}},"
				  "{\"id\":\"p1\",\"path_on_host\":\"/q\",\"root_device\":true,\"read_only\":false,"
				  "\"rate_limiter\":null}]"), "%s", text);
	struct vmm_config first = cfg;
	cr_assert_eq(parse(text), 0, "GET /vm/config reads back as a config file: %s", err);
	cr_assert_eq(cfg.npmems, 2);
	cr_assert_eq(memcmp(cfg.pmems, first.pmems, sizeof(cfg.pmems)), 0);
	free(text);
}

static struct action a;
static struct route_result r;

static void route(const char *method, const char *path, const char *body)
{
	static char buf[2048];
	snprintf(buf, sizeof(buf), "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", method, path,
		 body ? strlen(body) : 0, body ? body : "");
	struct http_request req;
	cr_assert_gt(http_parse_request(buf, strlen(buf), 4096, &req), 0, "%s", buf);
	memset(&a, 0, sizeof(a));
	api_route(&req, &a, &r);
}

Test(pmem, api_bodies)
{
	route("PUT", "/pmem/p0", "{\"id\": \"p0\", \"path_on_host\": \"/f\", \"root_device\": true}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PUT_PMEM);
	cr_assert(a.u.pmem.root_device);
	cr_assert_str_eq(a.u.pmem.path_on_host, "/f");

	route("PUT", "/pmem/pmem", "{\"id\": \"pmem\"}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "An error occurred when deserializing the json body of a request: "
				  "missing field `path_on_host`"), "%s", r.fault);
	route("PUT", "/pmem/p1", "{\"id\": \"p0\", \"path_on_host\": \"/f\"}");
	cr_assert_str_eq(r.fault, "The id from the path does not match the id from the body!");

	route("PATCH", "/pmem/p0", "{\"id\": \"p0\", \"rate_limiter\": {\"ops\": {\"size\": 1, \"refill_time\": 100}}}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PATCH_PMEM);
	cr_assert(a.u.pmem_update.has_rate_limiter);
	cr_assert_eq(a.u.pmem_update.rate_limiter.ops.size, 1);
	route("PATCH", "/pmem/p0", "{\"id\": \"p0\"}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_not(a.u.pmem_update.has_rate_limiter);
	route("PATCH", "/pmem/p0", "{\"id\": \"p0\", \"path_on_host\": \"foo\"}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "unknown field `path_on_host`"), "%s", r.fault);

	route("DELETE", "/pmem/p0", NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "not supported"), "hot-unplug: %s", r.fault);
}

Test(pmem, region_size_is_2mib_aligned)
{
	cr_assert_eq(virtio_pmem_region_size(1), 2ULL << 20);
	cr_assert_eq(virtio_pmem_region_size(1ULL << 20), 2ULL << 20);
	cr_assert_eq(virtio_pmem_region_size(2ULL << 20), 2ULL << 20);
	cr_assert_eq(virtio_pmem_region_size((2ULL << 20) + 1), 4ULL << 20);
}

Test(pmem, request_chains)
{
	uint32_t req = 0, resp = 0xffffffff, type = 99;
	uint8_t *status = NULL;
	struct virtq_chain *c = calloc(1, sizeof(*c));
	/* The request, then the answer: good. */
	c->nsegs = 2;
	c->nread = 1;
	c->read_len = 4;
	c->write_len = 4;
	c->segs[0] = (struct virtq_seg){ (uint8_t *)&req, 4, false };
	c->segs[1] = (struct virtq_seg){ (uint8_t *)&resp, 4, true };
	cr_assert_eq(virtio_pmem_parse(c, &type, &status), 0);
	cr_assert_eq(type, 0);
	cr_assert_eq(status, (uint8_t *)&resp);
	/* No answer buffer, a short one, a short request. */
	c->nsegs = 1;
	c->write_len = 0;
	cr_assert_neq(virtio_pmem_parse(c, &type, &status), 0);
	c->nsegs = 2;
	c->segs[1].len = 2;
	c->write_len = 2;
	cr_assert_neq(virtio_pmem_parse(c, &type, &status), 0);
	c->segs[1].len = 4;
	c->write_len = 4;
	c->segs[0].len = 2;
	c->read_len = 2;
	cr_assert_neq(virtio_pmem_parse(c, &type, &status), 0);
	free(c);
}
