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

#include "jwt/auth.h"
#include "core/arena.h"
#include "core/bevio.h"
#include "core/pagepool.h"
#include "config/config.h"
#include "route/router.h"
#include "telemetry/stats.h"
#include "upstream/upstream.h"

struct h1_conn;

/* What the worker needs of a downstream connection, whatever its codec, to drain or close it at
 * shutdown. Embedded in the codec's connection object (container_of). */
struct worker_conn {
	struct worker_conn *prev, *next;
	void (*drain)(struct worker_conn *wc); /* close when idle; finish what is in flight */
	void (*abort)(struct worker_conn *wc); /* the drain bound passed: close now */
	int listener_index;                    /* set by the codec before worker_conn_added */
	enum stats_proto proto;                /* likewise: jwtgate_connections_open{protocol} */
};
struct h2_conn;
struct health_shared;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* An immutable configuration with what is built from it once for all workers. Reference-counted
 * (atomically): the main thread holds one while it is current, each worker generation holds one. */
struct snapshot {
	atomic_uint refs;
	uint64_t generation; /* 1 at start-up, +1 per applied reload (reload.h) */
	struct config *cfg;
	struct router *router;
	struct auth_shared *auth;
	/* TLS contexts built from files the config names (certificates, keys, CA bundles), so a reload
	 * re-reads them. OpenSSL reference-counts an SSL_CTX and each SSL (connection) holds one: a
	 * connection keeps the certificate it was accepted with after the snapshot is gone. */
	struct ssl_ctx_st **listener_tls; /* cfg->n_listeners entries, NULL for a plaintext listener */
	struct ssl_ctx_st **backend_tls;  /* cfg->n_backends entries, NULL for a cleartext backend */
	struct health_shared *health;     /* active health check verdicts of cfg's endpoints (health.h) */
	struct stats_gen *stats; /* per-worker counters of this generation (NULL: none); freed with it */
};

/* Takes ownership of the three parts and builds the health verdicts of cfg; refs = 1, no TLS contexts
 * yet (the caller fills both arrays, which snapshot_new allocates, before the snapshot is published). */
struct snapshot *snapshot_new(struct config *cfg, struct router *router, struct auth_shared *auth);
struct snapshot *snapshot_ref(struct snapshot *s);
/* The last reference frees router, key sets, TLS contexts and config, on whatever thread drops it. */
void snapshot_unref(struct snapshot *s);

/* What a worker builds from a snapshot: its upstream pools and token cache. An exchange holds its
 * generation until it ends, so a reload never pulls a backend pool or a route from under a request
 * in flight, and new requests use the new configuration at once. Worker thread only. */
struct worker_gen {
	struct snapshot *snap;
	const struct config *cfg;
	const struct router *router;
	struct auth_worker *auth;
	struct upstream_worker *upstream;
	struct stats_shard *stats; /* this worker's counters in snap->stats, or NULL */
	unsigned refs;             /* 1 while current, plus one per request in flight */
	struct event free_ev;      /* the last release frees from here, never inside an upstream callback */
};

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	const struct config *cfg;           /* the current generation's config (limits for new requests) */
	struct worker_gen *gen;             /* current generation */
	_Atomic(struct snapshot *) pending; /* set by worker_reload, taken by the worker */
	atomic_bool stop_requested;         /* set by worker_request_stop */
	int notify_fd;                      /* eventfd: the main thread wakes the worker (stop, reload) */
	struct event notify_ev;
	int *listen_fds; /* one per config listener, bound before the thread starts */
	struct evconnlistener **listeners;
	struct event drain_ev; /* drain deadline */
	bool draining;
	struct worker_conn *conns;      /* every live downstream connection, any codec (for drain) */
	size_t n_conns;                 /* both lists */
	uint64_t rng;                   /* xorshift state for load balancing and request ids */
	struct bevio_timeouts timeouts; /* common-timeout queues of this worker's base */
	struct bevio_defer_queue defer; /* end-of-batch work of its connections (bevio.h) */
	/* Request arena chunks between requests: a connection gives its chunk back when it goes idle
	 * and takes one at the next request's first byte (arena.h). */
	struct arena_cache arenas;
	/* Slots for the HTTP/2 sessions' stream tables and frame buffers, released while a connection
	 * is idle (http2_mem_pool_init). */
	struct pagepool h2_pages;
	bool has_access_log;        /* accessLog is on (lines go to the log writer, log_writer.h) */
	struct stats_worker *stats; /* lifetime counters; written by this worker only (stats.h) */
	/* jg_now_ms() when the worker last answered the control thread's heartbeat (admin /live) */
	_Atomic uint64_t heartbeat_ms;
	atomic_bool is_exited; /* its loop has returned (set by the worker, read by the control thread) */
};

