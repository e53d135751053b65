/*
 * Sessions and the executor: one activation arena per session, and one
 * OpenMP parallel region per inference in which every layer splits its work
 * with an orphaned `omp for` (the implicit barrier after each loop orders
 * the layers), so threads are woken once per image, not once per layer.
 */
#include <assert.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <xmmintrin.h>

#include "engine.h"
#include "util.h"

static float *value_ptr(const yd_session *s, int value)
{
    return s->arena + yd_graph_value_offset(s->model->graph, value);
}

float *yd_session_value(const yd_session *s, int value)
{
    return value_ptr(s, value);
}

/* Largest padded uint8 input among the int8 convolutions, in bytes. */
static size_t qinput_bytes(const yd_graph *g)
{
    size_t max = 0;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        yd_conv_shape shape;
        size_t bytes;

        if (node->dead || node->op != YD_OP_CONV || node->conv.precision != YD_PREC_INT8)
            continue;
        yd_conv_shape_of(g, node, &shape);
        bytes = yd_qconv_input_bytes(&shape, node->conv.pad_bottom, node->conv.pad_right);
        if (bytes > max)
            max = bytes;
    }
    return max;
}

/*
 * Per-thread Winograd scratch floats for the largest layer that may run
 * Winograd. Counts int8 layers too: a model may be repacked with other
 * precisions while a session lives (sensitivity analysis does), and a
 * layer's choice depends only on its shape and the kernel table.
 */
static size_t winograd_floats(const yd_model *model)
{
    const yd_graph *g = model->graph;
    size_t max = 0;

    if (!model->kernels->winograd)
        return 0;
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        yd_conv_shape shape;
        size_t floats;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        yd_conv_shape_of(g, node, &shape);
        if (!yd_winograd_chosen(&shape, g->cb))
            continue;
        floats = yd_winograd_scratch_floats(&shape, g->cb);
        if (floats > max)
            max = floats;
    }
    return max;
}

int yd_session_create(yd_model *model, int threads, yd_session **out, yd_error *err)
{
    const yd_graph *g = model->graph;
    yd_session *s;
    size_t head_floats = 0;
    int anchors = 0;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session");
    s->model = yd_model_retain(model);
    s->stop_after = -1;
    s->threads = threads > 0 ? threads : omp_get_num_procs();

    for (int l = 0; l < g->nlevels; l++) {
        const yd_value *box = &g->values[g->head_box[l]];

        head_floats += (size_t)(box->c + g->nc) * box->h * box->w;
        anchors += box->h * box->w;
    }
    s->arena = yd_aligned_alloc(g->arena_bytes);
    s->letterbox = malloc((size_t)g->input_width * g->input_height * 3);
    s->head = malloc(head_floats * sizeof(float));
    s->scratch = yd_head_scratch_create(g->nc, anchors);
    s->capacity = 300;
    s->detections = malloc((size_t)s->capacity * sizeof *s->detections);
    if (qinput_bytes(g) > 0) {
        s->qinput = yd_aligned_alloc(qinput_bytes(g));
        if (!s->qinput) {
            yd_session_destroy(s);
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session");
        }
    }
    s->winograd_floats = winograd_floats(model);
    if (s->winograd_floats > 0) {
        s->winograd_scratch = yd_aligned_alloc((size_t)s->threads * s->winograd_floats * sizeof(float));
        if (!s->winograd_scratch) {
            yd_session_destroy(s);
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session "
                                "(Winograd scratch %zu bytes)",
                                (size_t)s->threads * s->winograd_floats * sizeof(float));
        }
    }
    if (!s->arena || !s->letterbox || !s->head || !s->scratch || !s->detections) {
        yd_session_destroy(s);
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session (arena %zu bytes)",
                            g->arena_bytes);
    }

    /* Touch every page now, so the first request does not pay the faults. */
    memset(s->arena, 0, g->arena_bytes);
    if (s->winograd_scratch)
        memset(s->winograd_scratch, 0, (size_t)s->threads * s->winograd_floats * sizeof(float));

    /* Head maps point into s->head: per level, box planes then class planes. */
    float *at = s->head;
    s->maps.nc = g->nc;
    s->maps.nlevels = g->nlevels;
    for (int l = 0; l < g->nlevels; l++) {
        const yd_value *box = &g->values[g->head_box[l]];
        yd_head_level *level = &s->maps.level[l];

        level->stride = g->head_stride[l];
        level->height = box->h;
        level->width = box->w;
        level->box = at;
        at += (size_t)box->c * box->h * box->w;
        level->cls = at;
        at += (size_t)g->nc * box->h * box->w;
    }
    *out = s;
    return YD_OK;
}

