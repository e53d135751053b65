/*
 * Winograd F(4x4, 3x3) convolution, the parts every ISA shares: which
 * layers take it, the weight transform done once at load time, and the
 * tile batch and scratch sizes the kernels and the session agree on.
 */
#include <assert.h>
#include <string.h>

#include "kernels.h"

/* Output-channel blocks per GEMM register tile, the most any ISA uses. */
#define GROUP_BLOCKS_MAX 4

/*
 * Bytes of one batch's transformed input and GEMM output: a fraction of
 * a core's L2, so both stay there beside the streamed transformed weights,
 * and small enough that most layers split into many batches for the
 * threads. On one Zen 5 core (1 MiB L2) yolov8n's Winograd layers took the
 * same time within 2% from 64 KiB to 384 KiB.
 */
#define BATCH_BYTES (128 * 1024)

/* Each weight vector a GEMM loads serves one FMA per tile of the batch,
 * so wide layers keep at least TILES_MIN tiles past BATCH_BYTES. TILES_MAX
 * bounds the scratch memory of narrow ones. */
#define TILES_MIN 12
#define TILES_MAX 96

/* The largest transformed input of a layer that runs as one batch. */
#define ONE_BATCH_BYTES (16 * BATCH_BYTES)

/* G of F(4x4, 3x3), 6 x 3, interpolation points 0, 1, -1, 2, -2, infinity. */
static const double winograd_g[6][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};

void yd_winograd_transform_kernel(const double g[9], double u[YD_WINOGRAD_POSITIONS])
{
    double gg[6][3];

    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 3; j++)
            gg[i][j] = winograd_g[i][0] * g[j] + winograd_g[i][1] * g[3 + j] +
                       winograd_g[i][2] * g[6 + j];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
            u[i * 6 + j] = gg[i][0] * winograd_g[j][0] + gg[i][1] * winograd_g[j][1] +
                           gg[i][2] * winograd_g[j][2];
}

static inline int blocks(int c, int cb)
{
    return (c + cb - 1) / cb;
}

int yd_winograd_supported(const yd_conv_shape *s)
{
    return s->kernel_h == 3 && s->kernel_w == 3 && s->stride_h == 1 && s->stride_w == 1 &&
           s->out_h > 0 && s->out_w > 0;
}

/*
 * The input transform costs the same per input block whatever its lane
 * count, so Winograd needs enough input channels to pay for it. Both
 * kernels alone were timed on one Zen 5 core with 80x80 and 40x40 maps.
 * With cb 16 Winograd ran at 0.7x the direct kernel's speed with 3 or 4
 * input channels, 0.94x with 6 and 1.08x with 8. With cb 8 it won at every
 * count tried (1.15x with 1, 1.3x with 4). The output channel count did not
 * matter (2x with 4 output channels).
 */
int yd_winograd_chosen(const yd_conv_shape *s, int cb)
{
    return yd_winograd_supported(s) && s->in_c >= cb / 2;
}

size_t yd_winograd_packed_floats(const yd_conv_shape *s, int cb)
{
    size_t nob = (size_t)blocks(s->out_c, cb);

    return nob * cb + (size_t)YD_WINOGRAD_POSITIONS * nob * s->in_c * cb;
}

void yd_winograd_pack(const yd_conv_shape *s, int cb, const float *weight, const float *bias,
                      float *packed)
{
    const int nob = blocks(s->out_c, cb);
    float *u = packed + (size_t)nob * cb;

    assert(yd_winograd_supported(s));
    memset(packed, 0, yd_winograd_packed_floats(s, cb) * sizeof *packed);
    for (int oc = 0; oc < s->out_c; oc++)
        packed[oc] = bias[oc];

    for (int oc = 0; oc < s->out_c; oc++) {
        for (int ic = 0; ic < s->in_c; ic++) {
            const float *g = weight + ((size_t)oc * s->in_c + ic) * 9;
            double wide[9], transformed[YD_WINOGRAD_POSITIONS];

            /* In double, so only the final store rounds. */
            for (int k = 0; k < 9; k++)
                wide[k] = g[k];
            yd_winograd_transform_kernel(wide, transformed);
            for (int p = 0; p < YD_WINOGRAD_POSITIONS; p++) {
                size_t at = (((size_t)p * nob + oc / cb) * s->in_c + ic) * cb + oc % cb;

                u[at] = (float)transformed[p];
            }
        }
    }
}

/*
 * Twice, not once, from timings on one Zen 5 core inside the network,
 * where the weights come from memory. On yolov8s-random's 40x40 layers of
 * 128 channels (weights 1.3x the input) one batch was 5% slower than
 * batches that stay in L2. On its 20x20 layers (weights 2.6x to 5x the
 * input) one batch was 16% to 27% faster.
 */
int yd_winograd_one_batch(const yd_conv_shape *s, int cb)
{
    const size_t ntiles = (size_t)((s->out_h + 3) / 4) * ((s->out_w + 3) / 4);
    const size_t weight_floats = (size_t)s->in_c * blocks(s->out_c, cb) * cb;
    const size_t input_floats = ntiles * blocks(s->in_c, cb) * cb;

    return weight_floats >= 2 * input_floats &&
           YD_WINOGRAD_POSITIONS * input_floats * sizeof(float) <= ONE_BATCH_BYTES;
}

int yd_winograd_tiles_per_batch(const yd_conv_shape *s, int cb)
{
    const int ntiles = ((s->out_h + 3) / 4) * ((s->out_w + 3) / 4);
    const int group = blocks(s->out_c, cb) < GROUP_BLOCKS_MAX ? blocks(s->out_c, cb)
                                                               : GROUP_BLOCKS_MAX;
    const size_t tile_bytes =
        (size_t)YD_WINOGRAD_POSITIONS * sizeof(float) * ((size_t)blocks(s->in_c, cb) + group) * cb;
    size_t tiles = BATCH_BYTES / tile_bytes;

    if (yd_winograd_one_batch(s, cb))
        return ntiles;
    if (tiles < TILES_MIN)
        tiles = TILES_MIN;
    if (tiles > TILES_MAX)
        tiles = TILES_MAX;
    return (int)tiles < ntiles ? (int)tiles : ntiles;
}

size_t yd_winograd_scratch_floats(const yd_conv_shape *s, int cb)
{
    const size_t tiles = (size_t)yd_winograd_tiles_per_batch(s, cb);
    const int group = blocks(s->out_c, cb) < GROUP_BLOCKS_MAX ? blocks(s->out_c, cb)
                                                               : GROUP_BLOCKS_MAX;
    /* V and M, each with one vector of padding per tile position (see
     * position_stride() in the kernel template). */
    size_t floats = (size_t)YD_WINOGRAD_POSITIONS *
                    (tiles * ((size_t)blocks(s->in_c, cb) + group) * cb + 2 * (size_t)cb);

    return (floats + 15) / 16 * 16;
}
