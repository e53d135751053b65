/*
 * COCO bbox evaluation: the reference numbers of the golden detections, and
 * small hand-made cases for each rule of pycocotools' COCOeval (crowd
 * regions, area ranges, maxDets, ties, thresholds, empty input), plus the
 * JSON reading and writing.
 */
#include <unistd.h>

#include <cjson/cJSON.h>

#include "coco_data.h"
#include "coco_eval.h"
#include "testlib.h"

#define TOLERANCE 1e-9

static yd_coco_image one_image[] = { { .id = 1 } };
static yd_coco_image two_images[] = { { .id = 7 }, { .id = 3 } };
static yd_coco_category one_category[] = { { .id = 5 } };

/* An annotation whose area is its box area. */
#define GT(ann_id, image, cat, x, y, w, h, crowd)                                   \
    { .id = ann_id, .image_id = image, .category_id = cat, .bbox = { x, y, w, h }, \
      .area = (double)(w) * (h), .iscrowd = crowd }
#define DT(image, cat, x, y, w, h, s) \
    { .image_id = image, .category_id = cat, .bbox = { x, y, w, h }, .score = s }

static yd_coco_dataset make_dataset(yd_coco_image *images, size_t image_count,
                                    yd_coco_annotation *annotations, size_t annotation_count)
{
    yd_coco_dataset dataset = {
        .images = images,
        .image_count = image_count,
        .categories = one_category,
        .category_count = 1,
        .annotations = annotations,
        .annotation_count = annotation_count,
    };

    return dataset;
}

static bool starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Evaluates and fails the test if evaluation returns an error. */
static void evaluate(const yd_coco_dataset *dataset, const yd_coco_detection *detections,
                     size_t count, double stats[YD_COCO_STAT_COUNT])
{
    yd_error error = { 0 };
    int rc = yd_coco_evaluate(dataset, detections, count, stats, &error);

    if (rc != 0)
        fprintf(stderr, "  yd_coco_evaluate: %s\n", error.message);
    CHECK_INT_EQ(rc, 0);
}

static void golden_detections_match_reference(void)
{
    static const char *const reference_keys[YD_COCO_STAT_COUNT] = {
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    };
    yd_coco_dataset dataset;
    yd_coco_detection *detections = NULL;
    size_t count = 0, size;
    double stats[YD_COCO_STAT_COUNT];
    char *reference_text;
    cJSON *reference;
    yd_error error = { 0 };

    reference_text = read_file_or_die(shared_path("golden/yolov8n-val-map.json"), &size);
    reference = cJSON_ParseWithLength(reference_text, size);
    CHECK(reference != NULL);
    CHECK_OK(yd_coco_dataset_load(shared_path("datasets/coco-val/instances.json"), &dataset, &error));
    CHECK_OK(yd_coco_results_load(shared_path("golden/yolov8n-val-detections.json"), &detections,
                                  &count, &error));
    CHECK_INT_EQ(dataset.image_count, 150);
    CHECK_INT_EQ(dataset.category_count, 80);
    CHECK_INT_EQ(dataset.annotation_count, 1384);
    CHECK_INT_EQ(count, 29729);

    evaluate(&dataset, detections, count, stats);
    for (int i = 0; i < YD_COCO_STAT_COUNT && reference; i++) {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(reference, reference_keys[i]);

        CHECK(cJSON_IsNumber(value));
        if (cJSON_IsNumber(value))
            CHECK_NEAR(stats[i], value->valuedouble, TOLERANCE);
    }
    CHECK_NEAR(stats[YD_COCO_AP], 0.4265, 0.00005);
    CHECK_NEAR(stats[YD_COCO_AP50], 0.5841, 0.00005);

    cJSON_Delete(reference);
    free(reference_text);
    free(detections);
    yd_coco_dataset_free(&dataset);
}

