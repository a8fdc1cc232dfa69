/* tls.h: TLS on downstream listeners: one server SSL_CTX per TLS listener (built with each
 * configuration snapshot, shared by every worker) and
 * the handshake of an accepted socket, after which ALPN picks the codec ("h2" -> HTTP/2,
 * "http/1.1" or none -> HTTP/1.1). */
#ifndef JWTGATE_TLS_H
#define JWTGATE_TLS_H

#include <stdio.h>
#include <sys/socket.h>

#include "jwtgate/config.h"

struct worker;
struct ssl_ctx_st;

/* Builds the server context of listener l: its certificate chain and key (checked to match), TLS 1.2
 * or later, ALPN "h2" and "http/1.1". prev, when not NULL, is the context the listener runs with now:
 * its session ticket keys are carried over so that resumption survives a reload. Control thread,
 * start-up tier: returns NULL and writes the reason to err. OpenSSL reference-counts the context
 * (SSL_new takes a reference), so connections keep the one they were accepted with. */
struct ssl_ctx_st *tls_server_ctx_new(const struct config_listener *l, struct ssl_ctx_st *prev, FILE *err);
void tls_ctx_free(struct ssl_ctx_st *ctx);

/* Starts the TLS handshake on an accepted socket (counted in worker_open_conns) and hands the
 * connection to a codec when it completes; the handshake is bounded by limits.headerTimeout.
 * Returns 0, or a negative JG_ERR_* (then fd is closed and the count given back). */
int tls_accept(struct worker *w, struct ssl_ctx_st *ctx, int fd, const struct sockaddr *peer,
               socklen_t peer_len, int listener_index);

#endif
