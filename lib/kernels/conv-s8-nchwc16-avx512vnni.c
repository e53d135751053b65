/*
 * AVX-512 VNNI int8 convolution: vpdpbusd multiplies 4 uint8 inputs by 4
 * int8 weights and adds them into each int32 lane, so one instruction does
 * 64 multiply-adds. Tiles of up to 4 output blocks x 6 pixels keep 24 zmm
 * accumulators; the input is pre-padded (see kernels.h), so no tap is
 * clipped. The epilogue converts to float, applies scale, bias, SiLU and
 * the residual, and stores 16-float blocks (cb must be 16), or quantizes
 * them for the next int8 convolution (yd_s8_conv_u8_nchwc16__avx512vnni).
 */
#include <assert.h>
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "math-avx512.h"

#define TILE_ATTR static inline __attribute__((always_inline))
#define OB_MAX 4
#define NP_MAX 12

typedef struct qctx {
    const yd_conv_shape *s;
    const yd_qconv *q;
    size_t w_block;   /* bytes per 16 output channels */
    int hp, wp;       /* padded input size */
    int lanes;        /* input bytes per pixel: YD_QCB, or 4 (see yd_qconv_u8_fn) */
    int nicb, groups_last;
    const yd_qconv_u8_out *next; /* NULL: float output */
    int hq, wq;                  /* next->out's padded size */
} qctx;

TILE_ATTR void qtile(const qctx *c, int ob0, const int OB, const int NP, int oy, int ox,
                     const uint8_t *in, const float *residual, float *out)
{
    const yd_conv_shape *s = c->s;
    const size_t sx = (size_t)s->stride_w * c->lanes;
    const int8_t *w0 = c->q->weights + (size_t)ob0 * c->w_block;
    __m512i acc[OB_MAX][NP_MAX];

    for (int b = 0; b < OB; b++)
        for (int p = 0; p < NP; p++)
            acc[b][p] = _mm512_setzero_si512();

    for (int icb = 0; icb < c->nicb; icb++) {
        const int groups = icb == c->nicb - 1 ? c->groups_last : 4;

        for (int ky = 0; ky < s->kernel_h; ky++) {
            const uint8_t *row = in + (((size_t)icb * c->hp + (size_t)(oy * s->stride_h + ky)) * c->wp +
                                       (size_t)ox * s->stride_w) * c->lanes;
            const int8_t *wrow = w0 + (((size_t)icb * s->kernel_h + ky) * s->kernel_w) * 4 * 64;

            for (int kx = 0; kx < s->kernel_w; kx++) {
                const uint8_t *ip = row + (size_t)kx * c->lanes;
                const int8_t *wk = wrow + (size_t)kx * 4 * 64;

                for (int g = 0; g < groups; g++) {
                    __m512i wv[OB_MAX];

                    for (int b = 0; b < OB; b++)
                        wv[b] = _mm512_load_si512((const void *)(wk + (size_t)b * c->w_block + (size_t)g * 64));
                    for (int p = 0; p < NP; p++) {
                        int32_t quad;
                        __m512i x;

                        memcpy(&quad, ip + (size_t)p * sx + (size_t)g * 4, sizeof quad);
                        x = _mm512_set1_epi32(quad);
                        for (int b = 0; b < OB; b++)
                            acc[b][p] = _mm512_dpbusd_epi32(acc[b][p], x, wv[b]);
                    }
                }
            }
        }
    }

    if (c->next) {
        /* The same operations as yd_u8_quantize__avx512, so the bytes match
         * a float output quantized by the next layer. */
        const __m512 inverse = _mm512_set1_ps(1.0f / c->next->scale);
        const __m512i z = _mm512_set1_epi32(c->next->zero);
        const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);

        for (int b = 0; b < OB; b++) {
            const int oc0 = (ob0 + b) * YD_QCB;
            const __m512 scale = _mm512_load_ps(c->q->scale + oc0);
            const __m512 bias = _mm512_load_ps(c->q->bias + oc0);
            const __m512i corr = _mm512_load_si512((const void *)(c->q->correction + oc0));
            size_t base = (size_t)(ob0 + b) * s->out_h * s->out_w * 16 + ((size_t)oy * s->out_w + ox) * 16;
            const size_t qy = (size_t)(ob0 + b) * c->hq + (size_t)(oy + c->next->pad_top);
            uint8_t *qrow = c->next->out + (qy * c->wq + (size_t)(ox + c->next->pad_left)) * YD_QCB;
            /* Lanes past out_c hold the zero point, as the quantizer leaves them. */
            const __mmask16 real =
                oc0 + YD_QCB <= s->out_c ? 0xffff : (__mmask16)((1u << (s->out_c - oc0)) - 1);

            for (int p = 0; p < NP; p++) {
                __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[b][p], corr));
                __m512i qv;

                v = _mm512_fmadd_ps(v, scale, bias);
                if (s->silu)
                    v = silu_int8_avx512(v);
                if (residual)
                    v = _mm512_add_ps(v, _mm512_load_ps(residual + base + (size_t)p * 16));
                qv = _mm512_cvtps_epi32(_mm512_mul_ps(v, inverse));
                qv = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(qv, z), lo), hi);
                qv = _mm512_mask_blend_epi32(real, z, qv);
                _mm_store_si128((__m128i *)(qrow + (size_t)p * YD_QCB), _mm512_cvtepi32_epi8(qv));
            }
        }
        return;
    }

    for (int b = 0; b < OB; b++) {
        const int oc0 = (ob0 + b) * YD_QCB;
        const __m512 scale = _mm512_load_ps(c->q->scale + oc0);
        const __m512 bias = _mm512_load_ps(c->q->bias + oc0);
        const __m512i corr = _mm512_load_si512((const void *)(c->q->correction + oc0));
        size_t base = (size_t)(ob0 + b) * s->out_h * s->out_w * 16 + ((size_t)oy * s->out_w + ox) * 16;

        for (int p = 0; p < NP; p++) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[b][p], corr));

            v = _mm512_fmadd_ps(v, scale, bias);
            if (s->silu)
                v = silu_int8_avx512(v);
            if (residual)
                v = _mm512_add_ps(v, _mm512_load_ps(residual + base + (size_t)p * 16));
            _mm512_store_ps(out + base + (size_t)p * 16, v);
        }
    }
}

