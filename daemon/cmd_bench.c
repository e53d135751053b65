/*
 * yolod bench: times the network alone (no decode, letterbox or head) on a
 * fixed input tensor, for side-by-side comparisons with other engines; or,
 * with --image, the whole pipeline of one request without HTTP: JPEG/PNG
 * decode from memory, letterbox, network, head and NMS.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "util.h"

typedef struct bench_options {
    const char *model_path;
    const char *input_path;
    const char *image_path;
    int threads, runs, warmup, json, layers;
    uint64_t max_pixels; /* largest --image in pixels (width * height), as in detect */
} bench_options;

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int parse_count(const char *name, const char *value, int min, int max, int *out)
{
    char *end;
    long v = strtol(value, &end, 10);

    if (*value < '0' || *value > '9' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "yolod bench: invalid --%s '%s' (expected an integer from %d to %d)\n",
                name, value, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_bench_args(int argc, char **argv, bench_options *o)
{
    for (int i = 1; i < argc;) {
        char name[64], err[256];
        const char *value;

        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_bench_print_help();
            exit(0);
        }
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "--layers") == 0) {
            *(argv[i][2] == 'j' ? &o->json : &o->layers) = 1;
            i++;
            continue;
        }
        if (strncmp(argv[i], "--", 2) != 0) {
            fprintf(stderr, "yolod bench: unexpected argument '%s'; see 'yolod help bench'\n", argv[i]);
            return -1;
        }
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            fprintf(stderr, "yolod bench: %s\n", err);
            return -1;
        }
        if (strcmp(name, "model") == 0)
            o->model_path = value;
        else if (strcmp(name, "input") == 0)
            o->input_path = value;
        else if (strcmp(name, "image") == 0)
            o->image_path = value;
        else if (strcmp(name, "threads") == 0) {
            if (parse_count(name, value, 0, 1024, &o->threads) != 0)
                return -1;
        } else if (strcmp(name, "runs") == 0) {
            if (parse_count(name, value, 1, 100000, &o->runs) != 0)
                return -1;
        } else if (strcmp(name, "warmup") == 0) {
            if (parse_count(name, value, 0, 100000, &o->warmup) != 0)
                return -1;
        } else {
            fprintf(stderr, "yolod bench: unknown option '--%s'; see 'yolod help bench'\n", name);
            return -1;
        }
    }
    if (!o->model_path) {
        fprintf(stderr, "yolod bench: --model FILE is required\n");
        return -1;
    }
    if (o->layers && (o->json || o->image_path)) {
        fprintf(stderr, "yolod bench: --layers goes with neither --json nor --image\n");
        return -1;
    }
    if (o->input_path && o->image_path) {
        fprintf(stderr, "yolod bench: --input and --image exclude each other; give one\n");
        return -1;
    }
    return 0;
}

/* The input tensor: a raw float32 [3][H][W] file, or a fixed pattern. */
static float *make_input(const bench_options *o, int width, int height)
{
    size_t count = (size_t)3 * width * height;
    float *input = malloc(count * sizeof *input);

    if (!input)
        return NULL;
    if (o->input_path) {
        const size_t bytes = count * sizeof *input;
        struct stat st;
        FILE *f = NULL;

        /* stat first: opening a FIFO would wait for a writer. */
        if (stat(o->input_path, &st) != 0)
            fprintf(stderr, "yolod bench: cannot open '%s': %s\n", o->input_path, strerror(errno));
        else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != bytes)
            fprintf(stderr, "yolod bench: '%s' is %s, expected %zu bytes: [3][%d][%d] float32 for "
                    "this model\n", o->input_path,
                    S_ISREG(st.st_mode) ? "the wrong size" : "not a regular file", bytes, height,
                    width);
        else if (!(f = fopen(o->input_path, "rb")))
            fprintf(stderr, "yolod bench: cannot open '%s': %s\n", o->input_path, strerror(errno));
        else if (fread(input, sizeof *input, count, f) != count)
            fprintf(stderr, "yolod bench: cannot read '%s': %s\n", o->input_path,
                    ferror(f) ? strerror(errno) : "the file shrank while it was read");
        else {
            fclose(f);
            return input;
        }
        if (f)
            fclose(f);
        free(input);
        return NULL;
    }
    /* Smooth gradients around the letterbox gray, so activations look like
     * a photo's rather than noise or zeros. */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                input[((size_t)c * height + y) * width + x] =
                    (float)(114 + ((x * (c + 1) + y * 2) % 100) - 50) / 255.0f;
    return input;
}

