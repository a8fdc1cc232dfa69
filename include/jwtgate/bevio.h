/* bevio.h: write a plain-socket bufferevent's output directly.
 *
 * A socket bufferevent adds its write event to epoll whenever its output gets data and deletes it
 * once drained: two epoll_ctl calls per direction per request. Codecs instead keep EV_WRITE disabled
 * on plain sockets, queue output, and call bevio_flush() once per burst (from a deferred event):
 * one writev, and the write event is only enabled when the socket could not take everything
 * (a slow reader), which is when libevent's help is needed. TLS bufferevents keep EV_WRITE enabled
 * and are left to libevent. */
#ifndef JWTGATE_BEVIO_H
#define JWTGATE_BEVIO_H

#include <stdbool.h>

#include <event2/bufferevent.h>

/* True for a plain socket bufferevent (not TLS): direct writes are allowed. */
bool bevio_is_plain(struct bufferevent *bev);

/* Writes what the output holds. When bytes remain (EAGAIN) or the socket failed, EV_WRITE is enabled
 * so that libevent finishes the write or reports the error through the event callback. Returns true
 * when the output is empty afterwards. */
bool bevio_flush(struct bufferevent *bev);

#endif
