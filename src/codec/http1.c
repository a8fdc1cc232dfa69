/* http1.c: the HTTP/1.1 downstream codec.
 *
 * One struct h1_conn per accepted socket. llhttp (built with LLHTTP_STRICT_MODE, no lenient flag ever
 * set, plus the line-end, obs-fold and framing checks below) decodes the request head into a
 * protocol-neutral struct request; the pipeline (router, auth, upstream) runs
 * on it; the response comes back through the upstream sink and is encoded here. One exchange at a
 * time per connection, so pipelined requests are answered in order: the parser is paused after
 * each request and resumed once its response is complete.
 *
 * Bounds a client cannot raise: request line (limits.maxRequestLine, 414), head bytes and header
 * count (limits.maxHeaderBytes / maxHeaderCount, 431), head read time (limits.headerTimeout, 408),
 * idle keep-alive time, body size (limits.maxBodySize, 413), and buffered bytes each way (reading
 * from one side stops while the other side's output buffer is above H1_OUT_HIGH).
 *
 * A client's FIN is a half-close until a write fails: requests received before it are answered
 * (h1_on_peer_eof); only an error (a write the client reset) aborts the exchange.
 */
#include "codec/http1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>

/* meson.build compiles llhttp with LLHTTP_STRICT_MODE=1; the checks below count on it (they do not
 * repeat what strict llhttp already refuses: a CR not followed by LF, bytes between chunk data and its
 * CR LF, data after `Connection: close`). */
#if !LLHTTP_STRICT_MODE
#error "llhttp must be built with LLHTTP_STRICT_MODE=1 (see meson.build)"
#endif

#include "telemetry/access_log.h"
#include "jwt/auth.h"
#include "core/bevio.h"
#include "core/common.h"
#include "codec/http2.h"
#include "core/log.h"
#include "route/pipeline.h"
#include "upstream/upstream.h"
#include "server/worker.h"

#define H1_OUT_HIGH    (256 * 1024) /* response bytes buffered towards the client before pausing upstream */
#define H1_OUT_LOW     (64 * 1024)
#define H1_IN_HIGH     (64 * 1024)   /* request bytes read ahead of the parser */
#define H1_FLUSH_MS    5000          /* bound on flushing the last response of a closing connection */
#define H1_LINGER_MS   2000          /* bound on reading what a client sends after our FIN */
#define H1_ARENA_LIMIT (1024 * 1024) /* per request; the head limits keep real use far below */
#define H1_BACK        8             /* bytes of parsed input kept for look-back checks (h1_look_back) */

enum h1_state {
	H1_IDLE = 0, /* between requests: idle timer */
	H1_HEAD,     /* reading a request head: header timer */
	H1_UPSTREAM, /* request handed to the pipeline; body and response flowing */
	H1_CLOSING,  /* flushing the last bytes, then close */
	H1_CLOSED,
};

static const char *h1_state_str(enum h1_state s)
{
	static const char *const names[] = {"IDLE", "HEAD", "UPSTREAM", "CLOSING", "CLOSED"};

	return names[s];
}

/* What exists only while a request is under way: allocated in the connection's arena at the first
 * byte of a request and gone with the arena when the exchange ends, so that an idle keep-alive
 * connection holds none of it (bench/idle_memory.sh). llhttp starts each request from a fresh
 * llhttp_init: between requests it is at the start of a message anyway. */
struct h1_req {
	llhttp_t parser;
	struct request req;
	struct jg_piece field, value; /* spans of the URL / header being parsed (common.h) */
};

struct h1_conn {
	struct worker *w;
	struct bufferevent *bev;
	enum h1_state state;
	int listener_index;
	union jg_sockaddr peer;
	socklen_t peer_len;
	char peer_ip[INET6_ADDRSTRLEN];
	struct arena arena; /* the current request's memory; none while idle (worker's arena cache) */
	struct h1_req *x;   /* the current request's parser and head, in the arena; NULL while idle */
	size_t head_bytes;
	unsigned header_count;
	int error_status; /* set by a callback to choose the error status (431, 414, 413, 501) */
	const char *error_text;
	struct bevio_timer timer;      /* header or idle timeout */
	struct bevio_deferred free_d;  /* deferred free (the worker's queue: no event of its own) */
	struct bevio_deferred flush_d; /* queued: a direct write of the output at the end of the batch */
	bool plain;             /* plain socket: read through bevio_reader (TLS: the bufferevent reads) */
	struct bevio_reader rd; /* plain socket: reads without the FIONREAD ioctl (bevio.h) */
	struct worker_conn wc;  /* the worker's list of connections (drain, abort) */

	/* the current exchange */
	struct worker_gen *gen; /* configuration generation of the current request */
	struct upstream_exchange *ex;
	const struct config_rule *rule;
	uint64_t start_us; /* jg_now_us() at the request's first byte */
	bool keepalive;    /* the client allows another request on this connection */
	bool expect_continue;
	bool req_has_body;
	bool req_chunked;
	int64_t req_content_length;
	uint64_t req_body_bytes;
	bool head_parsed;    /* paused after on_headers_complete, not yet dispatched */
	bool upstream_ready; /* on_ready came: body may flow */
	bool body_blocked;   /* upstream output full: stop feeding the body */
	bool req_done;       /* on_message_complete seen */
	bool resp_head_sent;
	bool resp_chunked;     /* we frame the response body in chunks */
	bool resp_until_close; /* body ends with the connection */
	bool resp_done;
	bool resp_paused; /* we asked upstream to stop (client output full) */
	bool out_gated;   /* pipelined requests wait: the client is not reading our responses */
	bool in_parse;
	bool fin_sent;       /* closing: our FIN is out, lingering */
	bool peer_eof;       /* the client half-closed: its requests are answered, nothing more is read */
	bool chunk_starting; /* on_chunk_header seen: the next body span starts a chunk */
	bool check_head_end; /* paused at the end of the head: check its line ends (h1_run) */
	bool check_body_end; /* paused at the end of a chunked body: check it, then end it upstream */
	bool te_seen;        /* a (valid) Transfer-Encoding field: the body is chunked */
	bool cl_seen;        /* a (valid) Content-Length field */
	uint64_t cl_value;
	const char *exec_buf; /* the buffer llhttp_execute is working on (for position checks) */
	/* The last bytes of the input already parsed and dropped, oldest first, each run of SP/HTAB
	 * shown as one SP (h1_remember): what lies before the start of exec_buf. */
	char back[H1_BACK];
	unsigned char back_len;
	int status;
	uint64_t resp_bytes;
	int64_t resp_length; /* the upstream's Content-Length; -1: none */
	/* Plain sockets: the final response head, built in the arena and not yet queued. It goes out
	 * with the body in one sendmsg when the body completes in the same read (h1_up_on_data), else
	 * is queued before anything else is (h1_queue_head). */
	const char *pend_head;
	size_t pend_len;
	char request_id[40];
	bool draining;
	bool is_tls;  /* req->scheme "https" */
	bool sniffed; /* the first bytes were checked for the HTTP/2 preface */
};

static llhttp_settings_t h1_settings;

static void h1_process(struct h1_conn *c);
static enum llhttp_errno h1_run(struct h1_conn *c, const char *buf, size_t len);
static void h1_close(struct h1_conn *c);
static void h1_destroy(struct h1_conn *c);
static void h1_on_free(struct bevio_deferred *d);
static void h1_conn_drain(struct worker_conn *wc);
static void h1_conn_abort(struct worker_conn *wc);

/* ---- state ---- */

/* A request's first byte: its parser and head, from the arena (a chunk of the worker's cache). */
static int h1_req_begin(struct h1_conn *c)
{
	struct h1_req *x = arena_alloc(&c->arena, sizeof(*x));

	if (x == NULL)
		return JG_ERR_NOMEM;
	memset(x, 0, sizeof(*x));
	request_init(&x->req, &c->arena);
	x->field.buf.max = c->w->cfg->limits.max_header_bytes;
	x->value.buf.max = c->w->cfg->limits.max_header_bytes;
	llhttp_init(&x->parser, HTTP_REQUEST, &h1_settings);
	x->parser.data = c;
	c->x = x;
	return 0;
}

