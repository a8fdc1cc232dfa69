/* auth.h: the JWT stage of the pipeline. Protocol-neutral: it reads and edits a struct request and
 * returns a decision; the codec renders a denial (HTTP 401/403 text, or gRPC trailers-only). */
#ifndef JWTGATE_AUTH_H
#define JWTGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jwtgate/config.h"
#include "jwtgate/request.h"

enum auth_verdict {
	AUTH_ALLOW = 0, /* forward (claim headers were added to the request) */
	AUTH_DENY,      /* render the decision */
};

struct auth_decision {
	enum auth_verdict verdict;
	int http_status;      /* 401 or 403 on deny */
	int grpc_status;      /* 16 (UNAUTHENTICATED) or 7 (PERMISSION_DENIED) on deny */
	int jwt_status;       /* jwt_verify_lib status number (jwt-behaviour.md) */
	const char *message;  /* static text, e.g. "Jwt is missing" */
	bool invalid_token;   /* WWW-Authenticate gets error="invalid_token" */
	bool recompute_route; /* a provider with recomputeRoute added headers */
};

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
void auth_worker_free(struct auth_worker *w);

/* Runs the policy on the request; `now` is wall-clock seconds. Never returns ALLOW for a token that
 * failed unless the policy says failOpen. */
void auth_check(struct auth_worker *w, const struct config_policy *policy, struct request *req, int64_t now,
                struct auth_decision *out);

/* Writes the WWW-Authenticate value for a denial into buf (NUL-terminated, truncated at cap):
 * Bearer realm="<scheme>://<host><path>"[, error="invalid_token"]. Returns the length. */
size_t auth_www_authenticate(const struct request *req, const struct auth_decision *d, char *buf, size_t cap);

#endif
