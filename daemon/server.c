/*
 * libmicrohttpd setup and request dispatch.
 *
 * The access handler is called once when the headers are in, once per chunk
 * of body and once more when the body is complete. Requests rejected from
 * the headers alone (unknown route, wrong method, a Content-Length over the
 * limit) get their reply on the first call, so the body is never read, and
 * libmicrohttpd then closes the connection.
 *
 * NOTE: a body without Content-Length (chunked) that goes over the limit is
 * still read to its end, discarding the bytes, before the 413 is sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "server.h"
#include "util.h"

#define MAX_CONNECTIONS 256

enum route {
    ROUTE_UNKNOWN,
    ROUTE_DETECT,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
};

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
    *allow = NULL;
    return ROUTE_UNKNOWN;
}

static bool method_allowed(const char *method, const char *allow)
{
    size_t length = strlen(method);
    const char *found = strstr(allow, method);

    return found && (found[length] == '\0' || found[length] == ',');
}

static enum MHD_Result queue_response(struct MHD_Connection *connection,
                                      struct request *request, unsigned int status,
                                      char *text, const char *header,
                                      const char *header_value)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
    struct MHD_Response *response;
    enum MHD_Result result;
    size_t length;

    if (!text) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        length = sizeof fallback - 1;
        response = MHD_create_response_from_buffer(length, (void *)fallback,
                                                   MHD_RESPMEM_PERSISTENT);
    } else {
        length = strlen(text);
        response = MHD_create_response_from_buffer(length, text, MHD_RESPMEM_MUST_FREE);
    }
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
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

static enum MHD_Result reply_error_v(struct MHD_Connection *connection,
                                     struct request *request, unsigned int status,
                                     const char *header, const char *header_value,
                                     const char *code, const char *fmt, va_list ap)
{
    char message[1024];
    char *text;

    vsnprintf(message, sizeof message, fmt, ap);
    if (status >= 500)
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

void server_append_body(struct request *request, const char *data, size_t size)
{
    size_t limit = request->server->config->max_body_bytes;
    size_t needed;

    if (request->body_too_large || request->body_no_memory)
        return;
    if (size > limit - request->body_size) {
        request->body_too_large = true;
        free(request->body);
        request->body = NULL;
        request->body_size = request->body_capacity = 0;
        return;
    }

    needed = request->body_size + size;
    if (needed > request->body_capacity) {
        size_t capacity = request->body_capacity ? request->body_capacity : 64 * 1024;
        uint8_t *grown;

        while (capacity < needed)
            capacity *= 2;
        if (capacity > limit)
            capacity = limit;
        grown = realloc(request->body, capacity);
        if (!grown) {
            request->body_no_memory = true;
            return;
        }
        request->body = grown;
        request->body_capacity = capacity;
    }
    memcpy(request->body + request->body_size, data, size);
    request->body_size = needed;
}

/* Handles the first call: routing, method, declared size, body setup. */
static enum MHD_Result begin_request(struct MHD_Connection *connection,
                                     struct request *request)
{
    const struct config *config = request->server->config;
    const char *allow;
    const char *length_text;
    enum route route = find_route(request->path, &allow);

    if (route == ROUTE_UNKNOWN)
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "not_found",
                                  "no route for %s %s (routes: POST /v1/detect, GET /healthz, GET /readyz)",
                                  request->method, request->path);
    if (!method_allowed(request->method, allow))
        return server_reply_error_with_header(connection, request, MHD_HTTP_METHOD_NOT_ALLOWED,
                                              MHD_HTTP_HEADER_ALLOW, allow, "method_not_allowed",
                                              "method %s is not allowed on %s (allowed: %s)",
                                              request->method, request->path, allow);
    if (route != ROUTE_DETECT)
        return MHD_YES;

    length_text = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length_text) {
        char *end;
        unsigned long long declared;

        errno = 0;
        declared = strtoull(length_text, &end, 10);
        if (errno == ERANGE || declared > config->max_body_bytes)
            return server_reply_error(connection, request, MHD_HTTP_CONTENT_TOO_LARGE,
                                      "body_too_large",
                                      "request body of %s bytes exceeds the limit of %zu bytes (max_body_bytes)",
                                      length_text, config->max_body_bytes);
    }

    if (multipart_begin(request, connection) != 0)
        return server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_request",
                                  "invalid multipart/form-data request: missing or invalid boundary");
    return MHD_YES;
}

