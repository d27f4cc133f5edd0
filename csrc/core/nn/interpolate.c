/* interpolate.c - 2-D upsampling/downsampling to a scale factor or to a size, nearest and
 * bilinear (align_corners false), forward/backward pair.
 *
 * x (N, C, H, W) or (C, H, W) -> y (N, C, OH, OW): OH = floor(H * scale_h) with r = 1/scale_h
 * (PyTorch's scale_factor), or OH given with r = H/OH (PyTorch's size). The source coordinate
 * of output row i:
 *     nearest:  src = min(floor(i r), H - 1)
 *     bilinear: src = max((i + 0.5) r - 0.5, 0); h0 = floor(src), h1 = min(h0 + 1, H - 1),
 *               weights (1 - l, l) with l = src - h0 (and likewise for columns).
 * Backward adds each output gradient to its sources with the same weights (OpenMP over planes).
 * The source indices and weights of every output row and column are tabled once per call.
 * Bilinear runs as two passes per plane through a (H, OW) buffer of the thread's own:
 *   forward:  each source row interpolated along its columns once (H rows, not 2 OH: 4x fewer
 *             at scale 2), then each output row = l0 row(i0) + l1 row(i1), a vector loop. The
 *             products and sums are the per-pixel formula's, in its order, so the result is
 *             the same to the bit. At scale 2 (columns_double) the inner columns of the first
 *             pass are vector loops too, with the table's weights 0.25 and 0.75.
 *   backward: each output gradient row added into its two source rows of the buffer (vector
 *             loops, in ascending output row), then each buffer row gathered per source column
 *             (the columns' table inverted; at scale 2 the inner columns as a vector loop).
 */
#include <math.h>
#include <string.h>

#include "nn/nn_internal.h"

typedef struct {
    int64_t planes, h, w, oh, ow;
    float rh, rw; /* 1 / scale */
    int mode;
} interp_shape;

/* Source index pair and weights of output coordinate i along a dim of size n. */
static inline void src_coord(const interp_shape *s, int64_t i, float r, int64_t n, int64_t *i0,
                             int64_t *i1, float *l0, float *l1)
{
    if (s->mode == FS_INTERP_NEAREST) {
        int64_t k = (int64_t)floorf((float)i * r);
        *i0 = *i1 = k < n - 1 ? k : n - 1;
        *l0 = 1.0f;
        *l1 = 0.0f;
        return;
    }
    float src = ((float)i + 0.5f) * r - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    int64_t k = (int64_t)src;
    if (k > n - 1)
        k = n - 1;
    *i0 = k;
    *i1 = k + (k < n - 1 ? 1 : 0);
    *l1 = src - (float)k;
    *l0 = 1.0f - *l1;
}

/* One output coordinate's two sources and their weights (src_coord's results). */
typedef struct coord {
    int64_t i0, i1;
    float l0, l1;
} coord;

/* The rows' table (oh entries) then the columns' (ow entries), computed once per call rather
 * than once per output pixel and plane; NULL when out of memory. */
static coord *coord_tables(const interp_shape *s)
{
    coord *t = fs_alloc((size_t)(s->oh + s->ow) * sizeof *t);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < s->oh; i++)
        src_coord(s, i, s->rh, s->h, &t[i].i0, &t[i].i1, &t[i].l0, &t[i].l1);
    for (int64_t i = 0; i < s->ow; i++)
        src_coord(s, i, s->rw, s->w, &t[s->oh + i].i0, &t[s->oh + i].i1, &t[s->oh + i].l0,
                  &t[s->oh + i].l1);
    return t;
}

/* True when the columns' table is bilinear scale 2's (w >= 2, ow = 2w): output column 2k (k >= 1)
 * reads source columns (k-1, k) with weights (0.25, 0.75) and 2k+1 (k <= w-2) reads (k, k+1)
 * with (0.75, 0.25). Its inner columns then need no table: vector loops, same products. */
