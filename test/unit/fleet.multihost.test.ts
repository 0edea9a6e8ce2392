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

    it("builds the vLLM image on each host, the balancer's on gpu-a, and the gates' on gpu-b and gpu-c", () => {
        const images = ofType(resources, "docker:index/remoteImage:RemoteImage").map((i) => [i.name, i.provider]);
        expect(images).toEqual(
            expect.arrayContaining([
                ["fleet-gpu-a-vllm-image-pull", "fleet-gpu-a-docker-gpu-a"],
                ["fleet-gpu-b-vllm-image-pull", "fleet-gpu-b-docker-gpu-b"],
                ["fleet-gpu-c-vllm-image-pull", "fleet-gpu-c-docker-gpu-c"],
                ["fleet-nginx-image-build", "fleet-gpu-a-docker-gpu-a"],
                // The relay's gates run Debian's nginx too, on the hosts they guard.
                ["fleet-gpu-b-nginx-image-build", "fleet-gpu-b-docker-gpu-b"],
                ["fleet-gpu-c-nginx-image-build", "fleet-gpu-c-docker-gpu-c"],
            ]),
        );
        expect(images).toHaveLength(6);
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

    it("publishes replica ports on the loopback of the balancer's host, and none on the other hosts, where one gate per host publishes on the host's address", () => {
        const ports = Object.fromEntries(replicas().map((r) => [r.inputs.name, r.inputs.ports]));
        expect(ports["multihost-gpu-a-vllm0"]).toEqual([{ internal: 8000, external: 8081, ip: "127.0.0.1" }]);
        expect(ports["multihost-gpu-b-vllm0"]).toBeUndefined();
        expect(ports["multihost-gpu-c-vllm1"]).toBeUndefined();
        const gates = containers().filter((c) => c.inputs.labels.some((l: any) => l.label === "vllm-nginx.role" && l.value === "gate"));
        expect(gates.map((g) => [g.inputs.name, g.provider, g.inputs.ports])).toEqual([
            ["multihost-gate", "fleet-gpu-b-docker-gpu-b", [{ internal: 8081, external: 8081, ip: "10.40.0.12" }]],
            ["multihost-gate", "fleet-gpu-c-docker-gpu-c", [{ internal: 8081, external: 8081, ip: "10.40.0.13" }]],
        ]);
    });

    it("runs the relay's egress on gpu-a at a fixed address below the replicas', unpublished", () => {
        const egress = containers().find((c) => c.inputs.name === "multihost-relay")!;
        expect(egress.provider).toBe("fleet-gpu-a-docker-gpu-a");
        expect(egress.inputs.ports).toBeUndefined();
        expect(egress.inputs.networksAdvanced).toEqual([{ name: "multihost-vllm-nginx", aliases: ["relay"], ipv4Address: "172.29.40.9" }]);
    });

    it("has nginx reach gpu-a's replicas over the stack network and the others through the relay's egress, one port each", () => {
        expect(outputs.nginxConfig).toContain("server 172.29.40.10:8000 max_fails=3 fail_timeout=30s{{down:gpu-a-vllm0}};  # gpu-a-vllm0");
        expect(outputs.nginxConfig).toContain("server 172.29.40.9:11000 max_fails=3 fail_timeout=30s{{down:gpu-b-vllm0}};  # gpu-b-vllm0");
        expect(outputs.nginxConfig).toContain("server 172.29.40.9:12001 max_fails=3 fail_timeout=30s{{down:gpu-c-vllm1}};  # gpu-c-vllm1");
        expect(outputs.nginxConfig).not.toContain("gpu-b-vllm3");
    });

    it("installs each end's stream config with its peers' certificates only: the egress trusts both gates, each gate the egress", () => {
        const installs = Object.fromEntries(
            ofType(resources, "command:local:Command")
                .filter((c) => c.name.startsWith("fleet-relay-"))
                .map((c) => [c.name, c]),
        );
        expect(Object.keys(installs).sort()).toEqual(["fleet-relay-egress-install", "fleet-relay-gate-gpu-b-install", "fleet-relay-gate-gpu-c-install"]);
        const egress = installs["fleet-relay-egress-install"].inputs.environment;
        expect(egress).toMatchObject({ RELAY_ENGINE: "ssh://deploy@gpu-a.example.internal", RELAY_CONTAINER: "multihost-relay" });
        expect(egress.RELAY_PEERS).toBe("gate-gpu-b.crt|ssh://deploy@gpu-b.example.internal|multihost-gate gate-gpu-c.crt|ssh://deploy@gpu-c.example.internal|multihost-gate");
        expect(egress.RELAY_CONFIG).toContain("listen 11002;\n    allow 172.29.40.128/25;\n    deny all;\n    proxy_pass 10.40.0.12:8081;".replace(/\\n/g, "\n"));
        expect(egress.RELAY_CONFIG).toContain("proxy_ssl_name gpu-b-vllm2.relay.vllm-nginx;");
        const gate = installs["fleet-relay-gate-gpu-c-install"].inputs.environment;
        expect(gate).toMatchObject({ RELAY_ENGINE: "ssh://deploy@gpu-c.example.internal", RELAY_PEERS: "egress.crt|ssh://deploy@gpu-a.example.internal|multihost-relay" });
        expect(gate.RELAY_CONFIG).toContain("    gpu-c-vllm1.relay.vllm-nginx 172.29.40.11:8000;");
        expect(gate.RELAY_CONFIG).not.toContain("gpu-b-");
        // No end is given a key: each makes its own, and only certificates cross.
        for (const install of Object.values(installs)) {
            expect(install.secretInputs).toEqual([]);
            expect(JSON.stringify(install.inputs)).not.toMatch(/PRIVATE KEY/);
        }
    });

    it("points each replica's rotation command at its own host's engine, and the balancer's at gpu-a's", () => {
        const member = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-gpu-c-vllm0-rotation")!;
        expect(member.inputs.environment).toMatchObject({ ENGINE: "ssh://deploy@gpu-c.example.internal", LB_ENGINE: "ssh://deploy@gpu-a.example.internal", ADDRESS: "172.29.40.9:12000" });
    });

    it("lists every replica with its host in the outputs", () => {
        expect(outputs.replicas.map((r: any) => [r.name, r.host, r.url])).toContainEqual(["gpu-a-vllm1", "gpu-a", "http://127.0.0.1:8082"]);
        // A replica of another host has no URL of its own: it publishes nothing.
        expect(outputs.replicas.map((r: any) => [r.name, r.host, r.url])).toContainEqual(["gpu-b-vllm2", "gpu-b", undefined]);
        expect(outputs.replicas).toHaveLength(7);
    });
});
