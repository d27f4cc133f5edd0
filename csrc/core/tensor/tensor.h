/* tensor.h - the fewshot tensor: float32 storage (refcounted) seen through a strided view.
 *
 * A tensor is storage + offset + ndim + size[] + stride[] (strides in elements). Views
 * (view, permute, narrow, select, expand, ...) share storage. Sizes and indices are 0-based
 * in C; the Lua binding converts at the boundary.
 *
 * Errors: functions that can fail return NULL (or -1) and leave a message naming the op and
 * the shapes in fs_error(); nothing here aborts the process.
 *
 * Ownership: every function returning fs_tensor* returns a new reference that the caller
 * releases with fs_tensor_release. Arguments are borrowed.
 */
#ifndef FS_TENSOR_H
#define FS_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/memory.h"
#include "base/random.h"

#define FS_MAX_DIM 8

typedef struct fs_storage {
    float *data;       /* 64-byte aligned */
    int64_t numel;
    int refcount;
} fs_storage;

typedef struct fs_node fs_node; /* autograd.h */

typedef struct fs_tensor {
    int refcount;
    fs_storage *storage;
    int64_t offset;                 /* in elements */
    int ndim;                       /* 0 for a scalar */
    int64_t size[FS_MAX_DIM];
    int64_t stride[FS_MAX_DIM];
    bool requires_grad;
    struct fs_tensor *grad;         /* accumulated gradient of a leaf, or NULL */
    fs_node *grad_fn;               /* node that produced this tensor, NULL for a leaf */
} fs_tensor;

/* The tape node that produced a tensor belongs to the area above (autograd/). That area
 * installs, at load time, how a tensor drops its reference to the node and the node's name
 * for printing, so this area needs nothing of autograd's. Both are NULL until then, when no
 * tensor can have a grad_fn. */
typedef struct fs_node_hooks {
    void (*release)(fs_node *n);
    const char *(*name)(const fs_node *n);
} fs_node_hooks;
extern fs_node_hooks fs_node_hooks_installed;

#define FS_SHAPE(t) fs_shape_str((t)->ndim, (t)->size)

/* ---- creation ---- */
fs_tensor *fs_tensor_new(int ndim, const int64_t *size);   /* contiguous, uninitialised */
fs_tensor *fs_tensor_zeros(int ndim, const int64_t *size);
fs_tensor *fs_tensor_full(int ndim, const int64_t *size, float value);
fs_tensor *fs_tensor_scalar(float value);                     /* 0-d */
fs_tensor *fs_tensor_from_data(int ndim, const int64_t *size, const float *data); /* copies */
fs_tensor *fs_tensor_arange(double start, double end, double step);
fs_tensor *fs_tensor_retain(fs_tensor *t);
void fs_tensor_release(fs_tensor *t); /* NULL-safe; frees grad, grad_fn, storage when last */

/* ---- inspection ---- */
int64_t fs_numel(const fs_tensor *t);
/* The product of the sizes, saturating at INT64_MAX (never overflows). */
int64_t fs_shape_numel(int ndim, const int64_t *size);
/* 0, or -1 with "op: ..." when a size is negative, ndim is out of range, or the shape has more
 * than FS_MAX_NUMEL elements (so that every byte count of it fits int64_t and size_t).
 * Every shape from Lua, from a file header or from a layer's size arithmetic passes here
 * before anything is allocated for it. */
int fs_shape_check(const char *op, int ndim, const int64_t *size);
#define FS_MAX_NUMEL ((int64_t)1 << 60)
bool fs_is_contiguous(const fs_tensor *t);
bool fs_same_shape(const fs_tensor *a, const fs_tensor *b);
static inline float *fs_data(const fs_tensor *t) { return t->storage->data + t->offset; }
/* Element at a 0-based multi-index (no bounds check). */
float *fs_at(const fs_tensor *t, const int64_t *index);
/* Copies the elements in row-major order into out (numel floats). */
void fs_tensor_read(const fs_tensor *t, float *out);

/* ---- copies (no autograd) ---- */
fs_tensor *fs_tensor_contiguous_copy(const fs_tensor *t);    /* always a new storage */
/* dst and src of the same shape (src may broadcast); dst may be any view. */
int fs_tensor_copy_(fs_tensor *dst, const fs_tensor *src);
int fs_tensor_fill_(fs_tensor *t, float value);
/* dst += src elementwise, same shape. */
int fs_tensor_add_(fs_tensor *dst, const fs_tensor *src);
/* A new header on the same storage, no grad_fn, requires_grad false. */
fs_tensor *fs_tensor_alias(const fs_tensor *t);
/* A new header with t's shape, strides and offset but no storage (and no grad_fn): the tape's
 * record of an input whose values it does not keep. Never read its data. */
fs_tensor *fs_tensor_shape_only(const fs_tensor *t);

/* ---- raw views (no autograd; the differentiable versions are in shape.h) ---- */
fs_tensor *fs_view_raw(const fs_tensor *t, int ndim, const int64_t *size); /* -1 allowed once */
fs_tensor *fs_permute_raw(const fs_tensor *t, const int *perm);
fs_tensor *fs_narrow_raw(const fs_tensor *t, int dim, int64_t start, int64_t len);
fs_tensor *fs_select_raw(const fs_tensor *t, int dim, int64_t index);
fs_tensor *fs_expand_raw(const fs_tensor *t, int ndim, const int64_t *size);
fs_tensor *fs_unsqueeze_raw(const fs_tensor *t, int dim);
fs_tensor *fs_squeeze_raw(const fs_tensor *t, int dim); /* dim -1: all size-1 dims */

/* Broadcast two shapes NumPy-style; returns -1 with a message naming op on mismatch. */
int fs_broadcast_shape(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                       int *nout, int64_t *out);

/* ---- random fills (tensor_random.c): sequential in row-major order, so a seed gives the
 * same values at any thread count; g NULL means the default generator ---- */
int fs_tensor_uniform_(fs_tensor *t, fs_generator *g, float lo, float hi);
int fs_tensor_normal_(fs_tensor *t, fs_generator *g, float mean, float std);

/* ---- printing (print.c) ---- */
/* A malloc'ed string like PyTorch's: "tensor([[1., 2.],\n        [3., 4.]])". */
char *fs_tensor_format(const fs_tensor *t);

#endif
