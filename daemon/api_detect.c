/*
 * POST /v1/detect: validate parameters, take a queue slot, decode the image
 * on the connection thread, run detection on a worker, and reply with JSON.
 *
 * The queue slot is taken before decoding, so decoded images waiting or
 * being decoded are at most queue_size (plus one per worker running). A full
 * queue gives 503 with Retry-After before any decoding work or memory is
 * spent. At most max_decodes decodes run at once. A request with a queue
 * slot waits up to request_timeout seconds for a decode slot, so a burst of
 * uploads up to queue_size is served, not rejected.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "params.h"
#include "server.h"
#include "text.h"
#include "util.h"

/* Parameter values from the query string; counts find repeated names. */
struct query_params {
    const char *values[FIELD_COUNT];
    int counts[FIELD_COUNT];
    int ignored_field;       /* see struct request */
};

/* A name without '=' ("?conf") has a NULL value; it is read as empty, so validation rejects it. */
static enum MHD_Result collect_query_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    struct query_params *query = cls;

    for (int field = 0; key && field < FIELD_COUNT; field++) {
        if (field != query->ignored_field && strcmp(key, request_field_names[field]) == 0) {
            query->values[field] = value ? value : "";
            query->counts[field]++;
            break;
        }
    }
    return MHD_YES;
}

/* Fills query from the query string; returns the first repeated field, or -1. */
static int read_query(struct MHD_Connection *connection, const struct request *request,
                      struct query_params *query)
{
    memset(query, 0, sizeof *query);
    query->ignored_field = request->ignored_field;
    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, collect_query_param, query);
    for (int field = 0; field < FIELD_COUNT; field++)
        if (query->counts[field] > 1)
            return field;
    return -1;
}

/* A multipart field if the body had one, else the query-string argument. */
static const char *lookup_param(const struct request *request,
                                const struct query_params *query, int field)
{
    if (request->fields[field])
        return request->fields[field];
    return query->values[field];
}

static cJSON *build_native_result(const struct registry_ref *ref, const yd_result *result,
                                  const struct json_timings *timings)
{
    return json_detect_result(ref->model, ref->variant, ref->version, result, timings);
}

/* Formats the message and queues it through the endpoint's error reply. */
static enum MHD_Result reply_failure(struct MHD_Connection *connection, struct request *request,
                                     const struct detect_format *format, unsigned int status,
                                     const char *retry_after, const char *code,
                                     const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static enum MHD_Result reply_failure(struct MHD_Connection *connection, struct request *request,
                                     const struct detect_format *format, unsigned int status,
                                     const char *retry_after, const char *code,
                                     const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    text_make_valid(message);
    return format->reply_error(connection, request, status, retry_after, code, message);
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
                        const struct detect_format *format, enum MHD_Result *result)
{
    const struct config *config = request->server->config;
    yd_error error = { 0 };
    int rc;

    if (request->body_too_large) {
        *result = reply_failure(connection, request, format, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                                     "body_too_large",
                                     "request body exceeds the limit of %zu bytes (max_body_bytes)",
                                     config->max_body_bytes);
        return true;
    }
    if (request->body_over_budget) {
        *result = reply_failure(connection, request, format, MHD_HTTP_SERVICE_UNAVAILABLE, "1",
                                "buffers_full",
                                "the request bodies being received fill the %zu bytes of"
                                " max_buffered_bytes; retry later",
                                request->server->config->max_buffered_bytes);
        return true;
    }
    if (request->body_no_memory) {
        *result = reply_failure(connection, request, format, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                                     "internal_error", "out of memory receiving the request body");
        return true;
    }
    if (request->multipart_invalid) {
        if (request->multipart_error_code)
            *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL,
                                         request->multipart_error_code,
                                         "invalid multipart/form-data body: %s",
                                         request->multipart_error);
        else
            *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL, "bad_request",
                                         "malformed multipart/form-data body");
        return true;
    }
    if (request->multipart && request->image_parts == 0) {
        *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL, "bad_request",
                                     "multipart/form-data body has no field named 'image'");
        return true;
    }
    if (request->image_parts > 1) {
        *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL, "bad_request",
                                     "multipart/form-data body has %d fields named 'image'; send one",
                                     request->image_parts);
        return true;
    }
    if (request->body_size == 0) {
        *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL, "empty_body",
                                     "request body is empty: send a JPEG or PNG image as the body"
                                     " or as the multipart field 'image'");
        return true;
    }
    rc = yd_image_check_format(request->body, request->body_size, &error);
    if (rc == YD_ERR_IMAGE_UNSUPPORTED) {
        *result = reply_failure(connection, request, format, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL,
                                "unsupported_media_type", "%s", error.message);
        return true;
    }
    if (rc < 0) {
        *result = reply_failure(connection, request, format, status_for_error(rc), NULL,
                                yd_error_name(rc), "%s", error.message);
        return true;
    }
    return false;
}

