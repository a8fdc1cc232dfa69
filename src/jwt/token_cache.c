/* token_cache.c: bounded LRU of verified tokens, chained hash table keyed by SipHash-1-3 with a
 * random per-cache key (tokens are peer-controlled: an unkeyed hash would let a client build long
 * chains). */
#include "jwt/token_cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/common.h"
#include "telemetry/stats.h"

struct token_cache {
	uint32_t capacity;
	uint32_t count;
	uint32_t n_buckets; /* power of two, >= 2 x capacity */
	struct token_cache_entry **buckets;
	struct token_cache_entry *head, *tail; /* LRU: head = most recent */
	uint64_t k0, k1;                       /* SipHash key */
	/* /metrics counters (stats.h single-writer rule: the owning worker only), or NULL */
	_Atomic uint64_t *hits, *misses, *evictions;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                             \
	do {                                                                                                 \
		v0 += v1;                                                                                    \
		v1 = ROTL(v1, 13);                                                                           \
		v1 ^= v0;                                                                                    \
		v0 = ROTL(v0, 32);                                                                           \
		v2 += v3;                                                                                    \
		v3 = ROTL(v3, 16);                                                                           \
		v3 ^= v2;                                                                                    \
		v0 += v3;                                                                                    \
		v3 = ROTL(v3, 21);                                                                           \
		v3 ^= v0;                                                                                    \
		v2 += v1;                                                                                    \
		v1 = ROTL(v1, 17);                                                                           \
		v1 ^= v2;                                                                                    \
		v2 = ROTL(v2, 32);                                                                           \
	} while (0)

/* The bucket key of a token: keyed SipHash-1-3 rounds over its length and its last
 * TOKEN_CACHE_HASH_TAIL bytes. The tail is the signature: unique per token and out of a client's
 * control, and only tokens that verified are ever stored, so a client cannot fill one bucket with
 * made-up tokens. A lookup still compares the whole token. */
#define TOKEN_CACHE_HASH_TAIL 32

static uint64_t token_cache_hash(const struct token_cache *tc, int provider, const char *s, size_t full_len)
{
	size_t len = full_len > TOKEN_CACHE_HASH_TAIL ? TOKEN_CACHE_HASH_TAIL : full_len;
	uint64_t v0 = 0x736f6d6570736575ull ^ tc->k0, v1 = 0x646f72616e646f6dull ^ tc->k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ tc->k0, v3 = 0x7465646279746573ull ^ tc->k1;
	uint64_t b = ((uint64_t)full_len) << 56, m;
	size_t i, tail = len & 7;
	const unsigned char *p = (const unsigned char *)s + (full_len - len);

	v3 ^= (uint64_t)(unsigned)provider;
	v0 ^= (uint64_t)(unsigned)provider;
	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&m, p + i, 8);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	m = 0;
	while (tail-- > 0)
		m |= (uint64_t)p[i + tail] << (8 * tail);
	b |= m;
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

struct token_cache *token_cache_new(uint32_t capacity)
{
	struct token_cache *tc;
	uint64_t key[2];

	if (capacity == 0)
		return NULL;
	tc = jg_xcalloc(1, sizeof(*tc));
	tc->capacity = capacity;
	tc->n_buckets = 16;
	while (tc->n_buckets < capacity * 2u && tc->n_buckets < (1u << 30))
		tc->n_buckets <<= 1;
	tc->buckets = jg_xcalloc(tc->n_buckets, sizeof(*tc->buckets));
	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
		key[0] = jg_now_ms() * 0x9e3779b97f4a7c15ull;
		key[1] = (uint64_t)(uintptr_t)tc;
	}
	tc->k0 = key[0];
	tc->k1 = key[1];
	return tc;
}

