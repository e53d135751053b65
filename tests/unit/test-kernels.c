/*
 * Every vector convolution kernel, direct and Winograd, against the scalar
 * reference on random shapes, including odd channel counts, tiny maps,
 * strides and residuals. Also the data-movement kernels against plain loops.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "kernels/kernels.h"
#include "testlib.h"
#include "util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float random_float(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static int random_int(int lo, int hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (int)((rng_state >> 33) % (uint64_t)(hi - lo + 1));
}

static float *random_blocked(int c, int h, int w, int cb)
{
    size_t n = yd_blocked_floats(c, h, w, cb);
    float *t = yd_aligned_alloc(n * sizeof(float));

    for (size_t i = 0; i < n; i++)
        t[i] = random_float();
    return t;
}

/* Compares the real channels of two blocked tensors; returns max |a - b|. */
static double max_diff(const float *a, const float *b, int c, int h, int w, int cb)
{
    double worst = 0;

    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h * w; i++) {
            size_t at = (size_t)(ch / cb) * h * w * cb + (size_t)i * cb + ch % cb;
            double d = fabs((double)a[at] - (double)b[at]);

            if (d > worst || d != d)
                worst = d != d ? INFINITY : d;
        }
    return worst;
}

/* Conv of one random shape on `table` vs the scalar reference. */
static int conv_case(const yd_kernel_table *table, yd_conv_shape *s, int with_residual)
{
    int cb = table->cb;
    size_t wn = (size_t)s->out_c * s->in_c * s->kernel_h * s->kernel_w;
    float *weight = malloc(wn * sizeof(float));
    float *bias = malloc((size_t)s->out_c * sizeof(float));
    float *packed = yd_aligned_alloc(yd_conv_packed_floats(s, cb) * sizeof(float));
    float *in = random_blocked(s->in_c, s->in_h, s->in_w, cb);
    float *res = with_residual ? random_blocked(s->out_c, s->out_h, s->out_w, cb) : NULL;
    size_t on = yd_blocked_floats(s->out_c, s->out_h, s->out_w, cb);
    float *want = yd_aligned_alloc(on * sizeof(float));
    float *got = yd_aligned_alloc(on * sizeof(float));
    double diff;
    int ok;

    for (size_t i = 0; i < wn; i++)
        weight[i] = random_float() * 0.5f;
    for (int i = 0; i < s->out_c; i++)
        bias[i] = random_float();
    yd_conv_pack(s, cb, weight, bias, packed);
    yd_f32_conv__scalar(s, cb, packed, in, res, want);
    table->conv(s, packed, in, res, got);
    diff = max_diff(want, got, s->out_c, s->out_h, s->out_w, cb);
    /* Sums of up to ~2000 products of magnitude < 1 in a different order,
     * and a polynomial exp in SiLU: 1e-4 absolute is loose but catches any
     * indexing mistake, which gives errors of order 1. */
    ok = diff <= 1e-4 * (1 + s->in_c * s->kernel_h * s->kernel_w / 64.0);
    if (!ok)
        fprintf(stderr, "  %s conv in %dx%dx%d out %dx%dx%d k%dx%d s%d p%d,%d silu %d res %d: max diff %g\n",
                table->name, s->in_c, s->in_h, s->in_w, s->out_c, s->out_h, s->out_w, s->kernel_h,
                s->kernel_w, s->stride_h, s->pad_top, s->pad_left, s->silu, with_residual, diff);
    free(weight);
    free(bias);
    free(packed);
    free(in);
    free(res);
    free(want);
    free(got);
    return ok;
}

/*
 * The same convolution with its input (in_c <= 4) in the compact
 * [h][w][4] layout: must match the reference on the blocked layout.
 */
static int compact_case(const yd_kernel_table *table, yd_conv_shape *s)
{
    int cb = table->cb;
    size_t wn = (size_t)s->out_c * s->in_c * s->kernel_h * s->kernel_w;
    float *weight = malloc(wn * sizeof(float));
    float *bias = malloc((size_t)s->out_c * sizeof(float));
    float *packed = yd_aligned_alloc(yd_conv_packed_floats(s, cb) * sizeof(float));
    float *in = random_blocked(s->in_c, s->in_h, s->in_w, cb);
    float *compact = yd_aligned_alloc((size_t)s->in_h * s->in_w * 4 * sizeof(float));
    size_t on = yd_blocked_floats(s->out_c, s->out_h, s->out_w, cb);
    float *want = yd_aligned_alloc(on * sizeof(float));
    float *got = yd_aligned_alloc(on * sizeof(float));
    double diff;
    int ok;

    for (size_t i = 0; i < wn; i++)
        weight[i] = random_float() * 0.5f;
    for (int i = 0; i < s->out_c; i++)
        bias[i] = random_float();
    for (size_t p = 0; p < (size_t)s->in_h * s->in_w; p++)
        for (int lane = 0; lane < 4; lane++)
            compact[p * 4 + lane] = lane < s->in_c ? in[p * cb + lane] : 0.0f;
    yd_conv_pack(s, cb, weight, bias, packed);
    s->in_pixel = 0;
    yd_f32_conv__scalar(s, cb, packed, in, NULL, want);
    s->in_pixel = 4;
    table->conv(s, packed, compact, NULL, got);
    s->in_pixel = 0;
    diff = max_diff(want, got, s->out_c, s->out_h, s->out_w, cb);
    ok = diff <= 1e-4 * (1 + s->in_c * s->kernel_h * s->kernel_w / 64.0);
    if (!ok)
        fprintf(stderr, "  %s compact conv in %dx%dx%d out %dx%dx%d s%d p%d: max diff %g\n",
                table->name, s->in_c, s->in_h, s->in_w, s->out_c, s->out_h, s->out_w,
                s->stride_h, s->pad_top, diff);
    free(weight);
    free(bias);
    free(packed);
    free(in);
    free(compact);
    free(want);
    free(got);
    return ok;
}

static void fill_shape(yd_conv_shape *s, int in_c, int h, int w, int out_c, int k, int stride, int pad,
                       int silu)
{
    s->in_c = in_c;
    s->in_h = h;
    s->in_w = w;
    s->out_c = out_c;
    s->kernel_h = s->kernel_w = k;
    s->stride_h = s->stride_w = stride;
    s->pad_top = s->pad_left = pad;
    s->out_h = (h + 2 * pad - k) / stride + 1;
    s->out_w = (w + 2 * pad - k) / stride + 1;
    s->silu = silu;
    s->in_pixel = 0;
    s->nowait = 0;
}

