/*
 * `yolod eval`: COCO bbox mAP of a model on an annotated image folder, or of
 * a results file, printed as pycocotools' 12-line summary or as JSON.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "coco_data.h"
#include "coco_eval.h"
#include "commands.h"
#include "log.h"
#include "names.h"
#include "util.h"

/* Validation settings of Ultralytics `yolo val` for COCO mAP. */
#define EVAL_CONF 0.001f
#define EVAL_IOU 0.7f
#define EVAL_MAX_DET 300

/* Images between two progress lines on stderr. */
#define PROGRESS_EVERY 10

/* Missing images, and images that are not regular files, listed by name
 * before the rest are only counted. */
#define MISSING_LISTED 5

static const char eval_help[] =
    "Usage: yolod eval --coco ANNOTATIONS.json --model FILE --images DIR [OPTIONS]\n"
    "       yolod eval --coco ANNOTATIONS.json --detections RESULTS.json [OPTIONS]\n"
    "\n"
    "Measures COCO bbox mAP as pycocotools does and prints its 12-line summary.\n"
    "With --model, runs the model on every image of the annotations file (found\n"
    "by file_name under DIR) with the validation settings conf 0.001, iou 0.7,\n"
    "max_det 300 and every class above conf per box. An 80-class model's classes\n"
    "map to the COCO category ids 1..90; other models' class i maps to id i + 1.\n"
    "Boxes are rounded to 3 decimals and scores to 5 before evaluation, as\n"
    "--save-detections writes them, so --detections on that file gives the same\n"
    "numbers (with the same --limit). Images a results file has no detection for\n"
    "count as misses; eval warns when there are any.\n"
    "\n"
    "Options:\n"
    "  --coco FILE              COCO instances JSON with images, categories and\n"
    "                           annotations (required)\n"
    "  --model FILE             ONNX or .yolod model to evaluate\n"
    "  --images DIR             folder of the annotated images (with --model only)\n"
    "  --detections FILE        evaluate this COCO results JSON instead of a model:\n"
    "                           [{image_id, category_id, bbox: [x, y, w, h], score}]\n"
    "  --save-detections FILE   write the model's detections as COCO results JSON\n"
    "                           (bbox rounded to 3 decimals, score to 5)\n"
    "  --json                   print one JSON object: map50_95, map50, map75,\n"
    "                           map50_95_small/medium/large, mar1, mar10, mar100,\n"
    "                           mar100_small/medium/large, images, detections, seconds\n"
    "  --threads N              OpenMP threads (default 0 = all cores)\n"
    "  --limit N                evaluate only the first N images of the annotations\n"
    "\n"
    "Progress goes to stderr every 10 images. A missing or unreadable image stops\n"
    "the run, because mAP over fewer images would not be comparable.\n"
    "Exit status: 0 on success, 1 on a runtime error, 2 for invalid usage.\n";

const char *command_eval_help_text(void)
{
    return eval_help;
}

void command_eval_print_help(void)
{
    fputs(eval_help, stdout);
}

struct eval_options {
    const char *model_path;
    const char *annotations_path;
    const char *image_dir;
    const char *detections_path;
    const char *save_path;
    bool json;
    int threads;
    long limit; /* 0: every image */
};

/* A growing array of detections. */
struct detection_list {
    yd_coco_detection *items;
    size_t count;
    size_t capacity;
};

static int list_reserve(struct detection_list *list, size_t extra)
{
    size_t capacity = list->capacity ? list->capacity : 4096;
    yd_coco_detection *items;

    if (list->count + extra <= list->capacity)
        return 0;
    while (capacity < list->count + extra)
        capacity *= 2;
    items = realloc(list->items, capacity * sizeof *items);
    if (!items)
        return -1;
    list->items = items;
    list->capacity = capacity;
    return 0;
}

/* Parses a whole decimal integer in [min, max]; -1 on anything else. */
static int parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

