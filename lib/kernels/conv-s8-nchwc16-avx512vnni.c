/*
 * AVX-512 VNNI int8 convolution: vpdpbusd multiplies 4 uint8 inputs by 4
 * int8 weights and adds them into each int32 lane, so one instruction does
 * 64 multiply-adds. Tiles of up to 4 output blocks x 6 pixels keep 24 zmm
 * accumulators; the input is pre-padded (see kernels.h), so no tap is
 * clipped. The epilogue converts to float, applies scale, bias, SiLU and
 * the residual, and stores 16-float blocks (cb must be 16), quantizes
 * them for the next int8 convolutions (yd_s8_conv_u8_nchwc16__avx512vnni),
 * or both (yd_s8_conv_multi_nchwc16__avx512vnni). For the detection head,
 * yd_s8_conv_planar_nchwc16__avx512vnni writes planar [c][h][w] floats.
 */
#include <assert.h>
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "math-avx512.h"
#include "u8-target.h"

#define TILE_ATTR static inline __attribute__((always_inline))
#define OB_MAX 4
#define NP_MAX 12
/* Pixels of a row that the planar output passes through a stack buffer at once. */
#define PLANAR_SEGMENT 128

typedef struct qctx {
    const yd_conv_shape *s;
    const yd_qconv *q;
    size_t w_block;   /* bytes per 16 output channels */
    int hp, wp;       /* padded input size */
    int lanes;        /* input bytes per pixel: YD_QCB, or 4 (see yd_qconv_u8_fn) */
    int nicb, groups_last;
    int float_out;    /* 1 when the float output is stored */
    int float_first, float_end; /* the output blocks whose floats are stored */
    /* Float output of block ob, row oy, pixel ox: out + (ob - ob_base) *
     * block_floats + oy * row_floats + (ox - ox_base) * 16. The planar
     * output points them at a row segment in a stack buffer. */
    size_t block_floats, row_floats;
    int ob_base, ox_base;
    float *planar;    /* planar [out_c][out_h][out_w] output, or NULL */
    int ntargets;
    u8_target targets[YD_QCONV_MAX_OUTPUTS];
} qctx;

