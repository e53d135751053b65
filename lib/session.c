/*
 * Sessions and the executor: one activation arena per session, and one
 * OpenMP parallel region per inference in which every layer splits its work
 * with an orphaned `omp for` (the implicit barrier after each loop orders
 * the layers), so threads are woken once per image, not once per layer.
 */
#include <assert.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xmmintrin.h>

#include "engine.h"
#include "util.h"

enum { INPUT_PLANAR, INPUT_LETTERBOX };

/*
 * Quantized inputs live in QSLOTS slots of s->qinput, each the size of the
 * largest one. A slot contains the running convolution's input or one
 * written ahead for a later reader. In a C2f block the input of the final
 * 1x1 convolution fills up while its bottlenecks run, and the detection
 * head interleaves its box and class branches, so several inputs wait at
 * once. With 4 slots the plan for yolov8n dropped three of its feeds.
 */
#define QSLOTS 6

static float *value_ptr(const yd_session *s, int value)
{
    return s->arena + yd_graph_value_offset(s->model->graph, value);
}

float *yd_session_value(const yd_session *s, int value)
{
    return value_ptr(s, value);
}

/* Largest padded uint8 input among the int8 convolutions, in bytes. */
static size_t qinput_bytes(const yd_graph *g)
{
    size_t max = 0;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        yd_conv_shape shape;
        size_t bytes;

        if (node->dead || !yd_conv_runs_int8(node))
            continue;
        yd_conv_shape_of(g, node, &shape);
        bytes = yd_qconv_input_bytes(&shape, node->conv.pad_bottom, node->conv.pad_right);
        if (bytes > max)
            max = bytes;
    }
    return max;
}

/*
 * Per-thread Winograd scratch floats for the largest layer that may run
 * float or int8 Winograd. Counts every layer whatever its precision,
 * because a model may be repacked with other precisions while a session
 * lives (sensitivity analysis does), and a layer's choice depends only on
 * its shape and the kernel table.
 */
static size_t winograd_floats(const yd_model *model)
{
    const yd_graph *g = model->graph;
    size_t max = 0;

    if (!model->kernels->winograd && !model->kernels->qwinograd)
        return 0;
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        yd_conv_shape shape;
        size_t floats;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        yd_conv_shape_of(g, node, &shape);
        if (model->kernels->winograd && yd_winograd_chosen(&shape, g->cb)) {
            floats = yd_winograd_scratch_floats(&shape, g->cb);
            max = floats > max ? floats : max;
        }
        /* The int8 kernel's blocks are YD_QCB channels, whatever g->cb is. */
        if (model->kernels->qwinograd && yd_qwinograd_chosen(&shape)) {
            floats = yd_winograd_scratch_floats(&shape, YD_QCB);
            max = floats > max ? floats : max;
        }
    }
    return max;
}

/*
 * Points the session at its workspace's buffers. A shared workspace may
 * have grown (and moved them) for a session created later, so every run
 * calls this first.
 */
static void take_workspace(yd_session *s)
{
    const yd_workspace *w = s->workspace ? s->workspace : s->own_workspace;

    s->arena = w->arena;
    s->qinput = w->qinput_bytes > 0 ? w->qinput : NULL;
    s->winograd_scratch = w->winograd_bytes > 0 ? w->winograd : NULL;
}

/*
 * Replaces *buffer by one of `bytes` when it is smaller; 0 or an error
 * code. With touch, every page is written now, so the first request does
 * not pay the faults; without, only the pages a run uses become resident.
 */
static int grow_buffer(void **buffer, size_t *have, size_t bytes, bool touch)
{
    void *grown;

    if (bytes <= *have)
        return 0;
    grown = yd_aligned_alloc(bytes);
    if (!grown)
        return YD_ERR_NO_MEMORY;
    if (touch)
        memset(grown, 0, bytes);
    free(*buffer);
    *buffer = grown;
    *have = bytes;
    return 0;
}

int yd_workspace_create(yd_workspace **out, yd_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a workspace");
    return YD_OK;
}

void yd_workspace_destroy(yd_workspace *workspace)
{
    if (!workspace)
        return;
    free(workspace->arena);
    free(workspace->qinput);
    free(workspace->winograd);
    free(workspace);
}

/* Bytes of the workspace's arena, int8 input slots and Winograd scratch that `s` needs. */
static void session_needs(const yd_session *s, size_t needs[3])
{
    const yd_graph *g = s->model->graph;

    needs[0] = g->arena_bytes;
    needs[1] = QSLOTS * qinput_bytes(g);
    needs[2] = (size_t)s->threads * s->winograd_floats * sizeof(float);
}

/* Replaces *buffer by one of `bytes` when it is larger; 0 or an error code. */
static int shrink_buffer(void **buffer, size_t *have, size_t bytes, bool touch)
{
    if (bytes >= *have)
        return 0;
    free(*buffer);
    *buffer = NULL;
    *have = 0;
    return bytes > 0 ? grow_buffer(buffer, have, bytes, touch) : 0;
}

int yd_workspace_fit(yd_workspace *workspace, yd_session *const *sessions, int count, yd_error *err)
{
    size_t needs[3] = {0, 0, 0};

    for (int i = 0; i < count; i++) {
        size_t n[3];

        session_needs(sessions[i], n);
        for (int k = 0; k < 3; k++)
            needs[k] = n[k] > needs[k] ? n[k] : needs[k];
    }
    if (shrink_buffer((void **)&workspace->arena, &workspace->arena_bytes, needs[0], true) != 0 ||
        shrink_buffer((void **)&workspace->qinput, &workspace->qinput_bytes, needs[1], false) != 0 ||
        shrink_buffer((void **)&workspace->winograd, &workspace->winograd_bytes, needs[2], true) != 0)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory shrinking a workspace");
    return YD_OK;
}

int yd_session_create(yd_model *model, int threads, yd_session **out, yd_error *err)
{
    return yd_session_create_in(model, threads, NULL, out, err);
}

