/*
 * Vector math for the AVX-512 kernels: exp, SiLU, packing quantized
 * values to bytes, and a 16 x 16 float transpose.
 */
#ifndef YOLOD_MATH_AVX512_H
#define YOLOD_MATH_AVX512_H

#include <immintrin.h>

/*
 * exp(x) by range reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6
 * polynomial for e^r (Cephes expf coefficients); relative error below
 * 2 ulp on [-87, 88]. Inputs are clamped to that range.
 */
static inline __m512 exp_avx512(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
    const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    __m512 n, r, p;

    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 silu_avx512(__m512 v)
{
    __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v));

    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/*
 * SiLU for int8 epilogues, whose outputs are quantized to 8 bits. 2^t is
 * 2^floor(t) (vscalefps floors its exponent) times a degree-3 polynomial in
 * t - floor(t) (vreduceps), with relative error below 7.5e-5: about 2% of a
 * quantization step at the top of a layer's range.
 * There is no clamp: for x below about -88.7, 2^t overflows to +inf and
 * x / inf is -0, the limit. x must be finite.
 */
static inline __m512 silu_int8_avx512(__m512 v)
{
    const __m512 t = _mm512_mul_ps(v, _mm512_set1_ps(-1.44269504088896341f));
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(7.802454383e-2f);

    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.260672515e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.958334360e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999252366e-1f));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_scalef_ps(p, t), _mm512_set1_ps(1.0f)));
}

/*
 * Packs four vectors of 16 int32 values to 64 bytes, q[0]'s 16 first,
 * saturating to [0, 255]. The packs work within 128-bit lanes, so lane i
 * then contains values 4i..4i+3 of q[0], q[1], q[2] and q[3], and a dword
 * permutation puts them in order.
 */
static inline __m512i pack_u8x4_avx512(const __m512i q[4])
{
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(q[0], q[1]),
                                              _mm512_packs_epi32(q[2], q[3]));

    return _mm512_permutexvar_epi32(order, bytes);
}

/* Transposes r[0..15] (row i: 16 floats) in place. */
static inline void transpose_16x16(__m512 r[16])
{
    __m512 t[16];

    /* 2 x 2 blocks of floats, then of float pairs, then of 128-bit and 256-bit lanes. */
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

#endif /* YOLOD_MATH_AVX512_H */
