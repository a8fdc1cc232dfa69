/* fuzz_http2.c: libFuzzer target for the HTTP/2 downstream codec (src/codec/http2.c over nghttp2, reached by
 * h2c prior knowledge through the HTTP/1.1 codec's preface sniffing, as in the proxy), with the
 * shared pipeline and the HTTP/1.1 upstream (codec_harness.h).
 *
 * The input is structure-aware so that mutations land on frames rather than on lengths: the harness
 * sends the client preface and then frames built from a list of operations, each with a correct
 * 9-octet frame header (RFC 9113 section 4.1), and header blocks encoded with a real HPACK encoder
 * from fuzz-chosen name/value pairs.
 *
 * Input: byte 0 chooses the run:
 *   bits 0-2: how the fake upstream answers (as fuzz_http1.c)
 *   bits 3-4: client write size (0: all at once, k: 4^k bytes per write)
 *   bit 5:    the worker drains the connection after the last client byte (GOAWAY: shutdown, reload)
 *   bit 6:    the client half-closes after its last byte
 *   bit 7:    raw: the rest is sent as it is after the preface (no operations)
 * then operations, each starting with a byte whose low 3 bits say what follows:
 *   0: frame   type flags stream len(1) payload
 *   1: HEADERS flags stream count {nlen name vlen value}*count (HPACK-encoded)
 *   2: DATA    flags stream len(1) payload
 *   3: CONTINUATION flags stream count {nlen name vlen value}*count (HPACK-encoded, same encoder)
 *   4: frame   type flags stream len(2, big-endian) payload
 *   5: a run of the loop between writes (a flush point: the bytes so far are sent)
 *   6,7: raw   len(1) bytes
 * A stream byte s means stream s (0 is the connection).
 *
 * Invariants besides the sanitizers and the harness's own (every request that reaches the upstream
 * is well framed, every connection ends, nothing leaks): what the client receives is a sequence of
 * whole HTTP/2 frames that starts with the server's SETTINGS, no frame exceeds the default maximum
 * size unless the client raised it, header blocks are contiguous and decode (HPACK, :status first),
 * and each answer of the fake upstream reaches the client at most once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "codec_harness.h"
#include "codec/http2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static bool fuzz_take(struct fuzz_in *in, size_t k, const uint8_t **out)
{
	if (in->n < k)
		return false;
	*out = in->p;
	in->p += k;
	in->n -= k;
	return true;
}

static void fuzz_frame_head(struct fh_bytes *b, size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
	uint8_t h[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8),  (uint8_t)len,        type,        flags,
	                (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};

	fh_bytes_add(b, h, 9);
}

/* A header block from count name/value pairs; false when the input ran out. */
static bool fuzz_header_block(struct fuzz_in *in, nghttp2_hd_deflater *def, struct fh_bytes *block)
{
	nghttp2_nv nv[32];
	const uint8_t *c, *l, *s;
	size_t i, count;
	uint8_t buf[8192];
	ssize_t n;

	if (!fuzz_take(in, 1, &c))
		return false;
	count = c[0] % 32;
	for (i = 0; i < count; i++) {
		memset(&nv[i], 0, sizeof(nv[i]));
		if (!fuzz_take(in, 1, &l) || !fuzz_take(in, l[0], &s))
			return false;
		nv[i].name = (uint8_t *)s;
		nv[i].namelen = l[0];
		if (!fuzz_take(in, 1, &l) || !fuzz_take(in, l[0], &s))
			return false;
		nv[i].value = (uint8_t *)s;
		nv[i].valuelen = l[0];
	}
	n = nghttp2_hd_deflate_hd(def, buf, sizeof(buf), nv, count);
	if (n < 0)
		return false;
	fh_bytes_add(block, buf, (size_t)n);
	return true;
}

