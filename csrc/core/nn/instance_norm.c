/* instance_norm.c - instance normalisation, forward/backward pair (PyTorch's
 * F.instance_norm with use_input_stats, no running statistics).
 *
 * x (N, C, *) is seen as N*C planes of S values (S the product of the trailing dims); each
 * plane is normalised by its own mean and biased variance, computed in double with two passes:
 *     y = (x - mean) invstd * weight[c] + bias[c],   invstd = 1 / sqrt(var + eps)
 * weight and bias (C) are optional (nn.InstanceNorm2d's default has neither).
 * Backward per plane (xhat = (x - mean) invstd, g = weight[c] or 1, dyh = dy g):
 *     dx = invstd (dyh - mean(dyh) - xhat mean(dyh xhat)),
 *     dweight[c] = sum over planes of c of sum dy xhat,  dbias[c] = sum dy.
 * fs_instance_norm_relu is relu(instance_norm(x)) as one op: one pass and one tensor less each
 * way. It keeps no reference to its output: backward recomputes the ReLU's mask from the saved
 * input with the forward's own float expression, (x - mean) scale + shift > 0 (scale and shift
 * saved per plane; -std=c11 keeps gcc from contracting it into an fma in one place only), so
 * where nothing else saves the output (an encoder level whose next op is a max pool) it is
 * freed after the forward.
 * OpenMP over the planes (backward's parameter sums are reduced per channel afterwards); the
 * per-plane sums in double are vectorised (omp simd: lane-wise partial sums, then added).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/nn_internal.h"

/* saved: x (contiguous), mean (N*C), invstd (N*C), weight (contiguous) or NULL, and when a ReLU
 * was applied scale and shift (N*C each) of the forward's y = (x - mean) scale + shift */
static int instance_norm_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_tensor *x = n->saved[0], *wt = n->saved[3];
    const float *mean = fs_data(n->saved[1]), *invstd = fs_data(n->saved[2]);
    const float *xd = fs_data(x), *dy = fs_data(dout), *wd = wt ? fs_data(wt) : NULL;
    const float *scale = n->saved[4] ? fs_data(n->saved[4]) : NULL;
    const float *shift = n->saved[4] ? fs_data(n->saved[5]) : NULL;
    const int64_t N = x->size[0], C = x->size[1], P = N * C, S = P ? fs_numel(x) / P : 0;
    bool want_x = fs_node_wants(n, 0), want_w = fs_node_wants(n, 1), want_b = fs_node_wants(n, 2);
    fs_tensor *dx = NULL, *dw = NULL, *db = NULL;
    double *sums = NULL; /* (P, 2): sum dy, sum dy xhat per plane */
    if (want_x && !(dx = fs_tensor_new(x->ndim, x->size)))
        goto fail;
    if (want_w && !(dw = fs_tensor_zeros(1, &C)))
        goto fail;
    if (want_b && !(db = fs_tensor_zeros(1, &C)))
        goto fail;
    if (!(sums = fs_alloc((size_t)(P ? P : 1) * 2 * sizeof(double))))
        goto fail;
    float *dxd = dx ? fs_data(dx) : NULL;
#pragma omp parallel for schedule(static) if (P * S > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < P; p++) {
        const float *xp = xd + p * S, *gp = dy + p * S;
        const float mu = mean[p], is = invstd[p];
        const float sc = scale ? scale[p] : 0.0f, sh = scale ? shift[p] : 0.0f;
        double sg = 0.0, sgx = 0.0;
        if (scale) {
#pragma omp simd reduction(+ : sg, sgx)
            for (int64_t s = 0; s < S; s++) {
                /* dy where y > 0, else 0, as a bit mask: gcc keeps a select here scalar */
                float g = gp[s];
                uint32_t bits;
                memcpy(&bits, &g, sizeof bits);
                bits &= 0u - (uint32_t)((xp[s] - mu) * sc + sh > 0.0f);
                memcpy(&g, &bits, sizeof g);
                sg += (double)g;
                sgx += (double)g * (double)(xp[s] - mu);
            }
        } else {
#pragma omp simd reduction(+ : sg, sgx)
            for (int64_t s = 0; s < S; s++) {
                sg += (double)gp[s];
                sgx += (double)gp[s] * (double)(xp[s] - mu);
            }
        }
        sgx *= is; /* sum dy xhat */
        sums[2 * p] = sg;
        sums[2 * p + 1] = sgx;
        if (!dxd)
            continue;
        const double g = wd ? wd[p % C] : 1.0;
        const float a = (float)(g * is), mg = (float)(sg / (double)S);
        const float k = (float)(sgx * is / (double)S);
        float *dp = dxd + p * S;
        if (scale)
            for (int64_t s = 0; s < S; s++)
                dp[s] = a * (((xp[s] - mu) * sc + sh > 0.0f ? gp[s] : 0.0f) - mg -
                             (xp[s] - mu) * k);
        else
            for (int64_t s = 0; s < S; s++)
                dp[s] = a * (gp[s] - mg - (xp[s] - mu) * k);
    }
    for (int64_t p = 0; p < P; p++) {
        if (dw)
            fs_data(dw)[p % C] += (float)sums[2 * p + 1];
        if (db)
            fs_data(db)[p % C] += (float)sums[2 * p];
    }
    fs_free(sums);
    dinputs[0] = dx;
    dinputs[1] = dw;
    dinputs[2] = db;
    return 0;
