/*
 * multipart/form-data parser tests: the boundary parameter of Content-Type,
 * and a table of bodies. Each body is fed whole, split at every byte
 * position, in 1-byte chunks, in three pieces and at random positions. All
 * of these must give the same parts, result and error message. Also
 * truncated bodies, header limits and a callback that stops the parser.
 */
#include <stdbool.h>
#include <stdint.h>

#include "multipart_parser.h"
#include "testlib.h"

/* ---------------------------------------------- Content-Type boundary */

struct content_type_case {
    const char *value;
    enum multipart_content_type expected;
    const char *boundary; /* expected boundary for MULTIPART_FORM_DATA */
};

#define BOUNDARY_70 "0123456789012345678901234567890123456789012345678901234567890123456789"

static const struct content_type_case content_type_cases[] = {
    {"multipart/form-data; boundary=XyZ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; boundary=XyZ; charset=utf-8", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; boundary=\"XyZ\"; charset=utf-8", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; charset=utf-8; boundary=XyZ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; charset=\"utf-8\"; boundary=\"XyZ\"", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; Boundary=XyZ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; BOUNDARY=\"XyZ\"", MULTIPART_FORM_DATA, "XyZ"},
    {"Multipart/Form-Data; boundary=XyZ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data;boundary=XyZ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data ; boundary = XyZ ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data;\tboundary=XyZ;", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; ; boundary=XyZ", MULTIPART_FORM_DATA, "XyZ"},
    {"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
     MULTIPART_FORM_DATA, "----WebKitFormBoundary7MA4YWxkTrZu0gW"},
    {"multipart/form-data; boundary=\"a b'()+_,-./:=?\"", MULTIPART_FORM_DATA, "a b'()+_,-./:=?"},
    {"multipart/form-data; boundary=\"a\\bc\"", MULTIPART_FORM_DATA, "abc"},
    {"multipart/form-data; boundary=" BOUNDARY_70, MULTIPART_FORM_DATA, BOUNDARY_70},
    {"multipart/form-data; boundary=\"" BOUNDARY_70 "\"", MULTIPART_FORM_DATA, BOUNDARY_70},
    {"multipart/form-data; name=\"a;boundary=no\"; boundary=yes", MULTIPART_FORM_DATA, "yes"},

    {"multipart/form-data; boundary=" BOUNDARY_70 "0", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"" BOUNDARY_70 "0\"", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data;", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; charset=utf-8", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"\"", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"abc", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"abc \"", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"a\tb\"", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"a\\\"b\"", MULTIPART_FORM_DATA, "a\"b"},
    {"multipart/form-data; boundary=a#b", MULTIPART_FORM_DATA, "a#b"},
    {"multipart/form-data; boundary=*****", MULTIPART_FORM_DATA, "*****"},
    {"multipart/form-data; boundary=~~x~~", MULTIPART_FORM_DATA, "~~x~~"},
    {"multipart/form-data; boundary=abc%", MULTIPART_FORM_DATA, "abc%"},
    {"multipart/form-data; boundary=XyZ garbage", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=XyZ; charset", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=XyZ; boundary=XyZ", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data; boundary=\"XyZ\r\n\"", MULTIPART_BAD_BOUNDARY, NULL},
    {"multipart/form-data, boundary=XyZ", MULTIPART_BAD_BOUNDARY, NULL},

    {NULL, MULTIPART_NOT_FORM_DATA, NULL},
    {"", MULTIPART_NOT_FORM_DATA, NULL},
    {"image/jpeg", MULTIPART_NOT_FORM_DATA, NULL},
    {"multipart/mixed; boundary=XyZ", MULTIPART_NOT_FORM_DATA, NULL},
    {"multipart/form-datax; boundary=XyZ", MULTIPART_NOT_FORM_DATA, NULL},
    {"application/x-www-form-urlencoded", MULTIPART_NOT_FORM_DATA, NULL},
    {"multipart", MULTIPART_NOT_FORM_DATA, NULL},
};

static void test_content_type_cases(void)
{
    for (size_t i = 0; i < sizeof content_type_cases / sizeof content_type_cases[0]; i++) {
        const struct content_type_case *c = &content_type_cases[i];
        char boundary[MULTIPART_BOUNDARY_MAX + 1] = "";
        enum multipart_content_type got = multipart_parse_content_type(c->value, boundary);

        if (got != c->expected) {
            fprintf(stderr, "  Content-Type '%s': got %d, expected %d\n",
                    c->value ? c->value : "(null)", (int)got, (int)c->expected);
            test_failures_++;
            continue;
        }
        if (c->boundary && strcmp(boundary, c->boundary) != 0) {
            fprintf(stderr, "  Content-Type '%s': boundary '%s', expected '%s'\n",
                    c->value, boundary, c->boundary);
            test_failures_++;
        }
    }
}

/* ------------------------------------------------------ body recorder */

/* Transcript of the callbacks: "[name]" or "[-]" for a part without name, the data, "|" at its end. */
struct recorder {
    char *text;
    size_t length, capacity;
    const char *stop_at; /* part_begin of a part with this name returns 1 */
};

static void record(struct recorder *recorder, const char *data, size_t size)
{
    if (recorder->length + size + 1 > recorder->capacity) {
        recorder->capacity = 2 * (recorder->length + size + 1);
        recorder->text = realloc(recorder->text, recorder->capacity);
        if (!recorder->text)
            exit(2);
    }
    memcpy(recorder->text + recorder->length, data, size);
    recorder->length += size;
    recorder->text[recorder->length] = '\0';
}

static int record_begin(void *context, const char *name)
{
    struct recorder *recorder = context;

    record(recorder, "[", 1);
    if (name)
        record(recorder, name, strlen(name));
    else
        record(recorder, "-", 1);
    record(recorder, "]", 1);
    return recorder->stop_at && name && strcmp(name, recorder->stop_at) == 0;
}

static int record_data(void *context, const char *data, size_t size)
{
    if (size == 0) {
        fprintf(stderr, "  part_data called with 0 bytes\n");
        test_failures_++;
    }
    record(context, data, size);
    return 0;
}

static int record_end(void *context)
{
    record(context, "|", 1);
    return 0;
}

static const struct multipart_callbacks recorder_callbacks = {
    .part_begin = record_begin,
    .part_data = record_data,
    .part_end = record_end,
};

/* What one run of the parser over a body gave. */
struct outcome {
    struct recorder recorder;
    int feed_result;   /* 0, or -1 once any feed failed */
    int finish_result; /* multipart_parser_finish, or -1 when a feed failed */
    char error[MULTIPART_ERROR_SIZE];
};

/*
 * Feeds body to a new parser in chunks that end at the positions in cuts
 * (increasing, each below size), then finishes it.
 */
static void run_parser(const char *boundary, const char *body, size_t size, const size_t *cuts,
                       size_t ncuts, const char *stop_at, struct outcome *outcome)
{
    static struct multipart_parser parser;
    size_t start = 0;

    memset(outcome, 0, sizeof *outcome);
    outcome->recorder.stop_at = stop_at;
    record(&outcome->recorder, "", 0);
    multipart_parser_init(&parser, boundary, &recorder_callbacks, &outcome->recorder);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t stop = i < ncuts ? cuts[i] : size;

        if (multipart_parser_feed(&parser, body + start, stop - start) != 0)
            outcome->feed_result = -1;
        start = stop;
    }
    outcome->finish_result = outcome->feed_result != 0 ? -1 : multipart_parser_finish(&parser);
    snprintf(outcome->error, sizeof outcome->error, "%s", multipart_parser_error(&parser));
}