static bool columns_double(const coord *cols, int64_t w, int64_t ow)
{
    if (w < 2 || ow != 2 * w)
        return false;
    for (int64_t k = 1; k < w; k++) {
        const coord e = cols[2 * k], o = cols[2 * k - 1];
        if (e.i0 != k - 1 || e.i1 != k || e.l0 != 0.25f || e.l1 != 0.75f || o.i0 != k - 1 ||
            o.i1 != k || o.l0 != 0.75f || o.l1 != 0.25f)
            return false;
    }
    return true;
}

/* One output column's share of a source column's gradient. */
typedef struct tap {
    int32_t ow;
    float l;
} tap;

/* The columns' table (ow entries) inverted, by a counting sort: first (w + 1), taps (2 ow). */
static void invert_columns(int32_t *first, tap *taps, const coord *cols, int64_t ow, int64_t w)
{
    memset(first, 0, (size_t)(w + 1) * sizeof *first);
    for (int64_t i = 0; i < ow; i++) {
        first[cols[i].i0 + 1]++;
        first[cols[i].i1 + 1]++;
    }
    for (int64_t j = 0; j < w; j++)
        first[j + 1] += first[j];
    for (int64_t i = 0; i < ow; i++) { /* fill in ascending i: i0's entry before i1's */
        taps[first[cols[i].i0]++] = (tap){(int32_t)i, cols[i].l0};
        taps[first[cols[i].i1]++] = (tap){(int32_t)i, cols[i].l1};
    }
    for (int64_t j = w; j > 0; j--) /* each first[j] moved to the next column's start */
        first[j] = first[j - 1];
    first[0] = 0;
}

static int interp_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const interp_shape *s = n->ctx;
    const bool nearest = s->mode == FS_INTERP_NEAREST;
    fs_tensor *dx = nearest ? fs_tensor_zeros(n->inputs[0]->ndim, n->inputs[0]->size)
                            : fs_tensor_new(n->inputs[0]->ndim, n->inputs[0]->size);
    coord *t = dx ? coord_tables(s) : NULL;
    /* bilinear: the buffer's row h gathers, per source column, its output columns' shares;
     * the gather reads the columns' table inverted (CSR: for column j, the entries first[j] ..
     * first[j+1]-1 of taps, in ascending output column, i0's before i1's) */
    int32_t *first = t && !nearest ? fs_alloc((size_t)(s->w + 1) * sizeof *first) : NULL;
    tap *taps = first ? fs_alloc((size_t)(2 * s->ow) * sizeof *taps) : NULL;
    if (!t || (!nearest && !taps)) {
        fs_free(first);
        fs_free(t);
        fs_tensor_release(dx);
        return -1;
    }
    if (!nearest)
        invert_columns(first, taps, t + s->oh, s->ow, s->w);
    const coord *rows = t, *cols = t + s->oh;
    const int64_t H = s->h, HW = s->h * s->w, OP = s->oh * s->ow, W = s->w, OW = s->ow;
    const float *dy = fs_data(dout);
    float *d = fs_data(dx);
    const bool dbl = !nearest && columns_double(cols, W, OW);
    bool oom = false;
