/* bevio.c: direct writes for plain-socket bufferevents (see bevio.h). */
#include "jwtgate/bevio.h"

#include <errno.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>

bool bevio_is_plain(struct bufferevent *bev)
{
	return bufferevent_openssl_get_ssl(bev) == NULL;
}

bool bevio_flush(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	while (evbuffer_get_length(out) > 0) {
		int n;

		/* A socket bufferevent freezes the start of its output; libevent's own write callback
		 * unfreezes it around the write, and so do we. */
		evbuffer_unfreeze(out, 1);
		n = evbuffer_write(out, bufferevent_getfd(bev));
		evbuffer_freeze(out, 1);

		if (n > 0)
			continue;
		if (n == -1 && errno == EINTR)
			continue;
		/* EAGAIN: the socket is full; anything else: let libevent see the error and report it. */
		bufferevent_enable(bev, EV_WRITE);
		return false;
	}
	return true;
}
