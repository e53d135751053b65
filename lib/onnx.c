/*
 * ONNX model reading: walks a ModelProto with the protobuf decoder and keeps
 * the fields listed in onnx.h. Field numbers and data type codes follow
 * onnx/onnx.proto in the ONNX repository. Unknown fields are skipped, so
 * files from newer IR versions still load.
 *
 * Ownership: every parse function writes into a zeroed struct that is
 * already reachable from the model, so yd_onnx_free() releases a partly
 * parsed model on any error path.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.h"
#include "protobuf.h"
#include "util.h"

/*
 * Limits on hostile input. A YOLOv8 detection export of any scale has 233
 * nodes and 144 initializers (880 and 832 once QDQ-quantized), so these
 * leave ample room while keeping allocations bounded.
 */
#define MAX_NODES 100000
#define MAX_INITIALIZERS 100000
#define MAX_GRAPH_VALUES 100000       /* graph inputs or outputs */
#define MAX_NODE_VALUES 4096          /* inputs or outputs of one node */
#define MAX_NODE_ATTRS 1024
#define MAX_ATTR_VALUES (1 << 20)     /* elements of one floats or ints attribute */
#define MAX_METADATA 4096
#define MAX_OPSET_IMPORTS 1024
#define MAX_TENSOR_DIMS 64            /* dims read before rejecting the tensor */
#define MAX_TENSOR_ELEMENTS ((int64_t)1 << 40)

/* TensorProto.DataLocation: data in a separate file named by external_data. */
#define DATA_LOCATION_EXTERNAL 1

/* TensorProto.DataType 0, which a valid tensor never has. */
#define ONNX_UNDEFINED 0

/* ------------------------------------------------------------------ freeing */

static void tensor_free(yd_onnx_tensor *tensor)
{
    free(tensor->name);
    free(tensor->owned);
}

static void attr_free(yd_onnx_attr *attr)
{
    free(attr->name);
    free(attr->s);
    free(attr->floats);
    free(attr->ints);
    if (attr->t) {
        tensor_free(attr->t);
        free(attr->t);
    }
}

static void node_free(yd_onnx_node *node)
{
    free(node->name);
    free(node->op_type);
    free(node->domain);
    for (int i = 0; i < node->ninputs; i++)
        free(node->inputs[i]);
    free(node->inputs);
    for (int i = 0; i < node->noutputs; i++)
        free(node->outputs[i]);
    free(node->outputs);
    for (int i = 0; i < node->nattrs; i++)
        attr_free(&node->attrs[i]);
    free(node->attrs);
}

void yd_onnx_free(yd_onnx_model *model)
{
    if (!model)
        return;
    free(model->producer_name);
    for (int i = 0; i < model->nnodes; i++)
        node_free(&model->nodes[i]);
    free(model->nodes);
    for (int i = 0; i < model->ninitializers; i++)
        tensor_free(&model->initializers[i]);
    free(model->initializers);
    free(model->initializer_index);
    for (int i = 0; i < model->ninputs; i++)
        free(model->inputs[i].name);
    free(model->inputs);
    for (int i = 0; i < model->noutputs; i++)
        free(model->outputs[i].name);
    free(model->outputs);
    for (int i = 0; i < model->nmetadata; i++) {
        free(model->metadata_keys[i]);
        free(model->metadata_values[i]);
    }
    free(model->metadata_keys);
    free(model->metadata_values);
    free(model);
}

/* ------------------------------------------------------------------ helpers */

/*
 * Makes room for one more item in *items, which contains count items of
 * item_size bytes in *capacity slots, and zeroes the new slot. More than
 * max_count items fail with YD_ERR_MODEL_FORMAT naming `what`.
 */
static int reserve_item(void **items, int count, int *capacity,
                        size_t item_size, int max_count, const char *what,
                        const yd_protobuf_field *field, yd_error *err)
{
    if (count >= max_count)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "more than %d %s, at byte %zu", max_count, what,
                            field->offset);
    if (count == *capacity) {
        int new_capacity = *capacity ? *capacity * 2 : 8;
        void *grown;

        if (new_capacity > max_count)
            new_capacity = max_count;
        grown = realloc(*items, (size_t)new_capacity * item_size);
        if (!grown)
            return yd_error_set(err, YD_ERR_NO_MEMORY,
                                "out of memory for %d %s", new_capacity, what);
        *items = grown;
        *capacity = new_capacity;
    }
    memset((char *)*items + (size_t)count * item_size, 0, item_size);
    return YD_OK;
}

/* Replaces *out with a NUL-terminated copy of a LEN field's bytes. */
static int copy_string(const yd_protobuf_reader *reader,
                       const yd_protobuf_field *field, char **out,
                       yd_error *err)
{
    char *copy;
    int rc = yd_protobuf_expect(reader, field, YD_PROTOBUF_LEN, err);

    if (rc < 0)
        return rc;
    copy = malloc(field->length + 1);
    if (!copy)
        return yd_error_set(err, YD_ERR_NO_MEMORY,
                            "out of memory for a %zu-byte string", field->length);
    memcpy(copy, reader->data + field->start, field->length);
    copy[field->length] = '\0';
    free(*out);
    *out = copy;
    return YD_OK;
}

