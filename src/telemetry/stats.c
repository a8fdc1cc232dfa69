/* stats.c: per-worker counter blocks, their sums, and the Prometheus text exposition (format 0.0.4,
 * https://prometheus.io/docs/instrumenting/exposition_formats/). */
#include "telemetry/stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "jwt/jwt-t.h"

const uint64_t stats_duration_bounds_us[STATS_DURATION_BUCKETS] = {
        500,    1000,   2500,   5000,    10000,   25000,   50000,
        100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

/* A zeroed block of `size` bytes on its own cache lines. */
static void *stats_alloc_lines(size_t size)
{
	size_t rounded = (size + STATS_CACHELINE - 1) / STATS_CACHELINE * STATS_CACHELINE;
	void *p = aligned_alloc(STATS_CACHELINE, rounded);

	if (p == NULL) {
		fprintf(stderr, "jwtgate: out of memory\n");
		abort();
	}
	memset(p, 0, rounded);
	return p;
}

struct stats_worker *stats_worker_new(size_t n_listeners)
{
	size_t n = n_listeners + n_listeners * STATS_PROTOS;
	struct stats_worker *s = stats_alloc_lines(sizeof(*s) + n * sizeof(s->conns[0]));

	s->n_listeners = n_listeners;
	return s;
}

struct stats_gen *stats_gen_new(const struct config *cfg, int n_workers)
{
	struct stats_gen *g = jg_xcalloc(1, sizeof(*g));
	struct stats_layout *l = &g->layout;
	size_t i, n;
	int w;

	l->n_listeners = cfg->n_listeners;
	l->n_route_slots = cfg->n_routes + 1;
	l->n_providers = cfg->n_providers;
	l->backend_first_ep = jg_xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(size_t));
	for (i = 0; i < cfg->n_backends; i++) {
		l->backend_first_ep[i] = l->n_endpoints;
		l->n_endpoints += cfg->backends[i].n_endpoints;
	}
	n = 0;
	l->off_requests = n;
	n += l->n_listeners * l->n_route_slots * STATS_CLASSES;
	l->off_duration = n;
	n += l->n_route_slots * STATS_DURATION_SLOTS;
	l->off_jwt = n;
	n += l->n_providers * STATS_JWT_REASONS;
	l->n_policies = cfg->n_policies;
	l->authz_first = jg_xcalloc(cfg->n_policies ? cfg->n_policies : 1, sizeof(size_t));
	for (i = 0; i < cfg->n_policies; i++) {
		l->authz_first[i] = n;
		if (cfg->policies[i].has_authz)
			n += cfg->policies[i].authz.n_rules + 1;
	}
	l->off_endpoints = n;
	n += l->n_endpoints * STATS_EP_SLOTS;
	l->n_counters = n;
	g->n_workers = n_workers;
	g->shards = jg_xcalloc((size_t)(n_workers > 0 ? n_workers : 1), sizeof(*g->shards));
	for (w = 0; w < n_workers; w++) {
		g->shards[w] = stats_alloc_lines(sizeof(struct stats_shard) + n * sizeof(_Atomic uint64_t));
		g->shards[w]->layout = l;
	}
	return g;
}

void stats_gen_free(struct stats_gen *g)
{
	int w;

	if (g == NULL)
		return;
	for (w = 0; w < g->n_workers; w++)
		free(g->shards[w]);
	free(g->shards);
	free(g->layout.backend_first_ep);
	free(g->layout.authz_first);
	free(g);
}

struct stats_shard *stats_gen_shard(const struct stats_gen *g, int w)
{
	if (g == NULL || w < 0 || w >= g->n_workers)
		return NULL;
	return g->shards[w];
}

