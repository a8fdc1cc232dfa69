/* upstream_h2.c: multiplexed HTTP/2 client connections towards backends with protocol H2C
 * (cleartext, prior knowledge) or H2 (TLS, ALPN h2), and TLS towards any backend with a tls block.
 *
 * Per worker and endpoint, a list of connections. An exchange goes on the first connection with a
 * free stream slot (the peer's SETTINGS_MAX_CONCURRENT_STREAMS; H2_ASSUMED_STREAMS until its
 * SETTINGS arrive); when every connection is full another is opened, up to the backend's
 * maxConnections, then exchanges wait in the pool's pending queue (maxPending). While a connection
 * is being set up its exchanges wait on it and are submitted once the peer's SETTINGS arrived.
 *
 * Flow control runs end to end: automatic WINDOW_UPDATEs are off, the connection window is given
 * back as DATA arrives and a stream's window only when the downstream took the bytes (not paused),
 * so a slow client stalls just its stream at one window of buffering.
 *
 * Retries: an exchange whose stream the upstream refused (REFUSED_STREAM, or above a GOAWAY's last
 * stream id) or whose connection never came up is started again on another connection, its request
 * body replayed from a bounded copy. Anything else after the request left is an error (RESET).
 *
 * Object lifetime: a stream belongs to its connection and is freed when nghttp2 closes it (or with
 * the connection); the exchange points at it while they are bound. Connections are freed only
 * outside nghttp2 calls (the in_io flag defers it). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "upstream-int.h"
#include "upstream/httpc.h"

#define H2_ASSUMED_STREAMS  100                /* concurrency assumed before the peer's SETTINGS */
#define H2_STREAM_WINDOW    (256 * 1024)       /* response bytes in flight per stream */
#define H2_CONN_WINDOW      (16 * 1024 * 1024) /* connection window (given back as DATA arrives) */
#define H2_MAX_HEADER_LIST  UPSTREAM_HEAD_MAX  /* response header block bound */
#define H2_MAX_TRAILERS     64                 /* trailer fields kept */
#define H2_CONN_OUT_HIGH    (64 * 1024)        /* frames serialized ahead of the socket */
#define H2_GRPC_TIMEOUT_MAX 100000000ull       /* grpc-timeout has at most 8 digits */

enum h2conn_state { H2CONN_CONNECTING = 0, H2CONN_READY, H2CONN_DRAINING, H2CONN_CLOSED };

enum h2stream_state { H2S_WAITING = 0, H2S_OPEN };

struct upstream_h2_stream {
	struct upstream_h2_conn *conn;
	struct upstream_exchange *ex; /* NULL once the exchange ended (the stream may be resetting) */
	struct upstream_h2_stream *next, *prev; /* conn->waiting or conn->open */
	enum h2stream_state state;
	int32_t id;
	struct evbuffer *out;  /* request body not yet framed; over UPSTREAM_OUT_HIGH the codec waits */
	struct evbuffer *sent; /* body already framed, kept for a replay while <= UPSTREAM_OUT_HIGH */
	bool replayable;       /* no response byte yet and `sent` holds every framed body byte */
	bool deferred;         /* the data provider said DEFERRED: resume on new body */
	bool drain_ready;      /* `out` went below UPSTREAM_OUT_LOW: tell the codec */
	bool headers_sent;     /* the request HEADERS left (on_frame_send) */
	bool local_closed;     /* our END_STREAM left */
	bool remote_closed;    /* the upstream's END_STREAM arrived (HEADERS or DATA) */
	bool in_trailers;      /* the HEADERS being received are trailers */
	size_t unconsumed;     /* DATA bytes delivered while the codec was paused */
	size_t head_bytes;     /* header block bytes received (bound H2_MAX_HEADER_LIST) */
	struct request_header *trailers;
	size_t n_trailers;
};

struct upstream_h2_conn {
	struct upstream_pool *pool;
	struct upstream_endpoint *ep;
	struct bufferevent *bev;
	nghttp2_session *session;
	enum h2conn_state state;
	struct upstream_h2_conn *next, *prev;              /* ep->h2_list */
	struct upstream_h2_stream *waiting, *waiting_tail; /* queued until SETTINGS arrive */
	struct upstream_h2_stream *open;                   /* submitted to nghttp2 */
	unsigned n_streams;                                /* waiting + open */
	int32_t goaway_last_id;                            /* -1: no GOAWAY received */
	bool connected;                                    /* TCP (and TLS) up */
	bool in_io;                                        /* inside nghttp2 or a callback loop: no frees */
	bool doomed;                                       /* close once in_io ends */
	bool has_drain;                                    /* some stream has drain_ready */
	bool settings_now;                                 /* first SETTINGS just arrived: flush waiting */
	bool plain;                    /* plain socket: frames written directly once per burst (bevio.h) */
	bool flushing;                 /* inside h2conn_on_flush: it writes what h2conn_process produced */
	struct bevio_deferred flush_d; /* queued: write the output at the end of the batch */
	struct event idle_ev;
};

static nghttp2_session_callbacks *h2_callbacks;
static nghttp2_option *h2_option;

static const char *h2conn_state_str(enum h2conn_state s)
{
	static const char *const names[] = {"CONNECTING", "READY", "DRAINING", "CLOSED"};

	return names[s];
}

static void h2conn_set_state(struct upstream_h2_conn *c, enum h2conn_state s)
{
	static const bool legal[4][4] = {
	        /* from CONNECTING */ {false, true, true, true},
	        /* from READY */ {false, false, true, true},
	        /* from DRAINING */ {false, false, false, true},
	        /* from CLOSED */ {false, false, false, false},
	};

	if (!legal[c->state][s]) {
		log_error("upstream h2 %s: illegal connection state change %s -> %s", c->ep->text,
		          h2conn_state_str(c->state), h2conn_state_str(s));
		abort();
	}
	log_debug("upstream h2 %s: %s -> %s", c->ep->text, h2conn_state_str(c->state), h2conn_state_str(s));
	c->state = s;
}

