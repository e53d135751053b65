/*
 * Config file and setting parser. Every setting has one key, used both in
 * the file and (with '-' for '_') as a command-line flag.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "text.h"

void config_init(struct config *config)
{
    memset(config, 0, sizeof *config);
    snprintf(config->listen, sizeof config->listen, "127.0.0.1:8080");
    config->watch_model_dir = 1;
    config->workers = 1;
    config->threads = 0;
    config->queue_size = 16;
    config->max_decodes = 0;
    config->max_connections_per_ip = 32;
    config->max_body_bytes = (size_t)32 << 20;
    config->max_buffered_bytes = (size_t)256 << 20;
    config->max_pixels = 50000000;
    config->conf = 0.25f;
    config->iou = 0.7f;
    config->max_det = CONFIG_MAX_DET_LIMIT;
    config->request_timeout_s = 30;
    config->log_level = YD_LOG_INFO;
}

void config_clear_models(struct config *config)
{
    for (int i = 0; i < config->model_count; i++)
        free(config->models[i]);
    config->model_count = 0;
}

void config_free(struct config *config)
{
    config_clear_models(config);
    free(config->model_dir);
    config->model_dir = NULL;
}

/* Parses digits only: strtol alone would also take a sign and leading spaces. */
static int parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    long value;

    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/* Parses a number from 0 to 1 in the form the API takes (text_is_decimal_number). */
static int parse_unit_float(const char *text, float *out)
{
    double value;

    if (!text_is_decimal_number(text))
        return -1;
    value = strtod(text, NULL);
    if (!(value >= 0.0 && value <= 1.0))
        return -1;
    *out = (float)value;
    return 0;
}

/*
 * Parses a count with an optional suffix. For bytes, K/M/G (or KiB/MiB/GiB)
 * are powers of 1024; for pixels, K/M are powers of 1000 (50M = 50
 * megapixels).
 */
static int parse_count(const char *text, uint64_t unit_base, uint64_t *out)
{
    char *end;
    unsigned long long value;
    uint64_t multiplier = 1;

    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;

    if (*end != '\0') {
        char suffix = (char)toupper((unsigned char)*end);
        const char *rest = end + 1;

        if (suffix == 'K')
            multiplier = unit_base;
        else if (suffix == 'M')
            multiplier = unit_base * unit_base;
        else if (suffix == 'G')
            multiplier = unit_base * unit_base * unit_base;
        else
            return -1;
        if (unit_base == 1024 && strcasecmp(rest, "iB") == 0)
            rest += 2;
        if (*rest != '\0')
            return -1;
    }

    if (value == 0 || value > UINT64_MAX / multiplier)
        return -1;
    *out = value * multiplier;
    return 0;
}

static int add_model(struct config *config, const char *path, char *err, size_t err_size)
{
    char *copy;

    if (path[0] == '\0') {
        snprintf(err, err_size, "model: empty path");
        return -1;
    }
    if (config->model_count == CONFIG_MAX_MODELS) {
        snprintf(err, err_size, "model: too many models (at most %d)", CONFIG_MAX_MODELS);
        return -1;
    }
    copy = strdup(path);
    if (!copy) {
        snprintf(err, err_size, "model: out of memory");
        return -1;
    }
    config->models[config->model_count++] = copy;
    return 0;
}

static int invalid_value(char *err, size_t err_size, const char *key,
                         const char *value, const char *expected)
{
    snprintf(err, err_size, "%s: invalid value '%s' (expected %s)", key, value, expected);
    return -1;
}

