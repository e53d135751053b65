/*
 * PNG decoding from memory with libpng 1.6.
 *
 * The transforms are the ones OpenCV's imread(IMREAD_COLOR) sets in libpng:
 * 16-bit stripped to 8 (png_set_strip_16 keeps the high byte), alpha
 * dropped without compositing, palette and low-bit gray expanded, gray
 * replicated to RGB, no gamma correction. libpng errors longjmp back here
 * with their message. Warnings are counted and never printed.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image.h"
#include "util.h"

struct png_decoder {
    const uint8_t *data;
    size_t size;
    size_t offset;
    int truncated;
    char message[256];
    long warning_count;
    char first_warning[256];
    uint8_t *pixels;
    png_bytep *rows;
};

static void on_png_error(png_structp png, png_const_charp message)
{
    struct png_decoder *dec = png_get_error_ptr(png);

    snprintf(dec->message, sizeof dec->message, "%s", message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message)
{
    struct png_decoder *dec = png_get_error_ptr(png);

    if (dec->warning_count++ == 0)
        snprintf(dec->first_warning, sizeof dec->first_warning, "%s", message);
}

static void read_from_memory(png_structp png, png_bytep buffer, size_t length)
{
    struct png_decoder *dec = png_get_io_ptr(png);

    if (length > dec->size - dec->offset) {
        dec->truncated = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(buffer, dec->data + dec->offset, length);
    dec->offset += length;
}

static void set_rgb8_transforms(png_structp png, int bit_depth, int color_type)
{
    if (bit_depth == 16)
        png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0 && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
}

/* Returns the orientation from an eXIf chunk (before or after IDAT), 1 if none. */
static int find_orientation(png_structp png, png_infop info)
{
    png_uint_32 length = 0;
    png_bytep exif = NULL;

    if (!png_get_eXIf_1(png, info, &length, &exif) || !exif)
        return 1;
    return yd_exif_orientation(exif, length);
}

/*
 * Runs libpng up to the decoded pixels in dec->pixels. Everything that must
 * survive a longjmp lives in dec, and no local changes after setjmp.
 */
/* Most ancillary chunks (text, ICC profiles, EXIF) libpng keeps from one file. */
#define PNG_CHUNK_MAX_COUNT 1000

/*
 * Checks that every chunk up to IEND fits in the data. libpng 1.6.39
 * allocates and clears a text chunk's declared length (up to 2^31 - 1
 * bytes) before reading it, even with png_set_chunk_malloc_max() set: a
 * 141-byte file took 2 GB. The signature is left to libpng.
 */
static int check_chunks(const uint8_t *data, size_t size, yd_error *err)
{
    size_t offset = 8;

    while (offset + 8 <= size) {
        const uint8_t *header = data + offset;
        uint32_t length = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 |
                          (uint32_t)header[2] << 8 | header[3];
        char type[5] = {0};

        for (int k = 0; k < 4; k++)
            type[k] = header[4 + k] >= 0x20 && header[4 + k] < 0x7f ? (char)header[4 + k] : '?';
        /* After the 8-byte header: the data, then a 4-byte CRC. */
        const size_t remain = size - offset - 8;

        if (length > remain || remain - length < 4)
            return yd_error_set(err, YD_ERR_IMAGE_CORRUPT,
                                "PNG image is truncated: chunk %s at byte %zu declares %u bytes "
                                "of data and a 4-byte CRC, and %zu bytes remain",
                                type, offset, length, remain);
        if (memcmp(type, "IEND", 4) == 0)
            break;
        offset += (size_t)length + 12;
    }
    return YD_OK;
}

static int run_decoder(struct png_decoder *dec, png_structp png, png_infop info,
                       uint64_t max_pixels, yd_image *out, int *orientation, yd_error *err)
{
    png_uint_32 width, height;
    int bit_depth, color_type;

    if (setjmp(png_jmpbuf(png))) {
        if (dec->truncated)
            return yd_error_set(err, YD_ERR_IMAGE_CORRUPT,
                                "PNG image is truncated: the data ends after %zu bytes",
                                dec->size);
        return yd_error_set(err, YD_ERR_IMAGE_CORRUPT, "invalid PNG image: %s", dec->message);
    }

    png_set_read_fn(png, dec, read_from_memory);
    png_set_chunk_cache_max(png, PNG_CHUNK_MAX_COUNT);
    png_read_info(png, info);
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    int rc = yd_image_check_size("PNG", width, height, max_pixels, err);
    if (rc < 0)
        return rc;

    set_rgb8_transforms(png, bit_depth, color_type);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)width * 3)
        return yd_error_set(err, YD_ERR_INTERNAL,
                            "libpng did not produce RGB8 rows (channels %d, depth %d, colour type %d)",
                            png_get_channels(png, info), png_get_bit_depth(png, info), color_type);

    dec->pixels = malloc((size_t)width * height * 3);
    dec->rows = malloc(sizeof *dec->rows * height);
    if (!dec->pixels || !dec->rows)
        return yd_error_set(err, YD_ERR_NO_MEMORY,
                            "out of memory decoding a %ux%u PNG image", width, height);
    for (png_uint_32 y = 0; y < height; y++)
        dec->rows[y] = dec->pixels + (size_t)y * width * 3;

    /* png_read_end also reads the chunks after IDAT, where eXIf may be. */
    png_read_image(png, dec->rows);
    png_read_end(png, info);
    *orientation = find_orientation(png, info);

    out->width = (int)width;
    out->height = (int)height;
    out->rgb = dec->pixels;
    dec->pixels = NULL;
    return YD_OK;
}

int yd_image_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels,
                        yd_image *out, int *orientation, yd_error *err)
{
    struct png_decoder *dec = calloc(1, sizeof *dec);
    png_structp png = NULL;
    png_infop info = NULL;
    int rc;

    if (!dec)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a PNG decoder");
    dec->data = data;
    dec->size = size;
    if (size >= 8 && png_sig_cmp(data, 0, 8) == 0) {
        rc = check_chunks(data, size, err);
        if (rc != YD_OK) {
            free(dec);
            return rc;
        }
    }

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, dec, on_png_error, on_png_warning);
    if (png)
        info = png_create_info_struct(png);
    if (!png || !info) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a PNG decoder");
        goto cleanup;
    }

    rc = run_decoder(dec, png, info, max_pixels, out, orientation, err);
    if (rc == YD_OK && dec->warning_count > 0)
        yd_log(YD_LOG_DEBUG, "PNG decoded with %ld warning(s), the first: %s",
               dec->warning_count, dec->first_warning);

cleanup:
    png_destroy_read_struct(&png, &info, NULL);
    free(dec->pixels);
    free(dec->rows);
    free(dec);
    return rc;
}