/* Replies 503 for a full queue or a stopping pool (rc from the worker pool). */
static enum MHD_Result reply_unavailable(struct MHD_Connection *connection,
                                        struct request *request,
                                        const struct detect_format *format, int rc)
{
    if (rc == WORKER_QUEUE_FULL)
        return reply_failure(connection, request, format, MHD_HTTP_SERVICE_UNAVAILABLE, "1",
                             "queue_full", "all %d queue slots are busy; retry later",
                             request->server->config->queue_size);
    return reply_failure(connection, request, format, MHD_HTTP_SERVICE_UNAVAILABLE, "1",
                         "shutting_down", "the server is shutting down");
}

/* decode_image's return values when it did not decode. */
#define DECODE_SLOTS_FULL 1
#define DECODE_ABANDONED 2 /* the drain ended while it waited */

/*
 * Decodes the body within one of the max_decodes decode slots, waiting up to
 * request_timeout seconds for one. Returns the yd_image_decode result, or
 * DECODE_SLOTS_FULL without decoding when no slot came free in that time.
 */
static int decode_image(struct request *request, yd_image *image, yd_error *error)
{
    struct server *server = request->server;
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += server->config->request_timeout_s;
    pthread_mutex_lock(&server->decode_lock);
    while (server->decodes >= server->max_decodes && rc == 0 && !server->decode_abandoned)
        rc = pthread_cond_timedwait(&server->decode_free, &server->decode_lock, &deadline);
    if (server->decode_abandoned || server->decodes >= server->max_decodes) {
        rc = server->decode_abandoned ? DECODE_ABANDONED : DECODE_SLOTS_FULL;
        pthread_mutex_unlock(&server->decode_lock);
        return rc;
    }
    server->decodes++;
    pthread_mutex_unlock(&server->decode_lock);

    rc = yd_image_decode(request->body, request->body_size, server->config->max_pixels,
                         image, error);

    pthread_mutex_lock(&server->decode_lock);
    server->decodes--;
    pthread_cond_signal(&server->decode_free);
    pthread_mutex_unlock(&server->decode_lock);
    return rc;
}

/* Decodes the image into a reserved queue slot and runs detection on a worker. */
static enum MHD_Result run_detection(struct MHD_Connection *connection,
                                     struct request *request, const struct detect_format *format,
                                     const struct registry_ref *ref,
                                     const yd_detect_params *params)
{
    struct server *server = request->server;
    struct detect_job job;
    struct json_timings timings;
    yd_image image = { 0 };
    yd_error error = { 0 };
    enum MHD_Result result;
    double decode_start;
    int rc;

    /* The workers stop only after the drain, so a request that began before it still runs. */
    rc = atomic_load(&server->stopping) && !request->before_stop ? WORKER_STOPPED
                                                                 : worker_pool_reserve(server->pool);
    if (rc != 0)
        return reply_unavailable(connection, request, format, rc);

    decode_start = yd_now_ms();
    rc = decode_image(request, &image, &error);
    timings.decode_ms = yd_now_ms() - decode_start;
    if (rc != 0)
        worker_pool_cancel(server->pool);
    if (rc == DECODE_ABANDONED)
        return reply_unavailable(connection, request, format, WORKER_STOPPED);
    if (rc == DECODE_SLOTS_FULL)
        return reply_failure(connection, request, format, MHD_HTTP_SERVICE_UNAVAILABLE, "1",
                             "decode_slots_full",
                             "all %d decode slots stayed busy for %d s; retry later (max_decodes)",
                             server->max_decodes, server->config->request_timeout_s);
    if (rc == YD_ERR_IMAGE_UNSUPPORTED)
        return reply_failure(connection, request, format, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL,
                             yd_error_name(rc), "%s (only JPEG and PNG are supported)",
                             error.message);
    if (rc < 0)
        return reply_failure(connection, request, format, status_for_error(rc), NULL,
                             yd_error_name(rc), "%s", error.message);

    /* The encoded body is no longer needed while the job waits. */
    server_free_body(request);

    memset(&job, 0, sizeof job);
    job.model = ref->model;
    job.model_index = ref->index;
    job.image = &image;
    job.params = *params;
    rc = worker_pool_run_reserved(server->pool, &job);
    if (rc != 0) {
        result = reply_unavailable(connection, request, format, rc);
        goto cleanup;
    }
    if (job.rc < 0) {
        result = reply_failure(connection, request, format, status_for_error(job.rc), NULL,
                               yd_error_name(job.rc), "detection failed: %s", job.error.message);
        goto cleanup;
    }

    timings.total_ms = yd_now_ms() - request->start_ms;
    result = server_reply_json(connection, request, MHD_HTTP_OK,
                               format->build_result(ref, &job.result, &timings));
    yd_result_free(&job.result);

cleanup:
    yd_image_free(&image);
    return result;
}

