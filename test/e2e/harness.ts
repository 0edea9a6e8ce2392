/**
 * Runs the real Pulumi CLI against the real Docker engine for the `e2e` stack, with state in a
 * temporary folder and the stack's config in a temporary copy of `Pulumi.e2e.yaml`, so a run touches
 * nothing of the repo or of other stacks.
 */
import { execFile, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as yaml from "js-yaml";
import * as os from "os";
import * as path from "path";
import { request } from "../support";

export const REPO = path.resolve(__dirname, "..", "..");
export const STACK = "e2e";
export const BASE_IMAGE = "vllm-nginx/debian:bookworm";

/**
 * The environment for the CLI: the Pulumi CLI on PATH, or the toolchain `.ci/pulumi-toolchain` built;
 * secrets under `passphrase` (the stack files' empty one unless given).
 */
export function pulumiEnv(stateDir: string, passphrase = ""): NodeJS.ProcessEnv {
    let env: NodeJS.ProcessEnv = { ...process.env };
    if (!onPath("pulumi", env)) {
        const fromCi = execFileSync("bash", ["-c", `source "${REPO}/.ci/env.sh" >/dev/null && env -0`], { env, encoding: "utf8" });
        env = Object.fromEntries(fromCi.split("\0").filter(Boolean).map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]));
    }
    if (!onPath("pulumi", env)) {
        throw new Error("the e2e tier needs the Pulumi CLI: install it (https://www.pulumi.com/docs/install/) or build it with .ci/pulumi-toolchain");
    }
    return {
        ...env,
        PULUMI_BACKEND_URL: `file://${stateDir}`,
        PULUMI_CONFIG_PASSPHRASE: passphrase,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    };
}

function onPath(binary: string, env: NodeJS.ProcessEnv): boolean {
    return (env.PATH ?? "").split(":").some((dir) => dir && fs.existsSync(path.join(dir, binary)));
}

/** A stack whose secrets are under a passphrase of its own, each set again by its path in the config (`clientKeys[0].key`). */
export interface OwnPassphrase {
    passphrase: string;
    secrets: Record<string, string>;
}

/**
 * The stack file's first model group as the top-level keys of a stack of one model (`model`,
 * `servedModelName`, `replicas`, `vllmArgs`), as a stack file written before model groups has them; the
 * other groups, and the first one's balancing and adapters, are left out. For the e2e checks of one model.
 */
export function asOneModel(config: Record<string, unknown>): void {
    const [first] = config.models as Array<Record<string, unknown>>;
    config.model = first!.model;
    config.servedModelName = first!.servedModelName;
    config.replicas = String(first!.replicas);
    config.vllmArgs = first!.vllmArgs;
    delete config.models;
}

export class E2eStack {
    readonly stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-e2e-state-"));
    readonly configFile: string;
    readonly env: NodeJS.ProcessEnv;

    /**
     * A stack named `stack` in a state folder of its own, its config a copy of `Pulumi.<from>.yaml`. With
     * `own`, the copy leaves out the file's salt and encrypted values, and `init` sets `own.secrets` under
     * `own.passphrase` (a new salt), as a user does for a stack whose secrets guard anything beyond the loopback.
     */
    constructor(
        readonly stack = STACK,
        from = STACK,
        private readonly own?: OwnPassphrase,
    ) {
        this.env = pulumiEnv(this.stateDir, own?.passphrase);
        this.configFile = path.join(this.stateDir, `Pulumi.${stack}.yaml`);
        if (own) {
            const file = yaml.load(fs.readFileSync(path.join(REPO, `Pulumi.${from}.yaml`), "utf8")) as { config: Record<string, unknown>; encryptionsalt?: string };
            delete file.encryptionsalt;
            const left = dropEncrypted(file.config, "").filter((at) => !(at.replace(/^vllm-nginx:/, "") in own.secrets));
            if (left.length > 0) {
                throw new Error(`Pulumi.${from}.yaml has secrets the stack would lose under its own passphrase: ${left.join(", ")}`);
            }
            fs.writeFileSync(this.configFile, yaml.dump(file, { lineWidth: -1 }));
        } else {
            fs.copyFileSync(path.join(REPO, `Pulumi.${from}.yaml`), this.configFile);
        }
        // `stack init` writes the stack's salt into Pulumi.<stack>.yaml where it runs: here, into the copy.
        fs.copyFileSync(path.join(REPO, "Pulumi.yaml"), path.join(this.stateDir, "Pulumi.yaml"));
    }

    async init(): Promise<void> {
        await this.run(["stack", "init", this.stack, "--non-interactive"], 20 * 60_000, this.stateDir);
        for (const [at, value] of Object.entries(this.own?.secrets ?? {})) {
            await this.pulumi(["config", "set", "--path", "--secret", `vllm-nginx:${at}`, value]);
        }
    }

