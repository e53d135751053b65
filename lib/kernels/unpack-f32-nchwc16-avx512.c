/*
 * AVX-512 conversion of a 16-float blocked tensor to planar [c][h][w], for
 * the detection head maps. Each 16 x 16 tile of pixels and channels is
 * transposed in registers, so every load and store is a whole vector
 * instead of one float.
 */
#include <assert.h>
#include <immintrin.h>

#include "kernels.h"
#include "math-avx512.h"

/* Copies pixels [first, first + 16) of block b to its planes. */
static void unpack_tile(const float *in, int c, size_t plane, int b, size_t first, float *out)
{
    const float *src = in + ((size_t)b * plane + first) * 16;
    const int lanes = c - b * 16 < 16 ? c - b * 16 : 16;
    __m512 r[16];

    for (int i = 0; i < 16; i++)
        r[i] = _mm512_load_ps(src + (size_t)i * 16);
    transpose_16x16(r);
    for (int lane = 0; lane < lanes; lane++)
        _mm512_storeu_ps(out + (size_t)(b * 16 + lane) * plane + first, r[lane]);
}

void yd_f32_unpack_planar_nchwc16__avx512(const float *in, int c, int h, int w, float *out)
{
    const size_t plane = (size_t)h * w, tiles = plane / 16;
    const int nblocks = (c + 15) / 16;

#pragma omp for schedule(static) nowait
    for (long item = 0; item < (long)(nblocks * tiles); item++)
        unpack_tile(in, c, plane, (int)(item / (long)tiles), (size_t)(item % (long)tiles) * 16, out);

    /* The last plane % 16 pixels of each block, one float at a time. */
#pragma omp for schedule(static) nowait
    for (int b = 0; b < nblocks; b++) {
        const int lanes = c - b * 16 < 16 ? c - b * 16 : 16;

        for (int lane = 0; lane < lanes; lane++)
            for (size_t i = tiles * 16; i < plane; i++)
                out[(size_t)(b * 16 + lane) * plane + i] = in[((size_t)b * plane + i) * 16 + lane];
    }
}
