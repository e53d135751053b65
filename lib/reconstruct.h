/*
 * Teacher reconstruction (layer-wise feature distillation): refits the
 * weights and bias of every convolution of a compressed model (pruned,
 * quantized or both) so that, on the student's own inputs, its linear
 * output matches the float teacher's on the calibration images.
 *
 * For each convolution, input patches X of the student and pre-activation
 * outputs Y of the teacher are sampled at the same pixels; the new weights
 * solve the ridge problem
 *     min_W |X W - Y|^2 + lambda |W - W0|^2,   lambda = ridge * trace(X'X) / K
 * pulling toward the current weights W0, where K is the patch length (plus
 * one column for the bias). Layers are refit in graph order, each on inputs
 * from the already refit layers above it. The system is fit on the even
 * calibration images, and an output channel keeps its refit only if it
 * lowers the error on the odd ones. Int8 layers see their inputs quantized
 * as the kernel will, and their refit weights are quantized again.
 */
#ifndef YOLOD_RECONSTRUCT_H
#define YOLOD_RECONSTRUCT_H

#include "yolod.h"

typedef struct yd_reconstruct_options {
    double ridge;          /* relative ridge strength, e.g. 1e-3 */
    int rows_per_image;    /* sampled output pixels per layer and image, 0 = automatic */
    int max_patch;         /* refit only layers with at most this patch length; 0 = all */
    int threads;
    void (*progress)(int done, int total, void *user);
    void *progress_user;
} yd_reconstruct_options;

typedef struct yd_reconstruct_report {
    int layers;            /* convolutions refit */
    /* Mean over layers of |X W - Y|^2 / |Y|^2 on held-out samples (the odd
     * images; with a single image, the fit samples themselves), for the
     * weights before and after the refit. */
    double error_before;
    double error_after;
} yd_reconstruct_report;

/*
 * Refits `student`, a compressed copy of `teacher` with the same node
 * indices. A student convolution with fewer output channels than the
 * teacher's lists the teacher channel of each kept one in
 * conv.source_channels. Neither model may be in use by a session.
 */
int yd_reconstruct(yd_model *student, yd_model *teacher, const yd_image *images, int nimages,
                   const yd_reconstruct_options *options, yd_reconstruct_report *report,
                   yd_error *err);

#endif /* YOLOD_RECONSTRUCT_H */
