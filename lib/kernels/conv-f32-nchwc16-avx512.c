/*
 * AVX-512 instantiation of the blocked direct convolution: 16-float
 * channel blocks, tiles of up to 4 output blocks x 6 pixels (24 zmm
 * accumulators, 4 weight vectors and one broadcast input out of 32).
 */
#include <immintrin.h>

#include "kernels.h"

#define CB 16
#define VEC __m512
#define VLOAD(p) _mm512_load_ps(p)
#define VSTORE(p, v) _mm512_store_ps((p), (v))
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VSILU(v) silu_avx512(v)

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

#define OB_MAX 4
#define NP_MAX 12
#define NP_FOR_1 12
#define NP_FOR_2 12
#define NP_FOR_3 8
#define NP_FOR_4 6
#define TILE_CASES_1 CASES_UP_TO_12(1)
#define TILE_CASES_2 CASES_UP_TO_12(2)
#define TILE_CASES_3 CASES_UP_TO_8(3)
#define TILE_CASES_4 CASES_UP_TO_6(4)
#define CONV_FN yd_f32_conv_nchwc16__avx512

#include "conv-f32-nchwc.inc"
