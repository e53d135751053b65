/*
 * Model registry: the served models keyed by (name, variant), each holding
 * its current version. A request takes a retained reference to the current
 * version, so a reload can publish a new version while old requests finish
 * on the one they started with.
 *
 * An entry is created the first time its (name, variant) is loaded. Unloading
 * empties it, and a later load fills it again with the next version number.
 * The entry stays with its pair until the table is full and a new pair
 * needs a slot. Then the pair unloaded longest ago that no request still
 * uses loses its entry to the new one. A pair that lost its entry starts again
 * at version 1 and with new metrics series when it is loaded again.
 *
 * Name and variant of a file: the name is the file name up to its first
 * dot; the variant is VARIANT for NAME.VARIANT.yolod, fp32 for NAME.onnx,
 * and the variant the file was compressed to for any other .yolod name.
 * The content may differ from what the name says (yolov8n.prod.yolod may
 * hold an int8 or an fp32 model); requests see it as the `compression` of
 * the version, taken from the file.
 */
#ifndef YOLOD_DAEMON_REGISTRY_H
#define YOLOD_DAEMON_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "yolod.h"

/*
 * Entries, each a (name, variant) pair loaded now or unloaded and not yet
 * given to another pair. This bounds the pairs loaded at once, together with
 * unloaded pairs that requests still use and directory files unloaded
 * through the admin API that are still on disk. The environment variable
 * YOLOD_TEST_REGISTRY_ENTRIES lowers it, so tests reach a full table with a
 * few files.
 */
#define REGISTRY_MAX_ENTRIES 1024
#define REGISTRY_MAX_RESULTS 16 /* variants one admin operation reports */

struct registry;

/*
 * A retained reference to one version; give it back with registry_release.
 * While it is held, its entry is not given to another pair.
 */
struct registry_ref {
    yd_model *model;
    const char *name, *variant; /* the entry's, valid until registry_release */
    uint64_t version;           /* 1 for the first version of the entry, +1 per load */
    int index;                  /* entry index, the metrics slot of the pair */
    struct registry *registry;
};

/* Origin of an entry's file; registry_sync treats each origin separately. */
enum registry_source {
    REGISTRY_SOURCE_FILE, /* --model FILE or `model = FILE` */
    REGISTRY_SOURCE_DIR,  /* a file found in the model directory */
};

/* Outcome for one variant of an admin operation, for replies and logs. */
struct registry_result {
    char name[128];
    char variant[64];
    const char *action; /* "loaded", "reloaded", "unloaded", "unchanged" or "failed" */
    int code;           /* YD_ERR_* of a failure, YD_OK otherwise */
    bool conflict;      /* set when another loaded file has the same name and variant */
    bool new_file;      /* a file no entry served before; a failure names its path */
    bool repeated;      /* a failure of a file version whose failure was logged before */
    uint64_t version;   /* the version serving afterwards, 0 when none */
    char message[512];  /* why it failed, empty otherwise */
};

/* The results of one operation: up to REGISTRY_MAX_RESULTS, `total` counts every one. */
struct registry_results {
    struct registry_result items[REGISTRY_MAX_RESULTS];
    int count, total, failures;
    int repeated_failures; /* failures with `repeated` set */
};

int registry_create(int session_threads, struct registry **out, yd_error *err);

/* Makes syncs in progress and later ones load no more files, at shutdown. */
void registry_request_stop(struct registry *registry);

/* Releases every current version; requests must have finished. */
void registry_destroy(struct registry *registry);

/*
 * Loads a model file as the next version of its (name, variant) entry,
 * creating the entry. A second file with the same name and variant as a
 * loaded entry from another path is rejected with YD_ERR_INVALID_ARGUMENT.
 * The first variant loaded for a name becomes its default.
 */
int registry_add_file(struct registry *registry, const char *path, enum registry_source source,
                      yd_error *err);

/*
 * Loads every NAME.onnx, then every NAME.VARIANT.yolod in dir, each group in
 * name order, so a model's default variant is fp32 when it has an ONNX file
 * and does not depend on readdir's order. A file that fails is logged and
 * skipped; only an unreadable directory is an error.
 */
int registry_add_dir(struct registry *registry, const char *dir, yd_error *err);

/*
 * Returns 1 when dir contains a file that registry_add_dir() would load (a
 * NAME.onnx or NAME.VARIANT.yolod regular file, or a link to one), 0 when
 * it contains none, or -1 with errno set when it cannot be read.
 */
int registry_dir_has_model_file(const char *dir);

/* Whether file (a name without directory) is NAME.onnx or NAME.VARIANT.yolod. */
bool registry_is_model_file(const char *file);

/*
 * Writes the variant a file is served as: VARIANT of NAME.VARIANT.yolod,
 * else the model's own. Without a model (a file that failed to load),
 * NAME.onnx gives fp32 and NAME.yolod an empty string.
 */
void registry_file_variant(const char *path, const yd_model *model, char *out, size_t out_size);

/*
 * Logs a file named as one compression that contains another, such as NAME.int8.yolod with
 * prune30-int8 or NAME.onnx with a yolod int8 file. Labels such as NAME.live.yolod are not checked.
 */
void registry_warn_variant_mismatch(const char *path, const yd_model *model, const char *variant);

