/*
 * The .yolod model file: writer, validating reader, and the hashes it uses
 * (CRC-32C for integrity, SHA-256 for provenance) plus fp16 conversion.
 * docs/model-file.md is the byte-level specification; the constants below
 * must match it.
 *
 * The reader trusts nothing: every count, offset, id and shape is checked
 * before it is used, so a crafted file with valid checksums is rejected
 * with a message instead of reaching the kernels with shapes they cannot run.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

#include "head.h"
#include "model_file.h"
#include "names.h"
#include "util.h"

/* ------------------------------------------------------------ constants */

#define HEADER_SIZE 64
#define HEADER_MAX_SIZE 4096
#define HEADER_CRC_OFFSET_FROM_END 4
#define SECTION_ENTRY_SIZE 32
#define SECTION_ALIGN 64
#define MAX_SECTIONS 64

enum section_id {
    SECTION_GRAPH = 1,
    SECTION_WEIGHTS = 2,
    SECTION_NAMES = 3,
    SECTION_META = 4,
};

#define WEIGHT_ENTRY_SIZE 48
#define WEIGHTS_PREAMBLE_SIZE 16

/* Bounds the reader enforces; the importer's limits are tighter or equal. */
#define MAX_STRING 4096
#define MAX_META_STRING 65536
#define MAX_META_ENTRIES 1024
#define MAX_CHANNELS YD_GRAPH_MAX_CHANNELS
#define MAX_SIDE YD_GRAPH_MAX_SIDE
#define MAX_VALUE_ELEMENTS YD_GRAPH_MAX_VALUE_ELEMENTS
#define MAX_KERNEL YD_GRAPH_MAX_KERNEL
#define MAX_STRIDE YD_GRAPH_MAX_STRIDE
#define MAX_SCALE YD_GRAPH_MAX_SCALE
#define MAX_CLASSES 100000

/* ------------------------------------------------------------ CRC-32C */

#ifndef __SSE4_2__
static uint32_t crc32c_table[256];

static void crc32c_init_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
}
#endif

static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef __SSE4_2__
    uint64_t c = crc;

    while (n >= 8) {
        uint64_t word;

        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
#else
    /* Racing initialisations write identical values, so a plain flag is enough. */
    static volatile int ready;

    if (!ready) {
        crc32c_init_table();
        ready = 1;
    }
    while (n--)
        crc = crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
#endif
}

uint32_t yd_crc32c(const void *data, size_t size)
{
    return ~crc32c_update(0xFFFFFFFFu, data, size);
}

/* ------------------------------------------------------------ SHA-256 */

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t state[8], const uint8_t *block)
{
    uint32_t w[64], a, b, c, d, e, f, g, h;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);

        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = state[0], b = state[1], c = state[2], d = state[3];
    e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + ch + sha256_k[i] + w[i];
        uint32_t s0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;

        h = g, g = f, f = e, e = d + t1;
        d = c, c = b, b = a, a = t1 + t2;
    }
    state[0] += a, state[1] += b, state[2] += c, state[3] += d;
    state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

void yd_sha256_init(yd_sha256 *sha)
{
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

    memcpy(sha->state, initial, sizeof initial);
    sha->length = 0;
    sha->used = 0;
}

void yd_sha256_update(yd_sha256 *sha, const void *data, size_t size)
{
    const uint8_t *p = data;

    sha->length += size;
    if (sha->used > 0) {
        size_t take = 64 - sha->used < size ? 64 - sha->used : size;

        memcpy(sha->block + sha->used, p, take);
        sha->used += take;
        p += take;
        size -= take;
        if (sha->used < 64)
            return;
        sha256_block(sha->state, sha->block);
        sha->used = 0;
    }
    for (; size >= 64; p += 64, size -= 64)
        sha256_block(sha->state, p);
    memcpy(sha->block, p, size);
    sha->used = size;
}

void yd_sha256_final(yd_sha256 *sha, uint8_t digest[32])
{
    uint64_t bits = sha->length * 8;

    sha->block[sha->used++] = 0x80;
    if (sha->used > 56) {
        memset(sha->block + sha->used, 0, 64 - sha->used);
        sha256_block(sha->state, sha->block);
        sha->used = 0;
    }
    memset(sha->block + sha->used, 0, 56 - sha->used);
    for (int i = 0; i < 8; i++)
        sha->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_block(sha->state, sha->block);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 4; k++)
            digest[4 * i + k] = (uint8_t)(sha->state[i] >> (24 - 8 * k));
}

void yd_sha256_hex(const uint8_t digest[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

int yd_sha256_file(const char *path, char hex[65], yd_error *err)
{
    int fd = yd_open_regular_file(path, err);
    FILE *f;
    uint8_t buf[1 << 16], digest[32];
    yd_sha256 sha;
    size_t n;

    if (fd < 0)
        return fd;
    f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return yd_error_set(err, YD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    }
    yd_sha256_init(&sha);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        yd_sha256_update(&sha, buf, n);
    if (ferror(f)) {
        fclose(f);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s'", path);
    }
    fclose(f);
    yd_sha256_final(&sha, digest);
    yd_sha256_hex(digest, hex);
    return YD_OK;
}

/* ------------------------------------------------------------ fp16 */

uint16_t yd_fp16_from_float(float value)
{
    uint32_t bits, magnitude, sign;

    memcpy(&bits, &value, sizeof bits);
    sign = (bits >> 16) & 0x8000u;
    magnitude = bits & 0x7FFFFFFFu;

    if (magnitude >= 0x7F800000u) /* infinity, or NaN kept quiet with its top payload */
        return (uint16_t)(sign | 0x7C00u |
                          (magnitude > 0x7F800000u ? 0x200u | ((magnitude >> 13) & 0x3FFu) : 0));
    if (magnitude >= 0x477FF000u) /* 65520 and above round to infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (magnitude < 0x38800000u) {
        /* Below 2^-14, the smallest normal half: adding 0.5f makes the FPU
         * round to a multiple of 2^-24 (0.5f's ulp), which is the subnormal
         * half's step, with the current rounding mode (nearest even). */
        float f;
        uint32_t rounded;

        memcpy(&f, &magnitude, sizeof f);
        f += 0.5f;
        memcpy(&rounded, &f, sizeof rounded);
        return (uint16_t)(sign | (rounded - 0x3F000000u));
    }
    /* Rebias the exponent from 127 to 15 and round the 13 dropped mantissa
     * bits to nearest even. A carry into the exponent gives the right result. */
    magnitude += 0xC8000FFFu + ((magnitude >> 13) & 1u);
    return (uint16_t)(sign | (magnitude >> 13));
}

float yd_fp16_to_float(uint16_t half)
{
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1Fu;
    uint32_t mantissa = half & 0x3FFu;
    uint32_t bits;
    float value;

    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent == 0) {
        value = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &value, sizeof bits);
        bits |= sign;
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* ------------------------------------------------------------ provenance */

void yd_model_provenance_init(yd_model_provenance *provenance)
{
    memset(provenance, 0, sizeof *provenance);
    provenance->map50_95 = NAN;
    provenance->map50 = NAN;
}

/* ------------------------------------------------------------ byte buffers */

typedef struct byte_buffer {
    uint8_t *data;
    size_t size, cap;
    int failed; /* an allocation failed; later writes are dropped */
} byte_buffer;

static uint8_t *buffer_reserve(byte_buffer *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *grown;

        while (cap < b->size + n)
            cap *= 2;
        grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return NULL;
        }
        b->data = grown;
        b->cap = cap;
    }
    b->size += n;
    return b->data + b->size - n;
}