static void token_cache_unlink(struct token_cache *tc, struct token_cache_entry *e)
{
	struct token_cache_entry **pp = &tc->buckets[e->hash & (tc->n_buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		tc->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		tc->tail = e->prev;
	tc->count--;
}

static void token_cache_entry_free(struct token_cache_entry *e)
{
	json_decref(e->payload);
	free(e->token);
	free(e);
}

void token_cache_free(struct token_cache *tc)
{
	struct token_cache_entry *e, *next;

	if (tc == NULL)
		return;
	for (e = tc->head; e != NULL; e = next) {
		next = e->next;
		token_cache_entry_free(e);
	}
	free(tc->buckets);
	free(tc);
}

const struct token_cache_entry *token_cache_get(struct token_cache *tc, int provider, uint64_t keys_version,
                                                const char *token, size_t len)
{
	struct token_cache_entry *e;
	uint64_t h;

	if (tc == NULL)
		return NULL;
	h = token_cache_hash(tc, provider, token, len);
	for (e = tc->buckets[h & (tc->n_buckets - 1)]; e != NULL; e = e->hnext) {
		if (e->hash != h || e->provider != provider || e->token_len != len ||
		    memcmp(e->token, token, len) != 0)
			continue;
		if (e->keys_version != keys_version) {
			/* verified with keys that were replaced since: verify again */
			token_cache_unlink(tc, e);
			token_cache_entry_free(e);
			return NULL;
		}
		if (tc->hits != NULL)
			stats_add(tc->hits, 1);
		if (e != tc->head) { /* move to front */
			e->prev->next = e->next;
			if (e->next != NULL)
				e->next->prev = e->prev;
			else
				tc->tail = e->prev;
			e->prev = NULL;
			e->next = tc->head;
			tc->head->prev = e;
			tc->head = e;
		}
		return e;
	}
	if (tc->misses != NULL)
		stats_add(tc->misses, 1);
	return NULL;
}

void token_cache_set_counters(struct token_cache *tc, _Atomic uint64_t *hits, _Atomic uint64_t *misses,
                              _Atomic uint64_t *evictions)
{
	if (tc == NULL)
		return;
	tc->hits = hits;
	tc->misses = misses;
	tc->evictions = evictions;
}

int token_cache_put(struct token_cache *tc, int provider, uint64_t keys_version, const char *token,
                    size_t len, bool has_iat, int64_t iat, bool has_nbf, int64_t nbf, bool has_exp,
                    int64_t exp, json_t *payload, size_t payload_b64_off, size_t payload_b64_len,
                    const char *sub, size_t sub_len, const uint64_t *authz_bits, size_t authz_words)
{
	struct token_cache_entry *e;
	size_t b;

	if (tc == NULL)
		return 0;
	if (tc->count >= tc->capacity) {
		e = tc->tail;
		token_cache_unlink(tc, e);
		token_cache_entry_free(e);
		if (tc->evictions != NULL)
			stats_add(tc->evictions, 1);
	}
	e = calloc(1, sizeof(*e) + authz_words * sizeof(uint64_t));
	if (e == NULL)
		return JG_ERR_NOMEM;
	e->n_authz_words = authz_words;
	if (authz_words > 0)
		memcpy(e->authz_bits, authz_bits, authz_words * sizeof(uint64_t));
	if (sub_len > TOKEN_CACHE_SUB_MAX)
		sub_len = TOKEN_CACHE_SUB_MAX;
	e->token = malloc(len + 1 + (sub != NULL ? sub_len + 1 : 0));
	if (e->token == NULL) {
		free(e);
		return JG_ERR_NOMEM;
	}
	memcpy(e->token, token, len);
	e->token[len] = '\0';
	if (sub != NULL) {
		char *copy = e->token + len + 1;

		memcpy(copy, sub, sub_len);
		copy[sub_len] = '\0';
		e->sub = copy;
		e->sub_len = sub_len;
	}
	e->token_len = len;
	e->provider = provider;
	e->keys_version = keys_version;
	e->hash = token_cache_hash(tc, provider, token, len);
	e->has_iat = has_iat;
	e->iat = iat;
	e->has_nbf = has_nbf;
	e->nbf = nbf;
	e->has_exp = has_exp;
	e->exp = exp;
	e->payload = json_incref(payload);
	e->payload_b64_off = payload_b64_off;
	e->payload_b64_len = payload_b64_len;
	b = e->hash & (tc->n_buckets - 1);
	e->hnext = tc->buckets[b];
	tc->buckets[b] = e;
	e->next = tc->head;
	if (tc->head != NULL)
		tc->head->prev = e;
	tc->head = e;
	if (tc->tail == NULL)
		tc->tail = e;
	tc->count++;
	return 0;
}

uint32_t token_cache_count(const struct token_cache *tc)
{
	return tc != NULL ? tc->count : 0;
}