int yd_session_create_in(yd_model *model, int threads, yd_workspace *workspace,
                         yd_session **out, yd_error *err)
{
    const yd_graph *g = model->graph;
    yd_session *s;
    size_t head_floats = 0, needs[3];
    int anchors = 0;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session");
    s->model = yd_model_retain(model);
    s->stop_after = -1;
    s->compact_node = -1;
    s->threads = threads > 0 ? threads : omp_get_num_procs();

    for (int l = 0; l < g->nlevels; l++) {
        const yd_value *box = &g->values[g->head_box[l]];

        head_floats += (size_t)(box->c + g->nc) * box->h * box->w;
        anchors += box->h * box->w;
    }
    s->letterbox = malloc((size_t)g->input_width * g->input_height * 3);
    s->head = malloc(head_floats * sizeof(float));
    s->scratch = yd_head_scratch_create(g->nc, anchors);
    s->capacity = 300;
    s->detections = malloc((size_t)s->capacity * sizeof *s->detections);
    s->winograd_floats = winograd_floats(model);
    if (!s->letterbox || !s->head || !s->scratch || !s->detections) {
        yd_session_destroy(s);
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session");
    }

    /* A private workspace is owned and freed by the session; a shared one grows to fit it. */
    s->workspace = workspace;
    if (!workspace) {
        int rc = yd_workspace_create(&s->own_workspace, err);

        if (rc < 0) {
            yd_session_destroy(s);
            return rc;
        }
        workspace = s->own_workspace;
    }
    /* The int8 input slots are sized for the largest input; most runs touch far less. */
    session_needs(s, needs);
    if (grow_buffer((void **)&workspace->arena, &workspace->arena_bytes, needs[0], true) != 0 ||
        grow_buffer((void **)&workspace->qinput, &workspace->qinput_bytes, needs[1], false) != 0 ||
        grow_buffer((void **)&workspace->winograd, &workspace->winograd_bytes, needs[2], true) != 0) {
        yd_session_destroy(s);
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a session (arena %zu bytes)",
                            g->arena_bytes);
    }
    take_workspace(s);

    /* Head maps point into s->head: per level, box planes then class planes. */
    float *at = s->head;
    s->maps.nc = g->nc;
    s->maps.nlevels = g->nlevels;
    for (int l = 0; l < g->nlevels; l++) {
        const yd_value *box = &g->values[g->head_box[l]];
        yd_head_level *level = &s->maps.level[l];

        level->stride = g->head_stride[l];
        level->height = box->h;
        level->width = box->w;
        level->box = at;
        at += (size_t)box->c * box->h * box->w;
        level->cls = at;
        at += (size_t)g->nc * box->h * box->w;
    }
    *out = s;
    return YD_OK;
}

void yd_session_destroy(yd_session *s)
{
    if (!s)
        return;
    yd_workspace_destroy(s->own_workspace);
    free(s->letterbox);
    free(s->head);
    yd_head_scratch_destroy(s->scratch);
    free(s->detections);
    yd_model_release(s->model);
    free(s);
}

/*
 * A quantized output of an int8 convolution, max pooling or upsampling:
 * part of a later int8 convolution's input.
 */
typedef struct qtarget {
    int reader;      /* the convolution whose input slot it writes */
    int first_block; /* the writer's output channel blocks it takes */
    int nblocks;
    int out_block;   /* the block of the reader's input they go to */
    int in_block;    /* max pooling: the block of that input it reads */
} qtarget;

/* How one node takes part in int8 execution (see quantized_plan). */
typedef struct qstep {
    int slot;      /* int8 conv: the slot holding its quantized input */
    int ready;     /* 1 when earlier steps write that input, so it does not quantize it */
    int lanes;     /* bytes per pixel of that input: YD_QCB, or 4 (see yd_qconv_u8_fn) */
    int float_out; /* 0 when only its quantized outputs are read */
    /* Direct int8 conv with quantized outputs: the blocks whose floats are
     * read, [float_first_block, + float_nblocks); float_nblocks 0: all. */
    int float_first_block, float_nblocks;
    int nowait;    /* no barrier after it: see chain_pooling and group_convolutions */
    int ntargets;
    qtarget targets[YD_QCONV_MAX_OUTPUTS];
} qstep;

/* A candidate for an int8 convolution whose producers write its input. */
typedef struct qfeed {
    int reader;
    int first;                  /* the earliest producer: the slot is held from there */
    int nproducers;
    int producer[YD_MAX_INPUTS];
    int first_block[YD_MAX_INPUTS]; /* see qtarget */
    int nblocks[YD_MAX_INPUTS];
    int out_block[YD_MAX_INPUTS];
    int in_block[YD_MAX_INPUTS];
} qfeed;

static int is_int8_conv(const yd_node *node)
{
    return !node->dead && yd_conv_runs_int8(node);
}

/*
 * Checks a max pooling or upsampling node that writes channels [o, o + c)
 * of the reader's input, [co, co + in_c): the whole output must lie there
 * at a multiple of YD_QCB. Max pooling must keep the map size and read
 * whole blocks of the same input, which its own producers write first.
 * Returns 1 and sets *in_block (the block it reads), or 0.
 */
static int feeds_whole(const yd_graph *g, const yd_node *node, int co, int in_c, int root,
                       int *in_block)
{
    const yd_value *out = &g->values[node->output];
    int o, oi;

    yd_graph_storage_root(g, node->output, &o);
    if (o < co || o + out->c > co + in_c || (o - co) % YD_QCB != 0 ||
        (out->c % YD_QCB != 0 && o + out->c != co + in_c))
        return 0;
    *in_block = 0;
    if (node->op == YD_OP_UPSAMPLE)
        return 1;
    if (node->op != YD_OP_MAXPOOL || node->pool_stride != 1 ||
        g->values[node->inputs[0]].h != out->h || g->values[node->inputs[0]].w != out->w ||
        out->w > 1024 || yd_graph_storage_root(g, node->inputs[0], &oi) != root)
        return 0;
    if (oi < co || oi + out->c > co + in_c || (oi - co) % YD_QCB != 0)
        return 0;
    *in_block = (oi - co) / YD_QCB;
    return 1;
}

