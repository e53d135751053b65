/*
 * Error reporting and the library's log sink.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static yd_log_fn log_fn;
static void *log_user;

int yd_error_set(yd_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

const char *yd_error_name(int code)
{
    switch (code) {
    case YD_OK: return "ok";
    case YD_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case YD_ERR_NO_MEMORY: return "out_of_memory";
    case YD_ERR_IO: return "io_error";
    case YD_ERR_MODEL_FORMAT: return "model_format";
    case YD_ERR_MODEL_UNSUPPORTED: return "model_unsupported";
    case YD_ERR_IMAGE_EMPTY: return "empty_body";
    case YD_ERR_IMAGE_UNSUPPORTED: return "unsupported_media_type";
    case YD_ERR_IMAGE_CORRUPT: return "undecodable_image";
    case YD_ERR_IMAGE_TOO_LARGE: return "image_too_large";
    default: return "internal_error";
    }
}

void yd_set_log_callback(yd_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void yd_log(int level, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    if (!log_fn)
        return;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    log_fn(level, message, log_user);
}

double yd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

int yd_read_file(const char *path, uint8_t **data, size_t *size, yd_error *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf = NULL;
    long n;

    if (!f)
        return yd_error_set(err, YD_ERR_IO, "cannot open '%s': %m", path);
    /* fopen() opens a directory for reading, and ftell() then gives LONG_MAX. */
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %s", path, strerror(EISDIR));
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %m", path);
    }
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf) {
        fclose(f);
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory reading '%s' (%ld bytes)", path, n);
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return yd_error_set(err, YD_ERR_IO, "short read on '%s'", path);
    }
    fclose(f);
    *data = buf;
    *size = (size_t)n;
    return YD_OK;
}
