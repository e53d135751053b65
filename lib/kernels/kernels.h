/*
 * Compute kernels over the blocked activation layout (see graph.h) and the
 * run-time choice between their ISA variants.
 *
 * Convolution weights are packed once per layer: for each block of cb
 * output channels, cb bias floats, then [ceil(in_c/cb)][kernel_h][kernel_w]
 * [cb input lanes][cb output lanes] weights, zero past in_c and out_c.
 *
 * Kernels that run inside the executor's OpenMP parallel region split their
 * work with an orphaned `omp for`, so calling them outside a parallel region
 * runs them on the calling thread alone.
 */
#ifndef YOLOD_KERNELS_H
#define YOLOD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct yd_conv_shape {
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_top, pad_left;
    int silu;                 /* apply x * sigmoid(x) after the bias */
    /* Floats per input pixel: 0 means the channel block (the blocked
     * layout). The direct kernels (not Winograd, not int8) also take 4 for
     * an input of at most 4 channels stored [in_h][in_w][4], so the network
     * input needs no 16-float pixels for its 3 channels. */
    int in_pixel;
    /* 1: the int8 kernels skip the barrier after their work-sharing loop,
     * so the team can start a next layer that shares no data with this
     * one (the caller checks that). */
    int nowait;
} yd_conv_shape;

/*
 * One convolution: `in`, `residual` (NULL or shaped like the output, added
 * after the activation) and `out` are blocked tensors; `packed` is
 * yd_conv_pack()'s output for the same cb.
 */
typedef void (*yd_conv_fn)(const yd_conv_shape *shape, const float *packed, const float *in,
                           const float *residual, float *out);

/*
 * Winograd F(4x4, 3x3) convolution of a 3x3 stride-1 layer (see the
 * Winograd section below). Like yd_conv_fn, with `packed` from
 * yd_winograd_pack(). OpenMP thread number t uses the scratch memory at
 * scratch + t * scratch_floats, which must be 64-byte aligned and hold
 * yd_winograd_scratch_floats() floats.
 */
typedef void (*yd_winograd_fn)(const yd_conv_shape *shape, const float *packed, const float *in,
                               const float *residual, float *out, float *scratch,
                               size_t scratch_floats);

struct yd_qconv;
struct yd_conv_shape;
struct yd_qconv_u8_out;

typedef struct yd_kernel_table {
    const char *name;  /* "avx512", "avxvnni", "avx2" or "scalar" */
    int cb;            /* channel block in floats */
    yd_conv_fn conv;
    /* int8 convolution and its input quantizer (see below) */
    void (*qconv)(const yd_conv_shape *shape, const struct yd_qconv *q, const uint8_t *in,
                  const float *residual, float *out, int cb);
    void (*quantize)(const float *in, int c, int h, int w, int cb, float scale, int zero,
                     int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out);
    /* sum of a[i] * b[i] in double, any n, no alignment required */
    double (*dot)(const float *a, const float *b, size_t n);
    double (*ddot)(const double *a, const double *b, size_t n);
    yd_winograd_fn winograd; /* NULL: every layer runs the direct convolution */
    /* int8 Winograd (see yd_qwinograd_fn); NULL: int8 layers run qconv */
    void (*qwinograd)(const struct yd_conv_shape *shape, const struct yd_qconv *q,
                      const uint8_t *in, const float *residual, float *out,
                      const struct yd_qconv_u8_out *next, int nnext, float *scratch,
                      size_t scratch_floats);
    /* yd_f32_unpack_planar_nowait for this table's cb; NULL: use that one */
    void (*unpack_planar)(const float *in, int c, int h, int w, float *out);
    /* 1 when qconv is slower than this table's fp32 kernels (no VNNI), so
     * models loaded to run, not to compress, compute int8 layers in fp32 */
    int int8_slower;
} yd_kernel_table;

/*
 * Returns the fastest table this CPU runs. The environment variable
 * YOLOD_ISA (scalar, avx2, avxvnni, avx512) forces a slower one, for tests.
 */
const yd_kernel_table *yd_kernels_select(void);

/* The table named `name` if this CPU can run it, else NULL. */
const yd_kernel_table *yd_kernels_get(const char *name);