/*
 * Finds the nodes that write the float channels int8 convolution `reader`
 * quantizes. The feed is possible when each can write them quantized into
 * the reader's slot: int8 convolutions whose outputs there are whole
 * blocks, and max pooling and upsampling (see feeds_whole). Returns 1 and
 * fills *feed, or 0.
 */
static int find_feed(const yd_graph *g, int reader, qfeed *feed)
{
    const yd_node *c = &g->nodes[reader];
    const int in_c = g->values[c->inputs[0]].c;
    int co, covered = 0;
    const int root = yd_graph_storage_root(g, c->inputs[0], &co);

    if (root == g->input)
        return 0;
    *feed = (qfeed){.reader = reader, .first = reader};
    for (int n = 0; n < reader; n++) {
        const yd_node *node = &g->nodes[n];
        const yd_value *out = &g->values[node->output];
        int o;

        if (node->dead || node->op == YD_OP_INPUT || yd_graph_storage_root(g, node->output, &o) != root)
            continue;
        if (o + out->c <= co || o >= co + in_c)
            continue;
        /* Views and in-place concatenations write nothing. */
        if ((node->op == YD_OP_SLICE && !node->copies) ||
            (node->op == YD_OP_CONCAT && node->copy_inputs == 0))
            continue;
        /* The channels [lo, hi) that it writes and the reader reads must
         * be whole blocks of both, but for the last ones of both. */
        const int lo = o > co ? o : co;
        const int hi = o + out->c < co + in_c ? o + out->c : co + in_c;
        const int p = feed->nproducers;

        if (p == YD_MAX_INPUTS)
            return 0;
        if (!is_int8_conv(node) && !feeds_whole(g, node, co, in_c, root, &feed->in_block[p]))
            return 0;
        if ((lo - o) % YD_QCB != 0 || (lo - co) % YD_QCB != 0 ||
            ((hi - lo) % YD_QCB != 0 && !(hi == o + out->c && hi == co + in_c)))
            return 0;
        feed->producer[p] = n;
        feed->first_block[p] = (lo - o) / YD_QCB;
        feed->nblocks[p] = (hi - lo + YD_QCB - 1) / YD_QCB;
        feed->out_block[p] = (lo - co) / YD_QCB;
        feed->nproducers++;
        feed->first = n < feed->first ? n : feed->first;
        covered += hi - lo;
    }
    if (feed->nproducers == 0 || covered != in_c)
        return 0;
    return 1;
}

/*
 * Marks `value`'s channels in its root buffer as read as floats: flags
 * from first[root], one per channel of the root.
 */
static void mark_float_range(const yd_graph *g, int value, const size_t *first, char *float_read)
{
    int channel;
    const int root = yd_graph_storage_root(g, value, &channel);

    memset(float_read + first[root] + channel, 1, (size_t)g->values[value].c);
}

/* 1 when the node's only quantized output takes all its blocks, to block 0. */
static int whole_target(const yd_graph *g, const yd_node *node, const qstep *step)
{
    const int nob = (g->values[node->output].c + YD_QCB - 1) / YD_QCB;

    return step->ntargets == 1 && step->targets[0].first_block == 0 &&
           step->targets[0].nblocks == nob && step->targets[0].out_block == 0;
}

/*
 * Narrows a direct int8 convolution's float output to the blocks that hold
 * channels read as floats (flags read[0..c)), as in a C2f block whose
 * first split half is only read quantized while the second is a residual.
 */
static void float_blocks(const char *read, int c, qstep *step)
{
    int lo = 0, hi = c;

    while (lo < c && !read[lo])
        lo++;
    while (hi > lo && !read[hi - 1])
        hi--;
    step->float_first_block = lo / YD_QCB;
    step->float_nblocks = (hi + YD_QCB - 1) / YD_QCB - lo / YD_QCB;
}

/*
 * Clears float_out of the nodes with quantized outputs whose float
 * channels nothing reads: every reader is fed by the plan, and no
 * residual, float layer, copy or head map reads them. Nodes go in reverse
 * order, so a node's readers are marked before it decides whether it
 * reads floats itself (max pooling that writes only quantized bytes reads
 * quantized ones).
 */
static void mark_float_readers(const yd_graph *g, qstep *plan)
{
    size_t *first = malloc(((size_t)g->nvalues + 1) * sizeof *first);
    char *float_read;

    if (!first)
        return;
    first[0] = 0;
    for (int v = 0; v < g->nvalues; v++)
        first[v + 1] = first[v] + (size_t)g->values[v].c;
    float_read = calloc(first[g->nvalues], 1);
    if (!float_read) {
        free(first);
        return;
    }
    for (int l = 0; l < g->nlevels; l++) {
        mark_float_range(g, g->head_box[l], first, float_read);
        mark_float_range(g, g->head_cls[l], first, float_read);
    }
    for (int i = g->nnodes - 1; i >= 0; i--) {
        const yd_node *node = &g->nodes[i];
        int channel, root;

        if (node->dead || (node->op == YD_OP_SLICE && !node->copies))
            continue;
        if (plan[i].ntargets > 0) {
            root = yd_graph_storage_root(g, node->output, &channel);
            plan[i].float_out = memchr(float_read + first[root] + channel, 1,
                                       (size_t)g->values[node->output].c) != NULL;
            /* The Winograd kernel quantizes from its float output, but for a
             * single output that takes every block. */
            if (node->op == YD_OP_CONV && node->conv.qpacked->winograd_u &&
                !whole_target(g, node, &plan[i]))
                plan[i].float_out = 1;
            else if (node->op == YD_OP_CONV && plan[i].float_out)
                float_blocks(float_read + first[root] + channel, g->values[node->output].c,
                             &plan[i]);
        }
        for (int k = 0; k < node->ninputs; k++) {
            if (node->op == YD_OP_CONCAT && !(node->copy_inputs & (1u << k)))
                continue;
            if (k == 0 && is_int8_conv(node) && plan[i].ready)
                continue;
            if (node->op == YD_OP_MAXPOOL && plan[i].ntargets > 0 && !plan[i].float_out)
                continue;
            mark_float_range(g, node->inputs[k], first, float_read);
        }
        if (node->residual >= 0)
            mark_float_range(g, node->residual, first, float_read);
    }
    free(first);
    free(float_read);
}

