/* health.c: active health checks on the control thread (see health.h).
 *
 * A checker goes
 *   IDLE -(interval timer)-> [RESOLVING] -> CHECKING -> IDLE ...
 * with one check in flight at most; CLOSED once stopped (a callback that still arrives returns at once).
 */
#include "upstream/health.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event_struct.h>
#include <event2/util.h>

#include "core/common.h"
#include "upstream/httpc.h"
#include "core/log.h"

#define HEALTH_DETAIL_MAX 200

/* ---- shared verdicts ---- */

struct health_shared {
	size_t n_backends;
	size_t *first;               /* per backend: index of its first endpoint in eps, or SIZE_MAX */
	size_t *n_eps;               /* per backend */
	struct health_endpoint *eps; /* every checked endpoint */
};

struct health_shared *health_shared_new(const struct config *cfg)
{
	struct health_shared *hs = jg_xcalloc(1, sizeof(*hs));
	size_t i, j, n = 0, k = 0;

	hs->n_backends = cfg->n_backends;
	hs->first = jg_xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*hs->first));
	hs->n_eps = jg_xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*hs->n_eps));
	for (i = 0; i < cfg->n_backends; i++)
		if (cfg->backends[i].active_hc.type != CONFIG_HC_NONE)
			n += cfg->backends[i].n_endpoints;
	hs->eps = jg_xcalloc(n ? n : 1, sizeof(*hs->eps));
	for (i = 0; i < cfg->n_backends; i++) {
		const struct config_backend *b = &cfg->backends[i];

		hs->first[i] = SIZE_MAX;
		if (b->active_hc.type == CONFIG_HC_NONE)
			continue;
		hs->first[i] = k;
		hs->n_eps[i] = b->n_endpoints;
		for (j = 0; j < b->n_endpoints; j++, k++) {
			size_t o;

			atomic_init(&hs->eps[k].is_healthy, true);
			for (o = 0; o < HEALTH_OUTCOMES; o++)
				atomic_init(&hs->eps[k].checks[o], 0);
			atomic_init(&hs->eps[k].transitions, 0);
		}
	}
	return hs;
}

void health_shared_free(struct health_shared *hs)
{
	if (hs == NULL)
		return;
	free(hs->first);
	free(hs->n_eps);
	free(hs->eps);
	free(hs);
}

static struct health_endpoint *health_shared_entry(const struct health_shared *hs, size_t backend,
                                                   size_t endpoint)
{
	if (hs == NULL || backend >= hs->n_backends || hs->first[backend] == SIZE_MAX ||
	    endpoint >= hs->n_eps[backend])
		return NULL;
	return &hs->eps[hs->first[backend] + endpoint];
}

const struct health_endpoint *health_shared_endpoint(const struct health_shared *hs, size_t backend,
                                                     size_t endpoint)
{
	return health_shared_entry(hs, backend, endpoint);
}

int health_endpoint_get_stats(const struct health_shared *hs, size_t backend, size_t endpoint,
                              struct health_endpoint_stats *out)
{
	const struct health_endpoint *he;
	size_t o;

	memset(out, 0, sizeof(*out));
	if (hs == NULL || backend >= hs->n_backends)
		return JG_ERR_INVAL;
	he = health_shared_entry(hs, backend, endpoint);
	out->is_healthy = true;
	if (he == NULL)
		return hs->first[backend] == SIZE_MAX ? 0 : JG_ERR_INVAL;
	out->is_checked = true;
	out->is_healthy = atomic_load_explicit(&he->is_healthy, memory_order_relaxed);
	for (o = 0; o < HEALTH_OUTCOMES; o++)
		out->checks[o] = atomic_load_explicit(&he->checks[o], memory_order_relaxed);
	out->transitions = atomic_load_explicit(&he->transitions, memory_order_relaxed);
	return 0;
}

const char *health_outcome_key(enum health_outcome o)
{
	static const char *const keys[] = {
	        [HEALTH_CHECK_OK] = "ok",           [HEALTH_CHECK_STATUS] = "status",
	        [HEALTH_CHECK_TIMEOUT] = "timeout", [HEALTH_CHECK_CONNECT] = "connect",
	        [HEALTH_CHECK_RESET] = "reset",
	};

	return (size_t)o < JG_ARRAY_SIZE(keys) && keys[o] != NULL ? keys[o] : "?";
}

