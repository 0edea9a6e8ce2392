import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

/** The dev stack at 3 replicas with one spare, after a deployment that ran vllm0-vllm2 on other settings. */
describe("a rollout planned from the last deployment: one spare replica", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, any>;
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram("dev", { replicas: "3", rollout: { spareReplicas: 1 } }, [], undefined, {
            rollout: { spec: "spec-of-the-last-deployment", active: ["vllm0", "vllm1", "vllm2"] },
        }));
    });

    const byName = (name: string) => resources.find((r) => r.name === name)!;
    const containers = () => ofType(resources, "docker:index/container:Container").map((c) => c.inputs.name).sort();

    it("reads the last deployment through a stack reference to its own stack", () => {
        expect(ofType(resources, "pulumi:pulumi:StackReference").map((r) => r.inputs.name)).toEqual(["organization/vllm-nginx/dev"]);
    });

    it("starts the new settings on the spare slot, keeps two in place and leaves vllm0 out (Pulumi drains and removes it at the end)", () => {
        expect(containers().filter((c) => c.startsWith("dev-vllm"))).toEqual(["dev-vllm1", "dev-vllm2", "dev-vllm3"]);
        expect(outputs.rollout).toEqual({ spec: expect.stringMatching(/^[0-9a-f]{16}$/), active: ["vllm1", "vllm2", "vllm3"], groups: { default: outputs.rollout.spec } });
        expect(outputs.rollout.spec).not.toBe("spec-of-the-last-deployment");
    });

    it("replaces vllm1, then vllm2, each after its step, and the first step waits until the surge replica serves", () => {
        expect(byName("fleet-vllm3-container").dependsOn.filter((d) => d.startsWith("fleet-rollout"))).toEqual([]);
        expect(byName("fleet-rollout-0-step").dependsOn).toEqual(expect.arrayContaining(["fleet-vllm3-rotation", "fleet-lb-config"]));
        expect(byName("fleet-vllm1-container").dependsOn).toContain("fleet-rollout-0-step");
        expect(byName("fleet-rollout-1-step").dependsOn).toContain("fleet-rollout-0-step");
        expect(byName("fleet-vllm2-container").dependsOn).toContain("fleet-rollout-1-step");
    });

    it("tells each step its batch, the replicas that must be back first, and their specs", () => {
        const first = byName("fleet-rollout-0-step").inputs.environment;
        const second = byName("fleet-rollout-1-step").inputs.environment;
        const line = (name: string, ip: string) => expect.stringMatching(new RegExp(`^${name} dev-${name} - [0-9a-f]{16} ${ip.replace(/\./g, "\\.")}:8000$`));
        expect(first.BATCH.split("\n")).toEqual([line("vllm1", "172.29.10.11")]);
        expect(first.EARLIER.split("\n")).toEqual([line("vllm3", "172.29.10.13")]);
        expect(second.BATCH.split("\n")).toEqual([line("vllm2", "172.29.10.12")]);
        expect(second.EARLIER.split("\n")).toEqual([line("vllm3", "172.29.10.13"), line("vllm1", "172.29.10.11")]);
        const spec = (name: string) => byName(`fleet-${name}-container`).inputs.labels.find((l: any) => l.label === "vllm-nginx.spec").value;
        expect(first.BATCH).toContain(` ${spec("vllm1")} `);
        expect(second.EARLIER).toContain(` ${spec("vllm3")} `);
    });
});