static void put_bytes(byte_buffer *b, const void *data, size_t n)
{
    uint8_t *p = buffer_reserve(b, n);

    if (p && n)
        memcpy(p, data, n);
}

static void store_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void store_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(byte_buffer *b, uint32_t v)
{
    uint8_t *p = buffer_reserve(b, 4);

    if (p)
        store_u32(p, v);
}

static void put_i32(byte_buffer *b, int v) { put_u32(b, (uint32_t)v); }

static void put_u64(byte_buffer *b, uint64_t v)
{
    uint8_t *p = buffer_reserve(b, 8);

    if (p)
        store_u64(p, v);
}

static void put_f32(byte_buffer *b, float v)
{
    uint32_t bits;

    memcpy(&bits, &v, sizeof bits);
    put_u32(b, bits);
}

static void put_string(byte_buffer *b, const char *s)
{
    size_t n = strlen(s);

    put_u32(b, (uint32_t)n);
    put_bytes(b, s, n);
}

/* Pads with zeros to the next multiple of SECTION_ALIGN. */
static void put_align(byte_buffer *b)
{
    size_t pad = (SECTION_ALIGN - b->size % SECTION_ALIGN) % SECTION_ALIGN;
    uint8_t *p = buffer_reserve(b, pad);

    if (p)
        memset(p, 0, pad);
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint64_t load_u64(const uint8_t *p)
{
    return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

/* A bounds-checked cursor over one section; `bad` is set on any overrun. */
typedef struct reader {
    const uint8_t *data;
    size_t size, pos;
    int bad;
} reader;

static const uint8_t *take(reader *r, size_t n)
{
    const uint8_t *p;

    if (r->bad || n > r->size - r->pos) {
        r->bad = 1;
        return NULL;
    }
    p = r->data + r->pos;
    r->pos += n;
    return p;
}

static uint32_t get_u32(reader *r)
{
    const uint8_t *p = take(r, 4);

    return p ? load_u32(p) : 0;
}

static int get_i32(reader *r) { return (int)(int32_t)get_u32(r); }

/*
 * Reads a length-prefixed string of at most `max` bytes without NULs into
 * a new NUL-terminated copy. Returns NULL with r->bad set when malformed,
 * or NULL with *oom set when out of memory.
 */
static char *get_string(reader *r, size_t max, int *oom)
{
    uint32_t n = get_u32(r);
    const uint8_t *p;
    char *s;

    if (r->bad || n > max) {
        r->bad = 1;
        return NULL;
    }
    p = take(r, n);
    if (!p || memchr(p, 0, n)) {
        r->bad = 1;
        return NULL;
    }
    s = malloc((size_t)n + 1);
    if (!s) {
        *oom = 1;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------------ writer */

/* Live nodes in order and the values they use, renumbered densely. */
typedef struct compact_graph {
    int nnodes, nvalues;
    int *node_ids;   /* new node index -> graph node index */
    int *value_ids;  /* new value id -> graph value id */
    int *value_map;  /* graph value id -> new id, or -1 */
} compact_graph;

static void compact_free(compact_graph *c)
{
    free(c->node_ids);
    free(c->value_ids);
    free(c->value_map);
}

static void mark_value(const yd_graph *g, compact_graph *c, int v)
{
    if (v >= 0 && v < g->nvalues && c->value_map[v] < 0)
        c->value_map[v] = 0;
}

static int compact(const yd_graph *g, compact_graph *c, yd_error *err)
{
    memset(c, 0, sizeof *c);
    c->node_ids = malloc(((size_t)g->nnodes + 1) * sizeof *c->node_ids);
    c->value_ids = malloc(((size_t)g->nvalues + 1) * sizeof *c->value_ids);
    c->value_map = malloc(((size_t)g->nvalues + 1) * sizeof *c->value_map);
    if (!c->node_ids || !c->value_ids || !c->value_map)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory saving the model");
    for (int v = 0; v < g->nvalues; v++)
        c->value_map[v] = -1;

    mark_value(g, c, g->input);
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];

        if (node->dead)
            continue;
        c->node_ids[c->nnodes++] = i;
        mark_value(g, c, node->output);
        mark_value(g, c, node->residual);
        for (int k = 0; k < node->ninputs; k++)
            mark_value(g, c, node->inputs[k]);
    }
    for (int l = 0; l < g->nlevels; l++) {
        mark_value(g, c, g->head_box[l]);
        mark_value(g, c, g->head_cls[l]);
    }
    for (int v = 0; v < g->nvalues; v++) {
        if (c->value_map[v] < 0)
            continue;
        c->value_map[v] = c->nvalues;
        c->value_ids[c->nvalues++] = v;
    }
    return YD_OK;
}

static int mapped(const compact_graph *c, int v)
{
    return v < 0 ? -1 : c->value_map[v];
}

static void write_graph(byte_buffer *b, const yd_graph *g, const compact_graph *c)
{
    put_u32(b, (uint32_t)g->input_width);
    put_u32(b, (uint32_t)g->input_height);
    put_u32(b, (uint32_t)g->nc);
    put_u32(b, (uint32_t)g->nlevels);
    put_i32(b, mapped(c, g->input));
    put_u32(b, (uint32_t)c->nvalues);
    put_u32(b, (uint32_t)c->nnodes);
    for (int l = 0; l < g->nlevels; l++) {
        put_i32(b, mapped(c, g->head_box[l]));
        put_i32(b, mapped(c, g->head_cls[l]));
        put_u32(b, (uint32_t)g->head_stride[l]);
    }
    for (int i = 0; i < c->nvalues; i++) {
        const yd_value *v = &g->values[c->value_ids[i]];

        put_u32(b, (uint32_t)v->c);
        put_u32(b, (uint32_t)v->h);
        put_u32(b, (uint32_t)v->w);
        put_string(b, v->name);
    }
    for (int i = 0; i < c->nnodes; i++) {
        const yd_node *node = &g->nodes[c->node_ids[i]];
        const yd_conv_params *p = &node->conv;

        put_u32(b, (uint32_t)node->op);
        put_string(b, node->name);
        put_u32(b, (uint32_t)node->ninputs);
        for (int k = 0; k < node->ninputs; k++)
            put_i32(b, mapped(c, node->inputs[k]));
        put_i32(b, mapped(c, node->output));
        put_i32(b, mapped(c, node->residual));
        switch (node->op) {
        case YD_OP_CONV:
            put_u32(b, (uint32_t)p->in_c);
            put_u32(b, (uint32_t)p->out_c);
            put_u32(b, (uint32_t)p->kernel_h);
            put_u32(b, (uint32_t)p->kernel_w);
            put_u32(b, (uint32_t)p->stride_h);
            put_u32(b, (uint32_t)p->stride_w);
            put_u32(b, (uint32_t)p->pad_top);
            put_u32(b, (uint32_t)p->pad_left);
            put_u32(b, (uint32_t)p->pad_bottom);
            put_u32(b, (uint32_t)p->pad_right);
            put_u32(b, (uint32_t)p->act);
            break;
        case YD_OP_MAXPOOL:
            put_u32(b, (uint32_t)node->pool_kernel);
            put_u32(b, (uint32_t)node->pool_stride);
            put_u32(b, (uint32_t)node->pool_pad);
            break;
        case YD_OP_UPSAMPLE:
            put_u32(b, (uint32_t)node->scale);
            break;
        case YD_OP_SLICE:
            put_u32(b, (uint32_t)node->slice_begin);
            put_u32(b, (uint32_t)node->slice_end);
            break;
        default:
            break;
        }
    }
}

static size_t conv_elements(const yd_conv_params *p)
{
    return (size_t)p->out_c * (size_t)p->in_c * (size_t)p->kernel_h * (size_t)p->kernel_w;
}

/* Table of 48-byte entries, then 64-byte aligned blobs, per convolution. */
static int write_weights(byte_buffer *b, const yd_graph *g, const compact_graph *c, yd_error *err)
{
    int nconv = 0, entry = 0;
    size_t table;

    for (int i = 0; i < c->nnodes; i++)
        nconv += g->nodes[c->node_ids[i]].op == YD_OP_CONV;
    put_u32(b, (uint32_t)nconv);
    put_u32(b, 0);
    put_u64(b, 0);
    table = b->size;
    buffer_reserve(b, (size_t)nconv * WEIGHT_ENTRY_SIZE);
    if (b->failed)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory saving the model");
    memset(b->data + table, 0, (size_t)nconv * WEIGHT_ENTRY_SIZE);

    for (int i = 0; i < c->nnodes; i++) {
        const yd_node *node = &g->nodes[c->node_ids[i]];
        const yd_conv_params *p = &node->conv;
        size_t n = conv_elements(p), weight_at, bias_at, scale_at = 0;

        if (node->op != YD_OP_CONV)
            continue;
        if (!p->weight || !p->bias)
            return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                "convolution '%s' has no weights or bias", node->name);

        put_align(b);
        weight_at = b->size;
        switch (p->precision) {
        case YD_PREC_FP32:
            put_bytes(b, p->weight, n * sizeof(float));
            break;
        case YD_PREC_FP16: {
            uint8_t *out = buffer_reserve(b, n * 2);

            for (size_t k = 0; out && k < n; k++) {
                uint16_t h = yd_fp16_from_float(p->weight[k]);

                out[2 * k] = (uint8_t)h;
                out[2 * k + 1] = (uint8_t)(h >> 8);
            }
            break;
        }
        case YD_PREC_INT8:
            if (!p->qweight || !p->weight_scale)
                return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                    "int8 convolution '%s' has no quantized weights or scales",
                                    node->name);
            put_bytes(b, p->qweight, n);
            put_align(b);
            scale_at = b->size;
            for (int k = 0; k < p->out_c; k++)
                put_f32(b, p->weight_scale[k]);
            break;
        default:
            return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                "convolution '%s' has unknown precision %d", node->name,
                                (int)p->precision);
        }
        put_align(b);
        bias_at = b->size;
        for (int k = 0; k < p->out_c; k++)
            put_f32(b, p->bias[k]);
        if (b->failed)
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory saving the model");

        uint8_t *e = b->data + table + (size_t)entry * WEIGHT_ENTRY_SIZE;
        uint32_t scale_bits;

        store_u32(e, (uint32_t)i);
        store_u32(e + 4, (uint32_t)p->precision);
        store_u64(e + 8, weight_at);
        store_u64(e + 16, bias_at);
        store_u64(e + 24, scale_at);
        memcpy(&scale_bits, &p->input_scale, sizeof scale_bits);
        store_u32(e + 32, p->precision == YD_PREC_INT8 ? scale_bits : 0);
        store_u32(e + 36, p->precision == YD_PREC_INT8 ? (uint32_t)p->input_zero : 0);
        entry++;
    }
    return YD_OK;
}

