/* access_log.c: access log lines (text: one space-separated line; json: one object per line). */
#include "jwtgate/access_log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define ACCESS_LOG_FIELD_MAX 1024

/* Appends s to buf, escaping quotes, backslashes and control bytes as \xHH (JSON uses \u00HH). */
static size_t access_log_escape(char *buf, size_t cap, size_t n, const char *s, bool json)
{
	size_t i;

	if (s == NULL)
		s = "-";
	for (i = 0; s[i] != '\0' && i < ACCESS_LOG_FIELD_MAX && n + 8 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\') {
			if (ch == '"' || ch == '\\') {
				buf[n++] = '\\';
				buf[n++] = (char)ch;
			} else {
				n += (size_t)snprintf(buf + n, cap - n, json ? "\\u%04x" : "\\x%02x", ch);
			}
		} else {
			buf[n++] = (char)ch;
		}
	}
	return n;
}

void access_log_write(FILE *f, enum config_log_format format, const struct access_log_entry *e)
{
	char line[6 * ACCESS_LOG_FIELD_MAX + 256];
	char ts[64];
	struct timeval tv;
	struct tm tm;
	size_t n = 0;
	bool json = format == CONFIG_LOG_JSON;
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
			n = access_log_escape(line, sizeof(line), n, fields[i], true);
			line[n++] = '"';
		}
		n += (size_t)snprintf(
		        line + n, sizeof(line) - n,
		        ",\"protocol\":\"%s\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%llu}\n",
		        e->protocol ? e->protocol : "-", e->status, (unsigned long long)e->bytes,
		        (unsigned long long)e->duration_ms);
	} else {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s ", ts);
		for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			line[n++] = '"';
			n = access_log_escape(line, sizeof(line), n, fields[i], false);
			line[n++] = '"';
			line[n++] = ' ';
		}
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %d %llu %llums\n",
		                      e->protocol ? e->protocol : "-", e->status,
		                      (unsigned long long)e->bytes, (unsigned long long)e->duration_ms);
	}
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	fwrite(line, 1, n, f);
}
