/*
 * Watches a directory with inotify and calls back, on its own thread, once
 * the directory has been quiet for a moment after a model file in it was
 * closed after writing, renamed in or out, or deleted, or appeared as a
 * link. Several events in a burst (a copy, then a rename) give one call.
 * When the directory itself is removed or renamed, its path is looked for
 * every second and watched again (with one call) once it is back. When the
 * directory is given as a symbolic link, pointing the link at another
 * folder moves the watch there (with one call).
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

/*
 * Whether the model file `name` (no folder) in the watched directory is
 * still being written: written to or created, not closed, renamed or
 * deleted since, still the same file, and written less than 5 s ago. A
 * rescan skips such a file; its close, or those 5 s passing, sets off
 * another. Reads the pending events first, so it may be called from any
 * thread. False for a NULL watch.
 */
bool watch_is_writing(struct watch *watch, const char *name);

/* Turns the callback off (events are dropped) or back on, without stopping the thread. */
void watch_set_enabled(struct watch *watch, bool enabled);

#endif /* YOLOD_DAEMON_WATCH_H */
