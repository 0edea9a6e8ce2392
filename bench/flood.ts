/**
 * Benchmark scenario `edge.flood`: one client key floods the balancer while another streams, through the
 * program's front door with the real nginx. The figure is the protected key's time to first token
 * (p50) with the flood against without it, in the same run: with the flooding key limited (its
 * `rps`, `burst` and `concurrent`), and, for contrast, with the same flood from a key without limits.
 *
 * Rounds interleave the three phases (alone, flood from the limited key, flood from the unlimited key)
 * so that whatever else the machine does weighs on each about equally. The flood comes from another
 * process (bench/flood-client.mjs) at a capped attempt rate.
 */
import { spawn } from "child_process";
import * as http from "http";
import * as path from "path";
import { type EdgeBalancer, type EdgeClient, percentile, startEdgeBalancer, stream, tokenEvents } from "../test/support";

export interface FloodSettings {
    /** Clients of the protected key, each streaming one completion after another. */
    clients: number;
    /** Streams per client per phase and round. */
    streamsPerClient: number;
    rounds: number;
    maxTokens: number;
    /** The flood: concurrent loops, attempts per second in all (they ignore 429), tokens per request. */
    flood: { concurrency: number; attemptsPerSecond: number; maxTokens: number };
    /** The flooding key's limits in the limited configuration. */
    limits: Required<Pick<EdgeClient, "rps" | "burst" | "concurrent">>;
}

export const FLOOD_FULL: FloodSettings = {
    clients: 2,
    streamsPerClient: 10,
    rounds: 3,
    maxTokens: 32,
    flood: { concurrency: 32, attemptsPerSecond: 400, maxTokens: 64 },
    limits: { rps: 2, burst: 2, concurrent: 1 },
};
export const FLOOD_SHORT: FloodSettings = { ...FLOOD_FULL, streamsPerClient: 4, rounds: 2 };

const TEAM = { name: "team", key: "team-key-0123456789abcdef" };
const FLOOD = { name: "flood", key: "flood-key-0123456789abcdef" };

type Phase = "alone" | "limited" | "unlimited";

export interface FloodResult {
    /** The protected key's TTFT p50 alone, in ms. */
    ttft_ms_p50_alone: number;
    /** ... while the limited key floods. */
    ttft_ms_p50_flooded: number;
    /** flooded / alone: the bar is 1.25. */
    ratio: number;
    /** ... while a key without limits floods the same way. */
    ttft_ms_p50_flooded_unlimited: number;
    ratio_unlimited: number;
    ttft_ms_p99_alone: number;
    ttft_ms_p99_flooded: number;
    ttft_ms_p99_flooded_unlimited: number;
    /** Protected streams that failed (should be 0 in every phase). */
    failures: Record<Phase, number>;
    /** What the flood got, per phase: attempts a second and the answers. */
    flood: Record<Exclude<Phase, "alone">, { attempts_per_second: number; statuses: Record<string, number>; complete_streams: number }>;
}

interface FloodReport {
    attempts: number;
    seconds: number;
    attemptsPerSecond: number;
    statuses: Record<string, number>;
    completeStreams: number;
}

/** Starts the flood against `url`; the returned function stops it and resolves with what it got. */
async function startFlood(url: string, settings: FloodSettings): Promise<() => Promise<FloodReport>> {
    const child = spawn(process.execPath, [path.join(__dirname, "flood-client.mjs"), url, FLOOD.key, String(settings.flood.concurrency), String(settings.flood.attemptsPerSecond), String(settings.flood.maxTokens)], {
        stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
        const check = setInterval(() => {
            if (out.includes("flooding")) {
                clearInterval(check);
                resolve();
            }
        }, 10);
        child.once("exit", () => reject(new Error(`the flood client exited early: ${out}`)));
    });
    // Let the flood reach its pace (and the limited key its limits) before anything is measured.
    await new Promise((r) => setTimeout(r, 1000));
    return async () => {
        child.kill("SIGTERM");
        await exited;
        return JSON.parse(out.trim().split("\n").pop()!) as FloodReport;
    };
}

