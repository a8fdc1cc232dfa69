/* token_cache.h: per-worker cache of verified tokens (bounded LRU). A hit costs a hash, a compare
 * and a re-check of the time claims; no cryptography. Used by one thread only. */
#ifndef JWTGATE_TOKEN_CACHE_H
#define JWTGATE_TOKEN_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct token_cache;

#define TOKEN_CACHE_SUB_MAX 256 /* bytes of sub kept per entry (the access log shows no more) */

/* What the cache keeps of a verified token. The entry owns `token` (a copy) and one reference on
 * `payload`. */
struct token_cache_entry {
	int provider;          /* config_provider.index */
	uint64_t keys_version; /* key set version the token was verified with */
	char *token;
	size_t token_len;
	uint64_t hash;
	bool has_iat, has_nbf, has_exp;
	int64_t iat, nbf, exp;
	json_t *payload;
	size_t payload_b64_off; /* payload segment inside token */
	size_t payload_b64_len;
	const char
	        *sub; /* the token's sub, cut at TOKEN_CACHE_SUB_MAX (same allocation as token); NULL: none */
	size_t sub_len;
	struct token_cache_entry *hnext;       /* hash chain */
	struct token_cache_entry *prev, *next; /* LRU list, most recent first */
	/* What the policy's authorization rules concluded from the claims, computed once when the token
	 * was verified (authz.h: one bit per rule whose jwt principal matches); n_authz_words words. */
	size_t n_authz_words;
	uint64_t authz_bits[];
};

/* capacity 0 disables the cache (token_cache_new returns NULL, and the functions accept NULL). */
struct token_cache *token_cache_new(uint32_t capacity);
void token_cache_free(struct token_cache *tc);

/* Finds a token verified for `provider` with key set `keys_version`; NULL on a miss. The entry is
 * valid until the next token_cache_put. */
const struct token_cache_entry *token_cache_get(struct token_cache *tc, int provider, uint64_t keys_version,
                                                const char *token, size_t len);

/* Stores a verified token (evicting the least recently used entry when full). payload is
 * referenced, not copied; sub (may be NULL) and the authz_words words of authz_bits are copied.
 * Returns 0 or JG_ERR_NOMEM (then nothing is cached). */
int token_cache_put(struct token_cache *tc, int provider, uint64_t keys_version, const char *token,
                    size_t len, bool has_iat, int64_t iat, bool has_nbf, int64_t nbf, bool has_exp,
                    int64_t exp, json_t *payload, size_t payload_b64_off, size_t payload_b64_len,
                    const char *sub, size_t sub_len, const uint64_t *authz_bits, size_t authz_words);

/* Points the cache's counters at /metrics counters owned by the worker that uses the cache (stats.h):
 * a lookup that finds a token (hits), one that does not, the cache being on (misses), an entry pushed
 * out to make room (evictions). Any may be NULL. */
void token_cache_set_counters(struct token_cache *tc, _Atomic uint64_t *hits, _Atomic uint64_t *misses,
                              _Atomic uint64_t *evictions);

/* Entries in use (tests, metrics). */
uint32_t token_cache_count(const struct token_cache *tc);

#endif
