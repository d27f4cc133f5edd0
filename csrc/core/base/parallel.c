/* parallel.c - one thread count for our OpenMP loops and OpenBLAS's GEMM.
 * Our kernels and BLAS calls never run at the same time, so both use all n threads
 * without oversubscribing the cores. */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/parallel.h"

static int num_threads;

void fs_set_num_threads(int n)
{
    if (n < 1)
        n = 1;
    num_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int fs_get_num_threads(void)
{
    if (num_threads == 0) {
#ifdef _OPENMP
        num_threads = omp_get_max_threads();
#else
        num_threads = 1;
#endif
    }
    return num_threads;
}
