/*
 * Teacher distillation of a pruned model. The float weights and biases of
 * the student's convolutions (all of them, or only those pruning changed)
 * are trained by gradient descent so that its raw head maps match the float
 * teacher's on unlabelled calibration images. No labels are used.
 *
 * Loss per image, over the anchors of every level:
 *   - classes: binary cross-entropy of sigmoid(student logit) against the
 *     teacher's sigmoid probability, for every class;
 *   - boxes: for each of the four sides, cross-entropy of the student's
 *     softmax over the DFL bins against the teacher's, weighted by the
 *     teacher's highest class probability at the anchor, so that
 *     background anchors do not dominate;
 * both divided by the sum of those weights. The teacher's entropies are
 * subtracted when the loss is reported, so a perfect student scores 0.
 * An optional third term compares intermediate features (see
 * yd_distill_options.feature_weight).
 *
 * Training runs the student on its own planar float layout (lib/distill.c)
 * at the model's input size, one image at a time, with Adam, a linear
 * warm-up and a cosine decay of the learning rate, random horizontal
 * flips and an optional random zoom. The teacher's head maps come from the
 * inference engine, and its features from a forward-only copy of the
 * trainer's network.
 */
#ifndef YOLOD_DISTILL_H
#define YOLOD_DISTILL_H

#include "graph.h"
#include "head.h"
#include "yolod.h"

/* Mean losses of one epoch, split into the class and box terms. */
typedef struct yd_distill_epoch {
    int epoch, epochs;       /* epoch counts from 1 */
    double loss, loss_cls, loss_box;          /* training images, while the weights move */
    double loss_features;                     /* the feature term, included in loss; 0 without one */
    double holdout, holdout_cls, holdout_box; /* held-out images after the epoch; NaN without */
    /* COCO mAP50-95 of the student's held-out detections against the
     * teacher's (confidence above 0.25); NaN without held-out images or
     * when the teacher found nothing on them. */
    double agreement;
    double elapsed_ms;
} yd_distill_epoch;

typedef struct yd_distill_options {
    int epochs;              /* passes over the images, at least 1 */
    double learning_rate;    /* peak Adam step size, e.g. 3e-3 */
    int batch;               /* images per Adam step; 0 = 8 */
    int flip;                /* 1: flip each image horizontally with probability 1/2 */
    unsigned seed;           /* image order and flips */
    int threads;             /* OpenMP threads; 0 = all cores */
    /* Images at the end of the list kept out of training. Before training
     * and after every epoch the student's loss and agreement on them are
     * measured (see yd_distill_epoch). The weights that agree best are
     * kept, which undoes training that only fits the training images. */
    int holdout;
    /* Biases learn this many times faster than weights (0 = 1). Adam moves
     * each parameter by about the learning rate per step, and the logits of
     * a pruned head branch can be several units off (e.g. -12 where the
     * teacher has -1), which the bias reaches sooner than the weights. */
    double bias_lr_scale;
    /* 1: train only the convolutions pruning changed (fewer input or output
     * channels than the teacher's); the rest keep the teacher's weights. */
    int pruned_only;
    /* Weight of the feature term (0 = none): the outputs of the trained
     * convolutions and of every convolution after them, head maps excepted,
     * should match the teacher's channels they were kept from. The term is
     * the weight times the mean over those layers of the squared error
     * relative to the teacher's squared values. */
    double feature_weight;
    /* Random zoom (0 = none): each training image is scaled about its centre
     * by a factor drawn log-uniformly from [1 - zoom, 1 + zoom] and moved by
     * up to a tenth of its size each way, except in the last `plain_epochs`
     * epochs. The teacher is run on the same zoomed image. */
    double zoom;
    int plain_epochs;
    /* Called after every epoch, and with epoch 0 for the held-out loss
     * before training. */
    void (*progress)(const yd_distill_epoch *epoch, void *user);
    void *progress_user;
} yd_distill_options;

typedef struct yd_distill_report {
    int epochs;
    int steps;               /* Adam updates */
    double loss_first;       /* mean loss of the first epoch (weights still moving) */
    double loss_last;        /* mean loss of the last epoch */
    double holdout_before;   /* held-out loss before training; NaN without held-out images */
    double holdout_first;    /* held-out loss after the first and the last epoch */
    double holdout_last;
    /* With held-out images: the epoch whose weights were kept, the one with
     * the highest agreement (the lowest loss when the teacher found nothing
     * on them); 0: the weights from before training. */
    int best_epoch;
    double agreement_before, agreement_best;
    int compared_layers;     /* layers the feature term compares */
} yd_distill_report;

/*
 * Trains `student`, a pruned copy of `teacher` with the same node indices
 * and the same head outputs, then repacks its weights. Every student
 * convolution must be fp32 or fp16 (computed in fp32); quantize after
 * distilling. Neither model may be in use by a session.
 * Errors: YD_ERR_INVALID_ARGUMENT (no image, graphs that differ),
 * YD_ERR_MODEL_UNSUPPORTED (an int8 layer or an operation the trainer
 * lacks), YD_ERR_NO_MEMORY.
 */
int yd_distill(yd_model *student, yd_model *teacher, const yd_image *images, int nimages,
               const yd_distill_options *options, yd_distill_report *report, yd_error *err);

/*
 * The trainer's forward and backward pass, for tests: a network over
 * `graph` (which must outlive it) holding activations and gradients.
 */
typedef struct yd_distill_net yd_distill_net;

int yd_distill_net_create(const yd_graph *graph, int threads, yd_distill_net **out, yd_error *err);
void yd_distill_net_destroy(yd_distill_net *net);

/*
 * Runs the network on a planar [3][H][W] input and returns the loss
 * against `teacher`, the teacher's raw head maps for the same input. With
 * `backward` set, adds the gradient of `scale` times the loss to every
 * convolution's weight and bias gradient.
 */
double yd_distill_net_step(yd_distill_net *net, const float *input, const yd_head_maps *teacher,
                           int backward, float scale);

/* A forward-only network over the teacher's graph, for the feature term. */
int yd_distill_net_create_teacher(const yd_graph *graph, int threads, yd_distill_net **out,
                                  yd_error *err);

/* Runs the network on a planar [3][H][W] input, keeping every activation. */
void yd_distill_net_forward(yd_distill_net *net, const float *input);

/*
 * Adds the feature term (see yd_distill_options.feature_weight) to the loss
 * of every later step: `teacher`, run with yd_distill_net_forward() on the
 * same input before each step, gives the target outputs. Call it after
 * freezing layers, since it compares the layers that get a gradient. NULL
 * or a weight of 0 removes the term. Errors: YD_ERR_INVALID_ARGUMENT when a
 * compared layer's shape differs from the teacher's, YD_ERR_NO_MEMORY.
 */
int yd_distill_net_set_feature_teacher(yd_distill_net *net, const yd_distill_net *teacher,
                                       double weight, yd_error *err);

/* Freezes (1) or unfreezes (0) the weights of conv node `node`. */
void yd_distill_net_set_frozen(yd_distill_net *net, int node, int frozen);

/* The accumulated gradient of node `node`'s conv weights (bias: 1 for the bias). */
float *yd_distill_net_gradient(yd_distill_net *net, int node, int bias);

/* Sets every gradient to zero. */
void yd_distill_net_zero_gradients(yd_distill_net *net);

#endif /* YOLOD_DISTILL_H */
