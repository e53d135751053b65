/*
 * Teacher reconstruction: see reconstruct.h for the method.
 *
 * The teacher runs once per calibration image; at every convolution the
 * observer samples output pixels and stores the teacher's pre-activation
 * outputs Y there. Then the layers are refit one at a time in graph order:
 * the student runs up to the layer on every image, its input patches X at
 * the same pixels are added into the normal equations A += X'X and
 * B += X'Y (double precision), and the system is solved by Cholesky
 * factorisation. Going in order means each refit gets its inputs from the
 * already refit layers above it, so a layer does not also correct an error
 * its inputs no longer have (refitting all layers from one pass measured
 * far worse mAP on yolov8n int8).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "quantize.h"
#include "reconstruct.h"
#include "util.h"

typedef double (*ddot_fn)(const double *, const double *, size_t);

/* Normal equations of one layer over a set of samples. */
typedef struct normal {
    double *a;             /* k x k, upper triangle filled while summing */
    double *b;             /* k x out */
    double *yy;            /* out: sum of y^2, for the relative error */
} normal;

typedef struct layer {
    int active;            /* a convolution being refit */
    int k;                 /* patch length + 1 (bias column) */
    int out;               /* student output channels */
    int rows;              /* samples per image */
    int *pixels;           /* [image][rows] sampled output pixel indices */
    float *y;              /* [image][rows][out] teacher pre-activations */
    normal fit;            /* samples of the even images: the refit */
    normal check;          /* samples of the odd images: accepts or rejects it */
} layer;

typedef struct ctx {
    yd_model *teacher, *student;
    layer *layers;
    int image;
    int nimages;
    int current;           /* the node being refit */
    int teacher_pass;      /* 1 while the teacher runs */
    float *patch;          /* scratch: rows x k */
    float *columns;        /* scratch: the student's patches transposed, k x rows */
    float *y_columns;      /* scratch: this image's targets transposed, out x rows */
    size_t patch_floats;
    size_t y_floats;
} ctx;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Fills rows x k patches of conv `node` from its input in session `s`;
 * the last column is 1 (bias). int8 layers see quantized inputs. */
static void extract_patches(const yd_session *s, const yd_node *node, const int *pixels, int rows,
                            int quantized, float *patch)
{
    const yd_graph *g = s->model->graph;
    const yd_value *in = &g->values[node->inputs[0]];
    const yd_value *out = &g->values[node->output];
    const float *data = yd_session_value(s, node->inputs[0]);
    const yd_conv_params *c = &node->conv;
    int cb = g->cb, k = c->in_c * c->kernel_h * c->kernel_w + 1;
    size_t plane = (size_t)in->h * in->w;
    float inverse = quantized ? 1.0f / c->input_scale : 0;

    for (int r = 0; r < rows; r++) {
        int oy = pixels[r] / out->w, ox = pixels[r] % out->w;
        float *row = patch + (size_t)r * k;
        int at = 0;

        for (int ic = 0; ic < c->in_c; ic++) {
            const float *channel = data + (size_t)(ic / cb) * plane * cb + ic % cb;

            for (int ky = 0; ky < c->kernel_h; ky++) {
                int iy = oy * c->stride_h - c->pad_top + ky;

                for (int kx = 0; kx < c->kernel_w; kx++) {
                    int ix = ox * c->stride_w - c->pad_left + kx;
                    float x = 0;

                    if (iy >= 0 && iy < in->h && ix >= 0 && ix < in->w)
                        x = channel[((size_t)iy * in->w + ix) * cb];
                    if (quantized) {
                        long q = lrintf(x * inverse) + c->input_zero;

                        q = yd_clamp_long(q, 0, 255);
                        x = (float)(q - c->input_zero) * c->input_scale;
                    }
                    row[at++] = x;
                }
            }
        }
        row[at] = 1.0f;
    }
}

/* Teacher pass: samples pixels and stores the teacher's pre-activations. */
static void observe_teacher(ctx *x, const yd_session *s, int index, layer *l)
{
    const yd_node *node = &s->model->graph->nodes[index];
    const yd_node *student = &x->student->graph->nodes[index];
    const yd_value *out = &s->model->graph->values[node->output];
    const yd_conv_params *c = &node->conv;
    int k = c->in_c * c->kernel_h * c->kernel_w + 1;
    int pixels = out->h * out->w;

    int *sampled = l->pixels + (size_t)x->image * l->rows;
    float *y = l->y + (size_t)x->image * l->rows * l->out;

#pragma omp master
    {
        for (int r = 0; r < l->rows; r++)
            sampled[r] = (int)(mix(((uint64_t)x->image << 32) ^ ((uint64_t)index << 20) ^ (uint64_t)r) %
                               (uint64_t)pixels);
        extract_patches(s, node, sampled, l->rows, 0, x->patch);
    }
#pragma omp barrier

    /* y = W x + b for the teacher channels the student kept. */
#pragma omp for schedule(static)
    for (int o = 0; o < l->out; o++) {
        int t = student->conv.source_channels ? student->conv.source_channels[o] : o;
        const float *w = c->weight + (size_t)t * (k - 1);

        for (int r = 0; r < l->rows; r++) {
            const float *p = x->patch + (size_t)r * k;
            double sum = c->bias[t];

            for (int i = 0; i < k - 1; i++)
                sum += (double)w[i] * p[i];
            y[(size_t)r * l->out + o] = (float)sum;
        }
    }
}

