import { describe, expect, it } from "vitest";
import { oneReplicaPerGpu } from "../policies";
import { balancer, checkStack, replica, urnOf } from "./fixtures";

describe("one-replica-per-gpu (mandatory)", () => {
    it("is mandatory", () => {
        expect(oneReplicaPerGpu.enforcementLevel).toBe("mandatory");
    });

    it("passes distinct GPUs and GPU groups, and CPU replicas", async () => {
        const fleet = [replica("vllm0", { gpus: ["0"] }), replica("vllm1", { gpus: ["1", "2"] }), replica("cpu0"), balancer()];
        expect(await checkStack(oneReplicaPerGpu, fleet)).toEqual([]);
    });

    it("fires on each replica that shares a GPU with another on one host", async () => {
        const vllm0 = replica("vllm0", { gpus: ["0", "1"] });
        const vllm1 = replica("vllm1", { gpus: ["1"] });
        const violations = await checkStack(oneReplicaPerGpu, [vllm0, vllm1, replica("vllm2", { gpus: ["2"] })]);
        expect(violations).toEqual([
            { message: "GPU 1 of host local is assigned to 2 replicas (vllm0, vllm1); each GPU may serve one replica.", urn: urnOf(vllm0) },
            { message: "GPU 1 of host local is assigned to 2 replicas (vllm0, vllm1); each GPU may serve one replica.", urn: urnOf(vllm1) },
        ]);
    });

    it("reads device requests when the label is missing (a hand-edited program)", async () => {
        const violations = await checkStack(oneReplicaPerGpu, [replica("a", { gpus: ["3"], labelGpus: false }), replica("b", { gpus: ["3"], labelGpus: false })]);
        expect(violations).toHaveLength(2);
    });

    it("reads Docker's gpus flag, and counts `all` against every other GPU replica", async () => {
        const all = replica("a", { extraProps: { gpus: "all" } });
        const violations = await checkStack(oneReplicaPerGpu, [all, replica("b", { gpus: ["0"] })]);
        expect(violations.map((v) => v.message)).toEqual([
            "GPU 0 of host local is assigned to 2 replicas (b, a); each GPU may serve one replica.",
            "GPU 0 of host local is assigned to 2 replicas (b, a); each GPU may serve one replica.",
        ]);
        expect(await checkStack(oneReplicaPerGpu, [replica("c", { extraProps: { gpus: "device=1,2" } }), replica("d", { gpus: ["2"] })])).toHaveLength(2);
    });

    it("allows the same GPU id on different hosts, by label or by provider", async () => {
        expect(await checkStack(oneReplicaPerGpu, [replica("a", { gpus: ["0"], host: "gpu-a" }), replica("b", { gpus: ["0"], host: "gpu-b" })])).toEqual([]);
        const onRemote = { ...replica("b", { gpus: ["0"], labelGpus: true }), providerHost: "ssh://gpu-b" };
        expect(await checkStack(oneReplicaPerGpu, [replica("a", { gpus: ["0"] }), onRemote])).toEqual([]);
        const violations = await checkStack(oneReplicaPerGpu, [replica("a", { gpus: ["0"], host: "gpu-a" }), replica("b", { gpus: ["0"], host: "gpu-a" })]);
        expect(violations[0].message).toContain("GPU 0 of host gpu-a");
    });
});
