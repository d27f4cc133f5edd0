/* blockcache.c - storage blocks of FS_BLOCK_MIN bytes and more come from mmap and, when freed,
 * wait in a bounded cache for the next request of the same size (within 1/8 more).
 *
 * Why: a training step frees and re-allocates the same activation sizes every step. With
 * glibc's heap (its mmap threshold rises to 32 MB after the first free of a large block), the
 * freed blocks fragmented the heap: a ResNet-18 training loop's RSS grew by ~20 MB per step
 * while live tensor bytes stayed flat. Fresh mmap per tensor instead cost ~60% more time in
 * page faults. Reusing cached mappings gives both: no fragmentation, no repeated faults.
 * The cache keeps at most FS_BLOCK_CACHE_MAX bytes, or 1.5 times the most tensor bytes ever
 * live at once when that is more (fs_block_cache_expect, from memory.c); the oldest blocks go
 * back first. A step whose blocks outgrew the fixed cap gave back the excess after every step
 * and faulted it in again (PRNet at 64x64 patches, 32 pairs: ~330 MiB live, 436 MiB resident
 * at the peak; 36,000 faults per step and 17% of its time; a cap at 1x the live peak still
 * left 16,000, since blocks freed in backward wait for sizes asked for only in the next
 * forward; at 1.5x, 270). The peak resident size stayed the same (436 MiB): the blocks cached
 * at the peak are few under any cap. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "base/blockcache.h"

#define FS_BLOCK_CACHE_MAX ((size_t)256 << 20)
#define MAX_ENTRIES 1024

typedef struct { void *p; size_t cap; } entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry cache[MAX_ENTRIES]; /* oldest first */
static int ncache;
static size_t cached;
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
        if (c > cap && c - cap <= cap / 8 && (best < 0 || c < cache[best].cap))
            best = i;
    }
    if (best >= 0) {
        void *p = cache[best].p;
        drop(best);
        pthread_mutex_unlock(&lock);
        return p;
    }
    pthread_mutex_unlock(&lock);
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void fs_block_put(void *p, size_t cap)
{
    void *evict[MAX_ENTRIES];
    size_t evict_cap[MAX_ENTRIES];
    int nev = 0;
    pthread_mutex_lock(&lock);
    if (cap > cache_max) {
        evict[nev] = p;
        evict_cap[nev++] = cap;
    } else {
        while (ncache > 0 && (ncache == MAX_ENTRIES || cached + cap > cache_max)) {
            evict[nev] = cache[0].p;
            evict_cap[nev++] = cache[0].cap;
            drop(0);
        }
        cache[ncache++] = (entry){p, cap};
        cached += cap;
    }
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nev; i++) /* unmapping outside the lock */
        munmap(evict[i], evict_cap[i]);
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
