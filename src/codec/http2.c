/* http2.c: the HTTP/2 downstream codec on nghttp2 server sessions.
 *
 * One struct h2_conn per connection (h2c prior knowledge handed over by the HTTP/1.1 codec, or TLS
 * with ALPN "h2"), one struct h2_stream per request stream. A stream decodes into a protocol-neutral
 * struct request, runs pipeline_run() and either renders the local answer (HTTP text, or gRPC
 * trailers-only) or starts an upstream exchange whose response is streamed back with a deferred
 * data provider. nghttp2's HTTP messaging checks stay on.
 *
 * Re-entrancy: nghttp2 closes streams (and we free them) only inside nghttp2_session_mem_recv() and
 * nghttp2_session_mem_send(). Those run only from connection-level events (read, write, timers and
 * the deferred flush_ev), never from an upstream sink callback, so a sink callback never finds its
 * stream freed under it; sink callbacks only submit frames and schedule flush_ev.
 *
 * Bounds a client cannot raise (reference/security.md section 4):
 * - request header list: limits.maxHeaderBytes (HPACK size: name + value + 32 per field) and
 *   limits.maxHeaderCount, counted in the header callback (nghttp2 does not) -> 431;
 * - SETTINGS_MAX_CONCURRENT_STREAMS = limits.h2MaxConcurrentStreams (excess streams refused);
 * - rapid reset, CONTINUATION, SETTINGS entries and outbound ACK floods: nghttp2 options;
 * - empty DATA, WINDOW_UPDATE, PRIORITY, PING and SETTINGS floods: budgets below -> GOAWAY;
 * - request bodies: the stream window (64 KiB) and connection window (H2_CONN_WINDOW) are only
 *   reopened (nghttp2_session_consume) once the upstream took the bytes, so buffered request bytes
 *   never exceed the windows;
 * - response bodies: H2_STREAM_OUT_HIGH per stream (then the upstream is paused) and H2_OUT_HIGH in
 *   the socket's output buffer (then no more frames are serialised);
 * - time: limits.headerTimeout for the client preface and for each header block, limits.idleTimeout
 *   without I/O (also before the first request: a gRPC channel may connect long before its call);
 * - a client that flooded or broke the protocol: not read any more, closed H2_ABORT_MS after GOAWAY.
 */
#include "codec/http2.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>

#include "telemetry/access_log.h"
#include "core/common.h"
#include "core/log.h"
#include "core/pagepool.h"
#include "route/pipeline.h"
#include "core/request.h"
#include "upstream/upstream.h"
#include "server/worker.h"

#define H2_CONN_WINDOW             (1024 * 1024) /* connection receive window: request bytes buffered per conn */
#define H2_OUT_HIGH                (64 * 1024) /* serialised frames queued to the socket before we stop */
#define H2_IN_HIGH                 (64 * 1024) /* bytes read ahead of nghttp2 */
#define H2_STREAM_OUT_HIGH         (64 * 1024) /* response body buffered per stream before pausing upstream */
#define H2_STREAM_OUT_LOW          (16 * 1024)
#define H2_ARENA_LIMIT             (1024 * 1024) /* per stream; the header limits keep real use far below */
#define H2_MAX_EMPTY_DATA          16            /* consecutive DATA frames without payload nor END_STREAM */
#define H2_MAX_PRIORITY_PER_STREAM 100           /* PRIORITY frames per stream opened (Envoy's default) */
#define H2_WINDOW_UPDATE_BASE      1000          /* WINDOW_UPDATE budget: base + per DATA frame we sent */
#define H2_WINDOW_UPDATE_PER_DATA  4
#define H2_CTRL_PER_SEC            1000 /* PING and SETTINGS frames per second */
#define H2_RESET_BURST             1000 /* RST_STREAM token bucket (CVE-2023-44487) */
#define H2_RESET_RATE              33
#define H2_MAX_CONTINUATIONS       8 /* CONTINUATION frames per header block (CVE-2024-28182) */
#define H2_MAX_OUTBOUND_ACK        1000
#define H2_MAX_SETTINGS            32
#define H2_GOAWAY_DELAY_MS         1000 /* shutdown notice -> final GOAWAY */
#define H2_FLUSH_MS                5000 /* bound on flushing the last frames of a closing connection */
#define H2_LINGER_MS               1000 /* bound on reading after our FIN */
#define H2_ABORT_MS                100  /* flood / protocol error: GOAWAY out and socket closed within */
#define H2_ABORT_POLL_MS           5    /* while the kernel still holds our GOAWAY (SIOCOUTQ) */
/* Idle memory (issue 13). nghttp2 1.52 allocates, per session and for the session's life, the stream
 * map's table (calloc of 256 buckets of 16 bytes) and one chunk of the outbound frame buffer
 * (NGHTTP2_FRAMEBUF_CHUNKLEN = 9 + 1 + 16384 bytes, through realloc(NULL, ...)). Both get a slot of
 * the worker's page pool (pagepool.h): the table on the first page, the frame buffer on the next
 * five. After H2_MEM_IDLE_MS without traffic those pages go back to the kernel (h2_mem_idle). */
#define H2_MEM_MAP_BYTES   4096
#define H2_MEM_FRAME_BYTES (9 + 1 + 16384)
#define H2_MEM_FRAME_OFF   4096
#define H2_MEM_FRAME_SPAN  (5 * 4096)
#define H2_MEM_SLOT_BYTES  (H2_MEM_FRAME_OFF + H2_MEM_FRAME_SPAN)
#define H2_MEM_IDLE_MS     1000   /* long enough that no request rate pays a page fault per request */
#define H2_MEM_WARM_SLOTS  64     /* free slots a worker keeps resident for new connections */
#define H2_MEM_MAX_SLOTS   262144 /* per worker; connections past it keep their buffers on the heap */

enum h2_conn_state {
	H2C_PREFACE = 0, /* waiting for the client preface (magic and SETTINGS): limits.headerTimeout */
	H2C_OPEN,        /* serving streams */
	H2C_DRAINING,    /* shutdown notice / GOAWAY sent: in-flight streams finish */
	H2C_CLOSING,     /* session over: flushing the last frames, then FIN and linger */
	H2C_CLOSED,
};

static void h2_conn_drain(struct worker_conn *wc);
static void h2_conn_abort(struct worker_conn *wc);

static const char *h2_conn_state_str(enum h2_conn_state s)
{
	static const char *const names[] = {"PREFACE", "OPEN", "DRAINING", "CLOSING", "CLOSED"};

	return names[s];
}

enum h2_stream_state {
	H2S_HEAD = 0,  /* receiving the request header block */
	H2S_UPSTREAM,  /* exchange under way */
	H2S_RESPONDED, /* the whole response is queued (local answer, or upstream done/failed) */
	H2S_CLOSED,    /* nghttp2 closed the stream: about to be freed */
};

static const char *h2_stream_state_str(enum h2_stream_state s)
{
	static const char *const names[] = {"HEAD", "UPSTREAM", "RESPONDED", "CLOSED"};

	return names[s];
}

struct h2_stream;

struct h2_conn {
	struct worker *w;
	struct bufferevent *bev;
	nghttp2_session *session;
	enum h2_conn_state state;
	int listener_index;
	bool is_tls;
	union jg_sockaddr peer;
	socklen_t peer_len;
	char peer_ip[INET6_ADDRSTRLEN];
	struct bevio_timer timer; /* header / idle timeout; flush and linger bounds while closing */
	struct event goaway_ev;   /* shutdown notice -> final GOAWAY */
	struct event flush_ev;    /* deferred nghttp2_session_mem_send */
	struct event free_ev;     /* deferred free */
	struct h2_stream *streams;
	/* The page-pool slot of the session's stream table and frame buffer (NULL: both on the heap),
	 * which of the two nghttp2 holds, and what is left of limits.idleTimeout once the idle timer's
	 * first step (H2_MEM_IDLE_MS) fired (0: the timer runs no such step). */
	unsigned char *mem_slot;
	bool mem_map_held;
	bool mem_frame_held;
	uint64_t idle_rest_ms;
	struct worker_conn wc; /* the worker's list of connections (drain, abort) */
	/* Plain sockets (not TLS) skip the bufferevent's own I/O (bevio.h): reads through rd (no
	 * FIONREAD ioctl), writes straight from the output buffer once per burst, EV_WRITE only while
	 * the socket is full. TLS connections keep bufferevent_openssl's reads and writes. */
	struct bevio_reader rd;
	bool plain;
	bool in_recv;      /* inside nghttp2_session_mem_recv */
	bool read_blocked; /* parsing stopped: our output is full (the client does not read) */
	bool fin_sent;
	/* The client flooded or broke the protocol: nothing more is read (a flooder would have us read
	 * and drop at memory speed), the GOAWAY is flushed and the socket closed by abort_deadline_ms. */
	bool aborting;
	uint64_t abort_deadline_ms;
	const char *calm_reason; /* a flood budget was exceeded: GOAWAY ENHANCE_YOUR_CALM */
	/* When the open header block (HEADERS without END_HEADERS, then CONTINUATIONs) began; 0 when none.
	 * A block must end within the header timeout, like an HTTP/1.1 head (408): trickled CONTINUATION
	 * frames would otherwise each restart the idle timer and hold the connection, which can carry no
	 * other frame meanwhile. */
	uint64_t head_block_since_ms;
	/* flood accounting */
	unsigned empty_data; /* consecutive empty DATA frames */
	uint64_t priority_frames;
	uint64_t window_updates;
	uint64_t streams_opened;
	uint64_t data_frames_sent;
	uint64_t ctrl_window_start_ms;
	unsigned ctrl_in_window; /* PING + SETTINGS in the current second */
	/* Client stream ids seen on HEADERS (RFC 9113 section 5.1.1): the highest, and which of the 63
	 * odd ids below it were used (bit i: last_headers_sid - 2 * i). */
	int32_t last_headers_sid;
	uint64_t used_sids;
	/* Of those, the ones nghttp2 opened (not refused, not ignored after our GOAWAY) and the ones we
	 * sent RST_STREAM on (same bits; h2_closed_stream_error). */
	uint64_t opened_sids;
	uint64_t reset_sids;
	/* Frame boundaries in the bytes given to nghttp2 (h2_scan): what is left of the client preface or
	 * of a payload, the bytes of a frame header split across reads, the highest client stream id on
	 * a HEADERS frame header, and a DATA frame to judge before nghttp2 sees its header's last byte. */
	uint32_t scan_skip;
	uint8_t scan_hd_len;
	uint8_t scan_hd[9];
	int32_t scan_max_sid;
	int32_t scan_check_sid; /* 0: none */
};

