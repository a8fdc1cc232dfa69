/* test_token_cache.c: the per-worker verified-token cache: hits and misses (provider, key-set version,
 * exact bytes), stale entries dropped, LRU order at capacity, capacity 0 = disabled, the payload
 * reference an entry holds, and bounded size under many inserts (colliding or not). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/common.h"
#include "jwt/token_cache.h"

/* Stores token with exp = exp and a fresh payload {"sub": token}; the cache's reference is the only
 * one left after the call. */
static void put(struct token_cache *tc, int provider, uint64_t version, const char *token, int64_t exp)
{
	json_t *payload = json_pack("{s:s}", "sub", token);

	assert_non_null(payload);
	assert_int_equal(token_cache_put(tc, provider, version, token, strlen(token), true, 100, false, 0,
	                                 true, exp, payload, 0, strlen(token), NULL, 0, NULL, 0),
	                 0);
	json_decref(payload);
}

static const struct token_cache_entry *get(struct token_cache *tc, int provider, uint64_t version,
                                           const char *token)
{
	return token_cache_get(tc, provider, version, token, strlen(token));
}

/* A hit returns what was stored: a copy of the token, time claims, payload and its segment. */
static void test_put_get(void **state)
{
	struct token_cache *tc = token_cache_new(8);
	char token[] = "aaa.bbbb.cc";
	json_t *payload = json_pack("{s:s,s:i}", "sub", "alice", "n", 7);
	const struct token_cache_entry *e;

	JG_UNUSED(state);
	assert_non_null(tc);
	assert_null(get(tc, 0, 1, token));
	assert_int_equal(token_cache_put(tc, 0, 1, token, strlen(token), true, 10, true, 20, true, 30,
	                                 payload, 4, 4, NULL, 0, NULL, 0),
	                 0);
	assert_int_equal(token_cache_count(tc), 1);
	/* the cache keeps its own copy of the bytes: the caller's buffer may change afterwards */
	token[0] = 'x';
	assert_null(get(tc, 0, 1, token));
	token[0] = 'a';
	e = get(tc, 0, 1, token);
	assert_non_null(e);
	assert_ptr_not_equal(e->token, token);
	assert_int_equal(e->token_len, strlen(token));
	assert_memory_equal(e->token, token, strlen(token));
	assert_int_equal(e->provider, 0);
	assert_int_equal(e->keys_version, 1);
	assert_true(e->has_iat && e->has_nbf && e->has_exp);
	assert_int_equal(e->iat, 10);
	assert_int_equal(e->nbf, 20);
	assert_int_equal(e->exp, 30);
	assert_ptr_equal(e->payload, payload);
	assert_int_equal(e->payload_b64_off, 4);
	assert_int_equal(e->payload_b64_len, 4);
	assert_memory_equal(e->token + e->payload_b64_off, "bbbb", 4);
	/* a prefix or an extension of a cached token is another token */
	assert_null(token_cache_get(tc, 0, 1, token, strlen(token) - 1));
	assert_null(get(tc, 0, 1, "aaa.bbbb.ccX"));
	assert_int_equal(token_cache_count(tc), 1);
	json_decref(payload);
	token_cache_free(tc);
}

/* A token cached for one provider is not a hit for another; the entry stays. */
static void test_other_provider_misses(void **state)
{
	struct token_cache *tc = token_cache_new(8);

	JG_UNUSED(state);
	put(tc, 0, 1, "tok.en.one", 1000);
	assert_null(get(tc, 1, 1, "tok.en.one"));
	assert_int_equal(token_cache_count(tc), 1);
	assert_non_null(get(tc, 0, 1, "tok.en.one"));
	/* the same bytes can be cached for both providers independently */
	put(tc, 1, 1, "tok.en.one", 2000);
	assert_int_equal(token_cache_count(tc), 2);
	assert_int_equal(get(tc, 0, 1, "tok.en.one")->exp, 1000);
	assert_int_equal(get(tc, 1, 1, "tok.en.one")->exp, 2000);
	token_cache_free(tc);
}

/* Keys were replaced since the token was verified: a miss, and the stale entry is gone for good (a
 * later lookup with the old version does not find it either). */
