/*
 * Tests of the protobuf decoder and the ONNX reader: hand-built messages
 * with every encoding the reader accepts, malformed and hostile input, and
 * the three shared models (fp32 yolov8n, random-weight yolov8s, QDQ int8
 * yolov8n), including truncated and bit-flipped copies of yolov8n.onnx.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "import_onnx.h"
#include "onnx.h"
#include "protobuf.h"
#include "testlib.h"
#include "util.h"

/* ------------------------------------------------------------ encoding */

/* A growable byte buffer for building protobuf messages by hand. */
typedef struct bytes {
    uint8_t *data;
    size_t size;
    size_t capacity;
} bytes;

static void put_byte(bytes *b, uint8_t byte)
{
    if (b->size == b->capacity) {
        b->capacity = b->capacity ? b->capacity * 2 : 64;
        b->data = realloc(b->data, b->capacity);
        if (!b->data) {
            fprintf(stderr, "FATAL: out of memory\n");
            exit(2);
        }
    }
    b->data[b->size++] = byte;
}

static void put_raw(bytes *b, const void *data, size_t size)
{
    for (size_t i = 0; i < size; i++)
        put_byte(b, ((const uint8_t *)data)[i]);
}

static void put_varint(bytes *b, uint64_t value)
{
    while (value >= 0x80) {
        put_byte(b, (uint8_t)(value | 0x80));
        value >>= 7;
    }
    put_byte(b, (uint8_t)value);
}

static void put_tag(bytes *b, uint32_t field, int wire_type)
{
    put_varint(b, (uint64_t)field << 3 | (uint64_t)wire_type);
}

static void put_uint(bytes *b, uint32_t field, uint64_t value)
{
    put_tag(b, field, YD_PROTOBUF_VARINT);
    put_varint(b, value);
}

static void put_len(bytes *b, uint32_t field, const void *data, size_t size)
{
    put_tag(b, field, YD_PROTOBUF_LEN);
    put_varint(b, size);
    put_raw(b, data, size);
}

static void put_string(bytes *b, uint32_t field, const char *text)
{
    put_len(b, field, text, strlen(text));
}

/* Appends `sub` as a LEN field and frees it. */
static void put_message(bytes *b, uint32_t field, bytes *sub)
{
    put_len(b, field, sub->data, sub->size);
    free(sub->data);
    memset(sub, 0, sizeof *sub);
}

static void put_float(bytes *b, uint32_t field, float value)
{
    put_tag(b, field, YD_PROTOBUF_FIXED32);
    put_raw(b, &value, sizeof value);
}

/* Parses a heap copy of exactly `size` bytes, so ASan reports any over-read. */
static int parse_copy(const uint8_t *data, size_t size, yd_onnx_model **model,
                      yd_error *err)
{
    uint8_t *copy = malloc(size ? size : 1);
    int rc;

    if (size > 0)
        memcpy(copy, data, size);
    rc = yd_onnx_parse(copy, size, model, err);
    /* A model points into its buffer, so it cannot outlive the copy. */
    yd_onnx_free(*model);
    *model = NULL;
    free(copy);
    return rc;
}

/* ------------------------------------------------------------ protobuf */

static void test_protobuf_varint_limits(void)
{
    /* Field 1, varint 2^64 - 1 in 10 bytes; then field 2 with an 11-byte varint. */
    static const uint8_t max_varint[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0x01 };
    static const uint8_t overlong[] = { 0x10, 0x80, 0x80, 0x80, 0x80, 0x80,
                                        0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
    static const uint8_t overflow[] = { 0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0x02 };
    static const uint8_t truncated[] = { 0x10, 0xff, 0xff };
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    yd_error err = { 0 };

    yd_protobuf_init(&reader, max_varint, sizeof max_varint, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), 1);
    CHECK_INT_EQ(field.number, 1);
    CHECK(field.value == UINT64_MAX);
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), 0);

    yd_protobuf_init(&reader, overlong, sizeof overlong, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "invalid varint field 2 of Test at byte 0") != NULL);

    yd_protobuf_init(&reader, overflow, sizeof overflow, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), YD_ERR_MODEL_FORMAT);

    yd_protobuf_init(&reader, truncated, sizeof truncated, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "truncated varint field 2") != NULL);
}

static void test_protobuf_bad_tags(void)
{
    static const uint8_t field_zero[] = { 0x00, 0x01 };
    static const uint8_t wire_type_6[] = { 0x0e, 0x01 };
    static const uint8_t wire_type_7[] = { 0x0f, 0x01 };
    static const uint8_t stray_end_group[] = { 0x0c };
    static const uint8_t short_fixed64[] = { 0x09, 1, 2, 3, 4, 5, 6, 7 };
    static const uint8_t short_fixed32[] = { 0x0d, 1, 2, 3 };
    /* Field 3 LEN, length 5, but only 2 bytes follow. */
    static const uint8_t short_len[] = { 0x08, 0x01, 0x1a, 0x05, 'a', 'b' };
    const struct {
        const uint8_t *data;
        size_t size;
        const char *message;
    } cases[] = {
        { field_zero, sizeof field_zero, "invalid field number 0 in Test at byte 0" },
        { wire_type_6, sizeof wire_type_6, "invalid wire type 6 for field 1" },
        { wire_type_7, sizeof wire_type_7, "invalid wire type 7 for field 1" },
        { stray_end_group, sizeof stray_end_group, "unexpected end-group field 1" },
        { short_fixed64, sizeof short_fixed64, "truncated 64-bit field 1" },
        { short_fixed32, sizeof short_fixed32, "truncated 32-bit field 1" },
        { short_len, sizeof short_len,
          "truncated length-delimited field 3 of Test at byte 2" },
    };

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        yd_protobuf_reader reader;
        yd_protobuf_field field;
        yd_error err = { 0 };
        int rc;

        yd_protobuf_init(&reader, cases[c].data, cases[c].size, "Test");
        while ((rc = yd_protobuf_next(&reader, &field, &err)) > 0)
            continue;
        CHECK_INT_EQ(rc, YD_ERR_MODEL_FORMAT);
        if (!strstr(err.message, cases[c].message)) {
            fprintf(stderr, "  case %zu: message '%s', expected '%s'\n", c,
                    err.message, cases[c].message);
            CHECK(!"error message");
        }
    }
}

static void test_protobuf_groups_skipped(void)
{
    bytes b = { 0 };
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    yd_error err = { 0 };

    /* Field 5 group holding a varint, a LEN and a nested group 6; then field 2. */
    put_tag(&b, 5, YD_PROTOBUF_GROUP_START);
    put_uint(&b, 1, 300);
    put_string(&b, 3, "skip me");
    put_tag(&b, 6, YD_PROTOBUF_GROUP_START);
    put_float(&b, 1, 1.0f);
    put_tag(&b, 6, YD_PROTOBUF_GROUP_END);
    put_tag(&b, 5, YD_PROTOBUF_GROUP_END);
    put_uint(&b, 2, 42);

    yd_protobuf_init(&reader, b.data, b.size, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), 1);
    CHECK_INT_EQ(field.number, 2);
    CHECK_INT_EQ(field.value, 42);
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), 0);

    /* Mismatched end tag. */
    b.size = 0;
    put_tag(&b, 5, YD_PROTOBUF_GROUP_START);
    put_tag(&b, 6, YD_PROTOBUF_GROUP_END);
    yd_protobuf_init(&reader, b.data, b.size, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "does not match start-group field 5") != NULL);

    /* Unterminated group. */
    b.size = 0;
    put_tag(&b, 5, YD_PROTOBUF_GROUP_START);
    put_uint(&b, 1, 1);
    yd_protobuf_init(&reader, b.data, b.size, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "unterminated group field 5") != NULL);

    /* 100000 nested groups: rejected by the depth limit, not by the stack. */
    b.size = 0;
    for (int i = 0; i < 100000; i++)
        put_tag(&b, 5, YD_PROTOBUF_GROUP_START);
    yd_protobuf_init(&reader, b.data, b.size, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "nested deeper than") != NULL);

    free(b.data);
}

