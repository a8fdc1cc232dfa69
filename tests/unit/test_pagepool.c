/* test_pagepool.c: the per-worker page pool (issue 13): bounds, reuse, release of pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/common.h"
#include "core/pagepool.h"

#define PAGE 4096

/* Resident pages of [addr, addr + len) as the kernel counts them (mincore). */
static size_t resident_pages(void *addr, size_t len)
{
	unsigned char vec[64];
	size_t i, n = len / PAGE, r = 0;

	assert_true(n <= sizeof(vec));
	assert_int_equal(mincore(addr, len, vec), 0);
	for (i = 0; i < n; i++)
		r += vec[i] & 1;
	return r;
}

static void test_bounds(void **state)
{
	struct pagepool p;
	void *s[3];

	(void)state;
	assert_int_equal(pagepool_init(&p, 0, 4, 0), JG_ERR_INVAL);
	assert_int_equal(pagepool_init(&p, PAGE, 0, 0), JG_ERR_INVAL);
	assert_null(pagepool_get(&p)); /* a pool that failed to start is off, not broken */
	/* 5000 bytes round up to two pages; three slots, then NULL (the caller falls back to malloc) */
	assert_int_equal(pagepool_init(&p, 5000, 3, 8), 0);
	assert_int_equal(p.slot_size, 2 * PAGE);
	for (int i = 0; i < 3; i++) {
		s[i] = pagepool_get(&p);
		assert_non_null(s[i]);
		assert_int_equal((uintptr_t)s[i] % PAGE, 0);
		assert_true(pagepool_owns(&p, s[i]));
		assert_true(pagepool_owns(&p, (char *)s[i] + 2 * PAGE - 1));
		memset(s[i], 0xa5, 2 * PAGE); /* the whole slot is writable */
	}
	assert_ptr_equal((char *)s[1], (char *)s[0] + 2 * PAGE); /* slots do not overlap */
	assert_null(pagepool_get(&p));
	assert_int_equal(p.n_out, 3);
	assert_false(pagepool_owns(&p, (char *)s[2] + 2 * PAGE));
	assert_false(pagepool_owns(&p, (char *)s[0] - 1));
	assert_false(pagepool_owns(&p, &p));
	pagepool_put(&p, s[1]);
	assert_ptr_equal(pagepool_get(&p), s[1]); /* freed slot comes back once the pool is full */
	for (int i = 0; i < 3; i++)
		pagepool_put(&p, s[i]);
	assert_int_equal(p.n_out, 0);
	pagepool_fini(&p);
	assert_null(pagepool_get(&p));
}

/* Last in, first out: the slot put back last is the warmest. Below warm_max a put-back slot keeps
 * its pages (and its bytes); past it the pages are released first. */
static void test_reuse_warm_then_released(void **state)
{
	struct pagepool p;
	unsigned char *a, *b, *c;

	(void)state;
	assert_int_equal(pagepool_init(&p, PAGE, 8, 1), 0);
	a = pagepool_get(&p);
	b = pagepool_get(&p);
	memset(a, 1, PAGE);
	memset(b, 2, PAGE);
	assert_int_equal(resident_pages(a, PAGE), 1);
	pagepool_put(&p, a); /* warm: kept as is */
	pagepool_put(&p, b); /* one warm slot already: released */
	assert_int_equal(p.n_warm, 1);
	assert_int_equal(resident_pages(a, PAGE), 1);
	assert_int_equal(resident_pages(b, PAGE), 0);
	c = pagepool_get(&p);
	assert_ptr_equal(c, b);
	assert_true(pagepool_is_zero(c, PAGE)); /* released pages read as zero */
	assert_int_equal(p.n_warm, 1);
	c = pagepool_get(&p);
	assert_ptr_equal(c, a);
	assert_int_equal(c[0], 1); /* warm slot: the last owner's bytes */
	assert_int_equal(p.n_warm, 0);
	pagepool_put(&p, a);
	pagepool_put(&p, b);
	pagepool_fini(&p);
}

/* pagepool_release drops exactly the pages asked for; the slot stays usable. */
static void test_release(void **state)
{
	struct pagepool p;
	unsigned char *s;

	(void)state;
	assert_int_equal(pagepool_init(&p, 4 * PAGE, 2, 4), 0);
	s = pagepool_get(&p);
	assert_int_equal(resident_pages(s, 4 * PAGE), 0); /* never touched: costs nothing */
	memset(s, 7, 4 * PAGE);
	assert_int_equal(resident_pages(s, 4 * PAGE), 4);
	assert_int_equal(pagepool_release(&p, s + PAGE, 2 * PAGE), 0);
	assert_int_equal(resident_pages(s, 4 * PAGE), 2);
	assert_int_equal(s[0], 7);
	assert_int_equal(s[3 * PAGE], 7);
	assert_true(pagepool_is_zero(s + PAGE, 2 * PAGE));
	s[PAGE] = 9; /* written again: faulted back in */
	assert_int_equal(resident_pages(s + PAGE, PAGE), 1);
	assert_int_equal(pagepool_release(&p, s + 1, PAGE), -EINVAL); /* unaligned */
	assert_int_equal(pagepool_release(&p, s, 0), 0);
	pagepool_put(&p, s);
	pagepool_fini(&p);
}

static void test_is_zero(void **state)
{
	uint64_t buf[512];

	(void)state;
	memset(buf, 0, sizeof(buf));
	assert_true(pagepool_is_zero(buf, sizeof(buf)));
	((unsigned char *)buf)[sizeof(buf) - 1] = 1;
	assert_false(pagepool_is_zero(buf, sizeof(buf)));
	buf[511] = 0;
	buf[0] = 1ull << 63;
	assert_false(pagepool_is_zero(buf, sizeof(buf)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_bounds),
	        cmocka_unit_test(test_reuse_warm_then_released),
	        cmocka_unit_test(test_release),
	        cmocka_unit_test(test_is_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
