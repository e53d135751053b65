/*
 * A protobuf wire-format decoder: a cursor over one message that yields its
 * fields in file order, plus helpers for repeated scalar fields in packed and
 * unpacked form. It has no schema, so the caller decides what each field
 * number means. Every read is bounds-checked against the enclosing message,
 * and errors name the field, the message type and the byte offset from the
 * start of the buffer.
 *
 * Groups (wire types 3 and 4, deprecated in proto2) are skipped inside
 * yd_protobuf_next(), so callers never see them.
 */
#ifndef YOLOD_PROTOBUF_H
#define YOLOD_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "yolod.h"

enum {
    YD_PROTOBUF_VARINT = 0,
    YD_PROTOBUF_FIXED64 = 1,
    YD_PROTOBUF_LEN = 2,
    YD_PROTOBUF_GROUP_START = 3,
    YD_PROTOBUF_GROUP_END = 4,
    YD_PROTOBUF_FIXED32 = 5,
};

/* Cursor over the bytes [pos, end) of one message inside data. */
typedef struct yd_protobuf_reader {
    const uint8_t *data;   /* the whole buffer; error offsets count from here */
    size_t pos;            /* offset of the next tag */
    size_t end;            /* offset one past the message's last byte */
    const char *message;   /* message type name for errors, e.g. "NodeProto" */
} yd_protobuf_reader;

typedef struct yd_protobuf_field {
    uint32_t number;
    int wire_type;
    size_t offset;         /* offset of the tag */
    uint64_t value;        /* payload of VARINT, FIXED64 and FIXED32 fields */
    size_t start;          /* LEN: offset of the first payload byte */
    size_t length;         /* LEN: payload size in bytes */
} yd_protobuf_field;

/* Starts a reader over a whole buffer holding one top-level message. */
void yd_protobuf_init(yd_protobuf_reader *reader, const uint8_t *data,
                      size_t size, const char *message);

/*
 * Reads the next field and moves past its payload. Returns 1 when a field
 * was read, 0 at the end of the message, or YD_ERR_MODEL_FORMAT for a
 * truncated or malformed field.
 */
int yd_protobuf_next(yd_protobuf_reader *reader, yd_protobuf_field *field,
                     yd_error *err);

/* Starts a reader over the payload of a LEN field read by `parent`. */
void yd_protobuf_enter(const yd_protobuf_reader *parent,
                       const yd_protobuf_field *field, const char *message,
                       yd_protobuf_reader *child);

/* Fails with YD_ERR_MODEL_FORMAT unless the field has the given wire type. */
int yd_protobuf_expect(const yd_protobuf_reader *reader,
                       const yd_protobuf_field *field, int wire_type,
                       yd_error *err);

/* A growable array filled by the repeated-field helpers below. */
typedef struct yd_protobuf_array {
    void *items;
    int64_t count;
    int64_t capacity;
} yd_protobuf_array;

/*
 * Appends the values of a repeated varint field (int32, int64, enum) as
 * int64_t: one value for a VARINT field, all of them for a packed LEN field.
 * More than max_count values in total fail with YD_ERR_MODEL_FORMAT.
 */
int yd_protobuf_append_varints(const yd_protobuf_reader *reader,
                               const yd_protobuf_field *field,
                               yd_protobuf_array *array, int64_t max_count,
                               yd_error *err);

/* Same for a repeated float field (FIXED32 or packed), appended as float. */
int yd_protobuf_append_floats(const yd_protobuf_reader *reader,
                              const yd_protobuf_field *field,
                              yd_protobuf_array *array, int64_t max_count,
                              yd_error *err);

/* Same for a repeated double field (FIXED64 or packed), appended as double. */
int yd_protobuf_append_doubles(const yd_protobuf_reader *reader,
                               const yd_protobuf_field *field,
                               yd_protobuf_array *array, int64_t max_count,
                               yd_error *err);

#endif /* YOLOD_PROTOBUF_H */
