/**
 * The rendered config and rules in a real Prometheus (Debian's binary, on the loopback), scraping
 * vLLM stand-ins, a synthetic replica with every v0.11 metric, and real nginx through the real nginx
 * exporter: targets come up, the recording rules produce values, every dashboard query returns data,
 * a config change is reloaded in place, and the replica-down and balancer-down alerts fire within
 * their `for` window.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardQueries } from "../../components/monitoring/dashboard";
import { ReplicaTarget, renderPrometheusConfig } from "../../components/monitoring/prometheusConfig";
import { DEFAULT_ALERT_THRESHOLDS, renderRules } from "../../components/monitoring/rules";
import { Nginx, StandIn, freePort, nginxVersion, renderOurs, request, sleep, startNginx, startStandIn, waitFor } from "../support";
import { LocalPrometheus, requireBinary, startLocalExporter, startLocalPrometheus, startSyntheticReplica } from "./monitoring.support";

/** Scrape and evaluation interval of the rendered config. */
const INTERVAL_MS = 5000;

describe("Prometheus on the rendered config", () => {
    let standIns: StandIn[] = [];
    let synthetic: Awaited<ReturnType<typeof startSyntheticReplica>>;
    let nginx: Nginx;
    let exporter: Awaited<ReturnType<typeof startLocalExporter>>;
    let prometheus: LocalPrometheus;
    let replicas: ReplicaTarget[];
    let exporterPort: number;
    let prometheusPort: number;

    const config = (targets: ReplicaTarget[]) =>
        renderPrometheusConfig({ stack: "it", replicas: targets, balancerExporter: `127.0.0.1:${exporterPort}`, selfAddress: `127.0.0.1:${prometheusPort}` });

    beforeAll(async () => {
        requireBinary("prometheus");
        requireBinary("prometheus-nginx-exporter");
        nginxVersion();
        standIns = await Promise.all(
            ["vllm0", "vllm1"].map((id) => startStandIn({ replicaId: id, model: "tiny", args: ["--disable-uvicorn-access-log", "--itl-ms", "5"] })),
        );
        synthetic = await startSyntheticReplica();
        const lbPort = await freePort();
        nginx = await startNginx(
            renderOurs(
                standIns.map((s) => s.port),
                lbPort,
            ),
            lbPort,
            { readyPath: "/nginx-health" },
        );
        exporterPort = await freePort();
        exporter = await startLocalExporter(exporterPort, `${nginx.url}/nginx-status`);
        replicas = [
            ...standIns.map((s) => ({ name: s.replicaId, address: `127.0.0.1:${s.port}`, host: "local" })),
            { name: "vllm2", address: `127.0.0.1:${synthetic.port}`, host: "synthetic" },
        ];
        prometheusPort = await freePort();
        prometheus = await startLocalPrometheus(prometheusPort, config(replicas), renderRules());
    });

    afterAll(async () => {
        await prometheus?.stop();
        await exporter?.stop();
        await nginx?.stop();
        await synthetic?.close();
        await Promise.all(standIns.map((s) => s.kill()));
    });

    /** Completions through the balancer, a few at a time, until `until` resolves. */
    async function traffic(until: Promise<unknown>): Promise<number> {
        let sent = 0;
        let done = false;
        void until.finally(() => (done = true));
        const deadline = Date.now() + 60_000;
        while (!done && Date.now() < deadline) {
            await Promise.all(
                [0, 1, 2].map(() =>
                    request(`${nginx.url}/v1/completions`, { body: { model: "tiny", prompt: "Say hello to the monitoring test", max_tokens: 8 }, agent: false }),
                ),
            );
            sent += 3;
            await sleep(200);
        }
        return sent;
    }

    it("scrapes every replica, the nginx exporter and itself", async () => {
        const targets = await prometheus.api.waitForTargetsUp(["vllm/vllm0", "vllm/vllm1", "vllm/vllm2", `nginx/127.0.0.1:${exporterPort}`, `prometheus/127.0.0.1:${prometheus.port}`]);
        expect(Object.keys(targets)).toHaveLength(5);
        const up = await prometheus.api.query('up{job="vllm"}');
        expect(up.map((s) => [s.metric.replica, s.metric.host]).sort()).toEqual([
            ["vllm0", "local"],
            ["vllm1", "local"],
            ["vllm2", "synthetic"],
        ]);
    });

    it("records request rate, TTFT, tokens and load per replica from the stand-ins' traffic", async () => {
        const ready = (async () => {
            await prometheus.api.waitForValues("replica:vllm_requests:rate1m > 0", 60_000, "replica", ["vllm0", "vllm1"]);
            await prometheus.api.waitForValues("replica:vllm_ttft_seconds:p50_1m", 60_000, "replica", ["vllm0", "vllm1"]);
            await prometheus.api.waitForValues("replica:vllm_generation_tokens:rate1m > 0", 60_000, "replica", ["vllm0", "vllm1"]);
        })();
        const sent = await traffic(ready);
        await ready;
        expect(sent).toBeGreaterThan(0);
        const ttft = await prometheus.api.query('replica:vllm_ttft_seconds:p50_1m{replica=~"vllm0|vllm1"}');
        for (const s of ttft) {
            // The stand-ins answer their first token in a few milliseconds at --itl-ms 5.
            expect(s.value, s.metric.replica).toBeGreaterThan(0);
            expect(s.value, s.metric.replica).toBeLessThan(1);
        }
        const running = await prometheus.api.query("replica:vllm_requests_running:sum");
        expect(running.map((s) => s.metric.replica).sort()).toEqual(["vllm0", "vllm1", "vllm2"]);
        const fleet = await prometheus.api.query("fleet:vllm_requests:rate1m");
        expect(fleet).toHaveLength(1);
        expect(fleet[0].value).toBeGreaterThan(0);
    });

    it("answers every dashboard query with data", async () => {
        // nginx_http_requests_total needs two scrapes in the window; the traffic above gave it that.
        const empty: string[] = [];
        await waitFor("every dashboard query to return a finite value", 30_000, async () => {
            empty.length = 0;
            for (const q of dashboardQueries()) {
                const samples = await prometheus.api.query(q.expr);
                if (!samples.some((s) => Number.isFinite(s.value))) {
                    empty.push(`${q.panel}: ${q.expr}`);
                }
            }
            return empty.length === 0;
        }, 2000).catch((error: Error) => {
            throw new Error(`${error.message}; still empty:\n  ${empty.join("\n  ")}`);
        });
        expect(empty).toEqual([]);
    });

    it("reloads a changed config in place: the same process, its history kept, the removed replica gone", async () => {
        const before = await prometheus.api.query('process_start_time_seconds{job="prometheus"}');
        const samplesBefore = await prometheus.api.query('count_over_time(up{job="vllm",replica="vllm1"}[10m])');
        prometheus.writeConfig(config(replicas.filter((r) => r.name !== "vllm1")), renderRules());
        await prometheus.reload();
        await waitFor("vllm1 to leave the targets", 15_000, async () => !("vllm/vllm1" in (await prometheus.api.targets())), 500);
        const after = await prometheus.api.query('process_start_time_seconds{job="prometheus"}');
        expect(after[0].value).toBe(before[0].value);
        expect(prometheus.proc.exitCode).toBeNull();
        const samplesAfter = await prometheus.api.query('count_over_time(up{job="vllm",replica="vllm1"}[10m])');
        expect(samplesAfter[0].value).toBeGreaterThanOrEqual(samplesBefore[0].value);
        prometheus.writeConfig(config(replicas), renderRules());
        await prometheus.reload();
        await prometheus.api.waitForTargetsUp(["vllm/vllm1"]);
    });

    it("fires VllmReplicaDown and NginxBalancerDown within their for window, pending first", async () => {
        // Give the last reload's first evaluations time to settle on "everything up".
        await sleep(INTERVAL_MS);
        expect(await prometheus.api.firing("VllmReplicaDown")).toEqual([]);
        expect(await prometheus.api.firing("NginxBalancerDown")).toEqual([]);
        const forMs = (text: string) => Number(/^(\d+)s$/.exec(text)![1]) * 1000;
        // Once down: the next scrape sees it (one interval), the next evaluation marks it pending (one
        // more), and it fires `for` later, at the first evaluation after that (one more interval).
        const budgetMs = forMs(DEFAULT_ALERT_THRESHOLDS.replicaDownFor) + 3 * INTERVAL_MS + 2000;

        const stoppedAt = Date.now();
        await Promise.all([standIns[1].kill(), nginx.stop()]);
        const sawPending = { replica: false, balancer: false };
        const replicaFired = waitFor("VllmReplicaDown to fire for vllm1", budgetMs, async () => {
            sawPending.replica ||= (await prometheus.api.pending("VllmReplicaDown")).some((a) => a.replica === "vllm1");
            const firing = await prometheus.api.firing("VllmReplicaDown");
            return firing.length > 0 ? { firing, ms: Date.now() - stoppedAt } : undefined;
        }, 500);
        const balancerFired = waitFor("NginxBalancerDown to fire", budgetMs, async () => {
            sawPending.balancer ||= (await prometheus.api.pending("NginxBalancerDown")).length > 0;
            const firing = await prometheus.api.firing("NginxBalancerDown");
            return firing.length > 0 ? { firing, ms: Date.now() - stoppedAt } : undefined;
        }, 500);
        const [replica, balancer] = await Promise.all([replicaFired, balancerFired]);

        expect(replica.firing).toEqual([expect.objectContaining({ alertname: "VllmReplicaDown", replica: "vllm1", host: "local", severity: "critical" })]);
        expect(balancer.firing).toEqual([expect.objectContaining({ alertname: "NginxBalancerDown", job: "nginx", severity: "critical" })]);
        // Not before the for window: an alert that fired at once would not be waiting for it.
        expect(replica.ms).toBeGreaterThanOrEqual(forMs(DEFAULT_ALERT_THRESHOLDS.replicaDownFor));
        expect(balancer.ms).toBeGreaterThanOrEqual(forMs(DEFAULT_ALERT_THRESHOLDS.balancerDownFor));
        expect(sawPending).toEqual({ replica: true, balancer: true });
        console.log(`VllmReplicaDown fired ${replica.ms} ms and NginxBalancerDown ${balancer.ms} ms after the stop (budget ${budgetMs} ms)`);
    });
});
