/* fuzz_http1.c: libFuzzer target for the HTTP/1.1 request codec (src/codec/http1.c with request.c, pipeline,
 * upstream.c and bevio.c) as it runs in the proxy: client bytes in, what reaches a fake upstream and
 * what the client gets back out (codec_harness.h).
 *
 * Input: byte 0 chooses the run, the rest is what the client sends.
 *   bits 0-2: how the fake upstream answers (0 length, 1 chunked, 2 close-delimited, 3 204, 4 silent,
 *             5 before the body, 6 reset at the head, 7 length)
 *   bits 3-5: client write size (0: all at once, k: 2^(k-1) bytes per write, the loop run between)
 *   bit 6:    the client half-closes after its last byte
 *   bit 7:    the worker drains the connection after the last client byte (shutdown, reload)
 *
 * Invariants besides the sanitizers and the harness's own (every request that reaches the upstream
 * is well framed, every connection ends, nothing leaks):
 *   - each request the upstream received whole was answered and that answer reached the client, in
 *     order (x-fake-upstream: 1, 2, ...), and no answer reached it twice;
 *   - nothing the upstream answered follows a "connection: close" the proxy sent the client (no
 *     request is forwarded after a response that ends the connection, e.g. a 400).
 *   - a silent upstream's exchanges produce no upstream answers at the client. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The marks x-fake-upstream: N the client received must be 1, 2, ... in order. Returns how many. */
static unsigned fuzz_check_marks(const struct fh_result *res)
{
	const uint8_t *p = res->client_in.p, *end;
	size_t k = strlen(FH_MARK);
	unsigned n = 0;

	if (p == NULL)
		return 0;
	end = p + res->client_in.len;
	while (p + k <= end) {
		const uint8_t *m = memmem(p, (size_t)(end - p), FH_MARK, k);
		unsigned v = 0;

		if (m == NULL)
			break;
		for (p = m + k; p < end && *p >= '0' && *p <= '9'; p++)
			v = v * 10 + (unsigned)(*p - '0');
		if (v != ++n) {
			fprintf(stderr, "fuzz_http1: upstream answer %u reached the client as answer %u\n", v,
			        n);
			abort();
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum fh_answer answers[8] = {FH_ANSWER_LENGTH,     FH_ANSWER_CHUNKED, FH_ANSWER_CLOSE,
	                                          FH_ANSWER_NO_CONTENT, FH_ANSWER_SILENT,  FH_ANSWER_EARLY,
	                                          FH_ANSWER_RESET,      FH_ANSWER_LENGTH};
	struct fh_opts o = {0};
	struct fh_result res;
	unsigned marks, chunk;
	const uint8_t *close_at;

	if (size < 1 || size > 64 * 1024)
		return 0;
	o.answer = answers[data[0] & 7];
	chunk = (data[0] >> 3) & 7;
	o.client_chunk = chunk ? (size_t)1 << (chunk - 1) : 0;
	o.client_half_close = (data[0] & 0x40) != 0;
	o.drain = (data[0] & 0x80) != 0;
	fh_run(data + 1, size - 1, &o, &res);

	marks = fuzz_check_marks(&res);
	/* An early answer may lose the race with a client error that ends the exchange; every other
	 * answer is to a request the proxy had read whole, so it must reach the client. */
	if (o.answer == FH_ANSWER_EARLY
	            ? marks > res.upstream_answers
	            : marks != (o.answer == FH_ANSWER_SILENT ? 0 : res.upstream_requests)) {
		fprintf(stderr,
		        "fuzz_http1: the upstream answered %u whole requests, the client got %u answers\n",
		        res.upstream_requests, marks);
		fh_dump("client sent", data + 1, size - 1);
		fh_dump("client got", res.client_in.p, res.client_in.len);
		abort();
	}
	close_at = res.client_in.len == 0
	                   ? NULL
	                   : memmem(res.client_in.p, res.client_in.len, "\r\nconnection: close\r\n", 21);
	if (close_at != NULL &&
	    fh_count(close_at, res.client_in.len - (size_t)(close_at - res.client_in.p), FH_MARK) != 0) {
		fprintf(stderr,
		        "fuzz_http1: an upstream answer follows a response that closed the connection\n");
		fh_dump("client sent", data + 1, size - 1);
		fh_dump("client got", res.client_in.p, res.client_in.len);
		abort();
	}
	fh_result_free(&res);
	return 0;
}