static int h2_dispatch(struct upstream_exchange *ex, bool refused);
static bool h2conn_process(struct upstream_h2_conn *c);
static void h2conn_schedule(struct upstream_h2_conn *c);
static void h2conn_free(struct upstream_h2_conn *c);
static unsigned h2conn_room(struct upstream_h2_conn *c);

/* ---- TLS ---- */

struct ssl_ctx_st *upstream_tls_ctx_new(const struct config_backend *be, FILE *err)
{
	char who[256];

	snprintf(who, sizeof(who), "backend %s", be->name);
	return httpc_tls_ctx_new(who, be, be->protocol == CONFIG_PROTO_H2 ? "h2" : "http/1.1", err);
}

struct bufferevent *upstream_bev_new(struct upstream_pool *pool, struct upstream_endpoint *ep)
{
	const char *host = pool->be->tls.hostname != NULL ? pool->be->tls.hostname : ep->cfg->host;
	struct in6_addr a6;
	struct bufferevent *bev;
	SSL *ssl;

	if (pool->ssl_ctx == NULL) {
		if (pool->be->tls.enabled || pool->be->protocol == CONFIG_PROTO_H2)
			return NULL; /* the CA bundle did not load: never connect unverified */
		return bufferevent_socket_new(pool->uw->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	ssl = SSL_new(pool->ssl_ctx);
	if (ssl == NULL)
		return NULL;
	if (inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
		/* RFC 6066 section 3: no SNI for an address; verify the certificate's IP SAN. */
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	} else {
		SSL_set_tlsext_host_name(ssl, host);
		SSL_set1_host(ssl, host);
	}
	bev = bufferevent_openssl_socket_new(pool->uw->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void upstream_bev_tune(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int one = 1;

	if (fd == -1)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* ---- grpc-timeout ---- */

/* Parses a grpc-timeout value (gRPC over HTTP/2: 1 to 8 digits and a unit H M S m u n) into
 * milliseconds, rounded up. Returns 0 and sets *ms, or JG_ERR_PARSE. */
static int h2_parse_grpc_timeout(const char *v, size_t len, uint64_t *ms)
{
	uint64_t n = 0;
	size_t i;

	if (len < 2 || len > 9)
		return JG_ERR_PARSE;
	for (i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return JG_ERR_PARSE;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H':
		*ms = n * 3600000ull;
		break;
	case 'M':
		*ms = n * 60000ull;
		break;
	case 'S':
		*ms = n * 1000ull;
		break;
	case 'm':
		*ms = n;
		break;
	case 'u':
		*ms = (n + 999) / 1000;
		break;
	case 'n':
		*ms = (n + 999999) / 1000000;
		break;
	default:
		return JG_ERR_PARSE;
	}
	if (*ms == 0)
		*ms = 1; /* a zero deadline has already passed: fire at once rather than never */
	return 0;
}

/* ---- streams ---- */

static void h2stream_unlink(struct upstream_h2_stream *s)
{
	struct upstream_h2_conn *c = s->conn;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (s->state == H2S_WAITING)
		c->waiting = s->next;
	else
		c->open = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	else if (s->state == H2S_WAITING)
		c->waiting_tail = s->prev;
	s->next = s->prev = NULL;
	c->n_streams--;
	if (c->n_streams == 0 && c->state == H2CONN_READY && c->pool->be->idle_timeout_ms > 0) {
		struct timeval tv = {(time_t)(c->pool->be->idle_timeout_ms / 1000),
		                     (suseconds_t)(c->pool->be->idle_timeout_ms % 1000) * 1000};

		evtimer_add(&c->idle_ev, &tv);
	}
}

static void h2stream_free(struct upstream_h2_stream *s)
{
	if (s->ex != NULL && s->ex->h2 == s)
		s->ex->h2 = NULL;
	if (s->out != NULL)
		evbuffer_free(s->out);
	if (s->sent != NULL)
		evbuffer_free(s->sent);
	free(s);
}

/* Binds a new stream on c to ex; it waits until c is ready, or is submitted by the caller. */
static struct upstream_h2_stream *h2stream_new(struct upstream_h2_conn *c, struct upstream_exchange *ex)
{
	struct upstream_h2_stream *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	if (ex->has_body) {
		s->out = evbuffer_new();
		s->sent = evbuffer_new();
		if (s->out == NULL || s->sent == NULL) {
			h2stream_free(s);
			return NULL;
		}
	}
	s->conn = c;
	s->ex = ex;
	s->replayable = true;
	ex->h2 = s;
	c->n_streams++;
	evtimer_del(&c->idle_ev);
	return s;
}

static bool h2_forwardable(const char *name, size_t name_len, const char *value, size_t value_len)
{
	if (name_len == 0 || name[0] == ':')
		return false;
	if (name_len == 2 && memcmp(name, "te", 2) == 0)
		return value_len == 8 && jg_case_eq(value, 8, "trailers", 8); /* RFC 9113 8.2.2 */
	if (request_header_is_hop_by_hop(name, name_len))
		return false;
	return !((name_len == 4 && memcmp(name, "host", 4) == 0) ||
	         (name_len == 14 && memcmp(name, "content-length", 14) == 0) ||
	         (name_len == 6 && memcmp(name, "expect", 6) == 0) ||
	         (name_len == 14 && memcmp(name, "http2-settings", 14) == 0));
}

static void h2_nv(nghttp2_nv *nv, const char *name, size_t name_len, const char *value, size_t value_len)
{
	nv->name = (uint8_t *)(uintptr_t)name;
	nv->namelen = name_len;
	nv->value = (uint8_t *)(uintptr_t)value;
	nv->valuelen = value_len;
	nv->flags = NGHTTP2_NV_FLAG_NONE;
}

static ssize_t h2_read_body_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                               uint32_t *data_flags, nghttp2_data_source *source, void *user_data);

/* Submits the request HEADERS (and the body provider) of a waiting stream. Returns 0 or a negative
 * JG_ERR_*. The header list is copied by nghttp2. */
static int h2stream_submit(struct upstream_h2_stream *s)
{
	struct upstream_h2_conn *c = s->conn;
	struct upstream_exchange *ex = s->ex;
	const struct request *req = ex->req;
	nghttp2_data_provider prd;
	nghttp2_nv *nv;
	char clen[24];
	size_t i, n = 0;
	int32_t id;
	const char *authority = req->authority;
	size_t authority_len = req->authority_len;

	nv = malloc((5 + req->n_headers + ex->n_extra) * sizeof(*nv));
	if (nv == NULL)
		return JG_ERR_NOMEM;
	if (authority_len == 0) {
		authority = c->pool->be->tls.hostname != NULL ? c->pool->be->tls.hostname : c->ep->cfg->host;
		authority_len = strlen(authority);
	}
	h2_nv(&nv[n++], ":method", 7, req->method, req->method_len);
	if (c->pool->ssl_ctx != NULL)
		h2_nv(&nv[n++], ":scheme", 7, "https", 5);
	else
		h2_nv(&nv[n++], ":scheme", 7, "http", 4);
	h2_nv(&nv[n++], ":authority", 10, authority, authority_len);
	h2_nv(&nv[n++], ":path", 5, req->target, req->target_len);
	for (i = 0; i < req->n_headers; i++) {
		const struct request_header *h = &req->headers[i];

		if (h->removed || !h2_forwardable(h->name, h->name_len, h->value, h->value_len) ||
		    request_header_listed_in_connection(req->headers, req->n_headers, h->name, h->name_len))
			continue;
		h2_nv(&nv[n++], h->name, h->name_len, h->value, h->value_len);
	}
	for (i = 0; i < ex->n_extra; i++) {
		const struct request_header *h = &ex->extra[i];

		if (h2_forwardable(h->name, h->name_len, h->value, h->value_len))
			h2_nv(&nv[n++], h->name, h->name_len, h->value, h->value_len);
	}
	if (ex->has_body && ex->content_length >= 0) {
		int len = snprintf(clen, sizeof(clen), "%lld", (long long)ex->content_length);

		h2_nv(&nv[n++], "content-length", 14, clen, (size_t)len);
	}
	prd.source.ptr = s;
	prd.read_callback = h2_read_body_cb;
	id = nghttp2_submit_request(c->session, NULL, nv, n, ex->has_body ? &prd : NULL, s);
	free(nv);
	if (id < 0) {
		log_info("upstream h2 %s: cannot submit request: %s", c->ep->text, nghttp2_strerror(id));
		return JG_ERR_LIMIT;
	}
	s->id = id;
	s->state = H2S_OPEN;
	s->next = c->open;
	s->prev = NULL;
	if (c->open != NULL)
		c->open->prev = s;
	c->open = s;
	if (!ex->ready_sent) {
		ex->ready_sent = true;
		ex->sink->on_ready(ex->ctx);
	}
	return 0;
}

/* Ends the binding between ex and its stream; resets the stream unless both sides already ended
 * it. The stream itself is freed when nghttp2 closes it.
 *
 * "Both sides ended" is our own record (local_closed, remote_closed), not nghttp2's stream state:
 * the end of a response is seen inside on_frame_recv, which nghttp2 calls before it marks the
 * stream half-closed (remote), so asking nghttp2 there says "still open" and a complete exchange
 * got RST_STREAM(CANCEL). RFC 9113 section 5.1: a stream closed in both directions needs no reset,
 * and upstreams guarding against rapid reset (CVE-2023-44487) answer a stream of them with GOAWAY,
 * failing every call in flight. Only an abandoned exchange (cancel, timeout, error) resets. */
static void h2_exchange_detach(struct upstream_exchange *ex)
{
	struct upstream_h2_stream *s = ex->h2;
	struct upstream_h2_conn *c;

	if (s == NULL)
		return;
	c = s->conn;
	ex->h2 = NULL;
	s->ex = NULL;
	if (s->state == H2S_WAITING) {
		h2stream_unlink(s);
		h2stream_free(s);
		return;
	}
	if (!s->local_closed || !s->remote_closed)
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
	h2conn_schedule(c);
}

/* Starts ex again elsewhere after its stream was refused or its connection never came up; the body
 * framed so far (kept in `sent`) goes first. Returns true when the retry is under way or already
 * reported, false when it cannot be retried (the caller reports the failure). */
static bool h2_exchange_retry(struct upstream_exchange *ex, struct upstream_h2_stream *old, bool refused)
{
	struct evbuffer *out = old->out, *sent = old->sent;

	if (!old->replayable || ex->response_started || ex->tries >= UPSTREAM_MAX_TRIES)
		return false;
	log_debug("upstream h2 %s: stream not processed, retrying", old->conn->ep->text);
	old->out = old->sent = NULL;
	old->ex = NULL;
	ex->h2 = NULL;
	if (h2_dispatch(ex, refused) < 0) {
		if (out != NULL) {
			evbuffer_free(out);
			evbuffer_free(sent);
		}
		upstream_exchange_fail(ex, UPSTREAM_ERR_NOMEM);
		return true;
	}
	if (ex->h2 != NULL && out != NULL) {
		evbuffer_prepend_buffer(out, sent);
		evbuffer_add_buffer(ex->h2->out, out);
	} else if (ex->pending && out != NULL) {
		/* Waiting in the pool queue: it will get a fresh stream; keep nothing (rare path). */
		upstream_exchange_fail(ex, UPSTREAM_ERR_RESET);
	}
	if (out != NULL) {
		evbuffer_free(out);
		evbuffer_free(sent);
	}
	return true;
}

/* ---- nghttp2 callbacks ---- */

static ssize_t h2_send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                          void *user_data)
{
	struct upstream_h2_conn *c = user_data;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= H2_CONN_OUT_HIGH)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (bufferevent_write(c->bev, data, length) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)length;
}

static ssize_t h2_read_body_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                               uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct upstream_h2_stream *s = source->ptr;
	struct upstream_exchange *ex = s->ex;
	size_t avail, n;

	if (ex == NULL || s->out == NULL)
		return NGHTTP2_ERR_DEFERRED; /* being reset */
	avail = evbuffer_get_length(s->out);
	if (avail == 0) {
		if (ex->body_done) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
			return 0;
		}
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = avail < length ? avail : length;
	if (s->replayable) {
		evbuffer_copyout(s->out, buf, n);
		evbuffer_remove_buffer(s->out, s->sent, n);
		if (evbuffer_get_length(s->sent) > UPSTREAM_OUT_HIGH) {
			s->replayable = false; /* too much to keep: no retry for this one */
			evbuffer_drain(s->sent, evbuffer_get_length(s->sent));
		}
	} else {
		evbuffer_remove(s->out, buf, n);
	}
	if (ex->body_done && evbuffer_get_length(s->out) == 0)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	if (ex->notify_drain && evbuffer_get_length(s->out) < UPSTREAM_OUT_LOW) {
		s->drain_ready = true;
		s->conn->has_drain = true;
	}
	return (ssize_t)n;
}

static int h2_on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct upstream_h2_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	s->headers_sent = true;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		s->local_closed = true;
	return 0;
}

