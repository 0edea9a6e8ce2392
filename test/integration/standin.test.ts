/**
 * The stand-in vLLM server itself: it must behave like `vllm serve` (vLLM 0.32.0) on the wire, or the nginx
 * tests prove nothing. Pain points from /work/shared/notes/vllm.md are cited by issue number. Its engine
 * (prefix cache, scheduler) is tested in standin.engine.test.ts, its metrics in standin.metrics.test.ts.
 */
import * as http from "http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import { StandIn, freePort, idleCloseMs, metricValue, portOpen, request, scrape, sleep, startStandIn, stopAll, stream, tokenEvents } from "../support";

const ENGINE_DEAD = "EngineCore encountered an issue. See stack trace (above) for the root cause.";

const started: StandIn[] = [];
async function standIn(...args: Parameters<typeof startStandIn>): Promise<StandIn> {
    const s = await startStandIn(...args);
    started.push(s);
    return s;
}
afterAll(() => stopAll(started));

describe("stand-in: start-up", () => {
    it("keeps its port closed while the model loads, then answers /health 200 with an empty body (pain point 3: production-stack#619, llm-d#300)", async () => {
        const port = await freePort();
        const t0 = performance.now();
        await standIn({ port, args: ["--load-seconds", "1.5"], waitReady: false });
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
    });

    it("logs vLLM's start-up lines, with vLLM's process prefix, and never uvicorn's \"Uvicorn running on\"", async () => {
        const s = await standIn();
        const out = s.output();
        const pid = s.proc.pid;
        expect(out).toContain(`(APIServer pid=${pid}) INFO`);
        expect(out).toMatch(new RegExp(`\\(APIServer pid=${pid}\\) INFO \\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\[entry\\.py\\] Starting vLLM server on http://127\\.0\\.0\\.1:${s.port}\\n`));
        expect(out).toMatch(/\[launcher\.py\] Route: \/v1\/completions, Methods: POST/);
        expect(out).toMatch(/GPU KV cache size: 262,144 tokens/);
        // uvicorn's own lines follow vLLM's, in this order, without vLLM's process prefix (as in 0.32.0).
        const lines = ["Started server process", "Waiting for application startup.", "Application startup complete."].map((l) => out.indexOf(`\nINFO:     ${l}`));
        expect(lines.every((at) => at > out.indexOf("Starting vLLM server on"))).toBe(true);
        expect([...lines].sort((a, b) => a - b)).toEqual(lines);
        expect(out).not.toContain("Uvicorn running on");
    });

    it("takes the model positionally (as `vllm serve MODEL`) or as --model, ignores vLLM flags it does not model, and logs them", async () => {
        const a = await standIn({
            model: "meta-llama/Llama-2-7b-chat-hf",
            args: ["--tensor-parallel-size", "2", "--max-model-len", "4096", "--enable-prefix-caching", "--gpu-memory-utilization=0.9", "--dtype", "auto", "--seed", "-1"],
        });
        const models = await request(`${a.url}/v1/models`);
        expect(models.json.data.map((m: { id: string }) => m.id)).toEqual(["meta-llama/Llama-2-7b-chat-hf"]);
        expect(models.json.data[0].max_model_len).toBe(4096);
        // --enable-prefix-caching is modelled, so it is not among the ignored flags.
        expect(a.output()).toMatch(/ignoring vLLM args the stand-in does not model: --tensor-parallel-size 2 --gpu-memory-utilization=0\.9 --dtype auto --seed -1\n/);
        expect(a.output()).toMatch(/non-default args: .*"enable_prefix_caching":true/);

        const b = await standIn({ model: "--model=org/other", args: ["--served-model-name", "alias-1", "alias-2"] });
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

    it("refuses to start when one request of --max-model-len cannot fit in the KV cache, as vLLM does", async () => {
        const s = await standIn({ args: ["--max-model-len", "4096", "--num-gpu-blocks-override", "256"], waitReady: false });
        const { code } = await s.exited;
        expect(code).toBe(1);
        expect(s.output()).toMatch(/max seq len \(4096\).*holds 4080 \(256 blocks of 16 tokens, one kept aside\)/);
        const fits = await standIn({ args: ["--max-model-len", "4080", "--num-gpu-blocks-override", "256"] });
        expect((await request(`${fits.url}/health`)).status).toBe(200);
    });
});

describe("stand-in: SIGTERM (pain point 4: GIE#549, kserve#5496)", () => {
    it("aborts in-flight requests by default, as vLLM 0.32.0 does: a stream ends with finish_reason \"abort\" and [DONE], a plain request gets 200 \"abort\", the port closes, it exits 0 at once", async () => {
        const s = await standIn({ args: ["--itl-ms", "20", "--disable-uvicorn-access-log"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "abort me on stop", max_tokens: 200, stream: true, stream_options: { include_usage: true } }, { agent: false });
        const plain = request(`${s.url}/v1/chat/completions`, { agent: false, body: { messages: [{ role: "user", content: "abort me too" }], max_tokens: 200 } });
        await h.firstEvent;
        const t0 = performance.now();
        s.proc.kill("SIGTERM");
        const r = await h.result;
        const p = await plain;
        const { code } = await s.exited;
        const took = performance.now() - t0;
        expect(r.done).toBe(true);
        expect(r.complete).toBe(true); // ended cleanly, by the server
        const chunks = r.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
        expect(chunks.at(-2).choices[0]).toMatchObject({ text: "", finish_reason: "abort" });
        expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: tokenEvents(r).length } });
        expect(tokenEvents(r).length).toBeLessThan(100);
        expect(p.status).toBe(200);
        expect(p.json.choices[0].finish_reason).toBe("abort");
        expect(p.json.usage.completion_tokens).toBeLessThan(100);
        expect(code).toBe(0);
        expect(took).toBeLessThan(1500);
        expect(await portOpen(s.port)).toBe(false);
        expect(s.output()).toContain("[launcher.py] [shutdown] API server: shutdown triggered");
        expect(s.output()).toContain("[core.py] [shutdown] EngineCore: aborting in-flight requests count=2");
        expect(s.output()).toMatch(/SIGTERM received: shutting down \(grace 0s for 2 in-flight request\(s\): aborting them\)/);
        expect(s.output()).toMatch(/Application shutdown complete\. 0 request\(s\) arrived after SIGTERM .*of the 2 in flight at SIGTERM, 0 finished and 2 were aborted\./);
        expect(s.output()).not.toContain("shutdown timeout reached");
    });

    it("drains for up to --shutdown-timeout N: the port keeps listening, in-flight streams finish, new generation requests fail with vLLM's 500", async () => {
        const s = await standIn({ args: ["--itl-ms", "30", "--shutdown-timeout", "10", "--disable-uvicorn-access-log"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "drain me", max_tokens: 30, stream: true }, { agent: false });
        await h.firstEvent;
        const t0 = performance.now();
        s.proc.kill("SIGTERM");
        await sleep(100);
        expect(await portOpen(s.port)).toBe(true); // not refused
        // vLLM 0.32.0 stops its renderer as its shutdown begins: a new request fails before it reaches the engine.
        const refused = { error: { message: "cannot schedule new futures after shutdown", type: "InternalServerError", param: null, code: 500 } };
        const late = await request(`${s.url}/v1/completions`, { agent: false, body: { prompt: "late", max_tokens: 2 } });
        expect([late.status, late.json]).toEqual([500, refused]);
        const lateStream = await stream(`${s.url}/v1/chat/completions`, { messages: [{ role: "user", content: "late" }], max_tokens: 2, stream: true }, { agent: false }).result;
        expect(lateStream.status).toBe(500); // a JSON answer, not an event stream
        expect(JSON.parse(lateStream.text)).toEqual(refused);
        expect((await request(`${s.url}/health`, { agent: false })).status).toBe(200);
        const r = await h.result;
        expect(r.done).toBe(true);
        expect(tokenEvents(r)).toHaveLength(30);
        const { code } = await s.exited;
        expect(code).toBe(0);
        expect(performance.now() - t0).toBeLessThan(5000); // it left once drained, well before 10 s
        expect(s.output()).toMatch(/SIGTERM received: shutting down \(grace 10s for 1 in-flight request\(s\): draining/);
        expect(s.output()).toContain("[core.py] [shutdown] EngineCore: draining in-flight requests count=1 timeout=10s");
        expect(s.output()).toMatch(/2 request\(s\) arrived after SIGTERM \(2 generation request\(s\) refused\); of the 1 in flight at SIGTERM, 1 finished and 0 were aborted\./);
    });

    it("aborts what is left when the --shutdown-timeout grace runs out, and still exits 0", async () => {
        const s = await standIn({ args: ["--itl-ms", "50", "--shutdown-timeout", "1"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "too long", max_tokens: 200, stream: true }, { agent: false });
        await h.firstEvent;
        const t0 = performance.now();
        s.proc.kill("SIGTERM");
        const r = await h.result;
        const { code } = await s.exited;
        const took = performance.now() - t0;
        expect(r.done).toBe(true); // what is left is aborted: finish_reason "abort", then [DONE]
        expect(JSON.parse(r.events.at(-2)!.data).choices[0].finish_reason).toBe("abort");
        expect(tokenEvents(r).length).toBeLessThan(200);
        expect(code).toBe(0);
        expect(took).toBeGreaterThan(900);
        expect(took).toBeLessThan(2500);
        expect(s.output()).toContain("shutdown timeout reached: aborting 1 request(s)");
        expect(s.output()).toMatch(/of the 1 in flight at SIGTERM, 0 finished and 1 were aborted\./);
    });
});

describe("stand-in: engine death (stand-in hook POST /standin/kill-engine)", () => {
    it("ends a running stream with vLLM's error event and [DONE], fails a plain request with 500, and exits 0 within about 5 s (vLLM's watchdog)", async () => {
        const s = await standIn({ args: ["--itl-ms", "20"] });
        const h = stream(`${s.url}/v1/completions`, { prompt: "streamed", max_tokens: 500, stream: true }, { agent: false });
        const plain = request(`${s.url}/v1/completions`, { agent: false, body: { prompt: "plain", max_tokens: 500 } });
        await h.firstEvent;
        await sleep(100);
        const t0 = performance.now();
        expect((await request(`${s.url}/standin/kill-engine`, { method: "POST", agent: false })).json).toEqual({ dead: true, exits: true });
        const r = await h.result;
        expect(r.complete).toBe(true); // ended cleanly, not a reset
        expect(r.done).toBe(true);
        // vLLM's EngineDeadError event, with Python's json.dumps spacing.
        expect(r.events.at(-2)!.data).toBe(`{"error": {"message": "${ENGINE_DEAD}", "type": "InternalServerError", "param": null, "code": 500}}`);
        const p = await plain;
        expect(p.status).toBe(500);
        expect(p.json).toEqual({ error: { message: ENGINE_DEAD, type: "InternalServerError", param: null, code: 500 } });
        const { code } = await s.exited;
        expect(code).toBe(0); // vLLM exits 0 after engine death too (vllm#48966)
        expect(performance.now() - t0).toBeLessThan(6500);
        expect(s.output()).toContain("EngineCore encountered a fatal error.");
        expect(s.output()).toMatch(/Application shutdown complete\. \(the engine is dead\)\n.*Finished server process/);
    });

    it("stays up with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH set: /health and /ping answer 503, generation 500", async () => {
        const s = await standIn({ env: { VLLM_KEEP_ALIVE_ON_ENGINE_DEATH: "1" } });
        expect((await request(`${s.url}/ping`)).status).toBe(200);
        expect((await request(`${s.url}/standin/kill-engine`, { method: "POST" })).json).toEqual({ dead: true, exits: false });
        await sleep(5600); // past the watchdog's period
        expect(s.proc.exitCode).toBeNull();
        expect((await request(`${s.url}/health`)).status).toBe(503);
        expect((await request(`${s.url}/ping`)).status).toBe(503);
        for (const streamed of [false, true]) {
            const r = await request(`${s.url}/v1/completions`, { body: { prompt: "x", stream: streamed } });
            expect(r.status).toBe(500);
            expect(r.json).toEqual({ error: { message: ENGINE_DEAD, type: "InternalServerError", param: null, code: 500 } });
        }
        expect(metricValue(await scrape(s), "http_requests_total", { handler: "/v1/completions", method: "POST", status: "5xx" })).toBe(2);
    });
});

describe("stand-in: OpenAI API", () => {
    let s: StandIn;
    beforeAll(async () => {
        s = await standIn({ replicaId: "api-replica", args: ["--itl-ms", "10", "--max-model-len", "1000", "--served-model-name", "m", "alias"] });
    });

    it("sends x-replica-id on every response, errors included, with uvicorn's server header", async () => {
        for (const path of ["/health", "/ping", "/version", "/metrics", "/v1/models", "/nope"]) {
            const r = await request(`${s.url}${path}`);
            expect(r.headers["x-replica-id"]).toBe("api-replica");
            expect(r.headers.server).toBe("uvicorn");
        }
        expect((await request(`${s.url}/version`)).json.version).toMatch(/standin/);
    });

    it("sends no Keep-Alive header on kept-alive connections (uvicorn sends none; Node would)", async () => {
        const agent = new http.Agent({ keepAlive: true });
        try {
            for (const r of [await request(`${s.url}/health`, { agent }), await request(`${s.url}/v1/completions`, { agent, body: { prompt: "x", max_tokens: 1 } })]) {
                expect(r.status).toBe(200);
                expect(r.headers["keep-alive"]).toBeUndefined();
                expect(r.headers.connection).toBe("keep-alive");
            }
        } finally {
            agent.destroy();
        }
    });

    it("closes a kept-alive connection 5 s after its last answer, as uvicorn does (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), whatever Node's own keep-alive timer does", async () => {
        const closedAfter = await idleCloseMs(Number(new URL(s.url).port));
        expect(closedAfter).toBeGreaterThanOrEqual(4900);
        expect(closedAfter).toBeLessThan(7000);
    });

    it("streams completions as vLLM does: one `data: {json}` event per token, finish_reason on the last, usage chunk on request, then [DONE]", async () => {
        const r = await stream(`${s.url}/v1/completions`, { model: "m", prompt: "one two three four", max_tokens: 5, stream: true, stream_options: { include_usage: true } }).result;
        expect(r.status).toBe(200);
        expect(r.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
        expect(r.text.endsWith("data: [DONE]\n\n")).toBe(true);
        const chunks = r.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data));
        expect(chunks).toHaveLength(6); // 5 tokens + usage
        for (const c of chunks) {
            expect(c.id).toMatch(/^cmpl-[0-9a-f]{16}$/);
            expect(c.id).toBe(chunks[0].id);
            expect(c.object).toBe("text_completion");
            expect(c.model).toBe("m");
        }
        expect(chunks.slice(0, 4).map((c) => c.choices[0].finish_reason)).toEqual([null, null, null, null]);
        expect(chunks[4].choices[0].finish_reason).toBe("length");
        expect(chunks.slice(0, 5).map((c) => c.choices[0].text).join("")).toBe(" The quick brown fox jumps");
        // One token per 4 characters: 18 characters -> 5.
        expect(chunks[5]).toMatchObject({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } });
        expect(Object.keys(chunks[5].usage)).toEqual(["prompt_tokens", "total_tokens", "completion_tokens"]); // no details in a stream
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
        expect(d.json.choices[0].message.role).toBe("assistant");
        expect(d.json.usage.completion_tokens).toBe(16);
        // The chat template (ChatML) is part of the prompt, cut into 4-character tokens like any text.
        expect(d.json.usage.prompt_tokens).toBe(Math.ceil("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n".length / 4));
    });

    it("answers with the first served name, whichever served name the client used (or none), as vLLM does", async () => {
        const viaAlias = await request(`${s.url}/v1/completions`, { body: { model: "alias", prompt: "x", max_tokens: 1 } });
        expect(viaAlias.status).toBe(200);
        expect(viaAlias.json.model).toBe("m");
        const none = await request(`${s.url}/v1/chat/completions`, { body: { messages: [{ role: "user", content: "x" }], max_tokens: 1 } });
        expect(none.json.model).toBe("m");
        const streamed = await stream(`${s.url}/v1/chat/completions`, { model: "alias", messages: [{ role: "user", content: "x" }], max_tokens: 2, stream: true }).result;
        const models = streamed.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data).model);
        expect(new Set(models)).toEqual(new Set(["m"]));
    });

    it("uses the client's X-Request-Id as the response id", async () => {
        const c = await request(`${s.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 }, headers: { "x-request-id": "client-id-1" } });
        expect(c.json.id).toBe("cmpl-client-id-1");
        const r = await stream(`${s.url}/v1/chat/completions`, { messages: [{ role: "user", content: "x" }], max_tokens: 2, stream: true }, { headers: { "x-request-id": "client-id-2" } }).result;
        const ids = r.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data).id);
        expect(new Set(ids)).toEqual(new Set(["chatcmpl-client-id-2"]));
        expect(c.headers["x-request-id"]).toBeUndefined(); // echoed only with --enable-request-id-headers
    });

    it("rejects an unknown model with 404, malformed JSON with 400 and an over-long prompt with 400, in vLLM 0.32.0's error shapes", async () => {
        const unknown = await request(`${s.url}/v1/completions`, { body: { model: "gpt-4", prompt: "x" } });
        expect(unknown.status).toBe(404);
        expect(unknown.json).toEqual({ error: { message: "The model `gpt-4` does not exist. Valid aliases: m, alias.", type: "NotFoundError", param: "model", code: 404 } });
        // FastAPI's RequestValidationError for Python's json error, as vLLM renders it.
        const bad = await request(`${s.url}/v1/chat/completions`, { body: "{not json" });
        expect(bad.status).toBe(400);
        expect(bad.json.error).toEqual({
            message: "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.1', 'msg': 'JSON decode error', 'input': '<dict of 0 items>', 'ctx': {'error': 'Expecting property name enclosed in double quotes'}}",
            type: "Bad Request",
            param: "body.1",
            code: 400,
        });
        const long = await request(`${s.url}/v1/completions`, { body: { prompt: "x".repeat(8000), max_tokens: 10 } });
        expect(long.status).toBe(400);
        expect(long.json.error).toMatchObject({ param: "input_tokens", type: "BadRequestError" });
        expect(long.json.error.message).toContain("This model's maximum context length is 1000 tokens. However, your prompt contains 2000 input tokens");
        const tooMany = await request(`${s.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1001 } });
        expect(tooMany.json.error.message).toBe("max_tokens=1001 cannot be greater than max_model_len=1000. Please request fewer output tokens. (parameter=max_tokens, value=1001)");
    });

    it("caps max_tokens at what is left of the context, as vLLM 0.32.0 does (get_max_tokens)", async () => {
        const r = await request(`${s.url}/v1/completions`, { body: { prompt: "x".repeat(3960), max_tokens: 100 } }); // 990 tokens
        expect(r.status).toBe(200);
        expect(r.json.usage).toMatchObject({ prompt_tokens: 990, completion_tokens: 10 });
        expect(r.json.choices[0].finish_reason).toBe("length");
    });

    it("delays the response headers by x-standin-stall-ms (stand-in knob, for read timeouts)", async () => {
        const t0 = performance.now();
        const r = await stream(`${s.url}/v1/completions`, { prompt: "x", max_tokens: 1, stream: true }, { headers: { "x-standin-stall-ms": "400" } }).result;
        expect(r.headersAt - t0).toBeGreaterThanOrEqual(390);
        expect(r.done).toBe(true);
    });

    it("ends every stall, however short: Node's timers can fire a millisecond before performance.now() reaches the deadline", async () => {
        // Before the stall's timer ended the stall itself, about 1 in 100 of these never answered.
        let unanswered = 0;
        for (let i = 0; i < 300; i += 1) {
            const r = await request(`${s.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 }, headers: { "x-standin-stall-ms": String(1 + (i % 7)) }, timeoutMs: 2000 }).catch(() => undefined);
            unanswered += r?.status === 200 ? 0 : 1;
        }
        expect(unanswered).toBe(0);
    });
});

describe("stand-in: --enable-request-id-headers", () => {
    it("echoes X-Request-Id on every response, or sends a fresh hex id, as vLLM's middleware does", async () => {
        const s = await standIn({ args: ["--enable-request-id-headers"] });
        expect((await request(`${s.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 }, headers: { "x-request-id": "abc" } })).headers["x-request-id"]).toBe("abc");
        expect((await request(`${s.url}/health`)).headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    });
});

