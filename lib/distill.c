/*
 * Teacher distillation: see distill.h for the method.
 *
 * The trainer keeps every activation of one image in planar [C][H][W]
 * floats, not the engine's blocked layout. It also keeps the pre-activation
 * of every convolution with a fused SiLU. The backward pass runs in reverse
 * node order and adds weight and bias gradients up over a batch. Values
 * from which no trained convolution can be reached get no gradient.
 * A convolution is im2col followed by a blocked GEMM (kernels/gemm.h):
 *     forward   Z  = W col(X)            (out x K) (K x P)
 *     weights   dW += dZ col(X)'         (out x P) (P x K)
 *     inputs    dX += col2im(W' dZ)      (K x out) (out x P)
 * where K = in_c * kh * kw and P the output pixels; a 1x1 stride-1
 * convolution reads X as its own col matrix.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "coco_eval.h"
#include "distill.h"
#include "engine.h"
#include "kernels/gemm.h"
#include "util.h"

struct yd_distill_net {
    const yd_graph *graph;
    int threads;
    float **act;           /* [value] planar activations, NULL when unused */
    float **grad;          /* [value] gradients, NULL for the input and unused values */
    float **pre;           /* [node] conv pre-activations before a fused SiLU */
    float **grad_weight;   /* [node] conv weight gradients */
    float **grad_bias;     /* [node] */
    unsigned char *frozen; /* [node] 1: a conv whose weights are not trained */
    unsigned char *needs;  /* [value] 1: its gradient leads to a trained conv */
    float *col;            /* im2col scratch */
    float *dcol;           /* its gradient */
    float *dz;             /* pre-activation gradient scratch */
    float *anchor_weight;  /* teacher's best class probability per anchor */
    double loss_cls;       /* the class, box and feature terms of the last loss */
    double loss_box;
    double loss_features;
    /* Feature term: the teacher's network, run on the same input before
     * each step, and the convolutions whose outputs are compared. */
    const yd_distill_net *teacher;
    unsigned char *compared; /* [node] */
    int ncompared;
    double feature_weight;
};

static size_t value_floats(const yd_graph *g, int v)
{
    return (size_t)g->values[v].c * g->values[v].h * g->values[v].w;
}

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* log(1 + e^x) without overflow. */
static double softplus(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static int conv_is_direct(const yd_conv_params *c)
{
    return c->kernel_h == 1 && c->kernel_w == 1 && c->stride_h == 1 && c->stride_w == 1 &&
           c->pad_top == 0 && c->pad_left == 0 && c->pad_bottom == 0 && c->pad_right == 0;
}

/* Setup. */

static int check_node(const yd_graph *g, const yd_node *node, yd_error *err)
{
    switch (node->op) {
    case YD_OP_INPUT:
    case YD_OP_MAXPOOL:
    case YD_OP_UPSAMPLE:
    case YD_OP_CONCAT:
    case YD_OP_SLICE:
    case YD_OP_SIGMOID:
    case YD_OP_SILU:
        return YD_OK;
    case YD_OP_ADD:
    case YD_OP_MUL:
        if (node->ninputs != 2 || value_floats(g, node->inputs[0]) != value_floats(g, node->output) ||
            value_floats(g, node->inputs[1]) != value_floats(g, node->output))
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "distillation: '%s' broadcasts; only same-shape %s is supported",
                                node->name, yd_op_name(node->op));
        return YD_OK;
    case YD_OP_CONV:
        if (node->conv.precision == YD_PREC_INT8)
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "distillation: '%s' is int8; distill before quantizing", node->name);
        if (node->conv.in_c != g->values[node->inputs[0]].c)
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "distillation: '%s' is a grouped convolution", node->name);
        return YD_OK;
    }
    return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED, "distillation: '%s' has unsupported op %s",
                        node->name, yd_op_name(node->op));
}

/* Marks the values whose gradient reaches a trained conv, in graph order. */
static void mark_needs(yd_distill_net *net)
{
    const yd_graph *g = net->graph;

    memset(net->needs, 0, (size_t)g->nvalues);
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        int need = node->op == YD_OP_CONV && !net->frozen[i];

        if (node->dead || node->op == YD_OP_INPUT)
            continue;
        for (int k = 0; k < node->ninputs; k++)
            need |= net->needs[node->inputs[k]];
        if (node->residual >= 0)
            need |= net->needs[node->residual];
        net->needs[node->output] = (unsigned char)need;
    }
}

void yd_distill_net_set_frozen(yd_distill_net *net, int node, int frozen)
{
    net->frozen[node] = (unsigned char)(frozen != 0);
    mark_needs(net);
}

void yd_distill_net_destroy(yd_distill_net *net)
{
    if (!net)
        return;
    for (int v = 0; v < net->graph->nvalues; v++) {
        free(net->act[v]);
        free(net->grad[v]);
    }
    for (int i = 0; i < net->graph->nnodes; i++) {
        free(net->pre[i]);
        free(net->grad_weight[i]);
        free(net->grad_bias[i]);
    }
    free(net->act);
    free(net->grad);
    free(net->pre);
    free(net->grad_weight);
    free(net->grad_bias);
    free(net->frozen);
    free(net->needs);
    free(net->col);
    free(net->dcol);
    free(net->dz);
    free(net->anchor_weight);
    free(net->compared);
    free(net);
}

