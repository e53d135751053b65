/*
 * Health endpoints of the KServe v2 (Open Inference Protocol) REST API, so
 * KServe, Triton-style clients and orchestrators can probe yolod:
 *   GET /v2/health/live         200 {"live": true} while the process serves
 *   GET /v2/health/ready        200 {"ready": true}, or 503 {"ready": false}
 *   GET /v2/models/{name}/ready 200 {"name", "ready": true}, 503 when not
 *                               ready (any name while the startup models
 *                               load), 404 for a model that is not loaded
 */
#include <stdio.h>
#include <string.h>

#include "server.h"
#include "text.h"

#define MODELS_PREFIX "/v2/models/"
#define READY_SUFFIX "/ready"

static enum MHD_Result reply_flag(struct MHD_Connection *connection, struct request *request,
                                  unsigned int status, const char *name, bool value)
{
    cJSON *root = cJSON_CreateObject();

    if (root && !cJSON_AddBoolToObject(root, name, value)) {
        cJSON_Delete(root);
        root = NULL;
    }
    return server_reply_json(connection, request, status, root);
}

enum MHD_Result api_kserve_live(struct MHD_Connection *connection, struct request *request)
{
    return reply_flag(connection, request, MHD_HTTP_OK, "live", true);
}

/* Ready (200) once the models are loaded and the workers run, else 503 (starting, stopping, no model). */
enum MHD_Result api_kserve_ready(struct MHD_Connection *connection, struct request *request)
{
    bool ready = atomic_load(&request->server->ready) &&
                 registry_has_model(request->server->registry, NULL);

    return reply_flag(connection, request, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                      "ready", ready);
}

/*
 * The router sends only paths of the form /v2/models/{name}/ready here.
 * The KServe form with a version, /v2/models/{name}/versions/{v}/ready,
 * gets 404 that names the unversioned route.
 */
enum MHD_Result api_kserve_model_ready(struct MHD_Connection *connection, struct request *request)
{
    struct server *server = request->server;
    const char *name = request->path + strlen(MODELS_PREFIX);
    size_t name_length = strlen(name) - strlen(READY_SUFFIX);
    bool ready = atomic_load(&server->ready);
    char model[256], requested[TEXT_QUOTE_SIZE], quoted[TEXT_QUOTE_SIZE], names[512];
    bool found = false;
    cJSON *root;

    /* A name that does not fit is longer than any file name, so no model has it. */
    if (name_length < sizeof model) {
        snprintf(model, sizeof model, "%.*s", (int)name_length, name);
        found = registry_has_model(server->registry, model);
    }
    /* While the startup models load, a model not loaded yet may be one of
     * them, so it is not ready rather than unknown. */
    if (!found && !ready && !atomic_load(&server->stopping) && name_length < sizeof model &&
        !strstr(model, "/versions/"))
        found = true;
    if (!found) {
        /* Copied without the suffix because text_quote reads up to NUL; text_quote cuts it further. */
        snprintf(requested, sizeof requested, "%.*s", (int)name_length, name);
        if (strstr(requested, "/versions/"))
            return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "model_not_found",
                                      "model versions are not addressable here; use"
                                      " /v2/models/NAME/ready");
        registry_list_names(server->registry, names, sizeof names);
        return server_reply_error(connection, request, MHD_HTTP_NOT_FOUND, "model_not_found",
                                  "unknown model '%s' (loaded: %s)",
                                  text_quote(quoted, sizeof quoted, requested,
                                             TEXT_QUOTE_MAX_CHARS), names);
    }

    root = cJSON_CreateObject();
    if (root && (!cJSON_AddStringToObject(root, "name", model) ||
                 !cJSON_AddBoolToObject(root, "ready", ready))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return server_reply_json(connection, request,
                             ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, root);
}
