/* spect_project.c - 2D parallel-beam SPECT projector with attenuation, distance-dependent
 * collimator blur and a broad scatter component, and its exact adjoint (back-projector).
 *
 * img: (n, n), sino: (n_angles, n). For each angle the image is resampled (bilinear) into a
 * rotated frame R[v][u] whose rows v are depths (v = n-1 nearest the detector) and columns u
 * are detector bins. Then
 *     Q[v][u]  = W_a[v][u] * R[v][u]          W_a = exp(-attenuation between pixel and detector)
 *     p[u]     = sum_v sum_u' K_v(u - u') Q[v][u']   K_v: pixel-integrated Gaussian, sigma(d_v)
 *     sino_a   = p + s * G p                   G: broad Gaussian (scatter), s = scatter/primary
 * Each step is linear with a symmetric kernel, so the back-projector runs the transposed steps
 * in reverse order (the bilinear gather becomes a scatter-add) and <A x, y> = <x, A^T y>.
 *
 * Back-projection sums angles in a fixed number of chunks so the result does not depend on
 * the number of threads.
 */
#include <math.h>
#include <string.h>

#include "base/parallel.h"
#include "spect/spect.h"

#define BP_CHUNKS 8

struct fs_spect_plan {
    fs_spect_geometry g;
    double *cosv, *sinv;      /* (n_angles) */
    int *hw;                  /* (n_angles, n) half-width of the PSF kernel per depth row */
    float *kern;              /* (n_angles, n, kmax + 1) one side of each symmetric kernel */
    int kmax;
    float *w;                 /* (n_angles, n, n) attenuation factors, NULL without mu */
    float *skern;             /* (shw + 1) scatter kernel, NULL without scatter */
    int shw;
};

void fs_spect_geometry_defaults(fs_spect_geometry *g, int n, double pixel_mm)
{
    memset(g, 0, sizeof *g);
    g->n = n;
    g->pixel_mm = pixel_mm;
    g->n_angles = 64;
    g->arc_deg = 180.0;
    g->start_deg = 225.0;
    g->radius_mm = 250.0;
    g->sigma0_mm = 1.9;
    g->slope = 0.0177;
    g->scatter_fraction = 0.0;
    g->scatter_sigma_mm = 25.0;
}

/* One side of a pixel-integrated Gaussian of sigma (pixels), normalised over [-hw, hw]. */
static int gauss_kernel(double sigma, int hwmax, float *k)
{
    if (sigma < 1e-3) {
        k[0] = 1.0f;
        return 0;
    }
    int hw = (int)ceil(3.0 * sigma);
    if (hw > hwmax)
        hw = hwmax;
    double sum = 0.0, s2 = sigma * sqrt(2.0);
    for (int i = 0; i <= hw; i++) {
        double v = 0.5 * (erf((i + 0.5) / s2) - erf((i - 0.5) / s2));
        k[i] = (float)v;
        sum += i == 0 ? v : 2.0 * v;
    }
    for (int i = 0; i <= hw; i++)
        k[i] = (float)(k[i] / sum);
    return hw;
}

/* Source position (col, row) in the image of rotated-frame pixel (u, v). */
static inline void rot_src(const fs_spect_plan *p, int a, int u, int v, double *col, double *row)
{
    double c = 0.5 * (p->g.n - 1);
    double cu = u - c, cv = v - c, cs = p->cosv[a], sn = p->sinv[a];
    *col = -cu * sn + cv * cs + c;
    *row = cu * cs + cv * sn + c;
}

/* Bilinear gather: value of img at (col, row), zero outside. */
static inline float bilinear(const float *img, int n, double col, double row)
{
    double fx = floor(col), fy = floor(row);
    int x0 = (int)fx, y0 = (int)fy;
    double dx = col - fx, dy = row - fy;
    double v = 0.0;
    if (y0 >= 0 && y0 < n) {
        if (x0 >= 0 && x0 < n) v += (1 - dx) * (1 - dy) * img[(int64_t)y0 * n + x0];
        if (x0 + 1 >= 0 && x0 + 1 < n) v += dx * (1 - dy) * img[(int64_t)y0 * n + x0 + 1];
    }
    if (y0 + 1 >= 0 && y0 + 1 < n) {
        if (x0 >= 0 && x0 < n) v += (1 - dx) * dy * img[(int64_t)(y0 + 1) * n + x0];
        if (x0 + 1 >= 0 && x0 + 1 < n) v += dx * dy * img[(int64_t)(y0 + 1) * n + x0 + 1];
    }
    return (float)v;
}

