/*
 * JPEG decoding from memory with libjpeg-turbo's jpeglib.h API.
 *
 * Decoder settings are the library defaults (ISLOW DCT, fancy upsampling),
 * as OpenCV's imread uses them, so pixels equal imread's on the same
 * libjpeg-turbo. libjpeg reports fatal errors through error_exit, which here
 * stores the message and longjmps back. Warnings go through emit_message,
 * which rejects a truncated file instead of returning a half-gray image.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h> /* jpeglib.h uses FILE without including stdio.h */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "image.h"
#include "util.h"

/*
 * A progressive file may hold any number of scans, and each one walks the
 * whole coefficient buffer, so a small hostile file can cost minutes of CPU.
 * libjpeg's standard progression script writes 10 scans for YCbCr.
 */
#define JPEG_MAX_SCANS 500

#define EXIF_HEADER_SIZE 6 /* "Exif\0" and a pad byte before the TIFF header */

enum jpeg_phase {
    JPEG_PHASE_HEADER,
    JPEG_PHASE_PIXELS, /* start_decompress, read_scanlines, finish_decompress */
};

struct jpeg_decoder {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr error_mgr;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    enum jpeg_phase phase;
    int input_ended; /* libjpeg warned JWRN_JPEG_EOF and inserted a fake EOI */
    int truncated;
    int ended_early; /* truncated by an EOI marker inside a scan or before a scan */
    int error_code; /* YD_ERR_* of the failure that longjmp'ed */
    char message[JMSG_LENGTH_MAX];
    long warning_count;
    char first_warning[JMSG_LENGTH_MAX];
    uint8_t *pixels;
    uint8_t *cmyk_row;
};

static struct jpeg_decoder *decoder_of(j_common_ptr cinfo)
{
    return (struct jpeg_decoder *)((char *)cinfo->err - offsetof(struct jpeg_decoder, error_mgr));
}

static void on_error_exit(j_common_ptr cinfo)
{
    struct jpeg_decoder *dec = decoder_of(cinfo);

    switch (cinfo->err->msg_code) {
    case JERR_OUT_OF_MEMORY:
        dec->error_code = YD_ERR_NO_MEMORY;
        break;
    case JERR_IMAGE_TOO_BIG: /* a side above 65500, before the header returns */
        dec->error_code = YD_ERR_IMAGE_TOO_LARGE;
        break;
    case JERR_CONVERSION_NOTIMPL:
    case JERR_BAD_PRECISION:
        dec->error_code = YD_ERR_IMAGE_UNSUPPORTED;
        break;
    default:
        dec->error_code = YD_ERR_IMAGE_CORRUPT;
        break;
    }
    cinfo->err->format_message(cinfo, dec->message);
    longjmp(dec->jump, 1);
}

static void fail_truncated(struct jpeg_decoder *dec)
{
    dec->truncated = 1;
    dec->error_code = YD_ERR_IMAGE_CORRUPT;
    longjmp(dec->jump, 1);
}

/*
 * Handles libjpeg warnings (msg_level -1) and ignores trace messages (0 and
 * above).
 *
 * When the data runs out, the memory source warns JWRN_JPEG_EOF and feeds a
 * fake EOI marker, and libjpeg fills the rest of the image with gray. Inside
 * the header that is fatal. Later it may be harmless, because the Huffman
 * decoder prefetches bits: a file that only lacks its final EOI marker still
 * decodes completely. Any warning after the end of data ("premature end of
 * data segment", a resync) means that the decoder needed bytes it did not
 * get, so it is fatal. check_scans_complete() covers multi-scan files.
 * So is an EOI marker that a scan runs into before its last block: the file
 * was cut and closed, and 10 bytes of scan data could otherwise make a
 * 7000x7000 gray image. Other warnings ("Corrupt JPEG data: ...") are counted
 * and accepted, as imread accepts them.
 */
static void on_emit_message(j_common_ptr cinfo, int msg_level)
{
    struct jpeg_decoder *dec = decoder_of(cinfo);

    if (msg_level >= 0)
        return;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        if (dec->phase == JPEG_PHASE_HEADER)
            fail_truncated(dec);
        dec->input_ended = 1;
    } else if (dec->input_ended) {
        fail_truncated(dec);
    } else if (cinfo->err->msg_code == JWRN_HIT_MARKER &&
               ((j_decompress_ptr)cinfo)->unread_marker == JPEG_EOI) {
        dec->ended_early = 1;
        fail_truncated(dec);
    }
    if (dec->warning_count++ == 0)
        cinfo->err->format_message(cinfo, dec->first_warning);
    cinfo->err->num_warnings++;
}

/*
 * jpeg_start_decompress reads every scan of a multi-scan file before the
 * first row comes out. If the data ended there, a later scan may be missing
 * without any other warning, and so may it when the file was cut between
 * two scans and closed with an EOI marker. A progressive file is complete
 * when every coefficient of every component has been refined down to bit 0
 * (coef_bits == 0), which every encoder's scan script reaches; that is
 * checked whether or not the data ran out. Other multi-scan files cannot be
 * checked, so only a missing EOI counts as truncation for them.
 */
static void check_scans_complete(struct jpeg_decoder *dec)
{
    j_decompress_ptr cinfo = &dec->cinfo;

    if (!jpeg_has_multiple_scans(cinfo))
        return;
    if (!cinfo->progressive_mode || !cinfo->coef_bits) {
        if (dec->input_ended)
            fail_truncated(dec);
        return;
    }
    for (int c = 0; c < cinfo->num_components; c++) {
        for (int k = 0; k < DCTSIZE2; k++) {
            if (cinfo->coef_bits[c][k] != 0) {
                dec->ended_early = !dec->input_ended;
                fail_truncated(dec);
            }
        }
    }
}