static enum MHD_Result finish_request(struct MHD_Connection *connection,
                                      struct request *request)
{
    const char *allow;

    switch (find_route(request->path, &allow)) {
    case ROUTE_DETECT:
        return api_detect(connection, request);
    case ROUTE_HEALTHZ:
        return api_health_live(connection, request);
    case ROUTE_READYZ:
        return api_health_ready(connection, request);
    default:
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "not_found",
                                  "no route for %s", request->path);
    }
}

static enum MHD_Result handle_access(void *cls, struct MHD_Connection *connection,
                                     const char *url, const char *method,
                                     const char *version, const char *upload_data,
                                     size_t *upload_data_size, void **con_cls)
{
    struct request *request = *con_cls;

    if (!request) {
        request = calloc(1, sizeof *request);
        if (!request)
            return MHD_NO;
        request->server = cls;
        request->start_ms = yd_now_ms();
        snprintf(request->method, sizeof request->method, "%s", method);
        request->path = strdup(url);
        *con_cls = request;
        atomic_fetch_add(&request->server->active_requests, 1);
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
        if (request->multipart) {
            if (multipart_feed(request, upload_data, *upload_data_size) != 0)
                request->multipart_invalid = true;
        } else {
            server_append_body(request, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    return finish_request(connection, request);
}

static void handle_completed(void *cls, struct MHD_Connection *connection,
                             void **con_cls, enum MHD_RequestTerminationCode code)
{
    struct request *request = *con_cls;

    if (!request)
        return;
    if (request->responded)
        log_printf(YD_LOG_INFO, "%s %s %u %zu bytes %.1f ms", request->method,
                   request->path, request->status, request->response_bytes,
                   yd_now_ms() - request->start_ms);
    else
        log_printf(YD_LOG_INFO, "%s %s aborted (termination code %d) %.1f ms",
                   request->method, request->path, (int)code,
                   yd_now_ms() - request->start_ms);

    multipart_end(request);
    for (int i = 0; i < FIELD_COUNT; i++)
        free(request->fields[i]);
    free(request->body);
    free(request->path);
    atomic_fetch_sub(&request->server->active_requests, 1);
    free(request);
    *con_cls = NULL;
}

static void log_mhd_message(void *cls, const char *fmt, va_list ap)
{
    char message[1024];
    size_t length;

    vsnprintf(message, sizeof message, fmt, ap);
    length = strlen(message);
    while (length > 0 && message[length - 1] == '\n')
        message[--length] = '\0';
    log_printf(YD_LOG_WARN, "libmicrohttpd: %s", message);
}

/* Creates the listening socket here, so a bind failure names its cause. */
static int open_listen_socket(const char *listen_text)
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
        log_printf(YD_LOG_ERROR, "cannot listen on %s: %s", listen_text, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 128) != 0) {
        log_printf(YD_LOG_ERROR, "cannot listen on %s: %s", listen_text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int server_start(struct server *server)
{
    const struct config *config = server->config;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;

    server->listen_fd = open_listen_socket(config->listen);
    if (server->listen_fd < 0)
        return -1;

    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle_access, server,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd_message, server,
        MHD_OPTION_LISTEN_SOCKET, server->listen_fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)config->request_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MAX_CONNECTIONS,
        MHD_OPTION_NOTIFY_COMPLETED, handle_completed, server,
        MHD_OPTION_END);
    if (!server->daemon) {
        log_printf(YD_LOG_ERROR, "cannot start the HTTP server on %s", config->listen);
        close(server->listen_fd);
        server->listen_fd = -1;
        return -1;
    }
    return 0;
}

void server_stop(struct server *server)
{
    if (server->daemon) {
        double deadline = yd_now_ms() + 1000.0 * server->config->request_timeout_s;

        /* Quiesce closes nothing: the listen socket is ours and closed below. */
        MHD_quiesce_daemon(server->daemon);
        while (atomic_load(&server->active_requests) > 0 && yd_now_ms() < deadline)
            usleep(10 * 1000);
        if (atomic_load(&server->active_requests) > 0)
            log_printf(YD_LOG_WARN, "closing %d requests still in progress after %d s",
                       atomic_load(&server->active_requests), server->config->request_timeout_s);
        MHD_stop_daemon(server->daemon);
        server->daemon = NULL;
    }
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
        server->listen_fd = -1;
    }
}
