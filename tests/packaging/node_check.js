'use strict';
// Run by tests/packaging/run.sh in a fresh folder outside the repository, where only the
// packed tarball (and koffi, its dependency) is installed: the package must load its bundled
// library. $MCPROUTER_TEST_SERVER is the binary whose `test-server` is the backend.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

assert.equal(process.env.MCPROUTER_LIB, undefined, 'the bundled library must be found without MCPROUTER_LIB');
const pkgDir = path.dirname(require.resolve('mcprouter/package.json'));
assert.ok(pkgDir.includes(`${path.sep}node_modules${path.sep}`), pkgDir);
assert.ok(fs.existsSync(path.join(pkgDir, 'index.d.ts')), 'the type declarations are packed');

const mcprouter = require('mcprouter');
const expected = path.join(pkgDir, 'native', `${process.platform}-${process.arch}`);
assert.equal(path.dirname(fs.realpathSync(mcprouter.libraryPath)), fs.realpathSync(expected));

(async () => {
    const bin = process.env.MCPROUTER_TEST_SERVER;
    const router = await mcprouter.Router.fromYaml(
        `backends:\n  - name: alpha\n    command: ${JSON.stringify(bin)}\n    args: [test-server, --name, alpha]\n`);
    try {
        const session = router.session('tarball');
        await session.initialize();
        const { tools } = await session.request('tools/list');
        assert.ok(tools.some((t) => t.name === 'echo'));
        const out = await session.request('tools/call', { name: 'echo', arguments: { message: 'from the tarball' } });
        assert.match(JSON.stringify(out), /from the tarball/);
    } finally {
        await router.close();
    }
    console.log(`tarball ok: ${path.relative(pkgDir, mcprouter.libraryPath)}`);
})().catch((e) => {
    console.error(e);
    process.exit(1);
});
