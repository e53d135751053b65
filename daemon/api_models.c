/*
 * Model administration:
 *   GET  /v1/models                 every loaded model with its variants and versions
 *   GET  /v1/models/{name}          one model, 404 when none of its variants is loaded
 *   POST /v1/models/{name}/reload   reloads the loaded variants from their files
 *   POST /v1/models/{name}/load     loads unloaded variants, and new files of the
 *                                   model in the model directory
 *   POST /v1/models/{name}/unload   stops serving the variants
 *   POST /v1/models/{name}/default  ?variant=V: the variant requests get by default
 * reload, load and unload take an optional ?variant=V to act on one variant.
 * They return 200 when every variant succeeded, 404 when nothing matched,
 * else 422 for a malformed or unsupported file and 500 for other failures.
 * A variant that failed to reload keeps serving its old version.
 */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "server.h"
#include "text.h"

#define MODELS_PREFIX "/v1/models/"

enum MHD_Result api_models_list(struct MHD_Connection *connection, struct request *request)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *models = registry_describe(request->server->registry, NULL);

    if (!root || !models) {
        cJSON_Delete(root);
        cJSON_Delete(models);
        return server_reply_json(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
    }
    cJSON_AddItemToObject(root, "models", models);
    return server_reply_json(connection, request, MHD_HTTP_OK, root);
}

static enum MHD_Result reply_unknown_model(struct MHD_Connection *connection,
                                           struct request *request, const char *name)
{
    char quoted[TEXT_QUOTE_SIZE], names[512];

    registry_list_names(request->server->registry, names, sizeof names);
    return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "model_not_found",
                              "unknown model '%s' (loaded: %s)",
                              text_quote(quoted, sizeof quoted, name, TEXT_QUOTE_MAX_CHARS), names);
}

enum MHD_Result api_models_get(struct MHD_Connection *connection, struct request *request)
{
    const char *name = request->path + strlen(MODELS_PREFIX);
    cJSON *model = registry_describe(request->server->registry, name);

    if (!model)
        return reply_unknown_model(connection, request, name);
    return server_reply_json(connection, request, MHD_HTTP_OK, model);
}

/* Copies the {name} of /v1/models/{name}/ACTION into out; the router checked the form. */
static void action_model_name(const struct request *request, char *out, size_t out_size)
{
    const char *start = request->path + strlen(MODELS_PREFIX);

    snprintf(out, out_size, "%.*s", (int)(strchr(start, '/') - start), start);
}

static enum MHD_Result count_variant(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    if (strcmp(key, "variant") == 0)
        (*(int *)cls)++;
    return MHD_YES;
}

/* Counts the ?variant= parameters; every admin route rejects more than one. */
static int variant_count(struct MHD_Connection *connection)
{
    int count = 0;

    MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, count_variant, &count);
    return count;
}

/* The ?variant= query value, or NULL. */
static const char *query_variant(struct MHD_Connection *connection)
{
    const char *variant = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "variant");

    return variant && variant[0] ? variant : NULL;
}

/*
 * Rejects a ?variant= that is repeated or empty with 400, and returns 1
 * after replying. Otherwise a repeated one would act on the first silently,
 * and an empty one on every variant. `optional` is set when the route
 * acts on every variant without the parameter.
 */
static int reject_bad_variant(struct MHD_Connection *connection, struct request *request,
                              bool optional, enum MHD_Result *result)
{
    const char *variant = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "variant");
    int count = variant_count(connection);

    if (count > 1) {
        *result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                                     "query parameter 'variant' appears %d times; send it once",
                                     count);
        return 1;
    }
    /* "?variant" without "=" counts as a parameter with a NULL value. */
    if (count == 1 && (!variant || !variant[0])) {
        *result = server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                                     "query parameter 'variant' is empty; name a variant%s",
                                     optional ? ", or leave the parameter out to act on every"
                                                " variant" : "");
        return 1;
    }
    return 0;
}