/* Creates a network; a forward-only one (for the teacher) has no gradients. */
static int net_create(const yd_graph *g, int threads, int forward_only, yd_distill_net **out,
                      yd_error *err)
{
    yd_distill_net *net = calloc(1, sizeof *net);
    size_t col = 1, dz = 1, anchors = 1;
    int rc = YD_OK;

    *out = NULL;
    if (!net)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for distillation");
    net->graph = g;
    net->threads = threads > 0 ? threads : omp_get_max_threads();
    net->act = calloc((size_t)g->nvalues, sizeof *net->act);
    net->grad = calloc((size_t)g->nvalues, sizeof *net->grad);
    net->pre = calloc((size_t)g->nnodes, sizeof *net->pre);
    net->grad_weight = calloc((size_t)g->nnodes, sizeof *net->grad_weight);
    net->grad_bias = calloc((size_t)g->nnodes, sizeof *net->grad_bias);
    net->frozen = calloc((size_t)g->nnodes, 1);
    net->needs = calloc((size_t)g->nvalues, 1);
    if (!net->act || !net->grad || !net->pre || !net->grad_weight || !net->grad_bias ||
        !net->frozen || !net->needs)
        goto no_memory;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        int v = node->output;

        if (node->dead)
            continue;
        rc = check_node(g, node, err);
        if (rc != YD_OK)
            goto fail;
        net->act[v] = malloc(value_floats(g, v) * sizeof(float));
        if (!net->act[v])
            goto no_memory;
        if (node->op != YD_OP_INPUT && !forward_only) {
            net->grad[v] = malloc(value_floats(g, v) * sizeof(float));
            if (!net->grad[v])
                goto no_memory;
        }
        if (node->op != YD_OP_CONV)
            continue;

        const yd_conv_params *c = &node->conv;
        size_t k = (size_t)c->in_c * c->kernel_h * c->kernel_w;
        size_t pixels = (size_t)g->values[v].h * g->values[v].w;

        if (!conv_is_direct(c) && k * pixels > col)
            col = k * pixels;
        if (value_floats(g, v) > dz)
            dz = value_floats(g, v);
        if (c->act == YD_ACT_SILU && !(net->pre[i] = malloc(value_floats(g, v) * sizeof(float))))
            goto no_memory;
        if (forward_only) {
            net->frozen[i] = 1;
            continue;
        }
        net->grad_weight[i] = calloc((size_t)c->out_c * k, sizeof(float));
        net->grad_bias[i] = calloc((size_t)c->out_c, sizeof(float));
        if (!net->grad_weight[i] || !net->grad_bias[i])
            goto no_memory;
    }
    for (int l = 0; l < g->nlevels; l++) {
        if (!net->act[g->head_box[l]] || !net->act[g->head_cls[l]] ||
            g->values[g->head_box[l]].c != 4 * YD_HEAD_REG_MAX) {
            rc = yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                              "distillation: head level %d is not a live DFL head", l);
            goto fail;
        }
        anchors += (size_t)g->values[g->head_box[l]].h * g->values[g->head_box[l]].w;
    }
    net->col = malloc(col * sizeof(float));
    net->dcol = forward_only ? NULL : malloc(col * sizeof(float));
    net->dz = forward_only ? NULL : malloc(dz * sizeof(float));
    net->anchor_weight = malloc(anchors * sizeof(float));
    if (!net->col || (!forward_only && (!net->dcol || !net->dz)) || !net->anchor_weight)
        goto no_memory;
    mark_needs(net);
    *out = net;
    return YD_OK;

no_memory:
    rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for distillation");
fail:
    yd_distill_net_destroy(net);
    return rc;
}

int yd_distill_net_create(const yd_graph *g, int threads, yd_distill_net **out, yd_error *err)
{
    return net_create(g, threads, 0, out, err);
}

int yd_distill_net_create_teacher(const yd_graph *g, int threads, yd_distill_net **out, yd_error *err)
{
    return net_create(g, threads, 1, out, err);
}

int yd_distill_net_set_feature_teacher(yd_distill_net *net, const yd_distill_net *teacher,
                                       double weight, yd_error *err)
{
    const yd_graph *g = net->graph;

    net->teacher = NULL;
    net->ncompared = 0;
    if (!teacher || !(weight > 0))
        return YD_OK;
    if (teacher->graph->nnodes != g->nnodes)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "distillation: student and teacher graphs differ");
    if (!net->compared && !(net->compared = calloc((size_t)g->nnodes, 1)))
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for distillation");
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *sn = &g->nodes[i], *tn = &teacher->graph->nodes[i];
        int head = 0;

        net->compared[i] = 0;
        if (sn->dead || sn->op != YD_OP_CONV || !net->needs[sn->output])
            continue;
        for (int l = 0; l < g->nlevels; l++)
            head |= sn->output == g->head_cls[l] || sn->output == g->head_box[l];
        if (head)
            continue;
        if (tn->op != YD_OP_CONV || tn->dead ||
            g->values[sn->output].h != teacher->graph->values[tn->output].h ||
            g->values[sn->output].w != teacher->graph->values[tn->output].w ||
            (!sn->conv.source_channels && sn->conv.out_c != tn->conv.out_c))
            return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                "distillation: layer %s differs between student and teacher",
                                sn->name ? sn->name : "?");
        net->compared[i] = 1;
        net->ncompared++;
    }
    net->teacher = teacher;
    net->feature_weight = weight;
    return YD_OK;
}
float *yd_distill_net_gradient(yd_distill_net *net, int node, int bias)
{
    return bias ? net->grad_bias[node] : net->grad_weight[node];
}

void yd_distill_net_zero_gradients(yd_distill_net *net)
{
    const yd_graph *g = net->graph;

    for (int i = 0; i < g->nnodes; i++) {
        if (!net->grad_weight[i])
            continue;
        memset(net->grad_weight[i], 0, (size_t)g->nodes[i].conv.out_c * g->nodes[i].conv.in_c *
               g->nodes[i].conv.kernel_h * g->nodes[i].conv.kernel_w * sizeof(float));
        memset(net->grad_bias[i], 0, (size_t)g->nodes[i].conv.out_c * sizeof(float));
    }
}

/* Convolution. */

static void im2col(const yd_conv_params *c, const float *x, int h, int w, int oh, int ow,
                   float *col, int threads)
{
    int rows = c->in_c * c->kernel_h * c->kernel_w, taps = c->kernel_h * c->kernel_w;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < rows; r++) {
        int ic = r / taps, ky = r % taps / c->kernel_w, kx = r % c->kernel_w;
        float *dst = col + (size_t)r * oh * ow;

        for (int oy = 0; oy < oh; oy++) {
            int iy = oy * c->stride_h - c->pad_top + ky;
            const float *src = x + ((size_t)ic * h + iy) * w;
            float *d = dst + (size_t)oy * ow;

            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)ow * sizeof *d);
                continue;
            }
            for (int ox = 0; ox < ow; ox++) {
                int ix = ox * c->stride_w - c->pad_left + kx;

                d[ox] = ix >= 0 && ix < w ? src[ix] : 0.0f;
            }
        }
    }
}

