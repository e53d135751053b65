/*
 * `yolod compress`: turn an ONNX export into a .yolod variant and print what
 * the variant changed. Each variant is one entry in `variants` below: a
 * function that rewrites the imported graph in place (precision, weights,
 * channels) and describes its settings for the file's provenance.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "distill.h"
#include "engine.h"
#include "log.h"
#include "model_file.h"
#include "prune.h"
#include "quantize.h"
#include "reconstruct.h"
#include "text.h"
#include "util.h"

struct compress_options {
    const char *model_path;
    const char *output_path;
    const char *variant;
    const char *calib_dir;   /* NULL when not given */
    const char *calib_method; /* minmax, percentile or entropy, NULL when not given */
    int calib_limit;          /* calibration images used, at most */
    int reconstruct;          /* 1 or 0 from --reconstruct, -1: the variant's default */
    double ridge;             /* relative ridge strength of the refit */
    int keep_float;           /* int8: layers kept fp32 by sensitivity analysis */
    int reconstruct_images;   /* calibration images the refit uses, at most */
    int sensitivity_images;   /* pruning: images each candidate step is measured on; 0: importance; -1: not given */
    int per_layer;            /* pruning: 1 takes about the same fraction from every layer; -1: not given */
    int distill_epochs;       /* pruning: distillation epochs, 0 off, -1: the default */
    double distill_lr;        /* peak learning rate of the distillation */
    double distill_features;  /* weight of the distillation's feature term, 0 for none */
    double distill_zoom;      /* random zoom of the distillation's images, 0 for none */
    const char *distill_option; /* name of the last distillation option given, for a warning */
    int distill_holdout;      /* calibration images distillation keeps out to pick its epoch; -1: an eighth */
    int threads;
};

/* Activation range method of int8 variants unless --calib-method sets another. */
#define DEFAULT_CALIB_METHOD "percentile"

/* Distillation epochs of prune variants unless --distill-epochs sets another count. */
#define DEFAULT_DISTILL_EPOCHS 24
#define STRINGIFY(x) #x
#define TO_STRING(x) STRINGIFY(x)

/* Result of a variant, for the summary table and the provenance. */
struct compress_outcome {
    char settings[512];          /* "key=value" words stored in the file */
    double reconstruction_error; /* relative output error; NaN when the method has none */
    double error_before_reconstruction; /* the same before the refit */
    int distill_holdout;         /* images distillation held out */
    int distill_kept_epoch;      /* the epoch whose weights it kept; 0: those from before */
};

/*
 * Rewrites model->graph in place for one variant. The graph is the fused,
 * planned import of the ONNX file and belongs to this command alone.
 * Returns 0 or a negative YD_ERR_* code with err filled.
 */
typedef int (*compress_fn)(yd_model *model, const struct compress_options *options,
                           struct compress_outcome *outcome, yd_error *err);

struct compress_variant {
    const char *name;
    const char *description;
    int needs_calibration;   /* 1: --calib DIR is required */
    int quantizes;           /* 1: makes int8 layers, so --calib-method and --keep-float apply */
    compress_fn apply;
};

/* Appends formatted "key=value" words to outcome->settings, cutting them at its end. */
static void __attribute__((format(printf, 2, 3)))
append_settings(struct compress_outcome *outcome, const char *format, ...)
{
    size_t used = strlen(outcome->settings);
    va_list ap;

    va_start(ap, format);
    vsnprintf(outcome->settings + used, sizeof outcome->settings - used, format, ap);
    va_end(ap);
}

static void set_precision(yd_graph *graph, yd_precision precision)
{
    for (int i = 0; i < graph->nnodes; i++)
        if (!graph->nodes[i].dead && graph->nodes[i].op == YD_OP_CONV)
            graph->nodes[i].conv.precision = precision;
}

static int apply_fp32(yd_model *model, const struct compress_options *options,
                      struct compress_outcome *outcome, yd_error *err)
{
    set_precision(model->graph, YD_PREC_FP32);
    snprintf(outcome->settings, sizeof outcome->settings, "weights=fp32");
    return 0;
}

