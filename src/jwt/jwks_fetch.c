/* jwks_fetch.c: remote JWKS over HTTPS (or plain HTTP) on the control thread (see jwks_fetch.h for the
 * behaviour).
 *
 * A fetcher runs one attempt at a time through
 *   IDLE -> [RESOLVING] -> REQUESTING -> IDLE (timer: refresh or failed refetch)
 *                                       \-> BACKOFF -> [RESOLVING] -> REQUESTING ...
 * and owns one request (httpc: connection, TLS, HTTP/1.1 response) at most, so a fetcher never has two
 * fetches in flight whatever the workers ask. Fetchers live as long as the configuration.
 */
#include "jwt/jwks_fetch.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "core/common.h"
#include "upstream/httpc.h"
#include "jwt/jwk.h"
#include "jwt/jwt.h"
#include "core/log.h"

#define JWKS_FETCH_HOST_MAX   HTTPC_URI_HOST_MAX   /* DNS name or IP literal of the URI */
#define JWKS_FETCH_TARGET_MAX HTTPC_URI_TARGET_MAX /* path and query of the URI */
#define JWKS_FETCH_DETAIL_MAX HTTPC_DETAIL_MAX     /* failure detail kept for the log line */

enum jwks_fetch_state {
	JWKS_FETCH_IDLE = 0,   /* not fetching: waiting for the refresh or refetch timer (or not started) */
	JWKS_FETCH_RESOLVING,  /* evdns query for the connect address */
	JWKS_FETCH_REQUESTING, /* the request (httpc: connect, TLS, response) is in flight */
	JWKS_FETCH_BACKOFF,    /* waiting before a retry */
	JWKS_FETCH_CLOSED,     /* shut down; every callback that still arrives returns at once */
};

static const char *jwks_fetch_state_str(enum jwks_fetch_state s)
{
	static const char *const names[] = {"IDLE", "RESOLVING", "REQUESTING", "BACKOFF", "CLOSED"};

	return (size_t)s < JG_ARRAY_SIZE(names) ? names[s] : "?";
}

#define JF_BIT(s) (1u << (s))
/* Legal transitions, indexed by the state left. */
static const unsigned jwks_fetch_next_states[] = {
        [JWKS_FETCH_IDLE] = JF_BIT(JWKS_FETCH_RESOLVING) | JF_BIT(JWKS_FETCH_REQUESTING) |
                            JF_BIT(JWKS_FETCH_BACKOFF) | JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_RESOLVING] = JF_BIT(JWKS_FETCH_REQUESTING) | JF_BIT(JWKS_FETCH_BACKOFF) |
                                 JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_REQUESTING] =
                JF_BIT(JWKS_FETCH_BACKOFF) | JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_BACKOFF] = JF_BIT(JWKS_FETCH_RESOLVING) | JF_BIT(JWKS_FETCH_REQUESTING) |
                               JF_BIT(JWKS_FETCH_BACKOFF) | JF_BIT(JWKS_FETCH_IDLE) |
                               JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_CLOSED] = 0,
};

struct jwks_fetcher {
	struct jwks_fetch *set;
	const struct config_remote_jwks *cfg;     /* of the first provider naming this JWKS */
	const struct config_backend *backend;     /* cfg->backend, or NULL */
	char host[JWKS_FETCH_HOST_MAX + 1];       /* URI host (brackets removed from an IPv6 literal) */
	char authority[JWKS_FETCH_HOST_MAX + 16]; /* Host header: host[:port] as in the URI */
	char *target;                             /* path and query, "/" at least; owned */
	uint16_t port;                            /* URI port, 443 (https) or 80 (http) by default */
	bool is_host_ip;
	bool is_https;           /* the URI's scheme */
	bool is_tls;             /* https, or http through a backend with a tls block: never downgraded */
	const char *verify_name; /* SNI and certificate name: tls.hostname or host */
	bool is_verify_ip;
	SSL_CTX *ssl_ctx; /* over TLS, NULL: every fetch fails (logged at start-up) */
	bool is_unusable; /* URI the fetcher cannot use (logged at start-up) */
	uint64_t connect_timeout_ms;
	uint64_t kick_cooldown_ms;
	int *slots; /* provider indexes that get this JWKS */
	size_t n_slots;
	char providers[128]; /* "policy/provider, ..." for log lines (truncated) */

	enum jwks_fetch_state state;
	struct event timer_ev;   /* refresh, failed refetch, or backoff */
	struct event attempt_ev; /* connect deadline while resolving (httpc bounds the rest) */
	struct event kick_ev;    /* activated by workers: unknown kid */
	atomic_bool is_kick_pending;
	atomic_uint_fast64_t kick_not_before_ms;

	/* the attempt in flight */
	struct evdns_getaddrinfo_request *dns_req;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct httpc *req;
	int status;
	uint64_t deadline_ms;         /* requestTimeout of this attempt */
	uint64_t connect_deadline_ms; /* connect timeout of this attempt (resolving included) */
	unsigned retry;               /* retries made in this cycle */
	size_t next_endpoint;
	bool is_first_done;
	bool has_keys;
	struct jwks *keys;             /* the last key set published (one reference), for a reload to adopt */
	uint64_t keys_at_ms;           /* jg_now_ms() when `keys` was fetched */
	struct jwks_fetch_stats stats; /* keys_age_ms is filled only in copies (jwks_fetch_get_stats) */
	char detail[JWKS_FETCH_DETAIL_MAX];
};

