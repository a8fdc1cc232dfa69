/* jwks_fetch.h: remote JWKS fetchers on the control thread (DESIGN.md "JWT stage", reference/jwt-behaviour.md
 * "Remote JWKS lifecycle").
 *
 * One fetcher per distinct remoteJWKS (uri, backendRef): providers naming the same JWKS share its fetches
 * and every success is published to all their key slots with auth_shared_set_keys(). A fetcher is an
 * HTTP/1.1 client on the control thread's event_base (evdns for names, httpc.h for the request):
 * - an https:// URI, or an http:// URI whose backend has a tls block: TLS 1.2+, peer verified against the
 *   backend's caCertificateRefs (files or inline PEM) or the system store (wellKnownCACertificates:
 *   System, or no backendRefs); SNI and the name checked are tls.hostname, else the URI's host. https is
 *   never fetched in clear nor without verification.
 * - an http:// URI without such a backend ("https or http", the issue): plain HTTP, logged as a warning
 *   at start-up since nothing authenticates the key set then.
 * - the connect address: the backend's endpoints in turn (IP, or FQDN resolved with evdns), or the URI's
 *   host without backendRefs.
 * - status 200 and a body of at most JWKS_MAX_TEXT_LEN bytes (Content-Length, chunked or close-delimited);
 *   a connect timeout (the backend's, 5 s without one) and requestTimeout bound each attempt.
 * - retries per backendSettings.retry: capped exponential backoff with full jitter, only for the configured
 *   triggers (Envoy's meaning: 5xx = any 5xx status or no response; gateway-error = 502/503/504 or no
 *   response; reset = no complete response (reset, close, timeout, connect failure); connect-failure =
 *   DNS, TCP or TLS failure or connect timeout; retriable-4xx = 409).
 * - counters per fetcher (struct jwks_fetch_stats): logged at info level after every fetch cycle (a
 *   success, or a failure with its retries spent), readable with jwks_fetch_get_stats.
 * - after a success: the next fetch at cacheDuration - 5 s (cacheDuration when it is 10 s or less); after
 *   a cycle whose retries are spent: every failedRefetchDuration, keeping the previous keys.
 * - a worker that meets a kid (or alg) the key set does not have (also when kid-less keys were tried and
 *   failed) asks for a refetch (jwks_fetch registers
 *   a hook in auth_shared): at most one refetch per JWKS_FETCH_KICK_COOLDOWN (at least
 * failedRefetchDuration), never a second fetch while one is in flight (envoyproxy/gateway#4791). Everything
 * here runs on the control thread except that hook, which only reads an atomic and activates an event.
 */
#ifndef JWTGATE_JWKS_FETCH_H
#define JWTGATE_JWKS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "jwtgate/auth.h"
#include "jwtgate/config.h"

#define JWKS_FETCH_STARTUP_MAX_MS     10000 /* listeners open at the latest this long after start-up */
#define JWKS_FETCH_KICK_COOLDOWN_MS   10000 /* minimum time between two unknown-kid refetches */
#define JWKS_FETCH_REFRESH_EARLY_MS   5000  /* refresh this much before cacheDuration ends (Envoy) */
#define JWKS_FETCH_CONNECT_TIMEOUT_MS 5000  /* connect + TLS handshake without a backend's own timeout */

/* Why one attempt failed; decides whether it is retried (jwks_fetch_should_retry). */
enum jwks_fetch_failure {
	JWKS_FETCH_OK = 0,
	JWKS_FETCH_FAIL_CONNECT, /* DNS, TCP, connect timeout before the TCP connection was up */
	JWKS_FETCH_FAIL_TLS,     /* TLS handshake or certificate, once TCP was up */
	JWKS_FETCH_FAIL_RESET,   /* reset or closed before a complete response, malformed response */
	JWKS_FETCH_FAIL_TIMEOUT, /* requestTimeout passed after the connection was up */
	JWKS_FETCH_FAIL_STATUS,  /* a status other than 200 */
	JWKS_FETCH_FAIL_TOO_BIG, /* body or announced Content-Length over JWKS_MAX_TEXT_LEN */
	JWKS_FETCH_FAIL_JWKS,    /* a 200 whose body is not a usable JWKS */
	JWKS_FETCH_FAIL_CONFIG,  /* no TLS context or unusable URI: nothing a retry could change */
};

#define JWKS_FETCH_FAILURE_KINDS (JWKS_FETCH_FAIL_CONFIG + 1) /* size of an array indexed by the enum */