/*
 * Sets nowait on quantized max pooling that the next node pools again
 * from the same blocks of the same slot: the thread that wrote a block
 * reads it (see yd_u8_maxpool), so no barrier is needed between them.
 */
static void chain_pooling(const yd_graph *g, qstep *plan)
{
    for (int i = 0; i < g->nnodes; i++) {
        const qtarget *t = &plan[i].targets[0];
        int j = i + 1;

        if (g->nodes[i].dead || g->nodes[i].op != YD_OP_MAXPOOL || plan[i].ntargets != 1)
            continue;
        while (j < g->nnodes && g->nodes[j].dead)
            j++;
        if (j == g->nnodes || g->nodes[j].op != YD_OP_MAXPOOL || plan[j].ntargets != 1)
            continue;
        plan[i].nowait = plan[j].targets[0].reader == t->reader &&
                         plan[j].targets[0].in_block == t->out_block &&
                         plan[j].targets[0].nblocks == t->nblocks;
    }
}

/* Floats [first, end) of the arena. */
typedef struct span {
    size_t first, end;
} span;

static span value_span(const yd_graph *g, int value)
{
    const yd_value *v = &g->values[value];
    const size_t first = yd_graph_value_offset(g, value);

    return (span){first, first + yd_blocked_floats(v->c, v->h, v->w, g->cb)};
}

static int spans_overlap(span a, span b)
{
    return a.first < b.end && b.first < a.end;
}

/* What an int8 convolution reads and writes while it runs, for group_convolutions. */
typedef struct qaccess {
    span reads[2], writes;
    int nreads, has_writes;
    int slot_read;                          /* its input slot */
    int slot_writes[YD_QCONV_MAX_OUTPUTS + 1];
    int nslot_writes;
} qaccess;

static qaccess access_of(const yd_graph *g, const qstep *plan, int i)
{
    const yd_node *node = &g->nodes[i];
    const qstep *step = &plan[i];
    qaccess a = {.slot_read = step->slot};

    if (!step->ready) {
        a.reads[a.nreads++] = value_span(g, node->inputs[0]);
        a.slot_writes[a.nslot_writes++] = step->slot;
    }
    if (node->residual >= 0)
        a.reads[a.nreads++] = value_span(g, node->residual);
    if (step->float_out) {
        a.writes = value_span(g, node->output);
        a.has_writes = 1;
    }
    for (int t = 0; t < step->ntargets; t++)
        a.slot_writes[a.nslot_writes++] = plan[step->targets[t].reader].slot;
    return a;
}

/*
 * 1 when `later` can run while `earlier` still runs on other threads: no
 * float memory or slot that one writes is read or written by the other.
 * Two writes to one slot are two producers of one reader's input, which
 * write different blocks.
 */
static int accesses_independent(const qaccess *earlier, const qaccess *later)
{
    for (int k = 0; k < later->nslot_writes; k++)
        if (later->slot_writes[k] == earlier->slot_read)
            return 0;
    for (int k = 0; k < earlier->nslot_writes; k++)
        if (earlier->slot_writes[k] == later->slot_read)
            return 0;
    for (int k = 0; k < earlier->nreads && later->has_writes; k++)
        if (spans_overlap(earlier->reads[k], later->writes))
            return 0;
    for (int k = 0; k < later->nreads && earlier->has_writes; k++)
        if (spans_overlap(later->reads[k], earlier->writes))
            return 0;
    return !(earlier->has_writes && later->has_writes && spans_overlap(earlier->writes, later->writes));
}

/*
 * Sets nowait on int8 convolutions whose next layer shares no data with
 * them, nor with the others of the group still running. Threads that
 * finish one layer then start the next at once, as in the box and class
 * branches of the detection head and the neck layers beside them. Layers
 * that do nothing at run time (views, in-place concatenations) are
 * skipped, and any other layer ends the group. A group has at most 8
 * layers.
 */
static void group_convolutions(const yd_graph *g, qstep *plan)
{
    enum { GROUP_MAX = 8 };
    qaccess group[GROUP_MAX];
    int members = 0, previous = -1;

    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        int joins = members > 0 && members < GROUP_MAX && is_int8_conv(node) && plan[i].ready;

        if (node->dead || (node->op == YD_OP_SLICE && !node->copies) ||
            (node->op == YD_OP_CONCAT && node->copy_inputs == 0))
            continue;
        if (joins) {
            const qaccess a = access_of(g, plan, i);

            for (int k = 0; k < members && joins; k++)
                joins = accesses_independent(&group[k], &a);
        }
        if (joins) {
            plan[previous].nowait = 1;
        } else {
            members = 0;
        }
        if (is_int8_conv(node) && plan[i].ready)
            group[members++] = access_of(g, plan, i);
        previous = i;
    }
}

/*
 * Takes a slot that is free at node `now` and keeps it until node `until`:
 * the one free for longest, so layers next to each other tend to use
 * different slots and group_convolutions can run them together.
 */
static void take_slot(int slot_end[QSLOTS], int now, int until, int *slot)
{
    int best = -1;

    for (int k = 0; k < QSLOTS; k++)
        if (slot_end[k] < now && (best < 0 || slot_end[k] < slot_end[best]))
            best = k;
    assert(best >= 0);
    slot_end[best] = until;
    *slot = best;
}

