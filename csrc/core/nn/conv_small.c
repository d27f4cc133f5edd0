/* conv_small.c - the forward of convolutions whose output images are tiny: fewer pixels than a
 * vector has lanes (ResNet-18's layer3 and layer4 at 32x32 inputs: 2x2 and 1x1), so that
 * vectors run along the images of the batch instead (AVX-512 or AVX2 + FMA, through vec.h).
 *
 * x (N, C, H, W), w (O, C, kh, kw), y (N, O, OH, OW), K = C*kh*kw, P = OH*OW.
 * The taps (ky, kx) of output pixel q = (oy, ox) whose input lies inside the image form a
 * rectangle [ky0, ky1) x [kx0, kx1); the other taps only ever see zero padding. Each pixel is
 * one small GEMM over its own taps:
 *     Y_q (O, N) = W_q (O, K_q) @ X_q (K_q, N),  K_q = C * (ky1-ky0) * (kx1-kx0)
 * where row k = (c, ky, kx) of X_q holds x[n, c, oy*sh + ky - ph, ox*sw + kx - pw] for the N
 * images (padded with zeros to whole vectors), and W_q's column k is w's column
 * woff[k] = (c*kh + ky)*kw + kx, read in place (broadcast, no packing copy). At a 1x1 output
 * from a 1x1 input only the 3x3 kernel's centre tap is read (1/9 of the multiplies); at 2x2 from
 * 2x2, 4 of the 9 taps per pixel. im2col + sgemm multiplies by the padding's zeros, and
 * OpenBLAS copies (packs) all O*K weights on every call, which was 12% of an evaluation
 * episode.
 * Register tile: MR output channels x NV <= 3 vectors of images (8 x 3 of AVX-512's 32 zmm,
 * 4 x 3 of AVX2's 16 ymm). The threads split the blocks of MR channels, so each reads its own
 * weights from memory once and again from cache for the other pixels; X is built once, shared.
 */
#include <stdint.h>
#include <string.h>

#include "nn/conv_small.h"
#include "nn/nn_internal.h"

#include "base/vec.h"

#ifdef FS_VEC

#if FS_VEC == 512
#define MR 8
#define ALL_MR(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#else
#define MR 4
#define ALL_MR(M) M(0) M(1) M(2) M(3)
#endif
#define NVMAX 3 /* vectors of images per kernel call */
#define LANES VL

/* Floats of X per image chunk (16 MB): larger batches run in chunks of images. */
#define X_BUDGET ((int64_t)1 << 22)

/* One output pixel: its taps inside the image, and where its rows start in X and woff. */
typedef struct pixel {
    int64_t ky0, ky1, kx0, kx1; /* taps [ky0, ky1) x [kx0, kx1) */
    int64_t iy, ix;             /* input row and column of tap (0, 0): oy*sh - ph, ox*sw - pw */
    int64_t row0, rows;         /* rows row0 .. row0+rows-1 of X (and of woff) */
} pixel;

/* [lo, hi): the taps t < k with 0 <= base + t < n. */
static void tap_range(int64_t base, int64_t n, int64_t k, int64_t *lo, int64_t *hi)
{
    int64_t l = base < 0 ? -base : 0, h = n - base < k ? n - base : k;
    *lo = l;
    *hi = h > l ? h : l;
}

/* acc (MR, NVMAX, LANES) = sum over the rows k < nk of weight (i, woff[k]) times the NV
 * vectors of images at X + k*ldn; channel i's weights are row i of w (rows K floats apart),
 * rows past mr repeat row 0 (their sums are not stored). The accumulators are named (cIJ:
 * channel I, vector J), not an array: GCC keeps an array of vectors in memory. */
