/*
 * yolod: subcommand dispatch, help and version.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

/* Spin iterations at an OpenMP barrier before a thread sleeps. */
#define YOLOD_GOMP_SPINCOUNT "2000"

static const char usage_text[] =
    "Usage: yolod COMMAND [OPTIONS]\n"
    "\n"
    "YOLOv8 object detection on the CPU, over HTTP or from the command line.\n"
    "\n"
    "Commands:\n"
    "  serve    run the HTTP detection server\n"
    "  detect   detect objects in image files, one JSON line per image\n"
    "  eval     measure COCO mAP of a model on an annotated image folder\n"
    "  compress turn an ONNX export into a .yolod variant (fp32, fp16, ...)\n"
    "  inspect  print a model's layers, precision, sizes, FLOPs and provenance\n"
    "  bench    time the network on a fixed input, or a whole request (--image)\n"
    "  help     show the help of a command: yolod help serve\n"
    "\n"
    "Options:\n"
    "  --help       show this help\n"
    "  --version    show the version\n";

static const char serve_help[] =
    "Usage: yolod serve (--model FILE... | --model-dir DIR | --config FILE) [OPTIONS]\n"
    "\n"
    "Runs the HTTP server: POST /v1/detect, POST /v1/vision/detection (DeepStack),\n"
    "GET /v1/models and the admin routes under /v1/models/NAME/, GET /metrics,\n"
    "GET /healthz, /readyz and the KServe /v2/health/*; api-docs/openapi.yaml has them all.\n"
    "Command-line options override the config file, which overrides the defaults.\n"
    "\n"
    "Options:\n"
    "  --config FILE            read settings from FILE (key = value lines); at most one\n"
    "  --model FILE             ONNX or .yolod model to load; repeat for several models. The first\n"
    "                           is the default; requests choose another with model=NAME,\n"
    "                           where NAME is the file name without its extension.\n"
    "                           Replaces the config file's models.\n"
    "  --model-dir DIR          also load every NAME.onnx (variant fp32) and\n"
    "                           NAME.VARIANT.yolod in DIR; requests choose a variant\n"
    "                           with variant=VARIANT, else the model's first one.\n"
    "                           POST /v1/models/NAME/reload reloads NAME's files.\n"
    "  --watch-model-dir yes|no load files written or renamed into DIR, reload replaced\n"
    "                           ones and unload removed ones (default yes)\n"
    "  --default-variant V      the variant requests get when they name none, for every\n"
    "                           model that has it (default: its first loaded)\n"
    "  --listen HOST:PORT       address to listen on (default 127.0.0.1:8080);\n"
    "                           [::1]:8080 for IPv6, 0.0.0.0:8080 for every interface\n"
    "  --workers N              inference workers (default 1)\n"
    "  --threads N              OpenMP threads per worker (default 0 = cores / workers)\n"
    "  --queue-size N           requests decoding or waiting for a worker; one more\n"
    "                           gets 503 (default 16)\n"
    "  --max-decodes N          images decoded at once; more requests wait for a slot\n"
    "                           (default 0 = 2 * cores)\n"
    "  --max-connections-per-ip N\n"
    "                           open connections from one client address; more are\n"
    "                           closed at once (default 32, 0 = no limit; of 256 in all)\n"
    "  --max-body-bytes N       largest request body, bytes; K, M, G suffixes are\n"
    "                           powers of 1024 (default 32M)\n"
    "  --max-buffered-bytes N   request bodies held in memory at once, all clients\n"
    "                           together; a body that would pass it gets 503\n"
    "                           (default 256M; at least max_body_bytes)\n"
    "  --max-pixels N           largest decoded image, width * height; K, M suffixes are\n"
    "                           powers of 1000 (default 50M)\n"
    "  --conf X                 default confidence threshold, 0 to 1 (default 0.25)\n"
    "  --iou X                  default NMS IoU threshold, 0 to 1 (default 0.7)\n"
    "  --max-det N              default detections per image, 1 to 300 (default 300)\n"
    "  --request-timeout S      idle connection timeout, and the longest time from a\n"
    "                           request's headers to the end of its body, seconds\n"
    "                           (default 30)\n"
    "  --log-level LEVEL        debug, info, warn or error (default info)\n"
    "\n"
    "SIGHUP rereads the config file and flags: model lines, the model directory's\n"
    "files, watch_model_dir, default_variant and log_level apply at once.\n"
    "The log says \"listening on http://ADDRESS, loading the models\" when the port\n"
    "opens (/healthz answers, detections get 503 starting) and \"yolod ready on\n"
    "http://ADDRESS, models: ...\" once every model is loaded; wait for the second.\n"
    "SIGINT or SIGTERM stops accepting connections, finishes queued requests (for up to\n"
    "request_timeout seconds; requests still queued then get 503, and connections\n"
    "still sending a request body are closed) and exits 0;\n"
    "while the models are still loading, it exits 0 at once, and during a reload or a\n"
    "model directory rescan it loads no more files. SIGUSR1 is logged and ignored.\n"
    "\n"
    "Exit status: 0 after SIGINT or SIGTERM, 1 if the server cannot start (the port\n"
    "is taken, no model loads), 2 for invalid usage, including option and config\n"
    "values that contradict each other.\n";