static void check_table(const char *name)
{
    const yd_kernel_table *table = yd_kernels_get(name);
    yd_conv_shape s;
    int failures = 0;

    if (!table) {
        /* Not an error: this CPU lacks the ISA. Say so, so it is visible. */
        printf("  (this CPU does not run %s kernels; checked the others)\n", name);
        return;
    }

    /* The shapes YOLOv8 uses, at small sizes. */
    fill_shape(&s, 3, 33, 35, 16, 3, 2, 1, 1);
    failures += !conv_case(table, &s, 0);
    /* The network input in the compact layout: 3 and 4 channels, odd sizes. */
    failures += !compact_case(table, &s);
    fill_shape(&s, 4, 17, 23, 40, 3, 2, 1, 1);
    failures += !compact_case(table, &s);
    fill_shape(&s, 3, 9, 14, 16, 3, 1, 1, 0);
    failures += !compact_case(table, &s);
    fill_shape(&s, 3, 33, 35, 16, 3, 2, 1, 1);
    fill_shape(&s, 32, 20, 20, 64, 3, 1, 1, 1);
    failures += !conv_case(table, &s, 1);
    fill_shape(&s, 64, 9, 9, 128, 1, 1, 0, 1);
    failures += !conv_case(table, &s, 0);
    fill_shape(&s, 64, 10, 10, 80, 1, 1, 0, 0);
    failures += !conv_case(table, &s, 0);
    fill_shape(&s, 16, 1, 1, 16, 3, 1, 1, 1);
    failures += !conv_case(table, &s, 1);

    /* Random shapes with odd channel counts and sizes. */
    for (int i = 0; i < 60; i++) {
        int k = random_int(0, 2) * 2 + 1;
        int stride = random_int(1, 2);
        int pad = random_int(0, k / 2);
        int h = random_int(1, 23), w = random_int(1, 41);

        if (h + 2 * pad < k || w + 2 * pad < k)
            continue;
        fill_shape(&s, random_int(1, 70), h, w, random_int(1, 90), k, stride, pad, random_int(0, 1));
        failures += !conv_case(table, &s, random_int(0, 1));
    }
    CHECK_INT_EQ(failures, 0);
}

static void conv_avx512_matches_scalar(void)
{
    check_table("avx512");
}

static void conv_avx2_matches_scalar(void)
{
    check_table("avx2");
}

/*
 * Max |a - b| over the padding lanes past c of the last block (0 when c is
 * a multiple of cb), where kernels must write what the reference writes.
 */
static double max_padding_diff(const float *a, const float *b, int c, int h, int w, int cb)
{
    double worst = 0;

    for (int ch = c; ch % cb != 0; ch++)
        for (int i = 0; i < h * w; i++) {
            size_t at = (size_t)(ch / cb) * h * w * cb + (size_t)i * cb + ch % cb;
            double d = fabs((double)a[at] - (double)b[at]);

            if (d > worst || d != d)
                worst = d != d ? INFINITY : d;
        }
    return worst;
}

/*
 * Winograd conv of one shape on `table` vs the scalar direct reference,
 * run by a team of `threads`. The output buffer has one guard block after
 * the output that must stay untouched: a conv writing into a concat slice
 * must not spill into the next slice.
 */
static int winograd_case(const yd_kernel_table *table, yd_conv_shape *s, int with_residual,
                         int threads)
{
    const int cb = table->cb;
    const float guard = 12345.0f;
    size_t wn = (size_t)s->out_c * s->in_c * 9;
    float *weight = malloc(wn * sizeof(float));
    float *bias = malloc((size_t)s->out_c * sizeof(float));
    float *packed = yd_aligned_alloc(yd_conv_packed_floats(s, cb) * sizeof(float));
    float *wpacked = yd_aligned_alloc(yd_winograd_packed_floats(s, cb) * sizeof(float));
    size_t scratch_floats = yd_winograd_scratch_floats(s, cb);
    float *scratch = yd_aligned_alloc((size_t)threads * scratch_floats * sizeof(float));
    float *in = random_blocked(s->in_c, s->in_h, s->in_w, cb);
    float *res = with_residual ? random_blocked(s->out_c, s->out_h, s->out_w, cb) : NULL;
    size_t on = yd_blocked_floats(s->out_c, s->out_h, s->out_w, cb);
    size_t guard_floats = (size_t)s->out_h * s->out_w * cb;
    float *want = yd_aligned_alloc(on * sizeof(float));
    float *got = yd_aligned_alloc((on + guard_floats) * sizeof(float));
    double diff, padding_diff, tolerance;
    size_t spilled = 0;
    int ok;

    for (size_t i = 0; i < wn; i++)
        weight[i] = random_float() * 0.5f;
    for (int i = 0; i < s->out_c; i++)
        bias[i] = random_float();
    for (size_t i = 0; i < on + guard_floats; i++)
        got[i] = guard;
    yd_conv_pack(s, cb, weight, bias, packed);
    yd_winograd_pack(s, cb, weight, bias, wpacked);
    yd_f32_conv__scalar(s, cb, packed, in, res, want);
#pragma omp parallel num_threads(threads)
    table->winograd(s, wpacked, in, res, got, scratch, scratch_floats);

    diff = max_diff(want, got, s->out_c, s->out_h, s->out_w, cb);
    padding_diff = max_padding_diff(want, got, s->out_c, s->out_h, s->out_w, cb);
    for (size_t i = on; i < on + guard_floats; i++)
        spilled += got[i] != guard;
    /*
     * Winograd rounds differently from a direct sum. B^T has entries up to
     * 5 and A^T up to 8, so transformed inputs grow up to 100x and each
     * output sums 36 weighted products per input channel that mostly
     * cancel. On these shapes the error, divided by the same length factor
     * as conv_case's bound, stays below 2e-5. A bound of 2e-4 leaves a
     * 10x margin and still catches indexing or transform mistakes, which
     * give errors of 0.1 and more.
     */
    tolerance = 2e-4 * (1 + s->in_c * 9 / 64.0);
    ok = diff <= tolerance && padding_diff <= tolerance && spilled == 0;
    if (!ok)
        fprintf(stderr, "  %s winograd in %dx%dx%d out %dx%dx%d p%d,%d silu %d res %d threads %d: "
                "max diff %g, padding lanes %g, %zu floats written past the output\n",
                table->name, s->in_c, s->in_h, s->in_w, s->out_c, s->out_h, s->out_w, s->pad_top,
                s->pad_left, s->silu, with_residual, threads, diff, padding_diff, spilled);
    free(weight);
    free(bias);
    free(packed);
    free(wpacked);
    free(scratch);
    free(in);
    free(res);
    free(want);
    free(got);
    return ok;
}

static void check_winograd_table(const char *name)
{
    const yd_kernel_table *table = yd_kernels_get(name);
    yd_conv_shape s;
    int failures = 0, cases = 0;

    if (!table) {
        printf("  (this CPU does not run %s kernels; checked the others)\n", name);
        return;
    }
    CHECK(table->winograd != NULL);
    if (!table->winograd)
        return;

    /* YOLOv8 bottleneck shapes at small sizes, one and two threads. */
    fill_shape(&s, 16, 40, 40, 16, 3, 1, 1, 1);
    failures += !winograd_case(table, &s, 1, 1);
    fill_shape(&s, 64, 20, 20, 64, 3, 1, 1, 1);
    failures += !winograd_case(table, &s, 0, 2);
    /* Several batches and a 3 + 2 block split of the output channels. */
    fill_shape(&s, 80, 44, 36, 80, 3, 1, 1, 1);
    failures += !winograd_case(table, &s, 1, 2);
    fill_shape(&s, 256, 6, 6, 72, 3, 1, 1, 0);
    failures += !winograd_case(table, &s, 1, 2);
    /* A 1x1 map: every tile is mostly padding. */
    fill_shape(&s, 16, 1, 1, 16, 3, 1, 1, 1);
    failures += !winograd_case(table, &s, 1, 1);
    cases += 5;

    /* Random shapes: H, W not multiples of 4, channels not multiples of cb. */
    for (int i = 0; i < 60; i++) {
        int pad = random_int(0, 2);
        int h = random_int(1, 27), w = random_int(1, 31);

        if (h + 2 * pad < 3 || w + 2 * pad < 3)
            continue;
        fill_shape(&s, random_int(1, 70), h, w, random_int(1, 90), 3, 1, pad, random_int(0, 1));
        failures += !winograd_case(table, &s, random_int(0, 1), random_int(1, 2));
        cases++;
    }
    printf("  %s: %d Winograd shapes checked\n", name, cases);
    CHECK_INT_EQ(failures, 0);
}

