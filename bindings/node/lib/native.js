'use strict';

// The one place that touches koffi: loads libmcprouter once and declares every function.
//
// Library search order (the first file that exists wins):
//   1. $MCPROUTER_LIB
//   2. <package>/native/<platform>-<arch>/<libname>, where the npm tarball carries it
//      (`npm pack` puts it there: tools/prebuild.js), then <package>/native/<libname>
//   3. <repo>/target/debug/, then <repo>/target/release/, in a source checkout
// koffi itself: $MCPROUTER_KOFFI (a path or a module name), then a normal
// require('koffi'), then <repo>/.deps/node/node_modules/koffi (where scripts/deps.sh puts
// it; $MCPROUTER_DEPS overrides <repo>/.deps).

const fs = require('node:fs');
const path = require('node:path');

const PKG = path.resolve(__dirname, '..');
const REPO = path.resolve(PKG, '..', '..');
const IN_CHECKOUT = fs.existsSync(path.join(REPO, 'Cargo.toml'));

function libName() {
    if (process.platform === 'win32') return 'mcprouter.dll';
    if (process.platform === 'darwin') return 'libmcprouter.dylib';
    return 'libmcprouter.so';
}

function candidates() {
    if (process.env.MCPROUTER_LIB) return [process.env.MCPROUTER_LIB];
    const name = libName();
    const out = [
        path.join(PKG, 'native', `${process.platform}-${process.arch}`, name),
        path.join(PKG, 'native', name),
    ];
    if (IN_CHECKOUT) {
        out.push(path.join(REPO, 'target', 'debug', name), path.join(REPO, 'target', 'release', name));
    }
    return out;
}

function loadKoffi() {
    const deps = process.env.MCPROUTER_DEPS || path.join(REPO, '.deps');
    const tries = [process.env.MCPROUTER_KOFFI, 'koffi', path.join(deps, 'node', 'node_modules', 'koffi')].filter(Boolean);
    const failures = [];
    for (const spec of tries) {
        try {
            return require(spec);
        } catch (e) {
            if (e && e.code !== 'MODULE_NOT_FOUND') throw e;
            failures.push(spec);
        }
    }
    throw new Error(`mcprouter: cannot load koffi; tried ${failures.join(', ')}. ` +
        'Install it (npm install koffi@3.3.4), or set MCPROUTER_KOFFI to its path.');
}

const koffi = loadKoffi();

// koffi runs each native call on a stack of its own: 128 KiB for .async calls by default.
// Router creation (YAML parsing, starting threads) in a debug build of the library needs
// more than that. The stacks are mmap'd with a guard page and committed lazily, so 2 MiB
// costs address space, not memory. koffi only accepts this before its first library load;
// if the host application loaded one first, we keep its settings.
try {
    const cfg = koffi.config();
    if (cfg.async_stack_size < 2 * 1024 * 1024) koffi.config({ ...cfg, async_stack_size: 2 * 1024 * 1024 });
} catch (_) {
    // Already configured by someone else: nothing to do.
}

function loadLibrary() {
    const tried = candidates();
    const found = tried.find((p) => fs.existsSync(p));
    if (!found) {
        const err = new Error(`mcprouter: libmcprouter was not found; looked at:\n  ${tried.join('\n  ')}\n` +
            'Set MCPROUTER_LIB to the library\'s path, or build it with `cargo build`.');
        err.code = 'MCPROUTER_LIB_NOT_FOUND';
        throw err;
    }
    return { lib: koffi.load(found), path: found };
}

const { lib, path: libraryPath } = loadLibrary();

// Opaque handles. koffi 3 passes pointers as BigInts that carry no type: the classes in
// index.js are what keeps a session pointer from reaching a router function.
koffi.opaque('mcprouter_router');
koffi.opaque('mcprouter_session');
koffi.opaque('mcprouter_gateway');
koffi.opaque('mcprouter_error');

