/*
 * Parameter validation shared by POST /v1/detect and `yolod detect`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

static int parse_threshold(const char *name, const char *text, float *out,
                           char *err, size_t err_size)
{
    char *end;
    double value;

    errno = 0;
    value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(value >= 0.0 && value <= 1.0)) {
        snprintf(err, err_size, "invalid %s '%s': expected a number from 0 to 1", name, text);
        return -1;
    }
    *out = (float)value;
    return 0;
}

static int find_class(const yd_model *model, const char *token, size_t length)
{
    int class_count = yd_model_class_count(model);
    char *end;
    long id;

    errno = 0;
    id = strtol(token, &end, 10);
    if (end != token && (size_t)(end - token) == length && errno == 0)
        return id >= 0 && id < class_count ? (int)id : -1;

    for (int i = 0; i < class_count; i++) {
        const char *name = yd_model_class_name(model, i);

        if (name && strlen(name) == length && strncmp(name, token, length) == 0)
            return i;
    }
    return -1;
}

static int parse_classes(const char *text, const yd_model *model, uint8_t *flags,
                         char *err, size_t err_size)
{
    int class_count = yd_model_class_count(model);
    const char *token = text;

    memset(flags, 0, (size_t)class_count);
    for (;;) {
        const char *comma = strchr(token, ',');
        size_t length = comma ? (size_t)(comma - token) : strlen(token);
        int id;

        /* Trim spaces so "person, bus" works. */
        while (length > 0 && *token == ' ') {
            token++;
            length--;
        }
        while (length > 0 && token[length - 1] == ' ')
            length--;

        id = length > 0 ? find_class(model, token, length) : -1;
        if (id < 0) {
            snprintf(err, err_size,
                     "invalid classes '%s': unknown class '%.*s' (expected class ids 0 to %d or names such as '%s')",
                     text, (int)(length > 64 ? 64 : length), token, class_count - 1,
                     yd_model_class_name(model, 0) ? yd_model_class_name(model, 0) : "0");
            return -1;
        }
        flags[id] = 1;
        if (!comma)
            break;
        token = comma + 1;
    }
    return 0;
}

int params_parse(const struct params_text *text, const struct config *defaults,
                 const yd_model *model, yd_detect_params *params,
                 uint8_t *class_flags, char *err, size_t err_size)
{
    yd_detect_params_default(params);
    params->conf = defaults->conf;
    params->iou = defaults->iou;
    params->max_det = defaults->max_det;
    params->classes = NULL;

    if (text->conf && parse_threshold("conf", text->conf, &params->conf, err, err_size) != 0)
        return -1;
    if (text->iou && parse_threshold("iou", text->iou, &params->iou, err, err_size) != 0)
        return -1;

    if (text->max_det) {
        char *end;
        long value;

        errno = 0;
        value = strtol(text->max_det, &end, 10);
        if (errno != 0 || end == text->max_det || *end != '\0' || value < 1 ||
            value > CONFIG_MAX_DET_LIMIT) {
            snprintf(err, err_size, "invalid max_det '%s': expected an integer from 1 to %d",
                     text->max_det, CONFIG_MAX_DET_LIMIT);
            return -1;
        }
        params->max_det = (int)value;
    }

    if (text->classes) {
        if (parse_classes(text->classes, model, class_flags, err, err_size) != 0)
            return -1;
        params->classes = class_flags;
    }
    return 0;
}
