/*
 * Post-training int8 quantization of a loaded float model.
 */
#ifndef YOLOD_QUANTIZE_H
#define YOLOD_QUANTIZE_H

#include "yolod.h"

typedef enum yd_calib_method {
    YD_CALIB_MINMAX,
    YD_CALIB_PERCENTILE,
    YD_CALIB_ENTROPY,
} yd_calib_method;

typedef struct yd_quant_options {
    yd_calib_method method;
    double percentile;           /* for YD_CALIB_PERCENTILE, e.g. 99.99 */
    const unsigned char *keep_float; /* NULL or one flag per graph node: stay fp32 */
    /* Automatic mixed precision: after calibrating, keep this many layers
     * in fp32, the ones whose quantization alone changes the float model's
     * head outputs the most on the first 8 calibration images. */
    int keep_float_count;
    int threads;
    /* Called after each calibration image of each pass (0: ranges, 1: histograms)
     * and, in pass 2, after each layer of the sensitivity analysis. */
    void (*progress)(int pass, int done, int total, void *user);
    void *progress_user;
} yd_quant_options;

/*
 * Calibrates on `images` and turns every convolution not kept float into
 * int8, then repacks the model. The model must not be in use by a session.
 */
int yd_quantize_model(yd_model *model, const yd_image *images, int nimages,
                      const yd_quant_options *options, yd_error *err);

struct yd_node;

/* Sets qweight and weight_scale of a convolution from its float weights
 * (symmetric, per output channel, within [-127, 127]). */
int yd_quantize_conv_weights(struct yd_node *node);

/* 1 when node `node` is to be quantized under these options. */
int yd_quant_wants(const yd_quant_options *options, int node);

#endif /* YOLOD_QUANTIZE_H */