static void test_protobuf_packed_and_unpacked(void)
{
    bytes b = { 0 };
    bytes packed = { 0 };
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    yd_protobuf_array ints = { 0 };
    yd_protobuf_array floats = { 0 };
    yd_error err = { 0 };
    const int64_t *int_items;
    const float *float_items;
    float packed_floats[3] = { 1.5f, -2.0f, 1e-3f };
    int rc;

    /* ints: 7, then packed [-1, 0, 300], then 1 << 40. */
    put_uint(&b, 1, 7);
    put_varint(&packed, (uint64_t)-1);
    put_varint(&packed, 0);
    put_varint(&packed, 300);
    put_message(&b, 1, &packed);
    put_uint(&b, 1, (uint64_t)1 << 40);
    /* floats: packed three, then 0.25 unpacked. */
    put_len(&b, 2, packed_floats, sizeof packed_floats);
    put_float(&b, 2, 0.25f);

    yd_protobuf_init(&reader, b.data, b.size, "Test");
    while ((rc = yd_protobuf_next(&reader, &field, &err)) > 0) {
        if (field.number == 1)
            CHECK_OK(yd_protobuf_append_varints(&reader, &field, &ints, 100, &err));
        else
            CHECK_OK(yd_protobuf_append_floats(&reader, &field, &floats, 100, &err));
    }
    CHECK_INT_EQ(rc, 0);
    int_items = ints.items;
    float_items = floats.items;
    CHECK_INT_EQ(ints.count, 5);
    if (ints.count == 5) {
        CHECK_INT_EQ(int_items[0], 7);
        CHECK_INT_EQ(int_items[1], -1);
        CHECK_INT_EQ(int_items[2], 0);
        CHECK_INT_EQ(int_items[3], 300);
        CHECK_INT_EQ(int_items[4], (int64_t)1 << 40);
    }
    CHECK_INT_EQ(floats.count, 4);
    if (floats.count == 4) {
        CHECK(float_items[0] == 1.5f);
        CHECK(float_items[1] == -2.0f);
        CHECK(float_items[2] == 1e-3f);
        CHECK(float_items[3] == 0.25f);
    }

    /* The cap counts values across fields: 5 ints already, cap 6, 3 more. */
    yd_protobuf_init(&reader, b.data, b.size, "Test");
    yd_protobuf_next(&reader, &field, &err);
    yd_protobuf_next(&reader, &field, &err);
    CHECK_INT_EQ(yd_protobuf_append_varints(&reader, &field, &ints, 6, &err),
                 YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "more than 6 values") != NULL);

    free(ints.items);
    free(floats.items);

    /* A packed varint run whose last byte still has its high bit set. */
    b.size = 0;
    put_len(&b, 1, "\x01\x80", 2);
    memset(&ints, 0, sizeof ints);
    yd_protobuf_init(&reader, b.data, b.size, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), 1);
    CHECK_INT_EQ(yd_protobuf_append_varints(&reader, &field, &ints, 100, &err),
                 YD_ERR_MODEL_FORMAT);
    CHECK(strstr(err.message, "truncated packed varint") != NULL);

    /* Packed floats whose length is not a multiple of 4. */
    b.size = 0;
    put_len(&b, 2, "\0\0\0\0\0", 5);
    memset(&floats, 0, sizeof floats);
    yd_protobuf_init(&reader, b.data, b.size, "Test");
    CHECK_INT_EQ(yd_protobuf_next(&reader, &field, &err), 1);
    CHECK_INT_EQ(yd_protobuf_append_floats(&reader, &field, &floats, 100, &err),
                 YD_ERR_MODEL_FORMAT);
    free(ints.items);
    free(floats.items);
    free(b.data);
}

/* ---------------------------------------------------------- hand-built */

/* TensorProto with a name, dims and data_type; data fields are added by the caller. */
static void put_tensor_header(bytes *t, const char *name, int data_type,
                              const int64_t *dims, int ndims, bool packed_dims)
{
    bytes packed = { 0 };

    if (packed_dims) {
        for (int d = 0; d < ndims; d++)
            put_varint(&packed, (uint64_t)dims[d]);
        put_message(t, 1, &packed);
    } else {
        for (int d = 0; d < ndims; d++)
            put_uint(t, 1, (uint64_t)dims[d]);
    }
    put_uint(t, 2, (uint64_t)data_type);
    put_string(t, 8, name);
}

/* ValueInfoProto of a FLOAT tensor; a dim of -1 is written as dim_param "N". */
static void put_value_info(bytes *b, uint32_t field, const char *name,
                           const int64_t *dims, int ndims)
{
    bytes info = { 0 }, type = { 0 }, tensor_type = { 0 }, shape = { 0 };

    for (int d = 0; d < ndims; d++) {
        bytes dim = { 0 };

        if (dims[d] < 0)
            put_string(&dim, 2, "N");
        else
            put_uint(&dim, 1, (uint64_t)dims[d]);
        put_message(&shape, 1, &dim);
    }
    put_uint(&tensor_type, 1, YD_ONNX_FLOAT);
    put_message(&tensor_type, 2, &shape);
    put_message(&type, 1, &tensor_type);
    put_string(&info, 1, name);
    put_message(&info, 2, &type);
    put_message(b, field, &info);
}

/* Offsets in the hand-built model that the prefix test depends on. */
typedef struct small_model {
    bytes bytes;
    size_t graph_end;     /* one past the graph field */
} small_model;

/*
 * Builds a ModelProto that uses every encoding the reader accepts. It has
 * packed and unpacked dims, ints and floats, raw_data and each typed data
 * field, and an attribute tensor. It also has a graph input that repeats an
 * initializer (as IR version 3 requires), unknown fields and a group.
 */
