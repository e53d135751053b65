/*
 * Deadline for request headers: a connection whose next request headers are
 * not complete request_timeout seconds after it was accepted, or after its
 * previous request finished, is shut down. libmicrohttpd 0.9.75 restarts its
 * idle timeout on every byte and has no such deadline of its own.
 */
#ifndef YOLOD_DAEMON_HEADER_DEADLINE_H
#define YOLOD_DAEMON_HEADER_DEADLINE_H

#include <microhttpd.h>

struct header_deadlines;

/*
 * Starts the thread that shuts down overdue connections. timeout_s is
 * request_timeout. Returns NULL after logging why.
 */
struct header_deadlines *header_deadlines_start(int timeout_s);

/*
 * Stops the thread and frees the table. Call it after MHD_stop_daemon, so
 * no connection is left in it; NULL is fine.
 */
void header_deadlines_stop(struct header_deadlines *deadlines);

/*
 * MHD_NotifyConnectionCallback, given to MHD_OPTION_NOTIFY_CONNECTION with
 * the table as its closure: starts tracking each accepted connection and
 * stops when libmicrohttpd releases it.
 */
void header_deadlines_notify(void *cls, struct MHD_Connection *connection,
                             void **socket_context, enum MHD_ConnectionNotificationCode code);

/* Stops the clock of a connection: the access handler's first call for a request. */
void header_deadlines_headers_complete(struct header_deadlines *deadlines,
                                       struct MHD_Connection *connection);

/* Restarts the clock of a kept-alive connection, when its request is finished. */
void header_deadlines_request_finished(struct header_deadlines *deadlines,
                                       struct MHD_Connection *connection);

#endif /* YOLOD_DAEMON_HEADER_DEADLINE_H */