static void test_other_version_misses_and_drops(void **state)
{
	struct token_cache *tc = token_cache_new(8);

	JG_UNUSED(state);
	put(tc, 0, 1, "tok.en.one", 1000);
	put(tc, 0, 1, "tok.en.two", 1000);
	assert_int_equal(token_cache_count(tc), 2);
	assert_null(get(tc, 0, 2, "tok.en.one"));
	assert_int_equal(token_cache_count(tc), 1);
	assert_null(get(tc, 0, 1, "tok.en.one"));
	/* the other entry is untouched and the LRU list still works around the hole */
	assert_non_null(get(tc, 0, 1, "tok.en.two"));
	put(tc, 0, 2, "tok.en.one", 3000);
	assert_int_equal(token_cache_count(tc), 2);
	assert_int_equal(get(tc, 0, 2, "tok.en.one")->exp, 3000);
	token_cache_free(tc);
}

/* At capacity the least recently used entry goes; a get counts as a use. */
static void test_lru_eviction_order(void **state)
{
	struct token_cache *tc = token_cache_new(3);

	JG_UNUSED(state);
	put(tc, 0, 1, "A", 1);
	put(tc, 0, 1, "B", 2);
	put(tc, 0, 1, "C", 3);
	assert_int_equal(token_cache_count(tc), 3);
	assert_non_null(get(tc, 0, 1, "A")); /* order now A, C, B (B least recent) */
	put(tc, 0, 1, "D", 4);
	assert_int_equal(token_cache_count(tc), 3);
	assert_null(get(tc, 0, 1, "B"));
	/* order D, A, C: touch C then A, so D is now the oldest */
	assert_non_null(get(tc, 0, 1, "C"));
	assert_non_null(get(tc, 0, 1, "A"));
	put(tc, 0, 1, "E", 5);
	assert_null(get(tc, 0, 1, "D"));
	assert_non_null(get(tc, 0, 1, "C"));
	assert_non_null(get(tc, 0, 1, "A"));
	assert_non_null(get(tc, 0, 1, "E"));
	/* order E, A, C: C goes next */
	put(tc, 0, 1, "F", 6);
	assert_null(get(tc, 0, 1, "C"));
	assert_int_equal(get(tc, 0, 1, "F")->exp, 6);
	assert_int_equal(token_cache_count(tc), 3);
	token_cache_free(tc);
}

/* Capacity 1: each insert replaces the one entry; a stale drop of the only entry empties the list. */
static void test_capacity_one(void **state)
{
	struct token_cache *tc = token_cache_new(1);

	JG_UNUSED(state);
	put(tc, 0, 1, "A", 1);
	put(tc, 0, 1, "B", 2);
	assert_int_equal(token_cache_count(tc), 1);
	assert_null(get(tc, 0, 1, "A"));
	assert_non_null(get(tc, 0, 1, "B"));
	assert_null(get(tc, 0, 9, "B"));
	assert_int_equal(token_cache_count(tc), 0);
	put(tc, 0, 1, "C", 3);
	assert_non_null(get(tc, 0, 1, "C"));
	assert_int_equal(token_cache_count(tc), 1);
	token_cache_free(tc);
}

/* Capacity 0 disables the cache: no object, and every function accepts NULL. */
static void test_capacity_zero_disabled(void **state)
{
	struct token_cache *tc = token_cache_new(0);
	json_t *payload = json_object();

	JG_UNUSED(state);
	assert_null(tc);
	assert_int_equal(token_cache_put(tc, 0, 1, "a.b.c", 5, false, 0, false, 0, false, 0, payload, 2, 1,
	                                 NULL, 0, NULL, 0),
	                 0);
	assert_null(token_cache_get(tc, 0, 1, "a.b.c", 5));
	assert_int_equal(token_cache_count(tc), 0);
	/* nothing kept a reference */
	assert_int_equal(payload->refcount, 1);
	token_cache_free(tc);
	json_decref(payload);
}

/* An entry holds exactly one reference on the payload, released on eviction, on a stale drop and
 * on token_cache_free (ASan's leak check proves nothing else is kept). */