/* dx += col2im(dcol), the adjoint of im2col. */
static void col2im_add(const yd_conv_params *c, const float *dcol, int h, int w, int oh, int ow,
                       float *dx, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int ic = 0; ic < c->in_c; ic++) {
        for (int ky = 0; ky < c->kernel_h; ky++) {
            for (int kx = 0; kx < c->kernel_w; kx++) {
                int r = (ic * c->kernel_h + ky) * c->kernel_w + kx;
                const float *src = dcol + (size_t)r * oh * ow;

                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * c->stride_h - c->pad_top + ky;
                    float *d = dx + ((size_t)ic * h + iy) * w;

                    if (iy < 0 || iy >= h)
                        continue;
                    for (int ox = 0; ox < ow; ox++) {
                        int ix = ox * c->stride_w - c->pad_left + kx;

                        if (ix >= 0 && ix < w)
                            d[ix] += src[(size_t)oy * ow + ox];
                    }
                }
            }
        }
    }
}

static void conv_forward(yd_distill_net *net, int index)
{
    const yd_graph *g = net->graph;
    const yd_node *node = &g->nodes[index];
    const yd_conv_params *c = &node->conv;
    const yd_value *in = &g->values[node->inputs[0]], *out = &g->values[node->output];
    int k = c->in_c * c->kernel_h * c->kernel_w, pixels = out->h * out->w;
    const float *x = net->act[node->inputs[0]];
    const float *res = node->residual >= 0 ? net->act[node->residual] : NULL;
    float *y = net->act[node->output];
    float *z = net->pre[index] ? net->pre[index] : y;
    const float *col = x;

    if (!conv_is_direct(c)) {
        im2col(c, x, in->h, in->w, out->h, out->w, net->col, net->threads);
        col = net->col;
    }
    yd_gemm_f32(0, 0, c->out_c, pixels, k, c->weight, (size_t)k, col, (size_t)pixels, z,
                (size_t)pixels, 0, net->threads);

#pragma omp parallel for schedule(static) num_threads(net->threads)
    for (int o = 0; o < c->out_c; o++) {
        float b = c->bias[o];
        float *zo = z + (size_t)o * pixels, *yo = y + (size_t)o * pixels;
        const float *ro = res ? res + (size_t)o * pixels : NULL;

        for (int p = 0; p < pixels; p++) {
            float v = zo[p] + b;

            zo[p] = v;
            if (c->act == YD_ACT_SILU)
                v *= sigmoid(v);
            yo[p] = ro ? v + ro[p] : v;
        }
    }
}

/* Returns the gradient buffer of value v, or NULL when no trained conv comes
 * before v in the graph (nothing would use the gradient). */
static float *input_grad(yd_distill_net *net, int v)
{
    return net->needs[v] ? net->grad[v] : NULL;
}

static void conv_backward(yd_distill_net *net, int index)
{
    const yd_graph *g = net->graph;
    const yd_node *node = &g->nodes[index];
    const yd_conv_params *c = &node->conv;
    const yd_value *in = &g->values[node->inputs[0]], *out = &g->values[node->output];
    int k = c->in_c * c->kernel_h * c->kernel_w, pixels = out->h * out->w;
    const float *x = net->act[node->inputs[0]], *gy = net->grad[node->output];
    const float *z = net->pre[index];
    float *gres = node->residual >= 0 ? input_grad(net, node->residual) : NULL;
    float *gx = input_grad(net, node->inputs[0]), *gb = net->grad_bias[index];
    int train = !net->frozen[index];
    const float *dz = z ? net->dz : gy;
    const float *col = x;

#pragma omp parallel for schedule(static) num_threads(net->threads)
    for (int o = 0; o < c->out_c; o++) {
        size_t base = (size_t)o * pixels;
        double sum = 0;

        for (int p = 0; p < pixels; p++) {
            float d = gy[base + p];

            if (gres)
                gres[base + p] += d;
            if (z) {
                float s = sigmoid(z[base + p]);

                d *= s * (1.0f + z[base + p] * (1.0f - s));
                net->dz[base + p] = d;
            }
            sum += d;
        }
        if (train)
            gb[o] += (float)sum;
    }

    if (train) {
        if (!conv_is_direct(c)) {
            im2col(c, x, in->h, in->w, out->h, out->w, net->col, net->threads);
            col = net->col;
        }
        yd_gemm_f32(0, 1, c->out_c, k, pixels, dz, (size_t)pixels, col, (size_t)pixels,
                    net->grad_weight[index], (size_t)k, 1, net->threads);
    }
    if (!gx)
        return;
    if (conv_is_direct(c)) {
        yd_gemm_f32(1, 0, k, pixels, c->out_c, c->weight, (size_t)k, dz, (size_t)pixels, gx,
                    (size_t)pixels, 1, net->threads);
    } else {
        yd_gemm_f32(1, 0, k, pixels, c->out_c, c->weight, (size_t)k, dz, (size_t)pixels,
                    net->dcol, (size_t)pixels, 0, net->threads);
        col2im_add(c, net->dcol, in->h, in->w, out->h, out->w, gx, net->threads);
    }
}

/* Other nodes. */

/* The first position of the maximum in the pooling window, or -1 when the
 * window holds only padding. */
static long pool_argmax(const float *plane, int h, int w, const yd_node *node, int oy, int ox)
{
    long best = -1;
    float max = -INFINITY;

    for (int ky = 0; ky < node->pool_kernel; ky++) {
        int iy = oy * node->pool_stride - node->pool_pad + ky;

        if (iy < 0 || iy >= h)
            continue;
        for (int kx = 0; kx < node->pool_kernel; kx++) {
            int ix = ox * node->pool_stride - node->pool_pad + kx;

            if (ix >= 0 && ix < w && (best < 0 || plane[(size_t)iy * w + ix] > max)) {
                max = plane[(size_t)iy * w + ix];
                best = (long)iy * w + ix;
            }
        }
    }
    return best;
}

