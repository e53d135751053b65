/*
 * POST /v1/detect: validate parameters, decode the image on the connection
 * thread, run detection on a worker, and reply with JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "params.h"
#include "server.h"
#include "util.h"

/* A multipart field if the body had one, else the query-string argument. */
static const char *lookup_param(struct MHD_Connection *connection,
                                const struct request *request, int field,
                                const char *name)
{
    if (request->fields[field])
        return request->fields[field];
    return MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, name);
}

static int find_model(const struct server *server, const char *name)
{
    if (!name)
        return 0;
    for (int i = 0; i < server->model_count; i++)
        if (strcmp(yd_model_name(server->models[i]), name) == 0)
            return i;
    return -1;
}

static void list_models(const struct server *server, char *out, size_t out_size)
{
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; i < server->model_count && used < out_size; i++)
        used += (size_t)snprintf(out + used, out_size - used, "%s%s", i ? ", " : "",
                                 yd_model_name(server->models[i]));
}

/* Maps a yd_image_decode or yd_detect failure to an HTTP status. */
static unsigned int status_for_error(int code)
{
    switch (code) {
    case YD_ERR_INVALID_ARGUMENT:
    case YD_ERR_IMAGE_EMPTY:
        return MHD_HTTP_BAD_REQUEST;
    case YD_ERR_IMAGE_UNSUPPORTED:
        return MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
    case YD_ERR_IMAGE_CORRUPT:
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    case YD_ERR_IMAGE_TOO_LARGE:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* Checks what the body collection recorded; replies and returns true on a problem. */
static bool reject_body(struct MHD_Connection *connection, struct request *request,
                        enum MHD_Result *result)
{
    const struct config *config = request->server->config;

    if (request->body_too_large) {
        *result = server_reply_error(connection, request, MHD_HTTP_CONTENT_TOO_LARGE,
                                     "body_too_large",
                                     "request body exceeds the limit of %zu bytes (max_body_bytes)",
                                     config->max_body_bytes);
        return true;
    }
    if (request->body_no_memory) {
        *result = server_reply_error(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal_error", "out of memory receiving the request body");
        return true;
    }
    if (request->multipart_invalid) {
        *result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_request",
                                     "malformed multipart/form-data body");
        return true;
    }
    if (request->multipart && request->image_parts == 0) {
        *result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_request",
                                     "multipart/form-data body has no field named 'image'");
        return true;
    }
    if (request->image_parts > 1) {
        *result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_request",
                                     "multipart/form-data body has %d fields named 'image'; send one",
                                     request->image_parts);
        return true;
    }
    if (request->body_size == 0) {
        *result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "empty_body",
                                     "request body is empty: send a JPEG or PNG image as the body"
                                     " or as the multipart field 'image'");
        return true;
    }
    if (yd_image_sniff(request->body, request->body_size) == YD_IMAGE_UNKNOWN) {
        *result = server_reply_error(connection, request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                     "unsupported_media_type",
                                     "unsupported image format: only JPEG and PNG are supported");
        return true;
    }
    return false;
}

static enum MHD_Result run_detection(struct MHD_Connection *connection,
                                     struct request *request, int model_index,
                                     const yd_detect_params *params)
{
    struct server *server = request->server;
    yd_model *model = server->models[model_index];
    struct detect_job job;
    struct json_timings timings;
    yd_image image = { 0 };
    yd_error error = { 0 };
    enum MHD_Result result;
    double decode_start = yd_now_ms();
    int rc;

    rc = yd_image_decode(request->body, request->body_size, server->config->max_pixels,
                         &image, &error);
    timings.decode_ms = yd_now_ms() - decode_start;
    if (rc < 0) {
        if (rc == YD_ERR_IMAGE_UNSUPPORTED)
            return server_reply_error(connection, request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                      yd_error_name(rc),
                                      "%s (only JPEG and PNG are supported)", error.message);
        return server_reply_error(connection, request, status_for_error(rc),
                                  yd_error_name(rc), "%s", error.message);
    }

    /* The encoded body is no longer needed while the job waits. */
    free(request->body);
    request->body = NULL;
    request->body_capacity = 0;

    memset(&job, 0, sizeof job);
    job.model_index = model_index;
    job.image = &image;
    job.params = *params;
    rc = worker_pool_run(server->pool, &job);
    if (rc == WORKER_QUEUE_FULL) {
        result = server_reply_error_with_header(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE,
                                                MHD_HTTP_HEADER_RETRY_AFTER, "1", "queue_full",
                                                "all %d queue slots are busy; retry later",
                                                server->config->queue_size);
        goto cleanup;
    }
    if (rc == WORKER_STOPPED) {
        result = server_reply_error_with_header(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE,
                                                MHD_HTTP_HEADER_RETRY_AFTER, "1", "shutting_down",
                                                "the server is shutting down");
        goto cleanup;
    }
    if (job.rc < 0) {
        result = server_reply_error(connection, request, status_for_error(job.rc),
                                    yd_error_name(job.rc), "detection failed: %s",
                                    job.error.message);
        goto cleanup;
    }

    timings.total_ms = yd_now_ms() - request->start_ms;
    result = server_reply_json(connection, request, MHD_HTTP_OK,
                               json_detect_result(model, &job.result, &timings));
    yd_result_free(&job.result);

cleanup:
    yd_image_free(&image);
    return result;
}

enum MHD_Result api_detect(struct MHD_Connection *connection, struct request *request)
{
    struct server *server = request->server;
    const char *model_name = lookup_param(connection, request, FIELD_MODEL, "model");
    const char *variant = lookup_param(connection, request, FIELD_VARIANT, "variant");
    struct params_text text;
    yd_detect_params params;
    uint8_t *class_flags;
    char message[512];
    enum MHD_Result result;
    int model_index;

    if (reject_body(connection, request, &result))
        return result;

    model_index = find_model(server, model_name);
    if (model_index < 0) {
        char names[512];

        list_models(server, names, sizeof names);
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "model_not_found",
                                  "unknown model '%s' (loaded: %s)", model_name, names);
    }
    if (variant && strcmp(variant, yd_model_variant(server->models[model_index])) != 0)
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "variant_not_found",
                                  "unknown variant '%s' of model '%s' (loaded: %s)", variant,
                                  yd_model_name(server->models[model_index]),
                                  yd_model_variant(server->models[model_index]));

    text.conf = lookup_param(connection, request, FIELD_CONF, "conf");
    text.iou = lookup_param(connection, request, FIELD_IOU, "iou");
    text.max_det = lookup_param(connection, request, FIELD_MAX_DET, "max_det");
    text.classes = lookup_param(connection, request, FIELD_CLASSES, "classes");

    class_flags = calloc((size_t)yd_model_class_count(server->models[model_index]) + 1, 1);
    if (!class_flags)
        return server_reply_error(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", "out of memory");
    if (params_parse(&text, server->config, server->models[model_index], &params,
                     class_flags, message, sizeof message) != 0)
        result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                                    "%s", message);
    else
        result = run_detection(connection, request, model_index, &params);
    free(class_flags);
    return result;
}
