/*
 * multipart/form-data bodies, parsed by libmicrohttpd's MHD_PostProcessor.
 * The part named "image" becomes the request body, bounded by
 * max_body_bytes. The parts named like detection parameters are kept as
 * strings of at most REQUEST_FIELD_MAX bytes, and other named parts are
 * ignored. A part without a name, or a parameter field that is repeated,
 * over-long or contains NUL, makes the body invalid (400).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

#define POST_BUFFER_SIZE (64 * 1024)

const char *const request_field_names[FIELD_COUNT] = {
    [FIELD_MODEL] = "model",
    [FIELD_VARIANT] = "variant",
    [FIELD_CONF] = "conf",
    [FIELD_IOU] = "iou",
    [FIELD_MAX_DET] = "max_det",
    [FIELD_CLASSES] = "classes",
    [FIELD_MIN_CONFIDENCE] = "min_confidence",
};

/* Records why the body is rejected; the first reason is kept. */
static enum MHD_Result reject_part(struct request *request, const char *code,
                                   const char *message)
{
    if (!request->multipart_error_code) {
        request->multipart_error_code = code;
        snprintf(request->multipart_error, sizeof request->multipart_error, "%s", message);
    }
    request->multipart_invalid = true;
    return MHD_NO;
}

/* Returns MHD_NO, which stops the post processor, on a repeated or over-long field. */
static enum MHD_Result append_field(struct request *request, int field, const char *data,
                                    uint64_t offset, size_t size)
{
    size_t used = request->field_sizes[field];
    char message[128];

    if (offset == 0 && request->fields[field]) {
        snprintf(message, sizeof message, "field '%s' appears more than once; send it once",
                 request_field_names[field]);
        return reject_part(request, "bad_parameter", message);
    }
    if (size > 0 && memchr(data, '\0', size)) {
        snprintf(message, sizeof message, "field '%s' contains a NUL byte",
                 request_field_names[field]);
        return reject_part(request, "bad_parameter", message);
    }
    if (size > REQUEST_FIELD_MAX - used) {
        snprintf(message, sizeof message, "field '%s' is longer than %d bytes",
                 request_field_names[field], REQUEST_FIELD_MAX);
        return reject_part(request, "bad_parameter", message);
    }
    if (!request->fields[field]) {
        request->fields[field] = calloc(1, REQUEST_FIELD_MAX + 1);
        if (!request->fields[field]) {
            request->body_no_memory = true;
            return MHD_NO;
        }
    }
    if (size > 0)
        memcpy(request->fields[field] + used, data, size);
    used += size;
    request->fields[field][used] = '\0';
    request->field_sizes[field] = used;
    return MHD_YES;
}

/*
 * Called by the post processor for each piece of each part. key is NULL for
 * a part without a Content-Disposition name: none at all, or one that
 * libmicrohttpd 0.9.75 cannot parse, such as an unquoted name=image.
 */
static enum MHD_Result iterate_post(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data,
                                    uint64_t offset, size_t size)
{
    struct request *request = cls;

    if (!key)
        return reject_part(request, "bad_request", "a part has no name: each part needs a"
                           " 'Content-Disposition: form-data; name=\"...\"' header"
                           " with the name in double quotes");
    if (size > 0 && !data)
        return reject_part(request, "bad_request", "malformed part");

    if (strcmp(key, "image") == 0) {
        if (offset == 0)
            request->image_parts++;
        if (request->image_parts == 1 && size > 0)
            server_append_body(request, data, size);
        return MHD_YES;
    }
    for (int field = 0; field < FIELD_COUNT; field++)
        if (field != request->ignored_field && strcmp(key, request_field_names[field]) == 0)
            return append_field(request, field, data, offset, size);
    return MHD_YES;
}

int multipart_begin(struct request *request, struct MHD_Connection *connection)
{
    const char *type = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_TYPE);

    if (!type || strncasecmp(type, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA,
                             strlen(MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) != 0)
        return 0;

    request->multipart = true;
    request->post = MHD_create_post_processor(connection, POST_BUFFER_SIZE, iterate_post, request);
    return request->post ? 0 : -1;
}

int multipart_feed(struct request *request, const char *data, size_t size)
{
    if (request->multipart_invalid)
        return 0; /* already rejected: the rest of the body is read and dropped */
    if (!request->post)
        return -1;
    return MHD_post_process(request->post, data, size) == MHD_YES ? 0 : -1;
}

void multipart_end(struct request *request)
{
    if (request->post) {
        MHD_destroy_post_processor(request->post);
        request->post = NULL;
    }
}
