/*
 * Request header deadlines, kept in a table of live connections.
 *
 * libmicrohttpd reports each accepted connection (NOTIFY_CONNECTION
 * STARTED) before it creates the connection thread, and its release
 * (CLOSED) after that thread has ended and before it closes the socket.
 * strace of 0.9.75 shows this order for a connection closed by the client
 * and for one shut down here, and libmicrohttpd's current source keeps it
 * on its error paths too. The entry is removed under the table lock in
 * CLOSED, and the sweeper thread calls shutdown() only under that lock, so
 * it never reaches a socket number that the kernel has since given to a
 * new connection.
 *
 * shutdown(SHUT_RDWR) wakes the connection thread, whose next read returns
 * end of file, so libmicrohttpd closes the connection through its usual
 * path. No reply is sent, because libmicrohttpd may be about to write one
 * itself and two writers would interleave bytes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "header_deadline.h"
#include "log.h"
#include "metrics.h"
#include "text.h"
#include "util.h"

/* Minimum milliseconds between two log lines about closed connections. */
#define LOG_INTERVAL_MS 1000.0

/*
 * Milliseconds the deadline waits past request_timeout. libmicrohttpd's idle
 * timeout, also request_timeout, closes a silent connection before that, so
 * only connections that kept sending bytes are shut down, counted and
 * logged here. A silent one is counted too if libmicrohttpd's cleanup lags
 * by more than the margin.
 */
#define IDLE_MARGIN_MS 1000.0

struct tracked_connection {
    struct tracked_connection *prev, *next;
    int fd;
    double waiting_since_ms;  /* accepted, or the previous request finished */
    bool headers_complete;    /* from the access handler's first call to the request's end */
    bool shut_down;           /* by the sweeper; libmicrohttpd has yet to release it */
    char address[INET6_ADDRSTRLEN];
};

struct header_deadlines {
    pthread_mutex_t lock;     /* guards every field below and every entry */
    pthread_cond_t wake;      /* signalled by header_deadlines_stop */
    pthread_t thread;
    double timeout_ms;
    bool stopping;
    struct tracked_connection *head;

    /* Closes not yet logged, and the client address of the last one. */
    long unlogged_closes;
    char last_address[INET6_ADDRSTRLEN];
    double last_line_ms;
};

static void format_address(struct MHD_Connection *connection, char *out, size_t size)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    text_format_address(info ? info->client_addr : NULL, false, out, size);
}

static struct tracked_connection *find_entry(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

static void track(struct header_deadlines *deadlines, struct MHD_Connection *connection,
                  void **socket_context)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct tracked_connection *entry = calloc(1, sizeof *entry);

    if (!entry || !info) {
        /* The connection still has libmicrohttpd's idle timeout. */
        log_printf(YD_LOG_WARN, "cannot track a new connection's header deadline: %s",
                   entry ? "no socket" : "out of memory");
        free(entry);
        return;
    }
    entry->fd = info->connect_fd;
    entry->waiting_since_ms = yd_now_ms();
    format_address(connection, entry->address, sizeof entry->address);

    pthread_mutex_lock(&deadlines->lock);
    entry->next = deadlines->head;
    if (deadlines->head)
        deadlines->head->prev = entry;
    deadlines->head = entry;
    pthread_mutex_unlock(&deadlines->lock);
    *socket_context = entry;
}

static void untrack(struct header_deadlines *deadlines, void **socket_context)
{
    struct tracked_connection *entry = *socket_context;

    if (!entry)
        return;
    pthread_mutex_lock(&deadlines->lock);
    if (entry->prev)
        entry->prev->next = entry->next;
    else
        deadlines->head = entry->next;
    if (entry->next)
        entry->next->prev = entry->prev;
    pthread_mutex_unlock(&deadlines->lock);
    free(entry);
    *socket_context = NULL;
}

void header_deadlines_notify(void *cls, struct MHD_Connection *connection,
                             void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    struct header_deadlines *deadlines = cls;

    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        track(deadlines, connection, socket_context);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        untrack(deadlines, socket_context);
}

void header_deadlines_headers_complete(struct header_deadlines *deadlines,
                                       struct MHD_Connection *connection)
{
    struct tracked_connection *entry = find_entry(connection);

    if (!entry)
        return;
    pthread_mutex_lock(&deadlines->lock);
    entry->headers_complete = true;
    pthread_mutex_unlock(&deadlines->lock);
}

void header_deadlines_request_finished(struct header_deadlines *deadlines,
                                       struct MHD_Connection *connection)
{
    struct tracked_connection *entry = find_entry(connection);

    if (!entry)
        return;
    pthread_mutex_lock(&deadlines->lock);
    entry->headers_complete = false;
    entry->waiting_since_ms = yd_now_ms();
    pthread_mutex_unlock(&deadlines->lock);
}