const mcprouter_string_free = lib.func('void mcprouter_string_free(void *s)');
// An owned `char *`: koffi copies it into a JS string, then hands the pointer to
// mcprouter_string_free (never koffi.free: the library's allocator frees it).
koffi.disposable('mcprouter_owned_str', 'str', mcprouter_string_free);

// mcprouter_status is a C enum: int-sized. Out-params are `_Out_`, so koffi zeroes the
// slot first: on failure (nothing written) it reads back NULL and nothing is freed.
const fns = {
    mcprouter_router_new_from_yaml: 'int mcprouter_router_new_from_yaml(const char *yaml, _Out_ mcprouter_router **out, _Out_ mcprouter_error **err)',
    mcprouter_router_new_from_file: 'int mcprouter_router_new_from_file(const char *path, _Out_ mcprouter_router **out, _Out_ mcprouter_error **err)',
    mcprouter_router_reload_from_yaml: 'int mcprouter_router_reload_from_yaml(const mcprouter_router *r, const char *yaml, _Out_ uint64_t *generation_out, _Out_ mcprouter_error **err)',
    mcprouter_router_reload_from_file: 'int mcprouter_router_reload_from_file(const mcprouter_router *r, const char *path, _Out_ uint64_t *generation_out, _Out_ mcprouter_error **err)',
    mcprouter_router_metrics: 'int mcprouter_router_metrics(const mcprouter_router *r, _Out_ mcprouter_owned_str *text_out, _Out_ mcprouter_error **err)',
    mcprouter_router_status: 'int mcprouter_router_status(const mcprouter_router *r, _Out_ mcprouter_owned_str *json_out, _Out_ mcprouter_error **err)',
    mcprouter_router_shutdown: 'void mcprouter_router_shutdown(mcprouter_router *r, uint32_t grace_ms)',
    mcprouter_router_free: 'void mcprouter_router_free(mcprouter_router *r)',
    mcprouter_gateway_start: 'int mcprouter_gateway_start(const mcprouter_router *r, const char *listen, _Out_ mcprouter_gateway **out, _Out_ mcprouter_error **err)',
    mcprouter_gateway_url: 'int mcprouter_gateway_url(const mcprouter_gateway *g, _Out_ mcprouter_owned_str *url_out, _Out_ mcprouter_error **err)',
    mcprouter_gateway_shutdown: 'void mcprouter_gateway_shutdown(mcprouter_gateway *g, uint32_t grace_ms)',
    mcprouter_gateway_free: 'void mcprouter_gateway_free(mcprouter_gateway *g)',
    mcprouter_session_open: 'int mcprouter_session_open(const mcprouter_router *r, const char *client_id, _Out_ mcprouter_session **out, _Out_ mcprouter_error **err)',
    mcprouter_session_handle: 'int mcprouter_session_handle(const mcprouter_session *s, const char *message_json, _Out_ mcprouter_owned_str *reply_out, _Out_ mcprouter_error **err)',
    mcprouter_session_next_event: 'int mcprouter_session_next_event(const mcprouter_session *s, uint32_t timeout_ms, _Out_ mcprouter_owned_str *event_out, _Out_ mcprouter_error **err)',
    mcprouter_session_close: 'void mcprouter_session_close(mcprouter_session *s)',
    mcprouter_version: 'const char *mcprouter_version()',
    mcprouter_log_queue: 'void mcprouter_log_queue(int min_level, uint32_t capacity)',
    mcprouter_log_next: 'int mcprouter_log_next(uint32_t timeout_ms, _Out_ mcprouter_owned_str *record_out, _Out_ mcprouter_error **err)',
    mcprouter_error_status: 'int mcprouter_error_status(const mcprouter_error *e)',
    mcprouter_error_message: 'const char *mcprouter_error_message(const mcprouter_error *e)',
    mcprouter_error_free: 'void mcprouter_error_free(mcprouter_error *e)',
    mcprouter_status_str: 'const char *mcprouter_status_str(int st)',
};

const native = { mcprouter_string_free };
for (const [name, proto] of Object.entries(fns)) native[name] = lib.func(proto);

module.exports = { koffi, lib, native, libraryPath, candidates, prototypes: fns };
