/*
 * COCO JSON files: reading an instances (annotations) file and a results
 * file, and writing a results file. Parsed with cJSON.
 */
#ifndef YOLOD_COCO_DATA_H
#define YOLOD_COCO_DATA_H

#include <stddef.h>

#include "coco_eval.h"

/*
 * Parses an instances file: "images" (id, and file_name, width, height when
 * present), "categories" (id, name) and "annotations" (id, image_id,
 * category_id, bbox [x, y, w, h], area, optional iscrowd). Other keys, such
 * as segmentation, are skipped. `source` names the file in messages. On
 * success *out is filled; free it with yd_coco_dataset_free(). Errors:
 * YD_ERR_INVALID_ARGUMENT for malformed JSON (with line and column) or a
 * missing or mistyped field (with the array and index), YD_ERR_NO_MEMORY.
 */
int yd_coco_dataset_parse(const char *text, size_t length, const char *source,
                          yd_coco_dataset *out, yd_error *err);

/* Reads and parses an instances file; YD_ERR_IO when it cannot be read. */
int yd_coco_dataset_load(const char *path, yd_coco_dataset *out, yd_error *err);

/* Frees what yd_coco_dataset_parse() allocated and zeroes *dataset. */
void yd_coco_dataset_free(yd_coco_dataset *dataset);

/*
 * Keeps the first `count` images (in file order) and the annotations of
 * those images; a larger count changes nothing. Errors: YD_ERR_NO_MEMORY,
 * with the dataset unchanged.
 */
int yd_coco_dataset_truncate(yd_coco_dataset *dataset, size_t count, yd_error *err);

/*
 * Parses a results file: a JSON array of {image_id, category_id, bbox,
 * score}; other keys are skipped. *out (NULL when there are none) is freed
 * with free(). Errors as yd_coco_dataset_parse().
 * NOTE: cJSON builds the whole document tree first, about 1 KB per
 * detection (measured on a 29729-entry file), so a file of a million
 * detections needs about 1 GB while it is parsed.
 */
int yd_coco_results_parse(const char *text, size_t length, const char *source,
                          yd_coco_detection **out, size_t *count, yd_error *err);

/* Reads and parses a results file; YD_ERR_IO when it cannot be read. */
int yd_coco_results_load(const char *path, yd_coco_detection **out, size_t *count,
                         yd_error *err);

/*
 * Rounds bbox values to 3 decimals and scores to 5 in place, as
 * yd_coco_results_save() writes them, so that evaluating the rounded
 * detections gives the same numbers as evaluating the saved file.
 */
void yd_coco_results_round(yd_coco_detection *detections, size_t count);

/*
 * Writes detections as a results file, one JSON array, with bbox values
 * rounded to 3 decimals and scores to 5 (as Ultralytics writes
 * predictions.json). Errors: YD_ERR_IO.
 */
int yd_coco_results_save(const char *path, const yd_coco_detection *detections,
                         size_t count, yd_error *err);

#endif /* YOLOD_COCO_DATA_H */
