'use strict';

// One error class per mcprouter_status, all MCPRouterError (with .status and .statusName),
// and JsonRpcError (with .code and .data) for JSON-RPC error replies.

/** mcprouter_status values; append-only (test/bindings.test.js checks them against the header). */
const Status = Object.freeze({
    OK: 0,
    NULL_PARAMETER: 1,
    INVALID_ARGUMENT: 2,
    INVALID_UTF8: 3,
    CONFIG: 4,
    TIMEOUT: 5,
    QUEUE_FULL: 6,
    CIRCUIT_OPEN: 7,
    NO_BACKEND: 8,
    TRANSPORT: 9,
    PROTOCOL: 10,
    CLOSED: 11,
    ALREADY_USED: 12,
    PANIC: 13,
});

const NAMES = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k]));

class MCPRouterError extends Error {
    constructor(message, status) {
        super(message);
        this.name = new.target.name;
        /** The numeric mcprouter_status. */
        this.status = status ?? new.target.status;
        /** Its name, e.g. 'CLOSED' ('UNKNOWN' for a status this package does not know). */
        this.statusName = NAMES[this.status] ?? 'UNKNOWN';
    }
}

class NullParameterError extends MCPRouterError { static status = Status.NULL_PARAMETER; }
class InvalidArgumentError extends MCPRouterError { static status = Status.INVALID_ARGUMENT; }
class InvalidUtf8Error extends MCPRouterError { static status = Status.INVALID_UTF8; }
class ConfigError extends MCPRouterError { static status = Status.CONFIG; }
class TimeoutError extends MCPRouterError { static status = Status.TIMEOUT; }
class QueueFullError extends MCPRouterError { static status = Status.QUEUE_FULL; }
class CircuitOpenError extends MCPRouterError { static status = Status.CIRCUIT_OPEN; }
class NoBackendError extends MCPRouterError { static status = Status.NO_BACKEND; }
class TransportError extends MCPRouterError { static status = Status.TRANSPORT; }
class ProtocolError extends MCPRouterError { static status = Status.PROTOCOL; }
class ClosedError extends MCPRouterError { static status = Status.CLOSED; }
class AlreadyUsedError extends MCPRouterError { static status = Status.ALREADY_USED; }
class PanicError extends MCPRouterError { static status = Status.PANIC; }

const BY_STATUS = new Map([
    NullParameterError, InvalidArgumentError, InvalidUtf8Error, ConfigError, TimeoutError,
    QueueFullError, CircuitOpenError, NoBackendError, TransportError, ProtocolError,
    ClosedError, AlreadyUsedError, PanicError,
].map((cls) => [cls.status, cls]));

/** The router answered with a JSON-RPC error: `code`, `message`, `data`. */
class JsonRpcError extends Error {
    constructor(code, message, data) {
        super(message);
        this.name = 'JsonRpcError';
        this.code = code;
        this.data = data;
    }

    static fromObject(err) {
        if (err === null || typeof err !== 'object') return new JsonRpcError(-32603, `malformed error object: ${JSON.stringify(err)}`);
        return new JsonRpcError(Number.isInteger(err.code) ? err.code : -32603, String(err.message ?? ''), err.data);
    }
}

function errorFor(status, message) {
    const Cls = BY_STATUS.get(status) ?? MCPRouterError;
    return new Cls(message ?? `mcprouter status ${NAMES[status] ?? status}`, status);
}

module.exports = {
    Status,
    MCPRouterError,
    NullParameterError,
    InvalidArgumentError,
    InvalidUtf8Error,
    ConfigError,
    TimeoutError,
    QueueFullError,
    CircuitOpenError,
    NoBackendError,
    TransportError,
    ProtocolError,
    ClosedError,
    AlreadyUsedError,
    PanicError,
    JsonRpcError,
    errorFor,
};
