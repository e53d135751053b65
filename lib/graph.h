/*
 * The engine's graph IR: a topologically ordered list of nodes over
 * batch-1 activation tensors (values), with the passes that turn an imported
 * network into something the executor runs: SiLU and residual fusion,
 * in-place concatenation, and the activation arena plan.
 *
 * Activations use one blocked layout for the whole graph (NCHWc): a value of
 * C channels and H x W pixels is stored as [ceil(C/cb)][H][W][cb] floats,
 * where cb is the kernel table's channel block (16 for AVX-512, 8 for AVX2
 * and scalar). Padding lanes past C are kept at zero by every kernel.
 */
#ifndef YOLOD_GRAPH_H
#define YOLOD_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "yolod.h"

typedef enum yd_op {
    YD_OP_INPUT,    /* the letterboxed image, 3 channels */
    YD_OP_CONV,     /* 2-D convolution, optional bias, activation, residual */
    YD_OP_MAXPOOL,  /* k x k max pooling, -inf padding */
    YD_OP_UPSAMPLE, /* nearest-neighbour upsampling by an integer factor */
    YD_OP_CONCAT,   /* channel concatenation */
    YD_OP_SLICE,    /* channel range [begin, end) of one input */
    YD_OP_ADD,      /* elementwise sum of two values */
    YD_OP_SIGMOID,
    YD_OP_SILU,     /* x * sigmoid(x) */
    YD_OP_MUL,      /* elementwise product of two values */
} yd_op;

typedef enum yd_act {
    YD_ACT_NONE = 0,
    YD_ACT_SILU = 1,
} yd_act;

#define YD_MAX_INPUTS 8

/*
 * Limits of a graph. The ONNX importer and the .yolod reader both enforce
 * them, so any graph that imports can be saved and loaded again.
 */
#define YD_GRAPH_MAX_CHANNELS 65536
#define YD_GRAPH_MAX_SIDE 4096
#define YD_GRAPH_MAX_VALUE_ELEMENTS (1u << 30) /* 4 GiB of floats */
#define YD_GRAPH_MAX_KERNEL 15
#define YD_GRAPH_MAX_STRIDE 16
#define YD_GRAPH_MAX_SCALE 16

/* How a convolution's weights are stored and computed. */
typedef enum yd_precision {
    YD_PREC_FP32 = 0,
    YD_PREC_FP16 = 1, /* stored as IEEE half, computed in fp32 */
    YD_PREC_INT8 = 2, /* int8 weights per output channel, uint8 input per tensor */
} yd_precision;

typedef struct yd_conv_params {
    int in_c, out_c;
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_top, pad_left, pad_bottom, pad_right;
    yd_act act;
    float *weight; /* [out_c][in_c][kernel_h][kernel_w], owned */
    float *bias;   /* [out_c], owned, never NULL after import */
    float *packed; /* kernel-specific layout, owned, set when the model loads */
    int winograd;  /* 1 when `packed` is yd_winograd_pack()'s layout, not yd_conv_pack()'s */
    yd_precision precision;
    /* INT8 only: weights qweight[i] * weight_scale[oc] (symmetric); `weight`
     * keeps float values, the ones quantized when the model was compressed
     * or the dequantized ones when it came from a .yolod file. The input is
     * quantized as q = clamp(rint(x / input_scale) + input_zero, 0, 255). */
    int8_t *qweight;       /* [out_c][in_c][kernel_h][kernel_w], owned */
    struct yd_qconv *qpacked; /* kernel layout of qweight, owned, set when the model loads */
    float *weight_scale;   /* [out_c], owned */
    float input_scale;
    int input_zero;
    /* Set by pruning: for each kept output channel, its index in the
     * unpruned layer (owned; NULL when no output channel was removed). */
    int *source_channels;
} yd_conv_params;

typedef struct yd_node {
    yd_op op;
    char *name;             /* ONNX node name, for messages */
    int ninputs;
    int inputs[YD_MAX_INPUTS]; /* value ids */
    int output;             /* value id */
    int residual;           /* CONV: value added after the activation, or -1 */
    yd_conv_params conv;
    int pool_kernel, pool_stride, pool_pad; /* MAXPOOL */
    int scale;              /* UPSAMPLE */
    int slice_begin, slice_end; /* SLICE */
    int dead;               /* removed by a fusion pass */
    unsigned copy_inputs;   /* CONCAT: bit k set when input k is copied, not aliased */
    int copies;             /* SLICE: 1 when the slice is copied, not a view */
} yd_node;

typedef struct yd_value {
    char *name;
    int c, h, w;
    int producer;           /* node index */
    int consumers;          /* node count reading it, head outputs excluded */
    /* Storage: the value lives at channel offset `storage_channel` of value
     * `storage` (itself when not aliased). Only roots get arena space. */
    int storage;
    int storage_channel;
    size_t arena_offset;    /* roots: byte offset in the arena */
    int first_use, last_use; /* roots: node index range of liveness */
} yd_value;

typedef struct yd_graph {
    int nnodes, nodes_cap;
    yd_node *nodes;
    int nvalues, values_cap;
    yd_value *values;
    int input;              /* value id of the network input */
    int input_width;        /* the input is 3 x input_height x input_width */
    int input_height;
    int nc;                 /* class count */
    int nlevels;
    int head_box[4];        /* value ids of the raw head convs, per level */
    int head_cls[4];
    int head_stride[4];
    int cb;                 /* channel block the plan was made for */
    size_t arena_bytes;
} yd_graph;

yd_graph *yd_graph_create(void);
void yd_graph_free(yd_graph *graph);

/* Appends a value / node; return the new index or -1 when out of memory. */
int yd_graph_add_value(yd_graph *graph, const char *name, int c, int h, int w);
int yd_graph_add_node(yd_graph *graph, yd_op op, const char *name);

/*
 * Fuses SiLU into convolutions and residual Adds into the convolution that
 * produces one of their operands, then drops nodes nothing reads.
 */
void yd_graph_fuse(yd_graph *graph);

/*
 * Assigns storage for channel block cb: aliases concat inputs and slices into
 * one buffer where the channel offsets are block-aligned, then packs the
 * remaining buffers into one arena by liveness.
 */
int yd_graph_plan(yd_graph *graph, int cb, yd_error *err);

/* The root value whose buffer stores `value`, and the channel at which it starts there. */
int yd_graph_storage_root(const yd_graph *graph, int value, int *channel);

/* Floats from the start of the arena to the value's first block. */
size_t yd_graph_value_offset(const yd_graph *graph, int value);

/* Floats in the blocked storage of a tensor with these dimensions. */
size_t yd_blocked_floats(int c, int h, int w, int cb);

/* Multiply-accumulates of a convolution node (0 for other nodes), times two. */
double yd_node_flops(const yd_graph *graph, const yd_node *node);

/* Multiply-accumulates of the graph, times two. */
double yd_graph_flops(const yd_graph *graph);

const char *yd_op_name(yd_op op);

#endif /* YOLOD_GRAPH_H */
