/*
 * COCO bbox mAP, step for step as pycocotools' COCOeval (evaluate,
 * accumulate, summarize) computes it, so that the 12 numbers agree to the
 * last bits:
 *
 * - Every image id and category id of the dataset takes part. In each
 *   image, the detections of a category are sorted by score (stable, as
 *   numpy's mergesort) and cut to 100. At each IoU threshold, each detection
 *   in turn takes the best ground truth that is still free. A crowd region
 *   is never used up, so it may absorb any number of detections.
 * - Crowd regions and objects outside the area range are "ignored": a
 *   detection matched to one is neither a true nor a false positive, and an
 *   unmatched detection outside the area range is ignored too.
 * - Per category, area range and maxDets, the per-image top-maxDets
 *   detections are pooled and stable-sorted by score; cumulative TP/FP give
 *   recall and precision, precision is made non-increasing from the right
 *   and read at 101 recall thresholds (first index whose recall reaches the
 *   threshold, numpy's searchsorted side="left"; 0 past the last).
 * - A summary number is the mean of every value that was computed; a
 *   category without non-ignored ground truth in the area range is left out,
 *   and a number with nothing to average is -1.
 *
 * The work is done one category at a time, so memory stays proportional to
 * the detections of one category.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco_eval.h"
#include "util.h"

#define IOU_COUNT 10
#define RECALL_COUNT 101
#define AREA_COUNT 4
#define MAX_DETS_COUNT 3

/* Per image and category, only the best-scoring 100 detections are matched. */
#define DETECTIONS_PER_IMAGE 100

static const int max_dets[MAX_DETS_COUNT] = { 1, 10, 100 };
#define MAX_DETS_ALL 2 /* index of 100 in max_dets */

/* all, small, medium, large in square pixels; 1e10 is pycocotools' 1e5 ** 2. */
static const double area_ranges[AREA_COUNT][2] = {
    { 0.0, 1e10 },
    { 0.0, 32.0 * 32.0 },
    { 32.0 * 32.0, 96.0 * 96.0 },
    { 96.0 * 96.0, 1e10 },
};

static const char *const stat_keys[YD_COCO_STAT_COUNT] = {
    "map50_95", "map50", "map75",
    "map50_95_small", "map50_95_medium", "map50_95_large",
    "mar1", "mar10", "mar100",
    "mar100_small", "mar100_medium", "mar100_large",
};

/* Ground-truth and detection indices grouped by (category, image). */
struct groups {
    size_t image_count;
    size_t category_count;
    int64_t *image_ids;    /* sorted, unique */
    int64_t *category_ids; /* sorted, unique */
    size_t *gt_start;      /* image_count * category_count + 1 offsets */
    size_t *gt_index;      /* annotation indices, file order within a group */
    size_t *dt_start;
    size_t *dt_index;      /* detection indices, file order within a group */
};

/* Matching results of one category, for all its images. */
struct category_matches {
    size_t count;             /* detections kept (at most 100 per image) */
    size_t capacity;
    double *scores;           /* [count], per image in image order, best first */
    size_t *image_end;        /* [image_count] end offset of each image's run */
    uint8_t *matched;         /* [AREA][IOU][capacity]: matched a ground truth */
    uint8_t *ignored;         /* [AREA][IOU][capacity] */
    size_t positive_count[AREA_COUNT]; /* non-ignored ground truth */
};

/* Sums for the means of summarize(). */
struct summary_sums {
    long double sum[YD_COCO_STAT_COUNT];
    size_t count[YD_COCO_STAT_COUNT];
};

/* Scratch of one (image, category) pair, sized for the largest group. */
struct image_scratch {
    size_t *dt_sorted;   /* detection indices, best score first */
    size_t *gt_sorted;   /* annotation indices, non-ignored first */
    uint8_t *gt_ignore;  /* by sorted position */
    uint8_t *gt_taken;   /* by sorted position, for one threshold */
    double *ious;        /* [detections][ground truths in file order] */
};

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/*
 * qsort_r comparators: higher score first, and equal scores keep their
 * index order, which makes the result that of a stable sort (numpy's
 * kind="mergesort").
 */
static int compare_detection_score(const void *a, const void *b, void *context)
{
    const yd_coco_detection *detections = context;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    double si = detections[i].score, sj = detections[j].score;

    if (si != sj)
        return si > sj ? -1 : 1;
    return (i > j) - (i < j);
}

