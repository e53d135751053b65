/*
 * Dot product of two float vectors accumulated in double, AVX2+FMA: each
 * step widens 4 floats of each operand to doubles; two independent
 * accumulators hide the FMA latency. See the AVX-512 file for why double.
 */
#include <immintrin.h>
#include <stddef.h>

#include "kernels.h"

double yd_f32_dot__avx2(const float *a, const float *b, size_t n)
{
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    double lanes[4], sum = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        acc0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)),
                               acc0);
        acc1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 4)),
                               _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4)), acc1);
    }
    _mm256_storeu_pd(lanes, _mm256_add_pd(acc0, acc1));
    for (int l = 0; l < 4; l++)
        sum += lanes[l];
    for (; i < n; i++)
        sum += (double)a[i] * b[i];
    return sum;
}

/* Dot product of two double vectors, two independent accumulators. */
double yd_f64_dot__avx2(const double *a, const double *b, size_t n)
{
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    double lanes[4], sum = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        acc0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), acc0);
        acc1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4), acc1);
    }
    _mm256_storeu_pd(lanes, _mm256_add_pd(acc0, acc1));
    for (int l = 0; l < 4; l++)
        sum += lanes[l];
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}