static void summary_format_pycocotools(void)
{
    double stats[YD_COCO_STAT_COUNT] = { 0.426474319379866, 0.5841101917592086, 0.4613, -1, 0.4855,
                                         0.6013, 0.3544, 0.5754, 0.6204, 0.3576, 0.6843, 0.8023 };
    char text[2048];
    int length = yd_coco_format_summary(stats, text, sizeof text);
    char *second_line = strchr(text, '\n') + 1;

    CHECK(length > 0);
    CHECK((size_t)length < sizeof text);
    CHECK(starts_with(text,
                      " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.426\n"));
    CHECK(starts_with(second_line,
                      " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.584\n"));
    CHECK(strstr(text, " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000\n"));
    CHECK(strstr(text, " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.354\n"));
    CHECK(strstr(text, " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.802\n"));
    CHECK_INT_EQ(length, (int)strlen(text));
    CHECK_INT_EQ(yd_coco_format_summary(stats, text, 10), length);
    CHECK_INT_EQ(strlen(text), 9);
    CHECK(strcmp(yd_coco_stat_key(YD_COCO_AP), "map50_95") == 0);
    CHECK(strcmp(yd_coco_stat_key(YD_COCO_AP50), "map50") == 0);
    CHECK(yd_coco_stat_key(YD_COCO_STAT_COUNT) == NULL);
}

static void perfect_detection_ap_one(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 10, 10, 50, 50, false) };
    yd_coco_detection dt[] = { DT(1, 5, 10, 10, 50, 50, 0.9) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, dt, 1, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP50], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP75], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_SMALL], -1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_MEDIUM], 1.0, TOLERANCE); /* 2500 px^2 */
    CHECK_NEAR(stats[YD_COCO_AP_LARGE], -1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR1], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR100], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR_SMALL], -1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR_MEDIUM], 1.0, TOLERANCE);
}

/* IoU exactly 0.5 passes the 0.50 threshold (>=) and no other. */
static void iou_threshold_inclusive(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 0, 0, 10, 10, false) };
    yd_coco_detection dt[] = { DT(1, 5, 0, 0, 10, 5, 0.9) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, dt, 1, stats);
    CHECK_NEAR(stats[YD_COCO_AP50], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP75], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP], 0.1, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR100], 0.1, TOLERANCE);
}

/*
 * Two higher-scoring detections inside a crowd region are absorbed (IoU =
 * intersection / detection area = 1) instead of counting as false
 * positives ahead of the true one.
 */
static void crowd_absorbs_detections(void)
{
    yd_coco_annotation gt[] = {
        GT(1, 1, 5, 10, 10, 50, 50, false),
        GT(2, 1, 5, 200, 200, 300, 300, true),
    };
    yd_coco_detection dt[] = {
        DT(1, 5, 220, 220, 40, 40, 0.95),
        DT(1, 5, 300, 300, 60, 60, 0.9),
        DT(1, 5, 10, 10, 50, 50, 0.8),
    };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 2);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, dt, 3, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR100], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_LARGE], -1.0, TOLERANCE); /* the crowd is not counted */
    CHECK_NEAR(stats[YD_COCO_AR1], 0.0, TOLERANCE);       /* the best one is absorbed */

    /*
     * The same region without the crowd flag is a large object that no
     * detection overlaps enough: two false positives come first, so the
     * medium object is found at precision 1/3 and recall 1/2 overall.
     */
    gt[1].iscrowd = false;
    evaluate(&dataset, dt, 3, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 17.0 / 101.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_MEDIUM], 1.0 / 3.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_LARGE], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR100], 0.5, TOLERANCE);
}

/*
 * Once a detection has a counted match, the ignored ground truth sorted
 * after it cannot take the detection away, even with a higher IoU.
 */
static void counted_match_beats_crowd(void)
{
    yd_coco_annotation gt[] = {
        GT(1, 1, 5, 0, 0, 10, 16, false), /* IoU 0.625 */
        GT(2, 1, 5, 0, 0, 20, 20, true),  /* IoU 1 as a crowd region */
    };
    yd_coco_detection dt[] = { DT(1, 5, 0, 0, 10, 10, 0.9) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 2);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, dt, 1, stats);
    CHECK_NEAR(stats[YD_COCO_AP50], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP75], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP], 0.3, TOLERANCE); /* thresholds 0.50, 0.55, 0.60 */
    CHECK_NEAR(stats[YD_COCO_AR100], 0.3, TOLERANCE);
}

/* A non-crowd object is matched once; a duplicate detection is a false positive. */
static void duplicate_detection_false_positive(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 10, 10, 50, 50, false) };
    yd_coco_detection dt[] = { DT(1, 5, 10, 10, 50, 50, 0.8), DT(1, 5, 10, 10, 50, 50, 0.9) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, dt, 2, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR1], 1.0, TOLERANCE);

    /* Behind a better-scoring false positive elsewhere, precision drops to 1/2. */
    dt[0].bbox[0] = 300;
    dt[0].score = 0.95;
    evaluate(&dataset, dt, 2, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 0.5, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR1], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR10], 1.0, TOLERANCE);
}

