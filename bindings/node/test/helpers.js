'use strict';

// Shared by the test files. Environment:
//   MCPROUTER_LIB   the native library (default: the package's own search order)
//   MCPROUTER_BIN   the `mcprouter` binary whose `test-server` is the backend
//                   (default <repo>/target/debug/mcprouter)
//   MCPROUTER_DEPS  the pinned third-party deps (default <repo>/.deps)
//   MCPROUTER_TEST_TIMEOUT  seconds a test file may run before the watchdog ends it
//                   (default 120); each test also has its own `timeout`.

const fs = require('node:fs');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.MCPROUTER_BIN || path.join(REPO, 'target', 'debug', 'mcprouter');
const DEPS = process.env.MCPROUTER_DEPS || path.join(REPO, '.deps');

if (!fs.existsSync(BIN)) {
    throw new Error(`no test-server binary at ${BIN} (build it, or set MCPROUTER_BIN)`);
}

// A native call that never returns cannot be interrupted by the test runner's timeouts
// (the pending koffi call keeps the process alive): end the whole file instead.
const FILE_TIMEOUT_S = Number(process.env.MCPROUTER_TEST_TIMEOUT || 120);
setTimeout(() => {
    process.stderr.write(`watchdog: ${path.basename(require.main ? require.main.filename : 'test')} still running after ${FILE_TIMEOUT_S} s\n`);
    process.exit(124);
}, FILE_TIMEOUT_S * 1000).unref();

const mcprouter = require('..');

/** Options for before/after hooks, so setup and teardown are bounded too. */
const HOOK = { timeout: 30_000 };

function backendYaml(name, extraArgs = []) {
    const args = ['test-server', '--name', name, ...extraArgs].map((a) => JSON.stringify(a)).join(', ');
    return `  - name: ${name}\n    command: ${JSON.stringify(BIN)}\n    args: [${args}]\n`;
}

function config(names, { timeoutMs = 5000, extra = '' } = {}) {
    return `router: {request_timeout_ms: ${timeoutMs}, shutdown_grace_ms: 1000}\n${extra}backends:\n` +
        names.map((n) => backendYaml(n)).join('');
}

/** A router on test-servers, closed when the test `t` ends (pass or fail). */
async function routerFor(t, names, opts) {
    const r = await mcprouter.Router.fromYaml(config(names, opts));
    t.after(() => r.close());
    return r;
}

function textOf(result) {
    return result.content.map((c) => c.text ?? '').join('');
}

/** The next event with `method`, skipping others (e.g. list_changed broadcasts). */
async function waitEvent(session, method, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const ev = await session.nextEvent(Math.max(0, deadline - Date.now()));
        if (ev === null) throw new Error(`no ${method} event within ${timeoutMs} ms`);
        if (ev.method === method) return ev;
    }
}

module.exports = { REPO, BIN, DEPS, HOOK, mcprouter, backendYaml, config, routerFor, textOf, waitEvent };
