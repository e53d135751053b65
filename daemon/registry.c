/*
 * Model registry. `lock` guards every entry's current version: model,
 * version, loaded_at and size_bytes. Names, variants and paths never change
 * after an entry is added, and entries are added only before serving starts,
 * so they are read without the lock. `reload_lock` serializes reloads, so two
 * reloads of one model cannot publish out of order.
 */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "util.h"

struct entry {
    char *name, *variant, *path;
    bool is_default;         /* the variant used when a request names none */
    yd_model *model;         /* current version; the registry holds one reference */
    uint64_t version;
    double loaded_at;        /* Unix time in seconds */
    long long size_bytes;    /* source file size when this version was loaded */
};

struct registry {
    pthread_mutex_t lock;
    pthread_mutex_t reload_lock;
    struct entry *entries;
    int count, capacity;
    int session_threads;     /* OpenMP threads of the warm-up session */
};

static double wall_clock_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + now.tv_nsec / 1e9;
}

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int registry_create(int session_threads, struct registry **out, yd_error *err)
{
    struct registry *registry = calloc(1, sizeof *registry);

    if (!registry)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating the model registry");
    pthread_mutex_init(&registry->lock, NULL);
    pthread_mutex_init(&registry->reload_lock, NULL);
    registry->session_threads = session_threads;
    *out = registry;
    return YD_OK;
}

void registry_destroy(struct registry *registry)
{
    if (!registry)
        return;
    for (int i = 0; i < registry->count; i++) {
        struct entry *entry = &registry->entries[i];

        if (entry->model)
            yd_model_release(entry->model);
        free(entry->name);
        free(entry->variant);
        free(entry->path);
    }
    free(registry->entries);
    pthread_mutex_destroy(&registry->reload_lock);
    pthread_mutex_destroy(&registry->lock);
    free(registry);
}

/* The entry of (name, variant); a NULL variant finds the default. Caller holds lock. */
static int find_entry(const struct registry *registry, const char *name, const char *variant)
{
    for (int i = 0; i < registry->count; i++) {
        const struct entry *entry = &registry->entries[i];

        if (strcmp(entry->name, name) != 0)
            continue;
        if (variant ? strcmp(entry->variant, variant) == 0 : entry->is_default)
            return i;
    }
    return -1;
}

/*
 * Creates a session on the calling thread and runs one inference, so a model
 * that loads but cannot run is caught before it is published.
 */
static int warm_up_model(yd_model *model, int threads, yd_error *err)
{
    yd_session *session = NULL;
    int rc = yd_session_create(model, threads, &session, err);

    if (rc < 0)
        return rc;
    yd_session_warm_up(session);
    yd_session_destroy(session);
    return YD_OK;
}

int registry_add_file(struct registry *registry, const char *path, yd_error *err)
{
    yd_model *model = NULL;
    double start = yd_now_ms();
    struct entry *entry;
    int rc;

    rc = yd_model_load(path, NULL, &model, err);
    if (rc < 0)
        return rc;

    pthread_mutex_lock(&registry->lock);
    if (find_entry(registry, yd_model_name(model), yd_model_variant(model)) >= 0) {
        rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                          "model '%s' variant '%s' from %s is already loaded from another file;"
                          " rename one file, because requests choose models by name and variant",
                          yd_model_name(model), yd_model_variant(model), path);
        goto unlock;
    }
    if (registry->count == registry->capacity) {
        int capacity = registry->capacity ? 2 * registry->capacity : 8;
        struct entry *grown = realloc(registry->entries, (size_t)capacity * sizeof *grown);

        if (!grown) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory adding model %s", path);
            goto unlock;
        }
        registry->entries = grown;
        registry->capacity = capacity;
    }
    entry = &registry->entries[registry->count];
    memset(entry, 0, sizeof *entry);
    entry->name = strdup(yd_model_name(model));
    entry->variant = strdup(yd_model_variant(model));
    entry->path = strdup(path);
    if (!entry->name || !entry->variant || !entry->path) {
        free(entry->name);
        free(entry->variant);
        free(entry->path);
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory adding model %s", path);
        goto unlock;
    }
    entry->is_default = find_entry(registry, entry->name, NULL) < 0;
    entry->model = model;
    entry->version = 1;
    entry->loaded_at = wall_clock_seconds();
    entry->size_bytes = file_size(path);
    registry->count++;
    model = NULL;
    log_printf(YD_LOG_INFO, "loaded model %s variant %s version 1 from %s: input %dx%d,"
               " %d classes, %.2f GFLOPs, %.0f ms",
               entry->name, entry->variant, path, yd_model_input_width(entry->model),
               yd_model_input_height(entry->model), yd_model_class_count(entry->model),
               yd_model_flops(entry->model) / 1e9, yd_now_ms() - start);

