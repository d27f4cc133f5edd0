/* parallel.h - the thread count of our OpenMP loops and OpenBLAS (the calling thread's own:
 * parallel.c), and the helpers for a thread's place in a parallel region. */
#ifndef FS_PARALLEL_H
#define FS_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void fs_set_num_threads(int n); /* for the calling thread (OpenBLAS's: for the process) */
int fs_get_num_threads(void);
/* Flush denormal floats to zero (MXCSR FTZ + DAZ) on the calling thread and on the threads of
 * its OpenMP team, as torch.set_flush_denormal does; off by default, since it changes the
 * floating-point mode of the host's thread. Arithmetic on denormals is some 10-100x slower on
 * x86: a Prototypical Network whose loss reaches 0 backpropagates denormal gradients, and an
 * episode went from 0.27 s to 2.5 s. Returns false where unsupported (no SSE). Call it again
 * after fs_set_num_threads raises the count (new pool threads start with the default mode). */
bool fs_set_flush_denormal(bool on);  /* the calling thread's OpenMP team size */
/* Run loops in parallel only above this much work (elements). */
#define FS_PARALLEL_MIN 32768

/* This thread's number t and the team's size T inside a parallel region (0 and 1 without
 * OpenMP). */
static inline void fs_thread_team(int *t, int *T)
{
#ifdef _OPENMP
    *t = omp_get_thread_num();
    *T = omp_get_num_threads();
#else
    *t = 0;
    *T = 1;
#endif
}

/* Inside a parallel region of T threads, after each thread u > 0 has written its copy
 * parts[(u-1)*n ..] and thread 0 dst itself: dst += the copies, shared among the threads
 * (one barrier first). */
static inline void fs_sum_thread_parts(float *dst, const float *parts, int64_t n, int T)
{
    if (T <= 1)
        return;
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float acc = dst[k];
        for (int u = 1; u < T; u++)
            acc += parts[(u - 1) * n + k];
        dst[k] = acc;
    }
}

#endif
