/*
 * Structured channel pruning (see prune.h for the model and the score).
 *
 * The pass works in four steps over one context:
 *   1. groups: union-find over (value, channel) slots of the live graph;
 *   2. importance: one calibration run with the session's observe hook
 *      collects each conv input channel's mean square, which weighs the
 *      column norms of the weights that read it;
 *   3. selection: groups are sorted into classes of interchangeable
 *      channels, and class steps are removed until the FLOPs target is met;
 *   4. rewrite: values shrink, convolution weights and slice ranges are cut
 *      to the kept channels, and the model is replanned and repacked.
 * Node indices never change: nothing is added or removed, only shrunk.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "head.h"
#include "prune.h"
#include "util.h"

/* Channels a class removes at once: the AVX-512 channel block. */
#define PRUNE_STEP 16

/* Largest fraction of the FLOPs a caller may ask to remove. */
#define MAX_FRACTION 0.95

/* Interchangeable groups: the same values with the same multiplicity. */
typedef struct group_class {
    int first;          /* index of the first group in ctx->class_groups */
    int count;          /* groups in the class */
    int removed;        /* groups removed so far, the least important first */
    int min_kept;
    int locked;         /* contains a slot of the network input or a head output */
    const int *values;  /* signature: value ids, one per slot of a group */
    int nvalues;
} group_class;

typedef struct prune_ctx {
    yd_graph *graph;
    int nslots;
    int *slot_base;         /* [nvalues + 1]: first slot of each value */
    int *parent;            /* [nslots]: union-find forest */
    unsigned char *live;    /* [nvalues]: read or written by a live node */

    int ngroups;
    int *group_of_slot;     /* [nslots]: group id, -1 for slots of dead values */
    int *member_start;      /* [ngroups + 1]: offsets into members */
    int *members;           /* [nslots]: value id of each group member, slot order */
    int *member_slots;      /* [nslots]: the slot of each group member, same order */
    unsigned char *locked;  /* [ngroups] */
    double *importance;     /* [ngroups] */
    unsigned char *removed; /* [ngroups] */

    int nclasses;
    group_class *classes;
    int *class_groups;      /* [ngroups]: group ids, by class, then by importance */

    int *kept_c;            /* [nvalues]: channel count under the current removal */

    /* Calibration */
    double *sum_squares;    /* [nslots]: sum of x^2 over images and pixels */
    double *sums;           /* [nslots]: sum of x over images and pixels */
    int nimages;
    int compensate;         /* yd_prune_options.compensate_bias */
    unsigned char *observed; /* [nvalues]: read by a live convolution */
} prune_ctx;

static int slot_of(const prune_ctx *ctx, int value, int channel)
{
    return ctx->slot_base[value] + channel;
}

static int find_root(prune_ctx *ctx, int slot)
{
    while (ctx->parent[slot] != slot) {
        ctx->parent[slot] = ctx->parent[ctx->parent[slot]];
        slot = ctx->parent[slot];
    }
    return slot;
}

static void join(prune_ctx *ctx, int a, int b)
{
    int ra = find_root(ctx, a), rb = find_root(ctx, b);

    /* The smaller slot becomes the root, so roots do not depend on join order. */
    if (ra < rb)
        ctx->parent[rb] = ra;
    else if (rb < ra)
        ctx->parent[ra] = rb;
}

/* Joins channel j of `a` with channel j + offset of `b`, for j < count. */
static void join_range(prune_ctx *ctx, int a, int b, int offset, int count)
{
    for (int j = 0; j < count; j++)
        join(ctx, slot_of(ctx, a, j), slot_of(ctx, b, j + offset));
}

static int same_channels(const yd_graph *g, const yd_node *node, int a, int b, yd_error *err)
{
    if (g->values[a].c == g->values[b].c)
        return YD_OK;
    return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                        "cannot prune '%s' (%s): operands have %d and %d channels", node->name,
                        yd_op_name(node->op), g->values[a].c, g->values[b].c);
}

/* Joins the slots one live node ties together; checks the shapes it relies on. */
static int join_node(prune_ctx *ctx, const yd_node *node, yd_error *err)
{
    const yd_graph *g = ctx->graph;
    int out = node->output, offset = 0, rc;

    switch (node->op) {
    case YD_OP_INPUT:
        return YD_OK;
    case YD_OP_CONV:
        if (node->conv.in_c != g->values[node->inputs[0]].c || node->conv.out_c != g->values[out].c)
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "cannot prune '%s': grouped convolution (%d input channels, "
                                "input value has %d)", node->name, node->conv.in_c,
                                g->values[node->inputs[0]].c);
        if (node->residual < 0)
            return YD_OK;
        rc = same_channels(g, node, node->residual, out, err);
        if (rc == YD_OK)
            join_range(ctx, node->residual, out, 0, g->values[out].c);
        return rc;
    case YD_OP_MAXPOOL:
    case YD_OP_UPSAMPLE:
    case YD_OP_SIGMOID:
    case YD_OP_SILU:
        rc = same_channels(g, node, node->inputs[0], out, err);
        if (rc == YD_OK)
            join_range(ctx, out, node->inputs[0], 0, g->values[out].c);
        return rc;
    case YD_OP_ADD:
    case YD_OP_MUL:
        for (int k = 0; k < node->ninputs; k++) {
            rc = same_channels(g, node, node->inputs[k], out, err);
            if (rc != YD_OK)
                return rc;
            join_range(ctx, out, node->inputs[k], 0, g->values[out].c);
        }
        return YD_OK;
    case YD_OP_SLICE:
        if (node->slice_begin < 0 || node->slice_end > g->values[node->inputs[0]].c ||
            node->slice_end - node->slice_begin != g->values[out].c)
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "cannot prune '%s': slice [%d, %d) does not fit its values",
                                node->name, node->slice_begin, node->slice_end);
        join_range(ctx, out, node->inputs[0], node->slice_begin, g->values[out].c);
        return YD_OK;
    case YD_OP_CONCAT:
        for (int k = 0; k < node->ninputs; k++) {
            int in = node->inputs[k];

            if (offset + g->values[in].c > g->values[out].c)
                break;
            join_range(ctx, in, out, offset, g->values[in].c);
            offset += g->values[in].c;
        }
        if (offset != g->values[out].c)
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "cannot prune '%s': concat inputs do not add up to %d channels",
                                node->name, g->values[out].c);
        return YD_OK;
    }
    return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED, "cannot prune '%s': unknown op %d",
                        node->name, (int)node->op);
}