/*
 * Checks a confidence threshold given under another name than conf
 * (min_confidence), so the message names the field the client sent.
 * Returns 0, or -1 with the message in err.
 */
static int check_conf_field(const struct detect_format *format, const char *value,
                            const struct config *config, const yd_model *model,
                            char *err, size_t err_size)
{
    struct params_text text = { .conf = value };
    yd_detect_params params;
    char quoted[TEXT_QUOTE_SIZE];

    if (format->conf_field == FIELD_CONF || !value)
        return 0;
    if (params_parse(&text, config, model, &params, NULL, err, err_size) == 0)
        return 0;
    snprintf(err, err_size, "invalid %s '%s': expected a number from 0 to 1",
             request_field_names[format->conf_field],
             text_quote(quoted, sizeof quoted, value, TEXT_QUOTE_MAX_CHARS));
    return -1;
}

/* Replies 400 and returns true when a query parameter is given more than once. */
static bool reject_repeated_query(struct MHD_Connection *connection, struct request *request,
                                  const struct detect_format *format, struct query_params *query,
                                  enum MHD_Result *result)
{
    int repeated = read_query(connection, request, query);

    if (repeated < 0)
        return false;
    *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL,
                            "bad_parameter", "query parameter '%s' appears %d times; send it once",
                            request_field_names[repeated], query->counts[repeated]);
    return true;
}

/* Replies 503 or 404 for a model or variant that registry_acquire did not find. */
static enum MHD_Result reply_model_not_found(struct MHD_Connection *connection,
                                             struct request *request,
                                             const struct detect_format *format,
                                             const char *model_name, const char *variant,
                                             bool name_known)
{
    struct server *server = request->server;
    struct registry_ref ref;
    char quoted[TEXT_QUOTE_SIZE];
    char names[512], default_name[256];

    if (!model_name && !name_known)
        return reply_failure(connection, request, format, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                             "no_model_loaded", "no model is loaded; load one with POST"
                             " /v1/models/NAME/load");
    if (!name_known) {
        registry_list_names(server->registry, names, sizeof names);
        return reply_failure(connection, request, format, MHD_HTTP_NOT_FOUND, NULL,
                             "model_not_found", "unknown model '%s' (loaded: %s)",
                             text_quote(quoted, sizeof quoted, model_name, TEXT_QUOTE_MAX_CHARS),
                             names);
    }
    if (!model_name && registry_acquire(server->registry, NULL, NULL, &ref, &name_known) == YD_OK) {
        /* Copied, because the name may be freed once the reference is released. */
        snprintf(default_name, sizeof default_name, "%s", ref.name);
        model_name = default_name;
        registry_release(&ref);
    }
    registry_list_variants(server->registry, model_name ? model_name : "", names, sizeof names);
    return reply_failure(connection, request, format, MHD_HTTP_NOT_FOUND, NULL,
                         "variant_not_found", "unknown variant '%s' of model '%s' (loaded: %s)",
                         text_quote(quoted, sizeof quoted, variant, TEXT_QUOTE_MAX_CHARS),
                         model_name ? model_name : "", names);
}

