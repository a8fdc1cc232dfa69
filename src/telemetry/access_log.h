/* access_log.h: one line per request, text or JSON (accessLog in the config), queued to the log
 * writer (log_writer.h): formatting happens on the worker, the write on the writer thread, and a
 * full buffer drops the line (counted) instead of making the worker wait. */
#ifndef JWTGATE_ACCESS_LOG_H
#define JWTGATE_ACCESS_LOG_H

#include <stdint.h>

#include "config/config.h"

#define ACCESS_LOG_FIELD_MAX 1024 /* bytes of one peer-controlled field before escaping */
#define ACCESS_LOG_SUB_MAX   256  /* bytes of the token's sub */

struct access_log_entry {
	const char *client;
	const char *host; /* may be NULL */
	const char *method;
	const char *path;
	const char *route;    /* may be NULL: no route */
	const char *upstream; /* "ip:port" or "-" */
	const char *request_id;
	const char *protocol;
	int status;
	uint64_t bytes;
	uint64_t duration_ms;
	const char *jwt;     /* JWT outcome reason (auth_reason_str), "none" without a JWT policy */
	const char *jwt_sub; /* the verified token's sub, or NULL */
};

/* Formats one line as cfg->access_log_format says and queues it. Peer-controlled strings are
 * escaped (no CR/LF or quotes reach the log unescaped; JSON output is valid UTF-8: a byte that is
 * not part of a valid UTF-8 sequence becomes U+FFFD) and cut at ACCESS_LOG_FIELD_MAX. The JSON
 * format carries `jwt` always and `sub` when accessLog.includeSub is set (man jwtgate.yaml(5)). */
void access_log_write(const struct config *cfg, const struct access_log_entry *e);

/* Lines dropped because the sink could not keep up (summed over the workers; /metrics). */
uint64_t access_log_dropped_total(void);

#endif
