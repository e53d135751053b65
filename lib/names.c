/*
 * COCO class names and category ids, and the parser for the Python dict
 * repr that Ultralytics stores as the "names" metadata of an ONNX export.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "util.h"

static const char *const coco80_names[YD_COCO80_COUNT] = {
    "person", "bicycle", "car", "motorcycle", "airplane", "bus",
    "train", "truck", "boat", "traffic light", "fire hydrant", "stop sign",
    "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
};

/*
 * COCO 2017 category ids of the 80 classes. The original annotations number
 * 90 categories and leave 10 of those ids unused.
 */
static const unsigned char coco80_category_ids[YD_COCO80_COUNT] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17,
    18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36,
    37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73,
    74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
};

const char *yd_coco80_name(int i)
{
    return i >= 0 && i < YD_COCO80_COUNT ? coco80_names[i] : NULL;
}

int yd_coco80_category_id(int i)
{
    if (i < 0 || i >= YD_COCO80_COUNT)
        return YD_ERR_INVALID_ARGUMENT;
    return coco80_category_ids[i];
}

/* ------------------------------------------------------------- parser */

typedef struct names_parser {
    const char *text;
    const char *p;
    yd_error *err;
} names_parser;

static int parse_error(const names_parser *ps, const char *what)
{
    return yd_error_set(ps->err, YD_ERR_MODEL_FORMAT,
                        "invalid class names metadata: %s at byte %td", what,
                        ps->p - ps->text);
}

static void skip_space(names_parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Writes code point cp as UTF-8; cp is in 1..0x10FFFF and no surrogate. */
static char *put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        *out++ = (char)cp;
    } else if (cp < 0x800) {
        *out++ = (char)(0xc0 | cp >> 6);
        *out++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *out++ = (char)(0xe0 | cp >> 12);
        *out++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *out++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *out++ = (char)(0xf0 | cp >> 18);
        *out++ = (char)(0x80 | (cp >> 12 & 0x3f));
        *out++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *out++ = (char)(0x80 | (cp & 0x3f));
    }
    return out;
}

/*
 * Decodes the escape after a backslash at ps->p (which points past it) into
 * out, following Python's string literal rules. An unknown escape keeps the
 * backslash, as Python does. Returns the new output end, or NULL after
 * filling the error.
 */
static char *decode_escape(names_parser *ps, char *out)
{
    static const char simple_from[] = "\\'\"abfnrtv";
    static const char simple_to[] = "\\'\"\a\b\f\n\r\t\v";
    char c = *ps->p++;
    const char *simple = strchr(simple_from, c);
    uint32_t cp = 0;
    int digits = 0;

    if (c != '\0' && simple) {
        *out++ = simple_to[simple - simple_from];
        return out;
    }
    if (c == '\n')
        return out; /* line continuation */

    if (c >= '0' && c <= '7') {
        cp = (uint32_t)(c - '0');
        for (int i = 0; i < 2 && *ps->p >= '0' && *ps->p <= '7'; i++)
            cp = cp * 8 + (uint32_t)(*ps->p++ - '0');
    } else if (c == 'x' || c == 'u' || c == 'U') {
        if (c == 'x')
            digits = 2;
        else if (c == 'u')
            digits = 4;
        else
            digits = 8;
        for (int i = 0; i < digits; i++) {
            int v = hex_value(*ps->p);

            if (v < 0) {
                parse_error(ps, "truncated \\x, \\u or \\U escape");
                return NULL;
            }
            cp = cp * 16 + (uint32_t)v;
            ps->p++;
        }
    } else if (c == 'N') {
        parse_error(ps, "\\N{...} escapes are not supported");
        return NULL;
    } else {
        ps->p--;
        *out++ = '\\';
        return out;
    }

    if (cp == 0) {
        parse_error(ps, "name contains a NUL character");
        return NULL;
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        parse_error(ps, "escape is not a valid Unicode scalar value");
        return NULL;
    }
    return put_utf8(out, cp);
}

/*
 * Parses a quoted Python string at ps->p into a new malloc'ed string.
 * Escapes never decode to more bytes than they occupy, so the quoted span's
 * length bounds the output.
 */
