/*
 * AVX2+FMA instantiation of the blocked direct convolution: 8-float
 * channel blocks, tiles of up to 2 output blocks x 6 pixels (12 ymm
 * accumulators, 2 weight vectors and one broadcast input out of 16).
 */
#include <immintrin.h>

#include "kernels.h"
#include "math-avx2.h"

#define CB 8
#define VEC __m256
#define VLOAD(p) _mm256_load_ps(p)
#define VSTORE(p, v) _mm256_store_ps((p), (v))
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VSILU(v) silu_avx2(v)

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