static void node_forward(yd_distill_net *net, int index)
{
    const yd_graph *g = net->graph;
    const yd_node *node = &g->nodes[index];
    const yd_value *out = &g->values[node->output];
    const yd_value *in = node->ninputs > 0 ? &g->values[node->inputs[0]] : NULL;
    const float *x = node->ninputs > 0 ? net->act[node->inputs[0]] : NULL;
    float *y = net->act[node->output];
    size_t n = value_floats(g, node->output), in_plane = in ? (size_t)in->h * in->w : 0;
    size_t plane = (size_t)out->h * out->w;
    int t = net->threads;

    switch (node->op) {
    case YD_OP_INPUT:
        break;
    case YD_OP_CONV:
        conv_forward(net, index);
        break;
    case YD_OP_MAXPOOL:
#pragma omp parallel for schedule(static) num_threads(t)
        for (int ch = 0; ch < out->c; ch++)
            for (int oy = 0; oy < out->h; oy++)
                for (int ox = 0; ox < out->w; ox++) {
                    const float *src = x + ch * in_plane;
                    long at = pool_argmax(src, in->h, in->w, node, oy, ox);

                    y[ch * plane + (size_t)oy * out->w + ox] = at < 0 ? -INFINITY : src[at];
                }
        break;
    case YD_OP_UPSAMPLE:
#pragma omp parallel for schedule(static) num_threads(t)
        for (int ch = 0; ch < out->c; ch++)
            for (int oy = 0; oy < out->h; oy++)
                for (int ox = 0; ox < out->w; ox++)
                    y[ch * plane + (size_t)oy * out->w + ox] =
                        x[ch * in_plane + (size_t)(oy / node->scale) * in->w + ox / node->scale];
        break;
    case YD_OP_CONCAT: {
        size_t at = 0;

        for (int k = 0; k < node->ninputs; k++) {
            size_t m = value_floats(g, node->inputs[k]);

            memcpy(y + at, net->act[node->inputs[k]], m * sizeof *y);
            at += m;
        }
        break;
    }
    case YD_OP_SLICE:
        memcpy(y, x + (size_t)node->slice_begin * plane, n * sizeof *y);
        break;
    case YD_OP_ADD:
    case YD_OP_MUL: {
        const float *x1 = net->act[node->inputs[1]];

#pragma omp parallel for schedule(static) num_threads(t)
        for (size_t i = 0; i < n; i++)
            y[i] = node->op == YD_OP_ADD ? x[i] + x1[i] : x[i] * x1[i];
        break;
    }
    case YD_OP_SIGMOID:
    case YD_OP_SILU:
#pragma omp parallel for schedule(static) num_threads(t)
        for (size_t i = 0; i < n; i++)
            y[i] = node->op == YD_OP_SIGMOID ? sigmoid(x[i]) : x[i] * sigmoid(x[i]);
        break;
    }
}