static int apply_fp16(yd_model *model, const struct compress_options *options,
                      struct compress_outcome *outcome, yd_error *err)
{
    /* The writer rounds each weight to fp16; the loader widens it back. */
    set_precision(model->graph, YD_PREC_FP16);
    snprintf(outcome->settings, sizeof outcome->settings, "weights=fp16 compute=fp32 bias=fp32");
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Largest calibration image, width * height. */
#define CALIB_MAX_PIXELS 100000000

/* Frees a list from list_calibration_files(). */
static void free_names(char **names, int count)
{
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/*
 * Lists the JPEG and PNG file names of `dir` (not its subfolders, nor
 * hidden files) in name order: the files calibration decodes, first ones
 * first, and the digest covers. Entries that are not regular files (or
 * links to one) are left out, because opening a FIFO would wait for a
 * writer. With report_skipped, each one is logged as a warning.
 */
static int list_calibration_files(const char *dir, int report_skipped, char ***out, int *count,
                                  yd_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *entry;
    char **names = NULL;
    int nnames = 0, nskipped = 0;
    char first_skipped[512] = "";

    *out = NULL;
    *count = 0;
    if (!d)
        return yd_error_set(err, YD_ERR_IO, "cannot open calibration folder '%s': %m", dir);
    while ((entry = readdir(d)) != NULL) {
        const char *dot = strrchr(entry->d_name, '.');
        struct stat st;
        char **grown;
        int stat_failed;

        if (entry->d_name[0] == '.' || !dot || (strcasecmp(dot, ".jpg") != 0 &&
            strcasecmp(dot, ".jpeg") != 0 && strcasecmp(dot, ".png") != 0))
            continue;
        stat_failed = fstatat(dirfd(d), entry->d_name, &st, 0) != 0;
        if (stat_failed || !S_ISREG(st.st_mode)) {
            char why[512];

            if (stat_failed)
                snprintf(why, sizeof why, "%s: %s", entry->d_name, strerror(errno));
            else
                snprintf(why, sizeof why, "%s: it is %s, not a regular file", entry->d_name,
                         yd_file_type_name(st.st_mode));
            if (report_skipped)
                log_printf(YD_LOG_WARN, "skipping calibration image %s/%s", dir, why);
            if (nskipped++ == 0)
                snprintf(first_skipped, sizeof first_skipped, "%s", why);
            continue;
        }
        grown = realloc(names, (size_t)(nnames + 1) * sizeof *names);
        if (!grown || !(grown[nnames] = strdup(entry->d_name))) {
            free_names(grown ? grown : names, nnames);
            closedir(d);
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory listing '%s'", dir);
        }
        names = grown;
        nnames++;
    }
    closedir(d);
    if (nnames == 0 && nskipped > 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "no JPEG or PNG file in calibration"
                            " folder '%s' can be read: none of its %d entries named *.jpg,"
                            " *.jpeg or *.png is a regular file that opens (%s)", dir, nskipped,
                            first_skipped);
    if (nnames == 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "no JPEG or PNG file in calibration"
                            " folder '%s'; subfolders are not searched, so point --calib at the"
                            " folder that holds the images", dir);
    qsort(names, (size_t)nnames, sizeof *names, compare_names);
    *out = names;
    *count = nnames;
    return YD_OK;
}

/*
 * Replaces *image by its letterbox at the model's input size: the pixels
 * every calibration step runs the network on, at a fixed 1.2 MB for a 640
 * input where a 12-megapixel photo takes 36 MB decoded. The steps letterbox
 * again, which leaves an image of the input size as it is.
 */
static int shrink_to_input(const yd_model *model, yd_image *image, yd_error *err)
{
    yd_letterbox lb;
    yd_image boxed = {.width = model->input_width, .height = model->input_height};

    if (image->width == boxed.width && image->height == boxed.height)
        return YD_OK;
    yd_letterbox_compute_rect(image->width, image->height, boxed.width, boxed.height, &lb);
    boxed.rgb = malloc((size_t)boxed.width * boxed.height * 3);
    if (!boxed.rgb)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory letterboxing an image");
    if (yd_letterbox_rgb8(image, &lb, boxed.rgb, err) != YD_OK) {
        free(boxed.rgb);
        return err->code;
    }
    yd_image_free(image);
    *image = boxed;
    return YD_OK;
}

/* Decodes up to `limit` JPEG or PNG files of `dir`, in name order, letterboxed for model. */
static int load_calibration(const yd_model *model, const char *dir, int limit, yd_image **out,
                            int *count, yd_error *err)
{
    char **names;
    int nnames, loaded = 0, rc;
    yd_image *images;

    rc = list_calibration_files(dir, 1, &names, &nnames, err);
    if (rc != YD_OK)
        return rc;
    images = calloc((size_t)nnames, sizeof *images);
    for (int i = 0; images && i < nnames && loaded < limit; i++) {
        char path[PATH_MAX];
        yd_error ignored;

        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (yd_image_load(path, CALIB_MAX_PIXELS, &images[loaded], &ignored) == YD_OK) {
            rc = shrink_to_input(model, &images[loaded], err);
            if (rc != YD_OK) {
                yd_image_free(&images[loaded]);
                break;
            }
            loaded++;
        } else {
            log_printf(YD_LOG_WARN, "skipping calibration image %s: %s", path, ignored.message);
        }
    }
    free_names(names, nnames);
    if (!images)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading calibration images");
    if (rc != YD_OK) {
        for (int i = 0; i < loaded; i++)
            yd_image_free(&images[i]);
        free(images);
        return rc;
    }
    if (loaded == 0) {
        free(images);
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "no JPEG or PNG image in '%s' could be"
                            " decoded", dir);
    }
    *out = images;
    *count = loaded;
    return YD_OK;
}

static void calibration_progress(int pass, int done, int total, void *user)
{
    if (done != total && done % 16 != 0)
        return;
    if (pass == 2)
        fprintf(stderr, "sensitivity analysis: node %d of %d\n", done, total);
    else
        fprintf(stderr, "calibrating %s: image %d of %d\n", pass == 0 ? "ranges" : "histograms",
                done, total);
}

static void reconstruction_progress(int done, int total, void *user)
{
    if (done == total || done % 16 == 0)
        fprintf(stderr, "reconstructing: layer %d of %d\n", done, total);
}

/*
 * Refits every layer of the compressed model against the float model it
 * came from (loaded again from the source file) on the calibration images.
 */
static int reconstruct_variant(yd_model *model, const struct compress_options *options,
                               const yd_image *images, int count, struct compress_outcome *outcome,
                               yd_error *err)
{
    yd_reconstruct_options r = {.ridge = options->ridge, .threads = options->threads,
                                .progress = reconstruction_progress};
    yd_reconstruct_report report;
    yd_model *teacher = NULL;
    int rc = yd_model_load(options->model_path, NULL, &teacher, err);

    if (rc != YD_OK)
        return rc;
    /* The refit samples about 2K rows per layer whatever the image count;
     * more images cost one partial inference each per layer. */
    rc = yd_reconstruct(model, teacher, images, count < options->reconstruct_images ? count :
                        options->reconstruct_images, &r, &report, err);
    yd_model_release(teacher);
    if (rc == YD_OK) {
        outcome->reconstruction_error = report.error_after;
        outcome->error_before_reconstruction = report.error_before;
    }
    return rc;
}

static void distillation_progress(const yd_distill_epoch *e, void *user)
{
    if (e->epoch == 0) {
        fprintf(stderr, "distilling: before training, held out: loss %.4f, agreement %.4f\n",
                e->holdout, e->agreement);
        return;
    }
    fprintf(stderr, "distilling: epoch %d of %d, loss %.4f (classes %.4f, boxes %.4f", e->epoch,
            e->epochs, e->loss, e->loss_cls, e->loss_box);
    if (e->loss_features > 0)
        fprintf(stderr, ", features %.4f", e->loss_features);
    fprintf(stderr, ")");
    if (!isnan(e->holdout))
        fprintf(stderr, ", held out: loss %.4f, agreement %.4f", e->holdout, e->agreement);
    fprintf(stderr, ", %.0f s\n", e->elapsed_ms / 1000);
}

/*
 * Trains the layers pruning changed against the float model they came from
 * (loaded again from the source file) on the calibration images.
 */
static int distill_variant(yd_model *model, const struct compress_options *options,
                           const yd_image *images, int count, struct compress_outcome *outcome,
                           yd_error *err)
{
    yd_distill_options d = {.epochs = options->distill_epochs, .learning_rate = options->distill_lr,
                            .batch = 8, .flip = 1, .seed = 1, .threads = options->threads,
                            .holdout = options->distill_holdout >= 0 ? options->distill_holdout
                                                                     : count / 8,
                            .pruned_only = 1,
                            .bias_lr_scale = 10,
                            .feature_weight = options->distill_features,
                            .zoom = options->distill_zoom,
                            .plain_epochs = options->distill_epochs / 6,
                            .progress = distillation_progress};
    yd_distill_report report;
    yd_model *teacher = NULL;
    int rc = yd_model_load(options->model_path, NULL, &teacher, err);


    if (rc != YD_OK)
        return rc;
    rc = yd_distill(model, teacher, images, count, &d, &report, err);
    yd_model_release(teacher);
    if (rc == YD_OK && d.holdout > 0 && report.best_epoch == 0)
        fprintf(stderr, "distilling: no epoch agreed with the teacher on the held-out images "
                "better than before (%.4f); kept the weights from before distillation\n",
                report.agreement_before);
    else if (rc == YD_OK && d.holdout > 0)
        fprintf(stderr, "distilling: kept epoch %d, held-out agreement %.4f (%.4f before)\n",
                report.best_epoch, report.agreement_best, report.agreement_before);
    outcome->distill_holdout = d.holdout;
    outcome->distill_kept_epoch = d.holdout > 0 ? report.best_epoch : report.epochs;
    return rc;
}

/* Sets *method from its --calib-method name, or returns -1 for an unknown name. */
static int parse_calib_method(const char *name, yd_calib_method *method)
{
    if (strcmp(name, "minmax") == 0)
        *method = YD_CALIB_MINMAX;
    else if (strcmp(name, "percentile") == 0)
        *method = YD_CALIB_PERCENTILE;
    else if (strcmp(name, "entropy") == 0)
        *method = YD_CALIB_ENTROPY;
    else
        return -1;
    return 0;
}

/*
 * Quantizes the model to int8 and, when options->reconstruct is 1, refits
 * it. The settings it stores leave out the reconstruction word, which the
 * caller adds once for every step.
 */
static int quantize_model(yd_model *model, const struct compress_options *options,
                          struct compress_outcome *outcome, yd_error *err)
{
    yd_quant_options q = {.percentile = 99.99, .threads = options->threads,
                          .keep_float_count = options->keep_float,
                          .progress = calibration_progress};
    yd_image *images = NULL;
    int count = 0, rc;