static void mark_live(prune_ctx *ctx, const yd_node *node)
{
    ctx->live[node->output] = 1;
    for (int k = 0; k < node->ninputs; k++)
        ctx->live[node->inputs[k]] = 1;
    if (node->residual >= 0)
        ctx->live[node->residual] = 1;
}

static void lock_value(prune_ctx *ctx, int value)
{
    for (int j = 0; j < ctx->graph->values[value].c; j++) {
        int group = ctx->group_of_slot[slot_of(ctx, value, j)];

        if (group >= 0)
            ctx->locked[group] = 1;
    }
}

/*
 * Step 1: builds the groups. Afterwards group_of_slot, member_start and
 * members describe every group, and `locked` marks those never pruned.
 */
static int build_groups(prune_ctx *ctx, yd_error *err)
{
    yd_graph *g = ctx->graph;
    int *fill = NULL, rc;

    ctx->slot_base = malloc((size_t)(g->nvalues + 1) * sizeof *ctx->slot_base);
    ctx->live = calloc((size_t)g->nvalues, 1);
    if (!ctx->slot_base || !ctx->live)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory grouping channels");
    ctx->slot_base[0] = 0;
    for (int v = 0; v < g->nvalues; v++)
        ctx->slot_base[v + 1] = ctx->slot_base[v] + g->values[v].c;
    ctx->nslots = ctx->slot_base[g->nvalues];

    ctx->parent = malloc((size_t)ctx->nslots * sizeof *ctx->parent);
    ctx->group_of_slot = malloc((size_t)ctx->nslots * sizeof *ctx->group_of_slot);
    ctx->members = malloc((size_t)ctx->nslots * sizeof *ctx->members);
    ctx->member_slots = malloc((size_t)ctx->nslots * sizeof *ctx->member_slots);
    if (!ctx->parent || !ctx->group_of_slot || !ctx->members || !ctx->member_slots)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory grouping channels");
    for (int s = 0; s < ctx->nslots; s++)
        ctx->parent[s] = s;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        if (node->dead)
            continue;
        mark_live(ctx, node);
        rc = join_node(ctx, node, err);
        if (rc != YD_OK)
            return rc;
    }

    /* Number the roots of live slots; slots of dead values get no group. */
    ctx->ngroups = 0;
    for (int s = 0; s < ctx->nslots; s++)
        ctx->group_of_slot[s] = -1;
    for (int v = 0; v < g->nvalues; v++) {
        if (!ctx->live[v])
            continue;
        for (int j = 0; j < g->values[v].c; j++) {
            int root = find_root(ctx, slot_of(ctx, v, j));

            if (ctx->group_of_slot[root] < 0)
                ctx->group_of_slot[root] = ctx->ngroups++;
        }
    }
    for (int v = 0; v < g->nvalues; v++)
        if (ctx->live[v])
            for (int j = 0; j < g->values[v].c; j++) {
                int slot = slot_of(ctx, v, j);

                ctx->group_of_slot[slot] = ctx->group_of_slot[find_root(ctx, slot)];
            }

    /* Members of each group in slot order, by counting sort. */
    ctx->member_start = calloc((size_t)ctx->ngroups + 1, sizeof *ctx->member_start);
    ctx->locked = calloc((size_t)ctx->ngroups + 1, 1);
    fill = calloc((size_t)ctx->ngroups + 1, sizeof *fill);
    if (!ctx->member_start || !ctx->locked || !fill) {
        free(fill);
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory grouping channels");
    }
    for (int s = 0; s < ctx->nslots; s++)
        if (ctx->group_of_slot[s] >= 0)
            ctx->member_start[ctx->group_of_slot[s] + 1]++;
    for (int k = 0; k < ctx->ngroups; k++)
        ctx->member_start[k + 1] += ctx->member_start[k];
    for (int v = 0; v < g->nvalues; v++)
        for (int j = 0; j < g->values[v].c; j++) {
            int group = ctx->group_of_slot[slot_of(ctx, v, j)];

            if (group >= 0) {
                ctx->member_slots[ctx->member_start[group] + fill[group]] = slot_of(ctx, v, j);
                ctx->members[ctx->member_start[group] + fill[group]++] = v;
            }
        }
    free(fill);

    lock_value(ctx, g->input);
    for (int l = 0; l < g->nlevels; l++) {
        lock_value(ctx, g->head_box[l]);
        lock_value(ctx, g->head_cls[l]);
    }
    return YD_OK;
}

/* Step 2: the observe hook sums each observed value's x and x^2 per channel. */
static void observe_squares(const yd_session *s, int node_index, const float *data, void *user)
{
    prune_ctx *ctx = user;
    const yd_graph *g = s->model->graph;
    int v = g->nodes[node_index].output;
    const yd_value *val = &g->values[v];
    size_t plane = (size_t)val->h * val->w;
    int cb = g->cb;

    /* Every thread of the team calls the hook, so only thread 0 adds.
     * When each thread added, the sums doubled on two threads and bias
     * compensation added about twice each removed channel's mean, which
     * collapsed the pruned model. */
    if (!ctx->observed[v] || omp_get_thread_num() != 0)
        return;
    for (int ch = 0; ch < val->c; ch++) {
        const float *p = data + (size_t)(ch / cb) * plane * cb + ch % cb;
        double sum = 0, sum1 = 0;

        for (size_t i = 0; i < plane; i++) {
            sum += (double)p[i * cb] * p[i * cb];
            sum1 += p[i * cb];
        }
        ctx->sum_squares[slot_of(ctx, v, ch)] += sum;
        ctx->sums[slot_of(ctx, v, ch)] += sum1;
    }
}