static struct upstream_h2_stream *h2conn_find_open(struct upstream_h2_conn *c, int32_t id)
{
	struct upstream_h2_stream *s;

	for (s = c->open; s != NULL; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

/* A request HEADERS could not be sent (GOAWAY came first, or the stream was reset before it left):
 * nothing reached the upstream, so the exchange may start again elsewhere. */
static int h2_on_frame_not_send_cb(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                                   void *user_data)
{
	struct upstream_h2_conn *c = user_data;
	struct upstream_h2_stream *s;
	struct upstream_exchange *ex;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	s = h2conn_find_open(c, frame->hd.stream_id);
	if (s == NULL || nghttp2_session_find_stream(session, s->id) != NULL)
		return 0; /* on_stream_close follows */
	ex = s->ex;
	h2stream_unlink(s);
	if (ex != NULL && !ex->finished && !h2_exchange_retry(ex, s, true))
		upstream_exchange_fail(ex, UPSTREAM_ERR_RESET);
	h2stream_free(s);
	return 0;
}

static int h2_on_begin_headers_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct upstream_h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	struct upstream_exchange *ex;

	if (frame->hd.type != NGHTTP2_HEADERS || s == NULL || s->ex == NULL)
		return 0;
	ex = s->ex;
	s->head_bytes = 0;
	if (ex->head_delivered) {
		s->in_trailers = true;
		s->n_trailers = 0;
		return 0;
	}
	/* A response head (the first, or a final one after 1xx). */
	response_init(&ex->resp, ex->req->arena);
	ex->resp.reason = (char *)"";
	ex->resp.reason_len = 0;
	if (!ex->response_started) {
		ex->response_started = true;
		s->replayable = false;
		if (s->sent != NULL)
			evbuffer_drain(s->sent, evbuffer_get_length(s->sent));
	}
	return 0;
}

static int h2_on_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                           size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                           void *user_data)
{
	struct upstream_h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	struct upstream_exchange *ex;
	const char *n = (const char *)name, *v = (const char *)value;

	if (frame->hd.type != NGHTTP2_HEADERS || s == NULL || s->ex == NULL)
		return 0;
	ex = s->ex;
	s->head_bytes += namelen + valuelen + 32; /* RFC 9113 6.5.2 field size */
	if (s->head_bytes > H2_MAX_HEADER_LIST)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	if (s->in_trailers) {
		struct request_header *h;

		if (namelen > 0 && n[0] == ':')
			return 0;
		if (s->trailers == NULL) {
			s->trailers = arena_alloc(ex->req->arena, H2_MAX_TRAILERS * sizeof(*s->trailers));
			if (s->trailers == NULL)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		if (s->n_trailers >= H2_MAX_TRAILERS)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		h = &s->trailers[s->n_trailers];
		h->name = arena_strndup(ex->req->arena, n, namelen);
		h->value = arena_strndup(ex->req->arena, v, valuelen);
		if (h->name == NULL || h->value == NULL)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		h->name_len = namelen;
		h->value_len = valuelen;
		h->removed = false;
		s->n_trailers++;
		return 0;
	}
	if (namelen == 7 && memcmp(n, ":status", 7) == 0) {
		/* nghttp2's HTTP messaging checks guarantee three digits. */
		ex->resp.status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
		return 0;
	}
	if (namelen > 0 && n[0] == ':')
		return 0;
	if (namelen == 14 && memcmp(n, "content-length", 14) == 0) {
		/* nghttp2 checked the digits; the rule jwtgate applies everywhere refuses the rest (a
		 * leading zero, more than 18 digits) */
		ex->resp.content_length = request_content_length_parse(v, valuelen);
		if (ex->resp.content_length < 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (response_header_add(&ex->resp, n, namelen, v, valuelen) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

/* The exchange got its whole response: report the end and let the stream close. */
static void h2_exchange_end(struct upstream_exchange *ex)
{
	upstream_exchange_finish(ex);
	ex->sink->on_end(ex->ctx);
	h2_exchange_detach(ex);
}

static int h2_on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct upstream_h2_conn *c = user_data;
	struct upstream_h2_stream *s;
	struct upstream_exchange *ex;
	bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && c->state == H2CONN_CONNECTING)
			c->settings_now = true;
		return 0;
	case NGHTTP2_GOAWAY:
		/* Streams above last_stream_id are closed by nghttp2 with REFUSED_STREAM and retried. */
		c->goaway_last_id = frame->goaway.last_stream_id;
		log_info("upstream h2 %s: GOAWAY (last stream %d, error %u)", c->ep->text,
		         frame->goaway.last_stream_id, frame->goaway.error_code);
		if (c->state == H2CONN_READY || c->state == H2CONN_CONNECTING)
			h2conn_set_state(c, H2CONN_DRAINING);
		return 0;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		break;
	default:
		return 0;
	}
	s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (s != NULL && end)
		s->remote_closed = true; /* before anything below may detach the exchange */
	if (s == NULL || s->ex == NULL || s->ex->finished)
		return 0;
	ex = s->ex;
	if (frame->hd.type == NGHTTP2_HEADERS) {
		if (s->in_trailers) {
			s->in_trailers = false;
			if (ex->sink->on_trailers != NULL)
				ex->sink->on_trailers(ex->ctx, s->trailers, s->n_trailers);
			if (!ex->finished)
				h2_exchange_end(ex);
			return 0;
		}
		if (ex->resp.status < 200) {
			ex->resp.has_body = false;
			ex->sink->on_head(ex->ctx, &ex->resp);
			return 0;
		}
		ex->resp.has_body = !(ex->is_head || ex->resp.status == 204 || ex->resp.status == 304);
		if (end && ex->resp.content_length < 0) {
			/* No body follows (gRPC trailers-only, or an empty answer): has_body false lets an
			 * HTTP/2 codec answer with one HEADERS frame too, and content-length: 0 frames it
			 * for an HTTP/1.1 client. */
			bool bodyless_status =
			        ex->is_head || ex->resp.status == 204 || ex->resp.status == 304;

			ex->resp.content_length = 0;
			ex->resp.has_body = false;
			if (!bodyless_status &&
			    response_header_add(&ex->resp, "content-length", 14, "0", 1) < 0) {
				h2_exchange_detach(ex);
				upstream_exchange_fail(ex, UPSTREAM_ERR_NOMEM);
				return 0;
			}
		}
		ex->head_delivered = true;
		ex->sink->on_head(ex->ctx, &ex->resp);
	}
	if (end && !ex->finished && ex->head_delivered)
		h2_exchange_end(ex);
	return 0;
}

static int h2_on_data_chunk_recv_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                                    const uint8_t *data, size_t len, void *user_data)
{
	struct upstream_h2_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	struct upstream_exchange *ex = s != NULL ? s->ex : NULL;

	if (ex == NULL || ex->finished) {
		nghttp2_session_consume(session, stream_id, len);
		return 0;
	}
	/* The connection window comes back at once; the stream's only when the codec took it. */
	nghttp2_session_consume_connection(session, len);
	ex->sink->on_data(ex->ctx, (const char *)data, len);
	if (s->ex == NULL || ex->finished)
		return 0;
	if (ex->response_paused)
		s->unconsumed += len;
	else
		nghttp2_session_consume_stream(session, stream_id, len);
	return 0;
}

static int h2_on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                                 void *user_data)
{
	struct upstream_h2_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	struct upstream_exchange *ex;

	if (s == NULL)
		return 0;
	ex = s->ex;
	h2stream_unlink(s);
	if (ex != NULL && !ex->finished) {
		bool refused = error_code == NGHTTP2_REFUSED_STREAM;

		if (!refused || !h2_exchange_retry(ex, s, true)) {
			log_info("upstream h2 %s: stream %d closed before the response ended (error %u)",
			         s->conn->ep->text, stream_id, error_code);
			upstream_exchange_fail(ex, UPSTREAM_ERR_RESET);
		}
	}
	h2stream_free(s);
	return 0;
}

