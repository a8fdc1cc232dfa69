/* upstream.c: per-worker upstream pools and the upstream half of an HTTP/1.1 exchange.
 *
 * Pools: one per backend, one endpoint entry per configured endpoint (FQDN endpoints resolved with
 * evdns and re-resolved periodically). Idle keep-alive connections are kept per endpoint (LIFO, so
 * the warmest socket is reused), bounded by circuitBreaker.maxConnections per backend and worker;
 * requests beyond that wait in a bounded pending queue. A failed connect counts against the
 * endpoint (ejected for a while after UPSTREAM_EJECT_AFTER consecutive failures; failures while
 * ejected count for nothing) and is retried on another endpoint. When fewer than the backend's
 * panicThreshold percent of endpoints are outside ejection, every endpoint takes traffic again. A request
 * sent on a reused connection that the upstream had already closed is re-sent once on a fresh connection when
 * no body byte and no response byte has moved.
 */
#include "upstream/upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <llhttp.h>
#include <openssl/err.h>

#include "core/bevio.h"
#include "core/common.h"
#include "core/log.h"
#include "upstream-int.h"
#include "upstream/httpc.h"

enum upconn_state { UPCONN_CONNECTING = 0, UPCONN_BUSY, UPCONN_IDLE, UPCONN_CLOSED };

static const char *upconn_state_str(enum upconn_state s)
{
	static const char *const names[] = {"CONNECTING", "BUSY", "IDLE", "CLOSED"};

	return names[s];
}

struct upstream_conn {
	struct upstream_pool *pool;
	struct upstream_endpoint *ep;
	struct bufferevent *bev;
	enum upconn_state state;
	struct upstream_exchange *ex; /* while BUSY or CONNECTING */
	struct upstream_conn *next_idle, *prev_idle;
	llhttp_t parser;
	/* Response status / header field / value being parsed: the parser's accumulators live with the
	 * parser (one connection, many exchanges), so a request allocates none. Bounded by
	 * UPSTREAM_HEAD_MAX. */
	struct jg_piece field, value;
	unsigned served; /* exchanges completed on this connection */
	bool parsing;    /* inside llhttp_execute: frees are deferred to the read loop */
	bool doomed;     /* cancelled while parsing: free when the loop unwinds */
	bool plain;      /* plain socket: output written directly (bevio.h), EV_WRITE only when full */
	bool kick;       /* resumed: run the parser once even without new bytes */
	bool rd_ready;   /* plain socket connected: rd reads it (bevio.h), not the bufferevent */
	struct bevio_reader rd;
	struct bevio_timer rd_idle; /* rd's idle bound while pooled (upconn_release) */
	bool eof_seen;              /* the upstream closed while unparsed bytes remained */
	bool flush_pending;
	struct event flush_ev;
};

static llhttp_settings_t upstream_parser_settings;

int upstream_error_status(enum upstream_error err)
{
	switch (err) {
	case UPSTREAM_ERR_CONNECT:
	case UPSTREAM_ERR_RESET:
		return 502;
	case UPSTREAM_ERR_TIMEOUT:
		return 504;
	case UPSTREAM_ERR_NO_HEALTHY:
	case UPSTREAM_ERR_NOMEM:
		return 503;
	}
	return 502;
}

const char *upstream_error_text(enum upstream_error err)
{
	switch (err) {
	case UPSTREAM_ERR_CONNECT:
		return "upstream connect error";
	case UPSTREAM_ERR_RESET:
		return "upstream connection reset";
	case UPSTREAM_ERR_TIMEOUT:
		return "upstream request timeout";
	case UPSTREAM_ERR_NO_HEALTHY:
		return "no healthy upstream";
	case UPSTREAM_ERR_NOMEM:
		return "upstream overloaded";
	}
	return "upstream error";
}

static void upconn_set_state(struct upstream_conn *c, enum upconn_state s)
{
	static const bool legal[4][4] = {
	        /* from CONNECTING */ {false, true, false, true},
	        /* from BUSY */ {false, false, true, true},
	        /* from IDLE */ {false, true, false, true},
	        /* from CLOSED */ {false, false, false, false},
	};

	if (!legal[c->state][s]) {
		log_error("upstream: illegal connection state change %s -> %s", upconn_state_str(c->state),
		          upconn_state_str(s));
		abort();
	}
	log_debug("upstream %s: %s -> %s", c->ep->text, upconn_state_str(c->state), upconn_state_str(s));
	c->state = s;
}

/* ---- endpoints ---- */

static void endpoint_set_addr(struct upstream_endpoint *ep, const struct sockaddr *sa, socklen_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	memcpy(&ep->addr, sa, len);
	ep->addr_len = len;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ep->addr;

		in->sin_port = htons(ep->cfg->port);
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(ep->text, sizeof(ep->text), "%s:%u", ip, ep->cfg->port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ep->addr;

		in6->sin6_port = htons(ep->cfg->port);
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(ep->text, sizeof(ep->text), "[%s]:%u", ip, ep->cfg->port);
	}
	ep->resolved = true;
}

static void upstream_on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct upstream_endpoint *ep = arg;

	ep->dns_req = NULL;
	if (result != 0 || res == NULL) {
		if (result != EVUTIL_EAI_CANCEL)
			log_warn("upstream: cannot resolve %s: %s (keeping %s)", ep->cfg->host,
			         evutil_gai_strerror(result), ep->resolved ? ep->text : "no address");
		return;
	}
	endpoint_set_addr(ep, res->ai_addr, (socklen_t)res->ai_addrlen);
	evutil_freeaddrinfo(res);
}

static void upstream_resolve_pool(struct upstream_pool *pool)
{
	struct evutil_addrinfo hints;
	size_t i;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	for (i = 0; i < pool->n_eps; i++) {
		struct upstream_endpoint *ep = &pool->eps[i];

		if (ep->cfg->kind != CONFIG_ENDPOINT_FQDN || ep->dns_req != NULL)
			continue;
		ep->dns_req = evdns_getaddrinfo(pool->uw->dns, ep->cfg->host, NULL, &hints,
		                                upstream_on_resolved, ep);
	}
}

static void upstream_on_resolve_timer(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_pool *pool = arg;
	struct timeval tv = {UPSTREAM_RESOLVE_MS / 1000, 0};

	upstream_resolve_pool(pool);
	evtimer_add(&pool->resolve_ev, &tv);
}