/* Builds the client bytes from the operations. */
static void fuzz_build(struct fuzz_in in, struct fh_bytes *out)
{
	nghttp2_hd_deflater *def = NULL;
	const uint8_t *op, *h, *p, *l;

	if (nghttp2_hd_deflate_new(&def, 4096) != 0)
		abort();
	while (fuzz_take(&in, 1, &op)) {
		struct fh_bytes block = {0};
		size_t len;

		switch (op[0] & 7) {
		case 0:
		case 4:
			if (!fuzz_take(&in, 3, &h) || !fuzz_take(&in, (op[0] & 7) == 4 ? 2 : 1, &l))
				goto end;
			len = (op[0] & 7) == 4 ? (size_t)l[0] << 8 | l[1] : l[0];
			if (!fuzz_take(&in, len, &p))
				goto end;
			fuzz_frame_head(out, len, h[0], h[1], h[2]);
			fh_bytes_add(out, p, len);
			break;
		case 1:
		case 3:
			if (!fuzz_take(&in, 2, &h) || !fuzz_header_block(&in, def, &block)) {
				fh_bytes_free(&block);
				goto end;
			}
			fuzz_frame_head(out, block.len,
			                (op[0] & 7) == 1 ? NGHTTP2_HEADERS : NGHTTP2_CONTINUATION, h[0],
			                h[1]);
			fh_bytes_add(out, block.p, block.len);
			fh_bytes_free(&block);
			break;
		case 2:
			if (!fuzz_take(&in, 3, &h) || !fuzz_take(&in, h[2], &p))
				goto end;
			fuzz_frame_head(out, h[2], NGHTTP2_DATA, h[0], h[1]);
			fh_bytes_add(out, p, h[2]);
			break;
		case 5:
			break; /* the write size (byte 0) decides where the loop runs */
		default:
			if (!fuzz_take(&in, 1, &l) || !fuzz_take(&in, l[0], &p))
				goto end;
			fh_bytes_add(out, p, l[0]);
			break;
		}
	}
end:
	nghttp2_hd_deflate_del(def);
}

/* Decodes one header block of the server's with the connection's inflater. Returns the number of
 * the fake upstream's mark in it (0: none), or -1 when the block does not decode or a response's
 * first field is not :status. */
static long fuzz_inflate(nghttp2_hd_inflater *inf, const uint8_t *p, size_t n, bool *first)
{
	long mark = 0;

	for (;;) {
		nghttp2_nv nv;
		int flags = 0;
		ssize_t k = nghttp2_hd_inflate_hd2(inf, &nv, &flags, p, n, 1);

		if (k < 0)
			return -1;
		p += k;
		n -= (size_t)k;
		if (flags & NGHTTP2_HD_INFLATE_EMIT) {
			if (*first && !(nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0))
				return -1;
			*first = false;
			if (nv.namelen == strlen(FH_MARK) - 2 && memcmp(nv.name, FH_MARK, nv.namelen) == 0)
				mark = strtol((const char *)nv.value, NULL, 10);
		}
		if (flags & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(inf);
			return mark;
		}
		if (k == 0 && n == 0)
			return -1;
	}
}

/* The server's bytes: whole frames, SETTINGS first, header blocks that decode (the first field of a
 * response is :status), and each answer of the fake upstream at most once. */
