'use strict';

// The router served over Streamable HTTP through the binding's Gateway, reached with the
// platform's own fetch.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mcprouter, routerFor } = require('./helpers.js');

const T = { timeout: 30_000 };
const HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };

async function post(url, body, session) {
    const headers = { ...HEADERS };
    if (session) {
        headers['Mcp-Session-Id'] = session;
        headers['MCP-Protocol-Version'] = '2025-11-25';
    }
    const resp = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: resp.status, headers: resp.headers, text: await resp.text() };
}

function replyOf(resp) {
    if ((resp.headers.get('content-type') || '').startsWith('text/event-stream')) {
        const data = resp.text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim());
        return JSON.parse(data[data.length - 1]);
    }
    return JSON.parse(resp.text);
}

test('a gateway serves the router over HTTP, and the router outlives it', T, async (t) => {
    const router = await routerFor(t, ['alpha']);
    const gw = await mcprouter.Gateway.start(router, '127.0.0.1:0');
    try {
        assert.match(gw.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
        const init = await post(gw.url, {
            jsonrpc: '2.0', id: 1, method: 'initialize',
            params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'node-test', version: '1' } },
        });
        assert.equal(init.status, 200, init.text);
        const sid = init.headers.get('mcp-session-id');
        assert.ok(sid && sid.length >= 32);
        assert.equal((await post(gw.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, sid)).status, 202);
        const call = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message: 'over http' } } };
        const resp = await post(gw.url, call, sid);
        assert.equal(resp.status, 200, resp.text);
        assert.equal(replyOf(resp).result.content[0].text, 'over http');
        assert.equal((await post(gw.url, call)).status, 400, 'no session id');
    } finally {
        await gw.close();
    }
    const s = router.session();
    await s.initialize();
    const r = await s.request('tools/call', { name: 'whoami', arguments: {} });
    assert.equal(r.content[0].text, 'alpha');
    await s.close();
});

test('a non-loopback address without tokens is refused', T, async (t) => {
    const router = await routerFor(t, ['alpha']);
    await assert.rejects(mcprouter.Gateway.start(router, '0.0.0.0:0'), mcprouter.MCPRouterError);
});
