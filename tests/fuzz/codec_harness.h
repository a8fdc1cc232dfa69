/* codec_harness.h: runs the proxy's downstream codecs as they run in jwtgate, inside one process, for
 * the codec fuzz targets (fuzz_http1.c, fuzz_http1_response.c, fuzz_http2.c).
 *
 * Per input: a fresh worker (event_base, upstream pools, token cache) on a configuration loaded once
 * (two routes: an open one and one behind JWT), a client socketpair whose proxy end is handed to
 * http1_conn_accept() exactly as worker_on_accept() does (so the HTTP/2 preface sniffing and takeover
 * run too), and a fake HTTP/1.1 upstream: a loopback listening socket served by the same event base.
 * The fake upstream checks what reaches it with a small reference framer of its own (fh_frame_request)
 * and answers each complete request. The loop runs until nothing moves (bounded, no sleeps); then the
 * client closes and every object must be gone before the worker is freed, so LeakSanitizer sees each
 * input on its own. A broken invariant prints what was seen and aborts. */
#ifndef JWTGATE_FUZZ_CODEC_HARNESS_H
#define JWTGATE_FUZZ_CODEC_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer (harness only; bounded by the fuzz input sizes). */
struct fh_bytes {
	uint8_t *p;
	size_t len, cap;
};

void fh_bytes_add(struct fh_bytes *b, const void *data, size_t n);
void fh_bytes_free(struct fh_bytes *b);

/* How the fake upstream answers a complete request. */
enum fh_answer {
	FH_ANSWER_LENGTH = 0, /* 200 with Content-Length */
	FH_ANSWER_CHUNKED,    /* 200, chunked, with a trailer */
	FH_ANSWER_CLOSE,      /* 200 delimited by close */
	FH_ANSWER_NO_CONTENT, /* 204 */
	FH_ANSWER_BYTES,      /* the first request gets opts.resp verbatim, later ones FH_ANSWER_LENGTH */
	FH_ANSWER_SILENT,     /* no answer: the exchange is cut at the end of the input */
	FH_ANSWER_EARLY,      /* 200 with Content-Length as soon as a head arrived, before its body */
	FH_ANSWER_RESET,      /* the upstream closes the connection as soon as a head arrived */
};

struct fh_opts {
	enum fh_answer answer;
	const uint8_t *resp; /* FH_ANSWER_BYTES */
	size_t resp_len;
	size_t resp_split;    /* the response goes out in two writes, split here (0: one write) */
	bool close_after_resp; /* FH_ANSWER_BYTES: the upstream closes after writing it */
	size_t client_chunk;   /* client bytes are written in pieces of this size, the loop run between
	                        * them (0: one write) */
	bool client_half_close; /* shutdown(SHUT_WR) after the last client byte */
	bool drain;             /* then the worker drains its connections (as at shutdown or reload) */
};

/* One request as the reference framer saw it at the upstream. */
struct fh_request {
	char method[16];
	bool is_head;
	size_t head_len, total_len;
};

enum fh_frame { FH_FRAME_COMPLETE = 0, FH_FRAME_PARTIAL, FH_FRAME_BAD };

/* Frames one HTTP/1.1 request at the start of buf (what the proxy must send upstream: request line
 * "METHOD SP origin-form SP HTTP/1.1", token names, values without CTL, exactly one framing: one
 * decimal Content-Length, or Transfer-Encoding "chunked" alone with well-formed chunks, or none).
 * PARTIAL means what is there is a valid prefix. On BAD, *why says what. */
enum fh_frame fh_frame_request(const uint8_t *buf, size_t len, struct fh_request *out, const char **why);

/* Frames one response at the start of buf as a client receives it from the proxy ("HTTP/1.1 NNN"
 * status line, same field rules, one framing; no body for 1xx, 204, 304 or a HEAD request; a body
 * without length ends at eof). 1xx responses are returned on their own. */
enum fh_frame fh_frame_response(const uint8_t *buf, size_t len, bool is_head, bool eof, int *status,
                                size_t *total, const char **why);

/* What one run saw. */
struct fh_result {
	struct fh_bytes client_in;  /* everything the proxy wrote to the client */
	bool client_eof;            /* the proxy closed the client connection (before we did) */
	unsigned upstream_conns;    /* connections the fake upstream accepted */
	unsigned upstream_requests; /* complete requests framed at the upstream */
	unsigned upstream_heads;    /* requests whose head reached the upstream (complete or not) */
	unsigned upstream_answers;  /* answers the fake upstream wrote */
};

/* Runs one input: client bytes in, with the options above. Aborts on a broken invariant. The
 * result is valid until the next call (fh_result_free). */
void fh_run(const uint8_t *client, size_t client_len, const struct fh_opts *opts, struct fh_result *res);
void fh_result_free(struct fh_result *res);

/* Prints a byte string (escaped) to stderr under a label, for invariant reports. */
void fh_dump(const char *label, const uint8_t *p, size_t n);

/* The marker header of the fake upstream's own answers. */
#define FH_MARK "x-fake-upstream: "

/* Number of non-overlapping occurrences of needle in hay. */
size_t fh_count(const uint8_t *hay, size_t n, const char *needle);

#endif
