/* shape.c - differentiable views (view, reshape, permute, transpose, narrow, select, unsqueeze,
 * squeeze, expand), contiguous/clone, cat, stack and index_select.
 *
 * A view's backward re-applies the same view to a zero tensor of the input's shape and copies
 * dout into it: the zeros then hold the gradient. Expand sums instead (its stride-0 dims would
 * overwrite). */
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "ops/ops.h"

typedef enum { V_VIEW, V_PERMUTE, V_NARROW, V_SELECT, V_EXPAND } view_kind;

/* A view node's context: the kind and its parameters (permute: the permutation; narrow: dim,
 * start, length; select: dim, index; view and expand: none, the shapes say it all). */
typedef struct { view_kind kind; int64_t p[FS_MAX_DIM]; } view_ctx;

static fs_tensor *apply_view(const fs_node *n, const fs_tensor *t)
{
    const view_ctx *c = n->ctx;
    switch (c->kind) {
    case V_VIEW: return fs_view_raw(t, n->out_ndim, n->out_size);
    case V_PERMUTE: {
        int perm[FS_MAX_DIM];
        for (int d = 0; d < t->ndim; d++)
            perm[d] = (int)c->p[d];
        return fs_permute_raw(t, perm);
    }
    case V_NARROW: return fs_narrow_raw(t, (int)c->p[0], c->p[1], c->p[2]);
    case V_SELECT: return fs_select_raw(t, (int)c->p[0], c->p[1]);
    case V_EXPAND: break;
    }
    return NULL;
}

static int view_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    fs_tensor *a = n->inputs[0];
    if (((const view_ctx *)n->ctx)->kind == V_EXPAND)
        return (din[0] = fs_sum_to_shape(dout, a->ndim, a->size)) ? 0 : -1;
    fs_tensor *z = fs_tensor_zeros(a->ndim, a->size);
    fs_tensor *zv = z ? apply_view(n, z) : NULL;
    int rc = zv ? fs_tensor_copy_(zv, dout) : -1;
    fs_tensor_release(zv);
    if (rc < 0) {
        fs_tensor_release(z);
        return -1;
    }
    din[0] = z;
    return 0;
}

/* Records a view node for out = view(a) with its nparams (<= FS_MAX_DIM) parameters. */
static fs_tensor *record_view(fs_tensor *a, fs_tensor *out, const char *name, view_kind kind,
                              const int64_t *params, int nparams)
{
    if (!out || !fs_any_requires_grad(1, &a))
        return out;
    view_ctx c = {kind, {0}};
    for (int k = 0; k < nparams; k++)
        c.p[k] = params[k];
    fs_node *n = fs_node_new_ctx(name, view_backward, 1, &a, &c, sizeof c);
    if (!n) {
        fs_tensor_release(out);
        return NULL;
    }
    fs_node_attach(n, out);
    return out;
}

fs_tensor *fs_view(fs_tensor *a, int ndim, const int64_t *size)
{
    return record_view(a, fs_view_raw(a, ndim, size), "view", V_VIEW, NULL, 0);
}

fs_tensor *fs_reshape(fs_tensor *a, int ndim, const int64_t *size)
{
    if (fs_is_contiguous(a))
        return record_view(a, fs_view_raw(a, ndim, size), "reshape", V_VIEW, NULL, 0);
    fs_tensor *c = fs_contiguous(a);
    if (!c)
        return NULL;
    fs_tensor *out = record_view(c, fs_view_raw(c, ndim, size), "reshape", V_VIEW, NULL, 0);
    fs_tensor_release(c);
    if (!out && strstr(fs_error(), "view:") == fs_error())
        fs_set_error("reshape: shape %s is invalid for a tensor of shape %s",
                     fs_shape_str(ndim, size), FS_SHAPE(a));
    return out;
}

fs_tensor *fs_permute(fs_tensor *a, const int *perm)
{
    int64_t p[FS_MAX_DIM];
    for (int d = 0; d < a->ndim; d++)
        p[d] = perm[d];
    return record_view(a, fs_permute_raw(a, perm), "permute", V_PERMUTE, p, a->ndim);
}

fs_tensor *fs_transpose(fs_tensor *a, int d0, int d1)
{
    if (d0 < 0)
        d0 += a->ndim;
    if (d1 < 0)
        d1 += a->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= a->ndim || d1 >= a->ndim) {
        fs_set_error("transpose: dims out of range for a tensor of shape %s", FS_SHAPE(a));
        return NULL;
    }
    int perm[FS_MAX_DIM];
    for (int d = 0; d < a->ndim; d++)
        perm[d] = d;
    perm[d0] = d1;
    perm[d1] = d0;
    return fs_permute(a, perm);
}

