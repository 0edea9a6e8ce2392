/**
 * The monitoring components under Pulumi's mocks: which resources each setting creates, with what
 * names, ports, volumes and commands. No engine, no Docker.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import type { FleetMonitoring as FleetMonitoringType } from "../../components/monitoring/fleetMonitoring";
import { MonitoringSettings, parseMonitoringSettings } from "../../components/monitoring/settings";
import { parseBundle } from "../../components/monitoring/configBundle";

interface Recorded {
    type: string;
    name: string;
    inputs: Record<string, any>;
}

/** Each resource's dependencies by name, as the engine sees them (the mocks API does not pass them on). */
const dependencies = new Map<string, string[]>();

const resources: Recorded[] = [];

function settings(value: unknown): MonitoringSettings {
    return parseMonitoringSettings(value, (given, allowed) => {
        throw new Error(`${JSON.stringify(given)}: ${allowed}`);
    });
}

const REPLICAS = [
    { name: "vllm0", address: "172.29.10.10:8000", host: "local" },
    { name: "vllm1", address: "172.29.10.11:8000", host: "local" },
];

function resolve<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise((done) => output.apply((value) => done(value)));
}

const ofStack = (prefix: string, type: string) => resources.filter((r) => r.type === type && r.name.startsWith(`${prefix}-monitoring`));
const containers = (prefix: string) => ofStack(prefix, "docker:index/container:Container");
const container = (prefix: string, name: string) => containers(prefix).find((c) => c.inputs.name === name)!;

