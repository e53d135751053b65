/*
 * Streaming multipart/form-data parser: see multipart_parser.h.
 *
 * The body is a byte-at-a-time state machine, except that part data and
 * the preamble are scanned with memchr for the CR that starts each
 * delimiter "\r\n--boundary". A partial delimiter match at the end of a
 * chunk is kept as a count of matched bytes, because those bytes equal the
 * start of the delimiter and need no buffer.
 */
#include "multipart_parser.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum parser_state {
    STATE_DATA,          /* preamble or part data, looking for the delimiter */
    STATE_DELIMITER_END, /* after a complete delimiter, reading transport padding */
    STATE_CLOSE_DASH,    /* after a delimiter and one '-' */
    STATE_DELIMITER_CR,  /* after a delimiter, its padding and a CR */
    STATE_HEADER_LINE,   /* in a part header line */
    STATE_HEADER_CR,     /* after a CR in a part header line */
    STATE_EPILOGUE,      /* after the closing delimiter, skipping the rest */
    STATE_FAILED,
};

/* ------------------------------------------------ header value syntax */

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 9110 section 5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * Returns whether c may appear in a boundary: any printable ASCII character
 * or space. RFC 2046 section 5.1.1 allows fewer ("bchars"), but clients send
 * others, such as the "*****" of many Java and Android examples, and the
 * delimiter search does not depend on which bytes it contains.
 */
static bool is_boundary_char(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e;
}

/* RFC 9110 qdtext and the second byte of a quoted-pair: no control character but HTAB. */
static bool is_quoted_text(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static const char *scan_token(const char *p, const char *end)
{
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    return p;
}

/* Returns the end of the quoted-string that starts at the '"' at p, or NULL if it is malformed. */
static const char *scan_quoted_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '"')
            return p + 1;
        if (c == '\\') {
            p++;
            if (p == end)
                return NULL;
            c = (unsigned char)*p;
        }
        if (!is_quoted_text(c))
            return NULL;
    }
    return NULL;
}

static bool span_equals(const char *start, const char *end, const char *lowercase)
{
    size_t length = strlen(lowercase);

    return (size_t)(end - start) == length && strncasecmp(start, lowercase, length) == 0;
}

/* One "name=value" of a parameter list; a quoted value excludes its quotes. */
struct parameter {
    const char *name, *name_end;
    const char *value, *value_end;
    bool quoted;
};

/*
 * Reads the next ";" OWS name "=" value from *cursor (RFC 9110 section
 * 5.6.6, with OWS also around "=" and empty parameters allowed). Returns
 * 1 and advances *cursor, 0 at the end, or -1 when the list is malformed.
 */
static int next_parameter(const char **cursor, const char *end, struct parameter *parameter)
{
    const char *p = skip_ows(*cursor, end);

    do {
        if (p == end)
            return 0;
        if (*p != ';')
            return -1;
        p = skip_ows(p + 1, end);
    } while (p == end || *p == ';');

    parameter->name = p;
    parameter->name_end = scan_token(p, end);
    if (parameter->name_end == p)
        return -1;
    p = skip_ows(parameter->name_end, end);
    if (p == end || *p != '=')
        return -1;
    p = skip_ows(p + 1, end);

    if (p < end && *p == '"') {
        const char *quoted_end = scan_quoted_string(p, end);

        if (!quoted_end)
            return -1;
        parameter->value = p + 1;
        parameter->value_end = quoted_end - 1;
        parameter->quoted = true;
        *cursor = quoted_end;
    } else {
        parameter->value = p;
        parameter->value_end = scan_token(p, end);
        if (parameter->value_end == p)
            return -1;
        parameter->quoted = false;
        *cursor = parameter->value_end;
    }
    return 1;
}

/*
 * Copies a parameter value to out, removing the backslashes of quoted-pairs,
 * and NUL-terminates it. Returns its length, or -1 if it needs more than
 * size bytes with the NUL.
 */
static long copy_value(const struct parameter *parameter, char *out, size_t size)
{
    size_t length = 0;

    for (const char *p = parameter->value; p < parameter->value_end; p++) {
        if (parameter->quoted && *p == '\\')
            p++;
        if (length + 1 >= size)
            return -1;
        out[length++] = *p;
    }
    out[length] = '\0';
    return (long)length;
}