describe("stand-in: --api-key", () => {
    it("guards /v1/* with a Bearer key (the scheme in any case) and leaves /health, /ping, /metrics and /version open", async () => {
        const s = await standIn({ args: ["--api-key", "k-one", "k-two"] });
        const denied = await request(`${s.url}/v1/models`);
        expect(denied.status).toBe(401);
        expect(denied.json).toEqual({ error: "Unauthorized" }); // vLLM's exact body
        for (const authorization of ["Bearer wrong", "Basic k-one", "Bearer  k-one", "k-one"]) {
            expect((await request(`${s.url}/v1/models`, { headers: { authorization } })).status).toBe(401);
        }
        for (const authorization of ["Bearer k-one", "bearer k-one", "BEARER k-two"]) {
            expect((await request(`${s.url}/v1/models`, { headers: { authorization } })).status).toBe(200);
        }
        expect((await request(`${s.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 }, headers: { authorization: "Bearer k-two" } })).status).toBe(200);
        for (const path of ["/health", "/ping", "/metrics", "/version"]) {
            expect((await request(`${s.url}${path}`)).status).toBe(200);
        }
        // The API-key middleware answers before the instrumentator sees the request.
        expect(metricValue(await scrape(s), "http_requests_total", { status: "4xx" })).toBeNaN();
    });

    it("reads the key from VLLM_API_KEY too", async () => {
        const s = await standIn({ env: { VLLM_API_KEY: "from-env" } });
        expect((await request(`${s.url}/v1/models`)).status).toBe(401);
        expect((await request(`${s.url}/v1/models`, { headers: { authorization: "Bearer from-env" } })).status).toBe(200);
    });
});

describe("stand-in: LoRA adapters, as vLLM 0.32.0 serves them", () => {
    const LORA = ["--served-model-name", "m", "--itl-ms", "20", "--enable-lora", "--max-loras", "1", "--lora-modules", "a=/adapters/a", '{"name": "b", "path": "/adapters/b", "base_model_name": "m"}'];
    let s: StandIn;
    const post = (path: string, body: unknown) => request(`${s.url}${path}`, { method: "POST", body, agent: false });
    beforeAll(async () => {
        s = await standIn({ args: LORA, env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" } });
    });

    it("lists its --lora-modules adapters after the model, with their path as root and the model as parent, and answers as them", async () => {
        const models = (await request(`${s.url}/v1/models`)).json.data.map((m: any) => [m.id, m.root, m.parent, m.max_model_len]);
        expect(models).toEqual([
            ["m", "standin/model", null, 8192],
            ["a", "/adapters/a", "m", null],
            ["b", "/adapters/b", "m", null],
        ]);
        const c = await post("/v1/completions", { model: "a", prompt: "hi", max_tokens: 2 });
        expect([c.status, c.json.model]).toEqual([200, "a"]);
        expect(s.output()).toContain("Loaded new LoRA adapter: name 'a', path '/adapters/a'");
    });

    it("loads and unloads adapters at run time, with vLLM's answers, and serves one only while it is loaded", async () => {
        const loaded = await post("/v1/load_lora_adapter", { lora_name: "c", lora_path: "/adapters/c" });
        expect([loaded.status, loaded.text, loaded.headers["content-type"]]).toEqual([200, "Success: LoRA adapter 'c' added successfully.", undefined]);
        expect((await post("/v1/completions", { model: "c", prompt: "hi", max_tokens: 1 })).json.model).toBe("c");
        expect((await post("/v1/load_lora_adapter", { lora_name: "c", lora_path: "/adapters/c" })).json.error).toMatchObject({ code: 400, type: "InvalidUserInput", message: expect.stringContaining("has already been loaded") });
        expect((await post("/v1/load_lora_adapter", { lora_name: "c", lora_path: "/adapters/c2", load_inplace: true })).status).toBe(200);
        expect((await post("/v1/load_lora_adapter", { lora_name: "m", lora_path: "/x" })).json.error.message).toBe("The lora adapter 'm' conflicts with a served base model.");
        expect((await post("/v1/load_lora_adapter", { lora_name: "d" })).json.error).toMatchObject({ code: 400, param: "body.lora_path" });
        const removed = await post("/v1/unload_lora_adapter", { lora_name: "c" });
        expect([removed.status, removed.text]).toEqual([200, "Success: LoRA adapter 'c' removed successfully."]);
        expect((await post("/v1/unload_lora_adapter", { lora_name: "c" })).json.error).toEqual({ message: "The lora adapter 'c' cannot be found.", type: "NotFoundError", param: null, code: 404 });
        const gone = await post("/v1/completions", { model: "c", prompt: "hi", max_tokens: 1 });
        expect([gone.status, gone.json.error.message]).toEqual([404, "The model `c` does not exist. Valid aliases: m."]);
    });

    it("has no load or unload route without VLLM_ALLOW_RUNTIME_LORA_UPDATING", async () => {
        const fixed = await standIn({ args: LORA });
        const r = await request(`${fixed.url}/v1/load_lora_adapter`, { method: "POST", body: { lora_name: "c", lora_path: "/c" }, agent: false });
        expect([r.status, r.json]).toEqual([404, { detail: "Not Found" }]);
        expect(fixed.output()).not.toContain("Route: /v1/load_lora_adapter");
    });

    it("runs one adapter at a time with --max-loras 1: another adapter's request waits (deferred), the base model's does not, and lora_requests_info names the running adapter only", async () => {
        const long = stream(`${s.url}/v1/completions`, { model: "a", prompt: "hi", max_tokens: 60, stream: true }, { agent: false });
        await long.firstEvent;
        const t0 = performance.now();
        const other = post("/v1/completions", { model: "b", prompt: "hi", max_tokens: 1 });
        const base = await post("/v1/completions", { model: "m", prompt: "hi", max_tokens: 1 });
        expect(base.status).toBe(200);
        expect(performance.now() - t0).toBeLessThan(500);
        const text = await scrape(s);
        expect(metricValue(text, "vllm:num_requests_waiting_by_reason", { reason: "deferred" })).toBe(1);
        // As vLLM 0.32.0: an adapter counts once a request of it was scheduled, so the waiting one is not named.
        expect(metricValue(text, "vllm:lora_requests_info", { max_lora: "1", running_lora_adapters: "a", waiting_lora_adapters: "a" })).toBeGreaterThan(Date.now() / 1000 - 60);
        expect(text).not.toContain('running_lora_adapters="a,b"');
        const done = await long.result;
        expect(done.done).toBe(true);
        expect((await other).json.model).toBe("b");
        // It waited for the whole batch of the other adapter: 60 tokens at 20 ms.
        expect(performance.now() - t0).toBeGreaterThan(800);
    });

    it("refuses --lora-modules without --enable-lora at start, as vLLM's engine does", async () => {
        const refused = await standIn({ args: ["--lora-modules", "a=/adapters/a"], waitReady: false });
        expect((await refused.exited).code).toBe(1);
        expect(refused.output()).toContain("LoRA is not enabled. Use --enable-lora to enable LoRA.");
    });
});
