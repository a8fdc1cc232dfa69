/* arena.h: per-request bump allocator; everything a request allocates is freed by one arena_reset(). */
#ifndef JWTGATE_ARENA_H
#define JWTGATE_ARENA_H

#include <stddef.h>

struct arena_chunk;

/* Chunks of one size kept for reuse by the arenas of one thread (a worker's), so that an arena can
 * give its memory back between requests (an idle keep-alive connection then holds none) without a
 * malloc and free per request. Bounded: past max chunks, released ones are freed. Not thread-safe. */
struct arena_cache {
	struct arena_chunk *free; /* chunks of chunk_size, ready for reuse */
	size_t n;                 /* chunks in free */
	size_t max;
	size_t chunk_size;
};

struct arena {
	struct arena_chunk *head;  /* newest chunk first */
	size_t chunk_size;         /* default size of a new chunk */
	size_t total;              /* bytes held in all chunks */
	size_t limit;              /* arena_alloc fails past this many bytes (peer-controlled input bound) */
	struct arena_cache *cache; /* where default-size chunks come from and go back to; may be NULL */
};

void arena_cache_init(struct arena_cache *ac, size_t chunk_size, size_t max);
/* Frees the cached chunks (the owning thread is done with every arena that used the cache). */
void arena_cache_free(struct arena_cache *ac);

/* Initialise an empty arena; no memory is taken until the first allocation. */
void arena_init(struct arena *a, size_t chunk_size, size_t limit);
/* The same with chunks of the cache's size taken from the cache and given back to it by arena_reset
 * and arena_free. */
void arena_init_cached(struct arena *a, struct arena_cache *cache, size_t limit);
/* Returns 8-byte aligned memory, or NULL when out of memory or past the limit. */
void *arena_alloc(struct arena *a, size_t size);
/* Copies n bytes and adds a NUL; NULL on failure. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Frees every chunk but the first, which is kept for reuse. */
void arena_reset(struct arena *a);
/* Frees everything (chunks of the cache's size go back to the cache). The arena stays usable: it
 * takes a chunk again at its next allocation. */
void arena_free(struct arena *a);

#endif