/* Builds the callbacks table and options once per process (pthread_once: workers start exchanges
 * concurrently, and none may see a half-filled table). */
static void h2_callbacks_build(void)
{
	if (nghttp2_session_callbacks_new(&h2_callbacks) != 0 || nghttp2_option_new(&h2_option) != 0) {
		log_error("upstream h2: out of memory");
		abort();
	}
	nghttp2_session_callbacks_set_send_callback(h2_callbacks, h2_send_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(h2_callbacks, h2_on_frame_send_cb);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(h2_callbacks, h2_on_frame_not_send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(h2_callbacks, h2_on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(h2_callbacks, h2_on_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h2_callbacks, h2_on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2_callbacks, h2_on_data_chunk_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(h2_callbacks, h2_on_stream_close_cb);
	nghttp2_option_set_no_auto_window_update(h2_option, 1);
	nghttp2_option_set_peer_max_concurrent_streams(h2_option, H2_ASSUMED_STREAMS);
	nghttp2_option_set_max_send_header_block_length(h2_option, 2 * UPSTREAM_HEAD_MAX);
}

static void h2_callbacks_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, h2_callbacks_build);
}

/* ---- connections ---- */

/* Frees the connection now (never from inside nghttp2): waiting streams and streams the upstream
 * cannot have processed are started again elsewhere, the others fail with RESET. */
static void h2conn_free(struct upstream_h2_conn *c)
{
	struct upstream_pool *pool = c->pool;
	struct upstream_endpoint *ep = c->ep;
	struct upstream_h2_stream *s;

	if (c->state != H2CONN_CLOSED)
		h2conn_set_state(c, H2CONN_CLOSED);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ep->h2_list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	evtimer_del(&c->idle_ev);
	bevio_defer_cancel(&c->flush_d);
	c->in_io = true; /* retries below must not re-enter this connection */
	while ((s = c->waiting) != NULL || (s = c->open) != NULL) {
		struct upstream_exchange *ex = s->ex;
		bool unsent = s->state == H2S_WAITING || !s->headers_sent ||
		              (c->goaway_last_id >= 0 && s->id > c->goaway_last_id);

		h2stream_unlink(s);
		if (ex != NULL && !ex->finished && (!unsent || !h2_exchange_retry(ex, s, c->connected)))
			upstream_exchange_fail(ex, c->connected ? UPSTREAM_ERR_RESET : UPSTREAM_ERR_CONNECT);
		h2stream_free(s);
	}
	if (c->session != NULL)
		nghttp2_session_del(c->session);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
	pool->n_conns--;
	upstream_h2_kick_pending(pool);
}

/* Submits the streams that waited for the peer's SETTINGS, up to its concurrency; the rest go
 * back to dispatch (another connection, or the pending queue). */
static void h2conn_flush_waiting(struct upstream_h2_conn *c)
{
	uint32_t max =
	        nghttp2_session_get_remote_settings(c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	struct upstream_h2_stream *s;
	unsigned open = 0;

	for (s = c->open; s != NULL; s = s->next)
		open++;
	while ((s = c->waiting) != NULL) {
		struct upstream_exchange *ex = s->ex;

		c->waiting = s->next;
		if (c->waiting != NULL)
			c->waiting->prev = NULL;
		else
			c->waiting_tail = NULL;
		s->next = s->prev = NULL;
		if (open < max && c->state == H2CONN_READY) {
			if (h2stream_submit(s) == 0) {
				open++;
				continue;
			}
			c->n_streams--;
			h2stream_free(s);
			upstream_exchange_fail(ex, UPSTREAM_ERR_NOMEM);
			continue;
		}
		/* Over the peer's limit: find it another place. */
		c->n_streams--;
		s->ex = NULL;
		ex->h2 = NULL;
		h2stream_free(s);
		if (h2_dispatch(ex, true) < 0)
			upstream_exchange_fail(ex, UPSTREAM_ERR_NOMEM);
	}
}

static void h2conn_on_flush(struct bevio_deferred *d);

/* Serializes pending frames into the socket buffer, tells codecs whose body buffer drained, and
 * closes the connection when nghttp2 is done with it. The one place where output is produced.
 * A plain socket is written at the end of the batch (h2conn_on_flush): every exchange started in
 * one turn of the loop leaves in one send, and EV_WRITE stays off unless the socket is full (each
 * exchange used to serialise on its own and the bufferevent added and removed its write event
 * per burst). */
static bool h2conn_process(struct upstream_h2_conn *c)
{
	int rv;

	if (c->in_io || c->session == NULL)
		return true;
	c->in_io = true;
	for (;;) {
		struct upstream_h2_stream *s;

		if (c->settings_now) {
			c->settings_now = false;
			bufferevent_set_timeouts(c->bev, NULL, NULL);
			if (c->state == H2CONN_CONNECTING)
				h2conn_set_state(c, H2CONN_READY);
			h2conn_flush_waiting(c);
		}
		rv = nghttp2_session_send(c->session);
		if (rv != 0) {
			log_info("upstream h2 %s: %s", c->ep->text, nghttp2_strerror(rv));
			c->doomed = true;
			break;
		}
		if (!c->has_drain)
			break;
		c->has_drain = false;
		for (s = c->open; s != NULL; s = s->next) {
			if (!s->drain_ready || s->ex == NULL)
				continue;
			s->drain_ready = false;
			if (s->ex->notify_drain && !s->ex->finished) {
				s->ex->notify_drain = false;
				s->ex->sink->on_drain(s->ex->ctx);
			}
		}
	}
	c->in_io = false;
	if (c->doomed || (c->state == H2CONN_DRAINING && c->n_streams == 0) ||
	    (nghttp2_session_want_read(c->session) == 0 && nghttp2_session_want_write(c->session) == 0)) {
		h2conn_free(c);
		return false;
	}
	if (c->plain && c->connected && !c->flushing &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		bevio_defer(&c->pool->uw->defer, &c->flush_d, h2conn_on_flush);
	if (c->pool->pending_head != NULL && h2conn_room(c) > 0)
		upstream_h2_kick_pending(c->pool);
	return true;
}

/* Frames for c were submitted by an exchange (start, body, end, window, reset): on a plain socket
 * they are serialised and written with those of every other exchange of this turn of the loop, at
 * its end (h2conn_on_flush); TLS serialises now and leaves the writing to the bufferevent. */
static void h2conn_schedule(struct upstream_h2_conn *c)
{
	if (c->plain && c->connected)
		bevio_defer(&c->pool->uw->defer, &c->flush_d, h2conn_on_flush);
	else
		h2conn_process(c);
}

static void h2conn_on_flush(struct bevio_deferred *d)
{
	struct upstream_h2_conn *c = container_of(d, struct upstream_h2_conn, flush_d);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	/* Serialise, write; while the socket takes everything, frames nghttp2 held back at
	 * H2_CONN_OUT_HIGH follow (bounded by the socket). */
	for (;;) {
		bool alive;

		c->flushing = true;
		alive = h2conn_process(c);
		if (!alive)
			return; /* freed */
		c->flushing = false;
		if (evbuffer_get_length(out) == 0 || !bevio_flush(c->bev) ||
		    !nghttp2_session_want_write(c->session))
			return;
	}
}

static void h2conn_on_read(struct bufferevent *bev, void *arg)
{
	struct upstream_h2_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	c->in_io = true;
	while (evbuffer_get_length(in) > 0 && !c->doomed) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = nghttp2_session_mem_recv(c->session, v.iov_base, v.iov_len);
		if (n < 0) {
			log_info("upstream h2 %s: %s", c->ep->text, nghttp2_strerror((int)n));
			c->doomed = true;
			break;
		}
		evbuffer_drain(in, (size_t)n);
	}
	c->in_io = false;
	h2conn_process(c);
}

static void h2conn_on_write(struct bufferevent *bev, void *arg)
{
	struct upstream_h2_conn *c = arg;

	/* Plain sockets go back to direct writes once libevent has drained what the socket refused. */
	if (c->plain && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
	h2conn_process(c);
}

static void h2conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_h2_conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->pool->ssl_ctx != NULL) {
			const unsigned char *alpn = NULL;
			unsigned alpn_len = 0;

			SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(bev), &alpn, &alpn_len);
			if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
				log_warn("upstream h2 %s: TLS peer did not select ALPN h2", c->ep->text);
				upstream_endpoint_on_failure(c->ep);
				h2conn_free(c);
				return;
			}
		}
		c->connected = true;
		upstream_endpoint_on_success(c->ep);
		bufferevent_enable(bev, EV_READ);
		if (!c->plain)
			bufferevent_enable(bev, EV_WRITE);
		else
			bufferevent_disable(bev, EV_WRITE); /* written by h2conn_on_flush */
		h2conn_process(c); /* preface and SETTINGS; streams wait for the peer's SETTINGS */
		return;
	}
	if (!c->connected) {
		unsigned long e = bufferevent_get_openssl_error(bev);

		log_info("upstream h2 %s: connect %s%s%s", c->ep->text,
		         (what & BEV_EVENT_TIMEOUT) ? "timed out" : "failed", e ? ": " : "",
		         e ? ERR_reason_error_string(e) : "");
		upstream_endpoint_on_failure(c->ep);
	} else if (what & BEV_EVENT_TIMEOUT) {
		log_info("upstream h2 %s: no SETTINGS from the peer in time", c->ep->text);
	}
	h2conn_free(c);
}

