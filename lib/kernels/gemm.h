/*
 * Blocked single-precision matrix multiply for training (lib/distill.c):
 * row-major operands, either one optionally transposed, OpenMP inside.
 * The inference engine does not use it; its convolutions have their own
 * kernels (kernels.h).
 */
#ifndef YOLOD_KERNELS_GEMM_H
#define YOLOD_KERNELS_GEMM_H

#include <stddef.h>

/*
 * Micro-kernel: C[m x n] (+)= A[kc x mr]' B[kc x nr] for one packed panel
 * pair, m <= mr and n <= nr valid rows and columns of C (row stride ldc).
 * `a` stores mr floats per k step and `b` nr floats per k step, zero padded.
 * With accumulate 0, C is overwritten.
 */
typedef void (*yd_gemm_ukernel_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                                   int m, int n, int accumulate);

void yd_f32_gemm_ukernel_12x32__avx512(int kc, const float *a, const float *b, float *c,
                                       size_t ldc, int m, int n, int accumulate);
void yd_f32_gemm_ukernel_6x16__avx2(int kc, const float *a, const float *b, float *c, size_t ldc,
                                    int m, int n, int accumulate);
void yd_f32_gemm_ukernel_4x8__scalar(int kc, const float *a, const float *b, float *c, size_t ldc,
                                     int m, int n, int accumulate);

/*
 * C[m x n] = op(A) op(B), or C += op(A) op(B) with accumulate set. op(A) is
 * m x k: A[i * lda + p], or A[p * lda + i] when transpose_a is set. op(B)
 * is k x n: B[p * ldb + j], or B[j * ldb + p] when transpose_b is set.
 * Runs on `threads` OpenMP threads (0: the default team size). Picks the
 * widest micro-kernel the CPU runs; YOLOD_GEMM=avx2 or YOLOD_GEMM=scalar
 * picks a narrower one (for tests).
 * Returns 0, or -1 when the packing buffers cannot be allocated.
 */
int yd_gemm_f32(int transpose_a, int transpose_b, int m, int n, int k, const float *a,
                size_t lda, const float *b, size_t ldb, float *c, size_t ldc, int accumulate,
                int threads);

/* The name of the micro-kernel yd_gemm_f32() uses: "avx512", "avx2" or "scalar". */
const char *yd_gemm_f32_isa(void);

#endif /* YOLOD_KERNELS_GEMM_H */