/* Sets *out to an empty string when the file left it absent. */
static int default_string(char **out, yd_error *err)
{
    if (*out)
        return YD_OK;
    *out = calloc(1, 1);
    if (!*out)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory");
    return YD_OK;
}

/* Reads a varint field holding an int32 or enum; other values become -1. */
static int read_int32(const yd_protobuf_reader *reader,
                      const yd_protobuf_field *field, int *out, yd_error *err)
{
    int rc = yd_protobuf_expect(reader, field, YD_PROTOBUF_VARINT, err);

    if (rc < 0)
        return rc;
    *out = field->value <= INT32_MAX ? (int)field->value : -1;
    return YD_OK;
}

size_t yd_onnx_element_size(int data_type)
{
    switch (data_type) {
    case YD_ONNX_UINT8:
    case YD_ONNX_INT8:
    case YD_ONNX_BOOL:
        return 1;
    case YD_ONNX_UINT16:
    case YD_ONNX_INT16:
    case YD_ONNX_FLOAT16:
    case YD_ONNX_BFLOAT16:
        return 2;
    case YD_ONNX_FLOAT:
    case YD_ONNX_INT32:
    case YD_ONNX_UINT32:
        return 4;
    case YD_ONNX_INT64:
    case YD_ONNX_DOUBLE:
    case YD_ONNX_UINT64:
        return 8;
    default:
        /* STRING, COMPLEX64/128, the float8 and int4 types, and unknown codes. */
        return 0;
    }
}

/* ------------------------------------------------------------------ tensors */

/* Fields of one TensorProto gathered before the tensor is checked. */
typedef struct tensor_fields {
    size_t offset;                   /* of the TensorProto, for errors */
    yd_protobuf_array dims;          /* int64_t */
    yd_protobuf_array float_data;    /* float */
    /* int64_t, from int32_data, int64_data or uint64_data. NOTE: a one-byte
       varint becomes 8 bytes here, so a hostile file can make the reader
       allocate up to 8 times its size. */
    yd_protobuf_array int_data;
    yd_protobuf_array double_data;   /* double */
    int int_field;                   /* which of 5, 7, 11 filled int_data */
    int sources;                     /* bit per data field present */
    const uint8_t *raw;
    size_t raw_length;
    int data_location;
} tensor_fields;

enum {
    SOURCE_RAW = 1,
    SOURCE_FLOAT = 2,
    SOURCE_INT32 = 4,
    SOURCE_INT64 = 8,
    SOURCE_DOUBLE = 16,
    SOURCE_UINT64 = 32,
};

static const char *source_name(int source)
{
    switch (source) {
    case SOURCE_RAW: return "raw_data";
    case SOURCE_FLOAT: return "float_data";
    case SOURCE_INT32: return "int32_data";
    case SOURCE_INT64: return "int64_data";
    case SOURCE_DOUBLE: return "double_data";
    default: return "uint64_data";
    }
}

static void tensor_fields_free(tensor_fields *fields)
{
    free(fields->dims.items);
    free(fields->float_data.items);
    free(fields->int_data.items);
    free(fields->double_data.items);
}

/* Sets ndims, dims and count from the dims field. */
static int check_tensor_shape(yd_onnx_tensor *tensor,
                              const tensor_fields *fields, yd_error *err)
{
    const int64_t *dims = fields->dims.items;

    if (fields->dims.count > YD_ONNX_MAX_DIMS)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "tensor '%s' has %lld dimensions, more than the %d "
                            "supported, at byte %zu",
                            tensor->name, (long long)fields->dims.count,
                            YD_ONNX_MAX_DIMS, fields->offset);

    tensor->ndims = (int)fields->dims.count;
    tensor->count = 1;
    for (int d = 0; d < tensor->ndims; d++) {
        if (dims[d] < 0)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "tensor '%s' has negative dimension %lld, at byte %zu",
                                tensor->name, (long long)dims[d], fields->offset);
        tensor->dims[d] = dims[d];
        if (dims[d] != 0 && tensor->count > MAX_TENSOR_ELEMENTS / dims[d])
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "tensor '%s' has more than %lld elements, at byte %zu",
                                tensor->name, (long long)MAX_TENSOR_ELEMENTS,
                                fields->offset);
        tensor->count *= dims[d];
    }
    return YD_OK;
}

/*
 * Narrows int32_data, int64_data or uint64_data values to the tensor's
 * element width. ONNX stores 8- and 16-bit types (including the bit patterns
 * of FLOAT16 and BFLOAT16) one per int32_data entry, so keeping the low
 * bytes is the defined conversion.
 */
