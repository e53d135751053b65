/*
 * The .yolod model file. yolov8n saved as fp32 loads back as the same graph
 * with the same weights and gives bit-identical head maps. The fp16 variant
 * is half the size and stays close to ONNX Runtime's output. Loading takes
 * milliseconds. Truncated, corrupted, foreign, newer and inconsistent files
 * are rejected with a message naming the problem, never a crash.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "head.h"
#include "model_file.h"
#include "testlib.h"
#include "util.h"

#define ANCHORS 8400
#define ROWS 84
#define OUTPUT_FLOATS (ROWS * ANCHORS)

static char workdir[256];
static char fp32_path[512];
static char fp16_path[512];
static yd_model *onnx_model; /* yolov8n.onnx, loaded once */
static float *golden_input;
static float *golden_output;

/* ------------------------------------------------------------ helpers */

static int contains(const char *text, const char *word)
{
    return strstr(text, word) != NULL;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes both checksums so an edit is seen as deliberate, not corruption. */
static void fix_checksums(uint8_t *file, size_t size)
{
    uint32_t header_size = le32(file + 12);

    put_le32(file + 40, yd_crc32c(file + header_size, size - header_size));
    put_le32(file + header_size - 4, yd_crc32c(file, header_size - 4));
}

/* Offset of the section with this id in the table, or 0. */
static uint64_t section_offset(const uint8_t *file, uint32_t id, uint64_t *size)
{
    uint32_t count = le32(file + 20);
    uint64_t table = le64(file + 24);

    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = file + table + 32 * i;

        if (le32(e) == id) {
            *size = le64(e + 16);
            return le64(e + 8);
        }
    }
    return 0;
}

static void fill_provenance(yd_model_provenance *prov, const char *variant)
{
    yd_model_provenance_init(prov);
    snprintf(prov->source_name, sizeof prov->source_name, "yolov8n.onnx");
    snprintf(prov->source_sha256, sizeof prov->source_sha256, "%064d", 7);
    snprintf(prov->variant, sizeof prov->variant, "%s", variant);
    snprintf(prov->settings, sizeof prov->settings, "weights=%s", variant);
    prov->created = 1700000000;
    prov->map50_95 = 0.4265;
    snprintf(prov->yolod_version, sizeof prov->yolod_version, "test");
}

/* Runs a model on the golden bus input and writes the decoded output0. */
static void run_bus(yd_model *model, float *out)
{
    yd_session *session = NULL;
    yd_error err = {0};

    CHECK_OK(yd_session_create(model, 2, &session, &err));
    if (!session)
        return;
    yd_session_run_planar(session, golden_input);
    yd_head_decode_dense(&session->maps, out);
    yd_session_destroy(session);
}

static size_t file_size_of(const char *path)
{
    size_t size;
    void *data = read_file_or_die(path, &size);

    free(data);
    return size;
}

/* ------------------------------------------------------------ codecs */

static void fp16_every_half_round_trips(void)
{
    int mismatches = 0;

    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = yd_fp16_to_float((uint16_t)h);
        uint16_t back = yd_fp16_from_float(f);
        int nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);

        if (nan ? !(f != f) || (back & 0x7C00) != 0x7C00 || !(back & 0x3FF) : back != h)
            mismatches++;
    }
    CHECK_INT_EQ(mismatches, 0);
}

