/* test_b64url.c: strict base64url decoding and encoding (reference/security.md section 2 row 18). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jwt/b64url.h"
#include "core/common.h"

static int decode_str(const char *in, uint8_t *out, size_t cap, size_t *n)
{
	return b64url_decode(in, strlen(in), out, cap, n);
}

/* RFC 4648 section 10 vectors (unpadded, url alphabet) both ways. */
static void test_rfc4648_vectors(void **state)
{
	static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	uint8_t out[16];
	char txt[16];
	size_t n, i;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(plain); i++) {
		assert_int_equal(decode_str(enc[i], out, sizeof(out), &n), 0);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(out, plain[i], n);
		assert_int_equal(
		        b64url_encode((const uint8_t *)plain[i], strlen(plain[i]), txt, sizeof(txt), &n), 0);
		assert_string_equal(txt, enc[i]);
		assert_int_equal(n, strlen(enc[i]));
		assert_int_equal(B64URL_ENCODED_LEN(strlen(plain[i])), strlen(enc[i]));
	}
}

/* Bytes 0xfb 0xff encode to "-_8" in base64url ("+/8=" in base64). */
static void test_url_alphabet(void **state)
{
	uint8_t out[4];
	size_t n;
	char txt[8];
	static const uint8_t bytes[] = {0xfb, 0xff};

	(void)state;
	assert_int_equal(decode_str("-_8", out, sizeof(out), &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(out, bytes, 2);
	assert_int_equal(b64url_encode(bytes, 2, txt, sizeof(txt), &n), 0);
	assert_string_equal(txt, "-_8");
	assert_int_equal(decode_str("+/8", out, sizeof(out), &n), JG_ERR_PARSE);
}

static void test_rejects_noncanonical(void **state)
{
	static const char *bad[] = {
	        "Zg==",  "Zg=",   "Zm9v=",            /* padding */
	        "Z",     "Zm9vY",                     /* length 4k+1 */
	        "Zh",    "Zm9",                       /* non-zero unused bits (canonical: Zg, Zm8) */
	        "Zm 9v", " Zm9v", "Zm9v\n", "Zm9v\t", /* whitespace */
	        "Zm9v.", "Zm*v",  "Zm9v!",            /* stray characters */
	        "+m9v",  "Zm/v",                      /* standard alphabet */
	};
	uint8_t out[16];
	size_t n, i;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(bad); i++) {
		assert_int_equal(decode_str(bad[i], out, sizeof(out), &n), JG_ERR_PARSE);
		assert_false(b64url_is_valid(bad[i], strlen(bad[i])));
	}
}

static void test_rejects_nul_and_high_bytes(void **state)
{
	uint8_t out[8];
	size_t n;
	static const char with_nul[4] = {'Z', 'm', '\0', 'v'};
	static const char high[4] = {'Z', 'm', (char)0xc3, 'v'};

	(void)state;
	assert_int_equal(b64url_decode(with_nul, 4, out, sizeof(out), &n), JG_ERR_PARSE);
	assert_int_equal(b64url_decode(high, 4, out, sizeof(out), &n), JG_ERR_PARSE);
}

/* Decoding never writes past cap: an output that would not fit is refused before any write. */
static void test_capacity(void **state)
{
	uint8_t out[8];
	char txt[9];
	size_t n = 77;

	(void)state;
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(decode_str("Zm9vYmFy", out, 5, &n), JG_ERR_LIMIT);
	assert_int_equal(n, 77);
	assert_int_equal(out[0], 0xaa);
	assert_int_equal(decode_str("Zm9vYmFy", out, 6, &n), 0);
	assert_int_equal(n, 6);
	/* "Zm9vYmFy" needs 8 characters plus the NUL. */
	assert_int_equal(b64url_encode((const uint8_t *)"foobar", 6, txt, 9, &n), 0);
	assert_string_equal(txt, "Zm9vYmFy");
	assert_int_equal(b64url_encode((const uint8_t *)"foobar", 6, txt, 8, &n), JG_ERR_LIMIT);
}

/* Every byte string round-trips, and the decoder accepts only the encoder's output among all
 * two- and three-character strings that decode to the same bytes. */
static void test_roundtrip_all_lengths(void **state)
{
	uint8_t in[64], out[64];
	char txt[B64URL_ENCODED_LEN(64) + 1];
	size_t len, n, m, i;

	(void)state;
	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 37 + 11);
	for (len = 0; len <= sizeof(in); len++) {
		assert_int_equal(b64url_encode(in, len, txt, sizeof(txt), &n), 0);
		assert_int_equal(n, B64URL_ENCODED_LEN(len));
		assert_int_equal(b64url_decode(txt, n, out, sizeof(out), &m), 0);
		assert_int_equal(m, len);
		assert_memory_equal(in, out, len);
	}
}

static void test_single_byte_canonical(void **state)
{
	char txt[4];
	uint8_t out[2];
	size_t n;
	int b, c, accepted = 0;
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

	(void)state;
	/* Of the 64*64 two-character strings exactly 256 are canonical (one per byte value). */
	for (b = 0; b < 64; b++) {
		for (c = 0; c < 64; c++) {
			txt[0] = alpha[b];
			txt[1] = alpha[c];
			if (b64url_decode(txt, 2, out, sizeof(out), &n) == 0) {
				accepted++;
				assert_int_equal(n, 1);
			}
		}
	}
	assert_int_equal(accepted, 256);
}

/* The decoder checks validity with one OR over the whole input (no per-character branch): every byte
 * outside the alphabet, in every position of a full quad and of both tail lengths, must still fail, and
 * of the 64^3 three-character strings exactly 65536 (one per two-byte value) are canonical. */
static void test_every_position_checked(void **state)
{
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	static const char *valid[] = {"QUJD", "QUJDRA", "QUJDREU", "QUJDREVG"};
	char txt[16], three[3];
	uint8_t out[16];
	size_t n, v, pos, len;
	int bad, a, b, c, accepted = 0;

	(void)state;
	for (v = 0; v < JG_ARRAY_SIZE(valid); v++) {
		len = strlen(valid[v]);
		assert_int_equal(b64url_decode(valid[v], len, out, sizeof(out), &n), 0);
		for (pos = 0; pos < len; pos++) {
			for (bad = 0; bad < 256; bad++) {
				if (bad != 0 && strchr(alpha, bad) != NULL)
					continue;
				memcpy(txt, valid[v], len);
				txt[pos] = (char)bad;
				assert_int_equal(b64url_decode(txt, len, out, sizeof(out), &n), JG_ERR_PARSE);
			}
		}
	}
	for (a = 0; a < 64; a++) {
		for (b = 0; b < 64; b++) {
			for (c = 0; c < 64; c++) {
				three[0] = alpha[a];
				three[1] = alpha[b];
				three[2] = alpha[c];
				if (b64url_decode(three, 3, out, sizeof(out), &n) == 0) {
					accepted++;
					assert_int_equal(n, 2);
					assert_int_equal(out[0], (uint8_t)(a << 2 | b >> 4));
					assert_int_equal(out[1], (uint8_t)((b & 0x0f) << 4 | c >> 2));
				}
			}
		}
	}
	assert_int_equal(accepted, 65536);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rfc4648_vectors),
	        cmocka_unit_test(test_url_alphabet),
	        cmocka_unit_test(test_rejects_noncanonical),
	        cmocka_unit_test(test_rejects_nul_and_high_bytes),
	        cmocka_unit_test(test_capacity),
	        cmocka_unit_test(test_roundtrip_all_lengths),
	        cmocka_unit_test(test_single_byte_canonical),
	        cmocka_unit_test(test_every_position_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
