/*
 * Model loading: read the file (ONNX, or .yolod as detected by its magic bytes),
 * build the IR, plan the arena for the selected kernels and pack the
 * convolution weights once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "import_onnx.h"
#include "model_file.h"
#include "names.h"
#include "onnx.h"
#include "util.h"

static char *stem_of(const char *path)
{
    const char *base = strrchr(path, '/');
    char *stem, *dot;

    stem = strdup(base ? base + 1 : path);
    if (stem && (dot = strchr(stem, '.')) != NULL && dot != stem)
        *dot = '\0';
    return stem;
}

static int load_names(yd_model *model, const yd_onnx_model *onnx, yd_error *err)
{
    const char *text = NULL;
    yd_error ignored;

    for (int i = 0; i < onnx->nmetadata; i++)
        if (strcmp(onnx->metadata_keys[i], "names") == 0)
            text = onnx->metadata_values[i];
    if (text && yd_names_parse(text, model->nc, &model->class_names, &ignored) == YD_OK)
        return YD_OK;
    if (text)
        yd_log(YD_LOG_WARN, "model %s: ignoring class names metadata: %s", model->name,
               ignored.message);

    /* No usable metadata: COCO names for 80 classes, else "class<N>". */
    model->class_names = calloc((size_t)model->nc, sizeof *model->class_names);
    if (!model->class_names)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for class names");
    for (int i = 0; i < model->nc; i++) {
        char buf[32];

        if (model->nc == 80)
            snprintf(buf, sizeof buf, "%s", yd_coco80_name(i));
        else
            snprintf(buf, sizeof buf, "class%d", i);
        model->class_names[i] = strdup(buf);
        if (!model->class_names[i])
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for class names");
    }
    return YD_OK;
}

/*
 * Packs a convolution for the fp32 kernels from `weight`: the Winograd
 * layout when the table has that kernel and yd_winograd_chosen() accepts
 * the shape, the direct kernel's layout otherwise.
 */
static int pack_float(yd_node *node, const yd_conv_shape *shape, const yd_kernel_table *kernels,
                      const float *weight, yd_error *err)
{
    const int winograd = kernels->winograd && yd_winograd_chosen(shape, kernels->cb);
    const size_t floats = winograd ? yd_winograd_packed_floats(shape, kernels->cb)
                                   : yd_conv_packed_floats(shape, kernels->cb);

    node->conv.packed = yd_aligned_alloc(floats * sizeof(float));
    if (!node->conv.packed)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory packing '%s'", node->name);
    if (winograd)
        yd_winograd_pack(shape, kernels->cb, weight, node->conv.bias, node->conv.packed);
    else
        yd_conv_pack(shape, kernels->cb, weight, node->conv.bias, node->conv.packed);
    node->conv.winograd = winograd;
    return YD_OK;
}

/* Packs an int8 convolution for the fp32 kernels, from qweight * weight_scale. */
static int pack_dequantized(yd_node *node, const yd_conv_shape *shape,
                            const yd_kernel_table *kernels, yd_error *err)
{
    const yd_conv_params *conv = &node->conv;
    const size_t per_channel = (size_t)conv->in_c * conv->kernel_h * conv->kernel_w;
    float *weight = malloc((size_t)conv->out_c * per_channel * sizeof *weight);
    int rc;

    if (!weight)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory packing '%s'", node->name);
    for (int o = 0; o < conv->out_c; o++)
        for (size_t i = 0; i < per_channel; i++)
            weight[o * per_channel + i] = conv->qweight[o * per_channel + i] * conv->weight_scale[o];
    rc = pack_float(node, shape, kernels, weight, err);
    free(weight);
    return rc;
}

/*
 * Packs every live convolution for the model's kernels. Int8 ones get the
 * int8 kernel's layout, plus the int8 Winograd layout when the table has
 * that kernel and yd_qwinograd_chosen() accepts the shape. Float ones get
 * the Winograd layout when the table has it and yd_winograd_chosen()
 * accepts the shape, the direct kernel's layout otherwise.
 */
