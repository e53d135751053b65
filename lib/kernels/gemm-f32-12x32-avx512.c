/*
 * GEMM micro-kernel, AVX-512: a 12 x 32 tile of C in 24 accumulators. Each
 * k step loads two vectors of the packed B panel and broadcasts the twelve
 * packed A values.
 */
#include <assert.h>
#include <immintrin.h>

#include "gemm.h"

void yd_f32_gemm_ukernel_12x32__avx512(int kc, const float *a, const float *b, float *c,
                                       size_t ldc, int m, int n, int accumulate)
{
    assert(kc >= 0);
    assert(m >= 1);
    assert(m <= 12);
    assert(n >= 1);
    assert(n <= 32);
    assert(a != NULL);
    assert(b != NULL);
    assert(c != NULL);

    __m512 vacc[12][2];

    for (int i = 0; i < 12; i++)
        vacc[i][0] = vacc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512 vb0 = _mm512_loadu_ps(b);
        __m512 vb1 = _mm512_loadu_ps(b + 16);

        for (int i = 0; i < 12; i++) {
            __m512 va = _mm512_set1_ps(a[i]);

            vacc[i][0] = _mm512_fmadd_ps(va, vb0, vacc[i][0]);
            vacc[i][1] = _mm512_fmadd_ps(va, vb1, vacc[i][1]);
        }
        a += 12;
        b += 32;
    }

    /* Lanes of the tile's two column vectors that lie inside C. */
    __mmask16 mask0 = 0xffff, mask1 = 0xffff;

    if (n < 16)
        mask0 = (__mmask16)((1u << n) - 1);
    if (n <= 16)
        mask1 = 0;
    else if (n < 32)
        mask1 = (__mmask16)((1u << (n - 16)) - 1);

    for (int i = 0; i < m; i++) {
        float *row = c + (size_t)i * ldc;

        if (accumulate) {
            vacc[i][0] = _mm512_add_ps(vacc[i][0], _mm512_maskz_loadu_ps(mask0, row));
            vacc[i][1] = _mm512_add_ps(vacc[i][1], _mm512_maskz_loadu_ps(mask1, row + 16));
        }
        _mm512_mask_storeu_ps(row, mask0, vacc[i][0]);
        _mm512_mask_storeu_ps(row + 16, mask1, vacc[i][1]);
    }
}
