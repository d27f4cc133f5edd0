/* conv_direct.c - convolution as register-blocked GEMMs that read shifted copies of the
 * image instead of an im2col matrix (AVX-512 or AVX2 + FMA builds, through vec.h; conv.c asks
 * *_ok first).
 *
 * For an undilated convolution with stride (sh, sw) and padding (ph, pw), output pixel
 * q = oy*OW + ox of channel o is
 *     y[o, q] = sum over taps k = (c, ky, kx) of w[o, k] * xs[off[k] + q]
 * where xs holds, per (c, kx, row phase ky % sh), a plane of Hp = OH + (kh-1)/sh rows of OW
 * floats: x[c, sh*r + ky%sh - ph, sw*ox + kx - pw], zero outside the image. These copies are
 * kw*sh / (kh*kw) of im2col's size, and tap k of a vector of LANES (16 or 8) consecutive
 * output pixels is one contiguous load at off[k] (tap_offsets). The last vector of an image is
 * masked when OH*OW is not a multiple of LANES. At stride 1 with OW a multiple of LANES (every
 * vector in one output row) xs is instead one zero-padded plane per channel (padded()): a kw-th
 * of the copies (PRNet's 48->16 at 64x64: 2.4 MB an image, more than L2, down to 0.8 MB), the
 * taps kx apart read by unaligned loads.
 *   - forward: MR output channels x NV <= 3 vectors of accumulators (8 x 3 in 24 zmm, 4 x 3 in
 *     12 ymm); per tap NV loads and MR broadcast FMAs' worth of weights, read in place from
 *     w (O, K) or packed.
 *   - data-gradient (stride 1): dy convolved with the weights flipped in space and transposed
 *     (c <-> o), padding k-1-p: the forward's driver on packed weights.
 *   - weight-gradient: vectors along the output channels over dy transposed (see below).
 * The forward's work (groups of images x blocks of channels) is split evenly over the threads;
 * the weight gradient's threads split the taps.
 */
#include <stdint.h>
#include <string.h>

#include "nn/conv_direct.h"
#include "nn/nn_internal.h"

#include "base/vec.h"

#ifdef FS_VEC

/* Register tiles: the forward's MR channels x NVMAX vectors of accumulators, the weight
 * gradient's DW_OV vectors of channels x DW_TAPS taps; both 24 of AVX-512's 32 registers, or
 * 12 of AVX2's 16. */
#if FS_VEC == 512
#define MR 8
#define DW_OV 4
#define ALL_MR(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#else
#define MR 4
#define DW_OV 2
#define ALL_MR(M) M(0) M(1) M(2) M(3)
#endif
#define NVMAX 3  /* vectors of pixels per kernel call */
#define LANES VL

/* Vectors of LANES lanes that hold P pixels, the last one masked. */
static inline int64_t vectors_of(int64_t P) { return (P + LANES - 1) / LANES; }

/* The lanes of a vector whose first pixel has rest pixels left in its image. */
static inline vmask lanes_of(int64_t rest) { return v_lanes(0, rest); }

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
    vmask m;
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

static inline vf finish_value(vf v, const finish *f, int64_t o)
{
    if (f->bias)
        v = v_add(v, v_set1(f->bias[o]));
    if (f->ep) { /* (v - mean) * scale + shift, rounded as ep_apply in conv.c does */
        v = v_sub(v, v_set1(f->ep->mean[o]));
        v = v_mul(v, v_set1(f->ep->scale[o]));
        v = v_add(v, v_set1(f->ep->shift[o]));
        if (f->ep->relu)
            v = v_max(v, v_zero());
    }
    return v;
}

/* out rows o0 .. o0+mr-1 of the NV vectors v: sum over k < K of weight (b*MR + i, k) times the
 * LANES inputs at v[j].in + off[k]. Channel o's row is at v[j].out + o*P. The accumulators are
 * named (cIJ: channel I, vector J), not an array: GCC keeps an array of vectors in memory.
 * Lanes past an image's last pixel may hold anything until the masked store. */
