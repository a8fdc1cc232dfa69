/* test_bevio.c: bevio_write never leaves a hole in the byte stream. When the bytes the socket did not
 * take cannot be queued (out of memory), the connection is shut down, so the peer reads everything
 * written before and then EOF, never the next message glued to a cut one (a sized body with a hole
 * would desynchronise the framing). libevent's allocator is replaced to fail on demand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/bevio.h"

static bool fail_alloc;

static void *t_malloc(size_t n)
{
	return fail_alloc ? NULL : malloc(n);
}

static void *t_realloc(void *p, size_t n)
{
	return fail_alloc ? NULL : realloc(p, n);
}

static void t_free(void *p)
{
	free(p);
}

/* Reads what the peer end holds; returns the last recv result (0: EOF, -1: nothing more yet). */
static ssize_t drain(int fd)
{
	static char buf[65536];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		;
	return n;
}

/* fill: the socket's buffer full, so a write sends nothing and must queue. queued_first: something is
 * queued before the failing write (the append-and-flush branch). */
static void check_oom_ends_stream(bool queued_first)
{
	static char junk[4096];
	struct iovec v = {junk, sizeof(junk)};
	struct event_base *base;
	struct bufferevent *bev;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	base = event_base_new();
	assert_non_null(base);
	bev = bufferevent_socket_new(base, sv[0], 0);
	assert_non_null(bev);
	memset(junk, 'x', sizeof(junk));
	while (send(sv[0], junk, sizeof(junk), MSG_NOSIGNAL) > 0)
		;
	if (queued_first)
		assert_false(bevio_write(bev, &v, 1)); /* queued: the socket is full */
	fail_alloc = true;
	bevio_write(bev, &v, 1);
	fail_alloc = false;
	/* The peer gets what was sent, then EOF; before, it got EAGAIN and the stream went on. */
	assert_int_equal(drain(sv[1]), 0);
	bufferevent_free(bev);
	event_base_free(base);
	close(sv[0]);
	close(sv[1]);
}

static void test_write_out_of_memory_ends_the_stream(void **state)
{
	(void)state;
	check_oom_ends_stream(false);
}

static void test_append_out_of_memory_ends_the_stream(void **state)
{
	(void)state;
	check_oom_ends_stream(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_write_out_of_memory_ends_the_stream),
	        cmocka_unit_test(test_append_out_of_memory_ends_the_stream),
	};

	event_set_mem_functions(t_malloc, t_realloc, t_free);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