static void write_meta(byte_buffer *b, const yd_model_provenance *prov)
{
    char created[32], map50_95[32], map50[32];
    const char *pairs[][2] = {
        {"source", prov->source_name},
        {"source_sha256", prov->source_sha256},
        {"variant", prov->variant},
        {"settings", prov->settings},
        {"calibration_sha256", prov->calibration_sha256},
        {"created", created},
        {"yolod_version", prov->yolod_version},
        {"map50_95", map50_95},
        {"map50", map50},
    };
    uint32_t count = 7;

    snprintf(created, sizeof created, "%lld", (long long)prov->created);
    snprintf(map50_95, sizeof map50_95, "%.17g", prov->map50_95);
    snprintf(map50, sizeof map50, "%.17g", prov->map50);
    /* mAP entries are left out while unknown. */
    if (isfinite(prov->map50_95))
        count++;
    if (isfinite(prov->map50))
        count++;
    put_u32(b, count);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if ((pairs[i][1] == map50_95 && !isfinite(prov->map50_95)) ||
            (pairs[i][1] == map50 && !isfinite(prov->map50)))
            continue;
        put_string(b, pairs[i][0]);
        put_string(b, pairs[i][1]);
    }
}

static int write_names(byte_buffer *b, char *const *names, int nc, yd_error *err)
{
    put_u32(b, (uint32_t)nc);
    for (int i = 0; i < nc; i++) {
        if (!names[i] || strlen(names[i]) > MAX_STRING)
            return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                                "class name %d is missing or longer than %d bytes", i, MAX_STRING);
        put_string(b, names[i]);
    }
    return YD_OK;
}

/* Lays out header, section table and sections into one image. */
static int assemble(byte_buffer *file, byte_buffer sections[4], const uint32_t ids[4], yd_error *err)
{
    const int count = 4;
    size_t table_at = HEADER_SIZE;
    size_t offsets[4];
    size_t at = table_at + (size_t)count * SECTION_ENTRY_SIZE;
    uint8_t *h;

    for (int i = 0; i < count; i++) {
        at = (at + SECTION_ALIGN - 1) / SECTION_ALIGN * SECTION_ALIGN;
        offsets[i] = at;
        at += sections[i].size;
    }
    h = buffer_reserve(file, at);
    if (!h)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory saving the model");
    memset(h, 0, at);

    for (int i = 0; i < count; i++) {
        uint8_t *e = h + table_at + (size_t)i * SECTION_ENTRY_SIZE;

        store_u32(e, ids[i]);
        store_u64(e + 8, offsets[i]);
        store_u64(e + 16, sections[i].size);
        if (sections[i].size)
            memcpy(h + offsets[i], sections[i].data, sections[i].size);
    }

    memcpy(h, YD_MODEL_FILE_MAGIC, YD_MODEL_FILE_MAGIC_SIZE);
    h[8] = YD_MODEL_FILE_VERSION_MAJOR;
    h[10] = YD_MODEL_FILE_VERSION_MINOR;
    store_u32(h + 12, HEADER_SIZE);
    store_u32(h + 16, 0);
    store_u32(h + 20, (uint32_t)count);
    store_u64(h + 24, table_at);
    store_u64(h + 32, at);
    store_u32(h + 40, yd_crc32c(h + HEADER_SIZE, at - HEADER_SIZE));
    store_u32(h + HEADER_SIZE - 4, yd_crc32c(h, HEADER_SIZE - 4));
    return YD_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t written = write(fd, p, n);

        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return -1;
        p += written;
        n -= (size_t)written;
    }
    return 0;
}

