/* grpc_upstream.c: a small, fast gRPC upstream for benchmarks (and protocol tests): one thread,
 * libevent + nghttp2, h2c with prior knowledge. Every request is answered like /yages.Echo/Ping:
 * HEADERS (200, application/grpc), one message Content{text: "pong"}, trailers grpc-status: 0.
 * The request body is read and dropped.
 *
 *   grpc_upstream [--port P] [--max-streams N] [--goaway-after N]
 *
 * --max-streams advertises SETTINGS_MAX_CONCURRENT_STREAMS (default 1000); --goaway-after sends a
 * GOAWAY once a connection has seen N requests, so a proxy's retry on a new connection can be
 * exercised. Not installed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#define GU_OUT_HIGH (64 * 1024) /* frames serialized ahead of the socket */

/* gRPC message: uncompressed flag, length 6, then Content{1: "pong"}. */
static const uint8_t gu_pong[] = {0, 0, 0, 0, 6, 0x0a, 4, 'p', 'o', 'n', 'g'};

static uint32_t gu_max_streams = 1000;
static unsigned gu_goaway_after;

struct gu_conn {
	struct bufferevent *bev;
	nghttp2_session *session;
	unsigned requests;
	int closing;
};

#define GU_NV(n, v)                                                                                          \
	{                                                                                                    \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE           \
	}

static void gu_conn_free(struct gu_conn *c)
{
	nghttp2_session_del(c->session);
	bufferevent_free(c->bev);
	free(c);
}

static ssize_t gu_send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                          void *user_data)
{
	struct gu_conn *c = user_data;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= GU_OUT_HIGH)
		return NGHTTP2_ERR_WOULDBLOCK;
	bufferevent_write(c->bev, data, length);
	return (ssize_t)length;
}

/* The one message, then trailers instead of END_STREAM on DATA. */
static ssize_t gu_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                          uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	static const nghttp2_nv trailers[] = {GU_NV("grpc-status", "0")};

	memcpy(buf, gu_pong, sizeof(gu_pong));
	*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	if (nghttp2_submit_trailer(session, stream_id, trailers, 1) != 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return sizeof(gu_pong);
}

/* A request is complete when its END_STREAM arrives: answer it. */
static int gu_on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	static const nghttp2_nv hdrs[] = {GU_NV(":status", "200"), GU_NV("content-type", "application/grpc")};
	struct gu_conn *c = user_data;
	nghttp2_data_provider prd;

	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	prd.source.ptr = NULL;
	prd.read_callback = gu_read_cb;
	if (nghttp2_submit_response(session, frame->hd.stream_id, hdrs, 2, &prd) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (gu_goaway_after > 0 && ++c->requests == gu_goaway_after)
		nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR, NULL,
		                      0);
	return 0;
}

static void gu_flush(struct gu_conn *c)
{
	if (nghttp2_session_send(c->session) != 0 ||
	    (nghttp2_session_want_read(c->session) == 0 && nghttp2_session_want_write(c->session) == 0 &&
	     evbuffer_get_length(bufferevent_get_output(c->bev)) == 0))
		gu_conn_free(c);
}

static void gu_on_read(struct bufferevent *bev, void *arg)
{
	struct gu_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	ssize_t n = nghttp2_session_mem_recv(c->session, evbuffer_pullup(in, -1), len);

	if (n < 0) {
		gu_conn_free(c);
		return;
	}
	evbuffer_drain(in, (size_t)n);
	gu_flush(c);
}

static void gu_on_write(struct bufferevent *bev, void *arg)
{
	gu_flush(arg);
}

static void gu_on_event(struct bufferevent *bev, short what, void *arg)
{
	gu_conn_free(arg);
}

static void gu_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                         void *arg)
{
	nghttp2_session_callbacks *cbs = arg;
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, gu_max_streams}};
	struct gu_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c == NULL) {
		evutil_closesocket(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL || nghttp2_session_server_new(&c->session, cbs, c) != 0) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		free(c);
		return;
	}
	nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
	printf("accepted connection\n"); /* tests count connections by these lines */
	fflush(stdout);
	bufferevent_setcb(c->bev, gu_on_read, gu_on_write, gu_on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	gu_flush(c);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin;
	struct event_base *base;
	struct evconnlistener *l;
	nghttp2_session_callbacks *cbs;
	int port = 9000, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--max-streams") == 0 && i + 1 < argc)
			gu_max_streams = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--goaway-after") == 0 && i + 1 < argc)
			gu_goaway_after = (unsigned)strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--port P] [--max-streams N] [--goaway-after N]\n",
			        argv[0]);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_send_callback(cbs, gu_send_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, gu_on_frame_recv_cb);
	base = event_base_new();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(base, gu_on_accept, cbs, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	                            (struct sockaddr *)&sin, sizeof(sin));
	if (l == NULL) {
		perror("grpc_upstream: bind");
		return 1;
	}
	printf("grpc_upstream listening on 127.0.0.1:%d\n", port);
	fflush(stdout);
	event_base_dispatch(base);
	evconnlistener_free(l);
	event_base_free(base);
	nghttp2_session_callbacks_del(cbs);
	return 0;
}