fs_tensor *fs_narrow(fs_tensor *a, int dim, int64_t start, int64_t len)
{
    fs_tensor *out = fs_narrow_raw(a, dim, start, len);
    int64_t p[3] = {dim < 0 ? dim + a->ndim : dim, start, len};
    return record_view(a, out, "narrow", V_NARROW, p, 3);
}

fs_tensor *fs_select(fs_tensor *a, int dim, int64_t index)
{
    fs_tensor *out = fs_select_raw(a, dim, index);
    int64_t p[2] = {dim < 0 ? dim + a->ndim : dim, index};
    return record_view(a, out, "select", V_SELECT, p, 2);
}

/* unsqueeze/squeeze are views whose backward is a reshape back to the input's shape. */
fs_tensor *fs_unsqueeze(fs_tensor *a, int dim)
{
    return record_view(a, fs_unsqueeze_raw(a, dim), "unsqueeze", V_VIEW, NULL, 0);
}

fs_tensor *fs_squeeze(fs_tensor *a, int dim)
{
    return record_view(a, fs_squeeze_raw(a, dim), "squeeze", V_VIEW, NULL, 0);
}

fs_tensor *fs_expand(fs_tensor *a, int ndim, const int64_t *size)
{
    return record_view(a, fs_expand_raw(a, ndim, size), "expand", V_EXPAND, NULL, 0);
}

/* Identity backward for copies. */
static int copy_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    (void)n;
    return (din[0] = fs_tensor_contiguous_copy(dout)) ? 0 : -1;
}

fs_tensor *fs_clone(fs_tensor *a)
{
    fs_tensor *out = fs_tensor_contiguous_copy(a);
    if (!out)
        return NULL;
    fs_node *n = fs_node_maybe_new("clone", copy_backward, 1, &a);
    if (n)
        fs_node_attach(n, out);
    return out;
}

fs_tensor *fs_contiguous(fs_tensor *a)
{
    return fs_is_contiguous(a) ? fs_tensor_retain(a) : fs_clone(a);
}

/* ---- cat / stack ---- */

/* The node's context: the dim the inputs were joined along. */
typedef struct { int dim; } cat_ctx;

static int cat_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    int dim = ((const cat_ctx *)n->ctx)->dim;
    int64_t start = 0;
    for (int k = 0; k < n->ninputs; k++) {
        int64_t len = n->inputs[k]->size[dim];
        if (fs_node_wants(n, k)) {
            fs_tensor *v = fs_narrow_raw(dout, dim, start, len);
            din[k] = v ? fs_tensor_contiguous_copy(v) : NULL;
            fs_tensor_release(v);
            if (!din[k])
                return -1;
        }
        start += len;
    }
    return 0;
}

fs_tensor *fs_cat(int n, fs_tensor *const *ts, int dim)
{
    if (n < 1) {
        fs_set_error("cat: expected a non-empty list of tensors");
        return NULL;
    }
    const fs_tensor *t0 = ts[0];
    if (t0->ndim == 0) {
        fs_set_error("cat: zero-dimensional tensors cannot be concatenated (use stack)");
        return NULL;
    }
    if (dim < 0)
        dim += t0->ndim;
    if (dim < 0 || dim >= t0->ndim) {
        fs_set_error("cat: dim out of range for tensors of shape %s", FS_SHAPE(t0));
        return NULL;
    }
    int64_t size[FS_MAX_DIM];
    memcpy(size, t0->size, sizeof size);
    size[dim] = 0;
    for (int k = 0; k < n; k++) {
        const fs_tensor *t = ts[k];
        bool ok = t->ndim == t0->ndim;
        for (int d = 0; ok && d < t0->ndim; d++)
            ok = d == dim || t->size[d] == t0->size[d];
        if (!ok) {
            fs_set_error("cat: tensor %d has shape %s but tensor 1 has %s (they must match "
                         "except in dim %d)", k + 1, FS_SHAPE(t), FS_SHAPE(t0), dim + 1);
            return NULL;
        }
        size[dim] += t->size[dim];
    }
    fs_tensor *out = fs_tensor_new(t0->ndim, size);
    if (!out)
        return NULL;
    int64_t start = 0;
    for (int k = 0; k < n; k++) {
        fs_tensor *v = fs_narrow_raw(out, dim, start, ts[k]->size[dim]);
        int rc = v ? fs_tensor_copy_(v, ts[k]) : -1;
        fs_tensor_release(v);
        if (rc < 0) {
            fs_tensor_release(out);
            return NULL;
        }
        start += ts[k]->size[dim];
    }
    if (fs_any_requires_grad(n, ts)) {
        cat_ctx c = {dim};
        fs_node *node = fs_node_new_ctx("cat", cat_backward, n, ts, &c, sizeof c);
        if (!node) {
            fs_tensor_release(out);
            return NULL;
        }
        fs_node_attach(node, out);
    }
    return out;
}

