/*
 * Distillation tests. The trainer's backward pass matches finite differences
 * of its loss on a tiny graph with every operation it supports. Its GEMM
 * matches a triple loop in all four transpose cases. Training a damaged copy
 * of yolov8n against the original lowers the loss.
 */
#include <stdlib.h>
#include <string.h>

#include "distill.h"
#include "engine.h"
#include "kernels/gemm.h"
#include "testlib.h"

static uint32_t rng = 2463534242u;

static float uniform(float scale)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return scale * (float)((rng >> 8) / 16777216.0 * 2 - 1);
}

static void gemm_matches_reference(void)
{
    int shapes[][3] = {{1, 1, 1}, {13, 37, 300}, {40, 70, 19}, {5, 4100, 9}};

    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];

        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                float *a = malloc((size_t)m * k * sizeof *a), *b = malloc((size_t)k * n * sizeof *b);
                float *c = malloc((size_t)m * n * sizeof *c);
                size_t lda = ta ? (size_t)m : (size_t)k, ldb = tb ? (size_t)k : (size_t)n;
                double worst = 0;

                for (size_t i = 0; i < (size_t)m * k; i++)
                    a[i] = uniform(1);
                for (size_t i = 0; i < (size_t)k * n; i++)
                    b[i] = uniform(1);
                for (size_t i = 0; i < (size_t)m * n; i++)
                    c[i] = 1.0f;
                CHECK_OK(yd_gemm_f32(ta, tb, m, n, k, a, lda, b, ldb, c, (size_t)n, 1, 2));
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double sum = 1.0;

                        for (int p = 0; p < k; p++)
                            sum += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
                                   (tb ? b[j * ldb + p] : b[p * ldb + j]);
                        if (fabs(sum - c[(size_t)i * n + j]) > worst)
                            worst = fabs(sum - c[(size_t)i * n + j]);
                    }
                CHECK(worst < 1e-4 * (k + 1));
                free(a);
                free(b);
                free(c);
            }
    }
    printf("  micro-kernel %s\n", yd_gemm_f32_isa());
}

static int add_conv(yd_graph *g, int in, int out_c, int kernel, int stride, yd_act act, int residual,
                    int h, int w)
{
    int v = yd_graph_add_value(g, "conv", out_c, h, w), n = yd_graph_add_node(g, YD_OP_CONV, "conv");
    yd_conv_params *c = &g->nodes[n].conv;
    size_t count;

    c->in_c = g->values[in].c;
    c->out_c = out_c;
    c->kernel_h = c->kernel_w = kernel;
    c->stride_h = c->stride_w = stride;
    c->pad_top = c->pad_left = c->pad_bottom = c->pad_right = kernel / 2;
    c->act = act;
    count = (size_t)out_c * c->in_c * kernel * kernel;
    c->weight = malloc(count * sizeof *c->weight);
    c->bias = malloc((size_t)out_c * sizeof *c->bias);
    for (size_t i = 0; i < count; i++)
        c->weight[i] = uniform(1.0f / sqrtf((float)(c->in_c * kernel * kernel)));
    for (int i = 0; i < out_c; i++)
        c->bias[i] = uniform(0.3f);
    g->nodes[n].ninputs = 1;
    g->nodes[n].inputs[0] = in;
    g->nodes[n].residual = residual;
    g->nodes[n].output = v;
    g->values[v].producer = n;
    return v;
}

static int add_op(yd_graph *g, yd_op op, int a, int b, int c, int h, int w)
{
    int v = yd_graph_add_value(g, "op", c, h, w), n = yd_graph_add_node(g, op, yd_op_name(op));

    g->nodes[n].ninputs = b >= 0 ? 2 : 1;
    g->nodes[n].inputs[0] = a;
    g->nodes[n].inputs[1] = b;
    g->nodes[n].output = v;
    g->values[v].producer = n;
    return v;
}

