/* test_admin.c: the /live age check (admin_live_reasons) and the stats blocks' sums. A stuck worker
 * cannot be made on purpose in the end-to-end tests without a hook in the product (SIGSTOP stops the
 * whole process), so the rule that turns a stale heartbeat into 503 is proved here on real struct
 * workers; the end-to-end test proves the 200 path and the heartbeats themselves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "admin/admin.h"
#include "telemetry/stats.h"
#include "server/worker.h"

static char *drain_text(struct evbuffer *b)
{
	static char text[1024];
	size_t n = evbuffer_get_length(b);

	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	evbuffer_remove(b, text, n);
	text[n] = '\0';
	return text;
}

static void test_live_fresh_and_stale_heartbeats(void **state)
{
	struct worker ws[3];
	struct evbuffer *b = evbuffer_new();
	uint64_t now = 1000000;

	(void)state;
	memset(ws, 0, sizeof(ws));
	atomic_store(&ws[0].heartbeat_ms, now - 100);
	atomic_store(&ws[1].heartbeat_ms, now - ADMIN_LIVE_MAX_AGE_MS); /* exactly at the bound: fine */
	atomic_store(&ws[2].heartbeat_ms, now - 200);
	assert_int_equal(admin_live_reasons(ws, 3, false, now, b), 0);
	assert_int_equal(evbuffer_get_length(b), 0);

	/* Worker 1 stops answering: one reason, naming it. */
	atomic_store(&ws[1].heartbeat_ms, now - ADMIN_LIVE_MAX_AGE_MS - 1);
	assert_int_equal(admin_live_reasons(ws, 3, false, now, b), 1);
	assert_string_equal(drain_text(b), "worker 1 has not answered a heartbeat for 5001 ms\n");

	/* A worker whose loop returned outside a drain is dead too. */
	atomic_store(&ws[2].is_exited, true);
	assert_int_equal(admin_live_reasons(ws, 3, false, now, b), 2);
	drain_text(b);

	/* Draining workers no longer take heartbeats: not held against liveness. */
	assert_int_equal(admin_live_reasons(ws, 3, true, now, b), 0);
	/* A stamp from the future (clock read on another CPU just before ours) is fresh. */
	atomic_store(&ws[2].is_exited, false);
	atomic_store(&ws[1].heartbeat_ms, now + 5);
	assert_int_equal(admin_live_reasons(ws, 3, false, now, b), 0);
	evbuffer_free(b);
}

static void test_duration_buckets_and_classes(void **state)
{
	struct stats_gen *g;
	struct stats_shard *s;
	const struct stats_layout *l;
	struct config cfg;
	struct config_listener lst[1];
	struct config_route routes[2];
	size_t base;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(lst, 0, sizeof(lst));
	memset(routes, 0, sizeof(routes));
	cfg.listeners = lst;
	cfg.n_listeners = 1;
	cfg.routes = routes;
	cfg.n_routes = 2;
	g = stats_gen_new(&cfg, 2);
	s = stats_gen_shard(g, 1);
	assert_non_null(s);
	assert_null(stats_gen_shard(g, 2));
	assert_int_equal((uintptr_t)s % STATS_CACHELINE, 0);
	l = s->layout;
	stats_count_request(s, 0, 1, 204, 500);       /* route 1, 2xx, first bucket (le 0.5 ms) */
	stats_count_request(s, 0, 1, 503, 501);       /* 5xx, second bucket */
	stats_count_request(s, 0, -1, 404, 20000000); /* no route, beyond 10 s: +Inf only */
	assert_int_equal(stats_get(&s->c[l->off_requests + (0 * l->n_route_slots + 2) * STATS_CLASSES + 1]),
	                 1);
	assert_int_equal(stats_get(&s->c[l->off_requests + (0 * l->n_route_slots + 2) * STATS_CLASSES + 4]),
	                 1);
	assert_int_equal(stats_get(&s->c[l->off_requests + (0 * l->n_route_slots + 0) * STATS_CLASSES + 3]),
	                 1);
	base = l->off_duration + 2 * STATS_DURATION_SLOTS;
	assert_int_equal(stats_get(&s->c[base + 0]), 1);
	assert_int_equal(stats_get(&s->c[base + 1]), 1);
	assert_int_equal(stats_get(&s->c[base + STATS_DURATION_BUCKETS + 1]), 1001);
	assert_int_equal(stats_get(&s->c[base + STATS_DURATION_BUCKETS + 2]), 2);
	base = l->off_duration;
	assert_int_equal(stats_get(&s->c[base + STATS_DURATION_BUCKETS]), 1);
	stats_gen_free(g);
}

static void test_label_values_are_escaped(void **state)
{
	struct stats_labels l;

	(void)state;
	stats_labels_init(&l);
	stats_labels_add(&l, "route", "a\"b\\c\nd");
	stats_labels_add(&l, "code", "2xx");
	assert_string_equal(l.buf, "route=\"a\\\"b\\\\c\\nd\",code=\"2xx\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_live_fresh_and_stale_heartbeats),
	        cmocka_unit_test(test_duration_buckets_and_classes),
	        cmocka_unit_test(test_label_values_are_escaped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
