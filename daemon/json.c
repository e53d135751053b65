/*
 * Result and error JSON. cJSON prints doubles with up to 17 significant
 * digits, so values are rounded here to the precision the API documents.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "text.h"

static double round_to(double value, double scale)
{
    return round(value * scale) / scale;
}

static int add_detection(cJSON *array, const yd_model *model, const yd_detection *detection)
{
    cJSON *item = cJSON_CreateObject();
    cJSON *box;
    const char *label = yd_model_class_name(model, detection->class_id);

    if (!item)
        return -1;
    cJSON_AddItemToArray(array, item);
    if (!cJSON_AddNumberToObject(item, "class_id", detection->class_id) ||
        !cJSON_AddStringToObject(item, "label", label ? label : "") ||
        !cJSON_AddNumberToObject(item, "confidence", round_to(detection->confidence, 1e4)))
        return -1;

    box = cJSON_AddObjectToObject(item, "box");
    if (!box ||
        !cJSON_AddNumberToObject(box, "x1", round_to(detection->box.x1, 100)) ||
        !cJSON_AddNumberToObject(box, "y1", round_to(detection->box.y1, 100)) ||
        !cJSON_AddNumberToObject(box, "x2", round_to(detection->box.x2, 100)) ||
        !cJSON_AddNumberToObject(box, "y2", round_to(detection->box.y2, 100)))
        return -1;
    return 0;
}

cJSON *json_detect_result(const yd_model *model, const char *variant, uint64_t version,
                          const yd_result *result, const struct json_timings *timings)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *image, *detections, *stages;
    char version_text[24];
    const yd_timings *library = &result->timings;

    if (!root)
        return NULL;

    snprintf(version_text, sizeof version_text, "%llu", (unsigned long long)version);
    if (!cJSON_AddStringToObject(root, "model", yd_model_name(model)) ||
        !cJSON_AddStringToObject(root, "variant", variant) ||
        !cJSON_AddStringToObject(root, "compression", yd_model_variant(model)) ||
        !cJSON_AddStringToObject(root, "version", version_text))
        goto fail;

    image = cJSON_AddObjectToObject(root, "image");
    if (!image ||
        !cJSON_AddNumberToObject(image, "width", result->image_width) ||
        !cJSON_AddNumberToObject(image, "height", result->image_height))
        goto fail;

    detections = cJSON_AddArrayToObject(root, "detections");
    if (!detections)
        goto fail;
    for (int i = 0; i < result->count; i++)
        if (add_detection(detections, model, &result->detections[i]) != 0)
            goto fail;

    stages = cJSON_AddObjectToObject(root, "timings_ms");
    if (!stages ||
        !cJSON_AddNumberToObject(stages, "decode", round_to(timings->decode_ms, 1000)) ||
        !cJSON_AddNumberToObject(stages, "preprocess", round_to(library->preprocess_ms, 1000)) ||
        !cJSON_AddNumberToObject(stages, "inference", round_to(library->inference_ms, 1000)) ||
        !cJSON_AddNumberToObject(stages, "postprocess", round_to(library->postprocess_ms, 1000)) ||
        !cJSON_AddNumberToObject(stages, "total", round_to(timings->total_ms, 1000)))
        goto fail;
    return root;

fail:
    cJSON_Delete(root);
    return NULL;
}

cJSON *json_error(const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error;

    if (!root)
        return NULL;
    error = cJSON_AddObjectToObject(root, "error");
    if (!error ||
        !cJSON_AddStringToObject(error, "code", code) ||
        !cJSON_AddStringToObject(error, "message", message)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/*
 * Returns text with each byte that is not part of valid UTF-8 replaced by
 * U+FFFD, freeing text, or text itself when it is valid. cJSON copies
 * string bytes as they are, and a file or class name need not be UTF-8,
 * which JSON requires. NULL when out of memory.
 */
static char *repair_utf8(char *text)
{
    size_t size = strlen(text), at = 0, used = 0;
    char *repaired;

    if (text_is_utf8(text))
        return text;
    /* Each bad byte grows to 3 bytes at most. */
    repaired = malloc(3 * size + 1);
    if (repaired) {
        while (at < size) {
            size_t length = text_utf8_length(text + at, size - at);

            if (length == 0) {
                memcpy(repaired + used, "\xEF\xBF\xBD", 3);
                used += 3;
                at++;
            } else {
                memcpy(repaired + used, text + at, length);
                used += length;
                at += length;
            }
        }
        repaired[used] = '\0';
    }
    free(text);
    return repaired;
}

char *json_print_and_free(cJSON *root)
{
    char *text;

    if (!root)
        return NULL;
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text ? repair_utf8(text) : NULL;
}