static void h2conn_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_h2_conn *c = arg;

	if (c->n_streams == 0 && !c->in_io)
		h2conn_free(c);
}

/* Opens a connection to ep. Returns it (CONNECTING) or NULL. */
static struct upstream_h2_conn *h2conn_open(struct upstream_pool *pool, struct upstream_endpoint *ep)
{
	nghttp2_settings_entry iv[] = {
	        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
	        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_LIST},
	};
	struct upstream_h2_conn *c;
	struct timeval tv;

	h2_callbacks_init();
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->pool = pool;
	c->ep = ep;
	c->state = H2CONN_CONNECTING;
	c->goaway_last_id = -1;
	evtimer_assign(&c->idle_ev, pool->uw->base, h2conn_on_idle, c);
	if (nghttp2_session_client_new2(&c->session, h2_callbacks, c, h2_option) != 0)
		goto fail;
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, JG_ARRAY_SIZE(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
		goto fail;
	c->bev = upstream_bev_new(pool, ep);
	if (c->bev == NULL)
		goto fail;
	bufferevent_setcb(c->bev, h2conn_on_read, h2conn_on_write, h2conn_on_event, c);
	c->plain = bevio_is_plain(c->bev);
	/* Bounds the connect, the TLS handshake and the wait for the peer's SETTINGS. */
	tv.tv_sec = (time_t)(pool->be->connect_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(pool->be->connect_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ep->addr, (int)ep->addr_len) == -1) {
		upstream_endpoint_on_failure(ep);
		goto fail;
	}
	upstream_bev_tune(c->bev);
	c->next = ep->h2_list;
	if (ep->h2_list != NULL)
		ep->h2_list->prev = c;
	ep->h2_list = c;
	pool->n_conns++;
	return c;
fail:
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->session != NULL)
		nghttp2_session_del(c->session);
	free(c);
	return NULL;
}

