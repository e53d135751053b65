/*
 * libmicrohttpd setup and request dispatch.
 *
 * The access handler is called once when the headers are in, once per chunk
 * of body and once more when the body is complete. Requests rejected from
 * the headers alone (unknown route, wrong method, an expectation other than
 * 100-continue, a Content-Length over the limit or given twice, an invalid
 * query parameter of a detection route) get their reply on the first call.
 * libmicrohttpd then sends it instead of 100 Continue, never reads the
 * body, and closes the connection.
 *
 * Three deadlines bound slow clients, each request_timeout seconds long.
 * libmicrohttpd's idle timeout restarts with every byte. The header
 * deadline (header_deadline.c) runs from the connection's accept, or its
 * previous request's end, to the first access-handler call. The body
 * deadline runs from that call to the end of the body. So a client that
 * keeps sending bytes has at most about twice request_timeout per request.
 *
 * NOTE: a body without Content-Length (chunked) that goes over the limit is
 * still read to its end, discarding the bytes, before the 413 is sent.
 *
 * NOTE: libmicrohttpd 0.9.75 replies to some malformed requests itself, before
 * the access handler runs, with fixed HTML bodies it has no option to
 * replace: a bad request line or header (400), a request line or headers
 * larger than the connection memory (414, 431) and a chunk size too large
 * (413).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "text.h"
#include "util.h"
#include "workers.h"

/*
 * Memory libmicrohttpd gives each connection for the request line, the
 * headers and its read buffer: at most 4 MiB for all 256 connections. A
 * request line or headers over about 15 KiB get 414 or 431; close to the
 * limit, libmicrohttpd 0.9.75 closes the connection without a reply.
 */
#define CONNECTION_MEMORY_BYTES (16 * 1024)
/* The largest declared body of a route that ignores its body (admin, health, metrics). */
#define UNREAD_BODY_MAX_BYTES (64 * 1024)

/* Nice value of connection threads: about a tenth of an inference thread's CPU share under contention. */
#define CONNECTION_NICE 10

enum route {
    ROUTE_UNKNOWN,
    ROUTE_DETECT,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_DEEPSTACK_DETECT,
    ROUTE_DEEPSTACK_CUSTOM,  /* /v1/vision/custom/NAME: the same, with model NAME */
    ROUTE_KSERVE_LIVE,
    ROUTE_KSERVE_READY,
    ROUTE_KSERVE_MODEL_READY,
    ROUTE_METRICS,
    ROUTE_MODELS,
    ROUTE_MODEL,
    ROUTE_MODEL_RELOAD,
    ROUTE_MODEL_LOAD,
    ROUTE_MODEL_UNLOAD,
    ROUTE_MODEL_DEFAULT,
};

/* /v1/models/{name} with a non-empty name without '/'. */
static bool is_model_path(const char *path)
{
    static const char prefix[] = "/v1/models/";

    return strncmp(path, prefix, strlen(prefix)) == 0 && path[strlen(prefix)] != '\0' &&
           strchr(path + strlen(prefix), '/') == NULL;
}

/* /v1/models/{name}{suffix} with a non-empty name without '/'; suffix is "/ACTION". */
static bool is_model_action_path(const char *path, const char *suffix)
{
    static const char prefix[] = "/v1/models/";
    size_t length = strlen(path);
    const char *name = path + strlen(prefix);

    return length > strlen(prefix) + strlen(suffix) &&
           strncmp(path, prefix, strlen(prefix)) == 0 &&
           strcmp(path + length - strlen(suffix), suffix) == 0 &&
           strchr(name, '/') == path + length - strlen(suffix);
}

/* /v2/models/{name}/ready with a non-empty name. */
static bool is_kserve_model_ready(const char *path)
{
    static const char prefix[] = "/v2/models/", suffix[] = "/ready";
    size_t length = strlen(path);

    return length > strlen(prefix) + strlen(suffix) &&
           strncmp(path, prefix, strlen(prefix)) == 0 &&
           strcmp(path + length - strlen(suffix), suffix) == 0;
}

/*
 * The NAME of /v1/vision/custom/NAME, or NULL for another path. Any rest of
 * the path is the name, so an empty one or one with a slash gets DeepStack's
 * 404 for an unknown model.
 */
static const char *deepstack_custom_model(const char *path)
{
    static const char prefix[] = "/v1/vision/custom/";

    if (strncmp(path, prefix, strlen(prefix)) != 0)
        return NULL;
    return path + strlen(prefix);
}

/* Whether the route replies in DeepStack's shapes. */
static bool is_deepstack(enum route route)
{
    return route == ROUTE_DEEPSTACK_DETECT || route == ROUTE_DEEPSTACK_CUSTOM;
}

