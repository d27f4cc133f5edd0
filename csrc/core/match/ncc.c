/* ncc.c - normalised cross-correlation of a template over an image, and the best match with
 * a sub-pixel parabolic peak (see match.h for the definitions and the border rule).
 *
 * image: (H, W), template: (h, w) odd sizes, out: (H, W); row-major float32, sums in double.
 */
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/memory.h"
#include "match/match.h"

/* The template less its mean (tc: (h, w)) and its sum of squares; 0 for a constant one. */
static double centre_template(const float *tpl, int h, int w, double *tc)
{
    int n = h * w;
    double m = 0;
    for (int i = 0; i < n; i++)
        m += tpl[i];
    m /= n;
    double ss = 0;
    for (int i = 0; i < n; i++) {
        tc[i] = tpl[i] - m;
        ss += tc[i] * tc[i];
    }
    return ss;
}

/* NCC of the window centred on (y, x), which must fit inside the image. Two passes (mean,
 * then deviations), so a constant window has exactly zero variance and scores 0. */
static double ncc_at(const float *img, int W, const double *tc, double tss, int h, int w,
                     int y, int x)
{
    if (tss <= 0)
        return 0.0;
    int y0 = y - h / 2, x0 = x - w / 2;
    double m = 0;
    for (int i = 0; i < h; i++) {
        const float *row = img + (size_t)(y0 + i) * W + x0;
        for (int j = 0; j < w; j++)
            m += row[j];
    }
    m /= (double)h * w;
    double num = 0, ss = 0;
    for (int i = 0; i < h; i++) {
        const float *row = img + (size_t)(y0 + i) * W + x0;
        const double *t = tc + (size_t)i * w;
        for (int j = 0; j < w; j++) {
            double d = row[j] - m;
            num += d * t[j];
            ss += d * d;
        }
    }
    if (ss <= 0)
        return 0.0;
    double r = num / sqrt(ss * tss);
    return r > 1 ? 1 : r < -1 ? -1 : r;
}

static int check_sizes(const char *op, int H, int W, int h, int w)
{
    if (H < 1 || W < 1 || h < 1 || w < 1)
        return fs_set_error("%s: empty image (%d, %d) or template (%d, %d)", op, H, W, h, w);
    if (h % 2 == 0 || w % 2 == 0)
        return fs_set_error("%s: template sizes must be odd (a centre pixel), got (%d, %d)", op, h,
                            w);
    if (h > H || w > W)
        return fs_set_error("%s: template (%d, %d) is larger than the image (%d, %d)", op, h, w, H,
                            W);
    return 0;
}

int fs_match_ncc(const float *image, int H, int W, const float *tpl, int h, int w, float *out)
{
    if (check_sizes("match.ncc", H, W, h, w))
        return -1;
    double *tc = fs_alloc(sizeof(double) * (size_t)h * w);
    if (!tc)
        return -1;
    double tss = centre_template(tpl, h, w, tc);
    memset(out, 0, sizeof(float) * (size_t)H * W);
    int ylo = h / 2, yhi = H - h / 2, xlo = w / 2, xhi = W - w / 2; /* valid: [lo, hi) */
#pragma omp parallel for schedule(static) if((double)H * W * h * w > 1e5)
    for (int y = ylo; y < yhi; y++)
        for (int x = xlo; x < xhi; x++)
            out[(size_t)y * W + x] = (float)ncc_at(image, W, tc, tss, h, w, y, x);
    fs_free(tc);
    return 0;
}

/* Vertex offset of the parabola through (-1, l), (0, c), (1, r), bounded to +/- 0.5. */
static double parabola(double l, double c, double r)
{
    double den = l - 2 * c + r;
    if (!(den < 0))
        return 0.0;
    double d = 0.5 * (l - r) / den;
    return d > 0.5 ? 0.5 : d < -0.5 ? -0.5 : d;
}

