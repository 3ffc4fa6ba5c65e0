/* Shared helpers for the C tests: a tiny check framework and the test config. */
#ifndef MCPROUTER_TEST_COMMON_H
#define MCPROUTER_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcprouter.h"

static int g_passed = 0;
static int g_failed = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            g_passed++;                                                         \
        } else {                                                                \
            g_failed++;                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Checks a status and, when it carries one, frees the error. */
#define CHECK_STATUS(call, want, errp)                                          \
    do {                                                                        \
        mcprouter_status st_ = (call);                                          \
        CHECK(st_ == (want), "%s returned %s (%s), want %s", #call,             \
              mcprouter_status_str(st_),                                        \
              *(errp) ? mcprouter_error_message(*(errp)) : "no error",          \
              mcprouter_status_str(want));                                      \
        if ((want) != MCPROUTER_STATUS_OK) {                                    \
            CHECK(*(errp) != NULL && mcprouter_error_status(*(errp)) == (want), \
                  "an error with status %s", mcprouter_status_str(want));       \
        } else {                                                                \
            CHECK(*(errp) == NULL, "err cleared on success");                   \
        }                                                                       \
        mcprouter_error_free(*(errp));                                          \
        *(errp) = NULL;                                                         \
    } while (0)

static inline int finish(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

/* The project's test MCP server: argv[1], else $MCPROUTER_BIN. */
static inline const char *test_server_bin(int argc, char **argv) {
    const char *bin = argc > 1 ? argv[1] : getenv("MCPROUTER_BIN");
    if (bin == NULL || *bin == '\0') {
        fprintf(stderr, "usage: %s PATH-TO-mcprouter (or set MCPROUTER_BIN)\n", argv[0]);
        exit(2);
    }
    return bin;
}

/* A config with one test-server backend per name; generous deadlines for valgrind. */
static inline char *test_config(const char *bin, const char *const *names, int count) {
    size_t cap = 512 + (size_t)count * (strlen(bin) + 128);
    char *yaml = (char *)malloc(cap);
    size_t len;
    int i;
    if (yaml == NULL) {
        abort();
    }
    len = (size_t)snprintf(yaml, cap,
                           "router:\n  request_timeout_ms: 30000\n  init_timeout_ms: 30000\n"
                           "  shutdown_grace_ms: 1000\nbackends:\n");
    for (i = 0; i < count; i++) {
        len += (size_t)snprintf(yaml + len, cap - len,
                                "  - name: %s\n    command: %s\n    args: [test-server, --name, %s]\n",
                                names[i], bin, names[i]);
    }
    return yaml;
}

/* Sends one message; returns the owned reply (NULL for none) and checks the status is OK. */
static inline char *call(const mcprouter_session *s, const char *json) {
    char *reply = NULL;
    mcprouter_error *err = NULL;
    mcprouter_status st = mcprouter_session_handle(s, json, &reply, &err);
    CHECK(st == MCPROUTER_STATUS_OK, "handle(%.60s) returned %s: %s", json, mcprouter_status_str(st),
          err ? mcprouter_error_message(err) : "");
    mcprouter_error_free(err);
    return reply;
}

/* Sends one message and checks the reply contains `needle`. */
static inline void call_expect(const mcprouter_session *s, const char *json, const char *needle) {
    char *reply = call(s, json);
    CHECK(reply != NULL && strstr(reply, needle) != NULL, "reply to %.60s: %s (want %s)", json,
          reply ? reply : "(none)", needle);
    mcprouter_string_free(reply);
}

#define INITIALIZE                                                                       \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":" \
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"c-test\",\"version\":\"1\"}}}"
#define INITIALIZED "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"

#endif /* MCPROUTER_TEST_COMMON_H */
