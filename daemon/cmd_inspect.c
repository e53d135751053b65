/*
 * `yolod inspect`: print a model's layers (shapes, kernel, precision, FLOPs,
 * weight bytes), its totals, class count, input size and, for .yolod files,
 * the provenance stored in the file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "commands.h"
#include "engine.h"
#include "log.h"
#include "model_file.h"
#include "util.h"

static const char inspect_help[] =
    "Usage: yolod inspect [--log-level LEVEL] [--] FILE\n"
    "\n"
    "Loads an ONNX export or a .yolod file and prints one row per layer: index, op,\n"
    "name, input and output shapes (channels x height x width), kernel and stride,\n"
    "weight precision, FLOPs and weight bytes; then the totals, the class count, the\n"
    "input size and, for .yolod files, where the variant came from.\n"
    "\n"
    "Options:\n"
    "  --log-level LEVEL        debug, info, warn or error (default warn)\n"
    "\n"
    "Exit status: 0 on success, 1 if the file cannot be loaded, 2 for invalid usage.\n";

const char *command_inspect_help_text(void)
{
    return inspect_help;
}

void command_inspect_print_help(void)
{
    fputs(inspect_help, stdout);
}

static const char *precision_name(yd_precision precision)
{
    switch (precision) {
    case YD_PREC_FP32: return "fp32";
    case YD_PREC_FP16: return "fp16";
    case YD_PREC_INT8: return "int8";
    }
    return "?";
}

static void format_shape(const yd_value *v, char *out, size_t size)
{
    snprintf(out, size, "%dx%dx%d", v->c, v->h, v->w);
}

/* Bytes the weights take in their stored precision, with scales and bias. */
static size_t weight_bytes(const yd_conv_params *p)
{
    size_t n = (size_t)p->out_c * p->in_c * p->kernel_h * p->kernel_w;
    size_t bias = (size_t)p->out_c * sizeof(float);

    switch (p->precision) {
    case YD_PREC_FP16: return 2 * n + bias;
    case YD_PREC_INT8: return n + 2 * bias;
    default: return 4 * n + bias;
    }
}

/* Op column: the op with its fused epilogues ("Conv+SiLU+Add"). */
static void format_op(const yd_node *node, char *out, size_t size)
{
    snprintf(out, size, "%s%s%s", yd_op_name(node->op),
             node->op == YD_OP_CONV && node->conv.act == YD_ACT_SILU ? "+SiLU" : "",
             node->residual >= 0 ? "+Add" : "");
}

/* Kernel column: "3x3/2" for windows, "x2" for upsampling, "[0,32)" for slices. */
static void format_kernel(const yd_node *node, char *out, size_t size)
{
    switch (node->op) {
    case YD_OP_CONV:
        snprintf(out, size, "%dx%d/%d", node->conv.kernel_h, node->conv.kernel_w, node->conv.stride_h);
        break;
    case YD_OP_MAXPOOL:
        snprintf(out, size, "%dx%d/%d", node->pool_kernel, node->pool_kernel, node->pool_stride);
        break;
    case YD_OP_UPSAMPLE:
        snprintf(out, size, "x%d", node->scale);
        break;
    case YD_OP_SLICE:
        snprintf(out, size, "[%d,%d)", node->slice_begin, node->slice_end);
        break;
    default:
        snprintf(out, size, "-");
        break;
    }
}

static void print_layers(const yd_graph *g)
{
    double total_flops = 0;
    size_t total_bytes = 0;
    int count[3] = {0, 0, 0}, layers = 0;

    printf("%4s  %-13s %-38s %-13s %-13s %-9s %-4s %9s %10s\n", "#", "op", "name", "input",
           "output", "kernel", "prec", "MFLOPs", "weights");
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        char op[32], in[48], out[32], kernel[24];
        const char *precision = "-";
        double flops = 0;
        size_t bytes = 0;

        if (node->dead || node->op == YD_OP_INPUT)
            continue;
        format_op(node, op, sizeof op);
        format_shape(&g->values[node->inputs[0]], in, sizeof in);
        if (node->ninputs > 1) {
            size_t used = strlen(in);

            snprintf(in + used, sizeof in - used, " +%d", node->ninputs - 1);
        }
        format_shape(&g->values[node->output], out, sizeof out);
        format_kernel(node, kernel, sizeof kernel);
        if (node->op == YD_OP_CONV) {
            precision = precision_name(node->conv.precision);
            flops = yd_node_flops(g, node);
            bytes = weight_bytes(&node->conv);
            count[node->conv.precision]++;
        }
        total_flops += flops;
        total_bytes += bytes;
        layers++;
        printf("%4d  %-13s %-38.38s %-13s %-13s %-9s %-4s %9.1f %10zu\n", layers, op, node->name, in, out,
               kernel, precision, flops / 1e6, bytes);
    }
    printf("%4s  %-13s %-38s %-13s %-13s %-9s %-4s %9.1f %10zu\n", "", "total",
           "", "", "", "", "", total_flops / 1e6, total_bytes);
    printf("\n%-16s %d (%d convolutions: %d fp32, %d fp16, %d int8)\n", "layers", layers,
           count[0] + count[1] + count[2], count[0], count[1], count[2]);
    printf("%-16s %.2f GFLOPs\n", "compute", total_flops / 1e9);
    printf("%-16s %zu bytes (%.2f MiB)\n", "weights", total_bytes, (double)total_bytes / (1 << 20));
}

