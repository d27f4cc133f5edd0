/* loss.c - classification and regression losses, forward/backward pairs.
 *
 * cross_entropy / nll_loss: logits or log-probabilities (N, C) or (N, C, d1, ...), seen as
 * (N, C, S); labels: N*S 0-based class indices (int64, row-major over (N, d1, ...)).
 *     cross_entropy: l = logsumexp(x[n, :, s]) - x[n, label, s]
 *                    dx = g (softmax(x) - onehot(label))
 *     nll_loss:      l = -x[n, label, s],  dx = -g onehot(label)
 * mse / l1 / smooth_l1: input and target of one shape, elementwise loss d = input - target:
 *     mse: d^2 (grad 2d); l1: |d| (grad sign d, 0 at 0);
 *     smooth_l1: 0.5 d^2 / beta when |d| < beta, else |d| - 0.5 beta (grad d/beta or sign d).
 * Reductions: mean (sum / count, a 0-d tensor), sum (0-d), none (the per-element shape).
 * g above is dout (times 1/count for mean). Sums are accumulated in double.
 */
#include <math.h>

#include "nn/nn_internal.h"

/* ---- reduction helpers ---- */

/* Output of a per-element loss l (count values, shape of `shape_of` minus nothing). */
static fs_tensor *reduce_out(const double *l, int64_t count, fs_reduction red, int ndim,
                             const int64_t *size)
{
    if (red == FS_REDUCTION_NONE) {
        fs_tensor *y = fs_tensor_new(ndim, size);
        if (y)
            for (int64_t k = 0; k < count; k++)
                fs_data(y)[k] = (float)l[k];
        return y;
    }
    double s = 0.0;
    for (int64_t k = 0; k < count; k++)
        s += l[k];
    if (red == FS_REDUCTION_MEAN)
        s = count ? s / (double)count : NAN;
    return fs_tensor_scalar((float)s);
}

/* The gradient factor for element k: dout[k] (none) or dout (sum) or dout/count (mean). */
static inline float grad_factor(const float *dout, int64_t k, int64_t count, fs_reduction red)
{
    if (red == FS_REDUCTION_NONE)
        return dout[k];
    return red == FS_REDUCTION_MEAN ? dout[0] / (float)count : dout[0];
}

/* ---- cross entropy and nll ---- */

/* A class loss node's context: input (n, c, s...) with s the product of the extra dims, the
 * reduction, whether log-probabilities were given (nll), and a copy of the labels. */
typedef struct {
    int64_t n, c, s;
    fs_reduction red;
    bool nll;
    int64_t *labels;
} class_ctx;

static void class_ctx_free(void *p)
{
    class_ctx *c = p;
    if (c)
        free(c->labels);
    free(c);
}

static int class_check(const char *op, const fs_tensor *x, const int64_t *labels,
                       int64_t nlabels, class_ctx *cc)
{
    if (x->ndim < 2)
        return fs_set_error("%s: input must be (N, C) or (N, C, d1, ...), got %s", op,
                            FS_SHAPE(x));
    cc->n = x->size[0];
    cc->c = x->size[1];
    cc->s = 1;
    for (int d = 2; d < x->ndim; d++)
        cc->s *= x->size[d];
    if (nlabels != cc->n * cc->s)
        return fs_set_error("%s: input %s needs %lld labels, got %lld", op, FS_SHAPE(x),
                            (long long)(cc->n * cc->s), (long long)nlabels);
    for (int64_t k = 0; k < nlabels; k++)
        if (labels[k] < 0 || labels[k] >= cc->c)
            return fs_set_error("%s: label %lld (0-based) at position %lld is out of range for "
                                "%lld classes (input %s)", op, (long long)labels[k],
                                (long long)k, (long long)cc->c, FS_SHAPE(x));
    return 0;
}

/* saved[0]: x; ctx: a class_ctx */
static int class_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const class_ctx *cc = n->ctx;
    const fs_reduction red = cc->red;
    const bool nll = cc->nll;
    const fs_tensor *x = n->saved[0];
    const int64_t N = cc->n, C = cc->c, S = cc->s, count = N * S;
    fs_tensor *dx = fs_tensor_new(x->ndim, x->size);
    if (!dx)
        return -1;
    const float *xd = fs_data(x), *g = fs_data(dout);
    float *d = fs_data(dx);
