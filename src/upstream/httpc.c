/* httpc.c: one HTTP/1.1 or HTTP/2 request on a fresh connection (see httpc.h).
 *
 * A request goes CONNECTING -> RECEIVING -> DONE (or straight to DONE when the connect fails) and owns
 * one connection. Every end goes through httpc_finish(), which only records the outcome and activates
 * a deferred event: the caller's callback and every free happen there, never inside a bufferevent,
 * llhttp or nghttp2 callback, so none of those libraries ever runs on freed memory.
 */
#include "upstream/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/common.h"
#include "core/log.h"

enum httpc_state {
	HTTPC_CONNECTING = 0, /* TCP connect and, over TLS, the handshake */
	HTTPC_RECEIVING,      /* request written (or being written), reading the response */
	HTTPC_DONE,           /* outcome recorded; the report is on its way (done_ev) */
};

static const char *httpc_state_str(enum httpc_state s)
{
	static const char *const names[] = {"CONNECTING", "RECEIVING", "DONE"};

	return (size_t)s < JG_ARRAY_SIZE(names) ? names[s] : "?";
}

struct httpc {
	struct event_base *base;
	enum httpc_state state;
	httpc_done_fn done;
	void *arg;
	bool is_h2;
	bool head_only;
	int want_status;
	struct bufferevent *bev;
	struct event timer_ev; /* connect deadline, then the exchange deadline */
	struct event done_ev;  /* the deferred report */
	uint64_t deadline_ms;
	uint64_t timeout_ms;
	struct jg_buf req; /* HTTP/1.1: the whole request; HTTP/2: the body the data source reads */
	size_t req_off;    /* HTTP/2: body bytes handed to nghttp2 */
	/* response */
	llhttp_t parser;
	nghttp2_session *h2;
	int32_t stream_id;
	struct jg_buf body; /* bounded by body_max */
	size_t head_bytes;  /* bounded by HTTPC_HEAD_MAX */
	int status;         /* final status */
	int cur_status;     /* HTTP/2: :status of the HEADERS frame being read */
	int grpc_status;
	unsigned n_1xx;
	bool has_final_head;
	bool is_complete;
	enum httpc_failure parse_failure; /* set by a parser callback that stopped the parse */
	enum httpc_failure failure;
	char detail[HTTPC_DETAIL_MAX];
};

static llhttp_settings_t httpc_h1_settings;

static void httpc_set_state(struct httpc *c, enum httpc_state s)
{
	/* Legal: CONNECTING -> RECEIVING | DONE, RECEIVING -> DONE. */
	if (s <= c->state) {
		log_error("httpc: illegal state change %s -> %s", httpc_state_str(c->state),
		          httpc_state_str(s));
		abort();
	}
	c->state = s;
}

static void httpc_arm(struct event *ev, uint64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

const char *httpc_failure_str(enum httpc_failure f)
{
	switch (f) {
	case HTTPC_OK:
		return "ok";
	case HTTPC_FAIL_CONNECT:
		return "connect failure";
	case HTTPC_FAIL_TLS:
		return "TLS failure";
	case HTTPC_FAIL_RESET:
		return "no complete response";
	case HTTPC_FAIL_TIMEOUT:
		return "request timeout";
	case HTTPC_FAIL_STATUS:
		return "bad status";
	case HTTPC_FAIL_TOO_BIG:
		return "body too large";
	}
	return "?";
}

/* Records the outcome (the first one wins) and schedules the report. Safe from any callback. */
static void httpc_finish(struct httpc *c, enum httpc_failure f)
{
	if (c->state == HTTPC_DONE)
		return;
	httpc_set_state(c, HTTPC_DONE);
	c->failure = f;
	event_del(&c->timer_ev);
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	event_active(&c->done_ev, EV_TIMEOUT, 1);
}

static void httpc_free(struct httpc *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE: the socket and the SSL go with it */
	event_del(&c->timer_ev);
	event_del(&c->done_ev);
	nghttp2_session_del(c->h2);
	jg_buf_free(&c->req);
	jg_buf_free(&c->body);
	free(c);
}

static void httpc_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *c = arg;
	struct httpc_result r;

	memset(&r, 0, sizeof(r));
	r.failure = c->failure;
	r.status = c->status;
	r.grpc_status = c->grpc_status;
	r.body = c->body.data != NULL ? c->body.data : "";
	r.body_len = c->body.len;
	r.detail = c->detail;
	c->done(c->arg, &r);
	httpc_free(c);
}

