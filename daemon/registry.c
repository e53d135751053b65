/*
 * Model registry.
 *
 * Locking: `admin_lock` serializes every change (add, load, reload, unload,
 * default, sync), so two changes of one entry cannot publish out of order
 * and a load runs without blocking requests. `lock` guards what requests
 * read: each entry's name, variant, model, version, loaded_at, size_bytes,
 * path and is_default. These are written with both locks held, so either
 * lock is enough to read them.
 *
 * Entries live in a fixed array. A new pair takes the next unused slot or,
 * once all are used, the slot of an unloaded pair (reusable_entry). An
 * entry's `holders` counts its registry_refs not yet released, and a slot
 * with holders never goes to another pair, so a request reads the name and
 * variant of its reference without a lock. Holders are added under `lock`
 * and only to a loaded entry, and entries are loaded only under admin_lock.
 * So an unloaded entry without holders gets none while admin_lock is held.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "text.h"
#include "util.h"

/* Identity of the file a version was loaded from, to notice a replacement. */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct entry {
    char *name, *variant;      /* fixed until the slot goes to another pair */
    char *path;
    enum registry_source source;
    bool is_default;           /* the variant used when a request names none */
    bool unloaded_by_admin;    /* only a load or a sync with revive brings it back */
    bool leaving;              /* during a sync: its file is gone, unloaded unless replaced */
    /* Set when its file now contains another variant, served by another entry.
     * Lookups by path skip it until a file of its variant loads into it. */
    bool superseded;
    struct file_id failed_file; /* the file version whose last load failed, else zeros */
    yd_model *model;           /* current version or NULL; the registry holds one reference */
    uint64_t version;          /* last version published, kept while unloaded */
    double loaded_at;          /* Unix time in seconds */
    long long size_bytes;      /* source file size when this version was loaded */
    struct file_id file;
    double unloaded_ms;        /* yd_now_ms() at the last unload, to reuse the oldest first */
    atomic_int holders;        /* registry_refs not yet released, and pins of admin operations */
};

/* Maximum number of files whose logged problems a watch rescan remembers. */
#define REPORTED_MAX 1024

/* A file whose misnaming or failed load was logged, with the version logged. */
struct reported_file {
    char *path;
    struct file_id file;
    int code;        /* YD_ERR_* of a failed load of a new file, else 0 */
    char *message;   /* its error message, or NULL */
};

struct registry {
    pthread_mutex_t lock;
    pthread_mutex_t admin_lock;
    struct entry entries[REGISTRY_MAX_ENTRIES];
    atomic_int count;
    int max_entries;           /* REGISTRY_MAX_ENTRIES, or less for tests */
    int session_threads;       /* OpenMP threads of the warm-up session */
    /* Guarded by admin_lock: problems already logged, and whether the
     * current change is a watch rescan, which logs them again at debug. */
    struct reported_file reported[REPORTED_MAX];
    int reported_next;
    bool watch_rescan;
    bool table_full;           /* the last claim_entry failed because no slot was free */
    atomic_bool stop_requested; /* set at shutdown: syncs load no more files */
    /* Guarded by admin_lock: reports to registry_sync which directory files
     * are still being written (see registry_set_writing_check). */
    registry_writing_fn writing;
    void *writing_user;
};

static double wall_clock_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + now.tv_nsec / 1e9;
}

/* Fills id from path; a missing file gives an identity that matches nothing loaded. */
static int file_identity(const char *path, struct file_id *id)
{
    struct stat st;

    memset(id, 0, sizeof *id);
    if (stat(path, &st) != 0)
        return -1;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime = st.st_mtim;
    return 0;
}

static bool same_file(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Returns the recorded problem of path, or NULL. Caller holds admin_lock. */
static struct reported_file *find_problem(struct registry *registry, const char *path)
{
    for (int i = 0; i < REPORTED_MAX; i++)
        if (registry->reported[i].path && strcmp(registry->reported[i].path, path) == 0)
            return &registry->reported[i];
    return NULL;
}

/*
 * Records a problem with the file at path and returns its log level: `level`,
 * or debug when a watch rescan finds this version of the file already logged.
 * *first (when not NULL) is set when this version was not recorded before,
 * so counters count it once. Caller holds admin_lock.
 */
static int problem_level(struct registry *registry, const char *path, int level, bool *first)
{
    struct reported_file *slot = find_problem(registry, path);
    struct file_id id;
    bool known;

    file_identity(path, &id);
    known = slot && same_file(&slot->file, &id);
    if (first)
        *first = !known;
    if (known)
        return registry->watch_rescan ? YD_LOG_DEBUG : level;
    if (!slot) {
        slot = &registry->reported[registry->reported_next];
        registry->reported_next = (registry->reported_next + 1) % REPORTED_MAX;
        free(slot->path);
        slot->path = strdup(path);
    }
    slot->file = id;
    slot->code = 0;
    free(slot->message);
    slot->message = NULL;
    return level;
}

/* Records why a new file failed to load, after problem_level(). Caller holds admin_lock. */
static void record_failure(struct registry *registry, const char *path, int code,
                           const char *message)
{
    struct reported_file *slot = find_problem(registry, path);

    if (!slot)
        return;
    slot->code = code;
    free(slot->message);
    slot->message = strdup(message);
}

/* Returns the recorded failure of this version of a new file at path, or NULL. */
static const struct reported_file *known_failure(struct registry *registry, const char *path)
{
    const struct reported_file *slot = find_problem(registry, path);
    struct file_id id;

    if (!slot || slot->code == 0 || file_identity(path, &id) != 0 || !same_file(&slot->file, &id))
        return NULL;
    return slot;
}

/* Forgets a logged problem with path once the file loads. Caller holds admin_lock. */
static void forget_problem(struct registry *registry, const char *path)
{
    for (int i = 0; i < REPORTED_MAX; i++) {
        if (registry->reported[i].path && strcmp(registry->reported[i].path, path) == 0) {
            free(registry->reported[i].path);
            free(registry->reported[i].message);
            registry->reported[i].path = NULL;
            registry->reported[i].message = NULL;
        }
    }
}

int registry_create(int session_threads, struct registry **out, yd_error *err)
{
    struct registry *registry = calloc(1, sizeof *registry);
    const char *test_entries = getenv("YOLOD_TEST_REGISTRY_ENTRIES");

    if (!registry)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating the model registry");
    pthread_mutex_init(&registry->lock, NULL);
    pthread_mutex_init(&registry->admin_lock, NULL);
    atomic_init(&registry->count, 0);
    atomic_init(&registry->stop_requested, false);
    for (int i = 0; i < REGISTRY_MAX_ENTRIES; i++)
        atomic_init(&registry->entries[i].holders, 0);
    registry->session_threads = session_threads;
    registry->max_entries = REGISTRY_MAX_ENTRIES;
    if (test_entries && test_entries[0]) {
        char *end;
        long value = strtol(test_entries, &end, 10);

        if (*end == '\0' && value >= 1 && value <= REGISTRY_MAX_ENTRIES) {
            registry->max_entries = (int)value;
            log_printf(YD_LOG_WARN, "YOLOD_TEST_REGISTRY_ENTRIES=%s limits the registry to %d"
                       " (name, variant) pairs; the variable is meant for tests only",
                       test_entries, registry->max_entries);
        } else {
            log_printf(YD_LOG_WARN, "invalid YOLOD_TEST_REGISTRY_ENTRIES '%s', expected 1 to %d;"
                       " using %d", test_entries, REGISTRY_MAX_ENTRIES, registry->max_entries);
        }
    }
    *out = registry;
    return YD_OK;
}

void registry_request_stop(struct registry *registry)
{
    if (registry)
        atomic_store(&registry->stop_requested, true);
}

void registry_destroy(struct registry *registry)
{
    if (!registry)
        return;
    for (int i = 0; i < atomic_load(&registry->count); i++) {
        struct entry *entry = &registry->entries[i];

        if (entry->model)
            yd_model_release(entry->model);
        free(entry->name);
        free(entry->variant);
        free(entry->path);
    }
    pthread_mutex_destroy(&registry->admin_lock);
    for (int i = 0; i < REPORTED_MAX; i++) {
        free(registry->reported[i].path);
        free(registry->reported[i].message);
    }
    pthread_mutex_destroy(&registry->lock);
    free(registry);
}

int registry_count(const struct registry *registry)
{
    return atomic_load_explicit(&((struct registry *)registry)->count, memory_order_acquire);
}

/* The entry of (name, variant), loaded or not; -1 when there is none. */
static int find_entry(const struct registry *registry, const char *name, const char *variant)
{
    for (int i = 0; i < registry_count(registry); i++)
        if (strcmp(registry->entries[i].name, name) == 0 &&
            strcmp(registry->entries[i].variant, variant) == 0)
            return i;
    return -1;
}

/* The loaded default entry of name; -1 when none. Caller holds lock. */
static int find_default(const struct registry *registry, const char *name)
{
    for (int i = 0; i < registry_count(registry); i++) {
        const struct entry *entry = &registry->entries[i];

        if (entry->model && entry->is_default && strcmp(entry->name, name) == 0)
            return i;
    }
    return -1;
}

/* Makes the first loaded variant of name its default when it has none. Caller holds lock. */
static void ensure_default(struct registry *registry, const char *name)
{
    if (find_default(registry, name) >= 0)
        return;
    for (int i = 0; i < registry_count(registry); i++) {
        struct entry *entry = &registry->entries[i];

        if (entry->model && strcmp(entry->name, name) == 0) {
            entry->is_default = true;
            return;
        }
    }
}

bool registry_is_model_file(const char *file)
{
    const char *first_dot = strchr(file, '.'), *last_dot = strrchr(file, '.');

    if (!first_dot || first_dot == file || file[0] == '.')
        return false;
    if (strcmp(last_dot, ".onnx") == 0)
        return first_dot == last_dot;
    /* The variant must fit the 63 characters a variant name may have. */
    if (strcmp(last_dot, ".yolod") == 0)
        return last_dot > first_dot + 1 && last_dot - first_dot - 1 < 64 &&
               strchr(first_dot + 1, '.') == last_dot;
    return false;
}

void registry_file_variant(const char *path, const yd_model *model, char *out, size_t out_size)
{
    const char *base = strrchr(path, '/');
    const char *first_dot, *last_dot;

    base = base ? base + 1 : path;
    first_dot = strchr(base, '.');
    last_dot = strrchr(base, '.');
    if (registry_is_model_file(base) && strcmp(last_dot, ".yolod") == 0)
        snprintf(out, out_size, "%.*s", (int)(last_dot - first_dot - 1), first_dot + 1);
    else if (model)
        snprintf(out, out_size, "%s", yd_model_variant(model));
    else
        snprintf(out, out_size, "%s", registry_is_model_file(base) ? "fp32" : "");
}

/* Writes the model name a file is served as when it loads: the file name up to its first dot. */
static void name_of_file(const char *path, char *out, size_t out_size)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    snprintf(out, out_size, "%.*s", (int)strcspn(base, "."), base);
}