static void fp16_rounds_to_nearest_even(void)
{
    CHECK_INT_EQ(yd_fp16_from_float(1.0f), 0x3C00);
    CHECK_INT_EQ(yd_fp16_from_float(1.0f + 0x1p-11f), 0x3C00);        /* tie, even below */
    CHECK_INT_EQ(yd_fp16_from_float(1.0f + 3 * 0x1p-11f), 0x3C02);    /* tie, even above */
    CHECK_INT_EQ(yd_fp16_from_float(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    CHECK_INT_EQ(yd_fp16_from_float(65504.0f), 0x7BFF);
    CHECK_INT_EQ(yd_fp16_from_float(65519.0f), 0x7BFF);
    CHECK_INT_EQ(yd_fp16_from_float(65520.0f), 0x7C00);
    CHECK_INT_EQ(yd_fp16_from_float(-1e9f), 0xFC00);
    CHECK_INT_EQ(yd_fp16_from_float(0x1p-24f), 0x0001);
    CHECK_INT_EQ(yd_fp16_from_float(0x1p-25f), 0x0000);               /* tie to zero */
    CHECK_INT_EQ(yd_fp16_from_float(1.5f * 0x1p-25f), 0x0001);
    CHECK_INT_EQ(yd_fp16_from_float(0x1p-14f - 0x1p-25f), 0x0400);   /* rounds up to normal */
    CHECK_INT_EQ(yd_fp16_from_float(-0.0f), 0x8000);
    CHECK(yd_fp16_to_float(0x3555) == 0x1.554p-2f);
}

static void crc32c_check_value(void)
{
    /* The standard check value of CRC-32C (iSCSI, RFC 3720). */
    CHECK_INT_EQ(yd_crc32c("123456789", 9), 0xE3069283u);
    CHECK_INT_EQ(yd_crc32c("", 0), 0);
}

static void sha256_known_digests(void)
{
    uint8_t digest[32];
    char hex[65];
    yd_sha256 sha;
    static char million[1000000];

    yd_sha256_init(&sha);
    yd_sha256_final(&sha, digest);
    yd_sha256_hex(digest, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);

    yd_sha256_init(&sha);
    yd_sha256_update(&sha, "abc", 3);
    yd_sha256_final(&sha, digest);
    yd_sha256_hex(digest, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);

    /* 56 bytes: the padding needs a second block. */
    yd_sha256_init(&sha);
    yd_sha256_update(&sha, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56);
    yd_sha256_final(&sha, digest);
    yd_sha256_hex(digest, hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);

    /* One million 'a', fed in uneven pieces to exercise the block buffer. */
    memset(million, 'a', sizeof million);
    yd_sha256_init(&sha);
    for (size_t at = 0, step = 1; at < sizeof million; at += step, step = step * 3 % 1000 + 1)
        yd_sha256_update(&sha, million + at, at + step > sizeof million ? sizeof million - at : step);
    yd_sha256_final(&sha, digest);
    yd_sha256_hex(digest, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

/* ------------------------------------------------------------ round trips */

static void check_same_graph(const yd_graph *a, const yd_graph *b, int compare_weights)
{
    int ia = 0, ib = 0, differences = 0;

    CHECK_INT_EQ(a->input_width, b->input_width);
    CHECK_INT_EQ(a->input_height, b->input_height);
    CHECK_INT_EQ(a->nc, b->nc);
    CHECK_INT_EQ(a->nlevels, b->nlevels);
    CHECK_INT_EQ(a->arena_bytes, b->arena_bytes);
    for (int l = 0; l < a->nlevels && l < b->nlevels; l++) {
        CHECK(strcmp(a->values[a->head_box[l]].name, b->values[b->head_box[l]].name) == 0);
        CHECK(strcmp(a->values[a->head_cls[l]].name, b->values[b->head_cls[l]].name) == 0);
        CHECK_INT_EQ(a->head_stride[l], b->head_stride[l]);
    }

    /* Live nodes in order: the file drops dead ones and renumbers values. */
    for (;;) {
        while (ia < a->nnodes && a->nodes[ia].dead)
            ia++;
        while (ib < b->nnodes && b->nodes[ib].dead)
            ib++;
        if (ia == a->nnodes || ib == b->nnodes)
            break;

        const yd_node *x = &a->nodes[ia++], *y = &b->nodes[ib++];
        const yd_value *xo = &a->values[x->output], *yo = &b->values[y->output];
        int same = x->op == y->op && strcmp(x->name, y->name) == 0 && x->ninputs == y->ninputs &&
                   strcmp(xo->name, yo->name) == 0 && xo->c == yo->c && xo->h == yo->h &&
                   xo->w == yo->w && (x->residual < 0) == (y->residual < 0) &&
                   x->pool_kernel == y->pool_kernel && x->pool_stride == y->pool_stride &&
                   x->pool_pad == y->pool_pad && x->scale == y->scale &&
                   x->slice_begin == y->slice_begin && x->slice_end == y->slice_end;

        for (int k = 0; same && k < x->ninputs; k++)
            same = strcmp(a->values[x->inputs[k]].name, b->values[y->inputs[k]].name) == 0;
        if (same && x->residual >= 0)
            same = strcmp(a->values[x->residual].name, b->values[y->residual].name) == 0;
        if (same && x->op == YD_OP_CONV) {
            const yd_conv_params *p = &x->conv, *q = &y->conv;
            size_t n = (size_t)p->out_c * p->in_c * p->kernel_h * p->kernel_w;

            same = p->in_c == q->in_c && p->out_c == q->out_c && p->kernel_h == q->kernel_h &&
                   p->kernel_w == q->kernel_w && p->stride_h == q->stride_h &&
                   p->stride_w == q->stride_w && p->pad_top == q->pad_top &&
                   p->pad_left == q->pad_left && p->pad_bottom == q->pad_bottom &&
                   p->pad_right == q->pad_right && p->act == q->act &&
                   memcmp(p->bias, q->bias, (size_t)p->out_c * sizeof(float)) == 0;
            if (same && compare_weights)
                same = memcmp(p->weight, q->weight, n * sizeof(float)) == 0;
        }
        if (!same) {
            fprintf(stderr, "  node '%s' differs from '%s'\n", x->name, y->name);
            differences++;
        }
    }
    while (ia < a->nnodes && a->nodes[ia].dead)
        ia++;
    while (ib < b->nnodes && b->nodes[ib].dead)
        ib++;
    CHECK_INT_EQ(ia, a->nnodes);
    CHECK_INT_EQ(ib, b->nnodes);
    CHECK_INT_EQ(differences, 0);
}

static void fp32_round_trip_identical(void)
{
    yd_model_provenance prov, back;
    yd_model *loaded = NULL;
    yd_error err = {0};
    float *want = malloc(OUTPUT_FLOATS * sizeof(float));
    float *got = malloc(OUTPUT_FLOATS * sizeof(float));
    int dead = 0;

    fill_provenance(&prov, "fp32");
    CHECK_OK(yd_model_file_save(fp32_path, onnx_model->graph, onnx_model->class_names, &prov, &err));
    CHECK_OK(yd_model_load_with(fp32_path, onnx_model->kernels, &loaded, &err));
    if (!loaded) {
        fprintf(stderr, "  load failed: %s\n", err.message);
        goto done;
    }

    check_same_graph(onnx_model->graph, loaded->graph, 1);
    for (int i = 0; i < onnx_model->graph->nnodes; i++)
        dead += onnx_model->graph->nodes[i].dead;
    CHECK_INT_EQ(loaded->graph->nnodes, onnx_model->graph->nnodes - dead);
    CHECK_INT_EQ(yd_model_class_count(loaded), 80);
    for (int i = 0; i < 80; i++)
        CHECK(strcmp(yd_model_class_name(loaded, i), yd_model_class_name(onnx_model, i)) == 0);
    CHECK(strcmp(yd_model_name(loaded), "yolov8n-fp32") == 0);
    CHECK(yd_model_flops(loaded) == yd_model_flops(onnx_model));

    run_bus(onnx_model, want);
    run_bus(loaded, got);
    CHECK(memcmp(want, got, OUTPUT_FLOATS * sizeof(float)) == 0);

    CHECK_OK(yd_model_file_load(fp32_path, NULL, NULL, &back, &err));
    CHECK(strcmp(back.source_name, prov.source_name) == 0);
    CHECK(strcmp(back.source_sha256, prov.source_sha256) == 0);
    CHECK(strcmp(back.variant, "fp32") == 0);
    CHECK(strcmp(back.settings, prov.settings) == 0);
    CHECK(strcmp(back.calibration_sha256, "") == 0);
    CHECK(strcmp(back.yolod_version, "test") == 0);
    CHECK_INT_EQ(back.created, 1700000000);
    CHECK(back.map50_95 == 0.4265);
    CHECK(back.map50 != back.map50); /* unknown stays NaN */

done:
    yd_model_release(loaded);
    free(want);
    free(got);
}

static void save_leaves_no_temporary_file(void)
{
    DIR *dir = opendir(workdir);
    struct dirent *entry;
    int temporaries = 0;
    yd_error err = {0};
    char path[600];

    CHECK(dir != NULL);
    while (dir && (entry = readdir(dir)) != NULL)
        temporaries += contains(entry->d_name, ".tmp.");
    if (dir)
        closedir(dir);
    CHECK_INT_EQ(temporaries, 0);

    snprintf(path, sizeof path, "%s/no-such-folder/x.yolod", workdir);
    CHECK_INT_EQ(yd_model_file_save(path, onnx_model->graph, onnx_model->class_names, NULL, &err),
                 YD_ERR_IO);
    CHECK(contains(err.message, "no-such-folder"));
}

/*
 * A graph the reader would reject (here a stride past its limit) is not
 * written: the file already at the path stays as it was.
 */
static void unreadable_graph_keeps_old_file(void)
{
    yd_graph *g = onnx_model->graph;
    yd_conv_params *conv = NULL;
    yd_error err = {0};
    char path[600];
    uint8_t *before, *after;
    size_t before_size, after_size;
    int stride;

    for (int i = 0; i < g->nnodes && !conv; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == YD_OP_CONV)
            conv = &g->nodes[i].conv;
    CHECK(conv != NULL);
    if (!conv)
        return;
    snprintf(path, sizeof path, "%s/keep.yolod", workdir);
    CHECK_OK(yd_model_file_save(path, g, onnx_model->class_names, NULL, &err));
    before = read_file_or_die(path, &before_size);

    stride = conv->stride_h;
    conv->stride_h = YD_GRAPH_MAX_STRIDE + 1;
    CHECK_INT_EQ(yd_model_file_save(path, g, onnx_model->class_names, NULL, &err),
                 YD_ERR_INVALID_ARGUMENT);
    conv->stride_h = stride;
    CHECK(contains(err.message, "the file would not load back"));
    CHECK(contains(err.message, "keep.yolod"));

    /* A bias that is not a number, as a diverged training run would leave. */
    {
        float bias = conv->bias[3];

        conv->bias[3] = NAN;
        CHECK_INT_EQ(yd_model_file_save(path, g, onnx_model->class_names, NULL, &err),
                     YD_ERR_INVALID_ARGUMENT);
        conv->bias[3] = bias;
        CHECK(contains(err.message, "has bias nan for channel 3"));
    }

    after = read_file_or_die(path, &after_size);
    CHECK(before_size == after_size);
    if (before_size == after_size)
        CHECK(memcmp(before, after, before_size) == 0);
    free(before);
    free(after);
    save_leaves_no_temporary_file();
    unlink(path);
}

static void fp16_variant_half_size(void)
{
    yd_graph *g = onnx_model->graph;
    yd_model_provenance prov;
    yd_model *loaded = NULL;
    yd_error err = {0};
    float *got = malloc(OUTPUT_FLOATS * sizeof(float));
    size_t fp32_size, fp16_size;
    double box = 0, score = 0;
    int converted = 0, wrong = 0;

    /* The ONNX model is this test's own copy; marking it fp16 only changes
     * what the writer stores. */
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == YD_OP_CONV)
            g->nodes[i].conv.precision = YD_PREC_FP16;
    fill_provenance(&prov, "fp16");
    CHECK_OK(yd_model_file_save(fp16_path, g, onnx_model->class_names, &prov, &err));
    for (int i = 0; i < g->nnodes; i++)
        g->nodes[i].conv.precision = YD_PREC_FP32;

    fp32_size = file_size_of(fp32_path);
    fp16_size = file_size_of(fp16_path);
    printf("  fp32 file %zu bytes, fp16 file %zu bytes (%.3f)\n", fp32_size, fp16_size,
           (double)fp16_size / (double)fp32_size);
    CHECK(fp16_size > fp32_size * 0.45);
    CHECK(fp16_size < fp32_size * 0.55);

    CHECK_OK(yd_model_load_with(fp16_path, onnx_model->kernels, &loaded, &err));
    if (!loaded) {
        fprintf(stderr, "  load failed: %s\n", err.message);
        goto done;
    }
    check_same_graph(g, loaded->graph, 0);

    /* Every weight is the fp16 rounding of the original. */
    for (int i = 0, j = 0; i < g->nnodes; i++) {
        const yd_node *x = &g->nodes[i];

        if (x->dead)
            continue;
        const yd_node *y = &loaded->graph->nodes[j++];

        if (x->op != YD_OP_CONV)
            continue;
        converted++;
        wrong += y->conv.precision != YD_PREC_FP16;
        for (size_t k = 0; k < (size_t)x->conv.out_c * x->conv.in_c * x->conv.kernel_h * x->conv.kernel_w; k++)
            wrong += y->conv.weight[k] != yd_fp16_to_float(yd_fp16_from_float(x->conv.weight[k]));
    }
    CHECK_INT_EQ(converted, 63);
    CHECK_INT_EQ(wrong, 0);

    run_bus(loaded, got);
    for (int k = 0; k < ROWS; k++)
        for (int a = 0; a < ANCHORS; a++) {
            double d = fabs((double)got[k * ANCHORS + a] - (double)golden_output[k * ANCHORS + a]);

            if (d != d)
                d = INFINITY;
            if (k < 4 && d > box)
                box = d;
            if (k >= 4 && d > score)
                score = d;
        }
    printf("  fp16 weights vs ONNX Runtime fp32 on bus: max score diff %.2e, max box diff %.3f px\n",
           score, box);
    CHECK(score <= 1e-2);
    CHECK(box <= 2.5);

done:
    yd_model_release(loaded);
    free(got);
}

/*
 * INT8 storage: the first convolution quantized by hand (symmetric, per
 * output channel) keeps its int8 values, scales and input quantization bit
 * for bit, and its float weights become the dequantized values.
 */
static void int8_convolution_round_trip(void)
{
    yd_graph *g = onnx_model->graph, *back = NULL;
    yd_conv_params *p = NULL;
    yd_error err = {0};
    size_t size, per_channel;
    uint8_t *file;
    char path[600];
    int first = -1, wrong = 0;

    for (int i = 0; i < g->nnodes && first < 0; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == YD_OP_CONV)
            first = i;
    p = &g->nodes[first].conv;
    per_channel = (size_t)p->in_c * p->kernel_h * p->kernel_w;
    p->qweight = malloc(per_channel * (size_t)p->out_c);
    p->weight_scale = malloc((size_t)p->out_c * sizeof(float));
    for (int oc = 0; oc < p->out_c; oc++) {
        float max = 0;

        for (size_t k = 0; k < per_channel; k++)
            max = fmaxf(max, fabsf(p->weight[oc * per_channel + k]));
        p->weight_scale[oc] = max > 0 ? max / 127 : 1;
        for (size_t k = 0; k < per_channel; k++)
            p->qweight[oc * per_channel + k] =
                (int8_t)rintf(p->weight[oc * per_channel + k] / p->weight_scale[oc]);
    }
    p->input_scale = 1.0f / 255;
    p->input_zero = 3;
    p->precision = YD_PREC_INT8;

    snprintf(path, sizeof path, "%s/int8.yolod", workdir);
    CHECK_OK(yd_model_file_save(path, g, onnx_model->class_names, NULL, &err));
    p->precision = YD_PREC_FP32;
    file = read_file_or_die(path, &size);
    CHECK_OK(yd_model_file_parse(file, size, &back, NULL, NULL, &err));
    if (back) {
        const yd_conv_params *q = &back->nodes[first].conv;

        CHECK_INT_EQ(q->precision, YD_PREC_INT8);
        CHECK(memcmp(q->qweight, p->qweight, per_channel * (size_t)p->out_c) == 0);
        CHECK(memcmp(q->weight_scale, p->weight_scale, (size_t)p->out_c * sizeof(float)) == 0);
        CHECK(memcmp(q->bias, p->bias, (size_t)p->out_c * sizeof(float)) == 0);
        CHECK(q->input_scale == p->input_scale);
        CHECK_INT_EQ(q->input_zero, 3);
        for (size_t k = 0; k < per_channel * (size_t)p->out_c; k++)
            wrong += q->weight[k] != (float)p->qweight[k] * p->weight_scale[k / per_channel];
        CHECK_INT_EQ(wrong, 0);
        CHECK_INT_EQ(back->nodes[first + 1].conv.precision, YD_PREC_FP32);
    }

    /* An int8 convolution without its quantized weights cannot be saved. */
    free(p->qweight);
    p->qweight = NULL;
    p->precision = YD_PREC_INT8;
    CHECK_INT_EQ(yd_model_file_save(path, g, onnx_model->class_names, NULL, &err),
                 YD_ERR_INVALID_ARGUMENT);
    CHECK(contains(err.message, "int8"));
    p->precision = YD_PREC_FP32;
    free(p->weight_scale);
    p->weight_scale = NULL;

    yd_graph_free(back);
    free(file);
    unlink(path);
}

static void yolod_loads_in_milliseconds(void)
{
    double times[5], onnx_ms;
    yd_error err = {0};
    yd_model *model = NULL;
    double start;

    for (int i = 0; i < 5; i++) {
        start = yd_now_ms();
        CHECK_OK(yd_model_load_with(fp32_path, onnx_model->kernels, &model, &err));
        times[i] = yd_now_ms() - start;
        yd_model_release(model);
        model = NULL;
    }
    start = yd_now_ms();
    CHECK_OK(yd_model_load_with(shared_path("models/yolov8n.onnx"), onnx_model->kernels, &model, &err));
    onnx_ms = yd_now_ms() - start;
    yd_model_release(model);

    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    printf("  yolov8n load: .yolod fp32 median %.1f ms (min %.1f), ONNX %.1f ms, %s kernels\n",
           times[2], times[0], onnx_ms, onnx_model->kernels->name);
    /* Loose bound: the machine is shared; a re-import would not pass it either way. */
    CHECK(times[0] < 200.0);
}

/* ------------------------------------------------------------ rejections */

static int parse(const uint8_t *data, size_t size, yd_error *err)
{
    return yd_model_file_parse(data, size, NULL, NULL, NULL, err);
}

static void truncated_files_rejected(void)
{
    size_t size;
    uint8_t *file = read_file_or_die(fp16_path, &size);
    int wrong = 0, tried = 0;
    yd_error err = {0};

    for (size_t len = 1; len < size; len = len < 300 ? len + 1 : len + 1 + (size_t)rand() % 40000) {
        int rc = parse(file, len, &err);

        tried++;
        if (rc != YD_ERR_MODEL_FORMAT || !contains(err.message, "truncated")) {
            if (wrong++ < 3)
                fprintf(stderr, "  length %zu: rc %d, '%s'\n", len, rc, err.message);
        }
    }
    CHECK_INT_EQ(parse(file, size - 1, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "truncated"));
    printf("  %d truncated lengths tried\n", tried);
    CHECK_INT_EQ(wrong, 0);
    free(file);
}

/* Parses with one byte changed; the magic is foreign, the rest corrupted. */
static int flip_rejected(uint8_t *file, size_t size, size_t at, uint8_t mask)
{
    yd_error err = {0};
    int rc, good;

    file[at] ^= mask;
    rc = parse(file, size, &err);
    file[at] ^= mask;
    good = rc == YD_ERR_MODEL_FORMAT &&
           contains(err.message, at < 8 ? "not a yolod model file" : "corrupted");
    if (!good)
        fprintf(stderr, "  byte %zu ^ 0x%02x: rc %d, '%s'\n", at, mask, rc, err.message);
    return good;
}

static void flipped_bytes_rejected(void)
{
    size_t size;
    uint8_t *file = read_file_or_die(fp16_path, &size);
    yd_error err = {0};
    int wrong = 0;

    CHECK_OK(parse(file, size, &err));
    for (size_t at = 0; at < 64; at++)
        for (int bit = 0; bit < 8; bit++)
            wrong += !flip_rejected(file, size, at, (uint8_t)(1u << bit));
    for (size_t at = 0; at < 64; at++)
        wrong += !flip_rejected(file, size, at, 0xFF);
    srand(12345);
    for (int i = 0; i < 400; i++) {
        size_t at = 64 + (size_t)rand() % (size - 64);

        wrong += !flip_rejected(file, size, at, (uint8_t)(1 + rand() % 255));
    }
    /* The last byte and the first byte after the header. */
    wrong += !flip_rejected(file, size, size - 1, 0x80);
    wrong += !flip_rejected(file, size, 64, 0x01);
    CHECK_INT_EQ(wrong, 0);

    /* Extra bytes after the declared end. */
    uint8_t *longer = malloc(size + 1);
    memcpy(longer, file, size);
    longer[size] = 0;
    CHECK_INT_EQ(parse(longer, size + 1, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "extra bytes"));
    free(longer);
    free(file);
}

static void foreign_files_rejected(void)
{
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13};
    size_t size;
    uint8_t *onnx = read_file_or_die(shared_path("models/yolov8n.onnx"), &size);
    uint8_t *text;
    size_t text_size;
    yd_error err = {0};

    CHECK_INT_EQ(parse(png, sizeof png, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "not a yolod model file"));
    CHECK_INT_EQ(parse(onnx, size, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "not a yolod model file"));
    CHECK_INT_EQ(parse((const uint8_t *)"", 0, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "not a yolod model file"));
    CHECK_INT_EQ(yd_model_file_sniff(onnx, size), 0);
    free(onnx);

    /* A .yolod copied in text mode: every LF became CR LF. */
    uint8_t *file = read_file_or_die(fp16_path, &size);
    text = malloc(2 * size);
    text_size = 0;
    for (size_t i = 0; i < size; i++) {
        if (file[i] == '\n')
            text[text_size++] = '\r';
        text[text_size++] = file[i];
    }
    CHECK_INT_EQ(parse(text, text_size, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "not a yolod model file"));
    free(text);
    free(file);

    CHECK_INT_EQ(yd_model_file_load("/nonexistent/model.yolod", NULL, NULL, NULL, &err), YD_ERR_IO);
    CHECK(contains(err.message, "/nonexistent/model.yolod"));
    CHECK_INT_EQ(yd_model_file_load(workdir, NULL, NULL, NULL, &err), YD_ERR_IO);
}

static void version_numbers_checked(void)
{
    size_t size;
    uint8_t *file = read_file_or_die(fp16_path, &size);
    yd_graph *graph = NULL;
    yd_error err = {0};

    /* A newer major version: only the version is wrong, checksums hold. */
    file[8] = 2;
    fix_checksums(file, size);
    CHECK_INT_EQ(parse(file, size, &err), YD_ERR_MODEL_UNSUPPORTED);
    CHECK(contains(err.message, "version 2.0"));
    CHECK(contains(err.message, "1.x"));

    file[8] = 0;
    file[9] = 1; /* 256 */
    fix_checksums(file, size);
    CHECK_INT_EQ(parse(file, size, &err), YD_ERR_MODEL_UNSUPPORTED);
    CHECK(contains(err.message, "version 256.0"));

    /* A newer minor version of the same major still loads. */
    file[8] = 1;
    file[9] = 0;
    file[10] = 7;
    fix_checksums(file, size);
    CHECK_OK(yd_model_file_parse(file, size, &graph, NULL, NULL, &err));
    yd_graph_free(graph);

    file[10] = 0;
    put_le32(file + 16, 1); /* an unknown flag */
    fix_checksums(file, size);
    CHECK_INT_EQ(parse(file, size, &err), YD_ERR_MODEL_UNSUPPORTED);
    CHECK(contains(err.message, "flags"));
    free(file);
}

/* Applies edit to a copy of the file, fixes checksums and expects a rejection with word. */
static void expect_inconsistent(const uint8_t *file, size_t size, void (*edit)(uint8_t *, size_t),
                                const char *word, const char *what)
{
    uint8_t *copy = malloc(size);
    yd_graph *graph = NULL;
    yd_error err = {0};
    int rc;

    memcpy(copy, file, size);
    edit(copy, size);
    fix_checksums(copy, size);
    rc = yd_model_file_parse(copy, size, &graph, NULL, NULL, &err);
    if (rc != YD_ERR_MODEL_FORMAT || !contains(err.message, word)) {
        fprintf(stderr, "  %s: rc %d, '%s'\n", what, rc, err.message);
        test_failures_++;
    }
    yd_graph_free(graph);
    free(copy);
}

static uint8_t *table_entry(uint8_t *file, int i) { return file + le64(file + 24) + 32 * i; }
static void section_past_end(uint8_t *f, size_t size) { put_le64(table_entry(f, 0) + 8, size + 64); }
static void section_too_long(uint8_t *f, size_t size) { put_le64(table_entry(f, 1) + 16, UINT64_MAX); }
static void section_unaligned(uint8_t *f, size_t size) { put_le64(table_entry(f, 2) + 8, le64(table_entry(f, 2) + 8) + 4); }
static void section_in_header(uint8_t *f, size_t size) { put_le64(table_entry(f, 3) + 8, 0); }
static void section_overlap(uint8_t *f, size_t size) { put_le64(table_entry(f, 3) + 8, le64(table_entry(f, 2) + 8)); }
static void section_missing(uint8_t *f, size_t size) { put_le32(table_entry(f, 0), 99); }
static void section_twice(uint8_t *f, size_t size) { put_le32(table_entry(f, 1), 1); }
static void table_past_end(uint8_t *f, size_t size) { put_le64(f + 24, size); }
static void table_count_zero(uint8_t *f, size_t size) { put_le32(f + 20, 0); }
static void table_count_huge(uint8_t *f, size_t size) { put_le32(f + 20, 0xFFFFFFFFu); }
/* A header that claims 64 more bytes, which then hold the start of the table. */
static void table_in_header(uint8_t *f, size_t size) { put_le32(f + 12, (uint32_t)le64(f + 24) + 64); }

static void graph_input_size_odd(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 1, &n);

    put_le32(f + at, 33);
}

static void graph_value_count_huge(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 1, &n);

    put_le32(f + at + 20, 0x7FFFFFFF);
}

