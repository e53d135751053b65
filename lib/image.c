/*
 * Image decoding entry points: format sniffing from magic bytes, dispatch to
 * the JPEG and PNG decoders, the pixel limit, and EXIF orientation.
 *
 * Pixels follow OpenCV's imread(IMREAD_COLOR) on the same libjpeg-turbo and
 * libpng, so the letterboxed tensor matches the Ultralytics reference.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "util.h"

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* The shortest prefix of the PNG signature taken as PNG: 0x89 "PNG". */
#define PNG_SIGNATURE_MIN_PREFIX 4

/*
 * A JPEG starts with the SOI marker FF D8 and the FF of the next marker, and
 * a PNG with its 8-byte signature. Data that ends inside one of these (at
 * least FF D8, or 0x89 "PNG") is taken as that format, so the decoder
 * reports it as truncated instead of as an unknown format.
 */
yd_image_format yd_image_sniff(const void *data, size_t size)
{
    const uint8_t *bytes = data;

    if (!data)
        return YD_IMAGE_UNKNOWN;
    if (size >= 2 && bytes[0] == 0xff && bytes[1] == 0xd8 && (size == 2 || bytes[2] == 0xff))
        return YD_IMAGE_JPEG;
    if (size >= PNG_SIGNATURE_MIN_PREFIX &&
        memcmp(bytes, png_signature, size < sizeof png_signature ? size : sizeof png_signature) == 0)
        return YD_IMAGE_PNG;
    return YD_IMAGE_UNKNOWN;
}

/* Names a few common formats we do not decode, for the error message. */
static const char *describe_unsupported(const uint8_t *bytes, size_t size)
{
    if (size >= 12 && memcmp(bytes, "RIFF", 4) == 0 && memcmp(bytes + 8, "WEBP", 4) == 0)
        return "WebP";
    if (size >= 6 && (memcmp(bytes, "GIF87a", 6) == 0 || memcmp(bytes, "GIF89a", 6) == 0))
        return "GIF";
    if (size >= 4 && (memcmp(bytes, "II*\0", 4) == 0 || memcmp(bytes, "MM\0*", 4) == 0))
        return "TIFF";
    if (size >= 12 && memcmp(bytes + 4, "ftyp", 4) == 0) {
        if (memcmp(bytes + 8, "avif", 4) == 0 || memcmp(bytes + 8, "avis", 4) == 0)
            return "AVIF";
        if (memcmp(bytes + 8, "hei", 3) == 0 || memcmp(bytes + 8, "mif1", 4) == 0 ||
            memcmp(bytes + 8, "heix", 4) == 0)
            return "HEIF";
    }
    if (size >= 2 && bytes[0] == 'B' && bytes[1] == 'M')
        return "BMP";
    return NULL;
}

static int reject_unknown(const uint8_t *bytes, size_t size, yd_error *err)
{
    const char *kind = describe_unsupported(bytes, size);
    char hex[16] = "";

    if (size >= 2 && bytes[0] == 0xff && bytes[1] == 0xd8)
        return yd_error_set(err, YD_ERR_IMAGE_CORRUPT,
                            "invalid JPEG image: no marker follows the SOI marker");
    if (kind)
        return yd_error_set(err, YD_ERR_IMAGE_UNSUPPORTED,
                            "unsupported image format: %s; supported formats are JPEG and PNG",
                            kind);
    for (size_t i = 0, length = 0; i < size && i < 4; i++)
        length += (size_t)snprintf(hex + length, sizeof hex - length, "%s%02x", i ? " " : "",
                                   bytes[i]);
    return yd_error_set(err, YD_ERR_IMAGE_UNSUPPORTED,
                        "unrecognised image format (first bytes %s); "
                        "supported formats are JPEG and PNG",
                        hex);
}

int yd_image_check_format(const void *data, size_t size, yd_error *err)
{
    if (yd_image_sniff(data, size) != YD_IMAGE_UNKNOWN)
        return YD_OK;
    return reject_unknown(data, size, err);
}

