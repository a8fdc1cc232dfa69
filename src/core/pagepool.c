/* pagepool.c: page-aligned slots whose pages go back to the kernel while idle (see pagepool.h). */
#include "core/pagepool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/common.h"

static size_t pagepool_page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (size_t)ps : 4096;
}

int pagepool_init(struct pagepool *p, size_t slot_size, uint32_t n_slots, uint32_t warm_max)
{
	size_t ps = pagepool_page_size();
	void *base;

	memset(p, 0, sizeof(*p));
	if (slot_size == 0 || n_slots == 0)
		return JG_ERR_INVAL;
	slot_size = (slot_size + ps - 1) / ps * ps;
	if (n_slots > SIZE_MAX / slot_size || n_slots > UINT32_MAX >> 1)
		return JG_ERR_INVAL;
	/* MAP_NORESERVE: address space, not memory; pages come into existence when first written. */
	base = mmap(NULL, (size_t)n_slots * slot_size, PROT_READ | PROT_WRITE,
	            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return JG_ERR_NOMEM;
	/* The free stack only grows as far as slots were put back; malloc of a large block is an mmap
	 * too, so its untouched tail is not resident either. */
	p->free = malloc((size_t)n_slots * sizeof(*p->free));
	if (p->free == NULL) {
		munmap(base, (size_t)n_slots * slot_size);
		return JG_ERR_NOMEM;
	}
	p->base = base;
	p->slot_size = slot_size;
	p->n_slots = n_slots;
	p->warm_max = warm_max;
	return 0;
}

void pagepool_fini(struct pagepool *p)
{
	if (p->base != NULL)
		munmap(p->base, (size_t)p->n_slots * p->slot_size);
	free(p->free);
	memset(p, 0, sizeof(*p));
}

void *pagepool_get(struct pagepool *p)
{
	uint32_t e;

	if (p->base == NULL)
		return NULL;
	if (p->n_free > 0) {
		e = p->free[--p->n_free];
		if (!(e & 1))
			p->n_warm--;
		p->n_out++;
		return p->base + (size_t)(e >> 1) * p->slot_size;
	}
	if (p->n_fresh == p->n_slots)
		return NULL;
	p->n_out++;
	return p->base + (size_t)p->n_fresh++ * p->slot_size;
}

void pagepool_put(struct pagepool *p, void *slot)
{
	uint32_t i = (uint32_t)(((unsigned char *)slot - p->base) / p->slot_size);
	uint32_t released = 0;

	if (p->n_warm >= p->warm_max && pagepool_release(p, slot, p->slot_size) == 0)
		released = 1;
	else
		p->n_warm++;
	p->free[p->n_free++] = i << 1 | released;
	p->n_out--;
}

int pagepool_release(struct pagepool *p, void *addr, size_t len)
{
	(void)p;
	/* Private anonymous memory: the pages are dropped, and read back as zero-filled pages. The
	 * mapping is not split (no vm.max_map_count cost). */
	if (len == 0)
		return 0;
	return madvise(addr, len, MADV_DONTNEED) == -1 ? -errno : 0;
}

bool pagepool_is_zero(const void *addr, size_t len)
{
	const uint64_t *w = addr;
	uint64_t acc = 0;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		acc |= w[i];
	return acc == 0;
}