static enum route find_route(const char *path, const char **allow)
{
    if (strcmp(path, "/v1/detect") == 0) {
        *allow = "POST";
        return ROUTE_DETECT;
    }
    if (strcmp(path, "/healthz") == 0) {
        *allow = "GET, HEAD";
        return ROUTE_HEALTHZ;
    }
    if (strcmp(path, "/readyz") == 0) {
        *allow = "GET, HEAD";
        return ROUTE_READYZ;
    }
    if (strcmp(path, "/v1/vision/detection") == 0) {
        *allow = "POST";
        return ROUTE_DEEPSTACK_DETECT;
    }
    if (deepstack_custom_model(path)) {
        *allow = "POST";
        return ROUTE_DEEPSTACK_CUSTOM;
    }
    if (strcmp(path, "/v2/health/live") == 0) {
        *allow = "GET, HEAD";
        return ROUTE_KSERVE_LIVE;
    }
    if (strcmp(path, "/v2/health/ready") == 0) {
        *allow = "GET, HEAD";
        return ROUTE_KSERVE_READY;
    }
    if (is_kserve_model_ready(path)) {
        *allow = "GET, HEAD";
        return ROUTE_KSERVE_MODEL_READY;
    }
    if (strcmp(path, "/metrics") == 0) {
        *allow = "GET, HEAD";
        return ROUTE_METRICS;
    }
    if (strcmp(path, "/v1/models") == 0) {
        *allow = "GET, HEAD";
        return ROUTE_MODELS;
    }
    if (is_model_path(path)) {
        *allow = "GET, HEAD";
        return ROUTE_MODEL;
    }
    *allow = "POST";
    if (is_model_action_path(path, "/reload"))
        return ROUTE_MODEL_RELOAD;
    if (is_model_action_path(path, "/load"))
        return ROUTE_MODEL_LOAD;
    if (is_model_action_path(path, "/unload"))
        return ROUTE_MODEL_UNLOAD;
    if (is_model_action_path(path, "/default"))
        return ROUTE_MODEL_DEFAULT;
    *allow = NULL;
    return ROUTE_UNKNOWN;
}

/*
 * Returns the route label of yolod_http_requests_total: the pattern, never
 * the path, so a model name in the path adds no label value. The switch has
 * no default, so -Wswitch flags a new route without a pattern.
 */
static const char *route_pattern(enum route route)
{
    switch (route) {
    case ROUTE_UNKNOWN:
        return METRICS_ROUTE_OTHER;
    case ROUTE_DETECT:
        return "/v1/detect";
    case ROUTE_HEALTHZ:
        return "/healthz";
    case ROUTE_READYZ:
        return "/readyz";
    case ROUTE_DEEPSTACK_DETECT:
        return "/v1/vision/detection";
    case ROUTE_DEEPSTACK_CUSTOM:
        return "/v1/vision/custom/{name}";
    case ROUTE_KSERVE_LIVE:
        return "/v2/health/live";
    case ROUTE_KSERVE_READY:
        return "/v2/health/ready";
    case ROUTE_KSERVE_MODEL_READY:
        return "/v2/models/{name}/ready";
    case ROUTE_METRICS:
        return "/metrics";
    case ROUTE_MODELS:
        return "/v1/models";
    case ROUTE_MODEL:
        return "/v1/models/{name}";
    case ROUTE_MODEL_RELOAD:
        return "/v1/models/{name}/reload";
    case ROUTE_MODEL_LOAD:
        return "/v1/models/{name}/load";
    case ROUTE_MODEL_UNLOAD:
        return "/v1/models/{name}/unload";
    case ROUTE_MODEL_DEFAULT:
        return "/v1/models/{name}/default";
    }
    return METRICS_ROUTE_OTHER;
}

/* Compares method with each entry of allow ("GET, HEAD"), exactly and case-sensitively. */
static bool method_allowed(const char *method, const char *allow)
{
    size_t length = strlen(method);
    const char *entry = allow;

    while (*entry) {
        size_t entry_length = strcspn(entry, ",");

        if (entry_length == length && strncmp(entry, method, length) == 0)
            return true;
        entry += entry_length;
        while (*entry == ',' || *entry == ' ')
            entry++;
    }
    return false;
}

/*
 * Generated request ids are splitmix64(request_id_seed + counter): the
 * function is a bijection on 64-bit values, so the ids of one process are
 * unique, and the random seed makes them differ between restarts.
 */
static uint64_t request_id_seed;
static atomic_uint_fast64_t request_id_counter;

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void seed_request_ids(void)
{
    struct timespec now;

    if (getrandom(&request_id_seed, sizeof request_id_seed, GRND_NONBLOCK) == sizeof request_id_seed)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    request_id_seed = ((uint64_t)now.tv_sec << 32) ^ (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 16);
}

/*
 * Sets request->id from the X-Request-Id header when it is 1 to
 * REQUEST_ID_MAX printable ASCII characters (space to '~'), so it cannot
 * break the log line or the reply header. Any other value is replaced as a
 * whole by a generated id of 16 hex digits, never truncated or edited, so
 * an id the client sees back is either its own or a new one.
 */
