/*
 * YOLOv8 detection head in float C: DFL decode, sigmoid, NMS as Ultralytics'
 * non_max_suppression, and mapping boxes back through the letterbox.
 */
#ifndef YOLOD_HEAD_H
#define YOLOD_HEAD_H

#include "yolod.h"

#define YD_HEAD_REG_MAX 16
#define YD_HEAD_MAX_LEVELS 4

/*
 * Raw head convolution outputs, plain planar layout. For level l:
 * box[k * h * w + y * w + x] for k < 4 * reg_max (the DFL logits for the
 * left, top, right, bottom distances, reg_max bins each) and
 * cls[c * h * w + y * w + x] for c < nc (class logits, before the sigmoid).
 * Levels are ordered by stride (8, 16, 32); anchors are numbered level by
 * level, row-major, as in the ONNX export's output0.
 */
typedef struct yd_head_level {
    int stride, height, width;
    const float *box;
    const float *cls;
} yd_head_level;

typedef struct yd_head_maps {
    int nc;
    int nlevels;
    yd_head_level level[YD_HEAD_MAX_LEVELS];
} yd_head_maps;

/* Total anchor count over all levels. */
int yd_head_anchor_count(const yd_head_maps *maps);

/*
 * Writes the dense decoded tensor the ONNX export calls output0:
 * out[k * A + a] with rows 0-3 cx, cy, w, h in input pixels and rows 4.. the
 * class scores after sigmoid, A = anchor count. Used by parity tests.
 */
void yd_head_decode_dense(const yd_head_maps *maps, float *out);

/*
 * Scratch for yd_head_detect() and yd_head_nms_dense(); sized once per
 * session. Returns NULL if nc or anchors is below 1 or memory runs out.
 */
typedef struct yd_head_scratch yd_head_scratch;
yd_head_scratch *yd_head_scratch_create(int nc, int anchors);
void yd_head_scratch_destroy(yd_head_scratch *scratch);

/*
 * Decodes and runs NMS. Boxes come out in network-input pixels, sorted by
 * confidence (highest first); returns the count (<= params->max_det and
 * <= cap) or a negative YD_ERR_* code.
 */
int yd_head_detect(const yd_head_maps *maps, const yd_detect_params *params,
                   yd_head_scratch *scratch, yd_detection *out, int cap);

/*
 * Runs the same NMS as yd_head_detect() on an already-decoded output0 tensor
 * in the layout yd_head_decode_dense() writes (cx, cy, w, h, then nc sigmoid
 * scores, each row `anchors` floats). nc must equal the scratch's class count
 * and anchors must not exceed its anchor count. Returns the count or a
 * negative YD_ERR_* code.
 */
int yd_head_nms_dense(const float *dense, int nc, int anchors,
                      const yd_detect_params *params, yd_head_scratch *scratch,
                      yd_detection *out, int cap);

/*
 * Maps boxes from network-input pixels to the original image with the
 * letterbox's integer padding and scale r, clipped to the image.
 */
void yd_head_unletterbox(yd_detection *dets, int count, const yd_letterbox *lb,
                         int image_width, int image_height);

#endif /* YOLOD_HEAD_H */
