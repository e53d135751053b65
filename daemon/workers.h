/*
 * Inference worker pool: a fixed number of threads fed by a bounded FIFO
 * queue. Each worker keeps one yd_session per model version it has run,
 * created on first use and destroyed once the registry replaced that version.
 */
#ifndef YOLOD_DAEMON_WORKERS_H
#define YOLOD_DAEMON_WORKERS_H

#include <stdbool.h>

#include "registry.h"
#include "yolod.h"

struct worker_pool;

/* One inference request. The submitting thread owns it and waits on it. */
struct detect_job {
    yd_model *model;  /* the version to run; the submitter holds a reference */
    int model_index;  /* registry entry index, for the metrics */
    const yd_image *image;
    yd_detect_params params;
    yd_result result; /* filled when rc == 0; the submitter frees it */
    yd_error error;
    int rc;           /* yd_detect's return value */
    bool done;
    bool cancelled;   /* done without running (worker_pool_cancel_queued) */
};

enum {
    WORKER_QUEUE_FULL = 1, /* queue_size jobs were reserved or waiting */
    WORKER_STOPPED = 2,    /* the pool is shutting down */
};

/*
 * Creates `workers` threads. Each creates and warms a session with `threads`
 * OpenMP threads for every current registry version at start, and later for
 * each new version on its first job. On failure nothing is left running.
 */
int worker_pool_start(struct registry *registry, int workers, int threads, int queue_size,
                      struct worker_pool **out, yd_error *err);

/*
 * Reserves a queue slot for a job that is not ready yet (its image is still
 * to be decoded), so a full queue is detected before the decoding work and
 * memory are spent. Reserved and queued jobs together are at most
 * queue_size. Returns 0, WORKER_QUEUE_FULL or WORKER_STOPPED.
 */
int worker_pool_reserve(struct worker_pool *pool);

/* Gives back a slot from worker_pool_reserve that will not be used. */
void worker_pool_cancel(struct worker_pool *pool);

/*
 * Queues the job into a slot reserved with worker_pool_reserve and blocks
 * until a worker has run it. Returns 0 (see job->rc), or WORKER_STOPPED
 * without running it (the pool is stopping, or the job was cancelled while
 * queued); the reservation is used up either way.
 */
int worker_pool_run_reserved(struct worker_pool *pool, struct detect_job *job);

/*
 * Ends every job still waiting in the queue without running it, so its
 * submitter can reply before the server closes the connection. Jobs a
 * worker has taken run to the end.
 */
void worker_pool_cancel_queued(struct worker_pool *pool);

/*
 * Wakes every worker to destroy its sessions of versions the registry no
 * longer serves; call it after a reload published a new version.
 */
void worker_pool_prune(struct worker_pool *pool);

/* Number of jobs waiting (not yet taken by a worker). */
int worker_pool_queued(struct worker_pool *pool);

/* Lets the workers finish every queued job, joins them and frees the pool. */
void worker_pool_stop(struct worker_pool *pool);

#endif /* YOLOD_DAEMON_WORKERS_H */
