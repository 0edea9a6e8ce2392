/**
 * A small HTTP client for the tests and the benchmark: plain requests, and streamed completions whose
 * every chunk is timestamped (over HTTPS for an https: URL, trusting `ca`), plus free ports on 127.0.0.1. Never talks to anything but the loopback
 * or the addresses a test hands it.
 */
import * as http from "http";
import * as https from "https";
import * as net from "net";
import { performance } from "perf_hooks";

/** A free TCP port on 127.0.0.1 (bound then released: fine on a test machine). */
export async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const address = server.address() as net.AddressInfo;
            server.close(() => resolve(address.port));
        });
    });
}

/** Whether something accepts TCP connections on host:port (127.0.0.1 by default) right now. */
export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
    return new Promise((resolve) => {
        const socket = net.connect({ host, port });
        socket.once("connect", () => {
            socket.destroy();
            resolve(true);
        });
        socket.once("error", () => resolve(false));
        socket.setTimeout(2000, () => {
            socket.destroy();
            resolve(false);
        });
    });
}

/**
 * How long a server keeps a keep-alive connection open after answering one request on it (`GET path`),
 * in ms, until it closes it; undefined when it is still open after `capMs`.
 */
export function idleCloseMs(port: number, path = "/health", capMs = 15_000, host = "127.0.0.1"): Promise<number | undefined> {
    return new Promise((resolve, reject) => {
        const socket = net.connect(port, host, () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
        let answered: number | undefined;
        const cap = setTimeout(() => (socket.destroy(), resolve(undefined)), capMs);
        socket.on("data", () => (answered = performance.now()));
        socket.on("error", (err) => (clearTimeout(cap), reject(err)));
        socket.on("close", () => {
            clearTimeout(cap);
            if (answered === undefined) {
                reject(new Error(`127.0.0.1:${port} closed the connection without answering GET ${path}`));
            } else {
                resolve(performance.now() - answered);
            }
        });
    });
}

export interface Response {
    status: number;
    headers: http.IncomingHttpHeaders;
    text: string;
    /** Parsed JSON body, or undefined. */
    json: any;
    ms: number;
}

export interface RequestOptions {
    method?: string;
    body?: unknown;
    headers?: Record<string, string>;
    agent?: http.Agent | false;
    timeoutMs?: number;
    /** For an https: URL, the certificate (PEM) to trust; defaults to the system's. */
    ca?: string;
}

/** `http.request` or, for an https: URL, `https.request` trusting `ca`. */
function send(url: string, options: http.RequestOptions & { ca?: string }, callback: (res: http.IncomingMessage) => void): http.ClientRequest {
    if (url.startsWith("https:")) {
        return https.request(url, options as https.RequestOptions, callback);
    }
    const { ca: _ca, ...plain } = options;
    return http.request(url, plain, callback);
}

/** A response's status, headers and whole body (as text, and as JSON when it parses), timed from `started`. */
export function readResponse(res: http.IncomingMessage, started: number): Promise<Response> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let json: any;
            try {
                json = JSON.parse(text);
            } catch {
                json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, ms: performance.now() - started });
        });
        res.on("error", reject);
    });
}

/** One HTTP request; the body (if any) is sent as JSON unless it is a string or Buffer. */
export function request(url: string, options: RequestOptions = {}): Promise<Response> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
        const payload = options.body === undefined ? undefined : typeof options.body === "string" || Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body);
        const req = send(
            url,
            {
                method: options.method ?? (payload === undefined ? "GET" : "POST"),
                agent: options.agent,
                ca: options.ca,
                headers: { ...(payload !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {}), ...options.headers },
            },
            (res) => readResponse(res, started).then(resolve, reject),
        );
        req.on("error", reject);
        if (options.timeoutMs) {
            req.setTimeout(options.timeoutMs, () => req.destroy(new Error(`request timed out after ${options.timeoutMs} ms`)));
        }
        req.end(payload);
    });
}

export interface SseEvent {
    /** performance.now() when the chunk that completed this event arrived. */
    at: number;
    data: string;
}