void httpc_cancel(struct httpc *c)
{
	if (c != NULL)
		httpc_free(c);
}

/* Records the final status; a status the caller does not want ends the request. Returns 0 to go on. */
static int httpc_final_head(struct httpc *c, int status)
{
	c->status = status;
	c->has_final_head = true;
	if (c->want_status != 0 && status != c->want_status) {
		c->parse_failure = HTTPC_FAIL_STATUS;
		snprintf(c->detail, sizeof(c->detail), "status %d", status);
		return -1;
	}
	return 0;
}

/* ---- HTTP/1.1 response (llhttp callbacks; c is parser.data) ---- */

static int httpc_h1_count_head(llhttp_t *p, size_t len)
{
	struct httpc *c = p->data;

	c->head_bytes += len;
	if (c->head_bytes > HTTPC_HEAD_MAX) {
		c->parse_failure = HTTPC_FAIL_RESET;
		snprintf(c->detail, sizeof(c->detail), "response head larger than %d bytes", HTTPC_HEAD_MAX);
		return -1;
	}
	return 0;
}

static int httpc_h1_on_status(llhttp_t *p, const char *at, size_t len)
{
	return httpc_h1_count_head(p, len);
}

static int httpc_h1_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	return httpc_h1_count_head(p, len + 4); /* ": " and CRLF count too */
}

static int httpc_h1_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	return httpc_h1_count_head(p, len);
}

static int httpc_h1_on_headers_complete(llhttp_t *p)
{
	struct httpc *c = p->data;
	int status = llhttp_get_status_code(p);

	if (status >= 100 && status < 200 && status != 101) {
		if (++c->n_1xx > HTTPC_MAX_1XX) {
			c->parse_failure = HTTPC_FAIL_RESET;
			snprintf(c->detail, sizeof(c->detail), "too many interim responses");
			return -1;
		}
		return 0;
	}
	if (httpc_final_head(c, status) < 0)
		return -1;
	if (c->head_only) {
		c->is_complete = true;
		return HPE_PAUSED;
	}
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->body.max) {
		c->parse_failure = HTTPC_FAIL_TOO_BIG;
		snprintf(c->detail, sizeof(c->detail), "Content-Length %llu over %zu bytes",
		         (unsigned long long)p->content_length, c->body.max);
		return -1;
	}
	return 0;
}

static int httpc_append_body(struct httpc *c, const char *at, size_t len)
{
	int rc = jg_buf_append(&c->body, at, len);

	if (rc == JG_ERR_LIMIT) {
		c->parse_failure = HTTPC_FAIL_TOO_BIG;
		snprintf(c->detail, sizeof(c->detail), "body over %zu bytes", c->body.max);
		return -1;
	}
	if (rc < 0) {
		c->parse_failure = HTTPC_FAIL_RESET;
		snprintf(c->detail, sizeof(c->detail), "out of memory for the body");
		return -1;
	}
	return 0;
}

static int httpc_h1_on_body(llhttp_t *p, const char *at, size_t len)
{
	return httpc_append_body(p->data, at, len);
}

static int httpc_h1_on_message_complete(llhttp_t *p)
{
	struct httpc *c = p->data;

	if (!c->has_final_head) { /* an interim response: the real one follows */
		c->head_bytes = 0;
		return 0;
	}
	c->is_complete = true;
	return HPE_PAUSED; /* one response per connection; whatever follows is ignored */
}

/* Runs llhttp over what arrived. Returns HTTPC_OK while more is needed or once the response is
 * complete, or a failure kind (with c->detail) when the response is unusable. */
static enum httpc_failure httpc_h1_parse(struct httpc *c, struct evbuffer *in)
{
	size_t n;