static int convert_int_data(yd_onnx_tensor *tensor, tensor_fields *fields,
                            size_t element_size, yd_error *err)
{
    const int64_t *values = fields->int_data.items;
    uint8_t *out;

    if (element_size == sizeof(int64_t)) {
        tensor->owned = fields->int_data.items;
        fields->int_data.items = NULL;
        tensor->raw = tensor->owned;
        return YD_OK;
    }

    out = malloc(tensor->count > 0 ? (size_t)tensor->count * element_size : 1);
    if (!out)
        return yd_error_set(err, YD_ERR_NO_MEMORY,
                            "out of memory for tensor '%s' (%lld elements)",
                            tensor->name, (long long)tensor->count);
    for (int64_t i = 0; i < tensor->count; i++) {
        uint64_t bits = (uint64_t)values[i];

        for (size_t b = 0; b < element_size; b++)
            out[(size_t)i * element_size + b] = (uint8_t)(bits >> (8 * b));
    }
    tensor->owned = out;
    tensor->raw = out;
    return YD_OK;
}

/* Checks that the tensor's data type admits values stored in `source`. */
static bool source_fits_type(int source, int data_type)
{
    switch (source) {
    case SOURCE_FLOAT:
        return data_type == YD_ONNX_FLOAT;
    case SOURCE_INT32:
        return data_type == YD_ONNX_INT32 || data_type == YD_ONNX_INT16 ||
               data_type == YD_ONNX_INT8 || data_type == YD_ONNX_UINT16 ||
               data_type == YD_ONNX_UINT8 || data_type == YD_ONNX_BOOL ||
               data_type == YD_ONNX_FLOAT16 || data_type == YD_ONNX_BFLOAT16;
    case SOURCE_INT64:
        return data_type == YD_ONNX_INT64;
    case SOURCE_UINT64:
        return data_type == YD_ONNX_UINT32 || data_type == YD_ONNX_UINT64;
    case SOURCE_DOUBLE:
        return data_type == YD_ONNX_DOUBLE;
    default:
        return true;
    }
}

/* Checks the gathered fields and points tensor->raw at count elements. */
static int finish_tensor(yd_onnx_tensor *tensor, tensor_fields *fields,
                         yd_error *err)
{
    size_t element_size;
    int64_t stored;
    int source = fields->sources;
    int rc;

    rc = check_tensor_shape(tensor, fields, err);
    if (rc < 0)
        return rc;

    if (fields->data_location == DATA_LOCATION_EXTERNAL)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "tensor '%s' keeps its data in an external file "
                            "(data_location EXTERNAL), which yolod does not read; "
                            "save the model with its weights inside the .onnx "
                            "file, at byte %zu",
                            tensor->name, fields->offset);

    if (tensor->data_type == ONNX_UNDEFINED)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "tensor '%s' has no data_type, at byte %zu",
                            tensor->name, fields->offset);
    element_size = yd_onnx_element_size(tensor->data_type);
    if (element_size == 0)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "tensor '%s' has data type %d, which yolod does not "
                            "read (string, complex, 8-bit float, 4-bit integer "
                            "or unknown), at byte %zu",
                            tensor->name, tensor->data_type, fields->offset);

    if (source == 0) {
        if (tensor->count == 0)
            return YD_OK;
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "tensor '%s' has %lld elements but no data, at byte %zu",
                            tensor->name, (long long)tensor->count, fields->offset);
    }
    if (source & (source - 1)) {
        int first = source & -source;

        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "tensor '%s' stores data in both %s and %s, at byte %zu",
                            tensor->name, source_name(first),
                            source_name(source & ~first), fields->offset);
    }
    if (!source_fits_type(source, tensor->data_type))
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "tensor '%s' of data type %d stores data in %s, at byte %zu",
                            tensor->name, tensor->data_type, source_name(source),
                            fields->offset);

    if (source == SOURCE_RAW) {
        /* count <= 2^40 and element_size <= 16, so the product fits. */
        if (fields->raw_length != (uint64_t)tensor->count * element_size)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "tensor '%s' has %zu bytes of raw_data, expected "
                                "%lld elements of %zu bytes, at byte %zu",
                                tensor->name, fields->raw_length,
                                (long long)tensor->count, element_size,
                                fields->offset);
        tensor->raw = fields->raw;
        return YD_OK;
    }

    stored = source == SOURCE_FLOAT ? fields->float_data.count
           : source == SOURCE_DOUBLE ? fields->double_data.count
           : fields->int_data.count;
    if (stored != tensor->count)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "tensor '%s' has %lld values in %s, expected %lld, at byte %zu",
                            tensor->name, (long long)stored, source_name(source),
                            (long long)tensor->count, fields->offset);

    if (source == SOURCE_FLOAT || source == SOURCE_DOUBLE) {
        yd_protobuf_array *array = source == SOURCE_FLOAT ? &fields->float_data
                                                          : &fields->double_data;

        tensor->owned = array->items;
        array->items = NULL;
        tensor->raw = tensor->owned;
        return YD_OK;
    }
    return convert_int_data(tensor, fields, element_size, err);
}