/* Returns whether a file name ends in .onnx or .yolod in any letter case, served or not. */
bool registry_has_model_extension(const char *file);

/* Number of entry slots used so far, loaded or not; registry_acquire_index takes 0..count-1. */
int registry_count(const struct registry *registry);

/* Whether some variant of the model name (of any model when name is NULL) is loaded. */
bool registry_has_model(struct registry *registry, const char *name);

/* Distinct names of loaded models, in entry order, joined by ", ". */
void registry_list_names(struct registry *registry, char *out, size_t out_size);

/* Distinct names of loaded models as a JSON array of strings; NULL when out of memory. */
cJSON *registry_names_json(struct registry *registry);

/* Loaded pairs as NAME/VARIANT, joined by ", "; "none" when nothing is loaded. */
void registry_list_loaded(struct registry *registry, char *out, size_t out_size);

/* Returns true when the registry has an entry, loaded or unloaded, of the model name. */
bool registry_knows(struct registry *registry, const char *name);

/* Loaded variants of the model name, joined by ", ". */
void registry_list_variants(struct registry *registry, const char *name, char *out,
                            size_t out_size);

/*
 * Retains the current version of (name, variant). A NULL name is the first
 * loaded model, a NULL variant the model's default. Returns YD_OK, or
 * YD_ERR_INVALID_ARGUMENT when no such version is loaded; *name_known
 * reports whether the name is loaded (so the caller can tell model from
 * variant).
 */
int registry_acquire(struct registry *registry, const char *name, const char *variant,
                     struct registry_ref *ref, bool *name_known);

/* Retains the current version of entry index; YD_ERR_INVALID_ARGUMENT when it is unloaded. */
int registry_acquire_index(struct registry *registry, int index, struct registry_ref *ref);

/*
 * Drops the reference; a replaced version is freed with its last one. The
 * name and variant of ref must not be used afterwards.
 */
void registry_release(struct registry_ref *ref);

/* Whether model is the current version of its entry. */
bool registry_is_current(struct registry *registry, const yd_model *model);

/*
 * Admin operations on the loaded variants of model `name` (one variant, or
 * all of them when variant is NULL). Each returns YD_OK, or
 * YD_ERR_INVALID_ARGUMENT when nothing matches (unknown name or variant),
 * with the per-variant outcomes in results.
 *
 * reload: loads and warms each file beside the old version, then publishes
 *   it; a variant that fails keeps its old version.
 * load: loads unloaded entries of the name from their files and, when dir
 *   is not NULL, files of that name in dir that no entry has yet. Loaded
 *   variants are left "unchanged".
 * unload: stops serving the variants; requests holding them finish. When
 *   the default goes, the first remaining variant becomes the default.
 */
int registry_reload(struct registry *registry, const char *name, const char *variant,
                    struct registry_results *results);
int registry_load(struct registry *registry, const char *name, const char *variant,
                  const char *dir, struct registry_results *results);
int registry_unload(struct registry *registry, const char *name, const char *variant,
                    struct registry_results *results);

/*
 * Makes variant the default of model name. Returns YD_OK, or
 * YD_ERR_INVALID_ARGUMENT (with a message) when that variant is not loaded.
 */
int registry_set_default(struct registry *registry, const char *name, const char *variant,
                         yd_error *err);

/* Makes each model's first loaded variant (the lowest entry) its default, as at startup. */
void registry_reset_defaults(struct registry *registry);

/* Makes variant the default of every model that has it loaded; returns whether any has. */
bool registry_set_default_everywhere(struct registry *registry, const char *variant);

/* Returns whether the model directory file `file` (no folder) is still being written. */
typedef bool (*registry_writing_fn)(const char *file, void *user);

/*
 * Makes registry_sync skip the model directory files for which writing()
 * returns true, keeping any version of them already served, until a later
 * sync. NULL turns the check off.
 */
void registry_set_writing_check(struct registry *registry, registry_writing_fn writing,
                                void *user);

/*
 * Brings the registry in line with the files on disk:
 * - files (when not NULL, the configured model files): loads those not
 *   loaded, reloads those whose file changed since it was loaded, and
 *   unloads REGISTRY_SOURCE_FILE entries whose path is no longer listed;
 * - dir (when not NULL): loads new model files, reloads changed ones and
 *   unloads entries whose file was removed.
 * A file "changed" when its device, inode, size or modification time
 * differ. With revive (a SIGHUP), entries unloaded through the admin API are loaded
 * again when their file is listed. Without it (a watch rescan) they stay
 * unloaded, and a misnamed or failing file already logged unchanged is
 * logged again at debug level only.
 */
void registry_sync(struct registry *registry, const char *const *files, int file_count,
                   const char *dir, bool revive, struct registry_results *results);

/*
 * Describes the models as the GET /v1/models items: name, default_variant
 * and variants (variant, compression, version, loaded_at, source,
 * size_bytes, default). A NULL name describes every loaded model and
 * returns an array; otherwise the object of that model, or NULL when it is
 * not loaded. NULL also when out of memory.
 */
cJSON *registry_describe(struct registry *registry, const char *name);

#endif /* YOLOD_DAEMON_REGISTRY_H */
