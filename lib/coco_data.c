/*
 * Reading and writing COCO instances and results JSON files with cJSON.
 * Field checks follow what pycocotools reads: every id an integer, bbox four
 * numbers, annotation "area" present because it selects the area range.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "coco_data.h"
#include "util.h"

/* 2^53: doubles represent every integer below it in magnitude but not all
 * above, so a JSON id this large may have been rounded. */
#define MAX_EXACT_INTEGER 9007199254740992.0

/* Counts the line and column (both from 1) of `position` in text. */
static void count_line_column(const char *text, const char *position, size_t *line, size_t *column)
{
    *line = 1;
    *column = 1;
    for (const char *p = text; p < position; p++) {
        if (*p == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

/* How many arrays and objects are open at `end`, strings skipped. */
static size_t nesting_at(const char *text, const char *end)
{
    size_t depth = 0;
    int in_string = 0;

    for (const char *p = text; p < end; p++) {
        if (in_string) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_string = 0;
        } else if (*p == '"') {
            in_string = 1;
        } else if (*p == '[' || *p == '{') {
            depth++;
        } else if ((*p == ']' || *p == '}') && depth > 0) {
            depth--;
        }
    }
    return depth;
}

/*
 * Parses text as one JSON value, followed by nothing but JSON whitespace.
 * On a syntax error reports the line and column, and on data after the
 * value its byte offset, so "[...][...]" is not read as its first array.
 */
static int parse_json(const char *text, size_t length, const char *source, cJSON **out,
                      yd_error *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, length, &end, 0);
    size_t line, column;

    if (!root && (!end || end < text || end > text + length))
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "%s: invalid JSON", source);
    if (!root) {
        count_line_column(text, end, &line, &column);
        /* cJSON stops at the bracket that opens one level too many. */
        if (nesting_at(text, end) + (end < text + length && (*end == '[' || *end == '{')) >
            CJSON_NESTING_LIMIT)
            return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                "%s: JSON nested deeper than %d arrays and objects at line %zu,"
                                " column %zu", source, CJSON_NESTING_LIMIT, line, column);
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "%s: invalid JSON at line %zu, column %zu", source, line, column);
    }

    while (end < text + length && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end < text + length) {
        cJSON_Delete(root);
        count_line_column(text, end, &line, &column);
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "%s: unexpected data after the JSON value at byte offset %zu "
                            "(line %zu, column %zu); expected one JSON value per file",
                            source, (size_t)(end - text), line, column);
    }
    *out = root;
    return 0;
}

enum { INTEGER_ABSENT = 1, INTEGER_INVALID = -1, INTEGER_OUT_OF_RANGE = -2 };

/*
 * Reads key as an integer. Returns 0, INTEGER_ABSENT, INTEGER_INVALID for a
 * value that is not a whole number, or INTEGER_OUT_OF_RANGE for a magnitude
 * of MAX_EXACT_INTEGER or more.
 */
static int get_integer(const cJSON *object, const char *key, int64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    double value;

    if (!item)
        return INTEGER_ABSENT;
    if (!cJSON_IsNumber(item))
        return INTEGER_INVALID;
    value = item->valuedouble;
    if (value != floor(value))
        return INTEGER_INVALID;
    if (fabs(value) >= MAX_EXACT_INTEGER)
        return INTEGER_OUT_OF_RANGE;
    *out = (int64_t)value;
    return 0;
}

static int get_number(const cJSON *object, const char *key, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

    if (!item)
        return 1;
    if (!cJSON_IsNumber(item))
        return -1;
    *out = item->valuedouble;
    return 0;
}

/* Reads "bbox" as [x, y, width, height]; -1 unless it is exactly four numbers. */
static int get_bbox(const cJSON *object, double bbox[4])
{
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(object, "bbox");
    const cJSON *item;
    int n = 0;

    if (!cJSON_IsArray(array))
        return -1;
    cJSON_ArrayForEach(item, array) {
        if (n == 4 || !cJSON_IsNumber(item))
            return -1;
        bbox[n++] = item->valuedouble;
    }
    return n == 4 ? 0 : -1;
}

/* Copies an optional string field; *out stays NULL when absent. */
static int get_string(const cJSON *object, const char *key, char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

    if (!item)
        return 1;
    if (!cJSON_IsString(item))
        return -1;
    *out = strdup(item->valuestring);
    return *out ? 0 : YD_ERR_NO_MEMORY;
}

