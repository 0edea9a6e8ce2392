/**
 * What the monitoring integration tests share: Debian's promtool, Prometheus and nginx exporter
 * binaries (or an error that says how to install them: the tier never skips), Prometheus's HTTP API,
 * and a synthetic replica that serves every vLLM v0.11 metric the rules and the dashboard read.
 */
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { track } from "../support/children";
import { request } from "../support/http";
import { PrometheusApi } from "../support/prometheus";
export { PrometheusApi, type Sample } from "../support/prometheus";
import { waitFor } from "../support/wait";
import { NGINX, VLLM } from "../../components/monitoring/metrics";

const APT_HINT = "Install Debian's packages: `sudo apt-get update && sudo apt-get install -y prometheus prometheus-nginx-exporter`";

/** A binary on PATH or in /usr/bin, or an error that names the package it comes from. */
export function requireBinary(name: "promtool" | "prometheus" | "prometheus-nginx-exporter"): string {
    for (const dir of [...(process.env.PATH ?? "").split(path.delimiter), "/usr/bin", "/usr/local/bin"]) {
        const candidate = path.join(dir, name);
        if (dir && fs.existsSync(candidate)) {
            return candidate;
        }
    }
    throw new Error(`${name} was not found: the monitoring integration tests run the real one. ${APT_HINT} (the first two come with prometheus).`);
}


/** Prometheus run from Debian's binary on the loopback, with its files in a temporary folder. */
export interface LocalPrometheus {
    api: PrometheusApi;
    port: number;
    dir: string;
    proc: ChildProcess;
    /** Writes `prometheus.yml` and the rule file. */
    writeConfig(config: string, rules: string): void;
    /** `POST /-/reload`, as the program's install script does; rejects with Prometheus's answer on failure. */
    reload(): Promise<void>;
    output(): string;
    stop(): Promise<void>;
}

