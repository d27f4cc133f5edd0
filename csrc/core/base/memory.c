/* memory.c - aligned allocation for tensor storage, with live and total byte counts. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/blockcache.h"
#include "base/error.h"
#include "base/memory.h"

static _Atomic int64_t bytes_total, bytes_live, bytes_live_peak;

int64_t fs_bytes_allocated_total(void) { return atomic_load(&bytes_total); }
int64_t fs_bytes_live(void) { return atomic_load(&bytes_live); }

/* A 64-byte header in front of each block keeps its size for the live-bytes count, and the
 * mapping's capacity for blocks from the block cache (blockcache.c; 0 for malloc'ed ones). */
void *fs_alloc(size_t bytes)
{
    void *p = NULL;
    size_t cap = 0;
    if (bytes > SIZE_MAX - 8192) {
        p = NULL;
    } else if (bytes + 64 >= FS_BLOCK_MIN) {
        cap = (bytes + 64 + 4095) & ~(size_t)4095;
        p = fs_block_get(cap);
    } else if (posix_memalign(&p, 64, bytes + 64) != 0) {
        p = NULL;
    }
    if (!p) {
        fs_set_error("out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    ((size_t *)p)[0] = bytes;
    ((size_t *)p)[1] = cap;
    atomic_fetch_add(&bytes_total, (int64_t)bytes);
    int64_t live = atomic_fetch_add(&bytes_live, (int64_t)bytes) + (int64_t)bytes;
    int64_t peak = atomic_load(&bytes_live_peak);
    while (live > peak && !atomic_compare_exchange_weak(&bytes_live_peak, &peak, live))
        ;
    /* a new high-water mark: the block cache may keep 1.5 times that much (freed blocks whose
     * sizes the next step asks for only later, blockcache.c) */
    if (live > peak && cap)
        fs_block_cache_expect((size_t)(live + live / 2));
    return (char *)p + 64;
}

void fs_free(void *p)
{
    if (!p)
        return;
    size_t *base = (size_t *)((char *)p - 64);
    atomic_fetch_sub(&bytes_live, (int64_t)base[0]);
    if (base[1])
        fs_block_put(base, base[1]);
    else
        free(base);
}
