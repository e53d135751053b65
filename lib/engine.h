/*
 * Internals shared by the model, session and detection modules, and the
 * entry points parity tests use to feed a raw tensor to the network.
 */
#ifndef YOLOD_ENGINE_H
#define YOLOD_ENGINE_H

#include <stdatomic.h>

#include "graph.h"
#include "head.h"
#include "kernels/kernels.h"
#include "yolod.h"

struct yd_model {
    atomic_int refs;
    char *path;
    char *name;                     /* file name without folders and extension */
    char variant[64];               /* "fp32" for ONNX, else from the .yolod provenance */
    yd_graph *graph;
    const yd_kernel_table *kernels;
    int input_width, input_height;
    int nc;
    char **class_names;             /* nc strings */
    double flops;
    int serve_only;                 /* source weights freed: nothing may repack */
    int exact_int8;                 /* yd_model_options.exact_int8 */
};

/* 1 when the convolution runs the int8 kernels: it is int8 and the model
 * packed it for them (see yd_model_options.exact_int8). */
static inline int yd_conv_runs_int8(const yd_node *node)
{
    return node->op == YD_OP_CONV && node->conv.qpacked != NULL;
}

/* Buffers shared by sessions that run one at a time (see yd_workspace_create). */
struct yd_workspace {
    float *arena;
    size_t arena_bytes;
    uint8_t *qinput;
    size_t qinput_bytes;
    float *winograd;
    size_t winograd_bytes;
};

struct yd_session {
    yd_model *model;
    int threads;
    float *arena;                   /* graph->arena_bytes, 64-byte aligned */
    uint8_t *letterbox;             /* S x S x 3 RGB8 */
    float *head;                    /* planar head maps, all levels */
    yd_head_maps maps;
    yd_head_scratch *scratch;
    yd_detection *detections;       /* max_det capacity */
    int capacity;
    uint8_t *qinput;                /* quantized input of the running int8 conv */
    float *winograd_scratch;        /* `threads` slices of winograd_floats floats */
    size_t winograd_floats;         /* per thread, for the largest Winograd layer */
    int compact_node;               /* fp32 conv reading the input as [h][w][4], or -1 */
    yd_workspace *workspace;        /* shared buffers (arena, qinput, winograd_scratch), or NULL */
    yd_workspace *own_workspace;    /* the private ones when workspace is NULL, freed with the session */
    /* Calibration hook: called after every node by every thread of the
     * team, between barriers, so it may split work with an orphaned
     * `omp for` or leave it to `omp master`. */
    void (*observe)(const yd_session *session, int node, const float *output, void *user);
    void *observe_user;
    int stop_after;                 /* -1, or the last node index to run (calibration) */
    /* Profile: NULL, or nnodes + 1 counters to which every inference adds
     * each node's milliseconds, and in the last one the time spent packing
     * the input and unpacking the head maps. Adds a barrier per node. */
    double *node_ms;
};

/* Fills the kernel's view of a convolution node. */
static inline void yd_conv_shape_of(const yd_graph *g, const yd_node *node, yd_conv_shape *shape)
{
    const yd_value *in = &g->values[node->inputs[0]];
    const yd_value *out = &g->values[node->output];

    shape->in_c = node->conv.in_c;
    shape->in_h = in->h;
    shape->in_w = in->w;
    shape->out_c = node->conv.out_c;
    shape->out_h = out->h;
    shape->out_w = out->w;
    shape->kernel_h = node->conv.kernel_h;
    shape->kernel_w = node->conv.kernel_w;
    shape->stride_h = node->conv.stride_h;
    shape->stride_w = node->conv.stride_w;
    shape->pad_top = node->conv.pad_top;
    shape->pad_left = node->conv.pad_left;
    shape->silu = node->conv.act == YD_ACT_SILU;
    shape->in_pixel = 0;
    shape->nowait = 0;
}

/*
 * Loads a model with a given kernel table (NULL: the fastest the CPU runs).
 * Tests use it to run the same network on the scalar and vector kernels.
 */
int yd_model_load_with(const char *path, const yd_kernel_table *kernels, yd_model **out,
                       yd_error *err);

/* Packs the weights again after their precision or values changed. */
int yd_model_repack(yd_model *model, yd_error *err);

/* Runs the network on a planar float [3][S][S] input; fills session->maps. */
void yd_session_run_planar(yd_session *session, const float *input);

/* Blocked data of a value in the session's arena (valid after a run). */
float *yd_session_value(const yd_session *session, int value);

/* Runs the network on session->letterbox; fills session->maps. */
void yd_session_run_letterbox(yd_session *session);

/* Letterboxes `image` into the session and runs the network on it. */
int yd_session_run_image(yd_session *session, const yd_image *image, yd_letterbox *lb,
                         yd_error *err);

#endif /* YOLOD_ENGINE_H */