static int pack_weights(yd_model *model, yd_error *err)
{
    yd_graph *g = model->graph;

    for (int i = 0; i < g->nnodes; i++) {
        yd_node *node = &g->nodes[i];
        yd_conv_shape shape;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        yd_conv_shape_of(g, node, &shape);
        node->conv.winograd = 0;
        if (node->conv.precision == YD_PREC_INT8 && !model->exact_int8 &&
            model->kernels->int8_slower) {
            if (pack_dequantized(node, &shape, model->kernels, err) != YD_OK)
                return YD_ERR_NO_MEMORY;
            continue;
        }
        if (node->conv.precision == YD_PREC_INT8) {
            node->conv.qpacked = calloc(1, sizeof *node->conv.qpacked);
            if (!node->conv.qpacked ||
                yd_qconv_pack(&shape, node->conv.qweight, node->conv.weight_scale, node->conv.bias,
                              node->conv.input_scale, node->conv.input_zero, node->conv.pad_bottom,
                              node->conv.pad_right, node->conv.qpacked) != YD_OK)
                return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory packing '%s'", node->name);
            if (model->kernels->qwinograd && yd_qwinograd_chosen(&shape) &&
                yd_qconv_pack_winograd(&shape, node->conv.qweight, node->conv.weight_scale,
                                       node->conv.qpacked) != YD_OK)
                return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory packing '%s'", node->name);
            continue;
        }
        if (pack_float(node, &shape, model->kernels, node->conv.weight, err) != YD_OK)
            return YD_ERR_NO_MEMORY;
    }
    return YD_OK;
}

int yd_model_repack(yd_model *model, yd_error *err)
{
    yd_graph *g = model->graph;

    if (model->serve_only)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "%s was loaded to serve only; load it again to change its weights",
                            model->path);

    for (int i = 0; i < g->nnodes; i++) {
        yd_node *node = &g->nodes[i];

        free(node->conv.packed);
        node->conv.packed = NULL;
        node->conv.winograd = 0;
        if (node->conv.qpacked) {
            yd_qconv_free(node->conv.qpacked);
            free(node->conv.qpacked);
            node->conv.qpacked = NULL;
        }
    }
    return pack_weights(model, err);
}

/* Reads, parses and imports an ONNX export; sets graph, nc and class names. */
static int import_onnx_file(yd_model *model, yd_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    yd_onnx_model *onnx = NULL;
    int rc;

    rc = yd_read_file(model->path, &data, &size, err);
    if (rc != YD_OK)
        goto done;
    rc = yd_onnx_parse(data, size, &onnx, err);
    if (rc != YD_OK)
        goto done;
    rc = yd_import_onnx(onnx, &model->graph, err);
    if (rc != YD_OK)
        goto done;
    model->nc = model->graph->nc;
    rc = load_names(model, onnx, err);

done:
    yd_onnx_free(onnx);
    free(data);
    return rc;
}

/* The steps after import that every file type shares: plan and pack. */
static int prepare_graph(yd_model *model, yd_error *err)
{
    int rc;

    model->input_width = model->graph->input_width;
    model->input_height = model->graph->input_height;
    model->nc = model->graph->nc;
    model->flops = yd_graph_flops(model->graph);
    rc = yd_graph_plan(model->graph, model->kernels->cb, err);
    if (rc != YD_OK)
        return rc;
    return pack_weights(model, err);
}

static int has_suffix(const char *text, const char *suffix)
{
    size_t n = strlen(text), m = strlen(suffix);

    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* Puts `prefix` before err's message, cutting the end if it no longer fits. */
static void prefix_error(yd_error *err, const char *prefix)
{
    char message[sizeof err->message];
    size_t used;

    if (!err)
        return;
    used = (size_t)snprintf(message, sizeof message, "%s", prefix);
    if (used < sizeof message)
        snprintf(message + used, sizeof message - used, "%.*s", (int)(sizeof message - used - 1),
                 err->message);
    memcpy(err->message, message, sizeof message);
}

int yd_model_load_with(const char *path, const yd_kernel_table *kernels, yd_model **out,
                       yd_error *err)
{
    yd_model *model = NULL;
    int rc;

    *out = NULL;
    model = calloc(1, sizeof *model);
    if (!model)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading '%s'", path);
    atomic_init(&model->refs, 1);
    model->kernels = kernels ? kernels : yd_kernels_select();
    model->path = strdup(path);
    model->name = stem_of(path);
    if (!model->path || !model->name) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading '%s'", path);
        goto fail;
    }

    rc = yd_model_file_sniff_path(path, err);
    if (rc < 0)
        goto fail;
    if (rc == 1) {
        yd_model_provenance prov;

        rc = yd_model_file_load(path, &model->graph, &model->class_names, &prov, err);
        if (rc == YD_OK)
            snprintf(model->variant, sizeof model->variant, "%s", prov.variant[0] ? prov.variant : "fp32");
    } else {
        rc = import_onnx_file(model, err);
        snprintf(model->variant, sizeof model->variant, "fp32");
        if (rc == YD_ERR_MODEL_FORMAT && has_suffix(path, ".yolod"))
            prefix_error(err, "not a yolod model file (it does not start with the .yolod "
                              "magic), nor an ONNX model: ");
        else if (rc == YD_ERR_MODEL_FORMAT && err && strncmp(err->message, "invalid ONNX file", 17) == 0)
            prefix_error(err, "not a model file (neither a .yolod file nor ONNX): ");
    }
    if (rc != YD_OK)
        goto fail;
    rc = prepare_graph(model, err);
    if (rc != YD_OK)
        goto fail;

    yd_log(YD_LOG_DEBUG, "loaded %s: input %d, %d classes, %.2f GFLOPs, %s kernels, arena %.1f MiB",
           path, model->input_width, model->nc, model->flops / 1e9, model->kernels->name,
           (double)model->graph->arena_bytes / (1 << 20));
    *out = model;
    return YD_OK;

fail:
    if (err && rc != YD_ERR_NO_MEMORY && rc != YD_ERR_IO) {
        /* Prefix the file name so a log line names the model. */
        char message[sizeof err->message];
        size_t used;

        used = (size_t)snprintf(message, sizeof message, "%s: ", path);
        if (used < sizeof message)
            snprintf(message + used, sizeof message - used, "%.*s", (int)(sizeof message - used - 1),
                     err->message);
        memcpy(err->message, message, sizeof message);
    }
    yd_model_release(model);
    return rc;
}