fs_tensor *fs_stack(int n, fs_tensor *const *ts, int dim)
{
    if (n < 1) {
        fs_set_error("stack: expected a non-empty list of tensors");
        return NULL;
    }
    if (dim < 0)
        dim += ts[0]->ndim + 1;
    if (dim < 0 || dim > ts[0]->ndim) {
        fs_set_error("stack: dim out of range for tensors of shape %s", FS_SHAPE(ts[0]));
        return NULL;
    }
    for (int k = 1; k < n; k++)
        if (!fs_same_shape(ts[k], ts[0])) {
            fs_set_error("stack: tensor %d has shape %s but tensor 1 has %s", k + 1,
                         FS_SHAPE(ts[k]), FS_SHAPE(ts[0]));
            return NULL;
        }
    fs_tensor **u = calloc((size_t)n, sizeof *u);
    if (!u) {
        fs_set_error("stack: out of memory");
        return NULL;
    }
    fs_tensor *out = NULL;
    int k;
    for (k = 0; k < n; k++)
        if (!(u[k] = fs_unsqueeze(ts[k], dim)))
            break;
    if (k == n)
        out = fs_cat(n, u, dim);
    for (int j = 0; j < n; j++)
        fs_tensor_release(u[j]);
    free(u);
    return out;
}

/* ---- index_select ---- */

/* The node's context (fs_alloc'ed at its full size): the dim and the count indices. */
typedef struct { int dim; int64_t count; int64_t index[]; } index_select_ctx;

static int index_select_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    fs_tensor *a = n->inputs[0];
    const index_select_ctx *c = n->ctx;
    int dim = c->dim;
    int64_t count = c->count;
    const int64_t *index = c->index;
    fs_tensor *z = fs_tensor_zeros(a->ndim, a->size);
    if (!z)
        return -1;
    for (int64_t k = 0; k < count; k++) {
        fs_tensor *dst = fs_select_raw(z, dim, index[k]), *src = fs_select_raw(dout, dim, k);
        int rc = (dst && src) ? fs_tensor_add_(dst, src) : -1;
        fs_tensor_release(dst);
        fs_tensor_release(src);
        if (rc < 0) {
            fs_tensor_release(z);
            return -1;
        }
    }
    din[0] = z;
    return 0;
}

fs_tensor *fs_index_select(fs_tensor *a, int dim, int n, const int64_t *index)
{
    if (a->ndim == 0) {
        fs_set_error("index_select: a 0-d tensor has no dim to index");
        return NULL;
    }
    if (dim < 0)
        dim += a->ndim;
    if (dim < 0 || dim >= a->ndim) {
        fs_set_error("index_select: dim out of range for a tensor of shape %s", FS_SHAPE(a));
        return NULL;
    }
    for (int k = 0; k < n; k++)
        if (index[k] < 0 || index[k] >= a->size[dim]) {
            fs_set_error("index_select: index %lld out of range for dim %d of shape %s",
                         (long long)index[k] + 1, dim + 1, FS_SHAPE(a));
            return NULL;
        }
    int64_t size[FS_MAX_DIM];
    memcpy(size, a->size, sizeof size);
    size[dim] = n;
    fs_tensor *out = fs_tensor_new(a->ndim, size);
    if (!out)
        return NULL;
    for (int k = 0; k < n; k++) {
        fs_tensor *dst = fs_select_raw(out, dim, k), *src = fs_select_raw(a, dim, index[k]);
        int rc = (dst && src) ? fs_tensor_copy_(dst, src) : -1;
        fs_tensor_release(dst);
        fs_tensor_release(src);
        if (rc < 0) {
            fs_tensor_release(out);
            return NULL;
        }
    }
    fs_node *node = fs_node_maybe_new("index_select", index_select_backward, 1, &a);
    if (node) {
        index_select_ctx *c = fs_alloc(sizeof *c + (size_t)n * sizeof(int64_t));
        if (!c) {
            fs_node_release(node);
            fs_tensor_release(out);
            return NULL;
        }
        c->dim = dim;
        c->count = n;
        memcpy(c->index, index, (size_t)n * sizeof(int64_t));
        node->ctx = c;
        node->free_ctx = fs_free;
        fs_node_attach(node, out);
    }
    return out;
}