/* How many more streams c takes now. */
static unsigned h2conn_room(struct upstream_h2_conn *c)
{
	uint32_t max;

	if (c->state == H2CONN_CONNECTING)
		max = H2_ASSUMED_STREAMS;
	else if (c->state == H2CONN_READY)
		max = nghttp2_session_get_remote_settings(c->session,
		                                          NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	else
		return 0;
	if (nghttp2_session_get_next_stream_id(c->session) > (1u << 31) - 1000)
		return 0; /* stream ids nearly used up: let it drain */
	return c->n_streams < max ? max - c->n_streams : 0;
}

/* Finds ex a stream: on a connection of the chosen endpoint with room, on a new connection, or in
 * the pending queue. Returns 0 (under way, or failed and reported) or a negative JG_ERR_* (nothing
 * reported). */
static int h2_dispatch(struct upstream_exchange *ex, bool refused)
{
	struct upstream_pool *pool = ex->pool;
	struct upstream_endpoint *ep;
	struct upstream_h2_conn *c;
	struct upstream_h2_stream *s;

	for (;;) {
		ep = upstream_pool_pick(pool, ex);
		if (ep == NULL) {
			/* A refused stream (or one over a peer's limit) may go back to an endpoint it
			 * used; a failed connect may not. */
			if (refused)
				ex->tried = 0;
			ep = refused ? upstream_pool_pick(pool, ex) : NULL;
			if (ep == NULL) {
				upstream_exchange_fail(ex, ex->tries > 0 ? UPSTREAM_ERR_CONNECT
				                                         : UPSTREAM_ERR_NO_HEALTHY);
				return 0;
			}
		}
		for (c = ep->h2_list; c != NULL; c = c->next)
			if (!c->doomed && h2conn_room(c) > 0)
				break;
		if (c == NULL) {
			if (pool->n_conns >= pool->be->max_connections) {
				if (upstream_pool_add_pending(pool, ex) < 0)
					upstream_exchange_fail(ex, UPSTREAM_ERR_NO_HEALTHY);
				return 0;
			}
			c = h2conn_open(pool, ep);
			if (c == NULL) {
				upstream_exchange_use_endpoint(ex, ep);
				if (ex->tries < UPSTREAM_MAX_TRIES)
					continue;
				upstream_exchange_fail(ex, UPSTREAM_ERR_CONNECT);
				return 0;
			}
		}
		break;
	}
	upstream_exchange_use_endpoint(ex, ep);
	s = h2stream_new(c, ex);
	if (s == NULL)
		return JG_ERR_NOMEM;
	if (c->state == H2CONN_CONNECTING) {
		s->state = H2S_WAITING;
		s->prev = c->waiting_tail;
		if (c->waiting_tail != NULL)
			c->waiting_tail->next = s;
		else
			c->waiting = s;
		c->waiting_tail = s;
		return 0;
	}
	if (h2stream_submit(s) < 0) {
		c->n_streams--;
		ex->h2 = NULL;
		s->ex = NULL;
		h2stream_free(s);
		return JG_ERR_NOMEM;
	}
	h2conn_schedule(c);
	return 0;
}

/* ---- exchange API ---- */

/* Splits the codec's "name: value\r\n" lines into lower-cased arena headers. */
static int h2_parse_extra(struct upstream_exchange *ex, const char *p, size_t len)
{
	struct arena *a = ex->req->arena;
	const char *end = p + len;
	size_t n = 0, cap = 0;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *colon, *ve;
		struct request_header *h;
		size_t i;

		if (eol == NULL)
			eol = end;
		ve = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		if (eol < end)
			eol++;
		colon = memchr(p, ':', (size_t)(ve - p));
		if (colon == NULL || colon == p) {
			p = eol;
			continue;
		}
		if (n == cap) {
			struct request_header *nh;

			cap = cap ? cap * 2 : 8;
			if (cap > REQUEST_MAX_HEADERS_HARD)
				return JG_ERR_LIMIT;
			nh = arena_alloc(a, cap * sizeof(*nh));
			if (nh == NULL)
				return JG_ERR_NOMEM;
			if (n > 0)
				memcpy(nh, ex->extra, n * sizeof(*nh));
			ex->extra = nh;
		}
		h = &ex->extra[n];
		h->name = arena_strndup(a, p, (size_t)(colon - p));
		if (h->name == NULL)
			return JG_ERR_NOMEM;
		h->name_len = (size_t)(colon - p);
		for (i = 0; i < h->name_len; i++)
			if (h->name[i] >= 'A' && h->name[i] <= 'Z')
				h->name[i] = (char)(h->name[i] + 32); /* RFC 9113 8.2.1 */
		colon++;
		while (colon < ve && (*colon == ' ' || *colon == '\t'))
			colon++;
		h->value = arena_strndup(a, colon, (size_t)(ve - colon));
		if (h->value == NULL)
			return JG_ERR_NOMEM;
		h->value_len = (size_t)(ve - colon);
		h->removed = false;
		n++;
		p = eol;
	}
	ex->n_extra = n;
	return 0;
}

