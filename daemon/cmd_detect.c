/*
 * `yolod detect`: run detection on image files and print one JSON line each.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "params.h"
#include "registry.h"
#include "util.h"

struct detect_options {
    const char *model_path;
    struct params_text text;
    int threads;
    /* Defaults of conf, iou, max_det and max_pixels, and max_body_bytes,
     * the byte limit of an image read from a stream. */
    struct config defaults;
};

/* The image argument that reads standard input. */
#define STDIN_IMAGE "-"

static void print_line(cJSON *root)
{
    char *line = json_print_and_free(root);

    if (line) {
        puts(line);
        free(line);
    } else {
        puts("{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}");
    }
    fflush(stdout);
}

static void print_image_error(const char *path, const char *code, const char *message)
{
    cJSON *root = json_error(code, message);

    if (root)
        cJSON_AddItemToObject(root, "file", cJSON_CreateString(path));
    print_line(root);
}

/*
 * Loads the image named by an argument. "-" reads standard input, and a
 * pipe, FIFO or device is read to its end, both bounded by max_body_bytes
 * as a request body is in serve. Anything else goes through
 * yd_image_load(), which reports missing files and directories.
 */
static int load_image(const char *path, const struct detect_options *options, yd_image *image,
                      yd_error *error)
{
    const size_t max_bytes = options->defaults.max_body_bytes;
    const uint64_t max_pixels = options->defaults.max_pixels;
    char name[PATH_MAX + 3];
    struct stat st;
    int fd, rc;

    if (strcmp(path, STDIN_IMAGE) == 0)
        return yd_image_load_fd(STDIN_FILENO, "standard input", max_bytes, max_pixels, image,
                                error);
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return yd_image_load(path, max_pixels, image, error);

    /* Opening a FIFO waits for its writer, as any reader of a FIFO does. */
    fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return yd_error_set(error, YD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    snprintf(name, sizeof name, "'%s'", path);
    rc = yd_image_load_fd(fd, name, max_bytes, max_pixels, image, error);
    close(fd);
    return rc;
}

/* Processes one image; returns 0 on success, -1 after printing its error object. */
static int detect_file(yd_session *session, const yd_model *model, const char *variant,
                       const char *path, const struct detect_options *options,
                       const yd_detect_params *params)
{
    struct json_timings timings;
    yd_image image = { 0 };
    yd_result result = { 0 };
    yd_error error = { 0 };
    cJSON *root;
    double start = yd_now_ms();
    int rc;

    rc = load_image(path, options, &image, &error);
    timings.decode_ms = yd_now_ms() - start;
    if (rc < 0) {
        print_image_error(path, yd_error_name(rc), error.message);
        return -1;
    }

    rc = yd_detect(session, &image, params, &result, &error);
    yd_image_free(&image);
    if (rc < 0) {
        print_image_error(path, yd_error_name(rc), error.message);
        return -1;
    }

    timings.total_ms = yd_now_ms() - start;
    root = json_detect_result(model, variant, 1, &result, &timings);
    yd_result_free(&result);
    if (root)
        cJSON_AddItemToObject(root, "file", cJSON_CreateString(path));
    print_line(root);
    return 0;
}

/* Parses options into *options and collects the image paths into images. */
static int parse_detect_args(int argc, char **argv, struct detect_options *options,
                             char **images, int *image_count)
{
    char name[64], err[512];
    const char *value;
    int log_level = YD_LOG_WARN;

    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_print_help("detect");
            exit(0);
        }
        if (strcmp(argv[i], "--") == 0) {
            for (i++; i < argc; i++)
                images[(*image_count)++] = argv[i];
            break;
        }
        if (strncmp(argv[i], "--", 2) != 0) {
            images[(*image_count)++] = argv[i++];
            continue;
        }
        if (command_take_option(argc, argv, &i, name, sizeof name, &value, err, sizeof err) != 0) {
            fprintf(stderr, "yolod detect: %s\n", err);
            return EXIT_USAGE;
        }

        if (strcmp(name, "model") == 0) {
            options->model_path = value;
        } else if (strcmp(name, "conf") == 0) {
            options->text.conf = value;
        } else if (strcmp(name, "iou") == 0) {
            options->text.iou = value;
        } else if (strcmp(name, "max-det") == 0) {
            options->text.max_det = value;
        } else if (strcmp(name, "classes") == 0) {
            options->text.classes = value;
        } else if (strcmp(name, "threads") == 0 || strcmp(name, "max-pixels") == 0) {
            char key[64];

            snprintf(key, sizeof key, "%s", strcmp(name, "threads") == 0 ? "threads" : "max_pixels");
            if (config_set(&options->defaults, key, value, err, sizeof err) != 0) {
                /* err starts with the config key; the user typed the option. */
                fprintf(stderr, "yolod detect: --%s%s\n", name, err + strlen(key));
                return EXIT_USAGE;
            }
        } else if (strcmp(name, "log-level") == 0) {
            log_level = log_parse_level(value);
            if (log_level < 0) {
                fprintf(stderr, "yolod detect: invalid --log-level '%s' (expected debug, info, warn or error)\n", value);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "yolod detect: unknown option '--%s'; see 'yolod help detect'\n", name);
            return EXIT_USAGE;
        }
    }
    log_set_level(log_level);
    options->threads = options->defaults.threads;

    for (int i = 0, stdin_count = 0; i < *image_count; i++) {
        if (strcmp(images[i], STDIN_IMAGE) == 0 && ++stdin_count == 2) {
            fprintf(stderr, "yolod detect: '-' (standard input) given more than once; "
                    "give it at most once\n");
            return EXIT_USAGE;
        }
    }

    if (!options->model_path) {
        fprintf(stderr, "yolod detect: missing --model FILE; see 'yolod help detect'\n");
        return EXIT_USAGE;
    }
    if (*image_count == 0) {
        fprintf(stderr, "yolod detect: no image given; usage: yolod detect --model FILE IMAGE...\n");
        return EXIT_USAGE;
    }
    return 0;
}

