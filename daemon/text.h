/*
 * Client-supplied text made safe to echo in JSON replies and to write to
 * the log: UTF-8 validation, length caps and escaping.
 */
#ifndef YOLOD_DAEMON_TEXT_H
#define YOLOD_DAEMON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

/* Code points of a client value echoed in an error message. */
#define TEXT_QUOTE_MAX_CHARS 64
/* Buffer size that fits any text_quote of TEXT_QUOTE_MAX_CHARS, "..." and NUL. */
#define TEXT_QUOTE_SIZE (4 * TEXT_QUOTE_MAX_CHARS + 4)

/*
 * Returns the length in bytes (1 to 4) of the valid UTF-8 sequence at the
 * start of text (at most size bytes), or 0 if it is invalid. Invalid means a
 * stray continuation byte, an overlong form, a surrogate, a code point above
 * U+10FFFF or a sequence cut short.
 */
size_t text_utf8_length(const char *text, size_t size);

/* Returns 1 if the NUL-terminated text is valid UTF-8 throughout, else 0. */
int text_is_utf8(const char *text);

/*
 * Copies in to out for echoing in a message. Invalid UTF-8 bytes and control
 * characters (C0, DEL, C1) become '?'. After max_chars code points the copy
 * stops and "..." is appended. out is always terminated and never ends
 * inside a UTF-8 sequence. Returns out.
 */
char *text_quote(char *out, size_t out_size, const char *in, size_t max_chars);

/*
 * Makes a message that vsnprintf may have cut at `size - 1` bytes valid
 * UTF-8 in place: drops a multibyte sequence cut off at the end, then
 * replaces every remaining invalid byte with '?'.
 */
void text_make_valid(char *text);

/*
 * Copies in to out for a log line: control characters and invalid UTF-8
 * bytes become \xNN, so a client cannot start a new line or write bytes a
 * terminal interprets. A value that does not fit is cut before the first
 * character or escape that would overflow. Returns out.
 */
char *text_escape_log(char *out, size_t out_size, const char *in);

/*
 * Copies in to out as one field of a space-separated log line: unchanged
 * when it has no space, '"' or '\\' and is not empty, else in double
 * quotes with '"' and '\\' escaped by a backslash, so a client value cannot
 * pose as further fields. A value that does not fit is cut, and the quotes
 * stay closed. Returns out.
 */
char *text_log_field(char *out, size_t out_size, const char *in);

/*
 * Returns whether text is a plain decimal number: digits with an optional
 * fraction and exponent ("0.5", "1.", ".5", "5e-1"). No sign, spaces, hex
 * floats, "inf" or "nan", all of which strtod would take.
 */
bool text_is_decimal_number(const char *text);

/*
 * Writes an IPv4 or IPv6 address as text, with its port when with_port is
 * set: 127.0.0.1 or ::1, 127.0.0.1:8080 or [::1]:8080. Writes "unknown"
 * for NULL or another address family.
 */
void text_format_address(const struct sockaddr *addr, bool with_port, char *out, size_t out_size);

#endif /* YOLOD_DAEMON_TEXT_H */
