/* nn_internal.h - small helpers shared by the layer files (not part of the public API). */
#ifndef FS_NN_INTERNAL_H
#define FS_NN_INTERNAL_H

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/autograd.h"
#include "nn/nn.h"
#include "tensor/tensor.h"

/* A contiguous tensor with t's values and no grad_fn: an alias of t when t is already
 * contiguous (shares storage), else a copy. NULL with an error on out-of-memory. */
static inline fs_tensor *fs_nn_contig(const fs_tensor *t)
{
    return fs_is_contiguous(t) ? fs_tensor_alias(t) : fs_tensor_contiguous_copy(t);
}

/* Releases up to n tensors (NULL-safe). */
static inline void fs_nn_release_all(int n, fs_tensor **ts)
{
    for (int i = 0; i < n; i++)
        fs_tensor_release(ts[i]);
}

/* This thread's number t and the team's size T inside a parallel region (0 and 1 without
 * OpenMP). */
static inline void fs_nn_thread(int *t, int *T)
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
static inline void fs_nn_sum_thread_parts(float *dst, const float *parts, int64_t n, int T)
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

static inline const char *fs_reduction_name(fs_reduction r)
{
    return r == FS_REDUCTION_MEAN ? "mean" : r == FS_REDUCTION_SUM ? "sum" : "none";
}

#endif
