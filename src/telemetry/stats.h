/* stats.h: counters the workers keep for /metrics, and the registry of collectors a scrape runs
 * (issue 11 section 1, "Cost").
 *
 * Single-writer rule: every counter below is written by exactly one thread, the worker that owns the
 * block, with a relaxed load and a relaxed store (stats_add): no lock, no atomic read-modify-write,
 * no lock prefix. The admin scrape on the control thread reads them with relaxed loads and sums the
 * workers; a counter it reads may be one request behind, never torn. Each worker's block starts on
 * its own cache line and is padded to a whole number of lines, so one worker's increments never
 * invalidate a line another worker writes.
 *
 * Two kinds of blocks:
 * - struct stats_worker: what lives as long as the worker (connections by listener, HTTP/2 streams
 *   and GOAWAYs, token cache). Listeners cannot change on reload, so its size is fixed at start.
 * - struct stats_shard: what a configuration generation names by index (requests by listener, route
 *   and status class, duration by route, JWT outcomes by provider, upstream endpoints). A stats_gen
 *   holds one shard per worker and belongs to the configuration snapshot: a reload starts the series
 *   of the new generation at zero (Prometheus rate() treats that as a counter reset), and
 *   jwtgate_config_generation says which generation a scrape shows. Counting by index keeps the
 *   request path free of name lookups and the label sets bounded by the configuration.
 *
 * Gauges that go up and down (open connections, streams, active requests) are kept per worker as
 * two's complement in a uint64_t; the scrape sums them as signed. */
#ifndef JWTGATE_STATS_H
#define JWTGATE_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "config/config.h"

#define STATS_CACHELINE 64

/* The single-writer increment: a plain load and store, both relaxed (no RMW, see above). */
static inline void stats_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void stats_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t stats_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

/* The codec serving a downstream connection. */
enum stats_proto { STATS_PROTO_HTTP1 = 0, STATS_PROTO_HTTP2, STATS_PROTOS };

/* Why an HTTP/2 connection was sent a GOAWAY (jwtgate_http2_goaways_sent_total{reason}). */
enum stats_goaway {
	STATS_GOAWAY_DRAIN = 0,         /* shutdown (SIGTERM drain) */
	STATS_GOAWAY_NO_ERROR,          /* idle timeout, no preface in time */
	STATS_GOAWAY_PROTOCOL_ERROR,    /* the client broke RFC 9113 */
	STATS_GOAWAY_ENHANCE_YOUR_CALM, /* a flood budget was exceeded */
	STATS_GOAWAY_OTHER,
	STATS_GOAWAYS
};

/* The bounded set of JWT outcomes (jwtgate_jwt_outcomes_total{reason}); jwt_status values map onto it
 * with stats_jwt_reason(). */
enum stats_jwt_reason {
	STATS_JWT_OK = 0,
	STATS_JWT_MISSING,
	STATS_JWT_EXPIRED,
	STATS_JWT_NOT_YET_VALID,
	STATS_JWT_BAD_SIGNATURE,
	STATS_JWT_BAD_ISSUER,
	STATS_JWT_BAD_AUDIENCE,
	STATS_JWT_UNKNOWN_KEY,
	STATS_JWT_MALFORMED,
	STATS_JWT_NO_KEY_SET,
	STATS_JWT_REASONS
};

/* Why an upstream endpoint failed a request (jwtgate_upstream_failures_total{kind}). */
enum stats_upstream_failure {
	STATS_UP_CONNECT = 0,  /* TCP or TLS connect failed or timed out (each attempt) */
	STATS_UP_RESET,        /* closed or reset before the response was complete */
	STATS_UP_TIMEOUT,      /* the request timeout passed */
	STATS_UP_BAD_RESPONSE, /* a response that is not valid HTTP */
	STATS_UP_FAILURES
};

/* Request duration histogram: upper bounds in microseconds (0.5 ms .. 10 s), then +Inf. */
#define STATS_DURATION_BUCKETS 14
extern const uint64_t stats_duration_bounds_us[STATS_DURATION_BUCKETS];

