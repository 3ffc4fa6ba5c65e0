'use strict';

// Status codes become error classes; JSON-RPC error replies become JsonRpcError.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mcprouter, config, routerFor } = require('./helpers.js');

const T = { timeout: 30_000 };

test('bad YAML rejects with ConfigError', T, async () => {
    await assert.rejects(mcprouter.Router.fromYaml('backends: [unclosed'), (e) => {
        assert.ok(e instanceof mcprouter.ConfigError && e instanceof mcprouter.MCPRouterError);
        assert.equal(e.status, mcprouter.Status.CONFIG);
        assert.equal(e.statusName, 'CONFIG');
        assert.ok(e.message.length > 0);
        return true;
    });
});

test('an unknown config field is named', T, async () => {
    await assert.rejects(mcprouter.Router.fromYaml('router: {bogus: 1}\nbackends: []\n'), /bogus/);
});

test('a missing file rejects with ConfigError', T, async () => {
    await assert.rejects(mcprouter.Router.fromFile('/nonexistent/router.yaml'), mcprouter.ConfigError);
});

test('NUL characters are refused before C sees them', T, async () => {
    await assert.rejects(mcprouter.Router.fromYaml('backends: []\0'), mcprouter.InvalidArgumentError);
});

test('unknown tool rejects with JsonRpcError -32602', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    await assert.rejects(s.request('tools/call', { name: 'no_such_tool', arguments: {} }), (e) => {
        assert.ok(e instanceof mcprouter.JsonRpcError && e instanceof Error);
        assert.equal(e.code, -32602);
        assert.match(e.message, /no_such_tool/);
        return true;
    });
    await assert.rejects(s.request('bogus/method'), (e) => e.code === -32601);
});

test('a closed session rejects with ClosedError', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    await s.close();
    await s.close(); // idempotent
    assert.ok(s.closed);
    await assert.rejects(s.request('ping'), (e) => e instanceof mcprouter.ClosedError && e.status === mcprouter.Status.CLOSED);
    await assert.rejects(s.nextEvent(0), mcprouter.ClosedError);
});

test('after shutdown the C side reports CLOSED', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    assert.deepEqual(await s.request('ping'), {});
    await r.shutdown(1000);
    assert.ok(!s.closed);
    await assert.rejects(s.request('ping'), mcprouter.ClosedError);
    await assert.rejects(s.nextEvent(1000), mcprouter.ClosedError);
    assert.throws(() => r.session(), mcprouter.ClosedError);
    assert.throws(() => r.status(), mcprouter.ClosedError);
    await r.shutdown(1000); // idempotent
    await r.close();
    assert.ok(s.closed, 'closing the router closes its sessions');
    assert.throws(() => r.metrics(), mcprouter.ClosedError);
});

test('timeoutMs cancels the call on the backend', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    const started = Date.now();
    await assert.rejects(s.request('tools/call', { name: 'slow', arguments: { ms: 10_000 } }, { timeoutMs: 300 }), mcprouter.TimeoutError);
    assert.ok(Date.now() - started < 8000, 'not the call\'s 10 s');
    let seen = '[]';
    for (let i = 0; i < 100 && seen === '[]'; i++) {
        seen = (await s.request('tools/call', { name: 'cancelled', arguments: {} })).content[0].text;
        if (seen === '[]') await new Promise((res) => setTimeout(res, 50));
    }
    assert.notEqual(seen, '[]', 'the backend never saw the cancellation');
});

test('an AbortSignal cancels the call', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('user gave up')), 200);
    await assert.rejects(s.request('tools/call', { name: 'slow', arguments: { ms: 10_000 } }, { signal: ac.signal }), /user gave up/);
});

test('the router deadline is a JsonRpcError', T, async (t) => {
    const r = await routerFor(t, ['solo'], { timeoutMs: 300 });
    await assert.rejects(r.session().request('tools/call', { name: 'hang', arguments: {} }), (e) => e instanceof mcprouter.JsonRpcError && /timed out/.test(e.message));
});

test('close() settles a waiting nextEvent and cancels requests in flight', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    const waiting = assert.rejects(s.nextEvent(Infinity), mcprouter.ClosedError);
    const call = assert.rejects(s.request('tools/call', { name: 'slow', arguments: { ms: 20_000 } }), mcprouter.ClosedError);
    await new Promise((res) => setTimeout(res, 300));
    const started = Date.now();
    await s.close();
    await waiting;
    await call;
    assert.ok(Date.now() - started < 15_000, `close took ${Date.now() - started} ms, not the call's 20 s`);
});

test('a failed backend does not fail the router', T, async (t) => {
    const r = await mcprouter.Router.fromYaml(config(['good']) + '  - name: broken\n    command: /nonexistent/mcp-server\n');
    t.after(() => r.close());
    const states = Object.fromEntries(r.status().backends.map((b) => [b.name, b.state]));
    assert.equal(states.good, 'ready');
    assert.notEqual(states.broken, 'ready');
});

test('argument checks', T, async (t) => {
    const r = await routerFor(t, ['solo']);
    const s = r.session();
    await assert.rejects(s.nextEvent(-1), RangeError);
    await assert.rejects(s.handle(42), TypeError);
    assert.throws(() => r.session(7), TypeError);
});
