/**
 * The stand-in's engine, against the real process: vLLM's automatic prefix caching (16-token blocks,
 * chained hashes, hits capped one token short of the prompt, an LRU free queue that evicts a finished
 * request's last blocks first, referenced blocks never evicted) and one scheduler per replica (prefill
 * cost per uncached token, a token budget per step, prefills queued behind each other, preemption).
 *
 * Prompts are completions prompts of text: the stand-in cuts text into 4-character tokens, so a block of
 * 16 tokens is 64 characters. `text(tag, n)` builds n tokens whose every block is unique to its tag and
 * index: 64 hex characters of sha256(tag#i).
 */
import { createHash } from "crypto";
import { afterAll, describe, expect, it } from "vitest";
import { StandIn, gaps, metricValue, percentile, request, scrape, sleep, startStandIn, stopAll, stream, tokenEvents, waitFor } from "../support";

const BLOCK = 16;

const started: StandIn[] = [];
async function standIn(args: string[]): Promise<StandIn> {
    const s = await startStandIn({ args: ["--disable-uvicorn-access-log", ...args] });
    started.push(s);
    return s;
}
afterAll(() => stopAll(started));

function block(tag: string, i: number): string {
    return createHash("sha256").update(`${tag}#${i}`).digest("hex"); // 64 characters: 16 tokens
}

/** `tokens` tokens of text; block i is block(tag, i). */
function text(tag: string, tokens: number): string {
    let s = "";
    for (let i = 0; s.length < tokens * 4; i += 1) {
        s += block(tag, i);
    }
    return s.slice(0, tokens * 4);
}

/** One completion; its cached tokens as the stand-in reports them with --enable-prompt-tokens-details. */
async function cachedTokens(s: StandIn, prompt: string, maxTokens = 1): Promise<number> {
    const r = await request(`${s.url}/v1/completions`, { body: { prompt, max_tokens: maxTokens } });
    expect(r.status).toBe(200);
    return r.json.usage.prompt_tokens_details.cached_tokens as number;
}

/** Time to first token of a streamed completion, in ms, as the client sees it. */
async function ttft(s: StandIn, prompt: string, maxTokens = 1): Promise<number> {
    const r = await stream(`${s.url}/v1/completions`, { prompt, max_tokens: maxTokens, stream: true }, { agent: false }).result;
    expect(r.done).toBe(true);
    return tokenEvents(r)[0]!.at - r.sentAt;
}

async function kvCache(s: StandIn): Promise<{ free_blocks: number; usable_blocks: number; cached_blocks: number; evictions: number }> {
    return (await request(`${s.url}/standin/kv-cache`)).json;
}

/** Waits until the stand-in reports `value` for a gauge (requests arrive late on a busy machine). */
async function gauge(s: StandIn, name: string, value: number): Promise<void> {
    await waitFor(`${name} to be ${value}`, 3000, async () => metricValue(await scrape(s), name) === value, 10);
}

/** Fast engine: no simulated time, per-request hit counts in the usage block. */
const INSTANT = ["--time-scale", "0", "--enable-prompt-tokens-details"];