/* Writes data to a temporary file beside path, syncs it and renames it over path. */
static int replace_file(const char *path, const uint8_t *data, size_t size, yd_error *err)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    char *slash;
    int fd, rc = YD_OK;

    if (!tmp)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory saving '%s'", path);
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = yd_error_set(err, YD_ERR_IO, "cannot create a temporary file beside '%s': %s", path,
                          strerror(errno));
        goto done;
    }
    if (write_all(fd, data, size) != 0 || fsync(fd) != 0) {
        rc = yd_error_set(err, YD_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto done;
    }
    /* mkstemp creates 0600; a model file is data anyone may read. */
    fchmod(fd, 0644);
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        rc = yd_error_set(err, YD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                          strerror(errno));
        unlink(tmp);
        goto done;
    }

    /* Sync the folder so the rename itself survives a crash. */
    slash = strrchr(tmp, '/');
    if (slash)
        slash[slash == tmp ? 1 : 0] = '\0';
    fd = open(slash ? tmp : ".", O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }

done:
    free(tmp);
    return rc;
}

static int check_readable(const char *path, const byte_buffer *file, yd_error *err)
{
    yd_graph *graph = NULL;
    char **names = NULL;
    yd_error parse_error = {0};
    int rc = yd_model_file_parse(file->data, file->size, &graph, &names, NULL, &parse_error);

    if (rc == YD_OK) {
        yd_names_free(names, graph->nc);
        yd_graph_free(graph);
        return YD_OK;
    }
    if (rc == YD_ERR_NO_MEMORY)
        return yd_error_set(err, rc, "out of memory checking '%s'", path);
    return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "cannot save '%s': the file would not load"
                        " back (%s)", path, parse_error.message);
}

int yd_model_file_save(const char *path, const yd_graph *graph, char *const *class_names,
                       const yd_model_provenance *provenance, yd_error *err)
{
    static const uint32_t ids[4] = {SECTION_GRAPH, SECTION_WEIGHTS, SECTION_NAMES, SECTION_META};
    byte_buffer sections[4] = {{0}}, file = {0};
    yd_model_provenance empty;
    compact_graph c;
    int rc;

    if (!graph || !class_names || graph->nc < 1 || graph->nlevels < 1 ||
        graph->nlevels > YD_HEAD_MAX_LEVELS)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "cannot save '%s': the graph has no head or no class names", path);
    if (!provenance) {
        yd_model_provenance_init(&empty);
        provenance = &empty;
    }
    rc = compact(graph, &c, err);
    if (rc != YD_OK)
        goto done;

    write_graph(&sections[0], graph, &c);
    rc = write_weights(&sections[1], graph, &c, err);
    if (rc != YD_OK)
        goto done;
    rc = write_names(&sections[2], class_names, graph->nc, err);
    if (rc != YD_OK)
        goto done;
    write_meta(&sections[3], provenance);
    for (int i = 0; i < 4; i++)
        if (sections[i].failed) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory saving '%s'", path);
            goto done;
        }

    rc = assemble(&file, sections, ids, err);
    if (rc != YD_OK)
        goto done;
    /* The reader checks limits the writer does not, such as a value past
     * the element limit, so a file that would not load never replaces one
     * that does. */
    rc = check_readable(path, &file, err);
    if (rc != YD_OK)
        goto done;
    rc = replace_file(path, file.data, file.size, err);

done:
    compact_free(&c);
    for (int i = 0; i < 4; i++)
        free(sections[i].data);
    free(file.data);
    return rc;
}

/* ------------------------------------------------------------ reader: container */

typedef struct section {
    const uint8_t *data;
    size_t size;
} section;

#define FORMAT_ERROR(err, ...) yd_error_set(err, YD_ERR_MODEL_FORMAT, __VA_ARGS__)

int yd_model_file_sniff(const void *data, size_t size)
{
    size_t n = size < YD_MODEL_FILE_MAGIC_SIZE ? size : YD_MODEL_FILE_MAGIC_SIZE;

    /* A non-empty prefix of the magic counts, so a file cut inside the
     * magic is reported as a truncated .yolod file, not as foreign. */
    return n > 0 && memcmp(data, YD_MODEL_FILE_MAGIC, n) == 0;
}

int yd_model_file_sniff_path(const char *path, yd_error *err)
{
    uint8_t head[YD_MODEL_FILE_MAGIC_SIZE];
    int fd = yd_open_regular_file(path, err);
    ssize_t n;

    if (fd < 0)
        return fd;
    do
        n = read(fd, head, sizeof head);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int read_error = errno;

        close(fd);
        return yd_error_set(err, YD_ERR_IO, "cannot read '%s': %s", path, strerror(read_error));
    }
    close(fd);
    return yd_model_file_sniff(head, (size_t)n);
}

