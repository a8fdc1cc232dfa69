/* pagepool.h: page-aligned slots of one size whose pages can be handed back to the kernel while the
 * slot stays allocated (issue 13, memory per idle connection).
 *
 * A connection that waits between requests keeps buffers whose contents are dead or all zero (an
 * HTTP/2 session's outbound frame buffer, its empty stream table). On the heap those bytes share
 * pages with live objects and stay resident; in a slot they own their pages, and
 * pagepool_release() gives the pages back (madvise MADV_DONTNEED: they read as zero and are faulted
 * in again at the next write). The caller decides when: after the connection has been idle a while,
 * not per request (a page fault per request would cost request rate).
 *
 * One mapping per pool, reserved once with MAP_NORESERVE (untouched slots cost address space only,
 * and the process keeps one mapping, not one per connection: vm.max_map_count). Bounded: at most
 * n_slots slots; pagepool_get returns NULL past that and the caller falls back to malloc. Free slots
 * are reused last-in first-out; past warm_max of them, a slot put back is released first, so a burst
 * of connections that closed leaves no resident memory behind. Not thread-safe: one pool per worker. */
#ifndef JWTGATE_PAGEPOOL_H
#define JWTGATE_PAGEPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pagepool {
	unsigned char *base; /* the reservation: n_slots * slot_size bytes; NULL: pool off */
	size_t slot_size;    /* a multiple of the page size */
	uint32_t n_slots;
	uint32_t n_fresh; /* slots [n_fresh, n_slots) were never handed out (untouched) */
	uint32_t *free;   /* stack of free slots: index << 1 | 1 when its pages were released */
	uint32_t n_free;
	uint32_t n_warm; /* free slots whose pages were not released */
	uint32_t warm_max;
	uint32_t n_out; /* slots handed out */
};

/* Reserves n_slots slots of slot_size bytes (rounded up to pages). Returns 0, JG_ERR_INVAL for a
 * zero size or count, or JG_ERR_NOMEM when the reservation is refused (the pool stays off: every
 * pagepool_get returns NULL). */
int pagepool_init(struct pagepool *p, size_t slot_size, uint32_t n_slots, uint32_t warm_max);
/* Unmaps the pool; every slot must have been put back (or its owner be gone with the process). */
void pagepool_fini(struct pagepool *p);
/* A slot of p->slot_size bytes, page-aligned; its contents are unspecified (zero when fresh or
 * released, the last owner's bytes when warm). NULL when the pool is off or every slot is out. */
void *pagepool_get(struct pagepool *p);
/* Gives back a slot from pagepool_get. */
void pagepool_put(struct pagepool *p, void *slot);
/* True when ptr points into the pool's reservation. */
static inline bool pagepool_owns(const struct pagepool *p, const void *ptr)
{
	const unsigned char *c = ptr;

	return p->base != NULL && c >= p->base && c < p->base + (size_t)p->n_slots * p->slot_size;
}
/* Returns the physical pages of [addr, addr + len) to the kernel; the range must lie in a slot that
 * is out, addr and len page-aligned. Afterwards the range reads as zero. Returns 0 or -errno. */
int pagepool_release(struct pagepool *p, void *addr, size_t len);
/* True when len bytes at addr are all zero (len a multiple of 8, addr 8-byte aligned): a range whose
 * contents are zero can be released without its owner noticing. */
bool pagepool_is_zero(const void *addr, size_t len);

#endif