/* Input 3x8x8; every op the trainer supports; one head level, 3 classes. */
static yd_graph *tiny_graph(void)
{
    yd_graph *g = yd_graph_create();
    int in = yd_graph_add_value(g, "input", 3, 8, 8), n = yd_graph_add_node(g, YD_OP_INPUT, "input");
    int a, b, up, pool, slice, cat, mixed, sum, gate, prod, act;

    g->nodes[n].output = in;
    g->values[in].producer = n;
    g->input = in;
    g->input_width = g->input_height = 8;
    a = add_conv(g, in, 8, 3, 1, YD_ACT_SILU, -1, 8, 8);
    b = add_conv(g, a, 8, 3, 2, YD_ACT_SILU, -1, 4, 4);
    up = add_op(g, YD_OP_UPSAMPLE, b, -1, 8, 8, 8);
    g->nodes[g->nnodes - 1].scale = 2;
    pool = add_op(g, YD_OP_MAXPOOL, a, -1, 8, 8, 8);
    g->nodes[g->nnodes - 1].pool_kernel = 3;
    g->nodes[g->nnodes - 1].pool_stride = 1;
    g->nodes[g->nnodes - 1].pool_pad = 1;
    slice = add_op(g, YD_OP_SLICE, pool, -1, 4, 8, 8);
    g->nodes[g->nnodes - 1].slice_begin = 2;
    g->nodes[g->nnodes - 1].slice_end = 6;
    cat = add_op(g, YD_OP_CONCAT, up, slice, 12, 8, 8);
    mixed = add_conv(g, cat, 8, 1, 1, YD_ACT_SILU, a, 8, 8);
    sum = add_op(g, YD_OP_ADD, mixed, a, 8, 8, 8);
    gate = add_op(g, YD_OP_SIGMOID, sum, -1, 8, 8, 8);
    prod = add_op(g, YD_OP_MUL, gate, sum, 8, 8, 8);
    act = add_op(g, YD_OP_SILU, prod, -1, 8, 8, 8);
    g->nc = 3;
    g->nlevels = 1;
    g->head_stride[0] = 1;
    g->head_box[0] = add_conv(g, act, 4 * YD_HEAD_REG_MAX, 3, 1, YD_ACT_NONE, -1, 8, 8);
    g->head_cls[0] = add_conv(g, act, 3, 1, 1, YD_ACT_NONE, -1, 8, 8);
    return g;
}

/*
 * Compares the gradients of `per_conv` random parameters of every conv but
 * node `skip` (the last of them a bias) with central differences of the
 * loss. Returns how many differ, and adds how many were compared to *checked.
 */
static int check_gradients(yd_graph *g, yd_distill_net *net, const float *input,
                           const yd_head_maps *maps, int per_conv, int skip, int *checked)
{
    int bad = 0;

    for (int i = 0; i < g->nnodes; i++) {
        yd_conv_params *c = &g->nodes[i].conv;
        int count;

        if (g->nodes[i].op != YD_OP_CONV || i == skip)
            continue;
        count = c->out_c * c->in_c * c->kernel_h * c->kernel_w;
        for (int t = 0; t < per_conv; t++) {
            int bias = t == per_conv - 1;
            int j = bias ? (int)(rng % (unsigned)c->out_c) : (int)(rng % (unsigned)count);
            float *param = bias ? &c->bias[j] : &c->weight[j], saved = *param, h = 1e-2f;
            double analytic = yd_distill_net_gradient(net, i, bias)[j], up, down, numeric;

            uniform(1);
            *param = saved + h;
            up = yd_distill_net_step(net, input, maps, 0, 1.0f);
            *param = saved - h;
            down = yd_distill_net_step(net, input, maps, 0, 1.0f);
            *param = saved;
            numeric = (up - down) / (2 * h);
            (*checked)++;
            if (fabs(analytic - numeric) > 2e-2 * fmax(fabs(analytic), fabs(numeric)) + 1e-4) {
                fprintf(stderr, "  node %d %s %d: analytic %.6g, numeric %.6g\n", i,
                        bias ? "bias" : "weight", j, analytic, numeric);
                bad++;
            }
        }
    }
    return bad;
}

/* Fills an 8x8 input of 3 channels and one level of teacher head maps (3 classes) with noise. */
static void random_head_maps(float input[3 * 64], float box[64 * 64], float cls[3 * 64],
                             yd_head_maps *maps)
{
    for (int i = 0; i < 3 * 64; i++)
        input[i] = uniform(1);
    for (int i = 0; i < 64 * 64; i++)
        box[i] = uniform(3);
    for (int i = 0; i < 3 * 64; i++)
        cls[i] = uniform(4);
    maps->level[0] = (yd_head_level){.stride = 1, .height = 8, .width = 8, .box = box, .cls = cls};
}

