/* log.h: the one logging module (error log with levels; access log lines). */
#ifndef JWTGATE_LOG_H
#define JWTGATE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Atomic: a reload (main thread) changes it while workers test it before every log line; on x86 the
 * load is a plain mov. */
extern _Atomic(enum log_level) log_current_level;

/* Level names "error" "warn" "info" "debug"; returns -1 for an unknown name. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
/* Route libevent's own messages into this module. */
void log_hook_libevent(void);

/* Process log lines dropped because stderr could not keep up (log_writer.h; /metrics). */
uint64_t log_dropped_total(void);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The level test comes before any formatting work. */
#define log_error(...)                                                                                       \
	do {                                                                                                 \
		if (log_current_level >= LOG_LEVEL_ERROR)                                                    \
			log_write(LOG_LEVEL_ERROR, __VA_ARGS__);                                             \
	} while (0)
#define log_warn(...)                                                                                        \
	do {                                                                                                 \
		if (log_current_level >= LOG_LEVEL_WARN)                                                     \
			log_write(LOG_LEVEL_WARN, __VA_ARGS__);                                              \
	} while (0)
#define log_info(...)                                                                                        \
	do {                                                                                                 \
		if (log_current_level >= LOG_LEVEL_INFO)                                                     \
			log_write(LOG_LEVEL_INFO, __VA_ARGS__);                                              \
	} while (0)
#define log_debug(...)                                                                                       \
	do {                                                                                                 \
		if (log_current_level >= LOG_LEVEL_DEBUG)                                                    \
			log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                             \
	} while (0)

#endif