/*
 * Plans which int8 convolutions write their outputs already quantized
 * into the input slot of later int8 convolutions, so those need not
 * quantize a float tensor (a pass over it and a barrier). A reader is fed
 * when every channel it reads comes from int8 convolutions (see
 * find_feed), and a producer writes no floats when nothing reads them
 * (see mark_float_readers). A fed reader's slot is held from its first
 * producer until it runs. The planner takes the shortest such spans first
 * while no node would need more than QSLOTS slots, counting one for each
 * convolution that still quantizes its own input. No feed is planned
 * while a hook or stop point needs float values. When the first int8
 * convolution alone reads the network input, the image is quantized
 * straight into its slot. Returns nnodes steps (NULL: plain execution,
 * also when out of memory); the caller frees them.
 */
static qstep *quantized_plan(const yd_session *s, int *first)
{
    const yd_graph *g = s->model->graph;
    const int feeds_possible = yd_qconv_multi_of(s->model->kernels) != NULL;
    qstep *plan;
    qfeed *feeds;
    int *count, *load;
    int slot_end[QSLOTS];
    int nfeeds = 0;

    *first = -1;
    if (s->observe || s->stop_after >= 0 || !s->qinput)
        return NULL;
    plan = malloc((size_t)g->nnodes * sizeof *plan);
    feeds = malloc((size_t)g->nnodes * sizeof *feeds);
    count = calloc((size_t)g->nvalues, sizeof *count);
    load = calloc((size_t)g->nnodes, sizeof *load);
    if (!plan || !feeds || !count || !load) {
        free(plan);
        free(feeds);
        free(count);
        free(load);
        return NULL;
    }
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        plan[i] = (qstep){.lanes = YD_QCB, .float_out = 1};
        if (node->dead)
            continue;
        for (int k = 0; k < node->ninputs; k++)
            count[node->inputs[k]]++;
        if (node->residual >= 0)
            count[node->residual]++;
    }
    for (int l = 0; l < g->nlevels; l++) {
        count[g->head_box[l]]++;
        count[g->head_cls[l]]++;
    }

    /* Every int8 convolution needs a slot while it runs. */
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        if (!is_int8_conv(node))
            continue;
        load[i] = 1;
        if (*first == -1) {
            int alone = node->inputs[0] == g->input && count[g->input] == 1;

            *first = alone && node->conv.in_c == 3 ? i : -2;
            plan[i].ready = *first == i;
        } else if (feeds_possible && find_feed(g, i, &feeds[nfeeds])) {
            nfeeds++;
        }
    }

    /* Shortest spans first: insertion sort, a few dozen feeds at most. */
    for (int a = 1; a < nfeeds; a++) {
        qfeed f = feeds[a];
        int b = a - 1;

        while (b >= 0 && feeds[b].reader - feeds[b].first > f.reader - f.first) {
            feeds[b + 1] = feeds[b];
            b--;
        }
        feeds[b + 1] = f;
    }
    for (int a = 0; a < nfeeds; a++) {
        const qfeed *f = &feeds[a];
        int fits = 1;

        /* The reader's own slot is counted in load[reader] already. */
        for (int t = f->first; t < f->reader && fits; t++)
            fits = load[t] < QSLOTS;
        for (int p = 0; p < f->nproducers && fits; p++)
            fits = plan[f->producer[p]].ntargets < YD_QCONV_MAX_OUTPUTS;
        if (!fits)
            continue;
        for (int t = f->first; t < f->reader; t++)
            load[t]++;
        for (int p = 0; p < f->nproducers; p++) {
            qstep *step = &plan[f->producer[p]];

            step->targets[step->ntargets++] = (qtarget){
                .reader = f->reader,
                .first_block = f->first_block[p],
                .nblocks = f->nblocks[p],
                .out_block = f->out_block[p],
                .in_block = f->in_block[p],
            };
        }
        plan[f->reader].ready = 1;
    }

    mark_float_readers(g, plan);

    /* Slots by a sweep in node order: a fed reader's slot is taken at
     * its first producer, any other's when it runs, and each is free
     * again after its reader runs. The loads above keep the sweep within
     * QSLOTS, because each slot's use is one span of nodes. */
    for (int k = 0; k < QSLOTS; k++)
        slot_end[k] = -1;
    for (int i = 0; i < g->nnodes; i++)
        plan[i].slot = -1;
    for (int i = 0; i < g->nnodes; i++) {
        const qstep *step = &plan[i];

        if (is_int8_conv(&g->nodes[i]) && step->slot < 0)
            take_slot(slot_end, i, i, &plan[i].slot);
        for (int t = 0; t < step->ntargets; t++) {
            const int reader = step->targets[t].reader;

            if (plan[reader].slot < 0)
                take_slot(slot_end, i, reader, &plan[reader].slot);
        }
    }
    chain_pooling(g, plan);
    group_convolutions(g, plan);

    /* Only the direct kernel's quantizing variants read the compact layout. */
    if (*first >= 0 && plan[*first].ntargets > 0 && !g->nodes[*first].conv.qpacked->winograd_u)
        plan[*first].lanes = 4;

    free(feeds);
    free(count);
    free(load);
    return plan;
}

/*
 * The head map that an int8 head convolution writes planar, straight from
 * its epilogue, instead of blocked floats that run() unpacks afterwards;
 * NULL when it does not. step is the node's plan entry (NULL: no plan).
 */
static float *planar_head_map(const yd_session *s, const yd_node *node, const qstep *step)
{
    const yd_graph *g = s->model->graph;
    float *map = NULL;

    if (!step || step->ntargets > 0 || !yd_conv_runs_int8(node) || node->residual >= 0 ||
        node->conv.qpacked->winograd_u || !yd_qconv_planar_of(s->model->kernels))
        return NULL;
    for (int l = 0; l < g->nlevels; l++) {
        if (node->output == g->head_box[l])
            map = (float *)s->maps.level[l].box;
        else if (node->output == g->head_cls[l])
            map = (float *)s->maps.level[l].cls;
    }
    if (!map)
        return NULL;

    /* The blocked output is never written, so no node may read it. */
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *reader = &g->nodes[i];

        if (reader->dead)
            continue;
        if (reader->residual == node->output)
            return NULL;
        for (int k = 0; k < reader->ninputs; k++)
            if (reader->inputs[k] == node->output)
                return NULL;
    }
    return map;
}

