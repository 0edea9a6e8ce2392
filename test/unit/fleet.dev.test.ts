import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

describe("dev stack resource graph (cpu backend, 2 replicas)", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, any>;
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram("dev"));
    });

    const containers = () => ofType(resources, "docker:index/container:Container");
    const replicas = () => containers().filter((c) => c.inputs.labels.some((l: any) => l.value === "replica"));

    it("creates the network, the caches, the images, two replicas with their rotation and rollout steps, the balancer and its config, and monitoring", () => {
        const count = (type: string) => ofType(resources, type).length;
        expect(count("docker:index/network:Network")).toBe(1);
        // The compile cache, the front door's files, and Prometheus's data.
        expect(count("docker:index/volume:Volume")).toBe(3);
        // vLLM, nginx, Prometheus, the nginx exporter.
        expect(count("docker:index/remoteImage:RemoteImage")).toBe(4);
        expect(count("docker:index/container:Container")).toBe(5);
        // The front door's files and the config install, one rotation member
        // per replica, one rollout step per replica (maxUnavailable 1), and Prometheus's config.
        expect(ofType(resources, "command:local:Command").map((c) => c.name).sort()).toEqual([
            "fleet-lb-config",
            "fleet-lb-edge",
            "fleet-monitoring-prometheus-config",
            "fleet-rollout-0-step",
            "fleet-rollout-1-step",
            "fleet-vllm0-rotation",
            "fleet-vllm1-rotation",
        ]);
        expect(ofType(resources, "vllm-nginx:index:VllmFleet")).toHaveLength(1);
    });

    it("runs nginx with lbWorkers workers (2), not Debian's one per host CPU", () => {
        const lb = containers().find((c) => c.inputs.name === "dev-nginx-lb")!;
        expect(lb.inputs.command).toEqual(["nginx", "-g", "daemon off; worker_processes 2;"]);
    });

    it("prefixes every name on the Docker host with the stack name", () => {
        expect(containers().map((c) => c.inputs.name).sort()).toEqual(["dev-nginx-exporter", "dev-nginx-lb", "dev-prometheus", "dev-vllm0", "dev-vllm1"]);
        expect(ofType(resources, "docker:index/network:Network")[0].inputs.name).toBe("dev-vllm-nginx");
        expect(ofType(resources, "docker:index/volume:Volume")[0].inputs.name).toBe("dev-vllm-compile-cache");
    });

    it("runs CPU replicas: no GPU request, the CPU backend's environment, default image", () => {
        for (const replica of replicas()) {
            expect(replica.inputs.deviceRequests).toBeUndefined();
            expect(replica.inputs.envs).toContain("VLLM_CPU_KVCACHE_SPACE=2");
            expect(replica.inputs.envs).toContain("VLLM_CPU_OMP_THREADS_BIND=auto");
            expect(replica.inputs.envs.join(" ")).not.toContain("CUDA_DEVICE_ORDER");
            expect(replica.inputs.capabilities).toEqual({ adds: ["CAP_SYS_NICE"] });
            expect(replica.secretInputs, "no secret set, so the environment is plain").not.toContain("envs");
        }
        const pulled = ofType(resources, "docker:index/remoteImage:RemoteImage").find((r) => r.name === "fleet-vllm-image-pull")!;
        expect(pulled.inputs.name).toBe("public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0");
        for (const replica of replicas()) {
            expect(replica.inputs.image).toBe("sha256:id-of-public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0");
        }
    });

    it("passes the model first and the stack's extra flags after the program's", () => {
        expect(replicas()[0].inputs.command).toEqual([
            "Qwen/Qwen2.5-0.5B-Instruct",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--max-model-len",
            "4096",
            "--dtype",
            "bfloat16",
        ]);
    });

    it("publishes replica ports 8081, 8082 on the loopback and the balancer on 8000", () => {
        expect(replicas().map((r) => r.inputs.ports)).toEqual([
            [{ internal: 8000, external: 8081, ip: "127.0.0.1" }],
            [{ internal: 8000, external: 8082, ip: "127.0.0.1" }],
        ]);
        const lb = containers().find((c) => c.inputs.name === "dev-nginx-lb")!;
        expect(lb.inputs.ports).toEqual([{ internal: 80, external: 8000, ip: "0.0.0.0" }]);
    });

    it("gives replicas fixed addresses and guide-style aliases on the stack network", () => {
        expect(replicas().map((r) => r.inputs.networksAdvanced[0])).toEqual([
            { name: "dev-vllm-nginx", aliases: ["vllm0"], ipv4Address: "172.29.10.10" },
            { name: "dev-vllm-nginx", aliases: ["vllm1"], ipv4Address: "172.29.10.11" },
        ]);
        expect(ofType(resources, "docker:index/network:Network")[0].inputs.ipamConfigs).toEqual([
            { subnet: "172.29.10.0/24", ipRange: "172.29.10.128/25" },
        ]);
    });

    it("mounts the HF cache and the shared compile cache, with ipc host and 10.24gb of shm", () => {
        for (const replica of replicas()) {
            expect(replica.inputs.volumes).toEqual([
                { hostPath: expect.stringMatching(/\/\.cache\/huggingface$/), containerPath: "/root/.cache/huggingface" },
                { volumeName: "dev-vllm-compile-cache", containerPath: "/root/.cache/vllm" },
            ]);
            expect(replica.inputs.ipcMode).toBe("host");
            expect(replica.inputs.shmSize).toBe(10486);
        }
    });

    it("joins nginx's rotation once /health answers, restarts on crash, and is drained before it stops", () => {
        for (const replica of replicas()) {
            expect(replica.inputs.healthcheck.tests[1]).toContain("http://127.0.0.1:8000/health");
            // The rotation command waits for /health (and fails fast on a crash loop), not the container's deploy.
            expect(replica.inputs.wait).toBe(false);
            expect(replica.inputs.restart).toBe("unless-stopped");
            expect(replica.inputs.destroyGraceSeconds).toBe(120);
            // Docker's init as PID 1: it reaps the processes vLLM kills at shutdown, so the container can stop.
            expect(replica.inputs.init).toBe(true);
            expect(replica.inputs.labels).toEqual(expect.arrayContaining([{ label: "vllm-nginx.spec", value: expect.stringMatching(/^[0-9a-f]{16}$/) }]));
        }
        for (const name of ["vllm0", "vllm1"]) {
            const member = ofType(resources, "command:local:Command").find((c) => c.name === `fleet-${name}-rotation`)!;
            expect(member.inputs.create).toBe('sh -c "$ROLLOUT_SH" member.sh admit');
            expect(member.inputs.delete).toBe('sh -c "$ROLLOUT_SH" member.sh retire');
            expect(member.inputs.environment).toMatchObject({ NAME: name, CONTAINER: `dev-${name}`, STARTUP_TIMEOUT: "1800", GRACE: "120", LB_CONTAINER: "dev-nginx-lb" });
            expect(member.inputs.environment.ADDRESS).toMatch(/^172\.29\.10\.1\d:8000$/);
            expect(member.inputs.triggers).toEqual([`fleet-${name}-container-id`]);
            expect(member.dependsOn).toEqual(expect.arrayContaining([`fleet-${name}-container`, "fleet-lb-config"]));
        }
    });

    it("starts replica 1 only after replica 0 serves (warmFirstReplica), each after its rollout step", () => {
        const [first, second] = replicas();
        expect(first.dependsOn).toContain("fleet-rollout-0-step");
        expect(first.dependsOn).not.toContain("fleet-vllm1-rotation");
        expect(second.dependsOn).toEqual(expect.arrayContaining(["fleet-vllm0-rotation", "fleet-rollout-1-step"]));
        const steps = ofType(resources, "command:local:Command").filter((c) => c.name.startsWith("fleet-rollout-"));
        expect(steps.find((c) => c.name === "fleet-rollout-1-step")!.dependsOn).toContain("fleet-rollout-0-step");
    });

    it("installs the config template as soon as the balancer runs, and again for a new balancer container", () => {
        const install = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-lb-config")!;
        expect(install.dependsOn).toEqual(expect.arrayContaining(["fleet-lb-container", "fleet-lb-edge"]));
        expect(install.dependsOn.filter((d) => d.includes("vllm")), "it does not wait for any replica").toEqual([]);
        expect(install.inputs.stdin).toContain("server 172.29.10.10:8000 max_fails=3 fail_timeout=30s{{down:vllm0}};  # vllm0{{note:vllm0}}");
        expect(install.inputs.stdin).toContain("# vllm-nginx:replica vllm1 172.29.10.11:8000");
        expect(install.inputs.environment.LB_CONTAINER).toBe("dev-nginx-lb");
        expect(install.inputs.environment.CONFIG_ID).toMatch(/^[0-9a-f]{12}$/);
        expect(install.inputs.triggers).toEqual(["fleet-lb-container-id"]);
    });

    it("builds the balancer image from the default nginx base", () => {
        const image = ofType(resources, "docker:index/remoteImage:RemoteImage").find((r) => r.inputs.build !== undefined)!;
        expect(image.inputs.name).toBe("vllm-nginx/dev-nginx-lb:latest");
        expect(image.inputs.build.buildArgs).toEqual({ NGINX_BASE_IMAGE: "debian:12.12-slim" });
        expect(image.inputs.build.context).toMatch(/\/images\/nginx$/);
        expect(image.inputs.build.useLegacyBuilder).toBe(true);
        expect(image.inputs.triggers.context).toMatch(/^[0-9a-f]{64}$/);
        const lb = ofType(resources, "docker:index/container:Container").find((c) => c.inputs.name === "dev-nginx-lb")!;
        expect(lb.inputs.image).toBe("sha256:id-of-vllm-nginx/dev-nginx-lb:latest");
    });

    it("scrapes every replica once it serves, and nginx through the exporter, with Prometheus on the loopback", () => {
        const install = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-monitoring-prometheus-config")!;
        expect(install.dependsOn).toEqual(expect.arrayContaining(["fleet-vllm0-rotation", "fleet-vllm1-rotation"]));
        expect(install.inputs.stdin).toContain("172.29.10.10:8000");
        expect(install.inputs.stdin).toContain("172.29.10.11:8000");
        const prometheus = containers().find((c) => c.inputs.name === "dev-prometheus")!;
        expect(prometheus.inputs.ports).toEqual([{ internal: 9090, external: 9090, ip: "127.0.0.1" }]);
        expect(outputs.prometheusUrl).toBe("http://127.0.0.1:9090");
    });

    it("exports the endpoint, the served model and the replicas", () => {
        expect(outputs.endpoint).toBe("http://127.0.0.1:8000");
        expect(outputs.openaiBaseUrl).toBe("http://127.0.0.1:8000/v1");
        expect(outputs.servedModel).toBe("Qwen/Qwen2.5-0.5B-Instruct");
        expect(outputs.replicas.map((r: any) => [r.name, r.container, r.url])).toEqual([
            ["vllm0", "dev-vllm0", "http://127.0.0.1:8081"],
            ["vllm1", "dev-vllm1", "http://127.0.0.1:8082"],
        ]);
        expect(outputs.configId).toMatch(/^[0-9a-f]{12}$/);
    });
});
