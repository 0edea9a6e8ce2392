/**
 * The balancer's front door under the real nginx: the config rendered with client keys, limits and TLS,
 * and its secret files written by the very script the balancer's container runs (`edge.sh`), then
 * reloaded the same way.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import type { PlainHttp } from "../../components/config/settings";
import { renderEdgeSecrets } from "../../components/edge/secrets";
import type { EdgeConfig } from "../../components/edge/render";
import type { BalancerConfig } from "../../components/nginx/render";
import { renderNginxConfig } from "../../components/nginx/render";
import { freePort, request } from "./http";
import { type Nginx, oursConfig, requireNginx, startNginx } from "./nginx";
import type { TestCertificate } from "./tls";
import { waitFor } from "./wait";

export const EDGE_SH = path.resolve(__dirname, "../../components/edge/scripts/edge.sh");

/** A client key as a test sets it: the secret and its limits. */
export interface EdgeClient {
    name: string;
    key: string;
    rps?: number;
    burst?: number;
    concurrent?: number;
    /** The models the key may use. */
    models?: string[];
}

export type EdgeTlsOption = { mode: "provided"; pair: TestCertificate; http?: PlainHttp } | { mode: "self-signed"; names: string; http?: PlainHttp };

export interface EdgeBalancerOptions {
    upstreamPorts: number[];
    clients?: EdgeClient[];
    /** The replicas' own key, which nginx sends them in place of the client's. */
    replicaKey?: string;
    tls?: EdgeTlsOption;
    exposeMetrics?: boolean;
    /** Anything else of the balancer's config (read timeout, body size, access log, ...). */
    overrides?: Partial<BalancerConfig>;
    workers?: number | "auto";
}

export interface EdgeBalancer {
    nginx: Nginx;
    /** Where clients go: `https://127.0.0.1:<port>` with TLS, else `http://...`. */
    url: string;
    port: number;
    /** The plain listener (with TLS: health, and a redirect or a refusal). */
    plainUrl: string;
    plainPort: number;
    /** The edge files' folder. */
    dir: string;
    config: BalancerConfig;
    /** Runs `edge.sh install` again with new secrets (and reloads nginx); resolves with its output. TLS as started unless given (`"off"`: none). */
    install(clients: EdgeClient[], tls?: EdgeTlsOption | "off", replicaKey?: string): Promise<{ stdout: string; stderr: string }>;
    /** Renders the config again with new names, limits or TLS (as started unless given; `"off"`: none) and reloads nginx, as `pulumi up` does. */
    reconfigure(clients: EdgeClient[], tls?: EdgeTlsOption | "off"): Promise<void>;
    stop(): Promise<void>;
}

/** Runs edge.sh with its files in `dir` and `nginxCli` as nginx (a no-op before nginx runs). */
export function runEdge(dir: string, args: string[], stdin: string, nginxCli = "true"): Promise<{ stdout: string; stderr: string }> {
    const env = { ...process.env, EDGE_DIR: dir, EDGE_LOCK: path.join(dir, "..", `${path.basename(dir)}.lock`), EDGE_NGINX: nginxCli };
    return new Promise((resolve, reject) => {
        const child = execFile("sh", [EDGE_SH, ...args], { env, encoding: "utf8" }, (error, stdout, stderr) =>
            error ? reject(Object.assign(new Error(`edge.sh ${args.join(" ")} failed: ${error.message}\n${stderr}`), { stdout, stderr })) : resolve({ stdout, stderr }),
        );
        child.stdin!.end(stdin);
    });
}

