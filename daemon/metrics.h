/*
 * Prometheus metrics: request, queue and inference counters and histograms
 * kept in memory, and GET /metrics, which renders them with the process
 * metrics in the text exposition format 0.0.4.
 */
#ifndef YOLOD_DAEMON_METRICS_H
#define YOLOD_DAEMON_METRICS_H

#include <microhttpd.h>

#include "yolod.h"

struct request;

/* Route label of requests whose path matches no route. */
#define METRICS_ROUTE_OTHER "other"

/*
 * Per-model metrics are kept by registry entry index (model_index below).
 * metrics_model_loaded records that entry index now serves a version of
 * (name, variant) loaded from path, with the current time as its load time.
 * metrics_model_unloaded drops its yolod_model_info line. Counters and
 * histograms of an entry survive unloading, so they never go backwards.
 * metrics_model_removed drops every series of entry index when the registry
 * gives its slot to another (name, variant). The new pair starts from zero.
 * So does the old pair if it is loaded again later, which Prometheus treats
 * as a counter reset.
 */
void metrics_model_loaded(int model_index, const char *name, const char *variant,
                          const char *path);
void metrics_model_unloaded(int model_index);
void metrics_model_removed(int model_index);

/*
 * Counts one response. route is the matched route pattern (such as
 * "/v1/detect") or METRICS_ROUTE_OTHER, and must stay valid for the life of
 * the process (a string literal). Once 31 distinct routes besides
 * METRICS_ROUTE_OTHER are counted, new ones are counted as
 * METRICS_ROUTE_OTHER. A status outside 100..599 is not counted.
 */
void metrics_observe_request(const char *route, unsigned int status, double seconds);

/* Counts a connection libmicrohttpd closed at a connection limit. */
void metrics_count_rejected_connection(void);

/* Counts a connection closed because its request headers missed request_timeout. */
void metrics_count_header_timeout(void);

/* Counts a failed load of a model file that no entry serves (not a reload). */
void metrics_count_new_file_failure(void);

/*
 * Records one inference job: seconds from queueing to a worker taking it,
 * seconds in yd_detect, and the detections it returned (0 when it failed).
 * Jobs of a model_index never loaded are ignored.
 */
void metrics_observe_job(int model_index, double queue_wait_seconds,
                         double inference_seconds, int detections);

/* Counts one reload of a loaded model variant as yolod_model_reloads_total{result}. */
void metrics_observe_reload(int model_index, bool success);

/* GET /metrics: every metric, Content-Type text/plain; version=0.0.4. */
enum MHD_Result api_metrics(struct MHD_Connection *connection, struct request *request);

#endif /* YOLOD_DAEMON_METRICS_H */
