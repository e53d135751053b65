/*
 * Graph IR construction and the passes that prepare it for execution:
 * activation fusion, residual fusion, concat-in-place aliasing and the
 * arena plan. See graph.h for the layout conventions.
 */
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "kernels/kernels.h"
#include "util.h"

yd_graph *yd_graph_create(void)
{
    yd_graph *graph = calloc(1, sizeof *graph);

    if (graph)
        graph->input = -1;
    return graph;
}

void yd_graph_free(yd_graph *graph)
{
    if (!graph)
        return;
    for (int i = 0; i < graph->nnodes; i++) {
        yd_node *node = &graph->nodes[i];

        free(node->name);
        free(node->conv.weight);
        free(node->conv.bias);
        free(node->conv.packed);
        free(node->conv.qweight);
        free(node->conv.source_channels);
        if (node->conv.qpacked)
            yd_qconv_free(node->conv.qpacked);
        free(node->conv.qpacked);
        free(node->conv.weight_scale);
    }
    for (int i = 0; i < graph->nvalues; i++)
        free(graph->values[i].name);
    free(graph->nodes);
    free(graph->values);
    free(graph);
}

int yd_graph_add_value(yd_graph *graph, const char *name, int c, int h, int w)
{
    yd_value *value;

    if (graph->nvalues == graph->values_cap) {
        int cap = graph->values_cap ? graph->values_cap * 2 : 64;
        yd_value *grown = realloc(graph->values, (size_t)cap * sizeof *grown);

        if (!grown)
            return -1;
        graph->values = grown;
        graph->values_cap = cap;
    }
    value = &graph->values[graph->nvalues];
    memset(value, 0, sizeof *value);
    value->name = strdup(name ? name : "");
    if (!value->name)
        return -1;
    value->c = c;
    value->h = h;
    value->w = w;
    value->producer = -1;
    value->storage = graph->nvalues;
    return graph->nvalues++;
}

int yd_graph_add_node(yd_graph *graph, yd_op op, const char *name)
{
    yd_node *node;

    if (graph->nnodes == graph->nodes_cap) {
        int cap = graph->nodes_cap ? graph->nodes_cap * 2 : 64;
        yd_node *grown = realloc(graph->nodes, (size_t)cap * sizeof *grown);

        if (!grown)
            return -1;
        graph->nodes = grown;
        graph->nodes_cap = cap;
    }
    node = &graph->nodes[graph->nnodes];
    memset(node, 0, sizeof *node);
    node->op = op;
    node->name = strdup(name ? name : "");
    if (!node->name)
        return -1;
    node->residual = -1;
    node->output = -1;
    return graph->nnodes++;
}

const char *yd_op_name(yd_op op)
{
    switch (op) {
    case YD_OP_INPUT: return "Input";
    case YD_OP_CONV: return "Conv";
    case YD_OP_MAXPOOL: return "MaxPool";
    case YD_OP_UPSAMPLE: return "Upsample";
    case YD_OP_CONCAT: return "Concat";
    case YD_OP_SLICE: return "Slice";
    case YD_OP_ADD: return "Add";
    case YD_OP_SIGMOID: return "Sigmoid";
    case YD_OP_SILU: return "SiLU";
    case YD_OP_MUL: return "Mul";
    }
    return "?";
}

static int is_head_output(const yd_graph *graph, int value)
{
    for (int l = 0; l < graph->nlevels; l++)
        if (graph->head_box[l] == value || graph->head_cls[l] == value)
            return 1;
    return 0;
}

/* Recounts the live readers of every value. */
static void count_consumers(yd_graph *graph)
{
    for (int v = 0; v < graph->nvalues; v++)
        graph->values[v].consumers = 0;
    for (int i = 0; i < graph->nnodes; i++) {
        const yd_node *node = &graph->nodes[i];

        if (node->dead)
            continue;
        for (int k = 0; k < node->ninputs; k++)
            graph->values[node->inputs[k]].consumers++;
        if (node->residual >= 0)
            graph->values[node->residual].consumers++;
    }
}

/* Makes node `from`'s output value be produced by node `to` instead. */
static void move_output(yd_graph *graph, int from, int to)
{
    int value = graph->nodes[from].output;

    graph->nodes[to].output = value;
    graph->values[value].producer = to;
    graph->nodes[from].dead = 1;
}

/*
 * Mul(x, Sigmoid(x)) becomes SiLU: folded into the convolution producing x
 * when the Sigmoid and the Mul are x's only readers, else a SiLU node.
 */