static void winograd_avx512_matches_scalar(void)
{
    check_winograd_table("avx512");
}

static void winograd_avx2_matches_scalar(void)
{
    check_winograd_table("avx2");
}

/*
 * Which layers take Winograd: 3x3 stride 1 only, with at least cb / 2
 * input channels, and never on the scalar table.
 */
static void winograd_choice_by_shape(void)
{
    yd_conv_shape s;

    fill_shape(&s, 64, 40, 40, 64, 3, 1, 1, 1);
    CHECK(yd_winograd_supported(&s));
    CHECK(yd_winograd_chosen(&s, 16));
    CHECK(yd_winograd_chosen(&s, 8));
    fill_shape(&s, 8, 40, 40, 4, 3, 1, 1, 1);
    CHECK(yd_winograd_chosen(&s, 16));
    fill_shape(&s, 4, 40, 40, 64, 3, 1, 1, 1);
    CHECK(yd_winograd_supported(&s));
    CHECK(!yd_winograd_chosen(&s, 16));
    CHECK(yd_winograd_chosen(&s, 8));
    fill_shape(&s, 64, 40, 40, 64, 3, 2, 1, 1);
    CHECK(!yd_winograd_supported(&s));
    CHECK(!yd_winograd_chosen(&s, 16));
    fill_shape(&s, 64, 40, 40, 64, 1, 1, 0, 1);
    CHECK(!yd_winograd_supported(&s));
    fill_shape(&s, 64, 40, 40, 64, 5, 1, 2, 1);
    CHECK(!yd_winograd_supported(&s));
    CHECK(yd_kernels_get("scalar")->winograd == NULL);
}

/* Int8 Winograd takes 3x3 stride-1 layers with enough channels and tiles. */
static void qwinograd_choice_by_shape(void)
{
    yd_conv_shape s;

    fill_shape(&s, 64, 80, 80, 64, 3, 1, 1, 1);
    CHECK(yd_qwinograd_chosen(&s));
    fill_shape(&s, 32, 40, 40, 80, 3, 1, 1, 1);
    CHECK(yd_qwinograd_chosen(&s));
    fill_shape(&s, 16, 160, 160, 16, 3, 1, 1, 1);
    CHECK(!yd_qwinograd_chosen(&s));
    fill_shape(&s, 128, 20, 20, 128, 3, 1, 1, 1);
    CHECK(!yd_qwinograd_chosen(&s));
    fill_shape(&s, 64, 80, 80, 64, 3, 2, 1, 1);
    CHECK(!yd_qwinograd_chosen(&s));
    fill_shape(&s, 64, 80, 80, 64, 1, 1, 0, 1);
    CHECK(!yd_qwinograd_chosen(&s));
    CHECK(yd_kernels_get("scalar")->qwinograd == NULL);
    if (yd_kernels_get("avx2"))
        CHECK(yd_kernels_get("avx2")->qwinograd == NULL);
}

static void copy_channels_unaligned(void)
{
    int cb = 8, h = 3, w = 5, c = 19;
    float *src = random_blocked(c, h, w, cb);
    float *dst = random_blocked(40, h, w, cb);

    yd_f32_copy_channels(src, 3, dst, 13, 11, h, w, cb);
    for (int ch = 0; ch < 11; ch++)
        for (int i = 0; i < h * w; i++) {
            float a = src[(size_t)((ch + 3) / cb) * h * w * cb + (size_t)i * cb + (ch + 3) % cb];
            float b = dst[(size_t)((ch + 13) / cb) * h * w * cb + (size_t)i * cb + (ch + 13) % cb];

            if (a != b) {
                CHECK(a == b);
                goto done;
            }
        }
done:
    free(src);
    free(dst);
}

static void pack_unpack_round_trip(void)
{
    int c = 21, h = 4, w = 7, cb = 16;
    float *planar = malloc((size_t)c * h * w * sizeof(float));
    float *blocked = yd_aligned_alloc(yd_blocked_floats(c, h, w, cb) * sizeof(float));
    float *back = malloc((size_t)c * h * w * sizeof(float));

    for (int i = 0; i < c * h * w; i++)
        planar[i] = random_float();
    yd_f32_pack_planar(planar, c, h, w, cb, blocked);
    yd_f32_unpack_planar(blocked, c, h, w, cb, back);
    CHECK(memcmp(planar, back, (size_t)c * h * w * sizeof(float)) == 0);
    /* Padding lanes of the last block are zero. */
    CHECK(blocked[(size_t)1 * h * w * cb + 5 + 1] == 0.0f);
    free(planar);
    free(blocked);
    free(back);
}

/*
 * Quantized max pooling and upsampling against the float layers followed
 * by the quantizer, in a slot of 4 blocks with padding 1. The pooling
 * reads blocks 0 and 1 and writes 2 and 3, and the upsampling writes 1
 * and 2. Blocks the layer does not write must stay unwritten.
 */
