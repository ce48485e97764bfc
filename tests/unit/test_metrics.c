#include <cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../api/config_json.h"
#include "../../vmm/machine.h"
#include "../../vmm/metrics.h"
#include "../../vmm/vcpu.h"
#include "../../vmm/virtio/blk.h"
#include "../../vmm/virtio/net.h"
#include "../../vmm/virtio/rng.h"
#include "../../vmm/virtio/vsock.h"

/* Firecracker's metrics schema, as its tests check it: group -> keys, a
 * key ending in "{}" being a latency aggregate (min_us, max_us, sum_us),
 * a group ending in "_" the shape of each per-device group with that
 * prefix. Shared with tests/integration/metrics_check.py. */
#define SCHEMA_PATH "tests/data/firecracker-metrics-keys.json"

static cJSON *load_schema(void)
{
	FILE *f = fopen(SCHEMA_PATH, "r");
	cr_assert_not_null(f, "cannot open %s (run from the top of the tree)", SCHEMA_PATH);
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	cJSON *s = cJSON_Parse(buf);
	cr_assert_not_null(s);
	return s;
}

static bool is_uint(const cJSON *v)
{
	return cJSON_IsNumber(v) && v->valuedouble >= 0 && (double)(uint64_t)v->valuedouble == v->valuedouble;
}

/* group has exactly the keys of shape, each a non-negative integer (or
 * an aggregate of three). */
static void check_group(const char *name, const cJSON *group, const cJSON *shape)
{
	cr_assert(cJSON_IsObject(group), "%s is not an object", name);
	int want = 0;
	for (const cJSON *k = shape->child; k; k = k->next, want++) {
		char key[96];
		snprintf(key, sizeof(key), "%s", k->valuestring);
		size_t len = strlen(key);
		bool is_agg = len > 2 && strcmp(key + len - 2, "{}") == 0;
		if (is_agg)
			key[len - 2] = 0;
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(group, key);
		cr_assert_not_null(v, "%s.%s is missing", name, key);
		if (is_agg) {
			cr_assert_eq(cJSON_GetArraySize(v), 3, "%s.%s is not min/max/sum", name, key);
			cr_assert(is_uint(cJSON_GetObjectItemCaseSensitive(v, "min_us")), "%s.%s.min_us", name, key);
			cr_assert(is_uint(cJSON_GetObjectItemCaseSensitive(v, "max_us")), "%s.%s.max_us", name, key);
			cr_assert(is_uint(cJSON_GetObjectItemCaseSensitive(v, "sum_us")), "%s.%s.sum_us", name, key);
		} else {
			cr_assert(is_uint(v), "%s.%s is not a non-negative integer", name, key);
		}
	}
	cr_assert_eq(cJSON_GetArraySize(group), want, "%s has keys the schema lacks", name);
}

/* line is a valid Firecracker metrics line: every group, nothing else but
 * per-device groups, "id" and "properties". */
static void check_line(const cJSON *line)
{
	cJSON *schema = load_schema();
	cr_assert(is_uint(cJSON_GetObjectItemCaseSensitive(line, "utc_timestamp_ms")));
	for (const cJSON *g = schema->child; g; g = g->next) {
		size_t len = strlen(g->string);
		if (g->string[len - 1] == '_')
			continue;
		check_group(g->string, cJSON_GetObjectItemCaseSensitive(line, g->string), g);
	}
	for (const cJSON *it = line->child; it; it = it->next) {
		if (strcmp(it->string, "utc_timestamp_ms") == 0 || cJSON_GetObjectItemCaseSensitive(schema, it->string))
			continue;
		if (strcmp(it->string, "id") == 0) {
			cr_assert(cJSON_IsString(it));
			continue;
		}
		if (strcmp(it->string, "properties") == 0) {
			for (const cJSON *p = it->child; p; p = p->next)
				cr_assert(cJSON_IsString(p));
			continue;
		}
		const cJSON *shape = NULL;
		for (const cJSON *g = schema->child; g; g = g->next) {
			size_t len = strlen(g->string);
			if (g->string[len - 1] == '_' && strncmp(it->string, g->string, len) == 0)
				shape = g;
		}
		cr_assert_not_null(shape, "group \"%s\" is not in Firecracker's schema", it->string);
		check_group(it->string, it, shape);
	}
	cJSON_Delete(schema);
}

