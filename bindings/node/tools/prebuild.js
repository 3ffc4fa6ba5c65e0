'use strict';

// `npm pack` / `npm publish` hooks: put this machine's libmcprouter into
// native/<platform>-<arch>/ (prepack), and take it out again (postpack, `--clean`), so a
// copy left in the source tree never shadows a fresh `cargo build` during development.
//
// Which library: $MCPROUTER_LIB, else <repo>/target/release/, else <repo>/target/debug/
// (scripts/package-node.sh sets MCPROUTER_LIB to the profile it built). The packed copy is
// stripped of debug info when `strip` exists; the original is left alone.

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const PKG = path.resolve(__dirname, '..');
const REPO = path.resolve(PKG, '..', '..');
// `native/`, not `prebuilds/`: the loader's search order (and test/bindings.test.js) name it.
const NATIVE_DIR = path.join(PKG, 'native');

function libName() {
    if (process.platform === 'win32') return 'mcprouter.dll';
    if (process.platform === 'darwin') return 'libmcprouter.dylib';
    return 'libmcprouter.so';
}

function source() {
    if (process.env.MCPROUTER_LIB) return process.env.MCPROUTER_LIB;
    const found = ['release', 'debug'].map((p) => path.join(REPO, 'target', p, libName())).find((p) => fs.existsSync(p));
    if (!found) {
        throw new Error('mcprouter prepack: no libmcprouter to pack; run `cargo build --release` in the repository, ' +
            'or set MCPROUTER_LIB to the library to pack');
    }
    return found;
}

if (process.argv.includes('--clean')) {
    fs.rmSync(NATIVE_DIR, { recursive: true, force: true });
} else {
    const from = source();
    if (!fs.statSync(from).isFile()) throw new Error(`mcprouter prepack: ${from} is not a file`);
    const dir = path.join(NATIVE_DIR, `${process.platform}-${process.arch}`);
    fs.rmSync(NATIVE_DIR, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const to = path.join(dir, libName());
    fs.copyFileSync(from, to);
    const strip = process.platform === 'darwin' ? ['-S', to] : ['--strip-debug', to];
    const r = spawnSync('strip', strip, { stdio: 'ignore' });
    const stripped = r.status === 0 ? ', stripped' : '';
    process.stderr.write(`mcprouter prepack: ${path.relative(PKG, to)} from ${from}${stripped}\n`);
}