void stats_count_request(struct stats_shard *s, int listener, int route, int status, uint64_t dur_us)
{
	const struct stats_layout *l;
	size_t slot, cls, b;
	_Atomic uint64_t *d;

	if (s == NULL)
		return;
	l = s->layout;
	slot = route >= 0 && (size_t)route + 1 < l->n_route_slots ? (size_t)route + 1 : 0;
	if (listener >= 0 && (size_t)listener < l->n_listeners && status >= 100 && status <= 599) {
		cls = (size_t)status / 100 - 1;
		stats_add(&s->c[l->off_requests +
		                ((size_t)listener * l->n_route_slots + slot) * STATS_CLASSES + cls],
		          1);
	}
	d = &s->c[l->off_duration + slot * STATS_DURATION_SLOTS];
	for (b = 0; b < STATS_DURATION_BUCKETS && dur_us > stats_duration_bounds_us[b]; b++)
		;
	stats_add(&d[b], 1); /* b == STATS_DURATION_BUCKETS: +Inf only */
	stats_add(&d[STATS_DURATION_BUCKETS + 1], dur_us);
	stats_add(&d[STATS_DURATION_BUCKETS + 2], 1);
}

/* ---- names ---- */

const char *stats_jwt_reason_str(enum stats_jwt_reason r)
{
	static const char *const names[STATS_JWT_REASONS] = {
	        "ok",         "missing",      "expired",     "not_yet_valid", "bad_signature",
	        "bad_issuer", "bad_audience", "unknown_key", "malformed",     "no_key_set",
	};

	return (unsigned)r < STATS_JWT_REASONS ? names[r] : "malformed";
}

const char *stats_upstream_failure_str(enum stats_upstream_failure f)
{
	static const char *const names[STATS_UP_FAILURES] = {"connect", "reset", "timeout", "bad_response"};

	return (unsigned)f < STATS_UP_FAILURES ? names[f] : "reset";
}

const char *stats_goaway_str(enum stats_goaway g)
{
	static const char *const names[STATS_GOAWAYS] = {"drain", "no_error", "protocol_error",
	                                                 "enhance_your_calm", "other"};

	return (unsigned)g < STATS_GOAWAYS ? names[g] : "other";
}

const char *stats_proto_str(enum stats_proto p)
{
	return p == STATS_PROTO_HTTP2 ? "http2" : "http1";
}

enum stats_jwt_reason stats_jwt_reason(int jwt_status)
{
	switch ((enum jwt_status)jwt_status) {
	case JWT_STATUS_OK:
		return STATS_JWT_OK;
	case JWT_STATUS_MISSED:
		return STATS_JWT_MISSING;
	case JWT_STATUS_EXPIRED:
		return STATS_JWT_EXPIRED;
	case JWT_STATUS_NOT_YET_VALID:
		return STATS_JWT_NOT_YET_VALID;
	case JWT_STATUS_VERIFICATION_FAIL:
	case JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH:
		return STATS_JWT_BAD_SIGNATURE;
	case JWT_STATUS_UNKNOWN_ISSUER:
		return STATS_JWT_BAD_ISSUER;
	case JWT_STATUS_AUDIENCE_NOT_ALLOWED:
		return STATS_JWT_BAD_AUDIENCE;
	case JWT_STATUS_JWKS_KID_ALG_MISMATCH:
		return STATS_JWT_UNKNOWN_KEY;
	case JWT_STATUS_JWKS_FETCH_FAIL:
	case JWT_STATUS_JWKS_NO_KEYS:
	case JWT_STATUS_JWKS_NO_VALID_KEYS:
		return STATS_JWT_NO_KEY_SET;
	default:
		return STATS_JWT_MALFORMED;
	}
}

/* ---- exposition ---- */

void stats_labels_init(struct stats_labels *l)
{
	l->len = 0;
	l->buf[0] = '\0';
}

void stats_labels_add(struct stats_labels *l, const char *name, const char *value)
{
	size_t cap = sizeof(l->buf), n = l->len, i;
	size_t need = strlen(name) + 4;

	/* Room for the name, '="', the worst-case escaped value, '"' and the NUL; a set that would not
	 * fit loses the label rather than print half of it. */
	if (n + need + 2 * STATS_LABEL_VALUE_MAX + 2 > cap)
		return;
	n += (size_t)snprintf(l->buf + n, cap - n, "%s%s=\"", n ? "," : "", name);
	for (i = 0; value != NULL && value[i] != '\0' && i < STATS_LABEL_VALUE_MAX; i++) {
		char ch = value[i];

		if (ch == '\\' || ch == '"') {
			l->buf[n++] = '\\';
			l->buf[n++] = ch;
		} else if (ch == '\n') {
			l->buf[n++] = '\\';
			l->buf[n++] = 'n';
		} else {
			l->buf[n++] = ch;
		}
	}
	l->buf[n++] = '"';
	l->buf[n] = '\0';
	l->len = n;
}

