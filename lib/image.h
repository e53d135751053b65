/*
 * Internal interface of the image module: the per-format decoders behind
 * yd_image_decode(), the EXIF orientation parser, and the tensor fill used by
 * the pipeline and the parity tests.
 */
#ifndef YOLOD_IMAGE_H
#define YOLOD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "yolod.h"

/*
 * Decodes a JPEG (image_jpeg.c) or PNG (image_png.c) from memory into out
 * without applying EXIF orientation; *orientation receives the EXIF value
 * 1..8 found in the file (1 when there is none). Both check the header's
 * pixel count against max_pixels before allocating the pixel buffer.
 */
int yd_image_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels,
                         yd_image *out, int *orientation, yd_error *err);
int yd_image_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels,
                        yd_image *out, int *orientation, yd_error *err);

/*
 * Rejects zero dimensions (YD_ERR_IMAGE_CORRUPT) and width * height above
 * max_pixels (YD_ERR_IMAGE_TOO_LARGE; 0 means no limit). format names the
 * format in the message ("JPEG", "PNG").
 */
int yd_image_check_size(const char *format, uint64_t width, uint64_t height,
                        uint64_t max_pixels, yd_error *err);

/*
 * Parses a TIFF structure (the body of an Exif APP1 segment after
 * "Exif\0\0", or a PNG eXIf chunk) and returns the IFD0 Orientation tag
 * (0x0112) when it is a valid value 1..8, else 1. Every offset is checked
 * against size, so any input is safe.
 */
int yd_exif_orientation(const uint8_t *tiff, size_t size);

/*
 * Rewrites image so that it is displayed upright for the given EXIF
 * orientation (2..8; 1 and invalid values leave it unchanged). Orientations
 * 5..8 swap width and height. Allocates a second buffer of the same size.
 */
int yd_image_orient(yd_image *image, int orientation, yd_error *err);

/*
 * Converts a size * size * 3 interleaved RGB8 buffer into planar float
 * [3][size][size], each value pixel / 255.0f: the network input layout.
 */
void yd_letterbox_to_nchw(const uint8_t *rgb, int size, float *out);

#endif /* YOLOD_IMAGE_H */