/* Student pass: adds X'X and X'Y of the student's patches. */
static void observe_student(ctx *x, const yd_session *s, int index, layer *l)
{
    const yd_node *node = &s->model->graph->nodes[index];
    const float *p = x->columns;
    const int k = l->k, rows = l->rows;
    const float *y = l->y + (size_t)x->image * rows * l->out;
    normal *n = x->image % 2 == 0 || x->nimages < 2 ? &l->fit : &l->check;
    double (*dot)(const float *, const float *, size_t) = s->model->kernels->dot;

#pragma omp master
    {
        extract_patches(s, node, l->pixels + (size_t)x->image * rows, rows,
                        node->conv.precision == YD_PREC_INT8, x->patch);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < k; i++)
                x->columns[(size_t)i * rows + r] = x->patch[(size_t)r * k + i];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < l->out; o++)
                x->y_columns[(size_t)o * rows + r] = y[(size_t)r * l->out + o];
        for (int o = 0; o < l->out; o++)
            for (int r = 0; r < rows; r++)
                n->yy[o] += (double)y[(size_t)r * l->out + o] * y[(size_t)r * l->out + o];
    }
#pragma omp barrier

#pragma omp for schedule(dynamic, 8)
    for (int i = 0; i < k; i++) {
        const float *ci = p + (size_t)i * rows;

        for (int j = i; j < k; j++)
            n->a[(size_t)i * k + j] += dot(ci, p + (size_t)j * rows, (size_t)rows);
        for (int o = 0; o < l->out; o++)
            n->b[(size_t)i * l->out + o] += dot(ci, x->y_columns + (size_t)o * rows, (size_t)rows);
    }
}

/* Called by every thread of the running session's team after each node. */
static void observe(const yd_session *s, int index, const float *output, void *user)
{
    ctx *x = user;
    layer *l = &x->layers[index];

    if (!l->active || (x->current >= 0 && index != x->current))
        return;
    if (x->teacher_pass)
        observe_teacher(x, s, index, l);
    else
        observe_student(x, s, index, l);
}

/* Squared error |X w - y|^2 of one output column from normal equations
 * whose matrix `a` has been made fully symmetric. The expansion cancels
 * to rounding error for an exact fit, so a result below 0 is taken as 0. */
static double column_error(const layer *l, const normal *n, const double *w, int o, ddot_fn ddot)
{
    int k = l->k;
    double quad = 0, cross = 0;

    for (int i = 0; i < k; i++) {
        quad += w[i] * ddot(n->a + (size_t)i * k, w, (size_t)k);
        cross += w[i] * n->b[(size_t)i * l->out + o];
    }
    return fmax(quad - 2 * cross + n->yy[o], 0.0);
}

static void symmetrize(double *a, int k)
{
    for (int i = 0; i < k; i++)
        for (int j = 0; j < i; j++)
            a[(size_t)i * k + j] = a[(size_t)j * k + i];
}

/* In-place Cholesky of the k x k matrix m (upper triangle filled in; the
 * factor L goes to the lower triangle); returns 0, or -1 when m is not
 * positive definite. */
static int cholesky(double *m, int k, ddot_fn ddot)
{
    for (int j = 0; j < k; j++) {
        double d = m[(size_t)j * k + j] - ddot(m + (size_t)j * k, m + (size_t)j * k, (size_t)j);

        if (d <= 0)
            return -1;
        d = sqrt(d);
        m[(size_t)j * k + j] = d;
#pragma omp parallel for schedule(static)
        for (int i = j + 1; i < k; i++)
            m[(size_t)i * k + j] = (m[(size_t)j * k + i] -
                                    ddot(m + (size_t)i * k, m + (size_t)j * k, (size_t)j)) / d;
    }
    return 0;
}