void yd_session_destroy(yd_session *s)
{
    if (!s)
        return;
    free(s->arena);
    free(s->letterbox);
    free(s->head);
    yd_head_scratch_destroy(s->scratch);
    free(s->detections);
    free(s->qinput);
    free(s->winograd_scratch);
    yd_model_release(s->model);
    free(s);
}

/* Runs one node; called by every thread of the team. */
static void run_node(yd_session *s, const yd_node *node)
{
    const yd_graph *g = s->model->graph;
    const int cb = g->cb;
    const yd_value *out = &g->values[node->output];
    const yd_value *in0 = node->ninputs > 0 ? &g->values[node->inputs[0]] : NULL;
    size_t n = yd_blocked_floats(out->c, out->h, out->w, cb);

    switch (node->op) {
    case YD_OP_INPUT:
        break;
    case YD_OP_CONV: {
        yd_conv_shape shape;

        yd_conv_shape_of(g, node, &shape);
        if (node->conv.precision == YD_PREC_INT8) {
            const yd_kernel_table *k = s->model->kernels;

            k->quantize(value_ptr(s, node->inputs[0]), in0->c, in0->h, in0->w, cb,
                        node->conv.input_scale, node->conv.input_zero, node->conv.pad_top,
                        node->conv.pad_left, node->conv.pad_bottom, node->conv.pad_right, s->qinput);
            k->qconv(&shape, node->conv.qpacked, s->qinput,
                     node->residual >= 0 ? value_ptr(s, node->residual) : NULL,
                     value_ptr(s, node->output), cb);
            break;
        }
        if (node->conv.winograd) {
            /* winograd_floats() sized the scratch for every layer that can be chosen. */
            assert(s->winograd_floats >= yd_winograd_scratch_floats(&shape, cb));
            s->model->kernels->winograd(&shape, node->conv.packed, value_ptr(s, node->inputs[0]),
                                        node->residual >= 0 ? value_ptr(s, node->residual) : NULL,
                                        value_ptr(s, node->output), s->winograd_scratch,
                                        s->winograd_floats);
            break;
        }
        s->model->kernels->conv(&shape, node->conv.packed, value_ptr(s, node->inputs[0]),
                                node->residual >= 0 ? value_ptr(s, node->residual) : NULL,
                                value_ptr(s, node->output));
        break;
    }
    case YD_OP_MAXPOOL:
        yd_f32_maxpool(value_ptr(s, node->inputs[0]), in0->c, in0->h, in0->w, node->pool_kernel,
                       node->pool_stride, node->pool_pad, value_ptr(s, node->output), out->h, out->w,
                       cb);
        break;
    case YD_OP_UPSAMPLE:
        yd_f32_upsample_nearest(value_ptr(s, node->inputs[0]), in0->c, in0->h, in0->w, node->scale,
                                value_ptr(s, node->output), cb);
        break;
    case YD_OP_CONCAT: {
        int offset = 0;

        for (int k = 0; k < node->ninputs; k++) {
            const yd_value *in = &g->values[node->inputs[k]];

            if (node->copy_inputs & (1u << k))
                yd_f32_copy_channels(value_ptr(s, node->inputs[k]), 0, value_ptr(s, node->output),
                                     offset, in->c, in->h, in->w, cb);
            offset += in->c;
        }
        break;
    }
    case YD_OP_SLICE:
        if (node->copies)
            yd_f32_copy_channels(value_ptr(s, node->inputs[0]), node->slice_begin,
                                 value_ptr(s, node->output), 0, out->c, out->h, out->w, cb);
        break;
    case YD_OP_ADD:
        yd_f32_add(value_ptr(s, node->inputs[0]), value_ptr(s, node->inputs[1]),
                   value_ptr(s, node->output), n);
        break;
    case YD_OP_MUL:
        yd_f32_mul(value_ptr(s, node->inputs[0]), value_ptr(s, node->inputs[1]),
                   value_ptr(s, node->output), n);
        break;
    case YD_OP_SIGMOID:
        yd_f32_sigmoid(value_ptr(s, node->inputs[0]), value_ptr(s, node->output), n);
        break;
    case YD_OP_SILU:
        yd_f32_silu(value_ptr(s, node->inputs[0]), value_ptr(s, node->output), n);
        break;
    }
}

