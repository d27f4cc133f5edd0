/* test_blockcache.c - the block cache (blockcache.c) hands out page ranges that never overlap,
 * splits a larger cached range for a smaller request, and maps new pages only after giving
 * back as many cached bytes: what it holds mapped (handed out + cached) never exceeds the
 * most bytes handed out at once. A seeded random sequence of gets and puts of multiples of
 * 64 KiB (256 KiB .. 8 MiB) checks this after every call, and each block's pattern when it
 * is put back (an overlap would have overwritten it). */
#include <stdint.h>
#include <string.h>

#include "base/blockcache.h"
#include "check.h"

#define MiB ((size_t)1 << 20)
#define SLOTS 24

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* one word per page, so a check reads few bytes */
static void fill(unsigned char *p, size_t cap, uint64_t tag)
{
    for (size_t o = 0; o < cap; o += 4096)
        memcpy(p + o, &(uint64_t){tag ^ o}, 8);
}

static bool intact(const unsigned char *p, size_t cap, uint64_t tag)
{
    for (size_t o = 0; o < cap; o += 4096) {
        uint64_t v;
        memcpy(&v, p + o, 8);
        if (v != (tag ^ o))
            return false;
    }
    return true;
}

int main(void)
{
    fs_block_cache_trim(0);
    const size_t base = fs_block_mapped_bytes(); /* 0: nothing else here maps blocks */

    /* a split: 2 MiB from a cached 8 MiB range maps nothing new */
    unsigned char *a = fs_block_get(8 * MiB);
    CHECK(a != NULL, "get 8 MiB");
    fs_block_put(a, 8 * MiB);
    unsigned char *b = fs_block_get(2 * MiB);
    CHECK(b != NULL, "get 2 MiB");
    CHECK_INT((int64_t)(fs_block_mapped_bytes() - base), (int64_t)(8 * MiB),
              "2 MiB out of a cached 8 MiB range: 8 MiB mapped");
    CHECK_INT((int64_t)fs_block_cached_bytes(), (int64_t)(6 * MiB), "the other 6 MiB cached");
    /* a miss: 16 MiB with 6 MiB cached gives those back first */
    unsigned char *c = fs_block_get(16 * MiB);
    CHECK(c != NULL, "get 16 MiB");
    CHECK_INT((int64_t)(fs_block_mapped_bytes() - base), (int64_t)(18 * MiB),
              "16 MiB more with 6 MiB cached: 2 + 16 MiB mapped");
    CHECK_INT((int64_t)fs_block_cached_bytes(), 0, "nothing left cached");
    fs_block_put(b, 2 * MiB);
    fs_block_put(c, 16 * MiB);
    fs_block_cache_trim(0);
    CHECK_INT((int64_t)(fs_block_mapped_bytes() - base), 0, "trim(0) unmaps everything");

    /* random gets and puts */
    unsigned char *blk[SLOTS] = {0};
    size_t cap[SLOTS] = {0}, out = 0, out_peak = 0;
    bool disjoint = true, bounded = true, counted = true;
    for (int step = 0; step < 20000; step++) {
        int s = (int)(next() % SLOTS);
        if (blk[s]) {
            disjoint = disjoint && intact(blk[s], cap[s], (uint64_t)s * 0x9e3779b97f4a7c15ull);
            fs_block_put(blk[s], cap[s]);
            out -= cap[s];
            blk[s] = NULL;
        } else {
            cap[s] = (size_t)(4 + next() % 125) * 65536; /* 256 KiB .. 8 MiB */
            blk[s] = fs_block_get(cap[s]);
            if (!blk[s])
                break;
            fill(blk[s], cap[s], (uint64_t)s * 0x9e3779b97f4a7c15ull);
            out += cap[s];
            if (out > out_peak)
                out_peak = out;
        }
        size_t mapped = fs_block_mapped_bytes() - base;
        counted = counted && mapped == out + fs_block_cached_bytes();
        bounded = bounded && mapped <= out_peak;
    }
    CHECK(disjoint, "20000 random gets and puts: every block kept its pattern (no overlaps)");
    CHECK(counted, "mapped bytes = handed out + cached after every call");
    CHECK(bounded, "mapped bytes never exceeded the most handed out at once (%zu MiB)",
          out_peak / MiB);
    for (int s = 0; s < SLOTS; s++)
        if (blk[s])
            fs_block_put(blk[s], cap[s]);
    fs_block_cache_trim(0);
    CHECK_INT((int64_t)(fs_block_mapped_bytes() - base), 0, "all put back and trimmed: 0 mapped");
    return check_done();
}
