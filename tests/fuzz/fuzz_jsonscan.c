/* fuzz_jsonscan.c: libFuzzer target, differential: whatever jsonscan_object accepts as plain JSON,
 * jansson (JSON_REJECT_DUPLICATES, the reader it stands in for) must accept as an object with exactly the
 * same members, types and values. Any disagreement aborts. Texts jsonscan declines prove nothing here:
 * they go to jansson in jwt.c. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jwt/jsonscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_same_member(const struct jsonscan_member *m, const json_t *v)
{
	const char *s;
	size_t len, pos = 0, i;

	if (v == NULL)
		abort();
	switch (m->type) {
	case JSONSCAN_STRING:
		if (!json_is_string(v) || json_string_length(v) != m->len ||
		    memcmp(json_string_value(v), m->text, m->len) != 0)
			abort();
		break;
	case JSONSCAN_INTEGER:
		if (!json_is_integer(v) || json_integer_value(v) != m->integer)
			abort();
		break;
	case JSONSCAN_TRUE:
		if (!json_is_true(v))
			abort();
		break;
	case JSONSCAN_FALSE:
		if (!json_is_false(v))
			abort();
		break;
	case JSONSCAN_NULL:
		if (!json_is_null(v))
			abort();
		break;
	case JSONSCAN_ARRAY:
		if (!json_is_array(v) || json_array_size(v) != m->n_items)
			abort();
		for (i = 0; i < m->n_items; i++) {
			const json_t *item = json_array_get(v, i);

			if (!jsonscan_array_next(m, &pos, &s, &len) || !json_is_string(item) ||
			    json_string_length(item) != len || memcmp(json_string_value(item), s, len) != 0)
				abort();
		}
		if (jsonscan_array_next(m, &pos, &s, &len))
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct jsonscan_object obj;
	json_error_t err;
	json_t *j;
	size_t i;

	if (!jsonscan_object((const char *)data, size, &obj))
		return 0;
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
	if (j == NULL || !json_is_object(j) || json_object_size(j) != obj.n)
		abort();
	for (i = 0; i < obj.n; i++) {
		char name[256];

		fuzz_same_member(&obj.m[i], json_object_getn(j, obj.m[i].name, obj.m[i].name_len));
		/* Lookup by name finds this very member (names are unique and NUL-free). */
		if (obj.m[i].name_len < sizeof(name)) {
			memcpy(name, obj.m[i].name, obj.m[i].name_len);
			name[obj.m[i].name_len] = '\0';
			if (jsonscan_get(&obj, name) != &obj.m[i])
				abort();
		}
	}
	json_decref(j);
	return 0;
}
