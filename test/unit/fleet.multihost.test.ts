import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

/** The example stack users copy: three GPU hosts over ssh, nginx on gpu-a. */
describe("multihost stack resource graph (three GPU hosts over ssh)", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, any>;
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram("multihost", { apiKey: "mh-replica-key-0123456789" }, ["vllm-nginx:apiKey"]));
    });

    const containers = () => ofType(resources, "docker:index/container:Container");
    const replicas = () => containers().filter((c) => c.inputs.labels.some((l: any) => l.value === "replica"));

    it("creates one provider per host, each behind a check of its engine, and every Docker resource says which one it is on", () => {
        expect(ofType(resources, "pulumi:providers:docker").map((p) => [p.name, p.inputs.host])).toEqual([
            ["fleet-gpu-a-docker-gpu-a", "ssh://deploy@gpu-a.example.internal"],
            ["fleet-gpu-b-docker-gpu-b", "ssh://deploy@gpu-b.example.internal"],
            ["fleet-gpu-c-docker-gpu-c", "ssh://deploy@gpu-c.example.internal"],
        ]);
        for (const replica of replicas()) {
            const host = replica.inputs.labels.find((l: any) => l.label === "vllm-nginx.host").value;
            expect(replica.provider, replica.inputs.name).toBe(`fleet-${host}-docker-${host}`);
        }
        const lb = containers().find((c) => c.inputs.name === "multihost-nginx-lb")!;
        expect(lb.provider).toBe("fleet-gpu-a-docker-gpu-a");
    });

    it("guards the replicas that are on the network with client keys over TLS at the balancer, installed on gpu-a's engine", () => {
        const lb = containers().find((c) => c.inputs.name === "multihost-nginx-lb")!;
        const labels = Object.fromEntries(lb.inputs.labels.map((l: any) => [l.label, l.value]));
        expect(labels).toMatchObject({ "vllm-nginx.client-keys": "on", "vllm-nginx.tls": "on" });
        expect(lb.inputs.ports).toEqual([{ internal: 443, external: 8000, ip: "0.0.0.0" }]);
        const edge = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-lb-edge")!;
        expect(edge.secretInputs).toContain("stdin");
        expect(edge.inputs.environment).toMatchObject({ LB_ENGINE: "ssh://deploy@gpu-a.example.internal", TLS_MODE: "self-signed", TLS_NAMES: "DNS:gpu-a.example.internal" });
        expect(edge.inputs.stdin).toMatch(/^"~\^\(\?i:bearer\)\[ \\t\]\+mock-secret-[0-9a-f]{24}\[ \\t\]\*\$" team-a;$/m);
        expect(outputs.endpoint).toBe("https://gpu-a.example.internal:8000");
    });

    it("builds the vLLM image on each host and the balancer's only on gpu-a", () => {
        const images = ofType(resources, "docker:index/remoteImage:RemoteImage").map((i) => [i.name, i.provider]);
        expect(images).toEqual(
            expect.arrayContaining([
                ["fleet-gpu-a-vllm-image-pull", "fleet-gpu-a-docker-gpu-a"],
                ["fleet-gpu-b-vllm-image-pull", "fleet-gpu-b-docker-gpu-b"],
                ["fleet-gpu-c-vllm-image-pull", "fleet-gpu-c-docker-gpu-c"],
                ["fleet-nginx-image-build", "fleet-gpu-a-docker-gpu-a"],
            ]),
        );
        expect(images).toHaveLength(4);
    });

    it("runs the configured replicas, keeps gpu-b's spare free, and gives each replica its host's GPUs", () => {
        expect(replicas().map((r) => [r.inputs.name, r.inputs.deviceRequests[0].deviceIds.join(",")]).sort()).toEqual([
            ["multihost-gpu-a-vllm0", "0"],
            ["multihost-gpu-a-vllm1", "1"],
            ["multihost-gpu-b-vllm0", "0"],
            ["multihost-gpu-b-vllm1", "1"],
            ["multihost-gpu-b-vllm2", "2"],
            ["multihost-gpu-c-vllm0", "0,1"],
            ["multihost-gpu-c-vllm1", "2,3"],
        ]);
    });

    it("publishes replica ports on the loopback of the balancer's host and on the host's own address elsewhere, never 0.0.0.0", () => {
        const ports = Object.fromEntries(replicas().map((r) => [r.inputs.name, r.inputs.ports[0].ip]));
        expect(ports["multihost-gpu-a-vllm0"]).toBe("127.0.0.1");
        expect(ports["multihost-gpu-b-vllm0"]).toBe("10.40.0.12");
        expect(ports["multihost-gpu-c-vllm1"]).toBe("10.40.0.13");
    });

    it("has nginx reach gpu-a's replicas over the stack network and the others at their host's address", () => {
        expect(outputs.nginxConfig).toContain("server 172.29.40.10:8000 max_fails=3 fail_timeout=30s{{down:gpu-a-vllm0}};  # gpu-a-vllm0");
        expect(outputs.nginxConfig).toContain("server 10.40.0.12:8081 max_fails=3 fail_timeout=30s{{down:gpu-b-vllm0}};  # gpu-b-vllm0");
        expect(outputs.nginxConfig).toContain("server 10.40.0.13:8082 max_fails=3 fail_timeout=30s{{down:gpu-c-vllm1}};  # gpu-c-vllm1");
        expect(outputs.nginxConfig).not.toContain("gpu-b-vllm3");
    });

    it("points each replica's rotation command at its own host's engine, and the balancer's at gpu-a's", () => {
        const member = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-gpu-c-vllm0-rotation")!;
        expect(member.inputs.environment).toMatchObject({ ENGINE: "ssh://deploy@gpu-c.example.internal", LB_ENGINE: "ssh://deploy@gpu-a.example.internal", ADDRESS: "10.40.0.13:8081" });
    });

    it("lists every replica with its host in the outputs", () => {
        expect(outputs.replicas.map((r: any) => [r.name, r.host, r.url])).toContainEqual(["gpu-b-vllm2", "gpu-b", "http://10.40.0.12:8083"]);
        expect(outputs.replicas).toHaveLength(7);
    });
});