	while (!c->is_complete && (n = evbuffer_get_contiguous_space(in)) > 0) {
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		llhttp_errno_t err = llhttp_execute(&c->parser, data, n);

		if (err == HPE_PAUSED && c->is_complete)
			break;
		if (err != HPE_OK) {
			if (c->parse_failure != HTTPC_OK)
				return c->parse_failure;
			snprintf(c->detail, sizeof(c->detail), "malformed response: %s (%s)",
			         llhttp_errno_name(err),
			         llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
			                                             : "");
			return HTTPC_FAIL_RESET;
		}
		evbuffer_drain(in, n);
	}
	if (c->is_complete)
		evbuffer_drain(in, evbuffer_get_length(in));
	return HTTPC_OK;
}

/* ---- HTTP/2 (nghttp2 client session; c is user_data) ---- */

static ssize_t httpc_h2_read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                                  uint32_t *data_flags, nghttp2_data_source *src, void *user_data)
{
	struct httpc *c = user_data;
	size_t left = c->req.len - c->req_off;
	size_t n = left < length ? left : length;

	if (n > 0)
		memcpy(buf, c->req.data + c->req_off, n);
	c->req_off += n;
	if (c->req_off == c->req.len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int httpc_h2_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                              size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                              void *user_data)
{
	struct httpc *c = user_data;

	if (frame->hd.stream_id != c->stream_id || c->state == HTTPC_DONE)
		return 0;
	c->head_bytes += namelen + valuelen + 32; /* RFC 9113 section 6.5.2: 32 octets per field */
	if (c->head_bytes > HTTPC_HEAD_MAX) {
		snprintf(c->detail, sizeof(c->detail), "response head larger than %d bytes", HTTPC_HEAD_MAX);
		httpc_finish(c, HTTPC_FAIL_RESET);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	/* nghttp2's messaging checks have validated :status (three digits) and the field syntax. */
	if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
		c->cur_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
	else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0 && valuelen > 0 && valuelen < 4) {
		int v = 0;
		size_t i;

		for (i = 0; i < valuelen && value[i] >= '0' && value[i] <= '9'; i++)
			v = v * 10 + (value[i] - '0');
		c->grpc_status = i == valuelen ? v : -1;
	}
	return 0;
}

static int httpc_h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user_data)
{
	struct httpc *c = user_data;

	if (frame->hd.stream_id != c->stream_id || c->state == HTTPC_DONE)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !c->has_final_head) {
		if (c->cur_status >= 100 && c->cur_status < 200) {
			if (++c->n_1xx > HTTPC_MAX_1XX) {
				snprintf(c->detail, sizeof(c->detail), "too many interim responses");
				httpc_finish(c, HTTPC_FAIL_RESET);
			}
			c->head_bytes = 0;
			return 0;
		}
		if (httpc_final_head(c, c->cur_status) < 0) {
			httpc_finish(c, c->parse_failure);
			return 0;
		}
		if (c->head_only) {
			httpc_finish(c, HTTPC_OK);
			return 0;
		}
	}
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->has_final_head)
		httpc_finish(c, HTTPC_OK);
	return 0;
}

static int httpc_h2_on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                                  size_t len, void *user_data)
{
	struct httpc *c = user_data;

	if (stream_id != c->stream_id || c->state == HTTPC_DONE)
		return 0;
	if (httpc_append_body(c, (const char *)data, len) < 0) {
		httpc_finish(c, c->parse_failure);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int httpc_h2_on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                                    void *user_data)
{
	struct httpc *c = user_data;

	if (stream_id != c->stream_id || c->state == HTTPC_DONE)
		return 0;
	snprintf(c->detail, sizeof(c->detail), "stream closed before a complete response (%s)",
	         nghttp2_http2_strerror(error_code));
	httpc_finish(c, HTTPC_FAIL_RESET);
	return 0;
}

/* Moves what nghttp2 has to send into the connection's output buffer. */
static void httpc_h2_flush(struct httpc *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const uint8_t *data;
	ssize_t n;

	while ((n = nghttp2_session_mem_send(c->h2, &data)) > 0) {
		if (evbuffer_add(out, data, (size_t)n) != 0) {
			snprintf(c->detail, sizeof(c->detail), "out of memory for the request");
			httpc_finish(c, HTTPC_FAIL_RESET);
			return;
		}
	}
	if (n < 0) {
		snprintf(c->detail, sizeof(c->detail), "HTTP/2: %s", nghttp2_strerror((int)n));
		httpc_finish(c, HTTPC_FAIL_RESET);
	}
}

/* Feeds what arrived to nghttp2 and sends what it answers (SETTINGS ACK, WINDOW_UPDATE). */
static void httpc_h2_recv(struct httpc *c, struct evbuffer *in)
{
	size_t n;

	while (c->state == HTTPC_RECEIVING && (n = evbuffer_get_contiguous_space(in)) > 0) {
		const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)n);
		ssize_t rc = nghttp2_session_mem_recv(c->h2, data, n);

		if (rc < 0) {
			snprintf(c->detail, sizeof(c->detail), "HTTP/2: %s", nghttp2_strerror((int)rc));
			httpc_finish(c, HTTPC_FAIL_RESET);
			return;
		}
		evbuffer_drain(in, n);
	}
	if (c->state == HTTPC_RECEIVING)
		httpc_h2_flush(c);
}