static void build_small_model(small_model *out)
{
    bytes model = { 0 }, graph = { 0 }, node = { 0 }, attr = { 0 };
    bytes tensor = { 0 }, packed = { 0 }, entry = { 0 }, opset = { 0 };
    const int64_t w_dims[] = { 2, 3 };
    const int64_t one[] = { 1 };
    const int64_t three[] = { 3 };
    const int64_t in_dims[] = { -1, 3, 4, 4 };
    const int64_t out_dims[] = { 1, 2, 4, 4 };
    float w[6] = { 0.5f, -1.0f, 2.0f, 3.25f, -0.125f, 1e-6f };
    float ints_floats[2] = { 0.5f, 0.75f };

    memset(out, 0, sizeof *out);
    put_uint(&model, 1, 8);
    put_string(&model, 2, "hand-built");
    put_uint(&model, 5, 1);  /* model_version, not kept */
    put_tag(&model, 99, YD_PROTOBUF_GROUP_START);
    put_uint(&model, 1, 1);
    put_tag(&model, 99, YD_PROTOBUF_GROUP_END);

    /* Node: Conv with attributes in each encoding. */
    put_string(&node, 1, "x");
    put_string(&node, 1, "w");
    put_string(&node, 1, "");
    put_string(&node, 2, "y");
    put_string(&node, 3, "conv0");
    put_string(&node, 4, "Conv");
    put_string(&attr, 1, "kernel_shape");
    put_varint(&packed, 3);
    put_varint(&packed, 3);
    put_message(&attr, 8, &packed);
    put_uint(&attr, 20, YD_ONNX_ATTR_INTS);
    put_message(&node, 5, &attr);
    put_string(&attr, 1, "pads");
    for (int i = 0; i < 4; i++)
        put_uint(&attr, 8, (uint64_t)-1);  /* unpacked, negative */
    put_uint(&attr, 20, YD_ONNX_ATTR_INTS);
    put_message(&node, 5, &attr);
    put_string(&attr, 1, "alpha");
    put_float(&attr, 2, 0.125f);
    put_uint(&attr, 20, YD_ONNX_ATTR_FLOAT);
    put_message(&node, 5, &attr);
    put_string(&attr, 1, "group");
    put_uint(&attr, 3, (uint64_t)-7);  /* no type field: inferred as INT */
    put_message(&node, 5, &attr);
    put_string(&attr, 1, "mode");
    put_string(&attr, 4, "nearest");
    put_uint(&attr, 20, YD_ONNX_ATTR_STRING);
    put_message(&node, 5, &attr);
    put_string(&attr, 1, "scales");
    put_len(&attr, 7, ints_floats, sizeof ints_floats);
    put_float(&attr, 7, 2.0f);
    put_uint(&attr, 20, YD_ONNX_ATTR_FLOATS);
    put_message(&node, 5, &attr);
    put_string(&attr, 1, "value");
    put_tensor_header(&tensor, "", YD_ONNX_INT64, three, 1, true);
    put_varint(&packed, 5);
    put_varint(&packed, (uint64_t)-6);
    put_varint(&packed, (uint64_t)1 << 50);
    put_message(&tensor, 7, &packed);
    put_message(&attr, 5, &tensor);
    put_uint(&attr, 20, YD_ONNX_ATTR_TENSOR);
    put_message(&node, 5, &attr);
    put_string(&node, 7, "");
    put_message(&graph, 1, &node);

    put_string(&node, 1, "y");
    put_string(&node, 2, "z");
    put_string(&node, 4, "Sigmoid");
    put_string(&node, 7, "ai.onnx");
    put_message(&graph, 1, &node);

    put_string(&graph, 2, "small");

    /* Initializers: raw FLOAT, unpacked float_data, INT8 and FLOAT16 in int32_data, DOUBLE. */
    put_tensor_header(&tensor, "w", YD_ONNX_FLOAT, w_dims, 2, false);
    put_len(&tensor, 9, w, sizeof w);
    put_message(&graph, 5, &tensor);
    put_tensor_header(&tensor, "f", YD_ONNX_FLOAT, three, 1, true);
    put_float(&tensor, 4, 1.0f);
    put_float(&tensor, 4, -2.0f);
    put_float(&tensor, 4, 3.5f);
    put_message(&graph, 5, &tensor);
    put_tensor_header(&tensor, "q", YD_ONNX_INT8, three, 1, false);
    put_varint(&packed, (uint64_t)-128);
    put_varint(&packed, 127);
    put_varint(&packed, (uint64_t)-5);
    put_message(&tensor, 5, &packed);
    put_message(&graph, 5, &tensor);
    put_tensor_header(&tensor, "h", YD_ONNX_FLOAT16, three, 1, true);
    put_uint(&tensor, 5, 0x3c00);  /* 1.0 */
    put_uint(&tensor, 5, 0xc500);  /* -5.0 */
    put_uint(&tensor, 5, 0x0001);  /* 2^-24, the smallest subnormal */
    put_message(&graph, 5, &tensor);
    put_tensor_header(&tensor, "d", YD_ONNX_DOUBLE, one, 0, true);
    put_tag(&tensor, 10, YD_PROTOBUF_FIXED64);
    {
        double value = -2.75;

        put_raw(&tensor, &value, sizeof value);
    }
    put_message(&graph, 5, &tensor);

    put_value_info(&graph, 11, "x", in_dims, 4);
    put_value_info(&graph, 11, "w", w_dims, 2);
    put_value_info(&graph, 12, "z", out_dims, 4);
    put_string(&graph, 10, "doc string, not kept");
    put_message(&model, 7, &graph);
    out->graph_end = model.size;

    put_string(&opset, 1, "");
    put_uint(&opset, 2, 17);
    put_message(&model, 8, &opset);
    put_string(&opset, 1, "com.microsoft");
    put_uint(&opset, 2, 1);
    put_message(&model, 8, &opset);
    put_string(&entry, 1, "names");
    put_string(&entry, 2, "{0: 'thing'}");
    put_message(&model, 14, &entry);
    put_string(&entry, 1, "empty");
    put_message(&model, 14, &entry);

    out->bytes = model;
}

