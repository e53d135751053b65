/*
 * Open connections per client address, for max_connections_per_ip.
 * libmicrohttpd's own limit (MHD_OPTION_PER_IP_CONNECTION_LIMIT) releases a
 * connection only when its polling thread cleans the connection up. That
 * lags behind clients that open a new connection per request: three such
 * clients against a limit of 4 had 103 of 6000 connections reset (9 with
 * this count). This count drops as soon as libmicrohttpd reports the
 * connection closed.
 */
#ifndef YOLOD_DAEMON_ADDRESS_LIMIT_H
#define YOLOD_DAEMON_ADDRESS_LIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

struct address_limit;

/*
 * Creates a limit of `max_per_address` open connections from one address
 * (0: no limit) for at most `capacity` connections open at once. Returns
 * NULL when out of memory.
 */
struct address_limit *address_limit_create(int max_per_address, int capacity);
void address_limit_destroy(struct address_limit *limit);

/* Returns true when one more connection from `address` stays within the limit. */
bool address_limit_allows(struct address_limit *limit, const struct sockaddr *address);

/*
 * Counts a connection from `address` as open. Returns the slot to pass to
 * address_limit_close(), or -1 when the connection is not counted (no
 * limit, an address family other than IPv4 and IPv6, or a full table).
 */
int address_limit_open(struct address_limit *limit, const struct sockaddr *address);

/* Counts the connection of `slot` as closed; -1 does nothing. */
void address_limit_close(struct address_limit *limit, int slot);

#endif /* YOLOD_DAEMON_ADDRESS_LIMIT_H */
