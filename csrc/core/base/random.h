/* random.h - seeded random numbers: xoshiro256** seeded through splitmix64. */
#ifndef FS_RANDOM_H
#define FS_RANDOM_H

#include <stdint.h>

typedef struct fs_generator { uint64_t s[4]; int has_spare; double spare; } fs_generator;
#define FS_DEFAULT_SEED 0x5eedULL /* a default generator's seed until manual_seed */
void fs_generator_seed(fs_generator *g, uint64_t seed);
/* The calling thread's default generator (seeded FS_DEFAULT_SEED on first use), taken where a
 * core function is passed g == NULL. One per thread, so C threads never share one; the Lua
 * binding never passes NULL: each Lua state has its own (fs_lua_default_generator). */
fs_generator *fs_default_generator(void);
uint64_t fs_random_u64(fs_generator *g);
double fs_random_uniform(fs_generator *g);      /* [0, 1) */
double fs_random_normal(fs_generator *g);       /* N(0, 1) */
int64_t fs_random_below(fs_generator *g, int64_t n); /* uniform in [0, n) */

#endif
