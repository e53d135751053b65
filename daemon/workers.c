/*
 * Worker pool. One mutex guards the ring buffer of job pointers, every
 * job's `done` flag and `replaced_generation`. `job_ready` wakes workers for
 * a job or a replaced version. `job_done` is broadcast to every submitter,
 * and each one rechecks its own job.
 *
 * A worker's sessions share one workspace (activation arena and scratch),
 * because the worker runs one job at a time. The workspace grows to the
 * largest session created in it and shrinks when replaced versions' sessions
 * are destroyed.
 *
 * A worker's sessions are touched only by its own thread once it runs. Each
 * cached session holds a reference to its model, so a replaced version is
 * freed only after the last request released it and every worker destroyed
 * its session.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "util.h"
#include "workers.h"

struct cached_session {
    yd_model *model;       /* a reference owned by the cache */
    yd_session *session;
};

struct worker {
    struct worker_pool *pool;
    pthread_t thread;
    bool started;
    int index;
    struct cached_session *sessions;
    yd_workspace *workspace;  /* one arena for all of them: a worker runs one job at a time */
    int session_count, session_capacity;
    unsigned seen_generation; /* replaced_generation when the cache was last pruned */
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
    unsigned replaced_generation; /* bumped by worker_pool_prune */
    struct registry *registry;
    int threads;                  /* OpenMP threads per session */
    int worker_count;
    struct worker *workers;
};

/* Adds a session for model to the cache, taking a new reference to model. */
static int cache_add(struct worker *worker, yd_model *model, yd_error *err)
{
    struct cached_session *entry;
    int rc;

    if (worker->session_count == worker->session_capacity) {
        int capacity = worker->session_capacity ? 2 * worker->session_capacity : 4;
        struct cached_session *grown = realloc(worker->sessions, (size_t)capacity * sizeof *grown);

        if (!grown)
            return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory caching a session");
        worker->sessions = grown;
        worker->session_capacity = capacity;
    }
    entry = &worker->sessions[worker->session_count];
    rc = yd_session_create_in(model, worker->pool->threads, worker->workspace, &entry->session, err);
    if (rc < 0)
        return rc;
    entry->model = yd_model_retain(model);
    worker->session_count++;
    return YD_OK;
}

static void cache_remove(struct worker *worker, int i)
{
    log_printf(YD_LOG_DEBUG, "worker %d destroyed its session for model %s variant %s",
               worker->index, yd_model_name(worker->sessions[i].model),
               yd_model_variant(worker->sessions[i].model));
    yd_session_destroy(worker->sessions[i].session);
    yd_model_release(worker->sessions[i].model);
    worker->sessions[i] = worker->sessions[--worker->session_count];
}

/* The cached session of model, created and warmed on this thread if missing. */
static yd_session *cache_find(struct worker *worker, yd_model *model, yd_error *err)
{
    for (int i = 0; i < worker->session_count; i++)
        if (worker->sessions[i].model == model)
            return worker->sessions[i].session;
    if (cache_add(worker, model, err) < 0)
        return NULL;
    yd_session_warm_up(worker->sessions[worker->session_count - 1].session);
    log_printf(YD_LOG_DEBUG, "worker %d created a session for model %s variant %s",
               worker->index, yd_model_name(model), yd_model_variant(model));
    return worker->sessions[worker->session_count - 1].session;
}

/* Destroys the sessions of versions the registry no longer serves. */
static void cache_prune(struct worker *worker)
{
    bool removed = false;
    yd_session **left;
    yd_error err = {0};

    for (int i = worker->session_count - 1; i >= 0; i--) {
        if (!registry_is_current(worker->pool->registry, worker->sessions[i].model)) {
            cache_remove(worker, i);
            removed = true;
        }
    }
    if (!removed)
        return;
    /* An int8 or larger version may have grown the workspace beyond what
     * the sessions left need. */
    left = malloc(((size_t)worker->session_count + 1) * sizeof *left);
    for (int i = 0; left && i < worker->session_count; i++)
        left[i] = worker->sessions[i].session;
    if (!left || yd_workspace_fit(worker->workspace, left, worker->session_count, &err) != YD_OK)
        log_printf(YD_LOG_WARN, "worker %d could not shrink its workspace: %s", worker->index,
                   left ? err.message : "out of memory");
    free(left);
    /* glibc keeps freed arena memory of a session or model; give it back to the system. */
    malloc_trim(0);
}