struct upstream_worker *upstream_worker_new(struct event_base *base, const struct config *cfg,
                                            struct ssl_ctx_st *const *backend_tls,
                                            const struct health_shared *health)
{
	struct upstream_worker *uw = jg_xcalloc(1, sizeof(*uw));
	size_t i, j;
	bool need_dns = false;

	uw->base = base;
	uw->cfg = cfg;
	bevio_timeouts_init(&uw->timeouts, base);
	bevio_defer_init(&uw->defer, base);
	jg_rng_seed(&uw->rng, (uint64_t)(uintptr_t)uw);
	uw->n_pools = cfg->n_backends;
	uw->pools = jg_xcalloc(cfg->n_backends, sizeof(*uw->pools));
	for (i = 0; i < cfg->n_backends; i++) {
		struct upstream_pool *pool = &uw->pools[i];

		pool->uw = uw;
		pool->be = &cfg->backends[i];
		pool->n_eps = pool->be->n_endpoints;
		pool->eps = jg_xcalloc(pool->n_eps, sizeof(*pool->eps));
		for (j = 0; j < pool->n_eps; j++) {
			struct upstream_endpoint *ep = &pool->eps[j];

			ep->pool = pool;
			ep->cfg = &pool->be->endpoints[j];
			ep->eject_ms = UPSTREAM_EJECT_MS;
			ep->health = health_shared_endpoint(health, i, j);
			snprintf(ep->text, sizeof(ep->text), "%s:%u", ep->cfg->host, ep->cfg->port);
			if (ep->cfg->kind == CONFIG_ENDPOINT_IP)
				endpoint_set_addr(ep, (const struct sockaddr *)&ep->cfg->addr,
				                  ep->cfg->addr_len);
			else
				pool->has_fqdn = need_dns = true;
		}
		/* A TLS backend without a context (none given) gets none: its connects fail (502) rather
		 * than talk to a backend we cannot authenticate (upstream_bev_new). */
		if ((pool->be->tls.enabled || pool->be->protocol == CONFIG_PROTO_H2) && backend_tls != NULL &&
		    backend_tls[i] != NULL && SSL_CTX_up_ref(backend_tls[i]) == 1)
			pool->ssl_ctx = backend_tls[i];
	}
	if (need_dns) {
		uw->dns = httpc_dns_new(base);
		for (i = 0; i < uw->n_pools; i++) {
			struct upstream_pool *pool = &uw->pools[i];

			if (!pool->has_fqdn || uw->dns == NULL)
				continue;
			evtimer_assign(&pool->resolve_ev, base, upstream_on_resolve_timer, pool);
			upstream_on_resolve_timer(-1, 0, pool);
		}
	}
	return uw;
}

static void upconn_free(struct upstream_conn *c);

void upstream_worker_close_idle(struct upstream_worker *uw)
{
	size_t i, j;

	for (i = 0; i < uw->n_pools; i++) {
		if (uw->pools[i].be->protocol != CONFIG_PROTO_HTTP) {
			upstream_h2_pool_close(&uw->pools[i], false);
			continue;
		}
		for (j = 0; j < uw->pools[i].n_eps; j++)
			while (uw->pools[i].eps[j].idle != NULL)
				upconn_free(uw->pools[i].eps[j].idle);
	}
}

static void exchange_on_done(struct bevio_deferred *d);

void upstream_worker_free(struct upstream_worker *uw)
{
	size_t i, j;

	if (uw == NULL)
		return;
	upstream_worker_close_idle(uw);
	for (i = 0; i < uw->n_pools; i++) {
		struct upstream_pool *pool = &uw->pools[i];

		if (pool->be->protocol != CONFIG_PROTO_HTTP)
			upstream_h2_pool_close(pool, true);
		SSL_CTX_free(pool->ssl_ctx);
		pool->ssl_ctx = NULL;
		for (j = 0; j < pool->n_eps; j++)
			if (pool->eps[j].dns_req != NULL)
				evdns_getaddrinfo_cancel(pool->eps[j].dns_req);
		if (pool->has_fqdn && uw->dns != NULL)
			evtimer_del(&pool->resolve_ev);
		free(pool->eps);
	}
	while (uw->defer.head != NULL) { /* finished exchanges not yet recycled */
		struct bevio_deferred *d = uw->defer.head;

		bevio_defer_cancel(d);
		exchange_on_done(d);
	}
	bevio_defer_close(&uw->defer);
	while (uw->free_ex != NULL) {
		struct upstream_exchange *ex = uw->free_ex;

		uw->free_ex = ex->next_pending;
		bevio_timer_stop(&ex->timer);
		free(ex);
	}
	if (uw->dns != NULL)
		evdns_base_free(uw->dns, 1);
	free(uw->pools);
	free(uw);
}

void upstream_worker_set_stats(struct upstream_worker *uw, struct stats_shard *shard)
{
	size_t i, j;

	for (i = 0; i < uw->n_pools; i++)
		for (j = 0; j < uw->pools[i].n_eps; j++)
			uw->pools[i].eps[j].stats = stats_endpoint(shard, uw->pools[i].be->index, j);
}

/* Whether ep may take new requests outside panic: not ejected (passive) and not marked unhealthy by
 * its active health check (one relaxed atomic load, health.h). */
static bool endpoint_is_available(const struct upstream_endpoint *ep, uint64_t now)
{
	return ep->ejected_until_ms <= now && health_endpoint_is_healthy(ep->health);
}

/* True when too few of the pool's resolved endpoints are available (outside ejection and healthy):
 * then ejection and health are ignored and traffic goes to all of them (Envoy's panic threshold,
 * healthy_panic_threshold, 50% by default; Envoy counts actively unhealthy hosts as not healthy). Ejecting
 * the last endpoints of a backend only turns a short outage into a long one: a one-endpoint backend would
 * answer 503 for the whole ejection after its upstream came back. */
static bool pool_in_panic(const struct upstream_pool *pool, uint64_t now)
{
	size_t i, resolved = 0, available = 0;

	for (i = 0; i < pool->n_eps; i++) {
		if (!pool->eps[i].resolved)
			continue;
		resolved++;
		if (endpoint_is_available(&pool->eps[i], now))
			available++;
	}
	return available * 100 < (size_t)pool->be->panic_threshold * resolved;
}

/* Chooses an endpoint that is resolved, not ejected and healthy (unless the pool is in panic) and not yet
 * tried by this exchange. Returns NULL when there is none. */
struct upstream_endpoint *upstream_pool_pick(struct upstream_pool *pool, struct upstream_exchange *ex)
{
	uint64_t now = jg_now_ms();
	struct upstream_endpoint *best = NULL;
	size_t i, n = pool->n_eps, start;
	bool panic;

	if (n == 0)
		return NULL;
	panic = pool_in_panic(pool, now);
	switch (pool->be->lb) {
	case CONFIG_LB_RANDOM:
		start = (size_t)(jg_rng_next(&pool->uw->rng) % n);
		break;
	case CONFIG_LB_LEAST_REQUEST:
		start = (size_t)(jg_rng_next(&pool->uw->rng) % n);
		break;
	default:
		start = pool->rr++ % n;
		break;
	}
	for (i = 0; i < n; i++) {
		size_t k = (start + i) % n;
		struct upstream_endpoint *ep = &pool->eps[k];

		if (!ep->resolved || (!panic && !endpoint_is_available(ep, now)) ||
		    (k < 64 && (ex->tried & (1ull << k))))
			continue;
		if (pool->be->lb != CONFIG_LB_LEAST_REQUEST)
			return ep;
		if (best == NULL || ep->active < best->active)
			best = ep;
	}
	return best;
}

