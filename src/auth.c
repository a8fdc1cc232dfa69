/* auth.c: the JWT stage (Envoy Gateway SecurityPolicy jwt semantics, reference/jwt-behaviour.md).
 *
 * Per policy: client-sent copies of every claim header are removed first; then each provider
 * extracts its tokens (headers with prefix, cookies, query parameters) and verifies all of them
 * (several tokens: all must be valid); the request passes when any provider accepts. A missing
 * token passes only with `optional` or `failOpen`; an invalid one only with `failOpen`.
 *
 * Key sets: one slot per provider, shared by the workers. A slot holds the current struct jwks and
 * a version; a worker keeps its own reference and only takes the slot's lock when the version moved
 * (key rotation, remote fetch), so the request path reads one atomic and takes no lock.
 */
#include "jwtgate/auth.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwtgate/b64url.h"
#include "jwtgate/common.h"
#include "jwtgate/jwk.h"
#include "jwtgate/jwt.h"
#include "jwtgate/log.h"
#include "jwtgate/token_cache.h"

#define AUTH_MAX_TOKENS      8    /* tokens per provider and request; more is JwtMultipleTokens */
#define AUTH_CLAIM_VALUE_MAX 8192 /* bytes of one claim header value */

struct auth_keyslot {
	pthread_mutex_t lock; /* taken only to swap or to take a reference after a version change */
	struct jwks *keys;    /* NULL: no key set yet (remote JWKS not fetched) */
	atomic_uint_fast64_t version;
};

struct auth_shared {
	size_t n_slots;
	struct auth_keyslot *slots; /* indexed by config_provider.index */
	/* Remote JWKS refetch request (jwks_fetch); set before the workers start, cleared after they end. */
	void (*refetch_hook)(void *arg, int provider);
	void *refetch_arg;
};

struct auth_worker_keys {
	struct jwks *keys;
	uint64_t version;
};

struct auth_worker {
	const struct auth_shared *shared;
	struct auth_worker_keys *keys; /* this worker's references, per provider */
	struct token_cache *cache;
};

struct auth_token {
	const char *s;
	size_t len;
	struct request_header *header; /* the header it came from, or NULL (cookie, param) */
};

/* ---- shared key sets ---- */

struct auth_shared *auth_shared_new(const struct config *cfg, FILE *err)
{
	struct auth_shared *s = jg_xcalloc(1, sizeof(*s));
	size_t i, j;
	int bad = 0;

	s->n_slots = cfg->n_providers;
	s->slots = jg_xcalloc(s->n_slots ? s->n_slots : 1, sizeof(*s->slots));
	for (i = 0; i < s->n_slots; i++)
		pthread_mutex_init(&s->slots[i].lock, NULL);
	for (i = 0; i < cfg->n_policies; i++) {
		const struct config_policy *pol = &cfg->policies[i];

		for (j = 0; j < pol->n_providers; j++) {
			const struct config_provider *p = &pol->providers[j];
			struct jwks *ks = NULL;
			enum jwt_status st;

			if (p->jwks_source != CONFIG_JWKS_LOCAL)
				continue;
			st = jwks_parse(p->local_jwks_json, p->local_jwks_len, p->local_jwks_origin, &ks);
			if (st != JWT_STATUS_OK) {
				fprintf(err, "jwtgate: policy %s provider %s: localJWKS %s: %s\n", pol->name,
				        p->name, p->local_jwks_origin ? p->local_jwks_origin : "inline",
				        jwt_status_message(st));
				bad++;
				continue;
			}
			s->slots[p->index].keys = ks;
			atomic_store(&s->slots[p->index].version, 1);
		}
	}
	if (bad) {
		auth_shared_free(s);
		return NULL;
	}
	return s;
}

void auth_shared_free(struct auth_shared *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n_slots; i++) {
		jwks_unref(s->slots[i].keys);
		pthread_mutex_destroy(&s->slots[i].lock);
	}
	free(s->slots);
	free(s);
}

void auth_shared_set_keys(struct auth_shared *s, int provider, struct jwks *keys)
{
	struct auth_keyslot *slot = &s->slots[provider];
	struct jwks *old;

	pthread_mutex_lock(&slot->lock);
	old = slot->keys;
	slot->keys = keys;
	atomic_fetch_add(&slot->version, 1);
	pthread_mutex_unlock(&slot->lock);
	jwks_unref(old);
}