static void *worker_main(void *arg)
{
    struct worker *worker = arg;
    struct worker_pool *pool = worker->pool;

    /* The first inference on a thread creates its OpenMP team. */
    for (int m = 0; m < worker->session_count; m++)
        yd_session_warm_up(worker->sessions[m].session);

    for (;;) {
        struct detect_job *job;
        yd_session *session;
        double taken_ms, queue_wait_ms;
        unsigned generation;

        pthread_mutex_lock(&pool->lock);
        while (pool->count == 0 && !pool->stopping &&
               worker->seen_generation == pool->replaced_generation)
            pthread_cond_wait(&pool->job_ready, &pool->lock);
        generation = pool->replaced_generation;
        if (pool->count == 0) {
            bool stopping = pool->stopping;

            pthread_mutex_unlock(&pool->lock);
            if (stopping)
                break;
            worker->seen_generation = generation;
            cache_prune(worker);
            continue;
        }
        job = pool->queue[pool->head];
        taken_ms = yd_now_ms();
        queue_wait_ms = taken_ms - pool->queued_ms[pool->head];
        pool->head = (pool->head + 1) % pool->queue_size;
        pool->count--;
        pthread_mutex_unlock(&pool->lock);

        session = cache_find(worker, job->model, &job->error);
        if (session)
            job->rc = yd_detect(session, job->image, &job->params, &job->result, &job->error);
        else
            job->rc = job->error.code < 0 ? job->error.code : YD_ERR_INTERNAL;
        metrics_observe_job(job->model_index, queue_wait_ms / 1000.0,
                            (yd_now_ms() - taken_ms) / 1000.0,
                            job->rc == 0 ? job->result.count : 0);

        pthread_mutex_lock(&pool->lock);
        job->done = true;
        pthread_cond_broadcast(&pool->job_done);
        pthread_mutex_unlock(&pool->lock);

        /*
         * Pruned after every job, not only on a new generation: a job queued
         * before a reload may have created a session for the replaced version
         * after this worker last pruned.
         */
        worker->seen_generation = generation;
        cache_prune(worker);
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
        while (worker->session_count > 0)
            cache_remove(worker, worker->session_count - 1);
        free(worker->sessions);
        yd_workspace_destroy(worker->workspace);
    }
    free(pool->workers);
    free(pool->queue);
    free(pool->queued_ms);
    pthread_cond_destroy(&pool->job_done);
    pthread_cond_destroy(&pool->job_ready);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int worker_pool_start(struct registry *registry, int workers, int threads, int queue_size,
                      struct worker_pool **out, yd_error *err)
{
    struct worker_pool *pool = calloc(1, sizeof *pool);
    int rc = YD_OK;

    if (!pool)
        return yd_error_set(err, YD_ERR_NO_MEMORY, "out of memory creating the worker pool");
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->job_ready, NULL);
    pthread_cond_init(&pool->job_done, NULL);
    pool->queue_size = queue_size;
    pool->registry = registry;
    pool->threads = threads;
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
        rc = yd_workspace_create(&worker->workspace, err);
        if (rc < 0)
            goto cleanup;
        worker->index = i;
        for (int m = 0; m < registry_count(registry); m++) {
            struct registry_ref ref;

            if (registry_acquire_index(registry, m, &ref) != YD_OK)
                continue;
            rc = cache_add(worker, ref.model, err);
            registry_release(&ref);
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
    job->cancelled = false;
    pool->queue[(pool->head + pool->count) % pool->queue_size] = job;
    pool->queued_ms[(pool->head + pool->count) % pool->queue_size] = yd_now_ms();
    pool->count++;
    pthread_cond_signal(&pool->job_ready);

    while (!job->done)
        pthread_cond_wait(&pool->job_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    return job->cancelled ? WORKER_STOPPED : 0;
}

void worker_pool_cancel_queued(struct worker_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->count; i++) {
        struct detect_job *job = pool->queue[(pool->head + i) % pool->queue_size];

        job->cancelled = true;
        job->done = true;
    }
    pool->head = (pool->head + pool->count) % pool->queue_size;
    pool->count = 0;
    pthread_cond_broadcast(&pool->job_done);
    pthread_mutex_unlock(&pool->lock);
}

void worker_pool_prune(struct worker_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->replaced_generation++;
    pthread_cond_broadcast(&pool->job_ready);
    pthread_mutex_unlock(&pool->lock);
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