#pragma omp parallel for schedule(static) if (count * C > FS_PARALLEL_MIN)
    for (int64_t k = 0; k < count; k++) {
        int64_t i = k / S, s = k % S, base = i * C * S + s;
        float f = grad_factor(g, k, count, red);
        if (nll) {
            for (int64_t j = 0; j < C; j++)
                d[base + j * S] = 0.0f;
        } else {
            float mx = -INFINITY;
            for (int64_t j = 0; j < C; j++)
                mx = fmaxf(mx, xd[base + j * S]);
            double sum = 0.0;
            for (int64_t j = 0; j < C; j++)
                sum += expf(xd[base + j * S] - mx);
            float inv = (float)(1.0 / sum);
            for (int64_t j = 0; j < C; j++)
                d[base + j * S] = f * expf(xd[base + j * S] - mx) * inv;
        }
        d[base + cc->labels[k] * S] -= f;
    }
    dinputs[0] = dx;
    return 0;
}

static fs_tensor *class_loss(const char *op, fs_tensor *x, const int64_t *labels,
                             int64_t nlabels, fs_reduction red, bool nll)
{
    class_ctx cc;
    if (class_check(op, x, labels, nlabels, &cc) < 0)
        return NULL;
    const int64_t N = cc.n, C = cc.c, S = cc.s, count = N * S;
    fs_tensor *xc = fs_nn_contig(x);
    double *l = xc ? fs_alloc((size_t)(count ? count : 1) * sizeof(double)) : NULL;
    if (!l) {
        fs_tensor_release(xc);
        return NULL;
    }
    const float *xd = fs_data(xc);
#pragma omp parallel for schedule(static) if (count * C > FS_PARALLEL_MIN)
    for (int64_t k = 0; k < count; k++) {
        int64_t i = k / S, s = k % S, base = i * C * S + s;
        double v = -(double)xd[base + labels[k] * S];
        if (!nll) {
            float mx = -INFINITY;
            for (int64_t j = 0; j < C; j++)
                mx = fmaxf(mx, xd[base + j * S]);
            double sum = 0.0;
            for (int64_t j = 0; j < C; j++)
                sum += exp((double)xd[base + j * S] - mx);
            v += log(sum) + mx;
        }
        l[k] = v;
    }
    int64_t osize[FS_MAX_DIM];
    osize[0] = N;
    for (int d = 2; d < x->ndim; d++)
        osize[d - 1] = x->size[d];
    fs_tensor *y = reduce_out(l, count, red, x->ndim - 1, osize);
    fs_free(l);
    if (!y || !fs_any_requires_grad(1, &x)) {
        fs_tensor_release(xc);
        return y;
    }
    fs_node *n = fs_node_new(op, class_backward_node, 1, &x);
    class_ctx *ctx = n ? malloc(sizeof *ctx) : NULL;
    int64_t *lab = ctx ? malloc((size_t)(count ? count : 1) * sizeof *lab) : NULL;
    if (!lab) {
        free(ctx);
        fs_node_release(n);
        fs_tensor_release(xc);
        fs_tensor_release(y);
        if (n)
            fs_set_error("%s: out of memory recording the graph", op);
        return NULL;
    }
    memcpy(lab, labels, (size_t)count * sizeof *lab);
    *ctx = cc;
    ctx->red = red;
    ctx->nll = nll;
    ctx->labels = lab;
    n->ctx = ctx;
    n->free_ctx = class_ctx_free;
    n->saved[0] = xc;
    fs_node_attach(n, y);
    return y;
}

fs_tensor *fs_cross_entropy(fs_tensor *logits, const int64_t *labels, int64_t nlabels,
                            fs_reduction red)
{
    return class_loss("cross_entropy", logits, labels, nlabels, red, false);
}

fs_tensor *fs_nll_loss(fs_tensor *logp, const int64_t *labels, int64_t nlabels,
                       fs_reduction red)
{
    return class_loss("nll_loss", logp, labels, nlabels, red, true);
}

/* ---- regression losses ---- */

typedef enum { PAIR_MSE, PAIR_L1, PAIR_SMOOTH_L1 } pair_kind;
static const char *pair_name[] = {"mse_loss", "l1_loss", "smooth_l1_loss"};

static inline double pair_loss(pair_kind k, double d, double beta)
{
    switch (k) {
    case PAIR_MSE: return d * d;
    case PAIR_L1: return fabs(d);
    default:
        if (beta > 0.0 && fabs(d) < beta)
            return 0.5 * d * d / beta;
        return fabs(d) - 0.5 * beta;
    }
}

