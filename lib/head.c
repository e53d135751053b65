/*
 * YOLOv8 detection head: DFL box decode, class sigmoid, and NMS with the
 * semantics of Ultralytics' ops.non_max_suppression (8.x) on top of
 * torchvision.ops.nms.
 *
 * Two entry points share one candidate collector and one NMS core.
 * yd_head_detect() starts from the raw head maps (logits) and decodes boxes
 * only for anchors whose best class can pass conf. yd_head_nms_dense()
 * starts from an already-decoded output0 tensor.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "head.h"

/* Ultralytics non_max_suppression defaults: max_nms and max_wh. */
#define MAX_NMS 30000
#define MAX_WH 7680.0f

/*
 * Steps in float order below the exact logit boundary that the prefilter
 * keeps; see logit_prefilter_threshold().
 */
#define PREFILTER_MARGIN_ULPS 16

struct yd_head_scratch {
    int nc, anchors;

    /* Per anchor: best class value (logit or score) and its class. */
    float *best_value;
    int *best_class;

    /* Decoded boxes (x1, y1, x2, y2) of anchors with at least one candidate. */
    float *boxes;
    int nboxes;

    /* Candidates, in generation order (anchor-major, then class). */
    float *score;
    int *class_id;
    int *box_index;
    uint64_t *keys, *keys_tmp;
    int ncand, capacity;

    /* Kept boxes with the class offset applied, at most MAX_NMS. */
    float *kept_box;   /* 4 per kept box */
    float *kept_area;
    int *kept_next;    /* next kept box of the same class, or -1 */
    int *class_head;   /* per class: last kept box, or -1 */
    int kept_capacity;
};

static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void yd_detect_params_default(yd_detect_params *params)
{
    params->conf = 0.25f;
    params->iou = 0.7f;
    params->max_det = 300;
    params->multi_label = false;
    params->classes = NULL;
}

int yd_head_anchor_count(const yd_head_maps *maps)
{
    int total = 0;

    for (int l = 0; l < maps->nlevels; l++)
        total += maps->level[l].height * maps->level[l].width;
    return total;
}

/* ------------------------------------------------------------- scratch */

yd_head_scratch *yd_head_scratch_create(int nc, int anchors)
{
    yd_head_scratch *s;

    if (nc < 1 || anchors < 1 || (int64_t)nc * anchors > INT_MAX)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->nc = nc;
    s->anchors = anchors;
    s->best_value = malloc((size_t)anchors * sizeof *s->best_value);
    s->best_class = malloc((size_t)anchors * sizeof *s->best_class);
    s->boxes = malloc((size_t)anchors * 4 * sizeof *s->boxes);
    s->class_head = malloc((size_t)nc * sizeof *s->class_head);
    if (!s->best_value || !s->best_class || !s->boxes || !s->class_head)
        goto fail;
    return s;

fail:
    yd_head_scratch_destroy(s);
    return NULL;
}

void yd_head_scratch_destroy(yd_head_scratch *scratch)
{
    if (!scratch)
        return;
    free(scratch->best_value);
    free(scratch->best_class);
    free(scratch->boxes);
    free(scratch->score);
    free(scratch->class_id);
    free(scratch->box_index);
    free(scratch->keys);
    free(scratch->keys_tmp);
    free(scratch->kept_box);
    free(scratch->kept_area);
    free(scratch->kept_next);
    free(scratch->class_head);
    free(scratch);
}

static int grow_array(void **array, size_t count, size_t size)
{
    void *p = realloc(*array, count * size);

    if (!p)
        return YD_ERR_NO_MEMORY;
    *array = p;
    return 0;
}

/*
 * Makes room for `needed` candidates. The first call of a scratch sizes the
 * arrays for one candidate per anchor, which is all predict mode can produce,
 * so predict mode allocates only once. Multi-label mode can produce up to
 * anchors * nc candidates, and reserving that up front would cost tens of MB
 * per session. So the arrays grow geometrically here instead and keep their
 * size for later calls.
 */