    /** `pulumi <args>` for the stack and its config file; resolves with stdout, rejects with the output. */
    pulumi(args: string[], timeoutMs = 20 * 60_000): Promise<string> {
        return this.run([...args, "--stack", this.stack, "--non-interactive", "--config-file", this.configFile], timeoutMs);
    }

    private run(full: string[], timeoutMs = 20 * 60_000, cwd = REPO): Promise<string> {
        return new Promise((resolve, reject) => {
            const child = spawn("pulumi", full, { cwd, env: this.env });
            let output = "";
            child.stdout.on("data", (d) => (output += d));
            child.stderr.on("data", (d) => (output += d));
            const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
            child.on("close", (code) => {
                clearTimeout(timer);
                if (code === 0) {
                    resolve(output);
                } else {
                    reject(new Error(`pulumi ${full.join(" ")} exited ${code}:\n${output}`));
                }
            });
        });
    }

    /**
     * `pulumi up`, interrupted as a user does with one Ctrl-C (SIGINT: Pulumi lets the operations under way
     * finish and starts no other) once `ready` resolves true, polled every 100 ms. Resolves with the exit
     * code and the output; the caller checks both.
     */
    upInterrupted(ready: () => Promise<boolean>): Promise<{ code: number | null; output: string; interrupted: boolean }> {
        return new Promise((resolve) => {
            const child = spawn("pulumi", ["up", "--yes", "--skip-preview", "--stack", this.stack, "--non-interactive", "--config-file", this.configFile], { cwd: REPO, env: this.env });
            let output = "";
            let interrupted = false;
            child.stdout.on("data", (d) => (output += d));
            child.stderr.on("data", (d) => (output += d));
            const poll = setInterval(() => {
                void ready().then((now) => {
                    if (now && !interrupted) {
                        interrupted = true;
                        child.kill("SIGINT");
                    }
                });
            }, 100);
            child.on("close", (code) => {
                clearInterval(poll);
                resolve({ code, output, interrupted });
            });
        });
    }

    /** `pulumi stack export`: the state as the CLI hands it out (secrets still encrypted). */
    exportState(): Promise<string> {
        return this.run(["stack", "export", "--stack", this.stack, "--non-interactive"]);
    }

    setConfig(key: string, value: string, secret = false): Promise<string> {
        return this.pulumi(["config", "set", `vllm-nginx:${key}`, value, ...(secret ? ["--secret"] : [])]);
    }

    /** Changes plain config values in the stack's config file (lists and objects as they are written in YAML). */
    editConfig(change: (config: Record<string, unknown>) => void): void {
        const file = yaml.load(fs.readFileSync(this.configFile, "utf8")) as { config: Record<string, unknown> };
        const plain: Record<string, unknown> = {};
        for (const [key, value] of Object.entries(file.config)) {
            plain[key.replace(/^vllm-nginx:/, "")] = value;
        }
        change(plain);
        file.config = Object.fromEntries(Object.entries(plain).map(([key, value]) => [key.includes(":") ? key : `vllm-nginx:${key}`, value]));
        fs.writeFileSync(this.configFile, yaml.dump(file, { lineWidth: -1 }));
    }

    /** `pulumi up`, timed. */
    async up(extra: string[] = []): Promise<{ seconds: number; output: string }> {
        const started = Date.now();
        const output = await this.pulumi(["up", "--yes", "--skip-preview", ...extra]);
        return { seconds: (Date.now() - started) / 1000, output };
    }

    /** `pulumi stack output --json` (with `--show-secrets` when asked), parsed. */
    async outputs(showSecrets = false): Promise<Record<string, any>> {
        return JSON.parse(await this.run(["stack", "output", "--json", ...(showSecrets ? ["--show-secrets"] : []), "--stack", this.stack, "--non-interactive"]));
    }

    /** Everything the stack's state holds, as text (to look for secrets in it). */
    stateText(): string {
        const texts: string[] = [];
        const walk = (dir: string) => {
            for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
                const full = path.join(dir, entry.name);
                if (entry.isDirectory()) {
                    walk(full);
                } else if (entry.name.endsWith(".json") || entry.name.endsWith(".bak")) {
                    texts.push(fs.readFileSync(full, "utf8"));
                }
            }
        };
        walk(path.join(this.stateDir, ".pulumi"));
        return texts.join("\n");
    }
}

