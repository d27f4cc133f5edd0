/* conv.c - 2-D convolution and transposed convolution: im2col/col2im + sgemm.
 *
 * x (N, C, H, W), w (O, Cg, kh, kw), y (N, O, OH, OW), with G groups, Cg = C/G, Og = O/G,
 * K = Cg*kh*kw (the length of a column) and P = OH*OW (output pixels of one image).
 * Images are unfolded per group into col (K, nb*P) so that one GEMM covers nb images:
 *     y_g (Og, nb*P) = w_g (Og, K) @ col                               (then scattered to y)
 *     dw_g += dy_g (Og, nb*P) @ col^T ;  dcol = w_g^T @ dy_g -> col2im -> dx
 * col is recomputed in backward rather than kept (memory). Three ways to run it on T threads:
 *   - threads own images (the usual case, N >= T): each thread runs the whole pipeline on its
 *     own images with its own col (in cache, single-threaded sgemm), so one convolution is one
 *     parallel region with no barrier inside (backward: one, before summing the threads' dw);
 *     a shared machine stalls at every barrier, so fewer is faster there too.
 *   - dw large next to the columns (late ResNet stages, backward): each thread computes dw's
 *     columns k0..k1 over the whole batch, then dx of its own images.
 *   - batched (N < T, or budgets exceeded): chunks of the batch, GEMMs split over the threads
 *     (fs_gemm), unfold/scatter/col2im parallel loops.
 * A 1x1, stride-1, unpadded convolution over large images multiplies the images in place.
 * The forms agree to float rounding (dw sums in a different order).
 *
 * Before any of these, conv_direct.c takes the shapes it can (AVX-512 or AVX2 builds:
 * undilated, ungrouped convolutions whose output images fill the vectors): the forward at any
 * stride, the stride-1 data-gradient, and the weight-gradient over enough pixels, without
 * im2col. Weight-heavy shapes (more output channels than output pixels in the batch) split
 * the weights over the threads instead of the images (conv_forward_orows, krows).
 * The forward of output images smaller than a vector over a batch (ResNet-18's layer3 and
 * layer4 at 32x32 inputs: 2x2, 1x1) goes to conv_small.c: vectors along the images, each output
 * pixel multiplied over only its taps inside the image, weights read in place.
 *
 * conv_transpose2d(x, w) is the data-gradient of conv2d: its forward is conv2d's backward-data
 * on the "conv" shape whose input is the transposed output, and its backward is conv2d's
 * forward (for dx) and conv2d's weight gradient with the roles of x and dy swapped (for dw).
 *
 * The column buffers live in one cached workspace per calling thread (grown on demand, kept
 * between calls, released by fs_conv_workspace_release): allocating 16-32 MB per call costs
 * page faults.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn/conv_direct.h"
#include "nn/conv_small.h"
#include "nn/nn_internal.h"

/* Threads: one pool (OpenMP) for the whole kernel; OpenBLAS runs single-threaded inside
 * (fs_blas_single_begin/end, gemm.c). */

static inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                        int64_t ldc)
{
    fs_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

/* ---- workspace ---- */

static _Thread_local float *ws_buf;
static _Thread_local size_t ws_cap; /* floats */

/* A thread that made a workspace frees it when it exits (a host's Lua threads come and go;
 * each kept up to 32 MB): a thread-specific key whose destructor releases it. glibc runs key
 * destructors before it tears the thread's _Thread_local storage down. */
static pthread_key_t ws_key;
static pthread_once_t ws_key_once = PTHREAD_ONCE_INIT;
static void ws_at_thread_exit(void *unused)
{
    (void)unused;
    fs_conv_workspace_release();
}
static void ws_key_create(void) { (void)pthread_key_create(&ws_key, ws_at_thread_exit); }

static float *workspace(size_t nfloats)
{
    if (nfloats <= ws_cap)
        return ws_buf;
    fs_free(ws_buf);
    ws_buf = fs_alloc(nfloats * sizeof(float));
    ws_cap = ws_buf ? nfloats : 0;
    if (ws_buf && pthread_once(&ws_key_once, ws_key_create) == 0)
        (void)pthread_setspecific(ws_key, (void *)1); /* non-NULL: the destructor runs */
    return ws_buf;
}

void fs_conv_workspace_release(void)
{
    fs_free(ws_buf);
    ws_buf = NULL;
    ws_cap = 0;
}

/* Floats of one column buffer per chunk (32 MB); a chunk holds at least one image. */
#define COL_BUDGET ((int64_t)1 << 23)

/* Images per chunk: as many as fit the budget, balanced over the chunks needed. */
static int64_t chunk_images(int64_t n, int64_t per_image)
{
    int64_t nb = per_image > 0 ? COL_BUDGET / per_image : n;
    if (nb < 1)
        nb = 1;
    if (nb >= n)
        return n;
    int64_t nchunks = (n + nb - 1) / nb;
    return (n + nchunks - 1) / nchunks;
}

/* ---- shapes ---- */

static bool is_pointwise(const fs_conv2d_shape *s)
{
    return s->kh == 1 && s->kw == 1 && s->a.stride[0] == 1 && s->a.stride[1] == 1 &&
           s->a.padding[0] == 0 && s->a.padding[1] == 0;
}

/* Images large enough that per-image GEMMs straight on the data beat gathering them. */
static bool use_direct(const fs_conv2d_shape *s)
{
    return is_pointwise(s) && (s->n == 1 || s->oh * s->ow >= 256);
}

/* The largest stride, padding, dilation and kernel side: beyond it the size arithmetic below
 * could overflow, and no real layer comes near. */
#define CONV_MAX_EXTENT ((int64_t)1 << 31)

static int check_args(const char *op, const fs_conv2d_args *a)
{
    for (int d = 0; d < 2; d++) {
        if (a->stride[d] > CONV_MAX_EXTENT || a->dilation[d] > CONV_MAX_EXTENT ||
            a->padding[d] > CONV_MAX_EXTENT || a->output_padding[d] > CONV_MAX_EXTENT ||
            a->groups > CONV_MAX_EXTENT)
            return fs_set_error("%s: stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, "
                                "%lld), output_padding and groups must be at most 2^31", op,
                                (long long)a->stride[0], (long long)a->stride[1],
                                (long long)a->padding[0], (long long)a->padding[1],
                                (long long)a->dilation[0], (long long)a->dilation[1]);
        if (a->stride[d] < 1 || a->dilation[d] < 1 || a->padding[d] < 0 ||
            a->output_padding[d] < 0)
            return fs_set_error("%s: stride (%lld, %lld) and dilation (%lld, %lld) must be >= 1, "
                                "padding (%lld, %lld) and output_padding >= 0", op,
                                (long long)a->stride[0], (long long)a->stride[1],
                                (long long)a->dilation[0], (long long)a->dilation[1],
                                (long long)a->padding[0], (long long)a->padding[1]);
    }
    if (a->groups < 1)
        return fs_set_error("%s: groups must be >= 1, got %lld", op, (long long)a->groups);
    return 0;
}

/* A shape's output (N, O, OH, OW), input (N, C, H, W) and one image's unfolding
 * (C, kh, kw, OH, OW) must pass fs_shape_check before anything is sized from them. */
static int check_sizes(const char *op, const fs_conv2d_shape *s)
{
    if (s->kh > CONV_MAX_EXTENT || s->kw > CONV_MAX_EXTENT)
        return fs_set_error("%s: kernel (%lld, %lld) is larger than 2^31", op, (long long)s->kh,
                            (long long)s->kw);
    int64_t out[4] = {s->n, s->o, s->oh, s->ow}, in[4] = {s->n, s->c, s->h, s->w};
    int64_t cols[5] = {s->c, s->kh, s->kw, s->oh, s->ow};
    if (fs_shape_check(op, 4, out) < 0 || fs_shape_check(op, 4, in) < 0 ||
        fs_shape_check(op, 5, cols) < 0)
        return -1;
    return 0;
}

static int check_dims(const char *op, const fs_tensor *x, const fs_tensor *w, const fs_tensor *b,
                      int64_t nout)
{
    if (x->ndim != 4 && x->ndim != 3)
        return fs_set_error("%s: input must be (N, C, H, W) or (C, H, W), got %s", op,
                            FS_SHAPE(x));
    if (w->ndim != 4)
        return fs_set_error("%s: weight must be 4-D, got %s", op, FS_SHAPE(w));
    if (b && (b->ndim != 1 || b->size[0] != nout))
        return fs_set_error("%s: bias %s must have shape (%lld) for weight %s", op, FS_SHAPE(b),
                            (long long)nout, FS_SHAPE(w));
    return 0;
}

int fs_conv2d_shape_init(fs_conv2d_shape *s, const char *op, const fs_tensor *x,
                         const fs_tensor *w, const fs_tensor *b, const fs_conv2d_args *a)
{
    if (check_args(op, a) < 0 || check_dims(op, x, w, b, w->ndim == 4 ? w->size[0] : 0) < 0)
        return -1;
    int o = x->ndim - 3; /* 1 when batched */
    s->a = *a;
    s->n = o ? x->size[0] : 1;
    s->c = x->size[o];
    s->h = x->size[o + 1];
    s->w = x->size[o + 2];
    s->o = w->size[0];
    s->kh = w->size[2];
    s->kw = w->size[3];
    int64_t g = a->groups;
    if (s->c != w->size[1] * g) {
        if (g == 1)
            return fs_set_error("%s: input %s has %lld channels but weight %s expects %lld", op,
                                FS_SHAPE(x), (long long)s->c, FS_SHAPE(w),
                                (long long)w->size[1]);
        return fs_set_error("%s: input %s has %lld channels but weight %s with groups=%lld "
                            "expects %lld", op, FS_SHAPE(x), (long long)s->c, FS_SHAPE(w),
                            (long long)g, (long long)(w->size[1] * g));
    }
    if (s->o % g)
        return fs_set_error("%s: weight %s has %lld output channels, not divisible by "
                            "groups=%lld", op, FS_SHAPE(w), (long long)s->o, (long long)g);
    int64_t eh = a->dilation[0] * (s->kh - 1) + 1, ew = a->dilation[1] * (s->kw - 1) + 1;
    int64_t hp = s->h + 2 * a->padding[0], wp = s->w + 2 * a->padding[1];
    if (s->kh < 1 || s->kw < 1 || hp < eh || wp < ew)
        return fs_set_error("%s: input %s padded to (%lld, %lld) is smaller than the kernel "
                            "(%lld, %lld) (dilated: (%lld, %lld)) of weight %s", op, FS_SHAPE(x),
                            (long long)hp, (long long)wp, (long long)s->kh, (long long)s->kw,
                            (long long)eh, (long long)ew, FS_SHAPE(w));
    s->oh = (hp - eh) / a->stride[0] + 1;
    s->ow = (wp - ew) / a->stride[1] + 1;
    /* the output and one image's unfolding (C kh kw, OH OW) must have countable sizes */
    return check_sizes(op, s);
}

/* The conv2d shape whose backward-data is conv_transpose2d(x, w): its input is the
 * transposed output (N, O, OH, OW), its output x (N, Cin, H, W), its weight w as given. */
static int transpose_shape_init(fs_conv2d_shape *s, const fs_tensor *x, const fs_tensor *w,
                                const fs_tensor *b, const fs_conv2d_args *a)
{
    const char *op = "conv_transpose2d";
    if (check_args(op, a) < 0 ||
        check_dims(op, x, w, b, w->ndim == 4 ? w->size[1] * a->groups : 0) < 0)
        return -1;
    int o = x->ndim - 3;
    int64_t g = a->groups, cin = x->size[o];
    if (cin != w->size[0])
        return fs_set_error("%s: input %s has %lld channels but weight %s expects %lld", op,
                            FS_SHAPE(x), (long long)cin, FS_SHAPE(w), (long long)w->size[0]);
    if (cin % g)
        return fs_set_error("%s: input %s has %lld channels, not divisible by groups=%lld", op,
                            FS_SHAPE(x), (long long)cin, (long long)g);
    for (int d = 0; d < 2; d++)
        if (a->output_padding[d] >= a->stride[d] && a->output_padding[d] >= a->dilation[d])
            return fs_set_error("%s: output_padding (%lld, %lld) must be smaller than the stride "
                                "(%lld, %lld) or the dilation (%lld, %lld)", op,
                                (long long)a->output_padding[0], (long long)a->output_padding[1],
                                (long long)a->stride[0], (long long)a->stride[1],
                                (long long)a->dilation[0], (long long)a->dilation[1]);
    s->a = *a;
    s->n = o ? x->size[0] : 1;
    s->o = cin;                 /* the conv's output channels = our input channels */
    s->oh = x->size[o + 1];
    s->ow = x->size[o + 2];
    s->c = w->size[1] * g;      /* the conv's input channels = our output channels */
    s->kh = w->size[2];
    s->kw = w->size[3];
    if (s->oh > CONV_MAX_EXTENT || s->ow > CONV_MAX_EXTENT || s->kh > CONV_MAX_EXTENT ||
        s->kw > CONV_MAX_EXTENT)
        return fs_set_error("%s: input %s or weight %s has a side larger than 2^31", op,
                            FS_SHAPE(x), FS_SHAPE(w));
    s->h = (s->oh - 1) * a->stride[0] - 2 * a->padding[0] + a->dilation[0] * (s->kh - 1) +
           a->output_padding[0] + 1;
    s->w = (s->ow - 1) * a->stride[1] - 2 * a->padding[1] + a->dilation[1] * (s->kw - 1) +
           a->output_padding[1] + 1;
    if (s->kh < 1 || s->kw < 1 || s->h < 1 || s->w < 1)
        return fs_set_error("%s: input %s with weight %s, stride (%lld, %lld) and padding "
                            "(%lld, %lld) gives an empty output (%lld, %lld)", op, FS_SHAPE(x),
                            FS_SHAPE(w), (long long)a->stride[0], (long long)a->stride[1],
                            (long long)a->padding[0], (long long)a->padding[1],
                            (long long)s->h, (long long)s->w);
    return check_sizes(op, s);
}

/* ---- unfolding ---- */

/* Output columns ow whose input column iw = ow*sw + off lies in [0, W): [*lo, *hi). */
static void valid_range(int64_t off, int64_t sw, int64_t W, int64_t OW, int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t h = (W - 1 - off) >= 0 ? (W - 1 - off) / sw + 1 : 0;
    if (l > OW)
        l = OW;
    if (h > OW)
        h = OW;
    if (h < l)
        h = l;
    *lo = l;
    *hi = h;
}

/* The leading dimension of a buffer of rows of n floats: n rounded up to 16 and never a
 * multiple of 64 floats. Rows 256 bytes apart (or a multiple) alias in the caches when sgemm
 * packs them (measured: 128 x 1728 x 1152 took 5.2 ms with rows of 1728 floats, 2.9 ms with
 * 1744). col, dcol and the gathered dy all use it. */
static int64_t pad_ld(int64_t n)
{
    int64_t ld = (n + 15) & ~(int64_t)15;
    return ld % 64 == 0 ? ld + 16 : ld;
}

/* Rows r0..r1-1 of col (K, nb*P), leading dimension ld (written from col's first row), from
 * images n0..n0+nb-1, channels c0..c0+Cg-1 of x (N, C, H, W). */
static void im2col_rows(float *col, int64_t ld, const float *x, const fs_conv2d_shape *s,
                        int64_t n0, int64_t nb, int64_t c0, int64_t r0, int64_t r1, bool par)
{
    const int64_t C = s->c, H = s->h, W = s->w, OH = s->oh, OW = s->ow, P = OH * OW;
    const int64_t kh = s->kh, kw = s->kw, sh = s->a.stride[0], sw = s->a.stride[1];
    const int64_t ph = s->a.padding[0], pw = s->a.padding[1];
    const int64_t dh = s->a.dilation[0], dw = s->a.dilation[1];
    const int64_t NP = nb * P;
#pragma omp parallel for schedule(static) if (par && (r1 - r0) * NP > FS_PARALLEL_MIN)
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw;
        int64_t off = kj * dw - pw, lo, hi;
        valid_range(off, sw, W, OW, &lo, &hi);
        float *dst = col + (r - r0) * ld;
        if (sh == 1 && sw == 1 && OW == W) {
            /* input rows ih = oh + shift: the valid part is one contiguous span of x, copied
             * at once (rows of 2-16 floats cost a call each); columns outside [lo, hi) get
             * the neighbour row's values and are zeroed after. */
            int64_t shift = ki * dh - ph, a = -shift > 0 ? -shift : 0, e = H - shift;
            if (e > OH)
                e = OH;
            if (e < a)
                e = a;
            for (int64_t n = 0; n < nb; n++) {
                const float *xp = x + ((n0 + n) * C + c0 + c) * H * W;
                float *d = dst + n * P;
                if (a > 0) /* most rows need neither: skip the calls */
                    memset(d, 0, (size_t)(a * OW) * sizeof(float));
                if (e < OH)
                    memset(d + e * OW, 0, (size_t)((OH - e) * OW) * sizeof(float));
                if (e == a)
                    continue;
                if (hi == lo) { /* no valid column (W <= padding, e.g. 1x1 inputs at pad 1):
                                 * the rows a..e-1 are all padding */
                    memset(d + a * OW, 0, (size_t)((e - a) * OW) * sizeof(float));
                    continue;
                }
                int64_t j0 = a * OW + lo, j1 = (e - 1) * OW + hi;
                memcpy(d + j0, xp + j0 + shift * W + off, (size_t)(j1 - j0) * sizeof(float));
                /* columns outer, rows inner: a strided store the compiler keeps inline (row by
                 * row it became a memset call of 0 or 1 float per row) */
                for (int64_t ow = 0; ow < lo; ow++)
                    for (int64_t oh = a; oh < e; oh++)
                        d[oh * OW + ow] = 0.0f;
                for (int64_t ow = hi; ow < OW; ow++)
                    for (int64_t oh = a; oh < e; oh++)
                        d[oh * OW + ow] = 0.0f;
            }
            continue;
        }
        for (int64_t n = 0; n < nb; n++) {
            const float *xp = x + ((n0 + n) * C + c0 + c) * H * W;
            for (int64_t oh = 0; oh < OH; oh++) {
                int64_t ih = oh * sh - ph + ki * dh;
                float *d = dst + n * P + oh * OW;
                if (ih < 0 || ih >= H) {
                    memset(d, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *row = xp + ih * W;
                for (int64_t ow = 0; ow < lo; ow++)
                    d[ow] = 0.0f;
                if (sw == 1)
                    memcpy(d + lo, row + lo + off, (size_t)(hi - lo) * sizeof(float));
                else if (sw == 2) /* a constant stride: vectorised with permutes */
                    for (int64_t ow = lo; ow < hi; ow++)
                        d[ow] = row[2 * ow + off];
                else
                    for (int64_t ow = lo; ow < hi; ow++)
                        d[ow] = row[ow * sw + off];
                for (int64_t ow = hi; ow < OW; ow++)
                    d[ow] = 0.0f;
            }
        }
    }
}

/* col (K, nb*P), leading dimension ld, from images n0..n0+nb-1, channels c0..c0+Cg-1. */
static void im2col(float *col, int64_t ld, const float *x, const fs_conv2d_shape *s, int64_t n0,
                   int64_t nb, int64_t c0, int64_t cg, bool par)
{
    im2col_rows(col, ld, x, s, n0, nb, c0, 0, cg * s->kh * s->kw, par);
}

/* dx (N, C, H, W), images n0..n0+nb-1, channels c0..c0+Cg-1: set to the sum of the columns
 * of dcol (K, nb*P), leading dimension ld, that read each pixel. dcol is scratch: a stride-1
 * conv whose output width equals the input's zeroes the entries of its out-of-range columns
 * and adds each unfolded row as one span (as im2col copies it). */
static void col2im(float *dx, float *dcol, int64_t ld, const fs_conv2d_shape *s,
                   int64_t n0, int64_t nb, int64_t c0, int64_t cg, bool par)
{
    const int64_t C = s->c, H = s->h, W = s->w, OH = s->oh, OW = s->ow, P = OH * OW;
    const int64_t kh = s->kh, kw = s->kw, sh = s->a.stride[0], sw = s->a.stride[1];
    const int64_t ph = s->a.padding[0], pw = s->a.padding[1];
    const int64_t dh = s->a.dilation[0], dw = s->a.dilation[1];
    const int64_t NP = nb * P;
    /* the tap (ki, kj) whose unfolded row is the plane itself (stride 1, same size, the
     * padding a multiple of the dilation), or -1 */
    int64_t rc = -1;
    if (sh == 1 && sw == 1 && OH == H && OW == W && ph % dh == 0 && pw % dw == 0 &&
        ph / dh < kh && pw / dw < kw)
        rc = ph / dh * kw + pw / dw;
#pragma omp parallel for collapse(2) schedule(static) if (par && cg * kh * kw * NP > FS_PARALLEL_MIN)
    for (int64_t n = 0; n < nb; n++) {
        for (int64_t c = 0; c < cg; c++) {
            float *xp = dx + ((n0 + n) * C + c0 + c) * H * W;
            if (rc >= 0) { /* the centre tap reads every pixel once: it sets the plane */
                const float *src = dcol + (c * kh * kw + rc) * ld + n * P;
                for (int64_t j = 0; j < H * W; j++)
                    xp[j] = src[j];
            } else {
                memset(xp, 0, (size_t)(H * W) * sizeof(float));
            }
            for (int64_t ki = 0; ki < kh; ki++) {
                for (int64_t kj = 0; kj < kw; kj++) {
                    if (ki * kw + kj == rc)
                        continue;
                    int64_t r = (c * kh + ki) * kw + kj, off = kj * dw - pw, lo, hi;
                    valid_range(off, sw, W, OW, &lo, &hi);
                    float *src = dcol + r * ld + n * P;
                    if (sh == 1 && sw == 1 && OW == W) {
                        int64_t shift = ki * dh - ph, a = -shift > 0 ? -shift : 0;
                        int64_t e = H - shift < OH ? H - shift : OH;
                        if (e <= a || hi <= lo)
                            continue;
                        for (int64_t ow = 0; ow < lo; ow++) /* strided: no memset calls */
                            for (int64_t oh = a; oh < e; oh++)
                                src[oh * OW + ow] = 0.0f;
                        for (int64_t ow = hi; ow < OW; ow++)
                            for (int64_t oh = a; oh < e; oh++)
                                src[oh * OW + ow] = 0.0f;
                        int64_t j0 = a * OW + lo, j1 = (e - 1) * OW + hi, d = shift * W + off;
                        for (int64_t j = j0; j < j1; j++)
                            xp[j + d] += src[j];
                        continue;
                    }
                    for (int64_t oh = 0; oh < OH; oh++) {
                        int64_t ih = oh * sh - ph + ki * dh;
                        if (ih < 0 || ih >= H)
                            continue;
                        float *row = xp + ih * W;
                        const float *sp = src + oh * OW;
                        if (sw == 1)
                            for (int64_t ow = lo; ow < hi; ow++)
                                row[ow + off] += sp[ow];
                        else if (sw == 2)
                            for (int64_t ow = lo; ow < hi; ow++)
                                row[2 * ow + off] += sp[ow];
                        else
                            for (int64_t ow = lo; ow < hi; ow++)
                                row[ow * sw + off] += sp[ow];
                    }
                }
            }
        }
    }
}

/* dst (og, nb*P), leading dimension ld <- rows o0.. of src (N, O, P), images n0..n0+nb-1. */
static void gather_rows(float *dst, int64_t ld, const float *src, int64_t O, int64_t P,
                        int64_t n0, int64_t nb, int64_t o0, int64_t og, bool par)
{
#pragma omp parallel for collapse(2) schedule(static) if (par && og * nb * P > FS_PARALLEL_MIN)
    for (int64_t o = 0; o < og; o++)
        for (int64_t n = 0; n < nb; n++)
            memcpy(dst + o * ld + n * P, src + ((n0 + n) * O + o0 + o) * P,
                   (size_t)P * sizeof(float));
}

/* dst (N, O, P) rows o0.. of images n0.. <- src (og, nb*P), leading dimension ld, + b[o0 + o]
 * (b may be NULL). */
static void scatter_rows(float *dst, const float *src, int64_t ld, const float *b, int64_t O,
                         int64_t P, int64_t n0, int64_t nb, int64_t o0, int64_t og, bool par)
{
#pragma omp parallel for collapse(2) schedule(static) if (par && og * nb * P > FS_PARALLEL_MIN)
    for (int64_t n = 0; n < nb; n++)
        for (int64_t o = 0; o < og; o++) {
            float *d = dst + ((n0 + n) * O + o0 + o) * P;
            const float *sp = src + o * ld + n * P;
            float bv = b ? b[o0 + o] : 0.0f;
            for (int64_t p = 0; p < P; p++)
                d[p] = sp[p] + bv;
        }
}

/* y (N, O, P) += b (O) */
static void add_bias(float *y, const float *b, int64_t N, int64_t O, int64_t P)
{
#pragma omp parallel for collapse(2) schedule(static) if (N * O * P > FS_PARALLEL_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++) {
            float *d = y + (n * O + o) * P, bv = b[o];
            for (int64_t p = 0; p < P; p++)
                d[p] += bv;
        }
}

/* d (P), one output channel o: the epilogue (see nn.h). */
static void ep_apply(float *d, int64_t P, const fs_conv_epilogue *ep, int64_t o)
{
    const float m = ep->mean[o], sc = ep->scale[o], sh = ep->shift[o];
    if (ep->relu)
        for (int64_t q = 0; q < P; q++) {
            float v = (d[q] - m) * sc + sh;
            d[q] = v > 0.0f ? v : 0.0f;
        }
    else
        for (int64_t q = 0; q < P; q++)
            d[q] = (d[q] - m) * sc + sh;
}

/* y (N, O, P): the epilogue over every channel. */
static void ep_apply_all(float *y, const fs_conv_epilogue *ep, int64_t N, int64_t O, int64_t P)
{
#pragma omp parallel for collapse(2) schedule(static) if (N * O * P > FS_PARALLEL_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            ep_apply(y + (n * O + o) * P, P, ep, o);
}

/* db (O) = sum of dy (N, O, P) over N and P (in double). */
static void bias_grad(float *db, const float *dy, int64_t N, int64_t O, int64_t P)
{
#pragma omp parallel for schedule(static) if (N * O * P > FS_PARALLEL_MIN)
    for (int64_t o = 0; o < O; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *d = dy + (n * O + o) * P;
            float part = 0.0f;
            for (int64_t p = 0; p < P; p++)
                part += d[p];
            acc += part;
        }
        db[o] = (float)acc;
    }
}

