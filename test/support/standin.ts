/**
 * Stand-in vLLM servers (`test/standin/server.mjs`) as child processes on 127.0.0.1, for the
 * integration tier and the benchmark.
 */
import { ChildProcess, spawn } from "child_process";
import * as path from "path";
import { track } from "./children";
import { request } from "./http";
import { waitFor } from "./wait";

/** The stand-in's program (set STANDIN_SERVER to run another copy, e.g. an older one). */
export const STANDIN_SERVER = process.env.STANDIN_SERVER ?? path.resolve(__dirname, "../standin/server.mjs");

/** Node binary that runs the stand-ins (set STANDIN_NODE to run them on another Node, e.g. 18). */
export const STANDIN_NODE = process.env.STANDIN_NODE ?? process.execPath;


export interface StandIn {
    replicaId: string;
    port: number;
    url: string;
    proc: ChildProcess;
    /** Everything the process printed so far. */
    output(): string;
    /** Resolves when the process has exited. */
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
    /** SIGTERM (by default vLLM aborts in-flight requests; with --shutdown-timeout N it drains), then SIGKILL after `graceMs`. */
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
    /** Wait until it serves /health (default true). */
    waitReady?: boolean;
    readyTimeoutMs?: number;
}

/** vLLM's log line as it starts serving: `Starting vLLM server on http://127.0.0.1:8000` (0.32.0; "Starting vLLM API server 0 on" in older releases). */
const STARTING_LINE = /Starting vLLM (?:API )?server (?:\d+ )?on http:\/\/[^\s]*:(\d+)/;

let standInCount = 0;

export async function startStandIn(options: StandInOptions = {}): Promise<StandIn> {
    standInCount += 1;
    const replicaId = options.replicaId ?? `replica-${standInCount}`;
    const args = [STANDIN_SERVER, options.model ?? "standin/model", "--host", "127.0.0.1", "--port", String(options.port ?? 0), "--replica-id", replicaId, ...(options.args ?? [])];
    const proc = spawn(STANDIN_NODE, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
    const exited = track(proc, "SIGKILL");
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
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
    // vLLM logs where it serves just before it listens ("Uvicorn running on" is never printed: vLLM hands
    // uvicorn a bound socket), and the port answers /health once it listens.
    const port = await waitFor(`stand-in ${replicaId} to log "Starting vLLM server"`, options.readyTimeoutMs ?? 15000, () => {
        if (exitedEarly) {
            throw new Error(`stand-in ${replicaId} exited before it was ready:\n${out}`);
        }
        const match = STARTING_LINE.exec(out);
        return match ? Number(match[1]) : undefined;
    });
    standIn.port = port;
    standIn.url = `http://127.0.0.1:${port}`;
    await waitFor(`stand-in ${replicaId} to answer /health`, options.readyTimeoutMs ?? 15000, async () => {
        if (exitedEarly) {
            throw new Error(`stand-in ${replicaId} exited before it was ready:\n${out}`);
        }
        return (await request(`${standIn.url}/health`, { agent: false }).catch(() => undefined))?.status === 200;
    });
    return standIn;
}

/** Stops every stand-in still running (for afterAll). */
export async function stopAll(standIns: Array<StandIn | undefined>): Promise<void> {
    await Promise.all(standIns.map((s) => s?.kill()));
}


/** Request ids a stand-in received (header `x-request-id`), from its stand-in-only request log. */
export async function receivedIds(standIn: { url: string }): Promise<string[]> {
    const r = await request(`${standIn.url}/standin/requests`, { agent: false });
    return (r.json.requests as Array<{ id: string }>).map((x) => x.id);
}
