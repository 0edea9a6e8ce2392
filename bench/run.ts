/**
 * Benchmark, in two parts.
 *
 * The proxy: the same stand-in replicas reached three ways, `direct` (the client picks a replica,
 * round robin), `guide` (vLLM's nginx guide config, as written) and `ours` (renderNginxConfig), under
 * three workloads: streaming latency, short-request throughput and a mixed-length open-loop load; then
 * the front door's flood scenario (bench/flood.ts: one client key floods, another streams).
 *
 * Routing (bench/routing.ts): stand-ins with the prefix-cache model behind least_conn, cache_aware,
 * nginx's plain consistent hash and an ideal router, under five workloads.
 *
 *   npm run bench                 full run, writes bench/results/latest.{json,svg,meta.json,routing.svg}
 *   npm run bench -- --short      CI run, writes bench/results/latest-short.*
 *   options: --workers N|auto (nginx worker_processes, default auto), --out NAME, --only proxy|routing,
 *            --workloads multi_round_qa,... (routing workloads to run, for development: no table),
 *            --load-bound X (cache_aware's loadBound and the ideal router's; default the program's)
 *
 * All traffic goes to 127.0.0.1, bounded in count and time. See bench/README.md for what the numbers
 * mean and their limits.
 */
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import {
    Nginx,
    StandIn,
    freePort,
    gaps,
    nginxVersion,
    percentile,
    renderGuideConfig,
    renderOurs,
    request,
    startNginx,
    startStandIn,
    stream,
    tokenEvents,
} from "../test/support";
import { DEFAULTS } from "../components/config/keys";
import { BALANCER_HEALTH_PATH } from "../components/nginx/render";
import type { RoutingGroup } from "../components/nginx/routing";
import { FLOOD_FULL, FLOOD_SHORT, floodMeta, runFlood } from "./flood";
import { Arrival, Interval, MixSpec, ReplicaModel, imbalance, mixedSchedule, simulate } from "./model";
import { ROUTING_VARIANTS, ROUTING_WORKLOADS, runRouting, targets, type RoutingFigures, type RoutingWorkload } from "./routing";

// ---------------------------------------------------------------------------------------------------
// Settings

const argv = process.argv.slice(2);
const SHORT = argv.includes("--short");
const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
};
const WORKERS: number | "auto" = flag("--workers") === undefined || flag("--workers") === "auto" ? "auto" : Number(flag("--workers"));
const OUT = flag("--out") ?? (SHORT ? "latest-short" : "latest");
const ONLY = flag("--only");
const RESULTS_DIR = path.resolve(__dirname, "results");

const REPLICAS = 3;
const ITL_MS = 20;
const BATCH_SLOWDOWN = 0.02;
/** Seats per replica (`--max-num-seqs`): beyond it requests queue, so where they land matters. */
const MAX_NUM_SEQS = 4;
const MODEL: ReplicaModel = { replicas: REPLICAS, seats: MAX_NUM_SEQS, itlMs: ITL_MS, batchSlowdown: BATCH_SLOWDOWN };

const STREAMING = { clients: 6, requests: SHORT ? 24 : 120, maxTokens: 64 };
/** Measured in two interleaved rounds per variant, after a warm-up round. */
const THROUGHPUT = { concurrency: SHORT ? 32 : 64, roundSeconds: SHORT ? 1.5 : 5, warmupSeconds: SHORT ? 1 : 2, maxRequestsPerRound: 40000 };
/** Mixed lengths: 80% short (8-32 tokens), 20% long (128-256); Poisson arrivals at 85% of capacity. */
const MIXED: MixSpec = { seconds: SHORT ? 20 : 60, load: 0.85, seed: 20240611, shortShare: 0.8, short: [8, 32], long: [128, 256] };

const VARIANTS = ["direct", "guide", "ours"] as const;
type Variant = (typeof VARIANTS)[number];

// ---------------------------------------------------------------------------------------------------
// Helpers

const round = (x: number, digits = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);

function newAgent(maxSockets: number): http.Agent {
    return new http.Agent({ keepAlive: true, maxSockets, keepAliveMsecs: 1000 });
}

interface Target {
    variant: Variant;
    /** Base URL for the i-th request (direct: round robin over the replicas). */
    url(i: number): string;
}

// ---------------------------------------------------------------------------------------------------
// Workload (a): streamed requests, TTFT and gaps between token chunks as the client sees them

interface StreamingResult {
    ttft: number[];
    gaps: number[];
    failures: number;
}

