/* test_access_log.c: the access log line formatter. Every byte value in a field comes out as the
 * format says (JSON: \u00HH for control bytes and DEL, \" and \\, UTF-8 kept, any other byte of 0x80
 * and above U+FFFD; text: \xHH, \" and \\, other bytes as sent), the run-copying escaper gives exactly
 * what a byte-by-byte one gives on random fields of every length (cuts included), a line is always
 * whole (newline, closing brace) however long and odd its fields, and the per-second time cache
 * changes at every second boundary (minute, day and year roll-overs, a clock stepped back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/telemetry/access_log.c"

/* The escaper as it was written before the runs were copied whole: one byte at a time, snprintf for
 * the escapes. The oracle for the fast one. */
static size_t ref_escape(char *buf, size_t cap, size_t n, const char *s, size_t max, bool json)
{
	size_t i, len;

	if (s == NULL)
		s = "-";
	len = strnlen(s, max);
	for (i = 0; i < len && n + 8 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			n += (size_t)snprintf(buf + n, cap - n, json ? "\\u%04x" : "\\x%02x", ch);
		} else if (ch >= 0x80 && json) {
			size_t k = access_log_utf8_len((const unsigned char *)s + i, len - i);

			if (k == 0) {
				memcpy(buf + n, "\\ufffd", 6);
				n += 6;
			} else {
				memcpy(buf + n, s + i, k);
				n += k;
				i += k - 1;
			}
		} else {
			buf[n++] = (char)ch;
		}
	}
	return n;
}

/* One field through the escaper, NUL-terminated (static buffer). */
static const char *esc(const char *s, bool json)
{
	static char out[256];
	size_t n = access_log_escape(out, sizeof(out), 0, s, ACCESS_LOG_FIELD_MAX, json);

	out[n] = '\0';
	return out;
}

static void test_every_byte_in_json(void **state)
{
	char in[2] = {0, 0}, want[16];
	int b;

	(void)state;
	for (b = 1; b < 256; b++) {
		in[0] = (char)b;
		if (b == '"' || b == '\\')
			snprintf(want, sizeof(want), "\\%c", b);
		else if (b < 0x20 || b == 0x7f)
			snprintf(want, sizeof(want), "\\u00%02x", b);
		else if (b >= 0x80) /* alone, never a whole UTF-8 sequence */
			snprintf(want, sizeof(want), "\\ufffd");
		else
			snprintf(want, sizeof(want), "%c", b);
		assert_string_equal(esc(in, true), want);
	}
	/* Valid UTF-8 of each length is kept; overlong forms, surrogates, code points above U+10FFFF,
	 * a cut sequence and a lone continuation byte are not (RFC 3629 section 4). */
	assert_string_equal(esc("a\xc3\xa9z", true), "a\xc3\xa9z");
	assert_string_equal(esc("\xe2\x98\x83", true), "\xe2\x98\x83");
	assert_string_equal(esc("\xf0\x9f\x98\x80", true), "\xf0\x9f\x98\x80");
	assert_string_equal(esc("\xc0\x80", true), "\\ufffd\\ufffd");
	assert_string_equal(esc("\xe0\x80\x80", true), "\\ufffd\\ufffd\\ufffd");
	assert_string_equal(esc("\xed\xa0\x80", true), "\\ufffd\\ufffd\\ufffd");
	assert_string_equal(esc("\xf4\x90\x80\x80", true), "\\ufffd\\ufffd\\ufffd\\ufffd");
	assert_string_equal(esc("ab\xe2\x98", true), "ab\\ufffd\\ufffd");
	assert_string_equal(esc("\x80x", true), "\\ufffdx");
	/* A special byte after a long plain run and between two. */
	assert_string_equal(esc("0123456789abcdef\"0123456789abcdef\n", true),
	                    "0123456789abcdef\\\"0123456789abcdef\\u000a");
	assert_string_equal(esc(NULL, true), "-");
}

static void test_every_byte_in_text(void **state)
{
	char in[2] = {0, 0}, want[16];
	int b;

	(void)state;
	for (b = 1; b < 256; b++) {
		in[0] = (char)b;
		if (b == '"' || b == '\\')
			snprintf(want, sizeof(want), "\\%c", b);
		else if (b < 0x20 || b == 0x7f)
			snprintf(want, sizeof(want), "\\x%02x", b);
		else
			snprintf(want, sizeof(want), "%c", b);
		assert_string_equal(esc(in, false), want);
	}
	assert_string_equal(esc("GET /a\r\nX: \"y\"\xff", false), "GET /a\\x0d\\x0aX: \\\"y\\\"\xff");
}