int config_set(struct config *config, const char *key, const char *value,
               char *err, size_t err_size)
{
    long number;
    uint64_t count;

    if (strcmp(key, "listen") == 0) {
        struct sockaddr_storage addr;
        socklen_t addr_len;

        if (strlen(value) >= sizeof config->listen)
            return invalid_value(err, err_size, key, value, "a shorter HOST:PORT");
        if (config_resolve_listen(value, &addr, &addr_len, err, err_size) != 0)
            return -1;
        snprintf(config->listen, sizeof config->listen, "%s", value);
        return 0;
    }
    if (strcmp(key, "model") == 0)
        return add_model(config, value, err, err_size);
    if (strcmp(key, "model_dir") == 0) {
        char *copy = value[0] ? strdup(value) : NULL;

        if (value[0] && !copy) {
            snprintf(err, err_size, "model_dir: out of memory");
            return -1;
        }
        if (!value[0]) {
            snprintf(err, err_size, "model_dir: empty path");
            return -1;
        }
        free(config->model_dir);
        config->model_dir = copy;
        return 0;
    }

    if (strcmp(key, "watch_model_dir") == 0) {
        if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0)
            return invalid_value(err, err_size, key, value, "yes or no");
        config->watch_model_dir = strcmp(value, "yes") == 0;
        return 0;
    }
    if (strcmp(key, "default_variant") == 0) {
        if (!value[0] || strlen(value) >= sizeof config->default_variant || strchr(value, '/'))
            return invalid_value(err, err_size, key, value, "a variant name such as int8");
        snprintf(config->default_variant, sizeof config->default_variant, "%s", value);
        return 0;
    }
    if (strcmp(key, "workers") == 0) {
        if (parse_long(value, 1, 256, &number) != 0)
            return invalid_value(err, err_size, key, value, "an integer from 1 to 256");
        config->workers = (int)number;
        return 0;
    }
    if (strcmp(key, "threads") == 0) {
        if (parse_long(value, 0, 1024, &number) != 0)
            return invalid_value(err, err_size, key, value, "an integer from 0 to 1024; 0 chooses from the core count");
        config->threads = (int)number;
        return 0;
    }
    if (strcmp(key, "queue_size") == 0) {
        if (parse_long(value, 1, 100000, &number) != 0)
            return invalid_value(err, err_size, key, value, "an integer from 1 to 100000");
        config->queue_size = (int)number;
        return 0;
    }
    if (strcmp(key, "max_decodes") == 0) {
        if (parse_long(value, 0, 4096, &number) != 0)
            return invalid_value(err, err_size, key, value, "an integer from 0 to 4096, 0 = 2 * cores");
        config->max_decodes = (int)number;
        return 0;
    }
    if (strcmp(key, "max_connections_per_ip") == 0) {
        if (parse_long(value, 0, CONFIG_MAX_CONNECTIONS, &number) != 0)
            return invalid_value(err, err_size, key, value, "an integer from 0 to 256, 0 = no limit");
        config->max_connections_per_ip = (int)number;
        return 0;
    }
    if (strcmp(key, "max_body_bytes") == 0) {
        if (parse_count(value, 1024, &count) != 0 || count > SIZE_MAX / 2)
            return invalid_value(err, err_size, key, value, "a positive byte count such as 33554432 or 32M");
        config->max_body_bytes = (size_t)count;
        return 0;
    }
    if (strcmp(key, "max_buffered_bytes") == 0) {
        if (parse_count(value, 1024, &count) != 0 || count > SIZE_MAX / 2)
            return invalid_value(err, err_size, key, value, "a positive byte count such as 268435456 or 256M");
        config->max_buffered_bytes = (size_t)count;
        return 0;
    }
    if (strcmp(key, "max_pixels") == 0) {
        if (parse_count(value, 1000, &count) != 0)
            return invalid_value(err, err_size, key, value, "a positive pixel count such as 50000000 or 50M");
        config->max_pixels = count;
        return 0;
    }
    if (strcmp(key, "conf") == 0) {
        if (parse_unit_float(value, &config->conf) != 0)
            return invalid_value(err, err_size, key, value, "a number from 0 to 1");
        return 0;
    }
    if (strcmp(key, "iou") == 0) {
        if (parse_unit_float(value, &config->iou) != 0)
            return invalid_value(err, err_size, key, value, "a number from 0 to 1");
        return 0;
    }
    if (strcmp(key, "max_det") == 0) {
        if (parse_long(value, 1, CONFIG_MAX_DET_LIMIT, &number) != 0)
            return invalid_value(err, err_size, key, value, "an integer from 1 to 300");
        config->max_det = (int)number;
        return 0;
    }
    if (strcmp(key, "request_timeout") == 0) {
        if (parse_long(value, 1, 3600, &number) != 0)
            return invalid_value(err, err_size, key, value, "seconds from 1 to 3600");
        config->request_timeout_s = (int)number;
        return 0;
    }
    if (strcmp(key, "log_level") == 0) {
        int level = log_parse_level(value);

        if (level < 0)
            return invalid_value(err, err_size, key, value, "debug, info, warn or error");
        config->log_level = level;
        return 0;
    }

    snprintf(err, err_size, "unknown key '%s'", key);
    return -1;
}