static void add_into(float *dst, const float *src, size_t n, int threads)
{
    if (!dst)
        return;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static void node_backward(yd_distill_net *net, int index)
{
    const yd_graph *g = net->graph;
    const yd_node *node = &g->nodes[index];
    const yd_value *out = &g->values[node->output];
    const yd_value *in = node->ninputs > 0 ? &g->values[node->inputs[0]] : NULL;
    const float *x = node->ninputs > 0 ? net->act[node->inputs[0]] : NULL;
    float *gx = node->ninputs > 0 ? input_grad(net, node->inputs[0]) : NULL;
    const float *gy = net->grad[node->output];
    size_t n = value_floats(g, node->output), in_plane = in ? (size_t)in->h * in->w : 0;
    size_t plane = (size_t)out->h * out->w;
    int t = net->threads;

    switch (node->op) {
    case YD_OP_INPUT:
        break;
    case YD_OP_CONV:
        conv_backward(net, index);
        break;
    case YD_OP_MAXPOOL:
        if (!gx)
            break;
        /* Channels are independent, so threads never add to one element. */
#pragma omp parallel for schedule(static) num_threads(t)
        for (int ch = 0; ch < out->c; ch++)
            for (int oy = 0; oy < out->h; oy++)
                for (int ox = 0; ox < out->w; ox++) {
                    long at = pool_argmax(x + ch * in_plane, in->h, in->w, node, oy, ox);

                    if (at >= 0)
                        gx[ch * in_plane + at] += gy[ch * plane + (size_t)oy * out->w + ox];
                }
        break;
    case YD_OP_UPSAMPLE:
        if (!gx)
            break;
#pragma omp parallel for schedule(static) num_threads(t)
        for (int ch = 0; ch < out->c; ch++)
            for (int oy = 0; oy < out->h; oy++)
                for (int ox = 0; ox < out->w; ox++)
                    gx[ch * in_plane + (size_t)(oy / node->scale) * in->w + ox / node->scale] +=
                        gy[ch * plane + (size_t)oy * out->w + ox];
        break;
    case YD_OP_CONCAT: {
        size_t at = 0;

        for (int k = 0; k < node->ninputs; k++) {
            size_t m = value_floats(g, node->inputs[k]);

            add_into(input_grad(net, node->inputs[k]), gy + at, m, t);
            at += m;
        }
        break;
    }
    case YD_OP_SLICE:
        if (gx)
            add_into(gx + (size_t)node->slice_begin * plane, gy, n, t);
        break;
    case YD_OP_ADD:
        add_into(gx, gy, n, t);
        add_into(input_grad(net, node->inputs[1]), gy, n, t);
        break;
    case YD_OP_MUL: {
        const float *x1 = net->act[node->inputs[1]];
        float *gx1 = input_grad(net, node->inputs[1]);

        /* Both operands may be one value (x * x): add, never assign. */
        for (size_t i = 0; i < n; i++) {
            float d = gy[i], a = x[i], b = x1[i];

            if (gx)
                gx[i] += d * b;
            if (gx1)
                gx1[i] += d * a;
        }
        break;
    }
    case YD_OP_SIGMOID:
    case YD_OP_SILU:
        if (!gx)
            break;
#pragma omp parallel for schedule(static) num_threads(t)
        for (size_t i = 0; i < n; i++) {
            float s = sigmoid(x[i]);

            gx[i] += node->op == YD_OP_SIGMOID ? gy[i] * s * (1.0f - s)
                                               : gy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    }
}

/* Loss. */

/*
 * Returns the distillation loss of the student's head (see distill.h) minus
 * the teacher's entropies. With backward set, it also writes scale times the
 * loss gradient into the gradients of the head values.
 */
static double head_loss(yd_distill_net *net, const yd_head_maps *teacher, int backward, float scale)
{
    const yd_graph *g = net->graph;
    int nc = g->nc;
    double total_weight = 0, loss_cls = 0, loss_box = 0;
    size_t first = 0;

    for (int l = 0; l < g->nlevels; l++) {
        const float *tc = teacher->level[l].cls;
        size_t plane = (size_t)g->values[g->head_cls[l]].h * g->values[g->head_cls[l]].w;

#pragma omp parallel for schedule(static) reduction(+ : total_weight) num_threads(net->threads)
        for (size_t p = 0; p < plane; p++) {
            float best = tc[p];

            for (int c = 1; c < nc; c++)
                best = tc[(size_t)c * plane + p] > best ? tc[(size_t)c * plane + p] : best;
            net->anchor_weight[first + p] = sigmoid(best);
            total_weight += sigmoid(best);
        }
        first += plane;
    }

    double norm = 1.0 / (total_weight > 1.0 ? total_weight : 1.0);
    float gscale = (float)(norm * scale);

    first = 0;
    for (int l = 0; l < g->nlevels; l++) {
        const float *tc = teacher->level[l].cls, *tb = teacher->level[l].box;
        const float *sc = net->act[g->head_cls[l]], *sb = net->act[g->head_box[l]];
        float *gc = net->grad[g->head_cls[l]], *gb = net->grad[g->head_box[l]];
        size_t plane = (size_t)g->values[g->head_cls[l]].h * g->values[g->head_cls[l]].w;
        const float *weight = net->anchor_weight + first;

#pragma omp parallel for schedule(static) reduction(+ : loss_cls, loss_box) num_threads(net->threads)
        for (size_t p = 0; p < plane; p++) {
            double sum = 0, box = 0;

            for (int c = 0; c < nc; c++) {
                size_t at = (size_t)c * plane + p;
                double s = sc[at], t = tc[at], pt = 1.0 / (1.0 + exp(-t));

                /* KL of Bernoullis: BCE(s; pt) minus the entropy of pt. */
                sum += softplus(s) - softplus(t) - pt * (s - t);
                if (backward)
                    gc[at] = (float)((1.0 / (1.0 + exp(-s)) - pt) * gscale);
            }
            for (int side = 0; side < 4; side++) {
                size_t base = (size_t)side * YD_HEAD_REG_MAX * plane + p;
                double smax = -INFINITY, tmax = -INFINITY, ssum = 0, tsum = 0, kl = 0;
                double ps[YD_HEAD_REG_MAX], pt[YD_HEAD_REG_MAX];

                for (int b = 0; b < YD_HEAD_REG_MAX; b++) {
                    smax = fmax(smax, sb[base + b * plane]);
                    tmax = fmax(tmax, tb[base + b * plane]);
                }
                for (int b = 0; b < YD_HEAD_REG_MAX; b++) {
                    ps[b] = exp(sb[base + b * plane] - smax);
                    pt[b] = exp(tb[base + b * plane] - tmax);
                    ssum += ps[b];
                    tsum += pt[b];
                }
                for (int b = 0; b < YD_HEAD_REG_MAX; b++) {
                    double ls = sb[base + b * plane] - smax - log(ssum);
                    double lt = tb[base + b * plane] - tmax - log(tsum);

                    ps[b] /= ssum;
                    pt[b] /= tsum;
                    kl += pt[b] * (lt - ls);
                    if (backward)
                        gb[base + b * plane] = (float)(weight[p] * (ps[b] - pt[b]) * gscale);
                }
                box += weight[p] * kl;
            }
            loss_cls += sum;
            loss_box += box;
        }
        first += plane;
    }
    net->loss_cls = loss_cls * norm;
    net->loss_box = loss_box * norm;
    return net->loss_cls + net->loss_box;
}

/*
 * Returns the feature term: feature_weight times the mean, over the compared
 * convolutions, of the squared error of each output channel against the
 * teacher channel it was kept from, divided by the teacher's squared values
 * there. With backward set, it adds scale times its gradient to theirs.
 */
static double feature_loss(yd_distill_net *net, int backward, float scale)
{
    const yd_graph *g = net->graph, *tg = net->teacher->graph;
    double total = 0;

    for (int i = 0; i < g->nnodes; i++) {
        if (!net->compared[i])
            continue;

        const yd_node *sn = &g->nodes[i];
        const int *source = sn->conv.source_channels;
        const yd_value *sv = &g->values[sn->output];
        size_t plane = (size_t)sv->h * sv->w;
        const float *s = net->act[sn->output], *t = net->teacher->act[tg->nodes[i].output];
        double error = 0, energy = 0, w;

#pragma omp parallel for schedule(static) reduction(+ : error, energy) num_threads(net->threads)
        for (int c = 0; c < sv->c; c++) {
            const float *sp = s + (size_t)c * plane, *tp = t + (size_t)(source ? source[c] : c) * plane;

            for (size_t p = 0; p < plane; p++) {
                double d = (double)sp[p] - tp[p];

                error += d * d;
                energy += (double)tp[p] * tp[p];
            }
        }
        if (!(energy > 0))
            continue;
        w = net->feature_weight / net->ncompared / energy;
        total += w * error;
        if (!backward)
            continue;

        float *gs = net->grad[sn->output];
        float k = (float)(2.0 * w * scale);

#pragma omp parallel for schedule(static) num_threads(net->threads)
        for (int c = 0; c < sv->c; c++) {
            const float *sp = s + (size_t)c * plane, *tp = t + (size_t)(source ? source[c] : c) * plane;
            float *gp = gs + (size_t)c * plane;

            for (size_t p = 0; p < plane; p++)
                gp[p] += k * (sp[p] - tp[p]);
        }
    }
    return total;
}

void yd_distill_net_forward(yd_distill_net *net, const float *input)
{
    const yd_graph *g = net->graph;

    memcpy(net->act[g->input], input, value_floats(g, g->input) * sizeof(float));
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead)
            node_forward(net, i);
}

double yd_distill_net_step(yd_distill_net *net, const float *input, const yd_head_maps *teacher,
                           int backward, float scale)
{
    const yd_graph *g = net->graph;
    double loss;

    yd_distill_net_forward(net, input);
    if (backward)
        for (int v = 0; v < g->nvalues; v++)
            if (net->grad[v] && net->needs[v])
                memset(net->grad[v], 0, value_floats(g, v) * sizeof(float));
    loss = head_loss(net, teacher, backward, scale);
    net->loss_features = net->teacher ? feature_loss(net, backward, scale) : 0;
    loss += net->loss_features;
    if (backward)
        for (int i = g->nnodes - 1; i >= 0; i--)
            if (!g->nodes[i].dead && net->needs[g->nodes[i].output])
                node_backward(net, i);
    return loss;
}

/* Training. */

typedef struct adam_state {
    float *m, *v;          /* first and second moments, weights then bias */
} adam_state;

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Converts a letterboxed RGB8 frame to planar [3][H][W] floats of pixel / 255,
 * mirrored left to right when `flip` is set. */
static void to_planar(const uint8_t *rgb, int width, int height, int flip, float *out)
{
    size_t plane = (size_t)width * height;

    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            const uint8_t *px = rgb + ((size_t)y * width + (flip ? width - 1 - x : x)) * 3;

            for (int c = 0; c < 3; c++)
                out[c * plane + (size_t)y * width + x] = (float)px[c] / 255.0f;
        }
}