static void fuzz_check_server(const struct fh_result *res, const uint8_t *data, size_t size, bool raised)
{
	const uint8_t *b = res->client_in.p;
	size_t pos = 0, n = res->client_in.len;
	const char *bad = NULL;
	nghttp2_hd_inflater *inf = NULL;
	struct fh_bytes block = {0};
	uint8_t seen[256] = {0}; /* answers are few: the input is bounded */
	bool in_block = false, first = true;

	if (nghttp2_hd_inflate_new(&inf) != 0)
		abort();
	if (n > 0 && (n < 9 || b[3] != NGHTTP2_SETTINGS || (b[4] & 1) != 0))
		bad = "the server's first frame is not SETTINGS";
	while (bad == NULL && pos < n) {
		size_t len, off = 0, pad = 0; /* pad: HEADERS padding length; off: pad length and priority */
		uint8_t type, flags;

		if (n - pos < 9) {
			bad = "a cut frame header";
			break;
		}
		len = (size_t)b[pos] << 16 | (size_t)b[pos + 1] << 8 | b[pos + 2];
		type = b[pos + 3];
		flags = b[pos + 4];
		if (len > 16384 && !raised)
			bad = "a frame larger than SETTINGS_MAX_FRAME_SIZE";
		else if (n - pos - 9 < len)
			bad = "a cut frame";
		else if (in_block != (type == NGHTTP2_CONTINUATION))
			bad = "a header block interrupted, or a CONTINUATION without one";
		if (bad != NULL)
			break;
		if (type == NGHTTP2_HEADERS || type == NGHTTP2_PUSH_PROMISE) {
			if (type == NGHTTP2_PUSH_PROMISE) {
				bad = "PUSH_PROMISE from a server whose client did not enable push";
				break;
			}
			if ((flags & NGHTTP2_FLAG_PADDED) && len > 0) {
				pad = b[pos + 9];
				off = 1;
			}
			if (flags & NGHTTP2_FLAG_PRIORITY)
				off += 5;
			if (off + pad > len) {
				bad = "HEADERS padding or priority longer than the frame";
				break;
			}
			block.len = 0;
			first = true;
		}
		if (type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION) {
			fh_bytes_add(&block, b + pos + 9 + off, len - off - pad);
			in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
			if (!in_block) {
				long mark = fuzz_inflate(inf, block.p, block.len, &first);

				if (getenv("FH_VERBOSE") != NULL)
					fprintf(stderr, "header block: mark %ld\n", mark);
				if (mark < 0)
					bad = "a header block that does not decode, or a response without "
					      ":status first";
				else if (mark > 0 &&
				         (mark > (long)res->upstream_answers || mark > 255 || seen[mark]++))
					bad = "an upstream answer the upstream did not give, or given twice";
			}
		}
		pos += 9 + len;
	}
	fh_bytes_free(&block);
	nghttp2_hd_inflate_del(inf);
	if (bad != NULL) {
		fprintf(stderr, "fuzz_http2: %s\n", bad);
		fh_dump("input", data, size);
		fh_dump("client got", res->client_in.p, res->client_in.len);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum fh_answer answers[8] = {FH_ANSWER_LENGTH,     FH_ANSWER_CHUNKED, FH_ANSWER_CLOSE,
	                                          FH_ANSWER_NO_CONTENT, FH_ANSWER_SILENT,  FH_ANSWER_EARLY,
	                                          FH_ANSWER_RESET,      FH_ANSWER_LENGTH};
	struct fh_opts o = {0};
	struct fh_bytes client = {0};
	struct fh_result res;
	unsigned chunk;
	bool raised;

	if (size < 1 || size > 64 * 1024)
		return 0;
	o.answer = answers[data[0] & 7];
	chunk = (data[0] >> 3) & 3;
	o.client_chunk = chunk ? (size_t)1 << (2 * chunk) : 0;
	o.drain = (data[0] & 0x20) != 0;
	o.client_half_close = (data[0] & 0x40) != 0;
	fh_bytes_add(&client, HTTP2_PREFACE, HTTP2_PREFACE_LEN);
	if (data[0] & 0x80)
		fh_bytes_add(&client, data + 1, size - 1);
	else
		fuzz_build((struct fuzz_in){data + 1, size - 1}, &client);
	fh_run(client.p, client.len, &o, &res);
	/* SETTINGS_MAX_FRAME_SIZE (5) anywhere in the client bytes may have raised the bound: be lenient
	 * then rather than decode the client's frames a second time. */
	raised = client.len > 0 && memmem(client.p, client.len, "\x00\x05\x00", 3) != NULL;
	fuzz_check_server(&res, client.p, client.len, raised);
	fh_result_free(&res);
	fh_bytes_free(&client);
	return 0;
}
