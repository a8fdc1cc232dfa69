/* arena.c: per-request bump allocator (h2o mem_pool style): one reset frees a whole request. */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t size; /* usable bytes in data */
	size_t used;
	_Alignas(16) unsigned char data[];
};

void arena_init(struct arena *a, size_t chunk_size, size_t limit)
{
	a->head = NULL;
	a->chunk_size = chunk_size ? chunk_size : 4096;
	a->total = 0;
	a->limit = limit;
}

void *arena_alloc(struct arena *a, size_t size)
{
	struct arena_chunk *c = a->head;
	size_t need = (size + 7u) & ~(size_t)7u;
	void *p;

	if (need < size)
		return NULL;
	if (c == NULL || c->size - c->used < need) {
		size_t csize = need > a->chunk_size ? need : a->chunk_size;

		if (a->limit && a->total + csize > a->limit)
			return NULL;
		c = malloc(sizeof(*c) + csize);
		if (c == NULL)
			return NULL;
		c->size = csize;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->total += csize;
	}
	p = c->data + c->used;
	c->used += need;
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void arena_reset(struct arena *a)
{
	struct arena_chunk *c = a->head, *next;

	if (c == NULL)
		return;
	/* Keep the oldest chunk (usually the default size) for reuse; free the rest. */
	while (c->next != NULL) {
		next = c->next;
		a->total -= c->size;
		free(c);
		c = next;
	}
	c->used = 0;
	a->head = c;
}

void arena_free(struct arena *a)
{
	struct arena_chunk *c = a->head, *next;

	while (c != NULL) {
		next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->total = 0;
}
