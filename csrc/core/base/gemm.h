/* gemm.h - float32 GEMM through OpenBLAS, split over our OpenMP threads (gemm.c says why). */
#ifndef FS_GEMM_H
#define FS_GEMM_H

#include <stdbool.h>
#include <stdint.h>

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; OpenBLAS single-threaded, the work split
 * over the OpenMP threads (see gemm.c for why). Same result for any thread count. */
void fs_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Around code that calls cblas_* from inside OpenMP threads: OpenBLAS single-threaded. */
int fs_blas_single_begin(void);          /* returns the previous OpenBLAS thread count */
void fs_blas_single_end(int saved);

#endif