struct jwks_fetch {
	struct event_base *base;
	struct auth_shared *auth;
	struct evdns_base *dns; /* NULL when no fetcher needs a name resolved */
	struct jwks_fetcher *fetchers;
	size_t n_fetchers;
	struct jwks_fetcher **by_provider; /* provider index -> fetcher or NULL */
	size_t n_providers;
	size_t n_first_pending;
	bool is_started;
	void (*on_first_done)(void *arg);
	void *first_arg;
	uint64_t rng;
	bool is_retired;            /* replaced by a reload: stopped, auth and cfg no longer touched */
	struct jwks_fetch *retired; /* the set this one replaced, kept until jwks_fetch_free */
};

static void jwks_fetch_attempt(struct jwks_fetcher *f);
static void jwks_fetch_fail(struct jwks_fetcher *f, enum jwks_fetch_failure failure);

/* ---- small helpers ---- */

/* Moves f to state s; an illegal transition is a bug and aborts. */
static void jwks_fetch_set_state(struct jwks_fetcher *f, enum jwks_fetch_state s)
{
	if ((jwks_fetch_next_states[f->state] & JF_BIT(s)) == 0) {
		log_error("jwks %s: illegal state change %s -> %s", f->cfg->uri,
		          jwks_fetch_state_str(f->state), jwks_fetch_state_str(s));
		abort();
	}
	log_debug("jwks %s: %s -> %s", f->cfg->uri, jwks_fetch_state_str(f->state), jwks_fetch_state_str(s));
	f->state = s;
}

static struct timeval jwks_fetch_tv(uint64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return tv;
}

static void jwks_fetch_arm(struct event *ev, uint64_t ms)
{
	struct timeval tv = jwks_fetch_tv(ms);

	evtimer_add(ev, &tv);
}

const char *jwks_fetch_failure_str(enum jwks_fetch_failure f)
{
	switch (f) {
	case JWKS_FETCH_OK:
		return "ok";
	case JWKS_FETCH_FAIL_CONNECT:
		return "connect failure";
	case JWKS_FETCH_FAIL_TLS:
		return "TLS failure";
	case JWKS_FETCH_FAIL_RESET:
		return "no complete response";
	case JWKS_FETCH_FAIL_TIMEOUT:
		return "request timeout";
	case JWKS_FETCH_FAIL_STATUS:
		return "bad status";
	case JWKS_FETCH_FAIL_TOO_BIG:
		return "body too large";
	case JWKS_FETCH_FAIL_JWKS:
		return "invalid JWKS";
	case JWKS_FETCH_FAIL_CONFIG:
		return "cannot fetch";
	}
	return "?";
}

const char *jwks_fetch_failure_key(enum jwks_fetch_failure f)
{
	static const char *const keys[] = {
	        [JWKS_FETCH_OK] = "ok",
	        [JWKS_FETCH_FAIL_CONNECT] = "connect",
	        [JWKS_FETCH_FAIL_TLS] = "tls",
	        [JWKS_FETCH_FAIL_RESET] = "reset",
	        [JWKS_FETCH_FAIL_TIMEOUT] = "timeout",
	        [JWKS_FETCH_FAIL_STATUS] = "status",
	        [JWKS_FETCH_FAIL_TOO_BIG] = "too_large",
	        [JWKS_FETCH_FAIL_JWKS] = "bad_jwks",
	        [JWKS_FETCH_FAIL_CONFIG] = "config",
	};

	return (size_t)f < JG_ARRAY_SIZE(keys) && keys[f] != NULL ? keys[f] : "?";
}

/* See jwks_fetch.h. Envoy's x-envoy-retry-on meanings: 5xx and gateway-error also cover a request that
 * got no response at all; reset covers every way of getting no response. */
bool jwks_fetch_should_retry(unsigned triggers, enum jwks_fetch_failure failure, int status)
{
	const unsigned no_response =
	        CONFIG_RETRY_ON_5XX | CONFIG_RETRY_ON_GATEWAY_ERROR | CONFIG_RETRY_ON_RESET;

	switch (failure) {
	case JWKS_FETCH_FAIL_CONNECT:
	case JWKS_FETCH_FAIL_TLS:
		return (triggers & (no_response | CONFIG_RETRY_ON_CONNECT_FAILURE)) != 0;
	case JWKS_FETCH_FAIL_RESET:
	case JWKS_FETCH_FAIL_TIMEOUT:
		return (triggers & no_response) != 0;
	case JWKS_FETCH_FAIL_STATUS:
		if (status >= 500 && status <= 599 && (triggers & CONFIG_RETRY_ON_5XX))
			return true;
		if ((status == 502 || status == 503 || status == 504) &&
		    (triggers & CONFIG_RETRY_ON_GATEWAY_ERROR))
			return true;
		return status == 409 && (triggers & CONFIG_RETRY_ON_RETRIABLE_4XX);
	case JWKS_FETCH_OK:
	case JWKS_FETCH_FAIL_TOO_BIG:
	case JWKS_FETCH_FAIL_JWKS:
	case JWKS_FETCH_FAIL_CONFIG:
		break;
	}
	return false;
}

