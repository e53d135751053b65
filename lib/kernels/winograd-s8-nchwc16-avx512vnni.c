/*
 * AVX-512 VNNI int8 Winograd F(4x4, 3x3) convolution (see kernels.h, and
 * winograd-nchwc.inc for the steps). The input transform widens the
 * padded uint8 input to int16 and applies B^T . B in int16, 32 channels
 * (two input blocks) per vector, then removes the zero point's share.
 * Every intermediate stays within 25500 = 100 * 255 in magnitude, because
 * the absolute row sums of B^T are at most 10. The GEMM multiplies pairs of
 * int16 input channels with vpdpwssd, 32 multiply-adds per instruction.
 * Its register tiles of up to 4 output blocks x 6 tiles are those of the
 * float kernel, and it scales each int32 sum to float by the factor of
 * its tile position and output channel. The float output transform, bias,
 * SiLU and residual are the float kernel's. The result is stored as floats,
 * quantized for the next int8 convolution as the direct kernel does, or
 * stored as floats and then quantized for several.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "math-avx512.h"
#include "u8-target.h"

#define CB 16
#define VEC __m512
#define VLOAD(p) _mm512_load_ps(p)
#define VSTORE(p, v) _mm512_store_ps((p), (v))
#define VSET1(x) _mm512_set1_ps(x)
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VSUB(a, b) _mm512_sub_ps((a), (b))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VSILU(v) silu_int8_avx512(v) /* as the direct int8 kernel */

#define OB_MAX 4
#define ACC_MAX 24 /* accumulators in a register tile: NT x OB */

typedef int32_t i32x16 __attribute__((vector_size(64)));

#define WINOGRAD_CTX_FIELDS                                                           \
    const int16_t *u;          /* [36][output blocks][pairs][16 lanes][2] */          \
    const float *scale;        /* [36][output blocks][16]: float value of one M unit */ \
    size_t in_block;           /* bytes per input channel block */                  \
    int hp, wp;                /* padded input size */                              \
    int zero;                  /* input zero point */                               \
    int pairs;                 /* input channel pairs: ceil(in_c / 2) */            \
    /* The output quantized as it is stored, when it is the only one: its   \
     * members, copied so that stores do not force rereads. */                      \
    uint8_t *u8_out;           /* its out, or NULL */                               \
    int u8_zero, u8_top, u8_left;                                                  \
    int hq, wq;                /* its padded size */                                \
    float inverse;             /* 1 / its scale */                                  \
    /* Quantized from the float output after each work item (finish_output). */    \
    int ntargets;                                                                  \
    const u8_target *targets;

#include "winograd-nchwc.inc"

/* int16 elements between consecutive tile positions in V: see position_stride(). */
static inline size_t v_position_stride(int batch, int kpad)
{
    return (size_t)batch * kpad + 2 * CB;
}

/* B^T x for one column or row of 6 int16 vectors. */
TILE_ATTR void input_1d(const __m512i d[6], __m512i t[6])
{
    const __m512i a = _mm512_sub_epi16(d[4], _mm512_slli_epi16(d[2], 2));
    const __m512i b = _mm512_sub_epi16(d[3], _mm512_slli_epi16(d[1], 2));
    const __m512i c = _mm512_sub_epi16(d[4], d[2]);
    const __m512i e = _mm512_slli_epi16(_mm512_sub_epi16(d[3], d[1]), 1);
    const __m512i f = _mm512_sub_epi16(_mm512_slli_epi16(_mm512_sub_epi16(d[1], d[3]), 2), d[3]);

    t[0] = _mm512_add_epi16(_mm512_slli_epi16(d[0], 2), _mm512_sub_epi16(a, d[2]));
    t[1] = _mm512_add_epi16(a, b);
    t[2] = _mm512_sub_epi16(a, b);
    t[3] = _mm512_add_epi16(c, e);
    t[4] = _mm512_sub_epi16(c, e);
    t[5] = _mm512_add_epi16(f, d[5]);
}

/*
 * B^T (d - zero) B of the 6x6 window at `src` (rows row_stride bytes
 * apart, pixels col_stride apart) for one input block, and with `two` for
 * the next block too, block_bytes further. Element (i, j) goes to
 * v + (6 i + j) * v_position: 32 int16 values, or 16 without `two`.
 */
