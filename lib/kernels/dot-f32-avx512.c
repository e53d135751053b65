/*
 * Dot product of two float vectors accumulated in double, AVX-512: each
 * step widens 8 floats of each operand to doubles; two independent
 * accumulators hide the FMA latency. The least-squares refit sums many
 * correlated products, where float sums lose the digits it needs.
 */
#include <immintrin.h>
#include <stddef.h>

#include "kernels.h"

double yd_f32_dot__avx512(const float *a, const float *b, size_t n)
{
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    double sum;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        acc0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i)),
                               _mm512_cvtps_pd(_mm256_loadu_ps(b + i)), acc0);
        acc1 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8)),
                               _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8)), acc1);
    }
    if (i + 8 <= n) {
        acc0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i)),
                               _mm512_cvtps_pd(_mm256_loadu_ps(b + i)), acc0);
        i += 8;
    }
    sum = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
    for (; i < n; i++)
        sum += (double)a[i] * b[i];
    return sum;
}

/* Dot product of two double vectors, four independent accumulators. */
double yd_f64_dot__avx512(const double *a, const double *b, size_t n)
{
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    __m512d acc2 = _mm512_setzero_pd(), acc3 = _mm512_setzero_pd();
    double sum;
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i), acc0);
        acc1 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i + 8), _mm512_loadu_pd(b + i + 8), acc1);
        acc2 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i + 16), _mm512_loadu_pd(b + i + 16), acc2);
        acc3 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i + 24), _mm512_loadu_pd(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + i), _mm512_loadu_pd(b + i), acc0);
    sum = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc0, acc1), _mm512_add_pd(acc2, acc3)));
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}
