/* test_jwks_fetch.c: the pure parts of the remote JWKS fetcher: which failures each retry trigger
 * retries (Envoy's x-envoy-retry-on meanings), the capped exponential backoff with full jitter, and the
 * URI split into scheme, host, port, Host header and request target (with what must be refused), and the
 * counter names of the log line. The network
 * behaviour is proven end to end in tests/e2e/test_remote_jwks.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/jwt/jwks_fetch.c" /* statics: jwks_fetch_parse_uri */

static void test_should_retry(void **state)
{
	const unsigned all = CONFIG_RETRY_ON_5XX | CONFIG_RETRY_ON_GATEWAY_ERROR | CONFIG_RETRY_ON_RESET |
	                     CONFIG_RETRY_ON_CONNECT_FAILURE | CONFIG_RETRY_ON_RETRIABLE_4XX;

	(void)state;
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_5XX, JWKS_FETCH_FAIL_STATUS, 500));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_5XX, JWKS_FETCH_FAIL_STATUS, 599));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_5XX, JWKS_FETCH_FAIL_STATUS, 404));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_GATEWAY_ERROR, JWKS_FETCH_FAIL_STATUS, 500));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_GATEWAY_ERROR, JWKS_FETCH_FAIL_STATUS, 502));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_GATEWAY_ERROR, JWKS_FETCH_FAIL_STATUS, 503));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_GATEWAY_ERROR, JWKS_FETCH_FAIL_STATUS, 504));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_RESET, JWKS_FETCH_FAIL_STATUS, 503));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_RETRIABLE_4XX, JWKS_FETCH_FAIL_STATUS, 409));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_RETRIABLE_4XX, JWKS_FETCH_FAIL_STATUS, 429));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_CONNECT_FAILURE, JWKS_FETCH_FAIL_CONNECT, 0));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_CONNECT_FAILURE, JWKS_FETCH_FAIL_TLS, 0));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_RESET, JWKS_FETCH_FAIL_TLS, 0));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_RETRIABLE_4XX, JWKS_FETCH_FAIL_TLS, 0));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_CONNECT_FAILURE, JWKS_FETCH_FAIL_RESET, 0));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_CONNECT_FAILURE, JWKS_FETCH_FAIL_TIMEOUT, 0));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_RESET, JWKS_FETCH_FAIL_RESET, 0));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_RESET, JWKS_FETCH_FAIL_TIMEOUT, 0));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_RESET, JWKS_FETCH_FAIL_CONNECT, 0));
	assert_true(jwks_fetch_should_retry(CONFIG_RETRY_ON_5XX, JWKS_FETCH_FAIL_RESET, 0));
	assert_false(jwks_fetch_should_retry(CONFIG_RETRY_ON_RETRIABLE_4XX, JWKS_FETCH_FAIL_RESET, 0));
	/* A complete 200 that is too big or not a JWKS, or a fetcher that cannot work: never retried. */
	assert_false(jwks_fetch_should_retry(all, JWKS_FETCH_FAIL_TOO_BIG, 200));
	assert_false(jwks_fetch_should_retry(all, JWKS_FETCH_FAIL_JWKS, 200));
	assert_false(jwks_fetch_should_retry(all, JWKS_FETCH_FAIL_CONFIG, 0));
	assert_false(jwks_fetch_should_retry(0, JWKS_FETCH_FAIL_STATUS, 503));
}

static void test_backoff(void **state)
{
	struct config_retry r = {.num_retries = 10, .base_interval_ms = 100, .max_interval_ms = 1000};
	uint64_t rnd;

	(void)state;
	assert_int_equal(jwks_fetch_backoff_cap(&r, 0), 100);
	assert_int_equal(jwks_fetch_backoff_cap(&r, 1), 200);
	assert_int_equal(jwks_fetch_backoff_cap(&r, 3), 800);
	assert_int_equal(jwks_fetch_backoff_cap(&r, 4), 1000);
	assert_int_equal(jwks_fetch_backoff_cap(&r, 60), 1000); /* no overflow however many retries */
	for (rnd = 0; rnd < 5000; rnd += 7) {
		assert_true(jwks_fetch_backoff_ms(&r, 0, rnd) <= 100);
		assert_true(jwks_fetch_backoff_ms(&r, 9, rnd * 2654435761u) <= 1000);
	}
	assert_int_equal(jwks_fetch_backoff_ms(&r, 2, 400), 400);
	assert_int_equal(jwks_fetch_backoff_ms(&r, 2, 401), 0);
	r.base_interval_ms = UINT64_MAX / 3;
	r.max_interval_ms = UINT64_MAX;
	assert_int_equal(jwks_fetch_backoff_cap(&r, 5), UINT64_MAX);
}