/* ---- the gRPC health protocol ---- */

size_t health_grpc_request(const char *service, uint8_t *out, size_t cap)
{
	size_t slen = service != NULL ? strlen(service) : 0, msg = 0, v;
	uint8_t varint[10];
	size_t vlen = 0;

	/* proto3: an empty string field is not encoded, so the whole-server check is an empty message. */
	if (slen > 0) {
		for (v = slen; v >= 0x80; v >>= 7)
			varint[vlen++] = (uint8_t)(v | 0x80);
		varint[vlen++] = (uint8_t)v;
		msg = 1 + vlen + slen; /* tag (field 1, wire type 2 = 0x0a), length, bytes */
	}
	if (msg > UINT32_MAX || 5 + msg > cap)
		return 0;
	/* gRPC over HTTP/2 message prefix: compressed flag, 4-byte big-endian length. */
	out[0] = 0;
	out[1] = (uint8_t)(msg >> 24);
	out[2] = (uint8_t)(msg >> 16);
	out[3] = (uint8_t)(msg >> 8);
	out[4] = (uint8_t)msg;
	if (slen > 0) {
		out[5] = 0x0a;
		memcpy(out + 6, varint, vlen);
		memcpy(out + 6 + vlen, service, slen);
	}
	return 5 + msg;
}

/* Reads a base-128 varint at *p (< end). Returns 0 or JG_ERR_PARSE. */
static int health_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift;

	for (shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = v;
			return 0;
		}
	}
	return JG_ERR_PARSE;
}