    if (parse_calib_method(options->calib_method, &q.method) != 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "unknown calibration method '%s' (expected minmax, percentile or entropy)",
                            options->calib_method);

    rc = load_calibration(model, options->calib_dir, options->calib_limit, &images, &count, err);
    if (rc != YD_OK)
        return rc;
    if (count < 16)
        log_printf(YD_LOG_WARN, "calibrating on only %d images from %s; ranges from so few are "
                   "unreliable (100 or more is typical)", count, options->calib_dir);
    rc = yd_quantize_model(model, images, count, &q, err);
    /* Off by default for int8 alone: on yolov8n the refit did not lower
     * the error on held-out images enough to move mAP. */
    if (rc == YD_OK && options->reconstruct == 1)
        rc = reconstruct_variant(model, options, images, count, outcome, err);
    snprintf(outcome->settings, sizeof outcome->settings,
             "weights=int8-per-channel activations=uint8-per-tensor calibration=%s images=%d "
             "keep-float=%d", options->calib_method, count, options->keep_float);
    for (int i = 0; i < count; i++)
        yd_image_free(&images[i]);
    free(images);
    return rc;
}

static int apply_int8(yd_model *model, const struct compress_options *options,
                      struct compress_outcome *outcome, yd_error *err)
{
    int rc = quantize_model(model, options, outcome, err);

    append_settings(outcome, " reconstruction=%s", options->reconstruct == 1 ? "yes" : "no");
    return rc;
}

/*
 * Parses the P of a requested "prune<P>" or "prune<P>-int8" variant name: an
 * integer from 1 to 90 without sign or leading zero. Returns 0 when invalid.
 */
static int prune_percent(const char *requested)
{
    const char *digits = requested + strlen("prune");
    char *end;
    long percent;

    if (strncmp(requested, "prune", strlen("prune")) != 0 || *digits < '1' || *digits > '9')
        return 0;
    percent = strtol(digits, &end, 10);
    if (percent < 1 || percent > 90 || (*end != '\0' && strcmp(end, "-int8") != 0))
        return 0;
    return (int)percent;
}

static void prune_progress(int done, int total, void *user)
{
    if (done == total || done % 16 == 0)
        fprintf(stderr, "calibrating channel importance: image %d of %d\n", done, total);
}

/*
 * Removes P percent of the FLOPs by channel pruning (P from the variant
 * name) and prints the FLOPs before and after. Every prune variant finishes
 * its float model here, before any later step such as quantization.
 */
/* Records, for the refit, which teacher channel each kept output channel is. */
static int record_sources(yd_model *model, const yd_prune_report *report, yd_error *err)
{
    for (int i = 0; i < report->nlayers; i++) {
        const yd_prune_layer *layer = &report->layers[i];
        yd_conv_params *conv = &model->graph->nodes[layer->node].conv;

        free(conv->source_channels);
        conv->source_channels = NULL;
        if (layer->kept_out_c == layer->original_out_c)
            continue;
        conv->source_channels = malloc((size_t)layer->kept_out_c * sizeof *conv->source_channels);
        if (!conv->source_channels)
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory recording pruned channels");
        memcpy(conv->source_channels, layer->kept_out_channels,
               (size_t)layer->kept_out_c * sizeof *conv->source_channels);
    }
    return YD_OK;
}

/*
 * Prunes the model; with `refit`, then refits it against the float model;
 * then distills it when options->distill_epochs is above 0. Without
 * distillation, prune<P>-int8 refits once, after quantizing, instead.
 * Like quantize_model(), leaves the reconstruction word to the caller.
 */
static int prune_model(yd_model *model, const struct compress_options *options, int refit,
                       struct compress_outcome *outcome, yd_error *err)
{
    int percent = prune_percent(options->variant);
    yd_prune_options p = {.flops_fraction = percent / 100.0, .threads = options->threads,
                          .sensitivity_images = options->sensitivity_images, .compensate_bias = 1,
                          .per_layer = options->per_layer, .progress = prune_progress};
    yd_prune_report report = {0};
    yd_image *images = NULL;
    const char *ranking = options->per_layer              ? "per-layer-importance"
                          : options->sensitivity_images > 0 ? "measured-head-change"
                                                            : "importance-per-flop";
    int count = 0, rc;

