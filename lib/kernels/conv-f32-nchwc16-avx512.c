/*
 * AVX-512 instantiation of the blocked direct convolution: 16-float
 * channel blocks, tiles of up to 4 output blocks x 6 pixels (24 zmm
 * accumulators, 4 weight vectors and one broadcast input out of 32).
 */
#include <immintrin.h>

#include "kernels.h"
#include "math-avx512.h"

#define CB 16
#define VEC __m512
#define VLOAD(p) _mm512_load_ps(p)
#define VSTORE(p, v) _mm512_store_ps((p), (v))
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VSILU(v) silu_avx512(v)

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