/* A connect to ep failed. UPSTREAM_EJECT_AFTER consecutive failures eject it; a failure while it is
 * ejected belongs to the burst that ejected it (connects started together under load fail together,
 * or were sent there in panic) and counts for nothing: the ejection time doubles once per distinct
 * ejection, never per failed connect. */
void upstream_endpoint_on_failure(struct upstream_endpoint *ep)
{
	uint64_t now = jg_now_ms();

	upstream_endpoint_count(ep, STATS_EP_FAILURES + STATS_UP_CONNECT, 1);
	if (ep->ejected_until_ms > now)
		return;
	if (++ep->failures < UPSTREAM_EJECT_AFTER)
		return;
	ep->ejected_until_ms = now + ep->eject_ms;
	upstream_endpoint_count(ep, STATS_EP_EJECTIONS, 1);
	if (ep->stats != NULL)
		stats_set(&ep->stats[STATS_EP_EJECTED_UNTIL_MS], ep->ejected_until_ms);
	log_warn("upstream %s: ejected for %llu ms after %u connect failures", ep->text,
	         (unsigned long long)ep->eject_ms, ep->failures);
	ep->failures = 0;
	ep->eject_ms = ep->eject_ms * 2 > UPSTREAM_EJECT_MAX_MS ? UPSTREAM_EJECT_MAX_MS : ep->eject_ms * 2;
}

/* A connect to ep succeeded: it is reachable again, so it is back in rotation at once (a connect can
 * reach an ejected endpoint in panic) and its next ejection starts from the base time. */
void upstream_endpoint_on_success(struct upstream_endpoint *ep)
{
	if (ep->ejected_until_ms != 0)
		log_info("upstream %s: connect succeeded, back in rotation", ep->text);
	ep->failures = 0;
	ep->ejected_until_ms = 0;
	ep->eject_ms = UPSTREAM_EJECT_MS;
	if (ep->stats != NULL)
		stats_set(&ep->stats[STATS_EP_EJECTED_UNTIL_MS], 0);
}

/* ---- exchange lifecycle ---- */

static void exchange_on_timeout(void *arg);

/* Finished exchanges a worker keeps for reuse. None under AddressSanitizer: there every exchange is
 * freed at its end, so that a use after the end is reported instead of landing in a reused one. */
#if defined(__SANITIZE_ADDRESS__)
#define UPSTREAM_FREE_EX_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UPSTREAM_FREE_EX_MAX 0
#endif
#endif
#ifndef UPSTREAM_FREE_EX_MAX
#define UPSTREAM_FREE_EX_MAX 256
#endif
static const size_t upstream_free_ex_max = UPSTREAM_FREE_EX_MAX;

static void exchange_on_done(struct bevio_deferred *d)
{
	struct upstream_exchange *ex = container_of(d, struct upstream_exchange, done);
	struct upstream_worker *uw = ex->uw;

	bevio_timer_clear(&ex->timer);
	if (uw->n_free_ex < upstream_free_ex_max) {
		ex->next_pending = uw->free_ex;
		uw->free_ex = ex;
		uw->n_free_ex++;
		return;
	}
	bevio_timer_stop(&ex->timer);
	free(ex);
}

/* A zeroed exchange: a kept one (its timer event possibly still pending, harmlessly: it is off) or a
 * new one. */
static struct upstream_exchange *exchange_alloc(struct upstream_worker *uw)
{
	struct upstream_exchange *ex = uw->free_ex;
	const size_t keep = offsetof(struct upstream_exchange, uw);

	_Static_assert(offsetof(struct upstream_exchange, timer) == 0, "only the timer is kept on reuse");

	if (ex != NULL) {
		uw->free_ex = ex->next_pending;
		uw->n_free_ex--;
		memset((char *)ex + keep, 0, sizeof(*ex) - keep);
		return ex;
	}
	ex = malloc(sizeof(*ex)); /* malloc + memset: calloc would bypass glibc's per-thread cache */
	if (ex == NULL)
		return NULL;
	memset(ex, 0, sizeof(*ex));
	bevio_timer_init(&ex->timer, uw->base, &uw->timeouts, exchange_on_timeout, ex);
	return ex;
}

/* Ends the exchange: no more callbacks; memory freed from a deferred event so that callers up the
 * stack may still look at it. */
void upstream_exchange_finish(struct upstream_exchange *ex)
{
	if (ex->finished)
		return;
	ex->finished = true;
	bevio_timer_clear(&ex->timer);
	upstream_exchange_set_endpoint(ex, NULL);
	bevio_defer(&ex->uw->defer, &ex->done, exchange_on_done);
}

void upstream_pool_remove_pending(struct upstream_pool *pool, struct upstream_exchange *ex)
{
	struct upstream_exchange **pp = &pool->pending_head, *prev = NULL;

	while (*pp != NULL && *pp != ex) {
		prev = *pp;
		pp = &(*pp)->next_pending;
	}
	if (*pp == ex) {
		*pp = ex->next_pending;
		if (pool->pending_tail == ex)
			pool->pending_tail = prev;
		pool->n_pending--;
	}
	ex->pending = false;
	ex->next_pending = NULL;
}

int upstream_pool_add_pending(struct upstream_pool *pool, struct upstream_exchange *ex)
{
	if (pool->n_pending >= pool->be->max_pending)
		return JG_ERR_LIMIT;
	ex->pending = true;
	ex->next_pending = NULL;
	if (pool->pending_tail != NULL)
		pool->pending_tail->next_pending = ex;
	else
		pool->pending_head = ex;
	pool->pending_tail = ex;
	pool->n_pending++;
	return 0;
}

void upstream_exchange_use_endpoint(struct upstream_exchange *ex, struct upstream_endpoint *ep)
{
	size_t k = (size_t)(ep - ex->pool->eps);

	ex->tries++;
	if (k < 64)
		ex->tried |= 1ull << k;
	upstream_exchange_set_endpoint(ex, ep);
}

void upstream_exchange_set_endpoint(struct upstream_exchange *ex, struct upstream_endpoint *ep)
{
	if (ex->ep == ep && (ep == NULL || ex->is_ep_active))
		return;
	if (ex->ep != NULL && ex->is_ep_active) {
		if (ex->ep->active > 0)
			ex->ep->active--;
		upstream_endpoint_count(ex->ep, STATS_EP_ACTIVE, (uint64_t)-1);
		ex->is_ep_active = false;
	}
	/* An exchange that ended keeps ex->ep for the access log, no longer in flight there. */
	if (ep == NULL)
		return;
	ex->ep = ep;
	ex->is_ep_active = true;
	ep->active++;
	upstream_endpoint_count(ep, STATS_EP_ACTIVE, 1);
	upstream_endpoint_count(ep, STATS_EP_REQUESTS, 1); /* one per endpoint an exchange tries */
}

