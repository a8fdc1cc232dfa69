/* common.c: start-up tier allocation wrappers, clocks, small string helpers. */
#include "core/common.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void common_oom(size_t size)
{
	fprintf(stderr, "jwtgate: out of memory allocating %zu bytes\n", size);
	abort();
}

void *jg_xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		common_oom(size);
	return p;
}

void *jg_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		common_oom(n * size);
	return p;
}

void *jg_xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (q == NULL)
		common_oom(size);
	return q;
}

char *jg_xstrdup(const char *s)
{
	return jg_xstrndup(s, strlen(s));
}

char *jg_xstrndup(const char *s, size_t n)
{
	char *p = jg_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

uint64_t jg_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t jg_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t jg_wall_time(void)
{
	return (int64_t)time(NULL);
}

bool jg_case_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i;

	if (alen != blen)
		return false;
	for (i = 0; i < alen; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return false;
	}
	return true;
}

int jg_buf_append(struct jg_buf *b, const char *s, size_t n)
{
	if (n > b->max || b->len > b->max - n)
		return JG_ERR_LIMIT;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (p == NULL)
			return JG_ERR_NOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int jg_piece_add(struct jg_piece *p, const char *s, size_t n)
{
	int rc;

	if (p->span == NULL && p->buf.len == 0) {
		if (n > p->buf.max)
			return JG_ERR_LIMIT;
		p->span = s;
		p->span_len = n;
		return 0;
	}
	rc = jg_piece_keep(p);
	return rc < 0 ? rc : jg_buf_append(&p->buf, s, n);
}

int jg_piece_keep(struct jg_piece *p)
{
	const char *s = p->span;

	if (s == NULL)
		return 0;
	p->span = NULL;
	return jg_buf_append(&p->buf, s, p->span_len);
}

void jg_buf_free(struct jg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

size_t jg_hex(char *out, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[16];
	size_t n = 0, i;

	do {
		tmp[n++] = digits[v & 0xf];
		v >>= 4;
	} while (v != 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

void jg_rng_seed(uint64_t *state, uint64_t salt)
{
	if (getrandom(state, sizeof(*state), 0) != (ssize_t)sizeof(*state))
		*state = jg_now_ms() * 6364136223846793005ull + salt;
	if (*state == 0)
		*state = 88172645463325252ull;
}

uint64_t jg_rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

size_t jg_chunk_line(char *out, uint64_t len)
{
	size_t n = jg_hex(out, len);

	out[n++] = '\r';
	out[n++] = '\n';
	return n;
}

/* Eight bytes at once, without carries between bytes (each 7-bit value plus at most 0x3f stays
 * below 0x100): bit 7 of low7 + 0x3f says >= 'A', of low7 + 0x25 says > 'Z'; bytes >= 0x80 are left
 * alone. */
static inline uint64_t jg_lower8(uint64_t x)
{
	uint64_t low7 = x & 0x7f7f7f7f7f7f7f7fULL;
	uint64_t upper = ((low7 + 0x3f3f3f3f3f3f3f3fULL) ^ (low7 + 0x2525252525252525ULL)) & ~x &
	                 0x8080808080808080ULL;

	return x | upper >> 2; /* 0x80 >> 2 == 0x20, the case bit */
}

void jg_lower_copy(char *dst, const char *src, size_t n)
{
	uint64_t x;
	size_t i;

	if (n < 8) {
		for (i = 0; i < n; i++) {
			char c = src[i];

			dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
		}
		return;
	}
	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&x, src + i, 8);
		x = jg_lower8(x);
		memcpy(dst + i, &x, 8);
	}
	if (i < n) { /* the last eight bytes again, overlapping what is done (same result there) */
		memcpy(&x, src + n - 8, 8);
		x = jg_lower8(x);
		memcpy(dst + n - 8, &x, 8);
	}
}

void jg_sockaddr_set(union jg_sockaddr *dst, socklen_t *dst_len, char *ip, size_t ip_cap,
                     const struct sockaddr *src, socklen_t src_len)
{
	*dst_len = src_len < sizeof(*dst) ? src_len : (socklen_t)sizeof(*dst);
	memcpy(dst, src, *dst_len);
	if (src->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)src)->sin_addr, ip, (socklen_t)ip_cap);
	else if (src->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)src)->sin6_addr, ip, (socklen_t)ip_cap);
	else
		snprintf(ip, ip_cap, "unix");
}
