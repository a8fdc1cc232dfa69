/* access_log.c: access log lines (text: one space-separated line; json: one object per line). */
#include "telemetry/access_log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
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

/* Appends at most `max` bytes of s to buf (capacity cap, from n), escaping quotes, backslashes and
 * control bytes: \xHH in text, \u00HH in JSON, where bytes that are not valid UTF-8 also become
 * \ufffd so that every line is a valid JSON text. Returns the new length. */
static size_t access_log_escape(char *buf, size_t cap, size_t n, const char *s, size_t max, bool json)
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

void access_log_write(const struct config *cfg, const struct access_log_entry *e)
{
	/* The peer-controlled fields stop at FIELDS_CAP (7 x 1 KiB escaped could be 42 KiB); the rest
	 * (names and quotes past that point, ~120 bytes; protocol and numbers, ~160; sub escaped,
	 * ~1.6 KiB) always fits after it, so a line is always whole, valid JSON. */
	enum { FIELDS_CAP = LOG_WRITER_LINE_MAX - 2560 };
	char line[LOG_WRITER_LINE_MAX];
	char ts[64];
	struct timeval tv;
	struct tm tm;
	size_t n = 0;
	bool json = cfg->access_log_format == CONFIG_LOG_JSON;
	const char *fields[] = {e->client, e->host, e->method, e->path, e->route, e->upstream, e->request_id};
	const char *names[] = {"client", "host", "method", "path", "route", "upstream", "request_id"};
	size_t i;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
	if (json) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "{\"time\":\"%s\"", ts);
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"%s\":\"", names[i]);
			n = access_log_escape(line, FIELDS_CAP, n, fields[i], ACCESS_LOG_FIELD_MAX, true);
			line[n++] = '"';
		}
		n += (size_t)snprintf(
		        line + n, sizeof(line) - n,
		        ",\"protocol\":\"%s\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%llu,"
		        "\"jwt\":\"%s\"",
		        e->protocol ? e->protocol : "-", e->status, (unsigned long long)e->bytes,
		        (unsigned long long)e->duration_ms, e->jwt ? e->jwt : "none");
		if (cfg->access_log_sub) {
			if (e->jwt_sub != NULL) {
				memcpy(line + n, ",\"sub\":\"", 8);
				n = access_log_escape(line, sizeof(line) - 4, n + 8, e->jwt_sub,
				                      ACCESS_LOG_SUB_MAX, true);
				line[n++] = '"';
			} else {
				memcpy(line + n, ",\"sub\":null", 11);
				n += 11;
			}
		}
		line[n++] = '}';
		line[n++] = '\n';
	} else {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s ", ts);
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			line[n++] = '"';
			n = access_log_escape(line, FIELDS_CAP, n, fields[i], ACCESS_LOG_FIELD_MAX, false);
			line[n++] = '"';
			line[n++] = ' ';
		}
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %d %llu %llums\n",
		                      e->protocol ? e->protocol : "-", e->status,
		                      (unsigned long long)e->bytes, (unsigned long long)e->duration_ms);
	}
	if (n >= sizeof(line)) {
		n = sizeof(line);
		line[n - 1] = '\n';
	}
	log_writer_put(LOG_STREAM_ACCESS, line, n);
}

uint64_t access_log_dropped_total(void)
{
	return log_writer_dropped(LOG_STREAM_ACCESS);
}
