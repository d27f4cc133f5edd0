/* spect_recon.c - acquisition (Poisson counts) and reconstruction of 2D SPECT sinograms.
 *
 * sino: (n_angles, n), image x: (n, n).
 * - fs_spect_acquire: scale to a total count, then Poisson draws (Knuth below 30, Hormann's
 *   PTRS above, as NumPy does), seeded by an fs_generator.
 * - fs_spect_osem: ordered-subsets EM (Hudson & Larkin 1994) on the plan's system model, which
 *   carries attenuation, depth-dependent PSF and scatter when the plan has them; subsets are
 *   interleaved angles {a : a mod S = s}.
 * - fs_spect_fbp: Ram-Lak ramp filter in the spatial domain and an unweighted back-projection.
 * - fs_spect_butterworth: 2D low-pass through a zero-padded radix-2 FFT.
 */
#include <math.h>
#include <string.h>

#include "spect/spect.h"

/* ---- noise ---- */

double fs_random_poisson(fs_generator *g, double lam)
{
    if (!(lam > 0))
        return 0.0;
    if (lam < 30.0) {
        double L = exp(-lam), prod = fs_random_uniform(g);
        int k = 0;
        while (prod > L) {
            k++;
            prod *= fs_random_uniform(g);
        }
        return k;
    }
    double slam = sqrt(lam), loglam = log(lam);
    double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
        double U = fs_random_uniform(g) - 0.5, V = fs_random_uniform(g);
        double us = 0.5 - fabs(U);
        double k = floor((2 * a / us + b) * U + lam + 0.43);
        if (us >= 0.07 && V <= vr)
            return k;
        if (k < 0 || (us < 0.013 && V > us))
            continue;
        if (log(V) + log(invalpha) - log(a / (us * us) + b) <= -lam + k * loglam - lgamma(k + 1))
            return k;
    }
}

int fs_spect_acquire(float *sino, int64_t numel, double total_counts, fs_generator *g)
{
    double sum = 0.0;
    for (int64_t i = 0; i < numel; i++) {
        if (sino[i] < 0)
            return fs_set_error("spect.acquire: negative projection value %g at %lld", sino[i],
                                (long long)i);
        sum += sino[i];
    }
    if (!(sum > 0))
        return fs_set_error("spect.acquire: the sinogram is all zero");
    if (!(total_counts > 0))
        return fs_set_error("spect.acquire: counts must be > 0 (got %g)", total_counts);
    double scale = total_counts / sum;
    for (int64_t i = 0; i < numel; i++)
        sino[i] = (float)fs_random_poisson(g, sino[i] * scale);
    return 0;
}

void fs_spect_bin_sinogram(const float *fine, int n_angles, int n_fine, int k, float *coarse)
{
    int n = n_fine / k;
    for (int a = 0; a < n_angles; a++)
        for (int u = 0; u < n; u++) {
            double s = 0.0;
            for (int j = 0; j < k; j++)
                s += fine[(size_t)a * n_fine + (size_t)u * k + j];
            coarse[(size_t)a * n + u] = (float)s;
        }
}

void fs_spect_downsample(const float *fine, int n_fine, int k, float *coarse)
{
    int n = n_fine / k;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            double s = 0.0;
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++)
                    s += fine[((size_t)y * k + i) * n_fine + (size_t)x * k + j];
            coarse[(size_t)y * n + x] = (float)(s / (k * k));
        }
}

void fs_spect_downsample_labels(const float *fine, int n_fine, int k, float *coarse)
{
    static const int rank[5] = {0, 3, 4, 2, 1}; /* tie-break priority by label */
    int n = n_fine / k;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            int count[5] = {0, 0, 0, 0, 0};
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) {
                    int l = (int)fine[((size_t)y * k + i) * n_fine + (size_t)x * k + j];
                    if (l >= 0 && l < 5)
                        count[l]++;
                }
            int best = 0;
            for (int l = 1; l < 5; l++)
                if (count[l] > count[best] || (count[l] == count[best] && rank[l] > rank[best]))
                    best = l;
            coarse[(size_t)y * n + x] = (float)best;
        }
}

/* ---- OSEM ---- */

int fs_spect_osem(const fs_spect_plan *p, const float *sino, int iterations, int subsets, float *x)
{
    const fs_spect_geometry *g = fs_spect_plan_geometry(p);
    int n = g->n, na = g->n_angles;
    if (iterations < 0 || subsets < 1 || subsets > na)
        return fs_set_error("spect.osem: need iterations >= 0 and 1 <= subsets <= %d (got %d, %d)",
                            na, iterations, subsets);
    size_t nn = (size_t)n * n;
    for (int64_t i = 0; i < (int64_t)na * n; i++)
        if (sino[i] < 0 || !isfinite(sino[i]))
            return fs_set_error("spect.osem: sinogram value %g at %lld is negative or not finite",
                                sino[i], (long long)i);
    float *sens = fs_alloc(sizeof(float) * nn * (size_t)subsets);
    float *est = fs_alloc(sizeof(float) * (size_t)na * n);
    float *bp = fs_alloc(sizeof(float) * nn);
    int *ang = fs_alloc(sizeof(int) * (size_t)na);
    int rc = -1;
    if (!sens || !est || !bp || !ang)
        goto done;
    for (int i = 0; i < na * n; i++)
        est[i] = 1.0f;
    for (int s = 0; s < subsets; s++) {
        int m = 0;
        for (int a = s; a < na; a += subsets)
            ang[m++] = a;
        if (fs_spect_backproject(p, est, sens + nn * (size_t)s, ang, m))
            goto done;
    }
    for (int it = 0; it < iterations; it++) {
        for (int s = 0; s < subsets; s++) {
            int m = 0;
            for (int a = s; a < na; a += subsets)
                ang[m++] = a;
            if (fs_spect_project(p, x, est, ang, m))
                goto done;
            for (int i = 0; i < m; i++) {
                float *e = est + (size_t)ang[i] * n;
                const float *y = sino + (size_t)ang[i] * n;
                for (int u = 0; u < n; u++)
                    e[u] = e[u] > 1e-12f ? y[u] / e[u] : 0.0f;
            }
            if (fs_spect_backproject(p, est, bp, ang, m))
                goto done;
            const float *se = sens + nn * (size_t)s;
            for (size_t i = 0; i < nn; i++)
                x[i] = se[i] > 1e-6f ? x[i] * bp[i] / se[i] : 0.0f;
        }
    }
    rc = 0;
done:
    fs_free(sens);
    fs_free(est);
    fs_free(bp);
    fs_free(ang);
    return rc;
}