static int compare_position_score(const void *a, const void *b, void *context)
{
    const double *scores = context;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    double si = scores[i], sj = scores[j];

    if (si != sj)
        return si > sj ? -1 : 1;
    return (i > j) - (i < j);
}

/*
 * numpy.linspace(start, stop, num): start + i * step with the last value
 * set to stop. The recall thresholds are compared with tp / npig, so they
 * must be these exact doubles (0.07 is 7 * 0.01 = 0.07000000000000001).
 */
static void linspace(double start, double stop, int num, double *out)
{
    double step = (stop - start) / (double)(num - 1);

    for (int i = 0; i < num; i++)
        out[i] = (double)i * step + start;
    out[num - 1] = stop;
}

/* Returns the position of id in the sorted array, or -1. */
static long find_id(const int64_t *ids, size_t count, int64_t id)
{
    const int64_t *hit = bsearch(&id, ids, count, sizeof *ids, compare_int64);

    return hit ? (long)(hit - ids) : -1;
}

/* Sorts and removes duplicates in place; returns the new count. */
static size_t sort_unique(int64_t *ids, size_t count)
{
    size_t kept = 0;

    qsort(ids, count, sizeof *ids, compare_int64);
    for (size_t i = 0; i < count; i++)
        if (kept == 0 || ids[kept - 1] != ids[i])
            ids[kept++] = ids[i];
    return kept;
}

/*
 * Counting sort of items into groups keyed by category * image_count +
 * image; keys[i] is SIZE_MAX for an item that takes no part. File order is
 * kept within a group.
 */
static int group_by_key(const size_t *keys, size_t item_count, size_t key_count,
                        size_t **start_out, size_t **index_out)
{
    size_t *start = calloc(key_count + 1, sizeof *start);
    size_t *index = malloc((item_count ? item_count : 1) * sizeof *index);
    size_t *fill = NULL;

    if (!start || !index)
        goto fail;
    for (size_t i = 0; i < item_count; i++)
        if (keys[i] != SIZE_MAX)
            start[keys[i] + 1]++;
    for (size_t k = 0; k < key_count; k++)
        start[k + 1] += start[k];

    fill = malloc((key_count ? key_count : 1) * sizeof *fill);
    if (!fill)
        goto fail;
    memcpy(fill, start, key_count * sizeof *fill);
    for (size_t i = 0; i < item_count; i++)
        if (keys[i] != SIZE_MAX)
            index[fill[keys[i]]++] = i;
    free(fill);

    *start_out = start;
    *index_out = index;
    return 0;

fail:
    free(start);
    free(index);
    return YD_ERR_NO_MEMORY;
}

static void groups_free(struct groups *groups)
{
    free(groups->image_ids);
    free(groups->category_ids);
    free(groups->gt_start);
    free(groups->gt_index);
    free(groups->dt_start);
    free(groups->dt_index);
}