/* Sorts values in place and returns their median. */
static double median_of(double *values, int count)
{
    qsort(values, (size_t)count, sizeof *values, compare_doubles);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

/* Columns of the per-run times, each `runs` long, in milliseconds. */
enum { STAGE_TOTAL, STAGE_DECODE, STAGE_PREPROCESS, STAGE_INFERENCE, STAGE_POSTPROCESS, STAGE_COUNT };

static const char *const stage_keys[STAGE_COUNT] = {
    "median_ms", "decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms",
};

/* Times the network alone on a tensor; fills times[STAGE_TOTAL]. */
static int time_tensor(yd_session *session, const yd_model *model, const bench_options *o,
                       double *times)
{
    float *input = make_input(o, yd_model_input_width(model), yd_model_input_height(model));

    if (!input)
        return -1;
    for (int i = 0; i < o->warmup; i++)
        yd_session_run_planar(session, input);
    for (int i = 0; i < o->runs; i++) {
        double start = yd_now_ms();

        yd_session_run_planar(session, input);
        times[i] = yd_now_ms() - start;
    }
    free(input);
    return 0;
}

/*
 * Runs one request's pipeline on the encoded image in memory, as the daemon
 * does after it has read the body: decode, yd_detect with the default
 * parameters, free. Stores the stage times of run `i` when i >= 0.
 */
static int detect_once(yd_session *session, const bench_options *o, const uint8_t *data,
                       size_t size, int i, double *times, int *detections)
{
    const int runs = o->runs;
    yd_detect_params params;
    yd_image image = {0};
    yd_result result = {0};
    yd_error err = {0};
    double start = yd_now_ms(), decoded;
    int rc;

    yd_detect_params_default(&params);
    rc = yd_image_decode(data, size, o->max_pixels, &image, &err);
    decoded = yd_now_ms();
    if (rc == YD_OK)
        rc = yd_detect(session, &image, &params, &result, &err);
    yd_image_free(&image);
    if (rc != YD_OK) {
        fprintf(stderr, "yolod bench: %s: %s\n", o->image_path, err.message);
        return -1;
    }
    *detections = result.count;
    yd_result_free(&result);
    if (i >= 0) {
        times[STAGE_TOTAL * runs + i] = yd_now_ms() - start;
        times[STAGE_DECODE * runs + i] = decoded - start;
        times[STAGE_PREPROCESS * runs + i] = result.timings.preprocess_ms;
        times[STAGE_INFERENCE * runs + i] = result.timings.inference_ms;
        times[STAGE_POSTPROCESS * runs + i] = result.timings.postprocess_ms;
    }
    return 0;
}

/* Times the whole pipeline on o->image_path; fills every column of times. */
static int time_image(yd_session *session, const bench_options *o, double *times, int *detections)
{
    uint8_t *data = NULL;
    size_t size = 0;
    yd_error err = {0};
    int status = -1;

    if (yd_read_file(o->image_path, &data, &size, &err) != YD_OK) {
        fprintf(stderr, "yolod bench: %s\n", err.message);
        return -1;
    }
    for (int i = 0; i < o->warmup; i++)
        if (detect_once(session, o, data, size, -1, times, detections) != 0)
            goto done;
    for (int i = 0; i < o->runs; i++)
        if (detect_once(session, o, data, size, i, times, detections) != 0)
            goto done;
    status = 0;

done:
    free(data);
    return status;
}

static void print_json(const yd_model *model, const yd_session *session, const bench_options *o,
                       double *times, int stages, int detections)
{
    double sum = 0, median, network_ms, gflops = yd_model_flops(model) / 1e9;
    cJSON *root = cJSON_CreateObject();
    char *text;

    for (int i = 0; i < o->runs; i++)
        sum += times[i];
    median = median_of(times, o->runs);
    /* GFLOP/s of the network alone, also when the whole pipeline was timed. */
    network_ms = stages > 1 ? median_of(times + (size_t)STAGE_INFERENCE * o->runs, o->runs) : median;
    cJSON_AddStringToObject(root, "model", o->model_path);
    if (o->image_path)
        cJSON_AddStringToObject(root, "image", o->image_path);
    cJSON_AddStringToObject(root, "kernels", model->kernels->name);
    cJSON_AddNumberToObject(root, "threads", session->threads);
    cJSON_AddNumberToObject(root, "runs", o->runs);
    cJSON_AddNumberToObject(root, "median_ms", median);
    cJSON_AddNumberToObject(root, "min_ms", times[0]);
    cJSON_AddNumberToObject(root, "max_ms", times[o->runs - 1]);
    cJSON_AddNumberToObject(root, "mean_ms", sum / o->runs);
    cJSON_AddNumberToObject(root, "gflops", gflops);
    cJSON_AddNumberToObject(root, "gflops_per_second", gflops / (network_ms / 1e3));
    if (o->image_path) {
        cJSON_AddNumberToObject(root, "images_per_second", o->runs / (sum / 1e3));
        cJSON_AddNumberToObject(root, "detections", detections);
    }
    for (int s = 1; s < stages; s++)
        cJSON_AddNumberToObject(root, stage_keys[s], median_of(times + (size_t)s * o->runs, o->runs));
    text = cJSON_PrintUnformatted(root);
    if (text)
        puts(text);
    free(text);
    cJSON_Delete(root);
}

static void print_text(const yd_model *model, const yd_session *session, const bench_options *o,
                       double *times, int stages, int detections)
{
    double sum = 0, median, stage[STAGE_COUNT] = {0};

    for (int i = 0; i < o->runs; i++)
        sum += times[i];
    median = median_of(times, o->runs);
    stage[STAGE_INFERENCE] = median;
    for (int s = 1; s < stages; s++)
        stage[s] = median_of(times + (size_t)s * o->runs, o->runs);

    printf("%s: %s kernels, %d threads, %d runs: median %.2f ms, min %.2f ms, network %.1f GFLOP/s\n",
           o->model_path, model->kernels->name, session->threads, o->runs, median, times[0],
           yd_model_flops(model) / 1e9 / (stage[STAGE_INFERENCE] / 1e3));
    if (o->image_path)
        printf("%s: %d detections; stage medians: decode %.2f ms, letterbox %.2f ms, "
               "network %.2f ms, head and NMS %.2f ms; %.1f images/s (mean %.2f ms)\n",
               o->image_path, detections, stage[STAGE_DECODE], stage[STAGE_PREPROCESS],
               stage[STAGE_INFERENCE], stage[STAGE_POSTPROCESS], o->runs / (sum / 1e3),
               sum / o->runs);
}

/* Weight precisions by yd_precision value; fp16 weights are computed in fp32. */
static const char *const precision_names[] = {
    [YD_PREC_FP32] = "fp32", [YD_PREC_FP16] = "fp16", [YD_PREC_INT8] = "int8",
};

/* Returns 1 if the convolution runs as Winograd (fp32 or int8). */
static int winograd(const yd_node *node)
{
    return node->conv.winograd || (node->conv.qpacked && node->conv.qpacked->winograd_u);
}

/*
 * Runs the network `runs` more times with a barrier after every node and
 * prints each node's mean time, share and rate. The barriers add a little
 * to every node, so the sum exceeds the medians above.
 */
static int print_layers(yd_session *session, const yd_model *model, const bench_options *o)
{
    const yd_graph *g = model->graph;
    double *ms = calloc((size_t)g->nnodes + 1, sizeof *ms), total = 0;
    float *input = make_input(o, yd_model_input_width(model), yd_model_input_height(model));

    if (!ms || !input) {
        free(ms);
        free(input);
        return -1;
    }
    session->node_ms = ms;
    for (int i = 0; i < o->runs; i++)
        yd_session_run_planar(session, input);
    session->node_ms = NULL;
    for (int i = 0; i <= g->nnodes; i++)
        total += ms[i];

    printf("\n%4s  %-9s %-38s %-14s %-4s %-8s %8s %6s %8s\n", "#", "op", "name", "output", "prec",
           "kernel", "ms", "share", "GFLOP/s");
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        const yd_value *out = &g->values[node->output];
        const double mean = ms[i] / o->runs, flops = yd_node_flops(g, node);
        const char *precision = "", *kernel = "";
        char shape[32];

        if (node->dead || node->op == YD_OP_INPUT)
            continue;
        if (node->op == YD_OP_CONV) {
            precision = precision_names[node->conv.precision];
            kernel = winograd(node) ? "winograd" : "direct";
            /* Int8 weights dequantized for the fp32 kernels (no VNNI). */
            if (node->conv.precision == YD_PREC_INT8 && !yd_conv_runs_int8(node))
                precision = "fp32";
        }
        snprintf(shape, sizeof shape, "%dx%dx%d", out->c, out->h, out->w);
        printf("%4d  %-9s %-38.38s %-14s %-4s %-8s %8.3f %5.1f%% %8.0f\n", i, yd_op_name(node->op),
               node->name, shape, precision, kernel, mean, 100 * ms[i] / total,
               flops / 1e9 / (mean / 1e3));
    }
    printf("%4s  %-9s %-38s %-14s %-4s %-8s %8.3f %5.1f%%\n", "", "other",
           "input packing, head maps", "", "", "", ms[g->nnodes] / o->runs,
           100 * ms[g->nnodes] / total);
    printf("%4s  %-9s %-38s %-14s %-4s %-8s %8.3f\n", "", "total", "", "", "", "",
           total / o->runs);
    free(ms);
    free(input);
    return 0;
}