int health_grpc_serving(const uint8_t *msg, size_t len)
{
	const uint8_t *p, *end;
	uint64_t status = 0; /* UNKNOWN when absent (proto3 default) */
	size_t mlen;

	if (len < 5 || msg[0] != 0) /* compressed messages are never asked for (no grpc-accept-encoding) */
		return JG_ERR_PARSE;
	mlen = (size_t)msg[1] << 24 | (size_t)msg[2] << 16 | (size_t)msg[3] << 8 | msg[4];
	if (mlen > len - 5)
		return JG_ERR_PARSE;
	p = msg + 5;
	end = p + mlen;
	while (p < end) {
		uint64_t key, v;

		if (health_pb_varint(&p, end, &key) < 0)
			return JG_ERR_PARSE;
		switch (key & 7) {
		case 0: /* varint */
			if (health_pb_varint(&p, end, &v) < 0)
				return JG_ERR_PARSE;
			if (key >> 3 == 1)
				status = v;
			break;
		case 1: /* 64-bit */
			if (end - p < 8)
				return JG_ERR_PARSE;
			p += 8;
			break;
		case 2: /* length-delimited */
			if (health_pb_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
				return JG_ERR_PARSE;
			p += v;
			break;
		case 5: /* 32-bit */
			if (end - p < 4)
				return JG_ERR_PARSE;
			p += 4;
			break;
		default:
			return JG_ERR_PARSE;
		}
	}
	return status == 1 ? 1 : 0; /* HealthCheckResponse.ServingStatus SERVING = 1 */
}

/* ---- checkers ---- */

enum health_checker_state {
	HEALTH_IDLE = 0,  /* waiting for the interval timer (or not started) */
	HEALTH_RESOLVING, /* evdns query for an FQDN endpoint */
	HEALTH_CHECKING,  /* the request is in flight */
	HEALTH_CLOSED,    /* stopped */
};

static const char *health_state_str(enum health_checker_state s)
{
	static const char *const names[] = {"IDLE", "RESOLVING", "CHECKING", "CLOSED"};

	return (size_t)s < JG_ARRAY_SIZE(names) ? names[s] : "?";
}

struct health_checker {
	struct health_check *set;
	const struct config_backend *be;
	const struct config_endpoint *ep;
	struct health_endpoint *shared;
	enum health_checker_state state;
	struct event timer_ev;    /* next check */
	struct event deadline_ev; /* timeout while resolving (httpc bounds the request itself) */
	struct evdns_getaddrinfo_request *dns_req;
	struct httpc *req;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	uint64_t deadline_ms;
	unsigned n_pass, n_fail; /* consecutive */
	bool has_verdict;        /* a check has finished since the endpoint was first checked */
	char text[300];          /* "backend name host:port" for log lines */
	char authority[272];     /* Host / :authority */
};

struct health_check {
	struct event_base *base;
	const struct config *cfg;
	struct health_shared *hs;
	struct evdns_base *dns; /* NULL when no checked endpoint is an FQDN */
	struct health_checker *checkers;
	size_t n_checkers;
	SSL_CTX **ssl_ctx;   /* per backend: TLS context of its checks, NULL when cleartext or unusable */
	bool *is_tls_broken; /* per backend: TLS asked but its CA bundle did not load */
};

static void health_check_begin(struct health_checker *k);

/* Moves k to state s; an illegal transition is a bug and aborts. */
static void health_set_state(struct health_checker *k, enum health_checker_state s)
{
	static const unsigned next[] = {
	        [HEALTH_IDLE] = 1u << HEALTH_RESOLVING | 1u << HEALTH_CHECKING | 1u << HEALTH_IDLE |
	                        1u << HEALTH_CLOSED,
	        [HEALTH_RESOLVING] = 1u << HEALTH_CHECKING | 1u << HEALTH_IDLE | 1u << HEALTH_CLOSED,
	        [HEALTH_CHECKING] = 1u << HEALTH_IDLE | 1u << HEALTH_CLOSED,
	        [HEALTH_CLOSED] = 0,
	};

	if ((next[k->state] & (1u << s)) == 0) {
		log_error("health %s: illegal state change %s -> %s", k->text, health_state_str(k->state),
		          health_state_str(s));
		abort();
	}
	log_debug("health %s: %s -> %s", k->text, health_state_str(k->state), health_state_str(s));
	k->state = s;
}

static void health_arm(struct event *ev, uint64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

/* One check is over: counts it, applies the thresholds, logs a transition, schedules the next. */
static void health_record(struct health_checker *k, enum health_outcome o, const char *detail)
{
	const struct config_active_hc *h = &k->be->active_hc;
	bool was_healthy = atomic_load_explicit(&k->shared->is_healthy, memory_order_relaxed);
	bool first = !k->has_verdict;

	event_del(&k->deadline_ev);
	k->has_verdict = true;
	atomic_fetch_add_explicit(&k->shared->checks[o], 1, memory_order_relaxed);
	if (o == HEALTH_CHECK_OK) {
		k->n_fail = 0;
		k->n_pass++;
		if (!was_healthy && (first || k->n_pass >= h->healthy_threshold)) {
			atomic_store_explicit(&k->shared->is_healthy, true, memory_order_relaxed);
			atomic_fetch_add_explicit(&k->shared->transitions, 1, memory_order_relaxed);
			log_info("health %s: healthy after %u passed check%s; back in rotation", k->text,
			         k->n_pass, k->n_pass == 1 ? "" : "s");
		}
	} else {
		k->n_pass = 0;
		k->n_fail++;
		log_debug("health %s: check failed (%s: %s)", k->text, health_outcome_key(o), detail);
		if (was_healthy && (first || k->n_fail >= h->unhealthy_threshold)) {
			atomic_store_explicit(&k->shared->is_healthy, false, memory_order_relaxed);
			atomic_fetch_add_explicit(&k->shared->transitions, 1, memory_order_relaxed);
			log_warn("health %s: unhealthy after %u failed check%s (last: %s: %s); no new "
			         "requests "
			         "go there",
			         k->text, k->n_fail, k->n_fail == 1 ? "" : "s", health_outcome_key(o),
			         detail);
		}
	}
	health_set_state(k, HEALTH_IDLE);
	health_arm(&k->timer_ev, h->interval_ms);
}

static void health_on_response(void *arg, const struct httpc_result *res)
{
	struct health_checker *k = arg;
	const struct config_active_hc *h = &k->be->active_hc;
	char detail[HEALTH_DETAIL_MAX];
	size_t i;

	k->req = NULL; /* httpc frees it when this returns */
	if (k->state != HEALTH_CHECKING)
		return;
	switch (res->failure) {
	case HTTPC_OK:
		break;
	case HTTPC_FAIL_CONNECT:
	case HTTPC_FAIL_TLS:
		health_record(k, HEALTH_CHECK_CONNECT, res->detail);
		return;
	case HTTPC_FAIL_TIMEOUT:
		health_record(k, HEALTH_CHECK_TIMEOUT, res->detail);
		return;
	case HTTPC_FAIL_STATUS:
	case HTTPC_FAIL_RESET:
	case HTTPC_FAIL_TOO_BIG:
		health_record(k, HEALTH_CHECK_RESET, res->detail);
		return;
	}
	if (h->type == CONFIG_HC_HTTP) {
		for (i = 0; i < h->n_expected_statuses; i++)
			if (res->status == h->expected_statuses[i]) {
				health_record(k, HEALTH_CHECK_OK, "");
				return;
			}
		snprintf(detail, sizeof(detail), "status %d", res->status);
		health_record(k, HEALTH_CHECK_STATUS, detail);
		return;
	}
	/* GRPC: gRPC over HTTP/2 answers 200 and puts the outcome in grpc-status (grpc PROTOCOL-HTTP2). */
	if (res->status != 200 || res->grpc_status != 0) {
		snprintf(detail, sizeof(detail), "status %d, grpc-status %d", res->status, res->grpc_status);
		health_record(k, HEALTH_CHECK_STATUS, detail);
		return;
	}
	switch (health_grpc_serving((const uint8_t *)res->body, res->body_len)) {
	case 1:
		health_record(k, HEALTH_CHECK_OK, "");
		break;
	case 0:
		health_record(k, HEALTH_CHECK_STATUS, "not SERVING");
		break;
	default:
		health_record(k, HEALTH_CHECK_RESET, "not a HealthCheckResponse");
		break;
	}
}

/* Sends the check to k->addr. */
static void health_send(struct health_checker *k)
{
	static const struct httpc_header grpc_headers[] = {
	        {"content-type", "application/grpc"},
	        {"te", "trailers"},
	};
	const struct config_active_hc *h = &k->be->active_hc;
	struct httpc_request req;
	uint8_t body[5 + 10 + 1024];
	uint64_t now = jg_now_ms();

	health_set_state(k, HEALTH_CHECKING);
	event_del(&k->deadline_ev);
	if (k->set->is_tls_broken[k->be->index]) {
		health_record(k, HEALTH_CHECK_CONNECT, "no TLS context (CA bundle not loaded)");
		return;
	}
	memset(&req, 0, sizeof(req));
	req.addr = (const struct sockaddr *)&k->addr;
	req.addr_len = k->addr_len;
	req.ssl_ctx = k->set->ssl_ctx[k->be->index];
	req.tls_name = k->be->tls.hostname != NULL ? k->be->tls.hostname : k->ep->host;
	req.is_h2 = k->be->protocol != CONFIG_PROTO_HTTP;
	req.authority = k->authority;
	req.connect_timeout_ms = k->deadline_ms > now ? k->deadline_ms - now : 0;
	req.timeout_ms = req.connect_timeout_ms;
	if (h->type == CONFIG_HC_HTTP) {
		req.method = h->http_method;
		req.target = h->http_path;
		req.head_only = true;
	} else {
		size_t n = health_grpc_request(h->grpc_service, body, sizeof(body));

		if (n == 0) { /* a service name longer than the buffer: the config check bounds it */
			health_record(k, HEALTH_CHECK_RESET, "service name too long");
			return;
		}
		req.method = "POST";
		req.target = "/grpc.health.v1.Health/Check";
		req.headers = grpc_headers;
		req.n_headers = JG_ARRAY_SIZE(grpc_headers);
		req.body = body;
		req.body_len = n;
		req.body_max = HEALTH_GRPC_BODY_MAX;
	}
	k->req = httpc_start(k->set->base, &req, health_on_response, k);
	if (k->req == NULL)
		health_record(k, HEALTH_CHECK_CONNECT, "out of memory for the check");
}

static void health_on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct health_checker *k = arg;
	char detail[HEALTH_DETAIL_MAX];

	if (result == EVUTIL_EAI_CANCEL)
		return; /* k may be gone (stopped) */
	k->dns_req = NULL;
	if (k->state != HEALTH_RESOLVING) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0 || res == NULL || res->ai_addrlen > sizeof(k->addr)) {
		snprintf(detail, sizeof(detail), "cannot resolve %s: %s", k->ep->host,
		         result != 0 ? evutil_gai_strerror(result) : "no address");
		if (res != NULL)
			evutil_freeaddrinfo(res);
		health_set_state(k, HEALTH_CHECKING);
		health_record(k, HEALTH_CHECK_CONNECT, detail);
		return;
	}
	memcpy(&k->addr, res->ai_addr, res->ai_addrlen);
	k->addr_len = (socklen_t)res->ai_addrlen;
	evutil_freeaddrinfo(res);
	if (k->addr.ss_family == AF_INET)
		((struct sockaddr_in *)&k->addr)->sin_port = htons(k->ep->port);
	else if (k->addr.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&k->addr)->sin6_port = htons(k->ep->port);
	health_send(k);
}