/* The longest backoff before retry number `retry`: min(maxInterval, baseInterval * 2^retry). */
static uint64_t jwks_fetch_backoff_cap(const struct config_retry *r, unsigned retry)
{
	uint64_t cap = r->base_interval_ms;
	unsigned i;

	for (i = 0; i < retry && cap < r->max_interval_ms; i++)
		cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
	return cap < r->max_interval_ms ? cap : r->max_interval_ms;
}

/* See jwks_fetch.h. */
uint64_t jwks_fetch_backoff_ms(const struct config_retry *r, unsigned retry, uint64_t rnd)
{
	uint64_t cap = jwks_fetch_backoff_cap(r, retry);

	return cap == UINT64_MAX ? rnd : rnd % (cap + 1);
}

/* Splits the URI (httpc_uri_parse) into f->is_https, host, port, authority and target. Returns 0, or
 * JG_ERR_INVAL with the reason in f->detail. The config loader has already checked the scheme and that
 * there is a host. */
static int jwks_fetch_parse_uri(struct jwks_fetcher *f, const char *uri)
{
	struct httpc_uri u;

	if (httpc_uri_parse(uri, &u, f->detail, sizeof(f->detail)) < 0)
		return JG_ERR_INVAL;
	f->is_https = u.is_https;
	memcpy(f->host, u.host, sizeof(f->host));
	memcpy(f->authority, u.authority, sizeof(f->authority));
	f->port = u.port;
	f->is_host_ip = u.is_host_ip;
	f->target = u.target; /* taken over: freed with the fetcher */
	return 0;
}

/* ---- end of an attempt ---- */

/* Drops what the attempt in flight holds: DNS query, connection, deadline, body. */
static void jwks_fetch_close_attempt(struct jwks_fetcher *f)
{
	if (f->dns_req != NULL) {
		/* Its callback still comes, with EVUTIL_EAI_CANCEL, and ignores it. */
		evdns_getaddrinfo_cancel(f->dns_req);
		f->dns_req = NULL;
	}
	httpc_cancel(f->req);
	f->req = NULL;
	event_del(&f->attempt_ev);
}

/* The first fetch cycle of f is over (success or retries spent): counts it for start-up. */
static void jwks_fetch_first_cycle_over(struct jwks_fetcher *f)
{
	struct jwks_fetch *jf = f->set;

	if (f->is_first_done)
		return;
	f->is_first_done = true;
	if (--jf->n_first_pending == 0 && jf->on_first_done != NULL)
		jf->on_first_done(jf->first_arg);
}

/* Ends a cycle: schedules the next fetch after `next_ms` and reports the first cycle. */
static void jwks_fetch_cycle_over(struct jwks_fetcher *f, uint64_t next_ms)
{
	jwks_fetch_set_state(f, JWKS_FETCH_IDLE);
	f->retry = 0;
	jwks_fetch_arm(&f->timer_ev, next_ms);
	jwks_fetch_first_cycle_over(f);
}

/* Logs f's counters at info level once a cycle is over: `outcome` is "fetch ok" or "fetch failed". The
 * line is bounded: JWKS_FETCH_FAILURE_KINDS names of at most 9 bytes and 20-digit numbers. */
static void jwks_fetch_log_stats(const struct jwks_fetcher *f, const char *outcome)
{
	const struct jwks_fetch_stats *st = &f->stats;
	char fails[JWKS_FETCH_FAILURE_KINDS * 32], age[32];
	size_t len = 0;
	int k;

	if (log_current_level < LOG_LEVEL_INFO)
		return;
	fails[0] = '\0';
	for (k = JWKS_FETCH_FAIL_CONNECT; k < JWKS_FETCH_FAILURE_KINDS && len < sizeof(fails); k++)
		len += (size_t)snprintf(fails + len, sizeof(fails) - len, "%s%s=%llu", len ? "," : "",
		                        jwks_fetch_failure_key((enum jwks_fetch_failure)k),
		                        (unsigned long long)st->failures[k]);
	if (st->has_keys)
		snprintf(age, sizeof(age), "%llus",
		         (unsigned long long)((jg_now_ms() - f->keys_at_ms) / 1000));
	else
		snprintf(age, sizeof(age), "none");
	log_info("jwks %s: %s (keys=%zu, ok=%llu fail{%s} kid_refetch=%llu, age=%s)", f->cfg->uri, outcome,
	         st->has_keys ? st->n_keys : 0, (unsigned long long)st->successes, fails,
	         (unsigned long long)st->kid_refetches, age);
}

/* Handles a failed attempt: retries after a backoff when the trigger list allows and retries remain,
 * otherwise ends the cycle keeping the previous keys (refetch after failedRefetchDuration). */