int yd_image_check_size(const char *format, uint64_t width, uint64_t height,
                        uint64_t max_pixels, yd_error *err)
{
    if (width == 0 || height == 0)
        return yd_error_set(err, YD_ERR_IMAGE_CORRUPT,
                            "invalid %s image: its size is %llux%llu", format,
                            (unsigned long long)width, (unsigned long long)height);
    if (max_pixels && width * height > max_pixels)
        return yd_error_set(err, YD_ERR_IMAGE_TOO_LARGE,
                            "image is %llux%llu (%llu pixels), above the limit of %llu pixels",
                            (unsigned long long)width, (unsigned long long)height,
                            (unsigned long long)(width * height),
                            (unsigned long long)max_pixels);
    return YD_OK;
}

int yd_image_decode(const void *data, size_t size, uint64_t max_pixels,
                    yd_image *out, yd_error *err)
{
    const uint8_t *bytes = data;
    yd_image image = {0};
    int orientation = 1;
    int rc;

    if (!out)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "no output image given");
    memset(out, 0, sizeof *out);
    if (!data || size == 0)
        return yd_error_set(err, YD_ERR_IMAGE_EMPTY, "image is empty (0 bytes)");

    switch (yd_image_sniff(data, size)) {
    case YD_IMAGE_JPEG:
        rc = yd_image_decode_jpeg(bytes, size, max_pixels, &image, &orientation, err);
        break;
    case YD_IMAGE_PNG:
        rc = yd_image_decode_png(bytes, size, max_pixels, &image, &orientation, err);
        break;
    default:
        return reject_unknown(bytes, size, err);
    }
    if (rc < 0)
        return rc;

    rc = yd_image_orient(&image, orientation, err);
    if (rc < 0) {
        yd_image_free(&image);
        return rc;
    }
    *out = image;
    return YD_OK;
}

/* Bytes of a file or stream read to recognise its format. */
#define IMAGE_HEADER_SIZE 16

/*
 * Rejects a file that cannot be opened or is not a regular file, and one
 * that is neither JPEG nor PNG from its first bytes, before yd_read_file()
 * reads all of it. A file that is empty or fails to read passes, and
 * yd_read_file() or the decoder reports it.
 */
static int check_file_header(const char *path, yd_error *err)
{
    uint8_t head[IMAGE_HEADER_SIZE];
    int fd = yd_open_regular_file(path, err);
    ssize_t n;

    if (fd < 0)
        return fd;
    n = read(fd, head, sizeof head);
    close(fd);
    if (n <= 0 || yd_image_sniff(head, (size_t)n) != YD_IMAGE_UNKNOWN)
        return YD_OK;
    return reject_unknown(head, (size_t)n, err);
}

int yd_image_load(const char *path, uint64_t max_pixels, yd_image *out, yd_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    rc = check_file_header(path, err);
    if (rc < 0)
        return rc;
    /* NOTE: a file with a JPEG or PNG header is still read whole before the
     * decoder checks max_pixels, so a huge one costs its size in memory. */
    rc = yd_read_file(path, &data, &size, err);
    if (rc < 0)
        return rc;
    rc = yd_image_decode(data, size, max_pixels, out, err);
    free(data);
    return rc;
}

/* Waits until fd, which has O_NONBLOCK set, has data or end of file. */
static void wait_readable(int fd)
{
    struct pollfd poller = { .fd = fd, .events = POLLIN };

    while (poll(&poller, 1, -1) < 0 && errno == EINTR)
        continue;
}

/*
 * Reads fd to end of file into a malloc'ed buffer of at most max_bytes.
 * Stops after the first bytes when they are neither JPEG nor PNG.
 */