/* The head map that the producer of `value` writes planar, or NULL (see planar_head_map). */
static float *planar_head_value(const yd_session *s, const qstep *plan, int value)
{
    const yd_graph *g = s->model->graph;

    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].output == value)
            return planar_head_map(s, &g->nodes[i], plan ? &plan[i] : NULL);
    return NULL;
}

/* Unpacks head map `value` into the planar `out`, unless the last
 * convolution's epilogue already wrote it there. Threads share the work
 * without a barrier at the end. */
static void unpack_head_map(yd_session *s, const qstep *plan, int value, float *out)
{
    const yd_value *v = &s->model->graph->values[value];
    void (*const unpack)(const float *, int, int, int, float *) = s->model->kernels->unpack_planar;

    if (planar_head_value(s, plan, value))
        return;
    if (unpack)
        unpack(value_ptr(s, value), v->c, v->h, v->w, out);
    else
        yd_f32_unpack_planar_nowait(value_ptr(s, value), v->c, v->h, v->w, s->model->graph->cb,
                                    out);
}

/*
 * Runs an int8 layer packed for Winograd: float output to `out` (or NULL)
 * and quantized outputs to next[0..nnext).
 */
static void run_qwinograd(const yd_session *s, const yd_conv_shape *shape, const yd_qconv *q,
                          const uint8_t *qin, const float *residual, float *out,
                          const yd_qconv_u8_out *next, int nnext)
{
    /* winograd_floats() sized the scratch for every layer that can be chosen. */
    assert(s->winograd_floats >= yd_winograd_scratch_floats(shape, YD_QCB));
    s->model->kernels->qwinograd(shape, q, qin, residual, out, next, nnext, s->winograd_scratch,
                                 s->winograd_floats);
}

/*
 * Runs an int8 convolution with its step of the int8 plan, or with none:
 * it quantizes its input unless producers wrote it, and writes floats,
 * quantized outputs for later convolutions, or both.
 */
static void run_qconv(yd_session *s, const yd_node *node, const yd_conv_shape *shape,
                      const qstep *step, size_t slot_bytes)
{
    const yd_graph *g = s->model->graph;
    const yd_kernel_table *k = s->model->kernels;
    const yd_value *in0 = &g->values[node->inputs[0]];
    const yd_qconv *q = node->conv.qpacked;
    uint8_t *qin = s->qinput + (size_t)(step ? step->slot : 0) * slot_bytes;
    const float *residual = node->residual >= 0 ? value_ptr(s, node->residual) : NULL;
    float *out = step && !step->float_out ? NULL : value_ptr(s, node->output);
    yd_qconv_u8_out next[YD_QCONV_MAX_OUTPUTS];
    const int nnext = step ? step->ntargets : 0;
    yd_conv_shape grouped = *shape;

    grouped.nowait = step && step->nowait;
    shape = &grouped;

    if (!step || !step->ready)
        k->quantize(value_ptr(s, node->inputs[0]), in0->c, in0->h, in0->w, g->cb,
                    node->conv.input_scale, node->conv.input_zero, node->conv.pad_top,
                    node->conv.pad_left, node->conv.pad_bottom, node->conv.pad_right, qin);
    for (int t = 0; t < nnext; t++) {
        const qtarget *target = &step->targets[t];
        const qstep *to = step + (target->reader - (node - g->nodes));
        const yd_conv_params *reader = &g->nodes[target->reader].conv;

        next[t] = (yd_qconv_u8_out){
            .out = s->qinput + (size_t)to->slot * slot_bytes,
            .scale = reader->input_scale,
            .zero = reader->input_zero,
            .pad_top = reader->pad_top,
            .pad_left = reader->pad_left,
            .pad_bottom = reader->pad_bottom,
            .pad_right = reader->pad_right,
            .first_block = target->first_block,
            .nblocks = target->nblocks,
            .out_block = target->out_block,
        };
    }

    float *planar = planar_head_map(s, node, step);

    if (planar) {
        yd_qconv_planar_of(k)(shape, q, qin, step->lanes, planar);
    } else if (q->winograd_u) {
        assert(!step || step->lanes == YD_QCB);
        run_qwinograd(s, shape, q, qin, residual, out, next, nnext);
    } else if (nnext > 0) {
        yd_qconv_multi_of(k)(shape, q, qin, step->lanes, residual, out, step->float_first_block,
                             step->float_nblocks, next, nnext);
    } else {
        k->qconv(shape, q, qin, residual, out, g->cb);
    }
}

/* The slot of int8 convolution `reader` as a uint8 layout. */
static yd_u8_layout reader_layout(const yd_session *s, const qstep *plan_at_reader, int reader,
                                  size_t slot_bytes)
{
    const yd_graph *g = s->model->graph;
    const yd_node *node = &g->nodes[reader];
    const yd_value *in = &g->values[node->inputs[0]];
    const yd_conv_params *c = &node->conv;

    return (yd_u8_layout){
        .data = s->qinput + (size_t)plan_at_reader->slot * slot_bytes,
        .zero = c->input_zero,
        .hq = in->h + c->pad_top + c->pad_bottom,
        .wq = in->w + c->pad_left + c->pad_right,
        .pad_top = c->pad_top,
        .pad_left = c->pad_left,
        .pad_bottom = c->pad_bottom,
        .pad_right = c->pad_right,
    };
}

/*
 * Runs a max pooling or upsampling node that writes quantized outputs
 * (step->ntargets > 0): pooling reads the quantized bytes its producers
 * wrote into the same slot, upsampling quantizes its float input.
 */