/*
 * Area ranges: the annotation's area field picks the range, objects outside
 * it are ignored, and an unmatched detection outside it is ignored too.
 */
static void area_ranges_ignore_outside(void)
{
    yd_coco_annotation gt[] = {
        GT(1, 1, 5, 0, 0, 40, 40, false),     /* box 1600 px^2, area field 300: small */
        GT(2, 1, 5, 200, 200, 200, 100, false), /* 20000 px^2: large */
    };
    yd_coco_detection dt[] = {
        DT(1, 5, 500, 500, 10, 10, 0.9), /* false positive, 100 px^2 */
        DT(1, 5, 0, 0, 40, 40, 0.5),
        DT(1, 5, 200, 200, 200, 100, 0.6),
    };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 2);
    double stats[YD_COCO_STAT_COUNT];

    gt[0].area = 300;
    evaluate(&dataset, dt, 3, stats);
    /* all: FP, TP, TP gives precision 1/2, 2/3; the envelope is 2/3 everywhere */
    CHECK_NEAR(stats[YD_COCO_AP], 2.0 / 3.0, TOLERANCE);
    /* small: FP (100 px^2 is small), TP; the large match is ignored */
    CHECK_NEAR(stats[YD_COCO_AP_SMALL], 0.5, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_MEDIUM], -1.0, TOLERANCE);
    /* large: the small false positive and the small match are ignored */
    CHECK_NEAR(stats[YD_COCO_AP_LARGE], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR_SMALL], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR_LARGE], 1.0, TOLERANCE);

    /* Without the large detection, recall stops at 1/2: 51 of 101 thresholds. */
    evaluate(&dataset, dt, 2, stats);
    CHECK_NEAR(stats[YD_COCO_AP_LARGE], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR100], 0.5, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP], 0.5 * 51.0 / 101.0, TOLERANCE);
}

/* AR1 and AR10 keep each image's best 1 and 10 detections per category. */
static void max_dets_truncation(void)
{
    yd_coco_annotation gt[] = {
        GT(1, 7, 5, 0, 0, 50, 50, false),
        GT(2, 7, 5, 100, 0, 50, 50, false),
        GT(3, 3, 5, 200, 0, 50, 50, false),
    };
    yd_coco_detection dt[] = {
        DT(7, 5, 0, 0, 50, 50, 0.7),
        DT(7, 5, 100, 0, 50, 50, 0.6),
        DT(3, 5, 200, 0, 50, 50, 0.5),
    };
    yd_coco_dataset dataset = make_dataset(two_images, 2, gt, 3);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, dt, 3, stats);
    CHECK_NEAR(stats[YD_COCO_AR1], 2.0 / 3.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR10], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP], 1.0, TOLERANCE);
}

/* Only the best 100 detections of an image and category are matched. */
static void hundred_detections_per_image(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 0, 0, 50, 50, false) };
    yd_coco_detection dt[101];
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    double stats[YD_COCO_STAT_COUNT];

    for (int i = 0; i < 100; i++) {
        yd_coco_detection miss = DT(1, 5, 1000 + 60 * i, 0, 50, 50, 0.9 - 0.001 * i);

        dt[i] = miss;
    }
    dt[100] = (yd_coco_detection)DT(1, 5, 0, 0, 50, 50, 0.5);
    evaluate(&dataset, dt, 101, stats);
    CHECK_NEAR(stats[YD_COCO_AR100], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP], 0.0, TOLERANCE);

    /* As the 100th best it is matched, behind 99 false positives. */
    dt[99].score = 0.1;
    evaluate(&dataset, dt, 101, stats);
    CHECK_NEAR(stats[YD_COCO_AR100], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP], 0.01, TOLERANCE);
}

/* Equal scores keep file order, as numpy's stable mergesort does. */
static void equal_scores_keep_file_order(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 0, 0, 50, 50, false) };
    yd_coco_detection miss_first[] = { DT(1, 5, 500, 0, 50, 50, 0.5), DT(1, 5, 0, 0, 50, 50, 0.5) };
    yd_coco_detection hit_first[] = { DT(1, 5, 0, 0, 50, 50, 0.5), DT(1, 5, 500, 0, 50, 50, 0.5) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, miss_first, 2, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 0.5, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR1], 0.0, TOLERANCE);
    evaluate(&dataset, hit_first, 2, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR1], 1.0, TOLERANCE);
}