/* Reads one field of a TensorProto into `fields` or `tensor`. */
static int read_tensor_field(const yd_protobuf_reader *reader,
                             const yd_protobuf_field *field,
                             yd_onnx_tensor *tensor, tensor_fields *fields,
                             yd_error *err)
{
    int int_source = 0;

    switch (field->number) {
    case 1:
        return yd_protobuf_append_varints(reader, field, &fields->dims,
                                          MAX_TENSOR_DIMS, err);
    case 2:
        return read_int32(reader, field, &tensor->data_type, err);
    case 4:
        fields->sources |= SOURCE_FLOAT;
        return yd_protobuf_append_floats(reader, field, &fields->float_data,
                                         MAX_TENSOR_ELEMENTS, err);
    case 5:
        int_source = SOURCE_INT32;
        break;
    case 7:
        int_source = SOURCE_INT64;
        break;
    case 11:
        int_source = SOURCE_UINT64;
        break;
    case 8:
        return copy_string(reader, field, &tensor->name, err);
    case 9: {
        int rc = yd_protobuf_expect(reader, field, YD_PROTOBUF_LEN, err);

        if (rc < 0)
            return rc;
        fields->sources |= SOURCE_RAW;
        fields->raw = reader->data + field->start;
        fields->raw_length = field->length;
        return YD_OK;
    }
    case 10:
        fields->sources |= SOURCE_DOUBLE;
        return yd_protobuf_append_doubles(reader, field, &fields->double_data,
                                          MAX_TENSOR_ELEMENTS, err);
    case 14:
        return read_int32(reader, field, &fields->data_location, err);
    default:
        return YD_OK;
    }

    /* int32_data, int64_data and uint64_data share one array. */
    if (fields->int_field && fields->int_field != int_source)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "tensor stores data in both %s and %s, at byte %zu",
                            source_name(fields->int_field),
                            source_name(int_source), field->offset);
    fields->int_field = int_source;
    fields->sources |= int_source;
    return yd_protobuf_append_varints(reader, field, &fields->int_data,
                                      MAX_TENSOR_ELEMENTS, err);
}

/* Parses the TensorProto in a LEN field into a zeroed tensor. */
static int parse_tensor(const yd_protobuf_reader *parent,
                        const yd_protobuf_field *parent_field,
                        yd_onnx_tensor *tensor, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    tensor_fields fields = { .offset = parent_field->offset };
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "TensorProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        rc = read_tensor_field(&reader, &field, tensor, &fields, err);
        if (rc < 0)
            goto cleanup;
    }
    if (rc < 0)
        goto cleanup;

    rc = default_string(&tensor->name, err);
    if (rc < 0)
        goto cleanup;
    rc = finish_tensor(tensor, &fields, err);

cleanup:
    tensor_fields_free(&fields);
    return rc;
}

/* --------------------------------------------------------------- attributes */

/* Parses the AttributeProto in a LEN field into a zeroed attribute. */
static int parse_attr(const yd_protobuf_reader *parent,
                      const yd_protobuf_field *parent_field,
                      yd_onnx_attr *attr, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    yd_protobuf_array floats = { 0 };
    yd_protobuf_array ints = { 0 };
    bool has_f = false, has_i = false;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "AttributeProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        switch (field.number) {
        case 1:
            rc = copy_string(&reader, &field, &attr->name, err);
            break;
        case 2: {
            uint32_t bits = (uint32_t)field.value;

            rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_FIXED32, err);
            memcpy(&attr->f, &bits, sizeof attr->f);
            has_f = true;
            break;
        }
        case 3:
            rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_VARINT, err);
            attr->i = (int64_t)field.value;
            has_i = true;
            break;
        case 4:
            rc = copy_string(&reader, &field, &attr->s, err);
            break;
        case 5:
            if (attr->t) {
                rc = yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                  "second tensor in field 5 of AttributeProto at byte %zu",
                                  field.offset);
                break;
            }
            attr->t = calloc(1, sizeof *attr->t);
            if (!attr->t) {
                rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory");
                break;
            }
            rc = parse_tensor(&reader, &field, attr->t, err);
            break;
        case 7:
            rc = yd_protobuf_append_floats(&reader, &field, &floats,
                                           MAX_ATTR_VALUES, err);
            break;
        case 8:
            rc = yd_protobuf_append_varints(&reader, &field, &ints,
                                            MAX_ATTR_VALUES, err);
            break;
        case 20:
            rc = read_int32(&reader, &field, &attr->type, err);
            break;
        default:
            break;
        }
        if (rc < 0)
            goto cleanup;
    }
    if (rc < 0)
        goto cleanup;

    if (!attr->name || !attr->name[0]) {
        rc = yd_error_set(err, YD_ERR_MODEL_FORMAT,
                          "attribute without a name at byte %zu",
                          parent_field->offset);
        goto cleanup;
    }

    /* Files before IR version 2 may omit type; infer it from the value set. */
    if (attr->type == 0)
        attr->type = floats.count ? YD_ONNX_ATTR_FLOATS
                   : ints.count ? YD_ONNX_ATTR_INTS
                   : attr->t ? YD_ONNX_ATTR_TENSOR
                   : attr->s ? YD_ONNX_ATTR_STRING
                   : has_f ? YD_ONNX_ATTR_FLOAT
                   : has_i ? YD_ONNX_ATTR_INT : 0;

    attr->nfloats = (int)floats.count;
    attr->floats = floats.items;
    floats.items = NULL;
    attr->nints = (int)ints.count;
    attr->ints = ints.items;
    ints.items = NULL;
    rc = YD_OK;

