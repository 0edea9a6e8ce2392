/**
 * The Prometheus and nginx exporter images of images/ built on the local Debian base, run with plain
 * `docker run` the way the components run them (same flags, same healthcheck), with the config and
 * rules installed by the components' own install script through `docker exec`. The stand-ins and nginx
 * run on the host, reached from the containers at the test network's gateway. Shows: the targets come
 * up, the recording rules produce values, a new config is reloaded without a restart, a config promtool
 * rejects leaves the previous one in service, and the samples survive a new container on the volume.
 * Every container, the network and the volume are named monitoring-test-<pid>-* and removed afterwards;
 * the two images stay as build cache.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXPORTER_ALIAS, EXPORTER_PORT, exporterCommand } from "../../components/monitoring/nginxExporter";
import { ReplicaTarget, contentId, renderPrometheusConfig } from "../../components/monitoring/prometheusConfig";
import { INSTALL_PROMETHEUS_CONFIG_SCRIPT, PROMETHEUS_HEALTH_PROBE, prometheusBundle, prometheusCommand } from "../../components/monitoring/prometheusServer";
import { renderRules } from "../../components/monitoring/rules";
import { Nginx, StandIn, freePort, nginxVersion, request, requireDocker, sleep, startNginx, startStandIn, waitFor } from "../support";
import { PrometheusApi, docker } from "./monitoring.support";

const REPO = path.resolve(__dirname, "..", "..");
const BASE_IMAGE = process.env.VLLM_NGINX_BASE_IMAGE ?? "vllm-nginx/debian:bookworm";
const NAME = `monitoring-test-${process.pid}`;
const IMAGES = { prometheus: "vllm-nginx/monitoring-test-prometheus:latest", exporter: "vllm-nginx/monitoring-test-nginx-exporter:latest" };

function build(image: string, folder: string): void {
    const result = spawnSync("docker", ["build", "--build-arg", `BASE_IMAGE=${BASE_IMAGE}`, "-t", image, path.join(REPO, "images", folder)], {
        env: { ...process.env, DOCKER_BUILDKIT: "0" },
        encoding: "utf8",
        maxBuffer: 64 * 1024 * 1024,
    });
    if (result.status !== 0) {
        throw new Error(`docker build of images/${folder} failed:\n${result.stdout}\n${result.stderr}`);
    }
}

/** Runs the components' install script with `bundle` on its standard input. */
function install(container: string, bundle: string): { code: number | null; stdout: string; stderr: string } {
    const result = spawnSync("sh", ["-c", INSTALL_PROMETHEUS_CONFIG_SCRIPT], {
        input: bundle,
        env: { ...process.env, CONTAINER: container, CONFIG_ID: contentId(bundle) },
        encoding: "utf8",
    });
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("the Prometheus image on Docker, configured by the install script", () => {
    let gateway: string;
    let standIns: StandIn[] = [];
    let nginx: Nginx;
    let hostPort: number;
    let api: PrometheusApi;
    let replicas: ReplicaTarget[];
    const prometheus = `${NAME}-prometheus`;
    const volume = `${NAME}-data`;

    const bundle = (targets: ReplicaTarget[]) =>
        prometheusBundle(renderPrometheusConfig({ stack: "monitoring-test", replicas: targets, balancerExporter: `${EXPORTER_ALIAS}:${EXPORTER_PORT}` }), renderRules());

    function runPrometheus(): void {
        docker([
            "run",
            "-d",
            "--name",
            prometheus,
            "--network",
            NAME,
            "--network-alias",
            "prometheus",
            "-p",
            `127.0.0.1:${hostPort}:9090`,
            "-v",
            `${volume}:/prometheus`,
            "--health-cmd",
            PROMETHEUS_HEALTH_PROBE,
            "--health-interval",
            "2s",
            IMAGES.prometheus,
            ...prometheusCommand("1d"),
        ]);
    }

    async function waitHealthy(container: string): Promise<void> {
        await waitFor(`${container} to be healthy`, 60_000, () => docker(["inspect", "-f", "{{.State.Health.Status}}", container]).trim() === "healthy", 500);
    }

    beforeAll(async () => {
        requireDocker(BASE_IMAGE);
        nginxVersion();
        build(IMAGES.prometheus, "prometheus");
        build(IMAGES.exporter, "nginx-exporter");

        docker(["network", "create", "--label", "vllm-nginx.test=monitoring", NAME]);
        gateway = docker(["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", NAME]).trim();
        expect(gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);

        // Only on the test network's gateway: the containers reach them, nothing else does.
        // (The later --host wins over the helper's 127.0.0.1.)
        standIns = await Promise.all(
            ["vllm0", "vllm1"].map(async (id) =>
                startStandIn({ replicaId: id, model: "tiny", port: await freePort(), waitReady: false, args: ["--host", gateway, "--disable-uvicorn-access-log", "--itl-ms", "5"] }),
            ),
        );
        for (const s of standIns) {
            s.url = `http://${gateway}:${s.port}`;
            await waitFor(`stand-in ${s.replicaId} to answer /health on ${s.url}`, 15_000, async () => {
                if (s.proc.exitCode !== null) {
                    throw new Error(`stand-in ${s.replicaId} exited:\n${s.output()}`);
                }
                return (await request(`${s.url}/health`, { agent: false }).catch(() => undefined))?.status === 200;
            }, 100);
        }
        replicas = standIns.map((s) => ({ name: s.replicaId, address: `${gateway}:${s.port}`, host: "docker-host" }));
        const statusPort = await freePort();
        // The loopback listener is the one the helper waits on.
        nginx = await startNginx(
            `server {\n    listen 127.0.0.1:${statusPort};\n    listen ${gateway}:${statusPort};\n    location = /nginx-status { stub_status; }\n}\n`,
            statusPort,
        );

        docker(["run", "-d", "--name", `${NAME}-exporter`, "--network", NAME, "--network-alias", EXPORTER_ALIAS, IMAGES.exporter, ...exporterCommand(`http://${gateway}:${statusPort}/nginx-status`)]);

        hostPort = await freePort();
        api = new PrometheusApi(`http://127.0.0.1:${hostPort}`);
        runPrometheus();
        await waitHealthy(prometheus);
    }, 600_000);

    afterAll(async () => {
        for (const container of [prometheus, `${NAME}-exporter`]) {
            spawnSync("docker", ["rm", "-f", container]);
        }
        spawnSync("docker", ["network", "rm", NAME]);
        spawnSync("docker", ["volume", "rm", volume]);
        await nginx?.stop();
        await Promise.all(standIns.map((s) => s.kill()));
    });

    it("installs the config and rules with the install script and scrapes the stand-ins and the exporter", async () => {
        const result = install(prometheus, bundle(replicas));
        expect(result.stderr).toBe("");
        expect(result.stdout).toContain(`Prometheus in ${prometheus} serves config ${contentId(bundle(replicas))}`);
        expect(result.code).toBe(0);
        await api.waitForTargetsUp(["vllm/vllm0", "vllm/vllm1", `nginx/${EXPORTER_ALIAS}:${EXPORTER_PORT}`, "prometheus/127.0.0.1:9090"]);
        const nginxUp = await api.waitForValues('nginx_up{job="nginx"}', 15_000);
        expect(nginxUp[0].value).toBe(1);
    });

    it("produces values from the recording rules", async () => {
        let stop = false;
        const load = (async () => {
            while (!stop) {
                await Promise.all(standIns.map((s) => request(`${s.url}/v1/completions`, { body: { model: "tiny", prompt: "Count the scrapes", max_tokens: 8 }, agent: false })));
                await sleep(250);
            }
        })();
        try {
            const rates = await api.waitForValues("replica:vllm_requests:rate1m > 0", 60_000, "replica", ["vllm0", "vllm1"]);
            const ttft = await api.waitForValues("replica:vllm_ttft_seconds:p50_1m", 60_000, "replica", ["vllm0", "vllm1"]);
            const tokens = await api.waitForValues("fleet:vllm_generation_tokens:rate1m > 0", 60_000);
            console.log(
                [...rates, ...ttft, ...tokens].map((s) => `${s.metric.__name__}${s.metric.replica ? `{replica="${s.metric.replica}"}` : ""} = ${s.value.toPrecision(3)}`).join("\n"),
            );
            expect(ttft.every((s) => s.value > 0 && s.value < 1)).toBe(true);
        } finally {
            stop = true;
            await load;
        }
    });

    it("reloads a new config in the running container, without a restart", async () => {
        const startedAt = docker(["inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}", prometheus]).trim();
        const [processStart] = await api.query('process_start_time_seconds{job="prometheus"}');
        const result = install(prometheus, bundle(replicas.slice(0, 1)));
        expect(result.code, result.stderr).toBe(0);
        await waitFor("vllm1 to leave the targets", 15_000, async () => !("vllm/vllm1" in (await api.targets())), 500);
        expect(docker(["inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}", prometheus]).trim()).toBe(startedAt);
        const [processStartAfter] = await api.query('process_start_time_seconds{job="prometheus"}');
        expect(processStartAfter.value).toBe(processStart.value);
    });

    it("cannot be stopped or reconfigured over the network: no lifecycle API (a replica on the fleet's network tried)", async () => {
        for (const endpoint of ["/-/quit", "/-/reload"]) {
            // GNU wget in the image: -S prints the status line; a 403 makes it exit 8.
            const answer = spawnSync("docker", ["run", "--rm", "--network", NAME, "--entrypoint", "wget", IMAGES.prometheus, "-S", "-O", "-", "--post-data=x", `http://prometheus:9090${endpoint}`], { encoding: "utf8" });
            expect(answer.stdout + answer.stderr, endpoint).toContain("HTTP/1.1 403 Forbidden");
        }
        await sleep(1000);
        expect(docker(["inspect", "-f", "{{.State.Running}}", prometheus]).trim()).toBe("true");
        expect(Object.keys(await api.targets())).toContain("vllm/vllm0");
    });

    it("leaves the config in service when promtool rejects a new one, and says why", async () => {
        const live = docker(["exec", prometheus, "cat", "/etc/prometheus/prometheus.yml"]);
        const broken = prometheusBundle("global:\n  scrape_interval: often\n", renderRules());
        const result = install(prometheus, broken);
        expect(result.code).not.toBe(0);
        expect(result.stderr).toContain("promtool rejected the rendered Prometheus config; the previous one stays:");
        expect(result.stderr).toMatch(/scrape_interval|often/);
        expect(docker(["exec", prometheus, "cat", "/etc/prometheus/prometheus.yml"])).toBe(live);
        expect(Object.keys(await api.targets())).toContain("vllm/vllm0");
    });

    it("keeps its samples on the volume when the container is replaced", async () => {
        const expr = 'count_over_time(up{job="vllm",replica="vllm0"}[1h])';
        // A few scrapes' worth of history to look for afterwards.
        const [before] = await api.waitForValues(`${expr} >= 4`, 30_000);
        // As Pulumi replaces a container: stop (SIGTERM, the head block is written), remove, create.
        docker(["stop", "-t", "30", prometheus]);
        docker(["rm", prometheus]);
        runPrometheus();
        await waitHealthy(prometheus);
        expect(install(prometheus, bundle(replicas)).code).toBe(0);
        const [after] = await api.waitForValues(expr, 30_000);
        expect(after.value).toBeGreaterThanOrEqual(before.value);
    });
});
