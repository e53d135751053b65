/*
 * libyolod: YOLOv8 object detection on the CPU, without HTTP.
 *
 * A program loads a model once (yd_model), creates one session per worker
 * thread (yd_session: the activation arena and scratch buffers, so inference
 * allocates nothing), decodes images (yd_image) and runs yd_detect() on them.
 *
 * Errors: every fallible function returns 0 or a negative YD_ERR_* code and,
 * when the caller passes a yd_error, a message that names the failing value.
 * The library never prints and never exits; it reports through the optional
 * log callback.
 */
#ifndef YOLOD_H
#define YOLOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

enum {
    YD_OK = 0,
    YD_ERR_INVALID_ARGUMENT = -1,  /* a parameter is out of range */
    YD_ERR_NO_MEMORY = -2,
    YD_ERR_IO = -3,                /* a file could not be opened or read */
    YD_ERR_MODEL_FORMAT = -4,      /* the model file is malformed */
    YD_ERR_MODEL_UNSUPPORTED = -5, /* valid file, but an op or shape we do not run */
    YD_ERR_IMAGE_EMPTY = -6,       /* zero-byte image */
    YD_ERR_IMAGE_UNSUPPORTED = -7, /* not JPEG or PNG */
    YD_ERR_IMAGE_CORRUPT = -8,     /* JPEG or PNG that fails to decode */
    YD_ERR_IMAGE_TOO_LARGE = -9,   /* pixel count above the caller's limit */
    YD_ERR_INTERNAL = -10,
};

