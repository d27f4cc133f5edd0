/* pool.c - 2-D max, average and adaptive average pooling, forward/backward pairs.
 *
 * x (N, C, H, W) or (C, H, W) is a stack of P = N*C planes of H*W pixels; y (N, C, OH, OW).
 * Each plane is pooled independently (OpenMP over planes, so backward's scatter-adds into a
 * plane never race).
 *   max_pool2d: windows kernel/stride/padding (padding counts as -inf); NaN propagates;
 *               the argmax (an int32 offset in the plane) is kept for backward.
 *   avg_pool2d: PyTorch's divisor: the window clipped to the padded input when
 *               count_include_pad, else clipped to the input.
 *   adaptive_avg_pool2d: bin i covers [floor(i H / OH), ceil((i+1) H / OH)).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/nn_internal.h"

typedef struct {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw;
    bool count_include_pad;
} pool_shape;

static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode)
{
    int64_t span = in + 2 * p - k;
    int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (o - 1) * s >= in + p) /* the last window must start inside */
        o--;
    return o;
}

static int pool_init(const char *op, const fs_tensor *x, const fs_pool2d_args *a, pool_shape *s)
{
    if (x->ndim != 4 && x->ndim != 3)
        return fs_set_error("%s: input must be (N, C, H, W) or (C, H, W), got %s", op,
                            FS_SHAPE(x));
    int64_t kh = a->kernel[0], kw = a->kernel[1];
    int64_t sh = a->stride[0] ? a->stride[0] : kh, sw = a->stride[1] ? a->stride[1] : kw;
    int64_t ph = a->padding[0], pw = a->padding[1];
    const int64_t max_side = (int64_t)1 << 31; /* beyond it the size arithmetic could overflow */
    if (kh > max_side || kw > max_side || sh > max_side || sw > max_side)
        return fs_set_error("%s: kernel (%lld, %lld) and stride (%lld, %lld) must be at most 2^31",
                            op, (long long)kh, (long long)kw, (long long)sh, (long long)sw);
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0)
        return fs_set_error("%s: kernel (%lld, %lld) and stride (%lld, %lld) must be >= 1 and "
                            "padding (%lld, %lld) >= 0", op, (long long)kh, (long long)kw,
                            (long long)sh, (long long)sw, (long long)ph, (long long)pw);
    if (2 * ph > kh || 2 * pw > kw)
        return fs_set_error("%s: padding (%lld, %lld) should be at most half of the kernel "
                            "(%lld, %lld)", op, (long long)ph, (long long)pw, (long long)kh,
                            (long long)kw);
    int o = x->ndim - 3;
    s->planes = (o ? x->size[0] : 1) * x->size[o];
    s->h = x->size[o + 1];
    s->w = x->size[o + 2];
    if (s->h + 2 * ph < kh || s->w + 2 * pw < kw)
        return fs_set_error("%s: input %s padded by (%lld, %lld) is smaller than the kernel "
                            "(%lld, %lld)", op, FS_SHAPE(x), (long long)ph, (long long)pw,
                            (long long)kh, (long long)kw);
    s->kh = kh; s->kw = kw; s->sh = sh; s->sw = sw; s->ph = ph; s->pw = pw;
    s->oh = pool_out(s->h, kh, sh, ph, a->ceil_mode);
    s->ow = pool_out(s->w, kw, sw, pw, a->ceil_mode);
    s->count_include_pad = a->count_include_pad;
    return 0;
}

static fs_tensor *new_output(const fs_tensor *x, int64_t oh, int64_t ow)
{
    int64_t size[4];
    int nd = x->ndim;
    for (int d = 0; d < nd - 2; d++)
        size[d] = x->size[d];
    size[nd - 2] = oh;
    size[nd - 1] = ow;
    return fs_tensor_new(nd, size);
}

/* ---- max pool ---- */

typedef struct { pool_shape s; int32_t *argmax; } max_ctx;

static void max_ctx_free(void *p)
{
    max_ctx *m = p;
    if (m)
        free(m->argmax);
    free(m);
}

