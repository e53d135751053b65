/*
 * Ultralytics letterbox for a square network input (LetterBox with
 * auto=False, scaleup=True, center=True) and the network input tensor.
 *
 * The resize follows OpenCV's cv::resize(INTER_LINEAR) for 8-bit images
 * (modules/imgproc/src/resize.cpp). The source coordinate is
 * (d + 0.5) * scale - 0.5, computed in double and then float. Weights are
 * rounded to 11 fractional bits (INTER_RESIZE_COEF_BITS), a horizontal pass
 * writes int rows, and a vertical pass rounds in two steps. OpenCV routes a
 * 2x downscale to INTER_AREA, which gives the same pixels. The unit tests
 * find no difference from OpenCV 4.6 on the two sample photos.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "util.h"

#define PAD_VALUE 114
#define COEF_BITS 11
#define COEF_SCALE (1 << COEF_BITS)

/* Halves round to even (rint in the default mode), as Python's round(). */
void yd_letterbox_compute(int width, int height, int size, yd_letterbox *lb)
{
    yd_letterbox_compute_rect(width, height, size, size, lb);
}

void yd_letterbox_compute_rect(int width, int height, int input_width, int input_height,
                               yd_letterbox *lb)
{
    double r, dw, dh;

    memset(lb, 0, sizeof *lb);
    lb->input_width = input_width;
    lb->input_height = input_height;
    if (width <= 0 || height <= 0 || input_width <= 0 || input_height <= 0)
        return;

    r = fmin((double)input_height / height, (double)input_width / width);
    lb->r = r;
    lb->new_width = (int)rint(width * r);
    lb->new_height = (int)rint(height * r);
    /*
     * NOTE: Ultralytics would pass a zero size to cv2.resize (and fail) for
     * sides shorter than 1 / (2 r), e.g. 4000x1; one row or column is kept.
     */
    if (lb->new_width < 1)
        lb->new_width = 1;
    if (lb->new_height < 1)
        lb->new_height = 1;

    dw = (input_width - lb->new_width) / 2.0;
    dh = (input_height - lb->new_height) / 2.0;
    lb->top = (int)rint(dh - 0.1);
    lb->bottom = (int)rint(dh + 0.1);
    lb->left = (int)rint(dw - 0.1);
    lb->right = (int)rint(dw + 0.1);
}

/* Source index and 11-bit weights of one output column or row. */
struct resize_tap {
    int index;      /* first source pixel, clamped as OpenCV clamps it */
    short weight0;  /* weight of index */
    short weight1;  /* weight of index + 1 */
    int single;     /* index + 1 is past the edge: the value is src[index] * 2048 */
};

/*
 * Fills the taps of one axis as OpenCV's resize table setup does. OpenCV
 * resets the weights to (1, 0) for columns left of the image but keeps the
 * computed weights for rows above it and clamps the row index later; the
 * difference is preserved because it changes the vertical rounding.
 */
static void compute_taps(int src_len, int dst_len, int is_column, struct resize_tap *taps)
{
    double scale = 1.0 / ((double)dst_len / src_len);

    for (int d = 0; d < dst_len; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        struct resize_tap *tap = &taps[d];

        f -= (float)s;
        tap->single = 0;
        if (is_column) {
            if (s < 0) {
                s = 0;
                f = 0.f;
            }
            if (s + 1 >= src_len) {
                tap->single = 1;
                if (s >= src_len - 1) {
                    s = src_len - 1;
                    f = 0.f;
                }
            }
        }
        tap->index = s;
        tap->weight0 = (short)lrintf((1.f - f) * COEF_SCALE);
        tap->weight1 = (short)lrintf(f * COEF_SCALE);
    }
}

/* Horizontal pass of one source row into 11-bit fixed-point sums. */
static void resize_row(const uint8_t *src, const struct resize_tap *columns, int dst_width,
                       int *sums)
{
    for (int x = 0; x < dst_width; x++, sums += 3) {
        const struct resize_tap *tap = &columns[x];
        const uint8_t *p = src + (size_t)tap->index * 3;

        if (tap->single) {
            sums[0] = p[0] * COEF_SCALE;
            sums[1] = p[1] * COEF_SCALE;
            sums[2] = p[2] * COEF_SCALE;
        } else {
            sums[0] = p[0] * tap->weight0 + p[3] * tap->weight1;
            sums[1] = p[1] * tap->weight0 + p[4] * tap->weight1;
            sums[2] = p[2] * tap->weight0 + p[5] * tap->weight1;
        }
    }
}

static int clamp_row(int y, int height)
{
    return y < 0 ? 0 : y >= height ? height - 1 : y;
}

/*
 * Vertical pass exactly as OpenCV's VResizeLinear for uchar: each product is
 * taken on the sums shifted right by 4 and shifted right by 16 on its own,
 * then the total is rounded by (t + 2) >> 2. The plain (sum + 2^21) >> 22
 * differs from it by 1 on some pixels.
 */
