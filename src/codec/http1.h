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

#endif