static int parse_string(names_parser *ps, char **out)
{
    char quote = *ps->p;
    const char *start, *end;
    char *buf, *w;

    if (quote != '\'' && quote != '"')
        return parse_error(ps, "expected a quoted name");
    start = ++ps->p;
    for (end = start; *end != quote; end++) {
        if (*end == '\0' || *end == '\n' || *end == '\r') {
            ps->p = end;
            return parse_error(ps, "unterminated name");
        }
        if (*end == '\\' && end[1] != '\0')
            end++;
    }

    buf = malloc((size_t)(end - start) + 1);
    if (!buf)
        return yd_error_set(ps->err, YD_ERR_NO_MEMORY, "out of memory parsing class names");
    w = buf;
    while (ps->p < end) {
        if (*ps->p != '\\') {
            *w++ = *ps->p++;
            continue;
        }
        ps->p++;
        w = decode_escape(ps, w);
        if (!w) {
            free(buf);
            return YD_ERR_MODEL_FORMAT;
        }
    }
    *w = '\0';
    ps->p = end + 1;
    *out = buf;
    return 0;
}

static int parse_key(names_parser *ps, int nc, int *key)
{
    long value = 0;

    if (*ps->p < '0' || *ps->p > '9')
        return parse_error(ps, "expected a non-negative integer key");
    while (*ps->p >= '0' && *ps->p <= '9') {
        value = value * 10 + (*ps->p - '0');
        if (value >= nc)
            return yd_error_set(ps->err, YD_ERR_MODEL_FORMAT,
                                "invalid class names metadata: key at byte %td is "
                                "not below the class count %d",
                                ps->p - ps->text, nc);
        ps->p++;
    }
    *key = (int)value;
    return 0;
}

/* Parses one "key: 'name'" entry into names[key]. */
static int parse_entry(names_parser *ps, int nc, char **names)
{
    const char *key_start = ps->p;
    int key = 0, rc;

    rc = parse_key(ps, nc, &key);
    if (rc < 0)
        return rc;
    if (names[key]) {
        ps->p = key_start;
        return yd_error_set(ps->err, YD_ERR_MODEL_FORMAT,
                            "invalid class names metadata: duplicate key %d at byte %td",
                            key, ps->p - ps->text);
    }
    skip_space(ps);
    if (*ps->p != ':')
        return parse_error(ps, "expected ':' after the key");
    ps->p++;
    skip_space(ps);
    return parse_string(ps, &names[key]);
}

int yd_names_parse(const char *text, int nc, char ***names_out, yd_error *err)
{
    names_parser ps = { text, text, err };
    char **names = NULL;
    int count = 0;
    int rc;

    if (!text || !names_out || nc < 1)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "yd_names_parse: text and names_out must be set and nc >= 1 (got %d)",
                            nc);
    names = calloc((size_t)nc, sizeof *names);
    if (!names)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory parsing class names");

    skip_space(&ps);
    if (*ps.p != '{') {
        rc = parse_error(&ps, "expected '{'");
        goto done;
    }
    ps.p++;
    skip_space(&ps);

    /* Entries separated by commas; Python also accepts a trailing comma. */
    while (*ps.p != '}') {
        rc = parse_entry(&ps, nc, names);
        if (rc < 0)
            goto done;
        count++;
        skip_space(&ps);
        if (*ps.p == ',') {
            ps.p++;
            skip_space(&ps);
        } else if (*ps.p != '}') {
            rc = parse_error(&ps, "expected ',' or '}'");
            goto done;
        }
    }
    ps.p++;
    skip_space(&ps);
    if (*ps.p != '\0') {
        rc = parse_error(&ps, "unexpected text after '}'");
        goto done;
    }
    if (count != nc) {
        rc = yd_error_set(err, YD_ERR_MODEL_FORMAT,
                          "invalid class names metadata: %d names for %d classes",
                          count, nc);
        goto done;
    }
    rc = 0;

done:
    if (rc < 0) {
        yd_names_free(names, nc);
        return rc;
    }
    *names_out = names;
    return 0;
}

void yd_names_free(char **names, int nc)
{
    if (!names)
        return;
    for (int i = 0; i < nc; i++)
        free(names[i]);
    free(names);
}
