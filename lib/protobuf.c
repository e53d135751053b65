/*
 * Protobuf wire-format decoding, as specified in
 * https://protobuf.dev/programming-guides/encoding/: a tag is a varint
 * holding (field_number << 3) | wire_type, followed by a varint, 8 or 4
 * little-endian bytes, or a varint length and that many bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "protobuf.h"
#include "util.h"

/* A varint encodes at most 64 bits in 7-bit groups, so 10 bytes. */
#define VARINT_MAX_BYTES 10

/* Nesting limit for skipped groups, which have no length prefix. */
#define GROUP_MAX_DEPTH 64

static const char *wire_type_name(int wire_type)
{
    switch (wire_type) {
    case YD_PROTOBUF_VARINT: return "varint";
    case YD_PROTOBUF_FIXED64: return "64-bit";
    case YD_PROTOBUF_LEN: return "length-delimited";
    case YD_PROTOBUF_GROUP_START: return "start-group";
    case YD_PROTOBUF_GROUP_END: return "end-group";
    case YD_PROTOBUF_FIXED32: return "32-bit";
    default: return "unknown";
    }
}

/*
 * Decodes the varint at *pos, which must end before `end`. Returns 0 and
 * advances *pos, -1 when the buffer ends first, -2 when it is longer than
 * 10 bytes or overflows 64 bits.
 */
static int decode_varint(const uint8_t *data, size_t *pos, size_t end,
                         uint64_t *value)
{
    uint64_t result = 0;
    size_t p = *pos;

    for (int i = 0; i < VARINT_MAX_BYTES; i++) {
        uint8_t byte;

        if (p >= end)
            return -1;
        byte = data[p++];
        if (i == VARINT_MAX_BYTES - 1 && byte > 1)
            return -2;
        result |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            *pos = p;
            *value = result;
            return 0;
        }
    }
    return -2;
}

void yd_protobuf_init(yd_protobuf_reader *reader, const uint8_t *data,
                      size_t size, const char *message)
{
    reader->data = data;
    reader->pos = 0;
    reader->end = size;
    reader->message = message;
}

void yd_protobuf_enter(const yd_protobuf_reader *parent,
                       const yd_protobuf_field *field, const char *message,
                       yd_protobuf_reader *child)
{
    child->data = parent->data;
    child->pos = field->start;
    child->end = field->start + field->length;
    child->message = message;
}

int yd_protobuf_expect(const yd_protobuf_reader *reader,
                       const yd_protobuf_field *field, int wire_type,
                       yd_error *err)
{
    if (field->wire_type == wire_type)
        return YD_OK;
    return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                        "field %u of %s is %s, expected %s, at byte %zu",
                        field->number, reader->message,
                        wire_type_name(field->wire_type),
                        wire_type_name(wire_type), field->offset);
}

/* Reads a tag at *pos; fails on field number 0 and wire types 6 and 7. */
static int read_tag(const yd_protobuf_reader *reader, size_t *pos,
                    uint32_t *number, int *wire_type, yd_error *err)
{
    size_t offset = *pos;
    uint64_t tag;
    int rc = decode_varint(reader->data, pos, reader->end, &tag);

    if (rc == -1)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "truncated field tag in %s at byte %zu",
                            reader->message, offset);
    if (rc < 0 || tag > UINT32_MAX)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "invalid field tag in %s at byte %zu",
                            reader->message, offset);
    *number = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    if (*number == 0)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "invalid field number 0 in %s at byte %zu",
                            reader->message, offset);
    if (*wire_type > YD_PROTOBUF_FIXED32)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "invalid wire type %d for field %u of %s at byte %zu",
                            *wire_type, *number, reader->message, offset);
    return YD_OK;
}

/*
 * Reads the payload of a field whose tag has been read, leaving *pos after
 * it. Groups are not handled here.
 */
