/*
 * Layout conversion, data movement and the cheap layers (pooling,
 * upsampling, elementwise) over the blocked layout, for any channel block.
 * Inner loops run over the cb contiguous lanes so the compiler vectorizes
 * them at the file's ISA level.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

void yd_f32_pack_rgb8(const uint8_t *rgb, int width, int height, int cb, float *out)
{
#pragma omp for schedule(static)
    for (int y = 0; y < height; y++) {
        const uint8_t *src = rgb + (size_t)y * width * 3;
        float *dst = out + (size_t)y * width * cb;

        for (int x = 0; x < width; x++) {
            float *px = dst + (size_t)x * cb;

            /* Division, not a multiply by 1/255, to match pixel / 255.0f. */
            px[0] = (float)src[3 * x + 0] / 255.0f;
            px[1] = (float)src[3 * x + 1] / 255.0f;
            px[2] = (float)src[3 * x + 2] / 255.0f;
            for (int lane = 3; lane < cb; lane++)
                px[lane] = 0.0f;
        }
    }
}

/* Copies run `item` of yd_f32_unpack_planar's loop. */
static inline void unpack_run(const float *in, int c, long plane, long runs, long run_pixels,
                              int cb, long item, float *out)
{
    const int b = (int)(item / runs);
    const int lanes = c - b * cb < cb ? c - b * cb : cb;
    const long first = item % runs * run_pixels;
    const long end = first + run_pixels < plane ? first + run_pixels : plane;
    const float *src = in + (size_t)b * plane * cb;

    for (int lane = 0; lane < lanes; lane++) {
        float *dst = out + (size_t)(b * cb + lane) * plane;

        for (long i = first; i < end; i++)
            dst[i] = src[i * cb + lane];
    }
}

/* Copies runs of 64 pixels, so a run's block (4 KiB with AVX-512) stays in
 * L1 while each of its channels is copied out. */
enum { UNPACK_RUN = 64 };

void yd_f32_unpack_planar(const float *in, int c, int h, int w, int cb, float *out)
{
    const long plane = (long)h * w, runs = (plane + UNPACK_RUN - 1) / UNPACK_RUN;
    const int nblocks = (c + cb - 1) / cb;

#pragma omp for schedule(static)
    for (long item = 0; item < nblocks * runs; item++)
        unpack_run(in, c, plane, runs, UNPACK_RUN, cb, item, out);
}

void yd_f32_unpack_planar_nowait(const float *in, int c, int h, int w, int cb, float *out)
{
    const long plane = (long)h * w, runs = (plane + UNPACK_RUN - 1) / UNPACK_RUN;
    const int nblocks = (c + cb - 1) / cb;

#pragma omp for schedule(static) nowait
    for (long item = 0; item < nblocks * runs; item++)
        unpack_run(in, c, plane, runs, UNPACK_RUN, cb, item, out);
}

void yd_f32_pack_planar(const float *in, int c, int h, int w, int cb, float *out)
{
    size_t plane = (size_t)h * w;
    int nblocks = (c + cb - 1) / cb;

    /* Split by rows too: the network input is a single 3-channel block. */
#pragma omp for schedule(static)
    for (int item = 0; item < nblocks * h; item++) {
        int b = item / h, y = item % h;
        int lanes = c - b * cb < cb ? c - b * cb : cb;
        float *dst = out + ((size_t)b * plane + (size_t)y * w) * cb;

        memset(dst, 0, (size_t)w * cb * sizeof *dst);
        for (int lane = 0; lane < lanes; lane++) {
            const float *src = in + (size_t)(b * cb + lane) * plane + (size_t)y * w;

            for (int x = 0; x < w; x++)
                dst[(size_t)x * cb + lane] = src[x];
        }
    }
}

