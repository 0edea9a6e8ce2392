import * as yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { VLLM } from "../../components/monitoring/metrics";
import { FLEET_RECORDING_RULES, REPLICA_RECORDING_RULES, alertRules, renderRules } from "../../components/monitoring/rules";

interface ParsedRules {
    groups: Array<{ name: string; rules: Array<{ record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string> }> }>;
}

describe("rendered rules", () => {
    const text = renderRules();
    const parsed = yaml.load(text) as ParsedRules;

    it("matches the reviewed snapshot", async () => {
        await expect(text).toMatchFileSnapshot("__snapshots__/monitoring.rules.yml");
    });

    it("has a group per level and one for alerts, with every rule defined in code", () => {
        expect(parsed.groups.map((g) => g.name)).toEqual(["vllm-nginx-replicas", "vllm-nginx-fleet", "vllm-nginx-alerts"]);
        expect(parsed.groups[0].rules.map((r) => r.record)).toEqual(REPLICA_RECORDING_RULES.map((r) => r.record));
        expect(parsed.groups[1].rules.map((r) => r.record)).toEqual(FLEET_RECORDING_RULES.map((r) => r.record));
        expect(parsed.groups[2].rules.map((r) => r.alert)).toEqual(alertRules().map((a) => a.alert));
    });

    it.each([
        ["request rate", "vllm_requests:rate1m"],
        ["TTFT p50", "vllm_ttft_seconds:p50_1m"],
        ["TTFT p99", "vllm_ttft_seconds:p99_1m"],
        ["inter-token latency p50", "vllm_itl_seconds:p50_1m"],
        ["inter-token latency p99", "vllm_itl_seconds:p99_1m"],
        ["end-to-end latency p50", "vllm_e2e_latency_seconds:p50_1m"],
        ["end-to-end latency p99", "vllm_e2e_latency_seconds:p99_1m"],
        ["prompt tokens/s", "vllm_prompt_tokens:rate1m"],
        ["generation tokens/s", "vllm_generation_tokens:rate1m"],
        ["running requests", "vllm_requests_running:sum"],
        ["waiting requests", "vllm_requests_waiting:sum"],
        ["prefix-cache hit rate", "vllm_prefix_cache_hit:ratio_rate1m"],
    ])("records %s per replica and for the fleet", (_what, name) => {
        expect(REPLICA_RECORDING_RULES.map((r) => r.record)).toContain(`replica:${name}`);
        expect(FLEET_RECORDING_RULES.map((r) => r.record)).toContain(`fleet:${name}`);
    });

    it("records KV-cache usage per replica, and its mean and maximum over the fleet", () => {
        expect(REPLICA_RECORDING_RULES.map((r) => r.record)).toContain("replica:vllm_kv_cache_usage:max");
        expect(FLEET_RECORDING_RULES.map((r) => r.record)).toEqual(expect.arrayContaining(["fleet:vllm_kv_cache_usage:avg", "fleet:vllm_kv_cache_usage:max"]));
    });

    it("keeps the replica, host and model group labels per replica and drops them for the fleet", () => {
        for (const rule of REPLICA_RECORDING_RULES) {
            expect(rule.expr, rule.record).toMatch(/by \(replica, host, group(, le)?\)/);
        }
        for (const rule of FLEET_RECORDING_RULES) {
            expect(rule.expr, rule.record).not.toMatch(/replica|host|group/);
        }
    });

    it("reads vLLM v0.11's inter-token latency histogram, not the deprecated time per output token", () => {
        expect(text).toContain(`${VLLM.interTokenLatency}_bucket`);
        expect(text).not.toContain("time_per_output_token");
    });

    it("only selects the vllm job's series for vLLM metrics", () => {
        for (const match of text.matchAll(/(vllm:[a-z_]+|http_requests_total)\{([^}]*)\}/g)) {
            expect(match[2]).toContain('job="vllm"');
        }
    });

    it.each([
        ["VllmReplicaDown", "critical", "15s"],
        ["VllmFleetDown", "critical", "15s"],
        ["VllmKvCacheNearlyFull", "warning", "2m"],
        ["VllmQueueGrowing", "warning", "1m"],
        ["VllmHigh5xxRate", "critical", "1m"],
        ["NginxBalancerDown", "critical", "15s"],
    ])("alerts %s with severity %s after %s", (name, severity, duration) => {
        const rule = parsed.groups[2].rules.find((r) => r.alert === name)!;
        expect(rule.labels).toEqual({ severity });
        expect(rule.for).toBe(duration);
    });

    it("renders other thresholds where they are given", () => {
        const other = renderRules({ kvCacheUsage: 0.8, replicaDownFor: "1m", errorRatio: 0.1, errorsPerMinute: 10 });
        expect(other).toContain("(vllm:kv_cache_usage_perc{job=\"vllm\"}) > 0.8");
        expect(other).toContain("Above 80% for 2m");
        expect(other).toMatch(/alert: VllmReplicaDown\n\s+expr: .*\n\s+for: 1m/);
        expect(other).toContain("> 0.1\n");
        expect(other).toContain("* 60 >= 10");
    });
});