/* Returns whether variant names a compression in any case: fp32, fp16, int8, prune<P>[-int8]. */
static bool is_compression_name(const char *variant)
{
    const char *rest;

    if (strcasecmp(variant, "fp32") == 0 || strcasecmp(variant, "fp16") == 0 ||
        strcasecmp(variant, "int8") == 0)
        return true;
    if (strncasecmp(variant, "prune", 5) != 0)
        return false;
    rest = variant + 5;
    if (!isdigit((unsigned char)*rest))
        return false;
    while (isdigit((unsigned char)*rest))
        rest++;
    return *rest == '\0' || strcasecmp(rest, "-int8") == 0;
}

void registry_warn_variant_mismatch(const char *path, const yd_model *model, const char *variant)
{
    const char *contained = yd_model_variant(model);
    const char *extension = strrchr(path, '.');
    char name[256];

    if (extension && strcmp(extension, ".onnx") == 0 && strcmp(contained, "fp32") != 0) {
        name_of_file(path, name, sizeof name);
        log_printf(YD_LOG_WARN, "%s is a yolod model file of variant '%s', served as that"
                   " variant; rename it %s.%s.yolod", path, contained, name, contained);
    } else if (is_compression_name(variant) && strcmp(variant, contained) != 0) {
        log_printf(YD_LOG_WARN, "%s contains variant '%s' but its name gives variant '%s',"
                   " which it is served and reported as; rename it to match its content", path,
                   contained, variant);
    }
}

struct warm_up {
    yd_model *model;
    int threads;
    yd_error *err;
    int rc;
};

static void *warm_up_thread(void *arg)
{
    struct warm_up *job = arg;
    yd_session *session = NULL;

    job->rc = yd_session_create(job->model, job->threads, &session, job->err);
    if (job->rc < 0)
        return NULL;
    yd_session_warm_up(session);
    yd_session_destroy(session);
    return NULL;
}

/*
 * Creates a session and runs one inference on a thread of its own, so a model
 * that loads but cannot run is caught before it is published. libgomp keeps a
 * thread's OpenMP team until that thread exits, so on the main or watch thread
 * the warm-up left `threads` - 1 idle threads for the daemon's lifetime.
 */
static int warm_up_model(yd_model *model, int threads, yd_error *err)
{
    struct warm_up job = { .model = model, .threads = threads, .err = err };
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, warm_up_thread, &job);

    if (rc != 0)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "cannot start a thread to warm up the model: %s",
                            strerror(rc));
    pthread_join(thread, NULL);
    return job.rc;
}

/*
 * Loads and warms path. The identity is read before loading, so a file
 * replaced during the load reads as changed at the next sync.
 */
static int load_file(struct registry *registry, const char *path, yd_model **out,
                     char *variant, size_t variant_size, struct file_id *id, yd_error *err)
{
    yd_model_options options = { .serve_only = 1 };
    int rc;

    *out = NULL;
    file_identity(path, id);
    /* yd_model_load() rejects a FIFO without opening it for reading, which
     * would block with admin_lock held until a writer came. */
    rc = yd_model_load(path, &options, out, err);
    if (rc < 0)
        return rc;
    registry_file_variant(path, *out, variant, variant_size);
    /* Names and variants go into JSON replies, URLs and metric labels. */
    if (!text_is_utf8(yd_model_name(*out)) || !text_is_utf8(variant)) {
        char quoted[TEXT_QUOTE_SIZE];

        yd_model_release(*out);
        *out = NULL;
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "model file name '%s' is not valid UTF-8; rename the file",
                            text_quote(quoted, sizeof quoted, path, TEXT_QUOTE_MAX_CHARS));
    }
    rc = warm_up_model(*out, registry->session_threads, err);
    if (rc < 0) {
        yd_model_release(*out);
        *out = NULL;
        return rc;
    }
    registry_warn_variant_mismatch(path, *out, variant);
    return rc;
}