/* Random fields drawn from every byte class, of every length up to past the cap, against the oracle:
 * the same bytes and the same cut. */
static void test_fast_escaper_matches_byte_by_byte(void **state)
{
	static const unsigned char pool[] = {'a',  'Z',  '/',  ' ',  '~',  '"',  '\\', 0x01, 0x09,
	                                     0x1f, 0x7f, 0x80, 0xbf, 0xc3, 0xa9, 0xe2, 0x98, 0x83,
	                                     0xf0, 0x9f, 0xed, 0xa0, 0xf4, 0x90, 0xff, 0xc0};
	static char s[1200], got[1400], want[1400];
	unsigned seed = 12345;
	int iter;

	(void)state;
	for (iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(iter % 7 == 0 ? rand_r(&seed) % 1100 : rand_r(&seed) % 40);
		size_t cap = iter % 3 == 0 ? 9 + (size_t)rand_r(&seed) % 300 : sizeof(got);
		size_t start = (size_t)(rand_r(&seed) % 4), i, ng, nw;
		bool json = iter % 2 == 0;
		bool mostly_plain = iter % 5 < 2;

		for (i = 0; i < len; i++) {
			if (mostly_plain && rand_r(&seed) % 16 != 0)
				s[i] = (char)('a' + rand_r(&seed) % 26);
			else
				s[i] = (char)pool[rand_r(&seed) % sizeof(pool)];
		}
		s[len] = '\0';
		memset(got, 'G', sizeof(got));
		memset(want, 'G', sizeof(want));
		ng = access_log_escape(got, cap, start, s, ACCESS_LOG_FIELD_MAX, json);
		nw = ref_escape(want, cap, start, s, ACCESS_LOG_FIELD_MAX, json);
		assert_int_equal(ng, nw);
		assert_true(ng <= cap);
		assert_memory_equal(got, want, ng);
		for (i = ng; i < sizeof(got); i++) /* nothing written past the field */
			assert_int_equal(got[i], 'G');
	}
}

static struct config cfg_of(enum config_log_format f, bool sub)
{
	struct config c;

	memset(&c, 0, sizeof(c));
	c.access_log_format = f;
	c.access_log_sub = sub;
	return c;
}

static struct access_log_entry plain_entry(void)
{
	struct access_log_entry e = {
	        .client = "192.0.2.1",
	        .host = "www.example.com",
	        .method = "GET",
	        .path = "/bar?q=1",
	        .route = "bar",
	        .upstream = "127.0.0.1:8080",
	        .request_id = "id-1",
	        .protocol = "HTTP/1.1",
	        .status = 200,
	        .bytes = 18446744073709551615ull,
	        .duration_ms = 0,
	        .jwt = "none",
	        .jwt_sub = NULL,
	};
	return e;
}

static const char *fmt(const struct config *cfg, const struct access_log_entry *e, time_t sec, long nsec,
                       struct access_log_clock *c)
{
	static char line[LOG_WRITER_LINE_MAX + 1];
	struct timespec now = {.tv_sec = sec, .tv_nsec = nsec};
	size_t n = access_log_format(cfg, e, &now, c, line);

	assert_true(n <= LOG_WRITER_LINE_MAX);
	assert_int_equal(line[n - 1], '\n');
	line[n] = '\0';
	return line;
}

