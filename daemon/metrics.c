/*
 * Prometheus metrics for GET /metrics.
 *
 * One mutex guards every counter and histogram: updates are a few additions
 * per request, far cheaper than the request itself, and a scrape renders
 * under the same lock, so it reads one consistent state (a histogram's
 * buckets, _sum and _count always agree). Process metrics are read from
 * /proc outside the lock.
 *
 * The output follows the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): a HELP and
 * a TYPE line before each family, label values with backslash, double quote
 * and newline escaped, histogram buckets cumulative and ending at +Inf.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "server.h"
#include "text.h"

/*
 * Upper bounds in seconds, as printed in the le label. They span 5 ms (a
 * health check, a small model on a fast CPU) to 10 s (a large model on a
 * slow or busy CPU). Slower observations land in +Inf only.
 */
static const char *const bucket_labels[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};
#define BUCKET_COUNT (sizeof bucket_labels / sizeof bucket_labels[0])
static const double bucket_bounds[BUCKET_COUNT] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

#define MAX_ROUTES 32
#define STATUS_MIN 100
#define STATUS_COUNT 500 /* status codes 100..599 */

struct histogram {
    uint64_t buckets[BUCKET_COUNT]; /* observations in (bound[i-1], bound[i]], not cumulative */
    uint64_t count;                 /* every observation, including those above the last bound */
    double sum;
};

struct route_metrics {
    const char *route;
    uint64_t responses[STATUS_COUNT]; /* by status - STATUS_MIN */
    struct histogram duration;
};

