/* tsne.c - exact t-SNE (van der Maaten & Hinton 2008, the reference tsne.py's algorithm).
 *   x: (N, D) input points, y: (N, d) embedding, P, W: (N, N) row-major doubles.
 * 1. squared distances D_ij; for each row a binary search on beta_i = 1 / (2 sigma_i^2) until
 *    the entropy of p_{j|i} = exp(-beta_i D_ij) / sum equals log(perplexity);
 * 2. P = (P + P^T) / (2N), floored at 1e-12;
 * 3. gradient descent on KL(P || Q), q_ij = w_ij / Z with the Student-t kernel
 *    w_ij = 1 / (1 + |y_i - y_j|^2): dC/dy_i = 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j), with
 *    momentum (0.5, then 0.8 from step 250), per-coordinate gains (+0.2 / *0.8, floor 0.01),
 *    P exaggerated for the first 250 steps, y re-centred after each step. The learning rate
 *    defaults to max(N / early_exaggeration / 4, 50): the classic fixed 200 leaves small sets
 *    (90 points) in poor minima (KL 0.4-0.8 instead of 0.02 for most seeds).
 * Every loop over rows computes each row's values (and its partial sums) in one thread in a
 * fixed order; totals add the per-row partials serially, so a result does not depend on the
 * thread count. All arithmetic is in double; the result is rounded to float at the end. */
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/memory.h"
#include "base/parallel.h"
#include "stats/tsne.h"

#define EXAGGERATION_STEPS 250
#define MOMENTUM_SWITCH 250
#define P_FLOOR 1e-12

fs_tsne_options fs_tsne_options_default(void)
{
    return (fs_tsne_options){.perplexity = 30.0, .iterations = 1000, .learning_rate = 0.0,
                             .early_exaggeration = 12.0, .dims = 2};
}

/* Row i of the conditional P: p[j] = p_{j|i} for distances d[j] (d[i] is skipped), with the
 * entropy matched to log(perplexity) by bisection on beta (50 halvings at most, tol 1e-5). */
static void row_conditional(const double *d, int64_t n, int64_t i, double log_perp, double *p)
{
    double dmin = INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (j != i && d[j] < dmin)
            dmin = d[j];
    double beta = 1.0, lo = -INFINITY, hi = INFINITY, sum = 0.0;
    for (int tries = 0; tries < 50; tries++) {
        /* exp(-beta (d - dmin)) keeps the largest term at 1: no underflow to a zero row */
        double sum_dp = 0.0;
        sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double v = j == i ? 0.0 : exp(-beta * (d[j] - dmin));
            p[j] = v;
            sum += v;
            sum_dp += (j == i ? 0.0 : (d[j] - dmin)) * v;
        }
        double h = log(sum) + beta * sum_dp / sum; /* entropy in nats */
        double diff = h - log_perp;
        if (fabs(diff) < 1e-5)
            break;
        if (diff > 0) { /* too flat: sharpen */
            lo = beta;
            beta = isinf(hi) ? beta * 2.0 : (beta + hi) / 2.0;
        } else {
            hi = beta;
            beta = isinf(lo) ? beta / 2.0 : (beta + lo) / 2.0;
        }
    }
    for (int64_t j = 0; j < n; j++)
        p[j] /= sum;
}