/* Checks magic, header, size and checksums; fills the four known sections. */
static int check_container(const uint8_t *data, size_t size, section found[5],
                           unsigned version[2], yd_error *err)
{
    uint32_t header_size, stored, computed, flags, count;
    uint64_t file_size, table_at;
    unsigned major, minor;

    if (!yd_model_file_sniff(data, size))
        return FORMAT_ERROR(err, "not a yolod model file (wrong magic bytes)");
    if (size < HEADER_SIZE)
        return FORMAT_ERROR(err, "truncated .yolod file: %zu bytes, shorter than the %d-byte header",
                            size, HEADER_SIZE);

    header_size = load_u32(data + 12);
    if (header_size < HEADER_SIZE || header_size > HEADER_MAX_SIZE || header_size % 8 != 0)
        return FORMAT_ERROR(err, "corrupted .yolod file: header size %u is invalid (expected a "
                            "multiple of 8 from %d to %d)", header_size, HEADER_SIZE,
                            HEADER_MAX_SIZE);
    if (size < header_size)
        return FORMAT_ERROR(err, "truncated .yolod file: %zu bytes, shorter than the %u-byte header",
                            size, header_size);
    stored = load_u32(data + header_size - HEADER_CRC_OFFSET_FROM_END);
    computed = yd_crc32c(data, header_size - HEADER_CRC_OFFSET_FROM_END);
    if (stored != computed)
        return FORMAT_ERROR(err, "corrupted .yolod file: header checksum mismatch (stored %08x, "
                            "computed %08x)", stored, computed);

    major = load_u16(data + 8);
    minor = load_u16(data + 10);
    if (major > YD_MODEL_FILE_VERSION_MAJOR)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "the .yolod file has format version %u.%u, newer than this build "
                            "reads (%d.x); upgrade yolod or re-run yolod compress",
                            major, minor, YD_MODEL_FILE_VERSION_MAJOR);
    if (major < 1)
        return FORMAT_ERROR(err, "invalid .yolod format version %u.%u", major, minor);
    version[0] = major;
    version[1] = minor;
    flags = load_u32(data + 16);
    if (flags != 0)
        return yd_error_set(err, YD_ERR_MODEL_UNSUPPORTED,
                            "the .yolod file sets flags 0x%08x that this build does not know", flags);

    file_size = load_u64(data + 32);
    if (file_size > size)
        return FORMAT_ERROR(err, "truncated .yolod file: %zu bytes, the header declares %llu",
                            size, (unsigned long long)file_size);
    if (file_size < size)
        return FORMAT_ERROR(err, "corrupted .yolod file: %zu bytes, the header declares %llu "
                            "(extra bytes at the end)", size, (unsigned long long)file_size);
    stored = load_u32(data + 40);
    computed = yd_crc32c(data + header_size, size - header_size);
    if (stored != computed)
        return FORMAT_ERROR(err, "corrupted .yolod file: checksum mismatch in the data after the "
                            "header (stored %08x, computed %08x)", stored, computed);

    count = load_u32(data + 20);
    table_at = load_u64(data + 24);
    if (table_at < header_size)
        return FORMAT_ERROR(err, "inconsistent .yolod section table: it starts at offset %llu,"
                            " inside the %u-byte header", (unsigned long long)table_at,
                            header_size);
    if (count < 1 || count > MAX_SECTIONS || table_at % 8 != 0 ||
        table_at > size || (size - table_at) / SECTION_ENTRY_SIZE < count)
        return FORMAT_ERROR(err, "inconsistent .yolod section table: %u sections at offset %llu "
                            "do not fit a %zu-byte file", count, (unsigned long long)table_at, size);

    uint64_t starts[MAX_SECTIONS + 1], ends[MAX_SECTIONS + 1];

    starts[count] = table_at;
    ends[count] = table_at + (uint64_t)count * SECTION_ENTRY_SIZE;
    memset(found, 0, 5 * sizeof *found);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = data + table_at + (size_t)i * SECTION_ENTRY_SIZE;
        uint32_t id = load_u32(e);
        uint64_t offset = load_u64(e + 8), length = load_u64(e + 16);

        if (offset % SECTION_ALIGN != 0 || offset < header_size || offset > size ||
            length > size - offset)
            return FORMAT_ERROR(err, "inconsistent .yolod section table: section %u (id %u) at "
                                "offset %llu, %llu bytes, is outside the %zu-byte file or not "
                                "%d-byte aligned", i, id, (unsigned long long)offset,
                                (unsigned long long)length, size, SECTION_ALIGN);
        starts[i] = offset;
        ends[i] = offset + length;
        for (uint32_t k = 0; k < i; k++)
            if (starts[i] < ends[k] && starts[k] < ends[i] && length > 0 && ends[k] > starts[k])
                return FORMAT_ERROR(err, "inconsistent .yolod section table: sections %u and %u "
                                    "overlap", k, i);
        if (starts[i] < ends[count] && starts[count] < ends[i] && length > 0)
            return FORMAT_ERROR(err, "inconsistent .yolod section table: section %u overlaps the "
                                "table", i);
        /* Unknown ids are sections a later minor version added; skip them. */
        if (id >= SECTION_GRAPH && id <= SECTION_META) {
            if (found[id].data)
                return FORMAT_ERROR(err, "inconsistent .yolod section table: section id %u "
                                    "appears twice", id);
            found[id].data = data + offset;
            found[id].size = (size_t)length;
        }
    }
    for (uint32_t id = SECTION_GRAPH; id <= SECTION_META; id++)
        if (!found[id].data)
            return FORMAT_ERROR(err, "inconsistent .yolod section table: required section id %u "
                                "is missing", id);
    return YD_OK;
}

/* ------------------------------------------------------------ reader: graph */

typedef struct graph_reader {
    yd_graph *g;
    yd_error *err;
    int *producer;  /* value id -> node index, or -1 */
} graph_reader;

#define GRAPH_ERROR(gr, ...) yd_error_set((gr)->err, YD_ERR_MODEL_FORMAT, __VA_ARGS__)

static int valid_value(const graph_reader *gr, int v)
{
    return v >= 0 && v < gr->g->nvalues;
}

static int read_values(reader *r, graph_reader *gr, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        uint32_t c = get_u32(r), h = get_u32(r), w = get_u32(r);
        int oom = 0;
        char *name = get_string(r, MAX_STRING, &oom);
        int id;

        if (oom)
            return yd_error_set(gr->err, YD_ERR_NO_MEMORY, "out of memory loading the graph");
        if (r->bad)
            return GRAPH_ERROR(gr, "invalid .yolod graph: value %u is cut short or has a bad name", i);
        if (c < 1 || c > MAX_CHANNELS || h < 1 || h > MAX_SIDE || w < 1 || w > MAX_SIDE ||
            (uint64_t)c * h * w > MAX_VALUE_ELEMENTS) {
            free(name);
            return GRAPH_ERROR(gr, "invalid .yolod graph: value %u has shape %ux%ux%u", i, c, h, w);
        }
        id = yd_graph_add_value(gr->g, name, (int)c, (int)h, (int)w);
        free(name);
        if (id < 0)
            return yd_error_set(gr->err, YD_ERR_NO_MEMORY, "out of memory loading the graph");
    }
    return YD_OK;
}

static int arity_ok(yd_op op, int n)
{
    switch (op) {
    case YD_OP_INPUT: return n == 0;
    case YD_OP_CONCAT: return n >= 1 && n <= YD_MAX_INPUTS;
    case YD_OP_ADD:
    case YD_OP_MUL: return n == 2;
    default: return n == 1;
    }
}

/* Output size of a convolution or pooling window along one axis, or -1. */
static int window_out(int in, int kernel, int stride, int pad_before, int pad_after)
{
    int span = in + pad_before + pad_after - kernel;

    return span < 0 ? -1 : span / stride + 1;
}

static int read_conv(reader *r, graph_reader *gr, int index, yd_node *node)
{
    yd_conv_params *p = &node->conv;
    const yd_value *in = &gr->g->values[node->inputs[0]];
    const yd_value *out = &gr->g->values[node->output];
    uint32_t f[11];

    for (int i = 0; i < 11; i++)
        f[i] = get_u32(r);
    if (r->bad)
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s') is cut short", index, node->name);
    for (int i = 0; i < 11; i++)
        if (f[i] > MAX_CHANNELS)
            return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s', Conv) has a parameter out "
                               "of range", index, node->name);
    p->in_c = (int)f[0];
    p->out_c = (int)f[1];
    p->kernel_h = (int)f[2];
    p->kernel_w = (int)f[3];
    p->stride_h = (int)f[4];
    p->stride_w = (int)f[5];
    p->pad_top = (int)f[6];
    p->pad_left = (int)f[7];
    p->pad_bottom = (int)f[8];
    p->pad_right = (int)f[9];
    p->act = (yd_act)f[10];

    if (p->in_c != in->c || p->out_c != out->c || p->kernel_h < 1 || p->kernel_h > MAX_KERNEL ||
        p->kernel_w < 1 || p->kernel_w > MAX_KERNEL || p->stride_h < 1 || p->stride_h > MAX_STRIDE ||
        p->stride_w < 1 || p->stride_w > MAX_STRIDE || p->pad_top >= p->kernel_h ||
        p->pad_bottom >= p->kernel_h || p->pad_left >= p->kernel_w || p->pad_right >= p->kernel_w ||
        (p->act != YD_ACT_NONE && p->act != YD_ACT_SILU))
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s', Conv) has channels, kernel, "
                           "strides, pads or activation out of range", index, node->name);
    if (window_out(in->h, p->kernel_h, p->stride_h, p->pad_top, p->pad_bottom) != out->h ||
        window_out(in->w, p->kernel_w, p->stride_w, p->pad_left, p->pad_right) != out->w)
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s', Conv) output %dx%d does not "
                           "follow from input %dx%d", index, node->name, out->h, out->w, in->h, in->w);
    return YD_OK;
}

