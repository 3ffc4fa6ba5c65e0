'use strict';

// mcprouter for Node: classes over the C API, through koffi.
//
// Every call that can block (router creation, handle, next_event, shutdown, freeing a
// router, which joins its threads) runs on koffi's worker threads (`.async`, which uses the
// libuv thread pool) and returns a Promise: the event loop never waits for a backend.
// Quick calls (opening a session, status, metrics) are synchronous.
//
// The header forbids freeing a handle while another thread uses it, and here the "other
// thread" is any .async call still in flight. So each call leases the pointer; close()
// marks the object closed, waits for the leases to end, then frees it.

const { native } = require('./native.js');
const errors = require('./errors.js');

const { Status, ClosedError, InvalidArgumentError, ProtocolError, TimeoutError, JsonRpcError, errorFor } = errors;

const DEFAULT_PROTOCOL = '2025-06-18';
// How long one native next_event call may wait, so close() is noticed promptly.
const EVENT_SLICE_MS = 100;
// koffi refuses more than `max_async_calls` (256) queued async calls; beyond this many,
// calls wait in JS instead of failing.
const MAX_ASYNC_IN_FLIGHT = 128;

// -- async plumbing ----------------------------------------------------------------------

let asyncInFlight = 0;
const asyncWaiting = [];

function startNextAsync() {
    while (asyncWaiting.length > 0 && asyncInFlight < MAX_ASYNC_IN_FLIGHT) asyncWaiting.shift()();
}

/** Runs `fn(...args)` on a koffi worker thread; resolves with its return value. */
function callAsync(fn, ...args) {
    return new Promise((resolve, reject) => {
        const start = () => {
            asyncInFlight++;
            const done = () => {
                asyncInFlight--;
                startNextAsync();
            };
            try {
                fn.async(...args, (err, res) => {
                    done();
                    if (err) reject(err);
                    else resolve(res);
                });
            } catch (e) {
                done();
                reject(e);
            }
        };
        if (asyncInFlight < MAX_ASYNC_IN_FLIGHT) start();
        else asyncWaiting.push(start);
    });
}

// -- errors ------------------------------------------------------------------------------

/** Throws for a failed status; always frees the `mcprouter_error` in `errSlot[0]`. */
function check(status, errSlot) {
    const e = errSlot[0];
    errSlot[0] = null;
    let message;
    let errStatus = status;
    if (e) {
        try {
            errStatus = native.mcprouter_error_status(e);
            message = native.mcprouter_error_message(e);
        } finally {
            native.mcprouter_error_free(e);
        }
    }
    if (status === Status.OK) return;
    // The return value is authoritative should the error object disagree.
    if (errStatus !== status) message = undefined;
    throw errorFor(status, message ?? native.mcprouter_status_str(status));
}

function cString(value, what) {
    if (typeof value !== 'string') throw new TypeError(`${what} must be a string, got ${typeof value}`);
    if (value.includes('\0')) throw new InvalidArgumentError(`${what} contains a NUL character`);
    return value;
}

function uint32(ms, what) {
    if (typeof ms !== 'number' || !(ms >= 0)) throw new RangeError(`${what} must be a number >= 0, got ${ms}`);
    return Math.min(Math.floor(ms), 0xFFFFFFFF);
}

function parseJson(text, what) {
    try {
        return JSON.parse(text);
    } catch (e) {
        throw new ProtocolError(`${what} is not JSON: ${e.message}`);
    }
}

// -- handles -----------------------------------------------------------------------------

// Backstop only: frees a handle whose object was garbage-collected without close().
// Runs .async, as a router free may join threads.
const finalizer = new FinalizationRegistry(({ ptr, free }) => {
    try {
        free.async(ptr, () => {});
    } catch (_) {
        // Too many async calls: leak rather than block the event loop.
    }
});

