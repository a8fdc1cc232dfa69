/* tls.h: TLS on downstream listeners: one server SSL_CTX per TLS listener (built with each
 * configuration snapshot, shared by every worker) and
 * the handshake of an accepted socket, after which ALPN picks the codec ("h2" -> HTTP/2,
 * "http/1.1" or none -> HTTP/1.1). */
#ifndef JWTGATE_TLS_H
#define JWTGATE_TLS_H

#include <stdio.h>
#include <sys/socket.h>

#include "config/config.h"

struct worker;
struct ssl_ctx_st;

/* Builds the server context of listener l: its certificate chain and key (checked to match), TLS 1.2
 * or later, ALPN "h2" and "http/1.1", session tickets sealed with the listener's key store (below),
 * which every context of the listener shares, so resumption survives a reload. Control thread,
 * start-up tier: returns NULL and writes the reason to err. OpenSSL reference-counts the context
 * (SSL_new takes a reference), so connections keep the one they were accepted with. */
struct ssl_ctx_st *tls_server_ctx_new(const struct config_listener *l, FILE *err);
void tls_ctx_free(struct ssl_ctx_st *ctx);

/* Session ticket keys: one store per TLS listener for the life of the process, made by its first
 * tls_server_ctx_new() and shared by every context (every snapshot) of that listener, so tickets
 * resume on any worker and across reloads. tls_tickets_start() schedules the stores' key rotation
 * (tls.ticketKeyRotation) on the control loop; tls_tickets_stop() cancels it before that loop is
 * freed; tls_tickets_free() releases the keys at exit, after the last context is gone. Control
 * thread. */
struct event_base;
void tls_tickets_start(struct event_base *base);
void tls_tickets_stop(void);
void tls_tickets_free(void);

/* Starts the TLS handshake on an accepted socket (counted in worker_open_conns) and hands the
 * connection to a codec when it completes; the handshake is bounded by limits.headerTimeout.
 * Returns 0, or a negative JG_ERR_* (then fd is closed and the count given back). */
int tls_accept(struct worker *w, struct ssl_ctx_st *ctx, int fd, const struct sockaddr *peer,
               socklen_t peer_len, int listener_index);

#endif
