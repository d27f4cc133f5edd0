/* optim.c - SGD / Adam / AdamW steps (optim.h). Each update is written element by element
 * in PyTorch's operation order, in float32:
 *   Adam:  g' = g + wd*p;  m = m*b1 + (1-b1)*g';  v = v*b2 + ((1-b2)*g')*g';
 *          denom = sqrt(v) / sqrt(1-b2^t) + eps;  p = p + ((-lr/(1-b1^t)) * m) / denom
 *   AdamW: p = p * (1 - lr*wd), then Adam without the g' term.
 *   SGD:   g' = g + wd*p;  buf = g' (first step) or buf*mu + (1-dampening)*g';
 *          d = nesterov ? g' + mu*buf : buf;  p = p + (-lr)*d
 * Scalars derived in double (as Python does) are rounded to float before use. Every
 * "a + alpha * b" (add_ with alpha, addcmul_) is one fused multiply-add, as in PyTorch's AVX2
 * kernels: the trajectories of spec/optim_spec.lua are then bit-identical to torch.optim's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "module/optim.h"

#ifdef _OPENMP
#include <omp.h>
#endif


const char *fs_optim_name(fs_optim_kind kind)
{
    return kind == FS_OPTIM_SGD ? "sgd" : kind == FS_OPTIM_ADAM ? "adam" : "adamw";
}

void fs_optim_free(fs_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++)
        fs_tensor_release(o->params[i]);
    free(o->params);
    free(o->offsets);
    free(o->steps);
    fs_free(o->exp_avg);
    fs_free(o->exp_avg_sq);
    fs_free(o->max_exp_avg_sq);
    fs_free(o->momentum_buffer);
    free(o->buffer_set);
    free(o);
}

static float *zeros(int64_t n)
{
    float *p = fs_alloc((size_t)(n ? n : 1) * sizeof *p);
    if (p)
        memset(p, 0, (size_t)(n ? n : 1) * sizeof *p);
    return p;
}

fs_optim *fs_optim_new(fs_optim_kind kind, int n, fs_tensor *const *params,
                       const fs_optim_config *c)
{
    const char *name = fs_optim_name(kind);
    if (!(c->lr >= 0))
        return fs_set_error("%s: lr must be >= 0, got %g", name, c->lr), NULL;
    if (!(c->weight_decay >= 0))
        return fs_set_error("%s: weight_decay must be >= 0, got %g", name, c->weight_decay), NULL;
    if (kind != FS_OPTIM_SGD) {
        if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
            return fs_set_error("%s: betas must be in [0, 1), got (%g, %g)", name, c->beta1,
                                c->beta2), NULL;
        if (!(c->eps >= 0))
            return fs_set_error("%s: eps must be >= 0, got %g", name, c->eps), NULL;
    } else {
        if (!(c->momentum >= 0))
            return fs_set_error("sgd: momentum must be >= 0, got %g", c->momentum), NULL;
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return fs_set_error("sgd: nesterov needs momentum > 0 and dampening 0"), NULL;
    }
    if (n < 1)
        return fs_set_error("%s: no parameters to optimize", name), NULL;
    for (int i = 0; i < n; i++) {
        if (!fs_is_contiguous(params[i]))
            return fs_set_error("%s: parameter %d of shape %s is not contiguous", name, i + 1,
                                FS_SHAPE(params[i])), NULL;
        if (params[i]->grad_fn)
            return fs_set_error("%s: parameter %d of shape %s is not a leaf (it was computed "
                                "by an operation)", name, i + 1, FS_SHAPE(params[i])), NULL;
    }
    fs_optim *o = calloc(1, sizeof *o);
    if (!o)
        return fs_set_error("%s: out of memory", name), NULL;
    o->kind = kind;
    o->c = *c;
    o->n = n;
    o->params = calloc((size_t)n, sizeof *o->params);
    o->offsets = calloc((size_t)n, sizeof *o->offsets);
    o->steps = calloc((size_t)n, sizeof *o->steps);
    o->buffer_set = calloc((size_t)n, 1);
    if (!o->params || !o->offsets || !o->steps || !o->buffer_set)
        goto oom;
    for (int i = 0; i < n; i++) {
        o->params[i] = fs_tensor_retain(params[i]);
        o->offsets[i] = o->total;
        o->total += fs_numel(params[i]);
    }
    if (kind == FS_OPTIM_SGD) {
        if (c->momentum != 0 && !(o->momentum_buffer = zeros(o->total)))
            goto oom;
    } else {
        if (!(o->exp_avg = zeros(o->total)) || !(o->exp_avg_sq = zeros(o->total)))
            goto oom;
        if (c->amsgrad && !(o->max_exp_avg_sq = zeros(o->total)))
            goto oom;
    }
    return o;
oom:
    fs_optim_free(o);
    return fs_set_error("%s: out of memory for the optimizer state", name), NULL;
}

/* The parameters (and their gradients) are consecutive in one storage each. */
bool fs_optim_is_flat(const fs_optim *o)
{
    const fs_tensor *p0 = o->params[0];
    if (!p0->grad || !fs_is_contiguous(p0->grad))
        return false;
    for (int i = 0; i < o->n; i++) {
        const fs_tensor *p = o->params[i], *g = p->grad;
        if (!g || p->storage != p0->storage || p->offset != p0->offset + o->offsets[i] ||
            g->storage != p0->grad->storage || g->offset != p0->grad->offset + o->offsets[i] ||
            !fs_is_contiguous(g) || !fs_same_shape(g, p) || o->steps[i] != o->steps[0] ||
            o->buffer_set[i] != o->buffer_set[0])
            return false;
    }
    return true;
}