#define KERNEL_DECL(i) vf c##i##0 = v_zero(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define KERNEL_FMA(i)                                                                         \
    {                                                                                         \
        const vf wb = v_set1(wk[i * wrow]);                                                   \
        c##i##0 = v_fma(wb, x0, c##i##0);                                                     \
        if (nv > 1)                                                                           \
            c##i##1 = v_fma(wb, x1, c##i##1);                                                 \
        if (nv > 2)                                                                           \
            c##i##2 = v_fma(wb, x2, c##i##2);                                                 \
    }
#define KERNEL_STORE(i)                                                                       \
    if (i < mr) {                                                                             \
        v_store_masked(v[0].out + (o0 + i) * P, v[0].m, finish_value(c##i##0, f, o0 + i));   \
        if (nv > 1)                                                                           \
            v_store_masked(v[1].out + (o0 + i) * P, v[1].m, finish_value(c##i##1, f, o0 + i)); \
        if (nv > 2)                                                                           \
            v_store_masked(v[2].out + (o0 + i) * P, v[2].m, finish_value(c##i##2, f, o0 + i)); \
    }
#define DEFINE_KERNEL(NV)                                                                     \
    static void kernel##NV(int64_t K, const int32_t *off, const weights *wt, int64_t b,       \
                           const ovec *v, int64_t P, int64_t o0, int mr, const finish *f)     \
    {                                                                                         \
        const int nv = NV;                                                                    \
        const float *wbase = wt->w + b * wt->block;                                           \
        const int64_t wrow = wt->row, wstep = wt->step;                                       \
        ALL_MR(KERNEL_DECL)                                                                   \
        const float *in0 = v[0].in, *in1 = v[NV > 1 ? 1 : 0].in, *in2 = v[NV > 2 ? 2 : 0].in; \
        const vmask m0 = v[0].m, m1 = v[NV > 1 ? 1 : 0].m, m2 = v[NV > 2 ? 2 : 0].m;          \
        for (int64_t k = 0; k < K; k++) {                                                     \
            const int64_t d = off[k];                                                         \
            const vf x0 = v_load_part(m0, in0 + d);                                           \
            const vf x1 = NV > 1 ? v_load_part(m1, in1 + d) : x0;                             \
            const vf x2 = NV > 2 ? v_load_part(m2, in2 + d) : x0;                             \
            const float *wk = wbase + k * wstep;                                              \
            ALL_MR(KERNEL_FMA)                                                                \
        }                                                                                     \
        ALL_MR(KERNEL_STORE)                                                                  \
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

/* The padded layout: at stride 1, when every vector of output pixels lies in one output row
 * (OW a multiple of LANES), xs is one zero-padded plane per channel, (Hp, Wp = OW + kw - 1),
 * and tap (c, ky, kx) of output (oy, ox) is at (c, oy + ky, ox + kx): unaligned loads replace
 * the kw shifted planes, a kw-th of the copies to make and to read through the caches. */
static bool padded(const dshape *d)
{
    return d->sh == 1 && d->sw == 1 && d->kw > 1 && d->ow % LANES == 0;
}

/* Columns of a padded plane. */
static int64_t wp_of(const dshape *d) { return d->ow + d->kw - 1; }

/* Where output pixel q's taps start in an image's xs, from its tap-0 position. */
static inline int64_t pixel_pos(const dshape *d, int64_t q)
{
    return padded(d) ? q / d->ow * wp_of(d) + q % d->ow : q;
}

/* Floats of the shifted copies of one image: a plane per (c, kx, row phase), or padded. */
static int64_t xs_floats(const dshape *d)
{
    if (padded(d))
        return d->c * hp_of(d) * wp_of(d);
    return d->c * d->kw * d->sh * hp_of(d) * d->ow;
}

/* Images per group: small images go three at a time, so that their vectors fill kernel calls
 * of NVMAX = 3 (4 vectors alone would be two calls of 2). */
static int64_t group_images(const dshape *d)
{
    int64_t nvec = vectors_of(d->oh * d->ow);
    return nvec >= 8 || nvec % NVMAX == 0 ? 1 : NVMAX;
}

/* The padded layout's planes of channels c0..c1-1: row r, column j of plane c holds
 * x[c, r - ph, j - pw], zero outside the image. */
static void padded_copies(float *xs, const float *x, const dshape *d, int64_t c0, int64_t c1)
{
    const int64_t Hp = hp_of(d), Wp = wp_of(d), H = d->h, W = d->w, ph = d->ph, pw = d->pw;
    /* columns j0..j1-1 of a row come from the image: input columns j0-pw .. j1-1-pw */
    const int64_t j0 = pw, j1 = pw + W < Wp ? pw + W : Wp;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t r = 0; r < Hp; r++) {
            float *row = xs + ((c - c0) * Hp + r) * Wp;
            const int64_t iy = r - ph;
            if (iy < 0 || iy >= H || j1 <= j0) {
                memset(row, 0, (size_t)Wp * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)j0 * sizeof(float));
            memcpy(row + j0, x + (c * H + iy) * W, (size_t)(j1 - j0) * sizeof(float));
            memset(row + j1, 0, (size_t)(Wp - j1) * sizeof(float));
        }
}

/* xs (c1-c0, kw, sh, Hp, OW) of channels c0..c1-1 of image x (c, h, w): plane (c, kx, ay) row
 * r, column ox holds x[c, sh*r + ay - ph, sw*ox + kx - pw] (zero outside the image), so that
 * tap (c, ky, kx) of output (oy, ox) is plane (c, kx, ky % sh) at row oy + ky / sh, column ox.
 * A plane is made LANES columns at a time, down its rows: which lanes lie inside the image is
 * the same for every row. Masked loads never touch the lanes outside, so a row's source may
 * start before the row (a negative column shift). Stride 2 takes the even lanes of two loads,
 * each masked to the source columns between the first and the last one read. The padded
 * layout goes to padded_copies instead. */
static void shift_copies(float *xs, const float *x, const dshape *d, int64_t c0, int64_t c1)
{
    if (padded(d)) {
        padded_copies(xs, x, d, c0, c1);
        return;
    }
    const int64_t Hp = hp_of(d), OW = d->ow, H = d->h, W = d->w, sw = d->sw;
    xs -= c0 * d->kw * d->sh * Hp * OW;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t kx = 0; kx < d->kw; kx++) {
            const int64_t col0 = kx - d->pw; /* input column of output column 0 */
            /* output columns lo..hi-1 read inside the image */
            const int64_t lo = col0 < 0 ? (-col0 + sw - 1) / sw : 0;
            int64_t hi = W - col0 > 0 ? (W - col0 + sw - 1) / sw : 0;
            if (hi > OW)
                hi = OW;
            for (int64_t ay = 0; ay < d->sh; ay++) {
                float *dst = xs + ((c * d->kw + kx) * d->sh + ay) * Hp * OW;
                const float *src = x + c * H * W + col0;
                for (int64_t q0 = 0; q0 < OW; q0 += LANES) {
                    const vmask m = v_lanes(lo - q0, hi - q0), ms = lanes_of(OW - q0);
                    /* stride 2: source columns 2*lo .. 2*hi-2 of this block's 2*LANES */
                    const int64_t a = 2 * (lo - q0), e = 2 * (hi - q0) - 1;
                    const vmask ma = v_lanes(a, e), mb = v_lanes(a - LANES, e - LANES);
                    for (int64_t r = 0; r < Hp; r++) {
                        const int64_t iy = d->sh * r + ay - d->ph;
                        float *row = dst + r * OW + q0;
                        if (iy < 0 || iy >= H) {
                            v_store_masked(row, ms, v_zero());
                        } else if (sw == 1) {
                            v_store_masked(row, ms, v_load_masked(m, src + iy * W + q0));
                        } else if (sw == 2) {
                            const float *p = src + iy * W + 2 * q0;
                            v_store_masked(row, ms, v_evens(v_load_masked(ma, p),
                                                            v_load_masked(mb, p + LANES)));
                        } else {
                            for (int64_t q = q0; q < OW && q < q0 + LANES; q++)
                                row[q - q0] = q >= lo && q < hi ? src[iy * W + q * sw] : 0.0f;
                        }
                    }
                }
            }
        }
}

/* off (K): where tap k = (c, ky, kx) of output pixel 0 is in xs; pixel q's is off[k] + q. */
static void tap_offsets(int32_t *off, const dshape *d)
{
    const int64_t Hp = hp_of(d);
    if (padded(d)) {
        for (int64_t c = 0, k = 0; c < d->c; c++)
            for (int64_t ky = 0; ky < d->kh; ky++)
                for (int64_t kx = 0; kx < d->kw; kx++)
                    off[k++] = (int32_t)((c * Hp + ky) * wp_of(d) + kx);
        return;
    }
    for (int64_t c = 0, k = 0; c < d->c; c++)
        for (int64_t ky = 0; ky < d->kh; ky++)
            for (int64_t kx = 0; kx < d->kw; kx++)
                off[k++] = (int32_t)((((c * d->kw + kx) * d->sh + ky % d->sh) * Hp +
                                      ky / d->sh) * d->ow);
}

/* y (n, o, oh, ow) from x (n, c, h, w) and the weights wt. The work is groups of images x
 * blocks of MR channels, split evenly over the threads (27 images on 2 threads would leave one
 * idle for 1/28 of the time): a thread whose share starts or ends inside a group makes that
 * group's shifted copies too. */
static int run(float *y, const float *x, const weights *wt, const finish *f, const dshape *d)
{
    const int64_t K = d->c * d->kh * d->kw, P = d->oh * d->ow;
    const int64_t nob = (d->o + MR - 1) / MR, per_img = xs_floats(d), gsz = group_images(d);
    const int64_t nvec = vectors_of(P), units = (d->n + gsz - 1) / gsz * nob;
    const int nt = fs_get_num_threads();
    int32_t *off = fs_alloc((size_t)K * sizeof(int32_t));
    /* + LANES: the kernel's loads of a last, partial vector may read that far past the copies */
    float *ws = off ? fs_alloc((size_t)(nt * gsz * per_img + LANES) * sizeof(float)) : NULL;
    if (!ws) {
        fs_free(off);
        return -1;
    }
    memset(ws + nt * gsz * per_img, 0, LANES * sizeof(float));
    tap_offsets(off, d);
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        float *xs = ws + t * gsz * per_img;
        const int64_t u0 = units * t / T, u1 = units * (t + 1) / T;
        ovec v[NVMAX * 8];
        for (int64_t gi = u0 / nob; gi * nob < u1; gi++) {
            const int64_t b0 = u0 > gi * nob ? u0 - gi * nob : 0;
            const int64_t b1 = u1 - gi * nob < nob ? u1 - gi * nob : nob;
            const int64_t n0 = gi * gsz, cur = d->n - n0 < gsz ? d->n - n0 : gsz;
            int64_t nv = 0;
            for (int64_t g = 0; g < cur; g++) {
                shift_copies(xs + g * per_img, x + (n0 + g) * d->c * d->h * d->w, d, 0, d->c);
                for (int64_t q = 0; q < nvec; q++) {
                    v[nv].in = xs + g * per_img + pixel_pos(d, q * LANES);
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

/* Also when the whole batch's output is at most one vector (batch-1 latency of ResNet's
 * 2x2 layer4): the lanes are mostly idle, but the weights are read once, in place, and
 * reading them is all the time there is; OpenBLAS would first copy them into its panels. */
bool fs_conv_direct_forward_ok(const fs_conv2d_shape *s)
{
    if (!plain(s))
        return false;
    dshape d = forward_shape(s);
    return (out_pixels_ok(d.oh * d.ow) || d.n * d.oh * d.ow <= LANES) && fits_offsets(&d);
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
 * dw[o, k] = sum over images n and pixels q of dy[n, o, q] * xs_n[off[k] + q]: a GEMM whose
 * reduction runs over pixels. Vectors run along the output channels, so that no lanes need
 * summing and any image size works: dy is transposed to dyT (n*P + q, OP), channels padded to
 * OP (a multiple of LANES) with zeros, and a tile of DW_OV vectors of channels x DW_TAPS taps
 * keeps its accumulators over up to DW_PIXELS pixels, then adds them to dwT (summing in two
 * levels keeps float32's rounding error that of a few hundred terms, not of N*P); per pixel
 * DW_OV loads of dyT and one broadcast of xs per tap. The threads split the taps: each makes
 * the shifted copies of its own input channels only and accumulates its own rows of dwT
 * (taps, OP), then writes its columns of dw; no thread waits for another after dyT is made. */
#define DW_TAPS 6      /* taps per tile */
#define DW_PIXELS 128  /* pixels per pass over a tile: their block of dyT stays in L1 */

/* Pixels of one image in a pass: xs at tap 0 of the first, dyT's row of the first (at the tile's
 * channel block), how many. */
typedef struct dseg {
    const float *xs, *dyt;
    int64_t n;
} dseg;

#define DW_DECL(j)                                                                            \
    vf a##j##0 = v_zero(), a##j##1 = a##j##0, a##j##2 = a##j##0, a##j##3 = a##j##0;
#define DW_FMA(j)                                                                             \
    {                                                                                         \
        const vf xb = v_set1(xp[k##j]);                                                       \
        a##j##0 = v_fma(y0, xb, a##j##0);                                                     \
        if (nv > 1)                                                                           \
            a##j##1 = v_fma(y1, xb, a##j##1);                                                 \
        if (nv > 2)                                                                           \
            a##j##2 = v_fma(y2, xb, a##j##2);                                                 \
        if (nv > 3)                                                                           \
            a##j##3 = v_fma(y3, xb, a##j##3);                                                 \
    }
#define DW_ADD(p, a) v_store(p, v_add(v_load(p), a))
#define DW_STORE(j)                                                                           \
    if (j < mk) {                                                                             \
        DW_ADD(acc + j * ld, a##j##0);                                                        \
        if (nv > 1)                                                                           \
            DW_ADD(acc + j * ld + LANES, a##j##1);                                            \
        if (nv > 2)                                                                           \
            DW_ADD(acc + j * ld + 2 * LANES, a##j##2);                                        \
        if (nv > 3)                                                                           \
            DW_ADD(acc + j * ld + 3 * LANES, a##j##3);                                        \
    }
#define ALL_TAPS(M) M(0) M(1) M(2) M(3) M(4) M(5)

/* acc (mk rows of ld floats, NV*LANES channels each: dwT at the tile) += over the pixels of the
 * segments sg, dyT's NV vectors times xs at the taps' offsets koff (DW_TAPS of them, of which
 * the first mk are stored). dyT's rows are ld floats apart too. */
#define DEFINE_DW_KERNEL(NV)                                                                  \
    static void dw_kernel##NV(const dseg *sg, int nseg, const int64_t *koff, int mk,         \
                              float *acc, int64_t ld)                                         \
    {                                                                                         \
        const int64_t k0 = koff[0], k1 = koff[1], k2 = koff[2], k3 = koff[3], k4 = koff[4];    \
        const int64_t k5 = koff[5];                                                           \
        const int nv = NV;                                                                    \
        ALL_TAPS(DW_DECL)                                                                     \
        for (int s = 0; s < nseg; s++) {                                                      \
            const float *xp = sg[s].xs, *yp = sg[s].dyt;                                      \
            for (int64_t q = 0; q < sg[s].n; q++, xp++, yp += ld) {                           \
                const vf y0 = v_load(yp);                                                     \
                const vf y1 = NV > 1 ? v_load(yp + LANES) : y0;                               \
                const vf y2 = NV > 2 ? v_load(yp + 2 * LANES) : y0;                           \
                const vf y3 = NV > 3 ? v_load(yp + 3 * LANES) : y0;                           \
                ALL_TAPS(DW_FMA)                                                              \
            }                                                                                 \
        }                                                                                     \
        ALL_TAPS(DW_STORE)                                                                    \
    }
DEFINE_DW_KERNEL(1)
DEFINE_DW_KERNEL(2)
DEFINE_DW_KERNEL(3)
DEFINE_DW_KERNEL(4)

static void dw_kernel(int nv, const dseg *sg, int nseg, const int64_t *koff, int mk, float *acc,
                      int64_t ld)
{
    switch (nv) {
    case 4: dw_kernel4(sg, nseg, koff, mk, acc, ld); break;
    case 3: dw_kernel3(sg, nseg, koff, mk, acc, ld); break;
    case 2: dw_kernel2(sg, nseg, koff, mk, acc, ld); break;
    default: dw_kernel1(sg, nseg, koff, mk, acc, ld); break;
    }
}

/* dyT (n*P + q, OP) = dy (n, o, q), zero for channels o..OP-1; images shared by the threads.
 * Blocks of LANES x LANES are transposed in registers; the edges of a block that does not fit
 * one by one. */
static void transpose_dy(float *dyt, const float *dy, int64_t N, int64_t O, int64_t OP,
                         int64_t P)
{
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *dst = dyt + n * P * OP;
        const float *src = dy + n * O * P;
        for (int64_t q0 = 0; q0 < P; q0 += LANES)
            for (int64_t o0 = 0; o0 < OP; o0 += LANES) {
                if (q0 + LANES <= P && o0 + LANES <= O) {
                    v_transpose(src + o0 * P + q0, P, dst + q0 * OP + o0, OP);
                    continue;
                }
                for (int64_t o = o0; o < o0 + LANES; o++)
                    for (int64_t q = q0; q < P && q < q0 + LANES; q++)
                        dst[q * OP + o] = o < O ? src[o * P + q] : 0.0f;
            }
    }
}

/* Images per pass: enough for DW_PIXELS pixels when images are small. */
static int64_t dw_images(const dshape *d)
{
    const int64_t P = d->oh * d->ow, g = DW_PIXELS / P;
    return g < 1 ? 1 : g;
}

/* Images of fewer than DW_PIXELS / 2 pixels make passes of many short segments, and with
 * several threads OpenBLAS is faster there (conv.c's splits; ResNet-18 at 64x64: layer3's 4x4,
 * layer4's 2x2). On one thread conv.c's fallback is one im2col GEMM over the batch, which
 * these passes beat (best of 20, 1 thread: PRNet's 384->128 at 4x4, batch 64, 10.3 -> 6.0 ms;
 * ResNet-18's 256->256 at 4x4, batch 27, 5.2 -> 3.4 ms; 512->512 at 2x2, 5.5 -> 4.8 ms). */
bool fs_conv_direct_backward_weight_ok(const fs_conv2d_shape *s)
{
    if (!plain(s) || (s->oh * s->ow < DW_PIXELS / 2 && fs_get_num_threads() > 1))
        return false;
    dshape d = forward_shape(s);
    return fits_offsets(&d);
}

int fs_conv_direct_backward_weight(float *dw, const float *dy, const float *x,
                                   const fs_conv2d_shape *s, bool add)
{
    const dshape d = forward_shape(s);
    const int64_t KK = d.kh * d.kw, K = d.c * KK, P = d.oh * d.ow, O = d.o, N = d.n;
    const int64_t OP = (O + LANES - 1) / LANES * LANES, per_ch = xs_floats(&d) / d.c;
    const int64_t ntiles = (K + DW_TAPS - 1) / DW_TAPS, imgs = dw_images(&d);
    const bool pad = padded(&d);
    const int nt = fs_get_num_threads();
    /* the most taps and input channels a thread can get (its taps may straddle 2 channels) */
    const int64_t max_taps = (ntiles + nt - 1) / nt * DW_TAPS;
    const int64_t ch_bound = (max_taps + KK - 1) / KK + 1;
    const int64_t max_ch = ch_bound < d.c ? ch_bound : d.c;
    const int64_t xs_part = (imgs * max_ch * per_ch + 15) & ~(int64_t)15;
    const int64_t per_thread = xs_part + max_taps * OP;
    int32_t *off = fs_alloc((size_t)K * sizeof(int32_t));
    float *dyt = off ? fs_alloc((size_t)(N * P * OP) * sizeof(float)) : NULL;
    float *ws = dyt ? fs_alloc((size_t)(nt * per_thread) * sizeof(float)) : NULL;
    if (!ws) {
        fs_free(dyt);
        fs_free(off);
        return -1;
    }
    tap_offsets(off, &d);
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        fs_thread_team(&t, &T);
        transpose_dy(dyt, dy, N, O, OP, P); /* ends with a barrier */
        float *xs = ws + t * per_thread, *dwt = xs + xs_part;
        const int64_t tile0 = ntiles * t / T, tile1 = ntiles * (t + 1) / T;
        const int64_t k0 = tile0 * DW_TAPS, k1 = tile1 * DW_TAPS < K ? tile1 * DW_TAPS : K;
        const int64_t c0 = k0 / KK, c1 = k1 > k0 ? (k1 - 1) / KK + 1 : c0, nch = c1 - c0;
        if (k1 > k0)
            memset(dwt, 0, (size_t)((k1 - k0) * OP) * sizeof(float));
        dseg sg[DW_PIXELS + 1];
        for (int64_t n0 = 0; n0 < N && k1 > k0; n0 += imgs) {
            const int64_t cur = N - n0 < imgs ? N - n0 : imgs;
            for (int64_t g = 0; g < cur; g++)
                shift_copies(xs + g * nch * per_ch, x + (n0 + g) * d.c * d.h * d.w, &d, c0, c1);
            for (int64_t ob = 0; ob < OP; ob += DW_OV * LANES) {
                const int nv = (int)((OP - ob) / LANES < DW_OV ? (OP - ob) / LANES : DW_OV);
                /* passes of DW_PIXELS pixels over this group's images */
                for (int64_t p0 = 0; p0 < cur * P; p0 += DW_PIXELS) {
                    const int64_t p1 = p0 + DW_PIXELS < cur * P ? p0 + DW_PIXELS : cur * P;
                    int nseg = 0;
                    for (int64_t p = p0; p < p1;) {
                        const int64_t g = p / P, q = p % P;
                        int64_t len = P - q < p1 - p ? P - q : p1 - p;
                        if (pad && len > d.ow - q % d.ow) /* padded rows: a row at a time */
                            len = d.ow - q % d.ow;
                        sg[nseg].xs = xs + g * nch * per_ch + pixel_pos(&d, q);
                        sg[nseg].dyt = dyt + ((n0 + g) * P + q) * OP + ob;
                        sg[nseg++].n = len;
                        p += len;
                    }
                    for (int64_t k = k0; k < k1; k += DW_TAPS) {
                        const int mk = (int)(k1 - k < DW_TAPS ? k1 - k : DW_TAPS);
                        int64_t koff[DW_TAPS];
                        for (int j = 0; j < DW_TAPS; j++) /* xs starts at channel c0 */
                            koff[j] = off[k + (j < mk ? j : 0)] - c0 * per_ch;
                        dw_kernel(nv, sg, nseg, koff, mk, dwt + (k - k0) * OP + ob, OP);
                    }
                }
            }
        }
        for (int64_t kb = k0; kb < k1; kb += 16) /* this thread's columns of dw, 16 at a time: */
            for (int64_t o = 0; o < O; o++)     /* their 16 rows of dwT stay in L1 */
                for (int64_t k = kb; k < k1 && k < kb + 16; k++)
                    dw[o * K + k] = (add ? dw[o * K + k] : 0.0f) + dwt[(k - k0) * OP + o];
    }
    fs_free(ws);
    fs_free(dyt);
    fs_free(off);
    return 0;
}

#else /* neither AVX-512 nor AVX2 with FMA: conv.c keeps im2col + GEMM */

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
    return fs_set_error("conv2d: direct kernels not built (no AVX-512 or AVX2)");
}

int fs_conv_direct_backward_data(float *dx, const float *dy, const float *w,
                                 const fs_conv2d_shape *s)
{
    (void)dx, (void)dy, (void)w, (void)s;
    return fs_set_error("conv2d: direct kernels not built (no AVX-512 or AVX2)");
}

bool fs_conv_direct_backward_weight_ok(const fs_conv2d_shape *s)
{
    (void)s;
    return false;
}

int fs_conv_direct_backward_weight(float *dw, const float *dy, const float *x,
                                   const fs_conv2d_shape *s, bool add)
{
    (void)dw, (void)dy, (void)x, (void)s, (void)add;
    return fs_set_error("conv2d: direct kernels not built (no AVX-512 or AVX2)");
}

#endif
