/*
 * AVX2 int8 convolution for CPUs without VNNI. It reads the same packed
 * weights and padded uint8 input as the VNNI kernel (see kernels.h) and
 * writes 8-float output blocks (cb must be 8).
 *
 * vpmaddubsw would multiply uint8 by int8 directly but saturates its 16-bit
 * pair sums (255 * 127 * 2 > 32767), so both operands are widened to int16
 * and multiplied with vpmaddwd, which adds pairs into int32 exactly. One
 * vpmaddwd covers 4 output channels x 4 input channels as 8 partial sums
 * (two per channel); the pairs are added once, in the epilogue. A tile is
 * 8 output channels (two groups of 4) x NP pixels of one row.
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
} qctx;

/* Output channels [half * 8, +8) of 16-channel weight block `ob16`. */
TILE_ATTR void qtile8(const qctx *c, int ob16, int half, const int NP, int oy, int ox,
                      const uint8_t *in, const float *residual, float *out)
{
    const yd_conv_shape *s = c->s;
    const size_t sx = (size_t)s->stride_w * YD_QCB;
    const int8_t *w0 = c->q->weights + (size_t)ob16 * c->w_block + (size_t)half * 32;
    __m256i acc_lo[NP_MAX], acc_hi[NP_MAX];

    for (int p = 0; p < NP; p++) {
        acc_lo[p] = _mm256_setzero_si256();
        acc_hi[p] = _mm256_setzero_si256();
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
                    /* 8 channels x 4 inputs: channels 0-3, then 4-7, widened. */
                    __m256i w8 = _mm256_loadu_si256((const __m256i *)(wk + (size_t)g * 64));
                    __m256i w_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w8));
                    __m256i w_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w8, 1));

                    for (int p = 0; p < NP; p++) {
                        int32_t quad;
                        __m256i x;

                        memcpy(&quad, ip + (size_t)p * sx + (size_t)g * 4, sizeof quad);
                        /* 4 inputs as int16, repeated for the 4 channels. */
                        x = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(quad)));
                        acc_lo[p] = _mm256_add_epi32(acc_lo[p], _mm256_madd_epi16(x, w_lo));
                        acc_hi[p] = _mm256_add_epi32(acc_hi[p], _mm256_madd_epi16(x, w_hi));
                    }
                }
            }
        }
    }

    const int oc0 = ob16 * YD_QCB + half * 8;
    const __m256 scale = _mm256_loadu_ps(c->q->scale + oc0);
    const __m256 bias = _mm256_loadu_ps(c->q->bias + oc0);
    const __m256i corr = _mm256_loadu_si256((const __m256i *)(c->q->correction + oc0));
    /* hadd gives channels 0 1 4 5 | 2 3 6 7; this puts them in order. */
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    const int ob8 = ob16 * 2 + half;
    size_t base = (size_t)ob8 * s->out_h * s->out_w * 8 + ((size_t)oy * s->out_w + ox) * 8;

    for (int p = 0; p < NP; p++) {
        __m256i sum = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc_lo[p], acc_hi[p]), order);
        __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(sum, corr));

        v = _mm256_fmadd_ps(v, scale, bias);
        if (s->silu)
            v = silu_avx2(v);
        if (residual)
            v = _mm256_add_ps(v, _mm256_load_ps(residual + base + (size_t)p * 8));
        _mm256_store_ps(out + base + (size_t)p * 8, v);
    }
}

#define QCASE(NP) case NP: qtile8(c, ob16, half, NP, oy, ox, in, residual, out); break;

static void qrow(const qctx *c, int ob16, int half, int oy, int ox, int np, const uint8_t *in,
                 const float *residual, float *out)
{
    switch (np) {
    QCASE(1) QCASE(2) QCASE(3) QCASE(4) QCASE(5) QCASE(6)
    default: break;
    }
}