static void set_request_id(struct request *request, struct MHD_Connection *connection)
{
    const char *given = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Request-Id");
    size_t length = given ? strlen(given) : 0;
    bool valid = length > 0 && length <= REQUEST_ID_MAX;

    for (size_t i = 0; valid && i < length; i++)
        if (given[i] < 0x20 || given[i] > 0x7e)
            valid = false;
    if (valid) {
        memcpy(request->id, given, length + 1);
        return;
    }
    snprintf(request->id, sizeof request->id, "%016llx",
             (unsigned long long)splitmix64(request_id_seed + atomic_fetch_add(&request_id_counter, 1)));
}

void server_add_common_headers(struct MHD_Response *response, const struct request *request)
{
    MHD_add_response_header(response, "X-Request-Id", request->id);
    /* Keep-alive clients reconnect, and reach another replica. */
    if (atomic_load(&request->server->stopping))
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
}

static enum MHD_Result queue_response(struct MHD_Connection *connection,
                                      struct request *request, unsigned int status,
                                      char *text, const char *header,
                                      const char *header_value)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}\n";
    struct MHD_Response *response;
    enum MHD_Result result;
    size_t length;

    if (!text) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        length = sizeof fallback - 1;
        response = MHD_create_response_from_buffer(length, (void *)fallback,
                                                   MHD_RESPMEM_PERSISTENT);
    } else {
        /* End the body with a newline, so a shell prompt after curl starts
         * on its own line. */
        char *terminated = realloc(text, strlen(text) + 2);

        if (!terminated) {
            free(text);
            return MHD_NO;
        }
        text = terminated;
        strcat(text, "\n");
        length = strlen(text);
        response = MHD_create_response_from_buffer(length, text, MHD_RESPMEM_MUST_FREE);
    }
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    server_add_common_headers(response, request);
    if (header)
        MHD_add_response_header(response, header, header_value);

    result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    if (result == MHD_YES) {
        request->status = status;
        request->response_bytes = length;
        request->responded = true;
    }
    return result;
}

enum MHD_Result server_reply_json(struct MHD_Connection *connection,
                                  struct request *request, unsigned int status,
                                  cJSON *root)
{
    return queue_response(connection, request, status, json_print_and_free(root), NULL, NULL);
}

enum MHD_Result server_reply_json_with_header(struct MHD_Connection *connection,
                                              struct request *request, unsigned int status,
                                              cJSON *root, const char *header,
                                              const char *header_value)
{
    return queue_response(connection, request, status, json_print_and_free(root), header,
                          header_value);
}

static enum MHD_Result reply_error_v(struct MHD_Connection *connection,
                                     struct request *request, unsigned int status,
                                     const char *header, const char *header_value,
                                     const char *code, const char *fmt, va_list ap)
{
    char message[1024];
    char *text;

    /* Messages may echo client bytes and may be cut; cJSON does not check UTF-8. */
    vsnprintf(message, sizeof message, fmt, ap);
    text_make_valid(message);
    /* A 503 (full queue, no model, stopping) is load, not a fault: the access
     * log and the metrics count it, and an error line each would flood. */
    if (status >= 500 && status != MHD_HTTP_SERVICE_UNAVAILABLE)
        log_printf(YD_LOG_ERROR, "%s %s: %s", request->method, request->path, message);
    else
        log_printf(YD_LOG_DEBUG, "%s %s: %u %s", request->method, request->path, status, message);
    text = json_print_and_free(json_error(code, message));
    return queue_response(connection, request, status, text, header, header_value);
}

enum MHD_Result server_reply_error(struct MHD_Connection *connection,
                                   struct request *request, unsigned int status,
                                   const char *code, const char *fmt, ...)
{
    enum MHD_Result result;
    va_list ap;

    va_start(ap, fmt);
    result = reply_error_v(connection, request, status, NULL, NULL, code, fmt, ap);
    va_end(ap);
    return result;
}

enum MHD_Result server_reply_error_with_header(struct MHD_Connection *connection,
                                               struct request *request, unsigned int status,
                                               const char *header, const char *header_value,
                                               const char *code, const char *fmt, ...)
{
    enum MHD_Result result;
    va_list ap;

    va_start(ap, fmt);
    result = reply_error_v(connection, request, status, header, header_value, code, fmt, ap);
    va_end(ap);
    return result;
}

void server_free_body(struct request *request)
{
    atomic_fetch_sub(&request->server->buffered_bytes, request->body_capacity);
    free(request->body);
    request->body = NULL;
    request->body_size = request->body_capacity = 0;
}

