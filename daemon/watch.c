/*
 * Directory watch. The thread polls the inotify descriptor and an eventfd
 * that watch_stop writes. After a relevant event it keeps reading until
 * QUIET_MS pass without one, then calls back once. When the directory path
 * is a symbolic link, its parent is watched too, so a deploy that points the
 * link at another folder moves the watch there.
 *
 * The thread also keeps the model files that are open for writing: written
 * to (IN_MODIFY) or newly created, and not yet closed (IN_CLOSE_WRITE),
 * renamed or deleted. A rescan, set off by another file or by SIGHUP, skips
 * them (watch_is_writing), so it does not load a file half written.
 *
 * Events alone do not show when every writer is gone: truncate(2) by path
 * and a linked O_TMPFILE send no close for the name, and events can be
 * lost. So a file counts as written only while its name keeps the inode it
 * had and for WRITING_TIMEOUT_MS after its last write. After that, a rescan
 * loads it.
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
#include "util.h"
#include "watch.h"

/* Long enough to join a write-then-rename burst, short enough to feel immediate. */
#define QUIET_MS 300
/* How often a removed directory is looked for again. */
#define REWATCH_MS 1000
/* How long after its last write a file without a close event counts as written. */
#define WRITING_TIMEOUT_MS 5000
#define WATCH_MASK (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
                    IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
/* Events after which a name is no longer open for writing. */
#define WRITTEN_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)
/* Events in the parent folder that point the link at a new target. */
#define LINK_MASK (IN_CREATE | IN_MOVED_TO)

/* A model file open for writing: its name, the file the name had then, and its last write. */
struct written_file {
    char *name;
    dev_t dev;
    ino_t ino;
    double last_ms;
};

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
    /* Held while reading events, which may move wd: the thread reads them,
     * and so does watch_is_writing() on the thread of a SIGHUP rescan. */
    pthread_mutex_t events_lock;
    atomic_bool missed;      /* watch_is_writing() read an event that calls for a rescan */
    /* Model files open for writing; the lock guards them. */
    pthread_mutex_t writing_lock;
    struct written_file *writing;
    int nwriting, writing_capacity;
};

/* Index of name in watch->writing, or -1. Caller holds writing_lock. */
static int find_writing(const struct watch *watch, const char *name)
{
    for (int i = 0; i < watch->nwriting; i++)
        if (strcmp(watch->writing[i].name, name) == 0)
            return i;
    return -1;
}

/* Removes entry `at`. Caller holds writing_lock. */
static void remove_writing(struct watch *watch, int at)
{
    free(watch->writing[at].name);
    watch->writing[at] = watch->writing[--watch->nwriting];
}

/* stat() of the directory's file `name`; -1 when it has none. */
static int stat_file(const struct watch *watch, const char *name, struct stat *st)
{
    char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof path, "%s/%s", watch->dir, name) >= sizeof path)
        return -1;
    return stat(path, st);
}

/* Appends an entry for name, the file st describes, written now. Caller holds writing_lock. */
static void add_writing(struct watch *watch, const char *name, const struct stat *st)
{
    char *copy = strdup(name);

    if (copy && watch->nwriting == watch->writing_capacity) {
        int capacity = watch->writing_capacity ? 2 * watch->writing_capacity : 8;
        struct written_file *grown = realloc(watch->writing, (size_t)capacity * sizeof *grown);

        if (grown) {
            watch->writing = grown;
            watch->writing_capacity = capacity;
        }
    }
    /* Out of memory, the name is not kept, and a rescan may load the file early. */
    if (!copy || watch->nwriting == watch->writing_capacity) {
        free(copy);
        return;
    }
    watch->writing[watch->nwriting++] = (struct written_file){
        .name = copy, .dev = st->st_dev, .ino = st->st_ino, .last_ms = yd_now_ms()};
}