static void test_payload_refcount(void **state)
{
	struct token_cache *tc = token_cache_new(2);
	json_t *p1 = json_pack("{s:s}", "sub", "one");
	json_t *p2 = json_pack("{s:s}", "sub", "two");
	json_t *p3 = json_pack("{s:s}", "sub", "three");

	JG_UNUSED(state);
	assert_int_equal(
	        token_cache_put(tc, 0, 1, "t1", 2, false, 0, false, 0, false, 0, p1, 0, 2, NULL, 0, NULL, 0),
	        0);
	assert_int_equal(p1->refcount, 2);
	assert_ptr_equal(get(tc, 0, 1, "t1")->payload, p1);
	assert_int_equal(p1->refcount, 2); /* a get takes no reference */
	assert_int_equal(
	        token_cache_put(tc, 0, 1, "t2", 2, false, 0, false, 0, false, 0, p2, 0, 2, NULL, 0, NULL, 0),
	        0);
	assert_int_equal(
	        token_cache_put(tc, 0, 1, "t3", 2, false, 0, false, 0, false, 0, p3, 0, 2, NULL, 0, NULL, 0),
	        0);
	assert_int_equal(p1->refcount, 1); /* t1 evicted */
	assert_int_equal(p2->refcount, 2);
	assert_null(get(tc, 0, 2, "t2")); /* stale drop */
	assert_int_equal(p2->refcount, 1);
	assert_int_equal(p3->refcount, 2);
	/* the payload outlives the caller's reference while cached */
	json_decref(p3);
	assert_string_equal(json_string_value(json_object_get(get(tc, 0, 1, "t3")->payload, "sub")), "three");
	json_incref(p3);
	token_cache_free(tc);
	assert_int_equal(p3->refcount, 1);
	json_decref(p1);
	json_decref(p2);
	json_decref(p3);
}

/* The same token put again and again (every put a full collision with what is there): the cache
 * stays within capacity and still answers. */
static void test_colliding_inserts_bounded(void **state)
{
	struct token_cache *tc = token_cache_new(4);
	const struct token_cache_entry *e;
	int i;

	JG_UNUSED(state);
	for (i = 0; i < 10000; i++) {
		put(tc, 0, 1, "same.token.bytes", i);
		assert_true(token_cache_count(tc) <= 4);
	}
	e = get(tc, 0, 1, "same.token.bytes");
	assert_non_null(e);
	assert_true(e->exp >= 10000 - 4); /* one of the latest puts, not the first */
	/* other tokens still get their place */
	put(tc, 0, 1, "other", 1);
	assert_non_null(get(tc, 0, 1, "other"));
	assert_true(token_cache_count(tc) <= 4);
	token_cache_free(tc);
}

/* Many distinct tokens: exactly `capacity` stay, the most recent ones. */
static void test_many_distinct_bounded(void **state)
{
	enum { CAP = 64, N = 20000 };
	struct token_cache *tc = token_cache_new(CAP);
	char tok[32];
	int i;

	JG_UNUSED(state);
	for (i = 0; i < N; i++) {
		snprintf(tok, sizeof(tok), "t.%d.x", i);
		put(tc, i % 3, 1, tok, i);
		assert_true(token_cache_count(tc) <= CAP);
	}
	assert_int_equal(token_cache_count(tc), CAP);
	for (i = N - CAP; i < N; i++) {
		snprintf(tok, sizeof(tok), "t.%d.x", i);
		assert_non_null(get(tc, i % 3, 1, tok));
	}
	for (i = 0; i < N - CAP; i += 97) {
		snprintf(tok, sizeof(tok), "t.%d.x", i);
		assert_null(get(tc, i % 3, 1, tok));
	}
	token_cache_free(tc);
}

/* Empty token and a large one are ordinary keys. */
static void test_edge_lengths(void **state)
{
	struct token_cache *tc = token_cache_new(4);
	size_t n = 100000;
	char *big = malloc(n + 1);
	json_t *payload = json_object();

	JG_UNUSED(state);
	assert_non_null(big);
	memset(big, 'q', n);
	big[n] = '\0';
	assert_int_equal(token_cache_put(tc, 0, 1, big, n, false, 0, false, 0, false, 0, payload, 0, 0, NULL,
	                                 0, NULL, 0),
	                 0);
	assert_int_equal(token_cache_put(tc, 0, 1, "", 0, false, 0, false, 0, false, 0, payload, 0, 0, NULL,
	                                 0, NULL, 0),
	                 0);
	assert_non_null(token_cache_get(tc, 0, 1, big, n));
	big[n - 1] = 'r';
	assert_null(token_cache_get(tc, 0, 1, big, n));
	assert_non_null(token_cache_get(tc, 0, 1, "", 0));
	assert_int_equal(payload->refcount, 3);
	token_cache_free(tc);
	assert_int_equal(payload->refcount, 1);
	json_decref(payload);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_put_get),
	        cmocka_unit_test(test_other_provider_misses),
	        cmocka_unit_test(test_other_version_misses_and_drops),
	        cmocka_unit_test(test_lru_eviction_order),
	        cmocka_unit_test(test_capacity_one),
	        cmocka_unit_test(test_capacity_zero_disabled),
	        cmocka_unit_test(test_payload_refcount),
	        cmocka_unit_test(test_colliding_inserts_bounded),
	        cmocka_unit_test(test_many_distinct_bounded),
	        cmocka_unit_test(test_edge_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