static void run_quantized_op(yd_session *s, const yd_node *node, const qstep *step,
                             size_t slot_bytes)
{
    const yd_graph *g = s->model->graph;
    const yd_value *in = &g->values[node->inputs[0]];

    for (int t = 0; t < step->ntargets; t++) {
        const qtarget *target = &step->targets[t];
        const qstep *to = step + (target->reader - (node - g->nodes));
        const yd_u8_layout layout = reader_layout(s, to, target->reader, slot_bytes);

        if (node->op == YD_OP_MAXPOOL)
            yd_u8_maxpool(&layout, target->in_block, target->out_block, target->nblocks, in->h,
                          in->w, node->pool_kernel, node->pool_pad, !step->nowait);
        else
            yd_u8_upsample_quantize(value_ptr(s, node->inputs[0]), target->nblocks, in->h, in->w,
                                    node->scale, g->nodes[target->reader].conv.input_scale, &layout,
                                    target->out_block);
    }
}

/*
 * Runs one node; called by every thread of the team. `step` is the node's
 * entry in the int8 plan, or NULL to run it plainly.
 */
static void run_node(yd_session *s, const yd_node *node, const qstep *step, size_t slot_bytes)
{
    const yd_graph *g = s->model->graph;
    const int cb = g->cb;
    const yd_value *out = &g->values[node->output];
    const yd_value *in0 = node->ninputs > 0 ? &g->values[node->inputs[0]] : NULL;
    size_t n = yd_blocked_floats(out->c, out->h, out->w, cb);

    switch (node->op) {
    case YD_OP_INPUT:
        break;
    case YD_OP_CONV: {
        yd_conv_shape shape;

        yd_conv_shape_of(g, node, &shape);
        if (yd_conv_runs_int8(node)) {
            run_qconv(s, node, &shape, step, slot_bytes);
            break;
        }
        if (node->conv.winograd) {
            /* winograd_floats() sized the scratch for every layer that can be chosen. */
            assert(s->winograd_floats >= yd_winograd_scratch_floats(&shape, cb));
            s->model->kernels->winograd(&shape, node->conv.packed, value_ptr(s, node->inputs[0]),
                                        node->residual >= 0 ? value_ptr(s, node->residual) : NULL,
                                        value_ptr(s, node->output), s->winograd_scratch,
                                        s->winograd_floats);
            break;
        }
        if (node - g->nodes == s->compact_node)
            shape.in_pixel = 4;
        s->model->kernels->conv(&shape, node->conv.packed, value_ptr(s, node->inputs[0]),
                                node->residual >= 0 ? value_ptr(s, node->residual) : NULL,
                                value_ptr(s, node->output));
        break;
    }
    case YD_OP_MAXPOOL:
        if (step && step->ntargets > 0)
            run_quantized_op(s, node, step, slot_bytes);
        if (step && !step->float_out)
            break;
        yd_f32_maxpool(value_ptr(s, node->inputs[0]), in0->c, in0->h, in0->w, node->pool_kernel,
                       node->pool_stride, node->pool_pad, value_ptr(s, node->output), out->h, out->w,
                       cb);
        break;
    case YD_OP_UPSAMPLE:
        if (step && step->ntargets > 0)
            run_quantized_op(s, node, step, slot_bytes);
        if (step && !step->float_out)
            break;
        yd_f32_upsample_nearest(value_ptr(s, node->inputs[0]), in0->c, in0->h, in0->w, node->scale,
                                value_ptr(s, node->output), cb);
        break;
    case YD_OP_CONCAT: {
        int offset = 0;

        for (int k = 0; k < node->ninputs; k++) {
            const yd_value *in = &g->values[node->inputs[k]];

            if (node->copy_inputs & (1u << k))
                yd_f32_copy_channels(value_ptr(s, node->inputs[k]), 0, value_ptr(s, node->output),
                                     offset, in->c, in->h, in->w, cb);
            offset += in->c;
        }
        break;
    }
    case YD_OP_SLICE:
        if (node->copies)
            yd_f32_copy_channels(value_ptr(s, node->inputs[0]), node->slice_begin,
                                 value_ptr(s, node->output), 0, out->c, out->h, out->w, cb);
        break;
    case YD_OP_ADD:
        yd_f32_add(value_ptr(s, node->inputs[0]), value_ptr(s, node->inputs[1]),
                   value_ptr(s, node->output), n);
        break;
    case YD_OP_MUL:
        yd_f32_mul(value_ptr(s, node->inputs[0]), value_ptr(s, node->inputs[1]),
                   value_ptr(s, node->output), n);
        break;
    case YD_OP_SIGMOID:
        yd_f32_sigmoid(value_ptr(s, node->inputs[0]), value_ptr(s, node->output), n);
        break;
    case YD_OP_SILU:
        yd_f32_silu(value_ptr(s, node->inputs[0]), value_ptr(s, node->output), n);
        break;
    }
}

/*
 * The node that can read the network input in the compact [h][w][4]
 * layout: its only reader, a float direct convolution of at most 4 input
 * channels. Packing 4 floats per pixel instead of a whole channel block
 * writes and reads a quarter of the bytes (16 floats per pixel with
 * AVX-512). -1 while an observe hook or stop_after may read the input in
 * the blocked layout.
 */
static int compact_input_node(const yd_session *s)
{
    const yd_graph *g = s->model->graph;
    int reader = -1, readers = 0;

    if (s->observe || s->stop_after >= 0 || g->values[g->input].c > 4)
        return -1;
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        if (node->dead)
            continue;
        for (int k = 0; k < node->ninputs; k++)
            if (node->inputs[k] == g->input) {
                reader = i;
                readers++;
            }
        if (node->residual == g->input)
            readers++;
    }
    if (readers != 1 || g->nodes[reader].op != YD_OP_CONV ||
        yd_conv_runs_int8(&g->nodes[reader]) || g->nodes[reader].conv.winograd)
        return -1;
    return reader;
}

/* Adds the time since `since` to node's profile counter; returns now. */
static double profile_mark(yd_session *s, int node, double since)
{
    double now = omp_get_wtime();

    s->node_ms[node] += (now - since) * 1e3;
    return now;
}

