/* worker.h: one worker thread = one event_base with its own listening sockets (SO_REUSEPORT),
 * upstream pools and token cache. Nothing on the request path is shared mutable state. */
#ifndef JWTGATE_WORKER_H
#define JWTGATE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "jwtgate/auth.h"
#include "jwtgate/config.h"
#include "jwtgate/router.h"
#include "jwtgate/upstream.h"

struct h1_conn;

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	const struct config *cfg;
	const struct router *router;
	struct auth_worker *auth;
	struct upstream_worker *upstream;
	int *listen_fds; /* one per config listener, bound before the thread starts */
	struct evconnlistener **listeners;
	struct event stop_ev;  /* activated from the main thread: start draining */
	struct event drain_ev; /* drain deadline */
	bool draining;
	struct h1_conn *conns; /* every live downstream connection (for drain) */
	size_t n_conns;
	uint64_t rng; /* xorshift state for load balancing and request ids */
	FILE *access_log;
	enum config_log_format access_log_format;
};

/* Process-wide count of open downstream connections (limits.maxConnections). */
extern atomic_uint worker_open_conns;

/* Opens one listening socket per config listener with SO_REUSEPORT (start-up: errors to stderr).
 * Returns 0 or -errno; fds must have cfg->n_listeners entries. */
int worker_open_listen_sockets(const struct config *cfg, int *fds, FILE *err);

/* Creates the worker's event_base, pools and listeners; does not start the thread. */
int worker_init(struct worker *w, int id, const struct config *cfg, const struct router *router,
		const struct auth_shared *auth, int *listen_fds, FILE *access_log);
int worker_start(struct worker *w);
/* Thread-safe: asks the worker to stop accepting and to exit once its connections are done (or
 * the drain timeout passes). */
void worker_request_stop(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

uint64_t worker_random(struct worker *w);

/* Called by codecs. */
void worker_conn_added(struct worker *w, struct h1_conn *c);
void worker_conn_removed(struct worker *w, struct h1_conn *c);

#endif
