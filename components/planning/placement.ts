/**
 * Where each replica runs: its GPUs (or CPU cores), its host port and its address on the stack's network.
 * Pure code, called by config validation so that every conflict is reported at preview time.
 */
import type { Backend, ConfigReader } from "./config";

/** The container port vLLM listens on inside every replica. */
export const VLLM_PORT = 8000;

/** One vLLM server: a container with its GPUs or cores, published port and fixed address. */
export interface ReplicaPlan {
    index: number;
    /** Network alias and short name, as in the guide: `vllm0`, `vllm1`, ... */
    alias: string;
    /** GPU IDs handed to this replica (empty on the CPU backend). */
    gpuIds: string[];
    /** `--tensor-parallel-size`: the number of GPUs of this replica (1 on CPU). */
    tensorParallelSize: number;
    /** Cores for `VLLM_CPU_OMP_THREADS_BIND` and the container's cpuset (CPU backend). */
    cpuSet?: string;
    /** Value of `VLLM_CPU_OMP_THREADS_BIND` (CPU backend). */
    threadsBind?: string;
    /** Host port publishing the replica's port 8000. */
    hostPort: number;
    /** Fixed IPv4 address on the stack's network; nginx's upstream uses it. */
    ip: string;
}

interface PlanInputs {
    lbPort: number;
    replicaPortBase: number;
    networkSubnet: string;
}

/** Replicas take fixed addresses from host .10 on; .1 is Docker's gateway, the rest is left to Docker. */
const FIRST_REPLICA_HOST = 10;

export function planReplicas(read: ConfigReader, backend: Backend, inputs: PlanInputs): ReplicaPlan[] {
    const groups = backend === "gpu" ? readGpuGroups(read) : readCpuReplicas(read);
    const count = groups.length;

    const lastPort = inputs.replicaPortBase + count - 1;
    if (count > 0 && lastPort > 65535) {
        read.problem("replicaPortBase", inputs.replicaPortBase, `a port such that all ${count} replica ports (base to base+${count - 1}) stay at or below 65535`);
    }
    if (count > 0 && inputs.lbPort >= inputs.replicaPortBase && inputs.lbPort <= lastPort) {
        read.problem(
            "lbPort",
            inputs.lbPort,
            `a port outside the replica ports ${inputs.replicaPortBase}-${lastPort} (replicaPortBase to replicaPortBase+${count - 1})`,
        );
    }

    const subnet = parseSubnet(inputs.networkSubnet);
    if (subnet === undefined) {
        read.problem("networkSubnet", inputs.networkSubnet, 'an IPv4 network in CIDR form with a prefix from /16 to /28, e.g. "172.29.10.0/24"');
    } else if (FIRST_REPLICA_HOST + count > subnet.size / 2) {
        read.problem("networkSubnet", inputs.networkSubnet, `a network with room for ${count} replicas from host .${FIRST_REPLICA_HOST} on (a larger network)`);
    }

    return groups.map((group, index) => ({
        index,
        alias: `vllm${index}`,
        gpuIds: group.gpuIds,
        tensorParallelSize: Math.max(1, group.gpuIds.length),
        cpuSet: group.cpuSet,
        threadsBind: group.threadsBind,
        hostPort: inputs.replicaPortBase + index,
        ip: subnet ? hostAddress(subnet, FIRST_REPLICA_HOST + index) : "",
    }));
}

interface ReplicaGroup {
    gpuIds: string[];
    cpuSet?: string;
    threadsBind?: string;
}

/** `gpus`: one replica per entry; an entry is one GPU ID or a comma-separated group for tensor parallelism. */
function readGpuGroups(read: ConfigReader): ReplicaGroup[] {
    const entries = read.stringList("gpus");
    if (entries === undefined) {
        if (!read.has("gpus")) {
            read.problem("gpus", undefined, 'required on the gpu backend: a list with one entry per replica, each a GPU ID ("0") or a group ("0,1"), e.g. ["0", "1"]');
        }
        return [];
    }
    const seen = new Map<string, number>();
    return entries.map((entry, index) => {
        const ids = entry.split(",").map((id) => id.trim());
        for (const id of ids) {
            if (!/^\d+$/.test(id)) {
                read.problem("gpus", entries, `GPU IDs are whole numbers ("0", "1", ...): entry ${index} ("${entry}") has "${id}"`);
            } else if (seen.has(id)) {
                read.problem("gpus", entries, `each GPU may appear once: GPU ${id} is in entry ${seen.get(id)} and entry ${index}`);
            } else {
                seen.set(id, index);
            }
        }
        return { gpuIds: ids };
    });
}

/** `replicas` and `cpuThreadsBind`: one core range per replica, or "auto". */
function readCpuReplicas(read: ConfigReader): ReplicaGroup[] {
    if (read.has("gpus")) {
        read.problem("gpus", read.value("gpus"), 'only for backend "gpu"; on the cpu backend set replicas (and optionally cpuThreadsBind)');
    }
    const count = read.integer("replicas", 1, 1, 64);
    const bind = read.value("cpuThreadsBind");
    if (bind === undefined || bind === "auto") {
        return Array.from({ length: count }, () => ({ gpuIds: [], threadsBind: "auto" }));
    }
    const ranges = read.stringList("cpuThreadsBind");
    if (ranges === undefined) {
        read.problem("cpuThreadsBind", bind, '"auto" or a list of core ranges, one per replica, e.g. ["0-3", "4-7"]');
        return Array.from({ length: count }, () => ({ gpuIds: [] }));
    }
    if (ranges.length !== count) {
        read.problem("cpuThreadsBind", ranges, `one core range per replica: replicas is ${count}, cpuThreadsBind has ${ranges.length}`);
    }
    const owner = new Map<number, number>();
    ranges.forEach((range, index) => {
        const cores = parseCpuList(range);
        if (cores === undefined) {
            read.problem("cpuThreadsBind", ranges, `core ranges look like "0-3" or "0-3,8-11": entry ${index} is "${range}"`);
            return;
        }
        for (const core of cores) {
            const other = owner.get(core);
            if (other !== undefined && other !== index) {
                read.problem("cpuThreadsBind", ranges, `ranges must not overlap: core ${core} is in entry ${other} ("${ranges[other]}") and entry ${index} ("${range}")`);
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

interface Subnet {
    base: number;
    size: number;
}

export function parseSubnet(cidr: string): Subnet | undefined {
    const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
    if (!match) {
        return undefined;
    }
    const octets = match.slice(1, 5).map(Number);
    const prefix = Number(match[5]);
    if (octets.some((o) => o > 255) || prefix < 16 || prefix > 28) {
        return undefined;
    }
    const address = ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) >>> 0;
    const size = 2 ** (32 - prefix);
    if (address % size !== 0) {
        return undefined;
    }
    return { base: address, size };
}

function hostAddress(subnet: Subnet, host: number): string {
    const address = subnet.base + host;
    return [24, 16, 8, 0].map((shift) => (address >>> shift) & 255).join(".");
}


/**
 * The upper half of the stack's subnet, where Docker hands out addresses to containers without a fixed
 * one (the balancer), so they never take a replica's address in the lower half.
 */
export function dynamicRange(cidr: string): string {
    const subnet = parseSubnet(cidr);
    if (subnet === undefined) {
        throw new Error(`networkSubnet ${JSON.stringify(cidr)} reached the network without validation`);
    }
    const prefix = 32 - Math.log2(subnet.size) + 1;
    return `${hostAddress(subnet, subnet.size / 2)}/${prefix}`;
}