static void jwks_fetch_fail(struct jwks_fetcher *f, enum jwks_fetch_failure failure)
{
	const struct config_remote_jwks *r = f->cfg;
	char reason[JWKS_FETCH_DETAIL_MAX + 64];

	jwks_fetch_close_attempt(f);
	f->stats.failures[failure]++;
	f->stats.last_attempt_time = jg_wall_time();
	f->stats.last_outcome = failure;
	if (failure == JWKS_FETCH_FAIL_STATUS)
		snprintf(reason, sizeof(reason), "status %d", f->status);
	else
		snprintf(reason, sizeof(reason), "%s%s%s", jwks_fetch_failure_str(failure),
		         f->detail[0] ? ": " : "", f->detail);
	if (f->retry < r->retry.num_retries &&
	    jwks_fetch_should_retry(r->retry.triggers, failure, f->status)) {
		uint64_t delay = jwks_fetch_backoff_ms(&r->retry, f->retry, jg_rng_next(&f->set->rng));

		f->retry++;
		log_warn("jwks %s: fetch failed (%s); retry %u of %u in %llu ms", r->uri, reason, f->retry,
		         r->retry.num_retries, (unsigned long long)delay);
		jwks_fetch_set_state(f, JWKS_FETCH_BACKOFF);
		jwks_fetch_arm(&f->timer_ev, delay);
		return;
	}
	log_warn("jwks %s: fetch failed (%s)%s; %s; next fetch in %llu ms", r->uri, reason,
	         f->retry > 0 ? " after all retries" : "",
	         f->has_keys ? "keeping the previous keys" : "no keys: its providers answer 401",
	         (unsigned long long)r->failed_refetch_duration_ms);
	jwks_fetch_log_stats(f, "fetch failed");
	jwks_fetch_cycle_over(f, r->failed_refetch_duration_ms);
}

/* A complete 200 response (body, len): parse it, publish it to every slot, schedule the refresh.
 * A body that is not a usable JWKS fails the attempt (not retried; the old keys stay). */
static void jwks_fetch_succeed(struct jwks_fetcher *f, const char *body, size_t len)
{
	const struct config_remote_jwks *r = f->cfg;
	struct jwks *ks = NULL;
	enum jwt_status st;
	uint64_t next;
	size_t i;

	st = jwks_parse(body, len, r->uri, &ks);
	if (st != JWT_STATUS_OK) {
		snprintf(f->detail, sizeof(f->detail), "%s", jwt_status_message(st));
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_JWKS);
		return;
	}
	jwks_fetch_close_attempt(f);
	for (i = 0; i < f->n_slots; i++)
		auth_shared_set_keys(f->set->auth, f->slots[i], jwks_ref(ks));
	f->has_keys = true;
	jwks_unref(f->keys);
	f->keys = jwks_ref(ks);
	f->keys_at_ms = jg_now_ms();
	f->stats.successes++;
	f->stats.last_attempt_time = jg_wall_time();
	f->stats.last_outcome = JWKS_FETCH_OK;
	f->stats.has_keys = true;
	f->stats.n_keys = ks->n_keys;
	next = r->cache_duration_ms > 2 * JWKS_FETCH_REFRESH_EARLY_MS
	               ? r->cache_duration_ms - JWKS_FETCH_REFRESH_EARLY_MS
	               : r->cache_duration_ms;
	log_info("jwks %s: fetched %zu key%s for %s; next refresh in %llu ms", r->uri, ks->n_keys,
	         ks->n_keys == 1 ? "" : "s", f->providers, (unsigned long long)next);
	jwks_unref(ks);
	jwks_fetch_log_stats(f, "fetch ok");
	jwks_fetch_cycle_over(f, next);
}

/* httpc's report of the request in flight. */
static void jwks_fetch_on_response(void *arg, const struct httpc_result *res)
{
	struct jwks_fetcher *f = arg;
	static const enum jwks_fetch_failure kinds[] = {
	        [HTTPC_OK] = JWKS_FETCH_OK,
	        [HTTPC_FAIL_CONNECT] = JWKS_FETCH_FAIL_CONNECT,
	        [HTTPC_FAIL_TLS] = JWKS_FETCH_FAIL_TLS,
	        [HTTPC_FAIL_RESET] = JWKS_FETCH_FAIL_RESET,
	        [HTTPC_FAIL_TIMEOUT] = JWKS_FETCH_FAIL_TIMEOUT,
	        [HTTPC_FAIL_STATUS] = JWKS_FETCH_FAIL_STATUS,
	        [HTTPC_FAIL_TOO_BIG] = JWKS_FETCH_FAIL_TOO_BIG,
	};

	f->req = NULL; /* httpc frees it when this returns */
	if (f->state != JWKS_FETCH_REQUESTING)
		return;
	f->status = res->status;
	if (res->failure == HTTPC_OK) {
		jwks_fetch_succeed(f, res->body, res->body_len);
		return;
	}
	snprintf(f->detail, sizeof(f->detail), "%s", res->detail);
	jwks_fetch_fail(f, (size_t)res->failure < JG_ARRAY_SIZE(kinds) ? kinds[res->failure]
	                                                               : JWKS_FETCH_FAIL_RESET);
}