/* What one fetcher has done since start-up (carried over by a reload for the same uri and backend).
 * Attempts are counted, retries included: a 503, 503, 200 cycle is 1 success and 2 status failures. */
struct jwks_fetch_stats {
	uint64_t successes;
	uint64_t failures[JWKS_FETCH_FAILURE_KINDS]; /* by enum jwks_fetch_failure; [JWKS_FETCH_OK] = 0 */
	uint64_t kid_refetches;                      /* fetches started for an unknown kid */
	bool has_keys;                               /* a key set is in use */
	size_t n_keys;                               /* its number of keys */
	uint64_t keys_age_ms;                        /* its age (jwks_fetch_get_stats) */
};

struct jwks_fetch; /* every fetcher of one configuration */

/* Builds one fetcher per distinct remote JWKS of cfg on the control base and registers the unknown-kid
 * hook in auth (so it must be called before the workers start). Start-up tier: aborts on allocation
 * failure; a CA bundle that cannot be loaded or a URI it cannot use is logged and leaves that fetcher
 * failing every fetch (its providers answer 401, never trust an unverified peer). cfg, auth and base must
 * outlive the result. Nothing is fetched before jwks_fetch_start(). */
struct jwks_fetch *jwks_fetch_new(struct event_base *base, const struct config *cfg,
                                  struct auth_shared *auth);

/* Number of fetchers (0: the configuration has no remote JWKS). */
size_t jwks_fetch_count(const struct jwks_fetch *jf);

/* Copies the counters of fetcher i (0 <= i < jwks_fetch_count) into out and points *uri (if not NULL)
 * at its URI (valid while jf lives). Call it on the control thread. Returns 0, or JG_ERR_INVAL for an i
 * out of range. */
int jwks_fetch_get_stats(const struct jwks_fetch *jf, size_t i, const char **uri,
                         struct jwks_fetch_stats *out);

/* Starts the first fetch of every fetcher. on_first_done(arg) is called once, on the control thread,
 * when every fetcher has finished its first fetch cycle (success, or failure with its retries spent);
 * right away when there is no fetcher. */
void jwks_fetch_start(struct jwks_fetch *jf, void (*on_first_done)(void *arg), void *arg);

/* True once every first fetch has finished. */
bool jwks_fetch_first_done(const struct jwks_fetch *jf);

/* How long start-up waits for the first fetches: the longest first cycle a fetcher can take (every
 * attempt timing out plus the longest backoffs), capped at JWKS_FETCH_STARTUP_MAX_MS. */
uint64_t jwks_fetch_startup_bound_ms(const struct jwks_fetch *jf);

/* Configuration reload: jf (new, not started) takes over from old (the running set, may be NULL). The
 * keys old holds for the same uri and backend name are published to jf's slots at once, so a reload
 * opens no 401 window; old is stopped but stays allocated (requests in flight on the old configuration
 * may still call its hook) and is freed with jf by jwks_fetch_free. Call it before the workers see the
 * new key sets and while old's configuration and key sets are still alive; then jwks_fetch_start(jf). */
void jwks_fetch_replace(struct jwks_fetch *jf, struct jwks_fetch *old);

/* Cancels every fetch (connections, DNS queries, timers), unregisters the hook and frees everything,
 * the sets it replaced included.
 * Call it on the control thread after the workers have been joined, before auth is freed; it runs the
 * base once without blocking so cancelled DNS queries can release their memory. NULL is ignored. */
void jwks_fetch_free(struct jwks_fetch *jf);

/* Whether an attempt that failed this way is retried under the CONFIG_RETRY_ON_* bits in triggers
 * (status: the HTTP status for JWKS_FETCH_FAIL_STATUS). */
bool jwks_fetch_should_retry(unsigned triggers, enum jwks_fetch_failure failure, int status);

/* Delay before retry number `retry` (0 = the first retry): a value drawn with rnd from
 * [0, min(maxInterval, baseInterval * 2^retry)] ("full jitter"). */
uint64_t jwks_fetch_backoff_ms(const struct config_retry *r, unsigned retry, uint64_t rnd);

const char *jwks_fetch_failure_str(enum jwks_fetch_failure f);

/* The counter name of a failure kind in the log line ("connect", "tls", "timeout", "status", "reset",
 * "too_large", "bad_jwks", "config"); "ok" for JWKS_FETCH_OK. */
const char *jwks_fetch_failure_key(enum jwks_fetch_failure f);

#endif
