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
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>
#include <sys/time.h>

/* True for a plain socket bufferevent (not TLS): direct writes are allowed. */
bool bevio_is_plain(struct bufferevent *bev);

/* Writes what the output holds. When bytes remain (EAGAIN) or the socket failed, EV_WRITE is enabled
 * so that libevent finishes the write or reports the error through the event callback. Returns true
 * when the output is empty afterwards. */
bool bevio_flush(struct bufferevent *bev);

/* Reading a plain socket without bufferevent's FIONREAD ioctl before every read.
 *
 * bufferevent_socket asks the kernel how many bytes wait (one ioctl) before each readv; on a proxy
 * that is one syscall in three. For plain sockets the codecs leave the bufferevent's EV_READ off and
 * use this reader instead: its own persistent event on the fd, readv into the bufferevent's input,
 * then the same read and event callbacks the bufferevent would call (BEV_EVENT_EOF, _ERROR,
 * _TIMEOUT, with BEV_EVENT_READING). The callbacks may free the owner (and this reader with it). */
struct bevio_reader {
	struct event ev;
	struct bufferevent *bev;
	size_t high; /* no read while the input holds this much; bevio_reader_poke() resumes */
	bool enabled;
	bool has_timeout;
	struct timeval timeout; /* idle bound: BEV_EVENT_TIMEOUT when nothing arrives for this long */
	bufferevent_data_cb on_read;
	bufferevent_event_cb on_event;
	void *arg;
};

void bevio_reader_init(struct bevio_reader *r, struct event_base *base, struct bufferevent *bev, size_t high,
                       bufferevent_data_cb on_read, bufferevent_event_cb on_event, void *arg);
/* Starts or stops reading (the timeout, if any, restarts with it). */
void bevio_reader_enable(struct bevio_reader *r, bool on);
/* NULL: no timeout. Takes effect at once when reading is enabled. */
void bevio_reader_set_timeout(struct bevio_reader *r, const struct timeval *tv);
/* The owner consumed input: resume reading if it had stopped at the high mark. */
void bevio_reader_poke(struct bevio_reader *r);
/* Before the bufferevent is freed. */
void bevio_reader_stop(struct bevio_reader *r);

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

#endif