static const char bench_help[] =
    "Usage: yolod bench --model FILE [--threads N] [--runs N] [--warmup N]\n"
    "                   [--input FILE | --image FILE] [--json | --layers]\n"
    "\n"
    "Times the network alone (no decoding, letterbox or detection head) on a fixed\n"
    "input and prints the median and minimum latency. With --image, times the whole\n"
    "pipeline of one request instead, without HTTP: decoding the file's bytes from\n"
    "memory, letterbox, network, detection head and NMS with the default thresholds.\n"
    "\n"
    "Options:\n"
    "  --model FILE     model to time (required)\n"
    "  --threads N      OpenMP threads (default 0 = all cores)\n"
    "  --runs N         timed runs (default 20)\n"
    "  --warmup N       untimed runs first (default 3)\n"
    "  --input FILE     raw float32 [3][H][W] input tensor (default: a fixed pattern)\n"
    "  --image FILE     JPEG or PNG to time the whole pipeline on; also reports the\n"
    "                   median of each stage and images/s (runs / total time); as\n"
    "                   in detect, an image above 50M pixels (width * height) is\n"
    "                   rejected\n"
    "  --json           print one JSON object: median_ms, min_ms, max_ms, mean_ms,\n"
    "                   threads, gflops (2 per multiply-add); with --image also\n"
    "                   images_per_second, detections, decode_ms, preprocess_ms,\n"
    "                   inference_ms, postprocess_ms\n"
    "  --layers         then run the network --runs more times with a barrier after\n"
    "                   each layer, and print each layer's mean time, share of the\n"
    "                   total and GFLOP/s (not with --json or --image)\n"
    "\n"
    "Exit status: 0 on success, 1 if the model, input or image cannot be read or\n"
    "decoded, 2 for invalid usage.\n";

