/**
 * The real nginx binary, run on a rendered conf.d file in a throw-away prefix directory, and the
 * configs the tests and the benchmark compare: ours (the program's renderer) and the guide's.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { track } from "./children";
import { portOpen, request } from "./http";
import { waitFor } from "./wait";
import { BalancerConfig, renderNginxConfig } from "../../components/nginx/render";
import { DEFAULTS } from "../../components/config/keys";
import { parseDurationSeconds, parseSizeBytes } from "../../components/config/units";

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

/** Where Debian's packages put nginx's dynamic modules. */
const NGINX_MODULES_DIR = process.env.NGINX_MODULES_DIR ?? "/usr/lib/nginx/modules";

/** The Lua sources the balancer image installs, as they are in this checkout. */
export const LUA_SOURCES = path.resolve(__dirname, "../../images/nginx/lua");

/**
 * The `load_module` lines of the programmable balancer (Debian's libnginx-mod-http-lua and the NDK it
 * needs), or an error that says how to install them. The tier never skips silently.
 */
export function luaModules(): string[] {
    const modules = ["ndk_http_module.so", "ngx_http_lua_module.so"].map((m) => path.join(NGINX_MODULES_DIR, m));
    const missing = modules.filter((m) => !fs.existsSync(m));
    if (missing.length > 0) {
        throw new Error(
            `nginx's Lua module is missing (${missing.join(", ")}): the balancer runs its routing in Lua. ` +
                "Install it with `sudo apt-get install -y libnginx-mod-http-lua lua-cjson` (Debian 12's nginx 1.22), or set NGINX_MODULES_DIR.",
        );
    }
    const cjson = ["/usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so", "/usr/lib/aarch64-linux-gnu/lua/5.1/cjson.so", "/usr/local/lib/lua/5.1/cjson.so"];
    if (!cjson.some((c) => fs.existsSync(c))) {
        throw new Error("lua-cjson is missing: the balancer reads request bodies with it. Install it with `sudo apt-get install -y lua-cjson`.");
    }
    return modules.map((m) => `load_module ${m};`);
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
    /** A `stream {}` block's contents (the relay's config), with Debian's stream module loaded. */
    stream?: string;
}

/** The `load_module` line of Debian's stream module (libnginx-mod-stream), or an error that says how to install it. */
export function streamModule(): string {
    const module = path.join(NGINX_MODULES_DIR, "ngx_stream_module.so");
    if (!fs.existsSync(module)) {
        throw new Error(`nginx's stream module is missing (${module}): the relay between hosts runs on it. Install it with \`sudo apt-get install -y libnginx-mod-stream\`, or set NGINX_MODULES_DIR.`);
    }
    return `load_module ${module};`;
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
        // The modules the image's nginx loads from modules-enabled/, for configs that use them.
        ...(/_by_lua/.test(confD) ? luaModules() : []),
        ...(options.stream === undefined ? [] : [streamModule()]),
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
        ...(options.stream === undefined ? [] : ["stream {", options.stream, "}"]),
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
    const exited = track(proc, "SIGTERM");
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
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

let statusSockets = 0;

/** The program's defaults, as `parseFleetConfig` applies them, on 127.0.0.1 ports. */
export function oursConfig(upstreamPorts: number[], listenPort: number, overrides: Partial<BalancerConfig> = {}): BalancerConfig {
    return {
        upstreams: upstreamPorts.map((port, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${port}` })),
        method: DEFAULTS.balancer,
        sessionHeader: DEFAULTS.sessionHeader,
        loadBound: DEFAULTS.loadBound,
        healthCheckIntervalSeconds: parseDurationSeconds(DEFAULTS.healthCheckInterval)!,
        luaPath: LUA_SOURCES,
        maxFails: DEFAULTS.maxFails,
        failTimeoutSeconds: parseDurationSeconds(DEFAULTS.failTimeout)!,
        readTimeoutSeconds: parseDurationSeconds(DEFAULTS.readTimeout)!,
        connectTimeoutSeconds: parseDurationSeconds(DEFAULTS.connectTimeout)!,
        maxBodyBytes: parseSizeBytes(DEFAULTS.maxBodySize)!,
        listen: `127.0.0.1:${listenPort}`,
        // nginx's counters on a socket of this balancer's own, as the container's unpublished port.
        statusListen: `unix:${path.join(os.tmpdir(), `vllm-nginx-status-${process.pid}-${listenPort}-${++statusSockets}.sock`)}`,
        accessLog: "off",
        ...overrides,
    };
}

/** Our renderer's text, on 127.0.0.1 ports, with the program's defaults unless overridden. */
export function renderOurs(upstreamPorts: number[], listenPort: number, overrides: Partial<BalancerConfig> = {}): string {
    return renderNginxConfig(oursConfig(upstreamPorts, listenPort, overrides)).text;
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

