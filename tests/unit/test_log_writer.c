/* test_log_writer.c: the log rings (records across the wrap, a full ring drops and counts, a long
 * line is cut with its newline) and the writer thread against a pipe nobody reads: put never blocks,
 * drops are counted, and what comes out is whole lines in order, seen + dropped = sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/core/log_writer.c"

static struct log_ring *ring_new(size_t cap)
{
	struct log_ring *r;

	assert_int_equal(posix_memalign((void **)&r, 64, sizeof(*r)), 0);
	memset(r, 0, sizeof(*r));
	r->mask = cap - 1;
	r->buf = malloc(cap);
	assert_non_null(r->buf);
	return r;
}

static void ring_free(struct log_ring *r)
{
	free(r->buf);
	free(r);
}

/* Takes what the ring holds into a scratch sink and returns its text (NUL-terminated, static). */
static const char *ring_drain(struct log_ring *r)
{
	static struct log_sink k;

	memset(&k, 0, sizeof(k));
	assert_true(lw_ring_take(r, &k));
	k.pend[k.pend_len] = '\0';
	return k.pend;
}

static void test_records_across_the_wrap(void **state)
{
	struct log_ring *r = ring_new(64);
	char line[32], want[32];
	int i;

	(void)state;
	/* 4 + 13 bytes a record: the 64-byte ring wraps inside lengths and inside lines. */
	for (i = 0; i < 50; i++) {
		snprintf(line, sizeof(line), "line %06d\n", i);
		assert_true(lw_ring_put(r, line, strlen(line)));
		snprintf(want, sizeof(want), "line %06d\n", i);
		assert_string_equal(ring_drain(r), want);
	}
	assert_int_equal(atomic_load(&r->dropped), 0);
	ring_free(r);
}

static void test_full_ring_drops_and_counts(void **state)
{
	struct log_ring *r = ring_new(64);
	const char *line = "0123456789abcdefghijklmnopqrstu\n"; /* 32 + 4 bytes */

	(void)state;
	assert_true(lw_ring_put(r, line, strlen(line)));
	assert_false(lw_ring_put(r, line, strlen(line))); /* 36 + 36 > 64 */
	assert_false(lw_ring_put(r, line, strlen(line)));
	assert_int_equal(atomic_load(&r->dropped), 2);
	assert_int_equal(lw_ring_count(r), 1);
	assert_string_equal(ring_drain(r), line);
	assert_true(lw_ring_put(r, line, strlen(line))); /* room again */
	ring_free(r);
}

static void test_long_line_is_cut_with_its_newline(void **state)
{
	struct log_ring *r = ring_new(4 * LOG_WRITER_LINE_MAX);
	size_t n = LOG_WRITER_LINE_MAX + 100;
	char *line = malloc(n);
	const char *out;

	(void)state;
	assert_non_null(line);
	memset(line, 'x', n);
	line[n - 1] = '\n';
	assert_true(lw_ring_put(r, line, n));
	out = ring_drain(r);
	assert_int_equal(strlen(out), LOG_WRITER_LINE_MAX);
	assert_int_equal(out[LOG_WRITER_LINE_MAX - 1], '\n');
	assert_int_equal(out[LOG_WRITER_LINE_MAX - 2], 'x');
	free(line);
	ring_free(r);
}

static void test_unread_pipe_never_blocks(void **state)
{
	int fds[2], i, sent = 2000, seen = 0, next = 0;
	char path[64], line[128];
	char *all = NULL, *p;
	size_t len = 0, cap = 0;
	uint64_t t0;
	ssize_t got;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[1]);
	assert_int_equal(log_writer_open_access(path), 0);
	assert_int_equal(lw.sink_of[LOG_STREAM_ACCESS]->kind, LOG_SINK_NONBLOCK);
	assert_int_equal(log_writer_start(1, LOG_WRITER_RING_MIN), 0);
	log_writer_attach(0);
	t0 = lw_now_ms();
	for (i = 0; i < sent; i++) {
		int n = snprintf(
		        line, sizeof(line), "%06d %s\n", i,
		        "................................................................................");

		log_writer_put(LOG_STREAM_ACCESS, line, (size_t)n);
	}
	/* 2000 x 88 bytes > pipe (64 KiB) + writer (64 KiB) + ring (16 KiB): some were dropped, and
	 * none of the puts waited for the pipe. */
	assert_true(lw_now_ms() - t0 < 2000);
	log_writer_stop(200);
	assert_true(log_writer_dropped(LOG_STREAM_ACCESS) > 0);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		if (cap - len < 65536) {
			cap = cap * 2 + 65536;
			all = realloc(all, cap);
			assert_non_null(all);
		}
		got = read(fds[0], all + len, cap - len - 1);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	all[len] = '\0';
	for (p = all; *p != '\0';) {
		char *nl = strchr(p, '\n');
		int seq;

		assert_non_null(nl);          /* whole lines only */
		assert_int_equal(nl - p, 87); /* none torn */
		assert_int_equal(sscanf(p, "%d", &seq), 1);
		assert_true(seq >= next); /* in order */
		next = seq + 1;
		seen++;
		p = nl + 1;
	}
	assert_int_equal((uint64_t)seen + log_writer_dropped(LOG_STREAM_ACCESS), (uint64_t)sent);
	log_writer_close();
	free(all);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_records_across_the_wrap),
	        cmocka_unit_test(test_full_ring_drops_and_counts),
	        cmocka_unit_test(test_long_line_is_cut_with_its_newline),
	        cmocka_unit_test(test_unread_pipe_never_blocks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
