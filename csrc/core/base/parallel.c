/* parallel.c - the thread count for our OpenMP loops and OpenBLAS's GEMM.
 * Our kernels and BLAS calls never run at the same time, so both use all n threads
 * without oversubscribing the cores.
 *
 * The count is the calling thread's own: OpenMP's nthreads ICV, which is per thread (a host
 * running Lua states in several threads sets each one's count apart). fs_get_num_threads reads
 * that ICV, so it always agrees with the team size our parallel regions get. OpenBLAS's count
 * is one per process (with its OpenMP build it follows the caller's ICV on each call; gemm.c
 * runs its GEMMs single-threaded inside our own regions anyway). */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/parallel.h"

void fs_set_num_threads(int n)
{
    if (n < 1)
        n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int fs_get_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6). */
#define FS_MXCSR_FTZ_DAZ 0x8040u

static void set_flush(bool on)
{
#if defined(__SSE__)
    unsigned csr = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(on ? csr | FS_MXCSR_FTZ_DAZ : csr & ~FS_MXCSR_FTZ_DAZ);
#else
    (void)on;
#endif
}

bool fs_set_flush_denormal(bool on)
{
#if defined(__SSE__)
    set_flush(on);
#ifdef _OPENMP
    /* the pool's other threads keep their own MXCSR: set it in each (team of the current size) */
#pragma omp parallel
    set_flush(on);
#endif
    return true;
#else
    (void)on;
    return false;
#endif
}
