/* upstream-int.h: what upstream.c (pools, endpoints, load balancing, ejection, the HTTP/1.1
 * exchange) shares with upstream_h2.c (multiplexed HTTP/2 connections, TLS towards backends).
 * Private to those two files: nothing outside src/upstream*.c includes it. */
#ifndef JWTGATE_UPSTREAM_INT_H
#define JWTGATE_UPSTREAM_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

#include "core/common.h"
#include "core/bevio.h"
#include "upstream/health.h"
#include "telemetry/stats.h"
#include "upstream/upstream.h"

#define UPSTREAM_EJECT_AFTER  3    /* consecutive connect failures before ejection */
#define UPSTREAM_EJECT_MS     5000 /* ejection time (doubles while failures go on, capped) */
#define UPSTREAM_EJECT_MAX_MS 60000
#define UPSTREAM_MAX_TRIES    3            /* connect attempts per exchange */
#define UPSTREAM_RESOLVE_MS   30000        /* FQDN re-resolution period */
#define UPSTREAM_HEAD_MAX     (64 * 1024)  /* response head bytes accepted from an upstream */
#define UPSTREAM_OUT_HIGH     (256 * 1024) /* request body buffered towards upstream before pausing */
#define UPSTREAM_OUT_LOW      (64 * 1024)
#define UPSTREAM_IN_HIGH      (64 * 1024) /* response bytes read ahead of the parser */

struct upstream_conn;
struct upstream_h2_conn;
struct upstream_h2_stream;

struct upstream_endpoint {
	struct upstream_pool *pool;
	const struct config_endpoint *cfg;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool resolved;
	char text[INET6_ADDRSTRLEN + 8];
	unsigned active;   /* exchanges in flight (LeastRequest) */
	unsigned failures; /* consecutive connect failures */
	uint64_t ejected_until_ms;
	uint64_t eject_ms;
	const struct health_endpoint *health; /* active health check verdict; NULL: not checked */
	struct upstream_conn *idle;           /* HTTP/1.1: idle connections, most recently used first */
	struct upstream_h2_conn *h2_list;     /* HTTP/2: every open connection to this endpoint */
	struct evdns_getaddrinfo_request *dns_req;
	_Atomic uint64_t *stats; /* its STATS_EP_* slots in the worker's shard, or NULL (stats.h) */
};

/* Adds n to one of ep's /metrics slots (single writer: the worker that owns ep). */
static inline void upstream_endpoint_count(struct upstream_endpoint *ep, int slot, uint64_t n)
{
	if (ep->stats != NULL)
		stats_add(&ep->stats[slot], n);
}

struct upstream_pool {
	struct upstream_worker *uw;
	const struct config_backend *be;
	struct upstream_endpoint *eps;
	size_t n_eps;
	unsigned rr;
	unsigned n_conns;   /* open connections (all states, both protocols) */
	unsigned n_pending; /* exchanges waiting for a connection slot (bound: be->max_pending) */
	struct upstream_exchange *pending_head, *pending_tail;
	struct event resolve_ev;
	bool has_fqdn;
	SSL_CTX *ssl_ctx; /* backends with a tls block (H2, or HTTP over TLS); NULL when cleartext */
};

struct upstream_worker {
	struct event_base *base;
	const struct config *cfg;
	struct upstream_pool *pools;
	size_t n_pools;
	struct evdns_base *dns;
	uint64_t rng;
	struct bevio_timeouts timeouts;    /* common-timeout queues (request timeouts) */
	struct bevio_defer_queue defer;    /* finished exchanges on their way to free_ex, and h2
	                                    * connections' end-of-batch writes (flush_d: h2conn_free
	                                    * cancels it, so at teardown only exchanges are left) */
	struct upstream_exchange *free_ex; /* finished exchanges kept for reuse (their timer stays armed) */
	size_t n_free_ex;
};

/* One exchange, whatever the upstream protocol. The HTTP/1.1 fields are used by upstream.c only;
 * an HTTP/2 exchange keeps its stream state in `h2` (owned by its connection). */
