/* virtio-balloon: its configuration (config file, API bodies, GET
 * /vm/config), the coalescing of the guest's page-frame numbers, the
 * checked discard of guest ranges and the statistics parser. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../api/config_json.h"
#include "../../api/router.h"
#include "../../vmm/memory.h"
#include "../../vmm/virtio/balloon.h"

static struct vmm_config cfg;
static char err[512];

static int parse(const char *text)
{
	config_defaults(&cfg);
	err[0] = 0;
	return config_json_file(text, strlen(text), &cfg, err, sizeof(err));
}

#define BOOT "\"boot-source\": {\"kernel_image_path\": \"/k\"}"

Test(balloon, config_file_section_and_vm_config)
{
	int r = parse("{" BOOT ", \"balloon\": {\"amount_mib\": 16, \"deflate_on_oom\": true,"
		      " \"stats_polling_interval_s\": 2, \"free_page_reporting\": true}}");
	cr_assert_eq(r, 0, "%s", err);
	cr_assert(cfg.balloon.set);
	cr_assert_eq(cfg.balloon.amount_mib, 16);
	cr_assert(cfg.balloon.deflate_on_oom);
	cr_assert_eq(cfg.balloon.stats_polling_interval_s, 2);
	cr_assert(cfg.balloon.free_page_reporting);
	cr_assert_not(cfg.balloon.free_page_hinting);
	cJSON *o = config_json_vm_obj(&cfg);
	char *text = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "balloon"));
	cr_assert_str_eq(text, "{\"amount_mib\":16,\"deflate_on_oom\":true,\"stats_polling_interval_s\":2,"
			 "\"free_page_hinting\":false,\"free_page_reporting\":true}");
	free(text);
	cJSON_Delete(o);

	/* What GET /vm/config writes parses back into the same. */
	struct balloon_config first = cfg.balloon;
	cr_assert_eq(parse("{" BOOT ", \"balloon\": {\"amount_mib\": 16, \"deflate_on_oom\": true,"
			   " \"stats_polling_interval_s\": 2, \"free_page_hinting\": false,"
			   " \"free_page_reporting\": true}}"), 0, "%s", err);
	cr_assert_eq(memcmp(&cfg.balloon, &first, sizeof(first)), 0);

	cr_assert_eq(parse("{" BOOT ", \"balloon\": null}"), 0, "%s", err);
	cr_assert_not(cfg.balloon.set);
	cr_assert_neq(parse("{" BOOT ", \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 32},"
			    " \"balloon\": {\"amount_mib\": 33, \"deflate_on_oom\": true}}"), 0);
	cr_assert_str_eq(err, "Balloon config error: Amount of pages requested is too large.");
	cr_assert_neq(parse("{" BOOT ", \"balloon\": {\"amount_mib\": 1}}"), 0);
	cr_assert_not_null(strstr(err, "missing field `deflate_on_oom`"), "%s", err);
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
	memset(&r, 0, sizeof(r));
	api_route(&req, &a, &r);
}