int upstream_h2_start(struct upstream_exchange *ex, const char *extra_head, size_t extra_len)
{
	const struct request_header *gt = request_header_get(ex->req, "grpc-timeout", 12);
	uint64_t ms = ex->pool->be->request_timeout_ms, grpc_ms;
	int rc;

	rc = h2_parse_extra(ex, extra_head, extra_len);
	if (rc < 0)
		return rc;
	if (gt != NULL && h2_parse_grpc_timeout(gt->value, gt->value_len, &grpc_ms) == 0 &&
	    (ms == 0 || grpc_ms < ms))
		ms = grpc_ms;
	if (ms > 0)
		bevio_timer_set_odd(&ex->timer, ms); /* a grpc-timeout is any duration */
	return h2_dispatch(ex, false);
}

int upstream_h2_send_body(struct upstream_exchange *ex, const char *data, size_t len)
{
	struct upstream_h2_stream *s = ex->h2;

	if (s == NULL || s->state != H2S_OPEN || s->out == NULL)
		return JG_ERR_CLOSED;
	if (len == 0)
		return 0;
	if (evbuffer_add(s->out, data, len) != 0)
		return JG_ERR_NOMEM;
	ex->body_started = true;
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(s->conn->session, s->id);
	}
	h2conn_schedule(s->conn);
	if (ex->h2 == s && evbuffer_get_length(s->out) > UPSTREAM_OUT_HIGH) {
		ex->notify_drain = true;
		return 1;
	}
	return 0;
}