static int same_shape(const yd_value *a, const yd_value *b)
{
    return a->c == b->c && a->h == b->h && a->w == b->w;
}

/* Reads the op parameters of node `index` and checks its shapes. */
static int read_params(reader *r, graph_reader *gr, int index)
{
    yd_graph *g = gr->g;
    yd_node *node = &g->nodes[index];
    const yd_value *out = &g->values[node->output];
    const yd_value *in = node->ninputs > 0 ? &g->values[node->inputs[0]] : NULL;
    int ok = 1;

    switch (node->op) {
    case YD_OP_INPUT:
        ok = node->output == g->input && out->c == 3 && out->h == g->input_height &&
             out->w == g->input_width;
        break;
    case YD_OP_CONV:
        return read_conv(r, gr, index, node);
    case YD_OP_MAXPOOL: {
        uint32_t kernel = get_u32(r), stride = get_u32(r), pad = get_u32(r);

        ok = !r->bad && kernel >= 1 && kernel <= MAX_KERNEL && stride >= 1 && stride <= MAX_STRIDE &&
             pad < kernel && in->c == out->c &&
             window_out(in->h, (int)kernel, (int)stride, (int)pad, (int)pad) == out->h &&
             window_out(in->w, (int)kernel, (int)stride, (int)pad, (int)pad) == out->w;
        node->pool_kernel = (int)kernel;
        node->pool_stride = (int)stride;
        node->pool_pad = (int)pad;
        break;
    }
    case YD_OP_UPSAMPLE: {
        uint32_t scale = get_u32(r);

        ok = !r->bad && scale >= 1 && scale <= MAX_SCALE && in->c == out->c &&
             (uint32_t)in->h * scale == (uint32_t)out->h && (uint32_t)in->w * scale == (uint32_t)out->w;
        node->scale = (int)scale;
        break;
    }
    case YD_OP_SLICE: {
        uint32_t begin = get_u32(r), end = get_u32(r);

        ok = !r->bad && begin < end && end <= (uint32_t)in->c && out->c == (int)(end - begin) &&
             in->h == out->h && in->w == out->w;
        node->slice_begin = (int)begin;
        node->slice_end = (int)end;
        break;
    }
    case YD_OP_CONCAT: {
        int channels = 0;

        for (int k = 0; k < node->ninputs; k++) {
            const yd_value *x = &g->values[node->inputs[k]];

            ok = ok && x->h == out->h && x->w == out->w;
            channels += x->c;
        }
        ok = ok && channels == out->c;
        break;
    }
    case YD_OP_ADD:
    case YD_OP_MUL:
        ok = same_shape(in, out) && same_shape(&g->values[node->inputs[1]], out);
        break;
    case YD_OP_SIGMOID:
    case YD_OP_SILU:
        ok = same_shape(in, out);
        break;
    }
    if (r->bad)
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s') is cut short", index, node->name);
    if (!ok)
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s', %s) has parameters or shapes "
                           "that do not fit its inputs and output", index, node->name,
                           yd_op_name(node->op));
    return YD_OK;
}

static int read_node(reader *r, graph_reader *gr, int index)
{
    yd_graph *g = gr->g;
    uint32_t op = get_u32(r);
    int oom = 0;
    char *name = get_string(r, MAX_STRING, &oom);
    uint32_t ninputs = get_u32(r);
    yd_node *node;
    int id;

    if (oom)
        return yd_error_set(gr->err, YD_ERR_NO_MEMORY, "out of memory loading the graph");
    if (r->bad || op > YD_OP_MUL || !arity_ok((yd_op)op, (int)ninputs)) {
        free(name);
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d is cut short, or has an unknown op "
                           "(%u) or a wrong input count (%u)", index, op, ninputs);
    }
    id = yd_graph_add_node(g, (yd_op)op, name);
    free(name);
    if (id < 0)
        return yd_error_set(gr->err, YD_ERR_NO_MEMORY, "out of memory loading the graph");
    node = &g->nodes[id];
    node->ninputs = (int)ninputs;
    for (int k = 0; k < node->ninputs; k++)
        node->inputs[k] = get_i32(r);
    node->output = get_i32(r);
    node->residual = get_i32(r);
    if (r->bad)
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s') is cut short", index, node->name);

    /* Topological order: every input exists before the node runs. */
    for (int k = 0; k < node->ninputs; k++)
        if (!valid_value(gr, node->inputs[k]) || gr->producer[node->inputs[k]] < 0)
            return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s') reads value %d, which no "
                               "earlier node produces", index, node->name, node->inputs[k]);
    if (!valid_value(gr, node->output) || gr->producer[node->output] >= 0)
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s') writes value %d, which is "
                           "out of range or already produced", index, node->name, node->output);
    if (node->residual != -1 &&
        (node->op != YD_OP_CONV || !valid_value(gr, node->residual) ||
         gr->producer[node->residual] < 0 ||
         !same_shape(&g->values[node->residual], &g->values[node->output])))
        return GRAPH_ERROR(gr, "invalid .yolod graph: node %d ('%s') has an invalid residual "
                           "input %d", index, node->name, node->residual);
    gr->producer[node->output] = id;
    g->values[node->output].producer = id;
    return read_params(r, gr, id);
}

static int check_head(graph_reader *gr, const int *box, const int *cls, const uint32_t *stride)
{
    yd_graph *g = gr->g;

    for (int l = 0; l < g->nlevels; l++) {
        const yd_value *b, *c;

        if (!valid_value(gr, box[l]) || !valid_value(gr, cls[l]) || gr->producer[box[l]] < 0 ||
            gr->producer[cls[l]] < 0)
            return GRAPH_ERROR(gr, "invalid .yolod graph: head level %d names values no node "
                               "produces", l);
        b = &g->values[box[l]];
        c = &g->values[cls[l]];
        if (b->c != 4 * YD_HEAD_REG_MAX || c->c != g->nc || b->h != c->h || b->w != c->w ||
            stride[l] < 1 || stride[l] > (uint32_t)g->input_width ||
            (uint32_t)b->w * stride[l] != (uint32_t)g->input_width ||
            (uint32_t)b->h * stride[l] != (uint32_t)g->input_height)
            return GRAPH_ERROR(gr, "invalid .yolod graph: head level %d has box %dx%dx%d, class "
                               "%dx%dx%d and stride %u, which do not fit %d classes at input %dx%d",
                               l, b->c, b->h, b->w, c->c, c->h, c->w, stride[l], g->nc,
                               g->input_width, g->input_height);
        g->head_box[l] = box[l];
        g->head_cls[l] = cls[l];
        g->head_stride[l] = (int)stride[l];
    }
    return YD_OK;
}