static bool same_outcome(const struct outcome *a, const struct outcome *b)
{
    return a->feed_result == b->feed_result && a->finish_result == b->finish_result &&
           strcmp(a->error, b->error) == 0 && a->recorder.length == b->recorder.length &&
           memcmp(a->recorder.text, b->recorder.text, a->recorder.length) == 0;
}

/* Prints the transcript with control bytes escaped. */
static void print_escaped(const char *label, const char *text, size_t length)
{
    fprintf(stderr, "    %s: '", label);
    for (size_t i = 0; i < length && i < 400; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02X", c);
        else
            fputc(c, stderr);
    }
    fputs(length > 400 ? "'...\n" : "'\n", stderr);
}

static void report_difference(const char *name, const char *split, const struct outcome *whole,
                              const struct outcome *other)
{
    fprintf(stderr, "  %s: %s differs from the whole body\n", name, split);
    print_escaped("whole", whole->recorder.text, whole->recorder.length);
    print_escaped("split", other->recorder.text, other->recorder.length);
    fprintf(stderr, "    results %d/%d '%s' vs %d/%d '%s'\n", whole->feed_result,
            whole->finish_result, whole->error, other->feed_result, other->finish_result,
            other->error);
    test_failures_++;
}

static uint64_t random_state = 0x9E3779B97F4A7C15ull;