/** `docker <args>`, resolving with trimmed stdout; against the engine at `host` when given (`ssh://...`). */
export function docker(args: string[], host?: string): Promise<string> {
    return new Promise((resolve, reject) => {
        execFile("docker", args, { maxBuffer: 16 * 1024 * 1024, env: host ? { ...process.env, DOCKER_HOST: host } : process.env }, (error, stdout, stderr) => {
            if (error) {
                reject(new Error(`docker ${args.join(" ")}: ${stderr || error.message}`));
            } else {
                resolve(stdout.trim());
            }
        });
    });
}

/** Names of a stack's containers, networks and volumes still on a Docker engine: labelled, or named for it. */
export async function leftovers(stack = STACK, host?: string): Promise<string[]> {
    const lists = await Promise.all(
        [`label=vllm-nginx.stack=${stack}`, `name=^${stack}-`].flatMap((filter) => [
            docker(["ps", "-a", "--filter", filter, "--format", "container {{.Names}}"], host),
            docker(["network", "ls", "--filter", filter, "--format", "network {{.Name}}"], host),
            docker(["volume", "ls", "--filter", filter, "--format", "volume {{.Name}}"], host),
        ]),
    );
    return [...new Set(lists.flatMap((l) => l.split("\n")).filter(Boolean))];
}

/** Removes whatever a failed run left behind, so the next run starts clean. */
export async function removeLeftovers(stack = STACK, host?: string): Promise<void> {
    for (const item of await leftovers(stack, host)) {
        const [kind, name] = item.split(" ");
        await docker(kind === "container" ? ["rm", "-f", name] : [kind, "rm", name], host).catch(() => undefined);
    }
}

/** Follows a container's logs until it is removed; `done` resolves with everything it printed. */
export function followLogs(container: string): { done: Promise<string> } {
    const child = spawn("docker", ["logs", "-f", container]);
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.stderr.on("data", (d) => (text += d));
    return { done: new Promise((resolve) => child.on("close", () => resolve(text))) };
}

/** The certificate a balancer with a self-signed pair serves, as clients take it to trust it (see README). */
export function balancerCertificate(container: string, host?: string): Promise<string> {
    return docker(["exec", container, "cat", "/etc/nginx/vllm-nginx/edge/tls.crt"], host);
}

/** `{in, out}` replica names from the balancer's health line, `ok <id> in=a,b out=c`; undefined when it does not answer. */
export async function rotation(port: number, host = "127.0.0.1", timeoutMs = 1000): Promise<{ id: string; in: string[]; out: string[] } | undefined> {
    try {
        const text = (await request(`http://${host}:${port}/nginx-health`, { agent: false, timeoutMs })).text.trim();
        const match = /^ok (\S+) in=(\S*) out=(\S*)$/.exec(text);
        if (!match) {
            return undefined;
        }
        const list = (s: string) => (s === "" ? [] : s.split(","));
        return { id: match[1]!, in: list(match[2]!), out: list(match[3]!) };
    } catch {
        return undefined;
    }
}

/** Samples the balancer's rotation every `intervalMs` until stopped: the fewest replicas in rotation, and each change. */
export class RotationSampler {
    private timer?: NodeJS.Timeout;
    private readonly started = Date.now();
    fewest = Number.POSITIVE_INFINITY;
    samples = 0;
    unanswered = 0;
    readonly changes: string[] = [];
    private last = "";

    constructor(
        private readonly port: number,
        private readonly intervalMs = 200,
        private readonly host = "127.0.0.1",
    ) {}

    start(): this {
        this.timer = setInterval(() => void this.sample(), this.intervalMs);
        return this;
    }

    private async sample(): Promise<void> {
        const now = await rotation(this.port, this.host);
        this.samples += 1;
        if (now === undefined) {
            this.unanswered += 1;
            return;
        }
        this.fewest = Math.min(this.fewest, now.in.length);
        const line = `in=${now.in.join(",")} out=${now.out.join(",")}`;
        if (line !== this.last) {
            this.changes.push(`${((Date.now() - this.started) / 1000).toFixed(1)}s ${line}`);
            this.last = line;
        }
    }

    stop(): this {
        clearInterval(this.timer);
        return this;
    }
}

/** Deletes every encrypted value (`{secure: ...}`) under `value`, in place; returns their paths (`vllm-nginx:clientKeys[0].key`). */
function dropEncrypted(value: unknown, at: string): string[] {
    if (typeof value !== "object" || value === null) {
        return [];
    }
    const dropped: string[] = [];
    for (const [key, child] of Object.entries(value)) {
        const here = Array.isArray(value) ? `${at}[${key}]` : at ? `${at}.${key}` : key;
        if (typeof child === "object" && child !== null && "secure" in child) {
            delete (value as Record<string, unknown>)[key];
            dropped.push(here);
        } else {
            dropped.push(...dropEncrypted(child, here));
        }
    }
    return dropped;
}