void auth_shared_set_refetch_hook(struct auth_shared *s, void (*hook)(void *arg, int provider), void *arg)
{
	s->refetch_hook = hook;
	s->refetch_arg = arg;
}

struct auth_worker *auth_worker_new(const struct auth_shared *s, uint32_t cache_size)
{
	struct auth_worker *w = jg_xcalloc(1, sizeof(*w));

	w->shared = s;
	w->keys = jg_xcalloc(s->n_slots ? s->n_slots : 1, sizeof(*w->keys));
	w->cache = token_cache_new(cache_size);
	return w;
}

void auth_worker_free(struct auth_worker *w)
{
	size_t i;

	if (w == NULL)
		return;
	for (i = 0; i < w->shared->n_slots; i++)
		jwks_unref(w->keys[i].keys);
	free(w->keys);
	token_cache_free(w->cache);
	free(w);
}

/* The worker's reference to a provider's key set, refreshed when the shared version moved. */
static struct auth_worker_keys *auth_worker_keys(struct auth_worker *w, int provider)
{
	struct auth_worker_keys *k = &w->keys[provider];
	struct auth_keyslot *slot = &w->shared->slots[provider];
	uint64_t v = atomic_load_explicit(&slot->version, memory_order_acquire);

	if (v != k->version) {
		struct jwks *old = k->keys;

		pthread_mutex_lock(&slot->lock);
		k->keys = slot->keys != NULL ? jwks_ref(slot->keys) : NULL;
		k->version = atomic_load(&slot->version);
		pthread_mutex_unlock(&slot->lock);
		jwks_unref(old);
	}
	return k;
}

/* ---- extraction ---- */

static void auth_trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

/* Adds a token unless the list is full. Returns -1 when there are more than AUTH_MAX_TOKENS. */
static int auth_token_add(struct auth_token *toks, size_t *n, const char *s, size_t len,
                          struct request_header *h)
{
	auth_trim(&s, &len);
	if (*n >= AUTH_MAX_TOKENS)
		return -1;
	toks[*n].s = s;
	toks[*n].len = len;
	toks[*n].header = h;
	(*n)++;
	return 0;
}

static int auth_extract_header(struct request *req, const char *name, size_t name_len, const char *prefix,
                               struct auth_token *toks, size_t *n)
{
	size_t plen = strlen(prefix), pos = 0;
	struct request_header *h;

	while ((h = request_header_next(req, name, name_len, &pos)) != NULL) {
		pos++;
		/* The scheme is compared case-insensitively (RFC 9110 section 11.1; Envoy does not). */
		if (h->value_len < plen || !jg_case_eq(h->value, plen, prefix, plen))
			continue;
		if (auth_token_add(toks, n, h->value + plen, h->value_len - plen, h) < 0)
			return -1;
	}
	return 0;
}

static int auth_extract_cookie(struct request *req, const char *cookie, struct auth_token *toks, size_t *n)
{
	size_t clen = strlen(cookie), pos = 0;
	struct request_header *h;

	while ((h = request_header_next(req, "cookie", 6, &pos)) != NULL) {
		const char *v = h->value, *end = h->value + h->value_len;

		pos++;
		while (v < end) {
			const char *semi = memchr(v, ';', (size_t)(end - v)), *eq;
			const char *pair_end = semi != NULL ? semi : end;
			const char *name = v;
			size_t nlen;

			while (name < pair_end && (*name == ' ' || *name == '\t'))
				name++;
			eq = memchr(name, '=', (size_t)(pair_end - name));
			if (eq != NULL) {
				nlen = (size_t)(eq - name);
				while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
					nlen--;
				if (nlen == clen && memcmp(name, cookie, clen) == 0) {
					const char *val = eq + 1;
					size_t vlen = (size_t)(pair_end - val);

					if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
						val++;
						vlen -= 2;
					}
					if (auth_token_add(toks, n, val, vlen, NULL) < 0)
						return -1;
				}
			}
			v = pair_end + 1;
		}
	}
	return 0;
}

static int auth_extract_param(struct request *req, const char *param, struct auth_token *toks, size_t *n)
{
	const char *val;
	size_t vlen, pos = 0;

	while (request_query_next(req, param, strlen(param), &val, &vlen, &pos) == 1)
		if (auth_token_add(toks, n, val, vlen, NULL) < 0)
			return -1;
	return 0;
}

