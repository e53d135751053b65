/*
 * Post-training int8 quantization: activation ranges calibrated on a set of
 * images, symmetric per-output-channel weights, uint8 per-tensor inputs.
 *
 * Calibration runs the float model over the images twice: the first pass
 * records each convolution input's minimum and maximum, the second fills a
 * histogram of 2048 bins over that range. The range kept is then
 *   minmax      [min, max];
 *   percentile  [min, the value below which `percentile` % of samples lie];
 *   entropy     [min, the upper bound whose 255-level quantization of the
 *               histogram has the least KL divergence from the clipped
 *               histogram], TensorRT's entropy calibrator over a uint8 grid.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "quantize.h"
#include "util.h"

#define BINS 2048
#define LEVELS 255

typedef struct value_stats {
    float min, max;
    double *hist;   /* BINS counts over [min, max], second pass only */
    int wanted;     /* read by an int8 convolution */
} value_stats;

typedef struct calib_ctx {
    value_stats *stats;
    int pass;
} calib_ctx;

static void observe(const yd_session *s, int node_index, const float *data, void *user)
{
    calib_ctx *ctx = user;
    const yd_graph *g = s->model->graph;
    int v = g->nodes[node_index].output;
    value_stats *st = &ctx->stats[v];
    const yd_value *val = &g->values[v];
    size_t plane = (size_t)val->h * val->w;
    int cb = g->cb;

    if (!st->wanted || omp_get_thread_num() != 0)
        return;
    for (int ch = 0; ch < val->c; ch++) {
        const float *p = data + (size_t)(ch / cb) * plane * cb + ch % cb;

        for (size_t i = 0; i < plane; i++) {
            float x = p[i * cb];

            if (ctx->pass == 0) {
                st->min = x < st->min ? x : st->min;
                st->max = x > st->max ? x : st->max;
            } else if (st->max > st->min) {
                int bin = (int)((x - st->min) / (st->max - st->min) * BINS);

                st->hist[yd_clamp_long(bin, 0, BINS - 1)] += 1;
            }
        }
    }
}

/*
 * KL divergence from the clipped histogram P (hist[0, n) with the mass
 * beyond n folded into bin n - 1) to its 255-level quantization Q, where Q
 * is built from hist[0, n) without that mass, so clipping is penalised,
 * and spread evenly over the bins where P is non-zero.
 */
static double clipped_kl(const double *hist, int n)
{
    double total_p = 0, total_q = 0, outliers = 0, kl = 0;

    for (int i = n; i < BINS; i++)
        outliers += hist[i];
    for (int i = 0; i < n; i++)
        total_q += hist[i];
    total_p = total_q + outliers;
    if (total_q <= 0)
        return INFINITY;

    for (int level = 0; level < LEVELS; level++) {
        int lo = (int)((double)level * n / LEVELS), hi = (int)((double)(level + 1) * n / LEVELS);
        double sum = 0;
        int nonzero = 0;

        for (int i = lo; i < hi; i++) {
            double p = hist[i] + (i == n - 1 ? outliers : 0);

            sum += hist[i];
            nonzero += p > 0;
        }
        for (int i = lo; i < hi; i++) {
            double p = (hist[i] + (i == n - 1 ? outliers : 0)) / total_p;
            double q = nonzero ? sum / nonzero / total_q : 0;

            if (p <= 0)
                continue;
            /* An empty Q bin under P mass: a large but finite penalty. */
            kl += p * log(p / (q > 0 ? q : 1e-12));
        }
    }
    return kl;
}

static float choose_max(const value_stats *st, const yd_quant_options *o)
{
    double total = 0, run = 0;
    double width = ((double)st->max - st->min) / BINS;

    if (o->method == YD_CALIB_MINMAX || st->max <= st->min)
        return st->max;
    for (int i = 0; i < BINS; i++)
        total += st->hist[i];
    if (o->method == YD_CALIB_PERCENTILE) {
        for (int i = 0; i < BINS; i++) {
            run += st->hist[i];
            if (run >= total * o->percentile / 100.0)
                return (float)(st->min + (i + 1) * width);
        }
        return st->max;
    }

    int best = BINS;
    double best_kl = INFINITY;

    for (int n = LEVELS + 1; n <= BINS; n += 8) {
        double kl = clipped_kl(st->hist, n);

        if (kl < best_kl) {
            best_kl = kl;
            best = n;
        }
    }
    return (float)(st->min + best * width);
}