/** A script that runs the real nginx on `lb`'s prefix and config, as `nginx` does in the container. */
export function nginxCli(lb: Nginx): string {
    const wrapper = path.join(lb.dir, "nginx-cli");
    if (!fs.existsSync(wrapper)) {
        fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${requireNginx()} -p ${lb.dir}/ -c ${lb.dir}/nginx.conf -e ${lb.dir}/startup-error.log "$@"\n`, { mode: 0o755 });
    }
    return wrapper;
}

function bundle(clients: EdgeClient[], tls?: EdgeTlsOption, replicaKey?: string): string {
    return renderEdgeSecrets({
        clientKeys: clients.map(({ name, key }) => ({ name, key })),
        replicaKey,
        tls: tls?.mode === "provided" ? { certificate: tls.pair.certificate, privateKey: tls.pair.privateKey } : undefined,
    });
}

const chosen = (tls: EdgeTlsOption | "off" | undefined) => (tls === "off" ? undefined : tls);

const tlsArgs = (tls?: EdgeTlsOption) => [tls?.mode ?? "off", tls?.mode === "self-signed" ? tls.names : ""];

/** nginx with the front door on 127.0.0.1 ports, its secret files installed by edge.sh first. */
export async function startEdgeBalancer(options: EdgeBalancerOptions): Promise<EdgeBalancer> {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-edge-"));
    const dir = path.join(parent, "edge");
    const plainPort = await freePort();
    const port = options.tls ? await freePort() : plainPort;
    const edge = (clients: EdgeClient[], tls?: EdgeTlsOption): EdgeConfig => ({
        clients: clients.map(({ name, rps, burst, concurrent, models }) => ({ name, rps, burst: rps === undefined ? undefined : (burst ?? Math.ceil(rps)), concurrent, models })),
        replicaKey: options.replicaKey !== undefined,
        exposeMetrics: options.exposeMetrics ?? false,
        tls: tls ? { mode: tls.mode, listen: `127.0.0.1:${port}`, http: tls.http ?? "off", publicPort: port } : undefined,
        dir,
    });
    const render = (clients: EdgeClient[], tls?: EdgeTlsOption) => ({ ...oursConfig(options.upstreamPorts, plainPort, options.overrides ?? {}), edge: edge(clients, tls) });
    const clients = options.clients ?? [];
    await runEdge(dir, ["install", ...tlsArgs(options.tls)], bundle(clients, options.tls, options.replicaKey));
    let config = render(clients, options.tls);
    const nginx = await startNginx(renderNginxConfig(config).text, plainPort, { readyPath: "/nginx-health", workers: options.workers });
    const scheme = options.tls ? "https" : "http";
    return {
        nginx,
        url: `${scheme}://127.0.0.1:${port}`,
        port,
        plainUrl: `http://127.0.0.1:${plainPort}`,
        plainPort,
        dir,
        get config() {
            return config;
        },
        install: (next, tls = options.tls, replicaKey = options.replicaKey) => runEdge(dir, ["install", ...tlsArgs(chosen(tls))], bundle(next, chosen(tls), replicaKey), nginxCli(nginx)),
        async reconfigure(next, tls = options.tls) {
            config = render(next, chosen(tls));
            const rendered = renderNginxConfig(config);
            nginx.reload(rendered.text);
            // New connections reach the new workers once nginx serves the new config's id.
            await waitFor(`nginx to serve config ${rendered.id}`, 10_000, async () => (await request(`http://127.0.0.1:${plainPort}/nginx-health`, { agent: false }).catch(() => undefined))?.text.startsWith(`ok ${rendered.id} `));
        },
        async stop() {
            await nginx.stop();
            fs.rmSync(parent, { recursive: true, force: true });
        },
    };
}

/** What came back on a raw connection: every response's status, the text, and whether the server closed it. */
export interface RawExchange {
    text: string;
    statuses: number[];
    /** The server closed the connection (rather than the exchange running out of time). */
    closedByServer: boolean;
    ms: number;
}

/**
 * Writes `parts` to a plain TCP connection to 127.0.0.1:`port` (a number: wait that many ms before the
 * next part), then reads until the server closes the connection or `idleMs` pass without data. For
 * requests no HTTP client library would send: smuggling, trickled headers, broken framing.
 */
export function rawExchange(port: number, parts: Array<string | Buffer | number>, idleMs = 1500, timeoutMs = 30_000): Promise<RawExchange> {
    return new Promise((resolve) => {
        const started = performance.now();
        const socket = net.connect({ host: "127.0.0.1", port });
        const chunks: Buffer[] = [];
        let closedByServer = false;
        let idle: NodeJS.Timeout | undefined;
        let finished = false;
        const finish = () => {
            if (finished) {
                return;
            }
            finished = true;
            clearTimeout(idle);
            clearTimeout(overall);
            socket.destroy();
            const text = Buffer.concat(chunks).toString("latin1");
            resolve({ text, statuses: [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1])), closedByServer, ms: performance.now() - started });
        };
        const overall = setTimeout(finish, timeoutMs);
        const armIdle = () => {
            clearTimeout(idle);
            idle = setTimeout(finish, idleMs);
        };
        socket.on("data", (d: Buffer) => {
            chunks.push(d);
            armIdle();
        });
        socket.on("end", () => {
            closedByServer = true;
            finish();
        });
        socket.on("error", () => {
            closedByServer = true;
            finish();
        });
        socket.on("connect", async () => {
            for (const part of parts) {
                if (finished) {
                    return;
                }
                if (typeof part === "number") {
                    await new Promise((r) => setTimeout(r, part));
                } else {
                    socket.write(part);
                }
            }
            armIdle();
        });
    });
}
