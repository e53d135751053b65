/*
 * sd_notify protocol, as documented in systemd's sd_notify(3): each message
 * is one datagram of newline-separated VARIABLE=value assignments sent to
 * the socket in $NOTIFY_SOCKET. A value starting with '/' is a filesystem
 * path, one starting with '@' an abstract socket whose name starts with a
 * NUL byte in place of the '@'.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

static int notify_fd = -1;
static struct sockaddr_un notify_address;
static socklen_t notify_address_size;
static bool send_failure_logged;
static uint64_t watchdog_interval_us;

/* Parses $WATCHDOG_USEC and $WATCHDOG_PID into watchdog_interval_us. */
static void read_watchdog(void)
{
    const char *usec_text = getenv("WATCHDOG_USEC");
    const char *pid_text = getenv("WATCHDOG_PID");
    unsigned long long usec;
    char *end;

    if (!usec_text)
        return;
    if (pid_text) {
        errno = 0;
        long long pid = strtoll(pid_text, &end, 10);

        if (errno != 0 || end == pid_text || *end != '\0' || pid <= 0) {
            log_printf(YD_LOG_WARN, "invalid WATCHDOG_PID '%s', expected a process id;"
                       " not sending watchdog notifications", pid_text);
            return;
        }
        if (pid != (long long)getpid()) {
            log_printf(YD_LOG_DEBUG, "WATCHDOG_PID %lld is another process; not sending"
                       " watchdog notifications", pid);
            return;
        }
    }
    errno = 0;
    usec = strtoull(usec_text, &end, 10);
    if (errno != 0 || end == usec_text || *end != '\0' || usec < 2 || usec_text[0] == '-') {
        log_printf(YD_LOG_WARN, "invalid WATCHDOG_USEC '%s', expected microseconds (2 or more);"
                   " not sending watchdog notifications", usec_text);
        return;
    }
    /* Half the timeout, so a ping that is late by less than an interval does not trigger a restart. */
    watchdog_interval_us = usec / 2;
}

void notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t length;

    if (!path || path[0] == '\0')
        return;
    length = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || length >= sizeof notify_address.sun_path) {
        log_printf(YD_LOG_WARN, "invalid NOTIFY_SOCKET '%s', expected an absolute path or"
                   " @abstract name under %zu bytes; not notifying systemd",
                   path, sizeof notify_address.sun_path);
        return;
    }

    memset(&notify_address, 0, sizeof notify_address);
    notify_address.sun_family = AF_UNIX;
    memcpy(notify_address.sun_path, path, length);
    if (path[0] == '@') {
        /* The abstract name is exactly `length` bytes, without a terminating NUL. */
        notify_address.sun_path[0] = '\0';
        notify_address_size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    } else {
        notify_address_size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
    }

    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (notify_fd < 0) {
        log_printf(YD_LOG_WARN, "cannot create the systemd notification socket: %s;"
                   " not notifying systemd", strerror(errno));
        return;
    }
    read_watchdog();
}

void notify_send(const char *message)
{
    if (notify_fd < 0)
        return;
    if (sendto(notify_fd, message, strlen(message), MSG_NOSIGNAL,
               (const struct sockaddr *)&notify_address, notify_address_size) >= 0)
        return;
    if (!send_failure_logged) {
        char name[sizeof notify_address.sun_path + 1];

        snprintf(name, sizeof name, "%s", getenv("NOTIFY_SOCKET") ? getenv("NOTIFY_SOCKET") : "");
        log_printf(YD_LOG_WARN, "cannot send '%.*s' to NOTIFY_SOCKET %s: %s; later failures"
                   " are not logged", (int)strcspn(message, "\n"), message, name, strerror(errno));
        send_failure_logged = true;
    }
}

void notify_status(const char *fmt, ...)
{
    char message[512];
    va_list ap;
    int used;

    if (notify_fd < 0)
        return;
    used = snprintf(message, sizeof message, "STATUS=");
    va_start(ap, fmt);
    vsnprintf(message + used, sizeof message - (size_t)used, fmt, ap);
    va_end(ap);
    /* A newline would start a new assignment, so the status stays one line. */
    for (char *c = message; *c; c++)
        if (*c == '\n')
            *c = ' ';
    notify_send(message);
}

uint64_t notify_watchdog_interval_us(void)
{
    return notify_fd >= 0 ? watchdog_interval_us : 0;
}

void notify_close(void)
{
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}
