/* reduce.c - sum, mean, var, max/min (values and indices) over one dim or all elements.
 * The input is seen as (outer, len, inner) around the reduced dim; accumulation is in double
 * (var by two passes), so large sums and offset data (mean 50, variance 1) stay accurate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "base/parallel.h"
#include "ops/ops.h"

typedef enum { R_SUM, R_MEAN, R_VAR } red_kind;

typedef struct {
    int dim; /* FS_ALL_DIMS or 0-based */
    int64_t outer, len, inner;
    int out_ndim;
    int64_t out_size[FS_MAX_DIM];
} red_geom;

static int red_geom_init(red_geom *g, const char *op, const fs_tensor *a, int dim, bool keepdim)
{
    g->dim = dim;
    if (dim == FS_ALL_DIMS) {
        g->outer = 1;
        g->len = fs_numel(a);
        g->inner = 1;
        g->out_ndim = keepdim ? a->ndim : 0;
        for (int d = 0; d < g->out_ndim; d++)
            g->out_size[d] = 1;
        return 0;
    }
    if (dim < 0)
        dim += a->ndim;
    if (dim < 0 || dim >= a->ndim)
        return fs_set_error("%s: dim out of range for a tensor of shape %s", op, FS_SHAPE(a));
    g->dim = dim;
    g->outer = fs_shape_numel(dim, a->size);
    g->len = a->size[dim];
    g->inner = fs_shape_numel(a->ndim - dim - 1, a->size + dim + 1);
    g->out_ndim = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d != dim)
            g->out_size[g->out_ndim++] = a->size[d];
        else if (keepdim)
            g->out_size[g->out_ndim++] = 1;
    }
    return 0;
}

static fs_tensor *contiguous_input(fs_tensor *a)
{
    return fs_is_contiguous(a) ? fs_tensor_retain(a) : fs_tensor_contiguous_copy(a);
}

/* x: (outer, len, inner) contiguous -> out: (outer, inner). */
static void reduce_kernel(red_kind kind, bool unbiased, const red_geom *g, const float *x,
                          float *out)
{
    int64_t outer = g->outer, len = g->len, inner = g->inner;
#pragma omp parallel for if(outer * len * inner > FS_PARALLEL_MIN)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *p = x + o * len * inner + i;
            double s = 0.0;
            for (int64_t k = 0; k < len; k++)
                s += p[k * inner];
            if (kind == R_SUM) {
                out[o * inner + i] = (float)s;
                continue;
            }
            double mean = len ? s / (double)len : NAN;
            if (kind == R_MEAN) {
                out[o * inner + i] = (float)mean;
                continue;
            }
            double ss = 0.0;
            for (int64_t k = 0; k < len; k++) {
                double dlt = p[k * inner] - mean;
                ss += dlt * dlt;
            }
            int64_t denom = len - (unbiased ? 1 : 0);
            out[o * inner + i] = denom > 0 ? (float)(ss / (double)denom) : NAN;
        }
    }
}

/* The node's context: the reduction and the input seen as (outer, len, inner). */
typedef struct { red_kind kind; bool unbiased; int64_t outer, len, inner; } reduce_ctx;

/* dout (reduced shape) broadcast back over the reduced dim, as a contiguous (outer, len, inner). */
static int reduce_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    fs_tensor *a = n->inputs[0];
    const reduce_ctx *c = n->ctx;
    red_kind kind = c->kind;
    red_geom g = {.outer = c->outer, .len = c->len, .inner = c->inner};
    bool unbiased = c->unbiased;
    fs_tensor *out = fs_tensor_new(a->ndim, a->size);
    if (!out)
        return -1;
    const float *d = fs_data(dout);
    const float *x = kind == R_VAR ? fs_data(n->saved[0]) : NULL;
    float *p = fs_data(out);
    double scale = kind == R_SUM ? 1.0 : 1.0 / (double)g.len;
    if (kind == R_VAR)
        scale = 2.0 / (double)(g.len - (unbiased ? 1 : 0));
