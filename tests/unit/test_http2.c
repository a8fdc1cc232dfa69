/* test_http2.c: the HTTP/2 codec's nghttp2 allocator (issue 13): the session's stream table and frame
 * buffer land in the connection's page-pool slot, their pages go back to the kernel when the
 * connection is idle, and the session goes on working afterwards. Includes http2.c for its statics;
 * the sessions here are driven by hand (a server session with the codec's allocator, a client
 * session with nghttp2's), without sockets or the rest of the codec. */
#include "codec/http2.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#define BODY_LEN 40000 /* three DATA frames of 16 KiB through the frame buffer */

static size_t slot_resident_pages(const struct h2_conn *c)
{
	unsigned char vec[H2_MEM_SLOT_BYTES / 4096];
	size_t i, r = 0;

	assert_int_equal(mincore(c->mem_slot, H2_MEM_SLOT_BYTES, vec), 0);
	for (i = 0; i < sizeof(vec); i++)
		r += vec[i] & 1;
	return r;
}

static ssize_t body_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	size_t *left = source->ptr;
	size_t n = length < *left ? length : *left;

	(void)session, (void)stream_id, (void)user_data;
	memset(buf, 'b', n);
	*left -= n;
	if (*left == 0)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static size_t body_left[16];

/* Server: every complete request gets 200 and BODY_LEN bytes. */
static int server_frame_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	static const nghttp2_nv nv[] = {
	        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
	        {(uint8_t *)"server", (uint8_t *)"test", 6, 4, 0},
	};
	nghttp2_data_provider dp = {.read_callback = body_read_cb};

	(void)user_data;
	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	body_left[frame->hd.stream_id % 16] = BODY_LEN;
	dp.source.ptr = &body_left[frame->hd.stream_id % 16];
	return nghttp2_submit_response(session, frame->hd.stream_id, nv, 2, &dp);
}

struct client_seen {
	size_t body;
	int closed;
	uint32_t error;
};

static int client_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                           size_t len, void *user_data)
{
	struct client_seen *seen = user_data;

	(void)session, (void)flags, (void)stream_id;
	for (size_t i = 0; i < len; i++)
		assert_int_equal(data[i], 'b');
	seen->body += len;
	return 0;
}

static int client_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct client_seen *seen = user_data;

	(void)session, (void)stream_id;
	seen->closed++;
	seen->error |= error_code;
	return 0;
}

/* Moves bytes both ways until neither session has anything to send. */
static void pump(nghttp2_session *server, nghttp2_session *client)
{
	for (int round = 0; round < 1000; round++) {
		const uint8_t *data;
		ssize_t n;
		bool moved = false;

		while ((n = nghttp2_session_mem_send(client, &data)) > 0) {
			assert_int_equal(nghttp2_session_mem_recv(server, data, (size_t)n), n);
			moved = true;
		}
		assert_true(n == 0);
		while ((n = nghttp2_session_mem_send(server, &data)) > 0) {
			assert_int_equal(nghttp2_session_mem_recv(client, data, (size_t)n), n);
			moved = true;
		}
		assert_true(n == 0);
		if (!moved)
			return;
	}
	fail_msg("the sessions did not settle");
}

