'use strict';

// Log records from the router's own threads reach JavaScript through the pull API.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { mcprouter, config } = require('./helpers.js');

test('log records from router threads arrive through nextLog, redacted', { timeout: 30_000 }, async () => {
    mcprouter.logQueue(3);
    const router = await mcprouter.Router.fromYaml(config(['alpha']));
    try {
        const session = router.session('log-client');
        await session.request('tools/call', { name: 'echo', arguments: { message: 'Authorization: Bearer sekrit-node-canary' } });
        let access = null;
        const seen = [];
        const deadline = Date.now() + 10_000;
        while (!access && Date.now() < deadline) {
            const rec = await mcprouter.nextLog(500);
            if (!rec) continue;
            seen.push(rec);
            if (rec.target === 'mcprouter::access' && rec.method === 'tools/call') access = rec;
        }
        assert.ok(access, `an access record arrived (saw ${seen.length} records)`);
        assert.equal(access.outcome, 'ok');
        assert.equal(typeof access.duration_ms, 'number');
        assert.ok(!JSON.stringify(seen).includes('sekrit-node-canary'));
        session.close();
    } finally {
        await router.close();
        mcprouter.logQueue(0);
    }
    await assert.rejects(mcprouter.nextLog(0), mcprouter.ClosedError);
});