void server_append_body(struct request *request, const char *data, size_t size)
{
    struct server *server = request->server;
    size_t limit = server->config->max_body_bytes;
    size_t needed;

    if (request->body_too_large || request->body_over_budget || request->body_no_memory)
        return;
    if (size > limit - request->body_size) {
        request->body_too_large = true;
        server_free_body(request);
        return;
    }

    needed = request->body_size + size;
    if (needed > request->body_capacity) {
        size_t capacity = request->body_capacity ? request->body_capacity : 64 * 1024;
        size_t growth;
        uint8_t *grown;

        while (capacity < needed)
            capacity *= 2;
        if (capacity > limit)
            capacity = limit;
        /* The body ends at its Content-Length, so the buffer never needs
         * more: max_buffered_bytes is charged that, not the next power of 2. */
        if (request->declared_length >= needed && capacity > request->declared_length)
            capacity = request->declared_length;
        growth = capacity - request->body_capacity;
        if (atomic_fetch_add(&server->buffered_bytes, growth) + growth >
            server->config->max_buffered_bytes) {
            atomic_fetch_sub(&server->buffered_bytes, growth);
            request->body_over_budget = true;
            server_free_body(request);
            return;
        }
        grown = realloc(request->body, capacity);
        if (!grown) {
            atomic_fetch_sub(&server->buffered_bytes, growth);
            request->body_no_memory = true;
            return;
        }
        request->body = grown;
        request->body_capacity = capacity;
    }
    memcpy(request->body + request->body_size, data, size);
    request->body_size = needed;
}

struct header_count {
    const char *name;
    int count;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct header_count *counter = cls;

    if (key && strcasecmp(key, counter->name) == 0)
        counter->count++;
    return MHD_YES;
}

static int count_headers(struct MHD_Connection *connection, const char *name)
{
    struct header_count counter = { name, 0 };

    MHD_get_connection_values(connection, MHD_HEADER_KIND, count_header, &counter);
    return counter.count;
}

/*
 * Queues an error in the shape of the route's API: DeepStack's for
 * /v1/vision/detection, the native one otherwise.
 */
static enum MHD_Result reply_route_error(struct MHD_Connection *connection,
                                         struct request *request, enum route route,
                                         unsigned int status, const char *code,
                                         const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (is_deepstack(route))
        return api_deepstack_reply_error(connection, request, status, NULL, code, message);
    return server_reply_error(connection, request, status, code, "%s", message);
}

/*
 * Returns true for "chunked" in any case. RFC 9110 (section 5.5) excludes
 * trailing whitespace from a field value, but libmicrohttpd keeps it and
 * then cannot frame the body, so "chunked " is not accepted either.
 */
static bool is_chunked(const char *coding)
{
    return strcasecmp(coding, "chunked") == 0;
}

/*
 * Rejects framing that a proxy in front of the server may read differently
 * from libmicrohttpd (request smuggling): Content-Length given more than
 * once, or together with Transfer-Encoding. A transfer coding other than
 * chunked gets 501 (RFC 9112, section 6.1): libmicrohttpd would wait for
 * a body it cannot frame until the request timeout.
 */
