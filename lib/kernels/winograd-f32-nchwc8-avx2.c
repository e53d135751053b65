/*
 * AVX2+FMA instantiation of the Winograd F(4x4, 3x3) convolution: 8-float
 * channel blocks, GEMM tiles of up to 2 output blocks x 6 tiles (12 ymm
 * accumulators, 2 weight vectors and one broadcast V element out of 16).
 */
#include <immintrin.h>

#include "kernels.h"
#include "math-avx2.h"

#define CB 8
#define VEC __m256
#define VZERO _mm256_setzero_ps()
#define VLOAD(p) _mm256_load_ps(p)
#define VSTORE(p, v) _mm256_store_ps((p), (v))
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VSET1(x) _mm256_set1_ps(x)
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VSUB(a, b) _mm256_sub_ps((a), (b))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VFNMA(a, b, c) _mm256_fnmadd_ps((a), (b), (c))
#define VSILU(v) silu_avx2(v)

#define OB_MAX 2
#define NT_MAX 12
#define NT_FOR_1 12
#define NT_FOR_2 6
#define NT_FOR_3 6
#define NT_FOR_4 6
#define TILE_CASES_1 CASES_UP_TO_12(1)
#define TILE_CASES_2 CASES_UP_TO_6(2)
#define WINOGRAD_FN yd_f32_winograd_nchwc8__avx2

#include "winograd-f32-nchwc.inc"
