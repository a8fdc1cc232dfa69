/* jwks_fetch.c: remote JWKS over HTTPS (or plain HTTP) on the control thread (see jwks_fetch.h for the
 * behaviour).
 *
 * A fetcher runs one attempt at a time through
 *   IDLE -> [RESOLVING] -> CONNECTING -> RECEIVING -> IDLE (timer: refresh or failed refetch)
 *                                                  \-> BACKOFF -> [RESOLVING] -> CONNECTING ...
 * and owns one connection at most, so a fetcher never has two fetches in flight whatever the workers
 * ask. Fetchers live as long as the configuration; nothing is freed from inside a callback except the
 * bufferevent (which libevent allows) and never while llhttp is running on its bytes.
 */
#include "jwtgate/jwks_fetch.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "jwtgate/common.h"
#include "jwtgate/jwk.h"
#include "jwtgate/jwt.h"
#include "jwtgate/log.h"

#define JWKS_FETCH_HOST_MAX   255  /* DNS name or IP literal of the URI */
#define JWKS_FETCH_TARGET_MAX 4096 /* path and query of the URI */
#define JWKS_FETCH_MAX_1XX    8    /* interim responses skipped before the real one */
#define JWKS_FETCH_DETAIL_MAX 256  /* failure detail kept for the log line */

enum jwks_fetch_state {
	JWKS_FETCH_IDLE = 0,   /* not fetching: waiting for the refresh or refetch timer (or not started) */
	JWKS_FETCH_RESOLVING,  /* evdns query for the connect address */
	JWKS_FETCH_CONNECTING, /* TCP connect and, over TLS, the handshake */
	JWKS_FETCH_RECEIVING,  /* request written, reading the response */
	JWKS_FETCH_BACKOFF,    /* waiting before a retry */
	JWKS_FETCH_CLOSED,     /* shut down; every callback that still arrives returns at once */
};

static const char *jwks_fetch_state_str(enum jwks_fetch_state s)
{
	static const char *const names[] = {"IDLE",      "RESOLVING", "CONNECTING",
	                                    "RECEIVING", "BACKOFF",   "CLOSED"};

	return (size_t)s < JG_ARRAY_SIZE(names) ? names[s] : "?";
}

#define JF_BIT(s) (1u << (s))
/* Legal transitions, indexed by the state left. */
static const unsigned jwks_fetch_next_states[] = {
        [JWKS_FETCH_IDLE] = JF_BIT(JWKS_FETCH_RESOLVING) | JF_BIT(JWKS_FETCH_CONNECTING) |
                            JF_BIT(JWKS_FETCH_BACKOFF) | JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_RESOLVING] = JF_BIT(JWKS_FETCH_CONNECTING) | JF_BIT(JWKS_FETCH_BACKOFF) |
                                 JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_CONNECTING] = JF_BIT(JWKS_FETCH_RECEIVING) | JF_BIT(JWKS_FETCH_BACKOFF) |
                                  JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_RECEIVING] =
                JF_BIT(JWKS_FETCH_BACKOFF) | JF_BIT(JWKS_FETCH_IDLE) | JF_BIT(JWKS_FETCH_CLOSED),
        [JWKS_FETCH_BACKOFF] = JF_BIT(JWKS_FETCH_RESOLVING) | JF_BIT(JWKS_FETCH_CONNECTING) |
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
	struct event attempt_ev; /* connect deadline, then request deadline */
	struct event kick_ev;    /* activated by workers: unknown kid */
	atomic_bool is_kick_pending;
	atomic_uint_fast64_t kick_not_before_ms;

	/* the attempt in flight */
	struct evdns_getaddrinfo_request *dns_req;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct bufferevent *bev;
	llhttp_t parser;
	struct jg_buf body; /* bounded by JWKS_MAX_TEXT_LEN */
	size_t head_bytes;  /* bounded by JWKS_FETCH_HEAD_MAX */
	int status;
	unsigned n_1xx;
	bool is_complete;
	enum jwks_fetch_failure parse_failure; /* set by a parser callback that stopped the parse */
	uint64_t deadline_ms;                  /* requestTimeout of this attempt */
	unsigned retry;                        /* retries made in this cycle */
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

