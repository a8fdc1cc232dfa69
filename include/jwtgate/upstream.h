/* upstream.h: per-worker upstream pools and the upstream side of one exchange.
 *
 * The downstream codec (HTTP/1.1 today, HTTP/2 later) hands a protocol-neutral request to
 * upstream_start() with a sink of callbacks; the upstream module picks an endpoint (load balancing,
 * ejection of failing endpoints, retry of a failed connect on another endpoint), takes a pooled
 * keep-alive connection or opens one, writes the request head, streams the body the codec feeds it,
 * parses the response and streams it back through the sink. Bounded buffers both ways: a full side
 * pauses the other (backpressure). Nothing here knows the downstream wire format. */
#ifndef JWTGATE_UPSTREAM_H
#define JWTGATE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>
#include <event2/dns.h>

#include "jwtgate/config.h"
#include "jwtgate/request.h"

/* Why an exchange failed; the codec turns it into a status (before a response head) or an abort. */
enum upstream_error {
	UPSTREAM_ERR_CONNECT = 1, /* no connection could be made (502) */
	UPSTREAM_ERR_RESET,       /* connection closed or reset, or bad response (502) */
	UPSTREAM_ERR_NO_HEALTHY,  /* every endpoint ejected / none resolved / overloaded (503) */
	UPSTREAM_ERR_TIMEOUT,     /* connect or request timeout (504) */
	UPSTREAM_ERR_NOMEM,       /* (503) */
};

int upstream_error_status(enum upstream_error err);
const char *upstream_error_text(enum upstream_error err);

struct upstream_exchange;

/* Callbacks into the downstream codec. `ctx` is the codec's own object. None of them may free the
 * exchange; they may call upstream_cancel() only from on_* of a *different* event (the upstream
 * module defers its own cleanup, so calling upstream_cancel from within a callback is allowed too). */
struct upstream_sink {
	/* Connected and the request head is written: the codec may now feed the request body. */
	void (*on_ready)(void *ctx);
	/* Interim (1xx) or final response head. For 1xx, more heads follow. */
	void (*on_head)(void *ctx, const struct response *resp);
	/* A piece of response body (de-chunked). */
	void (*on_data)(void *ctx, const char *data, size_t len);
	/* Response trailers (HTTP/2: grpc-status, grpc-message; HTTP/1.1 chunked trailers are dropped).
	 * Called at most once, just before on_end. May be NULL in codecs that drop trailers. */
	void (*on_trailers)(void *ctx, const struct request_header *trailers, size_t n);
	/* Response complete. The exchange is over and must not be used again. */
	void (*on_end)(void *ctx);
	/* Failure; `after_head` says whether on_head(final) was already called. The exchange is over. */
	void (*on_error)(void *ctx, enum upstream_error err, bool after_head);
	/* The request-body buffer drained below its low mark after upstream_send_body returned 1. */
	void (*on_drain)(void *ctx);
};

struct upstream_worker;
struct worker;

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* Builds the TLS client context of a backend with a tls block (or protocol H2): peer verification with
 * its CA bundle (files, inline PEM) or the system store, TLS 1.2+, ALPN h2 (protocol H2) or http/1.1.
 * Built once per configuration snapshot on the control thread (so a CA bundle that cannot be loaded
 * refuses a reload) and shared by every worker's pool. Returns NULL and writes why to err. */
struct ssl_ctx_st *upstream_tls_ctx_new(const struct config_backend *be, FILE *err);
struct health_shared;

/* Per-worker state: pools per backend and endpoint, resolver for FQDN endpoints. backend_tls (may be
 * NULL) has one entry per cfg->backends, the client context of that backend or NULL for cleartext;
 * each pool takes its own reference. `health` (may be NULL) holds the active health check verdicts of
 * cfg's endpoints: an unhealthy one gets no new request. cfg and health must outlive the result. */
struct upstream_worker *upstream_worker_new(struct event_base *base, const struct config *cfg,
                                            struct ssl_ctx_st *const *backend_tls,
                                            const struct health_shared *health);
void upstream_worker_free(struct upstream_worker *uw);
/* Closes idle pooled connections (drain on shutdown). */
void upstream_worker_close_idle(struct upstream_worker *uw);

/* Starts an exchange for `req` (whose arena must outlive the exchange) towards backend `ref`.
 * `extra_head` holds extra header lines (each "name: value\r\n") that the codec adds, e.g.
 * X-Forwarded-For; `has_body`/`content_length` (-1 = unknown: chunked) describe the request body.
 * Returns 0 and sets *out, or a negative JG_ERR_* (then nothing was started). */
int upstream_start(struct upstream_worker *uw, const struct config_backend_ref *ref,
                   const struct request *req, const char *extra_head, size_t extra_len, bool has_body,
                   int64_t content_length, const struct upstream_sink *sink, void *ctx,
                   struct upstream_exchange **out);

/* Feeds request body bytes. Returns 0, 1 when the codec should stop feeding until on_drain, or a
 * negative JG_ERR_* (the exchange then reports on_error). Only after on_ready. */
int upstream_send_body(struct upstream_exchange *ex, const char *data, size_t len);
/* Ends the request body. */
int upstream_end_body(struct upstream_exchange *ex);
/* Backpressure from the downstream side: stop / resume reading the response. */
void upstream_pause_response(struct upstream_exchange *ex, bool pause);
/* Abandons the exchange (client went away): its connection is closed, not pooled. No callback
 * follows. */
void upstream_cancel(struct upstream_exchange *ex);
/* Text "ip:port" of the endpoint serving the exchange (for the access log); "-" before connect. */
const char *upstream_exchange_peer(const struct upstream_exchange *ex);

#endif