static int read_payload(const yd_protobuf_reader *reader, size_t *pos,
                        yd_protobuf_field *field, yd_error *err)
{
    size_t remaining;
    int rc;

    switch (field->wire_type) {
    case YD_PROTOBUF_VARINT:
        rc = decode_varint(reader->data, pos, reader->end, &field->value);
        if (rc == 0)
            return YD_OK;
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "%s varint field %u of %s at byte %zu",
                            rc == -1 ? "truncated" : "invalid", field->number,
                            reader->message, field->offset);

    case YD_PROTOBUF_FIXED64:
    case YD_PROTOBUF_FIXED32: {
        size_t width = field->wire_type == YD_PROTOBUF_FIXED64 ? 8 : 4;

        if (reader->end - *pos < width)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "truncated %s field %u of %s at byte %zu",
                                wire_type_name(field->wire_type), field->number,
                                reader->message, field->offset);
        field->value = 0;
        for (size_t i = 0; i < width; i++)
            field->value |= (uint64_t)reader->data[*pos + i] << (8 * i);
        *pos += width;
        return YD_OK;
    }

    case YD_PROTOBUF_LEN: {
        uint64_t length;

        rc = decode_varint(reader->data, pos, reader->end, &length);
        remaining = reader->end - (rc == 0 ? *pos : reader->end);
        if (rc == -2)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "invalid length of field %u of %s at byte %zu",
                                field->number, reader->message, field->offset);
        if (rc == -1 || length > remaining)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "truncated length-delimited field %u of %s at byte %zu",
                                field->number, reader->message, field->offset);
        field->start = *pos;
        field->length = (size_t)length;
        *pos += (size_t)length;
        return YD_OK;
    }

    default:
        return yd_error_set(err, YD_ERR_INTERNAL,
                            "read_payload called for wire type %d",
                            field->wire_type);
    }
}

/*
 * Skips a group whose start tag (field `number`) ends at *pos, up to and
 * including its matching end tag. Iterative, with an explicit stack of open
 * field numbers, so hostile nesting cannot overflow the C stack.
 */
static int skip_group(const yd_protobuf_reader *reader, size_t *pos,
                      uint32_t number, size_t group_offset, yd_error *err)
{
    uint32_t open[GROUP_MAX_DEPTH];
    int depth = 0;
    int rc;

    open[depth++] = number;
    while (depth > 0) {
        yd_protobuf_field inner = { 0 };

        if (*pos >= reader->end)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "unterminated group field %u of %s at byte %zu",
                                number, reader->message, group_offset);
        inner.offset = *pos;
        rc = read_tag(reader, pos, &inner.number, &inner.wire_type, err);
        if (rc < 0)
            return rc;

        if (inner.wire_type == YD_PROTOBUF_GROUP_START) {
            if (depth == GROUP_MAX_DEPTH)
                return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                    "groups nested deeper than %d in %s at byte %zu",
                                    GROUP_MAX_DEPTH, reader->message, inner.offset);
            open[depth++] = inner.number;
        } else if (inner.wire_type == YD_PROTOBUF_GROUP_END) {
            if (inner.number != open[depth - 1])
                return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                    "end-group field %u of %s does not match "
                                    "start-group field %u, at byte %zu",
                                    inner.number, reader->message,
                                    open[depth - 1], inner.offset);
            depth--;
        } else {
            rc = read_payload(reader, pos, &inner, err);
            if (rc < 0)
                return rc;
        }
    }
    return YD_OK;
}

int yd_protobuf_next(yd_protobuf_reader *reader, yd_protobuf_field *field,
                     yd_error *err)
{
    for (;;) {
        size_t pos = reader->pos;
        int rc;

        if (pos >= reader->end)
            return 0;

        memset(field, 0, sizeof *field);
        field->offset = pos;
        rc = read_tag(reader, &pos, &field->number, &field->wire_type, err);
        if (rc < 0)
            return rc;

        if (field->wire_type == YD_PROTOBUF_GROUP_END)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "unexpected end-group field %u in %s at byte %zu",
                                field->number, reader->message, field->offset);
        if (field->wire_type == YD_PROTOBUF_GROUP_START) {
            rc = skip_group(reader, &pos, field->number, field->offset, err);
            if (rc < 0)
                return rc;
            reader->pos = pos;
            continue;
        }

        rc = read_payload(reader, &pos, field, err);
        if (rc < 0)
            return rc;
        reader->pos = pos;
        return 1;
    }
}

/* Makes room for `extra` more items of item_size bytes, at most max_count in all. */
static int array_reserve(yd_protobuf_array *array, int64_t extra,
                         size_t item_size, int64_t max_count,
                         const yd_protobuf_reader *reader,
                         const yd_protobuf_field *field, yd_error *err)
{
    int64_t needed = array->count + extra;
    int64_t capacity;
    void *items;

    if (extra > max_count || needed > max_count)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "repeated field %u of %s has more than %lld values, at byte %zu",
                            field->number, reader->message, (long long)max_count,
                            field->offset);
    if (needed <= array->capacity)
        return YD_OK;

    capacity = array->capacity ? array->capacity : 8;
    while (capacity < needed)
        capacity *= 2;
    if (capacity > max_count)
        capacity = max_count;
    items = realloc(array->items, (size_t)capacity * item_size);
    if (!items)
        return yd_error_set(err, YD_ERR_NO_MEMORY,
                            "out of memory for %lld values of field %u of %s",
                            (long long)capacity, field->number, reader->message);
    array->items = items;
    array->capacity = capacity;
    return YD_OK;
}

