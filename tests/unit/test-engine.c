/*
 * Network parity with ONNX Runtime: the golden letterboxed inputs go
 * straight into the network, and the decoded head is compared with ORT's
 * output0 (class scores within 1e-4, boxes within 1e-2 px), for yolov8n on
 * every kernel table this CPU runs (Winograd on the vector ones) and for
 * yolov8s-random (another width).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "head.h"
#include "testlib.h"

#define ANCHORS 8400
#define ROWS 84

typedef struct parity {
    double box;   /* max |diff| over rows 0-3, pixels */
    double score; /* max |diff| over the class rows */
} parity;

static parity compare_output0(const float *got, const float *want)
{
    parity p = {0, 0};

    for (int k = 0; k < ROWS; k++)
        for (int a = 0; a < ANCHORS; a++) {
            double d = fabs((double)got[k * ANCHORS + a] - (double)want[k * ANCHORS + a]);

            if (d != d)
                d = INFINITY;
            if (k < 4 && d > p.box)
                p.box = d;
            if (k >= 4 && d > p.score)
                p.score = d;
        }
    return p;
}

/* Convolutions that run Winograd, and those that could (3x3, stride 1). */
static void count_winograd(const yd_model *model, int *chosen, int *supported)
{
    const yd_graph *g = model->graph;

    *chosen = *supported = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const yd_node *node = &g->nodes[i];
        yd_conv_shape shape;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        yd_conv_shape_of(g, node, &shape);
        *supported += yd_winograd_supported(&shape);
        *chosen += node->conv.winograd;
    }
}

/*
 * Runs `model_rel` on golden input `input_rel`; compares with `output_rel`.
 * The vector tables must run the 3x3 stride-1 layers with Winograd, so the
 * parity bounds cover it; the scalar table keeps the direct convolution.
 */
static void check_parity(const char *model_rel, const char *kernels, const char *input_rel,
                         const char *output_rel)
{
    const yd_kernel_table *table = yd_kernels_get(kernels);
    yd_model *model = NULL;
    yd_session *session = NULL;
    yd_error err = {0};
    size_t in_size, out_size;
    float *input, *want, *got;
    parity p;
    int winograd, supported;

    if (!table) {
        printf("  (this CPU does not run %s kernels)\n", kernels);
        return;
    }
    input = read_file_or_die(shared_path(input_rel), &in_size);
    want = read_file_or_die(shared_path(output_rel), &out_size);
    CHECK_INT_EQ(in_size, 3 * 640 * 640 * sizeof(float));
    CHECK_INT_EQ(out_size, ROWS * ANCHORS * sizeof(float));
    got = malloc(out_size);

    CHECK_OK(yd_model_load_with(shared_path(model_rel), table, &model, &err));
    if (!model) {
        fprintf(stderr, "  load failed: %s\n", err.message);
        goto done;
    }
    CHECK_INT_EQ(yd_model_class_count(model), 80);
    CHECK_INT_EQ(yd_model_input_size(model), 640);
    count_winograd(model, &winograd, &supported);
    CHECK(supported > 0);
    CHECK_INT_EQ(winograd, table->winograd ? supported : 0);
    CHECK_OK(yd_session_create(model, 2, &session, &err));
    yd_session_run_planar(session, input);
    CHECK_INT_EQ(yd_head_anchor_count(&session->maps), ANCHORS);
    yd_head_decode_dense(&session->maps, got);
    p = compare_output0(got, want);
    printf("  %s on %s, %s kernels (%d Winograd layers): max box diff %.2e px, max score diff "
           "%.2e\n", model_rel, input_rel, kernels, winograd, p.box, p.score);
    CHECK(p.box <= 1e-2);
    CHECK(p.score <= 1e-4);

done:
    yd_session_destroy(session);
    yd_model_release(model);
    free(input);
    free(want);
    free(got);
}

static void yolov8n_bus_parity(void)
{
    check_parity("models/yolov8n.onnx", "avx512", "golden/bus.input.f32", "golden/bus.output0.f32");
    check_parity("models/yolov8n.onnx", "avx2", "golden/bus.input.f32", "golden/bus.output0.f32");
}