static void print_classes(const yd_model *model)
{
    int nc = yd_model_class_count(model);

    printf("%-16s %d (", "classes", nc);
    for (int i = 0; i < nc && i < 5; i++)
        printf("%s%s", i ? ", " : "", yd_model_class_name(model, i));
    if (nc > 6)
        printf(", ...");
    if (nc > 5)
        printf(", %s", yd_model_class_name(model, nc - 1));
    printf(")\n");
}

static void print_provenance(const yd_model_provenance *prov)
{
    char created[64] = "unknown";
    time_t t = (time_t)prov->created;
    struct tm tm;

    if (prov->created > 0 && gmtime_r(&t, &tm))
        strftime(created, sizeof created, "%Y-%m-%d %H:%M:%S UTC", &tm);
    printf("%-16s %s\n", "variant", prov->variant[0] ? prov->variant : "unknown");
    printf("%-16s %s\n", "source", prov->source_name[0] ? prov->source_name : "unknown");
    printf("%-16s %s\n", "source sha256", prov->source_sha256[0] ? prov->source_sha256 : "unknown");
    printf("%-16s %s\n", "settings", prov->settings[0] ? prov->settings : "none");
    printf("%-16s %s\n", "calibration", prov->calibration_sha256[0] ? prov->calibration_sha256
                                                                     : "none (not calibrated)");
    if (isnan(prov->map50_95))
        printf("%-16s not recorded in the file (yolod eval measures it)\n", "mAP50-95");
    else
        printf("%-16s %.4f\n", "mAP50-95", prov->map50_95);
    if (!isnan(prov->map50))
        printf("%-16s %.4f\n", "mAP50", prov->map50);
    printf("%-16s %s\n", "created", created);
    printf("%-16s %s\n", "written by", prov->yolod_version[0] ? prov->yolod_version : "unknown");
}

int command_inspect(int argc, char **argv)
{
    const char *path = NULL;
    char name[64], err[512];
    const char *value;
    int log_level = YD_LOG_WARN, is_yolod, status = EXIT_RUNTIME;
    bool options_done = false;
    yd_model_provenance prov;
    yd_model *model = NULL;
    yd_error error = {0};
    struct stat st;

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_inspect_print_help();
            return 0;
        }
        /* After "--" every argument is a file name, even one that starts with "--". */
        if (!options_done && strcmp(argv[i], "--") == 0) {
            options_done = true;
            i++;
            continue;
        }
        if (options_done || strncmp(argv[i], "--", 2) != 0) {
            if (path) {
                fprintf(stderr, "yolod inspect: more than one file given ('%s', '%s')\n", path, argv[i]);
                return EXIT_USAGE;
            }
            path = argv[i++];
            continue;
        }
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            fprintf(stderr, "yolod inspect: %s\n", err);
            return EXIT_USAGE;
        }
        if (strcmp(name, "log-level") != 0) {
            fprintf(stderr, "yolod inspect: unknown option '--%s'; see 'yolod help inspect'\n", name);
            return EXIT_USAGE;
        }
        log_level = log_parse_level(value);
        if (log_level < 0) {
            fprintf(stderr, "yolod inspect: invalid --log-level '%s' (expected debug, info, warn or"
                    " error)\n", value);
            return EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "yolod inspect: no file given; usage: yolod inspect FILE\n");
        return EXIT_USAGE;
    }
    log_set_level(log_level);
    yd_set_log_callback(log_library_message, NULL);

    is_yolod = yd_model_file_sniff_path(path, &error);
    if (is_yolod < 0 || yd_model_load(path, NULL, &model, &error) < 0) {
        fprintf(stderr, "yolod inspect: cannot load model: %s\n", error.message);
        goto done;
    }
    yd_model_provenance_init(&prov);
    if (is_yolod && yd_model_file_load(path, NULL, NULL, &prov, &error) < 0) {
        fprintf(stderr, "yolod inspect: cannot read the metadata of '%s': %s\n", path, error.message);
        goto done;
    }

    printf("%-16s %s\n", "file", path);
    if (is_yolod)
        printf("%-16s .yolod version %d.%d\n", "format", prov.format_major, prov.format_minor);
    else
        printf("%-16s ONNX\n", "format");
    if (stat(path, &st) == 0)
        printf("%-16s %lld bytes (%.2f MiB)\n", "size", (long long)st.st_size,
               (double)st.st_size / (1 << 20));
    printf("%-16s 3x%dx%d\n", "input", yd_model_input_height(model), yd_model_input_width(model));
    print_classes(model);
    printf("\n");
    print_layers(model->graph);
    printf("%-16s %.1f MiB per session\n", "activations",
           (double)model->graph->arena_bytes / (1 << 20));

    printf("\n");
    if (is_yolod) {
        print_provenance(&prov);
    } else {
        char hex[65];

        printf("%-16s none (an ONNX export; yolod compress writes a .yolod variant)\n", "provenance");
        if (yd_sha256_file(path, hex, &error) == 0)
            printf("%-16s %s\n", "sha256", hex);
    }
    status = 0;

done:
    yd_model_release(model);
    return status;
}