/* Creates the client session and queues the connection preface, SETTINGS and the request (sent once the
 * connection is up). Returns 0 or JG_ERR_NOMEM. */
static int httpc_h2_init(struct httpc *c, const struct httpc_request *req)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_settings_entry settings[] = {
	        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTPC_HEAD_MAX},
	};
	nghttp2_data_provider dp;
	nghttp2_nv *nv;
	size_t i, n_nv = 0;
	int rc = JG_ERR_NOMEM;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return JG_ERR_NOMEM;
	nghttp2_session_callbacks_set_on_header_callback(cbs, httpc_h2_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, httpc_h2_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, httpc_h2_on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, httpc_h2_on_stream_close);
	if (nghttp2_session_client_new(&c->h2, cbs, c) != 0)
		goto out;
	nv = calloc(req->n_headers + 5, sizeof(*nv));
	if (nv == NULL)
		goto out;
#define HTTPC_NV(n, v)                                                                                       \
	do {                                                                                                 \
		nv[n_nv].name = (uint8_t *)(n);                                                              \
		nv[n_nv].namelen = strlen(n);                                                                \
		nv[n_nv].value = (uint8_t *)(v);                                                             \
		nv[n_nv].valuelen = strlen(v);                                                               \
		nv[n_nv].flags = NGHTTP2_NV_FLAG_NONE;                                                       \
		n_nv++;                                                                                      \
	} while (0)
	HTTPC_NV(":method", req->method);
	HTTPC_NV(":scheme", req->ssl_ctx != NULL ? "https" : "http");
	HTTPC_NV(":authority", req->authority);
	HTTPC_NV(":path", req->target);
	HTTPC_NV("user-agent", "jwtgate/" JG_VERSION);
	for (i = 0; i < req->n_headers; i++)
		HTTPC_NV(req->headers[i].name, req->headers[i].value);
#undef HTTPC_NV
	memset(&dp, 0, sizeof(dp));
	dp.read_callback = httpc_h2_read_body;
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings, JG_ARRAY_SIZE(settings)) == 0)
		c->stream_id =
		        nghttp2_submit_request(c->h2, NULL, nv, n_nv, req->body != NULL ? &dp : NULL, NULL);
	free(nv);
	if (c->stream_id > 0)
		rc = 0;
out:
	nghttp2_session_callbacks_del(cbs);
	return rc;
}

/* ---- connection ---- */

/* Writes the OpenSSL and socket reasons of a connection failure into c->detail. */
static void httpc_conn_detail(struct httpc *c, const char *what)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	unsigned long e = bufferevent_get_openssl_error(c->bev);
	int sock_err = EVUTIL_SOCKET_ERROR();
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	char ebuf[160] = "";

	/* libevent records SSL_get_error()'s SSL_ERROR_SYSCALL itself (not an OpenSSL error code): the
	 * socket's error says more. */
	if (e == SSL_ERROR_SYSCALL)
		e = 0;
	if (e != 0)
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
	while (bufferevent_get_openssl_error(c->bev) != 0) /* drain the rest */
		;
	if (vr != X509_V_OK)
		snprintf(c->detail, sizeof(c->detail), "%s: certificate verify failed: %s", what,
		         X509_verify_cert_error_string(vr));
	else if (e != 0)
		snprintf(c->detail, sizeof(c->detail), "%s: %s", what, ebuf);
	else
		snprintf(c->detail, sizeof(c->detail), "%s: %s", what,
		         sock_err != 0 ? evutil_socket_error_to_string(sock_err) : "closed");
}

