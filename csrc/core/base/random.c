/* random.c - xoshiro256** (Blackman & Vigna) seeded through splitmix64; normals by the
 * Box-Muller transform. One default generator per thread plus user-made generators. */
#include <math.h>
#include <stdbool.h>

#include "base/random.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void fs_generator_seed(fs_generator *g, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        g->s[i] = splitmix64(&x);
    g->has_spare = 0;
    g->spare = 0.0;
}

fs_generator *fs_default_generator(void)
{
    static _Thread_local fs_generator g;
    static _Thread_local bool seeded;
    if (!seeded) {
        fs_generator_seed(&g, FS_DEFAULT_SEED);
        seeded = true;
    }
    return &g;
}

uint64_t fs_random_u64(fs_generator *g)
{
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double fs_random_uniform(fs_generator *g) { return (double)(fs_random_u64(g) >> 11) * 0x1.0p-53; }

double fs_random_normal(fs_generator *g)
{
    if (g->has_spare) {
        g->has_spare = 0;
        return g->spare;
    }
    double u1, u2;
    do
        u1 = fs_random_uniform(g);
    while (u1 <= 0.0);
    u2 = fs_random_uniform(g);
    double r = sqrt(-2.0 * log(u1));
    g->spare = r * sin(2.0 * M_PI * u2);
    g->has_spare = 1;
    return r * cos(2.0 * M_PI * u2);
}

int64_t fs_random_below(fs_generator *g, int64_t n)
{
    if (n <= 1)
        return 0;
    /* Lemire's rejection keeps the result unbiased. */
    uint64_t bound = (uint64_t)n, threshold = -bound % bound, r;
    do
        r = fs_random_u64(g);
    while (r < threshold);
    return (int64_t)(r % bound);
}