static void yolov8n_zidane_parity(void)
{
    check_parity("models/yolov8n.onnx", "avx512", "golden/zidane.input.f32",
                 "golden/zidane.output0.f32");
    check_parity("models/yolov8n.onnx", "avx2", "golden/zidane.input.f32",
                 "golden/zidane.output0.f32");
}

static void yolov8n_scalar_parity(void)
{
    check_parity("models/yolov8n.onnx", "scalar", "golden/bus.input.f32", "golden/bus.output0.f32");
}

static void yolov8s_random_parity(void)
{
    check_parity("models/yolov8s-random.onnx", "avx512", "golden/bus.input.f32",
                 "golden/yolov8s-random.output0.f32");
    check_parity("models/yolov8s-random.onnx", "avx2", "golden/bus.input.f32",
                 "golden/yolov8s-random.output0.f32");
}

/* Writes `data` with every "MaxPool" renamed "MaxPoo1" (same length, so
 * the protobuf framing stays valid) and checks the import names the node. */
static void import_rejects_unknown_op(void)
{
    size_t size;
    uint8_t *data = read_file_or_die(shared_path("models/yolov8n.onnx"), &size);
    char path[] = "/tmp/yolod-test-XXXXXX";
    int fd = mkstemp(path);
    yd_model *model = NULL;
    yd_error err = {0};
    int renamed = 0;

    for (size_t i = 0; i + 7 <= size; i++) {
        if (memcmp(data + i, "MaxPool", 7) == 0) {
            data[i + 6] = '1';
            renamed++;
        }
    }
    CHECK(renamed >= 3);
    CHECK(fd >= 0);
    CHECK(write(fd, data, size) == (ssize_t)size);
    close(fd);

    CHECK_INT_EQ(yd_model_load(path, NULL, &model, &err), YD_ERR_MODEL_UNSUPPORTED);
    CHECK(model == NULL);
    printf("  %s\n", err.message);
    CHECK(strstr(err.message, "(MaxPoo1)") != NULL);
    CHECK(strstr(err.message, "/model.9/m/MaxPoo1") != NULL);
    unlink(path);
    free(data);
}

static double box_iou(const yd_box *a, const yd_box *b)
{
    double iw = fmin(a->x2, b->x2) - fmax(a->x1, b->x1);
    double ih = fmin(a->y2, b->y2) - fmax(a->y1, b->y1);
    double inter = iw > 0 && ih > 0 ? iw * ih : 0;
    double area_a = (a->x2 - a->x1) * (a->y2 - a->y1), area_b = (b->x2 - b->x1) * (b->y2 - b->y1);

    return inter / (area_a + area_b - inter);
}

/*
 * A 640x480 (width x height) export: the same network with the input's
 * height patched from 640 to 480 (both varints take two bytes). Its
 * detections on bus.jpg match the square model's at a lower resolution.
 */
static void rectangular_input_detects(void)
{
    static const uint8_t two_640_dims[] = {0x0a, 0x03, 0x08, 0x80, 0x05, 0x0a, 0x03, 0x08, 0x80, 0x05};
    size_t size;
    uint8_t *data = read_file_or_die(shared_path("models/yolov8n.onnx"), &size);
    uint8_t *at = memmem(data, size, two_640_dims, sizeof two_640_dims);
    char path[] = "/tmp/yolod-test-XXXXXX";
    int fd = mkstemp(path);
    yd_model *square = NULL, *rect = NULL;
    yd_session *square_session = NULL, *rect_session = NULL;
    yd_image bus = {0};
    yd_detect_params params;
    yd_result want = {0}, got = {0};
    yd_error err = {0};
    int matched = 0, strong = 0;

    CHECK(at != NULL);
    if (!at)
        goto done;
    at[3] = 0xe0; /* 480 = 0xe0 0x03 */
    at[4] = 0x03;
    CHECK(write(fd, data, size) == (ssize_t)size);
    close(fd);

    CHECK_OK(yd_model_load(path, NULL, &rect, &err));
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &square, &err));
    if (!rect || !square)
        goto done;
    CHECK_INT_EQ(yd_model_input_width(rect), 640);
    CHECK_INT_EQ(yd_model_input_height(rect), 480);
    CHECK_OK(yd_session_create(rect, 2, &rect_session, &err));
    CHECK_OK(yd_session_create(square, 2, &square_session, &err));
    CHECK_OK(yd_image_load(shared_path("images/bus.jpg"), 0, &bus, &err));
    yd_detect_params_default(&params);
    CHECK_OK(yd_detect(square_session, &bus, &params, &want, &err));
    CHECK_OK(yd_detect(rect_session, &bus, &params, &got, &err));

    for (int i = 0; i < want.count; i++) {
        if (want.detections[i].confidence < 0.5f)
            continue;
        strong++;
        for (int j = 0; j < got.count; j++) {
            if (got.detections[j].class_id == want.detections[i].class_id &&
                box_iou(&got.detections[j].box, &want.detections[i].box) >= 0.85 &&
                fabsf(got.detections[j].confidence - want.detections[i].confidence) <= 0.1f) {
                matched++;
                break;
            }
        }
    }
    printf("  640x480 input: %d detections, %d of %d strong square-model detections matched\n",
           got.count, matched, strong);
    CHECK_INT_EQ(strong, 4);
    CHECK_INT_EQ(matched, strong);

