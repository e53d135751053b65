/*
 * AVX-512 instantiation of the Winograd F(4x4, 3x3) convolution: 16-float
 * channel blocks and GEMM tiles of up to 4 output blocks x 6 tiles. That
 * takes 24 zmm accumulators, 4 weight vectors and one broadcast V element
 * out of 32 registers.
 */
#include <immintrin.h>

#include "kernels.h"
#include "math-avx512.h"

#define CB 16
#define VEC __m512
#define VZERO _mm512_setzero_ps()
#define VLOAD(p) _mm512_load_ps(p)
#define VSTORE(p, v) _mm512_store_ps((p), (v))
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VSET1(x) _mm512_set1_ps(x)
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VSUB(a, b) _mm512_sub_ps((a), (b))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VFNMA(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define VSILU(v) silu_avx512(v)

#define OB_MAX 4
#define NT_MAX 16
#define NT_FOR_1 16
#define NT_FOR_2 12
#define NT_FOR_3 8
#define NT_FOR_4 6
#define TILE_CASES_1 CASES_UP_TO_16(1)
#define TILE_CASES_2 CASES_UP_TO_12(2)
#define TILE_CASES_3 CASES_UP_TO_8(3)
#define TILE_CASES_4 CASES_UP_TO_6(4)
#define WINOGRAD_FN yd_f32_winograd_nchwc16__avx512

#include "winograd-f32-nchwc.inc"
