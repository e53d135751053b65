/*
 * A quantized output of an int8 kernel (yd_qconv_u8_out) with the sizes its
 * stores need, shared by the direct and the Winograd AVX-512 kernels.
 */
#ifndef YOLOD_KERNELS_U8_TARGET_H
#define YOLOD_KERNELS_U8_TARGET_H

#include "kernels.h"

typedef struct u8_target {
    uint8_t *out;
    float inverse;              /* 1 / scale */
    int zero;
    int pad_top, pad_left, pad_bottom, pad_right;
    int first_block, end_block; /* the output blocks it takes */
    int out_block;              /* the block of `out` that first_block goes to */
    int hq, wq;                 /* padded size of `out` */
} u8_target;

/* The target of `n` for a convolution of shape `s` with `nob` output blocks. */
static inline u8_target u8_target_of(const yd_qconv_u8_out *n, const yd_conv_shape *s, int nob)
{
    int whole = n->nblocks <= 0;

    return (u8_target){
        .out = n->out,
        .inverse = 1.0f / n->scale,
        .zero = n->zero,
        .pad_top = n->pad_top,
        .pad_left = n->pad_left,
        .pad_bottom = n->pad_bottom,
        .pad_right = n->pad_right,
        .first_block = whole ? 0 : n->first_block,
        .end_block = whole ? nob : n->first_block + n->nblocks,
        .out_block = whole ? 0 : n->out_block,
        .hq = s->out_h + n->pad_top + n->pad_bottom,
        .wq = s->out_w + n->pad_left + n->pad_right,
    };
}

#endif /* YOLOD_KERNELS_U8_TARGET_H */