/* ||W[:, c, :, :]||_2 for one input channel c of a convolution. */
static double column_norm(const yd_conv_params *conv, int c)
{
    size_t taps = (size_t)conv->kernel_h * conv->kernel_w;
    double sum = 0;

    for (int oc = 0; oc < conv->out_c; oc++) {
        const float *w = conv->weight + ((size_t)oc * conv->in_c + c) * taps;

        for (size_t t = 0; t < taps; t++)
            sum += (double)w[t] * w[t];
    }
    return sqrt(sum);
}

/*
 * Step 2: runs the model over the images and adds, for every live
 * convolution input channel, column norm times activation RMS to the
 * importance of the channel's group.
 */
static int score_groups(prune_ctx *ctx, yd_model *model, const yd_image *images, int nimages,
                        const yd_prune_options *options, yd_error *err)
{
    yd_graph *g = ctx->graph;
    yd_session *session = NULL;
    int rc;

    ctx->importance = calloc((size_t)ctx->ngroups + 1, sizeof *ctx->importance);
    ctx->sum_squares = calloc((size_t)ctx->nslots + 1, sizeof *ctx->sum_squares);
    ctx->observed = calloc((size_t)g->nvalues, 1);
    ctx->sums = calloc((size_t)ctx->nslots + 1, sizeof *ctx->sums);
    ctx->nimages = nimages;
    if (!ctx->importance || !ctx->sum_squares || !ctx->observed || !ctx->sums)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for channel statistics");
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == YD_OP_CONV)
            ctx->observed[g->nodes[i].inputs[0]] = 1;

    rc = yd_session_create(model, options->threads, &session, err);
    if (rc != YD_OK)
        return rc;
    session->observe = observe_squares;
    session->observe_user = ctx;
    for (int k = 0; k < nimages; k++) {
        yd_letterbox lb;

        rc = yd_session_run_image(session, &images[k], &lb, err);
        if (rc != YD_OK)
            goto done;
        if (options->progress)
            options->progress(k + 1, nimages, options->progress_user);
    }

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        const yd_value *in;
        double samples;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        in = &g->values[node->inputs[0]];
        samples = (double)nimages * in->h * in->w;
        for (int c = 0; c < in->c; c++) {
            int slot = slot_of(ctx, node->inputs[0], c);
            double mean = ctx->sums[slot] / samples;
            double spread = ctx->sum_squares[slot] / samples;

            /* With bias compensation only the deviation from the mean is lost. */
            if (ctx->compensate)
                spread -= mean * mean;
            spread = sqrt(spread > 0 ? spread : 0);
            ctx->importance[ctx->group_of_slot[slot]] += column_norm(&node->conv, c) * spread;
        }
    }

done:
    yd_session_destroy(session);
    return rc;
}

/* Orders groups by signature (the value ids of their members), then by importance. */
static int compare_groups(const void *a, const void *b, void *user)
{
    const prune_ctx *ctx = user;
    int ga = *(const int *)a, gb = *(const int *)b;
    int na = ctx->member_start[ga + 1] - ctx->member_start[ga];
    int nb = ctx->member_start[gb + 1] - ctx->member_start[gb];
    const int *ma = ctx->members + ctx->member_start[ga];
    const int *mb = ctx->members + ctx->member_start[gb];

    if (na != nb)
        return na < nb ? -1 : 1;
    for (int k = 0; k < na; k++)
        if (ma[k] != mb[k])
            return ma[k] < mb[k] ? -1 : 1;
    if (ctx->importance[ga] != ctx->importance[gb])
        return ctx->importance[ga] < ctx->importance[gb] ? -1 : 1;
    return (ga > gb) - (ga < gb);
}

static int same_signature(const prune_ctx *ctx, int ga, int gb)
{
    int na = ctx->member_start[ga + 1] - ctx->member_start[ga];
    int nb = ctx->member_start[gb + 1] - ctx->member_start[gb];

    return na == nb && memcmp(ctx->members + ctx->member_start[ga],
                              ctx->members + ctx->member_start[gb], (size_t)na * sizeof(int)) == 0;
}

/* Smallest group count a class of `count` groups may keep (see prune.h). */
static int class_min_kept(int count)
{
    int min = count < PRUNE_STEP ? count : PRUNE_STEP;
    int quarter = (count + 3) / 4;

    if (quarter > min)
        min = quarter;
    if (count % PRUNE_STEP == 0)
        min = (min + PRUNE_STEP - 1) / PRUNE_STEP * PRUNE_STEP;
    return min;
}

/* Step 3a: sorts the groups into classes of interchangeable channels. */
static int build_classes(prune_ctx *ctx, yd_error *err)
{
    ctx->class_groups = malloc(((size_t)ctx->ngroups + 1) * sizeof *ctx->class_groups);
    ctx->classes = calloc((size_t)ctx->ngroups + 1, sizeof *ctx->classes);
    ctx->removed = calloc((size_t)ctx->ngroups + 1, 1);
    if (!ctx->class_groups || !ctx->classes || !ctx->removed)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory classifying channels");
    for (int k = 0; k < ctx->ngroups; k++)
        ctx->class_groups[k] = k;
    qsort_r(ctx->class_groups, (size_t)ctx->ngroups, sizeof *ctx->class_groups, compare_groups, ctx);

    ctx->nclasses = 0;
    for (int k = 0; k < ctx->ngroups; k++) {
        int group = ctx->class_groups[k];
        group_class *cls;

        if (k == 0 || !same_signature(ctx, ctx->class_groups[k - 1], group)) {
            cls = &ctx->classes[ctx->nclasses++];
            cls->first = k;
            cls->values = ctx->members + ctx->member_start[group];
            cls->nvalues = ctx->member_start[group + 1] - ctx->member_start[group];
        }
        cls = &ctx->classes[ctx->nclasses - 1];
        cls->count++;
        cls->locked |= ctx->locked[group];
    }
    for (int k = 0; k < ctx->nclasses; k++)
        ctx->classes[k].min_kept = class_min_kept(ctx->classes[k].count);
    return YD_OK;
}