static void test_parse_uri(void **state)
{
	struct jwks_fetcher f;

	(void)state;
	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com/jwks.json"), 0);
	assert_string_equal(f.host, "foo.bar.com");
	assert_string_equal(f.authority, "foo.bar.com");
	assert_string_equal(f.target, "/jwks.json");
	assert_int_equal(f.port, 443);
	assert_false(f.is_host_ip);
	free(f.target);

	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://127.0.0.1:8443?x=1#frag"), 0);
	assert_string_equal(f.host, "127.0.0.1");
	assert_string_equal(f.authority, "127.0.0.1:8443");
	assert_string_equal(f.target, "/?x=1");
	assert_int_equal(f.port, 8443);
	assert_true(f.is_host_ip);
	free(f.target);

	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://[::1]:9000/a/b?c#d"), 0);
	assert_string_equal(f.host, "::1");
	assert_string_equal(f.authority, "[::1]:9000");
	assert_string_equal(f.target, "/a/b?c");
	assert_true(f.is_host_ip);
	free(f.target);

	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://user:pw@foo.bar.com/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com:0/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com:65536/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com:44x/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com:/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://[foo]/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://[::1/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com/a\x01"
	                                          "b"),
	                 JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com/a\x7f"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "ftp://foo.bar.com/"), JG_ERR_INVAL);
	assert_int_equal(jwks_fetch_parse_uri(&f, "httpx://foo.bar.com/"), JG_ERR_INVAL);
	assert_null(f.target);

	/* "https or http" (the issue): http has its own default port, and the scheme is remembered so that
	 * https is never fetched in clear. */
	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "http://foo.bar.com/jwks.json"), 0);
	assert_false(f.is_https);
	assert_string_equal(f.host, "foo.bar.com");
	assert_string_equal(f.authority, "foo.bar.com");
	assert_string_equal(f.target, "/jwks.json");
	assert_int_equal(f.port, 80);
	free(f.target);

	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "http://127.0.0.1:8080"), 0);
	assert_false(f.is_https);
	assert_int_equal(f.port, 8080);
	assert_string_equal(f.target, "/");
	free(f.target);

	memset(&f, 0, sizeof(f));
	assert_int_equal(jwks_fetch_parse_uri(&f, "https://foo.bar.com"), 0);
	assert_true(f.is_https);
	free(f.target);
}

/* The counter names of the log line, and that every failure kind has one. */
static void test_failure_keys(void **state)
{
	int k;

	(void)state;
	assert_string_equal(jwks_fetch_failure_key(JWKS_FETCH_FAIL_CONNECT), "connect");
	assert_string_equal(jwks_fetch_failure_key(JWKS_FETCH_FAIL_TLS), "tls");
	assert_string_equal(jwks_fetch_failure_key(JWKS_FETCH_FAIL_TOO_BIG), "too_large");
	assert_string_equal(jwks_fetch_failure_key(JWKS_FETCH_FAIL_JWKS), "bad_jwks");
	for (k = 0; k < JWKS_FETCH_FAILURE_KINDS; k++) {
		assert_string_not_equal(jwks_fetch_failure_key((enum jwks_fetch_failure)k), "?");
		assert_string_not_equal(jwks_fetch_failure_str((enum jwks_fetch_failure)k), "?");
	}
	assert_string_equal(jwks_fetch_failure_key((enum jwks_fetch_failure)JWKS_FETCH_FAILURE_KINDS), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_should_retry),
	        cmocka_unit_test(test_backoff),
	        cmocka_unit_test(test_parse_uri),
	        cmocka_unit_test(test_failure_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