static void request(nghttp2_session *server, nghttp2_session *client, struct client_seen *seen)
{
	/* The client's encoder indexes :authority and the custom field: the second time they go out
	 * as references to the server decoder's dynamic table. */
	static const nghttp2_nv nv[] = {
	        {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
	        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
	        {(uint8_t *)":authority", (uint8_t *)"www.example.com", 10, 15, 0},
	        {(uint8_t *)":path", (uint8_t *)"/idle", 5, 5, 0},
	        {(uint8_t *)"x-test", (uint8_t *)"0123456789abcdef", 6, 16, 0},
	};

	memset(seen, 0, sizeof(*seen));
	assert_true(nghttp2_submit_request(client, NULL, nv, JG_ARRAY_SIZE(nv), NULL, NULL) > 0);
	pump(server, client);
	assert_int_equal(seen->closed, 1);
	assert_int_equal(seen->error, 0);
	assert_int_equal(seen->body, BODY_LEN);
}

static void run(bool with_slot)
{
	struct worker w;
	struct h2_conn c;
	nghttp2_session_callbacks *scbs, *ccbs;
	nghttp2_option *opt;
	nghttp2_session *client;
	nghttp2_mem mem = {&c, h2_mem_malloc, h2_mem_free, h2_mem_calloc, h2_mem_realloc};
	struct client_seen seen;

	memset(&w, 0, sizeof(w));
	memset(&c, 0, sizeof(c));
	assert_int_equal(http2_mem_pool_init(&w.h2_pages, 2), 0);
	c.w = &w;
	c.state = H2C_OPEN;
	strcpy(c.peer_ip, "test");
	if (with_slot) {
		c.mem_slot = pagepool_get(&w.h2_pages);
		assert_non_null(c.mem_slot);
		memset(c.mem_slot, 0x5a, H2_MEM_SLOT_BYTES); /* a warm slot: its last owner's bytes */
	}
	assert_int_equal(nghttp2_session_callbacks_new(&scbs), 0);
	nghttp2_session_callbacks_set_on_frame_recv_callback(scbs, server_frame_cb);
	assert_int_equal(nghttp2_option_new(&opt), 0);
	nghttp2_option_set_no_closed_streams(opt, 1);
	assert_int_equal(nghttp2_session_server_new3(&c.session, scbs, &c, opt, &mem), 0);
	assert_int_equal(nghttp2_session_callbacks_new(&ccbs), 0);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(ccbs, client_chunk_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(ccbs, client_close_cb);
	assert_int_equal(nghttp2_session_client_new(&client, ccbs, &seen), 0);
	assert_int_equal(nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	assert_int_equal(nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, NULL, 0), 0);

	request(c.session, client, &seen);
	/* nghttp2 1.52 put its stream table and its frame buffer where the allocator offered them: if
	 * a later version allocates them otherwise, this says so (the memory saving would be gone). */
	assert_int_equal(c.mem_map_held, with_slot);
	assert_int_equal(c.mem_frame_held, with_slot);
	if (with_slot) {
		assert_true(slot_resident_pages(&c) >= 2);
		h2_mem_idle(&c);
		assert_int_equal(slot_resident_pages(&c), 0);
	}
	/* After the release: the decoder's dynamic table (indexed fields), the encoder's, the stream
	 * table and the frame buffer all work as before. Twice, with a release in between. */
	request(c.session, client, &seen);
	h2_mem_idle(&c);
	request(c.session, client, &seen);

	/* Not idle: a stream still open keeps the pages. */
	if (with_slot) {
		size_t before;

		assert_true(nghttp2_submit_request(
		                    client, NULL,
		                    (const nghttp2_nv[]){{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
		                                         {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
		                                         {(uint8_t *)":authority", (uint8_t *)"a", 10, 1, 0},
		                                         {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0}},
		                    4, NULL, NULL) > 0);
		{
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(client, &data);

			assert_true(n > 0);
			assert_int_equal(nghttp2_session_mem_recv(c.session, data, (size_t)n), n);
		}
		/* the response is queued, not sent: nghttp2 wants to write */
		before = slot_resident_pages(&c);
		h2_mem_idle(&c);
		assert_int_equal(slot_resident_pages(&c), before);
		memset(&seen, 0, sizeof(seen));
		pump(c.session, client);
		assert_int_equal(seen.body, BODY_LEN);
	}

	nghttp2_session_del(client);
	nghttp2_session_del(c.session);
	assert_false(c.mem_map_held);
	assert_false(c.mem_frame_held);
	h2_mem_put_slot(&c);
	assert_null(c.mem_slot);
	assert_int_equal(w.h2_pages.n_out, 0);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(scbs);
	nghttp2_session_callbacks_del(ccbs);
	pagepool_fini(&w.h2_pages);
}

static void test_session_buffers_in_slot_released_when_idle(void **state)
{
	(void)state;
	run(true);
}

/* Pool exhausted (or off): the session keeps everything on the heap and works the same. */
static void test_session_without_slot(void **state)
{
	(void)state;
	run(false);
}

/* h2_scan finds the frame headers of the client's bytes however they are cut into reads: it stops
 * right after the header of each DATA frame on an odd stream id at or below the highest HEADERS id
 * seen (within 63 streams), carrying headers split across reads. */
static size_t put_frame(uint8_t *p, uint8_t type, int32_t sid, size_t len)
{
	p[0] = 0, p[1] = (uint8_t)(len >> 8), p[2] = (uint8_t)len, p[3] = type, p[4] = 0;
	p[5] = (uint8_t)(sid >> 24), p[6] = (uint8_t)(sid >> 16), p[7] = (uint8_t)(sid >> 8),
	p[8] = (uint8_t)sid;
	memset(p + 9, 'x', len);
	return 9 + len;
}

static void test_scan_stops_at_data_headers(void **state)
{
	uint8_t in[512];
	size_t n = NGHTTP2_CLIENT_MAGIC_LEN, want[4], nwant = 0, chunk;

	(void)state;
	memcpy(in, NGHTTP2_CLIENT_MAGIC, n);
	n += put_frame(in + n, NGHTTP2_SETTINGS, 0, 0);
	n += put_frame(in + n, NGHTTP2_DATA, 1, 3); /* above every HEADERS id: nghttp2's (idle) */
	n += put_frame(in + n, NGHTTP2_HEADERS, 131, 5);
	n += put_frame(in + n, NGHTTP2_DATA, 131, 20);
	want[nwant++] = n - 20;
	n += put_frame(in + n, NGHTTP2_DATA, 5, 7); /* 63 streams back */
	want[nwant++] = n - 7;
	n += put_frame(in + n, NGHTTP2_DATA, 3, 7);   /* 64 back: long gone */
	n += put_frame(in + n, NGHTTP2_DATA, 130, 7); /* even: nghttp2's */
	n += put_frame(in + n, NGHTTP2_PING, 0, 8);
	n += put_frame(in + n, NGHTTP2_DATA, 129, 0);
	want[nwant++] = n;
	assert_true(n <= sizeof(in));
	for (chunk = 1; chunk <= n; chunk++) {
		struct h2_conn c = {.scan_skip = NGHTTP2_CLIENT_MAGIC_LEN};
		size_t off = 0, got = 0, at = 0;

		while (off < n) {
			size_t end = off + chunk < n ? off + chunk : n;

			while (at < end) {
				at += h2_scan(&c, in + at, end - at);
				if (c.scan_check_sid != 0) {
					assert_true(got < nwant);
					assert_int_equal(at, want[got]);
					got++;
					c.scan_check_sid = 0;
				}
			}
			off = end;
		}
		assert_int_equal(got, nwant);
		assert_int_equal(c.scan_skip, 0);
		assert_int_equal(c.scan_hd_len, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_session_buffers_in_slot_released_when_idle),
	        cmocka_unit_test(test_session_without_slot),
	        cmocka_unit_test(test_scan_stops_at_data_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