static bool boundary_is_valid(const char *boundary, size_t length)
{
    if (length < 1 || length > MULTIPART_BOUNDARY_MAX || boundary[length - 1] == ' ')
        return false;
    for (size_t i = 0; i < length; i++)
        if (!is_boundary_char((unsigned char)boundary[i]))
            return false;
    return true;
}

enum multipart_content_type multipart_parse_content_type(const char *value,
                                                         char boundary[MULTIPART_BOUNDARY_MAX + 1])
{
    const char *end, *p, *type_end, *subtype, *subtype_end;
    struct parameter parameter;
    bool have_boundary = false;
    int rc;

    if (!value)
        return MULTIPART_NOT_FORM_DATA;
    end = value + strlen(value);
    p = skip_ows(value, end);
    type_end = scan_token(p, end);
    if (type_end == end || *type_end != '/')
        return MULTIPART_NOT_FORM_DATA;
    subtype = type_end + 1;
    subtype_end = scan_token(subtype, end);
    if (!span_equals(p, type_end, "multipart") || !span_equals(subtype, subtype_end, "form-data"))
        return MULTIPART_NOT_FORM_DATA;

    p = subtype_end;
    while ((rc = next_parameter(&p, end, &parameter)) == 1) {
        long length;

        if (!span_equals(parameter.name, parameter.name_end, "boundary"))
            continue;
        if (have_boundary)
            return MULTIPART_BAD_BOUNDARY;
        have_boundary = true;
        length = copy_value(&parameter, boundary, MULTIPART_BOUNDARY_MAX + 1);
        if (length < 0 || !boundary_is_valid(boundary, (size_t)length))
            return MULTIPART_BAD_BOUNDARY;
    }
    if (rc < 0 || !have_boundary)
        return MULTIPART_BAD_BOUNDARY;
    return MULTIPART_FORM_DATA;
}

/* ------------------------------------------------------------ parser */

static int fail(struct multipart_parser *parser, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct multipart_parser *parser, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(parser->error, sizeof parser->error, fmt, ap);
    va_end(ap);
    parser->state = STATE_FAILED;
    return -1;
}

/* Passes bytes of part data on; the preamble goes nowhere. */
static int emit(struct multipart_parser *parser, const char *data, size_t size)
{
    if (!parser->part_open || size == 0)
        return 0;
    if (parser->callbacks->part_data(parser->context, data, size) != 0)
        return fail(parser, "stopped by the caller");
    return 0;
}

/*
 * Starts looking for the delimiter at the start of the body or of a part's
 * data. Its leading CRLF counts as matched, so that the body may start with
 * "--boundary" and an empty part may end without the CRLF. Those two bytes
 * are not in the body, so they are never passed on as data.
 */
static void begin_data(struct multipart_parser *parser)
{
    parser->state = STATE_DATA;
    parser->match = 2;
    parser->virtual_match = 2;
}

void multipart_parser_init(struct multipart_parser *parser, const char *boundary,
                           const struct multipart_callbacks *callbacks, void *context)
{
    /* The buffers need no clearing, which keeps a parser cheap to set up. */
    parser->callbacks = callbacks;
    parser->context = context;
    parser->delimiter_length = (size_t)snprintf(parser->delimiter, sizeof parser->delimiter,
                                                "\r\n--%s", boundary);
    if (parser->delimiter_length >= sizeof parser->delimiter)
        parser->delimiter_length = sizeof parser->delimiter - 1;
    parser->part_open = false;
    parser->padding_length = 0;
    parser->line_length = 0;
    parser->field_length = 0;
    parser->block_length = 0;
    parser->have_disposition = false;
    parser->have_name = false;
    parser->error[0] = '\0';
    begin_data(parser);
}

/*
 * Scans data or preamble bytes from p for the delimiter and passes data on.
 * Returns where it stopped: at end, or after a complete delimiter with the
 * state set to STATE_DELIMITER_END. Returns NULL when a callback stopped it.
 *
 * The matched bytes are parser->delimiter[0, match). The first "carried" of
 * them came before p (an earlier chunk or the virtual CRLF), and the rest
 * lie just before the current position inside [run, p).
 */