/*
 * Publishes model as the next version of entry index, replacing and
 * releasing the current one. Caller holds admin_lock, not lock.
 */
static uint64_t publish(struct registry *registry, int index, yd_model *model, const char *path,
                        const struct file_id *id)
{
    struct entry *entry = &registry->entries[index];
    yd_model *old;
    char *new_path = NULL, *old_path = NULL;
    uint64_t version;

    forget_problem(registry, path);
    if (strcmp(entry->path, path) != 0)
        new_path = strdup(path);

    pthread_mutex_lock(&registry->lock);
    old = entry->model;
    entry->model = model;
    version = ++entry->version;
    entry->loaded_at = wall_clock_seconds();
    entry->size_bytes = (long long)id->size;
    entry->file = *id;
    entry->unloaded_by_admin = false;
    entry->superseded = false;
    memset(&entry->failed_file, 0, sizeof entry->failed_file);
    if (new_path) {
        old_path = entry->path;
        entry->path = new_path;
    }
    ensure_default(registry, entry->name);
    pthread_mutex_unlock(&registry->lock);

    metrics_model_loaded(index, entry->name, entry->variant, path);
    /* Requests still holding the old version keep it alive until they finish. */
    if (old)
        yd_model_release(old);
    free(old_path);
    return version;
}

/*
 * Returns whether entry may go to another pair: unloaded and held by no
 * request or admin operation. A directory file unloaded through the admin
 * API keeps its entry while the file exists, because without the entry a
 * rescan would load the file again. Caller holds admin_lock.
 */
static bool is_reusable(const struct entry *entry)
{
    struct stat st;

    if (entry->model || atomic_load_explicit(&entry->holders, memory_order_acquire) > 0)
        return false;
    return !(entry->unloaded_by_admin && entry->source == REGISTRY_SOURCE_DIR &&
             stat(entry->path, &st) == 0);
}

/* The reusable entry unloaded longest ago, or -1. Caller holds admin_lock. */
static int reusable_entry(const struct registry *registry)
{
    int oldest = -1;

    for (int i = 0; i < registry_count(registry); i++) {
        const struct entry *entry = &registry->entries[i];

        if (is_reusable(entry) &&
            (oldest < 0 || entry->unloaded_ms < registry->entries[oldest].unloaded_ms))
            oldest = i;
    }
    return oldest;
}

/*
 * Sets up an empty entry for (name, variant) in the next unused slot or,
 * when every slot is used, in the slot of reusable_entry(), whose pair
 * loses its metrics series. Returns the index, or an error when no slot is
 * free or out of memory. Caller holds admin_lock.
 */
static int claim_entry(struct registry *registry, const char *name, const char *variant,
                       const char *path, enum registry_source source, yd_error *err)
{
    int count = registry_count(registry), index = count;
    char *new_name = strdup(name), *new_variant = strdup(variant), *new_path = strdup(path);
    char *old_name = NULL, *old_variant = NULL, *old_path = NULL;
    struct entry *entry;

    if (!new_name || !new_variant || !new_path) {
        index = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory adding model %s", path);
        goto fail;
    }
    if (count == registry->max_entries)
        index = reusable_entry(registry);
    /* Not a failure of the file: registry_sync retries it after its unloads,
     * and later rescans retry it too (it is not recorded as failed). */
    registry->table_full = index < 0;
    if (index < 0) {
        index = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                             "cannot add model '%s' variant '%s': all %d registry entries are"
                             " loaded, in use by requests, or unloaded directory files still on"
                             " disk; unload a model or remove its file, then retry",
                             name, variant, registry->max_entries);
        goto fail;
    }
    entry = &registry->entries[index];
    if (index < count) {
        log_printf(YD_LOG_INFO, "model %s variant %s takes the registry entry of model %s"
                   " variant %s, unloaded %.0f s ago, whose metrics are dropped", name, variant,
                   entry->name, entry->variant, (yd_now_ms() - entry->unloaded_ms) / 1000);
        metrics_model_removed(index);
    }

    pthread_mutex_lock(&registry->lock);
    old_name = entry->name;
    old_variant = entry->variant;
    old_path = entry->path;
    memset(entry, 0, sizeof *entry);
    atomic_init(&entry->holders, 0);
    entry->name = new_name;
    entry->variant = new_variant;
    entry->path = new_path;
    entry->source = source;
    pthread_mutex_unlock(&registry->lock);

    if (index == count)
        atomic_store_explicit(&registry->count, index + 1, memory_order_release);
    free(old_name);
    free(old_variant);
    free(old_path);
    return index;

fail:
    free(new_name);
    free(new_variant);
    free(new_path);
    return index;
}

static void result_init(struct registry_result *result, const struct entry *entry)
{
    memset(result, 0, sizeof *result);
    snprintf(result->name, sizeof result->name, "%s", entry->name);
    snprintf(result->variant, sizeof result->variant, "%s", entry->variant);
}

/* Room for the next result; past the array the outcome is only counted. */
static struct registry_result *next_result(struct registry_results *results,
                                           struct registry_result *spare)
{
    results->total++;
    return results->count < REGISTRY_MAX_RESULTS ? &results->items[results->count++] : spare;
}

static int add_model_locked(struct registry *registry, const char *path,
                            enum registry_source source, yd_model *model, const char *variant,
                            const struct file_id *id, double start,
                            struct registry_result *result, yd_error *err);
static void unload_entry(struct registry *registry, int index, bool by_admin, const char *why,
                         struct registry_result *result);
static int move_to_variant(struct registry *registry, int index, const char *path,
                           yd_model *model, const char *variant, const struct file_id *id,
                           double start, struct registry_result *result, yd_error *err);

/*
 * Loads the entry's file (or `path` when not NULL) as its next version,
 * logs the outcome and counts it in the metrics. Caller holds admin_lock.
 */
static void load_entry(struct registry *registry, int index, const char *path,
                       struct registry_result *result)
{
    struct entry *entry = &registry->entries[index];
    bool was_loaded = entry->model != NULL;
    yd_model *model = NULL;
    yd_error error = { 0 };
    struct file_id id;
    char variant[64];
    double start = yd_now_ms();
    int rc;

    if (!path)
        path = entry->path;
    result_init(result, entry);
    rc = load_file(registry, path, &model, variant, sizeof variant, &id, &error);
    if (rc == YD_OK && strcmp(yd_model_name(model), entry->name) == 0 &&
        strcmp(variant, entry->variant) != 0) {
        /* Only a file named without a variant (NAME.onnx, NAME.yolod) can
         * change variant. It is served as its new variant from now on. */
        rc = move_to_variant(registry, index, path, model, variant, &id, start, result, &error);
        model = NULL;
        if (rc == YD_OK)
            return;
        result_init(result, entry);
    } else if (rc == YD_OK && strcmp(yd_model_name(model), entry->name) != 0) {
        rc = yd_error_set(&error, YD_ERR_MODEL_FORMAT,
                          "%s now holds model '%s' variant '%s', expected '%s' variant '%s'",
                          path, yd_model_name(model), variant, entry->name, entry->variant);
    }
    if (rc == YD_OK) {
        result->version = publish(registry, index, model, path, &id);
        result->action = was_loaded ? "reloaded" : "loaded";
        model = NULL;
        log_printf(YD_LOG_INFO, "%s model %s variant %s version %llu from %s (%s, %.2f GFLOPs),"
                   " %.0f ms", result->action, entry->name, entry->variant,
                   (unsigned long long)result->version, path,
                   yd_model_variant(entry->model), yd_model_flops(entry->model) / 1e9,
                   yd_now_ms() - start);
    } else {
        int level = problem_level(registry, path, YD_LOG_ERROR, NULL);

        result->action = "failed";
        result->version = was_loaded ? entry->version : 0;
        result->repeated = level == YD_LOG_DEBUG;
        snprintf(result->message, sizeof result->message, "%s", error.message);
        entry->failed_file = id;
        if (was_loaded)
            log_printf(level, "reload of model %s variant %s from %s failed, version %llu"
                       " keeps serving: %s", entry->name, entry->variant, path,
                       (unsigned long long)entry->version, error.message);
        else
            log_printf(level, "load of model %s variant %s from %s failed: %s",
                       entry->name, entry->variant, path, error.message);
    }
    result->code = rc;
    if (was_loaded)
        metrics_observe_reload(index, rc == YD_OK);
    if (model)
        yd_model_release(model);
    /* glibc keeps the freed memory of this thread's arena otherwise. */
    malloc_trim(0);
}