static bool reject_framing(struct MHD_Connection *connection, struct request *request,
                           enum route route, enum MHD_Result *result)
{
    int lengths = count_headers(connection, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int encodings = count_headers(connection, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *coding;

    if (lengths > 1) {
        *result = reply_route_error(connection, request, route, MHD_HTTP_BAD_REQUEST, "bad_request",
                                    "request has %d Content-Length headers; send one", lengths);
        return true;
    }
    if (lengths == 1 && encodings > 0) {
        *result = reply_route_error(connection, request, route, MHD_HTTP_BAD_REQUEST, "bad_request",
                                    "request has both Content-Length and Transfer-Encoding; send one");
        return true;
    }
    if (encodings > 1) {
        *result = reply_route_error(connection, request, route, MHD_HTTP_BAD_REQUEST, "bad_request",
                                    "request has %d Transfer-Encoding headers; send one", encodings);
        return true;
    }
    coding = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (coding && !is_chunked(coding)) {
        char quoted[TEXT_QUOTE_SIZE];

        *result = reply_route_error(connection, request, route, MHD_HTTP_NOT_IMPLEMENTED,
                                    "not_implemented",
                                    "Transfer-Encoding '%s' is not supported; send chunked or a "
                                    "Content-Length",
                                    text_quote(quoted, sizeof quoted, coding ? coding : "",
                                               TEXT_QUOTE_MAX_CHARS));
        return true;
    }
    return false;
}

/*
 * Replies 413 to a request to a route that reads no body (every route but
 * the detection ones) whose Content-Length exceeds UNREAD_BODY_MAX_BYTES,
 * before the body is sent, and sets *result to MHD_YES otherwise. A chunked
 * body is dropped as it arrives, within request_timeout.
 */
static void reject_unread_body(struct MHD_Connection *connection, struct request *request,
                               enum route route, const char *quoted_path, enum MHD_Result *result)
{
    const char *length_text = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared;

    *result = MHD_YES;
    if (!length_text)
        return;
    errno = 0;
    declared = strtoull(length_text, NULL, 10);
    if (errno == ERANGE || declared > UNREAD_BODY_MAX_BYTES)
        *result = reply_route_error(connection, request, route, MHD_HTTP_CONTENT_TOO_LARGE,
                                    "body_too_large",
                                    "request body of %s bytes exceeds the %d-byte limit of %s,"
                                    " which reads no body; send none", length_text,
                                    UNREAD_BODY_MAX_BYTES, quoted_path);
}

/*
 * Stores in *cls the first Expect header value with a member other than
 * 100-continue, and skips empty list members. The comparison ignores case
 * because RFC 9110 (section 10.1.1) makes the Expect value case-insensitive.
 */
static enum MHD_Result find_unsupported_expectation(void *cls, enum MHD_ValueKind kind,
                                                    const char *key, const char *value)
{
    static const char continue_member[] = "100-continue";
    const char **unsupported = cls;
    const char *member = value;

    if (!key || !value || strcasecmp(key, MHD_HTTP_HEADER_EXPECT) != 0)
        return MHD_YES;
    while (*member) {
        size_t length, trimmed;

        member += strspn(member, " \t,");
        length = strcspn(member, ",");
        trimmed = length;
        while (trimmed > 0 && (member[trimmed - 1] == ' ' || member[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed > 0 && !(trimmed == sizeof continue_member - 1 &&
                             strncasecmp(member, continue_member, trimmed) == 0)) {
            *unsupported = value;
            return MHD_NO;
        }
        member += length;
    }
    return MHD_YES;
}

/*
 * Rejects an expectation other than 100-continue with 417, which RFC 9110
 * (section 10.1.1) allows. libmicrohttpd 0.9.75 ignores such an
 * expectation and would process the request as if it were not there.
 */
static bool reject_expectation(struct MHD_Connection *connection, struct request *request,
                               enum route route, enum MHD_Result *result)
{
    const char *unsupported = NULL;
    char quoted[TEXT_QUOTE_SIZE];

    MHD_get_connection_values(connection, MHD_HEADER_KIND, find_unsupported_expectation,
                              &unsupported);
    if (!unsupported)
        return false;
    *result = reply_route_error(connection, request, route, MHD_HTTP_EXPECTATION_FAILED,
                                "expectation_failed",
                                "Expect '%s' is not supported; send no Expect header or"
                                " 'Expect: 100-continue'",
                                text_quote(quoted, sizeof quoted, unsupported,
                                           TEXT_QUOTE_MAX_CHARS));
    return true;
}

/*
 * Handles the first call: routing, method, expectations, framing, declared
 * size, body setup and the query parameters of the detection routes.
 */
static enum MHD_Result begin_request(struct MHD_Connection *connection,
                                     struct request *request)
{
    const struct config *config = request->server->config;
    const char *allow;
    const char *length_text;
    enum route route = find_route(request->path, &allow);
    char path[TEXT_QUOTE_SIZE], method[TEXT_QUOTE_SIZE];
    enum MHD_Result result;

    text_quote(path, sizeof path, request->path, TEXT_QUOTE_MAX_CHARS);
    text_quote(method, sizeof method, request->method, TEXT_QUOTE_MAX_CHARS);
    if (route == ROUTE_UNKNOWN)
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "not_found",
                                  "no route for %s %s (routes: /v1/detect, /v1/vision/detection, /v1/vision/custom/NAME,"
                                  " /v1/models*,"
                                  " /healthz, /readyz, /metrics, /v2/*)",
                                  method, path);
    if (!method_allowed(request->method, allow) && is_deepstack(route)) {
        char message[3 * TEXT_QUOTE_SIZE];

        snprintf(message, sizeof message, "method %s is not allowed on %s (allowed: %s)", method,
                 path, allow);
        return api_deepstack_reply_error_with_header(connection, request,
                                                     MHD_HTTP_METHOD_NOT_ALLOWED,
                                                     MHD_HTTP_HEADER_ALLOW, allow,
                                                     "method_not_allowed", message);
    }
    if (!method_allowed(request->method, allow))
        return server_reply_error_with_header(connection, request, MHD_HTTP_METHOD_NOT_ALLOWED,
                                              MHD_HTTP_HEADER_ALLOW, allow, "method_not_allowed",
                                              "method %s is not allowed on %s (allowed: %s)",
                                              method, path, allow);
    if (reject_expectation(connection, request, route, &result))
        return result;
    if (reject_framing(connection, request, route, &result))
        return result;
    if (route != ROUTE_DETECT && !is_deepstack(route)) {
        reject_unread_body(connection, request, route, path, &result);
        return result;
    }
    request->keeps_body = true;
    request->path_model = deepstack_custom_model(request->path);
    request->ignored_field = route == ROUTE_DETECT ? FIELD_MIN_CONFIDENCE : FIELD_CONF;

    length_text = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length_text) {
        char *end;
        unsigned long long declared;

        errno = 0;
        declared = strtoull(length_text, &end, 10);
        if (errno == ERANGE || declared > config->max_body_bytes)
            return reply_route_error(connection, request, route, MHD_HTTP_CONTENT_TOO_LARGE,
                                     "body_too_large",
                                     "request body of %s bytes exceeds the limit of %zu bytes (max_body_bytes)",
                                     length_text, config->max_body_bytes);
        request->declared_length = (size_t)declared;
    }

    if (multipart_begin(request, connection) != 0)
        return reply_route_error(connection, request, route, MHD_HTTP_BAD_REQUEST, "bad_request",
                                 "invalid multipart/form-data request: missing or invalid boundary");

    /* A reply queued now goes out instead of 100 Continue, so a client that
     * sent Expect: 100-continue does not upload a body that would be
     * rejected. While the models load, finish_request replies 503. */
    if (atomic_load(&request->server->ready) &&
        api_detect_reject_query(connection, request,
                                route == ROUTE_DETECT ? &api_detect_format : &api_deepstack_format,
                                &result))
        return result;
    return MHD_YES;
}

static enum MHD_Result finish_request(struct MHD_Connection *connection,
                                      struct request *request)
{
    const char *allow;
    enum route route = find_route(request->path, &allow);

    /* The port opens before the startup models load, for health checks;
     * detections and model changes wait until they are loaded. */
    if (!atomic_load(&request->server->ready) && !atomic_load(&request->server->stopping) &&
        (route == ROUTE_DETECT || is_deepstack(route) || route == ROUTE_MODEL_RELOAD ||
         route == ROUTE_MODEL_LOAD || route == ROUTE_MODEL_UNLOAD || route == ROUTE_MODEL_DEFAULT)) {
        if (is_deepstack(route))
            return api_deepstack_reply_error(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE, "1",
                                             "starting", "the server is loading its models; retry");
        return server_reply_error_with_header(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE,
                                              MHD_HTTP_HEADER_RETRY_AFTER, "1", "starting",
                                              "the server is loading its models; retry");
    }
    /* The registry is about to go: no model change starts during the drain. */
    if (atomic_load(&request->server->stopping) &&
        (route == ROUTE_MODEL_RELOAD || route == ROUTE_MODEL_LOAD || route == ROUTE_MODEL_UNLOAD ||
         route == ROUTE_MODEL_DEFAULT))
        return server_reply_error_with_header(connection, request, MHD_HTTP_SERVICE_UNAVAILABLE,
                                              MHD_HTTP_HEADER_RETRY_AFTER, "1", "shutting_down",
                                              "the server is shutting down");

    switch (route) {
    case ROUTE_DETECT:
        return api_detect(connection, request);
    case ROUTE_HEALTHZ:
        return api_health_live(connection, request);
    case ROUTE_READYZ:
        return api_health_ready(connection, request);
    case ROUTE_DEEPSTACK_DETECT:
    case ROUTE_DEEPSTACK_CUSTOM:
        return api_deepstack_detect(connection, request);
    case ROUTE_KSERVE_LIVE:
        return api_kserve_live(connection, request);
    case ROUTE_KSERVE_READY:
        return api_kserve_ready(connection, request);
    case ROUTE_KSERVE_MODEL_READY:
        return api_kserve_model_ready(connection, request);
    case ROUTE_METRICS:
        return api_metrics(connection, request);
    case ROUTE_MODELS:
        return api_models_list(connection, request);
    case ROUTE_MODEL:
        return api_models_get(connection, request);
    case ROUTE_MODEL_RELOAD:
        return api_models_reload(connection, request);
    case ROUTE_MODEL_LOAD:
        return api_models_load(connection, request);
    case ROUTE_MODEL_UNLOAD:
        return api_models_unload(connection, request);
    case ROUTE_MODEL_DEFAULT:
        return api_models_set_default(connection, request);
    default:
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "not_found",
                                  "no route for this path");
    }
}

/*
 * Closes the connection of a request whose body is still arriving
 * request_timeout seconds after its headers, so a client that sends a byte
 * now and then cannot hold a connection thread forever (the idle timeout
 * never fires for it). libmicrohttpd 0.9.75 accepts no response while a
 * body is being received, so no 408 can be sent. Returning MHD_NO closes the
 * connection, and libmicrohttpd logs that as an application error.
 */
static enum MHD_Result close_slow_body(struct request *request)
{
    log_printf(YD_LOG_WARN, "%s %s: body not complete %d s after the headers (request_timeout);"
               " closing the connection", request->method, request->path,
               request->server->config->request_timeout_s);
    return MHD_NO;
}

/*
 * Lowers the calling connection thread's priority once. Decoding an upload
 * on a connection thread at the same priority as the inference threads
 * preempts one of them, and every other OpenMP thread then waits at the
 * next barrier. At a lower priority the decode fills the gaps instead.
 * Raising it back would need CAP_SYS_NICE, so the thread keeps it.
 */
static void lower_connection_priority(void)
{
    static _Thread_local bool lowered;

    if (lowered)
        return;
    lowered = true;
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), CONNECTION_NICE) != 0)
        log_printf(YD_LOG_DEBUG, "cannot lower a connection thread's priority: %s", strerror(errno));
}