#pragma omp parallel if (s->planes * OP > FS_PARALLEL_MIN)
    {
        float *buf = nearest ? NULL : fs_alloc((size_t)(H * OW) * sizeof *buf);
        if (!nearest && !buf) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < s->planes; p++) {
            float *dp = d + p * HW;
            const float *g = dy + p * OP;
            if (nearest) {
                for (int64_t oh = 0; oh < s->oh; oh++) {
                    float *d0 = dp + rows[oh].i0 * W;
                    const float *gr = g + oh * OW;
                    for (int64_t ow = 0; ow < OW; ow++)
                        d0[cols[ow].i0] += gr[ow];
                }
                continue;
            }
            if (!buf)
                continue;
            memset(buf, 0, (size_t)(H * OW) * sizeof *buf);
            for (int64_t oh = 0; oh < s->oh; oh++) {
                const coord r = rows[oh];
                float *b0 = buf + r.i0 * OW, *b1 = buf + r.i1 * OW;
                const float *gr = g + oh * OW;
                for (int64_t ow = 0; ow < OW; ow++)
                    b0[ow] += r.l0 * gr[ow];
                for (int64_t ow = 0; ow < OW; ow++)
                    b1[ow] += r.l1 * gr[ow];
            }
            for (int64_t h = 0; h < H; h++) {
                const float *br = buf + h * OW;
                float *dr = dp + h * W;
                for (int64_t w = 0; w < W; w++) {
                    if (dbl && w == 1)
                        w = W - 1; /* the inner columns below */
                    float v = 0.0f;
                    for (int32_t k = first[w]; k < first[w + 1]; k++)
                        v += taps[k].l * br[taps[k].ow];
                    dr[w] = v;
                }
                if (dbl)
                    for (int64_t w = 1; w < W - 1; w++)
                        dr[w] = 0.25f * br[2 * w - 1] + 0.75f * br[2 * w] +
                                0.75f * br[2 * w + 1] + 0.25f * br[2 * w + 2];
            }
        }
        fs_free(buf);
    }
    fs_free(taps);
    fs_free(first);
    fs_free(t);
    if (oom) {
        fs_tensor_release(dx);
        return fs_set_error("%s backward: out of memory", n->name);
    }
    dinputs[0] = dx;
    return 0;
}

/* The largest output side interpolate makes (a scale of 1e9 is a typo, not a request). */
#define INTERP_MAX_SIDE ((int64_t)1 << 31)

/* x resampled to (out_h, out_w) with source steps rh, rw (input rows per output row). */
static fs_tensor *interpolate(const char *op, fs_tensor *x, int64_t out_h, int64_t out_w,
                              float rh, float rw, fs_interp_mode mode)
{
    int o = x->ndim - 3;
    interp_shape s;
    s.planes = (o ? x->size[0] : 1) * x->size[o];
    s.h = x->size[o + 1];
    s.w = x->size[o + 2];
    s.oh = out_h;
    s.ow = out_w;
    s.rh = rh;
    s.rw = rw;
    s.mode = mode;
    int64_t ysize[4];
    for (int d = 0; d < x->ndim - 2; d++)
        ysize[d] = x->size[d];
    ysize[x->ndim - 2] = s.oh;
    ysize[x->ndim - 1] = s.ow;
    fs_tensor *xc = fs_nn_contig(x), *y = xc ? fs_tensor_new(x->ndim, ysize) : NULL;
    coord *t = y ? coord_tables(&s) : NULL;
    if (!t) {
        fs_nn_release_all(2, (fs_tensor *[]){xc, y});
        return NULL;
    }
    const coord *rows = t, *cols = t + s.oh;
    const int64_t H = s.h, HW = s.h * s.w, OP = s.oh * s.ow, W = s.w, OW = s.ow;
    const bool nearest = s.mode == FS_INTERP_NEAREST;
    const float *xd = fs_data(xc);
    float *yd = fs_data(y);
    const bool dbl = !nearest && columns_double(cols, W, OW);
    bool oom = false;
#pragma omp parallel if (s.planes * OP > FS_PARALLEL_MIN)
    {
        /* bilinear: row h of the buffer is source row h interpolated along its columns */
        float *buf = nearest ? NULL : fs_alloc((size_t)(H * OW) * sizeof *buf);
        if (!nearest && !buf) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < s.planes; p++) {
            const float *xp = xd + p * HW;
            float *yp = yd + p * OP;
            if (nearest) {
                for (int64_t oh = 0; oh < s.oh; oh++) {
                    const float *x0 = xp + rows[oh].i0 * W;
                    float *yr = yp + oh * OW;
                    for (int64_t ow = 0; ow < OW; ow++)
                        yr[ow] = x0[cols[ow].i0];
                }
                continue;
            }
            if (!buf)
                continue;
            for (int64_t h = 0; h < H; h++) {
                const float *xr = xp + h * W;
                float *br = buf + h * OW;
                if (dbl) { /* the first and last columns from the table, below */
                    for (int64_t k = 1; k < W; k++) {
                        br[2 * k - 1] = 0.75f * xr[k - 1] + 0.25f * xr[k];
                        br[2 * k] = 0.25f * xr[k - 1] + 0.75f * xr[k];
                    }
                }
                for (int64_t ow = 0; ow < OW; ow++) {
                    if (dbl && ow == 1)
                        ow = OW - 1;
                    const coord c = cols[ow];
                    br[ow] = c.l0 * xr[c.i0] + c.l1 * xr[c.i1];
                }
            }
            for (int64_t oh = 0; oh < s.oh; oh++) {
                const coord r = rows[oh];
                const float *b0 = buf + r.i0 * OW, *b1 = buf + r.i1 * OW;
                float *yr = yp + oh * OW;
                for (int64_t ow = 0; ow < OW; ow++)
                    yr[ow] = r.l0 * b0[ow] + r.l1 * b1[ow];
            }
        }
        fs_free(buf);
    }
    fs_free(t);
    fs_tensor_release(xc);
    if (oom) {
        fs_tensor_release(y);
        return fs_set_error("%s: out of memory", op), NULL;
    }
    if (!fs_any_requires_grad(1, &x))
        return y;
    fs_node *n = fs_node_new_ctx(op, interp_backward_node, 1, &x, &s, sizeof s);
    if (!n) {
        fs_tensor_release(y);
        return NULL;
    }
    fs_node_attach(n, y);
    return y;
}