static void graph_first_value_channels(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 1, &n);
    uint32_t nlevels = le32(f + at + 12);

    put_le32(f + at + 28 + 12 * nlevels, 4); /* the input value: 3 channels -> 4 */
}

static void weights_count_wrong(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 2, &n);

    put_le32(f + at, le32(f + at) - 1);
}

static void weights_offset_outside(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 2, &n);

    put_le64(f + at + 16 + 8, n); /* first entry's weight offset at the section end */
}

static void weights_node_not_conv(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 2, &n);

    put_le32(f + at + 16, 0); /* node 0 is the Input node */
}

static void names_count_wrong(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 3, &n);

    put_le32(f + at, 81);
}

static void names_with_nul(uint8_t *f, size_t size)
{
    uint64_t n, at = section_offset(f, 3, &n);

    f[at + 8] = 0; /* inside "person" */
}

static void inconsistent_sections_rejected(void)
{
    size_t size;
    uint8_t *file = read_file_or_die(fp16_path, &size);

    expect_inconsistent(file, size, section_past_end, "outside", "section past the end");
    expect_inconsistent(file, size, section_too_long, "outside", "section size 2^64-1");
    expect_inconsistent(file, size, section_unaligned, "aligned", "unaligned section");
    expect_inconsistent(file, size, section_in_header, "outside", "section inside the header");
    expect_inconsistent(file, size, section_overlap, "overlap", "overlapping sections");
    expect_inconsistent(file, size, section_missing, "missing", "missing graph section");
    expect_inconsistent(file, size, section_twice, "twice", "graph section twice");
    expect_inconsistent(file, size, table_past_end, "section table", "table past the end");
    expect_inconsistent(file, size, table_count_zero, "section table", "zero sections");
    expect_inconsistent(file, size, table_count_huge, "section table", "4 billion sections");
    expect_inconsistent(file, size, table_in_header, "inside the", "table inside a longer header");
    expect_inconsistent(file, size, graph_input_size_odd, "input size 33", "input size 33x640");
    expect_inconsistent(file, size, graph_value_count_huge, "do not fit", "value count");
    expect_inconsistent(file, size, graph_first_value_channels, "invalid .yolod graph",
                        "4-channel input");
    expect_inconsistent(file, size, weights_count_wrong, "entries for", "weight entry count");
    expect_inconsistent(file, size, weights_offset_outside, "outside the section",
                        "weight offset outside");
    expect_inconsistent(file, size, weights_node_not_conv, "not a convolution", "weights of Input");
    expect_inconsistent(file, size, names_count_wrong, "81 names", "name count");
    expect_inconsistent(file, size, names_with_nul, "NUL", "NUL in a name");
    free(file);
}