void yd_s8_conv_nchwc8__avx2(const yd_conv_shape *s, const yd_qconv *q, const uint8_t *in,
                             const float *residual, float *out, int cb)
{
    qctx c = {
        .s = s,
        .q = q,
        .hp = s->in_h + s->pad_top + q->pad_bottom,
        .wp = s->in_w + s->pad_left + q->pad_right,
        .nicb = (s->in_c + YD_QCB - 1) / YD_QCB,
    };
    const int nob8 = (s->out_c + 7) / 8;
    int last = s->in_c - (c.nicb - 1) * YD_QCB;

    assert(cb == 8);
    c.groups_last = (last + 3) / 4;
    c.w_block = (size_t)c.nicb * s->kernel_h * s->kernel_w * YD_QCB * YD_QCB;

#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < nob8 * s->out_h; item++) {
        const int ob8 = item / s->out_h, oy = item % s->out_h;

        for (int ox = 0; ox < s->out_w;) {
            int np = s->out_w - ox < NP_MAX ? s->out_w - ox : NP_MAX;

            qrow(&c, ob8 / 2, ob8 % 2, oy, ox, np, in, residual, out);
            ox += np;
        }
    }
}

/*
 * Quantizes an 8-float blocked tensor into the padded uint8 layout: each
 * 16-lane pixel takes 8 floats from each of two blocks. The operations
 * are those of yd_u8_quantize__avx512, so the bytes are the same.
 */
void yd_u8_quantize__avx2(const float *in, int c, int h, int w, int cb, float scale, int zero,
                          int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out)
{
    const int hp = h + pad_top + pad_bottom, wp = w + pad_left + pad_right;
    const int nqb = (c + YD_QCB - 1) / YD_QCB, nb8 = (c + 7) / 8;
    const __m256 inverse = _mm256_set1_ps(1.0f / scale);
    const __m256i z = _mm256_set1_epi32(zero);
    const __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(255);
    const __m256 limit_lo = _mm256_set1_ps(-YD_QUANT_LIMIT), limit_hi = _mm256_set1_ps(YD_QUANT_LIMIT);

    assert(cb == 8);
#pragma omp for schedule(static)
    for (int item = 0; item < nqb * hp; item++) {
        int qb = item / hp, y = item % hp - pad_top;
        uint8_t *row = out + ((size_t)qb * hp + (size_t)(y + pad_top)) * wp * YD_QCB;
        const float *src0 = in + ((size_t)(qb * 2) * h + (size_t)y) * w * 8;
        const float *src1 = src0 + (size_t)h * w * 8;
        /* The second half of a last block of at most 8 channels has no floats. */
        const int two = qb * 2 + 1 < nb8;

        if (y < 0 || y >= h) {
            memset(row, zero, (size_t)wp * YD_QCB);
            continue;
        }
        memset(row, zero, (size_t)pad_left * YD_QCB);
        memset(row + (size_t)(pad_left + w) * YD_QCB, zero, (size_t)pad_right * YD_QCB);
        for (int x = 0; x < w; x++) {
            __m256i v[2];

            for (int k = 0; k < 2; k++) {
                const float *src = k == 0 ? src0 : src1;

                if (k == 1 && !two) {
                    v[k] = z;
                    continue;
                }
                __m256 t = _mm256_mul_ps(_mm256_load_ps(src + (size_t)x * 8), inverse);

                v[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, limit_lo), limit_hi));
                v[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v[k], z), lo), hi);
            }
            /* The packs give int16 v0[0-3] v1[0-3] | v0[4-7] v1[4-7]. The
             * 64-bit permutation orders them v0[0-7] | v1[0-7], and packus
             * makes bytes v0[0-7] v0[0-7] | v1[0-7] v1[0-7]. */
            __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(v[0], v[1]), 0xd8);
            __m256i bytes = _mm256_packus_epi16(words, words);

            _mm_storeu_si128((__m128i *)(row + (size_t)(pad_left + x) * YD_QCB),
                             _mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, 0x08)));
        }
        /* Lanes past c read padding floats; keep them at the zero point. */
        if (qb == nqb - 1 && c % YD_QCB != 0)
            for (int x = 0; x < w; x++)
                memset(row + (size_t)(pad_left + x) * YD_QCB + c % YD_QCB, zero,
                       (size_t)(YD_QCB - c % YD_QCB));
    }
}
