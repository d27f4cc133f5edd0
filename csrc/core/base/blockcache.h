/* blockcache.h - large storage blocks: mmap'ed, and cached on free for reuse (see .c). */
#ifndef FS_BLOCKCACHE_H
#define FS_BLOCKCACHE_H

#include <stddef.h>

/* Blocks of at least this many bytes go through the cache (smaller ones: posix_memalign). */
#define FS_BLOCK_MIN ((size_t)256 << 10)

void *fs_block_get(size_t cap);          /* cap: a multiple of the page size; NULL on failure */
void fs_block_put(void *p, size_t cap);  /* back to the cache (or to the system when full) */
void fs_block_cache_trim(size_t keep);   /* returns cached blocks beyond `keep` bytes */
size_t fs_block_cached_bytes(void);
size_t fs_block_mapped_bytes(void);  /* handed out + cached: what the cache holds mapped */
void fs_block_cache_expect(size_t bytes); /* the cache may hold this much (when > 256 MB) */

#endif
