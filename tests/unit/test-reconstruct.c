/*
 * Teacher reconstruction: refitting a damaged copy of yolov8n against the
 * original lowers the layer output error and brings the network's head
 * outputs on an image it did not see closer to the teacher's; refitting an
 * exact copy changes nothing that matters.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "reconstruct.h"
#include "testlib.h"

#define CALIB "datasets/coco128/images/train2017/"

static const char *calib_files[] = {
    CALIB "000000000009.jpg", CALIB "000000000025.jpg", CALIB "000000000030.jpg",
    CALIB "000000000034.jpg",
};

static void load_images(yd_image *images, int n)
{
    for (int i = 0; i < n; i++) {
        yd_error err;

        if (yd_image_load(shared_path(calib_files[i]), 0, &images[i], &err) != YD_OK) {
            fprintf(stderr, "FATAL: %s: %s\n", calib_files[i], err.message);
            exit(2);
        }
    }
}

/* Mean squared difference of the raw head maps of two models on one image. */
static double head_distance(yd_model *a, yd_model *b, const float *input)
{
    yd_session *sa = NULL, *sb = NULL;
    double sum = 0;
    size_t count = 0;

    yd_session_create(a, 2, &sa, NULL);
    yd_session_create(b, 2, &sb, NULL);
    yd_session_run_planar(sa, input);
    yd_session_run_planar(sb, input);
    for (int l = 0; l < sa->maps.nlevels; l++) {
        size_t pixels = (size_t)sa->maps.level[l].height * sa->maps.level[l].width;
        size_t box = pixels * 64, cls = pixels * (size_t)sa->maps.nc;

        for (size_t i = 0; i < box; i++, count++)
            sum += pow(sa->maps.level[l].box[i] - sb->maps.level[l].box[i], 2);
        for (size_t i = 0; i < cls; i++, count++)
            sum += pow(sa->maps.level[l].cls[i] - sb->maps.level[l].cls[i], 2);
    }
    yd_session_destroy(sa);
    yd_session_destroy(sb);
    return sum / (double)count;
}

/* Refit only layers with patches of at most this length: the large ones
 * cost seconds each to solve and add nothing to what the test shows. */
#define MAX_PATCH 600

/* Adds deterministic noise of relative size `amount` to every 4th conv
 * that the test refits. */
static void damage(yd_model *model, double amount)
{
    uint32_t state = 12345;

    for (int i = 0, n = 0; i < model->graph->nnodes; i++) {
        yd_node *node = &model->graph->nodes[i];
        size_t count;

        if (node->dead || node->op != YD_OP_CONV)
            continue;
        count = (size_t)node->conv.in_c * node->conv.kernel_h * node->conv.kernel_w;
        if (count > MAX_PATCH || n++ % 4 != 1)
            continue;
        count = (size_t)node->conv.out_c * node->conv.in_c * node->conv.kernel_h * node->conv.kernel_w;
        for (size_t j = 0; j < count; j++) {
            state = state * 1664525u + 1013904223u;
            node->conv.weight[j] *= (float)(1.0 + amount * (((state >> 8) / 16777216.0) * 2 - 1));
        }
    }
}

static void refit_repairs_damaged_layers(void)
{
    yd_model *teacher = NULL, *student = NULL;
    yd_image images[4];
    yd_reconstruct_options options = {.ridge = 0.1, .threads = 2, .max_patch = MAX_PATCH};
    yd_reconstruct_report report;
    yd_error err = {0};
    size_t size;
    float *held_out = read_file_or_die(shared_path("golden/bus.input.f32"), &size);
    double before, after;

    load_images(images, 4);
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &teacher, &err));
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &student, &err));
    damage(student, 0.5);
    CHECK_OK(yd_model_repack(student, &err));
    before = head_distance(teacher, student, held_out);

    CHECK_OK(yd_reconstruct(student, teacher, images, 4, &options, &report, &err));
    after = head_distance(teacher, student, held_out);
    printf("  layers %d, layer error %.4g -> %.4g, head distance on bus.jpg %.4g -> %.4g\n",
           report.layers, report.error_before, report.error_after, before, after);
    CHECK(report.layers >= 30);
    CHECK(report.error_after < report.error_before);
    CHECK(after < before * 0.5);

    yd_model_release(teacher);
    yd_model_release(student);
    for (int i = 0; i < 4; i++)
        yd_image_free(&images[i]);
    free(held_out);
}

static void refit_keeps_exact_copy(void)
{
    yd_model *teacher = NULL, *student = NULL;
    yd_image images[2];
    yd_reconstruct_options options = {.ridge = 0.1, .threads = 2, .max_patch = MAX_PATCH};
    yd_reconstruct_report report;
    yd_error err = {0};
    size_t size;
    float *held_out = read_file_or_die(shared_path("golden/bus.input.f32"), &size);

    load_images(images, 2);
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &teacher, &err));
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &student, &err));
    CHECK_OK(yd_reconstruct(student, teacher, images, 2, &options, &report, &err));
    printf("  exact copy: layer error %.3g -> %.3g\n", report.error_before, report.error_after);
    CHECK(report.error_before < 1e-5);
    CHECK(report.error_after <= report.error_before);
    CHECK(head_distance(teacher, student, held_out) < 1e-4);

    yd_model_release(teacher);
    yd_model_release(student);
    for (int i = 0; i < 2; i++)
        yd_image_free(&images[i]);
    free(held_out);
}

int main(void)
{
    RUN(refit_repairs_damaged_layers);
    RUN(refit_keeps_exact_copy);
    return TEST_SUMMARY();
}