/* Whether a connection that failed before its request went out got as far as TLS: the ClientHello was
 * written (so TCP was up) or the peer's certificate was refused. False for a plain connection. */
static bool httpc_is_tls_failure(struct bufferevent *bev)
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

static void httpc_on_read(struct bufferevent *bev, void *arg)
{
	struct httpc *c = arg;
	enum httpc_failure failure;

	if (c->state != HTTPC_RECEIVING)
		return;
	if (c->is_h2) {
		httpc_h2_recv(c, bufferevent_get_input(bev));
		return;
	}
	failure = httpc_h1_parse(c, bufferevent_get_input(bev));
	if (failure != HTTPC_OK)
		httpc_finish(c, failure);
	else if (c->is_complete)
		httpc_finish(c, HTTPC_OK);
}

/* The connection is up (TCP, and TLS when asked): the request goes out, the deadline becomes the
 * exchange's. */
static void httpc_on_connected(struct httpc *c)
{
	uint64_t now = jg_now_ms();

	httpc_set_state(c, HTTPC_RECEIVING);
	event_del(&c->timer_ev);
	httpc_arm(&c->timer_ev, c->deadline_ms > now ? c->deadline_ms - now : 0);
	if (c->is_h2) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		if (ssl != NULL) {
			const unsigned char *alpn = NULL;
			unsigned alpn_len = 0;

			SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
			if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
				snprintf(c->detail, sizeof(c->detail),
				         "the server did not select h2 by ALPN");
				httpc_finish(c, HTTPC_FAIL_TLS);
				return;
			}
		}
		httpc_h2_flush(c);
		return;
	}
	if (evbuffer_add(bufferevent_get_output(c->bev), c->req.data, c->req.len) != 0) {
		snprintf(c->detail, sizeof(c->detail), "out of memory for the request");
		httpc_finish(c, HTTPC_FAIL_RESET);
	}
}

static void httpc_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct httpc *c = arg;
	enum httpc_failure failure = HTTPC_OK;

	if (c->state == HTTPC_DONE)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == HTTPC_CONNECTING)
			httpc_on_connected(c);
		return;
	}
	if (c->state == HTTPC_CONNECTING) {
		if (httpc_is_tls_failure(bev)) {
			httpc_conn_detail(c, "TLS handshake");
			httpc_finish(c, HTTPC_FAIL_TLS);
		} else {
			httpc_conn_detail(c, "connect");
			httpc_finish(c, HTTPC_FAIL_CONNECT);
		}
		return;
	}
	/* Bytes that came with the close are parsed first; then EOF may end a close-delimited body. */
	if (c->is_h2) {
		httpc_h2_recv(c, bufferevent_get_input(bev));
		if (c->state == HTTPC_DONE)
			return;
	} else {
		failure = httpc_h1_parse(c, bufferevent_get_input(bev));
		if (failure == HTTPC_OK && !c->is_complete && (what & BEV_EVENT_EOF)) {
			llhttp_errno_t err = llhttp_finish(&c->parser);

			if (!c->is_complete && err != HPE_OK && c->parse_failure != HTTPC_OK)
				failure = c->parse_failure;
		}
		if (failure == HTTPC_OK && c->is_complete) {
			httpc_finish(c, HTTPC_OK);
			return;
		}
	}
	if (failure == HTTPC_OK) {
		if (what & BEV_EVENT_EOF)
			snprintf(c->detail, sizeof(c->detail),
			         "connection closed before a complete response");
		else
			httpc_conn_detail(c, "connection error");
		failure = HTTPC_FAIL_RESET;
	}
	httpc_finish(c, failure);
}

static void httpc_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *c = arg;

	if (c->state == HTTPC_CONNECTING && httpc_is_tls_failure(c->bev)) {
		snprintf(c->detail, sizeof(c->detail), "TLS handshake timeout");
		httpc_finish(c, HTTPC_FAIL_TLS);
	} else if (c->state == HTTPC_CONNECTING) {
		snprintf(c->detail, sizeof(c->detail), "connect timeout");
		httpc_finish(c, HTTPC_FAIL_CONNECT);
	} else if (c->state == HTTPC_RECEIVING) {
		snprintf(c->detail, sizeof(c->detail), "no complete response within %llu ms",
		         (unsigned long long)c->timeout_ms);
		httpc_finish(c, HTTPC_FAIL_TIMEOUT);
	}
}