static void run(yd_session *s, int kind, const float *planar)
{
    const double start = omp_get_wtime();
    const yd_graph *g = s->model->graph;
    const size_t qbytes = qinput_bytes(g);
    int first_index;
    qstep *plan;

    take_workspace(s);
    plan = quantized_plan(s, &first_index);
    const yd_node *first = plan && first_index >= 0 ? &g->nodes[first_index] : NULL;
    int pixel = g->cb; /* floats per pixel of the float network input */

    s->compact_node = first ? -1 : compact_input_node(s);
    if (s->compact_node >= 0)
        pixel = 4;

#pragma omp parallel num_threads(s->threads)
    {
        int last = s->stop_after >= 0 && s->stop_after < g->nnodes ? s->stop_after : g->nnodes - 1;

        /* Flush denormals on every thread of the team: FTZ and DAZ. */
        _mm_setcsr(_mm_getcsr() | 0x8040);

        if (first) {
            const yd_conv_params *c = &first->conv;
            const qstep *step = &plan[first_index];
            uint8_t *qin = s->qinput + (size_t)step->slot * qbytes;

            if (kind == INPUT_PLANAR)
                yd_u8_quantize_planar(planar, 3, g->input_height, g->input_width, step->lanes,
                                      c->input_scale, c->input_zero, c->pad_top, c->pad_left,
                                      c->pad_bottom, c->pad_right, qin);
            else
                yd_u8_quantize_rgb8(s->letterbox, g->input_width, g->input_height, step->lanes,
                                    c->input_scale, c->input_zero, c->pad_top, c->pad_left,
                                    c->pad_bottom, c->pad_right, qin);
        } else if (kind == INPUT_PLANAR) {
            yd_f32_pack_planar(planar, 3, g->input_height, g->input_width, pixel,
                               value_ptr(s, g->input));
        } else {
            yd_f32_pack_rgb8(s->letterbox, g->input_width, g->input_height, pixel,
                             value_ptr(s, g->input));
        }

        double mark = 0;

        if (s->node_ms) {
#pragma omp barrier
#pragma omp master
            mark = profile_mark(s, g->nnodes, start);
        }
        for (int i = 0; i <= last; i++) {
            if (g->nodes[i].dead)
                continue;
            run_node(s, &g->nodes[i], plan ? &plan[i] : NULL, qbytes);
            if (s->node_ms) {
#pragma omp barrier
#pragma omp master
                mark = profile_mark(s, i, mark);
            }
            if (s->observe) {
#pragma omp barrier
                s->observe(s, i, value_ptr(s, g->nodes[i].output), s->observe_user);
#pragma omp barrier
            }
        }

        /* The barrier at the end of the parallel region orders these with
         * the head decode. */
        for (int l = 0; l < g->nlevels && last == g->nnodes - 1; l++) {
            unpack_head_map(s, plan, g->head_box[l], (float *)s->maps.level[l].box);
            unpack_head_map(s, plan, g->head_cls[l], (float *)s->maps.level[l].cls);
        }
        if (s->node_ms) {
#pragma omp barrier
#pragma omp master
            profile_mark(s, g->nnodes, mark);
        }
    }
    free(plan);
}

void yd_session_warm_up(yd_session *s)
{
    const yd_graph *g = s->model->graph;

    memset(s->letterbox, 114, (size_t)g->input_width * g->input_height * 3);
    run(s, INPUT_LETTERBOX, NULL);
}

void yd_session_run_planar(yd_session *s, const float *input)
{
    run(s, INPUT_PLANAR, input);
}

void yd_session_run_letterbox(yd_session *s)
{
    run(s, INPUT_LETTERBOX, NULL);
}

int yd_session_run_image(yd_session *s, const yd_image *image, yd_letterbox *lb, yd_error *err)
{
    int rc;

    yd_letterbox_compute_rect(image->width, image->height, s->model->input_width,
                              s->model->input_height, lb);
    rc = yd_letterbox_rgb8(image, lb, s->letterbox, err);
    if (rc == YD_OK)
        yd_session_run_letterbox(s);
    return rc;
}

int yd_detect(yd_session *s, const yd_image *image, const yd_detect_params *params,
              yd_result *result, yd_error *err)
{
    const yd_model *model = s->model;
    yd_letterbox lb;
    double t0, t1, t2, t3;
    int count, rc;

    memset(result, 0, sizeof *result);
    if (!image || !image->rgb || image->width <= 0 || image->height <= 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "no image");
    if (params->max_det < 1 || params->max_det > s->capacity)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "max_det %d is outside 1..%d",
                            params->max_det, s->capacity);

    t0 = yd_now_ms();
    yd_letterbox_compute_rect(image->width, image->height, model->input_width,
                              model->input_height, &lb);
    rc = yd_letterbox_rgb8(image, &lb, s->letterbox, err);
    if (rc != YD_OK)
        return rc;
    t1 = yd_now_ms();
    yd_session_run_letterbox(s);
    t2 = yd_now_ms();

    count = yd_head_detect(&s->maps, params, s->scratch, s->detections, s->capacity);
    if (count < 0)
        return yd_error_set(err, count, "detection head failed");
    yd_head_unletterbox(s->detections, count, &lb, image->width, image->height);
    result->detections = malloc((size_t)(count ? count : 1) * sizeof *result->detections);
    if (!result->detections)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for %d detections", count);
    memcpy(result->detections, s->detections, (size_t)count * sizeof *result->detections);
    t3 = yd_now_ms();

    result->count = count;
    result->image_width = image->width;
    result->image_height = image->height;
    result->timings.preprocess_ms = t1 - t0;
    result->timings.inference_ms = t2 - t1;
    result->timings.postprocess_ms = t3 - t2;
    return YD_OK;
}

void yd_result_free(yd_result *result)
{
    if (!result)
        return;
    free(result->detections);
    result->detections = NULL;
    result->count = 0;
}