    rc = load_calibration(model, options->calib_dir, options->calib_limit, &images, &count, err);
    if (rc != YD_OK)
        return rc;
    rc = yd_prune_model(model, images, count, &p, &report, err);
    if (rc == YD_OK)
        rc = record_sources(model, &report, err);
    if (rc == YD_OK && refit)
        rc = reconstruct_variant(model, options, images, count, outcome, err);
    if (rc == YD_OK && options->distill_epochs > 0)
        rc = distill_variant(model, options, images, count, outcome, err);
    for (int i = 0; i < count; i++)
        yd_image_free(&images[i]);
    free(images);
    if (rc != YD_OK) {
        yd_prune_report_free(&report);
        return rc;
    }

    printf("%-16s %.2f -> %.2f GFLOPs, %.1f%% removed (requested %d%%), %d of %d channel groups\n",
           "pruned", report.flops_before / 1e9, report.flops_after / 1e9,
           100.0 * (1.0 - report.flops_after / report.flops_before), percent,
           report.removed_groups, report.groups);
    snprintf(outcome->settings, sizeof outcome->settings,
             "prune=channels ranking=%s bias-compensation=yes flops-requested=%d%% "
             "flops-removed=%.1f%% images=%d distill-epochs=%d distill-lr=%g",
             ranking, percent,
             100.0 * (1.0 - report.flops_after / report.flops_before), count,
             options->distill_epochs, options->distill_lr);
    if (options->distill_epochs > 0)
        append_settings(outcome, " distill-layers=pruned distill-features=%g distill-zoom=%g"
                        " distill-holdout=%d distill-kept-epoch=%d", options->distill_features,
                        options->distill_zoom, outcome->distill_holdout, outcome->distill_kept_epoch);
    yd_prune_report_free(&report);
    return YD_OK;
}

static int prune_variant(yd_model *model, const struct compress_options *options,
                         struct compress_outcome *outcome, yd_error *err)
{
    int refit = options->reconstruct != 0;
    int rc = prune_model(model, options, refit, outcome, err);

    append_settings(outcome, " reconstruction=%s", refit ? "yes" : "no");
    return rc;
}

static int apply_prune_int8(yd_model *model, const struct compress_options *options,
                            struct compress_outcome *outcome, yd_error *err)
{
    char prune_settings[sizeof outcome->settings];
    struct compress_options int8_options = *options;
    int distilled = options->distill_epochs > 0;
    int refit_after_pruning = distilled && options->reconstruct != 0;
    int rc = prune_model(model, options, refit_after_pruning, outcome, err);

