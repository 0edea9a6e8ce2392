import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseFleetConfig } from "../../components/config";
import { dynamicRange, parseCpuList } from "../../components/placement";

const plan = (raw: Record<string, unknown>) => parseFleetConfig({ model: "m", ...raw }, "t").replicas;

describe("GPU and tensor-parallel assignment", () => {
    it("makes one replica per entry, with the entry's GPUs and TP = group size", () => {
        expect(plan({ gpus: ["0", "1,2", "3,4,5,6"] }).map((r) => [r.alias, r.gpuIds, r.tensorParallelSize])).toEqual([
            ["vllm0", ["0"], 1],
            ["vllm1", ["1", "2"], 2],
            ["vllm2", ["3", "4", "5", "6"], 4],
        ]);
    });

    it("accepts GPU ids written as numbers in YAML", () => {
        expect(plan({ gpus: [0, 1] }).map((r) => r.gpuIds)).toEqual([["0"], ["1"]]);
    });

    it("never hands one GPU to two replicas (property)", () => {
        fc.assert(
            fc.property(fc.array(fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }), (groups) => {
                const gpus = groups.map((g) => g.join(","));
                const all = groups.flat();
                const unique = new Set(all).size === all.length;
                let replicas;
                try {
                    replicas = plan({ gpus });
                } catch {
                    return !unique;
                }
                const assigned = replicas.flatMap((r) => r.gpuIds);
                return unique && new Set(assigned).size === assigned.length && assigned.length === all.length;
            }),
        );
    });
});

describe("CPU binding", () => {
    it("binds threads automatically by default, without a cpuset", () => {
        expect(plan({ backend: "cpu", replicas: "3" }).map((r) => [r.threadsBind, r.cpuSet])).toEqual([
            ["auto", undefined],
            ["auto", undefined],
            ["auto", undefined],
        ]);
    });

    it("gives each replica its own range for both VLLM_CPU_OMP_THREADS_BIND and the cpuset", () => {
        expect(plan({ backend: "cpu", replicas: "2", cpuThreadsBind: ["0-3", "4-7"] }).map((r) => [r.threadsBind, r.cpuSet])).toEqual([
            ["0-3", "0-3"],
            ["4-7", "4-7"],
        ]);
    });

    it("parses cpuset lists", () => {
        expect(parseCpuList("0-3,8,10-11")).toEqual([0, 1, 2, 3, 8, 10, 11]);
        expect(parseCpuList("3-1")).toBeUndefined();
        expect(parseCpuList("a")).toBeUndefined();
    });
});

describe("ports and addresses", () => {
    it("publishes replica i on replicaPortBase + i and gives it host .10 + i", () => {
        expect(plan({ gpus: ["0", "1", "2"], replicaPortBase: "9001", networkSubnet: "172.29.7.0/24" }).map((r) => [r.hostPort, r.ip])).toEqual([
            [9001, "172.29.7.10"],
            [9002, "172.29.7.11"],
            [9003, "172.29.7.12"],
        ]);
    });

    it("keeps Docker's dynamic range in the upper half, away from replica addresses", () => {
        expect(dynamicRange("172.29.7.0/24")).toBe("172.29.7.128/25");
        expect(dynamicRange("10.1.0.0/16")).toBe("10.1.128.0/17");
    });

    it("never lets lbPort collide with a replica port (property)", () => {
        fc.assert(
            fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65000 }), fc.integer({ min: 1, max: 8 }), (lbPort, base, n) => {
                const gpus = Array.from({ length: n }, (_, i) => String(i));
                try {
                    const replicas = plan({ gpus, lbPort: String(lbPort), replicaPortBase: String(base) });
                    return replicas.every((r) => r.hostPort !== lbPort && r.hostPort <= 65535);
                } catch {
                    return (lbPort >= base && lbPort < base + n) || base + n - 1 > 65535;
                }
            }),
        );
    });
});