TILE_ATTR void transform_window(const uint8_t *src, size_t row_stride, size_t col_stride,
                                size_t block_bytes, const int two, int zero, int16_t *v,
                                size_t v_position)
{
    /* The row sums r of B^T are (0, -6, 0, 0, 0, 0), so B^T (d - zero) B =
     * B^T d B - zero r r^T differs from B^T d B only at (1, 1), by 36 zero.
     * Transforming d itself saves a subtraction per pixel. The int16 bound
     * of the file header holds for d in [0, 255] as for d - zero. */
    const __m512i shift11 = _mm512_set1_epi16((short)(36 * zero));
    const __m128i zero_bytes = _mm_set1_epi8((char)zero);
    __m512i rows[6][6];

    for (int j = 0; j < 6; j++) {
        __m512i d[6], t[6];

        for (int i = 0; i < 6; i++) {
            const uint8_t *p = src + i * row_stride + j * col_stride;
            const __m128i lo = _mm_loadu_si128((const __m128i *)p);
            const __m128i hi = two ? _mm_loadu_si128((const __m128i *)(p + block_bytes)) : zero_bytes;
            const __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);

            d[i] = _mm512_cvtepu8_epi16(bytes);
        }
        input_1d(d, t);
        for (int i = 0; i < 6; i++)
            rows[i][j] = t[i];
    }
    for (int i = 0; i < 6; i++) {
        __m512i t[6];

        input_1d(rows[i], t);
        if (i == 1)
            t[1] = _mm512_sub_epi16(t[1], shift11);
        for (int j = 0; j < 6; j++) {
            int16_t *dst = v + (size_t)(6 * i + j) * v_position;

            if (two)
                _mm512_storeu_si512((void *)dst, t[j]);
            else
                _mm256_storeu_si256((__m256i *)dst, _mm512_castsi512_si256(t[j]));
        }
    }
}

/*
 * Copies the 6x6 window at padded position (py0, px0) of input blocks icb
 * and icb + 1 (with `two`) to window[36][32], with the zero point outside
 * the padded input.
 */
static void copy_window(const winograd_ctx *c, const uint8_t *in, int icb, int two, int py0,
                        int px0, uint8_t window[36 * 32])
{
    memset(window, c->zero, 36 * 32);
    for (int r = 0; r < 6; r++) {
        const int py = py0 + r;

        if (py >= c->hp)
            break;
        for (int col = 0; col < 6 && px0 + col < c->wp; col++) {
            const uint8_t *p = in + (size_t)icb * c->in_block +
                               ((size_t)py * c->wp + (size_t)(px0 + col)) * YD_QCB;

            memcpy(window + (6 * r + col) * 32, p, YD_QCB);
            if (two)
                memcpy(window + (6 * r + col) * 32 + YD_QCB, p + c->in_block, YD_QCB);
        }
    }
}

static void transform_input(const winograd_ctx *c, const void *input, int t0, int nt, float *scratch)
{
    const uint8_t *in = input;
    int16_t *v = (int16_t *)scratch;
    const size_t v_position = v_position_stride(c->batch, c->kpad);
    const size_t row_stride = (size_t)c->wp * YD_QCB;
    const int nicb = c->kpad / YD_QCB;
    uint8_t window[36 * 32] __attribute__((aligned(64)));

    for (int i = 0; i < nt; i++) {
        const int t = t0 + i;
        /* Output pixel (y, x) reads padded input rows y..y+2, columns x..x+2. */
        const int py0 = (t / c->tiles_x) * 4, px0 = (t % c->tiles_x) * 4;
        const int inside = py0 + 6 <= c->hp && px0 + 6 <= c->wp;

        for (int icb = 0; icb < nicb; icb += 2) {
            const int two = icb + 1 < nicb;
            int16_t *dst = v + (size_t)i * c->kpad + (size_t)icb * YD_QCB;

            if (inside) {
                const uint8_t *src = in + (size_t)icb * c->in_block +
                                     ((size_t)py0 * c->wp + (size_t)px0) * YD_QCB;

                if (two)
                    transform_window(src, row_stride, YD_QCB, c->in_block, 1, c->zero, dst,
                                     v_position);
                else
                    transform_window(src, row_stride, YD_QCB, 0, 0, c->zero, dst, v_position);
                continue;
            }
            copy_window(c, in, icb, two, py0, px0, window);
            if (two)
                transform_window(window, 6 * 32, 32, YD_QCB, 1, c->zero, dst, v_position);
            else
                transform_window(window, 6 * 32, 32, 0, 0, c->zero, dst, v_position);
        }
    }
}