static int reserve_candidates(yd_head_scratch *s, int needed)
{
    int64_t want;
    int kept;

    if (needed <= s->capacity)
        return 0;
    want = s->capacity ? (int64_t)s->capacity * 2 : s->anchors;
    if (want < needed)
        want = needed;
    if (want > (int64_t)s->anchors * s->nc)
        want = (int64_t)s->anchors * s->nc;

    if (grow_array((void **)&s->score, want, sizeof *s->score) ||
        grow_array((void **)&s->class_id, want, sizeof *s->class_id) ||
        grow_array((void **)&s->box_index, want, sizeof *s->box_index) ||
        grow_array((void **)&s->keys, want, sizeof *s->keys) ||
        grow_array((void **)&s->keys_tmp, want, sizeof *s->keys_tmp))
        return YD_ERR_NO_MEMORY;
    s->capacity = (int)want;

    kept = want < MAX_NMS ? (int)want : MAX_NMS;
    if (kept > s->kept_capacity) {
        if (grow_array((void **)&s->kept_box, (size_t)kept * 4, sizeof *s->kept_box) ||
            grow_array((void **)&s->kept_area, kept, sizeof *s->kept_area) ||
            grow_array((void **)&s->kept_next, kept, sizeof *s->kept_next))
            return YD_ERR_NO_MEMORY;
        s->kept_capacity = kept;
    }
    return 0;
}

/* ------------------------------------------------------ candidate filter */

static inline uint32_t float_order_key(float f)
{
    uint32_t bits;

    memcpy(&bits, &f, sizeof bits);
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

static inline float float_from_order_key(uint32_t key)
{
    uint32_t bits = key & 0x80000000u ? key & 0x7fffffffu : ~key;
    float f;

    memcpy(&f, &bits, sizeof f);
    return f;
}

/*
 * Returns a float t such that every logit x with sigmoid(x) > conf satisfies
 * x > t, so comparing logits against t rejects most anchors without an
 * expf(), and the exact test sigmoid(x) > conf on the survivors decides.
 *
 * The exact boundary (the largest float b with sigmoid(b) <= conf) is found
 * by bisection over the ordered float bit patterns, with the same sigmoid()
 * the exact test uses. That makes the prefilter exactly "sigmoid(x) > conf"
 * if sigmoid() is non-decreasing in x, which the unit tests check one ulp at
 * a time around the boundary for several conf values. The extra
 * PREFILTER_MARGIN_ULPS below b only admit a few more logits to the exact
 * test, and they keep the result exact even if expf were non-monotonic
 * within that distance of b.
 *
 * Called once per detection so it runs on the worker thread: if that thread
 * flushes denormals to zero, the boundary moves with it.
 */
static float logit_prefilter_threshold(float conf)
{
    uint32_t lo = float_order_key(-INFINITY); /* sigmoid(lo) = 0 <= conf */
    uint32_t hi = float_order_key(INFINITY);

    if (sigmoid(INFINITY) <= conf)
        return INFINITY;

    /* Invariant: sigmoid(lo) <= conf < sigmoid(hi). */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (sigmoid(float_from_order_key(mid)) <= conf)
            lo = mid;
        else
            hi = mid;
    }

    if (lo - float_order_key(-INFINITY) < PREFILTER_MARGIN_ULPS)
        return -INFINITY;
    return float_from_order_key(lo - PREFILTER_MARGIN_ULPS);
}

/*
 * Running per-anchor maximum over class rows: row c of anchor a is
 * values[c * class_stride + a]. Ties keep the lowest class index, as argmax
 * does. NaN values never win.
 * NOTE: torch's amax/argmax propagate NaN and would drop such an anchor.
 */
static void scan_best_class(const float *values, size_t class_stride, int count,
                            int nc, float *best_value, int *best_class)
{
    for (int a = 0; a < count; a++) {
        best_value[a] = -INFINITY;
        best_class[a] = 0;
    }
    for (int c = 0; c < nc; c++) {
        const float *row = values + (size_t)c * class_stride;

        for (int a = 0; a < count; a++) {
            float v = row[a];
            int better = v > best_value[a];

            best_value[a] = better ? v : best_value[a];
            best_class[a] = better ? c : best_class[a];
        }
    }
}

/*
 * Where one anchor's class values live and how to turn them into scores:
 * values[c * class_stride], logits (sigmoid applied) or already scores.
 */
typedef struct class_column {
    const float *values;
    size_t class_stride;
    bool logits;
} class_column;

typedef struct candidate_filter {
    float conf;
    float value_threshold; /* a value at or below it cannot pass conf */
    bool multi_label;
    const uint8_t *classes;
} candidate_filter;

static inline float column_score(const class_column *col, int c)
{
    float v = col->values[(size_t)c * col->class_stride];

    return col->logits ? sigmoid(v) : v;
}