/* Solves L L' x = rhs in place (L in the lower triangle of m). */
static void cholesky_solve(const double *m, int k, double *x)
{
    for (int i = 0; i < k; i++) {
        double s = x[i];

        for (int p = 0; p < i; p++)
            s -= m[(size_t)i * k + p] * x[p];
        x[i] = s / m[(size_t)i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) {
        double s = x[i];

        for (int p = i + 1; p < k; p++)
            s -= m[(size_t)p * k + i] * x[p];
        x[i] = s / m[(size_t)i * k + i];
    }
}

/*
 * Refits one student convolution on the fit samples and keeps, per output
 * channel, the refit only if it also lowers the error on the check samples
 * (images the fit did not see); adds the check errors to the report.
 */
static int solve_layer(layer *l, yd_node *node, double ridge, ddot_fn ddot,
                       yd_reconstruct_report *report)
{
    yd_conv_params *c = &node->conv;
    const normal *check = l->check.a ? &l->check : &l->fit;
    int k = l->k;
    double *m = malloc((size_t)k * k * sizeof *m);
    double *w = malloc((size_t)k * sizeof *w);
    double *w0 = malloc((size_t)k * sizeof *w0);
    double trace = 0, lambda, before = 0, after = 0, total = 0;

    if (!m || !w || !w0) {
        free(m);
        free(w);
        free(w0);
        return YD_ERR_NO_MEMORY;
    }
    symmetrize(l->fit.a, k);
    if (l->check.a)
        symmetrize(l->check.a, k);
    for (int i = 0; i < k; i++)
        trace += l->fit.a[(size_t)i * k + i];
    lambda = ridge * trace / k + 1e-12;
    for (size_t i = 0; i < (size_t)k * k; i++)
        m[i] = l->fit.a[i];
    for (int i = 0; i < k; i++)
        m[(size_t)i * k + i] += lambda;
    if (cholesky(m, k, ddot) != 0) {
        free(m);
        free(w);
        free(w0);
        return YD_OK; /* leave the layer as it is */
    }

    for (int o = 0; o < l->out; o++) {
        double err0, err1;

        for (int i = 0; i < k - 1; i++)
            w0[i] = c->weight[(size_t)o * (k - 1) + i];
        w0[k - 1] = c->bias[o];
        for (int i = 0; i < k; i++)
            w[i] = l->fit.b[(size_t)i * l->out + o] + lambda * w0[i];
        cholesky_solve(m, k, w);

        err0 = column_error(l, check, w0, o, ddot);
        err1 = column_error(l, check, w, o, ddot);
        if (err1 < err0) {
            for (int i = 0; i < k - 1; i++)
                c->weight[(size_t)o * (k - 1) + i] = (float)w[i];
            c->bias[o] = (float)w[k - 1];
        } else {
            err1 = err0;
        }
        before += err0;
        after += err1;
        total += check->yy[o];
    }
    if (total > 0) {
        report->error_before += before / total;
        report->error_after += after / total;
        report->layers++;
    }
    free(m);
    free(w);
    free(w0);
    return c->precision == YD_PREC_INT8 ? yd_quantize_conv_weights(node) : YD_OK;
}

static void free_normal(normal *n)
{
    free(n->a);
    free(n->b);
    free(n->yy);
    n->a = n->b = n->yy = NULL;
}

static int alloc_normal(normal *n, int k, int out)
{
    n->a = calloc((size_t)k * k, sizeof *n->a);
    n->b = calloc((size_t)k * out, sizeof *n->b);
    n->yy = calloc((size_t)out, sizeof *n->yy);
    return n->a && n->b && n->yy ? YD_OK : YD_ERR_NO_MEMORY;
}

static void release_layer(layer *l)
{
    free(l->pixels);
    free(l->y);
    free_normal(&l->fit);
    free_normal(&l->check);
    l->pixels = NULL;
    l->y = NULL;
}

static int run_image(yd_session *session, yd_model *model, const yd_image *image, yd_error *err)
{
    yd_letterbox lb;

    return yd_session_run_image(session, image, &lb, err);
}

static int setup_layers(ctx *x, const yd_reconstruct_options *o, int nimages, yd_error *err)
{
    yd_graph *tg = x->teacher->graph, *sg = x->student->graph;

    if (tg->nnodes != sg->nnodes)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT,
                            "student and teacher graphs differ (%d and %d nodes)", sg->nnodes,
                            tg->nnodes);
    x->layers = calloc((size_t)sg->nnodes, sizeof *x->layers);
    if (!x->layers)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for reconstruction");

    for (int i = 0; i < sg->nnodes; i++) {
        yd_node *sn = &sg->nodes[i], *tn = &tg->nodes[i];
        layer *l = &x->layers[i];
        int out_pixels;

        if (sn->dead || sn->op != YD_OP_CONV || tn->op != YD_OP_CONV || tn->dead)
            continue;
        l->k = sn->conv.in_c * sn->conv.kernel_h * sn->conv.kernel_w + 1;
        if (o->max_patch > 0 && l->k - 1 > o->max_patch)
            continue;
        l->out = sn->conv.out_c;
        out_pixels = sg->values[sn->output].h * sg->values[sn->output].w;
        /* About 2K samples in all, with the ridge, pin down K unknowns;
         * the cost of A grows with samples * K^2. */
        l->rows = o->rows_per_image > 0 ? o->rows_per_image : (2 * l->k + nimages - 1) / nimages;
        if (l->rows < 32)
            l->rows = 32;
        if (l->rows > out_pixels)
            l->rows = out_pixels;
        l->pixels = malloc((size_t)nimages * l->rows * sizeof *l->pixels);
        l->y = malloc((size_t)nimages * l->rows * l->out * sizeof *l->y);
        if (!l->pixels || !l->y)
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for reconstruction");
        if ((size_t)l->rows * l->out > x->y_floats)
            x->y_floats = (size_t)l->rows * l->out;
        if ((size_t)l->rows * l->k > x->patch_floats)
            x->patch_floats = (size_t)l->rows * l->k;
        /* The teacher's patch has the teacher's (unpruned) input width. */
        size_t teacher_k = (size_t)tn->conv.in_c * tn->conv.kernel_h * tn->conv.kernel_w + 1;
        if ((size_t)l->rows * teacher_k > x->patch_floats)
            x->patch_floats = (size_t)l->rows * teacher_k;
        l->active = 1;
    }
    x->patch = malloc(x->patch_floats * sizeof *x->patch);
    x->columns = malloc(x->patch_floats * sizeof *x->columns);
    x->y_columns = malloc(x->y_floats * sizeof *x->y_columns);
    if (!x->patch || !x->columns || !x->y_columns)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for reconstruction");
    return YD_OK;
}