/* Collects the dataset's ids and groups annotations and detections by them. */
static int groups_build(const yd_coco_dataset *dataset, const yd_coco_detection *detections,
                        size_t detection_count, struct groups *groups, yd_error *err)
{
    size_t key_count, item_count;
    size_t *keys = NULL;
    int rc = YD_ERR_NO_MEMORY;

    memset(groups, 0, sizeof *groups);
    groups->image_ids = malloc((dataset->image_count + 1) * sizeof *groups->image_ids);
    groups->category_ids = malloc((dataset->category_count + 1) * sizeof *groups->category_ids);
    if (!groups->image_ids || !groups->category_ids)
        goto oom;
    for (size_t i = 0; i < dataset->image_count; i++)
        groups->image_ids[i] = dataset->images[i].id;
    for (size_t i = 0; i < dataset->category_count; i++)
        groups->category_ids[i] = dataset->categories[i].id;
    groups->image_count = sort_unique(groups->image_ids, dataset->image_count);
    groups->category_count = sort_unique(groups->category_ids, dataset->category_count);

    if (groups->image_count && groups->category_count > SIZE_MAX / 2 / groups->image_count)
        goto oom;
    key_count = groups->image_count * groups->category_count;
    item_count = dataset->annotation_count > detection_count ? dataset->annotation_count
                                                             : detection_count;
    keys = malloc((item_count ? item_count : 1) * sizeof *keys);
    if (!keys)
        goto oom;

    for (size_t i = 0; i < dataset->annotation_count; i++) {
        const yd_coco_annotation *ann = &dataset->annotations[i];
        long image = find_id(groups->image_ids, groups->image_count, ann->image_id);
        long category = find_id(groups->category_ids, groups->category_count, ann->category_id);

        keys[i] = image < 0 || category < 0
                      ? SIZE_MAX
                      : (size_t)category * groups->image_count + (size_t)image;
    }
    if (group_by_key(keys, dataset->annotation_count, key_count, &groups->gt_start,
                     &groups->gt_index) < 0)
        goto oom;

    for (size_t i = 0; i < detection_count; i++) {
        const yd_coco_detection *det = &detections[i];
        long image = find_id(groups->image_ids, groups->image_count, det->image_id);
        long category = find_id(groups->category_ids, groups->category_count, det->category_id);

        if (image < 0) {
            rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                              "detection %zu has image_id %lld, which is not an image of the annotations",
                              i, (long long)det->image_id);
            goto fail;
        }
        if (!isfinite(det->score)) {
            rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                              "detection %zu has a score that is not a finite number", i);
            goto fail;
        }
        if (!isfinite(det->bbox[0]) || !isfinite(det->bbox[1]) || !isfinite(det->bbox[2]) ||
            !isfinite(det->bbox[3])) {
            rc = yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                              "detection %zu has a bbox value that is not a finite number", i);
            goto fail;
        }
        keys[i] = category < 0 ? SIZE_MAX : (size_t)category * groups->image_count + (size_t)image;
    }
    if (group_by_key(keys, detection_count, key_count, &groups->dt_start, &groups->dt_index) < 0)
        goto oom;

    free(keys);
    return 0;

oom:
    rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory grouping %zu annotations and %zu detections",
                      dataset->annotation_count, detection_count);
fail:
    free(keys);
    groups_free(groups);
    return rc;
}

/* maskApi bbIou in double precision; a crowd region divides by the detection's area. */
static double box_iou(const double *dt, const double *gt, bool crowd)
{
    double w = fmin(dt[0] + dt[2], gt[0] + gt[2]) - fmax(dt[0], gt[0]);
    double h = fmin(dt[1] + dt[3], gt[1] + gt[3]) - fmax(dt[1], gt[1]);
    double dt_area = dt[2] * dt[3];
    double gt_area = gt[2] * gt[3];
    double inter, uni;

    if (!(w > 0) || !(h > 0))
        return 0.0;
    inter = w * h;
    uni = crowd ? dt_area : dt_area + gt_area - inter;
    return inter / uni;
}

static size_t flag_offset(const struct category_matches *cm, int area, int t, size_t pos)
{
    return ((size_t)area * IOU_COUNT + (size_t)t) * cm->capacity + pos;
}

/*
 * evaluateImg for one image and category over all area ranges: greedy
 * matching at each IoU threshold, results appended to cm.
 */
static void match_image(const yd_coco_dataset *dataset, const yd_coco_detection *detections,
                        const size_t *gt_items, size_t gt_count, const size_t *dt_items,
                        size_t dt_all, const double *iou_thresholds,
                        struct image_scratch *scratch, struct category_matches *cm)
{
    size_t dt_count = dt_all < DETECTIONS_PER_IMAGE ? dt_all : DETECTIONS_PER_IMAGE;
    size_t base = cm->count;

    memcpy(scratch->dt_sorted, dt_items, dt_all * sizeof *dt_items);
    qsort_r(scratch->dt_sorted, dt_all, sizeof *scratch->dt_sorted, compare_detection_score,
            (void *)detections);

    for (size_t d = 0; d < dt_count; d++) {
        const double *dt_box = detections[scratch->dt_sorted[d]].bbox;

        cm->scores[base + d] = detections[scratch->dt_sorted[d]].score;
        for (size_t g = 0; g < gt_count; g++) {
            const yd_coco_annotation *gt = &dataset->annotations[gt_items[g]];

            scratch->ious[d * gt_count + g] = box_iou(dt_box, gt->bbox, gt->iscrowd);
        }
    }