describe("stand-in prefix cache: hits and misses", () => {
    it("hits a repeated prompt's full blocks, one token short of the prompt, and counts queries and hits as vLLM does", async () => {
        const s = await standIn(INSTANT);
        const prompts = [text("a", 100), text("b", 64), text("c", 65)];
        const first = [];
        const second = [];
        for (const p of prompts) {
            first.push(await cachedTokens(s, p));
            second.push(await cachedTokens(s, p));
        }
        expect(first).toEqual([0, 0, 0]); // cold
        // Whole blocks only, and the last token is always recomputed: cached <= floor((n - 1) / 16) * 16.
        expect(second).toEqual([96, 48, 64]);
        const m = await scrape(s);
        // Queries count every prompt token looked up, hits every cached one.
        expect(metricValue(m, "vllm:prefix_cache_queries_total")).toBe(2 * (100 + 64 + 65));
        expect(metricValue(m, "vllm:prefix_cache_hits_total")).toBe(96 + 48 + 64);
        expect(metricValue(m, "vllm:prompt_tokens_total")).toBe(2 * (100 + 64 + 65)); // every prompt token, cached or not
    });

    it("keys a block by its whole prefix (chained hashes): a changed early block invalidates every later one", async () => {
        const s = await standIn(INSTANT);
        const base = text("d", 80); // blocks d0..d4
        expect(await cachedTokens(s, base)).toBe(0);
        const changed = (i: number) => base.slice(0, 64 * i) + block("other", i) + base.slice(64 * (i + 1));
        // Block 1 differs: blocks 2-4 are identical text but follow a different prefix, so only block 0 hits.
        expect(await cachedTokens(s, changed(1))).toBe(16);
        // Block 3 differs: blocks 0-2 hit.
        expect(await cachedTokens(s, changed(3))).toBe(48);
        // Blocks 1-4 of another cached prompt after block 0 of this one: each block's text is cached at
        // its position, but not after this prefix.
        const other = text("g", 80);
        expect(await cachedTokens(s, other)).toBe(0);
        expect(await cachedTokens(s, `${base.slice(0, 64)}${other.slice(64)}zzzz`)).toBe(16);
        // The longest cached chain: the whole 80-token prompt under a longer one.
        expect(await cachedTokens(s, base + text("e", 20))).toBe(80);
        // Token ids are matched the same way.
        const ids = Array.from({ length: 40 }, (_, i) => 1000 + i);
        expect((await request(`${s.url}/v1/completions`, { body: { prompt: ids, max_tokens: 1 } })).json.usage.prompt_tokens_details.cached_tokens).toBe(0);
        expect((await request(`${s.url}/v1/completions`, { body: { prompt: ids, max_tokens: 1 } })).json.usage.prompt_tokens_details.cached_tokens).toBe(32);
    });

    it("hits the shared start of two chats rendered with the chat template, up to the last full block before they differ", async () => {
        const s = await standIn(INSTANT);
        const system = { role: "system", content: text("sys", 150) };
        const chat = async (question: string) =>
            (await request(`${s.url}/v1/chat/completions`, { body: { messages: [system, { role: "user", content: question }], max_tokens: 1 } })).json.usage;
        const a = await chat("What is the first question?");
        const b = await chat("And what is the second?");
        expect(a.prompt_tokens_details.cached_tokens).toBe(0);
        // ChatML: the rendered prompts agree up to the user's content; whole 4-character tokens, whole blocks.
        const shared = "<|im_start|>system\n".length + system.content.length + "<|im_end|>\n<|im_start|>user\n".length;
        expect(b.prompt_tokens_details.cached_tokens).toBe(Math.floor(Math.floor(shared / 4) / BLOCK) * BLOCK);
        expect(b.prompt_tokens_details.cached_tokens).toBeGreaterThan(140);
    });

    it("caches nothing with --no-enable-prefix-caching, and counts no queries", async () => {
        const s = await standIn([...INSTANT, "--no-enable-prefix-caching"]);
        const p = text("f", 100);
        expect(await cachedTokens(s, p)).toBe(0);
        expect(await cachedTokens(s, p)).toBe(0);
        const m = await scrape(s);
        expect(metricValue(m, "vllm:prefix_cache_queries_total")).toBe(0);
        expect(metricValue(m, "vllm:prefix_cache_hits_total")).toBe(0);
        expect(m).toMatch(/vllm:cache_config_info\{[^}]*enable_prefix_caching="False"/);
    });
});