/* The request is over (or the connection): its memory goes, the arena's chunk back to the cache.
 * A header name or value that had to be copied (split across reads, rare) was malloc'ed. */
static void h1_req_end(struct h1_conn *c)
{
	if (c->x != NULL) {
		if (c->x->field.buf.cap > 0)
			jg_buf_free(&c->x->field.buf);
		if (c->x->value.buf.cap > 0)
			jg_buf_free(&c->x->value.buf);
		c->x = NULL;
	}
	arena_free(&c->arena);
}

static void h1_set_state(struct h1_conn *c, enum h1_state s)
{
	/* IDLE->HEAD->UPSTREAM->IDLE is the cycle; any state may go to CLOSING or CLOSED. */
	static const bool legal[5][5] = {
	        /* IDLE */ {false, true, false, true, true},
	        /* HEAD */ {false, false, true, true, true},
	        /* UPSTREAM */ {true, false, false, true, true},
	        /* CLOSING */ {false, false, false, false, true},
	        /* CLOSED */ {false, false, false, false, false},
	};

	if (!legal[c->state][s]) {
		log_error("http1 %s: illegal state change %s -> %s", c->peer_ip, h1_state_str(c->state),
		          h1_state_str(s));
		abort();
	}
	log_debug("http1 %s: %s -> %s", c->peer_ip, h1_state_str(c->state), h1_state_str(s));
	c->state = s;
}

static void h1_arm_timer(struct h1_conn *c, uint64_t ms)
{
	if (ms == 0)
		bevio_timer_clear(&c->timer);
	else
		bevio_timer_set(&c->timer, ms);
}

/* Reading is on in every state (a closing connection drains what the client still sends), until the
 * client's FIN: after it there is nothing more to read. */
static void h1_read_enable(struct h1_conn *c)
{
	if (c->peer_eof)
		return;
	if (c->plain)
		bevio_reader_enable(&c->rd, true);
	else
		bufferevent_enable(c->bev, EV_READ);
}

static void h1_on_flush(struct bevio_deferred *d);

/* Output was queued: write it once the current callbacks are done (one write per burst). */
static void h1_schedule_flush(struct h1_conn *c)
{
	if (c->bev != NULL)
		bevio_defer(&c->w->defer, &c->flush_d, h1_on_flush);
}

/* Queues a response head still held back (see pend_head) before any other output. */
static void h1_queue_head(struct h1_conn *c)
{
	if (c->pend_len == 0)
		return;
	evbuffer_add(bufferevent_get_output(c->bev), c->pend_head, c->pend_len);
	c->pend_len = 0;
}

/* ---- local responses ---- */

/* Writes a complete response made here (errors, 404, JWT denials). `extra` holds extra header
 * lines. Closes after it when asked to or when the request body was not read whole. */
static void h1_respond_local(struct h1_conn *c, int status, const char *reason, const char *body,
                             const char *extra, bool close_after)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t blen = body ? strlen(body) : 0;
	bool is_head = c->x != NULL && c->x->req.method_len == 4 && memcmp(c->x->req.method, "HEAD", 4) == 0;

	if ((!c->req_done && c->req_has_body) || !c->keepalive || c->draining)
		close_after = true;
	c->status = status;
	evbuffer_add_printf(
	        out, "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n%s%s\r\n", status,
	        reason, blen, extra ? extra : "", close_after ? "connection: close\r\n" : "");
	if (!is_head && blen > 0)
		evbuffer_add(out, body, blen);
	c->resp_bytes = blen;
	c->resp_done = true;
	c->resp_head_sent = true;
	h1_schedule_flush(c);
	if (close_after)
		c->keepalive = false;
}

static const char *h1_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 307:
		return "Temporary Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/* An error that ends the connection: answer (when nothing was sent yet) and close. */
static void h1_fail(struct h1_conn *c, int status, const char *text)
{
	char body[128];

	if (!c->resp_head_sent) {
		snprintf(body, sizeof(body), "%s\n", text);
		h1_respond_local(c, status, h1_reason(status), body, NULL, true);
	}
	c->keepalive = false;
	h1_close(c);
}

/* ---- access log and end of an exchange ---- */

static void h1_log_exchange(struct h1_conn *c)
{
	struct access_log_entry e;
	uint64_t now_us = jg_now_us(); /* the one clock read at the end of a request */

	worker_count_request(c->w, c->gen, c->listener_index, c->rule, c->status, c->start_us, now_us);
	if (!c->w->has_access_log || c->x == NULL)
		return;
	memset(&e, 0, sizeof(e));
	e.client = c->peer_ip;
	e.host = c->x->req.authority;
	e.method = c->x->req.method;
	e.path = c->x->req.target;
	e.route = c->rule != NULL ? c->rule->route->name : NULL;
	e.upstream = upstream_exchange_peer(c->ex);
	e.status = c->status;
	e.bytes = c->resp_bytes;
	e.duration_ms = (now_us - c->start_us) / 1000;
	e.request_id = c->request_id[0] ? c->request_id : NULL;
	e.protocol = c->x->req.http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
	e.jwt = auth_reason_str((enum auth_reason)c->x->req.jwt_reason);
	e.jwt_sub = c->x->req.jwt_sub;
	access_log_write(c->w->cfg, &e);
}

/* Resets per-request state and, when the client keeps the connection, goes back to IDLE and
 * parses any pipelined bytes. */
