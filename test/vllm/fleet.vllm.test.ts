/**
 * The real-vLLM tier: the program deploys three replicas of vLLM's own server (its CPU build, from PyPI,
 * .ci/vllm-image) serving a tiny model made without a download (make_model.py), and the guarantees the
 * README makes are checked against vLLM itself rather than the stand-in: the health-gated join, streams,
 * cache_aware read from vLLM's prefix-cache counters, a rollout and scale-downs under load with vLLM's
 * real SIGTERM (its default, which aborts, and --shutdown-timeout, which drains), the drain signal,
 * Prometheus's rules and dashboard, a client's abort, LoRA adapters, and `scripts/status`.
 *
 * The replicas are small and few (2 cores): correctness is the point, not speed.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardQueries } from "../../components/monitoring/dashboard";
import { FLEET_RECORDING_RULES, REPLICA_RECORDING_RULES, alertRules } from "../../components/monitoring/rules";
import { PrometheusApi, metricValue, request, requireDocker, sleep, stream, waitFor, type Response } from "../support";
import { E2eStack, REPO, RotationSampler, docker, followLogs, removeLeftovers, rotation } from "../e2e/harness";
import { SteadyLoad, type Front, type LoadCounts } from "../e2e/load";

const STACK = "vllm";
/** The image .ci/vllm-image builds; Pulumi.vllm.yaml builds the tier's replica image on it. */
const VLLM_IMAGE = "vllm-nginx/vllm-cpu:0.32.0";
const LB_PORT = 18200;
const PROMETHEUS = new PrometheusApi("http://127.0.0.1:19290");
const MODEL = "tiny";
const API_KEY = "sk-vllm-tier-key-never-in-state";
const BASE_ARGS = ["--max-model-len", "1024", "--enforce-eager", "--enable-lora", "--max-lora-rank", "8", "--max-loras", "2", "--lora-modules", "lora-a=/opt/models/lora-a"];

const report: string[] = [];
function note(line: string): void {
    report.push(line);
    console.log(`[vllm] ${line}`);
}
function describeCounts(step: string, c: LoadCounts): string {
    return `${step}: sent ${c.sent}, completed ${c.completed}, failed ${c.failed}, cut or aborted ${c.cut}, error events ${c.errored}`;
}
function expectNothingLost(c: LoadCounts): void {
    expect(c.errors).toEqual([]);
    expect(c.failed + c.cut + c.errored).toBe(0);
    expect(c.completed).toBeGreaterThan(0);
}

const front: Front = { url: `http://127.0.0.1:${LB_PORT}`, headers: { authorization: `Bearer ${API_KEY}` } };
function call(pathname: string, body?: unknown, headers: Record<string, string> = front.headers): Promise<Response> {
    return request(`${front.url}${pathname}`, { headers, body, agent: false, timeoutMs: 60_000 });
}
/** A replica's own port, with the replicas' key (as operators and the rollout scripts reach it). */
function direct(url: string, pathname: string, body?: unknown): Promise<Response> {
    return request(`${url}${pathname}`, { headers: front.headers, body, agent: false, timeoutMs: 30_000 });
}
/** vLLM's own counters on every replica, by replica name. */
async function counters(replicas: Array<{ name: string; url: string }>, name: string, labels: Record<string, string> = {}): Promise<Record<string, number>> {
    const entries = await Promise.all(replicas.map(async (r) => [r.name, metricValue((await direct(r.url, "/metrics")).text, name, labels)] as const));
    return Object.fromEntries(entries);
}
const sum = (values: Record<string, number>) => Object.values(values).reduce((a, b) => a + b, 0);
const diff = (after: Record<string, number>, before: Record<string, number>) => Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - (before[k] ?? 0)]));

/**
 * Probes each replica's published port every 250 ms while an `up` runs: when it first answered /health
 * 200, and whether it answered HTTP at all before that (vLLM listens only once its engine is ready).
 */
class PortProbe {
    private timer?: NodeJS.Timeout;
    readonly firstHealthy: Record<string, number> = {};
    readonly before: Record<string, { refused: number; answered: number }> = {};
    constructor(private readonly ports: Record<string, number>) {}
    start(): this {
        this.timer = setInterval(() => void this.sample(), 250);
        return this;
    }
    private async sample(): Promise<void> {
        await Promise.all(
            Object.entries(this.ports).map(async ([name, port]) => {
                if (this.firstHealthy[name] !== undefined) {
                    return;
                }
                const seen = (this.before[name] ??= { refused: 0, answered: 0 });
                try {
                    const r = await request(`http://127.0.0.1:${port}/health`, { agent: false, timeoutMs: 1000 });
                    if (r.status === 200) {
                        this.firstHealthy[name] ??= Date.now();
                    } else {
                        seen.answered++;
                    }
                } catch {
                    seen.refused++;
                }
            }),
        );
    }
    stop(): void {
        clearInterval(this.timer);
    }
}