/* NCC at (y, x) minus the prior's penalty (none when prior <= 0). */
static double scored(const float *image, int W, const double *tc, double tss, int h, int w,
                     int y, int x, double cx, double cy, double prior)
{
    double v = ncc_at(image, W, tc, tss, h, w, y, x);
    if (prior > 0)
        v -= ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * prior * prior);
    return v;
}

int fs_match_best(const float *image, int H, int W, const float *tpl, int h, int w,
                  int window, double cx, double cy, double prior, fs_match_result *r)
{
    if (check_sizes("match.best", H, W, h, w))
        return -1;
    if (prior > 0 && window < 0)
        return fs_set_error("match.best: a prior needs a window and its centre");
    if (!(prior >= 0) || !isfinite(prior))
        return fs_set_error("match.best: prior must be a finite number of pixels >= 0, got %g", prior);
    int ylo = h / 2, yhi = H - h / 2 - 1, xlo = w / 2, xhi = W - w / 2 - 1; /* valid: [lo, hi] */
    int sy0 = ylo, sy1 = yhi, sx0 = xlo, sx1 = xhi;
    if (window >= 0) {
        if (!isfinite(cx) || !isfinite(cy))
            return fs_set_error("match.best: the window centre must be finite");
        double icx = floor(cx + 0.5), icy = floor(cy + 0.5);
        sx0 = (int)fmax(xlo, icx - window);
        sx1 = (int)fmin(xhi, icx + window);
        sy0 = (int)fmax(ylo, icy - window);
        sy1 = (int)fmin(yhi, icy + window);
        if (sx0 > sx1 || sy0 > sy1)
            return fs_set_error("match.best: the window +/- %d around (%g, %g) holds no position "
                                "where the template (%d, %d) fits (rows %d..%d, columns %d..%d, "
                                "0-based)", window, cy, cx, h, w, ylo, yhi, xlo, xhi);
    }
    int ny = sy1 - sy0 + 1, nx = sx1 - sx0 + 1;
    double *tc = fs_alloc(sizeof(double) * (size_t)h * w);
    double *sc = fs_alloc(sizeof(double) * (size_t)ny * nx);
    if (!tc || !sc) {
        fs_free(tc);
        fs_free(sc);
        return -1;
    }
    double tss = centre_template(tpl, h, w, tc);
#pragma omp parallel for schedule(static) if((double)ny * nx * h * w > 1e5)
    for (int y = sy0; y <= sy1; y++)
        for (int x = sx0; x <= sx1; x++)
            sc[(size_t)(y - sy0) * nx + (x - sx0)] = scored(image, W, tc, tss, h, w, y, x, cx, cy, prior);
    int by = sy0, bx = sx0;
    double best = sc[0];
    for (int y = sy0; y <= sy1; y++)
        for (int x = sx0; x <= sx1; x++) {
            double v = sc[(size_t)(y - sy0) * nx + (x - sx0)];
            if (v > best) {
                best = v;
                by = y;
                bx = x;
            }
        }
    /* neighbours for the parabola: from the image, so a peak on the window's edge still fits; a
     * perfect match (score >= 1 - 1e-6) keeps its integer position, which the parabola would
     * bias by the asymmetry of its neighbours */
    double fx = 0, fy = 0;
    int perfect = prior <= 0 && best >= 1 - 1e-6; /* the window is the template: offset 0 */
    if (!perfect && bx - 1 >= xlo && bx + 1 <= xhi)
        fx = parabola(scored(image, W, tc, tss, h, w, by, bx - 1, cx, cy, prior), best,
                      scored(image, W, tc, tss, h, w, by, bx + 1, cx, cy, prior));
    if (!perfect && by - 1 >= ylo && by + 1 <= yhi)
        fy = parabola(scored(image, W, tc, tss, h, w, by - 1, bx, cx, cy, prior), best,
                      scored(image, W, tc, tss, h, w, by + 1, bx, cx, cy, prior));
    fs_free(tc);
    fs_free(sc);
    r->ix = bx;
    r->iy = by;
    r->x = bx + fx;
    r->y = by + fy;
    r->score = best;
    return 0;
}