static llhttp_settings_t jwks_fetch_parser_settings;

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

/* Splits an https:// or http:// URI into f->is_https, host, port, authority and target. Returns 0, or
 * JG_ERR_INVAL with a reason in f->detail for another scheme, userinfo, a bad port, an over-long host or
 * target, or bytes that cannot go on a request line. The config loader has already checked the scheme and
 * that there is a host. */
static int jwks_fetch_parse_uri(struct jwks_fetcher *f, const char *uri)
{
	const char *p, *auth_end, *host, *host_end, *port_s = NULL, *q;
	struct in6_addr a6;
	struct in_addr a4;
	size_t hlen, tlen;

	if (strncmp(uri, "https://", 8) == 0)
		f->is_https = true;
	else if (strncmp(uri, "http://", 7) == 0)
		f->is_https = false;
	else
		goto bad_scheme;
	p = uri + (f->is_https ? 8 : 7);
	auth_end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(auth_end - p)) != NULL) {
		snprintf(f->detail, sizeof(f->detail), "userinfo in the URI is not supported");
		return JG_ERR_INVAL;
	}
	if ((size_t)(auth_end - p) >= sizeof(f->authority)) {
		snprintf(f->detail, sizeof(f->detail), "URI host too long");
		return JG_ERR_INVAL;
	}
	if (*p == '[') {
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (host_end == NULL)
			goto bad_host;
		if (host_end + 1 < auth_end) {
			if (host_end[1] != ':')
				goto bad_host;
			port_s = host_end + 2;
		}
	} else {
		host = p;
		host_end = memchr(host, ':', (size_t)(auth_end - host));
		if (host_end != NULL)
			port_s = host_end + 1;
		else
			host_end = auth_end;
	}
	hlen = (size_t)(host_end - host);
	if (hlen == 0 || hlen > JWKS_FETCH_HOST_MAX)
		goto bad_host;
	memcpy(f->host, host, hlen);
	f->host[hlen] = '\0';
	for (q = f->host; *q != '\0'; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			goto bad_host;
	f->port = f->is_https ? 443 : 80;
	if (port_s != NULL) {
		unsigned long v = 0;

		if (port_s == auth_end || auth_end - port_s > 5)
			goto bad_port;
		for (q = port_s; q < auth_end; q++) {
			if (*q < '0' || *q > '9')
				goto bad_port;
			v = v * 10 + (unsigned long)(*q - '0');
		}
		if (v == 0 || v > 65535)
			goto bad_port;
		f->port = (uint16_t)v;
	}
	memcpy(f->authority, p, (size_t)(auth_end - p));
	f->authority[auth_end - p] = '\0';
	f->is_host_ip = inet_pton(AF_INET, f->host, &a4) == 1 || inet_pton(AF_INET6, f->host, &a6) == 1;
	if (*p == '[' && inet_pton(AF_INET6, f->host, &a6) != 1)
		goto bad_host;
	/* target: path and query; the fragment never goes on the wire (RFC 9110 section 4.2.4). */
	tlen = strcspn(auth_end, "#");
	if (tlen >= JWKS_FETCH_TARGET_MAX) {
		snprintf(f->detail, sizeof(f->detail), "URI path too long");
		return JG_ERR_INVAL;
	}
	for (q = auth_end; q < auth_end + tlen; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
			snprintf(f->detail, sizeof(f->detail), "URI path has a byte that cannot be sent");
			return JG_ERR_INVAL;
		}
	f->target = jg_xmalloc(tlen + 2);
	if (tlen == 0 || auth_end[0] == '?') {
		f->target[0] = '/';
		memcpy(f->target + 1, auth_end, tlen);
		f->target[tlen + 1] = '\0';
	} else {
		memcpy(f->target, auth_end, tlen);
		f->target[tlen] = '\0';
	}
	return 0;
bad_scheme:
	snprintf(f->detail, sizeof(f->detail), "not an https:// or http:// URI");
	return JG_ERR_INVAL;
bad_host:
	snprintf(f->detail, sizeof(f->detail), "bad host in the URI");
	return JG_ERR_INVAL;
bad_port:
	snprintf(f->detail, sizeof(f->detail), "bad port in the URI");
	return JG_ERR_INVAL;
}