/* Groups the class's next step removes; 0 when it is locked or at its minimum. */
static int next_step(const group_class *cls)
{
    int kept = cls->count - cls->removed;
    int step = kept % PRUNE_STEP ? kept % PRUNE_STEP : PRUNE_STEP;

    if (cls->locked || kept - step < cls->min_kept)
        return 0;
    return step;
}

/* FLOPs of the live convolutions under the channel counts ctx->kept_c. */
static double current_flops(const prune_ctx *ctx)
{
    const yd_graph *g = ctx->graph;
    double flops = 0;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        const yd_value *out = &g->values[node->output];

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        flops += 2.0 * out->h * out->w * ctx->kept_c[node->output] *
                 ctx->kept_c[node->inputs[0]] * node->conv.kernel_h * node->conv.kernel_w;
    }
    return flops;
}

/*
 * Estimated run time of the live convolutions under ctx->kept_c, in FLOP
 * equivalents: FLOPs plus IN_ELEMENT_COST per input element (the int8 input
 * quantization, patch loads) and OUT_ELEMENT_COST per output element (bias,
 * SiLU, residual, stores). Fitted on yolov8n int8 with the AVX-512 VNNI
 * kernels at 2 threads (per-layer times of 61 convolutions, within 15% for
 * most): 0.44 ms per GFLOP, 0.045 ms per million input and 0.12 ms per
 * million output elements. A 3x3 layer of 64 channels at 80x80 runs near
 * 1800 GFLOP/s, a 1x1 layer of 32 channels at 160x160 near 300.
 */
#define IN_ELEMENT_COST 103.0
#define OUT_ELEMENT_COST 277.0

static double current_cost(const prune_ctx *ctx)
{
    const yd_graph *g = ctx->graph;
    double cost = current_flops(ctx);

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        const yd_value *in = &g->values[node->inputs[0]];
        const yd_value *out = &g->values[node->output];

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        cost += IN_ELEMENT_COST * in->h * in->w * ctx->kept_c[node->inputs[0]] +
                OUT_ELEMENT_COST * out->h * out->w * ctx->kept_c[node->output];
    }
    return cost;
}

/* Changes kept_c as if `step` more groups of the class were removed (negative: restored). */
static void shift_class(prune_ctx *ctx, const group_class *cls, int step)
{
    for (int k = 0; k < cls->nvalues; k++)
        ctx->kept_c[cls->values[k]] -= step;
}

/* Removes the class's next `step` groups for good. */
static void take_step(prune_ctx *ctx, group_class *cls, int step)
{
    for (int k = 0; k < step; k++)
        ctx->removed[ctx->class_groups[cls->first + cls->removed + k]] = 1;
    cls->removed += step;
    shift_class(ctx, cls, step);
}

/*
 * Step 3b: removes class steps until `target` FLOPs are gone. A round
 * considers only steps that overshoot the target by no more than it is still
 * short. Global ranking takes the one with the lowest importance per FLOP
 * saved, and per-layer ranking the one that leaves its class with the
 * smallest removed fraction.
 */
static void select_steps(prune_ctx *ctx, double target, int per_layer)
{
    double flops = current_flops(ctx), start = flops;

    while (start - flops < target) {
        double short_by = target - (start - flops), best_score = INFINITY, best_saving = 0;
        int best = -1, best_step = 0;

        for (int k = 0; k < ctx->nclasses; k++) {
            group_class *cls = &ctx->classes[k];
            int step = next_step(cls);
            double saving, score, importance = 0;

            if (step == 0)
                continue;
            shift_class(ctx, cls, step);
            saving = flops - current_flops(ctx);
            shift_class(ctx, cls, -step);
            if (saving <= 0 || saving - short_by > short_by)
                continue;

            for (int j = 0; j < step; j++)
                importance += ctx->importance[ctx->class_groups[cls->first + cls->removed + j]];
            if (per_layer)
                score = (double)(cls->removed + step) / cls->count;
            else
                score = importance / saving;
            if (score < best_score || (score == best_score && saving > best_saving)) {
                best_score = score;
                best_saving = saving;
                best = k;
                best_step = step;
            }
        }
        if (best < 0)
            break;
        take_step(ctx, &ctx->classes[best], best_step);
        flops = current_flops(ctx);
    }
}

/*
 * Data-driven allocation (yd_prune_options.sensitivity_images > 0; see
 * prune.h). A class step is simulated by zeroing, in every convolution that
 * reads one of its channels, that channel's weight column: exactly what
 * removing the channel does to the outputs. The model then runs on a few
 * calibration images and its decoded head is compared with the unpruned
 * model's.
 */

/* Weight of the box term against the class term in head_change(): a change
 * of one stride unit in one box side of a confident anchor counts as much as
 * a change of sqrt(BOX_WEIGHT) in one class probability. On yolov8n prune30
 * without refit or bias compensation, 0.05, 0.5 and 5 scored mAP50-95
 * 0.245, 0.260 and 0.131. */
#define BOX_WEIGHT 0.5

typedef struct sensitivity {
    yd_session *session;
    const yd_image *images;
    int nimages;
    size_t anchors;
    int nc;
    float *prob;            /* [image][nc][anchors]: unpruned class probabilities */
    float *dist;            /* [image][4][anchors]: unpruned box distances, stride units */
    float *confidence;      /* [image][anchors]: unpruned highest class probability */
    float **weights;        /* [nnodes]: each convolution's weights before any zeroing */
    float **biases;         /* [nnodes]: and its bias */
    int8_t **qweights;      /* [nnodes]: the same for int8 weights, NULL when float */
    int measurements;
} sensitivity;

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* Expected bin of one DFL distribution: reg_max logits `stride` floats apart. */
static float dfl_distance(const float *logits, size_t stride)
{
    float max = logits[0], sum = 0, weighted = 0;

    for (int i = 1; i < YD_HEAD_REG_MAX; i++)
        max = logits[i * stride] > max ? logits[i * stride] : max;
    for (int i = 0; i < YD_HEAD_REG_MAX; i++) {
        float e = expf(logits[i * stride] - max);

        sum += e;
        weighted += e * (float)i;
    }
    return weighted / sum;
}

