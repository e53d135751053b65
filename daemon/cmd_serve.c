/*
 * `yolod serve`: load the models, start the workers and the HTTP server,
 * then wait for SIGINT or SIGTERM.
 */
#include <errno.h>
#include <malloc.h>
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
#include "metrics.h"
#include "notify.h"
#include "registry.h"
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

    if (config->model_count == 0 && !config->model_dir) {
        fprintf(stderr, "yolod serve: no model given: pass --model FILE or --model-dir DIR,"
                " or set 'model = FILE' or 'model_dir = DIR' in the config file\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* Loads the --model files, then the --model-dir files, as version 1 of each entry. */
static int load_models(const struct config *config, struct registry *registry)
{
    yd_error error = { 0 };

    for (int i = 0; i < config->model_count; i++) {
        if (registry_add_file(registry, config->models[i], &error) < 0) {
            log_printf(YD_LOG_ERROR, "cannot load model %s: %s", config->models[i], error.message);
            return -1;
        }
    }
    if (config->model_dir && registry_add_dir(registry, config->model_dir, &error) < 0) {
        log_printf(YD_LOG_ERROR, "cannot load the models of --model-dir %s: %s",
                   config->model_dir, error.message);
        return -1;
    }
    if (registry_count(registry) == 0) {
        log_printf(YD_LOG_ERROR, "no model loaded: %s has no NAME.onnx or NAME.VARIANT.yolod file",
                   config->model_dir);
        return -1;
    }
    return 0;
}

/* Registers one model per registry entry with the metrics, in entry order. */
static void register_metrics(struct registry *registry)
{
    yd_model *models[256];
    struct registry_ref refs[256];
    int count = registry_count(registry) < 256 ? registry_count(registry) : 256;

    for (int i = 0; i < count; i++) {
        bool name_known;

        registry_acquire(registry, registry_name(registry, i), registry_variant(registry, i),
                         &refs[i], &name_known);
        models[i] = refs[i].model;
    }
    metrics_register_models(models, count);
    for (int i = 0; i < count; i++)
        registry_release(&refs[i]);
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
    struct registry *registry = NULL;
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

    /*
     * Buffers of 1 MiB and more (weights, session arenas, decoded images) are
     * mmap'ed and returned to the system when freed. glibc's default raises
     * this threshold after the first such free, so the memory of versions
     * replaced by a reload stayed resident in the thread arenas.
     */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);

    cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = config.threads;
    if (threads == 0)
        threads = cores > config.workers ? (int)(cores / config.workers) : 1;

    if (registry_create(threads, &registry, &error) < 0) {
        log_printf(YD_LOG_ERROR, "%s", error.message);
        goto cleanup;
    }
    if (load_models(&config, registry) != 0)
        goto cleanup;
    register_metrics(registry);

    if (worker_pool_start(registry, config.workers, threads,
                          config.queue_size, &server.pool, &error) < 0) {
        log_printf(YD_LOG_ERROR, "cannot start the inference workers: %s", error.message);
        goto cleanup;
    }

    server.config = &config;
    server.registry = registry;
    atomic_init(&server.ready, false);
    atomic_init(&server.active_requests, 0);
    atomic_init(&server.decodes, 0);
    server.max_decodes = config.max_decodes > 0 ? config.max_decodes : 2 * (int)(cores > 0 ? cores : 1);
    if (server_start(&server) != 0)
        goto cleanup;
    atomic_store(&server.ready, true);

    model_list[0] = '\0';
    for (int i = 0; i < registry_count(registry) && used < sizeof model_list; i++)
        used += (size_t)snprintf(model_list + used, sizeof model_list - used, "%s%s/%s%s",
                                 i ? ", " : "", registry_name(registry, i),
                                 registry_variant(registry, i), i ? "" : " (default)");
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
    registry_destroy(registry);
    if (status == 0)
        log_printf(YD_LOG_INFO, "stopped");
    notify_close();
    config_free(&config);
    return status;
}
