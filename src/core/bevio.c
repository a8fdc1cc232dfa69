/* bevio.c: direct writes for plain-socket bufferevents (see bevio.h). */
#include "core/bevio.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

bool bevio_is_plain(struct bufferevent *bev)
{
	return bufferevent_openssl_get_ssl(bev) == NULL;
}

void bevio_shutdown_write(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	/* RFC 8446 section 6.1: close_notify before the write side closes, or the client cannot tell
	 * our end of the data from a truncation. The output is empty here, so the alert goes straight
	 * to the socket; if the socket cannot take it (rare, ~24 bytes), no FIN either: the linger
	 * timer closes the connection. */
	if (ssl != NULL) {
		ERR_clear_error();
		if (SSL_shutdown(ssl) < 0) {
			ERR_clear_error();
			return;
		}
	}
	shutdown(bufferevent_getfd(bev), SHUT_WR);
}

#define BEVIO_WRITE_VECS 8 /* chains handed to one sendmsg; the rest go in the next turn of the loop */

/* One send() for one piece, sendmsg() for several: socket calls rather than writev(), which skip the
 * file layer (fdget_pos, vfs_writev) on every write. Retries EINTR. Returns what the call returned. */
static ssize_t bevio_sendv(evutil_socket_t fd, const struct iovec *iov, int n)
{
	struct msghdr msg = {0};
	ssize_t sent;

	msg.msg_iov = (struct iovec *)iov;
	msg.msg_iovlen = (size_t)n;
	do
		sent = n == 1 ? send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
		              : sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (sent == -1 && errno == EINTR);
	return sent;
}

/* Writes what out holds to the socket (up to BEVIO_WRITE_VECS chains). Returns what the call returned. */
static ssize_t bevio_send(evutil_socket_t fd, struct evbuffer *out)
{
	struct evbuffer_iovec vec[BEVIO_WRITE_VECS];
	int nvec = evbuffer_peek(out, -1, NULL, vec, BEVIO_WRITE_VECS);
	ssize_t n;

	if (nvec <= 0)
		return 0;
	if (nvec > BEVIO_WRITE_VECS)
		nvec = BEVIO_WRITE_VECS;
	n = bevio_sendv(fd, (const struct iovec *)vec, nvec);
	if (n > 0)
		evbuffer_drain(out, (size_t)n);
	return n;
}

/* TLS: one SSL_write of up to a record's worth from the start of the output, made contiguous first
 * (evbuffer_pullup), so that small pieces (head, body, chunk lines) leave in one record. When the
 * socket is full, OpenSSL keeps the record it sealed and must be called again with the same bytes:
 * they stay at the start of the output, in a first chain at least as long, and libevent's write
 * callback (EV_WRITE enabled) calls SSL_write with them (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER,
 * bevio_tls_init). Returns true when the output is empty. */
#define BEVIO_TLS_WRITE_MAX 16384 /* one TLS record of plaintext (RFC 8446 section 5.1) */

static bool bevio_tls_flush(struct bufferevent *bev, SSL *ssl)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t len;

	/* libevent is finishing a write the socket refused: it must call SSL_write again with the same
	 * bytes first; what was queued since goes after, through it. */
	if (bufferevent_get_enabled(bev) & EV_WRITE)
		return evbuffer_get_length(out) == 0;
	while ((len = evbuffer_get_length(out)) > 0) {
		unsigned char *p;
		int n;

		if (len > BEVIO_TLS_WRITE_MAX)
			len = BEVIO_TLS_WRITE_MAX;
		evbuffer_unfreeze(out, 1);
		p = evbuffer_pullup(out, (ev_ssize_t)len);
		ERR_clear_error();
		n = p != NULL ? SSL_write(ssl, p, (int)len) : -1;
		if (n > 0)
			evbuffer_drain(out, (size_t)n);
		evbuffer_freeze(out, 1);
		if (n <= 0) {
			/* Socket full (or an error): libevent retries the same bytes, or reports the error.
			 */
			ERR_clear_error();
			bufferevent_enable(bev, EV_WRITE);
			return false;
		}
	}
	return true;
}

/* TLS, nothing queued: the pieces sealed in one record straight from a copy on the stack, not through
 * the output: bufferevent_openssl adds its write event whenever bytes land in an empty output, even
 * with EV_WRITE disabled, and deletes it after (an epoll_ctl pair per response). Only when the
 * socket refuses them are the bytes queued (in one chain: the retry must see them from the start),
 * with EV_WRITE, for libevent to finish. Returns false, having done nothing, when the pieces exceed
 * one record (the caller queues and flushes them); true once they are written or queued. */
