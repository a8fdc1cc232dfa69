/* bevio.h: write a plain-socket bufferevent's output directly.
 *
 * A socket bufferevent adds its write event to epoll whenever its output gets data and deletes it
 * once drained: two epoll_ctl calls per direction per request. Codecs instead keep EV_WRITE disabled
 * on plain sockets, queue output, and call bevio_flush() once per burst (from a deferred event):
 * one writev, and the write event is only enabled when the socket could not take everything
 * (a slow reader), which is when libevent's help is needed. TLS bufferevents the same way, with
 * SSL_write of the output (bevio_tls_init); their reads stay with libevent. */
#ifndef JWTGATE_BEVIO_H
#define JWTGATE_BEVIO_H

#include <stdbool.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/uio.h>

/* True for a plain socket bufferevent (not TLS): direct writes are allowed. */
bool bevio_is_plain(struct bufferevent *bev);

/* TLS bufferevents written with bevio_flush()/bevio_write() too (EV_WRITE off until the socket is
 * full): call once on a TLS bufferevent before the first of them; no-op on a plain one. */
void bevio_tls_init(struct bufferevent *bev);

/* Ends our sending side once the output is empty: for TLS, close_notify first (SSL_shutdown), then
 * FIN (shutdown(SHUT_WR)); a plain socket only the FIN. */
void bevio_shutdown_write(struct bufferevent *bev);

/* Writes what the output holds. When bytes remain (EAGAIN) or the socket failed, EV_WRITE is enabled
 * so that libevent finishes the write or reports the error through the event callback. Returns true
 * when the output is empty afterwards. */
bool bevio_flush(struct bufferevent *bev);

/* Writes the n pieces now, straight from the caller's memory (one send or sendmsg), when nothing is
 * queued before them; what the socket does not take is copied into the output and left to libevent
 * (EV_WRITE), as in bevio_flush. With output already queued, the pieces are appended and flushed.
 * Saves the copy into the output buffer, its allocation and its callbacks for the usual small
 * message. Returns true when the output is empty afterwards. Plain sockets, and TLS bufferevents set
 * up with bevio_tls_init (SSL_write of the pieces). Out of memory for
 * the copy, the socket is shut down both ways (never a hole in the byte stream): the owner sees EOF. */
bool bevio_write(struct bufferevent *bev, const struct iovec *iov, int n);

/* libevent "common timeouts": timers of a few fixed durations (idle, header, request timeouts) kept in
 * per-duration queues instead of the heap, so arming one per request is O(1). One cache per
 * event_base; at most BEVIO_TIMEOUTS_MAX durations (later ones get plain timevals). */
#define BEVIO_TIMEOUTS_MAX 32

struct bevio_timeouts {
	struct event_base *base;
	size_t n;
	struct {
		uint64_t ms;
		const struct timeval *tv; /* libevent's magic timeval, or &plain */
		struct timeval plain;
	} e[BEVIO_TIMEOUTS_MAX];
};

void bevio_timeouts_init(struct bevio_timeouts *t, struct event_base *base);
/* The timeval to pass to event_add for a duration of ms milliseconds. */
const struct timeval *bevio_timeout(struct bevio_timeouts *t, uint64_t ms);

/* Work deferred to the end of the current batch of events, for many objects through one event.
 * event_active() on a per-object event costs a queue insertion and a dispatch per object and request
 * (a connection's "flush what was queued", an exchange's "recycle me once nobody up the stack looks
 * at me"); here each object links itself into the queue and one event runs them all. Items queued
 * while the queue runs are run by the next activation. */
struct bevio_deferred {
	struct bevio_deferred *next, **pprev; /* pprev NULL: not queued */
	void (*fn)(struct bevio_deferred *d);
};

struct bevio_defer_queue {
	struct event ev;
	struct bevio_deferred *head;
};

void bevio_defer_init(struct bevio_defer_queue *q, struct event_base *base);
/* Before the base is freed. Items still queued are not run. */
void bevio_defer_close(struct bevio_defer_queue *q);
/* Queues d (no-op when it is queued already); fn(d) runs from the loop, once. */
void bevio_defer(struct bevio_defer_queue *q, struct bevio_deferred *d, void (*fn)(struct bevio_deferred *d));
/* Takes d out of its queue if it is in one (before its owner is freed). */
void bevio_defer_cancel(struct bevio_deferred *d);
static inline bool bevio_deferred_queued(const struct bevio_deferred *d)
{
	return d->pprev != NULL;
}

