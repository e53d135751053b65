/*
 * AVX-VNNI int8 convolution, for CPUs that have VNNI only on 256-bit
 * vectors (Intel Alder Lake and later client cores, whose AVX-512 is off).
 * vpdpbusd multiplies 4 uint8 inputs by 4 int8 weights and adds them into
 * each int32 lane, 32 multiply-adds per instruction, where the AVX2 kernel
 * needs three instructions for 8 (see conv-s8-nchwc8-avx2.c).
 *
 * It reads the same packed weights and padded uint8 input as the AVX-512
 * kernel (see kernels.h) and writes 8-float output blocks (cb must be 8).
 * The 64 bytes of a weight group hold 16 output channels x 4 inputs, so
 * their two halves are the weights of two 8-channel output blocks. A tile
 * is those 16 channels x NP pixels of one row: 2 x 6 accumulators, two
 * weight vectors and the broadcast input fill 15 of the 16 ymm registers.
 */
#include <assert.h>
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "math-avx2.h"

#define TILE_ATTR static inline __attribute__((always_inline))
#define NP_MAX 6

typedef struct qctx {
    const yd_conv_shape *s;
    const yd_qconv *q;
    size_t w_block;   /* bytes per 16 output channels */
    int hp, wp;       /* padded input size */
    int nicb, groups_last;
    int nob8;         /* 8-channel output blocks */
} qctx;

/* Output channels [ob16 * 16, +16) for NP pixels from (oy, ox). */
TILE_ATTR void qtile(const qctx *c, int ob16, const int NP, int oy, int ox, const uint8_t *in,
                     const float *residual, float *out)
{
    const yd_conv_shape *s = c->s;
    const size_t sx = (size_t)s->stride_w * YD_QCB;
    const int8_t *w0 = c->q->weights + (size_t)ob16 * c->w_block;
    __m256i acc[2][NP_MAX];

    for (int p = 0; p < NP; p++) {
        acc[0][p] = _mm256_setzero_si256();
        acc[1][p] = _mm256_setzero_si256();
    }

    for (int icb = 0; icb < c->nicb; icb++) {
        const int groups = icb == c->nicb - 1 ? c->groups_last : 4;

        for (int ky = 0; ky < s->kernel_h; ky++) {
            const uint8_t *row = in + (((size_t)icb * c->hp + (size_t)(oy * s->stride_h + ky)) * c->wp +
                                       (size_t)ox * s->stride_w) * YD_QCB;
            const int8_t *wrow = w0 + (((size_t)icb * s->kernel_h + ky) * s->kernel_w) * 4 * 64;

            for (int kx = 0; kx < s->kernel_w; kx++) {
                const uint8_t *ip = row + (size_t)kx * YD_QCB;
                const int8_t *wk = wrow + (size_t)kx * 4 * 64;

                for (int g = 0; g < groups; g++) {
                    const __m256i w_lo = _mm256_load_si256((const __m256i *)(wk + (size_t)g * 64));
                    const __m256i w_hi = _mm256_load_si256((const __m256i *)(wk + (size_t)g * 64 + 32));

                    for (int p = 0; p < NP; p++) {
                        int32_t quad;
                        __m256i x;

                        memcpy(&quad, ip + (size_t)p * sx + (size_t)g * 4, sizeof quad);
                        x = _mm256_set1_epi32(quad);
                        acc[0][p] = _mm256_dpbusd_avx_epi32(acc[0][p], x, w_lo);
                        acc[1][p] = _mm256_dpbusd_avx_epi32(acc[1][p], x, w_hi);
                    }
                }
            }
        }
    }

    for (int half = 0; half < 2; half++) {
        const int ob8 = ob16 * 2 + half, oc0 = ob8 * 8;

        /* The second half of a last block of at most 8 channels is padding
         * the output does not have. */
        if (ob8 >= c->nob8)
            break;

        const __m256 scale = _mm256_load_ps(c->q->scale + oc0);
        const __m256 bias = _mm256_load_ps(c->q->bias + oc0);
        const __m256i corr = _mm256_load_si256((const __m256i *)(c->q->correction + oc0));
        const size_t base = (size_t)ob8 * s->out_h * s->out_w * 8 + ((size_t)oy * s->out_w + ox) * 8;

        for (int p = 0; p < NP; p++) {
            __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[half][p], corr));

            v = _mm256_fmadd_ps(v, scale, bias);
            if (s->silu)
                v = silu_avx2(v);
            if (residual)
                v = _mm256_add_ps(v, _mm256_load_ps(residual + base + (size_t)p * 8));
            _mm256_store_ps(out + base + (size_t)p * 8, v);
        }
    }
}

#define QCASE(NP) case NP: qtile(c, ob16, NP, oy, ox, in, residual, out); break;

static void qrow(const qctx *c, int ob16, int oy, int ox, int np, const uint8_t *in,
                 const float *residual, float *out)
{
    switch (np) {
    QCASE(1) QCASE(2) QCASE(3) QCASE(4) QCASE(5) QCASE(6)
    default: break;
    }
}

void yd_s8_conv_nchwc8__avxvnni(const yd_conv_shape *s, const yd_qconv *q, const uint8_t *in,
                                const float *residual, float *out, int cb)
{
    qctx c = {
        .s = s,
        .q = q,
        .hp = s->in_h + s->pad_top + q->pad_bottom,
        .wp = s->in_w + s->pad_left + q->pad_right,
        .nicb = (s->in_c + YD_QCB - 1) / YD_QCB,
        .nob8 = (s->out_c + 7) / 8,
    };
    const int nob16 = (s->out_c + YD_QCB - 1) / YD_QCB;
    int last = s->in_c - (c.nicb - 1) * YD_QCB;

    assert(cb == 8);
    c.groups_last = (last + 3) / 4;
    c.w_block = (size_t)c.nicb * s->kernel_h * s->kernel_w * YD_QCB * YD_QCB;

    /* Guided, as the AVX-512 kernel: runs of adjacent rows share inputs. */
#pragma omp for schedule(guided)
    for (int item = 0; item < nob16 * s->out_h; item++) {
        const int ob16 = item / s->out_h, oy = item % s->out_h;

        for (int ox = 0; ox < s->out_w;) {
            int np = s->out_w - ox < NP_MAX ? s->out_w - ox : NP_MAX;

            qrow(&c, ob16, oy, ox, np, in, residual, out);
            ox += np;
        }
    }
}
