/* bevio.c: direct writes for plain-socket bufferevents (see bevio.h). */
#include "jwtgate/bevio.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>

bool bevio_is_plain(struct bufferevent *bev)
{
	return bufferevent_openssl_get_ssl(bev) == NULL;
}

#define BEVIO_WRITE_VECS 8 /* chains handed to one sendmsg; the rest go in the next turn of the loop */

/* Writes what out holds to the socket: send() for one chain, sendmsg() for several. Socket calls
 * rather than evbuffer_write's writev(): they skip the file layer (fdget_pos, vfs_writev) on every
 * write. Returns what send/sendmsg returned. */
static ssize_t bevio_send(evutil_socket_t fd, struct evbuffer *out)
{
	struct evbuffer_iovec vec[BEVIO_WRITE_VECS];
	struct msghdr msg = {0};
	int nvec = evbuffer_peek(out, -1, NULL, vec, BEVIO_WRITE_VECS);
	ssize_t n;

	if (nvec <= 0)
		return 0;
	if (nvec > BEVIO_WRITE_VECS)
		nvec = BEVIO_WRITE_VECS;
	if (nvec == 1) {
		n = send(fd, vec[0].iov_base, vec[0].iov_len, MSG_NOSIGNAL);
	} else {
		msg.msg_iov = (struct iovec *)vec;
		msg.msg_iovlen = (size_t)nvec;
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	}
	if (n > 0)
		evbuffer_drain(out, (size_t)n);
	return n;
}

bool bevio_flush(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	while (evbuffer_get_length(out) > 0) {
		ssize_t n;

		/* A socket bufferevent freezes the start of its output; libevent's own write callback
		 * unfreezes it around the write, and so do we. */
		evbuffer_unfreeze(out, 1);
		n = bevio_send(bufferevent_getfd(bev), out);
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

#define BEVIO_READ_MAX 16384 /* bytes per read, as bufferevent's default max_single_read */

static void bevio_reader_arm(struct bevio_reader *r)
{
	if (!r->enabled)
		return;
	if (r->high > 0 && evbuffer_get_length(bufferevent_get_input(r->bev)) >= r->high) {
		event_del(&r->ev); /* the owner drains, then pokes */
		return;
	}
	event_add(&r->ev, r->has_timeout ? &r->timeout : NULL);
}

static void bevio_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct bevio_reader *r = arg;
	struct evbuffer *in = bufferevent_get_input(r->bev);
	struct evbuffer_iovec vec[2];
	size_t want = BEVIO_READ_MAX, len = evbuffer_get_length(in);
	ssize_t n;
	int nvec, i;

	if (what & EV_TIMEOUT) {
		r->on_event(r->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, r->arg);
		return;
	}
	if (r->high > 0) {
		if (len >= r->high) {
			event_del(&r->ev);
			return;
		}
		if (r->high - len < want)
			want = r->high - len;
	}
	/* A socket bufferevent freezes the end of its input; libevent's reader unfreezes it too. */
	evbuffer_unfreeze(in, 0);
	nvec = evbuffer_reserve_space(in, (ev_ssize_t)want, vec, 2);
	if (nvec <= 0) {
		evbuffer_freeze(in, 0);
		r->on_event(r->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, r->arg);
		return;
	}
	/* recv() for the usual single free chain: the socket call, not the file layer's readv. */
	do
		n = nvec == 1 ? recv(fd, vec[0].iov_base, vec[0].iov_len, 0)
		              : readv(fd, (struct iovec *)vec, nvec);
	while (n == -1 && errno == EINTR);
	if (n <= 0) {
		evbuffer_commit_space(in, vec, 0);
		evbuffer_freeze(in, 0);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		r->on_event(r->bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), r->arg);
		return;
	}
	for (i = 0; i < nvec; i++) {
		size_t take = (size_t)n < vec[i].iov_len ? (size_t)n : vec[i].iov_len;

		vec[i].iov_len = take;
		n -= (ssize_t)take;
	}
	evbuffer_commit_space(in, vec, nvec);
	evbuffer_freeze(in, 0);
	r->on_read(r->bev, r->arg); /* may free r */
}

void bevio_reader_init(struct bevio_reader *r, struct event_base *base, struct bufferevent *bev, size_t high,
                       bufferevent_data_cb on_read, bufferevent_event_cb on_event, void *arg)
{
	r->bev = bev;
	r->high = high;
	r->enabled = false;
	r->has_timeout = false;
	r->on_read = on_read;
	r->on_event = on_event;
	r->arg = arg;
	event_assign(&r->ev, base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, bevio_on_readable, r);
}

void bevio_reader_enable(struct bevio_reader *r, bool on)
{
	if (r->enabled == on)
		return;
	r->enabled = on;
	if (on)
		bevio_reader_arm(r);
	else
		event_del(&r->ev);
}

void bevio_reader_set_timeout(struct bevio_reader *r, const struct timeval *tv)
{
	r->has_timeout = tv != NULL;
	if (tv != NULL)
		r->timeout = *tv;
	else if (event_pending(&r->ev, EV_TIMEOUT, NULL))
		event_remove_timer(&r->ev); /* event_add(NULL) would keep the old timeout */
	if (r->enabled && tv != NULL)
		bevio_reader_arm(r);
}

void bevio_reader_poke(struct bevio_reader *r)
{
	if (r->enabled && !event_pending(&r->ev, EV_READ, NULL))
		bevio_reader_arm(r);
}

void bevio_reader_stop(struct bevio_reader *r)
{
	r->enabled = false;
	event_del(&r->ev);
}

void bevio_timeouts_init(struct bevio_timeouts *t, struct event_base *base)
{
	t->base = base;
	t->n = 0;
}

const struct timeval *bevio_timeout(struct bevio_timeouts *t, uint64_t ms)
{
	static __thread struct timeval overflow;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	size_t i;

	for (i = 0; i < t->n; i++)
		if (t->e[i].ms == ms)
			return t->e[i].tv;
	if (t->n == BEVIO_TIMEOUTS_MAX) {
		overflow = tv; /* event_add copies it */
		return &overflow;
	}
	t->e[t->n].ms = ms;
	t->e[t->n].plain = tv;
	t->e[t->n].tv = event_base_init_common_timeout(t->base, &tv);
	if (t->e[t->n].tv == NULL)
		t->e[t->n].tv = &t->e[t->n].plain;
	return t->e[t->n++].tv;
}
