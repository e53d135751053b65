/*
 * yolod bench: times the engine alone (no decode, letterbox or head) on a
 * fixed input tensor, for side-by-side comparisons with other engines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "engine.h"
#include "util.h"

typedef struct bench_options {
    const char *model_path;
    const char *input_path;
    int threads, runs, warmup, json;
} bench_options;

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int parse_count(const char *name, const char *value, int min, int *out)
{
    char *end;
    long v = strtol(value, &end, 10);

    if (*value == '\0' || *end != '\0' || v < min || v > 100000) {
        fprintf(stderr, "yolod bench: invalid --%s '%s' (expected an integer from %d to 100000)\n",
                name, value, min);
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
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
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
        else if (strcmp(name, "threads") == 0) {
            if (parse_count(name, value, 0, &o->threads) != 0)
                return -1;
        } else if (strcmp(name, "runs") == 0) {
            if (parse_count(name, value, 1, &o->runs) != 0)
                return -1;
        } else if (strcmp(name, "warmup") == 0) {
            if (parse_count(name, value, 0, &o->warmup) != 0)
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
        FILE *f = fopen(o->input_path, "rb");
        size_t got = f ? fread(input, sizeof *input, count, f) : 0;

        if (f)
            fclose(f);
        if (got != count) {
            fprintf(stderr, "yolod bench: cannot read %zu floats ([3][%d][%d] float32) from '%s'\n",
                    count, height, width, o->input_path);
            free(input);
            return NULL;
        }
        return input;
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

void command_bench_print_help(void)
{
    fputs("Usage: yolod bench --model FILE [--threads N] [--runs N] [--warmup N] [--input FILE] [--json]\n"
          "\n"
          "Times the network alone (no decoding, letterbox or detection head) on a fixed\n"
          "input and prints the median and minimum latency.\n"
          "\n"
          "Options:\n"
          "  --model FILE     model to time (required)\n"
          "  --threads N      OpenMP threads (default 0 = all cores)\n"
          "  --runs N         timed runs (default 20)\n"
          "  --warmup N       untimed runs first (default 3)\n"
          "  --input FILE     raw float32 [3][H][W] input tensor (default: a fixed pattern)\n"
          "  --json           print one JSON object: median_ms, min_ms, max_ms, threads, ...\n"
          "\n"
          "Exit status: 0 on success, 1 if the model or input cannot be read, 2 for invalid usage.\n",
          stdout);
}

int command_bench(int argc, char **argv)
{
    bench_options o = {.runs = 20, .warmup = 3};
    yd_model *model = NULL;
    yd_session *session = NULL;
    yd_error err = {0};
    double *times = NULL;
    float *input = NULL;
    int status = EXIT_RUNTIME;

    if (parse_bench_args(argc, argv, &o) != 0)
        return EXIT_USAGE;
    if (yd_model_load(o.model_path, NULL, &model, &err) != YD_OK) {
        fprintf(stderr, "yolod bench: %s\n", err.message);
        return EXIT_RUNTIME;
    }
    if (yd_session_create(model, o.threads, &session, &err) != YD_OK) {
        fprintf(stderr, "yolod bench: %s\n", err.message);
        goto done;
    }
    input = make_input(&o, yd_model_input_width(model), yd_model_input_height(model));
    times = malloc((size_t)o.runs * sizeof *times);
    if (!input || !times)
        goto done;

    for (int i = 0; i < o.warmup; i++)
        yd_session_run_planar(session, input);
    for (int i = 0; i < o.runs; i++) {
        double start = yd_now_ms();

        yd_session_run_planar(session, input);
        times[i] = yd_now_ms() - start;
    }
    qsort(times, (size_t)o.runs, sizeof *times, compare_doubles);

    double median = o.runs % 2 ? times[o.runs / 2] : (times[o.runs / 2 - 1] + times[o.runs / 2]) / 2;
    double gflops = yd_model_flops(model) / 1e9;

    if (o.json) {
        cJSON *root = cJSON_CreateObject();
        char *text;

        cJSON_AddStringToObject(root, "model", o.model_path);
        cJSON_AddStringToObject(root, "kernels", model->kernels->name);
        cJSON_AddNumberToObject(root, "threads", session->threads);
        cJSON_AddNumberToObject(root, "runs", o.runs);
        cJSON_AddNumberToObject(root, "median_ms", median);
        cJSON_AddNumberToObject(root, "min_ms", times[0]);
        cJSON_AddNumberToObject(root, "max_ms", times[o.runs - 1]);
        cJSON_AddNumberToObject(root, "gflops", gflops);
        cJSON_AddNumberToObject(root, "gflops_per_second", gflops / (median / 1e3));
        text = cJSON_PrintUnformatted(root);
        if (text)
            puts(text);
        free(text);
        cJSON_Delete(root);
    } else {
        printf("%s: %s kernels, %d threads, %d runs: median %.2f ms, min %.2f ms, %.1f GFLOP/s\n",
               o.model_path, model->kernels->name, session->threads, o.runs, median, times[0],
               gflops / (median / 1e3));
    }
    status = 0;

done:
    free(times);
    free(input);
    yd_session_destroy(session);
    yd_model_release(model);
    return status;
}
