/*
 * Int8 convolution: weight packing, the input quantizer and the scalar
 * reference kernel the vector kernels are tested against.
 */
#include <emmintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

static inline int blocks16(int c)
{
    return (c + YD_QCB - 1) / YD_QCB;
}

size_t yd_qconv_input_bytes(const yd_conv_shape *s, int pad_bottom, int pad_right)
{
    return (size_t)blocks16(s->in_c) * (size_t)(s->in_h + s->pad_top + pad_bottom) *
           (size_t)(s->in_w + s->pad_left + pad_right) * YD_QCB;
}

static size_t packed_block_bytes(const yd_conv_shape *s)
{
    return (size_t)blocks16(s->in_c) * s->kernel_h * s->kernel_w * YD_QCB * YD_QCB;
}

int yd_qconv_pack(const yd_conv_shape *s, const int8_t *qweight, const float *weight_scale,
                  const float *bias, float input_scale, int input_zero, int pad_bottom,
                  int pad_right, yd_qconv *q)
{
    int nob = blocks16(s->out_c);
    size_t block = packed_block_bytes(s);
    size_t oc_pad = (size_t)nob * YD_QCB;

    memset(q, 0, sizeof *q);
    q->weights = yd_aligned_alloc((size_t)nob * block);
    q->scale = yd_aligned_alloc(oc_pad * sizeof(float));
    q->bias = yd_aligned_alloc(oc_pad * sizeof(float));
    q->correction = yd_aligned_alloc(oc_pad * sizeof(int32_t));
    if (!q->weights || !q->scale || !q->bias || !q->correction) {
        yd_qconv_free(q);
        return YD_ERR_NO_MEMORY;
    }
    memset(q->weights, 0, (size_t)nob * block);
    memset(q->scale, 0, oc_pad * sizeof(float));
    memset(q->bias, 0, oc_pad * sizeof(float));
    memset(q->correction, 0, oc_pad * sizeof(int32_t));
    q->input_scale = input_scale;
    q->input_zero = input_zero;
    q->pad_bottom = pad_bottom;
    q->pad_right = pad_right;

    for (int oc = 0; oc < s->out_c; oc++) {
        int8_t *dst = q->weights + (size_t)(oc / YD_QCB) * block;
        int32_t sum = 0;

        for (int ic = 0; ic < s->in_c; ic++)
            for (int ky = 0; ky < s->kernel_h; ky++)
                for (int kx = 0; kx < s->kernel_w; kx++) {
                    int8_t w = qweight[(((size_t)oc * s->in_c + ic) * s->kernel_h + ky) * s->kernel_w + kx];
                    int lane = ic % YD_QCB;
                    size_t at = ((((size_t)(ic / YD_QCB) * s->kernel_h + ky) * s->kernel_w + kx) * 4 +
                                 (size_t)(lane / 4)) * YD_QCB * 4 + (size_t)(oc % YD_QCB) * 4 + lane % 4;

                    dst[at] = w;
                    sum += w;
                }
        q->scale[oc] = input_scale * weight_scale[oc];
        q->bias[oc] = bias[oc];
        q->correction[oc] = input_zero * sum;
    }
    return YD_OK;
}

void yd_qconv_free(yd_qconv *q)
{
    free(q->weights);
    free(q->scale);
    free(q->bias);
    free(q->correction);
    free(q->winograd_u);
    free(q->winograd_scale);
    memset(q, 0, sizeof *q);
}

/* Clamps a quantized value to the uint8 range. */
static inline uint8_t clamp_u8(long v)
{
    if (v < 0)
        return 0;
    if (v > 255)
        return 255;
    return (uint8_t)v;
}

/*
 * Quantizes one float to uint8. x / scale is clamped to +-YD_QUANT_LIMIT
 * first, in the operand order of SSE maxps and minps, so NaN becomes the
 * lower limit as in the vector quantizers. Without the clamp, lrintf of a
 * value past the range of long is undefined.
 */
static inline uint8_t quantize_value(float x, float inverse, int zero)
{
    float t = x * inverse;

    t = t > -YD_QUANT_LIMIT ? t : -YD_QUANT_LIMIT;
    t = t < YD_QUANT_LIMIT ? t : YD_QUANT_LIMIT;
    return clamp_u8(lrintf(t) + zero);
}