/* Decodes the session's head maps into probabilities, box distances and confidences. */
static void decode_head(const yd_head_maps *maps, size_t anchors, float *prob, float *dist,
                        float *confidence)
{
    size_t base = 0;

    for (int l = 0; l < maps->nlevels; l++) {
        const yd_head_level *level = &maps->level[l];
        size_t hw = (size_t)level->height * level->width;

        for (size_t a = 0; a < hw; a++) {
            float best = 0;

            for (int c = 0; c < maps->nc; c++) {
                float p = sigmoidf(level->cls[c * hw + a]);

                prob[c * anchors + base + a] = p;
                best = p > best ? p : best;
            }
            confidence[base + a] = best;
            for (int side = 0; side < 4; side++)
                dist[side * anchors + base + a] =
                    dfl_distance(level->box + (size_t)side * YD_HEAD_REG_MAX * hw + a, hw);
        }
        base += hw;
    }
}

/*
 * Change of the session's head against the unpruned model on image `image`,
 * summed over anchors: the squared change of every class probability plus
 * BOX_WEIGHT times the unpruned confidence times the squared change of the
 * four box distances.
 */
static double head_change(const sensitivity *sn, int image)
{
    const yd_head_maps *maps = &sn->session->maps;
    const float *prob = sn->prob + (size_t)image * sn->nc * sn->anchors;
    const float *dist = sn->dist + (size_t)image * 4 * sn->anchors;
    const float *confidence = sn->confidence + (size_t)image * sn->anchors;
    double total = 0;
    size_t base = 0;

    for (int l = 0; l < maps->nlevels; l++) {
        const yd_head_level *level = &maps->level[l];
        size_t hw = (size_t)level->height * level->width;

        for (size_t a = 0; a < hw; a++) {
            double cls = 0, box = 0;

            for (int c = 0; c < maps->nc; c++) {
                double d = sigmoidf(level->cls[c * hw + a]) - prob[c * sn->anchors + base + a];

                cls += d * d;
            }
            for (int side = 0; side < 4; side++) {
                double d = dfl_distance(level->box + (size_t)side * YD_HEAD_REG_MAX * hw + a, hw) -
                           dist[side * sn->anchors + base + a];

                box += d * d;
            }
            total += cls + BOX_WEIGHT * confidence[base + a] * box;
        }
        base += hw;
    }
    return total;
}

/* Mean head change per anchor over the sensitivity images, for the weights as they are now. */
static int measure_change(yd_model *model, sensitivity *sn, double *change, yd_error *err)
{
    double total = 0;
    int rc = yd_model_repack(model, err);

    for (int k = 0; k < sn->nimages && rc == YD_OK; k++) {
        yd_letterbox lb;

        rc = yd_session_run_image(sn->session, &sn->images[k], &lb, err);
        if (rc == YD_OK)
            total += head_change(sn, k);
    }
    sn->measurements++;
    *change = total / ((double)sn->nimages * sn->anchors);
    return rc;
}

/* Zeroes (restore 0) or restores (restore 1) every weight column that reads a channel of `group`. */
static void mask_group(const prune_ctx *ctx, const sensitivity *sn, int group, int restore)
{
    const yd_graph *g = ctx->graph;

    for (int m = ctx->member_start[group]; m < ctx->member_start[group + 1]; m++) {
        int v = ctx->members[m], channel = ctx->member_slots[m] - ctx->slot_base[v];

        for (int i = 0; i < g->nnodes; i++) {
            yd_conv_params *conv = &g->nodes[i].conv;
            size_t taps = (size_t)conv->kernel_h * conv->kernel_w;

            if (g->nodes[i].dead || g->nodes[i].op != YD_OP_CONV || g->nodes[i].inputs[0] != v)
                continue;
            const yd_value *in = &g->values[v];
            double mean = ctx->sums[ctx->member_slots[m]] / ((double)ctx->nimages * in->h * in->w);

            for (int oc = 0; oc < conv->out_c; oc++) {
                size_t at = ((size_t)oc * conv->in_c + channel) * taps;

                /* As compensate_bias() will: the column's mean contribution moves to the bias. */
                if (ctx->compensate) {
                    double sum = 0;

                    for (size_t t = 0; t < taps; t++)
                        sum += sn->weights[i][at + t];
                    conv->bias[oc] += (float)(restore ? -sum * mean : sum * mean);
                }
                if (restore)
                    memcpy(conv->weight + at, sn->weights[i] + at, taps * sizeof *conv->weight);
                else
                    memset(conv->weight + at, 0, taps * sizeof *conv->weight);
                if (conv->qweight && restore)
                    memcpy(conv->qweight + at, sn->qweights[i] + at, taps);
                else if (conv->qweight)
                    memset(conv->qweight + at, 0, taps);
            }
        }
    }
}

/* Masks or restores the next `step` groups of a class (those take_step() would remove). */
static void mask_step(const prune_ctx *ctx, const sensitivity *sn, const group_class *cls,
                      int step, int restore)
{
    for (int k = 0; k < step; k++)
        mask_group(ctx, sn, ctx->class_groups[cls->first + cls->removed + k], restore);
}

static void free_sensitivity(const yd_graph *g, sensitivity *sn)
{
    yd_session_destroy(sn->session);
    free(sn->prob);
    free(sn->dist);
    free(sn->confidence);
    for (int i = 0; sn->weights && i < g->nnodes; i++)
        free(sn->weights[i]);
    for (int i = 0; sn->qweights && i < g->nnodes; i++)
        free(sn->qweights[i]);
    for (int i = 0; sn->biases && i < g->nnodes; i++)
        free(sn->biases[i]);
    free(sn->biases);
    free(sn->weights);
    free(sn->qweights);
}

