/* gemm.c - row-major float32 GEMM on our OpenMP threads: C (M, N) = alpha op(A) op(B) + beta C.
 *
 * OpenBLAS runs single-threaded and the GEMM is split over the OpenMP threads by blocks of C's
 * columns (or rows when C is tall), each thread calling sgemm on its block. The result does
 * not depend on the thread count: every element of C is reduced over K by one single-threaded
 * sgemm. Why: with OpenBLAS's pthreads build, its workers (spinning with sched_yield after a
 * GEMM) and OpenMP's (spinning after a region) fought over the cores (ResNet-18's convolutions:
 * 347 ms at 2 threads against 252 ms at 1); with its OpenMP build, letting it thread the GEMMs
 * itself measured 708 ms against 139 ms with this split (same run, 2 threads). */
#include <cblas.h>
#include <stdatomic.h>

#include "base/gemm.h"
#include "base/parallel.h"

/* OpenBLAS's OpenMP build (openblas_get_parallel() == 2) shares libgomp's pool: inside one of
 * our parallel regions it runs single-threaded by itself, and setting its thread count would
 * set OpenMP's default team size too (omp_set_num_threads), so then nothing is switched. */
static bool blas_is_openmp(void)
{
    static _Atomic int kind = -1; /* atomic: threads of one process may ask at once */
    int k = atomic_load_explicit(&kind, memory_order_relaxed);
    if (k < 0) {
        k = openblas_get_parallel();
        atomic_store_explicit(&kind, k, memory_order_relaxed);
    }
    return k == 2;
}

int fs_blas_single_begin(void)
{
    if (blas_is_openmp())
        return 1;
    int saved = openblas_get_num_threads();
    if (saved != 1)
        openblas_set_num_threads(1);
    return saved;
}

void fs_blas_single_end(int saved)
{
    if (saved != 1)
        openblas_set_num_threads(saved);
}

void fs_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    int saved = fs_blas_single_begin();
    int nt = fs_get_num_threads();
    if (nt <= 1 || (double)M * N * K < 4e6 || (M < 32 && N < 32)) {
        cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                    (int)ldb, beta, C, (int)ldc);
        fs_blas_single_end(saved);
        return;
    }
    const bool split_cols = N >= M;
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        /* blocks start on multiples of 16 (a 64-byte line of floats) */
        int64_t len = split_cols ? N : M;
        int64_t b0 = (len * t / T) & ~(int64_t)15;
        int64_t b1 = t == T - 1 ? len : (len * (t + 1) / T) & ~(int64_t)15;
        if (b1 > b0) {
            if (split_cols)
                cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)(b1 - b0), (int)K, alpha, A,
                            (int)lda, tb ? B + b0 * ldb : B + b0, (int)ldb, beta, C + b0,
                            (int)ldc);
            else
                cblas_sgemm(CblasRowMajor, TA, TB, (int)(b1 - b0), (int)N, (int)K, alpha,
                            ta ? A + b0 : A + b0 * lda, (int)lda, B, (int)ldb, beta,
                            C + b0 * ldc, (int)ldc);
        }
    }
    fs_blas_single_end(saved);
}
