/* health.h: active health checks of backend endpoints (issue 11 section 2; Envoy Gateway's
 * BackendTrafficPolicy healthCheck.active).
 *
 * Two halves:
 * - struct health_shared: one verdict per endpoint of a configuration, built with the snapshot (so it is
 *   reference-counted with it and lives as long as any worker generation uses that configuration). The
 *   control thread writes it; workers read it on the request path with one relaxed atomic load per
 *   endpoint they consider (health_endpoint_is_healthy) and never take a lock. An endpoint without
 *   an active check has no entry (NULL) and always counts as healthy.
 * - struct health_check: the checkers, one per endpoint of every backend with healthCheck.active, for
 *   the whole process, on the control thread's event base (never one per worker). A check is one
 *   request on a fresh connection (httpc.h), plain or TLS as the backend's tls block says:
 *   - HTTP: `method path` over HTTP/1.1 (backend protocol HTTP) or HTTP/2 (H2C prior knowledge, H2 by
 *     ALPN), Host / :authority the backend's tls.hostname or the endpoint's host:port; healthy when the
 *     final status is in expectedStatuses. The body is never read.
 *   - GRPC: grpc.health.v1.Health/Check over HTTP/2 with HealthCheckRequest{service}; healthy when the
 *     answer is HTTP 200, grpc-status 0 and HealthCheckResponse.status SERVING (1).
 *   Each check is bounded by timeout (resolving, connect, TLS and response together), the response
 *   head by HTTPC_HEAD_MAX and a gRPC body by HEALTH_GRPC_BODY_MAX. The next check starts interval
 *   after the previous one ended. An endpoint becomes unhealthy after unhealthyThreshold consecutive
 *   failures and healthy again after healthyThreshold consecutive passes; its first result decides at
 *   once (Envoy holds a host unhealthy until its first pass; jwtgate sends traffic until the first
 *   check says otherwise, so a start or a reload never opens a 503 window). Transitions are logged
 *   (warn when it goes down, info when it comes back).
 *   FQDN endpoints: the checker resolves the name itself (evdns on the control thread) before each
 *   check and checks the first address, as a worker connects to the first address it resolved; the
 *   verdict is the endpoint's as a whole.
 * Unhealthy endpoints get no new requests; they also count as unavailable for the panic threshold
 * (upstream.c), as in Envoy. Passive ejection works as before, independently.
 */
#ifndef JWTGATE_HEALTH_H
#define JWTGATE_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "jwtgate/config.h"

#define HEALTH_GRPC_BODY_MAX 1024 /* gRPC response bytes read (a HealthCheckResponse is 7) */

/* How one check ended. */
enum health_outcome {
	HEALTH_CHECK_OK = 0,  /* expected status / SERVING */
	HEALTH_CHECK_STATUS,  /* an answer that says unhealthy: status not expected, not SERVING */
	HEALTH_CHECK_TIMEOUT, /* no complete answer within timeout */
	HEALTH_CHECK_CONNECT, /* name resolution, TCP or TLS failure */
	HEALTH_CHECK_RESET,   /* closed, reset or malformed answer */
	HEALTH_OUTCOMES,      /* size of an array indexed by the enum */
};

/* Shared per-endpoint state: written by the control thread only, read anywhere. */
struct health_endpoint {
	atomic_bool is_healthy;
	atomic_uint_fast64_t checks[HEALTH_OUTCOMES]; /* checks by outcome since start (reloads carry them) */
	atomic_uint_fast64_t transitions;             /* healthy <-> unhealthy changes */
};

struct health_shared;

/* The verdicts of cfg's endpoints (all healthy until checked). Start-up tier: aborts on allocation
 * failure. cfg must outlive it. */
struct health_shared *health_shared_new(const struct config *cfg);
void health_shared_free(struct health_shared *hs);

/* The entry of endpoint `endpoint` of backend `backend` (config indexes), or NULL when that backend
 * has no active health check (or an index is out of range). Stable for hs's lifetime. */
const struct health_endpoint *health_shared_endpoint(const struct health_shared *hs, size_t backend,
                                                     size_t endpoint);

/* The request path's question: may new requests go to this endpoint? True for NULL (not checked).
 * One relaxed load: a verdict reaches the workers within a few cache-coherence delays, no ordering
 * with other data is needed. */
static inline bool health_endpoint_is_healthy(const struct health_endpoint *he)
{
	return he == NULL || atomic_load_explicit(&he->is_healthy, memory_order_relaxed);
}

/* A copy for readers (admin /metrics and /status). */
struct health_endpoint_stats {
	bool is_checked; /* the backend has healthCheck.active */
	bool is_healthy;
	uint64_t checks[HEALTH_OUTCOMES];
	uint64_t transitions;
};

/* Fills out for endpoint `endpoint` of backend `backend`; any thread. Returns 0, or JG_ERR_INVAL for
 * an index out of range. */
int health_endpoint_get_stats(const struct health_shared *hs, size_t backend, size_t endpoint,
                              struct health_endpoint_stats *out);

/* Label of an outcome for counters and logs: "ok", "status", "timeout", "connect", "reset". */
const char *health_outcome_key(enum health_outcome o);

struct health_check; /* the checkers of one configuration */

/* Builds a checker per endpoint of every backend with healthCheck.active in cfg, writing into hs, on
 * base (the control thread's). A backend whose CA bundle cannot be loaded gets checks that fail as
 * connect failures (never an unverified peer). Start-up tier. Nothing runs before health_check_start.
 * cfg and hs must outlive the result. */
struct health_check *health_check_new(struct event_base *base, const struct config *cfg,
                                      struct health_shared *hs);

/* Number of checkers (0: no backend has an active health check). */
size_t health_check_count(const struct health_check *hc);

/* Configuration reload: hc (new, not started) takes over from old (the running set, may be NULL):
 * for each endpoint of the same backend name, host and port checked the same way (type) the verdict,
 * the consecutive counts and the counters carry over, so a reload neither revives a dead endpoint
 * nor kills a live one. old is stopped and freed (checkers are the control thread's alone). Call it
 * before the workers see hc's configuration, then health_check_start(hc). */
void health_check_replace(struct health_check *hc, struct health_check *old);

/* Starts the first check of every checker now. */
void health_check_start(struct health_check *hc);

/* Cancels every check (connections, DNS queries, timers) and frees hc. Control thread; NULL ignored. */
void health_check_free(struct health_check *hc);

/* The gRPC health protocol (grpc/grpc doc/health-checking.md), exposed for unit tests.
 * health_grpc_request writes the gRPC message (5-byte prefix + HealthCheckRequest{service = 1}) into
 * out (size cap) and returns its length, or 0 when it does not fit. health_grpc_serving parses one
 * gRPC message holding a HealthCheckResponse: 1 when status is SERVING, 0 for any other status (absent
 * = UNKNOWN), JG_ERR_PARSE when the bytes are not such a message. */
size_t health_grpc_request(const char *service, uint8_t *out, size_t cap);
int health_grpc_serving(const uint8_t *msg, size_t len);

#endif