void upstream_exchange_fail(struct upstream_exchange *ex, enum upstream_error err)
{
	if (ex->finished)
		return;
	if (ex->pending)
		upstream_pool_remove_pending(ex->pool, ex);
	/* Connect failures are counted per attempt in upstream_endpoint_on_failure. */
	if (ex->ep != NULL && !ex->failure_counted &&
	    (err == UPSTREAM_ERR_RESET || err == UPSTREAM_ERR_TIMEOUT))
		upstream_endpoint_count(
		        ex->ep,
		        STATS_EP_FAILURES + (err == UPSTREAM_ERR_RESET ? STATS_UP_RESET : STATS_UP_TIMEOUT),
		        1);
	upstream_exchange_finish(ex);
	ex->sink->on_error(ex->ctx, err, ex->head_delivered);
}

static void exchange_on_timeout(void *arg)
{
	struct upstream_exchange *ex = arg;
	struct upstream_conn *c = ex->conn;

	if (ex->finished)
		return;
	if (ex->is_h2) {
		upstream_h2_on_timeout(ex);
		return;
	}
	if (c != NULL) {
		c->ex = NULL;
		ex->conn = NULL;
		upconn_free(c);
	}
	upstream_exchange_fail(ex, UPSTREAM_ERR_TIMEOUT);
}

/* ---- connections ---- */

static void idle_unlink(struct upstream_conn *c)
{
	if (c->prev_idle != NULL)
		c->prev_idle->next_idle = c->next_idle;
	else
		c->ep->idle = c->next_idle;
	if (c->next_idle != NULL)
		c->next_idle->prev_idle = c->prev_idle;
	c->next_idle = c->prev_idle = NULL;
	upstream_endpoint_count(c->ep, STATS_EP_IDLE, (uint64_t)-1);
}

static void pool_kick_pending(struct upstream_pool *pool);

static void upconn_free(struct upstream_conn *c)
{
	struct upstream_pool *pool = c->pool;

	if (c->state == UPCONN_IDLE)
		idle_unlink(c);
	if (c->state != UPCONN_CLOSED)
		upconn_set_state(c, UPCONN_CLOSED);
	if (c->bev != NULL) {
		event_del(&c->flush_ev);
		if (c->rd_ready)
			bevio_reader_stop(&c->rd);
		bufferevent_free(c->bev);
	}
	pool->n_conns--;
	jg_buf_free(&c->field.buf);
	jg_buf_free(&c->value.buf);
	free(c);
	pool_kick_pending(pool);
}

static void upconn_on_read(struct bufferevent *bev, void *arg);
static void upconn_on_write(struct bufferevent *bev, void *arg);
static void upconn_on_event(struct bufferevent *bev, short what, void *arg);
static void upconn_on_eof(struct upstream_conn *c, bool clean_eof);
static int exchange_connect(struct upstream_exchange *ex);

/* Reading on or off: through the plain-socket reader once connected, else the bufferevent. */
static void upconn_read_enable(struct upstream_conn *c, bool on)
{
	if (c->rd_ready)
		bevio_reader_enable(&c->rd, on);
	else if (on)
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
}

/* Output was queued on the connection: write it once the current callbacks are done. */
static void upconn_schedule_flush(struct upstream_conn *c)
{
	if (c->plain && !c->flush_pending) {
		c->flush_pending = true;
		event_active(&c->flush_ev, EV_TIMEOUT, 0);
	}
}

/* The output drained: a codec waiting to feed more request body may go on. */
static void upconn_after_write(struct upstream_conn *c)
{
	struct upstream_exchange *ex = c->ex;

	if (ex != NULL && ex->notify_drain && !ex->finished) {
		ex->notify_drain = false;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		ex->sink->on_drain(ex->ctx);
	}
}

static void upconn_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *c = arg;

	c->flush_pending = false;
	if (bevio_flush(c->bev))
		upconn_after_write(c);
}

/* A chunked body that had ended (empty: an exchange with body bytes sent is never re-sent) before this
 * connection got the head: its last chunk follows the head. */
static void exchange_resend_body_end(struct upstream_exchange *ex)
{
	if (ex->chunked_body && ex->body_done)
		evbuffer_add(bufferevent_get_output(ex->conn->bev), "0\r\n\r\n", 5);
}

/* Writes the kept request head on the exchange's connection and tells the codec to send the body. */
static void exchange_send_head(struct upstream_exchange *ex)
{
	struct upstream_conn *c = ex->conn;

	llhttp_init(&c->parser, HTTP_RESPONSE, &upstream_parser_settings);
	c->parser.data = c;
	if (c->plain) {
		upconn_read_enable(c, true);
		/* Written at the end of the batch of events, body or not: the body's first bytes join the
		 * head, and the heads of a batch go out together. A send that finds the upstream asleep
		 * wakes it (an IPI to its CPU: half the kernel time of such a send on loopback); heads sent
		 * one at a time between the JWT verifications of a CPU-bound worker each found it asleep
		 * (bench/README.md, "Cache misses and the upstream's wake-ups"). */
		evbuffer_add(bufferevent_get_output(c->bev), ex->head, ex->head_len);
		exchange_resend_body_end(ex);
		upconn_schedule_flush(c);
	} else {
		evbuffer_add(bufferevent_get_output(c->bev), ex->head, ex->head_len);
		exchange_resend_body_end(ex);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	}
	ex->sink->on_ready(ex->ctx);
}

/* Binds a ready (idle or just connected) connection to the exchange. */
static void exchange_attach(struct upstream_exchange *ex, struct upstream_conn *c)
{
	ex->conn = c;
	c->ex = ex;
	upstream_exchange_set_endpoint(ex, c->ep);
	if (!c->plain) {
		bufferevent_set_timeouts(c->bev, NULL, NULL); /* the idle bound of upconn_release */
		bufferevent_setwatermark(c->bev, EV_READ, 0, UPSTREAM_IN_HIGH);
	} else if (!c->rd_ready) {
		/* First exchange after the connect: from now on the socket is read by the reader (which
		 * keeps the high mark itself) and written directly; the bufferevent's connect timeouts and
		 * events are off for good, except EV_WRITE while a write waits (bevio_flush). */
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		bevio_reader_init(&c->rd, c->pool->uw->base, c->bev, UPSTREAM_IN_HIGH, upconn_on_read,
		                  upconn_on_event, c);
		bevio_reader_use_timer(&c->rd, &c->rd_idle, c->pool->uw->base, &c->pool->uw->timeouts);
		c->rd_ready = true;
	}
	if (c->rd_ready)
		bevio_reader_set_timeout(&c->rd, 0);
	exchange_send_head(ex);
}

static void pool_kick_pending(struct upstream_pool *pool)
{
	while (pool->pending_head != NULL && pool->n_conns < pool->be->max_connections) {
		struct upstream_exchange *ex = pool->pending_head;

		upstream_pool_remove_pending(pool, ex);
		if (exchange_connect(ex) < 0)
			upstream_exchange_fail(ex, UPSTREAM_ERR_CONNECT);
	}
}