struct h2_stream {
	struct h2_conn *conn;
	int32_t id;
	enum h2_stream_state state;
	struct arena arena;
	struct request req;
	struct h2_stream *next, *prev;
	uint64_t start_us; /* jg_now_us() when its HEADERS began */
	/* request head decoding */
	size_t header_bytes;
	unsigned header_count;
	int error_status; /* 431 / 400 found while decoding: answered at END_HEADERS */
	const char *error_text;
	char *cookie; /* cookie fields joined with "; " (RFC 9113 section 8.2.3) */
	size_t cookie_len;
	/* request body */
	struct worker_gen *gen; /* configuration generation of this request (pipeline_run) */
	struct upstream_exchange *ex;
	const struct config_rule *rule;
	struct evbuffer *req_body; /* received, not yet taken by upstream: bounded by the stream window */
	uint64_t req_body_bytes;
	int64_t req_content_length; /* -1: not given */
	bool req_done;              /* END_STREAM received */
	bool upstream_ready;
	bool body_blocked;
	bool body_ended; /* upstream_end_body called */
	/* response */
	struct evbuffer *resp_body; /* bounded by H2_STREAM_OUT_HIGH (+ one upstream read) */
	nghttp2_nv *trailers;
	size_t n_trailers;
	bool resp_head_sent;
	bool resp_eof;
	bool resp_paused;
	bool data_deferred;
	int status;
	uint64_t resp_bytes;
	char request_id[40];
	char upstream_peer[64]; /* "ip:port" of the endpoint, kept for the access log */
};

static void h2_flush(struct h2_conn *c);
static void h2_close(struct h2_conn *c);
static void h2_destroy(struct h2_conn *c);
static void h2_stream_drop_body(struct h2_stream *s);
static void h2_stream_keep_peer(struct h2_stream *s);

/* ---- states ---- */

static void h2_set_state(struct h2_conn *c, enum h2_conn_state s)
{
	static const bool legal[5][5] = {
	        /* PREFACE */ {false, true, true, true, true},
	        /* OPEN */ {false, false, true, true, true},
	        /* DRAINING */ {false, false, false, true, true},
	        /* CLOSING */ {false, false, false, false, true},
	        /* CLOSED */ {false, false, false, false, false},
	};

	if (!legal[c->state][s]) {
		log_error("http2 %s: illegal state change %s -> %s", c->peer_ip, h2_conn_state_str(c->state),
		          h2_conn_state_str(s));
		abort();
	}
	log_debug("http2 %s: %s -> %s", c->peer_ip, h2_conn_state_str(c->state), h2_conn_state_str(s));
	c->state = s;
}

static void h2_stream_set_state(struct h2_stream *s, enum h2_stream_state to)
{
	static const bool legal[4][4] = {
	        /* HEAD */ {false, true, true, true},
	        /* UPSTREAM */ {false, false, true, true},
	        /* RESPONDED */ {false, false, false, true},
	        /* CLOSED */ {false, false, false, false},
	};

	if (!legal[s->state][to]) {
		log_error("http2 %s: stream %d: illegal state change %s -> %s", s->conn->peer_ip, s->id,
		          h2_stream_state_str(s->state), h2_stream_state_str(to));
		abort();
	}
	log_debug("http2 %s: stream %d: %s -> %s", s->conn->peer_ip, s->id, h2_stream_state_str(s->state),
	          h2_stream_state_str(to));
	s->state = to;
}

/* Moved on every read and write: a lazy timer (bevio.h) records the new deadline without libevent.
 * An aborting connection keeps its close deadline whatever happens. */
static void h2_arm_timer(struct h2_conn *c, uint64_t ms)
{
	if (c->aborting)
		return;
	c->idle_rest_ms = 0;
	if (ms == 0)
		bevio_timer_clear(&c->timer);
	else
		bevio_timer_set(&c->timer, ms);
}

/* limits.idleTimeout from now, in two steps when the connection has a page-pool slot: after
 * H2_MEM_IDLE_MS the slot's pages are released (h2_on_timer, h2_mem_idle), then the rest runs. One
 * lazy timer either way: no event operation per request. */
static void h2_arm_head_block_deadline(struct h2_conn *c);

/* An open header block keeps its own, earlier deadline (h2_arm_head_block_deadline): traffic on
 * other streams, our writes included, does not extend limits.headerTimeout. */
static void h2_arm_idle_timer(struct h2_conn *c)
{
	uint64_t idle = c->w->cfg->limits.idle_timeout_ms;

	if (c->mem_slot == NULL || idle <= H2_MEM_IDLE_MS || c->aborting) {
		h2_arm_timer(c, idle);
	} else {
		h2_arm_timer(c, H2_MEM_IDLE_MS);
		c->idle_rest_ms = idle - H2_MEM_IDLE_MS;
	}
	if (c->head_block_since_ms != 0)
		h2_arm_head_block_deadline(c);
}

/* True when an open header block has outlived the header timeout. */
static bool h2_head_block_expired(const struct h2_conn *c)
{
	return c->head_block_since_ms != 0 &&
	       jg_now_ms() - c->head_block_since_ms >= c->w->cfg->limits.header_timeout_ms;
}

/* With a header block open, the connection timer fires at the block's deadline when that comes
 * before the idle timeout (h2_on_timer tells the two apart). */
static void h2_arm_head_block_deadline(struct h2_conn *c)
{
	uint64_t deadline = c->head_block_since_ms + c->w->cfg->limits.header_timeout_ms, now = jg_now_ms();
	uint64_t left = (deadline > now ? deadline - now : 0) + 1; /* +1: never fire before it */

	if (left < c->w->cfg->limits.idle_timeout_ms && !c->aborting) {
		c->idle_rest_ms = 0;
		bevio_timer_set_odd(&c->timer, left); /* not one of the configured durations */
	}
}

/* Serialises pending frames from the event loop rather than from the caller's stack. */
static void h2_schedule_flush(struct h2_conn *c)
{
	if (c->state != H2C_CLOSED && !c->in_recv)
		event_active(&c->flush_ev, EV_TIMEOUT, 0);
}

/* Starts or stops reading the socket (the plain reader, or the TLS bufferevent's EV_READ). */
static void h2_read_enable(struct h2_conn *c, bool on)
{
	if (c->plain)
		bevio_reader_enable(&c->rd, on);
	else if (on)
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
}

/* A GOAWAY for a connection error is queued (ours or nghttp2's): nothing more is read or parsed,
 * and the connection closes once the kernel sent our bytes or at H2_ABORT_MS (h2_on_timer). */
static void h2_abort_start(struct h2_conn *c)
{
	c->aborting = true;
	c->abort_deadline_ms = jg_now_ms() + H2_ABORT_MS;
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
	h2_read_enable(c, false);
	bevio_timer_set_odd(&c->timer, H2_ABORT_MS);
}

/* ---- memory of an idle connection (issue 13) ---- */

int http2_mem_pool_init(struct pagepool *pool, uint32_t max_conns)
{
	/* The slot layout assumes 4 KiB pages, and the allocator recognises the two buffers by the sizes
	 * nghttp2 1.52 asks for (h2_mem_calloc, h2_mem_realloc): with another page size or another
	 * library version (the shared library may differ from the headers we were built with) nghttp2
	 * keeps everything on the heap, so a different object can never be released while live. */
	if (sysconf(_SC_PAGESIZE) != 4096 || (nghttp2_version(0)->version_num & 0xffff00) != 0x013400) {
		memset(pool, 0, sizeof(*pool));
		return JG_ERR_UNSUPPORTED;
	}
	/* Address space only, but bounded: 24 KiB * H2_MEM_MAX_SLOTS = 6 GiB. */
	if (max_conns > H2_MEM_MAX_SLOTS)
		max_conns = H2_MEM_MAX_SLOTS;
	return pagepool_init(pool, H2_MEM_SLOT_BYTES, max_conns, H2_MEM_WARM_SLOTS);
}

/* nghttp2_mem functions: the session's stream table and frame buffer go to the connection's slot,
 * everything else (the session object, HPACK tables and entries, streams, frames) to malloc. A
 * request matching neither, or a connection without a slot, falls through to libc. */
static void *h2_mem_malloc(size_t size, void *user_data)
{
	(void)user_data;
	return malloc(size);
}

static void *h2_mem_calloc(size_t n, size_t size, void *user_data)
{
	struct h2_conn *c = user_data;

	if (c->mem_slot != NULL && !c->mem_map_held && size != 0 && n == H2_MEM_MAP_BYTES / size &&
	    H2_MEM_MAP_BYTES % size == 0) {
		/* A slot kept warm holds its last owner's table; a fresh or released one reads as
		 * zero (checking reads the shared zero page: no memory is taken). */
		if (!pagepool_is_zero(c->mem_slot, H2_MEM_MAP_BYTES))
			memset(c->mem_slot, 0, H2_MEM_MAP_BYTES);
		c->mem_map_held = true;
		return c->mem_slot;
	}
	return calloc(n, size);
}

static bool h2_mem_in_slot(const struct h2_conn *c, const void *ptr)
{
	const unsigned char *p = ptr;

	return c->mem_slot != NULL && p >= c->mem_slot && p < c->mem_slot + H2_MEM_SLOT_BYTES;
}

static void h2_mem_free(void *ptr, void *user_data)
{
	struct h2_conn *c = user_data;

	if (!h2_mem_in_slot(c, ptr)) {
		free(ptr);
		return;
	}
	if ((unsigned char *)ptr == c->mem_slot)
		c->mem_map_held = false;
	else
		c->mem_frame_held = false;
}