static int read_graph(const section *s, yd_graph **out, yd_error *err)
{
    reader r = {.data = s->data, .size = s->size};
    graph_reader gr = {.err = err};
    uint32_t input_width, input_height, nc, nlevels, nvalues, nnodes, stride[YD_HEAD_MAX_LEVELS];
    int input, box[YD_HEAD_MAX_LEVELS], cls[YD_HEAD_MAX_LEVELS], inputs_seen = 0, rc;

    input_width = get_u32(&r);
    input_height = get_u32(&r);
    nc = get_u32(&r);
    nlevels = get_u32(&r);
    input = get_i32(&r);
    nvalues = get_u32(&r);
    nnodes = get_u32(&r);
    if (r.bad || input_width < 32 || input_width > MAX_SIDE || input_width % 32 != 0 ||
        input_height < 32 || input_height > MAX_SIDE || input_height % 32 != 0 || nc < 1 ||
        nc > MAX_CLASSES || nlevels < 1 || nlevels > YD_HEAD_MAX_LEVELS)
        return FORMAT_ERROR(err, "invalid .yolod graph: input size %ux%u, %u classes or %u head "
                            "levels out of range", input_width, input_height, nc, nlevels);
    /* Each value takes at least 16 bytes and each node 20, which bounds
     * the counts by the section size before anything is allocated. */
    if (nvalues < 1 || nnodes < 1 || nvalues > s->size / 16 || nnodes > s->size / 20)
        return FORMAT_ERROR(err, "invalid .yolod graph: %u values and %u nodes do not fit a "
                            "%zu-byte section", nvalues, nnodes, s->size);
    for (uint32_t l = 0; l < nlevels; l++) {
        box[l] = get_i32(&r);
        cls[l] = get_i32(&r);
        stride[l] = get_u32(&r);
    }

    gr.g = yd_graph_create();
    gr.producer = malloc((size_t)nvalues * sizeof *gr.producer);
    if (!gr.g || !gr.producer) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading the graph");
        goto fail;
    }
    for (uint32_t v = 0; v < nvalues; v++)
        gr.producer[v] = -1;
    gr.g->input_width = (int)input_width;
    gr.g->input_height = (int)input_height;
    gr.g->nc = (int)nc;
    gr.g->nlevels = (int)nlevels;

    rc = read_values(&r, &gr, nvalues);
    if (rc != YD_OK)
        goto fail;
    if (!valid_value(&gr, input)) {
        rc = FORMAT_ERROR(err, "invalid .yolod graph: input value %d is out of range", input);
        goto fail;
    }
    gr.g->input = input;
    for (uint32_t i = 0; i < nnodes; i++) {
        rc = read_node(&r, &gr, (int)i);
        if (rc != YD_OK)
            goto fail;
        inputs_seen += gr.g->nodes[i].op == YD_OP_INPUT;
    }
    if (inputs_seen != 1 || gr.producer[input] < 0) {
        rc = FORMAT_ERROR(err, "invalid .yolod graph: %d Input nodes, expected exactly one "
                          "producing the input value", inputs_seen);
        goto fail;
    }
    rc = check_head(&gr, box, cls, stride);
    if (rc != YD_OK)
        goto fail;
    if (r.pos != r.size) {
        rc = FORMAT_ERROR(err, "invalid .yolod graph: %zu unread bytes after the last node",
                          r.size - r.pos);
        goto fail;
    }
    *out = gr.g;
    gr.g = NULL;

fail:
    yd_graph_free(gr.g);
    free(gr.producer);
    return rc;
}

/* ------------------------------------------------------------ reader: weights */

static size_t precision_bytes(yd_precision precision)
{
    return precision == YD_PREC_FP32 ? 4 : precision == YD_PREC_FP16 ? 2 : 1;
}

/* Checks that [offset, offset + bytes) is an aligned range inside the section. */
static int blob_ok(const section *s, uint64_t offset, uint64_t bytes)
{
    return offset % SECTION_ALIGN == 0 && offset <= s->size && bytes <= s->size - offset;
}

static int load_conv_weights(const section *s, const uint8_t *e, yd_node *node, int index,
                             yd_error *err)
{
    yd_conv_params *p = &node->conv;
    uint32_t precision = load_u32(e + 4);
    uint64_t weight_at = load_u64(e + 8), bias_at = load_u64(e + 16), scale_at = load_u64(e + 24);
    size_t n = conv_elements(p);
    const uint8_t *src;

    if (precision > YD_PREC_INT8)
        return FORMAT_ERROR(err, "invalid .yolod weights: convolution %d ('%s') has unknown "
                            "precision %u", index, node->name, precision);
    p->precision = (yd_precision)precision;
    if (!blob_ok(s, weight_at, (uint64_t)n * precision_bytes(p->precision)) ||
        !blob_ok(s, bias_at, (uint64_t)p->out_c * 4) ||
        (p->precision == YD_PREC_INT8 && !blob_ok(s, scale_at, (uint64_t)p->out_c * 4)))
        return FORMAT_ERROR(err, "invalid .yolod weights: convolution %d ('%s') has data outside "
                            "the section or not 64-byte aligned", index, node->name);

    p->weight = yd_aligned_alloc(n * sizeof(float));
    p->bias = yd_aligned_alloc((size_t)p->out_c * sizeof(float));
    if (!p->weight || !p->bias)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading weights of '%s'",
                            node->name);
    memcpy(p->bias, s->data + bias_at, (size_t)p->out_c * sizeof(float));
    src = s->data + weight_at;

    switch (p->precision) {
    case YD_PREC_FP32:
        memcpy(p->weight, src, n * sizeof(float));
        break;
    case YD_PREC_FP16:
        for (size_t k = 0; k < n; k++)
            p->weight[k] = yd_fp16_to_float(load_u16(src + 2 * k));
        break;
    case YD_PREC_INT8: {
        size_t per_channel = n / (size_t)p->out_c;

        memcpy(&p->input_scale, e + 32, sizeof p->input_scale);
        p->input_zero = (int)(int32_t)load_u32(e + 36);
        if (!(isfinite(p->input_scale) && p->input_scale > 0) || p->input_zero < 0 ||
            p->input_zero > 255)
            return FORMAT_ERROR(err, "invalid .yolod weights: int8 convolution %d ('%s') has input "
                                "scale %g and zero point %d", index, node->name,
                                (double)p->input_scale, p->input_zero);
        p->qweight = malloc(n);
        p->weight_scale = malloc((size_t)p->out_c * sizeof(float));
        if (!p->qweight || !p->weight_scale)
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading weights of '%s'",
                                node->name);
        memcpy(p->qweight, src, n);
        memcpy(p->weight_scale, s->data + scale_at, (size_t)p->out_c * sizeof(float));
        for (int oc = 0; oc < p->out_c; oc++) {
            float scale = p->weight_scale[oc];

            if (!(isfinite(scale) && scale >= 0))
                return FORMAT_ERROR(err, "invalid .yolod weights: int8 convolution %d ('%s') has "
                                    "weight scale %g for channel %d", index, node->name,
                                    (double)scale, oc);
            for (size_t k = 0; k < per_channel; k++)
                p->weight[(size_t)oc * per_channel + k] =
                    (float)p->qweight[(size_t)oc * per_channel + k] * scale;
        }
        break;
    }
    }
    /* int8 weights are finite by their checked scales. */
    for (size_t k = 0; k < (size_t)p->out_c; k++)
        if (!isfinite(p->bias[k]))
            return FORMAT_ERROR(err, "invalid .yolod weights: convolution %d ('%s') has bias %g"
                                " for channel %zu", index, node->name, (double)p->bias[k], k);
    for (size_t k = 0; p->precision != YD_PREC_INT8 && k < n; k++)
        if (!isfinite(p->weight[k]))
            return FORMAT_ERROR(err, "invalid .yolod weights: convolution %d ('%s') has weight"
                                " %zu = %g, not a finite number", index, node->name, k,
                                (double)p->weight[k]);
    return YD_OK;
}