static int field_error(yd_error *err, const char *source, const char *array, size_t index,
                       const char *expected)
{
    return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "%s: %s[%zu]: %s", source, array, index,
                        expected);
}

/* Reads the required id field `key` of array[index], and fills err when it is missing or invalid. */
static int get_id(const cJSON *object, const char *key, const char *source, const char *array,
                  size_t index, int64_t *out, yd_error *err)
{
    char problem[128];
    int rc = get_integer(object, key, out);

    if (rc == 0)
        return 0;
    if (rc == INTEGER_OUT_OF_RANGE)
        snprintf(problem, sizeof problem,
                 "\"%s\" is out of range (expected an integer of magnitude below 2^53)", key);
    else
        snprintf(problem, sizeof problem, "missing or non-integer \"%s\"", key);
    return field_error(err, source, array, index, problem);
}

static int parse_images(const cJSON *array, const char *source, yd_coco_dataset *out,
                        yd_error *err)
{
    const cJSON *item;
    size_t i = 0;
    int count = cJSON_GetArraySize(array);

    out->images = calloc(count ? (size_t)count : 1, sizeof *out->images);
    if (!out->images)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "%s: out of memory for %d images", source, count);
    cJSON_ArrayForEach(item, array) {
        yd_coco_image *image = &out->images[i];
        int64_t size = 0;
        int rc;

        if (!cJSON_IsObject(item))
            return field_error(err, source, "images", i, "expected an object");
        if (get_id(item, "id", source, "images", i, &image->id, err) != 0)
            return YD_ERR_INVALID_ARGUMENT;
        rc = get_string(item, "file_name", &image->file_name);
        if (rc == YD_ERR_NO_MEMORY)
            return yd_error_set(err, rc, "%s: out of memory", source);
        if (rc < 0)
            return field_error(err, source, "images", i, "\"file_name\" is not a string");
        out->image_count = ++i;

        if (get_integer(item, "width", &size) == 0 && size > 0 && size <= INT32_MAX)
            image->width = (int)size;
        if (get_integer(item, "height", &size) == 0 && size > 0 && size <= INT32_MAX)
            image->height = (int)size;
    }
    return 0;
}

static int parse_categories(const cJSON *array, const char *source, yd_coco_dataset *out,
                            yd_error *err)
{
    const cJSON *item;
    size_t i = 0;
    int count = cJSON_GetArraySize(array);

    out->categories = calloc(count ? (size_t)count : 1, sizeof *out->categories);
    if (!out->categories)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "%s: out of memory for %d categories", source,
                            count);
    cJSON_ArrayForEach(item, array) {
        yd_coco_category *category = &out->categories[i];
        int rc;

        if (!cJSON_IsObject(item))
            return field_error(err, source, "categories", i, "expected an object");
        if (get_id(item, "id", source, "categories", i, &category->id, err) != 0)
            return YD_ERR_INVALID_ARGUMENT;
        rc = get_string(item, "name", &category->name);
        if (rc == YD_ERR_NO_MEMORY)
            return yd_error_set(err, rc, "%s: out of memory", source);
        if (rc < 0)
            return field_error(err, source, "categories", i, "\"name\" is not a string");
        out->category_count = ++i;
    }
    return 0;
}

static int parse_annotations(const cJSON *array, const char *source, yd_coco_dataset *out,
                             yd_error *err)
{
    const cJSON *item;
    size_t i = 0;
    int count = cJSON_GetArraySize(array);

    out->annotations = calloc(count ? (size_t)count : 1, sizeof *out->annotations);
    if (!out->annotations)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "%s: out of memory for %d annotations", source,
                            count);
    cJSON_ArrayForEach(item, array) {
        yd_coco_annotation *ann = &out->annotations[i];
        const cJSON *crowd;

        if (!cJSON_IsObject(item))
            return field_error(err, source, "annotations", i, "expected an object");
        if (get_id(item, "id", source, "annotations", i, &ann->id, err) != 0 ||
            get_id(item, "image_id", source, "annotations", i, &ann->image_id, err) != 0 ||
            get_id(item, "category_id", source, "annotations", i, &ann->category_id, err) != 0)
            return YD_ERR_INVALID_ARGUMENT;
        if (get_bbox(item, ann->bbox) != 0)
            return field_error(err, source, "annotations", i,
                               "\"bbox\" must be an array of 4 numbers [x, y, width, height]");
        if (get_number(item, "area", &ann->area) != 0)
            return field_error(err, source, "annotations", i, "missing or non-numeric \"area\"");

        crowd = cJSON_GetObjectItemCaseSensitive(item, "iscrowd");
        if (cJSON_IsNumber(crowd))
            ann->iscrowd = crowd->valuedouble != 0;
        else if (cJSON_IsBool(crowd))
            ann->iscrowd = cJSON_IsTrue(crowd);
        else if (crowd && !cJSON_IsNull(crowd))
            return field_error(err, source, "annotations", i, "\"iscrowd\" is not 0 or 1");
        out->annotation_count = ++i;
    }
    return 0;
}