/*
 * Random edits inside the sections with the checksums fixed up, as a
 * crafted file would have: every outcome is either a valid graph or a
 * YD_ERR_MODEL_FORMAT rejection, never a crash (run under ASan to see).
 */
static void crafted_sections_never_crash(void)
{
    size_t size;
    uint8_t *file = read_file_or_die(fp16_path, &size);
    uint64_t graph_size, graph_at = section_offset(file, 1, &graph_size);
    uint64_t names_size, names_at = section_offset(file, 3, &names_size);
    int unexpected = 0, rejected = 0, loaded = 0;

    srand(777);
    for (int i = 0; i < 300; i++) {
        uint8_t *copy = malloc(size);
        yd_graph *graph = NULL;
        yd_error err = {0};
        size_t at;
        int rc;

        memcpy(copy, file, size);
        /* Mostly the graph, whose bytes steer the reader; some names and tables. */
        if (i % 4 == 3)
            at = names_at + (size_t)rand() % names_size;
        else
            at = graph_at + (size_t)rand() % graph_size;
        copy[at] ^= (uint8_t)(1 + rand() % 255);
        if (i % 5 == 0)
            copy[graph_at + (size_t)rand() % 64] = (uint8_t)rand();
        fix_checksums(copy, size);
        rc = yd_model_file_parse(copy, size, &graph, NULL, NULL, &err);
        if (rc == YD_OK)
            loaded++;
        else if (rc == YD_ERR_MODEL_FORMAT)
            rejected++;
        else if (unexpected++ < 3)
            fprintf(stderr, "  byte %zu: rc %d, '%s'\n", at, rc, err.message);
        yd_graph_free(graph);
        free(copy);
    }
    printf("  300 crafted files: %d rejected, %d still valid (a changed name or class name)\n",
           rejected, loaded);
    CHECK_INT_EQ(unexpected, 0);
    CHECK(rejected > 150);
    free(file);
}