static inline bool column_may_pass(const class_column *col,
                                   const candidate_filter *f, int c)
{
    return col->values[(size_t)c * col->class_stride] > f->value_threshold;
}

static int push_candidate(yd_head_scratch *s, int class_id, float score)
{
    int rc = reserve_candidates(s, s->ncand + 1);

    if (rc < 0)
        return rc;
    s->score[s->ncand] = score;
    s->class_id[s->ncand] = class_id;
    s->box_index[s->ncand] = s->nboxes;
    s->ncand++;
    return 0;
}

/*
 * Appends the anchor's candidates, all pointing at box slot s->nboxes.
 * Returns how many (the caller then decodes the box into that slot) or a
 * negative error code.
 *
 * Predict mode takes the class with the highest score, the lowest index on
 * equal scores. Two logits can round to the same float score, so the class
 * of the highest logit is not always that one: classes before it whose
 * score equals the best score win. The class filter applies after the
 * choice, as in Ultralytics: an anchor whose best class is filtered out is
 * dropped, not given its second best class.
 */
static int collect_anchor(yd_head_scratch *s, const class_column *col,
                          const candidate_filter *f, float best_value,
                          int best_class)
{
    int before = s->ncand;
    int rc;

    if (!(best_value > f->value_threshold))
        return 0;

    if (!f->multi_label || s->nc == 1) {
        float best = col->logits ? sigmoid(best_value) : best_value;
        int chosen = best_class;

        if (!(best > f->conf))
            return 0;
        for (int c = 0; col->logits && c < best_class; c++) {
            if (column_may_pass(col, f, c) && column_score(col, c) == best) {
                chosen = c;
                break;
            }
        }
        if (f->classes && !f->classes[chosen])
            return 0;
        rc = push_candidate(s, chosen, best);
        return rc < 0 ? rc : 1;
    }

    for (int c = 0; c < s->nc; c++) {
        float score;

        if (!column_may_pass(col, f, c) || (f->classes && !f->classes[c]))
            continue;
        score = column_score(col, c);
        if (!(score > f->conf))
            continue;
        rc = push_candidate(s, c, score);
        if (rc < 0)
            return rc;
    }
    return s->ncand - before;
}

/* ---------------------------------------------------------------- NMS */

/*
 * Sorts 64-bit keys ascending: LSD radix sort, 8 bits per pass, skipping the
 * passes whose byte is the same in every key. Returns the buffer that
 * contains the result (keys or tmp).
 */
static uint64_t *radix_sort_u64(uint64_t *keys, uint64_t *tmp, int n)
{
    static const int passes = 8;
    size_t counts[8][256];
    uint64_t *src = keys, *dst = tmp;

    memset(counts, 0, sizeof counts);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < passes; p++)
            counts[p][(keys[i] >> (8 * p)) & 0xff]++;

    for (int p = 0; p < passes; p++) {
        size_t offset = 0;
        size_t *count = counts[p];
        uint64_t *swap;

        if (count[(keys[0] >> (8 * p)) & 0xff] == (size_t)n)
            continue;
        for (int b = 0; b < 256; b++) {
            size_t c = count[b];

            count[b] = offset;
            offset += c;
        }
        for (int i = 0; i < n; i++)
            dst[count[(src[i] >> (8 * p)) & 0xff]++] = src[i];
        swap = src;
        src = dst;
        dst = swap;
    }
    return src;
}

/*
 * True when no two candidates of different classes can overlap after the
 * class offset, so each candidate need only be compared with kept boxes of
 * its own class. This is the case when all coordinates are finite, within
 * 2^20 of zero and span less than MAX_WH / 2. The offsets of two classes
 * differ by at least MAX_WH, and rounding (coordinate + offset) below 2^31
 * moves it by at most 64. So the overlap width min(x2) - max(x1) is
 * negative, the intersection is 0, and the IoU (0 or NaN) is never above a
 * threshold >= 0.
 */
static bool classes_are_disjoint(const yd_head_scratch *s, const uint64_t *order,
                                 int n)
{
    float lo = INFINITY, hi = -INFINITY;

    if ((double)s->nc * MAX_WH > 1073741824.0) /* 2^30 */
        return false;
    for (int r = 0; r < n; r++) {
        const float *box = s->boxes + 4 * s->box_index[(uint32_t)order[r]];

        for (int k = 0; k < 4; k++) {
            if (!(fabsf(box[k]) <= 1048576.0f)) /* 2^20, also rejects NaN */
                return false;
            lo = box[k] < lo ? box[k] : lo;
            hi = box[k] > hi ? box[k] : hi;
        }
    }
    return (double)hi - (double)lo < MAX_WH / 2;
}

