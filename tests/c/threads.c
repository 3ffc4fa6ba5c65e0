/* Eight threads hammer one router: each opens its own sessions and calls tools, and all of
 * them also share one session concurrently. Every call must succeed with the right answer. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#define THREADS 8
#define SESSIONS_PER_THREAD 3
#define CALLS_PER_SESSION 8

static mcprouter_router *g_router;
static mcprouter_session *g_shared;
static atomic_int g_ok;
static atomic_int g_bad;

static void add_call(const mcprouter_session *s, int id, int a, int b) {
    char msg[256];
    char want[64];
    char *reply = NULL;
    mcprouter_error *err = NULL;
    mcprouter_status st;
    snprintf(msg, sizeof msg,
             "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"add\","
             "\"arguments\":{\"a\":%d,\"b\":%d}}}",
             id, a, b);
    snprintf(want, sizeof want, "\"text\":\"%d\"", a + b);
    st = mcprouter_session_handle(s, msg, &reply, &err);
    if (st == MCPROUTER_STATUS_OK && reply != NULL && strstr(reply, want) != NULL) {
        atomic_fetch_add(&g_ok, 1);
    } else {
        atomic_fetch_add(&g_bad, 1);
        fprintf(stderr, "call %s -> %s %s %s\n", msg, mcprouter_status_str(st), reply ? reply : "",
                err ? mcprouter_error_message(err) : "");
    }
    mcprouter_string_free(reply);
    mcprouter_error_free(err);
}

static void *worker(void *arg) {
    int t = (int)(size_t)arg;
    int i, j;
    char client[32];
    for (i = 0; i < SESSIONS_PER_THREAD; i++) {
        mcprouter_session *s = NULL;
        mcprouter_error *err = NULL;
        snprintf(client, sizeof client, "worker-%d-%d", t, i);
        if (mcprouter_session_open(g_router, client, &s, &err) != MCPROUTER_STATUS_OK) {
            atomic_fetch_add(&g_bad, 1);
            fprintf(stderr, "session_open: %s\n", mcprouter_error_message(err));
            mcprouter_error_free(err);
            continue;
        }
        for (j = 0; j < CALLS_PER_SESSION; j++) {
            add_call(s, j, t * 1000 + i, j);
            add_call(g_shared, t * 100000 + i * 100 + j, t, i * 100 + j);
        }
        if ((i & 1) == 0) {
            char *text = NULL;
            if (mcprouter_router_status(g_router, &text, NULL) == MCPROUTER_STATUS_OK && text != NULL) {
                atomic_fetch_add(&g_ok, 1);
            } else {
                atomic_fetch_add(&g_bad, 1);
            }
            mcprouter_string_free(text);
        }
        mcprouter_session_close(s);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *bin = test_server_bin(argc, argv);
    const char *names[] = {"alpha"};
    char *yaml = test_config(bin, names, 1);
    mcprouter_error *err = NULL;
    pthread_t threads[THREADS];
    int started = 0;
    int i;

    CHECK_STATUS(mcprouter_router_new_from_yaml(yaml, &g_router, &err), MCPROUTER_STATUS_OK, &err);
    free(yaml);
    if (g_router == NULL) {
        return finish();
    }
    CHECK_STATUS(mcprouter_session_open(g_router, "shared", &g_shared, &err), MCPROUTER_STATUS_OK, &err);
    for (i = 0; i < THREADS; i++) {
        if (pthread_create(&threads[i], NULL, worker, (void *)(size_t)i) == 0) {
            started++;
        }
    }
    CHECK(started == THREADS, "started %d threads", started);
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    {
        int want = THREADS * SESSIONS_PER_THREAD * CALLS_PER_SESSION * 2 + THREADS * ((SESSIONS_PER_THREAD + 1) / 2);
        CHECK(atomic_load(&g_bad) == 0, "%d calls failed", atomic_load(&g_bad));
        CHECK(atomic_load(&g_ok) == want, "%d calls succeeded, want %d", atomic_load(&g_ok), want);
    }
    {
        char *text = NULL;
        CHECK_STATUS(mcprouter_router_status(g_router, &text, &err), MCPROUTER_STATUS_OK, &err);
        CHECK(text != NULL && strstr(text, "\"sessions\":1") != NULL, "only the shared session is left: %s",
              text ? text : "(none)");
        mcprouter_string_free(text);
    }
    mcprouter_session_close(g_shared);
    mcprouter_router_free(g_router);
    return finish();
}