static void backward_matches_finite_differences(void)
{
    yd_graph *g = tiny_graph();
    yd_distill_net *net = NULL;
    yd_error err = {0};
    float input[3 * 64], box[64 * 64], cls[3 * 64];
    yd_head_maps maps = {.nc = 3, .nlevels = 1};
    int checked = 0, bad = 0;

    random_head_maps(input, box, cls, &maps);

    CHECK_OK(yd_distill_net_create(g, 2, &net, &err));
    if (!net) {
        yd_graph_free(g);
        return;
    }
    yd_distill_net_zero_gradients(net);
    yd_distill_net_step(net, input, &maps, 1, 1.0f);

    bad = check_gradients(g, net, input, &maps, 7, -1, &checked);
    printf("  %d of %d gradients off\n", bad, checked);
    CHECK(checked >= 30);
    CHECK(bad == 0);
    yd_distill_net_destroy(net);
    yd_graph_free(g);
}

/* A frozen conv gets no gradient; the trained ones get the same as before. */
static void frozen_layers_get_no_gradient(void)
{
    yd_graph *g = tiny_graph();
    yd_distill_net *net = NULL;
    yd_error err = {0};
    float input[3 * 64], box[64 * 64], cls[3 * 64];
    yd_head_maps maps = {.nc = 3, .nlevels = 1};
    int first = -1, last = -1;
    float *reference;
    size_t count;

    random_head_maps(input, box, cls, &maps);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == YD_OP_CONV) {
            first = first < 0 ? i : first;
            last = i;
        }
    CHECK_OK(yd_distill_net_create(g, 2, &net, &err));
    if (!net) {
        yd_graph_free(g);
        return;
    }
    count = (size_t)g->nodes[last].conv.out_c * g->nodes[last].conv.in_c;
    reference = malloc(count * sizeof *reference);
    yd_distill_net_zero_gradients(net);
    yd_distill_net_step(net, input, &maps, 1, 1.0f);
    memcpy(reference, yd_distill_net_gradient(net, last, 0), count * sizeof *reference);

    yd_distill_net_set_frozen(net, first, 1);
    yd_distill_net_zero_gradients(net);
    yd_distill_net_step(net, input, &maps, 1, 1.0f);
    for (int o = 0; o < g->nodes[first].conv.out_c; o++)
        CHECK(yd_distill_net_gradient(net, first, 1)[o] == 0.0f);
    CHECK(memcmp(reference, yd_distill_net_gradient(net, last, 0), count * sizeof *reference) == 0);

    free(reference);
    yd_distill_net_destroy(net);
    yd_graph_free(g);
}

/* Returns the tiny graph with the weights drawn from seed `seed`. */
static yd_graph *tiny_graph_seeded(uint32_t seed)
{
    rng = seed;
    return tiny_graph();
}

/* Returns the node of the nth conv (from 0) of g. */
static int nth_conv(const yd_graph *g, int nth)
{
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == YD_OP_CONV && nth-- == 0)
            return i;
    return -1;
}

/* Maps the output channels of conv node `node` to the teacher's in reverse order. */
static void reverse_channels(yd_graph *g, int node)
{
    yd_conv_params *c = &g->nodes[node].conv;

    c->source_channels = malloc((size_t)c->out_c * sizeof *c->source_channels);
    for (int o = 0; o < c->out_c; o++)
        c->source_channels[o] = c->out_c - 1 - o;
}

/* The feature term is 0 against the student's own weights and positive
 * once a channel mapping makes it compare other channels. */
static void feature_term_follows_the_channel_mapping(void)
{
    yd_graph *g = tiny_graph_seeded(7), *tg = tiny_graph_seeded(7);
    yd_distill_net *net = NULL, *teacher = NULL;
    yd_error err = {0};
    float input[3 * 64], box[64 * 64], cls[3 * 64];
    yd_head_maps maps = {.nc = 3, .nlevels = 1};
    double head_only, with_features;

    random_head_maps(input, box, cls, &maps);
    CHECK_OK(yd_distill_net_create(g, 2, &net, &err));
    CHECK_OK(yd_distill_net_create_teacher(tg, 2, &teacher, &err));
    if (!net || !teacher)
        goto done;
    yd_distill_net_forward(teacher, input);
    head_only = yd_distill_net_step(net, input, &maps, 0, 1.0f);
    CHECK_OK(yd_distill_net_set_feature_teacher(net, teacher, 5.0, &err));
    with_features = yd_distill_net_step(net, input, &maps, 0, 1.0f);
    CHECK(fabs(with_features - head_only) < 1e-9);

    reverse_channels(g, nth_conv(g, 0));
    with_features = yd_distill_net_step(net, input, &maps, 0, 1.0f);
    printf("  feature term %.4f with the channels reversed\n", with_features - head_only);
    CHECK(with_features - head_only > 0.01);
done:
    yd_distill_net_destroy(net);
    yd_distill_net_destroy(teacher);
    yd_graph_free(g);
    yd_graph_free(tg);
}