void stats_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void stats_sample_name(struct evbuffer *out, const char *name, const struct stats_labels *l)
{
	if (l != NULL && l->len > 0)
		evbuffer_add_printf(out, "%s{%s} ", name, l->buf);
	else
		evbuffer_add_printf(out, "%s ", name);
}

void stats_sample_u64(struct evbuffer *out, const char *name, const struct stats_labels *l, uint64_t v)
{
	stats_sample_name(out, name, l);
	evbuffer_add_printf(out, "%" PRIu64 "\n", v);
}

void stats_sample_i64(struct evbuffer *out, const char *name, const struct stats_labels *l, int64_t v)
{
	stats_sample_name(out, name, l);
	evbuffer_add_printf(out, "%" PRId64 "\n", v);
}

void stats_sample_f(struct evbuffer *out, const char *name, const struct stats_labels *l, double v)
{
	stats_sample_name(out, name, l);
	evbuffer_add_printf(out, "%.17g\n", v);
}

/* ---- registry ---- */

int stats_registry_add(struct stats_registry *r, stats_collect_fn fn, void *arg)
{
	if (r->n >= STATS_MAX_COLLECTORS)
		return JG_ERR_LIMIT;
	r->c[r->n].fn = fn;
	r->c[r->n].arg = arg;
	r->n++;
	return 0;
}

void stats_registry_collect(const struct stats_registry *r, struct evbuffer *out)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		r->c[i].fn(out, r->c[i].arg);
}

/* ---- sums over the workers ---- */

/* Sum of counter index i over every shard of g. */
static uint64_t stats_gen_sum(const struct stats_gen *g, size_t i)
{
	uint64_t v = 0;
	int w;

	for (w = 0; w < g->n_workers; w++)
		v += stats_get(&g->shards[w]->c[i]);
	return v;
}

uint64_t stats_gen_endpoint_sum(const struct stats_gen *g, int backend, size_t i, int slot)
{
	if (g == NULL || backend < 0)
		return 0;
	return stats_gen_sum(g, g->layout.off_endpoints +
	                                (g->layout.backend_first_ep[backend] + i) * STATS_EP_SLOTS +
	                                (size_t)slot);
}

unsigned stats_gen_endpoint_ejected(const struct stats_gen *g, int backend, size_t i, uint64_t now_ms)
{
	size_t k;
	unsigned n = 0;
	int w;

	if (g == NULL || backend < 0)
		return 0;
	k = g->layout.off_endpoints + (g->layout.backend_first_ep[backend] + i) * STATS_EP_SLOTS +
	    STATS_EP_EJECTED_UNTIL_MS;
	for (w = 0; w < g->n_workers; w++)
		n += stats_get(&g->shards[w]->c[k]) > now_ms;
	return n;
}

static const char *stats_route_name(const struct config *cfg, size_t slot)
{
	return slot == 0 ? "" : cfg->routes[slot - 1].name;
}

static void stats_write_connections(struct evbuffer *out, const struct config *cfg,
                                    struct stats_worker *const *workers, int n_workers)
{
	struct stats_labels l;
	size_t i;
	int w, p;

	stats_family(out, "jwtgate_connections_accepted_total", "counter",
	             "Downstream TCP connections accepted, by listener.");
	for (i = 0; i < cfg->n_listeners; i++) {
		uint64_t v = 0;

		for (w = 0; w < n_workers; w++)
			v += stats_get(stats_worker_accepted(workers[w], (int)i));
		stats_labels_init(&l);
		stats_labels_add(&l, "listener", cfg->listeners[i].name);
		stats_sample_u64(out, "jwtgate_connections_accepted_total", &l, v);
	}
	stats_family(out, "jwtgate_connections_open", "gauge",
	             "Downstream connections open, by listener and the protocol serving them.");
	for (i = 0; i < cfg->n_listeners; i++) {
		for (p = 0; p < STATS_PROTOS; p++) {
			uint64_t v = 0;

			for (w = 0; w < n_workers; w++)
				v += stats_get(stats_worker_open(workers[w], (int)i, (enum stats_proto)p));
			stats_labels_init(&l);
			stats_labels_add(&l, "listener", cfg->listeners[i].name);
			stats_labels_add(&l, "protocol", stats_proto_str((enum stats_proto)p));
			stats_sample_i64(out, "jwtgate_connections_open", &l, (int64_t)v);
		}
	}
}