export async function startLocalPrometheus(port: number, config: string, rules: string): Promise<LocalPrometheus> {
    const bin = requireBinary("prometheus");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-prometheus-"));
    fs.mkdirSync(path.join(dir, "rules"));
    const writeConfig = (c: string, r: string) => {
        fs.writeFileSync(path.join(dir, "prometheus.yml"), c);
        fs.writeFileSync(path.join(dir, "rules", "vllm-nginx.yml"), r);
    };
    writeConfig(config, rules);
    const proc = spawn(
        bin,
        [
            `--config.file=${dir}/prometheus.yml`,
            `--storage.tsdb.path=${dir}/data`,
            `--web.listen-address=127.0.0.1:${port}`,
            "--web.enable-lifecycle",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = track(proc, "SIGKILL");
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    let exitedEarly = false;
    void exited.then(() => (exitedEarly = true));
    const api = new PrometheusApi(`http://127.0.0.1:${port}`);
    await waitFor("Prometheus to be ready", 30_000, async () => {
        if (exitedEarly) {
            throw new Error(`Prometheus exited at start:\n${out}`);
        }
        return (await request(`${api.url}/-/ready`, { agent: false }).catch(() => undefined))?.status === 200;
    }, 200);
    return {
        api,
        port,
        dir,
        proc,
        writeConfig,
        async reload() {
            const r = await request(`${api.url}/-/reload`, { method: "POST", agent: false });
            if (r.status !== 200) {
                throw new Error(`reload refused: ${r.status} ${r.text}`);
            }
        },
        output: () => out,
        async stop() {
            if (proc.exitCode === null && proc.signalCode === null) {
                proc.kill("SIGTERM");
                const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
                await exited;
                clearTimeout(timer);
            }
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}

/** Debian's nginx exporter on the loopback, reading `scrapeUri`. */
export async function startLocalExporter(port: number, scrapeUri: string): Promise<{ proc: ChildProcess; stop(): Promise<void> }> {
    const bin = requireBinary("prometheus-nginx-exporter");
    const proc = spawn(bin, [`--nginx.scrape-uri=${scrapeUri}`, `--web.listen-address=127.0.0.1:${port}`], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NGINX_RETRIES: "10", NGINX_RETRY_INTERVAL: "1s" },
    });
    const exited = track(proc, "SIGKILL");
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    await waitFor("the nginx exporter to serve /metrics", 15_000, async () => {
        if (proc.exitCode !== null) {
            throw new Error(`the nginx exporter exited:\n${out}`);
        }
        return (await request(`http://127.0.0.1:${port}/metrics`, { agent: false }).catch(() => undefined))?.status === 200;
    }, 200);
    return {
        proc,
        async stop() {
            if (proc.exitCode === null && proc.signalCode === null) {
                proc.kill("SIGTERM");
                await exited;
            }
        },
    };
}

/**
 * A replica that serves every vLLM v0.11 metric the rules and the dashboard read, with the labels vLLM
 * uses, growing as if it served one request per second: what the stand-in serves only in part today.
 * The shape follows vLLM's `PrometheusStatLogger` (histogram buckets included) and the instrumentator's
 * `http_requests_total`.
 */
export async function startSyntheticReplica(host = "127.0.0.1"): Promise<{ port: number; close(): Promise<void> }> {
    const started = Date.now();
    const labels = 'model_name="synthetic",engine="0"';
    const histogram = (name: string, buckets: number[], observed: number, count: number) => {
        const lines = [`# TYPE ${name} histogram`];
        for (const le of buckets) {
            lines.push(`${name}_bucket{${labels},le="${le}"} ${le >= observed ? count : 0}`);
        }
        lines.push(`${name}_bucket{${labels},le="+Inf"} ${count}`, `${name}_sum{${labels}} ${count * observed}`, `${name}_count{${labels}} ${count}`);
        return lines;
    };
    const latency = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0];
    const server = http.createServer((req, res) => {
        if (req.url !== "/metrics") {
            res.writeHead(404).end();
            return;
        }
        const n = Math.floor((Date.now() - started) / 1000) + 1;
        const text = [
            `# TYPE ${VLLM.running} gauge`,
            `${VLLM.running}{${labels}} 3`,
            `# TYPE ${VLLM.waiting} gauge`,
            `${VLLM.waiting}{${labels}} 1`,
            `# TYPE ${VLLM.kvCacheUsage} gauge`,
            `${VLLM.kvCacheUsage}{${labels}} 0.42`,
            `# TYPE ${VLLM.promptTokens} counter`,
            `${VLLM.promptTokens}{${labels}} ${n * 120}`,
            `# TYPE ${VLLM.generationTokens} counter`,
            `${VLLM.generationTokens}{${labels}} ${n * 64}`,
            `# TYPE ${VLLM.requestSuccess} counter`,
            `${VLLM.requestSuccess}{${labels},finished_reason="stop"} ${n}`,
            `${VLLM.requestSuccess}{${labels},finished_reason="length"} 0`,
            `${VLLM.requestSuccess}{${labels},finished_reason="abort"} 0`,
            `# TYPE ${VLLM.prefixCacheQueries} counter`,
            `${VLLM.prefixCacheQueries}{${labels}} ${n * 120}`,
            `# TYPE ${VLLM.prefixCacheHits} counter`,
            `${VLLM.prefixCacheHits}{${labels}} ${n * 30}`,
            ...histogram(VLLM.ttft, [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0], 0.06, n),
            ...histogram(VLLM.interTokenLatency, [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2], 0.025, n * 63),
            ...histogram(VLLM.e2eLatency, latency, 2.0, n),
            ...histogram(VLLM.queueTime, latency, 0.3, n),
            "# TYPE http_requests_total counter",
            `${VLLM.httpRequests}{handler="/v1/completions",method="POST",status="2xx"} ${n}`,
            "",
        ].join("\n");
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(text);
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return {
        port: (server.address() as net.AddressInfo).port,
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
}

/** Names the nginx exporter metrics the rules read, so a test can look for them. */
export const EXPORTER_METRICS = [NGINX.up, NGINX.connectionsActive, NGINX.requests];

/** `docker ...`, resolving with stdout; rejects with stderr. */
export function docker(args: string[], input?: string): string {
    return execFileSync("docker", args, { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"], maxBuffer: 64 * 1024 * 1024 });
}