/* Collects the provider's tokens. Returns 0, or -1 when there are too many. */
static int auth_extract(const struct config_provider *p, struct request *req, struct auth_token *toks,
                        size_t *n)
{
	size_t i;

	*n = 0;
	if (!p->has_extract_from) {
		if (auth_extract_header(req, "authorization", 13, "Bearer ", toks, n) < 0 ||
		    auth_extract_param(req, "access_token", toks, n) < 0)
			return -1;
		return 0;
	}
	for (i = 0; i < p->n_extract_headers; i++)
		if (auth_extract_header(
		            req, p->extract_headers[i].name, strlen(p->extract_headers[i].name),
		            p->extract_headers[i].value_prefix ? p->extract_headers[i].value_prefix : "",
		            toks, n) < 0)
			return -1;
	for (i = 0; i < p->n_extract_cookies; i++)
		if (auth_extract_cookie(req, p->extract_cookies[i], toks, n) < 0)
			return -1;
	for (i = 0; i < p->n_extract_params; i++)
		if (auth_extract_param(req, p->extract_params[i], toks, n) < 0)
			return -1;
	return 0;
}

/* ---- verification ---- */

static void auth_params(const struct config_provider *p, struct jwt_verify_params *vp)
{
	memset(vp, 0, sizeof(*vp));
	vp->issuer = p->issuer;
	vp->audiences = p->audiences;
	vp->n_audiences = p->n_audiences;
	vp->clock_skew_s = p->clock_skew_s;
	vp->require_expiration = p->require_expiration;
	vp->max_lifetime_s = p->max_lifetime_s;
	/* The claims as jansson objects only for the provider that copies claims to headers; the cache
	 * keeps them per provider, so a hit finds them too. */
	vp->payload_json = p->n_claim_to_headers > 0;
}

/* What a verified token leaves for the claim headers. */
struct auth_verified {
	json_t *payload; /* borrowed (cache entry) or owned by `tok` */
	const char *payload_b64;
	size_t payload_b64_len;
};

/* Whether a failed token may name a key published after the set was fetched, so that a remote
 * provider should refetch (rate-limited by jwks_fetch): no key fits its kid or alg, or it names a kid
 * that no key carries. The second case matters because key selection also tries keys without a kid
 * (jwt-behaviour.md "Key selection"): with such a key in the set (the seed's jwks.json has one), a token
 * signed with a rotated-in key fails with "Jwt verification fails" instead of JwksKidAlgMismatch. The
 * token's answer stays the same either way; only the refetch is decided here. A token without a kid
 * that fails its signature never asks: nothing says the set is stale. */
static bool auth_key_may_be_new(enum jwt_status st, const struct jwks *keys, const struct jwt *tok)
{
	if (st == JWT_STATUS_JWKS_KID_ALG_MISMATCH)
		return true;
	return (st == JWT_STATUS_VERIFICATION_FAIL || st == JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH) &&
	       jwt_kid_unknown(keys, tok);
}

/* Verifies one token for provider p, through the cache. On OK fills *out; `tok` must be released by
 * the caller whatever the result. */
static enum jwt_status auth_verify_token(struct auth_worker *w, const struct config_provider *p,
                                         const struct auth_token *t, int64_t now, struct jwt *tok,
                                         struct auth_verified *out)
{
	struct auth_worker_keys *k = auth_worker_keys(w, p->index);
	const struct token_cache_entry *e;
	struct jwt_verify_params vp;
	enum jwt_status st;

	auth_params(p, &vp);
	e = token_cache_get(w->cache, p->index, k->version, t->s, t->len);
	if (e != NULL) {
		/* Issuer, audience and signature are properties of the bytes: only time moves. The rule is
		 * jwt_verify_claims' own, run on the cached time claims. */
		struct jwt_verify_params tp = vp;

		tp.issuer = NULL;
		tp.n_audiences = 0;
		tok->has_iat = e->has_iat;
		tok->iat = e->iat;
		tok->has_nbf = e->has_nbf;
		tok->nbf = e->nbf;
		tok->has_exp = e->has_exp;
		tok->exp = e->exp;
		st = jwt_verify_claims(&tp, tok, now);
		if (st == JWT_STATUS_OK) {
			out->payload = e->payload;
			out->payload_b64 = e->token + e->payload_b64_off;
			out->payload_b64_len = e->payload_b64_len;
		}
		return st;
	}
	st = jwt_check(&vp, k->keys, t->s, t->len, now, tok);
	if (st != JWT_STATUS_OK && p->jwks_source == CONFIG_JWKS_REMOTE && w->shared->refetch_hook != NULL &&
	    auth_key_may_be_new(st, k->keys, tok))
		w->shared->refetch_hook(w->shared->refetch_arg, p->index); /* rate-limited by the fetcher */
	if (st != JWT_STATUS_OK)
		return st;
	out->payload = tok->payload;
	out->payload_b64 = tok->payload_b64;
	out->payload_b64_len = tok->payload_b64_len;
	token_cache_put(w->cache, p->index, k->version, t->s, t->len, tok->has_iat, tok->iat, tok->has_nbf,
	                tok->nbf, tok->has_exp, tok->exp, tok->payload, (size_t)(tok->payload_b64 - t->s),
	                tok->payload_b64_len);
	return JWT_STATUS_OK;
}