/* Returns a uniform random number in [0, 1). */
static double next_uniform(uint64_t *state)
{
    return (double)(next_random(state) >> 11) * 0x1.0p-53;
}

/*
 * Writes the planar image `in` scaled by `scale` about its centre and moved by
 * (dx, dy) pixels into `out`, by bilinear interpolation. Pixels with no
 * source get the letterbox gray (114).
 */
static void zoom_planar(const float *in, int width, int height, double scale, double dx, double dy,
                        float *out)
{
    size_t plane = (size_t)width * height;
    double cx = width / 2.0, cy = height / 2.0;

#pragma omp parallel for schedule(static)
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            double sx = (x + 0.5 - cx - dx) / scale + cx - 0.5, sy = (y + 0.5 - cy - dy) / scale + cy - 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;

            for (int c = 0; c < 3; c++) {
                const float *p = in + c * plane;
                double v = 0;

                for (int k = 0; k < 4; k++) {
                    int xx = x0 + (k & 1), yy = y0 + (k >> 1);
                    double weight = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
                    int inside = xx >= 0 && yy >= 0 && xx < width && yy < height;

                    v += weight * (inside ? p[(size_t)yy * width + xx] : 114.0 / 255.0);
                }
                out[c * plane + (size_t)y * width + x] = (float)v;
            }
        }
}

/* Returns the learning rate of step `step` of `total`. It rises linearly over
 * the first tenth, then follows a cosine from the peak down to 5% of it. */
static double schedule(double peak, int step, int total)
{
    int warmup = total / 10 > 1 ? total / 10 : 1;
    double progress;

    if (step < warmup)
        return peak * (step + 1) / warmup;
    progress = (double)(step - warmup) / (total - warmup > 1 ? total - warmup : 1);
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + cos(M_PI * progress)));
}

static void adam_update(yd_distill_net *net, yd_graph *g, adam_state *state, double lr, int t,
                        double bias_scale)
{
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double c1 = 1.0 - pow(beta1, t), c2 = 1.0 - pow(beta2, t);

    for (int i = 0; i < g->nnodes; i++) {
        yd_conv_params *c = &g->nodes[i].conv;
        size_t nw, n;

        if (!net->grad_weight[i] || net->frozen[i])
            continue;
        nw = (size_t)c->out_c * c->in_c * c->kernel_h * c->kernel_w;
        n = nw + (size_t)c->out_c;
#pragma omp parallel for schedule(static) num_threads(net->threads)
        for (size_t j = 0; j < n; j++) {
            float grad = j < nw ? net->grad_weight[i][j] : net->grad_bias[i][j - nw];
            float *param = j < nw ? &c->weight[j] : &c->bias[j - nw];
            float m = state[i].m[j] = (float)(beta1 * state[i].m[j] + (1 - beta1) * grad);
            float v = state[i].v[j] = (float)(beta2 * state[i].v[j] + (1 - beta2) * grad * grad);

            *param -= (float)((j < nw ? lr : lr * bias_scale) * (m / c1) / (sqrt(v / c2) + eps));
        }
    }
}

/* Copies the trained convolutions' weights and biases into `saved` (one
 * buffer per node, as the Adam moments), or back when `restore` is set. */
static void copy_params(const yd_distill_net *net, yd_graph *g, float **saved, int restore)
{
    for (int i = 0; i < g->nnodes; i++) {
        yd_conv_params *c = &g->nodes[i].conv;
        size_t nw = (size_t)c->out_c * c->in_c * c->kernel_h * c->kernel_w;

        if (!saved[i] || net->frozen[i])
            continue;
        if (restore) {
            memcpy(c->weight, saved[i], nw * sizeof(float));
            memcpy(c->bias, saved[i] + nw, (size_t)c->out_c * sizeof(float));
        } else {
            memcpy(saved[i], c->weight, nw * sizeof(float));
            memcpy(saved[i] + nw, c->bias, (size_t)c->out_c * sizeof(float));
        }
    }
}

/*
 * Held-out agreement. The teacher's detections on the held-out images
 * (confidence above 0.25, as a user would see them) are the ground truth.
 * The student's detections at evaluation settings (confidence 0.001, every
 * class above it per anchor) are scored against them by COCO mAP50-95.
 * Unlike the loss, which background anchors dominate, this drops when the
 * student misses or misplaces the teacher's objects.
 */
typedef struct agreement {
    yd_coco_dataset truth;
    yd_coco_detection *found;
    yd_detection *detections;
    yd_head_scratch *scratch;
    int cap;
} agreement;

static void agreement_free(agreement *check)
{
    free(check->truth.images);
    free(check->truth.categories);
    free(check->truth.annotations);
    free(check->found);
    free(check->detections);
    yd_head_scratch_destroy(check->scratch);
}

/* Returns the student's head maps, which the planar trainer keeps in the head's layout. */
static yd_head_maps student_maps(const yd_distill_net *net, const yd_head_maps *teacher)
{
    const yd_graph *g = net->graph;
    yd_head_maps maps = *teacher;

    for (int l = 0; l < g->nlevels; l++) {
        maps.level[l].box = net->act[g->head_box[l]];
        maps.level[l].cls = net->act[g->head_cls[l]];
    }
    return maps;
}