unlock:
    pthread_mutex_unlock(&registry->lock);
    if (model)
        yd_model_release(model);
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

/* NAME.onnx or NAME.VARIANT.yolod, with non-empty parts. */
static bool is_model_file(const char *file)
{
    const char *first_dot = strchr(file, '.'), *last_dot = strrchr(file, '.');

    if (!first_dot || first_dot == file || file[0] == '.')
        return false;
    if (strcmp(last_dot, ".onnx") == 0)
        return first_dot == last_dot;
    if (strcmp(last_dot, ".yolod") == 0)
        return last_dot > first_dot + 1 && strchr(first_dot + 1, '.') == last_dot;
    return false;
}

int registry_add_dir(struct registry *registry, const char *dir, yd_error *err)
{
    DIR *handle = opendir(dir);
    struct dirent *item;
    char **files = NULL;
    int count = 0, capacity = 0, rc = YD_OK;

    if (!handle)
        return yd_error_set(err, YD_ERR_IO, "cannot open model directory %s: %s", dir,
                            strerror(errno));
    while ((item = readdir(handle)) != NULL) {
        if (!is_model_file(item->d_name))
            continue;
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
    if (count == 0)
        log_printf(YD_LOG_WARN, "model directory %s has no NAME.onnx or NAME.VARIANT.yolod files", dir);
    for (int i = 0; i < count && rc == YD_OK; i++)
        rc = registry_add_file(registry, files[i], err);

cleanup:
    closedir(handle);
    for (int i = 0; i < count; i++)
        free(files[i]);
    free(files);
    return rc;
}

int registry_count(const struct registry *registry)
{
    return registry->count;
}

const char *registry_name(const struct registry *registry, int index)
{
    return registry->entries[index].name;
}

const char *registry_variant(const struct registry *registry, int index)
{
    return registry->entries[index].variant;
}

/* Whether entry index is the first entry with its name. */
static bool is_first_of_name(const struct registry *registry, int index)
{
    for (int i = 0; i < index; i++)
        if (strcmp(registry->entries[i].name, registry->entries[index].name) == 0)
            return false;
    return true;
}

void registry_list_names(struct registry *registry, char *out, size_t out_size)
{
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; i < registry->count && used < out_size; i++)
        if (is_first_of_name(registry, i))
            used += (size_t)snprintf(out + used, out_size - used, "%s%s", used ? ", " : "",
                                     registry->entries[i].name);
}

int registry_acquire(struct registry *registry, const char *name, const char *variant,
                     struct registry_ref *ref, bool *name_known)
{
    int index;

    memset(ref, 0, sizeof *ref);
    pthread_mutex_lock(&registry->lock);
    if (!name && registry->count > 0)
        name = registry->entries[0].name;
    *name_known = name && find_entry(registry, name, NULL) >= 0;
    index = name ? find_entry(registry, name, variant) : -1;
    if (index >= 0) {
        ref->model = yd_model_retain(registry->entries[index].model);
        ref->version = registry->entries[index].version;
        ref->index = index;
    }
    pthread_mutex_unlock(&registry->lock);
    return index >= 0 ? YD_OK : YD_ERR_INVALID_ARGUMENT;
}

void registry_release(struct registry_ref *ref)
{
    if (ref->model)
        yd_model_release(ref->model);
    ref->model = NULL;
}

bool registry_is_current(struct registry *registry, const yd_model *model)
{
    bool current = false;

    pthread_mutex_lock(&registry->lock);
    for (int i = 0; i < registry->count && !current; i++)
        current = registry->entries[i].model == model;
    pthread_mutex_unlock(&registry->lock);
    return current;
}

