/* httpc.h: one HTTP request on a fresh connection, for the control thread's own clients (remote JWKS
 * fetches, active health checks).
 *
 * The caller has the address already (resolution, endpoint choice and retries stay with it); httpc
 * connects (TCP, then TLS when given an SSL_CTX), sends one request with "Connection: close" (HTTP/1.1)
 * or as stream 1 of a new HTTP/2 connection (prior knowledge in clear, ALPN "h2" over TLS), reads one
 * response, closes, and reports once. Everything is bounded: the connect by connect_timeout_ms, the whole
 * exchange by timeout_ms, the response head by HTTPC_HEAD_MAX bytes, the body by body_max, interim (1xx)
 * responses by HTTPC_MAX_1XX. Nothing here is on the request path and nothing is shared with workers.
 */
#ifndef JWTGATE_HTTPC_H
#define JWTGATE_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config/config.h"

#define HTTPC_HEAD_MAX   (64 * 1024) /* status line + header bytes (HTTP/2: names + values + 32 each) */
#define HTTPC_MAX_1XX    8           /* interim responses skipped before the real one */
#define HTTPC_DETAIL_MAX 256         /* failure detail for log lines */

/* How a request ended. */
enum httpc_failure {
	HTTPC_OK = 0,
	HTTPC_FAIL_CONNECT, /* TCP connect failed or timed out before the TCP connection was up */
	HTTPC_FAIL_TLS,     /* TLS handshake or certificate (or no "h2" by ALPN), once TCP was up */
	HTTPC_FAIL_RESET,   /* reset or closed before a complete response, malformed response */
	HTTPC_FAIL_TIMEOUT, /* timeout_ms passed once the connection was up */
	HTTPC_FAIL_STATUS,  /* a final status other than want_status */
	HTTPC_FAIL_TOO_BIG, /* body, or announced Content-Length, over body_max */
};

struct httpc_header {
	const char *name; /* lower case (HTTP/2 requires it; HTTP/1.1 does not mind) */
	const char *value;
};

/* What to send and how long to wait. Every pointer only needs to live until httpc_start returns. */
struct httpc_request {
	const struct sockaddr *addr;
	socklen_t addr_len;
	SSL_CTX *ssl_ctx;      /* TLS when not NULL (the caller built it with httpc_tls_ctx_new) */
	const char *tls_name;  /* TLS: SNI and the certificate name; an IP literal is checked as an IP SAN */
	bool is_h2;            /* HTTP/2 instead of HTTP/1.1 */
	const char *method;    /* "GET", "POST", ... */
	const char *authority; /* Host header / :authority */
	const char *target;    /* origin-form path and query */
	const struct httpc_header *headers; /* extra request headers */
	size_t n_headers;
	const void *body; /* request body (Content-Length / one DATA frame); NULL: none */
	size_t body_len;
	uint64_t connect_timeout_ms; /* TCP (and TLS handshake) */
	uint64_t timeout_ms;         /* the whole exchange, connect included */
	size_t body_max;             /* response body bytes kept; more fails with HTTPC_FAIL_TOO_BIG */
	bool head_only;  /* done at the final response head: the body is never read (health checks) */
	int want_status; /* 0: any status; else another final status ends at once with HTTPC_FAIL_STATUS */
};

/* What came back; valid during the callback only. */
struct httpc_result {
	enum httpc_failure failure;
	int status;       /* final status, 0 when none arrived */
	int grpc_status;  /* HTTP/2: the grpc-status header or trailer; -1 when absent */
	const char *body; /* NUL-terminated; "" when none */
	size_t body_len;
	const char *detail; /* why it failed (empty on success) */
};

/* An http:// or https:// URI split for a request (httpc_uri_parse). */
#define HTTPC_URI_HOST_MAX   255  /* DNS name or IP literal */
#define HTTPC_URI_TARGET_MAX 4096 /* path and query */

struct httpc_uri {
	char host[HTTPC_URI_HOST_MAX + 1];       /* brackets removed from an IPv6 literal */
	char authority[HTTPC_URI_HOST_MAX + 16]; /* Host header: host[:port] as in the URI */
	char *target;                            /* path and query, "/" at least; owned */
	uint16_t port;                           /* the URI's, else 443 (https) or 80 (http) */
	bool is_host_ip;
	bool is_https;
};

/* Splits uri into u. Returns 0, or JG_ERR_INVAL with a reason in detail[0..detail_cap) for another
 * scheme, userinfo, a bad port, an over-long host or target, or bytes that cannot go on a request line;
 * u->target is then NULL. The fragment is dropped (it never goes on the wire, RFC 9110 section 4.2.4).
 * Start-up tier: aborts on allocation failure. Release with httpc_uri_clear. */
int httpc_uri_parse(const char *uri, struct httpc_uri *u, char *detail, size_t detail_cap);
/* Frees what u owns. */
void httpc_uri_clear(struct httpc_uri *u);

struct httpc;

/* Called exactly once per started request, always from the event loop (never from inside
 * httpc_start) unless the request was cancelled first. The request is freed right after it returns:
 * it must not call httpc_cancel on it. */
typedef void (*httpc_done_fn)(void *arg, const struct httpc_result *res);

/* Starts req on base. Returns the request handle, or NULL when not even that could be allocated (no
 * callback follows then). Every other failure (socket, TLS set-up, connect) comes through done. */
struct httpc *httpc_start(struct event_base *base, const struct httpc_request *req, httpc_done_fn done,
                          void *arg);

/* Abandons a request in flight: its connection is closed and done is not called. NULL is ignored. */
void httpc_cancel(struct httpc *c);

/* The TLS client context for connections towards backend be (NULL: no backend, a URI of its own):
 * TLS 1.2+, no renegotiation nor compression, peer verification against be's caCertificateRefs
 * (files, inline PEM) or the system store (wellKnownCACertificates: System, or none named), ALPN alpn
 * when not NULL ("h2", "http/1.1"). Every client of a backend builds its context here: the proxy's
 * upstream pools, health checks, JWKS fetches, jwtgate-token. `who` names the client in messages,
 * which go to err or, when err is NULL, to the log. Returns NULL (reported) when the CA bundle cannot
 * be loaded: the caller then never connects. */
SSL_CTX *httpc_tls_ctx_new(const char *who, const struct config_backend *be, const char *alpn, FILE *err);

const char *httpc_failure_str(enum httpc_failure f);

struct evdns_base;
/* A resolver (JWKS fetches, health checks, each worker's upstream pools): the system's nameservers, or
 * only the hosts file when resolv.conf is unusable; NULL when none can be made (logged by the caller). */
struct evdns_base *httpc_dns_new(struct event_base *base);

#endif
