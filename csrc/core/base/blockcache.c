/* blockcache.c - storage blocks of FS_BLOCK_MIN bytes and more come from mmap and, when freed,
 * wait in a bounded cache of page ranges for the next requests.
 *
 * Why: a training step frees and re-allocates the same activation sizes every step. With
 * glibc's heap (its mmap threshold rises to 32 MB after the first free of a large block), the
 * freed blocks fragmented the heap: a ResNet-18 training loop's RSS grew by ~20 MB per step
 * while live tensor bytes stayed flat. Fresh mmap per tensor instead cost ~60% more time in
 * page faults. Reusing cached mappings gives both: no fragmentation, no repeated faults.
 *
 * The cache is a list of free page ranges (oldest first). A request takes the smallest range
 * that holds it and leaves the rest of that range cached (an anonymous mapping can be
 * unmapped, and so handed out, page range by page range); a freed block is merged with the
 * cached ranges it touches (mmap tends to place blocks next to each other). Only when no
 * cached range is large enough does a request map new pages, and then it first unmaps as
 * many cached bytes, the smallest ranges first (the last one in part): what is mapped (live
 * + cached) grows only when the blocks alive at once need it. Before, a request took a
 * cached block only of about its own size (up to 1/8 more, whose tail then stayed mapped for
 * good: the block went back with the requested size) and mapped new pages otherwise, however
 * much else was cached: PRNet at 64x64 patches, 32 pairs, had ~332 MiB of tensors live at its
 * peak and 415 MiB mapped (the blocks its backward freed waited for the next forward's sizes
 * while the backward mapped new ones for its gradients); now 333 MiB mapped. The price: a
 * request that finds the cache fragmented faults its pages in (that step, 2,000-6,000 faults
 * per step where there were ~300; at 32x32 patches ~550 where there were 0).
 * (Moving cached pages into the new block with mremap instead avoided the faults, but each
 * moved piece stayed a mapping of its own: the process's mappings grew by ~7 per step
 * towards the kernel's limit of 65,530.)
 * The cache keeps at most FS_BLOCK_CACHE_MAX bytes, or 1.5 times the most tensor bytes ever
 * live at once when that is more (fs_block_cache_expect, from memory.c); the oldest ranges go
 * back first. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "base/blockcache.h"

#define FS_BLOCK_CACHE_MAX ((size_t)256 << 20)
#define MAX_ENTRIES 1024

typedef struct { char *p; size_t cap; } entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry cache[MAX_ENTRIES]; /* oldest first */
static int ncache;
static size_t cached, mapped;
static size_t cache_max = FS_BLOCK_CACHE_MAX; /* raised by fs_block_cache_expect */

void fs_block_cache_expect(size_t bytes)
{
    pthread_mutex_lock(&lock);
    if (bytes > cache_max)
        cache_max = bytes;
    pthread_mutex_unlock(&lock);
}

static void drop(int i) /* lock held */
{
    cached -= cache[i].cap;
    memmove(&cache[i], &cache[i + 1], (size_t)(ncache - i - 1) * sizeof cache[0]);
    ncache--;
}

/* Ranges to unmap once the lock is released: at most MAX_ENTRIES + 1 of them. */
typedef struct { entry v[MAX_ENTRIES + 1]; int n; } unmap_list;

static void unmap_all(unmap_list *u)
{
    for (int i = 0; i < u->n; i++)
        munmap(u->v[i].p, u->v[i].cap);
}

static void evict(unmap_list *u, int i) /* lock held */
{
    u->v[u->n++] = cache[i];
    mapped -= cache[i].cap;
    drop(i);
}

void *fs_block_get(size_t cap)
{
    pthread_mutex_lock(&lock);
    int best = -1;
    for (int i = ncache - 1; i >= 0; i--) { /* newest first: warm in cache */
        size_t c = cache[i].cap;
        if (c == cap) {
            best = i;
            break;
        }
        if (c > cap && (best < 0 || c < cache[best].cap))
            best = i;
    }
    if (best >= 0) {
        char *p = cache[best].p;
        if (cache[best].cap == cap) {
            drop(best);
        } else { /* the rest of the range stays cached, where it was in age */
            cache[best].p += cap;
            cache[best].cap -= cap;
            cached -= cap;
        }
        pthread_mutex_unlock(&lock);
        return p;
    }
    /* None is large enough: new pages, after giving back as many cached bytes, the smallest
     * ranges first (the last one only in part) */
    unmap_list ev;
    ev.n = 0;
    size_t need = cap;
    while (need > 0 && ncache > 0) {
        int small = 0;
        for (int i = 1; i < ncache; i++)
            if (cache[i].cap < cache[small].cap)
                small = i;
        entry *e = &cache[small];
        if (e->cap <= need) {
            need -= e->cap;
            evict(&ev, small);
        } else {
            e->cap -= need;
            ev.v[ev.n++] = (entry){e->p + e->cap, need};
            cached -= need;
            mapped -= need;
            need = 0;
        }
    }
    mapped += cap;
    pthread_mutex_unlock(&lock);
    unmap_all(&ev);
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        pthread_mutex_lock(&lock);
        mapped -= cap;
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    return p;
}

void fs_block_put(void *block, size_t cap)
{
    unmap_list ev;
    ev.n = 0;
    char *p = block;
    pthread_mutex_lock(&lock);
    /* merge with the cached ranges just below and just above */
    for (int i = ncache - 1; i >= 0; i--)
        if (cache[i].p + cache[i].cap == p || p + cap == cache[i].p) {
            if (cache[i].p < p)
                p = cache[i].p;
            cap += cache[i].cap;
            drop(i);
        }
    if (cap > cache_max) {
        ev.v[ev.n++] = (entry){p, cap};
        mapped -= cap;
    } else {
        while (ncache > 0 && (ncache == MAX_ENTRIES || cached + cap > cache_max))
            evict(&ev, 0);
        cache[ncache++] = (entry){p, cap};
        cached += cap;
    }
    pthread_mutex_unlock(&lock);
    unmap_all(&ev); /* unmapping outside the lock */
}

void fs_block_cache_trim(size_t keep)
{
    for (;;) {
        pthread_mutex_lock(&lock);
        if (cached <= keep || ncache == 0) {
            pthread_mutex_unlock(&lock);
            return;
        }
        entry e = cache[0];
        drop(0);
        mapped -= e.cap;
        pthread_mutex_unlock(&lock);
        munmap(e.p, e.cap);
    }
}

size_t fs_block_cached_bytes(void)
{
    pthread_mutex_lock(&lock);
    size_t c = cached;
    pthread_mutex_unlock(&lock);
    return c;
}

size_t fs_block_mapped_bytes(void)
{
    pthread_mutex_lock(&lock);
    size_t m = mapped;
    pthread_mutex_unlock(&lock);
    return m;
}