done:
    yd_result_free(&want);
    yd_result_free(&got);
    yd_image_free(&bus);
    yd_session_destroy(rect_session);
    yd_session_destroy(square_session);
    yd_model_release(rect);
    yd_model_release(square);
    unlink(path);
    free(data);
}

/* Copies the raw head maps of a session that just ran, dense [anchors][4 + 80]. */
static float *head_copy(yd_session *session)
{
    float *out = malloc((size_t)ANCHORS * (4 + 80) * sizeof(float));

    yd_head_decode_dense(&session->maps, out);
    return out;
}

/*
 * Sessions of two models of different sizes share one workspace, the larger
 * created second so the buffers grow and move under the first: each must
 * give bit for bit what a session with private buffers gives, in any order.
 */
static void workspace_sessions_match_private(void)
{
    size_t in_size;
    float *input = read_file_or_die(shared_path("golden/bus.input.f32"), &in_size);
    yd_model *small = NULL, *large = NULL;
    yd_session *own_small = NULL, *own_large = NULL, *shared_small = NULL, *shared_large = NULL;
    yd_workspace *workspace = NULL;
    yd_error err = { 0 };
    float *want_small, *want_large, *got;

    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &small, &err));
    CHECK_OK(yd_model_load(shared_path("models/yolov8s-random.onnx"), NULL, &large, &err));
    if (!small || !large)
        goto done;
    CHECK_OK(yd_session_create(small, 2, &own_small, &err));
    CHECK_OK(yd_session_create(large, 2, &own_large, &err));
    yd_session_run_planar(own_small, input);
    want_small = head_copy(own_small);
    yd_session_run_planar(own_large, input);
    want_large = head_copy(own_large);

    CHECK_OK(yd_workspace_create(&workspace, &err));
    CHECK_OK(yd_session_create_in(small, 2, workspace, &shared_small, &err));
    CHECK_OK(yd_session_create_in(large, 2, workspace, &shared_large, &err));
    CHECK(workspace->arena_bytes == large->graph->arena_bytes);
    for (int round = 0; round < 2; round++) {
        yd_session_run_planar(shared_small, input);
        got = head_copy(shared_small);
        CHECK(memcmp(got, want_small, (size_t)ANCHORS * 84 * sizeof(float)) == 0);
        free(got);
        yd_session_run_planar(shared_large, input);
        got = head_copy(shared_large);
        CHECK(memcmp(got, want_large, (size_t)ANCHORS * 84 * sizeof(float)) == 0);
        free(got);
    }
    free(want_small);
    free(want_large);

done:
    yd_session_destroy(own_small);
    yd_session_destroy(own_large);
    yd_session_destroy(shared_small);
    yd_session_destroy(shared_large);
    yd_workspace_destroy(workspace);
    yd_model_release(small);
    yd_model_release(large);
    free(input);
}

int main(void)
{
    RUN(rectangular_input_detects);
    RUN(import_rejects_unknown_op);
    RUN(yolov8n_bus_parity);
    RUN(yolov8n_zidane_parity);
    RUN(yolov8s_random_parity);
    RUN(yolov8n_scalar_parity);
    RUN(workspace_sessions_match_private);
    return TEST_SUMMARY();
}