static void test_onnx_small_model(void)
{
    small_model small;
    yd_onnx_model *model = NULL;
    yd_error err = { 0 };
    const yd_onnx_node *conv;
    const yd_onnx_attr *attr;
    const yd_onnx_tensor *t;

    build_small_model(&small);
    CHECK_OK(yd_onnx_parse(small.bytes.data, small.bytes.size, &model, &err));
    if (!model) {
        fprintf(stderr, "  %s\n", err.message);
        free(small.bytes.data);
        return;
    }
    CHECK_INT_EQ(model->ir_version, 8);
    CHECK_INT_EQ(model->opset, 17);
    CHECK(strcmp(model->producer_name, "hand-built") == 0);
    CHECK_INT_EQ(model->nmetadata, 2);
    CHECK(strcmp(model->metadata_keys[0], "names") == 0);
    CHECK(strcmp(model->metadata_values[0], "{0: 'thing'}") == 0);
    CHECK(strcmp(model->metadata_values[1], "") == 0);

    /* "w" is also an initializer, so only "x" is a real input. */
    CHECK_INT_EQ(model->ninputs, 1);
    CHECK(strcmp(model->inputs[0].name, "x") == 0);
    CHECK_INT_EQ(model->inputs[0].elem_type, YD_ONNX_FLOAT);
    CHECK_INT_EQ(model->inputs[0].ndims, 4);
    CHECK_INT_EQ(model->inputs[0].dims[0], -1);
    CHECK_INT_EQ(model->inputs[0].dims[3], 4);
    CHECK_INT_EQ(model->noutputs, 1);
    CHECK_INT_EQ(model->outputs[0].dims[1], 2);

    CHECK_INT_EQ(model->nnodes, 2);
    conv = &model->nodes[0];
    CHECK(strcmp(conv->op_type, "Conv") == 0);
    CHECK(strcmp(conv->name, "conv0") == 0);
    CHECK(strcmp(model->nodes[1].name, "") == 0);
    CHECK(strcmp(model->nodes[1].domain, "ai.onnx") == 0);
    CHECK_INT_EQ(conv->ninputs, 3);
    CHECK(strcmp(conv->inputs[2], "") == 0);
    CHECK_INT_EQ(conv->noutputs, 1);
    CHECK_INT_EQ(conv->nattrs, 7);

    attr = yd_onnx_node_attr(conv, "kernel_shape");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->type, YD_ONNX_ATTR_INTS);
        CHECK_INT_EQ(attr->nints, 2);
        CHECK_INT_EQ(attr->ints[0], 3);
        CHECK_INT_EQ(attr->ints[1], 3);
    }
    attr = yd_onnx_node_attr(conv, "pads");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->nints, 4);
        CHECK_INT_EQ(attr->ints[3], -1);
    }
    attr = yd_onnx_node_attr(conv, "alpha");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->type, YD_ONNX_ATTR_FLOAT);
        CHECK(attr->f == 0.125f);
    }
    attr = yd_onnx_node_attr(conv, "group");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->type, YD_ONNX_ATTR_INT);
        CHECK_INT_EQ(attr->i, -7);
    }
    attr = yd_onnx_node_attr(conv, "mode");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->type, YD_ONNX_ATTR_STRING);
        CHECK(strcmp(attr->s, "nearest") == 0);
    }
    attr = yd_onnx_node_attr(conv, "scales");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->nfloats, 3);
        CHECK(attr->floats[0] == 0.5f);
        CHECK(attr->floats[2] == 2.0f);
    }
    attr = yd_onnx_node_attr(conv, "value");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->type, YD_ONNX_ATTR_TENSOR);
        CHECK(attr->t != NULL);
    }
    if (attr && attr->t) {
        CHECK_INT_EQ(attr->t->count, 3);
        CHECK_INT_EQ(yd_onnx_tensor_int(attr->t, 1), -6);
        CHECK_INT_EQ(yd_onnx_tensor_int(attr->t, 2), (int64_t)1 << 50);
    }
    CHECK(yd_onnx_node_attr(conv, "missing") == NULL);

    CHECK_INT_EQ(model->ninitializers, 5);
    t = yd_onnx_find_initializer(model, "w");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT_EQ(t->ndims, 2);
        CHECK_INT_EQ(t->dims[0], 2);
        CHECK_INT_EQ(t->dims[1], 3);
        CHECK_INT_EQ(t->count, 6);
        /* raw_data is used in place, not copied. */
        CHECK(t->owned == NULL);
        CHECK((const uint8_t *)t->raw > small.bytes.data &&
              (const uint8_t *)t->raw < small.bytes.data + small.bytes.size);
        CHECK(yd_onnx_tensor_float(t, 3) == 3.25f);
        CHECK(yd_onnx_tensor_float(t, 5) == 1e-6f);
        CHECK(yd_onnx_tensor_float(t, 6) == 0.0f);  /* out of range */
        CHECK_INT_EQ(yd_onnx_tensor_int(t, 1), -1);
    }
    t = yd_onnx_find_initializer(model, "f");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT_EQ(t->count, 3);
        CHECK(yd_onnx_tensor_float(t, 2) == 3.5f);
    }
    t = yd_onnx_find_initializer(model, "q");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT_EQ(t->data_type, YD_ONNX_INT8);
        CHECK_INT_EQ(t->count, 3);
        CHECK_INT_EQ(yd_onnx_tensor_int(t, 0), -128);
        CHECK_INT_EQ(yd_onnx_tensor_int(t, 1), 127);
        CHECK(yd_onnx_tensor_float(t, 2) == -5.0f);
    }
    t = yd_onnx_find_initializer(model, "h");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT_EQ(t->count, 3);
        CHECK(yd_onnx_tensor_float(t, 0) == 1.0f);
        CHECK(yd_onnx_tensor_float(t, 1) == -5.0f);
        CHECK(yd_onnx_tensor_float(t, 2) == ldexpf(1.0f, -24));
    }
    t = yd_onnx_find_initializer(model, "d");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT_EQ(t->ndims, 0);
        CHECK_INT_EQ(t->count, 1);
        CHECK(yd_onnx_tensor_float(t, 0) == -2.75f);
        CHECK_INT_EQ(yd_onnx_tensor_int(t, 0), -2);
    }
    CHECK(yd_onnx_find_initializer(model, "x") == NULL);
    CHECK(yd_onnx_find_initializer(model, "") == NULL);

    yd_onnx_free(model);
    free(small.bytes.data);
}

/*
 * Every prefix of the small model: those that cut the graph short must fail
 * with a message; those after it parse. Each prefix is an exact-size heap
 * copy, so an over-read shows under AddressSanitizer.
 */
static void test_onnx_small_model_prefixes(void)
{
    small_model small;
    int accepted = 0;

    build_small_model(&small);
    for (size_t n = 0; n < small.bytes.size; n++) {
        yd_onnx_model *model = NULL;
        yd_error err = { 0 };
        int rc = parse_copy(small.bytes.data, n, &model, &err);

        if (n < small.graph_end) {
            if (rc != YD_ERR_MODEL_FORMAT) {
                fprintf(stderr, "  prefix %zu returned %d\n", n, rc);
                CHECK(rc == YD_ERR_MODEL_FORMAT);
            }
            CHECK(strncmp(err.message, "invalid ONNX file: ", 19) == 0);
        } else if (rc == 0) {
            accepted++;
        }
    }
    /* Field boundaries after the graph: after it, each opset and metadata entry. */
    CHECK_INT_EQ(accepted, 4);
    free(small.bytes.data);
}

/* Parses `b` and checks for a failure with rc and text in the message. */
static void check_rejected(const bytes *b, int expected_rc, const char *text)
{
    yd_onnx_model *model = NULL;
    yd_error err = { 0 };
    int rc = parse_copy(b->data, b->size, &model, &err);

    CHECK_INT_EQ(rc, expected_rc);
    if (!strstr(err.message, text)) {
        fprintf(stderr, "  message '%s' lacks '%s'\n", err.message, text);
        CHECK(!"error message");
    }
}

/* Wraps one TensorProto as the only initializer of a model. */
static void wrap_initializer(bytes *model, bytes *tensor)
{
    bytes graph = { 0 };

    model->size = 0;
    put_message(&graph, 5, tensor);
    put_message(model, 7, &graph);
}

static void test_onnx_rejects_bad_tensors(void)
{
    bytes model = { 0 }, tensor = { 0 };
    const int64_t dims2x3[] = { 2, 3 };
    const int64_t huge[] = { (int64_t)1 << 30, (int64_t)1 << 30, 4 };
    const int64_t nine[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    const int64_t negative[] = { 2, -3 };
    float w[6] = { 0 };
    bytes entry = { 0 };

    put_tensor_header(&tensor, "short", YD_ONNX_FLOAT, dims2x3, 2, true);
    put_len(&tensor, 9, w, sizeof w - 1);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT,
                   "tensor 'short' has 23 bytes of raw_data, expected 6 elements of 4 bytes");

    put_tensor_header(&tensor, "ext", YD_ONNX_FLOAT, dims2x3, 2, true);
    put_string(&entry, 1, "location");
    put_string(&entry, 2, "weights.bin");
    put_message(&tensor, 13, &entry);
    put_uint(&tensor, 14, 1);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_UNSUPPORTED,
                   "unsupported ONNX file: tensor 'ext' keeps its data in an external file");

    put_tensor_header(&tensor, "both", YD_ONNX_FLOAT, dims2x3, 2, true);
    put_len(&tensor, 9, w, sizeof w);
    put_len(&tensor, 4, w, sizeof w);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "both raw_data and float_data");

    put_tensor_header(&tensor, "huge", YD_ONNX_FLOAT, huge, 3, true);
    put_len(&tensor, 9, w, sizeof w);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "more than 1099511627776 elements");

    put_tensor_header(&tensor, "nine", YD_ONNX_FLOAT, nine, 9, false);
    put_len(&tensor, 9, w, 4);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_UNSUPPORTED, "9 dimensions");

    put_tensor_header(&tensor, "neg", YD_ONNX_FLOAT, negative, 2, true);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "negative dimension -3");

    put_tensor_header(&tensor, "empty", YD_ONNX_FLOAT, dims2x3, 2, true);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "has 6 elements but no data");

    put_tensor_header(&tensor, "count", YD_ONNX_FLOAT, dims2x3, 2, true);
    put_len(&tensor, 4, w, 5 * sizeof(float));
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "has 5 values in float_data, expected 6");

    put_tensor_header(&tensor, "typed", YD_ONNX_INT64, dims2x3, 2, true);
    put_len(&tensor, 4, w, sizeof w);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "of data type 7 stores data in float_data");

    put_tensor_header(&tensor, "text", 8, dims2x3, 2, true);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_UNSUPPORTED, "data type 8");

    put_tensor_header(&tensor, "", YD_ONNX_FLOAT, dims2x3, 0, true);
    put_len(&tensor, 9, w, 4);
    wrap_initializer(&model, &tensor);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "initializer without a name");

    /* raw_data whose length runs past the end of its TensorProto. */
    put_tensor_header(&tensor, "cut", YD_ONNX_FLOAT, dims2x3, 2, true);
    put_tag(&tensor, 9, YD_PROTOBUF_LEN);
    put_varint(&tensor, 24);
    put_raw(&tensor, w, 8);
    {
        /* The tensor's bytes start after the model and graph tags and lengths. */
        size_t raw_tag = 4 + tensor.size - 8 - 2;
        char expected[128];

        wrap_initializer(&model, &tensor);
        snprintf(expected, sizeof expected,
                 "invalid ONNX file: truncated length-delimited field 9 of "
                 "TensorProto at byte %zu", raw_tag);
        check_rejected(&model, YD_ERR_MODEL_FORMAT, expected);
    }

    free(model.data);
}