/* Returns the array under key, or NULL after filling err. */
static const cJSON *get_array(const cJSON *root, const char *key, const char *source,
                              yd_error *err)
{
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(root, key);

    if (!cJSON_IsArray(array)) {
        yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                     "%s: missing \"%s\" array; expected a COCO instances file", source, key);
        return NULL;
    }
    return array;
}

int yd_coco_dataset_parse(const char *text, size_t length, const char *source,
                          yd_coco_dataset *out, yd_error *err)
{
    const cJSON *images, *categories, *annotations;
    cJSON *root = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    rc = parse_json(text, length, source, &root, err);
    if (rc < 0)
        return rc;
    if (!cJSON_IsObject(root)) {
        rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                          "%s: expected a JSON object (a COCO instances file)", source);
        goto cleanup;
    }

    rc = YD_ERR_INVALID_ARGUMENT;
    images = get_array(root, "images", source, err);
    categories = images ? get_array(root, "categories", source, err) : NULL;
    annotations = categories ? get_array(root, "annotations", source, err) : NULL;
    if (!annotations)
        goto cleanup;

    rc = parse_images(images, source, out, err);
    if (rc == 0)
        rc = parse_categories(categories, source, out, err);
    if (rc == 0)
        rc = parse_annotations(annotations, source, out, err);

cleanup:
    cJSON_Delete(root);
    if (rc < 0)
        yd_coco_dataset_free(out);
    return rc;
}

int yd_coco_dataset_load(const char *path, yd_coco_dataset *out, yd_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    memset(out, 0, sizeof *out);
    rc = yd_read_file(path, &data, &size, err);
    if (rc < 0)
        return rc;
    rc = yd_coco_dataset_parse((const char *)data, size, path, out, err);
    free(data);
    return rc;
}

void yd_coco_dataset_free(yd_coco_dataset *dataset)
{
    if (!dataset)
        return;
    for (size_t i = 0; i < dataset->image_count; i++)
        free(dataset->images[i].file_name);
    for (size_t i = 0; i < dataset->category_count; i++)
        free(dataset->categories[i].name);
    free(dataset->images);
    free(dataset->categories);
    free(dataset->annotations);
    memset(dataset, 0, sizeof *dataset);
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int yd_coco_dataset_truncate(yd_coco_dataset *dataset, size_t count, yd_error *err)
{
    int64_t *kept_ids;
    size_t kept = 0;

    if (count >= dataset->image_count)
        return 0;
    kept_ids = malloc((count ? count : 1) * sizeof *kept_ids);
    if (!kept_ids)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for %zu image ids", count);
    for (size_t i = 0; i < count; i++)
        kept_ids[i] = dataset->images[i].id;
    qsort(kept_ids, count, sizeof *kept_ids, compare_int64);

    for (size_t i = count; i < dataset->image_count; i++)
        free(dataset->images[i].file_name);
    dataset->image_count = count;

    for (size_t a = 0; a < dataset->annotation_count; a++) {
        int64_t id = dataset->annotations[a].image_id;

        if (bsearch(&id, kept_ids, count, sizeof *kept_ids, compare_int64))
            dataset->annotations[kept++] = dataset->annotations[a];
    }
    dataset->annotation_count = kept;
    free(kept_ids);
    return 0;
}

int yd_coco_results_parse(const char *text, size_t length, const char *source,
                          yd_coco_detection **out, size_t *count, yd_error *err)
{
    yd_coco_detection *detections = NULL;
    const cJSON *item;
    cJSON *root = NULL;
    size_t i = 0;
    int rc;

    *out = NULL;
    *count = 0;
    rc = parse_json(text, length, source, &root, err);
    if (rc < 0)
        return rc;
    if (!cJSON_IsArray(root)) {
        rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                          "%s: expected a JSON array of {image_id, category_id, bbox, score}",
                          source);
        goto cleanup;
    }

    if (cJSON_GetArraySize(root) > 0) {
        detections = malloc((size_t)cJSON_GetArraySize(root) * sizeof *detections);
        if (!detections) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "%s: out of memory for %d detections",
                              source, cJSON_GetArraySize(root));
            goto cleanup;
        }
    }
    cJSON_ArrayForEach(item, root) {
        yd_coco_detection *det = &detections[i];

        rc = YD_ERR_INVALID_ARGUMENT;
        if (!cJSON_IsObject(item)) {
            field_error(err, source, "results", i, "expected an object");
            goto cleanup;
        }
        if (get_id(item, "image_id", source, "results", i, &det->image_id, err) != 0 ||
            get_id(item, "category_id", source, "results", i, &det->category_id, err) != 0)
            goto cleanup;
        if (get_bbox(item, det->bbox) != 0) {
            field_error(err, source, "results", i,
                        "\"bbox\" must be an array of 4 numbers [x, y, width, height]");
            goto cleanup;
        }
        if (get_number(item, "score", &det->score) != 0) {
            field_error(err, source, "results", i, "missing or non-numeric \"score\"");
            goto cleanup;
        }
        i++;
    }
    *out = detections;
    *count = i;
    detections = NULL;
    rc = 0;