/* The transpose of bilinear(): adds val into the four neighbours. */
static inline void bilinear_add(double *img, int n, double col, double row, double val)
{
    double fx = floor(col), fy = floor(row);
    int x0 = (int)fx, y0 = (int)fy;
    double dx = col - fx, dy = row - fy;
    if (y0 >= 0 && y0 < n) {
        if (x0 >= 0 && x0 < n) img[(int64_t)y0 * n + x0] += (1 - dx) * (1 - dy) * val;
        if (x0 + 1 >= 0 && x0 + 1 < n) img[(int64_t)y0 * n + x0 + 1] += dx * (1 - dy) * val;
    }
    if (y0 + 1 >= 0 && y0 + 1 < n) {
        if (x0 >= 0 && x0 < n) img[(int64_t)(y0 + 1) * n + x0] += (1 - dx) * dy * val;
        if (x0 + 1 >= 0 && x0 + 1 < n) img[(int64_t)(y0 + 1) * n + x0 + 1] += dx * dy * val;
    }
}

int fs_spect_contour_orbit(const fs_spect_geometry *g, const float *mu, double clearance_mm,
                           double *radii)
{
    int n = g->n;
    double c = 0.5 * (n - 1);
    for (int a = 0; a < g->n_angles; a++) {
        double phi = (g->start_deg + a * g->arc_deg / g->n_angles) * M_PI / 180.0;
        double ex = cos(phi), ey = sin(phi), far = 0.0;
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
                if (mu[(size_t)y * n + x] > 0) {
                    double s = ((x - c) * ex + (y - c) * ey) * g->pixel_mm + 0.5 * g->pixel_mm;
                    if (s > far)
                        far = s;
                }
        radii[a] = far + clearance_mm;
    }
    return 0;
}

