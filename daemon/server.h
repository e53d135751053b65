/*
 * HTTP server on libmicrohttpd: one thread per connection, routing, body
 * collection with a size limit, JSON replies and the access log.
 */
#ifndef YOLOD_DAEMON_SERVER_H
#define YOLOD_DAEMON_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "config.h"
#include "header_deadline.h"
#include "registry.h"
#include "workers.h"
#include "yolod.h"

struct server {
    const struct config *config;
    struct registry *registry; /* the served models; its first model is the default */
    /* Set once the startup models are loaded, while the HTTP threads run. */
    struct worker_pool *_Atomic pool;
    struct MHD_Daemon *daemon;
    struct header_deadlines *header_deadlines; /* running while daemon is */
    int listen_fd;
    char bound[64];          /* numeric address of listen_fd, e.g. 127.0.0.1:8080 or [::1]:8080 */
    atomic_bool ready;       /* models loaded, workers running, not stopping */
    atomic_bool stopping;    /* draining: new detections get 503 and connections close */
    atomic_int active_requests; /* requests between their headers and their completion */
    int max_decodes;         /* config->max_decodes with 0 resolved */
    /* Images being decoded now; requests wait on decode_free for a slot,
     * unless decode_abandoned (set at the end of the drain). */
    pthread_mutex_t decode_lock;
    pthread_cond_t decode_free;
    int decodes;
    bool decode_abandoned;
    atomic_size_t buffered_bytes; /* capacity of all request body buffers together */
};

/* Form fields of a multipart request that are detection parameters. */
enum request_field {
    FIELD_MODEL, FIELD_VARIANT, FIELD_CONF, FIELD_IOU, FIELD_MAX_DET, FIELD_CLASSES,
    FIELD_MIN_CONFIDENCE, /* DeepStack's name for the confidence threshold */
    FIELD_COUNT
};

#define REQUEST_FIELD_MAX 4096 /* maximum bytes of a parameter field; a longer one gets 400 */

#define REQUEST_ID_MAX 64 /* maximum characters of a client's X-Request-Id */

/* State of one HTTP request, from its headers to the access log line. */
struct request {
    struct server *server;
    char method[16];
    char *path;
    const char *path_model;  /* NAME of /v1/vision/custom/NAME (inside path), else NULL */
    double start_ms;
    /* X-Request-Id: the client's if valid, else generated; sent back and logged. */
    char id[REQUEST_ID_MAX + 1];

    unsigned int status;     /* status of the queued response */
    size_t response_bytes;
    bool responded;

    /* Request body: the raw image, or the multipart field "image". */
    uint8_t *body;
    size_t body_size, body_capacity;
    size_t declared_length; /* Content-Length, 0 without one */
    bool body_too_large;
    bool body_over_budget;   /* max_buffered_bytes was reached while it arrived */
    bool keeps_body;         /* a detection route; other routes drop their bodies */
    bool before_stop;        /* its headers arrived before SIGTERM, so the drain serves it */
    /* The other route's confidence field (conf or min_confidence): read
     * nowhere here, so ignored like any unknown parameter. */
    int ignored_field;
    bool body_no_memory;

    struct multipart_parser *multipart_parser; /* NULL unless the body is multipart */
    bool multipart;
    int image_parts;         /* "image" parts seen in a multipart body */
    bool part_is_image;      /* the current part is named "image" */
    int part_field;          /* request_field of the current part, or -1 */
    bool multipart_invalid;  /* the body is malformed or a part was rejected */
    const char *multipart_error_code; /* error code for a rejected part, else NULL */
    char multipart_error[160]; /* why the part was rejected */
    char *fields[FIELD_COUNT];
    size_t field_sizes[FIELD_COUNT];
};

/* Names of the request_field values, as form fields and query arguments. */
extern const char *const request_field_names[FIELD_COUNT];

/*
 * Binds the listen address of server->config, before the models load, so
 * an address in use fails at once. Returns 0, or -1 after logging why
 * (port in use, address not available, ...).
 */
int server_bind(struct server *server);

/* Starts listening on the bound socket and the HTTP threads. Returns 0 or -1 (logged). */
int server_start(struct server *server);

/*
 * Stops accepting connections, waits up to request_timeout seconds for the
 * requests in progress to complete, then closes every connection.
 */
void server_stop(struct server *server);

/*
 * Starts server_stop's drain without waiting: new detections and model
 * changes get 503, and new connections fail at once. server_stop() finishes it.
 */
void server_begin_stop(struct server *server);

/*
 * Appends bytes to the request body, or marks it too large once it would
 * exceed max_body_bytes, or over budget once all bodies together would
 * exceed max_buffered_bytes (the excess is discarded either way).
 */
void server_append_body(struct request *request, const char *data, size_t size);

/* Frees the request body and returns its buffer to max_buffered_bytes. */
void server_free_body(struct request *request);

/*
 * Adds the X-Request-Id header, and Connection: close while the server
 * drains. Every place that queues a response for a request calls it, but
 * libmicrohttpd's own error replies carry no id.
 */