/*
 * IoU exactly as torchvision's CPU nms computes it in float: areas as
 * (x2 - x1) * (y2 - y1), intersection clamped at 0, earlier (kept) box first.
 */
static inline float box_iou(const float *kept, float kept_area, const float *box,
                            float area)
{
    float xx1 = kept[0] > box[0] ? kept[0] : box[0];
    float yy1 = kept[1] > box[1] ? kept[1] : box[1];
    float xx2 = kept[2] < box[2] ? kept[2] : box[2];
    float yy2 = kept[3] < box[3] ? kept[3] : box[3];
    float w = xx2 - xx1 > 0.0f ? xx2 - xx1 : 0.0f;
    float h = yy2 - yy1 > 0.0f ? yy2 - yy1 : 0.0f;
    float inter = w * h;

    return inter / (kept_area + area - inter);
}

/*
 * Runs NMS over the collected candidates and writes at most
 * min(max_det, cap) detections to out, highest confidence first.
 *
 * Order: score descending, and equal scores keep generation order (anchor,
 * then class) as a stable sort would. torch's default sort does not promise
 * stability, so Ultralytics may order such ties differently. Only the first
 * MAX_NMS candidates of that order enter NMS. Boxes are offset by
 * class * MAX_WH so that classes do not suppress each other unless a box
 * spans more than MAX_WH. IoU is computed on the offset boxes in float, as
 * Ultralytics does.
 *
 * Greedy NMS is evaluated as "keep a candidate unless a box already kept has
 * IoU > iou with it", which keeps exactly the boxes torchvision's loop keeps.
 * The threshold is compared in float. torchvision compares the float IoU
 * with a double threshold, which gives the same answer unless the float
 * threshold rounded up from the user's decimal (0.7f and 0.45f round down).
 */
static int nms_run(yd_head_scratch *s, const yd_detect_params *params,
                   yd_detection *out, int cap)
{
    int limit = params->max_det < cap ? params->max_det : cap;
    int n = s->ncand < MAX_NMS ? s->ncand : MAX_NMS;
    uint64_t *order;
    bool per_class;
    int kept = 0;

    if (s->ncand == 0 || limit == 0)
        return 0;

    /* score > conf >= 0, so its bit pattern orders like the value. */
    for (int i = 0; i < s->ncand; i++) {
        uint32_t bits;

        memcpy(&bits, &s->score[i], sizeof bits);
        s->keys[i] = (uint64_t)(~bits) << 32 | (uint32_t)i;
    }
    order = radix_sort_u64(s->keys, s->keys_tmp, s->ncand);

    per_class = classes_are_disjoint(s, order, n);
    for (int c = 0; c < s->nc; c++)
        s->class_head[c] = -1;

    for (int r = 0; r < n && kept < limit; r++) {
        int i = (int)(uint32_t)order[r];
        int cls = s->class_id[i];
        const float *box = s->boxes + 4 * s->box_index[i];
        float offset = (float)cls * MAX_WH;
        float *shifted = s->kept_box + 4 * kept;
        float area;
        bool suppressed = false;

        shifted[0] = box[0] + offset;
        shifted[1] = box[1] + offset;
        shifted[2] = box[2] + offset;
        shifted[3] = box[3] + offset;
        area = (shifted[2] - shifted[0]) * (shifted[3] - shifted[1]);

        if (per_class) {
            for (int k = s->class_head[cls]; k >= 0 && !suppressed; k = s->kept_next[k])
                suppressed = box_iou(s->kept_box + 4 * k, s->kept_area[k], shifted,
                                     area) > params->iou;
        } else {
            for (int k = 0; k < kept && !suppressed; k++)
                suppressed = box_iou(s->kept_box + 4 * k, s->kept_area[k], shifted,
                                     area) > params->iou;
        }
        if (suppressed)
            continue;

        s->kept_area[kept] = area;
        s->kept_next[kept] = s->class_head[cls];
        s->class_head[cls] = kept;
        out[kept].class_id = cls;
        out[kept].confidence = s->score[i];
        out[kept].box.x1 = box[0];
        out[kept].box.y1 = box[1];
        out[kept].box.x2 = box[2];
        out[kept].box.y2 = box[3];
        kept++;
    }
    return kept;
}