/* Records that name was written to now (open), or closed, renamed or deleted (!open). */
static void set_writing(struct watch *watch, const char *name, bool open)
{
    struct stat st;
    int at;

    pthread_mutex_lock(&watch->writing_lock);
    at = find_writing(watch, name);
    if (!open) {
        if (at >= 0)
            remove_writing(watch, at);
    } else if (at >= 0) {
        /* The inode stays the first write's: a file put in its place comes
         * with a rename or delete event, which removes the entry. */
        watch->writing[at].last_ms = yd_now_ms();
    } else if (stat_file(watch, name, &st) == 0) {
        add_writing(watch, name, &st);
    }
    pthread_mutex_unlock(&watch->writing_lock);
}

/* Forgets every file: after lost events, or when the directory changes. */
static void clear_writing(struct watch *watch)
{
    pthread_mutex_lock(&watch->writing_lock);
    while (watch->nwriting > 0)
        remove_writing(watch, watch->nwriting - 1);
    pthread_mutex_unlock(&watch->writing_lock);
}

/*
 * Forgets the files last written WRITING_TIMEOUT_MS or more ago, and
 * returns whether there were any, so a rescan loads them. Sets *next_ms to
 * when the next one times out, or -1 when none is left.
 */
static bool expire_writing(struct watch *watch, double now_ms, double *next_ms)
{
    bool expired = false;

    *next_ms = -1;
    pthread_mutex_lock(&watch->writing_lock);
    for (int i = watch->nwriting - 1; i >= 0; i--) {
        double end = watch->writing[i].last_ms + WRITING_TIMEOUT_MS;

        if (end <= now_ms) {
            remove_writing(watch, i);
            expired = true;
        } else if (*next_ms < 0 || end < *next_ms) {
            *next_ms = end;
        }
    }
    pthread_mutex_unlock(&watch->writing_lock);
    return expired;
}

static int read_events(struct watch *watch, bool *relevant);