static void h1_exchange_done(struct h1_conn *c)
{
	h1_queue_head(c); /* before the arena that holds it is reset */
	if (c->ex != NULL) {
		upstream_cancel(c->ex); /* no-op when the exchange already ended */
		c->ex = NULL;
	}
	worker_gen_release(c->w, c->gen);
	c->gen = NULL;
	if (!c->req_done && !c->req_has_body && c->keepalive) {
		/* A body-less request answered before llhttp reached its end: finish it. */
		if (h1_run(c, "", 0) == HPE_PAUSED)
			llhttp_resume(&c->x->parser);
	}
	if (!c->keepalive || !c->req_done || c->draining) {
		h1_close(c);
		return;
	}
	/* Idle: the connection keeps no request memory. The arena chunk with the parser and the head
	 * goes back to the worker's cache (the next request takes one there, no malloc). */
	h1_req_end(c);
	c->rule = NULL;
	c->head_bytes = 0;
	c->header_count = 0;
	c->error_status = 0;
	c->head_parsed = c->upstream_ready = c->body_blocked = c->req_done = false;
	c->chunk_starting = c->check_head_end = c->check_body_end = false;
	c->te_seen = c->cl_seen = false;
	c->cl_value = 0;
	c->resp_head_sent = c->resp_chunked = c->resp_until_close = c->resp_done = false;
	c->expect_continue = c->req_has_body = c->req_chunked = false;
	c->req_body_bytes = 0;
	c->resp_bytes = 0;
	c->status = 0;
	c->request_id[0] = '\0';
	if (c->resp_paused) {
		c->resp_paused = false;
	}
	h1_set_state(c, H1_IDLE);
	h1_read_enable(c);
	h1_arm_timer(c, c->w->cfg->limits.idle_timeout_ms);
	/* Pipelined bytes, or a half-closed client: h1_process answers the next request or closes. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 || c->peer_eof)
		h1_process(c);
}

/* A local response was queued: finish the exchange once it is written. */
static void h1_local_done(struct h1_conn *c)
{
	h1_log_exchange(c);
	h1_exchange_done(c);
}

/* ---- upstream sink ---- */

static void h1_up_on_ready(void *ctx)
{
	struct h1_conn *c = ctx;

	c->upstream_ready = true;
	if (c->expect_continue && c->req_has_body && c->x->req.http_minor >= 1) {
		evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
		h1_schedule_flush(c);
	}
	if (c->req_done) {
		upstream_end_body(c->ex);
		return;
	}
	h1_process(c);
}

static void h1_up_on_drain(void *ctx)
{
	struct h1_conn *c = ctx;

	c->body_blocked = false;
	h1_read_enable(c);
	h1_process(c);
}

static inline char *h1_put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* "HTTP/1.1 NNN reason\r\n" (llhttp guarantees a three-digit status). */
static void h1_add_status_line(struct evbuffer *out, const struct response *resp)
{
	char line[16] = "HTTP/1.1 000 ";

	line[9] = (char)('0' + resp->status / 100 % 10);
	line[10] = (char)('0' + resp->status / 10 % 10);
	line[11] = (char)('0' + resp->status % 10);
	evbuffer_add(out, line, 13);
	evbuffer_add(out, resp->reason, resp->reason_len);
	evbuffer_add(out, "\r\n", 2);
}

/* Writes the response head for the client: status line, end-to-end headers, our framing. */
static void h1_up_on_head(void *ctx, const struct response *resp)
{
	struct h1_conn *c = ctx;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	bool has_connection = false;
	char *head, *p;
	size_t i, size;

	if (resp->status < 200) {
		/* Interim responses only go to HTTP/1.1 clients (RFC 9110 section 15.2). 100 is ours. */
		if (c->x->req.http_minor >= 1 && resp->status != 100) {
			h1_add_status_line(out, resp);
			for (i = 0; i < resp->n_headers; i++) {
				const struct request_header *h = &resp->headers[i];

				if (h->removed || request_header_is_hop_by_hop(h->name, h->name_len))
					continue;
				evbuffer_add(out, h->name, h->name_len);
				evbuffer_add(out, ": ", 2);
				evbuffer_add(out, h->value, h->value_len);
				evbuffer_add(out, "\r\n", 2);
			}
			evbuffer_add(out, "\r\n", 2);
			h1_schedule_flush(c);
		}
		return;
	}
	c->status = resp->status;
	c->resp_head_sent = true;
	/* The whole head is written into one block and added once (one chain, no printf). */
	size = 16 + resp->reason_len + 28 + 24 + 2;
	for (i = 0; i < resp->n_headers; i++) {
		const struct request_header *h = &resp->headers[i];

		size += h->name_len + h->value_len + 4;
		/* Only a Connection header naming something besides keep-alive/close lists headers to drop.
		 */
		if (h->name_len == 10 && memcmp(h->name, "connection", 10) == 0 &&
		    !jg_case_eq(h->value, h->value_len, "keep-alive", 10) &&
		    !jg_case_eq(h->value, h->value_len, "close", 5))
			has_connection = true;
	}
	p = head = arena_alloc(&c->arena, size);
	if (head == NULL) {
		/* Out of memory for this request: fail the connection, not the process. */
		c->keepalive = false;
		h1_close(c);
		return;
	}
	memcpy(p, "HTTP/1.1 ", 9);
	p[9] = (char)('0' + resp->status / 100 % 10);
	p[10] = (char)('0' + resp->status / 10 % 10);
	p[11] = (char)('0' + resp->status % 10);
	p[12] = ' ';
	p += 13;
	p = h1_put(p, resp->reason, resp->reason_len);
	p = h1_put(p, "\r\n", 2);
	for (i = 0; i < resp->n_headers; i++) {
		const struct request_header *h = &resp->headers[i];

		if (h->removed || request_header_is_hop_by_hop(h->name, h->name_len))
			continue;
		if (has_connection &&
		    request_header_listed_in_connection(resp->headers, resp->n_headers, h->name, h->name_len))
			continue;
		if (h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0 && resp->chunked)
			continue;
		p = h1_put(p, h->name, h->name_len);
		p = h1_put(p, ": ", 2);
		p = h1_put(p, h->value, h->value_len);
		p = h1_put(p, "\r\n", 2);
	}
	if (resp->has_body && resp->content_length < 0) {
		/* Chunked or close-delimited upstream body: re-frame for the client. */
		if (c->x->req.http_minor >= 1) {
			c->resp_chunked = true;
			p = h1_put(p, "transfer-encoding: chunked\r\n", 28);
		} else {
			c->resp_until_close = true;
			c->keepalive = false;
		}
	} else if (!resp->has_body && resp->chunked && c->x->req.method_len == 4 &&
	           memcmp(c->x->req.method, "HEAD", 4) == 0 && c->x->req.http_minor >= 1) {
		/* HEAD: tell the client what a GET would have used. */
		p = h1_put(p, "transfer-encoding: chunked\r\n", 28);
	}
	if (!c->req_done || c->draining)
		c->keepalive = false;
	if (!c->keepalive)
		p = h1_put(p, "connection: close\r\n", 19);
	else if (c->x->req.http_minor == 0)
		p = h1_put(p, "connection: keep-alive\r\n", 24);
	p = h1_put(p, "\r\n", 2);
	c->resp_length = resp->has_body ? resp->content_length : 0;
	c->pend_head = head; /* written with the first body bytes, or alone by h1_on_flush */
	c->pend_len = (size_t)(p - head);
	h1_schedule_flush(c);
}

static void h1_up_on_data(void *ctx, const char *data, size_t len)
{
	struct h1_conn *c = ctx;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (len == 0)
		return; /* "0\r\n" would end a chunked body */
	if (c->pend_len > 0 && !c->resp_chunked && c->resp_length >= 0 &&
	    c->resp_bytes + len == (uint64_t)c->resp_length) {
		/* The whole body is here: head and body leave together, from where they are. */
		struct iovec v[2] = {{(void *)c->pend_head, c->pend_len}, {(void *)data, len}};

		c->pend_len = 0;
		c->resp_bytes += len;
		bevio_write(c->bev, v, 2);
		return;
	}
	if (c->plain && !c->resp_chunked && evbuffer_get_length(out) == 0) {
		/* Nothing queued: send from where the upstream parser found the bytes (its input buffer)
		 * and copy into the output buffer only what the socket does not take. A client that keeps
		 * up costs no copy in user space. Sized bodies only: llhttp hands a sized body over once
		 * per read, a chunked one once per chunk, and a send per chunk costs more than the copy
		 * (issue 13, bench/run-body.sh: ul1m-chunked 0.58x with it). */
		struct iovec v[2];
		int n = 0;

		if (c->pend_len > 0) {
			v[n++] = (struct iovec){(void *)c->pend_head, c->pend_len};
			c->pend_len = 0;
		}
		v[n++] = (struct iovec){(void *)data, len};
		c->resp_bytes += len;
		bevio_write(c->bev, v, n);
	} else {
		h1_queue_head(c);
		if (c->resp_chunked) {
			char line[20];

			evbuffer_add(out, line, jg_chunk_line(line, len));
		}
		evbuffer_add(out, data, len);
		if (c->resp_chunked)
			evbuffer_add(out, "\r\n", 2);
		c->resp_bytes += len;
		h1_schedule_flush(c);
	}
	if (!c->resp_paused && evbuffer_get_length(out) > H1_OUT_HIGH) {
		/* Client reads slower than upstream writes: stop reading upstream until we drained. */
		c->resp_paused = true;
		upstream_pause_response(c->ex, true);
		bufferevent_setwatermark(c->bev, EV_WRITE, H1_OUT_LOW, 0);
	}
}

static void h1_up_on_end(void *ctx)
{
	struct h1_conn *c = ctx;

	/* The response is complete: write it now rather than from the deferred flush. */
	if (bevio_deferred_queued(&c->flush_d)) {
		bevio_defer_cancel(&c->flush_d);
		if (c->pend_len > 0) { /* no body bytes: the head alone, or with an empty chunked body */
			struct iovec v[2] = {{(void *)c->pend_head, c->pend_len}, {(void *)"0\r\n\r\n", 5}};

			c->pend_len = 0;
			bevio_write(c->bev, v, c->resp_chunked ? 2 : 1);
		} else {
			if (c->resp_chunked)
				evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
			bevio_flush(c->bev);
		}
	} else {
		h1_queue_head(c);
		if (c->resp_chunked)
			evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
		h1_schedule_flush(c);
	}
	c->resp_done = true;
	h1_log_exchange(c);
	c->ex = NULL;
	if (!c->req_done)
		c->keepalive = false; /* upstream answered before the body ended: do not read the rest */
	h1_exchange_done(c);
}

static void h1_up_on_error(void *ctx, enum upstream_error err, bool after_head)
{
	struct h1_conn *c = ctx;
	char body[96];

	if (after_head) {
		/* The client already has a head: the only honest signal left is closing. */
		log_info("http1 %s: upstream failed mid-response: %s", c->peer_ip, upstream_error_text(err));
		c->status = c->status ? c->status : 502;
		h1_log_exchange(c);
		c->ex = NULL;
		c->keepalive = false;
		h1_close(c);
		return;
	}
	snprintf(body, sizeof(body), "%s\n", upstream_error_text(err));
	h1_respond_local(c, upstream_error_status(err), h1_reason(upstream_error_status(err)), body, NULL,
	                 false);
	h1_log_exchange(c);
	c->ex = NULL;
	h1_exchange_done(c);
}

static const struct upstream_sink h1_sink = {
        .on_ready = h1_up_on_ready,
        .on_head = h1_up_on_head,
        .on_data = h1_up_on_data,
        .on_end = h1_up_on_end,
        .on_error = h1_up_on_error,
        .on_drain = h1_up_on_drain,
};

/* ---- the pipeline for one request ---- */

/* absolute-form (RFC 9112 section 3.2.2): the target's authority replaces Host, which is then
 * rewritten for the upstream; the target becomes origin-form. Returns 0 (also when the target is
 * not absolute-form) or JG_ERR_INVAL. */
static int h1_absolute_form(struct h1_conn *c)
{
	struct request *req = &c->x->req;
	const char *t = req->target, *end = t + req->target_len, *auth, *slash;
	size_t skip;

	if (req->target_len > 7 && jg_case_eq(t, 7, "http://", 7))
		skip = 7;
	else if (req->target_len > 8 && jg_case_eq(t, 8, "https://", 8))
		skip = 8;
	else
		return 0;
	auth = t + skip;
	slash = auth;
	while (slash < end && *slash != '/' && *slash != '?')
		slash++;
	if (slash == auth)
		return JG_ERR_INVAL;
	req->authority = (char *)auth;
	req->authority_len = (size_t)(slash - auth);
	request_header_remove(req, "host", 4);
	if (slash == end || *slash == '?') {
		/* "http://h" or "http://h?q": the path is "/" */
		size_t qlen = (size_t)(end - slash);
		char *nt = arena_alloc(req->arena, qlen + 2);

		if (nt == NULL)
			return JG_ERR_NOMEM;
		nt[0] = '/';
		memcpy(nt + 1, slash, qlen);
		nt[qlen + 1] = '\0';
		req->target = nt;
		req->target_len = qlen + 1;
	} else {
		req->target = (char *)slash;
		req->target_len = (size_t)(end - slash);
	}
	return 0;
}

/* Validates what llhttp leaves to us (RFC 9112 section 6), then routes, authenticates and starts the
 * upstream exchange. Returns false when the request was answered locally. */
static void h1_dispatch(struct h1_conn *c)
{
	struct request *req = &c->x->req;
	struct pipeline_outcome po;
	struct request_header *h;
	char extra[2048];
	size_t pos = 0;
	int hosts = 0, len;

	while ((h = request_header_next(req, "host", 4, &pos)) != NULL) {
		hosts++;
		req->authority = h->value;
		req->authority_len = h->value_len;
		pos++;
	}
	if (hosts > 1 || (hosts == 0 && req->http_minor >= 1)) {
		h1_fail(c, 400, hosts ? "multiple Host headers" : "missing Host header");
		return;
	}
	if (h1_absolute_form(c) < 0) {
		h1_fail(c, 400, "bad absolute-form request target");
		return;
	}
	if (request_finish_head(req) < 0) {
		h1_fail(c, 400, "bad request target or Host");
		return;
	}
	if (req->target[0] != '/') {
		/* origin-form only: absolute-form and asterisk-form are for forward proxies */
		h1_fail(c, 400, "request target must be a path");
		return;
	}
	h = request_header_get(req, "content-type", 12);
	req->is_grpc = h != NULL && h->value_len >= 16 && jg_case_eq(h->value, 16, "application/grpc", 16);
	req->listener_index = c->listener_index;
	req->scheme = c->is_tls ? "https" : "http";
	req->peer = (const struct sockaddr *)&c->peer;
	req->peer_len = c->peer_len;

	pipeline_run(c->w, req, &po);
	c->gen = po.gen;
	c->rule = po.rule;
	if (po.result == PIPELINE_RESPOND) {
		char body[160], hdr[600];
		const char *hdrs = NULL;

		snprintf(body, sizeof(body), "%s\n", po.message);
		if (po.www_authenticate[0]) {
			snprintf(hdr, sizeof(hdr), "www-authenticate: %s\r\n", po.www_authenticate);
			hdrs = hdr;
		} else if (po.location != NULL) {
			/* The normalised target: as long as the request line allowed, so in the arena. */
			char *loc = arena_alloc(&c->arena, po.location_len + 13);

			if (loc == NULL) {
				h1_fail(c, 503, "out of memory");
				return;
			}
			memcpy(loc, "location: ", 10);
			memcpy(loc + 10, po.location, po.location_len);
			memcpy(loc + 10 + po.location_len, "\r\n", 3);
			hdrs = loc;
		}
		h1_respond_local(c, po.status, h1_reason(po.status),
		                 po.status == 401 || po.status == 403 ? po.message : body, hdrs, false);
		h1_local_done(c);
		return;
	}
	if (c->w->cfg->limits.max_body_bytes && c->req_content_length > 0 &&
	    (uint64_t)c->req_content_length > c->w->cfg->limits.max_body_bytes) {
		h1_fail(c, 413, "request body too large");
		return;
	}
	len = pipeline_forward_headers(c->w, req, c->peer_ip, extra, sizeof(extra), c->request_id);
	if (len < 0) {
		h1_fail(c, 431, "forwarding headers too long");
		return;
	}
	if (upstream_start(c->gen->upstream, po.ref, req, extra, (size_t)len, c->req_has_body,
	                   c->req_chunked ? -1 : c->req_content_length, &h1_sink, c, &c->ex) < 0) {
		c->ex = NULL;
		h1_respond_local(c, 503, "Service Unavailable", "upstream overloaded\n", NULL, false);
		h1_local_done(c);
	}
}

/* ---- line ends and obs-fold: what strict llhttp 8 still lets through ----
 *
 * Strict llhttp still takes a bare LF as the end of the request line, of the head and of the trailer
 * section, and it unfolds obs-fold (a line starting with SP or HTAB continues the field above,
 * RFC 9112 section 5.2) without telling us. A proxy must refuse both: an upstream that reads them
 * otherwise sees other fields than the ones we routed, authorised and forwarded. llhttp hands us the
 * position of every name and value it finds, so the bytes just before those positions tell: a field
 * name must follow CR LF that does not end a fold, a value must not follow LF [OWS], and the head (and
 * a chunked body) must end in CR LF CR LF. This costs a look at a few bytes per field, no pass over the
 * input. The bytes before the current buffer come from c->back, where each run of SP/HTAB counts as
 * one SP, so a long run of whitespace cannot push what came before it out of reach. */

static inline char h1_ws(char ch)
{
	return ch == '\t' ? ' ' : ch;
}

/* Fills out[0..n) with the n bytes of input before `at` (a position in exec_buf), nearest first, each
 * run of SP/HTAB shown as one SP; '\0' where the connection's input had not begun. */
static void h1_look_back(const struct h1_conn *c, const char *at, char *out, size_t n)
{
	const char *p = at;
	size_t k = 0, j = c->back_len;

	while (k < n && p > c->exec_buf) {
		char ch = h1_ws(*--p);

		if (ch != ' ' || k == 0 || out[k - 1] != ' ')
			out[k++] = ch;
	}
	while (k < n && j > 0) {
		char ch = c->back[--j];

		if (ch != ' ' || k == 0 || out[k - 1] != ' ')
			out[k++] = ch;
	}
	while (k < n)
		out[k++] = '\0';
}

/* Keeps the last bytes of buf[0..n) (about to be dropped) in c->back, after what it held. */
static void h1_remember(struct h1_conn *c, const char *buf, size_t n)
{
	char near[H1_BACK]; /* nearest first */
	const char *p = buf + n;
	size_t k = 0, j;

	while (k < H1_BACK && p > buf) {
		char ch = h1_ws(*--p);

		if (ch != ' ' || k == 0 || near[k - 1] != ' ')
			near[k++] = ch;
	}
	for (j = c->back_len; k < H1_BACK && j > 0;) {
		char ch = c->back[--j];

		if (ch != ' ' || k == 0 || near[k - 1] != ' ')
			near[k++] = ch;
	}
	for (j = 0; j < k; j++)
		c->back[j] = near[k - 1 - j];
	c->back_len = (unsigned char)k;
}

/* The byte before a field's start, skipping one (collapsed) run of OWS. */
static inline char h1_before_ows(const char *lb)
{
	return lb[0] == ' ' ? lb[1] : lb[0];
}

/* A header or trailer field name starts at `at`: the line before must end in CR LF, and must not be
 * the continuation line of a fold (LF OWS CR LF). Returns 0 or -1 with the error set. */
static int h1_check_line_start(struct h1_conn *c, const char *at)
{
	char lb[4];

	h1_look_back(c, at, lb, sizeof(lb));
	if (lb[0] != '\n' || lb[1] != '\r') {
		c->error_text = "line not ended by CR LF";
		return -1;
	}
	if (h1_before_ows(lb + 2) == '\n') {
		c->error_text = "obsolete line folding";
		return -1;
	}
	return 0;
}

/* llhttp paused right after the LF that ends the head or the trailer section at `pos`: the last two
 * lines must end in CR LF (the empty one too), and the last field line must not be a fold. */
static int h1_check_section_end(struct h1_conn *c, const char *pos)
{
	char lb[6];

	h1_look_back(c, pos, lb, sizeof(lb));
	if (lb[0] != '\n' || lb[1] != '\r' || lb[2] != '\n' || lb[3] != '\r') {
		c->error_text = "line not ended by CR LF";
		return -1;
	}
	if (h1_before_ows(lb + 4) == '\n') {
		c->error_text = "obsolete line folding";
		return -1;
	}
	return 0;
}

/* ---- request parser callbacks ---- */

static int h1_on_message_begin(llhttp_t *p)
{
	struct h1_conn *c = p->data;

	c->start_us = jg_now_us();
	jg_piece_clear(&c->x->field);
	jg_piece_clear(&c->x->value);
	return 0;
}

static int h1_head_add(struct h1_conn *c, size_t len)
{
	c->head_bytes += len;
	if (c->head_bytes > c->w->cfg->limits.max_header_bytes) {
		c->error_status = 431;
		c->error_text = "request header fields too large";
		return -1;
	}
	return 0;
}

static int h1_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct h1_conn *c = p->data;

	if (jg_piece_len(&c->x->value) + len > c->w->cfg->limits.max_request_line) {
		c->error_status = 414;
		c->error_text = "request line too long";
		return -1;
	}
	if (h1_head_add(c, len) < 0)
		return -1;
	return jg_piece_add(&c->x->value, at, len) < 0 ? -1 : 0;
}