#define QCASE(OB, NP) case NP: qtile(c, ob0, OB, NP, oy, ox, in, residual, out); break;
#define QCASES_6(OB) QCASE(OB, 1) QCASE(OB, 2) QCASE(OB, 3) QCASE(OB, 4) QCASE(OB, 5) QCASE(OB, 6)
#define QCASES_8(OB) QCASES_6(OB) QCASE(OB, 7) QCASE(OB, 8)
#define QCASES_12(OB) QCASES_8(OB) QCASE(OB, 9) QCASE(OB, 10) QCASE(OB, 11) QCASE(OB, 12)
#define QROW(OB, CASES)                                                                    \
    static void qrow_##OB(const qctx *c, int ob0, int oy, int ox, int np, const uint8_t *in, \
                          const float *residual, float *out)                               \
    {                                                                                      \
        switch (np) {                                                                      \
        CASES(OB)                                                                          \
        default: break;                                                                    \
        }                                                                                  \
    }

QROW(1, QCASES_12)
QROW(2, QCASES_12)
QROW(3, QCASES_8)
QROW(4, QCASES_6)

static const int np_for[5] = {0, 12, 12, 8, 6};

/*
 * Sets the padding around output row oy of blocks [ob0, ob0 + count) in
 * next->out to the zero point: the row's left and right padding, and the
 * top (bottom) padding rows along with the first (last) row.
 */
static void fill_border(const qctx *c, int ob0, int count, int oy)
{
    const yd_conv_shape *s = c->s;
    const yd_qconv_u8_out *n = c->next;
    const size_t row_bytes = (size_t)c->wq * YD_QCB;

    for (int ob = ob0; ob < ob0 + count; ob++) {
        uint8_t *block = n->out + (size_t)ob * c->hq * row_bytes;
        uint8_t *row = block + (size_t)(oy + n->pad_top) * row_bytes;

        memset(row, n->zero, (size_t)n->pad_left * YD_QCB);
        memset(row + (size_t)(n->pad_left + s->out_w) * YD_QCB, n->zero,
               (size_t)n->pad_right * YD_QCB);
        if (oy == 0)
            memset(block, n->zero, (size_t)n->pad_top * row_bytes);
        if (oy == s->out_h - 1)
            memset(block + (size_t)(n->pad_top + s->out_h) * row_bytes, n->zero,
                   (size_t)n->pad_bottom * row_bytes);
    }
}