const char *command_bench_help_text(void)
{
    return bench_help;
}

void command_bench_print_help(void)
{
    fputs(bench_help, stdout);
}

int command_bench(int argc, char **argv)
{
    bench_options o = {.runs = 20, .warmup = 3};
    struct config defaults;
    yd_model *model = NULL;
    yd_session *session = NULL;
    yd_error err = {0};
    double *times = NULL;
    int stages, detections = 0;
    int status = EXIT_RUNTIME;

    if (parse_bench_args(argc, argv, &o) != 0)
        return EXIT_USAGE;
    config_init(&defaults);
    o.max_pixels = defaults.max_pixels;
    config_free(&defaults);
    yd_set_log_callback(log_library_message, NULL);
    if (yd_model_load(o.model_path, NULL, &model, &err) != YD_OK) {
        fprintf(stderr, "yolod bench: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    if (yd_session_create(model, o.threads, &session, &err) != YD_OK) {
        fprintf(stderr, "yolod bench: %s\n", err.message);
        goto done;
    }
    stages = o.image_path ? STAGE_COUNT : 1;
    times = calloc((size_t)o.runs * stages, sizeof *times);
    if (!times) {
        fprintf(stderr, "yolod bench: out of memory\n");
        goto done;
    }
    if (o.image_path ? time_image(session, &o, times, &detections)
                     : time_tensor(session, model, &o, times))
        goto done;

    if (o.json)
        print_json(model, session, &o, times, stages, detections);
    else
        print_text(model, session, &o, times, stages, detections);
    if (o.layers && print_layers(session, model, &o) != 0) {
        fprintf(stderr, "yolod bench: out of memory\n");
        goto done;
    }
    status = 0;

done:
    free(times);
    yd_session_destroy(session);
    yd_model_release(model);
    return status;
}
