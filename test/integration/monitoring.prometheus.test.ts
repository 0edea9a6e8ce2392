/**
 * The rendered config and rules in a real Prometheus (Debian's binary, on the loopback), scraping
 * vLLM stand-ins, a synthetic replica with every v0.11 metric, and real nginx through the real nginx
 * exporter: targets come up, the recording rules produce values, every dashboard query returns data,
 * a config change is reloaded in place, and the replica-down and balancer-down alerts fire within
 * their `for` window.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboardQueries } from "../../components/monitoring/dashboard";
import { ReplicaTarget, renderPrometheusConfig } from "../../components/monitoring/prometheusConfig";
import { DEFAULT_ALERT_THRESHOLDS, renderRules } from "../../components/monitoring/rules";
import { Nginx, StandIn, freePort, nginxVersion, renderOurs, request, sleep, startNginx, startStandIn, waitFor } from "../support";
import type { StatusReport } from "../../scripts/statusReport";
import { LocalPrometheus, requireBinary, startLocalExporter, startLocalPrometheus, startSyntheticReplica } from "./monitoring.support";

const REPO = path.resolve(__dirname, "..", "..");

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
        // nginx's counters on their own listener, as in the balancer's container (the public port refuses them).
        const statusPort = await freePort();
        nginx = await startNginx(
            renderOurs(
                standIns.map((s) => s.port),
                lbPort,
                { statusListen: `127.0.0.1:${statusPort}` },
            ),
            lbPort,
            { readyPath: "/nginx-health" },
        );
        exporterPort = await freePort();
        exporter = await startLocalExporter(exporterPort, `http://127.0.0.1:${statusPort}/nginx-status`);
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
        until.then(
            () => (done = true),
            () => (done = true),
        );
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
        // The fleet group is evaluated on its own schedule, up to one interval after the replica group.
        const fleet = await prometheus.api.waitForValues("fleet:vllm_requests:rate1m > 0", 2 * INTERVAL_MS + 5000);
        expect(fleet).toHaveLength(1);
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

    it("reports each replica's health and load with scripts/status, from Prometheus or from the replicas", async () => {
        const outputsFile = path.join(prometheus.dir, "outputs.json");
        const balancerId = (await request(`${nginx.url}/nginx-health`, { agent: false })).text.split(" ")[1].trim();
        const outputs = {
            endpoint: nginx.url,
            replicas: standIns.map((s) => ({ name: s.replicaId, container: `it-${s.replicaId}`, url: s.url })),
            configId: balancerId,
            prometheusUrl: prometheus.api.url,
        };
        const status = (extra: object) => {
            fs.writeFileSync(outputsFile, JSON.stringify({ ...outputs, ...extra }));
            const result = spawnSync(path.join(REPO, "scripts", "status"), ["it", "--outputs", outputsFile, "--json"], { encoding: "utf8" });
            expect(result.stderr).toBe("");
            return { code: result.status, report: JSON.parse(result.stdout) as StatusReport };
        };

        const fromPrometheus = status({});
        expect(fromPrometheus.code).toBe(0);
        expect(fromPrometheus.report.source).toEqual({ kind: "prometheus", url: prometheus.api.url, ttftWindow: "1m" });
        expect(fromPrometheus.report.balancer).toEqual({ reachable: true, configId: balancerId, deployedConfigId: balancerId, error: null });
        for (const replica of fromPrometheus.report.replicas) {
            // Numbers from Prometheus's last scrape (which may have caught the last request of the traffic above).
            expect(replica).toMatchObject({ health: "healthy", running: expect.any(Number), waiting: expect.any(Number), kvCacheUsage: expect.any(Number) });
            expect(replica.requestsServed).toBeGreaterThan(0);
            expect(replica.ttftP50Seconds).toBeGreaterThan(0);
        }

        const fromReplicas = status({ prometheusUrl: undefined });
        expect(fromReplicas.report.source).toEqual({ kind: "metrics", ttftWindow: "since start", reason: "the stack has no Prometheus" });
        // Straight from the replicas: at least what Prometheus saw at its last scrape.
        fromReplicas.report.replicas.forEach((r, i) => expect(r.requestsServed).toBeGreaterThanOrEqual(fromPrometheus.report.replicas[i].requestsServed!));

        const closed = `http://127.0.0.1:${await freePort()}`;
        const fallback = status({ prometheusUrl: closed });
        expect(fallback.report.source).toMatchObject({ kind: "metrics", reason: expect.stringContaining(`Prometheus at ${closed} did not answer`) });
        expect(fallback.report.replicas.every((r) => r.health === "healthy" && r.requestsServed! > 0)).toBe(true);

        fs.writeFileSync(outputsFile, JSON.stringify(outputs));
        const table = spawnSync(path.join(REPO, "scripts", "status"), ["it", "--outputs", outputsFile], { encoding: "utf8" });
        expect(table.stdout).toMatch(/^REPLICA +ROTATION +HEALTH +RUNNING +WAITING +KV CACHE +TTFT P50 +SERVED$/m);
        expect(table.stdout).toMatch(/^vllm0 +in +healthy +\d+ +\d+ +\d+\.\d% +\d+ ms +\d+$/m);
        console.log(table.stdout);
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