#define SK_ROW(i) const float *r##i = w + (i < mr ? i : 0) * K;
#define SK_DECL(i) vf c##i##0 = v_zero(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define SK_FMA(i)                                                                             \
    {                                                                                         \
        const vf wb = v_set1(r##i[d]);                                                        \
        c##i##0 = v_fma(wb, x0, c##i##0);                                                     \
        if (nv > 1)                                                                           \
            c##i##1 = v_fma(wb, x1, c##i##1);                                                 \
        if (nv > 2)                                                                           \
            c##i##2 = v_fma(wb, x2, c##i##2);                                                 \
    }
#define SK_SAVE(i)                                                                            \
    v_store(acc + (i * NVMAX + 0) * LANES, c##i##0);                                          \
    if (nv > 1)                                                                               \
        v_store(acc + (i * NVMAX + 1) * LANES, c##i##1);                                      \
    if (nv > 2)                                                                               \
        v_store(acc + (i * NVMAX + 2) * LANES, c##i##2);
#define DEFINE_KERNEL(NV)                                                                     \
    static void kernel##NV(int64_t nk, const int64_t *woff, const float *w, int64_t K, int mr, \
                           const float *X, int64_t ldn, float *acc)                           \
    {                                                                                         \
        const int nv = NV;                                                                    \
        ALL_MR(SK_ROW)                                                                        \
        ALL_MR(SK_DECL)                                                                       \
        for (int64_t k = 0; k < nk; k++) {                                                    \
            const int64_t d = woff[k];                                                        \
            const float *xk = X + k * ldn;                                                    \
            const vf x0 = v_load(xk);                                                         \
            const vf x1 = NV > 1 ? v_load(xk + LANES) : x0;                                   \
            const vf x2 = NV > 2 ? v_load(xk + 2 * LANES) : x0;                               \
            ALL_MR(SK_FMA)                                                                    \
        }                                                                                     \
        ALL_MR(SK_SAVE)                                                                       \
    }
DEFINE_KERNEL(1)
DEFINE_KERNEL(2)
DEFINE_KERNEL(3)

static void kernel_nv(int nv, int64_t nk, const int64_t *woff, const float *w, int64_t K,
                      int mr, const float *X, int64_t ldn, float *acc)
{
    switch (nv) {
    case 3: kernel3(nk, woff, w, K, mr, X, ldn, acc); break;
    case 2: kernel2(nk, woff, w, K, mr, X, ldn, acc); break;
    default: kernel1(nk, woff, w, K, mr, X, ldn, acc); break;
    }
}

/* One finished value of channel o: + b[o], then the epilogue, rounded as conv.c's ep_apply. */
static inline float finish(float v, const float *b, const fs_conv_epilogue *ep, int64_t o)
{
    if (b)
        v += b[o];
    if (ep) {
        v = (v - ep->mean[o]) * ep->scale[o] + ep->shift[o];
        if (ep->relu && !(v > 0.0f))
            v = 0.0f;
    }
    return v;
}

/* Rows of X for images n0 .. n0+nb-1 (ldn floats each, zero past nb) of the pixels' taps,
 * and woff, for the units (pixel q, channel c) of this thread's share. */
static void gather(float *X, int64_t *woff, const float *x, const pixel *px,
                   const fs_conv2d_shape *s, int64_t n0, int64_t nb, int64_t ldn)
{
    const int64_t C = s->c, H = s->h, W = s->w, P = s->oh * s->ow, kh = s->kh, kw = s->kw;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < P * C; u++) {
        const pixel *p = &px[u / C];
        const int64_t c = u % C, th = p->ky1 - p->ky0, tw = p->kx1 - p->kx0;
        int64_t row = p->row0 + c * th * tw;
        for (int64_t ky = p->ky0; ky < p->ky1; ky++)
            for (int64_t kx = p->kx0; kx < p->kx1; kx++, row++) {
                float *dst = X + row * ldn;
                const float *src = x + ((n0 * C + c) * H + p->iy + ky) * W + p->ix + kx;
                for (int64_t n = 0; n < nb; n++)
                    dst[n] = src[n * C * H * W];
                for (int64_t n = nb; n < ldn; n++)
                    dst[n] = 0.0f;
                woff[row] = (c * kh + ky) * kw + kx;
            }
    }
}

bool fs_conv_small_forward_ok(const fs_conv2d_shape *s)
{
    return s->a.groups == 1 && s->a.dilation[0] == 1 && s->a.dilation[1] == 1 && s->c > 0 &&
           s->o > 0 && s->n >= LANES / 2 && s->oh * s->ow < LANES;
}

int fs_conv_small_forward(float *y, const float *x, const float *w, const float *b,
                          const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    const int64_t N = s->n, O = s->o, OW = s->ow, P = s->oh * OW;
    const int64_t K = s->c * s->kh * s->kw, nob = (O + MR - 1) / MR;
    pixel px[LANES];
    int64_t rows = 0;
    for (int64_t q = 0; q < P; q++) {
        pixel *p = &px[q];
        p->iy = q / OW * s->a.stride[0] - s->a.padding[0];
        p->ix = q % OW * s->a.stride[1] - s->a.padding[1];
        tap_range(p->iy, s->h, s->kh, &p->ky0, &p->ky1);
        tap_range(p->ix, s->w, s->kw, &p->kx0, &p->kx1);
        p->row0 = rows;
        p->rows = s->c * (p->ky1 - p->ky0) * (p->kx1 - p->kx0);
        rows += p->rows;
    }
    /* images per chunk: whole vectors, as many as the budget holds, at least one vector */
    int64_t per_vec = (rows > 0 ? rows : 1) * LANES, nb = X_BUDGET / per_vec * LANES;
    if (nb < LANES)
        nb = LANES;
    if (nb > N)
        nb = N;
    const int64_t ldn = (nb + LANES - 1) / LANES * LANES;
    float *X = fs_alloc((size_t)((rows > 0 ? rows : 1) * ldn) * sizeof(float));
    int64_t *woff = X ? fs_alloc((size_t)(rows > 0 ? rows : 1) * sizeof(int64_t)) : NULL;
    if (!woff) {
        fs_free(X);
        return -1;
    }
    const int nt = fs_get_num_threads();
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t cur = N - n0 < nb ? N - n0 : nb, nvec = (cur + LANES - 1) / LANES;
#pragma omp parallel num_threads(nt)
        {
            int t, T;
            fs_thread_team(&t, &T);
            gather(X, woff, x, px, s, n0, cur, ldn); /* ends with a barrier */
            float acc[MR * NVMAX * LANES];
            for (int64_t ob = nob * t / T; ob < nob * (t + 1) / T; ob++) {
                const int64_t o0 = ob * MR;
                const int mr = (int)(O - o0 < MR ? O - o0 : MR);
                for (int64_t q = 0; q < P; q++) {
                    const pixel *p = &px[q];
                    /* the vectors in calls of 2 or 3 (7 = 2+2+3), not 3+3+1 */
                    const int64_t nch = (nvec + NVMAX - 1) / NVMAX;
                    for (int64_t j = 0; j < nch; j++) {
                        const int64_t v0 = nvec * j / nch, v1 = nvec * (j + 1) / nch;
                        kernel_nv((int)(v1 - v0), p->rows, woff + p->row0, w + o0 * K, K, mr,
                                  X + p->row0 * ldn + v0 * LANES, ldn, acc);
                        for (int i = 0; i < mr; i++)
                            for (int64_t v = v0; v < v1; v++)
                                for (int64_t l = 0; l < LANES; l++) {
                                    const int64_t n = v * LANES + l;
                                    if (n >= cur)
                                        break;
                                    y[((n0 + n) * O + o0 + i) * P + q] = finish(
                                        acc[(i * NVMAX + v - v0) * LANES + l], b, ep, o0 + i);
                                }
                    }
                }
            }
        }
    }
    fs_free(woff);
    fs_free(X);
    return 0;
}

#else /* neither AVX-512 nor AVX2 with FMA: conv.c keeps im2col + GEMM */

bool fs_conv_small_forward_ok(const fs_conv2d_shape *s)
{
    (void)s;
    return false;
}

int fs_conv_small_forward(float *y, const float *x, const float *w, const float *b,
                          const fs_conv_epilogue *ep, const fs_conv2d_shape *s)
{
    (void)y, (void)x, (void)w, (void)b, (void)ep, (void)s;
    return fs_set_error("conv2d: small-output kernels not built (no AVX-512 or AVX2)");
}

#endif
