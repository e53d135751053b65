/*
 * Model administration:
 *   GET  /v1/models               every model with its variants and versions
 *   GET  /v1/models/{name}        one model, 404 when unknown
 *   POST /v1/models/{name}/reload reloads every variant of the model from its
 *                                 file; 200 when all succeeded, else 422 for a
 *                                 malformed or unsupported file and 500 for
 *                                 other failures, and the old version serves on
 */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "server.h"
#include "text.h"

#define MODELS_PREFIX "/v1/models/"
#define RELOAD_SUFFIX "/reload"

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

enum MHD_Result api_models_reload(struct MHD_Connection *connection, struct request *request)
{
    struct server *server = request->server;
    struct registry_reload_result results[REGISTRY_MAX_VARIANTS];
    const char *start = request->path + strlen(MODELS_PREFIX);
    char name[256];
    unsigned int status = MHD_HTTP_OK;
    cJSON *root, *variants;
    int tried;

    snprintf(name, sizeof name, "%.*s", (int)(strlen(start) - strlen(RELOAD_SUFFIX)), start);
    tried = registry_reload(server->registry, name, results, REGISTRY_MAX_VARIANTS);
    if (tried < 0)
        return reply_unknown_model(connection, request, name);
    worker_pool_prune(server->pool);

    root = cJSON_CreateObject();
    variants = root ? cJSON_AddArrayToObject(root, "variants") : NULL;
    if (!variants || !cJSON_AddStringToObject(root, "name", name)) {
        cJSON_Delete(root);
        return server_reply_json(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
    }
    for (int i = 0; i < tried && i < REGISTRY_MAX_VARIANTS; i++) {
        cJSON *item = cJSON_CreateObject();

        if (!item) {
            cJSON_Delete(root);
            return server_reply_json(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
        }
        cJSON_AddItemToArray(variants, item);
        cJSON_AddStringToObject(item, "variant", results[i].variant);
        cJSON_AddStringToObject(item, "result", results[i].ok ? "success" : "failure");
        cJSON_AddNumberToObject(item, "version", (double)results[i].version);
        if (results[i].ok)
            continue;
        text_make_valid(results[i].message);
        cJSON_AddStringToObject(item, "error", results[i].message);
        if (results[i].code == YD_ERR_MODEL_FORMAT || results[i].code == YD_ERR_MODEL_UNSUPPORTED) {
            if (status == MHD_HTTP_OK)
                status = MHD_HTTP_UNPROCESSABLE_CONTENT;
        } else {
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    if (status != MHD_HTTP_OK) {
        cJSON *error = json_error(status == MHD_HTTP_INTERNAL_SERVER_ERROR ? "reload_failed"
                                                                           : "model_invalid",
                                  "reload failed for at least one variant; the old version"
                                  " keeps serving it (see variants)");

        if (error)
            cJSON_AddItemToObject(root, "error", cJSON_DetachItemFromObject(error, "error"));
        cJSON_Delete(error);
    }
    return server_reply_json(connection, request, status, root);
}