/* Builds the TLS client context of a fetcher: TLS 1.2+, peer verification with the backend's CA bundle
 * (files and inline PEM) or the system store. Returns NULL (logged) when the bundle cannot be loaded. */
static SSL_CTX *jwks_fetch_ssl_ctx_new(const char *uri, const struct config_backend *be)
{
	const struct config_tls_validation *tls = be != NULL && be->tls.enabled ? &be->tls : NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	size_t i;

	if (ctx == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (tls == NULL || tls->well_known_system) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			log_error("jwks %s: cannot load the system CA store", uri);
			goto fail;
		}
		return ctx;
	}
	for (i = 0; i < tls->n_ca_files; i++) {
		if (SSL_CTX_load_verify_locations(ctx, tls->ca_files[i], NULL) != 1) {
			log_error("jwks %s: caCertificateRefs file %s: no usable certificate", uri,
			          tls->ca_files[i]);
			goto fail;
		}
	}
	for (i = 0; i < tls->n_ca_inline; i++) {
		BIO *bio = BIO_new_mem_buf(tls->ca_inline[i], -1);
		X509_STORE *store = SSL_CTX_get_cert_store(ctx);
		X509 *x;
		int n = 0;

		if (bio == NULL)
			goto fail;
		while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			if (X509_STORE_add_cert(store, x) == 1)
				n++;
			X509_free(x);
		}
		BIO_free(bio);
		ERR_clear_error(); /* the end of the PEM text leaves a "no start line" error */
		if (n == 0) {
			log_error("jwks %s: caCertificateRefs[%zu] inline: no usable certificate", uri, i);
			goto fail;
		}
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
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
	if (f->bev != NULL) {
		bufferevent_free(f->bev); /* BEV_OPT_CLOSE_ON_FREE: the socket and the SSL go with it */
		f->bev = NULL;
	}
	event_del(&f->attempt_ev);
	jg_buf_free(&f->body);
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

/* A complete 200 response is in f->body: parse it, publish it to every slot, schedule the refresh.
 * A body that is not a usable JWKS fails the attempt (not retried; the old keys stay). */
static void jwks_fetch_succeed(struct jwks_fetcher *f)
{
	const struct config_remote_jwks *r = f->cfg;
	struct jwks *ks = NULL;
	enum jwt_status st;
	uint64_t next;
	size_t i;

	st = jwks_parse(f->body.data != NULL ? f->body.data : "", f->body.len, r->uri, &ks);
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

/* ---- HTTP response (llhttp callbacks; f is parser.data) ---- */

static int jwks_fetch_count_head(llhttp_t *p, size_t len)
{
	struct jwks_fetcher *f = p->data;

	f->head_bytes += len;
	if (f->head_bytes > JWKS_FETCH_HEAD_MAX) {
		f->parse_failure = JWKS_FETCH_FAIL_RESET;
		snprintf(f->detail, sizeof(f->detail), "response head larger than %d bytes",
		         JWKS_FETCH_HEAD_MAX);
		return -1;
	}
	return 0;
}

static int jwks_fetch_on_status(llhttp_t *p, const char *at, size_t len)
{
	return jwks_fetch_count_head(p, len);
}

static int jwks_fetch_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	return jwks_fetch_count_head(p, len + 4); /* ": " and CRLF count too */
}

static int jwks_fetch_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	return jwks_fetch_count_head(p, len);
}

static int jwks_fetch_on_headers_complete(llhttp_t *p)
{
	struct jwks_fetcher *f = p->data;

	f->status = llhttp_get_status_code(p);
	if (f->status >= 100 && f->status < 200 && f->status != 101) {
		if (++f->n_1xx > JWKS_FETCH_MAX_1XX) {
			f->parse_failure = JWKS_FETCH_FAIL_RESET;
			snprintf(f->detail, sizeof(f->detail), "too many interim responses");
			return -1;
		}
		return 0;
	}
	if (f->status != 200) {
		f->parse_failure = JWKS_FETCH_FAIL_STATUS;
		return -1;
	}
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > JWKS_MAX_TEXT_LEN) {
		f->parse_failure = JWKS_FETCH_FAIL_TOO_BIG;
		snprintf(f->detail, sizeof(f->detail), "Content-Length %llu over %d bytes",
		         (unsigned long long)p->content_length, JWKS_MAX_TEXT_LEN);
		return -1;
	}
	return 0;
}