/* ---- kernels ---- */

/* Threads own images: thread t takes images [N t / T, N (t+1) / T) and runs the whole
 * pipeline on them alone (unfold its images into its own col, one GEMM, scatter; backward:
 * its own dy block, its own partial dw, col2im into its own images), so a convolution is one
 * parallel region with no barrier in between (backward: one, before dw's reduction). Each
 * step also stays in cache (a thread's col is at most COL_BUDGET / T floats). Used when every
 * thread gets an image and dw's per-thread copies are small next to the columns; otherwise
 * the batched form below (GEMMs split over the threads). */
static bool use_thread_images(const fs_conv2d_shape *s, bool with_dw)
{
    int64_t nt = fs_get_num_threads(), K = s->c / s->a.groups * s->kh * s->kw;
    int64_t P = s->oh * s->ow;
    if (nt < 2 || nt > 64 || s->n < nt)
        return false;
    return !with_dw || s->o * K * (nt - 1) <= s->n * P * K / 2;
}

/* Images per step for a thread: its share, cut to the per-thread column budget. */
static int64_t thread_step(int64_t share, int64_t per_image, int64_t nt)
{
    int64_t nb = per_image > 0 ? COL_BUDGET / nt / per_image : share;
    if (nb < 1)
        nb = 1;
    return nb < share ? nb : share;
}

