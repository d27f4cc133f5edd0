/* norm.c - batch normalisation over the channel dim, forward/backward pair.
 *
 * x (N, C, *) is seen as (N, C, S) with S the product of the trailing dims; a channel's
 * M = N*S values are normalised together. weight, bias, running_mean, running_var: (C).
 *
 * Training: mean and biased variance of the batch, computed per channel in double with two
 * passes (sum, then sum of squared deviations), so a batch with mean 50 and variance 1 keeps
 * its precision; running stats (when given) are updated in place with the UNBIASED variance:
 *     r_mean = (1 - momentum) r_mean + momentum mean,  r_var = (1 - m) r_var + m var M/(M-1).
 * Eval: the running statistics are used and are constants for backward.
 *
 * Backward (xhat = (x - mean) invstd, g = weight):
 *     dbias = sum dy, dweight = sum dy xhat,
 *     training: dx = g invstd (dy - dbias/M - xhat dweight/M);   eval: dx = g invstd dy.
 */
#include <math.h>

#include "nn/nn_internal.h"

/* Row sums with 16 independent float lanes (vectorised without reassociating a double sum),
 * combined in double per row: rows are a channel's S values in one image. */
#define LANES 16

static double row_sum(const float *p, int64_t n)
{
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += p[i + j];
    double s = 0.0;
    for (; i < n; i++)
        s += p[i];
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

/* sum (p - m)^2 */
static double row_sqdev(const float *p, int64_t n, float m)
{
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float d = p[i + j] - m;
            acc[j] += d * d;
        }
    double s = 0.0;
    for (; i < n; i++) {
        double d = (double)p[i] - m;
        s += d * d;
    }
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

/* sum g and sum g (p - m) */
static void row_dot(const float *g, const float *p, int64_t n, float m, double *sg, double *sgp)
{
    float a[LANES] = {0}, b[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            a[j] += g[i + j];
            b[j] += g[i + j] * (p[i + j] - m);
        }
    double s = 0.0, t = 0.0;
    for (; i < n; i++) {
        s += g[i];
        t += (double)g[i] * ((double)p[i] - m);
    }
    for (int j = 0; j < LANES; j++) {
        s += a[j];
        t += b[j];
    }
    *sg += s;
    *sgp += t;
}

/* The node's context: batch statistics (training) or running ones (eval) were used. */
typedef struct { bool training; } batch_norm_ctx;

/* saved: x (contiguous), mean (C), invstd (C), weight (contiguous) or NULL; ctx: training */
static int batch_norm_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_tensor *x = n->saved[0], *wt = n->saved[3];
    const float *mean = fs_data(n->saved[1]), *invstd = fs_data(n->saved[2]);
    const float *xd = fs_data(x), *dy = fs_data(dout), *wd = wt ? fs_data(wt) : NULL;
    const bool training = ((const batch_norm_ctx *)n->ctx)->training;
    const int64_t N = x->size[0], C = x->size[1], S = fs_numel(x) / (N * C != 0 ? N * C : 1);
    const int64_t M = N * S;
    fs_tensor *dx = NULL, *dw = NULL, *db = NULL;
    bool want_x = fs_node_wants(n, 0), want_w = fs_node_wants(n, 1), want_b = fs_node_wants(n, 2);
    if (want_x && !(dx = fs_tensor_new(x->ndim, x->size)))
        goto fail;
    if (want_w && !(dw = fs_tensor_new(1, &C)))
        goto fail;
    if (want_b && !(db = fs_tensor_new(1, &C)))
        goto fail;
    float *dxd = dx ? fs_data(dx) : NULL;
#pragma omp parallel for schedule(static) if (N * C * S > FS_PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        const double mu = mean[c], is = invstd[c];
        double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy (x - mean) */
        for (int64_t k = 0; k < N; k++)
            row_dot(dy + (k * C + c) * S, xd + (k * C + c) * S, S, (float)mu, &sdy, &sdyx);
        double sdyxhat = sdyx * is;
        if (dw)
            fs_data(dw)[c] = (float)sdyxhat;
        if (db)
            fs_data(db)[c] = (float)sdy;
        if (!dxd)
            continue;
        double g = wd ? wd[c] : 1.0;
        float a = (float)(g * is); /* dx = a (dy - mdy - (x - mean) k) */
        float mdy = training ? (float)(sdy / (double)M) : 0.0f;
        float kx = training ? (float)(sdyxhat * is / (double)M) : 0.0f;
        float fmu = (float)mu;
        for (int64_t k = 0; k < N; k++) {
            const float *xp = xd + (k * C + c) * S, *gp = dy + (k * C + c) * S;
            float *dp = dxd + (k * C + c) * S;
            for (int64_t s = 0; s < S; s++)
                dp[s] = a * (gp[s] - mdy - (xp[s] - fmu) * kx);
        }
    }
    dinputs[0] = dx;
    dinputs[1] = dw;
    dinputs[2] = db;
    return 0;
fail:
    fs_nn_release_all(3, (fs_tensor *[]){dx, dw, db});
    return -1;
}

