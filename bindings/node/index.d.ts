// Types for the mcprouter Node package (lib/index.js).
// Router and Session also implement Symbol.asyncDispose at runtime where Node defines it; it
// is left out here so the types compile without TypeScript's esnext.disposable lib.

/** A JSON-RPC message or batch, as accepted by Session.handle. */
export type JsonRpcMessage = Record<string, unknown> | unknown[];

/** mcprouter_status values. */
export declare const Status: Readonly<{
    OK: 0;
    NULL_PARAMETER: 1;
    INVALID_ARGUMENT: 2;
    INVALID_UTF8: 3;
    CONFIG: 4;
    TIMEOUT: 5;
    QUEUE_FULL: 6;
    CIRCUIT_OPEN: 7;
    NO_BACKEND: 8;
    TRANSPORT: 9;
    PROTOCOL: 10;
    CLOSED: 11;
    ALREADY_USED: 12;
    PANIC: 13;
}>;

/** A call into libmcprouter failed. */
export declare class MCPRouterError extends Error {
    constructor(message: string, status?: number);
    /** The numeric mcprouter_status. */
    readonly status: number;
    /** Its name, e.g. 'CLOSED'; 'UNKNOWN' for a status this package does not know. */
    readonly statusName: string;
}
export declare class NullParameterError extends MCPRouterError { static readonly status: 1; }
export declare class InvalidArgumentError extends MCPRouterError { static readonly status: 2; }
export declare class InvalidUtf8Error extends MCPRouterError { static readonly status: 3; }
export declare class ConfigError extends MCPRouterError { static readonly status: 4; }
export declare class TimeoutError extends MCPRouterError { static readonly status: 5; }
export declare class QueueFullError extends MCPRouterError { static readonly status: 6; }
export declare class CircuitOpenError extends MCPRouterError { static readonly status: 7; }
export declare class NoBackendError extends MCPRouterError { static readonly status: 8; }
export declare class TransportError extends MCPRouterError { static readonly status: 9; }
export declare class ProtocolError extends MCPRouterError { static readonly status: 10; }
export declare class ClosedError extends MCPRouterError { static readonly status: 11; }
export declare class AlreadyUsedError extends MCPRouterError { static readonly status: 12; }
export declare class PanicError extends MCPRouterError { static readonly status: 13; }

/** The router (or a backend through it) answered a request with a JSON-RPC error. */
export declare class JsonRpcError extends Error {
    constructor(code: number, message: string, data?: unknown);
    readonly code: number;
    readonly data: unknown;
}

export interface RequestOptions {
    /** Cancel the request (MCP notifications/cancelled) and reject with TimeoutError after this long. */
    timeoutMs?: number;
    /** Cancel the request and reject with the signal's reason when it aborts. */
    signal?: AbortSignal;
}

export interface InitializeOptions {
    protocolVersion?: string;
    capabilities?: Record<string, unknown>;
    clientInfo?: { name: string; version: string; [k: string]: unknown };
}

/** Status of the router and each backend, as returned by Router.status(). */
export interface RouterStatus {
    router: {
        name: string;
        version: string;
        closed: boolean;
        sessions: number;
        uptime_ms: number;
        catalog: Record<string, number>;
        [k: string]: unknown;
    };
    backends: Array<{
        name: string;
        transport: string;
        state: string;
        protocol_version: string | null;
        tools: number;
        resources: number;
        prompts: number;
        in_flight: number;
        queue_depth: number;
        handshake_ms: number | null;
        pid: number | null;
        last_error: string | null;
        [k: string]: unknown;
    }>;
}

/** A running router: the backends (MCP servers) and their merged catalog. */
export declare class Router {
    private constructor();
    /** Validates the config, starts every backend and waits for their handshakes. Rejects with ConfigError. */
    static fromYaml(text: string): Promise<Router>;
    /** Like fromYaml, reading the config from a file. */
    static fromFile(path: string): Promise<Router>;
    /** Opens a session: one MCP client. `clientId` keys sticky balancing. */
    session(clientId?: string | null): Session;
    /**
     * Applies a new YAML config without a restart; resolves to its generation (1 was the
     * config the router started with). A bad config rejects with ConfigError and the
     * running one keeps serving.
     */
    reload(yaml: string): Promise<number>;
    /** Like reload, reading the config from a file. */
    reloadFromFile(path: string): Promise<number>;
    /** Prometheus text exposition of the router's metrics. */
    metrics(): string;
    status(): RouterStatus;
    /** Stops the backends; later calls on the router and its sessions reject with ClosedError. */
    shutdown(graceMs?: number): Promise<void>;
    /** Closes the sessions opened from it, then frees the router (joining its threads). Idempotent. */
    close(): Promise<void>;
    readonly closed: boolean;
}

/** One MCP client of a Router. */
/** The router served to many MCP clients over Streamable HTTP (its config's `gateway:`). */
export declare class Gateway {
    private constructor();
    /** Starts serving `router`; `listen` ("HOST:PORT") overrides the config's address. */
    static start(router: Router, listen?: string): Promise<Gateway>;
    /** The MCP endpoint's URL, `http://HOST:PORT/PATH`. */
    readonly url: string;
    /** Stops accepting, lets open streams finish for up to `graceMs`, joins its threads. */
    shutdown(graceMs?: number): Promise<void>;
    /** Stops and frees it. Idempotent. */
    close(): Promise<void>;
    readonly closed: boolean;
}

export declare class Session {
    private constructor();
    readonly router: Router;
    readonly closed: boolean;
    /** Handles one message or batch; resolves with the parsed reply, or null when there is none. */
    handle(message: string | JsonRpcMessage): Promise<Record<string, unknown> | unknown[] | null>;
    /** Sends a request and resolves with its result; rejects with JsonRpcError on an error reply. */
    request<T = any>(method: string, params?: Record<string, unknown> | null, options?: RequestOptions): Promise<T>;
    /** Sends a notification. */
    notify(method: string, params?: Record<string, unknown> | null): Promise<void>;
    /** initialize + notifications/initialized; resolves with the initialize result. */
    initialize(options?: InitializeOptions): Promise<any>;
    /** The next notification or server-to-client request, or null after `timeoutMs` (default 0; Infinity waits forever). */
    nextEvent(timeoutMs?: number): Promise<Record<string, any> | null>;
    /** Cancels this session's requests in flight and frees it once they have returned. Idempotent. */
    close(): Promise<void>;
}

/** The native library's version. */
export declare function version(): string;
/** Starts (level 1-5) or stops (0) keeping log records for nextLog(). */
export declare function logQueue(minLevel: number, capacity?: number): void;
/** The next log record ({ts, level, target, msg, ...fields}, redacted), or null after timeoutMs. */
export declare function nextLog(timeoutMs?: number): Promise<Record<string, any> | null>;
/** The path the native library was loaded from. */
export declare const libraryPath: string;