static int max_pool_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const max_ctx *m = n->ctx;
    const pool_shape *s = &m->s;
    fs_tensor *dx = fs_tensor_zeros(n->inputs[0]->ndim, n->inputs[0]->size);
    if (!dx)
        return -1;
    const int64_t HW = s->h * s->w, OP = s->oh * s->ow;
    const float *dy = fs_data(dout);
    float *d = fs_data(dx);
#pragma omp parallel for schedule(static) if (s->planes * OP > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < s->planes; p++) {
        const int32_t *am = m->argmax + p * OP;
        const float *g = dy + p * OP;
        float *dp = d + p * HW;
        for (int64_t k = 0; k < OP; k++)
            if (am[k] >= 0)
                dp[am[k]] += g[k];
    }
    dinputs[0] = dx;
    return 0;
}

/* mx[ow] = max(mx[ow], src[ow*sw]) for lo <= ow < hi; a NaN wins, then sticks (v > NaN is
 * false). */
static void max_row(float *mx, const float *src, int64_t lo, int64_t hi, int64_t sw)
{
    for (int64_t ow = lo; ow < hi; ow++) {
        float v = src[ow * sw];
        bool take = (v > mx[ow]) | (v != v);
        mx[ow] = take ? v : mx[ow];
    }
}

/* v replaces m when v > m or v is a NaN (the rule of max_row), as a bit mask: gcc compiles
 * the select of a short, unvectorised loop into a branch per comparison, which random data
 * mispredicts half of the time. */
static inline uint32_t take_mask(float v, float m)
{
    return 0u - (uint32_t)((v > m) | (v != v));
}

static inline float select_float(uint32_t mask, float v, float m)
{
    uint32_t vb, mb;
    memcpy(&vb, &v, sizeof vb);
    memcpy(&mb, &m, sizeof mb);
    mb = (vb & mask) | (mb & ~mask);
    memcpy(&m, &mb, sizeof m);
    return m;
}

/* One plane pooled by 2x2 windows of stride 2 that lie inside it: y (OH, OW) from x (H, W),
 * at (OH, OW) the flat index of each max in x (or NULL). The general loop's scan order
 * ((0,0), (0,1), (1,0), (1,1)) and rule, but none of its per-row bounds or calls: on small
 * planes (PRNet's encoder pools down to 2x2) those cost ~20 cycles an output. */
static void max_plane_2x2(float *restrict y, int32_t *restrict at, const float *restrict x,
                          int64_t W, int64_t OH, int64_t OW)
{
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        const int32_t i0 = (int32_t)(2 * oh * W), i1 = i0 + (int32_t)W;
        if (!at) {
            for (int64_t ow = 0; ow < OW; ow++) {
                float m = r0[2 * ow], v = r0[2 * ow + 1];
                m = select_float(take_mask(v, m), v, m);
                v = r1[2 * ow];
                m = select_float(take_mask(v, m), v, m);
                v = r1[2 * ow + 1];
                yr[ow] = select_float(take_mask(v, m), v, m);
            }
            continue;
        }
        int32_t *ar = at + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) {
            const int32_t c = (int32_t)(2 * ow);
            float m = r0[2 * ow], v = r0[2 * ow + 1];
            uint32_t a = (uint32_t)(i0 + c), t = take_mask(v, m);
            m = select_float(t, v, m);
            a = ((uint32_t)(i0 + c + 1) & t) | (a & ~t);
            v = r1[2 * ow];
            t = take_mask(v, m);
            m = select_float(t, v, m);
            a = ((uint32_t)(i1 + c) & t) | (a & ~t);
            v = r1[2 * ow + 1];
            t = take_mask(v, m);
            yr[ow] = select_float(t, v, m);
            ar[ow] = (int32_t)(((uint32_t)(i1 + c + 1) & t) | (a & ~t));
        }
    }
}

/* Planes with W + kw + sw at most this take max_plane_rows when no argmax is kept. */
#define ROWS_MAX 512

