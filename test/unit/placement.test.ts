import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseFleetConfig } from "../../components/config";
import { HostInputs, PlacementInputs, TOP_LEVEL_KEYS, parseCpuList, planPlacement } from "../../components/planning/placement";
import { dynamicRange } from "../../components/planning/subnet";

const LOCAL: HostInputs = { name: "local", balancer: true, gpus: ["0"], replicas: 1, cpuThreadsBind: "auto", spareReplicas: 0, keys: TOP_LEVEL_KEYS };
const FLEET: Omit<PlacementInputs, "hosts"> = { backend: "gpu", lbPort: 8000, replicaPortBase: 8081, replicaPortBind: "127.0.0.1", networkSubnet: "172.29.7.0/24" };
const CPU: Partial<HostInputs & PlacementInputs> = { backend: "cpu", gpus: undefined };

/** The plan of one implicit host, or the problems as `key: allowed` lines. */
function place(inputs: Partial<HostInputs & PlacementInputs>) {
    const { backend, lbPort, replicaPortBase, replicaPortBind, networkSubnet, hosts: _hosts, ...host } = inputs;
    const { placement, problems } = planPlacement({
        ...FLEET,
        ...Object.fromEntries(Object.entries({ backend, lbPort, replicaPortBase, replicaPortBind, networkSubnet }).filter(([, v]) => v !== undefined)),
        hosts: [{ ...LOCAL, ...host }],
    });
    return { replicas: placement.slots, count: placement.replicas, problems: problems.map((p) => `${p.key}: ${p.allowed}`) };
}