/* Sends the GET to f->addr through httpc (over TLS unless the fetcher is plain HTTP): a 200 with a body
 * of at most JWKS_MAX_TEXT_LEN bytes, within what is left of the connect timeout and requestTimeout. */
static void jwks_fetch_connect(struct jwks_fetcher *f)
{
	static const struct httpc_header accept = {"accept", "application/json"};
	struct httpc_request req;
	uint64_t now = jg_now_ms();

	jwks_fetch_set_state(f, JWKS_FETCH_REQUESTING);
	event_del(&f->attempt_ev);
	memset(&req, 0, sizeof(req));
	req.addr = (const struct sockaddr *)&f->addr;
	req.addr_len = f->addr_len;
	req.ssl_ctx = f->is_tls ? f->ssl_ctx : NULL;
	req.tls_name = f->verify_name;
	req.method = "GET";
	req.authority = f->authority;
	req.target = f->target;
	req.headers = &accept;
	req.n_headers = 1;
	req.connect_timeout_ms = f->connect_deadline_ms > now ? f->connect_deadline_ms - now : 0;
	req.timeout_ms = f->deadline_ms > now ? f->deadline_ms - now : 0;
	req.body_max = JWKS_MAX_TEXT_LEN;
	req.want_status = 200;
	f->req = httpc_start(f->set->base, &req, jwks_fetch_on_response, f);
	if (f->req == NULL) {
		snprintf(f->detail, sizeof(f->detail), "out of memory for the request");
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
	}
}

static void jwks_fetch_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static void jwks_fetch_on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct jwks_fetcher *f = arg;

	if (result == EVUTIL_EAI_CANCEL)
		return; /* f may be gone (shutdown) or busy with a newer attempt */
	f->dns_req = NULL;
	if (f->state != JWKS_FETCH_RESOLVING) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0 || res == NULL || res->ai_addrlen > sizeof(f->addr)) {
		snprintf(f->detail, sizeof(f->detail), "cannot resolve: %s",
		         result != 0 ? evutil_gai_strerror(result) : "no address");
		if (res != NULL)
			evutil_freeaddrinfo(res);
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
		return;
	}
	memcpy(&f->addr, res->ai_addr, res->ai_addrlen);
	f->addr_len = (socklen_t)res->ai_addrlen;
	evutil_freeaddrinfo(res);
	jwks_fetch_set_port(&f->addr, f->port);
	jwks_fetch_connect(f);
}

/* Looks up name for the next connect (the answer may come synchronously, from the hosts file). */
static void jwks_fetch_resolve(struct jwks_fetcher *f, const char *name)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	jwks_fetch_set_state(f, JWKS_FETCH_RESOLVING);
	if (f->set->dns == NULL) {
		snprintf(f->detail, sizeof(f->detail), "no DNS resolver");
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	req = evdns_getaddrinfo(f->set->dns, name, NULL, &hints, jwks_fetch_on_resolved, f);
	if (req != NULL && f->state == JWKS_FETCH_RESOLVING)
		f->dns_req = req;
}

static void jwks_fetch_on_attempt_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct jwks_fetcher *f = arg;

	/* Only the name lookup is bounded here: httpc bounds the request itself. */
	if (f->state == JWKS_FETCH_RESOLVING) {
		snprintf(f->detail, sizeof(f->detail), "connect timeout");
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
	}
}

/* Starts one attempt: picks the address (next backend endpoint, or the URI host) and resolves or
 * connects. Every way out ends in a connection, a retry or the end of the cycle. */
static void jwks_fetch_attempt(struct jwks_fetcher *f)
{
	uint64_t limit;

	f->detail[0] = '\0';
	f->status = 0;
	f->deadline_ms = jg_now_ms() + f->cfg->request_timeout_ms;
	limit = f->connect_timeout_ms < f->cfg->request_timeout_ms ? f->connect_timeout_ms
	                                                           : f->cfg->request_timeout_ms;
	f->connect_deadline_ms = jg_now_ms() + limit;
	if (f->is_unusable || (f->is_tls && f->ssl_ctx == NULL)) {
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONFIG);
		return;
	}
	jwks_fetch_arm(&f->attempt_ev, limit);
	if (f->backend != NULL) {
		const struct config_endpoint *ep;

		if (f->backend->n_endpoints == 0) {
			snprintf(f->detail, sizeof(f->detail), "backend %s has no endpoint",
			         f->backend->name);
			jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONFIG);
			return;
		}
		ep = &f->backend->endpoints[f->next_endpoint++ % f->backend->n_endpoints];
		f->port = ep->port;
		if (ep->kind == CONFIG_ENDPOINT_FQDN) {
			jwks_fetch_resolve(f, ep->host);
			return;
		}
		memcpy(&f->addr, &ep->addr, ep->addr_len);
		f->addr_len = ep->addr_len;
		jwks_fetch_set_port(&f->addr, ep->port);
		jwks_fetch_connect(f);
		return;
	}
	if (!f->is_host_ip) {
		jwks_fetch_resolve(f, f->host);
		return;
	}
	memset(&f->addr, 0, sizeof(f->addr));
	if (inet_pton(AF_INET, f->host, &((struct sockaddr_in *)&f->addr)->sin_addr) == 1) {
		f->addr.ss_family = AF_INET;
		f->addr_len = sizeof(struct sockaddr_in);
	} else {
		inet_pton(AF_INET6, f->host, &((struct sockaddr_in6 *)&f->addr)->sin6_addr);
		f->addr.ss_family = AF_INET6;
		f->addr_len = sizeof(struct sockaddr_in6);
	}
	jwks_fetch_set_port(&f->addr, f->port);
	jwks_fetch_connect(f);
}