static double get(const cJSON *line, const char *group, const char *key)
{
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(line, group);
	cr_assert_not_null(g, "no group %s", group);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, key);
	cr_assert_not_null(v, "no %s.%s", group, key);
	return v->valuedouble;
}

/* A machine with two drives, an interface, vsock, entropy and a vCPU: only
 * what metrics read. */
static struct machine *fake_machine(void)
{
	struct machine *m = calloc(1, sizeof(*m));
	for (int i = 0; i < 2; i++) {
		m->blk[i] = calloc(1, sizeof(*m->blk[i]));
		snprintf(m->blk[i]->cfg.drive_id, sizeof(m->blk[i]->cfg.drive_id), "%s", i ? "scratch" : "rootfs");
		pthread_mutex_init(&m->blk[i]->vd.lock, NULL);
	}
	m->nblk = 2;
	m->net[0] = calloc(1, sizeof(*m->net[0]));
	snprintf(m->net[0]->cfg.iface_id, sizeof(m->net[0]->cfg.iface_id), "eth0");
	pthread_mutex_init(&m->net[0]->vd.lock, NULL);
	m->nnet = 1;
	m->vsock = calloc(1, sizeof(*m->vsock));
	pthread_mutex_init(&m->vsock->vd.lock, NULL);
	m->rng = calloc(1, sizeof(*m->rng));
	pthread_mutex_init(&m->rng->vd.lock, NULL);
	m->vm.nvcpus = 1;
	m->vm.vcpus = calloc(1, sizeof(*m->vm.vcpus));
	pthread_mutex_init(&m->serial.lock, NULL);
	pthread_mutex_init(&m->i8042.lock, NULL);
	return m;
}

static struct metrics met;
static struct vmm_config cfg;

static void setup(void)
{
	metrics_init(&met, "vm-9");
	config_defaults(&cfg);
}

TestSuite(metrics, .init = setup);

Test(metrics, before_the_start_every_key_of_the_schema)
{
	cfg.ndrives = 1;
	snprintf(cfg.drives[0].drive_id, sizeof(cfg.drives[0].drive_id), "rootfs");
	cfg.nnets = 1;
	snprintf(cfg.nets[0].iface_id, sizeof(cfg.nets[0].iface_id), "eth0");
	cJSON *line = metrics_line(&met, metrics_totals(&met, &cfg, NULL));
	check_line(line);
	cr_assert_not_null(cJSON_GetObjectItemCaseSensitive(line, "block_rootfs"));
	cr_assert_not_null(cJSON_GetObjectItemCaseSensitive(line, "net_eth0"));
	/* No id, no properties, no group of ember's unless asked for. */
	cr_assert_null(cJSON_GetObjectItemCaseSensitive(line, "id"));
	cr_assert_null(cJSON_GetObjectItemCaseSensitive(line, "properties"));
	cr_assert_null(cJSON_GetObjectItemCaseSensitive(line, "ember"));
	cr_assert_str_eq(line->child->string, "utc_timestamp_ms");
	cJSON_Delete(line);
}

Test(metrics, no_device_still_has_the_aggregate_groups)
{
	cJSON *line = metrics_line(&met, metrics_totals(&met, &cfg, NULL));
	check_line(line);
	cr_assert_eq(get(line, "block", "read_count"), 0);
	cr_assert_eq(get(line, "net", "tx_count"), 0);
	cJSON_Delete(line);
}