struct model_metrics {
    char *name, *variant, *path;    /* NULL for an index never loaded */
    bool loaded;
    double load_time;               /* Unix time in seconds */
    uint64_t detections;
    uint64_t reloads[2];            /* by result: [0] failure, [1] success */
    struct histogram queue_wait;
    struct histogram inference;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct route_metrics routes[MAX_ROUTES];
static int route_count;
static struct model_metrics *models;
static int model_count;
static atomic_ullong rejected_connections;
static atomic_ullong header_timeouts;
static atomic_ullong new_file_failures;

/* Growable output text; `failed` is set once an allocation fails. */
struct output {
    char *data;
    size_t length, capacity;
    bool failed;
};

static void output_reserve(struct output *out, size_t extra)
{
    size_t capacity = out->capacity ? out->capacity : 16 * 1024;
    char *grown;

    if (out->failed || out->length + extra + 1 <= out->capacity)
        return;
    while (capacity < out->length + extra + 1)
        capacity *= 2;
    grown = realloc(out->data, capacity);
    if (!grown) {
        out->failed = true;
        return;
    }
    out->data = grown;
    out->capacity = capacity;
}

static void output_printf(struct output *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void output_printf(struct output *out, const char *fmt, ...)
{
    va_list ap;
    int needed;

    va_start(ap, fmt);
    needed = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (needed < 0) {
        out->failed = true;
        return;
    }
    output_reserve(out, (size_t)needed);
    if (out->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(out->data + out->length, out->capacity - out->length, fmt, ap);
    va_end(ap);
    out->length += (size_t)needed;
}

/*
 * Appends a label value between double quotes. The format requires UTF-8,
 * so invalid bytes (possible in a file path) become '?'. Backslash, double
 * quote and newline are escaped as \\, \" and \n.
 */
static void output_label_value(struct output *out, const char *value)
{
    size_t size = strlen(value);

    output_reserve(out, 2 * size + 2);
    if (out->failed)
        return;
    out->data[out->length++] = '"';
    while (*value) {
        size_t length = text_utf8_length(value, size);

        if (length == 0) {
            out->data[out->length++] = '?';
            length = 1;
        } else if (*value == '\\' || *value == '"') {
            out->data[out->length++] = '\\';
            out->data[out->length++] = *value;
        } else if (*value == '\n') {
            out->data[out->length++] = '\\';
            out->data[out->length++] = 'n';
        } else {
            memcpy(out->data + out->length, value, length);
            out->length += length;
        }
        value += length;
        size -= length;
    }
    out->data[out->length++] = '"';
    out->data[out->length] = '\0';
}

static void output_family(struct output *out, const char *name, const char *type,
                          const char *help)
{
    output_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Appends the _bucket, _sum and _count samples; labels is one or more `name="value"` pairs, comma-separated. */
static void output_histogram(struct output *out, const char *name, const char *labels,
                             const struct histogram *histogram)
{
    uint64_t cumulative = 0;

    for (size_t i = 0; i < BUCKET_COUNT; i++) {
        cumulative += histogram->buckets[i];
        output_printf(out, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, bucket_labels[i],
                      (unsigned long long)cumulative);
    }
    output_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
                  (unsigned long long)histogram->count);
    output_printf(out, "%s_sum{%s} %.9g\n", name, labels, histogram->sum);
    output_printf(out, "%s_count{%s} %llu\n", name, labels,
                  (unsigned long long)histogram->count);
}

static void histogram_observe(struct histogram *histogram, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    for (size_t i = 0; i < BUCKET_COUNT; i++) {
        if (seconds <= bucket_bounds[i]) {
            histogram->buckets[i]++;
            break;
        }
    }
    histogram->count++;
    histogram->sum += seconds;
}

static double wall_clock_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + now.tv_nsec / 1e9;
}

static char *copy_text(const char *text)
{
    return strdup(text ? text : "");
}

/* Makes models[model_index] exist; the caller holds metrics_lock. */
static struct model_metrics *model_slot(int model_index)
{
    if (model_index < 0)
        return NULL;
    if (model_index >= model_count) {
        struct model_metrics *grown = realloc(models, (size_t)(model_index + 1) * sizeof *grown);

        /* Without memory the model is just not labelled; serving goes on. */
        if (!grown)
            return NULL;
        memset(grown + model_count, 0, (size_t)(model_index + 1 - model_count) * sizeof *grown);
        models = grown;
        model_count = model_index + 1;
    }
    return &models[model_index];
}

/* Replaces *field with a copy of text; keeps the old value when out of memory. */
static void replace_text(char **field, const char *text)
{
    char *copy = copy_text(text);

    if (!copy)
        return;
    free(*field);
    *field = copy;
}

void metrics_model_loaded(int model_index, const char *name, const char *variant,
                          const char *path)
{
    struct model_metrics *model;

    pthread_mutex_lock(&metrics_lock);
    model = model_slot(model_index);
    if (model) {
        replace_text(&model->name, name);
        replace_text(&model->variant, variant);
        replace_text(&model->path, path);
        model->loaded = model->name && model->variant && model->path;
        model->load_time = wall_clock_seconds();
    }
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_model_unloaded(int model_index)
{
    pthread_mutex_lock(&metrics_lock);
    if (model_index >= 0 && model_index < model_count)
        models[model_index].loaded = false;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_model_removed(int model_index)
{
    pthread_mutex_lock(&metrics_lock);
    if (model_index >= 0 && model_index < model_count) {
        struct model_metrics *model = &models[model_index];

        free(model->name);
        free(model->variant);
        free(model->path);
        memset(model, 0, sizeof *model);
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* Finds or adds the entry for route; the caller holds metrics_lock. */
static struct route_metrics *find_route_metrics(const char *route)
{
    for (int i = 0; i < route_count; i++)
        if (strcmp(routes[i].route, route) == 0)
            return &routes[i];

    /* The last slot is kept for "other", so the table never overflows. */
    if (route_count >= MAX_ROUTES - 1 && strcmp(route, METRICS_ROUTE_OTHER) != 0)
        return find_route_metrics(METRICS_ROUTE_OTHER);
    routes[route_count].route = route;
    return &routes[route_count++];
}

void metrics_observe_request(const char *route, unsigned int status, double seconds)
{
    struct route_metrics *entry;

    if (status < STATUS_MIN || status >= STATUS_MIN + STATUS_COUNT)
        return;
    pthread_mutex_lock(&metrics_lock);
    entry = find_route_metrics(route ? route : METRICS_ROUTE_OTHER);
    entry->responses[status - STATUS_MIN]++;
    histogram_observe(&entry->duration, seconds);
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_observe_job(int model_index, double queue_wait_seconds,
                         double inference_seconds, int detections)
{
    pthread_mutex_lock(&metrics_lock);
    if (model_index >= 0 && model_index < model_count) {
        struct model_metrics *model = &models[model_index];

        histogram_observe(&model->queue_wait, queue_wait_seconds);
        histogram_observe(&model->inference, inference_seconds);
        if (detections > 0)
            model->detections += (uint64_t)detections;
    }
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_observe_reload(int model_index, bool success)
{
    pthread_mutex_lock(&metrics_lock);
    if (model_index >= 0 && model_index < model_count)
        models[model_index].reloads[success ? 1 : 0]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_count_rejected_connection(void)
{
    atomic_fetch_add(&rejected_connections, 1);
}

void metrics_count_header_timeout(void)
{
    atomic_fetch_add(&header_timeouts, 1);
}

void metrics_count_new_file_failure(void)
{
    atomic_fetch_add(&new_file_failures, 1);
}

static void output_requests(struct output *out)
{
    output_family(out, "yolod_http_connections_rejected_total", "counter",
                  "Connections closed unanswered at a connection limit (max_connections_per_ip or the total limit).");
    output_printf(out, "yolod_http_connections_rejected_total %llu\n",
                  (unsigned long long)atomic_load(&rejected_connections));

    output_family(out, "yolod_http_header_timeouts_total", "counter",
                  "Connections closed because their request headers were not complete request_timeout"
                  " seconds after the connection opened or its previous request finished.");
    output_printf(out, "yolod_http_header_timeouts_total %llu\n",
                  (unsigned long long)atomic_load(&header_timeouts));

    output_family(out, "yolod_http_requests_total", "counter",
                  "HTTP responses sent, by matched route pattern (other for unknown paths) and status code.");
    for (int i = 0; i < route_count; i++) {
        for (int s = 0; s < STATUS_COUNT; s++) {
            if (routes[i].responses[s] == 0)
                continue;
            output_printf(out, "yolod_http_requests_total{route=");
            output_label_value(out, routes[i].route);
            output_printf(out, ",code=\"%d\"} %llu\n", s + STATUS_MIN,
                          (unsigned long long)routes[i].responses[s]);
        }
    }

    output_family(out, "yolod_request_duration_seconds", "histogram",
                  "Seconds from the request headers to the response sent, by route.");
    for (int i = 0; i < route_count; i++) {
        struct output labels = { 0 };

        output_printf(&labels, "route=");
        output_label_value(&labels, routes[i].route);
        if (labels.failed) {
            out->failed = true;
        } else {
            output_histogram(out, "yolod_request_duration_seconds", labels.data,
                             &routes[i].duration);
        }
        free(labels.data);
    }
}

/* Writes `model="...",variant="..."` into labels. */
static void format_model_labels(struct output *labels, const struct model_metrics *model)
{
    labels->length = 0;
    output_printf(labels, "model=");
    output_label_value(labels, model->name);
    output_printf(labels, ",variant=");
    output_label_value(labels, model->variant);
}

static void output_models(struct output *out)
{
    struct output labels = { 0 };

    output_family(out, "yolod_queue_wait_seconds", "histogram",
                  "Seconds an inference job waited in the queue before a worker took it.");
    for (int i = 0; i < model_count; i++) {
        if (!models[i].name)
            continue;
        format_model_labels(&labels, &models[i]);
        if (!labels.failed)
            output_histogram(out, "yolod_queue_wait_seconds", labels.data, &models[i].queue_wait);
    }

    output_family(out, "yolod_inference_duration_seconds", "histogram",
                  "Seconds a worker spent on one job: preprocessing, the network and postprocessing.");
    for (int i = 0; i < model_count; i++) {
        if (!models[i].name)
            continue;
        format_model_labels(&labels, &models[i]);
        if (!labels.failed)
            output_histogram(out, "yolod_inference_duration_seconds", labels.data, &models[i].inference);
    }

    output_family(out, "yolod_detections_total", "counter",
                  "Detections returned, after confidence filtering and NMS.");
    for (int i = 0; i < model_count; i++) {
        if (!models[i].name)
            continue;
        format_model_labels(&labels, &models[i]);
        if (!labels.failed)
            output_printf(out, "yolod_detections_total{%s} %llu\n", labels.data,
                          (unsigned long long)models[i].detections);
    }

    output_family(out, "yolod_model_info", "gauge",
                  "Models served, with the file each was loaded from; the value is always 1.");
    for (int i = 0; i < model_count; i++) {
        if (!models[i].loaded)
            continue;
        format_model_labels(&labels, &models[i]);
        output_printf(&labels, ",path=");
        output_label_value(&labels, models[i].path);
        if (!labels.failed)
            output_printf(out, "yolod_model_info{%s} 1\n", labels.data);
    }

    output_family(out, "yolod_model_load_timestamp_seconds", "gauge",
                  "Unix time when the model was loaded and its worker sessions created.");
    for (int i = 0; i < model_count; i++) {
        if (!models[i].loaded)
            continue;
        format_model_labels(&labels, &models[i]);
        if (!labels.failed)
            output_printf(out, "yolod_model_load_timestamp_seconds{%s} %.3f\n",
                          labels.data, models[i].load_time);
    }

    output_family(out, "yolod_model_file_failures_total", "counter",
                  "Model files that no variant served and that failed to load, each file version once.");
    output_printf(out, "yolod_model_file_failures_total %llu\n",
                  (unsigned long long)atomic_load(&new_file_failures));
    output_family(out, "yolod_model_reloads_total", "counter",
                  "Reloads of a model variant from its file, by result (success or failure).");
    for (int i = 0; i < model_count; i++) {
        if (!models[i].name)
            continue;
        format_model_labels(&labels, &models[i]);
        if (labels.failed)
            continue;
        output_printf(out, "yolod_model_reloads_total{%s,result=\"success\"} %llu\n",
                      labels.data, (unsigned long long)models[i].reloads[1]);
        output_printf(out, "yolod_model_reloads_total{%s,result=\"failure\"} %llu\n",
                      labels.data, (unsigned long long)models[i].reloads[0]);
    }

    if (labels.failed)
        out->failed = true;
    free(labels.data);
}

/* Returns the process start as Unix time in seconds, or -1 if /proc cannot be read. */
static double process_start_time(void)
{
    char stat[1024], line[256];
    unsigned long long start_ticks = 0, boot_time = 0;
    long ticks_per_second = sysconf(_SC_CLK_TCK);
    const char *field;
    size_t size;
    FILE *file;

    file = fopen("/proc/self/stat", "r");
    if (!file)
        return -1;
    size = fread(stat, 1, sizeof stat - 1, file);
    fclose(file);
    stat[size] = '\0';

    /* Field 2, the command name, may contain spaces and ')': skip to the last ')'.
     * starttime is field 22, the 20th after it (proc(5)), in clock ticks since boot. */
    field = strrchr(stat, ')');
    if (!field)
        return -1;
    for (int i = 0; i < 20 && field; i++)
        field = strchr(field + 1, ' ');
    if (!field || sscanf(field + 1, "%llu", &start_ticks) != 1)
        return -1;

    file = fopen("/proc/stat", "r");
    if (!file)
        return -1;
    while (fgets(line, sizeof line, file))
        if (sscanf(line, "btime %llu", &boot_time) == 1)
            break;
    fclose(file);
    if (boot_time == 0 || ticks_per_second <= 0)
        return -1;
    return (double)boot_time + (double)start_ticks / (double)ticks_per_second;
}

/* Counts the entries of /proc/self/fd, the directory's own descriptor included. */
static int count_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *entry;
    int count = 0;

    if (!dir)
        return -1;
    while ((entry = readdir(dir)) != NULL)
        if (entry->d_name[0] != '.')
            count++;
    closedir(dir);
    return count;
}

/* Skips a metric whose source cannot be read, rather than reporting a false 0. */
static void output_process(struct output *out)
{
    struct rusage usage;
    unsigned long long virtual_pages, resident_pages;
    long page_size = sysconf(_SC_PAGESIZE);
    double start_time = process_start_time();
    int open_fds = count_open_fds();
    FILE *file;

    if (getrusage(RUSAGE_SELF, &usage) == 0) {
        output_family(out, "process_cpu_seconds_total", "counter",
                      "User and system CPU time spent, in seconds.");
        output_printf(out, "process_cpu_seconds_total %.6f\n",
                      (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
                      (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6);
    }

    file = fopen("/proc/self/statm", "r");
    if (file) {
        if (fscanf(file, "%llu %llu", &virtual_pages, &resident_pages) == 2 && page_size > 0) {
            output_family(out, "process_virtual_memory_bytes", "gauge",
                          "Virtual memory size in bytes.");
            output_printf(out, "process_virtual_memory_bytes %llu\n",
                          virtual_pages * (unsigned long long)page_size);
            output_family(out, "process_resident_memory_bytes", "gauge",
                          "Resident memory size in bytes.");
            output_printf(out, "process_resident_memory_bytes %llu\n",
                          resident_pages * (unsigned long long)page_size);
        }
        fclose(file);
    }

    if (open_fds >= 0) {
        output_family(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        output_printf(out, "process_open_fds %d\n", open_fds);
    }

    if (start_time >= 0) {
        output_family(out, "process_start_time_seconds", "gauge",
                      "Start time of the process since the Unix epoch, in seconds.");
        output_printf(out, "process_start_time_seconds %.2f\n", start_time);
    }
}

enum MHD_Result api_metrics(struct MHD_Connection *connection, struct request *request)
{
    struct server *server = request->server;
    struct output out = { 0 };
    struct MHD_Response *response;
    enum MHD_Result result;

    output_family(&out, "yolod_queue_depth", "gauge",
                  "Inference jobs waiting for a worker (not yet taken).");
    output_printf(&out, "yolod_queue_depth %d\n",
                  server->pool ? worker_pool_queued(server->pool) : 0);
    output_family(&out, "yolod_requests_in_flight", "gauge",
                  "HTTP requests between their headers and their completion, this scrape included.");
    output_printf(&out, "yolod_requests_in_flight %d\n", atomic_load(&server->active_requests));

    pthread_mutex_lock(&metrics_lock);
    output_requests(&out);
    output_models(&out);
    pthread_mutex_unlock(&metrics_lock);

    output_process(&out);

    if (out.failed) {
        free(out.data);
        return server_reply_error(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", "out of memory rendering the metrics");
    }
    response = MHD_create_response_from_buffer(out.length, out.data, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(out.data);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    server_add_common_headers(response, request);
    result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    if (result == MHD_YES) {
        request->status = MHD_HTTP_OK;
        request->response_bytes = out.length;
        request->responded = true;
    }
    return result;
}