describe("GPU and tensor-parallel assignment", () => {
    it("makes one replica per entry, with the entry's GPUs and TP = group size", () => {
        expect(place({ gpus: ["0", "1,2", "3,4,5,6"] }).replicas.map((r) => [r.name, r.gpuIds, r.tensorParallelSize])).toEqual([
            ["vllm0", ["0"], 1],
            ["vllm1", ["1", "2"], 2],
            ["vllm2", ["3", "4", "5", "6"], 4],
        ]);
    });

    it("accepts GPU ids written as numbers in YAML", () => {
        expect(parseFleetConfig({ model: "m", gpus: [0, 1] }, "t").placement.slots.map((r) => r.gpuIds)).toEqual([["0"], ["1"]]);
    });

    it("reports problems by the key that causes them, as a pure function of typed inputs", () => {
        expect(place({ gpus: ["0", "1,0"] }).problems).toEqual(["gpus: each GPU may appear once: GPU 0 is in entry 0 and entry 1"]);
        expect(place({ gpus: undefined }).problems).toEqual([expect.stringMatching(/^gpus: required on the gpu backend/)]);
        expect(place({ ...CPU, gpus: ["0"] }).problems).toEqual([expect.stringMatching(/^gpus: only for backend "gpu"/)]);
    });

    it("never hands one GPU to two replicas (property)", () => {
        fc.assert(
            fc.property(fc.array(fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }), (groups) => {
                const all = groups.flat();
                const unique = new Set(all).size === all.length;
                const { replicas, problems } = place({ gpus: groups.map((g) => g.join(",")) });
                if (problems.length > 0) {
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
        expect(place({ ...CPU, replicas: 3 }).replicas.map((r) => [r.threadsBind, r.cpuSet])).toEqual([
            ["auto", undefined],
            ["auto", undefined],
            ["auto", undefined],
        ]);
    });

    it("gives each replica its own range for both VLLM_CPU_OMP_THREADS_BIND and the cpuset", () => {
        expect(place({ ...CPU, replicas: 2, cpuThreadsBind: ["0-3", "4-7"] }).replicas.map((r) => [r.threadsBind, r.cpuSet])).toEqual([
            ["0-3", "0-3"],
            ["4-7", "4-7"],
        ]);
    });

    it("leaves the threads of every replica unbound with nobind, for the kernel to schedule", () => {
        expect(place({ ...CPU, replicas: 3, cpuThreadsBind: "nobind" }).replicas.map((r) => [r.threadsBind, r.cpuSet])).toEqual([
            ["nobind", undefined],
            ["nobind", undefined],
            ["nobind", undefined],
        ]);
    });

    it("parses cpuset lists", () => {
        expect(parseCpuList("0-3,8,10-11")).toEqual([0, 1, 2, 3, 8, 10, 11]);
        expect(parseCpuList("3-1")).toBeUndefined();
        expect(parseCpuList("a")).toBeUndefined();
    });
});

describe("ports, addresses and how the balancer reaches each replica", () => {
    it("publishes replica i on replicaPortBase + i, gives it host .10 + i, and has nginx reach it there on the local host", () => {
        expect(place({ gpus: ["0", "1", "2"], replicaPortBase: 9001 }).replicas.map((r) => [r.host, r.hostPort, r.ip, r.upstream])).toEqual([
            ["local", 9001, "172.29.7.10", "172.29.7.10:8000"],
            ["local", 9002, "172.29.7.11", "172.29.7.11:8000"],
            ["local", 9003, "172.29.7.12", "172.29.7.12:8000"],
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
                const { replicas, problems } = place({ gpus, lbPort, replicaPortBase: base });
                if (problems.length > 0) {
                    return (lbPort >= base && lbPort < base + n) || base + n - 1 > 65535;
                }
                return replicas.every((r) => r.hostPort !== lbPort && r.hostPort <= 65535);
            }),
        );
    });
});

describe("replicas on several hosts", () => {
    const hosts: HostInputs[] = [
        { ...LOCAL, name: "gpu-a", balancer: true, gpus: ["0", "1"], keys: { ...TOP_LEVEL_KEYS, gpus: "hosts[0].gpus" } },
        { ...LOCAL, name: "gpu-b", balancer: false, address: "10.0.0.12", gpus: ["0"], spareGpus: ["1"], keys: { ...TOP_LEVEL_KEYS, gpus: "hosts[1].gpus", spareGpus: "hosts[1].spareGpus" } },
    ];
    const { placement, problems } = planPlacement({ ...FLEET, hosts });

    it("names replicas by host, reaches the balancer's own over the stack network and the others through the relay, which they alone publish nothing to", () => {
        expect(problems).toEqual([]);
        expect(placement.slots.map((r) => [r.name, r.host, r.gpuIds.join(","), r.publish, r.hostPort, r.upstream])).toEqual([
            ["gpu-a-vllm0", "gpu-a", "0", "127.0.0.1", 8081, "172.29.7.10:8000"],
            ["gpu-a-vllm1", "gpu-a", "1", "127.0.0.1", 8082, "172.29.7.11:8000"],
            ["gpu-b-vllm0", "gpu-b", "0", undefined, 8081, "172.29.7.9:11000"],
            ["gpu-b-vllm1", "gpu-b", "1", undefined, 8082, "172.29.7.9:11001"],
        ]);
        expect(placement.slots.map((r) => r.relay)).toEqual([
            undefined,
            undefined,
            { egressPort: 11000, gate: "10.0.0.12:8081", gatePort: 8081, replica: "172.29.7.10:8000" },
            { egressPort: 11001, gate: "10.0.0.12:8081", gatePort: 8081, replica: "172.29.7.11:8000" },
        ]);
        expect(placement.replicas).toBe(3);
        expect(placement.hosts).toEqual([
            { name: "gpu-a", balancer: true, address: undefined },
            { name: "gpu-b", balancer: false, address: "10.0.0.12" },
        ]);
    });

    it("keeps a host's relay ports when another host scales, and refuses more replicas on a host than the relay has ports for", () => {
        const grown = planPlacement({ ...FLEET, hosts: [{ ...hosts[0], gpus: ["0", "1", "2"] }, hosts[1]] }).placement;
        expect(grown.slots.filter((r) => r.host === "gpu-b").map((r) => r.upstream)).toEqual(["172.29.7.9:11000", "172.29.7.9:11001"]);
        const many = planPlacement({ ...FLEET, networkSubnet: "172.29.0.0/16", hosts: [hosts[0], { ...hosts[1], gpus: Array.from({ length: 1001 }, (_, i) => String(i)), spareGpus: undefined }] });
        expect(many.problems.map((p) => `${p.key}: ${p.allowed}`)).toEqual([
            "hosts: at most 1000 replicas (spares included) on a host other than the balancer's, and at most 55 hosts: the relay gives each replica of another host a port of its own (host gpu-b has 1001, and is entry 1)",
        ]);
    });

    it("lets one GPU id appear on several hosts, but twice on one host is a problem named by that host's key", () => {
        const twice = planPlacement({ ...FLEET, hosts: [hosts[0], { ...hosts[1], gpus: ["0", "0"] }] }).problems.map((p) => `${p.key}: ${p.allowed}`);
        expect(twice).toEqual(["hosts[1].gpus: each GPU may appear once: GPU 0 is in entry 0 and entry 1"]);
    });
});
