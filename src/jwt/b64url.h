/* b64url.h: strict base64url (RFC 4648 section 5, unpadded, as JWS requires in RFC 7515 section 2).
 *
 * Decoding is strict on purpose (reference/security.md section 2 row 18): the alphabet is A-Z a-z 0-9
 * '-' '_' only; '=' padding, '+', '/', whitespace and any other byte are errors; a length of 4k+1 is an
 * error; the unused low bits of the last character must be zero, so every byte string has exactly one
 * accepted encoding. */
#ifndef JWTGATE_B64URL_H
#define JWTGATE_B64URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exact encoded length (no NUL) of n bytes. */
#define B64URL_ENCODED_LEN(n) (((n) / 3) * 4 + (((n) % 3) ? ((n) % 3) + 1 : 0))
/* Decoded length of a valid encoding of n characters (an upper bound for any n). */
#define B64URL_DECODED_LEN(n) (((n) / 4) * 3 + (((n) % 4) ? ((n) % 4) - 1 : 0))

/* Checks that in[0..len) is a canonical base64url encoding without decoding it. */
bool b64url_is_valid(const char *in, size_t len);

/* Decodes in[0..len) into out (capacity cap). On success returns 0 and sets *out_len.
 * Returns JG_ERR_PARSE for any non-canonical or invalid input, JG_ERR_LIMIT when the decoded bytes
 * would not fit in cap (out is then left untouched). in need not be NUL-terminated. */
int b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Encodes in[0..len) into out (capacity cap, which must hold B64URL_ENCODED_LEN(len) + 1 for the
 * terminating NUL). Returns 0 and sets *out_len (without the NUL), or JG_ERR_LIMIT. */
int b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *out_len);

#endif