static void stats_write_http2_cache(struct evbuffer *out, struct stats_worker *const *workers, int n_workers)
{
	struct stats_labels l;
	uint64_t v[3] = {0, 0, 0}, streams = 0;
	int w, r;

	for (w = 0; w < n_workers; w++)
		streams += stats_get(&workers[w]->h2_streams_open);
	stats_family(out, "jwtgate_http2_streams_open", "gauge", "Downstream HTTP/2 streams open.");
	stats_sample_i64(out, "jwtgate_http2_streams_open", NULL, (int64_t)streams);
	stats_family(out, "jwtgate_http2_goaways_sent_total", "counter",
	             "GOAWAY frames sent to downstream HTTP/2 clients, by reason.");
	for (r = 0; r < STATS_GOAWAYS; r++) {
		uint64_t n = 0;

		for (w = 0; w < n_workers; w++)
			n += stats_get(&workers[w]->h2_goaways[r]);
		stats_labels_init(&l);
		stats_labels_add(&l, "reason", stats_goaway_str((enum stats_goaway)r));
		stats_sample_u64(out, "jwtgate_http2_goaways_sent_total", &l, n);
	}
	for (w = 0; w < n_workers; w++) {
		v[0] += stats_get(&workers[w]->cache_hits);
		v[1] += stats_get(&workers[w]->cache_misses);
		v[2] += stats_get(&workers[w]->cache_evictions);
	}
	stats_family(out, "jwtgate_token_cache_hits_total", "counter",
	             "Verified-token cache lookups that found the token.");
	stats_sample_u64(out, "jwtgate_token_cache_hits_total", NULL, v[0]);
	stats_family(out, "jwtgate_token_cache_misses_total", "counter",
	             "Verified-token cache lookups that did not (the token was verified).");
	stats_sample_u64(out, "jwtgate_token_cache_misses_total", NULL, v[1]);
	stats_family(out, "jwtgate_token_cache_evictions_total", "counter",
	             "Verified tokens evicted to make room (least recently used).");
	stats_sample_u64(out, "jwtgate_token_cache_evictions_total", NULL, v[2]);
}