/* ------------------------------------------------------- entry points */

static int check_params(const yd_detect_params *params, yd_head_scratch *scratch,
                        yd_detection *out, int cap)
{
    if (!params || !scratch || cap < 0 || (cap > 0 && !out))
        return YD_ERR_INVALID_ARGUMENT;
    /* Ultralytics asserts 0 <= conf <= 1 and 0 <= iou <= 1. */
    if (!(params->conf >= 0.0f && params->conf <= 1.0f))
        return YD_ERR_INVALID_ARGUMENT;
    if (!(params->iou >= 0.0f && params->iou <= 1.0f))
        return YD_ERR_INVALID_ARGUMENT;
    if (params->max_det < 0)
        return YD_ERR_INVALID_ARGUMENT;
    return 0;
}

static void reset_candidates(yd_head_scratch *s)
{
    s->ncand = 0;
    s->nboxes = 0;
}

/*
 * DFL expectation for one side: softmax over the reg_max bins at
 * bins[i * plane] and sum(i * p_i), in grid units.
 */
static float dfl_distance(const float *bins, size_t plane)
{
    float e[YD_HEAD_REG_MAX];
    float max = bins[0], sum = 0.0f, weighted = 0.0f;

    for (int i = 1; i < YD_HEAD_REG_MAX; i++)
        max = bins[i * plane] > max ? bins[i * plane] : max;
    for (int i = 0; i < YD_HEAD_REG_MAX; i++) {
        e[i] = expf(bins[i * plane] - max);
        sum += e[i];
    }
    for (int i = 0; i < YD_HEAD_REG_MAX; i++)
        weighted += (float)i * e[i];
    return weighted / sum;
}

/*
 * Box corners of pixel p of a level in grid units: anchor (x + 0.5, y + 0.5)
 * minus the left/top distances, plus the right/bottom ones.
 */
static void dfl_corners(const yd_head_level *lv, int p, float corners[4])
{
    size_t plane = (size_t)lv->height * lv->width;
    float ax = (float)(p % lv->width) + 0.5f;
    float ay = (float)(p / lv->width) + 0.5f;
    float d[4];

    for (int side = 0; side < 4; side++)
        d[side] = dfl_distance(lv->box + (size_t)side * YD_HEAD_REG_MAX * plane + p,
                               plane);
    corners[0] = ax - d[0];
    corners[1] = ay - d[1];
    corners[2] = ax + d[2];
    corners[3] = ay + d[3];
}

static int check_maps(const yd_head_maps *maps)
{
    if (!maps || maps->nc < 1 || maps->nlevels < 1 ||
        maps->nlevels > YD_HEAD_MAX_LEVELS)
        return YD_ERR_INVALID_ARGUMENT;
    for (int l = 0; l < maps->nlevels; l++) {
        const yd_head_level *lv = &maps->level[l];

        if (lv->stride < 1 || lv->height < 1 || lv->width < 1 || !lv->box || !lv->cls)
            return YD_ERR_INVALID_ARGUMENT;
    }
    return 0;
}

void yd_head_decode_dense(const yd_head_maps *maps, float *out)
{
    size_t total = (size_t)yd_head_anchor_count(maps);
    size_t base = 0;

    for (int l = 0; l < maps->nlevels; l++) {
        const yd_head_level *lv = &maps->level[l];
        int plane = lv->height * lv->width;
        float stride = (float)lv->stride;

        for (int p = 0; p < plane; p++) {
            size_t a = base + (size_t)p;
            float g[4];

            /* dist2bbox(xywh=True) in grid units, then times the stride. */
            dfl_corners(lv, p, g);
            out[0 * total + a] = (g[0] + g[2]) / 2.0f * stride;
            out[1 * total + a] = (g[1] + g[3]) / 2.0f * stride;
            out[2 * total + a] = (g[2] - g[0]) * stride;
            out[3 * total + a] = (g[3] - g[1]) * stride;
        }
        for (int c = 0; c < maps->nc; c++)
            for (int p = 0; p < plane; p++)
                out[(size_t)(4 + c) * total + base + (size_t)p] =
                    sigmoid(lv->cls[(size_t)c * plane + (size_t)p]);
        base += (size_t)plane;
    }
}