static void *h2_mem_realloc(void *ptr, size_t size, void *user_data)
{
	struct h2_conn *c = user_data;
	size_t span;
	void *np;

	if (ptr == NULL && size == H2_MEM_FRAME_BYTES && c->mem_slot != NULL && !c->mem_frame_held) {
		c->mem_frame_held = true;
		return c->mem_slot + H2_MEM_FRAME_OFF;
	}
	if (!h2_mem_in_slot(c, ptr))
		return realloc(ptr, size);
	span = (unsigned char *)ptr == c->mem_slot ? H2_MEM_MAP_BYTES : H2_MEM_FRAME_SPAN;
	if (size <= span)
		return ptr;
	np = malloc(size);
	if (np == NULL)
		return NULL;
	memcpy(np, ptr, span);
	h2_mem_free(ptr, c);
	return np;
}

/* Gives the slot back once nghttp2 freed the session. */
static void h2_mem_put_slot(struct h2_conn *c)
{
	if (c->mem_slot == NULL)
		return;
	pagepool_put(&c->w->h2_pages, c->mem_slot);
	c->mem_slot = NULL;
	c->mem_map_held = false;
	c->mem_frame_held = false;
}

/* The connection has been quiet for H2_MEM_IDLE_MS. With no stream and nothing nghttp2 still has to
 * send, the frame buffer's bytes are dead (nghttp2 serialises every frame afresh into it) and a
 * stream table without streams is all zero: their pages go back to the kernel and are faulted in
 * again by the next frame and the next stream. */
static void h2_mem_idle(struct h2_conn *c)
{
	if (c->mem_slot == NULL || c->state != H2C_OPEN || c->streams != NULL || c->in_recv ||
	    nghttp2_session_want_write(c->session))
		return;
	if (c->mem_frame_held)
		pagepool_release(&c->w->h2_pages, c->mem_slot + H2_MEM_FRAME_OFF, H2_MEM_FRAME_SPAN);
	if (c->mem_map_held && pagepool_is_zero(c->mem_slot, H2_MEM_MAP_BYTES))
		pagepool_release(&c->w->h2_pages, c->mem_slot, H2_MEM_MAP_BYTES);
	log_debug("http2 %s: idle, session buffers released", c->peer_ip);
}

/* ---- helpers ---- */

#define H2_NV(n, v, vl)                                                                                      \
	{                                                                                                    \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE                    \
	}

/* gRPC's percent-encoding of grpc-message (PROTOCOL-HTTP2.md): everything but unreserved ASCII is
 * escaped, so "Jwt is missing" becomes "Jwt%20is%20missing". Returns the length written (cut at
 * cap - 1, never inside an escape). */
static size_t h2_grpc_percent_encode(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *in != '\0'; in++) {
		unsigned char ch = (unsigned char)*in;
		bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		             (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~';

		if (n + (plain ? 1 : 3) >= cap)
			break;
		if (plain) {
			out[n++] = (char)ch;
		} else {
			out[n++] = '%';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		}
	}
	out[n] = '\0';
	return n;
}

/* An HTTP/1.1 upstream may send values with surrounding whitespace or bytes that HTTP/2 forbids
 * (RFC 9113 section 8.2.1). Sets *v and *len to the value without OWS; false when it cannot be sent. */
static bool h2_field_value_ok(const char **v, size_t *len)
{
	const char *p = *v;
	size_t n = *len;

	while (n > 0 && (p[0] == ' ' || p[0] == '\t')) {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (!request_field_value_ok(p, n)) /* the HTTP/1.1 codecs' rule: no CTL but HTAB, no DEL */
		return false;
	*v = p;
	*len = n;
	return true;
}

/* ---- access log ---- */

static void h2_stream_log(struct h2_stream *s)
{
	struct h2_conn *c = s->conn;
	struct access_log_entry e;
	uint64_t now_us;

	if (s->req.method == NULL)
		return;
	now_us = jg_now_us(); /* the one clock read at the end of a request */
	worker_count_request(c->w, s->gen, c->listener_index, s->rule, s->status, s->start_us, now_us);
	if (!c->w->has_access_log)
		return;
	memset(&e, 0, sizeof(e));
	e.client = c->peer_ip;
	e.host = s->req.authority;
	e.method = s->req.method;
	e.path = s->req.target;
	e.route = s->rule != NULL ? s->rule->route->name : NULL;
	e.upstream = s->upstream_peer[0] ? s->upstream_peer : upstream_exchange_peer(s->ex);
	e.status = s->status;
	e.bytes = s->resp_bytes;
	e.duration_ms = (now_us - s->start_us) / 1000;
	e.request_id = s->request_id[0] ? s->request_id : NULL;
	e.protocol = "HTTP/2";
	e.jwt = auth_reason_str((enum auth_reason)s->req.jwt_reason);
	e.jwt_sub = s->req.jwt_sub;
	access_log_write(c->w->cfg, &e);
}

/* ---- response side ---- */

/* nghttp2 data source: hands out the buffered response body; defers while the buffer is empty
 * and the upstream has more to come; at the end sends the trailers, if any. */
static ssize_t h2_data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                               uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct h2_stream *s = source->ptr;
	int n = evbuffer_remove(s->resp_body, buf, length);

	if (n < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (evbuffer_get_length(s->resp_body) == 0) {
		if (s->resp_eof) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
			if (s->n_trailers > 0) {
				*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
				if (nghttp2_submit_trailer(session, stream_id, s->trailers, s->n_trailers) !=
				    0)
					return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
			}
		} else if (n == 0) {
			s->data_deferred = true;
			return NGHTTP2_ERR_DEFERRED;
		}
	}
	if (s->resp_paused && s->ex != NULL && evbuffer_get_length(s->resp_body) <= H2_STREAM_OUT_LOW) {
		/* The client's window opened again: let the upstream send more (it parses from its loop). */
		s->resp_paused = false;
		upstream_pause_response(s->ex, false);
	}
	return n;
}

/* Wakes the data provider after body bytes or the end arrived. */
static void h2_stream_resume(struct h2_stream *s)
{
	if (s->data_deferred) {
		s->data_deferred = false;
		nghttp2_session_resume_data(s->conn->session, s->id);
	}
	h2_schedule_flush(s->conn);
}

/* Renders a local answer: for gRPC a trailers-only response (:status 200, grpc-status, the message
 * percent-encoded in grpc-message); otherwise status, text/plain and the message as body, with
 * WWW-Authenticate and Location when given. An upstream exchange still running is abandoned. */
static void h2_stream_respond_with(struct h2_stream *s, int status, int grpc_status, const char *message,
                                   const char *www_authenticate, const char *location, size_t location_len)
{
	struct h2_conn *c = s->conn;
	nghttp2_data_provider prd;
	nghttp2_nv nva[5];
	size_t n = 0;
	char gs[16], gm[512], cl[24];
	bool is_head = s->req.method_len == 4 && memcmp(s->req.method, "HEAD", 4) == 0;
	int rc;

	if (s->ex != NULL) {
		h2_stream_keep_peer(s);
		upstream_cancel(s->ex);
		s->ex = NULL;
	}
	h2_stream_drop_body(s);
	if (s->resp_head_sent) {
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
		goto done;
	}
	s->resp_head_sent = true;
	s->resp_eof = true;
	if (s->req.is_grpc) {
		size_t gsl = (size_t)snprintf(gs, sizeof(gs), "%d", grpc_status);
		size_t gml = h2_grpc_percent_encode(message, gm, sizeof(gm));
		nghttp2_nv g[] = {H2_NV(":status", "200", 3), H2_NV("content-type", "application/grpc", 16),
		                  H2_NV("grpc-status", gs, gsl), H2_NV("grpc-message", gm, gml)};

		s->status = 200;
		rc = nghttp2_submit_response(c->session, s->id, g, JG_ARRAY_SIZE(g), NULL);
	} else {
		char st[8];
		size_t stl = (size_t)snprintf(st, sizeof(st), "%d", status);
		size_t blen;

		/* Envoy answers JWT denials without a newline, its other local replies with none either
		 * over HTTP/2; keep the HTTP/1.1 codec's bodies: denial text bare, others with "\n". */
		evbuffer_drain(s->resp_body, evbuffer_get_length(s->resp_body));
		if (status == 401 || status == 403)
			evbuffer_add(s->resp_body, message, strlen(message));
		else
			evbuffer_add_printf(s->resp_body, "%s\n", message);
		blen = evbuffer_get_length(s->resp_body);
		s->status = status;
		nva[n++] = (nghttp2_nv)H2_NV(":status", st, stl);
		nva[n++] = (nghttp2_nv)H2_NV("content-type", "text/plain", 10);
		nva[n++] = (nghttp2_nv)H2_NV("content-length", cl,
		                             (size_t)snprintf(cl, sizeof(cl), "%zu", blen));
		if (www_authenticate != NULL && www_authenticate[0] != '\0')
			nva[n++] = (nghttp2_nv)H2_NV("www-authenticate", www_authenticate,
			                             strlen(www_authenticate));
		if (location != NULL)
			nva[n++] = (nghttp2_nv)H2_NV("location", location, location_len);
		if (is_head) {
			evbuffer_drain(s->resp_body, blen);
			rc = nghttp2_submit_response(c->session, s->id, nva, n, NULL);
		} else {
			s->resp_bytes = blen;
			prd.source.ptr = s;
			prd.read_callback = h2_data_read_cb;
			rc = nghttp2_submit_response(c->session, s->id, nva, n, &prd);
		}
	}
	if (rc != 0)
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
done:
	if (s->state != H2S_RESPONDED)
		h2_stream_set_state(s, H2S_RESPONDED);
	h2_schedule_flush(c);
}

static void h2_stream_respond(struct h2_stream *s, int status, int grpc_status, const char *message,
                              const char *www_authenticate)
{
	h2_stream_respond_with(s, status, grpc_status, message, www_authenticate, NULL, 0);
}

