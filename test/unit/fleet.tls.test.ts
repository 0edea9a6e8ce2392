import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

const MATERIAL = { ca: "ca-pem", cert: "cert-pem", key: "key-pem-never-plain" };

/** The multihost stack with gpu-b reached over TCP with TLS, its material in the secret hostTls. */
describe("a tcp:// engine with TLS material from the secret hostTls", () => {
    let resources: RecordedResource[];
    beforeAll(async () => {
        ({ resources } = await runProgram(
            "multihost",
            {
                hosts: [
                    { name: "gpu-a", engine: "ssh://deploy@gpu-a.example.internal", gpus: ["0"] },
                    { name: "gpu-b", engine: "tcp://gpu-b.example.internal:2376", address: "10.40.0.12", gpus: ["0"] },
                ],
                hostTls: JSON.stringify({ "gpu-b": MATERIAL }),
                apiKey: "mh-replica-key-0123456789",
            },
            ["vllm-nginx:hostTls", "vllm-nginx:apiKey"],
        ));
    });

    it("gives gpu-b's provider the material, as secrets, and gpu-a's none", () => {
        const [a, b] = ofType(resources, "pulumi:providers:docker");
        expect(b.inputs).toMatchObject({ host: "tcp://gpu-b.example.internal:2376", caMaterial: "ca-pem", certMaterial: "cert-pem", keyMaterial: "key-pem-never-plain" });
        expect(b.secretInputs).toEqual(expect.arrayContaining(["caMaterial", "certMaterial", "keyMaterial"]));
        expect(a.inputs.keyMaterial).toBeUndefined();
    });

    it("hands it, secret, to every command that acts on gpu-b, and to no other", () => {
        const commands = ofType(resources, "command:local:Command");
        const onB = commands.filter((c) => c.inputs.environment.ENGINE_TLS !== undefined);
        expect(onB.map((c) => c.name).sort()).toEqual(["fleet-gpu-b-vllm0-rotation", "fleet-relay-egress-install", "fleet-relay-gate-gpu-b-install", "fleet-rollout-1-step"]);
        for (const command of onB) {
            expect(JSON.parse(command.inputs.environment.ENGINE_TLS)).toEqual({ "tcp://gpu-b.example.internal:2376": MATERIAL });
            expect(command.secretInputs, command.name).toContain("environment");
        }
    });
});