/* Runs the teacher on the `count` held-out frames and keeps its detections. */
static int agreement_create(agreement *check, yd_session *ts, const uint8_t *frames, int count,
                            int width, int height, float *input, yd_error *err)
{
    size_t frame = (size_t)width * height * 3;
    yd_detect_params user;
    int nc = ts->maps.nc, anchors = yd_head_anchor_count(&ts->maps);

    memset(check, 0, sizeof *check);
    yd_detect_params_default(&user);
    check->cap = 300;
    check->truth.image_count = (size_t)count;
    check->truth.category_count = (size_t)nc;
    check->truth.images = calloc((size_t)count, sizeof *check->truth.images);
    check->truth.categories = calloc((size_t)nc, sizeof *check->truth.categories);
    check->truth.annotations = malloc((size_t)count * check->cap * sizeof *check->truth.annotations);
    check->found = malloc((size_t)count * check->cap * sizeof *check->found);
    check->detections = malloc((size_t)check->cap * sizeof *check->detections);
    check->scratch = yd_head_scratch_create(nc, anchors);
    if (!check->truth.images || !check->truth.categories || !check->truth.annotations || !check->found ||
        !check->detections || !check->scratch)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for distillation");
    for (int c = 0; c < nc; c++)
        check->truth.categories[c].id = c;
    for (int i = 0; i < count; i++) {
        int n;

        check->truth.images[i].id = i;
        to_planar(frames + frame * i, width, height, 0, input);
        yd_session_run_planar(ts, input);
        n = yd_head_detect(&ts->maps, &user, check->scratch, check->detections, check->cap);
        for (int k = 0; k < n; k++) {
            const yd_box *b = &check->detections[k].box;
            yd_coco_annotation *t = &check->truth.annotations[check->truth.annotation_count];

            *t = (yd_coco_annotation){.id = (int64_t)check->truth.annotation_count + 1, .image_id = i,
                                      .category_id = check->detections[k].class_id,
                                      .bbox = {b->x1, b->y1, b->x2 - b->x1, b->y2 - b->y1},
                                      .area = (double)(b->x2 - b->x1) * (b->y2 - b->y1)};
            check->truth.annotation_count++;
        }
    }
    return YD_OK;
}

/* Adds the student's detections on held-out image `image`, from its last forward pass. */
static size_t add_found(agreement *check, const yd_distill_net *net, const yd_head_maps *teacher,
                        int image, size_t found)
{
    yd_detect_params eval = {.conf = 0.001f, .iou = 0.7f, .max_det = check->cap, .multi_label = true};
    yd_head_maps maps = student_maps(net, teacher);
    int n = yd_head_detect(&maps, &eval, check->scratch, check->detections, check->cap);

    for (int k = 0; k < n; k++) {
        const yd_box *b = &check->detections[k].box;

        check->found[found++] = (yd_coco_detection){
            .image_id = image, .category_id = check->detections[k].class_id,
            .bbox = {b->x1, b->y1, b->x2 - b->x1, b->y2 - b->y1},
            .score = check->detections[k].confidence};
    }
    return found;
}

/* Measures the student on the held-out frames: its mean loss into
 * e->holdout* and its agreement with the teacher into e->agreement (NaN
 * when the teacher found nothing to score against). */
static void holdout_measure(yd_distill_net *net, yd_session *ts, agreement *check,
                            const uint8_t *frames, int width, int height, float *input,
                            yd_distill_epoch *e)
{
    int count = (int)check->truth.image_count;
    size_t frame = (size_t)width * height * 3, found = 0;
    double stats[YD_COCO_STAT_COUNT];
    yd_error err;

    /* The held-out loss counts only the head terms, because the teacher net
     * has not run on these frames. */
    const yd_distill_net *teacher = net->teacher;

    net->teacher = NULL;
    e->holdout = e->holdout_cls = e->holdout_box = 0;
    for (int i = 0; i < count; i++) {
        to_planar(frames + frame * i, width, height, 0, input);
        yd_session_run_planar(ts, input);
        e->holdout += yd_distill_net_step(net, input, &ts->maps, 0, 0) / count;
        e->holdout_cls += net->loss_cls / count;
        e->holdout_box += net->loss_box / count;
        found = add_found(check, net, &ts->maps, i, found);
    }
    net->teacher = teacher;
    /* A student whose scores are not finite numbers agrees with nothing. */
    e->agreement = NAN;
    if (check->truth.annotation_count > 0)
        e->agreement = yd_coco_evaluate(&check->truth, check->found, found, stats, &err) == YD_OK
                           ? stats[YD_COCO_AP] : 0;
}

/* Score that ranks epochs on the held-out images: the agreement, or minus
 * the loss when the teacher found nothing there. */
static double held_out_score(const yd_distill_epoch *e)
{
    if (!isnan(e->agreement))
        return e->agreement;
    return isnan(e->holdout) ? -INFINITY : -e->holdout;
}

static int check_pair(const yd_graph *s, const yd_graph *t, yd_error *err)
{
    if (s->nnodes != t->nnodes || s->nlevels != t->nlevels || s->nc != t->nc ||
        s->input_width != t->input_width || s->input_height != t->input_height)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "distillation: student and teacher graphs differ");
    for (int l = 0; l < s->nlevels; l++) {
        const yd_value *a = &s->values[s->head_box[l]], *b = &t->values[t->head_box[l]];
        const yd_value *c = &s->values[s->head_cls[l]], *d = &t->values[t->head_cls[l]];

        if (a->c != b->c || a->h != b->h || a->w != b->w || c->c != d->c || c->h != d->h ||
            c->w != d->w)
            return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                "distillation: head level %d differs between student and teacher", l);
    }
    return YD_OK;
}