/* Symmetric per-output-channel int8 weights for one convolution. */
int yd_quantize_conv_weights(yd_node *node)
{
    yd_conv_params *c = &node->conv;
    size_t per_oc = (size_t)c->in_c * c->kernel_h * c->kernel_w;

    free(c->qweight);
    free(c->weight_scale);
    c->qweight = malloc((size_t)c->out_c * per_oc);
    c->weight_scale = malloc((size_t)c->out_c * sizeof(float));
    if (!c->qweight || !c->weight_scale)
        return YD_ERR_NO_MEMORY;
    for (int oc = 0; oc < c->out_c; oc++) {
        const float *w = c->weight + oc * per_oc;
        float amax = 0;

        for (size_t i = 0; i < per_oc; i++)
            amax = fabsf(w[i]) > amax ? fabsf(w[i]) : amax;
        c->weight_scale[oc] = amax > 0 ? amax / 127.0f : 1.0f;
        for (size_t i = 0; i < per_oc; i++) {
            long q = lrintf(w[i] / c->weight_scale[oc]);

            c->qweight[oc * per_oc + i] = (int8_t)yd_clamp_long(q, -127, 127);
        }
    }
    return YD_OK;
}

/* uint8 grid for [lo, hi] that contains 0 exactly (zero padding is 0.0). */
static void input_grid(float lo, float hi, float *scale, int *zero)
{
    long z;

    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    if (hi - lo < 1e-8f)
        hi = lo + 1e-8f;
    *scale = (hi - lo) / 255.0f;
    z = lrintf(-lo / *scale);
    *zero = (int)yd_clamp_long(z, 0, 255);
}

/* Images the sensitivity analysis runs on (each costs one inference per layer). */
#define SENSITIVITY_IMAGES 8

static size_t head_floats(const yd_session *s)
{
    size_t n = 0;

    for (int l = 0; l < s->maps.nlevels; l++)
        n += (size_t)(4 * YD_HEAD_REG_MAX + s->maps.nc) * s->maps.level[l].height * s->maps.level[l].width;
    return n;
}

static int run_on(yd_session *s, const yd_image *image, yd_error *err)
{
    yd_letterbox lb;

    return yd_session_run_image(s, image, &lb, err);
}

/* The float model's raw head maps on the first `n` images, concatenated. */
static int reference_outputs(yd_session *s, yd_model *model, const yd_image *images, int n,
                             float **out, yd_error *err)
{
    size_t per_image = head_floats(s);
    float *maps = malloc((size_t)n * per_image * sizeof *maps);

    if (!maps)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for sensitivity analysis");
    s->observe = NULL;
    for (int k = 0; k < n; k++) {
        int rc = run_on(s, &images[k], err);

        if (rc != YD_OK) {
            free(maps);
            return rc;
        }
        memcpy(maps + (size_t)k * per_image, s->head, per_image * sizeof *maps);
    }
    *out = maps;
    return YD_OK;
}

/*
 * Chooses the layers automatic mixed precision keeps in fp32. Each layer is
 * quantized alone (the others float), and the mean squared change of the raw
 * head maps against the float model is measured on a few images. The
 * `keep_float_count` layers with the largest change stay fp32.
 */
static int keep_most_sensitive(yd_model *model, const yd_image *images, int n,
                               const float *reference, const yd_quant_options *options,
                               yd_error *err)
{
    yd_graph *g = model->graph;
    yd_session *s = NULL;
    size_t per_image;
    double *change = calloc((size_t)g->nnodes, sizeof *change);
    char *candidate = calloc((size_t)g->nnodes, 1);
    int rc;

    /* A session made while every candidate is int8 sizes its quantized
     * input buffer for all of them. */
    rc = yd_session_create(model, options->threads, &s, err);
    if (rc != YD_OK || !change || !candidate) {
        yd_session_destroy(s);
        free(change);
        free(candidate);
        return rc != YD_OK ? rc : yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for sensitivity analysis");
    }
    per_image = head_floats(s);
    for (int i = 0; i < g->nnodes; i++)
        candidate[i] = !g->nodes[i].dead && g->nodes[i].op == YD_OP_CONV &&
                       g->nodes[i].conv.precision == YD_PREC_INT8;

    for (int i = 0; i < g->nnodes && rc == YD_OK; i++) {
        if (!candidate[i])
            continue;
        for (int j = 0; j < g->nnodes; j++)
            if (candidate[j])
                g->nodes[j].conv.precision = j == i ? YD_PREC_INT8 : YD_PREC_FP32;
        rc = yd_model_repack(model, err);
        for (int k = 0; k < n && rc == YD_OK; k++) {
            rc = run_on(s, &images[k], err);
            for (size_t p = 0; p < per_image && rc == YD_OK; p++) {
                double d = (double)s->head[p] - reference[(size_t)k * per_image + p];

                change[i] += d * d / (double)(per_image * (size_t)n);
            }
        }
        if (options->progress)
            options->progress(2, i + 1, g->nnodes, options->progress_user);
    }

    /* All candidates int8 again, then the most sensitive back to fp32. */
    for (int j = 0; j < g->nnodes; j++)
        if (candidate[j])
            g->nodes[j].conv.precision = YD_PREC_INT8;
    for (int kept = 0; kept < options->keep_float_count && rc == YD_OK; kept++) {
        int worst = -1;

        for (int j = 0; j < g->nnodes; j++)
            if (candidate[j] && g->nodes[j].conv.precision == YD_PREC_INT8 &&
                (worst < 0 || change[j] > change[worst]))
                worst = j;
        if (worst < 0)
            break;
        g->nodes[worst].conv.precision = YD_PREC_FP32;
        yd_log(YD_LOG_INFO, "keeping %s in fp32 (head change %.3g when quantized alone)",
               g->nodes[worst].name, change[worst]);
    }
    free(candidate);
    yd_session_destroy(s);
    if (rc == YD_OK)
        rc = yd_model_repack(model, err);
    free(change);
    return rc;
}

