/* fuzz_http1_response.c: libFuzzer target for the HTTP/1.1 response codec as it runs in the proxy: the
 * upstream's response parser (src/upstream/upstream.c) and the client-side response encoder
 * (src/codec/http1.c). A client sends one or two requests; the fake upstream answers the first with the fuzz
 * input and any later one with its own marked response (codec_harness.h).
 *
 * Input: byte 0 chooses the run, the rest is the upstream's first response.
 *   bits 0-1: the first request: GET, HEAD, POST with a body, GET over HTTP/1.0
 *   bit 2:    a second request (GET /second) is pipelined after the first
 *   bit 3:    the upstream closes after its response
 *   bits 4-7: the response is written in two parts, split at (bits * length / 16)
 *
 * Invariants besides the sanitizers and the harness's own:
 *   - what the client receives is a well-framed sequence of responses (reference framer), one final
 *     response per request at most, nothing after a response that said "connection: close";
 *   - a final response to the second request is the upstream's answer to that request (marked 2) or
 *     one the proxy made itself: bytes the upstream sent past its first response never reach the
 *     client as the answer to a later request (response splitting / desync);
 *   - when the upstream closed after its response and the proxy keeps the client connection open,
 *     every request was answered. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_requests[4] = {
        "GET /first HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD /first HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "GET /first HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
};
static const char fuzz_second[] = "GET /second HTTP/1.1\r\nHost: a\r\n\r\n";

static void fuzz_fail(const char *what, const uint8_t *data, size_t size, const struct fh_result *res)
{
	fprintf(stderr, "fuzz_http1_response: %s\n", what);
	fh_dump("upstream response", data + 1, size - 1);
	fh_dump("client got", res->client_in.p, res->client_in.len);
	abort();
}

/* Is this response one the proxy made (text/plain error with its own length), not the upstream's? */
static bool fuzz_is_local(const uint8_t *p, size_t n, int status)
{
	return status >= 500 &&
	       memmem(p, n, "\r\ncontent-type: text/plain\r\ncontent-length: ", 44) != NULL &&
	       memmem(p, n, FH_MARK, strlen(FH_MARK)) == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fh_opts o = {0};
	struct fh_result res;
	char client[256];
	size_t clen, pos = 0;
	unsigned nreq, finals = 0;
	bool is_head, closed_by_header = false;

	if (size < 1 || size > 64 * 1024)
		return 0;
	is_head = (data[0] & 3) == 1;
	nreq = (data[0] & 4) ? 2 : 1;
	clen = (size_t)snprintf(client, sizeof(client), "%s%s", fuzz_requests[data[0] & 3],
	                        nreq == 2 ? fuzz_second : "");
	o.answer = FH_ANSWER_BYTES;
	o.resp = data + 1;
	o.resp_len = size - 1;
	o.resp_split = (size_t)(data[0] >> 4) * (size - 1) / 16;
	o.close_after_resp = (data[0] & 8) != 0;
	fh_run((const uint8_t *)client, clen, &o, &res);

	while (pos < res.client_in.len) {
		const uint8_t *p = res.client_in.p + pos;
		size_t n = res.client_in.len - pos, total;
		const char *why;
		int status;
		enum fh_frame st = fh_frame_response(p, n, finals == 0 && is_head, res.client_eof, &status,
		                                     &total, &why);

		if (st == FH_FRAME_BAD) {
			fprintf(stderr, "at offset %zu: %s\n", pos, why);
			fuzz_fail("the client got a malformed response", data, size, &res);
		}
		if (st == FH_FRAME_PARTIAL) {
			/* A response may stay partial while the upstream may still send the rest; once it
			 * closed, only the proxy's own close may cut one. */
			if (o.close_after_resp && !res.client_eof)
				fuzz_fail("a partial response on a connection the proxy kept open", data,
				          size, &res);
			break;
		}
		if (closed_by_header)
			fuzz_fail("bytes after a response that said connection: close", data, size, &res);
		if (status >= 200) {
			if (++finals > nreq)
				fuzz_fail("more final responses than requests", data, size, &res);
			if (finals == 2 && !fuzz_is_local(p, total, status) &&
			    memmem(p, total, FH_MARK "2\r\n", strlen(FH_MARK) + 3) == NULL)
				fuzz_fail("the second request got an answer the upstream did not give to it",
				          data, size, &res);
			{
				const uint8_t *head_end = memmem(p, total, "\r\n\r\n", 4);
				size_t head_len = head_end ? (size_t)(head_end - p) + 4 : total;

				if (memmem(p, head_len, "\r\nconnection: close\r\n", 21) != NULL)
					closed_by_header = true;
			}
		}
		pos += total;
	}
	/* An upstream that closed has said all it will: the proxy must have answered (or closed). */
	if (o.close_after_resp && !res.client_eof && finals != nreq)
		fuzz_fail("the connection stayed open with a request unanswered", data, size, &res);
	fh_result_free(&res);
	return 0;
}
