/*
 * Directory watch. The thread polls the inotify descriptor and an eventfd
 * that watch_stop writes. After a relevant event it keeps reading until
 * QUIET_MS pass without one, then calls back once. When the directory path
 * is a symbolic link, its parent is watched too, so a deploy that points the
 * link at another folder moves the watch there.
 *
 * The thread also keeps the names of the model files that are open for
 * writing: written to (IN_MODIFY) or newly created, and not yet closed
 * (IN_CLOSE_WRITE), renamed or deleted. A rescan that another file set off
 * skips them (watch_is_writing), so it never loads a file half written.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "watch.h"

/* Long enough to join a write-then-rename burst, short enough to feel immediate. */
#define QUIET_MS 300
/* How often a removed directory is looked for again. */
#define REWATCH_MS 1000
#define WATCH_MASK (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
                    IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
/* Events after which a name is no longer open for writing. */
#define WRITTEN_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)
/* Events in the parent folder that point the link at a new target. */
#define LINK_MASK (IN_CREATE | IN_MOVED_TO)

struct watch {
    int inotify_fd, stop_fd;
    int wd;                  /* the directory's watch, -1 while it is gone */
    int link_wd;             /* the parent folder's watch when dir is a link, else -1 */
    char *link_name;         /* the link's name in its parent folder */
    pthread_t thread;
    watch_fn on_change;
    void *user;
    atomic_bool enabled;
    char *dir;
    /* Names of model files open for writing; the lock guards them. */
    pthread_mutex_t writing_lock;
    char **writing;
    int nwriting, writing_capacity;
};

/* Index of name in watch->writing, or -1. Caller holds writing_lock. */
static int find_writing(const struct watch *watch, const char *name)
{
    for (int i = 0; i < watch->nwriting; i++)
        if (strcmp(watch->writing[i], name) == 0)
            return i;
    return -1;
}

/* Records name as open for writing (open) or not (!open). */
static void set_writing(struct watch *watch, const char *name, bool open)
{
    int at;

    pthread_mutex_lock(&watch->writing_lock);
    at = find_writing(watch, name);
    if (!open && at >= 0) {
        free(watch->writing[at]);
        watch->writing[at] = watch->writing[--watch->nwriting];
    } else if (open && at < 0) {
        char *copy = strdup(name);

        if (copy && watch->nwriting == watch->writing_capacity) {
            int capacity = watch->writing_capacity ? 2 * watch->writing_capacity : 8;
            char **grown = realloc(watch->writing, (size_t)capacity * sizeof *grown);

            if (grown) {
                watch->writing = grown;
                watch->writing_capacity = capacity;
            }
        }
        /* Out of memory, the name is not kept, and a rescan may load the file early. */
        if (copy && watch->nwriting < watch->writing_capacity)
            watch->writing[watch->nwriting++] = copy;
        else
            free(copy);
    }
    pthread_mutex_unlock(&watch->writing_lock);
}

/* Forgets every name: after lost events, or when the directory changes. */
static void clear_writing(struct watch *watch)
{
    pthread_mutex_lock(&watch->writing_lock);
    for (int i = 0; i < watch->nwriting; i++)
        free(watch->writing[i]);
    watch->nwriting = 0;
    pthread_mutex_unlock(&watch->writing_lock);
}

bool watch_is_writing(struct watch *watch, const char *name)
{
    bool found;

    if (!watch)
        return false;
    pthread_mutex_lock(&watch->writing_lock);
    found = find_writing(watch, name) >= 0;
    pthread_mutex_unlock(&watch->writing_lock);
    return found;
}

/*
 * Moves the directory's watch to the link's new target and returns whether
 * it is watched. If not, the thread tries again every REWATCH_MS.
 */