void yd_f32_copy_channels(const float *src, int src_channel, float *dst, int dst_channel, int count,
                          int h, int w, int cb)
{
    size_t plane = (size_t)h * w;

    if (dst_channel % cb == 0 && src_channel % cb == 0) {
        /* Aligned: whole blocks, the last one possibly partial. */
        float *base = dst + (size_t)(dst_channel / cb) * plane * cb;

        src += (size_t)(src_channel / cb) * plane * cb;
        int full = count / cb, rest = count % cb;

#pragma omp for schedule(static)
        for (int b = 0; b <= full; b++) {
            if (b < full) {
                memcpy(base + (size_t)b * plane * cb, src + (size_t)b * plane * cb,
                       plane * cb * sizeof(float));
            } else if (rest) {
                for (size_t i = 0; i < plane; i++)
                    memcpy(base + ((size_t)b * plane + i) * cb, src + ((size_t)b * plane + i) * cb,
                           (size_t)rest * sizeof(float));
            }
        }
        return;
    }

#pragma omp for schedule(static)
    for (int ch = 0; ch < count; ch++) {
        int to = dst_channel + ch, from = src_channel + ch;
        const float *s = src + (size_t)(from / cb) * plane * cb + from % cb;
        float *d = dst + (size_t)(to / cb) * plane * cb + to % cb;

        for (size_t i = 0; i < plane; i++)
            d[i * cb] = s[i * cb];
    }
}

void yd_f32_maxpool(const float *in, int c, int h, int w, int kernel, int stride, int pad,
                    float *out, int out_h, int out_w, int cb)
{
    int nblocks = (c + cb - 1) / cb;

#pragma omp for schedule(static)
    for (int item = 0; item < nblocks * out_h; item++) {
        int b = item / out_h, oy = item % out_h;
        const float *src = in + (size_t)b * h * w * cb;
        float *dst = out + ((size_t)b * out_h + oy) * out_w * cb;
        int y0 = oy * stride - pad, y1 = y0 + kernel;

        if (y0 < 0)
            y0 = 0;
        if (y1 > h)
            y1 = h;
        for (int ox = 0; ox < out_w; ox++) {
            float m[64];
            int x0 = ox * stride - pad, x1 = x0 + kernel;

            if (x0 < 0)
                x0 = 0;
            if (x1 > w)
                x1 = w;
            for (int lane = 0; lane < cb; lane++)
                m[lane] = -FLT_MAX;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    for (int lane = 0; lane < cb; lane++) {
                        float v = src[((size_t)y * w + x) * cb + lane];

                        m[lane] = v > m[lane] ? v : m[lane];
                    }
            memcpy(dst + (size_t)ox * cb, m, (size_t)cb * sizeof(float));
        }
    }
}

void yd_f32_upsample_nearest(const float *in, int c, int h, int w, int scale, float *out, int cb)
{
    int nblocks = (c + cb - 1) / cb;
    int out_h = h * scale, out_w = w * scale;

#pragma omp for schedule(static)
    for (int item = 0; item < nblocks * out_h; item++) {
        int b = item / out_h, oy = item % out_h;
        const float *src = in + ((size_t)b * h + oy / scale) * w * cb;
        float *dst = out + ((size_t)b * out_h + oy) * out_w * cb;

        for (int ox = 0; ox < out_w; ox++)
            memcpy(dst + (size_t)ox * cb, src + (size_t)(ox / scale) * cb, (size_t)cb * sizeof(float));
    }
}

void yd_f32_add(const float *a, const float *b, float *out, size_t n)
{
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void yd_f32_mul(const float *a, const float *b, float *out, size_t n)
{
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

void yd_f32_sigmoid(const float *in, float *out, size_t n)
{
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = 1.0f / (1.0f + expf(-in[i]));
}

void yd_f32_silu(const float *in, float *out, size_t n)
{
#pragma omp for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] / (1.0f + expf(-in[i]));
}

double yd_f32_dot__scalar(const float *a, const float *b, size_t n)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * b[i];
    return sum;
}

double yd_f64_dot__scalar(const double *a, const double *b, size_t n)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}
