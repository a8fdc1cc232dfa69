/* common.h: small helpers every module uses (error codes, container_of, allocation wrappers). */
#ifndef JWTGATE_COMMON_H
#define JWTGATE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <netinet/in.h>
#include <sys/socket.h>

#define JG_VERSION "0.1.0"

/* Error codes: functions return 0 on success and a negative JG_ERR_* (or -errno) on failure. */
enum jg_err {
	JG_OK = 0,
	JG_ERR_NOMEM = -1000,
	JG_ERR_INVAL = -1001,
	JG_ERR_IO = -1002,
	JG_ERR_PARSE = -1003,
	JG_ERR_LIMIT = -1004,
	JG_ERR_TIMEOUT = -1005,
	JG_ERR_CLOSED = -1006,
	JG_ERR_UNSUPPORTED = -1007,
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define JG_ARRAY_SIZE(a)                (sizeof(a) / sizeof((a)[0]))
#define JG_UNUSED(x)                    ((void)(x))
#define jg_likely(x)                    __builtin_expect(!!(x), 1)
#define jg_unlikely(x)                  __builtin_expect(!!(x), 0)

/* A downstream peer's address. Listeners are IPv4/IPv6 sockets only, so a connection keeps 28 bytes
 * for it rather than a 128-byte sockaddr_storage (memory per idle connection, bench/idle_memory.sh). */
union jg_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* Copies a downstream peer's address (at most sizeof(*dst) bytes; *dst_len gets what was kept) and
 * writes its IP as text into ip (INET6_ADDRSTRLEN bytes): the one place both codecs record their peer. */
void jg_sockaddr_set(union jg_sockaddr *dst, socklen_t *dst_len, char *ip, size_t ip_cap,
                     const struct sockaddr *src, socklen_t src_len);

/* Start-up tier allocation: abort with a message on failure. Never call these on the request path. */
void *jg_xmalloc(size_t size);
void *jg_xcalloc(size_t n, size_t size);
void *jg_xrealloc(void *p, size_t size);
char *jg_xstrdup(const char *s);
char *jg_xstrndup(const char *s, size_t n);

/* Copies n bytes, ASCII letters lower-cased, eight at a time. */
void jg_lower_copy(char *dst, const char *src, size_t n);

/* Monotonic and wall clocks in milliseconds / seconds. */
uint64_t jg_now_ms(void);
uint64_t jg_now_us(void); /* monotonic, microseconds (request durations) */
int64_t jg_wall_time(void);

/* ASCII case-insensitive compare of two byte ranges of equal length (HTTP header names). */
bool jg_case_eq(const char *a, size_t alen, const char *b, size_t blen);

/* xorshift64 pseudo-random numbers for load balancing, jitter and request ids (spread, not secrecy).
 * jg_rng_seed fills *state from getrandom(), or from the clock and `salt` when that fails; never 0. */
void jg_rng_seed(uint64_t *state, uint64_t salt);
uint64_t jg_rng_next(uint64_t *state);

/* Lower-case hex of v without leading zeros into out (at least 16 bytes); returns the length. For
 * chunk sizes on the hot path, where printf would cost more than the write. */
size_t jg_hex(char *out, uint64_t v);
/* A chunk-size line, "<hex>\r\n" (RFC 9112 section 7.1), into out (at least 20 bytes); its length. */
size_t jg_chunk_line(char *out, uint64_t len);

/* A growable byte buffer with a hard bound (for header names/values split across reads). */
struct jg_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max; /* jg_buf_append fails past this many bytes */
};

/* Appends n bytes; returns 0, JG_ERR_LIMIT past b->max, or JG_ERR_NOMEM. data stays NUL-terminated. */
int jg_buf_append(struct jg_buf *b, const char *s, size_t n);
void jg_buf_free(struct jg_buf *b);

/* A string a parser delivers in spans (llhttp: header field, value, URL, reason). The usual case, one
 * span that ends in the same parser run, is only referenced, not copied; a second span, or
 * jg_piece_keep() before the input bytes go away (after every llhttp_execute), moves it into buf.
 * Bounded by buf.max like a jg_buf. Data is not NUL-terminated: read it with its length. */
struct jg_piece {
	struct jg_buf buf;
	const char *span; /* borrowed: the only span so far, still in the parser's input; NULL if none */
	size_t span_len;
};

/* Adds a span; returns 0, JG_ERR_LIMIT past buf.max, or JG_ERR_NOMEM. */
int jg_piece_add(struct jg_piece *p, const char *s, size_t n);
/* Copies a borrowed span into buf; returns 0 or JG_ERR_NOMEM. */
int jg_piece_keep(struct jg_piece *p);

static inline const char *jg_piece_data(const struct jg_piece *p)
{
	return p->span != NULL ? p->span : p->buf.data != NULL ? p->buf.data : "";
}

static inline size_t jg_piece_len(const struct jg_piece *p)
{
	return p->span != NULL ? p->span_len : p->buf.len;
}

static inline void jg_piece_clear(struct jg_piece *p)
{
	p->span = NULL;
	p->span_len = 0;
	p->buf.len = 0;
}

#endif