Test(metrics, counts_are_per_flush_and_stored_values_stay)
{
	struct machine *m = fake_machine();
	met.startup_us = 1234;
	m->blk[0]->stats.read_count = 10;
	m->blk[0]->stats.read_bytes = 4096;
	atomic_store(&m->vm.vcpus[0].stats.exits[VCPU_EXIT_MMIO_WRITE], 7);
	atomic_store(&m->vm.vcpus[0].stats.max_us[VCPU_EXIT_MMIO_WRITE], 9);
	metrics_latency(METRICS_PAUSE_VM, 300, 200);

	cJSON *l1 = metrics_line(&met, metrics_totals(&met, &cfg, m));
	check_line(l1);
	cr_assert_eq(get(l1, "block_rootfs", "read_count"), 10);
	cr_assert_eq(get(l1, "vcpu", "exit_mmio_write"), 7);

	m->blk[0]->stats.read_count = 15;
	atomic_store(&m->vm.vcpus[0].stats.exits[VCPU_EXIT_MMIO_WRITE], 8);
	cJSON *l2 = metrics_line(&met, metrics_totals(&met, &cfg, m));
	cJSON *l3 = metrics_line(&met, metrics_totals(&met, &cfg, m));
	check_line(l2);
	cr_assert_eq(get(l2, "block_rootfs", "read_count"), 5);
	cr_assert_eq(get(l2, "block_rootfs", "read_bytes"), 0);
	cr_assert_eq(get(l2, "vcpu", "exit_mmio_write"), 1);
	cr_assert_eq(get(l3, "block_rootfs", "read_count"), 0);
	/* Stored: the same in every line. */
	for (cJSON *l = l1; l; l = l == l1 ? l2 : l == l2 ? l3 : NULL) {
		cr_assert_eq(get(l, "api_server", "process_startup_time_us"), 1234);
		cr_assert_eq(get(l, "latencies_us", "pause_vm"), 300);
		cr_assert_eq(get(l, "latencies_us", "vmm_pause_vm"), 200);
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(l, "vcpu"),
								  "exit_mmio_write_agg");
		cr_assert_eq(cJSON_GetObjectItemCaseSensitive(a, "max_us")->valuedouble, 9);
	}
	cJSON_Delete(l1);
	cJSON_Delete(l2);
	cJSON_Delete(l3);
}

/* "block" is the sum of the "block_*" groups, with min_us/max_us 0 in
 * its aggregates; one group per device. */
Test(metrics, aggregate_is_the_sum_of_the_devices)
{
	struct machine *m = fake_machine();
	m->blk[0]->stats.write_count = 3;
	m->blk[1]->stats.write_count = 4;
	m->blk[1]->stats.flush_count = 2;
	m->net[0]->stats.tx_packets = 11;
	cJSON *line = metrics_line(&met, metrics_totals(&met, &cfg, m));
	check_line(line);
	cr_assert_eq(get(line, "block", "write_count"), 7);
	cr_assert_eq(get(line, "block", "flush_count"), 2);
	cr_assert_eq(get(line, "net", "tx_packets_count"), 11);
	cr_assert_eq(get(line, "net_eth0", "tx_packets_count"), 11);
	int ndev = 0;
	for (const cJSON *it = line->child; it; it = it->next)
		ndev += strncmp(it->string, "block_", 6) == 0;
	cr_assert_eq(ndev, 2);
	const cJSON *agg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(line, "block"), "read_agg");
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(agg, "min_us")->valuedouble, 0);
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(agg, "max_us")->valuedouble, 0);
	cJSON_Delete(line);
}

