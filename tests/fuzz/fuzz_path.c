/* fuzz_path.c: libFuzzer target for request_normalise_path(). The first byte picks the options
 * (escaped-slash action, merging); the rest, after a '/', is the request target. A path accepted must
 * come out in normal form, no longer than it went in, with the query byte for byte as sent, and
 * normalising it again must change nothing; a path refused leaves the request as it was. Any breach
 * aborts. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwtgate/common.h"
#include "jwtgate/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool fuzz_is_hex_upper(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F');
}

static int fuzz_hex(char ch)
{
	return ch <= '9' ? ch - '0' : ch - 'A' + 10;
}

/* The normal form request_normalise_path() promises (request.h). */
static void fuzz_check_normal(const char *p, size_t len, enum request_escaped_slashes slashes, bool merge)
{
	size_t i;

	if (len == 0 || p[0] != '/')
		abort();
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch <= 0x20 || ch == 0x7f || ch == '\\' || ch == '?')
			abort();
		if (ch == '%') {
			int v;

			if (len - i < 3 || !fuzz_is_hex_upper(p[i + 1]) || !fuzz_is_hex_upper(p[i + 2]))
				abort();
			v = fuzz_hex(p[i + 1]) << 4 | fuzz_hex(p[i + 2]);
			if (v == 0 || (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') ||
			    (v >= '0' && v <= '9') || v == '-' || v == '.' || v == '_' || v == '~')
				abort(); /* NUL refused, unreserved decoded */
			if ((v == '/' || v == '\\') && slashes != REQUEST_SLASHES_KEEP)
				abort();
		}
		if (ch == '/') {
			const char *s = p + i + 1;
			size_t rest = len - i - 1;

			if (merge && rest > 0 && s[0] == '/')
				abort();
			if (rest > 0 && s[0] == '.' &&
			    (rest == 1 || s[1] == '/' || (s[1] == '.' && (rest == 2 || s[2] == '/'))))
				abort(); /* a dot segment survived */
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum request_escaped_slashes actions[] = {REQUEST_SLASHES_KEEP, REQUEST_SLASHES_REJECT,
	                                                       REQUEST_SLASHES_UNESCAPE};
	enum request_escaped_slashes slashes;
	struct arena arena;
	struct request req;
	char *target, *q_before = NULL;
	size_t tlen, qlen_before = 0;
	bool merge;
	int rc;

	if (size < 1 || size > 4096)
		return 0;
	slashes = actions[data[0] % 3];
	merge = (data[0] & 0x80) != 0;
	tlen = size; /* '/' + the remaining bytes */
	target = malloc(tlen + 1);
	if (target == NULL)
		return 0;
	target[0] = '/';
	memcpy(target + 1, data + 1, size - 1);
	target[tlen] = '\0';
	arena_init(&arena, 512, 1 << 20);
	request_init(&req, &arena);
	req.target = target;
	req.target_len = tlen;
	req.authority = "h";
	req.authority_len = 1;
	if (request_finish_head(&req) != 0)
		abort();
	if (req.query != NULL) {
		q_before = req.query;
		qlen_before = req.query_len;
	}
	rc = request_normalise_path(&req, slashes, merge);
	if (rc == JG_ERR_INVAL || rc == 0) {
		if (req.target != target || req.target_len != tlen)
			abort(); /* refused or left alone: the request is as sent */
	} else if (rc < 0) {
		abort(); /* out of memory cannot happen within the arena's 1 MiB bound */
	}
	if (rc >= 0) {
		size_t plen = req.path_len;

		fuzz_check_normal(req.path, plen, slashes, merge);
		if (plen > (size_t)(q_before != NULL ? q_before - 1 - target : (ptrdiff_t)tlen))
			abort();
		if (memcmp(req.target, req.path, plen) != 0 || req.path[plen] != '\0')
			abort();
		if ((q_before == NULL) != (req.query == NULL))
			abort();
		if (q_before != NULL &&
		    (req.query_len != qlen_before || req.target[plen] != '?' ||
		     req.query != req.target + plen + 1 || memcmp(req.query, q_before, qlen_before) != 0))
			abort();
		if (request_normalise_path(&req, slashes, merge) != 0)
			abort(); /* idempotent */
	}
	arena_free(&arena);
	free(target);
	return 0;
}
