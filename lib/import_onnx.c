/*
 * YOLOv8 ONNX import: turns an Ultralytics detection export into the graph
 * IR. The graph is cut at the raw head convolutions (per stride, a
 * 4 * reg_max box map and an nc class map, joined by one Concat each); the
 * exported decode tail after them is dropped, since the head runs in C.
 * Every node the cut network needs must be one of the ops below, else the
 * import fails naming the node and its op type.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "head.h"
#include "import_onnx.h"
#include "onnx.h"
#include "util.h"

#define MIN_OPSET 11
#define MAX_OPSET 22

typedef struct import_ctx {
    const yd_onnx_model *onnx;
    yd_graph *graph;
    yd_error *err;
    char *needed;           /* per ONNX node: on a path to a head output */
    int nnames;
    const char **names;     /* ONNX value name -> IR value id */
    int *ids;
} import_ctx;

/* ------------------------------------------------------------ name lookup */

static int find_producer(const yd_onnx_model *onnx, const char *name, int *output_index)
{
    if (!name || !*name)
        return -1;
    for (int i = onnx->nnodes - 1; i >= 0; i--) {
        const yd_onnx_node *node = &onnx->nodes[i];

        for (int k = 0; k < node->noutputs; k++) {
            if (strcmp(node->outputs[k], name) == 0) {
                if (output_index)
                    *output_index = k;
                return i;
            }
        }
    }
    return -1;
}

static int count_readers(const yd_onnx_model *onnx, const char *name)
{
    int count = 0;

    for (int i = 0; i < onnx->nnodes; i++)
        for (int k = 0; k < onnx->nodes[i].ninputs; k++)
            if (strcmp(onnx->nodes[i].inputs[k], name) == 0)
                count++;
    for (int i = 0; i < onnx->noutputs; i++)
        if (strcmp(onnx->outputs[i].name, name) == 0)
            count++;
    return count;
}

static int bind_name(import_ctx *ctx, const char *name, int id)
{
    const char **names = realloc(ctx->names, (size_t)(ctx->nnames + 1) * sizeof *names);
    int *ids;

    if (!names)
        return YD_ERR_NO_MEMORY;
    ctx->names = names;
    ids = realloc(ctx->ids, (size_t)(ctx->nnames + 1) * sizeof *ids);
    if (!ids)
        return YD_ERR_NO_MEMORY;
    ctx->ids = ids;
    ctx->names[ctx->nnames] = name;
    ctx->ids[ctx->nnames] = id;
    ctx->nnames++;
    return YD_OK;
}

static int lookup_value(const import_ctx *ctx, const char *name)
{
    for (int i = ctx->nnames - 1; i >= 0; i--)
        if (strcmp(ctx->names[i], name) == 0)
            return ctx->ids[i];
    return -1;
}

/* ---------------------------------------------------------------- constants */

/* The constant tensor behind `name`: an initializer or a Constant node. */
static const yd_onnx_tensor *find_constant(const yd_onnx_model *onnx, const char *name)
{
    const yd_onnx_tensor *t = yd_onnx_find_initializer(onnx, name);
    int p;

    if (t)
        return t;
    p = find_producer(onnx, name, NULL);
    if (p >= 0 && strcmp(onnx->nodes[p].op_type, "Constant") == 0) {
        const yd_onnx_attr *value = yd_onnx_node_attr(&onnx->nodes[p], "value");

        if (value && value->type == YD_ONNX_ATTR_TENSOR)
            return value->t;
    }
    return NULL;
}

/*
 * Reads `count` floats from a constant, following Identity and a
 * DequantizeLinear of constant inputs (per-tensor or per-axis-0 scales).
 */