static const char detect_help[] =
    "Usage: yolod detect --model FILE [OPTIONS] IMAGE...\n"
    "\n"
    "Detects objects in each JPEG or PNG image and prints one JSON object per image\n"
    "on its own line, shaped like the POST /v1/detect response plus a \"file\" field.\n"
    "An image that cannot be read or decoded prints {\"file\": ..., \"error\": {...}};\n"
    "the other images are still processed and the exit status is 1.\n"
    "\n"
    "IMAGE '-' reads one image from standard input, and may be given once. A pipe\n"
    "or FIFO, such as <(curl -s URL), is read to its end. An image read from\n"
    "standard input or a pipe may be at most 32 MiB, the default max_body_bytes\n"
    "of serve; save a larger one to a file and pass its path.\n"
    "\n"
    "Options:\n"
    "  --model FILE             ONNX or .yolod model to load (required)\n"
    "  --conf X                 confidence threshold, 0 to 1 (default 0.25)\n"
    "  --iou X                  NMS IoU threshold, 0 to 1 (default 0.7)\n"
    "  --max-det N              detections per image, 1 to 300 (default 300)\n"
    "  --classes LIST           keep only these classes: comma-separated ids or names\n"
    "  --threads N              OpenMP threads (default 0 = all cores)\n"
    "  --max-pixels N           largest decoded image, width * height (default 50M)\n"
    "  --log-level LEVEL        debug, info, warn or error (default warn)\n"
    "\n"
    "Exit status: 0 if every image was processed, 1 if any failed, 2 for invalid usage.\n";

const char *command_help_text(const char *name)
{
    if (strcmp(name, "serve") == 0)
        return serve_help;
    if (strcmp(name, "detect") == 0)
        return detect_help;
    if (strcmp(name, "eval") == 0)
        return command_eval_help_text();
    if (strcmp(name, "compress") == 0)
        return command_compress_help_text();
    if (strcmp(name, "inspect") == 0)
        return command_inspect_help_text();
    if (strcmp(name, "bench") == 0)
        return command_bench_help_text();
    return NULL;
}

