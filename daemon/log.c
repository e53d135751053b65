/*
 * The daemon's log sink. Each line is written with a single fprintf so lines
 * from concurrent connection and worker threads do not interleave (stdio
 * locks the stream per call). Messages carry client strings (paths, methods,
 * parameter values), so control characters and invalid UTF-8 are escaped:
 * a client cannot forge a line with an encoded newline.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "text.h"

/* Set by SIGHUP on the main thread while other threads log. */
static atomic_int min_level = YD_LOG_INFO;

static const char *level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(int level)
{
    min_level = level;
}

int log_parse_level(const char *name)
{
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_printf(int level, const char *fmt, ...)
{
    char message[2048];
    char escaped[4096];
    char stamp[32];
    struct timespec now;
    struct tm utc;
    va_list ap;

    if (level < min_level)
        return;
    if (level < YD_LOG_DEBUG || level > YD_LOG_ERROR)
        level = YD_LOG_ERROR;

    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, now.tv_nsec / 1000000L,
            level_names[level], text_escape_log(escaped, sizeof escaped, message));
}

void log_library_message(int level, const char *message, void *user)
{
    log_printf(level, "%s", message);
}