/* A bufferevent for the connection: plain, or TLS verifying req->tls_name. NULL with c->detail set. */
static struct bufferevent *httpc_bev_new(struct httpc *c, const struct httpc_request *req)
{
	struct in6_addr a6;
	struct bufferevent *bev;
	X509_VERIFY_PARAM *vp;
	SSL *ssl;

	if (req->ssl_ctx == NULL) {
		bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (bev == NULL)
			snprintf(c->detail, sizeof(c->detail), "out of memory for the connection");
		return bev;
	}
	ssl = SSL_new(req->ssl_ctx);
	if (ssl == NULL)
		goto fail;
	vp = SSL_get0_param(ssl);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (inet_pton(AF_INET, req->tls_name, &a6) == 1 || inet_pton(AF_INET6, req->tls_name, &a6) == 1) {
		/* RFC 6066 section 3: no SNI for an address; the certificate must carry it as an IP SAN. */
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, req->tls_name) != 1)
			goto ssl_fail;
	} else if (X509_VERIFY_PARAM_set1_host(vp, req->tls_name, 0) != 1 ||
	           SSL_set_tlsext_host_name(ssl, req->tls_name) != 1) {
		goto ssl_fail;
	}
	bev = bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL)
		goto ssl_fail;
	/* A close-delimited body ends at a TCP close; callers check what they got anyway. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
ssl_fail:
	SSL_free(ssl);
fail:
	ERR_clear_error();
	snprintf(c->detail, sizeof(c->detail), "cannot set up TLS");
	return NULL;
}

/* Serializes the HTTP/1.1 request into c->req. Returns 0 or JG_ERR_NOMEM. */
static int httpc_h1_build(struct httpc *c, const struct httpc_request *req)
{
	char line[64];
	size_t i;
	int rc = 0;

	c->req.max = SIZE_MAX;
	rc |= jg_buf_append(&c->req, req->method, strlen(req->method));
	rc |= jg_buf_append(&c->req, " ", 1);
	rc |= jg_buf_append(&c->req, req->target, strlen(req->target));
	rc |= jg_buf_append(&c->req, " HTTP/1.1\r\nHost: ", 17);
	rc |= jg_buf_append(&c->req, req->authority, strlen(req->authority));
	rc |= jg_buf_append(&c->req, "\r\nUser-Agent: jwtgate/" JG_VERSION "\r\n",
	                    strlen("\r\nUser-Agent: jwtgate/" JG_VERSION "\r\n"));
	for (i = 0; i < req->n_headers; i++) {
		rc |= jg_buf_append(&c->req, req->headers[i].name, strlen(req->headers[i].name));
		rc |= jg_buf_append(&c->req, ": ", 2);
		rc |= jg_buf_append(&c->req, req->headers[i].value, strlen(req->headers[i].value));
		rc |= jg_buf_append(&c->req, "\r\n", 2);
	}
	/* RFC 9110 section 8.6: a POST or PUT without a body says Content-Length: 0. */
	if (req->body != NULL || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
	    strcmp(req->method, "PATCH") == 0) {
		snprintf(line, sizeof(line), "Content-Length: %zu\r\n",
		         req->body != NULL ? req->body_len : 0);
		rc |= jg_buf_append(&c->req, line, strlen(line));
	}
	rc |= jg_buf_append(&c->req, "Connection: close\r\n\r\n", 21);
	if (req->body != NULL && req->body_len > 0)
		rc |= jg_buf_append(&c->req, req->body, req->body_len);
	return rc != 0 ? JG_ERR_NOMEM : 0;
}

static void httpc_settings_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	llhttp_settings_init(&httpc_h1_settings);
	httpc_h1_settings.on_status = httpc_h1_on_status;
	httpc_h1_settings.on_header_field = httpc_h1_on_header_field;
	httpc_h1_settings.on_header_value = httpc_h1_on_header_value;
	httpc_h1_settings.on_headers_complete = httpc_h1_on_headers_complete;
	httpc_h1_settings.on_body = httpc_h1_on_body;
	httpc_h1_settings.on_message_complete = httpc_h1_on_message_complete;
}