static uint64_t next_random(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

/*
 * Runs the body whole and then split every way the test uses; every split
 * must give the whole body's outcome. Returns the whole body's outcome,
 * which the caller frees.
 */
static struct outcome check_splits(const char *name, const char *boundary, const char *body,
                                   size_t size, const char *stop_at)
{
    struct outcome whole, other;
    size_t *cuts = calloc(size + 1, sizeof *cuts);
    char split[64];

    if (!cuts)
        exit(2);
    run_parser(boundary, body, size, NULL, 0, stop_at, &whole);

    for (size_t at = 1; at < size; at++) {
        run_parser(boundary, body, size, &at, 1, stop_at, &other);
        if (!same_outcome(&whole, &other)) {
            snprintf(split, sizeof split, "split at byte %zu", at);
            report_difference(name, split, &whole, &other);
        }
        free(other.recorder.text);
    }

    for (size_t i = 0; i + 1 < size; i++)
        cuts[i] = i + 1;
    run_parser(boundary, body, size, cuts, size > 0 ? size - 1 : 0, stop_at, &other);
    if (!same_outcome(&whole, &other))
        report_difference(name, "1-byte chunks", &whole, &other);
    free(other.recorder.text);

    /* Three pieces, for short bodies only: the number of runs grows as size squared. */
    if (size <= 200) {
        for (size_t a = 1; a < size; a++) {
            for (size_t b = a + 1; b < size; b++) {
                size_t pair[2] = {a, b};

                run_parser(boundary, body, size, pair, 2, stop_at, &other);
                if (!same_outcome(&whole, &other)) {
                    snprintf(split, sizeof split, "split at bytes %zu and %zu", a, b);
                    report_difference(name, split, &whole, &other);
                }
                free(other.recorder.text);
            }
        }
    }

    for (int round = 0; round < 20 && size > 1; round++) {
        size_t ncuts = 0;

        for (size_t at = 1; at < size; at++)
            if (next_random() % 7 == 0)
                cuts[ncuts++] = at;
        run_parser(boundary, body, size, cuts, ncuts, stop_at, &other);
        if (!same_outcome(&whole, &other)) {
            snprintf(split, sizeof split, "random split %d (%zu cuts)", round, ncuts);
            report_difference(name, split, &whole, &other);
        }
        free(other.recorder.text);
    }
    free(cuts);
    return whole;
}

/* ------------------------------------------------------- body cases */

#define CD "Content-Disposition: form-data; "
#define LEN(s) (sizeof(s) - 1)

struct body_case {
    const char *name;
    const char *boundary;
    const char *body;
    size_t size;
    const char *transcript; /* expected callbacks, see struct recorder */
    size_t transcript_size;
    bool ok;                /* parsed up to the closing delimiter */
    const char *error;      /* expected words of the error message when !ok */
};

#define OK_CASE(name, boundary, body, transcript) \
    {name, boundary, body, LEN(body), transcript, LEN(transcript), true, NULL}
#define ERROR_CASE(name, boundary, body, transcript, error) \
    {name, boundary, body, LEN(body), transcript, LEN(transcript), false, error}

static const struct body_case body_cases[] = {
    OK_CASE("one part", "XB",
            "--XB\r\n" CD "name=\"image\"\r\n\r\nhello\r\n--XB--\r\n",
            "[image]hello|"),
    OK_CASE("image and fields", "XB",
            "--XB\r\n" CD "name=\"conf\"\r\n\r\n0.5\r\n"
            "--XB\r\n" CD "name=\"image\"; filename=\"bus.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            "\xFF\xD8\xFF\x00\r\n\xFF\xD9\r\n"
            "--XB\r\n" CD "name=\"classes\"\r\n\r\nperson,bus\r\n--XB--\r\n",
            "[conf]0.5|[image]\xFF\xD8\xFF\x00\r\n\xFF\xD9|[classes]person,bus|"),
    OK_CASE("unquoted name", "XB",
            "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB--\r\n", "[image]x|"),
    OK_CASE("header names any case", "XB",
            "--XB\r\ncontent-DISPOSITION: FORM-DATA; NAME=image\r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("spaces around header value", "XB",
            "--XB\r\nContent-Disposition:form-data;name=image  \r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("filename before name", "XB",
            "--XB\r\n" CD "filename=\"a; name=b.jpg\"; name=\"image\"\r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("escaped quote in filename", "XB",
            "--XB\r\n" CD "filename=\"a\\\"; name=b\"; name=image\r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("escapes in name", "XB",
            "--XB\r\n" CD "name=\"im\\age\"\r\n\r\nx\r\n--XB--\r\n", "[image]x|"),
    OK_CASE("UTF-8 name", "XB",
            "--XB\r\n" CD "name=\"caf\xC3\xA9\"\r\n\r\nx\r\n--XB--\r\n", "[caf\xC3\xA9]x|"),
    OK_CASE("filename* ignored", "XB",
            "--XB\r\n" CD "name=image; filename*=UTF-8''a%20b.jpg\r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("other headers ignored", "XB",
            "--XB\r\nContent-Type: image/jpeg\r\nX-Other: a: b\r\n" CD "name=image\r\n"
            "Content-Transfer-Encoding: binary\r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("folded header", "XB",
            "--XB\r\nContent-Disposition: form-data;\r\n name=\"image\";\r\n\tfilename=a\r\n\r\n"
            "x\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("part without headers", "XB",
            "--XB\r\n\r\n\r\n--XB--\r\n", "[-]|"),
    OK_CASE("part without name", "XB",
            "--XB\r\n" CD "filename=\"a.jpg\"\r\n\r\nx\r\n--XB--\r\n", "[-]x|"),
    OK_CASE("part with only Content-Type", "XB",
            "--XB\r\nContent-Type: image/jpeg\r\n\r\nx\r\n--XB--\r\n", "[-]x|"),
    OK_CASE("empty name", "XB",
            "--XB\r\n" CD "name=\"\"\r\n\r\nx\r\n--XB--\r\n", "[]x|"),
    OK_CASE("preamble", "XB",
            "This is the preamble.\r\nIt has --XB inside and -\r\n--XBx too.\r\n"
            "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB--\r\n",
            "[image]x|"),
    OK_CASE("preamble of one CRLF", "XB",
            "\r\n--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB--\r\n", "[image]x|"),
    OK_CASE("epilogue", "XB",
            "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB--\r\nepilogue\r\n--XB\r\n" CD "name=a\r\n\r\n",
            "[image]x|"),
    OK_CASE("close without CRLF", "XB",
            "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB--", "[image]x|"),
    OK_CASE("transport padding", "XB",
            "--XB \t \r\n" CD "name=image\r\n\r\nx\r\n--XB\t\r\n" CD "name=a\r\n\r\ny\r\n--XB-- \r\n",
            "[image]x|[a]y|"),
    OK_CASE("boundary-like data", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n"
            "a--XB\r\n--XBfoo\r\n--XB --x\r\n--XB-x\r\n--XB \rz\r\n--XB \t-\r\n--X\r\n-XB\r\r\n\n--XB\r\r\n--xb\r"
            "\r\n--XB--\r\n",
            "[image]a--XB\r\n--XBfoo\r\n--XB --x\r\n--XB-x\r\n--XB \rz\r\n--XB \t-\r\n--X\r\n-XB\r\r\n\n--XB\r\r\n--xb\r|"),
    OK_CASE("delimiter after CR", "XB",
            "--XB\r\n" CD "name=image\r\n\r\na\r\r\n--XB--", "[image]a\r|"),
    OK_CASE("empty part", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n\r\n--XB--\r\n", "[image]|"),
    OK_CASE("empty part without CRLF", "XB",
            "--XB\r\n" CD "name=a\r\n\r\n--XB\r\n" CD "name=image\r\n\r\n--XB--\r\n",
            "[a]|[image]|"),
    OK_CASE("data starting with boundary-like text", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n--XBx\r\n--XB--\r\n", "[image]--XBx|"),
    OK_CASE("data starting with a dash", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n-a\r\n--XB--\r\n", "[image]-a|"),
    OK_CASE("data of CRLFs", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n\r\n\r\n\r\n\r\n--XB--\r\n", "[image]\r\n\r\n\r\n|"),
    OK_CASE("data with NUL bytes", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n\0\0\r\0\n\0\r\n--XB--\r\n", "[image]\0\0\r\0\n\0|"),
    OK_CASE("no parts", "XB", "--XB--\r\n", ""),
    OK_CASE("repeated parts", "XB",
            "--XB\r\n" CD "name=image\r\n\r\n1\r\n--XB\r\n" CD "name=image\r\n\r\n2\r\n--XB--",
            "[image]1|[image]2|"),
    OK_CASE("boundary of 70 characters", BOUNDARY_70,
            "--" BOUNDARY_70 "\r\n" CD "name=image\r\n\r\nx\r\n--" BOUNDARY_70 "0\r\n--"
            BOUNDARY_70 "--\r\n",
            "[image]x\r\n--" BOUNDARY_70 "0|"),
    OK_CASE("boundary with space and punctuation", "a b'()+_,-./:=?",
            "--a b'()+_,-./:=?\r\n" CD "name=image\r\n\r\nx\r\n--a b'()+_,-./:=?--\r\n",
            "[image]x|"),
    OK_CASE("boundary of dashes", "--",
            "----\r\n" CD "name=image\r\n\r\n--\r\n---\r\n------\r\n", "[image]--\r\n---|"),

    ERROR_CASE("empty body", "XB", "", "", "ends before the closing boundary line '--XB--'"),
    ERROR_CASE("no delimiter", "XB", "hello world", "", "ends before the closing boundary"),
    ERROR_CASE("no closing delimiter", "XB",
               "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB\r\n", "[image]x|",
               "ends before the closing boundary"),
    ERROR_CASE("truncated data", "XB",
               "--XB\r\n" CD "name=image\r\n\r\nxyz\r\n--X", "[image]xyz",
               "ends before the closing boundary"),
    ERROR_CASE("bare LF lines", "XB",
               "--XB\n" CD "name=image\n\nx\n--XB--\n", "", "(delimiter lines end in CRLF)"),
    ERROR_CASE("bare LF after a header", "XB",
               "--XB\r\n" CD "name=image\n\r\nx\r\n--XB--\r\n", "", "bare LF"),
    ERROR_CASE("bare CR in a header", "XB",
               "--XB\r\n" CD "name=image\rX: y\r\n\r\nx\r\n--XB--\r\n", "", "CR not followed by LF"),
    ERROR_CASE("NUL in a header", "XB",
               "--XB\r\n" CD "name=im\0age\r\n\r\nx\r\n--XB--\r\n", "", "NUL"),
    ERROR_CASE("header without colon", "XB",
               "--XB\r\nContent-Disposition form-data\r\n\r\nx\r\n--XB--\r\n", "",
               "malformed part header line"),
    ERROR_CASE("space before colon", "XB",
               "--XB\r\nContent-Disposition : form-data; name=image\r\n\r\nx\r\n--XB--\r\n", "",
               "malformed part header line"),
    ERROR_CASE("folded first line", "XB",
               "--XB\r\n " CD "name=image\r\n\r\nx\r\n--XB--\r\n", "", "space or tab"),
    ERROR_CASE("two Content-Disposition headers", "XB",
               "--XB\r\n" CD "name=a\r\n" CD "name=image\r\n\r\nx\r\n--XB--\r\n", "",
               "more than one Content-Disposition"),
    ERROR_CASE("two name parameters", "XB",
               "--XB\r\n" CD "name=a; name=image\r\n\r\nx\r\n--XB--\r\n", "",
               "more than one name"),
    ERROR_CASE("disposition type attachment", "XB",
               "--XB\r\nContent-Disposition: attachment; name=image\r\n\r\nx\r\n--XB--\r\n", "",
               "type 'attachment', expected form-data"),
    ERROR_CASE("unterminated quoted name", "XB",
               "--XB\r\n" CD "name=\"image\r\n\r\nx\r\n--XB--\r\n", "",
               "malformed Content-Disposition"),
    ERROR_CASE("name without value", "XB",
               "--XB\r\n" CD "name=\r\n\r\nx\r\n--XB--\r\n", "", "malformed Content-Disposition"),
    ERROR_CASE("empty Content-Disposition", "XB",
               "--XB\r\nContent-Disposition:\r\n\r\nx\r\n--XB--\r\n", "",
               "malformed Content-Disposition"),
    ERROR_CASE("bad header after a good part", "XB",
               "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB\r\nbad\r\n\r\ny\r\n--XB--\r\n",
               "[image]x|", "malformed part header line"),
    ERROR_CASE("stopped by the caller", "XB",
               "--XB\r\n" CD "name=image\r\n\r\nx\r\n--XB\r\n" CD "name=stop\r\n\r\ny\r\n--XB--",
               "[image]x|[stop]", "stopped by the caller"),
};

static void check_body_case(const struct body_case *c)
{
    struct outcome whole = check_splits(c->name, c->boundary, c->body, c->size, "stop");
    bool ok = whole.feed_result == 0 && whole.finish_result == 0;

    if (ok != c->ok) {
        fprintf(stderr, "  %s: parse %s, expected %s (error '%s')\n", c->name,
                ok ? "succeeded" : "failed", c->ok ? "success" : "failure", whole.error);
        test_failures_++;
    }
    if (!c->ok && !strstr(whole.error, c->error)) {
        fprintf(stderr, "  %s: error '%s' lacks '%s'\n", c->name, whole.error, c->error);
        test_failures_++;
    }
    if (c->ok && whole.error[0] != '\0') {
        fprintf(stderr, "  %s: error '%s' after success\n", c->name, whole.error);
        test_failures_++;
    }
    if (whole.recorder.length != c->transcript_size ||
        memcmp(whole.recorder.text, c->transcript, c->transcript_size) != 0) {
        fprintf(stderr, "  %s: wrong parts\n", c->name);
        print_escaped("got", whole.recorder.text, whole.recorder.length);
        print_escaped("expected", c->transcript, c->transcript_size);
        test_failures_++;
    }
    free(whole.recorder.text);
}

static void test_body_cases(void)
{
    for (size_t i = 0; i < sizeof body_cases / sizeof body_cases[0]; i++)
        check_body_case(&body_cases[i]);
}

/* Every prefix that stops before the closing "--" fails at finish, split or not. */
static void test_truncated_bodies(void)
{
    static const char body[] = "preamble\r\n--XB\r\n" CD "name=\"conf\"\r\n\r\n0.5\r\n"
                               "--XB\r\n" CD "name=image\r\n\r\n\xFF\xD8\r\n--XBX\xFF\xD9"
                               "\r\n--XB--\r\n";
    size_t closed = LEN(body) - 2; /* the final CRLF is epilogue */
    char name[64];

    for (size_t size = 0; size <= LEN(body); size++) {
        struct outcome whole;

        snprintf(name, sizeof name, "prefix of %zu bytes", size);
        whole = check_splits(name, "XB", body, size, NULL);
        if (size < closed) {
            CHECK_INT_EQ(whole.finish_result, -1);
            CHECK(strstr(whole.error, "ends before the closing boundary") != NULL);
        } else {
            CHECK_INT_EQ(whole.finish_result, 0);
            CHECK(strcmp(whole.recorder.text, "[conf]0.5|[image]\xFF\xD8\r\n--XBX\xFF\xD9|") == 0);
        }
        free(whole.recorder.text);
    }
}

/* Builds "--XB" CRLF, the given part headers, an empty line, "x" and the closing delimiter. */
static char *body_with_headers(const char *headers, size_t *size)
{
    static const char head[] = "--XB\r\n";
    static const char tail[] = "\r\n\r\nx\r\n--XB--\r\n";
    size_t length = strlen(headers);
    char *body = malloc(LEN(head) + length + LEN(tail) + 1);

    if (!body)
        exit(2);
    memcpy(body, head, LEN(head));
    memcpy(body + LEN(head), headers, length);
    memcpy(body + LEN(head) + length, tail, LEN(tail) + 1);
    *size = LEN(head) + length + LEN(tail);
    return body;
}

/* A Content-Disposition field of exactly length bytes, padded in its filename. */
static char *disposition_of_length(size_t length)
{
    static const char start[] = CD "name=image; filename=\"";
    char *field = malloc(length + 1);

    if (!field || length < LEN(start) + 1)
        exit(2);
    memcpy(field, start, LEN(start));
    memset(field + LEN(start), 'a', length - LEN(start) - 1);
    field[length - 1] = '"';
    field[length] = '\0';
    return field;
}

static struct outcome parse_whole(const char *body, size_t size)
{
    struct outcome outcome;

    run_parser("XB", body, size, NULL, 0, NULL, &outcome);
    return outcome;
}

static void test_header_line_limit(void)
{
    char *field = disposition_of_length(MULTIPART_HEADER_LINE_MAX);
    size_t size;
    char *body = body_with_headers(field, &size);
    struct outcome outcome = parse_whole(body, size);

    CHECK_INT_EQ(outcome.finish_result, 0);
    CHECK(strcmp(outcome.recorder.text, "[image]x|") == 0);
    free(outcome.recorder.text);
    free(body);
    free(field);

    field = disposition_of_length(MULTIPART_HEADER_LINE_MAX + 1);
    body = body_with_headers(field, &size);
    outcome = parse_whole(body, size);
    CHECK_INT_EQ(outcome.feed_result, -1);
    CHECK(strstr(outcome.error, "a part header line is longer than 4096 bytes") != NULL);
    free(outcome.recorder.text);
    free(body);
    free(field);
}

/* The limit also holds for one field folded over many short lines. */
static void test_folded_header_limit(void)
{
    size_t length = 0;
    char *headers = malloc(MULTIPART_HEADER_BLOCK_MAX);
    size_t size;
    char *body;
    struct outcome outcome;

    if (!headers)
        exit(2);
    length += (size_t)sprintf(headers, CD "name=image");
    while (length < MULTIPART_HEADER_LINE_MAX * 3 / 2)
        length += (size_t)sprintf(headers + length, "\r\n x=y;");
    body = body_with_headers(headers, &size);
    outcome = parse_whole(body, size);
    CHECK_INT_EQ(outcome.feed_result, -1);
    CHECK(strstr(outcome.error, "longer than 4096 bytes") != NULL);
    free(outcome.recorder.text);
    free(body);
    free(headers);
}

static void test_header_block_limit(void)
{
    char *headers = malloc(2 * MULTIPART_HEADER_BLOCK_MAX);
    size_t length = 0, size;
    char *body;
    struct outcome outcome;

    if (!headers)
        exit(2);
    length += (size_t)sprintf(headers, CD "name=image");
    /* Headers of 100 bytes each, CRLF included, up to the limit. */
    while (length + 2 + 100 + 4 <= MULTIPART_HEADER_BLOCK_MAX) {
        length += (size_t)sprintf(headers + length, "\r\nX-Padding: ");
        memset(headers + length, 'p', 100 - 2 - 11);
        length += 100 - 2 - 11;
        headers[length] = '\0';
    }
    body = body_with_headers(headers, &size);
    outcome = parse_whole(body, size);
    CHECK_INT_EQ(outcome.finish_result, 0);
    CHECK(strcmp(outcome.recorder.text, "[image]x|") == 0);
    free(outcome.recorder.text);
    free(body);

    /* Pad the last header up to one byte over the limit: headers, CRLF, empty line. */
    {
        size_t over = MULTIPART_HEADER_BLOCK_MAX + 1 - (length + 4);

        memset(headers + length, 'q', over);
        length += over;
        headers[length] = '\0';
    }
    body = body_with_headers(headers, &size);
    outcome = parse_whole(body, size);
    CHECK_INT_EQ(outcome.feed_result, -1);
    CHECK(strstr(outcome.error, "the headers of a part are longer than 16384 bytes") != NULL);
    free(outcome.recorder.text);
    free(body);
    free(headers);
}

/* After a failure, every feed fails again and nothing more is passed on. */
static void test_failure_is_final(void)
{
    static struct multipart_parser parser;
    static const char bad[] = "--XB\r\nbad header\r\n\r\n";
    static const char more[] = "x\r\n--XB--\r\n";
    struct recorder recorder = {0};

    record(&recorder, "", 0);
    multipart_parser_init(&parser, "XB", &recorder_callbacks, &recorder);
    CHECK_INT_EQ(multipart_parser_feed(&parser, bad, LEN(bad)), -1);
    CHECK_INT_EQ(multipart_parser_feed(&parser, more, LEN(more)), -1);
    CHECK_INT_EQ(multipart_parser_feed(&parser, more, 0), -1);
    CHECK_INT_EQ(multipart_parser_finish(&parser), -1);
    CHECK(strstr(multipart_parser_error(&parser), "malformed part header line") != NULL);
    CHECK_INT_EQ(recorder.length, 0);
    free(recorder.text);
}

/*
 * Random bodies over a small alphabet that is rich in delimiter pieces:
 * whatever they parse to, every split must agree with the whole body.
 */
static void test_random_bodies(void)
{
    static const char *const pieces[] = {
        "\r\n", "\r", "\n", "--", "-", "XB", "X", "B", "a", " ", "\t", "\r\n--XB",
        "\r\n--XB--", "\r\n--XB\r\n", CD "name=image\r\n\r\n", CD "name=\"a\"\r\n",
    };
    char body[160];
    char name[32];

    for (int round = 0; round < 300; round++) {
        size_t size = 0;
        struct outcome whole;

        if (next_random() % 2)
            size += (size_t)sprintf(body, "--XB\r\n");
        while (size < sizeof body - 40) {
            const char *piece = pieces[next_random() % (sizeof pieces / sizeof pieces[0])];
            size_t length = strlen(piece);

            if (size + length >= sizeof body)
                break;
            memcpy(body + size, piece, length);
            size += length;
            if (next_random() % 16 == 0)
                break;
        }
        snprintf(name, sizeof name, "random body %d", round);
        whole = check_splits(name, "XB", body, size, NULL);
        free(whole.recorder.text);
    }
}

int main(void)
{
    RUN(test_content_type_cases);
    RUN(test_body_cases);
    RUN(test_truncated_bodies);
    RUN(test_header_line_limit);
    RUN(test_folded_header_limit);
    RUN(test_header_block_limit);
    RUN(test_failure_is_final);
    RUN(test_random_bodies);
    return TEST_SUMMARY();
}