/* Packing, the same for every ISA with the same cb. */
size_t yd_conv_packed_floats(const yd_conv_shape *shape, int cb);
void yd_conv_pack(const yd_conv_shape *shape, int cb, const float *weight, const float *bias,
                  float *packed);

/* Reference convolution: plain loops, any cb. */
void yd_f32_conv__scalar(const yd_conv_shape *shape, int cb, const float *packed, const float *in,
                         const float *residual, float *out);
void yd_f32_conv_nchwc8__scalar(const yd_conv_shape *shape, const float *packed, const float *in,
                                const float *residual, float *out);
void yd_f32_conv_nchwc8__avx2(const yd_conv_shape *shape, const float *packed, const float *in,
                              const float *residual, float *out);
void yd_f32_conv_nchwc16__avx512(const yd_conv_shape *shape, const float *packed, const float *in,
                                 const float *residual, float *out);

/* -------------------------------------------------------------- Winograd */

/*
 * Winograd F(4x4, 3x3), as in Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks" (2016), with interpolation points 0, +-1,
 * +-2 and infinity. Each 4x4 output tile is A^T [(G g G^T) * (B^T d B)] A
 * for its 6x6 input window d and 3x3 kernel g. That takes 36
 * multiply-accumulates per tile and channel pair instead of the 144 of a
 * direct convolution.
 *
 * Packed weights, for a given cb: the bias, ceil(out_c/cb) * cb floats
 * (zero past out_c), then the transformed weights G g G^T as
 * [36 tile positions][ceil(out_c/cb) output blocks][in_c][cb output lanes].
 */
#define YD_WINOGRAD_POSITIONS 36

/* 1 when the layer is 3x3 with stride 1, the shapes the Winograd kernels run. */
int yd_winograd_supported(const yd_conv_shape *shape);

/* 1 when the Winograd kernel of channel block cb beats the direct one on this layer. */
int yd_winograd_chosen(const yd_conv_shape *shape, int cb);

size_t yd_winograd_packed_floats(const yd_conv_shape *shape, int cb);
/* Transforms one 3x3 kernel g (row major) to U = G g G^T, 6 x 6 row major. */
void yd_winograd_transform_kernel(const double g[9], double u[YD_WINOGRAD_POSITIONS]);

void yd_winograd_pack(const yd_conv_shape *shape, int cb, const float *weight, const float *bias,
                      float *packed);

/*
 * 1 when the layer's transformed weights are at least twice the
 * transformed input of all its tiles (deep layers on small maps), and that
 * input is small enough for one thread's scratch. The kernel reads the
 * weights once per batch, so it runs such a layer as one batch.
 */
int yd_winograd_one_batch(const yd_conv_shape *shape, int cb);

/*
 * The maximum number of output tiles the kernel transforms together, which
 * sets its scratch size.
 */
int yd_winograd_tiles_per_batch(const yd_conv_shape *shape, int cb);

/* Scratch floats one thread needs for this layer (a multiple of 16). */
size_t yd_winograd_scratch_floats(const yd_conv_shape *shape, int cb);

void yd_f32_winograd_nchwc8__avx2(const yd_conv_shape *shape, const float *packed, const float *in,
                                  const float *residual, float *out, float *scratch,
                                  size_t scratch_floats);
void yd_f32_winograd_nchwc16__avx512(const yd_conv_shape *shape, const float *packed,
                                     const float *in, const float *residual, float *out,
                                     float *scratch, size_t scratch_floats);

/* ------------------------------------------------- layout and data movement */

/* RGB8 HWC (width x height) to a blocked 3-channel tensor scaled by 1/255. */
void yd_f32_pack_rgb8(const uint8_t *rgb, int width, int height, int cb, float *out);

/* Blocked to planar [c][h][w]. */
void yd_f32_unpack_planar(const float *in, int c, int h, int w, int cb, float *out);

/*
 * The same without the barrier at the end: the caller synchronizes the
 * team before anyone reads `out`.
 */
void yd_f32_unpack_planar_nowait(const float *in, int c, int h, int w, int cb, float *out);
void yd_f32_unpack_planar_nchwc16__avx512(const float *in, int c, int h, int w, float *out);

/* Planar [c][h][w] to blocked, padding lanes zeroed. */
void yd_f32_pack_planar(const float *in, int c, int h, int w, int cb, float *out);

