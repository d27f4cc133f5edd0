/* activation.c - relu and the softmax family along one dim, forward/backward pairs.
 *
 * relu: y = max(x, 0) (NaN stays NaN), dx = dy where y > 0; backward reads the saved output.
 *
 * x is seen as (outer, D, inner) around the softmax dim (D = its size); each of the
 * outer*inner lines of D values is normalised independently, with the line's max subtracted
 * before exp (no overflow) and the sum of exps accumulated in double.
 *     softmax:      y = exp(x - max) / sum,            dx = y (dy - sum(dy y))
 *     log_softmax:  y = x - max - log(sum),            dx = dy - exp(y) sum(dy)
 * Backward uses the saved output only (an alias: no copy, no cycle).
 */
#include <math.h>

#include "nn/nn_internal.h"

/* saved[0]: y */
static int relu_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_tensor *yt = n->saved[0];
    fs_tensor *dx = fs_tensor_new(yt->ndim, yt->size);
    if (!dx)
        return -1;
    const int64_t cnt = fs_numel(yt);
    const float *y = fs_data(yt), *dy = fs_data(dout);
    float *d = fs_data(dx);
#pragma omp parallel for simd schedule(static) if (cnt > 8 * FS_PARALLEL_MIN)
    for (int64_t k = 0; k < cnt; k++)
        d[k] = y[k] > 0.0f ? dy[k] : 0.0f;
    dinputs[0] = dx;
    return 0;
}

fs_tensor *fs_relu(fs_tensor *x)
{
    fs_tensor *xc = fs_nn_contig(x);
    fs_tensor *y = xc ? fs_tensor_new(x->ndim, x->size) : NULL;
    if (!y) {
        fs_tensor_release(xc);
        return NULL;
    }
    const int64_t cnt = fs_numel(x);
    const float *xd = fs_data(xc);
    float *yd = fs_data(y);
#pragma omp parallel for simd schedule(static) if (cnt > 8 * FS_PARALLEL_MIN)
    for (int64_t k = 0; k < cnt; k++) {
        float v = xd[k];
        yd[k] = v > 0.0f ? v : (v == v ? 0.0f : v);
    }
    fs_tensor_release(xc);
    if (!fs_any_requires_grad(1, &x))
        return y;
    fs_node *n = fs_node_new("relu", relu_backward_node, 1, &x);
    fs_tensor *ya = n ? fs_tensor_alias(y) : NULL;
    if (!ya) {
        fs_node_release(n);
        fs_tensor_release(y);
        return NULL;
    }
    n->saved[0] = ya;
    fs_node_attach(n, y);
    return y;
}

typedef struct { int64_t outer, d, inner; } line_shape;

static int line_shape_of(const char *op, const fs_tensor *x, int *dim, line_shape *ls)
{
    int nd = x->ndim ? x->ndim : 1;
    if (*dim < -nd || *dim >= nd)
        return fs_set_error("%s: dim %d out of range for input %s", op, *dim, FS_SHAPE(x));
    if (*dim < 0)
        *dim += nd;
    ls->outer = 1;
    ls->inner = 1;
    ls->d = x->ndim ? x->size[*dim] : 1;
    for (int k = 0; k < *dim; k++)
        ls->outer *= x->size[k];
    for (int k = *dim + 1; k < x->ndim; k++)
        ls->inner *= x->size[k];
    return 0;
}

/* y (outer, D, inner) = softmax or log_softmax of x (outer, D, inner) along D. */
static void softmax_forward(float *y, const float *x, line_shape ls, bool logs)
{
    const int64_t D = ls.d, I = ls.inner, L = ls.outer * ls.inner;
#pragma omp parallel for schedule(static) if (L * D > FS_PARALLEL_MIN)
    for (int64_t l = 0; l < L; l++) {
        int64_t o = l / I, i = l % I;
        const float *xp = x + o * D * I + i;
        float *yp = y + o * D * I + i;
        float mx = -INFINITY;
        for (int64_t k = 0; k < D; k++)
            if (xp[k * I] > mx || isnan(xp[k * I]))
                mx = xp[k * I];
        if (isinf(mx) && mx < 0)
            mx = 0.0f; /* all -inf: keep the NaN-free path */
        double sum = 0.0;
        for (int64_t k = 0; k < D; k++) {
            float e = expf(xp[k * I] - mx);
            sum += e;
            if (!logs)
                yp[k * I] = e;
        }
        if (logs) {
            float lse = (float)log(sum) + mx;
            for (int64_t k = 0; k < D; k++)
                yp[k * I] = xp[k * I] - lse;
        } else {
            float inv = (float)(1.0 / sum);
            for (int64_t k = 0; k < D; k++)
                yp[k * I] *= inv;
        }
    }
}

/* A softmax node's context: the input as (outer, D, inner) lines, and log or not. */
typedef struct { line_shape ls; bool logs; } softmax_ctx;

/* saved[0]: y; ctx: a softmax_ctx */
static int softmax_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_tensor *yt = n->saved[0];
    const softmax_ctx *c = n->ctx;
    line_shape ls = c->ls;
    const bool logs = c->logs;
    const int64_t D = ls.d, I = ls.inner, L = ls.outer * ls.inner;
    fs_tensor *dx = fs_tensor_new(n->inputs[0]->ndim, n->inputs[0]->size);
    if (!dx)
        return -1;
    const float *y = fs_data(yt), *dy = fs_data(dout);
    float *d = fs_data(dx);
#pragma omp parallel for schedule(static) if (L * D > FS_PARALLEL_MIN)
    for (int64_t l = 0; l < L; l++) {
        int64_t o = l / I, i = l % I, base = o * D * I + i;
        double acc = 0.0;
        for (int64_t k = 0; k < D; k++)
            acc += logs ? dy[base + k * I] : (double)dy[base + k * I] * y[base + k * I];
        float a = (float)acc;
        for (int64_t k = 0; k < D; k++) {
            int64_t j = base + k * I;
            d[j] = logs ? dy[j] - expf(y[j]) * a : y[j] * (dy[j] - a);
        }
    }
    dinputs[0] = dx;
    return 0;
}

static fs_tensor *softmax_op(const char *op, fs_tensor *x, int dim, bool logs)
{
    line_shape ls = {1, 1, 1};
    if (line_shape_of(op, x, &dim, &ls) < 0)
        return NULL;
    fs_tensor *xc = fs_nn_contig(x);
    fs_tensor *y = xc ? fs_tensor_new(x->ndim, x->size) : NULL;
    if (!y) {
        fs_tensor_release(xc);
        return NULL;
    }
    softmax_forward(fs_data(y), fs_data(xc), ls, logs);
    fs_tensor_release(xc);
    if (fs_any_requires_grad(1, &x)) {
        softmax_ctx c = {ls, logs};
        fs_node *n = fs_node_new_ctx(op, softmax_backward_node, 1, &x, &c, sizeof c);
        fs_tensor *ya = n ? fs_tensor_alias(y) : NULL;
        if (!ya) {
            fs_node_release(n);
            fs_tensor_release(y);
            return NULL;
        }
        n->saved[0] = ya;
        fs_node_attach(n, y);
    }
    return y;
}

fs_tensor *fs_softmax(fs_tensor *x, int dim) { return softmax_op("softmax", x, dim, false); }
fs_tensor *fs_log_softmax(fs_tensor *x, int dim) { return softmax_op("log_softmax", x, dim, true); }