/* ---- request body towards the upstream ---- */

/* Hands bytes back to the client's flow-control windows (stream and connection). */
static void h2_stream_consume(struct h2_stream *s, size_t n)
{
	if (n > 0)
		nghttp2_session_consume(s->conn->session, s->id, n);
}

/* Feeds buffered request body to the upstream while it accepts, reopening the windows by what it
 * took, and ends the body once END_STREAM came and everything was fed. */
static void h2_stream_push_body(struct h2_stream *s)
{
	while (s->ex != NULL && s->upstream_ready && !s->body_blocked &&
	       evbuffer_get_length(s->req_body) > 0) {
		struct evbuffer_iovec v;
		int rc;

		if (evbuffer_peek(s->req_body, -1, NULL, &v, 1) < 1)
			break;
		rc = upstream_send_body(s->ex, v.iov_base, v.iov_len);
		evbuffer_drain(s->req_body, v.iov_len);
		h2_stream_consume(s, v.iov_len);
		if (rc == 1)
			s->body_blocked = true;
		else if (rc < 0)
			break; /* the exchange is ending; its on_end / on_error follows */
	}
	if (s->ex != NULL && s->upstream_ready && s->req_done && !s->body_ended &&
	    evbuffer_get_length(s->req_body) == 0) {
		s->body_ended = true;
		upstream_end_body(s->ex);
	}
	h2_schedule_flush(s->conn);
}

/* A piece of request body from a DATA frame. */
static void h2_stream_take_body(struct h2_stream *s, const uint8_t *data, size_t len)
{
	uint64_t max = s->conn->w->cfg->limits.max_body_bytes;

	s->req_body_bytes += len;
	if (max > 0 && s->req_body_bytes > max && s->state != H2S_RESPONDED) {
		h2_stream_consume(s, len);
		h2_stream_respond(s, 413, pipeline_grpc_status(413), "request body too large", NULL);
		return;
	}
	if (s->ex == NULL || s->state != H2S_UPSTREAM) {
		h2_stream_consume(s, len); /* answered locally: read and dropped */
		return;
	}
	if (evbuffer_add(s->req_body, data, len) != 0) {
		h2_stream_consume(s, len);
		h2_stream_respond(s, 503, pipeline_grpc_status(503), "out of memory", NULL);
		return;
	}
	h2_stream_push_body(s);
}

/* The exchange is over (or abandoned): request bytes still buffered or arriving are dropped and
 * handed back to the client's windows so that its upload cannot stall the connection. */
static void h2_stream_drop_body(struct h2_stream *s)
{
	size_t n = evbuffer_get_length(s->req_body);

	evbuffer_drain(s->req_body, n);
	h2_stream_consume(s, n);
}

static void h2_stream_keep_peer(struct h2_stream *s)
{
	if (s->ex != NULL && s->upstream_peer[0] == '\0')
		snprintf(s->upstream_peer, sizeof(s->upstream_peer), "%s", upstream_exchange_peer(s->ex));
}

/* ---- upstream sink ---- */

static void h2_up_on_ready(void *ctx)
{
	struct h2_stream *s = ctx;

	s->upstream_ready = true;
	h2_stream_push_body(s);
}

static void h2_up_on_drain(void *ctx)
{
	struct h2_stream *s = ctx;

	s->body_blocked = false;
	h2_stream_push_body(s);
}

/* Relays a response head: :status and the end-to-end headers (RFC 9113 section 8.2.2 forbids the
 * connection-specific ones). 1xx other than 100 go out as non-final HEADERS. */
static void h2_up_on_head(void *ctx, const struct response *resp)
{
	struct h2_stream *s = ctx;
	struct h2_conn *c = s->conn;
	nghttp2_nv *nva;
	nghttp2_data_provider prd;
	char st[8];
	size_t i, n = 0;
	int rc;

	h2_stream_keep_peer(s);
	if (resp->status == 100)
		return; /* we never forward Expect; an unasked 100 is dropped */
	nva = arena_alloc(&s->arena, (resp->n_headers + 1) * sizeof(*nva));
	if (nva == NULL) {
		h2_stream_respond(s, 503, pipeline_grpc_status(503), "out of memory", NULL);
		return;
	}
	nva[n++] = (nghttp2_nv)H2_NV(":status", st, (size_t)snprintf(st, sizeof(st), "%d", resp->status));
	for (i = 0; i < resp->n_headers; i++) {
		const struct request_header *h = &resp->headers[i];
		const char *v = h->value;
		size_t vl = h->value_len;

		if (h->removed || h->name_len == 0 || h->name[0] == ':' ||
		    request_header_is_hop_by_hop(h->name, h->name_len))
			continue;
		if (request_header_listed_in_connection(resp->headers, resp->n_headers, h->name, h->name_len))
			continue;
		if (!h2_field_value_ok(&v, &vl))
			continue;
		nva[n].name = (uint8_t *)h->name;
		nva[n].namelen = h->name_len;
		nva[n].value = (uint8_t *)v;
		nva[n].valuelen = vl;
		nva[n].flags = NGHTTP2_NV_FLAG_NONE;
		n++;
	}
	if (resp->status < 200) {
		nghttp2_submit_headers(c->session, NGHTTP2_FLAG_NONE, s->id, NULL, nva, n, NULL);
		h2_schedule_flush(c);
		return;
	}
	s->status = resp->status;
	s->resp_head_sent = true;
	if (resp->has_body) {
		prd.source.ptr = s;
		prd.read_callback = h2_data_read_cb;
		rc = nghttp2_submit_response(c->session, s->id, nva, n, &prd);
	} else {
		s->resp_eof = true;
		rc = nghttp2_submit_response(c->session, s->id, nva, n, NULL);
	}
	if (rc != 0)
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
	h2_schedule_flush(c);
}

static void h2_up_on_data(void *ctx, const char *data, size_t len)
{
	struct h2_stream *s = ctx;

	if (evbuffer_add(s->resp_body, data, len) != 0) {
		h2_stream_respond(s, 503, pipeline_grpc_status(503), "out of memory", NULL);
		return;
	}
	s->resp_bytes += len;
	if (!s->resp_paused && evbuffer_get_length(s->resp_body) > H2_STREAM_OUT_HIGH) {
		/* The client reads (or opens its window) slower than the upstream sends. */
		s->resp_paused = true;
		upstream_pause_response(s->ex, true);
	}
	h2_stream_resume(s);
}

/* Keeps the trailers (copied into the stream's arena) for the data provider's end. */
static void h2_up_on_trailers(void *ctx, const struct request_header *trailers, size_t n)
{
	struct h2_stream *s = ctx;
	size_t i;

	s->trailers = arena_alloc(&s->arena, (n + 1) * sizeof(*s->trailers));
	if (s->trailers == NULL)
		return;
	for (i = 0; i < n; i++) {
		const struct request_header *h = &trailers[i];
		const char *v = h->value;
		size_t vl = h->value_len;
		char *name, *value;

		if (h->removed || h->name_len == 0 || h->name[0] == ':' ||
		    request_header_is_hop_by_hop(h->name, h->name_len))
			continue;
		if (!h2_field_value_ok(&v, &vl))
			continue;
		name = arena_strndup(&s->arena, h->name, h->name_len);
		value = arena_strndup(&s->arena, v, vl);
		if (name == NULL || value == NULL)
			return;
		s->trailers[s->n_trailers++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, h->name_len,
		                                            vl, NGHTTP2_NV_FLAG_NONE};
	}
}

static void h2_up_on_end(void *ctx)
{
	struct h2_stream *s = ctx;

	h2_stream_keep_peer(s);
	s->ex = NULL;
	s->resp_eof = true;
	h2_stream_drop_body(s);
	h2_stream_set_state(s, H2S_RESPONDED);
	h2_stream_resume(s);
}

/* Before a head: 502/503/504 text, or gRPC trailers-only UNAVAILABLE / DEADLINE_EXCEEDED. After it:
 * RST_STREAM(INTERNAL_ERROR), the only honest signal left. */
