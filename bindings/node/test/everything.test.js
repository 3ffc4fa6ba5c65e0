'use strict';

// Interop with a third-party server: @modelcontextprotocol/server-everything over stdio,
// side by side with the project's test server (installed by scripts/deps.sh).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { HOOK, mcprouter, DEPS, backendYaml } = require('./helpers.js');

const ENTRY = path.join(DEPS, 'node', 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
let router;

// A missing peer fails the tests here (the hook's failure fails each of them): a skip would
// let a run without the interop dependencies pass as if it had checked them.
before(async () => {
    assert.ok(fs.existsSync(ENTRY), `server-everything is missing (${ENTRY}): run scripts/deps.sh`);
    router = await mcprouter.Router.fromYaml(
        'router: {request_timeout_ms: 10000, init_timeout_ms: 20000, shutdown_grace_ms: 1000}\n' +
        'backends:\n' +
        `  - name: everything\n    command: ${JSON.stringify(process.execPath)}\n    args: [${JSON.stringify(ENTRY)}, stdio]\n` +
        backendYaml('alpha'));
}, HOOK);

after(async () => {
    if (router) await router.close();
}, HOOK);

test('server-everything is ready', { timeout: 30_000 }, () => {
    const everything = router.status().backends.find((b) => b.name === 'everything');
    assert.equal(everything.state, 'ready', JSON.stringify(everything));
});

test('list tools and call echo through the router', { timeout: 30_000 }, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    await s.initialize();
    const names = [];
    let cursor;
    do {
        const page = await s.request('tools/list', cursor ? { cursor } : undefined);
        names.push(...page.tools.map((x) => x.name));
        cursor = page.nextCursor;
    } while (cursor);
    for (const n of ['everything__echo', 'alpha__echo', 'get-sum']) assert.ok(names.includes(n), n);
    assert.equal((await s.request('tools/call', { name: 'everything__echo', arguments: { message: 'interop' } })).content[0].text, 'Echo: interop');
    assert.match((await s.request('tools/call', { name: 'get-sum', arguments: { a: 1, b: 2 } })).content[0].text, /3/);
});
