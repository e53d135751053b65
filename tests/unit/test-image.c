/*
 * Image decoding and letterbox tests on the shared sample images: parity
 * with the reference letterboxed tensors, every awkward file in images/odd,
 * the pixel limit, EXIF orientation, and truncated or corrupted input.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>

#include "image.h"
#include "testlib.h"
#include "util.h"
#include "yolod.h"

#define INPUT_SIZE 640

/* ------------------------------------------------------------- helpers */

static int load_shared(const char *rel, yd_image *image)
{
    yd_error err = {0};
    int rc = yd_image_load(shared_path(rel), 0, image, &err);

    if (rc != YD_OK)
        fprintf(stderr, "  loading %s failed: %s\n", rel, err.message);
    return rc;
}

/* Mean absolute difference over all channels; -1 when the sizes differ. */
static double mean_abs_diff(const yd_image *a, const yd_image *b)
{
    size_t count = (size_t)a->width * a->height * 3;
    double sum = 0;

    if (a->width != b->width || a->height != b->height || !a->rgb || !b->rgb)
        return -1;
    for (size_t i = 0; i < count; i++)
        sum += abs(a->rgb[i] - b->rgb[i]);
    return sum / (double)count;
}

static int max_abs_diff(const yd_image *a, const yd_image *b)
{
    size_t count = (size_t)a->width * a->height * 3;
    int max = 0;

    if (a->width != b->width || a->height != b->height || !a->rgb || !b->rgb)
        return 256;
    for (size_t i = 0; i < count; i++) {
        int d = abs(a->rgb[i] - b->rgb[i]);

        if (d > max)
            max = d;
    }
    return max;
}

static int is_gray(const yd_image *image)
{
    size_t count = (size_t)image->width * image->height;

    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = image->rgb + i * 3;

        if (p[0] != p[1] || p[1] != p[2])
            return 0;
    }
    return 1;
}

/* Extracts element `index` of a JSON number array "key": [...] (index 0 for a scalar). */
static double json_number(const char *text, const char *key, int index)
{
    char quoted[64];
    const char *p;
    char *end;

    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    p = strstr(text, quoted);
    if (!p)
        return NAN;
    p = strchr(p + strlen(quoted), ':');
    if (!p)
        return NAN;
    p++;
    while (*p == ' ' || *p == '\n' || *p == '[')
        p++;
    for (int i = 0; i < index; i++) {
        p = strchr(p, ',');
        if (!p)
            return NAN;
        p++;
    }
    double value = strtod(p, &end);
    return end == p ? NAN : value;
}

/* ------------------------------------------------- PNG writer for tests */

struct png_buffer {
    uint8_t *data;
    size_t size;
};

static void png_buffer_write(png_structp png, png_bytep bytes, size_t length)
{
    struct png_buffer *buffer = png_get_io_ptr(png);

    buffer->data = realloc(buffer->data, buffer->size + length);
    if (!buffer->data) {
        fprintf(stderr, "FATAL: out of memory writing a test PNG\n");
        exit(2);
    }
    memcpy(buffer->data + buffer->size, bytes, length);
    buffer->size += length;
}

static void png_buffer_flush(png_structp png)
{
}

/*
 * Encodes width x height samples (channels per pixel, bit_depth 8 or 16,
 * big-endian 16-bit samples as PNG stores them) into a PNG in memory.
 * palette/palette_size apply to PNG_COLOR_TYPE_PALETTE; exif (may be NULL)
 * is written as an eXIf chunk before IDAT.
 */
static struct png_buffer encode_png(const uint8_t *samples, int width, int height,
                                    int color_type, int bit_depth, int interlaced,
                                    const png_color *palette, int palette_size,
                                    const uint8_t *exif, int exif_size)
{
    struct png_buffer buffer = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    int channels = color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                   : color_type == PNG_COLOR_TYPE_RGB     ? 3
                   : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t row_bytes = ((size_t)width * channels * bit_depth + 7) / 8;
    png_bytep *rows = malloc(sizeof *rows * height);

    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "FATAL: libpng failed to write a test PNG\n");
        exit(2);
    }
    png_set_write_fn(png, &buffer, png_buffer_write, png_buffer_flush);
    png_set_IHDR(png, info, width, height, bit_depth, color_type,
                 interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, palette_size);
    if (exif)
        png_set_eXIf_1(png, info, exif_size, (png_bytep)exif);
    for (int y = 0; y < height; y++)
        rows[y] = (png_bytep)samples + y * row_bytes;
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return buffer;
}

/* A 37x23 RGBA image whose every channel varies, RGB plus a varying alpha. */
static uint8_t *make_rgba_samples(int width, int height)
{
    uint8_t *samples = malloc((size_t)width * height * 4);

    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            uint8_t *p = samples + ((size_t)y * width + x) * 4;

            p[0] = (uint8_t)(x * 7 + y);
            p[1] = (uint8_t)(y * 11 + x * 3);
            p[2] = (uint8_t)(x * y);
            p[3] = (uint8_t)(x * 5 + y * 9);
        }
    return samples;
}

/* ------------------------------------------------------------ sniffing */

/* Data cut inside a signature keeps its format, so it decodes as truncated. */
static void test_sniff_short_signatures(void)
{
    static const uint8_t jpeg[] = {0xff, 0xd8, 0xff};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t jpeg_no_marker[] = {0xff, 0xd8, 0x00};
    static const uint8_t png_text_mode[] = {0x89, 'P', 'N', 'G', '\n', 0x1a, '\n', 0};

    CHECK_INT_EQ(yd_image_sniff(jpeg, 2), YD_IMAGE_JPEG);
    CHECK_INT_EQ(yd_image_sniff(jpeg, 1), YD_IMAGE_UNKNOWN);
    CHECK_INT_EQ(yd_image_sniff(jpeg_no_marker, sizeof jpeg_no_marker), YD_IMAGE_UNKNOWN);
    for (size_t size = 4; size <= sizeof png; size++)
        CHECK_INT_EQ(yd_image_sniff(png, size), YD_IMAGE_PNG);
    CHECK_INT_EQ(yd_image_sniff(png, 3), YD_IMAGE_UNKNOWN);
    CHECK_INT_EQ(yd_image_sniff(png_text_mode, sizeof png_text_mode), YD_IMAGE_UNKNOWN);
}