export interface StreamResult {
    status: number;
    headers: http.IncomingHttpHeaders;
    replica: string | undefined;
    /** performance.now() when the request was sent. */
    sentAt: number;
    headersAt: number;
    /** Every `data:` event, in order. */
    events: SseEvent[];
    /** Arrival time of every raw chunk the socket delivered. */
    chunkArrivals: number[];
    /** Saw `data: [DONE]`. */
    done: boolean;
    /** The HTTP response ended cleanly (complete message). */
    complete: boolean;
    /** Set when the connection failed or was cut. */
    error?: string;
    /** Raw body text. */
    text: string;
}

export interface StreamHandle {
    result: Promise<StreamResult>;
    /** Closes the connection, as a client that gives up does. */
    abort(): void;
    /** Resolves when the first `data:` event has arrived (or the stream ended). */
    firstEvent: Promise<void>;
}

export interface StreamOptions {
    headers?: Record<string, string>;
    agent?: http.Agent | false;
    /** For an https: URL, the certificate (PEM) to trust; defaults to the system's. */
    ca?: string;
    onEvent?: (e: SseEvent, all: SseEvent[]) => void;
    /** Gives up (and records an error) after this long without the stream ending. */
    timeoutMs?: number;
}

/**
 * A streamed completion: POSTs `body` and records when each SSE event arrives. Never rejects: a cut
 * connection resolves with `error` set and `complete` false.
 */
export function stream(url: string, body: unknown, options: StreamOptions = {}): StreamHandle {
    const payload = JSON.stringify(body);
    let firstEventResolve!: () => void;
    const firstEvent = new Promise<void>((resolve) => (firstEventResolve = resolve));
    let req!: http.ClientRequest;
    const result = new Promise<StreamResult>((resolve) => {
        const r: StreamResult = {
            status: 0,
            headers: {},
            replica: undefined,
            sentAt: performance.now(),
            headersAt: NaN,
            events: [],
            chunkArrivals: [],
            done: false,
            complete: false,
            text: "",
        };
        let settled = false;
        const settle = () => {
            if (!settled) {
                settled = true;
                firstEventResolve();
                resolve(r);
            }
        };
        req = send(
            url,
            {
                method: "POST",
                agent: options.agent,
                ca: options.ca,
                headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), ...options.headers },
            },
            (res) => {
                r.status = res.statusCode ?? 0;
                r.headers = res.headers;
                r.headersAt = performance.now();
                r.replica = res.headers["x-replica-id"] as string | undefined;
                let buffer = "";
                res.setEncoding("utf8");
                res.on("data", (chunk: string) => {
                    const at = performance.now();
                    r.chunkArrivals.push(at);
                    r.text += chunk;
                    buffer += chunk;
                    let cut = buffer.indexOf("\n\n");
                    while (cut >= 0) {
                        const block = buffer.slice(0, cut);
                        buffer = buffer.slice(cut + 2);
                        for (const line of block.split("\n")) {
                            if (line.startsWith("data: ")) {
                                const event = { at, data: line.slice(6) };
                                r.events.push(event);
                                if (event.data === "[DONE]") {
                                    r.done = true;
                                }
                                if (r.events.length === 1) {
                                    firstEventResolve();
                                }
                                options.onEvent?.(event, r.events);
                            }
                        }
                        cut = buffer.indexOf("\n\n");
                    }
                });
                res.on("error", (err) => (r.error = r.error ?? err.message));
                res.on("aborted", () => (r.error = r.error ?? "aborted"));
                res.on("close", () => {
                    r.complete = res.complete && r.error === undefined;
                    settle();
                });
            },
        );
        req.on("error", (err) => {
            r.error = r.error ?? err.message;
            settle();
        });
        if (options.timeoutMs) {
            req.setTimeout(options.timeoutMs, () => req.destroy(new Error(`client timeout after ${options.timeoutMs} ms`)));
        }
        req.end(payload);
    });
    return { result, abort: () => req.destroy(), firstEvent };
}

/** Token events of a stream (chunks carrying generated text), excluding role-only and usage chunks. */
export function tokenEvents(r: StreamResult): SseEvent[] {
    return r.events.filter((e) => {
        if (e.data === "[DONE]") {
            return false;
        }
        const chunk = JSON.parse(e.data);
        const choice = chunk.choices?.[0];
        return choice !== undefined && (typeof choice.text === "string" ? choice.text !== "" : typeof choice.delta?.content === "string" && choice.delta.content !== "");
    });
}

/** Gaps between successive token events, in ms. */
export function gaps(events: SseEvent[]): number[] {
    return events.slice(1).map((e, i) => e.at - events[i]!.at);
}
