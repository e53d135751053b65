/*
 * Liveness and readiness for load balancers and orchestrators.
 */
#include "server.h"

enum MHD_Result api_health_live(struct MHD_Connection *connection, struct request *request)
{
    cJSON *root = cJSON_CreateObject();

    if (root && !cJSON_AddStringToObject(root, "status", "ok")) {
        cJSON_Delete(root);
        root = NULL;
    }
    return server_reply_json(connection, request, MHD_HTTP_OK, root);
}

/*
 * 200 once the models are loaded and the workers run; 503 before, while
 * stopping, and while no model is loaded (all were unloaded).
 */
enum MHD_Result api_health_ready(struct MHD_Connection *connection, struct request *request)
{
    struct server *server = request->server;
    bool ready = atomic_load(&server->ready) && registry_has_model(server->registry, NULL);
    cJSON *root = cJSON_CreateObject();
    cJSON *models = registry_names_json(server->registry);

    if (!root || !models) {
        cJSON_Delete(root);
        cJSON_Delete(models);
        return server_reply_json(connection, request, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
    }
    cJSON_AddStringToObject(root, "status", ready ? "ready" : "not_ready");
    cJSON_AddItemToObject(root, "models", models);
    return server_reply_json(connection, request,
                             ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, root);
}