/* Backward when the weights are large next to the columns (late stages: w 512 x 4608,
 * columns 4608 x 108): each thread takes whole input channels c0..c1-1 of each group, i.e.
 * rows k0..k1-1 of col and columns of w. It gathers dy for the whole batch (small here),
 * unfolds its rows of col for all images and computes dw's columns k0..k1-1; then its rows of
 * dcol = w^T dy for all images and col2im into its channels of dx. Every thread packs only its
 * own part of w for OpenBLAS, and no two threads write the same value: no barrier at all. */
static bool use_krows(const fs_conv2d_shape *s)
{
    int64_t nt = fs_get_num_threads(), KK = s->kh * s->kw, Cg = s->c / s->a.groups;
    int64_t NP = s->n * s->oh * s->ow, Og = s->o / s->a.groups;
    int64_t rows = (Cg + nt - 1) / nt * KK, ld = pad_ld(NP);
    int64_t per = Og * ld + rows * ld;
    return nt >= 2 && nt <= 64 && Cg >= nt && nt * per <= COL_BUDGET;
}

static int conv_backward_krows(float *dx, float *dw, const float *dy, const float *x,
                               const float *w, const fs_conv2d_shape *s, bool dw_add)
{
    const int64_t N = s->n, G = s->a.groups, Cg = s->c / G, Og = s->o / G, O = s->o;
    const int64_t KK = s->kh * s->kw, K = Cg * KK, P = s->oh * s->ow, NP = N * P;
    const int nt = fs_get_num_threads();
    const int64_t rows = (Cg + nt - 1) / nt * KK, ld = pad_ld(NP);
    const int64_t per_thread = Og * ld + rows * ld;
    float *ws = workspace((size_t)(nt * per_thread));
    if (!ws)
        return -1;
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        float *dy2 = ws + t * per_thread, *col = dy2 + Og * ld;
        const int64_t c0 = Cg * t / T, c1 = Cg * (t + 1) / T, k0 = c0 * KK, k1 = c1 * KK;
        for (int64_t g = 0; g < G && k1 > k0; g++) {
            gather_rows(dy2, ld, dy, O, P, 0, N, g * Og, Og, false);
            if (dw) {
                im2col_rows(col, ld, x, s, 0, N, g * Cg, k0, k1, false);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Og, (int)(k1 - k0),
                            (int)NP, 1.0f, dy2, (int)ld, col, (int)ld, dw_add ? 1.0f : 0.0f,
                            dw + g * Og * K + k0, (int)K);
            }
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(k1 - k0), (int)NP,
                            (int)Og, 1.0f, w + g * Og * K + k0, (int)K, dy2, (int)ld, 0.0f, col,
                            (int)ld);
                col2im(dx, col, ld, s, 0, N, g * Cg + c0, c1 - c0, false);
            }
        }
    }
    return 0;
}