/* A JPEG or PNG signature with nothing after it is a truncated image. */
static void test_decode_bare_signature_truncated(void)
{
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    yd_image image = {0};
    yd_error err = {0};

    CHECK_INT_EQ(yd_image_decode("\xff\xd8", 2, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
    CHECK(strstr(err.message, "JPEG image is truncated") != NULL);
    CHECK(image.rgb == NULL);
    for (size_t size = 4; size <= sizeof png; size++) {
        CHECK_INT_EQ(yd_image_decode(png, size, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
        CHECK(strstr(err.message, "PNG image is truncated") != NULL);
        CHECK(image.rgb == NULL);
    }
}

static void test_sniff_magic_bytes(void)
{
    static const uint8_t jpeg[] = {0xff, 0xd8, 0xff, 0xe0};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
    static const uint8_t text[] = "this is not an image";

    CHECK_INT_EQ(yd_image_sniff(jpeg, sizeof jpeg), YD_IMAGE_JPEG);
    CHECK_INT_EQ(yd_image_sniff(jpeg, 3), YD_IMAGE_JPEG);
    CHECK_INT_EQ(yd_image_sniff(png, sizeof png), YD_IMAGE_PNG);
    CHECK_INT_EQ(yd_image_sniff(png, 8), YD_IMAGE_PNG);
    CHECK_INT_EQ(yd_image_sniff(text, sizeof text), YD_IMAGE_UNKNOWN);
    CHECK_INT_EQ(yd_image_sniff(NULL, 10), YD_IMAGE_UNKNOWN);
    CHECK_INT_EQ(yd_image_sniff(jpeg, 0), YD_IMAGE_UNKNOWN);
}

static void test_decode_rejects_non_images(void)
{
    static const struct {
        const char *bytes;
        size_t size;
        const char *named;
    } cases[] = {
        {"GIF89a\x01\x00\x01\x00", 10, "GIF"},
        {"RIFF\x10\x00\x00\x00WEBPVP8 ", 16, "WebP"},
        {"II*\x00\x08\x00\x00\x00", 8, "TIFF"},
        {"MM\x00*\x00\x00\x00\x08", 8, "TIFF"},
        {"BM\x36\x00\x00\x00", 6, "BMP"},
        {"\x00\x00\x00\x1c" "ftypavif", 12, "AVIF"},
        {"\x00\x00\x00\x18" "ftypheic", 12, "HEIF"},
        {"hello", 5, "first bytes 68 65 6c 6c"},
        {"\xff", 1, "first bytes ff)"},
        {"\x89PNG\n\x1a\n", 7, "first bytes 89 50 4e 47)"},
    };
    yd_image image = {0};
    yd_error err = {0};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = yd_image_decode(cases[i].bytes, cases[i].size, 0, &image, &err);

        CHECK_INT_EQ(rc, YD_ERR_IMAGE_UNSUPPORTED);
        CHECK_INT_EQ(err.code, YD_ERR_IMAGE_UNSUPPORTED);
        CHECK(strstr(err.message, cases[i].named) != NULL);
        CHECK(strstr(err.message, "JPEG and PNG") != NULL);
        CHECK(image.rgb == NULL);
    }

    /* SOI without a following marker is a damaged JPEG, not another format. */
    CHECK_INT_EQ(yd_image_decode("\xff\xd8\x00\x10", 4, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
    CHECK(strstr(err.message, "JPEG") != NULL);

    CHECK_INT_EQ(yd_image_decode("", 0, 0, &image, &err), YD_ERR_IMAGE_EMPTY);
    CHECK(strstr(err.message, "empty") != NULL);
    CHECK_INT_EQ(yd_image_decode(NULL, 0, 0, &image, &err), YD_ERR_IMAGE_EMPTY);
    CHECK_INT_EQ(yd_image_decode("x", 1, 0, NULL, &err), YD_ERR_INVALID_ARGUMENT);
    CHECK_INT_EQ(yd_image_load("/nonexistent/yolod-test.jpg", 0, &image, &err), YD_ERR_IO);
    CHECK(image.rgb == NULL);
    CHECK_INT_EQ(yd_image_load("/", 0, &image, &err), YD_ERR_IO);
    CHECK(strstr(err.message, "cannot read '/': Is a directory") != NULL);
}

/* ------------------------------------------------------------ streams */

/*
 * A FIFO without a writer is rejected at once instead of blocking. SIGALRM
 * ends the program if the load blocks, so the test fails instead of hanging.
 */
static void test_load_rejects_fifo(void)
{
    char dir[] = "/tmp/yolod-test-fifo.XXXXXX", path[64];
    yd_image image = {0};
    yd_error err = {0};

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/image.jpg", dir);
    CHECK_OK(mkfifo(path, 0600));
    alarm(10);
    CHECK_INT_EQ(yd_image_load(path, 0, &image, &err), YD_ERR_IO);
    alarm(0);
    CHECK(strstr(err.message, "it is a FIFO, not a regular file") != NULL);
    CHECK(image.rgb == NULL);
    unlink(path);
    rmdir(dir);
}

/* Writes size bytes into a new pipe, closes its write end and returns the read end. */
static int pipe_with(const void *data, size_t size)
{
    int ends[2];

    if (pipe(ends) != 0)
        return -1;
    if (write(ends[1], data, size) != (ssize_t)size) {
        close(ends[0]);
        close(ends[1]);
        return -1;
    }
    close(ends[1]);
    return ends[0];
}

static void test_load_fd_reads_pipe(void)
{
    size_t size;
    uint8_t *data = read_file_or_die(shared_path("images/odd/bus_16x16_tiny.jpg"), &size);
    yd_image image = {0};
    yd_error err = {0};
    int fd;

    /* The whole file fits in a pipe's buffer, so the writes do not block. */
    fd = pipe_with(data, size);
    CHECK(fd >= 0);
    CHECK_OK(yd_image_load_fd(fd, "the pipe", size, 0, &image, &err));
    CHECK_INT_EQ(image.width, 16);
    CHECK_INT_EQ(image.height, 16);
    yd_image_free(&image);
    close(fd);

    fd = pipe_with(data, size);
    CHECK_INT_EQ(yd_image_load_fd(fd, "the pipe", size - 1, 0, &image, &err),
                 YD_ERR_IMAGE_TOO_LARGE);
    CHECK(strstr(err.message, "the pipe holds more than") != NULL);
    CHECK(image.rgb == NULL);
    close(fd);

    fd = pipe_with("hello, world", 12);
    CHECK_INT_EQ(yd_image_load_fd(fd, "the pipe", size, 0, &image, &err),
                 YD_ERR_IMAGE_UNSUPPORTED);
    CHECK(strstr(err.message, "first bytes 68 65 6c 6c") != NULL);
    close(fd);

    fd = pipe_with("", 0);
    CHECK_INT_EQ(yd_image_load_fd(fd, "the pipe", size, 0, &image, &err), YD_ERR_IMAGE_EMPTY);
    close(fd);
    free(data);
}

/* ------------------------------------------------------------ letterbox */

static void test_letterbox_geometry_table(void)
{
    static const struct {
        int width, height;
        int new_width, new_height;
        int top, bottom, left, right;
    } cases[] = {
        {1280, 513, 640, 256, 192, 192, 0, 0},   /* 256.5 rounds to even */
        {1280, 515, 640, 258, 191, 191, 0, 0},   /* 257.5 rounds to even */
        {600, 400, 640, 427, 106, 107, 0, 0},    /* dh = 106.5 */
        {810, 1080, 480, 640, 0, 0, 80, 80},
        {1280, 720, 640, 360, 140, 140, 0, 0},
        {645, 1000, 413, 640, 0, 0, 113, 114},  /* 412.8 -> 413, dw = 113.5 */
        {640, 640, 640, 640, 0, 0, 0, 0},
        {1, 1, 640, 640, 0, 0, 0, 0},
        {16, 16, 640, 640, 0, 0, 0, 0},
        {4000, 400, 640, 64, 288, 288, 0, 0},
        {3024, 4032, 480, 640, 0, 0, 80, 80},
        {1800, 1200, 640, 427, 106, 107, 0, 0},
        {4000, 1, 640, 1, 319, 320, 0, 0},      /* 0.16 rows kept as 1 */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        yd_letterbox lb;

        yd_letterbox_compute(cases[i].width, cases[i].height, INPUT_SIZE, &lb);
        if (lb.new_width != cases[i].new_width || lb.new_height != cases[i].new_height ||
            lb.top != cases[i].top || lb.bottom != cases[i].bottom ||
            lb.left != cases[i].left || lb.right != cases[i].right)
            fprintf(stderr, "  %dx%d -> %dx%d pad %d/%d/%d/%d\n", cases[i].width,
                    cases[i].height, lb.new_width, lb.new_height, lb.top, lb.bottom, lb.left,
                    lb.right);
        CHECK_INT_EQ(lb.input_width, INPUT_SIZE);
        CHECK_INT_EQ(lb.input_height, INPUT_SIZE);
        CHECK_INT_EQ(lb.new_width, cases[i].new_width);
        CHECK_INT_EQ(lb.new_height, cases[i].new_height);
        CHECK_INT_EQ(lb.top, cases[i].top);
        CHECK_INT_EQ(lb.bottom, cases[i].bottom);
        CHECK_INT_EQ(lb.left, cases[i].left);
        CHECK_INT_EQ(lb.right, cases[i].right);
        CHECK_INT_EQ(lb.top + lb.new_height + lb.bottom, INPUT_SIZE);
        CHECK_INT_EQ(lb.left + lb.new_width + lb.right, INPUT_SIZE);
    }

    /* Another network size: 1280x513 into 320 gives 128.25 rows. */
    yd_letterbox lb;
    yd_letterbox_compute(1280, 513, 320, &lb);
    CHECK_NEAR(lb.r, 0.25, 0);
    CHECK_INT_EQ(lb.new_height, 128);
    CHECK_INT_EQ(lb.top, 96);
    CHECK_INT_EQ(lb.bottom, 96);
}

/*
 * Letterboxes a sample image and compares it with the reference tensor made
 * by OpenCV 4.6 imread + resize; prints the difference statistics.
 */
static void check_golden_letterbox(const char *name)
{
    char rel[256];
    yd_image image = {0};
    yd_letterbox lb;
    yd_error err = {0};
    size_t plane = (size_t)INPUT_SIZE * INPUT_SIZE, golden_size = 0, meta_size = 0;
    uint8_t *rgb = malloc(plane * 3);
    float *tensor = malloc(plane * 3 * sizeof *tensor);
    float *golden;
    char *meta;
    double max_diff = 0;
    size_t differing = 0;

    snprintf(rel, sizeof rel, "golden/%s.input.f32", name);
    golden = read_file_or_die(shared_path(rel), &golden_size);
    snprintf(rel, sizeof rel, "golden/%s.meta.json", name);
    meta = read_file_or_die(shared_path(rel), &meta_size);
    meta = realloc(meta, meta_size + 1);
    meta[meta_size] = '\0';
    CHECK_INT_EQ(golden_size, plane * 3 * sizeof(float));

    snprintf(rel, sizeof rel, "images/%s.jpg", name);
    CHECK_OK(load_shared(rel, &image));
    CHECK_INT_EQ(image.height, json_number(meta, "orig_shape", 0));
    CHECK_INT_EQ(image.width, json_number(meta, "orig_shape", 1));

    yd_letterbox_compute(image.width, image.height, INPUT_SIZE, &lb);
    CHECK_NEAR(lb.r, json_number(meta, "r", 0), 1e-15);
    CHECK_INT_EQ(lb.new_width, json_number(meta, "new_unpad", 0));
    CHECK_INT_EQ(lb.new_height, json_number(meta, "new_unpad", 1));
    CHECK_INT_EQ(lb.top, json_number(meta, "pad", 0));
    CHECK_INT_EQ(lb.bottom, json_number(meta, "pad", 1));
    CHECK_INT_EQ(lb.left, json_number(meta, "pad", 2));
    CHECK_INT_EQ(lb.right, json_number(meta, "pad", 3));

    CHECK_OK(yd_letterbox_rgb8(&image, &lb, rgb, &err));
    yd_letterbox_to_nchw(rgb, INPUT_SIZE, tensor);
    for (size_t i = 0; i < plane * 3 && golden_size == plane * 3 * sizeof(float); i++) {
        double d = fabs((double)tensor[i] - golden[i]);

        if (d > max_diff)
            max_diff = d;
        differing += d > 0;
    }
    printf("     %s: max |diff| %.6f (%.1f/255), %zu of %zu values differ (%.4f%%)\n", name,
           max_diff, max_diff * 255, differing, plane * 3, 100.0 * differing / (plane * 3.0));
    CHECK(max_diff <= 2.0 / 255 + 1e-7);

    /* The pad rows and columns hold exactly 114/255. */
    CHECK_NEAR(tensor[0], 114 / 255.0f, 0);
    CHECK_NEAR(tensor[2 * plane + plane - 1], 114 / 255.0f, 0);

    yd_image_free(&image);
    free(rgb);
    free(tensor);
    free(golden);
    free(meta);
}

static void test_letterbox_bus_matches_reference(void)
{
    check_golden_letterbox("bus");
}

static void test_letterbox_zidane_matches_reference(void)
{
    check_golden_letterbox("zidane");
}

/* Exact float bilinear with half-pixel centres and edge clamping. */
static double bilinear_reference(const yd_image *image, int dst_w, int dst_h, int x, int y,
                                 int c)
{
    double sx = (x + 0.5) * image->width / dst_w - 0.5;
    double sy = (y + 0.5) * image->height / dst_h - 0.5;
    int x0, y0, x1, y1;
    double fx, fy;

    sx = fmin(fmax(sx, 0), image->width - 1);
    sy = fmin(fmax(sy, 0), image->height - 1);
    x0 = (int)sx;
    y0 = (int)sy;
    x1 = x0 + 1 < image->width ? x0 + 1 : x0;
    y1 = y0 + 1 < image->height ? y0 + 1 : y0;
    fx = sx - x0;
    fy = sy - y0;
#define PX(xx, yy) image->rgb[((size_t)(yy) * image->width + (xx)) * 3 + c]
    return (PX(x0, y0) * (1 - fx) + PX(x1, y0) * fx) * (1 - fy) +
           (PX(x0, y1) * (1 - fx) + PX(x1, y1) * fx) * fy;
#undef PX
}

/*
 * The fixed-point resize stays within 1 of exact bilinear on synthetic
 * images of awkward sizes, up and down, and the pad is 114 everywhere else.
 */
static void test_letterbox_resize_near_float_bilinear(void)
{
    static const int sizes[][2] = {{16, 16}, {3, 5}, {2, 1}, {1, 2}, {1000, 7}, {641, 480},
                                   {1279, 719}, {37, 400}};
    uint8_t *out = malloc((size_t)INPUT_SIZE * INPUT_SIZE * 3);
    yd_error err = {0};

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        yd_image image = {sizes[i][0], sizes[i][1], NULL};
        yd_letterbox lb;
        double worst = 0;
        int pad_wrong = 0;

        image.rgb = malloc((size_t)image.width * image.height * 3);
        for (size_t k = 0; k < (size_t)image.width * image.height * 3; k++)
            image.rgb[k] = (uint8_t)((k * 2654435761u) >> 13);
        yd_letterbox_compute(image.width, image.height, INPUT_SIZE, &lb);
        CHECK_OK(yd_letterbox_rgb8(&image, &lb, out, &err));

        for (int y = 0; y < INPUT_SIZE; y++)
            for (int x = 0; x < INPUT_SIZE; x++)
                for (int c = 0; c < 3; c++) {
                    int value = out[((size_t)y * INPUT_SIZE + x) * 3 + c];
                    int ix = x - lb.left, iy = y - lb.top;

                    if (ix < 0 || iy < 0 || ix >= lb.new_width || iy >= lb.new_height) {
                        pad_wrong += value != 114;
                        continue;
                    }
                    double want = bilinear_reference(&image, lb.new_width, lb.new_height,
                                                     ix, iy, c);

                    if (fabs(value - want) > worst)
                        worst = fabs(value - want);
                }
        if (worst > 1 || pad_wrong)
            fprintf(stderr, "  %dx%d: worst %.3f, %d pad values not 114\n", image.width,
                    image.height, worst, pad_wrong);
        CHECK(worst <= 1);
        CHECK_INT_EQ(pad_wrong, 0);
        free(image.rgb);
    }
    free(out);
}

static void test_letterbox_tiny_and_exact_sizes(void)
{
    uint8_t pixel[3] = {200, 17, 99};
    yd_image one = {1, 1, pixel};
    yd_image square = {INPUT_SIZE, INPUT_SIZE, NULL};
    uint8_t *out = malloc((size_t)INPUT_SIZE * INPUT_SIZE * 3);
    yd_letterbox lb;
    yd_error err = {0};
    size_t wrong = 0;

    /* 1x1 upscales to a uniform 640x640 of the same colour. */
    yd_letterbox_compute(1, 1, INPUT_SIZE, &lb);
    CHECK_OK(yd_letterbox_rgb8(&one, &lb, out, &err));
    for (size_t i = 0; i < (size_t)INPUT_SIZE * INPUT_SIZE; i++)
        wrong += memcmp(out + i * 3, pixel, 3) != 0;
    CHECK_INT_EQ(wrong, 0);

    /* A 640x640 image is copied unchanged. */
    square.rgb = malloc((size_t)INPUT_SIZE * INPUT_SIZE * 3);
    for (size_t i = 0; i < (size_t)INPUT_SIZE * INPUT_SIZE * 3; i++)
        square.rgb[i] = (uint8_t)(i * 31 + (i >> 9));
    yd_letterbox_compute(INPUT_SIZE, INPUT_SIZE, INPUT_SIZE, &lb);
    CHECK_OK(yd_letterbox_rgb8(&square, &lb, out, &err));
    CHECK(memcmp(out, square.rgb, (size_t)INPUT_SIZE * INPUT_SIZE * 3) == 0);

    /* Geometry that does not fill the square, or overflows it, is rejected. */
    lb.top = 1;
    CHECK_INT_EQ(yd_letterbox_rgb8(&square, &lb, out, &err), YD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "letterbox") != NULL);
    lb.top = 0;
    lb.new_height = INPUT_SIZE + 1;
    lb.bottom = -1;
    CHECK_INT_EQ(yd_letterbox_rgb8(&square, &lb, out, &err), YD_ERR_INVALID_ARGUMENT);

    free(square.rgb);
    free(out);
}

/* The phone-sized photo and the panorama letterbox quickly and sensibly. */
static void test_letterbox_large_and_panorama(void)
{
    yd_image large = {0}, panorama = {0}, bus = {0};
    uint8_t *out = malloc((size_t)INPUT_SIZE * INPUT_SIZE * 3);
    uint8_t *bus_out = malloc((size_t)INPUT_SIZE * INPUT_SIZE * 3);
    yd_letterbox lb, bus_lb;
    yd_error err = {0};
    double start, elapsed;
    long sum = 0;

    CHECK_OK(load_shared("images/odd/bus_3024x4032_large.jpg", &large));
    CHECK_OK(load_shared("images/bus.jpg", &bus));
    yd_letterbox_compute(large.width, large.height, INPUT_SIZE, &lb);
    start = yd_now_ms();
    CHECK_OK(yd_letterbox_rgb8(&large, &lb, out, &err));
    elapsed = yd_now_ms() - start;
    printf("     3024x4032 -> %dx%d letterbox: %.2f ms\n", lb.new_width, lb.new_height, elapsed);
    CHECK(elapsed < 100);

    /* The upscaled photo letterboxes to nearly the same tensor as bus.jpg. */
    yd_letterbox_compute(bus.width, bus.height, INPUT_SIZE, &bus_lb);
    CHECK_OK(yd_letterbox_rgb8(&bus, &bus_lb, bus_out, &err));
    for (size_t i = 0; i < (size_t)INPUT_SIZE * INPUT_SIZE * 3; i++)
        sum += abs(out[i] - bus_out[i]);
    printf("     large vs bus letterbox: mean |diff| %.3f\n",
           (double)sum / (INPUT_SIZE * INPUT_SIZE * 3));
    CHECK(sum < 4L * INPUT_SIZE * INPUT_SIZE * 3);

    CHECK_OK(load_shared("images/odd/zidane_panorama_4000x400.jpg", &panorama));
    yd_letterbox_compute(panorama.width, panorama.height, INPUT_SIZE, &lb);
    CHECK_INT_EQ(lb.new_height, 64);
    CHECK_OK(yd_letterbox_rgb8(&panorama, &lb, out, &err));
    CHECK_INT_EQ(out[0], 114);
    CHECK_INT_EQ(out[((size_t)(lb.top + lb.new_height) * INPUT_SIZE) * 3], 114);

    yd_image_free(&large);
    yd_image_free(&panorama);
    yd_image_free(&bus);
    free(out);
    free(bus_out);
}

/* ------------------------------------------------------ the odd images */

enum odd_check { SIZE_ONLY, SAME_AS, GRAY, CLOSE_TO, ROTATED };

static const struct odd_case {
    const char *file;
    int rc;
    int width, height;
    enum odd_check check;
    const char *reference;  /* under images/ */
    double max_mean_diff;   /* CLOSE_TO, ROTATED: mean |diff| bound vs reference */
    const char *message;    /* expected substring of the error message */
} odd_cases[] = {
    {"bus_progressive.jpg", YD_OK, 810, 1080, SAME_AS, "bus.jpg", 0, NULL},
    {"bus_3024x4032_large.jpg", YD_OK, 3024, 4032, SIZE_ONLY, NULL, 0, NULL},
    {"bus_rgb.png", YD_OK, 810, 1080, SAME_AS, "bus.jpg", 0, NULL},
    {"bus_gray.png", YD_OK, 810, 1080, GRAY, "bus.jpg", 0, NULL},
    {"bus_cmyk.jpg", YD_OK, 810, 1080, CLOSE_TO, "bus.jpg", 3.0, NULL},
    {"bus_16x16_tiny.jpg", YD_OK, 16, 16, SIZE_ONLY, NULL, 0, NULL},
    {"bus_1x1.jpg", YD_OK, 1, 1, SIZE_ONLY, NULL, 0, NULL},
    {"bus_truncated.jpg", YD_ERR_IMAGE_CORRUPT, 0, 0, SIZE_ONLY, NULL, 0, "truncated"},
    {"bus.webp", YD_ERR_IMAGE_UNSUPPORTED, 0, 0, SIZE_ONLY, NULL, 0, "WebP"},
    {"bus.bmp", YD_ERR_IMAGE_UNSUPPORTED, 0, 0, SIZE_ONLY, NULL, 0, "BMP"},
    {"coco_val_000000007888_gray_native.jpg", YD_OK, 638, 640, GRAY, NULL, 0, NULL},
    {"zidane_grayscale.jpg", YD_OK, 1280, 720, GRAY, "zidane.jpg", 0, NULL},
    {"zidane_444.jpg", YD_OK, 1280, 720, CLOSE_TO, "zidane.jpg", 1.0, NULL},
    {"zidane_rgba.png", YD_OK, 1280, 720, SAME_AS, "zidane.jpg", 0, NULL},
    {"zidane_exif_orient6.jpg", YD_OK, 1280, 720, ROTATED, "zidane.jpg", 1.0, NULL},
    {"zidane_exif_orient8.jpg", YD_OK, 1280, 720, ROTATED, "zidane.jpg", 1.0, NULL},
    {"exif_examples_Landscape_1.jpg", YD_OK, 1800, 1200, SIZE_ONLY, NULL, 0, NULL},
    {"exif_examples_Landscape_6.jpg", YD_OK, 1800, 1200, ROTATED,
     "odd/exif_examples_Landscape_1.jpg", 6.0, NULL},
    {"exif_examples_Landscape_8.jpg", YD_OK, 1800, 1200, ROTATED,
     "odd/exif_examples_Landscape_1.jpg", 6.0, NULL},
    {"zidane_panorama_4000x400.jpg", YD_OK, 4000, 400, SIZE_ONLY, NULL, 0, NULL},
    {"empty.jpg", YD_ERR_IMAGE_EMPTY, 0, 0, SIZE_ONLY, NULL, 0, "empty"},
    {"not_an_image.jpg", YD_ERR_IMAGE_UNSUPPORTED, 0, 0, SIZE_ONLY, NULL, 0, "JPEG and PNG"},
};

static const struct odd_case *find_odd_case(const char *file)
{
    for (size_t i = 0; i < sizeof odd_cases / sizeof odd_cases[0]; i++)
        if (strcmp(odd_cases[i].file, file) == 0)
            return &odd_cases[i];
    return NULL;
}

static void rotate_180(yd_image *image)
{
    size_t count = (size_t)image->width * image->height;

    for (size_t i = 0; i < count / 2; i++) {
        uint8_t *a = image->rgb + i * 3, *b = image->rgb + (count - 1 - i) * 3;

        for (int c = 0; c < 3; c++) {
            uint8_t t = a[c];

            a[c] = b[c];
            b[c] = t;
        }
    }
}

static void check_odd_pixels(const struct odd_case *odd, yd_image *image)
{
    yd_image reference = {0};
    char rel[256];

    if (odd->reference) {
        snprintf(rel, sizeof rel, "images/%s", odd->reference);
        CHECK_OK(load_shared(rel, &reference));
    }

    switch (odd->check) {
    case SIZE_ONLY:
        break;
    case SAME_AS:
        CHECK_INT_EQ(max_abs_diff(image, &reference), 0);
        break;
    case GRAY: {
        CHECK(is_gray(image));
        if (!reference.rgb)
            break;
        /* Gray matches the reference's BT.601 luma on average. */
        double sum = 0;
        size_t count = (size_t)image->width * image->height;

        for (size_t i = 0; i < count && reference.width == image->width; i++) {
            const uint8_t *p = reference.rgb + i * 3;

            sum += fabs(image->rgb[i * 3] - (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
        }
        printf("     %s: mean |gray - luma| %.3f\n", odd->file, sum / count);
        CHECK(sum / count < 2.0);
        break;
    }
    case CLOSE_TO:
    case ROTATED: {
        double diff = mean_abs_diff(image, &reference);

        printf("     %s: mean |diff| vs %s %.3f\n", odd->file, odd->reference, diff);
        CHECK(diff >= 0);
        CHECK(diff <= odd->max_mean_diff);
        if (odd->check == ROTATED) {
            /* Control: the wrong turn is far from the reference. */
            rotate_180(image);
            double wrong = mean_abs_diff(image, &reference);

            CHECK(wrong > 4 * odd->max_mean_diff);
            rotate_180(image);
        }
        break;
    }
    }
    yd_image_free(&reference);
}

/* Every file in images/odd has an expected outcome here, and meets it. */
static void test_odd_images(void)
{
    DIR *dir = opendir(shared_path("images/odd"));
    struct dirent *entry;
    int seen = 0;

    CHECK(dir != NULL);
    while (dir && (entry = readdir(dir)) != NULL) {
        const struct odd_case *odd;
        char rel[512];
        yd_image image = {0};
        yd_error err = {0};
        int rc;

        if (entry->d_name[0] == '.' || strcmp(entry->d_name, "README.md") == 0)
            continue;
        odd = find_odd_case(entry->d_name);
        if (!odd) {
            fprintf(stderr, "  images/odd/%s has no expected outcome in this test\n",
                    entry->d_name);
            CHECK(odd != NULL);
            continue;
        }
        seen++;

        snprintf(rel, sizeof rel, "%s/%s", shared_path("images/odd"), entry->d_name);
        rc = yd_image_load(rel, 0, &image, &err);
        if (rc != odd->rc)
            fprintf(stderr, "  %s: rc %d (%s)\n", odd->file, rc, err.message);
        CHECK_INT_EQ(rc, odd->rc);
        CHECK_INT_EQ(image.width, odd->width);
        CHECK_INT_EQ(image.height, odd->height);
        if (odd->message) {
            CHECK_INT_EQ(err.code, odd->rc);
            if (!strstr(err.message, odd->message))
                fprintf(stderr, "  %s: message '%s' lacks '%s'\n", odd->file, err.message,
                        odd->message);
            CHECK(strstr(err.message, odd->message) != NULL);
        }
        if (rc == YD_OK && image.width == odd->width && image.height == odd->height)
            check_odd_pixels(odd, &image);
        yd_image_free(&image);
    }
    if (dir)
        closedir(dir);
    CHECK_INT_EQ(seen, sizeof odd_cases / sizeof odd_cases[0]);
}

/* ------------------------------------------------------------ the limit */

static void test_pixel_limit_checked_from_header(void)
{
    uint8_t *data;
    size_t size;
    yd_image image = {0};
    yd_error err = {0};
    double start, full_ms, limited_ms;

    data = read_file_or_die(shared_path("images/odd/bus_3024x4032_large.jpg"), &size);
    start = yd_now_ms();
    CHECK_OK(yd_image_decode(data, size, 0, &image, &err));
    full_ms = yd_now_ms() - start;
    yd_image_free(&image);

    start = yd_now_ms();
    CHECK_INT_EQ(yd_image_decode(data, size, 1000000, &image, &err), YD_ERR_IMAGE_TOO_LARGE);
    limited_ms = yd_now_ms() - start;
    printf("     3024x4032 JPEG: full decode %.1f ms, rejected by the limit in %.3f ms\n",
           full_ms, limited_ms);
    CHECK_INT_EQ(err.code, YD_ERR_IMAGE_TOO_LARGE);
    CHECK(strstr(err.message, "3024x4032") != NULL);
    CHECK(strstr(err.message, "1000000") != NULL);
    CHECK(image.rgb == NULL);
    CHECK_INT_EQ(image.width, 0);
    /* Only the header was read: far faster than decoding the pixels. */
    CHECK(limited_ms < full_ms / 10);

    /* The limit is inclusive. */
    CHECK_OK(yd_image_decode(data, size, 3024ull * 4032, &image, &err));
    yd_image_free(&image);
    CHECK_INT_EQ(yd_image_decode(data, size, 3024ull * 4032 - 1, &image, &err),
                 YD_ERR_IMAGE_TOO_LARGE);
    free(data);

    data = read_file_or_die(shared_path("images/odd/bus_rgb.png"), &size);
    CHECK_INT_EQ(yd_image_decode(data, size, 810 * 1080 - 1, &image, &err),
                 YD_ERR_IMAGE_TOO_LARGE);
    CHECK(strstr(err.message, "810x1080") != NULL);
    CHECK(image.rgb == NULL);
    CHECK_OK(yd_image_decode(data, size, 810 * 1080, &image, &err));
    yd_image_free(&image);
    free(data);
}

/* A JPEG header of 65535 x 65535 pixels: libjpeg rejects sides above 65500
 * while reading the header, before our pixel limit is checked. */
static void test_jpeg_side_above_libjpeg_limit(void)
{
    static const uint8_t data[] = {
        0xff, 0xd8,                                     /* SOI */
        0xff, 0xc0, 0x00, 0x0b, 0x08, 0xff, 0xff, 0xff, /* SOF0: 8 bits, 65535 high, */
        0xff, 0x01, 0x01, 0x11, 0x00,                   /* 65535 wide, 1 component */
        0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, /* SOS */
        0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xd9, /* scan data, EOI */
    };
    yd_image image = {0};
    yd_error err = {0};

    CHECK_INT_EQ(yd_image_decode(data, sizeof data, 0, &image, &err), YD_ERR_IMAGE_TOO_LARGE);
    CHECK_INT_EQ(err.code, YD_ERR_IMAGE_TOO_LARGE);
    CHECK(strstr(err.message, "too large") != NULL);
    CHECK(image.rgb == NULL);
}

/* ---------------------------------------------------------------- EXIF */

/* Builds a TIFF block with one IFD0 entry (tag, type, count, value). */
static size_t make_tiff(uint8_t *tiff, int big_endian, uint16_t tag, uint16_t type,
                        uint32_t count, uint32_t value)
{
    uint8_t header_le[8] = {'I', 'I', 42, 0, 8, 0, 0, 0};
    uint8_t header_be[8] = {'M', 'M', 0, 42, 0, 0, 0, 8};
    uint8_t *e = tiff + 10;

    memcpy(tiff, big_endian ? header_be : header_le, 8);
    /* Two entries: an unrelated tag first, so the loop has to walk. */
    if (big_endian) {
        tiff[8] = 0, tiff[9] = 2;
        memcpy(e, "\x01\x0f\x00\x02\x00\x00\x00\x04" "Cam", 12);
        e += 12;
        e[0] = tag >> 8, e[1] = tag & 0xff, e[2] = type >> 8, e[3] = type & 0xff;
        e[4] = count >> 24, e[5] = count >> 16 & 0xff, e[6] = count >> 8 & 0xff, e[7] = count & 0xff;
        if (type == 3)
            e[8] = value >> 8 & 0xff, e[9] = value & 0xff, e[10] = e[11] = 0;
        else
            e[8] = value >> 24, e[9] = value >> 16 & 0xff, e[10] = value >> 8 & 0xff, e[11] = value & 0xff;
    } else {
        tiff[8] = 2, tiff[9] = 0;
        memcpy(e, "\x0f\x01\x02\x00\x04\x00\x00\x00" "Cam", 12);
        e += 12;
        e[0] = tag & 0xff, e[1] = tag >> 8, e[2] = type & 0xff, e[3] = type >> 8;
        e[4] = count & 0xff, e[5] = count >> 8 & 0xff, e[6] = count >> 16 & 0xff, e[7] = count >> 24;
        e[8] = value & 0xff, e[9] = value >> 8 & 0xff, e[10] = value >> 16 & 0xff, e[11] = value >> 24;
    }
    return 10 + 24;
}

static void test_exif_orientation_parser(void)
{
    uint8_t tiff[64];
    size_t size;

    for (int big = 0; big <= 1; big++)
        for (uint32_t value = 1; value <= 8; value++) {
            size = make_tiff(tiff, big, 0x0112, 3, 1, value);
            CHECK_INT_EQ(yd_exif_orientation(tiff, size), value);
            size = make_tiff(tiff, big, 0x0112, 4, 1, value);
            CHECK_INT_EQ(yd_exif_orientation(tiff, size), value);
        }

    for (int big = 0; big <= 1; big++) {
        size = make_tiff(tiff, big, 0x0112, 3, 1, 9);     /* out of range */
        CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);
        size = make_tiff(tiff, big, 0x0112, 3, 1, 0);
        CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);
        size = make_tiff(tiff, big, 0x0112, 2, 1, 6);     /* ASCII type */
        CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);
        size = make_tiff(tiff, big, 0x0112, 3, 2, 6);     /* count 2 */
        CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);
        size = make_tiff(tiff, big, 0x0110, 3, 1, 6);     /* another tag */
        CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);

        /* Every truncation of a valid block is safe; only the whole block reads 6. */
        size = make_tiff(tiff, big, 0x0112, 3, 1, 6);
        for (size_t len = 0; len < size; len++)
            CHECK_INT_EQ(yd_exif_orientation(tiff, len), 1);
    }

    /* IFD0 offset past the end, and an entry count that runs past it. */
    size = make_tiff(tiff, 0, 0x0112, 3, 1, 6);
    tiff[4] = 0xff, tiff[5] = 0xff, tiff[6] = 0xff, tiff[7] = 0xff;
    CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);
    size = make_tiff(tiff, 0, 0x0112, 3, 1, 6);
    tiff[4] = (uint8_t)(size - 1);
    CHECK_INT_EQ(yd_exif_orientation(tiff, size), 1);
    size = make_tiff(tiff, 0, 0x0112, 3, 1, 6);
    tiff[8] = 0xff, tiff[9] = 0xff;
    CHECK_INT_EQ(yd_exif_orientation(tiff, size - 12), 1);
    CHECK_INT_EQ(yd_exif_orientation((const uint8_t *)"XX*\0\x08\0\0\0", 8), 1);
    CHECK_INT_EQ(yd_exif_orientation(NULL, 100), 1);
}