static int check_input(const char *op, const fs_tensor *x, fs_interp_mode mode)
{
    if (x->ndim != 4 && x->ndim != 3)
        return fs_set_error("%s: input must be (N, C, H, W) or (C, H, W), got %s", op,
                            FS_SHAPE(x));
    if (mode != FS_INTERP_NEAREST && mode != FS_INTERP_BILINEAR)
        return fs_set_error("%s: unknown mode %d", op, (int)mode);
    if (x->size[x->ndim - 2] < 1 || x->size[x->ndim - 1] < 1)
        return fs_set_error("%s: input %s is empty", op, FS_SHAPE(x));
    return 0;
}

fs_tensor *fs_interpolate(fs_tensor *x, double scale_h, double scale_w, fs_interp_mode mode)
{
    const char *op = "interpolate";
    if (check_input(op, x, mode) < 0)
        return NULL;
    if (!(scale_h > 0.0) || !(scale_w > 0.0))
        return fs_set_error("%s: scale (%.6g, %.6g) must be > 0", op, scale_h, scale_w), NULL;
    double h = (double)x->size[x->ndim - 2], w = (double)x->size[x->ndim - 1];
    double oh = floor(h * scale_h), ow = floor(w * scale_w);
    if (!(oh <= (double)INTERP_MAX_SIDE) || !(ow <= (double)INTERP_MAX_SIDE))
        return fs_set_error("%s: input %s scaled by (%.6g, %.6g) would be (%.6g, %.6g), over "
                            "%lld a side", op, FS_SHAPE(x), scale_h, scale_w, oh, ow,
                            (long long)INTERP_MAX_SIDE), NULL;
    if (oh < 1 || ow < 1)
        return fs_set_error("%s: input %s scaled by (%.6g, %.6g) is empty", op, FS_SHAPE(x),
                            scale_h, scale_w), NULL;
    return interpolate(op, x, (int64_t)oh, (int64_t)ow, (float)(1.0 / scale_h),
                       (float)(1.0 / scale_w), mode);
}

fs_tensor *fs_interpolate_size(fs_tensor *x, int64_t oh, int64_t ow, fs_interp_mode mode)
{
    const char *op = "interpolate";
    if (check_input(op, x, mode) < 0)
        return NULL;
    if (oh < 1 || ow < 1 || oh > INTERP_MAX_SIDE || ow > INTERP_MAX_SIDE)
        return fs_set_error("%s: size (%lld, %lld) must be in [1, %lld]", op, (long long)oh,
                            (long long)ow, (long long)INTERP_MAX_SIDE), NULL;
    int64_t h = x->size[x->ndim - 2], w = x->size[x->ndim - 1];
    return interpolate(op, x, oh, ow, (float)h / (float)oh, (float)w / (float)ow, mode);
}
