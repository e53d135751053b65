/*
 * systemd service notification (sd_notify protocol) without libsystemd:
 * datagrams such as "READY=1" sent to the AF_UNIX socket named by
 * $NOTIFY_SOCKET. Every function does nothing when the variable is unset,
 * so the daemon runs the same outside systemd.
 */
#ifndef YOLOD_DAEMON_NOTIFY_H
#define YOLOD_DAEMON_NOTIFY_H

#include <stdint.h>

/*
 * Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and opens the
 * socket. An invalid value is logged and disables that part, but the daemon
 * keeps running.
 */
void notify_init(void);

/* Sends one message ("READY=1", "STOPPING=1", ...). Logs the first send failure only. */
void notify_send(const char *message);

/* Sends "STATUS=" followed by the formatted text (one line, as systemctl status shows it). */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Returns the interval at which to send "WATCHDOG=1", in microseconds: half
 * of $WATCHDOG_USEC, or 0 when the watchdog is off or not meant for this process.
 */
uint64_t notify_watchdog_interval_us(void);

/* Closes the socket. */
void notify_close(void);

#endif /* YOLOD_DAEMON_NOTIFY_H */