/* ---- claim headers ---- */

/* Finds a claim by dot path ("org.name") in the payload. */
static const json_t *auth_claim_find(const json_t *payload, const char *path)
{
	const json_t *cur = payload;
	char part[256];

	while (cur != NULL && *path != '\0') {
		const char *dot = strchr(path, '.');
		size_t len = dot != NULL ? (size_t)(dot - path) : strlen(path);

		if (len >= sizeof(part) || !json_is_object(cur))
			return NULL;
		memcpy(part, path, len);
		part[len] = '\0';
		cur = json_object_get(cur, part);
		path += len + (dot != NULL ? 1 : 0);
	}
	return cur;
}

/* Renders a claim as Envoy does: strings as they are, numbers and booleans as JSON text, objects and
 * arrays as base64url of their JSON. Returns the length written, or -1 when the value cannot be a
 * header value (CR, LF, NUL; security.md section 2 row 25) or is too long. */
static int auth_claim_render(const json_t *v, char *buf, size_t cap)
{
	size_t len, i;

	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		len = json_string_length(v);
		if (len >= cap)
			return -1;
		for (i = 0; i < len; i++)
			if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
				return -1;
		memcpy(buf, s, len);
		return (int)len;
	}
	if (json_is_integer(v))
		return snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if (json_is_real(v))
		return snprintf(buf, cap, "%.17g", json_real_value(v));
	if (json_is_true(v))
		return snprintf(buf, cap, "true");
	if (json_is_false(v))
		return snprintf(buf, cap, "false");
	if (json_is_object(v) || json_is_array(v)) {
		char *text = json_dumps(v, JSON_COMPACT);
		size_t out_len = 0;
		int rc;

		if (text == NULL)
			return -1;
		rc = b64url_encode((const uint8_t *)text, strlen(text), buf, cap, &out_len);
		free(text);
		return rc < 0 ? -1 : (int)out_len;
	}
	return -1;
}

static void auth_add_claim_headers(const struct config_provider *p, struct request *req,
                                   const struct auth_verified *v)
{
	char buf[AUTH_CLAIM_VALUE_MAX];
	size_t i;

	for (i = 0; i < p->n_claim_to_headers; i++) {
		const struct config_claim_to_header *c = &p->claim_to_headers[i];
		const json_t *claim = auth_claim_find(v->payload, c->claim);
		int n;

		if (claim == NULL || json_is_null(claim))
			continue;
		n = auth_claim_render(claim, buf, sizeof(buf));
		if (n < 0 || (size_t)n >= sizeof(buf)) {
			log_info("jwt provider %s: claim %s not copied to %s (not a safe header value)",
			         p->name, c->claim, c->header);
			continue;
		}
		request_header_add(req, c->header, strlen(c->header), buf, (size_t)n);
	}
	if (p->forward_payload_header != NULL)
		request_header_add(req, p->forward_payload_header, strlen(p->forward_payload_header),
		                   v->payload_b64, v->payload_b64_len);
}

/* Client-sent headers named like a claim header of any provider are dropped before verification,
 * so a client can never speak for a claim (jwt-behaviour.md "Extraction"). */
static void auth_strip_claim_headers(const struct config_policy *policy, struct request *req)
{
	size_t i, j;

	for (i = 0; i < policy->n_providers; i++) {
		const struct config_provider *p = &policy->providers[i];

		for (j = 0; j < p->n_claim_to_headers; j++)
			request_header_remove(req, p->claim_to_headers[j].header,
			                      strlen(p->claim_to_headers[j].header));
		if (p->forward_payload_header != NULL)
			request_header_remove(req, p->forward_payload_header,
			                      strlen(p->forward_payload_header));
	}
}