static int load_floats(import_ctx *ctx, const yd_onnx_node *user, const char *name, int64_t count,
                       int64_t axis0, float **out)
{
    const yd_onnx_model *onnx = ctx->onnx;
    const yd_onnx_tensor *t = find_constant(onnx, name);
    float *data;

    if (!t) {
        int p = find_producer(onnx, name, NULL);

        if (p >= 0 && strcmp(onnx->nodes[p].op_type, "Identity") == 0)
            return load_floats(ctx, user, onnx->nodes[p].inputs[0], count, axis0, out);
        if (p >= 0 && strcmp(onnx->nodes[p].op_type, "DequantizeLinear") == 0) {
            const yd_onnx_node *dq = &onnx->nodes[p];
            const yd_onnx_tensor *q = dq->ninputs > 0 ? find_constant(onnx, dq->inputs[0]) : NULL;
            const yd_onnx_tensor *scale = dq->ninputs > 1 ? find_constant(onnx, dq->inputs[1]) : NULL;
            const yd_onnx_tensor *zero = dq->ninputs > 2 && *dq->inputs[2]
                                             ? find_constant(onnx, dq->inputs[2]) : NULL;

            if (!q || !scale || q->count != count ||
                (scale->count != 1 && scale->count != axis0) ||
                (zero && zero->count != scale->count))
                return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                                    "node '%s' (DequantizeLinear): only constant per-tensor or "
                                    "per-output-channel weights are supported", dq->name);
            data = malloc((size_t)count * sizeof *data);
            if (!data)
                return YD_ERR_NO_MEMORY;
            for (int64_t i = 0; i < count; i++) {
                int64_t channel = scale->count == 1 ? 0 : i / (count / axis0);
                float z = zero ? (float)yd_onnx_tensor_int(zero, channel) : 0.0f;

                data[i] = ((float)yd_onnx_tensor_int(q, i) - z) * yd_onnx_tensor_float(scale, channel);
            }
            *out = data;
            return YD_OK;
        }
        return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                            "node '%s' (%s): input '%s' must be a constant tensor", user->name,
                            user->op_type, name);
    }
    if (t->count != count)
        return yd_error_set(ctx->err, YD_ERR_MODEL_FORMAT,
                            "node '%s' (%s): tensor '%s' has %lld elements, expected %lld",
                            user->name, user->op_type, name, (long long)t->count, (long long)count);
    if (t->data_type != YD_ONNX_FLOAT && t->data_type != YD_ONNX_FLOAT16)
        return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                            "node '%s' (%s): tensor '%s' has data type %d, expected float or float16",
                            user->name, user->op_type, name, t->data_type);
    data = malloc((size_t)count * sizeof *data);
    if (!data)
        return YD_ERR_NO_MEMORY;
    for (int64_t i = 0; i < count; i++) {
        data[i] = yd_onnx_tensor_float(t, i);
        if (!isfinite(data[i])) {
            free(data);
            return yd_error_set(ctx->err, YD_ERR_MODEL_FORMAT,
                                "node '%s' (%s): tensor '%s' has element %lld = %g, not a finite"
                                " number", user->name, user->op_type, name, (long long)i,
                                (double)yd_onnx_tensor_float(t, i));
        }
    }
    *out = data;
    return YD_OK;
}

/* Reads a small integer vector from a constant (Split sizes). */
static int load_ints(const yd_onnx_model *onnx, const char *name, int64_t *out, int cap)
{
    const yd_onnx_tensor *t = find_constant(onnx, name);

    if (!t || t->count > cap || (t->data_type != YD_ONNX_INT64 && t->data_type != YD_ONNX_INT32))
        return -1;
    for (int64_t i = 0; i < t->count; i++)
        out[i] = yd_onnx_tensor_int(t, i);
    return (int)t->count;
}

static int64_t attr_int(const yd_onnx_node *node, const char *name, int64_t fallback)
{
    const yd_onnx_attr *a = yd_onnx_node_attr(node, name);

    return a && a->type == YD_ONNX_ATTR_INT ? a->i : fallback;
}

/* Copies an INTS attribute of exactly n elements into out; 0 if absent. */
static int attr_ints(const yd_onnx_node *node, const char *name, int n, int64_t *out)
{
    const yd_onnx_attr *a = yd_onnx_node_attr(node, name);

    if (!a)
        return 0;
    if (a->type != YD_ONNX_ATTR_INTS || a->nints != n)
        return -1;
    for (int i = 0; i < n; i++)
        out[i] = a->ints[i];
    return 1;
}

static int unsupported(import_ctx *ctx, const yd_onnx_node *node, const char *why)
{
    return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED, "node '%s' (%s): %s", node->name,
                        node->op_type, why);
}

/* ------------------------------------------------------------- head search */

static int conv_out_channels(const yd_onnx_model *onnx, const yd_onnx_node *conv)
{
    const yd_onnx_tensor *w = conv->ninputs > 1 ? find_constant(onnx, conv->inputs[1]) : NULL;

    if (w && w->ndims == 4)
        return (int)w->dims[0];
    if (conv->ninputs > 1) {
        int p = find_producer(onnx, conv->inputs[1], NULL);

        if (p >= 0 && onnx->nodes[p].ninputs > 0) {
            w = find_constant(onnx, onnx->nodes[p].inputs[0]);
            if (w && w->ndims == 4)
                return (int)w->dims[0];
        }
    }
    return -1;
}

typedef struct head_level {
    int box_node, cls_node;
    int nc;
} head_level;

/*
 * Finds the per-stride Concat(box_conv, cls_conv) nodes of the Detect head.
 * Returns the level count (0 if none), levels in file order.
 */