static void h2_up_on_error(void *ctx, enum upstream_error err, bool after_head)
{
	struct h2_stream *s = ctx;
	int status = upstream_error_status(err);

	h2_stream_keep_peer(s);
	s->ex = NULL;
	h2_stream_drop_body(s);
	if (after_head || s->resp_head_sent) {
		log_info("http2 %s: stream %d: upstream failed mid-response: %s", s->conn->peer_ip, s->id,
		         upstream_error_text(err));
		nghttp2_submit_rst_stream(s->conn->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
		h2_stream_set_state(s, H2S_RESPONDED);
		h2_schedule_flush(s->conn);
		return;
	}
	h2_stream_respond(s, status, pipeline_grpc_status(status), upstream_error_text(err), NULL);
}

static const struct upstream_sink h2_sink = {
        .on_ready = h2_up_on_ready,
        .on_head = h2_up_on_head,
        .on_data = h2_up_on_data,
        .on_trailers = h2_up_on_trailers,
        .on_end = h2_up_on_end,
        .on_error = h2_up_on_error,
        .on_drain = h2_up_on_drain,
};

/* ---- request head ---- */

/* The header block is complete: check what nghttp2 leaves to us, then route, authenticate and start
 * the upstream exchange (or answer locally). */
static void h2_stream_dispatch(struct h2_stream *s)
{
	struct h2_conn *c = s->conn;
	struct request *req = &s->req;
	struct pipeline_outcome po;
	struct request_header *h;
	char extra[2048];
	int len;

	if (s->error_status != 0) {
		h2_stream_respond(s, s->error_status, pipeline_grpc_status(s->error_status), s->error_text,
		                  NULL);
		return;
	}
	if (req->method == NULL || req->target == NULL) {
		/* nghttp2 lets CONNECT through without :path; we are not a tunnel. */
		h2_stream_respond(s, 405, pipeline_grpc_status(405), "method not supported", NULL);
		return;
	}
	h = request_header_get(req, "host", 4);
	if (req->authority == NULL && h != NULL) {
		req->authority = h->value;
		req->authority_len = h->value_len;
	} else if (req->authority != NULL && h != NULL &&
	           !jg_case_eq(h->value, h->value_len, req->authority, req->authority_len)) {
		/* RFC 9113 section 8.3.1: Host naming another entity than :authority is malformed. */
		h2_stream_respond(s, 400, pipeline_grpc_status(400), "Host differs from :authority", NULL);
		return;
	}
	if (req->authority == NULL) {
		h2_stream_respond(s, 400, pipeline_grpc_status(400), "missing :authority", NULL);
		return;
	}
	if (s->cookie != NULL && request_header_add(req, "cookie", 6, s->cookie, s->cookie_len) < 0) {
		h2_stream_respond(s, 431, pipeline_grpc_status(431), "cannot store header", NULL);
		return;
	}
	if (request_finish_head(req) < 0 || req->target[0] != '/') {
		h2_stream_respond(s, 400, pipeline_grpc_status(400), "bad :path or :authority", NULL);
		return;
	}
	h = request_header_get(req, "content-type", 12);
	req->is_grpc = h != NULL && h->value_len >= 16 && jg_case_eq(h->value, 16, "application/grpc", 16);
	h = request_header_get(req, "content-length", 14);
	s->req_content_length = h != NULL ? request_content_length_parse(h->value, h->value_len) : -1;
	if (h != NULL && s->req_content_length < 0) {
		h2_stream_respond(s, 400, pipeline_grpc_status(400), "invalid content-length", NULL);
		return;
	}
	req->has_body = !s->req_done;
	req->listener_index = c->listener_index;
	req->peer = (const struct sockaddr *)&c->peer;
	req->peer_len = c->peer_len;

	pipeline_run(c->w, req, &po);
	s->gen = po.gen;
	s->rule = po.rule;
	if (po.result == PIPELINE_RESPOND) {
		h2_stream_respond_with(s, po.status, po.grpc_status, po.message, po.www_authenticate,
		                       po.location, po.location_len);
		return;
	}
	if (c->w->cfg->limits.max_body_bytes > 0 && s->req_content_length > 0 &&
	    (uint64_t)s->req_content_length > c->w->cfg->limits.max_body_bytes) {
		h2_stream_respond(s, 413, pipeline_grpc_status(413), "request body too large", NULL);
		return;
	}
	len = pipeline_forward_headers(c->w, req, c->peer_ip, extra, sizeof(extra), s->request_id);
	if (len < 0) {
		h2_stream_respond(s, 431, pipeline_grpc_status(431), "forwarding headers too long", NULL);
		return;
	}
	h2_stream_set_state(s, H2S_UPSTREAM);
	/* upstream_start may call on_ready or on_error before it returns; s->ex is set first. */
	if (upstream_start(s->gen->upstream, po.ref, req, extra, (size_t)len, req->has_body,
	                   s->req_done ? 0 : s->req_content_length, &h2_sink, s, &s->ex) < 0) {
		s->ex = NULL;
		h2_stream_respond(s, 503, 14, "upstream overloaded", NULL);
	}
}

/* END_STREAM from the client. */
static void h2_stream_on_request_end(struct h2_stream *s)
{
	s->req_done = true;
	if (s->state == H2S_UPSTREAM)
		h2_stream_push_body(s);
}

/* ---- nghttp2 callbacks ---- */

static ssize_t h2_send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                          void *user_data)
{
	/* Unused: we serialise with nghttp2_session_mem_send. */
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* True when a HEADERS frame names a client stream id below the highest used so far that was never
 * used: RFC 9113 section 5.1.1 makes it a connection error PROTOCOL_ERROR ("numerically greater than
 * all streams that the initiating endpoint has opened"). nghttp2 1.52 cannot tell such an id from a
 * closed stream and ignores the block. An id that was used is h2_closed_stream_error's to judge: a
 * stream we reset may still receive the client's trailers (section 5.1, "closed"). Ids more than 63
 * streams back are not remembered and left to nghttp2 (it ignores them). */
static bool h2_headers_sid_reused(struct h2_conn *c, int32_t sid)
{
	uint32_t back;

	if (sid <= 0 || (sid & 1) == 0)
		return false; /* stream 0 and server ids: nghttp2's checks */
	if (sid > c->last_headers_sid) {
		back = (uint32_t)(sid - c->last_headers_sid) / 2;
		c->used_sids = (back >= 64 ? 0 : c->used_sids << back) | 1;
		c->opened_sids = back >= 64 ? 0 : c->opened_sids << back;
		c->reset_sids = back >= 64 ? 0 : c->reset_sids << back;
		c->last_headers_sid = sid;
		return false;
	}
	back = (uint32_t)(c->last_headers_sid - sid) / 2;
	return back < 64 && (c->used_sids & ((uint64_t)1 << back)) == 0;
}

/* The bit of a client stream id in used_sids / reset_sids; 0 when it is not among the 64 remembered. */
static uint64_t h2_sid_bit(const struct h2_conn *c, int32_t sid)
{
	uint32_t back;

	if (sid <= 0 || (sid & 1) == 0 || sid > c->last_headers_sid)
		return 0;
	back = (uint32_t)(c->last_headers_sid - sid) / 2;
	return back < 64 ? (uint64_t)1 << back : 0;
}

/* True when a DATA or HEADERS frame on client stream sid is a connection error STREAM_CLOSED. The
 * session drops closed streams (nghttp2_option_set_no_closed_streams) and then ignores every frame
 * on them, so the codec judges: RFC 9113 section 5.1, "closed": a frame other than PRIORITY after
 * the stream ended (both END_STREAMs, or the client's RST_STREAM) is a STREAM_CLOSED error, but an
 * endpoint "MUST ignore frames that it receives on closed streams after it has sent a RST_STREAM
 * frame" (reset_sids: the client's frames may have crossed our RST). Streams nghttp2 never opened
 * (refused, their RST_STREAM perhaps still queued; ignored after our GOAWAY, section 6.8), ids never
 * used (nghttp2 ignores them) and ids more than 63 streams back (long gone) are not errors. A
 * session that is already ending reads nothing more. */
static bool h2_closed_stream_error(const struct h2_conn *c, int32_t sid)
{
	uint64_t bit = h2_sid_bit(c, sid);

	return (c->opened_sids & bit) != 0 && (c->reset_sids & bit) == 0 &&
	       nghttp2_session_find_stream(c->session, sid) == NULL && nghttp2_session_want_read(c->session);
}

/* Goes over the bytes about to be given to nghttp2 and finds the frame headers in them (RFC 9113
 * section 4.1; after the 24-byte client preface, section 3.4). nghttp2 does not tell us about DATA
 * it ignores (no on_begin_frame), so a DATA frame on a client stream that may be closed is judged
 * here: the scan stops right after the last byte of its header, and h2_on_read gives nghttp2 the
 * bytes before that byte (so that its streams are those the frames before made), asks
 * h2_closed_stream_error, then goes on. Returns how many bytes of p were gone over. A header split
 * across reads waits in scan_hd. */
static size_t h2_scan(struct h2_conn *c, const uint8_t *p, size_t len)
{
	/* In locals: stores through p (a byte pointer, which may alias anything) would make the compiler
	 * reload the connection's fields. */
	size_t i = 0, skip = c->scan_skip;
	int32_t max_sid = c->scan_max_sid;

	while (i < len) {
		const uint8_t *hd;
		uint32_t w;
		int32_t sid;

		if (skip > 0) {
			size_t k = len - i < skip ? len - i : skip;

			skip -= k;
			i += k;
			continue;
		}
		if (c->scan_hd_len == 0 && len - i >= sizeof(c->scan_hd)) {
			hd = p + i; /* the common case: the whole header in this read */
			i += sizeof(c->scan_hd);
		} else {
			c->scan_hd[c->scan_hd_len++] = p[i++];
			if (c->scan_hd_len < sizeof(c->scan_hd))
				continue;
			c->scan_hd_len = 0;
			hd = c->scan_hd;
		}
		memcpy(&w, hd, sizeof(w));
		skip = ntohl(w) >> 8; /* 24-bit length, then the type */
		memcpy(&w, hd + 5, sizeof(w));
		sid = (int32_t)(ntohl(w) & 0x7fffffff);
		if ((sid & 1) != 0) {
			if (hd[3] == NGHTTP2_HEADERS) {
				if (sid > max_sid)
					max_sid = sid;
			} else if (hd[3] == NGHTTP2_DATA && sid <= max_sid &&
			           (uint32_t)(max_sid - sid) / 2 < 64) {
				c->scan_check_sid = sid;
				break;
			}
		}
		if (len - i >= skip) {
			i += skip; /* the payload in this read too */
			skip = 0;
		}
	}
	c->scan_skip = (uint32_t)skip;
	c->scan_max_sid = max_sid;
	return i;
}

/* Counts the frames that cost us work without giving the client anything (floods nghttp2 1.52 does
 * not bound) and stops the connection when a budget is exceeded. */
static int h2_on_begin_frame_cb(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data)
{
	struct h2_conn *c = user_data;
	uint64_t now;

	switch (hd->type) {
	case NGHTTP2_HEADERS:
		/* nghttp2 calls this for HEADERS on any stream, with its streams as the frames before
		 * left them: no need for h2_scan's stop. */
		if (hd->stream_id <= c->last_headers_sid && h2_closed_stream_error(c, hd->stream_id))
			return nghttp2_session_terminate_session(session, NGHTTP2_STREAM_CLOSED) == 0
			               ? 0
			               : NGHTTP2_ERR_CALLBACK_FAILURE;
		if (h2_headers_sid_reused(c, hd->stream_id))
			return nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR) == 0
			               ? 0
			               : NGHTTP2_ERR_CALLBACK_FAILURE;
		/* fall through */
	case NGHTTP2_CONTINUATION:
		if (hd->flags & NGHTTP2_FLAG_END_HEADERS)
			c->head_block_since_ms = 0;
		else if (c->head_block_since_ms == 0)
			c->head_block_since_ms = jg_now_ms();
		break;
	case NGHTTP2_DATA:
		if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM)) {
			if (++c->empty_data > H2_MAX_EMPTY_DATA)
				c->calm_reason = "empty DATA frame flood";
		} else {
			c->empty_data = 0;
		}
		break;
	case NGHTTP2_PRIORITY:
		if (++c->priority_frames > H2_MAX_PRIORITY_PER_STREAM * (c->streams_opened + 1))
			c->calm_reason = "PRIORITY frame flood";
		break;
	case NGHTTP2_WINDOW_UPDATE:
		if (++c->window_updates >
		    H2_WINDOW_UPDATE_BASE + H2_WINDOW_UPDATE_PER_DATA * c->data_frames_sent)
			c->calm_reason = "WINDOW_UPDATE frame flood";
		break;
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		if (hd->flags & NGHTTP2_FLAG_ACK)
			break;
		now = jg_now_ms();
		if (now - c->ctrl_window_start_ms >= 1000) {
			c->ctrl_window_start_ms = now;
			c->ctrl_in_window = 0;
		}
		if (++c->ctrl_in_window > H2_CTRL_PER_SEC)
			c->calm_reason = hd->type == NGHTTP2_PING ? "PING flood" : "SETTINGS flood";
		break;
	default:
		break;
	}
	return c->calm_reason != NULL ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int h2_on_begin_headers_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct h2_conn *c = user_data;
	struct h2_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (frame->hd.stream_id == c->last_headers_sid)
		c->opened_sids |= 1; /* nghttp2 opened it (a new stream is always the highest id) */
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	s->req_body = evbuffer_new();
	s->resp_body = evbuffer_new();
	if (s->req_body == NULL || s->resp_body == NULL) {
		if (s->req_body != NULL)
			evbuffer_free(s->req_body);
		if (s->resp_body != NULL)
			evbuffer_free(s->resp_body);
		free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	s->conn = c;
	stats_add(&c->w->stats->h2_streams_open, 1);
	s->id = frame->hd.stream_id;
	s->start_us = jg_now_us();
	s->req_content_length = -1;
	arena_init_cached(&s->arena, &c->w->arenas, H2_ARENA_LIMIT);
	request_init(&s->req, &s->arena);
	s->req.scheme = c->is_tls ? "https" : "http";
	s->req.http_major = 2;
	s->req.http_minor = 0;
	s->next = c->streams;
	if (c->streams != NULL)
		c->streams->prev = s;
	c->streams = s;
	c->streams_opened++;
	nghttp2_session_set_stream_user_data(session, s->id, s);
	if (c->state == H2C_PREFACE) {
		h2_set_state(c, H2C_OPEN);
		h2_arm_idle_timer(c);
	}
	return 0;
}