describe("stand-in prefix cache: a finite pool with vLLM's LRU eviction", () => {
    // 13 blocks, one of them vLLM's null block: 12 usable, 192 tokens.
    const SMALL_POOL = [...INSTANT, "--num-gpu-blocks-override", "13", "--max-model-len", "192"];

    it("evicts the least recently freed blocks when the pool runs out, and a finished request's last blocks before its first", async () => {
        const s = await standIn(SMALL_POOL);
        // Three 33-token prompts: 3 blocks each while they run, 2 full (cached) blocks each afterwards.
        const p = [text("p1", 33), text("p2", 33), text("p3", 33)];
        for (const prompt of p) {
            expect(await cachedTokens(s, prompt)).toBe(0);
        }
        expect((await kvCache(s)).evictions).toBe(0);
        // An 81-token prompt takes 6 blocks from the free queue's head: the 4 that were never filled, then
        // p1's two cached blocks, the least recently freed.
        expect(await cachedTokens(s, text("x", 81))).toBe(0);
        expect((await kvCache(s)).evictions).toBe(2);
        expect(await cachedTokens(s, p[2]!)).toBe(32);
        expect(await cachedTokens(s, p[1]!)).toBe(32);
        expect(await cachedTokens(s, p[0]!)).toBe(0);

        const t = await standIn(SMALL_POOL);
        for (const prompt of p) {
            await cachedTokens(t, prompt);
        }
        // 5 blocks: one cached block of p1 goes, its last one (freed first in its request's reverse order).
        await cachedTokens(t, text("x", 65));
        expect((await kvCache(t)).evictions).toBe(1);
        expect(await cachedTokens(t, p[0]!)).toBe(16);
    });

    it("never evicts the blocks of a running request: a request that does not fit waits, below --max-num-seqs", async () => {
        const s = await standIn([...SMALL_POOL, "--time-scale", "1", "--itl-ms", "40", "--prefill-overhead-ms", "5", "--prefill-ms-per-token", "0"]);
        // 81 + 40 tokens: up to 8 blocks while it runs, for about 1.6 s.
        const long = stream(`${s.url}/v1/completions`, { prompt: text("r1", 81), max_tokens: 40, stream: true }, { agent: false });
        await long.firstEvent;
        // 113 tokens: 8 blocks. Together 14 or more blocks of 12: it waits for the first to finish.
        const blocked = stream(`${s.url}/v1/completions`, { prompt: text("r2", 113), max_tokens: 2, stream: true }, { agent: false });
        await gauge(s, "vllm:num_requests_waiting", 1);
        const m = await scrape(s);
        expect(metricValue(m, "vllm:num_requests_running")).toBe(1);
        expect(metricValue(m, "vllm:num_requests_waiting")).toBe(1);
        const usage = metricValue(m, "vllm:kv_cache_usage_perc");
        expect(usage).toBeGreaterThanOrEqual(6 / 12);
        expect(usage).toBeLessThanOrEqual(8 / 12);
        const [a, b] = await Promise.all([long.result, blocked.result]);
        expect(tokenEvents(a)).toHaveLength(40);
        expect(tokenEvents(b)[0]!.at).toBeGreaterThan(tokenEvents(a).at(-1)!.at);
        const after = await scrape(s);
        expect(metricValue(after, "vllm:num_preemptions_total")).toBe(0); // a waiting request preempts nobody
        expect(metricValue(after, "vllm:kv_cache_usage_perc")).toBe(0); // cached blocks are free blocks
        expect((await kvCache(s)).cached_blocks).toBeGreaterThan(0);
    });

    it("preempts the last admitted request when running ones outgrow the pool, and finishes it later", async () => {
        const s = await standIn([...SMALL_POOL, "--time-scale", "1", "--itl-ms", "5", "--prefill-overhead-ms", "5", "--prefill-ms-per-token", "0"]);
        // Each grows to 33 + 100 tokens (9 blocks); both cannot, in 12.
        const first = stream(`${s.url}/v1/completions`, { prompt: text("q1", 33), max_tokens: 100, stream: true }, { agent: false });
        await first.firstEvent;
        const second = stream(`${s.url}/v1/completions`, { prompt: text("q2", 33), max_tokens: 100, stream: true }, { agent: false });
        const [a, b] = await Promise.all([first.result, second.result]);
        expect(tokenEvents(a)).toHaveLength(100);
        expect(tokenEvents(b)).toHaveLength(100);
        expect(metricValue(await scrape(s), "vllm:num_preemptions_total")).toBeGreaterThanOrEqual(1);
        // The preempted one stalled until the other finished.
        expect(Math.max(...gaps(tokenEvents(b)))).toBeGreaterThan(20 * 5);
        expect(tokenEvents(b).at(-1)!.at).toBeGreaterThan(tokenEvents(a).at(-1)!.at);
    });
});

