'use strict';

// Concurrency, and the event loop staying free while native calls block.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { HOOK, mcprouter, backendYaml, config, textOf } = require('./helpers.js');

const T = { timeout: 60_000 };
let router;

before(async () => {
    router = await mcprouter.Router.fromYaml(config(['alpha', 'beta']));
}, HOOK);

after(async () => {
    if (router) await router.close();
}, HOOK);

test('50 concurrent requests on one session all succeed', T, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    await s.initialize();
    const calls = Array.from({ length: 50 }, (_, i) =>
        s.request('tools/call', { name: `${i % 2 ? 'alpha' : 'beta'}__echo`, arguments: { message: `m${i}` } }));
    const results = await Promise.all(calls);
    assert.deepEqual(results.map(textOf), Array.from({ length: 50 }, (_, i) => `m${i}`));
});

test('50 sessions x 10 requests, all concurrent', T, async (t) => {
    const sessions = Array.from({ length: 50 }, (_, i) => router.session(`client-${i}`));
    t.after(() => Promise.all(sessions.map((s) => s.close())));
    const all = await Promise.all(sessions.map(async (s, i) => {
        const out = [];
        for (let j = 0; j < 10; j++) {
            const r = await s.request('tools/call', { name: 'alpha__add', arguments: { a: i, b: j } });
            out.push(r.structuredContent.sum === i + j);
        }
        return out;
    }));
    assert.equal(all.flat().filter(Boolean).length, 500);
});

test('more requests than koffi queues at once (300) still all succeed', T, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    const results = await Promise.all(Array.from({ length: 300 }, () => s.request('ping')));
    assert.equal(results.length, 300);
});

test('timers keep firing while a slow tool call is in flight', T, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 50);
    t.after(() => clearInterval(timer));
    const started = Date.now();
    const r = await s.request('tools/call', { name: 'alpha__slow', arguments: { ms: 1000 } });
    const elapsed = Date.now() - started;
    clearInterval(timer);
    assert.equal(textOf(r), 'slept 1000');
    assert.ok(elapsed >= 1000, `the call took ${elapsed} ms`);
    // ~20 ticks in 1 s; a blocked event loop would give 0 or 1.
    assert.ok(ticks >= 12, `only ${ticks} ticks of 50 ms during a ${elapsed} ms call`);
});

test('timers keep firing while nextEvent waits and while a router starts', T, async (t) => {
    const s = router.session();
    t.after(() => s.close());
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 50);
    t.after(() => clearInterval(timer));
    assert.equal(await s.nextEvent(600), null);
    assert.ok(ticks >= 7, `only ${ticks} ticks while nextEvent waited 600 ms`);
    ticks = 0;
    const started = Date.now();
    // --delay-ms delays each of the backend's answers, so the handshake takes a while.
    const yaml = 'router: {shutdown_grace_ms: 1000}\nbackends:\n' + backendYaml('late', ['--delay-ms', '150']);
    const slowStart = await mcprouter.Router.fromYaml(yaml);
    t.after(() => slowStart.close());
    const elapsed = Date.now() - started;
    clearInterval(timer);
    assert.ok(elapsed >= 300, `the router started in ${elapsed} ms: too fast to tell`);
    assert.ok(ticks >= Math.floor(elapsed / 50) / 2, `${ticks} ticks during a ${elapsed} ms router start`);
});