/* Stores one request header field. The list is bounded here (nghttp2 does not): past the limits
 * the fields are dropped and the stream answered 431 once the block ends. */
static int h2_on_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                           size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                           void *user_data)
{
	struct h2_conn *c = user_data;
	struct h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	const struct config_limits *lim = &c->w->cfg->limits;
	const char *n = (const char *)name, *v = (const char *)value;
	char **dst = NULL;
	size_t *dst_len = NULL;

	if (s == NULL || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	/* Request trailers count against the same bounds and are not forwarded. */
	s->header_bytes += namelen + valuelen + 32;
	if (++s->header_count > lim->max_header_count || s->header_bytes > lim->max_header_bytes) {
		if (s->error_status == 0) {
			s->error_status = 431;
			s->error_text = s->header_count > lim->max_header_count
			                        ? "too many header fields"
			                        : "request header fields too large";
		}
		return 0;
	}
	if (frame->headers.cat != NGHTTP2_HCAT_REQUEST || s->error_status != 0)
		return 0;
	if (namelen > 0 && n[0] == ':') {
		if (namelen == 7 && memcmp(n, ":method", 7) == 0) {
			dst = &s->req.method;
			dst_len = &s->req.method_len;
		} else if (namelen == 5 && memcmp(n, ":path", 5) == 0) {
			dst = &s->req.target;
			dst_len = &s->req.target_len;
		} else if (namelen == 10 && memcmp(n, ":authority", 10) == 0) {
			dst = &s->req.authority;
			dst_len = &s->req.authority_len;
		} else {
			return 0; /* :scheme: ours is the transport's; nghttp2 validated the value */
		}
		*dst = arena_strndup(&s->arena, v, valuelen);
		*dst_len = valuelen;
		if (*dst == NULL) {
			s->error_status = 431;
			s->error_text = "cannot store header";
		}
		return 0;
	}
	if (namelen == 6 && memcmp(n, "cookie", 6) == 0) {
		char *joined = arena_alloc(&s->arena, s->cookie_len + 2 + valuelen + 1);

		if (joined == NULL) {
			s->error_status = 431;
			s->error_text = "cannot store header";
			return 0;
		}
		if (s->cookie_len > 0) {
			memcpy(joined, s->cookie, s->cookie_len);
			memcpy(joined + s->cookie_len, "; ", 2);
			s->cookie_len += 2;
		}
		memcpy(joined + s->cookie_len, v, valuelen);
		s->cookie_len += valuelen;
		joined[s->cookie_len] = '\0';
		s->cookie = joined;
		return 0;
	}
	if (request_header_add(&s->req, n, namelen, v, valuelen) < 0) {
		s->error_status = 431;
		s->error_text = "cannot store header";
	}
	return 0;
}

static int h2_on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct h2_conn *c = user_data;
	struct h2_stream *s;

	if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
	    c->state == H2C_PREFACE) {
		/* The client preface is complete (RFC 9113 section 3.4: magic, then SETTINGS). From here
		 * a connection without a request is idle, not slow: a gRPC channel may connect long
		 * before its first call. limits.idleTimeout bounds it; headerTimeout bounds each header
		 * block (head_block_since_ms). */
		h2_set_state(c, H2C_OPEN);
		h2_arm_idle_timer(c);
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
		s->req_done = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
		h2_stream_dispatch(s);
		return 0;
	}
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->req_done)
		h2_stream_on_request_end(s);
	return 0;
}

static int h2_on_data_chunk_recv_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                                    const uint8_t *data, size_t len, void *user_data)
{
	struct h2_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

	if (s == NULL) {
		nghttp2_session_consume(session, stream_id, len);
		return 0;
	}
	h2_stream_take_body(s, data, len);
	return 0;
}

/* The reason label of jwtgate_http2_goaways_sent_total for a GOAWAY with this code. */
static enum stats_goaway h2_goaway_reason(uint32_t code)
{
	return code == NGHTTP2_NO_ERROR            ? STATS_GOAWAY_NO_ERROR
	       : code == NGHTTP2_PROTOCOL_ERROR    ? STATS_GOAWAY_PROTOCOL_ERROR
	       : code == NGHTTP2_ENHANCE_YOUR_CALM ? STATS_GOAWAY_ENHANCE_YOUR_CALM
	                                           : STATS_GOAWAY_OTHER;
}

static int h2_on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct h2_conn *c = user_data;

	if (frame->hd.type == NGHTTP2_DATA)
		c->data_frames_sent++;
	else if (frame->hd.type == NGHTTP2_RST_STREAM)
		c->reset_sids |= h2_sid_bit(c, frame->hd.stream_id); /* ours and nghttp2's own */
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
	    !c->aborting) {
		/* A connection error nghttp2 found itself (frame size, stream state, HPACK...): close as
		 * h2_terminate_abort does for the ones we find, without the lingering read of a graceful
		 * close (a second under TLS, where there is no half-close). RFC 9113 section 5.4.1:
		 * "After sending the GOAWAY frame for an error condition, the endpoint MUST close the TCP
		 * connection." h2_terminate logs and counts ours; these are logged and counted here. */
		log_info("http2 %s: closing: %s%s%.*s", c->peer_ip,
		         nghttp2_http2_strerror(frame->goaway.error_code),
		         frame->goaway.opaque_data_len > 0 ? ": " : "", (int)frame->goaway.opaque_data_len,
		         frame->goaway.opaque_data_len > 0 ? (const char *)frame->goaway.opaque_data : "");
		stats_add(&c->w->stats->h2_goaways[h2_goaway_reason(frame->goaway.error_code)], 1);
		h2_abort_start(c);
	}
	return 0;
}

/* Frees a stream whose exchange is over; drops its generation reference. */
static void h2_stream_free(struct h2_stream *s)
{
	stats_add(&s->conn->w->stats->h2_streams_open, (uint64_t)-1);
	worker_gen_release(s->conn->w, s->gen);
	s->gen = NULL;
	evbuffer_free(s->req_body);
	evbuffer_free(s->resp_body);
	arena_free(&s->arena);
	free(s);
}

/* The stream is gone (complete, reset by either side, or refused): abandon its exchange, log it
 * and free it. nghttp2 calls this only from mem_recv/mem_send, never under a sink callback. */
static int h2_on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                                 void *user_data)
{
	struct h2_conn *c = user_data;
	struct h2_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	size_t unconsumed;

	if (s == NULL)
		return 0;
	if (s->ex != NULL) {
		upstream_cancel(s->ex);
		if (!s->resp_eof)
			s->status = 499; /* client reset first (nginx's convention) */
	} else if (s->status == 0) {
		s->status = 499;
	}
	h2_stream_log(s);
	s->ex = NULL;
	/* Body bytes never handed to the upstream still hold the connection window. */
	unconsumed = evbuffer_get_length(s->req_body);
	if (unconsumed > 0)
		nghttp2_session_consume_connection(session, unconsumed);
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	h2_stream_set_state(s, H2S_CLOSED);
	h2_stream_free(s);
	return 0;
}

static nghttp2_session_callbacks *h2_callbacks_built;
static pthread_once_t h2_callbacks_once = PTHREAD_ONCE_INIT;

/* Builds the callbacks table; pthread_once, because workers accept their first HTTP/2 connections
 * concurrently and one of them must never see the table half filled. */