void server_add_common_headers(struct MHD_Response *response, const struct request *request);

/* Queues a JSON response (takes ownership of root, NULL gives a 500). */
enum MHD_Result server_reply_json(struct MHD_Connection *connection,
                                  struct request *request, unsigned int status,
                                  cJSON *root);

/* Same as server_reply_json, and adds one header (Retry-After) when header is not NULL. */
enum MHD_Result server_reply_json_with_header(struct MHD_Connection *connection,
                                              struct request *request, unsigned int status,
                                              cJSON *root, const char *header,
                                              const char *header_value);

/* Queues {"error": {code, message}} with the given status. */
enum MHD_Result server_reply_error(struct MHD_Connection *connection,
                                   struct request *request, unsigned int status,
                                   const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Same as server_reply_error, and adds one header (Allow, Retry-After). */
enum MHD_Result server_reply_error_with_header(struct MHD_Connection *connection,
                                               struct request *request, unsigned int status,
                                               const char *header, const char *header_value,
                                               const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/*
 * multipart.c: sets up the multipart parser for a multipart/form-data
 * Content-Type. Returns -1 if its boundary parameter is missing or invalid.
 */
int multipart_begin(struct request *request, struct MHD_Connection *connection);
/* Feeds body bytes to the multipart parser. Returns -1 if the body is malformed. */
int multipart_feed(struct request *request, const char *data, size_t size);
/* Marks the body invalid and returns -1 if it ended before the closing delimiter. */
int multipart_finish(struct request *request);
/* Frees the multipart parser. */
void multipart_end(struct request *request);

/* api_detect.c: POST /v1/detect, called once the body is complete. */
enum MHD_Result api_detect(struct MHD_Connection *connection, struct request *request);

struct json_timings;

/* Reply format of a detection endpoint: its confidence field and reply builders. */
struct detect_format {
    enum request_field conf_field; /* field read as the confidence threshold */
    const char *conf_default;      /* used when conf_field is absent; NULL for the configured conf */
    /* Builds the success body; NULL when out of memory. */
    cJSON *(*build_result)(const struct registry_ref *ref, const yd_result *result,
                           const struct json_timings *timings);
    /* Queues an error reply; retry_after is a Retry-After value or NULL. */
    enum MHD_Result (*reply_error)(struct MHD_Connection *connection, struct request *request,
                                   unsigned int status, const char *retry_after,
                                   const char *code, const char *message);
};

/* Formats of POST /v1/detect and of the DeepStack POST /v1/vision/detection. */
extern const struct detect_format api_detect_format;
extern const struct detect_format api_deepstack_format;

/*
 * Runs the detection pipeline of api_detect (body checks, model and
 * parameter validation, queue slot, decode, worker) with the given format.
 */
enum MHD_Result api_detect_run(struct MHD_Connection *connection, struct request *request,
                               const struct detect_format *format);

/*
 * Validates the query-string parameters when the headers are in, before
 * any body arrives, as api_detect_run would after it. Queues the same
 * error reply, stores its result and returns true on a problem. Before a
 * multipart body only repeated parameters are checked, because a form
 * field may replace any other query value.
 */
bool api_detect_reject_query(struct MHD_Connection *connection, struct request *request,
                             const struct detect_format *format, enum MHD_Result *result);

/* api_deepstack.c: POST /v1/vision/detection, DeepStack and CodeProject.AI compatible. */
enum MHD_Result api_deepstack_detect(struct MHD_Connection *connection, struct request *request);

/*
 * Queues a DeepStack error body {"success": false, "error", "code"} with
 * one extra header (header NULL: none); the native code goes to the debug log.
 */
enum MHD_Result api_deepstack_reply_error_with_header(struct MHD_Connection *connection,
                                                      struct request *request, unsigned int status,
                                                      const char *header, const char *value,
                                                      const char *code, const char *message);

/* api_deepstack_reply_error_with_header with Retry-After: retry_after, or no header when NULL. */
enum MHD_Result api_deepstack_reply_error(struct MHD_Connection *connection,
                                          struct request *request, unsigned int status,
                                          const char *retry_after, const char *code,
                                          const char *message);

/* api_kserve.c: KServe v2 GET /v2/health/live, /v2/health/ready, /v2/models/{name}/ready. */
enum MHD_Result api_kserve_live(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_kserve_ready(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_kserve_model_ready(struct MHD_Connection *connection, struct request *request);

/* api_models.c: GET /v1/models, GET /v1/models/{name}, POST /v1/models/{name}/ACTION. */
enum MHD_Result api_models_list(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_models_get(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_models_reload(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_models_load(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_models_unload(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_models_set_default(struct MHD_Connection *connection,
                                       struct request *request);

/* api_health.c: GET /healthz and GET /readyz. */
enum MHD_Result api_health_live(struct MHD_Connection *connection, struct request *request);
enum MHD_Result api_health_ready(struct MHD_Connection *connection, struct request *request);

#endif /* YOLOD_DAEMON_SERVER_H */
