/*
 * Watches a directory with inotify and calls back, on its own thread, once
 * the directory has been quiet for a moment after a model file in it was
 * created, closed after writing, renamed in or out, or deleted. Several
 * events in a burst (a copy, then a rename) give one call. When the
 * directory itself is removed or renamed, its path is looked for every
 * second and watched again (with one call) once it is back.
 * NOTE: a symbolic link given as the directory is resolved once; pointing
 * the link elsewhere later is not noticed.
 */
#ifndef YOLOD_DAEMON_WATCH_H
#define YOLOD_DAEMON_WATCH_H

#include "yolod.h"

struct watch;

/* Called on the watch thread; calls never overlap. */
typedef void (*watch_fn)(void *user);

int watch_start(const char *dir, watch_fn on_change, void *user, struct watch **out,
                yd_error *err);

/* Stops the thread (waiting for a call in progress) and frees the watch; NULL is fine. */
void watch_stop(struct watch *watch);

/* Turns the callback off (events are dropped) or back on, without stopping the thread. */
void watch_set_enabled(struct watch *watch, bool enabled);

#endif /* YOLOD_DAEMON_WATCH_H */