static void h2_callbacks_build(void)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return; /* stays NULL: every HTTP/2 connection is refused (h2_session_new) */
	nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
	nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, h2_on_begin_frame_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data_chunk_recv_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, h2_on_frame_send_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close_cb);
	h2_callbacks_built = cbs;
}

/* The callbacks table, built once per process; workers only read it. NULL when out of memory. */
static nghttp2_session_callbacks *h2_callbacks(void)
{
	pthread_once(&h2_callbacks_once, h2_callbacks_build);
	return h2_callbacks_built;
}

/* ---- connection I/O ---- */

/* Closes when nghttp2 has nothing more to read or write (GOAWAY exchanged and streams done). */
static void h2_check_done(struct h2_conn *c)
{
	if (c->state == H2C_CLOSING || c->state == H2C_CLOSED)
		return;
	if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session))
		h2_close(c);
}

/* True when parsing stopped at the output mark (read_blocked) may go on: the output drained. */
static bool h2_read_resumable(struct h2_conn *c)
{
	return c->read_blocked && !c->aborting &&
	       (c->state == H2C_PREFACE || c->state == H2C_OPEN || c->state == H2C_DRAINING) &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) < H2_OUT_HIGH;
}

/* Serialises frames into the socket's output buffer up to H2_OUT_HIGH. A plain socket is written at
 * once (bevio_flush: one send for the burst, EV_WRITE only when the socket is full) and, while it
 * takes everything, serialising goes on; otherwise the write callback calls again once the client
 * took some. */
static void h2_flush(struct h2_conn *c)
{
	struct evbuffer *out;
	bool more, wrote = false;

	if (c->state == H2C_CLOSED || c->session == NULL)
		return;
	out = bufferevent_get_output(c->bev);
	do {
		more = false;
		while (evbuffer_get_length(out) < H2_OUT_HIGH) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(c->session, &data);

			if (n < 0) {
				log_info("http2 %s: send: %s", c->peer_ip, nghttp2_strerror((int)n));
				h2_destroy(c);
				return;
			}
			if (n == 0)
				break;
			if (evbuffer_add(out, data, (size_t)n) != 0) {
				h2_destroy(c);
				return;
			}
		}
		if (c->plain && evbuffer_get_length(out) > 0) {
			/* Stopped at the mark: nghttp2 may hold more; it follows once this is out. */
			more = evbuffer_get_length(out) >= H2_OUT_HIGH;
			if (bevio_flush(c->bev))
				wrote = true;
			else
				more = false; /* the socket is full: EV_WRITE is on, h2_on_write resumes */
		}
	} while (more);
	if (!c->plain || evbuffer_get_length(out) > 0)
		bufferevent_setwatermark(c->bev, EV_WRITE,
		                         evbuffer_get_length(out) >= H2_OUT_HIGH ? H2_OUT_HIGH / 2 : 0, 0);
	if (wrote) {
		/* The client takes our bytes: that is activity too (h2_on_write for TLS). */
		if (c->state == H2C_OPEN || c->state == H2C_DRAINING)
			h2_arm_idle_timer(c);
		/* Frames the client sent while we had stopped are parsed from the loop, not from here
		 * (h2_on_read calls this function). */
		if (h2_read_resumable(c))
			event_active(&c->flush_ev, EV_TIMEOUT, 0);
	}
	if (c->state == H2C_CLOSING) {
		h2_close(c); /* continue the close with what is now queued */
		return;
	}
	h2_check_done(c);
}

static void h2_on_read(struct bufferevent *bev, void *arg);

static void h2_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct h2_conn *c = arg;

	if (c->state != H2C_CLOSED && h2_read_resumable(c)) {
		c->read_blocked = false;
		h2_on_read(c->bev, c); /* flushes after the frames it parsed */
		return;
	}
	h2_flush(c);
}

/* Ends the session with GOAWAY(code) after what was queued; nghttp2 then wants neither read nor
 * write and the connection closes once the output is out. */
static void h2_terminate(struct h2_conn *c, uint32_t code, const char *why)
{
	enum stats_goaway g = h2_goaway_reason(code);

	log_info("http2 %s: closing: %s", c->peer_ip, why);
	stats_add(&c->w->stats->h2_goaways[g], 1);
	nghttp2_session_terminate_session(c->session, code);
	h2_schedule_flush(c);
}

/* Like h2_terminate, for a client that flooded or broke the protocol: its further bytes are not read
 * at all (a lingering read would drain gigabytes a second from a flooder), the GOAWAY is flushed and
 * the socket closed within H2_ABORT_MS. The unread bytes make the close a RST, after our GOAWAY. */
static void h2_terminate_abort(struct h2_conn *c, uint32_t code, const char *why)
{
	h2_terminate(c, code, why);
	h2_abort_start(c);
}

/* Aborting: true while the kernel has not yet sent all of our bytes (closing with unread input sends
 * a RST that would discard them). */
static bool h2_abort_output_pending(const struct h2_conn *c)
{
	int queued = 0;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return true;
	return ioctl(bufferevent_getfd(c->bev), SIOCOUTQ, &queued) == 0 && queued > 0;
}

static void h2_on_read(struct bufferevent *bev, void *arg)
{
	struct h2_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (c->aborting || c->state == H2C_CLOSING || c->state == H2C_CLOSED) {
		evbuffer_drain(in, evbuffer_get_length(in)); /* lingering: read and drop */
		if (c->plain && !c->aborting && c->state != H2C_CLOSED)
			bevio_reader_poke(
			        &c->rd); /* a graceful close reads and drops; an abort reads nothing */
		return;
	}
	if (c->state != H2C_PREFACE)
		h2_arm_idle_timer(c);
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		const uint8_t *p;
		size_t fed = 0, scanned = 0;
		ssize_t n = 0;
		bool closed = false;

		if (evbuffer_get_length(bufferevent_get_output(bev)) >= H2_OUT_HIGH) {
			/* The client does not take what we owe it: what we would answer to more frames
			 * (RST_STREAM for refused or invalid streams, above all) would pile up in nghttp2's
			 * queue without bound. Stop here; the input mark stops the socket reads and
			 * h2_on_write (h2_on_flush on a plain socket) resumes once the output drained. */
			c->read_blocked = true;
			break;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		p = v.iov_base;
		/* In one go unless h2_scan stops at a DATA frame to judge. nghttp2_session_mem_recv takes
		 * all it is given unless it fails (no callback of ours pauses it). */
		while (fed < v.iov_len && !closed) {
			size_t upto;

			if (c->scan_check_sid == 0 && scanned < v.iov_len)
				scanned += h2_scan(c, p + scanned, v.iov_len - scanned);
			upto = c->scan_check_sid != 0 ? scanned - 1 : scanned;
			if (upto > fed) {
				c->in_recv = true;
				n = nghttp2_session_mem_recv(c->session, p + fed, upto - fed);
				c->in_recv = false;
				if (n < 0)
					break;
				fed += (size_t)n;
			}
			if (c->scan_check_sid != 0) {
				closed = h2_closed_stream_error(c, c->scan_check_sid);
				c->scan_check_sid = 0;
			}
		}
		if (closed) {
			h2_terminate_abort(c, NGHTTP2_STREAM_CLOSED, "DATA on a closed stream");
			break;
		}
		if (n < 0) {
			evbuffer_drain(in, evbuffer_get_length(in));
			if (c->calm_reason != NULL) {
				h2_terminate_abort(c, NGHTTP2_ENHANCE_YOUR_CALM, c->calm_reason);
			} else if (n == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
				log_info("http2 %s: bad client preface", c->peer_ip);
				h2_destroy(c);
				return;
			} else {
				/* nghttp2 queued its GOAWAY for protocol errors and floods it detects. */
				h2_terminate_abort(c,
				                   n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
				                                            : NGHTTP2_PROTOCOL_ERROR,
				                   nghttp2_strerror((int)n));
			}
			break;
		}
		evbuffer_drain(in, fed);
	}
	if (c->state == H2C_OPEN && c->head_block_since_ms != 0)
		h2_arm_head_block_deadline(c);
	if (c->plain && c->state != H2C_CLOSED)
		bevio_reader_poke(&c->rd); /* input was consumed: read again if it had stopped at the mark */
	h2_flush(c);
}

static void h2_on_write(struct bufferevent *bev, void *arg)
{
	struct h2_conn *c = arg;

	/* Plain sockets go back to direct writes once libevent has drained what the socket refused. */
	if (c->plain && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
	/* The client takes our bytes: that is activity too. */
	if (c->state == H2C_OPEN || c->state == H2C_DRAINING)
		h2_arm_idle_timer(c);
	/* Frames the client sent while we had stopped go first (they may carry WINDOW_UPDATE or new
	 * requests); h2_on_read flushes after them. Refilling the output first would keep it above the
	 * mark for as long as a download streams, and the client's frames would wait for its end. */
	if (h2_read_resumable(c)) {
		c->read_blocked = false;
		h2_on_read(bev, c);
		return;
	}
	h2_flush(c);
}

static void h2_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct h2_conn *c = arg;

	/* EOF or error from the client: in-flight exchanges are abandoned. */
	log_debug("http2 %s: connection event 0x%x", c->peer_ip, (unsigned)what);
	h2_destroy(c);
}