static enum MHD_Result handle_access(void *cls, struct MHD_Connection *connection,
                                     const char *url, const char *method,
                                     const char *version, const char *upload_data,
                                     size_t *upload_data_size, void **con_cls)
{
    struct request *request = *con_cls;

    if (!request) {
        header_deadlines_headers_complete(((struct server *)cls)->header_deadlines, connection);
        lower_connection_priority();
        request = calloc(1, sizeof *request);
        if (!request)
            return MHD_NO;
        request->server = cls;
        request->start_ms = yd_now_ms();
        /* libmicrohttpd 0.9.75 never passes NULL here; the checks cost nothing. */
        snprintf(request->method, sizeof request->method, "%s", method ? method : "");
        request->path = strdup(url ? url : "");
        request->before_stop = !atomic_load(&request->server->stopping);
        *con_cls = request;
        atomic_fetch_add(&request->server->active_requests, 1);
        set_request_id(request, connection);
        if (!request->path)
            return MHD_NO;
        return begin_request(connection, request);
    }

    if (request->responded) {
        /* Rejected from the headers, so whatever body still arrives is dropped. */
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        if (yd_now_ms() - request->start_ms > 1000.0 * request->server->config->request_timeout_s)
            return close_slow_body(request);
        if (request->multipart) {
            if (multipart_feed(request, upload_data, *upload_data_size) != 0)
                request->multipart_invalid = true;
        } else if (request->keeps_body) {
            server_append_body(request, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (request->multipart)
        multipart_finish(request);
    return finish_request(connection, request);
}

static void handle_completed(void *cls, struct MHD_Connection *connection,
                             void **con_cls, enum MHD_RequestTerminationCode code)
{
    struct request *request = *con_cls;
    /* Quoted values double at most, and a logged path may be cut. */
    char path[1024], id[2 * REQUEST_ID_MAX + 3];
    const char *allow;
    struct server *server = cls;

    header_deadlines_request_finished(server->header_deadlines, connection);
    if (!request)
        return;
    text_log_field(path, sizeof path, request->path);
    text_log_field(id, sizeof id, request->id);
    /* A response queued but cut off (the drain deadline, a client gone) is
     * an abort, not a reply the client got. */
    if (request->responded && code == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        metrics_observe_request(route_pattern(find_route(request->path, &allow)),
                                request->status, (yd_now_ms() - request->start_ms) / 1000.0);
        log_printf(YD_LOG_INFO, "%s %s %u %zu bytes %.1f ms request_id=%s", request->method,
                   path, request->status, request->response_bytes,
                   yd_now_ms() - request->start_ms, id);
    } else {
        log_printf(YD_LOG_INFO, "%s %s aborted (termination code %d) %.1f ms request_id=%s",
                   request->method, path, (int)code, yd_now_ms() - request->start_ms, id);
    }

    multipart_end(request);
    for (int i = 0; i < FIELD_COUNT; i++)
        free(request->fields[i]);
    server_free_body(request);
    free(request->path);
    atomic_fetch_sub(&request->server->active_requests, 1);
    free(request);
    *con_cls = NULL;
}

/*
 * Logs libmicrohttpd's messages as warnings. Connections it rejects at a
 * connection limit are counted in yolod_http_connections_rejected_total and
 * logged on one line a second at most, so a connection flood cannot fill the
 * log (test-hostile-http.sh checks). The line for the last rejections of a
 * burst waits for the next rejection, so only the metric is always current.
 * A connection closed before its request was complete is logged at debug:
 * the client closed it, or the header deadline did, which logs its own line.
 */
static void log_mhd_message(void *cls, const char *fmt, va_list ap)
{
    static const char limit_message[] = "Server reached connection limit";
    static const char closed_message[] = "Connection socket is closed when reading request";
    static atomic_llong last_rejection_ms;
    static atomic_long rejections;
    char message[1024];
    size_t length;

    (void)cls;
    vsnprintf(message, sizeof message, fmt, ap);
    length = strlen(message);
    while (length > 0 && message[length - 1] == '\n')
        message[--length] = '\0';
    if (strncmp(message, limit_message, sizeof limit_message - 1) == 0) {
        long long now = (long long)yd_now_ms(), last = atomic_load(&last_rejection_ms);
        long count = atomic_fetch_add(&rejections, 1) + 1;

        metrics_count_rejected_connection();
        if (now - last < 1000 || !atomic_compare_exchange_strong(&last_rejection_ms, &last, now))
            return;
        atomic_fetch_sub(&rejections, count);
        log_printf(YD_LOG_WARN, "libmicrohttpd rejected %ld connection%s at a connection limit "
                   "(max_connections_per_ip, or %d connections in all) since the last such line",
                   count, count == 1 ? "" : "s", CONFIG_MAX_CONNECTIONS);
        return;
    }
    if (strncmp(message, closed_message, sizeof closed_message - 1) == 0) {
        log_printf(YD_LOG_DEBUG, "libmicrohttpd: %s", message);
        return;
    }
    log_printf(YD_LOG_WARN, "libmicrohttpd: %s", message);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes %HH in the path and query arguments as libmicrohttpd's default
 * does, except %00, which is kept as the three characters. A decoded NUL
 * would cut the C string silently ("/healthz%00abc" would route to
 * /healthz, "conf=0.5%00x" would read as 0.5); kept as text, it fails
 * routing or validation with the value visible in the message.
 */
static size_t unescape_keeping_nul(void *cls, struct MHD_Connection *connection, char *text)
{
    const char *read = text;
    char *write = text;

    while (*read) {
        if (read[0] == '%' && hex_value(read[1]) >= 0 && hex_value(read[2]) >= 0) {
            int value = hex_value(read[1]) * 16 + hex_value(read[2]);

            if (value != 0) {
                *write++ = (char)value;
                read += 3;
                continue;
            }
        }
        *write++ = *read++;
    }
    *write = '\0';
    return (size_t)(write - text);
}

/*
 * Creates and binds the socket here, so a bind failure names its cause.
 * Listening starts in server_start(), so clients are refused, not queued,
 * while the models load.
 */
static int bind_socket(const char *listen_text)
{
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char err[512];
    int fd, one = 1;

    if (config_resolve_listen(listen_text, &addr, &addr_len, err, sizeof err) != 0) {
        log_printf(YD_LOG_ERROR, "%s", err);
        return -1;
    }
    fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_printf(YD_LOG_ERROR, "cannot create a socket for %s: %s", listen_text, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, addr_len) != 0) {
        int bind_errno = errno;

        log_printf(YD_LOG_ERROR, "cannot listen on %s: %s%s", listen_text, strerror(bind_errno),
                   bind_errno == EADDRINUSE ? "; stop the server that uses it, or choose another"
                                              " address with --listen or listen in the config"
                                            : "");
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes the socket's local address as text: 127.0.0.1:8080 or [::1]:8080. */
static void format_bound(int fd, char *out, size_t size)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;

    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        snprintf(out, size, "unknown");
    else
        text_format_address((const struct sockaddr *)&addr, true, out, size);
}

int server_bind(struct server *server)
{
    server->listen_fd = bind_socket(server->config->listen);
    if (server->listen_fd < 0)
        return -1;
    format_bound(server->listen_fd, server->bound, sizeof server->bound);
    return 0;
}

int server_start(struct server *server)
{
    const struct config *config = server->config;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;

    seed_request_ids();
    if (listen(server->listen_fd, 128) != 0) {
        log_printf(YD_LOG_ERROR, "cannot listen on %s: %s", config->listen, strerror(errno));
        return -1;
    }

    server->header_deadlines = header_deadlines_start(config->request_timeout_s);
    if (!server->header_deadlines) {
        close(server->listen_fd);
        server->listen_fd = -1;
        return -1;
    }
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle_access, server,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd_message, server,
        MHD_OPTION_LISTEN_SOCKET, server->listen_fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)config->request_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONFIG_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)config->max_connections_per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY_BYTES,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_keeping_nul, server,
        MHD_OPTION_NOTIFY_COMPLETED, handle_completed, server,
        MHD_OPTION_NOTIFY_CONNECTION, header_deadlines_notify, server->header_deadlines,
        MHD_OPTION_END);
    if (!server->daemon) {
        log_printf(YD_LOG_ERROR, "cannot start the HTTP server on %s", config->listen);
        header_deadlines_stop(server->header_deadlines);
        server->header_deadlines = NULL;
        close(server->listen_fd);
        server->listen_fd = -1;
        return -1;
    }
    return 0;
}

void server_begin_stop(struct server *server)
{
    if (!server->daemon || atomic_load(&server->stopping))
        return;
    /* Detections whose headers arrive from here on get 503; those already
     * receiving a body are served. After the quiesce libmicrohttpd
     * no longer uses the listen socket, which is ours: closing it makes
     * new connections fail at once instead of waiting in the backlog. */
    atomic_store(&server->stopping, true);
    MHD_quiesce_daemon(server->daemon);
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
        server->listen_fd = -1;
    }
}