static void u8_pool_upsample_match_float(void)
{
    const int c = 32, h = 7, w = 9, cb = 16, nblocks = 2;
    const float scale = 3.0f / 255;
    float *in = random_blocked(c, h, w, cb);
    float *pooled = yd_aligned_alloc(yd_blocked_floats(c, h, w, cb) * sizeof(float));
    float *upsampled = yd_aligned_alloc(yd_blocked_floats(c, 2 * h, 2 * w, cb) * sizeof(float));
    yd_conv_shape small = {.in_c = c, .in_h = h, .in_w = w, .pad_top = 1, .pad_left = 1};
    yd_conv_shape large = {.in_c = c, .in_h = 2 * h, .in_w = 2 * w, .pad_top = 1, .pad_left = 1};
    size_t small_bytes = yd_qconv_input_bytes(&small, 1, 1);
    size_t large_bytes = yd_qconv_input_bytes(&large, 1, 1);
    uint8_t *want = yd_aligned_alloc(large_bytes);
    uint8_t *slot = yd_aligned_alloc(4 * large_bytes);
    yd_u8_layout layout = {.data = slot, .zero = 100, .hq = h + 2, .wq = w + 2,
                           .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1};

    memset(slot, 0xa5, 4 * large_bytes);
    yd_u8_quantize__scalar(in, c, h, w, cb, scale, layout.zero, 1, 1, 1, 1, slot);
    yd_u8_maxpool(&layout, 0, 2, nblocks, h, w, 5, 2, 1);
    yd_f32_maxpool(in, c, h, w, 5, 1, 2, pooled, h, w, cb);
    yd_u8_quantize__scalar(pooled, c, h, w, cb, scale, layout.zero, 1, 1, 1, 1, want);
    CHECK(memcmp(want, slot + small_bytes, small_bytes) == 0);
    CHECK(slot[2 * small_bytes] == 0xa5);

    /* Upsampling reads floats whose padding lanes are zero, as layers keep them. */
    for (size_t i = 0; i < yd_blocked_floats(c, h, w, cb); i++)
        in[i] = in[i] * 4.0f;
    layout.hq = 2 * h + 2;
    layout.wq = 2 * w + 2;
    memset(slot, 0xa5, 4 * large_bytes);
    yd_u8_upsample_quantize(in, nblocks, h, w, 2, scale, &layout, 1);
    yd_f32_upsample_nearest(in, c, h, w, 2, upsampled, cb);
    yd_u8_quantize__scalar(upsampled, c, 2 * h, 2 * w, cb, scale, layout.zero, 1, 1, 1, 1, want);
    CHECK(memcmp(want, slot + large_bytes / nblocks, large_bytes) == 0);
    CHECK(slot[0] == 0xa5);
    CHECK(slot[3 * large_bytes / nblocks] == 0xa5);
    free(in);
    free(pooled);
    free(upsampled);
    free(want);
    free(slot);
}

/* The AVX-512 unpack against the generic one, with a partial block and a plane that is not a multiple of 16. */
static void unpack_avx512_matches_generic(void)
{
    static const int shapes[][3] = {{64, 8, 10}, {21, 5, 7}, {80, 4, 4}};

    if (!yd_kernels_get("avx512")) {
        printf("  (this CPU does not run the avx512 kernels)\n");
        return;
    }
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int c = shapes[k][0], h = shapes[k][1], w = shapes[k][2];
        float *blocked = random_blocked(c, h, w, 16);
        float *want = malloc((size_t)c * h * w * sizeof(float));
        float *got = malloc((size_t)c * h * w * sizeof(float));

        yd_f32_unpack_planar(blocked, c, h, w, 16, want);
        yd_f32_unpack_planar_nchwc16__avx512(blocked, c, h, w, got);
        CHECK(memcmp(want, got, (size_t)c * h * w * sizeof(float)) == 0);
        free(blocked);
        free(want);
        free(got);
    }
}

static void maxpool_matches_loops(void)
{
    int c = 10, h = 7, w = 6, cb = 8, k = 5, pad = 2;
    float *in = random_blocked(c, h, w, cb);
    float *out = yd_aligned_alloc(yd_blocked_floats(c, h, w, cb) * sizeof(float));
    int bad = 0;

    yd_f32_maxpool(in, c, h, w, k, 1, pad, out, h, w, cb);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float m = -INFINITY;

                for (int dy = -pad; dy <= pad; dy++)
                    for (int dx = -pad; dx <= pad; dx++) {
                        int yy = y + dy, xx = x + dx;

                        if (yy >= 0 && yy < h && xx >= 0 && xx < w) {
                            float v = in[(size_t)(ch / cb) * h * w * cb + ((size_t)yy * w + xx) * cb + ch % cb];
                            m = v > m ? v : m;
                        }
                    }
                bad += out[(size_t)(ch / cb) * h * w * cb + ((size_t)y * w + x) * cb + ch % cb] != m;
            }
    CHECK_INT_EQ(bad, 0);
    free(in);
    free(out);
}

/* The first 4 of every 16 bytes: the compact layout of a 4-channel input. */
static void compact_lanes(const uint8_t *in, size_t pixels, uint8_t *out)
{
    for (size_t i = 0; i < pixels; i++)
        memcpy(out + i * 4, in + i * YD_QCB, 4);
}

/*
 * The quantizing variant of table's int8 kernel (if any) against its float
 * output quantized by table->quantize: the bytes, border included, must be
 * identical, since the executor swaps one for the other. The output buffer
 * starts as garbage so an unwritten byte shows. Inputs of up to 4 channels
 * also run from the compact layout.
 */
static int qconv_u8_case(const yd_kernel_table *table, const yd_conv_shape *s, const yd_qconv *q,
                         const uint8_t *qin, const float *res, const float *got)
{
    yd_qconv_u8_fn fn = yd_qconv_u8_of(table);
    int pad = random_int(0, 1);
    yd_qconv_u8_out next = {
        .scale = 0.5f / 255 + 8.0f / 255 * (random_float() + 1.0f),
        .zero = random_int(0, 255),
        .pad_top = pad,
        .pad_left = pad,
        .pad_bottom = random_int(0, pad),
        .pad_right = random_int(0, pad),
    };
    yd_conv_shape next_shape = {.in_c = s->out_c, .in_h = s->out_h, .in_w = s->out_w,
                                .pad_top = pad, .pad_left = pad};
    size_t n = yd_qconv_input_bytes(&next_shape, next.pad_bottom, next.pad_right);
    uint8_t *want = yd_aligned_alloc(n);
    int ok;

    if (!fn)
        return 1;
    next.out = yd_aligned_alloc(n);
    memset(next.out, 0xa5, n);
    table->quantize(got, s->out_c, s->out_h, s->out_w, table->cb, next.scale, next.zero, next.pad_top,
                    next.pad_left, next.pad_bottom, next.pad_right, want);
    fn(s, q, qin, YD_QCB, res, &next);
    ok = memcmp(want, next.out, n) == 0;
    if (ok && s->in_c <= 4) {
        size_t pixels = yd_qconv_input_bytes(s, q->pad_bottom, q->pad_right) / YD_QCB;
        uint8_t *compact = malloc(pixels * 4);

        compact_lanes(qin, pixels, compact);
        memset(next.out, 0xa5, n);
        fn(s, q, compact, 4, res, &next);
        ok = memcmp(want, next.out, n) == 0;
        free(compact);
    }
    if (!ok)
        fprintf(stderr, "  %s quantized int8 conv output differs (in_c %d, out %dx%dx%d, pad %d)\n",
                table->name, s->in_c, s->out_c, s->out_h, s->out_w, pad);
    free(want);
    free(next.out);
    return ok;
}

/*
 * Several quantized outputs beside the float output, from the direct
 * kernel's multi variant (scratch NULL) or the int8 Winograd kernel. One
 * target takes every block. Another takes blocks [1, nob), or all when nob
 * is 1, and places them from block 1 of a buffer one block larger, as
 * producers of a concatenation do. The bytes must equal the table's
 * quantizer on `got`, the float output of the same layer. Block 0 of the
 * second buffer must stay unwritten, and the floats must equal `got`. The
 * direct kernel runs again writing floats for blocks [1, nob) only.
 */