static void run(qctx *c, const uint8_t *in, const float *residual, float *out)
{
    const yd_conv_shape *s = c->s;
    const int nob = (s->out_c + YD_QCB - 1) / YD_QCB;
    const int ngroups = (nob + OB_MAX - 1) / OB_MAX;
    const int group = (nob + ngroups - 1) / ngroups;
    int last = s->in_c - (c->nicb - 1) * YD_QCB;

    c->groups_last = (last + 3) / 4;
    c->w_block = (size_t)c->nicb * s->kernel_h * s->kernel_w * YD_QCB * YD_QCB;

#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < ngroups * s->out_h; item++) {
        const int g = item / s->out_h, oy = item % s->out_h;
        const int ob0 = g * group;
        const int count = nob - ob0 < group ? nob - ob0 : group;

        if (c->next)
            fill_border(c, ob0, count, oy);
        for (int ox = 0; ox < s->out_w;) {
            int np = s->out_w - ox < np_for[count] ? s->out_w - ox : np_for[count];

            switch (count) {
            case 1: qrow_1(c, ob0, oy, ox, np, in, residual, out); break;
            case 2: qrow_2(c, ob0, oy, ox, np, in, residual, out); break;
            case 3: qrow_3(c, ob0, oy, ox, np, in, residual, out); break;
            default: qrow_4(c, ob0, oy, ox, np, in, residual, out); break;
            }
            ox += np;
        }
    }
}

void yd_s8_conv_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q, const uint8_t *in,
                                    const float *residual, float *out, int cb)
{
    qctx c = {
        .s = s,
        .q = q,
        .hp = s->in_h + s->pad_top + q->pad_bottom,
        .wp = s->in_w + s->pad_left + q->pad_right,
        .nicb = (s->in_c + YD_QCB - 1) / YD_QCB,
        .lanes = YD_QCB,
    };

    assert(cb == 16);
    run(&c, in, residual, out);
}

void yd_s8_conv_u8_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q,
                                       const uint8_t *in, int in_lanes, const float *residual,
                                       const yd_qconv_u8_out *next)
{
    qctx c = {
        .s = s,
        .q = q,
        .hp = s->in_h + s->pad_top + q->pad_bottom,
        .wp = s->in_w + s->pad_left + q->pad_right,
        .nicb = (s->in_c + YD_QCB - 1) / YD_QCB,
        .lanes = in_lanes,
        .next = next,
        .hq = s->out_h + next->pad_top + next->pad_bottom,
        .wq = s->out_w + next->pad_left + next->pad_right,
    };

    assert(in_lanes == YD_QCB || (in_lanes == 4 && s->in_c <= 4));
    run(&c, in, residual, NULL);
}

/* Quantizes a 16-float blocked tensor into the padded uint8 layout. */
void yd_u8_quantize__avx512(const float *in, int c, int h, int w, int cb, float scale, int zero,
                            int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out)
{
    const int hp = h + pad_top + pad_bottom, wp = w + pad_left + pad_right;
    const int nqb = (c + YD_QCB - 1) / YD_QCB;
    const __m512 inverse = _mm512_set1_ps(1.0f / scale);
    const __m512i z = _mm512_set1_epi32(zero);
    const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);

    assert(cb == 16);
#pragma omp for schedule(static)
    for (int item = 0; item < nqb * hp; item++) {
        int qb = item / hp, y = item % hp - pad_top;
        uint8_t *row = out + ((size_t)qb * hp + (size_t)(y + pad_top)) * wp * YD_QCB;
        const float *src = in + ((size_t)qb * h + (size_t)y) * w * 16;

        if (y < 0 || y >= h) {
            memset(row, zero, (size_t)wp * YD_QCB);
            continue;
        }
        memset(row, zero, (size_t)pad_left * YD_QCB);
        memset(row + (size_t)(pad_left + w) * YD_QCB, zero, (size_t)pad_right * YD_QCB);
        for (int x = 0; x < w; x++) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(src + (size_t)x * 16), inverse));

            v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, z), lo), hi);
            _mm_storeu_si128((__m128i *)(row + (size_t)(pad_left + x) * YD_QCB), _mm512_cvtepi32_epi8(v));
        }
        /* Lanes past c read padding floats; their weights are zero, but
         * keep them at the zero point so the bytes are deterministic. */
        if (qb == nqb - 1 && c % YD_QCB != 0)
            for (int x = 0; x < w; x++)
                memset(row + (size_t)(pad_left + x) * YD_QCB + c % YD_QCB, zero,
                       (size_t)(YD_QCB - c % YD_QCB));
    }
}