bool watch_is_writing(struct watch *watch, const char *name)
{
    struct stat st;
    bool relevant = false, written = false;
    int at;

    if (!watch)
        return false;
    /* Writes that began during this rescan are still queued: read them first. */
    pthread_mutex_lock(&watch->events_lock);
    while (read_events(watch, &relevant) > 0)
        continue;
    pthread_mutex_unlock(&watch->events_lock);
    if (relevant)
        atomic_store(&watch->missed, true);

    pthread_mutex_lock(&watch->writing_lock);
    at = find_writing(watch, name);
    if (at >= 0) {
        const struct written_file *f = &watch->writing[at];

        /* A writer that has the name's old file open, or has gone quiet,
         * does not hold back the file there now. */
        written = yd_now_ms() - f->last_ms < WRITING_TIMEOUT_MS &&
                  stat_file(watch, name, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino;
        if (!written)
            remove_writing(watch, at);
    }
    pthread_mutex_unlock(&watch->writing_lock);
    return written;
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

/*
 * Reads one buffer of pending events and sets *relevant when one calls for
 * a rescan. Returns the bytes read, 0 when none was pending, or -1 on
 * error. Caller holds events_lock.
 */
static int read_events(struct watch *watch, bool *relevant)
{
    char buffer[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t length = read(watch->inotify_fd, buffer, sizeof buffer);

    if (length < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    for (char *at = buffer; at < buffer + length;) {
        const struct inotify_event *event = (const struct inotify_event *)at;

        if (event->mask & IN_Q_OVERFLOW) {
            /* Close events may be among the lost ones: a file is loaded
             * early rather than never. */
            log_printf(YD_LOG_WARN, "the watch of %s lost events (too many at once); rescanning"
                       " the folder, and files still being written may be read early",
                       watch->dir);
            clear_writing(watch);
            *relevant = true;
        } else if (event->wd == watch->link_wd) {
            if (event->len > 0 && strcmp(event->name, watch->link_name) == 0 &&
                (event->mask & LINK_MASK) && relink(watch))
                *relevant = true;
        } else if (event->len > 0 && event->name[0] != '.' &&
                   registry_has_model_extension(event->name)) {
            if (event->mask & WRITTEN_MASK)
                set_writing(watch, event->name, false);
            if ((event->mask & IN_MODIFY) ||
                ((event->mask & IN_CREATE) && being_written(watch, event->name)))
                set_writing(watch, event->name, true);
            else
                /* A misnamed model file counts too, so the sync warns about it at once. */
                *relevant = true;
        }
        if (event->mask & (IN_DELETE_SELF | IN_MOVE_SELF) && watch->wd >= 0 &&
            event->wd == watch->wd) {
            /* The path no longer names the watched directory: watch the path again once it does. */
            log_printf(YD_LOG_WARN, "model directory %s was removed or renamed; watching for it"
                       " to come back", watch->dir);
            inotify_rm_watch(watch->inotify_fd, watch->wd);
            watch->wd = -1;
            clear_writing(watch);
        }
        at += sizeof *event + event->len;
    }
    return (int)length;
}

static void *watch_main(void *arg)
{
    struct watch *watch = arg;
    struct pollfd fds[2] = {
        { .fd = watch->inotify_fd, .events = POLLIN },
        { .fd = watch->stop_fd, .events = POLLIN },
    };
    bool pending = false;
    double due_ms = 0, rewatch_ms = 0;

    for (;;) {
        double now_ms = yd_now_ms(), expiry_ms, wake_ms = -1;
        bool relevant = false, dir_missing;
        int ready, timeout_ms;

        /* A rescan waits until QUIET_MS pass without a relevant event;
         * other events, such as writes, do not hold it back. */
        if (expire_writing(watch, now_ms, &expiry_ms) && !pending) {
            pending = true;
            due_ms = now_ms;
        }
        pthread_mutex_lock(&watch->events_lock);
        dir_missing = watch->wd < 0;
        if (dir_missing && now_ms >= rewatch_ms) {
            watch->wd = inotify_add_watch(watch->inotify_fd, watch->dir, WATCH_MASK);
            rewatch_ms = now_ms + REWATCH_MS;
            if (watch->wd >= 0) {
                log_printf(YD_LOG_INFO, "model directory %s is back; watching it again", watch->dir);
                pending = true;
                due_ms = now_ms;
                dir_missing = false;
            }
        }
        pthread_mutex_unlock(&watch->events_lock);
        if (pending && now_ms >= due_ms) {
            pending = false;
            if (atomic_load(&watch->enabled))
                watch->on_change(watch->user);
        }
        if (atomic_exchange(&watch->missed, false)) {
            pending = true;
            due_ms = yd_now_ms() + QUIET_MS;
        }

        if (pending)
            wake_ms = due_ms;
        if (dir_missing && (wake_ms < 0 || rewatch_ms < wake_ms))
            wake_ms = rewatch_ms;
        if (expiry_ms >= 0 && (wake_ms < 0 || expiry_ms < wake_ms))
            wake_ms = expiry_ms;
        now_ms = yd_now_ms();
        timeout_ms = -1;
        if (wake_ms >= 0)
            timeout_ms = wake_ms <= now_ms ? 0 : (int)(wake_ms - now_ms) + 1;
        ready = poll(fds, 2, timeout_ms);
        if (ready < 0 && errno != EINTR) {
            log_printf(YD_LOG_ERROR, "watching %s failed: %s", watch->dir, strerror(errno));
            break;
        }
        if (ready > 0 && fds[1].revents)
            break;
        if (ready > 0 && fds[0].revents) {
            int rc;

            pthread_mutex_lock(&watch->events_lock);
            rc = read_events(watch, &relevant);
            pthread_mutex_unlock(&watch->events_lock);
            if (rc < 0) {
                log_printf(YD_LOG_ERROR, "reading the watch of %s failed: %s", watch->dir,
                           strerror(errno));
                break;
            }
            if (relevant) {
                pending = true;
                due_ms = yd_now_ms() + QUIET_MS;
            }
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
    atomic_init(&watch->missed, false);
    pthread_mutex_init(&watch->events_lock, NULL);
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
    pthread_mutex_destroy(&watch->events_lock);
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
    pthread_mutex_destroy(&watch->events_lock);
    pthread_mutex_destroy(&watch->writing_lock);
    free(watch->dir);
    free(watch->link_name);
    free(watch);
}