async function streamingWorkload(target: Target): Promise<StreamingResult> {
    const agent = newAgent(STREAMING.clients);
    const out: StreamingResult = { ttft: [], gaps: [], failures: 0 };
    let next = 0;
    const client = async () => {
        for (let i = next++; i < STREAMING.requests; i = next++) {
            const r = await stream(`${target.url(i)}/v1/completions`, { model: "m", prompt: `stream ${i}`, max_tokens: STREAMING.maxTokens, stream: true }, { agent }).result;
            const tokens = r.status === 200 ? tokenEvents(r) : [];
            if (!r.done || tokens.length !== STREAMING.maxTokens) {
                out.failures += 1;
                continue;
            }
            out.ttft.push(tokens[0]!.at - r.sentAt);
            out.gaps.push(...gaps(tokens));
        }
    };
    await Promise.all(Array.from({ length: STREAMING.clients }, client));
    agent.destroy();
    return out;
}

/**
 * Model groups' cost: the streamed workload through ours with one group (no body read for the model) and
 * through ours with two groups (every body read for its model, the same replicas in the first group, a
 * second group's replica that gets nothing), in interleaved rounds. What routing by the body adds to TTFT.
 */
async function groupsWorkload(one: Target, two: Target, rounds: number): Promise<{ one: StreamingResult; two: StreamingResult }> {
    const out = { one: { ttft: [], gaps: [], failures: 0 } as StreamingResult, two: { ttft: [], gaps: [], failures: 0 } as StreamingResult };
    for (let r = 0; r < rounds; r += 1) {
        for (const [key, target] of [["one", one], ["two", two]] as const) {
            const result = await streamingWorkload(target);
            out[key].ttft.push(...result.ttft);
            out[key].gaps.push(...result.gaps);
            out[key].failures += result.failures;
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Workload (b): short non-streamed requests at high concurrency

interface ThroughputResult {
    rps: number;
    latencies: number[];
    failures: number;
}

/** One round: `concurrency` workers send requests back to back for `seconds`. */
async function throughputRound(target: Target, seconds: number): Promise<{ completed: number; seconds: number; latencies: number[]; failures: number }> {
    const agent = newAgent(THROUGHPUT.concurrency);
    const latencies: number[] = [];
    let failures = 0;
    let issued = 0;
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    const worker = async () => {
        while (performance.now() < deadline && issued < THROUGHPUT.maxRequestsPerRound) {
            const i = issued++;
            try {
                const r = await request(`${target.url(i)}/v1/completions`, { agent, body: { model: "m", prompt: "hi", max_tokens: 1 }, headers: { "x-standin-itl-ms": "0" }, timeoutMs: 10000 });
                if (r.status === 200) {
                    latencies.push(r.ms);
                } else {
                    failures += 1;
                }
            } catch {
                failures += 1;
            }
        }
    };
    await Promise.all(Array.from({ length: THROUGHPUT.concurrency }, worker));
    const took = (performance.now() - t0) / 1000;
    agent.destroy();
    return { completed: latencies.length, seconds: took, latencies, failures };
}

/** Warm-up round for every variant, then two measured rounds, interleaved (direct, guide, ours, direct, ...). */
async function throughputWorkload(targets: Record<Variant, Target>): Promise<Record<Variant, ThroughputResult>> {
    const out = Object.fromEntries(VARIANTS.map((v) => [v, { rps: 0, latencies: [] as number[], failures: 0, completed: 0, seconds: 0 }])) as Record<Variant, ThroughputResult & { completed: number; seconds: number }>;
    for (const v of VARIANTS) {
        await throughputRound(targets[v], THROUGHPUT.warmupSeconds);
    }
    for (let round = 0; round < 2; round += 1) {
        for (const v of VARIANTS) {
            const r = await throughputRound(targets[v], THROUGHPUT.roundSeconds);
            out[v].completed += r.completed;
            out[v].seconds += r.seconds;
            out[v].latencies.push(...r.latencies);
            out[v].failures += r.failures;
        }
    }
    for (const v of VARIANTS) {
        out[v].rps = out[v].completed / out[v].seconds;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Workload (c): mixed lengths, open loop; spread across replicas and end-to-end latency

interface MixedResult {
    e2e: number[];
    imbalance: number;
    failures: number;
}

async function mixedWorkload(target: Target, schedule: Arrival[], replicaIndex: Map<string, number>): Promise<MixedResult> {
    const agent = newAgent(256);
    const intervals: Interval[] = [];
    const e2e: number[] = [];
    let failures = 0;
    const t0 = performance.now() + 50;
    await Promise.all(
        schedule.map(
            (a, i) =>
                new Promise<void>((resolve) => {
                    setTimeout(async () => {
                        const r = await stream(`${target.url(i)}/v1/completions`, { model: "m", prompt: `mixed ${i}`, max_tokens: a.tokens, stream: true }, { agent }).result;
                        const end = performance.now();
                        if (!r.done) {
                            failures += 1;
                        } else {
                            e2e.push(end - r.sentAt);
                            intervals.push({ replica: replicaIndex.get(r.replica ?? "") ?? 0, start: r.sentAt - t0, end: end - t0 });
                        }
                        resolve();
                    }, Math.max(0, t0 + a.at - performance.now()));
                }),
        ),
    );
    agent.destroy();
    return { e2e, imbalance: imbalance(intervals, REPLICAS, 0, schedule[schedule.length - 1]!.at), failures };
}

// ---------------------------------------------------------------------------------------------------
// Output

interface VariantResult {
    ttft_ms_p50: number | null;
    ttft_ms_p99: number | null;
    chunk_gap_ms_p99: number | null;
    rps: number | null;
    imbalance: number | null;
    e2e_ms_p99: number | null;
}

const COLORS: Record<string, string> = { direct: "#555555", guide: "#d62728", ours: "#1f77b4", jsq: "#2ca02c" };

/** A hand-written SVG with CDF panels (log-scale x). */
function svg(panels: Array<{ title: string; xLabel: string; series: Array<{ name: string; values: number[]; dashed?: boolean }> }>, subtitle: string): string {
    const W = 380;
    const H = 300;
    const M = { left: 50, right: 15, top: 40, bottom: 45 };
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const parts: string[] = [];
    panels.forEach((panel, p) => {
        const ox = p * W;
        const all = panel.series.flatMap((s) => s.values).filter((v) => v > 0);
        const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.01, Math.min(...all)))));
        const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
        const x = (v: number) => ox + M.left + ((Math.log10(Math.min(hi, Math.max(lo, v))) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * pw;
        const y = (f: number) => M.top + (1 - f) * ph;
        parts.push(`<text x="${ox + W / 2}" y="20" text-anchor="middle" font-weight="bold">${panel.title}</text>`);
        parts.push(`<rect x="${ox + M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
        for (let d = lo; d <= hi * 1.0001; d *= 10) {
            parts.push(`<line x1="${x(d)}" y1="${M.top}" x2="${x(d)}" y2="${M.top + ph}" stroke="#eee"/>`);
            parts.push(`<text x="${x(d)}" y="${M.top + ph + 15}" text-anchor="middle" font-size="10">${d >= 1 ? d : d.toPrecision(1)}</text>`);
        }
        for (const f of [0, 0.25, 0.5, 0.75, 0.9, 1]) {
            parts.push(`<line x1="${ox + M.left}" y1="${y(f)}" x2="${ox + M.left + pw}" y2="${y(f)}" stroke="#eee"/>`);
            parts.push(`<text x="${ox + M.left - 5}" y="${y(f) + 3}" text-anchor="end" font-size="10">${f}</text>`);
        }
        parts.push(`<text x="${ox + M.left + pw / 2}" y="${H - 10}" text-anchor="middle" font-size="11">${panel.xLabel}</text>`);
        panel.series.forEach((s, k) => {
            const sorted = [...s.values].sort((a, b) => a - b);
            if (sorted.length === 0) {
                return;
            }
            const step = Math.max(1, Math.floor(sorted.length / 400));
            const pts: string[] = [];
            for (let i = 0; i < sorted.length; i += step) {
                pts.push(`${x(sorted[i]!).toFixed(1)},${y(i / sorted.length).toFixed(1)}`, `${x(sorted[i]!).toFixed(1)},${y((i + step) / sorted.length).toFixed(1)}`);
            }
            pts.push(`${x(sorted[sorted.length - 1]!).toFixed(1)},${y(1).toFixed(1)}`);
            const color = COLORS[s.name] ?? "#000";
            parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5,3"' : ""} points="${pts.join(" ")}"/>`);
            parts.push(`<text x="${ox + M.left + pw - 5}" y="${M.top + ph - 10 - 14 * k}" text-anchor="end" font-size="11" fill="${color}">${s.name}</text>`);
        });
    });
    return svgDocument(W * panels.length, H, parts, subtitle);
}

/** An SVG of `width` x `height` plus a line of `subtitle` under it, on white. */
function svgDocument(width: number, height: number, parts: string[], subtitle: string): string {
    return [
        `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 20}" font-family="sans-serif" font-size="12">`,
        `<rect width="100%" height="100%" fill="white"/>`,
        ...parts,
        `<text x="10" y="${height + 12}" font-size="10" fill="#555">${subtitle}</text>`,
        "</svg>",
        "",
    ].join("\n");
}

function table(results: Record<Variant, VariantResult>, jsqP99: number, rrModelP99: number): string {
    const cols: Array<[keyof VariantResult, string, number]> = [
        ["ttft_ms_p50", "TTFT p50 ms", 1],
        ["ttft_ms_p99", "TTFT p99 ms", 1],
        ["chunk_gap_ms_p99", "gap p99 ms", 1],
        ["rps", "short req/s", 0],
        ["imbalance", "imbalance", 2],
        ["e2e_ms_p99", "mixed e2e p99 ms", 0],
    ];
    const cell = (v: number | null, base: number | null, digits: number, variant: Variant) => {
        if (v === null) {
            return "n/a";
        }
        const text = v.toFixed(digits);
        return variant === "direct" || base === null || base === 0 ? text : `${text} (${(v / base).toFixed(2)}x)`;
    };
    const rows = [["variant", ...cols.map((c) => c[1])]];
    for (const v of VARIANTS) {
        rows.push([v, ...cols.map(([k, , d]) => cell(results[v][k], results.direct[k], d, v))]);
    }
    rows.push(["JSQ model", "", "", "", "", "", jsqP99.toFixed(0)]);
    rows.push(["RR model", "", "", "", "", "", rrModelP99.toFixed(0)]);
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    return rows.map((r) => r.map((x, c) => x.padEnd(widths[c]!)).join("  ")).join("\n");
}

// ---------------------------------------------------------------------------------------------------
// Main

interface Part {
    results: Record<string, unknown>;
    meta: Record<string, unknown>;
    svg?: string;
}

async function proxyBenchmark(): Promise<Part> {
    const started = performance.now();
    const loadBefore = os.loadavg();
    const version = nginxVersion();
    console.log(`bench (${SHORT ? "short" : "full"}), the proxy: ${REPLICAS} stand-in replicas (itl ${ITL_MS} ms, max-num-seqs ${MAX_NUM_SEQS}), ${version}, worker_processes ${WORKERS}, ${os.cpus().length} cores`);
    const standIns: StandIn[] = [];
    const balancers: Nginx[] = [];
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-bench-"));
    try {
        const replicaArgs = ["--served-model-name", "m", "--itl-ms", String(ITL_MS), "--batch-slowdown", String(BATCH_SLOWDOWN), "--max-num-seqs", String(MAX_NUM_SEQS), "--disable-uvicorn-access-log"];
        /** REPLICAS stand-ins named `<prefix>0`, ..., each with `replicaArgs` and `extra`, stopped with the others at the end. */
        const startReplicas = async (prefix: string, extra: string[]): Promise<StandIn[]> => {
            const started: StandIn[] = [];
            for (let i = 0; i < REPLICAS; i += 1) {
                started.push(await startStandIn({ replicaId: `${prefix}${i}`, args: [...replicaArgs, ...extra] }));
                standIns.push(started.at(-1)!);
            }
            return started;
        };
        // No prefill time: these workloads measure the proxy, and bench/model.ts has none.
        const replicas = await startReplicas("r", ["--prefill-overhead-ms", "0", "--prefill-ms-per-token", "0"]);
        const ports = replicas.map((s) => s.port);
        const replicaIndex = new Map(replicas.map((s, i) => [s.replicaId, i]));
        const guidePort = await freePort();
        balancers.push(await startNginx(renderGuideConfig(ports, guidePort), guidePort, { workers: WORKERS }));
        const oursPort = await freePort();
        // Both configs log every request to a file: the guide through the main config's access_log, ours
        // through its own (the program's default is the container's stdout).
        balancers.push(await startNginx(renderOurs(ports, oursPort, { accessLog: path.join(tmp, "ours-access.log") }), oursPort, { workers: WORKERS, readyPath: BALANCER_HEALTH_PATH }));
        const targets: Record<Variant, Target> = {
            direct: { variant: "direct", url: (i) => replicas[i % REPLICAS]!.url },
            guide: { variant: "guide", url: () => balancers[0]!.url },
            ours: { variant: "ours", url: () => balancers[1]!.url },
        };
        // Warm-up: connections, JIT.
        for (const v of VARIANTS) {
            await Promise.all(Array.from({ length: 6 }, (_, i) => request(`${targets[v].url(i)}/v1/completions`, { body: { model: "m", prompt: "warm", max_tokens: 2 } })));
        }

        const streaming = {} as Record<Variant, StreamingResult>;
        for (const v of VARIANTS) {
            streaming[v] = await streamingWorkload(targets[v]);
            console.log(`  (a) streaming   ${v.padEnd(6)} ${streaming[v].ttft.length} streams, TTFT p50 ${percentile(streaming[v].ttft, 50).toFixed(1)} ms, failures ${streaming[v].failures}`);
        }
        // Model groups: a second config of ours, routing by the body's model between "m" (the same replicas) and "other".
        const other = await startStandIn({ replicaId: "g0", args: ["--served-model-name", "other", "--disable-uvicorn-access-log"] });
        standIns.push(other);
        const groupsPort = await freePort();
        const group = (name: string): RoutingGroup => ({ name, served: [{ id: name, root: `standin/${name}` }], method: DEFAULTS.balancer, sessionHeader: DEFAULTS.sessionHeader, loadBound: DEFAULTS.loadBound });
        const grouped = renderOurs(ports, groupsPort, {
            accessLog: path.join(tmp, "groups-access.log"),
            groups: [group("m"), group("other")],
            upstreams: [...ports.map((port, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${port}`, group: "m" })), { name: "other0", address: `127.0.0.1:${other.port}`, group: "other" }],
        });
        const groupsBalancer = await startNginx(grouped, groupsPort, { workers: WORKERS, readyPath: BALANCER_HEALTH_PATH });
        balancers.push(groupsBalancer);
        const groups = await groupsWorkload(targets.ours, { variant: "ours", url: () => groupsBalancer.url }, SHORT ? 3 : 5);
        const groupsFigures = {
            ttft_ms_p50_one_group: round(percentile(groups.one.ttft, 50), 2),
            ttft_ms_p50_two_groups: round(percentile(groups.two.ttft, 50), 2),
            added_ms_p50: round(percentile(groups.two.ttft, 50) - percentile(groups.one.ttft, 50), 2),
            ttft_ms_p99_one_group: round(percentile(groups.one.ttft, 99), 2),
            ttft_ms_p99_two_groups: round(percentile(groups.two.ttft, 99), 2),
            streams: groups.two.ttft.length,
            failures: groups.one.failures + groups.two.failures,
        };
        console.log(
            `  (e) groups      ${groupsFigures.streams} streams each: TTFT p50 ${groupsFigures.ttft_ms_p50_one_group} ms with one group, ${groupsFigures.ttft_ms_p50_two_groups} ms routing by model between two ` +
                `(${groupsFigures.added_ms_p50} ms added); p99 ${groupsFigures.ttft_ms_p99_one_group} / ${groupsFigures.ttft_ms_p99_two_groups} ms; failures ${groupsFigures.failures}`,
        );
        const throughput = await throughputWorkload(targets);
        for (const v of VARIANTS) {
            console.log(`  (b) throughput  ${v.padEnd(6)} ${throughput[v].rps.toFixed(0)} req/s, p99 ${percentile(throughput[v].latencies, 99).toFixed(1)} ms, failures ${throughput[v].failures}`);
        }
        const schedule = mixedSchedule(MODEL, MIXED);
        const mixed = {} as Record<Variant, MixedResult>;
        for (const v of VARIANTS) {
            mixed[v] = await mixedWorkload(targets[v], schedule, replicaIndex);
            console.log(`  (c) mixed       ${v.padEnd(6)} ${mixed[v].e2e.length} requests, imbalance ${mixed[v].imbalance.toFixed(2)}, e2e p99 ${percentile(mixed[v].e2e, 99).toFixed(0)} ms, failures ${mixed[v].failures}`);
        }
        // The flood gets replicas of its own that take a prefill's time (the stand-in's default: 30 ms plus
        // 0.25 ms per prompt token) before a first token, as vLLM's do: with none, a first token costs only
        // the proxy's millisecond, and a fraction of a millisecond of jitter would read as a large ratio.
        const floodReplicas = await startReplicas("f", []);
        const floodSettings = SHORT ? FLOOD_SHORT : FLOOD_FULL;
        const flood = await runFlood(floodReplicas.map((s) => s.port), floodSettings, WORKERS, console.log);
        const jsq = simulate(schedule, MODEL, "jsq");
        const rr = simulate(schedule, MODEL, "rr");

        const results = {} as Record<Variant, VariantResult>;
        for (const v of VARIANTS) {
            results[v] = {
                ttft_ms_p50: round(percentile(streaming[v].ttft, 50), 2),
                ttft_ms_p99: round(percentile(streaming[v].ttft, 99), 2),
                chunk_gap_ms_p99: round(percentile(streaming[v].gaps, 99), 2),
                rps: round(throughput[v].rps, 0),
                imbalance: round(mixed[v].imbalance, 3),
                e2e_ms_p99: round(percentile(mixed[v].e2e, 99), 0),
            };
        }
        console.log("");
        console.log(table(results, percentile(jsq.e2e, 99), percentile(rr.e2e, 99)));
        console.log("");
        console.log(`direct = the client connects to the replicas itself, round robin. Ratios are to direct.`);
        console.log(`JSQ model = ideal join-the-shortest-queue on the same arrivals (imbalance ${jsq.imbalance.toFixed(2)}); RR model = the same model with round robin (imbalance ${rr.imbalance.toFixed(2)}).`);
        console.log(
            `(d) flood: the protected key's TTFT p50 ${flood.ttft_ms_p50_alone} ms alone, ${flood.ttft_ms_p50_flooded} ms while a key limited to ` +
                `${floodSettings.limits.rps} rps (burst ${floodSettings.limits.burst}), ${floodSettings.limits.concurrent} at once floods (${flood.ratio}x), ` +
                `${flood.ttft_ms_p50_flooded_unlimited} ms while a key without limits floods (${flood.ratio_unlimited}x).`,
        );

        const edge = {
            flood: {
                ttft_ms_p50_alone: flood.ttft_ms_p50_alone,
                ttft_ms_p50_flooded: flood.ttft_ms_p50_flooded,
                ratio: flood.ratio,
                ttft_ms_p50_flooded_unlimited: flood.ttft_ms_p50_flooded_unlimited,
                ratio_unlimited: flood.ratio_unlimited,
            },
        };
        const meta = {
            mode: SHORT ? "short" : "full",
            date: new Date().toISOString(),
            nginx: version,
            node: process.version,
            cores: os.cpus().length,
            loadavg_1m_before: round(loadBefore[0]!, 2),
            loadavg_1m_after: round(os.loadavg()[0]!, 2),
            cpu: os.cpus()[0]?.model,
            worker_processes: WORKERS,
            replicas: REPLICAS,
            standin: { itl_ms: ITL_MS, batch_slowdown: BATCH_SLOWDOWN, max_num_seqs: MAX_NUM_SEQS },
            workloads: { streaming: STREAMING, throughput: THROUGHPUT, mixed: { ...MIXED, requests: schedule.length } },
            direct: "client-side round robin over the replicas, no proxy",
            imbalance: "time average over the arrival window (50 ms samples) of (max - min) / mean of in-flight requests per replica, from client-side accounting by x-replica-id",
            jsq_model: { e2e_ms_p99: round(percentile(jsq.e2e, 99), 0), e2e_ms_p50: round(percentile(jsq.e2e, 50), 0), imbalance: round(jsq.imbalance, 3) },
            rr_model: { e2e_ms_p99: round(percentile(rr.e2e, 99), 0), e2e_ms_p50: round(percentile(rr.e2e, 50), 0), imbalance: round(rr.imbalance, 3) },
            failures: Object.fromEntries(VARIANTS.map((v) => [v, { streaming: streaming[v].failures, throughput: throughput[v].failures, mixed: mixed[v].failures }])),
            extra: Object.fromEntries(
                VARIANTS.map((v) => [
                    v,
                    {
                        chunk_gap_ms_p50: round(percentile(streaming[v].gaps, 50), 2),
                        short_request_ms_p50: round(percentile(throughput[v].latencies, 50), 2),
                        short_request_ms_p99: round(percentile(throughput[v].latencies, 99), 2),
                        e2e_ms_p50: round(percentile(mixed[v].e2e, 50), 0),
                    },
                ]),
            ),
            edge: {
                flood: {
                    settings: floodMeta(floodSettings),
                    ttft_ms_p99_alone: flood.ttft_ms_p99_alone,
                    ttft_ms_p99_flooded: flood.ttft_ms_p99_flooded,
                    ttft_ms_p99_flooded_unlimited: flood.ttft_ms_p99_flooded_unlimited,
                    protected_failures: flood.failures,
                    flood: flood.flood,
                },
            },
            seconds: round((performance.now() - started) / 1000, 0),
        };
        const subtitle = `${meta.mode} run ${meta.date.slice(0, 16)}Z: ${REPLICAS} stand-ins (itl ${ITL_MS} ms), ${version}, worker_processes ${WORKERS}, ${meta.cores} cores shared by client, nginx and stand-ins. direct = client round robin.`;
        return {
            results: { ...results, edge, groups: groupsFigures } as unknown as Record<string, unknown>,
            meta,
            svg: svg(
                [
                    { title: "(a) time to first token, CDF", xLabel: "ms (log)", series: VARIANTS.map((v) => ({ name: v, values: streaming[v].ttft })) },
                    { title: "(a) gap between token chunks, CDF", xLabel: "ms (log; 0 shown at the left edge)", series: VARIANTS.map((v) => ({ name: v, values: streaming[v].gaps })) },
                    {
                        title: "(c) mixed lengths: end-to-end, CDF",
                        xLabel: "ms (log)",
                        series: [...VARIANTS.map((v) => ({ name: v, values: mixed[v].e2e })), { name: "jsq", values: jsq.e2e, dashed: true }],
                    },
                ],
                subtitle,
            ),
        };
    } finally {
        await Promise.all(balancers.map((b) => b.stop()));
        await Promise.all(standIns.map((s) => s.kill()));
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

// ---------------------------------------------------------------------------------------------------
// Routing: table, chart

const ROUTING_COLORS: Record<string, string> = { least_conn: "#1f77b4", cache_aware: "#2ca02c", consistent_hash: "#d62728", ideal: "#7f7f7f" };

function routingTable(results: Record<string, Record<string, RoutingFigures>>): string {
    const cols: Array<[keyof RoutingFigures, string]> = [
        ["ttft_ms_p50", "TTFT p50 ms"],
        ["ttft_ms_p99", "TTFT p99 ms"],
        ["e2e_ms_p99", "e2e p99 ms"],
        ["hit_rate", "hit rate"],
        ["tokens_per_s", "tok/s"],
        ["max_over_mean_load", "load max/mean"],
        ["failures", "failures"],
        ["keys_moved_share", "keys moved"],
    ];
    const rows = [["workload", "variant", ...cols.map((c) => c[1])]];
    for (const w of ROUTING_WORKLOADS) {
        for (const v of ROUTING_VARIANTS) {
            const f = results[w]![v]!;
            rows.push([w, v, ...cols.map(([k]) => (f[k] === undefined ? "" : f[k] === null ? "n/a" : String(f[k])))]);
        }
    }
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    return rows.map((r) => r.map((x, c) => x.padEnd(widths[c]!)).join("  ")).join("\n");
}

/** Grouped bars per workload: TTFT p50 (log scale), hit rate, e2e p99 (log scale). */
function routingSvg(results: Record<string, Record<string, RoutingFigures>>, subtitle: string): string {
    const panels: Array<[keyof RoutingFigures, string, boolean]> = [
        ["ttft_ms_p50", "time to first token, p50 (ms, log)", true],
        ["hit_rate", "prefix-cache hit rate", false],
        ["e2e_ms_p99", "end-to-end, p99 (ms, log)", true],
    ];
    const W = 520;
    const H = 260;
    const M = { left: 50, right: 10, top: 35, bottom: 60 };
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const parts: string[] = [];
    panels.forEach(([key, title, log], p) => {
        const oy = p * H;
        const values = ROUTING_WORKLOADS.flatMap((w) => ROUTING_VARIANTS.map((v) => Number(results[w]![v]![key] ?? NaN))).filter((x) => Number.isFinite(x) && x > 0);
        const hi = log ? Math.pow(10, Math.ceil(Math.log10(Math.max(...values)))) : 1;
        const lo = log ? Math.pow(10, Math.floor(Math.log10(Math.min(...values)))) : 0;
        const y = (v: number) => oy + M.top + ph - (log ? (Math.log10(Math.max(lo, v)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : v / hi) * ph;
        parts.push(`<text x="${W / 2}" y="${oy + 20}" text-anchor="middle" font-weight="bold">${title}</text>`);
        parts.push(`<rect x="${M.left}" y="${oy + M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
        const ticks = log ? Array.from({ length: Math.round(Math.log10(hi / lo)) + 1 }, (_, i) => lo * 10 ** i) : [0, 0.25, 0.5, 0.75, 1];
        for (const t of ticks) {
            parts.push(`<line x1="${M.left}" y1="${y(t)}" x2="${M.left + pw}" y2="${y(t)}" stroke="#eee"/>`);
            parts.push(`<text x="${M.left - 4}" y="${y(t) + 3}" text-anchor="end" font-size="10">${t}</text>`);
        }
        const groupW = pw / ROUTING_WORKLOADS.length;
        const barW = (groupW - 12) / ROUTING_VARIANTS.length;
        ROUTING_WORKLOADS.forEach((w, g) => {
            const gx = M.left + g * groupW + 6;
            parts.push(`<text x="${gx + (groupW - 12) / 2}" y="${oy + M.top + ph + 14}" text-anchor="middle" font-size="10">${w}</text>`);
            ROUTING_VARIANTS.forEach((v, k) => {
                const value = Number(results[w]![v]![key] ?? NaN);
                if (!Number.isFinite(value)) {
                    return;
                }
                const top = y(value);
                parts.push(`<rect x="${(gx + k * barW).toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(oy + M.top + ph - top).toFixed(1)}" fill="${ROUTING_COLORS[v]}"/>`);
            });
        });
        ROUTING_VARIANTS.forEach((v, k) => parts.push(`<text x="${M.left + 10 + k * 120}" y="${oy + M.top + ph + 34}" font-size="11" fill="${ROUTING_COLORS[v]}">&#9632; ${v}</text>`));
    });
    return svgDocument(W, H * panels.length, parts, subtitle);
}

async function routingBenchmark(): Promise<Part> {
    const started = performance.now();
    const loadBefore = os.loadavg();
    console.log(`\nbench (${SHORT ? "short" : "full"}), routing: stand-ins with the prefix-cache model; variants ${ROUTING_VARIANTS.join(", ")}`);
    const only = flag("--workloads")?.split(",") as RoutingWorkload[] | undefined;
    const loadBound = flag("--load-bound") === undefined ? undefined : Number(flag("--load-bound"));
    const { results, describe } = await runRouting({ short: SHORT, only, loadBound, workers: WORKERS, log: (line) => console.log(line) });
    if (only) {
        return { results: results as unknown as Record<string, unknown>, meta: { workloads: describe } };
    }
    console.log("");
    console.log(routingTable(results));
    const checks = targets(results);
    console.log("\ntargets (ratios within this run):");
    for (const t of checks) {
        console.log(`  ${t.met === null ? "n/a " : t.met ? "met " : "NOT "} ${t.what}: ${t.ratio ?? "n/a"} (target ${t.bound})`);
    }
    const seconds = round((performance.now() - started) / 1000, 0);
    const loadAfter = os.loadavg();
    const meta = {
        workloads: describe,
        ideal: "a router in the benchmark process: it replays the stand-in's block hashing (ChatML render, 4-character tokens, 16-token chained blocks) and an LRU of each replica's pool, and sends each request straight to the replica with the longest cached prefix among those with at most ceil(1.25 x mean) requests in flight (cache_aware's default bound); a session's first request goes to the replica with the fewest sessions",
        targets: checks,
        loadavg_1m_before: round(loadBefore[0]!, 2),
        loadavg_1m_after: round(loadAfter[0]!, 2),
        seconds,
    };
    const svgText = routingSvg(results, `${SHORT ? "short" : "full"} run ${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} cores shared by client, nginx and stand-ins; load average ${meta.loadavg_1m_before} -> ${meta.loadavg_1m_after}.`);
    return { results: results as unknown as Record<string, unknown>, meta, svg: svgText };
}

async function main(): Promise<void> {
    const started = performance.now();
    const proxy = ONLY === "routing" ? undefined : await proxyBenchmark();
    const routing = ONLY === "proxy" ? undefined : await routingBenchmark();
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    const results = { ...(proxy?.results ?? {}), ...(routing ? { routing: routing.results } : {}) };
    fs.writeFileSync(path.join(RESULTS_DIR, `${OUT}.json`), `${JSON.stringify(results, null, 2)}\n`);
    const seconds = round((performance.now() - started) / 1000, 0);
    const meta = { ...(proxy?.meta ?? {}), ...(routing ? { routing: routing.meta } : {}), seconds };
    fs.writeFileSync(path.join(RESULTS_DIR, `${OUT}.meta.json`), `${JSON.stringify(meta, null, 2)}\n`);
    if (proxy?.svg) {
        fs.writeFileSync(path.join(RESULTS_DIR, `${OUT}.svg`), proxy.svg);
    }
    if (routing?.svg) {
        fs.writeFileSync(path.join(RESULTS_DIR, `${OUT}.routing.svg`), routing.svg);
    }
    console.log(`\nwrote ${path.relative(process.cwd(), path.join(RESULTS_DIR, `${OUT}.json`))}, .meta.json and the charts in ${seconds} s`);
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error(err);
        process.exit(1);
    },
);