int command_detect(int argc, char **argv)
{
    struct detect_options options;
    yd_model *model = NULL;
    yd_session *session = NULL;
    yd_detect_params params;
    yd_error error = { 0 };
    uint8_t *class_flags = NULL;
    char **images = calloc((size_t)argc, sizeof *images);
    char message[512];
    char variant[64];
    int image_count = 0, failures = 0;
    int status;

    memset(&options, 0, sizeof options);
    config_init(&options.defaults);
    if (!images) {
        fprintf(stderr, "yolod detect: out of memory\n");
        return EXIT_RUNTIME;
    }
    status = parse_detect_args(argc, argv, &options, images, &image_count);
    if (status != 0)
        goto cleanup;
    yd_set_log_callback(log_library_message, NULL);

    status = EXIT_RUNTIME;
    if (yd_model_load(options.model_path, NULL, &model, &error) < 0) {
        fprintf(stderr, "yolod detect: cannot load model: %s\n", error.message);
        goto cleanup;
    }
    /* The variant serve would give the file, so the output matches its replies. */
    registry_file_variant(options.model_path, model, variant, sizeof variant);
    registry_warn_variant_mismatch(options.model_path, model, variant);

    class_flags = calloc((size_t)yd_model_class_count(model) + 1, 1);
    if (!class_flags) {
        fprintf(stderr, "yolod detect: out of memory\n");
        goto cleanup;
    }
    if (params_parse(&options.text, &options.defaults, model, &params, class_flags,
                     message, sizeof message) != 0) {
        fprintf(stderr, "yolod detect: %s\n", message);
        status = EXIT_USAGE;
        goto cleanup;
    }

    if (yd_session_create(model, options.threads, &session, &error) < 0) {
        fprintf(stderr, "yolod detect: cannot create a session: %s\n", error.message);
        goto cleanup;
    }

    for (int i = 0; i < image_count; i++)
        if (detect_file(session, model, variant, images[i], &options, &params) != 0)
            failures++;
    if (failures > 0)
        fprintf(stderr, "yolod detect: %d of %d images failed\n", failures, image_count);
    status = failures > 0 ? EXIT_RUNTIME : 0;

cleanup:
    if (session)
        yd_session_destroy(session);
    if (model)
        yd_model_release(model);
    free(class_flags);
    free(images);
    config_free(&options.defaults);
    return status;
}