static int h1_on_url_complete(llhttp_t *p)
{
	struct h1_conn *c = p->data;
	const char *t = jg_piece_data(&c->x->value);
	size_t i, len = jg_piece_len(&c->x->value);

	/* llhttp lets HTAB and FF through in a target; no whitespace or control byte belongs there
	 * (RFC 9112 section 3.2), and an upstream that splits the request line on any whitespace would
	 * see another target than the one we routed and authorised. */
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)t[i];

		if (ch <= 0x20 || ch == 0x7f) {
			c->error_status = 400;
			c->error_text = "invalid character in request target";
			return -1;
		}
	}
	c->x->req.target = arena_strndup(&c->arena, jg_piece_data(&c->x->value), jg_piece_len(&c->x->value));
	c->x->req.target_len = jg_piece_len(&c->x->value);
	jg_piece_clear(&c->x->value);
	return c->x->req.target == NULL ? -1 : 0;
}

static int h1_on_method_complete(llhttp_t *p)
{
	struct h1_conn *c = p->data;
	const char *m = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));

	c->x->req.method = (char *)m;
	c->x->req.method_len = strlen(m);
	if (llhttp_get_method(p) == HTTP_CONNECT) {
		c->error_status = 405;
		c->error_text = "CONNECT is not supported";
		return -1;
	}
	return 0;
}

