/*
 * Subcommands of the yolod program and the option parsing they share.
 */
#ifndef YOLOD_DAEMON_COMMANDS_H
#define YOLOD_DAEMON_COMMANDS_H

#define YOLOD_VERSION "0.1.0"

/* Exit statuses: 0 success, 1 runtime failure, 2 invalid command line. */
enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

int command_serve(int argc, char **argv);
int command_detect(int argc, char **argv);
int command_eval(int argc, char **argv);
int command_compress(int argc, char **argv);
int command_inspect(int argc, char **argv);
int command_bench(int argc, char **argv);

/* Prints the help of `yolod eval` to stdout. */
void command_eval_print_help(void);
/* Return the commands' help texts; compress's lacks the variant list, printed after it. */
const char *command_eval_help_text(void);
const char *command_compress_help_text(void);
const char *command_inspect_help_text(void);
const char *command_bench_help_text(void);
void command_compress_print_help(void);
void command_inspect_print_help(void);
void command_bench_print_help(void);

/* Prints the help of a subcommand ("serve", "detect") to stdout; -1 if unknown. */
int command_print_help(const char *name);

/*
 * Splits argv[*index] into an option name and value, accepting "--name value"
 * and "--name=value", and advances *index past the arguments used. Returns 0,
 * or -1 with a message in err when the value is missing or the option was
 * given before (except serve's --model and --config).
 */
int command_take_option(int argc, char **argv, int *index, char *name, size_t name_size,
                        const char **value, char *err, size_t err_size);

/* Returns the help text of a command ("serve", "eval", ...), or NULL for an unknown one. */
const char *command_help_text(const char *name);

#endif /* YOLOD_DAEMON_COMMANDS_H */