/*
 * Serves model, which the file of entry index now contains under another
 * variant, through the entry of that variant, and retires entry index.
 * Takes the caller's reference to model. Caller holds admin_lock.
 */
static int move_to_variant(struct registry *registry, int index, const char *path,
                           yd_model *model, const char *variant, const struct file_id *id,
                           double start, struct registry_result *result, yd_error *err)
{
    struct entry *entry = &registry->entries[index];
    struct registry_result unloaded;
    char why[128];
    int rc;

    /* Pinned, so the new variant cannot take this entry when it is unloaded. */
    atomic_fetch_add(&entry->holders, 1);
    rc = add_model_locked(registry, path, entry->source, model, variant, id, start, result, err);
    atomic_fetch_sub(&entry->holders, 1);
    if (rc < 0)
        return rc;
    snprintf(why, sizeof why, "its file now contains variant %s", variant);
    if (entry->model)
        unload_entry(registry, index, false, why, &unloaded);
    entry->superseded = true;
    malloc_trim(0);
    return YD_OK;
}

/* Stops serving entry index. Caller holds admin_lock. */
static void unload_entry(struct registry *registry, int index, bool by_admin, const char *why,
                         struct registry_result *result)
{
    struct entry *entry = &registry->entries[index];
    yd_model *old;

    result_init(result, entry);
    pthread_mutex_lock(&registry->lock);
    old = entry->model;
    entry->model = NULL;
    entry->unloaded_by_admin = by_admin;
    entry->unloaded_ms = yd_now_ms();
    if (entry->is_default) {
        entry->is_default = false;
        ensure_default(registry, entry->name);
    }
    pthread_mutex_unlock(&registry->lock);

    result->action = "unloaded";
    metrics_model_unloaded(index);
    log_printf(YD_LOG_INFO, "unloaded model %s variant %s version %llu (%s)", entry->name,
               entry->variant, (unsigned long long)entry->version, why);
    if (old)
        yd_model_release(old);
    malloc_trim(0);
}

/*
 * Loads path into the entry of its (name, variant), creating the entry.
 * Caller holds admin_lock.
 */
/*
 * Publishes model, loaded from path, as the next version of the entry of its
 * (name, variant), creating the entry. Takes the caller's reference to
 * model. Caller holds admin_lock.
 */
static int add_model_locked(struct registry *registry, const char *path,
                            enum registry_source source, yd_model *model, const char *variant,
                            const struct file_id *id, double start,
                            struct registry_result *result, yd_error *err)
{
    int index = find_entry(registry, yd_model_name(model), variant);
    bool replaces = index >= 0 && registry->entries[index].leaving;
    int rc;

    memset(result, 0, sizeof *result);
    if (replaces) {
        /* A sync found this entry's file gone and this file in its place:
         * swap, so the variant serves throughout. */
        registry->entries[index].leaving = false;
    } else if (index >= 0 && registry->entries[index].model &&
               strcmp(registry->entries[index].path, path) != 0) {
        rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                          "model '%s' variant '%s' from %s is already loaded from %s;"
                          " rename one file, because requests choose models by name and variant",
                          yd_model_name(model), variant, path, registry->entries[index].path);
        result->conflict = true;
        goto fail;
    }
    if (index < 0)
        index = claim_entry(registry, yd_model_name(model), variant, path, source, err);
    if (index < 0) {
        rc = index;
        goto fail;
    }
    registry->entries[index].source = source;
    result_init(result, &registry->entries[index]);
    result->action = registry->entries[index].model ? "reloaded" : "loaded";
    result->version = publish(registry, index, model, path, id);
    if (replaces)
        metrics_observe_reload(index, true);
    log_printf(YD_LOG_INFO, "%s model %s variant %s version %llu from %s: %s, input %dx%d,"
               " %d classes, %.2f GFLOPs, %.0f ms", result->action, yd_model_name(model),
               variant, (unsigned long long)result->version, path, yd_model_variant(model),
               yd_model_input_width(model), yd_model_input_height(model),
               yd_model_class_count(model), yd_model_flops(model) / 1e9, yd_now_ms() - start);
    return YD_OK;

fail:
    snprintf(result->name, sizeof result->name, "%s", path);
    snprintf(result->variant, sizeof result->variant, "%s", variant);
    result->new_file = true;
    result->action = "failed";
    result->code = rc;
    snprintf(result->message, sizeof result->message, "%s", err->message);
    yd_model_release(model);
    return rc;
}

/* Loads path as a file no entry serves yet. Caller holds admin_lock. */
static int add_file_locked(struct registry *registry, const char *path,
                           enum registry_source source, struct registry_result *result,
                           yd_error *err)
{
    yd_model *model = NULL;
    struct file_id id;
    char variant[64];
    double start = yd_now_ms();
    int rc = load_file(registry, path, &model, variant, sizeof variant, &id, err);

    if (rc == YD_OK)
        return add_model_locked(registry, path, source, model, variant, &id, start, result, err);
    /* The file names the failure, because its model name is unknown. */
    memset(result, 0, sizeof *result);
    snprintf(result->name, sizeof result->name, "%s", path);
    registry_file_variant(path, NULL, result->variant, sizeof result->variant);
    result->new_file = true;
    result->action = "failed";
    result->code = rc;
    snprintf(result->message, sizeof result->message, "%s", err->message);
    return rc;
}

int registry_add_file(struct registry *registry, const char *path, enum registry_source source,
                      yd_error *err)
{
    struct registry_result result;
    int rc;

    pthread_mutex_lock(&registry->admin_lock);
    rc = add_file_locked(registry, path, source, &result, err);
    pthread_mutex_unlock(&registry->admin_lock);
    return rc;
}

static bool is_onnx(const char *path)
{
    size_t length = strlen(path);

    return length >= 5 && strcmp(path + length - 5, ".onnx") == 0;
}

/* ONNX files first, so fp32 is the default variant of a model that has one, then by name. */
static int compare_names(const void *a, const void *b)
{
    const char *left = *(char *const *)a, *right = *(char *const *)b;

    if (is_onnx(left) != is_onnx(right))
        return is_onnx(left) ? -1 : 1;
    return strcmp(left, right);
}

bool registry_has_model_extension(const char *file)
{
    const char *dot = strrchr(file, '.');

    return dot && (strcasecmp(dot, ".onnx") == 0 || strcasecmp(dot, ".yolod") == 0);
}

