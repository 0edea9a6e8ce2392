import * as yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { PrometheusConfigArgs, renderPrometheusConfig } from "../../components/monitoring/prometheusConfig";

const DEV_STACK: PrometheusConfigArgs = {
    stack: "dev",
    replicas: [
        { name: "vllm0", address: "172.29.10.10:8000", host: "local" },
        { name: "vllm1", address: "172.29.10.11:8000", host: "local" },
    ],
    balancerExporter: "nginx-exporter:9113",
};

interface StaticConfig {
    targets: string[];
    labels?: Record<string, string>;
}
interface ParsedConfig {
    global: Record<string, unknown>;
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: StaticConfig[] }>;
}

describe("rendered Prometheus config", () => {
    const text = renderPrometheusConfig(DEV_STACK);
    const parsed = yaml.load(text) as ParsedConfig;
    const job = (name: string) => parsed.scrape_configs.find((j) => j.job_name === name);

    it("matches the reviewed snapshot for the dev stack", async () => {
        await expect(text).toMatchFileSnapshot("__snapshots__/monitoring-dev.prometheus.yml");
    });

    it("scrapes every replica's /metrics with its replica and host labels", () => {
        expect(job("vllm")?.metrics_path).toBe("/metrics");
        expect(job("vllm")?.static_configs).toEqual([
            { targets: ["172.29.10.10:8000"], labels: { replica: "vllm0", host: "local" } },
            { targets: ["172.29.10.11:8000"], labels: { replica: "vllm1", host: "local" } },
        ]);
    });

    it("scrapes the nginx exporter, and no nginx job without one", () => {
        expect(job("nginx")?.static_configs).toEqual([{ targets: ["nginx-exporter:9113"], labels: { host: "local" } }]);
        const withoutExporter = yaml.load(renderPrometheusConfig({ ...DEV_STACK, balancerExporter: undefined })) as ParsedConfig;
        expect(withoutExporter.scrape_configs.map((j) => j.job_name)).toEqual(["vllm", "prometheus"]);
    });

    it("scrapes and evaluates every 5 s, with a timeout below the interval, so alerts can fire within seconds", () => {
        expect(parsed.global).toMatchObject({ scrape_interval: "5s", evaluation_interval: "5s", scrape_timeout: "4s", external_labels: { stack: "dev" } });
    });

    it("loads the rule files from the rules folder beside it", () => {
        expect(parsed.rule_files).toEqual(["rules/*.yml"]);
    });

    it("reaches replicas on other hosts by host address", () => {
        const remote = yaml.load(
            renderPrometheusConfig({ ...DEV_STACK, replicas: [{ name: "vllm2", address: "10.0.0.7:8081", host: "gpu-host-2" }] }),
        ) as ParsedConfig;
        expect(remote.scrape_configs[0].static_configs).toEqual([{ targets: ["10.0.0.7:8081"], labels: { replica: "vllm2", host: "gpu-host-2" } }]);
    });

    it("carries an id that changes with the content", () => {
        const id = /config ([0-9a-f]{12})\./.exec(text)?.[1];
        expect(id).toBeDefined();
        const other = renderPrometheusConfig({ ...DEV_STACK, replicas: DEV_STACK.replicas.slice(0, 1) });
        expect(/config ([0-9a-f]{12})\./.exec(other)?.[1]).not.toBe(id);
    });

    it.each([
        [[{ name: "vllm0", address: "a:1", host: "h" }, { name: "vllm0", address: "b:1", host: "h" }], /unique/],
        [[{ name: "vllm 0", address: "a:1", host: "h" }], /unique words/],
        [[{ name: "vllm0", address: "http://a:1", host: "h" }], /host:port/],
        [[{ name: "vllm0", address: "a", host: "h" }], /host:port/],
    ])("refuses replicas it cannot label or reach: %j", (replicas, message) => {
        expect(() => renderPrometheusConfig({ ...DEV_STACK, replicas })).toThrow(message);
    });
});
