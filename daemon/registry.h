/*
 * Model registry: the served models keyed by (name, variant), each holding
 * its current version. A request takes a retained reference to the current
 * version, so a reload can publish a new version while old requests finish
 * on the one they started with.
 */
#ifndef YOLOD_DAEMON_REGISTRY_H
#define YOLOD_DAEMON_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "yolod.h"

struct registry;

/* A retained reference to one version; give it back with registry_release. */
struct registry_ref {
    yd_model *model;
    uint64_t version; /* 1 for the version loaded at start, +1 per reload */
    int index;        /* entry index, stable for the registry's lifetime */
};

/* Outcome of reloading one variant, for the admin API reply. */
struct registry_reload_result {
    char variant[64];
    bool ok;
    int code;          /* YD_ERR_* of the failure, YD_OK on success */
    uint64_t version;  /* the version serving after the reload */
    char message[512]; /* why the load failed, empty on success */
};

#define REGISTRY_MAX_VARIANTS 16 /* variants of one model a reload reports */

int registry_create(int session_threads, struct registry **out, yd_error *err);

/* Releases every current version; requests must have finished. */
void registry_destroy(struct registry *registry);

/*
 * Loads a model file as version 1 of its (name, variant) entry. The first
 * variant added for a name becomes its default. A second file with the same
 * name and variant is rejected with YD_ERR_INVALID_ARGUMENT.
 */
int registry_add_file(struct registry *registry, const char *path, yd_error *err);

/*
 * Loads every NAME.onnx (variant fp32), then every NAME.VARIANT.yolod in dir,
 * each group in name order, so a model's default variant is fp32 when it has
 * an ONNX file and does not depend on readdir's order.
 */
int registry_add_dir(struct registry *registry, const char *dir, yd_error *err);

/* Number of entries; indexes 0..count-1 are valid for the registry's lifetime. */
int registry_count(const struct registry *registry);

/* Name and variant of an entry; the strings live as long as the registry. */
const char *registry_name(const struct registry *registry, int index);
const char *registry_variant(const struct registry *registry, int index);

/* Distinct model names, in the order they were added, joined by ", ". */
void registry_list_names(struct registry *registry, char *out, size_t out_size);

/*
 * Retains the current version of (name, variant). A NULL name is the first
 * model added, a NULL variant the model's default. Returns YD_OK, or
 * YD_ERR_INVALID_ARGUMENT when no such entry exists; *name_known reports
 * whether the name exists (so the caller can tell model from variant).
 */
int registry_acquire(struct registry *registry, const char *name, const char *variant,
                     struct registry_ref *ref, bool *name_known);

/* Drops the reference; a replaced version is freed with its last one. */
void registry_release(struct registry_ref *ref);

/* Whether model is the current version of its entry. */
bool registry_is_current(struct registry *registry, const yd_model *model);

/*
 * Reloads every variant of the model from its source file: loads and warms
 * the new version beside the old, then publishes it. A variant that fails
 * keeps its old version. Fills up to max_results results and returns how
 * many variants were tried, or -1 when the name is unknown.
 */
int registry_reload(struct registry *registry, const char *name,
                    struct registry_reload_result *results, int max_results);

/*
 * Describes the models as the GET /v1/models items: name, default_variant
 * and variants (variant, version, loaded_at, source, size_bytes). A NULL
 * name describes every model and returns an array; otherwise the object of
 * that model, or NULL when it is unknown. NULL also when out of memory.
 */
cJSON *registry_describe(struct registry *registry, const char *name);

#endif /* YOLOD_DAEMON_REGISTRY_H */