static void load_message_names_file(void)
{
    size_t size;
    uint8_t *file = read_file_or_die(fp16_path, &size);
    char path[600];
    FILE *f;
    yd_model *model = NULL;
    yd_error err = {0};

    snprintf(path, sizeof path, "%s/cut.yolod", workdir);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        goto done;
    fwrite(file, 1, size / 2, f);
    fclose(f);
    CHECK_INT_EQ(yd_model_load(path, NULL, &model, &err), YD_ERR_MODEL_FORMAT);
    CHECK(model == NULL);
    CHECK(contains(err.message, path));
    CHECK(contains(err.message, "truncated"));

    /* Three bytes of the magic: still recognised, and reported as truncated. */
    f = fopen(path, "wb");
    fwrite(file, 1, 3, f);
    fclose(f);
    CHECK_INT_EQ(yd_model_load(path, NULL, &model, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "truncated"));

    /* With its first byte changed the file is not recognised, the ONNX
     * importer fails too, and the message names both formats. */
    file[0] ^= 0xff;
    f = fopen(path, "wb");
    fwrite(file, 1, size, f);
    fclose(f);
    CHECK_INT_EQ(yd_model_load(path, NULL, &model, &err), YD_ERR_MODEL_FORMAT);
    CHECK(contains(err.message, "not a yolod model file"));
    CHECK(contains(err.message, "nor an ONNX model"));
    unlink(path);

done:
    free(file);
}