/* Weights large next to the columns: more output channels than output pixels in the batch,
 * over long columns (ResNet's layer4 at 64x64). */
static bool weights_heavy(const fs_conv2d_shape *s)
{
    int64_t K = s->c / s->a.groups * s->kh * s->kw, Og = s->o / s->a.groups;
    return Og >= s->n * s->oh * s->ow && K >= 512;
}

/* Forward for those shapes: the batch is unfolded once, shared, and each thread multiplies its
 * own rows of w (blocks of 16 output channels), so that OpenBLAS packs every weight once, not
 * once per thread. */
static bool use_orows(const fs_conv2d_shape *s)
{
    int64_t nt = fs_get_num_threads(), K = s->c / s->a.groups * s->kh * s->kw;
    int64_t NP = s->n * s->oh * s->ow, Og = s->o / s->a.groups;
    return nt >= 2 && nt <= 64 && Og >= 16 * nt && weights_heavy(s) &&
           (K + Og) * pad_ld(NP) <= COL_BUDGET;
}

static int conv_forward_orows(float *y, const float *x, const float *w, const float *b,
                              const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    const int64_t N = s->n, G = s->a.groups, Cg = s->c / G, Og = s->o / G, O = s->o;
    const int64_t K = Cg * s->kh * s->kw, P = s->oh * s->ow, NP = N * P, ld = pad_ld(NP);
    const int nt = fs_get_num_threads();
    float *col = workspace((size_t)((K + Og) * ld));
    if (!col)
        return -1;
    float *tmp = col + K * ld;
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        const int64_t nb16 = (Og + 15) / 16, e = nb16 * (t + 1) / T * 16;
        const int64_t o0 = nb16 * t / T * 16, o1 = e < Og ? e : Og; /* blocks of 16 rows */
        for (int64_t g = 0; g < G; g++) {
            /* each thread unfolds its share of the rows; all of them read all rows */
            im2col_rows(col + K * t / T * ld, ld, x, s, 0, N, g * Cg, K * t / T,
                        K * (t + 1) / T, false);
#pragma omp barrier
            if (o1 > o0) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(o1 - o0), (int)NP,
                            (int)K, 1.0f, w + (g * Og + o0) * K, (int)K, col, (int)ld, 0.0f,
                            tmp + o0 * ld, (int)ld);
                scatter_rows(y, tmp + o0 * ld, ld, b, O, P, 0, N, g * Og + o0, o1 - o0, false);
                if (ep)
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t o = o0; o < o1; o++)
                            ep_apply(y + (n * O + g * Og + o) * P, P, ep, g * Og + o);
            }
#pragma omp barrier /* col is the next group's */
        }
    }
    return 0;
}