/*
 * NT tiles x OB blocks of one position's GEMM: NT rows of V (v_stride
 * int16 apart) times the [pairs][16][2] weight panels of OB blocks
 * (u_block apart), scaled by OB vectors of `scale`, into NT rows of M
 * (m_stride floats apart). Each int32 lane sums at most in_c products,
 * which yd_qconv_pack_winograd() keeps from overflowing.
 */
TILE_ATTR void gemm_tile(const int16_t *v, size_t v_stride, const int16_t *u, size_t u_block,
                         int pairs, const float *scale, const int NT, const int OB, float *m,
                         size_t m_stride)
{
    /* 16 x int32 vectors rather than __m512i (8 x int64), the type
     * vpdpwssd's builtin takes: with __m512i, GCC 12 copied every
     * accumulator to the stack after each vpdpwssd. Unrolled loops for
     * the same reason: GCC made the zeroing loop a memset of a stack array. */
    i32x16 acc[ACC_MAX];

#pragma GCC unroll 24
    for (int i = 0; i < NT * OB; i++)
        acc[i] = (i32x16)_mm512_setzero_si512();

    for (int k = 0; k < pairs; k++) {
        __m512i w[OB_MAX];

        for (int b = 0; b < OB; b++)
            w[b] = _mm512_load_si512((const void *)(u + (size_t)b * u_block + (size_t)k * 2 * CB));
        for (int t = 0; t < NT; t++) {
            int32_t pair;
            __m512i x;

            memcpy(&pair, v + (size_t)t * v_stride + 2 * (size_t)k, sizeof pair);
            x = _mm512_set1_epi32(pair);
            for (int b = 0; b < OB; b++)
                acc[t * OB + b] = (i32x16)_mm512_dpwssd_epi32((__m512i)acc[t * OB + b], x, w[b]);
        }
    }

#pragma GCC unroll 4
    for (int b = 0; b < OB; b++) {
        const __m512 factor = _mm512_load_ps(scale + (size_t)b * CB);

#pragma GCC unroll 16
        for (int t = 0; t < NT; t++)
            _mm512_store_ps(m + (size_t)t * m_stride + (size_t)b * CB,
                            _mm512_mul_ps(_mm512_cvtepi32_ps((__m512i)acc[t * OB + b]), factor));
    }
}

/* Dispatches a run-time tile count 1..NT_FOR(OB) to a compile-time one. */
#define QTILE_CASE(OB, NT)                                                              \
    case NT:                                                                            \
        gemm_tile(v, v_stride, u, u_block, pairs, scale, NT, OB, m, m_stride);          \
        break;
#define QCASES_6(OB) QTILE_CASE(OB, 1) QTILE_CASE(OB, 2) QTILE_CASE(OB, 3) \
    QTILE_CASE(OB, 4) QTILE_CASE(OB, 5) QTILE_CASE(OB, 6)
#define QCASES_8(OB) QCASES_6(OB) QTILE_CASE(OB, 7) QTILE_CASE(OB, 8)
#define QCASES_12(OB) QCASES_8(OB) QTILE_CASE(OB, 9) QTILE_CASE(OB, 10) \
    QTILE_CASE(OB, 11) QTILE_CASE(OB, 12)
#define QCASES_16(OB) QCASES_12(OB) QTILE_CASE(OB, 13) QTILE_CASE(OB, 14) \
    QTILE_CASE(OB, 15) QTILE_CASE(OB, 16)
#define QGEMM_ROW(OB, CASES)                                                              \
    static void gemm_##OB(int nt, const int16_t *v, size_t v_stride, const int16_t *u,    \
                          size_t u_block, int pairs, const float *scale, float *m,        \
                          size_t m_stride)                                                \
    {                                                                                     \
        switch (nt) {                                                                     \
        CASES(OB)                                                                         \
        default: break;                                                                   \
        }                                                                                 \
    }

QGEMM_ROW(1, QCASES_16)
QGEMM_ROW(2, QCASES_12)
QGEMM_ROW(3, QCASES_8)
QGEMM_ROW(4, QCASES_6)

/* Tiles per register tile for 1..4 output blocks: at most 24 accumulators. */
static const int nt_for[OB_MAX + 1] = {0, 16, 12, 8, 6};