static int h1_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct h1_conn *c = p->data;

	/* (llhttp may report empty spans, at other positions: only a name's first byte is checked) */
	if (len > 0 && jg_piece_len(&c->x->field) == 0 && h1_check_line_start(c, at) < 0)
		return -1;
	if (h1_head_add(c, len) < 0)
		return -1;
	return jg_piece_add(&c->x->field, at, len) < 0 ? -1 : 0;
}

static int h1_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct h1_conn *c = p->data;

	char lb[2];

	/* llhttp 8 unfolds obs-fold silently: a span of a value that follows LF [OWS] is a
	 * continuation line. RFC 9112 section 5.2 allows rejecting it; a proxy must. (A span that
	 * only continues the value into a new read buffer follows a byte of the value.) An empty
	 * value is reported as an empty span at the start of the next line: nothing to check there; a
	 * fold that adds only whitespace is found at the next line start or at the end of the head. */
	if (len == 0)
		return 0;
	h1_look_back(c, at, lb, sizeof(lb));
	if (h1_before_ows(lb) == '\n') {
		c->error_text = "obsolete line folding";
		return -1;
	}
	if (h1_head_add(c, len) < 0)
		return -1;
	return jg_piece_add(&c->x->value, at, len) < 0 ? -1 : 0;
}

/* Transfer-Encoding: only "chunked", once (RFC 9112 section 6.1). Returns 0, or 400 / 501. */
static int h1_transfer_encoding_check(const char *v, size_t len)
{
	size_t i = 0;
	int n = 0;

	while (i < len) {
		size_t start, end;

		while (i < len && (v[i] == ' ' || v[i] == '\t'))
			i++;
		start = i;
		while (i < len && v[i] != ',')
			i++;
		end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end == start)
			return 400; /* empty list element: ",chunked" */
		if (!jg_case_eq(v + start, end - start, "chunked", 7)) {
			size_t k;

			for (k = start; k < end; k++) {
				char ch = v[k];

				if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
					return 400;
			}
			return 501;
		}
		if (++n > 1)
			return 400; /* "chunked, chunked" */
		if (i < len)
			i++;
	}
	return n == 1 ? 0 : 400;
}

static int h1_on_header_value_complete(llhttp_t *p)
{
	struct h1_conn *c = p->data;
	const char *v = jg_piece_data(&c->x->value), *name = jg_piece_data(&c->x->field);
	size_t len = jg_piece_len(&c->x->value), name_len = jg_piece_len(&c->x->field);
	int rc;

	/* llhttp 8 still unfolds obs-fold and passes some control bytes: refuse them here. */
	if (!request_field_value_ok(v, len)) {
		c->error_status = 400;
		c->error_text = "invalid character in header value";
		return -1;
	}
	if (!request_field_name_ok(name, name_len)) {
		c->error_status = 400;
		c->error_text = name_len == 0 ? "empty header name" : "invalid character in header name";
		return -1;
	}
	if (++c->header_count > c->w->cfg->limits.max_header_count) {
		c->error_status = 431;
		c->error_text = "too many header fields";
		return -1;
	}
	/* OWS around the value is not part of it (RFC 9110 section 5.5; llhttp drops the leading OWS and
	 * leaves the trailing). Framing fields are judged without it too: "Content-Length: 3 " is 3. */
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	/* Framing is decided here, from our own reading of the fields; h1_on_headers_complete refuses the
	 * request when llhttp reads them otherwise (one source of truth, checked before anything goes
	 * upstream). Several Content-Length fields, even equal ones, or both framing fields: 400
	 * (RFC 9112 sections 6.1 and 6.3: a proxy must not guess). */
	if (jg_case_eq(name, name_len, "content-length", 14)) {
		int64_t cl = request_content_length_parse(v, len);

		if (cl < 0 || c->cl_seen || c->te_seen) {
			c->error_status = 400;
			c->error_text = "invalid Content-Length";
			return -1;
		}
		c->cl_seen = true;
		c->cl_value = (uint64_t)cl;
	}
	if (jg_case_eq(name, name_len, "transfer-encoding", 17)) {
		rc = h1_transfer_encoding_check(v, len);
		if (rc != 0 || llhttp_get_http_minor(p) == 0 || c->te_seen || c->cl_seen) {
			c->error_status = rc ? rc : 400;
			c->error_text =
			        rc == 501 ? "transfer coding not implemented" : "invalid Transfer-Encoding";
			return -1;
		}
		c->te_seen = true;
	}
	rc = request_header_add(&c->x->req, name, name_len, v, len);
	jg_piece_clear(&c->x->field);
	jg_piece_clear(&c->x->value);
	if (rc < 0) {
		c->error_status = rc == JG_ERR_LIMIT ? 431 : 503;
		c->error_text = "cannot store header";
		return -1;
	}
	return 0;
}