static bool bevio_tls_write(struct bufferevent *bev, const struct iovec *iov, int n)
{
	unsigned char buf[BEVIO_TLS_WRITE_MAX];
	size_t len = 0;
	int i, w;

	for (i = 0; i < n; i++) {
		if (iov[i].iov_len > sizeof(buf) - len)
			return false;
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	if (len == 0)
		return true;
	ERR_clear_error();
	w = SSL_write(bufferevent_openssl_get_ssl(bev), buf, (int)len);
	if (w == (int)len)
		return true;
	ERR_clear_error();
	/* Refused (or failed): queue what is left, libevent writes it (or reports the error). */
	evbuffer_add(bufferevent_get_output(bev), buf + (w > 0 ? w : 0), len - (size_t)(w > 0 ? w : 0));
	bufferevent_enable(bev, EV_WRITE);
	return true;
}

void bevio_tls_init(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl != NULL)
		SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

bool bevio_flush(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl != NULL)
		return bevio_tls_flush(bev, ssl);
	while (evbuffer_get_length(out) > 0) {
		ssize_t n;

		/* A socket bufferevent freezes the start of its output; libevent's own write callback
		 * unfreezes it around the write, and so do we. */
		evbuffer_unfreeze(out, 1);
		n = bevio_send(bufferevent_getfd(bev), out);
		evbuffer_freeze(out, 1);

		if (n > 0)
			continue;
		/* EAGAIN: the socket is full; anything else: let libevent see the error and report it. */
		bufferevent_enable(bev, EV_WRITE);
		return false;
	}
	return true;
}

/* Out of memory while queueing what the socket did not take: the bytes cannot be dropped, since the
 * peer would read what follows as if it were them (a sized body with a hole in it desynchronises the
 * framing). End the connection instead: both directions shut, so the owner sees EOF or an error and
 * closes (fail closed). */
static void bevio_write_failed(struct bufferevent *bev)
{
	shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

bool bevio_write(struct bufferevent *bev, const struct iovec *iov, int n)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	bool is_tls = bufferevent_openssl_get_ssl(bev) != NULL;
	size_t skip;
	ssize_t sent;
	int i;

	if (is_tls && evbuffer_get_length(out) == 0 && !(bufferevent_get_enabled(bev) & EV_WRITE) &&
	    bevio_tls_write(bev, iov, n))
		return evbuffer_get_length(out) == 0;
	if (evbuffer_get_length(out) > 0 || is_tls) {
		/* Bytes are queued before these (or TLS pieces over a record): keep the order, append
		 * and flush. */
		for (i = 0; i < n; i++)
			if (evbuffer_add(out, iov[i].iov_base, iov[i].iov_len) != 0) {
				bevio_write_failed(bev);
				break;
			}
		return bevio_flush(bev);
	}
	sent = bevio_sendv(bufferevent_getfd(bev), iov, n);
	/* EAGAIN or an error: everything is queued; libevent writes it or reports the error. */
	skip = sent > 0 ? (size_t)sent : 0;
	for (i = 0; i < n; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		if (evbuffer_add(out, (const char *)iov[i].iov_base + skip, iov[i].iov_len - skip) != 0) {
			bevio_write_failed(bev);
			break;
		}
		skip = 0;
	}
	if (evbuffer_get_length(out) == 0)
		return true;
	bufferevent_enable(bev, EV_WRITE);
	return false;
}

#define BEVIO_READ_MAX   16384 /* bytes per read, as bufferevent's default max_single_read */
#define BEVIO_SMALL_READ 4096  /* a read this size or less goes through the per-thread scratch buffer */
#define BEVIO_LARGE_READ 65536 /* bytes per read once a flow is large (a body): fewer, larger segments */

static void bevio_reader_idle_clear(struct bevio_reader *r)
{
	if (r->idle != NULL)
		bevio_timer_clear(r->idle);
}

static void bevio_reader_arm(struct bevio_reader *r)
{
	if (!r->enabled)
		return;
	if (r->high > 0 && evbuffer_get_length(bufferevent_get_input(r->bev)) >= r->high) {
		/* The owner drains, then pokes. No idle bound while we are the ones not reading. */
		event_del(&r->ev);
		bevio_reader_idle_clear(r);
		return;
	}
	if (!event_pending(&r->ev, EV_READ, NULL)) {
		event_add(&r->ev, NULL);
		if (r->idle_ms > 0 && r->idle != NULL)
			bevio_timer_set(r->idle, r->idle_ms);
	}
}