TILE_ATTR void qtile(const qctx *c, int ob0, const int OB, const int NP, int oy, int ox,
                     const uint8_t *in, const float *residual, float *out)
{
    const yd_conv_shape *s = c->s;
    const size_t sx = (size_t)s->stride_w * c->lanes;
    const int8_t *w0 = c->q->weights + (size_t)ob0 * c->w_block;
    __m512i acc[OB_MAX][NP_MAX];

    /* The sums start at minus the zero point's correction, so the
     * epilogue converts them as they are. */
    for (int b = 0; b < OB; b++) {
        const __m512i start = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_load_si512((const void *)(c->q->correction + (size_t)(ob0 + b) * YD_QCB)));

        for (int p = 0; p < NP; p++)
            acc[b][p] = start;
    }

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

    for (int b = 0; b < OB; b++) {
        const int ob = ob0 + b, oc0 = ob * YD_QCB;
        const __m512 scale = _mm512_load_ps(c->q->scale + oc0);
        const __m512 bias = _mm512_load_ps(c->q->bias + oc0);
        const size_t base = (size_t)(ob - c->ob_base) * c->block_floats + (size_t)oy * c->row_floats +
                            (size_t)(ox - c->ox_base) * 16;
        __m512 value[NP_MAX];

        for (int p = 0; p < NP; p++) {
            __m512 v = _mm512_cvtepi32_ps(acc[b][p]);

            v = _mm512_fmadd_ps(v, scale, bias);
            if (s->silu)
                v = silu_int8_avx512(v);
            if (residual)
                v = _mm512_add_ps(v, _mm512_load_ps(residual + base + (size_t)p * 16));
            if (c->float_out && ob >= c->float_first && ob < c->float_end)
                _mm512_store_ps(out + base + (size_t)p * 16, v);
            value[p] = v;
        }

        for (int k = 0; k < c->ntargets; k++) {
            const u8_target *t = &c->targets[k];

            if (ob < t->first_block || ob >= t->end_block)
                continue;

            /* The same operations as yd_u8_quantize__avx512, so the bytes
             * match a float output quantized by the next layer. Its clamp to
             * YD_QUANT_LIMIT is left out: with calibrated scales a
             * convolution of uint8 inputs stays far below it. */
            const __m512 inverse = _mm512_set1_ps(t->inverse);
            const __m512i z = _mm512_set1_epi32(t->zero);
            const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
            const size_t qy = (size_t)(t->out_block + ob - t->first_block) * t->hq +
                              (size_t)(oy + t->pad_top);
            uint8_t *qrow = t->out + (qy * t->wq + (size_t)(ox + t->pad_left)) * YD_QCB;
            /* Lanes past out_c hold the zero point, as the quantizer leaves them. */
            const __mmask16 real =
                oc0 + YD_QCB <= s->out_c ? 0xffff : (__mmask16)((1u << (s->out_c - oc0)) - 1);

            int p = 0;

            /* Four pixels at a time when every lane is a channel: the
             * saturating packs clamp to [0, 255] as min and max do. */
            for (; real == 0xffff && p + 4 <= NP; p += 4) {
                __m512i q[4];

                for (int j = 0; j < 4; j++)
                    q[j] = _mm512_add_epi32(
                        _mm512_cvtps_epi32(_mm512_mul_ps(value[p + j], inverse)), z);
                _mm512_storeu_si512((void *)(qrow + (size_t)p * YD_QCB), pack_u8x4_avx512(q));
            }
            for (; p < NP; p++) {
                __m512i qv = _mm512_cvtps_epi32(_mm512_mul_ps(value[p], inverse));

                qv = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(qv, z), lo), hi);
                qv = _mm512_mask_blend_epi32(real, z, qv);
                _mm_store_si128((__m128i *)(qrow + (size_t)p * YD_QCB), _mm512_cvtepi32_epi8(qv));
            }
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
 * every quantized output to its zero point: the row's left and right
 * padding, and the top (bottom) padding rows along with the first (last)
 * row.
 */
static void fill_border(const qctx *c, int ob0, int count, int oy)
{
    const yd_conv_shape *s = c->s;

    for (int k = 0; k < c->ntargets; k++) {
        const u8_target *t = &c->targets[k];
        const size_t row_bytes = (size_t)t->wq * YD_QCB;
        const int first = ob0 > t->first_block ? ob0 : t->first_block;
        const int end = ob0 + count < t->end_block ? ob0 + count : t->end_block;

        for (int ob = first; ob < end; ob++) {
            uint8_t *block = t->out + (size_t)(t->out_block + ob - t->first_block) * t->hq * row_bytes;
            uint8_t *row = block + (size_t)(oy + t->pad_top) * row_bytes;

            memset(row, t->zero, (size_t)t->pad_left * YD_QCB);
            memset(row + (size_t)(t->pad_left + s->out_w) * YD_QCB, t->zero,
                   (size_t)t->pad_right * YD_QCB);
            if (oy == 0)
                memset(block, t->zero, (size_t)t->pad_top * row_bytes);
            if (oy == s->out_h - 1)
                memset(block + (size_t)(t->pad_top + s->out_h) * row_bytes, t->zero,
                       (size_t)t->pad_bottom * row_bytes);
        }
    }
}

/* Computes pixels [x_begin, x_end) of output row oy of blocks [ob0, ob0 + count). */
static void run_tiles(const qctx *c, int ob0, int count, int oy, int x_begin, int x_end,
                      const uint8_t *in, const float *residual, float *out)
{
    for (int ox = x_begin; ox < x_end;) {
        int np = x_end - ox < np_for[count] ? x_end - ox : np_for[count];

        switch (count) {
        case 1: qrow_1(c, ob0, oy, ox, np, in, residual, out); break;
        case 2: qrow_2(c, ob0, oy, ox, np, in, residual, out); break;
        case 3: qrow_3(c, ob0, oy, ox, np, in, residual, out); break;
        default: qrow_4(c, ob0, oy, ox, np, in, residual, out); break;
        }
        ox += np;
    }
}