Test(metrics, api_requests_by_endpoint_and_rejections)
{
	metrics_api_request(HTTP_PUT, EP_DRIVES, false);
	metrics_api_request(HTTP_PUT, EP_DRIVES, true);
	metrics_api_request(HTTP_PATCH, EP_MACHINE_CONFIG, false);
	metrics_api_request(HTTP_GET, EP_ROOT, false);
	metrics_api_request(HTTP_GET, EP_VM_CONFIG, false); /* no key of its own */
	metrics_deprecated_api_call();
	cJSON *l1 = metrics_line(&met, metrics_totals(&met, &cfg, NULL));
	cJSON *l2 = metrics_line(&met, metrics_totals(&met, &cfg, NULL));
	check_line(l1);
	cr_assert_eq(get(l1, "put_api_requests", "drive_count"), 2);
	cr_assert_eq(get(l1, "put_api_requests", "drive_fails"), 1);
	cr_assert_eq(get(l1, "patch_api_requests", "machine_cfg_count"), 1);
	cr_assert_eq(get(l1, "put_api_requests", "machine_cfg_count"), 0);
	cr_assert_eq(get(l1, "get_api_requests", "instance_info_count"), 1);
	cr_assert_eq(get(l1, "deprecated_api", "deprecated_http_api_calls"), 1);
	cr_assert_eq(get(l2, "put_api_requests", "drive_count"), 0);
	cr_assert_eq(get(l2, "deprecated_api", "deprecated_http_api_calls"), 0);
	cJSON_Delete(l1);
	cJSON_Delete(l2);
}

Test(metrics, emit_id_properties_and_ember_group_when_asked)
{
	char path[] = "/tmp/ember-metrics.XXXXXX", err[256];
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	struct metrics_config mc = { .set = true, .emit_id = true, .ember_counters = true };
	snprintf(mc.metrics_path, sizeof(mc.metrics_path), "%s", path);
	snprintf(mc.properties_json, sizeof(mc.properties_json), "{\"customer\":\"1234\",\"fn\":\"abc\"}");
	cr_assert_eq(metrics_open(&met, &mc, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(metrics_open(&met, &mc, err, sizeof(err)), -EEXIST);
	cr_assert_eq(metrics_flush(&met, &cfg, NULL), 0);
	cr_assert_eq(metrics_flush(&met, &cfg, NULL), 0);

	FILE *f = fopen(path, "r");
	char buf[16384];
	int n = 0;
	while (fgets(buf, sizeof(buf), f)) {
		cr_assert_eq(buf[strlen(buf) - 1], '\n');
		cJSON *line = cJSON_Parse(buf);
		cr_assert_not_null(line);
		cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(line, "id")->valuestring, "vm-9");
		cJSON *p = cJSON_GetObjectItemCaseSensitive(line, "properties");
		cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(p, "customer")->valuestring, "1234");
		cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(p, "fn")->valuestring, "abc");
		cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(line, "ember")));
		cJSON_Delete(line);
		n++;
	}
	fclose(f);
	unlink(path);
	cr_assert_eq(n, 2);
}

Test(metrics, flush_without_setup_writes_nothing)
{
	cr_assert_eq(metrics_flush(&met, &cfg, NULL), 0);
}

/* A FIFO with too little room for a line takes part of it; the rest
 * goes first at the next flush, so a reader never sees a torn line. */
Test(metrics, full_fifo_never_gets_a_torn_line)
{
	char dir[] = "/tmp/ember-metrics.XXXXXX", path[64], err[256];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	cr_assert_geq(rd, 0);
	struct metrics_config mc = { .set = true };
	snprintf(mc.metrics_path, sizeof(mc.metrics_path), "%s", path);
	cr_assert_eq(metrics_open(&met, &mc, err, sizeof(err)), 0, "%s", err);
	int lost = 0;
	for (int i = 0; i < 40; i++)
		lost += metrics_flush(&met, &cfg, NULL) != 0;
	cr_assert_gt(lost, 0, "the FIFO never filled");
	/* Read a little (some room, less than a line), flush, then read all. */
	static char buf[1 << 20];
	size_t got = (size_t)read(rd, buf, 1000);
	metrics_flush(&met, &cfg, NULL);
	for (int i = 0; i < 3; i++) {
		ssize_t n;
		while ((n = read(rd, buf + got, sizeof(buf) - 1 - got)) > 0)
			got += (size_t)n;
		metrics_flush(&met, &cfg, NULL);
	}
	buf[got] = 0;
	/* Everything after the first (partly read) line is whole lines. */
	char *p = strchr(buf, '\n');
	cr_assert_not_null(p);
	int whole = 0;
	for (char *line = p + 1, *end; (end = strchr(line, '\n')); line = end + 1) {
		*end = 0;
		cJSON *j = cJSON_Parse(line);
		cr_assert_not_null(j, "a torn line: %.80s", line);
		cJSON_Delete(j);
		whole++;
	}
	cr_assert_gt(whole, 3);
	close(rd);
	unlink(path);
	rmdir(dir);
}