/* ---- timers and the unknown-kid request ---- */

static void jwks_fetch_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct jwks_fetcher *f = arg;

	if (f->state == JWKS_FETCH_IDLE)
		f->retry = 0;
	else if (f->state != JWKS_FETCH_BACKOFF)
		return;
	jwks_fetch_attempt(f);
}

static void jwks_fetch_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct jwks_fetcher *f = arg;
	uint64_t now = jg_now_ms();

	atomic_store(&f->is_kick_pending, false);
	/* A fetch in flight (or waiting to retry) brings the newest keys anyway: no second one. */
	if (f->state != JWKS_FETCH_IDLE || !f->is_first_done)
		return;
	if (now < atomic_load(&f->kick_not_before_ms))
		return;
	atomic_store(&f->kick_not_before_ms, now + f->kick_cooldown_ms);
	f->stats.kid_refetches++;
	log_info("jwks %s: a token names a key the set does not have; refetching now (next such refetch in "
	         "%llu ms at the earliest)",
	         f->cfg->uri, (unsigned long long)f->kick_cooldown_ms);
	event_del(&f->timer_ev);
	f->retry = 0;
	jwks_fetch_attempt(f);
}

/* auth's refetch hook; runs on worker threads: one atomic read on the common path, and at most one
 * event activation until the control thread has handled it. */
static void jwks_fetch_refetch_hook(void *arg, int provider)
{
	struct jwks_fetch *jf = arg;
	struct jwks_fetcher *f;

	if (provider < 0 || (size_t)provider >= jf->n_providers || (f = jf->by_provider[provider]) == NULL)
		return;
	if (jg_now_ms() < atomic_load_explicit(&f->kick_not_before_ms, memory_order_relaxed))
		return;
	if (!atomic_exchange(&f->is_kick_pending, true))
		event_active(&f->kick_ev, EV_TIMEOUT, 1);
}

/* ---- set up and tear down ---- */

/* Sets up fetcher f for the remote JWKS r of provider p (start-up tier). */
static void jwks_fetch_init_fetcher(struct jwks_fetch *jf, struct jwks_fetcher *f,
                                    const struct config_remote_jwks *r, bool *needs_dns)
{
	struct in6_addr a6;
	struct in_addr a4;

	f->set = jf;
	f->cfg = r;
	f->backend = r->backend;
	f->state = JWKS_FETCH_IDLE;
	f->slots = jg_xcalloc(jf->n_providers ? jf->n_providers : 1, sizeof(int));
	f->connect_timeout_ms = f->backend != NULL && f->backend->connect_timeout_ms > 0
	                                ? f->backend->connect_timeout_ms
	                                : JWKS_FETCH_CONNECT_TIMEOUT_MS;
	f->kick_cooldown_ms = r->failed_refetch_duration_ms > JWKS_FETCH_KICK_COOLDOWN_MS
	                              ? r->failed_refetch_duration_ms
	                              : JWKS_FETCH_KICK_COOLDOWN_MS;
	atomic_init(&f->is_kick_pending, false);
	atomic_init(&f->kick_not_before_ms, 0);
	evtimer_assign(&f->timer_ev, jf->base, jwks_fetch_on_timer, f);
	evtimer_assign(&f->attempt_ev, jf->base, jwks_fetch_on_attempt_timeout, f);
	event_assign(&f->kick_ev, jf->base, -1, 0, jwks_fetch_on_kick, f);
	if (jwks_fetch_parse_uri(f, r->uri) < 0) {
		log_error("jwks %s: %s; its providers will answer 401", r->uri, f->detail);
		f->is_unusable = true;
		return;
	}
	if (f->backend != NULL && f->backend->tls.enabled && f->backend->tls.hostname != NULL)
		f->verify_name = f->backend->tls.hostname;
	else
		f->verify_name = f->host;
	f->is_verify_ip =
	        inet_pton(AF_INET, f->verify_name, &a4) == 1 || inet_pton(AF_INET6, f->verify_name, &a6) == 1;
	/* https is never downgraded; http is upgraded by a backend whose tls block asks for TLS. */
	f->is_tls = f->is_https || (f->backend != NULL && f->backend->tls.enabled);
	if (f->is_tls) {
		char who[JWKS_FETCH_TARGET_MAX + 8];

		snprintf(who, sizeof(who), "jwks %s", r->uri);
		f->ssl_ctx = httpc_tls_ctx_new(who, f->backend, NULL, NULL);
		if (f->ssl_ctx == NULL)
			log_error("jwks %s: no TLS context; its providers will answer 401", r->uri);
	} else {
		log_warn("jwks %s: plain HTTP without TLS: nothing authenticates the key set against the "
		         "network",
		         r->uri);
	}
	if (f->backend != NULL) {
		size_t i;

		for (i = 0; i < f->backend->n_endpoints; i++)
			if (f->backend->endpoints[i].kind == CONFIG_ENDPOINT_FQDN)
				*needs_dns = true;
	} else if (!f->is_host_ip) {
		*needs_dns = true;
	}
}