cleanup:
    free(floats.items);
    free(ints.items);
    return rc;
}

/* -------------------------------------------------------------------- nodes */

/* Appends the string in a LEN field to a node's input or output list. */
static int append_name(const yd_protobuf_reader *reader,
                       const yd_protobuf_field *field, char ***names,
                       int *count, int *capacity, const char *what,
                       yd_error *err)
{
    void *items = *names;
    int rc = reserve_item(&items, *count, capacity, sizeof **names,
                          MAX_NODE_VALUES, what, field, err);

    *names = items;
    if (rc < 0)
        return rc;
    (*count)++;
    return copy_string(reader, field, &(*names)[*count - 1], err);
}

/* Parses the NodeProto in a LEN field into a zeroed node. */
static int parse_node(const yd_protobuf_reader *parent,
                      const yd_protobuf_field *parent_field,
                      yd_onnx_node *node, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    int input_capacity = 0, output_capacity = 0, attr_capacity = 0;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "NodeProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        switch (field.number) {
        case 1:
            rc = append_name(&reader, &field, &node->inputs, &node->ninputs,
                             &input_capacity, "node inputs", err);
            break;
        case 2:
            rc = append_name(&reader, &field, &node->outputs, &node->noutputs,
                             &output_capacity, "node outputs", err);
            break;
        case 3:
            rc = copy_string(&reader, &field, &node->name, err);
            break;
        case 4:
            rc = copy_string(&reader, &field, &node->op_type, err);
            break;
        case 5: {
            void *items = node->attrs;

            rc = reserve_item(&items, node->nattrs, &attr_capacity,
                              sizeof *node->attrs, MAX_NODE_ATTRS,
                              "node attributes", &field, err);
            node->attrs = items;
            if (rc < 0)
                break;
            node->nattrs++;
            rc = parse_attr(&reader, &field, &node->attrs[node->nattrs - 1], err);
            break;
        }
        case 7:
            rc = copy_string(&reader, &field, &node->domain, err);
            break;
        default:
            break;
        }
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;

    rc = default_string(&node->name, err);
    if (rc < 0)
        return rc;
    if (!node->op_type || !node->op_type[0])
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "node '%s' has no op_type, at byte %zu",
                            node->name, parent_field->offset);
    return YD_OK;
}

/* -------------------------------------------------------------- value infos */

/* Parses TensorShapeProto.Dimension: dim_value, or -1 for dim_param or none. */
static int parse_dimension(const yd_protobuf_reader *parent,
                           const yd_protobuf_field *parent_field,
                           int64_t *dim, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    int rc;

    *dim = -1;
    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "TensorShapeProto.Dimension", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        if (field.number != 1)
            continue;
        rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_VARINT, err);
        if (rc < 0)
            return rc;
        if ((int64_t)field.value < 0)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "negative dim_value %lld at byte %zu",
                                (long long)(int64_t)field.value, field.offset);
        *dim = (int64_t)field.value;
    }
    return rc;
}

static int parse_shape(const yd_protobuf_reader *parent,
                       const yd_protobuf_field *parent_field,
                       yd_onnx_value_info *info, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    info->ndims = 0;
    yd_protobuf_enter(parent, parent_field, "TensorShapeProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        if (field.number != 1)
            continue;
        if (info->ndims == YD_ONNX_MAX_DIMS)
            return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                                "value '%s' has more than %d dimensions, at byte %zu",
                                info->name ? info->name : "", YD_ONNX_MAX_DIMS,
                                field.offset);
        rc = parse_dimension(&reader, &field, &info->dims[info->ndims], err);
        if (rc < 0)
            return rc;
        info->ndims++;
    }
    return rc;
}