/*
 * Copies channels [src_channel, +count) of `src` to channels
 * [dst_channel, +count) of `dst` (both blocked, h x w, pointing at their
 * first block); the channel offsets need not be block-aligned.
 */
void yd_f32_copy_channels(const float *src, int src_channel, float *dst, int dst_channel, int count,
                          int h, int w, int cb);

/* ---------------------------------------------------------- other layers */

void yd_f32_maxpool(const float *in, int c, int h, int w, int kernel, int stride, int pad,
                    float *out, int out_h, int out_w, int cb);
void yd_f32_upsample_nearest(const float *in, int c, int h, int w, int scale, float *out, int cb);

double yd_f32_dot__scalar(const float *a, const float *b, size_t n);
double yd_f32_dot__avx2(const float *a, const float *b, size_t n);
double yd_f32_dot__avx512(const float *a, const float *b, size_t n);
double yd_f64_dot__scalar(const double *a, const double *b, size_t n);
double yd_f64_dot__avx2(const double *a, const double *b, size_t n);
double yd_f64_dot__avx512(const double *a, const double *b, size_t n);

/* Elementwise over n floats (whole blocked tensors, padding included). */
void yd_f32_add(const float *a, const float *b, float *out, size_t n);
void yd_f32_mul(const float *a, const float *b, float *out, size_t n);
void yd_f32_sigmoid(const float *in, float *out, size_t n);
void yd_f32_silu(const float *in, float *out, size_t n);

/* ------------------------------------------------------------------ int8 */

/*
 * Int8 convolution. The input is quantized per tensor to uint8,
 * q = clamp(rint(x / scale) + zero, 0, 255), into a spatially padded buffer
 * whose border holds `zero` (the quantized 0.0), so kernels never clip:
 * [ceil(in_c/16)][in_h + pad_top + pad_bottom][in_w + pad_left + pad_right][16]
 * bytes. Weights are symmetric int8 per output channel, packed per block of
 * 16 output channels as [ceil(in_c/16)][kernel_h][kernel_w][4 groups]
 * [16 output channels][4 input channels], the order vpdpbusd consumes.
 * The output is float in the table's blocked layout:
 *   out = act((acc - correction) * scale + bias) (+ residual)
 * where acc sums q_in * q_w and correction = zero * sum(q_w).
 */
#define YD_QCB 16

typedef struct yd_qconv {
    int8_t *weights;      /* packed as above */
    float *scale;         /* [out_c rounded up to 16]: input_scale * weight_scale */
    float *bias;          /* [out_c rounded up to 16] */
    int32_t *correction;  /* [out_c rounded up to 16] */
    float input_scale;
    int input_zero;
    int pad_bottom, pad_right;
    /* Set by yd_qconv_pack_winograd() for the int8 Winograd kernel, else NULL. */
    int16_t *winograd_u;    /* [36][ceil(out_c/16)][ceil(in_c/2)][16 output lanes][2 input channels] */
    float *winograd_scale;  /* [36][out_c rounded up to 16]: float value of one unit of M */
} yd_qconv;

/* The quantizers clamp x / scale to +-YD_QUANT_LIMIT before rounding, so
 * out-of-range, infinite and NaN inputs saturate (NaN to 0). */
#define YD_QUANT_LIMIT 0x1p30f

typedef void (*yd_qconv_fn)(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                            const float *residual, float *out, int cb);

/*
 * Where an int8 convolution writes its output when one int8 convolution
 * alone reads it: that reader's padded uint8 input (the layout above),
 * quantized with its scale and zero point, border included. The bytes equal
 * what the reader's quantizer would make of the float output.
 */
typedef struct yd_qconv_u8_out {
    uint8_t *out;
    float scale;
    int zero;
    int pad_top, pad_left, pad_bottom, pad_right;
    /* Output channel blocks [first_block, first_block + nblocks) go to
     * blocks [out_block, ...) of `out`, so several convolutions can fill
     * one reader's input, as for a concatenation. nblocks 0 means every
     * block, to block 0. */
    int first_block, nblocks, out_block;
} yd_qconv_u8_out;

/* The maximum number of quantized outputs of one convolution call. */
#define YD_QCONV_MAX_OUTPUTS 4

