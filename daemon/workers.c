/*
 * Worker pool. One mutex guards the ring buffer of job pointers and every
 * job's `done` flag. `job_ready` wakes workers. `job_done` is broadcast to
 * every submitter, and each one rechecks its own job.
 */
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "util.h"
#include "workers.h"

struct worker {
    struct worker_pool *pool;
    pthread_t thread;
    bool started;
    int index;
    yd_session **sessions; /* one per model */
};

struct worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t job_ready;
    pthread_cond_t job_done;
    struct detect_job **queue; /* ring of queue_size entries */
    double *queued_ms;         /* yd_now_ms() when each ring entry was queued */
    int queue_size, head, count;
    int reserved;              /* slots held by jobs still being prepared */
    bool stopping;
    int model_count;
    int worker_count;
    struct worker *workers;
};

static void *worker_main(void *arg)
{
    struct worker *worker = arg;
    struct worker_pool *pool = worker->pool;

    /* The first inference on a thread creates its OpenMP team. */
    for (int m = 0; m < pool->model_count; m++)
        yd_session_warm_up(worker->sessions[m]);

    for (;;) {
        struct detect_job *job;
        double taken_ms, queue_wait_ms;

        pthread_mutex_lock(&pool->lock);
        while (pool->count == 0 && !pool->stopping)
            pthread_cond_wait(&pool->job_ready, &pool->lock);
        if (pool->count == 0) {
            pthread_mutex_unlock(&pool->lock);
            break;
        }
        job = pool->queue[pool->head];
        taken_ms = yd_now_ms();
        queue_wait_ms = taken_ms - pool->queued_ms[pool->head];
        pool->head = (pool->head + 1) % pool->queue_size;
        pool->count--;
        pthread_mutex_unlock(&pool->lock);

        job->rc = yd_detect(worker->sessions[job->model_index], job->image,
                            &job->params, &job->result, &job->error);
        metrics_observe_job(job->model_index, queue_wait_ms / 1000.0,
                            (yd_now_ms() - taken_ms) / 1000.0,
                            job->rc == 0 ? job->result.count : 0);

        pthread_mutex_lock(&pool->lock);
        job->done = true;
        pthread_cond_broadcast(&pool->job_done);
        pthread_mutex_unlock(&pool->lock);
    }
    log_printf(YD_LOG_DEBUG, "worker %d stopped", worker->index);
    return NULL;
}

static void pool_free(struct worker_pool *pool)
{
    for (int i = 0; i < pool->worker_count; i++) {
        struct worker *worker = &pool->workers[i];

        if (worker->started)
            pthread_join(worker->thread, NULL);
        for (int m = 0; worker->sessions && m < pool->model_count; m++)
            if (worker->sessions[m])
                yd_session_destroy(worker->sessions[m]);
        free(worker->sessions);
    }
    free(pool->workers);
    free(pool->queue);
    free(pool->queued_ms);
    pthread_cond_destroy(&pool->job_done);
    pthread_cond_destroy(&pool->job_ready);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int worker_pool_start(yd_model *const *models, int model_count, int workers,
                      int threads, int queue_size, struct worker_pool **out,
                      yd_error *err)
{
    struct worker_pool *pool = calloc(1, sizeof *pool);
    int rc = YD_OK;

    if (!pool)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating the worker pool");
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->job_ready, NULL);
    pthread_cond_init(&pool->job_done, NULL);
    pool->queue_size = queue_size;
    pool->model_count = model_count;
    pool->queue = calloc((size_t)queue_size, sizeof *pool->queue);
    pool->queued_ms = calloc((size_t)queue_size, sizeof *pool->queued_ms);
    pool->workers = calloc((size_t)workers, sizeof *pool->workers);
    if (!pool->queue || !pool->queued_ms || !pool->workers) {
        rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating the worker pool");
        goto cleanup;
    }
    pool->worker_count = workers;

    for (int i = 0; i < workers; i++) {
        struct worker *worker = &pool->workers[i];

        worker->pool = pool;
        worker->index = i;
        worker->sessions = calloc((size_t)model_count, sizeof *worker->sessions);
        if (!worker->sessions) {
            rc = yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating worker %d", i);
            goto cleanup;
        }
        for (int m = 0; m < model_count; m++) {
            rc = yd_session_create(models[m], threads, &worker->sessions[m], err);
            if (rc < 0)
                goto cleanup;
        }
    }

    for (int i = 0; i < workers; i++) {
        struct worker *worker = &pool->workers[i];

        if (pthread_create(&worker->thread, NULL, worker_main, worker) != 0) {
            rc = yd_error_set(err, YD_ERR_INTERNAL, "cannot start worker thread %d", i);
            goto cleanup;
        }
        worker->started = true;
    }
    metrics_register_models(models, model_count);
    *out = pool;
    return YD_OK;

cleanup:
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->job_ready);
    pthread_mutex_unlock(&pool->lock);
    pool_free(pool);
    return rc;
}

int worker_pool_reserve(struct worker_pool *pool)
{
    int rc = 0;

    pthread_mutex_lock(&pool->lock);
    if (pool->stopping)
        rc = WORKER_STOPPED;
    else if (pool->count + pool->reserved >= pool->queue_size)
        rc = WORKER_QUEUE_FULL;
    else
        pool->reserved++;
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

void worker_pool_cancel(struct worker_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->reserved--;
    pthread_mutex_unlock(&pool->lock);
}

int worker_pool_run_reserved(struct worker_pool *pool, struct detect_job *job)
{
    pthread_mutex_lock(&pool->lock);
    pool->reserved--;
    if (pool->stopping) {
        /* The workers may have exited already; nothing would run the job. */
        pthread_mutex_unlock(&pool->lock);
        return WORKER_STOPPED;
    }

    job->done = false;
    pool->queue[(pool->head + pool->count) % pool->queue_size] = job;
    pool->queued_ms[(pool->head + pool->count) % pool->queue_size] = yd_now_ms();
    pool->count++;
    pthread_cond_signal(&pool->job_ready);

    while (!job->done)
        pthread_cond_wait(&pool->job_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int worker_pool_queued(struct worker_pool *pool)
{
    int count;

    pthread_mutex_lock(&pool->lock);
    count = pool->count;
    pthread_mutex_unlock(&pool->lock);
    return count;
}

void worker_pool_stop(struct worker_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->job_ready);
    pthread_mutex_unlock(&pool->lock);
    pool_free(pool);
}
