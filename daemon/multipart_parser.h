/*
 * Streaming multipart/form-data parser (RFC 7578 on top of RFC 2046
 * section 5.1.1), with no libmicrohttpd dependency so that unit tests and
 * the fuzzer use it alone.
 *
 * The body arrives in chunks of any size through multipart_parser_feed().
 * Part data is passed on as it arrives, and only the part headers are
 * buffered, up to MULTIPART_HEADER_LINE_MAX bytes a header field and
 * MULTIPART_HEADER_BLOCK_MAX bytes a part.
 *
 * Line endings: the delimiter lines and the part headers must end in CRLF.
 * A bare LF does not end a delimiter line, so "--boundary" followed by a
 * bare LF is part data, and a bare LF or bare CR in a part header is an
 * error. RFC 2046 requires CRLF, and accepting a bare LF would let more
 * byte strings inside binary part data pass for a delimiter.
 *
 * A line that starts with the delimiter but continues with anything other
 * than "--", or optional spaces and tabs and CRLF, is part data. Like the
 * body, the data of a part may start with "--boundary" without the CRLF
 * before it, which ends an empty part. Preamble and epilogue are skipped. Part header names are
 * case-insensitive, folded header lines are joined, and only
 * Content-Disposition is read.
 */
#ifndef YOLOD_DAEMON_MULTIPART_PARSER_H
#define YOLOD_DAEMON_MULTIPART_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define MULTIPART_BOUNDARY_MAX 70 /* RFC 2046: 1 to 70 characters */
#define MULTIPART_HEADER_LINE_MAX 4096 /* maximum bytes of one part header field, unfolded, without CRLF */
#define MULTIPART_HEADER_BLOCK_MAX 16384 /* maximum bytes of the headers of one part, CRLFs included */
#define MULTIPART_PADDING_MAX 256 /* maximum spaces and tabs after a delimiter */
#define MULTIPART_ERROR_SIZE 160

enum multipart_content_type {
    MULTIPART_NOT_FORM_DATA,   /* no Content-Type, or a media type other than multipart/form-data */
    MULTIPART_FORM_DATA,       /* multipart/form-data with a valid boundary parameter */
    MULTIPART_BAD_BOUNDARY,    /* multipart/form-data with a missing, invalid or repeated boundary */
};

/*
 * Parses a Content-Type header value. For multipart/form-data it copies the
 * boundary parameter, without quotes or escapes, to boundary as a
 * NUL-terminated string. Parameter names are case-insensitive, values are a
 * token or a quoted-string, and parameters may come in any order. A
 * malformed parameter list counts as a bad boundary. value may be NULL.
 */
enum multipart_content_type multipart_parse_content_type(const char *value,
                                                         char boundary[MULTIPART_BOUNDARY_MAX + 1]);

/*
 * Functions the parser calls while it reads a body. Each returns 0 to go on
 * or non-zero to stop the parser, which then fails with "stopped by the
 * caller". context is multipart_parser_init's context.
 */
struct multipart_callbacks {
    /* Starts a part. name is its Content-Disposition name, NUL-terminated
     * and without quotes, or NULL when the part has no Content-Disposition
     * header or no name parameter. name may contain any byte but NUL. */
    int (*part_begin)(void *context, const char *name);
    /* Appends size > 0 bytes to the current part. */
    int (*part_data)(void *context, const char *data, size_t size);
    /* Ends the current part, at its delimiter. May be NULL. */
    int (*part_end)(void *context);
};

/* Parser state, whose fields are private to multipart_parser.c. */
struct multipart_parser {
    const struct multipart_callbacks *callbacks;
    void *context;
    char delimiter[MULTIPART_BOUNDARY_MAX + 5]; /* CRLF, "--" and the boundary */
    size_t delimiter_length;
    int state;
    bool part_open;        /* part data goes to part_data; false in the preamble */
    size_t match;          /* bytes of delimiter matched so far */
    size_t virtual_match;  /* leading matched bytes that are not in the body: 2 or 0 */
    size_t padding_length; /* spaces and tabs after a complete delimiter, in line */
    size_t line_length;    /* bytes of the current physical header line */
    size_t field_length;   /* bytes of the current unfolded header field, in line */
    size_t block_length;   /* header bytes of the current part */
    bool have_disposition;
    bool have_name;
    char name[MULTIPART_HEADER_LINE_MAX + 1];
    char line[MULTIPART_HEADER_LINE_MAX + 1];
    char error[MULTIPART_ERROR_SIZE];
};

/*
 * Prepares parser for one body. boundary is 1 to MULTIPART_BOUNDARY_MAX
 * characters, as multipart_parse_content_type returns it.
 */
void multipart_parser_init(struct multipart_parser *parser, const char *boundary,
                           const struct multipart_callbacks *callbacks, void *context);

/*
 * Parses the next size bytes of the body. Returns 0, or -1 once the body is
 * malformed or a callback stopped the parser, and -1 again on every later
 * call. multipart_parser_error() then returns why.
 */
int multipart_parser_feed(struct multipart_parser *parser, const char *data, size_t size);

/*
 * Ends the body. Returns 0 when the closing delimiter was seen, else -1
 * with the reason in multipart_parser_error().
 */
int multipart_parser_finish(struct multipart_parser *parser);

/* Returns why the parser failed, or "" when it has not failed. */
const char *multipart_parser_error(const struct multipart_parser *parser);

#endif /* YOLOD_DAEMON_MULTIPART_PARSER_H */