/* 404 for an operation that matched no variant: names what is there. */
static enum MHD_Result reply_no_match(struct MHD_Connection *connection, struct request *request,
                                      const char *name, const char *variant, const char *action)
{
    char quoted_name[TEXT_QUOTE_SIZE], quoted_variant[TEXT_QUOTE_SIZE], variants[512];

    if (!variant || !registry_knows(request->server->registry, name))
        return reply_unknown_model(connection, request, name);
    registry_list_variants(request->server->registry, name, variants, sizeof variants);
    return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "variant_not_found",
                              "nothing to %s: model '%s' has no variant '%s' (loaded: %s)", action,
                              text_quote(quoted_name, sizeof quoted_name, name, TEXT_QUOTE_MAX_CHARS),
                              text_quote(quoted_variant, sizeof quoted_variant, variant,
                                         TEXT_QUOTE_MAX_CHARS),
                              variants);
}

/* Replies with every variant's outcome; the status reflects the worst one. */
/* Counts the failures among the results listed in the reply. */
static int listed_failures(const struct registry_results *results)
{
    int failures = 0;

    for (int i = 0; i < results->count; i++)
        failures += results->items[i].code != YD_OK;
    return failures;
}

static enum MHD_Result reply_results(struct MHD_Connection *connection, struct request *request,
                                     const char *name, const struct registry_results *results)
{
    unsigned int status = MHD_HTTP_OK;
    cJSON *root = cJSON_CreateObject(), *variants;

    variants = root ? cJSON_AddArrayToObject(root, "variants") : NULL;
    if (!variants || !cJSON_AddStringToObject(root, "name", name)) {
        cJSON_Delete(root);
        return server_reply_json(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
    }
    for (int i = 0; i < results->count; i++) {
        const struct registry_result *result = &results->items[i];
        cJSON *item = cJSON_CreateObject();
        char message[sizeof result->message];

        if (!item) {
            cJSON_Delete(root);
            return server_reply_json(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        }
        cJSON_AddItemToArray(variants, item);
        cJSON_AddStringToObject(item, "variant", result->variant);
        cJSON_AddStringToObject(item, "result", result->action);
        cJSON_AddNumberToObject(item, "version", (double)result->version);
        if (result->code == YD_OK)
            continue;
        snprintf(message, sizeof message, "%s", result->message);
        text_make_valid(message);
        cJSON_AddStringToObject(item, "error", message);
        /* A name conflict (409) outranks a malformed file (422), and any other
         * failure (500) outranks both. */
        if (result->conflict) {
            if (status != MHD_HTTP_INTERNAL_SERVER_ERROR)
                status = MHD_HTTP_CONFLICT;
        } else if (result->code == YD_ERR_MODEL_FORMAT || result->code == YD_ERR_MODEL_UNSUPPORTED) {
            if (status == MHD_HTTP_OK)
                status = MHD_HTTP_UNPROCESSABLE_CONTENT;
        } else {
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    /* Failures past the listed results are only counted, and only the log names them. */
    if (results->failures > listed_failures(results))
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    if (status != MHD_HTTP_OK) {
        const char *code = status == MHD_HTTP_INTERNAL_SERVER_ERROR ? "load_failed"
                           : status == MHD_HTTP_CONFLICT            ? "name_conflict"
                                                                    : "model_invalid";
        char message[256];
        cJSON *error;

        snprintf(message, sizeof message, "at least one variant failed to load; a variant that was"
                 " serving keeps its old version (see variants%s)",
                 results->total > results->count ? "; the log lists the results not shown" : "");
        error = json_error(code, message);

        if (error)
            cJSON_AddItemToObject(root, "error", cJSON_DetachItemFromObject(error, "error"));
        cJSON_Delete(error);
    }
    return server_reply_json(connection, request, status, root);
}

/*
 * Runs reload or unload (`change`, named `action` in messages) on the
 * model of the path, lets the workers drop the sessions of replaced
 * versions, and replies with each variant's outcome.
 */
static enum MHD_Result change_variants(struct MHD_Connection *connection, struct request *request,
                                       int (*change)(struct registry *, const char *,
                                                     const char *, struct registry_results *),
                                       const char *action)
{
    struct server *server = request->server;
    struct registry_results results;
    const char *variant = query_variant(connection);
    enum MHD_Result rejected;
    char name[256];

    action_model_name(request, name, sizeof name);
    if (reject_bad_variant(connection, request, true, &rejected))
        return rejected;
    if (change(server->registry, name, variant, &results) != YD_OK)
        return reply_no_match(connection, request, name, variant, action);
    worker_pool_prune(server->pool);
    return reply_results(connection, request, name, &results);
}

enum MHD_Result api_models_reload(struct MHD_Connection *connection, struct request *request)
{
    return change_variants(connection, request, registry_reload, "reload");
}

enum MHD_Result api_models_load(struct MHD_Connection *connection, struct request *request)
{
    struct server *server = request->server;
    struct registry_results results;
    const char *variant = query_variant(connection);
    enum MHD_Result rejected;
    char name[256], quoted[TEXT_QUOTE_SIZE], quoted_variant[TEXT_QUOTE_SIZE], variants[512];

    action_model_name(request, name, sizeof name);
    if (reject_bad_variant(connection, request, true, &rejected))
        return rejected;
    if (registry_load(server->registry, name, variant, server->config->model_dir,
                      &results) == YD_OK)
        return reply_results(connection, request, name, &results);
    if (variant && registry_knows(server->registry, name)) {
        registry_list_variants(server->registry, name, variants, sizeof variants);
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "variant_not_found",
                                  "no file to load for variant '%s' of model '%s': the model"
                                  " directory has no NAME.VARIANT.yolod file for it (loaded: %s)",
                                  text_quote(quoted_variant, sizeof quoted_variant, variant,
                                             TEXT_QUOTE_MAX_CHARS),
                                  text_quote(quoted, sizeof quoted, name, TEXT_QUOTE_MAX_CHARS),
                                  variants);
    }
    text_quote(quoted, sizeof quoted, name, TEXT_QUOTE_MAX_CHARS);
    if (variant)
        text_quote(quoted_variant, sizeof quoted_variant, variant, TEXT_QUOTE_MAX_CHARS);
    return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "model_not_found",
                              "no file to load for model '%s'%s%s%s: it has no unloaded variant"
                              " to load again, and %s",
                              quoted, variant ? " variant '" : "", variant ? quoted_variant : "",
                              variant ? "'" : "",
                              server->config->model_dir
                                  ? "the model directory has no such NAME.onnx or"
                                    " NAME.VARIANT.yolod file"
                                  : "without a model directory (--model-dir) there are no new"
                                    " files to look for");
}

enum MHD_Result api_models_unload(struct MHD_Connection *connection, struct request *request)
{
    return change_variants(connection, request, registry_unload, "unload");
}

enum MHD_Result api_models_set_default(struct MHD_Connection *connection,
                                       struct request *request)
{
    struct server *server = request->server;
    const char *variant = query_variant(connection);
    enum MHD_Result rejected;
    yd_error error = { 0 };
    char name[256];
    cJSON *model;

    action_model_name(request, name, sizeof name);
    if (reject_bad_variant(connection, request, false, &rejected))
        return rejected;
    if (!variant)
        return server_reply_error(connection, request, MHD_HTTP_BAD_REQUEST, "bad_parameter",
                                  "missing query parameter 'variant': POST"
                                  " /v1/models/{name}/default?variant=VARIANT");
    if (!registry_has_model(server->registry, name))
        return reply_unknown_model(connection, request, name);
    if (registry_set_default(server->registry, name, variant, &error) != YD_OK)
        return reply_no_match(connection, request, name, variant, "make default");
    model = registry_describe(server->registry, name);
    if (!model)
        return reply_unknown_model(connection, request, name);
    return server_reply_json(connection, request, MHD_HTTP_OK, model);
}
