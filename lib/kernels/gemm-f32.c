/*
 * Blocked GEMM driver (see gemm.h), after Goto and van de Geijn. For each
 * block of NC columns and KC depth, B is packed once into nr-wide panels
 * that the whole team shares. Then every (mr-row panel, column chunk) item
 * packs its small A panel and runs the micro-kernel along the chunk. An A
 * panel (KC x mr) stays in L1 and a chunk of B (KC x CHUNK) in L2.
 */
#include <assert.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

#define KC 256
#define NC 4096
#define CHUNK 256

typedef struct gemm_kernel {
    const char *isa;
    int mr, nr;
    yd_gemm_ukernel_fn run;
} gemm_kernel;

void yd_f32_gemm_ukernel_4x8__scalar(int kc, const float *a, const float *b, float *c, size_t ldc,
                                     int m, int n, int accumulate)
{
    float acc[4][8] = {{0}};

    assert(m >= 1);
    assert(m <= 4);
    assert(n >= 1);
    assert(n <= 8);
    for (int p = 0; p < kc; p++) {
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++)
                acc[i][j] += a[i] * b[j];
        a += 4;
        b += 8;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[(size_t)i * ldc + j] = accumulate ? c[(size_t)i * ldc + j] + acc[i][j] : acc[i][j];
}

static const gemm_kernel *pick_kernel(void)
{
    static const gemm_kernel avx512 = {"avx512", 12, 32, yd_f32_gemm_ukernel_12x32__avx512};
    static const gemm_kernel avx2 = {"avx2", 6, 16, yd_f32_gemm_ukernel_6x16__avx2};
    static const gemm_kernel scalar = {"scalar", 4, 8, yd_f32_gemm_ukernel_4x8__scalar};
    const char *force = getenv("YOLOD_GEMM");

    __builtin_cpu_init();
    if (force && strcmp(force, "scalar") == 0)
        return &scalar;
    if (force && strcmp(force, "avx2") == 0 && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return &avx2;
    if (__builtin_cpu_supports("avx512f"))
        return &avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &avx2;
    return &scalar;
}

const char *yd_gemm_f32_isa(void)
{
    return pick_kernel()->isa;
}

/* Packs op(B)[p0 .. p0+kc) x [j0 .. j0+nc) into nr-wide panels, zero padded. */
static void pack_b(int transpose, const float *b, size_t ldb, int p0, int kc, int j0, int nc, int nr,
                   float *out)
{
    int panels = (nc + nr - 1) / nr;

#pragma omp for schedule(static)
    for (int q = 0; q < panels; q++) {
        float *dst = out + (size_t)q * kc * nr;
        int j = j0 + q * nr, n = nc - q * nr < nr ? nc - q * nr : nr;

        for (int p = 0; p < kc; p++) {
            float *row = dst + (size_t)p * nr;

            if (!transpose) {
                memcpy(row, b + (size_t)(p0 + p) * ldb + j, (size_t)n * sizeof *row);
            } else {
                for (int x = 0; x < n; x++)
                    row[x] = b[(size_t)(j + x) * ldb + p0 + p];
            }
            for (int x = n; x < nr; x++)
                row[x] = 0;
        }
    }
}

/* Packs op(A)[i0 .. i0+m) x [p0 .. p0+kc) as kc steps of mr floats. */
static void pack_a(int transpose, const float *a, size_t lda, int i0, int m, int p0, int kc, int mr,
                   float *out)
{
    for (int p = 0; p < kc; p++) {
        float *dst = out + (size_t)p * mr;

        if (transpose) {
            memcpy(dst, a + (size_t)(p0 + p) * lda + i0, (size_t)m * sizeof *dst);
        } else {
            for (int i = 0; i < m; i++)
                dst[i] = a[(size_t)(i0 + i) * lda + p0 + p];
        }
        for (int i = m; i < mr; i++)
            dst[i] = 0;
    }
}

int yd_gemm_f32(int transpose_a, int transpose_b, int m, int n, int k, const float *a,
                size_t lda, const float *b, size_t ldb, float *c, size_t ldc, int accumulate,
                int threads)
{
    const gemm_kernel *kern = pick_kernel();
    int mr = kern->mr, nr = kern->nr, team = threads > 0 ? threads : omp_get_max_threads();
    size_t b_floats = (size_t)KC * ((NC + nr - 1) / nr) * nr, a_floats = (size_t)KC * mr;
    float *packed_b;

    assert(m >= 0);
    assert(n >= 0);
    assert(k >= 0);
    if (m == 0 || n == 0)
        return 0;
    if (k == 0) {
        if (!accumulate)
            for (int i = 0; i < m; i++)
                memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof *c);
        return 0;
    }
    /* B's block, then one A panel per thread. */
    packed_b = aligned_alloc(64, (b_floats + a_floats * team) * sizeof *packed_b);
    if (!packed_b)
        return -1;

#pragma omp parallel num_threads(team)
    {
        float *packed_a = packed_b + b_floats + a_floats * omp_get_thread_num();

        for (int j0 = 0; j0 < n; j0 += NC) {
            int nc = n - j0 < NC ? n - j0 : NC;
            int chunks = (nc + CHUNK - 1) / CHUNK, row_panels = (m + mr - 1) / mr;

            for (int p0 = 0; p0 < k; p0 += KC) {
                int kc = k - p0 < KC ? k - p0 : KC;
                int add = accumulate || p0 > 0;

                pack_b(transpose_b, b, ldb, p0, kc, j0, nc, nr, packed_b);
                /* The implicit barrier of pack_b's omp for publishes the panels. */
#pragma omp for schedule(dynamic, 1)
                for (int item = 0; item < row_panels * chunks; item++) {
                    int i0 = item / chunks * mr, q0 = item % chunks * CHUNK;
                    int rows = m - i0 < mr ? m - i0 : mr;
                    int q1 = q0 + CHUNK < nc ? q0 + CHUNK : nc;

                    pack_a(transpose_a, a, lda, i0, rows, p0, kc, mr, packed_a);
                    for (int q = q0; q < q1; q += nr) {
                        int cols = q1 - q < nr ? q1 - q : nr;

                        kern->run(kc, packed_a, packed_b + (size_t)(q / nr) * kc * nr,
                                  c + (size_t)i0 * ldc + j0 + q, ldc, rows, cols, add);
                    }
                }
            }
        }
    }
    free(packed_b);
    return 0;
}
