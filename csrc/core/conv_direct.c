/* conv_direct.c - convolution as register-blocked GEMMs that read shifted copies of the
 * image instead of an im2col matrix (AVX-512 builds only; conv.c asks *_ok first).
 *
 * For an undilated convolution with stride (sh, sw) and padding (ph, pw), output pixel
 * q = oy*OW + ox of channel o is
 *     y[o, q] = sum over taps k = (c, ky, kx) of w[o, k] * xs[off[k] + q]
 * where xs holds, per (c, kx, row phase ky % sh), a plane of Hp = OH + (kh-1)/sh rows of OW
 * floats: x[c, sh*r + ky%sh - ph, sw*ox + kx - pw], zero outside the image. These copies are
 * kw*sh / (kh*kw) of im2col's size, and tap k of a vector of 16 consecutive output pixels is
 * one contiguous load at off[k] (tap_offsets). The last vector of an image is masked when
 * OH*OW is not a multiple of 16.
 *   - forward: MR = 8 output channels x NV <= 3 vectors in 24 zmm accumulators; per tap NV
 *     loads and 8 broadcast FMAs' worth of weights, read in place from w (O, K) or packed.
 *   - data-gradient (stride 1): dy convolved with the weights flipped in space and transposed
 *     (c <-> o), padding k-1-p: the forward's driver on packed weights.
 *   - weight-gradient: dw[o, k] = sum over pixels of dy[o, q] * xs[off[k] + q], tiles of
 *     4 channels x 6 taps accumulating 16 lanes over a chunk of images, then summing them.
 * Threads own images (one parallel region; dw sums per-thread copies after one barrier);
 * with fewer images than threads they split the output channels instead.
 */
#include <stdint.h>
#include <string.h>

#include "conv_direct.h"
#include "nn_internal.h"

#ifdef __AVX512F__
#include <immintrin.h>

#define MR 8     /* output channels per kernel call */
#define NVMAX 3  /* vectors of 16 pixels per kernel call */
#define LANES 16

/* Vectors of 16 lanes that hold P pixels, the last one masked. */
static inline int64_t vectors_of(int64_t P) { return (P + LANES - 1) / LANES; }

/* The lanes of a vector whose first pixel has rest pixels left in its image. */
static inline __mmask16 lanes_of(int64_t rest)
{
    return rest >= LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << rest) - 1);
}

/* One stride-1 convolution as the driver sees it (the data-gradient's is transposed). */
typedef struct dshape {
    int64_t n, c, h, w;       /* input (n, c, h, w) */
    int64_t o, kh, kw;        /* output channels, kernel */
    int64_t sh, sw;           /* stride, >= 1 */
    int64_t ph, pw;           /* zero padding, >= 0 */
    int64_t oh, ow;           /* output */
} dshape;

/* One output vector: where its taps start in xs, where its channel-0 pixels go, which lanes
 * are pixels. */
typedef struct ovec {
    const float *in;
    float *out;
    __mmask16 m;
} ovec;

/* Where the kernel finds the weight of channel b*MR + i at tap k: w[b*block + i*row + k*step].
 * Packed (block K*MR, row 1, step MR), or the forward's own (O, K) rows when O is a multiple
 * of MR (block MR*K, row K, step 1): packing costs a pass over the weights on every call,
 * which is most of the weights' traffic for one image. */
typedef struct weights {
    const float *w;
    int64_t block, row, step;
} weights;

/* What happens to a finished value of channel o: + bias[o], then the epilogue. */
typedef struct finish {
    const float *bias;           /* (o) or NULL */
    const fs_conv_epilogue *ep;  /* or NULL */
} finish;

static inline __m512 finish_value(__m512 v, const finish *f, int64_t o)
{
    if (f->bias)
        v = _mm512_add_ps(v, _mm512_set1_ps(f->bias[o]));
    if (f->ep) { /* (v - mean) * scale + shift, rounded as ep_apply in conv.c does */
        v = _mm512_sub_ps(v, _mm512_set1_ps(f->ep->mean[o]));
        v = _mm512_mul_ps(v, _mm512_set1_ps(f->ep->scale[o]));
        v = _mm512_add_ps(v, _mm512_set1_ps(f->ep->shift[o]));
        if (f->ep->relu)
            v = _mm512_max_ps(v, _mm512_setzero_ps());
    }
    return v;
}