/* Lazy deadline timers. A connection moves its deadline on every request (header timeout, idle
 * timeout, request timeout); re-arming a libevent timer each time costs an event_add/event_del pair
 * per move. A bevio_timer only records the new deadline (one coarse monotonic clock read) and leaves
 * its event where it is while that fires no later than the deadline; when the event fires early it
 * re-arms for what is left. So an event is added about once per timeout period, not per request.
 * Deadlines are kept to the coarse clock's resolution (a few milliseconds). */
struct bevio_timer {
	struct event ev;
	struct bevio_timeouts *timeouts;
	uint64_t deadline; /* coarse monotonic ms; 0: off */
	uint64_t due;      /* when ev fires (ms); 0: ev not pending */
	void (*cb)(void *arg);
	void *arg;
};

/* Monotonic milliseconds from the coarse (tick) clock: a vDSO read, no system call. */
uint64_t bevio_now_ms(void);
void bevio_timer_init(struct bevio_timer *t, struct event_base *base, struct bevio_timeouts *timeouts,
                      void (*cb)(void *arg), void *arg);
/* cb runs once, ms milliseconds from now, unless the timer is set again or cleared first. */
void bevio_timer_set(struct bevio_timer *t, uint64_t ms);
/* The same for a duration that is not one of a few configured ones (a grpc-timeout): the event goes
 * to the timer heap, not to a common-timeout queue. */
void bevio_timer_set_odd(struct bevio_timer *t, uint64_t ms);
/* Off. The event may stay pending; when it fires it finds nothing due. */
void bevio_timer_clear(struct bevio_timer *t);
/* Off for good: the event is removed (before the owner is freed). */
void bevio_timer_stop(struct bevio_timer *t);

/* Reading a plain socket without bufferevent's FIONREAD ioctl before every read.
 *
 * bufferevent_socket asks the kernel how many bytes wait (one ioctl) before each readv; on a proxy
 * that is one syscall in three. For plain sockets the codecs leave the bufferevent's EV_READ off and
 * use this reader instead: its own persistent event on the fd, recv into the bufferevent's input,
 * then the same read and event callbacks the bufferevent would call (BEV_EVENT_EOF, _ERROR,
 * _TIMEOUT, with BEV_EVENT_READING). The callbacks may free the owner (and this reader with it). */
struct bevio_reader {
	struct event ev;
	struct bufferevent *bev;
	size_t high; /* no read while the input holds this much; bevio_reader_poke() resumes */
	bool enabled;
	bool large;               /* the last read was large: read into reserved input space directly */
	uint64_t idle_ms;         /* idle bound: BEV_EVENT_TIMEOUT when nothing arrives for this long */
	struct bevio_timer *idle; /* its timer (lazy: moved on every read); NULL: the reader has none */
	bufferevent_data_cb on_read;
	bufferevent_event_cb on_event;
	void *arg;
};

void bevio_reader_init(struct bevio_reader *r, struct event_base *base, struct bufferevent *bev, size_t high,
                       bufferevent_data_cb on_read, bufferevent_event_cb on_event, void *arg);
/* Gives the reader an idle timer, kept by the owner: only readers that need an idle bound carry
 * one (bevio_reader_set_timeout), not every downstream connection (memory per idle connection). */
void bevio_reader_use_timer(struct bevio_reader *r, struct bevio_timer *idle, struct event_base *base,
                            struct bevio_timeouts *timeouts);
/* Starts or stops reading (the timeout, if any, restarts with it). */
void bevio_reader_enable(struct bevio_reader *r, bool on);
/* 0: no timeout. Takes effect at once when reading is enabled. ms should be a configured duration
 * (it uses a common-timeout queue). Only a reader with a timer (bevio_reader_use_timer) takes a
 * timeout other than 0 (asserted). */
void bevio_reader_set_timeout(struct bevio_reader *r, uint64_t ms);
/* The owner consumed input: resume reading if it had stopped at the high mark. */
void bevio_reader_poke(struct bevio_reader *r);
/* Before the bufferevent is freed. */
void bevio_reader_stop(struct bevio_reader *r);

#endif