describe("stand-in scheduler: time", () => {
    // 20 ms per prefilling step plus 1 ms per uncached prompt token: slow enough to measure on a busy machine.
    const MEASURABLE = ["--prefill-overhead-ms", "20", "--prefill-ms-per-token", "1", "--itl-ms", "10"];

    it("takes longer to the first token the more uncached tokens there are, and a repeated prompt is faster by its cached share", async () => {
        const s = await standIn(MEASURABLE);
        const short = await ttft(s, text("t200", 200)); // ~220 ms
        const long = await ttft(s, text("t800", 800)); // ~820 ms
        const repeat = await ttft(s, text("t800", 800)); // 784 cached: ~36 ms
        expect(long).toBeGreaterThan(600);
        expect(long).toBeGreaterThan(2.5 * short);
        expect(repeat).toBeLessThan(0.25 * long);

        const noCache = await standIn([...MEASURABLE, "--no-enable-prefix-caching"]);
        const cold = await ttft(noCache, text("t800", 800));
        const again = await ttft(noCache, text("t800", 800));
        expect(again).toBeGreaterThan(0.7 * cold);
    });

    it("queues a prefill behind the one under way, and holds up running streams' tokens while prefills run", async () => {
        const s = await standIn([...MEASURABLE, "--itl-ms", "20"]);
        const decode = stream(`${s.url}/v1/completions`, { prompt: "decoding", max_tokens: 80, stream: true }, { agent: false });
        await decode.firstEvent;
        await sleep(100);
        const a = stream(`${s.url}/v1/completions`, { prompt: text("qa", 500), max_tokens: 1, stream: true }, { agent: false });
        await gauge(s, "vllm:num_requests_running", 2); // A's prefill step has begun
        const b = stream(`${s.url}/v1/completions`, { prompt: text("qb", 500), max_tokens: 1, stream: true }, { agent: false });
        const [ra, rb, rd] = await Promise.all([a.result, b.result, decode.result]);
        const ttftA = tokenEvents(ra)[0]!.at - ra.sentAt; // ~540 ms: one step
        const ttftB = tokenEvents(rb)[0]!.at - rb.sentAt; // the rest of A's step, then its own ~540 ms
        expect(ttftA).toBeGreaterThan(400);
        expect(ttftB).toBeGreaterThan(1.4 * ttftA);
        const decodeGaps = gaps(tokenEvents(rd));
        expect(percentile(decodeGaps, 50)).toBeLessThan(60);
        expect(Math.max(...decodeGaps)).toBeGreaterThan(400); // a token waited for a 500-token prefill
    });

    it("splits prefills by --max-num-batched-tokens: two prompts waiting together share a step only if the budget allows", async () => {
        /** Sends A and B while a third prefill runs, so that both wait for the same next step. */
        const firstTokens = async (s: StandIn): Promise<[number, number]> => {
            const busy = stream(`${s.url}/v1/completions`, { prompt: text("busy", 300), max_tokens: 1, stream: true }, { agent: false });
            await gauge(s, "vllm:num_requests_running", 1); // its 320 ms step has begun
            const a = stream(`${s.url}/v1/completions`, { prompt: text("ba", 500), max_tokens: 1, stream: true }, { agent: false });
            const b = stream(`${s.url}/v1/completions`, { prompt: text("bb", 500), max_tokens: 1, stream: true }, { agent: false });
            const [ra, rb] = await Promise.all([a.result, b.result, busy.result]);
            return [tokenEvents(ra)[0]!.at, tokenEvents(rb)[0]!.at];
        };
        // The default budget (8,192) holds both: one step of 1,000 tokens, first tokens together.
        const [a1, b1] = await firstTokens(await standIn(MEASURABLE));
        expect(Math.abs(b1 - a1)).toBeLessThan(150);
        // A budget of 512: A's 500 tokens and 12 of B's, then B's other 488 in a step of their own.
        const budget = await standIn([...MEASURABLE, "--max-num-batched-tokens", "512"]);
        const [a2, b2] = await firstTokens(budget);
        expect(b2 - a2).toBeGreaterThan(350);
        // Three steps produced a first token: the busy prompt's, A's, B's.
        expect(metricValue(await scrape(budget), "vllm:iteration_tokens_total_count")).toBe(3);
    });

    it("makes cache-blind routing cost prefill: one replica per shared prefix beats alternating between two", async () => {
        const [x, y] = [await standIn(MEASURABLE), await standIn(MEASURABLE)];
        const prefix = text("shared", 1000);
        const ask = (i: number) => prefix + text(`q${i}`, 16);
        let affine = 0;
        for (let i = 0; i < 6; i += 1) {
            affine += await ttft(x, ask(i));
        }
        const prefix2 = text("shared-2", 1000);
        let alternating = 0;
        for (let i = 0; i < 6; i += 1) {
            alternating += await ttft(i % 2 === 0 ? x : y, prefix2 + text(`q${i}`, 16));
        }
        // One cold prefill of ~1,000 tokens against two: ~1.3 s against ~2.2 s in all.
        expect(affine).toBeLessThan(0.75 * alternating);
    });

    it("makes a burst of uncached prompts wait in the queue (vllm:num_requests_waiting, request_queue_time) where cached ones are admitted at once", async () => {
        const args = ["--prefill-overhead-ms", "20", "--prefill-ms-per-token", "0.2", "--itl-ms", "10"];
        /** Six 3,000-token prompts at once; what waited, seen from the metrics. */
        const burst = async (s: StandIn, prompts: string[]) => {
            const handles = prompts.map((prompt) => stream(`${s.url}/v1/completions`, { prompt, max_tokens: 1, stream: true }, { agent: false }));
            await sleep(300);
            const waitingDuring = metricValue(await scrape(s), "vllm:num_requests_waiting");
            await Promise.all(handles.map((h) => h.result));
            return { waitingDuring, queueSeconds: metricValue(await scrape(s), "vllm:request_queue_time_seconds_sum") };
        };
        // Cache-blind: six different prefixes, 18,000 uncached tokens against a budget of 8,192 a step.
        const blind = await burst(await standIn(args), [0, 1, 2, 3, 4, 5].map((i) => text(`cold${i}`, 3000)));
        // Cache-aware: one prefix already cached here, 8 uncached tokens each.
        const aware = await standIn(args);
        const prefix = text("warm", 2992);
        await ttft(aware, prefix);
        const warmQueue = metricValue(await scrape(aware), "vllm:request_queue_time_seconds_sum");
        const cached = await burst(aware, [0, 1, 2, 3, 4, 5].map((i) => prefix + text(`suffix${i}`, 8)));
        expect(blind.waitingDuring).toBeGreaterThan(0);
        expect(cached.waitingDuring).toBe(0);
        expect(blind.queueSeconds).toBeGreaterThan(1.0);
        expect(cached.queueSeconds - warmQueue).toBeLessThan(0.3 * blind.queueSeconds);
    });

    it("multiplies every simulated duration by --time-scale", async () => {
        const normal = await standIn(MEASURABLE);
        const fast = await standIn([...MEASURABLE, "--time-scale", "0.2"]);
        const atNormal = await ttft(normal, text("scale", 800), 20);
        const atFast = await ttft(fast, text("scale", 800), 20);
        expect(atFast).toBeLessThan(0.45 * atNormal);
        const generation = async (s: StandIn) => {
            const r = await stream(`${s.url}/v1/completions`, { prompt: "x", max_tokens: 30, stream: true }, { agent: false }).result;
            return tokenEvents(r).at(-1)!.at - tokenEvents(r)[0]!.at;
        };
        expect(await generation(fast)).toBeLessThan(0.6 * (await generation(normal)));
    });
});