static inline float pair_grad(pair_kind k, float d, float beta)
{
    float sg = (float)((d > 0.0f) - (d < 0.0f));
    switch (k) {
    case PAIR_MSE: return 2.0f * d;
    case PAIR_L1: return sg;
    default: return (beta > 0.0f && fabsf(d) < beta) ? d / beta : sg;
    }
}

/* A pair loss node's context. */
typedef struct { pair_kind kind; fs_reduction red; float beta; } pair_ctx;

/* saved[0]: input - target (contiguous); ctx: a pair_ctx */
static int pair_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const pair_ctx *c = n->ctx;
    const pair_kind kind = c->kind;
    const fs_reduction red = c->red;
    const float beta = c->beta;
    const fs_tensor *diff = n->saved[0];
    const int64_t count = fs_numel(diff);
    fs_tensor *da = fs_tensor_new(diff->ndim, diff->size);
    fs_tensor *db = (da && fs_node_wants(n, 1)) ? fs_tensor_new(diff->ndim, diff->size) : NULL;
    if (!da || (fs_node_wants(n, 1) && !db)) {
        fs_tensor_release(da);
        return -1;
    }
    const float *dd = fs_data(diff), *g = fs_data(dout);
    float *pa = fs_data(da), *pb = db ? fs_data(db) : NULL;
#pragma omp parallel for schedule(static) if (count > FS_PARALLEL_MIN)
    for (int64_t k = 0; k < count; k++) {
        float v = grad_factor(g, k, count, red) * pair_grad(kind, dd[k], beta);
        pa[k] = v;
        if (pb)
            pb[k] = -v;
    }
    if (!fs_node_wants(n, 0)) {
        fs_tensor_release(da);
        da = NULL;
    }
    dinputs[0] = da;
    dinputs[1] = db;
    return 0;
}

static fs_tensor *pair_loss_op(pair_kind kind, fs_tensor *a, fs_tensor *b, fs_reduction red,
                               double beta)
{
    const char *op = pair_name[kind];
    if (!fs_same_shape(a, b))
        return fs_set_error("%s: input %s and target %s must have the same shape", op,
                            FS_SHAPE(a), FS_SHAPE(b)), NULL;
    if (!(beta >= 0.0))
        return fs_set_error("%s: beta must be >= 0, got %g", op, beta), NULL;
    const int64_t count = fs_numel(a);
    fs_tensor *ac = fs_nn_contig(a), *bc = fs_nn_contig(b);
    fs_tensor *diff = (ac && bc) ? fs_tensor_new(a->ndim, a->size) : NULL;
    double *l = diff ? fs_alloc((size_t)(count ? count : 1) * sizeof(double)) : NULL;
    fs_tensor *y = NULL;
    if (l) {
        const float *pa = fs_data(ac), *pb = fs_data(bc);
        float *pd = fs_data(diff);
#pragma omp parallel for schedule(static) if (count > FS_PARALLEL_MIN)
        for (int64_t k = 0; k < count; k++) {
            pd[k] = pa[k] - pb[k];
            l[k] = pair_loss(kind, pd[k], beta);
        }
        y = reduce_out(l, count, red, a->ndim, a->size);
    }
    fs_free(l);
    fs_tensor_release(ac);
    fs_tensor_release(bc);
    fs_tensor *ins[2] = {a, b};
    if (!y || !fs_any_requires_grad(2, ins)) {
        fs_tensor_release(diff);
        return y;
    }
    pair_ctx c = {kind, red, (float)beta};
    fs_node *n = fs_node_new_ctx(op, pair_backward_node, 2, ins, &c, sizeof c);
    if (!n) {
        fs_tensor_release(diff);
        fs_tensor_release(y);
        return NULL;
    }
    n->saved[0] = diff;
    fs_node_attach(n, y);
    return y;
}

fs_tensor *fs_mse_loss(fs_tensor *input, fs_tensor *target, fs_reduction red)
{
    return pair_loss_op(PAIR_MSE, input, target, red, 0.0);
}

fs_tensor *fs_l1_loss(fs_tensor *input, fs_tensor *target, fs_reduction red)
{
    return pair_loss_op(PAIR_L1, input, target, red, 0.0);
}

fs_tensor *fs_smooth_l1_loss(fs_tensor *input, fs_tensor *target, fs_reduction red, double beta)
{
    return pair_loss_op(PAIR_SMOOTH_L1, input, target, red, beta);
}