static int find_head(const yd_onnx_model *onnx, head_level *levels, int cap)
{
    int n = 0;

    for (int i = 0; i < onnx->nnodes && n < cap; i++) {
        const yd_onnx_node *node = &onnx->nodes[i];
        int a, b;

        if (strcmp(node->op_type, "Concat") != 0 || node->ninputs != 2)
            continue;
        a = find_producer(onnx, node->inputs[0], NULL);
        b = find_producer(onnx, node->inputs[1], NULL);
        if (a < 0 || b < 0 || strcmp(onnx->nodes[a].op_type, "Conv") != 0 ||
            strcmp(onnx->nodes[b].op_type, "Conv") != 0)
            continue;
        if (conv_out_channels(onnx, &onnx->nodes[a]) != 4 * YD_HEAD_REG_MAX)
            continue;
        if (count_readers(onnx, node->inputs[0]) != 1 || count_readers(onnx, node->inputs[1]) != 1)
            continue;
        levels[n].box_node = a;
        levels[n].cls_node = b;
        levels[n].nc = conv_out_channels(onnx, &onnx->nodes[b]);
        n++;
    }
    return n;
}

/*
 * Marks `node` and every node it reads activations from. The walk keeps an
 * explicit stack, because a chain of many thousand nodes would overflow the
 * call stack of a recursive walk. `stack` has room for every input of every
 * node plus one, the most it can receive.
 */
static void mark_needed(import_ctx *ctx, int node, int *stack)
{
    int depth = 0;

    if (node >= 0)
        stack[depth++] = node;
    while (depth > 0) {
        const yd_onnx_node *n;
        int activations;

        node = stack[--depth];
        if (ctx->needed[node])
            continue;
        ctx->needed[node] = 1;
        n = &ctx->onnx->nodes[node];
        /* Only input 0 of these ops is an activation; the rest are weights,
         * sizes or scales, read as constants. */
        activations = n->ninputs;
        if (strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "Split") == 0 ||
            strcmp(n->op_type, "Resize") == 0 || strcmp(n->op_type, "MaxPool") == 0)
            activations = n->ninputs > 0 ? 1 : 0;
        for (int k = 0; k < activations; k++) {
            int p = find_producer(ctx->onnx, n->inputs[k], NULL);

            /* Constant subgraphs (weights, shapes) are read, not executed. */
            if (p >= 0 && !ctx->needed[p] && !find_constant(ctx->onnx, n->inputs[k]))
                stack[depth++] = p;
        }
    }
}

/* --------------------------------------------------------- op conversion */

static int input_value(import_ctx *ctx, const yd_onnx_node *node, int k)
{
    int v = k < node->ninputs ? lookup_value(ctx, node->inputs[k]) : -1;

    if (v < 0)
        yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                     "node '%s' (%s): input '%s' is not an activation the engine computes",
                     node->name, node->op_type, k < node->ninputs ? node->inputs[k] : "");
    return v;
}

static int add_output(import_ctx *ctx, const yd_onnx_node *node, int k, int ir_node, int c, int h,
                      int w)
{
    int v;

    if (c > YD_GRAPH_MAX_CHANNELS || h > YD_GRAPH_MAX_SIDE || w > YD_GRAPH_MAX_SIDE ||
        (uint64_t)c * (uint64_t)h * (uint64_t)w > YD_GRAPH_MAX_VALUE_ELEMENTS)
        return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                            "node '%s' (%s): output %dx%dx%d is too large (at most %d channels,"
                            " sides of %d and %u elements)", node->name, node->op_type, c, h, w,
                            YD_GRAPH_MAX_CHANNELS, YD_GRAPH_MAX_SIDE, YD_GRAPH_MAX_VALUE_ELEMENTS);
    v = yd_graph_add_value(ctx->graph, node->outputs[k], c, h, w);

    if (v < 0 || bind_name(ctx, node->outputs[k], v) != YD_OK)
        return yd_error_set(ctx->err, YD_ERR_NO_MEMORY, "out of memory importing '%s'", node->name);
    ctx->graph->values[v].producer = ir_node;
    ctx->graph->nodes[ir_node].output = v;
    return YD_OK;
}

static int new_node(import_ctx *ctx, yd_op op, const yd_onnx_node *node)
{
    int id = yd_graph_add_node(ctx->graph, op, node->name);

    if (id < 0)
        yd_error_set(ctx->err, YD_ERR_NO_MEMORY, "out of memory importing '%s'", node->name);
    return id;
}

