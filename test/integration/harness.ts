/**
 * Shared helpers of the integration tier (and the benchmark): stand-in vLLM servers as child
 * processes, the real nginx binary run on a rendered config in a throw-away prefix directory, and a
 * small HTTP/SSE client that timestamps every chunk. Everything listens on and talks to 127.0.0.1.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import { BalancerConfig, renderNginxConfig } from "../../components/nginxConfig";
import { DEFAULTS } from "../../components/config";
import { parseDurationSeconds, parseSizeBytes } from "../../components/units";

export const STANDIN_SERVER = path.resolve(__dirname, "../standin/server.mjs");

/** Node binary that runs the stand-ins (set STANDIN_NODE to run them on another Node, e.g. 18). */
export const STANDIN_NODE = process.env.STANDIN_NODE ?? process.execPath;

/** Every child still running, with the signal that stops it for sure (nginx's master stops its workers on SIGTERM). */
const children = new Map<ChildProcess, NodeJS.Signals>();

process.on("exit", () => {
    // Last resort if a test file dies without its afterAll: never leave servers behind.
    for (const [child, signal] of children) {
        child.kill(signal);
    }
});

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
export function portOpen(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const socket = net.connect({ host: "127.0.0.1", port });
        socket.once("connect", () => {
            socket.destroy();
            resolve(true);
        });
        socket.once("error", () => resolve(false));
    });
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
        if (await check()) {
            return;
        }
        if (performance.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await sleep(25);
    }
}

// ---------------------------------------------------------------------------------------------------
// Stand-in servers

export interface StandIn {
    replicaId: string;
    port: number;
    url: string;
    proc: ChildProcess;
    /** Everything the process printed so far. */
    output(): string;
    /** Resolves when the process has exited. */
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
    /** SIGTERM (vLLM's drain), then SIGKILL after `graceMs`. */
    stop(graceMs?: number): Promise<void>;
    /** SIGKILL: the replica dies at once, mid-stream. */
    kill(): Promise<void>;
}

export interface StandInOptions {
    replicaId?: string;
    /** Default: a free port chosen by the stand-in itself (`--port 0`). */
    port?: number;
    /** Extra command-line arguments (vLLM flags and stand-in knobs). */
    args?: string[];
    model?: string;
    env?: NodeJS.ProcessEnv;
    /** Wait for the "Uvicorn running" line (default true). */
    waitReady?: boolean;
    readyTimeoutMs?: number;
}

let standInCount = 0;

export async function startStandIn(options: StandInOptions = {}): Promise<StandIn> {
    standInCount += 1;
    const replicaId = options.replicaId ?? `replica-${standInCount}`;
    const args = [STANDIN_SERVER, options.model ?? "standin/model", "--host", "127.0.0.1", "--port", String(options.port ?? 0), "--replica-id", replicaId, ...(options.args ?? [])];
    const proc = spawn(STANDIN_NODE, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
    children.set(proc, "SIGKILL");
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        proc.once("exit", (code, signal) => {
            children.delete(proc);
            resolve({ code, signal });
        }),
    );
    const standIn: StandIn = {
        replicaId,
        port: options.port ?? 0,
        url: "",
        proc,
        output: () => out,
        exited,
        async stop(graceMs = 5000) {
            if (proc.exitCode !== null || proc.signalCode !== null) {
                return;
            }
            proc.kill("SIGTERM");
            const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
            await exited;
            clearTimeout(timer);
        },
        async kill() {
            if (proc.exitCode === null && proc.signalCode === null) {
                proc.kill("SIGKILL");
            }
            await exited;
        },
    };
    if (options.waitReady === false) {
        return standIn;
    }
    let exitedEarly = false;
    void exited.then(() => (exitedEarly = true));
    await waitFor(`stand-in ${replicaId} to print its Uvicorn line`, options.readyTimeoutMs ?? 15000, () => {
        if (exitedEarly) {
            throw new Error(`stand-in ${replicaId} exited before it was ready:\n${out}`);
        }
        return /Uvicorn running on http:\/\/[^:]+:(\d+)/.test(out);
    });
    standIn.port = Number(/Uvicorn running on http:\/\/[^:]+:(\d+)/.exec(out)![1]);
    standIn.url = `http://127.0.0.1:${standIn.port}`;
    return standIn;
}

/** Stops every stand-in still running (for afterAll). */
export async function stopAll(standIns: Array<StandIn | undefined>): Promise<void> {
    await Promise.all(standIns.map((s) => s?.kill()));
}

// ---------------------------------------------------------------------------------------------------
// nginx

const NGINX_CANDIDATES = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx", "/usr/bin/nginx"];

