/*
 * POST /v1/vision/detection, the object detection endpoint of DeepStack and
 * CodeProject.AI Server, for clients such as Frigate's deepstack detector
 * and Home Assistant integrations.
 *
 * The request is the multipart field "image" (or a raw body) with an
 * optional "min_confidence" (form field or query, default 0.4 as in
 * DeepStack) and "model". It runs the same pipeline as POST /v1/detect;
 * only the field names and the reply shapes differ:
 *   {"success": true, "predictions": [{"label", "confidence", "x_min",
 *    "y_min", "x_max", "y_max"}], "count", "inferenceMs", "processMs"}
 *   {"success": false, "error": "message", "code": HTTP status}
 * Boxes are whole pixels of the original image and predictions are sorted
 * by confidence, highest first.
 *
 * POST /v1/vision/custom/NAME, where CodeProject.AI serves custom models
 * and Blue Iris posts when one is chosen, is the same endpoint with model
 * NAME; a "model" field or query argument is then ignored.
 *
 * Replies from the headers alone (wrong method, framing, Content-Length,
 * Expect, query parameters) use DeepStack's shape too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "server.h"

/* Rounds a box edge to the nearest pixel and clamps it into [0, limit]. */
static int to_pixel(float value, int limit)
{
    long rounded = lroundf(value);

    if (rounded < 0)
        return 0;
    if (rounded > limit)
        return limit;
    return (int)rounded;
}

static int add_prediction(cJSON *array, const yd_model *model, const yd_result *result,
                          const yd_detection *detection)
{
    cJSON *item = cJSON_CreateObject();
    const char *label = yd_model_class_name(model, detection->class_id);

    if (!item)
        return -1;
    cJSON_AddItemToArray(array, item);
    if (!cJSON_AddStringToObject(item, "label", label ? label : "") ||
        !cJSON_AddNumberToObject(item, "confidence",
                                 round(detection->confidence * 1e4) / 1e4) ||
        !cJSON_AddNumberToObject(item, "x_min", to_pixel(detection->box.x1, result->image_width)) ||
        !cJSON_AddNumberToObject(item, "y_min", to_pixel(detection->box.y1, result->image_height)) ||
        !cJSON_AddNumberToObject(item, "x_max", to_pixel(detection->box.x2, result->image_width)) ||
        !cJSON_AddNumberToObject(item, "y_max", to_pixel(detection->box.y2, result->image_height)))
        return -1;
    return 0;
}

/*
 * Builds the success body. yd_detect returns detections highest confidence
 * first, which is the order DeepStack clients expect. inferenceMs is the
 * network alone, processMs the whole request so far (receive, decode, queue
 * wait, pre- and postprocessing), both rounded to whole milliseconds.
 */
static cJSON *build_deepstack_result(const struct registry_ref *ref, const yd_result *result,
                                     const struct json_timings *timings)
{
    const yd_model *model = ref->model;
    char version[24];

    cJSON *root = cJSON_CreateObject();
    cJSON *predictions;

    if (!root)
        return NULL;
    if (!cJSON_AddBoolToObject(root, "success", 1))
        goto fail;
    predictions = cJSON_AddArrayToObject(root, "predictions");
    if (!predictions)
        goto fail;
    for (int i = 0; i < result->count; i++)
        if (add_prediction(predictions, model, result, &result->detections[i]) != 0)
            goto fail;
    if (!cJSON_AddNumberToObject(root, "count", result->count) ||
        !cJSON_AddNumberToObject(root, "inferenceMs", round(result->timings.inference_ms)) ||
        !cJSON_AddNumberToObject(root, "processMs", round(timings->total_ms)))
        goto fail;
    /* Fields beyond DeepStack's, which its clients ignore: the version that ran the request. */
    snprintf(version, sizeof version, "%llu", (unsigned long long)ref->version);
    if (!cJSON_AddStringToObject(root, "model", ref->name) ||
        !cJSON_AddStringToObject(root, "variant", ref->variant) ||
        !cJSON_AddStringToObject(root, "version", version))
        goto fail;
    return root;

fail:
    cJSON_Delete(root);
    return NULL;
}

/*
 * Queues {"success": false, "error": message, "code": status}. DeepStack
 * clients read only these fields, so the machine-readable error code of
 * the native API goes to the debug log instead.
 */
enum MHD_Result api_deepstack_reply_error(struct MHD_Connection *connection,
                                          struct request *request, unsigned int status,
                                          const char *retry_after, const char *code,
                                          const char *message)
{
    return api_deepstack_reply_error_with_header(connection, request, status,
                                                 retry_after ? MHD_HTTP_HEADER_RETRY_AFTER : NULL,
                                                 retry_after, code, message);
}

enum MHD_Result api_deepstack_reply_error_with_header(struct MHD_Connection *connection,
                                                      struct request *request, unsigned int status,
                                                      const char *header, const char *value,
                                                      const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();

    if (status >= 500 && status != MHD_HTTP_SERVICE_UNAVAILABLE)
        log_printf(YD_LOG_ERROR, "%s %s: %s", request->method, request->path, message);
    else
        log_printf(YD_LOG_DEBUG, "%s %s: %u %s: %s", request->method, request->path, status,
                   code, message);

    if (root && (!cJSON_AddBoolToObject(root, "success", 0) ||
                 !cJSON_AddStringToObject(root, "error", message) ||
                 !cJSON_AddNumberToObject(root, "code", status))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return server_reply_json_with_header(connection, request, status, root, header, value);
}

const struct detect_format api_deepstack_format = {
    .conf_field = FIELD_MIN_CONFIDENCE,
    .conf_default = "0.4",
    .build_result = build_deepstack_result,
    .reply_error = api_deepstack_reply_error,
};

enum MHD_Result api_deepstack_detect(struct MHD_Connection *connection, struct request *request)
{
    return api_detect_run(connection, request, &api_deepstack_format);
}