describe("FleetMonitoring", () => {
    const stacks: Record<string, FleetMonitoringType> = {};

    beforeAll(async () => {
        await pulumi.runtime.setMocks(
            {
                newResource(args) {
                    resources.push({ type: args.type, name: args.name, inputs: args.inputs });
                    const computed: Record<string, unknown> = {};
                    if (args.type === "docker:index/remoteImage:RemoteImage") {
                        computed.imageId = `sha256:id-of-${args.inputs.name}`;
                    }
                    if (args.type === "command:local:Command") {
                        computed.stdout = "installed";
                    }
                    return { id: `${args.name}-id`, state: { ...args.inputs, ...computed } };
                },
                call(args) {
                    return args.inputs;
                },
            },
            "vllm-nginx",
            "dev",
            false,
        );
        const monitor = pulumi.runtime.getMonitor() as any;
        const register = monitor.registerResource.bind(monitor);
        monitor.registerResource = (req: any, callback: any) => {
            dependencies.set(req.getName(), req.getDependenciesList().map((urn: string) => urn.split("::").pop()));
            return register(req, callback);
        };
        // Imported after the mocks, as the program would be.
        const { FleetMonitoring } = await import("../../components/monitoring/fleetMonitoring");
        const make = (prefix: string, value: unknown) =>
            new FleetMonitoring(`${prefix}-monitoring`, { prefix, settings: settings(value), networkName: `${prefix}-vllm-nginx`, replicas: REPLICAS });
        stacks.dev = make("dev", true);
        stacks.gra = make("gra", { prometheus: true, grafana: true, bind: "0.0.0.0", prometheusPort: 19090, grafanaPort: 13000 });
        stacks.ci = make("ci", { prometheus: true, buildBaseImage: "vllm-nginx/debian:bookworm" });
        stacks.off = make("off", false);
        const docker = await import("@pulumi/docker");
        const replica = new docker.Container("dep-vllm0", { name: "dep-vllm0", image: "standin" });
        stacks.dep = new FleetMonitoring("dep-monitoring", {
            prefix: "dep",
            settings: settings(true),
            networkName: "dep-vllm-nginx",
            replicas: REPLICAS,
            replicaDependencies: [replica],
            balancerDependencies: [replica],
        });
        for (const stack of Object.values(stacks)) {
            await Promise.all([resolve(stack.prometheusUrl), resolve(stack.grafanaUrl), resolve(stack.prometheusConfigId)]);
        }
    });

    describe("turned on: Prometheus and the exporter, no Grafana", () => {
        it("pulls the pinned upstream images", () => {
            expect(ofStack("dev", "docker:index/remoteImage:RemoteImage").map((r) => [r.inputs.name, r.inputs.build])).toEqual([
                ["prom/prometheus:v3.13.2", undefined],
                ["nginx/nginx-prometheus-exporter:1.5.1", undefined],
            ]);
        });

        it("prefixes every container and volume name with the stack", () => {
            expect(containers("dev").map((c) => c.inputs.name).sort()).toEqual(["dev-nginx-exporter", "dev-prometheus"]);
            expect(ofStack("dev", "docker:index/volume:Volume").map((v) => v.inputs.name)).toEqual(["dev-prometheus-data"]);
        });

        it("runs Prometheus on the fleet network, published on the loopback, with its data on the volume", () => {
            const prometheus = container("dev", "dev-prometheus");
            expect(prometheus.inputs.image).toBe("sha256:id-of-prom/prometheus:v3.13.2");
            expect(prometheus.inputs.networksAdvanced).toEqual([{ name: "dev-vllm-nginx", aliases: ["prometheus"] }]);
            expect(prometheus.inputs.ports).toEqual([{ internal: 9090, external: 9090, ip: "127.0.0.1" }]);
            expect(prometheus.inputs.volumes).toEqual([{ volumeName: "dev-prometheus-data", containerPath: "/prometheus" }]);
            expect(prometheus.inputs.command).toEqual([
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=15d",
                "--web.listen-address=:9090",
            ]);
            expect(prometheus.inputs.healthcheck).toEqual({
                tests: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:9090/-/ready"],
                interval: "5s",
                timeout: "3s",
                retries: 3,
                // In the form Docker reports back, so that a second `up` sees no change.
                startPeriod: "2m0s",
            });
            expect(prometheus.inputs.wait).toBe(true);
        });

        it("installs the config and rules through docker exec, again whenever the container is new", () => {
            const [install] = ofStack("dev", "command:local:Command");
            expect(install.inputs.create).toBe(install.inputs.update);
            expect(install.inputs.create).toContain('docker exec -i "$CONTAINER"');
            expect(install.inputs.create).toContain("promtool check config next/prometheus.yml");
            expect(install.inputs.create).toContain("kill -HUP 1");
            expect(install.inputs.create).not.toContain("/-/reload");
            expect(install.inputs.environment).toEqual({ CONTAINER: "dev-prometheus", CONFIG_ID: expect.stringMatching(/^[0-9a-f]{12}$/), ENGINE: "" });
            expect(install.inputs.triggers).toEqual(["dev-monitoring-prometheus-container-id"]);
            const files = parseBundle(install.inputs.stdin);
            expect(files.map((f) => f.path)).toEqual(["prometheus.yml", "rules/vllm-nginx.yml"]);
            expect(files[0].content).toContain("- '172.29.10.11:8000'");
            expect(files[0].content).toContain("- nginx-exporter:9113");
            expect(files[1].content).toContain("alert: VllmReplicaDown");
        });

        it("runs the exporter on the fleet network against the balancer's status listener, unpublished", () => {
            const exporter = container("dev", "dev-nginx-exporter");
            expect(exporter.inputs.command).toEqual(["--nginx.scrape-uri=http://nginx-lb:8081/nginx-status", "--web.listen-address=:9113"]);
            expect(exporter.inputs.networksAdvanced).toEqual([{ name: "dev-vllm-nginx", aliases: ["nginx-exporter"] }]);
            expect(exporter.inputs.ports).toBeUndefined();
        });

        it("reports Prometheus's URL and no Grafana", async () => {
            expect(await resolve(stacks.dev.prometheusUrl)).toBe("http://127.0.0.1:9090");
            expect(await resolve(stacks.dev.grafanaUrl)).toBeUndefined();
            expect(await resolve(stacks.dev.prometheusConfigId)).toMatch(/^[0-9a-f]{12}$/);
        });
    });

    describe("with the fleet's resources", () => {
        it("installs the config once the replicas are up, and starts the exporter after the balancer", () => {
            expect(dependencies.get("dep-monitoring-prometheus-config")).toEqual(expect.arrayContaining(["dep-monitoring-prometheus-container", "dep-vllm0"]));
            expect(dependencies.get("dep-monitoring-exporter-container")).toContain("dep-vllm0");
            expect(dependencies.get("dev-monitoring-prometheus-config")).toEqual(["dev-monitoring-prometheus-container"]);
        });
    });

    describe("grafana: true", () => {
        it("adds Grafana with its own volume, on the chosen ports and address", async () => {
            const grafana = container("gra", "gra-grafana");
            expect(grafana.inputs.ports).toEqual([{ internal: 3000, external: 13000, ip: "0.0.0.0" }]);
            expect(grafana.inputs.volumes).toEqual([{ volumeName: "gra-grafana-data", containerPath: "/var/lib/grafana" }]);
            expect(container("gra", "gra-prometheus").inputs.ports).toEqual([{ internal: 9090, external: 19090, ip: "0.0.0.0" }]);
            expect(ofStack("gra", "docker:index/remoteImage:RemoteImage").map((r) => r.inputs.name)).toContain("grafana/grafana:11.6.14");
            expect(await resolve(stacks.gra.grafanaUrl)).toBe("http://127.0.0.1:13000");
        });

        it("lets visitors view and nobody log in: no admin/admin on an open port", () => {
            const envs = container("gra", "gra-grafana").inputs.envs as string[];
            expect(envs).toEqual(
                expect.arrayContaining(["GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer", "GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION=true", "GF_AUTH_DISABLE_LOGIN_FORM=true", "GF_AUTH_BASIC_ENABLED=false"]),
            );
            expect(envs.join(" ")).not.toMatch(/ADMIN_PASSWORD|ADMIN_USER/);
        });

        it("provisions the data source, the provider and the dashboard as files", () => {
            const uploads = container("gra", "gra-grafana").inputs.uploads as Array<{ file: string; content: string }>;
            expect(uploads.map((u) => u.file)).toEqual([
                "/etc/grafana/provisioning/datasources/vllm-nginx.yaml",
                "/etc/grafana/provisioning/dashboards/vllm-nginx.yaml",
                "/etc/grafana/dashboards/vllm-nginx/fleet.json",
            ]);
            expect(uploads[0].content).toContain("url: http://prometheus:9090");
            expect(uploads[1].content).toContain("path: /etc/grafana/dashboards/vllm-nginx");
            expect(JSON.parse(uploads[2].content).title).toBe("vLLM fleet (gra)");
        });
    });

    describe("buildBaseImage: built from Debian's packages", () => {
        it("builds Prometheus and the exporter from images/ on the base with the classic builder", () => {
            const images = ofStack("ci", "docker:index/remoteImage:RemoteImage");
            expect(images.map((r) => r.inputs.name)).toEqual(["vllm-nginx/ci-prometheus:latest", "vllm-nginx/ci-nginx-exporter:latest"]);
            for (const image of images) {
                expect(image.inputs.build.context).toMatch(/images\/(prometheus|nginx-exporter)$/);
                expect(image.inputs.build.buildArgs).toEqual({ BASE_IMAGE: "vllm-nginx/debian:bookworm" });
                expect(image.inputs.build.useLegacyBuilder).toBe(true);
            }
            expect(container("ci", "ci-prometheus").inputs.image).toBe("sha256:id-of-vllm-nginx/ci-prometheus:latest");
        });
    });

    describe("prometheus: false", () => {
        it("creates nothing but the empty component, and reports no URL", async () => {
            const created = resources.filter((r) => r.name.startsWith("off-"));
            expect(created.map((r) => r.type)).toEqual(["vllm-nginx:monitoring:FleetMonitoring"]);
            expect(await resolve(stacks.off.prometheusUrl)).toBeUndefined();
        });
    });
});