typedef struct {
    float b1, omb1, b2, omb2, wd, decay, bc2s, eps, neg_step;
    bool amsgrad, adamw;
} adam_k;

/* One specialised loop per flag combination (the flags are constants after inlining); with
 * -fno-math-errno (Makefile) sqrtf vectorizes. */
static inline void adam_loop(float *restrict p, const float *restrict g,
                                            float *restrict m, float *restrict v,
                                            float *restrict vmax, int64_t n, const adam_k *k,
                                            const bool amsgrad, const bool adamw, const bool wd)
{
    const float b1 = k->b1, omb1 = k->omb1, b2 = k->b2, omb2 = k->omb2, wdf = k->wd,
                decay = k->decay, bc2s = k->bc2s, eps = k->eps, neg_step = k->neg_step;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], pi = p[i];
        if (adamw)
            pi = pi * decay;
        else if (wd)
            gi = fmaf(wdf, pi, gi);
        float mi = fmaf(omb1, gi, m[i] * b1);
        float vi = fmaf(omb2 * gi, gi, v[i] * b2);
        m[i] = mi;
        v[i] = vi;
        float s = vi;
        if (amsgrad) {
            s = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = s;
        }
        float denom = sqrtf(s) / bc2s + eps;
        p[i] = pi + neg_step * mi / denom;
    }
}

/* Threads take contiguous chunks; each runs the specialised, vectorized loop. */
static void adam_range(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, float *restrict vmax, int64_t n, const adam_k *k)
{
    const bool wd = k->wd != 0.0f, ams = k->amsgrad, adamw = k->adamw;
#pragma omp parallel if (n > FS_PARALLEL_MIN)
    {
        int64_t lo = 0, hi = n;
#ifdef _OPENMP
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t chunk = (n / nt + 15) / 16 * 16;
        lo = chunk * t < n ? chunk * t : n;
        hi = t == nt - 1 ? n : (lo + chunk < n ? lo + chunk : n);
#endif
        float *pp = p + lo, *mm = m + lo, *vv = v + lo, *xx = vmax ? vmax + lo : NULL;
        const float *gg = g + lo;
        int64_t len = hi - lo;
        if (ams) {
            if (adamw) adam_loop(pp, gg, mm, vv, xx, len, k, true, true, false);
            else if (wd) adam_loop(pp, gg, mm, vv, xx, len, k, true, false, true);
            else adam_loop(pp, gg, mm, vv, xx, len, k, true, false, false);
        } else {
            if (adamw) adam_loop(pp, gg, mm, vv, xx, len, k, false, true, false);
            else if (wd) adam_loop(pp, gg, mm, vv, xx, len, k, false, false, true);
            else adam_loop(pp, gg, mm, vv, xx, len, k, false, false, false);
        }
    }
}

typedef struct { float wd, mu, omd, neg_lr; bool momentum, first, nesterov; } sgd_k;