struct httpc *httpc_start(struct event_base *base, const struct httpc_request *req, httpc_done_fn done,
                          void *arg)
{
	struct httpc *c = calloc(1, sizeof(*c));
	uint64_t limit;

	if (c == NULL)
		return NULL;
	httpc_settings_init();
	c->base = base;
	c->state = HTTPC_CONNECTING;
	c->done = done;
	c->arg = arg;
	c->is_h2 = req->is_h2;
	c->head_only = req->head_only || strcmp(req->method, "HEAD") == 0;
	c->want_status = req->want_status;
	c->grpc_status = -1;
	c->body.max = req->body_max;
	c->timeout_ms = req->timeout_ms;
	c->deadline_ms = jg_now_ms() + req->timeout_ms;
	evtimer_assign(&c->timer_ev, base, httpc_on_timeout, c);
	event_assign(&c->done_ev, base, -1, 0, httpc_on_done, c);
	limit = req->connect_timeout_ms < req->timeout_ms ? req->connect_timeout_ms : req->timeout_ms;
	httpc_arm(&c->timer_ev, limit);
	if (c->is_h2) {
		c->req.max = SIZE_MAX;
		if ((req->body != NULL && jg_buf_append(&c->req, req->body, req->body_len) != 0) ||
		    httpc_h2_init(c, req) != 0) {
			snprintf(c->detail, sizeof(c->detail), "out of memory for the request");
			httpc_finish(c, HTTPC_FAIL_CONNECT);
			return c;
		}
	} else {
		if (httpc_h1_build(c, req) != 0) {
			snprintf(c->detail, sizeof(c->detail), "out of memory for the request");
			httpc_finish(c, HTTPC_FAIL_CONNECT);
			return c;
		}
		llhttp_init(&c->parser, HTTP_RESPONSE, &httpc_h1_settings);
		c->parser.data = c;
	}
	c->bev = httpc_bev_new(c, req);
	if (c->bev == NULL) {
		httpc_finish(c, HTTPC_FAIL_CONNECT);
		return c;
	}
	bufferevent_setcb(c->bev, httpc_on_read, NULL, httpc_on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, req->addr, (int)req->addr_len) == -1) {
		snprintf(c->detail, sizeof(c->detail), "connect: %s", strerror(errno));
		httpc_finish(c, HTTPC_FAIL_CONNECT);
		return c;
	}
	if (c->state == HTTPC_CONNECTING) {
		evutil_socket_t fd = bufferevent_getfd(c->bev);

		if (fd >= 0)
			evutil_make_socket_closeonexec(fd);
	}
	return c;
}

/* A TLS context problem: to err (configuration checks and reloads, which report to the operator's
 * terminal or the reload status) or, without one, to the log. */
static void tls_ctx_error(FILE *err, const char *who, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void tls_ctx_error(FILE *err, const char *who, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err != NULL)
		fprintf(err, "jwtgate: %s: %s\n", who, msg);
	else
		log_error("%s: %s", who, msg);
}

/* Adds every certificate of a PEM text to the store. Returns how many (0: none, or out of memory). */
static int tls_add_pem(X509_STORE *store, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int n = 0;

	if (bio == NULL)
		return 0;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error(); /* the end of the PEM text leaves a "no start line" error */
	return n;
}

SSL_CTX *httpc_tls_ctx_new(const char *who, const struct config_backend *be, const char *alpn, FILE *err)
{
	const struct config_tls_validation *tls = be != NULL && be->tls.enabled ? &be->tls : NULL;
	unsigned char wire[32];
	size_t i, alen = alpn != NULL ? strlen(alpn) : 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL || alen >= sizeof(wire)) {
		tls_ctx_error(err, who, "cannot create a TLS context");
		goto fail;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (alen > 0) {
		wire[0] = (unsigned char)alen; /* RFC 7301 section 3.1: length-prefixed protocol names */
		memcpy(wire + 1, alpn, alen);
		if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)alen + 1) != 0)
			goto fail;
	}
	/* The system store unless CA certificates are named (Envoy Gateway's wellKnownCACertificates:
	 * System, or no tls block at all). */
	if (tls == NULL || tls->well_known_system || (tls->n_ca_files == 0 && tls->n_ca_inline == 0)) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			tls_ctx_error(err, who, "cannot load the system CA store");
			goto fail;
		}
	}
	for (i = 0; tls != NULL && i < tls->n_ca_files; i++) {
		if (SSL_CTX_load_verify_locations(ctx, tls->ca_files[i], NULL) != 1) {
			tls_ctx_error(err, who, "CA bundle %s: no usable certificate", tls->ca_files[i]);
			goto fail;
		}
	}
	for (i = 0; tls != NULL && i < tls->n_ca_inline; i++) {
		if (tls_add_pem(SSL_CTX_get_cert_store(ctx), tls->ca_inline[i]) == 0) {
			tls_ctx_error(err, who, "inline CA certificate %zu: no usable certificate", i);
			goto fail;
		}
	}
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* See httpc.h. Moved here from jwks_fetch.c so that every client of httpc (jwks_fetch, jwtgate-token
 * verify) reads a URI the same way. */