static void health_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct health_checker *k = arg;

	if (k->state != HEALTH_RESOLVING)
		return;
	if (k->dns_req != NULL) {
		evdns_getaddrinfo_cancel(k->dns_req);
		k->dns_req = NULL;
	}
	health_set_state(k, HEALTH_CHECKING);
	health_record(k, HEALTH_CHECK_TIMEOUT, "name resolution timed out");
}

/* Starts one check: resolves an FQDN endpoint first; the whole check is bounded by the timeout. */
static void health_check_begin(struct health_checker *k)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	k->deadline_ms = jg_now_ms() + k->be->active_hc.timeout_ms;
	if (k->ep->kind == CONFIG_ENDPOINT_IP) {
		memcpy(&k->addr, &k->ep->addr, k->ep->addr_len);
		k->addr_len = k->ep->addr_len;
		health_send(k);
		return;
	}
	health_set_state(k, HEALTH_RESOLVING);
	if (k->set->dns == NULL) {
		health_set_state(k, HEALTH_CHECKING);
		health_record(k, HEALTH_CHECK_CONNECT, "no DNS resolver");
		return;
	}
	health_arm(&k->deadline_ev, k->be->active_hc.timeout_ms);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	/* The answer may come synchronously (hosts file): the callback then has already moved on. */
	req = evdns_getaddrinfo(k->set->dns, k->ep->host, NULL, &hints, health_on_resolved, k);
	if (req != NULL && k->state == HEALTH_RESOLVING)
		k->dns_req = req;
}