/* Each orientation moves the pixels of a 3x2 image as EXIF defines. */
static void test_orientation_transforms(void)
{
    /* Pixel value row * 10 + column in every channel. */
    static const uint8_t source[2][3] = {{0, 1, 2}, {10, 11, 12}};
    static const struct {
        int orientation, width, height;
        uint8_t values[6];
    } cases[] = {
        {1, 3, 2, {0, 1, 2, 10, 11, 12}},
        {2, 3, 2, {2, 1, 0, 12, 11, 10}},
        {3, 3, 2, {12, 11, 10, 2, 1, 0}},
        {4, 3, 2, {10, 11, 12, 0, 1, 2}},
        {5, 2, 3, {0, 10, 1, 11, 2, 12}},
        {6, 2, 3, {10, 0, 11, 1, 12, 2}},
        {7, 2, 3, {12, 2, 11, 1, 10, 0}},
        {8, 2, 3, {2, 12, 1, 11, 0, 10}},
        {9, 3, 2, {0, 1, 2, 10, 11, 12}}, /* invalid: unchanged */
    };
    yd_error err = {0};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        yd_image image = {3, 2, malloc(18)};

        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++)
                memset(image.rgb + (y * 3 + x) * 3, source[y][x], 3);
        CHECK_OK(yd_image_orient(&image, cases[i].orientation, &err));
        CHECK_INT_EQ(image.width, cases[i].width);
        CHECK_INT_EQ(image.height, cases[i].height);
        for (int k = 0; k < 6; k++) {
            if (image.rgb[k * 3] != cases[i].values[k])
                fprintf(stderr, "  orientation %d: pixel %d is %d, expected %d\n",
                        cases[i].orientation, k, image.rgb[k * 3], cases[i].values[k]);
            CHECK_INT_EQ(image.rgb[k * 3], cases[i].values[k]);
        }
        yd_image_free(&image);
    }
}