int httpc_uri_parse(const char *uri, struct httpc_uri *u, char *detail, size_t detail_cap)
{
	const char *p, *auth_end, *host, *host_end, *port_s = NULL, *q;
	struct in6_addr a6;
	struct in_addr a4;
	size_t hlen, tlen;

	memset(u, 0, sizeof(*u));
	if (strncmp(uri, "https://", 8) == 0)
		u->is_https = true;
	else if (strncmp(uri, "http://", 7) == 0)
		u->is_https = false;
	else
		goto bad_scheme;
	p = uri + (u->is_https ? 8 : 7);
	auth_end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(auth_end - p)) != NULL) {
		snprintf(detail, detail_cap, "userinfo in the URI is not supported");
		return JG_ERR_INVAL;
	}
	if ((size_t)(auth_end - p) >= sizeof(u->authority)) {
		snprintf(detail, detail_cap, "URI host too long");
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
	if (hlen == 0 || hlen > HTTPC_URI_HOST_MAX)
		goto bad_host;
	memcpy(u->host, host, hlen);
	u->host[hlen] = '\0';
	for (q = u->host; *q != '\0'; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			goto bad_host;
	u->port = u->is_https ? 443 : 80;
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
		u->port = (uint16_t)v;
	}
	memcpy(u->authority, p, (size_t)(auth_end - p));
	u->authority[auth_end - p] = '\0';
	u->is_host_ip = inet_pton(AF_INET, u->host, &a4) == 1 || inet_pton(AF_INET6, u->host, &a6) == 1;
	if (*p == '[' && inet_pton(AF_INET6, u->host, &a6) != 1)
		goto bad_host;
	/* target: path and query; the fragment never goes on the wire (RFC 9110 section 4.2.4). */
	tlen = strcspn(auth_end, "#");
	if (tlen >= HTTPC_URI_TARGET_MAX) {
		snprintf(detail, detail_cap, "URI path too long");
		return JG_ERR_INVAL;
	}
	for (q = auth_end; q < auth_end + tlen; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
			snprintf(detail, detail_cap, "URI path has a byte that cannot be sent");
			return JG_ERR_INVAL;
		}
	u->target = jg_xmalloc(tlen + 2);
	if (tlen == 0 || auth_end[0] == '?') {
		u->target[0] = '/';
		memcpy(u->target + 1, auth_end, tlen);
		u->target[tlen + 1] = '\0';
	} else {
		memcpy(u->target, auth_end, tlen);
		u->target[tlen] = '\0';
	}
	return 0;
bad_scheme:
	snprintf(detail, detail_cap, "not an https:// or http:// URI");
	return JG_ERR_INVAL;
bad_host:
	snprintf(detail, detail_cap, "bad host in the URI");
	return JG_ERR_INVAL;
bad_port:
	snprintf(detail, detail_cap, "bad port in the URI");
	return JG_ERR_INVAL;
}

/* See httpc.h. */
void httpc_uri_clear(struct httpc_uri *u)
{
	free(u->target);
	u->target = NULL;
}

struct evdns_base *httpc_dns_new(struct event_base *base)
{
	struct evdns_base *dns =
	        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);

	if (dns == NULL) /* no usable resolv.conf: the hosts file still answers */
		dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns != NULL)
		evdns_base_load_hosts(dns, NULL);
	return dns;
}
