/*
 * multipart/form-data bodies, parsed by libmicrohttpd's MHD_PostProcessor.
 * The part named "image" becomes the request body (bounded by
 * max_body_bytes); the parts named like detection parameters are kept as
 * strings; other parts are ignored.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

#define POST_BUFFER_SIZE (64 * 1024)

static const char *field_names[FIELD_COUNT] = {
    [FIELD_MODEL] = "model",
    [FIELD_VARIANT] = "variant",
    [FIELD_CONF] = "conf",
    [FIELD_IOU] = "iou",
    [FIELD_MAX_DET] = "max_det",
    [FIELD_CLASSES] = "classes",
};

static void append_field(struct request *request, int field, const char *data,
                         uint64_t offset, size_t size)
{
    size_t used = request->field_sizes[field];
    char *text;

    if (offset == 0 && request->fields[field]) {
        /* A repeated field: the last one wins. */
        used = 0;
        request->field_sizes[field] = 0;
    }
    if (!request->fields[field]) {
        request->fields[field] = calloc(1, REQUEST_FIELD_MAX + 1);
        if (!request->fields[field]) {
            request->body_no_memory = true;
            return;
        }
    }
    text = request->fields[field];
    if (size > REQUEST_FIELD_MAX - used)
        size = REQUEST_FIELD_MAX - used;
    memcpy(text + used, data, size);
    used += size;
    text[used] = '\0';
    request->field_sizes[field] = used;
}

static enum MHD_Result iterate_post(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data,
                                    uint64_t offset, size_t size)
{
    struct request *request = cls;

    if (strcmp(key, "image") == 0) {
        if (offset == 0)
            request->image_parts++;
        if (request->image_parts == 1)
            server_append_body(request, data, size);
        return MHD_YES;
    }
    for (int field = 0; field < FIELD_COUNT; field++) {
        if (strcmp(key, field_names[field]) == 0) {
            append_field(request, field, data, offset, size);
            break;
        }
    }
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