static void jwks_fetch_add_provider_name(struct jwks_fetcher *f, const struct config_policy *pol,
                                         const struct config_provider *p)
{
	size_t len = strlen(f->providers);

	if (len < sizeof(f->providers) - 1)
		snprintf(f->providers + len, sizeof(f->providers) - len, "%s%s/%s", len ? ", " : "",
		         pol->name, p->name);
}

struct jwks_fetch *jwks_fetch_new(struct event_base *base, const struct config *cfg, struct auth_shared *auth)
{
	struct jwks_fetch *jf = jg_xcalloc(1, sizeof(*jf));
	bool needs_dns = false;
	size_t i, j, k;

	jf->base = base;
	jf->auth = auth;
	jf->n_providers = cfg->n_providers;
	jf->by_provider = jg_xcalloc(jf->n_providers ? jf->n_providers : 1, sizeof(*jf->by_provider));
	jf->fetchers = jg_xcalloc(jf->n_providers ? jf->n_providers : 1, sizeof(*jf->fetchers));
	jg_rng_seed(&jf->rng, (uint64_t)(uintptr_t)jf);
	for (i = 0; i < cfg->n_policies; i++) {
		const struct config_policy *pol = &cfg->policies[i];

		for (j = 0; j < pol->n_providers; j++) {
			const struct config_provider *p = &pol->providers[j];
			const struct config_remote_jwks *r = &p->remote;
			struct jwks_fetcher *f = NULL;

			if (p->jwks_source != CONFIG_JWKS_REMOTE || p->index < 0 ||
			    (size_t)p->index >= jf->n_providers)
				continue;
			/* Same URI through the same backend: one fetcher for all (settings of the first). */
			for (k = 0; k < jf->n_fetchers && f == NULL; k++)
				if (strcmp(jf->fetchers[k].cfg->uri, r->uri) == 0 &&
				    jf->fetchers[k].backend == r->backend)
					f = &jf->fetchers[k];
			if (f == NULL) {
				f = &jf->fetchers[jf->n_fetchers++];
				jwks_fetch_init_fetcher(jf, f, r, &needs_dns);
			}
			f->slots[f->n_slots++] = p->index;
			jwks_fetch_add_provider_name(f, pol, p);
			jf->by_provider[p->index] = f;
		}
	}
	if (needs_dns) {
		jf->dns = httpc_dns_new(base);
		if (jf->dns == NULL)
			log_error("jwks: cannot create a DNS resolver; remote JWKS named by host will not be "
			          "fetched");
	}
	if (jf->n_fetchers > 0)
		auth_shared_set_refetch_hook(auth, jwks_fetch_refetch_hook, jf);
	return jf;
}

size_t jwks_fetch_count(const struct jwks_fetch *jf)
{
	return jf->n_fetchers;
}

int jwks_fetch_get_stats(const struct jwks_fetch *jf, size_t i, const char **uri,
                         struct jwks_fetch_stats *out)
{
	const struct jwks_fetcher *f;

	if (i >= jf->n_fetchers)
		return JG_ERR_INVAL;
	f = &jf->fetchers[i];
	*out = f->stats;
	out->keys_age_ms = f->stats.has_keys ? jg_now_ms() - f->keys_at_ms : 0;
	out->next_fetch_ms = -1;
	{
		struct timeval when, now;

		/* libevent reports the deadline on the clock of event_base_gettimeofday_cached. */
		if (event_initialized(&f->timer_ev) && event_pending(&f->timer_ev, EV_TIMEOUT, &when) &&
		    event_base_gettimeofday_cached(jf->base, &now) == 0) {
			int64_t ms = ((int64_t)when.tv_sec - now.tv_sec) * 1000 +
			             ((int64_t)when.tv_usec - now.tv_usec) / 1000;

			out->next_fetch_ms = ms > 0 ? ms : 0;
		}
	}
	if (uri != NULL)
		*uri = f->cfg->uri;
	return 0;
}

int jwks_fetch_index_of_provider(const struct jwks_fetch *jf, int provider)
{
	if (jf == NULL || provider < 0 || (size_t)provider >= jf->n_providers ||
	    jf->by_provider[provider] == NULL)
		return -1;
	return (int)(jf->by_provider[provider] - jf->fetchers);
}

