/**
 * Where each replica runs: its host, its GPUs (or CPU cores), its published port, its address on the
 * stack's network, and the address the balancer reaches it at. A pure function of typed settings: it
 * reads no config and reports each conflict by the key that causes it.
 */
import { Problems, type KeyProblem } from "./problems";
import { parseSubnet, subnetAddress } from "./subnet";

/** The container port vLLM listens on inside every replica. */
export const VLLM_PORT = 8000;

/** The name of the one Docker engine of a stack without `hosts`: the engine the provider talks to. */
export const LOCAL_HOST = "local";

export type Backend = "gpu" | "cpu";
export const BACKENDS: readonly Backend[] = ["gpu", "cpu"];

/** One vLLM server: a container with its GPUs or cores, published port and fixed address. */
export interface ReplicaPlan {
    /** Container alias and short name, as in the guide: `vllm0`, `vllm1`, ... */
    name: string;
    /** The host (Docker engine) the replica runs on. */
    host: string;
    /** GPU IDs handed to this replica (empty on the CPU backend). */
    gpuIds: string[];
    /** `--tensor-parallel-size`: the number of GPUs of this replica (1 on CPU). */
    tensorParallelSize: number;
    /** Cores for `VLLM_CPU_OMP_THREADS_BIND` and the container's cpuset (CPU backend, when bound). */
    cpuSet?: string;
    /** Value of `VLLM_CPU_OMP_THREADS_BIND` (CPU backend). */
    threadsBind?: string;
    /** Host port publishing the replica's port 8000. */
    hostPort: number;
    /** Fixed IPv4 address on the stack's network. */
    ip: string;
    /** `host:port` the balancer connects to: the fixed address on the shared network. */
    upstream: string;
}

/** Everything the fleet runs, decided before any resource is created. */
export interface FleetPlan {
    replicas: ReplicaPlan[];
}

/** The typed settings placement depends on; config parsing fills them. */
export interface PlacementInputs {
    backend: Backend;
    /** gpu backend: one entry per replica, each a GPU id (`"0"`) or a group (`"0,1"`); undefined when unset. */
    gpus?: string[];
    /** cpu backend: the number of replicas. */
    replicas: number;
    /** cpu backend: `"auto"`, or one core range per replica (`"0-3"`). */
    cpuThreadsBind: "auto" | string[];
    lbPort: number;
    replicaPortBase: number;
    networkSubnet: string;
}

/** Replicas take fixed addresses from host .10 on; .1 is Docker's gateway, the upper half is Docker's. */
const FIRST_REPLICA_HOST = 10;

/** Plans every replica. Problems name the key that causes them; the plan is complete only without any. */
export function planPlacement(inputs: PlacementInputs): { plan: FleetPlan; problems: KeyProblem[] } {
    const problems = new Problems();
    const groups = inputs.backend === "gpu" ? gpuGroups(inputs, problems) : cpuGroups(inputs, problems);
    const count = groups.length;

    const lastPort = inputs.replicaPortBase + count - 1;
    if (count > 0 && lastPort > 65535) {
        problems.add("replicaPortBase", inputs.replicaPortBase, `a port such that all ${count} replica ports (base to base+${count - 1}) stay at or below 65535`);
    }
    if (count > 0 && inputs.lbPort >= inputs.replicaPortBase && inputs.lbPort <= lastPort) {
        problems.add("lbPort", inputs.lbPort, `a port outside the replica ports ${inputs.replicaPortBase}-${lastPort} (replicaPortBase to replicaPortBase+${count - 1})`);
    }

    const subnet = parseSubnet(inputs.networkSubnet);
    if (subnet === undefined) {
        problems.add("networkSubnet", inputs.networkSubnet, 'an IPv4 network in CIDR form with a prefix from /16 to /28, e.g. "172.29.10.0/24"');
    } else if (FIRST_REPLICA_HOST + count > subnet.size / 2) {
        problems.add("networkSubnet", inputs.networkSubnet, `a network with room for ${count} replicas from host .${FIRST_REPLICA_HOST} on (a larger network)`);
    }

    const replicas = groups.map((group, index): ReplicaPlan => {
        const ip = subnet ? subnetAddress(subnet, FIRST_REPLICA_HOST + index) : "";
        return {
            name: `vllm${index}`,
            host: LOCAL_HOST,
            gpuIds: group.gpuIds,
            tensorParallelSize: Math.max(1, group.gpuIds.length),
            cpuSet: group.cpuSet,
            threadsBind: group.threadsBind,
            hostPort: inputs.replicaPortBase + index,
            ip,
            upstream: `${ip}:${VLLM_PORT}`,
        };
    });
    return { plan: { replicas }, problems: problems.list };
}

