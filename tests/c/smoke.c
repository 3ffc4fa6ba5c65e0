/* Smoke test of the C API against the project's test MCP server: open a router, speak MCP
 * through a session, read an event, check status and metrics, free everything. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static atomic_int g_log_records;

static void on_log(void *userdata, int level, mcprouter_str target, mcprouter_str message) {
    (void)target;
    (void)message;
    if (userdata == (void *)&g_log_records && level >= 1 && level <= 5) {
        atomic_fetch_add(&g_log_records, 1);
    }
}

struct async_result {
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    int calls;
    mcprouter_status status;
    char *reply;
};

static void on_reply(void *userdata, mcprouter_status status, char *reply, const char *error_message) {
    struct async_result *r = (struct async_result *)userdata;
    (void)error_message;
    pthread_mutex_lock(&r->lock);
    r->calls++;
    r->status = status;
    r->reply = reply; /* owned: freed by the waiting thread */
    pthread_cond_signal(&r->done_cv);
    pthread_mutex_unlock(&r->lock);
}

static void test_async(const mcprouter_session *s) {
    struct async_result r;
    mcprouter_status st;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.done_cv, NULL);
    st = mcprouter_session_handle_async(
        s, "{\"jsonrpc\":\"2.0\",\"id\":40,\"method\":\"tools/call\",\"params\":{\"name\":\"alpha__add\",\"arguments\":{\"a\":40,\"b\":2}}}",
        on_reply, &r);
    CHECK(st == MCPROUTER_STATUS_OK, "handle_async returned %s", mcprouter_status_str(st));
    pthread_mutex_lock(&r.lock);
    while (st == MCPROUTER_STATUS_OK && r.calls == 0) {
        pthread_cond_wait(&r.done_cv, &r.lock);
    }
    pthread_mutex_unlock(&r.lock);
    CHECK(r.status == MCPROUTER_STATUS_OK, "async status %s", mcprouter_status_str(r.status));
    CHECK(r.reply != NULL && strstr(r.reply, "42") != NULL, "async reply %s", r.reply ? r.reply : "(none)");
    mcprouter_string_free(r.reply);
    /* Give the callback a moment to return before its state goes away, and to show it
     * is not called twice. */
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    CHECK(r.calls == 1, "the reply callback ran %d times", r.calls);
    pthread_cond_destroy(&r.done_cv);
    pthread_mutex_destroy(&r.lock);
}

int main(int argc, char **argv) {
    const char *bin = test_server_bin(argc, argv);
    const char *names[] = {"alpha", "beta"};
    char *yaml = test_config(bin, names, 2);
    char path[] = "/tmp/mcprouter-smoke-XXXXXX";
    mcprouter_router *router = NULL;
    mcprouter_router *from_file = NULL;
    mcprouter_session *session = NULL;
    mcprouter_error *err = NULL;
    char *text = NULL;
    char *event = NULL;
    char *reply;
    FILE *f;
    int fd;

    CHECK(strcmp(mcprouter_version(), MCPROUTER_VERSION) == 0, "library %s, header %s", mcprouter_version(),
          MCPROUTER_VERSION);
    CHECK(strcmp(mcprouter_status_str(MCPROUTER_STATUS_CLOSED), "CLOSED") == 0, "status_str");
    mcprouter_set_log_callback(on_log, &g_log_records, 5);

    CHECK_STATUS(mcprouter_router_new_from_yaml(yaml, &router, &err), MCPROUTER_STATUS_OK, &err);
    if (router == NULL) {
        free(yaml);
        return finish();
    }

    /* The same config from a file. */
    fd = mkstemp(path);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL, "temp file");
    if (f != NULL) {
        fputs(yaml, f);
        fclose(f);
        CHECK_STATUS(mcprouter_router_new_from_file(path, &from_file, &err), MCPROUTER_STATUS_OK, &err);
        mcprouter_router_free(from_file);
        unlink(path);
    }

    CHECK_STATUS(mcprouter_session_open(router, "smoke-client", &session, &err), MCPROUTER_STATUS_OK, &err);
    call_expect(session, INITIALIZE, "\"protocolVersion\":\"2025-06-18\"");
    reply = call(session, INITIALIZED);
    CHECK(reply == NULL, "a notification has no reply");
    /* An unknown notification is ignored, with a debug log record for the callback. */
    reply = call(session, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/unheard-of\"}");
    CHECK(reply == NULL, "a notification has no reply");

    /* Both backends serve `echo`, so the catalog prefixes it with the backend name. */
    call_expect(session, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}", "\"alpha__echo\"");
    call_expect(session,
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"alpha__echo\","
                "\"arguments\":{\"message\":\"hello from C\"}}}",
                "hello from C");
    call_expect(session,
                "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"prompts/get\",\"params\":{\"name\":\"beta__greet\","
                "\"arguments\":{\"who\":\"C\"}}}",
                "\"id\":4");
    call_expect(session,
                "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":{\"uri\":\"test://beta/static\"}}",
                "test://beta/static");
    call_expect(session, "[{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}]",
                "\"id\":7");

    /* An event: the `log` tool makes the backend send notifications/message. */
    CHECK_STATUS(mcprouter_session_next_event(session, 0, &event, &err), MCPROUTER_STATUS_TIMEOUT, &err);
    CHECK(event == NULL, "no event yet");
    call_expect(session,
                "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"alpha__log\","
                "\"arguments\":{\"message\":\"a note for the client\"}}}",
                "logged");
    CHECK_STATUS(mcprouter_session_next_event(session, 10000, &event, &err), MCPROUTER_STATUS_OK, &err);
    CHECK(event != NULL && strstr(event, "notifications/message") && strstr(event, "a note for the client"),
          "event %s", event ? event : "(none)");
    mcprouter_string_free(event);

    test_async(session);

    CHECK_STATUS(mcprouter_router_status(router, &text, &err), MCPROUTER_STATUS_OK, &err);
    CHECK(text != NULL && strstr(text, "\"state\":\"ready\"") && strstr(text, "\"sessions\":1"), "status %s",
          text ? text : "(none)");
    mcprouter_string_free(text);
    CHECK_STATUS(mcprouter_router_metrics(router, &text, &err), MCPROUTER_STATUS_OK, &err);
    CHECK(text != NULL && strstr(text, "mcprouter_backend_up{backend=\"beta\"} 1"), "metrics %s",
          text ? text : "(none)");
    mcprouter_string_free(text);

    mcprouter_session_close(session);
    mcprouter_router_free(router);
    mcprouter_set_log_callback(NULL, NULL, 0);
    CHECK(atomic_load(&g_log_records) > 0, "the log callback saw %d records", atomic_load(&g_log_records));
    free(yaml);
    return finish();
}
