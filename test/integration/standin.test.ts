/**
 * The stand-in vLLM server itself: it must behave like `vllm serve` on the wire, or the nginx tests
 * prove nothing. Pain points from /work/shared/notes/vllm.md are cited by issue number.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import {
    StandIn,
    freePort,
    gaps,
    metricValue,
    portOpen,
    request,
    scrape,
    sleep,
    startStandIn,
    stopAll,
    stream,
    tokenEvents,
} from "../support";

const started: StandIn[] = [];
async function standIn(...args: Parameters<typeof startStandIn>): Promise<StandIn> {
    const s = await startStandIn(...args);
    started.push(s);
    return s;
}
afterAll(() => stopAll(started));

describe("stand-in: lifecycle", () => {
    it("keeps its port closed while the model loads, then answers /health 200 with an empty body (pain point 3: production-stack#619, llm-d#300)", async () => {
        const port = await freePort();
        const t0 = performance.now();
        const s = await standIn({ port, args: ["--load-seconds", "1.5"], waitReady: false });
        await sleep(300);
        expect(await portOpen(port)).toBe(false); // refused: not listening at all, no "warming" answer
        await sleep(500);
        expect(await portOpen(port)).toBe(false);
        let openedAt = 0;
        while (performance.now() - t0 < 10000) {
            if (await portOpen(port)) {
                openedAt = performance.now() - t0;
                break;
            }
            await sleep(20);
        }
        expect(openedAt).toBeGreaterThanOrEqual(1400);
        const health = await request(`http://127.0.0.1:${port}/health`);
        expect(health.status).toBe(200);
        expect(health.text).toBe("");
        expect(s.output()).toContain(`Starting vLLM API server 0 on http://127.0.0.1:${port}`);
        expect(s.output()).toContain("Application startup complete.");
        expect(s.output()).not.toContain("Uvicorn running on");
    });

    it("takes the model positionally (as `vllm serve MODEL`) or as --model, ignores vLLM flags it does not model, and logs them", async () => {
        const a = await standIn({
            model: "meta-llama/Llama-2-7b-chat-hf",
            args: ["--tensor-parallel-size", "2", "--max-model-len", "4096", "--enable-prefix-caching", "--gpu-memory-utilization=0.9", "--dtype", "auto", "--seed", "-1"],
        });
        const models = await request(`${a.url}/v1/models`);
        expect(models.json.data.map((m: { id: string }) => m.id)).toEqual(["meta-llama/Llama-2-7b-chat-hf"]);
        expect(models.json.data[0].max_model_len).toBe(4096);
        expect(a.output()).toMatch(/ignoring vLLM args.*--tensor-parallel-size 2 --enable-prefix-caching --gpu-memory-utilization=0\.9 --dtype auto --seed -1/);

        const b = await startStandIn({ model: "--model=org/other", args: ["--served-model-name", "alias-1", "alias-2"] });
        started.push(b);
        const named = await request(`${b.url}/v1/models`);
        expect(named.json.object).toBe("list");
        expect(named.json.data.map((m: { id: string; root: string }) => [m.id, m.root])).toEqual([
            ["alias-1", "org/other"],
            ["alias-2", "org/other"],
        ]);
    });

    it("refuses a repeated `serve` (two positionals), as vLLM's argument parser does", async () => {
        const s = await standIn({ model: "serve", args: ["org/model"], waitReady: false });
        const { code } = await s.exited;
        expect(code).toBe(2);
        expect(s.output()).toContain("unrecognized arguments: org/model");
    });

    it("drains on SIGTERM: the port closes at once, in-flight streams finish, then it exits 0 (pain point 4: GIE#549, kserve#5496)", async () => {
        const s = await standIn({ args: ["--itl-ms", "50", "--disable-uvicorn-access-log"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "drain me", max_tokens: 20, stream: true });
        await h.firstEvent;
        const t0 = performance.now();
        s.proc.kill("SIGTERM");
        await sleep(150);
        expect(await portOpen(s.port)).toBe(false); // no new connections during the drain
        const r = await h.result;
        expect(r.done).toBe(true);
        expect(tokenEvents(r)).toHaveLength(20);
        const { code } = await s.exited;
        expect(code).toBe(0);
        expect(performance.now() - t0).toBeLessThan(3000);
        expect(s.output()).toContain("SIGTERM received");
    });

    it("aborts what is left when the --shutdown-timeout grace runs out, and still exits 0", async () => {
        const s = await standIn({ args: ["--itl-ms", "50", "--shutdown-timeout", "1"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "too long", max_tokens: 200, stream: true });
        await h.firstEvent;
        const t0 = performance.now();
        s.proc.kill("SIGTERM");
        const r = await h.result;
        const { code } = await s.exited;
        const took = performance.now() - t0;
        expect(r.done).toBe(false);
        expect(r.complete).toBe(false);
        expect(code).toBe(0);
        expect(took).toBeGreaterThan(900);
        expect(took).toBeLessThan(2500);
    });

    it("answers /health and /ping 503 once its engine is dead (stand-in hook POST /standin/kill-engine)", async () => {
        const s = await standIn();
        expect((await request(`${s.url}/ping`)).status).toBe(200);
        expect((await request(`${s.url}/standin/kill-engine`, { method: "POST" })).status).toBe(200);
        expect((await request(`${s.url}/health`)).status).toBe(503);
        expect((await request(`${s.url}/ping`)).status).toBe(503);
        const r = await request(`${s.url}/v1/completions`, { body: { prompt: "x" } });
        expect(r.status).toBe(500);
        expect(r.json.error.type).toBe("EngineDeadError");
    });
});

describe("stand-in: OpenAI API", () => {
    let s: StandIn;
    beforeAll(async () => {
        s = await standIn({ replicaId: "api-replica", args: ["--itl-ms", "10", "--max-model-len", "1000", "--served-model-name", "m"] });
    });

    it("sends x-replica-id on every response, errors included", async () => {
        for (const path of ["/health", "/ping", "/version", "/metrics", "/v1/models", "/nope"]) {
            expect((await request(`${s.url}${path}`)).headers["x-replica-id"]).toBe("api-replica");
        }
        expect((await request(`${s.url}/version`)).json.version).toMatch(/standin/);
    });

    it("streams completions as vLLM does: one `data: {json}` event per token, finish_reason on the last, usage chunk on request, then [DONE]", async () => {
        const r = await stream(`${s.url}/v1/completions`, { model: "m", prompt: "one two three four", max_tokens: 5, stream: true, stream_options: { include_usage: true } }).result;
        expect(r.status).toBe(200);
        expect(r.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
        expect(r.text.endsWith("data: [DONE]\n\n")).toBe(true);
        const chunks = r.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
        expect(chunks).toHaveLength(6); // 5 tokens + usage
        for (const c of chunks) {
            expect(c.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
            expect(c.id).toBe(chunks[0].id);
            expect(c.object).toBe("text_completion");
            expect(c.model).toBe("m");
        }
        expect(chunks.slice(0, 4).map((c) => c.choices[0].finish_reason)).toEqual([null, null, null, null]);
        expect(chunks[4].choices[0].finish_reason).toBe("length");
        expect(chunks.slice(0, 5).map((c) => c.choices[0].text).join("")).toBe(" The quick brown fox jumps");
        // Prompt tokens are estimated as ceil(characters / 4): 18 characters -> 5.
        expect(chunks[5]).toMatchObject({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } });
    });

    it("streams chat completions: the first chunk carries the role, then one content delta per token", async () => {
        const r = await stream(`${s.url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: "hello" }], max_tokens: 3, stream: true }).result;
        const chunks = r.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
        expect(r.done).toBe(true);
        expect(chunks).toHaveLength(4);
        expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
        expect(chunks.every((c) => c.object === "chat.completion.chunk" && /^chatcmpl-/.test(c.id))).toBe(true);
        expect(chunks.slice(1).map((c) => c.choices[0].delta.content)).toEqual([" The", " quick", " brown"]);
        expect(chunks[3].choices[0].finish_reason).toBe("length");
        expect(chunks.some((c) => "usage" in c)).toBe(false); // no usage chunk unless include_usage
    });

    it("answers non-streamed requests with the whole text and usage, honouring max_tokens (default 16)", async () => {
        const c = await request(`${s.url}/v1/completions`, { body: { model: "m", prompt: "abcdefgh", max_tokens: 7 } });
        expect(c.status).toBe(200);
        expect(c.json.object).toBe("text_completion");
        expect(c.json.choices[0].text.trim().split(" ")).toHaveLength(7);
        expect(c.json.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 7, total_tokens: 9 });
        const d = await request(`${s.url}/v1/chat/completions`, { body: { messages: [{ role: "user", content: "hi" }] } });
        expect(d.json.object).toBe("chat.completion");
        expect(d.json.model).toBe("m"); // no model given: the first served name, as vLLM does
        expect(d.json.choices[0].message.role).toBe("assistant");
        expect(d.json.usage.completion_tokens).toBe(16);
        expect(d.json.usage.prompt_tokens).toBe(1 + 4); // ceil(2/4) + 4 per message (chat template)
    });

    it("rejects an unknown model with 404, malformed JSON with 400 and an over-long request with 400, in OpenAI's error shape", async () => {
        const unknown = await request(`${s.url}/v1/completions`, { body: { model: "gpt-4", prompt: "x" } });
        expect(unknown.status).toBe(404);
        expect(unknown.json).toEqual({ error: { message: "The model `gpt-4` does not exist.", type: "NotFoundError", param: null, code: 404 } });
        const bad = await request(`${s.url}/v1/chat/completions`, { body: "{not json" });
        expect(bad.status).toBe(400);
        expect(bad.json.error.type).toBe("BadRequestError");
        const long = await request(`${s.url}/v1/completions`, { body: { prompt: "x".repeat(4000), max_tokens: 10 } });
        expect(long.status).toBe(400);
        expect(long.json.error.message).toContain("maximum context length is 1000 tokens");
    });

    it("delays the response headers by x-standin-stall-ms (stand-in knob, for read timeouts)", async () => {
        const t0 = performance.now();
        const r = await stream(`${s.url}/v1/completions`, { prompt: "x", max_tokens: 1, stream: true }, { headers: { "x-standin-stall-ms": "400" } }).result;
        expect(r.headersAt - t0).toBeGreaterThanOrEqual(390);
        expect(r.done).toBe(true);
    });
});

describe("stand-in: engine model and metrics", () => {
    it("aborts the generation as soon as the client disconnects and counts it as finished_reason=\"abort\" (pain point 6: litellm#13774, vllm#54947)", async () => {
        const s = await standIn({ args: ["--itl-ms", "20", "--served-model-name", "m"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "abort me", max_tokens: 1000, stream: true });
        await h.firstEvent;
        await sleep(100);
        const before = await scrape(s);
        expect(metricValue(before, "vllm:num_requests_running", { model_name: "m" })).toBe(1);
        expect(metricValue(before, "vllm:kv_cache_usage_perc")).toBeGreaterThan(0);
        h.abort();
        await sleep(150);
        const after = await scrape(s);
        expect(metricValue(after, "vllm:num_requests_running")).toBe(0);
        expect(metricValue(after, "vllm:kv_cache_usage_perc")).toBe(0);
        expect(metricValue(after, "vllm:request_success_total", { finished_reason: "abort", model_name: "m", engine: "0" })).toBe(1);
        const generated = metricValue(after, "vllm:generation_tokens_total");
        expect(generated).toBeLessThan(30);
        await sleep(200);
        expect(metricValue(await scrape(s), "vllm:generation_tokens_total")).toBe(generated); // stopped producing tokens
    });

    it("exposes vLLM's metric names, with model_name labels, counters and a TTFT histogram", async () => {
        const s = await standIn({ args: ["--itl-ms", "5", "--served-model-name", "m"] });
        await request(`${s.url}/v1/completions`, { body: { prompt: "12345678", max_tokens: 3 } });
        const m = await scrape(s);
        expect(m).toContain("# TYPE vllm:num_requests_running gauge");
        expect(m).toContain("# TYPE vllm:request_success_total counter");
        expect(metricValue(m, "vllm:num_requests_waiting")).toBe(0);
        expect(metricValue(m, "vllm:prompt_tokens_total", { model_name: "m" })).toBe(2);
        expect(metricValue(m, "vllm:generation_tokens_total")).toBe(3);
        expect(metricValue(m, "vllm:request_success_total", { finished_reason: "length" })).toBe(1);
        expect(metricValue(m, "vllm:request_success_total", { finished_reason: "stop" })).toBe(0);
        expect(metricValue(m, "vllm:time_to_first_token_seconds_count")).toBe(1);
        expect(metricValue(m, "vllm:time_to_first_token_seconds_bucket", { le: "+Inf" })).toBe(1);
    });

    it("queues requests beyond --max-num-seqs as waiting", async () => {
        const s = await standIn({ args: ["--itl-ms", "20", "--max-num-seqs", "1"] });
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
        const s = await standIn({ args: ["--itl-ms", "20", "--batch-slowdown", "0.5", "--disable-uvicorn-access-log"] });
        const alone = await stream(`${s.url}/v1/completions`, { prompt: "a", max_tokens: 10, stream: true }).result;
        const together = await Promise.all([0, 1, 2, 3, 4].map(() => stream(`${s.url}/v1/completions`, { prompt: "a", max_tokens: 10, stream: true }).result));
        const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
        const gapAlone = median(gaps(tokenEvents(alone)));
        const gapTogether = median(together.flatMap((r) => gaps(tokenEvents(r))));
        // 5 running: 20 ms * (1 + 0.5 * 4) = 60 ms.
        expect(gapAlone).toBeGreaterThan(15);
        expect(gapAlone).toBeLessThan(35);
        expect(gapTogether).toBeGreaterThan(45);
        expect(gapTogether).toBeLessThan(90);
    });
});

describe("stand-in: --api-key", () => {
    it("guards /v1/* with a Bearer key and leaves /health, /ping, /metrics and /version open", async () => {
        const s = await standIn({ args: ["--api-key", "k-one", "k-two"] });
        const denied = await request(`${s.url}/v1/models`);
        expect(denied.status).toBe(401);
        expect(denied.json).toEqual({ error: "Unauthorized" }); // vLLM's exact body
        expect((await request(`${s.url}/v1/models`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
        expect((await request(`${s.url}/v1/models`, { headers: { authorization: "Bearer k-one" } })).status).toBe(200);
        expect((await request(`${s.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 }, headers: { authorization: "Bearer k-two" } })).status).toBe(200);
        for (const path of ["/health", "/ping", "/metrics", "/version"]) {
            expect((await request(`${s.url}${path}`)).status).toBe(200);
        }
    });

    it("reads the key from VLLM_API_KEY too", async () => {
        const s = await standIn({ env: { VLLM_API_KEY: "from-env" } });
        expect((await request(`${s.url}/v1/models`)).status).toBe(401);
        expect((await request(`${s.url}/v1/models`, { headers: { authorization: "Bearer from-env" } })).status).toBe(200);
    });
});
