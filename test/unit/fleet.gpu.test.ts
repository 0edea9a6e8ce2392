import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

describe("gpu stack resource graph (the guide's topology)", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, any>;
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram("gpu", { hfToken: "hf_mock_token", apiKey: "sk-mock-key" }, ["vllm-nginx:hfToken", "vllm-nginx:apiKey"]));
    });

    const replicas = () =>
        ofType(resources, "docker:index/container:Container").filter((c) => c.inputs.labels.some((l: any) => l.value === "replica"));

    it("runs one replica per GPU with a device request for exactly that GPU", () => {
        expect(replicas().map((r) => r.inputs.deviceRequests)).toEqual([
            [{ driver: "nvidia", deviceIds: ["0"], capabilities: ["gpu"] }],
            [{ driver: "nvidia", deviceIds: ["1"], capabilities: ["gpu"] }],
        ]);
    });

    it("sets CUDA_DEVICE_ORDER, the proxies (both spellings), HF_TOKEN and VLLM_API_KEY in every replica", () => {
        for (const replica of replicas()) {
            expect(replica.inputs.envs).toEqual(
                expect.arrayContaining([
                    "CUDA_DEVICE_ORDER=PCI_BUS_ID",
                    "http_proxy=http://proxy.example.internal:3128",
                    "HTTPS_PROXY=http://proxy.example.internal:3128",
                    "no_proxy=localhost,127.0.0.1",
                    "HF_TOKEN=hf_mock_token",
                    "VLLM_API_KEY=sk-mock-key",
                ]),
            );
            expect(replica.inputs.envs.join(" ")).not.toContain("VLLM_CPU_");
            expect(replica.secretInputs).toContain("envs");
        }
    });

    it("builds vLLM from the checkout with the guide's Dockerfile, target and proxy build args", () => {
        const builds = ofType(resources, "docker:index/remoteImage:RemoteImage");
        const vllm = builds.find((b) => b.name === "fleet-vllm-image-build")!;
        expect(vllm.inputs.name).toBe("vllm-nginx/gpu-vllm:latest");
        expect(vllm.inputs.build.context).toMatch(/\/vllm$/);
        expect(vllm.inputs.build.dockerfile).toBe("docker/Dockerfile");
        expect(vllm.inputs.build.target).toBe("vllm-openai");
        expect(vllm.inputs.build.buildArgs).toMatchObject({
            http_proxy: "http://proxy.example.internal:3128",
            https_proxy: "http://proxy.example.internal:3128",
        });
        expect(builds.every((b) => b.inputs.build !== undefined), "nothing is pulled").toBe(true);
        for (const replica of replicas()) {
            expect(replica.inputs.image).toBe("sha256:id-of-vllm-nginx/gpu-vllm:latest");
        }
    });

    it("serves Llama-2-7b-chat-hf without tensor parallelism (one GPU each)", () => {
        expect(replicas()[0].inputs.command).toEqual(["meta-llama/Llama-2-7b-chat-hf", "--host", "0.0.0.0", "--port", "8000"]);
        expect(outputs.servedModel).toBe("meta-llama/Llama-2-7b-chat-hf");
    });

    it("renders least_conn over both GPUs' replicas", () => {
        expect(outputs.nginxConfig).toContain('method = "least_conn",');
        expect(outputs.nginxConfig).toContain('{ name = "vllm0", address = "172.29.20.10:8000", out = "{{down:vllm0}}" },');
        // The template: each replica joins the rotation (the `down` placeholder empties) once it serves.
        expect(outputs.nginxConfig).toContain("server 172.29.20.10:8000 max_fails=3 fail_timeout=30s{{down:vllm0}};  # vllm0{{note:vllm0}}");
        expect(outputs.nginxConfig).toContain("server 172.29.20.11:8000 max_fails=3 fail_timeout=30s{{down:vllm1}};  # vllm1{{note:vllm1}}");
    });
});

