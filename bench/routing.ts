/**
 * The routing benchmark: stand-ins that model vLLM's prefix cache (16-token blocks, LRU pool, prefill
 * time, one scheduler each) reached four ways, side by side in one run, under five workloads shaped
 * like the published ones. See bench/README.md ("Routing") for what each figure means.
 *
 * Variants:
 *   least_conn       the program's default config (Lua least_conn)
 *   cache_aware      balancer = cache_aware (session header, else leading content; bounded load)
 *   consistent_hash  nginx's own `hash $key consistent` on the same key, no load bound
 *   ideal            no nginx: a router in this process that knows every replica's cache (it replays
 *                    the stand-in's block hashing and LRU) and never loads a replica beyond cache_aware's
 *                    bound; it places new sessions on the replica with the fewest, and sends each
 *                    request straight to the replica it picked
 */
import * as crypto from "crypto";
import * as http from "http";
import * as path from "path";
import * as os from "os";
import { performance } from "perf_hooks";
import { DEFAULTS } from "../components/config/keys";
import { renderNginxConfig } from "../components/nginx/render";
import type { RoutingMethod } from "../components/nginx/routing";
import { Nginx, StandIn, freePort, metricValue, oursConfig, percentile, scrape, sleep, startNginx, startStandIn, stream } from "../test/support";
import { mulberry32 } from "./model";

export const ROUTING_VARIANTS = ["least_conn", "cache_aware", "consistent_hash", "ideal"] as const;
export type RoutingVariant = (typeof ROUTING_VARIANTS)[number];
export const ROUTING_WORKLOADS = ["multi_round_qa", "shared_prefix", "hot_session", "scale_out", "no_reuse"] as const;
export type RoutingWorkload = (typeof ROUTING_WORKLOADS)[number];

export interface RoutingFigures {
    ttft_ms_p50: number | null;
    ttft_ms_p99: number | null;
    e2e_ms_p99: number | null;
    hit_rate: number | null;
    tokens_per_s: number | null;
    max_over_mean_load: number | null;
    failures: number;
    keys_moved_share?: number | null;
}

/** Per run, beside the figures: connection errors retried once, as OpenAI's clients do. */
export interface RoutingRetries {
    retried: number;
    detail: string[];
}

export interface RoutingOptions {
    short: boolean;
    /** cache_aware's loadBound, and the ideal router's. Defaults to the program's default. */
    loadBound?: number;
    /** Run only these workloads (default: all). */
    only?: RoutingWorkload[];
    workers: number | "auto";
    log: (line: string) => void;
}

// ---------------------------------------------------------------------------------------------------
// The stand-in's prompt model, replayed by the ideal router (test/standin/server.mjs, "The engine")

const BLOCK_TOKENS = 16;

const CHARS_PER_TOKEN = 4;
const BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN;

interface Message {
    role: string;
    content: string;
}

function renderChat(messages: Message[]): string {
    return `${messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("")}<|im_start|>assistant\n`;
}

/** Chained hashes of the full blocks of a prompt, and how many tokens it has. */
function promptBlocks(messages: Message[]): { blocks: string[]; tokens: number } {
    const text = renderChat(messages);
    const tokens = Math.ceil(text.length / CHARS_PER_TOKEN);
    const blocks: string[] = [];
    let parent = "";
    for (let b = 0; (b + 1) * BLOCK_CHARS <= text.length; b += 1) {
        parent = crypto.createHash("sha1").update(parent).update(text.slice(b * BLOCK_CHARS, (b + 1) * BLOCK_CHARS)).digest("base64");
        blocks.push(parent);
    }
    return { blocks, tokens };
}

/** One replica's cache as the ideal router sees it: an LRU of block hashes, the size of its pool. */
class CacheModel {
    private readonly lru = new Map<string, true>();
    constructor(private readonly capacity: number) {}

    /** Tokens of `prompt` this replica has cached: whole blocks, the last token always recomputed. */
    cachedTokens(prompt: { blocks: string[]; tokens: number }): number {
        let n = 0;
        while (n < prompt.blocks.length && this.lru.has(prompt.blocks[n]!)) {
            n += 1;
        }
        return Math.min(n * BLOCK_TOKENS, Math.floor((prompt.tokens - 1) / BLOCK_TOKENS) * BLOCK_TOKENS);
    }