static void fuse_silu(yd_graph *graph)
{
    for (int i = 0; i < graph->nnodes; i++) {
        yd_node *mul = &graph->nodes[i];
        int x = -1, sig = -1;

        if (mul->dead || mul->op != YD_OP_MUL)
            continue;
        for (int k = 0; k < 2; k++) {
            int p = graph->values[mul->inputs[k]].producer;

            if (p >= 0 && graph->nodes[p].op == YD_OP_SIGMOID && !graph->nodes[p].dead &&
                graph->nodes[p].inputs[0] == mul->inputs[1 - k]) {
                sig = p;
                x = mul->inputs[1 - k];
            }
        }
        if (sig < 0 || graph->values[graph->nodes[sig].output].consumers != 1)
            continue;

        int producer = graph->values[x].producer;
        yd_node *conv = producer >= 0 ? &graph->nodes[producer] : NULL;

        if (conv && conv->op == YD_OP_CONV && conv->conv.act == YD_ACT_NONE &&
            conv->residual < 0 && graph->values[x].consumers == 2 && !is_head_output(graph, x)) {
            conv->conv.act = YD_ACT_SILU;
            graph->nodes[sig].dead = 1;
            move_output(graph, i, producer);
        } else {
            graph->nodes[sig].dead = 1;
            mul->op = YD_OP_SILU;
            mul->inputs[0] = x;
            mul->ninputs = 1;
        }
        count_consumers(graph);
    }
}

/*
 * Add(x, conv(...)) becomes the convolution's residual epilogue when the
 * Add is the convolution's only reader and x is ready before it runs.
 */
static void fuse_residual(yd_graph *graph)
{
    for (int i = 0; i < graph->nnodes; i++) {
        yd_node *add = &graph->nodes[i];
        int best = -1, other = -1;

        if (add->dead || add->op != YD_OP_ADD)
            continue;
        for (int k = 0; k < 2; k++) {
            int v = add->inputs[k];
            int p = graph->values[v].producer;
            int x = add->inputs[1 - k];

            if (p < 0 || graph->nodes[p].op != YD_OP_CONV || graph->nodes[p].residual >= 0)
                continue;
            if (graph->values[v].consumers != 1 || is_head_output(graph, v) || v == x)
                continue;
            if (graph->values[x].producer >= p)
                continue;
            if (best < 0 || p > best) {
                best = p;
                other = x;
            }
        }
        if (best < 0)
            continue;
        graph->nodes[best].residual = other;
        move_output(graph, i, best);
        count_consumers(graph);
    }
}

void yd_graph_fuse(yd_graph *graph)
{
    count_consumers(graph);
    fuse_silu(graph);
    fuse_residual(graph);
    count_consumers(graph);
}

size_t yd_blocked_floats(int c, int h, int w, int cb)
{
    return (size_t)((c + cb - 1) / cb) * (size_t)cb * (size_t)h * (size_t)w;
}

/* Follows storage links to the root; returns it and the channel offset. */
static int resolve(const yd_graph *graph, int value, int *channel)
{
    int offset = 0;

    while (graph->values[value].storage != value) {
        offset += graph->values[value].storage_channel;
        value = graph->values[value].storage;
    }
    *channel = offset;
    return value;
}

int yd_graph_storage_root(const yd_graph *graph, int value, int *channel)
{
    return resolve(graph, value, channel);
}

size_t yd_graph_value_offset(const yd_graph *graph, int value)
{
    int channel;
    int root = resolve(graph, value, &channel);
    const yd_value *r = &graph->values[root];

    return r->arena_offset / sizeof(float) +
           (size_t)(channel / graph->cb) * (size_t)graph->cb * (size_t)r->h * (size_t)r->w;
}

/* Tries to place value `v`'s root inside `concat` at channel `offset`. */
static int alias_into(yd_graph *graph, int v, int concat, int offset, int cb)
{
    int channel;
    int root = resolve(graph, v, &channel);
    int concat_channel;
    int concat_root = resolve(graph, concat, &concat_channel);
    const yd_value *r = &graph->values[root];
    int shift = offset - channel;

    if (root == concat_root)
        return channel == offset + concat_channel;
    if (root == graph->input || shift < 0 || shift % cb != 0)
        return 0;
    if (shift + r->c > graph->values[concat].c)
        return 0;
    if (r->c % cb != 0 && shift + r->c != graph->values[concat].c)
        return 0;
    graph->values[root].storage = concat;
    graph->values[root].storage_channel = shift;
    return 1;
}

static void plan_aliases(yd_graph *graph, int cb)
{
    for (int i = 0; i < graph->nnodes; i++) {
        yd_node *node = &graph->nodes[i];

        if (node->dead)
            continue;
        if (node->op == YD_OP_SLICE && node->slice_begin % cb == 0) {
            int channel;
            int root = resolve(graph, node->inputs[0], &channel);

            graph->values[node->output].storage = root;
            graph->values[node->output].storage_channel = channel + node->slice_begin;
        }
    }

    /* Concats last, in reverse order, so an inner concat's storage is
     * already final when its buffer is itself placed in an outer one. */
    for (int i = graph->nnodes - 1; i >= 0; i--) {
        yd_node *node = &graph->nodes[i];
        int offset = 0;

        if (node->dead || node->op != YD_OP_CONCAT)
            continue;
        for (int k = 0; k < node->ninputs; k++) {
            alias_into(graph, node->inputs[k], node->output, offset, cb);
            offset += graph->values[node->inputs[k]].c;
        }
    }
}

