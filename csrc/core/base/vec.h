/* vec.h - the float-vector operations of the direct convolution kernels (conv_direct.c), on
 * AVX-512 (VL = 16 lanes, bit masks) or on AVX2 with FMA (VL = 8 lanes, mask vectors).
 * FS_VEC is defined (to the vector width in bits) when the build targets one of them.
 *
 * Masked loads never touch the lanes outside their mask, so their address may point before or
 * after the array for those lanes. v_load_part is the cheap load of a vector whose lanes
 * outside m are to be discarded: on AVX2 it reads all VL floats (the caller keeps them
 * readable), on AVX-512 it is a masked load. */
#ifndef FS_VEC_H
#define FS_VEC_H

#include <stdint.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define FS_VEC 512
#define VL 16

typedef __m512 vf;
typedef __mmask16 vmask;

static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float a) { return _mm512_set1_ps(a); }
static inline vf v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_store(float *p, vf a) { _mm512_storeu_ps(p, a); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); } /* a*b + c */
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }

/* Lanes lo..hi-1 (clamped to 0..VL). */
static inline vmask v_lanes(int64_t lo, int64_t hi)
{
    lo = lo < 0 ? 0 : lo;
    hi = hi > VL ? VL : hi;
    return hi <= lo ? 0 : (vmask)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

static inline vf v_load_masked(vmask m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
static inline vf v_load_part(vmask m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
static inline void v_store_masked(float *p, vmask m, vf a) { _mm512_mask_storeu_ps(p, m, a); }

/* (a0, a2, .., a14, b0, b2, .., b14): the even lanes of a then of b. */
static inline vf v_evens(vf a, vf b)
{
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                          28, 30);
    return _mm512_permutex2var_ps(a, idx, b);
}

/* dst[j*ldd + i] = src[i*lds + j] for i, j < 16: a 16x16 block transposed in registers
 * (pairs of rows interleaved by 32 bits, then by 64, then 128-bit lanes gathered twice). */
static inline void v_transpose(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* r[i + j]: in lane L, column 4L + j of rows i..i+3 */
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);      /* columns j, 8+j: rows 0..7 */
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);  /* columns 4+j, 12+j */
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88); /* the same, rows 8..15 */
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    for (int j = 0; j < 8; j++) {
        _mm512_storeu_ps(dst + j * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD));
    }
}

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FS_VEC 256
#define VL 8

typedef __m256 vf;
typedef __m256i vmask;

static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float a) { return _mm256_set1_ps(a); }
static inline vf v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_store(float *p, vf a) { _mm256_storeu_ps(p, a); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); } /* a*b + c */
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }

/* Lanes lo..hi-1 (clamped to 0..VL): all ones where lo <= lane < hi. */
static inline vmask v_lanes(int64_t lo, int64_t hi)
{
    lo = lo < 0 ? 0 : lo > VL ? VL : lo;
    hi = hi < 0 ? 0 : hi > VL ? VL : hi;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)lo), lane),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), lane));
}

static inline vf v_load_masked(vmask m, const float *p) { return _mm256_maskload_ps(p, m); }
static inline vf v_load_part(vmask m, const float *p)
{
    (void)m;
    return _mm256_loadu_ps(p);
}
static inline void v_store_masked(float *p, vmask m, vf a) { _mm256_maskstore_ps(p, m, a); }

/* (a0, a2, a4, a6, b0, b2, b4, b6): the even lanes of a then of b. */
static inline vf v_evens(vf a, vf b)
{
    const __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)); /* a0 a2 b0 b2 a4 a6 b4 b6 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* dst[j*ldd + i] = src[i*lds + j] for i, j < 8: an 8x8 block transposed in registers. */
static inline void v_transpose(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { /* r[i + j]: in lane L, column 4L + j of rows i..i+3 */
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(dst + (4 + j) * ldd, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}
#endif

#endif
