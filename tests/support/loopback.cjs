// Node `--require` preload for tests: every server listens on loopback only.
//
// Usage: node --require /abs/path/tests/support/loopback.cjs SCRIPT ...
//    or: NODE_OPTIONS="--require /abs/path/tests/support/loopback.cjs"
//
// Third-party servers such as @modelcontextprotocol/server-everything bind all
// interfaces and have no host option. This patches net.Server.prototype.listen,
// which http/https/http2 servers and express's app.listen all go through, so that
// any TCP listen is bound to 127.0.0.1 whatever host (or none) was given.
// Unix-socket / pipe / handle listens are left alone.
"use strict";

const net = require("net");

const LOOPBACK = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

function isPortLike(v) {
  return (
    typeof v === "number" ||
    (typeof v === "string" && v !== "" && /^\d+$/.test(v))
  );
}

function loopbackListen(...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    // listen(options[, cb]) or listen(handle[, backlog][, cb])
    const isOptions =
      !("_handle" in first) && !("fd" in first) && typeof first.path !== "string";
    if (isOptions) {
      const opts = Object.assign({}, first, { host: LOOPBACK });
      delete opts.ipv6Only;
      args[0] = opts;
    }
  } else if (first === undefined || first === null || isPortLike(first)) {
    // listen([port[, host[, backlog]]][, cb])
    const port = first === undefined || first === null ? 0 : first;
    const rest = args.slice(1);
    if (rest.length > 0 && (typeof rest[0] === "string" || rest[0] === undefined || rest[0] === null)) {
      rest.shift(); // drop the given host
    }
    args = [port, LOOPBACK, ...rest];
  } else if (typeof first === "function") {
    // listen(cb): random port on all interfaces by default
    args = [0, LOOPBACK, first];
  }
  // a string path (unix socket / named pipe) falls through unchanged
  return originalListen.apply(this, args);
}

net.Server.prototype.listen = loopbackListen;
