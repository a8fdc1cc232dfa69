/* admin.h: the admin endpoint (issue 11 section 1): plain HTTP/1.1 on its own listener, on the
 * control thread's event base, never routed or proxied. GET and HEAD only (else 405), unknown
 * paths 404, one request per connection (Connection: close):
 *   /ready    200 "ready", or 503 with one reason per line (start-up, a provider without keys, drain)
 *   /live     200 "live", or 503 when a worker has not answered a heartbeat for ADMIN_LIVE_MAX_AGE_MS
 *   /metrics  Prometheus text format 0.0.4 (stats.h and the registered collectors)
 *   /status   JSON: listeners, routes and policies, providers and keys, backends, generation, uptime
 *   /config   JSON: the configuration in force, without secret material
 * Bounded by limits.maxHeaderBytes and limits.headerTimeout of the configuration, and by
 * ADMIN_MAX_CONNS connections at once. */
#ifndef JWTGATE_ADMIN_H
#define JWTGATE_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "telemetry/stats.h"

#define ADMIN_MAX_CONNS       64   /* admin connections at once; more are closed at accept */
#define ADMIN_LIVE_MAX_AGE_MS 5000 /* a worker silent this long makes /live 503 */
#define ADMIN_HEARTBEAT_MS    1000 /* the control thread pings every worker this often */

struct worker;
struct snapshot;
struct jwks_fetch;

/* What the admin endpoint reports. Owned and kept current by the control thread (main.c), which is
 * also the only thread that reads it (the admin runs on the control base). */
struct admin_state {
	const char *config_path;
	struct snapshot *current; /* the configuration in force */
	struct worker *workers;   /* NULL until they are started */
	int n_workers;
	struct jwks_fetch *jwks;     /* remote JWKS fetchers of `current`, or NULL */
	bool is_listening;           /* every listener's sockets are open and the workers run */
	bool is_draining;            /* SIGTERM/SIGINT: /ready answers 503 from here on */
	uint64_t generation;         /* 1 at start, +1 per configuration reload applied */
	int64_t start_time;          /* wall clock s */
	uint64_t start_ms;           /* jg_now_ms() at start */
	struct stats_registry extra; /* collectors of other modules, run after the built-in families */
};

struct admin;

/* Binds cfg's admin address and serves it on base (start-up tier; errors to err). Arms the workers'
 * heartbeat. Returns NULL when the socket cannot be bound. st must outlive the result. */
struct admin *admin_new(struct event_base *base, const struct config *cfg, struct admin_state *st, FILE *err);
/* Closes the listener and every admin connection. NULL is ignored. */
void admin_free(struct admin *a);

/* Appends one line per reason /live fails (a worker that exited, or whose heartbeat is older than
 * ADMIN_LIVE_MAX_AGE_MS at now_ms) to out; returns how many. Workers that were asked to drain are
 * not checked (their notify channel is closed; limits.drainTimeout bounds them). */
int admin_live_reasons(const struct worker *workers, int n, bool is_draining, uint64_t now_ms,
                       struct evbuffer *out);

#endif