cleanup:
    free(detections);
    cJSON_Delete(root);
    return rc;
}

int yd_coco_results_load(const char *path, yd_coco_detection **out, size_t *count, yd_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    *out = NULL;
    *count = 0;
    rc = yd_read_file(path, &data, &size, err);
    if (rc < 0)
        return rc;
    rc = yd_coco_results_parse((const char *)data, size, path, out, count, err);
    free(data);
    return rc;
}

/*
 * Formats value rounded to `decimals` places as Python's repr(round(value,
 * decimals)) prints it: trailing zeros dropped, at least one digit after the
 * point ("0.0", "242.3"). Both printf and round() round the exact binary
 * value half to even, so the digits agree.
 */
static void format_rounded(double value, int decimals, char *buffer, size_t size)
{
    size_t length;

    snprintf(buffer, size, "%.*f", decimals, value);
    length = strlen(buffer);
    while (length > 2 && buffer[length - 1] == '0' && buffer[length - 2] != '.')
        buffer[--length] = '\0';
}

/* Python's round(value, decimals): the double nearest to the decimal printf rounds to. */
static double round_decimals(double value, int decimals)
{
    char text[400];

    if (!isfinite(value))
        return value;
    snprintf(text, sizeof text, "%.*f", decimals, value);
    return strtod(text, NULL);
}

void yd_coco_results_round(yd_coco_detection *detections, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        for (int k = 0; k < 4; k++)
            detections[i].bbox[k] = round_decimals(detections[i].bbox[k], 3);
        detections[i].score = round_decimals(detections[i].score, 5);
    }
}

int yd_coco_results_save(const char *path, const yd_coco_detection *detections, size_t count,
                         yd_error *err)
{
    FILE *file = fopen(path, "w");
    int rc = 0;

    if (!file)
        return yd_error_set(err, YD_ERR_IO, "cannot create '%s': %s", path, strerror(errno));

    fputc('[', file);
    for (size_t i = 0; i < count; i++) {
        const yd_coco_detection *det = &detections[i];
        char box[4][64], score[64];

        for (int k = 0; k < 4; k++)
            format_rounded(det->bbox[k], 3, box[k], sizeof box[k]);
        format_rounded(det->score, 5, score, sizeof score);
        fprintf(file,
                "%s{\"image_id\": %lld, \"category_id\": %lld, \"bbox\": [%s, %s, %s, %s], "
                "\"score\": %s}",
                i ? ", " : "", (long long)det->image_id, (long long)det->category_id, box[0],
                box[1], box[2], box[3], score);
    }
    fputs("]\n", file);

    if (ferror(file))
        rc = yd_error_set(err, YD_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (fclose(file) != 0 && rc == 0)
        rc = yd_error_set(err, YD_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return rc;
}
