/*
 * Daemon settings: built-in defaults, then the config file (`key = value`
 * lines), then command-line flags, each overriding the one before.
 */
#ifndef YOLOD_DAEMON_CONFIG_H
#define YOLOD_DAEMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_MAX_MODELS 16
#define CONFIG_MAX_DET_LIMIT 300 /* upper bound of max_det, default and per request */
#define CONFIG_MAX_CONNECTIONS 256 /* open HTTP connections, all clients together */

struct config {
    char listen[256];              /* HOST:PORT, [IPV6]:PORT */
    char *models[CONFIG_MAX_MODELS]; /* model file paths; the first is the default */
    int model_count;
    char *model_dir;               /* directory of NAME.onnx and NAME.VARIANT.yolod files, or NULL */
    int watch_model_dir;           /* reload files replaced in model_dir without a signal */
    char default_variant[64];      /* variant requests get when the model has it; "" = first loaded */
    int workers;                   /* inference workers, each with its own session */
    int threads;                   /* OpenMP threads per worker; 0 = cores / workers */
    int queue_size;                /* requests decoding or waiting for a worker before 503 */
    int max_decodes;               /* images decoded at once before 503; 0 = 2 * cores */
    int max_connections_per_ip;    /* open connections from one address; 0 = no limit */
    size_t max_body_bytes;
    size_t max_buffered_bytes;     /* request bodies buffered at once, all connections */
    uint64_t max_pixels;           /* decoded width * height */
    float conf, iou;               /* request defaults */
    int max_det;
    int request_timeout_s;         /* idle connection timeout, and the longest time
                                      from a request's headers to its last body byte, seconds */
    int log_level;                 /* YD_LOG_* */
};

void config_init(struct config *config);
void config_free(struct config *config);

/*
 * Applies one setting by its file key ("max_body_bytes"). Models append.
 * Returns 0, or -1 with a message naming the key and value in err.
 */
int config_set(struct config *config, const char *key, const char *value,
               char *err, size_t err_size);

/*
 * Reads a config file. Blank lines and lines starting with '#' are skipped.
 * Unknown keys and invalid values are errors reported as "FILE:LINE: ...".
 */
int config_load_file(struct config *config, const char *path, char *err,
                     size_t err_size);

/* Drops the models read so far, so command-line models replace the file's. */
void config_clear_models(struct config *config);

/*
 * Resolves config->listen into a socket address. Accepts 127.0.0.1:8080,
 * [::1]:8080 and host names such as localhost:8080; a missing host
 * (":8080") is rejected so that listening on every interface is explicit
 * (0.0.0.0:8080 or [::]:8080).
 */
int config_resolve_listen(const char *listen, struct sockaddr_storage *addr,
                          socklen_t *addr_len, char *err, size_t err_size);

#endif /* YOLOD_DAEMON_CONFIG_H */