/** The nginx binary, or an error that says how to install it. The tier never skips silently. */
export function requireNginx(): string {
    const fromEnv = process.env.NGINX_BIN;
    if (fromEnv) {
        if (!fs.existsSync(fromEnv)) {
            throw new Error(`NGINX_BIN=${fromEnv} does not exist. Install nginx with \`sudo apt-get install -y nginx\` or fix NGINX_BIN.`);
        }
        return fromEnv;
    }
    for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
        const candidate = path.join(dir, "nginx");
        if (dir && fs.existsSync(candidate)) {
            return candidate;
        }
    }
    const found = NGINX_CANDIDATES.find((c) => fs.existsSync(c));
    if (found) {
        return found;
    }
    throw new Error(
        "the nginx binary was not found: the integration tier runs the real nginx on the rendered config. " +
            "Install it with `sudo apt-get update && sudo apt-get install -y nginx` (Debian/Ubuntu), or set NGINX_BIN.",
    );
}

export function nginxVersion(): string {
    const bin = requireNginx();
    // `nginx -v` prints to stderr.
    const result = spawnSync(bin, ["-v"], { encoding: "utf8" });
    return String(result.stderr || result.stdout).trim();
}

export interface Nginx {
    port: number;
    url: string;
    dir: string;
    proc: ChildProcess;
    errorLog(): string;
    accessLog(): string;
    /** Replaces the conf.d file and reloads (SIGHUP), as the program does with `nginx -s reload`. */
    reload(confD: string): void;
    stop(): Promise<void>;
}

export interface NginxOptions {
    /** `worker_processes` (default 1). The program's images run `auto`, one per core. */
    workers?: number | "auto";
    /** Add `add_header x-nginx-worker $pid always;` at http level, to see which worker served. */
    workerHeader?: boolean;
    /** Path whose 200 means ready; default: the port accepts connections. */
    readyPath?: string;
}

/**
 * Runs nginx on a conf.d snippet, wrapped in a minimal main config like the one of the images
 * (`http { include conf.d/*.conf; }`), in a fresh prefix directory. `nginx -t` checks it first.
 */