static bool relink(struct watch *watch)
{
    if (watch->wd >= 0)
        inotify_rm_watch(watch->inotify_fd, watch->wd);
    clear_writing(watch);
    watch->wd = inotify_add_watch(watch->inotify_fd, watch->dir, WATCH_MASK);
    if (watch->wd < 0) {
        log_printf(YD_LOG_WARN, "model directory link %s changed, but watching its target"
                   " failed: %s; trying again every second", watch->dir, strerror(errno));
        return false;
    }
    log_printf(YD_LOG_INFO, "model directory link %s changed; watching its new target",
               watch->dir);
    return true;
}

/*
 * Returns whether a file that was just created is a regular file with one
 * link, as a writer creates one. Its IN_CLOSE_WRITE follows when the writer
 * closes it, and loading it before could read it half written. A new
 * symbolic or hard link gets no IN_CLOSE_WRITE, so it counts at once.
 */
static bool being_written(const struct watch *watch, const char *name)
{
    char path[PATH_MAX];
    struct stat st;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", watch->dir, name) >= sizeof path ||
        lstat(path, &st) != 0)
        return false;
    return S_ISREG(st.st_mode) && st.st_nlink == 1;
}

/* Reads the pending events; returns whether one concerns a model file, or -1 on error. */
static int read_events(struct watch *watch)
{
    char buffer[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool relevant = false;
    ssize_t length = read(watch->inotify_fd, buffer, sizeof buffer);

    if (length < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    for (char *at = buffer; at < buffer + length;) {
        const struct inotify_event *event = (const struct inotify_event *)at;

        if (event->mask & IN_Q_OVERFLOW) {
            /* Close events may be among the lost ones: a file is loaded
             * early rather than never. */
            clear_writing(watch);
            relevant = true;
        } else if (event->wd == watch->link_wd) {
            if (event->len > 0 && strcmp(event->name, watch->link_name) == 0 &&
                (event->mask & LINK_MASK) && relink(watch))
                relevant = true;
        } else if (event->len > 0 && event->name[0] != '.' &&
                   registry_has_model_extension(event->name)) {
            if (event->mask & WRITTEN_MASK)
                set_writing(watch, event->name, false);
            if ((event->mask & IN_MODIFY) ||
                ((event->mask & IN_CREATE) && being_written(watch, event->name)))
                set_writing(watch, event->name, true);
            else
                /* A misnamed model file counts too, so the sync warns about it at once. */
                relevant = true;
        }
        if (event->mask & (IN_DELETE_SELF | IN_MOVE_SELF) && watch->wd >= 0 &&
            event->wd == watch->wd) {
            /* The path no longer names the watched directory: watch the path again once it does. */
            log_printf(YD_LOG_WARN, "model directory %s was removed or renamed; watching for it"
                       " to come back", watch->dir);
            inotify_rm_watch(watch->inotify_fd, watch->wd);
            watch->wd = -1;
        }
        at += sizeof *event + event->len;
    }
    return relevant;
}

static void *watch_main(void *arg)
{
    struct watch *watch = arg;
    struct pollfd fds[2] = {
        { .fd = watch->inotify_fd, .events = POLLIN },
        { .fd = watch->stop_fd, .events = POLLIN },
    };
    bool pending = false;

    for (;;) {
        int timeout_ms = -1;
        int ready;

        if (pending)
            timeout_ms = QUIET_MS;
        else if (watch->wd < 0)
            timeout_ms = REWATCH_MS;
        ready = poll(fds, 2, timeout_ms);

        if (ready < 0 && errno != EINTR) {
            log_printf(YD_LOG_ERROR, "watching %s failed: %s", watch->dir, strerror(errno));
            break;
        }
        if (fds[1].revents)
            break;
        if (ready > 0 && fds[0].revents) {
            int relevant = read_events(watch);

            if (relevant < 0) {
                log_printf(YD_LOG_ERROR, "reading the watch of %s failed: %s", watch->dir,
                           strerror(errno));
                break;
            }
            pending = pending || relevant;
            continue;
        }
        if (ready == 0 && watch->wd < 0) {
            watch->wd = inotify_add_watch(watch->inotify_fd, watch->dir, WATCH_MASK);
            if (watch->wd >= 0) {
                log_printf(YD_LOG_INFO, "model directory %s is back; watching it again", watch->dir);
                pending = true;
            }
            continue;
        }
        if (ready == 0 && pending) {
            pending = false;
            if (atomic_load(&watch->enabled))
                watch->on_change(watch->user);
        }
    }
    return NULL;
}

/* Watches the parent folder of watch->dir when dir is a symbolic link. */
static int watch_link(struct watch *watch, yd_error *err)
{
    char *path = strdup(watch->dir), *parent_copy, *parent, *base;
    size_t length;
    struct stat st;
    int rc = YD_OK;

    if (!path)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory watching %s", watch->dir);
    /* "models/" would name the link's target, not the link. */
    length = strlen(path);
    while (length > 1 && path[length - 1] == '/')
        path[--length] = '\0';
    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode)) {
        free(path);
        return YD_OK;
    }
    /* dirname() and basename() may modify their argument, so each gets its own copy. */
    parent_copy = strdup(path);
    base = basename(path);
    watch->link_name = strdup(base);
    if (!parent_copy || !watch->link_name) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory watching %s", watch->dir);
        goto done;
    }
    parent = dirname(parent_copy);
    watch->link_wd = inotify_add_watch(watch->inotify_fd, parent, LINK_MASK);
    if (watch->link_wd < 0)
        rc = yd_error_set(err, YD_ERR_IO, "cannot watch %s, the folder of the link %s: %s",
                          parent, watch->dir, strerror(errno));