struct upstream_exchange {
	/* Kept when the object is reused from upstream_worker.free_ex; everything after it is zeroed. */
	struct bevio_timer timer; /* request timeout (and grpc-timeout) */
	struct upstream_worker *uw;
	struct upstream_pool *pool;
	struct upstream_conn *conn; /* HTTP/1.1 */
	struct upstream_endpoint *ep;
	const struct request *req;
	const struct upstream_sink *sink;
	void *ctx;
	char *head; /* HTTP/1.1: serialized request head (in the request's arena), kept for a re-send */
	size_t head_len;
	struct response resp;
	size_t head_bytes;
	struct upstream_exchange *next_pending;
	struct bevio_deferred done; /* deferred free (or return to free_ex) */
	uint64_t tried;             /* bitmap of endpoints tried (first 64) */
	int tries;
	bool has_body, chunked_body, body_started, body_done;
	bool is_head;
	bool te_chunked;       /* HTTP/1.1 response: our reading of Transfer-Encoding ends in "chunked" */
	bool response_started; /* a response byte arrived */
	bool head_delivered;   /* final head passed to the sink */
	bool response_paused;
	bool finished; /* on_end/on_error called, or cancelled: no more callbacks */
	bool pending;  /* in the pool's pending queue */
	bool notify_drain;
	bool is_h2;                    /* backend protocol H2C or H2 */
	struct upstream_h2_stream *h2; /* HTTP/2: the stream serving it, NULL while none */
	/* HTTP/2: the codec's extra header lines, parsed at start into arena strings. */
	struct request_header *extra;
	size_t n_extra;
	int64_t content_length; /* -1: unknown */
	bool ready_sent;        /* on_ready was called (a retried stream does not call it again) */
	bool failure_counted;   /* the endpoint's failure is already in /metrics (bad response) */
	bool is_ep_active;      /* counted in ep->active (in flight there) */
};

/* ---- shared by both protocols (upstream.c) ---- */

/* Chooses an endpoint that is resolved, not ejected and not yet tried by ex; NULL when none. */
struct upstream_endpoint *upstream_pool_pick(struct upstream_pool *pool, struct upstream_exchange *ex);
/* A connect to ep failed / succeeded: counts towards (or resets) ejection. */
void upstream_endpoint_on_failure(struct upstream_endpoint *ep);
void upstream_endpoint_on_success(struct upstream_endpoint *ep);
/* ex now runs on ep (NULL: none): moves the in-flight count (LeastRequest, /metrics) from the
 * endpoint it ran on before. */
void upstream_exchange_set_endpoint(struct upstream_exchange *ex, struct upstream_endpoint *ep);
/* Records that ex tries ep (the tried bitmap, the try count and LeastRequest accounting). */
void upstream_exchange_use_endpoint(struct upstream_exchange *ex, struct upstream_endpoint *ep);
/* Ends ex without a callback; its memory is freed from a deferred event. */
void upstream_exchange_finish(struct upstream_exchange *ex);
/* Ends ex and reports err to the sink (once). */
void upstream_exchange_fail(struct upstream_exchange *ex, enum upstream_error err);
/* Appends ex to / removes it from the pool's pending queue. Append returns JG_ERR_LIMIT when the
 * queue holds max_pending exchanges already. */
int upstream_pool_add_pending(struct upstream_pool *pool, struct upstream_exchange *ex);
void upstream_pool_remove_pending(struct upstream_pool *pool, struct upstream_exchange *ex);

/* ---- TLS towards backends (upstream_h2.c) ---- */

/* A bufferevent for a new connection to ep: TLS (SNI, hostname verification) when the pool has an
 * SSL_CTX, plain otherwise; not yet connected (fd -1: bufferevent_socket_connect creates the socket).
 * NULL on failure. */
struct bufferevent *upstream_bev_new(struct upstream_pool *pool, struct upstream_endpoint *ep);
/* After bufferevent_socket_connect: TCP_NODELAY and close-on-exec on the new socket. */
void upstream_bev_tune(struct bufferevent *bev);

/* ---- HTTP/2 exchanges (upstream_h2.c) ---- */

/* Parses extra_head lines into ex->extra (arena), then queues or starts the stream. Returns 0
 * (under way, or failed with on_error already called) or a negative JG_ERR_* (nothing reported). */
int upstream_h2_start(struct upstream_exchange *ex, const char *extra_head, size_t extra_len);
int upstream_h2_send_body(struct upstream_exchange *ex, const char *data, size_t len);
int upstream_h2_end_body(struct upstream_exchange *ex);
void upstream_h2_pause_response(struct upstream_exchange *ex, bool pause);
void upstream_h2_cancel(struct upstream_exchange *ex);
/* The exchange's deadline passed: reset its stream and report UPSTREAM_ERR_TIMEOUT. */
void upstream_h2_on_timeout(struct upstream_exchange *ex);
/* A pending exchange got a connection slot: start it. */
void upstream_h2_kick_pending(struct upstream_pool *pool);
/* Closes HTTP/2 connections of the pool: those without streams, or all (worker teardown). */
void upstream_h2_pool_close(struct upstream_pool *pool, bool all);

#endif