static int read_stream(int fd, const char *name, size_t max_bytes, uint8_t **data, size_t *size,
                       yd_error *err)
{
    size_t capacity = 0, done = 0;
    uint8_t *buf = NULL;
    int sniffed = 0;

    for (;;) {
        ssize_t got;

        /* Room for one byte over max_bytes distinguishes a stream at the limit
         * from a longer one. */
        if (done == capacity) {
            size_t grown = capacity ? capacity * 2 : 1 << 16;
            uint8_t *bigger;

            if (max_bytes < SIZE_MAX && grown > max_bytes + 1)
                grown = max_bytes + 1;
            bigger = realloc(buf, grown);
            if (!bigger) {
                free(buf);
                return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory reading %s (%zu bytes)",
                                    name, grown);
            }
            buf = bigger;
            capacity = grown;
        }
        got = read(fd, buf + done, capacity - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_readable(fd);
            continue;
        }
        if (got < 0) {
            int read_error = errno;

            free(buf);
            return yd_error_set(err, YD_ERR_IO, "cannot read %s: %s", name, strerror(read_error));
        }
        done += (size_t)got;
        if (!sniffed && (got == 0 || done >= IMAGE_HEADER_SIZE)) {
            sniffed = 1;
            if (done > 0 && yd_image_sniff(buf, done) == YD_IMAGE_UNKNOWN) {
                int rc = reject_unknown(buf, done, err);

                free(buf);
                return rc;
            }
        }
        if (got == 0)
            break;
        if (done > max_bytes) {
            free(buf);
            return yd_error_set(err, YD_ERR_IMAGE_TOO_LARGE,
                                "%s holds more than %zu bytes, the limit for an image read from "
                                "a stream; save the image to a file and pass its path",
                                name, max_bytes);
        }
    }
    *data = buf;
    *size = done;
    return YD_OK;
}

int yd_image_load_fd(int fd, const char *name, size_t max_bytes, uint64_t max_pixels,
                     yd_image *out, yd_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    rc = read_stream(fd, name, max_bytes, &data, &size, err);
    if (rc < 0)
        return rc;
    rc = yd_image_decode(data, size, max_pixels, out, err);
    free(data);
    return rc;
}

void yd_image_free(yd_image *image)
{
    if (!image)
        return;
    free(image->rgb);
    image->rgb = NULL;
    image->width = 0;
    image->height = 0;
}

/*
 * Orientation as OpenCV's ApplyExifOrientation: 2 mirrors horizontally, 3
 * rotates 180 degrees, 4 mirrors vertically, 5 transposes, 6 rotates 90
 * degrees clockwise, 7 transposes across the anti-diagonal, 8 rotates 90
 * degrees counter-clockwise. For each output pixel (x, y) the source pixel is
 * start + x * step_x + y * step_y (offsets in pixels).
 */
int yd_image_orient(yd_image *image, int orientation, yd_error *err)
{
    ptrdiff_t w = image->width, h = image->height;
    ptrdiff_t start, step_x, step_y;
    int out_w, out_h;
    uint8_t *rotated;

    switch (orientation) {
    case 2: start = w - 1;           step_x = -1; step_y = w;  break;
    case 3: start = w * h - 1;       step_x = -1; step_y = -w; break;
    case 4: start = (h - 1) * w;     step_x = 1;  step_y = -w; break;
    case 5: start = 0;               step_x = w;  step_y = 1;  break;
    case 6: start = (h - 1) * w;     step_x = -w; step_y = 1;  break;
    case 7: start = w * h - 1;       step_x = -w; step_y = -1; break;
    case 8: start = w - 1;           step_x = w;  step_y = -1; break;
    default: return YD_OK;
    }
    out_w = orientation >= 5 ? image->height : image->width;
    out_h = orientation >= 5 ? image->width : image->height;

    rotated = malloc((size_t)w * (size_t)h * 3);
    if (!rotated)
        return yd_error_set(err, YD_ERR_NO_MEMORY,
                            "out of memory applying EXIF orientation to a %dx%d image",
                            image->width, image->height);

    for (int y = 0; y < out_h; y++) {
        ptrdiff_t pixel = start + y * step_y;
        uint8_t *dst = rotated + (size_t)y * out_w * 3;

        for (int x = 0; x < out_w; x++, pixel += step_x, dst += 3) {
            const uint8_t *src = image->rgb + pixel * 3;

            dst[0] = src[0];
            dst[1] = src[1];
            dst[2] = src[2];
        }
    }

    free(image->rgb);
    image->rgb = rotated;
    image->width = out_w;
    image->height = out_h;
    return YD_OK;
}
