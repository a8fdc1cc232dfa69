/* test_health.c: the pure parts of active health checks: the gRPC health protocol bytes
 * (HealthCheckRequest encoding, HealthCheckResponse decoding with what must be refused) and the shared
 * verdict table the workers read. The checks themselves are proven end to end in
 * tests/e2e/test_health_checks.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jwtgate/common.h"
#include "jwtgate/health.h"

static void test_grpc_request(void **state)
{
	uint8_t out[64], big[2000];
	char name[200];

	(void)state;
	/* The whole server: an empty message (proto3 leaves the empty string out). */
	assert_int_equal(health_grpc_request(NULL, out, sizeof(out)), 5);
	assert_memory_equal(out, "\0\0\0\0\0", 5);
	assert_int_equal(health_grpc_request("", out, sizeof(out)), 5);
	assert_int_equal(health_grpc_request("a.B", out, sizeof(out)), 10);
	assert_memory_equal(out,
	                    "\0\0\0\0\x05\x0a\x03"
	                    "a.B",
	                    10);
	/* A length of 128 or more takes a two-byte varint. */
	memset(name, 's', 150);
	name[150] = '\0';
	assert_int_equal(health_grpc_request(name, big, sizeof(big)), 5 + 1 + 2 + 150);
	assert_memory_equal(big, "\0\0\0\0\x99\x0a\x96\x01", 8);
	/* Never past the buffer. */
	assert_int_equal(health_grpc_request(name, out, sizeof(out)), 0);
	assert_int_equal(health_grpc_request("a.B", out, 9), 0);
}

static void test_grpc_serving(void **state)
{
	(void)state;
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x02\x08\x01", 7), 1);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x02\x08\x02", 7),
	                 0); /* NOT_SERVING */
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x02\x08\x03", 7),
	                 0);                                                        /* SERVICE_UNKNOWN */
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\0", 5), 0); /* absent = UNKNOWN */
	/* Unknown fields of every wire type are skipped; the last status wins. */
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x11\x10\x05\x1a\x02xy\x21"
	                                                      "12345678\x08\x01",
	                                     22),
	                 1);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x04\x08\x01\x08\x02", 9), 0);
	/* Refused: short, compressed, a length past the bytes, truncated fields, wire type 3. */
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0", 4), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\x01\0\0\0\x02\x08\x01", 7), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x03\x08\x01", 7), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x01\x08", 6), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x02\x08\x81", 7), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x03\x1a\x05x", 8), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x02\x09\x01", 7), JG_ERR_PARSE);
	assert_int_equal(health_grpc_serving((const uint8_t *)"\0\0\0\0\x01\x0b", 6), JG_ERR_PARSE);
}

static void test_shared_table(void **state)
{
	struct config_endpoint eps[3];
	struct config_backend bes[2];
	struct config cfg;
	struct health_shared *hs;
	struct health_endpoint_stats st;
	const struct health_endpoint *he;

	(void)state;
	memset(eps, 0, sizeof(eps));
	memset(bes, 0, sizeof(bes));
	memset(&cfg, 0, sizeof(cfg));
	bes[0].endpoints = eps;
	bes[0].n_endpoints = 2;
	bes[1].endpoints = eps + 2;
	bes[1].n_endpoints = 1;
	bes[1].active_hc.type = CONFIG_HC_HTTP;
	cfg.backends = bes;
	cfg.n_backends = 2;
	hs = health_shared_new(&cfg);
	/* Backend 0 has no active check: no entry, always healthy. */
	assert_null(health_shared_endpoint(hs, 0, 0));
	assert_true(health_endpoint_is_healthy(health_shared_endpoint(hs, 0, 1)));
	assert_int_equal(health_endpoint_get_stats(hs, 0, 0, &st), 0);
	assert_false(st.is_checked);
	assert_true(st.is_healthy);
	/* Backend 1: healthy until a check says otherwise. */
	he = health_shared_endpoint(hs, 1, 0);
	assert_non_null(he);
	assert_true(health_endpoint_is_healthy(he));
	atomic_store(&((struct health_endpoint *)he)->is_healthy, false);
	atomic_store(&((struct health_endpoint *)he)->checks[HEALTH_CHECK_STATUS], 4);
	assert_false(health_endpoint_is_healthy(he));
	assert_int_equal(health_endpoint_get_stats(hs, 1, 0, &st), 0);
	assert_true(st.is_checked);
	assert_false(st.is_healthy);
	assert_int_equal(st.checks[HEALTH_CHECK_STATUS], 4);
	/* Out of range. */
	assert_null(health_shared_endpoint(hs, 1, 1));
	assert_null(health_shared_endpoint(hs, 2, 0));
	assert_int_equal(health_endpoint_get_stats(hs, 1, 1, &st), JG_ERR_INVAL);
	assert_int_equal(health_endpoint_get_stats(hs, 5, 0, &st), JG_ERR_INVAL);
	assert_string_equal(health_outcome_key(HEALTH_CHECK_OK), "ok");
	assert_string_equal(health_outcome_key(HEALTH_CHECK_RESET), "reset");
	assert_string_equal(health_outcome_key(HEALTH_OUTCOMES), "?");
	health_shared_free(hs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_grpc_request),
	        cmocka_unit_test(test_grpc_serving),
	        cmocka_unit_test(test_shared_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