void jwks_fetch_start(struct jwks_fetch *jf, void (*on_first_done)(void *arg), void *arg)
{
	size_t i;

	assert(!jf->is_started);
	jf->is_started = true;
	jf->on_first_done = on_first_done;
	jf->first_arg = arg;
	jf->n_first_pending = jf->n_fetchers;
	if (jf->n_fetchers == 0) {
		if (on_first_done != NULL)
			on_first_done(arg);
		return;
	}
	for (i = 0; i < jf->n_fetchers; i++) {
		log_info("jwks %s: first fetch for %s", jf->fetchers[i].cfg->uri, jf->fetchers[i].providers);
		jwks_fetch_attempt(&jf->fetchers[i]);
	}
}

bool jwks_fetch_first_done(const struct jwks_fetch *jf)
{
	return jf->is_started && jf->n_first_pending == 0;
}

uint64_t jwks_fetch_startup_bound_ms(const struct jwks_fetch *jf)
{
	uint64_t bound = 0;
	size_t i;
	unsigned k;

	for (i = 0; i < jf->n_fetchers; i++) {
		const struct config_remote_jwks *r = jf->fetchers[i].cfg;
		uint64_t t = r->request_timeout_ms;

		for (k = 0; k < r->retry.num_retries && t < JWKS_FETCH_STARTUP_MAX_MS; k++)
			t += r->request_timeout_ms + jwks_fetch_backoff_cap(&r->retry, k);
		if (t > bound)
			bound = t;
	}
	return bound < JWKS_FETCH_STARTUP_MAX_MS ? bound : JWKS_FETCH_STARTUP_MAX_MS;
}

/* Stops every fetcher of jf: connections, DNS queries and timers; the state becomes CLOSED, so a
 * callback or a kick that still arrives returns at once. */
static void jwks_fetch_stop_all(struct jwks_fetch *jf)
{
	size_t i;

	for (i = 0; i < jf->n_fetchers; i++) {
		struct jwks_fetcher *f = &jf->fetchers[i];

		jwks_fetch_close_attempt(f);
		if (f->state != JWKS_FETCH_CLOSED)
			jwks_fetch_set_state(f, JWKS_FETCH_CLOSED);
		event_del(&f->timer_ev);
		event_del(&f->kick_ev);
	}
}

/* See jwks_fetch.h. */
void jwks_fetch_replace(struct jwks_fetch *jf, struct jwks_fetch *old)
{
	size_t i, k;

	if (old == NULL)
		return;
	for (i = 0; i < jf->n_fetchers; i++) {
		struct jwks_fetcher *f = &jf->fetchers[i];

		for (k = 0; k < old->n_fetchers; k++) {
			const struct jwks_fetcher *o = &old->fetchers[k];
			const char *ob = o->backend != NULL ? o->backend->name : NULL;
			const char *nb = f->backend != NULL ? f->backend->name : NULL;
			size_t j;

			if (strcmp(o->cfg->uri, f->cfg->uri) != 0 || (ob == NULL) != (nb == NULL) ||
			    (ob != NULL && strcmp(ob, nb) != 0))
				continue;
			/* The counters go on (an admin endpoint's counters must not drop at a reload). */
			f->stats = o->stats;
			f->keys_at_ms = o->keys_at_ms;
			if (o->keys == NULL)
				break;
			for (j = 0; j < f->n_slots; j++)
				auth_shared_set_keys(jf->auth, f->slots[j], jwks_ref(o->keys));
			jwks_unref(f->keys);
			f->keys = jwks_ref(o->keys);
			f->has_keys = true;
			break;
		}
	}
	/* The old set may still be reached by the hook of the old key sets (requests in flight on the old
	 * configuration): it stays allocated, stopped, until jwks_fetch_free. */
	jwks_fetch_stop_all(old);
	if (old->dns != NULL) {
		event_base_loop(old->base, EVLOOP_NONBLOCK);
		evdns_base_free(old->dns, 0);
		old->dns = NULL;
	}
	for (i = 0; i < old->n_fetchers; i++) {
		SSL_CTX_free(old->fetchers[i].ssl_ctx);
		old->fetchers[i].ssl_ctx = NULL;
	}
	old->is_retired = true;
	old->auth = NULL;
	jf->retired = old;
}

void jwks_fetch_free(struct jwks_fetch *jf)
{
	size_t i;

	if (jf == NULL)
		return;
	jwks_fetch_free(jf->retired);
	if (jf->n_fetchers > 0 && !jf->is_retired)
		auth_shared_set_refetch_hook(jf->auth, NULL, NULL);
	jwks_fetch_stop_all(jf);
	if (jf->dns != NULL) {
		/* Cancelled queries report EVUTIL_EAI_CANCEL from a deferred callback that frees them. */
		event_base_loop(jf->base, EVLOOP_NONBLOCK);
		evdns_base_free(jf->dns, 0);
		jf->dns = NULL;
	}
	for (i = 0; i < jf->n_fetchers; i++) {
		SSL_CTX_free(jf->fetchers[i].ssl_ctx);
		free(jf->fetchers[i].target);
		free(jf->fetchers[i].slots);
		jwks_unref(jf->fetchers[i].keys);
	}
	free(jf->fetchers);
	free(jf->by_provider);
	free(jf);
}