/** When each replica first appeared in the balancer's rotation, sampled every 250 ms. */
class JoinProbe {
    private timer?: NodeJS.Timeout;
    readonly joined: Record<string, number> = {};
    start(): this {
        this.timer = setInterval(async () => {
            for (const name of (await rotation(LB_PORT))?.in ?? []) {
                this.joined[name] ??= Date.now();
            }
        }, 250);
        return this;
    }
    stop(): void {
        clearInterval(this.timer);
    }
}

describe("real vLLM: three replicas of vLLM's CPU build behind the balancer", () => {
    let stack: E2eStack;
    let load: SteadyLoad | undefined;
    let outputs: Record<string, any> = {};
    const replicas = () => outputs.replicas as Array<{ name: string; container: string; url: string }>;
    const started = Date.now();

    /**
     * `pulumi up` under a steady load: 2 clients, each pausing 300 ms between streams. Light, so that on 2
     * cores a replica can start beside those serving it.
     */
    async function upUnderLoad(step: string, maxTokens = 48) {
        const sampler = new RotationSampler(LB_PORT).start();
        load = new SteadyLoad(front, MODEL, 2, maxTokens, 900, 300);
        load.start();
        await sleep(2000);
        const { seconds, output } = await stack.up();
        await sleep(2000);
        const counts = await load.stop();
        load = undefined;
        sampler.stop();
        note(`pulumi up (${step}): ${seconds.toFixed(1)}s`);
        note(describeCounts(`  under load during ${step}`, counts));
        note(`  rotation: fewest in rotation ${sampler.fewest}; changes: ${sampler.changes.join(" | ")}`);
        outputs = await stack.outputs();
        return { counts, sampler, output, seconds };
    }

    beforeAll(async () => {
        requireDocker("vllm-nginx/debian:bookworm");
        try {
            requireDocker(VLLM_IMAGE);
        } catch {
            throw new Error(`the real-vLLM tier needs ${VLLM_IMAGE}: run .ci/vllm-image (vLLM's CPU build from PyPI, about 3 GB to download)`);
        }
        await removeLeftovers(STACK);
        stack = new E2eStack(STACK, STACK);
        await stack.init();
        await stack.setConfig("apiKey", API_KEY, true);
    });

    afterAll(async () => {
        await load?.stop();
        if (stack) {
            const destroyStarted = Date.now();
            await stack.pulumi(["destroy", "--yes", "--skip-preview"]).then(
                () => note(`pulumi destroy: ${((Date.now() - destroyStarted) / 1000).toFixed(1)}s`),
                (error) => console.error(String(error)),
            );
        }
        await removeLeftovers(STACK);
        note(`the tier took ${((Date.now() - started) / 1000).toFixed(0)}s`);
        console.log(`\n[vllm] summary\n${report.map((l) => `  ${l}`).join("\n")}`);
    });

    it("deploys 3 replicas: each joins the balancer only once vLLM's /health answers, and vLLM's port stays closed while it loads", async () => {
        const ports = { vllm0: 18281, vllm1: 18282, vllm2: 18283 };
        const probe = new PortProbe(ports).start();
        const joins = new JoinProbe().start();
        const { seconds, output } = await stack.up();
        probe.stop();
        joins.stop();
        outputs = await stack.outputs();
        note(`pulumi up (create, 3 real vLLM replicas): ${seconds.toFixed(1)}s`);
        expect(replicas().map((r) => r.name)).toEqual(["vllm0", "vllm1", "vllm2"]);
        expect(await rotation(LB_PORT)).toEqual({ id: outputs.configId, in: ["vllm0", "vllm1", "vllm2"], out: [] });
        expect(output).toContain("serves /health and is in nginx's rotation");
        for (const [name] of Object.entries(ports)) {
            const seen = probe.before[name]!;
            note(`  ${name}: port probed ${seen.refused} times with no HTTP answer before its first /health 200; joined the rotation ${((joins.joined[name]! - probe.firstHealthy[name]!) / 1000).toFixed(1)}s after it`);
            expect(seen.refused, `${name} was probed while loading`).toBeGreaterThan(0);
            expect(seen.answered, `${name} answered HTTP before it was ready`).toBe(0);
            expect(probe.firstHealthy[name], name).toBeDefined();
            expect(joins.joined[name]!, `${name} joined before its /health answered`).toBeGreaterThanOrEqual(probe.firstHealthy[name]! - 250);
        }
        // It is vLLM: its version, and its own process names in the container.
        expect((await direct(replicas()[0]!.url, "/version")).json).toEqual({ version: "0.32.0" });
        expect(await docker(["exec", "vllm-vllm0", "sh", "-c", "cat /proc/[0-9]*/comm"])).toMatch(/VLLM::EngineCor/);
    });

    it("streams through the balancer, with vLLM's usage chunk, and lists the model and its adapter at /v1/models", async () => {
        const s = await stream(`${front.url}/v1/chat/completions`, { model: MODEL, stream: true, max_tokens: 16, stream_options: { include_usage: true }, messages: [{ role: "user", content: "tell me a story" }] }, { headers: front.headers, agent: false, timeoutMs: 60_000 }).result;
        expect(s).toMatchObject({ status: 200, done: true, complete: true });
        const parsed = s.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
        expect(parsed[0].choices[0].delta.role).toBe("assistant");
        expect(parsed.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: expect.any(Number), prompt_tokens: expect.any(Number) } });
        expect(parsed.every((c) => c.model === MODEL)).toBe(true);
        const models = await call("/v1/models");
        expect(models.status).toBe(200);
        expect((models.json.data as Array<{ id: string; parent: string | null }>).map((m) => [m.id, m.parent])).toEqual([
            [MODEL, null],
            ["lora-a", MODEL],
        ]);
        // Without the key, the balancer refuses; with it, a plain completion.
        expect((await call("/v1/models", undefined, {})).status).toBe(401);
        const plain = await call("/v1/completions", { model: MODEL, prompt: "hello world", max_tokens: 4 });
        expect([plain.status, plain.json.object, plain.json.usage.completion_tokens <= 4]).toEqual([200, "text_completion", true]);
    });

    it("cache_aware: each conversation's requests go to one replica, where vLLM's own prefix cache hits", async () => {
        const words = "the cat dog bird fish runs jumps sleeps eats red blue green big small river city tree moon".split(" ");
        // A conversation: its own long opening (about 400 tokens), then one more turn per request. (No
        // system prompt: one that few requests share would key them all to one replica.)
        const opening = (seed: number) => Array.from({ length: 400 }, (_, i) => words[(i * 7 + seed * 13 + ((i * seed) % 5)) % words.length]).join(" ");
        const turns = (seed: number, n: number) => [
            { role: "user", content: opening(seed) },
            ...Array.from({ length: n }, (_, t) => [
                { role: "assistant", content: `reply ${t}` },
                { role: "user", content: `question ${t}` },
            ]).flat(),
        ];
        const before = { queries: await counters(replicas(), "vllm:prefix_cache_queries_total"), hits: await counters(replicas(), "vllm:prefix_cache_hits_total") };
        const homes: string[] = [];
        for (let c = 0; c < 4; c++) {
            const q0 = await counters(replicas(), "vllm:prefix_cache_queries_total");
            const h0 = await counters(replicas(), "vllm:prefix_cache_hits_total");
            for (let turn = 0; turn < 3; turn++) {
                const r = await call("/v1/chat/completions", { model: MODEL, max_tokens: 2, messages: turns(c, turn) });
                expect(r.status).toBe(200);
                // A user reads the answer before the next turn. (Sent at once, the next turn can reach the
                // balancer before it has counted the last one done: with one request in flight in the
                // whole fleet, the load bound then sends it elsewhere.)
                await sleep(250);
            }
            const served = Object.entries(diff(await counters(replicas(), "vllm:prefix_cache_queries_total"), q0)).filter(([, d]) => d > 0);
            expect(served.map(([name]) => name), `conversation ${c} was served by one replica`).toHaveLength(1);
            const home = served[0]![0];
            homes.push(home);
            // Its second and third turns each find the opening's three full blocks (of 128 tokens) cached there.
            const hits = diff(await counters(replicas(), "vllm:prefix_cache_hits_total"), h0)[home]!;
            expect(hits, `prefix-cache hits of conversation ${c} on ${home}`).toBeGreaterThanOrEqual(2 * 3 * 128);
        }
        const queries = sum(diff(await counters(replicas(), "vllm:prefix_cache_queries_total"), before.queries));
        const hits = sum(diff(await counters(replicas(), "vllm:prefix_cache_hits_total"), before.hits));
        note(`cache_aware: 4 conversations x 3 turns went to ${homes.join(", ")}; vLLM's prefix cache: ${hits} of ${queries} prompt tokens hit (${((100 * hits) / queries).toFixed(0)}%)`);
    });

    it("stops generating for a client that goes away: vLLM aborts the request (not counted as finished) and frees its slot", async () => {
        const finishedBefore = sum(await counters(replicas(), "vllm:request_success_total"));
        const tokensBefore = sum(await counters(replicas(), "vllm:generation_tokens_total"));
        const s = stream(`${front.url}/v1/completions`, { model: MODEL, stream: true, max_tokens: 1000, ignore_eos: true, prompt: "a long story" }, { headers: front.headers, agent: false });
        await s.firstEvent;
        s.abort();
        await waitFor("vLLM to free the aborted request's slot", 30_000, async () => (sum(await counters(replicas(), "vllm:num_requests_running")) === 0 ? true : undefined), 200);
        await sleep(1000);
        const generated = sum(await counters(replicas(), "vllm:generation_tokens_total")) - tokensBefore;
        const finished = sum(await counters(replicas(), "vllm:request_success_total")) - finishedBefore;
        note(`client abort: vLLM generated ${generated} of the 1000 tokens asked for, and counted ${finished} request(s) as finished`);
        expect(generated).toBeLessThan(1000);
        // vLLM 0.32 records no finished-request stats for a request its client aborted.
        expect(finished).toBe(0);
    });

    it("loads and unloads a LoRA adapter made locally on every replica; the balancer serves it while it is loaded", async () => {
        for (const r of replicas()) {
            const loaded = await direct(r.url, "/v1/load_lora_adapter", { lora_name: "lora-b", lora_path: "/opt/models/lora-b" });
            expect([r.name, loaded.status, loaded.text]).toEqual([r.name, 200, "Success: LoRA adapter 'lora-b' added successfully."]);
        }
        // The balancer does not forward vLLM's admin paths.
        expect((await call("/v1/load_lora_adapter", { lora_name: "x", lora_path: "/opt/models/lora-b" })).status).toBe(404);
        const served = await Promise.all([0, 1, 2, 3].map(() => call("/v1/completions", { model: "lora-b", prompt: "hello", max_tokens: 4 })));
        expect(served.map((r) => [r.status, r.json.model])).toEqual(Array(4).fill([200, "lora-b"]));
        const base = await call("/v1/completions", { model: MODEL, prompt: "hello", max_tokens: 4, temperature: 0 });
        const adapted = await call("/v1/completions", { model: "lora-a", prompt: "hello", max_tokens: 4, temperature: 0 });
        expect(adapted.json.choices[0].text, "an adapter changes the output").not.toBe(base.json.choices[0].text);
        for (const r of replicas()) {
            expect((await direct(r.url, "/v1/unload_lora_adapter", { lora_name: "lora-b" })).status).toBe(200);
        }
        const gone = await call("/v1/completions", { model: "lora-b", prompt: "hello", max_tokens: 4 });
        expect([gone.status, gone.json.error.message]).toEqual([404, "The model `lora-b` does not exist. Valid aliases: tiny."]);
        note("LoRA: lora-b loaded on 3 replicas and served through the balancer, then unloaded (404 after); lora-a's output differs from the base model's");
    });

    it("monitoring: every Prometheus rule and dashboard query returns data from vLLM's own metrics; scripts/status shows every replica", async () => {
        await waitFor("Prometheus to scrape every replica", 120_000, async () => {
            const t = await PROMETHEUS.targets();
            return ["vllm0", "vllm1", "vllm2"].every((n) => t[`vllm/${n}`] === "up") ? true : undefined;
        }, 1000);
        load = new SteadyLoad(front, MODEL, 2, 24, 60, 300);
        load.start();
        await sleep(15_000);
        const empty: string[] = [];
        for (const q of dashboardQueries()) {
            if ((await PROMETHEUS.waitForValues(q.expr, 60_000).catch(() => [])).length === 0) {
                empty.push(`${q.panel}: ${q.expr}`);
            }
        }
        const rules = [...REPLICA_RECORDING_RULES, ...FLEET_RECORDING_RULES].map((r) => r.record);
        const emptyRules: string[] = [];
        for (const rule of rules) {
            if ((await PROMETHEUS.waitForValues(rule, 60_000).catch(() => [])).length === 0) {
                emptyRules.push(rule);
            }
        }
        // The alerts hold no data until they fire: every vLLM series they (and the rest) read must exist.
        const exprs = [...alertRules().map((a) => a.expr), ...rules, ...[...REPLICA_RECORDING_RULES, ...FLEET_RECORDING_RULES].map((r) => r.expr), ...dashboardQueries().map((q) => q.expr)];
        const series = [...new Set(exprs.flatMap((e) => e.match(/vllm:[a-z0-9_]+/g) ?? []))].filter((name) => !rules.includes(name));
        const missing: string[] = [];
        for (const name of series) {
            if ((await PROMETHEUS.query(`count({__name__="${name}"})`)).length === 0) {
                missing.push(name);
            }
        }
        note(`monitoring: the ${series.length} vLLM series the rules, alerts and dashboard read: ${series.join(", ")}`);
        expect(missing, "vLLM series read by a rule, an alert or the dashboard that real vLLM does not have").toEqual([]);
        expectNothingLost(await load.stop());
        load = undefined;
        note(`monitoring: ${dashboardQueries().length - empty.length} of ${dashboardQueries().length} dashboard queries and ${rules.length - emptyRules.length} of ${rules.length} recording rules returned data from real vLLM`);
        expect(empty).toEqual([]);
        expect(emptyRules).toEqual([]);
        const outputsFile = path.join(stack.stateDir, "outputs.json");
        fs.writeFileSync(outputsFile, JSON.stringify(outputs));
        const status = await new Promise<string>((resolve, reject) =>
            execFile(path.join(REPO, "scripts", "status"), [STACK, "--outputs", outputsFile], { encoding: "utf8" }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stdout}${stderr}`)) : resolve(stdout))),
        );
        note(`scripts/status vllm:\n${status.replace(/^/gm, "      ")}`);
        for (const name of ["vllm0", "vllm1", "vllm2"]) {
            expect(status).toMatch(new RegExp(`^${name}\\s+in\\s+healthy`, "m"));
        }
    });

    it("scales 3 → 2 under load with vLLM's default SIGTERM (which aborts what it serves): drained first, so nothing is aborted", async () => {
        stack.editConfig((c) => (c.replicas = "2"));
        const removedLog = followLogs("vllm-vllm2");
        const down = await upUnderLoad("3 → 2 replicas");
        expectNothingLost(down.counts);
        expect(down.sampler.fewest).toBeGreaterThanOrEqual(2);
        expect(down.output).toMatch(/vllm2: drained/);
        const log = await removedLog.done;
        expect(log).toMatch(/stopping engine client mode=abort/);
        note(`  vllm2's own log at SIGTERM: ${/.*stopping engine client mode=\S+.*/.exec(log)?.[0].trim()}`);
    });

    it("rolls a change of vllmArgs (--shutdown-timeout 20) one replica at a time under load: nothing lost, never fewer than 1 of 2 in rotation", async () => {
        stack.editConfig((c) => (c.vllmArgs = [...BASE_ARGS, "--shutdown-timeout", "20"]));
        const roll = await upUnderLoad("vllmArgs rollout");
        expectNothingLost(roll.counts);
        expect(roll.sampler.fewest).toBe(1);
        expect(roll.sampler.unanswered).toBe(0);
        for (const r of replicas()) {
            expect(JSON.parse(await docker(["inspect", "-f", "{{json .Args}}", r.container])), r.name).toEqual(expect.arrayContaining(["--shutdown-timeout", "20"]));
        }
    });

    it("scales 2 → 1 under load with --shutdown-timeout (vLLM drains on SIGTERM): the balancer's drain waits for vLLM's running requests first", async () => {
        stack.editConfig((c) => (c.replicas = "1"));
        const removedLog = followLogs("vllm-vllm1");
        const down = await upUnderLoad("2 → 1 replicas", 200);
        expectNothingLost(down.counts);
        expect(down.output).toMatch(/vllm1: drained/);
        note(`  ${/.*vllm1: drained.*/.exec(down.output)?.[0].trim()}`);
        const log = await removedLog.done;
        expect(log).toMatch(/stopping engine client mode=drain timeout=20/);
        note(`  vllm1's own log at SIGTERM: ${/.*stopping engine client mode=\S+.*/.exec(log)?.[0].trim()}`);
    });
});