static int multi_output_case(const yd_kernel_table *table, const yd_conv_shape *s, const yd_qconv *q,
                             const uint8_t *qin, const float *res, const float *got, float *scratch,
                             size_t scratch_floats, int threads)
{
    const int nob = (s->out_c + YD_QCB - 1) / YD_QCB;
    const int first = nob > 1 ? 1 : 0;
    size_t on = yd_blocked_floats(s->out_c, s->out_h, s->out_w, table->cb);
    yd_qconv_u8_out next[2] = {
        {.scale = 0.5f / 255 + 8.0f / 255 * (random_float() + 1.0f), .zero = random_int(0, 255),
         .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1},
    };
    yd_conv_shape next_shape = {.in_c = s->out_c, .in_h = s->out_h, .in_w = s->out_w,
                                .pad_top = 1, .pad_left = 1};
    size_t nn = yd_qconv_input_bytes(&next_shape, 1, 1), block = nn / (size_t)nob;
    uint8_t *want = yd_aligned_alloc(nn);
    float *floats = yd_aligned_alloc(on * sizeof(float));
    int ok = 1;

    next[1] = next[0];
    next[1].zero = random_int(0, 255);
    next[1].first_block = first;
    next[1].nblocks = nob - first;
    next[1].out_block = 1;
    next[0].out = yd_aligned_alloc(nn);
    next[1].out = yd_aligned_alloc(nn + block);
    memset(next[0].out, 0xa5, nn);
    memset(next[1].out, 0xa5, nn + block);
    if (scratch) {
#pragma omp parallel num_threads(threads)
        table->qwinograd(s, q, qin, res, floats, next, 2, scratch, scratch_floats);
    } else {
        yd_qconv_multi_of(table)(s, q, qin, YD_QCB, res, floats, 0, 0, next, 2);
    }

    ok &= memcmp(floats, got, on * sizeof(float)) == 0;
    table->quantize(got, s->out_c, s->out_h, s->out_w, table->cb, next[0].scale, next[0].zero, 1, 1, 1,
                    1, want);
    ok &= memcmp(want, next[0].out, nn) == 0;
    table->quantize(got, s->out_c, s->out_h, s->out_w, table->cb, next[1].scale, next[1].zero, 1, 1, 1,
                    1, want);
    ok &= memcmp(want + (size_t)first * block, next[1].out + block, (size_t)(nob - first) * block) == 0;
    for (size_t i = 0; i < block; i++)
        ok &= next[1].out[i] == 0xa5;

    /* Floats for blocks [first, nob) only: those equal `got`, the others stay unwritten. */
    if (!scratch) {
        const size_t block_floats = on / (size_t)nob;

        memset(floats, 0xa5, on * sizeof(float));
        yd_qconv_multi_of(table)(s, q, qin, YD_QCB, res, floats, first, nob - first, next, 2);
        ok &= memcmp(floats + (size_t)first * block_floats, got + (size_t)first * block_floats,
                     (size_t)(nob - first) * block_floats * sizeof(float)) == 0;
        for (size_t i = 0; i < (size_t)first * block_floats; i++) {
            uint32_t bits;

            memcpy(&bits, &floats[i], sizeof bits);
            ok &= bits == 0xa5a5a5a5u;
        }
    }
    if (!ok)
        fprintf(stderr, "  %s int8 %s with several outputs differs (in_c %d, out %dx%dx%d)\n",
                table->name, scratch ? "Winograd" : "conv", s->in_c, s->out_c, s->out_h, s->out_w);
    free(want);
    free(floats);
    free(next[0].out);
    free(next[1].out);
    return ok;
}

/*
 * The planar variant of table's int8 kernel (if any) against its blocked
 * float output `got` unpacked: the floats must be identical, and nothing
 * past the c x h x w planes may be written.
 */
static int planar_output_case(const yd_kernel_table *table, const yd_conv_shape *s, const yd_qconv *q,
                              const uint8_t *qin, const float *got)
{
    yd_qconv_planar_fn fn = yd_qconv_planar_of(table);
    const size_t n = (size_t)s->out_c * s->out_h * s->out_w, guard = 64;
    float *want = malloc(n * sizeof(float));
    float *planar = malloc((n + guard) * sizeof(float));
    int ok = 1;

    if (!fn) {
        free(want);
        free(planar);
        return 1;
    }
    yd_f32_unpack_planar(got, s->out_c, s->out_h, s->out_w, table->cb, want);
    memset(planar, 0xa5, (n + guard) * sizeof(float));
    fn(s, q, qin, YD_QCB, planar);
    if (memcmp(want, planar, n * sizeof(float)) != 0) {
        ok = 0;
        fprintf(stderr, "  %s int8 conv planar output differs (in_c %d, out %dx%dx%d)\n", table->name,
                s->in_c, s->out_c, s->out_h, s->out_w);
    }
    for (size_t i = n; i < n + guard; i++) {
        uint32_t bits;

        memcpy(&bits, &planar[i], sizeof bits);
        if (bits != 0xa5a5a5a5u) {
            ok = 0;
            fprintf(stderr, "  %s int8 conv planar output wrote past its planes (out %dx%dx%d)\n",
                    table->name, s->out_c, s->out_h, s->out_w);
            break;
        }
    }
    free(want);
    free(planar);
    return ok;
}

/* Int8 conv of one random shape: VNNI kernel and quantizer vs reference. */
static int qconv_case(const yd_kernel_table *table, yd_conv_shape *s, int with_residual)
{
    const int cb = table->cb;
    int pad_bottom = s->pad_top, pad_right = s->pad_left;
    size_t wn = (size_t)s->out_c * s->in_c * s->kernel_h * s->kernel_w;
    int8_t *qweight = malloc(wn);
    float *wscale = malloc((size_t)s->out_c * sizeof(float));
    float *bias = malloc((size_t)s->out_c * sizeof(float));
    float *in = random_blocked(s->in_c, s->in_h, s->in_w, cb);
    float *res = with_residual ? random_blocked(s->out_c, s->out_h, s->out_w, cb) : NULL;
    size_t qn = yd_qconv_input_bytes(s, pad_bottom, pad_right);
    uint8_t *qin_ref = yd_aligned_alloc(qn), *qin = yd_aligned_alloc(qn);
    size_t on = yd_blocked_floats(s->out_c, s->out_h, s->out_w, cb);
    float *want = yd_aligned_alloc(on * sizeof(float));
    float *got = yd_aligned_alloc(on * sizeof(float));
    yd_qconv q;
    double diff;
    int ok;

    for (size_t i = 0; i < wn; i++)
        qweight[i] = (int8_t)random_int(-127, 127);
    for (int i = 0; i < s->out_c; i++) {
        wscale[i] = 0.001f + 0.01f * (random_float() + 1.0f);
        bias[i] = random_float();
    }
    CHECK_OK(yd_qconv_pack(s, qweight, wscale, bias, 2.0f / 255, 128, pad_bottom, pad_right, &q));
    yd_u8_quantize__scalar(in, s->in_c, s->in_h, s->in_w, cb, q.input_scale, q.input_zero, s->pad_top,
                           s->pad_left, pad_bottom, pad_right, qin_ref);
    table->quantize(in, s->in_c, s->in_h, s->in_w, cb, q.input_scale, q.input_zero, s->pad_top,
                    s->pad_left, pad_bottom, pad_right, qin);
    ok = memcmp(qin_ref, qin, qn) == 0;
    if (!ok)
        fprintf(stderr, "  %s quantizer differs from the reference\n", table->name);
    yd_s8_conv__scalar(s, &q, qin_ref, res, want, cb);
    table->qconv(s, &q, qin_ref, res, got, cb);
    diff = max_diff(want, got, s->out_c, s->out_h, s->out_w, cb);
    if (diff > 1e-4) {
        ok = 0;
        fprintf(stderr, "  %s int8 conv in %dx%dx%d out %dx%dx%d k%d s%d p%d: max diff %g\n", table->name,
                s->in_c, s->in_h, s->in_w, s->out_c, s->out_h, s->out_w, s->kernel_h, s->stride_h,
                s->pad_top, diff);
    }
    ok &= qconv_u8_case(table, s, &q, qin_ref, res, got);
    if (yd_qconv_multi_of(table))
        ok &= multi_output_case(table, s, &q, qin_ref, res, got, NULL, 0, 1);
    if (!with_residual)
        ok &= planar_output_case(table, s, &q, qin_ref, got);
    yd_qconv_free(&q);
    free(qweight);
    free(wscale);
    free(bias);
    free(in);
    free(res);
    free(qin_ref);
    free(qin);
    free(want);
    free(got);
    return ok;
}

