/*
 * libFuzzer entry point for the multipart/form-data parser. The input is a
 * Content-Type value, a LF, then the body. For a multipart/form-data type
 * the body is parsed whole, in 1-byte chunks and in chunks of sizes drawn
 * from the input. All three must give the same parts and the same result,
 * or the target aborts. It must never read out of bounds or leak.
 *
 *   make fuzz-multipart
 *   build/fuzz/fuzz-multipart -max_len=4096 CORPUS_DIR
 *
 * or by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Idaemon \
 *         fuzz/fuzz-multipart.c daemon/multipart_parser.c -o fuzz-multipart
 *   ./fuzz-multipart -max_len=4096 CORPUS_DIR
 *
 * Good seeds are a curl request body with its Content-Type line, for
 * example "multipart/form-data; boundary=XB" LF then
 * "--XB" CRLF "Content-Disposition: form-data; name=image" CRLF CRLF "x"
 * CRLF "--XB--" CRLF.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Transcript of the callbacks, as in tests/unit/test-multipart.c. */
struct transcript {
    char *text;
    size_t length, capacity;
    size_t data_bytes; /* part data passed on */
    bool in_part;
};

static void append(struct transcript *transcript, const char *data, size_t size)
{
    if (transcript->length + size > transcript->capacity) {
        transcript->capacity = 2 * (transcript->length + size) + 64;
        transcript->text = realloc(transcript->text, transcript->capacity);
        if (!transcript->text)
            abort();
    }
    memcpy(transcript->text + transcript->length, data, size);
    transcript->length += size;
}

static int begin_part(void *context, const char *name)
{
    struct transcript *transcript = context;

    if (transcript->in_part)
        abort(); /* part_begin without part_end */
    transcript->in_part = true;
    append(transcript, "[", 1);
    if (name)
        append(transcript, name, strlen(name) + 1);
    append(transcript, "]", 1);
    /* A name that starts with "stop" stops the parser, as a rejecting caller does. */
    return name && strncmp(name, "stop", 4) == 0;
}

static int append_data(void *context, const char *data, size_t size)
{
    struct transcript *transcript = context;

    if (!transcript->in_part || size == 0)
        abort();
    transcript->data_bytes += size;
    append(transcript, data, size);
    return 0;
}

static int end_part(void *context)
{
    struct transcript *transcript = context;

    if (!transcript->in_part)
        abort();
    transcript->in_part = false;
    append(transcript, "|", 1);
    return 0;
}

static const struct multipart_callbacks callbacks = {
    .part_begin = begin_part,
    .part_data = append_data,
    .part_end = end_part,
};

struct outcome {
    struct transcript transcript;
    int result;
    char error[MULTIPART_ERROR_SIZE];
};

/*
 * Parses body in chunks: whole when sizes is NULL, else each chunk takes
 * the next byte of sizes (cycling) as its length, 1 to 256 bytes.
 */
static void parse(const char *boundary, const char *body, size_t size, const uint8_t *sizes,
                  size_t nsizes, struct outcome *outcome)
{
    static struct multipart_parser parser;
    size_t at = 0, next_size = 0;
    int result = 0;

    memset(outcome, 0, sizeof *outcome);
    multipart_parser_init(&parser, boundary, &callbacks, &outcome->transcript);
    while (at < size) {
        size_t chunk = size - at;

        if (sizes) {
            size_t chunk_limit = (size_t)sizes[next_size++ % nsizes] + 1;

            if (chunk_limit < chunk)
                chunk = chunk_limit;
        }
        if (multipart_parser_feed(&parser, body + at, chunk) != 0)
            result = -1;
        at += chunk;
    }
    if (result == 0)
        result = multipart_parser_finish(&parser);
    outcome->result = result;
    snprintf(outcome->error, sizeof outcome->error, "%s", multipart_parser_error(&parser));

    if (outcome->transcript.data_bytes > size)
        abort(); /* more part data than body bytes */
    if ((result != 0) != (outcome->error[0] != '\0'))
        abort(); /* an error message exactly when parsing failed */
}

static void expect_same(const struct outcome *a, const struct outcome *b)
{
    if (a->result != b->result || strcmp(a->error, b->error) != 0 ||
        a->transcript.length != b->transcript.length ||
        (a->transcript.length > 0 &&
         memcmp(a->transcript.text, b->transcript.text, a->transcript.length) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *newline = memchr(data, '\n', size);
    char *content_type, *body;
    size_t type_length, body_size;
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    struct outcome whole, bytewise, chunked;

    if (!newline)
        return 0;
    type_length = (size_t)(newline - data);
    content_type = malloc(type_length + 1);
    if (!content_type)
        abort();
    memcpy(content_type, data, type_length);
    content_type[type_length] = '\0';
    if (multipart_parse_content_type(content_type, boundary) != MULTIPART_FORM_DATA) {
        free(content_type);
        return 0;
    }
    if (strlen(boundary) < 1 || strlen(boundary) > MULTIPART_BOUNDARY_MAX)
        abort();

    /* A copy of exactly the body's size, so ASan catches any read past it. */
    body_size = size - type_length - 1;
    body = malloc(body_size ? body_size : 1);
    if (!body)
        abort();
    memcpy(body, newline + 1, body_size);

    parse(boundary, body, body_size, NULL, 0, &whole);
    {
        static const uint8_t one_byte = 0; /* a chunk size of 0 + 1 */

        parse(boundary, body, body_size, &one_byte, 1, &bytewise);
    }
    /* Chunk sizes from the Content-Type bytes, so the fuzzer steers them too. */
    parse(boundary, body, body_size, (const uint8_t *)content_type, type_length, &chunked);
    expect_same(&whole, &bytewise);
    expect_same(&whole, &chunked);

    free(whole.transcript.text);
    free(bytewise.transcript.text);
    free(chunked.transcript.text);
    free(body);
    free(content_type);
    return 0;
}