static void empty_detections_zero_or_minus_one(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 10, 10, 50, 50, false) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    yd_coco_dataset no_truth = make_dataset(one_image, 1, NULL, 0);
    yd_coco_detection dt[] = { DT(1, 5, 10, 10, 50, 50, 0.9) };
    double stats[YD_COCO_STAT_COUNT];

    evaluate(&dataset, NULL, 0, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP50], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_SMALL], -1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_MEDIUM], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AP_LARGE], -1.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR1], 0.0, TOLERANCE);
    CHECK_NEAR(stats[YD_COCO_AR_LARGE], -1.0, TOLERANCE);

    /* No ground truth at all: nothing to average, even with detections. */
    evaluate(&no_truth, dt, 1, stats);
    for (int i = 0; i < YD_COCO_STAT_COUNT; i++)
        CHECK_NEAR(stats[i], -1.0, TOLERANCE);
}

static void unknown_ids_rejected_or_dropped(void)
{
    yd_coco_annotation gt[] = { GT(1, 1, 5, 10, 10, 50, 50, false) };
    yd_coco_dataset dataset = make_dataset(one_image, 1, gt, 1);
    yd_coco_detection unknown_image[] = { DT(2, 5, 10, 10, 50, 50, 0.9) };
    yd_coco_detection unknown_category[] = {
        DT(1, 6, 500, 10, 50, 50, 0.95),
        DT(1, 5, 10, 10, 50, 50, 0.9),
    };
    yd_coco_detection nan_score[] = { DT(1, 5, 10, 10, 50, 50, NAN) };
    double stats[YD_COCO_STAT_COUNT];
    yd_error error = { 0 };

    CHECK_INT_EQ(yd_coco_evaluate(&dataset, unknown_image, 1, stats, &error),
                 YD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(error.message, "image_id 2") != NULL);
    CHECK_INT_EQ(yd_coco_evaluate(&dataset, nan_score, 1, stats, &error), YD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(error.message, "score") != NULL);

    evaluate(&dataset, unknown_category, 2, stats);
    CHECK_NEAR(stats[YD_COCO_AP], 1.0, TOLERANCE);
}

static void instances_json_errors(void)
{
    static const char *const cases[][2] = {
        { "{\"images\": [", "invalid JSON at line 1, column" },
        { "{\"images\": [],\n \"categories\": [] }", "missing \"annotations\"" },
        { "[]", "expected a JSON object" },
        { "{\"images\": [{\"file_name\": \"a.jpg\"}], \"categories\": [], \"annotations\": []}",
          "images[0]: missing or non-integer \"id\"" },
        { "{\"images\": [{\"id\": 1.5}], \"categories\": [], \"annotations\": []}",
          "images[0]: missing or non-integer \"id\"" },
        { "{\"images\": [{\"id\": 9007199254740992}], \"categories\": [], \"annotations\": []}",
          "images[0]: \"id\" is out of range (expected an integer of magnitude below 2^53)" },
        { "{\"images\": [], \"categories\": [], \"annotations\": [{\"id\": 1, "
          "\"image_id\": -1e300, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"area\": 4}]}",
          "annotations[0]: \"image_id\" is out of range" },
        { "{\"images\": [], \"categories\": [{\"id\": 1}], \"annotations\": [{\"id\": 1, "
          "\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3], \"area\": 4}]}",
          "annotations[0]: \"bbox\" must be an array of 4 numbers" },
        { "{\"images\": [], \"categories\": [], \"annotations\": [{\"id\": 1, \"image_id\": 1, "
          "\"category_id\": 1, \"bbox\": [1, 2, 3, 4]}]}",
          "annotations[0]: missing or non-numeric \"area\"" },
        { "{\"images\": [], \"categories\": [], \"annotations\": []} x",
          "unexpected data after the JSON value at byte offset 52 (line 1, column 53)" },
    };
    yd_coco_dataset dataset;
    yd_error error = { 0 };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = yd_coco_dataset_parse(cases[i][0], strlen(cases[i][0]), "test.json", &dataset,
                                       &error);

        CHECK_INT_EQ(rc, YD_ERR_INVALID_ARGUMENT);
        if (!strstr(error.message, cases[i][1]))
            fprintf(stderr, "  case %zu: message '%s' lacks '%s'\n", i, error.message, cases[i][1]);
        CHECK(strstr(error.message, cases[i][1]) != NULL);
        CHECK(starts_with(error.message, "test.json: "));
    }
    CHECK_INT_EQ(yd_coco_dataset_load("/nonexistent/instances.json", &dataset, &error), YD_ERR_IO);
}