static void test_onnx_rejects_bad_structure(void)
{
    bytes model = { 0 }, graph = { 0 }, node = { 0 }, tensor = { 0 };
    const int64_t one[] = { 1 };
    float value = 1.0f;

    check_rejected(&model, YD_ERR_MODEL_FORMAT, "no graph (field 7 of ModelProto)");

    put_uint(&model, 7, 5);
    check_rejected(&model, YD_ERR_MODEL_FORMAT,
                   "field 7 of ModelProto is varint, expected length-delimited, at byte 0");

    model.size = 0;
    put_message(&model, 7, &graph);
    put_message(&model, 7, &graph);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "second graph");

    model.size = 0;
    put_string(&node, 3, "nameless");
    put_message(&graph, 1, &node);
    put_message(&model, 7, &graph);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "node 'nameless' has no op_type");

    model.size = 0;
    for (int i = 0; i < 2; i++) {
        put_tensor_header(&tensor, "twice", YD_ONNX_FLOAT, one, 1, true);
        put_len(&tensor, 9, &value, sizeof value);
        put_message(&graph, 5, &tensor);
    }
    put_message(&model, 7, &graph);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "two initializers are named 'twice'");

    /* A node with more inputs than the cap fails cleanly. */
    model.size = 0;
    put_string(&node, 4, "Concat");
    for (int i = 0; i < 5000; i++)
        put_string(&node, 1, "a");
    put_message(&graph, 1, &node);
    put_message(&model, 7, &graph);
    check_rejected(&model, YD_ERR_MODEL_FORMAT, "more than 4096 node inputs");

    free(model.data);
}

/* -------------------------------------------------------------- real models */

typedef struct op_count {
    const char *op_type;
    int count;
} op_count;

/* Counts nodes per op type in first-seen order and prints one line per type. */
static int count_ops(const yd_onnx_model *model, op_count *ops, int max_ops,
                     const char *label)
{
    int nops = 0;

    for (int i = 0; i < model->nnodes; i++) {
        const char *op = model->nodes[i].op_type;
        int k = 0;

        while (k < nops && strcmp(ops[k].op_type, op) != 0)
            k++;
        if (k == nops) {
            if (nops == max_ops)
                continue;
            ops[nops].op_type = op;
            ops[nops].count = 0;
            nops++;
        }
        ops[k].count++;
    }
    printf("  %s: %d nodes:", label, model->nnodes);
    for (int k = 0; k < nops; k++)
        printf(" %s %d%s", ops[k].op_type, ops[k].count, k + 1 < nops ? "," : "\n");
    return nops;
}

static int op_total(const op_count *ops, int nops, const char *op_type)
{
    for (int k = 0; k < nops; k++)
        if (strcmp(ops[k].op_type, op_type) == 0)
            return ops[k].count;
    return 0;
}

/* Elements of the Conv weight and bias initializers: the parameter count. */
static int64_t conv_parameters(const yd_onnx_model *model)
{
    int64_t total = 0;

    for (int i = 0; i < model->nnodes; i++) {
        const yd_onnx_node *node = &model->nodes[i];

        if (strcmp(node->op_type, "Conv") != 0)
            continue;
        for (int k = 1; k < node->ninputs && k < 3; k++) {
            const yd_onnx_tensor *t = yd_onnx_find_initializer(model, node->inputs[k]);

            if (t)
                total += t->count;
        }
    }
    return total;
}

static const yd_onnx_node *first_node(const yd_onnx_model *model, const char *op_type)
{
    for (int i = 0; i < model->nnodes; i++)
        if (strcmp(model->nodes[i].op_type, op_type) == 0)
            return &model->nodes[i];
    return NULL;
}

/* Loads and parses a shared model; the caller frees both. */
static yd_onnx_model *load_model(const char *rel, uint8_t **data, size_t *size)
{
    yd_onnx_model *model = NULL;
    yd_error err = { 0 };
    double start;

    *data = read_file_or_die(shared_path(rel), size);
    start = yd_now_ms();
    if (yd_onnx_parse(*data, *size, &model, &err) != 0) {
        fprintf(stderr, "  %s: %s\n", rel, err.message);
        CHECK(!"parse failed");
        return NULL;
    }
    printf("  %s: parsed %zu bytes in %.1f ms\n", rel, *size, yd_now_ms() - start);
    return model;
}

static void check_value_info(const yd_onnx_value_info *info, const char *name,
                             const int64_t *dims, int ndims)
{
    CHECK(strcmp(info->name, name) == 0);
    CHECK_INT_EQ(info->elem_type, YD_ONNX_FLOAT);
    CHECK_INT_EQ(info->ndims, ndims);
    for (int d = 0; d < ndims && d < info->ndims; d++)
        CHECK_INT_EQ(info->dims[d], dims[d]);
}