    for (int a = 0; a < AREA_COUNT; a++) {
        double lo = area_ranges[a][0], hi = area_ranges[a][1];
        size_t *gt_file_pos = scratch->gt_sorted;
        size_t sorted = 0;

        /* Stable order: ground truth to count first, then ignored. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t g = 0; g < gt_count; g++) {
                const yd_coco_annotation *gt = &dataset->annotations[gt_items[g]];
                int ignore = gt->iscrowd || gt->area < lo || gt->area > hi;

                if (ignore != pass)
                    continue;
                gt_file_pos[sorted] = g;
                scratch->gt_ignore[sorted] = (uint8_t)ignore;
                sorted++;
                if (!ignore)
                    cm->positive_count[a]++;
            }
        }

        for (int t = 0; t < IOU_COUNT; t++) {
            memset(scratch->gt_taken, 0, gt_count);
            for (size_t d = 0; d < dt_count; d++) {
                const yd_coco_detection *det = &detections[scratch->dt_sorted[d]];
                const double *row = &scratch->ious[d * gt_count];
                double best = fmin(iou_thresholds[t], 1 - 1e-10);
                double dt_area = det->bbox[2] * det->bbox[3];
                size_t at = flag_offset(cm, a, t, base + d);
                long m = -1;
                bool matched;

                for (size_t g = 0; g < gt_count; g++) {
                    const yd_coco_annotation *gt = &dataset->annotations[gt_items[gt_file_pos[g]]];

                    if (scratch->gt_taken[g] && !gt->iscrowd)
                        continue;
                    /* Ignored ones are sorted last: stop once a counted match exists. */
                    if (m > -1 && !scratch->gt_ignore[m] && scratch->gt_ignore[g])
                        break;
                    if (row[gt_file_pos[g]] < best)
                        continue;
                    best = row[gt_file_pos[g]];
                    m = (long)g;
                }

                /*
                 * pycocotools records the matched annotation's id and tests it
                 * against 0, so a match to an annotation with id 0 counts as
                 * no match; kept for identical numbers.
                 */
                matched = m > -1 && dataset->annotations[gt_items[gt_file_pos[m]]].id != 0;
                if (m > -1)
                    scratch->gt_taken[m] = 1;
                cm->matched[at] = matched;
                cm->ignored[at] = m > -1 ? scratch->gt_ignore[m] : 0;
                if (!matched && (dt_area < lo || dt_area > hi))
                    cm->ignored[at] = 1;
            }
        }
    }
    cm->count = base + dt_count;
}

/*
 * accumulate() for one category: precision at the recall thresholds and
 * final recall for each area range, maxDets and IoU threshold, added to the
 * sums of the summary numbers they feed.
 */