/* out rows o0 .. o0+mr-1 of the NV vectors v: sum over k < K of weight (b*MR + i, k) times the
 * 16 inputs at v[j].in + off[k]. Channel o's row is at v[j].out + o*P. The accumulators are
 * named (cIJ: channel I, vector J), not an array: GCC keeps an array of vectors in memory. */
#define KERNEL_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define KERNEL_FMA(i)                                                                         \
    {                                                                                         \
        const __m512 wb = _mm512_set1_ps(wk[i * wrow]);                                       \
        c##i##0 = _mm512_fmadd_ps(wb, x0, c##i##0);                                           \
        if (nv > 1)                                                                           \
            c##i##1 = _mm512_fmadd_ps(wb, x1, c##i##1);                                       \
        if (nv > 2)                                                                           \
            c##i##2 = _mm512_fmadd_ps(wb, x2, c##i##2);                                       \
    }
#define KERNEL_STORE(i)                                                                       \
    if (i < mr) {                                                                             \
        _mm512_mask_storeu_ps(v[0].out + (o0 + i) * P, v[0].m, finish_value(c##i##0, f, o0 + i)); \
        if (nv > 1)                                                                           \
            _mm512_mask_storeu_ps(v[1].out + (o0 + i) * P, v[1].m,                            \
                                  finish_value(c##i##1, f, o0 + i));                          \
        if (nv > 2)                                                                           \
            _mm512_mask_storeu_ps(v[2].out + (o0 + i) * P, v[2].m,                            \
                                  finish_value(c##i##2, f, o0 + i));                          \
    }
#define ALL8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define DEFINE_KERNEL(NV)                                                                     \
    static void kernel##NV(int64_t K, const int32_t *off, const weights *wt, int64_t b,       \
                           const ovec *v, int64_t P, int64_t o0, int mr, const finish *f)     \
    {                                                                                         \
        const int nv = NV;                                                                    \
        const float *wbase = wt->w + b * wt->block;                                           \
        const int64_t wrow = wt->row, wstep = wt->step;                                       \
        ALL8(KERNEL_DECL)                                                                     \
        const float *in0 = v[0].in, *in1 = v[NV > 1 ? 1 : 0].in, *in2 = v[NV > 2 ? 2 : 0].in; \
        const __mmask16 m0 = v[0].m, m1 = v[NV > 1 ? 1 : 0].m, m2 = v[NV > 2 ? 2 : 0].m;      \
        for (int64_t k = 0; k < K; k++) {                                                     \
            const int64_t d = off[k];                                                         \
            const __m512 x0 = _mm512_maskz_loadu_ps(m0, in0 + d);                             \
            const __m512 x1 = NV > 1 ? _mm512_maskz_loadu_ps(m1, in1 + d) : x0;               \
            const __m512 x2 = NV > 2 ? _mm512_maskz_loadu_ps(m2, in2 + d) : x0;               \
            const float *wk = wbase + k * wstep;                                              \
            ALL8(KERNEL_FMA)                                                                  \
        }                                                                                     \
        ALL8(KERNEL_STORE)                                                                    \
    }
DEFINE_KERNEL(1)
DEFINE_KERNEL(2)
DEFINE_KERNEL(3)

static void kernel_nv(int nv, int64_t K, const int32_t *off, const weights *wt, int64_t b,
                      const ovec *v, int64_t P, int64_t o0, int mr, const finish *f)
{
    switch (nv) {
    case 3: kernel3(K, off, wt, b, v, P, o0, mr, f); break;
    case 2: kernel2(K, off, wt, b, v, P, o0, mr, f); break;
    default: kernel1(K, off, wt, b, v, P, o0, mr, f); break;
    }
}

/* Rows of one plane of xs: output rows plus the taps below them. */
static int64_t hp_of(const dshape *d) { return d->oh + (d->kh - 1) / d->sh; }

/* Floats of the shifted copies of one image: a plane per (c, kx, row phase). */
static int64_t xs_floats(const dshape *d) { return d->c * d->kw * d->sh * hp_of(d) * d->ow; }

/* Images per group: enough for NVMAX vectors when images are small. */
/* Images per group: small images go three at a time, so that their vectors fill kernel calls
 * of NVMAX = 3 (4 vectors alone would be two calls of 2). */
static int64_t group_images(const dshape *d)
{
    int64_t nvec = vectors_of(d->oh * d->ow);
    return nvec >= 8 || nvec % NVMAX == 0 ? 1 : NVMAX;
}

/* xs (c, kw, sh, Hp, OW) of image x (c, h, w): plane (c, kx, ay) row r, column ox holds
 * x[c, sh*r + ay - ph, sw*ox + kx - pw] (zero outside the image), so that tap (c, ky, kx) of
 * output (oy, ox) is plane (c, kx, ky % sh) at row oy + ky / sh, column ox. */
static void shift_copies(float *xs, const float *x, const dshape *d)
{
    const int64_t Hp = hp_of(d), OW = d->ow, H = d->h, W = d->w, sw = d->sw;
    for (int64_t c = 0; c < d->c; c++)
        for (int64_t kx = 0; kx < d->kw; kx++) {
            const int64_t sh = kx - d->pw; /* input column of output column 0 */
            /* output columns lo..hi-1 read inside the image */
            int64_t lo = sh < 0 ? (-sh + sw - 1) / sw : 0;
            int64_t hi = W - sh > 0 ? (W - sh + sw - 1) / sw : 0;
            if (hi > OW)
                hi = OW;
            if (hi < lo)
                hi = lo;
            for (int64_t ay = 0; ay < d->sh; ay++) {
                float *dst = xs + ((c * d->kw + kx) * d->sh + ay) * Hp * OW;
                for (int64_t r = 0; r < Hp; r++) {
                    float *row = dst + r * OW;
                    const int64_t iy = d->sh * r + ay - d->ph;
                    if (iy < 0 || iy >= H) {
                        memset(row, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = x + (c * H + iy) * W + sh;
                    for (int64_t q = 0; q < lo; q++)
                        row[q] = 0.0f;
                    if (sw == 1)
                        memcpy(row + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int64_t q = lo; q < hi; q++)
                            row[q] = src[q * sw];
                    for (int64_t q = hi; q < OW; q++)
                        row[q] = 0.0f;
                }
            }
        }
}

/* off (K): where tap k = (c, ky, kx) of output pixel 0 is in xs; pixel q's is off[k] + q. */
static void tap_offsets(int32_t *off, const dshape *d)
{
    const int64_t Hp = hp_of(d);
    for (int64_t c = 0, k = 0; c < d->c; c++)
        for (int64_t ky = 0; ky < d->kh; ky++)
            for (int64_t kx = 0; kx < d->kw; kx++)
                off[k++] = (int32_t)((((c * d->kw + kx) * d->sh + ky % d->sh) * Hp +
                                      ky / d->sh) * d->ow);
}

/* Thread t of T's work: images i0..i1-1 of n and channel blocks b0..b1-1 of nob. Threads own
 * images when there are enough of them, else they split the channel blocks of every image. */
static void share_work(bool own_images, int64_t n, int64_t nob, int t, int T, int64_t *i0,
                       int64_t *i1, int64_t *b0, int64_t *b1)
{
    *i0 = own_images ? n * t / T : 0;
    *i1 = own_images ? n * (t + 1) / T : n;
    *b0 = own_images ? 0 : nob * t / T;
    *b1 = own_images ? nob : nob * (t + 1) / T;
}

/* y (n, o, oh, ow) from x (n, c, h, w) and the weights wt. */
static int run(float *y, const float *x, const weights *wt, const finish *f, const dshape *d)
{
    const int64_t K = d->c * d->kh * d->kw, P = d->oh * d->ow;
    const int64_t nob = (d->o + MR - 1) / MR, per_img = xs_floats(d), gimg = group_images(d);
    const int64_t nvec = vectors_of(P);
    const int nt = fs_get_num_threads();
    const bool own_images = d->n >= nt;
    const int64_t gsz = own_images ? gimg : 1;
    int32_t *off = fs_alloc((size_t)K * sizeof(int32_t));
    float *ws = off ? fs_alloc((size_t)(nt * gsz * per_img) * sizeof(float)) : NULL;
    if (!ws) {
        fs_free(off);
        return -1;
    }
    tap_offsets(off, d);
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_nn_thread(&t, &T);
        float *xs = ws + t * gsz * per_img;
        int64_t i0, i1, b0, b1;
        share_work(own_images, d->n, nob, t, T, &i0, &i1, &b0, &b1);
        ovec v[NVMAX * 8];
        for (int64_t n0 = i0; n0 < i1 && b1 > b0; n0 += gsz) {
            const int64_t cur = i1 - n0 < gsz ? i1 - n0 : gsz;
            int64_t nv = 0;
            for (int64_t g = 0; g < cur; g++) {
                shift_copies(xs + g * per_img, x + (n0 + g) * d->c * d->h * d->w, d);
                for (int64_t q = 0; q < nvec; q++) {
                    v[nv].in = xs + g * per_img + q * LANES;
                    v[nv].out = y + (n0 + g) * d->o * P + q * LANES;
                    v[nv].m = lanes_of(P - q * LANES);
                    if (++nv == NVMAX * 8 || (g == cur - 1 && q == nvec - 1)) {
                        for (int64_t b = b0; b < b1; b++) {
                            int mr = (int)(d->o - b * MR < MR ? d->o - b * MR : MR);
                            /* nv vectors in calls of 2 or 3 (16 = 2+3+3+2+3+3), not 3+..+1 */
                            const int64_t nch = (nv + NVMAX - 1) / NVMAX;
                            for (int64_t j = 0; j < nch; j++) {
                                const int64_t v0 = nv * j / nch, v1 = nv * (j + 1) / nch;
                                kernel_nv((int)(v1 - v0), K, off, wt, b, v + v0, P, b * MR, mr,
                                          f);
                            }
                        }
                        nv = 0;
                    }
                }
            }
        }
    }
    fs_free(ws);
    fs_free(off);
    return 0;
}

static int64_t out_pixels_ok(int64_t P)
{
    /* vectors at least 80% full on average */
    int64_t nvec = vectors_of(P);
    return P >= LANES && nvec * LANES * 4 <= P * 5;
}

static bool fits_offsets(const dshape *d)
{
    return (double)xs_floats(d) * (double)group_images(d) < 2e9;
}

static dshape forward_shape(const fs_conv2d_shape *s)
{
    return (dshape){s->n, s->c, s->h, s->w, s->o, s->kh, s->kw, s->a.stride[0], s->a.stride[1],
                    s->a.padding[0], s->a.padding[1], s->oh, s->ow};
}

static dshape backward_data_shape(const fs_conv2d_shape *s)
{
    return (dshape){s->n, s->o, s->oh, s->ow, s->c, s->kh, s->kw, 1, 1,
                    s->kh - 1 - s->a.padding[0], s->kw - 1 - s->a.padding[1], s->h, s->w};
}

/* Ungrouped, undilated, and not a stride-1 1x1 (conv.c multiplies those in place). */
static bool plain(const fs_conv2d_shape *s)
{
    return s->a.groups == 1 && s->a.dilation[0] == 1 && s->a.dilation[1] == 1 &&
           s->a.stride[0] <= 4 && s->a.stride[1] <= 4 &&
           (s->kh * s->kw > 1 || s->a.stride[0] > 1 || s->a.stride[1] > 1) && s->n > 0 &&
           s->c > 0 && s->o > 0;
}

bool fs_conv_direct_forward_ok(const fs_conv2d_shape *s)
{
    if (!plain(s))
        return false;
    dshape d = forward_shape(s);
    return out_pixels_ok(d.oh * d.ow) && fits_offsets(&d);
}

/* The data-gradient of a strided convolution is not a convolution: stride 1 only. */
bool fs_conv_direct_backward_data_ok(const fs_conv2d_shape *s)
{
    if (!plain(s) || s->a.stride[0] != 1 || s->a.stride[1] != 1 || s->kh * s->kw == 1 ||
        s->a.padding[0] > s->kh - 1 || s->a.padding[1] > s->kw - 1)
        return false;
    dshape d = backward_data_shape(s);
    return out_pixels_ok(d.oh * d.ow) && fits_offsets(&d);
}

/* Floats of the packed weights wp (ceil(o/MR), K, MR) of d. */
static size_t packed_floats(const dshape *d)
{
    return (size_t)(((d->o + MR - 1) / MR) * d->c * d->kh * d->kw * MR);
}

/* wp[b][k][i] = w[b*MR + i][k] for w (O, K) (the forward's weights), zero past O. */
static void pack_forward(float *wp, const float *w, int64_t O, int64_t K)
{
    const int64_t nob = (O + MR - 1) / MR;
#pragma omp parallel for schedule(static) if (O * K > FS_PARALLEL_MIN)
    for (int64_t b = 0; b < nob; b++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < MR; i++)
                wp[(b * K + k) * MR + i] = b * MR + i < O ? w[(b * MR + i) * K + k] : 0.0f;
}

/* The data-gradient's weights from w (O, C, kh, kw): driver channel c (< C) at tap
 * k = (o, ky, kx) is w[o, c, kh-1-ky, kw-1-kx]; packed as pack_forward's. */
static void pack_backward_data(float *wp, const float *w, int64_t O, int64_t C, int64_t kh,
                               int64_t kw)
{
    const int64_t KK = kh * kw, K = O * KK, nob = (C + MR - 1) / MR;
#pragma omp parallel for schedule(static) if (C * K > FS_PARALLEL_MIN)
    for (int64_t b = 0; b < nob; b++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t t = 0; t < KK; t++) {
                const int64_t ft = KK - 1 - t; /* (kh-1-ky)*kw + (kw-1-kx) */
                float *dst = wp + (b * K + o * KK + t) * MR;
                for (int64_t i = 0; i < MR; i++) {
                    const int64_t c = b * MR + i;
                    dst[i] = c < C ? w[(o * C + c) * KK + ft] : 0.0f;
                }
            }
}

int fs_conv_direct_forward(float *y, const float *x, const float *w, const float *b,
                           const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    const dshape d = forward_shape(s);
    const int64_t K = d.c * d.kh * d.kw;
    const finish f = {b, ep};
    if (d.o % MR == 0) {
        const weights wt = {w, MR * K, K, 1};
        return run(y, x, &wt, &f, &d);
    }
    float *wp = fs_alloc(packed_floats(&d) * sizeof(float));
    if (!wp)
        return -1;
    pack_forward(wp, w, d.o, K);
    const weights wt = {wp, K * MR, 1, MR};
    int rc = run(y, x, &wt, &f, &d);
    fs_free(wp);
    return rc;
}

int fs_conv_direct_backward_data(float *dx, const float *dy, const float *w,
                                 const fs_conv2d_shape *s)
{
    const dshape d = backward_data_shape(s);
    float *wp = fs_alloc(packed_floats(&d) * sizeof(float));
    if (!wp)
        return -1;
    pack_backward_data(wp, w, s->o, s->c, s->kh, s->kw);
    const finish f = {NULL, NULL};
    const weights wt = {wp, d.c * d.kh * d.kw * MR, 1, MR};
    int rc = run(dx, dy, &wt, &f, &d);
    fs_free(wp);
    return rc;
}

/* ---- weight gradient ----
 * dw[o, k] = sum over images and pixels q of dy[o, q] * xs[off[k] + q]: a tile of WO output
 * channels x WK taps keeps 24 accumulators of 16 pixel lanes over a chunk of images' vectors,
 * then sums each one's lanes into dw. */
#define WO 4
#define WK 6
#define DW_VECTORS 128           /* vectors per chunk of images: amortizes the lane sums */
#define DW_XS_FLOATS (1 << 18)   /* 1 MB of shifted copies per thread at most */

typedef struct dvec {
    const float *in, *dy; /* tap 0 in xs; channel 0 of dy */
    __mmask16 m;
} dvec;

#define DW_DECL(i)                                                                            \
    __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = a##i##0, a##i##2 = a##i##0,              \
           a##i##3 = a##i##0, a##i##4 = a##i##0, a##i##5 = a##i##0;
#define DW_FMA(i)                                                                             \
    {                                                                                         \
        const __m512 yv = _mm512_maskz_loadu_ps(m, v[t].dy + oi[i]);                          \
        a##i##0 = _mm512_fmadd_ps(yv, x0, a##i##0);                                           \
        a##i##1 = _mm512_fmadd_ps(yv, x1, a##i##1);                                           \
        a##i##2 = _mm512_fmadd_ps(yv, x2, a##i##2);                                           \
        a##i##3 = _mm512_fmadd_ps(yv, x3, a##i##3);                                           \
        a##i##4 = _mm512_fmadd_ps(yv, x4, a##i##4);                                           \
        a##i##5 = _mm512_fmadd_ps(yv, x5, a##i##5);                                           \
    }
#define DW_STORE(i)                                                                           \
    if (i < mo) {                                                                             \
        const float sums[WK] = {_mm512_reduce_add_ps(a##i##0), _mm512_reduce_add_ps(a##i##1), \
                                _mm512_reduce_add_ps(a##i##2), _mm512_reduce_add_ps(a##i##3), \
                                _mm512_reduce_add_ps(a##i##4), _mm512_reduce_add_ps(a##i##5)}; \
        float *row = dwt + (o0 + i) * K + k0;                                                 \
        for (int j = 0; j < mk; j++)                                                          \
            row[j] += sums[j];                                                                \
    }

/* dwt rows o0 .. o0+mo-1, columns k0 .. k0+mk-1 (mo <= WO, mk <= WK) += the sums over the nv
 * vectors v of dy's channel times xs's tap. Rows and taps past mo, mk repeat the first. */
static void dw_tile(const dvec *v, int64_t nv, const int32_t *off, int64_t k0, int mk,
                    int64_t o0, int mo, int64_t P, float *dwt, int64_t K)
{
    int64_t oi[WO], ki[WK];
    for (int i = 0; i < WO; i++)
        oi[i] = (o0 + (i < mo ? i : 0)) * P;
    for (int j = 0; j < WK; j++)
        ki[j] = off[k0 + (j < mk ? j : 0)];
    DW_DECL(0) DW_DECL(1) DW_DECL(2) DW_DECL(3)
    for (int64_t t = 0; t < nv; t++) {
        const __mmask16 m = v[t].m;
        const float *in = v[t].in;
        const __m512 x0 = _mm512_maskz_loadu_ps(m, in + ki[0]);
        const __m512 x1 = _mm512_maskz_loadu_ps(m, in + ki[1]);
        const __m512 x2 = _mm512_maskz_loadu_ps(m, in + ki[2]);
        const __m512 x3 = _mm512_maskz_loadu_ps(m, in + ki[3]);
        const __m512 x4 = _mm512_maskz_loadu_ps(m, in + ki[4]);
        const __m512 x5 = _mm512_maskz_loadu_ps(m, in + ki[5]);
        DW_FMA(0) DW_FMA(1) DW_FMA(2) DW_FMA(3)
    }
    DW_STORE(0) DW_STORE(1) DW_STORE(2) DW_STORE(3)
}

/* Images per chunk of the weight gradient. */
static int64_t dw_chunk(const dshape *d)
{
    const int64_t nvec = vectors_of(d->oh * d->ow);
    int64_t c = DW_VECTORS / nvec, cap = DW_XS_FLOATS / xs_floats(d);
    if (c > cap)
        c = cap;
    return c < 1 ? 1 : c;
}

bool fs_conv_direct_backward_weight_ok(const fs_conv2d_shape *s)
{
    if (!fs_conv_direct_forward_ok(s))
        return false;
    dshape d = forward_shape(s);
    int64_t nvec = vectors_of(d.oh * d.ow), per = nvec * dw_chunk(&d);
    return per * 2 >= DW_VECTORS; /* the lane sums stay a small part */
}

int fs_conv_direct_backward_weight(float *dw, const float *dy, const float *x,
                                   const fs_conv2d_shape *s)
{
    const dshape d = forward_shape(s);
    const int64_t K = d.c * d.kh * d.kw, P = d.oh * d.ow, O = d.o, WKS = O * K;
    const int64_t nvec = vectors_of(P), per_img = xs_floats(&d);
    const int nt = fs_get_num_threads();
    const bool own_images = d.n >= nt;
    const int64_t chunk = dw_chunk(&d), nob = (O + WO - 1) / WO;
    const int64_t xs_part = (chunk * per_img + 15) & ~(int64_t)15; /* the dvecs stay aligned */
    const int64_t per_thread =
        xs_part + (((int64_t)(chunk * nvec * sizeof(dvec)) + 63) & ~(int64_t)63) / 4;
    int32_t *off = fs_alloc((size_t)K * sizeof(int32_t));
    float *ws = off ? fs_alloc((size_t)(nt * per_thread + (own_images ? (nt - 1) * WKS : 0)) *
                               sizeof(float))
                    : NULL;
    if (!ws) {
        fs_free(off);
        return -1;
    }
    tap_offsets(off, &d);
    float *parts = ws + nt * per_thread;
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_nn_thread(&t, &T);
        float *xs = ws + t * per_thread;
        dvec *v = (dvec *)(xs + xs_part);
        int64_t i0, i1, b0, b1;
        share_work(own_images, d.n, nob, t, T, &i0, &i1, &b0, &b1);
        float *dwt = own_images && t > 0 ? parts + (t - 1) * WKS : dw;
        if (own_images) { /* this thread's copy of dw */
            memset(dwt, 0, (size_t)WKS * sizeof(float));
        } else { /* this thread's rows of dw */
            int64_t r0 = b0 * WO, r1 = b1 * WO < O ? b1 * WO : O;
            if (r1 > r0)
                memset(dw + r0 * K, 0, (size_t)((r1 - r0) * K) * sizeof(float));
        }
        for (int64_t n0 = i0; n0 < i1 && b1 > b0; n0 += chunk) {
            const int64_t cur = i1 - n0 < chunk ? i1 - n0 : chunk;
            int64_t nv = 0;
            for (int64_t g = 0; g < cur; g++) {
                shift_copies(xs + g * per_img, x + (n0 + g) * d.c * d.h * d.w, &d);
                for (int64_t q = 0; q < nvec; q++, nv++) {
                    v[nv].in = xs + g * per_img + q * LANES;
                    v[nv].dy = dy + (n0 + g) * O * P + q * LANES;
                    v[nv].m = lanes_of(P - q * LANES);
                }
            }
            for (int64_t b = b0; b < b1; b++) {
                const int mo = (int)(O - b * WO < WO ? O - b * WO : WO);
                for (int64_t k0 = 0; k0 < K; k0 += WK)
                    dw_tile(v, nv, off, k0, (int)(K - k0 < WK ? K - k0 : WK), b * WO, mo, P,
                            dwt, K);
            }
        }
        if (own_images)
            fs_nn_sum_thread_parts(dw, parts, WKS, T);
    }
    fs_free(ws);
    fs_free(off);
    return 0;
}

#else /* no AVX-512: conv.c keeps im2col + GEMM */

bool fs_conv_direct_forward_ok(const fs_conv2d_shape *s)
{
    (void)s;
    return false;
}

bool fs_conv_direct_backward_data_ok(const fs_conv2d_shape *s)
{
    (void)s;
    return false;
}

int fs_conv_direct_forward(float *y, const float *x, const float *w, const float *b,
                           const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    (void)y, (void)x, (void)w, (void)b, (void)ep, (void)s;
    return fs_set_error("conv2d: direct kernels not built (no AVX-512)");
}

int fs_conv_direct_backward_data(float *dx, const float *dy, const float *w,
                                 const fs_conv2d_shape *s)
{
    (void)dx, (void)dy, (void)w, (void)s;
    return fs_set_error("conv2d: direct kernels not built (no AVX-512)");
}

bool fs_conv_direct_backward_weight_ok(const fs_conv2d_shape *s)
{
    (void)s;
    return false;
}

int fs_conv_direct_backward_weight(float *dw, const float *dy, const float *x,
                                   const fs_conv2d_shape *s)
{
    (void)dw, (void)dy, (void)x, (void)s;
    return fs_set_error("conv2d: direct kernels not built (no AVX-512)");
}

#endif
