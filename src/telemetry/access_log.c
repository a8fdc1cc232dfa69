/* access_log.c: access log lines (text: one space-separated line; json: one object per line). */
#include "telemetry/access_log.h"

#include <string.h>
#include <time.h>

#include "core/log_writer.h"

/* Length of the valid UTF-8 sequence at s (at most `avail` bytes), or 0 when it is not one
 * (RFC 3629 section 4: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t access_log_utf8_len(const unsigned char *s, size_t avail)
{
	size_t n, i;
	unsigned cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1fu;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Whether a byte goes into a field as it is: not a quote, backslash, control byte or DEL, and in
 * JSON not a byte of 0x80 and above (those are checked as UTF-8). The escaper copies whole runs of
 * such bytes with one memcpy. */
static inline bool access_log_is_plain(unsigned char ch, bool json)
{
	return ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f && (ch < 0x80 || !json);
}

/* Whether any of the eight bytes in x is not plain (access_log_is_plain): a byte below 0x20, a
 * quote, a backslash or DEL, or in JSON one of 0x80 and above. The borrow tricks can flag a plain
 * byte above a flagged one, never miss one; a flagged block is then looked at byte by byte. */
static inline uint64_t access_log_special8(uint64_t x, bool json)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\'), d = x ^ (ones * 0x7f);
	uint64_t r = (x - ones * 0x20) & ~x;

	r |= (q - ones) & ~q;
	r |= (b - ones) & ~b;
	r |= (d - ones) & ~d;
	return (r & highs) | (json ? x & highs : 0);
}

static const char access_log_hex[16] = "0123456789abcdef";

/* Appends len bytes of s to buf (capacity cap, from n), as many as fit. Returns the new length. */
static size_t access_log_put(char *buf, size_t cap, size_t n, const char *s, size_t len)
{
	if (n >= cap)
		return n;
	if (len > cap - n)
		len = cap - n;
	memcpy(buf + n, s, len);
	return n + len;
}

#define ACCESS_LOG_PUT_LIT(buf, cap, n, lit) access_log_put(buf, cap, n, lit, sizeof(lit) - 1)

/* Appends v in decimal (at most 20 digits). */
static size_t access_log_put_u64(char *buf, size_t cap, size_t n, uint64_t v)
{
	char d[20];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return access_log_put(buf, cap, n, d + i, sizeof(d) - i);
}

static size_t access_log_put_int(char *buf, size_t cap, size_t n, int v)
{
	if (v < 0) {
		n = ACCESS_LOG_PUT_LIT(buf, cap, n, "-");
		return access_log_put_u64(buf, cap, n, (uint64_t)(-(int64_t)v));
	}
	return access_log_put_u64(buf, cap, n, (uint64_t)v);
}

static size_t access_log_put_str(char *buf, size_t cap, size_t n, const char *s)
{
	return access_log_put(buf, cap, n, s, strlen(s));
}

/* Appends at most `max` bytes of s to buf (capacity cap, from n), escaping quotes, backslashes and
 * control bytes: \xHH in text, \u00HH in JSON, where bytes that are not valid UTF-8 also become
 * \ufffd so that every line is a valid JSON text. Stops before n reaches cap - 8 (an escape takes at
 * most 6 bytes), so a field is cut, never an escape. Returns the new length. */
static size_t access_log_escape(char *buf, size_t cap, size_t n, const char *s, size_t max, bool json)
{
	size_t i = 0, len;

	if (s == NULL)
		s = "-";
	len = strnlen(s, max);
	if (cap < 9)
		return n;
	while (i < len && n + 8 < cap) {
		size_t run = i, room = cap - 8 - n;
		unsigned char ch;

		/* The longest run that needs nothing, eight bytes at a time while it lasts: in text high
		 * bytes too (they are logged as sent). */
		for (; run + 8 <= len; run += 8) {
			uint64_t x;

			memcpy(&x, s + run, 8);
			if (access_log_special8(x, json))
				break;
		}
		while (run < len && access_log_is_plain((unsigned char)s[run], json))
			run++;
		if (run > i) {
			size_t k = run - i < room ? run - i : room;

			memcpy(buf + n, s + i, k);
			n += k;
			i += k;
			continue;
		}
		ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)ch;
		} else if (ch < 0x80) { /* control byte or DEL */
			if (json) {
				memcpy(buf + n, "\\u00", 4);
				n += 4;
			} else {
				memcpy(buf + n, "\\x", 2);
				n += 2;
			}
			buf[n++] = access_log_hex[ch >> 4];
			buf[n++] = access_log_hex[ch & 0xf];
		} else { /* 0x80 and above, in JSON */
			size_t k = access_log_utf8_len((const unsigned char *)s + i, len - i);

			if (k == 0) {
				memcpy(buf + n, "\\ufffd", 6);
				n += 6;
				i++;
				continue;
			}
			memcpy(buf + n, s + i, k);
			n += k;
			i += k;
			continue;
		}
		i++;
	}
	return n;
}

/* The line's time, RFC 3339 in UTC with milliseconds ("2026-12-07T00:01:22.123Z", 24 bytes). The
 * part up to the seconds is formatted once a second per thread: gmtime_r takes glibc's time zone
 * lock (a lock the workers would share on the request path) and costs more than the rest of the
 * line; only the milliseconds are formatted per request. */
struct access_log_clock {
	time_t sec;    /* the second `text` holds; -1: none yet */
	char text[19]; /* "YYYY-MM-DDTHH:MM:SS" */
};