static void accumulate_category(const struct category_matches *cm, size_t image_count,
                               const double *recall_thresholds, int t50, int t75,
                               size_t *order, double *precision, double *recall,
                               struct summary_sums *sums)
{
    for (int m = 0; m < MAX_DETS_COUNT; m++) {
        size_t n = 0, run_start = 0;

        /* Pool each image's best max_dets[m], then a stable sort by score. */
        for (size_t i = 0; i < image_count; i++) {
            size_t end = cm->image_end[i];

            for (size_t pos = run_start; pos < end && pos - run_start < (size_t)max_dets[m]; pos++)
                order[n++] = pos;
            run_start = end;
        }
        qsort_r(order, n, sizeof *order, compare_position_score, cm->scores);

        for (int a = 0; a < AREA_COUNT; a++) {
            double positives = (double)cm->positive_count[a];

            if (cm->positive_count[a] == 0)
                continue;
            if (m != MAX_DETS_ALL && a != 0)
                continue; /* no summary number reads these */

            for (int t = 0; t < IOU_COUNT; t++) {
                const uint8_t *matched = &cm->matched[flag_offset(cm, a, t, 0)];
                const uint8_t *ignored = &cm->ignored[flag_offset(cm, a, t, 0)];
                double tp = 0, fp = 0, final_recall;
                size_t k = 0;

                for (size_t j = 0; j < n; j++) {
                    size_t pos = order[j];

                    if (!ignored[pos]) {
                        if (matched[pos])
                            tp += 1;
                        else
                            fp += 1;
                    }
                    recall[j] = tp / positives;
                    precision[j] = tp / (fp + tp + 2.220446049250313e-16); /* np.spacing(1) */
                }
                final_recall = n ? recall[n - 1] : 0.0;

                if (a == 0 && m == 0) {
                    sums->sum[YD_COCO_AR1] += final_recall;
                    sums->count[YD_COCO_AR1]++;
                }
                if (a == 0 && m == 1) {
                    sums->sum[YD_COCO_AR10] += final_recall;
                    sums->count[YD_COCO_AR10]++;
                }
                if (m != MAX_DETS_ALL)
                    continue;
                sums->sum[YD_COCO_AR100 + a] += final_recall;
                sums->count[YD_COCO_AR100 + a]++;

                for (size_t j = n; j-- > 1;)
                    if (precision[j] > precision[j - 1])
                        precision[j - 1] = precision[j];

                for (int r = 0; r < RECALL_COUNT; r++) {
                    double q;

                    while (k < n && recall[k] < recall_thresholds[r])
                        k++;
                    q = k < n ? precision[k] : 0.0;
                    if (a == 0) {
                        sums->sum[YD_COCO_AP] += q;
                        sums->count[YD_COCO_AP]++;
                        if (t == t50) {
                            sums->sum[YD_COCO_AP50] += q;
                            sums->count[YD_COCO_AP50]++;
                        }
                        if (t == t75) {
                            sums->sum[YD_COCO_AP75] += q;
                            sums->count[YD_COCO_AP75]++;
                        }
                    } else {
                        sums->sum[YD_COCO_AP_SMALL + a - 1] += q;
                        sums->count[YD_COCO_AP_SMALL + a - 1]++;
                    }
                }
            }
        }
    }
}

/* Finds the threshold equal to value, as summarize() does with ==; -1 if none. */
static int find_threshold(const double *thresholds, double value)
{
    for (int t = 0; t < IOU_COUNT; t++)
        if (thresholds[t] == value)
            return t;
    return -1;
}

int yd_coco_evaluate(const yd_coco_dataset *dataset,
                     const yd_coco_detection *detections, size_t detection_count,
                     double stats[YD_COCO_STAT_COUNT], yd_error *err)
{
    struct groups groups;
    struct category_matches cm = { 0 };
    struct image_scratch scratch = { 0 };
    struct summary_sums sums = { 0 };
    double iou_thresholds[IOU_COUNT], recall_thresholds[RECALL_COUNT];
    size_t max_group_gt = 0, max_group_dt = 0, max_category_dt = 0;
    size_t *order = NULL;
    double *precision = NULL, *recall = NULL;
    int t50, t75;
    int rc;

    if (!dataset || !stats || (detection_count && !detections))
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "yd_coco_evaluate: NULL argument");

    rc = groups_build(dataset, detections, detection_count, &groups, err);
    if (rc < 0)
        return rc;

    linspace(0.5, 0.95, IOU_COUNT, iou_thresholds);
    linspace(0.0, 1.0, RECALL_COUNT, recall_thresholds);
    t50 = find_threshold(iou_thresholds, 0.5);
    t75 = find_threshold(iou_thresholds, 0.75);

    /* Sizes of the largest group and of the largest category's kept detections. */
    for (size_t c = 0; c < groups.category_count; c++) {
        size_t kept = 0;

        for (size_t i = 0; i < groups.image_count; i++) {
            size_t key = c * groups.image_count + i;
            size_t gt_n = groups.gt_start[key + 1] - groups.gt_start[key];
            size_t dt_n = groups.dt_start[key + 1] - groups.dt_start[key];

            max_group_gt = gt_n > max_group_gt ? gt_n : max_group_gt;
            max_group_dt = dt_n > max_group_dt ? dt_n : max_group_dt;
            kept += dt_n < DETECTIONS_PER_IMAGE ? dt_n : DETECTIONS_PER_IMAGE;
        }
        max_category_dt = kept > max_category_dt ? kept : max_category_dt;
    }

    cm.capacity = max_category_dt ? max_category_dt : 1;
    cm.scores = malloc(cm.capacity * sizeof *cm.scores);
    cm.image_end = malloc((groups.image_count + 1) * sizeof *cm.image_end);
    cm.matched = malloc((size_t)AREA_COUNT * IOU_COUNT * cm.capacity);
    cm.ignored = malloc((size_t)AREA_COUNT * IOU_COUNT * cm.capacity);
    order = malloc(cm.capacity * sizeof *order);
    precision = malloc(cm.capacity * sizeof *precision);
    recall = malloc(cm.capacity * sizeof *recall);
    scratch.dt_sorted = malloc((max_group_dt + 1) * sizeof *scratch.dt_sorted);
    scratch.gt_sorted = malloc((max_group_gt + 1) * sizeof *scratch.gt_sorted);
    scratch.gt_ignore = malloc(max_group_gt + 1);
    scratch.gt_taken = malloc(max_group_gt + 1);
    scratch.ious = malloc((DETECTIONS_PER_IMAGE * max_group_gt + 1) * sizeof *scratch.ious);
    if (!cm.scores || !cm.image_end || !cm.matched || !cm.ignored || !order || !precision ||
        !recall || !scratch.dt_sorted || !scratch.gt_sorted || !scratch.gt_ignore ||
        !scratch.gt_taken || !scratch.ious) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for %zu detections of one category",
                          max_category_dt);
        goto cleanup;
    }

    for (size_t c = 0; c < groups.category_count; c++) {
        cm.count = 0;
        memset(cm.positive_count, 0, sizeof cm.positive_count);

        for (size_t i = 0; i < groups.image_count; i++) {
            size_t key = c * groups.image_count + i;
            size_t gt_first = groups.gt_start[key], gt_n = groups.gt_start[key + 1] - gt_first;
            size_t dt_first = groups.dt_start[key], dt_n = groups.dt_start[key + 1] - dt_first;

            if (gt_n || dt_n)
                match_image(dataset, detections, &groups.gt_index[gt_first], gt_n,
                            &groups.dt_index[dt_first], dt_n, iou_thresholds, &scratch, &cm);
            cm.image_end[i] = cm.count;
        }

        accumulate_category(&cm, groups.image_count, recall_thresholds, t50, t75, order,
                            precision, recall, &sums);
    }

    for (int s = 0; s < YD_COCO_STAT_COUNT; s++)
        stats[s] = sums.count[s] ? (double)(sums.sum[s] / (long double)sums.count[s]) : -1.0;
    rc = 0;