typedef struct yd_error {
    int code;
    char message[512];
} yd_error;

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
int yd_error_set(yd_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns a short constant name for a YD_ERR_* code ("image_corrupt", ...). */
const char *yd_error_name(int code);

/* ----------------------------------------------------------------- logging */

enum { YD_LOG_DEBUG = 0, YD_LOG_INFO = 1, YD_LOG_WARN = 2, YD_LOG_ERROR = 3 };

typedef void (*yd_log_fn)(int level, const char *message, void *user);

/* Installs the library's log sink; NULL silences it (the default). */
void yd_set_log_callback(yd_log_fn fn, void *user);

/* ------------------------------------------------------------------ images */

typedef enum yd_image_format {
    YD_IMAGE_UNKNOWN = 0,
    YD_IMAGE_JPEG,
    YD_IMAGE_PNG,
} yd_image_format;

/* An 8-bit RGB image, rows top to bottom, EXIF orientation already applied. */
typedef struct yd_image {
    int width;
    int height;
    uint8_t *rgb; /* width * height * 3 bytes, interleaved R, G, B */
} yd_image;

/* Detects the format from the first bytes; never reads past size. */
yd_image_format yd_image_sniff(const void *data, size_t size);

/*
 * Returns YD_OK when the first bytes are those of a JPEG or PNG, else the
 * error decoding would give: YD_ERR_IMAGE_UNSUPPORTED naming the format
 * when known (WebP, GIF, ...), or YD_ERR_IMAGE_CORRUPT for a broken JPEG start.
 */
int yd_image_check_format(const void *data, size_t size, yd_error *err);

/*
 * Decodes a JPEG or PNG held in memory into 8-bit RGB. Grayscale, CMYK/YCCK,
 * palette, alpha and 16-bit inputs are converted; EXIF orientation is
 * applied. max_pixels (0 = no limit) is checked against the header before the
 * pixel buffer is allocated. Errors: YD_ERR_IMAGE_EMPTY, _UNSUPPORTED,
 * _CORRUPT, _TOO_LARGE, YD_ERR_NO_MEMORY.
 */
int yd_image_decode(const void *data, size_t size, uint64_t max_pixels,
                    yd_image *out, yd_error *err);

/*
 * Reads a whole regular file and decodes it as yd_image_decode() does. A
 * FIFO, device or socket is rejected with YD_ERR_IO without waiting for it.
 */
int yd_image_load(const char *path, uint64_t max_pixels, yd_image *out,
                  yd_error *err);

/*
 * Reads an encoded image from fd to end of file (a pipe, a FIFO or standard
 * input) and decodes it as yd_image_decode() does. A stream longer than
 * max_bytes fails with YD_ERR_IMAGE_TOO_LARGE, and one whose first bytes
 * are neither JPEG nor PNG with YD_ERR_IMAGE_UNSUPPORTED, before the rest
 * is read. name is how messages call the stream ("standard input", or a
 * quoted path). fd is left open.
 */
int yd_image_load_fd(int fd, const char *name, size_t max_bytes, uint64_t max_pixels,
                     yd_image *out, yd_error *err);

void yd_image_free(yd_image *image);

/* ---------------------------------------------------------------- letterbox */

/*
 * Geometry of the Ultralytics letterbox for a network input of
 * input_width x input_height: scale r, resized size, and integer padding on
 * each side.
 */
typedef struct yd_letterbox {
    int input_width, input_height;
    double r;
    int new_width, new_height;
    int top, bottom, left, right;
} yd_letterbox;

/* For a square input of side `size`. */
void yd_letterbox_compute(int width, int height, int size, yd_letterbox *lb);
void yd_letterbox_compute_rect(int width, int height, int input_width, int input_height,
                               yd_letterbox *lb);

/*
 * Resizes (OpenCV INTER_LINEAR, 8-bit fixed point) and pads with 114 into
 * `out`, an input_width * input_height * 3 RGB buffer. The resize is skipped when the size
 * does not change.
 */
int yd_letterbox_rgb8(const yd_image *image, const yd_letterbox *lb,
                      uint8_t *out, yd_error *err);

/* ------------------------------------------------------------------ models */

typedef struct yd_model yd_model;
typedef struct yd_session yd_session;

typedef struct yd_model_options {
    int input_size; /* 0: take it from the file; else the square side it must have */
    /* 1: free the source weights once they are packed for the kernels,
     * about a third of a float model's memory. The model still runs, but
     * cannot be pruned, quantized or repacked (yolod compress needs them). */
    int serve_only;
    /* 1: int8 layers always run the int8 kernels, as compressing needs.
     * 0: where the int8 kernels are slower than the fp32 ones (CPUs
     * without VNNI), int8 layers run the fp32 kernels on their weights
     * dequantized at load, so an int8 file is never slower than fp32.
     * Activations are then not quantized, so outputs differ slightly. */
    int exact_int8;
} yd_model_options;

/*
 * Loads a model file: an ONNX export of Ultralytics YOLOv8 or a .yolod file
 * from `yolod compress`, detected from their first bytes. The returned model is
 * immutable and may be shared by any number of sessions on any threads.
 */
int yd_model_load(const char *path, const yd_model_options *options,
                  yd_model **out, yd_error *err);

/* Drops one reference; the model is freed when the last one goes. */
void yd_model_release(yd_model *model);
yd_model *yd_model_retain(yd_model *model);

/* Network input in pixels; yd_model_input_size is the width. */
int yd_model_input_size(const yd_model *model);
int yd_model_input_width(const yd_model *model);
int yd_model_input_height(const yd_model *model);
int yd_model_class_count(const yd_model *model);
const char *yd_model_class_name(const yd_model *model, int class_id);
const char *yd_model_name(const yd_model *model); /* file stem */
const char *yd_model_path(const yd_model *model);
/* "fp32" for an ONNX file; the variant a .yolod file was compressed to. */
const char *yd_model_variant(const yd_model *model);

/* Multiply-accumulate count of one inference, times two. */
double yd_model_flops(const yd_model *model);

/* ---------------------------------------------------------------- sessions */

/*
 * Creates the per-worker state: activation arena and head scratch. `threads`
 * is the OpenMP thread count used by this session's inferences (0 = all
 * cores).
 */
int yd_session_create(yd_model *model, int threads, yd_session **out,
                      yd_error *err);
void yd_session_destroy(yd_session *session);

/*
 * Memory that sessions which never run at the same time can share: the
 * activation arena and the int8 and Winograd scratch, sized for the largest
 * session created in it (or still in it, after yd_workspace_fit). A server worker that keeps a session per model
 * variant needs one arena, not one per variant. The caller must not run
 * two sessions of one workspace at once, and destroys the workspace after
 * its last session.
 */
typedef struct yd_workspace yd_workspace;

int yd_workspace_create(yd_workspace **out, yd_error *err);
void yd_workspace_destroy(yd_workspace *workspace);

/*
 * Shrinks `workspace` to what the `count` sessions still created in it
 * need, giving back what only destroyed sessions needed. Call it between
 * runs, after destroying sessions.
 */
int yd_workspace_fit(yd_workspace *workspace, yd_session *const *sessions, int count,
                     yd_error *err);

/* yd_session_create, with the large buffers taken from `workspace`. */
int yd_session_create_in(yd_model *model, int threads, yd_workspace *workspace,
                         yd_session **out, yd_error *err);

/*
 * Runs one inference on a blank image, so the OpenMP threads and caches of
 * the calling thread are set up before the first real request. Call it from
 * the thread that will run the session's detections.
 */
void yd_session_warm_up(yd_session *session);

/* ---------------------------------------------------------------- detection */

typedef struct yd_box {
    float x1, y1, x2, y2;
} yd_box;

typedef struct yd_detection {
    int class_id;
    float confidence;
    yd_box box;
} yd_detection;

typedef struct yd_detect_params {
    float conf;            /* keep scores strictly greater than this */
    float iou;             /* NMS IoU threshold */
    int max_det;           /* detections kept after NMS */
    bool multi_label;      /* eval mode: every class above conf per anchor */
    const uint8_t *classes; /* NULL or class_count flags: keep class i if set */
} yd_detect_params;

/* conf 0.25, iou 0.7, max_det 300, best class per anchor, all classes. */
void yd_detect_params_default(yd_detect_params *params);

typedef struct yd_timings {
    double preprocess_ms; /* letterbox and tensor fill */
    double inference_ms;  /* network */
    double postprocess_ms; /* head decode, NMS, scaling back */
} yd_timings;

typedef struct yd_result {
    int image_width, image_height;
    int count;
    yd_detection *detections; /* owned by the result, highest confidence first */
    yd_timings timings;
} yd_result;

/* Runs the whole pipeline on one decoded image. */
int yd_detect(yd_session *session, const yd_image *image,
              const yd_detect_params *params, yd_result *result, yd_error *err);

void yd_result_free(yd_result *result);

#ifdef __cplusplus
}
#endif

#endif /* YOLOD_H */