    if (rc != YD_OK)
        return rc;
    snprintf(prune_settings, sizeof prune_settings, "%s", outcome->settings);
    /* Without distillation, one refit after quantizing covers both steps
     * (on by default). A distilled model is not refit again: the refit
     * would pull each layer back toward the teacher's own features. */
    int8_options.reconstruct = !distilled && options->reconstruct != 0;
    rc = quantize_model(model, &int8_options, outcome, err);
    if (rc == YD_OK) {
        char int8_settings[sizeof outcome->settings];

        /* One reconstruction word for both steps, because at most one of
         * them refits: pruning when distill-epochs is above 0, else int8. */
        snprintf(int8_settings, sizeof int8_settings, "%s", outcome->settings);
        snprintf(outcome->settings, sizeof outcome->settings, "%s", prune_settings);
        append_settings(outcome, " %s reconstruction=%s", int8_settings,
                        refit_after_pruning || int8_options.reconstruct ? "yes" : "no");
    }
    return rc;
}

/* A name containing "<P>" matches "prune<P>" style requests; see prune_percent(). */
static const struct compress_variant variants[] = {
    {"fp32", "fp32 weights, as exported", 0, 0, apply_fp32},
    {"fp16", "fp16 weight storage, computed in fp32 (half the file size)", 0, 0, apply_fp16},
    {"int8", "int8 weights per output channel, uint8 activations per tensor", 1, 1, apply_int8},
    {"prune<P>", "remove P percent (1 to 90) of the FLOPs by channel pruning, fp32", 1, 0,
     prune_variant},
    {"prune<P>-int8", "prune<P>, then int8 as above", 1, 1, apply_prune_int8},
};

#define VARIANT_COUNT ((int)(sizeof variants / sizeof variants[0]))

static const char compress_help[] =
    "Usage: yolod compress MODEL.onnx --variant NAME -o OUT.yolod [--calib DIR]\n"
    "\n"
    "Imports an Ultralytics YOLOv8 ONNX export, converts it to the variant NAME and\n"
    "writes a .yolod model file, which every command loads like the ONNX\n"
    "file. Prints a summary: size, GFLOPs and the precision of each layer group.\n"
    "\n"
    "Options:\n"
    "  --variant NAME           the variant to make (see below)\n"
    "  -o, --output FILE        the .yolod file to write; replaced atomically, so an\n"
    "                           existing FILE must be a regular file, not MODEL; a\n"
    "                           symbolic link is replaced, its target left as it is\n"
    "  --calib DIR              folder of unlabelled JPEG or PNG images, for variants\n"
    "                           that calibrate\n"
    "  --calib-method NAME      activation ranges: minmax, percentile (99.99 percent) or\n"
    "                           entropy (default percentile)\n"
    "  --calib-limit N          calibration images used, at most (default 128)\n"
    "  --reconstruct yes|no     refit every layer against the float model on the\n"
    "                           calibration images (default: yes when pruning,\n"
    "                           no for int8 alone)\n"
    "  --keep-float N           int8: keep the N layers whose quantization alone\n"
    "                           changes the head outputs most in fp32, fewer than\n"
    "                           the model's convolutions (default 0)\n"
    "  --reconstruct-images N   calibration images the refit uses, at most (default 32)\n"
    "  --sensitivity-images N   pruning: calibration images each candidate step's\n"
    "                           effect on the head is measured on; 0 ranks channels\n"
    "                           by weight norm x activation per FLOP instead (default 4)\n"
    "  --prune-ratio global|per-layer\n"
    "                           pruning: one ranking over all layers, or about the\n"
    "                           same fraction of channels from every layer, ranked\n"
    "                           inside each by weight norm x activation (default global)\n"
    "  --ridge X                strength of the refit's pull toward the original\n"
    "                           weights, relative to the data (default 0.1)\n"
    "  --distill-epochs N       pruning: train the layers pruning changed so that the\n"
    "                           head outputs match the float model's on the\n"
    "                           calibration images, for N epochs, after the refit\n"
    "                           and before int8; 0 turns it off (default " TO_STRING(DEFAULT_DISTILL_EPOCHS) ")\n"
    "  --distill-lr X           peak Adam learning rate of the distillation\n"
    "                           (default 3e-3)\n"
    "  --distill-features W     pruning: weight of the distillation's feature term,\n"
    "                           from 0 to 1000: the outputs of the trained layers and\n"
    "                           the layers after them match the float model's channels\n"
    "                           they were kept from (relative squared error, averaged\n"
    "                           over layers); 0 turns it off (default 10). The\n"
    "                           held-out loss counts the class and box terms only\n"
    "  --distill-zoom Z         pruning: distillation zooms each image by a random\n"
    "                           factor from 1 - Z to 1 + Z (Z at most 0.9) and moves it\n"
    "                           by up to a tenth of its size, except in the last sixth\n"
    "                           of the epochs (rounded down, so none below 6 epochs);\n"
    "                           0 turns it off (default 0.25)\n"
    "  --distill-holdout N      pruning: keep the last N calibration images (by file\n"
    "                           name, after --calib-limit) out of distillation; after\n"
    "                           each epoch the student's detections on them are\n"
    "                           scored against the float model's, and the best\n"
    "                           epoch is kept, or the weights from before\n"
    "                           distillation when no epoch beats them (default: an\n"
    "                           eighth of the images; 0 keeps the last epoch)\n"
    "  --threads N              OpenMP threads (default 0 = all cores)\n"
    "  --log-level LEVEL        debug, info, warn or error (default warn)\n"
    "\n"
    "Variants:\n";

const char *command_compress_help_text(void)
{
    return compress_help;
}

void command_compress_print_help(void)
{
    fputs(compress_help, stdout);
    for (int i = 0; i < VARIANT_COUNT; i++)
        printf("  %-24s %s%s\n", variants[i].name, variants[i].description,
               variants[i].needs_calibration ? " (needs --calib)" : "");
    printf("\nExit status: 0 on success, 1 if the model cannot be read or written, "
           "2 for invalid usage.\n");
}

static const struct compress_variant *find_variant(const char *name)
{
    for (int i = 0; i < VARIANT_COUNT; i++) {
        const char *pattern = variants[i].name;

        if (strcmp(pattern, name) == 0)
            return &variants[i];
        if (strstr(pattern, "<P>") && prune_percent(name) &&
            (strstr(pattern, "-int8") != NULL) == (strstr(name, "-int8") != NULL))
            return &variants[i];
    }
    return NULL;
}

static void print_variant_names(FILE *out)
{
    for (int i = 0; i < VARIANT_COUNT; i++)
        fprintf(out, "%s%s", i ? ", " : "", variants[i].name);
}

static int parse_compress_args(int argc, char **argv, struct compress_options *options)
{
    char name[64], err[512];
    const char *value;
    int log_level = YD_LOG_WARN;

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_compress_print_help();
            exit(0);
        }
        if (strcmp(argv[i], "-o") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "yolod compress: option '-o' needs a value\n");
                return EXIT_USAGE;
            }
            if (options->output_path) {
                fprintf(stderr, "yolod compress: output given twice ('%s', '%s'); give one of -o"
                        " and --output once\n", options->output_path, argv[i + 1]);
                return EXIT_USAGE;
            }
            options->output_path = argv[i + 1];
            i += 2;
            continue;
        }
        if (strncmp(argv[i], "--", 2) != 0) {
            if (options->model_path) {
                fprintf(stderr, "yolod compress: more than one model given ('%s', '%s')\n",
                        options->model_path, argv[i]);
                return EXIT_USAGE;
            }
            options->model_path = argv[i++];
            continue;
        }
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            fprintf(stderr, "yolod compress: %s\n", err);
            return EXIT_USAGE;
        }
        if (strcmp(name, "variant") == 0) {
            options->variant = value;
        } else if (strcmp(name, "output") == 0) {
            if (options->output_path) {
                fprintf(stderr, "yolod compress: output given twice ('%s', '%s'); give one of -o"
                        " and --output once\n", options->output_path, value);
                return EXIT_USAGE;
            }
            options->output_path = value;
        } else if (strcmp(name, "calib") == 0) {
            options->calib_dir = value;
        } else if (strcmp(name, "ridge") == 0) {
            char *end;

            options->ridge = strtod(value, &end);
            if (!text_is_decimal_number(value) || !(options->ridge > 0) || options->ridge > 1e6) {
                fprintf(stderr, "yolod compress: invalid --ridge '%s' (expected a number above 0)\n", value);
                return EXIT_USAGE;
            }
        } else if (strcmp(name, "reconstruct") == 0) {
            if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
                fprintf(stderr, "yolod compress: invalid --reconstruct '%s' (expected yes or no)\n", value);
                return EXIT_USAGE;
            }
            options->reconstruct = strcmp(value, "yes") == 0;
        } else if (strcmp(name, "distill-features") == 0 || strcmp(name, "distill-zoom") == 0) {
            int zoom = strcmp(name, "distill-zoom") == 0;
            double limit = zoom ? 0.9 : 1000;
            char *end;
            double v = strtod(value, &end);

            if (!text_is_decimal_number(value) || !(v >= 0) || v > limit) {
                fprintf(stderr, "yolod compress: invalid --%s '%s' (expected a number from 0 to %g)\n",
                        name, value, limit);
                return EXIT_USAGE;
            }
            if (zoom)
                options->distill_zoom = v;
            else
                options->distill_features = v;
            options->distill_option = zoom ? "distill-zoom" : "distill-features";
        } else if (strcmp(name, "distill-lr") == 0) {
            char *end;

            options->distill_option = "distill-lr";
            options->distill_lr = strtod(value, &end);
            if (!text_is_decimal_number(value) || !(options->distill_lr > 0) || options->distill_lr > 1) {
                fprintf(stderr, "yolod compress: invalid --distill-lr '%s' (expected a number above 0, "
                        "at most 1)\n", value);
                return EXIT_USAGE;
            }
        } else if (strcmp(name, "prune-ratio") == 0) {
            if (strcmp(value, "global") != 0 && strcmp(value, "per-layer") != 0) {
                fprintf(stderr, "yolod compress: invalid --prune-ratio '%s' (expected global or "
                        "per-layer)\n", value);
                return EXIT_USAGE;
            }
            options->per_layer = strcmp(value, "per-layer") == 0;
        } else if (strcmp(name, "calib-method") == 0) {
            yd_calib_method method;

            if (parse_calib_method(value, &method) != 0) {
                fprintf(stderr, "yolod compress: invalid --calib-method '%s' (expected minmax, "
                        "percentile or entropy)\n", value);
                return EXIT_USAGE;
            }
            options->calib_method = value;
        } else if (strcmp(name, "calib-limit") == 0 || strcmp(name, "threads") == 0 ||
                   strcmp(name, "reconstruct-images") == 0 || strcmp(name, "keep-float") == 0 ||
                   strcmp(name, "sensitivity-images") == 0 || strcmp(name, "distill-epochs") == 0 ||
                   strcmp(name, "distill-holdout") == 0) {
            char *end;
            long v = strtol(value, &end, 10);
            int min = strcmp(name, "threads") == 0 || strcmp(name, "keep-float") == 0 ||
                      strcmp(name, "sensitivity-images") == 0 ||
                      strcmp(name, "distill-epochs") == 0 || strcmp(name, "distill-holdout") == 0 ? 0 : 1;

            /* strtol would also take leading spaces and a plus sign. */
            if (!isdigit((unsigned char)value[0]) || *end != '\0' || v < min || v > 100000) {
                fprintf(stderr, "yolod compress: invalid --%s '%s' (expected an integer from %d to "
                        "100000)\n", name, value, min);
                return EXIT_USAGE;
            }
            if (strcmp(name, "calib-limit") == 0)
                options->calib_limit = (int)v;
            else if (strcmp(name, "threads") == 0)
                options->threads = (int)v;
            else if (strcmp(name, "keep-float") == 0)
                options->keep_float = (int)v;
            else if (strcmp(name, "sensitivity-images") == 0)
                options->sensitivity_images = (int)v;
            else if (strcmp(name, "distill-epochs") == 0)
                options->distill_epochs = (int)v;
            else if (strcmp(name, "distill-holdout") == 0) {
                options->distill_holdout = (int)v;
                options->distill_option = "distill-holdout";
            }
            else
                options->reconstruct_images = (int)v;
        } else if (strcmp(name, "log-level") == 0) {
            log_level = log_parse_level(value);
            if (log_level < 0) {
                fprintf(stderr, "yolod compress: invalid --log-level '%s' (expected debug, info, "
                        "warn or error)\n", value);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "yolod compress: unknown option '--%s'; see 'yolod help compress'\n", name);
            return EXIT_USAGE;
        }
    }
    log_set_level(log_level);

    if (!options->model_path) {
        fprintf(stderr, "yolod compress: no model given; usage: yolod compress MODEL.onnx "
                "--variant NAME -o OUT.yolod\n");
        return EXIT_USAGE;
    }
    if (!options->variant) {
        fprintf(stderr, "yolod compress: missing --variant NAME (supported: ");
        print_variant_names(stderr);
        fprintf(stderr, ")\n");
        return EXIT_USAGE;
    }
    if (!options->output_path || !options->output_path[0]) {
        fprintf(stderr, "yolod compress: missing -o OUT.yolod\n");
        return EXIT_USAGE;
    }
    return 0;
}

