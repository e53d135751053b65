/*
 * AVX2+FMA instantiation of the blocked direct convolution: 8-float
 * channel blocks, tiles of up to 2 output blocks x 6 pixels (12 ymm
 * accumulators, 2 weight vectors and one broadcast input out of 16).
 */
#include <immintrin.h>

#include "kernels.h"

#define CB 8
#define VEC __m256
#define VLOAD(p) _mm256_load_ps(p)
#define VSTORE(p, v) _mm256_store_ps((p), (v))
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VSILU(v) silu_avx2(v)

/* exp(x) as in the AVX-512 file: range reduction and Cephes' polynomial. */
static inline __m256 exp_avx2(__m256 x)
{
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f);
    const __m256 ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    __m256 n, r, p;
    __m256i e;

    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_ps(n, ln2_hi, x);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);
    p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n through the exponent field; n is within [-126, 127] after the clamp. */
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 silu_avx2(__m256 v)
{
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), v));

    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

#define OB_MAX 2
#define NP_MAX 12
#define NP_FOR_1 12
#define NP_FOR_2 6
#define NP_FOR_3 6
#define NP_FOR_4 6
#define TILE_CASES_1 CASES_UP_TO_12(1)
#define TILE_CASES_2 CASES_UP_TO_6(2)
#define CONV_FN yd_f32_conv_nchwc8__avx2

#include "conv-f32-nchwc.inc"
