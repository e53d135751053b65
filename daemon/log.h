/*
 * Daemon logging: one line per event on stderr, "LEVEL message", filtered by
 * a minimum level. The library's log callback feeds the same sink.
 */
#ifndef YOLOD_DAEMON_LOG_H
#define YOLOD_DAEMON_LOG_H

#include "yolod.h"

/* Sets the minimum level written (YD_LOG_DEBUG .. YD_LOG_ERROR). */
void log_set_level(int level);

/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_parse_level(const char *name);

/* Writes one line at `level` unless the level is below the minimum. */
void log_printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* yd_log_fn that forwards library messages to log_printf. */
void log_library_message(int level, const char *message, void *user);

#endif /* YOLOD_DAEMON_LOG_H */