/* ----------------------------------------------------------------- PNG */

/* Each PNG colour type and depth decodes to the RGB8 libpng's transforms give. */
static void test_png_colour_types(void)
{
    const int w = 37, h = 23;
    uint8_t *rgba = make_rgba_samples(w, h);
    uint8_t *samples = malloc((size_t)w * h * 8);
    png_color palette[16];
    yd_image image = {0};
    yd_error err = {0};
    struct png_buffer png;
    size_t wrong;

    /* RGBA, plain and interlaced: alpha dropped, RGB kept exactly. */
    for (int interlaced = 0; interlaced <= 1; interlaced++) {
        png = encode_png(rgba, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, interlaced, NULL, 0, NULL, 0);
        CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
        CHECK_INT_EQ(image.width, w);
        CHECK_INT_EQ(image.height, h);
        wrong = 0;
        for (size_t i = 0; i < (size_t)w * h && image.rgb; i++)
            wrong += memcmp(image.rgb + i * 3, rgba + i * 4, 3) != 0;
        CHECK_INT_EQ(wrong, 0);
        yd_image_free(&image);
        free(png.data);
    }

    /* 16-bit RGB: the high byte of each sample. */
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        samples[i * 2] = rgba[i / 3 * 4 + i % 3];
        samples[i * 2 + 1] = (uint8_t)(255 - samples[i * 2]);
    }
    png = encode_png(samples, w, h, PNG_COLOR_TYPE_RGB, 16, 0, NULL, 0, NULL, 0);
    CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
    wrong = 0;
    for (size_t i = 0; i < (size_t)w * h * 3 && image.rgb; i++)
        wrong += image.rgb[i] != samples[i * 2];
    CHECK_INT_EQ(wrong, 0);
    yd_image_free(&image);
    free(png.data);

    /* 16-bit gray with alpha: gray high byte in all three channels. */
    for (size_t i = 0; i < (size_t)w * h; i++) {
        samples[i * 4] = rgba[i * 4 + 1];
        samples[i * 4 + 1] = 0x80;
        samples[i * 4 + 2] = rgba[i * 4 + 3];
        samples[i * 4 + 3] = 0;
    }
    png = encode_png(samples, w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 16, 1, NULL, 0, NULL, 0);
    CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
    wrong = 0;
    for (size_t i = 0; i < (size_t)w * h && image.rgb; i++)
        wrong += image.rgb[i * 3] != samples[i * 4] || image.rgb[i * 3 + 2] != samples[i * 4];
    CHECK_INT_EQ(wrong, 0);
    yd_image_free(&image);
    free(png.data);

    /* 4-bit palette: every index maps to its colour. */
    for (int i = 0; i < 16; i++) {
        palette[i].red = (png_byte)(i * 16);
        palette[i].green = (png_byte)(255 - i * 8);
        palette[i].blue = (png_byte)(i * i);
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < (w + 1) / 2; x++) {
            int left = (x * 2 + y) % 16, right = (x * 2 + 1 + y) % 16;

            samples[y * ((w + 1) / 2) + x] = (uint8_t)(left << 4 | right);
        }
    png = encode_png(samples, w, h, PNG_COLOR_TYPE_PALETTE, 4, 0, palette, 16, NULL, 0);
    CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
    wrong = 0;
    for (int y = 0; y < h && image.rgb; y++)
        for (int x = 0; x < w; x++) {
            const png_color *c = &palette[(x + y) % 16];
            const uint8_t *p = image.rgb + ((size_t)y * w + x) * 3;

            wrong += p[0] != c->red || p[1] != c->green || p[2] != c->blue;
        }
    CHECK_INT_EQ(wrong, 0);
    yd_image_free(&image);
    free(png.data);

    /* 1-bit gray: 0 and 255. */
    memset(samples, 0xa5, (size_t)((w + 7) / 8) * h);
    png = encode_png(samples, w, h, PNG_COLOR_TYPE_GRAY, 1, 0, NULL, 0, NULL, 0);
    CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
    if (image.rgb) {
        CHECK_INT_EQ(image.rgb[0], 255);
        CHECK_INT_EQ(image.rgb[3], 0);
        CHECK_INT_EQ(image.rgb[6], 255);
        CHECK(is_gray(&image));
    }
    yd_image_free(&image);
    free(png.data);

    free(samples);
    free(rgba);
}

