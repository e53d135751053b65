/*
 * UTF-8 checks follow RFC 3629: lead bytes C2..F4, continuation bytes
 * 80..BF, no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <netinet/in.h>

#include "text.h"

/* Bytes a sequence starting with this lead byte needs; 0 for a byte that cannot lead. */
static size_t sequence_length(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF)
        return 3;
    if (lead >= 0xF0 && lead <= 0xF4)
        return 4;
    return 0;
}

size_t text_utf8_length(const char *text, size_t size)
{
    const unsigned char *bytes = (const unsigned char *)text;
    size_t length;
    uint32_t code_point;
    static const uint32_t min_code_point[5] = { 0, 0, 0x80, 0x800, 0x10000 };

    if (size == 0)
        return 0;
    length = sequence_length(bytes[0]);
    if (length <= 1)
        return length;
    if (size < length)
        return 0;

    code_point = bytes[0] & (0x7F >> length);
    for (size_t i = 1; i < length; i++) {
        if ((bytes[i] & 0xC0) != 0x80)
            return 0;
        code_point = (code_point << 6) | (bytes[i] & 0x3F);
    }
    if (code_point < min_code_point[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF))
        return 0;
    return length;
}

int text_is_utf8(const char *text)
{
    size_t size = strlen(text);

    for (size_t i = 0; i < size;) {
        size_t length = text_utf8_length(text + i, size - i);

        if (length == 0)
            return 0;
        i += length;
    }
    return 1;
}

/* C0 controls, DEL, and C1 controls (U+0080..U+009F, encoded C2 80..C2 9F). */
static bool is_control(const char *text, size_t length)
{
    const unsigned char *bytes = (const unsigned char *)text;

    if (length == 1)
        return bytes[0] < 0x20 || bytes[0] == 0x7F;
    return length == 2 && bytes[0] == 0xC2 && bytes[1] < 0xA0;
}

char *text_quote(char *out, size_t out_size, const char *in, size_t max_chars)
{
    static const char ellipsis[] = "...";
    size_t in_size = strlen(in);
    size_t used = 0, chars = 0, i = 0;

    if (out_size < sizeof ellipsis) {
        if (out_size > 0)
            out[0] = '\0';
        return out;
    }

    while (i < in_size) {
        size_t length = text_utf8_length(in + i, in_size - i);
        const char *piece = in + i;
        size_t piece_size = length;

        if (length == 0 || is_control(piece, length)) {
            piece = "?";
            piece_size = 1;
            if (length == 0)
                length = 1;
        }
        /* Room is kept for "..." so a cut value is always marked. */
        if (chars == max_chars || used + piece_size + sizeof ellipsis > out_size) {
            memcpy(out + used, ellipsis, sizeof ellipsis - 1);
            used += sizeof ellipsis - 1;
            break;
        }
        memcpy(out + used, piece, piece_size);
        used += piece_size;
        i += length;
        chars++;
    }
    out[used] = '\0';
    return out;
}

void text_make_valid(char *text)
{
    size_t size = strlen(text);
    size_t lead = size;

    /* Find the last lead byte among the final four bytes. */
    while (lead > 0 && size - lead < 4 && ((unsigned char)text[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead > 0) {
        size_t needed = sequence_length((unsigned char)text[lead - 1]);

        if (needed > 1 && needed > size - (lead - 1)) {
            size = lead - 1;
            text[size] = '\0';
        }
    }

    for (size_t i = 0; i < size;) {
        size_t length = text_utf8_length(text + i, size - i);

        if (length == 0) {
            text[i] = '?';
            length = 1;
        }
        i += length;
    }
}

char *text_log_field(char *out, size_t out_size, const char *in)
{
    size_t used = 0;

    if (out_size < 3) {
        if (out_size > 0)
            out[0] = '\0';
        return out;
    }
    if (in[0] != '\0' && strpbrk(in, " \"\\") == NULL) {
        snprintf(out, out_size, "%s", in);
        return out;
    }
    out[used++] = '"';
    for (const char *p = in; *p; p++) {
        size_t need = *p == '"' || *p == '\\' ? 2 : 1;

        /* Room is kept for the closing quote and the NUL. */
        if (used + need + 2 > out_size)
            break;
        if (need == 2)
            out[used++] = '\\';
        out[used++] = *p;
    }
    out[used++] = '"';
    out[used] = '\0';
    return out;
}

char *text_escape_log(char *out, size_t out_size, const char *in)
{
    size_t in_size = strlen(in);
    size_t used = 0, i = 0;

    if (out_size == 0)
        return out;

    while (i < in_size) {
        size_t length = text_utf8_length(in + i, in_size - i);

        if (length == 0 || is_control(in + i, length)) {
            size_t escaped = length ? length : 1;

            if (used + 4 * escaped >= out_size)
                break;
            for (size_t k = 0; k < escaped; k++) {
                snprintf(out + used, out_size - used, "\\x%02X", (unsigned char)in[i + k]);
                used += 4;
            }
            i += escaped;
            continue;
        }
        if (used + length >= out_size)
            break;
        memcpy(out + used, in + i, length);
        used += length;
        i += length;
    }
    out[used] = '\0';
    return out;
}

bool text_is_decimal_number(const char *text)
{
    const char *p = text;
    size_t digits = 0;

    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits++;
        }
    }
    if (digits == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

void text_format_address(const struct sockaddr *addr, bool with_port, char *out, size_t out_size)
{
    char host[INET6_ADDRSTRLEN];
    bool ipv6 = addr && addr->sa_family == AF_INET6;
    int port;

    if (addr && addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ipv6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    } else {
        snprintf(out, out_size, "unknown");
        return;
    }
    /* An IPv6 address takes brackets before a port, as in a URL. */
    if (with_port)
        snprintf(out, out_size, ipv6 ? "[%s]:%d" : "%s:%d", host, port);
    else
        snprintf(out, out_size, "%s", host);
}