#pragma omp parallel for if(g.outer * g.len * g.inner > FS_PARALLEL_MIN)
    for (int64_t o = 0; o < g.outer; o++) {
        for (int64_t i = 0; i < g.inner; i++) {
            float gv = d[o * g.inner + i];
            double mean = 0.0;
            if (kind == R_VAR) {
                for (int64_t k = 0; k < g.len; k++)
                    mean += x[(o * g.len + k) * g.inner + i];
                mean /= (double)g.len;
            }
            for (int64_t k = 0; k < g.len; k++) {
                int64_t e = (o * g.len + k) * g.inner + i;
                p[e] = kind == R_VAR ? (float)(gv * scale * (x[e] - mean)) : (float)(gv * scale);
            }
        }
    }
    din[0] = out;
    return 0;
}

static fs_tensor *reduce(red_kind kind, const char *op, fs_tensor *a, int dim, bool keepdim,
                         bool unbiased)
{
    red_geom g;
    if (red_geom_init(&g, op, a, dim, keepdim) < 0)
        return NULL;
    fs_tensor *x = contiguous_input(a);
    fs_tensor *out = x ? fs_tensor_new(g.out_ndim, g.out_size) : NULL;
    if (!out) {
        fs_tensor_release(x);
        return NULL;
    }
    reduce_kernel(kind, unbiased, &g, fs_data(x), fs_data(out));
    if (fs_any_requires_grad(1, &a)) {
        reduce_ctx c = {kind, unbiased, g.outer, g.len, g.inner};
        fs_node *n = fs_node_new_ctx(op, reduce_backward, 1, &a, &c, sizeof c);
        if (!n) {
            fs_tensor_release(x);
            fs_tensor_release(out);
            return NULL;
        }
        if (kind == R_VAR)
            n->saved[0] = fs_tensor_retain(x);
        fs_node_attach(n, out);
    }
    fs_tensor_release(x);
    return out;
}

fs_tensor *fs_sum(fs_tensor *a, int dim, bool keepdim) { return reduce(R_SUM, "sum", a, dim, keepdim, false); }
fs_tensor *fs_mean(fs_tensor *a, int dim, bool keepdim) { return reduce(R_MEAN, "mean", a, dim, keepdim, false); }

fs_tensor *fs_var(fs_tensor *a, int dim, bool keepdim, bool unbiased)
{
    return reduce(R_VAR, "var", a, dim, keepdim, unbiased);
}

/* ---- max / min: the gradient goes to the chosen element ---- */

/* The node's context: the input as (outer, len, inner) and the chosen index along len of each
 * of the outer * inner outputs. Allocated with fs_alloc at its full size (it is also the
 * forward's index buffer). */
typedef struct { int64_t outer, len, inner; int64_t idx[]; } maxmin_ctx;

/* saved: nothing; ctx: a maxmin_ctx. */
static int maxmin_backward(fs_node *n, const fs_tensor *dout, fs_tensor **din)
{
    fs_tensor *a = n->inputs[0];
    const maxmin_ctx *c = n->ctx;
    const int64_t *idx = c->idx;
    int64_t outer = c->outer, len = c->len, inner = c->inner;
    fs_tensor *out = fs_tensor_zeros(a->ndim, a->size);
    if (!out)
        return -1;
    const float *d = fs_data(dout);
    float *p = fs_data(out);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            p[(o * len + idx[o * inner + i]) * inner + i] += d[o * inner + i];
    din[0] = out;
    return 0;
}