static int h1_on_headers_complete(llhttp_t *p)
{
	struct h1_conn *c = p->data;
	struct request_header *h;

	c->x->req.http_major = llhttp_get_http_major(p);
	c->x->req.http_minor = llhttp_get_http_minor(p);
	if (c->x->req.http_major != 1) {
		c->error_status = 505;
		c->error_text = "HTTP version not supported";
		return -1;
	}
	/* One source of truth for framing: ours (h1_on_header_value_complete), and llhttp must have read
	 * the same, else it would cut the body elsewhere than the upstream does ("chunked<HTAB>" is
	 * chunked for us, as RFC 9110 section 5.5 wants, but not for llhttp 8). Refused before any byte
	 * goes upstream. */
	if (c->te_seen != ((p->flags & F_CHUNKED) != 0) ||
	    c->cl_seen != ((p->flags & F_CONTENT_LENGTH) != 0) ||
	    (c->cl_seen && c->cl_value != p->content_length)) {
		c->error_status = 400;
		c->error_text = "ambiguous message framing";
		return -1;
	}
	c->keepalive = llhttp_should_keep_alive(p);
	c->req_chunked = c->te_seen;
	c->req_content_length = c->cl_seen ? (int64_t)c->cl_value : 0;
	c->req_has_body = c->req_chunked || c->req_content_length > 0;
	c->x->req.has_body = c->req_has_body;
	h = request_header_get(&c->x->req, "expect", 6);
	if (h != NULL) {
		if (!jg_case_eq(h->value, h->value_len, "100-continue", 12)) {
			c->error_status = 400;
			c->error_text = "unsupported Expect";
			return -1;
		}
		c->expect_continue = true;
	}
	c->head_parsed = true;
	c->check_head_end = true;
	return HPE_PAUSED;
}

/* RFC 9112 section 7.1 wants CR LF after a chunk size (lenient llhttp took a bare CR; strict llhttp
 * does not, and h1_on_body checks it again where the data starts). */
static int h1_on_chunk_header(llhttp_t *p)
{
	struct h1_conn *c = p->data;

	c->chunk_starting = true;
	return 0;
}

static int h1_on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
	struct h1_conn *c = p->data;

	if (memchr(at, '\r', len) != NULL || memchr(at, '\n', len) != NULL) {
		c->error_status = 400;
		c->error_text = "invalid chunk extension";
		return -1;
	}
	return 0;
}

static int h1_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct h1_conn *c = p->data;
	int rc;

	if (c->chunk_starting) {
		char lb[2]; /* the two bytes before the chunk data must be CR LF */

		c->chunk_starting = false;
		h1_look_back(c, at, lb, sizeof(lb));
		if (lb[1] != '\r' || lb[0] != '\n') {
			c->error_status = 400;
			c->error_text = "invalid chunk size line";
			return -1;
		}
	}
	c->req_body_bytes += len;
	if (c->w->cfg->limits.max_body_bytes && c->req_body_bytes > c->w->cfg->limits.max_body_bytes) {
		c->error_status = 413;
		c->error_text = "request body too large";
		return -1;
	}
	if (c->ex == NULL)
		return 0; /* answered locally: the body is read and dropped */
	rc = upstream_send_body(c->ex, at, len);
	if (rc == 1) {
		c->body_blocked = true;
		return HPE_PAUSED;
	}
	return 0;
}

static int h1_on_message_complete(llhttp_t *p)
{
	struct h1_conn *c = p->data;

	c->req_done = true;
	if (c->req_chunked)
		c->check_body_end = true; /* ended upstream once h1_run has checked the trailer section */
	else if (c->ex != NULL)
		upstream_end_body(c->ex);
	return HPE_PAUSED;
}

/* Fills the shared llhttp settings once (pthread_once: every worker thread calls h1_settings_init on
 * accept, and a worker already parsing must never see the table being rewritten). */
static void h1_settings_fill(void)
{
	llhttp_settings_init(&h1_settings);
	h1_settings.on_message_begin = h1_on_message_begin;
	h1_settings.on_url = h1_on_url;
	h1_settings.on_url_complete = h1_on_url_complete;
	h1_settings.on_method_complete = h1_on_method_complete;
	h1_settings.on_header_field = h1_on_header_field;
	h1_settings.on_header_value = h1_on_header_value;
	h1_settings.on_header_value_complete = h1_on_header_value_complete;
	h1_settings.on_headers_complete = h1_on_headers_complete;
	h1_settings.on_body = h1_on_body;
	h1_settings.on_chunk_header = h1_on_chunk_header;
	h1_settings.on_chunk_extension_name = h1_on_chunk_extension;
	h1_settings.on_chunk_extension_value = h1_on_chunk_extension;
	h1_settings.on_message_complete = h1_on_message_complete;
}

static void h1_settings_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, h1_settings_fill);
}

/* ---- input processing ---- */

/* May the parser consume more bytes now? */
/* A client that pipelines requests but does not read the responses would make us buffer every
 * response: the next request is only started once the output is below H1_OUT_HIGH. */
static bool h1_output_full(const struct h1_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev)) > H1_OUT_HIGH;
}

static bool h1_can_parse(const struct h1_conn *c)
{
	if (c->state == H1_IDLE)
		return !c->head_parsed && !h1_output_full(c);
	if (c->state == H1_HEAD)
		return !c->head_parsed;
	if (c->state != H1_UPSTREAM || c->req_done)
		return false;
	/* Body bytes flow once upstream is ready; a local answer (ex == NULL) never waits. */
	if (c->ex != NULL && (!c->upstream_ready || c->body_blocked))
		return false;
	return c->ex != NULL;
}

/* Drops n parsed bytes of the input, remembering the last ones for the look-back checks. */
static void h1_consumed(struct h1_conn *c, struct evbuffer *in, const char *buf, size_t n)
{
	h1_remember(c, buf, n);
	evbuffer_drain(in, n);
}

/* Runs llhttp on buf[0..len) and, when it paused at the end of the head or of a chunked body, checks
 * how that section ended before anything acts on it (the head is dispatched, the body ended upstream
 * by the caller only after this). Returns llhttp's result, or HPE_USER with the error set. */
static enum llhttp_errno h1_run(struct h1_conn *c, const char *buf, size_t len)
{
	enum llhttp_errno rc;

	c->exec_buf = buf;
	rc = llhttp_execute(&c->x->parser, buf, len);
	if (rc == HPE_PAUSED && (c->check_head_end || c->check_body_end)) {
		c->check_head_end = false;
		if (h1_check_section_end(c, llhttp_get_error_pos(&c->x->parser)) < 0) {
			c->check_body_end = false;
			c->error_status = 400;
			return HPE_USER;
		}
	}
	return rc;
}

/* A chunked body passed h1_run's check: the upstream may now see its end. */
static void h1_end_checked_body(struct h1_conn *c)
{
	if (!c->check_body_end)
		return;
	c->check_body_end = false;
	if (c->ex != NULL)
		upstream_end_body(c->ex);
}

/* After the client's FIN (h1_on_peer_eof), once the buffered input is parsed as far as it goes:
 * closes when nothing the client sent can still be answered. A request already handed on keeps
 * its exchange (the response is written, or the write fails and h1_on_event aborts it). */
