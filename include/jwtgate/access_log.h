/* access_log.h: one line per request, text or JSON (accessLog in the config). */
#ifndef JWTGATE_ACCESS_LOG_H
#define JWTGATE_ACCESS_LOG_H

#include <stdint.h>
#include <stdio.h>

#include "jwtgate/config.h"

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
};

/* Formats and writes one line with a single fwrite. Peer-controlled strings are escaped (no CR/LF
 * or quotes reach the log unescaped) and cut at 1 KiB. */
void access_log_write(FILE *f, enum config_log_format format, const struct access_log_entry *e);

#endif