int yd_protobuf_append_varints(const yd_protobuf_reader *reader,
                               const yd_protobuf_field *field,
                               yd_protobuf_array *array, int64_t max_count,
                               yd_error *err)
{
    int64_t *items;
    int64_t extra = 0;
    size_t end;
    size_t pos;
    int rc;

    if (field->wire_type == YD_PROTOBUF_VARINT) {
        rc = array_reserve(array, 1, sizeof(int64_t), max_count, reader, field, err);
        if (rc < 0)
            return rc;
        items = array->items;
        items[array->count++] = (int64_t)field->value;
        return YD_OK;
    }
    rc = yd_protobuf_expect(reader, field, YD_PROTOBUF_LEN, err);
    if (rc < 0)
        return rc;

    /* Each varint ends with the one byte that has its high bit clear. */
    end = field->start + field->length;
    for (pos = field->start; pos < end; pos++)
        extra += !(reader->data[pos] & 0x80);
    if (field->length > 0 && (reader->data[end - 1] & 0x80))
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "truncated packed varint in field %u of %s at byte %zu",
                            field->number, reader->message, field->offset);
    rc = array_reserve(array, extra, sizeof(int64_t), max_count, reader, field, err);
    if (rc < 0)
        return rc;

    items = array->items;
    pos = field->start;
    while (pos < end) {
        uint64_t value;

        if (decode_varint(reader->data, &pos, end, &value) < 0)
            return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                                "invalid packed varint in field %u of %s at byte %zu",
                                field->number, reader->message, pos);
        items[array->count++] = (int64_t)value;
    }
    return YD_OK;
}

/*
 * Appends fixed-width little-endian values (4 or 8 bytes) from a FIXED32 or
 * FIXED64 field or a packed LEN field, copied bytewise into items whose
 * in-memory type has the same width (float, double).
 */
static int append_fixed(const yd_protobuf_reader *reader,
                        const yd_protobuf_field *field,
                        yd_protobuf_array *array, int64_t max_count,
                        size_t width, yd_error *err)
{
    int fixed_type = width == 4 ? YD_PROTOBUF_FIXED32 : YD_PROTOBUF_FIXED64;
    uint8_t *items;
    int64_t extra;
    int rc;

    if (field->wire_type == fixed_type) {
        uint32_t value32 = (uint32_t)field->value;

        rc = array_reserve(array, 1, width, max_count, reader, field, err);
        if (rc < 0)
            return rc;
        items = array->items;
        /* Both ends are little-endian here: x86-64 is the only target. */
        if (width == 4)
            memcpy(items + array->count * 4, &value32, 4);
        else
            memcpy(items + array->count * 8, &field->value, 8);
        array->count++;
        return YD_OK;
    }
    if (field->wire_type != YD_PROTOBUF_LEN)
        return yd_protobuf_expect(reader, field, fixed_type, err);

    if (field->length % width != 0)
        return yd_error_set(err, YD_ERR_MODEL_FORMAT,
                            "packed field %u of %s has %zu bytes, not a multiple of %zu, at byte %zu",
                            field->number, reader->message, field->length,
                            width, field->offset);
    extra = (int64_t)(field->length / width);
    rc = array_reserve(array, extra, width, max_count, reader, field, err);
    if (rc < 0)
        return rc;
    items = array->items;
    if (field->length > 0)
        memcpy(items + (size_t)array->count * width,
               reader->data + field->start, field->length);
    array->count += extra;
    return YD_OK;
}

int yd_protobuf_append_floats(const yd_protobuf_reader *reader,
                              const yd_protobuf_field *field,
                              yd_protobuf_array *array, int64_t max_count,
                              yd_error *err)
{
    return append_fixed(reader, field, array, max_count, sizeof(float), err);
}

int yd_protobuf_append_doubles(const yd_protobuf_reader *reader,
                               const yd_protobuf_field *field,
                               yd_protobuf_array *array, int64_t max_count,
                               yd_error *err)
{
    return append_fixed(reader, field, array, max_count, sizeof(double), err);
}