/* ---- per worker, for the worker's lifetime ---- */

struct stats_worker {
	size_t n_listeners;
	_Atomic uint64_t h2_streams_open;
	_Atomic uint64_t h2_goaways[STATS_GOAWAYS];
	_Atomic uint64_t cache_hits, cache_misses, cache_evictions;
	/* [listener] accepted sockets, then [listener][proto] open connections */
	_Atomic uint64_t conns[];
};

/* Start-up tier: a cache-line aligned, padded block. Free with free(). */
struct stats_worker *stats_worker_new(size_t n_listeners);

static inline _Atomic uint64_t *stats_worker_accepted(struct stats_worker *s, int listener)
{
	return &s->conns[listener];
}

static inline _Atomic uint64_t *stats_worker_open(struct stats_worker *s, int listener, enum stats_proto p)
{
	return &s->conns[s->n_listeners + (size_t)listener * STATS_PROTOS + p];
}

/* ---- per configuration generation ---- */

/* Where each family sits in a shard's counter array; one per generation, shared by its shards. */
struct stats_layout {
	size_t n_listeners;
	size_t n_route_slots; /* routes + 1: slot 0 is "no route" (404, 400 before routing) */
	size_t n_providers;
	size_t n_endpoints;
	size_t *backend_first_ep; /* [backend]: the slot of its first endpoint */
	size_t off_requests;      /* [listener][route slot][class 1xx..5xx] */
	size_t off_duration;      /* [route slot][bucket.. +Inf, sum_us, count] */
	size_t off_jwt;           /* [provider][reason] */
	size_t n_policies;
	size_t *authz_first;  /* [policy]: slot of its defaultAction, then one per rule (has_authz only) */
	size_t off_endpoints; /* [endpoint][STATS_EP_*] */
	size_t n_counters;
};

#define STATS_CLASSES        5
#define STATS_DURATION_SLOTS (STATS_DURATION_BUCKETS + 3) /* buckets, +Inf, sum (us), count */

/* Per endpoint slots. */
enum stats_ep_slot {
	STATS_EP_REQUESTS = 0,
	STATS_EP_FAILURES, /* .. + STATS_UP_FAILURES - 1 */
	STATS_EP_ACTIVE = STATS_EP_FAILURES + STATS_UP_FAILURES,
	STATS_EP_IDLE,
	STATS_EP_EJECTIONS,
	STATS_EP_EJECTED_UNTIL_MS, /* jg_now_ms() deadline of the worker's passive ejection, 0 = none */
	STATS_EP_SLOTS
};

struct stats_shard {
	const struct stats_layout *layout;
	_Atomic uint64_t c[]; /* layout->n_counters */
};

struct stats_gen {
	struct stats_layout layout;
	int n_workers;
	struct stats_shard **shards; /* [worker] */
};

/* Start-up / reload tier (aborts on allocation failure). */
struct stats_gen *stats_gen_new(const struct config *cfg, int n_workers);
void stats_gen_free(struct stats_gen *g);

/* Worker w's shard, or NULL (no stats: tests, or a worker id past the generation's). */
struct stats_shard *stats_gen_shard(const struct stats_gen *g, int w);

/* Counts a finished request: listener index (-1: none), route index (-1: none), final status, and
 * its duration. Called once per request by the codec that answered it. */
void stats_count_request(struct stats_shard *s, int listener, int route, int status, uint64_t dur_us);

/* Counts an authorization decision of policy index `policy`: rule index, or -1 for defaultAction. */
static inline void stats_count_authz(struct stats_shard *s, int policy, int rule)
{
	if (s != NULL && policy >= 0 && (size_t)policy < s->layout->n_policies)
		stats_add(&s->c[s->layout->authz_first[policy] + (size_t)(rule + 1)], 1);
}