/* Copies the weights, creates the session and decodes the unpruned head on each image. */
static int setup_sensitivity(prune_ctx *ctx, yd_model *model, const yd_image *images, int nimages,
                             const yd_prune_options *options, sensitivity *sn, yd_error *err)
{
    yd_graph *g = ctx->graph;
    int rc;

    sn->images = images;
    sn->nimages = nimages < options->sensitivity_images ? nimages : options->sensitivity_images;
    sn->weights = calloc((size_t)g->nnodes, sizeof *sn->weights);
    sn->qweights = calloc((size_t)g->nnodes, sizeof *sn->qweights);
    sn->biases = calloc((size_t)g->nnodes, sizeof *sn->biases);
    if (!sn->weights || !sn->qweights || !sn->biases)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory measuring sensitivity");
    for (int i = 0; i < g->nnodes; i++) {
        const yd_conv_params *conv = &g->nodes[i].conv;
        size_t n = (size_t)conv->out_c * conv->in_c * conv->kernel_h * conv->kernel_w;

        if (g->nodes[i].dead || g->nodes[i].op != YD_OP_CONV)
            continue;
        sn->weights[i] = malloc(n * sizeof(float) + 1);
        sn->biases[i] = malloc((size_t)conv->out_c * sizeof(float) + 1);
        if (!sn->weights[i] || !sn->biases[i])
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory measuring sensitivity");
        memcpy(sn->weights[i], conv->weight, n * sizeof(float));
        memcpy(sn->biases[i], conv->bias, (size_t)conv->out_c * sizeof(float));
        if (conv->qweight) {
            sn->qweights[i] = malloc(n + 1);
            if (!sn->qweights[i])
                return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory measuring sensitivity");
            memcpy(sn->qweights[i], conv->qweight, n);
        }
    }

    rc = yd_session_create(model, options->threads, &sn->session, err);
    if (rc != YD_OK)
        return rc;
    sn->anchors = (size_t)yd_head_anchor_count(&sn->session->maps);
    sn->nc = sn->session->maps.nc;
    sn->prob = malloc((size_t)sn->nimages * sn->nc * sn->anchors * sizeof *sn->prob);
    sn->dist = malloc((size_t)sn->nimages * 4 * sn->anchors * sizeof *sn->dist);
    sn->confidence = malloc((size_t)sn->nimages * sn->anchors * sizeof *sn->confidence);
    if (!sn->prob || !sn->dist || !sn->confidence)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory measuring sensitivity");
    for (int k = 0; k < sn->nimages; k++) {
        yd_letterbox lb;

        rc = yd_session_run_image(sn->session, &images[k], &lb, err);
        if (rc != YD_OK)
            return rc;
        decode_head(&sn->session->maps, sn->anchors, sn->prob + (size_t)k * sn->nc * sn->anchors,
                    sn->dist + (size_t)k * 4 * sn->anchors, sn->confidence + (size_t)k * sn->anchors);
    }
    return YD_OK;
}

/*
 * Step 3b, data-driven: removes class steps until `target` FLOPs are gone,
 * each round the step whose simulated removal adds the least head change
 * per estimated run time saved (current_cost()). Scores are kept between
 * rounds and re-measured lazily: the best candidate is measured again
 * against the current state and taken only if it is still the best, so a
 * round costs a few measurements, not one per class. This assumes a step's
 * cost rarely falls as others are taken (not checked). Leaves the weights
 * and biases as they were.
 */
static int select_by_sensitivity(prune_ctx *ctx, yd_model *model, const yd_image *images,
                                 int nimages, const yd_prune_options *options, double target,
                                 yd_error *err)
{
    sensitivity sn = {0};
    double *delta = malloc(((size_t)ctx->nclasses + 1) * sizeof *delta);
    int *stamp = malloc(((size_t)ctx->nclasses + 1) * sizeof *stamp);
    double flops = current_flops(ctx), start = flops, base = 0, cost = current_cost(ctx);
    int rc, round = 0;

    if (!delta || !stamp) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory measuring sensitivity");
        goto done;
    }
    rc = setup_sensitivity(ctx, model, images, nimages, options, &sn, err);
    if (rc != YD_OK)
        goto done;
    for (int k = 0; k < ctx->nclasses; k++)
        stamp[k] = -1;

    while (start - flops < target) {
        double short_by = target - (start - flops), best_score = INFINITY, change;
        int best = -1, best_step = 0;

        for (int k = 0; k < ctx->nclasses; k++) {
            group_class *cls = &ctx->classes[k];
            int step = next_step(cls);
            double saving, score, time_saving;

            if (step == 0)
                continue;
            shift_class(ctx, cls, step);
            saving = flops - current_flops(ctx);
            time_saving = cost - current_cost(ctx);
            shift_class(ctx, cls, -step);
            if (saving <= 0 || saving - short_by > short_by)
                continue;
            /* Never measured (or its step changed): measure first. */
            score = stamp[k] < 0 ? -INFINITY : delta[k] / time_saving;
            if (score < best_score || best < 0) {
                best_score = score;
                best = k;
                best_step = step;
            }
        }
        if (best < 0)
            break;
        if (stamp[best] != round) {
            group_class *cls = &ctx->classes[best];

            mask_step(ctx, &sn, cls, best_step, 0);
            rc = measure_change(model, &sn, &change, err);
            mask_step(ctx, &sn, cls, best_step, 1);
            if (rc != YD_OK)
                goto done;
            delta[best] = change - base;
            stamp[best] = round;
            continue;
        }
        mask_step(ctx, &sn, &ctx->classes[best], best_step, 0);
        base += delta[best];
        take_step(ctx, &ctx->classes[best], best_step);
        stamp[best] = -1;
        round++;
        flops = current_flops(ctx);
        cost = current_cost(ctx);
        yd_log(YD_LOG_DEBUG, "pruning %s (%d channels left): head change %.4g, %.1f%% of "
               "the FLOPs removed, %d measurements", ctx->graph->values[ctx->classes[best].values[0]].name,
               ctx->classes[best].count - ctx->classes[best].removed, base,
               100.0 * (1.0 - flops / start), sn.measurements);
    }

