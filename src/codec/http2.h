/* http2.h: the HTTP/2 downstream codec (nghttp2 server sessions). Each stream decodes into a struct
 * request, runs the shared pipeline (router, auth, upstream) and streams the response back with
 * application-driven flow control. Reached through h2c prior knowledge on a plaintext listener (the
 * HTTP/1.1 codec hands the connection over when it sees the client preface) or ALPN "h2" on TLS. */
#ifndef JWTGATE_HTTP2_H
#define JWTGATE_HTTP2_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct worker;
struct pagepool;
struct bufferevent;
struct h2_conn;

/* The HTTP/2 client connection preface (RFC 9113 section 3.4). */
#define HTTP2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define HTTP2_PREFACE_LEN 24

/* Takes over a connected bufferevent (plain socket or TLS after the handshake) together with the
 * bytes already in its input buffer (the preface, possibly more frames). The connection is counted
 * in worker_open_conns by the caller; the codec gives the count back when it closes. The caller
 * no longer touches bev. On failure bev is freed and a negative JG_ERR_* is returned (the caller
 * then gives the count back). */
int http2_conn_takeover(struct worker *w, struct bufferevent *bev, const struct sockaddr *peer,
                        socklen_t peer_len, int listener_index, bool is_tls);

/* Sets up a worker's pool of slots for the sessions' largest buffers (stream table, frame buffer),
 * whose pages an idle connection gives back (issue 13): one slot per connection, at most max_conns
 * (past that, sessions use the heap). Returns 0 or a negative JG_ERR_* (the pool is then off and
 * every session uses the heap). */
int http2_mem_pool_init(struct pagepool *pool, uint32_t max_conns);

#endif
