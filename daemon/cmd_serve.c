/*
 * `yolod serve`: load the models, start the workers, the HTTP server and
 * the model directory watch, then handle signals: SIGHUP rereads the
 * configuration, SIGINT or SIGTERM stops.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
#include "watch.h"

/* Set while SIGHUP rereads the configuration: parse errors then go to the log. */
static bool reparsing;

/* Reports a configuration error: on stderr at startup, in the log on SIGHUP. */
static void parse_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void parse_error(const char *fmt, ...)
{
    char message[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (reparsing)
        log_printf(YD_LOG_ERROR, "SIGHUP: %s", message);
    else
        fprintf(stderr, "yolod serve: %s\n", message);
}

/*
 * Builds the config: defaults, then --config FILE, then the other flags in
 * order. The first --model on the command line drops the file's models.
 */
static int parse_serve_args(int argc, char **argv, struct config *config)
{
    char name[64], err[1024];
    const char *value, *config_file = NULL;
    bool cli_models = false;

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
                parse_error("%s", err);
                return EXIT_USAGE;
            }
            /* A key set twice in one file is an error, so two files are too. */
            if (config_file) {
                parse_error("--config given twice ('%s' and '%s'); give one file",
                            config_file, value);
                return EXIT_USAGE;
            }
            config_file = value;
            if (config_load_file(config, value, err, sizeof err) != 0) {
                parse_error("%s", err);
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
            parse_error("unexpected argument '%s'; see 'yolod help serve'", argv[i]);
            return EXIT_USAGE;
        }
        option = argv[i];
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            parse_error("%s", err);
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
                parse_error("unknown option '%s'; see 'yolod help serve'", option);
            else if (strncmp(err, name, strlen(name)) == 0)
                /* config_set names the file key; the user typed the option. */
                parse_error("%.*s%s", (int)strcspn(option, "="), option,
                            err + strlen(name));
            else
                parse_error("--%s", err);
            return EXIT_USAGE;
        }
    }

    if (config->model_count == 0 && !config->model_dir) {
        parse_error("no model given: pass --model FILE or --model-dir DIR,"
                    " or set 'model = FILE' or 'model_dir = DIR' in the config file");
        return EXIT_USAGE;
    }
    return 0;
}