static int jwks_fetch_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct jwks_fetcher *f = p->data;
	int rc = jg_buf_append(&f->body, at, len);

	if (rc == JG_ERR_LIMIT) {
		f->parse_failure = JWKS_FETCH_FAIL_TOO_BIG;
		snprintf(f->detail, sizeof(f->detail), "body over %d bytes", JWKS_MAX_TEXT_LEN);
		return -1;
	}
	if (rc < 0) {
		f->parse_failure = JWKS_FETCH_FAIL_RESET;
		snprintf(f->detail, sizeof(f->detail), "out of memory for the body");
		return -1;
	}
	return 0;
}

static int jwks_fetch_on_message_complete(llhttp_t *p)
{
	struct jwks_fetcher *f = p->data;

	if (f->status < 200) { /* an interim response: the real one follows */
		f->status = 0;
		f->head_bytes = 0;
		return 0;
	}
	f->is_complete = true;
	return HPE_PAUSED; /* one response per connection; whatever follows is ignored */
}

/* Runs the parser over what arrived. Returns 0 while more is needed or once the response is complete,
 * or a failure kind (with f->detail) when the response is unusable. */
static enum jwks_fetch_failure jwks_fetch_parse(struct jwks_fetcher *f, struct evbuffer *in)
{
	size_t n;

	while (!f->is_complete && (n = evbuffer_get_contiguous_space(in)) > 0) {
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		llhttp_errno_t err = llhttp_execute(&f->parser, data, n);

		if (err == HPE_PAUSED && f->is_complete)
			break;
		if (err != HPE_OK) {
			if (f->parse_failure != JWKS_FETCH_OK)
				return f->parse_failure;
			snprintf(f->detail, sizeof(f->detail), "malformed response: %s (%s)",
			         llhttp_errno_name(err),
			         llhttp_get_error_reason(&f->parser) ? llhttp_get_error_reason(&f->parser)
			                                             : "");
			return JWKS_FETCH_FAIL_RESET;
		}
		evbuffer_drain(in, n);
	}
	if (f->is_complete)
		evbuffer_drain(in, evbuffer_get_length(in));
	return JWKS_FETCH_OK;
}

/* ---- connection callbacks ---- */

static void jwks_fetch_on_read(struct bufferevent *bev, void *arg)
{
	struct jwks_fetcher *f = arg;
	enum jwks_fetch_failure failure;

	if (f->state != JWKS_FETCH_RECEIVING)
		return;
	failure = jwks_fetch_parse(f, bufferevent_get_input(bev));
	if (failure != JWKS_FETCH_OK)
		jwks_fetch_fail(f, failure);
	else if (f->is_complete)
		jwks_fetch_succeed(f);
}

/* Writes the OpenSSL and socket reasons of a connection failure into f->detail. */
static void jwks_fetch_conn_detail(struct jwks_fetcher *f, struct bufferevent *bev, const char *what)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e = bufferevent_get_openssl_error(bev);
	int sock_err = EVUTIL_SOCKET_ERROR();
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	char ebuf[160] = "";

	/* libevent records SSL_get_error()'s SSL_ERROR_SYSCALL itself (not an OpenSSL error code): the
	 * socket's error says more. */
	if (e == SSL_ERROR_SYSCALL)
		e = 0;
	if (e != 0)
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
	while (bufferevent_get_openssl_error(bev) != 0) /* drain the rest */
		;
	if (vr != X509_V_OK)
		snprintf(f->detail, sizeof(f->detail), "%s: certificate verify failed: %s", what,
		         X509_verify_cert_error_string(vr));
	else if (e != 0)
		snprintf(f->detail, sizeof(f->detail), "%s: %s", what, ebuf);
	else
		snprintf(f->detail, sizeof(f->detail), "%s: %s", what,
		         sock_err != 0 ? evutil_socket_error_to_string(sock_err) : "closed");
}

