/* Hot reload through the C API (issue #15), run under valgrind by run.sh: add a backend,
 * see list_changed and its tools, refuse a bad config (the old one keeps serving, the
 * error names the line), remove the backend, read the generation from status and
 * metrics, free everything. */
#include <stdint.h>

#include "common.h"

/* Waits (up to ~60 s, valgrind is slow) for an event containing `needle`. */
static int wait_event_with(const mcprouter_session *s, const char *needle) {
    int i;
    for (i = 0; i < 600; i++) {
        char *ev = NULL;
        mcprouter_error *err = NULL;
        mcprouter_status st = mcprouter_session_next_event(s, 100, &ev, &err);
        mcprouter_error_free(err);
        if (st == MCPROUTER_STATUS_OK && ev != NULL) {
            int found = strstr(ev, needle) != NULL;
            mcprouter_string_free(ev);
            if (found) {
                return 1;
            }
        } else if (st != MCPROUTER_STATUS_TIMEOUT) {
            return 0;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *bin = test_server_bin(argc, argv);
    const char *one[] = {"alpha"};
    const char *two[] = {"alpha", "beta"};
    char *yaml1 = test_config(bin, one, 1);
    char *yaml2 = test_config(bin, two, 2);
    mcprouter_router *r = NULL;
    mcprouter_session *s = NULL;
    mcprouter_error *err = NULL;
    uint64_t generation = 0;
    char *text = NULL;

    CHECK_STATUS(mcprouter_router_new_from_yaml(yaml1, &r, &err), MCPROUTER_STATUS_OK, &err);
    if (r == NULL) {
        return finish();
    }
    CHECK_STATUS(mcprouter_session_open(r, "c-reload", &s, &err), MCPROUTER_STATUS_OK, &err);
    call_expect(s, INITIALIZE, "protocolVersion");
    mcprouter_string_free(call(s, INITIALIZED));
    call_expect(s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\"}}",
                "alpha");

    /* Add beta. */
    CHECK_STATUS(mcprouter_router_reload_from_yaml(r, yaml2, &generation, &err), MCPROUTER_STATUS_OK, &err);
    CHECK(generation == 2, "generation %llu", (unsigned long long)generation);
    CHECK(wait_event_with(s, "notifications/tools/list_changed"), "list_changed after the reload");
    call_expect(s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"beta__whoami\"}}",
                "beta");

    /* A bad config: refused with CONFIG, naming the line; the old one serves. */
    generation = 0;
    CHECK_STATUS(mcprouter_router_reload_from_yaml(r, "backends:\n  - name: x\n    comand: y\n", &generation, &err),
                 MCPROUTER_STATUS_CONFIG, &err);
    CHECK(mcprouter_router_reload_from_yaml(r, "backends: [\n", NULL, &err) == MCPROUTER_STATUS_CONFIG,
          "unparsable YAML is a CONFIG error");
    CHECK(err != NULL && strstr(mcprouter_error_message(err), "line") != NULL, "the error names the line: %s",
          err ? mcprouter_error_message(err) : "(none)");
    mcprouter_error_free(err);
    err = NULL;
    CHECK(generation == 0, "generation_out untouched on failure");
    CHECK_STATUS(mcprouter_router_reload_from_yaml(r, NULL, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_router_reload_from_yaml(NULL, yaml1, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_router_reload_from_file(r, "/nonexistent/mcprouter.yaml", NULL, &err),
                 MCPROUTER_STATUS_CONFIG, &err);
    call_expect(s, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"beta__whoami\"}}",
                "beta");

    /* Remove beta again (NULL generation_out is allowed). */
    CHECK_STATUS(mcprouter_router_reload_from_yaml(r, yaml1, NULL, &err), MCPROUTER_STATUS_OK, &err);
    call_expect(s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\"}}",
                "alpha");
    CHECK_STATUS(mcprouter_router_status(r, &text, &err), MCPROUTER_STATUS_OK, &err);
    CHECK(text != NULL && strstr(text, "\"generation\":3") != NULL, "status: %s", text ? text : "(none)");
    mcprouter_string_free(text);
    text = NULL;
    CHECK_STATUS(mcprouter_router_metrics(r, &text, &err), MCPROUTER_STATUS_OK, &err);
    CHECK(text != NULL && strstr(text, "mcprouter_reloads_total{outcome=\"error\"} 3") != NULL,
          "refusals counted");
    CHECK(text != NULL && strstr(text, "mcprouter_config_generation 3") != NULL, "generation shown");
    mcprouter_string_free(text);

    mcprouter_session_close(s);
    mcprouter_router_shutdown(r, 1000);
    CHECK_STATUS(mcprouter_router_reload_from_yaml(r, yaml1, NULL, &err), MCPROUTER_STATUS_CLOSED, &err);
    mcprouter_router_free(r);
    free(yaml1);
    free(yaml2);
    return finish();
}