static int check_channel_vec(const char *what, const fs_tensor *t, const fs_tensor *x, int64_t C)
{
    if (t && (t->ndim != 1 || t->size[0] != C))
        return fs_set_error("batch_norm: %s %s must have shape (%lld) for input %s", what,
                            FS_SHAPE(t), (long long)C, FS_SHAPE(x));
    return 0;
}

static inline float *vec_at(fs_tensor *t, int64_t c) { return fs_data(t) + c * t->stride[0]; }

fs_tensor *fs_batch_norm(fs_tensor *x, fs_tensor *running_mean, fs_tensor *running_var,
                         fs_tensor *weight, fs_tensor *bias, bool training, double momentum,
                         double eps)
{
    if (x->ndim < 2)
        return fs_set_error("batch_norm: input must be (N, C, *), got %s", FS_SHAPE(x)), NULL;
    const int64_t N = x->size[0], C = x->size[1];
    const int64_t S = N * C != 0 ? fs_numel(x) / (N * C) : 0, M = N * S;
    if (check_channel_vec("running_mean", running_mean, x, C) < 0 ||
        check_channel_vec("running_var", running_var, x, C) < 0 ||
        check_channel_vec("weight", weight, x, C) < 0 ||
        check_channel_vec("bias", bias, x, C) < 0)
        return NULL;
    if (!training && (!running_mean || !running_var))
        return fs_set_error("batch_norm: eval mode (training=false) needs running_mean and "
                            "running_var for input %s", FS_SHAPE(x)), NULL;
    if (training && M <= 1)
        return fs_set_error("batch_norm: expected more than 1 value per channel when training, "
                            "got input %s", FS_SHAPE(x)), NULL;
    if (!(eps >= 0.0))
        return fs_set_error("batch_norm: eps must be >= 0, got %g", eps), NULL;

    fs_tensor *xc = fs_nn_contig(x), *wc = weight ? fs_nn_contig(weight) : NULL;
    fs_tensor *mean = fs_tensor_new(1, &C), *invstd = fs_tensor_new(1, &C);
    fs_tensor *y = fs_tensor_new(x->ndim, x->size);
    float *bv = NULL;
    if (!xc || (weight && !wc) || !mean || !invstd || !y)
        goto fail;
    if (bias && !(bv = fs_alloc((size_t)(C ? C : 1) * sizeof(float))))
        goto fail;
    for (int64_t c = 0; c < C; c++)
        if (bv)
            bv[c] = *vec_at(bias, c);
    const float *xd = fs_data(xc), *wd = wc ? fs_data(wc) : NULL;
    float *yd = fs_data(y), *md = fs_data(mean), *id = fs_data(invstd);
#pragma omp parallel for schedule(static) if (N * C * S > FS_PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        double mu, var;
        if (training) {
            /* two passes: the mean, then squared deviations from its float rounding m
             * (exact differences for values near the mean), corrected by (mu - m)^2 */
            double sum = 0.0, ss = 0.0;
            for (int64_t k = 0; k < N; k++)
                sum += row_sum(xd + (k * C + c) * S, S);
            mu = sum / (double)M;
            float m = (float)mu;
            for (int64_t k = 0; k < N; k++)
                ss += row_sqdev(xd + (k * C + c) * S, S, m);
            double dm = mu - (double)m;
            var = ss / (double)M - dm * dm;
            if (var < 0.0)
                var = 0.0;
            if (running_mean) {
                float *r = vec_at(running_mean, c);
                *r = (float)((1.0 - momentum) * *r + momentum * mu);
            }
            if (running_var) {
                float *r = vec_at(running_var, c);
                *r = (float)((1.0 - momentum) * *r + momentum * var * (double)M / (double)(M - 1));
            }
        } else {
            mu = *vec_at(running_mean, c);
            var = *vec_at(running_var, c);
        }
        double is = 1.0 / sqrt(var + eps);
        md[c] = (float)mu;
        id[c] = (float)is;
        double g = wd ? wd[c] : 1.0;
        /* (x - mean) first: x and mean are close when the mean is large */
        float scale = (float)(g * is), shift = bv ? bv[c] : 0.0f, fmu = (float)mu;
        for (int64_t k = 0; k < N; k++) {
            const float *xp = xd + (k * C + c) * S;
            float *yp = yd + (k * C + c) * S;
            for (int64_t s = 0; s < S; s++)
                yp[s] = (xp[s] - fmu) * scale + shift;
        }
    }
    fs_free(bv);
    bv = NULL;

    fs_tensor *ins[3] = {x, weight, bias};
    if (fs_any_requires_grad(3, ins)) {
        batch_norm_ctx c = {training};
        fs_node *n = fs_node_new_ctx("batch_norm", batch_norm_backward_node, 3, ins, &c, sizeof c);
        if (!n)
            goto fail;
        n->saved[0] = xc;
        n->saved[1] = mean;
        n->saved[2] = invstd;
        n->saved[3] = wc;
        fs_node_attach(n, y);
        return y;
    }
    fs_nn_release_all(4, (fs_tensor *[]){xc, wc, mean, invstd});
    return y;
fail:
    fs_free(bv);
    fs_nn_release_all(5, (fs_tensor *[]){xc, wc, mean, invstd, y});
    return NULL;
}
