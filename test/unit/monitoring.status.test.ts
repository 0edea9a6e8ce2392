import { describe, expect, it } from "vitest";
import {
    StackOutputs,
    StatusReport,
    buildReport,
    formatReport,
    histogramQuantile,
    loadFromMetrics,
    loadsFromPrometheus,
    parseMetricsText,
    parseNginxHealth,
    parseStackOutputs,
    reportHealthy,
    reportJson,
} from "../../scripts/statusReport";

const OUTPUTS = {
    endpoint: "http://127.0.0.1:8000",
    replicas: [
        { name: "vllm0", container: "dev-vllm0", url: "http://127.0.0.1:8081", gpus: [] },
        { name: "vllm1", container: "dev-vllm1", url: "http://127.0.0.1:8082/", gpus: [] },
    ],
    configId: "0123456789ab",
    prometheusUrl: "http://127.0.0.1:9090/",
    nginxConfig: "...",
};

/** A replica's /metrics as vLLM v0.11 serves it (the lines the status command reads, and others). */
const METRICS = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m",engine="0"} 3.0
vllm:num_requests_waiting{model_name="m",engine="0"} 1.0
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.125
vllm:request_success_total{model_name="m",engine="0",finished_reason="stop"} 40.0
vllm:request_success_total{model_name="m",engine="0",finished_reason="length"} 2.0
vllm:request_success_total{model_name="m",engine="0",finished_reason="abort"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.05",model_name="m",engine="0"} 10.0
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m",engine="0"} 30.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m",engine="0"} 42.0
vllm:time_to_first_token_seconds_count{model_name="m",engine="0"} 42.0
http_requests_total{handler="/v1/completions",method="POST",status="2xx"} 42.0
`;

describe("stack outputs", () => {
    it("reads the endpoint, the replicas, the config id and Prometheus's URL, without trailing slashes", () => {
        expect(parseStackOutputs(OUTPUTS)).toEqual({
            endpoint: "http://127.0.0.1:8000",
            replicas: [
                { name: "vllm0", container: "dev-vllm0", url: "http://127.0.0.1:8081" },
                { name: "vllm1", container: "dev-vllm1", url: "http://127.0.0.1:8082" },
            ],
            configId: "0123456789ab",
            prometheusUrl: "http://127.0.0.1:9090",
        });
    });

    it("treats a missing or empty prometheusUrl as no Prometheus", () => {
        expect(parseStackOutputs({ ...OUTPUTS, prometheusUrl: undefined }).prometheusUrl).toBeUndefined();
        expect(parseStackOutputs({ ...OUTPUTS, prometheusUrl: "" }).prometheusUrl).toBeUndefined();
    });

    it.each([
        [{}, /no "endpoint" URL/],
        [{ endpoint: "http://x" }, /no "replicas" list/],
        [{ endpoint: "http://x", replicas: [{ name: "vllm0", url: 8081 }] }, /no "replicas" list/],
        [{ endpoint: "http://x", replicas: [{ url: "http://127.0.0.1:8081" }] }, /no "replicas" list/],
        [[], /not an object/],
    ])("says which output is missing in %j", (value, message) => {
        expect(() => parseStackOutputs(value)).toThrow(message);
    });
});

describe("the balancer's health line", () => {
    it.each([
        ["ok 0123456789ab in=vllm0,vllm1 out=\n", { configId: "0123456789ab", inRotation: ["vllm0", "vllm1"], outOfRotation: [] }],
        ["ok 0123456789ab in=vllm0 out=vllm1,vllm2", { configId: "0123456789ab", inRotation: ["vllm0"], outOfRotation: ["vllm1", "vllm2"] }],
        ["ok 0123456789ab\n", { configId: "0123456789ab", inRotation: undefined, outOfRotation: undefined }],
        ["ok bootstrap\n", { configId: "bootstrap", inRotation: undefined, outOfRotation: undefined }],
    ])("reads %j", (text, expected) => {
        expect(parseNginxHealth(text)).toEqual(expected);
    });

    it.each(["", "no replicas configured yet", "ok", "ok id in=a extra"])("refuses %j", (text) => {
        expect(parseNginxHealth(text)).toBeUndefined();
    });
});

describe("metrics text", () => {
    it("parses names, labels (with escapes) and special values", () => {
        expect(parseMetricsText('a{x="1",y="q\\"uote"} 2.5\n# comment\nb +Inf\nc{le="+Inf"} NaN 1700000000\nbroken line\n')).toEqual([
            { name: "a", labels: { x: "1", y: 'q"uote' }, value: 2.5 },
            { name: "b", labels: {}, value: Infinity },
            { name: "c", labels: { le: "+Inf" }, value: NaN },
        ]);
    });

    it("takes a replica's load from its /metrics, with TTFT p50 from the whole histogram", () => {
        // 42 observations: rank 21 is in (0.05, 0.1], 11 of its 20: 0.05 + 0.05 * 11/20.
        const load = loadFromMetrics(METRICS);
        expect(load).toEqual({ running: 3, waiting: 1, kvCacheUsage: 0.125, ttftP50Seconds: expect.any(Number), requestsServed: 42 });
        expect(load.ttftP50Seconds).toBeCloseTo(0.0775, 12);
    });

    it("leaves out what the replica does not export", () => {
        expect(loadFromMetrics('vllm:num_requests_running{model_name="m",engine="0"} 0\n')).toEqual({
            running: 0,
            waiting: undefined,
            kvCacheUsage: undefined,
            ttftP50Seconds: undefined,
            requestsServed: undefined,
        });
    });
});

describe("histogramQuantile", () => {
    const buckets = [
        { le: 0.1, count: 5 },
        { le: 0.25, count: 10 },
        { le: Infinity, count: 10 },
    ];

    it.each([
        [0.5, 0.1],
        [0.25, 0.05],
        [0.99, 0.1 + 0.15 * (4.9 / 5)],
    ])("q=%d is %d, as Prometheus interpolates", (q, expected) => {
        expect(histogramQuantile(q, buckets)).toBeCloseTo(expected, 12);
    });

    it("answers the last finite bound beyond it, and NaN without observations or a +Inf bucket", () => {
        expect(histogramQuantile(0.99, [{ le: 0.1, count: 1 }, { le: Infinity, count: 10 }])).toBe(0.1);
        expect(histogramQuantile(0.5, [{ le: 0.1, count: 0 }, { le: Infinity, count: 0 }])).toBeNaN();
        expect(histogramQuantile(0.5, [{ le: 0.1, count: 3 }])).toBeNaN();
    });
});

describe("the report", () => {
    const outputs = parseStackOutputs(OUTPUTS);
    const loads = loadsFromPrometheus({
        running: [
            { replica: "vllm0", value: 2 },
            { replica: "vllm1", value: 0 },
        ],
        waiting: [{ replica: "vllm0", value: 0 }],
        kvCacheUsage: [{ replica: "vllm0", value: 0.4567 }],
        ttftP50Seconds: [
            { replica: "vllm0", value: 0.084 },
            { replica: "vllm1", value: NaN },
        ],
        requestsServed: [
            { replica: "vllm0", value: 1204 },
            { replica: "vllm1", value: 980 },
        ],
    });
    const source: StatusReport["source"] = { kind: "prometheus", url: "http://127.0.0.1:9090", ttftWindow: "1m" };

    it("joins rotation, health and load per replica", () => {
        const report = buildReport({
            stack: "dev",
            outputs,
            balancerHealth: "ok 0123456789ab in=vllm0 out=vllm1\n",
            healthCodes: { vllm0: 200, vllm1: 503 },
            loads,
            source,
        });
        expect(report.replicas).toEqual([
            { name: "vllm0", container: "dev-vllm0", url: "http://127.0.0.1:8081", rotation: "in", health: "healthy", running: 2, waiting: 0, kvCacheUsage: 0.4567, ttftP50Seconds: 0.084, requestsServed: 1204 },
            { name: "vllm1", container: "dev-vllm1", url: "http://127.0.0.1:8082", rotation: "out", health: "unhealthy", running: 0, waiting: undefined, kvCacheUsage: undefined, ttftP50Seconds: undefined, requestsServed: 980 },
        ]);
        expect(report.balancer).toEqual({ reachable: true, configId: "0123456789ab", deployedConfigId: "0123456789ab" });
        expect(reportHealthy(report)).toBe(false);
        expect(formatReport(report)).toBe(
            [
                "stack     dev",
                "endpoint  http://127.0.0.1:8000",
                "balancer  config 0123456789ab (as deployed)",
                "metrics   Prometheus http://127.0.0.1:9090; TTFT p50 over the last minute",
                "",
                "REPLICA  ROTATION  HEALTH     RUNNING  WAITING  KV CACHE  TTFT P50  SERVED",
                "vllm0    in        healthy          2        0     45.7%     84 ms   1,204",
                "vllm1    out       unhealthy        0        -         -         -     980",
                "",
            ].join("\n"),
        );
    });

    it("shows each replica's model group, with several groups", () => {
        const grouped: StackOutputs = { ...outputs, replicas: [{ ...outputs.replicas[0], group: "chat" }, { ...outputs.replicas[1], name: "embed-vllm0", group: "embed" }] };
        expect(parseStackOutputs(grouped).replicas.map((r) => r.group)).toEqual(["chat", "embed"]);
        const report = buildReport({ stack: "dev", outputs: parseStackOutputs(grouped), balancerHealth: "ok 0123456789ab in=vllm0,embed-vllm0 out=\n", healthCodes: { vllm0: 200, "embed-vllm0": 200 }, loads, source });
        const table = formatReport(report).split("\n");
        expect(table[5]).toBe("REPLICA      GROUP  ROTATION  HEALTH   RUNNING  WAITING  KV CACHE  TTFT P50  SERVED");
        expect(table[6]).toBe("vllm0        chat   in        healthy        2        0     45.7%     84 ms   1,204");
        expect(table[7]).toMatch(/^embed-vllm0  embed  in        healthy /);
        // One group (a stack of one model): no such column.
        const one: StackOutputs = { ...outputs, replicas: outputs.replicas.map((r) => ({ ...r, group: "default" })) };
        expect(formatReport(buildReport({ stack: "dev", outputs: one, balancerHealth: "ok 0123456789ab in=vllm0 out=vllm1\n", healthCodes: { vllm0: 200, vllm1: 503 }, loads, source }))).not.toContain("GROUP");
    });

    it("takes the health of a replica of another host, which has no URL, from Prometheus's scrape through the relay, and says when nobody can tell", () => {
        const relayed: StackOutputs = { ...outputs, replicas: [outputs.replicas[0], { name: "b-vllm0", container: "dev-b-vllm0" }] };
        const scraped = buildReport({ stack: "dev", outputs: relayed, balancerHealth: "ok 0123456789ab in=vllm0,b-vllm0 out=", healthCodes: { vllm0: 200 }, scraped: { vllm0: true, "b-vllm0": false }, loads, source });
        expect(scraped.replicas.map((r) => [r.name, r.url, r.health])).toEqual([
            ["vllm0", "http://127.0.0.1:8081", "healthy"],
            ["b-vllm0", undefined, "unreachable"],
        ]);
        expect(reportHealthy(scraped)).toBe(false);
        const up = buildReport({ stack: "dev", outputs: relayed, balancerHealth: "ok 0123456789ab in=vllm0,b-vllm0 out=", healthCodes: { vllm0: 200 }, scraped: { "b-vllm0": true }, loads, source });
        expect(up.replicas[1].health).toBe("healthy");
        expect(reportHealthy(up)).toBe(true);
        const unknown = buildReport({ stack: "dev", outputs: relayed, balancerHealth: "ok 0123456789ab in=vllm0,b-vllm0 out=", healthCodes: { vllm0: 200 }, loads, source });
        expect(unknown.replicas[1].health).toBe("unknown");
        expect(reportHealthy(unknown)).toBe(true);
        expect(formatReport(unknown)).toContain("unknown: a replica of another host, which only the relay reaches");
        const out = buildReport({ stack: "dev", outputs: relayed, balancerHealth: "ok 0123456789ab in=vllm0 out=b-vllm0", healthCodes: { vllm0: 200 }, loads, source });
        expect(reportHealthy(out)).toBe(false);
        expect(parseStackOutputs({ endpoint: "http://127.0.0.1:8000", replicas: relayed.replicas }).replicas[1]).toEqual({ name: "b-vllm0", container: "dev-b-vllm0", url: undefined });
    });

    it("gives scripts every field, null where unknown", () => {
        const report = buildReport({ stack: "dev", outputs, balancerHealth: "ok 0123456789ab in=vllm0,vllm1 out=", healthCodes: { vllm0: 200, vllm1: 200 }, loads, source });
        const json = JSON.parse(reportJson(report));
        expect(json.replicas[1]).toEqual({
            name: "vllm1",
            container: "dev-vllm1",
            url: "http://127.0.0.1:8082",
            rotation: "in",
            health: "healthy",
            running: 0,
            waiting: null,
            kvCacheUsage: null,
            ttftP50Seconds: null,
            requestsServed: 980,
        });
        expect(reportHealthy(report)).toBe(true);
    });

    it("says when the balancer does not answer, serves another config, or Prometheus is not there", () => {
        const down = buildReport({ stack: "dev", outputs, balancerHealth: undefined, healthCodes: {}, loads: new Map(), source });
        expect(formatReport(down)).toContain("balancer  not answering at http://127.0.0.1:8000/nginx-health");
        expect(down.replicas.map((r) => [r.health, r.rotation])).toEqual([
            ["unreachable", "unknown"],
            ["unreachable", "unknown"],
        ]);
        expect(reportHealthy(down)).toBe(false);

        const stale = buildReport({ stack: "dev", outputs, balancerHealth: "ok ffffffffffff", healthCodes: { vllm0: 200, vllm1: 200 }, loads, source });
        expect(formatReport(stale)).toContain("balancer  config ffffffffffff (deployed: 0123456789ab; a reload is pending or failed)");

        const fallback = buildReport({
            stack: "dev",
            outputs,
            balancerHealth: "ok 0123456789ab",
            healthCodes: { vllm0: 200, vllm1: 200 },
            loads: new Map([["vllm0", loadFromMetrics(METRICS)]]),
            source: { kind: "metrics", ttftWindow: "since start", reason: "the stack has no Prometheus" },
        });
        expect(formatReport(fallback)).toContain("metrics   each replica's /metrics (the stack has no Prometheus); TTFT p50 since the replica started");
        expect(formatReport(fallback)).toMatch(/vllm0 +unknown +healthy +3 +1 +12\.5% +78 ms +42/);
    });
});