int registry_dir_has_model_file(const char *dir)
{
    DIR *handle = opendir(dir);
    struct dirent *item;
    int found = 0;

    if (!handle)
        return -1;
    while (!found && (item = readdir(handle)) != NULL) {
        struct stat st;

        found = registry_is_model_file(item->d_name) &&
                fstatat(dirfd(handle), item->d_name, &st, 0) == 0 && S_ISREG(st.st_mode);
    }
    closedir(handle);
    return found;
}

/* Lists the model files of dir as "dir/file" paths, sorted by compare_names. Caller holds admin_lock. */
static int list_model_files(struct registry *registry, const char *dir, char ***out,
                            int *out_count, yd_error *err)
{
    DIR *handle = opendir(dir);
    struct dirent *item;
    char **files = NULL;
    int count = 0, capacity = 0, rc = YD_OK;

    *out = NULL;
    *out_count = 0;
    if (!handle)
        return yd_error_set(err, YD_ERR_IO, "cannot open model directory %s: %s", dir,
                            strerror(errno));
    while ((item = readdir(handle)) != NULL) {
        struct stat st;
        const char *skip_reason;

        if (!registry_is_model_file(item->d_name)) {
            char path[PATH_MAX];

            if (item->d_name[0] == '.' || !registry_has_model_extension(item->d_name))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, item->d_name);
            log_printf(problem_level(registry, path, YD_LOG_WARN, NULL),
                       "skipping %s: a model directory serves only files named NAME.onnx or"
                       " NAME.VARIANT.yolod (lower-case extensions), such as yolov8n.int8.yolod;"
                       " rename it", path);
            continue;
        }
        /* Only regular files (or links to one): opening a FIFO would block the sync. */
        if (fstatat(dirfd(handle), item->d_name, &st, 0) != 0)
            skip_reason = errno == ENOENT ? "a link to a missing file" : strerror(errno);
        else if (!S_ISREG(st.st_mode))
            skip_reason = S_ISDIR(st.st_mode) ? "a directory" : "not a regular file";
        else
            skip_reason = NULL;
        if (skip_reason) {
            char path[PATH_MAX];

            snprintf(path, sizeof path, "%s/%s", dir, item->d_name);
            log_printf(problem_level(registry, path, YD_LOG_WARN, NULL), "skipping %s: %s", path,
                       skip_reason);
            continue;
        }
        if (count == capacity) {
            int grown_capacity = capacity ? 2 * capacity : 16;
            char **grown = realloc(files, (size_t)grown_capacity * sizeof *grown);

            if (!grown) {
                rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory listing %s", dir);
                goto cleanup;
            }
            files = grown;
            capacity = grown_capacity;
        }
        if (asprintf(&files[count], "%s/%s", dir, item->d_name) < 0) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory listing %s", dir);
            goto cleanup;
        }
        count++;
    }
    if (count > 0)
        qsort(files, (size_t)count, sizeof *files, compare_names);

cleanup:
    closedir(handle);
    if (rc < 0) {
        for (int i = 0; i < count; i++)
            free(files[i]);
        free(files);
        return rc;
    }
    *out = files;
    *out_count = count;
    return YD_OK;
}

static void free_files(char **files, int count)
{
    for (int i = 0; i < count; i++)
        free(files[i]);
    free(files);
}

/* Whether a loaded entry came from the file at path (by device and inode, whatever the path). */
/*
 * Returns whether path is the file (by device and inode) that a --model or
 * config entry serves. Directory files that link to each other are each served.
 */
static bool served_through_file(struct registry *registry, const char *path)
{
    struct file_id id;
    bool served = false;

    if (file_identity(path, &id) != 0)
        return false;
    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry_count(registry) && !served; i++) {
        const struct entry *entry = &registry->entries[i];

        served = entry->model && entry->source == REGISTRY_SOURCE_FILE && !entry->leaving &&
                 entry->file.dev == id.dev && entry->file.ino == id.ino;
    }
    pthread_mutex_unlock(&registry->lock);
    return served;
}

int registry_add_dir(struct registry *registry, const char *dir, yd_error *err)
{
    char **files;
    int count, rc;

    pthread_mutex_lock(&registry->admin_lock);
    rc = list_model_files(registry, dir, &files, &count, err);
    pthread_mutex_unlock(&registry->admin_lock);
    if (rc < 0)
        return rc;
    if (count == 0)
        log_printf(YD_LOG_WARN, "model directory %s has no NAME.onnx or NAME.VARIANT.yolod files", dir);
    /* One bad file must not keep the others from serving, as when it appears later. */
    for (int i = 0; i < count; i++) {
        yd_error error = { 0 };

        /* A --model file that is also in the directory is served once, as given. */
        if (served_through_file(registry, files[i])) {
            log_printf(YD_LOG_INFO, "%s is already loaded through --model or the config", files[i]);
            continue;
        }
        if (registry_add_file(registry, files[i], REGISTRY_SOURCE_DIR, &error) < 0) {
            int level;

            /* Recorded, so the rescan after startup does not log it again. */
            pthread_mutex_lock(&registry->admin_lock);
            level = problem_level(registry, files[i], YD_LOG_ERROR, NULL);
            record_failure(registry, files[i], error.code, error.message);
            pthread_mutex_unlock(&registry->admin_lock);
            log_printf(level, "cannot load %s, serving the other files: %s", files[i],
                       error.message);
            metrics_count_new_file_failure();
        }
    }
    free_files(files, count);
    return YD_OK;
}

/* Whether a variant of name (of any model when NULL) is loaded. Caller holds lock. */
static bool has_model_locked(const struct registry *registry, const char *name)
{
    for (int i = 0; i < registry_count(registry); i++)
        if (registry->entries[i].model && (!name || strcmp(registry->entries[i].name, name) == 0))
            return true;
    return false;
}

bool registry_has_model(struct registry *registry, const char *name)
{
    bool found;

    pthread_mutex_lock(&registry->lock);
    found = has_model_locked(registry, name);
    pthread_mutex_unlock(&registry->lock);
    return found;
}

/* Whether entry index is the first loaded entry with its name. Caller holds lock. */
static bool is_first_of_name(const struct registry *registry, int index)
{
    if (!registry->entries[index].model)
        return false;
    for (int i = 0; i < index; i++)
        if (registry->entries[i].model &&
            strcmp(registry->entries[i].name, registry->entries[index].name) == 0)
            return false;
    return true;
}

bool registry_knows(struct registry *registry, const char *name)
{
    bool found = false;

    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry_count(registry) && !found; i++)
        found = strcmp(registry->entries[i].name, name) == 0;
    pthread_mutex_unlock(&registry->lock);
    return found;
}

void registry_list_names(struct registry *registry, char *out, size_t out_size)
{
    size_t used = 0;

    out[0] = '\0';
    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry_count(registry) && used < out_size; i++)
        if (is_first_of_name(registry, i))
            used += (size_t)snprintf(out + used, out_size - used, "%s%s", used ? ", " : "",
                                     registry->entries[i].name);
    pthread_mutex_unlock(&registry->lock);
    if (out[0] == '\0')
        snprintf(out, out_size, "none");
}

cJSON *registry_names_json(struct registry *registry)
{
    cJSON *names = cJSON_CreateArray();

    pthread_mutex_lock(&registry->lock);
    for (int i = 0; names && i < registry_count(registry); i++) {
        cJSON *name;

        if (!is_first_of_name(registry, i))
            continue;
        name = cJSON_CreateString(registry->entries[i].name);
        if (!name) {
            cJSON_Delete(names);
            names = NULL;
            break;
        }
        cJSON_AddItemToArray(names, name);
    }
    pthread_mutex_unlock(&registry->lock);
    return names;
}