static void health_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct health_checker *k = arg;

	if (k->state == HEALTH_IDLE)
		health_check_begin(k);
}

struct health_check *health_check_new(struct event_base *base, const struct config *cfg,
                                      struct health_shared *hs)
{
	struct health_check *hc = jg_xcalloc(1, sizeof(*hc));
	bool needs_dns = false;
	size_t i, j, n = 0;

	hc->base = base;
	hc->cfg = cfg;
	hc->hs = hs;
	hc->ssl_ctx = jg_xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*hc->ssl_ctx));
	hc->is_tls_broken = jg_xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*hc->is_tls_broken));
	for (i = 0; i < cfg->n_backends; i++)
		if (cfg->backends[i].active_hc.type != CONFIG_HC_NONE)
			n += cfg->backends[i].n_endpoints;
	hc->checkers = jg_xcalloc(n ? n : 1, sizeof(*hc->checkers));
	for (i = 0; i < cfg->n_backends; i++) {
		const struct config_backend *b = &cfg->backends[i];

		if (b->active_hc.type == CONFIG_HC_NONE)
			continue;
		if (b->tls.enabled || b->protocol == CONFIG_PROTO_H2) {
			char who[300];

			snprintf(who, sizeof(who), "health backend %s", b->name);
			hc->ssl_ctx[i] =
			        httpc_tls_ctx_new(who, b, b->protocol == CONFIG_PROTO_H2 ? "h2" : NULL, NULL);
			hc->is_tls_broken[i] = hc->ssl_ctx[i] == NULL;
		}
		for (j = 0; j < b->n_endpoints; j++) {
			struct health_checker *k = &hc->checkers[hc->n_checkers++];
			const struct config_endpoint *ep = &b->endpoints[j];
			bool is_v6 = strchr(ep->host, ':') != NULL;

			k->set = hc;
			k->be = b;
			k->ep = ep;
			k->shared = health_shared_entry(hs, i, j);
			k->state = HEALTH_IDLE;
			snprintf(k->text, sizeof(k->text), "backend %s %s%s%s:%u", b->name, is_v6 ? "[" : "",
			         ep->host, is_v6 ? "]" : "", ep->port);
			if (b->tls.enabled && b->tls.hostname != NULL)
				snprintf(k->authority, sizeof(k->authority), "%s", b->tls.hostname);
			else
				snprintf(k->authority, sizeof(k->authority), "%s%s%s:%u", is_v6 ? "[" : "",
				         ep->host, is_v6 ? "]" : "", ep->port);
			evtimer_assign(&k->timer_ev, base, health_on_timer, k);
			evtimer_assign(&k->deadline_ev, base, health_on_deadline, k);
			if (ep->kind == CONFIG_ENDPOINT_FQDN)
				needs_dns = true;
		}
	}
	if (needs_dns) {
		hc->dns = httpc_dns_new(base);
		if (hc->dns == NULL)
			log_error("health: cannot create a DNS resolver; checks of endpoints named by host "
			          "fail");
	}
	return hc;
}