/*
 * Shuts down the overdue connections and returns the time of the next
 * deadline. A connection accepted or restarted later has its deadline
 * further away than a full timeout, so sleeping until the returned time
 * misses none. The caller holds the lock.
 */
static double shut_down_overdue(struct header_deadlines *deadlines, double now_ms)
{
    double next_ms = now_ms + deadlines->timeout_ms;

    for (struct tracked_connection *entry = deadlines->head; entry; entry = entry->next) {
        double deadline_ms = entry->waiting_since_ms + deadlines->timeout_ms + IDLE_MARGIN_MS;

        if (entry->headers_complete || entry->shut_down)
            continue;
        if (deadline_ms > now_ms) {
            if (deadline_ms < next_ms)
                next_ms = deadline_ms;
            continue;
        }
        if (shutdown(entry->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
            log_printf(YD_LOG_DEBUG, "cannot shut down the connection from %s: %s",
                       entry->address, strerror(errno));
        entry->shut_down = true;
        metrics_count_header_timeout();
        deadlines->unlogged_closes++;
        memcpy(deadlines->last_address, entry->address, sizeof deadlines->last_address);
    }
    return next_ms;
}

/*
 * Logs the closes since the last line, at most one line a second so a
 * flood of slow clients cannot fill the log, and returns the time of the
 * next line that is due (or next_ms when nothing is waiting). The caller
 * holds the lock, which is released while the line is written.
 */
static double log_closes(struct header_deadlines *deadlines, double now_ms, double next_ms)
{
    long count = deadlines->unlogged_closes;
    char address[INET6_ADDRSTRLEN];

    if (count == 0)
        return next_ms;
    if (now_ms - deadlines->last_line_ms < LOG_INTERVAL_MS) {
        double line_due_ms = deadlines->last_line_ms + LOG_INTERVAL_MS;

        return line_due_ms < next_ms ? line_due_ms : next_ms;
    }
    deadlines->unlogged_closes = 0;
    deadlines->last_line_ms = now_ms;
    memcpy(address, deadlines->last_address, sizeof address);

    pthread_mutex_unlock(&deadlines->lock);
    log_printf(YD_LOG_WARN, "closed %ld connection%s whose request headers were not complete"
               " %.0f s after the connection opened or its previous request finished"
               " (request_timeout); the last from %s", count, count == 1 ? "" : "s",
               deadlines->timeout_ms / 1000.0, address);
    pthread_mutex_lock(&deadlines->lock);
    return next_ms;
}

static void *sweep_main(void *arg)
{
    struct header_deadlines *deadlines = arg;

    pthread_mutex_lock(&deadlines->lock);
    while (!deadlines->stopping) {
        double now_ms = yd_now_ms();
        double next_ms = shut_down_overdue(deadlines, now_ms);
        struct timespec until;

        next_ms = log_closes(deadlines, now_ms, next_ms);
        if (deadlines->stopping)
            break;
        /* yd_now_ms reads CLOCK_MONOTONIC, the clock of the condition variable. */
        until.tv_sec = (time_t)(next_ms / 1000.0);
        until.tv_nsec = (long)((next_ms - (double)until.tv_sec * 1000.0) * 1e6);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&deadlines->wake, &deadlines->lock, &until);
    }
    pthread_mutex_unlock(&deadlines->lock);
    return NULL;
}

struct header_deadlines *header_deadlines_start(int timeout_s)
{
    struct header_deadlines *deadlines = calloc(1, sizeof *deadlines);
    pthread_condattr_t attr;
    int rc;

    if (!deadlines) {
        log_printf(YD_LOG_ERROR, "cannot start the request header deadline: out of memory");
        return NULL;
    }
    deadlines->timeout_ms = 1000.0 * timeout_s;
    deadlines->last_line_ms = -LOG_INTERVAL_MS;
    pthread_mutex_init(&deadlines->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&deadlines->wake, &attr);
    pthread_condattr_destroy(&attr);

    rc = pthread_create(&deadlines->thread, NULL, sweep_main, deadlines);
    if (rc != 0) {
        log_printf(YD_LOG_ERROR, "cannot start the request header deadline thread: %s",
                   strerror(rc));
        pthread_cond_destroy(&deadlines->wake);
        pthread_mutex_destroy(&deadlines->lock);
        free(deadlines);
        return NULL;
    }
    return deadlines;
}

void header_deadlines_stop(struct header_deadlines *deadlines)
{
    if (!deadlines)
        return;
    pthread_mutex_lock(&deadlines->lock);
    deadlines->stopping = true;
    pthread_cond_signal(&deadlines->wake);
    pthread_mutex_unlock(&deadlines->lock);
    pthread_join(deadlines->thread, NULL);

    while (deadlines->head) {
        struct tracked_connection *entry = deadlines->head;

        deadlines->head = entry->next;
        free(entry);
    }
    pthread_cond_destroy(&deadlines->wake);
    pthread_mutex_destroy(&deadlines->lock);
    free(deadlines);
}