void registry_list_loaded(struct registry *registry, char *out, size_t out_size)
{
    size_t used = 0;

    out[0] = '\0';
    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry_count(registry) && used < out_size; i++)
        if (registry->entries[i].model)
            used += (size_t)snprintf(out + used, out_size - used, "%s%s/%s", used ? ", " : "",
                                     registry->entries[i].name, registry->entries[i].variant);
    pthread_mutex_unlock(&registry->lock);
    if (out[0] == '\0')
        snprintf(out, out_size, "none");
}

void registry_list_variants(struct registry *registry, const char *name, char *out,
                            size_t out_size)
{
    size_t used = 0;

    out[0] = '\0';
    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry_count(registry) && used < out_size; i++)
        if (registry->entries[i].model && strcmp(registry->entries[i].name, name) == 0)
            used += (size_t)snprintf(out + used, out_size - used, "%s%s", used ? ", " : "",
                                     registry->entries[i].variant);
    pthread_mutex_unlock(&registry->lock);
    if (out[0] == '\0')
        snprintf(out, out_size, "none");
}

/* Retains entry index, which is loaded, into ref. Caller holds lock. */
static void retain_entry(struct registry *registry, int index, struct registry_ref *ref)
{
    struct entry *entry = &registry->entries[index];

    atomic_fetch_add_explicit(&entry->holders, 1, memory_order_relaxed);
    ref->model = yd_model_retain(entry->model);
    ref->name = entry->name;
    ref->variant = entry->variant;
    ref->version = entry->version;
    ref->index = index;
    ref->registry = registry;
}

int registry_acquire(struct registry *registry, const char *name, const char *variant,
                     struct registry_ref *ref, bool *name_known)
{
    int index = -1;

    memset(ref, 0, sizeof *ref);
    pthread_mutex_lock(&registry->lock);
    for (int i = 0; !name && i < registry_count(registry); i++)
        if (registry->entries[i].model)
            name = registry->entries[i].name;
    *name_known = name && has_model_locked(registry, name);
    if (*name_known) {
        index = variant ? find_entry(registry, name, variant) : find_default(registry, name);
        if (index >= 0 && !registry->entries[index].model)
            index = -1;
    }
    if (index >= 0)
        retain_entry(registry, index, ref);
    pthread_mutex_unlock(&registry->lock);
    return index >= 0 ? YD_OK : YD_ERR_INVALID_ARGUMENT;
}

int registry_acquire_index(struct registry *registry, int index, struct registry_ref *ref)
{
    bool loaded;

    memset(ref, 0, sizeof *ref);
    pthread_mutex_lock(&registry->lock);
    loaded = registry->entries[index].model != NULL;
    if (loaded)
        retain_entry(registry, index, ref);
    pthread_mutex_unlock(&registry->lock);
    return loaded ? YD_OK : YD_ERR_INVALID_ARGUMENT;
}

void registry_release(struct registry_ref *ref)
{
    if (!ref->model)
        return;
    yd_model_release(ref->model);
    ref->model = NULL;
    /* Release order: the caller's reads of name and variant happen before
     * is_reusable() finds the entry without holders. */
    atomic_fetch_sub_explicit(&ref->registry->entries[ref->index].holders, 1,
                              memory_order_release);
}

bool registry_is_current(struct registry *registry, const yd_model *model)
{
    bool current = false;

    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry_count(registry) && !current; i++)
        current = registry->entries[i].model == model;
    pthread_mutex_unlock(&registry->lock);
    return current;
}

/* Whether entry index is (name, variant), a NULL variant matching every one. */
static bool entry_matches(const struct registry *registry, int index, const char *name,
                          const char *variant)
{
    const struct entry *entry = &registry->entries[index];

    return strcmp(entry->name, name) == 0 && (!variant || strcmp(entry->variant, variant) == 0);
}

int registry_reload(struct registry *registry, const char *name, const char *variant,
                    struct registry_results *results)
{
    bool loaded_before[REGISTRY_MAX_ENTRIES];
    struct registry_result spare;
    int count;

    memset(results, 0, sizeof *results);
    pthread_mutex_lock(&registry->admin_lock);
    /* A file that now contains another variant adds an entry, or takes an
     * unloaded one, which is not reloaded again. */
    count = registry_count(registry);
    for (int i = 0; i < count; i++)
        loaded_before[i] = registry->entries[i].model != NULL;
    for (int i = 0; i < count; i++) {
        struct registry_result *result;

        if (!loaded_before[i] || !registry->entries[i].model ||
            !entry_matches(registry, i, name, variant))
            continue;
        result = next_result(results, &spare);
        load_entry(registry, i, NULL, result);
        results->failures += result->code != YD_OK;
    }
    pthread_mutex_unlock(&registry->admin_lock);
    return results->total > 0 ? YD_OK : YD_ERR_INVALID_ARGUMENT;
}

/* Whether path is a file of model name (NAME.onnx or NAME.*.yolod) and variant. */
static bool file_is_of(const char *path, const char *name, const char *variant)
{
    const char *base = strrchr(path, '/');
    size_t length = strlen(name);

    base = base ? base + 1 : path;
    if (strncmp(base, name, length) != 0 || base[length] != '.')
        return false;
    if (!variant)
        return true;
    if (strcmp(variant, "fp32") == 0 && strcmp(base + length, ".onnx") == 0)
        return true;
    return strncmp(base + length + 1, variant, strlen(variant)) == 0 &&
           strcmp(base + length + 1 + strlen(variant), ".yolod") == 0;
}

/* The entry index already serving path, or -1. */
static int entry_of_path(const struct registry *registry, const char *path)
{
    for (int i = 0; i < registry_count(registry); i++)
        if (!registry->entries[i].superseded && strcmp(registry->entries[i].path, path) == 0)
            return i;
    return -1;
}

/*
 * Returns whether entry is an unloaded variant of the model directory whose
 * file is gone. A load skips it, because the directory no longer offers it.
 */
static bool file_left_dir(const struct entry *entry)
{
    struct stat st;

    return !entry->model && entry->source == REGISTRY_SOURCE_DIR && stat(entry->path, &st) != 0 &&
           errno == ENOENT;
}

int registry_load(struct registry *registry, const char *name, const char *variant,
                  const char *dir, struct registry_results *results)
{
    bool loaded_before[REGISTRY_MAX_ENTRIES], pinned[REGISTRY_MAX_ENTRIES];
    struct registry_result spare;
    char **files = NULL;
    int count = 0, entries;
    yd_error error = { 0 };

    memset(results, 0, sizeof *results);
    pthread_mutex_lock(&registry->admin_lock);
    /* A file that now contains another variant loads into another entry,
     * already in the results, which may come later in this loop. The
     * entries to load are pinned, so such a load cannot take one of them. */
    entries = registry_count(registry);
    for (int i = 0; i < entries; i++) {
        loaded_before[i] = registry->entries[i].model != NULL;
        pinned[i] = entry_matches(registry, i, name, variant);
        if (pinned[i])
            atomic_fetch_add(&registry->entries[i].holders, 1);
    }
    for (int i = 0; i < entries; i++) {
        struct registry_result *result;

        if (!entry_matches(registry, i, name, variant) || file_left_dir(&registry->entries[i]) ||
            registry->entries[i].superseded ||
            (registry->entries[i].model && !loaded_before[i]))
            continue;
        result = next_result(results, &spare);
        if (registry->entries[i].model) {
            result_init(result, &registry->entries[i]);
            result->action = "unchanged";
            result->version = registry->entries[i].version;
            continue;
        }
        load_entry(registry, i, NULL, result);
        results->failures += result->code != YD_OK;
    }
    for (int i = 0; i < entries; i++)
        if (pinned[i])
            atomic_fetch_sub(&registry->entries[i].holders, 1);
    if (dir && list_model_files(registry, dir, &files, &count, &error) < 0)
        log_printf(YD_LOG_WARN, "load of model %s: %s", name, error.message);
    for (int i = 0; i < count; i++) {
        struct registry_result *result;

        if (!file_is_of(files[i], name, variant) || entry_of_path(registry, files[i]) >= 0)
            continue;
        result = next_result(results, &spare);
        if (add_file_locked(registry, files[i], REGISTRY_SOURCE_DIR, result, &error) < 0) {
            bool first;

            results->failures++;
            log_printf(problem_level(registry, files[i], YD_LOG_ERROR, &first),
                       "load of %s failed: %s", files[i], error.message);
            record_failure(registry, files[i], error.code, error.message);
            if (first)
                metrics_count_new_file_failure();
        }
    }
    pthread_mutex_unlock(&registry->admin_lock);
    free_files(files, count);
    return results->total > 0 ? YD_OK : YD_ERR_INVALID_ARGUMENT;
}