done:
    free(parent_copy);
    free(path);
    return rc;
}

int watch_start(const char *dir, watch_fn on_change, void *user, struct watch **out,
                yd_error *err)
{
    struct watch *watch = calloc(1, sizeof *watch);
    int rc;

    *out = NULL;
    if (!watch)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory watching %s", dir);
    watch->link_wd = -1;
    watch->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    watch->stop_fd = eventfd(0, EFD_CLOEXEC);
    watch->dir = strdup(dir);
    watch->on_change = on_change;
    watch->user = user;
    atomic_init(&watch->enabled, true);
    pthread_mutex_init(&watch->writing_lock, NULL);
    if (watch->inotify_fd < 0 || watch->stop_fd < 0 || !watch->dir) {
        rc = yd_error_set(err, YD_ERR_IO, "cannot watch %s: %s", dir, strerror(errno));
        goto fail;
    }
    watch->wd = inotify_add_watch(watch->inotify_fd, dir, WATCH_MASK);
    if (watch->wd < 0) {
        rc = yd_error_set(err, YD_ERR_IO, "cannot watch %s: %s", dir, strerror(errno));
        goto fail;
    }
    rc = watch_link(watch, err);
    if (rc < 0)
        goto fail;
    if (pthread_create(&watch->thread, NULL, watch_main, watch) != 0) {
        rc = yd_error_set(err, YD_ERR_INTERNAL, "cannot start the thread watching %s", dir);
        goto fail;
    }
    *out = watch;
    return YD_OK;

fail:
    if (watch->inotify_fd >= 0)
        close(watch->inotify_fd);
    if (watch->stop_fd >= 0)
        close(watch->stop_fd);
    pthread_mutex_destroy(&watch->writing_lock);
    free(watch->dir);
    free(watch->link_name);
    free(watch);
    return rc;
}

void watch_set_enabled(struct watch *watch, bool enabled)
{
    if (watch)
        atomic_store(&watch->enabled, enabled);
}

void watch_stop(struct watch *watch)
{
    uint64_t one = 1;

    if (!watch)
        return;
    if (write(watch->stop_fd, &one, sizeof one) != sizeof one)
        log_printf(YD_LOG_WARN, "cannot signal the watch thread: %s", strerror(errno));
    pthread_join(watch->thread, NULL);
    close(watch->inotify_fd);
    close(watch->stop_fd);
    clear_writing(watch);
    free(watch->writing);
    pthread_mutex_destroy(&watch->writing_lock);
    free(watch->dir);
    free(watch->link_name);
    free(watch);
}
