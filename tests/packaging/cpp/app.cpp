// A C++ program linked against an installed mcprouter (CMake's find_package, or pkg-config):
// starts a router whose one backend is `BIN test-server`, and makes a routed tools/call.
// usage: app /path/to/mcprouter
#include <mcprouter.h>

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

// Owned results of the C API, freed by the library's own functions.
struct StringFree {
    void operator()(char *s) const { mcprouter_string_free(s); }
};
struct RouterFree {
    void operator()(mcprouter_router *r) const { mcprouter_router_free(r); }
};
struct SessionClose {
    void operator()(mcprouter_session *s) const { mcprouter_session_close(s); }
};
using owned_string = std::unique_ptr<char, StringFree>;

void check(mcprouter_status st, mcprouter_error *err, const char *what) {
    if (st == MCPROUTER_STATUS_OK) return;
    std::string msg = std::string(what) + ": " + mcprouter_status_str(st);
    if (err != nullptr) {
        msg += std::string(" (") + mcprouter_error_message(err) + ")";
        mcprouter_error_free(err);
    }
    throw std::runtime_error(msg);
}

std::string handle(mcprouter_session *s, const std::string &message) {
    char *reply = nullptr;
    mcprouter_error *err = nullptr;
    check(mcprouter_session_handle(s, message.c_str(), &reply, &err), err, "session_handle");
    owned_string owned(reply);
    return reply != nullptr ? std::string(reply) : std::string();
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MCPROUTER_BINARY\n", argv[0]);
        return 2;
    }
    try {
        const std::string yaml = std::string("backends:\n  - name: alpha\n    command: \"") + argv[1] +
                                 "\"\n    args: [test-server, --name, alpha]\n";
        mcprouter_router *raw_router = nullptr;
        mcprouter_error *err = nullptr;
        check(mcprouter_router_new_from_yaml(yaml.c_str(), &raw_router, &err), err, "router_new_from_yaml");
        std::unique_ptr<mcprouter_router, RouterFree> router(raw_router);

        mcprouter_session *raw_session = nullptr;
        check(mcprouter_session_open(router.get(), "cpp", &raw_session, &err), err, "session_open");
        std::unique_ptr<mcprouter_session, SessionClose> session(raw_session);

        handle(session.get(),
               R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",)"
               R"("capabilities":{},"clientInfo":{"name":"cpp","version":"1"}}})");
        handle(session.get(), R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
        const std::string tools = handle(session.get(), R"({"jsonrpc":"2.0","id":2,"method":"tools/list"})");
        if (tools.find("\"echo\"") == std::string::npos) throw std::runtime_error("tools/list lacks echo: " + tools);
        const std::string out = handle(
            session.get(),
            R"({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"from C++"}}})");
        if (out.find("from C++") == std::string::npos) throw std::runtime_error("unexpected reply: " + out);
        std::printf("mcprouter %s: routed call ok\n", mcprouter_version());
    } catch (const std::exception &e) {
        std::fprintf(stderr, "FAIL: %s\n", e.what());
        return 1;
    }
    return 0;
}