static int parse_eval_args(int argc, char **argv, struct eval_options *options)
{
    char name[64], err[512];
    const char *value;
    long number;

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_eval_print_help();
            exit(0);
        }
        if (strcmp(argv[i], "--json") == 0) {
            if (options->json) {
                fprintf(stderr, "yolod eval: option '--json' given twice; give it once\n");
                return EXIT_USAGE;
            }
            options->json = true;
            i++;
            continue;
        }
        if (strncmp(argv[i], "--", 2) != 0) {
            fprintf(stderr, "yolod eval: unexpected argument '%s'; see 'yolod help eval'\n", argv[i]);
            return EXIT_USAGE;
        }
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            fprintf(stderr, "yolod eval: %s\n", err);
            return EXIT_USAGE;
        }

        if (strcmp(name, "model") == 0) {
            options->model_path = value;
        } else if (strcmp(name, "coco") == 0) {
            options->annotations_path = value;
        } else if (strcmp(name, "images") == 0) {
            options->image_dir = value;
        } else if (strcmp(name, "detections") == 0) {
            options->detections_path = value;
        } else if (strcmp(name, "save-detections") == 0) {
            options->save_path = value;
        } else if (strcmp(name, "threads") == 0) {
            if (parse_long(value, 0, 1024, &number) != 0) {
                fprintf(stderr, "yolod eval: invalid --threads '%s' (expected 0 to 1024; 0 = all cores)\n",
                        value);
                return EXIT_USAGE;
            }
            options->threads = (int)number;
        } else if (strcmp(name, "limit") == 0) {
            if (parse_long(value, 1, LONG_MAX, &number) != 0) {
                fprintf(stderr, "yolod eval: invalid --limit '%s' (expected a positive image count)\n",
                        value);
                return EXIT_USAGE;
            }
            options->limit = number;
        } else {
            fprintf(stderr, "yolod eval: unknown option '--%s'; see 'yolod help eval'\n", name);
            return EXIT_USAGE;
        }
    }

    if (!options->annotations_path) {
        fprintf(stderr, "yolod eval: missing --coco ANNOTATIONS.json; see 'yolod help eval'\n");
        return EXIT_USAGE;
    }
    if (!options->model_path == !options->detections_path) {
        fprintf(stderr, "yolod eval: give either --model FILE or --detections FILE; see 'yolod help eval'\n");
        return EXIT_USAGE;
    }
    if (options->model_path && !options->image_dir) {
        fprintf(stderr, "yolod eval: --model needs --images DIR, the folder of the annotated images\n");
        return EXIT_USAGE;
    }
    if (options->image_dir && options->detections_path) {
        fprintf(stderr, "yolod eval: --images is for --model; --detections FILE is scored"
                " without the images, so leave --images out\n");
        return EXIT_USAGE;
    }
    if (options->save_path && !options->model_path) {
        fprintf(stderr, "yolod eval: --save-detections writes the model's detections and needs --model\n");
        return EXIT_USAGE;
    }
    return 0;
}

/*
 * Checks, before the model runs, that --save-detections can be written, so
 * a mistyped folder fails at once. A new file is created and removed again,
 * and an existing one is opened without truncating it, so a run that fails
 * later leaves the path as it was.
 */
static int check_save_path(const char *path)
{
    struct stat st;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

    if (fd >= 0) {
        close(fd);
        unlink(path);
        return 0;
    }
    if (errno == EEXIST) {
        /* Opening a FIFO for writing blocks until a reader opens it, and a
         * dangling link is created through only at the end, so the final
         * write checks both. */
        if (stat(path, &st) != 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)))
            return 0;
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
    }
    fprintf(stderr, "yolod eval: cannot write --save-detections '%s': %s\n", path, strerror(errno));
    return -1;
}

/* Returns -1, after a message, when --save-detections names one of the input files. */
static int save_path_is_input(const struct eval_options *options)
{
    const char *inputs[] = {options->annotations_path, options->model_path, options->detections_path};
    const char *names[] = {"--coco", "--model", "--detections"};
    struct stat out, in;

    if (stat(options->save_path, &out) != 0)
        return 0;
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == out.st_dev &&
            in.st_ino == out.st_ino) {
            fprintf(stderr, "yolod eval: --save-detections '%s' is the %s file; choose another"
                    " path\n", options->save_path, names[i]);
            return -1;
        }
    }
    return 0;
}

