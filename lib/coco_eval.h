/*
 * COCO bbox evaluation with the semantics of pycocotools' COCOeval
 * (iouType "bbox"): the 12 summary numbers AP, AP50, AP75, APs, APm, APl,
 * AR1, AR10, AR100, ARs, ARm, ARl.
 *
 * The evaluator works on plain arrays; lib/coco_data.h reads and writes the
 * JSON files.
 */
#ifndef YOLOD_COCO_EVAL_H
#define YOLOD_COCO_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "yolod.h"

typedef struct yd_coco_image {
    int64_t id;
    char *file_name; /* relative to the image folder; NULL when absent */
    int width, height; /* 0 when absent */
} yd_coco_image;

typedef struct yd_coco_category {
    int64_t id;
    char *name; /* NULL when absent */
} yd_coco_category;

/* One ground-truth object of an instances file. */
typedef struct yd_coco_annotation {
    int64_t id;
    int64_t image_id;
    int64_t category_id;
    double bbox[4]; /* x, y, width, height in pixels */
    double area;    /* the file's "area" (segment area); selects the area range */
    bool iscrowd;
} yd_coco_annotation;

/* One entry of a results file. */
typedef struct yd_coco_detection {
    int64_t image_id;
    int64_t category_id;
    double bbox[4]; /* x, y, width, height in pixels */
    double score;
} yd_coco_detection;

/* The parts of an instances file that evaluation uses. */
typedef struct yd_coco_dataset {
    yd_coco_image *images;
    size_t image_count;
    yd_coco_category *categories;
    size_t category_count;
    yd_coco_annotation *annotations;
    size_t annotation_count;
} yd_coco_dataset;

/* Indices into the summary, in the order pycocotools prints them. */
enum {
    YD_COCO_AP = 0,    /* IoU 0.50:0.95, all areas, 100 detections */
    YD_COCO_AP50,
    YD_COCO_AP75,
    YD_COCO_AP_SMALL,  /* area < 32^2 */
    YD_COCO_AP_MEDIUM, /* 32^2 <= area <= 96^2 */
    YD_COCO_AP_LARGE,  /* area > 96^2 */
    YD_COCO_AR1,
    YD_COCO_AR10,
    YD_COCO_AR100,
    YD_COCO_AR_SMALL,
    YD_COCO_AR_MEDIUM,
    YD_COCO_AR_LARGE,
    YD_COCO_STAT_COUNT
};

/*
 * Evaluates detections against the ground truth of `dataset` exactly as
 * pycocotools' COCOeval.evaluate(), accumulate() and summarize() do for
 * bbox. Every image and category id of the dataset takes part, including
 * images without detections. Detections of a category id that the dataset
 * does not list are dropped. On success stats[] holds the 12 numbers, -1
 * where there is no ground truth to measure (as pycocotools prints).
 * Errors: YD_ERR_INVALID_ARGUMENT when a detection names an image id that
 * is not in the dataset (pycocotools' loadRes rejects those too) or has a
 * score that is not a finite number; YD_ERR_NO_MEMORY.
 */
int yd_coco_evaluate(const yd_coco_dataset *dataset,
                     const yd_coco_detection *detections, size_t detection_count,
                     double stats[YD_COCO_STAT_COUNT], yd_error *err);

/*
 * Returns the JSON key of summary number i ("map50_95", "map50", ...,
 * "mar100_large"), or NULL when i is out of range.
 */
const char *yd_coco_stat_key(int i);

/*
 * Formats the summary as pycocotools' summarize() prints it: 12 lines such
 * as " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.426".
 * Returns the length written, or the length needed when it does not fit
 * (as snprintf does); 2048 bytes are always enough.
 */
int yd_coco_format_summary(const double stats[YD_COCO_STAT_COUNT], char *buffer,
                           size_t size);

#endif /* YOLOD_COCO_EVAL_H */
