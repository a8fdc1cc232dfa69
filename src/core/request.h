/* request.h: the protocol-neutral request that codecs (HTTP/1.1, HTTP/2) decode into and that the
 * router, the auth stage and the upstream side work on. All strings live in req->arena and are
 * NUL-terminated; lengths are given so that no one needs strlen on the hot path. */
#ifndef JWTGATE_REQUEST_H
#define JWTGATE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/arena.h"

struct request_header {
	char *name; /* lower-cased by the codec */
	size_t name_len;
	char *value;
	size_t value_len;
	bool removed; /* tombstone: skipped when forwarding */
};

#define REQUEST_MAX_HEADERS_HARD 1024 /* absolute bound; config limits.maxHeaderCount is lower */

struct request {
	struct arena *arena;
	char *method;
	size_t method_len;
	const char *scheme; /* "http" or "https" (static string) */
	char *authority;    /* Host header or :authority, as sent (may carry a port) */
	size_t authority_len;
	char *host; /* authority lower-cased without port: what routing compares */
	size_t host_len;
	char *target; /* request target as sent: path plus "?query" */
	size_t target_len;
	char *path; /* target up to '?' (not decoded) */
	size_t path_len;
	char *query; /* after '?', NULL when absent */
	size_t query_len;
	struct request_header *headers;
	size_t n_headers;
	size_t cap_headers;
	int http_major, http_minor; /* 1.0, 1.1 or 2.0 */
	bool is_grpc;               /* content-type application/grpc* */
	bool has_body;
	int listener_index;
	const struct sockaddr *peer;
	socklen_t peer_len;
	/* What the JWT stage found, for the access log: an enum auth_reason (auth.h; 0 = no policy
	 * ran), and the sub of the token it verified (arena, cut at 256 bytes; NULL otherwise). */
	uint8_t jwt_reason;
	const char *jwt_sub;
};

/* Prepares an empty request whose allocations come from arena. */
void request_init(struct request *req, struct arena *arena);

/* Appends a header (copies name lower-cased and value into the arena). Returns 0 or JG_ERR_NOMEM /
 * JG_ERR_LIMIT (past REQUEST_MAX_HEADERS_HARD). */
int request_header_add(struct request *req, const char *name, size_t name_len, const char *value,
                       size_t value_len);

/* Finds the next non-removed header named `name` (lower-case) at index >= *pos; updates *pos to the
 * index found. Returns NULL when none is left. Use pos = 0 to start. */
struct request_header *request_header_next(const struct request *req, const char *name, size_t name_len,
                                           size_t *pos);

/* First header with that name, or NULL. */
struct request_header *request_header_get(const struct request *req, const char *name, size_t name_len);

/* Marks every header with that name removed; returns how many. */
size_t request_header_remove(struct request *req, const char *name, size_t name_len);

/* Splits target into path and query and sets host from authority. Returns 0 or JG_ERR_INVAL when
 * the authority or target is malformed. */
int request_finish_head(struct request *req);

/* What the path normaliser does with an escaped slash, %2F or %5C in either case (Envoy Gateway's
 * ClientTrafficPolicy path.escapedSlashesAction; redirect or forward is the caller's choice). */
enum request_escaped_slashes {
	REQUEST_SLASHES_KEEP = 0, /* left encoded: the segment is opaque to dot-segment removal */
	REQUEST_SLASHES_REJECT,   /* the request is refused */
	REQUEST_SLASHES_UNESCAPE, /* decoded to '/' (%5C too, like a raw backslash) before the rest */
};

/* Flags of a successful request_normalise_path(). */
#define REQUEST_PATH_CHANGED         0x1 /* req->path and req->target now hold the normalised path */
#define REQUEST_PATH_SLASH_UNESCAPED 0x2 /* an escaped slash was decoded (REQUEST_SLASHES_UNESCAPE) */

/* Normalises req->path (set by request_finish_head, an origin-form path starting with '/') once,
 * before routing, so that routing, the JWT policy and the upstream all see the same path (issue 10,
 * Envoy's normalize_path + merge_slashes + path_with_escaped_slashes_action):
 *  - percent-encoding: an escaped unreserved character (RFC 3986 section 2.3: ALPHA DIGIT - . _ ~)
 *    is decoded, %2F/%5C follow `slashes`, any other escape stays encoded with upper-case hex
 *    (section 6.2.2.1); %00, a '%' without two hex digits, and a raw control byte or space are
 *    refused;
 *  - a raw backslash is a '/' (as Envoy's canonicaliser and WHATWG URL parsers read it);
 *  - dot segments are removed (RFC 3986 section 5.2.4), never above the root;
 *  - then, when merge_slashes, runs of '/' become one.
 * The query is never changed; req->target becomes the new path plus "?query". A path with no '%',
 * '\', control byte, "//" or "." / ".." segment is left alone after one scan, without allocating;
 * otherwise the result is built in req->arena.
 * Returns a combination of REQUEST_PATH_* flags (0: unchanged), JG_ERR_INVAL when the path is
 * refused (the caller answers 400), or JG_ERR_NOMEM. */
int request_normalise_path(struct request *req, enum request_escaped_slashes slashes, bool merge_slashes);

/* Finds the next non-removed header whose name contains '_' at index >= *pos (HTTP/1.1 and HTTP/2
 * alike; Envoy Gateway's headers.withUnderscoresAction). Updates *pos like request_header_next(). */
struct request_header *request_header_next_underscore(const struct request *req, size_t *pos);

/* Finds query parameter `name` (exact, not decoded) starting at byte offset *pos of req->query.
 * Returns 1 and sets value/len (not decoded) and *pos past it, 0 when no more. */
int request_query_next(const struct request *req, const char *name, size_t name_len, const char **value,
                       size_t *value_len, size_t *pos);

/* The response head an upstream sent, decoded the same way (lower-cased names, arena strings). */
struct response {
	struct arena *arena;
	int status;
	char *reason; /* reason phrase, may be empty */
	size_t reason_len;
	struct request_header *headers;
	size_t n_headers;
	size_t cap_headers;
	int64_t content_length; /* -1: not given */
	bool chunked;
	bool has_body; /* false for HEAD, 1xx, 204, 304 */
};

void response_init(struct response *resp, struct arena *arena);
int response_header_add(struct response *resp, const char *name, size_t name_len, const char *value,
                        size_t value_len);

/* Field syntax shared by both HTTP/1.1 directions (RFC 9110 section 5): a name is a non-empty token;
 * a value (or a reason phrase) has no control byte other than HTAB, and no DEL. */
bool request_field_name_ok(const char *name, size_t len);
bool request_field_value_ok(const char *s, size_t len);
/* A Content-Length value as jwtgate accepts it, from clients and from upstreams, HTTP/1.1 and HTTP/2
 * alike: 1*DIGIT without a leading zero, at most 18 digits (RFC 9110 section 8.6). llhttp takes "007";
 * a leading zero or a sign is read differently by different parsers, so it is refused rather than
 * relayed. Returns the value, or -1 for anything else. */
int64_t request_content_length_parse(const char *v, size_t len);

/* Hop-by-hop header names (RFC 9110 section 7.6.1) that a proxy never forwards: Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade. Name must be lower-case. */
bool request_header_is_hop_by_hop(const char *name, size_t name_len);

/* True when `name` appears as a token in any Connection header value of the list. */
bool request_header_listed_in_connection(const struct request_header *headers, size_t n, const char *name,
                                         size_t name_len);

#endif
