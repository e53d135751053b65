/*
 * Int8 Winograd F(4x4, 3x3): which layers take it, and the transform and
 * int16 rounding of the weights done once at load time.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

/* B^T of F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2, infinity. */
static const int winograd_bt[6][6] = {
    {4, 0, -5, 0, 1, 0},
    {0, -4, -4, 1, 1, 0},
    {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0},
    {0, 2, -1, -2, 1, 0},
    {0, 4, 0, -5, 0, 1},
};

static inline int blocks16(int c)
{
    return (c + YD_QCB - 1) / YD_QCB;
}

/*
 * The transforms cost the same per output whatever in_c is, while the
 * GEMM they save grows with in_c. Each layer was timed alone on one core
 * of an AMD EPYC with AVX-512 VNNI (48 KiB L1D, 1 MiB L2 per core), with
 * SiLU and quantized output. Against the direct VNNI kernel, Winograd took
 * 0.97x its time with 16 input channels, 0.73x to 0.82x with 32 or 48,
 * and 0.6x to 0.7x with 64 to 256. Inside yolov8n on one thread, the
 * layers on 20x20 maps (25 tiles) were as fast as direct or up to 25%
 * slower, although they were faster alone. Their transformed weights, 8x
 * the direct kernel's bytes, serve only 25 tiles.
 */
int yd_qwinograd_chosen(const yd_conv_shape *s)
{
    const int tiles = ((s->out_h + 3) / 4) * ((s->out_w + 3) / 4);

    return yd_winograd_chosen(s, YD_QCB) && s->in_c >= 32 && tiles >= 64;
}

/*
 * The largest |V| at tile position p = 6 i + j for an input with zero
 * point `zero`. V[i][j] = sum over k, l of B^T[i][k] B^T[j][l] (d[k][l] -
 * zero), and every d lies in [0, 255] independently, so the extremes put
 * each d at 0 or 255 by the sign of its coefficient. The bound is exact:
 * some input reaches it.
 */
static int64_t v_bound(int p, int zero)
{
    int64_t positive = 0, negative = 0, high, low;

    for (int k = 0; k < 6; k++)
        for (int l = 0; l < 6; l++) {
            int coefficient = winograd_bt[p / 6][k] * winograd_bt[p % 6][l];

            if (coefficient > 0)
                positive += coefficient;
            else
                negative -= coefficient;
        }
    high = positive * (255 - zero) + negative * zero;
    low = positive * zero + negative * (255 - zero);
    return high > low ? high : low;
}

/*
 * Rounds the transformed weights t[ic], ic < in_c, of one output channel
 * and tile position to int16 with the largest factor that keeps every
 * product sum in int32: |sum over ic of V[ic] u[ic]| <= bound * sum |u[ic]|
 * <= 2^31 - 1, with bound the exact max |V| of the position. The factor
 * also keeps |u| <= 32767. Writes u[ic]; returns the factor, 0 when every
 * weight is 0.
 */
static double round_position(const double *t, int in_c, int64_t bound, int16_t *u)
{
    double peak = 0, sum = 0, factor;

    for (int ic = 0; ic < in_c; ic++) {
        peak = fabs(t[ic]) > peak ? fabs(t[ic]) : peak;
        sum += fabs(t[ic]);
    }
    if (peak == 0)
        return 0;
    factor = fmin(32767.0 / peak, (double)INT32_MAX / ((double)bound * sum));

    /* Rounding may add up to in_c / 2 to sum |u|, so shrink the factor
     * until the exact integer check passes. */
    for (;;) {
        int64_t total = 0;
        long worst = 0;

        for (int ic = 0; ic < in_c; ic++) {
            long q = lrint(t[ic] * factor);

            total += labs(q);
            worst = labs(q) > worst ? labs(q) : worst;
        }
        if (worst <= 32767 && total * bound <= INT32_MAX)
            break;
        factor *= 0.999;
    }
    for (int ic = 0; ic < in_c; ic++)
        u[ic] = (int16_t)lrint(t[ic] * factor);
    return factor;
}

int yd_qconv_pack_winograd(const yd_conv_shape *s, const int8_t *qweight,
                           const float *weight_scale, yd_qconv *q)
{
    const int nob = blocks16(s->out_c), pairs = (s->in_c + 1) / 2;
    const size_t u_block = (size_t)pairs * 2 * YD_QCB;
    const size_t u_position = (size_t)nob * u_block;
    const size_t scale_position = (size_t)nob * YD_QCB;
    const size_t u_bytes = YD_WINOGRAD_POSITIONS * u_position * sizeof(int16_t);
    const size_t scale_bytes = YD_WINOGRAD_POSITIONS * scale_position * sizeof(float);
    double *t = malloc((size_t)YD_WINOGRAD_POSITIONS * s->in_c * sizeof(double));
    int16_t *rounded = malloc((size_t)s->in_c * sizeof(int16_t));
    int64_t bound[YD_WINOGRAD_POSITIONS];

    free(q->winograd_u);
    free(q->winograd_scale);
    q->winograd_u = yd_aligned_alloc(u_bytes);
    q->winograd_scale = yd_aligned_alloc(scale_bytes);
    if (!t || !rounded || !q->winograd_u || !q->winograd_scale) {
        free(t);
        free(rounded);
        free(q->winograd_u);
        free(q->winograd_scale);
        q->winograd_u = NULL;
        q->winograd_scale = NULL;
        return YD_ERR_NO_MEMORY;
    }
    memset(q->winograd_u, 0, u_bytes);
    memset(q->winograd_scale, 0, scale_bytes);
    for (int p = 0; p < YD_WINOGRAD_POSITIONS; p++)
        bound[p] = v_bound(p, q->input_zero);

    for (int oc = 0; oc < s->out_c; oc++) {
        /* G g G^T of every input channel in double, whose rounding error
         * (about 1e-16 relative) is negligible beside the int16 rounding. */
        for (int ic = 0; ic < s->in_c; ic++) {
            const int8_t *g = qweight + ((size_t)oc * s->in_c + ic) * 9;
            double wide[9], transformed[YD_WINOGRAD_POSITIONS];

            for (int k = 0; k < 9; k++)
                wide[k] = g[k];
            yd_winograd_transform_kernel(wide, transformed);
            for (int p = 0; p < YD_WINOGRAD_POSITIONS; p++)
                t[(size_t)p * s->in_c + ic] = transformed[p];
        }

        for (int p = 0; p < YD_WINOGRAD_POSITIONS; p++) {
            int16_t *u = q->winograd_u + (size_t)p * u_position + (size_t)(oc / YD_QCB) * u_block +
                         (size_t)(oc % YD_QCB) * 2;
            double factor = round_position(t + (size_t)p * s->in_c, s->in_c, bound[p], rounded);

            /* Input channels 2k and 2k + 1 form the int16 pair of lane oc % 16. */
            for (int ic = 0; ic < s->in_c; ic++)
                u[(size_t)(ic / 2) * 2 * YD_QCB + ic % 2] = rounded[ic];
            if (factor > 0)
                q->winograd_scale[(size_t)p * scale_position + oc] =
                    (float)(q->input_scale * weight_scale[oc] / factor);
        }
    }
    free(t);
    free(rounded);
    return YD_OK;
}
