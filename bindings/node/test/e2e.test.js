'use strict';

// End to end against two of the project's test servers (alpha, beta) behind one router.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { HOOK, mcprouter, config, routerFor, textOf, waitEvent } = require('./helpers.js');

const T = { timeout: 30_000 };
let router;
let session;

before(async () => {
    router = await mcprouter.Router.fromYaml(config(['alpha', 'beta']));
    session = router.session('e2e-client');
    await session.initialize({ capabilities: { sampling: {} } });
}, HOOK);

after(async () => {
    if (router) await router.close();
}, HOOK);

test('version is semver', () => {
    assert.match(mcprouter.version(), /^\d+\.\d+\.\d+$/);
});

test('initialize answers as one MCP server', T, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    const result = await s.initialize();
    assert.equal(result.serverInfo.name, 'mcprouter');
    assert.ok(result.capabilities.tools);
});

test('tools/list prefixes colliding names', T, async () => {
    const names = new Set((await session.request('tools/list')).tools.map((t) => t.name));
    for (const n of ['alpha__echo', 'beta__echo', 'alpha__add', 'beta__slow']) assert.ok(names.has(n), n);
    assert.ok(!names.has('echo'));
});

test('tools/call reaches the right backend', T, async () => {
    assert.equal(textOf(await session.request('tools/call', { name: 'alpha__echo', arguments: { message: 'héllo ✓' } })), 'héllo ✓');
    assert.equal(textOf(await session.request('tools/call', { name: 'beta__whoami', arguments: {} })), 'beta');
    const r = await session.request('tools/call', { name: 'alpha__add', arguments: { a: 2, b: 40 } });
    assert.deepEqual(r.structuredContent, { sum: 42 });
});

test('resources', T, async () => {
    const uris = new Set((await session.request('resources/list')).resources.map((r) => r.uri));
    assert.ok(uris.has('test://alpha/static') && uris.has('test://beta/static'));
    const r = await session.request('resources/read', { uri: 'test://beta/static' });
    assert.equal(r.contents[0].text, 'static beta');
});

test('prompts', T, async () => {
    const names = new Set((await session.request('prompts/list')).prompts.map((p) => p.name));
    assert.ok(names.has('alpha__greet') && names.has('beta__greet'));
    const r = await session.request('prompts/get', { name: 'alpha__greet', arguments: { who: 'Ada' } });
    assert.equal(r.messages[0].content.text, 'Hello, Ada, from alpha');
});

test('progress notifications arrive through nextEvent with the client token', T, async () => {
    const params = { name: 'alpha__progress', arguments: { steps: 3 }, _meta: { progressToken: 'tok-1' } };
    assert.equal(textOf(await session.request('tools/call', params)), 'done 3');
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push((await waitEvent(session, 'notifications/progress')).params);
    assert.deepEqual(seen.map((p) => p.progressToken), ['tok-1', 'tok-1', 'tok-1']);
    assert.deepEqual(seen.map((p) => p.progress), [1, 2, 3]);
});

test('log notifications arrive through nextEvent', T, async () => {
    await session.request('tools/call', { name: 'beta__log', arguments: { message: 'to the client' } });
    const ev = await waitEvent(session, 'notifications/message');
    assert.equal(ev.params.data, 'to the client');
});

test('nextEvent resolves null on timeout', T, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    assert.equal(await s.nextEvent(0), null);
    assert.equal(await s.nextEvent(200), null);
});

test('answering a sampling request while the call waits', T, async () => {
    const call = session.request('tools/call', { name: 'alpha__sample', arguments: { prompt: '2+2?' } });
    const ev = await waitEvent(session, 'sampling/createMessage');
    assert.equal(ev.params.messages[0].content.text, '2+2?');
    const answer = { role: 'assistant', content: { type: 'text', text: 'four' }, model: 'by-hand' };
    assert.equal(await session.handle({ jsonrpc: '2.0', id: ev.id, result: answer }), null);
    assert.equal(textOf(await call), 'four');
});

test('handle: text, batches, notifications, parse errors', T, async () => {
    assert.deepEqual(await session.handle('{"jsonrpc":"2.0","id":"a","method":"ping"}'), { jsonrpc: '2.0', id: 'a', result: {} });
    const batch = await session.handle([
        { jsonrpc: '2.0', id: 1, method: 'ping' },
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'beta__echo', arguments: { message: 'b' } } },
    ]);
    assert.deepEqual(batch.map((r) => r.id).sort(), [1, 2]);
    assert.equal(await session.handle({ jsonrpc: '2.0', method: 'notifications/initialized' }), null);
    assert.equal((await session.handle('{not json')).error.code, -32700);
});

test('status and metrics', () => {
    const st = router.status();
    assert.deepEqual(Object.fromEntries(st.backends.map((b) => [b.name, b.state])), { alpha: 'ready', beta: 'ready' });
    assert.match(router.metrics(), /mcprouter_backend_up\{backend="alpha"\} 1/);
});

test('Router.fromFile', T, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcprouter-node-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'router.yaml');
    fs.writeFileSync(file, config(['gamma']));
    const r = await mcprouter.Router.fromFile(file);
    t.after(() => r.close());
    const s = r.session();
    await s.initialize();
    assert.equal(textOf(await s.request('tools/call', { name: 'whoami', arguments: {} })), 'gamma');
});

test('a router per test helper closes on failure too', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    assert.deepEqual(await r.session().request('ping'), {});
});

