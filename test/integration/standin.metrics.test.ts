/**
 * The stand-in's /metrics, which the monitoring work queries: vLLM 0.32.0's names, types, labels and
 * buckets (vllm/v1/metrics/loggers.py) and prometheus-fastapi-instrumentator's http_requests_total as
 * vLLM mounts it. The bucket lists below are vLLM's (unchanged from v0.11 to 0.32.0, as
 * test/vllm/conformance.test.ts sees on real vLLM): they are the specification, not results.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StandIn, metricValue, request, scrape, sleep, startStandIn, stopAll, stream } from "../support";

const VLLM_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const VLLM_ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const VLLM_REQUEST_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

const started: StandIn[] = [];
afterAll(() => stopAll(started));

/** The `le` bounds of a histogram, in order, without +Inf. */
function bucketBounds(text: string, name: string): number[] {
    return [...text.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} `, "gm"))].map((m) => m[1]!).filter((le) => le !== "+Inf").map(Number);
}

/** Every sample line of a metric, as written. */
function samples(text: string, name: string): string[] {
    return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe("stand-in /metrics: vLLM 0.32.0's families", () => {
    let s: StandIn;
    let text: string;
    beforeAll(async () => {
        s = await startStandIn({ args: ["--served-model-name", "m", "other", "--itl-ms", "5", "--disable-uvicorn-access-log"] });
        started.push(s);
        await request(`${s.url}/v1/completions`, { body: { prompt: "12345678", max_tokens: 3 } });
        await stream(`${s.url}/v1/chat/completions`, { model: "other", messages: [{ role: "user", content: "hello" }], max_tokens: 4, stream: true }).result;
        text = await scrape(s);
    });

    it("has every family the monitoring queries, with vLLM's types, and a _created gauge for each counter and histogram", () => {
        const types: Array<[string, string]> = [
            ["vllm:num_requests_running", "gauge"],
            ["vllm:num_requests_waiting", "gauge"],
            ["vllm:kv_cache_usage_perc", "gauge"],
            ["vllm:prompt_tokens_total", "counter"],
            ["vllm:generation_tokens_total", "counter"],
            ["vllm:request_success_total", "counter"],
            ["vllm:prefix_cache_queries_total", "counter"],
            ["vllm:prefix_cache_hits_total", "counter"],
            ["vllm:num_preemptions_total", "counter"],
            ["vllm:time_to_first_token_seconds", "histogram"],
            ["vllm:inter_token_latency_seconds", "histogram"],
            ["vllm:request_time_per_output_token_seconds", "histogram"],
            ["vllm:e2e_request_latency_seconds", "histogram"],
            ["vllm:request_queue_time_seconds", "histogram"],
            ["vllm:request_prefill_time_seconds", "histogram"],
            ["vllm:request_decode_time_seconds", "histogram"],
            ["vllm:request_inference_time_seconds", "histogram"],
            ["vllm:request_prompt_tokens", "histogram"],
            ["vllm:request_generation_tokens", "histogram"],
            ["vllm:iteration_tokens_total", "histogram"],
            ["vllm:prompt_tokens_cached_total", "counter"],
            ["vllm:request_num_preemptions", "histogram"],
            ["vllm:cache_config_info", "gauge"],
            ["http_requests_total", "counter"],
            ["http_request_duration_seconds", "histogram"],
        ];
        for (const [name, type] of types) {
            expect(text, name).toContain(`# TYPE ${name} ${type}\n`);
            if (type !== "gauge") {
                // prometheus_client's creation time of each counter, histogram and summary.
                expect(text, name).toContain(`# TYPE ${type === "counter" ? name.replace(/_total$/, "") : name}_created gauge\n`);
            }
        }
        // Gone from vLLM: hidden since v0.10 (gpu_*), v0.12 (time_per_output_token), removed since.
        expect(text).not.toContain("vllm:gpu_cache_usage_perc");
        expect(text).not.toContain("vllm:gpu_prefix_cache_queries");
        expect(text).not.toContain("vllm:time_per_output_token_seconds");
    });

    it("labels vLLM's samples with the first served name and engine 0, sorted as prometheus_client writes them", () => {
        for (const line of samples(text, "vllm:num_requests_running").concat(samples(text, "vllm:prompt_tokens_total"))) {
            expect(line).toMatch(/^vllm:\w+\{engine="0",model_name="m"\} \d+\.\d+$/);
        }
        expect(samples(text, "vllm:request_success_total")).toEqual([
            'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 0.0',
            'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0',
            'vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 0.0',
            'vllm:request_success_total{engine="0",finished_reason="error",model_name="m"} 0.0',
            'vllm:request_success_total{engine="0",finished_reason="repetition",model_name="m"} 0.0',
        ]);
        expect(metricValue(text, "vllm:cache_config_info", { block_size: "16", enable_prefix_caching: "True", num_gpu_blocks: "16384", engine: "0" })).toBe(1);
    });

    it("uses vLLM's buckets, and observes TTFT once per request and every gap between tokens", () => {
        expect(bucketBounds(text, "vllm:time_to_first_token_seconds")).toEqual(VLLM_TTFT_BUCKETS);
        expect(bucketBounds(text, "vllm:inter_token_latency_seconds")).toEqual(VLLM_ITL_BUCKETS);
        expect(bucketBounds(text, "vllm:request_time_per_output_token_seconds")).toEqual(VLLM_ITL_BUCKETS);
        for (const name of ["vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds", "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds"]) {
            expect(bucketBounds(text, name)).toEqual(VLLM_REQUEST_LATENCY_BUCKETS);
        }
        // 1-2-5 buckets up to max_model_len (8192).
        expect(bucketBounds(text, "vllm:request_prompt_tokens")).toEqual([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]);
        expect(metricValue(text, "vllm:time_to_first_token_seconds_count")).toBe(2);
        expect(metricValue(text, "vllm:inter_token_latency_seconds_count")).toBe(2 + 3); // 3 and 4 tokens
        expect(metricValue(text, "vllm:request_time_per_output_token_seconds_count")).toBe(2); // once per request
        expect(metricValue(text, "vllm:e2e_request_latency_seconds_count")).toBe(2);
        expect(metricValue(text, "vllm:request_queue_time_seconds_count")).toBe(2);
        expect(metricValue(text, "vllm:time_to_first_token_seconds_bucket", { le: "+Inf" })).toBe(2);
        expect(metricValue(text, "vllm:generation_tokens_total")).toBe(7);
        expect(metricValue(text, "vllm:request_generation_tokens_sum")).toBe(7);
    });

    it("counts HTTP requests by handler, method and status class, leaving out /health, /metrics and the other probes", async () => {
        const before = await scrape(s);
        const completions2xx = metricValue(before, "http_requests_total", { handler: "/v1/completions", method: "POST", status: "2xx" });
        expect(completions2xx).toBe(1);
        expect(metricValue(before, "http_requests_total", { handler: "/v1/chat/completions", method: "POST", status: "2xx" })).toBe(1);
        await request(`${s.url}/v1/completions`, { body: { model: "nope", prompt: "x" } }); // 404
        await request(`${s.url}/nowhere`); // no route: handler "none"
        await request(`${s.url}/v1/models`);
        for (const path of ["/health", "/ping", "/version", "/metrics"]) {
            await request(`${s.url}${path}`);
        }
        const after = await scrape(s);
        expect(metricValue(after, "http_requests_total", { handler: "/v1/completions", method: "POST", status: "4xx" })).toBe(1);
        expect(metricValue(after, "http_requests_total", { handler: "none", method: "GET", status: "4xx" })).toBe(1);
        expect(metricValue(after, "http_requests_total", { handler: "/v1/models", method: "GET", status: "2xx" })).toBe(1);
        for (const handler of ["/health", "/ping", "/version", "/metrics"]) {
            expect(metricValue(after, "http_requests_total", { handler })).toBeNaN();
        }
        expect(metricValue(after, "http_request_duration_seconds_count", { handler: "/v1/completions", method: "POST" })).toBe(2);
    });
});

describe("stand-in /metrics: client aborts (pain point 6: litellm#13774, vllm#54947)", () => {
    it("stops generating as soon as the client disconnects, and does not count it in request_success_total{finished_reason=\"abort\"}, as vLLM 0.32.0 does not", async () => {
        const s = await startStandIn({ args: ["--itl-ms", "20", "--served-model-name", "m", "--disable-uvicorn-access-log"] });
        started.push(s);
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
        expect(metricValue(after, "vllm:request_success_total", { finished_reason: "abort" })).toBe(0);
        expect(metricValue(after, "vllm:e2e_request_latency_seconds_count")).toBe(0); // no finished-request stats either
        const generated = metricValue(after, "vllm:generation_tokens_total");
        expect(generated).toBeGreaterThan(0);
        expect(generated).toBeLessThan(30);
        await sleep(200);
        expect(metricValue(await scrape(s), "vllm:generation_tokens_total")).toBe(generated); // stopped producing tokens
    });
});