/* Greedy placement of root buffers, largest first, by liveness overlap. */
static int plan_arena(yd_graph *graph, int cb, yd_error *err)
{
    int n = graph->nvalues;
    int *order = malloc((size_t)n * sizeof *order);
    int placed = 0;
    size_t total = 0;

    if (!order)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory planning the arena");

    for (int v = 0; v < n; v++) {
        graph->values[v].first_use = graph->nnodes + 1;
        graph->values[v].last_use = -1;
    }
    for (int i = 0; i < graph->nnodes; i++) {
        const yd_node *node = &graph->nodes[i];
        int channel;

        if (node->dead)
            continue;
        int out = resolve(graph, node->output, &channel);
        if (graph->values[out].first_use > i)
            graph->values[out].first_use = i;
        if (graph->values[out].last_use < i)
            graph->values[out].last_use = i;
        for (int k = 0; k <= node->ninputs; k++) {
            int in = k < node->ninputs ? node->inputs[k] : node->residual;

            if (in < 0)
                continue;
            in = resolve(graph, in, &channel);
            if (graph->values[in].last_use < i)
                graph->values[in].last_use = i;
        }
    }
    for (int l = 0; l < graph->nlevels; l++) {
        int channel;

        graph->values[resolve(graph, graph->head_box[l], &channel)].last_use = graph->nnodes;
        graph->values[resolve(graph, graph->head_cls[l], &channel)].last_use = graph->nnodes;
    }

    for (int v = 0; v < n; v++)
        if (graph->values[v].storage == v && graph->values[v].last_use >= 0)
            order[placed++] = v;

    /* Insertion sort by size, descending: a few hundred values at most. */
    for (int i = 1; i < placed; i++) {
        int v = order[i];
        size_t size = yd_blocked_floats(graph->values[v].c, graph->values[v].h, graph->values[v].w, cb);
        int j = i - 1;

        while (j >= 0 && yd_blocked_floats(graph->values[order[j]].c, graph->values[order[j]].h,
                                           graph->values[order[j]].w, cb) < size) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }

    for (int i = 0; i < placed; i++) {
        yd_value *v = &graph->values[order[i]];
        size_t bytes = yd_blocked_floats(v->c, v->h, v->w, cb) * sizeof(float);
        size_t offset = 0;
        int moved = 1;

        bytes = (bytes + YD_ALIGNMENT - 1) / YD_ALIGNMENT * YD_ALIGNMENT;
        /* Bump the offset past every overlapping, time-conflicting buffer
         * until none conflicts; each pass moves it strictly upward. */
        while (moved) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                const yd_value *o = &graph->values[order[j]];
                size_t obytes = yd_blocked_floats(o->c, o->h, o->w, cb) * sizeof(float);

                obytes = (obytes + YD_ALIGNMENT - 1) / YD_ALIGNMENT * YD_ALIGNMENT;
                if (o->last_use < v->first_use || v->last_use < o->first_use)
                    continue;
                if (offset + bytes <= o->arena_offset || o->arena_offset + obytes <= offset)
                    continue;
                offset = o->arena_offset + obytes;
                moved = 1;
            }
        }
        v->arena_offset = offset;
        if (offset + bytes > total)
            total = offset + bytes;
    }
    graph->arena_bytes = total;
    free(order);
    return YD_OK;
}

/* Records which concat inputs and slices still need a copy at run time. */
static void plan_copies(yd_graph *graph)
{
    for (int i = 0; i < graph->nnodes; i++) {
        yd_node *node = &graph->nodes[i];
        int root, channel, out_root, out_channel, offset = 0;

        node->copy_inputs = 0;
        node->copies = 0;
        if (node->dead)
            continue;
        if (node->op == YD_OP_SLICE) {
            root = resolve(graph, node->inputs[0], &channel);
            out_root = resolve(graph, node->output, &out_channel);
            node->copies = root != out_root || channel + node->slice_begin != out_channel;
        }
        if (node->op != YD_OP_CONCAT)
            continue;
        out_root = resolve(graph, node->output, &out_channel);
        for (int k = 0; k < node->ninputs; k++) {
            root = resolve(graph, node->inputs[k], &channel);
            if (root != out_root || channel != out_channel + offset)
                node->copy_inputs |= 1u << k;
            offset += graph->values[node->inputs[k]].c;
        }
    }
}

int yd_graph_plan(yd_graph *graph, int cb, yd_error *err)
{
    for (int v = 0; v < graph->nvalues; v++) {
        graph->values[v].storage = v;
        graph->values[v].storage_channel = 0;
        graph->values[v].arena_offset = 0;
    }
    graph->cb = cb;
    plan_aliases(graph, cb);
    plan_copies(graph);
    return plan_arena(graph, cb, err);
}

double yd_node_flops(const yd_graph *graph, const yd_node *node)
{
    const yd_value *out = &graph->values[node->output];

    if (node->dead || node->op != YD_OP_CONV)
        return 0;
    return 2.0 * out->c * out->h * out->w * node->conv.in_c * node->conv.kernel_h *
           node->conv.kernel_w;
}

double yd_graph_flops(const yd_graph *graph)
{
    double flops = 0;

    for (int i = 0; i < graph->nnodes; i++)
        flops += yd_node_flops(graph, &graph->nodes[i]);
    return flops;
}
