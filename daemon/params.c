/*
 * Parameter validation shared by POST /v1/detect and `yolod detect`.
 *
 * Numbers are parsed strictly: plain decimal digits with an optional
 * fraction and exponent. strtod alone would also take leading spaces, a
 * sign, hex floats, "inf" and "nan". Values echoed in error messages are
 * passed through text_quote, so a reply stays valid UTF-8 and short.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "text.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Digits only, at least one: "300", "007". */
static bool is_unsigned_integer(const char *text, size_t length)
{
    if (length == 0)
        return false;
    for (size_t i = 0; i < length; i++)
        if (!is_digit(text[i]))
            return false;
    return true;
}

static int parse_threshold(const char *name, const char *text, float *out,
                           char *err, size_t err_size)
{
    char quoted[TEXT_QUOTE_SIZE];
    double value = 0.0;
    bool valid = text_is_decimal_number(text);

    /* No errno check: an underflow (1e-400) is a valid 0, and an overflow
     * returns HUGE_VAL, which the range check rejects. */
    if (valid) {
        value = strtod(text, NULL);
        valid = value >= 0.0 && value <= 1.0;
    }
    if (!valid) {
        snprintf(err, err_size, "invalid %s '%s': expected a number from 0 to 1", name,
                 text_quote(quoted, sizeof quoted, text, TEXT_QUOTE_MAX_CHARS));
        return -1;
    }
    *out = (float)value;
    return 0;
}

static int parse_max_det(const char *text, int *out, char *err, size_t err_size)
{
    char quoted[TEXT_QUOTE_SIZE];
    size_t length = strlen(text);
    long value = 0;

    /* Nine digits cannot overflow a long; more are out of range anyway. */
    if (is_unsigned_integer(text, length) && length <= 9)
        value = strtol(text, NULL, 10);
    if (value < 1 || value > CONFIG_MAX_DET_LIMIT) {
        snprintf(err, err_size, "invalid max_det '%s': expected an integer from 1 to %d",
                 text_quote(quoted, sizeof quoted, text, TEXT_QUOTE_MAX_CHARS),
                 CONFIG_MAX_DET_LIMIT);
        return -1;
    }
    *out = (int)value;
    return 0;
}

/* Returns the class id for an id ("5") or a name ("bus"), or -1. */
static int find_class(const yd_model *model, const char *token, size_t length)
{
    int class_count = yd_model_class_count(model);

    if (is_unsigned_integer(token, length)) {
        long id = length <= 9 ? strtol(token, NULL, 10) : -1;

        return id >= 0 && id < class_count ? (int)id : -1;
    }

    for (int i = 0; i < class_count; i++) {
        const char *name = yd_model_class_name(model, i);

        if (name && strlen(name) == length && strncmp(name, token, length) == 0)
            return i;
    }
    return -1;
}

/* Names the first bad class token of a classes list, then the list. */
static void report_bad_class(const char *list, const char *token, size_t length,
                             const yd_model *model, char *err, size_t err_size)
{
    const char *example = yd_model_class_name(model, 0) ? yd_model_class_name(model, 0) : "0";
    int class_count = yd_model_class_count(model);
    char quoted_token[TEXT_QUOTE_SIZE];
    char quoted_list[TEXT_QUOTE_SIZE];
    char *copy = strndup(token, length);

    text_quote(quoted_token, sizeof quoted_token, copy ? copy : "", TEXT_QUOTE_MAX_CHARS);
    free(copy);
    text_quote(quoted_list, sizeof quoted_list, list, TEXT_QUOTE_MAX_CHARS);
    if (length == 0)
        snprintf(err, err_size,
                 "empty class in classes '%s' (expected class ids 0 to %d or names such as '%s')",
                 quoted_list, class_count - 1, example);
    else
        snprintf(err, err_size,
                 "unknown class '%s' in classes '%s' (expected class ids 0 to %d or names such as '%s')",
                 quoted_token, quoted_list, class_count - 1, example);
}

static int parse_classes(const char *text, const yd_model *model, uint8_t *flags,
                         char *err, size_t err_size)
{
    const char *token = text;

    memset(flags, 0, (size_t)yd_model_class_count(model));
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
            report_bad_class(text, token, length, model, err, err_size);
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
    if (text->max_det && parse_max_det(text->max_det, &params->max_det, err, err_size) != 0)
        return -1;

    if (text->classes) {
        if (parse_classes(text->classes, model, class_flags, err, err_size) != 0)
            return -1;
        params->classes = class_flags;
    }
    return 0;
}
