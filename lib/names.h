/*
 * Class names: the 80 COCO classes in YOLOv8 model order with their COCO
 * category ids, and the parser for the "names" metadata of an Ultralytics
 * ONNX export.
 */
#ifndef YOLOD_NAMES_H
#define YOLOD_NAMES_H

#include "yolod.h"

#define YD_COCO80_COUNT 80

/* Returns the name of COCO class i (0..79) in model order, or NULL. */
const char *yd_coco80_name(int i);

/*
 * Returns the COCO category id (1..90, with the gaps of the original
 * annotations) of model class i (0..79), or YD_ERR_INVALID_ARGUMENT.
 */
int yd_coco80_category_id(int i);

/*
 * Parses the "names" metadata string, a Python dict repr such as
 * "{0: 'person', 1: 'bicycle'}": integer keys, values in single quotes, or
 * double quotes when the name contains a single quote, with Python string
 * escapes (\\, \', \n, \xhh, \uhhhh, ...). The keys must be exactly
 * 0..nc-1, in any order. On success *names_out is an array of nc
 * NUL-terminated UTF-8 strings, freed with yd_names_free(). Errors:
 * YD_ERR_INVALID_ARGUMENT (nc < 1 or a NULL pointer), YD_ERR_MODEL_FORMAT
 * (malformed text, with the byte offset in the message), YD_ERR_NO_MEMORY.
 */
int yd_names_parse(const char *text, int nc, char ***names_out, yd_error *err);

/* Frees an array from yd_names_parse(); NULL is allowed. */
void yd_names_free(char **names, int nc);

#endif /* YOLOD_NAMES_H */