int registry_unload(struct registry *registry, const char *name, const char *variant,
                    struct registry_results *results)
{
    struct registry_result spare;

    memset(results, 0, sizeof *results);
    pthread_mutex_lock(&registry->admin_lock);
    for (int i = 0; i < registry_count(registry); i++) {
        if (!registry->entries[i].model || !entry_matches(registry, i, name, variant))
            continue;
        unload_entry(registry, i, true, "admin request", next_result(results, &spare));
    }
    pthread_mutex_unlock(&registry->admin_lock);
    return results->total > 0 ? YD_OK : YD_ERR_INVALID_ARGUMENT;
}

/* Makes entry index, which is loaded, the default of its model. Caller holds admin_lock. */
static void make_default(struct registry *registry, int index)
{
    struct entry *entry = &registry->entries[index];
    int previous;

    pthread_mutex_lock(&registry->lock);
    previous = find_default(registry, entry->name);
    if (previous >= 0)
        registry->entries[previous].is_default = false;
    entry->is_default = true;
    pthread_mutex_unlock(&registry->lock);
    if (previous != index)
        log_printf(YD_LOG_INFO, "model %s now defaults to variant %s", entry->name,
                   entry->variant);
}

int registry_set_default(struct registry *registry, const char *name, const char *variant,
                         yd_error *err)
{
    int index, rc = YD_OK;

    pthread_mutex_lock(&registry->admin_lock);
    index = find_entry(registry, name, variant);
    if (index < 0 || !registry->entries[index].model)
        rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "model '%s' has no loaded variant '%s'",
                          name, variant);
    else
        make_default(registry, index);
    pthread_mutex_unlock(&registry->admin_lock);
    return rc;
}

void registry_reset_defaults(struct registry *registry)
{
    pthread_mutex_lock(&registry->admin_lock);
    for (int i = 0; i < registry_count(registry); i++) {
        const struct entry *entry = &registry->entries[i];
        bool first = entry->model != NULL;

        for (int j = 0; first && j < i; j++)
            if (registry->entries[j].model && strcmp(registry->entries[j].name, entry->name) == 0)
                first = false;
        if (first)
            make_default(registry, i);
    }
    pthread_mutex_unlock(&registry->admin_lock);
}

bool registry_set_default_everywhere(struct registry *registry, const char *variant)
{
    bool found = false;

    pthread_mutex_lock(&registry->admin_lock);
    for (int i = 0; i < registry_count(registry); i++) {
        if (!registry->entries[i].model || strcmp(registry->entries[i].variant, variant) != 0)
            continue;
        make_default(registry, i);
        found = true;
    }
    pthread_mutex_unlock(&registry->admin_lock);
    return found;
}

/* Whether path is in files[0..count). */
static bool listed(const char *const *files, int count, const char *path)
{
    for (int i = 0; i < count; i++)
        if (strcmp(files[i], path) == 0)
            return true;
    return false;
}

/*
 * Syncs one file that is present: loads it when new, reloads it when it
 * changed, and leaves it alone otherwise. A new file that finds every
 * registry entry taken returns true without a result when may_defer is
 * set, so the caller can try again after its unloads. Caller holds
 * admin_lock.
 */
static bool sync_file(struct registry *registry, const char *path, enum registry_source source,
                      bool revive, bool may_defer, struct registry_results *results)
{
    struct registry_result spare, *result;
    const struct reported_file *failure;
    int index = entry_of_path(registry, path);
    yd_error error = { 0 };
    struct file_id id;

    if (atomic_load(&registry->stop_requested))
        return false;

    if (index >= 0) {
        const struct entry *entry = &registry->entries[index];

        if (!entry->model && entry->unloaded_by_admin && !revive)
            return false;
        if (file_identity(path, &id) == 0) {
            if (entry->model && same_file(&id, &entry->file))
                return false;
            /* A watch rescan does not retry a file version that already failed to load. */
            if (registry->watch_rescan && same_file(&id, &entry->failed_file))
                return false;
        }
        result = next_result(results, &spare);
        load_entry(registry, index, NULL, result);
    } else if (registry->watch_rescan && (failure = known_failure(registry, path)) != NULL) {
        /* Not parsed again but reported as the same failure, which still keeps
         * an entry this file would replace serving (see replacement_failed). */
        result = next_result(results, &spare);
        memset(result, 0, sizeof *result);
        snprintf(result->name, sizeof result->name, "%s", path);
        registry_file_variant(path, NULL, result->variant, sizeof result->variant);
        snprintf(result->message, sizeof result->message, "%s",
                 failure->message ? failure->message : "failed to load");
        result->new_file = true;
        result->action = "failed";
        result->code = failure->code;
        result->repeated = true;
        log_printf(YD_LOG_DEBUG, "load of %s skipped: it failed unchanged before", path);
    } else {
        registry->table_full = false;
        result = next_result(results, &spare);
        add_file_locked(registry, path, source, result, &error);
        if (result->code != YD_OK && registry->table_full && may_defer) {
            /* Withdrawn: the sync tries again after its unloads. */
            results->count -= result != &spare;
            results->total--;
            return true;
        }
        if (result->code != YD_OK && registry->table_full) {
            /* Not recorded as failed, so the next rescan tries again. */
            log_printf(YD_LOG_WARN, "load of %s failed: %s", path, error.message);
        } else if (result->code != YD_OK) {
            bool first;
            int level = problem_level(registry, path, YD_LOG_ERROR, &first);

            result->repeated = level == YD_LOG_DEBUG;
            log_printf(level, "load of %s failed: %s", path, error.message);
            record_failure(registry, path, error.code, error.message);
            if (first)
                metrics_count_new_file_failure();
        }
    }
    results->failures += result->code != YD_OK;
    results->repeated_failures += result->code != YD_OK && result->repeated;
    return false;
}

/*
 * Returns whether a new file that would replace the entry failed to load in
 * this sync: one with the entry's model name and variant, or with its model
 * name and a variant its file name does not give (NAME.yolod).
 */
static bool replacement_failed(const struct registry_results *results, const struct entry *entry)
{
    char file_name[sizeof results->items[0].name];

    for (int i = 0; i < results->count; i++) {
        const struct registry_result *result = &results->items[i];

        if (result->code == YD_OK || !result->new_file || result->conflict)
            continue;
        name_of_file(result->name, file_name, sizeof file_name);
        if (strcmp(file_name, entry->name) == 0 &&
            (result->variant[0] == '\0' || strcmp(result->variant, entry->variant) == 0))
            return true;
    }
    return false;
}