static int import_conv(import_ctx *ctx, const yd_onnx_node *node)
{
    yd_graph *g = ctx->graph;
    const yd_onnx_tensor *w = node->ninputs > 1 ? find_constant(ctx->onnx, node->inputs[1]) : NULL;
    int64_t dims[4], kernel[2] = {0, 0}, strides[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    int64_t dilations[2] = {1, 1};
    const yd_onnx_attr *auto_pad = yd_onnx_node_attr(node, "auto_pad");
    int in = input_value(ctx, node, 0);
    int id, rc;
    yd_conv_params *p;
    const yd_value *x;

    if (in < 0)
        return ctx->err ? ctx->err->code : YD_ERR_MODEL_UNSUPPORTED;
    x = &g->values[in];

    if (w && w->ndims == 4) {
        memcpy(dims, w->dims, sizeof dims);
    } else {
        int p_dq = node->ninputs > 1 ? find_producer(ctx->onnx, node->inputs[1], NULL) : -1;
        const yd_onnx_tensor *q = p_dq >= 0 && ctx->onnx->nodes[p_dq].ninputs > 0
                                      ? find_constant(ctx->onnx, ctx->onnx->nodes[p_dq].inputs[0])
                                      : NULL;

        if (!q || q->ndims != 4)
            return unsupported(ctx, node, "weights must be a constant 4-D tensor");
        memcpy(dims, q->dims, sizeof dims);
    }
    if (attr_int(node, "group", 1) != 1)
        return unsupported(ctx, node, "grouped convolution is not supported");
    if (attr_ints(node, "dilations", 2, dilations) < 0 || dilations[0] != 1 || dilations[1] != 1)
        return unsupported(ctx, node, "dilated convolution is not supported");
    if (auto_pad && auto_pad->s && strcmp(auto_pad->s, "NOTSET") != 0 && strcmp(auto_pad->s, "VALID") != 0)
        return unsupported(ctx, node, "auto_pad SAME_* is not supported; export with explicit pads");
    if (attr_ints(node, "kernel_shape", 2, kernel) < 0 || attr_ints(node, "strides", 2, strides) < 0 ||
        attr_ints(node, "pads", 4, pads) < 0)
        return unsupported(ctx, node, "only 2-D convolution is supported");
    if (kernel[0] == 0) {
        kernel[0] = dims[2];
        kernel[1] = dims[3];
    }
    if (kernel[0] != dims[2] || kernel[1] != dims[3] || dims[1] != x->c || dims[0] <= 0 ||
        strides[0] <= 0 || strides[1] <= 0 || strides[0] > YD_GRAPH_MAX_STRIDE ||
        strides[1] > YD_GRAPH_MAX_STRIDE || kernel[0] > YD_GRAPH_MAX_KERNEL ||
        kernel[1] > YD_GRAPH_MAX_KERNEL ||
        pads[0] < 0 || pads[1] < 0 || pads[2] < 0 || pads[3] < 0 || pads[0] >= kernel[0] ||
        pads[1] >= kernel[1] || pads[2] >= kernel[0] || pads[3] >= kernel[1])
        return unsupported(ctx, node, "weight shape, kernel, strides or pads out of range");

    int out_h = (int)((x->h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1);
    int out_w = (int)((x->w + pads[1] + pads[3] - kernel[1]) / strides[1] + 1);

    if (out_h <= 0 || out_w <= 0)
        return unsupported(ctx, node, "output would be empty");

    id = new_node(ctx, YD_OP_CONV, node);
    if (id < 0)
        return YD_ERR_NO_MEMORY;
    g->nodes[id].ninputs = 1;
    g->nodes[id].inputs[0] = in;
    p = &g->nodes[id].conv;
    p->in_c = (int)dims[1];
    p->out_c = (int)dims[0];
    p->kernel_h = (int)kernel[0];
    p->kernel_w = (int)kernel[1];
    p->stride_h = (int)strides[0];
    p->stride_w = (int)strides[1];
    p->pad_top = (int)pads[0];
    p->pad_left = (int)pads[1];
    p->pad_bottom = (int)pads[2];
    p->pad_right = (int)pads[3];

    rc = load_floats(ctx, node, node->inputs[1], dims[0] * dims[1] * dims[2] * dims[3], dims[0], &p->weight);
    if (rc != YD_OK)
        return rc;
    if (node->ninputs > 2 && *node->inputs[2]) {
        rc = load_floats(ctx, node, node->inputs[2], dims[0], dims[0], &p->bias);
        if (rc != YD_OK)
            return rc;
    } else {
        p->bias = calloc((size_t)dims[0], sizeof *p->bias);
        if (!p->bias)
            return YD_ERR_NO_MEMORY;
    }
    return add_output(ctx, node, 0, id, p->out_c, out_h, out_w);
}

static int import_maxpool(import_ctx *ctx, const yd_onnx_node *node)
{
    int64_t kernel[2] = {0, 0}, strides[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    int in = input_value(ctx, node, 0);
    const yd_value *x;
    int id;

    if (in < 0)
        return ctx->err ? ctx->err->code : YD_ERR_MODEL_UNSUPPORTED;
    x = &ctx->graph->values[in];
    if (node->noutputs > 1 && *node->outputs[1])
        return unsupported(ctx, node, "the Indices output is not supported");
    if (attr_ints(node, "kernel_shape", 2, kernel) <= 0 || attr_ints(node, "strides", 2, strides) < 0 ||
        attr_ints(node, "pads", 4, pads) < 0)
        return unsupported(ctx, node, "only 2-D pooling with kernel_shape is supported");
    if (attr_int(node, "ceil_mode", 0) != 0 || kernel[0] != kernel[1] || strides[0] != strides[1] ||
        pads[0] != pads[1] || pads[0] != pads[2] || pads[0] != pads[3])
        return unsupported(ctx, node, "only square kernels with equal strides and pads, ceil_mode 0");
    if (kernel[0] <= 0 || kernel[0] > YD_GRAPH_MAX_KERNEL || strides[0] <= 0 ||
        strides[0] > YD_GRAPH_MAX_STRIDE || pads[0] < 0 || pads[0] >= kernel[0])
        return unsupported(ctx, node, "kernel, stride or pad out of range");
    int out_h = (int)((x->h + 2 * pads[0] - kernel[0]) / strides[0] + 1);
    int out_w = (int)((x->w + 2 * pads[0] - kernel[0]) / strides[0] + 1);
    if (out_h <= 0 || out_w <= 0)
        return unsupported(ctx, node, "output would be empty");

    id = new_node(ctx, YD_OP_MAXPOOL, node);
    if (id < 0)
        return YD_ERR_NO_MEMORY;
    ctx->graph->nodes[id].ninputs = 1;
    ctx->graph->nodes[id].inputs[0] = in;
    ctx->graph->nodes[id].pool_kernel = (int)kernel[0];
    ctx->graph->nodes[id].pool_stride = (int)strides[0];
    ctx->graph->nodes[id].pool_pad = (int)pads[0];
    return add_output(ctx, node, 0, id, x->c, out_h, out_w);
}

/* Nearest-neighbour Resize by the same integer factor on H and W only. */
static int import_resize(import_ctx *ctx, const yd_onnx_node *node)
{
    const yd_onnx_attr *mode = yd_onnx_node_attr(node, "mode");
    const yd_onnx_attr *ctm = yd_onnx_node_attr(node, "coordinate_transformation_mode");
    const yd_onnx_attr *nearest = yd_onnx_node_attr(node, "nearest_mode");
    const yd_onnx_tensor *scales = node->ninputs > 2 && *node->inputs[2]
                                       ? find_constant(ctx->onnx, node->inputs[2]) : NULL;
    const yd_onnx_tensor *sizes = node->ninputs > 3 && *node->inputs[3]
                                      ? find_constant(ctx->onnx, node->inputs[3]) : NULL;
    int in = input_value(ctx, node, 0);
    const yd_value *x;
    int scale_h, scale_w, id;

    if (in < 0)
        return ctx->err ? ctx->err->code : YD_ERR_MODEL_UNSUPPORTED;
    x = &ctx->graph->values[in];
    if (!mode || !mode->s || strcmp(mode->s, "nearest") != 0)
        return unsupported(ctx, node, "only mode 'nearest' is supported");
    if (scales && scales->count == 4) {
        float s[4];

        for (int i = 0; i < 4; i++)
            s[i] = yd_onnx_tensor_float(scales, i);
        if (s[0] != 1.0f || s[1] != 1.0f || s[2] != floorf(s[2]) || s[3] != floorf(s[3]))
            return unsupported(ctx, node, "only integer upscaling of H and W is supported");
        scale_h = (int)s[2];
        scale_w = (int)s[3];
    } else if (sizes && sizes->count == 4) {
        int64_t s[4];

        for (int i = 0; i < 4; i++)
            s[i] = yd_onnx_tensor_int(sizes, i);
        if (s[0] != 1 || s[1] != x->c || s[2] % x->h != 0 || s[3] % x->w != 0)
            return unsupported(ctx, node, "only integer upscaling of H and W is supported");
        scale_h = (int)(s[2] / x->h);
        scale_w = (int)(s[3] / x->w);
    } else {
        return unsupported(ctx, node, "scales or sizes must be a constant 4-element tensor");
    }
    if (scale_h != scale_w || scale_h < 1 || scale_h > YD_GRAPH_MAX_SCALE)
        return unsupported(ctx, node, "H and W scales must be equal integers from 1 to 16");

    /* With an integer factor, asymmetric and half_pixel coordinates with
     * floor or round_prefer_floor rounding all pick source pixel dst / s. */
    if (ctm && ctm->s && strcmp(ctm->s, "asymmetric") != 0 && strcmp(ctm->s, "half_pixel") != 0 &&
        strcmp(ctm->s, "pytorch_half_pixel") != 0)
        return unsupported(ctx, node, "coordinate_transformation_mode must be asymmetric or half_pixel");
    if (nearest && nearest->s && strcmp(nearest->s, "floor") != 0 &&
        strcmp(nearest->s, "round_prefer_floor") != 0)
        return unsupported(ctx, node, "nearest_mode must be floor or round_prefer_floor");
    if (ctm && ctm->s && strcmp(ctm->s, "asymmetric") != 0 && nearest && nearest->s &&
        strcmp(nearest->s, "floor") == 0 && scale_h > 1)
        return unsupported(ctx, node, "half_pixel with floor rounding shifts pixels; not supported");

    id = new_node(ctx, YD_OP_UPSAMPLE, node);
    if (id < 0)
        return YD_ERR_NO_MEMORY;
    ctx->graph->nodes[id].ninputs = 1;
    ctx->graph->nodes[id].inputs[0] = in;
    ctx->graph->nodes[id].scale = scale_h;
    return add_output(ctx, node, 0, id, x->c, x->h * scale_h, x->w * scale_w);
}

static int channel_axis(const yd_onnx_node *node, int64_t fallback)
{
    int64_t axis = attr_int(node, "axis", fallback);

    return axis == 1 || axis == -3;
}

static int import_concat(import_ctx *ctx, const yd_onnx_node *node)
{
    int id, c = 0;
    int first;

    if (!channel_axis(node, 1))
        return unsupported(ctx, node, "only concatenation along channels (axis 1) is supported");
    if (node->ninputs < 1 || node->ninputs > YD_MAX_INPUTS)
        return unsupported(ctx, node, "1 to 8 inputs are supported");
    first = input_value(ctx, node, 0);
    if (first < 0)
        return ctx->err->code;
    id = new_node(ctx, YD_OP_CONCAT, node);
    if (id < 0)
        return YD_ERR_NO_MEMORY;
    for (int k = 0; k < node->ninputs; k++) {
        int v = input_value(ctx, node, k);

        if (v < 0)
            return ctx->err->code;
        if (ctx->graph->values[v].h != ctx->graph->values[first].h ||
            ctx->graph->values[v].w != ctx->graph->values[first].w)
            return unsupported(ctx, node, "inputs differ in height or width");
        ctx->graph->nodes[id].inputs[k] = v;
        c += ctx->graph->values[v].c;
    }
    ctx->graph->nodes[id].ninputs = node->ninputs;
    return add_output(ctx, node, 0, id, c, ctx->graph->values[first].h, ctx->graph->values[first].w);
}

static int import_split(import_ctx *ctx, const yd_onnx_node *node)
{
    int64_t sizes[YD_MAX_INPUTS];
    int n = node->noutputs, begin = 0, total = 0;
    int in = input_value(ctx, node, 0);
    const yd_value *x;

    if (in < 0)
        return ctx->err->code;
    x = &ctx->graph->values[in];
    if (!channel_axis(node, 0))
        return unsupported(ctx, node, "only splitting along channels (axis 1) is supported");
    if (n < 1 || n > YD_MAX_INPUTS)
        return unsupported(ctx, node, "1 to 8 outputs are supported");
    if (node->ninputs > 1 && *node->inputs[1]) {
        if (load_ints(ctx->onnx, node->inputs[1], sizes, YD_MAX_INPUTS) != n)
            return unsupported(ctx, node, "split sizes must be a constant with one entry per output");
    } else if (attr_ints(node, "split", n, sizes) == 1) {
        /* opset < 13 carries the sizes as an attribute */
    } else {
        if (x->c % n != 0)
            return unsupported(ctx, node, "channels do not divide evenly between the outputs");
        for (int k = 0; k < n; k++)
            sizes[k] = x->c / n;
    }
    for (int k = 0; k < n; k++) {
        if (sizes[k] <= 0 || sizes[k] > x->c)
            return unsupported(ctx, node, "split sizes must be from 1 to the input channels");
        total += (int)sizes[k];
    }
    if (total != x->c)
        return unsupported(ctx, node, "split sizes do not add up to the input channels");

    for (int k = 0; k < n; k++) {
        int id = new_node(ctx, YD_OP_SLICE, node);
        int rc;

        if (id < 0)
            return YD_ERR_NO_MEMORY;
        ctx->graph->nodes[id].ninputs = 1;
        ctx->graph->nodes[id].inputs[0] = in;
        ctx->graph->nodes[id].slice_begin = begin;
        ctx->graph->nodes[id].slice_end = begin + (int)sizes[k];
        rc = add_output(ctx, node, k, id, (int)sizes[k], x->h, x->w);
        if (rc != YD_OK)
            return rc;
        begin += (int)sizes[k];
    }
    return YD_OK;
}

static int import_elementwise(import_ctx *ctx, const yd_onnx_node *node, yd_op op, int arity)
{
    int inputs[2];
    int id;

    if (node->ninputs != arity)
        return unsupported(ctx, node, "unexpected input count");
    for (int k = 0; k < arity; k++) {
        inputs[k] = input_value(ctx, node, k);
        if (inputs[k] < 0)
            return unsupported(ctx, node, "operands must be activations (no constants or broadcasting)");
    }
    if (arity == 2) {
        const yd_value *a = &ctx->graph->values[inputs[0]];
        const yd_value *b = &ctx->graph->values[inputs[1]];

        if (a->c != b->c || a->h != b->h || a->w != b->w)
            return unsupported(ctx, node, "operand shapes differ (broadcasting is not supported)");
    }
    id = new_node(ctx, op, node);
    if (id < 0)
        return YD_ERR_NO_MEMORY;
    ctx->graph->nodes[id].ninputs = arity;
    for (int k = 0; k < arity; k++)
        ctx->graph->nodes[id].inputs[k] = inputs[k];
    {
        const yd_value *x = &ctx->graph->values[inputs[0]];

        return add_output(ctx, node, 0, id, x->c, x->h, x->w);
    }
}

static int import_node(import_ctx *ctx, const yd_onnx_node *node)
{
    const char *op = node->op_type;

    if (node->domain && *node->domain && strcmp(node->domain, "ai.onnx") != 0)
        return unsupported(ctx, node, "operators outside the default ONNX domain are not supported");
    if (strcmp(op, "Conv") == 0)
        return import_conv(ctx, node);
    if (strcmp(op, "MaxPool") == 0)
        return import_maxpool(ctx, node);
    if (strcmp(op, "Resize") == 0)
        return import_resize(ctx, node);
    if (strcmp(op, "Concat") == 0)
        return import_concat(ctx, node);
    if (strcmp(op, "Split") == 0)
        return import_split(ctx, node);
    if (strcmp(op, "Add") == 0)
        return import_elementwise(ctx, node, YD_OP_ADD, 2);
    if (strcmp(op, "Mul") == 0)
        return import_elementwise(ctx, node, YD_OP_MUL, 2);
    if (strcmp(op, "Sigmoid") == 0)
        return import_elementwise(ctx, node, YD_OP_SIGMOID, 1);
    if (strcmp(op, "Identity") == 0) {
        int v = input_value(ctx, node, 0);

        return v < 0 ? ctx->err->code : bind_name(ctx, node->outputs[0], v);
    }
    return unsupported(ctx, node, "operator not supported by the engine");
}

/* ------------------------------------------------------------------ main */

static int import_input(import_ctx *ctx, int *width, int *height)
{
    const yd_onnx_model *onnx = ctx->onnx;
    const yd_onnx_value_info *in = NULL;
    int id;

    for (int i = 0; i < onnx->ninputs; i++) {
        if (!yd_onnx_find_initializer(onnx, onnx->inputs[i].name)) {
            if (in)
                return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                                    "the model has more than one input ('%s', '%s')", in->name,
                                    onnx->inputs[i].name);
            in = &onnx->inputs[i];
        }
    }
    if (!in)
        return yd_error_set(ctx->err, YD_ERR_MODEL_FORMAT, "the model has no input");
    if (in->ndims != 4 || (in->dims[0] != 1 && in->dims[0] != -1) || in->dims[1] != 3)
        return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                            "input '%s' must be [1,3,H,W] (a batch of one RGB image)", in->name);
    if (in->elem_type != YD_ONNX_FLOAT)
        return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                            "input '%s' has element type %d; only float32 inputs are supported "
                            "(export without half=True)", in->name, in->elem_type);
    if (in->dims[2] <= 0 || in->dims[3] <= 0)
        return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                            "input '%s' has a dynamic height or width; export with a fixed imgsz "
                            "(dynamic=False)", in->name);
    for (int d = 2; d < 4; d++)
        if (in->dims[d] % 32 != 0 || in->dims[d] < 32 || in->dims[d] > 4096)
            return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                                "input '%s' is %lldx%lld (width x height); each side must be a "
                                "multiple of 32 from 32 to 4096", in->name,
                                (long long)in->dims[3], (long long)in->dims[2]);
    *height = (int)in->dims[2];
    *width = (int)in->dims[3];

    id = yd_graph_add_value(ctx->graph, in->name, 3, *height, *width);
    if (id < 0 || bind_name(ctx, in->name, id) != YD_OK)
        return YD_ERR_NO_MEMORY;
    int node = yd_graph_add_node(ctx->graph, YD_OP_INPUT, "input");
    if (node < 0)
        return YD_ERR_NO_MEMORY;
    ctx->graph->nodes[node].output = id;
    ctx->graph->values[id].producer = node;
    ctx->graph->input = id;
    return YD_OK;
}