static inline void stats_count_jwt(struct stats_shard *s, int provider, enum stats_jwt_reason r)
{
	if (s != NULL && provider >= 0 && (size_t)provider < s->layout->n_providers)
		stats_add(&s->c[s->layout->off_jwt + (size_t)provider * STATS_JWT_REASONS + r], 1);
}

/* The slot array of endpoint i of backend b, or NULL. */
static inline _Atomic uint64_t *stats_endpoint(struct stats_shard *s, int backend, size_t i)
{
	if (s == NULL || backend < 0)
		return NULL;
	return &s->c[s->layout->off_endpoints + (s->layout->backend_first_ep[backend] + i) * STATS_EP_SLOTS];
}

/* Endpoint i of backend b summed over the workers (slot: a STATS_EP_* counter), and the number of
 * workers that eject it at now_ms. */
uint64_t stats_gen_endpoint_sum(const struct stats_gen *g, int backend, size_t i, int slot);
unsigned stats_gen_endpoint_ejected(const struct stats_gen *g, int backend, size_t i, uint64_t now_ms);

/* ---- exposition (Prometheus text format 0.0.4) ---- */

/* A label set being built: `name="value"` pairs, values escaped (\\, \", \n) and cut at
 * STATS_LABEL_VALUE_MAX bytes; the whole set is bounded by its buffer. */
#define STATS_LABEL_VALUE_MAX 256
struct stats_labels {
	char buf[1024];
	size_t len;
};

void stats_labels_init(struct stats_labels *l);
void stats_labels_add(struct stats_labels *l, const char *name, const char *value);

/* "# HELP name help" and "# TYPE name type". */
void stats_family(struct evbuffer *out, const char *name, const char *type, const char *help);
/* Labels {backend, endpoint} of a backend endpoint ("host:port", "[v6]:port"), as every per-endpoint
 * family has them. */
void stats_endpoint_labels(struct stats_labels *l, const struct config_backend *be,
                           const struct config_endpoint *ep);
/* name{labels} value (labels may be NULL or empty). */
void stats_sample_u64(struct evbuffer *out, const char *name, const struct stats_labels *l, uint64_t v);
void stats_sample_i64(struct evbuffer *out, const char *name, const struct stats_labels *l, int64_t v);
void stats_sample_f(struct evbuffer *out, const char *name, const struct stats_labels *l, double v);

/* The name of a reason / failure kind / GOAWAY reason / protocol as a label value. */
const char *stats_jwt_reason_str(enum stats_jwt_reason r);
const char *stats_upstream_failure_str(enum stats_upstream_failure f);
const char *stats_goaway_str(enum stats_goaway g);
const char *stats_proto_str(enum stats_proto p);
/* The reason a jwt_status (jwt-t.h) is counted under. */
enum stats_jwt_reason stats_jwt_reason(int jwt_status);

/* ---- collectors ---- */

/* A collector appends whole families to out. It runs on the control thread during a scrape. Modules
 * register one each (the lead wires health checks, log writer and reload state this way). */
typedef void (*stats_collect_fn)(struct evbuffer *out, void *arg);

#define STATS_MAX_COLLECTORS 16

struct stats_registry {
	struct {
		stats_collect_fn fn;
		void *arg;
	} c[STATS_MAX_COLLECTORS];
	size_t n;
};

/* Adds a collector; returns 0 or JG_ERR_LIMIT when the registry is full. Collectors run in the
 * order they were added. */
int stats_registry_add(struct stats_registry *r, stats_collect_fn fn, void *arg);
void stats_registry_collect(const struct stats_registry *r, struct evbuffer *out);

/* Appends the families of a generation's shards and of the workers' lifetime blocks (summed):
 * connections, requests, durations, JWT outcomes, upstream endpoints, HTTP/2, token cache. cfg is
 * the generation's configuration (label names); now_ms is jg_now_ms() (ejection state). */
void stats_write_workers(struct evbuffer *out, const struct config *cfg, const struct stats_gen *g,
                         struct stats_worker *const *workers, int n_workers, uint64_t now_ms);

#endif