/* The fixed-order sum of n per-row partials. */
static double serial_sum(const double *v, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

static int check_args(const fs_tensor *x, const fs_tsne_options *o)
{
    if (x->ndim != 2)
        return fs_set_error("tsne: need a 2-D (N, D) tensor of points, got shape %s",
                            fs_shape_str(x->ndim, x->size));
    int64_t n = x->size[0];
    if (n < 2)
        return fs_set_error("tsne: need at least 2 points, got %lld (shape %s)", (long long)n,
                            fs_shape_str(x->ndim, x->size));
    if (x->size[1] < 1)
        return fs_set_error("tsne: points have no coordinates (shape %s)",
                            fs_shape_str(x->ndim, x->size));
    if (!(o->perplexity > 0) || !(o->perplexity < (double)n))
        return fs_set_error("tsne: perplexity must be in (0, N) = (0, %lld), got %g "
                            "(use fewer neighbours or more points)", (long long)n, o->perplexity);
    if (o->iterations < 1)
        return fs_set_error("tsne: iterations must be >= 1, got %d", o->iterations);
    if (!(o->learning_rate >= 0) || !isfinite(o->learning_rate))
        return fs_set_error("tsne: learning_rate must be > 0 (or \"auto\"), got %g",
                            o->learning_rate);
    if (!(o->early_exaggeration >= 1) || !isfinite(o->early_exaggeration))
        return fs_set_error("tsne: early_exaggeration must be >= 1, got %g",
                            o->early_exaggeration);
    if (o->dims < 1 || o->dims > 3)
        return fs_set_error("tsne: dims must be 1, 2 or 3, got %d", o->dims);
    if ((double)n * (double)n * 2 * sizeof(double) > 8e9)
        return fs_set_error("tsne: %lld points need %.1f GB for the exact (N, N) matrices; "
                            "subsample to a few thousand", (long long)n,
                            (double)n * (double)n * 2 * sizeof(double) / 1e9);
    return 0;
}

fs_tensor *fs_tsne_embed(const fs_tensor *x, const fs_tsne_options *opt, fs_generator *g,
                         double *kl)
{
    fs_tsne_options o = opt ? *opt : fs_tsne_options_default();
    if (check_args(x, &o))
        return NULL;
    const int64_t n = x->size[0], D = x->size[1], nd = o.dims;
    const int64_t nn = n * n;
    /* auto (Belkina et al. 2019, sklearn's "auto"): a fixed 200 overshoots on small N */
    const double eta = o.learning_rate > 0 ? o.learning_rate
                                           : fmax((double)n / o.early_exaggeration / 4.0, 50.0);

    float *xf = fs_alloc((size_t)(n * D) * sizeof *xf);
    double *P = fs_alloc((size_t)nn * sizeof *P);
    double *W = fs_alloc((size_t)nn * sizeof *W); /* distances first, then the kernel w_ij */
    double *Y = fs_alloc((size_t)(n * nd) * sizeof *Y);
    double *dY = fs_alloc((size_t)(n * nd) * sizeof *dY);
    double *iY = fs_alloc((size_t)(n * nd) * sizeof *iY);
    double *gains = fs_alloc((size_t)(n * nd) * sizeof *gains);
    double *part = fs_alloc((size_t)n * sizeof *part); /* per-row partial sums */
    fs_tensor *out = NULL;
    if (!xf || !P || !W || !Y || !dY || !iY || !gains || !part)
        goto done;

    fs_tensor_read(x, xf);
    for (int64_t k = 0; k < n * D; k++)
        if (!isfinite(xf[k])) {
            fs_set_error("tsne: the input has a non-finite value (%g) at point %lld, "
                         "coordinate %lld (1-based)", (double)xf[k], (long long)(k / D + 1),
                         (long long)(k % D + 1));
            goto done;
        }

    /* 1. squared distances and the conditional P, row by row */
    const double log_perp = log(o.perplexity);
#pragma omp parallel for schedule(static) if(nn * D > FS_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        double *d = W + i * n;
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < D; k++) {
                double t = (double)xf[i * D + k] - (double)xf[j * D + k];
                s += t * t;
            }
            d[j] = s;
        }
        row_conditional(d, n, i, log_perp, P + i * n);
    }

    /* 2. symmetrise: P_ij = (p_{j|i} + p_{i|j}) / 2N, upper triangle mirrored */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double v = fmax((P[i * n + j] + P[j * n + i]) / (2.0 * (double)n), P_FLOOR);
            P[i * n + j] = P[j * n + i] = v;
        }
    for (int64_t i = 0; i < n; i++)
        P[i * n + i] = 0.0;

    /* 3. gradient descent */
    for (int64_t k = 0; k < n * nd; k++) {
        Y[k] = 1e-4 * fs_random_normal(g);
        iY[k] = 0.0;
        gains[k] = 1.0;
    }
    const int par = nn * nd > FS_PARALLEL_MIN;
    for (int it = 0; it < o.iterations; it++) {
        const double exag = it < EXAGGERATION_STEPS ? o.early_exaggeration : 1.0;
        const double momentum = it < MOMENTUM_SWITCH ? 0.5 : 0.8;
#pragma omp parallel for schedule(static) if(par)
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                double d2 = 0.0;
                for (int64_t c = 0; c < nd; c++) {
                    double t = Y[i * nd + c] - Y[j * nd + c];
                    d2 += t * t;
                }
                double w = j == i ? 0.0 : 1.0 / (1.0 + d2);
                W[i * n + j] = w;
                s += w;
            }
            part[i] = s;
        }
        const double inv_z = 1.0 / serial_sum(part, n);
#pragma omp parallel for schedule(static) if(par)
        for (int64_t i = 0; i < n; i++) {
            double gi[3] = {0.0, 0.0, 0.0};
            for (int64_t j = 0; j < n; j++) {
                double w = W[i * n + j];
                double m = (exag * P[i * n + j] - w * inv_z) * w;
                for (int64_t c = 0; c < nd; c++)
                    gi[c] += m * (Y[i * nd + c] - Y[j * nd + c]);
            }
            for (int64_t c = 0; c < nd; c++)
                dY[i * nd + c] = 4.0 * gi[c];
        }
        for (int64_t k = 0; k < n * nd; k++) {
            double gk = (dY[k] > 0) != (iY[k] > 0) ? gains[k] + 0.2 : gains[k] * 0.8;
            gains[k] = gk < 0.01 ? 0.01 : gk;
            iY[k] = momentum * iY[k] - eta * gains[k] * dY[k];
            Y[k] += iY[k];
        }
        for (int64_t c = 0; c < nd; c++) {
            double mean = 0.0;
            for (int64_t i = 0; i < n; i++)
                mean += Y[i * nd + c];
            mean /= (double)n;
            for (int64_t i = 0; i < n; i++)
                Y[i * nd + c] -= mean;
        }
    }

    if (kl) {
        /* KL(P || Q) at the final Y: W and Z of the final positions */
#pragma omp parallel for schedule(static) if(par)
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                double d2 = 0.0;
                for (int64_t c = 0; c < nd; c++) {
                    double t = Y[i * nd + c] - Y[j * nd + c];
                    d2 += t * t;
                }
                W[i * n + j] = j == i ? 0.0 : 1.0 / (1.0 + d2);
                s += W[i * n + j];
            }
            part[i] = s;
        }
        const double z = serial_sum(part, n);
#pragma omp parallel for schedule(static) if(par)
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                if (j == i)
                    continue;
                double p = P[i * n + j], q = fmax(W[i * n + j] / z, P_FLOOR);
                s += p * log(p / q);
            }
            part[i] = s;
        }
        *kl = serial_sum(part, n);
    }

    int64_t size[2] = {n, nd};
    out = fs_tensor_new(2, size);
    if (out) {
        float *o_data = fs_data(out);
        for (int64_t k = 0; k < n * nd; k++)
            o_data[k] = (float)Y[k];
    }
done:
    fs_free(xf);
    fs_free(P);
    fs_free(W);
    fs_free(Y);
    fs_free(dY);
    fs_free(iY);
    fs_free(gains);
    fs_free(part);
    return out;
}