/*
 * Copies n pixels of one block, 16 floats each at `rows`, to `lanes`
 * planes `plane` floats apart, starting at dst: 16 x 16 transposes, with
 * masked stores for the last n % 16 pixels.
 */
static void store_planar(const float *rows, int n, int lanes, float *dst, size_t plane)
{
    for (int i0 = 0; i0 < n; i0 += 16) {
        const int m = n - i0 < 16 ? n - i0 : 16;
        const __mmask16 mask = (__mmask16)((1u << m) - 1);
        __m512 r[16];

        for (int i = 0; i < 16; i++)
            r[i] = i < m ? _mm512_load_ps(rows + (size_t)(i0 + i) * 16) : _mm512_setzero_ps();
        transpose_16x16(r);
        for (int lane = 0; lane < lanes; lane++)
            _mm512_mask_storeu_ps(dst + (size_t)lane * plane + i0, mask, r[lane]);
    }
}

/*
 * Computes output row oy of blocks [ob0, ob0 + count) into c->planar, one
 * segment of the row at a time through a stack buffer that stays in L1,
 * so the blocked floats never reach memory.
 */
static void run_row_planar(qctx *c, int ob0, int count, int oy, const uint8_t *in)
{
    const yd_conv_shape *s = c->s;
    const size_t plane = (size_t)s->out_h * s->out_w;
    float rows[OB_MAX * PLANAR_SEGMENT * 16] __attribute__((aligned(64)));

    c->ob_base = ob0;
    c->block_floats = PLANAR_SEGMENT * 16;
    c->row_floats = 0;
    for (int x0 = 0; x0 < s->out_w; x0 += PLANAR_SEGMENT) {
        const int n = s->out_w - x0 < PLANAR_SEGMENT ? s->out_w - x0 : PLANAR_SEGMENT;

        c->ox_base = x0;
        run_tiles(c, ob0, count, oy, x0, x0 + n, in, NULL, rows);
        for (int b = 0; b < count; b++) {
            const int oc0 = (ob0 + b) * YD_QCB;
            const int lanes = s->out_c - oc0 < YD_QCB ? s->out_c - oc0 : YD_QCB;

            store_planar(rows + (size_t)b * PLANAR_SEGMENT * 16, n, lanes,
                         c->planar + (size_t)oc0 * plane + (size_t)oy * s->out_w + x0, plane);
        }
    }
}

/* Computes output row oy of output blocks [ob0, ob0 + count). */
static void run_row(qctx *c, int ob0, int count, int oy, const uint8_t *in, const float *residual,
                    float *out)
{
    if (c->planar) {
        run_row_planar(c, ob0, count, oy, in);
        return;
    }
    if (c->ntargets > 0)
        fill_border(c, ob0, count, oy);
    run_tiles(c, ob0, count, oy, 0, c->s->out_w, in, residual, out);
}

static void run(qctx *c, const uint8_t *in, const float *residual, float *out)
{
    const yd_conv_shape *s = c->s;
    const int nob = (s->out_c + YD_QCB - 1) / YD_QCB;
    const int ngroups = (nob + OB_MAX - 1) / OB_MAX;
    const int group = (nob + ngroups - 1) / ngroups;
    const int items = ngroups * s->out_h;
    int last = s->in_c - (c->nicb - 1) * YD_QCB;

    c->groups_last = (last + 3) / 4;
    c->w_block = (size_t)c->nicb * s->kernel_h * s->kernel_w * YD_QCB * YD_QCB;

    /* Items are (output group, row) pairs. Guided: each thread takes runs of
     * adjacent rows, whose 3x3 inputs overlap in cache, starting at half of
     * the remaining rows and shrinking. On yolov8n int8 this ran 5% faster
     * than dynamic chunks of one row, and as fast with another process
     * competing for the cores. */
    if (s->nowait) {
#pragma omp for schedule(guided) nowait
        for (int item = 0; item < items; item++) {
            const int ob0 = item / s->out_h * group;

            run_row(c, ob0, nob - ob0 < group ? nob - ob0 : group, item % s->out_h, in, residual, out);
        }
    } else {
#pragma omp for schedule(guided)
        for (int item = 0; item < items; item++) {
            const int ob0 = item / s->out_h * group;

            run_row(c, ob0, nob - ob0 < group ? nob - ob0 : group, item % s->out_h, in, residual, out);
        }
    }
}

