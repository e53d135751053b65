/*
 * GEMM micro-kernel, AVX2 + FMA: a 6 x 16 tile of C in 12 accumulators.
 */
#include <assert.h>
#include <immintrin.h>

#include "gemm.h"

void yd_f32_gemm_ukernel_6x16__avx2(int kc, const float *a, const float *b, float *c, size_t ldc,
                                    int m, int n, int accumulate)
{
    assert(kc >= 0);
    assert(m >= 1);
    assert(m <= 6);
    assert(n >= 1);
    assert(n <= 16);
    assert(a != NULL);
    assert(b != NULL);
    assert(c != NULL);

    __m256 vacc[6][2];
    float tile[6][16];

    for (int i = 0; i < 6; i++)
        vacc[i][0] = vacc[i][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m256 vb0 = _mm256_loadu_ps(b);
        __m256 vb1 = _mm256_loadu_ps(b + 8);

        for (int i = 0; i < 6; i++) {
            __m256 va = _mm256_broadcast_ss(a + i);

            vacc[i][0] = _mm256_fmadd_ps(va, vb0, vacc[i][0]);
            vacc[i][1] = _mm256_fmadd_ps(va, vb1, vacc[i][1]);
        }
        a += 6;
        b += 16;
    }

    if (n == 16) {
        for (int i = 0; i < m; i++) {
            float *row = c + (size_t)i * ldc;

            if (accumulate) {
                vacc[i][0] = _mm256_add_ps(vacc[i][0], _mm256_loadu_ps(row));
                vacc[i][1] = _mm256_add_ps(vacc[i][1], _mm256_loadu_ps(row + 8));
            }
            _mm256_storeu_ps(row, vacc[i][0]);
            _mm256_storeu_ps(row + 8, vacc[i][1]);
        }
        return;
    }
    for (int i = 0; i < m; i++) {
        float *row = c + (size_t)i * ldc;

        _mm256_storeu_ps(tile[i], vacc[i][0]);
        _mm256_storeu_ps(tile[i] + 8, vacc[i][1]);
        for (int j = 0; j < n; j++)
            row[j] = accumulate ? row[j] + tile[i][j] : tile[i][j];
    }
}