int main(void)
{
    yd_error err = {0};
    size_t size;

    golden_input = read_file_or_die(shared_path("golden/bus.input.f32"), &size);
    golden_output = read_file_or_die(shared_path("golden/bus.output0.f32"), &size);
    snprintf(workdir, sizeof workdir, "%s/yolod-model-file.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(workdir)) {
        fprintf(stderr, "FATAL: cannot create a temporary folder\n");
        return 2;
    }
    snprintf(fp32_path, sizeof fp32_path, "%s/yolov8n-fp32.yolod", workdir);
    snprintf(fp16_path, sizeof fp16_path, "%s/yolov8n-fp16.yolod", workdir);
    if (yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &onnx_model, &err) != YD_OK) {
        fprintf(stderr, "FATAL: cannot load yolov8n.onnx: %s\n", err.message);
        return 2;
    }

    RUN(fp16_every_half_round_trips);
    RUN(fp16_rounds_to_nearest_even);
    RUN(crc32c_check_value);
    RUN(sha256_known_digests);
    RUN(fp32_round_trip_identical);
    RUN(save_leaves_no_temporary_file);
    RUN(unreadable_graph_keeps_old_file);
    RUN(fp16_variant_half_size);
    RUN(int8_convolution_round_trip);
    RUN(yolod_loads_in_milliseconds);
    RUN(truncated_files_rejected);
    RUN(flipped_bytes_rejected);
    RUN(foreign_files_rejected);
    RUN(version_numbers_checked);
    RUN(inconsistent_sections_rejected);
    RUN(crafted_sections_never_crash);
    RUN(load_message_names_file);

    yd_model_release(onnx_model);
    free(golden_input);
    free(golden_output);
    unlink(fp32_path);
    unlink(fp16_path);
    rmdir(workdir);
    return TEST_SUMMARY();
}