static int conv_forward_threads(float *y, const float *x, const float *w, const float *b,
                                const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    const int64_t N = s->n, G = s->a.groups, Cg = s->c / G, Og = s->o / G, O = s->o;
    const int64_t K = Cg * s->kh * s->kw, P = s->oh * s->ow;
    const int nt = fs_get_num_threads();
    const int64_t share = (N + nt - 1) / nt, nb = thread_step(share, K * P, nt);
    const int64_t ld = pad_ld(nb * P), per_thread = (K + Og) * ld;
    float *ws = workspace((size_t)(nt * per_thread));
    if (!ws)
        return -1;
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        float *col = ws + t * per_thread, *tmp = col + K * ld;
        int64_t i0 = N * t / T, i1 = N * (t + 1) / T;
        for (int64_t n0 = i0; n0 < i1; n0 += nb) {
            int64_t cur = i1 - n0 < nb ? i1 - n0 : nb, np = cur * P;
            for (int64_t g = 0; g < G; g++) {
                im2col(col, ld, x, s, n0, cur, g * Cg, Cg, false);
                float *out = cur == 1 ? y + (n0 * O + g * Og) * P : tmp;
                int64_t ldo = cur == 1 ? P : ld;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Og, (int)np, (int)K,
                            1.0f, w + g * Og * K, (int)K, col, (int)ld, 0.0f, out, (int)ldo);
                if (cur > 1 || b)
                    for (int64_t n = 0; n < cur; n++)
                        for (int64_t o = 0; o < Og; o++) {
                            float *d = y + ((n0 + n) * O + g * Og + o) * P;
                            const float *sp = out + o * ldo + n * P;
                            float bv = b ? b[g * Og + o] : 0.0f;
                            if (cur == 1)
                                for (int64_t q = 0; q < P; q++)
                                    d[q] += bv;
                            else
                                for (int64_t q = 0; q < P; q++)
                                    d[q] = sp[q] + bv;
                        }
                if (ep) /* on the block just written, still in cache */
                    for (int64_t n = 0; n < cur; n++)
                        for (int64_t o = 0; o < Og; o++)
                            ep_apply(y + ((n0 + n) * O + g * Og + o) * P, P, ep, g * Og + o);
            }
        }
    }
    return 0;
}

static int conv_backward_threads(float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, const fs_conv2d_shape *s, bool dw_add)
{
    const int64_t N = s->n, G = s->a.groups, Cg = s->c / G, Og = s->o / G, O = s->o;
    const int64_t K = Cg * s->kh * s->kw, P = s->oh * s->ow, WK = O * K;
    const int nt = fs_get_num_threads();
    const int64_t share = (N + nt - 1) / nt, nb = thread_step(share, K * P, nt);
    const int64_t ld = pad_ld(nb * P), per_thread = (K + Og) * ld;
    float *ws = workspace((size_t)(nt * per_thread + (dw ? (nt - 1) * WK : 0)));
    if (!ws)
        return -1;
    float *dw_parts = ws + nt * per_thread;
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        float *col = ws + t * per_thread, *dyg = col + K * ld;
        float *dwt = dw ? (t == 0 ? dw : dw_parts + (t - 1) * WK) : NULL;
        int64_t i0 = N * t / T, i1 = N * (t + 1) / T;
        /* thread 0's copy is dw itself: with dw_add it starts from what dw holds */
        const bool from_dw = dw_add && t == 0;
        if (dwt && i1 <= i0 && !from_dw)
            memset(dwt, 0, (size_t)WK * sizeof(float));
        for (int64_t n0 = i0; n0 < i1; n0 += nb) {
            int64_t cur = i1 - n0 < nb ? i1 - n0 : nb, np = cur * P;
            for (int64_t g = 0; g < G; g++) {
                const float *dyb = dy + (n0 * O + g * Og) * P; /* (Og, P) when cur == 1 */
                int64_t ldy = P;
                if (cur > 1) {
                    gather_rows(dyg, ld, dy, O, P, n0, cur, g * Og, Og, false);
                    dyb = dyg;
                    ldy = ld;
                }
                if (dwt) {
                    im2col(col, ld, x, s, n0, cur, g * Cg, Cg, false);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Og, (int)K, (int)np,
                                1.0f, dyb, (int)ldy, col, (int)ld,
                                n0 == i0 && !from_dw ? 0.0f : 1.0f, dwt + g * Og * K, (int)K);
                }
                if (dx) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)np, (int)Og,
                                1.0f, w + g * Og * K, (int)K, dyb, (int)ldy, 0.0f, col, (int)ld);
                    col2im(dx, col, ld, s, n0, cur, g * Cg, Cg, false);
                }
            }
        }
        if (dw)
            fs_sum_thread_parts(dw, dw_parts, WK, T);
    }
    return 0;
}

static int conv_forward(float *y, const float *x, const float *w, const float *b,
                        const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    const int64_t N = s->n, G = s->a.groups, Cg = s->c / G, Og = s->o / G;
    const int64_t K = Cg * s->kh * s->kw, P = s->oh * s->ow, HW = s->h * s->w;
    if (N == 0 || P == 0 || s->o == 0)
        return 0;
    if (fs_conv_direct_forward_ok(s))
        return fs_conv_direct_forward(y, x, w, b, ep, s);
    if (fs_conv_small_forward_ok(s))
        return fs_conv_small_forward(y, x, w, b, ep, s);
    if (!use_direct(s) && use_orows(s))
        return conv_forward_orows(y, x, w, b, ep, s);
    if (!use_direct(s) && use_thread_images(s, false))
        return conv_forward_threads(y, x, w, b, ep, s);
    if (use_direct(s)) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t g = 0; g < G; g++)
                gemm(false, false, Og, P, Cg, w + g * Og * K, K, x + (n * s->c + g * Cg) * HW, HW,
                     0.0f, y + (n * s->o + g * Og) * P, P);
        if (b)
            add_bias(y, b, N, s->o, P);
        if (ep)
            ep_apply_all(y, ep, N, s->o, P);
        return 0;
    }
    const int64_t nb = chunk_images(N, K * P), ld = pad_ld(nb * P);
    float *col = workspace((size_t)((K + Og) * ld));
    if (!col)
        return -1;
    float *tmp = col + K * ld;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        int64_t cur = N - n0 < nb ? N - n0 : nb;
        for (int64_t g = 0; g < G; g++) {
            im2col(col, ld, x, s, n0, cur, g * Cg, Cg, true);
            if (cur == 1) { /* the image's rows of y are one (Og, P) block: no scatter */
                float *yb = y + (n0 * s->o + g * Og) * P;
                gemm(false, false, Og, P, K, w + g * Og * K, K, col, ld, 0.0f, yb, P);
                if (b)
                    add_bias(yb, b + g * Og, 1, Og, P);
                continue;
            }
            gemm(false, false, Og, cur * P, K, w + g * Og * K, K, col, ld, 0.0f, tmp, ld);
            scatter_rows(y, tmp, ld, b, s->o, P, n0, cur, g * Og, Og, true);
        }
    }
    if (ep)
        ep_apply_all(y, ep, N, s->o, P);
    return 0;
}