static void bevio_reader_on_idle(void *arg)
{
	struct bevio_reader *r = arg;

	r->on_event(r->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, r->arg);
}

/* Reads once into the input. An empty input that last took small reads gets them through a
 * per-thread scratch buffer and one evbuffer_add: a chain sized to the data (from malloc's
 * per-thread cache) instead of a 32 KB chain reserved, malloc'ed and freed around every
 * 100-byte request. Large flows read into reserved space directly, without the extra copy.
 * Returns what recv/readv returned. */
static ssize_t bevio_read(struct bevio_reader *r, evutil_socket_t fd, struct evbuffer *in, size_t want)
{
	static __thread char scratch[BEVIO_SMALL_READ];
	struct evbuffer_iovec vec[2];
	ssize_t n, left;
	int nvec, i;

	if (!r->large && evbuffer_get_length(in) == 0) {
		if (want > sizeof(scratch))
			want = sizeof(scratch);
		do
			n = recv(fd, scratch, want, 0);
		while (n == -1 && errno == EINTR);
		if (n > 0) {
			r->large = (size_t)n == want;
			if (evbuffer_add(in, scratch, (size_t)n) != 0) {
				errno = ENOMEM;
				return -1;
			}
		}
		return n;
	}
	nvec = evbuffer_reserve_space(in, (ev_ssize_t)want, vec, 2);
	if (nvec <= 0) {
		errno = ENOMEM;
		return -1;
	}
	/* recv() for the usual single free chain: the socket call, not the file layer's readv. */
	do
		n = nvec == 1 ? recv(fd, vec[0].iov_base, vec[0].iov_len, 0)
		              : readv(fd, (struct iovec *)vec, nvec);
	while (n == -1 && errno == EINTR);
	if (n <= 0) {
		evbuffer_commit_space(in, vec, 0);
		return n;
	}
	r->large = (size_t)n > BEVIO_SMALL_READ;
	for (i = 0, left = n; i < nvec; i++) {
		size_t take = (size_t)left < vec[i].iov_len ? (size_t)left : vec[i].iov_len;

		vec[i].iov_len = take;
		left -= (ssize_t)take;
	}
	evbuffer_commit_space(in, vec, nvec);
	return n;
}

static void bevio_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct bevio_reader *r = arg;
	struct evbuffer *in = bufferevent_get_input(r->bev);
	size_t want = r->large ? BEVIO_LARGE_READ : BEVIO_READ_MAX, len = evbuffer_get_length(in);
	ssize_t n;

	(void)what;
	if (r->high > 0) {
		if (len >= r->high) {
			event_del(&r->ev);
			bevio_reader_idle_clear(r);
			return;
		}
		if (r->high - len < want)
			want = r->high - len;
	}
	/* A socket bufferevent freezes the end of its input; libevent's reader unfreezes it too. */
	evbuffer_unfreeze(in, 0);
	n = bevio_read(r, fd, in, want);
	evbuffer_freeze(in, 0);
	if (n <= 0) {
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		r->on_event(r->bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), r->arg);
		return;
	}
	if (r->idle_ms > 0 && r->idle != NULL)
		bevio_timer_set(r->idle, r->idle_ms);
	r->on_read(r->bev, r->arg); /* may free r */
}

void bevio_reader_init(struct bevio_reader *r, struct event_base *base, struct bufferevent *bev, size_t high,
                       bufferevent_data_cb on_read, bufferevent_event_cb on_event, void *arg)
{
	r->bev = bev;
	r->high = high;
	r->enabled = false;
	r->large = false;
	r->idle_ms = 0;
	r->on_read = on_read;
	r->on_event = on_event;
	r->arg = arg;
	r->idle = NULL;
	event_assign(&r->ev, base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, bevio_on_readable, r);
}

void bevio_reader_use_timer(struct bevio_reader *r, struct bevio_timer *idle, struct event_base *base,
                            struct bevio_timeouts *timeouts)
{
	r->idle = idle;
	bevio_timer_init(idle, base, timeouts, bevio_reader_on_idle, r);
}

void bevio_reader_enable(struct bevio_reader *r, bool on)
{
	if (r->enabled == on)
		return;
	r->enabled = on;
	if (on) {
		bevio_reader_arm(r);
	} else {
		event_del(&r->ev);
		bevio_reader_idle_clear(r);
	}
}