static void test_png_exif_orientation(void)
{
    const int w = 37, h = 23;
    uint8_t *rgba = make_rgba_samples(w, h);
    uint8_t tiff[64];
    size_t tiff_size = make_tiff(tiff, 1, 0x0112, 3, 1, 6);
    struct png_buffer png = encode_png(rgba, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, NULL, 0,
                                       tiff, (int)tiff_size);
    yd_image image = {0};
    yd_error err = {0};

    CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
    CHECK_INT_EQ(image.width, h);
    CHECK_INT_EQ(image.height, w);
    /* Rotated clockwise: the top-left pixel is the stored bottom-left one. */
    if (image.rgb)
        CHECK(memcmp(image.rgb, rgba + (size_t)(h - 1) * w * 4, 3) == 0);
    yd_image_free(&image);
    free(png.data);
    free(rgba);
}

/* ---------------------------------------------------------- robustness */

/* Any outcome but a crash is fine; an image must have a sane size. */
static void check_decode_survives(const uint8_t *data, size_t size, int *decoded, int *failed)
{
    yd_image image = {0};
    yd_error err = {0};
    int rc = yd_image_decode(data, size, 1 << 22, &image, &err);

    if (rc == YD_OK) {
        CHECK(image.rgb != NULL);
        CHECK(image.width > 0);
        CHECK(image.height > 0);
        CHECK((uint64_t)image.width * image.height <= 1 << 22);
        (*decoded)++;
    } else {
        CHECK(rc == YD_ERR_IMAGE_CORRUPT || rc == YD_ERR_IMAGE_UNSUPPORTED ||
              rc == YD_ERR_IMAGE_EMPTY || rc == YD_ERR_IMAGE_TOO_LARGE);
        CHECK(err.message[0] != '\0');
        CHECK(image.rgb == NULL);
        (*failed)++;
    }
    yd_image_free(&image);
}