int upstream_h2_end_body(struct upstream_exchange *ex)
{
	struct upstream_h2_stream *s = ex->h2;

	ex->body_done = true;
	if (s == NULL || s->state != H2S_OPEN)
		return 0; /* a stream not submitted yet, or being replaced, sends END_STREAM itself */
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(s->conn->session, s->id);
	}
	h2conn_schedule(s->conn);
	return 0;
}

void upstream_h2_pause_response(struct upstream_exchange *ex, bool pause)
{
	struct upstream_h2_stream *s = ex->h2;

	ex->response_paused = pause;
	if (pause || s == NULL || s->state != H2S_OPEN || s->unconsumed == 0)
		return;
	/* The downstream took what it had: open the stream's window again. */
	nghttp2_session_consume_stream(s->conn->session, s->id, s->unconsumed);
	s->unconsumed = 0;
	h2conn_schedule(s->conn);
}

void upstream_h2_cancel(struct upstream_exchange *ex)
{
	if (ex->pending)
		upstream_pool_remove_pending(ex->pool, ex);
	upstream_exchange_finish(ex);
	h2_exchange_detach(ex);
}

void upstream_h2_on_timeout(struct upstream_exchange *ex)
{
	h2_exchange_detach(ex);
	upstream_exchange_fail(ex, UPSTREAM_ERR_TIMEOUT);
}

void upstream_h2_kick_pending(struct upstream_pool *pool)
{
	unsigned n = pool->n_pending;

	while (n-- > 0 && pool->pending_head != NULL) {
		struct upstream_exchange *ex = pool->pending_head;

		upstream_pool_remove_pending(pool, ex);
		if (h2_dispatch(ex, true) < 0)
			upstream_exchange_fail(ex, UPSTREAM_ERR_NOMEM);
		if (ex->pending)
			break; /* still no room */
	}
}

void upstream_h2_pool_close(struct upstream_pool *pool, bool all)
{
	size_t i;

	for (i = 0; i < pool->n_eps; i++) {
		struct upstream_h2_conn *c = pool->eps[i].h2_list, *next;

		for (; c != NULL; c = next) {
			next = c->next;
			if ((all || c->n_streams == 0) && !c->in_io)
				h2conn_free(c);
		}
	}
}