static void sgd_range(float *restrict p, const float *restrict g, float *restrict buf, int64_t n,
                      const sgd_k *k)
{
    const sgd_k K = *k;
#pragma omp parallel for schedule(static) if (n > FS_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (K.wd != 0.0f)
            d = fmaf(K.wd, p[i], d);
        if (K.momentum) {
            float b = K.first ? d : fmaf(K.omd, d, buf[i] * K.mu);
            buf[i] = b;
            d = K.nesterov ? fmaf(K.mu, b, d) : b;
        }
        p[i] = fmaf(K.neg_lr, d, p[i]);
    }
}

static void adam_constants(const fs_optim *o, int64_t step, adam_k *k)
{
    const fs_optim_config *c = &o->c;
    double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    k->b1 = (float)c->beta1;
    k->omb1 = (float)(1.0 - c->beta1);
    k->b2 = (float)c->beta2;
    k->omb2 = (float)(1.0 - c->beta2);
    k->wd = (float)c->weight_decay;
    k->decay = (float)(1.0 - c->lr * c->weight_decay);
    k->bc2s = (float)sqrt(bc2);
    k->eps = (float)c->eps;
    k->neg_step = (float)(-(c->lr / bc1));
    k->amsgrad = c->amsgrad;
    k->adamw = o->kind == FS_OPTIM_ADAMW;
}

static void sgd_constants(const fs_optim *o, bool first, sgd_k *k)
{
    k->wd = (float)o->c.weight_decay;
    k->mu = (float)o->c.momentum;
    k->omd = (float)(1.0 - o->c.dampening);
    k->neg_lr = (float)(-o->c.lr);
    k->momentum = o->c.momentum != 0;
    k->first = first;
    k->nesterov = o->c.nesterov;
}

/* One parameter range: param data p, grad g, state at offset off, n elements. */
static void step_range(fs_optim *o, int i, float *p, const float *g, int64_t off, int64_t n)
{
    if (o->kind == FS_OPTIM_SGD) {
        sgd_k k;
        sgd_constants(o, !o->buffer_set[i], &k);
        sgd_range(p, g, o->momentum_buffer ? o->momentum_buffer + off : NULL, n, &k);
    } else {
        adam_k k;
        adam_constants(o, o->steps[i], &k);
        adam_range(p, g, o->exp_avg + off, o->exp_avg_sq + off,
                   o->max_exp_avg_sq ? o->max_exp_avg_sq + off : NULL, n, &k);
    }
}

int fs_optim_step(fs_optim *o)
{
    for (int i = 0; i < o->n; i++) {
        const fs_tensor *p = o->params[i];
        if (p->grad && !fs_same_shape(p->grad, p))
            return fs_set_error("%s: gradient of shape %s for parameter %d of shape %s",
                                fs_optim_name(o->kind), FS_SHAPE(p->grad), i + 1, FS_SHAPE(p));
        if (!fs_is_contiguous(p))
            return fs_set_error("%s: parameter %d of shape %s is not contiguous",
                                fs_optim_name(o->kind), i + 1, FS_SHAPE(p));
    }
    if (fs_optim_is_flat(o)) {
        for (int i = 0; i < o->n; i++)
            o->steps[i]++;
        step_range(o, 0, fs_data(o->params[0]), fs_data(o->params[0]->grad), 0, o->total);
        memset(o->buffer_set, 1, (size_t)o->n);
        return 0;
    }
    for (int i = 0; i < o->n; i++) {
        fs_tensor *p = o->params[i];
        if (!p->grad)
            continue;
        fs_tensor *g = fs_is_contiguous(p->grad) ? fs_tensor_retain(p->grad)
                                                 : fs_tensor_contiguous_copy(p->grad);
        if (!g)
            return -1;
        o->steps[i]++;
        step_range(o, i, fs_data(p), fs_data(g), o->offsets[i], fs_numel(p));
        o->buffer_set[i] = 1;
        fs_tensor_release(g);
    }
    return 0;
}

void fs_optim_zero_grad(fs_optim *o)
{
    if (fs_optim_is_flat(o)) {
        memset(fs_data(o->params[0]->grad), 0, (size_t)o->total * sizeof(float));
        return;
    }
    for (int i = 0; i < o->n; i++)
        if (o->params[i]->grad)
            fs_tensor_fill_(o->params[i]->grad, 0.0f);
}