/* Builds DIR/file_name into path; -1 when the image has no file name or it is too long. */
static int image_path(const char *dir, const yd_coco_image *image, char *path, size_t size)
{
    int n;

    if (!image->file_name)
        return -1;
    n = snprintf(path, size, "%s/%s", dir, image->file_name);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/*
 * Checks that every image file exists and is a regular file before the
 * model runs; reports the others. Opening a FIFO would wait for a writer.
 */
static int check_images(const yd_coco_dataset *dataset, const char *dir)
{
    char path[PATH_MAX];
    size_t missing = 0, not_regular = 0;
    struct stat st;

    for (size_t i = 0; i < dataset->image_count; i++) {
        const yd_coco_image *image = &dataset->images[i];

        if (!image->file_name) {
            fprintf(stderr, "yolod eval: image id %lld has no \"file_name\" in the annotations\n",
                    (long long)image->id);
            return -1;
        }
        if (image_path(dir, image, path, sizeof path) != 0) {
            fprintf(stderr, "yolod eval: image path too long: %s/%s\n", dir, image->file_name);
            return -1;
        }
        if (access(path, R_OK) != 0) {
            if (missing < MISSING_LISTED)
                fprintf(stderr, "yolod eval: image not found: %s (image id %lld): %s\n", path,
                        (long long)image->id, strerror(errno));
            missing++;
            continue;
        }
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            if (not_regular < MISSING_LISTED)
                fprintf(stderr, "yolod eval: invalid image %s (image id %lld): it is %s, not a "
                        "regular file\n", path, (long long)image->id,
                        yd_file_type_name(st.st_mode));
            not_regular++;
        }
    }
    if (missing > 0)
        fprintf(stderr, "yolod eval: %zu of %zu images not found under '%s'; check --images\n",
                missing, dataset->image_count, dir);
    if (not_regular > 0)
        fprintf(stderr, "yolod eval: %zu of %zu images under '%s' are not regular files; "
                "replace them with the image files\n", not_regular, dataset->image_count, dir);
    return missing > 0 || not_regular > 0 ? -1 : 0;
}

/*
 * Maps a model class to a COCO category id: the 80-class COCO order to the
 * original ids 1..90, any other class count to class + 1, which is the
 * class_map of Ultralytics 8.x DetectionValidator.init_metrics for datasets
 * other than COCO.
 */
static int64_t category_id(int class_count, int class_id)
{
    if (class_count == YD_COCO80_COUNT)
        return yd_coco80_category_id(class_id);
    return (int64_t)class_id + 1;
}

/*
 * Appends one image's detections in COCO form. The box arithmetic is done in
 * float, as Ultralytics' pred_to_json does on float32 tensors (xyxy2xywh,
 * then the centre moved back to the corner).
 */
static int append_result(struct detection_list *list, const yd_result *result, int64_t image_id,
                         int class_count)
{
    if (list_reserve(list, (size_t)result->count) != 0)
        return -1;
    for (int i = 0; i < result->count; i++) {
        const yd_detection *det = &result->detections[i];
        yd_coco_detection *out = &list->items[list->count++];
        float width = det->box.x2 - det->box.x1;
        float height = det->box.y2 - det->box.y1;
        float center_x = (det->box.x1 + det->box.x2) / 2;
        float center_y = (det->box.y1 + det->box.y2) / 2;

        out->image_id = image_id;
        out->category_id = category_id(class_count, det->class_id);
        out->bbox[0] = center_x - width / 2;
        out->bbox[1] = center_y - height / 2;
        out->bbox[2] = width;
        out->bbox[3] = height;
        out->score = det->confidence;
    }
    return 0;
}

/* Runs the model over every image of the dataset; prints progress on stderr. */
static int run_model(const struct eval_options *options, const yd_coco_dataset *dataset,
                     struct detection_list *list)
{
    yd_model *model = NULL;
    yd_session *session = NULL;
    yd_detect_params params;
    yd_error error = { 0 };
    char path[PATH_MAX];
    double start = yd_now_ms();
    int class_count;
    int status = -1;

    if (yd_model_load(options->model_path, NULL, &model, &error) < 0) {
        fprintf(stderr, "yolod eval: cannot load model: %s\n", error.message);
        goto cleanup;
    }
    if (yd_session_create(model, options->threads, &session, &error) < 0) {
        fprintf(stderr, "yolod eval: cannot create a session: %s\n", error.message);
        goto cleanup;
    }
    class_count = yd_model_class_count(model);
    yd_detect_params_default(&params);
    params.conf = EVAL_CONF;
    params.iou = EVAL_IOU;
    params.max_det = EVAL_MAX_DET;
    params.multi_label = true;