int yd_reconstruct(yd_model *student, yd_model *teacher, const yd_image *images, int nimages,
                   const yd_reconstruct_options *options, yd_reconstruct_report *report,
                   yd_error *err)
{
    ctx x = {.teacher = teacher, .student = student};
    yd_session *ts = NULL, *ss = NULL;
    int rc, total = 0, done = 0;

    memset(report, 0, sizeof *report);
    x.nimages = nimages;
    if (nimages < 1)
        return yd_error_set(err, YD_ERR_INVALID_ARGUMENT, "reconstruction needs at least one image");
    rc = setup_layers(&x, options, nimages, err);
    if (rc != YD_OK)
        goto done;
    rc = yd_session_create(teacher, options->threads, &ts, err);
    if (rc == YD_OK)
        rc = yd_session_create(student, options->threads, &ss, err);
    if (rc != YD_OK)
        goto done;
    ts->observe = observe;
    ts->observe_user = &x;
    ss->observe = observe;
    ss->observe_user = &x;

    /* The teacher once per image, sampling every layer's targets. */
    x.current = -1;
    x.teacher_pass = 1;
    for (x.image = 0; x.image < nimages; x.image++) {
        rc = run_image(ts, teacher, &images[x.image], err);
        if (rc != YD_OK)
            goto done;
    }
    yd_session_destroy(ts);
    ts = NULL;

    /* Then layer by layer in graph order, so each refit gets its inputs
     * from the already refit layers above it. The student stops there. */
    x.teacher_pass = 0;
    for (int i = 0; i < student->graph->nnodes; i++)
        total += x.layers[i].active;
    for (int i = 0; i < student->graph->nnodes; i++) {
        layer *l = &x.layers[i];

        if (!l->active)
            continue;
        if (alloc_normal(&l->fit, l->k, l->out) != YD_OK ||
            (nimages >= 2 && alloc_normal(&l->check, l->k, l->out) != YD_OK)) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory for reconstruction");
            goto done;
        }
        ss->stop_after = i;
        x.current = i;
        for (x.image = 0; x.image < nimages; x.image++) {
            rc = run_image(ss, student, &images[x.image], err);
            if (rc != YD_OK)
                goto done;
        }
        rc = solve_layer(l, &student->graph->nodes[i], options->ridge, student->kernels->ddot, report);
        if (rc == YD_OK)
            rc = yd_model_repack(student, err);
        if (rc != YD_OK) {
            yd_error_set(err, rc, "refitting '%s' failed", student->graph->nodes[i].name);
            goto done;
        }
        release_layer(l);
        if (options->progress)
            options->progress(++done, total, options->progress_user);
    }
    if (report->layers > 0) {
        report->error_before /= report->layers;
        report->error_after /= report->layers;
    }

done:
    yd_session_destroy(ts);
    yd_session_destroy(ss);
    if (x.layers)
        for (int i = 0; i < student->graph->nnodes; i++)
            release_layer(&x.layers[i]);
    free(x.layers);
    free(x.patch);
    free(x.columns);
    free(x.y_columns);
    return rc;
}