static fs_tensor *maxmin(fs_tensor *a, int dim, bool keepdim, bool is_min, int64_t **indices)
{
    const char *op = is_min ? "min" : "max";
    red_geom g;
    if (red_geom_init(&g, op, a, dim, keepdim) < 0)
        return NULL;
    if (g.len == 0) {
        fs_set_error("%s: cannot reduce an empty dim of a tensor of shape %s", op, FS_SHAPE(a));
        return NULL;
    }
    fs_tensor *x = contiguous_input(a);
    fs_tensor *out = x ? fs_tensor_new(g.out_ndim, g.out_size) : NULL;
    maxmin_ctx *c = out ? fs_alloc(sizeof *c + (size_t)(g.outer * g.inner + 1) * sizeof(int64_t))
                        : NULL;
    int64_t *idx = c ? c->idx : NULL;
    if (!idx) {
        fs_tensor_release(x);
        fs_tensor_release(out);
        return NULL;
    }
    const float *px = fs_data(x);
    float *po = fs_data(out);
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
            const float *p = px + o * g.len * g.inner + i;
            int64_t best = 0;
            float bv = p[0];
            for (int64_t k = 1; k < g.len; k++) {
                float v = p[k * g.inner];
                if (isnan(bv))
                    break; /* NaN propagates, as in PyTorch */
                if (isnan(v) || (is_min ? v < bv : v > bv)) {
                    bv = v;
                    best = k;
                }
            }
            po[o * g.inner + i] = bv;
            idx[o * g.inner + i] = best;
        }
    fs_tensor_release(x);
    if (indices) {
        *indices = fs_alloc((size_t)(g.outer * g.inner + 1) * sizeof(int64_t));
        if (!*indices) {
            fs_free(c);
            fs_tensor_release(out);
            return NULL;
        }
        memcpy(*indices, idx, (size_t)(g.outer * g.inner) * sizeof(int64_t));
    }
    fs_node *n = fs_node_maybe_new(op, maxmin_backward, 1, &a);
    if (n) {
        c->outer = g.outer;
        c->len = g.len;
        c->inner = g.inner;
        n->ctx = c;
        n->free_ctx = fs_free;
        fs_node_attach(n, out);
    } else
        fs_free(c);
    return out;
}

fs_tensor *fs_max_dim(fs_tensor *a, int dim, bool keepdim, bool is_min, int64_t **indices)
{
    return maxmin(a, dim, keepdim, is_min, indices);
}

fs_tensor *fs_max_all(fs_tensor *a, bool is_min, int64_t *flat_index)
{
    int64_t *idx = NULL;
    fs_tensor *out = maxmin(a, FS_ALL_DIMS, false, is_min, &idx);
    if (out && flat_index)
        *flat_index = idx[0];
    fs_free(idx);
    return out;
}

/* Bounding box of the nonzero elements of a 2D tensor m: (H, W), any strides. Writes 0-based
 * inclusive row0, col0, row1, col1 into box and returns 1; returns 0 when every element is
 * zero (box untouched); -1 with a message when m is not 2D. Not differentiable. */
int fs_mask_bbox(const fs_tensor *m, int64_t box[4])
{
    if (m->ndim != 2)
        return fs_set_error("bbox: expected a 2D mask (H, W), got %s", FS_SHAPE(m));
    const float *p = fs_data(m);
    int64_t h = m->size[0], w = m->size[1], sh = m->stride[0], sw = m->stride[1];
    int64_t r0 = -1, r1 = -1, c0 = w, c1 = -1;
    for (int64_t i = 0; i < h; i++) {
        const float *row = p + i * sh;
        int64_t first = -1, last = -1;
        for (int64_t j = 0; j < w; j++)
            if (row[j * sw] != 0.0f) {
                first = j;
                break;
            }
        if (first < 0)
            continue;
        for (int64_t j = w - 1; j >= first; j--)
            if (row[j * sw] != 0.0f) {
                last = j;
                break;
            }
        if (r0 < 0)
            r0 = i;
        r1 = i;
        if (first < c0)
            c0 = first;
        if (last > c1)
            c1 = last;
    }
    if (r0 < 0)
        return 0;
    box[0] = r0, box[1] = c0, box[2] = r1, box[3] = c1;
    return 1;
}