static void test_whole_lines(void **state)
{
	struct config text = cfg_of(CONFIG_LOG_TEXT, false), json = cfg_of(CONFIG_LOG_JSON, true);
	struct access_log_clock c = {.sec = -1};
	struct access_log_entry e = plain_entry();

	(void)state;
	/* 2026-12-07T00:01:22.045Z */
	assert_string_equal(fmt(&text, &e, 1796601682, 45000000, &c),
	                    "2026-12-07T00:01:22.045Z \"192.0.2.1\" \"www.example.com\" \"GET\" "
	                    "\"/bar?q=1\" \"bar\" \"127.0.0.1:8080\" \"id-1\" HTTP/1.1 200 "
	                    "18446744073709551615 0ms\n");
	e.status = -1;
	e.host = NULL;
	e.jwt_sub = "al\"ice";
	assert_string_equal(
	        fmt(&json, &e, 1796601682, 999999999, &c),
	        "{\"time\":\"2026-12-07T00:01:22.999Z\",\"client\":\"192.0.2.1\",\"host\":\"-\","
	        "\"method\":\"GET\",\"path\":\"/bar?q=1\",\"route\":\"bar\",\"upstream\":"
	        "\"127.0.0.1:8080\",\"request_id\":\"id-1\",\"protocol\":\"HTTP/1.1\",\"status\":-1,"
	        "\"bytes\":18446744073709551615,\"duration_ms\":0,\"jwt\":\"none\",\"sub\":\"al\\\"ice\"}\n");
	e.jwt_sub = NULL;
	assert_non_null(strstr(fmt(&json, &e, 1796601682, 0, &c), ",\"sub\":null}\n"));
}

/* Every peer-controlled field at its limit and made of bytes that escape to six: the line is cut
 * inside the fields and still ends whole (the fixed part and the sub after them). */
static void test_longest_fields_still_give_a_whole_line(void **state)
{
	static char ctl[ACCESS_LOG_FIELD_MAX + 100], sub[ACCESS_LOG_SUB_MAX + 10];
	struct config json = cfg_of(CONFIG_LOG_JSON, true), text = cfg_of(CONFIG_LOG_TEXT, false);
	struct access_log_clock c = {.sec = -1};
	struct access_log_entry e = plain_entry();
	const char *line;
	size_t len;

	(void)state;
	memset(ctl, 0x01, sizeof(ctl) - 1);
	memset(sub, 0x02, sizeof(sub) - 1);
	e.client = e.host = e.method = e.path = e.route = e.upstream = e.request_id = ctl;
	e.jwt_sub = sub;
	line = fmt(&json, &e, 1796601682, 0, &c);
	len = strlen(line);
	assert_true(len <= LOG_WRITER_LINE_MAX);
	assert_non_null(strstr(line, "\"jwt\":\"none\",\"sub\":\"\\u0002"));
	assert_string_equal(line + len - 9, "\\u0002\"}\n");
	line = fmt(&text, &e, 1796601682, 0, &c);
	len = strlen(line);
	assert_true(len > 40);
	assert_string_equal(line + len - 40, "\" HTTP/1.1 200 18446744073709551615 0ms\n");
}

/* The cached date part follows the clock across each kind of second boundary, and back. */
static void test_time_cache_changes_at_second_boundaries(void **state)
{
	static const struct {
		time_t sec;
		long nsec;
		const char *want;
	} steps[] = {
	        {1798761598, 999000000, "2026-12-31T23:59:58.999Z"},
	        {1798761599, 0, "2026-12-31T23:59:59.000Z"},
	        {1798761599, 999999999, "2026-12-31T23:59:59.999Z"},
	        {1798761600, 0, "2027-01-01T00:00:00.000Z"}, /* year, day, hour, minute */
	        {1798761600, 1000000, "2027-01-01T00:00:00.001Z"},
	        {1798761659, 500000000, "2027-01-01T00:00:59.500Z"},
	        {1798761660, 500000000, "2027-01-01T00:01:00.500Z"},
	        {1798761599, 0, "2026-12-31T23:59:59.000Z"}, /* the clock stepped back */
	        {951782400, 0, "2000-02-29T00:00:00.000Z"},
	        {0, 0, "1970-01-01T00:00:00.000Z"},
	};
	struct config text = cfg_of(CONFIG_LOG_TEXT, false);
	struct access_log_clock c = {.sec = -1};
	struct access_log_entry e = plain_entry();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const char *line = fmt(&text, &e, steps[i].sec, steps[i].nsec, &c);

		assert_memory_equal(line, steps[i].want, 24);
		assert_int_equal(line[24], ' ');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_every_byte_in_json),
	        cmocka_unit_test(test_every_byte_in_text),
	        cmocka_unit_test(test_fast_escaper_matches_byte_by_byte),
	        cmocka_unit_test(test_whole_lines),
	        cmocka_unit_test(test_longest_fields_still_give_a_whole_line),
	        cmocka_unit_test(test_time_cache_changes_at_second_boundaries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