/* Returns whether model path i of the config names the same file as an earlier one. */
static bool listed_before(const struct config *config, int i)
{
    struct stat a, b;
    bool found = stat(config->models[i], &a) == 0;

    for (int j = 0; j < i; j++) {
        if (strcmp(config->models[j], config->models[i]) == 0)
            return true;
        if (found && stat(config->models[j], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return true;
    }
    return false;
}

/*
 * Writes " (relative to the working directory DIR)" into note for a relative
 * path, else "". A config file's paths start from where yolod was started
 * (/ under systemd), not from the config file's folder.
 */
static void relative_note(const char *path, char *note, size_t size)
{
    char cwd[PATH_MAX];

    note[0] = '\0';
    if (path[0] != '/' && getcwd(cwd, sizeof cwd))
        snprintf(note, size, " (relative to the working directory %s)", cwd);
}

/* Returns -1, after logging the reason, when dir cannot be read or contains no model file. */
static int check_model_dir(const char *dir)
{
    char note[PATH_MAX + 64];
    int has = registry_dir_has_model_file(dir);

    relative_note(dir, note, sizeof note);
    if (has < 0)
        log_printf(YD_LOG_ERROR, "cannot open the model directory %s%s: %s", dir, note,
                   strerror(errno));
    else if (has == 0)
        log_printf(YD_LOG_ERROR, "no model to serve: the model directory %s%s has no file named"
                   " NAME.onnx or NAME.VARIANT.yolod", dir, note);
    return has > 0 ? 0 : -1;
}

/* Loads the --model files, then the --model-dir files, as version 1 of each entry. */
static int load_models(const struct config *config, struct registry *registry)
{
    yd_error error = { 0 };
    char note[PATH_MAX + 64];

    for (int i = 0; i < config->model_count; i++) {
        if (listed_before(config, i)) {
            log_printf(YD_LOG_WARN, "model %s is given twice; loading it once", config->models[i]);
            continue;
        }
        if (registry_add_file(registry, config->models[i], REGISTRY_SOURCE_FILE, &error) < 0) {
            struct stat st;
            bool is_dir = stat(config->models[i], &st) == 0 && S_ISDIR(st.st_mode);

            relative_note(config->models[i], note, sizeof note);
            log_printf(YD_LOG_ERROR, "cannot load model %s%s: %s%s", config->models[i], note,
                       error.message,
                       is_dir ? "; to serve every model in a folder, use --model-dir" : "");
            return -1;
        }
    }
    if (config->model_dir && registry_add_dir(registry, config->model_dir, &error) < 0) {
        relative_note(config->model_dir, note, sizeof note);
        log_printf(YD_LOG_ERROR, "cannot load the models of the model directory %s%s: %s",
                   config->model_dir, note, error.message);
        return -1;
    }
    if (!registry_has_model(registry, NULL)) {
        log_printf(YD_LOG_ERROR, "no model to serve: the model directory %s has no model file"
                   " that loads", config->model_dir);
        return -1;
    }
    return 0;
}

/* Makes `variant` the default of every model that has it loaded, and logs when none has. */
static void apply_default_variant(struct registry *registry, const char *variant)
{
    if (!variant[0])
        return;
    if (!registry_set_default_everywhere(registry, variant))
        log_printf(YD_LOG_WARN, "default_variant '%s' matches no loaded variant yet (variant"
                   " names are case-sensitive)", variant);
}

/* State shared by the watch thread and the SIGHUP handler. */
struct serve_state {
    struct config *config;
    struct server *server;
    struct registry *registry;
    pthread_mutex_t default_lock; /* guards config->default_variant, which SIGHUP rewrites */
};

/* Logs a sync that changed something or failed, and lets workers drop replaced sessions. */
static void finish_sync(struct serve_state *state, const char *trigger,
                        const struct registry_results *results)
{
    int level = results->failures ? YD_LOG_WARN : YD_LOG_INFO;
    int changes, failures;

    if (results->total == 0) {
        log_printf(YD_LOG_DEBUG, "%s: every model file is unchanged", trigger);
        return;
    }
    worker_pool_prune(state->server->pool);
    /* Files that failed before and are unchanged were not loaded again, so
     * they count apart from the changes. */
    changes = results->total - results->repeated_failures;
    failures = results->failures - results->repeated_failures;
    if (changes == 0) {
        log_printf(YD_LOG_DEBUG, "%s: no model change; %d unchanged file(s) still fail to load",
                   trigger, results->repeated_failures);
        return;
    }
    if (failures == 0)
        level = YD_LOG_INFO;
    if (results->repeated_failures > 0)
        log_printf(level, "%s: %d model change(s), %d failed; %d unchanged file(s) still fail"
                   " to load", trigger, changes, failures, results->repeated_failures);
    else
        log_printf(level, "%s: %d model change(s), %d failed", trigger, changes, failures);
}

/* The registry's check of files open for writing: the watch keeps them. */
static bool file_open_for_writing(const char *file, void *watch)
{
    return watch_is_writing(watch, file);
}

/* The watch callback: loads new and replaced files of the model directory. */
static void model_dir_changed(void *user)
{
    struct serve_state *state = user;
    struct registry_results results;
    char variant[sizeof state->config->default_variant];
    yd_error error = { 0 };

    registry_sync(state->registry, NULL, 0, state->config->model_dir, false, &results);

    /* A newly loaded default_variant becomes its model's default; a default set through the API stays. */
    pthread_mutex_lock(&state->default_lock);
    snprintf(variant, sizeof variant, "%s", state->config->default_variant);
    pthread_mutex_unlock(&state->default_lock);
    for (int i = 0; variant[0] && i < results.count; i++)
        if (strcmp(results.items[i].action, "loaded") == 0 &&
            strcmp(results.items[i].variant, variant) == 0)
            registry_set_default(state->registry, results.items[i].name, variant, &error);
    finish_sync(state, "model directory changed", &results);
}

/* Logs each setting that changed but only takes effect after a restart. */
static void warn_restart_needed(const struct config *live, const struct config *fresh)
{
    const char *changed[16];
    int count = 0;

    if (strcmp(live->listen, fresh->listen) != 0)
        changed[count++] = "listen";
    if ((live->model_dir == NULL) != (fresh->model_dir == NULL) ||
        (live->model_dir && strcmp(live->model_dir, fresh->model_dir) != 0))
        changed[count++] = "model_dir";
    if (live->workers != fresh->workers)
        changed[count++] = "workers";
    if (live->threads != fresh->threads)
        changed[count++] = "threads";
    if (live->queue_size != fresh->queue_size)
        changed[count++] = "queue_size";
    if (live->max_decodes != fresh->max_decodes)
        changed[count++] = "max_decodes";
    if (live->max_connections_per_ip != fresh->max_connections_per_ip)
        changed[count++] = "max_connections_per_ip";
    if (live->max_body_bytes != fresh->max_body_bytes)
        changed[count++] = "max_body_bytes";
    if (live->max_buffered_bytes != fresh->max_buffered_bytes)
        changed[count++] = "max_buffered_bytes";
    if (live->max_pixels != fresh->max_pixels)
        changed[count++] = "max_pixels";
    if (live->conf != fresh->conf || live->iou != fresh->iou || live->max_det != fresh->max_det)
        changed[count++] = "conf, iou or max_det";
    if (live->request_timeout_s != fresh->request_timeout_s)
        changed[count++] = "request_timeout";
    for (int i = 0; i < count; i++)
        log_printf(YD_LOG_WARN, "SIGHUP: %s changed; restart yolod to apply it", changed[i]);
}

/*
 * SIGHUP: rereads the config file and flags, applies the model lines,
 * watch_model_dir, default_variant and log_level, and syncs the models with
 * the files on disk. A config that does not parse changes nothing.
 */
static void reread_config(int argc, char **argv, struct serve_state *state, struct watch *watch)
{
    struct config fresh, *live = state->config;
    struct registry_results results;
    bool default_changed;
    int rc;

    config_init(&fresh);
    reparsing = true;
    rc = parse_serve_args(argc, argv, &fresh);
    reparsing = false;
    if (rc != 0) {
        log_printf(YD_LOG_ERROR, "SIGHUP: the configuration has errors (above); nothing changed");
        config_free(&fresh);
        return;
    }
    warn_restart_needed(live, &fresh);
    log_set_level(fresh.log_level);
    live->log_level = fresh.log_level;
    live->watch_model_dir = fresh.watch_model_dir;
    watch_set_enabled(watch, fresh.watch_model_dir);
    pthread_mutex_lock(&state->default_lock);
    default_changed = strcmp(live->default_variant, fresh.default_variant) != 0;
    snprintf(live->default_variant, sizeof live->default_variant, "%s", fresh.default_variant);
    pthread_mutex_unlock(&state->default_lock);
    config_clear_models(live);
    for (int i = 0; i < fresh.model_count; i++) {
        live->models[i] = fresh.models[i];
        fresh.models[i] = NULL;
    }
    live->model_count = fresh.model_count;
    fresh.model_count = 0;
    config_free(&fresh);

    registry_sync(state->registry, (const char *const *)live->models, live->model_count,
                  live->model_dir, true, &results);
    /* After a changed default_variant, models without the new variant go
     * back to their first loaded one, not the old key's. */
    if (default_changed)
        registry_reset_defaults(state->registry);
    apply_default_variant(state->registry, live->default_variant);
    finish_sync(state, "SIGHUP", &results);
    log_printf(YD_LOG_INFO, "SIGHUP: configuration reread");
}

/*
 * Waits for one of the handled signals (blocked in every thread) and
 * returns its number. Sends "WATCHDOG=1" every notify_watchdog_interval_us while waiting,
 * so systemd restarts the daemon if the main thread hangs.
 * NOTE: a ping shows only that the main thread runs, not that the inference
 * workers or the HTTP threads make progress.
 */
static int wait_for_signal(const sigset_t *handled_signals)
{
    uint64_t interval_us = notify_watchdog_interval_us();
    struct timespec timeout = {
        .tv_sec = (time_t)(interval_us / 1000000),
        .tv_nsec = (long)(interval_us % 1000000) * 1000,
    };

    for (;;) {
        int signal_number = interval_us > 0 ? sigtimedwait(handled_signals, NULL, &timeout)
                                            : sigwaitinfo(handled_signals, NULL);

        if (signal_number > 0)
            return signal_number;
        if (errno == EAGAIN)
            notify_send("WATCHDOG=1");
    }
}

/* How often a guard thread waiting for a stop signal checks whether it is still needed. */
#define GUARD_POLL_NS (20 * 1000 * 1000)

/*
 * Waits for SIGINT or SIGTERM, which every thread blocks, and returns it.
 * Returns 0 once *done is set or when the wait fails. The owner sets done
 * and joins the thread instead of cancelling it. A cancelled thread could
 * lose a signal it had taken. Its unwound frames also made AddressSanitizer
 * report a stack-buffer-overflow at thread exit.
 */
static int take_stop_signal(const atomic_bool *done)
{
    const struct timespec interval = {.tv_sec = 0, .tv_nsec = GUARD_POLL_NS};
    sigset_t stop_signals;

    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    while (!atomic_load(done)) {
        int signal_number = sigtimedwait(&stop_signals, NULL, &interval);

        if (signal_number > 0)
            return signal_number;
        if (errno != EAGAIN && errno != EINTR)
            return 0;
    }
    return 0;
}

/*
 * Exits 0 when SIGINT or SIGTERM arrives while the main thread loads the
 * models (about 0.1 s each for yolov8n). Detections are not accepted yet.
 */
static void *stop_while_loading(void *done)
{
    int signal_number = take_stop_signal(done);

    if (!signal_number)
        return NULL;
    notify_send("STOPPING=1");
    log_printf(YD_LOG_INFO, "received %s while loading the models; stopped before serving",
               strsignal(signal_number));
    _exit(0);
}

/* A thread that takes SIGINT or SIGTERM while the main thread rereads the configuration. */
struct reload_guard {
    pthread_t thread;
    struct serve_state *state;
    atomic_int signal_number; /* the signal taken, or 0 */
    atomic_bool done;         /* set when the reload is over */
};

/*
 * Waits for SIGINT or SIGTERM while a SIGHUP's model loads run on the main
 * thread. On one, it starts the drain and stops further loads, so the reload
 * ends after the file being loaded.
 */
static void *stop_during_reload(void *arg)
{
    struct reload_guard *guard = arg;
    int signal_number = take_stop_signal(&guard->done);

    if (!signal_number)
        return NULL;
    atomic_store(&guard->signal_number, signal_number);
    log_printf(YD_LOG_INFO, "received %s during the reload; loading no more model files",
               strsignal(signal_number));
    server_begin_stop(guard->state->server);
    registry_request_stop(guard->state->registry);
    return NULL;
}

/* Rereads the configuration; returns the SIGINT or SIGTERM taken meanwhile, or 0. */
static int reload(int argc, char **argv, struct serve_state *state, struct watch *watch)
{
    struct reload_guard guard = { .state = state };
    bool guarded;

    atomic_init(&guard.signal_number, 0);
    atomic_init(&guard.done, false);
    guarded = pthread_create(&guard.thread, NULL, stop_during_reload, &guard) == 0;
    reread_config(argc, argv, state, watch);
    if (guarded) {
        atomic_store(&guard.done, true);
        pthread_join(guard.thread, NULL);
    }
    return atomic_load(&guard.signal_number);
}

/* Most inference threads (workers x threads) a daemon starts. */
#define MAX_INFERENCE_THREADS 1024

int command_serve(int argc, char **argv)
{
    struct config config;
    struct server server;
    struct registry *registry = NULL;
    struct watch *watch = NULL;
    struct serve_state state;
    yd_error error = { 0 };
    sigset_t handled_signals;
    char model_list[512];
    char bound_note[80];
    long cores;
    int threads, signal_number = 0;
    int status = EXIT_RUNTIME;
    pthread_t loading_thread;
    pthread_condattr_t decode_clock;
    bool loading_guard = false;
    atomic_bool loading_done = false;
    struct worker_pool *pool = NULL;

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

    /* A log reader that goes away (`yolod serve 2>&1 | tee`, svlogd) would
     * end the daemon with SIGPIPE at its next log line. With SIGPIPE ignored,
     * that write fails instead. */
    signal(SIGPIPE, SIG_IGN);

    /* Block the handled signals in every thread created from here on; main sigwaits. */
    sigemptyset(&handled_signals);
    sigaddset(&handled_signals, SIGINT);
    sigaddset(&handled_signals, SIGTERM);
    sigaddset(&handled_signals, SIGHUP);
    /* By default SIGUSR1 would end the daemon. The log goes to stderr, so
     * there is no log file to reopen: it is logged and ignored. */
    sigaddset(&handled_signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &handled_signals, NULL);

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

    /* Each worker runs its own OpenMP team and has its own arena (about
     * 40 MB for yolov8n), so the product is the load on the machine. */
    /* A body's buffer grows to max_body_bytes, so a smaller budget would
     * refuse some bodies even on an idle server. */
    if (config.max_buffered_bytes < config.max_body_bytes) {
        log_printf(YD_LOG_ERROR, "max_buffered_bytes (%zu) is below max_body_bytes (%zu), so some"
                   " bodies could never be received; raise it", config.max_buffered_bytes,
                   config.max_body_bytes);
        status = EXIT_USAGE;
        goto cleanup;
    }
    if ((long)config.workers * threads > MAX_INFERENCE_THREADS) {
        log_printf(YD_LOG_ERROR, "workers x threads is %d x %d = %ld inference threads, more than"
                   " %d; lower workers or threads", config.workers, threads,
                   (long)config.workers * threads, MAX_INFERENCE_THREADS);
        status = EXIT_USAGE;
        goto cleanup;
    }
    if (cores > 0 && (long)config.workers * threads > 2 * cores)
        log_printf(YD_LOG_WARN, "workers x threads is %d x %d = %ld inference threads on %ld cores;"
                   " they compete for the cores, so each request takes longer",
                   config.workers, threads, (long)config.workers * threads, cores);

    /* A model directory with nothing to load would end the daemon after
     * the bind, so it is refused before anything listens. */
    if (config.model_dir && config.model_count == 0 && check_model_dir(config.model_dir) < 0)
        goto cleanup;

    server.config = &config;
    if (server_bind(&server) != 0)
        goto cleanup;
    if (registry_create(threads, &registry, &error) < 0) {
        log_printf(YD_LOG_ERROR, "%s", error.message);
        goto cleanup;
    }

    /* The port opens before the models load, so /healthz returns 200 and
     * /readyz 503 meanwhile, and detections get 503 starting. */
    server.registry = registry;
    atomic_init(&server.ready, false);
    atomic_init(&server.active_requests, 0);
    server.decodes = 0;
    pthread_mutex_init(&server.decode_lock, NULL);
    /* decode_image's deadline is on the monotonic clock, immune to clock changes. */
    pthread_condattr_init(&decode_clock);
    pthread_condattr_setclock(&decode_clock, CLOCK_MONOTONIC);
    pthread_cond_init(&server.decode_free, &decode_clock);
    pthread_condattr_destroy(&decode_clock);
    atomic_init(&server.buffered_bytes, 0);
    server.max_decodes = config.max_decodes > 0 ? config.max_decodes : 2 * (int)(cores > 0 ? cores : 1);
    if (server_start(&server) != 0)
        goto cleanup;
    /* A host name binds only its first address, so the log names that address. */
    if (strcmp(config.listen, server.bound) == 0)
        snprintf(bound_note, sizeof bound_note, "%s", "");
    else
        snprintf(bound_note, sizeof bound_note, " (%s)", server.bound);
    log_printf(YD_LOG_INFO, "yolod %s listening on http://%s%s, loading the models",
               YOLOD_VERSION, config.listen, bound_note);

    loading_guard = pthread_create(&loading_thread, NULL, stop_while_loading, &loading_done) == 0;
    if (!loading_guard)
        log_printf(YD_LOG_WARN, "failed to start the signal thread for startup, so SIGTERM"
                   " takes effect only after the models load");
    if (load_models(&config, registry) != 0)
        goto cleanup;
    /* From here on a signal stays pending until wait_for_signal() takes it. */
    if (loading_guard) {
        atomic_store(&loading_done, true);
        pthread_join(loading_thread, NULL);
        loading_guard = false;
    }
    apply_default_variant(registry, config.default_variant);

    if (worker_pool_start(registry, config.workers, threads,
                          config.queue_size, &pool, &error) < 0) {
        log_printf(YD_LOG_ERROR, "cannot start the inference workers: %s", error.message);
        goto cleanup;
    }
    server.pool = pool;
    atomic_store(&server.ready, true);

    state = (struct serve_state){ .config = &config, .server = &server, .registry = registry };
    pthread_mutex_init(&state.default_lock, NULL);
    if (config.model_dir) {
        if (watch_start(config.model_dir, model_dir_changed, &state, &watch, &error) < 0)
            log_printf(YD_LOG_WARN, "%s; replaced model files are loaded on SIGHUP only",
                       error.message);
        watch_set_enabled(watch, config.watch_model_dir);
        if (watch)
            registry_set_writing_check(registry, file_open_for_writing, watch);
        /* Files added or replaced while the models loaded, before the watch began. */
        if (watch && config.watch_model_dir)
            model_dir_changed(&state);
    }

    registry_list_loaded(registry, model_list, sizeof model_list);
    log_printf(YD_LOG_INFO, "yolod ready on http://%s, models: %s, workers: %d x %d threads,"
               " queue %d, decodes %d", config.listen, model_list, config.workers, threads,
               config.queue_size, server.max_decodes);

    notify_status("listening on %s, models: %s", config.listen, model_list);
    notify_send("READY=1");
    while ((signal_number = wait_for_signal(&handled_signals)) == SIGHUP ||
           signal_number == SIGUSR1) {
        int stop_signal;

        if (signal_number == SIGUSR1) {
            log_printf(YD_LOG_INFO, "received SIGUSR1; ignored, because the log goes to stderr"
                       " and there is no file to reopen");
            continue;
        }

        notify_send("RELOADING=1");
        log_printf(YD_LOG_INFO, "received SIGHUP, rereading the configuration");
        stop_signal = reload(argc, argv, &state, watch);
        if (stop_signal) {
            signal_number = stop_signal;
            break;
        }
        notify_send("READY=1");
    }
    notify_send("STOPPING=1");
    log_printf(YD_LOG_INFO, "received %s, finishing requests in progress and stopping",
               strsignal(signal_number));
    notify_status("received %s, finishing requests in progress", strsignal(signal_number));
    atomic_store(&server.ready, false);
    status = 0;

cleanup:
    if (loading_guard) {
        atomic_store(&loading_done, true);
        pthread_join(loading_thread, NULL);
    }
    /* Refuse new work first: joining the watch waits for a rescan in progress,
     * which loads no more files after registry_request_stop(). No reload may
     * start while the registry goes away. */
    server_begin_stop(&server);
    registry_request_stop(registry);
    if (registry)
        registry_set_writing_check(registry, NULL, NULL);
    watch_stop(watch);
    server_stop(&server);
    worker_pool_stop(server.pool);
    registry_destroy(registry);
    if (status == 0)
        log_printf(YD_LOG_INFO, "stopped");
    notify_close();
    config_free(&config);
    return status;
}