static void check_qconv_table(const char *name)
{
    const yd_kernel_table *table = yd_kernels_get(name);
    yd_conv_shape s;
    int failures = 0;

    if (!table || table->qconv == yd_s8_conv__scalar) {
        printf("  (this CPU does not run the %s int8 kernel)\n", name);
        return;
    }
    fill_shape(&s, 3, 33, 35, 16, 3, 2, 1, 1);
    failures += !qconv_case(table, &s, 0);
    fill_shape(&s, 32, 20, 20, 64, 3, 1, 1, 1);
    failures += !qconv_case(table, &s, 1);
    fill_shape(&s, 64, 9, 9, 80, 1, 1, 0, 0);
    failures += !qconv_case(table, &s, 0);
    /* Rows wider than the planar output's 128-pixel segments. */
    fill_shape(&s, 20, 3, 300, 20, 1, 1, 0, 0);
    failures += !qconv_case(table, &s, 0);
    for (int i = 0; i < 40; i++) {
        int k = random_int(0, 1) * 2 + 1;
        int stride = random_int(1, 2);
        int pad = random_int(0, k / 2);
        int h = random_int(1, 19), w = random_int(1, 37);

        if (h + 2 * pad < k || w + 2 * pad < k)
            continue;
        fill_shape(&s, random_int(1, 70), h, w, random_int(1, 90), k, stride, pad, random_int(0, 1));
        failures += !qconv_case(table, &s, random_int(0, 1));
    }
    CHECK_INT_EQ(failures, 0);
}

/* Quantizing an RGB8 or planar image directly gives the bytes of packing then quantizing it. */
static void image_quantizers_match_pack_then_quantize(void)
{
    static const int cbs[] = {8, 16};
    int failures = 0;

    for (int round = 0; round < 12; round++) {
        int w = random_int(1, 40), h = random_int(1, 30), pad = random_int(0, 1);
        int pad_bottom = random_int(0, pad), pad_right = random_int(0, pad);
        int c = round % 3 == 2 ? random_int(1, 40) : 3, cb = cbs[round % 2];
        float scale = 1.0f / 255 + 2.0f / 255 * (random_float() + 1.0f);
        int zero = random_int(0, 255);
        yd_conv_shape s = {.in_c = c, .in_h = h, .in_w = w, .pad_top = pad, .pad_left = pad};
        size_t n = yd_qconv_input_bytes(&s, pad_bottom, pad_right);
        uint8_t *rgb = malloc((size_t)w * h * 3);
        float *planar = malloc((size_t)c * h * w * sizeof(float));
        float *blocked = yd_aligned_alloc(yd_blocked_floats(c, h, w, cb) * sizeof(float));
        uint8_t *want = yd_aligned_alloc(n), *got = yd_aligned_alloc(n);
        uint8_t *compact = malloc(n / YD_QCB * 4);

        for (int i = 0; i < w * h * 3; i++)
            rgb[i] = (uint8_t)random_int(0, 255);
        for (int i = 0; i < c * h * w; i++)
            planar[i] = 1.5f * random_float();
        if (c == 3) {
            yd_f32_pack_rgb8(rgb, w, h, cb, blocked);
            yd_u8_quantize__scalar(blocked, 3, h, w, cb, scale, zero, pad, pad, pad_bottom, pad_right, want);
            memset(got, 0xa5, n);
            yd_u8_quantize_rgb8(rgb, w, h, YD_QCB, scale, zero, pad, pad, pad_bottom, pad_right, got);
            failures += memcmp(want, got, n) != 0;
            compact_lanes(want, n / YD_QCB, compact);
            memset(got, 0xa5, n);
            yd_u8_quantize_rgb8(rgb, w, h, 4, scale, zero, pad, pad, pad_bottom, pad_right, got);
            failures += memcmp(compact, got, n / YD_QCB * 4) != 0;
        }
        yd_f32_pack_planar(planar, c, h, w, cb, blocked);
        yd_u8_quantize__scalar(blocked, c, h, w, cb, scale, zero, pad, pad, pad_bottom, pad_right, want);
        memset(got, 0xa5, n);
        yd_u8_quantize_planar(planar, c, h, w, YD_QCB, scale, zero, pad, pad, pad_bottom, pad_right, got);
        failures += memcmp(want, got, n) != 0;
        if (c <= 4) {
            compact_lanes(want, n / YD_QCB, compact);
            memset(got, 0xa5, n);
            yd_u8_quantize_planar(planar, c, h, w, 4, scale, zero, pad, pad, pad_bottom, pad_right, got);
            failures += memcmp(compact, got, n / YD_QCB * 4) != 0;
        }
        free(rgb);
        free(planar);
        free(blocked);
        free(want);
        free(got);
        free(compact);
    }
    CHECK_INT_EQ(failures, 0);
}

/*
 * Int8 Winograd of one shape (float output, then the fused uint8 output)
 * vs the scalar direct int8 reference, run by a team of `threads`, from
 * the padded uint8 input `fixed_in` (random when NULL) with zero point
 * `zero`. Returns the worst error in units of the direct kernel's
 * accumulator (input_scale * weight_scale of the channel), and sets *peak
 * to the largest |output| in the same units. Returns a negative number
 * when something else is wrong: a float written past the output, a
 * padding lane that differs, or fused bytes that differ from the float
 * output quantized by the table's quantizer.
 */