static void test_jpeg_every_truncation(void)
{
    size_t size;
    uint8_t *data = read_file_or_die(shared_path("images/odd/bus_16x16_tiny.jpg"), &size);
    yd_image image = {0};
    yd_error err = {0};
    int decoded = 0, failed = 0;

    for (size_t len = 0; len < size; len++)
        check_decode_survives(data, len, &decoded, &failed);

    /* Only the cuts inside the final EOI marker leave complete pixels. */
    CHECK_INT_EQ(decoded, 2);
    CHECK_INT_EQ(failed, (int)size - 2);
    CHECK_INT_EQ(yd_image_decode(data, size / 2, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
    CHECK(strstr(err.message, "truncated") != NULL);
    CHECK_INT_EQ(yd_image_decode(data, 40, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
    CHECK(strstr(err.message, "truncated") != NULL);
    free(data);
}

/*
 * A baseline JPEG whose scan stops early and is closed by an EOI marker is
 * truncated, however large its header says it is: bus.jpg cut 10 bytes and
 * 20000 bytes into its scan, and the same with a 7000x7000 header.
 */
static void test_jpeg_scan_ended_by_eoi(void)
{
    size_t size;
    uint8_t *data = read_file_or_die(shared_path("images/bus.jpg"), &size);
    static const size_t cuts[] = {10, 20000};
    size_t sos = 0, sof = 0;

    for (size_t i = 2; i + 4 <= size && !sos; i++) {
        if (data[i] == 0xff && data[i + 1] == 0xc0)
            sof = i;
        if (data[i] == 0xff && data[i + 1] == 0xda)
            sos = i;
    }
    CHECK(sos > 0);
    CHECK(sof > 0);
    for (int large = 0; large <= 1; large++) {
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            size_t scan = sos + 2 + ((size_t)data[sos + 2] << 8 | data[sos + 3]);
            size_t len = scan + cuts[k];
            uint8_t *cut = malloc(len + 2);
            yd_image image = {0};
            yd_error err = {0};

            memcpy(cut, data, len);
            cut[len] = 0xff;
            cut[len + 1] = 0xd9;
            if (large) {
                /* SOF: marker, length, precision, then height and width. */
                cut[sof + 5] = cut[sof + 7] = 7000 >> 8;
                cut[sof + 6] = cut[sof + 8] = 7000 & 0xff;
            }
            CHECK_INT_EQ(yd_image_decode(cut, len + 2, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
            CHECK(strstr(err.message, "truncated") != NULL);
            CHECK(strstr(err.message, "EOI") != NULL);
            yd_image_free(&image);
            free(cut);
        }
    }
    free(data);
}

struct jpeg_scan {
    size_t start;  /* offset of the SOS marker */
    size_t length; /* SOS segment and entropy-coded data */
    int ss, ah_al; /* spectral start, successive approximation byte */
};

/* Lists the scans of a JPEG by walking its markers; returns the count. */
static int find_scans(const uint8_t *data, size_t size, struct jpeg_scan *scans, int max)
{
    size_t i = 2;
    int count = 0;

    while (i + 4 <= size && data[i] == 0xff) {
        int marker = data[i + 1];
        size_t length = (size_t)data[i + 2] << 8 | data[i + 3];

        if (marker == 0xd9)
            break;
        if (marker != 0xda) {
            i += 2 + length;
            continue;
        }
        size_t end = i + 2 + length;

        /* Entropy-coded data ends at the first marker other than RSTn. */
        while (end + 1 < size &&
               !(data[end] == 0xff && data[end + 1] != 0 && (data[end + 1] & 0xf8) != 0xd0))
            end++;
        if (count < max) {
            int components = data[i + 4];

            scans[count].start = i;
            scans[count].length = end - i;
            scans[count].ss = data[i + 5 + 2 * components];
            scans[count].ah_al = data[i + 7 + 2 * components];
        }
        count++;
        i = end;
    }
    return count;
}

/*
 * A progressive file cut at the start of any scan decodes without a Huffman
 * warning, yet later scans are missing, so it must count as truncated. A
 * file that lacks only its EOI marker is complete.
 */
static void test_progressive_jpeg_missing_scans(void)
{
    size_t size;
    uint8_t *data = read_file_or_die(shared_path("images/odd/bus_progressive.jpg"), &size);
    yd_image image = {0}, full = {0};
    yd_error err = {0};
    struct jpeg_scan scans[32];
    int count = find_scans(data, size, scans, 32);

    CHECK_OK(yd_image_decode(data, size, 0, &full, &err));
    CHECK(count >= 5);
    CHECK(count <= 32);
    for (int i = 0; i < count && i < 32; i++) {
        CHECK_INT_EQ(yd_image_decode(data, scans[i].start, 0, &image, &err),
                     YD_ERR_IMAGE_CORRUPT);
        CHECK(strstr(err.message, "truncated") != NULL);
        CHECK(image.rgb == NULL);
    }
    printf("     bus_progressive.jpg: %d scans, each cut before a scan rejected\n", count);

    /* The same cuts closed with an EOI marker are truncated too. */
    for (int i = 1; i < count && i < 32; i++) {
        uint8_t *cut = malloc(scans[i].start + 2);

        memcpy(cut, data, scans[i].start);
        cut[scans[i].start] = 0xff;
        cut[scans[i].start + 1] = 0xd9;
        CHECK_INT_EQ(yd_image_decode(cut, scans[i].start + 2, 0, &image, &err),
                     YD_ERR_IMAGE_CORRUPT);
        CHECK(strstr(err.message, "EOI") != NULL);
        CHECK(image.rgb == NULL);
        free(cut);
    }

    CHECK_OK(yd_image_decode(data, size - 2, 0, &image, &err));
    CHECK_INT_EQ(max_abs_diff(&image, &full), 0);
    yd_image_free(&image);
    yd_image_free(&full);
    free(data);
}

/*
 * Repeats the DC refinement scan of the progressive sample `copies` times
 * (libjpeg warns about the bogus progression and goes on).
 */
static uint8_t *repeat_dc_refinement(const uint8_t *data, size_t size, int copies,
                                     size_t *out_size)
{
    struct jpeg_scan scans[32];
    int count = find_scans(data, size, scans, 32);
    const struct jpeg_scan *dc = NULL;
    uint8_t *out;
    size_t at;

    for (int i = 0; i < count && i < 32; i++)
        if (scans[i].ss == 0 && scans[i].ah_al == 0x10)
            dc = &scans[i];
    if (!dc) {
        fprintf(stderr, "FATAL: bus_progressive.jpg has no DC refinement scan\n");
        exit(2);
    }
    at = dc->start + dc->length;
    *out_size = size + (size_t)copies * dc->length;
    out = malloc(*out_size);
    memcpy(out, data, at);
    for (int k = 0; k < copies; k++)
        memcpy(out + at + (size_t)k * dc->length, data + dc->start, dc->length);
    memcpy(out + at + (size_t)copies * dc->length, data + at, size - at);
    return out;
}

/* A progressive file with more than 500 scans is rejected; one with 110 decodes. */
static void test_progressive_jpeg_scan_limit(void)
{
    size_t size, many_size;
    uint8_t *data = read_file_or_die(shared_path("images/odd/bus_progressive.jpg"), &size);
    uint8_t *many;
    yd_image image = {0};
    yd_error err = {0};

    many = repeat_dc_refinement(data, size, 100, &many_size);
    CHECK_OK(yd_image_decode(many, many_size, 0, &image, &err));
    CHECK_INT_EQ(image.width, 810);
    yd_image_free(&image);
    free(many);

    many = repeat_dc_refinement(data, size, 500, &many_size);
    CHECK_INT_EQ(yd_image_decode(many, many_size, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
    CHECK(strstr(err.message, "500 scans") != NULL);
    CHECK(image.rgb == NULL);
    free(many);
    free(data);
}

static void test_png_every_truncation(void)
{
    const int w = 37, h = 23;
    uint8_t *rgba = make_rgba_samples(w, h);
    int decoded = 0, failed = 0;
    yd_image image = {0};
    yd_error err = {0};

    for (int interlaced = 0; interlaced <= 1; interlaced++) {
        struct png_buffer png = encode_png(rgba, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, interlaced,
                                           NULL, 0, NULL, 0);

        decoded = failed = 0;
        for (size_t len = 0; len < png.size; len++)
            check_decode_survives(png.data, len, &decoded, &failed);
        /* Without its IEND chunk a PNG is incomplete, so every cut fails. */
        CHECK_INT_EQ(decoded, 0);
        CHECK_INT_EQ(failed, (int)png.size);
        CHECK_INT_EQ(yd_image_decode(png.data, png.size - 20, 0, &image, &err),
                     YD_ERR_IMAGE_CORRUPT);
        CHECK(strstr(err.message, "truncated") != NULL);
        CHECK_OK(yd_image_decode(png.data, png.size, 0, &image, &err));
        yd_image_free(&image);
        free(png.data);
    }
    free(rgba);
}

/* CRC-32 as PNG chunks use it (ISO 3309, reflected polynomial 0xedb88320). */
static uint32_t png_crc32(const uint8_t *bytes, size_t length)
{
    uint32_t crc = 0xffffffffu;

    for (size_t i = 0; i < length; i++) {
        crc ^= bytes[i];
        for (int bit = 0; bit < 8; bit++)
            crc = crc >> 1 ^ (0xedb88320u & -(crc & 1));
    }
    return crc ^ 0xffffffffu;
}

/* Recomputes the CRC of every chunk, so a changed byte reaches the chunk's parser. */
static void png_fix_crcs(uint8_t *png, size_t size)
{
    size_t offset = 8;

    while (offset + 12 <= size) {
        uint32_t length = (uint32_t)png[offset] << 24 | png[offset + 1] << 16 |
                          png[offset + 2] << 8 | png[offset + 3];
        uint32_t crc;

        if (length > size - offset - 12)
            return;
        crc = png_crc32(png + offset + 4, length + 4);
        png[offset + 8 + length] = (uint8_t)(crc >> 24);
        png[offset + 9 + length] = (uint8_t)(crc >> 16);
        png[offset + 10 + length] = (uint8_t)(crc >> 8);
        png[offset + 11 + length] = (uint8_t)crc;
        offset += 12 + length;
    }
}

/*
 * A chunk that declares 2^31 - 1 bytes in a 141-byte file is rejected
 * before libpng allocates its length: peak memory grows by far less.
 */
static void test_png_huge_chunk_length(void)
{
    uint8_t png[141] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t ihdr[17] = {'I', 'H', 'D', 'R', 0, 0, 0, 16, 0, 0, 0, 16, 8, 2, 0, 0, 0};
    static const uint8_t huge[8] = {0x7f, 0xff, 0xff, 0xff, 't', 'E', 'X', 't'};
    uint32_t crc = png_crc32(ihdr, sizeof ihdr);
    struct rusage before, after;
    yd_image image = {0};
    yd_error err = {0};

    png[11] = 13; /* IHDR length */
    memcpy(png + 12, ihdr, sizeof ihdr);
    png[29] = (uint8_t)(crc >> 24);
    png[30] = (uint8_t)(crc >> 16);
    png[31] = (uint8_t)(crc >> 8);
    png[32] = (uint8_t)crc;
    memcpy(png + 33, huge, sizeof huge);
    memset(png + 41, 'a', sizeof png - 41);

    getrusage(RUSAGE_SELF, &before);
    CHECK_INT_EQ(yd_image_decode(png, sizeof png, 0, &image, &err), YD_ERR_IMAGE_CORRUPT);
    getrusage(RUSAGE_SELF, &after);
    CHECK(strstr(err.message, "declares 2147483647 bytes") != NULL);
    /* ru_maxrss is in kilobytes. */
    CHECK(after.ru_maxrss - before.ru_maxrss < 64 * 1024);
}

/* Single-byte changes at every offset, with several values each. */
static void test_byte_flips_never_crash(void)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    size_t jpeg_size;
    uint8_t *jpeg = read_file_or_die(shared_path("images/odd/bus_16x16_tiny.jpg"), &jpeg_size);
    uint8_t *rgba = make_rgba_samples(13, 7);
    struct png_buffer png = encode_png(rgba, 13, 7, PNG_COLOR_TYPE_RGB_ALPHA, 8, 1, NULL, 0,
                                       NULL, 0);
    int decoded = 0, failed = 0;

    for (size_t i = 0; i < jpeg_size; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            jpeg[i] ^= masks[m];
            check_decode_survives(jpeg, jpeg_size, &decoded, &failed);
            jpeg[i] ^= masks[m];
        }
    printf("     JPEG: %zu flipped files, %d decoded, %d rejected\n", jpeg_size * sizeof masks,
           decoded, failed);
    CHECK(failed > 0);
    CHECK(decoded > 0);

    /* With the CRCs fixed, the changes reach the IHDR, zlib and filter code. */
    uint8_t *copy = malloc(png.size);

    decoded = failed = 0;
    for (size_t i = 8; i < png.size; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            memcpy(copy, png.data, png.size);
            copy[i] ^= masks[m];
            png_fix_crcs(copy, png.size);
            check_decode_survives(copy, png.size, &decoded, &failed);
        }
    printf("     PNG: %zu flipped files, %d decoded, %d rejected\n",
           (png.size - 8) * sizeof masks, decoded, failed);
    CHECK(failed > 0);
    CHECK(decoded > 0);
    free(copy);

    free(png.data);
    free(rgba);
    free(jpeg);
}

int main(void)
{
    shared_dir();

    RUN(test_sniff_magic_bytes);
    RUN(test_sniff_short_signatures);
    RUN(test_decode_bare_signature_truncated);
    RUN(test_load_rejects_fifo);
    RUN(test_load_fd_reads_pipe);
    RUN(test_decode_rejects_non_images);
    RUN(test_letterbox_geometry_table);
    RUN(test_letterbox_bus_matches_reference);
    RUN(test_letterbox_zidane_matches_reference);
    RUN(test_letterbox_resize_near_float_bilinear);
    RUN(test_letterbox_tiny_and_exact_sizes);
    RUN(test_letterbox_large_and_panorama);
    RUN(test_odd_images);
    RUN(test_pixel_limit_checked_from_header);
    RUN(test_jpeg_side_above_libjpeg_limit);
    RUN(test_exif_orientation_parser);
    RUN(test_orientation_transforms);
    RUN(test_png_colour_types);
    RUN(test_png_exif_orientation);
    RUN(test_jpeg_every_truncation);
    RUN(test_jpeg_scan_ended_by_eoi);
    RUN(test_progressive_jpeg_missing_scans);
    RUN(test_progressive_jpeg_scan_limit);
    RUN(test_png_every_truncation);
    RUN(test_png_huge_chunk_length);
    RUN(test_byte_flips_never_crash);
    return TEST_SUMMARY();
}