/* Parses TypeProto.Tensor: elem_type and shape. */
static int parse_tensor_type(const yd_protobuf_reader *parent,
                             const yd_protobuf_field *parent_field,
                             yd_onnx_value_info *info, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "TypeProto.Tensor", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        if (field.number == 1)
            rc = read_int32(&reader, &field, &info->elem_type, err);
        else if (field.number == 2)
            rc = parse_shape(&reader, &field, info, err);
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* Parses a ValueInfoProto into a zeroed value info. */
static int parse_value_info(const yd_protobuf_reader *parent,
                            const yd_protobuf_field *parent_field,
                            yd_onnx_value_info *info, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_reader type_reader;
    yd_protobuf_field field;
    yd_protobuf_field type_field;
    int rc;

    info->ndims = -1;
    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "ValueInfoProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        if (field.number == 1) {
            rc = copy_string(&reader, &field, &info->name, err);
            if (rc < 0)
                return rc;
            continue;
        }
        if (field.number != 2)
            continue;

        /* TypeProto: only tensor_type (1) is kept; sequence, map etc. are skipped. */
        rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_LEN, err);
        if (rc < 0)
            return rc;
        yd_protobuf_enter(&reader, &field, "TypeProto", &type_reader);
        while ((rc = yd_protobuf_next(&type_reader, &type_field, err)) > 0) {
            if (type_field.number != 1)
                continue;
            rc = parse_tensor_type(&type_reader, &type_field, info, err);
            if (rc < 0)
                return rc;
        }
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;

    if (!info->name || !info->name[0])
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "graph input or output without a name at byte %zu",
                            parent_field->offset);
    return YD_OK;
}

/* -------------------------------------------------------------------- graph */

/* Capacities of the model's growable arrays while parsing. */
typedef struct capacities {
    int nodes;
    int initializers;
    int inputs;
    int outputs;
    int metadata_keys;
    int metadata_values;
} capacities;

static int append_value_info(const yd_protobuf_reader *reader,
                             const yd_protobuf_field *field,
                             yd_onnx_value_info **infos, int *count,
                             int *capacity, const char *what, yd_error *err)
{
    void *items = *infos;
    int rc = reserve_item(&items, *count, capacity, sizeof **infos,
                          MAX_GRAPH_VALUES, what, field, err);

    *infos = items;
    if (rc < 0)
        return rc;
    (*count)++;
    return parse_value_info(reader, field, &(*infos)[*count - 1], err);
}

static int parse_graph(const yd_protobuf_reader *parent,
                       const yd_protobuf_field *parent_field,
                       yd_onnx_model *model, capacities *caps, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    void *items;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "GraphProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        switch (field.number) {
        case 1:
            items = model->nodes;
            rc = reserve_item(&items, model->nnodes, &caps->nodes,
                              sizeof *model->nodes, MAX_NODES, "nodes",
                              &field, err);
            model->nodes = items;
            if (rc < 0)
                break;
            model->nnodes++;
            rc = parse_node(&reader, &field, &model->nodes[model->nnodes - 1], err);
            break;
        case 5: {
            yd_onnx_tensor *tensor;

            items = model->initializers;
            rc = reserve_item(&items, model->ninitializers, &caps->initializers,
                              sizeof *model->initializers, MAX_INITIALIZERS,
                              "initializers", &field, err);
            model->initializers = items;
            if (rc < 0)
                break;
            tensor = &model->initializers[model->ninitializers++];
            rc = parse_tensor(&reader, &field, tensor, err);
            if (rc == 0 && !tensor->name[0])
                rc = yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                  "initializer without a name at byte %zu",
                                  field.offset);
            break;
        }
        case 11:
            rc = append_value_info(&reader, &field, &model->inputs,
                                   &model->ninputs, &caps->inputs,
                                   "graph inputs", err);
            break;
        case 12:
            rc = append_value_info(&reader, &field, &model->outputs,
                                   &model->noutputs, &caps->outputs,
                                   "graph outputs", err);
            break;
        default:
            break;
        }
        if (rc < 0)
            return rc;
    }
    return rc;
}

static int compare_initializer_names(const void *a, const void *b)
{
    const yd_onnx_tensor *ta = *(const yd_onnx_tensor *const *)a;
    const yd_onnx_tensor *tb = *(const yd_onnx_tensor *const *)b;

    return strcmp(ta->name, tb->name);
}

/* Builds the sorted initializer index; duplicate names are invalid ONNX. */
static int index_initializers(yd_onnx_model *model, yd_error *err)
{
    int n = model->ninitializers;

    model->initializer_index = malloc((size_t)(n > 0 ? n : 1) * sizeof *model->initializer_index);
    if (!model->initializer_index)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < n; i++)
        model->initializer_index[i] = &model->initializers[i];
    qsort(model->initializer_index, (size_t)n, sizeof *model->initializer_index,
          compare_initializer_names);
    for (int i = 1; i < n; i++)
        if (strcmp(model->initializer_index[i - 1]->name,
                   model->initializer_index[i]->name) == 0)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "two initializers are named '%s'",
                                model->initializer_index[i]->name);
    return YD_OK;
}

/*
 * Drops graph inputs that name an initializer: IR versions before 4 list
 * every initializer as a graph input too.
 */
static void drop_initializer_inputs(yd_onnx_model *model)
{
    int kept_count = 0;

    for (int i = 0; i < model->ninputs; i++) {
        if (yd_onnx_find_initializer(model, model->inputs[i].name)) {
            free(model->inputs[i].name);
            continue;
        }
        model->inputs[kept_count++] = model->inputs[i];
    }
    model->ninputs = kept_count;
}

/* -------------------------------------------------------------------- model */

