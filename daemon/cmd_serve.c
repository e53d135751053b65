/*
 * `yolod serve`: load the models, start the workers and the HTTP server,
 * then wait for SIGINT or SIGTERM.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "log.h"
#include "notify.h"
#include "server.h"
#include "util.h"

/*
 * Builds the config: defaults, then --config FILE, then the other flags in
 * order. The first --model on the command line drops the file's models.
 */
static int parse_serve_args(int argc, char **argv, struct config *config)
{
    char name[64], err[1024];
    const char *value;
    bool cli_models = false;

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
                fprintf(stderr, "yolod serve: %s\n", err);
                return EXIT_USAGE;
            }
            if (config_load_file(config, value, err, sizeof err) != 0) {
                fprintf(stderr, "yolod serve: %s\n", err);
                return EXIT_USAGE;
            }
        } else {
            i++;
        }
    }

    for (int i = 1; i < argc;) {
        const char *option;

        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_print_help("serve");
            exit(0);
        }
        if (strncmp(argv[i], "--", 2) != 0 || argv[i][2] == '\0') {
            fprintf(stderr, "yolod serve: unexpected argument '%s'; see 'yolod help serve'\n", argv[i]);
            return EXIT_USAGE;
        }
        option = argv[i];
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            fprintf(stderr, "yolod serve: %s\n", err);
            return EXIT_USAGE;
        }
        if (strcmp(name, "config") == 0)
            continue;

        for (char *c = name; *c; c++)
            if (*c == '-')
                *c = '_';
        if (strcmp(name, "model") == 0 && !cli_models) {
            config_clear_models(config);
            cli_models = true;
        }
        if (config_set(config, name, value, err, sizeof err) != 0) {
            if (strncmp(err, "unknown key", 11) == 0)
                fprintf(stderr, "yolod serve: unknown option '%s'; see 'yolod help serve'\n", option);
            else
                fprintf(stderr, "yolod serve: --%s\n", err);
            return EXIT_USAGE;
        }
    }

    if (config->model_count == 0) {
        fprintf(stderr, "yolod serve: no model given: pass --model FILE or set 'model = FILE' in the config file\n");
        return EXIT_USAGE;
    }
    return 0;
}

static int load_models(const struct config *config, yd_model **models)
{
    for (int i = 0; i < config->model_count; i++) {
        yd_error error = { 0 };
        double start = yd_now_ms();
        int rc = yd_model_load(config->models[i], NULL, &models[i], &error);

        if (rc < 0) {
            log_printf(YD_LOG_ERROR, "cannot load model: %s", error.message);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(yd_model_name(models[j]), yd_model_name(models[i])) == 0) {
                log_printf(YD_LOG_ERROR, "models '%s' and '%s' have the same name '%s';"
                           " rename one file, because requests choose models by file name",
                           config->models[j], config->models[i], yd_model_name(models[i]));
                return -1;
            }
        }
        log_printf(YD_LOG_INFO, "loaded model %s from %s: input %dx%d, %d classes, %.2f GFLOPs, %.0f ms",
                   yd_model_name(models[i]), config->models[i], yd_model_input_width(models[i]),
                   yd_model_input_height(models[i]),
                   yd_model_class_count(models[i]), yd_model_flops(models[i]) / 1e9,
                   yd_now_ms() - start);
    }
    return 0;
}

/*
 * Waits for SIGINT or SIGTERM (blocked in every thread) and returns its
 * number. Sends "WATCHDOG=1" every notify_watchdog_interval_us while waiting,
 * so systemd restarts the daemon if the main thread hangs.
 * NOTE: a ping shows only that the main thread runs, not that the inference
 * workers or the HTTP threads make progress.
 */
static int wait_for_stop_signal(const sigset_t *stop_signals)
{
    uint64_t interval_us = notify_watchdog_interval_us();
    struct timespec timeout = {
        .tv_sec = (time_t)(interval_us / 1000000),
        .tv_nsec = (long)(interval_us % 1000000) * 1000,
    };

    for (;;) {
        int signal_number = interval_us > 0 ? sigtimedwait(stop_signals, NULL, &timeout)
                                            : sigwaitinfo(stop_signals, NULL);

        if (signal_number > 0)
            return signal_number;
        if (errno == EAGAIN)
            notify_send("WATCHDOG=1");
    }
}

int command_serve(int argc, char **argv)
{
    struct config config;
    struct server server;
    yd_model *models[CONFIG_MAX_MODELS] = { 0 };
    yd_error error = { 0 };
    sigset_t stop_signals;
    char model_list[512];
    size_t used = 0;
    long cores;
    int threads, signal_number = 0;
    int status = EXIT_RUNTIME;

    config_init(&config);
    memset(&server, 0, sizeof server);
    server.listen_fd = -1;
    status = parse_serve_args(argc, argv, &config);
    if (status != 0)
        goto cleanup;
    status = EXIT_RUNTIME;

    log_set_level(config.log_level);
    yd_set_log_callback(log_library_message, NULL);
    notify_init();

    /* Block the stop signals in every thread created from here on; main sigwaits. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    if (load_models(&config, models) != 0)
        goto cleanup;

    cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = config.threads;
    if (threads == 0)
        threads = cores > config.workers ? (int)(cores / config.workers) : 1;

    if (worker_pool_start(models, config.model_count, config.workers, threads,
                          config.queue_size, &server.pool, &error) < 0) {
        log_printf(YD_LOG_ERROR, "cannot start the inference workers: %s", error.message);
        goto cleanup;
    }

    server.config = &config;
    server.models = models;
    server.model_count = config.model_count;
    atomic_init(&server.ready, false);
    atomic_init(&server.active_requests, 0);
    atomic_init(&server.decodes, 0);
    server.max_decodes = config.max_decodes > 0 ? config.max_decodes : 2 * (int)(cores > 0 ? cores : 1);
    if (server_start(&server) != 0)
        goto cleanup;
    atomic_store(&server.ready, true);

    model_list[0] = '\0';
    for (int i = 0; i < config.model_count && used < sizeof model_list; i++)
        used += (size_t)snprintf(model_list + used, sizeof model_list - used, "%s%s%s",
                                 i ? ", " : "", yd_model_name(models[i]), i ? "" : " (default)");
    log_printf(YD_LOG_INFO, "yolod %s listening on http://%s, models: %s, workers: %d x %d threads,"
               " queue %d, decodes %d",
               YOLOD_VERSION, config.listen, model_list, config.workers, threads,
               config.queue_size, server.max_decodes);

    notify_status("listening on %s, models: %s", config.listen, model_list);
    notify_send("READY=1");
    signal_number = wait_for_stop_signal(&stop_signals);
    notify_send("STOPPING=1");
    log_printf(YD_LOG_INFO, "received %s, finishing requests in progress and stopping",
               strsignal(signal_number));
    notify_status("received %s, finishing requests in progress", strsignal(signal_number));
    atomic_store(&server.ready, false);
    status = 0;

cleanup:
    server_stop(&server);
    worker_pool_stop(server.pool);
    for (int i = 0; i < CONFIG_MAX_MODELS; i++)
        if (models[i])
            yd_model_release(models[i]);
    if (status == 0)
        log_printf(YD_LOG_INFO, "stopped");
    notify_close();
    config_free(&config);
    return status;
}