/* One plane without argmax (no gradient wanted): per output row, the column-wise max of its
 * window's rows over the whole width into vm (padded with -inf on both sides so that every
 * window is whole), then each output the max of its window's columns of vm; both loops run
 * along the row and vectorise. Same values as the general loop's (max is order-free, a NaN in
 * the window gives a NaN); the argmax's tie order would differ, hence only without one. */
static void max_plane_rows(float *restrict y, const float *restrict x, const pool_shape *s)
{
    float vm[ROWS_MAX];
    const int64_t H = s->h, W = s->w, pw = s->pw, OW = s->ow, sw = s->sw;
    const int64_t len = (OW - 1) * sw + s->kw; /* vm[i] is input column i - pw */
    for (int64_t i = 0; i < len; i++)
        vm[i] = -INFINITY;
    for (int64_t oh = 0; oh < s->oh; oh++) {
        int64_t h0 = oh * s->sh - s->ph, h1 = h0 + s->kh;
        h0 = h0 < 0 ? 0 : h0;
        h1 = h1 > H ? H : h1;
        float *restrict m = vm + pw;
        const float *row = x + h0 * W;
        for (int64_t iw = 0; iw < W; iw++)
            m[iw] = h1 > h0 ? row[iw] : -INFINITY;
        for (int64_t ih = h0 + 1; ih < h1; ih++) {
            row = x + ih * W;
            for (int64_t iw = 0; iw < W; iw++) {
                float v = row[iw];
                bool take = (v > m[iw]) | (v != v);
                m[iw] = take ? v : m[iw];
            }
        }
        float *restrict yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++)
            yr[ow] = vm[ow * sw];
        for (int64_t kj = 1; kj < s->kw; kj++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float v = vm[ow * sw + kj];
                bool take = (v > yr[ow]) | (v != v);
                yr[ow] = take ? v : yr[ow];
            }
    }
}

/* max_row, also keeping in at[ow] where the max came from (base + ow*sw in the plane). A
 * function of its own, this loop vectorises: 27x64x32x32 at 2 threads, 1.73 -> 1.58 ms. */
static void max_row_at(float *mx, int32_t *at, const float *src, int64_t lo, int64_t hi,
                       int64_t sw, int32_t base)
{
    for (int64_t ow = lo; ow < hi; ow++) {
        float v = src[ow * sw];
        bool take = (v > mx[ow]) | (v != v);
        mx[ow] = take ? v : mx[ow];
        at[ow] = take ? base + (int32_t)(ow * sw) : at[ow];
    }
}