/* Whether a connection that failed before its request went out got as far as TLS: the ClientHello was
 * written (so TCP was up) or the peer's certificate was refused. False for a plain connection. */
static bool jwks_fetch_is_tls_failure(struct bufferevent *bev)
{
	SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
	BIO *wbio;

	if (ssl == NULL)
		return false;
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return true;
	wbio = SSL_get_wbio(ssl);
	return wbio != NULL && BIO_number_written(wbio) > 0;
}

static void jwks_fetch_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct jwks_fetcher *f = arg;
	enum jwks_fetch_failure failure;

	if (f->state == JWKS_FETCH_CLOSED)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		struct evbuffer *out = bufferevent_get_output(bev);
		uint64_t now = jg_now_ms();

		if (f->state != JWKS_FETCH_CONNECTING)
			return;
		jwks_fetch_set_state(f, JWKS_FETCH_RECEIVING);
		event_del(&f->attempt_ev);
		jwks_fetch_arm(&f->attempt_ev, f->deadline_ms > now ? f->deadline_ms - now : 0);
		if (evbuffer_add_printf(out,
		                        "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
		                        "User-Agent: jwtgate/" JG_VERSION "\r\nConnection: close\r\n\r\n",
		                        f->target, f->authority) < 0) {
			snprintf(f->detail, sizeof(f->detail), "out of memory for the request");
			jwks_fetch_fail(f, JWKS_FETCH_FAIL_RESET);
		}
		return;
	}
	if (f->state == JWKS_FETCH_CONNECTING) {
		if (jwks_fetch_is_tls_failure(bev)) {
			jwks_fetch_conn_detail(f, bev, "TLS handshake");
			jwks_fetch_fail(f, JWKS_FETCH_FAIL_TLS);
		} else {
			jwks_fetch_conn_detail(f, bev, "connect");
			jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
		}
		return;
	}
	if (f->state != JWKS_FETCH_RECEIVING)
		return;
	/* Bytes that came with the close are parsed first; then EOF may end a close-delimited body. */
	failure = jwks_fetch_parse(f, bufferevent_get_input(bev));
	if (failure == JWKS_FETCH_OK && !f->is_complete && (what & BEV_EVENT_EOF)) {
		llhttp_errno_t err = llhttp_finish(&f->parser);

		if (!f->is_complete && err != HPE_OK && f->parse_failure != JWKS_FETCH_OK)
			failure = f->parse_failure;
	}
	if (failure == JWKS_FETCH_OK && f->is_complete) {
		jwks_fetch_succeed(f);
		return;
	}
	if (failure == JWKS_FETCH_OK) {
		if (what & BEV_EVENT_EOF)
			snprintf(f->detail, sizeof(f->detail),
			         "connection closed before a complete response");
		else
			jwks_fetch_conn_detail(f, bev, "connection error");
		failure = JWKS_FETCH_FAIL_RESET;
	}
	jwks_fetch_fail(f, failure);
}

/* Opens the connection to f->addr, over TLS unless the fetcher is plain HTTP; the request goes out once
 * the TCP connection (and the TLS handshake) is done. */
