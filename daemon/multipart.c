/*
 * multipart/form-data bodies, parsed by multipart_parser.c as they arrive.
 * The part named "image" becomes the request body, bounded by
 * max_body_bytes. The parts named like detection parameters are kept as
 * strings of at most REQUEST_FIELD_MAX bytes, and other named parts are
 * ignored. A part without a name, a parameter field that is repeated,
 * over-long or contains NUL, or a malformed body makes the body invalid
 * (400).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart_parser.h"
#include "server.h"

const char *const request_field_names[FIELD_COUNT] = {
    [FIELD_MODEL] = "model",
    [FIELD_VARIANT] = "variant",
    [FIELD_CONF] = "conf",
    [FIELD_IOU] = "iou",
    [FIELD_MAX_DET] = "max_det",
    [FIELD_CLASSES] = "classes",
    [FIELD_MIN_CONFIDENCE] = "min_confidence",
};

/* Records why the body is rejected, keeping the first reason, and returns -1. */
static int reject_part(struct request *request, const char *code, const char *message)
{
    if (!request->multipart_error_code) {
        request->multipart_error_code = code;
        snprintf(request->multipart_error, sizeof request->multipart_error, "%s", message);
    }
    request->multipart_invalid = true;
    return -1;
}

/* Starts a parameter field. Returns -1 when it appeared before or memory runs out. */
static int begin_field(struct request *request, int field)
{
    char message[128];

    if (request->fields[field]) {
        snprintf(message, sizeof message, "field '%s' appears more than once; send it once",
                 request_field_names[field]);
        return reject_part(request, "bad_parameter", message);
    }
    request->fields[field] = calloc(1, REQUEST_FIELD_MAX + 1);
    if (!request->fields[field]) {
        request->body_no_memory = true;
        return -1;
    }
    request->field_sizes[field] = 0;
    return 0;
}

/* Appends to a parameter field. Returns -1 on a NUL byte or an over-long field. */
static int append_field(struct request *request, int field, const char *data, size_t size)
{
    size_t used = request->field_sizes[field];
    char message[128];

    if (memchr(data, '\0', size)) {
        snprintf(message, sizeof message, "field '%s' contains a NUL byte",
                 request_field_names[field]);
        return reject_part(request, "bad_parameter", message);
    }
    if (size > REQUEST_FIELD_MAX - used) {
        snprintf(message, sizeof message, "field '%s' is longer than %d bytes",
                 request_field_names[field], REQUEST_FIELD_MAX);
        return reject_part(request, "bad_parameter", message);
    }
    memcpy(request->fields[field] + used, data, size);
    used += size;
    request->fields[field][used] = '\0';
    request->field_sizes[field] = used;
    return 0;
}

/* The parameter field a part name selects, or -1 for "image" and ignored names. */
static int field_for_name(const struct request *request, const char *name)
{
    for (int field = 0; field < FIELD_COUNT; field++)
        if (field != request->ignored_field && strcmp(name, request_field_names[field]) == 0)
            return field;
    return -1;
}

/* Implements multipart_callbacks.part_begin. name is NULL for a part without a name. */
static int begin_part(void *context, const char *name)
{
    struct request *request = context;

    request->part_field = -1;
    request->part_is_image = false;
    if (!name)
        return reject_part(request, "bad_request", "a part has no name: each part needs a"
                           " 'Content-Disposition: form-data; name=\"...\"' header");
    if (strcmp(name, "image") == 0) {
        request->image_parts++;
        request->part_is_image = true;
        return 0;
    }
    request->part_field = field_for_name(request, name);
    if (request->part_field >= 0)
        return begin_field(request, request->part_field);
    return 0;
}

/* Implements multipart_callbacks.part_data. Only the first "image" part becomes the body. */
static int append_part_data(void *context, const char *data, size_t size)
{
    struct request *request = context;

    if (request->part_is_image) {
        if (request->image_parts == 1)
            server_append_body(request, data, size);
        return 0;
    }
    if (request->part_field >= 0)
        return append_field(request, request->part_field, data, size);
    return 0;
}

static const struct multipart_callbacks request_callbacks = {
    .part_begin = begin_part,
    .part_data = append_part_data,
    .part_end = NULL,
};

int multipart_begin(struct request *request, struct MHD_Connection *connection)
{
    const char *type = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_TYPE);
    char boundary[MULTIPART_BOUNDARY_MAX + 1];

    switch (multipart_parse_content_type(type, boundary)) {
    case MULTIPART_NOT_FORM_DATA:
        return 0;
    case MULTIPART_BAD_BOUNDARY:
        return -1;
    case MULTIPART_FORM_DATA:
        break;
    }

    request->multipart = true;
    request->multipart_parser = malloc(sizeof *request->multipart_parser);
    if (!request->multipart_parser) {
        /* Reported as 500 once the body is complete. */
        request->body_no_memory = true;
        return 0;
    }
    multipart_parser_init(request->multipart_parser, boundary, &request_callbacks, request);
    return 0;
}

int multipart_feed(struct request *request, const char *data, size_t size)
{
    if (request->multipart_invalid)
        return 0; /* already rejected: the rest of the body is read and dropped */
    if (!request->multipart_parser)
        return -1;
    if (multipart_parser_feed(request->multipart_parser, data, size) != 0) {
        /* A callback that stopped the parser has recorded its own reason first. */
        if (!request->body_no_memory)
            reject_part(request, "bad_request", multipart_parser_error(request->multipart_parser));
        return -1;
    }
    return 0;
}

int multipart_finish(struct request *request)
{
    if (request->multipart_invalid || !request->multipart_parser)
        return 0;
    if (multipart_parser_finish(request->multipart_parser) != 0)
        return reject_part(request, "bad_request",
                           multipart_parser_error(request->multipart_parser));
    return 0;
}

void multipart_end(struct request *request)
{
    free(request->multipart_parser);
    request->multipart_parser = NULL;
}