int yd_head_detect(const yd_head_maps *maps, const yd_detect_params *params,
                   yd_head_scratch *scratch, yd_detection *out, int cap)
{
    candidate_filter filter;
    int rc;

    rc = check_params(params, scratch, out, cap);
    if (rc < 0)
        return rc;
    rc = check_maps(maps);
    if (rc < 0)
        return rc;
    if (maps->nc != scratch->nc || yd_head_anchor_count(maps) > scratch->anchors)
        return YD_ERR_INVALID_ARGUMENT;

    filter.conf = params->conf;
    filter.value_threshold = logit_prefilter_threshold(params->conf);
    filter.multi_label = params->multi_label;
    filter.classes = params->classes;
    reset_candidates(scratch);

    for (int l = 0; l < maps->nlevels; l++) {
        const yd_head_level *lv = &maps->level[l];
        int plane = lv->height * lv->width;
        float stride = (float)lv->stride;

        scan_best_class(lv->cls, (size_t)plane, plane, maps->nc,
                        scratch->best_value, scratch->best_class);
        for (int p = 0; p < plane; p++) {
            class_column col = { lv->cls + p, (size_t)plane, true };
            float *box = scratch->boxes + 4 * scratch->nboxes;
            float g[4];

            rc = collect_anchor(scratch, &col, &filter, scratch->best_value[p],
                                scratch->best_class[p]);
            if (rc < 0)
                return rc;
            if (rc == 0)
                continue;
            dfl_corners(lv, p, g);
            /* Non-finite box logits (a model with NaN weights) would reach
             * the reply as null coordinates: the anchor's candidates go. */
            if (!isfinite(g[0] + g[1] + g[2] + g[3])) {
                scratch->ncand -= rc;
                continue;
            }
            box[0] = g[0] * stride;
            box[1] = g[1] * stride;
            box[2] = g[2] * stride;
            box[3] = g[3] * stride;
            scratch->nboxes++;
        }
    }
    return nms_run(scratch, params, out, cap);
}

int yd_head_nms_dense(const float *dense, int nc, int anchors,
                      const yd_detect_params *params, yd_head_scratch *scratch,
                      yd_detection *out, int cap)
{
    candidate_filter filter;
    int rc;

    rc = check_params(params, scratch, out, cap);
    if (rc < 0)
        return rc;
    if (!dense || nc != scratch->nc || anchors < 1 || anchors > scratch->anchors)
        return YD_ERR_INVALID_ARGUMENT;

    filter.conf = params->conf;
    filter.value_threshold = params->conf;
    filter.multi_label = params->multi_label;
    filter.classes = params->classes;
    reset_candidates(scratch);

    scan_best_class(dense + 4 * (size_t)anchors, (size_t)anchors, anchors, nc,
                    scratch->best_value, scratch->best_class);
    for (int a = 0; a < anchors; a++) {
        class_column col = { dense + 4 * (size_t)anchors + a, (size_t)anchors, false };
        float *box = scratch->boxes + 4 * scratch->nboxes;
        float cx, cy, half_w, half_h;

        rc = collect_anchor(scratch, &col, &filter, scratch->best_value[a],
                            scratch->best_class[a]);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;

        /* xywh2xyxy in float, as Ultralytics computes it. */
        cx = dense[a];
        cy = dense[(size_t)anchors + a];
        half_w = dense[2 * (size_t)anchors + a] / 2.0f;
        half_h = dense[3 * (size_t)anchors + a] / 2.0f;
        box[0] = cx - half_w;
        box[1] = cy - half_h;
        box[2] = cx + half_w;
        box[3] = cy + half_h;
        scratch->nboxes++;
    }
    return nms_run(scratch, params, out, cap);
}

static inline float clamp(float v, float lo, float hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return v;
}

void yd_head_unletterbox(yd_detection *dets, int count, const yd_letterbox *lb,
                         int image_width, int image_height)
{
    float left = (float)lb->left, top = (float)lb->top, r = (float)lb->r;
    float w = (float)image_width, h = (float)image_height;

    for (int i = 0; i < count; i++) {
        yd_box *b = &dets[i].box;
        float x1 = (b->x1 - left) / r, y1 = (b->y1 - top) / r;
        float x2 = (b->x2 - left) / r, y2 = (b->y2 - top) / r;

        b->x1 = clamp(x1, 0.0f, w);
        b->y1 = clamp(y1, 0.0f, h);
        b->x2 = clamp(x2, 0.0f, w);
        b->y2 = clamp(y2, 0.0f, h);
    }
}