static void blend_rows(const int *sums0, const int *sums1, short b0, short b1, int count,
                       uint8_t *dst)
{
    for (int i = 0; i < count; i++) {
        int v = (((b0 * (sums0[i] >> 4)) >> 16) + ((b1 * (sums1[i] >> 4)) >> 16) + 2) >> 2;

        dst[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

static int *find_cached(int *sums[2], const int cached[2], int row)
{
    return cached[0] == row ? sums[0] : cached[1] == row ? sums[1] : NULL;
}

/*
 * Resizes src (src_w x src_h RGB8) to dst_w x dst_h into dst, whose rows
 * are dst_stride bytes apart. Output rows visit source rows in increasing
 * order, so caching the last two horizontal passes computes each row once.
 */
static int resize_linear(const uint8_t *src, int src_w, int src_h, uint8_t *dst, int dst_w,
                         int dst_h, size_t dst_stride, yd_error *err)
{
    struct resize_tap *columns = malloc(sizeof *columns * (size_t)dst_w);
    struct resize_tap *rows = malloc(sizeof *rows * (size_t)dst_h);
    int *buffers = malloc(sizeof *buffers * (size_t)dst_w * 3 * 2);
    int *sums[2];
    int cached[2] = {-1, -1}; /* source row held by each buffer */
    int rc = YD_OK;

    if (!columns || !rows || !buffers) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory resizing to %dx%d", dst_w, dst_h);
        goto cleanup;
    }
    sums[0] = buffers;
    sums[1] = buffers + (size_t)dst_w * 3;
    compute_taps(src_w, dst_w, 1, columns);
    compute_taps(src_h, dst_h, 0, rows);

    for (int y = 0; y < dst_h; y++) {
        int top = clamp_row(rows[y].index, src_h);
        int bottom = clamp_row(rows[y].index + 1, src_h);
        int *top_sums = find_cached(sums, cached, top);
        int *bottom_sums;

        if (!top_sums) {
            int slot = cached[0] == bottom ? 1 : 0;

            resize_row(src + (size_t)top * src_w * 3, columns, dst_w, sums[slot]);
            cached[slot] = top;
            top_sums = sums[slot];
        }
        bottom_sums = find_cached(sums, cached, bottom);
        if (!bottom_sums) {
            int slot = sums[0] == top_sums ? 1 : 0;

            resize_row(src + (size_t)bottom * src_w * 3, columns, dst_w, sums[slot]);
            cached[slot] = bottom;
            bottom_sums = sums[slot];
        }
        blend_rows(top_sums, bottom_sums, rows[y].weight0, rows[y].weight1, dst_w * 3,
                   dst + (size_t)y * dst_stride);
    }

cleanup:
    free(columns);
    free(rows);
    free(buffers);
    return rc;
}

int yd_letterbox_rgb8(const yd_image *image, const yd_letterbox *lb, uint8_t *out,
                      yd_error *err)
{
    size_t stride, offset;
    int rc;

    if (!image || !image->rgb || image->width <= 0 || image->height <= 0 || !lb || !out)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "letterbox needs a decoded image");
    if (lb->input_width <= 0 || lb->input_height <= 0 || lb->new_width <= 0 ||
        lb->new_height <= 0 || lb->top < 0 || lb->bottom < 0 || lb->left < 0 || lb->right < 0 ||
        lb->top + lb->new_height + lb->bottom != lb->input_height ||
        lb->left + lb->new_width + lb->right != lb->input_width)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "invalid letterbox geometry: %dx%d plus padding %d/%d/%d/%d "
                            "does not fill %dx%d",
                            lb->new_width, lb->new_height, lb->top, lb->bottom, lb->left,
                            lb->right, lb->input_width, lb->input_height);

    stride = (size_t)lb->input_width * 3;
    memset(out, PAD_VALUE, stride * (size_t)lb->input_height);
    offset = (size_t)lb->top * stride + (size_t)lb->left * 3;

    if (lb->new_width == image->width && lb->new_height == image->height) {
        for (int y = 0; y < image->height; y++)
            memcpy(out + offset + (size_t)y * stride,
                   image->rgb + (size_t)y * image->width * 3, (size_t)image->width * 3);
        return YD_OK;
    }

    rc = resize_linear(image->rgb, image->width, image->height, out + offset, lb->new_width,
                       lb->new_height, stride, err);
    return rc;
}

void yd_letterbox_to_nchw(const uint8_t *rgb, int size, float *out)
{
    size_t plane = (size_t)size * size;

    for (size_t i = 0; i < plane; i++) {
        out[i] = rgb[i * 3] / 255.0f;
        out[plane + i] = rgb[i * 3 + 1] / 255.0f;
        out[2 * plane + i] = rgb[i * 3 + 2] / 255.0f;
    }
}