/* ---- the stage ---- */

static void auth_deny(struct auth_decision *out, enum jwt_status st)
{
	out->verdict = AUTH_DENY;
	out->jwt_status = (int)st;
	out->message = jwt_status_message(st);
	if (st == JWT_STATUS_AUDIENCE_NOT_ALLOWED) {
		out->http_status = 403;
		out->grpc_status = 7;
	} else {
		out->http_status = 401;
		out->grpc_status = 16;
	}
	out->invalid_token = st != JWT_STATUS_MISSED;
}

/* Runs one provider over its tokens. Returns OK (claim headers added), MISSED, or the first failure. */
static enum jwt_status auth_run_provider(struct auth_worker *w, const struct config_provider *p,
                                         struct request *req, int64_t now)
{
	struct auth_token toks[AUTH_MAX_TOKENS];
	struct auth_verified first = {0};
	size_t n, i;
	enum jwt_status st = JWT_STATUS_OK;

	if (auth_extract(p, req, toks, &n) < 0)
		return JWT_STATUS_MULTIPLE_TOKENS;
	if (n == 0)
		return JWT_STATUS_MISSED;
	for (i = 0; i < n && st == JWT_STATUS_OK; i++) {
		struct jwt tok;
		struct auth_verified v = {0};

		jwt_init(&tok);
		st = auth_verify_token(w, p, &toks[i], now, &tok, &v);
		if (st == JWT_STATUS_OK && i == 0 &&
		    (p->n_claim_to_headers > 0 || p->forward_payload_header != NULL)) {
			/* Claims come from the first token. Later tokens may evict its cache entry: hold a
			 * reference on the payload and copy the payload segment. (Nothing to keep when the
			 * provider copies no claim; the payload object exists only with claimToHeaders.) */
			first.payload = json_incref(v.payload);
			first.payload_b64 = arena_strndup(req->arena, v.payload_b64, v.payload_b64_len);
			first.payload_b64_len = v.payload_b64_len;
			if (first.payload_b64 == NULL)
				st = JWT_STATUS_VERIFICATION_FAIL; /* out of memory: fail closed */
		}
		jwt_release(&tok);
	}
	if (st == JWT_STATUS_OK) {
		if (first.payload_b64 != NULL)
			auth_add_claim_headers(p, req, &first);
		if (!p->forward) {
			for (i = 0; i < n; i++)
				if (toks[i].header != NULL)
					toks[i].header->removed = true;
		}
	}
	json_decref(first.payload);
	return st;
}

void auth_check(struct auth_worker *w, const struct config_policy *policy, struct request *req, int64_t now,
                struct auth_decision *out)
{
	enum jwt_status failure = JWT_STATUS_MISSED;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->verdict = AUTH_ALLOW;
	auth_strip_claim_headers(policy, req);
	for (i = 0; i < policy->n_providers; i++) {
		const struct config_provider *p = &policy->providers[i];
		enum jwt_status st = auth_run_provider(w, p, req, now);

		if (st == JWT_STATUS_OK) {
			out->recompute_route = p->recompute_route;
			return;
		}
		/* The first real failure is reported; "missing" only when every provider found nothing. */
		if (failure == JWT_STATUS_MISSED && st != JWT_STATUS_MISSED)
			failure = st;
	}
	if (failure == JWT_STATUS_MISSED && (policy->optional || policy->fail_open))
		return;
	if (failure != JWT_STATUS_MISSED && policy->fail_open) {
		log_debug("jwt policy %s: failOpen lets an invalid token pass: %s", policy->name,
		          jwt_status_message(failure));
		return;
	}
	auth_deny(out, failure);
}

size_t auth_www_authenticate(const struct request *req, const struct auth_decision *d, char *buf, size_t cap)
{
	size_t tlen = req->target_len > 256 ? 256 : req->target_len; /* realm path cut at 256 (Envoy) */
	int n = snprintf(buf, cap, "Bearer realm=\"%s://%.*s%.*s\"%s", req->scheme, (int)req->authority_len,
	                 req->authority ? req->authority : "", (int)tlen, req->target ? req->target : "",
	                 d->invalid_token ? ", error=\"invalid_token\"" : "");

	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