const ENTER = Symbol('enter');
const LEAVE = Symbol('leave');
const USE = Symbol('use');
const BEFORE_FREE = Symbol('beforeFree');

class NativeHandle {
    #ptr;
    #kind;
    #free;
    #leases = 0;
    #closed = false;
    #closing = null;
    #idle = null;

    constructor(ptr, kind, free) {
        if (!ptr) throw new TypeError(`NULL ${kind} handle`);
        this.#ptr = ptr;
        this.#kind = kind;
        this.#free = free;
        finalizer.register(this, { ptr, free }, this);
    }

    /** Whether close() was called. */
    get closed() {
        return this.#closed;
    }

    /** Leases the pointer; `internal` also allows it after close() until it is freed. */
    [ENTER](internal = false) {
        if (this.#ptr === null || (this.#closed && !internal)) throw new ClosedError(`the ${this.#kind} is closed`);
        this.#leases++;
        return this.#ptr;
    }

    [LEAVE]() {
        this.#leases--;
        if (this.#leases === 0 && this.#idle) this.#idle();
    }

    /** Runs `fn(ptr)` under a lease. */
    async [USE](fn, internal = false) {
        const ptr = this[ENTER](internal);
        try {
            return await fn(ptr);
        } finally {
            this[LEAVE]();
        }
    }

    async [BEFORE_FREE]() {}

    /**
     * Closes the object: idempotent, returns the same Promise every time. Calls in
     * flight finish first; the handle is freed when the last of them has returned.
     */
    close() {
        if (this.#closing) return this.#closing;
        this.#closed = true;
        this.#closing = (async () => {
            try {
                await this[BEFORE_FREE]();
            } finally {
                if (this.#leases > 0) await new Promise((resolve) => { this.#idle = resolve; });
                const ptr = this.#ptr;
                this.#ptr = null;
                finalizer.unregister(this);
                await callAsync(this.#free, ptr);
            }
        })();
        return this.#closing;
    }
}

if (Symbol.asyncDispose) {
    NativeHandle.prototype[Symbol.asyncDispose] = function asyncDispose() {
        return this.close();
    };
}

// -- Router ------------------------------------------------------------------------------

class Router extends NativeHandle {
    // Weak: a session the application dropped without close() stays collectable, and its
    // finalizer frees it.
    #sessions = new Set();

    /** @private Use Router.fromYaml / Router.fromFile. */
    constructor(ptr) {
        super(ptr, 'router', native.mcprouter_router_free);
    }

    /**
     * Validates the YAML config, starts every backend and waits for their handshakes (a
     * backend that fails does not fail the router: see status()). Rejects with
     * ConfigError for an invalid config.
     */
    static async fromYaml(text) {
        const out = [null];
        const err = [null];
        const st = await callAsync(native.mcprouter_router_new_from_yaml, cString(text, 'the config'), out, err);
        check(st, err);
        return new Router(out[0]);
    }

    /** Like fromYaml, reading the config from a file. */
    static async fromFile(path) {
        const out = [null];
        const err = [null];
        const st = await callAsync(native.mcprouter_router_new_from_file, cString(String(path), 'the path'), out, err);
        check(st, err);
        return new Router(out[0]);
    }

    /** Opens a session (one MCP client); `clientId` keys sticky balancing. */
    session(clientId) {
        const cid = clientId === undefined || clientId === null ? null : cString(clientId, 'clientId');
        const ptr = this[ENTER]();
        const out = [null];
        const err = [null];
        try {
            check(native.mcprouter_session_open(ptr, cid, out, err), err);
        } finally {
            this[LEAVE]();
        }
        const session = new Session(out[0], this);
        for (const ref of this.#sessions) {
            const s = ref.deref();
            if (s === undefined || s.closed) this.#sessions.delete(ref);
        }
        this.#sessions.add(new WeakRef(session));
        return session;
    }

    /**
     * Applies a new YAML config without a restart; resolves to its generation (the config
     * the router started with is 1). Validated first: a bad config rejects with
     * ConfigError (naming the field and line) and the running one keeps serving.
     * Unchanged backends keep their process; added and changed ones start before the
     * promise resolves; removed ones finish their calls in flight, then stop. Sessions
     * stay open and receive notifications/*\/list_changed.
     */
    reload(text) {
        const yaml = cString(text, 'the config');
        return this[USE](async (ptr) => {
            const generation = [0];
            const err = [null];
            check(await callAsync(native.mcprouter_router_reload_from_yaml, ptr, yaml, generation, err), err);
            return Number(generation[0]);
        });
    }

    /** Like reload, reading the config from a file. */
    reloadFromFile(path) {
        const p = cString(String(path), 'the path');
        return this[USE](async (ptr) => {
            const generation = [0];
            const err = [null];
            check(await callAsync(native.mcprouter_router_reload_from_file, ptr, p, generation, err), err);
            return Number(generation[0]);
        });
    }

    /** Prometheus text exposition of the router's metrics. */
    metrics() {
        const ptr = this[ENTER]();
        try {
            const out = [null];
            const err = [null];
            check(native.mcprouter_router_metrics(ptr, out, err), err);
            return out[0] ?? '';
        } finally {
            this[LEAVE]();
        }
    }

    /** Every backend's state, counts and last error (the parsed status JSON). */
    status() {
        const ptr = this[ENTER]();
        try {
            const out = [null];
            const err = [null];
            check(native.mcprouter_router_status(ptr, out, err), err);
            return parseJson(out[0], 'the router status');
        } finally {
            this[LEAVE]();
        }
    }

    /**
     * Stops the backends (stdin closed, then terminated after `graceMs`, then killed) and
     * joins their threads. Afterwards every call on the router and its sessions rejects
     * with ClosedError; close() still frees the handle. Idempotent.
     */
    shutdown(graceMs = 5000) {
        const grace = uint32(graceMs, 'graceMs');
        return this[USE]((ptr) => callAsync(native.mcprouter_router_shutdown, ptr, grace));
    }

    async [BEFORE_FREE]() {
        const open = [...this.#sessions].map((ref) => ref.deref()).filter((s) => s !== undefined);
        this.#sessions.clear();
        await Promise.allSettled(open.map((s) => s.close()));
    }
}

// -- Gateway -----------------------------------------------------------------------------

/** The router served to many MCP clients over Streamable HTTP (its config's `gateway:`). */
class Gateway extends NativeHandle {
    /** @private Use Gateway.start. */
    constructor(ptr) {
        super(ptr, 'gateway', native.mcprouter_gateway_free);
    }

    /**
     * Starts serving `router`; `listen` ("HOST:PORT", port 0 for a free one) overrides the
     * config's address. Rejects with ConfigError without an address, or for a non-loopback
     * one without tokens, and with TransportError when it cannot be bound.
     */
    static async start(router, listen) {
        const addr = listen === undefined || listen === null ? null : cString(listen, 'listen');
        const out = [null];
        const err = [null];
        const st = await router[USE]((ptr) => callAsync(native.mcprouter_gateway_start, ptr, addr, out, err));
        check(st, err);
        return new Gateway(out[0]);
    }

    /** The MCP endpoint's URL, `http://HOST:PORT/PATH`. */
    get url() {
        const ptr = this[ENTER]();
        try {
            const out = [null];
            const err = [null];
            check(native.mcprouter_gateway_url(ptr, out, err), err);
            return out[0] ?? '';
        } finally {
            this[LEAVE]();
        }
    }

    /** Stops accepting, lets open streams finish for up to `graceMs`, joins its threads. */
    shutdown(graceMs = 5000) {
        const grace = uint32(graceMs, 'graceMs');
        return this[USE]((ptr) => callAsync(native.mcprouter_gateway_shutdown, ptr, grace));
    }
}

// -- Session -----------------------------------------------------------------------------

class Session extends NativeHandle {
    #router;
    #nextId = 1;
    #inflight = new Set();

    /** @private Use router.session(). */
    constructor(ptr, router) {
        super(ptr, 'session', native.mcprouter_session_close);
        this.#router = router;
    }

    /** The router this session belongs to (kept alive by the session). */
    get router() {
        return this.#router;
    }

    async #handleText(text, internal = false) {
        return this[USE](async (ptr) => {
            const out = [null];
            const err = [null];
            const st = await callAsync(native.mcprouter_session_handle, ptr, text, out, err);
            check(st, err);
            return out[0];
        }, internal);
    }

    /**
     * Handles one JSON-RPC message or batch (a string, or an object / array to be
     * serialised) and resolves with the parsed reply: null for notifications, responses
     * (such as the answer to a sampling request), all-notification batches and cancelled
     * requests. Malformed input gets a JSON-RPC error reply, not a rejection.
     */
    async handle(message) {
        if (typeof message !== 'string' && (message === null || typeof message !== 'object')) {
            throw new TypeError(`message must be a string, an object or an array, got ${message === null ? 'null' : typeof message}`);
        }
        const text = typeof message === 'string' ? message : JSON.stringify(message);
        const reply = await this.#handleText(cString(text, 'the message'));
        return reply === null ? null : parseJson(reply, 'the reply');
    }

    /**
     * Sends a request with a fresh id and resolves with its `result`; rejects with
     * JsonRpcError (`code`, `data`) on an error reply. `options.timeoutMs` /
     * `options.signal` cancel it (an MCP notifications/cancelled goes to the backend) and
     * reject with TimeoutError / the signal's reason.
     */
    async request(method, params, options = {}) {
        const id = this.#nextId++;
        const msg = { jsonrpc: '2.0', id, method: cString(method, 'method') };
        if (params !== undefined && params !== null) msg.params = params;
        const call = this.#handleText(cString(JSON.stringify(msg), 'the request'));
        this.#inflight.add(id);
        let reply;
        try {
            reply = await this.#withCancellation(id, call, options);
        } finally {
            this.#inflight.delete(id);
        }
        if (reply === null) {
            if (this.closed) throw new ClosedError(`the session was closed while ${method} was in flight`);
            throw new ProtocolError(`${method} (id ${id}) was cancelled and got no reply`);
        }
        const value = parseJson(reply, 'the reply');
        if (value && value.error !== undefined) throw JsonRpcError.fromObject(value.error);
        return value.result;
    }

    #withCancellation(id, call, { timeoutMs, signal } = {}) {
        if (timeoutMs === undefined && !signal) return call;
        return new Promise((resolve, reject) => {
            let timer = null;
            const settle = (fn, value) => {
                if (timer) clearTimeout(timer);
                if (signal) signal.removeEventListener('abort', onAbort);
                fn(value);
            };
            const cancel = (reason, error) => {
                call.catch(() => {}); // its outcome no longer matters
                this.#cancel(id, reason).catch(() => {});
                settle(reject, error);
            };
            const onAbort = () => cancel('aborted by the client', signal.reason ?? new Error('aborted'));
            if (signal) {
                if (signal.aborted) return onAbort();
                signal.addEventListener('abort', onAbort, { once: true });
            }
            if (timeoutMs !== undefined) {
                const ms = uint32(timeoutMs, 'timeoutMs');
                timer = setTimeout(() => cancel(`timed out after ${ms} ms`, new TimeoutError(`request ${id} timed out after ${ms} ms`)), ms);
            }
            call.then((v) => settle(resolve, v), (e) => settle(reject, e));
        });
    }

    /** Cancels our own request `id`, also while the session is closing. */
    async #cancel(id, reason) {
        const msg = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } };
        try {
            await this.#handleText(JSON.stringify(msg), true);
        } catch (e) {
            if (!(e instanceof ClosedError)) throw e;
        }
    }

    /** Sends a notification (no id, no reply). */
    async notify(method, params) {
        const msg = { jsonrpc: '2.0', method: cString(method, 'method') };
        if (params !== undefined && params !== null) msg.params = params;
        await this.#handleText(cString(JSON.stringify(msg), 'the notification'));
    }

    /** The MCP handshake: initialize, then notifications/initialized. Resolves with the initialize result. */
    async initialize({ protocolVersion = DEFAULT_PROTOCOL, capabilities = {}, clientInfo } = {}) {
        const result = await this.request('initialize', {
            protocolVersion,
            capabilities,
            clientInfo: clientInfo ?? { name: 'mcprouter-node', version: '0.1.0' },
        });
        await this.notify('notifications/initialized');
        return result;
    }

    /**
     * The next notification or server-to-client request for this client, waiting up to
     * `timeoutMs` (0: just look; Infinity: no limit). Resolves with null when nothing came;
     * rejects with ClosedError once the session or router is closed and no event is left.
     * Answer a request event with handle({jsonrpc: '2.0', id: event.id, result}).
     *
     * While it waits it occupies one libuv thread-pool thread (see README).
     */
    async nextEvent(timeoutMs = 0) {
        const forever = timeoutMs === Infinity;
        const deadline = forever ? 0 : Date.now() + uint32(timeoutMs, 'timeoutMs');
        return this[USE](async (ptr) => {
            for (;;) {
                if (this.closed) throw new ClosedError('the session was closed');
                const left = forever ? EVENT_SLICE_MS : Math.max(0, deadline - Date.now());
                const out = [null];
                const err = [null];
                const st = await callAsync(native.mcprouter_session_next_event, ptr, Math.min(left, EVENT_SLICE_MS), out, err);
                if (st === Status.TIMEOUT && out[0] === null) {
                    check(Status.OK, err); // frees the error object
                    if (!forever && Date.now() >= deadline) return null;
                    continue;
                }
                check(st, err);
                if (out[0] === null) throw new ProtocolError('next_event succeeded without an event');
                return parseJson(out[0], 'the event');
            }
        });
    }

    async [BEFORE_FREE]() {
        // Our requests still in flight would hold the handle until their backends answer:
        // cancel them so close() takes effect now.
        await Promise.allSettled([...this.#inflight].map((id) => this.#cancel(id, 'the client closed the session')));
    }
}

/** The native library's version (mcprouter_version()). */
function version() {
    return native.mcprouter_version();
}

/**
 * Starts keeping the library's log records for nextLog(): level 1 error, 2 warn, 3 info,
 * 4 debug, 5 trace; 0 stops and drops what is queued. A pull API on purpose: a log callback
 * would block the router's thread until JavaScript ran. When `capacity` records wait
 * unread, new ones are dropped.
 */
function logQueue(minLevel, capacity = 1024) {
    native.mcprouter_log_queue(minLevel | 0, uint32(capacity, 'capacity'));
}

/**
 * The next queued log record, parsed ({ts, level, target, msg, ...fields}; always
 * redacted), waiting up to `timeoutMs`; null when none came. Rejects with ClosedError when
 * logQueue() is off.
 */
async function nextLog(timeoutMs = 0) {
    const out = [null];
    const err = [null];
    const st = await callAsync(native.mcprouter_log_next, uint32(timeoutMs, 'timeoutMs'), out, err);
    if (st === Status.TIMEOUT && out[0] === null) {
        check(Status.OK, err); // frees the error object
        return null;
    }
    check(st, err);
    return parseJson(out[0], 'the log record');
}

const { errorFor: _internal, ...publicErrors } = errors;

module.exports = {
    Router,
    Gateway,
    Session,
    version,
    logQueue,
    nextLog,
    libraryPath: require('./native.js').libraryPath,
    ...publicErrors,
};