/* Opens a new connection to an endpoint chosen for ex, or takes an idle one. Returns 0 when the
 * exchange is under way (attached, connecting or queued), a negative JG_ERR_* when it failed (the
 * caller reports). */
static int exchange_connect(struct upstream_exchange *ex)
{
	struct upstream_pool *pool = ex->pool;
	struct upstream_endpoint *ep;
	struct upstream_conn *c;
	struct timeval tv;

	for (;;) {
		ep = upstream_pool_pick(pool, ex);
		if (ep == NULL) {
			upstream_exchange_fail(ex, ex->tries > 0 ? UPSTREAM_ERR_CONNECT
			                                         : UPSTREAM_ERR_NO_HEALTHY);
			return 0;
		}
		if (ep->idle == NULL || ex->tries > 0)
			break;
		/* Reuse the most recently used idle connection. */
		c = ep->idle;
		idle_unlink(c);
		upconn_set_state(c, UPCONN_BUSY);
		exchange_attach(ex, c);
		return 0;
	}
	if (pool->n_conns >= pool->be->max_connections) {
		if (upstream_pool_add_pending(pool, ex) < 0)
			upstream_exchange_fail(ex, UPSTREAM_ERR_NO_HEALTHY);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return JG_ERR_NOMEM;
	c->pool = pool;
	c->ep = ep;
	c->state = UPCONN_CONNECTING;
	c->field.buf.max = c->value.buf.max = UPSTREAM_HEAD_MAX;
	/* Plain or TLS (a backend with a tls block); the socket is made by bufferevent_socket_connect. */
	c->bev = upstream_bev_new(pool, ep);
	if (c->bev == NULL) {
		free(c);
		return JG_ERR_NOMEM;
	}
	upstream_exchange_use_endpoint(ex, ep);
	pool->n_conns++;
	c->ex = ex;
	ex->conn = c;
	c->plain = bevio_is_plain(c->bev);
	event_assign(&c->flush_ev, pool->uw->base, -1, 0, upconn_on_flush, c);
	bufferevent_setcb(c->bev, upconn_on_read, upconn_on_write, upconn_on_event, c);
	tv.tv_sec = (time_t)(pool->be->connect_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(pool->be->connect_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ep->addr, (int)ep->addr_len) == -1) {
		/* Immediate failure (e.g. no route): counts as a failed connect; try the next endpoint. */
		ex->conn = NULL;
		c->ex = NULL;
		upstream_endpoint_on_failure(ep);
		upconn_free(c);
		return exchange_connect(ex);
	}
	upstream_bev_tune(c->bev);
	return 0;
}

/* The connection is finished with its exchange: pool it when the response said keep-alive and the
 * request body was sent whole, otherwise close it. */
static void upconn_release(struct upstream_conn *c, bool reusable)
{
	struct upstream_endpoint *ep = c->ep;
	struct timeval tv;

	c->ex = NULL;
	c->kick = false;
	c->served++;
	if (!reusable || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		upconn_free(c);
		return;
	}
	if (c->pool->pending_head != NULL) {
		struct upstream_exchange *ex = c->pool->pending_head;

		upstream_pool_remove_pending(c->pool, ex);
		exchange_attach(ex, c);
		return;
	}
	upconn_set_state(c, UPCONN_IDLE);
	c->next_idle = ep->idle;
	c->prev_idle = NULL;
	if (ep->idle != NULL)
		ep->idle->prev_idle = c;
	ep->idle = c;
	upstream_endpoint_count(ep, STATS_EP_IDLE, 1);
	/* While idle, a read means the upstream closed (or sent garbage): either way it is dropped. */
	tv.tv_sec = (time_t)(c->pool->be->idle_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(c->pool->be->idle_timeout_ms % 1000) * 1000;
	if (c->rd_ready) {
		bevio_reader_set_timeout(&c->rd, c->pool->be->idle_timeout_ms);
		upconn_read_enable(c, true);
	} else {
		bufferevent_set_timeouts(c->bev, &tv, NULL);
		bufferevent_enable(c->bev, EV_READ);
	}
}

/* The connection broke while serving ex. Retry on a fresh connection when nothing of this exchange
 * can have been processed by the upstream yet (stale keep-alive connection), else fail it. */
static void exchange_on_conn_lost(struct upstream_exchange *ex, struct upstream_conn *c,
                                  enum upstream_error err)
{
	bool stale = c->served > 0 && !ex->response_started && !ex->body_started;

	c->ex = NULL;
	ex->conn = NULL;
	upconn_free(c);
	if (stale && !ex->finished) {
		log_debug("upstream: stale pooled connection, re-sending on a new one");
		ex->tries = 1; /* connect fresh, never from the pool again */
		if (exchange_connect(ex) < 0)
			upstream_exchange_fail(ex, err);
		return;
	}
	upstream_exchange_fail(ex, err);
}

static void upconn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_conn *c = arg;
	struct upstream_exchange *ex = c->ex;

	if (c->state == UPCONN_CONNECTING) {
		if (what & BEV_EVENT_CONNECTED) {
			upstream_endpoint_on_success(c->ep);
			upconn_set_state(c, UPCONN_BUSY);
			exchange_attach(ex, c);
			return;
		}
		/* Connect failed or timed out: count it, try another endpoint. A TLS failure says why. */
		{
			unsigned long tls_err = c->plain ? 0 : bufferevent_get_openssl_error(bev);
			char reason[160] = "";

			if (tls_err != 0)
				ERR_error_string_n(tls_err, reason, sizeof(reason));
			log_info("upstream %s: connect %s%s%s", c->ep->text,
			         (what & BEV_EVENT_TIMEOUT) ? "timed out" : "failed", reason[0] ? ": " : "",
			         reason);
		}
		upstream_endpoint_on_failure(c->ep);
		c->ex = NULL;
		ex->conn = NULL;
		upconn_free(c);
		if (ex->tries < UPSTREAM_MAX_TRIES && upstream_pool_pick(ex->pool, ex) != NULL) {
			if (exchange_connect(ex) < 0)
				upstream_exchange_fail(ex, UPSTREAM_ERR_CONNECT);
			return;
		}
		upstream_exchange_fail(ex, (what & BEV_EVENT_TIMEOUT) ? UPSTREAM_ERR_TIMEOUT
		                                                      : UPSTREAM_ERR_CONNECT);
		return;
	}
	if (c->state == UPCONN_IDLE) {
		upconn_free(c); /* closed by the upstream, or idle timeout */
		return;
	}
	/* BUSY */
	if ((what & BEV_EVENT_EOF) && ex != NULL && !ex->finished &&
	    evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
		/* The upstream finished sending while we still hold unparsed bytes (the client is slow
		 * and the response paused): the end is judged once they are parsed. */
		c->eof_seen = true;
		return;
	}
	upconn_on_eof(c, (what & BEV_EVENT_EOF) != 0);
}

/* The upstream closed (or failed). A response delimited by the close ends here; anything else
 * unfinished is lost. */
static void upconn_on_eof(struct upstream_conn *c, bool clean_eof)
{
	struct upstream_exchange *ex = c->ex;

	if (clean_eof && ex != NULL && ex->response_started) {
		if (llhttp_finish(&c->parser) == HPE_OK && ex->finished) {
			c->ex = NULL;
			ex->conn = NULL;
			upconn_free(c);
			return;
		}
	}
	if (ex != NULL && !ex->finished)
		exchange_on_conn_lost(ex, c, UPSTREAM_ERR_RESET);
	else
		upconn_free(c);
}

static void upconn_on_write(struct bufferevent *bev, void *arg)
{
	struct upstream_conn *c = arg;

	if (c->state == UPCONN_CONNECTING)
		return;
	if (c->plain && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
	upconn_after_write(c);
}

/* Parses what the upstream sent. Stops when the response is complete, when the codec paused the
 * response (backpressure), or on error. */
static void upconn_on_read(struct bufferevent *bev, void *arg)
{
	struct upstream_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (c->state == UPCONN_IDLE) {
		if (evbuffer_get_length(in) > 0)
			upconn_free(c); /* unsolicited bytes on an idle connection */
		return;
	}
	while (c->ex != NULL && !c->ex->finished && !c->ex->response_paused &&
	       (evbuffer_get_length(in) > 0 || c->kick)) {
		struct upstream_exchange *ex = c->ex;
		struct evbuffer_iovec v;
		enum llhttp_errno rc;
		size_t used;
		bool out_of_memory;

		if (evbuffer_get_length(in) == 0) {
			/* Resumed after a pause at the end of the input: llhttp needs one empty run to
			 * reach on_message_complete (the upstream may have nothing more to send). */
			v.iov_base = (void *)"";
			v.iov_len = 0;
			c->kick = false;
		} else if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
			break;
		}
		if (!ex->response_started) {
			ex->response_started = true;
		}
		c->parsing = true;
		rc = llhttp_execute(&c->parser, v.iov_base, v.iov_len);
		c->parsing = false;
		if (c->doomed) {
			upconn_free(c);
			return;
		}
		/* A status or header span still borrowed from this chunk is copied before the chunk is
		 * drained (jg_piece); out of memory ends the response like a parse error. */
		out_of_memory = jg_piece_keep(&c->field) < 0 || jg_piece_keep(&c->value) < 0;
		if (out_of_memory)
			rc = HPE_USER;
		if (rc == HPE_OK) {
			evbuffer_drain(in, v.iov_len);
			continue;
		}
		if (rc == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&c->parser) - (const char *)v.iov_base);
			evbuffer_drain(in, used);
			llhttp_resume(&c->parser);
			if (ex->finished) {
				/* Response complete: pool the connection if both sides agree on keep-alive.
				 */
				bool reusable =
				        llhttp_should_keep_alive(&c->parser) && ex->body_done && !c->eof_seen;

				ex->conn = NULL;
				upconn_release(c, reusable);
				return;
			}
			continue; /* paused for backpressure: loop condition stops */
		}
		log_info("upstream %s: bad response: %s", c->ep->text,
		         out_of_memory ? "out of memory" : llhttp_get_error_reason(&c->parser));
		upstream_endpoint_count(c->ep, STATS_EP_FAILURES + STATS_UP_BAD_RESPONSE, 1);
		ex->failure_counted = true;
		ex->conn = NULL;
		c->ex = NULL;
		upconn_free(c);
		upstream_exchange_fail(ex, UPSTREAM_ERR_RESET);
		return;
	}
	if (c->eof_seen && evbuffer_get_length(in) == 0 && (c->ex == NULL || !c->ex->response_paused)) {
		upconn_on_eof(c, true);
		return;
	}
	if (c->rd_ready)
		bevio_reader_poke(&c->rd); /* input was consumed: read again if it had stopped at the mark */
}

