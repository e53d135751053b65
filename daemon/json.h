/*
 * JSON bodies of the API, built with cJSON.
 */
#ifndef YOLOD_DAEMON_JSON_H
#define YOLOD_DAEMON_JSON_H

#include <cjson/cJSON.h>

#include "yolod.h"

/* Wall-clock stages measured outside yd_detect, in milliseconds. */
struct json_timings {
    double decode_ms;
    double total_ms;
};

/*
 * Builds the detection response: model, variant (the name it is served
 * under), compression (what the file holds), version, image size,
 * detections (boxes rounded to 2 decimals, confidence to 4) and timings.
 * Returns NULL when out of memory.
 */
cJSON *json_detect_result(const yd_model *model, const char *variant, uint64_t version,
                          const yd_result *result, const struct json_timings *timings);

/* Builds {"error": {"code": code, "message": message}}. */
cJSON *json_error(const char *code, const char *message);

/* Prints compactly into a malloc'ed string, with any byte that is not valid UTF-8
 * replaced by U+FFFD, and frees root; NULL on failure. */
char *json_print_and_free(cJSON *root);

#endif /* YOLOD_DAEMON_JSON_H */