/*
 * Returns the first node that only quantized ONNX exports contain, or NULL.
 * QDQ exports wrap float operators in QuantizeLinear/DequantizeLinear
 * pairs, and QOperator exports use integer operators such as QLinearConv.
 */
static const yd_onnx_node *find_quantized_node(const yd_onnx_model *onnx)
{
    static const char *const quantized_ops[] = {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
        "ConvInteger", "QLinearMatMul", "MatMulInteger",
    };

    for (int i = 0; i < onnx->nnodes; i++)
        for (size_t k = 0; k < sizeof quantized_ops / sizeof quantized_ops[0]; k++)
            if (strcmp(onnx->nodes[i].op_type, quantized_ops[k]) == 0)
                return &onnx->nodes[i];
    return NULL;
}

static int set_head(import_ctx *ctx, const head_level *levels, int nlevels)
{
    yd_graph *g = ctx->graph;
    int order[YD_HEAD_MAX_LEVELS];

    for (int l = 0; l < nlevels; l++)
        order[l] = l;
    /* Finest map (smallest stride) first, as the export's anchor order. */
    for (int i = 1; i < nlevels; i++) {
        for (int j = i; j > 0; j--) {
            int a = lookup_value(ctx, ctx->onnx->nodes[levels[order[j]].box_node].outputs[0]);
            int b = lookup_value(ctx, ctx->onnx->nodes[levels[order[j - 1]].box_node].outputs[0]);

            if (g->values[a].w > g->values[b].w) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        }
    }
    g->nlevels = nlevels;
    g->nc = levels[0].nc;
    for (int l = 0; l < nlevels; l++) {
        const head_level *hl = &levels[order[l]];
        int box = lookup_value(ctx, ctx->onnx->nodes[hl->box_node].outputs[0]);
        int cls = lookup_value(ctx, ctx->onnx->nodes[hl->cls_node].outputs[0]);

        if (hl->nc != g->nc || g->values[box].h != g->values[cls].h ||
            g->values[box].w != g->values[cls].w || g->input_width % g->values[box].w != 0 ||
            g->input_height % g->values[box].h != 0 ||
            g->input_width / g->values[box].w != g->input_height / g->values[box].h)
            return yd_error_set(ctx->err, YD_ERR_MODEL_UNSUPPORTED,
                                "head level '%s' is inconsistent with the others",
                                ctx->onnx->nodes[hl->box_node].name);
        g->head_box[l] = box;
        g->head_cls[l] = cls;
        g->head_stride[l] = g->input_width / g->values[box].w;
    }
    return YD_OK;
}