/* dw_add: dw holds a gradient already (a parameter's .grad), to which this one is added. */
static int conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, const fs_conv2d_shape *s, bool dw_add)
{
    const int64_t N = s->n, G = s->a.groups, Cg = s->c / G, Og = s->o / G;
    const int64_t K = Cg * s->kh * s->kw, P = s->oh * s->ow, HW = s->h * s->w;
    if (db)
        bias_grad(db, dy, N, s->o, P);
    if (dw && !dw_add && (N == 0 || P == 0))
        memset(dw, 0, (size_t)(s->o * K) * sizeof(float));
    if (dx && (N == 0 || P == 0 || s->o == 0))
        memset(dx, 0, (size_t)(N * s->c * HW) * sizeof(float));
    if (N == 0 || P == 0 || s->o == 0 || (!dx && !dw))
        return 0;
    /* each of dw and dx by conv_direct.c's kernels where they take the shape, else below */
    const bool dw_direct = dw && fs_conv_direct_backward_weight_ok(s);
    const bool dx_direct = dx && fs_conv_direct_backward_data_ok(s);
    if (dw_direct || dx_direct) {
        if (dw && (dw_direct ? fs_conv_direct_backward_weight(dw, dy, x, s, dw_add)
                             : conv_backward(NULL, dw, NULL, dy, x, w, s, dw_add)) != 0)
            return -1;
        if (dx && (dx_direct ? fs_conv_direct_backward_data(dx, dy, w, s)
                             : conv_backward(dx, NULL, NULL, dy, x, w, s, false)) != 0)
            return -1;
        return 0;
    }
    if (!use_direct(s) && use_krows(s) &&
        (weights_heavy(s) || (dw && !use_thread_images(s, true))))
        return conv_backward_krows(dx, dw, dy, x, w, s, dw_add);
    if (!use_direct(s) && use_thread_images(s, dw != NULL))
        return conv_backward_threads(dx, dw, dy, x, w, s, dw_add);
    if (use_direct(s)) {
        for (int64_t g = 0; g < G; g++)
            for (int64_t n = 0; n < N; n++) {
                const float *dyn = dy + (n * s->o + g * Og) * P;
                if (dw)
                    gemm(false, true, Og, Cg, P, dyn, P, x + (n * s->c + g * Cg) * HW, HW,
                         n || dw_add ? 1.0f : 0.0f, dw + g * Og * K, K);
                if (dx)
                    gemm(true, false, Cg, P, Og, w + g * Og * K, K, dyn, P, 0.0f,
                         dx + (n * s->c + g * Cg) * HW, HW);
            }
        return 0;
    }
    const int64_t nb = chunk_images(N, K * P), ld = pad_ld(nb * P);
    float *col = workspace((size_t)((K + Og) * ld));
    if (!col)
        return -1;
    float *dyg = col + K * ld;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        int64_t cur = N - n0 < nb ? N - n0 : nb, np = cur * P;
        for (int64_t g = 0; g < G; g++) {
            gather_rows(dyg, ld, dy, s->o, P, n0, cur, g * Og, Og, true);
            if (dw) {
                im2col(col, ld, x, s, n0, cur, g * Cg, Cg, true);
                gemm(false, true, Og, K, np, dyg, ld, col, ld, n0 || dw_add ? 1.0f : 0.0f,
                     dw + g * Og * K, K);
            }
            if (dx) { /* col is free again: reuse it for dcol */
                gemm(true, false, K, np, Og, w + g * Og * K, K, dyg, ld, 0.0f, col, ld);
                col2im(dx, col, ld, s, n0, cur, g * Cg, Cg, true);
            }
        }
    }
    return 0;
}

int fs_conv2d_forward_ep(float *y, const float *x, const float *w, const float *b,
                         const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    int saved = fs_blas_single_begin();
    int rc = conv_forward(y, x, w, b, ep, s);
    fs_blas_single_end(saved);
    return rc;
}

int fs_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                      const fs_conv2d_shape *s)
{
    return fs_conv2d_forward_ep(y, x, w, b, NULL, s);
}

int fs_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                       const float *w, const fs_conv2d_shape *s, bool dw_add)
{
    int saved = fs_blas_single_begin();
    int rc = conv_backward(dx, dw, db, dy, x, w, s, dw_add);
    fs_blas_single_end(saved);
    return rc;
}

/* ---- differentiable ops ---- */

/* dinputs of conv2d (x, w, b); saved: x, w contiguous; ctx: the shape. The weight gradient is
 * added straight into the weight's .grad when it has one (a model's flat gradient buffer):
 * no temporary of the weights' size, no pass to add it. */
static int conv2d_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_conv2d_shape *s = n->ctx;
    const fs_tensor *x = n->saved[0], *w = n->saved[1];
    fs_tensor *dx = NULL, *dw = NULL, *db = NULL;
    fs_tensor *wgrad = fs_node_wants(n, 1) ? fs_node_leaf_grad(n, 1) : NULL;
    if (fs_node_wants(n, 0) && !(dx = fs_tensor_new(x->ndim, x->size)))
        goto fail;
    if (fs_node_wants(n, 1) && !wgrad && !(dw = fs_tensor_new(w->ndim, w->size)))
        goto fail;
    if (fs_node_wants(n, 2) && !(db = fs_tensor_new(1, &s->o)))
        goto fail;
    if (fs_conv2d_backward(dx ? fs_data(dx) : NULL,
                           wgrad ? fs_data(wgrad) : dw ? fs_data(dw) : NULL,
                           db ? fs_data(db) : NULL, fs_data(dout), fs_data(x), fs_data(w), s,
                           wgrad != NULL) < 0)
        goto fail;
    dinputs[0] = dx;
    dinputs[1] = dw;
    dinputs[2] = db;
    return 0;
fail:
    fs_nn_release_all(3, (fs_tensor *[]){dx, dw, db});
    return -1;
}

/* Records node (if any input wants a gradient) with saved x, w and the shape; consumes xc, wc. */
static int record(const char *name, fs_backward_fn fn, fs_tensor *x, fs_tensor *w, fs_tensor *b,
                  fs_tensor *xc, fs_tensor *wc, const fs_conv2d_shape *s, fs_tensor *y)
{
    fs_tensor *ins[3] = {x, w, b};
    if (!fs_any_requires_grad(3, ins)) {
        fs_tensor_release(xc);
        fs_tensor_release(wc);
        return 0;
    }
    fs_node *n = fs_node_new_ctx(name, fn, 3, ins, s, sizeof *s);
    if (!n) {
        fs_tensor_release(xc);
        fs_tensor_release(wc);
        return -1;
    }
    n->saved[0] = xc;
    n->saved[1] = wc;
    fs_node_attach(n, y);
    return 0;
}