fs_spect_plan *fs_spect_plan_new(const fs_spect_geometry *g, const float *mu)
{
    if (g->n < 2 || g->n > 4096 || g->n_angles < 1 || g->n_angles > 4096 || !(g->pixel_mm > 0)) {
        fs_set_error("spect.plan: bad geometry (n=%d, angles=%d, pixel_mm=%g)", g->n,
                     g->n_angles, g->pixel_mm);
        return NULL;
    }
    int n = g->n;
    fs_spect_plan *p = fs_alloc(sizeof *p);
    if (!p)
        return NULL;
    memset(p, 0, sizeof *p);
    p->g = *g;
    p->g.radii_mm = NULL; /* not owned: radii are read here only */
    p->cosv = fs_alloc(sizeof(double) * (size_t)g->n_angles);
    p->sinv = fs_alloc(sizeof(double) * (size_t)g->n_angles);
    p->hw = fs_alloc(sizeof(int) * (size_t)n * g->n_angles);
    if (!p->cosv || !p->sinv || !p->hw)
        goto fail;
    for (int a = 0; a < g->n_angles; a++) {
        double phi = (g->start_deg + a * g->arc_deg / g->n_angles) * M_PI / 180.0;
        p->cosv[a] = cos(phi);
        p->sinv[a] = sin(phi);
    }
    /* PSF kernels per view and depth row */
    double c = 0.5 * (n - 1);
    double rmax = g->radius_mm;
    for (int a = 0; g->radii_mm && a < g->n_angles; a++)
        rmax = fmax(rmax, g->radii_mm[a]);
    double dmax = rmax + c * g->pixel_mm;
    double smax = (g->sigma0_mm + g->slope * (dmax > 0 ? dmax : 0)) / g->pixel_mm;
    p->kmax = (int)ceil(3.0 * smax) + 1;
    if (p->kmax > n)
        p->kmax = n;
    p->kern = fs_alloc(sizeof(float) * (size_t)g->n_angles * n * (size_t)(p->kmax + 1));
    if (!p->kern)
        goto fail;
    for (int a = 0; a < g->n_angles; a++) {
        double radius = g->radii_mm ? g->radii_mm[a] : g->radius_mm;
        for (int v = 0; v < n; v++) {
            double d = radius - (v - c) * g->pixel_mm;
            if (d < 0)
                d = 0;
            double sig = (g->sigma0_mm + g->slope * d) / g->pixel_mm;
            if (g->sigma0_mm <= 0 && g->slope <= 0)
                sig = 0;
            size_t row = (size_t)a * n + v;
            p->hw[row] = gauss_kernel(sig, p->kmax, p->kern + row * (p->kmax + 1));
        }
    }
    if (g->scatter_fraction > 0) {
        double ss = g->scatter_sigma_mm / g->pixel_mm;
        int shmax = (int)ceil(3.0 * ss) + 1;
        if (shmax > n)
            shmax = n;
        p->skern = fs_alloc(sizeof(float) * (size_t)(shmax + 1));
        if (!p->skern)
            goto fail;
        p->shw = gauss_kernel(ss, shmax, p->skern);
    }
    if (mu) {
        p->w = fs_alloc(sizeof(float) * (size_t)g->n_angles * n * n);
        if (!p->w)
            goto fail;
        double step_cm = g->pixel_mm / 10.0;
#pragma omp parallel for schedule(static)
        for (int a = 0; a < g->n_angles; a++) {
            float *w = p->w + (size_t)a * n * n;
            for (int u = 0; u < n; u++) {
                double cum = 0.0;
                for (int v = n - 1; v >= 0; v--) {
                    double col, row;
                    rot_src(p, a, u, v, &col, &row);
                    double m = bilinear(mu, n, col, row) * step_cm;
                    w[(size_t)v * n + u] = (float)exp(-(cum + 0.5 * m));
                    cum += m;
                }
            }
        }
    }
    return p;
fail:
    fs_spect_plan_free(p);
    return NULL;
}

const fs_spect_geometry *fs_spect_plan_geometry(const fs_spect_plan *p) { return &p->g; }

void fs_spect_plan_free(fs_spect_plan *p)
{
    if (!p)
        return;
    fs_free(p->cosv);
    fs_free(p->sinv);
    fs_free(p->hw);
    fs_free(p->kern);
    fs_free(p->w);
    fs_free(p->skern);
    fs_free(p);
}

/* out[u] = sum_k k(|k|) in[u + k], zero outside; symmetric, so it is its own transpose. */
static void conv_sym(const double *in, double *out, int n, const float *k, int hw)
{
    for (int u = 0; u < n; u++) {
        double s = k[0] * in[u];
        for (int j = 1; j <= hw; j++) {
            if (u - j >= 0) s += k[j] * in[u - j];
            if (u + j < n) s += k[j] * in[u + j];
        }
        out[u] = s;
    }
}

static int check_angles(const fs_spect_plan *p, const int *angles, int n_sel, const char *op)
{
    if (!angles)
        return 0;
    for (int i = 0; i < n_sel; i++)
        if (angles[i] < 0 || angles[i] >= p->g.n_angles)
            return fs_set_error("%s: angle index %d outside [0, %d)", op, angles[i], p->g.n_angles);
    return 0;
}