static void h1_settle_peer_eof(struct h1_conn *c)
{
	size_t avail;

	if (!c->peer_eof || c->in_parse || c->state == H1_CLOSING || c->state == H1_CLOSED)
		return;
	avail = evbuffer_get_length(bufferevent_get_input(c->bev));
	switch (c->state) {
	case H1_IDLE:
		/* Every request was answered (bytes still buffered wait for the client to read our
		 * output, h1_after_write): flush the last answers, then close. */
		if (avail == 0 && !c->head_parsed) {
			c->keepalive = false;
			h1_close(c);
		}
		break;
	case H1_HEAD:
		/* A head cut by the FIN can never complete: nothing to answer. */
		if (avail == 0 && !c->head_parsed) {
			log_info("http1 %s: client closed in the middle of a request head", c->peer_ip);
			c->keepalive = false;
			h1_close(c);
		}
		break;
	case H1_UPSTREAM:
		/* The body is cut short (a request body is never delimited by the close, RFC 9112
		 * section 6.3): the exchange cannot complete. Waiting on the upstream (!h1_can_parse)
		 * is not this: then more of the buffered body is still to come. */
		if (avail == 0 && !c->req_done && h1_can_parse(c)) {
			log_info("http1 %s: client closed in the middle of a request body", c->peer_ip);
			upstream_cancel(c->ex);
			c->ex = NULL;
			if (!c->resp_done) {
				c->status = c->status ? c->status : 499; /* client closed first */
				h1_log_exchange(c);
			}
			c->keepalive = false;
			h1_destroy(c);
		}
		break;
	default:
		break;
	}
}

/* Feeds buffered input to llhttp while the state allows, and dispatches a complete head. */
static void h1_process(struct h1_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	bool kicked = false;

	if (c->in_parse)
		return;
	c->in_parse = true;
	for (;;) {
		struct evbuffer_iovec v;
		enum llhttp_errno rc;
		size_t avail = evbuffer_get_length(in);

		if (c->state == H1_CLOSING || c->state == H1_CLOSED)
			break;
		if (c->head_parsed && c->state != H1_UPSTREAM) {
			c->head_parsed = false;
			bevio_timer_clear(&c->timer);
			h1_set_state(c, H1_UPSTREAM);
			h1_dispatch(c);
			continue;
		}
		if (!h1_can_parse(c))
			break;
		if (avail == 0) {
			/* llhttp reaches on_message_complete only on its next run after a pause (after the
			 * head of a body-less request, or after the last body bytes when the upstream
			 * was full): give it one empty run per pass. */
			if (c->state == H1_UPSTREAM && !c->req_done && !kicked) {
				kicked = true;
				rc = h1_run(c, "", 0);
				if (rc == HPE_PAUSED) {
					llhttp_resume(&c->x->parser);
					h1_end_checked_body(c);
					continue;
				}
				if (rc == HPE_OK)
					continue;
				goto bad;
			}
			break;
		}
		if (c->state == H1_IDLE) {
			if (h1_req_begin(c) < 0) {
				log_warn("http1 %s: out of memory for a request", c->peer_ip);
				c->in_parse = false;
				h1_destroy(c);
				return;
			}
			h1_set_state(c, H1_HEAD);
			h1_arm_timer(c, c->w->cfg->limits.header_timeout_ms);
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		rc = h1_run(c, v.iov_base, v.iov_len);
		/* A URL or header span still borrowed from this chunk is copied before the chunk is drained
		 * (jg_piece; the empty runs above only ever lend the static ""). */
		if (jg_piece_keep(&c->x->field) < 0 || jg_piece_keep(&c->x->value) < 0) {
			c->error_status = 503;
			c->error_text = "out of memory";
			rc = HPE_USER;
		}
		if (rc == HPE_OK) {
			h1_consumed(c, in, v.iov_base, v.iov_len);
			continue;
		}
		if (rc == HPE_PAUSED) {
			h1_consumed(c, in, v.iov_base,
			            (size_t)(llhttp_get_error_pos(&c->x->parser) - (const char *)v.iov_base));
			llhttp_resume(&c->x->parser);
			h1_end_checked_body(c);
			continue;
		}
		if (rc == HPE_PAUSED_UPGRADE) {
			/* We forwarded without the Upgrade; what follows is a next request. */
			h1_consumed(c, in, v.iov_base,
			            (size_t)(llhttp_get_error_pos(&c->x->parser) - (const char *)v.iov_base));
			llhttp_resume_after_upgrade(&c->x->parser);
			continue;
		}
	bad:
		log_info("http1 %s: bad request: %s", c->peer_ip,
		         c->error_text ? c->error_text : llhttp_get_error_reason(&c->x->parser));
		c->in_parse = false;
		if (c->ex != NULL) {
			upstream_cancel(c->ex);
			c->ex = NULL;
		}
		c->status = c->error_status ? c->error_status : 400;
		if (!c->resp_head_sent)
			h1_log_exchange(c);
		h1_fail(c, c->status, c->error_text ? c->error_text : "bad request");
		return;
	}
	c->in_parse = false;
	if (c->state == H1_IDLE && !c->out_gated && evbuffer_get_length(in) > 0 && h1_output_full(c)) {
		/* Resumed by h1_after_write once the client has read down to the low mark. */
		c->out_gated = true;
		bufferevent_setwatermark(c->bev, EV_WRITE, H1_OUT_LOW, 0);
	}
	if (c->plain)
		bevio_reader_poke(&c->rd); /* input was consumed: read again if it had stopped at the mark */
	/* A local answer whose request body is still arriving: keep reading to drop it. */
	if (c->state == H1_UPSTREAM && c->ex == NULL && c->resp_done && !c->req_done) {
		h1_close(c);
		return;
	}
	h1_settle_peer_eof(c);
}

/* ---- socket callbacks ---- */

/* h2c with prior knowledge (RFC 9113 section 3.3): when a new connection starts with the HTTP/2
 * preface, the HTTP/2 codec takes the bufferevent and the bytes read so far. Returns true when the
 * connection was handed over or more bytes are needed to decide. */
static bool h1_sniff_http2(struct h1_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t avail = evbuffer_get_length(in);
	char head[HTTP2_PREFACE_LEN];
	size_t n = avail < HTTP2_PREFACE_LEN ? avail : HTTP2_PREFACE_LEN;
	struct bufferevent *bev = c->bev;

	if (c->state != H1_IDLE)
		return false;
	evbuffer_copyout(in, head, n);
	if (memcmp(head, HTTP2_PREFACE, n) != 0) {
		c->sniffed = true;
		return false;
	}
	if (n < HTTP2_PREFACE_LEN)
		return true; /* a prefix of the preface: wait (the header timer still runs) */
	/* Hand over: this object lets go of the socket without closing it. Its deferred free gives the
	 * connection count back, so the HTTP/2 side takes one of its own. */
	c->sniffed = true;
	bevio_timer_stop(&c->timer);
	if (c->plain)
		bevio_reader_stop(&c->rd);
	bevio_defer_cancel(&c->flush_d);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	c->bev = NULL;
	h1_set_state(c, H1_CLOSING);
	h1_set_state(c, H1_CLOSED);
	bevio_defer(&c->w->defer, &c->free_d, h1_on_free);
	atomic_fetch_add(&worker_open_conns, 1);
	if (http2_conn_takeover(c->w, bev, (const struct sockaddr *)&c->peer, c->peer_len, c->listener_index,
	                        c->is_tls) < 0)
		atomic_fetch_sub(&worker_open_conns, 1);
	return true;
}

static void h1_on_read(struct bufferevent *bev, void *arg)
{
	struct h1_conn *c = arg;

	if (c->state == H1_CLOSING) {
		evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	if (!c->sniffed && h1_sniff_http2(c))
		return;
	h1_process(c);
}

/* The output drained (written by us or by libevent): continue a close, or resume the upstream. */
static void h1_after_write(struct h1_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->state == H1_CLOSING) {
		if (evbuffer_get_length(out) == 0)
			h1_close(c);
		return;
	}
	if (c->resp_paused && evbuffer_get_length(out) <= H1_OUT_LOW) {
		c->resp_paused = false;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		if (c->ex != NULL)
			upstream_pause_response(c->ex, false);
	}
	if (c->out_gated && !c->in_parse && evbuffer_get_length(out) <= H1_OUT_LOW) {
		c->out_gated = false;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		h1_process(c);
	}
}

static void h1_on_write(struct bufferevent *bev, void *arg)
{
	struct h1_conn *c = arg;

	/* Back to direct writes once libevent has drained what the socket refused. */
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
	h1_after_write(c);
}

static void h1_on_flush(struct bevio_deferred *d)
{
	struct h1_conn *c = container_of(d, struct h1_conn, flush_d);

	if (c->bev == NULL || c->state == H1_CLOSED)
		return;
	h1_queue_head(c);
	if (bevio_flush(c->bev))
		h1_after_write(c);
}

/* The client sent FIN: a half-close (`nc -N`, `shutdown(SHUT_WR)` after an HTTP/1.0 request) or a
 * full close, which look the same until we write. As HAProxy does by default (no abortonclose), what
 * the client sent before it is still answered: pipelined requests included, in order. A client that
 * closed fully makes the first write fail (RST), and that aborts the exchange (h1_on_event). */
static void h1_on_peer_eof(struct h1_conn *c)
{
	log_debug("http1 %s: client half-closed in state %s", c->peer_ip, h1_state_str(c->state));
	c->peer_eof = true;
	if (c->plain)
		bevio_reader_enable(&c->rd, false);
	else
		bufferevent_disable(c->bev, EV_READ);
	if (c->state == H1_CLOSING) {
		if (c->fin_sent)
			h1_destroy(c); /* lingering after our FIN: both sides are done */
		return;                /* still flushing our last bytes */
	}
	h1_process(c); /* parses what is buffered; h1_settle_peer_eof closes when nothing is left */
}

static void h1_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct h1_conn *c = arg;

	if ((what & BEV_EVENT_READING) && (what & BEV_EVENT_EOF) && c->state != H1_CLOSED) {
		h1_on_peer_eof(c);
		return;
	}
	/* Error or timeout from the client side (a write that failed: the client is gone): nothing
	 * more can be answered. */
	if (c->ex != NULL) {
		upstream_cancel(c->ex);
		if (!c->resp_done) {
			c->status =
			        c->status ? c->status : 499; /* client closed first (nginx's convention) */
			h1_log_exchange(c);
		}
		c->ex = NULL;
	}
	c->keepalive = false;
	h1_destroy(c);
}