/*
 * Rejects a --keep-float count that leaves no layer to quantize: the file
 * would be labelled int8 with every layer fp32, after a sensitivity
 * analysis that measured each layer for nothing.
 */
static int check_keep_float(const struct compress_options *options, const yd_graph *graph)
{
    int convolutions = 0;

    for (int i = 0; i < graph->nnodes; i++)
        if (!graph->nodes[i].dead && graph->nodes[i].op == YD_OP_CONV)
            convolutions++;
    if (options->keep_float < convolutions)
        return 0;
    fprintf(stderr, "yolod compress: invalid --keep-float '%d' (expected fewer than %d, the "
            "convolutions of '%s'; to keep every layer in fp32, use --variant fp32)\n",
            options->keep_float, convolutions, options->model_path);
    return -1;
}

/*
 * Rejects an -o path that renaming the new file over it would damage: an
 * existing FIFO, device, socket or directory, or the input model itself.
 * stat() follows symbolic links, so a link is judged by its target. A link
 * to a regular file is accepted because rename() replaces the link itself
 * and leaves its target unchanged, which is how atomic replacement works.
 */
static int check_output_path(const struct compress_options *options)
{
    struct stat output, input;
    char folder[PATH_MAX];
    const char *slash = strrchr(options->output_path, '/');

    /* The file is written beside its path and renamed, so its folder must
     * take a new file: checked now, not after minutes of compression. */
    if (slash)
        snprintf(folder, sizeof folder, "%.*s",
                 slash == options->output_path ? 1 : (int)(slash - options->output_path),
                 options->output_path);
    else
        snprintf(folder, sizeof folder, ".");
    if (access(folder, W_OK | X_OK) != 0) {
        fprintf(stderr, "yolod compress: cannot write '%s': folder '%s': %s\n",
                options->output_path, folder, strerror(errno));
        return -1;
    }
    if (stat(options->output_path, &output) != 0)
        return 0;
    if (!S_ISREG(output.st_mode)) {
        fprintf(stderr, "yolod compress: cannot write '%s': it is %s, not a regular file\n",
                options->output_path, yd_file_type_name(output.st_mode));
        return -1;
    }
    if (stat(options->model_path, &input) == 0 && input.st_dev == output.st_dev &&
        input.st_ino == output.st_ino) {
        fprintf(stderr, "yolod compress: cannot write '%s': it is the input model '%s'; choose "
                "another -o path\n", options->output_path, options->model_path);
        return -1;
    }
    return 0;
}