interface ReplicaGroup {
    gpuIds: string[];
    cpuSet?: string;
    threadsBind?: string;
}

/** `gpus`: one replica per entry; an entry is one GPU ID or a comma-separated group for tensor parallelism. */
function gpuGroups(inputs: PlacementInputs, problems: Problems): ReplicaGroup[] {
    const entries = inputs.gpus;
    if (entries === undefined || entries.length === 0) {
        problems.add("gpus", undefined, 'required on the gpu backend: a list with one entry per replica, each a GPU ID ("0") or a group ("0,1"), e.g. ["0", "1"]');
        return [];
    }
    const seen = new Map<string, number>();
    return entries.map((entry, index) => {
        const ids = entry.split(",").map((id) => id.trim());
        for (const id of ids) {
            if (!/^\d+$/.test(id)) {
                problems.add("gpus", entries, `GPU IDs are whole numbers ("0", "1", ...): entry ${index} ("${entry}") has "${id}"`);
            } else if (seen.has(id)) {
                problems.add("gpus", entries, `each GPU may appear once: GPU ${id} is in entry ${seen.get(id)} and entry ${index}`);
            } else {
                seen.set(id, index);
            }
        }
        return { gpuIds: ids };
    });
}

/** `replicas` and `cpuThreadsBind`: one core range per replica, or "auto". */
function cpuGroups(inputs: PlacementInputs, problems: Problems): ReplicaGroup[] {
    if (inputs.gpus !== undefined && inputs.gpus.length > 0) {
        problems.add("gpus", inputs.gpus, 'only for backend "gpu"; on the cpu backend set replicas (and optionally cpuThreadsBind)');
    }
    const count = inputs.replicas;
    const ranges = inputs.cpuThreadsBind;
    if (ranges === "auto") {
        return Array.from({ length: count }, () => ({ gpuIds: [], threadsBind: "auto" }));
    }
    if (ranges.length !== count) {
        problems.add("cpuThreadsBind", ranges, `one core range per replica: replicas is ${count}, cpuThreadsBind has ${ranges.length}`);
    }
    const owner = new Map<number, number>();
    ranges.forEach((range, index) => {
        const cores = parseCpuList(range);
        if (cores === undefined) {
            problems.add("cpuThreadsBind", ranges, `core ranges look like "0-3" or "0-3,8-11": entry ${index} is "${range}"`);
            return;
        }
        for (const core of cores) {
            const other = owner.get(core);
            if (other !== undefined && other !== index) {
                problems.add("cpuThreadsBind", ranges, `ranges must not overlap: core ${core} is in entry ${other} ("${ranges[other]}") and entry ${index} ("${range}")`);
                return;
            }
            owner.set(core, index);
        }
    });
    return ranges.slice(0, count).map((range) => ({ gpuIds: [], cpuSet: range, threadsBind: range }));
}

/** Parses a cpuset list (`"0-3,8"`) into its cores; undefined when malformed. */
export function parseCpuList(text: string): number[] | undefined {
    const cores: number[] = [];
    for (const part of text.split(",")) {
        const match = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
        if (!match) {
            return undefined;
        }
        const first = Number(match[1]);
        const last = match[2] === undefined ? first : Number(match[2]);
        if (last < first) {
            return undefined;
        }
        for (let core = first; core <= last; core++) {
            cores.push(core);
        }
    }
    return cores;
}