static void h1_on_timer(void *arg)
{
	struct h1_conn *c = arg;

	if (c->state == H1_CLOSED)
		return;
	if (c->state == H1_HEAD) {
		/* Slow head (slowloris): 408, then close. */
		log_info("http1 %s: request head timeout", c->peer_ip);
		c->status = 408;
		h1_fail(c, 408, "request header timeout");
		return;
	}
	/* Idle keep-alive connection, or a close whose flush or linger bound passed. */
	c->keepalive = false;
	if (c->state == H1_IDLE)
		h1_close(c);
	else
		h1_destroy(c);
}

static void h1_on_free(struct bevio_deferred *d)
{
	struct h1_conn *c = container_of(d, struct h1_conn, free_d);

	bevio_timer_stop(&c->timer);
	worker_gen_release(c->w, c->gen);
	worker_conn_removed(c->w, &c->wc);
	h1_req_end(c);
	free(c);
}

/* Releases the socket now and frees the connection from a deferred event. */
static void h1_destroy(struct h1_conn *c)
{
	if (c->state == H1_CLOSED)
		return;
	if (c->ex != NULL) {
		upstream_cancel(c->ex);
		c->ex = NULL;
	}
	if (c->state != H1_CLOSING)
		h1_set_state(c, H1_CLOSING);
	h1_set_state(c, H1_CLOSED);
	bevio_timer_stop(&c->timer);
	bevio_defer_cancel(&c->flush_d);
	if (c->plain)
		bevio_reader_stop(&c->rd);
	bufferevent_free(c->bev);
	c->bev = NULL;
	bevio_defer(&c->w->defer, &c->free_d, h1_on_free);
}

/* Graceful close: flush the output (bounded by H1_FLUSH_MS), send FIN, then read and drop what the
 * client still sends for up to H1_LINGER_MS before closing. Closing with unread input would make
 * the kernel send RST, which can destroy the answer (an error status) before the client reads it. */
static void h1_close(struct h1_conn *c)
{
	if (c->state == H1_CLOSED)
		return;
	if (c->ex != NULL) {
		upstream_cancel(c->ex);
		c->ex = NULL;
	}
	if (c->state != H1_CLOSING) {
		h1_set_state(c, H1_CLOSING);
		h1_read_enable(c);
	}
	h1_queue_head(c);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		h1_arm_timer(c, H1_FLUSH_MS);
		h1_schedule_flush(c);
		return;
	}
	if (!c->fin_sent && !c->peer_eof) {
		c->fin_sent = true;
		bevio_shutdown_write(c->bev); /* TLS: close_notify, then FIN */
		h1_arm_timer(c, H1_LINGER_MS);
		return;
	}
	h1_destroy(c); /* lingered, or the client sent its FIN already: nothing can reset our answer */
}

int http1_conn_accept(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peer_len,
                      int listener_index)
{
	struct bufferevent *bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);

	if (bev == NULL) {
		close(fd);
		return JG_ERR_NOMEM;
	}
	return http1_conn_accept_bev(w, bev, peer, peer_len, listener_index, false);
}

int http1_conn_accept_bev(struct worker *w, struct bufferevent *bev, const struct sockaddr *peer,
                          socklen_t peer_len, int listener_index, bool is_tls)
{
	struct h1_conn *c;

	h1_settings_init();
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		bufferevent_free(bev);
		return JG_ERR_NOMEM;
	}
	c->w = w;
	c->is_tls = is_tls;
	/* h2c prior knowledge is for cleartext only (RFC 9113 section 3.3). On TLS, ALPN has decided
	 * (tls.c): a connection that agreed on http/1.1, or on nothing, speaks HTTP/1.1 to the end, and
	 * the HTTP/2 preface is then an HTTP/1.1 request that llhttp refuses. */
	c->sniffed = is_tls;
	c->listener_index = listener_index;
	jg_sockaddr_set(&c->peer, &c->peer_len, c->peer_ip, sizeof(c->peer_ip), peer, peer_len);
	c->bev = bev;
	arena_init_cached(&c->arena, &w->arenas, H1_ARENA_LIMIT);
	bevio_timer_init(&c->timer, w->base, &w->timeouts, h1_on_timer, c);
	c->plain = bevio_is_plain(c->bev);
	bufferevent_setcb(c->bev, h1_on_read, h1_on_write, h1_on_event, c);
	if (!c->plain) /* the plain-socket reader keeps the mark itself, without evbuffer callbacks */
		bufferevent_setwatermark(c->bev, EV_READ, 0, H1_IN_HIGH);
	c->state = H1_IDLE;
	c->keepalive = true;
	c->wc.drain = h1_conn_drain;
	c->wc.abort = h1_conn_abort;
	c->wc.listener_index = listener_index;
	c->wc.proto = STATS_PROTO_HTTP1;
	worker_conn_added(w, &c->wc);
	/* The first request must arrive within the header timeout. */
	h1_arm_timer(c, w->cfg->limits.header_timeout_ms);
	/* A new socket bufferevent starts with EV_WRITE enabled; plain sockets write directly and read
	 * through their own reader (bevio.h). */
	if (c->plain) {
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		bevio_reader_init(&c->rd, w->base, c->bev, H1_IN_HIGH, h1_on_read, h1_on_event, c);
		bevio_reader_enable(&c->rd, true);
	} else {
		bevio_tls_init(c->bev);
		bufferevent_disable(c->bev, EV_WRITE);
		bufferevent_enable(c->bev, EV_READ);
	}
	/* After a TLS handshake the first request may already be buffered. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		h1_on_read(c->bev, c);
	return 0;
}

/* Drain: a connection that is idle is closed now; a busy one closes after its current response. */
static void h1_conn_drain(struct worker_conn *wc)
{
	struct h1_conn *c = container_of(wc, struct h1_conn, wc);

	c->draining = true;
	if (c->state == H1_IDLE) {
		c->keepalive = false;
		h1_close(c);
	}
}

/* Drain bound passed: close now, whatever the connection is doing. */
static void h1_conn_abort(struct worker_conn *wc)
{
	struct h1_conn *c = container_of(wc, struct h1_conn, wc);

	c->keepalive = false;
	h1_destroy(c);
}