static void h2_on_timer(void *arg)
{
	struct h2_conn *c = arg;

	if (c->aborting) {
		/* Our GOAWAY may still sit in the kernel (the flooder does not read): wait for it, up
		 * to the deadline, then close whatever is left. */
		if (c->state == H2C_CLOSING && c->fin_sent && jg_now_ms() < c->abort_deadline_ms &&
		    h2_abort_output_pending(c)) {
			bevio_timer_set_odd(&c->timer, H2_ABORT_POLL_MS);
			return;
		}
		h2_destroy(c);
		return;
	}
	switch (c->state) {
	case H2C_PREFACE:
		h2_terminate(c, NGHTTP2_NO_ERROR, "no client preface within the header timeout");
		h2_set_state(c, H2C_DRAINING);
		h2_arm_timer(c, H2_FLUSH_MS);
		break;
	case H2C_OPEN:
	case H2C_DRAINING:
		if (c->state == H2C_OPEN && c->calm_reason == NULL && h2_head_block_expired(c)) {
			h2_terminate(c, NGHTTP2_NO_ERROR,
			             "header block not completed within the header timeout");
			h2_set_state(c, H2C_DRAINING);
			h2_arm_timer(c, H2_FLUSH_MS);
			break;
		}
		if (c->idle_rest_ms != 0) {
			/* The idle timeout's first step: quiet for H2_MEM_IDLE_MS. */
			uint64_t rest = c->idle_rest_ms;

			h2_mem_idle(c);
			h2_arm_timer(c, rest);
			break;
		}
		if (c->calm_reason == NULL && nghttp2_session_want_read(c->session) && c->state == H2C_OPEN) {
			h2_terminate(c, NGHTTP2_NO_ERROR, "idle timeout");
			h2_set_state(c, H2C_DRAINING);
			h2_arm_timer(c, H2_FLUSH_MS);
			break;
		}
		h2_destroy(c); /* a GOAWAY that cannot be flushed: the client does not read */
		break;
	case H2C_CLOSING:
	case H2C_CLOSED:
		h2_destroy(c);
		break;
	}
}

/* Drain, second step: the final GOAWAY names the last stream we will serve. */
static void h2_on_goaway(evutil_socket_t fd, short what, void *arg)
{
	struct h2_conn *c = arg;

	if (c->state != H2C_DRAINING)
		return;
	nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
	                      nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR, NULL, 0);
	h2_flush(c);
}

static void h2_on_free(evutil_socket_t fd, short what, void *arg)
{
	struct h2_conn *c = arg;

	worker_conn_removed(c->w, &c->wc);
	free(c);
}

/* Releases the socket and every stream now; the connection itself is freed from a deferred event. */
static void h2_destroy(struct h2_conn *c)
{
	struct h2_stream *s, *next;

	if (c->state == H2C_CLOSED)
		return;
	if (c->state != H2C_CLOSING)
		h2_set_state(c, H2C_CLOSING);
	h2_set_state(c, H2C_CLOSED);
	for (s = c->streams; s != NULL; s = next) {
		next = s->next;
		if (s->ex != NULL) {
			upstream_cancel(s->ex);
			s->ex = NULL;
			if (!s->resp_eof)
				s->status = s->status ? s->status : 499;
		}
		if (s->status == 0)
			s->status = 499;
		h2_stream_log(s);
		h2_stream_free(s);
	}
	c->streams = NULL;
	bevio_timer_stop(&c->timer);
	evtimer_del(&c->goaway_ev);
	event_del(&c->flush_ev);
	nghttp2_session_del(c->session);
	c->session = NULL;
	if (c->plain)
		bevio_reader_stop(&c->rd);
	h2_mem_put_slot(c);
	bufferevent_free(c->bev);
	c->bev = NULL;
	event_active(&c->free_ev, EV_TIMEOUT, 0);
}

/* Graceful close once the session is over: flush the last frames (bounded by H2_FLUSH_MS), send
 * FIN, then read and drop for up to H2_LINGER_MS so that a RST cannot destroy our GOAWAY before
 * the client read it. An aborting connection reads nothing: it closes as soon as the kernel sent
 * the GOAWAY, or at its deadline (h2_on_timer). */
static void h2_close(struct h2_conn *c)
{
	if (c->state == H2C_CLOSED)
		return;
	if (c->state != H2C_CLOSING) {
		h2_set_state(c, H2C_CLOSING);
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		if (!c->aborting) {
			h2_arm_timer(c, H2_FLUSH_MS);
			h2_read_enable(c, true);
		}
		/* A plain socket's last bytes are written by h2_flush (bevio_flush turns EV_WRITE on
		 * when the socket is full); TLS leaves them to the bufferevent. */
		if (!c->plain)
			bufferevent_enable(c->bev, EV_WRITE);
	}
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return;
	if (!c->fin_sent) {
		c->fin_sent = true;
		bevio_shutdown_write(c->bev); /* TLS: close_notify, then FIN, as HTTP/1.1 does */
		if (!c->aborting)
			h2_arm_timer(c, H2_LINGER_MS);
	}
	if (!c->aborting)
		return;
	if (h2_abort_output_pending(c))
		bevio_timer_set_odd(&c->timer, H2_ABORT_POLL_MS); /* h2_on_timer checks again */
	else
		h2_destroy(c);
}

/* Creates the nghttp2 server session with the protections of security.md section 4 and queues our
 * SETTINGS and the larger connection window. */
static int h2_session_new(struct h2_conn *c)
{
	nghttp2_option *opt = NULL;
	nghttp2_session_callbacks *cbs = h2_callbacks();
	nghttp2_mem mem = {c, h2_mem_malloc, h2_mem_free, h2_mem_calloc, h2_mem_realloc};
	nghttp2_settings_entry iv[] = {
	        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->w->cfg->limits.h2_max_concurrent_streams},
	        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535},
	        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->w->cfg->limits.max_header_bytes},
	        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	int rc = JG_ERR_NOMEM;

	if (cbs == NULL || nghttp2_option_new(&opt) != 0)
		goto cleanup;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_stream_reset_rate_limit(opt, H2_RESET_BURST, H2_RESET_RATE);
	nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
	nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK);
	nghttp2_option_set_max_settings(opt, H2_MAX_SETTINGS);
	/* nghttp2 drops closed streams (it keeps them only for RFC 7540's priority tree, which RFC 9113
	 * section 5.3.1 deprecates): the stream table of a connection idle after its requests is then
	 * all zero and h2_mem_idle releases its page. nghttp2 then ignores every frame on a closed
	 * stream; the STREAM_CLOSED errors RFC 9113 section 5.1 requires (h2spec http2/5.1) are the
	 * codec's: h2_closed_stream_error, from on_begin_frame for HEADERS and from h2_scan's stops
	 * for DATA. */
	nghttp2_option_set_no_closed_streams(opt, 1);
	c->mem_slot = pagepool_get(&c->w->h2_pages);
	if (nghttp2_session_server_new3(&c->session, cbs, c, opt, &mem) != 0)
		goto cleanup;
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, JG_ARRAY_SIZE(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
		goto cleanup;
	rc = 0;
cleanup:
	if (opt != NULL)
		nghttp2_option_del(opt);
	return rc;
}

int http2_conn_takeover(struct worker *w, struct bufferevent *bev, const struct sockaddr *peer,
                        socklen_t peer_len, int listener_index, bool is_tls)
{
	struct h2_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		goto fail;
	c->w = w;
	c->bev = bev;
	c->listener_index = listener_index;
	c->is_tls = is_tls;
	jg_sockaddr_set(&c->peer, &c->peer_len, c->peer_ip, sizeof(c->peer_ip), peer, peer_len);
	if (h2_session_new(c) < 0) {
		if (c->session != NULL)
			nghttp2_session_del(c->session);
		h2_mem_put_slot(c);
		free(c);
		goto fail;
	}
	c->ctrl_window_start_ms = jg_now_ms();
	bevio_timer_init(&c->timer, w->base, &w->timeouts, h2_on_timer, c);
	evtimer_assign(&c->goaway_ev, w->base, h2_on_goaway, c);
	event_assign(&c->flush_ev, w->base, -1, 0, h2_on_flush, c);
	event_assign(&c->free_ev, w->base, -1, 0, h2_on_free, c);
	c->state = H2C_PREFACE;
	c->scan_skip = NGHTTP2_CLIENT_MAGIC_LEN;
	c->wc.drain = h2_conn_drain;
	c->wc.abort = h2_conn_abort;
	c->wc.listener_index = listener_index;
	c->wc.proto = STATS_PROTO_HTTP2;
	worker_conn_added(w, &c->wc);
	c->plain = bevio_is_plain(bev);
	bufferevent_setcb(bev, h2_on_read, h2_on_write, h2_on_event, c);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, NULL, NULL);
	if (c->plain) {
		/* Direct I/O (bevio.h): our own reader keeps the input mark, writes go out from h2_flush. */
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		bevio_reader_init(&c->rd, w->base, bev, H2_IN_HIGH, h2_on_read, h2_on_event, c);
		bevio_reader_enable(&c->rd, true);
	} else {
		bufferevent_setwatermark(bev, EV_READ, 0, H2_IN_HIGH);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
	}
	/* The client preface must arrive within the header timeout; then the idle timeout applies. */
	h2_arm_timer(c, w->cfg->limits.header_timeout_ms);
	if (w->draining)
		h2_conn_drain(&c->wc);
	/* Bytes the previous owner already read (the preface at least) are parsed now. */
	h2_on_read(bev, c);
	return 0;
fail:
	bufferevent_free(bev);
	return JG_ERR_NOMEM;
}

/* Drain on shutdown: graceful GOAWAY (shutdown notice, then GOAWAY with the last stream id); the
 * connection closes once its in-flight streams are done. */
static void h2_conn_drain(struct worker_conn *wc)
{
	struct h2_conn *c = container_of(wc, struct h2_conn, wc);
	struct timeval tv = {H2_GOAWAY_DELAY_MS / 1000, (H2_GOAWAY_DELAY_MS % 1000) * 1000};

	if (c->state != H2C_PREFACE && c->state != H2C_OPEN)
		return;
	h2_set_state(c, H2C_DRAINING);
	/* RFC 9113 section 6.8: GOAWAY(2^31-1) first, so that requests already on the wire are not
	 * lost; the final GOAWAY with the last stream id follows after about a round trip. */
	nghttp2_submit_shutdown_notice(c->session);
	stats_add(&c->w->stats->h2_goaways[STATS_GOAWAY_DRAIN], 1); /* one per connection drained */
	evtimer_add(&c->goaway_ev, &tv);
	h2_schedule_flush(c);
}

/* Drain bound passed: close now, whatever the streams are doing. */
static void h2_conn_abort(struct worker_conn *wc)
{
	h2_destroy(container_of(wc, struct h2_conn, wc));
}