fail:
    fs_free(sums);
    fs_nn_release_all(3, (fs_tensor *[]){dx, dw, db});
    return -1;
}

static int check_vec(const char *what, const fs_tensor *t, const fs_tensor *x, int64_t C)
{
    if (t && (t->ndim != 1 || t->size[0] != C))
        return fs_set_error("instance_norm: %s %s must have shape (%lld) for input %s", what,
                            FS_SHAPE(t), (long long)C, FS_SHAPE(x));
    return 0;
}

static fs_tensor *instance_norm(fs_tensor *x, fs_tensor *weight, fs_tensor *bias, double eps,
                                bool relu)
{
    if (x->ndim < 3)
        return fs_set_error("instance_norm: input must be (N, C, *) with at least one spatial "
                            "dim, got %s", FS_SHAPE(x)), NULL;
    const int64_t N = x->size[0], C = x->size[1], P = N * C, S = P ? fs_numel(x) / P : 0;
    if (check_vec("weight", weight, x, C) < 0 || check_vec("bias", bias, x, C) < 0)
        return NULL;
    if (P > 0 && S <= 1)
        return fs_set_error("instance_norm: expected more than 1 spatial element per channel, "
                            "got input %s", FS_SHAPE(x)), NULL;
    if (!(eps >= 0.0))
        return fs_set_error("instance_norm: eps must be >= 0, got %g", eps), NULL;
    fs_tensor *xc = fs_nn_contig(x), *wc = weight ? fs_nn_contig(weight) : NULL;
    fs_tensor *bc = bias ? fs_nn_contig(bias) : NULL;
    fs_tensor *mean = fs_tensor_new(1, &P), *invstd = fs_tensor_new(1, &P);
    fs_tensor *y = fs_tensor_new(x->ndim, x->size);
    fs_tensor *scale = relu ? fs_tensor_new(1, &P) : NULL;
    fs_tensor *shift = relu ? fs_tensor_new(1, &P) : NULL;
    if (!xc || (weight && !wc) || (bias && !bc) || !mean || !invstd || !y ||
        (relu && (!scale || !shift)))
        goto fail;
    const float *xd = fs_data(xc), *wd = wc ? fs_data(wc) : NULL, *bd = bc ? fs_data(bc) : NULL;
    float *yd = fs_data(y), *md = fs_data(mean), *id = fs_data(invstd);
    float *scd = scale ? fs_data(scale) : NULL, *shd = shift ? fs_data(shift) : NULL;
#pragma omp parallel for schedule(static) if (P * S > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < P; p++) {
        const float *xp = xd + p * S;
        float *yp = yd + p * S;
        /* two passes: the mean, then squared deviations from its float rounding m, corrected
         * by (mu - m)^2 (as batch_norm) */
        double sum = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < S; s++)
            sum += xp[s];
        const double mu = sum / (double)S;
        const float m = (float)mu;
#pragma omp simd reduction(+ : ss)
        for (int64_t s = 0; s < S; s++) {
            float d = xp[s] - m;
            ss += (double)d * d;
        }
        const double dm = mu - (double)m;
        double var = ss / (double)S - dm * dm;
        if (var < 0.0)
            var = 0.0;
        const double is = 1.0 / sqrt(var + eps);
        md[p] = m;
        id[p] = (float)is;
        const int64_t c = p % C;
        const float sc = (float)(is * (wd ? wd[c] : 1.0)), sh = bd ? bd[c] : 0.0f;
        if (relu) {
            scd[p] = sc;
            shd[p] = sh;
            for (int64_t s = 0; s < S; s++) {
                float v = (xp[s] - m) * sc + sh;
                yp[s] = v > 0.0f ? v : 0.0f;
            }
        } else
            for (int64_t s = 0; s < S; s++)
                yp[s] = (xp[s] - m) * sc + sh;
    }
    fs_tensor_release(bc);
    bc = NULL;
    fs_tensor *ins[3] = {x, weight, bias};
    if (fs_any_requires_grad(3, ins)) {
        fs_node *n = fs_node_new("instance_norm", instance_norm_backward_node, 3, ins);
        if (!n)
            goto fail;
        n->saved[0] = xc;
        n->saved[1] = mean;
        n->saved[2] = invstd;
        n->saved[3] = wc;
        n->saved[4] = scale;
        n->saved[5] = shift;
        fs_node_attach(n, y);
        return y;
    }
    fs_nn_release_all(6, (fs_tensor *[]){xc, wc, mean, invstd, scale, shift});
    return y;
fail:
    fs_nn_release_all(8, (fs_tensor *[]){xc, wc, bc, mean, invstd, y, scale, shift});
    return NULL;
}

fs_tensor *fs_instance_norm(fs_tensor *x, fs_tensor *weight, fs_tensor *bias, double eps)
{
    return instance_norm(x, weight, bias, eps, false);
}

fs_tensor *fs_instance_norm_relu(fs_tensor *x, fs_tensor *weight, fs_tensor *bias, double eps)
{
    return instance_norm(x, weight, bias, eps, true);
}