/*
 * SHA-256 over the calibration files compress used: the first `limit`
 * JPEG or PNG files of the folder in name order that decode (as
 * load_calibration skips the others), each as its name, a NUL and its
 * contents. The same images under the same names give the same digest on
 * any machine.
 */
static int calibration_digest(const char *dir_path, int limit, char hex[65], yd_error *err)
{
    char **names, path[PATH_MAX];
    int n, rc;
    yd_sha256 sha;
    uint8_t digest[32], buf[1 << 16];

    /* load_calibration() already logged the entries it skipped. */
    rc = list_calibration_files(dir_path, 0, &names, &n, err);
    if (rc != YD_OK)
        return rc;
    yd_sha256_init(&sha);
    for (int i = 0, used = 0; i < n && used < limit; i++) {
        yd_image image;
        yd_error ignored;
        FILE *f;
        size_t got;
        int fd;

        snprintf(path, sizeof path, "%s/%s", dir_path, names[i]);
        if (yd_image_load(path, CALIB_MAX_PIXELS, &image, &ignored) != YD_OK)
            continue;
        yd_image_free(&image);
        used++;
        fd = yd_open_regular_file(path, err);
        if (fd < 0) {
            rc = fd;
            break;
        }
        f = fdopen(fd, "rb");
        if (!f) {
            rc = yd_error_set(err, YD_ERR_IO, "cannot open '%s': %m", path);
            close(fd);
            break;
        }
        yd_sha256_update(&sha, names[i], strlen(names[i]) + 1);
        while ((got = fread(buf, 1, sizeof buf, f)) > 0)
            yd_sha256_update(&sha, buf, got);
        fclose(f);
    }
    free_names(names, n);
    if (rc != YD_OK)
        return rc;
    yd_sha256_final(&sha, digest);
    yd_sha256_hex(digest, hex);
    return YD_OK;
}

/* The Ultralytics layer a node belongs to: "model.N" in "/model.N/...", else "other". */
static void layer_group(const char *node_name, char *group, size_t size)
{
    const char *at = strstr(node_name, "model.");
    size_t n = 6;

    if (!at) {
        snprintf(group, size, "other");
        return;
    }
    while (at[n] >= '0' && at[n] <= '9')
        n++;
    snprintf(group, size, "%.*s", (int)n, at);
}

/* Bytes a convolution's weights, scales and bias take in the file. */
static size_t conv_file_bytes(const yd_conv_params *p)
{
    size_t n = (size_t)p->out_c * p->in_c * p->kernel_h * p->kernel_w;
    size_t bias = (size_t)p->out_c * sizeof(float);

    switch (p->precision) {
    case YD_PREC_FP16: return 2 * n + bias;
    case YD_PREC_INT8: return n + 2 * bias;
    default: return 4 * n + bias;
    }
}

struct group_row {
    char name[32];
    int count[3];   /* convolutions per yd_precision */
    size_t bytes;
};

static long group_index(const char *name)
{
    return strncmp(name, "model.", 6) == 0 ? strtol(name + 6, NULL, 10) : LONG_MAX;
}

static int compare_groups(const void *a, const void *b)
{
    long x = group_index(((const struct group_row *)a)->name);
    long y = group_index(((const struct group_row *)b)->name);

    return (x > y) - (x < y);
}

static void print_groups(const yd_graph *graph)
{
    struct group_row rows[64];
    int nrows = 0, total[3] = {0, 0, 0};
    size_t total_bytes = 0;

    for (int i = 0; i < graph->nnodes; i++) {
        const yd_node *node = &graph->nodes[i];
        char group[32];
        int r;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        layer_group(node->name, group, sizeof group);
        for (r = 0; r < nrows && strcmp(rows[r].name, group) != 0; r++)
            ;
        if (r == nrows) {
            if (nrows == 64)
                r = 63; /* more groups than rows: the last row collects the rest */
            else
                nrows++;
            memset(&rows[r], 0, sizeof rows[r]);
            snprintf(rows[r].name, sizeof rows[r].name, "%s", r == 63 ? "other" : group);
        }
        rows[r].count[node->conv.precision]++;
        rows[r].bytes += conv_file_bytes(&node->conv);
        total[node->conv.precision]++;
        total_bytes += conv_file_bytes(&node->conv);
    }

    /* Layer order: model.N by N, then "other". */
    qsort(rows, (size_t)nrows, sizeof rows[0], compare_groups);
    printf("\n%-12s %6s %6s %6s %6s %14s\n", "layer group", "convs", "fp32", "fp16", "int8",
           "weight bytes");
    for (int r = 0; r < nrows; r++)
        printf("%-12s %6d %6d %6d %6d %14zu\n", rows[r].name,
               rows[r].count[0] + rows[r].count[1] + rows[r].count[2], rows[r].count[0],
               rows[r].count[1], rows[r].count[2], rows[r].bytes);
    printf("%-12s %6d %6d %6d %6d %14zu\n", "total", total[0] + total[1] + total[2], total[0],
           total[1], total[2], total_bytes);
}

static void print_summary(const struct compress_options *options, const yd_model *model,
                          const yd_model_provenance *prov, const struct compress_outcome *outcome,
                          size_t file_size, double elapsed_ms)
{
    printf("%-16s %s\n", "variant", prov->variant);
    printf("%-16s %s\n", "output", options->output_path);
    printf("%-16s %zu bytes (%.2f MiB)\n", "size", file_size, (double)file_size / (1 << 20));
    printf("%-16s %s (sha256 %s)\n", "source", options->model_path, prov->source_sha256);
    printf("%-16s %s\n", "settings", prov->settings);
    if (prov->calibration_sha256[0])
        printf("%-16s %s (sha256 of the calibration images)\n", "calibration", prov->calibration_sha256);
    printf("%-16s %.2f\n", "GFLOPs", yd_graph_flops(model->graph) / 1e9);
    printf("%-16s %dx%d, %d classes\n", "input size", model->graph->input_width,
           model->graph->input_height, model->graph->nc);
    if (isnan(outcome->reconstruction_error))
        printf("%-16s n/a (no layer was refit)\n", "reconstruction");
    else
        printf("%-16s mean relative layer output error %.4g, %.4g before the refit\n", "reconstruction",
               outcome->reconstruction_error, outcome->error_before_reconstruction);
    printf("%-16s %.0f ms\n", "time", elapsed_ms);
    print_groups(model->graph);
}