done:
    /* The rewrite reads the removed columns (compensate_bias) and must see them intact. */
    for (int i = 0; sn.weights && i < ctx->graph->nnodes; i++) {
        yd_conv_params *conv = &ctx->graph->nodes[i].conv;
        size_t n = (size_t)conv->out_c * conv->in_c * conv->kernel_h * conv->kernel_w;

        if (sn.weights[i])
            memcpy(conv->weight, sn.weights[i], n * sizeof(float));
        if (sn.biases[i])
            memcpy(conv->bias, sn.biases[i], (size_t)conv->out_c * sizeof(float));
        if (sn.qweights[i])
            memcpy(conv->qweight, sn.qweights[i], n);
    }
    free_sensitivity(ctx->graph, &sn);
    free(delta);
    free(stamp);
    return rc;
}

/* Copies the kept [out][in] weight blocks of `elem`-byte elements into a new buffer. */
static void *slice_weights(const void *weight, size_t elem, const yd_conv_params *conv,
                           const int *kept_out, int nout, const int *kept_in, int nin)
{
    size_t taps = (size_t)conv->kernel_h * conv->kernel_w * elem;
    unsigned char *sliced = malloc((size_t)nout * nin * taps + 1);
    const unsigned char *src = weight;

    if (!sliced)
        return NULL;
    for (int o = 0; o < nout; o++)
        for (int i = 0; i < nin; i++)
            memcpy(sliced + ((size_t)o * nin + i) * taps,
                   src + ((size_t)kept_out[o] * conv->in_c + kept_in[i]) * taps, taps);
    return sliced;
}

/* Gathers the kept channels of value v, as original indices, into `kept`; returns their count. */
static int kept_channels(const prune_ctx *ctx, int v, int *kept)
{
    int n = 0;

    for (int j = 0; j < ctx->graph->values[v].c; j++) {
        int group = ctx->group_of_slot[slot_of(ctx, v, j)];

        if (group < 0 || !ctx->removed[group])
            kept[n++] = j;
    }
    return n;
}

/*
 * Adds to the bias what the removed input channels contributed on average:
 * sum over taps of W[oc][c] times channel c's calibration mean. Exact in
 * expectation for 1x1 kernels; kernels that reach into zero padding get a
 * little too much at the borders.
 */
static void compensate_bias(const prune_ctx *ctx, yd_node *node)
{
    const yd_value *in = &ctx->graph->values[node->inputs[0]];
    yd_conv_params *conv = &node->conv;
    size_t taps = (size_t)conv->kernel_h * conv->kernel_w;
    double samples = (double)ctx->nimages * in->h * in->w;

    for (int c = 0; c < in->c; c++) {
        int slot = slot_of(ctx, node->inputs[0], c);
        int group = ctx->group_of_slot[slot];
        double mean = ctx->sums[slot] / samples;

        if (group < 0 || !ctx->removed[group])
            continue;
        for (int oc = 0; oc < conv->out_c; oc++) {
            const float *w = conv->weight + ((size_t)oc * conv->in_c + c) * taps;
            double sum = 0;

            for (size_t t = 0; t < taps; t++)
                sum += w[t];
            conv->bias[oc] += (float)(sum * mean);
        }
    }
}

/* Cuts one convolution's weights, bias and int8 data to the kept channels. */
static int shrink_conv(yd_node *node, const int *kept_out, int nout, const int *kept_in, int nin)
{
    yd_conv_params *conv = &node->conv;
    float *weight = slice_weights(conv->weight, sizeof(float), conv, kept_out, nout, kept_in, nin);
    float *bias = malloc((size_t)nout * sizeof *bias + 1);
    int8_t *qweight = NULL;
    float *scale = NULL;

    if (conv->qweight)
        qweight = slice_weights(conv->qweight, 1, conv, kept_out, nout, kept_in, nin);
    if (conv->weight_scale)
        scale = malloc((size_t)nout * sizeof *scale + 1);
    if (!weight || !bias || (conv->qweight && !qweight) || (conv->weight_scale && !scale)) {
        free(weight);
        free(bias);
        free(qweight);
        free(scale);
        return YD_ERR_NO_MEMORY;
    }
    for (int o = 0; o < nout; o++) {
        bias[o] = conv->bias[kept_out[o]];
        if (scale)
            scale[o] = conv->weight_scale[kept_out[o]];
    }

    free(conv->weight);
    free(conv->bias);
    free(conv->qweight);
    free(conv->weight_scale);
    conv->weight = weight;
    conv->bias = bias;
    conv->qweight = qweight;
    conv->weight_scale = scale;
    conv->in_c = nin;
    conv->out_c = nout;
    return YD_OK;
}

static int count_live_convs(const yd_graph *g)
{
    int n = 0;

    for (int i = 0; i < g->nnodes; i++)
        n += !g->nodes[i].dead && g->nodes[i].op == YD_OP_CONV;
    return n;
}

/*
 * Step 4: rewrites the graph to the kept channels and fills report->layers.
 * On failure the graph may be half rewritten; the caller must drop it.
 */