int command_print_help(const char *name)
{
    if (strcmp(name, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(name, "serve") == 0)
        fputs(serve_help, stdout);
    else if (strcmp(name, "detect") == 0)
        fputs(detect_help, stdout);
    else if (strcmp(name, "eval") == 0)
        command_eval_print_help();
    else if (strcmp(name, "compress") == 0)
        command_compress_print_help();
    else if (strcmp(name, "inspect") == 0)
        command_inspect_print_help();
    else if (strcmp(name, "bench") == 0)
        command_bench_print_help();
    else
        return -1;
    return 0;
}

/*
 * Whether option `name` appears in argv[1..end) as --name or --name=VALUE.
 * Any option given twice is an error, so `--model a --model b` never
 * silently means b. serve's --model may be repeated, and serve names both
 * files of a repeated --config itself.
 */
static bool option_repeated(char **argv, int end, const char *name)
{
    size_t length = strlen(name);

    if (strcmp(argv[0], "serve") == 0 && (strcmp(name, "model") == 0 || strcmp(name, "config") == 0))
        return false;
    for (int j = 1; j < end; j++)
        if (strncmp(argv[j], "--", 2) == 0 && strncmp(argv[j] + 2, name, length) == 0 &&
            (argv[j][2 + length] == '\0' || argv[j][2 + length] == '='))
            return true;
    return false;
}

int command_take_option(int argc, char **argv, int *index, char *name, size_t name_size,
                        const char **value, char *err, size_t err_size)
{
    const char *arg = argv[*index] + 2;
    const char *equals = strchr(arg, '=');

    snprintf(name, name_size, "%.*s", (int)(equals ? equals - arg : (ptrdiff_t)strlen(arg)), arg);
    if (option_repeated(argv, *index, name)) {
        snprintf(err, err_size, "option '--%s' given twice; give it once", name);
        return -1;
    }

    if (equals) {
        snprintf(name, name_size, "%.*s", (int)(equals - arg), arg);
        *value = equals + 1;
        *index += 1;
        return 0;
    }
    snprintf(name, name_size, "%s", arg);
    if (*index + 1 >= argc) {
        /* The last argument: a value option that lacks its value if the
         * command's help lists it (argv[0] is the command), else unknown. */
        const char *help = command_help_text(argv[0]);
        char listed[80];

        snprintf(listed, sizeof listed, "--%s ", name);
        if (help && strstr(help, listed))
            snprintf(err, err_size, "option '--%s' needs a value", name);
        else
            snprintf(err, err_size, "unknown option '--%s'; see 'yolod help %s'", name, argv[0]);
        return -1;
    }
    *value = argv[*index + 1];
    *index += 2;
    return 0;
}

/*
 * Bounds how long OpenMP threads spin at a barrier before sleeping. By
 * default libgomp spins about 300000 iterations when it thinks cores are
 * free; on a machine where another process occupies a core that spinning
 * steals the time slices of the thread still working, and measured 5x
 * slower inferences. libgomp reads these variables once, when it loads, so
 * the program runs itself again with the setting in its environment. Users
 * who set OMP_WAIT_POLICY or GOMP_SPINCOUNT themselves keep their choice.
 */
static void set_openmp_spin(char **argv)
{
    const char *preload = getenv("LD_PRELOAD");
    char self[PATH_MAX];
    ssize_t length;

    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return;
    /* Under valgrind /proc/self/exe is valgrind's tool, not yolod. */
    if (preload && strstr(preload, "vgpreload"))
        return;
    if (setenv("GOMP_SPINCOUNT", YOLOD_GOMP_SPINCOUNT, 1) != 0)
        return;
    /* The process name is the executed file's name, so exec the binary by
     * its own path: through /proc/self/exe, pgrep and top would show "exe". */
    length = readlink("/proc/self/exe", self, sizeof self - 1);
    if (length > 0) {
        self[length] = '\0';
        execv(self, argv);
    }
    /* exec failed (no /proc): carry on with libgomp's defaults. */
}

/*
 * Opens /dev/null on any of the standard descriptors 0 to 2 that is closed.
 * Otherwise the next open() or socket() takes its number, and log lines
 * meant for stderr go into a model file or a client's socket.
 */
static void open_standard_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        /* open() returns the lowest free number, which is fd. */
        if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
            abort();
    }
}

int main(int argc, char **argv)
{
    open_standard_fds();
    set_openmp_spin(argv);

    const char *command = argc > 1 ? argv[1] : NULL;

    if (!command) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(command, "--version") == 0) {
        printf("yolod %s\n", YOLOD_VERSION);
        return 0;
    }
    if (strcmp(command, "help") == 0) {
        if (argc < 3) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (command_print_help(argv[2]) != 0) {
            fprintf(stderr, "yolod: unknown command '%s' (commands: serve, detect, eval, compress, inspect, bench, help)\n", argv[2]);
            return EXIT_USAGE;
        }
        return 0;
    }
    if (strcmp(command, "serve") == 0)
        return command_serve(argc - 1, argv + 1);
    if (strcmp(command, "detect") == 0)
        return command_detect(argc - 1, argv + 1);
    if (strcmp(command, "eval") == 0)
        return command_eval(argc - 1, argv + 1);
    if (strcmp(command, "compress") == 0)
        return command_compress(argc - 1, argv + 1);
    if (strcmp(command, "inspect") == 0)
        return command_inspect(argc - 1, argv + 1);
    if (strcmp(command, "bench") == 0)
        return command_bench(argc - 1, argv + 1);

    fprintf(stderr, "yolod: unknown command '%s'; run 'yolod --help' for the commands\n", command);
    return EXIT_USAGE;
}