/*
 * `in_lanes` is the input's bytes per pixel: YD_QCB as above, or 4 when
 * in_c <= 4, a compact layout [h + pads][w + pads][4] that wastes less
 * memory traffic on the 3-channel first layer.
 */
typedef void (*yd_qconv_u8_fn)(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                               int in_lanes, const float *residual, const yd_qconv_u8_out *next);

/* The quantizing variant of table->qconv, or NULL when it has none. */
yd_qconv_u8_fn yd_qconv_u8_of(const yd_kernel_table *table);

/*
 * Writes the float output to `out` (NULL: none) and the quantized bytes to
 * each of next[0..nnext), nnext <= YD_QCONV_MAX_OUTPUTS. The bytes of each
 * are those of yd_qconv_u8_fn with that target. Only output blocks
 * [out_first_block, out_first_block + out_nblocks) of `out` are written;
 * out_nblocks 0 means every block.
 */
typedef void (*yd_qconv_multi_fn)(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                                  int in_lanes, const float *residual, float *out,
                                  int out_first_block, int out_nblocks,
                                  const yd_qconv_u8_out *next, int nnext);

/* The variant of table->qconv with several outputs, or NULL when it has none. */
yd_qconv_multi_fn yd_qconv_multi_of(const yd_kernel_table *table);

/*
 * Writes the float output as planar [out_c][out_h][out_w] floats, the
 * layout of the detection head maps, instead of blocks. No residual.
 */
typedef void (*yd_qconv_planar_fn)(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                                   int in_lanes, float *out);

/* The variant of table->qconv with planar output, or NULL when it has none. */
yd_qconv_planar_fn yd_qconv_planar_of(const yd_kernel_table *table);

/*
 * Quantizes an RGB8 HWC image (width x height) straight into the padded
 * uint8 input of a 3-channel convolution, giving the same bytes as
 * yd_f32_pack_rgb8() followed by the quantizer. With lanes 4 it writes only
 * the first 4 bytes of each pixel (the compact layout of yd_qconv_u8_fn).
 */
void yd_u8_quantize_rgb8(const uint8_t *rgb, int width, int height, int lanes, float scale,
                         int zero, int pad_top, int pad_left, int pad_bottom, int pad_right,
                         uint8_t *out);

/*
 * The same from planar [c][h][w] floats, as yd_f32_pack_planar() then the
 * quantizer; lanes 4 requires c <= 4.
 */
void yd_u8_quantize_planar(const float *in, int c, int h, int w, int lanes, float scale, int zero,
                           int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out);

typedef void (*yd_quantize_fn)(const float *in, int c, int h, int w, int cb, float scale, int zero,
                               int pad_top, int pad_left, int pad_bottom, int pad_right,
                               uint8_t *out);

/* Bytes of the padded uint8 input of a convolution. */
size_t yd_qconv_input_bytes(const yd_conv_shape *shape, int pad_bottom, int pad_right);

/* Packs int8 weights [out_c][in_c][kh][kw]; returns 0 or YD_ERR_NO_MEMORY. */
int yd_qconv_pack(const yd_conv_shape *shape, const int8_t *qweight, const float *weight_scale,
                  const float *bias, float input_scale, int input_zero, int pad_bottom,
                  int pad_right, yd_qconv *q);
void yd_qconv_free(yd_qconv *q);

/*
 * Int8 Winograd F(4x4, 3x3) (see the Winograd section above) for 3x3
 * stride-1 layers. The transformed input V = B^T (d - zero) B of the
 * padded uint8 input is exact in int16 (|V| <= 100 * 255). The transformed
 * weights U = G w G^T of the int8 weights are rounded to int16 with one
 * factor per tile position and output channel, small enough that no
 * int32 sum of V * U products can overflow. The GEMM M = V U runs on int16
 * pairs (vpdpwssd), then M is scaled to float and transformed back as in
 * the float kernel.
 */

/* 1 when the int8 Winograd kernel runs this layer (with the table's qwinograd). */
int yd_qwinograd_chosen(const yd_conv_shape *shape);

/*
 * Adds the transformed weights to q, which yd_qconv_pack() filled for the
 * same shape and weights; returns 0 or YD_ERR_NO_MEMORY.
 */