export async function startNginx(confD: string, port: number, options: NginxOptions = {}): Promise<Nginx> {
    const bin = requireNginx();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-it-"));
    // Workers run as `nobody` when the master is root: they must reach the temp paths.
    fs.chmodSync(dir, 0o755);
    fs.mkdirSync(path.join(dir, "conf.d"));
    fs.mkdirSync(path.join(dir, "tmp"));
    fs.mkdirSync(path.join(dir, "logs"));
    fs.writeFileSync(path.join(dir, "conf.d", "vllm-nginx.conf"), confD);
    const main = [
        `worker_processes ${options.workers ?? 1};`,
        "daemon off;",
        `pid ${dir}/nginx.pid;`,
        `error_log ${dir}/error.log info;`,
        "events { worker_connections 4096; }",
        "http {",
        `    client_body_temp_path ${dir}/tmp/client_body;`,
        `    proxy_temp_path ${dir}/tmp/proxy;`,
        `    fastcgi_temp_path ${dir}/tmp/fastcgi;`,
        `    uwsgi_temp_path ${dir}/tmp/uwsgi;`,
        `    scgi_temp_path ${dir}/tmp/scgi;`,
        `    access_log ${dir}/access.log;`,
        ...(options.workerHeader ? ["    add_header x-nginx-worker $pid always;"] : []),
        `    include ${dir}/conf.d/*.conf;`,
        "}",
        "",
    ].join("\n");
    fs.writeFileSync(path.join(dir, "nginx.conf"), main);
    // -e: the log nginx writes before it has read the config (else /var/log/nginx/error.log).
    const baseArgs = ["-p", `${dir}/`, "-c", `${dir}/nginx.conf`, "-e", `${dir}/startup-error.log`];
    try {
        execFileSync(bin, ["-t", ...baseArgs], { stdio: "pipe" });
    } catch (err) {
        const e = err as { stderr?: Buffer };
        throw new Error(`nginx -t rejected the config:\n${e.stderr?.toString() ?? String(err)}\n--- conf.d ---\n${confD}`);
    }
    const proc = spawn(bin, baseArgs, { stdio: ["ignore", "pipe", "pipe"] });
    children.set(proc, "SIGTERM");
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    const exited = new Promise<void>((resolve) =>
        proc.once("exit", () => {
            children.delete(proc);
            resolve();
        }),
    );
    let exitedEarly = false;
    void exited.then(() => (exitedEarly = true));
    const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "");
    const nginx: Nginx = {
        port,
        url: `http://127.0.0.1:${port}`,
        dir,
        proc,
        errorLog: () => read(path.join(dir, "startup-error.log")) + read(path.join(dir, "error.log")) + out,
        accessLog: () => read(path.join(dir, "access.log")),
        reload(next: string) {
            fs.writeFileSync(path.join(dir, "conf.d", "vllm-nginx.conf"), next);
            execFileSync(bin, ["-t", ...baseArgs], { stdio: "pipe" });
            proc.kill("SIGHUP");
        },
        async stop() {
            if (proc.exitCode === null && proc.signalCode === null) {
                proc.kill("SIGTERM"); // fast shutdown: the master stops its workers
                const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
                await exited;
                clearTimeout(timer);
            }
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
    await waitFor("nginx to listen", 10000, async () => {
        if (exitedEarly) {
            throw new Error(`nginx exited at start:\n${nginx.errorLog()}`);
        }
        if (options.readyPath) {
            try {
                return (await request(`${nginx.url}${options.readyPath}`, { agent: false })).status === 200;
            } catch {
                return false;
            }
        }
        return portOpen(port);
    });
    return nginx;
}

// ---------------------------------------------------------------------------------------------------
// Configs under test

/** The program's defaults, as `parseFleetConfig` applies them. */
export function defaultBalancerConfig(upstreamPorts: number[], listenPort: number): BalancerConfig {
    return {
        upstreams: upstreamPorts.map((port, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${port}` })),
        balancer: DEFAULTS.balancer,
        maxFails: DEFAULTS.maxFails,
        failTimeoutSeconds: parseDurationSeconds(DEFAULTS.failTimeout)!,
        readTimeoutSeconds: parseDurationSeconds(DEFAULTS.readTimeout)!,
        connectTimeoutSeconds: parseDurationSeconds(DEFAULTS.connectTimeout)!,
        maxBodyBytes: parseSizeBytes(DEFAULTS.maxBodySize)!,
        listen: `127.0.0.1:${listenPort}`,
        accessLog: "off",
    };
}

/** Our renderer, on 127.0.0.1 ports, with the program's defaults unless overridden. */
export function renderOurs(upstreamPorts: number[], listenPort: number, overrides: Partial<BalancerConfig> = {}): string {
    return renderNginxConfig({ ...defaultBalancerConfig(upstreamPorts, listenPort), ...overrides });
}

/**
 * The config of vLLM's "Using Nginx" guide, exactly as written there (docs/deployment/nginx.md), with
 * the replicas on 127.0.0.1 ports instead of `vllmN:8000` and `listen` on 127.0.0.1.
 */
export function renderGuideConfig(upstreamPorts: number[], listenPort: number): string {
    return [
        "upstream backend {",
        "    least_conn;",
        ...upstreamPorts.map((port) => `    server 127.0.0.1:${port} max_fails=3 fail_timeout=10000s;`),
        "}",
        "server {",
        `    listen 127.0.0.1:${listenPort};`,
        "    location / {",
        "        proxy_pass http://backend;",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Real-IP $remote_addr;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "    }",
        "}",
        "",
    ].join("\n");
}

// ---------------------------------------------------------------------------------------------------
// HTTP client

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
}

/** One HTTP request; the body (if any) is sent as JSON unless it is a string or Buffer. */
export function request(url: string, options: RequestOptions = {}): Promise<Response> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
        const payload = options.body === undefined ? undefined : typeof options.body === "string" || Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body);
        const req = http.request(
            url,
            {
                method: options.method ?? (payload === undefined ? "GET" : "POST"),
                agent: options.agent,
                headers: { ...(payload !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {}), ...options.headers },
            },
            (res) => {
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
            },
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

/**
 * A streamed completion: POSTs `body` and records when each SSE event arrives. Never rejects: a cut
 * connection resolves with `error` set and `complete` false.
 */
export function stream(url: string, body: unknown, options: { headers?: Record<string, string>; agent?: http.Agent | false; onEvent?: (e: SseEvent, all: SseEvent[]) => void } = {}): StreamHandle {
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
        req = http.request(
            url,
            {
                method: "POST",
                agent: options.agent,
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

export function percentile(values: number[], p: number): number {
    if (values.length === 0) {
        return NaN;
    }
    const sorted = [...values].sort((a, b) => a - b);
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[rank]!;
}

// ---------------------------------------------------------------------------------------------------
// Prometheus

/** Value of the first sample of `name` whose labels include every given label (NaN if none). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
    for (const line of text.split("\n")) {
        if (line.startsWith("#") || !line.startsWith(name)) {
            continue;
        }
        const match = /^([^{\s]+)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
        if (!match || match[1] !== name) {
            continue;
        }
        const got: Record<string, string> = {};
        for (const m of (match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
            got[m[1]!] = m[2]!;
        }
        if (Object.entries(labels).every(([k, v]) => got[k] === v)) {
            return Number(match[4]);
        }
    }
    return NaN;
}

export async function scrape(standIn: { url: string }): Promise<string> {
    return (await request(`${standIn.url}/metrics`, { agent: false })).text;
}

/** Request ids a stand-in received (header `x-request-id`), from its stand-in-only request log. */
export async function receivedIds(standIn: { url: string }): Promise<string[]> {
    const r = await request(`${standIn.url}/standin/requests`, { agent: false });
    return (r.json.requests as Array<{ id: string }>).map((x) => x.id);
}