static double qwinograd_case(const yd_kernel_table *table, yd_conv_shape *s, int with_residual,
                             int threads, int zero, const int8_t *fixed_weight, const uint8_t *fixed_in,
                             double *peak)
{
    const int cb = table->cb;
    const float guard = 12345.0f;
    int pad_bottom = s->pad_top, pad_right = s->pad_left;
    size_t wn = (size_t)s->out_c * s->in_c * 9;
    int8_t *qweight = malloc(wn);
    float *wscale = malloc((size_t)s->out_c * sizeof(float));
    float *bias = malloc((size_t)s->out_c * sizeof(float));
    float *res = with_residual ? random_blocked(s->out_c, s->out_h, s->out_w, cb) : NULL;
    size_t qn = yd_qconv_input_bytes(s, pad_bottom, pad_right);
    uint8_t *qin = yd_aligned_alloc(qn);
    size_t on = yd_blocked_floats(s->out_c, s->out_h, s->out_w, cb);
    size_t guard_floats = (size_t)s->out_h * s->out_w * cb;
    float *want = yd_aligned_alloc(on * sizeof(float));
    float *got = yd_aligned_alloc((on + guard_floats) * sizeof(float));
    size_t scratch_floats = yd_winograd_scratch_floats(s, cb);
    float *scratch = yd_aligned_alloc((size_t)threads * scratch_floats * sizeof(float));
    int pad = random_int(0, 1);
    yd_qconv_u8_out next = {
        .scale = 0.5f / 255 + 8.0f / 255 * (random_float() + 1.0f),
        .zero = random_int(0, 255),
        .pad_top = pad,
        .pad_left = pad,
        .pad_bottom = random_int(0, pad),
        .pad_right = random_int(0, pad),
    };
    yd_conv_shape next_shape = {.in_c = s->out_c, .in_h = s->out_h, .in_w = s->out_w,
                                .pad_top = pad, .pad_left = pad};
    size_t nn = yd_qconv_input_bytes(&next_shape, next.pad_bottom, next.pad_right);
    uint8_t *want_bytes = yd_aligned_alloc(nn);
    yd_qconv q;
    double worst = 0;
    size_t spilled = 0, bad_padding = 0;

    *peak = 0;

    for (size_t i = 0; i < wn; i++)
        qweight[i] = fixed_weight ? fixed_weight[i] : (int8_t)random_int(-127, 127);
    for (int i = 0; i < s->out_c; i++) {
        wscale[i] = 0.001f + 0.01f * (random_float() + 1.0f);
        bias[i] = random_float();
    }
    CHECK_OK(yd_qconv_pack(s, qweight, wscale, bias, 2.0f / 255, zero, pad_bottom, pad_right, &q));
    CHECK_OK(yd_qconv_pack_winograd(s, qweight, wscale, &q));
    if (fixed_in) {
        memcpy(qin, fixed_in, qn);
    } else {
        float *in = random_blocked(s->in_c, s->in_h, s->in_w, cb);

        /* Inputs in [-1, 1) against a range of [-zero, 255 - zero] * 2/255:
         * some values clamp at 0 or 255, the extremes of V. */
        yd_u8_quantize__scalar(in, s->in_c, s->in_h, s->in_w, cb, q.input_scale, q.input_zero,
                               s->pad_top, s->pad_left, pad_bottom, pad_right, qin);
        free(in);
    }
    for (size_t i = 0; i < on + guard_floats; i++)
        got[i] = guard;
    yd_s8_conv__scalar(s, &q, qin, res, want, cb);
#pragma omp parallel num_threads(threads)
    table->qwinograd(s, &q, qin, res, got, NULL, 0, scratch, scratch_floats);

    for (int oc = 0; oc < s->out_c; oc++)
        for (int i = 0; i < s->out_h * s->out_w; i++) {
            size_t at = (size_t)(oc / cb) * s->out_h * s->out_w * cb + (size_t)i * cb + oc % cb;
            double d = fabs((double)want[at] - (double)got[at]) / q.scale[oc];

            if (fabs(want[at]) / q.scale[oc] > *peak)
                *peak = fabs(want[at]) / q.scale[oc];
            if (d != d)
                d = INFINITY;
            if (d > worst)
                worst = d;
        }
    for (size_t i = on; i < on + guard_floats; i++)
        spilled += got[i] != guard;
    /* The scalar reference leaves lanes past out_c unwritten; the direct
     * VNNI kernel writes 0 plus the residual there, and so must this one. */
    for (int oc = s->out_c; oc % cb != 0; oc++)
        for (int i = 0; i < s->out_h * s->out_w; i++) {
            size_t at = (size_t)(oc / cb) * s->out_h * s->out_w * cb + (size_t)i * cb + oc % cb;

            bad_padding += got[at] != (res ? res[at] : 0.0f);
        }
    if (spilled || bad_padding) {
        fprintf(stderr, "  %s int8 Winograd wrote %zu floats past the output, %zu wrong padding lanes\n",
                table->name, spilled, bad_padding);
        worst = -1;
    }

    next.out = yd_aligned_alloc(nn);
    memset(next.out, 0xa5, nn);
    table->quantize(got, s->out_c, s->out_h, s->out_w, cb, next.scale, next.zero, next.pad_top,
                    next.pad_left, next.pad_bottom, next.pad_right, want_bytes);
#pragma omp parallel num_threads(threads)
    table->qwinograd(s, &q, qin, res, NULL, &next, 1, scratch, scratch_floats);
    if (!multi_output_case(table, s, &q, qin, res, got, scratch, scratch_floats, threads))
        worst = -1;
    if (memcmp(want_bytes, next.out, nn) != 0) {
        fprintf(stderr, "  %s int8 Winograd uint8 output differs from its float output quantized\n",
                table->name);
        worst = -1;
    }

    yd_qconv_free(&q);
    free(next.out);
    free(want_bytes);
    free(qweight);
    free(wscale);
    free(bias);
    free(res);
    free(qin);
    free(want);
    free(got);
    free(scratch);
    return worst;
}

/*
 * The bound for qwinograd_case's error, in accumulator units. The kernel
 * rounds each transformed weight U = G w G^T to int16 with a factor that
 * keeps sum |V| |U| below 2^31 for any input. With 64 channels a typical
 * |U| then gets a few thousand steps. The output transform amplifies the
 * rounding errors of the 36 positions up to 64x where they do not cancel.
 * On the shapes below the worst error was about 14 in_c units (890 for 64
 * channels, with outputs up to about 4e5 units). The bound, 32 in_c + 32,
 * is about twice that. Half a quantization step on every input can move
 * an output by 288 in_c units (9 in_c weights of 64 on average), and the
 * bound is below a ninth of that. Indexing or transform mistakes give
 * errors near the size of the outputs.
 */
static double qwinograd_tolerance(const yd_conv_shape *s)
{
    return 32.0 * s->in_c + 32.0;
}

static int qwinograd_check(const yd_kernel_table *table, yd_conv_shape *s, int with_residual,
                           int threads, int zero)
{
    double peak;
    double err = qwinograd_case(table, s, with_residual, threads, zero, NULL, NULL, &peak);
    int ok = err >= 0 && err <= qwinograd_tolerance(s);

    if (!ok)
        fprintf(stderr, "  %s int8 Winograd in %dx%dx%d out %dx%dx%d p%d silu %d res %d zero %d "
                "threads %d: error %g units, bound %g\n", table->name, s->in_c, s->in_h, s->in_w,
                s->out_c, s->out_h, s->out_w, s->pad_top, s->silu, with_residual, zero, threads, err,
                qwinograd_tolerance(s));
    return ok;
}