/*
 * With the feature term against another network, through a channel mapping
 * on the second conv, the backward pass still matches finite differences of
 * the loss. The first conv feeds the max pooling: a step of its weights
 * often changes which input is largest, and the difference then measures
 * no derivative, so its weights are not checked.
 */
static void feature_gradient_matches_finite_differences(void)
{
    yd_graph *g = tiny_graph_seeded(11), *tg = tiny_graph_seeded(12);
    yd_distill_net *net = NULL, *teacher = NULL;
    yd_error err = {0};
    float input[3 * 64], box[64 * 64], cls[3 * 64];
    yd_head_maps maps = {.nc = 3, .nlevels = 1};
    int checked = 0, bad = 0;

    random_head_maps(input, box, cls, &maps);
    reverse_channels(g, nth_conv(g, 1));
    CHECK_OK(yd_distill_net_create(g, 2, &net, &err));
    CHECK_OK(yd_distill_net_create_teacher(tg, 2, &teacher, &err));
    if (!net || !teacher)
        goto done;
    yd_distill_net_forward(teacher, input);
    CHECK_OK(yd_distill_net_set_feature_teacher(net, teacher, 5.0, &err));
    yd_distill_net_zero_gradients(net);
    yd_distill_net_step(net, input, &maps, 1, 1.0f);

    bad = check_gradients(g, net, input, &maps, 5, nth_conv(g, 0), &checked);
    printf("  %d of %d gradients off\n", bad, checked);
    CHECK(checked >= 20);
    CHECK(bad == 0);
done:
    yd_distill_net_destroy(net);
    yd_distill_net_destroy(teacher);
    yd_graph_free(g);
    yd_graph_free(tg);
}

#define CALIB "datasets/coco128/images/train2017/"

static void training_lowers_the_loss(void)
{
    const char *files[] = {CALIB "000000000009.jpg", CALIB "000000000025.jpg"};
    yd_model *teacher = NULL, *student = NULL;
    yd_image images[2];
    yd_distill_options options = {.epochs = 4, .learning_rate = 1e-4, .batch = 1, .threads = 2};
    yd_distill_report report;
    yd_error err = {0};

    for (int i = 0; i < 2; i++)
        if (yd_image_load(shared_path(files[i]), 0, &images[i], &err) != YD_OK) {
            fprintf(stderr, "FATAL: %s: %s\n", files[i], err.message);
            exit(2);
        }
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &teacher, &err));
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, &student, &err));
    for (int i = 0; i < student->graph->nnodes; i++) {
        yd_conv_params *c = &student->graph->nodes[i].conv;

        if (student->graph->nodes[i].op == YD_OP_CONV && !student->graph->nodes[i].dead)
            for (int o = 0; o < c->out_c; o++)
                c->bias[o] += uniform(0.3f);
    }
    CHECK_OK(yd_distill(student, teacher, images, 2, &options, &report, &err));
    printf("  loss %.4f in the first epoch, %.4f in the last, %d steps\n", report.loss_first,
           report.loss_last, report.steps);
    CHECK(report.steps == 8);
    CHECK(report.loss_last < 0.8 * report.loss_first);

    yd_model_release(teacher);
    yd_model_release(student);
    for (int i = 0; i < 2; i++)
        yd_image_free(&images[i]);
}

/* Loads three calibration images and two copies of yolov8n, the student's
 * biases moved away from the teacher's by up to 0.1 at random. */
static void load_pair(yd_image images[3], yd_model **teacher, yd_model **student)
{
    const char *files[] = {CALIB "000000000009.jpg", CALIB "000000000025.jpg",
                           CALIB "000000000030.jpg"};
    yd_error err = {0};

    rng = 2463534242u;
    for (int i = 0; i < 3; i++)
        if (yd_image_load(shared_path(files[i]), 0, &images[i], &err) != YD_OK) {
            fprintf(stderr, "FATAL: %s: %s\n", files[i], err.message);
            exit(2);
        }
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, teacher, &err));
    CHECK_OK(yd_model_load(shared_path("models/yolov8n.onnx"), NULL, student, &err));
    for (int i = 0; i < (*student)->graph->nnodes; i++) {
        yd_conv_params *c = &(*student)->graph->nodes[i].conv;

        if ((*student)->graph->nodes[i].op == YD_OP_CONV && !(*student)->graph->nodes[i].dead)
            for (int o = 0; o < c->out_c; o++)
                c->bias[o] += uniform(0.1f);
    }
}