/*
 * Resolves the model and the detection parameters from the multipart fields
 * and the query string. On success returns false with ref acquired and
 * *class_flags allocated, which the caller releases and frees. Otherwise
 * queues the error reply, stores its result and returns true.
 */
static bool reject_params(struct MHD_Connection *connection, struct request *request,
                          const struct detect_format *format, struct registry_ref *ref,
                          yd_detect_params *params, uint8_t **class_flags,
                          enum MHD_Result *result)
{
    struct server *server = request->server;
    struct query_params query;
    const char *model_name, *variant;
    struct params_text text;
    char message[1024];
    bool name_known;

    *class_flags = NULL;
    if (reject_repeated_query(connection, request, format, &query, result))
        return true;
    model_name = request->path_model ? request->path_model : lookup_param(request, &query, FIELD_MODEL);
    variant = lookup_param(request, &query, FIELD_VARIANT);

    /* The reference keeps this version alive until the reply is queued, even across a reload. */
    if (registry_acquire(server->registry, model_name, variant, ref, &name_known) != YD_OK) {
        *result = reply_model_not_found(connection, request, format, model_name, variant,
                                        name_known);
        return true;
    }

    text.conf = lookup_param(request, &query, (int)format->conf_field);
    if (check_conf_field(format, text.conf, server->config, ref->model,
                         message, sizeof message) != 0) {
        *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL,
                                "bad_parameter", "%s", message);
        registry_release(ref);
        return true;
    }
    if (!text.conf)
        text.conf = format->conf_default;
    text.iou = lookup_param(request, &query, FIELD_IOU);
    text.max_det = lookup_param(request, &query, FIELD_MAX_DET);
    text.classes = lookup_param(request, &query, FIELD_CLASSES);

    *class_flags = calloc((size_t)yd_model_class_count(ref->model) + 1, 1);
    if (!*class_flags)
        *result = reply_failure(connection, request, format, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                                "internal_error", "out of memory");
    else if (params_parse(&text, server->config, ref->model, params,
                          *class_flags, message, sizeof message) != 0)
        *result = reply_failure(connection, request, format, MHD_HTTP_BAD_REQUEST, NULL,
                                "bad_parameter", "%s", message);
    else
        return false;
    free(*class_flags);
    *class_flags = NULL;
    registry_release(ref);
    return true;
}

bool api_detect_reject_query(struct MHD_Connection *connection, struct request *request,
                             const struct detect_format *format, enum MHD_Result *result)
{
    struct query_params query;
    struct registry_ref ref;
    yd_detect_params params;
    uint8_t *class_flags;

    /* A form field replaces the query argument of its name, so only a
     * repeated query parameter is known to fail before a multipart body. */
    if (request->multipart)
        return reject_repeated_query(connection, request, format, &query, result);
    if (reject_params(connection, request, format, &ref, &params, &class_flags, result))
        return true;
    free(class_flags);
    registry_release(&ref);
    return false;
}

enum MHD_Result api_detect_run(struct MHD_Connection *connection, struct request *request,
                               const struct detect_format *format)
{
    struct registry_ref ref;
    yd_detect_params params;
    uint8_t *class_flags;
    enum MHD_Result result;

    if (reject_body(connection, request, format, &result))
        return result;
    if (reject_params(connection, request, format, &ref, &params, &class_flags, &result))
        return result;
    result = run_detection(connection, request, format, &ref, &params);
    free(class_flags);
    registry_release(&ref);
    return result;
}

/* Native errors: {"error": {code, message}}, with Retry-After on a 503 that has one. */
static enum MHD_Result reply_native_error(struct MHD_Connection *connection,
                                          struct request *request, unsigned int status,
                                          const char *retry_after, const char *code,
                                          const char *message)
{
    return server_reply_error_with_header(connection, request, status,
                                          retry_after ? MHD_HTTP_HEADER_RETRY_AFTER : NULL,
                                          retry_after, code, "%s", message);
}

const struct detect_format api_detect_format = {
    .conf_field = FIELD_CONF,
    .conf_default = NULL,
    .build_result = build_native_result,
    .reply_error = reply_native_error,
};

enum MHD_Result api_detect(struct MHD_Connection *connection, struct request *request)
{
    return api_detect_run(connection, request, &api_detect_format);
}
