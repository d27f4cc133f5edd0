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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "io/safetensors.h"
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

/* Writes what is wrong with c to buf (cap) and returns true, or returns false. */
static bool config_problem(fs_optim_kind kind, const fs_optim_config *c, char *buf, size_t cap)
{
    if (!(c->lr >= 0))
        snprintf(buf, cap, "lr must be >= 0, got %g", c->lr);
    else if (!(c->weight_decay >= 0))
        snprintf(buf, cap, "weight_decay must be >= 0, got %g", c->weight_decay);
    else if (kind != FS_OPTIM_SGD &&
             (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1)))
        snprintf(buf, cap, "betas must be in [0, 1), got (%g, %g)", c->beta1, c->beta2);
    else if (kind != FS_OPTIM_SGD && !(c->eps >= 0))
        snprintf(buf, cap, "eps must be >= 0, got %g", c->eps);
    else if (kind == FS_OPTIM_SGD && !(c->momentum >= 0))
        snprintf(buf, cap, "momentum must be >= 0, got %g", c->momentum);
    else if (kind == FS_OPTIM_SGD && c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        snprintf(buf, cap, "nesterov needs momentum > 0 and dampening 0");
    else
        return false;
    return true;
}

fs_optim *fs_optim_new(fs_optim_kind kind, int n, fs_tensor *const *params,
                       const fs_optim_config *c)
{
    const char *name = fs_optim_name(kind);
    char problem[160];
    if (config_problem(kind, c, problem, sizeof problem))
        return fs_set_error("%s: %s", name, problem), NULL;
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

/* ---- state (layout in optim.h) ---- */

typedef struct { const char *key; double *v; } hyper;

/* The hyper-parameters of kind stored in a state, as fields of c, in the order they are
 * written (files written before must stay byte-identical). */
static int hypers(fs_optim_kind kind, fs_optim_config *c, hyper *h)
{
    int n = 0;
    h[n++] = (hyper){"lr", &c->lr};
    h[n++] = (hyper){"weight_decay", &c->weight_decay};
    if (kind == FS_OPTIM_SGD) {
        h[n++] = (hyper){"momentum", &c->momentum};
        h[n++] = (hyper){"dampening", &c->dampening};
    } else {
        h[n++] = (hyper){"beta1", &c->beta1};
        h[n++] = (hyper){"beta2", &c->beta2};
        h[n++] = (hyper){"eps", &c->eps};
    }
    return n;
}

typedef struct { const char *key; float *data; } statevec;

/* The (P) state vectors this optimizer has. */
static int statevecs(const fs_optim *o, statevec *s)
{
    int n = 0;
    if (o->exp_avg)
        s[n++] = (statevec){"exp_avg", o->exp_avg};
    if (o->exp_avg_sq)
        s[n++] = (statevec){"exp_avg_sq", o->exp_avg_sq};
    if (o->max_exp_avg_sq)
        s[n++] = (statevec){"max_exp_avg_sq", o->max_exp_avg_sq};
    if (o->momentum_buffer)
        s[n++] = (statevec){"momentum_buffer", o->momentum_buffer};
    return n;
}

int fs_optim_state_dict(const fs_optim *o, fs_tensor_dict *out)
{
    const char *name = fs_optim_name(o->kind);
    int64_t n = o->n;
    fs_tensor *steps = fs_tensor_new(1, &n), *set = fs_tensor_new(1, &n);
    int rc = steps && set ? 0 : -1;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        fs_data(steps)[i] = (float)o->steps[i];
        fs_data(set)[i] = o->buffer_set[i];
    }
    if (rc == 0)
        rc = fs_tensor_dict_add(out, "step", steps);
    if (rc == 0 && o->kind == FS_OPTIM_SGD)
        rc = fs_tensor_dict_add(out, "buffer_set", set);
    fs_tensor_release(steps);
    fs_tensor_release(set);
    statevec s[4];
    int ns = statevecs(o, s);
    for (int k = 0; rc == 0 && k < ns; k++) {
        fs_tensor *t = fs_tensor_from_data(1, &o->total, s[k].data);
        rc = t ? fs_tensor_dict_add(out, s[k].key, t) : -1;
        fs_tensor_release(t);
    }
    if (rc == 0)
        rc = fs_tensor_dict_add_meta(out, "fewshot.optimizer", name);
    fs_optim_config c = o->c;
    hyper h[8];
    int nh = hypers(o->kind, &c, h);
    for (int i = 0; rc == 0 && i < nh; i++) {
        char num[40];
        snprintf(num, sizeof num, "%.17g", *h[i].v);
        rc = fs_tensor_dict_add_meta(out, h[i].key, num);
    }
    return rc; /* out of memory, said by the allocation that failed */
}

static const char *meta_value(const fs_tensor_dict *d, const char *key)
{
    for (int64_t k = 0; k < d->nmeta; k++)
        if (strcmp(d->meta_keys[k], key) == 0)
            return d->meta_values[k];
    return NULL;
}