fs_tensor *fs_max_pool2d(fs_tensor *x, const fs_pool2d_args *a)
{
    pool_shape s;
    if (pool_init("max_pool2d", x, a, &s) < 0)
        return NULL;
    if (s.h * s.w > INT32_MAX)
        return fs_set_error("max_pool2d: planes of %lld pixels are too large",
                            (long long)(s.h * s.w)), NULL;
    const int64_t HW = s.h * s.w, OP = s.oh * s.ow;
    bool grad = fs_any_requires_grad(1, &x);
    fs_tensor *xc = fs_nn_contig(x), *y = xc ? new_output(x, s.oh, s.ow) : NULL;
    max_ctx *m = (y && grad) ? calloc(1, sizeof *m) : NULL;
    int32_t *am = m ? malloc((size_t)(s.planes * OP > 0 ? s.planes * OP : 1) * sizeof *am) : NULL;
    if (!y || (grad && !am)) {
        if (y && grad)
            fs_set_error("max_pool2d: out of memory");
        free(m);
        fs_nn_release_all(2, (fs_tensor *[]){xc, y});
        return NULL;
    }
    const float *xd = fs_data(xc);
    float *yd = fs_data(y);
    /* 2x2 windows of stride 2 inside the plane: max_plane_2x2 */
    const bool two_by_two = s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.ph == 0 &&
                            s.pw == 0 && 2 * s.oh <= s.h && 2 * s.ow <= s.w;
    /* One output row at a time, the window offsets (ki, kj) outermost and the output columns
     * innermost: a branch-free running max (a NaN wins, then sticks since v > NaN is false)
     * that the compiler vectorises over ow. */
#pragma omp parallel for schedule(static) if (s.planes * OP * s.kh * s.kw > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < s.planes; p++) {
        const float *xp = xd + p * HW;
        if (two_by_two) {
            max_plane_2x2(yd + p * OP, am ? am + p * OP : NULL, xp, s.w, s.oh, s.ow);
            continue;
        }
        if (!am && s.w + s.kw + s.sw <= ROWS_MAX && s.oh > 0 && s.ow > 0) {
            max_plane_rows(yd + p * OP, xp, &s);
            continue;
        }
        for (int64_t oh = 0; oh < s.oh; oh++) {
            float *mx = yd + p * OP + oh * s.ow;
            int32_t *at = am ? am + p * OP + oh * s.ow : NULL;
            int64_t h0 = oh * s.sh - s.ph;
            int64_t first_h = h0 < 0 ? 0 : h0;
            for (int64_t ow = 0; ow < s.ow; ow++) {
                int64_t w0 = ow * s.sw - s.pw;
                mx[ow] = -INFINITY;
                if (at)
                    at[ow] = (int32_t)(first_h * s.w + (w0 < 0 ? 0 : w0));
            }
            for (int64_t ki = 0; ki < s.kh; ki++) {
                int64_t ih = h0 + ki;
                if (ih < 0 || ih >= s.h)
                    continue;
                const float *row = xp + ih * s.w;
                for (int64_t kj = 0; kj < s.kw; kj++) {
                    int64_t off = kj - s.pw; /* iw = ow*sw + off */
                    int64_t lo = off >= 0 ? 0 : (-off + s.sw - 1) / s.sw;
                    int64_t hi = (s.w - 1 - off) >= 0 ? (s.w - 1 - off) / s.sw + 1 : 0;
                    if (hi > s.ow)
                        hi = s.ow;
                    if (at)
                        max_row_at(mx, at, row + off, lo, hi, s.sw, (int32_t)(ih * s.w + off));
                    else
                        max_row(mx, row + off, lo, hi, s.sw);
                }
            }
        }
    }
    fs_tensor_release(xc);
    if (!grad)
        return y;
    fs_node *n = fs_node_new("max_pool2d", max_pool_backward_node, 1, &x);
    if (!n) {
        free(am);
        free(m);
        fs_tensor_release(y);
        return NULL;
    }
    m->s = s;
    m->argmax = am;
    n->ctx = m;
    n->free_ctx = max_ctx_free;
    fs_node_attach(n, y);
    return y;
}

/* ---- average pools (fixed and adaptive share the backward: each output spreads its
 * gradient evenly over its window) ---- */

/* Window of output (oh, ow) in plane coordinates and the divisor. */
static inline void avg_window(const pool_shape *s, bool adaptive, int64_t oh, int64_t ow,
                              int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1, float *div)
{
    if (adaptive) {
        *h0 = oh * s->h / s->oh;
        *h1 = ((oh + 1) * s->h + s->oh - 1) / s->oh;
        *w0 = ow * s->w / s->ow;
        *w1 = ((ow + 1) * s->w + s->ow - 1) / s->ow;
        *div = (float)((*h1 - *h0) * (*w1 - *w0));
        return;
    }
    int64_t a0 = oh * s->sh - s->ph, a1 = a0 + s->kh, b0 = ow * s->sw - s->pw, b1 = b0 + s->kw;
    if (a1 > s->h + s->ph) a1 = s->h + s->ph;
    if (b1 > s->w + s->pw) b1 = s->w + s->pw;
    int64_t padded = (a1 - a0) * (b1 - b0);
    if (a0 < 0) a0 = 0;
    if (b0 < 0) b0 = 0;
    if (a1 > s->h) a1 = s->h;
    if (b1 > s->w) b1 = s->w;
    *h0 = a0; *h1 = a1; *w0 = b0; *w1 = b1;
    *div = (float)(s->count_include_pad ? padded : (a1 - a0) * (b1 - b0));
}

/* An average pool node's context: the shape, and adaptive windows or fixed ones. */
typedef struct { pool_shape s; bool adaptive; } avg_ctx;