/** The protected key's streams: `clients` loops of `streamsPerClient` streams; their TTFTs, and failures. */
async function protectedStreams(url: string, settings: FloodSettings): Promise<{ ttft: number[]; failures: number }> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: settings.clients });
    const ttft: number[] = [];
    let failures = 0;
    await Promise.all(
        Array.from({ length: settings.clients }, async (_, c) => {
            for (let i = 0; i < settings.streamsPerClient; i += 1) {
                const r = await stream(`${url}/v1/completions`, { model: "m", prompt: `team ${c} ${i}`, max_tokens: settings.maxTokens, stream: true }, { agent, headers: { authorization: `Bearer ${TEAM.key}` }, timeoutMs: 60_000 }).result;
                const tokens = r.status === 200 ? tokenEvents(r) : [];
                if (!r.done || tokens.length !== settings.maxTokens) {
                    failures += 1;
                    continue;
                }
                ttft.push(tokens[0]!.at - r.sentAt);
            }
        }),
    );
    agent.destroy();
    return { ttft, failures };
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/**
 * Runs the scenario against the replicas on `upstreamPorts` (stand-ins), with nginx's `workers`.
 * `log` prints progress.
 */
export async function runFlood(upstreamPorts: number[], settings: FloodSettings, workers: number | "auto", log: (line: string) => void): Promise<FloodResult> {
    const balancers: EdgeBalancer[] = [];
    try {
        const limited = await startEdgeBalancer({ upstreamPorts, clients: [TEAM, { ...FLOOD, ...settings.limits }], workers, overrides: { accessLog: "off" } });
        balancers.push(limited);
        const unlimited = await startEdgeBalancer({ upstreamPorts, clients: [TEAM, FLOOD], workers, overrides: { accessLog: "off" } });
        balancers.push(unlimited);
        const ttft: Record<Phase, number[]> = { alone: [], limited: [], unlimited: [] };
        const failures: Record<Phase, number> = { alone: 0, limited: 0, unlimited: 0 };
        const reports: Record<Exclude<Phase, "alone">, FloodReport[]> = { limited: [], unlimited: [] };
        for (let round = 0; round < settings.rounds; round += 1) {
            for (const phase of ["alone", "limited", "unlimited"] as const) {
                const target = phase === "unlimited" ? unlimited : limited;
                const stop = phase === "alone" ? undefined : await startFlood(target.url, settings);
                const r = await protectedStreams(target.url, settings);
                ttft[phase].push(...r.ttft);
                failures[phase] += r.failures;
                if (stop) {
                    reports[phase as Exclude<Phase, "alone">].push(await stop());
                }
                log(`  (d) flood       round ${round + 1} ${phase.padEnd(9)} protected TTFT p50 ${percentile(r.ttft, 50).toFixed(1)} ms, failures ${r.failures}`);
            }
        }
        const floodSummary = (rs: FloodReport[]) => {
            const statuses: Record<string, number> = {};
            for (const r of rs) {
                for (const [status, n] of Object.entries(r.statuses)) {
                    statuses[status] = (statuses[status] ?? 0) + n;
                }
            }
            const attempts = rs.reduce((a, r) => a + r.attempts, 0);
            const seconds = rs.reduce((a, r) => a + r.seconds, 0);
            return { attempts_per_second: Math.round(attempts / seconds), statuses, complete_streams: rs.reduce((a, r) => a + r.completeStreams, 0) };
        };
        const p = (phase: Phase, q: number) => round2(percentile(ttft[phase], q));
        return {
            ttft_ms_p50_alone: p("alone", 50),
            ttft_ms_p50_flooded: p("limited", 50),
            ratio: round2(percentile(ttft.limited, 50) / percentile(ttft.alone, 50)),
            ttft_ms_p50_flooded_unlimited: p("unlimited", 50),
            ratio_unlimited: round2(percentile(ttft.unlimited, 50) / percentile(ttft.alone, 50)),
            ttft_ms_p99_alone: p("alone", 99),
            ttft_ms_p99_flooded: p("limited", 99),
            ttft_ms_p99_flooded_unlimited: p("unlimited", 99),
            failures,
            flood: { limited: floodSummary(reports.limited), unlimited: floodSummary(reports.unlimited) },
        };
    } finally {
        await Promise.all(balancers.map((b) => b.stop()));
    }
}

/** How the scenario is set up, for the meta file. */
export function floodMeta(settings: FloodSettings): Record<string, unknown> {
    return {
        ...settings,
        protected_key: "team: no limits",
        flooding_key: `flood: rps ${settings.limits.rps}, burst ${settings.limits.burst}, concurrent ${settings.limits.concurrent} (limited), none (unlimited)`,
        measure: "the protected key's time to first token (request sent to first token event), p50 over all its streams of a phase; rounds interleave alone, limited, unlimited",
    };
}
