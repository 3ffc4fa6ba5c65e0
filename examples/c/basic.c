/* The smallest useful C host of mcprouter: start a router over one MCP server, list its
 * tools, call one, print what comes back, free everything.
 *
 *   cargo build && cc -std=c11 examples/c/basic.c -Iinclude target/debug/libmcprouter.a \
 *       -lpthread -ldl -lm -o basic && ./basic target/debug/mcprouter
 *
 * argv[1] is an MCP server command; the project's own test server is used by default. */
#include <stdio.h>
#include <stdlib.h>

#include "mcprouter.h"

static int fail(const char *what, mcprouter_status st, mcprouter_error *err) {
    fprintf(stderr, "%s: %s: %s\n", what, mcprouter_status_str(st), err ? mcprouter_error_message(err) : "");
    mcprouter_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    const char *server = argc > 1 ? argv[1] : "target/debug/mcprouter";
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "backends:\n  - name: demo\n    command: \"%s\"\n    args: [test-server, --name, demo]\n", server);

    mcprouter_error *err = NULL;
    mcprouter_router *router = NULL;
    mcprouter_status st = mcprouter_router_new_from_yaml(yaml, &router, &err);
    if (st != MCPROUTER_STATUS_OK) return fail("router", st, err);

    mcprouter_session *session = NULL;
    st = mcprouter_session_open(router, "basic-example", &session, &err);
    if (st != MCPROUTER_STATUS_OK) return fail("session", st, err);

    const char *messages[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\","
        "\"capabilities\":{},\"clientInfo\":{\"name\":\"basic.c\",\"version\":\"1\"}}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"hello from C\"}}}",
    };
    for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++) {
        char *reply = NULL;
        st = mcprouter_session_handle(session, messages[i], &reply, &err);
        if (st != MCPROUTER_STATUS_OK) return fail("handle", st, err);
        printf("%s\n", reply ? reply : "(no reply: a notification)");
        mcprouter_string_free(reply);
    }

    mcprouter_session_close(session);
    mcprouter_router_shutdown(router, 1000);
    mcprouter_router_free(router);
    return 0;
}