static void multiply(const winograd_ctx *c, const float *scratch, int ob0, int count, int nt,
                     float *m)
{
    const int16_t *v = (const int16_t *)scratch;
    const size_t m_stride = (size_t)count * CB;
    const size_t m_position = position_stride(c->batch, m_stride);
    const size_t v_position = v_position_stride(c->batch, c->kpad);
    const int nt_max = nt_for[count];

    for (int p = 0; p < YD_WINOGRAD_POSITIONS; p++) {
        const int16_t *vp = v + (size_t)p * v_position;
        const int16_t *up = c->u + (size_t)p * c->u_position + (size_t)ob0 * c->u_block;
        const float *scale = c->scale + ((size_t)p * c->nob + (size_t)ob0) * CB;
        float *mp = m + (size_t)p * m_position;

        for (int t = 0; t < nt;) {
            const int n = nt - t < nt_max ? nt - t : nt_max;
            const int16_t *vt = vp + (size_t)t * c->kpad;
            float *mt = mp + (size_t)t * m_stride;

            switch (count) {
            case 1: gemm_1(n, vt, c->kpad, up, c->u_block, c->pairs, scale, mt, m_stride); break;
            case 2: gemm_2(n, vt, c->kpad, up, c->u_block, c->pairs, scale, mt, m_stride); break;
            case 3: gemm_3(n, vt, c->kpad, up, c->u_block, c->pairs, scale, mt, m_stride); break;
            default: gemm_4(n, vt, c->kpad, up, c->u_block, c->pairs, scale, mt, m_stride); break;
            }
            t += n;
        }
    }
}

TILE_ATTR void store_pixels(const winograd_ctx *c, float *out, size_t base, int ob, int oy, int ox0,
                            const VEC values[4], const int cols)
{
    if (!c->u8_out) {
        for (int x = 0; x < cols; x++)
            VSTORE(out + base + (size_t)x * CB, values[x]);
        return;
    }

    /* The operations of yd_u8_quantize__avx512 and of the direct kernel's
     * quantizing epilogue, so the bytes are the same for the same float. */
    const int oc0 = ob * YD_QCB;
    const __m512 inverse = _mm512_set1_ps(c->inverse);
    const __m512i z = _mm512_set1_epi32(c->u8_zero);
    /* Lanes past out_c hold the zero point, as the quantizer leaves them. */
    const __mmask16 real = oc0 + YD_QCB <= c->s->out_c
                               ? 0xffff
                               : (__mmask16)((1u << (c->s->out_c - oc0)) - 1);
    uint8_t *at = c->u8_out + (((size_t)ob * c->hq + (size_t)(oy + c->u8_top)) * c->wq +
                               (size_t)(ox0 + c->u8_left)) * YD_QCB;

    /* A whole tile row at once: the saturating packs clamp as min and max do. */
    if (cols == 4 && real == 0xffff) {
        __m512i q[4];

        for (int x = 0; x < 4; x++)
            q[x] = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(values[x], inverse)), z);
        _mm512_storeu_si512((void *)at, pack_u8x4_avx512(q));
        return;
    }
    for (int x = 0; x < cols; x++) {
        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(values[x], inverse));

        q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, z), _mm512_setzero_si512()),
                             _mm512_set1_epi32(255));
        q = _mm512_mask_blend_epi32(real, z, q);
        _mm_store_si128((__m128i *)(at + (size_t)x * YD_QCB), _mm512_cvtepi32_epi8(q));
    }
}

/*
 * Quantizes the float output of tiles [t0, t0 + nt) and blocks [ob0, ob0 +
 * count) into every target that takes those blocks, with the operations of
 * store_pixels. Quantizing in store_pixels for any number of targets made
 * the kernel about 10% slower even with none, so several targets take
 * this pass over floats still in cache instead.
 */