static int read_weights(const section *s, yd_graph *g, yd_error *err)
{
    uint32_t count;
    int nconv = 0;

    if (s->size < WEIGHTS_PREAMBLE_SIZE)
        return FORMAT_ERROR(err, "invalid .yolod weights: the section has %zu bytes", s->size);
    count = load_u32(s->data);
    for (int i = 0; i < g->nnodes; i++)
        nconv += g->nodes[i].op == YD_OP_CONV;
    if (count != (uint32_t)nconv ||
        (s->size - WEIGHTS_PREAMBLE_SIZE) / WEIGHT_ENTRY_SIZE < count)
        return FORMAT_ERROR(err, "invalid .yolod weights: %u entries for %d convolutions", count,
                            nconv);

    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = s->data + WEIGHTS_PREAMBLE_SIZE + (size_t)i * WEIGHT_ENTRY_SIZE;
        uint32_t index = load_u32(e);
        yd_node *node;
        int rc;

        if (index >= (uint32_t)g->nnodes || g->nodes[index].op != YD_OP_CONV ||
            g->nodes[index].conv.weight)
            return FORMAT_ERROR(err, "invalid .yolod weights: entry %u names node %u, which is "
                                "not a convolution or already has weights", i, index);
        node = &g->nodes[index];
        rc = load_conv_weights(s, e, node, (int)index, err);
        if (rc != YD_OK)
            return rc;
    }
    return YD_OK;
}

/* ------------------------------------------------------------ reader: names, meta */

static int read_names(const section *s, int nc, char ***out, yd_error *err)
{
    reader r = {.data = s->data, .size = s->size};
    uint32_t count = get_u32(&r);
    char **names;
    int oom = 0;

    if (r.bad || count != (uint32_t)nc)
        return FORMAT_ERROR(err, "invalid .yolod class names: %u names for %d classes", count, nc);
    names = calloc((size_t)nc, sizeof *names);
    if (!names)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading class names");
    for (int i = 0; i < nc; i++) {
        names[i] = get_string(&r, MAX_STRING, &oom);
        if (!names[i]) {
            yd_names_free(names, nc);
            if (oom)
                return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading class names");
            return FORMAT_ERROR(err, "invalid .yolod class names: name %d is cut short or "
                                "contains a NUL byte", i);
        }
    }
    if (out)
        *out = names;
    else
        yd_names_free(names, nc);
    return YD_OK;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

static void apply_meta(yd_model_provenance *prov, const char *key, const char *value)
{
    if (strcmp(key, "source") == 0)
        copy_field(prov->source_name, sizeof prov->source_name, value);
    else if (strcmp(key, "source_sha256") == 0)
        copy_field(prov->source_sha256, sizeof prov->source_sha256, value);
    else if (strcmp(key, "variant") == 0)
        copy_field(prov->variant, sizeof prov->variant, value);
    else if (strcmp(key, "settings") == 0)
        copy_field(prov->settings, sizeof prov->settings, value);
    else if (strcmp(key, "calibration_sha256") == 0)
        copy_field(prov->calibration_sha256, sizeof prov->calibration_sha256, value);
    else if (strcmp(key, "yolod_version") == 0)
        copy_field(prov->yolod_version, sizeof prov->yolod_version, value);
    else if (strcmp(key, "created") == 0)
        prov->created = strtoll(value, NULL, 10);
    else if (strcmp(key, "map50_95") == 0)
        prov->map50_95 = strtod(value, NULL);
    else if (strcmp(key, "map50") == 0)
        prov->map50 = strtod(value, NULL);
    /* Other keys come from a later minor version and are ignored. */
}

static int read_meta(const section *s, yd_model_provenance *prov, yd_error *err)
{
    reader r = {.data = s->data, .size = s->size};
    uint32_t count = get_u32(&r);
    int rc = YD_OK;

    if (prov)
        yd_model_provenance_init(prov);
    if (r.bad || count > MAX_META_ENTRIES)
        return FORMAT_ERROR(err, "invalid .yolod metadata: %u entries", count);
    for (uint32_t i = 0; i < count && rc == YD_OK; i++) {
        int oom = 0;
        char *key = get_string(&r, MAX_STRING, &oom);
        char *value = key ? get_string(&r, MAX_META_STRING, &oom) : NULL;

        if (oom)
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory loading metadata");
        else if (!key || !value)
            rc = FORMAT_ERROR(err, "invalid .yolod metadata: entry %u is cut short or contains a "
                              "NUL byte", i);
        else if (prov)
            apply_meta(prov, key, value);
        free(key);
        free(value);
    }
    return rc;
}

/* ------------------------------------------------------------ reader: entry points */

int yd_model_file_parse(const void *data, size_t size, yd_graph **graph, char ***class_names,
                        yd_model_provenance *provenance, yd_error *err)
{
    section found[5];
    unsigned version[2] = {0, 0};
    yd_graph *g = NULL;
    char **names = NULL;
    int nc, rc;

    if (graph)
        *graph = NULL;
    if (class_names)
        *class_names = NULL;
    rc = check_container(data, size, found, version, err);
    if (rc != YD_OK)
        return rc;

    rc = read_graph(&found[SECTION_GRAPH], &g, err);
    if (rc != YD_OK)
        return rc;
    nc = g->nc;
    if (graph) {
        rc = read_weights(&found[SECTION_WEIGHTS], g, err);
        if (rc != YD_OK)
            goto fail;
    }
    rc = read_names(&found[SECTION_NAMES], nc, &names, err);
    if (rc != YD_OK)
        goto fail;
    rc = read_meta(&found[SECTION_META], provenance, err);
    if (rc != YD_OK)
        goto fail;
    if (provenance) {
        provenance->format_major = (int)version[0];
        provenance->format_minor = (int)version[1];
    }

    if (class_names) {
        *class_names = names;
        names = NULL;
    }
    if (graph) {
        *graph = g;
        g = NULL;
    }

fail:
    yd_names_free(names, nc);
    yd_graph_free(g);
    return rc;
}

int yd_model_file_load(const char *path, yd_graph **graph, char ***class_names,
                       yd_model_provenance *provenance, yd_error *err)
{
    uint8_t *data;
    size_t size;
    int rc;

    if (graph)
        *graph = NULL;
    if (class_names)
        *class_names = NULL;
    /* Read, not mapped: a file truncated while it is parsed (cp over it
     * during a reload) would raise SIGBUS on a mapping, but only shortens
     * a read. The buffer lives only while the weights are unpacked. */
    rc = yd_read_file(path, &data, &size, err);
    if (rc < 0)
        return rc;
    rc = yd_model_file_parse(data, size, graph, class_names, provenance, err);
    free(data);
    return rc;
}