/* ---- response parser callbacks ---- */

static int up_on_message_begin(llhttp_t *p)
{
	struct upstream_conn *c = p->data;
	struct upstream_exchange *ex = c->ex;

	response_init(&ex->resp, ex->req->arena);
	ex->te_chunked = false;
	jg_piece_clear(&c->field);
	jg_piece_clear(&c->value);
	return 0;
}

static int up_on_status(llhttp_t *p, const char *at, size_t len)
{
	struct upstream_conn *c = p->data;

	return jg_piece_add(&c->value, at, len) < 0 ? -1 : 0;
}

static int up_on_status_complete(llhttp_t *p)
{
	struct upstream_conn *c = p->data;
	struct upstream_exchange *ex = c->ex;

	/* The reason phrase goes to HTTP/1.1 clients as it is: no control bytes in it. A status outside
	 * 100-599 (llhttp takes any three digits) is no response we could relay; below 100 it would even
	 * pass for an interim one. */
	if (!request_field_value_ok(jg_piece_data(&c->value), jg_piece_len(&c->value)) ||
	    llhttp_get_status_code(p) < 100 || llhttp_get_status_code(p) > 599)
		return -1;
	ex->resp.reason = arena_strndup(ex->req->arena, jg_piece_data(&c->value), jg_piece_len(&c->value));
	ex->resp.reason_len = jg_piece_len(&c->value);
	jg_piece_clear(&c->value);
	return ex->resp.reason == NULL ? -1 : 0;
}

static int up_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct upstream_conn *c = p->data;

	c->ex->head_bytes += len;
	if (c->ex->head_bytes > UPSTREAM_HEAD_MAX)
		return -1;
	return jg_piece_add(&c->field, at, len) < 0 ? -1 : 0;
}

static int up_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct upstream_conn *c = p->data;

	c->ex->head_bytes += len;
	if (c->ex->head_bytes > UPSTREAM_HEAD_MAX)
		return -1;
	return jg_piece_add(&c->value, at, len) < 0 ? -1 : 0;
}

/* Does the Transfer-Encoding value v[0..len) (trailing OWS removed) end in the coding "chunked"? The
 * last field decides, as its codings were applied last (RFC 9112 section 6.1). */
static bool up_te_ends_chunked(const char *v, size_t len)
{
	size_t start = len;

	while (start > 0 && v[start - 1] != ',')
		start--;
	while (start < len && (v[start] == ' ' || v[start] == '\t'))
		start++;
	return jg_case_eq(v + start, len - start, "chunked", 7);
}

