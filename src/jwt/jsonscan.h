/* jsonscan.h: an allocation-free reader for the plain JSON objects that JOSE headers and JWT claims sets
 * nearly always are, so that verifying a new token does not pay for a JSON library (jansson allocates
 * every member, key and string; on a cache miss that was a quarter of the cost of an RSA-2048 verify).
 *
 * It accepts only a subset whose meaning is certain, and reads it in place:
 *   - one object at the top, at most JSONSCAN_MAX_MEMBERS members, no two with the same name;
 *   - names and string values of printable ASCII (0x20-0x7e) without '"' or '\' (so no escapes, and
 *     the bytes between the quotes are the string);
 *   - integers -?(0|[1-9][0-9]*) of at most 18 digits (no fraction, no exponent: they fit int64_t);
 *   - true, false, null, and arrays whose items are such strings (aud, roles, scopes);
 *   - JSON whitespace (space, tab, CR, LF) between tokens.
 * Anything else (escapes, UTF-8, reals, long integers, nested objects, arrays of other values, invalid
 * JSON of any kind) is "not plain": the caller parses that text with jansson (JSON_REJECT_DUPLICATES),
 * which decides validity and meaning. Every text accepted here, jansson accepts with the same members and
 * values (tests/fuzz/fuzz_jsonscan.c checks exactly that). */
#ifndef JWTGATE_JSONSCAN_H
#define JWTGATE_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONSCAN_MAX_MEMBERS 32 /* a larger object is left to jansson */
#define JSONSCAN_MAX_DIGITS  18 /* longest integer read here: < 10^18 always fits int64_t */

enum jsonscan_type {
	JSONSCAN_STRING,
	JSONSCAN_INTEGER,
	JSONSCAN_TRUE,
	JSONSCAN_FALSE,
	JSONSCAN_NULL,
	JSONSCAN_ARRAY, /* of plain strings only */
};

/* One member; pointers borrow the scanned text. */
struct jsonscan_member {
	const char *name;
	size_t name_len;
	enum jsonscan_type type;
	const char *text; /* STRING: the bytes between the quotes; ARRAY: '[' to ']' inclusive */
	size_t len;
	int64_t integer; /* INTEGER */
	size_t n_items;  /* ARRAY */
};

struct jsonscan_object {
	size_t n;
	struct jsonscan_member m[JSONSCAN_MAX_MEMBERS];
};

/* Reads text[0..len) into *out. Returns true when the text is a plain object (above), false when it is
 * not (then *out is meaningless and the text must go to a real JSON parser). */
bool jsonscan_object(const char *text, size_t len, struct jsonscan_object *out);

/* The member named name (NUL-terminated), or NULL. */
const struct jsonscan_member *jsonscan_get(const struct jsonscan_object *obj, const char *name);

/* Steps through the strings of an ARRAY member: *pos starts at 0; returns false after the last one. */
bool jsonscan_array_next(const struct jsonscan_member *m, size_t *pos, const char **s, size_t *len);

#endif
