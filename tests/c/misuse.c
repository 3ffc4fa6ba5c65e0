/* Misuse of the C API: each case returns the documented status, clears the out-params,
 * and hands back an error object when asked for one. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <time.h>

#include "common.h"

#define ECHO                                                                                      \
    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":" \
    "{\"message\":\"x\"}}}"

static atomic_int g_closed_replies;

static void on_reply(void *userdata, mcprouter_status status, char *reply, const char *error_message) {
    (void)userdata;
    if (status == MCPROUTER_STATUS_CLOSED && reply == NULL && error_message != NULL) {
        atomic_fetch_add(&g_closed_replies, 1);
    }
    mcprouter_string_free(reply);
}

/* A non-NULL pointer value to check out-params are cleared; never dereferenced. */
static char g_junk;
#define JUNK ((void *)&g_junk)

static void test_nulls(const mcprouter_router *r, const mcprouter_session *s) {
    mcprouter_error *err = NULL;
    mcprouter_router *router = (mcprouter_router *)JUNK;
    mcprouter_session *session = (mcprouter_session *)JUNK;
    char *text = (char *)JUNK;

    CHECK_STATUS(mcprouter_router_new_from_yaml(NULL, &router, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK(router == NULL, "out cleared on error");
    CHECK_STATUS(mcprouter_router_new_from_yaml("backends: []\n", NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_router_new_from_file(NULL, &router, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_router_new_from_file("/x", NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    /* err may be NULL. */
    CHECK(mcprouter_router_new_from_yaml(NULL, &router, NULL) == MCPROUTER_STATUS_NULL_PARAMETER, "err NULL");

    CHECK_STATUS(mcprouter_session_open(NULL, NULL, &session, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK(session == NULL, "out cleared on error");
    CHECK_STATUS(mcprouter_session_open(r, NULL, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);

    text = (char *)JUNK;
    CHECK_STATUS(mcprouter_session_handle(NULL, ECHO, &text, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK(text == NULL, "reply_out cleared on error");
    CHECK_STATUS(mcprouter_session_handle(s, NULL, &text, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_session_handle(s, ECHO, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    text = (char *)JUNK;
    CHECK_STATUS(mcprouter_session_next_event(NULL, 0, &text, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK(text == NULL, "event_out cleared on error");
    CHECK_STATUS(mcprouter_session_next_event(s, 0, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK(mcprouter_session_handle_async(NULL, ECHO, on_reply, NULL) == MCPROUTER_STATUS_NULL_PARAMETER, "async s");
    CHECK(mcprouter_session_handle_async(s, NULL, on_reply, NULL) == MCPROUTER_STATUS_NULL_PARAMETER, "async msg");
    CHECK(mcprouter_session_handle_async(s, ECHO, NULL, NULL) == MCPROUTER_STATUS_NULL_PARAMETER, "async cb");

    text = (char *)JUNK;
    CHECK_STATUS(mcprouter_router_status(NULL, &text, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK(text == NULL, "json_out cleared on error");
    CHECK_STATUS(mcprouter_router_status(r, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_router_metrics(NULL, &text, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);
    CHECK_STATUS(mcprouter_router_metrics(r, NULL, &err), MCPROUTER_STATUS_NULL_PARAMETER, &err);

    /* NULL is a no-op for every destructor and for shutdown. */
    mcprouter_session_close(NULL);
    mcprouter_router_shutdown(NULL, 0);
    mcprouter_router_free(NULL);
    mcprouter_string_free(NULL);
    mcprouter_error_free(NULL);
    CHECK(mcprouter_error_status(NULL) == MCPROUTER_STATUS_NULL_PARAMETER, "error_status(NULL)");
    CHECK(mcprouter_error_message(NULL) != NULL, "error_message(NULL) is a static message");
}

static void test_bad_input(const mcprouter_router *r, const mcprouter_session *s) {
    mcprouter_error *err = NULL;
    mcprouter_router *router = NULL;
    mcprouter_session *session = NULL;
    char *text = NULL;

    CHECK_STATUS(mcprouter_router_new_from_yaml("backends: []\n\xff\n", &router, &err), MCPROUTER_STATUS_INVALID_UTF8,
                 &err);
    CHECK_STATUS(mcprouter_router_new_from_file("/tmp/\xc3(", &router, &err), MCPROUTER_STATUS_INVALID_UTF8, &err);
    CHECK_STATUS(mcprouter_session_open(r, "client-\xe2\x82", &session, &err), MCPROUTER_STATUS_INVALID_UTF8, &err);
    CHECK_STATUS(mcprouter_session_handle(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", &text, &err),
                 MCPROUTER_STATUS_INVALID_UTF8, &err);
    CHECK(mcprouter_session_handle_async(s, "\xff", on_reply, NULL) == MCPROUTER_STATUS_INVALID_UTF8, "async utf8");

    /* Config errors name what is wrong. */
    CHECK(mcprouter_router_new_from_yaml("backends: 3\n", &router, &err) == MCPROUTER_STATUS_CONFIG, "bad type");
    CHECK(err != NULL && strstr(mcprouter_error_message(err), "backends") != NULL, "message: %s",
          err ? mcprouter_error_message(err) : "(none)");
    mcprouter_error_free(err);
    err = NULL;
    CHECK_STATUS(mcprouter_router_new_from_yaml("bogus_key: 1\n", &router, &err), MCPROUTER_STATUS_CONFIG, &err);
    CHECK_STATUS(mcprouter_router_new_from_file("/nonexistent/mcprouter.yaml", &router, &err), MCPROUTER_STATUS_CONFIG,
                 &err);
    CHECK(router == NULL, "no router on error");

    /* Invalid JSON and unknown methods are not statuses: they get JSON-RPC error replies. */
    call_expect(s, "{not json", "-32700");
    call_expect(s, "[]", "-32600");
    call_expect(s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"no/such\"}", "-32601");
    call_expect(s, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}",
                "Unknown tool");

    CHECK(strcmp(mcprouter_status_str((mcprouter_status)999), "UNKNOWN") == 0, "unknown status name");
    CHECK(strcmp(mcprouter_status_str(MCPROUTER_STATUS_PANIC), "PANIC") == 0, "PANIC name");
}

static void test_after_shutdown(mcprouter_router *r, const mcprouter_session *s) {
    mcprouter_error *err = NULL;
    mcprouter_session *session = (mcprouter_session *)JUNK;
    char *text = (char *)JUNK;

    mcprouter_router_shutdown(r, 500);
    mcprouter_router_shutdown(r, 500); /* idempotent */
    CHECK_STATUS(mcprouter_session_handle(s, ECHO, &text, &err), MCPROUTER_STATUS_CLOSED, &err);
    CHECK(text == NULL, "no reply after shutdown");
    CHECK_STATUS(mcprouter_session_next_event(s, 10, &text, &err), MCPROUTER_STATUS_CLOSED, &err);
    CHECK(mcprouter_session_handle_async(s, ECHO, on_reply, NULL) == MCPROUTER_STATUS_OK,
          "an async call still starts (and its callback gets CLOSED)");
    CHECK_STATUS(mcprouter_session_open(r, NULL, &session, &err), MCPROUTER_STATUS_CLOSED, &err);
    CHECK(session == NULL, "no session after shutdown");
    CHECK_STATUS(mcprouter_router_status(r, &text, &err), MCPROUTER_STATUS_CLOSED, &err);
    CHECK_STATUS(mcprouter_router_metrics(r, &text, &err), MCPROUTER_STATUS_CLOSED, &err);
    CHECK(text == NULL, "no text after shutdown");
    for (int i = 0; i < 500 && atomic_load(&g_closed_replies) == 0; i++) {
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    CHECK(atomic_load(&g_closed_replies) == 1, "the async call after shutdown got CLOSED");
}

int main(int argc, char **argv) {
    const char *bin = test_server_bin(argc, argv);
    const char *names[] = {"alpha"};
    char *yaml = test_config(bin, names, 1);
    mcprouter_router *r = NULL;
    mcprouter_session *s = NULL;
    mcprouter_error *err = NULL;

    CHECK_STATUS(mcprouter_router_new_from_yaml(yaml, &r, &err), MCPROUTER_STATUS_OK, &err);
    CHECK_STATUS(mcprouter_session_open(r, NULL, &s, &err), MCPROUTER_STATUS_OK, &err);
    free(yaml);
    if (r == NULL || s == NULL) {
        return finish();
    }
    call_expect(s, INITIALIZE, "protocolVersion");
    test_nulls(r, s);
    test_bad_input(r, s);
    test_after_shutdown(r, s);
    mcprouter_session_close(s);
    mcprouter_router_free(r);
    return finish();
}