static int up_on_header_value_complete(llhttp_t *p)
{
	struct upstream_conn *c = p->data;
	const char *v = jg_piece_data(&c->value);
	size_t len = jg_piece_len(&c->value);
	int rc;

	/* What we relay must be what we parsed: a name that is not a token ("x-tok : a", "a b", empty),
	 * or a control byte in a value, makes the response bad (502), as the same fault in a request
	 * makes the request bad (400). */
	if (!request_field_name_ok(jg_piece_data(&c->field), jg_piece_len(&c->field)) ||
	    !request_field_value_ok(v, len))
		return -1;
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--; /* OWS after the value is not part of it (llhttp leaves it) */
	if (jg_case_eq(jg_piece_data(&c->field), jg_piece_len(&c->field), "content-length", 14) &&
	    request_content_length_parse(v, len) < 0)
		return -1;
	if (jg_case_eq(jg_piece_data(&c->field), jg_piece_len(&c->field), "transfer-encoding", 17))
		c->ex->te_chunked = up_te_ends_chunked(v, len);
	rc = response_header_add(&c->ex->resp, jg_piece_data(&c->field), jg_piece_len(&c->field), v, len);
	jg_piece_clear(&c->field);
	jg_piece_clear(&c->value);
	return rc < 0 ? -1 : 0;
}

static int up_on_headers_complete(llhttp_t *p)
{
	struct upstream_exchange *ex = ((struct upstream_conn *)p->data)->ex;
	int status = llhttp_get_status_code(p);

	/* A response we would cut where its upstream did not mean it to end must not be relayed: llhttp 8
	 * does not read "chunked<HTAB>" (legal OWS, RFC 9110 section 5.5) as chunked and would take the
	 * chunked body as the content up to the close. Same rule as for requests (http1.c): 502. */
	if (ex->te_chunked != ((p->flags & F_CHUNKED) != 0))
		return -1;

	ex->resp.status = status;
	ex->resp.chunked = (p->flags & F_CHUNKED) != 0;
	ex->resp.content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
	if (status == 101)
		return -1; /* we never ask for an upgrade */
	ex->resp.has_body = !(ex->is_head || status < 200 || status == 204 || status == 304);
	if (status < 200 || status == 204) {
		/* No Content-Length in these (RFC 9110 section 8.6): a client would wait for, or read the
		 * next response as, a body that is not there. Nor Transfer-Encoding (RFC 9112 section
		 * 6.1): the header is hop-by-hop and dropped anyway, but a chunked flag left here would
		 * make the HTTP/1.1 codec tell a HEAD client "transfer-encoding: chunked" on a 204. */
		size_t i;

		for (i = 0; i < ex->resp.n_headers; i++)
			if (ex->resp.headers[i].name_len == 14 &&
			    memcmp(ex->resp.headers[i].name, "content-length", 14) == 0)
				ex->resp.headers[i].removed = true;
		ex->resp.chunked = false;
	}
	if (status >= 200)
		ex->head_delivered = true;
	ex->sink->on_head(ex->ctx, &ex->resp);
	if (ex->finished)
		return HPE_PAUSED;
	/* 1: no body whatever the headers say: the response to a HEAD request, and 1xx, 204 and 304
	 * responses (RFC 9112 section 6.3); llhttp would read one when they carry Content-Length or
	 * Transfer-Encoding. */
	return ex->resp.has_body ? 0 : 1;
}

static int up_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct upstream_exchange *ex = ((struct upstream_conn *)p->data)->ex;

	/* llhttp flushes an open span at the end of every run, with zero length when the run ended
	 * right where body data starts (e.g. an empty run after a resume): nothing to pass on. A
	 * zero-length piece must never reach a codec that frames chunks (it would end the body). */
	if (len == 0)
		return 0;
	ex->sink->on_data(ex->ctx, at, len);
	return (ex->response_paused || ex->finished) ? HPE_PAUSED : 0;
}

static int up_on_message_complete(llhttp_t *p)
{
	struct upstream_exchange *ex = ((struct upstream_conn *)p->data)->ex;

	if (ex->resp.status < 200)
		return 0; /* interim response: the final one follows */
	upstream_exchange_finish(ex);
	ex->sink->on_end(ex->ctx);
	return HPE_PAUSED;
}

/* Fills the shared response-parser settings once; pthread_once because every worker thread calls
 * upstream_parser_settings_init, possibly while another one is already parsing with them. */
static void upstream_parser_settings_fill(void)
{
	llhttp_settings_init(&upstream_parser_settings);
	upstream_parser_settings.on_message_begin = up_on_message_begin;
	upstream_parser_settings.on_status = up_on_status;
	upstream_parser_settings.on_status_complete = up_on_status_complete;
	upstream_parser_settings.on_header_field = up_on_header_field;
	upstream_parser_settings.on_header_value = up_on_header_value;
	upstream_parser_settings.on_header_value_complete = up_on_header_value_complete;
	upstream_parser_settings.on_headers_complete = up_on_headers_complete;
	upstream_parser_settings.on_body = up_on_body;
	upstream_parser_settings.on_message_complete = up_on_message_complete;
}

static void upstream_parser_settings_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, upstream_parser_settings_fill);
}

/* ---- public API ---- */

/* Serializes the request head for an HTTP/1.1 upstream: hop-by-hop headers, the headers named by
 * Connection, Expect (the proxy answers 100-continue itself) and the client's framing headers are
 * dropped; our own framing and the codec's extra lines are added. */
/* Appends n bytes at *p (the caller sized the block). */
static inline char *head_put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* Serializes the request head for an HTTP/1.1 upstream into one block of the request's arena (kept
 * for a re-send on a stale pooled connection): hop-by-hop headers, the headers named by Connection,
 * Expect (the proxy answers 100-continue itself) and the client's framing headers are dropped; our
 * own framing and the codec's extra lines are added. Sized first, written once, no printf. */
