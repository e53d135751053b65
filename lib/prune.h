/*
 * Structured channel pruning of a loaded model: whole output channels of
 * convolutions are removed together with every input channel, slice range,
 * concat segment and residual operand that carries them, leaving a smaller
 * dense graph with the same node indices.
 *
 * Channels that must go together form a group, built by a union-find over
 * (value, channel) slots. It joins a conv output channel with the same
 * channel after MaxPool, Upsample, SiLU and Sigmoid, and with its offset
 * position in a Slice or Concat. Channel j of an Add, a Mul or a fused conv
 * residual is joined with channel j of every operand. Groups holding a channel of the network input or of a head
 * output are never pruned.
 *
 * Importance of a group, measured on calibration images:
 *     sum over the (conv, input channel c) pairs that read the group of
 *         ||W_conv[:, c, :, :]||_2 * RMS(activation of input channel c),
 * a first-order estimate of how much those convolutions' outputs change when
 * the channel is removed. With compensate_bias set, each convolution that
 * loses an input channel adds that channel's mean contribution to its bias,
 * and the score uses the standard deviation in place of the RMS, since only
 * the deviation from the mean is then lost. Groups with the same set of values (the channels
 * of one layer, or of one C2f split half with its bottleneck chain) form a
 * class; each class drops its least important groups in steps of 16, so a
 * class whose size was a multiple of 16 stays one (the AVX-512 kernels and
 * in-place concatenation work in 16-channel blocks). A class keeps at least
 * 16 groups (all of them when it has fewer) and at least 25% of its groups,
 * so no convolution ends with fewer than 16 or 25% of its output channels.
 *
 * Which class loses its next step is decided in one of three ways, each
 * stopping before a step that would overshoot the FLOPs target by more than
 * it is still short:
 *   - measured (sensitivity_images > 0): each candidate step is simulated by
 *     zeroing the weight columns that read its channels (exactly what
 *     removing them does to the outputs) and the model runs on a few
 *     calibration images. The change of the decoded head against the
 *     unpruned model (class probabilities, plus box distances weighted by
 *     the unpruned confidence) is the step's cost, and the step with the
 *     least added cost per estimated run time saved goes first. Costs are
 *     re-measured lazily: the best candidate is measured again against the
 *     current state and taken only if it is still the best.
 *   - global ranking: the class step with the lowest importance per FLOP
 *     saved. On yolov8n it empties the stride-8 layers first, which hold
 *     most of the FLOPs and carry the small objects.
 *   - per-layer ranking: about the same fraction from every class.
 */
#ifndef YOLOD_PRUNE_H
#define YOLOD_PRUNE_H

#include "yolod.h"

typedef struct yd_prune_options {
    double flops_fraction; /* fraction of the model's FLOPs to remove, in [0, 0.95] */
    int per_layer;         /* 1: the same fraction from every class; 0: global ranking */
    /* 1: fold removed channels' calibration means into the biases (the
     * measured allocation simulates the same). */
    int compensate_bias;
    /* Above 0: data-driven allocation, measuring each candidate step's
     * change of the decoded head on this many calibration images (see
     * above); 0: importance per FLOP saved. Ignored with per_layer. */
    int sensitivity_images;
    int threads;           /* OpenMP threads for calibration (0 = all cores) */
    /* Called after each calibration image. */
    void (*progress)(int done, int total, void *user);
    void *progress_user;
} yd_prune_options;

/* One live convolution's channels before and after pruning. */
typedef struct yd_prune_layer {
    int node;                  /* graph node index, unchanged by pruning */
    int original_in_c, kept_in_c;
    int original_out_c, kept_out_c;
    int *kept_out_channels;    /* kept_out_c original output channel indices, ascending */
    int *kept_in_channels;     /* kept_in_c original input channel indices, ascending */
} yd_prune_layer;

typedef struct yd_prune_report {
    double flops_before, flops_after; /* yd_graph_flops() of the graph */
    int groups;                /* channel groups of the live graph */
    int prunable_groups;       /* groups in unlocked classes larger than their minimum */
    int removed_groups;
    int nlayers;
    yd_prune_layer *layers;    /* one per live convolution, in node order */
} yd_prune_report;

/*
 * Calibrates on `images`, scores the channel groups and removes the least
 * important until options->flops_fraction of the FLOPs is gone (or every
 * class is at its minimum), then replans the arena and repacks the weights.
 * Int8 convolutions keep their scales, with their int8 weights sliced like
 * the float ones. The model must not be in use by a session.
 * `report` may be NULL; otherwise free it with yd_prune_report_free().
 * After an error past calibration (out of memory while rewriting) the model
 * may be half pruned and must be released.
 * Errors: YD_ERR_INVALID_ARGUMENT (no image, fraction out of range),
 * YD_ERR_MODEL_UNSUPPORTED (a grouped convolution or operands whose channel
 * counts differ), YD_ERR_NO_MEMORY.
 */
int yd_prune_model(yd_model *model, const yd_image *images, int nimages,
                   const yd_prune_options *options, yd_prune_report *report, yd_error *err);

void yd_prune_report_free(yd_prune_report *report);

#endif /* YOLOD_PRUNE_H */
