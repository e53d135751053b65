/*
 * Int8 convolution: weight packing, the input quantizer and the scalar
 * reference kernel the vector kernels are tested against.
 */
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
    memset(q, 0, sizeof *q);
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
                long v = zero;

                if (x >= 0 && x < w && ch < c) {
                    float f = in[(size_t)(ch / cb) * h * w * cb + ((size_t)y * w + x) * cb + ch % cb];

                    v = lrintf(f * inverse) + zero;
                }
                px[lane] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
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