/* Returns whether an entry that is not leaving is loaded. Caller holds admin_lock. */
static bool serves_after_sync(const struct registry *registry)
{
    for (int i = 0; i < registry_count(registry); i++)
        if (registry->entries[i].model && !registry->entries[i].leaving)
            return true;
    return false;
}

void registry_set_writing_check(struct registry *registry, registry_writing_fn writing, void *user)
{
    pthread_mutex_lock(&registry->admin_lock);
    registry->writing = writing;
    registry->writing_user = user;
    pthread_mutex_unlock(&registry->admin_lock);
}

/* Returns whether the directory file at path is still being written, and logs it if so. Caller holds admin_lock. */
static bool still_written(const struct registry *registry, const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!registry->writing || !registry->writing(slash ? slash + 1 : path, registry->writing_user))
        return false;
    log_printf(YD_LOG_INFO, "not loading %s yet: it is still being written", path);
    return true;
}

/* A file whose load registry_sync retries after its unloads. */
struct deferred_file {
    const char *path;
    enum registry_source source;
};

void registry_sync(struct registry *registry, const char *const *files, int file_count,
                   const char *dir, bool revive, struct registry_results *results)
{
    struct registry_result spare;
    struct deferred_file *deferred;
    char **dir_files = NULL;
    int dir_count = 0, deferred_count = 0;
    yd_error error = { 0 };

    memset(results, 0, sizeof *results);
    pthread_mutex_lock(&registry->admin_lock);
    registry->watch_rescan = !revive;
    if (dir && list_model_files(registry, dir, &dir_files, &dir_count, &error) < 0) {
        /* The directory cannot be read: nothing is unloaded for it. */
        log_printf(YD_LOG_ERROR, "cannot rescan the model directory: %s", error.message);
        dir = NULL;
    }
    /* Entries whose files are gone leave only after the new files are loaded,
     * so a file that replaces one (same name and variant) swaps in. */
    for (int i = 0; i < registry_count(registry); i++) {
        struct entry *entry = &registry->entries[i];

        if (!entry->model)
            continue;
        if (entry->source == REGISTRY_SOURCE_FILE)
            entry->leaving = files && !listed(files, file_count, entry->path);
        else
            entry->leaving = dir && !listed((const char *const *)dir_files, dir_count, entry->path);
    }
    deferred = calloc((size_t)(files ? file_count : 0) + (size_t)dir_count + 1, sizeof *deferred);
    for (int i = 0; files && i < file_count; i++)
        if (sync_file(registry, files[i], REGISTRY_SOURCE_FILE, revive, deferred != NULL, results))
            deferred[deferred_count++] = (struct deferred_file){ files[i], REGISTRY_SOURCE_FILE };
    for (int i = 0; i < dir_count; i++)
        if (!served_through_file(registry, dir_files[i]) && !still_written(registry, dir_files[i]) &&
            sync_file(registry, dir_files[i], REGISTRY_SOURCE_DIR, revive, deferred != NULL, results))
            deferred[deferred_count++] = (struct deferred_file){ dir_files[i], REGISTRY_SOURCE_DIR };
    for (int i = 0; i < registry_count(registry); i++) {
        struct entry *entry = &registry->entries[i];

        if (entry->leaving && replacement_failed(results, entry)) {
            entry->leaving = false;
            log_printf(YD_LOG_WARN, "model %s variant %s keeps serving version %llu from %s,"
                       " because a new file of the model failed to load",
                       entry->name, entry->variant, (unsigned long long)entry->version, entry->path);
            metrics_observe_reload(i, false);
        }
    }
    if (files && !serves_after_sync(registry)) {
        /* A configuration that would leave nothing serving (say, its only
         * model line now names a broken file) is not applied, as a config
         * error is not. A file removed from a watched directory still goes. */
        for (int i = 0; i < registry_count(registry); i++) {
            if (registry->entries[i].leaving)
                log_printf(YD_LOG_ERROR, "model %s variant %s keeps serving from %s: without it"
                           " no model would be left to serve", registry->entries[i].name,
                           registry->entries[i].variant, registry->entries[i].path);
            registry->entries[i].leaving = false;
        }
    }
    for (int i = 0; i < registry_count(registry); i++) {
        struct entry *entry = &registry->entries[i];

        if (!entry->leaving)
            continue;
        entry->leaving = false;
        unload_entry(registry, i, false,
                     entry->source == REGISTRY_SOURCE_FILE ? "no longer in the configuration"
                                                           : "file removed from the model directory",
                     next_result(results, &spare));
    }
    /* New files that found every entry taken, now that removed files are unloaded. */
    for (int i = 0; i < deferred_count; i++)
        sync_file(registry, deferred[i].path, deferred[i].source, revive, false, results);
    free(deferred);
    registry->watch_rescan = false;
    pthread_mutex_unlock(&registry->admin_lock);
    free_files(dir_files, dir_count);
}

/* The model object of the name of entry `first`. Caller holds lock. */
static cJSON *describe_model(const struct registry *registry, int first)
{
    const char *name = registry->entries[first].name;
    cJSON *model = cJSON_CreateObject(), *variants;

    if (!model || !cJSON_AddStringToObject(model, "name", name))
        goto fail;
    variants = cJSON_AddArrayToObject(model, "variants");
    if (!variants)
        goto fail;
    for (int i = first; i < registry_count(registry); i++) {
        const struct entry *entry = &registry->entries[i];
        cJSON *item;

        if (!entry->model || strcmp(entry->name, name) != 0)
            continue;
        if (entry->is_default && !cJSON_AddStringToObject(model, "default_variant", entry->variant))
            goto fail;
        item = cJSON_CreateObject();
        if (!item)
            goto fail;
        cJSON_AddItemToArray(variants, item);
        if (!cJSON_AddStringToObject(item, "variant", entry->variant) ||
            !cJSON_AddStringToObject(item, "compression", yd_model_variant(entry->model)) ||
            !cJSON_AddNumberToObject(item, "version", (double)entry->version) ||
            !cJSON_AddNumberToObject(item, "loaded_at", entry->loaded_at) ||
            !cJSON_AddStringToObject(item, "source", entry->path) ||
            !cJSON_AddNumberToObject(item, "size_bytes", (double)entry->size_bytes) ||
            !cJSON_AddBoolToObject(item, "default", entry->is_default))
            goto fail;
    }
    return model;

fail:
    cJSON_Delete(model);
    return NULL;
}

cJSON *registry_describe(struct registry *registry, const char *name)
{
    cJSON *root = NULL;

    pthread_mutex_lock(&registry->lock);
    if (name) {
        for (int i = 0; i < registry_count(registry) && !root; i++)
            if (is_first_of_name(registry, i) && strcmp(registry->entries[i].name, name) == 0)
                root = describe_model(registry, i);
        goto unlock;
    }
    root = cJSON_CreateArray();
    for (int i = 0; root && i < registry_count(registry); i++) {
        cJSON *model;

        if (!is_first_of_name(registry, i))
            continue;
        model = describe_model(registry, i);
        if (!model) {
            cJSON_Delete(root);
            root = NULL;
            break;
        }
        cJSON_AddItemToArray(root, model);
    }

unlock:
    pthread_mutex_unlock(&registry->lock);
    return root;
}