void bevio_reader_set_timeout(struct bevio_reader *r, uint64_t ms)
{
	/* A timeout on a reader without a timer would silently be no bound at all. */
	assert(r->idle != NULL || ms == 0);
	if (r->idle == NULL)
		return;
	r->idle_ms = ms;
	if (ms == 0)
		bevio_timer_clear(r->idle);
	else if (r->enabled && event_pending(&r->ev, EV_READ, NULL))
		bevio_timer_set(r->idle, ms);
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
	if (r->idle != NULL)
		bevio_timer_stop(r->idle);
}

static void bevio_defer_run(evutil_socket_t fd, short what, void *arg)
{
	struct bevio_defer_queue *q = arg;
	struct bevio_deferred *batch = q->head, *d;

	(void)fd;
	(void)what;
	/* Detach the batch first: what the callbacks queue goes to a fresh list and a new activation. */
	q->head = NULL;
	if (batch != NULL)
		batch->pprev = &batch;
	while ((d = batch) != NULL) {
		batch = d->next;
		if (batch != NULL)
			batch->pprev = &batch;
		d->next = NULL;
		d->pprev = NULL;
		d->fn(d); /* may free d, queue or cancel others */
	}
}

void bevio_defer_init(struct bevio_defer_queue *q, struct event_base *base)
{
	event_assign(&q->ev, base, -1, 0, bevio_defer_run, q);
	q->head = NULL;
}

void bevio_defer_close(struct bevio_defer_queue *q)
{
	event_del(&q->ev);
	while (q->head != NULL)
		bevio_defer_cancel(q->head);
}

void bevio_defer(struct bevio_defer_queue *q, struct bevio_deferred *d, void (*fn)(struct bevio_deferred *d))
{
	if (d->pprev != NULL)
		return;
	if (q->head == NULL)
		event_active(&q->ev, EV_TIMEOUT, 0);
	d->fn = fn;
	d->next = q->head;
	if (q->head != NULL)
		q->head->pprev = &d->next;
	d->pprev = &q->head;
	q->head = d;
}

void bevio_defer_cancel(struct bevio_deferred *d)
{
	if (d->pprev == NULL)
		return;
	*d->pprev = d->next;
	if (d->next != NULL)
		d->next->pprev = d->pprev;
	d->next = NULL;
	d->pprev = NULL;
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

uint64_t bevio_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A configured duration goes to its common-timeout queue; a remainder (rearm) to the heap, so that
 * odd durations do not use up the base's common timeouts. */
static void bevio_timer_arm(struct bevio_timer *t, uint64_t now, uint64_t ms, bool rearm)
{
	struct timeval tv;

	if (ms == 0)
		ms = 1;
	if (rearm) {
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		event_add(&t->ev, &tv);
	} else {
		event_add(&t->ev, bevio_timeout(t->timeouts, ms));
	}
	t->due = now + ms;
}

static void bevio_timer_fire(evutil_socket_t fd, short what, void *arg)
{
	struct bevio_timer *t = arg;
	uint64_t now;

	(void)fd;
	(void)what;
	t->due = 0;
	if (t->deadline == 0)
		return;
	now = bevio_now_ms();
	if (now < t->deadline) {
		bevio_timer_arm(t, now, t->deadline - now, true); /* moved later since armed */
		return;
	}
	t->deadline = 0;
	t->cb(t->arg); /* may free t */
}

void bevio_timer_init(struct bevio_timer *t, struct event_base *base, struct bevio_timeouts *timeouts,
                      void (*cb)(void *arg), void *arg)
{
	evtimer_assign(&t->ev, base, bevio_timer_fire, t);
	t->timeouts = timeouts;
	t->deadline = t->due = 0;
	t->cb = cb;
	t->arg = arg;
}

static void bevio_timer_set_ms(struct bevio_timer *t, uint64_t ms, bool common)
{
	uint64_t now = bevio_now_ms();

	t->deadline = now + (ms ? ms : 1);
	/* An event due no later than the deadline stays: it re-arms for the rest when it fires. */
	if (t->due != 0 && t->due <= t->deadline)
		return;
	bevio_timer_arm(t, now, ms, !common);
}

void bevio_timer_set(struct bevio_timer *t, uint64_t ms)
{
	bevio_timer_set_ms(t, ms, true);
}

void bevio_timer_set_odd(struct bevio_timer *t, uint64_t ms)
{
	bevio_timer_set_ms(t, ms, false);
}

void bevio_timer_clear(struct bevio_timer *t)
{
	t->deadline = 0;
}

void bevio_timer_stop(struct bevio_timer *t)
{
	t->deadline = t->due = 0;
	event_del(&t->ev);
}