/* Parses OperatorSetIdProto and keeps the version of the default domain. */
static int parse_opset_import(const yd_protobuf_reader *parent,
                              const yd_protobuf_field *parent_field,
                              yd_onnx_model *model, yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    bool default_domain = true;
    int64_t version = 0;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;
    yd_protobuf_enter(parent, parent_field, "OperatorSetIdProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        if (field.number == 1) {
            const char *domain = (const char *)reader.data + field.start;

            rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_LEN, err);
            if (rc < 0)
                return rc;
            default_domain = field.length == 0 ||
                (field.length == 7 && memcmp(domain, "ai.onnx", 7) == 0);
        } else if (field.number == 2) {
            rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_VARINT, err);
            if (rc < 0)
                return rc;
            version = (int64_t)field.value;
        }
    }
    if (rc < 0)
        return rc;
    if (default_domain)
        model->opset = version;
    return YD_OK;
}

/* Parses StringStringEntryProto into metadata_keys/metadata_values. */
static int parse_metadata_entry(const yd_protobuf_reader *parent,
                                const yd_protobuf_field *parent_field,
                                yd_onnx_model *model, capacities *caps,
                                yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    void *items;
    int n = model->nmetadata;
    int rc;

    rc = yd_protobuf_expect(parent, parent_field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;

    items = model->metadata_keys;
    rc = reserve_item(&items, n, &caps->metadata_keys, sizeof(char *),
                      MAX_METADATA, "metadata entries", parent_field, err);
    model->metadata_keys = items;
    if (rc < 0)
        return rc;
    items = model->metadata_values;
    rc = reserve_item(&items, n, &caps->metadata_values, sizeof(char *),
                      MAX_METADATA, "metadata entries", parent_field, err);
    model->metadata_values = items;
    if (rc < 0)
        return rc;
    model->nmetadata++;

    yd_protobuf_enter(parent, parent_field, "StringStringEntryProto", &reader);
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        if (field.number == 1)
            rc = copy_string(&reader, &field, &model->metadata_keys[n], err);
        else if (field.number == 2)
            rc = copy_string(&reader, &field, &model->metadata_values[n], err);
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;

    rc = default_string(&model->metadata_keys[n], err);
    if (rc < 0)
        return rc;
    return default_string(&model->metadata_values[n], err);
}

static int parse_model(const uint8_t *data, size_t size, yd_onnx_model *model,
                       yd_error *err)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    capacities caps = { 0 };
    bool has_graph = false;
    int nopsets = 0;
    int rc;

    yd_protobuf_init(&reader, data, size, "ModelProto");
    while ((rc = yd_protobuf_next(&reader, &field, err)) > 0) {
        switch (field.number) {
        case 1:
            rc = yd_protobuf_expect(&reader, &field, YD_PROTOBUF_VARINT, err);
            model->ir_version = (int64_t)field.value;
            break;
        case 2:
            rc = copy_string(&reader, &field, &model->producer_name, err);
            break;
        case 7:
            if (has_graph) {
                rc = yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                  "second graph (field 7 of ModelProto) at byte %zu",
                                  field.offset);
                break;
            }
            has_graph = true;
            rc = parse_graph(&reader, &field, model, &caps, err);
            break;
        case 8:
            if (++nopsets > MAX_OPSET_IMPORTS) {
                rc = yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                  "more than %d opset imports, at byte %zu",
                                  MAX_OPSET_IMPORTS, field.offset);
                break;
            }
            rc = parse_opset_import(&reader, &field, model, err);
            break;
        case 14:
            rc = parse_metadata_entry(&reader, &field, model, &caps, err);
            break;
        default:
            break;
        }
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;

    if (!has_graph)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "no graph (field 7 of ModelProto) in %zu bytes", size);
    rc = default_string(&model->producer_name, err);
    if (rc < 0)
        return rc;
    rc = index_initializers(model, err);
    if (rc < 0)
        return rc;
    drop_initializer_inputs(model);
    return YD_OK;
}

int yd_onnx_parse(const uint8_t *data, size_t size, yd_onnx_model **out,
                  yd_error *err)
{
    yd_error local;
    yd_error *e = err ? err : &local;
    yd_onnx_model *model;
    int rc;

    *out = NULL;
    if (!data && size > 0)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "yd_onnx_parse: data is NULL but size is %zu", size);
    model = calloc(1, sizeof *model);
    if (!model)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory");

    rc = parse_model(data, size, model, e);
    if (rc < 0) {
        char detail[sizeof e->message];

        /* Prefix once here so the helpers' messages stay short. */
        memcpy(detail, e->message, sizeof detail);
        if (rc == YD_ERR_MODEL_FORMAT)
            yd_error_set(e, rc, "invalid ONNX file: %s", detail);
        else if (rc == YD_ERR_MODEL_UNSUPPORTED)
            yd_error_set(e, rc, "unsupported ONNX file: %s", detail);
        yd_onnx_free(model);
        return rc;
    }
    *out = model;
    return YD_OK;
}