static void test_onnx_yolov8n(void)
{
    static const int64_t input_dims[] = { 1, 3, 640, 640 };
    static const int64_t output_dims[] = { 1, 84, 8400 };
    uint8_t *data;
    size_t size;
    yd_onnx_model *model = load_model("models/yolov8n.onnx", &data, &size);
    const yd_onnx_node *conv;
    const yd_onnx_tensor *weight;
    const char *names = NULL;
    op_count ops[64];
    int nops;
    int64_t parameters;

    if (!model) {
        free(data);
        return;
    }
    CHECK_INT_EQ(model->opset, 17);
    CHECK_INT_EQ(model->ninputs, 1);
    CHECK_INT_EQ(model->noutputs, 1);
    if (model->ninputs == 1)
        check_value_info(&model->inputs[0], "images", input_dims, 4);
    if (model->noutputs == 1)
        check_value_info(&model->outputs[0], "output0", output_dims, 3);

    for (int i = 0; i < model->nmetadata; i++)
        if (strcmp(model->metadata_keys[i], "names") == 0)
            names = model->metadata_values[i];
    CHECK(names != NULL);
    if (names)
        CHECK(strncmp(names, "{0: 'person'", 12) == 0);

    conv = first_node(model, "Conv");
    CHECK(conv != NULL);
    if (conv)
        CHECK_INT_EQ(conv->ninputs, 3);
    weight = conv && conv->ninputs >= 2 ? yd_onnx_find_initializer(model, conv->inputs[1]) : NULL;
    CHECK(weight != NULL);
    if (weight) {
        double abs_sum = 0;
        bool finite = true;
        float first[4];

        CHECK_INT_EQ(weight->data_type, YD_ONNX_FLOAT);
        CHECK_INT_EQ(weight->ndims, 4);
        CHECK_INT_EQ(weight->dims[0], 16);
        CHECK_INT_EQ(weight->dims[1], 3);
        CHECK_INT_EQ(weight->dims[2], 3);
        CHECK_INT_EQ(weight->dims[3], 3);
        CHECK_INT_EQ(weight->count, 432);
        /* Zero copy: the data lies inside the file buffer. */
        CHECK((const uint8_t *)weight->raw >= data &&
              (const uint8_t *)weight->raw + 432 * 4 <= data + size);
        for (int64_t i = 0; i < weight->count; i++) {
            float value = yd_onnx_tensor_float(weight, i);
            float stored;

            memcpy(&stored, (const uint8_t *)weight->raw + i * 4, 4);
            if (value != stored || !isfinite(value))
                finite = false;
            abs_sum += fabs(value);
        }
        CHECK(finite);
        /* A trained first layer: every weight small, their mass well above zero. */
        CHECK(abs_sum > 10.0);
        CHECK(abs_sum < 432 * 20.0);
        for (int i = 0; i < 4; i++)
            first[i] = yd_onnx_tensor_float(weight, i);
        printf("  first Conv weight [16,3,3,3]: %.6g %.6g %.6g %.6g ..., sum |w| %.4g\n",
               first[0], first[1], first[2], first[3], abs_sum);
    }
    if (conv) {
        const yd_onnx_attr *strides = yd_onnx_node_attr(conv, "strides");
        const yd_onnx_attr *pads = yd_onnx_node_attr(conv, "pads");

        CHECK(strides != NULL);
        if (strides) {
            CHECK_INT_EQ(strides->nints, 2);
            CHECK_INT_EQ(strides->ints[0], 2);
        }
        CHECK(pads != NULL);
        if (pads) {
            CHECK_INT_EQ(pads->nints, 4);
            CHECK_INT_EQ(pads->ints[0], 1);
        }
    }

    nops = count_ops(model, ops, 64, "yolov8n.onnx");
    CHECK_INT_EQ(op_total(ops, nops, "Conv"), 64);
    CHECK_INT_EQ(op_total(ops, nops, "Split"), 9);
    CHECK_INT_EQ(op_total(ops, nops, "Concat"), 19);
    CHECK_INT_EQ(op_total(ops, nops, "Resize"), 2);
    CHECK_INT_EQ(op_total(ops, nops, "MaxPool"), 3);

    /* 3,151,904 parameters after BatchNorm fusion, as the model card states. */
    parameters = conv_parameters(model);
    printf("  Conv weights and biases: %lld elements\n", (long long)parameters);
    CHECK_NEAR(parameters, 3151904, 3151904 * 0.01);

    yd_onnx_free(model);
    free(data);
}

/* Split in opset 13 and later takes the split sizes as a second input tensor. */
static void test_onnx_yolov8n_split_sizes(void)
{
    uint8_t *data;
    size_t size;
    yd_onnx_model *model = load_model("models/yolov8n.onnx", &data, &size);
    const yd_onnx_node *split;
    const yd_onnx_node *resize;
    const yd_onnx_tensor *sizes;
    const yd_onnx_attr *attr;

    if (!model) {
        free(data);
        return;
    }
    split = first_node(model, "Split");
    CHECK(split != NULL);
    if (!split)
        goto cleanup;
    CHECK_INT_EQ(split->ninputs, 2);
    CHECK_INT_EQ(split->noutputs, 2);
    CHECK(yd_onnx_node_attr(split, "split") == NULL);
    sizes = split->ninputs == 2 ? yd_onnx_find_initializer(model, split->inputs[1]) : NULL;
    CHECK(sizes != NULL);
    if (sizes) {
        CHECK_INT_EQ(sizes->data_type, YD_ONNX_INT64);
        CHECK_INT_EQ(sizes->count, 2);
        CHECK_INT_EQ(yd_onnx_tensor_int(sizes, 0), 16);
        CHECK_INT_EQ(yd_onnx_tensor_int(sizes, 1), 16);
    }
    attr = yd_onnx_node_attr(split, "axis");
    CHECK(attr != NULL);
    if (attr) {
        CHECK_INT_EQ(attr->type, YD_ONNX_ATTR_INT);
        CHECK_INT_EQ(attr->i, 1);
    }

    /* Resize takes scales as its third input and leaves roi empty. */
    resize = first_node(model, "Resize");
    CHECK(resize != NULL);
    if (!resize)
        goto cleanup;
    attr = yd_onnx_node_attr(resize, "mode");
    CHECK(attr != NULL);
    if (attr)
        CHECK(strcmp(attr->s, "nearest") == 0);
    CHECK_INT_EQ(resize->ninputs, 3);
    if (resize->ninputs == 3) {
        CHECK(resize->inputs[1][0] == '\0');
        CHECK(yd_onnx_find_initializer(model, resize->inputs[2]) != NULL);
    }

cleanup:

    yd_onnx_free(model);
    free(data);
}

/* The importer's result for model, and its message in err. */
static int import_result(const yd_onnx_model *model, yd_error *err)
{
    yd_graph *graph = NULL;
    int rc = yd_import_onnx(model, &graph, err);

    yd_graph_free(graph);
    return rc;
}

/* The attribute `name` of node, as a mutable pointer. */
static yd_onnx_attr *node_attr(const yd_onnx_node *node, const char *name)
{
    return (yd_onnx_attr *)yd_onnx_node_attr(node, name);
}

/*
 * Sizes, strides and kernels are 64-bit in ONNX and int in the graph, so
 * values that a cast to int would wrap must be rejected. Split sizes 2^32 +
 * 4128 and 2^32 - 4096 used to become 4128 and -4096. They added up to the
 * 32 input channels, and the slices read past the tensor.
 */
static void test_onnx_yolov8n_out_of_range(void)
{
    uint8_t *data;
    size_t size;
    yd_onnx_model *model = load_model("models/yolov8n.onnx", &data, &size);
    const yd_onnx_node *split, *conv, *pool;
    const yd_onnx_tensor *sizes;
    yd_onnx_attr *strides, *kernel;
    yd_error err = { 0 };
    int64_t saved[2], wrapped[2] = { ((int64_t)1 << 32) + 4128, ((int64_t)1 << 32) - 4096 };

    if (!model) {
        free(data);
        return;
    }
    CHECK_OK(import_result(model, &err));

    split = first_node(model, "Split");
    sizes = split && split->ninputs == 2 ? yd_onnx_find_initializer(model, split->inputs[1]) : NULL;
    CHECK(sizes != NULL);
    if (sizes) {
        CHECK(sizes->raw != NULL);
        CHECK_INT_EQ(sizes->count, 2);
    }
    if (sizes && sizes->raw && sizes->count == 2) {
        memcpy(saved, sizes->raw, sizeof saved);
        memcpy((void *)sizes->raw, wrapped, sizeof wrapped);
        CHECK_INT_EQ(import_result(model, &err), YD_ERR_MODEL_UNSUPPORTED);
        CHECK(strstr(err.message, "split sizes must be from 1 to the input channels") != NULL);
        memcpy((void *)sizes->raw, saved, sizeof saved);
    }

    conv = first_node(model, "Conv");
    strides = conv ? node_attr(conv, "strides") : NULL;
    CHECK(strides != NULL);
    if (strides)
        CHECK_INT_EQ(strides->nints, 2);
    if (strides && strides->nints == 2) {
        int64_t stride = strides->ints[0];

        strides->ints[0] = strides->ints[1] = ((int64_t)1 << 32) + 2;
        CHECK_INT_EQ(import_result(model, &err), YD_ERR_MODEL_UNSUPPORTED);
        CHECK(strstr(err.message, "kernel, strides or pads out of range") != NULL);
        strides->ints[0] = strides->ints[1] = 17;
        CHECK_INT_EQ(import_result(model, &err), YD_ERR_MODEL_UNSUPPORTED);
        strides->ints[0] = strides->ints[1] = stride;
    }

    pool = first_node(model, "MaxPool");
    kernel = pool ? node_attr(pool, "kernel_shape") : NULL;
    CHECK(kernel != NULL);
    if (kernel)
        CHECK_INT_EQ(kernel->nints, 2);
    if (kernel && kernel->nints == 2) {
        int64_t side = kernel->ints[0];

        kernel->ints[0] = kernel->ints[1] = ((int64_t)1 << 32) + side;
        CHECK_INT_EQ(import_result(model, &err), YD_ERR_MODEL_UNSUPPORTED);
        CHECK(strstr(err.message, "(MaxPool): kernel, stride or pad out of range") != NULL);
        kernel->ints[0] = kernel->ints[1] = side;
    }

    /* A weight that is not a number is rejected, and the message names the tensor. */
    conv = first_node(model, "Conv");
    {
        const yd_onnx_tensor *w =
            conv && conv->ninputs > 1 ? yd_onnx_find_initializer(model, conv->inputs[1]) : NULL;

        CHECK(w != NULL);
        if (w)
            CHECK(w->raw != NULL);
        if (w && w->raw && w->data_type == YD_ONNX_FLOAT) {
            float saved_weight, nan = NAN;

            uint8_t *at = (uint8_t *)w->raw + 5 * sizeof(float);

            memcpy(&saved_weight, at, sizeof saved_weight);
            memcpy(at, &nan, sizeof nan);
            CHECK_INT_EQ(import_result(model, &err), YD_ERR_MODEL_FORMAT);
            CHECK(strstr(err.message, "has element 5 = nan, not a finite number") != NULL);
            memcpy(at, &saved_weight, sizeof saved_weight);
        }
    }

    /* Every change is undone: the model imports again. */
    CHECK_OK(import_result(model, &err));
    yd_onnx_free(model);
    free(data);
}

