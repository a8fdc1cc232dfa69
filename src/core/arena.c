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

void arena_cache_init(struct arena_cache *ac, size_t chunk_size, size_t max)
{
	ac->free = NULL;
	ac->n = 0;
	ac->max = max;
	ac->chunk_size = chunk_size ? chunk_size : 4096;
}

void arena_cache_free(struct arena_cache *ac)
{
	struct arena_chunk *c = ac->free, *next;

	while (c != NULL) {
		next = c->next;
		free(c);
		c = next;
	}
	ac->free = NULL;
	ac->n = 0;
}

/* A chunk the arena no longer needs: back to the cache when it has the cache's size and room. */
static void arena_chunk_drop(struct arena *a, struct arena_chunk *c)
{
	struct arena_cache *ac = a->cache;

	if (ac != NULL && c->size == ac->chunk_size && ac->n < ac->max) {
		c->next = ac->free;
		ac->free = c;
		ac->n++;
		return;
	}
	free(c);
}

void arena_init(struct arena *a, size_t chunk_size, size_t limit)
{
	a->head = NULL;
	a->chunk_size = chunk_size ? chunk_size : 4096;
	a->total = 0;
	a->limit = limit;
	a->cache = NULL;
}

void arena_init_cached(struct arena *a, struct arena_cache *cache, size_t limit)
{
	arena_init(a, cache->chunk_size, limit);
	a->cache = cache;
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
		if (a->cache != NULL && a->cache->free != NULL && csize == a->cache->chunk_size) {
			c = a->cache->free;
			a->cache->free = c->next;
			a->cache->n--;
		} else {
			c = malloc(sizeof(*c) + csize);
			if (c == NULL)
				return NULL;
		}
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
		arena_chunk_drop(a, c);
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
		arena_chunk_drop(a, c);
		c = next;
	}
	a->head = NULL;
	a->total = 0;
}