Test(balloon, api_bodies)
{
	route("PUT", "/balloon", "{\"amount_mib\": 4, \"deflate_on_oom\": false}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PUT_BALLOON);
	cr_assert_eq(a.u.balloon.amount_mib, 4);
	cr_assert_eq(a.u.balloon.stats_polling_interval_s, 0, "the interval defaults to 0");
	route("PUT", "/balloon", "{\"amount_mib\": 4294967296, \"deflate_on_oom\": false}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "expected u32"), "%s", r.fault);
	route("PUT", "/balloon", "{\"amount_mib\": 1.5, \"deflate_on_oom\": false}");
	cr_assert_eq(r.status, 400, "a fraction is no u32");
	route("PUT", "/balloon", "{\"amount_mib\": 1, \"deflate_on_oom\": false, \"stats_polling_interval_s\": -1}");
	cr_assert_eq(r.status, 400);
	route("PUT", "/balloon", "{\"amount_mib\": 1, \"deflate_on_oom\": false, \"free_page_hinting\": \"no\"}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "expected a boolean"), "%s", r.fault);

	route("PATCH", "/balloon", "{\"amount_mib\": 33554432}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PATCH_BALLOON);
	cr_assert_eq(a.u.balloon_value, 33554432);
	route("PATCH", "/balloon", "{}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "missing field `amount_mib`"), "%s", r.fault);
	route("PATCH", "/balloon", "{\"amount_mib\": 1, \"stats_polling_interval_s\": 1}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "unknown field `stats_polling_interval_s`"), "%s", r.fault);

	route("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 65535}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_PATCH_BALLOON_STATS);
	cr_assert_eq(a.u.balloon_value, 65535);
	route("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 65536}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "expected u16"), "%s", r.fault);

	route("GET", "/balloon", NULL);
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_GET_BALLOON);
	route("GET", "/balloon/statistics", NULL);
	cr_assert_eq(a.type, ACTION_GET_BALLOON_STATS);
	route("PUT", "/balloon/statistics", "{\"stats_polling_interval_s\": 1}");
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: PUT balloon.");
}

/* /balloon/hinting/start|stop|status as Firecracker parses them: start's
 * body is optional (acknowledge_on_stop defaults to true, other keys are
 * ignored), stop's is ignored, other sub-paths are refused by name. */
Test(balloon, hinting_routes)
{
	route("PATCH", "/balloon/hinting/start", NULL);
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_BALLOON_HINT_START);
	cr_assert_eq(a.u.balloon_value, 1, "acknowledge_on_stop defaults to true");
	route("PATCH", "/balloon/hinting/start", "{\"acknowledge_on_stop\": false}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.u.balloon_value, 0);
	route("PATCH", "/balloon/hinting/start", "{\"other\": 1}");
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.u.balloon_value, 1);
	route("PATCH", "/balloon/hinting/start", "{\"acknowledge_on_stop\": \"not valid\"}");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "invalid type: string \"not valid\", expected a boolean"), "%s", r.fault);
	route("PATCH", "/balloon/hinting/start", "{\"acknowledge_on_stop\": ");
	cr_assert_eq(r.status, 400);
	cr_assert_not_null(strstr(r.fault, "An error occurred when deserializing the json body"), "%s", r.fault);
	route("PATCH", "/balloon/hinting/stop", NULL);
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_BALLOON_HINT_STOP);
	route("PATCH", "/balloon/hinting/stop", "{}");
	cr_assert_eq(a.type, ACTION_BALLOON_HINT_STOP);
	route("GET", "/balloon/hinting/status", NULL);
	cr_assert_eq(r.status, 0, "%s", r.fault);
	cr_assert_eq(a.type, ACTION_GET_BALLOON_HINT_STATUS);

	route("PATCH", "/balloon/hinting/other", NULL);
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "Unrecognized PATCH request path `/hinting/other`.");
	route("PATCH", "/balloon/hinting", NULL);
	cr_assert_str_eq(r.fault, "Unrecognized PATCH request path `/hinting/`.");
	route("GET", "/balloon/hinting", NULL);
	cr_assert_str_eq(r.fault, "Unrecognized GET request path `/hinting/`.");
	route("GET", "/balloon/hinting/start", NULL);
	cr_assert_str_eq(r.fault, "Unrecognized GET request path `/hinting/start`.");
	route("PUT", "/balloon/hinting/start", "{}");
	cr_assert_eq(r.status, 400);
	cr_assert_str_eq(r.fault, "Invalid request method and/or path: PUT balloon.");
	route("GET", "/balloon/hintingx", NULL);
	cr_assert_eq(r.endpoint, EP_UNKNOWN);
}

Test(balloon, coalesce_runs_in_order)
{
	const uint32_t pfns[] = { 10, 11, 12, 5, 6, 13, 13, 0xffffffff, 0 };
	struct balloon_range out[9];
	unsigned n = virtio_balloon_coalesce(pfns, 9, out);
	cr_assert_eq(n, 6);
	cr_assert_eq(out[0].pfn, 10);
	cr_assert_eq(out[0].n, 3);
	cr_assert_eq(out[1].pfn, 5);
	cr_assert_eq(out[1].n, 2);
	cr_assert_eq(out[2].pfn, 13);
	cr_assert_eq(out[2].n, 1);
	cr_assert_eq(out[3].pfn, 13, "a repeated frame starts a new run");
	cr_assert_eq(out[4].pfn, 0xffffffff);
	cr_assert_eq(out[4].n, 1);
	cr_assert_eq(out[5].pfn, 0, "no wrap-around from the last frame");
	cr_assert_eq(virtio_balloon_coalesce(pfns, 0, out), 0);
}

Test(balloon, discard_is_range_checked)
{
	struct guest_mem mem;
	cr_assert_eq(mem_init(&mem, 1 << 20), 0);
	memset(mem.host, 0xaa, 1 << 20);
	cr_assert_eq(mem_discard(&mem, 4096, 8192), 0);
	cr_assert_eq(mem.host[4096], 0, "a discarded page reads zero");
	cr_assert_eq(mem.host[3 * 4096], 0xaa, "the next page is untouched");
	cr_assert_eq(mem.host[4095], 0xaa, "the previous page is untouched");
	cr_assert_eq(mem_discard(&mem, 1 << 20, 4096), -EFAULT, "beyond RAM");
	cr_assert_eq(mem_discard(&mem, (1 << 20) - 4096, 8192), -EFAULT, "crossing the end");
	cr_assert_eq(mem_discard(&mem, 0xfffffffffffff000ULL, 0x2000), -EFAULT, "gpa + len wraps");
	cr_assert_eq(mem_discard(&mem, 100, 4096), -EINVAL, "unaligned");
	cr_assert_eq(mem_discard(&mem, 0, 100), -EINVAL, "unaligned length");
	/* Host-pointer ranges: only whole pages inside are given back. */
	memset(mem.host, 0xaa, 1 << 20);
	cr_assert_eq(mem_discard_host(&mem, mem.host + 100, 2 * 4096), 4096);
	cr_assert_eq(mem.host[100], 0xaa);
	cr_assert_eq(mem.host[4096], 0);
	cr_assert_eq(mem.host[2 * 4096], 0xaa);
	cr_assert_eq(mem_discard_host(&mem, mem.host + 10, 100), 0, "no whole page");
	cr_assert_eq(mem_discard_host(&mem, mem.host + (1 << 20) - 4096, 8192), -EFAULT);
	cr_assert_eq(mem_discard_host(&mem, mem.host - 4096, 4096), -EFAULT);
	mem_destroy(&mem);
}

static void put_stat(uint8_t *p, uint16_t tag, uint64_t v)
{
	p[0] = (uint8_t)tag;
	p[1] = (uint8_t)(tag >> 8);
	for (int i = 0; i < 8; i++)
		p[2 + i] = (uint8_t)(v >> (8 * i));
}

Test(balloon, statistics_parser)
{
	uint8_t buf[45];
	put_stat(buf, 5, 256ULL << 20);        /* total_memory */
	put_stat(buf + 10, 99, 7);             /* unknown: ignored */
	put_stat(buf + 20, 6, 0x0102030405060708ULL);
	put_stat(buf + 30, 15, 1);             /* direct_reclaim */
	uint64_t stats[BALLOON_NSTATS] = { 0 };
	uint32_t present = 0;
	cr_assert_eq(virtio_balloon_parse_stats(buf, sizeof(buf), stats, &present), 3,
		     "the trailing 5 bytes are no entry");
	cr_assert_eq(present, (1u << 5) | (1u << 6) | (1u << 15));
	cr_assert_eq(stats[5], 256ULL << 20);
	cr_assert_eq(stats[6], 0x0102030405060708ULL);
	cr_assert_str_eq(virtio_balloon_stat_name(5), "total_memory");
	cr_assert_str_eq(virtio_balloon_stat_name(6), "available_memory");
	cr_assert_str_eq(virtio_balloon_stat_name(15), "direct_reclaim");
	cr_assert_null(virtio_balloon_stat_name(16));
}