/* A chain of CHAIN_LENGTH Sigmoid nodes between the input and a one-level head. */
#define CHAIN_LENGTH 20000

static void build_chain_model(bytes *model)
{
    bytes graph = {0}, node = {0}, tensor = {0}, opset = {0};
    const int64_t in_dims[] = {1, 3, 32, 32};
    const int64_t box_dims[] = {64, 3, 1, 1}, cls_dims[] = {2, 3, 1, 1};
    static float box_w[64 * 3], cls_w[2 * 3];
    char from[32], to[32];

    snprintf(from, sizeof from, "x");
    for (int i = 0; i < CHAIN_LENGTH; i++) {
        snprintf(to, sizeof to, "s%d", i);
        put_string(&node, 1, from);
        put_string(&node, 2, to);
        put_string(&node, 4, "Sigmoid");
        put_message(&graph, 1, &node);
        snprintf(from, sizeof from, "%s", to);
    }
    put_string(&node, 1, from);
    put_string(&node, 1, "box_w");
    put_string(&node, 2, "box");
    put_string(&node, 3, "box_conv");
    put_string(&node, 4, "Conv");
    put_message(&graph, 1, &node);
    put_string(&node, 1, from);
    put_string(&node, 1, "cls_w");
    put_string(&node, 2, "cls");
    put_string(&node, 3, "cls_conv");
    put_string(&node, 4, "Conv");
    put_message(&graph, 1, &node);
    put_string(&node, 1, "box");
    put_string(&node, 1, "cls");
    put_string(&node, 2, "out");
    put_string(&node, 4, "Concat");
    {
        bytes attr = {0};

        put_string(&attr, 1, "axis");
        put_uint(&attr, 3, 1);
        put_uint(&attr, 20, YD_ONNX_ATTR_INT);
        put_message(&node, 5, &attr);
    }
    put_message(&graph, 1, &node);
    put_string(&graph, 2, "chain");
    put_tensor_header(&tensor, "box_w", YD_ONNX_FLOAT, box_dims, 4, true);
    put_len(&tensor, 9, box_w, sizeof box_w);
    put_message(&graph, 5, &tensor);
    put_tensor_header(&tensor, "cls_w", YD_ONNX_FLOAT, cls_dims, 4, true);
    put_len(&tensor, 9, cls_w, sizeof cls_w);
    put_message(&graph, 5, &tensor);
    put_value_info(&graph, 11, "x", in_dims, 4);
    put_value_info(&graph, 12, "out", in_dims, 4);
    put_uint(model, 1, 8);
    put_message(model, 7, &graph);
    put_string(&opset, 1, "");
    put_uint(&opset, 2, 17);
    put_message(model, 8, &opset);
}

struct chain_import {
    const yd_onnx_model *model;
    int rc;
    yd_error err;
};

static void *import_chain(void *arg)
{
    struct chain_import *c = arg;
    yd_graph *graph = NULL;

    c->rc = yd_import_onnx(c->model, &graph, &c->err);
    yd_graph_free(graph);
    return NULL;
}

/*
 * A long chain of nodes imports on a 256 KiB thread stack: the walk from
 * the head to the input keeps its own stack. A recursive walk overflowed
 * the call stack at a few thousand nodes per MiB.
 */
static void test_onnx_long_chain(void)
{
    bytes data = {0};
    yd_onnx_model *model = NULL;
    yd_error err = {0};
    struct chain_import c = {0};
    pthread_attr_t attr;
    pthread_t thread;

    build_chain_model(&data);
    CHECK_OK(yd_onnx_parse(data.data, data.size, &model, &err));
    if (!model) {
        fprintf(stderr, "  %s\n", err.message);
        free(data.data);
        return;
    }
    CHECK_INT_EQ(model->nnodes, CHAIN_LENGTH + 3);
    c.model = model;
    c.rc = -1000;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    CHECK_INT_EQ(pthread_create(&thread, &attr, import_chain, &c), 0);
    pthread_join(thread, NULL);
    pthread_attr_destroy(&attr);
    if (c.rc != YD_OK)
        printf("  import: %s\n", c.err.message);
    CHECK_OK(c.rc);
    yd_onnx_free(model);
    free(data.data);
}

static void test_onnx_yolov8s_random(void)
{
    uint8_t *data;
    size_t size;
    yd_onnx_model *model = load_model("models/yolov8s-random.onnx", &data, &size);
    op_count ops[64];
    int nops;
    int64_t parameters;

    if (!model) {
        free(data);
        return;
    }
    CHECK_INT_EQ(model->opset, 17);
    CHECK_INT_EQ(model->ninputs, 1);
    if (model->ninputs == 1)
        CHECK(strcmp(model->inputs[0].name, "images") == 0);
    nops = count_ops(model, ops, 64, "yolov8s-random.onnx");
    CHECK_INT_EQ(op_total(ops, nops, "Conv"), 64);

    /* YOLOv8s has 11.2 M parameters (rounded), so allow 1% around 11.17 M. */
    parameters = conv_parameters(model);
    printf("  Conv weights and biases: %lld elements\n", (long long)parameters);
    CHECK(parameters > 11100000);
    CHECK(parameters < 11300000);

    yd_onnx_free(model);
    free(data);
}

/*
 * The QDQ model: int8 weights with per-channel scales. Its weights were
 * quantized from the fp32 yolov8n weights, so dequantizing the first Conv
 * must land within half a step of the fp32 file's values, which checks both
 * files' readers against each other.
 */