static int rewrite_graph(prune_ctx *ctx, yd_prune_report *report, yd_error *err)
{
    yd_graph *g = ctx->graph;
    int max_c = 1, layer = 0, rc = YD_OK;
    int *kept_out = NULL, *kept_in = NULL;

    for (int v = 0; v < g->nvalues; v++)
        if (g->values[v].c > max_c)
            max_c = g->values[v].c;
    kept_out = malloc((size_t)max_c * sizeof *kept_out);
    kept_in = malloc((size_t)max_c * sizeof *kept_in);
    report->nlayers = count_live_convs(g);
    report->layers = calloc((size_t)report->nlayers + 1, sizeof *report->layers);
    if (!kept_out || !kept_in || !report->layers) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory pruning channels");
        goto done;
    }

    for (int i = 0; i < g->nnodes; i++) {
        yd_node *node = &g->nodes[i];
        yd_prune_layer *row;
        int nout, nin;

        if (node->dead)
            continue;
        if (node->op == YD_OP_SLICE) {
            int in = node->inputs[0], begin = 0;

            for (int j = 0; j < node->slice_begin; j++) {
                int group = ctx->group_of_slot[slot_of(ctx, in, j)];

                begin += group < 0 || !ctx->removed[group];
            }
            node->slice_begin = begin;
            node->slice_end = begin + ctx->kept_c[node->output];
            continue;
        }
        if (node->op != YD_OP_CONV)
            continue;

        nout = kept_channels(ctx, node->output, kept_out);
        nin = kept_channels(ctx, node->inputs[0], kept_in);
        if (ctx->compensate)
            compensate_bias(ctx, node);
        row = &report->layers[layer++];
        row->node = i;
        row->original_out_c = node->conv.out_c;
        row->original_in_c = node->conv.in_c;
        row->kept_out_c = nout;
        row->kept_in_c = nin;
        row->kept_out_channels = malloc(((size_t)nout + 1) * sizeof(int));
        row->kept_in_channels = malloc(((size_t)nin + 1) * sizeof(int));
        if (!row->kept_out_channels || !row->kept_in_channels ||
            shrink_conv(node, kept_out, nout, kept_in, nin) != YD_OK) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory pruning '%s'", node->name);
            goto done;
        }
        memcpy(row->kept_out_channels, kept_out, (size_t)nout * sizeof(int));
        memcpy(row->kept_in_channels, kept_in, (size_t)nin * sizeof(int));
    }

    for (int v = 0; v < g->nvalues; v++)
        if (ctx->live[v])
            g->values[v].c = ctx->kept_c[v];

done:
    free(kept_out);
    free(kept_in);
    return rc;
}

static void free_ctx(prune_ctx *ctx)
{
    free(ctx->slot_base);
    free(ctx->parent);
    free(ctx->live);
    free(ctx->group_of_slot);
    free(ctx->member_start);
    free(ctx->members);
    free(ctx->member_slots);
    free(ctx->locked);
    free(ctx->importance);
    free(ctx->removed);
    free(ctx->classes);
    free(ctx->class_groups);
    free(ctx->kept_c);
    free(ctx->sum_squares);
    free(ctx->sums);
    free(ctx->observed);
}

int yd_prune_model(yd_model *model, const yd_image *images, int nimages,
                   const yd_prune_options *options, yd_prune_report *report, yd_error *err)
{
    prune_ctx ctx = {.graph = model->graph};
    yd_prune_report local = {0};
    yd_graph *g = model->graph;
    int rc;

    if (!report)
        report = &local;
    memset(report, 0, sizeof *report);
    if (!options || !(options->flops_fraction >= 0 && options->flops_fraction <= MAX_FRACTION))
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "FLOPs fraction to prune must be between 0 and %.2f, got %g",
                            MAX_FRACTION, options ? options->flops_fraction : NAN);
    if (options->sensitivity_images < 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "sensitivity images must be 0 or more, got %d", options->sensitivity_images);
    if (!images || nimages < 1)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "pruning needs at least one calibration image");

    ctx.compensate = options->compensate_bias;
    report->flops_before = yd_graph_flops(g);
    rc = build_groups(&ctx, err);
    if (rc != YD_OK)
        goto done;
    rc = score_groups(&ctx, model, images, nimages, options, err);
    if (rc != YD_OK)
        goto done;
    rc = build_classes(&ctx, err);
    if (rc != YD_OK)
        goto done;

    ctx.kept_c = malloc((size_t)g->nvalues * sizeof *ctx.kept_c);
    if (!ctx.kept_c) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory pruning channels");
        goto done;
    }
    for (int v = 0; v < g->nvalues; v++)
        ctx.kept_c[v] = g->values[v].c;
    if (options->sensitivity_images > 0 && !options->per_layer)
        rc = select_by_sensitivity(&ctx, model, images, nimages, options,
                                   options->flops_fraction * report->flops_before, err);
    else
        select_steps(&ctx, options->flops_fraction * report->flops_before, options->per_layer);
    if (rc != YD_OK)
        goto done;
    if (current_flops(&ctx) > (1.0 - options->flops_fraction + 0.02) * report->flops_before)
        yd_log(YD_LOG_WARN, "pruning removes %.1f%% of the FLOPs, not the %.1f%% requested: every "
               "channel class is at its floor (16 channels or 25%%)",
               100.0 * (1.0 - current_flops(&ctx) / report->flops_before),
               100.0 * options->flops_fraction);

    rc = rewrite_graph(&ctx, report, err);
    if (rc != YD_OK)
        goto done;
    model->flops = yd_graph_flops(g);
    rc = yd_graph_plan(g, model->kernels->cb, err);
    if (rc != YD_OK)
        goto done;
    rc = yd_model_repack(model, err);
    if (rc != YD_OK)
        goto done;

    report->flops_after = model->flops;
    report->groups = ctx.ngroups;
    for (int k = 0; k < ctx.nclasses; k++) {
        if (!ctx.classes[k].locked && ctx.classes[k].min_kept < ctx.classes[k].count)
            report->prunable_groups += ctx.classes[k].count;
        report->removed_groups += ctx.classes[k].removed;
    }

done:
    free_ctx(&ctx);
    if (report == &local || rc != YD_OK)
        yd_prune_report_free(report);
    return rc;
}

void yd_prune_report_free(yd_prune_report *report)
{
    if (!report)
        return;
    for (int k = 0; k < report->nlayers; k++) {
        free(report->layers[k].kept_out_channels);
        free(report->layers[k].kept_in_channels);
    }
    free(report->layers);
    report->layers = NULL;
    report->nlayers = 0;
}
