/* nn_internal.h - small helpers shared by the layer files (not part of the public API). */
#ifndef FS_NN_INTERNAL_H
#define FS_NN_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "base/gemm.h"
#include "base/parallel.h"
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

static inline const char *fs_reduction_name(fs_reduction r)
{
    return r == FS_REDUCTION_MEAN ? "mean" : r == FS_REDUCTION_SUM ? "sum" : "none";
}

#endif