static void instances_json_fields(void)
{
    static const char text[] =
        "{\"images\": [{\"id\": 9, \"file_name\": \"a.jpg\", \"width\": 640, \"height\": 480},"
        "              {\"id\": 4, \"file_name\": \"b.jpg\"}],"
        " \"categories\": [{\"id\": 3, \"name\": \"car\"}],"
        " \"annotations\": [{\"id\": 11, \"image_id\": 4, \"category_id\": 3,"
        "                    \"bbox\": [1.5, 2, 3, 4], \"area\": 10.25, \"iscrowd\": 1},"
        "                   {\"id\": 12, \"image_id\": 9, \"category_id\": 3,"
        "                    \"bbox\": [0, 0, 1, 1], \"area\": 1, \"segmentation\": [[0, 0]]}]}";
    yd_coco_dataset dataset;
    yd_error error = { 0 };

    CHECK_OK(yd_coco_dataset_parse(text, strlen(text), "test.json", &dataset, &error));
    CHECK_INT_EQ(dataset.image_count, 2);
    CHECK_INT_EQ(dataset.images[0].id, 9);
    CHECK(strcmp(dataset.images[0].file_name, "a.jpg") == 0);
    CHECK_INT_EQ(dataset.images[0].width, 640);
    CHECK_INT_EQ(dataset.images[1].height, 0);
    CHECK(strcmp(dataset.categories[0].name, "car") == 0);
    CHECK_INT_EQ(dataset.annotation_count, 2);
    CHECK_NEAR(dataset.annotations[0].bbox[0], 1.5, 0);
    CHECK_NEAR(dataset.annotations[0].area, 10.25, 0);
    CHECK(dataset.annotations[0].iscrowd);
    CHECK(!dataset.annotations[1].iscrowd);

    CHECK_OK(yd_coco_dataset_truncate(&dataset, 1, &error));
    CHECK_INT_EQ(dataset.image_count, 1);
    CHECK_INT_EQ(dataset.annotation_count, 1);
    CHECK_INT_EQ(dataset.annotations[0].id, 12);
    yd_coco_dataset_free(&dataset);
    CHECK(dataset.images == NULL);
}

static void results_json_round_trip(void)
{
    yd_coco_detection saved[] = {
        DT(802, 82, 242.3354, 0.0, 170.12749, 1e-4, 0.914036),
        DT(9, 1, -0.0001, 12.5, 3.0, 4.0, 0.000004),
    };
    yd_coco_detection *loaded = NULL;
    size_t count = 0, size;
    char path[] = "/tmp/yolod-test-results.XXXXXX";
    char *text;
    int fd = mkstemp(path);
    yd_error error = { 0 };

    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(yd_coco_results_save(path, saved, 2, &error));
    text = read_file_or_die(path, &size);
    CHECK(strstr(text, "[{\"image_id\": 802, \"category_id\": 82, "
                       "\"bbox\": [242.335, 0.0, 170.127, 0.0], \"score\": 0.91404}, ") == text);
    CHECK(strstr(text, "\"bbox\": [-0.0, 12.5, 3.0, 4.0], \"score\": 0.0}]") != NULL);
    free(text);

    CHECK_OK(yd_coco_results_load(path, &loaded, &count, &error));
    CHECK_INT_EQ(count, 2);
    if (count == 2) {
        CHECK_INT_EQ(loaded[0].image_id, 802);
        CHECK_INT_EQ(loaded[0].category_id, 82);
        CHECK_NEAR(loaded[0].bbox[0], 242.335, 0);
        CHECK_NEAR(loaded[0].score, 0.91404, 0);
        CHECK_NEAR(loaded[1].bbox[1], 12.5, 0);
    }
    free(loaded);
    unlink(path);

    CHECK_INT_EQ(yd_coco_results_save("/nonexistent/dir/results.json", saved, 2, &error), YD_ERR_IO);
    CHECK(strstr(error.message, "/nonexistent/dir/results.json") != NULL);
}

