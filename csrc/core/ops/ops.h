/* ops.h - differentiable tensor operations (each records a tape node when an input requires
 * grad and grad mode is on). Every op accepts non-contiguous views and returns a new
 * reference, or NULL with fs_error() naming the op and the shapes.
 *
 * Dims are 0-based here; negative dims count from the end where noted.
 */
#ifndef FS_OPS_H
#define FS_OPS_H

#include "tensor/tensor.h"

/* ---- elementwise (elementwise.c); binary ops broadcast NumPy-style ---- */
typedef enum {
    FS_ADD, FS_SUB, FS_MUL, FS_DIV, FS_POW,
    FS_EQ, FS_NE, FS_LT, FS_LE, FS_GT, FS_GE,   /* 0/1 results, not differentiable */
    FS_MAXIMUM, FS_MINIMUM
} fs_binary_op;

typedef enum {
    FS_NEG, FS_EXP, FS_LOG, FS_SQRT, FS_ABS, FS_RELU, FS_SIGMOID, FS_TANH
} fs_unary_op;

fs_tensor *fs_binary(fs_binary_op op, fs_tensor *a, fs_tensor *b);
fs_tensor *fs_binary_scalar(fs_binary_op op, fs_tensor *a, float s, bool scalar_first);
fs_tensor *fs_unary(fs_unary_op op, fs_tensor *a);
fs_tensor *fs_clamp(fs_tensor *a, float lo, float hi); /* use -INFINITY/INFINITY for none */
fs_tensor *fs_where(fs_tensor *cond, fs_tensor *a, fs_tensor *b); /* cond != 0 ? a : b */
const char *fs_binary_name(fs_binary_op op);
const char *fs_unary_name(fs_unary_op op);

/* ---- reductions (reduce.c); dim FS_ALL_DIMS reduces all elements, negative dims count from the end ---- */
fs_tensor *fs_sum(fs_tensor *a, int dim, bool keepdim);     /* dim = FS_ALL_DIMS for all */
fs_tensor *fs_mean(fs_tensor *a, int dim, bool keepdim);
fs_tensor *fs_var(fs_tensor *a, int dim, bool keepdim, bool unbiased);
/* Max/min over a dim: values (differentiable); the 0-based indices come back, when asked,
 * as an int64 array of one entry per output element that the caller frees with fs_free. */
fs_tensor *fs_max_dim(fs_tensor *a, int dim, bool keepdim, bool is_min, int64_t **indices);
fs_tensor *fs_max_all(fs_tensor *a, bool is_min, int64_t *flat_index);
/* Bounding box of the nonzero elements of m: (H, W): box = 0-based inclusive {row0, col0, row1,
 * col1}; 1 when found, 0 for an all-zero mask, -1 when m is not 2D (reduce.c). */
int fs_mask_bbox(const fs_tensor *m, int64_t box[4]);
#define FS_ALL_DIMS (-100)

/* ---- linear algebra (matmul.c) ---- */
/* torch.matmul semantics: 1-D and 2-D operands, batched with broadcast batch dims. */
fs_tensor *fs_matmul(fs_tensor *a, fs_tensor *b);

/* ---- shape ops with autograd (shape.c) ---- */
fs_tensor *fs_view(fs_tensor *a, int ndim, const int64_t *size);   /* -1 allowed once */
fs_tensor *fs_reshape(fs_tensor *a, int ndim, const int64_t *size); /* copies if needed */
fs_tensor *fs_permute(fs_tensor *a, const int *perm);
fs_tensor *fs_transpose(fs_tensor *a, int d0, int d1);
fs_tensor *fs_narrow(fs_tensor *a, int dim, int64_t start, int64_t len);
fs_tensor *fs_select(fs_tensor *a, int dim, int64_t index);
fs_tensor *fs_unsqueeze(fs_tensor *a, int dim);
fs_tensor *fs_squeeze(fs_tensor *a, int dim);   /* dim -1: all size-1 dims */
fs_tensor *fs_expand(fs_tensor *a, int ndim, const int64_t *size); /* -1 keeps a size */
fs_tensor *fs_contiguous(fs_tensor *a);  /* the same tensor (retained) when already contiguous */
fs_tensor *fs_clone(fs_tensor *a);
fs_tensor *fs_cat(int n, fs_tensor *const *ts, int dim);
fs_tensor *fs_stack(int n, fs_tensor *const *ts, int dim);
fs_tensor *fs_index_select(fs_tensor *a, int dim, int n, const int64_t *index); /* 0-based */

#endif
