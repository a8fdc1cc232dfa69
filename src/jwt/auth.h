/* auth.h: the JWT stage of the pipeline. Protocol-neutral: it reads and edits a struct request and
 * returns a decision; the codec renders a denial (HTTP 401/403 text, or gRPC trailers-only). */
#ifndef JWTGATE_AUTH_H
#define JWTGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/request.h"

enum auth_verdict {
	AUTH_ALLOW = 0, /* forward (claim headers were added to the request) */
	AUTH_DENY,      /* render the decision */
};

/* The JWT outcome of a request in a bounded set (access log `jwt`, metrics labels): what the policy
 * found, whatever the verdict (an `optional` policy lets a missing token pass as `missing`, failOpen
 * an invalid one with its reason). */
enum auth_reason {
	AUTH_REASON_NONE = 0,      /* no JWT policy on the route */
	AUTH_REASON_OK,            /* a token was verified */
	AUTH_REASON_MISSING,       /* no token where the providers look */
	AUTH_REASON_EXPIRED,       /* exp passed, or lifetime rules (requireExpiration, maxLifetime) */
	AUTH_REASON_NOT_YET_VALID, /* nbf in the future */
	AUTH_REASON_BAD_SIGNATURE, /* the signature does not verify with the key it names */
	AUTH_REASON_BAD_ISSUER,    /* iss is not the provider's issuer */
	AUTH_REASON_BAD_AUDIENCE,  /* no aud is one of the provider's audiences (403) */
	AUTH_REASON_UNKNOWN_KEY,   /* no key of the set fits the token's kid and alg */
	AUTH_REASON_MALFORMED,  /* not a JWS the stage accepts: encoding, JSON, alg, claim types, too many */
	AUTH_REASON_NO_KEY_SET, /* the provider has no usable key set (remote JWKS not fetched) */
	AUTH_REASON_COUNT,
};

/* Lower-case name of a reason ("ok", "not_yet_valid"...); "none" for AUTH_REASON_NONE. */
const char *auth_reason_str(enum auth_reason r);
/* The reason of a jwt_verify_lib status. */
enum auth_reason auth_reason_of(int jwt_status);

#define AUTH_SUB_MAX 256 /* bytes of a sub kept for the access log */

struct auth_decision {
	enum auth_verdict verdict;
	enum auth_reason reason; /* set whatever the verdict (also in req->jwt_reason) */
	int http_status;         /* 401 or 403 on deny */
	int grpc_status;         /* 16 (UNAUTHENTICATED) or 7 (PERMISSION_DENIED) on deny */
	int jwt_status;          /* jwt_verify_lib status number (jwt-behaviour.md) */
	const char *message;     /* static text, e.g. "Jwt is missing" */
	bool invalid_token;      /* WWW-Authenticate gets error="invalid_token" */
	bool recompute_route;    /* a provider with recomputeRoute added headers */
	bool authz_denied;       /* the policy's authorization rules denied (403 "RBAC: access denied",
	                            no WWW-Authenticate) */
	int authz_rule;          /* the authorization rule that decided, -1: defaultAction or none */
};

/* Fills out with the denial the stage answers for a failed token (jwt_status != OK): the message
 * (jwt_status_message), 403 / gRPC 7 for JwtAudienceNotAllowed and 401 / 16 otherwise, invalid_token
 * except for a missing token. jwtgate-token verify prints this, so it says what the proxy would. */
void auth_decision_deny(struct auth_decision *out, int jwt_status);

struct auth_shared; /* immutable key sets for every provider of a config; shared by workers */
struct auth_worker; /* per-worker state (verified-token cache); used by one thread only */

/* Builds the key sets of every local-JWKS provider (start-up tier). Logs each rejected key.
 * Returns NULL and writes the reason to err when a provider has no usable key. */
struct auth_shared *auth_shared_new(const struct config *cfg, FILE *err);
void auth_shared_free(struct auth_shared *s);

struct jwks;
/* Publishes a new key set for provider index `provider` (takes over the caller's reference; NULL
 * = none). Thread-safe; workers pick it up on their next request for that provider and verified
 * tokens cached with the old set are verified again. */
void auth_shared_set_keys(struct auth_shared *s, int provider, struct jwks *keys);

/* Registers the function a worker calls when a token may name a key that a remote provider's key set does
 * not have yet (JwksKidAlgMismatch, or a failed signature with a kid no key carries, jwt_kid_unknown):
 * hook(arg, provider index), from any worker thread, on the
 * request path, so it must be thread-safe, lock-free and cheap (jwks_fetch rate-limits refetches).
 * Set it before the workers start and clear it (NULL) only after they are joined. */
void auth_shared_set_refetch_hook(struct auth_shared *s, void (*hook)(void *arg, int provider), void *arg);

struct auth_worker *auth_worker_new(const struct auth_shared *s, uint32_t cache_size);
struct stats_shard;
struct stats_worker;
/* Where the worker counts JWT outcomes per provider (shard) and its token cache lookups (sw); either
 * may be NULL. Both belong to the thread that uses w (stats.h). */
void auth_worker_set_stats(struct auth_worker *w, struct stats_shard *shard, struct stats_worker *sw);
/* The key set provider `provider` uses now, with one reference (jwks_unref it), or NULL when it has
 * none yet (remote JWKS not fetched). Any thread; takes the slot's lock (not for the request path). */
struct jwks *auth_shared_keys(struct auth_shared *s, int provider);
void auth_worker_free(struct auth_worker *w);

/* Runs the policy on the request: its jwt providers, then its authorization rules (authz.h); `now` is
 * wall-clock seconds. Never returns ALLOW for a token that failed unless the policy says failOpen.
 * Sets req->jwt_reason, and req->jwt_sub when a token was verified and carries a sub. */
void auth_check(struct auth_worker *w, const struct config_policy *policy, struct request *req, int64_t now,
                struct auth_decision *out);

/* Writes the WWW-Authenticate value for a denial into buf (NUL-terminated, truncated at cap):
 * Bearer realm="<scheme>://<host><path>"[, error="invalid_token"]. Returns the length. */
size_t auth_www_authenticate(const struct request *req, const struct auth_decision *d, char *buf, size_t cap);

#endif