static const char *scan_data(struct multipart_parser *parser, const char *p, const char *end)
{
    const char *run = p;
    size_t match = parser->match;
    size_t carried = match;

    while (p < end) {
        if (match == 0) {
            const char *cr = memchr(p, '\r', (size_t)(end - p));

            if (!cr) {
                p = end;
                break;
            }
            p = cr + 1;
            match = 1;
            continue;
        }
        if (*p == parser->delimiter[match]) {
            p++;
            match++;
            if (match == parser->delimiter_length) {
                if (emit(parser, run, (size_t)(p - run) - (match - carried)) != 0)
                    return NULL;
                parser->match = match;
                parser->padding_length = 0;
                parser->state = STATE_DELIMITER_END;
                return p;
            }
            continue;
        }
        /*
         * The matched bytes are data. The boundary has no CR, so the only CR
         * of the delimiter is its first byte, and no later byte of the match
         * can start a new one. The current byte is tested again from match 0.
         */
        if (carried > parser->virtual_match &&
            emit(parser, parser->delimiter + parser->virtual_match,
                 carried - parser->virtual_match) != 0)
            return NULL;
        carried = 0;
        parser->virtual_match = 0;
        match = 0;
    }
    /* The matched bytes inside this chunk wait for the next chunk. */
    if (emit(parser, run, (size_t)(p - run) - (match - carried)) != 0)
        return NULL;
    parser->match = match;
    return p;
}

/*
 * Passes on as data a complete delimiter that turned out to be followed by
 * something else, with its padding and the extra byte that ended it, and
 * goes back to scanning data.
 */
static int resume_data(struct multipart_parser *parser, const char *extra, size_t extra_size)
{
    if (emit(parser, parser->delimiter + parser->virtual_match,
             parser->delimiter_length - parser->virtual_match) != 0 ||
        emit(parser, parser->line, parser->padding_length) != 0 ||
        emit(parser, extra, extra_size) != 0)
        return -1;
    parser->state = STATE_DATA;
    parser->match = 0;
    parser->virtual_match = 0;
    return 0;
}

/* Ends the open part, if any, at a delimiter. */
static int end_part(struct multipart_parser *parser)
{
    if (!parser->part_open)
        return 0;
    parser->part_open = false;
    if (parser->callbacks->part_end && parser->callbacks->part_end(parser->context) != 0)
        return fail(parser, "stopped by the caller");
    return 0;
}

/*
 * Handles one byte after a complete delimiter. Returns 1 if it consumed the
 * byte, 0 if the byte is to be read again as data, or -1 on failure.
 */
static int step_delimiter(struct multipart_parser *parser, char c)
{
    switch (parser->state) {
    case STATE_DELIMITER_END:
        if (c == '-' && parser->padding_length == 0) {
            parser->state = STATE_CLOSE_DASH;
            return 1;
        }
        if ((c == ' ' || c == '\t') && parser->padding_length < MULTIPART_PADDING_MAX) {
            parser->line[parser->padding_length++] = c;
            return 1;
        }
        if (c == '\r') {
            parser->state = STATE_DELIMITER_CR;
            return 1;
        }
        return resume_data(parser, "", 0);

    case STATE_CLOSE_DASH:
        if (c != '-')
            return resume_data(parser, "-", 1);
        if (end_part(parser) != 0)
            return -1;
        parser->state = STATE_EPILOGUE;
        return 1;

    default: /* STATE_DELIMITER_CR */
        /* A CR not followed by LF cannot start a delimiter, so c is read as data. */
        if (c != '\n')
            return resume_data(parser, "\r", 1);
        if (end_part(parser) != 0)
            return -1;
        parser->state = STATE_HEADER_LINE;
        parser->line_length = 0;
        parser->field_length = 0;
        parser->block_length = 0;
        parser->have_disposition = false;
        parser->have_name = false;
        return 1;
    }
}

/* Reads the Content-Disposition value in [p, end): "form-data" and its name parameter. */
static int read_disposition(struct multipart_parser *parser, const char *p, const char *end)
{
    const char *type_end;
    struct parameter parameter;
    int rc;

    if (parser->have_disposition)
        return fail(parser, "a part has more than one Content-Disposition header");
    parser->have_disposition = true;

    p = skip_ows(p, end);
    type_end = scan_token(p, end);
    if (type_end == p)
        return fail(parser, "malformed Content-Disposition header in a part");
    if (!span_equals(p, type_end, "form-data"))
        return fail(parser, "a part has Content-Disposition type '%.*s', expected form-data",
                    (int)(type_end - p < 32 ? type_end - p : 32), p);

    p = type_end;
    while ((rc = next_parameter(&p, end, &parameter)) == 1) {
        if (!span_equals(parameter.name, parameter.name_end, "name"))
            continue; /* filename, filename* and others are not used */
        if (parser->have_name)
            return fail(parser, "a part's Content-Disposition has more than one name parameter");
        parser->have_name = true;
        /* The name is shorter than the header field, so it fits. */
        copy_value(&parameter, parser->name, sizeof parser->name);
    }
    if (rc < 0)
        return fail(parser, "malformed Content-Disposition header in a part");
    return 0;
}