void server_stop(struct server *server)
{
    if (server->daemon) {
        double deadline = yd_now_ms() + 1000.0 * server->config->request_timeout_s;

        server_begin_stop(server);
        while (atomic_load(&server->active_requests) > 0 && yd_now_ms() < deadline)
            usleep(10 * 1000);
        /* Requests still queued or waiting for a decode slot would only be
         * cut off: they get 503 shutting_down, with a second to send it. */
        if (atomic_load(&server->active_requests) > 0) {
            pthread_mutex_lock(&server->decode_lock);
            server->decode_abandoned = true;
            pthread_cond_broadcast(&server->decode_free);
            pthread_mutex_unlock(&server->decode_lock);
            worker_pool_cancel_queued(atomic_load(&server->pool));
            deadline = yd_now_ms() + 1000.0;
            while (atomic_load(&server->active_requests) > 0 && yd_now_ms() < deadline)
                usleep(10 * 1000);
        }
        if (atomic_load(&server->active_requests) > 0)
            log_printf(YD_LOG_WARN, "closing %d requests still in progress after %d s",
                       atomic_load(&server->active_requests), server->config->request_timeout_s);
        MHD_stop_daemon(server->daemon);
        server->daemon = NULL;
        header_deadlines_stop(server->header_deadlines);
        server->header_deadlines = NULL;
    }
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
        server->listen_fd = -1;
    }
}