/* Sum of every conv bias, to tell whether training's weights were kept. */
static double bias_sum(const yd_model *model)
{
    double sum = 0;

    for (int i = 0; i < model->graph->nnodes; i++) {
        const yd_conv_params *c = &model->graph->nodes[i].conv;

        if (model->graph->nodes[i].op == YD_OP_CONV && !model->graph->nodes[i].dead)
            for (int o = 0; o < c->out_c; o++)
                sum += c->bias[o];
    }
    return sum;
}

/*
 * With an image held out, distillation keeps the epoch whose detections
 * agree best with the teacher's. A gentle run keeps its trained weights.
 * A learning rate that wrecks the model gives back the weights from before.
 */
static void held_out_agreement_picks_the_weights(void)
{
    yd_model *teacher, *student;
    yd_image images[3];
    yd_distill_options options = {.epochs = 2, .learning_rate = 1e-4, .batch = 1, .threads = 2,
                                  .holdout = 1};
    yd_distill_report report;
    yd_error err = {0};
    double before;

    load_pair(images, &teacher, &student);
    CHECK_OK(yd_distill(student, teacher, images, 3, &options, &report, &err));
    printf("  gentle: agreement %.4f before, %.4f kept (epoch %d)\n", report.agreement_before,
           report.agreement_best, report.best_epoch);
    CHECK(report.agreement_before > 0);
    CHECK(report.agreement_before < 1);
    CHECK(report.best_epoch >= 1);
    CHECK(report.agreement_best > report.agreement_before);
    yd_model_release(student);
    yd_model_release(teacher);
    for (int i = 0; i < 3; i++)
        yd_image_free(&images[i]);

    load_pair(images, &teacher, &student);
    before = bias_sum(student);
    options.epochs = 1;
    options.learning_rate = 0.5;
    CHECK_OK(yd_distill(student, teacher, images, 3, &options, &report, &err));
    printf("  wrecking: agreement %.4f before, kept epoch %d, loss %.4f to %.4f\n",
           report.agreement_before, report.best_epoch, report.loss_first, report.loss_last);
    CHECK(report.best_epoch == 0);
    CHECK(report.agreement_best == report.agreement_before);
    CHECK(bias_sum(student) == before);
    yd_model_release(student);
    yd_model_release(teacher);
    for (int i = 0; i < 3; i++)
        yd_image_free(&images[i]);
}

/* Training with the feature term, on plain or zoomed images, lowers the
 * loss on the training and the held-out images. Every conv is trained, so
 * every conv but the head maps is compared. The loss of zoomed epochs is
 * not compared with the plain last epoch's. */
static void features_and_zoom_train(void)
{
    yd_model *teacher, *student;
    yd_image images[3];
    yd_distill_options options = {.epochs = 4, .learning_rate = 1e-5, .batch = 1, .threads = 2,
                                  .holdout = 1, .feature_weight = 10};
    yd_distill_report report;
    yd_error err = {0};
    int convs = 0;

    for (int zoom = 0; zoom < 2; zoom++) {
        load_pair(images, &teacher, &student);
        convs = 0;
        for (int i = 0; i < student->graph->nnodes; i++)
            convs += student->graph->nodes[i].op == YD_OP_CONV && !student->graph->nodes[i].dead;
        options.zoom = zoom ? 0.25 : 0;
        options.plain_epochs = zoom ? 1 : 0;
        CHECK_OK(yd_distill(student, teacher, images, 3, &options, &report, &err));
        printf("  zoom %.2f: %d of %d convs compared, loss %.4f in the first epoch, %.4f in the last,"
               " held out %.4f before, %.4f after\n", options.zoom, report.compared_layers, convs,
               report.loss_first, report.loss_last, report.holdout_before, report.holdout_last);
        CHECK(report.compared_layers == convs - 2 * student->graph->nlevels);
        CHECK(report.holdout_last < 0.8 * report.holdout_before);
        if (!zoom)
            CHECK(report.loss_last < 0.8 * report.loss_first);
        yd_model_release(student);
        yd_model_release(teacher);
        for (int i = 0; i < 3; i++)
            yd_image_free(&images[i]);
    }
}

int main(void)
{
    RUN(gemm_matches_reference);
    RUN(backward_matches_finite_differences);
    RUN(frozen_layers_get_no_gradient);
    RUN(training_lowers_the_loss);
    RUN(held_out_agreement_picks_the_weights);
    RUN(feature_term_follows_the_channel_mapping);
    RUN(feature_gradient_matches_finite_differences);
    RUN(features_and_zoom_train);
    return TEST_SUMMARY();
}