enum { INPUT_PLANAR, INPUT_LETTERBOX };

static void run(yd_session *s, int kind, const float *planar)
{
    const yd_graph *g = s->model->graph;

#pragma omp parallel num_threads(s->threads)
    {
        /* Flush denormals on every thread of the team: FTZ and DAZ. */
        _mm_setcsr(_mm_getcsr() | 0x8040);

        if (kind == INPUT_PLANAR)
            yd_f32_pack_planar(planar, 3, g->input_height, g->input_width, g->cb,
                               value_ptr(s, g->input));
        else
            yd_f32_pack_rgb8(s->letterbox, g->input_width, g->input_height, g->cb,
                             value_ptr(s, g->input));

        int last = s->stop_after >= 0 && s->stop_after < g->nnodes ? s->stop_after : g->nnodes - 1;

        for (int i = 0; i <= last; i++) {
            if (g->nodes[i].dead)
                continue;
            run_node(s, &g->nodes[i]);
            if (s->observe) {
#pragma omp barrier
                s->observe(s, i, value_ptr(s, g->nodes[i].output), s->observe_user);
#pragma omp barrier
            }
        }

        for (int l = 0; l < g->nlevels && last == g->nnodes - 1; l++) {
            const yd_value *box = &g->values[g->head_box[l]];
            const yd_value *cls = &g->values[g->head_cls[l]];

            yd_f32_unpack_planar(value_ptr(s, g->head_box[l]), box->c, box->h, box->w, g->cb,
                                 (float *)s->maps.level[l].box);
            yd_f32_unpack_planar(value_ptr(s, g->head_cls[l]), cls->c, cls->h, cls->w, g->cb,
                                 (float *)s->maps.level[l].cls);
        }
    }
}

void yd_session_warm_up(yd_session *s)
{
    const yd_graph *g = s->model->graph;

    memset(s->letterbox, 114, (size_t)g->input_width * g->input_height * 3);
    run(s, INPUT_LETTERBOX, NULL);
}

void yd_session_run_planar(yd_session *s, const float *input)
{
    run(s, INPUT_PLANAR, input);
}

void yd_session_run_letterbox(yd_session *s)
{
    run(s, INPUT_LETTERBOX, NULL);
}

int yd_session_run_image(yd_session *s, const yd_image *image, yd_letterbox *lb, yd_error *err)
{
    int rc;

    yd_letterbox_compute_rect(image->width, image->height, s->model->input_width,
                              s->model->input_height, lb);
    rc = yd_letterbox_rgb8(image, lb, s->letterbox, err);
    if (rc == YD_OK)
        yd_session_run_letterbox(s);
    return rc;
}

int yd_detect(yd_session *s, const yd_image *image, const yd_detect_params *params,
              yd_result *result, yd_error *err)
{
    const yd_model *model = s->model;
    yd_letterbox lb;
    double t0, t1, t2, t3;
    int count, rc;

    memset(result, 0, sizeof *result);
    if (!image || !image->rgb || image->width <= 0 || image->height <= 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "no image");
    if (params->max_det < 1 || params->max_det > s->capacity)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "max_det %d is outside 1..%d",
                            params->max_det, s->capacity);

    t0 = yd_now_ms();
    yd_letterbox_compute_rect(image->width, image->height, model->input_width,
                              model->input_height, &lb);
    rc = yd_letterbox_rgb8(image, &lb, s->letterbox, err);
    if (rc != YD_OK)
        return rc;
    t1 = yd_now_ms();
    yd_session_run_letterbox(s);
    t2 = yd_now_ms();

    count = yd_head_detect(&s->maps, params, s->scratch, s->detections, s->capacity);
    if (count < 0)
        return yd_error_set(err, count, "detection head failed");
    yd_head_unletterbox(s->detections, count, &lb, image->width, image->height);
    result->detections = malloc((size_t)(count ? count : 1) * sizeof *result->detections);
    if (!result->detections)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for %d detections", count);
    memcpy(result->detections, s->detections, (size_t)count * sizeof *result->detections);
    t3 = yd_now_ms();

    result->count = count;
    result->image_width = image->width;
    result->image_height = image->height;
    result->timings.preprocess_ms = t1 - t0;
    result->timings.inference_ms = t2 - t1;
    result->timings.postprocess_ms = t3 - t2;
    return YD_OK;
}

void yd_result_free(yd_result *result)
{
    if (!result)
        return;
    free(result->detections);
    result->detections = NULL;
    result->count = 0;
}
