/**
 * The rendered Prometheus config and rules, checked by the real promtool: `check config`, `check rules`,
 * and `test rules` on the synthetic series of monitoring.rules.promtool.yml, which show each alert
 * firing once its `for` has passed and not firing before or on a healthy look-alike.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderPrometheusConfig } from "../../components/monitoring/prometheusConfig";
import { AlertThresholds, renderRules } from "../../components/monitoring/rules";
import { requireBinary } from "./monitoring.support";

const PROMTOOL_TESTS = path.join(__dirname, "monitoring.rules.promtool.yml");

describe("rules under promtool", () => {
    let promtool: string;
    const dirs: string[] = [];

    beforeAll(() => {
        promtool = requireBinary("promtool");
    });
    afterAll(() => {
        for (const dir of dirs) {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    /** Renders the rules (with `thresholds`) beside a copy of the promtool tests, in a fresh folder. */
    function workspace(thresholds: Partial<AlertThresholds> = {}): string {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-promtool-"));
        dirs.push(dir);
        fs.writeFileSync(path.join(dir, "vllm-nginx.rules.yml"), renderRules(thresholds));
        fs.copyFileSync(PROMTOOL_TESTS, path.join(dir, "tests.yml"));
        return dir;
    }

    function run(args: string[], cwd: string) {
        const result = spawnSync(promtool, args, { cwd, encoding: "utf8" });
        return { code: result.status, output: `${result.stdout}${result.stderr}` };
    }

    it("accepts the rendered rules", () => {
        const dir = workspace();
        const { code, output } = run(["check", "rules", "vllm-nginx.rules.yml"], dir);
        expect(output).toMatch(/SUCCESS: \d+ rules found/);
        expect(code, output).toBe(0);
    });

    it("accepts the rendered config with its rule files", () => {
        const dir = workspace();
        fs.mkdirSync(path.join(dir, "rules"));
        fs.copyFileSync(path.join(dir, "vllm-nginx.rules.yml"), path.join(dir, "rules", "vllm-nginx.yml"));
        fs.writeFileSync(
            path.join(dir, "prometheus.yml"),
            renderPrometheusConfig({
                stack: "dev",
                replicas: [
                    { name: "vllm0", address: "172.29.10.10:8000", host: "local" },
                    { name: "vllm1", address: "172.29.10.11:8000", host: "local" },
                ],
                balancerExporter: "nginx-exporter:9113",
                balancerRotation: "nginx-lb:8081",
            }),
        );
        const { code, output } = run(["check", "config", "prometheus.yml"], dir);
        expect(output).toContain("SUCCESS: 1 rule files found");
        expect(code, output).toBe(0);
    });

    it("passes its unit tests: every alert fires after its for window, and not before or on healthy series", () => {
        const dir = workspace();
        const { code, output } = run(["test", "rules", "tests.yml"], dir);
        expect(output).toContain("SUCCESS");
        expect(code, output).toBe(0);
    });

    it.each([
        ["a KV-cache threshold above the test's 95 %", { kvCacheUsage: 0.97 }, "VllmKvCacheNearlyFull"],
        ["a longer replica-down window", { replicaDownFor: "30s" }, "VllmReplicaDown"],
        ["a higher 5xx share", { errorRatio: 0.1 }, "VllmHigh5xxRate"],
        ["a longer out-of-rotation window", { outOfRotationFor: "15m" }, "VllmReplicaOutOfRotation"],
    ])("fails its unit tests with %s, so they measure the thresholds", (_what, thresholds, alert) => {
        const dir = workspace(thresholds);
        const { code, output } = run(["test", "rules", "tests.yml"], dir);
        expect(code).not.toBe(0);
        expect(output).toContain(`alertname: ${alert}`);
    });
});