static void stats_write_requests(struct evbuffer *out, const struct config *cfg, const struct stats_gen *g)
{
	static const char *const classes[STATS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	const struct stats_layout *L = &g->layout;
	struct stats_labels l;
	size_t i, s, c, b;

	stats_family(out, "jwtgate_requests_total", "counter",
	             "Requests answered, by listener, route (empty: none matched) and status class.");
	for (i = 0; i < L->n_listeners; i++) {
		for (s = 0; s < L->n_route_slots; s++) {
			for (c = 0; c < STATS_CLASSES; c++) {
				uint64_t v = stats_gen_sum(
				        g, L->off_requests + (i * L->n_route_slots + s) * STATS_CLASSES + c);

				/* Series that never moved are left out: listeners x routes x 5 would be
				 * mostly zeros. A series, once present, stays for the generation. */
				if (v == 0)
					continue;
				stats_labels_init(&l);
				stats_labels_add(&l, "listener", cfg->listeners[i].name);
				stats_labels_add(&l, "route", stats_route_name(cfg, s));
				stats_labels_add(&l, "code", classes[c]);
				stats_sample_u64(out, "jwtgate_requests_total", &l, v);
			}
		}
	}
	stats_family(out, "jwtgate_request_duration_seconds", "histogram",
	             "Time from the first byte of a request to the end of its response, by route.");
	for (s = 0; s < L->n_route_slots; s++) {
		size_t base = L->off_duration + s * STATS_DURATION_SLOTS;
		uint64_t cum = 0, count = stats_gen_sum(g, base + STATS_DURATION_BUCKETS + 2);
		char le[32];

		if (count == 0 && s == 0)
			continue;
		for (b = 0; b <= STATS_DURATION_BUCKETS; b++) {
			cum += stats_gen_sum(g, base + b);
			stats_labels_init(&l);
			stats_labels_add(&l, "route", stats_route_name(cfg, s));
			if (b < STATS_DURATION_BUCKETS)
				snprintf(le, sizeof(le), "%g", (double)stats_duration_bounds_us[b] / 1e6);
			else
				snprintf(le, sizeof(le), "+Inf");
			stats_labels_add(&l, "le", le);
			stats_sample_u64(out, "jwtgate_request_duration_seconds_bucket", &l, cum);
		}
		stats_labels_init(&l);
		stats_labels_add(&l, "route", stats_route_name(cfg, s));
		stats_sample_f(out, "jwtgate_request_duration_seconds_sum", &l,
		               (double)stats_gen_sum(g, base + STATS_DURATION_BUCKETS + 1) / 1e6);
		stats_sample_u64(out, "jwtgate_request_duration_seconds_count", &l, count);
	}
}

static void stats_write_jwt(struct evbuffer *out, const struct config *cfg, const struct stats_gen *g)
{
	const struct stats_layout *L = &g->layout;
	struct stats_labels l;
	size_t i, j;
	int r;

	stats_family(out, "jwtgate_jwt_outcomes_total", "counter",
	             "JWT provider results, by policy, provider and reason.");
	for (i = 0; i < cfg->n_policies; i++) {
		for (j = 0; j < cfg->policies[i].n_providers; j++) {
			const struct config_provider *p = &cfg->policies[i].providers[j];

			if (p->index < 0 || (size_t)p->index >= L->n_providers)
				continue;
			for (r = 0; r < STATS_JWT_REASONS; r++) {
				stats_labels_init(&l);
				stats_labels_add(&l, "policy", cfg->policies[i].name);
				stats_labels_add(&l, "provider", p->name);
				stats_labels_add(&l, "reason",
				                 stats_jwt_reason_str((enum stats_jwt_reason)r));
				stats_sample_u64(
				        out, "jwtgate_jwt_outcomes_total", &l,
				        stats_gen_sum(g, L->off_jwt + (size_t)p->index * STATS_JWT_REASONS +
				                                 (size_t)r));
			}
		}
	}
}

/* jwtgate_authz_decisions_total{policy, rule, action}: one series per rule of every policy with an
 * `authorization` block, and one with rule="" for its defaultAction (a rule name is never empty), so
 * the label set is bounded by the configuration. */
static void stats_write_authz(struct evbuffer *out, const struct config *cfg, const struct stats_gen *g)
{
	const struct stats_layout *L = &g->layout;
	struct stats_labels l;
	size_t i, j;

	stats_family(out, "jwtgate_authz_decisions_total", "counter",
	             "Authorization decisions, by policy and the rule that decided (\"\" = defaultAction).");
	for (i = 0; i < cfg->n_policies && i < L->n_policies; i++) {
		const struct config_policy *pol = &cfg->policies[i];

		if (!pol->has_authz)
			continue;
		for (j = 0; j <= pol->authz.n_rules; j++) {
			bool allow = j == 0 ? pol->authz.default_allow : pol->authz.rules[j - 1].allow;

			stats_labels_init(&l);
			stats_labels_add(&l, "policy", pol->name);
			stats_labels_add(&l, "rule", j == 0 ? "" : pol->authz.rules[j - 1].name);
			stats_labels_add(&l, "action", allow ? "allow" : "deny");
			stats_sample_u64(out, "jwtgate_authz_decisions_total", &l,
			                 stats_gen_sum(g, L->authz_first[i] + j));
		}
	}
}

void stats_endpoint_labels(struct stats_labels *l, const struct config_backend *be,
                           const struct config_endpoint *ep)
{
	char text[300];

	snprintf(text, sizeof(text), strchr(ep->host, ':') != NULL ? "[%s]:%u" : "%s:%u", ep->host,
	         (unsigned)ep->port);
	stats_labels_init(l);
	stats_labels_add(l, "backend", be->name);
	stats_labels_add(l, "endpoint", text);
}

static void stats_write_endpoints(struct evbuffer *out, const struct config *cfg, const struct stats_gen *g,
                                  uint64_t now_ms)
{
	static const struct {
		const char *name, *type, *help;
		int slot;
	} fam[] = {
	        {"jwtgate_upstream_requests_total", "counter",
	         "Requests sent to a backend endpoint (each try).", STATS_EP_REQUESTS},
	        {"jwtgate_upstream_failures_total", "counter",
	         "Failed tries of a backend endpoint, by kind (connect, reset, timeout, bad_response).",
	         STATS_EP_FAILURES},
	        {"jwtgate_upstream_active_requests", "gauge", "Requests in flight to a backend endpoint.",
	         STATS_EP_ACTIVE},
	        {"jwtgate_upstream_idle_connections", "gauge",
	         "HTTP/1.1 keep-alive connections to a backend endpoint waiting in the pools.",
	         STATS_EP_IDLE},
	        {"jwtgate_upstream_ejections_total", "counter",
	         "Passive ejections of a backend endpoint (a worker saw consecutive connect failures).",
	         STATS_EP_EJECTIONS},
	        {"jwtgate_upstream_ejected_workers", "gauge",
	         "Workers that currently eject a backend endpoint (passive ejection is per worker).",
	         STATS_EP_EJECTED_UNTIL_MS},
	};
	const struct stats_layout *L = &g->layout;
	struct stats_labels l;
	size_t f, b, e;
	int k, w;

	for (f = 0; f < JG_ARRAY_SIZE(fam); f++) {
		stats_family(out, fam[f].name, fam[f].type, fam[f].help);
		for (b = 0; b < cfg->n_backends; b++) {
			const struct config_backend *be = &cfg->backends[b];

			for (e = 0; e < be->n_endpoints; e++) {
				size_t base =
				        L->off_endpoints + (L->backend_first_ep[b] + e) * STATS_EP_SLOTS;

				if (fam[f].slot == STATS_EP_FAILURES) {
					for (k = 0; k < STATS_UP_FAILURES; k++) {
						stats_endpoint_labels(&l, be, &be->endpoints[e]);
						stats_labels_add(&l, "kind",
						                 stats_upstream_failure_str(
						                         (enum stats_upstream_failure)k));
						stats_sample_u64(out, fam[f].name, &l,
						                 stats_gen_sum(g, base + STATS_EP_FAILURES +
						                                          (size_t)k));
					}
					continue;
				}
				stats_endpoint_labels(&l, be, &be->endpoints[e]);
				if (fam[f].slot == STATS_EP_EJECTED_UNTIL_MS) {
					uint64_t n = 0;

					for (w = 0; w < g->n_workers; w++)
						n += stats_get(&g->shards[w]->c[base +
						                                STATS_EP_EJECTED_UNTIL_MS]) >
						     now_ms;
					stats_sample_u64(out, fam[f].name, &l, n);
				} else if (fam[f].slot == STATS_EP_ACTIVE || fam[f].slot == STATS_EP_IDLE) {
					stats_sample_i64(
					        out, fam[f].name, &l,
					        (int64_t)stats_gen_sum(g, base + (size_t)fam[f].slot));
				} else {
					stats_sample_u64(out, fam[f].name, &l,
					                 stats_gen_sum(g, base + (size_t)fam[f].slot));
				}
			}
		}
	}
}

void stats_write_workers(struct evbuffer *out, const struct config *cfg, const struct stats_gen *g,
                         struct stats_worker *const *workers, int n_workers, uint64_t now_ms)
{
	if (workers != NULL && n_workers > 0) {
		stats_write_connections(out, cfg, workers, n_workers);
		stats_write_http2_cache(out, workers, n_workers);
	}
	if (g != NULL && g->n_workers > 0) {
		stats_write_requests(out, cfg, g);
		stats_write_jwt(out, cfg, g);
		stats_write_authz(out, cfg, g);
		stats_write_endpoints(out, cfg, g, now_ms);
	}
}