int command_compress(int argc, char **argv)
{
    struct compress_options options = {.calib_limit = 128, .reconstruct = -1,
                                       .ridge = 1e-1, .reconstruct_images = 32,
                                       .sensitivity_images = -1, .per_layer = -1,
                                       .distill_epochs = -1,
                                       .distill_holdout = -1,
                                       .distill_lr = 3e-3,
                                       .distill_features = 10,
                                       .distill_zoom = 0.25};
    struct compress_outcome outcome = {.reconstruction_error = NAN};
    const struct compress_variant *variant;
    yd_model_provenance prov;
    yd_model *model = NULL;
    yd_error error = {0};
    struct stat st;
    double start = yd_now_ms();
    const char *base;
    int status;

    status = parse_compress_args(argc, argv, &options);
    if (status != 0)
        return status;
    yd_set_log_callback(log_library_message, NULL);

    variant = find_variant(options.variant);
    if (!variant && strncmp(options.variant, "prune", strlen("prune")) == 0) {
        fprintf(stderr, "yolod compress: invalid variant '%s' (expected prune<P> or prune<P>-int8 "
                "with P an integer from 1 to 90)\n", options.variant);
        return EXIT_USAGE;
    }
    if (!variant) {
        fprintf(stderr, "yolod compress: unknown variant '%s' (supported: ", options.variant);
        print_variant_names(stderr);
        fprintf(stderr, ")\n");
        return EXIT_USAGE;
    }
    if (options.distill_epochs < 0)
        options.distill_epochs = prune_percent(options.variant) ? DEFAULT_DISTILL_EPOCHS : 0;
    else if (options.distill_epochs > 0 && !prune_percent(options.variant))
        log_printf(YD_LOG_WARN, "--distill-epochs applies to prune variants only; ignoring it");
    if (options.distill_option && options.distill_epochs == 0)
        log_printf(YD_LOG_WARN, "--%s applies to the distillation of prune variants only%s;"
                   " ignoring it", options.distill_option,
                   prune_percent(options.variant) ? ", which --distill-epochs 0 turns off" : "");
    if (!prune_percent(options.variant) && (options.sensitivity_images >= 0 || options.per_layer >= 0))
        log_printf(YD_LOG_WARN, "--%s applies to prune variants only; ignoring it",
                   options.per_layer >= 0 ? "prune-ratio" : "sensitivity-images");
    else if (options.per_layer == 1 && options.sensitivity_images >= 0)
        log_printf(YD_LOG_WARN, "--sensitivity-images has no effect with --prune-ratio per-layer,"
                   " which ranks channels by weight norm x activation; ignoring it");
    if (options.sensitivity_images < 0)
        options.sensitivity_images = 4;
    if (options.per_layer < 0)
        options.per_layer = 0;
    if (variant->needs_calibration && !options.calib_dir) {
        fprintf(stderr, "yolod compress: variant '%s' needs --calib DIR, a folder of images\n",
                options.variant);
        return EXIT_USAGE;
    }
    if (!variant->needs_calibration && options.calib_dir)
        log_printf(YD_LOG_WARN, "variant '%s' does not calibrate; ignoring --calib %s",
                   options.variant, options.calib_dir);
    if (!variant->quantizes && options.calib_method)
        log_printf(YD_LOG_WARN, "variant '%s' does not quantize; ignoring --calib-method %s",
                   options.variant, options.calib_method);
    if (!variant->quantizes && options.keep_float > 0)
        log_printf(YD_LOG_WARN, "variant '%s' does not quantize; ignoring --keep-float %d",
                   options.variant, options.keep_float);
    if (!options.calib_method)
        options.calib_method = DEFAULT_CALIB_METHOD;

    status = EXIT_RUNTIME;
    if (check_output_path(&options) != 0)
        goto done;
    if (yd_model_file_sniff_path(options.model_path, &error) == 1) {
        fprintf(stderr, "yolod compress: '%s' is already a .yolod file; compress reads the ONNX "
                "export it came from\n", options.model_path);
        goto done;
    }
    /* Calibration, mixed precision and the refit measure the int8 kernels'
     * arithmetic, so int8 layers must run them on every CPU. */
    if (yd_model_load(options.model_path, &(yd_model_options){.exact_int8 = 1}, &model, &error) < 0) {
        fprintf(stderr, "yolod compress: cannot load model: %s\n", error.message);
        goto done;
    }
    if (variant->quantizes && check_keep_float(&options, model->graph) != 0) {
        status = EXIT_USAGE;
        goto done;
    }

    yd_model_provenance_init(&prov);
    base = strrchr(options.model_path, '/');
    snprintf(prov.source_name, sizeof prov.source_name, "%s", base ? base + 1 : options.model_path);
    snprintf(prov.variant, sizeof prov.variant, "%s", options.variant);
    snprintf(prov.yolod_version, sizeof prov.yolod_version, "%s", YOLOD_VERSION);
    prov.created = (int64_t)time(NULL);
    if (yd_sha256_file(options.model_path, prov.source_sha256, &error) < 0 ||
        (variant->needs_calibration &&
         calibration_digest(options.calib_dir, options.calib_limit, prov.calibration_sha256,
                            &error) < 0)) {
        fprintf(stderr, "yolod compress: %s\n", error.message);
        goto done;
    }

    if (variant->apply(model, &options, &outcome, &error) < 0) {
        fprintf(stderr, "yolod compress: variant '%s' failed: %s\n", options.variant, error.message);
        goto done;
    }
    snprintf(prov.settings, sizeof prov.settings, "%s", outcome.settings);

    if (yd_model_file_save(options.output_path, model->graph, model->class_names, &prov, &error) < 0) {
        fprintf(stderr, "yolod compress: cannot write '%s': %s\n", options.output_path, error.message);
        goto done;
    }
    /* Read the file back through the validating reader before reporting success. */
    if (yd_model_file_load(options.output_path, NULL, NULL, NULL, &error) < 0 ||
        stat(options.output_path, &st) != 0) {
        fprintf(stderr, "yolod compress: '%s' was written but does not read back: %s\n",
                options.output_path, error.message);
        goto done;
    }

    print_summary(&options, model, &prov, &outcome, (size_t)st.st_size, yd_now_ms() - start);
    status = 0;

done:
    yd_model_release(model);
    return status;
}