void yd_u8_quantize__scalar(const float *in, int c, int h, int w, int cb, float scale, int zero,
                            int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out)
{
    const int hp = h + pad_top + pad_bottom, wp = w + pad_left + pad_right;
    const float inverse = 1.0f / scale;
    const int nqb = blocks16(c);

#pragma omp for schedule(static)
    for (int item = 0; item < nqb * hp; item++) {
        int qb = item / hp, y = item % hp - pad_top;
        uint8_t *row = out + ((size_t)qb * hp + (size_t)(y + pad_top)) * wp * YD_QCB;

        if (y < 0 || y >= h) {
            memset(row, zero, (size_t)wp * YD_QCB);
            continue;
        }
        for (int x = -pad_left; x < w + pad_right; x++) {
            uint8_t *px = row + (size_t)(x + pad_left) * YD_QCB;

            for (int lane = 0; lane < YD_QCB; lane++) {
                int ch = qb * YD_QCB + lane;

                px[lane] = (uint8_t)zero;
                if (x >= 0 && x < w && ch < c)
                    px[lane] = quantize_value(
                        in[(size_t)(ch / cb) * h * w * cb + ((size_t)y * w + x) * cb + ch % cb],
                        inverse, zero);
            }
        }
    }
}


yd_qconv_u8_fn yd_qconv_u8_of(const yd_kernel_table *table)
{
    if (table->qconv == yd_s8_conv_nchwc16__avx512vnni)
        return yd_s8_conv_u8_nchwc16__avx512vnni;
    return NULL;
}

yd_qconv_multi_fn yd_qconv_multi_of(const yd_kernel_table *table)
{
    if (table->qconv == yd_s8_conv_nchwc16__avx512vnni)
        return yd_s8_conv_multi_nchwc16__avx512vnni;
    return NULL;
}

yd_qconv_planar_fn yd_qconv_planar_of(const yd_kernel_table *table)
{
    if (table->qconv == yd_s8_conv_nchwc16__avx512vnni)
        return yd_s8_conv_planar_nchwc16__avx512vnni;
    return NULL;
}

void yd_u8_quantize_rgb8(const uint8_t *rgb, int width, int height, int lanes, float scale,
                         int zero, int pad_top, int pad_left, int pad_bottom, int pad_right,
                         uint8_t *out)
{
    const int hp = height + pad_top + pad_bottom, wp = width + pad_left + pad_right;
    const float inverse = 1.0f / scale;
    uint8_t table[256];

    /* The float steps of yd_f32_pack_rgb8 and yd_u8_quantize__scalar, done
     * once for each byte value. */
    for (int v = 0; v < 256; v++)
        table[v] = quantize_value((float)v / 255.0f, inverse, zero);

#pragma omp for schedule(static)
    for (int yp = 0; yp < hp; yp++) {
        const int y = yp - pad_top;
        uint8_t *row = out + (size_t)yp * wp * lanes;
        const uint8_t *src = rgb + (size_t)y * width * 3;

        memset(row, zero, (size_t)wp * lanes);
        if (y < 0 || y >= height)
            continue;
        for (int x = 0; x < width; x++) {
            uint8_t *px = row + (size_t)(x + pad_left) * lanes;

            px[0] = table[src[3 * x + 0]];
            px[1] = table[src[3 * x + 1]];
            px[2] = table[src[3 * x + 2]];
        }
    }
}

/* Quantizes 16 floats to 16 bytes, saturating as yd_u8_quantize__scalar clamps. */
static inline __m128i quantize_16(const float *src, __m128 inv, __m128 lo, __m128 hi, __m128i z)
{
    __m128i q[4];

    for (int k = 0; k < 4; k++) {
        __m128 t = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(src + 4 * k), inv), lo), hi);

        q[k] = _mm_add_epi32(_mm_cvtps_epi32(t), z);
    }
    return _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
}

/*
 * Quantizes one row of at most 4 planar channels into the compact layout:
 * 16 pixels per step, each channel packed to 16 bytes and interleaved by
 * unpacking (SSE2 is part of the x86-64 baseline). The clamp before
 * cvtps2dq is quantize_value()'s, for out-of-range and NaN inputs too.
 */