/* Logs how many int8 layers run the fp32 kernels (see pack_dequantized). */
static void log_int8_in_fp32(const yd_model *model)
{
    const yd_graph *g = model->graph;
    int count = 0;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        if (!node->dead && node->op == YD_OP_CONV && node->conv.precision == YD_PREC_INT8 &&
            !yd_conv_runs_int8(node))
            count++;
    }
    if (count > 0)
        yd_log(YD_LOG_INFO, "%s: %d int8 layers run the fp32 %s kernels on dequantized weights, "
               "because the int8 ones (no VNNI) are slower", model->path, count,
               model->kernels->name);
}

/* Frees what only packing reads: float weights, and int8 weights once packed. */
static void drop_source_weights(yd_model *model)
{
    yd_graph *g = model->graph;

    for (int i = 0; i < g->nnodes; i++) {
        yd_conv_params *conv = &g->nodes[i].conv;

        if (g->nodes[i].op != YD_OP_CONV)
            continue;
        free(conv->weight);
        conv->weight = NULL;
        if (conv->qpacked || conv->packed) {
            free(conv->qweight);
            conv->qweight = NULL;
        }
    }
    model->serve_only = 1;
}

int yd_model_load(const char *path, const yd_model_options *options, yd_model **out,
                  yd_error *err)
{
    int rc = yd_model_load_with(path, NULL, out, err);

    if (rc == YD_OK && options && options->exact_int8) {
        (*out)->exact_int8 = 1;
        if ((*out)->kernels->int8_slower)
            rc = yd_model_repack(*out, err);
        if (rc != YD_OK) {
            yd_model_release(*out);
            *out = NULL;
            return rc;
        }
    }
    if (rc == YD_OK)
        log_int8_in_fp32(*out);
    if (rc == YD_OK && options && options->serve_only)
        drop_source_weights(*out);
    if (rc == YD_OK && options && options->input_size &&
        (options->input_size != (*out)->input_width || options->input_size != (*out)->input_height)) {
        rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                          "%s: the file fixes the input size at %d; requested %d", path,
                          (*out)->input_width, options->input_size);
        yd_model_release(*out);
        *out = NULL;
    }
    return rc;
}

yd_model *yd_model_retain(yd_model *model)
{
    atomic_fetch_add(&model->refs, 1);
    return model;
}

void yd_model_release(yd_model *model)
{
    if (!model || atomic_fetch_sub(&model->refs, 1) != 1)
        return;
    yd_graph_free(model->graph);
    if (model->class_names)
        for (int i = 0; i < model->nc; i++)
            free(model->class_names[i]);
    free(model->class_names);
    free(model->path);
    free(model->name);
    free(model);
}

int yd_model_input_size(const yd_model *model) { return model->input_width; }
int yd_model_input_width(const yd_model *model) { return model->input_width; }
int yd_model_input_height(const yd_model *model) { return model->input_height; }
int yd_model_class_count(const yd_model *model) { return model->nc; }
const char *yd_model_name(const yd_model *model) { return model->name; }
const char *yd_model_path(const yd_model *model) { return model->path; }
const char *yd_model_variant(const yd_model *model) { return model->variant; }
double yd_model_flops(const yd_model *model) { return model->flops; }

const char *yd_model_class_name(const yd_model *model, int class_id)
{
    if (class_id < 0 || class_id >= model->nc)
        return "";
    return model->class_names[class_id];
}