fs_tensor *fs_conv2d(fs_tensor *x, fs_tensor *w, fs_tensor *b, const fs_conv2d_args *a)
{
    fs_conv2d_args def = FS_CONV2D_ARGS_DEFAULT;
    fs_conv2d_shape s;
    if (fs_conv2d_shape_init(&s, "conv2d", x, w, b, a ? a : &def) < 0)
        return NULL;
    int64_t ysize[4] = {s.n, s.o, s.oh, s.ow};
    int batched = x->ndim == 4;
    fs_tensor *xc = fs_nn_contig(x), *wc = fs_nn_contig(w), *bc = b ? fs_nn_contig(b) : NULL;
    fs_tensor *y = (xc && wc && (bc || !b)) ? fs_tensor_new(batched ? 4 : 3, ysize + !batched)
                                            : NULL;
    if (!y || fs_conv2d_forward(fs_data(y), fs_data(xc), fs_data(wc), bc ? fs_data(bc) : NULL,
                                &s) < 0)
        goto fail;
    fs_tensor_release(bc);
    bc = NULL;
    if (record("conv2d", conv2d_backward_node, x, w, b, xc, wc, &s, y) < 0) {
        fs_tensor_release(y);
        return NULL;
    }
    return y;
fail:
    fs_nn_release_all(4, (fs_tensor *[]){xc, wc, bc, y});
    return NULL;
}

static int check_bn_vec(const char *name, const fs_tensor *t, const fs_tensor *w, int64_t o)
{
    if (t && (t->ndim != 1 || t->size[0] != o))
        return fs_set_error("conv2d_bn_eval: %s %s must have shape (%lld) for weight %s", name,
                            FS_SHAPE(t), (long long)o, FS_SHAPE(w));
    return 0;
}

fs_tensor *fs_conv2d_bn_eval(fs_tensor *x, fs_tensor *w, fs_tensor *b, const fs_conv2d_args *a,
                             fs_tensor *running_mean, fs_tensor *running_var,
                             fs_tensor *bn_weight, fs_tensor *bn_bias, double eps, bool relu)
{
    fs_conv2d_args def = FS_CONV2D_ARGS_DEFAULT;
    fs_conv2d_shape s;
    if (fs_conv2d_shape_init(&s, "conv2d", x, w, b, a ? a : &def) < 0)
        return NULL;
    const int64_t O = s.o;
    if (!running_mean || !running_var)
        return fs_set_error("conv2d_bn_eval: needs running_mean and running_var"), NULL;
    if (check_bn_vec("running_mean", running_mean, w, O) < 0 ||
        check_bn_vec("running_var", running_var, w, O) < 0 ||
        check_bn_vec("weight", bn_weight, w, O) < 0 || check_bn_vec("bias", bn_bias, w, O) < 0)
        return NULL;
    float *par = fs_alloc((size_t)(3 * (O ? O : 1)) * sizeof(float));
    if (!par)
        return NULL;
    /* as batch_norm's eval mode computes them (norm.c) */
    for (int64_t o = 0; o < O; o++) {
        double mu = fs_data(running_mean)[o * running_mean->stride[0]];
        double var = fs_data(running_var)[o * running_var->stride[0]];
        double is = 1.0 / sqrt(var + eps);
        double g = bn_weight ? fs_data(bn_weight)[o * bn_weight->stride[0]] : 1.0;
        par[o] = (float)mu;
        par[O + o] = (float)(g * is);
        par[2 * O + o] = bn_bias ? fs_data(bn_bias)[o * bn_bias->stride[0]] : 0.0f;
    }
    fs_conv_epilogue ep = {par, par + O, par + 2 * O, relu};
    int64_t ysize[4] = {s.n, s.o, s.oh, s.ow};
    int batched = x->ndim == 4;
    fs_tensor *xc = fs_nn_contig(x), *wc = fs_nn_contig(w), *bc = b ? fs_nn_contig(b) : NULL;
    fs_tensor *y = (xc && wc && (bc || !b)) ? fs_tensor_new(batched ? 4 : 3, ysize + !batched)
                                            : NULL;
    if (y && fs_conv2d_forward_ep(fs_data(y), fs_data(xc), fs_data(wc), bc ? fs_data(bc) : NULL,
                                  &ep, &s) < 0) {
        fs_tensor_release(y);
        y = NULL;
    }
    fs_free(par);
    fs_nn_release_all(3, (fs_tensor *[]){xc, wc, bc});
    return y;
}

/* conv_transpose2d: x (N, Cin, H, W) is the conv's dy, y the conv's dx. */
static int conv_transpose2d_backward_node(fs_node *n, const fs_tensor *dout, fs_tensor **dinputs)
{
    const fs_conv2d_shape *s = n->ctx;
    const fs_tensor *x = n->saved[0], *w = n->saved[1];
    fs_tensor *dx = NULL, *dw = NULL, *db = NULL;
    int64_t nout = s->c;
    if (fs_node_wants(n, 0)) { /* dx = conv2d(dout, w) */
        if (!(dx = fs_tensor_new(x->ndim, x->size)) ||
            fs_conv2d_forward(fs_data(dx), fs_data(dout), fs_data(w), NULL, s) < 0)
            goto fail;
    }
    /* dw = the conv's weight gradient with input dout and output-gradient x; db sums dout */
    if (fs_node_wants(n, 1)) {
        if (!(dw = fs_tensor_new(w->ndim, w->size)) ||
            fs_conv2d_backward(NULL, fs_data(dw), NULL, fs_data(x), fs_data(dout), fs_data(w),
                               s, false) < 0)
            goto fail;
    }
    if (fs_node_wants(n, 2)) {
        if (!(db = fs_tensor_new(1, &nout)))
            goto fail;
        bias_grad(fs_data(db), fs_data(dout), s->n, s->c, s->h * s->w);
    }
    dinputs[0] = dx;
    dinputs[1] = dw;
    dinputs[2] = db;
    return 0;
fail:
    fs_nn_release_all(3, (fs_tensor *[]){dx, dw, db});
    return -1;
}

fs_tensor *fs_conv_transpose2d(fs_tensor *x, fs_tensor *w, fs_tensor *b, const fs_conv2d_args *a)
{
    fs_conv2d_args def = FS_CONV2D_ARGS_DEFAULT;
    fs_conv2d_shape s;
    if (transpose_shape_init(&s, x, w, b, a ? a : &def) < 0)
        return NULL;
    int64_t ysize[4] = {s.n, s.c, s.h, s.w};
    int batched = x->ndim == 4;
    fs_tensor *xc = fs_nn_contig(x), *wc = fs_nn_contig(w), *bc = b ? fs_nn_contig(b) : NULL;
    fs_tensor *y = (xc && wc && (bc || !b)) ? fs_tensor_new(batched ? 4 : 3, ysize + !batched)
                                            : NULL;
    if (!y || fs_conv2d_backward(fs_data(y), NULL, NULL, fs_data(xc), NULL, fs_data(wc), &s,
                                 false) < 0)
        goto fail;
    if (bc)
        add_bias(fs_data(y), fs_data(bc), s.n, s.c, s.h * s.w);
    fs_tensor_release(bc);
    bc = NULL;
    if (record("conv_transpose2d", conv_transpose2d_backward_node, x, w, b, xc, wc, &s, y) < 0) {
        fs_tensor_release(y);
        return NULL;
    }
    return y;
fail:
    fs_nn_release_all(4, (fs_tensor *[]){xc, wc, bc, y});
    return NULL;
}
