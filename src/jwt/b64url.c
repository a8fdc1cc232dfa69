/* b64url.c: strict base64url decoder and encoder (see b64url.h for the rules). */
#include "jwt/b64url.h"

#include "core/common.h"

#define B64_BAD 0xff

/* Value of each byte in the base64url alphabet, B64_BAD for everything else (NUL, '=', '+', '/',
 * whitespace, bytes >= 0x80). Built from the alphabet string so it cannot disagree with the encoder. */
/* clang-format off */
static const uint8_t b64url_value[256] = {
#define B64_ROW16 B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, \
		B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD
	B64_ROW16, B64_ROW16,
	/* 0x20 - 0x2f: only '-' (0x2d) */
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, 62, B64_BAD, B64_BAD,
	/* 0x30 - 0x3f: '0'..'9' */
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	/* 0x40 - 0x5f: 'A'..'Z', '_' (0x5f) */
	B64_BAD, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, B64_BAD, B64_BAD, B64_BAD, B64_BAD, 63,
	/* 0x60 - 0x7f: 'a'..'z' */
	B64_BAD, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, B64_BAD, B64_BAD, B64_BAD, B64_BAD, B64_BAD,
	B64_ROW16, B64_ROW16, B64_ROW16, B64_ROW16, B64_ROW16, B64_ROW16, B64_ROW16, B64_ROW16,
#undef B64_ROW16
};
/* clang-format on */

static const char b64url_alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Validates alphabet, length and zero unused bits. Returns true for a canonical encoding. */
bool b64url_is_valid(const char *in, size_t len)
{
	const uint8_t *p = (const uint8_t *)in;
	size_t rem = len % 4;
	size_t i;
	uint8_t last;

	if (rem == 1)
		return false;
	for (i = 0; i < len; i++) {
		if (b64url_value[p[i]] == B64_BAD)
			return false;
	}
	if (rem == 0)
		return true;
	last = b64url_value[p[len - 1]];
	/* 2 chars carry 8 bits (4 unused), 3 chars carry 16 bits (2 unused). */
	return rem == 2 ? (last & 0x0f) == 0 : (last & 0x03) == 0;
}

/* Decodes and validates in one pass (see b64url.h): every table value is OR-ed into one byte whose
 * top bit only B64_BAD sets, so the loop has no per-character branch. */
int b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	const uint8_t *p = (const uint8_t *)in;
	size_t need, i, o = 0;
	uint8_t a, b, c, d, bad = 0;
	uint32_t v;

	if (len % 4 == 1)
		return JG_ERR_PARSE;
	need = B64URL_DECODED_LEN(len);
	if (need > cap)
		return b64url_is_valid(in, len) ? JG_ERR_LIMIT : JG_ERR_PARSE;
	for (i = 0; i + 4 <= len; i += 4) {
		a = b64url_value[p[i]];
		b = b64url_value[p[i + 1]];
		c = b64url_value[p[i + 2]];
		d = b64url_value[p[i + 3]];
		bad |= a | b | c | d;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
		out[o++] = (uint8_t)v;
	}
	if (len - i == 2) {
		a = b64url_value[p[i]];
		b = b64url_value[p[i + 1]];
		/* 2 chars carry 8 bits: the 4 unused bits must be zero (canonical encoding). */
		bad |= a | b | ((b & 0x0f) != 0 ? B64_BAD : 0);
		out[o++] = (uint8_t)(a << 2 | (b & 0x3f) >> 4);
	} else if (len - i == 3) {
		a = b64url_value[p[i]];
		b = b64url_value[p[i + 1]];
		c = b64url_value[p[i + 2]];
		/* 3 chars carry 16 bits: the 2 unused bits must be zero. */
		bad |= a | b | c | ((c & 0x03) != 0 ? B64_BAD : 0);
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
	}
	if (bad & 0x80)
		return JG_ERR_PARSE;
	*out_len = o;
	return 0;
}

/* Encodes without padding; see b64url.h. */
int b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *out_len)
{
	size_t need = B64URL_ENCODED_LEN(len);
	size_t i, o = 0;
	uint32_t v;

	if (len > (SIZE_MAX - 1) / 4 * 3 || need + 1 > cap)
		return JG_ERR_LIMIT;
	for (i = 0; i + 3 <= len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		out[o++] = b64url_alphabet[(v >> 6) & 63];
		out[o++] = b64url_alphabet[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		out[o++] = b64url_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	*out_len = o;
	return 0;
}
