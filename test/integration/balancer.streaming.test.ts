/**
 * Streaming through the real nginx on the rendered config: tokens must reach the client one by one as
 * the replica produces them (pain point 1: litellm#6458, FastChat#2337, dstack#4269), and a client that
 * leaves must stop the generation on the replica (pain point 6: litellm#13774, vllm#54947).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import {
    Nginx,
    StandIn,
    StreamResult,
    freePort,
    gaps,
    metricValue,
    nginxVersion,
    percentile,
    renderGuideConfig,
    renderOurs,
    scrape,
    sleep,
    startNginx,
    startStandIn,
    stopAll,
    stream,
    tokenEvents,
} from "../support";
import { BALANCER_HEALTH_PATH } from "../../components/nginx/render";

const ITL_MS = 50;
const TOKENS = 20;

let replicas: StandIn[] = [];
let ours: Nginx | undefined;
let guide: Nginx | undefined;

beforeAll(async () => {
    nginxVersion(); // fails the file with "apt-get install nginx" when the binary is missing
    replicas = await Promise.all(["a", "b"].map((id) => startStandIn({ replicaId: id, args: ["--itl-ms", String(ITL_MS), "--served-model-name", "m", "--disable-uvicorn-access-log"] })));
    const ports = replicas.map((r) => r.port);
    const oursPort = await freePort();
    ours = await startNginx(renderOurs(ports, oursPort), oursPort, { readyPath: BALANCER_HEALTH_PATH });
    const guidePort = await freePort();
    guide = await startNginx(renderGuideConfig(ports, guidePort), guidePort);
});

afterAll(async () => {
    await ours?.stop();
    await guide?.stop();
    await stopAll(replicas);
});

const body = { model: "m", prompt: "Tell me a story", max_tokens: TOKENS, stream: true };

/** TTFT and gaps of a few sequential streams. */
async function measure(url: string, path = "/v1/completions", payload: object = body): Promise<{ ttft: number[]; gaps: number[]; arrivals: number[]; results: StreamResult[] }> {
    const ttft: number[] = [];
    const allGaps: number[] = [];
    const arrivals: number[] = [];
    const results: StreamResult[] = [];
    for (let i = 0; i < 3; i += 1) {
        const r = await stream(`${url}${path}`, payload, { agent: false }).result;
        expect(r.status).toBe(200);
        expect(r.done).toBe(true);
        const tokens = tokenEvents(r);
        expect(tokens).toHaveLength(TOKENS);
        ttft.push(tokens[0]!.at - r.sentAt);
        allGaps.push(...gaps(tokens));
        arrivals.push(new Set(tokens.map((t) => t.at)).size); // distinct arrival moments of the tokens
        results.push(r);
    }
    return { ttft, gaps: allGaps, arrivals, results };
}

describe("streaming through the balancer (pain point 1: litellm#6458, FastChat#2337, dstack#4269)", () => {
    it("delivers the first token within a token gap or two of a direct connection, and every token on its own", async () => {
        const direct = await measure(replicas[0]!.url);
        const through = await measure(ours!.url);
        const directTtft = percentile(direct.ttft, 50);
        const oursTtft = percentile(through.ttft, 50);
        // The replica sends its first token one gap (50 ms) after the request; nginx adds almost nothing.
        expect(oursTtft).toBeLessThan(3 * ITL_MS);
        expect(oursTtft - directTtft).toBeLessThan(2 * ITL_MS);
        // Tokens arrive one by one, ~50 ms apart: no bursts.
        expect(Math.min(...through.arrivals)).toBeGreaterThanOrEqual(TOKENS - 1);
        expect(percentile(through.gaps, 50)).toBeGreaterThan(0.7 * ITL_MS);
        expect(percentile(through.gaps, 50)).toBeLessThan(1.5 * ITL_MS);
        expect(percentile(through.gaps, 10)).toBeGreaterThan(0.5 * ITL_MS);
    });

    it("streams chat completions the same way", async () => {
        const through = await measure(ours!.url, "/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: TOKENS, stream: true });
        expect(percentile(through.ttft, 50)).toBeLessThan(3 * ITL_MS);
        expect(Math.min(...through.arrivals)).toBeGreaterThanOrEqual(TOKENS - 1);
    });

    it("regression guard: the vLLM guide's config (proxy buffering on) holds a short stream back until it ends", async () => {
        // The guide has no `proxy_buffering off`: nginx fills 4-8 KB buffers before it passes anything
        // on, and 20 SSE chunks (~3.5 KB) never fill one. If this starts failing, nginx's buffering
        // changed and the comparison in bench/ must be looked at again.
        const through = await measure(guide!.url);
        const generation = TOKENS * ITL_MS;
        expect(percentile(through.ttft, 50)).toBeGreaterThan(0.8 * generation);
        expect(Math.max(...through.arrivals)).toBeLessThanOrEqual(2);
        for (const r of through.results) {
            expect(r.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
        }
    });
});

describe("client disconnects (pain point 6: litellm#13774, vllm#54947)", () => {
    it("aborts the generation on the replica within a second of the client closing the connection", async () => {
        const h = stream(`${ours!.url}/v1/completions`, { ...body, max_tokens: 2000 }, { agent: false });
        await h.firstEvent;
        await sleep(3 * ITL_MS);
        const result = h.result;
        const t0 = performance.now();
        h.abort();
        const r = await result;
        expect(r.done).toBe(false);
        const replica = replicas.find((x) => x.replicaId === r.replica)!;
        let tookMs = Infinity;
        while (performance.now() - t0 < 2000) {
            // vLLM (v0.11 to 0.32.0) does not count a client abort in request_success_total{finished_reason="abort"}:
            // the sign of the abort is that the 2,000-token generation no longer runs.
            if (metricValue(await scrape(replica), "vllm:num_requests_running") === 0) {
                tookMs = performance.now() - t0;
                break;
            }
            await sleep(20);
        }
        expect(tookMs).toBeLessThan(1000);
        // And it stopped producing tokens.
        const tokens = metricValue(await scrape(replica), "vllm:generation_tokens_total");
        await sleep(4 * ITL_MS);
        expect(metricValue(await scrape(replica), "vllm:generation_tokens_total")).toBe(tokens);
    });
});