/* ------------------------------------------------------------------ lookups */

const yd_onnx_tensor *yd_onnx_find_initializer(const yd_onnx_model *model,
                                               const char *name)
{
    int low = 0, high = model->ninitializers - 1;

    if (!name || !model->initializer_index)
        return NULL;
    while (low <= high) {
        int mid = low + (high - low) / 2;
        int order = strcmp(name, model->initializer_index[mid]->name);

        if (order == 0)
            return model->initializer_index[mid];
        if (order < 0)
            high = mid - 1;
        else
            low = mid + 1;
    }
    return NULL;
}

const yd_onnx_attr *yd_onnx_node_attr(const yd_onnx_node *node,
                                      const char *name)
{
    for (int i = 0; i < node->nattrs; i++)
        if (strcmp(node->attrs[i].name, name) == 0)
            return &node->attrs[i];
    return NULL;
}

/* IEEE 754 binary16 to binary32, exact for every input including subnormals. */
static float half_to_float(uint16_t half)
{
    uint32_t sign = (uint32_t)(half >> 15) << 31;
    uint32_t exponent = (half >> 10) & 0x1f;
    uint32_t mantissa = half & 0x3ff;
    uint32_t bits;
    float value;

    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else {
        /* Zero or subnormal: mantissa * 2^-24. */
        value = ldexpf((float)mantissa, -24);
        return sign ? -value : value;
    }
    memcpy(&value, &bits, sizeof value);
    return value;
}

static float bfloat16_to_float(uint16_t raw)
{
    uint32_t bits = (uint32_t)raw << 16;
    float value;

    memcpy(&value, &bits, sizeof value);
    return value;
}

/*
 * Reads element i into *as_int for integer types or *as_double for floating
 * types (*as_double is set for both). A double represents every supported
 * value exactly except 64-bit integers beyond 2^53. Returns false for an
 * unsupported type or an index out of range.
 */
static bool read_element(const yd_onnx_tensor *tensor, int64_t i,
                         double *as_double, int64_t *as_int, bool *is_int)
{
    size_t size = yd_onnx_element_size(tensor->data_type);
    const uint8_t *p;

    if (!tensor->raw || i < 0 || i >= tensor->count || size == 0)
        return false;
    p = (const uint8_t *)tensor->raw + (size_t)i * size;
    *is_int = true;

    switch (tensor->data_type) {
    case YD_ONNX_FLOAT: {
        float v;

        memcpy(&v, p, sizeof v);
        *as_double = v;
        *is_int = false;
        return true;
    }
    case YD_ONNX_DOUBLE:
        memcpy(as_double, p, sizeof *as_double);
        *is_int = false;
        return true;
    case YD_ONNX_FLOAT16:
    case YD_ONNX_BFLOAT16: {
        uint16_t v;

        memcpy(&v, p, sizeof v);
        *as_double = tensor->data_type == YD_ONNX_FLOAT16 ? half_to_float(v)
                                                          : bfloat16_to_float(v);
        *is_int = false;
        return true;
    }
    case YD_ONNX_INT8:
        *as_int = (int8_t)p[0];
        break;
    case YD_ONNX_UINT8:
    case YD_ONNX_BOOL:
        *as_int = p[0];
        break;
    case YD_ONNX_INT16: {
        int16_t v;

        memcpy(&v, p, sizeof v);
        *as_int = v;
        break;
    }
    case YD_ONNX_UINT16: {
        uint16_t v;

        memcpy(&v, p, sizeof v);
        *as_int = v;
        break;
    }
    case YD_ONNX_INT32: {
        int32_t v;

        memcpy(&v, p, sizeof v);
        *as_int = v;
        break;
    }
    case YD_ONNX_UINT32: {
        uint32_t v;

        memcpy(&v, p, sizeof v);
        *as_int = v;
        break;
    }
    case YD_ONNX_INT64:
    case YD_ONNX_UINT64: {
        /* UINT64 values above INT64_MAX wrap; no YOLOv8 export has any. */
        int64_t v;

        memcpy(&v, p, sizeof v);
        *as_int = v;
        break;
    }
    default:
        return false;
    }
    *as_double = (double)*as_int;
    return true;
}

float yd_onnx_tensor_float(const yd_onnx_tensor *tensor, int64_t i)
{
    double as_double;
    int64_t as_int;
    bool is_int;

    if (!read_element(tensor, i, &as_double, &as_int, &is_int))
        return 0.0f;
    return (float)as_double;
}

int64_t yd_onnx_tensor_int(const yd_onnx_tensor *tensor, int64_t i)
{
    double as_double;
    int64_t as_int;
    bool is_int;

    if (!read_element(tensor, i, &as_double, &as_int, &is_int))
        return 0;
    if (is_int)
        return as_int;
    if (isnan(as_double))
        return 0;
    /* 2^63 is exact in double; anything at or beyond it saturates. */
    if (as_double >= 9223372036854775808.0)
        return INT64_MAX;
    if (as_double <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)as_double;
}