static void jwks_fetch_connect(struct jwks_fetcher *f)
{
	X509_VERIFY_PARAM *vp;
	SSL *ssl;

	jwks_fetch_set_state(f, JWKS_FETCH_CONNECTING);
	if (!f->is_tls) {
		f->bev = bufferevent_socket_new(f->set->base, -1,
		                                BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (f->bev == NULL) {
			snprintf(f->detail, sizeof(f->detail), "out of memory for the connection");
			jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
			return;
		}
		goto start;
	}
	if (f->ssl_ctx == NULL) {
		snprintf(f->detail, sizeof(f->detail), "no TLS context (CA bundle not loaded)");
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONFIG);
		return;
	}
	ssl = SSL_new(f->ssl_ctx);
	if (ssl == NULL)
		goto nomem;
	vp = SSL_get0_param(ssl);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (f->is_verify_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, f->verify_name) != 1)
			goto ssl_fail;
	} else if (X509_VERIFY_PARAM_set1_host(vp, f->verify_name, 0) != 1 ||
	           SSL_set_tlsext_host_name(ssl, f->verify_name) != 1) {
		goto ssl_fail;
	}
	f->bev = bufferevent_openssl_socket_new(f->set->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (f->bev == NULL)
		goto ssl_fail;
	/* A close-delimited body ends at a TCP close; a truncated JWKS fails to parse anyway. */
	bufferevent_openssl_set_allow_dirty_shutdown(f->bev, 1);
start:
	bufferevent_setcb(f->bev, jwks_fetch_on_read, NULL, jwks_fetch_on_event, f);
	bufferevent_enable(f->bev, EV_READ | EV_WRITE);
	llhttp_init(&f->parser, HTTP_RESPONSE, &jwks_fetch_parser_settings);
	f->parser.data = f;
	if (bufferevent_socket_connect(f->bev, (struct sockaddr *)&f->addr, (int)f->addr_len) == -1) {
		snprintf(f->detail, sizeof(f->detail), "connect: %s", strerror(errno));
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
	}
	return;
ssl_fail:
	SSL_free(ssl);
nomem:
	ERR_clear_error();
	snprintf(f->detail, sizeof(f->detail), "cannot set up TLS");
	jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
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

	if (f->state == JWKS_FETCH_CONNECTING && jwks_fetch_is_tls_failure(f->bev)) {
		snprintf(f->detail, sizeof(f->detail), "TLS handshake timeout");
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_TLS);
	} else if (f->state == JWKS_FETCH_RESOLVING || f->state == JWKS_FETCH_CONNECTING) {
		snprintf(f->detail, sizeof(f->detail), "connect timeout");
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_CONNECT);
	} else if (f->state == JWKS_FETCH_RECEIVING) {
		snprintf(f->detail, sizeof(f->detail), "no complete response within %llu ms",
		         (unsigned long long)f->cfg->request_timeout_ms);
		jwks_fetch_fail(f, JWKS_FETCH_FAIL_TIMEOUT);
	}
}

/* Starts one attempt: picks the address (next backend endpoint, or the URI host) and resolves or
 * connects. Every way out ends in a connection, a retry or the end of the cycle. */
static void jwks_fetch_attempt(struct jwks_fetcher *f)
{
	uint64_t limit;

	f->detail[0] = '\0';
	f->status = 0;
	f->n_1xx = 0;
	f->head_bytes = 0;
	f->is_complete = false;
	f->parse_failure = JWKS_FETCH_OK;
	f->body.len = 0;
	f->body.max = JWKS_MAX_TEXT_LEN;
	f->deadline_ms = jg_now_ms() + f->cfg->request_timeout_ms;
	limit = f->connect_timeout_ms < f->cfg->request_timeout_ms ? f->connect_timeout_ms
	                                                           : f->cfg->request_timeout_ms;
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

static void jwks_fetch_settings_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	llhttp_settings_init(&jwks_fetch_parser_settings);
	jwks_fetch_parser_settings.on_status = jwks_fetch_on_status;
	jwks_fetch_parser_settings.on_header_field = jwks_fetch_on_header_field;
	jwks_fetch_parser_settings.on_header_value = jwks_fetch_on_header_value;
	jwks_fetch_parser_settings.on_headers_complete = jwks_fetch_on_headers_complete;
	jwks_fetch_parser_settings.on_body = jwks_fetch_on_body;
	jwks_fetch_parser_settings.on_message_complete = jwks_fetch_on_message_complete;
}

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
		f->ssl_ctx = jwks_fetch_ssl_ctx_new(r->uri, f->backend);
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

	jwks_fetch_settings_init();
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
		jf->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		                                       EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (jf->dns == NULL) /* no usable resolv.conf: the hosts file still answers */
			jf->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (jf->dns != NULL)
			evdns_base_load_hosts(jf->dns, NULL);
		else
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
