/*
 * Helpers shared by the library's modules: logging, clocks, file reading,
 * aligned allocation.
 */
#ifndef YOLOD_UTIL_H
#define YOLOD_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

#include "yolod.h"

/* Sends a formatted line to the installed log callback, if any. */
void yd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic clock in milliseconds. */
double yd_now_ms(void);

/*
 * Opens path read-only and checks that it is a regular file (a symbolic
 * link is judged by its target). The open does not wait for a FIFO's
 * writer, so a FIFO, device or socket is rejected at once instead of
 * blocking the caller. Returns the descriptor, or YD_ERR_IO with "cannot
 * open 'PATH': ...", "cannot read 'PATH': Is a directory" or "cannot read
 * 'PATH': it is a FIFO, not a regular file" in err.
 */
int yd_open_regular_file(const char *path, yd_error *err);

/* Names a file type for "it is ..., not a regular file" ("a FIFO"). */
const char *yd_file_type_name(mode_t mode);

/* Reads a whole regular file into a malloc'ed buffer. Other files are
 * rejected as yd_open_regular_file() rejects them. */
int yd_read_file(const char *path, uint8_t **data, size_t *size, yd_error *err);

/* v limited to [lo, hi]. */
static inline long yd_clamp_long(long v, long lo, long hi)
{
    if (v < lo)
        return lo;
    return v > hi ? hi : v;
}

#define YD_ALIGNMENT 64

/* 64-byte aligned allocation, size rounded up; free with free(). */
static inline void *yd_aligned_alloc(size_t size)
{
    size_t rounded = (size + YD_ALIGNMENT - 1) / YD_ALIGNMENT * YD_ALIGNMENT;

    return aligned_alloc(YD_ALIGNMENT, rounded ? rounded : YD_ALIGNMENT);
}

#endif /* YOLOD_UTIL_H */