static void qwinograd_avx512vnni_matches_scalar(void)
{
    const yd_kernel_table *table = yd_kernels_get("avx512");
    yd_conv_shape s;
    int failures = 0, cases = 0;

    if (!table || !table->qwinograd) {
        printf("  (this CPU does not run the int8 Winograd kernel)\n");
        return;
    }
    /* YOLOv8 head shapes at small sizes. */
    fill_shape(&s, 64, 20, 20, 64, 3, 1, 1, 1);
    failures += !qwinograd_check(table, &s, 0, 2, 128);
    fill_shape(&s, 80, 44, 36, 80, 3, 1, 1, 1);
    failures += !qwinograd_check(table, &s, 1, 2, 3);
    fill_shape(&s, 256, 6, 6, 72, 3, 1, 1, 0);
    failures += !qwinograd_check(table, &s, 1, 2, 250);
    fill_shape(&s, 16, 1, 1, 16, 3, 1, 1, 1);
    failures += !qwinograd_check(table, &s, 1, 1, 0);
    cases += 4;

    /* Random shapes: H, W not multiples of 4 or smaller than a tile,
     * channel counts not multiples of 16, any zero point. */
    for (int i = 0; i < 60; i++) {
        int pad = random_int(0, 2);
        int h = random_int(1, 27), w = random_int(1, 31);

        if (h + 2 * pad < 3 || w + 2 * pad < 3)
            continue;
        fill_shape(&s, random_int(1, 70), h, w, random_int(1, 90), 3, 1, pad, random_int(0, 1));
        failures += !qwinograd_check(table, &s, random_int(0, 1), random_int(1, 2),
                                     random_int(0, 255));
        cases++;
    }

    /* One 6x6 window, 256 channels, every weight 127 and every input at
     * the extreme that maximizes |V| at position 0: the int32 sums reach
     * their bound there and must not overflow. */
    for (int sign = 0; sign < 2; sign++) {
        static const int bt0[6] = {4, 0, -5, 0, 1, 0};
        int8_t *weight = malloc((size_t)256 * 16 * 9);
        size_t qn;
        uint8_t *qin;
        double err, peak;

        fill_shape(&s, 256, 6, 6, 16, 3, 1, 0, 0);
        qn = yd_qconv_input_bytes(&s, 0, 0);
        qin = malloc(qn);
        memset(weight, 127, (size_t)256 * 16 * 9);
        for (size_t at = 0; at < qn; at++) {
            int pixel = (int)(at / YD_QCB % 36);
            int coefficient = bt0[pixel / 6] * bt0[pixel % 6];

            qin[at] = (coefficient > 0) == (sign == 0) ? 255 : 0;
        }
        err = qwinograd_case(table, &s, 0, 1, 0, weight, qin, &peak);
        if (err < 0 || err > 1e-3 * peak) {
            fprintf(stderr, "  extreme input %d: error %g units of %g\n", sign, err, peak);
            failures++;
        }
        free(weight);
        free(qin);
        cases++;
    }
    printf("  %d int8 Winograd shapes checked\n", cases);
    CHECK_INT_EQ(failures, 0);
}

/*
 * Checks that every input quantizer maps huge values and +inf to 255, and
 * huge negative values, -inf and NaN to 0. A row of 19 pixels runs the
 * compact quantizer's vector loop and its scalar tail.
 */
static void quantizers_saturate_extreme_values(void)
{
    /* The last value is in range: 0.5 / 0.01 + 3 = 53. */
    const float values[] = {1e20f, -1e20f, INFINITY, -INFINITY, NAN, 3e9f, -3e9f, 0.5f};
    const uint8_t expected[] = {255, 0, 255, 0, 0, 255, 0, 53};
    const int count = (int)(sizeof values / sizeof values[0]);
    const char *tables[] = {"scalar", "avx2", "avxvnni", "avx512"};
    const int c = 3, h = 1, w = 19, zero = 3;
    const float scale = 0.01f;
    yd_conv_shape s = {.in_c = c, .in_h = h, .in_w = w};
    size_t n = yd_qconv_input_bytes(&s, 0, 0);
    float *planar = malloc((size_t)c * h * w * sizeof(float));
    float *blocked = yd_aligned_alloc(yd_blocked_floats(c, h, w, YD_QCB) * sizeof(float));
    uint8_t *got = yd_aligned_alloc(n);

    for (int v = 0; v < count; v++) {
        const uint8_t want = expected[v];

        for (int i = 0; i < c * h * w; i++)
            planar[i] = values[v];
        memset(got, 0xa5, n);
        yd_u8_quantize_planar(planar, c, h, w, YD_QCB, scale, zero, 0, 0, 0, 0, got);
        CHECK_INT_EQ(got[0], want);
        CHECK_INT_EQ(got[(size_t)(w - 1) * YD_QCB + c - 1], want);
        memset(got, 0xa5, n);
        yd_u8_quantize_planar(planar, c, h, w, 4, scale, zero, 0, 0, 0, 0, got);
        CHECK_INT_EQ(got[0], want);
        CHECK_INT_EQ(got[(size_t)(w - 1) * 4 + c - 1], want);

        for (int t = 0; t < (int)(sizeof tables / sizeof tables[0]); t++) {
            const yd_kernel_table *table = yd_kernels_get(tables[t]);

            if (!table)
                continue;
            yd_f32_pack_planar(planar, c, h, w, table->cb, blocked);
            memset(got, 0xa5, n);
            table->quantize(blocked, c, h, w, table->cb, scale, zero, 0, 0, 0, 0, got);
            CHECK_INT_EQ(got[0], want);
            CHECK_INT_EQ(got[(size_t)(w - 1) * YD_QCB + c - 1], want);
        }
    }
    free(planar);
    free(blocked);
    free(got);
}

static void qconv_avx512vnni_matches_scalar(void)
{
    check_qconv_table("avx512");
}

static void qconv_avx2_matches_scalar(void)
{
    check_qconv_table("avx2");
}

static void qconv_avxvnni_matches_scalar(void)
{
    check_qconv_table("avxvnni");
}

int main(void)
{
    RUN(qconv_avx512vnni_matches_scalar);
    RUN(qconv_avx2_matches_scalar);
    RUN(qconv_avxvnni_matches_scalar);
    RUN(image_quantizers_match_pack_then_quantize);
    RUN(quantizers_saturate_extreme_values);
    RUN(conv_avx512_matches_scalar);
    RUN(conv_avx2_matches_scalar);
    RUN(winograd_avx512_matches_scalar);
    RUN(winograd_avx2_matches_scalar);
    RUN(winograd_choice_by_shape);
    RUN(qwinograd_avx512vnni_matches_scalar);
    RUN(qwinograd_choice_by_shape);
    RUN(copy_channels_unaligned);
    RUN(pack_unpack_round_trip);
    RUN(maxpool_matches_loops);
    RUN(unpack_avx512_matches_generic);
    RUN(u8_pool_upsample_match_float);
    return TEST_SUMMARY();
}