int fs_spect_project(const fs_spect_plan *p, const float *img, float *sino, const int *angles,
                     int n_sel)
{
    if (check_angles(p, angles, n_sel, "spect.project"))
        return -1;
    int n = p->g.n, na = angles ? n_sel : p->g.n_angles, kst = p->kmax + 1;
    int err = 0;
#pragma omp parallel if ((int64_t)na * n * n > FS_PARALLEL_MIN)
    {
        double *acc = fs_alloc(sizeof(double) * 3 * (size_t)n);
        if (!acc) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp for schedule(static)
        for (int i = 0; i < na; i++) {
            if (!acc)
                continue;
            int a = angles ? angles[i] : i;
            double *prim = acc, *row = acc + n, *tmp = acc + 2 * n;
            memset(prim, 0, sizeof(double) * (size_t)n);
            const float *w = p->w ? p->w + (size_t)a * n * n : NULL;
            for (int v = 0; v < n; v++) {
                for (int u = 0; u < n; u++) {
                    double col, rr;
                    rot_src(p, a, u, v, &col, &rr);
                    double q = bilinear(img, n, col, rr);
                    row[u] = w ? q * w[(size_t)v * n + u] : q;
                }
                conv_sym(row, tmp, n, p->kern + ((size_t)a * n + v) * kst, p->hw[(size_t)a * n + v]);
                for (int u = 0; u < n; u++)
                    prim[u] += tmp[u];
            }
            float *out = sino + (size_t)a * n;
            if (p->skern) {
                conv_sym(prim, tmp, n, p->skern, p->shw);
                for (int u = 0; u < n; u++)
                    out[u] = (float)(prim[u] + p->g.scatter_fraction * tmp[u]);
            } else {
                for (int u = 0; u < n; u++)
                    out[u] = (float)prim[u];
            }
        }
        fs_free(acc);
    }
    if (err)
        return fs_set_error("spect.project: out of memory");
    return 0;
}

int fs_spect_backproject(const fs_spect_plan *p, const float *sino, float *img, const int *angles,
                         int n_sel)
{
    if (check_angles(p, angles, n_sel, "spect.backproject"))
        return -1;
    int n = p->g.n, na = angles ? n_sel : p->g.n_angles, kst = p->kmax + 1;
    int nchunk = na < BP_CHUNKS ? na : BP_CHUNKS;
    size_t nn = (size_t)n * n;
    double *bufs = fs_alloc(sizeof(double) * nn * (size_t)nchunk);
    if (!bufs)
        return -1;
    memset(bufs, 0, sizeof(double) * nn * (size_t)nchunk);
    int err = 0;
#pragma omp parallel if ((int64_t)na * n * n > FS_PARALLEL_MIN)
    {
        double *acc = fs_alloc(sizeof(double) * 3 * (size_t)n);
        if (!acc) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp for schedule(static)
        for (int c = 0; c < nchunk; c++) {
            if (!acc)
                continue;
            double *b = bufs + nn * (size_t)c;
            for (int i = c * na / nchunk; i < (c + 1) * na / nchunk; i++) {
                int a = angles ? angles[i] : i;
                double *q = acc, *row = acc + n, *tmp = acc + 2 * n;
                const float *y = sino + (size_t)a * n;
                for (int u = 0; u < n; u++)
                    row[u] = y[u];
                if (p->skern) {
                    conv_sym(row, tmp, n, p->skern, p->shw);
                    for (int u = 0; u < n; u++)
                        q[u] = row[u] + p->g.scatter_fraction * tmp[u];
                } else {
                    memcpy(q, row, sizeof(double) * (size_t)n);
                }
                const float *w = p->w ? p->w + (size_t)a * n * n : NULL;
                for (int v = 0; v < n; v++) {
                    conv_sym(q, tmp, n, p->kern + ((size_t)a * n + v) * kst, p->hw[(size_t)a * n + v]);
                    for (int u = 0; u < n; u++) {
                        double val = w ? tmp[u] * w[(size_t)v * n + u] : tmp[u];
                        if (val == 0.0)
                            continue;
                        double col, rr;
                        rot_src(p, a, u, v, &col, &rr);
                        bilinear_add(b, n, col, rr, val);
                    }
                }
            }
        }
        fs_free(acc);
    }
    if (!err) {
        for (size_t i = 0; i < nn; i++) {
            double s = 0.0;
            for (int c = 0; c < nchunk; c++)
                s += bufs[nn * (size_t)c + i];
            img[i] = (float)s;
        }
    }
    fs_free(bufs);
    if (err)
        return fs_set_error("spect.backproject: out of memory");
    return 0;
}