cleanup:
    free(cm.scores);
    free(cm.image_end);
    free(cm.matched);
    free(cm.ignored);
    free(order);
    free(precision);
    free(recall);
    free(scratch.dt_sorted);
    free(scratch.gt_sorted);
    free(scratch.gt_ignore);
    free(scratch.gt_taken);
    free(scratch.ious);
    groups_free(&groups);
    return rc;
}

const char *yd_coco_stat_key(int i)
{
    return i >= 0 && i < YD_COCO_STAT_COUNT ? stat_keys[i] : NULL;
}

int yd_coco_format_summary(const double stats[YD_COCO_STAT_COUNT], char *buffer, size_t size)
{
    static const struct {
        int precision; /* 1: Average Precision, 0: Average Recall */
        const char *iou;
        const char *area;
        int max_dets;
    } rows[YD_COCO_STAT_COUNT] = {
        { 1, "0.50:0.95", "all", 100 },   { 1, "0.50", "all", 100 },
        { 1, "0.75", "all", 100 },        { 1, "0.50:0.95", "small", 100 },
        { 1, "0.50:0.95", "medium", 100 }, { 1, "0.50:0.95", "large", 100 },
        { 0, "0.50:0.95", "all", 1 },     { 0, "0.50:0.95", "all", 10 },
        { 0, "0.50:0.95", "all", 100 },   { 0, "0.50:0.95", "small", 100 },
        { 0, "0.50:0.95", "medium", 100 }, { 0, "0.50:0.95", "large", 100 },
    };
    size_t used = 0;

    if (size)
        buffer[0] = '\0';
    for (int i = 0; i < YD_COCO_STAT_COUNT; i++) {
        int n = snprintf(used < size ? buffer + used : NULL, used < size ? size - used : 0,
                         " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                         rows[i].precision ? "Average Precision" : "Average Recall",
                         rows[i].precision ? "(AP)" : "(AR)", rows[i].iou, rows[i].area,
                         rows[i].max_dets, stats[i]);

        if (n < 0)
            return n;
        used += (size_t)n;
    }
    return (int)used;
}