int yd_quantize_model(yd_model *model, const yd_image *images, int nimages,
                      const yd_quant_options *options, yd_error *err)
{
    yd_graph *g = model->graph;
    value_stats *stats = calloc((size_t)g->nvalues, sizeof *stats);
    yd_session *session = NULL;
    calib_ctx ctx = {.stats = stats};
    float *reference = NULL;
    int rc = YD_OK;

    if (!stats)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for calibration");
    if (nimages < 1) {
        free(stats);
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "calibration needs at least one image");
    }
    for (int v = 0; v < g->nvalues; v++) {
        stats[v].min = INFINITY;
        stats[v].max = -INFINITY;
    }
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        if (!node->dead && node->op == YD_OP_CONV && yd_quant_wants(options, i))
            stats[node->inputs[0]].wanted = 1;
    }

    rc = yd_session_create(model, options->threads, &session, err);
    if (rc != YD_OK)
        goto done;
    session->observe = observe;
    session->observe_user = &ctx;

    for (ctx.pass = 0; ctx.pass < 2; ctx.pass++) {
        if (ctx.pass == 1) {
            if (options->method == YD_CALIB_MINMAX)
                break;
            for (int v = 0; v < g->nvalues; v++) {
                if (!stats[v].wanted)
                    continue;
                stats[v].hist = calloc(BINS, sizeof(double));
                if (!stats[v].hist) {
                    rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for histograms");
                    goto done;
                }
            }
        }
        for (int k = 0; k < nimages; k++) {
            yd_letterbox lb;

            rc = yd_session_run_image(session, &images[k], &lb, err);
            if (rc != YD_OK)
                goto done;
            if (options->progress)
                options->progress(ctx.pass, k + 1, nimages, options->progress_user);
        }
    }

    if (options->keep_float_count > 0) {
        rc = reference_outputs(session, model, images, nimages < SENSITIVITY_IMAGES ? nimages :
                               SENSITIVITY_IMAGES, &reference, err);
        if (rc != YD_OK)
            goto done;
    }

    for (int i = 0; i < g->nnodes; i++) {
        yd_node *node = &g->nodes[i];
        const value_stats *st;

        if (node->dead || node->op != YD_OP_CONV || !yd_quant_wants(options, i))
            continue;
        st = &stats[node->inputs[0]];
        rc = yd_quantize_conv_weights(node);
        if (rc != YD_OK) {
            yd_error_set(err, rc, "out of memory quantizing '%s'", node->name);
            goto done;
        }
        input_grid(st->min, choose_max(st, options), &node->conv.input_scale, &node->conv.input_zero);
        node->conv.precision = YD_PREC_INT8;
    }
    rc = yd_model_repack(model, err);
    if (rc == YD_OK && options->keep_float_count > 0)
        rc = keep_most_sensitive(model, images,
                                 nimages < SENSITIVITY_IMAGES ? nimages : SENSITIVITY_IMAGES, reference,
                                 options, err);

done:
    free(reference);
    yd_session_destroy(session);
    for (int v = 0; v < g->nvalues; v++)
        free(stats[v].hist);
    free(stats);
    return rc;
}

int yd_quant_wants(const yd_quant_options *options, int node)
{
    return !options->keep_float || !options->keep_float[node];
}