static char *trim(char *text)
{
    char *end;

    while (isspace((unsigned char)*text))
        text++;
    end = text + strlen(text);
    while (end > text && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return text;
}

/* Maximum length of a setting line; comments may be longer. */
#define CONFIG_LINE_MAX 4095
/* Maximum bytes read from a config file, so a device such as /dev/zero cannot keep the reader busy. */
#define CONFIG_FILE_MAX (16 << 20)
/* Distinct keys a file may set, for the repeated-key check (more than there are). */
#define CONFIG_KEYS_MAX 64

/*
 * Opens a config file for reading. A FIFO is refused: opening it would
 * block until a writer came, and on SIGHUP the thread that waits is the
 * one that handles SIGTERM.
 */
static FILE *open_config(const char *path, char *err, size_t err_size)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    FILE *file;

    if (fd < 0) {
        snprintf(err, err_size, "cannot open config file '%s': %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        snprintf(err, err_size, "cannot read config file '%s': not a regular file", path);
        close(fd);
        return NULL;
    }
    file = fdopen(fd, "r");
    if (!file) {
        snprintf(err, err_size, "cannot open config file '%s': %s", path, strerror(errno));
        close(fd);
    }
    return file;
}

/* Outcome of read_line(). */
enum line_status { LINE_OK, LINE_END, LINE_TOO_LONG, LINE_NUL, FILE_TOO_LARGE };

/*
 * Reads one line into buf (without its newline or CRLF). A line longer than the
 * buffer is consumed to its end when it starts with '#' (a comment) and
 * reported otherwise. *total counts the bytes read from the file.
 */
static enum line_status read_line(FILE *file, char *buf, size_t size, size_t *total)
{
    size_t used = 0;
    bool comment = false, any = false;
    int c;

    while ((c = getc(file)) != EOF) {
        any = true;
        if (++*total > CONFIG_FILE_MAX)
            return FILE_TOO_LARGE;
        if (c == '\n')
            break;
        if (c == '\0')
            return LINE_NUL;
        if (used + 1 < size) {
            buf[used++] = (char)c;
            if (used == 1 || !comment) {
                buf[used] = '\0';
                comment = buf[strspn(buf, " \t\xEF\xBB\xBF")] == '#';
            }
        } else if (!comment) {
            return LINE_TOO_LONG;
        }
    }
    /* A CRLF line end, as Windows editors write. */
    if (used > 0 && buf[used - 1] == '\r')
        used--;
    buf[used] = '\0';
    return any ? LINE_OK : LINE_END;
}

int config_load_file(struct config *config, const char *path, char *err,
                     size_t err_size)
{
    FILE *file = open_config(path, err, err_size);
    char line[CONFIG_LINE_MAX + 1];
    size_t total = 0;
    enum line_status status;
    char message[512];
    char seen_keys[CONFIG_KEYS_MAX][64];
    int seen_lines[CONFIG_KEYS_MAX], nseen = 0;
    int line_number = 0;
    int rc = 0;

    if (!file)
        return -1;

    while ((status = read_line(file, line, sizeof line, &total)) != LINE_END) {
        char *text = line, *equals, *key, *value;

        line_number++;
        if (status != LINE_OK) {
            snprintf(err, err_size, "%s:%d: %s", path, line_number,
                     status == LINE_NUL         ? "contains a NUL byte; a config file is text"
                     : status == FILE_TOO_LARGE ? "the file is larger than 16 MiB"
                                                : "line longer than 4095 bytes");
            rc = -1;
            goto cleanup;
        }
        /* A UTF-8 byte order mark, as some editors write. */
        if (line_number == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
            text += 3;
        text = trim(text);
        if (text[0] == '\0' || text[0] == '#')
            continue;

        equals = strchr(text, '=');
        if (!equals) {
            snprintf(err, err_size, "%s:%d: expected 'key = value', got '%s'", path,
                     line_number, text);
            rc = -1;
            goto cleanup;
        }
        *equals = '\0';
        key = trim(text);
        value = trim(equals + 1);
        if (config_set(config, key, value, message, sizeof message) != 0) {
            snprintf(err, err_size, "%s:%d: %s", path, line_number, message);
            rc = -1;
            goto cleanup;
        }
        /* model lines add up; any other key set twice is likely a mistake. */
        if (strcmp(key, "model") == 0)
            continue;
        for (int i = 0; i < nseen; i++) {
            if (strcmp(seen_keys[i], key) == 0) {
                snprintf(err, err_size, "%s:%d: %s is set again (first on line %d); keep one line",
                         path, line_number, key, seen_lines[i]);
                rc = -1;
                goto cleanup;
            }
        }
        if (nseen < CONFIG_KEYS_MAX) {
            snprintf(seen_keys[nseen], sizeof seen_keys[nseen], "%s", key);
            seen_lines[nseen++] = line_number;
        }
    }
    if (ferror(file)) {
        snprintf(err, err_size, "cannot read config file '%s': %s", path, strerror(errno));
        rc = -1;
    }

cleanup:
    fclose(file);
    return rc;
}

int config_resolve_listen(const char *listen, struct sockaddr_storage *addr,
                          socklen_t *addr_len, char *err, size_t err_size)
{
    char host[256];
    const char *port;
    struct addrinfo hints, *found = NULL;
    long port_number;
    int rc;

    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');

        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof host) {
            snprintf(err, err_size, "listen: invalid address '%s' (expected [IPV6]:PORT)", listen);
            return -1;
        }
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');

        if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host) {
            snprintf(err, err_size,
                     "listen: invalid address '%s' (expected HOST:PORT, e.g. 127.0.0.1:8080;"
                     " use 0.0.0.0:PORT to listen on every interface)", listen);
            return -1;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
        if (strchr(host, ':')) {
            snprintf(err, err_size, "listen: IPv6 address in '%s' needs brackets, e.g. [::1]:8080", listen);
            return -1;
        }
    }
    if (parse_long(port, 1, 65535, &port_number) != 0) {
        snprintf(err, err_size, "listen: invalid port '%s' in '%s' (expected 1 to 65535)", port, listen);
        return -1;
    }

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    rc = getaddrinfo(host, port, &hints, &found);
    if (rc != 0) {
        snprintf(err, err_size, "listen: cannot resolve host '%s': %s", host, gai_strerror(rc));
        return -1;
    }

    /* The first result wins; for "localhost" glibc lists 127.0.0.1 before ::1. */
    memcpy(addr, found->ai_addr, found->ai_addrlen);
    *addr_len = found->ai_addrlen;
    freeaddrinfo(found);
    /* The server's IPv6 socket is IPv6-only, and binding it to an IPv4-mapped
     * address ([::ffff:127.0.0.1]) fails, so such an address is bound as IPv4. */
    if (addr->ss_family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)addr)->sin6_addr)) {
        const struct sockaddr_in6 mapped = *(const struct sockaddr_in6 *)addr;
        struct sockaddr_in ipv4 = {.sin_family = AF_INET, .sin_port = mapped.sin6_port};

        /* The IPv4 address is the last 4 of the 16 bytes. */
        memcpy(&ipv4.sin_addr, mapped.sin6_addr.s6_addr + 12, sizeof ipv4.sin_addr);
        memset(addr, 0, sizeof *addr);
        memcpy(addr, &ipv4, sizeof ipv4);
        *addr_len = sizeof ipv4;
    }
    return 0;
}