static int avg_pool_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const avg_ctx *c = n->ctx;
    const pool_shape *s = &c->s;
    const bool adaptive = c->adaptive;
    fs_tensor *dx = fs_tensor_zeros(n->inputs[0]->ndim, n->inputs[0]->size);
    if (!dx)
        return -1;
    const int64_t HW = s->h * s->w, OP = s->oh * s->ow;
    const float *dy = fs_data(dout);
    float *d = fs_data(dx);
#pragma omp parallel for schedule(static) if (s->planes * HW > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < s->planes; p++) {
        float *dp = d + p * HW;
        for (int64_t oh = 0; oh < s->oh; oh++)
            for (int64_t ow = 0; ow < s->ow; ow++) {
                int64_t h0, h1, w0, w1;
                float div;
                avg_window(s, adaptive, oh, ow, &h0, &h1, &w0, &w1, &div);
                float g = dy[p * OP + oh * s->ow + ow] / div;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        dp[ih * s->w + iw] += g;
            }
    }
    dinputs[0] = dx;
    return 0;
}

static fs_tensor *avg_pool(const char *op, fs_tensor *x, const pool_shape *s, bool adaptive)
{
    const int64_t HW = s->h * s->w, OP = s->oh * s->ow;
    fs_tensor *xc = fs_nn_contig(x), *y = xc ? new_output(x, s->oh, s->ow) : NULL;
    if (!y) {
        fs_tensor_release(xc);
        return NULL;
    }
    const float *xd = fs_data(xc);
    float *yd = fs_data(y);
#pragma omp parallel for schedule(static) if (s->planes * HW > FS_PARALLEL_MIN)
    for (int64_t p = 0; p < s->planes; p++) {
        const float *xp = xd + p * HW;
        for (int64_t oh = 0; oh < s->oh; oh++)
            for (int64_t ow = 0; ow < s->ow; ow++) {
                int64_t h0, h1, w0, w1;
                float div;
                avg_window(s, adaptive, oh, ow, &h0, &h1, &w0, &w1, &div);
                float acc = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        acc += xp[ih * s->w + iw];
                yd[p * OP + oh * s->ow + ow] = acc / div;
            }
    }
    fs_tensor_release(xc);
    if (!fs_any_requires_grad(1, &x))
        return y;
    avg_ctx c = {*s, adaptive};
    fs_node *n = fs_node_new_ctx(op, avg_pool_backward_node, 1, &x, &c, sizeof c);
    if (!n) {
        fs_tensor_release(y);
        return NULL;
    }
    fs_node_attach(n, y);
    return y;
}

fs_tensor *fs_avg_pool2d(fs_tensor *x, const fs_pool2d_args *a)
{
    pool_shape s;
    if (pool_init("avg_pool2d", x, a, &s) < 0)
        return NULL;
    return avg_pool("avg_pool2d", x, &s, false);
}

fs_tensor *fs_adaptive_avg_pool2d(fs_tensor *x, int64_t oh, int64_t ow)
{
    const char *op = "adaptive_avg_pool2d";
    if (x->ndim != 4 && x->ndim != 3)
        return fs_set_error("%s: input must be (N, C, H, W) or (C, H, W), got %s", op,
                            FS_SHAPE(x)), NULL;
    if (oh < 1 || ow < 1)
        return fs_set_error("%s: output size (%lld, %lld) must be >= 1", op, (long long)oh,
                            (long long)ow), NULL;
    int o = x->ndim - 3;
    pool_shape s = {0};
    s.planes = (o ? x->size[0] : 1) * x->size[o];
    s.h = x->size[o + 1];
    s.w = x->size[o + 2];
    s.oh = oh;
    s.ow = ow;
    if (oh > INT32_MAX || ow > INT32_MAX || (s.planes && oh * ow > INT64_MAX / 4 / s.planes))
        return fs_set_error("%s: output size (%lld, %lld) is too large for input %s", op,
                            (long long)oh, (long long)ow, FS_SHAPE(x)), NULL;
    return avg_pool(op, x, &s, true);
}