int yd_distill(yd_model *student, yd_model *teacher, const yd_image *images, int nimages,
               const yd_distill_options *options, yd_distill_report *report, yd_error *err)
{
    yd_graph *g = student->graph;
    int width = g->input_width, height = g->input_height;
    int batch = options->batch > 0 ? options->batch : 8;
    int threads = options->threads > 0 ? options->threads : omp_get_max_threads();
    int holdout = options->holdout > 0 ? options->holdout : 0, steps_per_epoch, total, step = 0, rc;
    size_t frame = (size_t)width * height * 3;
    uint64_t random = 0x9e3779b97f4a7c15ull ^ options->seed;
    double start = yd_now_ms();
    yd_distill_net *net = NULL;
    yd_session *ts = NULL;
    adam_state *state = NULL;
    uint8_t *frames = NULL;
    float *input = NULL, *unzoomed = NULL, **best = NULL;
    yd_distill_net *tnet = NULL;
    int *order = NULL;
    double best_score = -INFINITY;
    agreement held_out = {0};

    memset(report, 0, sizeof *report);
    if (nimages - holdout < 1)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "distillation has no training image: %d held out of %d calibration "
                            "images; hold out fewer or add images", holdout, nimages);
    if (options->epochs < 1 || !(options->learning_rate > 0))
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "distillation needs at least one epoch and a learning rate above 0");
    /* From here on, nimages counts the training images only. */
    nimages -= holdout;
    steps_per_epoch = (nimages + batch - 1) / batch;
    rc = check_pair(g, teacher->graph, err);
    if (rc == YD_OK)
        rc = yd_distill_net_create(g, threads, &net, err);
    for (int i = 0; rc == YD_OK && options->pruned_only && i < g->nnodes; i++) {
        const yd_node *sn = &g->nodes[i], *tn = &teacher->graph->nodes[i];

        if (sn->op == YD_OP_CONV && !sn->dead && sn->conv.in_c == tn->conv.in_c &&
            sn->conv.out_c == tn->conv.out_c)
            yd_distill_net_set_frozen(net, i, 1);
    }
    if (rc == YD_OK)
        rc = yd_session_create(teacher, threads, &ts, err);
    if (rc == YD_OK && options->feature_weight > 0) {
        rc = yd_distill_net_create_teacher(teacher->graph, threads, &tnet, err);
        if (rc == YD_OK)
            rc = yd_distill_net_set_feature_teacher(net, tnet, options->feature_weight, err);
        report->compared_layers = net->ncompared;
    }
    if (rc != YD_OK)
        goto done;

    state = calloc((size_t)g->nnodes, sizeof *state);
    best = calloc((size_t)g->nnodes, sizeof *best);
    frames = malloc(frame * (nimages + holdout));
    input = malloc(frame * sizeof *input);
    if (options->zoom > 0 && !(unzoomed = malloc(frame * sizeof *unzoomed)))
        goto no_memory;
    order = malloc((size_t)nimages * sizeof *order);
    if (!state || !best || !frames || !input || !order)
        goto no_memory;
    for (int i = 0; i < g->nnodes; i++) {
        const yd_conv_params *c = &g->nodes[i].conv;
        size_t n;

        if (!net->grad_weight[i])
            continue;
        n = (size_t)c->out_c * (c->in_c * c->kernel_h * c->kernel_w + 1);
        state[i].m = calloc(n, sizeof(float));
        state[i].v = calloc(n, sizeof(float));
        if (!state[i].m || !state[i].v)
            goto no_memory;
        if (holdout > 0 && !(best[i] = malloc(n * sizeof(float))))
            goto no_memory;
    }
    for (int i = 0; i < nimages + holdout; i++) {
        yd_letterbox lb;

        yd_letterbox_compute_rect(images[i].width, images[i].height, width, height, &lb);
        rc = yd_letterbox_rgb8(&images[i], &lb, frames + frame * i, err);
        if (rc != YD_OK)
            goto done;
    }
    for (int i = 0; i < nimages; i++)
        order[i] = i;

    total = steps_per_epoch * options->epochs;
    yd_distill_net_zero_gradients(net);
    report->holdout_before = report->holdout_first = report->holdout_last = NAN;
    report->agreement_before = report->agreement_best = NAN;
    if (holdout > 0) {
        yd_distill_epoch e = {0};

        rc = agreement_create(&held_out, ts, frames + frame * nimages, holdout, width, height,
                              input, err);
        if (rc != YD_OK)
            goto done;
        holdout_measure(net, ts, &held_out, frames + frame * nimages, width, height, input, &e);
        report->holdout_before = e.holdout;
        report->agreement_before = report->agreement_best = e.agreement;
        best_score = held_out_score(&e);
        copy_params(net, g, best, 0);
        if (options->progress)
            options->progress(&e, options->progress_user);
    }
    for (int epoch = 0; epoch < options->epochs; epoch++) {
        yd_distill_epoch e = {.epoch = epoch + 1, .epochs = options->epochs, .holdout = NAN,
                              .holdout_cls = NAN, .holdout_box = NAN, .agreement = NAN};
        int zoom = options->zoom > 0 && epoch < options->epochs - options->plain_epochs;

        for (int i = nimages - 1; i > 0; i--) {
            int j = (int)(next_random(&random) % (uint64_t)(i + 1)), swap = order[i];

            order[i] = order[j];
            order[j] = swap;
        }
        for (int i = 0; i < nimages; i++) {
            int flip = options->flip && (next_random(&random) & 1);

            if (zoom) {
                /* Log-uniform in [1 - zoom, 1 + zoom], moved up to a tenth of the size each way. */
                double scale = exp(log(1 - options->zoom) +
                                   next_uniform(&random) * (log(1 + options->zoom) - log(1 - options->zoom)));
                double dx = (next_uniform(&random) - 0.5) * 0.2 * width;
                double dy = (next_uniform(&random) - 0.5) * 0.2 * height;

                to_planar(frames + frame * order[i], width, height, flip, unzoomed);
                zoom_planar(unzoomed, width, height, scale, dx, dy, input);
            } else {
                to_planar(frames + frame * order[i], width, height, flip, input);
            }
            yd_session_run_planar(ts, input);
            if (tnet)
                yd_distill_net_forward(tnet, input);
            e.loss += yd_distill_net_step(net, input, &ts->maps, 1, 1.0f / batch) / nimages;
            e.loss_cls += net->loss_cls / nimages;
            e.loss_box += net->loss_box / nimages;
            e.loss_features += net->loss_features / nimages;
            if ((i + 1) % batch == 0 || i == nimages - 1) {
                step++;
                adam_update(net, g, state, schedule(options->learning_rate, step - 1, total), step,
                            options->bias_lr_scale > 0 ? options->bias_lr_scale : 1.0);
                yd_distill_net_zero_gradients(net);
            }
        }
        if (holdout > 0) {
            holdout_measure(net, ts, &held_out, frames + frame * nimages, width, height, input, &e);
            if (epoch == 0)
                report->holdout_first = e.holdout;
            report->holdout_last = e.holdout;
            if (held_out_score(&e) > best_score) {
                best_score = held_out_score(&e);
                report->best_epoch = epoch + 1;
                report->agreement_best = e.agreement;
                copy_params(net, g, best, 0);
            }
        }
        if (epoch == 0)
            report->loss_first = e.loss;
        report->loss_last = e.loss;
        report->epochs = epoch + 1;
        e.elapsed_ms = yd_now_ms() - start;
        if (options->progress)
            options->progress(&e, options->progress_user);
    }
    report->steps = step;
    if (holdout > 0 && report->best_epoch < report->epochs)
        copy_params(net, g, best, 1);
    rc = yd_model_repack(student, err);
    goto done;

no_memory:
    rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for distillation");
done:
    yd_distill_net_destroy(tnet);
    agreement_free(&held_out);
    yd_session_destroy(ts);
    yd_distill_net_destroy(net);
    if (state)
        for (int i = 0; i < g->nnodes; i++) {
            free(state[i].m);
            free(state[i].v);
        }
    if (best)
        for (int i = 0; i < g->nnodes; i++)
            free(best[i]);
    free(state);
    free(best);
    free(frames);
    free(input);
    free(unzoomed);
    free(order);
    return rc;
}
