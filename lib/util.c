/*
 * Error reporting and the library's log sink.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

const char *yd_file_type_name(mode_t mode)
{
    if (S_ISREG(mode))
        return "a regular file";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a special file";
}

int yd_open_regular_file(const char *path, yd_error *err)
{
    /* O_NONBLOCK makes open() return at once on a FIFO without a writer,
     * and it has no effect on reading a regular file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;

    if (fd < 0)
        return yd_error_set(err, YD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int stat_error = errno;

        close(fd);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %s", path, strerror(stat_error));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %s", path, strerror(EISDIR));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': it is %s, not a regular file", path,
                            yd_file_type_name(st.st_mode));
    }
    return fd;
}

int yd_read_file(const char *path, uint8_t **data, size_t *size, yd_error *err)
{
    int fd = yd_open_regular_file(path, err);
    struct stat st;
    uint8_t *buf;
    size_t done = 0, expected;
    int read_error = 0;

    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0) {
        read_error = errno;
        close(fd);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %s", path, strerror(read_error));
    }
    expected = (size_t)st.st_size;
    buf = malloc(expected > 0 ? expected : 1);
    if (!buf) {
        close(fd);
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory reading '%s' (%zu bytes)", path,
                            expected);
    }
    while (done < expected) {
        ssize_t got = read(fd, buf + done, expected - done);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            read_error = errno;
        if (got <= 0)
            break;
        done += (size_t)got;
    }
    close(fd);
    if (done != expected) {
        free(buf);
        if (read_error)
            return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %s", path, strerror(read_error));
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': the file shrank while it was read",
                            path);
    }
    *data = buf;
    *size = expected;
    return YD_OK;
}