/* Loads, checks and warms the entry's file, then publishes it as the next version. */
static void reload_entry(struct registry *registry, int index,
                         struct registry_reload_result *result)
{
    struct entry *entry = &registry->entries[index];
    yd_model *model = NULL, *old = NULL;
    yd_error error = { 0 };
    double start = yd_now_ms();
    int rc;

    rc = yd_model_load(entry->path, NULL, &model, &error);
    if (rc == YD_OK && (strcmp(yd_model_name(model), entry->name) != 0 ||
                        strcmp(yd_model_variant(model), entry->variant) != 0))
        rc = yd_error_set(&error, YD_ERR_MODEL_FORMAT,
                          "%s now holds model '%s' variant '%s', expected '%s' variant '%s'",
                          entry->path, yd_model_name(model), yd_model_variant(model),
                          entry->name, entry->variant);
    if (rc == YD_OK)
        rc = warm_up_model(model, registry->session_threads, &error);

    pthread_mutex_lock(&registry->lock);
    if (rc == YD_OK) {
        old = entry->model;
        entry->model = model;
        entry->version++;
        entry->loaded_at = wall_clock_seconds();
        entry->size_bytes = file_size(entry->path);
        model = NULL;
    }
    result->version = entry->version;
    pthread_mutex_unlock(&registry->lock);

    snprintf(result->variant, sizeof result->variant, "%s", entry->variant);
    result->ok = rc == YD_OK;
    result->code = rc;
    snprintf(result->message, sizeof result->message, "%s", rc == YD_OK ? "" : error.message);
    metrics_observe_reload(index, rc == YD_OK);
    if (rc == YD_OK)
        log_printf(YD_LOG_INFO, "reloaded model %s variant %s from %s: version %llu, %.0f ms",
                   entry->name, entry->variant, entry->path,
                   (unsigned long long)result->version, yd_now_ms() - start);
    else
        log_printf(YD_LOG_ERROR, "reload of model %s variant %s from %s failed, version %llu"
                   " keeps serving: %s", entry->name, entry->variant, entry->path,
                   (unsigned long long)result->version, error.message);

    /* Requests still holding the old version keep it alive until they finish. */
    if (old)
        yd_model_release(old);
    if (model)
        yd_model_release(model);
    /* glibc keeps the freed arena memory of this connection thread otherwise. */
    malloc_trim(0);
}

int registry_reload(struct registry *registry, const char *name,
                    struct registry_reload_result *results, int max_results)
{
    int tried = 0;

    pthread_mutex_lock(&registry->reload_lock);
    for (int i = 0; i < registry->count; i++) {
        struct registry_reload_result ignored;

        if (strcmp(registry->entries[i].name, name) != 0)
            continue;
        reload_entry(registry, i, tried < max_results ? &results[tried] : &ignored);
        tried++;
    }
    pthread_mutex_unlock(&registry->reload_lock);
    return tried > 0 ? tried : -1;
}

/* Adds the model object of the name of entry `first`; caller holds lock. */
static cJSON *describe_model(const struct registry *registry, int first)
{
    const char *name = registry->entries[first].name;
    cJSON *model = cJSON_CreateObject(), *variants;

    if (!model || !cJSON_AddStringToObject(model, "name", name))
        goto fail;
    variants = cJSON_AddArrayToObject(model, "variants");
    if (!variants)
        goto fail;
    for (int i = first; i < registry->count; i++) {
        const struct entry *entry = &registry->entries[i];
        cJSON *item;

        if (strcmp(entry->name, name) != 0)
            continue;
        if (entry->is_default && !cJSON_AddStringToObject(model, "default_variant", entry->variant))
            goto fail;
        item = cJSON_CreateObject();
        if (!item)
            goto fail;
        cJSON_AddItemToArray(variants, item);
        if (!cJSON_AddStringToObject(item, "variant", entry->variant) ||
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
        for (int i = 0; i < registry->count && !root; i++)
            if (strcmp(registry->entries[i].name, name) == 0)
                root = describe_model(registry, i);
        goto unlock;
    }
    root = cJSON_CreateArray();
    for (int i = 0; root && i < registry->count; i++) {
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