    for (size_t i = 0; i < dataset->image_count; i++) {
        const yd_coco_image *image_info = &dataset->images[i];
        yd_image image = { 0 };
        yd_result result = { 0 };
        int rc;

        image_path(options->image_dir, image_info, path, sizeof path);
        rc = yd_image_load(path, 0, &image, &error);
        if (rc < 0) {
            fprintf(stderr, "yolod eval: cannot read image '%s' (image id %lld): %s\n", path,
                    (long long)image_info->id, error.message);
            goto cleanup;
        }
        rc = yd_detect(session, &image, &params, &result, &error);
        yd_image_free(&image);
        if (rc < 0) {
            fprintf(stderr, "yolod eval: detection failed on '%s': %s\n", path, error.message);
            goto cleanup;
        }
        rc = append_result(list, &result, image_info->id, class_count);
        yd_result_free(&result);
        if (rc < 0) {
            fprintf(stderr, "yolod eval: out of memory after %zu detections\n", list->count);
            goto cleanup;
        }

        if ((i + 1) % PROGRESS_EVERY == 0 && i + 1 < dataset->image_count)
            fprintf(stderr, "yolod eval: %zu/%zu images, %zu detections, %.1f s\n", i + 1,
                    dataset->image_count, list->count, (yd_now_ms() - start) / 1000.0);
    }
    status = 0;

cleanup:
    if (session)
        yd_session_destroy(session);
    if (model)
        yd_model_release(model);
    return status;
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Drops detections of images that --limit removed from the dataset. */
static int keep_dataset_images(const yd_coco_dataset *dataset, struct detection_list *list)
{
    int64_t *ids = malloc((dataset->image_count + 1) * sizeof *ids);
    size_t kept = 0;

    if (!ids)
        return -1;
    for (size_t i = 0; i < dataset->image_count; i++)
        ids[i] = dataset->images[i].id;
    qsort(ids, dataset->image_count, sizeof *ids, compare_int64);

    for (size_t d = 0; d < list->count; d++)
        if (bsearch(&list->items[d].image_id, ids, dataset->image_count, sizeof *ids, compare_int64))
            list->items[kept++] = list->items[d];
    list->count = kept;
    free(ids);
    return 0;
}

/* Sorts ids[0..count) and returns how many distinct values it holds. */
static size_t sort_distinct(int64_t *ids, size_t count)
{
    size_t distinct = 0;

    qsort(ids, count, sizeof *ids, compare_int64);
    for (size_t i = 0; i < count; i++)
        if (i == 0 || ids[i] != ids[i - 1])
            ids[distinct++] = ids[i];
    return distinct;
}

static bool has_id(const int64_t *ids, size_t count, int64_t id)
{
    return bsearch(&id, ids, count, sizeof *ids, compare_int64) != NULL;
}

/*
 * Warns on stderr about inputs that make the numbers misleading, though
 * they are right for the files as given. These are repeated image ids, no
 * categories, annotations of unknown images or categories (never matched)
 * and, for a results file, images without detections (counted as misses).
 * Returns -1 when out of memory.
 */
static int warn_inconsistent(const yd_coco_dataset *dataset, const struct detection_list *list,
                             const struct eval_options *options)
{
    int64_t *images = malloc((dataset->image_count + 1) * sizeof *images);
    int64_t *categories = malloc((dataset->category_count + 1) * sizeof *categories);
    int64_t *covered = malloc((list->count + 1) * sizeof *covered);
    size_t image_ids, category_ids, unmatched = 0, covered_count = 0;
    int rc = -1;

    if (!images || !categories || !covered)
        goto cleanup;
    for (size_t i = 0; i < dataset->image_count; i++)
        images[i] = dataset->images[i].id;
    for (size_t i = 0; i < dataset->category_count; i++)
        categories[i] = dataset->categories[i].id;
    image_ids = sort_distinct(images, dataset->image_count);
    category_ids = sort_distinct(categories, dataset->category_count);

    if (image_ids < dataset->image_count)
        fprintf(stderr, "yolod eval: warning: %zu of the %zu image entries repeat an id listed"
                " before; the detections of every entry are scored\n",
                dataset->image_count - image_ids, dataset->image_count);
    if (category_ids == 0)
        fprintf(stderr, "yolod eval: warning: the annotations define no categories, so every"
                " metric is -1\n");
    for (size_t i = 0; i < dataset->annotation_count; i++)
        if (!has_id(images, image_ids, dataset->annotations[i].image_id) ||
            !has_id(categories, category_ids, dataset->annotations[i].category_id))
            unmatched++;
    if (unmatched > 0)
        fprintf(stderr, "yolod eval: warning: %zu annotations name an image_id or category_id"
                " that the file does not define; they are ignored\n", unmatched);

    if (options->detections_path && category_ids > 0) {
        unmatched = 0;
        for (size_t d = 0; d < list->count; d++)
            unmatched += !has_id(categories, category_ids, list->items[d].category_id);
        if (unmatched > 0)
            fprintf(stderr, "yolod eval: warning: %zu detections name a category_id that the"
                    " annotations do not define; they are ignored\n", unmatched);
    }
    if (options->detections_path && image_ids > 0) {
        for (size_t d = 0; d < list->count; d++)
            if (has_id(images, image_ids, list->items[d].image_id))
                covered[covered_count++] = list->items[d].image_id;
        covered_count = sort_distinct(covered, covered_count);
        if (covered_count < image_ids)
            fprintf(stderr, "yolod eval: warning: the detections cover %zu of the %zu images;"
                    " images without detections count as misses (a file saved with --limit N"
                    " needs the same --limit)\n", covered_count, image_ids);
    }
    rc = 0;

cleanup:
    free(images);
    free(categories);
    free(covered);
    return rc;
}

static int print_json(const double stats[YD_COCO_STAT_COUNT], size_t image_count,
                      size_t detection_count, double seconds)
{
    cJSON *root = cJSON_CreateObject();
    char *text;

    if (!root)
        return -1;
    for (int i = 0; i < YD_COCO_STAT_COUNT; i++)
        cJSON_AddNumberToObject(root, yd_coco_stat_key(i), stats[i]);
    cJSON_AddNumberToObject(root, "images", (double)image_count);
    cJSON_AddNumberToObject(root, "detections", (double)detection_count);
    cJSON_AddNumberToObject(root, "seconds", seconds);
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return -1;
    puts(text);
    free(text);
    return 0;
}

int command_eval(int argc, char **argv)
{
    struct eval_options options = { 0 };
    struct detection_list list = { 0 };
    yd_coco_dataset dataset = { 0 };
    yd_error error = { 0 };
    double stats[YD_COCO_STAT_COUNT];
    double start = yd_now_ms(), seconds;
    int status;

    status = parse_eval_args(argc, argv, &options);
    if (status != 0)
        return status;
    log_set_level(YD_LOG_WARN);
    yd_set_log_callback(log_library_message, NULL);

    status = EXIT_RUNTIME;
    if (options.save_path && (check_save_path(options.save_path) != 0 ||
                              save_path_is_input(&options) != 0))
        goto cleanup;
    if (yd_coco_dataset_load(options.annotations_path, &dataset, &error) < 0) {
        fprintf(stderr, "yolod eval: cannot read annotations: %s\n", error.message);
        goto cleanup;
    }
    if (options.limit > 0 &&
        yd_coco_dataset_truncate(&dataset, (size_t)options.limit, &error) < 0) {
        fprintf(stderr, "yolod eval: %s\n", error.message);
        goto cleanup;
    }

    if (options.detections_path) {
        if (yd_coco_results_load(options.detections_path, &list.items, &list.count, &error) < 0) {
            fprintf(stderr, "yolod eval: cannot read detections: %s\n", error.message);
            goto cleanup;
        }
        list.capacity = list.count;
        if (options.limit > 0 && keep_dataset_images(&dataset, &list) != 0) {
            fprintf(stderr, "yolod eval: out of memory\n");
            goto cleanup;
        }
    } else {
        if (check_images(&dataset, options.image_dir) != 0 ||
            run_model(&options, &dataset, &list) != 0)
            goto cleanup;
        /* Evaluate what --save-detections writes, as Ultralytics evaluates its predictions.json. */
        yd_coco_results_round(list.items, list.count);
    }

    if (options.save_path &&
        yd_coco_results_save(options.save_path, list.items, list.count, &error) < 0) {
        fprintf(stderr, "yolod eval: %s\n", error.message);
        goto cleanup;
    }

    if (warn_inconsistent(&dataset, &list, &options) != 0) {
        fprintf(stderr, "yolod eval: out of memory\n");
        goto cleanup;
    }
    if (yd_coco_evaluate(&dataset, list.items, list.count, stats, &error) < 0) {
        fprintf(stderr, "yolod eval: %s\n", error.message);
        goto cleanup;
    }
    seconds = (yd_now_ms() - start) / 1000.0;

    if (options.json) {
        if (print_json(stats, dataset.image_count, list.count, seconds) != 0) {
            fprintf(stderr, "yolod eval: out of memory\n");
            goto cleanup;
        }
    } else {
        char summary[2048];

        yd_coco_format_summary(stats, summary, sizeof summary);
        fputs(summary, stdout);
        fprintf(stderr, "yolod eval: %zu images, %zu detections, %.1f s\n", dataset.image_count,
                list.count, seconds);
    }
    status = 0;

cleanup:
    free(list.items);
    yd_coco_dataset_free(&dataset);
    return status;
}