/* Writes the last `width` decimal digits of v to p, zero-padded. */
static void access_log_digits(char *p, unsigned v, int width)
{
	while (width-- > 0) {
		p[width] = (char)('0' + v % 10);
		v /= 10;
	}
}

static _Thread_local struct access_log_clock access_log_clock_cache = {.sec = -1};

static size_t access_log_put_time(struct access_log_clock *c, char *buf, size_t cap, size_t n,
                                  const struct timespec *now)
{
	unsigned ms = (unsigned)(now->tv_nsec / 1000000);
	char tail[5];

	if (c->sec != now->tv_sec) {
		struct tm tm;

		gmtime_r(&now->tv_sec, &tm);
		access_log_digits(c->text, (unsigned)(tm.tm_year + 1900), 4);
		c->text[4] = '-';
		access_log_digits(c->text + 5, (unsigned)tm.tm_mon + 1, 2);
		c->text[7] = '-';
		access_log_digits(c->text + 8, (unsigned)tm.tm_mday, 2);
		c->text[10] = 'T';
		access_log_digits(c->text + 11, (unsigned)tm.tm_hour, 2);
		c->text[13] = ':';
		access_log_digits(c->text + 14, (unsigned)tm.tm_min, 2);
		c->text[16] = ':';
		access_log_digits(c->text + 17, (unsigned)tm.tm_sec, 2);
		c->sec = now->tv_sec;
	}
	n = access_log_put(buf, cap, n, c->text, sizeof(c->text));
	tail[0] = '.';
	access_log_digits(tail + 1, ms, 3);
	tail[4] = 'Z';
	return access_log_put(buf, cap, n, tail, sizeof(tail));
}

/* Formats e as one line, newline included, into line (LOG_WRITER_LINE_MAX bytes) with the time
 * `now`, the thread's clock cache c. Returns the line's length (at most LOG_WRITER_LINE_MAX). */
static size_t access_log_format(const struct config *cfg, const struct access_log_entry *e,
                                const struct timespec *now, struct access_log_clock *c, char *line)
{
	/* The peer-controlled fields stop at FIELDS_CAP (7 x 1 KiB escaped could be 42 KiB); the rest
	 * (names and quotes past that point, ~120 bytes; protocol and numbers, ~160; sub escaped,
	 * ~1.6 KiB) always fits after it, so a line is always whole, valid JSON. */
	enum { CAP = LOG_WRITER_LINE_MAX, FIELDS_CAP = LOG_WRITER_LINE_MAX - 2560 };
	static const char *const names[] = {",\"client\":\"",    ",\"host\":\"",  ",\"method\":\"",
	                                    ",\"path\":\"",      ",\"route\":\"", ",\"upstream\":\"",
	                                    ",\"request_id\":\""};
	const char *fields[] = {e->client, e->host, e->method, e->path, e->route, e->upstream, e->request_id};
	size_t n = 0, i;
	bool json = cfg->access_log_format == CONFIG_LOG_JSON;

	if (json) {
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, "{\"time\":\"");
		n = access_log_put_time(c, line, CAP, n, now);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\"");
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			n = access_log_put_str(line, CAP, n, names[i]);
			n = access_log_escape(line, FIELDS_CAP, n, fields[i], ACCESS_LOG_FIELD_MAX, true);
			n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\"");
		}
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, ",\"protocol\":\"");
		n = access_log_put_str(line, CAP, n, e->protocol ? e->protocol : "-");
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\",\"status\":");
		n = access_log_put_int(line, CAP, n, e->status);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, ",\"bytes\":");
		n = access_log_put_u64(line, CAP, n, e->bytes);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, ",\"duration_ms\":");
		n = access_log_put_u64(line, CAP, n, e->duration_ms);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, ",\"jwt\":\"");
		n = access_log_put_str(line, CAP, n, e->jwt ? e->jwt : "none");
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\"");
		if (cfg->access_log_sub) {
			if (e->jwt_sub != NULL) {
				n = ACCESS_LOG_PUT_LIT(line, CAP, n, ",\"sub\":\"");
				n = access_log_escape(line, CAP - 4, n, e->jwt_sub, ACCESS_LOG_SUB_MAX, true);
				n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\"");
			} else {
				n = ACCESS_LOG_PUT_LIT(line, CAP, n, ",\"sub\":null");
			}
		}
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, "}\n");
	} else {
		n = access_log_put_time(c, line, CAP, n, now);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, " ");
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\"");
			n = access_log_escape(line, FIELDS_CAP, n, fields[i], ACCESS_LOG_FIELD_MAX, false);
			n = ACCESS_LOG_PUT_LIT(line, CAP, n, "\" ");
		}
		n = access_log_put_str(line, CAP, n, e->protocol ? e->protocol : "-");
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, " ");
		n = access_log_put_int(line, CAP, n, e->status);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, " ");
		n = access_log_put_u64(line, CAP, n, e->bytes);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, " ");
		n = access_log_put_u64(line, CAP, n, e->duration_ms);
		n = ACCESS_LOG_PUT_LIT(line, CAP, n, "ms\n");
	}
	if (n >= CAP) {
		n = CAP;
		line[n - 1] = '\n';
	}
	return n;
}

void access_log_write(const struct config *cfg, const struct access_log_entry *e)
{
	char line[LOG_WRITER_LINE_MAX];
	struct timespec now;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &now);
	n = access_log_format(cfg, e, &now, &access_log_clock_cache, line);
	log_writer_put(LOG_STREAM_ACCESS, line, n);
}

uint64_t access_log_dropped_total(void)
{
	return log_writer_dropped(LOG_STREAM_ACCESS);
}
