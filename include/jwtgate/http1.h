/* http1.h: the HTTP/1.1 downstream codec (llhttp). Decodes requests into struct request, runs the
 * pipeline (router, auth, upstream) and encodes responses. */
#ifndef JWTGATE_HTTP1_H
#define JWTGATE_HTTP1_H

#include <stdbool.h>
#include <sys/socket.h>

struct worker;
struct h1_conn;
struct bufferevent;

/* Takes ownership of an accepted socket. Returns 0 or a negative JG_ERR_* (fd closed). */
int http1_conn_accept(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peer_len,
                      int listener_index);

/* The same for a connected bufferevent (TLS after its handshake, ALPN http/1.1 or none), with the
 * bytes it already read. Returns 0 or a negative JG_ERR_* (bev freed). */
int http1_conn_accept_bev(struct worker *w, struct bufferevent *bev, const struct sockaddr *peer,
                          socklen_t peer_len, int listener_index, bool is_tls);

/* Drain: a connection that is idle is closed now; a busy one closes after its current response. */
void http1_conn_drain(struct h1_conn *c);

/* Drain bound passed: close now, whatever the connection is doing. */
void http1_conn_abort(struct h1_conn *c);

/* Links of the worker's connection list. */
struct h1_conn *http1_conn_next(struct h1_conn *c);
void http1_conn_link(struct h1_conn **head, struct h1_conn *c);
void http1_conn_unlink(struct h1_conn **head, struct h1_conn *c);

#endif
