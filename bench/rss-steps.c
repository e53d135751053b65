/*
 * rss-steps: where a daemon's resident memory goes, step by step. Loads each
 * model, then creates WORKERS sessions per model (one per daemon worker, as
 * the worker pool's session cache does), then runs one detection on each
 * session, printing VmRSS from /proc/self/status after every step.
 *
 * Usage: rss-steps IMAGE THREADS WORKERS MODEL...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

/* VmRSS in kB, or -1 if /proc cannot be read. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static long report(const char *step, long before)
{
    long now = rss_kb();

    printf("%-60s %8.1f MiB  %+8.1f MiB\n", step, now / 1024.0, (now - before) / 1024.0);
    return now;
}

int main(int argc, char **argv)
{
    enum { MAX_MODELS = 8, MAX_WORKERS = 16 };
    yd_model *models[MAX_MODELS] = {0};
    yd_session *sessions[MAX_MODELS][MAX_WORKERS] = {{0}};
    yd_image image = {0};
    yd_error err = {0};
    int threads, workers, count = argc - 4, status = 1;
    char step[512];
    long rss;

    if (argc < 5 || count > MAX_MODELS || (threads = atoi(argv[2])) < 0 ||
        (workers = atoi(argv[3])) < 1 || workers > MAX_WORKERS) {
        fprintf(stderr, "usage: rss-steps IMAGE THREADS WORKERS(1-%d) MODEL... (at most %d models)\n",
                MAX_WORKERS, MAX_MODELS);
        return 2;
    }
    rss = report("start", 0);
    if (yd_image_load(argv[1], 0, &image, &err) != YD_OK)
        goto failed;
    rss = report("image decoded", rss);

    for (int m = 0; m < count; m++) {
        /* As the daemon loads them: source weights freed once packed. */
        yd_model_options options = { .serve_only = 1 };

        if (yd_model_load(argv[4 + m], &options, &models[m], &err) != YD_OK)
            goto failed;
        snprintf(step, sizeof step, "load %s %s (arena %.1f MiB per session)",
                 yd_model_name(models[m]), yd_model_variant(models[m]),
                 (double)models[m]->graph->arena_bytes / (1 << 20));
        rss = report(step, rss);
    }
    for (int m = 0; m < count; m++) {
        for (int w = 0; w < workers; w++)
            if (yd_session_create(models[m], threads, &sessions[m][w], &err) != YD_OK)
                goto failed;
        snprintf(step, sizeof step, "%d session(s) of %s %s, %d threads", workers,
                 yd_model_name(models[m]), yd_model_variant(models[m]), sessions[m][0]->threads);
        rss = report(step, rss);
    }
    for (int m = 0; m < count; m++) {
        for (int w = 0; w < workers; w++) {
            yd_detect_params params;
            yd_result result = {0};

            yd_detect_params_default(&params);
            if (yd_detect(sessions[m][w], &image, &params, &result, &err) != YD_OK)
                goto failed;
            yd_result_free(&result);
        }
        snprintf(step, sizeof step, "first detection on each session of %s %s",
                 yd_model_name(models[m]), yd_model_variant(models[m]));
        rss = report(step, rss);
    }
    status = 0;

failed:
    if (status != 0)
        fprintf(stderr, "rss-steps: %s\n", err.message);
    for (int m = 0; m < count; m++) {
        for (int w = 0; w < workers; w++)
            yd_session_destroy(sessions[m][w]);
        yd_model_release(models[m]);
    }
    yd_image_free(&image);
    return status;
}