describe("stand-in scheduler: --max-num-seqs and batching", () => {
    it("queues requests beyond --max-num-seqs as waiting", async () => {
        const s = await standIn(["--itl-ms", "20", "--max-num-seqs", "1"]);
        const a = stream(`${s.url}/v1/completions`, { prompt: "a", max_tokens: 15, stream: true });
        await a.firstEvent;
        const b = stream(`${s.url}/v1/completions`, { prompt: "b", max_tokens: 2, stream: true });
        await sleep(60);
        const m = await scrape(s);
        expect(metricValue(m, "vllm:num_requests_running")).toBe(1);
        expect(metricValue(m, "vllm:num_requests_waiting")).toBe(1);
        const [ra, rb] = await Promise.all([a.result, b.result]);
        // b's first token comes only after a finished.
        expect(tokenEvents(rb)[0]!.at).toBeGreaterThan(tokenEvents(ra).at(-1)!.at);
    });

    it("slows every token down as the batch grows (--batch-slowdown)", async () => {
        const s = await standIn(["--itl-ms", "20", "--batch-slowdown", "0.5"]);
        const alone = await stream(`${s.url}/v1/completions`, { prompt: "a", max_tokens: 10, stream: true }).result;
        const together = await Promise.all([0, 1, 2, 3, 4].map(() => stream(`${s.url}/v1/completions`, { prompt: "a", max_tokens: 10, stream: true }).result));
        const gapAlone = percentile(gaps(tokenEvents(alone)), 50);
        const gapTogether = percentile(
            together.flatMap((r) => gaps(tokenEvents(r))),
            50,
        );
        // 5 decoding together: 20 ms * (1 + 0.5 * 4) = 60 ms a step.
        expect(gapAlone).toBeGreaterThan(15);
        expect(gapAlone).toBeLessThan(35);
        expect(gapTogether).toBeGreaterThan(45);
        expect(gapTogether).toBeLessThan(90);
    });
});