/* Rounding agrees with Python's round(): exact binary ties go to even. */
static void results_round_like_python(void)
{
    yd_coco_detection detections[] = {
        DT(1, 1, 242.3354, 1.0005, 0.0625, -0.0004, 0.914036),
        DT(1, 1, 1e6 + 0.0005, 0.1, 0.2, 0.3, 0.000005),
    };

    yd_coco_results_round(detections, 2);
    CHECK(detections[0].bbox[0] == 242.335);
    CHECK(detections[0].bbox[1] == 1.0);   /* 1.0005 is 1.000499999... in binary */
    CHECK(detections[0].bbox[2] == 0.062); /* exact tie, to even */
    CHECK(detections[0].bbox[3] == 0.0);
    CHECK(signbit(detections[0].bbox[3]));
    CHECK(detections[0].score == 0.91404);
    CHECK(detections[1].bbox[0] == 1000000.0);
    CHECK(detections[1].bbox[1] == 0.1);
    CHECK(detections[1].score == 0.00001);
}

static void results_json_errors(void)
{
    static const char *const cases[][2] = {
        { "{}", "expected a JSON array" },
        { "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1]}]",
          "results[0]: missing or non-numeric \"score\"" },
        { "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1},\n"
          " {\"image_id\": \"1\", \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1}]",
          "results[1]: missing or non-integer \"image_id\"" },
        { "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, \"1\"], \"score\": 1}]",
          "\"bbox\" must be an array of 4 numbers" },
        { "[\n{\"image_id\": 1,,}]", "invalid JSON at line 2, column" },
        { "[{\"image_id\": 1, \"category_id\": 1e20, \"bbox\": [0, 0, 1, 1], \"score\": 1}]",
          "results[0]: \"category_id\" is out of range" },
        { "[]\n[{\"image_id\": 1}]", "unexpected data after the JSON value at byte offset 3 "
          "(line 2, column 1)" },
        { "[] \t\r\n]", "at byte offset 6 (line 2, column 1)" },
    };
    yd_coco_detection *detections = NULL;
    size_t count = 7;
    yd_error error = { 0 };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = yd_coco_results_parse(cases[i][0], strlen(cases[i][0]), "r.json", &detections,
                                       &count, &error);

        CHECK_INT_EQ(rc, YD_ERR_INVALID_ARGUMENT);
        if (!strstr(error.message, cases[i][1]))
            fprintf(stderr, "  case %zu: message '%s' lacks '%s'\n", i, error.message, cases[i][1]);
        CHECK(strstr(error.message, cases[i][1]) != NULL);
        CHECK(detections == NULL);
        CHECK_INT_EQ(count, 0);
    }

    CHECK_OK(yd_coco_results_parse("[]", 2, "r.json", &detections, &count, &error));
    CHECK_INT_EQ(count, 0);
    CHECK(detections == NULL);
    CHECK_OK(yd_coco_results_parse("\n[] \t\r\n", 7, "r.json", &detections, &count, &error));
    CHECK_INT_EQ(count, 0);
}

/* Ids just below 2^53 in magnitude are still accepted. */
static void results_json_largest_id(void)
{
    static const char text[] =
        "[{\"image_id\": 9007199254740991, \"category_id\": -9007199254740991, "
        "\"bbox\": [0, 0, 1, 1], \"score\": 1}]";
    yd_coco_detection *detections = NULL;
    size_t count = 0;
    yd_error error = { 0 };

    CHECK_OK(yd_coco_results_parse(text, strlen(text), "r.json", &detections, &count, &error));
    CHECK_INT_EQ(count, 1);
    if (count == 1) {
        CHECK(detections[0].image_id == INT64_C(9007199254740991));
        CHECK(detections[0].category_id == -INT64_C(9007199254740991));
    }
    free(detections);
}

int main(void)
{
    RUN(golden_detections_match_reference);
    RUN(summary_format_pycocotools);
    RUN(perfect_detection_ap_one);
    RUN(iou_threshold_inclusive);
    RUN(crowd_absorbs_detections);
    RUN(counted_match_beats_crowd);
    RUN(duplicate_detection_false_positive);
    RUN(area_ranges_ignore_outside);
    RUN(max_dets_truncation);
    RUN(hundred_detections_per_image);
    RUN(equal_scores_keep_file_order);
    RUN(empty_detections_zero_or_minus_one);
    RUN(unknown_ids_rejected_or_dropped);
    RUN(instances_json_errors);
    RUN(instances_json_fields);
    RUN(results_json_round_trip);
    RUN(results_round_like_python);
    RUN(results_json_errors);
    RUN(results_json_largest_id);
    return TEST_SUMMARY();
}