static void quantize_compact_row(const float *src, size_t plane, int c, int w, float inverse,
                                 int zero, uint8_t *dst)
{
    const __m128 inv = _mm_set1_ps(inverse), lo = _mm_set1_ps(-YD_QUANT_LIMIT),
                 hi = _mm_set1_ps(YD_QUANT_LIMIT);
    const __m128i z = _mm_set1_epi32(zero), zero_bytes = _mm_set1_epi8((char)zero);
    int x = 0;

    for (; x + 16 <= w; x += 16) {
        __m128i ch[4], rg, ba;

        for (int k = 0; k < 4; k++)
            ch[k] = k < c ? quantize_16(src + (size_t)k * plane + x, inv, lo, hi, z) : zero_bytes;
        rg = _mm_unpacklo_epi8(ch[0], ch[1]);
        ba = _mm_unpacklo_epi8(ch[2], ch[3]);
        _mm_storeu_si128((__m128i *)(dst + (size_t)x * 4), _mm_unpacklo_epi16(rg, ba));
        _mm_storeu_si128((__m128i *)(dst + (size_t)x * 4 + 16), _mm_unpackhi_epi16(rg, ba));
        rg = _mm_unpackhi_epi8(ch[0], ch[1]);
        ba = _mm_unpackhi_epi8(ch[2], ch[3]);
        _mm_storeu_si128((__m128i *)(dst + (size_t)x * 4 + 32), _mm_unpacklo_epi16(rg, ba));
        _mm_storeu_si128((__m128i *)(dst + (size_t)x * 4 + 48), _mm_unpackhi_epi16(rg, ba));
    }
    for (; x < w; x++)
        for (int ch = 0; ch < 4; ch++)
            dst[(size_t)x * 4 + ch] =
                ch < c ? quantize_value(src[(size_t)ch * plane + x], inverse, zero) : (uint8_t)zero;
}

void yd_u8_quantize_planar(const float *in, int c, int h, int w, int lanes, float scale, int zero,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out)
{
    const int hp = h + pad_top + pad_bottom, wp = w + pad_left + pad_right;
    const float inverse = 1.0f / scale;
    const int nqb = blocks16(c);
    const size_t plane = (size_t)h * w;

#pragma omp for schedule(static)
    for (int item = 0; item < nqb * hp; item++) {
        int qb = item / hp, y = item % hp - pad_top;
        int real = c - qb * YD_QCB < YD_QCB ? c - qb * YD_QCB : YD_QCB;
        uint8_t *row = out + ((size_t)qb * hp + (size_t)(y + pad_top)) * wp * lanes;
        const float *src = in + (size_t)qb * YD_QCB * plane + (size_t)y * w;

        if (y < 0 || y >= h) {
            memset(row, zero, (size_t)wp * lanes);
            continue;
        }
        if (lanes == 4) {
            memset(row, zero, (size_t)pad_left * 4);
            memset(row + (size_t)(pad_left + w) * 4, zero, (size_t)pad_right * 4);
            quantize_compact_row(src, plane, real, w, inverse, zero, row + (size_t)pad_left * 4);
            continue;
        }
        memset(row, zero, (size_t)wp * lanes);
        for (int lane = 0; lane < real; lane++) {
            const float *from = src + (size_t)lane * plane;
            uint8_t *dst = row + (size_t)pad_left * lanes + lane;

            for (int x = 0; x < w; x++)
                dst[(size_t)x * lanes] = quantize_value(from[x], inverse, zero);
        }
    }
}

void yd_s8_conv__scalar(const yd_conv_shape *s, const yd_qconv *q, const uint8_t *in,
                        const float *residual, float *out, int cb)
{
    const int hp = s->in_h + s->pad_top + q->pad_bottom, wp = s->in_w + s->pad_left + q->pad_right;
    size_t block = packed_block_bytes(s);

#pragma omp for schedule(static)
    for (int item = 0; item < s->out_c * s->out_h; item++) {
        int oc = item / s->out_h, oy = item % s->out_h;
        const int8_t *wb = q->weights + (size_t)(oc / YD_QCB) * block;

        for (int ox = 0; ox < s->out_w; ox++) {
            int32_t acc = 0;
            size_t at = (size_t)(oc / cb) * s->out_h * s->out_w * cb + ((size_t)oy * s->out_w + ox) * cb + oc % cb;
            float v;

            for (int ic = 0; ic < s->in_c; ic++)
                for (int ky = 0; ky < s->kernel_h; ky++)
                    for (int kx = 0; kx < s->kernel_w; kx++) {
                        int iy = oy * s->stride_h + ky, ix = ox * s->stride_w + kx;
                        int lane = ic % YD_QCB;
                        size_t w_at = ((((size_t)(ic / YD_QCB) * s->kernel_h + ky) * s->kernel_w + kx) * 4 +
                                       (size_t)(lane / 4)) * YD_QCB * 4 + (size_t)(oc % YD_QCB) * 4 + lane % 4;
                        uint8_t x = in[(((size_t)(ic / YD_QCB) * hp + iy) * wp + ix) * YD_QCB + lane];

                        acc += (int32_t)x * wb[w_at];
                    }
            v = (float)(acc - q->correction[oc]) * q->scale[oc] + q->bias[oc];
            if (s->silu)
                v = v / (1.0f + expf(-v));
            if (residual)
                v += residual[at];
            out[at] = v;
        }
    }
}
