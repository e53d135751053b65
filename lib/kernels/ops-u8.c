/*
 * Pooling and upsampling that write the padded uint8 input of an int8
 * convolution (see kernels.h), so the convolution need not quantize a
 * float tensor first. Max pooling and nearest upsampling commute with the
 * quantizer, which is monotonic and works on each value alone, so these
 * bytes equal the float layer's output quantized by yd_u8_quantize__avx512.
 * SSE4.1 is part of x86-64-v2, the level this file is compiled for.
 */
#include <assert.h>
#include <smmintrin.h>
#include <string.h>

#include "kernels.h"

/* Bytes of one block of the padded layout. */
static size_t block_bytes(const yd_u8_layout *layout)
{
    return (size_t)layout->hq * layout->wq * YD_QCB;
}

/* The 16 bytes of pixel (y, x) of block `block`. */
static uint8_t *pixel_at(const yd_u8_layout *layout, int block, int y, int x)
{
    return layout->data + (size_t)block * block_bytes(layout) +
           ((size_t)(y + layout->pad_top) * layout->wq + (size_t)(x + layout->pad_left)) * YD_QCB;
}

/*
 * Sets the padding around row y of block `block` to the zero point: the
 * row's left and right padding, and the top (bottom) padding rows along
 * with the first (last) row.
 */
static void fill_row_border(const yd_u8_layout *layout, int block, int y, int h, int w)
{
    const size_t row_bytes = (size_t)layout->wq * YD_QCB;
    uint8_t *first = layout->data + (size_t)block * block_bytes(layout);
    uint8_t *row = first + (size_t)(y + layout->pad_top) * row_bytes;

    memset(row, layout->zero, (size_t)layout->pad_left * YD_QCB);
    memset(row + (size_t)(layout->pad_left + w) * YD_QCB, layout->zero,
           (size_t)layout->pad_right * YD_QCB);
    if (y == 0)
        memset(first, layout->zero, (size_t)layout->pad_top * row_bytes);
    if (y == h - 1)
        memset(first + (size_t)(layout->pad_top + h) * row_bytes, layout->zero,
               (size_t)layout->pad_bottom * row_bytes);
}

/*
 * One output row of a kernel x kernel, stride 1 max pooling: the column
 * maximum over the window's rows for every x, then the row maximum over
 * the window's columns. Taps outside the image are skipped, as the float
 * layer's -inf padding does.
 */
static void maxpool_row(const yd_u8_layout *layout, int in_block, int out_block, int h, int w,
                        int kernel, int pad, int y, __m128i *column)
{
    const int y0 = y - pad < 0 ? 0 : y - pad;
    const int y1 = y - pad + kernel > h ? h : y - pad + kernel;
    uint8_t *dst = pixel_at(layout, out_block, y, 0);

    for (int x = 0; x < w; x++) {
        __m128i m = _mm_load_si128((const __m128i *)pixel_at(layout, in_block, y0, x));

        for (int yy = y0 + 1; yy < y1; yy++)
            m = _mm_max_epu8(m, _mm_load_si128((const __m128i *)pixel_at(layout, in_block, yy, x)));
        column[x] = m;
    }
    for (int x = 0; x < w; x++) {
        const int x0 = x - pad < 0 ? 0 : x - pad;
        const int x1 = x - pad + kernel > w ? w : x - pad + kernel;
        __m128i m = column[x0];

        for (int xx = x0 + 1; xx < x1; xx++)
            m = _mm_max_epu8(m, column[xx]);
        _mm_store_si128((__m128i *)(dst + (size_t)x * YD_QCB), m);
    }
}

void yd_u8_maxpool(const yd_u8_layout *layout, int in_block, int out_block, int nblocks, int h,
                   int w, int kernel, int pad, int wait)
{
    /* One row of column maxima per thread; SPPF maps are far narrower. */
    enum { MAX_WIDTH = 1024 };
    __m128i column[MAX_WIDTH];

    assert(w <= MAX_WIDTH);
    assert(kernel > pad);
    if (wait) {
#pragma omp for schedule(static)
        for (int b = 0; b < nblocks; b++)
            for (int y = 0; y < h; y++) {
                maxpool_row(layout, in_block + b, out_block + b, h, w, kernel, pad, y, column);
                fill_row_border(layout, out_block + b, y, h, w);
            }
    } else {
#pragma omp for schedule(static) nowait
        for (int b = 0; b < nblocks; b++)
            for (int y = 0; y < h; y++) {
                maxpool_row(layout, in_block + b, out_block + b, h, w, kernel, pad, y, column);
                fill_row_border(layout, out_block + b, y, h, w);
            }
    }
}

/*
 * Quantizes 16 floats as yd_u8_quantize__avx512 does: rint(x * (1 / scale)) +
 * zero, clamped to [0, 255]. The saturating packs clamp like its min and
 * max, also for the INT_MIN that cvtps gives out of range.
 */
static __m128i quantize_16(const float *src, __m128 inverse, __m128i zero)
{
    __m128i q[4];

    for (int k = 0; k < 4; k++)
        q[k] = _mm_add_epi32(_mm_cvtps_epi32(_mm_mul_ps(_mm_load_ps(src + 4 * k), inverse)), zero);
    return _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
}

void yd_u8_upsample_quantize(const float *in, int nblocks, int h, int w, int scale, float qscale,
                             const yd_u8_layout *layout, int out_block)
{
    const __m128 inverse = _mm_set1_ps(1.0f / qscale);
    const __m128i zero = _mm_set1_epi32(layout->zero);
    const int out_h = h * scale, out_w = w * scale;

#pragma omp for schedule(static)
    for (int item = 0; item < nblocks * h; item++) {
        const int b = item / h, y = item % h;
        const float *src = in + ((size_t)b * h + (size_t)y) * w * YD_QCB;

        for (int x = 0; x < w; x++) {
            const __m128i bytes = quantize_16(src + (size_t)x * YD_QCB, inverse, zero);

            for (int dy = 0; dy < scale; dy++) {
                uint8_t *dst = pixel_at(layout, out_block + b, y * scale + dy, x * scale);

                for (int dx = 0; dx < scale; dx++)
                    _mm_store_si128((__m128i *)(dst + (size_t)dx * YD_QCB), bytes);
            }
        }
        for (int dy = 0; dy < scale; dy++)
            fill_row_border(layout, out_block + b, y * scale + dy, out_h, out_w);
    }
}