int yd_import_onnx(const yd_onnx_model *onnx, yd_graph **out, yd_error *err)
{
    import_ctx ctx = {.onnx = onnx, .err = err};
    head_level levels[YD_HEAD_MAX_LEVELS];
    const yd_onnx_node *quantized;
    int nlevels, rc, width = 0, height = 0;
    size_t total_inputs = 0;
    int *stack;

    if (onnx->opset < MIN_OPSET || onnx->opset > MAX_OPSET)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "opset %lld is not supported (supported: %d to %d)",
                            (long long)onnx->opset, MIN_OPSET, MAX_OPSET);
    quantized = find_quantized_node(onnx);
    if (quantized) {
        int qdq = strcmp(quantized->op_type, "QuantizeLinear") == 0 ||
                  strcmp(quantized->op_type, "DequantizeLinear") == 0;

        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "%s ONNX models are not supported (node '%s' is a %s); export a "
                            "float32 model and make the int8 variant with 'yolod compress "
                            "MODEL.onnx --variant int8 --calib DIR'",
                            qdq ? "QDQ-quantized" : "quantized",
                            quantized->name ? quantized->name : "", quantized->op_type);
    }
    nlevels = find_head(onnx, levels, YD_HEAD_MAX_LEVELS);
    if (nlevels < 1)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "no YOLOv8 detection head found: expected, per stride, a Concat of a "
                            "%d-channel box convolution and a class convolution",
                            4 * YD_HEAD_REG_MAX);
    if (levels[0].nc < 1 || levels[0].nc > 100000)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED, "class count %d is out of range", levels[0].nc);

    for (int i = 0; i < onnx->nnodes; i++)
        total_inputs += (size_t)onnx->nodes[i].ninputs;
    ctx.graph = yd_graph_create();
    ctx.needed = calloc((size_t)onnx->nnodes + 1, 1);
    stack = malloc((total_inputs + 1) * sizeof *stack);
    if (!ctx.graph || !ctx.needed || !stack) {
        free(stack);
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory importing the model");
        goto fail;
    }
    for (int l = 0; l < nlevels; l++) {
        mark_needed(&ctx, levels[l].box_node, stack);
        mark_needed(&ctx, levels[l].cls_node, stack);
    }
    free(stack);

    rc = import_input(&ctx, &width, &height);
    if (rc != YD_OK)
        goto fail;
    ctx.graph->input_width = width;
    ctx.graph->input_height = height;

    for (int i = 0; i < onnx->nnodes; i++) {
        if (!ctx.needed[i])
            continue;
        rc = import_node(&ctx, &onnx->nodes[i]);
        if (rc != YD_OK)
            goto fail;
    }

    rc = set_head(&ctx, levels, nlevels);
    if (rc != YD_OK)
        goto fail;
    yd_graph_fuse(ctx.graph);
    *out = ctx.graph;
    ctx.graph = NULL;

fail:
    if (ctx.graph)
        yd_graph_free(ctx.graph);
    free(ctx.needed);
    free(ctx.names);
    free(ctx.ids);
    return rc;
}