    admit(prompt: { blocks: string[] }): void {
        for (const b of prompt.blocks) {
            this.lru.delete(b);
            this.lru.set(b, true);
        }
        while (this.lru.size > this.capacity) {
            this.lru.delete(this.lru.keys().next().value!);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Text

const WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu".split(" ");

/** Pseudo-random words, `tokens` x 4 characters long (the stand-in's token), the same for the same seed. */
function text(seed: number, tokens: number): string {
    const rand = mulberry32(seed);
    let out = "";
    while (out.length < tokens * CHARS_PER_TOKEN) {
        out += `${WORDS[Math.floor(rand() * WORDS.length)]} `;
    }
    return out.slice(0, tokens * CHARS_PER_TOKEN);
}

// ---------------------------------------------------------------------------------------------------
// A run: fresh stand-ins (empty caches), one variant, one workload

interface Sample {
    session?: string;
    sentAt: number;
    firstAt: number;
    endAt: number;
    replica: number;
    ok: boolean;
    outputTokens: number;
}

interface ChatSpec {
    messages: Message[];
    maxTokens: number;
    session?: string;
}

interface ChatResult {
    ok: boolean;
    answer: string;
    replica: number;
}

interface Stage {
    replicas: number;
    /** Replicas in rotation at the start (scale_out: one fewer). */
    initial: number;
    blocks: number;
    timeScale: number;
}

class Run {
    readonly samples: Sample[] = [];
    /** Why requests failed: status, error, tokens received. */
    readonly errors: string[] = [];
    /** Requests sent again after their connection closed before anything was read (see chat). */
    readonly retries: string[] = [];
    private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    private nginx?: Nginx;
    private standIns: StandIn[] = [];
    private inRotation = 0;
    private readonly inflight: number[] = [];
    private readonly caches: CacheModel[] = [];
    /** The ideal router's view of sessions: where each was last sent, and how many each replica has. */
    private readonly sessionHome = new Map<string, number>();
    private readonly sessionsOn: number[] = [];
    private port = 0;
    private statusSocket = "";
    eventAt = NaN;
    readonly t0 = performance.now();

    constructor(
        readonly variant: RoutingVariant,
        readonly stage: Stage,
        private readonly workers: number | "auto",
        /** cache_aware's loadBound; the ideal router keeps to it too. */
        private readonly loadBound: number,
    ) {}

    async start(): Promise<void> {
        const maxModelLen = Math.min(16384, (this.stage.blocks - 2) * BLOCK_TOKENS);
        this.standIns = await Promise.all(
            Array.from({ length: this.stage.replicas }, (_, i) =>
                startStandIn({
                    replicaId: `r${i}`,
                    args: [
                        "--served-model-name", "m",
                        "--disable-uvicorn-access-log",
                        "--max-num-seqs", "8",
                        "--num-gpu-blocks-override", String(this.stage.blocks),
                        "--max-model-len", String(maxModelLen),
                        "--time-scale", String(this.stage.timeScale),
                    ],
                }),
            ),
        );
        this.inRotation = this.stage.initial;
        for (let i = 0; i < this.stage.replicas; i += 1) {
            this.inflight.push(0);
            this.sessionsOn.push(0);
            this.caches.push(new CacheModel(this.stage.blocks - 1));
        }
        if (this.variant !== "ideal") {
            this.port = await freePort();
            this.nginx = await startNginx(this.config(), this.port, { workers: this.workers, readyPath: "/nginx-health" });
        }
    }

    private config(): string {
        this.statusSocket = path.join(os.tmpdir(), `vllm-nginx-bench-status-${process.pid}-${this.port}-${this.inRotation}.sock`);
        const config = oursConfig(
            this.standIns.map((s) => s.port),
            this.port,
            { method: this.variant as RoutingMethod, loadBound: this.loadBound, statusListen: `unix:${this.statusSocket}` },
        );
        config.upstreams.forEach((u, i) => (u.state = i < this.inRotation ? "active" : "down"));
        return renderNginxConfig(config).text;
    }

    /** A replica joins the rotation (scale-out), as a deploy admits it: a reload, nothing restarted. */
    async admitNext(): Promise<void> {
        this.inRotation += 1;
        this.eventAt = performance.now();
        if (this.nginx) {
            this.nginx.reload(this.config());
            await sleep(150);
        }
    }

    /**
     * The ideal router's pick: among the replicas within cache_aware's load bound (at most
     * ceil(loadBound x the mean) requests in flight, this one included), the one with the longest
     * cached prefix of this prompt; ties to the one with the fewest in flight. A session's first
     * request goes to the replica with the fewest sessions (ties: the longest cached prefix), so that
     * a prefix every session shares does not pile sessions onto the replicas that have it.
     */
    private pickIdeal(prompt: { blocks: string[]; tokens: number }, session: string | undefined): number {
        const n = this.inRotation;
        const total = this.inflight.slice(0, n).reduce((a, b) => a + b, 0);
        const cap = Math.ceil((this.loadBound * (total + 1)) / n);
        const fresh = session !== undefined && !this.sessionHome.has(session);
        let best = -1;
        let bestCached = -1;
        for (let i = 0; i < n; i += 1) {
            if (this.inflight[i]! + 1 > cap) {
                continue;
            }
            const cached = this.caches[i]!.cachedTokens(prompt);
            const better = fresh
                ? best < 0 || this.sessionsOn[i]! < this.sessionsOn[best]! || (this.sessionsOn[i] === this.sessionsOn[best] && cached > bestCached)
                : cached > bestCached || (cached === bestCached && this.inflight[i]! < this.inflight[best]!);
            if (better) {
                best = i;
                bestCached = cached;
            }
        }
        if (session !== undefined && this.sessionHome.get(session) !== best) {
            const previous = this.sessionHome.get(session);
            if (previous !== undefined) {
                this.sessionsOn[previous]! -= 1;
            }
            this.sessionHome.set(session, best);
            this.sessionsOn[best]! += 1;
        }
        return best;
    }

    async chat(spec: ChatSpec): Promise<ChatResult> {
        let url = this.nginx?.url ?? "";
        let picked = -1;
        if (this.variant === "ideal") {
            const prompt = promptBlocks(spec.messages);
            picked = this.pickIdeal(prompt, spec.session);
            this.caches[picked]!.admit(prompt);
            this.inflight[picked]! += 1;
            url = this.standIns[picked]!.url;
        }
        const headers: Record<string, string> = spec.session ? { "x-user-id": spec.session } : {};
        const body = { model: "m", messages: spec.messages, max_tokens: spec.maxTokens, stream: true };
        let r = await stream(`${url}/v1/chat/completions`, body, { agent: this.agent, headers, timeoutMs: 120_000 }).result;
        if (r.status === 0 && r.events.length === 0 && /socket hang up|ECONNRESET/.test(r.error ?? "")) {
            // A reload closes the old workers' idle keep-alive connections; a request written on one at
            // that moment is never read (nor proxied), and the client sees the connection close. OpenAI's
            // clients retry such connection errors (max_retries); so does this one, once, and counts it.
            this.retries.push(`${r.error} at ${Math.round(r.sentAt - this.t0)} ms (event at ${Math.round(this.eventAt - this.t0)} ms)`);
            const sentAt = r.sentAt;
            // On a new connection: the agent's other idle ones may be closing too.
            r = await stream(`${url}/v1/chat/completions`, body, { agent: false, headers, timeoutMs: 120_000 }).result;
            r.sentAt = sentAt;
        }
        const endAt = performance.now();
        if (picked >= 0) {
            this.inflight[picked]! -= 1;
        }
        let answer = "";
        let tokens = 0;
        let firstAt = NaN;
        for (const e of r.events) {
            if (e.data === "[DONE]") {
                continue;
            }
            const content = JSON.parse(e.data).choices?.[0]?.delta?.content;
            if (typeof content === "string" && content !== "") {
                answer += content;
                tokens += 1;
                if (Number.isNaN(firstAt)) {
                    firstAt = e.at;
                }
            }
        }
        const ok = r.status === 200 && r.done && tokens === spec.maxTokens;
        if (!ok) {
            this.errors.push(`status ${r.status}, ${r.error ?? "no error"}, ${tokens}/${spec.maxTokens} tokens, done ${r.done}, at ${Math.round(r.sentAt - this.t0)} ms (event at ${Math.round(this.eventAt - this.t0)} ms)`);
        }
        const replica = Number(String(r.replica ?? "r-1").slice(1));
        this.samples.push({ session: spec.session, sentAt: r.sentAt, firstAt, endAt, replica, ok, outputTokens: ok ? tokens : 0 });
        return { ok, answer: answer.trim(), replica };
    }

    async stop(): Promise<{ hits: number; queries: number }> {
        const texts = await Promise.all(this.standIns.map(scrape));
        const sum = (name: string) => texts.reduce((n, t) => n + metricValue(t, name), 0);
        const counts = { hits: sum("vllm:prefix_cache_hits_total"), queries: sum("vllm:prefix_cache_queries_total") };
        this.agent.destroy();
        await this.nginx?.stop();
        await Promise.all(this.standIns.map((s) => s.kill()));
        return counts;
    }
}

// ---------------------------------------------------------------------------------------------------
// Workloads

interface WorkloadSpec {
    stage: Stage;
    /** What the workload sends; resolves when its last request has finished. */
    drive(run: Run): Promise<void>;
    /** Shape, for the meta file. */
    describe: Record<string, unknown>;
}

/** Poisson arrival times (ms) of `count` requests at `rate` per second, fixed seed. */
function poisson(count: number, rate: number, seed: number): number[] {
    const rand = mulberry32(seed);
    const out: number[] = [];
    let t = 0;
    for (let i = 0; i < count; i += 1) {
        t += (-Math.log(1 - rand()) / rate) * 1000;
        out.push(t);
    }
    return out;
}

async function openLoop(run: Run, at: number[], spec: (i: number) => ChatSpec): Promise<void> {
    const start = performance.now() + 20;
    await Promise.all(
        at.map(async (t, i) => {
            await sleep(Math.max(0, start + t - performance.now()));
            await run.chat(spec(i));
        }),
    );
}

/**
 * production-stack's multi-round QA: each user's first message is a shared "system prompt" preamble,
 * then the user's own context and a question; each round appends the answer and a new question. Users
 * join one after the other and send their next round a think time after the answer.
 */
function multiRoundQa(o: { users: number; rounds: number; system: number; history: number; answer: number; thinkMs: number; joinMs: number; seed: number }, onRound?: (run: Run, done: number) => Promise<void>) {
    const preamble = `Hi, here's some system prompt: ${text(o.seed, o.system)}`;
    return async (run: Run) => {
        let done = 0;
        await Promise.all(
            Array.from({ length: o.users }, async (_, u) => {
                await sleep(u * o.joinMs);
                const history: Message[] = [
                    { role: "user", content: `${preamble}For user ${u}, here are some other context: ${text(o.seed + 1000 + u, o.history)} Here's question #1: can you tell me a new long story with a happy ending?` },
                ];
                for (let r = 0; r < o.rounds; r += 1) {
                    const result = await run.chat({ messages: history, maxTokens: o.answer, session: `user-${u}` });
                    done += 1;
                    await onRound?.(run, done);
                    history.push({ role: "assistant", content: result.answer }, { role: "user", content: `Here's question #${r + 2}: can you tell me a new long story with a happy ending?` });
                    await sleep(o.thinkMs);
                }
            }),
        );
    };
}

function workloads(short: boolean): Record<RoutingWorkload, WorkloadSpec> {
    const timeScale = short ? 0.25 : 1;
    const ms = (x: number) => x * timeScale;
    const qa = short ? { users: 8, rounds: 4, system: 1000, history: 1000, answer: 32 } : { users: 16, rounds: 6, system: 1000, history: 2000, answer: 64 };
    const qaShape = { ...qa, thinkMs: ms(1000), joinMs: ms(short ? 300 : 400), seed: 11 };
    const groups = short ? { groups: 8, perGroup: 6, prefix: 1500, question: 60, answer: 32, rate: 6 / timeScale } : { groups: 16, perGroup: 8, prefix: 1500, question: 60, answer: 32, rate: 6 };
    const hot = short ? { background: 6, rounds: 4, context: 600, hotContext: 2000, lanes: 12, steps: 3, answer: 32 } : { background: 12, rounds: 6, context: 600, hotContext: 2000, lanes: 12, steps: 6, answer: 48 };
    const scale = short ? { users: 9, rounds: 6, system: 800, history: 800, answer: 32 } : { users: 18, rounds: 8, system: 1000, history: 1500, answer: 48 };
    const control = short ? { requests: 48, prompt: 800, answer: 32, rate: 6 / timeScale } : { requests: 160, prompt: 800, answer: 48, rate: 6 };
    const groupPrefix = (g: number) => `You answer questions about document ${g}. ${text(500 + g, groups.prefix)}`;
    const groupOrder = (() => {
        const order = Array.from({ length: groups.groups * groups.perGroup }, (_, i) => i);
        const rand = mulberry32(7);
        for (let i = order.length - 1; i > 0; i -= 1) {
            const j = Math.floor(rand() * (i + 1));
            [order[i], order[j]] = [order[j]!, order[i]!];
        }
        return order;
    })();
    const hotPrefix = `You are an agent working through task 42. ${text(4242, hot.hotContext)}`;
    return {
        multi_round_qa: {
            // Pool: one replica holds about half the users' histories; the four hold them all.
            stage: { replicas: 4, initial: 4, blocks: short ? 600 : 1500, timeScale },
            drive: multiRoundQa(qaShape),
            describe: { ...qaShape, session_header: "x-user-id" },
        },
        shared_prefix: {
            stage: { replicas: 4, initial: 4, blocks: short ? 500 : 800, timeScale },
            drive: (run) =>
                openLoop(run, poisson(groupOrder.length, groups.rate, 3), (i) => {
                    const g = Math.floor(groupOrder[i]! / groups.perGroup);
                    return { messages: [{ role: "system", content: groupPrefix(g) }, { role: "user", content: `Question ${groupOrder[i]}: ${text(9000 + groupOrder[i]!, groups.question)}` }], maxTokens: groups.answer };
                }),
            describe: { ...groups, session_header: "none (cross-user reuse)" },
        },
        hot_session: {
            stage: { replicas: 4, initial: 4, blocks: short ? 600 : 1200, timeScale },
            drive: async (run) => {
                const background = multiRoundQa({ users: hot.background, rounds: hot.rounds, system: 200, history: hot.context, answer: hot.answer, thinkMs: ms(500), joinMs: ms(200), seed: 77 });
                const agent = Promise.all(
                    Array.from({ length: hot.lanes }, async (_, lane) => {
                        for (let step = 0; step < hot.steps; step += 1) {
                            await run.chat({ messages: [{ role: "system", content: hotPrefix }, { role: "user", content: `Lane ${lane}, step ${step}: ${text(lane * 100 + step, 40)}` }], maxTokens: hot.answer, session: "agent-42" });
                        }
                    }),
                );
                await Promise.all([background(run), agent]);
            },
            describe: { ...hot, session_header: "x-user-id (one agent session with `lanes` requests in flight)" },
        },
        scale_out: {
            stage: { replicas: 4, initial: 3, blocks: short ? 600 : 1500, timeScale },
            drive: multiRoundQa({ ...scale, thinkMs: ms(1000), joinMs: ms(200), seed: 21 }, async (run, done) => {
                if (done === Math.floor((scale.users * scale.rounds) / 2)) {
                    await run.admitNext();
                }
            }),
            describe: { ...scale, from: 3, to: 4, event: "after half the requests, the 4th replica joins the rotation (nginx reload)" },
        },
        no_reuse: {
            stage: { replicas: 4, initial: 4, blocks: short ? 600 : 1200, timeScale },
            drive: (run) => openLoop(run, poisson(control.requests, control.rate, 5), (i) => ({ messages: [{ role: "user", content: `${i} ${text(20000 + i, control.prompt)}` }], maxTokens: control.answer })),
            describe: { ...control, session_header: "none" },
        },
    };
}

// ---------------------------------------------------------------------------------------------------
// Figures

const round = (x: number, digits = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);

/** Request-seconds in flight per replica over [from, to], busiest over the mean. */
function maxOverMean(samples: Sample[], replicas: number, from: number, to: number): number {
    const busy = new Array<number>(replicas).fill(0);
    for (const s of samples) {
        if (s.replica >= 0 && s.replica < replicas) {
            busy[s.replica]! += Math.max(0, Math.min(s.endAt, to) - Math.max(s.sentAt, from));
        }
    }
    const mean = busy.reduce((a, b) => a + b, 0) / replicas;
    return mean > 0 ? Math.max(...busy) / mean : NaN;
}

/**
 * Sessions seen both before and after the event: the share whose home changed, a session's home being
 * the replica that served most of its requests in that period (ties: the later one). A request the
 * load bound sends elsewhere for a moment does not move the session's key.
 */
function keysMoved(samples: Sample[], eventAt: number): number {
    const served = { before: new Map<string, number[]>(), after: new Map<string, number[]>() };
    for (const s of [...samples].sort((a, b) => a.sentAt - b.sentAt)) {
        if (s.session && s.ok) {
            const side = s.sentAt < eventAt ? served.before : served.after;
            side.set(s.session, [...(side.get(s.session) ?? []), s.replica]);
        }
    }
    const home = (replicas: number[]) => {
        const counts = new Map<number, number>();
        let best = replicas[0]!;
        for (const r of replicas) {
            counts.set(r, (counts.get(r) ?? 0) + 1);
            if (counts.get(r)! >= counts.get(best)!) {
                best = r;
            }
        }
        return best;
    };
    const both = [...served.after.keys()].filter((k) => served.before.has(k));
    return both.length > 0 ? both.filter((k) => home(served.before.get(k)!) !== home(served.after.get(k)!)).length / both.length : NaN;
}

export interface RoutingRunData {
    ttft: number[];
    e2e: number[];
}

export async function runRouting(options: RoutingOptions): Promise<{ results: Record<RoutingWorkload, Record<RoutingVariant, RoutingFigures>>; data: Record<RoutingWorkload, Record<RoutingVariant, RoutingRunData>>; describe: Record<string, unknown> }> {
    const specs = workloads(options.short);
    const retries: Record<string, RoutingRetries> = {};
    const results = {} as Record<RoutingWorkload, Record<RoutingVariant, RoutingFigures>>;
    const data = {} as Record<RoutingWorkload, Record<RoutingVariant, RoutingRunData>>;
    for (const workload of ROUTING_WORKLOADS.filter((w) => !options.only || options.only.includes(w))) {
        const spec = specs[workload];
        results[workload] = {} as Record<RoutingVariant, RoutingFigures>;
        data[workload] = {} as Record<RoutingVariant, RoutingRunData>;
        for (const variant of ROUTING_VARIANTS) {
            const run = new Run(variant, spec.stage, options.workers, options.loadBound ?? DEFAULTS.loadBound);
            let counts = { hits: NaN, queries: NaN };
            try {
                await run.start();
                await spec.drive(run);
            } finally {
                counts = await run.stop();
            }
            const ok = run.samples.filter((s) => s.ok);
            const ttft = ok.map((s) => s.firstAt - s.sentAt);
            const e2e = ok.map((s) => s.endAt - s.sentAt);
            const first = Math.min(...run.samples.map((s) => s.sentAt));
            const last = Math.max(...run.samples.map((s) => s.endAt));
            const loadFrom = workload === "scale_out" ? run.eventAt : first;
            const figures: RoutingFigures = {
                ttft_ms_p50: round(percentile(ttft, 50), 1),
                ttft_ms_p99: round(percentile(ttft, 99), 1),
                e2e_ms_p99: round(percentile(e2e, 99), 0),
                hit_rate: round(counts.hits / counts.queries, 3),
                tokens_per_s: round(ok.reduce((n, s) => n + s.outputTokens, 0) / ((last - first) / 1000), 1),
                max_over_mean_load: round(maxOverMean(run.samples, spec.stage.replicas, loadFrom, last), 2),
                failures: run.samples.length - ok.length,
            };
            if (workload === "scale_out") {
                figures.keys_moved_share = round(keysMoved(run.samples, run.eventAt), 3);
            }
            results[workload][variant] = figures;
            for (const e of run.errors.slice(0, 5)) {
                options.log(`    failed: ${e}`);
            }
            for (const e of run.retries) {
                options.log(`    retried: ${e}`);
            }
            retries[`${workload}.${variant}`] = { retried: run.retries.length, detail: run.retries };
            data[workload][variant] = { ttft, e2e };
            options.log(
                `  routing ${workload.padEnd(14)} ${variant.padEnd(15)} ${String(run.samples.length).padStart(4)} req, TTFT p50 ${figures.ttft_ms_p50} ms, p99 ${figures.ttft_ms_p99} ms, e2e p99 ${figures.e2e_ms_p99} ms, hit ${figures.hit_rate}, ${figures.tokens_per_s} tok/s, load max/mean ${figures.max_over_mean_load}, failures ${figures.failures}${figures.keys_moved_share !== undefined ? `, keys moved ${figures.keys_moved_share}` : ""}`,
            );
        }
    }
    const describe = {
        ...Object.fromEntries(ROUTING_WORKLOADS.map((w) => [w, { ...specs[w].describe, replicas: specs[w].stage.replicas, kv_blocks_per_replica: specs[w].stage.blocks, time_scale: specs[w].stage.timeScale }])),
        retried_connection_errors: retries,
    };
    return { results, data, describe };
}

// ---------------------------------------------------------------------------------------------------
// Targets of the issue, as ratios within this run (printed and stored, never asserted)

export interface Target {
    what: string;
    ratio: number | null;
    bound: string;
    met: boolean | null;
}

export function targets(r: Record<RoutingWorkload, Record<RoutingVariant, RoutingFigures>>): Target[] {
    const ratio = (a: number | null | undefined, b: number | null | undefined) => (a !== null && a !== undefined && b !== null && b !== undefined && b !== 0 ? Math.round((a / b) * 1000) / 1000 : null);
    const check = (value: number | null, ok: (v: number) => boolean) => (value === null ? null : ok(value));
    const qa = r.multi_round_qa;
    const hot = r.hot_session;
    const control = r.no_reuse;
    const scale = r.scale_out;
    const t: Target[] = [];
    const push = (what: string, value: number | null, bound: string, ok: (v: number) => boolean) => t.push({ what, ratio: value, bound, met: check(value, ok) });
    push("multi_round_qa: TTFT p50, cache_aware / least_conn", ratio(qa.cache_aware.ttft_ms_p50, qa.least_conn.ttft_ms_p50), "<= 0.5", (v) => v <= 0.5);
    push("multi_round_qa: hit rate, cache_aware / ideal", ratio(qa.cache_aware.hit_rate, qa.ideal.hit_rate), ">= 0.9", (v) => v >= 0.9);
    push("multi_round_qa: tokens/s, cache_aware / least_conn", ratio(qa.cache_aware.tokens_per_s, qa.least_conn.tokens_per_s), ">= 1", (v) => v >= 1);
    push("hot_session: e2e p99, cache_aware / least_conn", ratio(hot.cache_aware.e2e_ms_p99, hot.least_conn.e2e_ms_p99), "<= 1.1", (v) => v <= 1.1);
    push("hot_session: e2e p99, consistent_hash / least_conn", ratio(hot.consistent_hash.e2e_ms_p99, hot.least_conn.e2e_ms_p99), "> 1.1 (worse)", (v) => v > 1.1);
    push("no_reuse: e2e p99, cache_aware / least_conn", ratio(control.cache_aware.e2e_ms_p99, control.least_conn.e2e_ms_p99), "<= 1.1 (within noise)", (v) => v <= 1.1);
    push("no_reuse: TTFT p50, cache_aware / least_conn", ratio(control.cache_aware.ttft_ms_p50, control.least_conn.ttft_ms_p50), "<= 1.1 (within noise)", (v) => v <= 1.1);
    push("scale_out: keys moved, cache_aware / ideal 1/4", ratio(scale.cache_aware.keys_moved_share, 0.25), "<= 1.5", (v) => v <= 1.5);
    push("scale_out: cache_aware failures", scale.cache_aware.failures, "= 0", (v) => v === 0);
    return t;
}