/* Reads the unfolded header field in parser->line; only Content-Disposition is used. */
static int end_field(struct multipart_parser *parser)
{
    const char *field = parser->line;
    const char *end = field + parser->field_length;
    const char *name_end = scan_token(field, end);

    parser->field_length = 0;
    if (name_end == field || name_end == end || *name_end != ':')
        return fail(parser, "malformed part header line: expected 'Name: value'");
    if (span_equals(field, name_end, "content-disposition"))
        return read_disposition(parser, name_end + 1, end);
    return 0;
}

/* Handles one byte of the part headers. Returns 0, or -1 on failure. */
static int step_header(struct multipart_parser *parser, char c)
{
    if (++parser->block_length > MULTIPART_HEADER_BLOCK_MAX)
        return fail(parser, "the headers of a part are longer than %d bytes",
                    MULTIPART_HEADER_BLOCK_MAX);

    if (parser->state == STATE_HEADER_CR) {
        if (c != '\n')
            return fail(parser, "a part header line contains a CR not followed by LF");
        if (parser->line_length > 0) {
            parser->line_length = 0;
            parser->state = STATE_HEADER_LINE;
            return 0;
        }
        /* The empty line ends the headers. */
        if (parser->field_length > 0 && end_field(parser) != 0)
            return -1;
        if (parser->callbacks->part_begin(parser->context,
                                          parser->have_name ? parser->name : NULL) != 0)
            return fail(parser, "stopped by the caller");
        parser->part_open = true;
        begin_data(parser);
        return 0;
    }

    if (c == '\r') {
        parser->state = STATE_HEADER_CR;
        return 0;
    }
    if (c == '\n')
        return fail(parser, "a part header line ends in a bare LF; lines must end in CRLF");
    if (c == '\0')
        return fail(parser, "a part header contains a NUL byte");
    if (parser->line_length == 0) {
        /* A line that starts with a space or tab continues the field before it. */
        if (c == ' ' || c == '\t') {
            if (parser->field_length == 0)
                return fail(parser, "the first part header line starts with a space or tab");
        } else if (parser->field_length > 0 && end_field(parser) != 0) {
            return -1;
        }
    }
    parser->line_length++;
    if (parser->field_length == MULTIPART_HEADER_LINE_MAX)
        return fail(parser, "a part header line is longer than %d bytes",
                    MULTIPART_HEADER_LINE_MAX);
    parser->line[parser->field_length++] = c;
    return 0;
}

int multipart_parser_feed(struct multipart_parser *parser, const char *data, size_t size)
{
    const char *p = data;
    const char *end = data + size;

    while (p < end) {
        int rc;

        switch (parser->state) {
        case STATE_DATA:
            p = scan_data(parser, p, end);
            if (!p)
                return -1;
            break;
        case STATE_DELIMITER_END:
        case STATE_CLOSE_DASH:
        case STATE_DELIMITER_CR:
            rc = step_delimiter(parser, *p);
            if (rc < 0)
                return -1;
            p += rc;
            break;
        case STATE_HEADER_LINE:
        case STATE_HEADER_CR:
            if (step_header(parser, *p) != 0)
                return -1;
            p++;
            break;
        case STATE_EPILOGUE:
            p = end;
            break;
        default:
            return -1;
        }
    }
    return parser->state == STATE_FAILED ? -1 : 0;
}

int multipart_parser_finish(struct multipart_parser *parser)
{
    if (parser->state == STATE_EPILOGUE)
        return 0;
    if (parser->state == STATE_FAILED)
        return -1;
    return fail(parser, "the body ends before the closing boundary line '%s--'"
                " (delimiter lines end in CRLF)", parser->delimiter + 2);
}

const char *multipart_parser_error(const struct multipart_parser *parser)
{
    return parser->error;
}
