/*
 * ONNX model reading: a protobuf wire-format decoder for the few ModelProto
 * fields an Ultralytics YOLOv8 export uses, and a plain in-memory graph.
 *
 * Tensor data is not copied: raw_data points into the caller's file buffer,
 * which must outlive the yd_onnx_model. Typed repeated fields (float_data,
 * int64_data) are decoded into owned arrays.
 */
#ifndef YOLOD_ONNX_H
#define YOLOD_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "yolod.h"

/* TensorProto.DataType values we recognise. */
enum {
    YD_ONNX_FLOAT = 1,
    YD_ONNX_UINT8 = 2,
    YD_ONNX_INT8 = 3,
    YD_ONNX_UINT16 = 4,
    YD_ONNX_INT16 = 5,
    YD_ONNX_INT32 = 6,
    YD_ONNX_INT64 = 7,
    YD_ONNX_BOOL = 9,
    YD_ONNX_FLOAT16 = 10,
    YD_ONNX_DOUBLE = 11,
    YD_ONNX_UINT32 = 12,
    YD_ONNX_UINT64 = 13,
    YD_ONNX_BFLOAT16 = 16,
};

#define YD_ONNX_MAX_DIMS 8

typedef struct yd_onnx_tensor {
    char *name;
    int data_type;
    int ndims;
    int64_t dims[YD_ONNX_MAX_DIMS];
    int64_t count;          /* product of dims (1 for a scalar) */
    const void *raw;        /* little-endian element data, count elements,
                               not necessarily aligned: read with memcpy */
    void *owned;            /* set when the data came from a typed field */
} yd_onnx_tensor;

enum {
    YD_ONNX_ATTR_FLOAT = 1,
    YD_ONNX_ATTR_INT = 2,
    YD_ONNX_ATTR_STRING = 3,
    YD_ONNX_ATTR_TENSOR = 4,
    YD_ONNX_ATTR_FLOATS = 6,
    YD_ONNX_ATTR_INTS = 7,
};

typedef struct yd_onnx_attr {
    char *name;
    int type;
    float f;
    int64_t i;
    char *s;                /* NUL-terminated copy */
    int nfloats;
    float *floats;
    int nints;
    int64_t *ints;
    yd_onnx_tensor *t;      /* for type TENSOR (Constant nodes) */
} yd_onnx_attr;

typedef struct yd_onnx_node {
    char *name;
    char *op_type;
    char *domain;           /* NULL or "" for the default domain */
    int ninputs;
    char **inputs;          /* "" marks an omitted optional input */
    int noutputs;
    char **outputs;
    int nattrs;
    yd_onnx_attr *attrs;
} yd_onnx_node;

typedef struct yd_onnx_value_info {
    char *name;
    int elem_type;          /* 0 when the type is not a tensor type */
    int ndims;              /* -1 when the file gives no shape */
    int64_t dims[YD_ONNX_MAX_DIMS]; /* -1 for a symbolic dimension */
} yd_onnx_value_info;

typedef struct yd_onnx_model {
    int64_t ir_version;
    int64_t opset;          /* version of the default ("" or "ai.onnx") domain */
    char *producer_name;
    int nnodes;
    yd_onnx_node *nodes;    /* in file order, which ONNX requires to be topological */
    int ninitializers;
    yd_onnx_tensor *initializers;
    const yd_onnx_tensor **initializer_index; /* sorted by name, for lookups */
    int ninputs;
    yd_onnx_value_info *inputs;   /* graph inputs that are not initializers */
    int noutputs;
    yd_onnx_value_info *outputs;
    int nmetadata;
    char **metadata_keys;   /* metadata_props, e.g. "names" -> "{0: 'person', ...}" */
    char **metadata_values;
} yd_onnx_model;

/*
 * Parses a ModelProto held in memory. data must stay alive and unchanged
 * while the model is used. Malformed input returns YD_ERR_MODEL_FORMAT with
 * the field and byte offset in the message, never a crash. Tensors stored in
 * external files, string tensors and tensors of more than YD_ONNX_MAX_DIMS
 * dimensions return YD_ERR_MODEL_UNSUPPORTED.
 */
int yd_onnx_parse(const uint8_t *data, size_t size, yd_onnx_model **out,
                  yd_error *err);
void yd_onnx_free(yd_onnx_model *model);

/* Lookups; NULL when absent. */
const yd_onnx_tensor *yd_onnx_find_initializer(const yd_onnx_model *model,
                                               const char *name);
const yd_onnx_attr *yd_onnx_node_attr(const yd_onnx_node *node,
                                      const char *name);

/*
 * Converts element i of a numeric tensor (any type above). Both return 0
 * for another data type or an index outside [0, count), so callers check
 * data_type and count first. yd_onnx_tensor_int truncates floats toward
 * zero and saturates them to the int64 range.
 */
float yd_onnx_tensor_float(const yd_onnx_tensor *tensor, int64_t i);
int64_t yd_onnx_tensor_int(const yd_onnx_tensor *tensor, int64_t i);

/* Size in bytes of one element of an ONNX data type; 0 for STRING and unknown types. */
size_t yd_onnx_element_size(int data_type);

#endif /* YOLOD_ONNX_H */