int yd_qconv_pack_winograd(const yd_conv_shape *shape, const int8_t *qweight,
                           const float *weight_scale, yd_qconv *q);

/*
 * Runs a layer packed by yd_qconv_pack_winograd(). It writes float output
 * to `out` (NULL: none) like yd_s8_conv_nchwc16__avx512vnni, and quantized
 * bytes to each of next[0..nnext) like yd_s8_conv_u8_nchwc16__avx512vnni.
 * Scratch as for yd_winograd_fn, yd_winograd_scratch_floats(shape, 16)
 * floats per thread.
 */
typedef void (*yd_qwinograd_fn)(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                                const float *residual, float *out, const yd_qconv_u8_out *next,
                                int nnext, float *scratch, size_t scratch_floats);

void yd_s8_winograd_nchwc16__avx512vnni(const yd_conv_shape *shape, const yd_qconv *q,
                                        const uint8_t *in, const float *residual, float *out,
                                        const yd_qconv_u8_out *next, int nnext, float *scratch,
                                        size_t scratch_floats);

/* The padded uint8 input of an int8 convolution, its first block at `data`. */
typedef struct yd_u8_layout {
    uint8_t *data;
    int zero;                   /* the zero point, also in the padding */
    int hq, wq;                 /* padded height and width */
    int pad_top, pad_left, pad_bottom, pad_right;
} yd_u8_layout;

/*
 * Max pooling, kernel x kernel with stride 1 and `pad` on each side
 * (padding taps skipped), from blocks [in_block, +nblocks) of `layout` to
 * blocks [out_block, +nblocks) of the same layout, padding included. The
 * bytes equal the float layer's output quantized with the layout's scale.
 * Each thread takes whole blocks (a static schedule), so with wait 0 a
 * pooling of this output with the same nblocks may follow without a
 * barrier. Maps at most 1024 pixels wide.
 */
void yd_u8_maxpool(const yd_u8_layout *layout, int in_block, int out_block, int nblocks, int h,
                   int w, int kernel, int pad, int wait);

/*
 * Nearest upsampling by `scale` of nblocks blocks of 16 floats (h x w,
 * padding lanes zero), quantized with scale qscale and the layout's zero
 * point, into blocks [out_block, +nblocks) of `layout`, padding included.
 */
void yd_u8_upsample_quantize(const float *in, int nblocks, int h, int w, int scale, float qscale,
                             const yd_u8_layout *layout, int out_block);

void yd_u8_quantize__scalar(const float *in, int c, int h, int w, int cb, float scale, int zero,
                            int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out);
void yd_u8_quantize__avx2(const float *in, int c, int h, int w, int cb, float scale, int zero,
                          int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out);
void yd_u8_quantize__avx512(const float *in, int c, int h, int w, int cb, float scale, int zero,
                            int pad_top, int pad_left, int pad_bottom, int pad_right, uint8_t *out);
void yd_s8_conv__scalar(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                        const float *residual, float *out, int cb);
void yd_s8_conv_nchwc8__avx2(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                             const float *residual, float *out, int cb);
void yd_s8_conv_nchwc8__avxvnni(const yd_conv_shape *shape, const yd_qconv *q, const uint8_t *in,
                                const float *residual, float *out, int cb);
void yd_s8_conv_nchwc16__avx512vnni(const yd_conv_shape *shape, const yd_qconv *q,
                                    const uint8_t *in, const float *residual, float *out, int cb);
void yd_s8_conv_u8_nchwc16__avx512vnni(const yd_conv_shape *shape, const yd_qconv *q,
                                       const uint8_t *in, int in_lanes, const float *residual,
                                       const yd_qconv_u8_out *next);
void yd_s8_conv_multi_nchwc16__avx512vnni(const yd_conv_shape *shape, const yd_qconv *q,
                                          const uint8_t *in, int in_lanes, const float *residual,
                                          float *out, int out_first_block, int out_nblocks,
                                          const yd_qconv_u8_out *next, int nnext);
void yd_s8_conv_planar_nchwc16__avx512vnni(const yd_conv_shape *shape, const yd_qconv *q,
                                           const uint8_t *in, int in_lanes, float *out);

#endif /* YOLOD_KERNELS_H */