/* Fills c's geometry for the layer and q. */
static void init_ctx(qctx *c, const yd_conv_shape *s, const yd_qconv *q, int in_lanes)
{
    *c = (qctx){
        .s = s,
        .q = q,
        .hp = s->in_h + s->pad_top + q->pad_bottom,
        .wp = s->in_w + s->pad_left + q->pad_right,
        .nicb = (s->in_c + YD_QCB - 1) / YD_QCB,
        .lanes = in_lanes,
        .float_end = (s->out_c + YD_QCB - 1) / YD_QCB,
        .block_floats = (size_t)s->out_h * s->out_w * 16,
        .row_floats = (size_t)s->out_w * 16,
    };
}

/* Adds the quantized outputs next[0..nnext) to c. */
static void add_targets(qctx *c, const yd_qconv_u8_out *next, int nnext)
{
    const yd_conv_shape *s = c->s;
    const int nob = (s->out_c + YD_QCB - 1) / YD_QCB;

    assert(nnext >= 0);
    assert(nnext <= YD_QCONV_MAX_OUTPUTS);
    for (int k = 0; k < nnext; k++) {
        const yd_qconv_u8_out *n = &next[k];
        const int nblocks = n->nblocks > 0 ? n->nblocks : nob;

        assert(n->first_block >= 0);
        assert(n->first_block + nblocks <= nob);
        c->targets[k] = u8_target_of(n, s, nob);
    }
    c->ntargets = nnext;
}

void yd_s8_conv_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q, const uint8_t *in,
                                    const float *residual, float *out, int cb)
{
    qctx c;

    assert(cb == 16);
    init_ctx(&c, s, q, YD_QCB);
    c.float_out = 1;
    run(&c, in, residual, out);
}

void yd_s8_conv_u8_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q,
                                       const uint8_t *in, int in_lanes, const float *residual,
                                       const yd_qconv_u8_out *next)
{
    yd_s8_conv_multi_nchwc16__avx512vnni(s, q, in, in_lanes, residual, NULL, 0, 0, next, 1);
}

void yd_s8_conv_multi_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q,
                                          const uint8_t *in, int in_lanes, const float *residual,
                                          float *out, int out_first_block, int out_nblocks,
                                          const yd_qconv_u8_out *next, int nnext)
{
    qctx c;

    assert(in_lanes == YD_QCB || (in_lanes == 4 && s->in_c <= 4));
    assert(out || nnext > 0);
    assert(out_first_block >= 0);
    assert(out_nblocks >= 0);
    init_ctx(&c, s, q, in_lanes);
    c.float_out = out != NULL;
    if (out_nblocks > 0) {
        assert(out_first_block + out_nblocks <= c.float_end);
        c.float_first = out_first_block;
        c.float_end = out_first_block + out_nblocks;
    }
    add_targets(&c, next, nnext);
    run(&c, in, residual, out);
}

void yd_s8_conv_planar_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q,
                                           const uint8_t *in, int in_lanes, float *out)
{
    qctx c;

    assert(in_lanes == YD_QCB || (in_lanes == 4 && s->in_c <= 4));
    assert(out);
    init_ctx(&c, s, q, in_lanes);
    c.float_out = 1;
    c.planar = out;
    run(&c, in, NULL, NULL);
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
    const __m512 limit_lo = _mm512_set1_ps(-YD_QUANT_LIMIT), limit_hi = _mm512_set1_ps(YD_QUANT_LIMIT);

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
            __m512 t = _mm512_mul_ps(_mm512_load_ps(src + (size_t)x * 16), inverse);
            __m512i v = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(t, limit_lo), limit_hi));

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
