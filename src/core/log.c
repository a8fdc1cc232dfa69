/* log.c: error log with levels, written to stderr with a timestamp through the log writer (never
 * blocking a worker once it runs: log_writer.h); libevent's log routed here. */
#include "core/log.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core/log_writer.h"

_Atomic(enum log_level) log_current_level = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++)
		if (strcmp(name, log_level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_set_level(enum log_level level)
{
	log_current_level = level;
}

/* Formats the whole line first and hands it to the log writer whole, so lines of different threads
 * never interleave. CR and LF coming from peer-controlled text are replaced (no log injection). */
void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	int n, m;
	int i;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] ", tm.tm_year + 1900,
	             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
	             log_level_names[level]);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	if ((size_t)(n + m) > sizeof(line) - 2)
		m = (int)sizeof(line) - 2 - n;
	for (i = n; i < n + m; i++)
		if (line[i] == '\n' || line[i] == '\r' || line[i] == '\0')
			line[i] = ' ';
	line[n + m] = '\n';
	log_writer_put(LOG_STREAM_PROCESS, line, (size_t)(n + m + 1));
}

void log_write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

uint64_t log_dropped_total(void)
{
	return log_writer_dropped(LOG_STREAM_PROCESS);
}

static void log_on_libevent(int severity, const char *msg)
{
	enum log_level level = LOG_LEVEL_DEBUG;

	if (severity == EVENT_LOG_ERR)
		level = LOG_LEVEL_ERROR;
	else if (severity == EVENT_LOG_WARN)
		level = LOG_LEVEL_WARN;
	if (log_current_level >= level)
		log_write(level, "libevent: %s", msg);
}

void log_hook_libevent(void)
{
	event_set_log_callback(log_on_libevent);
}