static void test_onnx_yolov8n_int8(void)
{
    uint8_t *data, *fp32_data;
    size_t size, fp32_size;
    yd_onnx_model *model = load_model("models/yolov8n-ort-int8.onnx", &data, &size);
    yd_onnx_model *fp32 = load_model("models/yolov8n.onnx", &fp32_data, &fp32_size);
    const yd_onnx_tensor *q, *scale, *zero, *w;
    yd_graph *graph = NULL;
    yd_error err = { 0 };
    op_count ops[64];
    int nops, int8_initializers = 0;

    if (!model || !fp32)
        goto cleanup;

    nops = count_ops(model, ops, 64, "yolov8n-ort-int8.onnx");
    CHECK(op_total(ops, nops, "QuantizeLinear") > 0);

    /* The importer names the format and the supported way to int8. */
    CHECK_INT_EQ(yd_import_onnx(model, &graph, &err), YD_ERR_MODEL_UNSUPPORTED);
    CHECK(graph == NULL);
    CHECK(strstr(err.message, "QDQ-quantized ONNX models are not supported") != NULL);
    CHECK(strstr(err.message, "yolod compress MODEL.onnx --variant int8") != NULL);

    CHECK(op_total(ops, nops, "DequantizeLinear") > op_total(ops, nops, "QuantizeLinear"));
    CHECK_INT_EQ(op_total(ops, nops, "Conv"), 64);
    for (int i = 0; i < model->ninitializers; i++)
        int8_initializers += model->initializers[i].data_type == YD_ONNX_INT8;
    printf("  INT8 initializers: %d\n", int8_initializers);
    CHECK(int8_initializers >= 64);

    q = yd_onnx_find_initializer(model, "model.0.conv.weight_quantized");
    scale = yd_onnx_find_initializer(model, "model.0.conv.weight_scale");
    zero = yd_onnx_find_initializer(model, "model.0.conv.weight_zero_point");
    w = yd_onnx_find_initializer(fp32, "model.0.conv.weight");
    CHECK(q != NULL);
    CHECK(scale != NULL);
    CHECK(zero != NULL);
    CHECK(w != NULL);
    if (q && scale && zero && w) {
        double worst = 0;

        CHECK_INT_EQ(q->data_type, YD_ONNX_INT8);
        CHECK_INT_EQ(q->count, 432);
        CHECK_INT_EQ(scale->count, 16);
        CHECK_INT_EQ(zero->data_type, YD_ONNX_INT8);
        for (int64_t i = 0; i < q->count && q->count == w->count && scale->count == 16; i++) {
            int64_t channel = i / 27;
            float s = yd_onnx_tensor_float(scale, channel);
            int64_t code = yd_onnx_tensor_int(q, i) - yd_onnx_tensor_int(zero, channel);
            double error = fabs(s * (double)code - yd_onnx_tensor_float(w, i)) / s;

            if (error > worst)
                worst = error;
        }
        printf("  int8 vs fp32 first Conv: worst error %.3f steps\n", worst);
        CHECK(worst <= 0.5 + 1e-3);
    }

cleanup:
    yd_onnx_free(model);
    yd_onnx_free(fp32);
    free(data);
    free(fp32_data);
}

/* A small deterministic generator (xorshift64) for corruption points. */
static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Offset one past the graph field of a ModelProto. */
static size_t graph_end_offset(const uint8_t *data, size_t size)
{
    yd_protobuf_reader reader;
    yd_protobuf_field field;
    yd_error err = { 0 };

    yd_protobuf_init(&reader, data, size, "ModelProto");
    while (yd_protobuf_next(&reader, &field, &err) > 0)
        if (field.number == 7)
            return field.start + field.length;
    return 0;
}

/* Parses data with one byte changed and tallies the outcome. */
static void parse_changed(uint8_t *data, size_t size, size_t at, uint8_t mask,
                          int outcomes[3], int *bad_rc)
{
    uint8_t saved = data[at];
    yd_onnx_model *model = NULL;
    yd_error err = { 0 };
    int rc;

    data[at] ^= mask;
    rc = yd_onnx_parse(data, size, &model, &err);
    if (rc == 0)
        outcomes[0]++;
    else if (rc == YD_ERR_MODEL_FORMAT)
        outcomes[1]++;
    else if (rc == YD_ERR_MODEL_UNSUPPORTED)
        outcomes[2]++;
    else
        (*bad_rc)++;
    if (rc != 0 && (err.message[0] == '\0' || model != NULL)) {
        fprintf(stderr, "  byte %zu ^ 0x%02x: rc %d, message '%s'\n", at, mask,
                rc, err.message);
        (*bad_rc)++;
    }
    yd_onnx_free(model);
    data[at] = saved;
}

/*
 * Truncations and single-byte changes of yolov8n.onnx. Half of the random
 * points fall in the first 64 KiB, where the nodes are. The rest are spread
 * over the file, which is mostly weight bytes. Every byte of the first
 * 1 KiB (model header and the first nodes) is also inverted in turn.
 */
static void test_onnx_yolov8n_corrupted(void)
{
    uint8_t *data;
    size_t size;
    size_t graph_end;
    uint64_t state = 0x9e3779b97f4a7c15u;
    int outcomes[3] = { 0 };  /* parsed, invalid, unsupported */
    int header_outcomes[3] = { 0 };
    int bad_rc = 0;

    data = read_file_or_die(shared_path("models/yolov8n.onnx"), &size);
    graph_end = graph_end_offset(data, size);
    CHECK(graph_end > 0);
    CHECK(graph_end < size);

    for (int i = 0; i < 300; i++) {
        uint64_t r = next_random(&state);
        size_t n = i % 2 ? (size_t)(r % 65536) : (size_t)(r % size);
        yd_onnx_model *model = NULL;
        yd_error err = { 0 };
        int rc = parse_copy(data, n, &model, &err);

        if (n < graph_end && rc != YD_ERR_MODEL_FORMAT) {
            fprintf(stderr, "  truncation at %zu returned %d\n", n, rc);
            bad_rc++;
        }
        if (rc == YD_ERR_MODEL_FORMAT && strncmp(err.message, "invalid ONNX file: ", 19) != 0)
            bad_rc++;
    }

    for (int i = 0; i < 300; i++) {
        uint64_t r = next_random(&state);
        size_t at = i % 2 ? (size_t)(r % 65536) : (size_t)(r % size);

        parse_changed(data, size, at, (uint8_t)(1 + (r >> 32) % 255), outcomes, &bad_rc);
    }
    printf("  300 random byte changes: %d parsed, %d invalid, %d unsupported\n",
           outcomes[0], outcomes[1], outcomes[2]);

    for (size_t at = 0; at < 1024; at++)
        parse_changed(data, size, at, 0xff, header_outcomes, &bad_rc);
    printf("  first 1024 bytes inverted: %d parsed, %d invalid, %d unsupported\n",
           header_outcomes[0], header_outcomes[1], header_outcomes[2]);

    CHECK_INT_EQ(bad_rc, 0);
    /* Inverting a tag or length byte breaks the structure. */
    CHECK(header_outcomes[1] > 100);
    free(data);
}

int main(void)
{
    RUN(test_protobuf_varint_limits);
    RUN(test_protobuf_bad_tags);
    RUN(test_protobuf_groups_skipped);
    RUN(test_protobuf_packed_and_unpacked);
    RUN(test_onnx_small_model);
    RUN(test_onnx_small_model_prefixes);
    RUN(test_onnx_rejects_bad_tensors);
    RUN(test_onnx_rejects_bad_structure);
    RUN(test_onnx_yolov8n);
    RUN(test_onnx_yolov8n_split_sizes);
    RUN(test_onnx_yolov8n_out_of_range);
    RUN(test_onnx_long_chain);
    RUN(test_onnx_yolov8s_random);
    RUN(test_onnx_yolov8n_int8);
    RUN(test_onnx_yolov8n_corrupted);
    return TEST_SUMMARY();
}