/* PUT /metrics (and the config file's "metrics"): Firecracker's emit_id
 * and properties, and ember's ember_counters. */
Test(metrics, config_emit_id_and_properties)
{
	char err[256];
	struct metrics_config mc;
	cJSON *o = cJSON_Parse("{\"metrics_path\": \"/m\", \"emit_id\": true, \"properties\": {\"a\": \"1\"}}");
	cr_assert_eq(config_json_metrics(o, &mc, err, sizeof(err)), 0, "%s", err);
	cr_assert(mc.emit_id);
	cr_assert(!mc.ember_counters);
	cr_assert_str_eq(mc.properties_json, "{\"a\":\"1\"}");
	cJSON_Delete(o);
	o = cJSON_Parse("{\"metrics_path\": \"/m\"}");
	cr_assert_eq(config_json_metrics(o, &mc, err, sizeof(err)), 0, "%s", err);
	cr_assert(!mc.emit_id);
	cr_assert_str_eq(mc.properties_json, "");
	cJSON_Delete(o);
	o = cJSON_Parse("{\"metrics_path\": \"/m\", \"properties\": {\"a\": 1}}");
	cr_assert_neq(config_json_metrics(o, &mc, err, sizeof(err)), 0);
	cr_assert_str_eq(err, "metrics.properties.a: expected a string");
	cJSON_Delete(o);
	o = cJSON_Parse("{\"metrics_path\": \"/m\", \"emit_id\": \"yes\"}");
	cr_assert_neq(config_json_metrics(o, &mc, err, sizeof(err)), 0);
	cJSON_Delete(o);
}

/* An exit handled in under a microsecond is a real 0 µs minimum; a vCPU
 * that had no such exit has no minimum to give. */
Test(metrics, vcpu_exit_minimum_across_vcpus)
{
	struct machine *m = fake_machine();
	free(m->vm.vcpus);
	m->vm.nvcpus = 3;
	m->vm.vcpus = calloc(3, sizeof(*m->vm.vcpus));
	struct vcpu_stats *a = &m->vm.vcpus[0].stats, *b = &m->vm.vcpus[1].stats;
	atomic_store(&a->exits[VCPU_EXIT_IO_OUT], 2);
	atomic_store(&a->min_us[VCPU_EXIT_IO_OUT], 5);
	atomic_store(&a->max_us[VCPU_EXIT_IO_OUT], 6);
	atomic_store(&b->exits[VCPU_EXIT_IO_OUT], 1);
	atomic_store(&b->min_us[VCPU_EXIT_IO_OUT], 0);
	atomic_store(&a->exits[VCPU_EXIT_IO_IN], 1);
	atomic_store(&a->min_us[VCPU_EXIT_IO_IN], 4);
	atomic_store(&a->max_us[VCPU_EXIT_IO_IN], 4);
	cJSON *l = metrics_line(&met, metrics_totals(&met, &cfg, m));
	const cJSON *vcpu = cJSON_GetObjectItemCaseSensitive(l, "vcpu");
	const cJSON *out = cJSON_GetObjectItemCaseSensitive(vcpu, "exit_io_out_agg");
	const cJSON *in = cJSON_GetObjectItemCaseSensitive(vcpu, "exit_io_in_agg");
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(out, "min_us")->valuedouble, 0);
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(out, "max_us")->valuedouble, 6);
	cr_assert_eq(cJSON_GetObjectItemCaseSensitive(in, "min_us")->valuedouble, 4);
	cJSON_Delete(l);
}