size_t health_check_count(const struct health_check *hc)
{
	return hc != NULL ? hc->n_checkers : 0;
}

void health_check_start(struct health_check *hc)
{
	size_t i;

	for (i = 0; i < hc->n_checkers; i++) {
		struct health_checker *k = &hc->checkers[i];

		if (i == 0 || k->be != hc->checkers[i - 1].be)
			log_info("health: checking backend %s (%s every %llu ms, timeout %llu ms)",
			         k->be->name, k->be->active_hc.type == CONFIG_HC_HTTP ? "HTTP" : "GRPC",
			         (unsigned long long)k->be->active_hc.interval_ms,
			         (unsigned long long)k->be->active_hc.timeout_ms);
		health_check_begin(k);
	}
}

/* Stops every checker: requests, DNS queries, timers. */
static void health_check_stop_all(struct health_check *hc)
{
	size_t i;

	for (i = 0; i < hc->n_checkers; i++) {
		struct health_checker *k = &hc->checkers[i];

		httpc_cancel(k->req);
		k->req = NULL;
		if (k->dns_req != NULL) {
			/* Its callback still comes, with EVUTIL_EAI_CANCEL, and ignores it. */
			evdns_getaddrinfo_cancel(k->dns_req);
			k->dns_req = NULL;
		}
		event_del(&k->timer_ev);
		event_del(&k->deadline_ev);
		if (k->state != HEALTH_CLOSED)
			health_set_state(k, HEALTH_CLOSED);
	}
}

void health_check_replace(struct health_check *hc, struct health_check *old)
{
	size_t i, j, o;

	if (old == NULL)
		return;
	for (i = 0; i < hc->n_checkers; i++) {
		struct health_checker *k = &hc->checkers[i];

		for (j = 0; j < old->n_checkers; j++) {
			const struct health_checker *p = &old->checkers[j];

			if (strcmp(p->be->name, k->be->name) != 0 || strcmp(p->ep->host, k->ep->host) != 0 ||
			    p->ep->port != k->ep->port || p->be->active_hc.type != k->be->active_hc.type)
				continue;
			atomic_store(&k->shared->is_healthy, atomic_load(&p->shared->is_healthy));
			for (o = 0; o < HEALTH_OUTCOMES; o++)
				atomic_store(&k->shared->checks[o], atomic_load(&p->shared->checks[o]));
			atomic_store(&k->shared->transitions, atomic_load(&p->shared->transitions));
			k->n_pass = p->n_pass;
			k->n_fail = p->n_fail;
			k->has_verdict = p->has_verdict;
			break;
		}
	}
	health_check_free(old);
}

void health_check_free(struct health_check *hc)
{
	size_t i;

	if (hc == NULL)
		return;
	health_check_stop_all(hc);
	if (hc->dns != NULL) {
		/* Cancelled queries report EVUTIL_EAI_CANCEL from a deferred callback that frees them. */
		event_base_loop(hc->base, EVLOOP_NONBLOCK);
		evdns_base_free(hc->dns, 0);
	}
	for (i = 0; i < hc->cfg->n_backends; i++)
		SSL_CTX_free(hc->ssl_ctx[i]);
	free(hc->ssl_ctx);
	free(hc->is_tls_broken);
	free(hc->checkers);
	free(hc);
}