/* ---- FBP ---- */

int fs_spect_fbp(const fs_spect_geometry *g0, const float *sino, float *x)
{
    fs_spect_geometry g = *g0;
    g.sigma0_mm = 0;
    g.slope = 0;
    g.scatter_fraction = 0;
    int n = g.n, na = g.n_angles;
    fs_spect_plan *p = fs_spect_plan_new(&g, NULL);
    float *filt = fs_alloc(sizeof(float) * (size_t)na * n);
    double *h = fs_alloc(sizeof(double) * (size_t)n);
    int rc = -1;
    if (!p || !filt || !h)
        goto done;
    h[0] = 0.25;
    for (int k = 1; k < n; k++)
        h[k] = (k % 2) ? -1.0 / (M_PI * M_PI * k * k) : 0.0;
    for (int a = 0; a < na; a++) {
        const float *y = sino + (size_t)a * n;
        for (int u = 0; u < n; u++) {
            double s = 0.0;
            for (int v = 0; v < n; v++)
                s += h[u > v ? u - v : v - u] * y[v];
            filt[(size_t)a * n + u] = (float)s;
        }
    }
    if (fs_spect_backproject(p, filt, x, NULL, 0))
        goto done;
    double scale = M_PI / na;
    for (size_t i = 0; i < (size_t)n * n; i++)
        x[i] = (float)(x[i] * scale);
    rc = 0;
done:
    fs_spect_plan_free(p);
    fs_free(filt);
    fs_free(h);
    return rc;
}

/* ---- Butterworth ---- */

/* In-place radix-2 FFT of m complex values (re, im), sign -1 forward, +1 inverse (unscaled). */
static void fft(double *re, double *im, int m, int sign)
{
    for (int i = 1, j = 0; i < m; i++) {
        int bit = m >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (int len = 2; len <= m; len <<= 1) {
        double ang = sign * 2.0 * M_PI / len;
        double wr = cos(ang), wi = sin(ang);
        for (int i = 0; i < m; i += len) {
            double cr = 1.0, ci = 0.0;
            for (int k = 0; k < len / 2; k++) {
                int a = i + k, b = i + k + len / 2;
                double tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
                re[b] = re[a] - tr; im[b] = im[a] - ti;
                re[a] += tr; im[a] += ti;
                double nr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = nr;
            }
        }
    }
}

int fs_spect_butterworth(float *img, int n, double pixel_mm, int order, double cutoff)
{
    if (order < 1 || !(cutoff > 0) || !(pixel_mm > 0))
        return fs_set_error("spect.butterworth: need order >= 1, cutoff > 0 and pixel_mm > 0 "
                            "(got %d, %g, %g)", order, cutoff, pixel_mm);
    int m = 1;
    while (m < 2 * n)
        m <<= 1;
    size_t mm = (size_t)m * m;
    double *re = fs_alloc(sizeof(double) * mm), *im = fs_alloc(sizeof(double) * mm);
    double *cr = fs_alloc(sizeof(double) * (size_t)m), *ci = fs_alloc(sizeof(double) * (size_t)m);
    int rc = -1;
    if (!re || !im || !cr || !ci)
        goto done;
    memset(re, 0, sizeof(double) * mm);
    memset(im, 0, sizeof(double) * mm);
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++)
            re[(size_t)y * m + x] = img[(size_t)y * n + x];
    for (int y = 0; y < n; y++)
        fft(re + (size_t)y * m, im + (size_t)y * m, m, -1);
    double pix_cm = pixel_mm / 10.0;
    for (int x = 0; x < m; x++) {
        for (int y = 0; y < m; y++) {
            cr[y] = re[(size_t)y * m + x];
            ci[y] = im[(size_t)y * m + x];
        }
        fft(cr, ci, m, -1);
        double fx = (x <= m / 2 ? x : x - m) / (m * pix_cm);
        for (int y = 0; y < m; y++) {
            double fy = (y <= m / 2 ? y : y - m) / (m * pix_cm);
            double f = sqrt(fx * fx + fy * fy);
            double hgain = 1.0 / (1.0 + pow(f / cutoff, 2.0 * order));
            cr[y] *= hgain;
            ci[y] *= hgain;
        }
        fft(cr, ci, m, 1);
        for (int y = 0; y < m; y++) {
            re[(size_t)y * m + x] = cr[y];
            im[(size_t)y * m + x] = ci[y];
        }
    }
    for (int y = 0; y < n; y++)
        fft(re + (size_t)y * m, im + (size_t)y * m, m, 1);
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++)
            img[(size_t)y * n + x] = (float)(re[(size_t)y * m + x] / (double)mm);
    rc = 0;
done:
    fs_free(re);
    fs_free(im);
    fs_free(cr);
    fs_free(ci);
    return rc;
}