static void finish_output(const winograd_ctx *c, const float *out, int ob0, int count, int t0,
                          int nt)
{
    const int out_h = c->s->out_h, out_w = c->s->out_w;

    for (int k = 0; k < c->ntargets; k++) {
        const u8_target *t = &c->targets[k];
        const int first = ob0 > t->first_block ? ob0 : t->first_block;
        const int end = ob0 + count < t->end_block ? ob0 + count : t->end_block;
        const __m512 inverse = _mm512_set1_ps(t->inverse);
        const __m512i z = _mm512_set1_epi32(t->zero);
        const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);

        for (int ob = first; ob < end; ob++) {
            const int oc0 = ob * YD_QCB;
            const __mmask16 real = oc0 + YD_QCB <= c->s->out_c
                                       ? 0xffff
                                       : (__mmask16)((1u << (c->s->out_c - oc0)) - 1);
            const float *plane = out + (size_t)ob * c->out_plane;
            uint8_t *block = t->out + (size_t)(t->out_block + ob - t->first_block) * t->hq * t->wq * YD_QCB;

            for (int i = 0; i < nt; i++) {
                const int tile = t0 + i;
                const int oy0 = (tile / c->tiles_x) * 4, ox0 = (tile % c->tiles_x) * 4;
                const int rows = out_h - oy0 < 4 ? out_h - oy0 : 4;
                const int cols = out_w - ox0 < 4 ? out_w - ox0 : 4;

                for (int y = oy0; y < oy0 + rows; y++) {
                    const float *src = plane + ((size_t)y * out_w + (size_t)ox0) * CB;
                    uint8_t *dst = block + ((size_t)(y + t->pad_top) * t->wq +
                                            (size_t)(ox0 + t->pad_left)) * YD_QCB;

                    for (int x = 0; x < cols; x++) {
                        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(VLOAD(src + (size_t)x * CB), inverse));

                        q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, z), lo), hi);
                        q = _mm512_mask_blend_epi32(real, z, q);
                        _mm_store_si128((__m128i *)(dst + (size_t)x * YD_QCB), _mm512_cvtepi32_epi8(q));
                    }
                }
            }
        }
    }
}

/* Sets every padding byte of target t, the part the tiles do not write, to its zero point. */
static void fill_borders(const winograd_ctx *c, const u8_target *t)
{
    const size_t row_bytes = (size_t)t->wq * YD_QCB;
    const int nblocks = t->end_block - t->first_block;

#pragma omp for schedule(static) nowait
    for (int item = 0; item < nblocks * t->hq; item++) {
        uint8_t *row = t->out + ((size_t)t->out_block * t->hq + (size_t)item) * row_bytes;
        const int y = item % t->hq - t->pad_top;

        if (y < 0 || y >= c->s->out_h) {
            memset(row, t->zero, row_bytes);
            continue;
        }
        memset(row, t->zero, (size_t)t->pad_left * YD_QCB);
        memset(row + (size_t)(t->pad_left + c->s->out_w) * YD_QCB, t->zero,
               (size_t)t->pad_right * YD_QCB);
    }
}

void yd_s8_winograd_nchwc16__avx512vnni(const yd_conv_shape *s, const yd_qconv *q,
                                        const uint8_t *in, const float *residual, float *out,
                                        const yd_qconv_u8_out *next, int nnext, float *scratch,
                                        size_t scratch_floats)
{
    const int nob = (s->out_c + CB - 1) / CB;
    u8_target targets[YD_QCONV_MAX_OUTPUTS];
    winograd_ctx c = {
        .s = s,
        .bias = q->bias,
        .u = q->winograd_u,
        .scale = q->winograd_scale,
        .pairs = (s->in_c + 1) / 2,
        .hp = s->in_h + s->pad_top + q->pad_bottom,
        .wp = s->in_w + s->pad_left + q->pad_right,
        .zero = q->input_zero,
        .targets = targets,
    };

    assert(q->winograd_u);
    assert(q->winograd_scale);
    assert(nnext >= 0);
    assert(nnext <= YD_QCONV_MAX_OUTPUTS);
    c.in_block = (size_t)c.hp * c.wp * YD_QCB;
    c.u_block = (size_t)c.pairs * 2 * CB;
    c.u_position = (size_t)nob * c.u_block;
    for (int k = 0; k < nnext; k++) {
        const yd_qconv_u8_out *n = &next[k];

        assert(n->nblocks == 0 || (n->first_block >= 0 && n->first_block + n->nblocks <= nob));
        targets[k] = u8_target_of(n, s, nob);
        fill_borders(&c, &targets[k]);
    }
    if (!out) {
        const u8_target *t = &targets[0];

        /* Quantized outputs other than a single whole one are read back from floats. */
        assert(nnext == 1);
        assert(t->first_block == 0);
        assert(t->out_block == 0);
        assert(t->end_block == nob);

        c.u8_out = t->out;
        c.u8_zero = t->zero;
        c.u8_top = t->pad_top;
        c.u8_left = t->pad_left;
        c.hq = t->hq;
        c.wq = t->wq;
        c.inverse = t->inverse;
    } else {
        c.ntargets = nnext;
    }
    run_batches(&c, in, residual, out, scratch, scratch_floats);
}
