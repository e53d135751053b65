/*
 * Detection parameters given as text (query string, form fields or command
 * line), validated against the model.
 */
#ifndef YOLOD_DAEMON_PARAMS_H
#define YOLOD_DAEMON_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "yolod.h"

/* Text values of the parameters; NULL means "use the configured default". */
struct params_text {
    const char *conf;
    const char *iou;
    const char *max_det;
    const char *classes; /* comma-separated class ids or names */
};

/*
 * Fills params from defaults and text. class_flags must hold
 * yd_model_class_count(model) bytes; params->classes points at it when a
 * class filter was given. Returns 0, or -1 with a message naming the
 * parameter and the invalid value.
 */
int params_parse(const struct params_text *text, const struct config *defaults,
                 const yd_model *model, yd_detect_params *params,
                 uint8_t *class_flags, char *err, size_t err_size);

#endif /* YOLOD_DAEMON_PARAMS_H */