/* Appends "; " (when buf is not empty) and a formatted note to buf[cap]. */
static void note(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len && len + 2 < cap)
        buf[len++] = ';', buf[len++] = ' ', buf[len] = 0;
    if (len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

int fs_optim_load_state_dict(fs_optim *o, const fs_tensor_dict *sd)
{
    const char *name = fs_optim_name(o->kind);
    const char *kind = meta_value(sd, "fewshot.optimizer");
    if (kind && strcmp(kind, name) != 0)
        return fs_set_error("%s load_state_dict: the state is from a %s optimizer", name, kind);
    char why[800] = "";

    /* hyper-parameters, into a copy of the configuration */
    fs_optim_config c = o->c;
    hyper h[8];
    int nh = hypers(o->kind, &c, h);
    for (int i = 0; i < nh; i++) {
        const char *v = meta_value(sd, h[i].key);
        if (!v)
            continue;
        char *end;
        double x = strtod(v, &end);
        if (end == v || *end) {
            note(why, sizeof why, "'%s' must be a number, got '%.40s'", h[i].key, v);
        } else {
            *h[i].v = x;
        }
    }
    char problem[160];
    if (config_problem(o->kind, &c, problem, sizeof problem))
        note(why, sizeof why, "%s", problem);
    if (o->kind == FS_OPTIM_SGD && c.momentum != 0 && !o->momentum_buffer)
        note(why, sizeof why, "'momentum' %g needs a momentum buffer, and this optimizer was "
             "made without momentum", c.momentum);

    /* the tensors: expected ones with their lengths, then anything else */
    statevec s[4];
    int ns = statevecs(o, s);
    const char *keys[6];
    int64_t lens[6], idx[6];
    int nk = 0;
    keys[nk] = "step", lens[nk++] = o->n;
    if (o->kind == FS_OPTIM_SGD)
        keys[nk] = "buffer_set", lens[nk++] = o->n;
    for (int j = 0; j < ns; j++)
        keys[nk] = s[j].key, lens[nk++] = o->total;
    for (int j = 0; j < nk; j++) {
        idx[j] = fs_tensor_dict_find(sd, keys[j]);
        const fs_tensor *t = idx[j] < 0 ? NULL : sd->tensors[idx[j]];
        if (!t)
            note(why, sizeof why, "'%s' is missing%s", keys[j],
                 strcmp(keys[j], "max_exp_avg_sq") == 0 ? " (this optimizer has amsgrad on)" : "");
        else if (t->ndim != 1 || t->size[0] != lens[j])
            note(why, sizeof why, "'%s' must have shape (%lld)%s, got %s", keys[j],
                 (long long)lens[j], j < nk - ns ? ", one per parameter" : "", FS_SHAPE(t));
    }
    for (int64_t k = 0; k < sd->n; k++) {
        bool known = false;
        for (int j = 0; j < nk; j++)
            known = known || strcmp(sd->names[k], keys[j]) == 0;
        if (!known)
            note(why, sizeof why, "unexpected '%s'%s", sd->names[k],
                 strcmp(sd->names[k], "max_exp_avg_sq") == 0 ? " (this optimizer has amsgrad off)"
                 : strcmp(sd->names[k], "momentum_buffer") == 0 ? " (this optimizer has no momentum)"
                 : "");
    }
    if (why[0])
        return fs_set_error("%s load_state_dict: %s", name, why);

    /* the step counts and flags: whole numbers >= 0, and 0 or 1 */
    float *tmp = malloc((size_t)o->n * 2 * sizeof *tmp);
    if (!tmp)
        return fs_set_error("%s load_state_dict: out of memory", name);
    float *steps = tmp, *set = tmp + o->n;
    fs_tensor_read(sd->tensors[idx[0]], steps);
    if (o->kind == FS_OPTIM_SGD)
        fs_tensor_read(sd->tensors[idx[1]], set);
    for (int i = 0; i < o->n; i++) {
        if (!(steps[i] >= 0 && steps[i] == floorf(steps[i]) && isfinite(steps[i]))) {
            fs_set_error("%s load_state_dict: 'step' holds %g for parameter %d (a step count "
                         "is a whole number >= 0)", name, steps[i], i + 1);
            free(tmp);
            return -1;
        }
        if (o->kind == FS_OPTIM_SGD && set[i] != 0 && set[i] != 1) {
            fs_set_error("sgd load_state_dict: 'buffer_set' holds %g for parameter %d (a flag "
                         "is 0 or 1)", set[i], i + 1);
            free(tmp);
            return -1;
        }
    }

    /* all checked: copy */
    for (int i = 0; i < o->n; i++) {
        o->steps[i] = (int64_t)steps[i];
        if (o->kind == FS_OPTIM_SGD)
            o->buffer_set[i] = set[i] != 0;
    }
    free(tmp);
    for (int j = 0; j < ns; j++)
        fs_tensor_read(sd->tensors[idx[nk - ns + j]], s[j].data);
    o->c = c;
    return 0;
}

int fs_optim_save(const fs_optim *o, const char *path)
{
    fs_tensor_dict d;
    fs_tensor_dict_init(&d);
    int rc = fs_optim_state_dict(o, &d);
    if (rc == 0)
        rc = fs_safetensors_write(path, &d);
    fs_tensor_dict_free(&d);
    return rc;
}

int fs_optim_load(fs_optim *o, const char *path)
{
    const char *name = fs_optim_name(o->kind);
    fs_tensor_dict d;
    if (fs_safetensors_read(path, &d) < 0)
        return -1;
    const char *kind = meta_value(&d, "fewshot.optimizer");
    int rc;
    if (!kind || strcmp(kind, name) != 0) {
        rc = fs_set_error("%s load: '%s' is not a saved %s optimizer state", name, path, name);
    } else if ((rc = fs_optim_load_state_dict(o, &d)) < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", fs_error());
        fs_set_error("'%s': %s", path, msg);
    }
    fs_tensor_dict_free(&d);
    return rc;
}
