'use strict';

// lib/native.js declarations against include/mcprouter.h.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { REPO, mcprouter } = require('./helpers.js');
const { prototypes, candidates } = require('../lib/native.js');

function headerPath() {
    if (process.env.MCPROUTER_HEADER) return process.env.MCPROUTER_HEADER;
    if (process.env.MCPROUTER_LIB) {
        const guess = path.resolve(path.dirname(process.env.MCPROUTER_LIB), '..', '..', 'include', 'mcprouter.h');
        if (fs.existsSync(guess)) return guess;
    }
    const guess = path.join(REPO, 'include', 'mcprouter.h');
    return fs.existsSync(guess) ? guess : null;
}

const HEADER = headerPath();

function headerText() {
    // A missing header fails the checks against it; a skip would read as a pass.
    assert.ok(HEADER, 'include/mcprouter.h not found (set MCPROUTER_HEADER)');
    return fs.readFileSync(HEADER, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, ' ')
        .replace(/\/\/[^\n]*/g, ' ')
        .replace(/^\s*#[^\n]*/gm, ' ');
}

// `const struct mcprouter_router *r` -> `const mcprouter_router *`; enums are int-sized.
function normType(decl, hasName) {
    let d = decl.replace(/\b(struct|enum|_Out_|_Inout_)\s+/g, '').replace(/\*/g, ' * ').replace(/\s+/g, ' ').trim();
    if (hasName) d = d.includes('*') ? d.slice(0, d.lastIndexOf('*') + 1) : d.slice(0, d.lastIndexOf(' '));
    return d.replace(/\bmcprouter_status\b/g, 'int').replace(/mcprouter_owned_str \*/g, 'char * *');
}

function parse(text) {
    const out = {};
    for (const m of text.matchAll(/([A-Za-z_][\w\s*]*?)\b(mcprouter_\w+)\s*\(([^()]*)\)\s*;/g)) {
        const params = m[3].trim() === '' || m[3].trim() === 'void' ? [] : m[3].split(',');
        out[m[2]] = { ret: normType(m[1], false), params: params.map((p) => normType(p, true)) };
    }
    return out;
}

test('every koffi prototype matches the header', () => {
    const header = parse(headerText());
    const ours = parse(Object.values(prototypes).map((p) => p + ';').join('\n'));
    // string_free takes the raw pointer the disposable type hands it.
    ours.mcprouter_string_free = { ret: 'void', params: ['char *'] };
    for (const [name, proto] of Object.entries(ours)) {
        assert.ok(header[name], `${name} is not in ${HEADER}`);
        assert.deepEqual(proto, header[name], name);
    }
    const missing = Object.keys(header).filter((n) => !ours[n]);
    // Functions deliberately not bound: see README (callbacks from library threads; the
    // pull API mcprouter_log_next takes the log callback's place).
    assert.deepEqual(missing.sort(), ['mcprouter_session_handle_async', 'mcprouter_set_log_callback']);
});

test('status values match the header', () => {
    const found = Object.fromEntries([...headerText().matchAll(/MCPROUTER_STATUS_(\w+)\s*=\s*(\d+)/g)].map((m) => [m[1], Number(m[2])]));
    assert.deepEqual(found, { ...mcprouter.Status });
});

test('library search order', () => {
    const saved = process.env.MCPROUTER_LIB;
    try {
        process.env.MCPROUTER_LIB = '/x/libmcprouter.so';
        assert.deepEqual(candidates(), ['/x/libmcprouter.so']);
        delete process.env.MCPROUTER_LIB;
        const c = candidates();
        assert.equal(path.basename(path.dirname(c[0])), `${process.platform}-${process.arch}`);
        assert.equal(path.basename(path.dirname(path.dirname(c[0]))), 'native');
    } finally {
        if (saved === undefined) delete process.env.MCPROUTER_LIB;
        else process.env.MCPROUTER_LIB = saved;
    }
});

test('libraryPath names the loaded file', () => {
    assert.ok(fs.existsSync(mcprouter.libraryPath));
});