static int exchange_build_head(struct upstream_exchange *ex, const char *extra, size_t extra_len,
                               int64_t content_length)
{
	const struct request *req = ex->req;
	const char *host = NULL;
	size_t host_len = 0, i, size;
	bool has_host = false, has_connection = false;
	char num[24], *p;
	int num_len = 0;

	for (i = 0; i < req->n_headers; i++)
		if (!req->headers[i].removed && req->headers[i].name_len == 10 &&
		    memcmp(req->headers[i].name, "connection", 10) == 0)
			has_connection = true;
	size = req->method_len + req->target_len + 13 + extra_len + 2;
	for (i = 0; i < req->n_headers; i++)
		size += req->headers[i].name_len + req->headers[i].value_len + 4;
	if (req->authority_len > 0) {
		host = req->authority;
		host_len = req->authority_len;
	} else {
		host = ex->pool->be->endpoints[0].host;
		host_len = strlen(host);
	}
	size += host_len + 8;
	if (ex->has_body && content_length >= 0)
		num_len = snprintf(num, sizeof(num), "%lld", (long long)content_length);
	size += 30 + (size_t)num_len;
	p = ex->head = arena_alloc(req->arena, size);
	if (p == NULL)
		return JG_ERR_NOMEM;
	p = head_put(p, req->method, req->method_len);
	*p++ = ' ';
	p = head_put(p, req->target, req->target_len);
	p = head_put(p, " HTTP/1.1\r\n", 11);
	for (i = 0; i < req->n_headers; i++) {
		const struct request_header *h = &req->headers[i];

		if (h->removed || request_header_is_hop_by_hop(h->name, h->name_len))
			continue;
		if ((h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0) ||
		    (h->name_len == 6 && memcmp(h->name, "expect", 6) == 0))
			continue;
		if (has_connection &&
		    request_header_listed_in_connection(req->headers, req->n_headers, h->name, h->name_len))
			continue;
		if (h->name_len == 4 && memcmp(h->name, "host", 4) == 0) {
			if (has_host)
				continue;
			has_host = true;
		}
		p = head_put(p, h->name, h->name_len);
		p = head_put(p, ": ", 2);
		p = head_put(p, h->value, h->value_len);
		p = head_put(p, "\r\n", 2);
	}
	if (!has_host) {
		p = head_put(p, "host: ", 6);
		p = head_put(p, host, host_len);
		p = head_put(p, "\r\n", 2);
	}
	if (ex->has_body) {
		if (content_length >= 0) {
			p = head_put(p, "content-length: ", 16);
			p = head_put(p, num, (size_t)num_len);
			p = head_put(p, "\r\n", 2);
		} else {
			p = head_put(p, "transfer-encoding: chunked\r\n", 28);
		}
	}
	if (extra_len > 0)
		p = head_put(p, extra, extra_len);
	p = head_put(p, "\r\n", 2);
	ex->head_len = (size_t)(p - ex->head);
	return 0;
}

int upstream_start(struct upstream_worker *uw, const struct config_backend_ref *ref,
                   const struct request *req, const char *extra_head, size_t extra_len, bool has_body,
                   int64_t content_length, const struct upstream_sink *sink, void *ctx,
                   struct upstream_exchange **out)
{
	struct upstream_exchange *ex;
	struct upstream_pool *pool = &uw->pools[ref->backend->index];

	upstream_parser_settings_init();
	ex = exchange_alloc(uw);
	if (ex == NULL)
		return JG_ERR_NOMEM;
	ex->uw = uw;
	ex->pool = pool;
	ex->req = req;
	ex->sink = sink;
	ex->ctx = ctx;
	ex->has_body = has_body;
	ex->chunked_body = has_body && content_length < 0;
	ex->body_done = !has_body;
	ex->is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
	ex->content_length = has_body ? content_length : 0;
	if (pool->be->protocol != CONFIG_PROTO_HTTP) {
		int rc;

		ex->is_h2 = true;
		*out = ex;
		rc = upstream_h2_start(ex, extra_head, extra_len);
		if (rc < 0) {
			*out = NULL;
			exchange_on_done(&ex->done);
		}
		return rc;
	}
	if (exchange_build_head(ex, extra_head, extra_len, content_length) < 0) {
		exchange_on_done(&ex->done);
		return JG_ERR_NOMEM;
	}
	if (pool->be->request_timeout_ms > 0)
		bevio_timer_set(&ex->timer, pool->be->request_timeout_ms);
	*out = ex;
	if (exchange_connect(ex) < 0)
		upstream_exchange_fail(ex, UPSTREAM_ERR_CONNECT);
	return 0;
}

int upstream_send_body(struct upstream_exchange *ex, const char *data, size_t len)
{
	struct evbuffer *out;

	if (ex->is_h2)
		return ex->finished ? JG_ERR_CLOSED : upstream_h2_send_body(ex, data, len);
	if (ex->finished || ex->conn == NULL || ex->conn->state != UPCONN_BUSY)
		return JG_ERR_CLOSED;
	if (len == 0)
		return 0;
	out = bufferevent_get_output(ex->conn->bev);
	ex->body_started = true;
	if (ex->conn->plain && !ex->chunked_body && evbuffer_get_length(out) == 0) {
		/* Nothing queued (the head is out): send from the client's input buffer and copy only
		 * what the socket does not take. Sized bodies only, as in http1.c's h1_up_on_data: a
		 * chunked body comes a chunk at a time, and a send per chunk costs more than the copy. */
		struct iovec v = {(void *)data, len};

		bevio_write(ex->conn->bev, &v, 1);
	} else {
		if (ex->chunked_body) {
			char line[20];

			evbuffer_add(out, line, jg_chunk_line(line, len));
		}
		if (evbuffer_add(out, data, len) != 0)
			return JG_ERR_NOMEM;
		if (ex->chunked_body)
			evbuffer_add(out, "\r\n", 2);
		upconn_schedule_flush(ex->conn);
	}
	if (evbuffer_get_length(out) > UPSTREAM_OUT_HIGH) {
		ex->notify_drain = true;
		bufferevent_setwatermark(ex->conn->bev, EV_WRITE, UPSTREAM_OUT_LOW, 0);
		return 1;
	}
	return 0;
}

int upstream_end_body(struct upstream_exchange *ex)
{
	if (ex->is_h2)
		return ex->finished ? JG_ERR_CLOSED : upstream_h2_end_body(ex);
	if (ex->finished || ex->conn == NULL)
		return JG_ERR_CLOSED;
	/* A connection still connecting (a retry after a stale pooled one) has no head yet: the last
	 * chunk goes after it, from exchange_send_head. */
	if (ex->chunked_body && !ex->body_done && ex->conn->state == UPCONN_BUSY) {
		evbuffer_add(bufferevent_get_output(ex->conn->bev), "0\r\n\r\n", 5);
		upconn_schedule_flush(ex->conn);
	}
	ex->body_done = true;
	return 0;
}

void upstream_pause_response(struct upstream_exchange *ex, bool pause)
{
	if (ex->finished || ex->response_paused == pause)
		return;
	if (ex->is_h2) {
		upstream_h2_pause_response(ex, pause);
		return;
	}
	ex->response_paused = pause;
	if (ex->conn == NULL)
		return;
	if (pause) {
		upconn_read_enable(ex->conn, false);
	} else {
		upconn_read_enable(ex->conn, true);
		/* Bytes already read wait in the input buffer, or the parser waits for one run to end
		 * the message: continue from the loop, not from here. */
		ex->conn->kick = true;
		bufferevent_trigger(ex->conn->bev, EV_READ,
		                    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

void upstream_cancel(struct upstream_exchange *ex)
{
	struct upstream_conn *c = ex->conn;

	if (ex->finished)
		return;
	if (ex->is_h2) {
		upstream_h2_cancel(ex);
		return;
	}
	if (ex->pending)
		upstream_pool_remove_pending(ex->pool, ex);
	if (c != NULL) {
		c->ex = NULL;
		ex->conn = NULL;
		if (c->parsing)
			c->doomed = true; /* the read loop frees it once llhttp returns */
		else
			upconn_free(c);
	}
	upstream_exchange_finish(ex);
}

const char *upstream_exchange_peer(const struct upstream_exchange *ex)
{
	return ex != NULL && ex->ep != NULL ? ex->ep->text : "-";
}
