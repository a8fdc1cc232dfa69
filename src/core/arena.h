/* arena.h: per-request bump allocator; everything a request allocates is freed by one arena_reset(). */
#ifndef JWTGATE_ARENA_H
#define JWTGATE_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head; /* newest chunk first */
	size_t chunk_size;        /* default size of a new chunk */
	size_t total;             /* bytes held in all chunks */
	size_t limit;             /* arena_alloc fails past this many bytes (peer-controlled input bound) */
};

/* Initialise an empty arena; no memory is taken until the first allocation. */
void arena_init(struct arena *a, size_t chunk_size, size_t limit);
/* Returns 8-byte aligned memory, or NULL when out of memory or past the limit. */
void *arena_alloc(struct arena *a, size_t size);
/* Copies n bytes and adds a NUL; NULL on failure. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Frees every chunk but the first, which is kept for reuse. */
void arena_reset(struct arena *a);
/* Frees everything. */
void arena_free(struct arena *a);

#endif