static void on_progress(j_common_ptr cinfo)
{
    struct jpeg_decoder *dec = decoder_of(cinfo);
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;

    if (dinfo->input_scan_number > JPEG_MAX_SCANS) {
        dec->error_code = YD_ERR_IMAGE_CORRUPT;
        snprintf(dec->message, sizeof dec->message,
                 "progressive JPEG has more than %d scans", JPEG_MAX_SCANS);
        longjmp(dec->jump, 1);
    }
}

/* Returns the orientation from the first Exif APP1 segment, 1 if none. */
static int find_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1 || m->data_length < EXIF_HEADER_SIZE)
            continue;
        if (memcmp(m->data, "Exif\0", 5) != 0)
            continue;
        return yd_exif_orientation(m->data + EXIF_HEADER_SIZE,
                                   m->data_length - EXIF_HEADER_SIZE);
    }
    return 1;
}

/*
 * Adobe CMYK to RGB as OpenCV's icvCvt_CMYK2BGR_8u_C4C3R: Adobe writes the
 * channels inverted, so a stored c is 255 - cyan and R = k * c / 256 roughly.
 */
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width)
{
    for (int x = 0; x < width; x++, cmyk += 4, rgb += 3) {
        int k = cmyk[3];

        rgb[0] = (uint8_t)(k - ((255 - cmyk[0]) * k >> 8));
        rgb[1] = (uint8_t)(k - ((255 - cmyk[1]) * k >> 8));
        rgb[2] = (uint8_t)(k - ((255 - cmyk[2]) * k >> 8));
    }
}

/*
 * Runs libjpeg up to the decoded pixels in dec->pixels. Everything that must
 * survive a longjmp lives in dec, and no local changes after setjmp.
 */
static int run_decoder(struct jpeg_decoder *dec, const uint8_t *data, size_t size,
                       uint64_t max_pixels, yd_image *out, int *orientation, yd_error *err)
{
    j_decompress_ptr cinfo = &dec->cinfo;

    if (setjmp(dec->jump)) {
        if (dec->ended_early)
            return yd_error_set(err, YD_ERR_IMAGE_CORRUPT,
                                "JPEG image is truncated: an EOI marker ends the data before the"
                                " image is complete");
        if (dec->truncated)
            return yd_error_set(err, YD_ERR_IMAGE_CORRUPT,
                                "JPEG image is truncated: the data ends after %zu bytes, %s",
                                size, dec->phase == JPEG_PHASE_HEADER
                                          ? "inside the header" : "before the image is complete");
        if (dec->error_code == YD_ERR_IMAGE_TOO_LARGE)
            return yd_error_set(err, dec->error_code, "JPEG image too large: %s", dec->message);
        return yd_error_set(err, dec->error_code, "invalid JPEG image: %s", dec->message);
    }

    jpeg_create_decompress(cinfo);
    dec->progress.progress_monitor = on_progress;
    cinfo->progress = &dec->progress;
    jpeg_mem_src(cinfo, data, size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);

    *orientation = find_orientation(cinfo);
    int rc = yd_image_check_size("JPEG", cinfo->image_width, cinfo->image_height,
                                 max_pixels, err);
    if (rc < 0)
        return rc;

    /* Four components are CMYK or YCCK (libjpeg turns YCCK into CMYK). */
    cinfo->out_color_space = cinfo->num_components == 4 ? JCS_CMYK : JCS_RGB;
    dec->phase = JPEG_PHASE_PIXELS;
    jpeg_start_decompress(cinfo);
    check_scans_complete(dec);

    size_t width = cinfo->output_width, height = cinfo->output_height;
    dec->pixels = malloc(width * height * 3);
    if (!dec->pixels)
        return yd_error_set(err, YD_ERR_NO_MEMORY,
                            "out of memory decoding a %zux%zu JPEG image", width, height);
    if (cinfo->out_color_space == JCS_CMYK) {
        dec->cmyk_row = malloc(width * 4);
        if (!dec->cmyk_row)
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory decoding a JPEG row");
    }

    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *rgb_row = dec->pixels + (size_t)cinfo->output_scanline * width * 3;
        JSAMPROW row = dec->cmyk_row ? dec->cmyk_row : rgb_row;

        /* A memory source never suspends, so 0 rows would mean a stuck decoder. */
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return yd_error_set(err, YD_ERR_INTERNAL, "libjpeg returned no scanline");
        if (dec->cmyk_row)
            cmyk_to_rgb(dec->cmyk_row, rgb_row, (int)width);
    }

    jpeg_finish_decompress(cinfo);

    out->width = (int)width;
    out->height = (int)height;
    out->rgb = dec->pixels;
    dec->pixels = NULL;
    return YD_OK;
}

int yd_image_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels,
                         yd_image *out, int *orientation, yd_error *err)
{
    struct jpeg_decoder *dec = calloc(1, sizeof *dec);
    int rc;

    if (!dec)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating a JPEG decoder");
    dec->cinfo.err = jpeg_std_error(&dec->error_mgr);
    dec->error_mgr.error_exit = on_error_exit;
    dec->error_mgr.emit_message = on_emit_message;

    rc = run_decoder(dec, data, size, max_pixels, out, orientation, err);
    if (rc == YD_OK && dec->warning_count > 0)
        yd_log(YD_LOG_DEBUG, "JPEG decoded with %ld warning(s), the first: %s",
               dec->warning_count, dec->first_warning);

    jpeg_destroy_decompress(&dec->cinfo);
    free(dec->pixels);
    free(dec->cmyk_row);
    free(dec);
    return rc;
}
