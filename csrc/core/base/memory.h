/* memory.h - aligned allocation with live/total byte counts (large blocks go through the
 * block cache, blockcache.h). The binding reports the growth to Lua's collector. */
#ifndef FS_MEMORY_H
#define FS_MEMORY_H

#include <stddef.h>
#include <stdint.h>

void *fs_alloc(size_t bytes);        /* aligned; sets "out of memory" on failure */
void fs_free(void *p);
/* Bytes ever allocated for storage (monotonic): the binding reports growth to Lua's GC. */
int64_t fs_bytes_allocated_total(void);
int64_t fs_bytes_live(void);

#endif