#define WORKER_ARENA_CHUNK  4096 /* the request arenas' chunk size (both codecs) */
#define WORKER_ARENA_CACHED 128  /* chunks a worker keeps for reuse: 512 KiB, not per connection */

/* Process-wide count of open downstream connections (limits.maxConnections). */
extern atomic_uint worker_open_conns;

/* The listen(2) backlog the kernel will grant: limits.listenBacklog capped by
 * /proc/sys/net/core/somaxconn (the kernel silently truncates to it). *somaxconn gets the limit read,
 * or 0 when it cannot be read (then the configured value is used as is). */
int worker_listen_backlog(const struct config *cfg, int *somaxconn);
/* Fails (-EADDRINUSE, reported to err) when another process already listens on a listener's address.
 * The workers' sockets share their ports through SO_REUSEPORT, and so would any other process that
 * sets it (a second jwtgate started by mistake, by the same user): connections would be split
 * between the two without an error. Called once before worker_open_listen_sockets; other bind
 * problems are left to it. */
int worker_check_listen_free(const struct config *cfg, FILE *err);
/* Opens one listening socket per config listener with SO_REUSEPORT, listening with
 * worker_listen_backlog() (start-up: errors to stderr). Returns 0 or -errno; fds must have
 * cfg->n_listeners entries. */
int worker_open_listen_sockets(const struct config *cfg, int *fds, FILE *err);

/* Creates the worker's event_base, pools and listeners; does not start the thread. Takes a
 * reference on snap. The worker's thread logs through log writer slot `id`. */
int worker_init(struct worker *w, int id, struct snapshot *snap, int *listen_fds, bool has_access_log);

/* Thread-safe: hands a new snapshot to the worker (takes over the caller's reference). */
void worker_reload(struct worker *w, struct snapshot *snap);

/* The current generation with one more reference, for a request about to be dispatched. */
struct worker_gen *worker_gen_acquire(struct worker *w);
/* Drops a request's reference; a generation that is no longer current is freed with its last one. */
void worker_gen_release(struct worker *w, struct worker_gen *g);
int worker_start(struct worker *w);
/* Thread-safe: asks the worker to stop accepting and to exit once its connections are done (or
 * the drain timeout passes). */
void worker_request_stop(struct worker *w);
/* Thread-safe: asks the worker to stamp heartbeat_ms (the control thread does it every second). */
void worker_heartbeat(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

uint64_t worker_random(struct worker *w);

/* Counts a finished request in the shard of g (the generation that handled it), else of the
 * worker's current one: listener and route index (rule NULL: none), final status, and the time since
 * start_us (jg_now_us() at its first byte; 0: unknown) up to now_us. Once per request. */
void worker_count_request(struct worker *w, struct worker_gen *g, int listener,
                          const struct config_rule *rule, int status, uint64_t start_us, uint64_t now_us);

/* Called by codecs when a connection starts and when it is gone. */
void worker_conn_added(struct worker *w, struct worker_conn *wc);
void worker_conn_removed(struct worker *w, struct worker_conn *wc);

#endif
