/*
 * Reference convolution over the blocked layout, and weight packing.
 *
 * The scalar kernel is the oracle for the vector kernels in tests: plain
 * loops, one output element at a time, zero padding by bounds checks.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

static inline int blocks(int c, int cb)
{
    return (c + cb - 1) / cb;
}

size_t yd_conv_packed_floats(const yd_conv_shape *s, int cb)
{
    size_t per_block = (size_t)cb + (size_t)blocks(s->in_c, cb) * s->kernel_h * s->kernel_w * cb * cb;

    return (size_t)blocks(s->out_c, cb) * per_block;
}

void yd_conv_pack(const yd_conv_shape *s, int cb, const float *weight, const float *bias,
                  float *packed)
{
    size_t per_block = yd_conv_packed_floats(s, cb) / (size_t)blocks(s->out_c, cb);
    int kh = s->kernel_h, kw = s->kernel_w;

    memset(packed, 0, yd_conv_packed_floats(s, cb) * sizeof *packed);
    for (int oc = 0; oc < s->out_c; oc++) {
        float *block = packed + (size_t)(oc / cb) * per_block;
        int lane = oc % cb;

        block[lane] = bias[oc];
        for (int ic = 0; ic < s->in_c; ic++) {
            for (int ky = 0; ky < kh; ky++) {
                for (int kx = 0; kx < kw; kx++) {
                    size_t at = (size_t)cb +
                                ((((size_t)(ic / cb) * kh + ky) * kw + kx) * cb + ic % cb) * cb + lane;

                    block[at] = weight[(((size_t)oc * s->in_c + ic) * kh + ky) * kw + kx];
                }
            }
        }
    }
}

void yd_f32_conv__scalar(const yd_conv_shape *s, int cb, const float *packed, const float *in,
                         const float *residual, float *out)
{
    size_t per_block = yd_conv_packed_floats(s, cb) / (size_t)blocks(s->out_c, cb);
    size_t pixel = s->in_pixel > 0 ? (size_t)s->in_pixel : (size_t)cb;
    size_t in_plane = (size_t)s->in_h * s->in_w * pixel;
    size_t out_plane = (size_t)s->out_h * s->out_w * cb;
    int nob = blocks(s->out_c, cb);

#pragma omp for schedule(static)
    for (int item = 0; item < nob * s->out_h; item++) {
        int ob = item / s->out_h, oy = item % s->out_h;
        const float *block = packed + (size_t)ob * per_block;

        for (int ox = 0; ox < s->out_w; ox++) {
            for (int lane = 0; lane < cb; lane++) {
                float acc = block[lane];
                size_t at = (size_t)ob * out_plane + ((size_t)oy * s->out_w + ox) * cb + lane;

                for (int ic = 0; ic < s->in_c; ic++) {
                    for (int ky = 0; ky < s->kernel_h; ky++) {
                        int iy = oy * s->stride_h - s->pad_top + ky;

                        if (iy < 0 || iy >= s->in_h)
                            continue;
                        for (int kx = 0; kx < s->kernel_w; kx++) {
                            int ix = ox * s->stride_w - s->pad_left + kx;
                            size_t w_at = (size_t)cb +
                                          ((((size_t)(ic / cb) * s->kernel_h + ky) * s->kernel_w + kx) * cb +
                                           ic % cb) * cb + lane;

                            if (ix < 0 || ix >= s->in_w)
                                continue;
                            acc += block[w_at] *
                                   in[(size_t)(ic / cb) * in_plane + ((size_t)iy * s->in_w + ix) * pixel + ic % cb];
                        }
                    }
                }
                if (s->silu)
                    acc = acc / (1.0f + expf(-acc));
                if (residual)
                    acc += residual[at];
                out[at] = acc;
            }
        }
    }
}

void yd_f32_conv_nchwc8__scalar(const yd_conv_shape *shape, const float *packed, const float *in,
                                const float *residual, float *out)
{
    yd_f32_conv__scalar(shape, 8, packed, in, residual, out);
}
